"""The SMTP adapter against a real SMTP server (aiosmtpd on 127.0.0.1): STARTTLS with a private CA,
implicit TLS, a server without TLS, AUTH, what each reply means, connection reuse, the headers of
every e-mail, and a campaign sent by the real dispatcher.  Also the Settings page's *Test
connection* of both e-mail adapters, and the From/Reply-To they share."""

from __future__ import annotations

import json
import socket
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from core.channels import get_channel
from core.channels import smtp_email as smtp
from core.channels.base import (
    OutboundMessage,
    OutcomeUnknown,
    PermanentError,
    QuotaExceededError,
    RetryableError,
)
from core.channels.resend_email import ResendChannel
from core.config import Settings
from core.db import utcnow
from core.dispatch import run_campaign_pass
from tests.channels import helpers as h
from tests.fakes.resend import DEFAULT_KEY, FakeResend
from tests.fakes.smtp import SmtpPeer, TlsFiles, free_port, tls_files

SENDER = "hello@bellavista.example"
USER, PASSWORD = "shop@bellavista.example", "p@ss:w/rd 1"
USER_URL, PASSWORD_URL = "shop%40bellavista.example", "p%40ss%3Aw%2Frd%201"


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture(autouse=True)
def _close_pooled_connections() -> Iterator[None]:
    yield
    smtp.close_connections()


@pytest.fixture
def peer(tls: TlsFiles) -> Iterator[SmtpPeer]:
    """An SES-like server: STARTTLS required, AUTH required, ``250 Ok <id>``."""
    with SmtpPeer(security="starttls", users={USER: PASSWORD}, auth_required=True, tls=tls) as server:
        yield server


def settings(url: str, tls: TlsFiles | None = None, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"email_provider": "smtp", "smtp_url": url, "email_from": SENDER,
                              "smtp_ca_file": str(tls.ca) if tls else None, "smtp_max_per_second": 100_000.0}
    return h.live_settings(**(values | overrides))


def channel(url: str, tls: TlsFiles | None = None, **overrides: Any) -> smtp.SmtpChannel:
    adapter = get_channel("email", settings(url, tls, **overrides))
    assert isinstance(adapter, smtp.SmtpChannel)
    return adapter


def message(to: str = "ann@example.com", *, step: int = 0, recipient: uuid.UUID | None = None,
            **overrides: Any) -> OutboundMessage:
    rid = recipient or uuid.uuid4()
    values: dict[str, Any] = dict(
        channel="email", to=to, idempotency_key=f"reengage/{rid}/{step}", profile_id=uuid.uuid4(),
        business_name="Bella Vista", campaign_id=uuid.UUID("00000000-0000-4000-8000-0000000000c1"),
        recipient_id=rid, step=step, subject="We miss you, Ann",
        text="Hi Ann,\n.a line starting with a dot\n\n--\nUnsubscribe: https://shop.example/unsubscribe/t1",
        html="<p>Hi Ann, caf\u00e9 cr\u00e8me</p>", unsubscribe_url="https://shop.example/unsubscribe/t1")
    return OutboundMessage(**(values | overrides))


# --- SMTP_URL -----------------------------------------------------------------------------------------------


def test_the_url_says_where_and_how():
    e = smtp.parse_url("smtp://shop%40bv.example:p%3Aw%40rd@email-smtp.us-east-1.amazonaws.com:587"
                       "?configuration_set=reengage")
    assert (e.host, e.port, e.implicit_tls, e.user, e.password) == (
        "email-smtp.us-east-1.amazonaws.com", 587, False, "shop@bv.example", "p:w@rd")
    assert e.configuration_set == "reengage"
    assert smtp.parse_url("smtps://apikey:SG.x@smtp.sendgrid.net").port == 465
    assert smtp.parse_url("smtp://token:token@smtp.postmarkapp.com").port == 587
    assert smtp.parse_url("smtp://relay.internal").port == 25
    assert smtp.parse_url("smtp://t:t@smtp-broadcasts.postmarkapp.com:587").message_stream == "broadcast"
    for bad in ("http://host:25", "smtp://", "smtp://user@host:587", "smtp://host:99999"):
        with pytest.raises(QuotaExceededError) as caught:
            smtp.parse_url(bad)
        assert "SMTP_URL" in caught.value.reason


def test_a_bad_url_pauses_with_a_sentence_instead_of_crashing():
    adapter = channel("smtp://user@host:587")
    with pytest.raises(QuotaExceededError, match="no password"):
        adapter.send(message())


def test_reply_ids_of_each_service():
    assert smtp.server_message_id(b"Ok 0100018f3e5a7b2c-5d1a8a3e-9c0b-4f7e-8e36-1e2a3b4c5d6e-000000") == \
        "0100018f3e5a7b2c-5d1a8a3e-9c0b-4f7e-8e36-1e2a3b4c5d6e-000000"
    assert smtp.server_message_id(b"Ok: queued as LRzXl_NHStOGhQ4kofSm_A") == "LRzXl_NHStOGhQ4kofSm_A"
    assert smtp.server_message_id(b"2.0.0 Ok: queued as 4XyZ1b2C3dz") == "4XyZ1b2C3dz"
    assert smtp.server_message_id(b"OK") is None
    assert smtp.server_message_id(b"2.0.0 OK  1733321234 a1b2c3d4e5f6.12 - gsmtp") is None


# --- a real server: security and signing in -------------------------------------------------------------------


def test_starttls_auth_and_every_header(peer, tls):
    adapter = channel(peer.url(USER_URL, PASSWORD_URL), tls, email_reply_to="desk@bellavista.example")
    m = message()
    result = adapter.send(m)
    (got,) = peer.messages
    assert got.user == USER and got.tls  # signed in, after STARTTLS
    assert got.mail_from == SENDER and got.rcpt_tos == ["ann@example.com"]
    assert result.provider_message_id == got.server_id  # "250 Ok <id>", as SES answers
    email = got.email
    assert email["From"] == "Bella Vista <hello@bellavista.example>"
    assert email["Reply-To"] == "desk@bellavista.example" and email["To"] == "ann@example.com"
    assert email["Subject"] == "We miss you, Ann"
    assert email["List-Unsubscribe"] == "<https://shop.example/unsubscribe/t1>"
    assert email["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert email["Message-ID"] == smtp.message_id_for(m.idempotency_key, SENDER)
    assert email["Message-ID"].endswith("@bellavista.example>") and result.detail["message_id"] == email["Message-ID"]
    # the tags each service reads back
    rid, cid = str(m.recipient_id), str(m.campaign_id)
    ses_tags = dict(pair.strip().split("=") for pair in email["X-SES-MESSAGE-TAGS"].split(","))
    assert ses_tags == {"recipient_id": rid, "campaign_id": cid, "step": "0"}
    raw_lines = got.content.decode("ascii").split("\r\n")  # 7-bit clean: any server takes it
    assert all(len(line) < 1000 for line in raw_lines)
    assert json.loads(str(email["X-SMTPAPI"])) == {"unique_args": {"recipient_id": rid, "campaign_id": cid,
                                                                   "step": "0"}}
    assert (email["X-PM-Metadata-recipient_id"], email["X-PM-Metadata-step"]) == (rid, "0")
    assert email["X-PM-Tag"] == f"campaign-{cid}"
    # text, and HTML as its alternative; a leading dot survives dot-stuffing
    assert email.get_content_type() == "multipart/alternative"
    text, html = (part.get_content().replace("\r\n", "\n") for part in email.iter_parts())
    assert text.startswith("Hi Ann,\n.a line starting with a dot\n") and "caf\u00e9 cr\u00e8me" in html


def test_the_message_id_is_the_same_for_every_try_of_a_step(peer, tls):
    adapter = channel(peer.url(USER_URL, PASSWORD_URL), tls)
    rid = uuid.uuid4()
    adapter.send(message(recipient=rid))
    adapter.send(message(recipient=rid, subject="another try, other text"))
    adapter.send(message(recipient=rid, step=1))
    first, again, next_step = (m.message_id for m in peer.messages)
    assert first == again != next_step


def test_the_senders_name(peer, tls):
    url = peer.url(USER_URL, PASSWORD_URL)
    channel(url, tls, email_from_name="Bella Vista Salon \u2014 Front desk").send(message())
    channel(url, tls, email_from="Team Bella <team@bellavista.example>").send(message())
    named, written = (m.email for m in peer.messages)
    assert named["From"].addresses[0].display_name == "Bella Vista Salon \u2014 Front desk"
    assert (written["From"].addresses[0].display_name, written["From"].addresses[0].addr_spec) == (
        "Team Bella", "team@bellavista.example")
    assert written["Message-ID"].endswith("@bellavista.example>")


def test_a_known_service_gets_only_its_own_headers():
    def headers(url: str) -> set[str]:
        email = smtp.build_message(message(), settings(url), endpoint=smtp.parse_url(url))
        return {k.lower() for k in email if k.lower().startswith(("x-ses", "x-smtpapi", "x-pm"))}

    assert headers("smtp://u:p@email-smtp.eu-west-1.amazonaws.com:587?configuration_set=reengage") == {
        "x-ses-configuration-set", "x-ses-message-tags"}
    assert headers("smtps://apikey:SG.k@smtp.sendgrid.net:465") == {"x-smtpapi"}
    assert headers("smtp://t:t@smtp-broadcasts.postmarkapp.com:587") == {
        "x-pm-metadata-recipient_id", "x-pm-metadata-campaign_id", "x-pm-metadata-step", "x-pm-tag",
        "x-pm-message-stream", "x-pm-keepid"}
    assert len(headers("smtp://relay.internal:25")) == 6  # an unknown server: every service's tags


def test_implicit_tls(tls):
    with SmtpPeer(security="implicit", users={USER: PASSWORD}, auth_required=True, tls=tls, reply="sendgrid") as p:
        adapter = channel(p.url(USER_URL, PASSWORD_URL), tls)
        result = adapter.send(message())
        (got,) = p.messages
        assert got.tls and got.user == USER and result.provider_message_id == got.server_id  # "queued as <id>"
        assert "over TLS as shop@bellavista.example" in adapter.check()


def test_an_unknown_certificate_is_refused_and_smtp_ca_file_trusts_it(peer, tls):
    untrusted = channel(peer.url(USER_URL, PASSWORD_URL))
    with pytest.raises(QuotaExceededError, match="SMTP_CA_FILE") as caught:
        untrusted.send(message())
    assert caught.value.code == "tls_certificate"
    assert peer.auth_attempts == [] and peer.messages == []
    channel(peer.url(USER_URL, PASSWORD_URL), tls).send(message())
    assert len(peer.messages) == 1


def test_no_password_over_an_unencrypted_connection():
    with SmtpPeer(security="none", users={USER: PASSWORD}) as plain:
        adapter = channel(plain.url(USER_URL, PASSWORD_URL))
        with pytest.raises(QuotaExceededError, match="does not offer STARTTLS") as caught:
            adapter.send(message())
        assert caught.value.code == "no_tls"
        with pytest.raises(QuotaExceededError):
            adapter.check()
        assert plain.auth_attempts == [] and plain.messages == []  # the password never left


def test_a_local_relay_without_credentials_may_be_plain():
    with SmtpPeer(security="none", reply="plain") as relay:
        adapter = channel(relay.url())
        result = adapter.send(message())
        (got,) = relay.messages
        assert not got.tls and got.user is None
        # no id in "250 OK": our Message-ID names the e-mail
        assert result.provider_message_id == got.message_id.strip("<>")
        assert adapter.check().endswith(f"unencrypted without signing in; the server accepts {SENDER} as the "
                                        "sender.")


def test_international_addresses():
    with SmtpPeer(security="none", reply="plain") as relay:
        adapter = channel(relay.url())
        adapter.send(message("ann@ex\u00e4mple.com"))
        adapter.send(message("jos\u00e9@example.com"))
        idn, utf8 = relay.messages
        assert idn.rcpt_tos == ["ann@xn--exmple-cua.com"] and idn.email["To"] == "ann@xn--exmple-cua.com"
        assert utf8.rcpt_tos == ["jos\u00e9@example.com"] and utf8.email["To"] == "jos\u00e9@example.com"
    with SmtpPeer(security="none", reply="plain", smtputf8=False) as ascii_only:
        with pytest.raises(PermanentError, match="SMTPUTF8"):
            channel(ascii_only.url()).send(message("jos\u00e9@example.com"))
        assert ascii_only.messages == []
    with pytest.raises(PermanentError, match="not an e-mail address"):
        channel("smtp://127.0.0.1:1").send(message("ann@example.com\r\nBcc: everyone@example.com"))


def test_wrong_password_pauses_the_campaign(peer, tls):
    adapter = channel(peer.url(USER_URL, "wrong"), tls)
    with pytest.raises(QuotaExceededError) as caught:
        adapter.send(message())
    assert caught.value.code == "auth_failed" and "535" in caught.value.reason and "SMTP_URL" in caught.value.reason
    assert peer.auth_attempts and not any(ok for _, ok in peer.auth_attempts) and peer.messages == []
    with pytest.raises(QuotaExceededError, match="refused the user name or password"):
        adapter.check()


def test_a_server_that_wants_a_sign_in(peer, tls):
    with pytest.raises(QuotaExceededError, match="requires signing in") as caught:
        channel(peer.url(), tls).send(message())
    assert caught.value.code == "auth_required" and "530" in caught.value.reason


def test_check_connects_signs_in_and_offers_the_sender(peer, tls):
    sentence = channel(peer.url(USER_URL, PASSWORD_URL), tls).check()
    assert sentence == (f"Connected to 127.0.0.1:{peer.port} with STARTTLS as {USER}; the server accepts {SENDER} "
                        "as the sender.")
    assert peer.messages == []
    peer.mail_replies.append("553 5.7.1 Sender address rejected: not owned by user")
    with pytest.raises(QuotaExceededError, match=f"refused to send as {SENDER}"):
        channel(peer.url(USER_URL, PASSWORD_URL), tls).check()


# --- what each reply means ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("script", "error", "code", "words"), [
    ({"rcpt": "550 5.1.1 <ann@example.com>: Recipient address rejected: User unknown"}, PermanentError,
     "smtp_550", "The receiving server refused the address ann@example.com (550 5.1.1"),
    ({"rcpt": "450 4.2.1 Mailbox busy, try again later"}, RetryableError, "not_sent",
     "did not accept the address ann@example.com for now (450 4.2.1"),
    ({"data": "451 4.3.0 Temporary local problem"}, RetryableError, "not_sent",
     "did not accept the e-mail for now (451 4.3.0"),
    ({"data": "554 5.6.0 Message content rejected"}, PermanentError, "smtp_554",
     "refused the e-mail to ann@example.com (554 5.6.0"),
    ({"data": "552 5.3.4 Message size exceeds fixed limit"}, PermanentError, "smtp_552", "too large"),
    ({"data": "554 Message rejected: Email address is not verified. The following identities failed the check in "
              "region US-EAST-1: hello@bellavista.example"}, QuotaExceededError, "sender_refused",
     "verify the sender"),
    ({"rcpt": "550 Unauthenticated senders not allowed"}, QuotaExceededError, "sender_refused", "refused to send"),
    ({"mail": "553 5.1.8 Sender address domain does not exist"}, QuotaExceededError, "sender_refused",
     "refused to send as hello@bellavista.example"),
    ({"data": "454 Throttling failure: Maximum sending rate exceeded."}, RetryableError, "rate_limited",
     "asked to slow down"),
    ({"data": "454 Throttling failure: Daily message quota exceeded."}, QuotaExceededError, "quota",
     "sending quota is used up"),
])
def test_what_a_refusal_means(peer, tls, script, error, code, words):
    if "rcpt" in script:
        peer.refuse_rcpt["ann@example.com"] = script["rcpt"]
    if "data" in script:
        peer.data_replies.append(script["data"])
    if "mail" in script:
        peer.mail_replies.append(script["mail"])
    adapter = channel(peer.url(USER_URL, PASSWORD_URL), tls)
    with pytest.raises(error) as caught:
        adapter.send(message())
    assert type(caught.value) is error and caught.value.code == code
    assert words in caught.value.reason, caught.value.reason
    if code == "rate_limited":
        assert caught.value.retry_after
    # the session was reset and is used again for the next e-mail
    adapter.send(message("bo@example.com"))
    assert peer.connections == 1 and [m.rcpt_tos for m in peer.messages][-1] == ["bo@example.com"]


def test_a_lost_answer_after_the_message_may_have_gone_through(peer, tls):
    adapter = channel(peer.url(USER_URL, PASSWORD_URL), tls)
    assert adapter.retry_needs_reconcile is True
    peer.drop_after_data = 1  # the server takes the e-mail, then the connection drops before its answer
    m = message()
    with pytest.raises(RetryableError) as caught:
        adapter.send(m)
    assert caught.value.code == "lost_reply" and "may have been accepted" in caught.value.reason
    assert len(peer.messages) == 1
    with pytest.raises(OutcomeUnknown, match="cannot be asked whether it accepted the message"):
        adapter.reconcile(m, started_at=utcnow())
    adapter.send(message("bo@example.com"))  # a new connection for the next one
    assert peer.connections == 2


def test_timeouts_before_and_after_the_message_was_handed_over():
    # a 10 s lease makes the provider timeout 2.5 s
    with socket.socket() as silent:  # takes connections and never says a word
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        adapter = channel(f"smtp://127.0.0.1:{silent.getsockname()[1]}", scheduler_lease_seconds=10)
        with pytest.raises(RetryableError) as caught:
            adapter.send(message())
        assert caught.value.code == "not_sent" and "at connect" in caught.value.reason
    with SmtpPeer(security="none", reply="plain", data_delay=3.5) as slow:
        adapter = channel(slow.url(), scheduler_lease_seconds=10)
        with pytest.raises(RetryableError) as caught:
            adapter.send(message())
        assert caught.value.code == "lost_reply" and "timed out" in caught.value.reason


def test_nothing_listening_is_not_sent(tls):
    with pytest.raises(RetryableError) as caught:
        channel(f"smtp://{USER_URL}:{PASSWORD_URL}@127.0.0.1:{free_port()}", tls).send(message())
    assert caught.value.code == "not_sent" and "could not be reached" in caught.value.reason


# --- connections --------------------------------------------------------------------------------------------


def test_one_connection_for_many_emails(peer, tls):
    adapter = channel(peer.url(USER_URL, PASSWORD_URL), tls)
    for i in range(25):
        adapter.send(message(f"c{i}@example.com"))
    assert len(peer.messages) == 25 and peer.connections == 1
    assert {m.connection for m in peer.messages} == {1}
    assert len([ok for _, ok in peer.auth_attempts if ok]) == 1  # signed in once


def test_four_threads_share_a_few_connections(peer, tls):
    adapter = channel(peer.url(USER_URL, PASSWORD_URL), tls)
    errors: list[BaseException] = []

    def send(k: int) -> None:
        try:
            for i in range(10):
                adapter.send(message(f"t{k}-{i}@example.com"))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=send, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(peer.per_address()) == 40 and set(peer.per_address().values()) == {1}
    assert 1 <= peer.connections <= 4


def test_a_connection_the_server_closed_is_replaced(tls):
    first = SmtpPeer(security="starttls", users={USER: PASSWORD}, tls=tls).start()
    url = first.url(USER_URL, PASSWORD_URL)
    adapter = channel(url, tls)
    adapter.send(message())
    first.stop()  # the server goes away (and with it the pooled connection)
    with SmtpPeer(security="starttls", users={USER: PASSWORD}, tls=tls, port=first.port) as second:
        adapter.send(message("bo@example.com"))  # nothing reached the dead connection: sent on a new one
        assert [m.rcpt_tos for m in second.messages] == [["bo@example.com"]]


# --- a campaign through the real dispatcher ---------------------------------------------------------------


def test_a_campaign_over_smtp(session, factory, peer, tls, now):
    peer.refuse_rcpt["bad@example.com"] = "550 5.1.1 <bad@example.com>: Recipient address rejected: User unknown"
    peer.refuse_rcpt["busy@example.com"] = "450 4.2.1 Mailbox busy"
    live = settings(peer.url(USER_URL, PASSWORD_URL), tls)
    profile = h.business(session)
    contacts = [{"email": f"c{i}@example.com", "name": f"Pat{i} Doe"} for i in range(8)]
    contacts += [{"email": "bad@example.com", "name": "Bad Address"}, {"email": "busy@example.com", "name": "Busy"}]
    h.add_leads(session, profile, contacts, now=now)
    cid = h.campaign(session, profile, method="email", now=now)
    session.commit()

    report = run_campaign_pass(factory, profile_id=profile.id, campaign_id=cid, now=now, settings=live,
                               worker="smtp-tests")
    assert report.sent == 8
    assert peer.connections <= 4 and len(peer.messages) == 8
    by_address = {m.rcpt_tos[0]: m for m in peer.messages}
    rows = {r.customer_email: r for r in h.recipients(session, cid)}
    assert rows["bad@example.com"].status == "failed"
    assert str(rows["bad@example.com"].error_message).startswith("The receiving server refused the address")
    busy = rows["busy@example.com"]
    assert busy.status == "queued" and busy.next_attempt_at is not None and "450 4.2.1" in str(busy.error_message)
    attempts = {a.recipient_id: a for a in h.attempts(session, cid)}
    for address, got in by_address.items():
        row = rows[address]
        assert row.status == "sent"
        assert attempts[row.id].provider == "smtp" and attempts[row.id].provider_message_id == got.server_id
        assert got.email["Message-ID"] == smtp.message_id_for(attempts[row.id].idempotency_key, SENDER)
        assert got.email["X-SES-MESSAGE-TAGS"].startswith(f"recipient_id={row.id}, campaign_id={cid}, step=0")
        assert got.email["List-Unsubscribe"].startswith(f"<{h.PUBLIC}/unsubscribe/")
    # the busy mailbox is tried again later: the refusal happened before the server took anything
    assert attempts[busy.id].outcome == "retryable" and attempts[busy.id].error_code == "not_sent"
    del peer.refuse_rcpt["busy@example.com"]
    later = busy.next_attempt_at
    assert run_campaign_pass(factory, profile_id=profile.id, campaign_id=cid, now=later, settings=live,
                             worker="smtp-tests").sent == 1
    assert h.recipient(session, cid, "busy@example.com").status == "sent"
    assert peer.per_address()["busy@example.com"] == 1


def test_wrong_credentials_pause_the_campaign_with_the_reason(session, factory, peer, tls, now):
    live = settings(peer.url(USER_URL, "not-the-password"), tls)
    profile = h.business(session)
    h.add_leads(session, profile, [{"email": f"c{i}@example.com"} for i in range(3)], now=now)
    cid = h.campaign(session, profile, method="email", now=now)
    session.commit()
    run_campaign_pass(factory, profile_id=profile.id, campaign_id=cid, now=now, settings=live, worker="smtp-tests")
    row = h.campaign_row(session, cid)
    assert row.status == "paused" and "refused the user name or password" in (row.status_reason or "")
    assert peer.messages == [] and {r.status for r in h.recipients(session, cid)} <= {"pending", "queued"}


# --- Resend: From, Reply-To and Test connection ---------------------------------------------------------------


def resend(url: str, **overrides: Any) -> ResendChannel:
    return ResendChannel(h.live_settings(**({"resend_api_key": DEFAULT_KEY, "resend_base_url": url,
                                             "resend_from": SENDER} | overrides)))


def test_resend_uses_the_shared_sender_and_reply_to(fake_resend: FakeResend):
    m = message()
    result = resend(fake_resend.url, email_from="team@bellavista.example", resend_from=None,
                    email_from_name="Bella Vista Salon", email_reply_to="desk@bellavista.example").send(m)
    payload = fake_resend.emails[result.provider_message_id].payload
    assert payload["from"] == "Bella Vista Salon <team@bellavista.example>"
    assert payload["reply_to"] == "desk@bellavista.example"
    plain = resend(fake_resend.url).send(message())
    assert "reply_to" not in fake_resend.emails[plain.provider_message_id].payload


def test_resend_check(fake_resend: FakeResend):
    assert resend(fake_resend.url).check() == ("Connected to Resend; the domain bellavista.example is verified, so "
                                               f"e-mails go out from {SENDER}.")
    with pytest.raises(QuotaExceededError, match=r"no domain other\.example"):
        resend(fake_resend.url, resend_from="a@other.example").check()
    fake_resend.domains["bellavista.example"] = "pending"
    with pytest.raises(QuotaExceededError, match="is 'pending' in Resend, not verified"):
        resend(fake_resend.url).check()
    with pytest.raises(QuotaExceededError, match="RESEND_API_KEY"):
        resend(fake_resend.url, resend_api_key="re_wrong").check()
    fake_resend.sending_only = True
    assert "sending-only API key" in resend(fake_resend.url).check()
    assert fake_resend.emails == {}

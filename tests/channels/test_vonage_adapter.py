"""The live Vonage adapter against the fake Vonage SMS API (real HTTP on 127.0.0.1, Vonage's shapes)."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

from core.channels import get_channel
from core.channels.base import (
    OutboundMessage,
    OutcomeUnknown,
    PermanentError,
    QuotaExceededError,
    RetryableError,
)
from core.channels.vonage_sms import VonageChannel, client_ref, parse_client_ref
from core.db import utcnow
from core.models import CampaignRecipient, Profile
from core.webhooks import vonage as hooks
from tests.channels.helpers import PUBLIC, add_leads, campaign, live_settings
from tests.fakes import vonage as fv
from tests.fakes.vonage import FakeVonage


@pytest.fixture
def fake() -> Iterator[FakeVonage]:
    with FakeVonage() as server:
        yield server


def vonage_settings(fake: FakeVonage, **overrides: Any):  # type: ignore[no-untyped-def]
    values: dict[str, Any] = {"sms_provider": "vonage", "vonage_api_key": fv.API_KEY,
                              "vonage_api_secret": fv.API_SECRET, "vonage_from": fv.FROM_NUMBER,
                              "vonage_base_url": fake.url, "vonage_signature_secret": fv.SIGNATURE_SECRET,
                              "vonage_max_per_second": 100_000.0}
    return live_settings(**(values | overrides))


def channel(fake: FakeVonage, **overrides: Any) -> VonageChannel:
    return VonageChannel(vonage_settings(fake, **overrides))


def message(**overrides: Any) -> OutboundMessage:
    rid = uuid.uuid4()
    values = dict(channel="sms", to="+12125550101", idempotency_key=f"reengage/{rid}/0", profile_id=uuid.uuid4(),
                  business_name="Bella Vista", campaign_id=uuid.uuid4(), recipient_id=rid, customer_name="Ann Lee",
                  text="Hi Ann, Bella Vista misses you! 20% off this month.\nReply STOP to opt out")
    return OutboundMessage(**(values | overrides))


def test_the_registry_picks_vonage(fake):
    adapter = get_channel("sms", vonage_settings(fake))
    assert isinstance(adapter, VonageChannel) and adapter.provider == "vonage" and adapter.retry_needs_reconcile


def test_a_text_speaks_vonages_shape(fake):
    m = message()
    ch = channel(fake)
    result = ch.send(m)
    (form,) = fake.posts()
    assert form == {"api_key": fv.API_KEY, "api_secret": fv.API_SECRET, "from": fv.FROM_NUMBER, "to": "12125550101",
                    "text": m.text, "type": "text", "client-ref": f"{m.recipient_id.hex}-0",
                    "callback": f"{PUBLIC}/webhooks/vonage/status", "status-report-req": "1"}
    assert len(form["client-ref"]) <= 40 and parse_client_ref(form["client-ref"]) == (m.recipient_id, 0)
    (sent,) = fake.sent_to(m.to)
    assert result.provider_message_id == sent.message_id and result.status == "accepted"
    assert result.detail["segments"] == 1 and result.detail["price"] == float(fv.PRICE)
    # what the dispatcher stores with the try: everything but the credentials
    stored = ch.request_payload(m)
    assert "api_secret" not in stored and "api_key" not in stored and stored["client-ref"] == form["client-ref"]


def test_unicode_and_long_texts_are_counted_in_parts(fake):
    ch = channel(fake)
    emoji = ch.send(message(text="See you soon 😊 — Bella Vista", to="+12125550102"))
    assert fake.posts()[-1]["type"] == "unicode" and emoji.detail["segments"] == 1
    long_text = "We miss you at Bella Vista! " * 15  # 420 GSM-7 characters: three parts of 153
    long = ch.send(message(text=long_text, to="+12125550103"))
    (sent,) = fake.sent_to("+12125550103")
    assert long.detail["segments"] == 3 == len(sent.part_ids) and long.provider_message_id == sent.part_ids[0]
    assert long.detail["message_ids"] == sent.part_ids
    wide = ch.send(message(text="Привет! " * 12, to="+12125550104"))  # 96 UCS-2 units: two parts of 67
    assert fake.posts()[-1]["type"] == "unicode" and wide.detail["segments"] == 2
    test_send = message(recipient_id=None, campaign_id=None, test=True, to="+12125550105")
    ch.send(test_send)
    assert fake.posts()[-1]["client-ref"] == client_ref(test_send) and parse_client_ref(client_ref(test_send)) is None


@pytest.mark.parametrize(("status", "text", "error", "code"), [
    ("1", "Throughput Rate Exceeded - please wait [ 2500 ] and retry", RetryableError, "rate_limited"),
    ("10", "Too many existing binds", RetryableError, "rate_limited"),
    ("5", "Internal Error", RetryableError, "not_sent"),
    ("9", "Partner quota exceeded", QuotaExceededError, "vonage_9"),
    ("4", "Bad Credentials", QuotaExceededError, "vonage_4"),
    ("8", "Account barred", QuotaExceededError, "vonage_8"),
    ("15", "Illegal Sender Address - rejected", QuotaExceededError, "vonage_15"),
    ("2", "Missing to param", PermanentError, "vonage_2"),
    ("3", "Invalid to address", PermanentError, "vonage_3"),
    ("6", "Invalid message", PermanentError, "vonage_6"),
    ("7", "Number barred.", PermanentError, "vonage_7"),
    ("12", "Message too long", PermanentError, "vonage_12"),
    ("22", "Invalid network code", PermanentError, "vonage_22"),
    ("29", "Non White-listed Destination - rejected", PermanentError, "vonage_29"),
    ("33", "Number de-activated", PermanentError, "vonage_33"),
])
def test_status_codes(fake, status, text, error, code):
    fake.fail_next(status=status, error_text=text)
    with pytest.raises(error) as err:
        channel(fake).send(message())
    assert type(err.value) is error and err.value.code == code
    assert f"Vonage {status}: {text}" in err.value.reason
    if error is QuotaExceededError:
        assert "resume the campaign" in err.value.reason
    if status == "1":
        assert err.value.retry_after == 2.5  # Vonage's wait is in milliseconds
    assert fake.messages == {}


def test_refusals_of_the_fake(fake):
    with pytest.raises(QuotaExceededError) as err:
        channel(fake, vonage_api_secret="wrong").send(message())
    assert "VONAGE_API_KEY" in err.value.reason and err.value.code == "vonage_4"
    with pytest.raises(QuotaExceededError) as err:
        channel(fake, vonage_from="12015550999").send(message())
    assert "sender" in err.value.reason
    fake.barred.add("12125550101")
    with pytest.raises(PermanentError) as err:
        channel(fake).send(message())
    assert err.value.code == "vonage_7" and "barred" in err.value.reason
    fake.balance = 0.0
    with pytest.raises(QuotaExceededError) as err:
        channel(fake).send(message(to="+12125550102"))
    assert "top up" in err.value.reason and err.value.code == "vonage_9"
    assert fake.messages == {}


def test_a_callback_longer_than_vonage_takes_is_left_out(fake):
    long_base = "https://" + "x" * 90 + ".example"
    channel(fake, public_base_url=long_base).send(message())
    assert "callback" not in fake.posts()[-1] and len(fake.sent_to("+12125550101")) == 1


def test_some_parts_taken_is_not_sent_again(fake):
    fake.fail_next(status=["0", "1"], error_text="Throughput Rate Exceeded - please wait [ 100 ] and retry")
    with pytest.raises(PermanentError) as err:
        channel(fake).send(message(text="A long one. " * 30))
    assert err.value.code == "partial" and "1 of the 3 parts" in err.value.reason
    (sent,) = fake.messages.values()
    assert len(sent.part_ids) == 1


def test_http_errors_timeouts_and_unreachable_servers(fake):
    fake.fail_next(http_status=500)
    with pytest.raises(RetryableError) as err:
        channel(fake).send(message())
    assert err.value.code == "http_500" and fake.messages == {}  # may have gone out, as far as we know: settled
    fake.fail_next(http_status=503, after_accept=True)
    with pytest.raises(RetryableError) as err:
        channel(fake).send(message())
    assert err.value.code == "http_503" and len(fake.sent_to("+12125550101")) == 1
    fake.fail_next(after_accept=True, delay=3.0)  # taken, but the answer comes after the send timeout (2.5 s)
    with pytest.raises(RetryableError) as err:
        channel(fake, scheduler_lease_seconds=10).send(message(to="+12125550102"))
    assert err.value.code == "timeout" and len(fake.sent_to("+12125550102")) == 1
    with pytest.raises(QuotaExceededError) as err:
        channel(fake, vonage_base_url=fake.url + "/v9").send(message())
    assert "VONAGE_BASE_URL" in err.value.reason
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(RetryableError) as err:
        channel(fake, vonage_base_url=f"http://127.0.0.1:{port}").send(message())
    assert err.value.code == "not_sent"


def test_check_says_the_balance_or_what_is_wrong(fake):
    assert channel(fake).check() == (f"Connected to Vonage with API key {fv.API_KEY}: the balance is 25.00, and "
                                     f"texts go out from {fv.FROM_NUMBER}.")
    with pytest.raises(QuotaExceededError) as err:
        channel(fake, vonage_api_secret="wrong").check()
    assert "VONAGE_API_SECRET" in err.value.reason
    assert fake.posts() == []  # nothing was sent to anyone


def test_a_reply_goes_from_the_number_the_customer_wrote_to(fake):
    fake.numbers.add("12015550777")
    sent_id = channel(fake).reply(to="+12125550101", text="You're unsubscribed.", sender="12015550777")
    (form,) = fake.posts()
    assert form["from"] == "12015550777" and form["to"] == "12125550101" and "client-ref" not in form
    assert fake.sent_to("+12125550101")[0].message_id == sent_id


# --- reconciling a try whose answer was lost ------------------------------------------------------------------


def test_reconcile_reads_the_stored_receipt_or_waits_then_gives_up(fake, engine, session, now):
    profile = Profile(id=uuid.uuid4(), business_name="Bella Vista", email=f"{uuid.uuid4().hex[:8]}@shop.example",
                      consent_policy="none")
    session.add(profile)
    session.flush()
    add_leads(session, profile, [{"phone": "+12125550101", "name": "Ann Lee"}], now=now)
    cid = campaign(session, profile, method="sms", now=now)
    rid = session.scalars(select(CampaignRecipient.id).where(CampaignRecipient.campaign_id == cid)).one()
    session.commit()
    ch = VonageChannel(vonage_settings(fake), factory=sessionmaker(engine, expire_on_commit=False))
    m = message(recipient_id=rid, campaign_id=cid, profile_id=profile.id, idempotency_key=f"reengage/{rid}/0")
    fake.fail_next(http_status=500, after_accept=True)
    with pytest.raises(RetryableError):
        ch.send(m)
    with pytest.raises(RetryableError) as err:  # no receipt yet, and the try is young: asked again later
        ch.reconcile(m, started_at=utcnow() - timedelta(minutes=1), request=ch.request_payload(m))
    assert err.value.code == "too_early"
    with pytest.raises(OutcomeUnknown) as unknown:  # none after ten minutes: nobody can tell
        ch.reconcile(m, started_at=utcnow() - timedelta(minutes=11))
    assert unknown.value.code == "no_receipt"
    # Vonage's receipt arrives, naming the step by its client-ref
    (receipt,) = fake.receipts(next(iter(fake.messages)), "delivered")
    params = hooks.read_params(query="", body=receipt[3], content_type=receipt[2]["Content-Type"])
    hooks.handle_status(session, params=params)
    session.commit()
    found = ch.reconcile(m, started_at=utcnow() - timedelta(minutes=11))
    assert found is not None and found.provider_message_id == next(iter(fake.messages)) and found.status == "delivered"
    # another step of the same recipient is not taken for this one
    with pytest.raises(OutcomeUnknown):
        ch.reconcile(message(recipient_id=rid, step=1), started_at=utcnow() - timedelta(minutes=11))
    with pytest.raises(OutcomeUnknown) as unknown:  # a test send names no recipient: it cannot be looked up
        ch.reconcile(message(recipient_id=None), started_at=utcnow())
    assert unknown.value.code == "no_ref"


# --- Test connection for Twilio too (its adapter's check reads the account, like Vonage's reads the balance) ---


def test_twilio_check_reads_the_account(fake_twilio):
    from core.channels.twilio_sms import TwilioChannel
    from tests.fakes import twilio as ft

    settings = live_settings(twilio=fake_twilio)
    assert TwilioChannel(settings).check() == (f"Connected to Twilio account “Bella Vista SMS” (active); texts go out "
                                               f"from {ft.FROM_NUMBER}.")
    with pytest.raises(QuotaExceededError) as err:
        TwilioChannel(live_settings(twilio=fake_twilio, twilio_auth_token="wrong")).check()
    assert "TWILIO_AUTH_TOKEN" in err.value.reason
    fake_twilio.account_status = "suspended"
    with pytest.raises(QuotaExceededError) as err:
        TwilioChannel(settings).check()
    assert "suspended" in err.value.reason
    assert fake_twilio.posts() == []

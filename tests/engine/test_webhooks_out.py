"""Events out: the outbox delivered to a loopback receiver that verifies every request with the official
``standardwebhooks`` verifier — retries, give-up after 24 hours, 410, crashes, concurrency, SSRF at
delivery time and connections pinned to the address that was checked."""

from __future__ import annotations

import datetime as dt
import itertools
import os
import random
import ssl
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from core import campaigns, consents, outbox, vault
from core.config import get_settings
from core.db import utcnow
from core.errors import Conflict, NotFound
from core.models import WebhookEndpoint, WebhookEvent
from core.webhook_delivery import (
    Answer,
    DeliveryReport,
    HttpSender,
    deliver_due,
    lease_for,
    retry_delay,
    send_test,
    send_test_now,
)
from core.webhook_endpoints import (
    Target,
    UnsafeUrl,
    check_url,
    create_endpoint,
    delete_endpoint,
    delivery_counts,
    get_delivery,
    get_endpoint,
    list_deliveries,
    list_endpoints,
    not_public,
)
from tests.dashboard.conftest import (  # the dashboard's fixtures and readers, for the Settings tab
    Shop,
    _keep_main_module,  # noqa: F401
    app_db,  # noqa: F401
    assert_clean,
    button,
    open_app,
    read,
    shop,  # noqa: F401
    texts,
)
from tests.engine import helpers as h
from tests.fakes.receiver import PATH, Receiver

ROOT = Path(__file__).resolve().parents[2]
KEY = "webhooks-out-tests"


def settings(**kw: Any):
    values: dict[str, Any] = {"secret_key": KEY, "webhooks_allow_private_urls": True, "webhook_timeout_seconds": 5.0}
    values.update(kw)
    return h.settings(**values)


def endpoint(session: Session, profile_id: uuid.UUID, url: str, events: Sequence[str] = ("*",), *, s=None,
             resolver=None) -> tuple[uuid.UUID, str]:
    row, secret = create_endpoint(session, profile_id=profile_id, url=url, events=list(events),
                                  settings=s or settings(), resolver=resolver)
    session.commit()
    return row.id, secret


def deliver(factory: sessionmaker[Session], s=None, **kw: Any) -> DeliveryReport:
    kw.setdefault("rng", random.Random(7))
    return deliver_due(factory, worker=kw.pop("worker", "tests"), settings=s or settings(), **kw)


def log(session: Session, profile_id: uuid.UUID, endpoint_id: uuid.UUID):
    session.commit()
    rows, _ = list_deliveries(session, profile_id=profile_id, endpoint_id=endpoint_id, limit=500)
    session.commit()
    return rows


def announce(session: Session, profile_id: uuid.UUID, type: str = "campaign.started", now: datetime | None = None,
             **data: Any) -> uuid.UUID:
    event_id = outbox.emit(session, profile_id=profile_id, type=type, data={"campaign_id": "c-1", **data}, now=now)
    session.commit()
    assert event_id is not None
    return event_id


# --- pure rules --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("address", "refused"), [
    ("127.0.0.1", "loopback"), ("10.1.2.3", "private"), ("172.16.0.1", "private"), ("192.168.1.1", "private"),
    ("169.254.169.254", "link-local"), ("100.64.0.1", "shared"), ("0.0.0.0", "unspecified"),
    ("224.0.0.1", "multicast"), ("240.0.0.1", "reserved"), ("255.255.255.255", "reserved"),
    ("::1", "loopback"), ("::", "unspecified"), ("fe80::1", "link-local"), ("fc00::1", "private"),
    ("ff02::1", "multicast"), ("::ffff:127.0.0.1", "loopback"), ("::ffff:10.0.0.1", "private"),
    ("::ffff:169.254.169.254", "link-local"), ("2002:7f00:1::", "loopback"), ("64:ff9b::a00:1", "private"),
    ("::a9fe:a9fe", "link-local"),
    ("93.184.216.34", None), ("8.8.8.8", None), ("2606:4700:4700::1111", None), ("::ffff:8.8.8.8", None),
])
def test_which_addresses_are_public(address: str, refused: str | None) -> None:
    why = not_public(address)
    if refused is None:
        assert why is None
    else:
        assert why is not None and refused in why


@pytest.mark.parametrize(("url", "words"), [
    ("ftp://files.example.com/hook", "https:// or http://"),
    ("hooks.example.com/x", "https:// or http://"),
    ("http:///nohost", "host"),
    ("https://user:pw@93.184.216.34/hook", "user name or password"),
    ("http://127.0.0.1:8080/hook", "loopback"),
    ("http://10.0.0.5/hook", "private"),
    ("http://169.254.169.254/latest/meta-data/", "link-local"),
    ("http://[::1]:8080/hook", "loopback"),
    ("http://localhost:8080/hook", "localhost resolves to"),
    ("http://2130706433/hook", "loopback"),  # 127.0.0.1 written as a number
    ("http://[::ffff:7f00:1]/hook", "loopback"),
    ("http://no-such-host.invalid/hook", "could not be found"),
])
def test_unsafe_urls_are_refused_in_a_sentence(url: str, words: str) -> None:
    with pytest.raises(UnsafeUrl) as caught:
        check_url(url, allow_private=False)
    assert words in caught.value.reason and caught.value.errors[0].field == "url"


def test_every_address_of_a_name_must_be_public() -> None:
    table = {"mixed.example": ["93.184.216.34", "10.0.0.7"]}
    with pytest.raises(UnsafeUrl, match=r"10\.0\.0\.7"):
        check_url("https://mixed.example/hook", allow_private=False, resolver=lambda host, port: table[host])
    target = check_url("https://Mixed.Example./hook", allow_private=True, resolver=lambda host, port: table[host])
    assert (target.host, target.port, target.addresses) == ("mixed.example", 443, ("93.184.216.34", "10.0.0.7"))


def test_backoff_doubles_from_thirty_seconds_to_an_hour_with_jitter() -> None:
    rng = random.Random(1)
    for attempt, base in [(1, 30), (2, 60), (3, 120), (4, 240), (7, 1920), (8, 3600), (20, 3600)]:
        delays = [retry_delay(attempt, rng) for _ in range(200)]
        assert min(delays) >= 0.75 * base and max(delays) <= base
        assert max(delays) - min(delays) > 0.1 * base  # spread, not one moment for every receiver
    assert retry_delay(1, rng, retry_after=300) == 300
    assert retry_delay(1, rng, retry_after=99999) == 3600


# --- delivery ------------------------------------------------------------------------------------------


def test_a_started_campaign_arrives_signed(session, factory, now) -> None:
    profile = h.business(session)
    h.add_leads(session, profile, h.emails(2), now=now)
    with Receiver() as r:
        eid, r.secret = endpoint(session, profile.id, r.endpoint, ["campaign.started"])
        cid = h.campaign(session, profile, now=now)  # created and started through core.campaigns
        session.commit()
        report = deliver(factory)
        assert (report.attempted, report.delivered) == (1, 1)
        (got,) = r.received
    assert got.verified, got.error
    assert got.payload["type"] == "campaign.started" and got.payload["data"]["campaign_id"] == str(cid)
    assert got.payload["data"]["status"] == "active" and "test" not in got.payload["data"]
    assert got.id == got.payload["id"] and got.id.startswith("msg_")
    assert got.headers["content-type"] == "application/json" and got.headers["webhook-signature"].startswith("v1,")
    assert set(got.payload) == {"id", "type", "created_at", "data"} and got.payload["created_at"].endswith("Z")
    (entry,) = log(session, profile.id, eid)
    assert (entry.status, entry.attempts, entry.response_status, entry.event_id) == ("delivered", 1, 200, got.id)
    assert entry.delivered_at is not None and entry.last_error is None
    # nothing is due any more: the next run posts nothing
    assert deliver(factory).attempted == 0


def test_a_500_is_retried_under_the_same_id_then_delivered(session, factory) -> None:
    profile = h.business(session)
    start = utcnow()
    with Receiver(answers=(500,)) as r:
        eid, r.secret = endpoint(session, profile.id, r.endpoint)
        event_id = announce(session, profile.id, now=start, name="Zoë's Café ☕")
        first = deliver(factory, now=start)
        assert (first.attempted, first.retrying, first.delivered) == (1, 1, 0)
        (entry,) = log(session, profile.id, eid)
        assert (entry.status, entry.attempts, entry.response_status) == ("pending", 1, 500)
        assert entry.last_error.startswith("answered 500")
        assert timedelta(seconds=22.5) <= entry.next_attempt_at - start <= timedelta(seconds=30)
        assert deliver(factory, now=start + timedelta(seconds=10)).attempted == 0  # not due yet
        second = deliver(factory, now=entry.next_attempt_at)
        assert (second.attempted, second.delivered) == (1, 1)
        one, two = r.received
    assert one.verified and two.verified
    assert one.id == two.id == outbox.event_id_text(event_id)
    assert one.body == two.body  # the same event, byte for byte
    assert one.body.isascii() and one.payload["data"]["name"] == "Zoë's Café ☕"  # escaped, not mangled
    (entry,) = log(session, profile.id, eid)
    assert (entry.status, entry.attempts, entry.response_status, entry.last_error) == ("delivered", 2, 200, None)


def test_a_receiver_that_never_answers_is_tried_for_24_hours_then_failed(session, factory) -> None:
    s = settings(webhook_timeout_seconds=0.05)
    profile = h.business(session)
    start = utcnow()
    with Receiver(default="hang") as r:
        eid, r.secret = endpoint(session, profile.id, r.endpoint)
        event_id = announce(session, profile.id, now=start)
        moment, moments = start, []
        for _ in range(100):
            report = deliver(factory, s, now=moment)
            assert report.attempted == 1
            moments.append(moment)
            (entry,) = log(session, profile.id, eid)
            if entry.status != "pending":
                break
            moment = entry.next_attempt_at
        ids = r.ids()
    assert entry.status == "failed" and entry.next_attempt_at is None and entry.delivered_at is None
    assert entry.attempts == len(moments) == len(ids) and 25 <= len(moments) <= 40
    assert entry.response_status is None and entry.last_error == "no answer within 0.05 s"
    assert set(ids) == {outbox.event_id_text(event_id)}
    assert moments[-1] <= start + timedelta(hours=24) and moments[-1] >= start + timedelta(hours=22)
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(moments)]
    assert 22.5 <= gaps[0] <= 30 and 45 <= gaps[1] <= 60 and max(gaps) <= 3600
    assert all(g >= 2700 for g in gaps[8:])  # an hour apart (less up to a quarter) once the cap is reached
    assert deliver(factory, s, now=start + timedelta(hours=30)).attempted == 0  # failed for good


def test_one_silent_endpoint_does_not_hold_up_the_others(session, factory) -> None:
    s = settings(webhook_timeout_seconds=0.2)
    profile = h.business(session)
    with Receiver(default="hang") as silent, Receiver() as healthy:
        silent_id, silent.secret = endpoint(session, profile.id, silent.endpoint)
        healthy_id, healthy.secret = endpoint(session, profile.id, healthy.endpoint)
        for i in range(5):
            announce(session, profile.id, campaign_id=f"c-{i}")
        report = deliver(factory, s, concurrency=2)
        # those already in flight time out; after that its other deliveries wait for a later run
        assert 1 <= len(silent.received) <= 2
        assert len(healthy.verified()) == 5 and report.delivered == 5
    entries = log(session, profile.id, silent_id)
    assert sum(e.attempts for e in entries) == len(silent.received)
    assert all(e.status == "pending" for e in entries)
    assert {e.status for e in log(session, profile.id, healthy_id)} == {"delivered"}


def test_410_disables_the_endpoint(session, factory) -> None:
    profile = h.business(session)
    with Receiver(answers=(410,)) as r:
        eid, r.secret = endpoint(session, profile.id, r.endpoint)
        for i in range(3):
            announce(session, profile.id, campaign_id=f"c-{i}")
        report = deliver(factory, concurrency=1)
        assert (report.attempted, report.disabled) == (1, 1)
        assert len(r.received) == 1
        # nothing more is written for it, and a test event is refused with the reason
        assert outbox.emit(session, profile_id=profile.id, type="campaign.paused", data={}) is None
        session.commit()
        with pytest.raises(Conflict, match="410 Gone"):
            send_test(session, profile_id=profile.id, endpoint_id=eid)
        session.rollback()
        assert deliver(factory).attempted == 0
    row = get_endpoint(session, profile_id=profile.id, endpoint_id=eid)
    assert row.disabled_at is not None and "410 Gone" in row.disabled_reason
    entries = log(session, profile.id, eid)
    assert [e.status for e in entries] == ["failed"] * 3
    assert sorted(e.response_status or 0 for e in entries) == [0, 0, 410]
    assert sum("disabled" in (e.last_error or "") for e in entries) == 2


def test_a_2xx_counts_when_it_arrives_whatever_follows(session, factory) -> None:
    s = settings(webhook_timeout_seconds=0.3)
    profile = h.business(session)
    with Receiver(answers=("stall",)) as r:
        eid, r.secret = endpoint(session, profile.id, r.endpoint)
        announce(session, profile.id)
        assert deliver(factory, s).delivered == 1
    assert log(session, profile.id, eid)[0].status == "delivered"


def test_a_redirect_is_not_followed(session, factory) -> None:
    profile = h.business(session)
    with Receiver(answers=(302,)) as r:
        eid, r.secret = endpoint(session, profile.id, r.endpoint)
        announce(session, profile.id)
        assert deliver(factory).retrying == 1
        assert len(r.received) == 1
    (entry,) = log(session, profile.id, eid)
    assert entry.response_status == 302 and "redirects are not followed" in entry.last_error


def test_retry_after_of_a_429_is_honoured(session, factory) -> None:
    profile = h.business(session)
    start = utcnow()
    with Receiver(answers=(429,)) as r:
        eid, r.secret = endpoint(session, profile.id, r.endpoint)
        announce(session, profile.id, now=start)
        deliver(factory, now=start, rng=random.Random(3))
    (entry,) = log(session, profile.id, eid)
    assert entry.response_status == 429 and entry.next_attempt_at - start >= timedelta(seconds=22.5)


# --- the outbox across crashes -------------------------------------------------------------------------


def test_an_event_whose_transaction_rolled_back_is_never_delivered(session, factory, now) -> None:
    profile = h.business(session)
    h.add_leads(session, profile, h.emails(1), now=now)
    with Receiver() as r:
        _eid, r.secret = endpoint(session, profile.id, r.endpoint)
        cid = h.campaign(session, profile, now=now, start=False)
        session.commit()
        campaigns.start_campaign(session, profile_id=profile.id, campaign_id=cid, now=now)
        session.rollback()  # the start never happened: neither did its announcement
        assert deliver(factory).attempted == 0
        assert r.received == []
        assert session.scalars(select(WebhookEvent)).all() == []
        session.commit()


class Crash(BaseException):
    """The process dies (kill -9): nothing after this point is recorded."""


def test_a_worker_that_dies_after_the_receiver_got_it_delivers_again_under_the_same_id(session, factory) -> None:
    s = settings()
    profile = h.business(session)
    start = utcnow()
    with Receiver() as r:
        eid, r.secret = endpoint(session, profile.id, r.endpoint)
        event_id = announce(session, profile.id, now=start)
        other = announce(session, profile.id, type="campaign.paused", now=start + timedelta(seconds=1))
        real = HttpSender()

        def dying(target: Target, headers: Mapping[str, str], body: bytes, timeout: float) -> Answer:
            real(target, headers, body, timeout)
            raise Crash()

        with pytest.raises(Crash):
            deliver(factory, s, now=start, sender=dying, concurrency=1, only=[_delivery_of(session, event_id)])
        assert len(r.received) == 1 and r.received[0].answer == 200
        entry = next(e for e in log(session, profile.id, eid) if e.event_id == outbox.event_id_text(event_id))
        assert (entry.status, entry.attempts) == ("pending", 1)  # the 200 was never recorded
        # the lease holds it while the dead process might still be working on it
        within = deliver(factory, s, now=start + timedelta(seconds=60))
        assert within.attempted == 1  # the other event only
        later = deliver(factory, s, now=start + lease_for(s) + timedelta(seconds=1))
        assert later.delivered == 1
        by_id: dict[str | None, set[bytes]] = {}
        for got in r.received:
            assert got.verified, got.error
            by_id.setdefault(got.id, set()).add(got.body)
    # at least once: the first event twice under its id, never two different events under one id
    assert r.ids().count(outbox.event_id_text(event_id)) == 2 and r.ids().count(outbox.event_id_text(other)) == 1
    assert all(len(bodies) == 1 for bodies in by_id.values())
    assert {e.status for e in log(session, profile.id, eid)} == {"delivered"}


def _delivery_of(session: Session, event_id: uuid.UUID) -> uuid.UUID:
    from core.models import WebhookDelivery

    found = session.scalar(select(WebhookDelivery.id).where(WebhookDelivery.event_id == event_id))
    session.commit()
    assert found is not None
    return found


def test_kill_9_while_the_receiver_holds_the_request(db_url, session, factory) -> None:
    s = settings()
    profile = h.business(session)
    with Receiver(answers=("hang",)) as r:
        eid, r.secret = endpoint(session, profile.id, r.endpoint)
        event_id = announce(session, profile.id)
        env = {**os.environ, "DATABASE_URL": db_url, "SECRET_KEY": KEY, "WEBHOOKS_ALLOW_PRIVATE_URLS": "true",
               "WEBHOOK_TIMEOUT_SECONDS": "30", "LOG_LEVEL": "WARNING"}
        code = "from core.webhook_delivery import deliver_due; from core.db import session_factory; " \
               "deliver_due(session_factory(), worker='doomed')"
        proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env)
        try:
            assert r.arrived.wait(60), "the delivery process never posted"
        finally:
            proc.kill()
            proc.wait(30)
        r.release()
        (entry,) = log(session, profile.id, eid)
        assert (entry.status, entry.attempts) == ("pending", 1)
        assert deliver(factory, s).attempted == 0  # its lease is not over yet
        report = deliver(factory, s, now=utcnow() + lease_for(s) + timedelta(seconds=1))
        assert report.delivered == 1
        first, second = r.received
    assert first.answer is None and second.answer == 200
    assert first.id == second.id == outbox.event_id_text(event_id) and first.body == second.body
    assert first.verified and second.verified


def test_two_workers_deliver_each_event_once(session, factory) -> None:
    profile = h.business(session)
    with Receiver() as r:
        _eid, r.secret = endpoint(session, profile.id, r.endpoint)
        ids = {outbox.event_id_text(announce(session, profile.id, campaign_id=f"c-{i}")) for i in range(12)}
        reports: list[DeliveryReport] = []
        workers = [threading.Thread(target=lambda w=w: reports.append(deliver(factory, worker=w, concurrency=3)))
                   for w in ("one", "two")]
        for t in workers:
            t.start()
        for t in workers:
            t.join(60)
        assert sorted(r.ids()) == sorted(ids)  # each once
        assert sum(x.delivered for x in reports) == 12


# --- where the connection goes -------------------------------------------------------------------------


def test_the_connection_goes_to_the_checked_address_with_the_urls_host_name(session, factory) -> None:
    profile = h.business(session)
    with Receiver() as r:
        port = r._server.server_address[1]
        # 127.0.0.2 refuses (nothing listens there): the next address of the name is tried
        names = {"receiver.test": ["127.0.0.2", "127.0.0.1"]}
        resolve: Callable[[str, int], list[str]] = lambda host, _port: names[host]  # noqa: E731
        _eid, r.secret = endpoint(session, profile.id, f"http://receiver.test:{port}{PATH}", resolver=resolve)
        announce(session, profile.id)
        assert deliver(factory, resolver=resolve).delivered == 1
        (got,) = r.received
    assert got.headers["host"] == f"receiver.test:{port}" and got.verified


def test_a_name_that_turns_private_after_it_was_checked_gets_nothing(session, factory) -> None:
    """DNS rebinding: public when the endpoint was saved, loopback when the event is delivered."""
    strict = settings(webhooks_allow_private_urls=False)
    profile = h.business(session)
    with Receiver() as r:
        port = r._server.server_address[1]
        names = {"hooks.shop.example": ["93.184.216.34"]}
        resolve: Callable[[str, int], list[str]] = lambda host, _port: names[host]  # noqa: E731
        eid, r.secret = endpoint(session, profile.id, f"http://hooks.shop.example:{port}{PATH}", s=strict,
                                 resolver=resolve)
        names["hooks.shop.example"] = ["127.0.0.1"]
        announce(session, profile.id)
        report = deliver(factory, strict, resolver=resolve)
        assert (report.attempted, report.retrying) == (1, 1)
        assert r.received == []
    (entry,) = log(session, profile.id, eid)
    assert entry.response_status is None and "loopback" in entry.last_error and entry.status == "pending"


def _tls_pair(tmp: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A private CA, a certificate for receiver.test signed by it; the server's and the client's contexts."""
    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    today = datetime.now(dt.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(name("Test CA")).issuer_name(name("Test CA"))
          .public_key(ca_key.public_key()).serial_number(1).not_valid_before(today - timedelta(days=1))
          .not_valid_after(today + timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    leaf = (x509.CertificateBuilder().subject_name(name("receiver.test")).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(2).not_valid_before(today - timedelta(days=1))
            .not_valid_after(today + timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("receiver.test")]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    (tmp / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (tmp / "leaf.pem").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    (tmp / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                    serialization.NoEncryption()))
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(tmp / "leaf.pem", tmp / "key.pem")
    return server, ssl.create_default_context(cafile=str(tmp / "ca.pem"))


def test_https_keeps_the_host_name_for_sni_and_the_certificate(session, factory, tmp_path) -> None:
    server_ctx, client_ctx = _tls_pair(tmp_path)
    names_seen: list[str | None] = []
    server_ctx.sni_callback = lambda sock, server_name, ctx: names_seen.append(server_name)  # type: ignore[assignment]
    profile = h.business(session)
    sender = HttpSender(verify=client_ctx)
    with Receiver() as r:
        r._server.socket = server_ctx.wrap_socket(r._server.socket, server_side=True)
        port = r._server.server_address[1]
        resolve: Callable[[str, int], list[str]] = lambda host, _port: ["127.0.0.1"]  # noqa: E731
        good, r.secret = endpoint(session, profile.id, f"https://receiver.test:{port}{PATH}", ["campaign.started"],
                                  resolver=resolve)
        # the same server under another name: its certificate does not name it, so nothing is sent
        bad, _ = endpoint(session, profile.id, f"https://other.test:{port}{PATH}", ["campaign.started"],
                          resolver=resolve)
        announce(session, profile.id)
        report = deliver(factory, resolver=resolve, sender=sender)
        assert (report.delivered, report.retrying) == (1, 1)
        (got,) = r.received
    assert got.verified and got.headers["host"] == f"receiver.test:{port}"
    assert "receiver.test" in names_seen
    (failed,) = log(session, profile.id, bad)
    assert failed.status == "pending" and "certificate" in failed.last_error.lower()
    assert log(session, profile.id, good)[0].status == "delivered"


# --- subscriptions, test events, state changes through the real code ----------------------------------


def test_each_endpoint_gets_the_types_it_asked_for(session, factory, now) -> None:
    profile, stranger = h.business(session), h.business(session, name="Studio Nine")
    h.add_leads(session, profile, h.emails(1), now=now)
    with Receiver() as picky, Receiver() as everything, Receiver() as other_business:
        _a, picky.secret = endpoint(session, profile.id, picky.endpoint, ["campaign.started"])
        _b, everything.secret = endpoint(session, profile.id, everything.endpoint, ["*"])
        _c, other_business.secret = endpoint(session, stranger.id, other_business.endpoint, ["*"])
        cid = h.campaign(session, profile, now=now)
        campaigns.pause_campaign(session, profile_id=profile.id, campaign_id=cid, now=now)
        session.commit()
        deliver(factory)
        assert [p["type"] for p in picky.verified()] == ["campaign.started"]
        assert sorted(p["type"] for p in everything.verified()) == ["campaign.paused", "campaign.started"]
        assert other_business.received == []


def test_a_test_event_is_shaped_like_the_type_and_says_test(session, factory) -> None:
    profile = h.business(session)
    with Receiver() as r:
        eid, r.secret = endpoint(session, profile.id, r.endpoint, ["recipient.converted", "campaign.started"])
        entry = send_test_now(factory, profile_id=profile.id, endpoint_id=eid, settings=settings())
        (got,) = r.verified()
    assert (entry.status, entry.test, entry.event_type, entry.attempts) == ("delivered", True, "recipient.converted", 1)
    assert got["type"] == "recipient.converted" and got["data"]["test"] is True
    assert {"recipient_id", "campaign_id", "customer_name"} <= set(got["data"])
    assert got["id"] == entry.event_id


def test_another_business_reaches_nothing_of_an_endpoint(session, factory) -> None:
    a_id, b_id = h.business(session).id, h.business(session, name="Studio Nine").id
    session.commit()  # ids in hand: a rollback below expires the objects, reading them would lock SQLite
    with Receiver() as r:
        eid, r.secret = endpoint(session, a_id, r.endpoint)
        announce(session, a_id)
        for call in (lambda: get_endpoint(session, profile_id=b_id, endpoint_id=eid),
                     lambda: list_deliveries(session, profile_id=b_id, endpoint_id=eid),
                     lambda: delete_endpoint(session, profile_id=b_id, endpoint_id=eid),
                     lambda: send_test(session, profile_id=b_id, endpoint_id=eid),
                     lambda: outbox.emit_to(session, profile_id=b_id, endpoint_id=eid, type="recipient.sent",
                                            data={}),
                     lambda: send_test_now(factory, profile_id=b_id, endpoint_id=eid, settings=settings())):
            with pytest.raises(NotFound):
                call()
            session.rollback()
        (entry,) = log(session, a_id, eid)
        with pytest.raises(NotFound):
            get_delivery(session, profile_id=b_id, delivery_id=entry.id)
        session.rollback()
        assert list_endpoints(session, profile_id=b_id) == [] and delivery_counts(session, profile_id=b_id) == {}
        assert [e.id for e in list_endpoints(session, profile_id=a_id)] == [eid]
        assert delivery_counts(session, profile_id=a_id) == {eid: {"pending": 1, "delivered": 0, "failed": 0}}
        session.commit()
        assert r.received == []  # nothing was sent on B's behalf


def test_the_secret_is_stored_encrypted(session) -> None:
    profile = h.business(session)
    eid, secret = endpoint(session, profile.id, "http://127.0.0.1:9/hook")
    stored = session.get(WebhookEndpoint, eid).secret
    assert secret.startswith("whsec_") and secret not in stored and secret[6:] not in stored
    assert vault.decrypt(stored, settings()) == secret
    session.commit()


def test_a_positive_text_reply_arrives_as_recipient_converted(session, factory, now) -> None:
    from core.dispatch import run_campaign_pass
    from core.webhooks import twilio as twilio_hooks

    s = settings()
    profile = h.business(session)
    phone = "+12125550177"
    h.add_leads(session, profile, [{"phone": phone, "name": "Ann Lee"}], now=now)
    consents.record_consent(session, profile_id=profile.id, contact=phone, channel="sms", level="express_written",
                            source="api", captured_at=now - timedelta(days=30), now=now)
    with Receiver() as r:
        _eid, r.secret = endpoint(session, profile.id, r.endpoint, ["recipient.responded", "recipient.converted"])
        cid = h.campaign(session, profile, method="sms", now=now)
        session.commit()
        sms = h.Scripted("sms", provider="twilio")  # accepts every text (the sandbox fails a few at random)
        sent = run_campaign_pass(factory, profile_id=profile.id, campaign_id=cid, now=now, settings=s, worker="t",
                                 adapters={"sms": sms})
        assert sent.sent == 1
        with factory() as tx, tx.begin():
            twilio_hooks.handle_inbound(tx, params={"MessageSid": "SM" + uuid.uuid4().hex, "From": phone,
                                                    "To": "+12125550100", "Body": "Yes please, book me in!"})
        deliver(factory, s)
        got = {p["type"]: p for p in r.verified()}
    (recipient,) = h.recipients(session, cid)
    assert set(got) == {"recipient.responded", "recipient.converted"}
    data = got["recipient.converted"]["data"]
    assert data["recipient_id"] == str(recipient.id) and data["campaign_id"] == str(cid)
    assert data["customer_phone"] == phone and "test" not in data


# --- the Settings tab ----------------------------------------------------------------------------------


@pytest.fixture
def dashboard(db_url: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Shop:
    """A business signed in to the dashboard, whose server has a SECRET_KEY and allows the loopback receiver."""
    request.getfixturevalue("app_db")
    monkeypatch.setenv("SECRET_KEY", KEY)
    monkeypatch.setenv("WEBHOOKS_ALLOW_PRIVATE_URLS", "true")
    get_settings.cache_clear()
    return request.getfixturevalue("shop")


def test_the_settings_tab_adds_tests_logs_and_deletes(dashboard, engine) -> None:
    with Receiver() as r:
        at = open_app(dashboard, "settings")
        assert "No endpoints yet" in texts(at)
        at.text_input(key="new_endpoint_url").input(r.endpoint)
        at.text_input(key="new_endpoint_note").input("n8n: bookings to the CRM")
        button(at, "Add endpoint").click().run()
        assert_clean(at)
        # other code blocks on the page show the provider webhook addresses; the new secret is its own
        (shown,) = [c for c in at.code if c.value.startswith("whsec_")]
        r.secret = shown.value
        assert "shown only once" in texts(at)
        button(at, "I have copied the secret").click().run()
        assert not [c for c in at.code if c.value.startswith("whsec_")]
        assert "n8n: bookings to the CRM" in texts(at) and "every event" in texts(at)
        button(at, "Send test event").click().run()
        assert_clean(at)
        (got,) = r.verified()
        assert got["type"] == "recipient.sent" and got["data"]["test"] is True
        assert any("Test event delivered" in t.value for t in at.toast)
        log_table = at.dataframe[-1].value
        assert list(log_table["state"]) == ["Delivered"] and list(log_table["event_id"]) == [got["id"]]
        assert "1 delivered, 0 waiting, 0 failed" in texts(at)
    button(at, "Delete…").click().run()
    button(at, "Delete the endpoint").click().run()
    assert_clean(at)
    assert "No endpoints yet" in texts(at)
    assert read(engine, lambda s: s.scalars(select(WebhookEndpoint)).all()) == []


def test_the_settings_tab_says_why_an_address_is_refused(dashboard, monkeypatch) -> None:
    monkeypatch.setenv("WEBHOOKS_ALLOW_PRIVATE_URLS", "false")
    get_settings.cache_clear()
    at = open_app(dashboard, "settings")
    at.text_input(key="new_endpoint_url").input("http://169.254.169.254/latest/meta-data/")
    button(at, "Add endpoint").click().run()
    assert any("link-local" in e.value and "public addresses" in e.value for e in at.error)
    assert not [c for c in at.code if c.value.startswith("whsec_")]  # no endpoint, no secret

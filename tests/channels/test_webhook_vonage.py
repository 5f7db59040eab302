"""``/webhooks/vonage/status`` and ``/webhooks/vonage/inbound``: Vonage's signature (checked against the official
SDK), delivery receipts, texts customers send, and whole campaigns through the real dispatcher and the fake
Vonage — including a try whose answer was lost, settled by the receipt that came instead."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from vonage_http_client import Auth

import api
from core import senders
from core.config import Settings
from core.models import OutreachAttempt, Profile
from core.scheduling import tick
from core.webhooks import vonage as hooks
from tests.channels import helpers as h
from tests.fakes import vonage as fv
from tests.fakes.vonage import FakeVonage

ANN, BO, CY = "+12125550101", "+12125550102", "+12125550103"

# --- the signature, against Vonage's own SDK and a vector computed by hand -----------------------------------

PARAMS = {"msisdn": "447700900001", "to": "12015550100", "messageId": "0A0000000123ABCD1", "text": "Hi&there=you",
          "type": "text", "keyword": "HI", "api-key": "a1b2c3d4", "message-timestamp": "2026-06-15 15:00:00",
          "timestamp": "1781535600", "nonce": "6ba0a7e8-2d63-4a6d-b1a4-5c2e1f2a9d10"}


@pytest.mark.parametrize("method", ["md5", "sha1", "sha256", "sha512"])
def test_hmac_signatures_are_the_sdks(method):
    ours = hooks.signature(PARAMS, secret="my-secret", method=method)
    assert ours == Auth(api_key="a1b2c3d4", signature_secret="my-secret", signature_method=method).sign_params(
        dict(PARAMS))
    assert Auth(api_key="a1b2c3d4", signature_secret="my-secret", signature_method=method).check_signature(
        {**PARAMS, "sig": ours.upper()})  # compared in lower case
    assert ours != hooks.signature({**PARAMS, "text": "Hi there"}, secret="my-secret", method=method)


def test_the_md5_hash_method_by_hand():
    # md5("&a=1&b=x_y_z&msisdn=447700900001&text=Hi_there_you&timestamp=1700000000" + "my-secret")
    params = {"a": "1", "b": "x&y=z", "msisdn": "447700900001", "text": "Hi&there=you", "timestamp": "1700000000",
              "sig": "ignored"}
    assert hooks.signature(params, secret="my-secret", method="md5hash") == "8a7d7a07faec5ee7a89152bcd57ef310"


# --- the world: a business, the fake Vonage, the API, the dispatcher ---------------------------------------------


@dataclass
class World:
    session: Session
    factory: sessionmaker[Session]
    client: TestClient
    fake: FakeVonage
    settings: Settings
    profile: Profile
    now: datetime

    def send(self, method: str, url: str, headers: dict[str, str], body: bytes) -> Any:
        """Make a request Vonage makes to PUBLIC_BASE_URL/…, as the proxy in front of the API would."""
        parts = urlsplit(url)
        assert f"{parts.scheme}://{parts.netloc}" == h.PUBLIC, url
        return self.client.request(method, parts.path + (f"?{parts.query}" if parts.query else ""),
                                   content=body or None, headers=headers)

    def deliver(self, requests: list[fv.Request], status: int = 200) -> list[Any]:
        answers = [self.send(*r) for r in requests]
        assert [a.status_code for a in answers] == [status] * len(answers), [a.text for a in answers]
        return answers

    def campaign(self, phones: list[str], **fields: Any) -> uuid.UUID:
        h.add_leads(self.session, self.profile, [{"phone": p, "name": f"Pat{i} Lee"} for i, p in enumerate(phones)],
                    now=self.now)
        cid = h.campaign(self.session, self.profile, method="sms", now=self.now, **fields)
        self.session.commit()
        return cid

    def run(self, cid: uuid.UUID, at: datetime | None = None) -> Any:
        return h.run(self.factory, self.profile.id, cid, at or self.now, self.settings)


@pytest.fixture
def fake() -> Iterator[FakeVonage]:
    with FakeVonage(status_url=f"{h.PUBLIC}/webhooks/vonage/status",
                    inbound_url=f"{h.PUBLIC}/webhooks/vonage/inbound") as server:
        yield server


@pytest.fixture
def world(session, factory, engine, db_url, fake, now) -> Iterator[World]:
    settings = h.live_settings(
        sms_provider="vonage", vonage_api_key=fv.API_KEY, vonage_api_secret=fv.API_SECRET, vonage_from=fv.FROM_NUMBER,
        vonage_base_url=fake.url, vonage_signature_secret=fv.SIGNATURE_SECRET, vonage_signature_method="md5hash",
        vonage_max_per_second=100_000.0, database_url=db_url)
    profile = Profile(id=uuid.uuid4(), business_name="Bella Vista", email=f"{uuid.uuid4().hex[:8]}@shop.example",
                      phone="+12015550188", consent_policy="none")
    session.add(profile)
    session.commit()
    with TestClient(api.create_app(engine=engine, settings=settings), base_url="http://api.internal:8000") as client:
        yield World(session, factory, client, fake, settings, profile, now)


@pytest.fixture
def texts(world) -> tuple[uuid.UUID, dict[str, str]]:
    """An SMS campaign of three customers, one pass run: three texts at the fake; ``(campaign, message ids)``."""
    cid = world.campaign([ANN, BO, CY])
    assert world.run(cid).sent == 3
    return cid, {p: world.fake.sent_to(p)[0].message_id for p in (ANN, BO, CY)}


# --- delivery receipts -------------------------------------------------------------------------------------------


def test_a_campaign_is_delivered_and_a_replay_changes_nothing(world, texts):
    cid, ids = texts
    form = world.fake.messages[ids[ANN]].form
    assert form["client-ref"] == f"{h.recipient(world.session, cid, ANN).id.hex}-0"
    assert form["callback"] == f"{h.PUBLIC}/webhooks/vonage/status"
    # Vonage calls by GET, POST (a form) or POST-JSON, as its dashboard says
    for phone, how in ((ANN, "POST"), (BO, "GET"), (CY, "POST-JSON")):
        (answer,) = world.deliver(world.fake.receipts(ids[phone], "delivered", how=how))
        assert answer.json() == {"received": 1, "applied": 1, "replayed": 0, "ignored": 0}, how
        r = h.recipient(world.session, cid, phone)
        assert r.status == "delivered" and r.delivered_at is not None, how
    event = next(e for e in h.events(world.session, provider="vonage") if e.provider_message_id == ids[ANN])
    assert event.provider_event_id == f"{ids[ANN]}:delivered" and event.payload["client_ref"] == form["client-ref"]
    before = h.snapshot(world.session)
    (again,) = world.deliver(world.fake.receipts(ids[ANN], "delivered"))
    assert again.json()["replayed"] == 1 and h.snapshot(world.session) == before
    assert h.results_match(world.session, cid)["delivered_count"] == 3


def test_failed_receipts_say_why_and_are_not_opt_outs(world, texts):
    cid, ids = texts
    world.deliver(world.fake.receipts(ids[ANN], "failed", err_code="3"))
    world.deliver(world.fake.receipts(ids[BO], "rejected", err_code="4"))
    world.deliver(world.fake.receipts(ids[CY], "buffered"))
    ann, bo, cy = (h.recipient(world.session, cid, p) for p in (ANN, BO, CY))
    assert ann.status == "failed" and "no longer in service" in ann.error_message
    assert bo.status == "failed" and "bars texts" in bo.error_message and "error 4" in bo.error_message
    assert cy.status == "sent"  # buffered: on the timeline only
    assert h.opt_outs(world.session, world.profile.id) == set()
    assert [e.type for e in h.events(world.session, provider="vonage")] == ["failed", "failed", "status"]
    h.results_match(world.session, cid)


FORGERIES = ("wrong-secret", "no-sig", "tampered", "stale", "future", "other-method")


def test_a_bad_signature_changes_nothing(world, texts):
    _, ids = texts
    for forgery in FORGERIES:
        kwargs: dict[str, Any] = {"secret": "not-the-secret"} if forgery == "wrong-secret" else {}
        if forgery in ("stale", "future"):
            kwargs["timestamp"] = time.time() + (6 * 60 if forgery == "future" else -6 * 60)
        # "other-method": the dashboard says one method, our settings another
        world.fake.signature_method = "sha256" if forgery == "other-method" else "md5hash"
        (request,) = world.fake.receipts(ids[ANN], "delivered", **kwargs)
        method, url, headers, body = request
        if forgery == "no-sig":
            body = b"&".join(p for p in body.split(b"&") if not p.startswith(b"sig="))
        if forgery == "tampered":
            body = body.replace(b"status=delivered", b"status=failed")
        before = h.snapshot(world.session)
        answer = world.send(method, url, headers, body)
        assert answer.status_code == 401, (forgery, answer.text)
        assert h.snapshot(world.session) == before, forgery
    # the same receipt, signed as it should be, is taken: the refusals above were the forgeries'
    world.fake.signature_method = "md5hash"
    world.deliver(world.fake.receipts(ids[ANN], "delivered"))


def test_without_a_secret_everything_is_refused(world, texts, engine):
    _, ids = texts
    app = api.create_app(engine=engine, settings=world.settings.model_copy(update={"vonage_signature_secret": None}))
    with TestClient(app) as c:
        for request in (world.fake.receipts(ids[ANN])[0], world.fake.inbound(ANN, "STOP")[0]):
            method, url, headers, body = request
            answer = c.request(method, urlsplit(url).path, content=body, headers=headers)
            assert answer.status_code == 401 and "VONAGE_SIGNATURE_SECRET" in answer.json()["detail"]


def test_a_business_with_its_own_vonage_account_signs_with_its_own_secret(world, texts):
    own = Profile(id=uuid.uuid4(), business_name="Own Number Spa", email=f"{uuid.uuid4().hex[:8]}@spa.example",
                  sms_from="+12015550777", consent_policy="none")
    senders.store_secrets(own, {"vonage_api_key": "spa-key", "vonage_api_secret": "spa-secret",
                                "vonage_signature_secret": "spa-signature-secret"}, world.settings)
    world.session.add(own)
    world.session.commit()
    params = {"msisdn": "12125550109", "to": "12015550777", "messageId": "0B00000000000001", "text": "Hello",
              "type": "text", "api-key": "spa-key"}
    world.deliver([world.fake.signed(f"{h.PUBLIC}/webhooks/vonage/inbound", params, secret="spa-signature-secret")])
    # its secret does not sign for the platform's number, nor for another account's key
    world.deliver([world.fake.signed(f"{h.PUBLIC}/webhooks/vonage/inbound", {**params, "to": fv.FROM_NUMBER},
                                     secret="spa-signature-secret")], status=401)
    world.deliver([world.fake.signed(f"{h.PUBLIC}/webhooks/vonage/inbound", {**params, "api-key": "other"},
                                     secret="spa-signature-secret")], status=401)


# --- texts customers send ----------------------------------------------------------------------------------------


def test_stop_opts_out_with_one_reply_and_the_next_send_skips_the_number(world, texts):
    first, _ = texts
    waiting = world.campaign([])  # the same three customers, already selected when Ann says stop
    posts = len(world.fake.posts())
    request = world.fake.inbound(ANN, "Please stop texting me 🙏")
    (answer,) = world.deliver(request)
    assert answer.json()["applied"] == 1
    assert (ANN, "sms", "sms_stop") in h.opt_outs(world.session, world.profile.id)
    assert h.recipient(world.session, first, ANN).status == "opted_out"
    (reply,) = world.fake.posts()[posts:]  # the one confirmation, from the number Ann wrote to
    assert reply["to"] == ANN.removeprefix("+") and reply["from"] == fv.FROM_NUMBER
    assert reply["text"] == ("You're unsubscribed from Bella Vista and will get no more texts. Reply START to "
                             "resubscribe.")
    (again,) = world.deliver(request)  # Vonage sends it again: nothing changes, no second reply
    assert again.json()["replayed"] == 1 and len(world.fake.posts()) == posts + 1
    report = world.run(waiting)
    assert (report.sent, report.opted_out) == (2, 1)
    campaign_texts = {p: [m for m in world.fake.sent_to(p) if m.client_ref] for p in (ANN, BO, CY)}
    assert [len(campaign_texts[p]) for p in (ANN, BO, CY)] == [1, 2, 2]  # Vonage never heard of Ann again
    assert h.recipient(world.session, waiting, ANN).status == "opted_out"
    h.results_match(world.session, waiting)


def test_a_long_text_in_parts_is_read_whole(world, texts):
    cid, _ = texts
    text = ("Hi, it's Bo. Thanks for thinking of me, but I moved to another city last spring, so please remove me "
            "from your list. All the best to the team!")
    parts = world.fake.inbound(BO, text, part_size=50, how="POST-JSON")
    assert len(parts) == 3
    world.deliver([parts[2], parts[0]])
    assert h.opt_outs(world.session, world.profile.id) == set()  # not whole yet
    world.deliver([parts[1]])
    assert (BO, "sms", "sms_stop") in h.opt_outs(world.session, world.profile.id)
    stop = [e for e in h.events(world.session, provider="vonage") if e.type == "opted_out"]
    assert len(stop) == 1 and stop[0].payload["text"] == text
    world.deliver([parts[1]])  # a part sent again after the whole was read changes nothing
    assert len([e for e in h.events(world.session, provider="vonage") if e.type == "opted_out"]) == 1
    # a reply in two parts is a response
    world.deliver(world.fake.inbound(CY, "Yes please, book me in for Saturday morning if you can!", part_size=30,
                                     how="GET"))
    r = h.recipient(world.session, cid, CY)
    assert r.converted and r.response_data["reply"] == "Yes please, book me in for Saturday morning if you can!"


def test_start_and_help_are_answered_through_the_sms_api(world, texts):
    world.deliver(world.fake.inbound(ANN, "STOP"))
    posts = len(world.fake.posts())
    world.deliver(world.fake.inbound(ANN, "START"))
    world.deliver(world.fake.inbound(ANN, "help"))
    assert [p["text"] for p in world.fake.posts()[posts:]] == [
        "You're subscribed again to texts from Bella Vista. Reply STOP to opt out.",
        "Bella Vista. Call us at +12015550188. Reply STOP to opt out."]
    assert h.opt_outs(world.session, world.profile.id) == set()


# --- a try whose answer was lost -----------------------------------------------------------------------------------


def _attempts(session: Session, cid: uuid.UUID) -> list[tuple[int, str | None, str | None]]:
    session.commit()
    rows = session.execute(select(OutreachAttempt.attempt_no, OutreachAttempt.outcome,
                                  OutreachAttempt.provider_message_id)
                           .where(OutreachAttempt.campaign_id == cid).order_by(OutreachAttempt.attempt_no)).all()
    session.commit()
    return [tuple(r) for r in rows]  # type: ignore[misc]


def test_a_500_then_a_receipt_settles_as_sent_without_a_second_text(world):
    cid = world.campaign([ANN])
    world.fake.fail_next(http_status=500, after_accept=True)  # Vonage took the text, then answered 500
    report = world.run(cid)
    assert report.sent == 0 and report.deferred == 1
    assert _attempts(world.session, cid) == [(1, None, None)]  # open: asked about before any retry
    (sent,) = world.fake.sent_to(ANN)
    # the receipt arrives before the try is settled: matched by its client-ref
    world.deliver(world.fake.receipts(sent.message_id, "delivered"))
    assert h.recipient(world.session, cid, ANN).status == "delivered"
    later = world.now + timedelta(minutes=5)
    tick(world.factory, now=later, worker="vonage-tests", settings=world.settings, concurrency=1)
    tick(world.factory, now=later + timedelta(minutes=5), worker="vonage-tests", settings=world.settings,
         concurrency=1)
    assert _attempts(world.session, cid) == [(1, "accepted", sent.message_id)]
    assert len(world.fake.sent_to(ANN)) == 1 and len(world.fake.posts()) == 1  # never texted twice
    r = h.recipient(world.session, cid, ANN)
    assert r.status == "delivered" and r.next_attempt_at is None
    h.results_match(world.session, cid)


def test_a_500_without_a_receipt_ends_unknown_without_a_second_text(world):
    cid = world.campaign([ANN])
    world.fake.fail_next(http_status=500, after_accept=True)
    world.run(cid)
    for minutes in (2, 6, 12, 20):
        tick(world.factory, now=world.now + timedelta(minutes=minutes), worker="vonage-tests",
             settings=world.settings, concurrency=1)
    assert [outcome for _, outcome, _ in _attempts(world.session, cid)] == ["unknown"]
    r = h.recipient(world.session, cid, ANN)
    assert r.status == "failed" and "delivery receipt" in r.error_message
    assert len(world.fake.posts()) == 1

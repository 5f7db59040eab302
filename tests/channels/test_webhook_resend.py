"""``POST /webhooks/resend``: Svix signatures (checked against the official ``svix`` library),
every e-mail event, replays and strangers."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from svix.webhooks import Webhook

import api
from core.config import Settings
from core.webhooks import SignatureError
from core.webhooks import resend as resend_hooks
from tests.channels import helpers as h
from tests.fakes.resend import FakeResend

EMAILS = ["ann@example.com", "bo@example.com", "cy@example.com"]


@pytest.fixture
def emails(session, factory, fake_resend, live, now):
    """An e-mail campaign of three customers, one pass run: three e-mails at the fake."""
    profile = h.business(session)
    h.add_leads(session, profile, [{"email": e, "name": f"Pat{i} Doe"} for i, e in enumerate(EMAILS)], now=now)
    cid = h.campaign(session, profile, method="email", now=now)
    session.commit()
    assert h.run(factory, profile.id, cid, now, live).sent == 3
    ids = {e.to[0]: e.id for e in fake_resend.emails.values()}
    return profile, cid, ids


def test_a_request_signed_by_svix_itself_is_accepted_and_an_altered_one_refused():
    secret = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    settings = Settings(_env_file=None, resend_webhook_secret=secret)  # type: ignore[call-arg]
    when = datetime.now(UTC)
    body = json.dumps({"type": "email.delivered", "data": {"email_id": "x"}}).encode()
    headers = {"svix-id": "msg_2Lh9", "svix-timestamp": str(int(when.timestamp())),
               "svix-signature": Webhook(secret).sign("msg_2Lh9", when, body.decode())}
    assert resend_hooks.verify(settings=settings, headers=headers, body=body) == "msg_2Lh9"
    with pytest.raises(SignatureError):
        resend_hooks.verify(settings=settings, headers=headers, body=body + b" ")


@pytest.mark.parametrize("tags_as", ["object", "list"])
def test_delivered_and_replayed(session, emails, fake_resend, post, tags_as):
    _, cid, ids = emails
    request = fake_resend.signed(fake_resend.event(ids[EMAILS[0]], "email.delivered", tags_as=tags_as))
    answer = fake_resend.deliver(request, post)
    assert answer.status_code == 200 and answer.json()["applied"] == 1
    r = h.recipient(session, cid, EMAILS[0])
    assert r.status == "delivered" and r.delivered_at is not None
    (event,) = h.events(session, provider="resend")
    assert event.provider_event_id == request[1]["svix-id"]
    before = h.snapshot(session)
    again = fake_resend.deliver(request, post)  # Svix retries the same message (same svix-id)
    assert again.status_code == 200 and again.json()["replayed"] == 1
    assert h.snapshot(session) == before


@pytest.mark.parametrize("tags_as", ["object", "list"])
def test_the_recipient_tag_finds_an_email_whose_id_is_not_recorded(session, emails, fake_resend, post, tags_as):
    _, cid, ids = emails
    envelope = fake_resend.event(ids[EMAILS[1]], "email.delivered", tags_as=tags_as)
    envelope["data"]["email_id"] = "4ef9a417-02e9-4d39-ad75-9611e0fcc33c"  # not one of ours on record
    assert fake_resend.deliver(fake_resend.signed(envelope), post).json()["applied"] == 1
    assert h.recipient(session, cid, EMAILS[1]).status == "delivered"


def test_a_hard_bounce_fails_and_opts_out_a_soft_one_only_fails(session, emails, fake_resend, post):
    profile, cid, ids = emails
    fake_resend.deliver(fake_resend.signed(fake_resend.event(ids[EMAILS[0]], "email.bounced", bounce={
        "type": "Permanent", "subType": "General", "message": "550 5.1.1 mailbox does not exist"})), post)
    fake_resend.deliver(fake_resend.signed(fake_resend.event(ids[EMAILS[1]], "email.bounced", bounce={
        "type": "Transient", "subType": "MailboxFull", "message": "452 4.2.2 mailbox full"})), post)
    hard, soft = h.recipient(session, cid, EMAILS[0]), h.recipient(session, cid, EMAILS[1])
    assert hard.status == "failed" and "mailbox does not exist" in hard.error_message
    assert soft.status == "failed" and "mailbox full" in soft.error_message
    assert h.opt_outs(session, profile.id) == {(EMAILS[0], "email", "bounce")}
    h.results_match(session, cid)


def test_a_complaint_opts_out(session, emails, fake_resend, post):
    profile, cid, ids = emails
    fake_resend.deliver(fake_resend.signed(fake_resend.event(ids[EMAILS[2]], "email.delivered")), post)
    fake_resend.deliver(fake_resend.signed(fake_resend.event(ids[EMAILS[2]], "email.complained")), post)
    assert (EMAILS[2], "email", "complaint") in h.opt_outs(session, profile.id)
    assert "spam" in h.recipient(session, cid, EMAILS[2]).error_message


def test_opened_is_not_a_response_clicked_is(session, emails, fake_resend, post):
    _, cid, ids = emails
    fake_resend.deliver(fake_resend.signed(fake_resend.event(ids[EMAILS[0]], "email.opened")), post)
    r = h.recipient(session, cid, EMAILS[0])
    assert r.response_data.get("opened_at") and r.responded_at is None
    fake_resend.deliver(fake_resend.signed(fake_resend.event(ids[EMAILS[0]], "email.clicked")), post)
    r = h.recipient(session, cid, EMAILS[0])
    assert r.responded_at is not None and r.response_data["clicked_url"] == "https://bellavista.example/book"
    assert h.results_match(session, cid)["responded_count"] == 1


def test_failed_and_suppressed(session, emails, fake_resend, post):
    profile, cid, ids = emails
    fake_resend.deliver(fake_resend.signed(fake_resend.event(
        ids[EMAILS[0]], "email.failed", failed={"reason": "reached_daily_quota"})), post)
    fake_resend.deliver(fake_resend.signed(fake_resend.event(ids[EMAILS[1]], "email.suppressed")), post)
    assert "reached_daily_quota" in h.recipient(session, cid, EMAILS[0]).error_message
    assert h.recipient(session, cid, EMAILS[0]).status == "failed"
    assert h.recipient(session, cid, EMAILS[1]).status == "opted_out"
    assert (EMAILS[1], "email", "bounce") in h.opt_outs(session, profile.id)


@pytest.mark.parametrize("forgery", ["wrong-secret", "no-signature", "no-id", "stale", "future", "tampered",
                                     "wrong-version"])
def test_a_bad_signature_changes_nothing(session, emails, fake_resend, client, forgery):
    _, _, ids = emails
    envelope = fake_resend.event(ids[EMAILS[0]], "email.bounced", bounce={"type": "Permanent", "message": "550"})
    kwargs = {}
    if forgery == "wrong-secret":
        kwargs["secret"] = "whsec_" + "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB"
    if forgery == "stale":
        kwargs["timestamp"] = datetime.now(UTC) - timedelta(seconds=301)
    if forgery == "future":
        kwargs["timestamp"] = datetime.now(UTC) + timedelta(minutes=6)
    _url, headers, body = fake_resend.signed(envelope, **kwargs)
    if forgery == "no-signature":
        headers.pop("svix-signature")
    if forgery == "no-id":
        headers.pop("svix-id")
    if forgery == "tampered":
        body = body.replace(b"Permanent", b"Transient")
    if forgery == "wrong-version":
        headers["svix-signature"] = headers["svix-signature"].replace("v1,", "v2,")
    before = h.snapshot(session)
    answer = client.post("/webhooks/resend", content=body, headers=headers)
    assert answer.status_code == 401
    assert h.snapshot(session) == before


def test_a_timestamp_within_five_minutes_and_rotated_keys_pass(session, emails, fake_resend, client):
    _, cid, ids = emails
    envelope = fake_resend.event(ids[EMAILS[0]], "email.delivered")
    _url, headers, body = fake_resend.signed(envelope, timestamp=datetime.now(UTC) - timedelta(seconds=240))
    # while a secret is rotated Svix signs with both: one entry matching is enough
    headers["svix-signature"] = "v1,bm90IHRoZSByaWdodCBvbmU= " + headers["svix-signature"]
    assert client.post("/webhooks/resend", content=body, headers=headers).status_code == 200
    assert h.recipient(session, cid, EMAILS[0]).status == "delivered"


def test_an_email_we_did_not_send_is_ignored(session, emails, fake_resend, post):
    before = h.snapshot(session)
    envelope = {"type": "email.delivered", "created_at": "2026-06-15T15:00:00.000Z",
                "data": {"email_id": "2f0ba5a3-0000-4000-8000-000000000000", "to": ["x@example.com"],
                         "tags": {"category": "newsletter"}}}
    answer = fake_resend.deliver(fake_resend.signed(envelope), post)
    assert answer.status_code == 200 and answer.json()["ignored"] == 1
    assert h.snapshot(session)["recipients"] == before["recipients"]
    # events of other kinds (domains, contacts) are acknowledged and not stored
    other = fake_resend.deliver(fake_resend.signed({"type": "domain.updated", "data": {"id": "d_1"}}), post)
    assert other.status_code == 200 and other.json()["received"] == 0
    odd = fake_resend.deliver(fake_resend.signed({"x": 1}), post)
    assert odd.status_code == 200 and odd.json()["received"] == 0


def test_without_a_secret_everything_is_refused(engine, emails, fake_resend, live):
    _, _, ids = emails
    app = api.create_app(engine=engine, settings=live.model_copy(update={"resend_webhook_secret": None}))
    with TestClient(app) as c:
        _url, headers, body = fake_resend.signed(fake_resend.event(ids[EMAILS[0]], "email.delivered"))
        answer = c.post("/webhooks/resend", content=body, headers=headers)
    assert answer.status_code == 401 and "RESEND_WEBHOOK_SECRET" in answer.json()["detail"]


def test_a_signed_body_that_is_not_json_is_a_bad_request(fake_resend: FakeResend, client):
    msg_id, when = "msg_notjson", datetime.now(UTC)
    signature = Webhook(fake_resend.webhook_secret).sign(msg_id, when, "not json")
    answer = client.post("/webhooks/resend", content=b"not json", headers={
        "svix-id": msg_id, "svix-timestamp": str(int(when.timestamp())), "svix-signature": signature})
    assert answer.status_code == 400

"""``POST /webhooks/postmark``: basic authentication (Postmark signs nothing), every record type, keys in
either case, and the ``Metadata`` an e-mail sent over SMTP carried (``X-PM-Metadata-*``) naming its
recipient when Postmark's own message id is not one we recorded."""

from __future__ import annotations

import base64
import random
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

import api
from core.channels import smtp_email as smtp
from core.webhooks import postmark as postmark_hooks
from tests.channels import helpers as h
from tests.fakes.smtp import Received, SmtpPeer

USER, PASSWORD = "postmark-hooks", "c0rrect h0rse:battery"
SENDER = "hello@bellavista.example"
EMAILS = ["ann@example.com", "bo@example.com", "cy@example.com", "di@example.com", "ed@example.com",
          "fay@example.com", "gus@example.com"]


def now_iso() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


@pytest.fixture
def peer() -> Iterator[SmtpPeer]:
    with SmtpPeer(security="none", reply="plain") as server:
        yield server
    smtp.close_connections()


@pytest.fixture
def live(peer: SmtpPeer):  # type: ignore[no-untyped-def]
    return h.live_settings(email_provider="smtp", smtp_url=peer.url(), email_from=SENDER,
                           smtp_max_per_second=100_000.0, postmark_webhook_user=USER,
                           postmark_webhook_password=PASSWORD)


@pytest.fixture
def app(engine, live) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    with TestClient(api.create_app(engine=engine, settings=live), raise_server_exceptions=True) as client:
        yield client


@pytest.fixture
def campaign(session, factory, peer, live, now):  # type: ignore[no-untyped-def]
    profile = h.business(session)
    h.add_leads(session, profile, [{"email": e, "name": f"Pat{i} Doe"} for i, e in enumerate(EMAILS)], now=now)
    cid = h.campaign(session, profile, method="email", now=now)
    session.commit()
    assert h.run(factory, profile.id, cid, now, live).sent == len(EMAILS)
    return profile, cid, {m.rcpt_tos[0]: m for m in peer.messages}


def metadata(got: Received) -> dict[str, str]:
    """What Postmark hands back as ``Metadata``: the e-mail's ``X-PM-Metadata-<key>`` headers."""
    prefix = "x-pm-metadata-"
    return {k[len(prefix):]: str(v) for k, v in got.email.items() if k.lower().startswith(prefix)}


def bounce(got: Received, type_name: str, code: int, *, inactive: bool = False, details: str = "") -> dict[str, Any]:
    return {"RecordType": "Bounce", "MessageStream": "broadcast", "ID": random.randint(10**15, 10**16),
            "Type": type_name, "TypeCode": code, "Name": type_name, "Tag": str(got.email["X-PM-Tag"]),
            "MessageID": str(uuid.uuid4()), "Metadata": metadata(got), "ServerID": 23,
            "Description": "The server was unable to deliver your message.", "Details": details or f"{type_name}",
            "Email": got.rcpt_tos[0], "From": SENDER, "BouncedAt": now_iso(), "DumpAvailable": True,
            "Inactive": inactive, "CanActivate": True, "Subject": "We miss you"}


def record(got: Received, kind: str, **fields: Any) -> dict[str, Any]:
    return {"RecordType": kind, "MessageStream": "broadcast", "MessageID": str(uuid.uuid4()), "ServerID": 23,
            "Recipient": got.rcpt_tos[0], "Tag": str(got.email["X-PM-Tag"]), "Metadata": metadata(got), **fields}


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def deliver(app: TestClient, payload: dict[str, Any], **headers: str) -> httpx.Response:
    return app.post("/webhooks/postmark", json=payload,
                    headers={"Authorization": basic(USER, PASSWORD), **headers})


def test_wrong_or_missing_credentials_change_nothing(session, app, campaign):
    _profile, _cid, sent = campaign
    payload = bounce(sent[EMAILS[0]], "HardBounce", 1, inactive=True)
    before = h.snapshot(session)
    refused = (None, basic(USER, "wrong"), basic("someone", PASSWORD), basic(USER, PASSWORD + "x"),
               f"Bearer {PASSWORD}", "Basic %%%not-base64", "Basic " + base64.b64encode(b"no-colon").decode())
    for authorization in refused:
        headers = {"Authorization": authorization} if authorization else {}
        answer = app.post("/webhooks/postmark", json=payload, headers=headers)
        assert answer.status_code == 401 and answer.json()["detail"], authorization
        assert answer.headers["WWW-Authenticate"].startswith("Basic ")
    assert h.snapshot(session) == before
    # the URL given to Postmark carries the credentials: an HTTP client turns them into this header
    answer = app.post(f"http://{USER}:{PASSWORD.replace(':', '%3A').replace(' ', '%20')}@testserver/webhooks/postmark",
                      json=payload)
    assert answer.status_code == 200 and answer.json()["applied"] == 1


def test_without_credentials_configured_nothing_is_accepted(engine):
    with TestClient(api.create_app(engine=engine, settings=h.live_settings())) as client:
        answer = client.post("/webhooks/postmark", json={"RecordType": "Delivery"},
                             headers={"Authorization": basic(USER, PASSWORD)})
    assert answer.status_code == 401 and "POSTMARK_WEBHOOK_USER" in answer.json()["detail"]


def test_every_record_type(session, app, campaign):
    profile, cid, sent = campaign
    ann, bo, cy, di, ed, fay, gus = EMAILS
    hard = bounce(sent[ann], "HardBounce", 1, inactive=True,
                  details="smtp;550 5.1.1 The email account that you tried to reach does not exist.")
    assert deliver(app, hard).json() == {"received": 1, "applied": 1, "replayed": 0, "ignored": 0}
    deliver(app, bounce(sent[bo], "SoftBounce", 4096, details="smtp;452 4.2.2 mailbox full"))
    deliver(app, record(sent[cy], "SpamComplaint", ID=random.randint(10**15, 10**16), Type="SpamComplaint",
                        TypeCode=100001, Email=cy, BouncedAt=now_iso()))
    # the typing of Postmark's own library spells these MessageId / ServerId: read either
    delivery = record(sent[di], "Delivery", DeliveredAt=now_iso(), Details="smtp;250 2.0.0 OK")
    delivery["MessageId"] = delivery.pop("MessageID")
    deliver(app, delivery)
    deliver(app, record(sent[di], "Open", FirstOpen=True, ReceivedAt=now_iso(), UserAgent="Mozilla/5.0",
                        Client={"Name": "Gmail"}, OS={"Name": "Android"}, Platform="Mobile", ReadSeconds=5))
    deliver(app, record(sent[di], "Click", ReceivedAt=now_iso(), ClickLocation="HTML",
                        OriginalLink="https://bellavista.example/book", UserAgent="Mozilla/5.0"))
    deliver(app, record(sent[ed], "SubscriptionChange", ChangedAt=now_iso(), Origin="Recipient",
                        SuppressSending=True, SuppressionReason="ManualSuppression"))
    deliver(app, bounce(sent[fay], "AutoResponder", 64, details="Out of office until Monday"))
    deliver(app, bounce(sent[gus], "Blocked", 100006, inactive=True, details="blocked by the ISP"))

    rows = {r.customer_email: r for r in h.recipients(session, cid)}
    assert rows[ann].status == "failed" and "Permanent bounce (HardBounce)" in str(rows[ann].error_message)
    assert rows[bo].status == "failed" and "mailbox full" in str(rows[bo].error_message)
    assert rows[cy].status == "opted_out" and "spam" in str(rows[cy].error_message)
    assert rows[di].status == "delivered" and rows[di].responded_at is not None
    assert rows[di].response_data["clicked_url"] == "https://bellavista.example/book"
    assert rows[di].response_data["opened_at"]
    assert rows[ed].status == "opted_out"
    assert rows[fay].status == "sent" and rows[fay].error_message is None  # an out-of-office is no failure
    assert rows[gus].status == "failed"  # Postmark deactivated the address: it is suppressed
    assert h.opt_outs(session, profile.id) == {(ann, "email", "bounce"), (cy, "email", "complaint"),
                                               (ed, "email", "unsubscribe_link"), (gus, "email", "bounce")}
    h.results_match(session, cid)
    # Postmark retries a webhook it could not deliver: the same record changes nothing
    before = h.snapshot(session)
    assert deliver(app, hard).json() == {"received": 1, "applied": 0, "replayed": 1, "ignored": 0}
    assert h.snapshot(session) == before


def test_the_message_id_on_record_or_else_the_metadata_finds_the_email(session, app, campaign):
    _profile, cid, sent = campaign
    ann, bo = EMAILS[0], EMAILS[1]
    (attempt,) = [a for a in h.attempts(session, cid) if a.provider_message_id == sent[ann].message_id.strip("<>")]
    by_id = record(sent[ann], "Delivery", MessageID=attempt.provider_message_id, DeliveredAt=now_iso())
    del by_id["Metadata"]
    by_metadata = record(sent[bo], "Delivery", DeliveredAt=now_iso())
    stranger = {"RecordType": "Delivery", "MessageID": str(uuid.uuid4()), "Recipient": "zz@example.com",
                "DeliveredAt": now_iso(), "Metadata": {}}
    assert deliver(app, by_id).json()["applied"] == 1
    assert deliver(app, by_metadata).json()["applied"] == 1
    assert deliver(app, stranger).json() == {"received": 1, "applied": 0, "replayed": 0, "ignored": 1}
    assert {h.recipient(session, cid, a).status for a in (ann, bo)} == {"delivered"}


def test_keys_in_any_case_and_what_is_not_a_record(app):
    found = postmark_hooks.parse(b'{"recordtype": "Delivery", "MESSAGEID": "m-1", '
                                 b'"deliveredat": "2026-06-15T15:00:00Z"}')
    assert [(i.type, i.message_id, i.event_id) for i, _ in found] == [("delivered", "m-1", "postmark:m-1:Delivery")]
    assert deliver(app, {"RecordType": "Delivery"}).json()["received"] == 0
    answer = app.post("/webhooks/postmark", content=b"[1, 2]", headers={"Authorization": basic(USER, PASSWORD)})
    assert answer.status_code == 400

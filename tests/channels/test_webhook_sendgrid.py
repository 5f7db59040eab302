"""``POST /webhooks/sendgrid``: the signed Event Webhook.  The verifier is checked against SendGrid's
own helper (``sendgrid.EventWebhook``) on SendGrid's published test vector and on a key made here;
the events are those SendGrid would send about e-mails a campaign really sent over SMTP (the ids
from the server's ``250 Ok: queued as <id>``, the unique arguments from the e-mail's ``X-SMTPAPI``)."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient
from sendgrid import EventWebhook
from sendgrid.helpers.eventwebhook.eventwebhook_header import EventWebhookHeader

import api
from core.channels import smtp_email as smtp
from core.webhooks import SignatureError
from core.webhooks import sendgrid as sendgrid_hooks
from tests.channels import helpers as h
from tests.fakes.smtp import Received, SmtpPeer

# SendGrid's published test vector (sendgrid-python test/unit/test_eventwebhook.py)
VECTOR_KEY = ("MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE83T4O/n84iotIvIW4mdBgQ/7dAfSmpqIM8kF9mN1flpVKS3GRqe62gw+2fNNRaINXv"
              "VpiglSI8eNEc6wEA3F+g==")
VECTOR_SIGNATURE = ("MEUCIGHQVtGj+Y3LkG9fLcxf3qfI10QysgDWmMOVmxG0u6ZUAiEAyBiXDWzM+uOe5W0JuG+luQAbPIqHh89M15TluLtEZ"
                    "tM=")
VECTOR_TIMESTAMP = "1600112502"
VECTOR_PAYLOAD = json.dumps([{
    "email": "hello@world.com", "event": "dropped", "reason": "Bounced Address",
    "sg_event_id": "ZHJvcC0xMDk5NDkxOS1MUnpYbF9OSFN0T0doUTRrb2ZTbV9BLTA",
    "sg_message_id": "LRzXl_NHStOGhQ4kofSm_A.filterdrecv-p3mdw1-756b745b58-kmzbl-18-5F5FC76C-9.0",
    "smtp-id": "<LRzXl_NHStOGhQ4kofSm_A@ismtpd0039p1iad1.sendgrid.net>", "timestamp": 1600112492,
}], sort_keys=True, separators=(",", ":")) + "\r\n"
OTHER_KEY = ("MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEqTxd43gyp8IOEto2LdIfjRQrIbsd4SXZkLW6jDutdhXSJCWHw8REntlo7aNDthvj+y7Gj"
             "UuFDb/R1NGe1OPzpA==")
SIGNATURE, TIMESTAMP = EventWebhookHeader.SIGNATURE, EventWebhookHeader.TIMESTAMP
EMAILS = ["ann@example.com", "bo@example.com", "cy@example.com", "di@example.com", "ed@example.com",
          "fay@example.com", "gus@example.com", "hal@example.com"]


class Signer:
    """An Event Webhook key pair made here: SendGrid signs with the private half."""

    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        der = self.key.public_key().public_bytes(serialization.Encoding.DER,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo)
        self.public = base64.b64encode(der).decode()

    def headers(self, body: bytes, *, timestamp: int | None = None) -> dict[str, str]:
        stamp = str(int(time.time()) if timestamp is None else timestamp)
        signature = self.key.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
        return {SIGNATURE: base64.b64encode(signature).decode(), TIMESTAMP: stamp,
                "Content-Type": "application/json"}


def settings_with(key: str | None):  # type: ignore[no-untyped-def]
    return h.live_settings(sendgrid_webhook_public_key=key)


def at(timestamp: str, seconds: float = 0) -> datetime:
    return datetime.fromtimestamp(int(timestamp) + seconds, UTC)


# --- the signature ---------------------------------------------------------------------------------------------


def test_sendgrids_test_vector_verifies_here_as_with_sendgrids_helper():
    body = VECTOR_PAYLOAD.encode()
    helper = EventWebhook()
    assert helper.verify_signature(VECTOR_PAYLOAD, VECTOR_SIGNATURE, VECTOR_TIMESTAMP,
                                   helper.convert_public_key_to_ecdsa(VECTOR_KEY))
    headers = {SIGNATURE: VECTOR_SIGNATURE, TIMESTAMP: VECTOR_TIMESTAMP}
    sendgrid_hooks.verify(settings=settings_with(VECTOR_KEY), headers=headers, body=body,
                          now=at(VECTOR_TIMESTAMP, 10))
    # where the helper says no, so do we
    bad_signature = ("MEUCIQCtIHJeH93Y+qpYeWrySphQgpNGNr/U+UyUlBkU6n7RAwIgJTz2C+8a8xonZGi6BpSzoQsbVRamr2nlxFDWYNH3j"
                     "/0=")
    cases = [(OTHER_KEY, body, VECTOR_SIGNATURE), (VECTOR_KEY, b"payload", VECTOR_SIGNATURE),
             (VECTOR_KEY, body, bad_signature), (VECTOR_KEY, body.replace(b"dropped", b"delivered"), VECTOR_SIGNATURE)]
    for key, payload, signature in cases:
        assert not EventWebhook(key).verify_signature(payload.decode(), signature, VECTOR_TIMESTAMP)
        with pytest.raises(SignatureError):
            sendgrid_hooks.verify(settings=settings_with(key), headers={SIGNATURE: signature,
                                                                        TIMESTAMP: VECTOR_TIMESTAMP},
                                  body=payload, now=at(VECTOR_TIMESTAMP, 10))
    # the vector is years old: outside the ten minutes it is refused
    with pytest.raises(SignatureError, match="more than ten minutes"):
        sendgrid_hooks.verify(settings=settings_with(VECTOR_KEY), headers=headers, body=body)
    sendgrid_hooks.verify(settings=settings_with(VECTOR_KEY), headers=headers, body=body,
                          now=at(VECTOR_TIMESTAMP, -599))
    with pytest.raises(SignatureError):
        sendgrid_hooks.verify(settings=settings_with(VECTOR_KEY), headers=headers, body=body,
                              now=at(VECTOR_TIMESTAMP, 601))


def test_a_key_made_here_verifies_as_with_sendgrids_helper():
    signer = Signer()
    body = json.dumps([{"event": "delivered", "email": "a@example.com", "sg_event_id": "e1"}]).encode() + b"\r\n"
    headers = signer.headers(body)
    assert EventWebhook(signer.public).verify_signature(body.decode(), headers[SIGNATURE], headers[TIMESTAMP])
    sendgrid_hooks.verify(settings=settings_with(signer.public), headers=headers, body=body)
    other = Signer()
    assert not EventWebhook(other.public).verify_signature(body.decode(), headers[SIGNATURE], headers[TIMESTAMP])
    with pytest.raises(SignatureError, match="does not match"):
        sendgrid_hooks.verify(settings=settings_with(other.public), headers=headers, body=body)
    for bad in ("not base64!", base64.b64encode(b"\x30\x03").decode(), "MFkw" + "A" * 20):
        with pytest.raises(SignatureError, match="SENDGRID_WEBHOOK_PUBLIC_KEY"):
            sendgrid_hooks.verify(settings=settings_with(bad), headers=headers, body=body)


# --- the app ---------------------------------------------------------------------------------------------------


@pytest.fixture
def signer() -> Signer:
    return Signer()


@pytest.fixture
def peer() -> Iterator[SmtpPeer]:
    with SmtpPeer(security="none", reply="sendgrid") as server:  # "250 Ok: queued as <id>"
        yield server
    smtp.close_connections()


@pytest.fixture
def live(peer: SmtpPeer, signer: Signer):  # type: ignore[no-untyped-def]
    return h.live_settings(email_provider="smtp", smtp_url=peer.url(), email_from="hello@bellavista.example",
                           smtp_max_per_second=100_000.0, sendgrid_webhook_public_key=signer.public)


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


def event(got: Received, kind: str, **fields: Any) -> dict[str, Any]:
    """One event as SendGrid reports it about an e-mail the server took (unique args as top-level keys)."""
    unique_args = json.loads(str(got.email["X-SMTPAPI"]))["unique_args"]
    return {**unique_args, "email": got.rcpt_tos[0], "event": kind, "timestamp": int(time.time()),
            "sg_event_id": base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("="),
            "sg_message_id": f"{got.server_id}.filterdrecv-p3mdw1-756b745b58-kmzbl-18-5F5FC76C-9.0",
            "smtp-id": got.message_id, "category": ["reengage"], **fields}


def deliver(app: TestClient, signer: Signer, events: list[dict[str, Any]], **kw: Any) -> httpx.Response:
    body = json.dumps(events).encode() + b"\r\n"
    return app.post("/webhooks/sendgrid", content=body, headers=signer.headers(body, **kw))


def test_a_bad_or_stale_signature_changes_nothing(session, app, signer, campaign):
    _profile, _cid, sent = campaign
    events = [event(sent[EMAILS[0]], "bounce", type="bounce", reason="550 5.1.1 unknown user", status="5.1.1")]
    body = json.dumps(events).encode()
    good = signer.headers(body)
    before = h.snapshot(session)
    forged = [
        ({}, body), ({SIGNATURE: good[SIGNATURE]}, body), ({TIMESTAMP: good[TIMESTAMP]}, body),
        (Signer().headers(body), body), (good, body.replace(b"bounce", b"blocked")),
        (signer.headers(body, timestamp=int(time.time()) - 660), body),
        (signer.headers(body, timestamp=int(time.time()) + 660), body),
        ({**good, SIGNATURE: "%%%"}, body), ({**good, TIMESTAMP: "yesterday"}, body),
    ]
    for n, (headers, payload) in enumerate(forged):
        answer = app.post("/webhooks/sendgrid", content=payload, headers=headers)
        assert answer.status_code == 401 and answer.json()["detail"], (n, answer.text)
    assert h.snapshot(session) == before
    assert app.post("/webhooks/sendgrid", content=body, headers=good).status_code == 200


def test_without_the_key_nothing_is_accepted(engine, signer):
    with TestClient(api.create_app(engine=engine, settings=h.live_settings())) as client:
        body = b"[]"
        answer = client.post("/webhooks/sendgrid", content=body, headers=signer.headers(body))
    assert answer.status_code == 401 and "SENDGRID_WEBHOOK_PUBLIC_KEY is not set" in answer.json()["detail"]


def test_the_events_of_a_campaign(session, app, signer, campaign):
    profile, cid, sent = campaign
    ann, bo, cy, di, ed, fay, gus, hal = EMAILS
    batch = [
        event(sent[ann], "processed"),
        event(sent[ann], "bounce", type="bounce", status="5.1.1", reason="550 5.1.1 The email account does not exist"),
        event(sent[bo], "bounce", type="blocked", status="4.0.0", reason="451 Temporary local problem"),
        event(sent[cy], "dropped", reason="Bounced Address", status="5.0.0"),
        event(sent[di], "delivered", response="250 OK"), event(sent[di], "spamreport"),
        event(sent[ed], "delivered", response="250 OK"), event(sent[ed], "open", useragent="Mozilla/5.0"),
        event(sent[ed], "click", url="https://bellavista.example/book"),
        event(sent[fay], "group_unsubscribe", asm_group_id=42),
        event(sent[gus], "deferred", response="421 try again later", attempt="1"),
        event(sent[hal], "dropped", reason="Invalid", status="5.0.0"),
    ]
    answer = deliver(app, signer, batch)
    assert answer.status_code == 200
    assert answer.json() == {"received": 12, "applied": 12, "replayed": 0, "ignored": 0}
    rows = {r.customer_email: r for r in h.recipients(session, cid)}
    assert rows[ann].status == "failed" and "Permanent bounce: 5.1.1 550 5.1.1" in str(rows[ann].error_message)
    assert rows[bo].status == "failed" and "Transient bounce" in str(rows[bo].error_message)
    assert rows[cy].status == "opted_out"
    assert rows[di].status == "opted_out" and "spam" in str(rows[di].error_message)
    assert rows[ed].status == "delivered" and rows[ed].responded_at is not None
    assert rows[ed].response_data["clicked_url"] == "https://bellavista.example/book"
    assert rows[fay].status == "opted_out"
    assert rows[gus].status == "sent" and rows[gus].response_data.get("delivery_delayed_at")
    assert rows[hal].status == "failed" and "SendGrid did not send the e-mail: Invalid" in str(rows[hal].error_message)
    assert h.opt_outs(session, profile.id) == {(ann, "email", "bounce"), (cy, "email", "bounce"),
                                               (di, "email", "complaint"), (fay, "email", "unsubscribe_link")}
    h.results_match(session, cid)
    # SendGrid retries a delivery it thinks failed: the same events, signed anew — nothing changes
    before = h.snapshot(session)
    again = deliver(app, signer, batch)
    assert again.json() == {"received": 12, "applied": 0, "replayed": 12, "ignored": 0}
    assert h.snapshot(session) == before


def test_unique_args_find_an_email_whose_id_is_not_recorded(session, app, signer, campaign):
    _profile, cid, sent = campaign
    early = event(sent[EMAILS[1]], "delivered", response="250 OK")
    early["sg_message_id"] = "NotRecordedYet_1234567.filterdrecv-1"
    early["smtp-id"] = "<not-ours@sendgrid.net>"
    stranger = {"email": "zz@example.com", "event": "delivered", "timestamp": int(time.time()),
                "sg_event_id": "stranger-1", "sg_message_id": "Unknown_abcdefghijklm.filterdrecv-1",
                "smtp-id": "<zz@elsewhere.example>"}
    answer = deliver(app, signer, [early, stranger])
    assert answer.json() == {"received": 2, "applied": 1, "replayed": 0, "ignored": 1}
    assert h.recipient(session, cid, EMAILS[1]).status == "delivered"


def test_a_body_that_is_not_an_event_array_is_refused_after_the_signature(app, signer):
    for body in (b"{}", b"not json"):
        assert app.post("/webhooks/sendgrid", content=body, headers=signer.headers(body)).status_code == 400

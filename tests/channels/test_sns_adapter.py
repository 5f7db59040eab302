"""The live AWS SNS adapter through boto3: against moto in server mode (a real SNS peer on 127.0.0.1), a whole SMS
campaign through the real dispatcher, and SNS's error answers (Query-protocol XML) from a small server that
speaks them."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

import pytest
from moto.server import ThreadedMotoServer

from core.channels import get_channel
from core.channels.base import (
    OptedOutError,
    OutboundMessage,
    OutcomeUnknown,
    PermanentError,
    QuotaExceededError,
    RetryableError,
)
from core.channels.sns_sms import SnsChannel
from core.db import utcnow
from core.models import Profile
from tests.channels import helpers as h

REGION = "us-east-1"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def moto(moto_url, monkeypatch) -> str:
    """moto's SNS, emptied, with fake AWS credentials in the environment (boto3 reads them there)."""
    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                        ("AWS_SESSION_TOKEN", "testing"), ("AWS_EC2_METADATA_DISABLED", "true")):
        monkeypatch.setenv(name, value)
    urllib.request.urlopen(urllib.request.Request(f"{moto_url}/moto-api/reset", method="POST")).read()
    return moto_url


def published(moto_url: str) -> list[dict[str, str]]:
    """What moto's SNS sent: ``[{"message", "message_id", "phone_number"}]``."""
    with urllib.request.urlopen(f"{moto_url}/moto-api/data.json") as answer:
        return list(json.loads(answer.read())["sns"]["SMS"])


def sns_settings(endpoint: str, **overrides: Any):  # type: ignore[no-untyped-def]
    return h.live_settings(**({"sms_provider": "sns", "aws_region": REGION, "sns_endpoint_url": endpoint,
                               "sns_max_per_second": 100_000.0} | overrides))


def message(**overrides: Any) -> OutboundMessage:
    rid = uuid.uuid4()
    values = dict(channel="sms", to="+12125550101", idempotency_key=f"reengage/{rid}/0", profile_id=uuid.uuid4(),
                  business_name="Bella Vista", campaign_id=uuid.uuid4(), recipient_id=rid, customer_name="Ann Lee",
                  text="Hi Ann, Bella Vista misses you! 20% off this month.\nReply STOP to opt out")
    return OutboundMessage(**(values | overrides))


# --- against moto ---------------------------------------------------------------------------------------------


def test_a_text_is_published_to_the_number(moto):
    ch = get_channel("sms", sns_settings(moto, sns_sender_id="BellaVista", sns_origination_number="+12015550100"))
    assert isinstance(ch, SnsChannel) and ch.retry_needs_reconcile
    m = message()
    result = ch.send(m)
    assert published(moto) == [{"message": m.text, "message_id": result.provider_message_id,
                                "phone_number": "+12125550101"}]
    assert result.status == "accepted" and result.detail == {"segments": 1, "sms_type": "Promotional"}
    # moto does not record attributes: what goes with every Publish
    assert ch.attributes() == {
        "AWS.SNS.SMS.SMSType": {"DataType": "String", "StringValue": "Promotional"},
        "AWS.SNS.SMS.SenderID": {"DataType": "String", "StringValue": "BellaVista"},
        "AWS.MM.SMS.OriginationNumber": {"DataType": "String", "StringValue": "+12015550100"}}


def test_an_opted_out_number_is_not_published_to(moto):
    with pytest.raises(OptedOutError) as err:  # moto lists numbers ending in 99 as opted out
        SnsChannel(sns_settings(moto)).send(message(to="+12125550199"))
    assert "opted out" in err.value.reason and published(moto) == []


def test_a_text_longer_than_sns_sends_is_refused_before_asking(moto):
    with pytest.raises(PermanentError) as err:
        SnsChannel(sns_settings(moto)).send(message(text="é" * 900))  # 1,800 bytes
    assert "1600 bytes" in err.value.reason and published(moto) == []


def test_check_and_reconcile(moto):
    ch = SnsChannel(sns_settings(moto, sns_sender_id="BellaVista"))
    assert ch.check() == f"Connected to AWS SNS in {REGION}: texts are sent as Promotional, the sender is BellaVista."
    with pytest.raises(OutcomeUnknown) as err:  # SNS cannot be asked: a lost answer is never guessed at
        ch.reconcile(message(), started_at=utcnow())
    assert err.value.code == "no_lookup"
    assert published(moto) == []


def test_an_sms_campaign_through_the_dispatcher(moto, session, factory, now):
    profile = Profile(id=uuid.uuid4(), business_name="Bella Vista", email=f"{uuid.uuid4().hex[:8]}@shop.example",
                      consent_policy="none")
    session.add(profile)
    session.flush()
    phones = ["+12125550101", "+12125550102", "+12125550199"]
    h.add_leads(session, profile, [{"phone": p, "name": f"Pat{i} Lee"} for i, p in enumerate(phones)], now=now)
    cid = h.campaign(session, profile, method="sms", now=now)
    session.commit()
    report = h.run(factory, profile.id, cid, now, sns_settings(moto))
    assert (report.sent, report.opted_out) == (2, 1)
    sent = published(moto)
    assert sorted(s["phone_number"] for s in sent) == phones[:2]
    assert all(s["message"].startswith("Hi Pat") and s["message"].endswith("Reply STOP to opt out") for s in sent)
    statuses = {r.contact_key: r.status for r in h.recipients(session, cid)}
    assert statuses == {phones[0]: "sent", phones[1]: "sent", phones[2]: "opted_out"}  # no receipts: stays sent
    assert (phones[2], "sms", "sms_stop") in h.opt_outs(session, profile.id)
    attempts = {a.provider_message_id for a in h.attempts(session, cid) if a.outcome == "accepted"}
    assert attempts == {s["message_id"] for s in sent}
    h.results_match(session, cid)


# --- SNS's error answers ----------------------------------------------------------------------------------------

NS = "http://sns.amazonaws.com/doc/2010-03-31/"


class SnsErrors(BaseHTTPRequestHandler):
    """Answers SNS's Query protocol: the scripted error of an action, else success."""

    protocol_version = "HTTP/1.1"
    server: Any

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
        action = dict(parse_qsl(body)).get("Action", "")
        self.server.actions.append(action)
        if self.server.delay.get(action):
            time.sleep(self.server.delay[action])
        if action in self.server.errors:
            status, kind, code, text = self.server.errors[action]
            xml = (f'<ErrorResponse xmlns="{NS}"><Error><Type>{kind}</Type><Code>{code}</Code><Message>{text}</Message>'
                   f"</Error><RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>")
        else:
            status = 200
            result = ("<isOptedOut>false</isOptedOut>" if action == "CheckIfPhoneNumberIsOptedOut"
                      else f"<MessageId>{uuid.uuid4()}</MessageId>")
            xml = (f'<{action}Response xmlns="{NS}"><{action}Result>{result}</{action}Result><ResponseMetadata>'
                   f"<RequestId>{uuid.uuid4()}</RequestId></ResponseMetadata></{action}Response>")
        raw = xml.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/xml")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout test)
            self.wfile.write(raw)


@pytest.fixture
def errors(monkeypatch) -> Iterator[ThreadingHTTPServer]:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    server = ThreadingHTTPServer(("127.0.0.1", 0), SnsErrors)
    server.daemon_threads = True
    server.errors, server.delay, server.actions = {}, {}, []  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def _url(server: ThreadingHTTPServer) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}"


@pytest.mark.parametrize(("action", "status", "kind", "code", "error", "our_code"), [
    ("Publish", 400, "Sender", "Throttling", RetryableError, "rate_limited"),
    ("Publish", 500, "Receiver", "InternalError", RetryableError, "InternalError"),
    ("Publish", 400, "Sender", "InvalidParameter", PermanentError, "InvalidParameter"),
    ("Publish", 400, "Sender", "ParameterValueInvalid", PermanentError, "ParameterValueInvalid"),
    ("Publish", 403, "Sender", "AuthorizationError", QuotaExceededError, "AuthorizationError"),
    ("Publish", 403, "Sender", "InvalidClientTokenId", QuotaExceededError, "InvalidClientTokenId"),
    ("Publish", 400, "Sender", "KMSDisabled", QuotaExceededError, "KMSDisabled"),
    ("CheckIfPhoneNumberIsOptedOut", 429, "Sender", "Throttled", RetryableError, "rate_limited"),
    # the check comes before the Publish: a failure there sent nothing, so it needs no reconciling
    ("CheckIfPhoneNumberIsOptedOut", 500, "Receiver", "InternalError", RetryableError, "not_sent"),
])
def test_error_codes(errors, action, status, kind, code, error, our_code):
    errors.errors[action] = (status, kind, code, f"the provider's reason for {code}")  # type: ignore[attr-defined]
    with pytest.raises(error) as err:
        SnsChannel(sns_settings(_url(errors))).send(message())
    assert type(err.value) is error and err.value.code == our_code
    assert f"the provider's reason for {code}" in err.value.reason
    if error is QuotaExceededError:
        assert "resume the campaign" in err.value.reason
    assert errors.actions == ["CheckIfPhoneNumberIsOptedOut", "Publish"][:1 if action != "Publish" else 2]


def test_timeouts_unreachable_endpoints_and_missing_credentials(errors, monkeypatch):
    errors.delay["Publish"] = 3.0  # type: ignore[attr-defined]
    with pytest.raises(RetryableError) as err:  # longer than the send timeout (lease 10 s → 2.5 s): may have gone
        SnsChannel(sns_settings(_url(errors), scheduler_lease_seconds=10)).send(message())
    assert err.value.code == "timeout" and errors.actions == ["CheckIfPhoneNumberIsOptedOut", "Publish"]
    with pytest.raises(RetryableError) as err:
        SnsChannel(sns_settings(f"http://127.0.0.1:{_free_port()}")).send(message())
    assert err.value.code == "not_sent"
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/config")
    with pytest.raises(QuotaExceededError) as err:  # a fresh endpoint: a client built without credentials
        SnsChannel(sns_settings(_url(errors) + "/")).send(message())
    assert "AWS_ACCESS_KEY_ID" in err.value.reason

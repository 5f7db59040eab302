"""The live Resend adapter against the fake Resend server (real HTTP, real httpx)."""

from __future__ import annotations

import socket
import uuid
from datetime import timedelta

import pytest

from core.channels.base import (
    OutboundMessage,
    OutcomeUnknown,
    PermanentError,
    QuotaExceededError,
    RetryableError,
)
from core.channels.resend_email import ResendChannel
from core.db import utcnow
from tests.engine.helpers import settings
from tests.fakes.resend import DEFAULT_KEY, FakeResend


def channel(url: str, **overrides) -> ResendChannel:
    values = {"resend_api_key": DEFAULT_KEY, "resend_from": "hello@bellavista.example", "resend_base_url": url}
    return ResendChannel(settings(**(values | overrides)))


def message(**overrides) -> OutboundMessage:
    rid = uuid.uuid4()
    values = dict(channel="email", to="ann@example.com", idempotency_key=f"reengage/{rid}/0", profile_id=uuid.uuid4(),
                  business_name="Bella Vista", campaign_id=uuid.uuid4(), recipient_id=rid, subject="We miss you",
                  text="Hi Ann\n\n--\nUnsubscribe: https://x.example/unsubscribe/t", html="<p>Hi Ann</p>",
                  unsubscribe_url="https://x.example/unsubscribe/t")
    return OutboundMessage(**(values | overrides))


def test_send_speaks_resends_shape(fake_resend: FakeResend):
    m = message()
    result = channel(fake_resend.url).send(m)
    email = fake_resend.emails[result.provider_message_id]
    p = email.payload
    assert p["from"] == "Bella Vista <hello@bellavista.example>"
    assert p["to"] == ["ann@example.com"] and p["subject"] == "We miss you"
    assert p["html"] == "<p>Hi Ann</p>" and p["text"].startswith("Hi Ann")
    assert p["headers"] == {"List-Unsubscribe": "<https://x.example/unsubscribe/t>",
                            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}
    tags = {t["name"]: t["value"] for t in p["tags"]}
    assert tags == {"recipient_id": str(m.recipient_id), "campaign_id": str(m.campaign_id), "step": "0"}
    assert all(set(t["value"]) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")
               for t in p["tags"])
    assert email.key == m.idempotency_key
    # a configured display name is kept as it is
    other = channel(fake_resend.url, resend_from="Front desk <desk@bellavista.example>").send(message())
    assert fake_resend.emails[other.provider_message_id].sender == "Front desk <desk@bellavista.example>"


def test_idempotency_key_means_one_email(fake_resend: FakeResend):
    ch, m = channel(fake_resend.url), message()
    first, second = ch.send(m), ch.send(m)
    assert first.provider_message_id == second.provider_message_id
    assert fake_resend.emails_per_address()["ann@example.com"] == 1
    assert fake_resend.posts_per_key()[m.idempotency_key] == 2


@pytest.mark.parametrize(("script", "error", "code"), [
    ({"status": 429, "name": "rate_limit_exceeded", "retry_after": 2}, RetryableError, "rate_limit_exceeded"),
    ({"status": 429, "name": "daily_quota_exceeded"}, QuotaExceededError, "daily_quota_exceeded"),
    ({"status": 429, "name": "monthly_quota_exceeded"}, QuotaExceededError, "monthly_quota_exceeded"),
    ({"status": 409, "name": "concurrent_idempotent_requests"}, RetryableError, "concurrent_idempotent_requests"),
    ({"status": 422, "name": "validation_error", "message": "Invalid `to` field."}, PermanentError,
     "validation_error"),
    ({"status": 400, "name": "validation_error"}, PermanentError, "validation_error"),
    ({"status": 500, "name": "internal_server_error"}, RetryableError, "internal_server_error"),
    ({"status": 503, "name": "service_unavailable"}, RetryableError, "service_unavailable"),
    ({"status": 403, "name": "validation_error", "message": "You can only send testing emails"},
     QuotaExceededError, "validation_error"),
])
def test_error_mapping(fake_resend: FakeResend, script, error, code):
    fake_resend.fail_next(**script)
    with pytest.raises(error) as err:
        channel(fake_resend.url).send(message())
    assert err.value.code == code
    if code == "rate_limit_exceeded":
        assert err.value.retry_after == 2.0
    if isinstance(err.value, QuotaExceededError) and "quota" in code:
        assert "resume" in err.value.reason
    assert not fake_resend.emails


def test_a_different_payload_under_a_used_key_is_refused(fake_resend: FakeResend):
    ch, m = channel(fake_resend.url), message()
    ch.send(m)
    with pytest.raises(PermanentError) as err:
        ch.send(OutboundMessage(**{**m.__dict__, "subject": "Changed"}))
    assert err.value.code == "invalid_idempotent_request"


def test_wrong_key_pauses(fake_resend: FakeResend):
    with pytest.raises(QuotaExceededError) as err:
        channel(fake_resend.url, resend_api_key="re_wrong").send(message())
    assert "RESEND_API_KEY" in err.value.reason


def test_timeouts_and_unreachable_servers_are_transient(fake_resend: FakeResend):
    fake_resend.delay = 3.0  # longer than the send timeout (lease 10 s → 2.5 s)
    with pytest.raises(RetryableError) as err:
        channel(fake_resend.url, scheduler_lease_seconds=10).send(message())
    assert err.value.code == "timeout"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(RetryableError) as err:
        channel(f"http://127.0.0.1:{port}").send(message())
    assert err.value.code == "network"


def test_reconcile_replays_the_stored_request(fake_resend: FakeResend):
    ch = channel(fake_resend.url)
    # the first try got through but its answer was lost on the way back
    lost = message()
    fake_resend.fail_next(status=500, after_accept=True)
    with pytest.raises(RetryableError):
        ch.send(lost)
    stored = ch.request_payload(lost)
    found = ch.reconcile(lost, started_at=utcnow(), request=stored)
    assert found is not None and fake_resend.emails[found.provider_message_id].key == lost.idempotency_key
    # a first try that never arrived goes out now, once
    never = message(to="bo@example.com")
    assert ch.reconcile(never, started_at=utcnow(), request=ch.request_payload(never)) is not None
    assert fake_resend.emails_per_address() == {"ann@example.com": 1, "bo@example.com": 1}


def test_reconcile_cannot_tell(fake_resend: FakeResend):
    ch, m = channel(fake_resend.url), message()
    ch.send(m)
    with pytest.raises(OutcomeUnknown):  # Resend remembers another request under this key
        ch.reconcile(m, started_at=utcnow(), request={**ch.request_payload(m), "subject": "Other"})
    with pytest.raises(OutcomeUnknown):  # too old: the key is forgotten, a replay could send twice
        ch.reconcile(m, started_at=utcnow() - timedelta(hours=25))
    assert fake_resend.emails_per_address()["ann@example.com"] == 1
    # refused as invalid: the try never went out
    fake_resend.fail_next(status=422, name="validation_error")
    assert ch.reconcile(message(to="cy@example.com"), started_at=utcnow()) is None

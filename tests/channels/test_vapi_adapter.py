"""The live Vapi adapter against the fake Vapi server (real HTTP, real httpx)."""

from __future__ import annotations

import socket
import uuid
from datetime import timedelta

import pytest

from core.channels import vapi as vapi_module
from core.channels.base import (
    OutboundMessage,
    OutcomeUnknown,
    PermanentError,
    QuotaExceededError,
    RetryableError,
)
from core.channels.vapi import VapiChannel
from core.db import utcnow
from tests.channels.helpers import live_settings
from tests.fakes.vapi import ASSISTANT_ID, PHONE_NUMBER_ID, FakeVapi


def channel(fake: FakeVapi, **overrides) -> VapiChannel:
    return VapiChannel(live_settings(vapi=fake, **overrides))


def message(**overrides) -> OutboundMessage:
    rid = uuid.uuid4()
    values = dict(channel="call", to="+12125550101", idempotency_key=f"reengage/{rid}/0", profile_id=uuid.uuid4(),
                  business_name="Bella Vista", campaign_id=uuid.uuid4(), recipient_id=rid, customer_name="Ann Lee",
                  text="Hi Ann, this is Mia at Bella Vista. It's been a while!",
                  variables={"first_name": "Ann", "business_name": "Bella Vista", "promotion": "20% off"},
                  metadata={"attempt": "1", "clock": "2026-06-15T15:00:00+00:00"})
    return OutboundMessage(**(values | overrides))


def test_a_call_speaks_vapis_shape(fake_vapi: FakeVapi):
    m = message()
    result = channel(fake_vapi).send(m)
    (body,) = fake_vapi.posts()
    # exactly Vapi's CreateCallDTO properties: no top-level metadata (Vapi answers 400 to unknown ones)
    assert set(body) == {"assistantId", "phoneNumberId", "customer", "assistantOverrides"}
    assert body["assistantId"] == ASSISTANT_ID and body["phoneNumberId"] == PHONE_NUMBER_ID
    assert body["customer"] == {"number": "+12125550101", "name": "Ann Lee"}
    overrides = body["assistantOverrides"]
    assert overrides["firstMessage"] == "Hi Ann, this is Mia at Bella Vista. It's been a while!"
    assert overrides["variableValues"] == {"first_name": "Ann", "business_name": "Bella Vista",
                                           "promotion": "20% off"}
    assert overrides["metadata"] == {"idempotency_key": m.idempotency_key, "recipient_id": str(m.recipient_id),
                                     "campaign_id": str(m.campaign_id), "profile_id": str(m.profile_id),
                                     "step": "0", "attempt": "1"}
    call = fake_vapi.calls[result.provider_message_id]
    assert result.status == "queued" and call["assistantOverrides"]["metadata"]["recipient_id"] == str(m.recipient_id)
    # the stored request is the request sent
    assert channel(fake_vapi).request_payload(m) == body


def test_agent_ids_override_the_defaults_and_long_names_are_cut(fake_vapi: FakeVapi):
    m = message(assistant_id="asst_agent_own", phone_number_id="pn_agent_own", customer_name="A" * 60)
    channel(fake_vapi).send(m)
    (body,) = fake_vapi.posts()
    assert (body["assistantId"], body["phoneNumberId"]) == ("asst_agent_own", "pn_agent_own")
    assert body["customer"]["name"] == "A" * 40


def test_without_an_assistant_the_campaign_pauses_and_nothing_is_sent(fake_vapi: FakeVapi):
    ch = channel(fake_vapi, vapi_assistant_id=None)
    with pytest.raises(QuotaExceededError) as err:
        ch.send(message())
    assert "VAPI_ASSISTANT_ID" in err.value.reason and fake_vapi.posts() == []


def test_the_fake_is_as_strict_as_vapi(fake_vapi: FakeVapi):
    """What the adapter must never send is refused, as Vapi refuses it."""
    import httpx

    body = channel(fake_vapi).request_payload(message())
    answer = httpx.post(f"{fake_vapi.url}/call", json={**body, "metadata": {"recipient_id": "x"}},
                        headers={"Authorization": "Bearer vapi_test_private_key"})
    assert answer.status_code == 400 and answer.json()["message"] == ["property metadata should not exist"]


@pytest.mark.parametrize(("status", "text", "error", "code"), [
    (400, ["customer.number must be a valid phone number in the E.164 format."], PermanentError, "http_400"),
    (400, "Over Concurrency Limit.", RetryableError, "concurrency_limited"),
    (400, "Couldn't Get Assistant. `assistantId` asst_x Does Not Exist.", QuotaExceededError, "bad_configuration"),
    (401, "Invalid Key.", QuotaExceededError, "unauthorized"),
    (403, "Forbidden", QuotaExceededError, "unauthorized"),
    (402, "Payment Required: your credit balance is too low", QuotaExceededError, "payment_required"),
    (429, "Too Many Requests", RetryableError, "rate_limited"),
    (500, "Internal server error", RetryableError, "http_500"),
    (503, "Service Unavailable", RetryableError, "http_503"),
    (422, "Unprocessable", PermanentError, "http_422"),
])
def test_error_mapping(fake_vapi: FakeVapi, status, text, error, code):
    fake_vapi.fail_next(status=status, message=text)
    with pytest.raises(error) as err:
        channel(fake_vapi).send(message())
    assert err.value.code == code and type(err.value) is error
    if error is QuotaExceededError:
        assert "resume" in err.value.reason
    assert fake_vapi.created() == []


def test_a_refused_key_pauses(fake_vapi: FakeVapi):
    with pytest.raises(QuotaExceededError) as err:
        channel(fake_vapi, vapi_api_key="wrong").send(message())
    assert "VAPI_API_KEY" in err.value.reason


def test_the_concurrency_limit_is_a_throttle(fake_vapi: FakeVapi):
    fake_vapi.concurrency = 1
    ch = channel(fake_vapi)
    ch.send(message(to="+12125550101"))
    with pytest.raises(RetryableError) as err:
        ch.send(message(to="+12125550102"))
    assert err.value.code == "concurrency_limited" and err.value.retry_after == 30.0


def test_timeouts_and_unreachable_servers(fake_vapi: FakeVapi):
    fake_vapi.delay = 3.0  # longer than the send timeout (lease 10 s → 2.5 s)
    with pytest.raises(RetryableError) as err:
        channel(fake_vapi, scheduler_lease_seconds=10).send(message())
    assert err.value.code == "timeout"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(RetryableError) as err:
        VapiChannel(live_settings(vapi=fake_vapi, vapi_base_url=f"http://127.0.0.1:{port}")).send(message())
    assert err.value.code == "not_sent"  # the connection was never made: nothing to reconcile


def test_reconcile_finds_a_call_whose_answer_was_lost(fake_vapi: FakeVapi):
    ch, m = channel(fake_vapi), message()
    fake_vapi.fail_next(status=502, message="Bad Gateway", after_accept=True)
    with pytest.raises(RetryableError):
        ch.send(m)
    (call,) = fake_vapi.created()
    found = ch.reconcile(m, started_at=utcnow() - timedelta(seconds=5), request=ch.request_payload(m))
    assert found is not None and found.provider_message_id == call["id"] and found.status == "queued"
    # another step's call (another key) is not taken for this one
    other = message(to="+12125550199")
    assert ch.reconcile(other, started_at=utcnow() - timedelta(minutes=3)) is None


def test_reconcile_proves_absence_only_when_it_can(fake_vapi: FakeVapi):
    ch, m = channel(fake_vapi), message()
    fake_vapi.fail_next(status=500)  # refused: no call was created
    with pytest.raises(RetryableError):
        ch.send(m)
    # too soon after the try: a request that timed out could still be on its way
    with pytest.raises(RetryableError) as err:
        ch.reconcile(m, started_at=utcnow() - timedelta(seconds=10))
    assert err.value.code == "too_early"
    assert ch.reconcile(m, started_at=utcnow() - timedelta(minutes=2)) is None
    # a key Vapi refuses: it cannot tell
    with pytest.raises(OutcomeUnknown):
        channel(fake_vapi, vapi_api_key="wrong").reconcile(m, started_at=utcnow() - timedelta(minutes=2))


def test_reconcile_pages_through_the_list(fake_vapi: FakeVapi, monkeypatch):
    monkeypatch.setattr(vapi_module, "LIST_LIMIT", 2)
    monkeypatch.setattr(vapi_module, "LIST_PAGES", 2)
    ch, ours = channel(fake_vapi), message()
    ch.send(ours)
    for i in range(2):
        ch.send(message(to=f"+1212555020{i}"))
    found = ch.reconcile(ours, started_at=utcnow() - timedelta(minutes=3))
    assert found is not None and fake_vapi.calls[found.provider_message_id]["customer"]["number"] == ours.to
    for i in range(3):
        ch.send(message(to=f"+1212555030{i}"))
    # more calls than the pages read: absence cannot be proven
    with pytest.raises(OutcomeUnknown) as err:
        ch.reconcile(message(to="+12125550999"), started_at=utcnow() - timedelta(minutes=3))
    assert err.value.code == "too_many_calls"


def test_reconcile_by_call_id(fake_vapi: FakeVapi):
    ch, m = channel(fake_vapi), message()
    sent = ch.send(m)
    assert ch.reconcile(m, started_at=utcnow(), provider_message_id=sent.provider_message_id).status == "queued"
    fake_vapi.end_call(sent.provider_message_id, ended_reason="customer-did-not-answer")
    ended = ch.reconcile(m, started_at=utcnow(), provider_message_id=sent.provider_message_id)
    assert ended.status == "ended" and ended.detail["record"]["endedReason"] == "customer-did-not-answer"
    with pytest.raises(OutcomeUnknown):
        ch.reconcile(m, started_at=utcnow(), provider_message_id=str(uuid.uuid4()))

"""The live Twilio adapter against the fake Twilio server, driven through the real ``twilio`` SDK."""

from __future__ import annotations

import socket
import uuid
from datetime import timedelta

import pytest

from core.channels.base import (
    OptedOutError,
    OutboundMessage,
    OutcomeUnknown,
    PermanentError,
    QuotaExceededError,
    RetryableError,
)
from core.channels.twilio_sms import SETTLE_AFTER, TwilioChannel
from core.db import utcnow
from tests.channels.helpers import PUBLIC, live_settings
from tests.fakes.twilio import FROM_NUMBER, MESSAGING_SERVICE_SID, FakeTwilio


def channel(fake: FakeTwilio, **overrides) -> TwilioChannel:
    return TwilioChannel(live_settings(twilio=fake, **overrides))


def message(**overrides) -> OutboundMessage:
    rid = uuid.uuid4()
    values = dict(channel="sms", to="+12125550101", idempotency_key=f"reengage/{rid}/0", profile_id=uuid.uuid4(),
                  business_name="Bella Vista", campaign_id=uuid.uuid4(), recipient_id=rid, customer_name="Ann Lee",
                  text="Hi Ann, Bella Vista misses you! 20% off this month.\nReply STOP to opt out")
    return OutboundMessage(**(values | overrides))


def test_a_text_speaks_twilios_shape(fake_twilio: FakeTwilio):
    m = message()
    result = channel(fake_twilio).send(m)
    (form,) = fake_twilio.posts()
    assert form == {"To": "+12125550101", "From": FROM_NUMBER, "Body": m.text,
                    "StatusCallback": f"{PUBLIC}/webhooks/twilio/status"}
    assert result.provider_message_id.startswith("SM") and result.status == "queued"
    assert fake_twilio.messages[result.provider_message_id].body == m.text


def test_a_messaging_service_instead_of_a_number(fake_twilio: FakeTwilio):
    channel(fake_twilio, twilio_from_number=None, twilio_messaging_service_sid=MESSAGING_SERVICE_SID).send(message())
    (form,) = fake_twilio.posts()
    assert form["MessagingServiceSid"] == MESSAGING_SERVICE_SID and "From" not in form


def test_an_edge_in_the_environment_does_not_move_the_test_server(fake_twilio: FakeTwilio, monkeypatch):
    monkeypatch.setenv("TWILIO_EDGE", "sydney")
    monkeypatch.setenv("TWILIO_REGION", "au1")
    channel(fake_twilio).send(message())
    assert len(fake_twilio.posts()) == 1


@pytest.mark.parametrize(("status", "code", "error", "our_code"), [
    (400, 21211, PermanentError, "21211"),
    (400, 21614, PermanentError, "21614"),
    (400, 21408, PermanentError, "21408"),
    (400, 21610, OptedOutError, "21610"),
    (400, 21611, RetryableError, "rate_limited"),
    (429, 20429, RetryableError, "rate_limited"),
    (400, 21606, QuotaExceededError, "21606"),
    (401, 20003, QuotaExceededError, "20003"),
    (500, 20500, RetryableError, "http_500"),
    (503, 20503, RetryableError, "http_503"),
])
def test_error_mapping(fake_twilio: FakeTwilio, status, code, error, our_code):
    fake_twilio.fail_next(status=status, code=code, message=f"the provider's reason {code}")
    with pytest.raises(error) as err:
        channel(fake_twilio).send(message())
    assert type(err.value) is error and err.value.code == our_code
    assert f"the provider's reason {code}" in err.value.reason
    if error is QuotaExceededError:
        assert "resume" in err.value.reason
    assert fake_twilio.messages == {}


def test_real_refusals_of_the_fake(fake_twilio: FakeTwilio):
    ch = channel(fake_twilio)
    with pytest.raises(PermanentError) as err:
        ch.send(message(to="+1555"))
    assert err.value.code == "21211"
    fake_twilio.blocked.add("+12125550101")  # the number replied STOP to this sender
    with pytest.raises(OptedOutError) as err:
        ch.send(message())
    assert "STOP" in err.value.reason
    with pytest.raises(QuotaExceededError) as err:
        channel(fake_twilio, twilio_auth_token="wrong-token").send(message(to="+12125550102"))
    assert "TWILIO_AUTH_TOKEN" in err.value.reason
    with pytest.raises(QuotaExceededError):
        channel(fake_twilio, twilio_from_number="+12015550999").send(message(to="+12125550102"))


def test_timeouts_and_unreachable_servers(fake_twilio: FakeTwilio):
    fake_twilio.delay = 3.0  # longer than the send timeout (lease 10 s → 2.5 s)
    with pytest.raises(RetryableError) as err:
        channel(fake_twilio, scheduler_lease_seconds=10).send(message())
    assert err.value.code == "timeout"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(RetryableError) as err:
        channel(fake_twilio, twilio_base_url=f"http://127.0.0.1:{port}").send(message())
    assert err.value.code == "not_sent"


def test_reconcile_finds_a_text_whose_answer_was_lost(fake_twilio: FakeTwilio):
    ch, m = channel(fake_twilio), message()
    fake_twilio.fail_next(status=500, code=20500, after_accept=True)
    with pytest.raises(RetryableError):
        ch.send(m)
    (sent,) = fake_twilio.sent_to(m.to)
    found = ch.reconcile(m, started_at=utcnow() - timedelta(seconds=5))
    assert found is not None and found.provider_message_id == sent.sid
    # asked as the brief of the API says: messages to that number sent since the try began
    assert "To=%2B12125550101" in fake_twilio.lists()[0] and "DateSent%3E=" in fake_twilio.lists()[0]


def test_a_text_twilio_never_created_is_asked_about_again_and_then_sent_again(fake_twilio: FakeTwilio):
    """DESIGN §13: a 5xx never loses a customer.  A try Twilio does not list is asked about again while
    it is young; still unlisted a few minutes later, it never reached Twilio (a retry is safe)."""
    ch, m = channel(fake_twilio), message()
    fake_twilio.fail_next(status=500, code=20500)  # refused: nothing created
    with pytest.raises(RetryableError):
        ch.send(m)
    with pytest.raises(RetryableError) as err:
        ch.reconcile(m, started_at=utcnow() - timedelta(minutes=1))
    assert err.value.code == "too_early"
    assert ch.reconcile(m, started_at=utcnow() - SETTLE_AFTER - timedelta(seconds=1)) is None
    # another text to the same number is not taken for this one
    ch.send(message(text="Something else"))
    assert ch.reconcile(m, started_at=utcnow() - SETTLE_AFTER - timedelta(seconds=1)) is None
    with pytest.raises(OutcomeUnknown) as unknown:
        channel(fake_twilio, twilio_auth_token="wrong-token").reconcile(m, started_at=utcnow())
    assert unknown.value.code == "unauthorized"


def test_reconcile_finds_a_queued_text_without_a_sent_date(fake_twilio: FakeTwilio):
    ch, m = channel(fake_twilio), message()
    fake_twilio.fail_next(status=500, code=20500, after_accept=True)
    with pytest.raises(RetryableError):
        ch.send(m)
    (sent,) = fake_twilio.sent_to(m.to)
    sent.status, sent.sent = "queued", None  # still in Twilio's queue: no DateSent yet
    found = ch.reconcile(m, started_at=utcnow() - timedelta(seconds=5))
    assert found is not None and found.provider_message_id == sent.sid and found.status == "queued"

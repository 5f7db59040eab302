"""Before a launch (core/launch.py): the cost estimate from the final message text and the business's call
history, and the sentence that says when nothing can go out for a while."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from core import launch
from core.config import Settings
from core.models import Campaign, OutreachEvent, Profile
from core.outbound import STOP_FOOTER, Sample
from tests import factories as f

SETTINGS = Settings(_env_file=None, secret_key="launch-tests", public_base_url="https://shop.example")  # type: ignore[call-arg]
WEEKDAYS = {"start": "09:00", "end": "19:00", "days": ["mon", "tue", "wed", "thu", "fri", "sat"]}


def _profile(**prices: float) -> Profile:
    return Profile(id=uuid.uuid4(), business_name="Bella Vista Salon", timezone="America/New_York",
                   price_per_sms_segment=prices.get("sms", 0.01), price_per_call_minute=prices.get("call", 0.2),
                   price_per_email=prices.get("email", 0.001))


def _campaign(method: str, **fields: object) -> Campaign:
    values: dict[str, object] = {"id": uuid.UUID(int=0), "name": "x", "campaign_type": "winback",
                                 "outreach_method": method, "timezone": "America/New_York", "send_window": WEEKDAYS,
                                 "variables": {}, "variants": [], "steps": [], "holdout_percent": 0}
    values.update(fields)
    return Campaign(**values)


def test_sms_cost_comes_from_the_final_text_footer_included() -> None:
    # 150 characters: one segment as written, two once the opt-out footer is added to the first text
    text = "Hi {first_name|there}! " + "x" * (150 - len("Hi Ann! "))
    c = _campaign("sms", message_template=text)
    estimate = launch.estimate_cost(campaign=c, profile=_profile(sms=0.01), agent=None, settings=SETTINGS,
                                    audience=400, samples=[Sample(customer_name="Ann Lee")])
    [line] = estimate.lines
    assert len("Hi Ann! " + "x" * 142 + "\n" + STOP_FOOTER) > 160
    assert (line.messages, line.unit, estimate.total) == (400, 0.02, 8.0)
    assert "2 segments per text" in line.basis


def test_holdout_calls_and_every_step_are_counted() -> None:
    steps = [{"channel": "call", "delay_hours": 0, "condition": "always"},
             {"channel": "sms", "delay_hours": 1, "condition": "not_answered"},
             {"channel": "email", "delay_hours": 72, "condition": "no_response"}]
    c = _campaign("multi", steps=steps, holdout_percent=10, call_script="Hi", sms_template="Hi {first_name|there}",
                  message_template="Hello", email_subject="Hi")
    estimate = launch.estimate_cost(campaign=c, profile=_profile(sms=0.01, call=0.2, email=0.001), agent=None,
                                    settings=SETTINGS, audience=400, call_minutes=None)
    assert estimate.contacted == 360  # 10 % of 400 kept back, never contacted
    assert [(line.channel, line.unit) for line in estimate.lines] == [("call", 0.3), ("sms", 0.01), ("email", 0.001)]
    assert estimate.total == pytest.approx(360 * (0.3 + 0.01 + 0.001))
    longer = launch.estimate_cost(campaign=c, profile=_profile(call=0.2), agent=None, settings=SETTINGS,
                                  audience=400, call_minutes=3.0)
    assert longer.lines[0].unit == pytest.approx(0.6) and "3 min per call" in longer.lines[0].basis


def test_average_call_minutes_from_the_business_history(session, now) -> None:
    profile = f.make_profile(session)
    other = f.make_profile(session)
    assert launch.average_call_minutes(session, profile_id=profile.id) is None  # no history: the default applies
    for owner, seconds in ((profile, 60), (profile, 120), (profile, None), (other, 6000)):
        payload = {"duration_seconds": seconds} if seconds is not None else {"summary": "no duration"}
        session.add(OutreachEvent(id=uuid.uuid4(), profile_id=owner.id, channel="call", provider="vapi",
                                  provider_event_id=f"e-{uuid.uuid4()}", type="answered", payload=payload,
                                  occurred_at=now, received_at=now))
    session.add(OutreachEvent(id=uuid.uuid4(), profile_id=profile.id, channel="sms", provider="twilio",
                              provider_event_id=f"e-{uuid.uuid4()}", type="delivered",
                              payload={"duration_seconds": 9999}, occurred_at=now, received_at=now))
    session.flush()
    assert launch.average_call_minutes(session, profile_id=profile.id) == 1.5  # (1 + 2) / 2: calls only, its own


def test_a_launch_outside_the_window_says_when_the_first_message_goes() -> None:
    monday_0618_ny = datetime(2026, 6, 15, 10, 18, tzinfo=UTC)
    texts = _campaign("sms")
    found = launch.first_send(start=monday_0618_ny, campaign=texts, phones=["+12125550100"])
    sentence = launch.waiting_sentence(found, start=monday_0618_ny, send_window=WEEKDAYS)
    assert sentence is not None
    assert sentence.startswith("Nothing goes out until 09:00 today in New York (2 h 42 min after you start it): "
                               "the send window is 09:00–19:00, Mon–Sat, in each customer's own time zone, and "
                               "calls and texts only go out between 08:00 and 21:00 there.")
    # inside the window: nothing to say
    noon = monday_0618_ny + timedelta(hours=6)
    assert launch.waiting_sentence(launch.first_send(start=noon, campaign=texts, phones=[None]), start=noon,
                                   send_window=WEEKDAYS) is None
    # a customer further west opens later; the earliest one decides when the first text goes
    late = datetime(2026, 6, 15, 23, 30, tzinfo=UTC)  # 19:30 New York, 16:30 Los Angeles
    both = launch.first_send(start=late, campaign=texts, phones=["+12125550100", "+13105550100"])
    assert both.at == late and both.zone == "America/Los_Angeles"
    # Saturday evening: the e-mails wait for Monday
    saturday = datetime(2026, 6, 20, 23, 30, tzinfo=UTC)
    mails = _campaign("email", send_window={**WEEKDAYS, "days": ["mon", "tue"]})
    waiting = launch.waiting_sentence(launch.first_send(start=saturday, campaign=mails, phones=[None]),
                                      start=saturday, send_window=mails.send_window)
    assert waiting is not None and waiting.startswith("Nothing goes out until 09:00 on Monday in New York")
    assert "The first e-mails go out then." in waiting
    never = _campaign("sms", send_window={"start": "22:00", "end": "23:00", "days": ["mon"]})
    nothing = launch.waiting_sentence(launch.first_send(start=saturday, campaign=never, phones=[None]),
                                      start=saturday, send_window=never.send_window)
    assert nothing is not None and nothing.startswith("Nothing can go out in the next two weeks")

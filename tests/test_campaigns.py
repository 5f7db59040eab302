"""Campaign rules: validation, the status machine, editing, deleting, listing."""

from __future__ import annotations

import itertools
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from core import campaigns
from core.accounts import create_agent
from core.errors import Conflict, Invalid, NotFound
from core.models import CAMPAIGN_STATUSES, Campaign, CampaignRecipient
from tests import factories as f
from tests.conftest import NOW


@pytest.fixture
def profile(session):
    p = f.make_profile(session, timezone="Europe/Paris")
    session.commit()
    return p


def create(session, profile, **data):
    base = {"name": "Spring", "campaign_type": "winback", "outreach_method": "email", **f.CONTENT["email"]}
    base.update(data)
    return campaigns.create_campaign(session, profile_id=profile.id, data=base, now=NOW)


def fields_of(err: pytest.ExceptionInfo[Invalid]) -> list[str]:
    return [e.field for e in err.value.errors]


def test_defaults(session, profile):
    c = create(session, profile)
    assert c.status == "draft"
    assert c.timezone == "Europe/Paris"  # the profile's
    assert c.send_window == {"start": "09:00", "end": "20:00", "days": ["mon", "tue", "wed", "thu", "fri", "sat",
                                                                        "sun"]}
    assert (c.rate_limit_per_minute, c.max_concurrent_calls, c.max_attempts) == (30, 3, 3)
    assert c.variables == {} and c.variants == [] and c.steps == [] and c.target_criteria == {}


def test_scheduled_at_makes_it_scheduled(session, profile, now):
    c = create(session, profile, scheduled_at=(now + timedelta(days=1)).isoformat())
    assert c.status == "scheduled" and c.scheduled_at == now + timedelta(days=1)
    d = create(session, profile, scheduled_at=(now + timedelta(days=1)).isoformat(), status="draft")
    assert d.status == "draft"


@pytest.mark.parametrize(("method", "data", "missing"), [
    ("call", {}, ["call_script"]),
    ("email", {}, ["message_template", "email_subject"]),
    ("sms", {}, ["message_template"]),
    ("multi", {}, ["steps"]),
    ("multi", {"steps": [{"channel": "sms"}, {"channel": "call"}]}, ["call_script", "sms_template"]),
    ("multi", {"steps": [{"channel": "email"}], "message_template": "x"}, ["email_subject"]),
])
def test_channel_specific_content_is_required(session, profile, method, data, missing):
    with pytest.raises(Invalid) as err:
        campaigns.create_campaign(session, profile_id=profile.id, data={
            "name": "X", "campaign_type": "followup", "outreach_method": method, **data})
    assert sorted(fields_of(err)) == sorted(missing)


@pytest.mark.parametrize(("data", "field", "words"), [
    ({"campaign_type": "win-back"}, "campaign_type", "winback"),
    ({"outreach_method": "fax"}, "outreach_method", "call"),
    ({"name": "   "}, "name", "name"),
    ({"timezone": "Mars/Olympus"}, "timezone", "IANA"),
    ({"send_window": {"start": "19:00", "end": "09:00"}}, "send_window", "end after"),
    ({"send_window": {"start": "9am", "end": "17:00"}}, "send_window", "HH:MM"),
    ({"send_window": {"days": []}}, "send_window", "at least one day"),
    ({"send_window": {"days": ["monday"]}}, "send_window.days.0", "mon"),
    ({"rate_limit_per_minute": 0}, "rate_limit_per_minute", "greater than"),
    ({"max_attempts": 11}, "max_attempts", "less than"),
    ({"variants": [{"name": "A"}]}, "variants", "two variants"),
    ({"variants": [{"name": "A"}, {"name": "A"}]}, "variants", "unique"),
    ({"variants": [{"name": "A", "weight": 0}, {"name": "B"}]}, "variants.0.weight", "greater than"),
    ({"steps": [{"channel": "email"}]}, "steps", "multi-channel"),
    ({"message_template": "Hi {nickname}"}, "message_template", "{nickname}"),
    ({"email_subject": "{promo} inside"}, "email_subject", "{promo}"),
    ({"variants": [{"name": "A"}, {"name": "B", "email_subject": "{oops}"}]}, "variants.1.email_subject", "{oops}"),
    ({"variables": {"business_name": "x"}}, "variables.business_name", "built-in"),
    ({"scheduled_at": "2026-12-01T10:00:00"}, "scheduled_at", "timezone"),
    ({"status": "scheduled"}, "scheduled_at", "start time"),
    ({"status": "active"}, "status", "draft"),
    ({"target_criteria": {"bogus": 1}}, "target_criteria.bogus", "unknown"),
    ({"colour": "red"}, "colour", "unknown"),
    ({"agent_id": "not-a-uuid"}, "agent_id", "UUID"),
])
def test_bad_input_names_the_field(session, profile, data, field, words):
    with pytest.raises(Invalid) as err:
        create(session, profile, **data)
    assert field in fields_of(err)
    assert words in str(err.value)
    assert session.scalar(select(func.count()).select_from(Campaign)) == 0


def test_agent_must_belong_to_the_business(session, profile):
    other = f.make_profile(session)
    theirs = create_agent(session, profile_id=other.id, name="Theirs")
    ours = create_agent(session, profile_id=profile.id, name="Ours")
    with pytest.raises(Invalid) as err:
        create(session, profile, agent_id=str(theirs.id))
    assert fields_of(err) == ["agent_id"]
    assert create(session, profile, agent_id=str(ours.id)).agent_id == ours.id


def test_variables_make_placeholders_known(session, profile):
    c = create(session, profile, message_template="{promotion} for you", variables={"promotion": "20% off"})
    assert c.variables == {"promotion": "20% off"}
    with pytest.raises(Invalid) as err:
        campaigns.update_campaign(session, profile_id=profile.id, campaign_id=c.id, data={"variables": {}})
    assert fields_of(err) == ["message_template"]


# --- status machine -----------------------------------------------------------------------------

LEGAL = {("draft", "scheduled"), ("draft", "active"), ("draft", "cancelled"), ("scheduled", "draft"),
         ("scheduled", "active"), ("scheduled", "cancelled"), ("active", "paused"), ("active", "cancelled"),
         ("paused", "active"), ("paused", "cancelled")}


def put_in(session, campaign: Campaign, status: str) -> None:
    campaign.status = status
    campaign.scheduled_at = campaign.scheduled_at or campaign.created_at + timedelta(days=1)
    session.flush()


@pytest.mark.parametrize(("current", "target"), [
    (a, b) for a, b in itertools.product(CAMPAIGN_STATUSES, CAMPAIGN_STATUSES) if a != b])
def test_every_transition(session, profile, now, current, target):
    c = create(session, profile)
    put_in(session, c, current)
    if (current, target) in LEGAL:
        out = campaigns.update_campaign(session, profile_id=profile.id, campaign_id=c.id,
                                        data={"status": target}, now=now)
        assert out.status == target
        if target == "active" and current != "paused":
            assert out.started_at == now
        if target == "cancelled":
            assert out.completed_at == now
    else:
        with pytest.raises(Conflict) as err:
            campaigns.update_campaign(session, profile_id=profile.id, campaign_id=c.id, data={"status": target},
                                      now=now)
        assert err.value.field == "status"
        assert f"This campaign is {campaigns._STATUS_WORDS[current]}" in err.value.message
        session.refresh(c)
        assert c.status == current


def test_only_the_system_completes(session, profile, now):
    c = create(session, profile)
    put_in(session, c, "active")
    assert not campaigns.can_transition("active", "completed")
    done = campaigns.transition(session, profile_id=profile.id, campaign_id=c.id, target="completed",
                                by_system=True, now=now)
    assert done.status == "completed" and done.completed_at == now
    with pytest.raises(Conflict):
        campaigns.transition(session, profile_id=profile.id, campaign_id=c.id, target="active", by_system=True)


def test_start_selects_recipients_and_resume_keeps_them(session, profile, now):
    f.lead(session, profile, email="x@example.com", now=now)
    f.lead(session, profile, email="y@example.com", now=now)
    c = create(session, profile)
    started = campaigns.start_campaign(session, profile_id=profile.id, campaign_id=c.id, now=now)
    assert started.status == "active"
    assert campaigns.recipient_counts(session, profile_id=profile.id, campaign_id=c.id)["pending"] == 2
    with pytest.raises(Conflict, match="already active"):
        campaigns.start_campaign(session, profile_id=profile.id, campaign_id=c.id, now=now)
    campaigns.pause_campaign(session, profile_id=profile.id, campaign_id=c.id, now=now)
    f.lead(session, profile, email="z@example.com", now=now)
    later = now + timedelta(hours=1)
    resumed = campaigns.start_campaign(session, profile_id=profile.id, campaign_id=c.id, now=later)
    assert resumed.status == "active" and resumed.started_at == now  # resumed, not restarted
    assert campaigns.recipient_counts(session, profile_id=profile.id, campaign_id=c.id)["pending"] == 2


def test_start_counts_the_first_step_delay_from_the_start(session, profile, now):
    f.lead(session, profile, email="x@example.com", now=now)
    c = create(session, profile, outreach_method="multi",
               **{**f.CONTENT["multi"], "steps": [{"channel": "email", "delay_hours": 2}]})
    campaigns.select_campaign_recipients(session, profile_id=profile.id, campaign_id=c.id,
                                         now=now - timedelta(days=3))
    campaigns.start_campaign(session, profile_id=profile.id, campaign_id=c.id, now=now)
    due = session.scalar(select(CampaignRecipient.next_attempt_at).where(CampaignRecipient.campaign_id == c.id))
    assert due == now + timedelta(hours=2)


def test_editing_rules_follow_the_status(session, profile, now):
    c = create(session, profile)
    campaigns.update_campaign(session, profile_id=profile.id, campaign_id=c.id,
                              data={"message_template": "New body", "rate_limit_per_minute": 10})
    put_in(session, c, "active")
    campaigns.update_campaign(session, profile_id=profile.id, campaign_id=c.id,
                              data={"rate_limit_per_minute": 5, "name": "Renamed"})
    with pytest.raises(Conflict) as err:
        campaigns.update_campaign(session, profile_id=profile.id, campaign_id=c.id,
                                  data={"message_template": "Changed mid-flight"})
    assert err.value.field == "message_template" and "rate_limit_per_minute" in err.value.message
    put_in(session, c, "completed")
    with pytest.raises(Conflict):
        campaigns.update_campaign(session, profile_id=profile.id, campaign_id=c.id, data={"max_attempts": 2})
    assert campaigns.update_campaign(session, profile_id=profile.id, campaign_id=c.id,
                                     data={"description": "done"}).description == "done"


def test_patch_cannot_blank_required_fields(session, profile):
    c = create(session, profile)
    for field in ("name", "outreach_method", "rate_limit_per_minute"):
        with pytest.raises(Invalid) as err:
            campaigns.update_campaign(session, profile_id=profile.id, campaign_id=c.id, data={field: None})
        assert err.value.field == field
    with pytest.raises(Invalid) as err:
        campaigns.update_campaign(session, profile_id=profile.id, campaign_id=c.id,
                                  data={"outreach_method": "call"})
    assert fields_of(err) == ["call_script"]


@pytest.mark.parametrize("status", CAMPAIGN_STATUSES)
def test_delete_allowed_unless_active(session, profile, status):
    c = create(session, profile)
    put_in(session, c, status)
    if status == "active":
        with pytest.raises(Conflict, match="pause or stop it before deleting"):
            campaigns.delete_campaign(session, profile_id=profile.id, campaign_id=c.id)
    else:
        campaigns.delete_campaign(session, profile_id=profile.id, campaign_id=c.id)
        assert session.get(Campaign, c.id) is None


def test_list_filters_pages_and_scopes(session, profile, now):
    other = f.make_profile(session)
    for i in range(5):
        create(session, profile, name=f"C{i}", campaign_type="feedback" if i % 2 else "winback")
    create(session, other, name="Theirs")
    rows, total = campaigns.list_campaigns(session, profile_id=profile.id, limit=2)
    assert total == 5 and len(rows) == 2
    _, feedback = campaigns.list_campaigns(session, profile_id=profile.id, campaign_type="feedback")
    assert feedback == 2
    _, drafts = campaigns.list_campaigns(session, profile_id=profile.id, status="draft",
                                         created_before=now + timedelta(days=3650))
    assert drafts == 5
    with pytest.raises(Invalid):
        campaigns.list_campaigns(session, profile_id=profile.id, status="running")


def test_recipients_page_filter_and_search(session, profile, now):
    for i, name in enumerate(["Ann Lee", "Bo Li", "Cy Lo"]):
        f.lead(session, profile, email=f"p{i}@example.com", name=name, now=now)
    c = create(session, profile)
    campaigns.select_campaign_recipients(session, profile_id=profile.id, campaign_id=c.id, now=now)
    rows, total = campaigns.list_recipients(session, profile_id=profile.id, campaign_id=c.id, search="bo")
    assert total == 1 and rows[0].customer_name == "Bo Li"
    _, pending = campaigns.list_recipients(session, profile_id=profile.id, campaign_id=c.id, status="pending")
    assert pending == 3
    page1, _ = campaigns.list_recipients(session, profile_id=profile.id, campaign_id=c.id, limit=2)
    page2, _ = campaigns.list_recipients(session, profile_id=profile.id, campaign_id=c.id, limit=2, offset=2)
    assert len({r.id for r in page1 + page2}) == 3
    with pytest.raises(Invalid):
        campaigns.list_recipients(session, profile_id=profile.id, campaign_id=c.id, status="lost")


def test_closed_campaigns_take_no_recipients(session, profile, now):
    c = create(session, profile)
    put_in(session, c, "cancelled")
    with pytest.raises(Conflict):
        campaigns.select_campaign_recipients(session, profile_id=profile.id, campaign_id=c.id)
    with pytest.raises(Conflict):
        campaigns.add_recipients(session, profile_id=profile.id, campaign_id=c.id,
                                 contacts=[{"customer_email": "a@example.com"}])


def test_another_business_campaign_is_not_found(session, profile, now):
    other = f.make_profile(session)
    theirs = create(session, other)
    recipient_probe = [
        lambda: campaigns.get_campaign(session, profile_id=profile.id, campaign_id=theirs.id),
        lambda: campaigns.update_campaign(session, profile_id=profile.id, campaign_id=theirs.id, data={"name": "x"}),
        lambda: campaigns.delete_campaign(session, profile_id=profile.id, campaign_id=theirs.id),
        lambda: campaigns.start_campaign(session, profile_id=profile.id, campaign_id=theirs.id),
        lambda: campaigns.pause_campaign(session, profile_id=profile.id, campaign_id=theirs.id),
        lambda: campaigns.stop_campaign(session, profile_id=profile.id, campaign_id=theirs.id),
        lambda: campaigns.select_campaign_recipients(session, profile_id=profile.id, campaign_id=theirs.id),
        lambda: campaigns.add_recipients(session, profile_id=profile.id, campaign_id=theirs.id, contacts=[]),
        lambda: campaigns.list_recipients(session, profile_id=profile.id, campaign_id=theirs.id),
    ]
    for probe in recipient_probe:
        with pytest.raises(NotFound):
            probe()
    assert campaigns.recipient_counts(session, profile_id=profile.id, campaign_id=theirs.id)["pending"] == 0
    assert session.get(Campaign, theirs.id).name == "Spring"

"""Another business's data is never visible: every public function of ``core`` that is scoped by
``profile_id`` is called with business B's id and business A's objects, and must refuse (not found /
invalid) or answer with nothing of A's — on SQLite and PostgreSQL.

The list of functions is discovered, not written down: a new scoped function without a probe here
fails :func:`test_every_scoped_function_is_probed`, so tenancy is checked the day it is added.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

import core
from core import (
    accounts,
    analytics,
    attribution,
    besttime,
    campaigns,
    customer_activity,
    customers,
    dispatch,
    exports,
    launch,
    leads,
    optouts,
    results,
    targeting,
    testsend,
    waiting,
    wave,
)
from core.channels.base import OutboundMessage
from core.errors import Invalid, NotFound
from core.models import CampaignRecipient, Lead, OptOut, OutreachAttempt, OutreachEvent
from core.outbound import attempt_detail
from tests.compliance_probes import compliance_probes, preview_by_state
from tests.customer_probes import customer_probes
from tests.endpoint_probes import endpoint_probes
from tests.factories import CONTENT, campaign, lead, make_profile

# functions whose profile_id is data they are told, not a scope they read through
NOT_SCOPES = {
    # a provider event names the business it is about (found from the attempt that sent the message);
    # the webhook code resolves it, the function only stores it
    "core.events.record_event",
}

A_PHONE, A_EMAIL = "+12125550111", "ann@a-shop.example"


@dataclass
class World:
    a: Any
    b: Any
    a_agent: Any
    a_campaign: Any
    a_recipient: Any
    a_lead: Any
    a_opt_out: Any
    a_key_id: uuid.UUID
    now: datetime
    factory: sessionmaker[Session]


@pytest.fixture
def world(session: Session, engine: Any, now: datetime) -> World:
    a, b = make_profile(session, name="Shop A"), make_profile(session, name="Shop B")
    a_agent = accounts.create_agent(session, profile_id=a.id, name="A's desk")
    a_lead = lead(session, a, phone=A_PHONE, email=A_EMAIL, name="Ann Able", now=now, days_ago=300)
    lead(session, b, phone="+12125550199", name="Bob Baker", now=now, days_ago=300)
    a_campaign = campaign(session, a, method="email", now=now)
    campaigns.select_campaign_recipients(session, profile_id=a.id, campaign_id=a_campaign.id, now=now)
    a_recipient = session.scalars(select(CampaignRecipient).where(
        CampaignRecipient.campaign_id == a_campaign.id)).one()
    a_opt_out = optouts.record_opt_out(session, profile_id=a.id, contact="+12125550122", channel="sms",
                                       source="manual", now=now)
    key, _secret = accounts.create_api_key(session, profile_id=a.id)
    session.commit()
    return World(a=a, b=b, a_agent=a_agent, a_campaign=a_campaign, a_recipient=a_recipient, a_lead=a_lead,
                 a_opt_out=a_opt_out, a_key_id=key.id, now=now,
                 factory=sessionmaker(engine, expire_on_commit=False))


def refused(call: Callable[[], Any]) -> None:
    with pytest.raises((NotFound, Invalid)):
        result = call()
        if inspect.isgenerator(result) or hasattr(result, "__next__"):
            list(result)


def frame_has_nothing_of_a(frame: pd.DataFrame) -> None:
    text = frame.astype(str).to_string()
    for secret in ("Ann", A_PHONE, A_EMAIL, "Test campaign"):
        assert secret not in text, f"{secret!r} of business A shows in business B's data"


def empty_frame(frame: pd.DataFrame) -> None:
    numbers = frame.select_dtypes("number")
    assert frame.empty or numbers.to_numpy().sum() == 0, frame


# --- one probe per scoped function: B's id, A's objects -------------------------------------------

def _accounts(s: Session, w: World) -> dict[str, Callable[[], None]]:
    b = w.b.id
    return {
        "core.accounts.create_agent": lambda: None,  # creates in B only: checked below
        "core.accounts.create_api_key": lambda: None,  # idem
        "core.accounts.get_profile": lambda: None,  # the id *is* the business
        "core.accounts.update_profile": lambda: None,  # idem
        "core.accounts.list_agents": lambda: _assert(
            w.a_agent.id not in {x.id for x in accounts.list_agents(s, profile_id=b)}),
        "core.accounts.list_api_keys": lambda: _assert(
            w.a_key_id not in {x.id for x in accounts.list_api_keys(s, profile_id=b)}),
        "core.accounts.revoke_api_key": lambda: refused(
            lambda: accounts.revoke_api_key(s, profile_id=b, key_id=w.a_key_id)),
    }


def _campaigns(s: Session, w: World) -> dict[str, Callable[[], None]]:
    b, cid = w.b.id, w.a_campaign.id
    refuse = {name: (lambda fn=fn: refused(lambda: fn(s, profile_id=b, campaign_id=cid)))
              for name, fn in {
                  "get_campaign": campaigns.get_campaign, "delete_campaign": campaigns.delete_campaign,
                  "pause_campaign": campaigns.pause_campaign, "start_campaign": campaigns.start_campaign,
                  "stop_campaign": campaigns.stop_campaign,
                  "select_campaign_recipients": campaigns.select_campaign_recipients,
                  "list_recipients": campaigns.list_recipients}.items()}
    probes = {f"core.campaigns.{k}": v for k, v in refuse.items()}
    probes.update({
        "core.campaigns.add_recipients": lambda: refused(lambda: campaigns.add_recipients(
            s, profile_id=b, campaign_id=cid, lead_ids=[w.a_lead.id])),
        "core.campaigns.get_recipient": lambda: refused(lambda: campaigns.get_recipient(
            s, profile_id=b, recipient_id=w.a_recipient.id)),
        "core.campaigns.transition": lambda: refused(lambda: campaigns.transition(
            s, profile_id=b, campaign_id=cid, target="active")),
        "core.campaigns.update_campaign": lambda: refused(lambda: campaigns.update_campaign(
            s, profile_id=b, campaign_id=cid, data={"name": "hijacked"})),
        "core.campaigns.list_campaigns": lambda: _assert(
            cid not in {c.id for c in campaigns.list_campaigns(s, profile_id=b)[0]}),
        # an agent of another business is refused where a campaign names one
        "core.campaigns.create_campaign": lambda: refused(lambda: campaign(
            s, w.b, agent_id=str(w.a_agent.id))),
        "core.campaigns.validate_campaign": lambda: refused(lambda: campaigns.validate_campaign(
            s, profile_id=b, values={"name": "x", "campaign_type": "winback", "outreach_method": "email",
                                     "target_criteria": {}, **CONTENT["email"], "agent_id": w.a_agent.id})),
        # counts under B's id: A's recipients are not counted
        "core.campaigns.recipient_counts": lambda: _assert(
            sum(campaigns.recipient_counts(s, profile_id=b, campaign_id=cid).values()) == 0),
        # a lead of A given to B's campaign: refused, and not added
        "core.campaigns.add_recipients#lead": lambda: _b_campaign_refuses_a_lead(s, w),
    })
    return probes


def _b_campaign_refuses_a_lead(s: Session, w: World) -> None:
    mine = campaign(s, w.b, method="email")
    with pytest.raises((NotFound, Invalid)):
        campaigns.add_recipients(s, profile_id=w.b.id, campaign_id=mine.id, lead_ids=[w.a_lead.id])
    s.rollback()


def _analytics(s: Session, w: World) -> dict[str, Callable[[], None]]:
    b, cid = w.b.id, w.a_campaign.id
    return {
        "core.analytics.campaign_progress": lambda: refused(lambda: analytics.campaign_progress(
            s, profile_id=b, campaign_id=cid)),
        "core.analytics.recipient_detail": lambda: refused(lambda: analytics.recipient_detail(
            s, profile_id=b, recipient_id=w.a_recipient.id)),
        "core.analytics.recipients_page": lambda: refused(lambda: analytics.recipients_page(
            s, profile_id=b, campaign_id=cid)),
        "core.analytics.variant_comparison": lambda: refused(lambda: analytics.variant_comparison(
            s, profile_id=b, campaign_id=cid)),
        "core.analytics.campaign_stats": lambda: _assert(
            analytics.campaign_stats(s, profile_id=b, campaign_ids=[cid]).get(cid, analytics.CampaignStats())
            == analytics.CampaignStats()),
        "core.analytics.campaign_table": lambda: frame_has_nothing_of_a(
            analytics.campaign_table(s, profile_id=b)[0]),
        "core.analytics.campaigns_comparison": lambda: frame_has_nothing_of_a(
            analytics.campaigns_comparison(s, profile_id=b)),
        # A's campaign id under B: nothing counted (or refused); B's overall view: nothing of A's
        "core.analytics.channel_comparison": lambda: _empty_or_refused(
            lambda: analytics.channel_comparison(s, profile_id=b, campaign_id=cid)),
        "core.analytics.event_timeline": lambda: _empty_or_refused(
            lambda: analytics.event_timeline(s, profile_id=b, campaign_id=cid)[0]),
        "core.analytics.funnel": lambda: _empty_or_refused(
            lambda: analytics.funnel(s, profile_id=b, campaign_id=cid)),
        "core.analytics.status_breakdown": lambda: _empty_or_refused(
            lambda: analytics.status_breakdown(s, profile_id=b, campaign_id=cid)),
        "core.analytics.summary": lambda: _summary_of_nothing(s, w),
    }


def _empty_or_refused(call: Callable[[], pd.DataFrame]) -> None:
    try:
        frame = call()
    except (NotFound, Invalid):
        return
    empty_frame(frame)
    frame_has_nothing_of_a(frame)


def _summary_of_nothing(s: Session, w: World) -> None:
    try:
        stats = analytics.summary(s, profile_id=w.b.id, campaign_id=w.a_campaign.id)
    except (NotFound, Invalid):
        stats = None
    if stats is not None:
        assert stats.recipients == 0
    assert analytics.summary(s, profile_id=w.b.id).recipients == 0  # B has no campaign: A's are not counted


def _others(s: Session, w: World) -> dict[str, Callable[[], None]]:
    b, cid = w.b.id, w.a_campaign.id
    return {
        "core.attribution.attribute_leads": lambda: _assert(
            attribution.attribute_leads(s, profile_id=b, lead_ids=[w.a_lead.id], now=w.now) == 0),
        "core.customers.erase_customer": lambda: _erase_nothing_of_a(s, w),
        "core.customers.find_customer_key": lambda: refused(lambda: customers.find_customer_key(
            s, profile_id=b, contact=A_PHONE)),
        "core.customers.list_customers": lambda: frame_has_nothing_of_a(
            customers.list_customers(s, profile_id=b)[0]),
        "core.customers.service_types": lambda: _assert(
            set(customers.service_types(s, profile_id=b)) <= {None}),
        "core.dispatch.run_campaign_pass": lambda: refused(lambda: dispatch.run_campaign_pass(
            w.factory, profile_id=b, campaign_id=cid, now=w.now)),
        "core.exports.export_filename": lambda: refused(lambda: exports.export_filename(
            s, profile_id=b, campaign_id=cid)),
        # the export's filename refuses A's campaign first; the streams read B's rows only
        "core.exports.iter_recipient_csv": lambda: _assert(
            "Ann" not in "".join(exports.iter_recipient_csv(w.factory, profile_id=b, campaign_id=cid))),
        "core.exports.iter_recipient_rows": lambda: _assert(
            not list(exports.iter_recipient_rows(w.factory, profile_id=b, campaign_id=cid))),
        "core.leads.add_lead": lambda: _add_lead_refuses_a_objects(s, w),
        "core.leads.import_leads": lambda: refused(lambda: leads.import_leads(
            s, profile_id=b, source=_csv(), agent_id=w.a_agent.id)),
        "core.leads.customer_count": lambda: _assert(leads.customer_count(s, profile_id=b) == 1),
        "core.leads.lead_count": lambda: _assert(leads.lead_count(s, profile_id=b) == 1),
        "core.optouts.delete_opt_out": lambda: refused(lambda: optouts.delete_opt_out(
            s, profile_id=b, opt_out_id=w.a_opt_out.id)),
        "core.optouts.is_opted_out": lambda: _assert(not optouts.is_opted_out(
            s, profile_id=b, contact="+12125550122", channel="sms")),
        "core.optouts.list_opt_outs": lambda: _assert(
            w.a_opt_out.id not in {o.id for o in optouts.list_opt_outs(s, profile_id=b)[0]}),
        "core.optouts.opted_out_among": lambda: _assert(not optouts.opted_out_among(
            s, profile_id=b, contacts=["+12125550122"], channel="sms")),
        "core.optouts.record_opt_out": lambda: refused(lambda: optouts.record_opt_out(
            s, profile_id=b, contact="+12125550133", channel="sms", source="manual", campaign_id=cid)),
        "core.results.campaign_results": lambda: refused(lambda: results.campaign_results(
            s, profile_id=b, campaign_id=cid)),
        "core.targeting.parse_criteria": lambda: refused(lambda: targeting.parse_criteria(
            {"agent_id": str(w.a_agent.id)}, session=s, profile_id=b)),
        "core.targeting.preview_audience": lambda: _preview_has_nothing_of_a(s, w),
        "core.testsend.send_test": lambda: refused(lambda: testsend.send_test(
            s, profile_id=b, channel="email", to="owner@b-shop.example", template="Hi {first_name}",
            subject_template="Hi", agent_id=w.a_agent.id)),
    }


def _csv() -> Any:
    import io

    return io.StringIO("customer_name,customer_phone\nNew Person,+12125550177\n")


def _add_lead_refuses_a_objects(s: Session, w: World) -> None:
    for kwargs in ({"agent_id": w.a_agent.id}, {"campaign_id": w.a_campaign.id}):
        with pytest.raises((NotFound, Invalid)):
            leads.add_lead(s, profile_id=w.b.id, customer_phone="+12125550188", **kwargs)
        s.rollback()


def _erase_nothing_of_a(s: Session, w: World) -> None:
    with pytest.raises((NotFound, Invalid)):
        customers.erase_customer(s, profile_id=w.b.id, contact_key=A_PHONE, now=w.now)
    s.rollback()
    still = s.scalar(select(func.count()).select_from(Lead).where(
        Lead.profile_id == w.a.id, Lead.customer_phone == A_PHONE))
    assert still == 1


def _preview_has_nothing_of_a(s: Session, w: World) -> None:
    preview = targeting.preview_audience(s, profile_id=w.b.id, target_criteria={}, outreach_method="sms",
                                         now=w.now + timedelta(days=1))
    shown = repr(preview)
    assert "Ann" not in shown and A_PHONE not in shown


def _assert(condition: bool) -> None:
    assert condition


# --- reads of A's sending history: each probe writes it, checks that A sees it, then asks as B -----------

A_SECRET = "Ann's private reply"


def _a_try(s: Session, w: World, channel: str, *, html: str | None = None) -> OutreachAttempt:
    """An accepted try of A's recipient a day ago, answered / responded to an hour later."""
    at = w.now - timedelta(days=1)
    r = w.a_recipient
    r.sent_at, r.answered_at, r.responded_at = at, at + timedelta(hours=1), at + timedelta(hours=1)
    message = OutboundMessage(channel=channel, to=A_EMAIL if channel == "email" else A_PHONE,
                              idempotency_key=f"probe-{uuid.uuid4()}", profile_id=w.a.id, business_name="Shop A",
                              campaign_id=w.a_campaign.id, recipient_id=r.id, customer_name="Ann Able",
                              subject="Hi Ann" if channel == "email" else None, text="Hi Ann", html=html)
    attempt = OutreachAttempt(id=uuid.uuid4(), profile_id=w.a.id, campaign_id=w.a_campaign.id, recipient_id=r.id,
                              step=0, attempt_no=1, channel=channel, provider="sandbox",
                              idempotency_key=message.idempotency_key, outcome="accepted",
                              detail=attempt_detail(message), started_at=at)
    s.add(attempt)
    s.flush()
    return attempt


def _a_event(s: Session, w: World, type: str, channel: str, payload: dict[str, Any]) -> OutreachEvent:
    at = w.now - timedelta(hours=2)
    event = OutreachEvent(id=uuid.uuid4(), profile_id=w.a.id, campaign_id=w.a_campaign.id,
                          recipient_id=w.a_recipient.id, step=0, channel=channel, provider="sandbox",
                          provider_event_id=f"probe-{uuid.uuid4()}", type=type, payload=payload, occurred_at=at,
                          received_at=at)
    s.add(event)
    s.flush()
    return event


def _failure_reasons(s: Session, w: World) -> None:
    w.a_recipient.status, w.a_recipient.error_message = "failed", A_SECRET
    s.flush()
    assert A_SECRET in set(analytics.failure_reasons(s, profile_id=w.a.id).reason), "A does not see A's failure"
    for campaign_id in (w.a_campaign.id, None):
        frame = analytics.failure_reasons(s, profile_id=w.b.id, campaign_id=campaign_id)
        assert frame.empty and A_SECRET not in frame.to_string(), f"A's failure shows to B: {frame}"


def _besttime(s: Session, w: World, name: str) -> None:
    _a_try(s, w, "call")
    a, b, now = w.a.id, w.b.id, w.now
    assert len(besttime.observations(s, profile_id=a, channel="call", now=now)) == 1, "A's try is not observed"
    if name == "observations":
        assert besttime.observations(s, profile_id=b, channel="call", now=now) == []
        assert besttime.observations(s, profile_id=b, channel="call", now=now, contact_keys=[A_PHONE]) == []
    elif name == "load":
        model = besttime.load(s, profile_id=b, channel="call", now=now)
        assert sum(model.tries) == 0 and not model.own, "A's tries are in B's model"
    elif name == "load_all":
        models = besttime.load_all(s, profile_id=b, channels=["call", "sms"], now=now)
        assert set(models) == {"call", "sms"} and all(sum(m.tries) == 0 and not m.own for m in models.values())
    elif name == "business_model":
        assert sum(besttime.business_model(s, profile_id=a, channel="call", now=now).tries) == 1, \
            "A's model does not count A's try"
        assert sum(besttime.business_model(s, profile_id=b, channel="call", now=now).tries) == 0, \
            "A's try is in B's model"
    else:
        assert besttime.curves(s, profile_id=a, now=now).tries.sum() == 1, "A's curve does not count A's try"
        assert besttime.curves(s, profile_id=b, now=now).tries.sum() == 0, "A's try is in B's curve"


def _recipient_activity(s: Session, w: World) -> None:
    _a_event(s, w, "replied", "sms", {"text": A_SECRET})
    rid = w.a_recipient.id
    mine = customer_activity.recipient_activity(s, profile_id=w.a.id, recipient_ids=[rid], now=w.now)
    assert [x.text for x in mine.get(rid, [])] == [A_SECRET], "A does not see A's reply"
    assert customer_activity.recipient_activity(s, profile_id=w.b.id, recipient_ids=[rid], now=w.now) == {}


def _sent_html(s: Session, w: World) -> None:
    html = f"<p>{A_SECRET}</p>"
    _a_try(s, w, "email", html=html)
    rid = w.a_recipient.id
    assert list(customer_activity.sent_html(s, profile_id=w.a.id, recipient_ids=[rid]).values()) == [html], \
        "A does not see A's e-mail"
    assert customer_activity.sent_html(s, profile_id=w.b.id, recipient_ids=[rid]) == {}


def _average_call_minutes(s: Session, w: World) -> None:
    _a_event(s, w, "answered", "call", {"duration_seconds": 180})
    assert launch.average_call_minutes(s, profile_id=w.a.id) == 3.0, "A's call is not averaged for A"
    assert launch.average_call_minutes(s, profile_id=w.b.id) is None, "A's calls are averaged for B"


def _why_waiting(s: Session, w: World) -> None:
    cid = w.a_campaign.id
    assert waiting.why_waiting(s, profile_id=w.a.id, campaign_id=cid, now=w.now) is not None, "A's campaign not told"
    refused(lambda: waiting.why_waiting(s, profile_id=w.b.id, campaign_id=cid, now=w.now))


def _many_waiting(s: Session, w: World) -> None:
    cid = w.a_campaign.id
    assert cid in waiting.many(s, profile_id=w.a.id, campaigns=[w.a_campaign], now=w.now), "A's campaign not told"
    assert waiting.many(s, profile_id=w.b.id, campaigns=[w.a_campaign], now=w.now) == {}


def _already_texted(s: Session, w: World) -> None:
    _a_try(s, w, "sms")
    assert wave.already_texted(s, w.a.id, [A_PHONE]) == {A_PHONE}, "A's text is not found for A"
    assert wave.already_texted(s, w.b.id, [A_PHONE]) == set(), "A's text counts as B's"


def _more(s: Session, w: World) -> dict[str, Callable[[], None]]:
    return {
        "core.analytics.failure_reasons": lambda: _failure_reasons(s, w),
        **{f"core.besttime.{name}": (lambda name=name: _besttime(s, w, name))
           for name in ("observations", "load", "load_all", "business_model", "curves")},
        "core.customer_activity.recipient_activity": lambda: _recipient_activity(s, w),
        "core.customer_activity.sent_html": lambda: _sent_html(s, w),
        "core.launch.average_call_minutes": lambda: _average_call_minutes(s, w),
        "core.waiting.why_waiting": lambda: _why_waiting(s, w),
        "core.waiting.many": lambda: _many_waiting(s, w),
        "core.wave.already_texted": lambda: _already_texted(s, w),
    }


def probes(s: Session, w: World) -> dict[str, Callable[[], None]]:
    return {**_accounts(s, w), **_campaigns(s, w), **_analytics(s, w), **_others(s, w), **_more(s, w),
            **customer_probes(s, w), **compliance_probes(s, w), **endpoint_probes(s, w),
            "core.targeting.preview_audience#by_state": lambda: preview_by_state(s, w)}


def scoped_functions() -> set[str]:
    found: set[str] = set()
    for info in pkgutil.walk_packages(core.__path__, "core."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        for name, fn in inspect.getmembers(module, inspect.isfunction):
            if fn.__module__ == module.__name__ and not name.startswith("_") \
                    and "profile_id" in inspect.signature(fn).parameters:
                found.add(f"{info.name}.{name}")
    return found - NOT_SCOPES


def test_every_scoped_function_is_probed(session: Session, world: World) -> None:
    covered = {name.split("#")[0] for name in probes(session, world)}
    missing = scoped_functions() - covered
    assert not missing, f"scoped by profile_id but not probed for tenancy here: {sorted(missing)}"
    assert not covered - scoped_functions(), "probes of functions that no longer exist"


def test_business_b_never_reaches_business_a(session: Session, world: World) -> None:
    failures = []
    for name, probe in probes(session, world).items():
        try:
            probe()
        except (AssertionError, pytest.fail.Exception) as exc:
            failures.append(f"{name}: {exc}")
        except Exception as exc:
            failures.append(f"{name}: raised {type(exc).__name__}: {exc}")
        session.rollback()
    assert not failures, "\n".join(failures)
    # and nothing of A's changed on the way
    session.expire_all()
    assert session.get(type(world.a_campaign), world.a_campaign.id).name == "Test campaign"
    assert session.get(type(world.a_campaign), world.a_campaign.id).status == "draft"
    assert session.get(OptOut, world.a_opt_out.id) is not None
    assert session.scalar(select(func.count()).select_from(CampaignRecipient).where(
        CampaignRecipient.campaign_id == world.a_campaign.id)) == 1


def test_what_b_creates_lands_in_b(session: Session, world: World) -> None:
    agent = accounts.create_agent(session, profile_id=world.b.id, name="B's desk")
    _key, _secret = accounts.create_api_key(session, profile_id=world.b.id)
    assert agent.profile_id == world.b.id and _key.profile_id == world.b.id
    assert {a.id for a in accounts.list_agents(session, profile_id=world.a.id)} == {world.a_agent.id}
    accounts.update_profile(session, profile_id=world.b.id, business_name="Shop B renamed")
    assert accounts.get_profile(session, profile_id=world.a.id).business_name == "Shop A"

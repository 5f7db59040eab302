"""Campaign results, counted in SQL from what the recipients say.

Counting rules — the one place they are written; every number on every page
and in the API comes from :func:`count_columns`:

- ``total_recipients`` = recipients the campaign contacts: its holdout group
  (status ``holdout``: kept back, never contacted, the control group of a lift
  measurement) is not counted, it is ``holdout_count`` (DESIGN §11);
- ``sent_count`` = recipients with ``sent_at`` (a delivered or answered one was
  also sent), ``delivered_count`` = with ``delivered_at`` (ever delivered, even
  if a later event moved them on), ``responded_count`` = with
  ``responded_at``, ``converted_count`` = converted;
- ``answered_count``, ``failed_count`` and ``opted_out_count`` = recipients in
  that status now (a bounce fails the recipient with the reason; a complaint
  opts them out);
- ``customers`` = different customers among the contacted recipients (an
  always-on campaign may enrol a customer again; across campaigns one customer
  counts once);
- ``returned_count`` / ``holdout_returned_count`` = contacted / holdout
  recipients with ``returned_at`` (a new lead of theirs arrived within
  ``attribution_days`` of the start, :func:`core.attribution.mark_returned`).

Rates are over recipients sent: ``response_rate`` = responded / sent,
``conversion_rate`` = converted / sent.  :func:`campaign_results` adds ``lift``
(contacted against holdout return rates, :mod:`core.lift`) and cost:
``actual_cost`` = the sum of what each try cost (``outreach_attempts.cost``: SMS
segments of the final text, an e-mail, a call's minutes once it ended),
``estimated_cost`` = every step for every contacted recipient at the
profile's prices (:func:`core.launch.estimate_cost`, what the review step
showed before launch), ``cost_per_returned`` = actual cost / returned.  ``campaign_results`` is a stored copy
of the counters, refreshed by :func:`refresh_campaign_results`.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, and_, case, distinct, func, literal, select
from sqlalchemy.orm import Session

from core.campaigns import get_campaign
from core.db import dialect_insert, utcnow
from core.errors import DomainError
from core.lift import Lift, lift
from core.models import Agent, Campaign, CampaignRecipient, CampaignResult, OutreachAttempt, Profile

SAMPLE = 20  # recipients whose own details the estimate builds the texts for

# the seed's counters, also stored in campaign_results
COUNTERS = ("total_recipients", "sent_count", "delivered_count", "answered_count", "responded_count",
            "converted_count", "failed_count", "opted_out_count")
# what a campaign's results count (the API's fields)
COUNTED = (*COUNTERS, "holdout_count", "returned_count", "holdout_returned_count")
# everything count_columns can count ("customers" costs a DISTINCT: asked for where shown)
FIELDS = (*COUNTED, "customers")


@dataclass
class Counts:
    total_recipients: int = 0
    sent_count: int = 0
    delivered_count: int = 0
    answered_count: int = 0
    responded_count: int = 0
    converted_count: int = 0
    failed_count: int = 0
    opted_out_count: int = 0
    holdout_count: int = 0
    returned_count: int = 0
    holdout_returned_count: int = 0
    customers: int = 0

    @property
    def response_rate(self) -> float:
        return round(self.responded_count / self.sent_count, 4) if self.sent_count else 0.0

    @property
    def conversion_rate(self) -> float:
        return round(self.converted_count / self.sent_count, 4) if self.sent_count else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**{k: getattr(self, k) for k in COUNTED}, "response_rate": self.response_rate,
                "conversion_rate": self.conversion_rate}


@dataclass
class Results(Counts):
    by_variant: dict[str, dict[str, Any]] = field(default_factory=dict)
    by_channel: dict[str, dict[str, Any]] = field(default_factory=dict)
    lift: Lift | None = None
    actual_cost: float = 0.0
    estimated_cost: float | None = None

    @property
    def cost_per_returned(self) -> float | None:
        return round(self.actual_cost / self.returned_count, 4) if self.returned_count else None

    def as_dict(self) -> dict[str, Any]:
        base = {k: getattr(self, k) for k in COUNTED}
        return {**base, "response_rate": self.response_rate, "conversion_rate": self.conversion_rate,
                "lift": self.lift.as_dict() if self.lift else None, "actual_cost": self.actual_cost,
                "estimated_cost": self.estimated_cost, "cost_per_returned": self.cost_per_returned,
                "by_variant": self.by_variant, "by_channel": self.by_channel}


def count_columns(fields: Sequence[str] = FIELDS, *, labels: Sequence[str] | None = None) -> list[ColumnElement[Any]]:
    """The counters ``fields`` (names of :data:`FIELDS`) as aggregate columns over ``campaign_recipients``,
    labelled ``labels`` (default: the names); every count in the product uses these rules."""
    r = CampaignRecipient
    contacted = r.status != "holdout"

    def sum_if(cond: ColumnElement[bool]) -> ColumnElement[Any]:
        return func.coalesce(func.sum(case((cond, 1), else_=0)), 0)

    columns: dict[str, ColumnElement[Any]] = {
        "total_recipients": sum_if(contacted),
        "sent_count": func.count(r.sent_at),
        "delivered_count": func.count(r.delivered_at),
        "answered_count": sum_if(r.status == "answered"),
        "responded_count": func.count(r.responded_at),
        "converted_count": sum_if(r.converted.is_(True)),
        "failed_count": sum_if(r.status == "failed"),
        "opted_out_count": sum_if(r.status == "opted_out"),
        "holdout_count": sum_if(r.status == "holdout"),
        "returned_count": sum_if(and_(contacted, r.returned_at.is_not(None))),
        "holdout_returned_count": sum_if(and_(r.status == "holdout", r.returned_at.is_not(None))),
        "customers": func.count(distinct(case((contacted, r.contact_key)))),
    }
    return [columns[name].label(label) for name, label in zip(fields, labels or fields, strict=True)]


def _counts(row: Any) -> Counts:
    values = row._mapping
    return Counts(**{k: int(values.get(k) or 0) for k in FIELDS})


def actual_cost(session: Session, *, campaign_id: uuid.UUID) -> float:
    """What the campaign's tries cost so far (a call counts once its end is reported)."""
    total = session.scalar(select(func.coalesce(func.sum(OutreachAttempt.cost), 0.0))
                           .where(OutreachAttempt.campaign_id == campaign_id))
    return round(float(total or 0.0), 4)


def estimated_cost(session: Session, *, campaign: Campaign, contacted: int) -> float | None:
    """Every step for each of ``contacted`` recipients at the profile's prices (the review step's estimate,
    from the campaign's own recipients' details); ``None`` when its content cannot be built."""
    from core.config import get_settings
    from core.launch import average_call_minutes, estimate_cost
    from core.outbound import Sample

    r = CampaignRecipient
    profile = session.get(Profile, campaign.profile_id)
    if profile is None:
        return None
    people = session.execute(select(r.customer_name, r.customer_phone, r.customer_email)
                             .where(r.campaign_id == campaign.id, r.status != "holdout")
                             .order_by(r.id).limit(SAMPLE)).all()
    samples = [Sample(customer_name=n, customer_phone=p, customer_email=e) for n, p, e in people]
    agent = session.get(Agent, campaign.agent_id) if campaign.agent_id else None
    try:
        estimate = estimate_cost(campaign=campaign, profile=profile, agent=agent, settings=get_settings(),
                                 audience=contacted, contacted=contacted, samples=samples,
                                 call_minutes=average_call_minutes(session, profile_id=campaign.profile_id))
    except DomainError:
        return None
    return estimate.total


def count_recipients(session: Session, *, campaign_id: uuid.UUID) -> Counts:
    """The campaign's counters as its recipients say right now."""
    row = session.execute(select(*count_columns(COUNTED)).where(CampaignRecipient.campaign_id == campaign_id)).one()
    return _counts(row)


def campaign_results(session: Session, *, profile_id: uuid.UUID, campaign_id: uuid.UUID) -> Results:
    """Counters, rates and per-variant / per-channel breakdowns of one campaign.

    A recipient's channel is the channel of the last step that reached them (or,
    before any, the campaign's first channel); the holdout group belongs to no
    variant and no channel.
    """
    campaign = get_campaign(session, profile_id=profile_id, campaign_id=campaign_id)
    r = CampaignRecipient
    totals = count_recipients(session, campaign_id=campaign.id)
    results = Results(**asdict(totals))
    results.lift = lift(contacted=totals.total_recipients, contacted_returned=totals.returned_count,
                        holdout=totals.holdout_count, holdout_returned=totals.holdout_returned_count)
    results.actual_cost = actual_cost(session, campaign_id=campaign.id)
    results.estimated_cost = estimated_cost(session, campaign=campaign, contacted=totals.total_recipients)

    if campaign.variants:
        for row in session.execute(select(r.variant, *count_columns(COUNTED))
                                   .where(r.campaign_id == campaign.id, r.status != "holdout")
                                   .group_by(r.variant)):
            results.by_variant[row.variant or "none"] = _counts(row).as_dict()
        for v in campaign.variants:
            results.by_variant.setdefault(v["name"], Counts().as_dict())

    first_channel = campaign.steps[0]["channel"] if campaign.steps else campaign.outreach_method
    channel = func.coalesce(r.last_channel, literal(first_channel)).label("channel")
    for row in session.execute(select(channel, *count_columns(COUNTED))
                               .where(r.campaign_id == campaign.id, r.status != "holdout").group_by(channel)):
        results.by_channel[row.channel] = _counts(row).as_dict()
    return results


def refresh_campaign_results(session: Session, *, campaign_id: uuid.UUID) -> Counts:
    """Make the stored ``campaign_results`` row equal to the recipients' counts."""
    counts = count_recipients(session, campaign_id=campaign_id)
    now = utcnow()
    values = {key: getattr(counts, key) for key in COUNTERS}
    stmt = dialect_insert(session, CampaignResult).values(
        id=uuid.uuid4(), campaign_id=campaign_id, created_at=now, updated_at=now, **values)
    session.execute(stmt.on_conflict_do_update(index_elements=["campaign_id"], set_={**values, "updated_at": now}))
    return counts

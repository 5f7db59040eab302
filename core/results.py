"""Campaign results, counted in SQL from what the recipients say.

Counting rules: ``sent_count`` = recipients with ``sent_at`` (a delivered or
answered one was also sent), ``delivered_count`` = with ``delivered_at``,
``responded_count`` = with ``responded_at``, ``converted_count`` = converted;
``answered_count``, ``failed_count`` and ``opted_out_count`` = recipients in that
status.  Rates are over recipients sent.  ``campaign_results`` is a stored copy
of the counters, refreshed by :func:`refresh_campaign_results`.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, case, func, literal, select
from sqlalchemy.orm import Session

from core.campaigns import get_campaign
from core.db import dialect_insert, utcnow
from core.models import CampaignRecipient, CampaignResult

COUNTERS = ("total_recipients", "sent_count", "delivered_count", "answered_count", "responded_count",
            "converted_count", "failed_count", "opted_out_count")


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

    @property
    def response_rate(self) -> float:
        return round(self.responded_count / self.sent_count, 4) if self.sent_count else 0.0

    @property
    def conversion_rate(self) -> float:
        return round(self.converted_count / self.sent_count, 4) if self.sent_count else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "response_rate": self.response_rate, "conversion_rate": self.conversion_rate}


@dataclass
class Results(Counts):
    by_variant: dict[str, dict[str, Any]] = field(default_factory=dict)
    by_channel: dict[str, dict[str, Any]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        base = {k: getattr(self, k) for k in COUNTERS}
        return {**base, "response_rate": self.response_rate, "conversion_rate": self.conversion_rate,
                "by_variant": self.by_variant, "by_channel": self.by_channel}


def count_columns(labels: Sequence[str] = COUNTERS) -> list[ColumnElement[Any]]:
    """The counters as aggregate columns over ``campaign_recipients``, labelled ``labels``
    (in the order of :data:`COUNTERS`); every count in the product uses these rules."""
    r = CampaignRecipient

    def status_is(status: str) -> ColumnElement[Any]:
        return func.coalesce(func.sum(case((r.status == status, 1), else_=0)), 0)

    columns = [
        func.count(),
        func.count(r.sent_at),
        func.count(r.delivered_at),
        status_is("answered"),
        func.count(r.responded_at),
        func.coalesce(func.sum(case((r.converted.is_(True), 1), else_=0)), 0),
        status_is("failed"),
        status_is("opted_out"),
    ]
    return [column.label(label) for column, label in zip(columns, labels, strict=True)]


def _counts(row: Any) -> Counts:
    return Counts(**{k: int(getattr(row, k) or 0) for k in COUNTERS})


def count_recipients(session: Session, *, campaign_id: uuid.UUID) -> Counts:
    """The campaign's counters as its recipients say right now."""
    row = session.execute(select(*count_columns()).where(CampaignRecipient.campaign_id == campaign_id)).one()
    return _counts(row)


def campaign_results(session: Session, *, profile_id: uuid.UUID, campaign_id: uuid.UUID) -> Results:
    """Counters, rates and per-variant / per-channel breakdowns of one campaign.

    A recipient's channel is the channel of the last step that reached them (or,
    before any, the campaign's first channel).
    """
    campaign = get_campaign(session, profile_id=profile_id, campaign_id=campaign_id)
    r = CampaignRecipient
    totals = count_recipients(session, campaign_id=campaign.id)
    results = Results(**asdict(totals))

    if campaign.variants:
        for row in session.execute(select(r.variant, *count_columns())
                                   .where(r.campaign_id == campaign.id).group_by(r.variant)):
            results.by_variant[row.variant or "none"] = _counts(row).as_dict()
        for v in campaign.variants:
            results.by_variant.setdefault(v["name"], Counts().as_dict())

    first_channel = campaign.steps[0]["channel"] if campaign.steps else campaign.outreach_method
    channel = func.coalesce(r.last_channel, literal(first_channel)).label("channel")
    for row in session.execute(select(channel, *count_columns()).where(r.campaign_id == campaign.id)
                               .group_by(channel)):
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

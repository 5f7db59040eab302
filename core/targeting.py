"""Choosing recipients: ``target_criteria`` matched against customers, in SQL.

A customer is the set of a profile's leads sharing a ``contact_key`` (the
normalized phone, else the e-mail).  Criteria about "last contact", status and
agent look at the customer's most recent lead; ``service_type`` at any of their
leads; custom ``filters`` at the most recent lead.  Selection is a single
``INSERT … SELECT`` (the leads never travel to Python), is idempotent (a
customer is in a campaign once), drops customers the campaign's channel cannot
reach, and reports opted-out customers as ``suppressed``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    case,
    exists,
    false,
    func,
    insert,
    literal,
    not_,
    or_,
    select,
    true,
)
from sqlalchemy.orm import Session

from core.db import new_uuid, utcnow
from core.errors import Invalid, pydantic_errors
from core.models import LEAD_STATUSES, Agent, Campaign, CampaignRecipient, Lead, OptOut
from core.variants import variant_sql

# --- criteria -----------------------------------------------------------------------

FILTER_FIELDS: dict[str, str] = {
    "customer_name": "text", "customer_phone": "text", "customer_email": "text", "status": "text",
    "service_type": "text", "notes": "text", "source": "text", "sentiment": "text",
    "agent_id": "uuid", "created_at": "time", "duration": "number",
}
TEXT_OPS = ("eq", "ne", "in", "not_in", "contains", "not_contains", "starts_with", "is_null", "not_null")
ORDER_OPS = ("eq", "ne", "gt", "gte", "lt", "lte", "is_null", "not_null")
OPS_BY_KIND = {"text": TEXT_OPS, "uuid": ("eq", "ne", "in", "not_in", "is_null", "not_null"),
               "time": ORDER_OPS, "number": ORDER_OPS}
ALL_OPS = sorted({op for ops in OPS_BY_KIND.values() for op in ops})


class CriteriaFilter(BaseModel):
    """One custom condition on the customer's most recent lead."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"field": "service_type", "op": "in", "value": ["Color", "Highlights"]}]})

    field: str = Field(description="A lead column: " + ", ".join(FILTER_FIELDS))
    op: str = Field(description="One of: " + ", ".join(ALL_OPS))
    value: Any = Field(None, description="Compared value; a list for in/not_in; omitted for is_null/not_null.")

    @model_validator(mode="after")
    def _check(self) -> CriteriaFilter:
        kind = FILTER_FIELDS.get(self.field)
        if kind is None:
            raise ValueError(f"unknown filter field '{self.field}'; allowed: {', '.join(FILTER_FIELDS)}")
        if self.op not in OPS_BY_KIND[kind]:
            raise ValueError(f"operator '{self.op}' does not apply to '{self.field}'; "
                             f"allowed: {', '.join(OPS_BY_KIND[kind])}")
        if self.op in ("is_null", "not_null"):
            self.value = None
            return self
        values = self.value if self.op in ("in", "not_in") else [self.value]
        if self.op in ("in", "not_in") and (not isinstance(self.value, list) or not self.value):
            raise ValueError(f"'{self.op}' needs a non-empty list of values")
        converted = [_convert(kind, v, self.field) for v in values]
        self.value = converted if self.op in ("in", "not_in") else converted[0]
        return self


def _convert(kind: str, value: Any, name: str) -> Any:
    if value is None or isinstance(value, (dict, list)):
        raise ValueError(f"'{name}' needs a single {kind} value")
    if kind == "text":
        return str(value)
    if kind == "number":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"'{name}' is compared with a number")
        if isinstance(value, int) and not -(2**63) <= value < 2**63:
            # a database integer is 64 bits: a larger literal cannot even be sent
            raise ValueError(f"{value} is too large a number for '{name}'")
        return value
    if kind == "uuid":
        try:
            return uuid.UUID(str(value))
        except ValueError:
            raise ValueError(f"'{value}' is not an id") from None
    try:
        return _as_utc(str(value))
    except (ValueError, OverflowError):  # OverflowError: a date that leaves year 1–9999 once in UTC
        raise ValueError(f"'{value}' is not an ISO date or date-time") from None


def _as_utc(text: str) -> datetime:
    parsed = datetime.fromisoformat(text)
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


class TargetCriteria(BaseModel):
    """Who a campaign reaches (every key optional; none means every customer)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"last_contact_days": 180, "status": "Closed", "min_leads": 1}]})

    last_contact_days: int | None = Field(
        None, ge=0, le=36500, description="The customer's most recent lead is older than this many days.")
    last_contact_after: date | None = Field(None, description="Most recent lead on or after this date.")
    last_contact_before: date | None = Field(None, description="Most recent lead before this date.")
    status: str | list[str] | None = Field(
        None, description="Status of the customer's most recent lead: " + ", ".join(LEAD_STATUSES))
    agent_id: uuid.UUID | None = Field(None, description="Agent of the customer's most recent lead.")
    min_leads: int | None = Field(None, ge=1, le=100000, description="The customer has at least this many leads.")
    service_type: str | list[str] | None = Field(None, description="Any of the customer's leads has this service.")
    exclude_contacted_within_days: int | None = Field(
        None, ge=1, le=3650, description="Skip customers any campaign contacted in the last N days.")
    filters: list[CriteriaFilter] = Field(default_factory=list, max_length=20,
                                          description="Custom conditions on the most recent lead.")

    @field_validator("status")
    @classmethod
    def _statuses(cls, value: str | list[str] | None) -> list[str] | None:
        if value is None:
            return None
        values = [value] if isinstance(value, str) else value
        if not values:
            raise ValueError("give at least one status")
        out = []
        for v in values:
            match = next((s for s in LEAD_STATUSES if s.lower() == v.strip().lower()), None)
            if match is None:
                raise ValueError(f"unknown lead status '{v}'; allowed: {', '.join(LEAD_STATUSES)}")
            out.append(match)
        return out

    @field_validator("service_type")
    @classmethod
    def _services(cls, value: str | list[str] | None) -> list[str] | None:
        if value is None:
            return None
        values = [value] if isinstance(value, str) else value
        values = [v.strip() for v in values if v.strip()]
        if not values:
            raise ValueError("give at least one service type")
        return values

    @model_validator(mode="after")
    def _range(self) -> TargetCriteria:
        if self.last_contact_after and self.last_contact_before and self.last_contact_after >= self.last_contact_before:
            raise ValueError("last_contact_after must be earlier than last_contact_before")
        return self

    def as_json(self) -> dict[str, Any]:
        """The criteria as stored on a campaign (only the keys that were given)."""
        return self.model_dump(mode="json", exclude_none=True, exclude_defaults=True)


def parse_criteria(raw: dict[str, Any] | TargetCriteria | None, *, session: Session | None = None,
                   profile_id: uuid.UUID | None = None, field: str = "target_criteria") -> TargetCriteria:
    """Validate criteria; with a session, also check the agent belongs to the profile."""
    if isinstance(raw, TargetCriteria):
        criteria = raw
    else:
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise Invalid("must be an object of criteria", field=field)
        try:
            criteria = TargetCriteria.model_validate(raw)
        except ValidationError as exc:
            raise Invalid(pydantic_errors(exc, field)) from None
    if session is not None and profile_id is not None:
        agent_ids = [criteria.agent_id] if criteria.agent_id else []
        agent_ids += [f.value for f in criteria.filters if f.field == "agent_id" and isinstance(f.value, uuid.UUID)]
        agent_ids += [v for f in criteria.filters if f.field == "agent_id" and isinstance(f.value, list)
                      for v in f.value]
        for agent_id in agent_ids:
            if session.scalar(select(Agent.id).where(Agent.id == agent_id, Agent.profile_id == profile_id)) is None:
                raise Invalid(f"no agent {agent_id} in this business", field=f"{field}.agent_id")
    return criteria


# --- the matching query ---------------------------------------------------------------


def channels_of(outreach_method: str, steps: list[dict[str, Any]] | None = None) -> list[str]:
    """The channels a campaign uses."""
    if outreach_method == "multi":
        return sorted({s["channel"] for s in steps or []})
    return [outreach_method]


@dataclass
class _Matched:
    query: Select[Any]
    channels: list[str] = field(default_factory=list)


def _filter_clause(col: ColumnElement[Any], f: CriteriaFilter) -> ColumnElement[bool]:
    v = f.value
    if f.op == "is_null":
        return col.is_(None)
    if f.op == "not_null":
        return col.is_not(None)
    if f.op == "eq":
        return col == v
    if f.op == "ne":
        return or_(col != v, col.is_(None))
    if f.op == "in":
        return col.in_(v)
    if f.op == "not_in":
        return or_(col.not_in(v), col.is_(None))
    if f.op in ("contains", "not_contains", "starts_with"):
        escaped = str(v).lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        pattern = f"{escaped}%" if f.op == "starts_with" else f"%{escaped}%"
        like = func.lower(col).like(pattern, escape="\\")
        return or_(not_(like), col.is_(None)) if f.op == "not_contains" else like
    return {"gt": col > v, "gte": col >= v, "lt": col < v, "lte": col <= v}[f.op]


def _matched_customers(
    *, profile_id: uuid.UUID, criteria: TargetCriteria, outreach_method: str,
    steps: list[dict[str, Any]] | None, now: datetime, campaign_id: uuid.UUID | None,
) -> _Matched:
    """Customers matching ``criteria``, one row each, with their contacts and
    whether an opt-out suppresses them.  Not yet excluding opted-out ones."""
    lead = Lead
    partition = lead.contact_key
    newest_first = (lead.created_at.desc(), lead.id.desc())
    cols: list[Any] = [
        lead.id, lead.contact_key, lead.customer_name, lead.customer_phone, lead.customer_email, lead.status,
        lead.agent_id, lead.service_type, lead.created_at, lead.notes, lead.source, lead.sentiment, lead.duration,
        func.row_number().over(partition_by=partition, order_by=newest_first).label("rn"),
        func.count().over(partition_by=partition).label("n_leads"),
    ]
    if criteria.service_type:
        cols.append(func.max(case((lead.service_type.in_(criteria.service_type), 1), else_=0))
                    .over(partition_by=partition).label("has_service"))
    c = select(*cols).where(lead.profile_id == profile_id, lead.contact_key.is_not(None)).subquery("c")

    conds: list[ColumnElement[bool]] = [c.c.rn == 1]
    if criteria.last_contact_days is not None:
        conds.append(c.c.created_at < now - timedelta(days=criteria.last_contact_days))
    if criteria.last_contact_after is not None:
        conds.append(c.c.created_at >= datetime.combine(criteria.last_contact_after, time(), UTC))
    if criteria.last_contact_before is not None:
        conds.append(c.c.created_at < datetime.combine(criteria.last_contact_before, time(), UTC))
    if criteria.status:
        conds.append(c.c.status.in_(criteria.status))
    if criteria.agent_id:
        conds.append(c.c.agent_id == criteria.agent_id)
    if criteria.min_leads:
        conds.append(c.c.n_leads >= criteria.min_leads)
    if criteria.service_type:
        conds.append(c.c.has_service == 1)
    for f in criteria.filters:
        conds.append(_filter_clause(c.c[f.field], f))
    if criteria.exclude_contacted_within_days:
        r = CampaignRecipient
        conds.append(~exists().where(
            r.profile_id == profile_id, r.contact_key == c.c.contact_key,
            r.sent_at >= now - timedelta(days=criteria.exclude_contacted_within_days)))
    if campaign_id is not None:
        r = CampaignRecipient
        conds.append(~exists().where(r.campaign_id == campaign_id, r.contact_key == c.c.contact_key))

    def newest_known(column: Any) -> Any:
        # the newest lead may lack what an older one of the same customer has
        older = (select(column).where(lead.profile_id == profile_id, lead.contact_key == c.c.contact_key,
                                      column.is_not(None))
                 .order_by(lead.created_at.desc()).limit(1).scalar_subquery())
        return func.coalesce(c.c[column.key], older)

    phone = c.c.customer_phone
    email = newest_known(lead.customer_email)
    name = newest_known(lead.customer_name)
    channels = channels_of(outreach_method, steps)

    def opted_out(contact: Any, channel: str) -> ColumnElement[bool]:
        o = OptOut
        return exists().where(o.profile_id == profile_id, o.contact == contact, o.channel.in_((channel, "all")))

    contact_for = {"call": phone, "sms": phone, "email": email}
    has_contact = or_(*[contact_for[ch].is_not(None) for ch in channels]) if channels else false()
    reachable = or_(*[and_(contact_for[ch].is_not(None), ~opted_out(contact_for[ch], ch)) for ch in channels]) \
        if channels else false()

    query = select(
        c.c.id.label("lead_id"), c.c.contact_key, name.label("customer_name"), phone.label("customer_phone"),
        email.label("customer_email"), c.c.status, c.c.service_type, c.c.agent_id,
        c.c.created_at.label("last_contact_at"), c.c.n_leads.label("lead_count"),
        case((reachable, false()), else_=true()).label("suppressed"),
    ).where(*conds, has_contact)
    return _Matched(query=query, channels=channels)


# --- public operations ---------------------------------------------------------------


@dataclass(frozen=True)
class SelectionResult:
    selected: int
    suppressed: int
    total_recipients: int


@dataclass(frozen=True)
class Preview:
    count: int
    suppressed: int
    sample: list[dict[str, Any]]


def first_step_due(campaign: Campaign, now: datetime) -> datetime:
    """When a newly added recipient's first step falls due."""
    if campaign.outreach_method == "multi" and campaign.steps:
        return now + timedelta(hours=float(campaign.steps[0].get("delay_hours", 0)))
    return now


def select_recipients(session: Session, *, campaign: Campaign, now: datetime | None = None) -> SelectionResult:
    """Add every customer matching the campaign's criteria (one INSERT … SELECT).

    Idempotent: customers already in the campaign are skipped.  ``suppressed``
    counts matching customers left out because of an opt-out.
    """
    now = now or utcnow()
    criteria = parse_criteria(campaign.target_criteria)
    matched_sel = _matched_customers(
        profile_id=campaign.profile_id, criteria=criteria, outreach_method=campaign.outreach_method,
        steps=campaign.steps, now=now, campaign_id=campaign.id,
    ).query
    r = CampaignRecipient.__table__
    target_cols = [r.c.id, r.c.campaign_id, r.c.profile_id, r.c.lead_id, r.c.contact_key, r.c.customer_name,
                   r.c.customer_phone, r.c.customer_email, r.c.variant, r.c.status, r.c.step, r.c.attempts,
                   r.c.next_attempt_at, r.c.converted, r.c.response_data, r.c.created_at, r.c.updated_at]

    def insert_from(m: Any) -> Any:
        rows = select(
            new_uuid(), literal(campaign.id), literal(campaign.profile_id), m.c.lead_id, m.c.contact_key,
            m.c.customer_name, m.c.customer_phone, m.c.customer_email,
            variant_sql(campaign.variants, campaign.id, m.c.contact_key),
            literal("pending"), literal(0), literal(0),
            literal(first_step_due(campaign, now), r.c.next_attempt_at.type),
            literal(False), literal({}, r.c.response_data.type),
            literal(now, r.c.created_at.type), literal(now, r.c.updated_at.type),
        ).where(m.c.suppressed == false())
        return insert(r).from_select(target_cols, rows)

    def count_suppressed(m: Any) -> Any:
        return select(func.count()).select_from(m).where(m.c.suppressed == true())

    if session.get_bind().dialect.name == "postgresql":
        # one pass over the leads: match once, then insert and count from that result
        m = matched_sel.cte("matched").prefix_with("MATERIALIZED")
        ins = insert_from(m).returning(r.c.id).cte("ins")
        selected, suppressed = session.execute(select(
            select(func.count()).select_from(ins).scalar_subquery(),
            count_suppressed(m).scalar_subquery(),
        )).one()
    else:
        m = matched_sel.subquery("m")
        suppressed = session.scalar(count_suppressed(m)) or 0
        selected = session.execute(insert_from(m).execution_options(preserve_rowcount=True)).rowcount
    total = session.scalar(select(func.count()).select_from(r).where(r.c.campaign_id == campaign.id)) or 0
    return SelectionResult(selected=int(selected), suppressed=int(suppressed), total_recipients=int(total))


def preview_audience(
    session: Session, *, profile_id: uuid.UUID, target_criteria: dict[str, Any] | TargetCriteria | None,
    outreach_method: Literal["call", "email", "sms", "multi"], steps: list[dict[str, Any]] | None = None,
    sample_size: int = 10, now: datetime | None = None,
) -> Preview:
    """How many customers a campaign with these criteria would reach (and a sample), without writing."""
    criteria = parse_criteria(target_criteria, session=session, profile_id=profile_id)
    matched = _matched_customers(profile_id=profile_id, criteria=criteria, outreach_method=outreach_method,
                                 steps=steps, now=now or utcnow(), campaign_id=None).query.subquery("m")
    counts = session.execute(select(
        func.count().filter(matched.c.suppressed == false()),
        func.count().filter(matched.c.suppressed == true()),
    ).select_from(matched)).one()
    sample_rows = session.execute(
        select(matched).where(matched.c.suppressed == false())
        .order_by(matched.c.last_contact_at.desc(), matched.c.contact_key).limit(max(0, min(sample_size, 100)))
    ).mappings().all()
    sample = [
        {k: row[k] for k in ("lead_id", "customer_name", "customer_phone", "customer_email", "status",
                             "service_type", "last_contact_at", "lead_count")}
        for row in sample_rows
    ]
    return Preview(count=int(counts[0]), suppressed=int(counts[1]), sample=sample)

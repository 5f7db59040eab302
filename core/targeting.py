"""Choosing recipients: ``target_criteria`` matched against customers, in SQL.

A customer is one row of ``customers`` (the leads sharing a contact key, kept
aggregated by :mod:`core.customers_sync`).  Criteria about "last contact",
status, agent and lead count read the customer's own columns; ``service_type``
matches any of their leads' services; custom ``filters`` on customer fields
(name, phone, e-mail, status, service, agent, ``created_at`` = last contact)
read the customer, and filters on what only a lead has (notes, source,
sentiment, duration) read the customer's most recent lead.  Statuses are the
business's own words: criteria match them case-insensitively, trimmed.

Selection is a single ``INSERT … SELECT`` (the customers never travel to
Python).  A customer is selected when at least one of the campaign's channels
is usable: a contact for it, no opt-out on it, and for calls and texts not on
the business's do-not-call list and — under the ``us_tcpa`` consent policy —
holding the consent the campaign needs (:data:`core.consents.CONSENT_RULES`, §10:
``express_written`` for marketing — win-back, promotional, follow-up —,
``express`` or better for feedback; e-mail needs none).  Everyone else matching is left out with one
reason (``suppressed_by``): ``opted_out``, else ``dnc``, else ``no_consent``
(the first that applies among the channels they have a contact for), else
``no_contact``.

At selection also: a ``holdout_percent`` share of the selectable customers,
chosen by campaign and contact key (the same customer always lands on the same
side), is stored with status ``holdout`` and never contacted; in
``test_then_winner`` campaigns a ``test_percent`` share is the test group (a
variant by weight) and the rest wait for the winner.  A customer is in a
campaign once — except in an always-on campaign, which enrols a customer
again once their last enrolment ended more than ``reenroll_after_days`` ago.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator
from pydantic_core import to_jsonable_python
from sqlalchemy import (
    ColumnElement,
    Select,
    String,
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
    union_all,
)
from sqlalchemy.orm import Session

from core import compliance
from core.consents import required_level, satisfies
from core.db import new_uuid, stable_bucket, utcnow
from core.errors import Invalid, pydantic_errors
from core.models import (
    CONSENT_LEVELS,
    LEAD_STATUS_MAX,
    Agent,
    Campaign,
    CampaignRecipient,
    Consent,
    Customer,
    DncNumber,
    Lead,
    OptOut,
    Profile,
)
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
# why a matching customer was left out, in the order the reasons are given
REASONS = ("opted_out", "dnc", "no_consent", "no_contact")


class CriteriaFilter(BaseModel):
    """One custom condition on the customer (or, for notes, source, sentiment and duration, on their most
    recent lead)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"field": "service_type", "op": "in", "value": ["Color", "Highlights"]}]})

    field: str = Field(description="One of: " + ", ".join(FILTER_FIELDS))
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


def _labels(value: str | list[str] | None, what: str, *, limit: int | None = None) -> list[str] | None:
    if value is None:
        return None
    values = [value] if isinstance(value, str) else value
    out = [v.strip() for v in values if v.strip()]
    if not out:
        raise ValueError(f"give at least one {what}")
    if limit is not None:
        for v in out:
            if len(v) > limit:
                raise ValueError(f"'{v[:20]}…' is longer than a {what} can be ({limit} characters)")
    return out


class TargetCriteria(BaseModel):
    """Who a campaign reaches (every key optional; none means every customer)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"last_contact_days": 180, "status": "Closed", "min_leads": 1}]})

    last_contact_days: int | None = Field(
        None, ge=0, le=36500, description="The customer's most recent lead is older than this many days.")
    last_contact_after: date | None = Field(None, description="Most recent lead on or after this date.")
    last_contact_before: date | None = Field(None, description="Most recent lead before this date.")
    status: str | list[str] | None = Field(
        None, description="Status of the customer's most recent lead: the business's own words (e.g. Closed, "
                          "Booked, Lost), matched ignoring case and surrounding spaces; see GET /api/lead-statuses.")
    agent_id: uuid.UUID | None = Field(None, description="Agent of the customer's most recent lead.")
    min_leads: int | None = Field(None, ge=1, le=100000, description="The customer has at least this many leads.")
    service_type: str | list[str] | None = Field(None, description="Any of the customer's leads has this service.")
    exclude_contacted_within_days: int | None = Field(
        None, ge=1, le=3650, description="Skip customers any campaign contacted in the last N days.")
    score_min: int | None = Field(None, ge=0, le=100, description="Re-engagement score at least this (0–100).")
    score_max: int | None = Field(None, ge=0, le=100, description="Re-engagement score at most this (0–100).")
    filters: list[CriteriaFilter] = Field(default_factory=list, max_length=20,
                                          description="Custom conditions on the customer or their most recent "
                                                      "lead.")
    _given: dict[str, Any] | None = PrivateAttr(default=None)

    @field_validator("status")
    @classmethod
    def _statuses(cls, value: str | list[str] | None) -> list[str] | None:
        return _labels(value, "status", limit=LEAD_STATUS_MAX)

    @field_validator("service_type")
    @classmethod
    def _services(cls, value: str | list[str] | None) -> list[str] | None:
        return _labels(value, "service type")

    @model_validator(mode="after")
    def _range(self) -> TargetCriteria:
        if self.last_contact_after and self.last_contact_before and self.last_contact_after >= self.last_contact_before:
            raise ValueError("last_contact_after must be earlier than last_contact_before")
        if self.score_min is not None and self.score_max is not None and self.score_min > self.score_max:
            raise ValueError("score_min must not be more than score_max")
        return self

    def as_json(self) -> dict[str, Any]:
        """The criteria as stored on a campaign: exactly as given (a string stays a string)."""
        if self._given is not None:
            return self._given
        return self.model_dump(mode="json", exclude_none=True, exclude_defaults=True)


def parse_criteria(raw: dict[str, Any] | TargetCriteria | None, *, session: Session | None = None,
                   profile_id: uuid.UUID | None = None, field: str = "target_criteria") -> TargetCriteria:
    """Validate criteria (without rewriting them); with a session, also check the agent belongs to the profile."""
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
        criteria._given = to_jsonable_python(raw)
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


@dataclass(frozen=True)
class Rules:
    """What makes a channel usable for a campaign: its channels, and for those that need consent under the
    business's policy (:data:`core.consents.CONSENT_RULES`), the consent levels that satisfy it."""

    channels: tuple[str, ...]
    consent: Mapping[str, tuple[str, ...]]


def rules_for(session: Session, *, profile_id: uuid.UUID, channels: list[str], campaign_type: str) -> Rules:
    policy = session.scalar(select(Profile.consent_policy).where(Profile.id == profile_id)) or "us_tcpa"
    consent: dict[str, tuple[str, ...]] = {}
    for ch in channels:
        needed = required_level(policy, campaign_type, ch)
        if needed is not None:
            consent[ch] = tuple(level for level in CONSENT_LEVELS if satisfies(level, needed))
    return Rules(tuple(channels), consent)


def _text_key(col: Any) -> Any:
    return func.lower(func.trim(col))


def _filter_clause(col: ColumnElement[Any], f: CriteriaFilter, *, fold: bool = False) -> ColumnElement[bool]:
    """``f`` over ``col``; with ``fold`` (statuses) equality ignores case and surrounding spaces."""
    v = f.value
    if f.op == "is_null":
        return col.is_(None)
    if f.op == "not_null":
        return col.is_not(None)
    if fold and f.op in ("eq", "ne", "in", "not_in"):
        col = _text_key(col)
        v = [str(x).strip().lower() for x in v] if isinstance(v, list) else str(v).strip().lower()
    if f.op == "eq":
        return col == v
    if f.op == "ne":
        return or_(col != v, col.is_(None))
    if f.op == "in":
        return col.in_(v)
    if f.op == "not_in":
        return or_(col.not_in(v), col.is_(None))
    if f.op in ("contains", "not_contains", "starts_with"):
        text = str(v).strip() if fold else str(v)
        escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        pattern = f"{escaped}%" if f.op == "starts_with" else f"%{escaped}%"
        like = (_text_key(col) if fold else func.lower(col)).like(pattern, escape="\\")
        return or_(not_(like), col.is_(None)) if f.op == "not_contains" else like
    return {"gt": col > v, "gte": col >= v, "lt": col < v, "lte": col <= v}[f.op]


def _status_in(column: Any, statuses: list[str]) -> ColumnElement[bool]:
    """``column`` is one of ``statuses``, ignoring case and surrounding spaces.

    The usual spellings are matched on the column itself first: the same answer (each implies the
    folded match), but one the planner can estimate from the column's statistics — on the folded
    expression alone it guesses a handful of rows and picks plans made for a handful."""
    keys = sorted({s.strip().lower() for s in statuses})
    spellings = sorted({v for s in statuses for v in (s.strip(), s.strip().lower(), s.strip().upper(),
                                                      s.strip().capitalize(), s.strip().title())})
    return or_(column.in_(spellings), _text_key(column).in_(keys))


def _customer_column(name: str) -> Any:
    c = Customer
    return {"customer_name": c.customer_name, "customer_phone": c.customer_phone,
            "customer_email": c.customer_email, "status": c.last_status, "service_type": c.last_service_type,
            "agent_id": c.last_agent_id, "created_at": c.last_contact_at}.get(name)


def _has_service(profile_id: uuid.UUID, services: list[str], dialect: str) -> ColumnElement[bool]:
    """Any of the customer's leads had one of ``services`` (the customer's ``service_types`` list)."""
    c = Customer
    if dialect == "postgresql":
        return c.service_types.op("?|")(literal(services, _text_array()))
    each = func.json_each(c.service_types).table_valued("value").alias("each_service")
    return exists(select(literal(1)).select_from(each).where(each.c.value.in_(services)))


def _text_array() -> Any:
    from sqlalchemy.dialects.postgresql import ARRAY
    from sqlalchemy.types import Text

    return ARRAY(Text())


@dataclass
class _Campaign:
    """What of a campaign the matching query needs (none for a preview)."""

    id: uuid.UUID
    always_on: bool
    reenroll_after_days: int
    attribution_days: int


def _matched_customers(
    *, profile_id: uuid.UUID, criteria: TargetCriteria, rules: Rules, now: datetime, dialect: str,
    campaign: _Campaign | None,
) -> Select[Any]:
    """Customers matching ``criteria``, one row each, with their contacts and, in ``reason``, why they are
    left out (NULL: they are selectable)."""
    c, r = Customer, CampaignRecipient
    conds: list[ColumnElement[bool]] = [c.profile_id == profile_id, c.contact_key.not_like("erased:%")]
    if criteria.last_contact_days is not None:
        conds.append(c.last_contact_at < now - timedelta(days=criteria.last_contact_days))
    if criteria.last_contact_after is not None:
        conds.append(c.last_contact_at >= datetime.combine(criteria.last_contact_after, time(), UTC))
    if criteria.last_contact_before is not None:
        conds.append(c.last_contact_at < datetime.combine(criteria.last_contact_before, time(), UTC))
    if criteria.status:
        conds.append(_status_in(c.last_status, criteria.status))
    if criteria.agent_id:
        conds.append(c.last_agent_id == criteria.agent_id)
    if criteria.min_leads:
        conds.append(c.lead_count >= criteria.min_leads)
    if criteria.service_type:
        conds.append(_has_service(profile_id, criteria.service_type, dialect))
    if criteria.score_min is not None:
        conds.append(c.score >= criteria.score_min)
    if criteria.score_max is not None:
        conds.append(c.score <= criteria.score_max)
    needs_lead = False
    for f in criteria.filters:
        column = _customer_column(f.field)
        if column is None:
            needs_lead = True
            column = getattr(Lead, f.field)
        conds.append(_filter_clause(column, f, fold=f.field == "status"))
    if criteria.exclude_contacted_within_days:
        conds.append(~exists().where(
            r.profile_id == profile_id, r.contact_key == c.contact_key,
            r.sent_at >= now - timedelta(days=criteria.exclude_contacted_within_days)))
    if campaign is not None:
        mine = (r.campaign_id == campaign.id, r.contact_key == c.contact_key)
        if campaign.always_on:
            # an always-on campaign takes a customer again once their last enrolment ended long enough ago
            reenrol = timedelta(days=campaign.reenroll_after_days)
            ended_long_ago = or_(
                and_(r.status != "holdout", r.next_attempt_at.is_(None), r.updated_at < now - reenrol),
                and_(r.status == "holdout",  # a holdout's enrolment ends with its attribution window
                     r.created_at < now - reenrol - timedelta(days=campaign.attribution_days)))
            conds.append(~exists().where(*mine, not_(ended_long_ago)))
        else:
            conds.append(~exists().where(*mine))

    source: Any = Customer.__table__
    if needs_lead:
        source = source.outerjoin(Lead, Lead.id == c.last_lead_id)
    phone, email = c.customer_phone, c.customer_email
    contact_for = {"call": phone, "sms": phone, "email": email}
    channels = rules.channels
    # per channel, whether each reason applies: computed once per customer in an inner query (the
    # ``OFFSET 0`` keeps PostgreSQL from copying the look-ups into every place the outer query uses them);
    # opt-outs and consents as hashed ``IN`` look-ups, the do-not-call list (one row per number) joined
    facts: list[Any] = []
    o, k = OptOut, Consent
    for ch in channels:
        contact = contact_for[ch]
        facts.append(contact.in_(select(o.contact).where(o.profile_id == profile_id, o.channel.in_((ch, "all"))))
                     .label(f"opted_out_{ch}"))
        if ch in rules.consent:
            facts.append(contact.in_(select(k.contact).where(
                k.profile_id == profile_id, k.revoked_at.is_(None), k.channel.in_((ch, "all")),
                k.level.in_(rules.consent[ch]))).label(f"consented_{ch}"))
    phone_channels = [ch for ch in channels if ch in ("call", "sms")]
    if phone_channels:
        d = DncNumber
        listed = select(d.number).where(d.profile_id == profile_id).subquery("dnc")
        source = source.outerjoin(listed, listed.c.number == phone)
        facts.append(listed.c.number.is_not(None).label("listed"))
    inner = select(
        c.id.label("customer_id"), c.last_lead_id.label("lead_id"), c.contact_key, c.customer_name,
        phone.label("customer_phone"), email.label("customer_email"), c.last_status.label("status"),
        c.last_service_type.label("service_type"), c.last_agent_id.label("agent_id"),
        c.last_contact_at, c.lead_count, c.score, *facts,
    ).select_from(source).where(*conds).offset(0).subquery("facts")

    f = inner.c
    flags: dict[str, dict[str, ColumnElement[bool]]] = {ch: {} for ch in channels}
    for ch in channels:
        flags[ch]["opted_out"] = f[f"opted_out_{ch}"] == true()
        if ch in phone_channels:
            flags[ch]["dnc"] = f.listed == true()
        if ch in rules.consent:
            flags[ch]["no_consent"] = f[f"consented_{ch}"] == false()
    has = {ch: (f.customer_email if ch == "email" else f.customer_phone).is_not(None) for ch in channels}
    usable = [and_(has[ch], *[not_(flag) for flag in flags[ch].values()]) for ch in channels]
    whens: list[tuple[Any, Any]] = [(or_(*usable), literal(None))] if usable else []
    for reason in REASONS[:-1]:
        hits = [and_(has[ch], flags[ch][reason]) for ch in channels if reason in flags[ch]]
        if hits:
            whens.append((or_(*hits), literal(reason)))
    reason_col = case(*whens, else_=literal("no_contact")) if whens else literal("no_contact")
    return select(f.customer_id, f.lead_id, f.contact_key, f.customer_name, f.customer_phone, f.customer_email,
                  f.status, f.service_type, f.agent_id, f.last_contact_at, f.lead_count, f.score,
                  reason_col.label("reason"))


# --- public operations ---------------------------------------------------------------


@dataclass(frozen=True)
class SelectionResult:
    selected: int  # customers added to be contacted
    suppressed: int  # left out by an opt-out, the do-not-call list or missing consent
    total_recipients: int  # recipients the campaign will contact (the holdout group not counted)
    holdout: int = 0  # customers added to the holdout group
    suppressed_by: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REASONS, 0))


@dataclass(frozen=True)
class Preview:
    count: int
    suppressed: int
    sample: list[dict[str, Any]]
    suppressed_by: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REASONS, 0))
    # the states with their own calling rules among the numbers it would reach (calls and texts only):
    # :func:`core.compliance.campaign_compliance`'s ``by_state``
    by_state: dict[str, dict[str, Any]] = field(default_factory=dict)


def first_step_due(campaign: Campaign, now: datetime) -> datetime:
    """When a newly added recipient's first step falls due."""
    if campaign.outreach_method == "multi" and campaign.steps:
        return now + timedelta(hours=float(campaign.steps[0].get("delay_hours", 0)))
    return now


def _waits_for_winner(campaign: Campaign) -> bool:
    return campaign.variant_mode == "test_then_winner" and campaign.winner_variant is None


def first_due_sql(campaign: Campaign, now: datetime, ab_group: Any) -> Any:
    """When a recipient's first step falls due, as SQL over its ``ab_group``: in a test-then-winner
    campaign whose winner is not decided yet, the rest wait ``test_hours`` after the start."""
    first = literal(first_step_due(campaign, now), CampaignRecipient.__table__.c.next_attempt_at.type)
    if not _waits_for_winner(campaign):
        return first
    start = campaign.started_at or now
    rest = literal(first_step_due(campaign, max(now, start + timedelta(hours=float(campaign.test_hours)))),
                   CampaignRecipient.__table__.c.next_attempt_at.type)
    return case((ab_group == "rest", rest), else_=first)


# matching joins each customer to the business's opt-outs, do-not-call numbers and consents (hundreds of
# thousands of rows for a big business): hashed in memory rather than sorted through temporary files
_WORK_MEM = "64MB"


def _room_to_hash(session: Session) -> None:
    """Give this transaction's matching queries the memory to hash their joins (PostgreSQL)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(func.set_config("work_mem", _WORK_MEM, True)))


def _counts(rows: list[tuple[Any, ...]]) -> dict[str, int]:
    out = dict.fromkeys(REASONS, 0)
    out.update({reason: int(n) for reason, n in rows if reason in out})
    return out


def select_recipients(session: Session, *, campaign: Campaign, now: datetime | None = None) -> SelectionResult:
    """Add every customer matching the campaign's criteria (one INSERT … SELECT).

    Idempotent: customers already in the campaign are skipped (an always-on campaign re-enrols those
    whose enrolment ended long enough ago).  The counts of who was left out and why are added to the
    campaign's ``selection_report``.
    """
    now = now or utcnow()
    criteria = parse_criteria(campaign.target_criteria)
    dialect = session.get_bind().dialect.name
    _room_to_hash(session)
    rules = rules_for(session, profile_id=campaign.profile_id, campaign_type=campaign.campaign_type,
                      channels=channels_of(campaign.outreach_method, campaign.steps))
    matched = _matched_customers(
        profile_id=campaign.profile_id, criteria=criteria, rules=rules, now=now, dialect=dialect,
        campaign=_Campaign(campaign.id, bool(campaign.always_on), int(campaign.reenroll_after_days or 180),
                           int(campaign.attribution_days or 14)))
    r = CampaignRecipient.__table__
    target_cols = [r.c.id, r.c.campaign_id, r.c.profile_id, r.c.lead_id, r.c.customer_id, r.c.contact_key,
                   r.c.enrollment, r.c.customer_name, r.c.customer_phone, r.c.customer_email, r.c.variant,
                   r.c.ab_group, r.c.status, r.c.step, r.c.attempts, r.c.next_attempt_at, r.c.converted,
                   r.c.response_data, r.c.created_at, r.c.updated_at]

    def bucket(m: Any, salt: str) -> Any:
        return stable_bucket(literal(f"{campaign.id}:{salt}:") + m.c.contact_key) % 100

    def with_groups(sel: Select[Any]) -> Any:
        m = sel.subquery("matched_customers")
        holdout = bucket(m, "holdout") < int(campaign.holdout_percent) if campaign.holdout_percent else false()
        tested = bucket(m, "test") < int(campaign.test_percent) if campaign.variant_mode == "test_then_winner" \
            else true()
        return select(m, case((holdout, true()), else_=false()).label("holdout"),
                      case((tested, true()), else_=false()).label("tested"))

    def insert_from(m: Any) -> Any:
        in_holdout = m.c.holdout == true()
        split = campaign.variant_mode == "test_then_winner"
        variant = variant_sql(campaign.variants, campaign.id, m.c.contact_key)
        if split:
            winner = literal(campaign.winner_variant)
            variant = case((m.c.tested == true(), variant), else_=winner)
            group: Any = case((in_holdout, literal(None)), (m.c.tested == true(), literal("test")), else_="rest")
        else:
            group = literal(None)
        if campaign.always_on:
            latest = (select(func.max(r.c.enrollment)).where(r.c.campaign_id == campaign.id,
                                                             r.c.contact_key == m.c.contact_key)
                      .scalar_subquery())
            enrollment: Any = func.coalesce(latest, 0) + 1
        else:
            enrollment = literal(1)
        rows = select(
            new_uuid(), literal(campaign.id), literal(campaign.profile_id), m.c.lead_id, m.c.customer_id,
            m.c.contact_key, enrollment, m.c.customer_name, m.c.customer_phone, m.c.customer_email,
            case((in_holdout, literal(None)), else_=variant), group,
            case((in_holdout, literal("holdout")), else_=literal("pending")), literal(0), literal(0),
            case((in_holdout, literal(None, r.c.next_attempt_at.type)), else_=first_due_sql(campaign, now, group)),
            literal(False), literal({}, r.c.response_data.type),
            literal(now, r.c.created_at.type), literal(now, r.c.updated_at.type),
        ).where(m.c.reason.is_(None)).order_by(m.c.contact_key)
        # the ORDER BY makes the database finish matching before it inserts the first row: matching reads
        # campaign_recipients ("already in this campaign"), and a scan of it while this very statement fills
        # it visits every row inserted so far — quadratic on a first selection, whose table looks empty
        return insert(r).from_select(target_cols, rows)

    def reasons_of(m: Any) -> Any:
        return select(m.c.reason, func.count()).where(m.c.reason.is_not(None)).group_by(m.c.reason)

    if dialect == "postgresql":
        # one statement, one pass over the customers: match once, then insert and count from that result
        m = with_groups(matched).cte("matched").prefix_with("MATERIALIZED")
        ins = insert_from(m).returning(r.c.status).cte("ins")
        counted = session.execute(union_all(
            select(literal("added").label("kind"), ins.c.status.label("key"), func.count().label("n"))
            .group_by(ins.c.status),
            select(literal("left out"), m.c.reason, func.count()).where(m.c.reason.is_not(None))
            .group_by(m.c.reason))).all()
        added = {key: n for kind, key, n in counted if kind == "added"}
        by_reason = _counts([(key, n) for kind, key, n in counted if kind == "left out"])
    else:
        m = with_groups(matched).subquery("m")
        by_reason = _counts(list(session.execute(reasons_of(m))))
        added = dict(session.execute(
            select(case((m.c.holdout == true(), "holdout"), else_="pending"), func.count())
            .where(m.c.reason.is_(None)).group_by(case((m.c.holdout == true(), "holdout"), else_="pending"))
        ).all())
        session.execute(insert_from(m))
    selected, holdout = int(added.get("pending", 0)), int(added.get("holdout", 0))
    _record(campaign, selected=selected, holdout=holdout, by_reason=by_reason, now=now)
    total = session.scalar(select(func.count()).select_from(r).where(r.c.campaign_id == campaign.id,
                                                                     r.c.status != "holdout")) or 0
    return SelectionResult(selected=selected, suppressed=sum(by_reason[k] for k in REASONS[:-1]),
                           total_recipients=int(total), holdout=holdout, suppressed_by=by_reason)


def _record(campaign: Campaign, *, selected: int, holdout: int, by_reason: dict[str, int], now: datetime) -> None:
    """Add a selection's counts to the campaign's report (cumulative, and the last one on its own)."""
    report = dict(campaign.selection_report or {})
    last = {**by_reason, "selected": selected, "holdout": holdout}
    for key, n in last.items():
        report[key] = int(report.get(key, 0)) + n
    report["selections"] = int(report.get("selections", 0)) + 1
    report["last"] = last
    report["last_selected_at"] = now.isoformat()
    campaign.selection_report = report
    campaign.last_enrolled_at = now


def preview_audience(
    session: Session, *, profile_id: uuid.UUID, target_criteria: dict[str, Any] | TargetCriteria | None,
    outreach_method: Literal["call", "email", "sms", "multi"], steps: list[dict[str, Any]] | None = None,
    campaign_type: str = "winback", sample_size: int = 10, now: datetime | None = None,
) -> Preview:
    """How many customers a campaign with these criteria would reach (and a sample), who would be left out
    and why, and — for calls and texts — how many of the numbers it would reach are in states with their own
    calling rules, without writing.  ``campaign_type`` decides the consent calls and texts need."""
    channels = channels_of(outreach_method, steps)
    criteria = parse_criteria(target_criteria, session=session, profile_id=profile_id)
    rules = rules_for(session, profile_id=profile_id, channels=channels, campaign_type=campaign_type)
    _room_to_hash(session)
    matched = _matched_customers(profile_id=profile_id, criteria=criteria, rules=rules, now=now or utcnow(),
                                 dialect=session.get_bind().dialect.name, campaign=None).subquery("m")
    size = max(0, min(sample_size, 100))
    newest_first = (matched.c.last_contact_at.desc(), matched.c.contact_key)
    # the counts (no order needed) in one pass, the reached ones by area code when calls or texts go out
    # ("+1305": the area code decides the state's rules); then the sample: the newest few the campaign would
    # reach, which the customers' (profile, last contact) index finds without sorting them all
    head: Any = literal(None, String)
    if set(channels) & set(compliance.CAPPED_CHANNELS):
        head = case((and_(matched.c.reason.is_(None), matched.c.customer_phone.like("+1%")),
                     func.substr(matched.c.customer_phone, 1, 5)), else_=literal(None, String))
    grouped = session.execute(select(matched.c.reason, head.label("head"), func.count())
                              .group_by(matched.c.reason, head)).all()
    per_reason: Counter[str | None] = Counter()
    for reason, _head, n in grouped:
        per_reason[reason] += int(n)
    rows = list(per_reason.items())
    sample_rows = session.execute(select(matched).where(matched.c.reason.is_(None)).order_by(*newest_first)
                                  .limit(size)).mappings().all() if size else []
    by_reason = _counts([(reason, n) for reason, n in rows])
    count = next((int(n) for reason, n in rows if reason is None), 0)
    sample = [
        {k: row[k] for k in ("customer_id", "lead_id", "customer_name", "customer_phone", "customer_email", "status",
                             "service_type", "last_contact_at", "lead_count", "score")}
        for row in sample_rows
    ]
    return Preview(count=count, suppressed=sum(by_reason[k] for k in REASONS[:-1]), sample=sample,
                   suppressed_by=by_reason,
                   by_state=compliance.states_of((h, int(n)) for r, h, n in grouped if r is None and h))


def usable_channels(session: Session, *, profile_id: uuid.UUID, rules: Rules,
                    contacts: list[tuple[str | None, str | None]]) -> list[str | None]:
    """For hand-picked customers (``(phone, e-mail)`` pairs): ``None`` when a channel is usable, else the
    reason they are left out — the rule :func:`select_recipients` applies in SQL."""
    phones = sorted({p for p, _e in contacts if p})
    emails = sorted({e for _p, e in contacts if e})
    outs: dict[str, set[str]] = {}
    for contact, channel in session.execute(select(OptOut.contact, OptOut.channel).where(
            OptOut.profile_id == profile_id, OptOut.contact.in_(phones + emails))):
        outs.setdefault(contact, set()).add(channel)
    dnc = set(session.scalars(select(DncNumber.number).where(DncNumber.profile_id == profile_id,
                                                             DncNumber.number.in_(phones)))) if phones else set()
    held: dict[str, set[tuple[str, str]]] = {}
    if rules.consent:
        for contact, channel, level in session.execute(select(Consent.contact, Consent.channel, Consent.level).where(
                Consent.profile_id == profile_id, Consent.contact.in_(phones + emails), Consent.revoked_at.is_(None))):
            held.setdefault(contact, set()).add((channel, level))
    answers: list[str | None] = []
    for phone, email in contacts:
        found: dict[str, set[str]] = {}
        usable = False
        for ch in rules.channels:
            contact = email if ch == "email" else phone
            if not contact:
                continue
            why = set()
            if outs.get(contact, set()) & {ch, "all"}:
                why.add("opted_out")
            if ch != "email" and contact in dnc:
                why.add("dnc")
            if ch in rules.consent and not any(channel in (ch, "all") and level in rules.consent[ch]
                                               for channel, level in held.get(contact, set())):
                why.add("no_consent")
            usable = usable or not why
            found[ch] = why
        reasons = set().union(*found.values()) if found else set()
        answers.append(None if usable else next((r for r in REASONS[:-1] if r in reasons), "no_contact"))
    return answers

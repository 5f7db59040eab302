"""Campaign rules: validation, the status machine, editing and deleting, and the
recipient list.  Every function is scoped to one profile; another profile's
campaign is "not found".

Status machine (DESIGN §5)::

    draft → scheduled → active ⇄ paused → completed
    any non-final state → cancelled (stop)

``start`` means now: from draft or scheduled it selects recipients if none are
selected and makes the campaign active at once; from paused it resumes.  Only
the system completes a campaign (when nothing is left to do).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from core import outbox
from core.accounts import get_profile
from core.config import get_settings
from core.contacts import ContactError, normalize_email, normalize_phone
from core.customers_sync import customer_ids
from core.db import utcnow
from core.errors import Conflict, FieldError, Invalid, NotFound, parse_model
from core.models import CAMPAIGN_STATUSES, RECIPIENT_STATUSES, Agent, Campaign, CampaignRecipient, Customer, Lead
from core.schemas import CampaignCreate, CampaignUpdate, SendWindow
from core.targeting import (
    REASONS,
    SelectionResult,
    channels_of,
    first_due_sql,
    first_step_due,
    parse_criteria,
    rules_for,
    select_recipients,
    usable_channels,
)
from core.templates import check_template, check_variable_names
from core.variants import assign_variant

DEFAULT_RATE_LIMIT = 30
DEFAULT_MAX_CONCURRENT_CALLS = 3
DEFAULT_MAX_ATTEMPTS = 3

FINAL_STATUSES = ("completed", "cancelled")
# status → statuses a person (API, dashboard) may move it to
USER_TRANSITIONS: dict[str, tuple[str, ...]] = {
    "draft": ("scheduled", "active", "cancelled"),
    "scheduled": ("draft", "active", "cancelled"),
    "active": ("paused", "cancelled"),
    "paused": ("active", "cancelled"),
    "completed": (),
    "cancelled": (),
}
# the scheduler may also complete an active campaign and pause one (quota exhausted)
SYSTEM_TRANSITIONS: dict[str, tuple[str, ...]] = {**USER_TRANSITIONS, "active": ("paused", "cancelled", "completed")}

# what may still change once a campaign has started
RUNNING_EDITABLE = {"name", "description", "rate_limit_per_minute", "max_concurrent_calls", "max_attempts",
                    "send_window", "timezone", "auto_pause_failure_rate", "reenroll_after_days"}
# settings that have a default of their own: left out (or null) means the default
DEFAULTED = ("holdout_percent", "always_on", "reenroll_after_days", "send_time", "auto_pause_failure_rate",
             "variant_mode", "test_percent", "test_hours")
FINAL_EDITABLE = {"name", "description"}

_STATUS_WORDS = {
    "draft": "a draft", "scheduled": "scheduled", "active": "active", "paused": "paused",
    "completed": "completed", "cancelled": "cancelled",
}


def _illegal(campaign: Campaign, target: str) -> Conflict:
    now_is = _STATUS_WORDS[campaign.status]
    hints = {
        ("active", "draft"): "Pause or stop it instead.",
        ("paused", "draft"): "Resume or stop it instead.",
        ("completed", "active"): "A completed campaign cannot run again; create a new one.",
        ("cancelled", "active"): "A stopped campaign cannot run again; create a new one.",
    }
    if target == "completed":
        hint = "A campaign completes on its own when every recipient is done."
    else:
        hint = hints.get((campaign.status, target), "")
    verb = {"active": "start", "paused": "pause", "cancelled": "stop", "scheduled": "schedule",
            "draft": "return to draft", "completed": "complete"}[target]
    return Conflict(f"This campaign is {now_is}; it cannot {verb}. {hint}".strip(), field="status")


def can_transition(current: str, target: str, *, by_system: bool = False) -> bool:
    """Whether ``current → target`` is a legal status change."""
    table = SYSTEM_TRANSITIONS if by_system else USER_TRANSITIONS
    return target in table.get(current, ())


# --- lookups --------------------------------------------------------------------------


def get_campaign(session: Session, *, profile_id: uuid.UUID, campaign_id: uuid.UUID,
                 for_update: bool = False) -> Campaign:
    """The profile's campaign, or :class:`NotFound` (also for another profile's)."""
    stmt = select(Campaign).where(Campaign.id == campaign_id, Campaign.profile_id == profile_id)
    if for_update:
        stmt = stmt.with_for_update()
    campaign = session.scalars(stmt).one_or_none()
    if campaign is None:
        raise NotFound("No such campaign.", field="campaign_id")
    return campaign


def list_campaigns(
    session: Session, *, profile_id: uuid.UUID, status: str | None = None, campaign_type: str | None = None,
    created_after: datetime | None = None, created_before: datetime | None = None,
    limit: int = 50, offset: int = 0,
) -> tuple[list[Campaign], int]:
    """A page of the profile's campaigns (newest first) and the total matching."""
    if status is not None and status not in CAMPAIGN_STATUSES:
        raise Invalid(f"unknown status '{status}'; allowed: {', '.join(CAMPAIGN_STATUSES)}", field="status")
    conds = [Campaign.profile_id == profile_id]
    if status:
        conds.append(Campaign.status == status)
    if campaign_type:
        conds.append(Campaign.campaign_type == campaign_type)
    if created_after:
        conds.append(Campaign.created_at >= created_after)
    if created_before:
        conds.append(Campaign.created_at < created_before)
    total = session.scalar(select(func.count()).select_from(Campaign).where(*conds)) or 0
    rows = session.scalars(
        select(Campaign).where(*conds).order_by(Campaign.created_at.desc(), Campaign.id).limit(limit).offset(offset)
    ).all()
    return list(rows), int(total)


# --- validation ---------------------------------------------------------------------------

_TEMPLATE_FIELDS = ("message_template", "call_script", "email_subject", "sms_template")


def _required_content(method: str, steps: list[dict[str, Any]]) -> dict[str, str]:
    """Content field → why it is needed."""
    need: dict[str, str] = {}
    for channel in channels_of(method, steps):
        if channel == "call":
            need["call_script"] = "a call campaign needs a call script"
        elif channel == "email":
            need["message_template"] = "an e-mail campaign needs a message (message_template)"
            need["email_subject"] = "an e-mail campaign needs a subject (email_subject)"
        elif method == "multi":
            need["sms_template"] = "an SMS step needs the SMS text (sms_template)"
        else:
            need["message_template"] = "an SMS campaign needs the message text (message_template)"
    return need


def validate_campaign(session: Session, *, profile_id: uuid.UUID, values: dict[str, Any],
                      check_start: datetime | None = None) -> dict[str, Any]:
    """Check a whole campaign (after a create or a merge of an update).  With ``check_start`` (now), a
    start time being set must lie after it.

    Returns the normalized values; raises :class:`Invalid` naming every field at fault.
    """
    errors: list[FieldError] = []
    method = values["outreach_method"]
    steps = values.get("steps") or []
    variables = values.get("variables") or {}
    try:
        check_variable_names(variables)
    except Invalid as exc:
        errors.extend(exc.errors)

    if values.get("variant_mode") == "test_then_winner" and len(values.get("variants") or []) < 2:
        errors.append(FieldError("variant_mode", "picking a winner needs two or more versions (variants)"))
    if method == "multi" and not steps:
        errors.append(FieldError("steps", "a multi-channel campaign needs at least one step"))
    if method != "multi" and steps:
        errors.append(FieldError("steps", "steps apply only to multi-channel campaigns (outreach_method 'multi')"))

    for name, why in _required_content(method, steps).items():
        if not (values.get(name) or "").strip():
            errors.append(FieldError(name, why))

    def check(text: str | None, field: str) -> None:
        if text:
            try:
                check_template(text, field=field, extra_variables=variables.keys())
            except Invalid as exc:
                errors.extend(exc.errors)

    for name in _TEMPLATE_FIELDS:
        check(values.get(name), name)
    for i, variant in enumerate(values.get("variants") or []):
        for name in _TEMPLATE_FIELDS:
            check(variant.get(name), f"variants.{i}.{name}")

    try:
        values["target_criteria"] = parse_criteria(values.get("target_criteria"), session=session,
                                                   profile_id=profile_id).as_json()
    except Invalid as exc:
        errors.extend(exc.errors)

    agent_id = values.get("agent_id")
    if agent_id is not None and session.scalar(
            select(Agent.id).where(Agent.id == agent_id, Agent.profile_id == profile_id)) is None:
        errors.append(FieldError("agent_id", f"no agent {agent_id} in this business"))

    if values.get("status") == "scheduled" and values.get("scheduled_at") is None:
        errors.append(FieldError("scheduled_at", "a scheduled campaign needs a start time (scheduled_at)"))
    if check_start is not None and values.get("scheduled_at") is not None and values["scheduled_at"] <= check_start:
        errors.append(FieldError("scheduled_at", "the start time has passed; pick a date and time in the future, "
                                                 "or start the campaign now"))
    if errors:
        raise Invalid(errors)
    return values


def _dump(model: CampaignCreate | CampaignUpdate) -> dict[str, Any]:
    data = model.model_dump(exclude_unset=True)
    for key in ("variants", "steps"):
        if data.get(key) is not None:
            data[key] = [item.model_dump(mode="json", exclude_none=True) for item in getattr(model, key)]
    if data.get("send_window") is not None:
        data["send_window"] = model.send_window.model_dump(mode="json")  # type: ignore[union-attr]
    return data


def create_campaign(session: Session, *, profile_id: uuid.UUID, data: CampaignCreate | dict[str, Any],
                    now: datetime | None = None) -> Campaign:
    """Create a draft (or scheduled) campaign after checking every rule."""
    model = parse_model(CampaignCreate, data)
    profile = get_profile(session, profile_id=profile_id)
    values = _dump(model)
    if not values.get("status"):
        values["status"] = "scheduled" if values.get("scheduled_at") else "draft"
    values["timezone"] = values.get("timezone") or profile.timezone
    values["send_window"] = values.get("send_window") or SendWindow().model_dump(mode="json")
    for key, default in (("rate_limit_per_minute", DEFAULT_RATE_LIMIT),
                         ("max_concurrent_calls", DEFAULT_MAX_CONCURRENT_CALLS),
                         ("max_attempts", DEFAULT_MAX_ATTEMPTS)):
        if values.get(key) is None:
            values[key] = default
    values["attribution_days"] = get_settings().attribution_days
    for key in ("variables", "target_criteria"):
        values[key] = values.get(key) or {}
    for key in ("variants", "steps"):
        values[key] = values.get(key) or []
    for key in DEFAULTED:
        if values.get(key) is None:
            values.pop(key, None)
    now = now or utcnow()
    values = validate_campaign(session, profile_id=profile_id, values=values, check_start=now)
    campaign = Campaign(id=uuid.uuid4(), profile_id=profile_id, created_at=now, updated_at=now, **values)
    session.add(campaign)
    session.flush()
    return campaign


def update_campaign(session: Session, *, profile_id: uuid.UUID, campaign_id: uuid.UUID,
                    data: CampaignUpdate | dict[str, Any], now: datetime | None = None) -> Campaign:
    """Apply a partial change; a ``status`` in it follows the status machine."""
    model = parse_model(CampaignUpdate, data)
    changes = _dump(model)
    target = changes.pop("status", None)
    campaign = get_campaign(session, profile_id=profile_id, campaign_id=campaign_id, for_update=True)
    now = now or utcnow()
    # an illegal status change is refused as such (409), before any other field is judged
    if target is not None and target != campaign.status and not can_transition(campaign.status, target):
        raise _illegal(campaign, target)

    for key in ("campaign_type", "outreach_method", "name", "rate_limit_per_minute", "max_concurrent_calls",
                "max_attempts", "timezone", "send_window", *DEFAULTED):
        if key in changes and changes[key] is None:
            raise Invalid("cannot be empty", field=key)
    if campaign.status in ("draft", "scheduled"):
        editable = None
    elif campaign.status in FINAL_STATUSES:
        editable = FINAL_EDITABLE
    else:
        editable = RUNNING_EDITABLE
    if editable is not None:
        frozen = sorted(k for k, v in changes.items() if k not in editable and v != getattr(campaign, k))
        if frozen:
            allowed = ", ".join(sorted(editable))
            raise Conflict(f"This campaign is {_STATUS_WORDS[campaign.status]}; {', '.join(frozen)} can no longer "
                           f"change (still editable: {allowed}).", field=frozen[0])

    values = {c.key: getattr(campaign, c.key) for c in Campaign.__table__.columns}
    values.update(changes)
    values["variables"] = values.get("variables") or {}
    values["variants"] = values.get("variants") or []
    values["steps"] = values.get("steps") or []
    if target == "scheduled":
        values["status"] = "scheduled"
    starting = ("scheduled_at" in changes and changes["scheduled_at"] != campaign.scheduled_at) or target == "scheduled"
    values = validate_campaign(session, profile_id=profile_id, values=values, check_start=now if starting else None)
    for key in changes:
        setattr(campaign, key, values[key])
    campaign.updated_at = now
    if target is not None and target != campaign.status:
        _apply_transition(session, campaign, target, now=now)
    session.flush()
    return campaign


def delete_campaign(session: Session, *, profile_id: uuid.UUID, campaign_id: uuid.UUID) -> None:
    """Delete a campaign and its recipients; refused while it is active."""
    campaign = get_campaign(session, profile_id=profile_id, campaign_id=campaign_id, for_update=True)
    if campaign.status == "active":
        raise Conflict("This campaign is active; pause or stop it before deleting it.", field="status")
    session.delete(campaign)
    session.flush()


# --- status changes ----------------------------------------------------------------------------


def _apply_transition(session: Session, campaign: Campaign, target: str, *, now: datetime,
                      reason: str | None = None, by_system: bool = False) -> None:
    if not can_transition(campaign.status, target, by_system=by_system):
        raise _illegal(campaign, target)
    previous = campaign.status
    if target == "scheduled" and campaign.scheduled_at is None:
        raise Invalid("a scheduled campaign needs a start time (scheduled_at)", field="scheduled_at")
    if target == "active" and previous in ("draft", "scheduled"):
        has_recipients = session.scalar(
            select(CampaignRecipient.id).where(CampaignRecipient.campaign_id == campaign.id).limit(1))
        if has_recipients is None:
            select_recipients(session, campaign=campaign, now=now)
        # the first step's delay counts from the start, not from selection (and a test-then-winner
        # campaign's rest wait for the winner from the start); holdout recipients are never due
        session.execute(
            update(CampaignRecipient)
            .where(CampaignRecipient.campaign_id == campaign.id, CampaignRecipient.status == "pending",
                   CampaignRecipient.step == 0, CampaignRecipient.attempts == 0)
            .values(next_attempt_at=first_due_sql(campaign, now, CampaignRecipient.ab_group))
        )
        campaign.started_at = now
        if campaign.always_on:
            campaign.last_enrolled_at = now  # the start's selection is the first day's enrolment
    if target in FINAL_STATUSES:
        campaign.completed_at = now
    campaign.status = target
    campaign.status_reason = reason
    campaign.updated_at = now
    announced = {"active": "campaign.started" if previous in ("draft", "scheduled") else None,
                 "paused": "campaign.paused", "completed": "campaign.completed"}.get(target)
    if announced:
        outbox.emit(session, profile_id=campaign.profile_id, type=announced, now=now, data={
            "campaign_id": str(campaign.id), "name": campaign.name, "status": target, "reason": reason})


def transition(session: Session, *, profile_id: uuid.UUID, campaign_id: uuid.UUID, target: str,
               now: datetime | None = None, reason: str | None = None, by_system: bool = False) -> Campaign:
    """Move a campaign to ``target`` if the status machine allows it (else :class:`Conflict`)."""
    campaign = get_campaign(session, profile_id=profile_id, campaign_id=campaign_id, for_update=True)
    _apply_transition(session, campaign, target, now=now or utcnow(), reason=reason, by_system=by_system)
    session.flush()
    return campaign


def start_campaign(session: Session, *, profile_id: uuid.UUID, campaign_id: uuid.UUID,
                   now: datetime | None = None) -> Campaign:
    """Start now (selecting recipients if none yet), or resume a paused campaign."""
    campaign = get_campaign(session, profile_id=profile_id, campaign_id=campaign_id, for_update=True)
    if campaign.status == "active":
        raise Conflict("This campaign is already active.", field="status")
    _apply_transition(session, campaign, "active", now=now or utcnow())
    session.flush()
    return campaign


def pause_campaign(session: Session, *, profile_id: uuid.UUID, campaign_id: uuid.UUID,
                   now: datetime | None = None, reason: str | None = None) -> Campaign:
    """Pause an active campaign: nothing more is sent until it is started again."""
    return transition(session, profile_id=profile_id, campaign_id=campaign_id, target="paused", now=now,
                      reason=reason)


def stop_campaign(session: Session, *, profile_id: uuid.UUID, campaign_id: uuid.UUID,
                  now: datetime | None = None) -> Campaign:
    """Cancel a campaign for good; recipients not yet reached stay unreached."""
    return transition(session, profile_id=profile_id, campaign_id=campaign_id, target="cancelled", now=now)


# --- recipients --------------------------------------------------------------------------------


def _check_open_for_recipients(campaign: Campaign) -> None:
    if campaign.status in FINAL_STATUSES:
        raise Conflict(f"This campaign is {campaign.status}; it takes no more recipients.", field="status")


def select_campaign_recipients(session: Session, *, profile_id: uuid.UUID, campaign_id: uuid.UUID,
                               now: datetime | None = None) -> SelectionResult:
    """Run the campaign's criteria and add every matching customer not yet in it."""
    campaign = get_campaign(session, profile_id=profile_id, campaign_id=campaign_id, for_update=True)
    _check_open_for_recipients(campaign)
    return select_recipients(session, campaign=campaign, now=now)


@dataclass(frozen=True)
class _Candidate:
    contact_key: str
    lead_id: uuid.UUID | None
    name: str | None
    phone: str | None
    email: str | None
    field: str


def add_recipients(
    session: Session, *, profile_id: uuid.UUID, campaign_id: uuid.UUID,
    lead_ids: Iterable[uuid.UUID] | None = None, contacts: Iterable[dict[str, Any]] | None = None,
    now: datetime | None = None,
) -> SelectionResult:
    """Add customers by hand, by lead id or by contact details.

    All or nothing: an unknown lead or an unusable contact refuses the whole
    request.  Customers already in the campaign are skipped; those no channel of
    the campaign may reach (opted out, on the do-not-call list, without the
    consent it needs) are counted as ``suppressed`` and not added.  Hand-picked
    customers are always contacted (never put in the holdout group).
    """
    now = now or utcnow()
    campaign = get_campaign(session, profile_id=profile_id, campaign_id=campaign_id, for_update=True)
    _check_open_for_recipients(campaign)
    profile = get_profile(session, profile_id=profile_id)
    channels = channels_of(campaign.outreach_method, campaign.steps)
    errors: list[FieldError] = []
    candidates: list[_Candidate] = []

    ids = list(lead_ids or [])
    if ids:
        leads = {lead.id: lead for lead in session.scalars(
            select(Lead).where(Lead.profile_id == profile_id, Lead.id.in_(ids)))}
        for i, lead_id in enumerate(ids):
            lead = leads.get(lead_id)
            if lead is None:
                errors.append(FieldError(f"lead_ids.{i}", f"no lead {lead_id} in this business"))
            else:
                candidates.append(_Candidate(lead.contact_key, lead.id, lead.customer_name, lead.customer_phone,
                                             lead.customer_email, f"lead_ids.{i}"))
    for i, contact in enumerate(contacts or []):
        phone = email = None
        raw_phone, raw_email = contact.get("customer_phone"), contact.get("customer_email")
        try:
            phone = normalize_phone(raw_phone, profile.default_region) if raw_phone else None
        except ContactError as exc:
            errors.append(FieldError(f"contacts.{i}.customer_phone", str(exc)))
        try:
            email = normalize_email(raw_email) if raw_email else None
        except ContactError as exc:
            errors.append(FieldError(f"contacts.{i}.customer_email", str(exc)))
        if not raw_phone and not raw_email:
            errors.append(FieldError(f"contacts.{i}", "give customer_phone or customer_email"))
            continue
        key = phone or email
        if key:
            known = session.scalars(select(Customer).where(Customer.profile_id == profile_id,
                                                           Customer.contact_key == key)).one_or_none()
            name = contact.get("customer_name") or (known.customer_name if known else None)
            candidates.append(_Candidate(key, known.last_lead_id if known else None, name, phone, email,
                                         f"contacts.{i}"))

    for cand in candidates:
        usable = [ch for ch in channels if (cand.email if ch == "email" else cand.phone)]
        if not usable:
            need = " or ".join("an e-mail address" if ch == "email" else "a phone number" for ch in channels)
            errors.append(FieldError(cand.field, f"this campaign needs {need} and this customer has none"))
    if errors:
        raise Invalid(errors)

    existing = set(session.scalars(select(CampaignRecipient.contact_key).where(
        CampaignRecipient.campaign_id == campaign.id,
        CampaignRecipient.contact_key.in_([c.contact_key for c in candidates]))))
    fresh: list[_Candidate] = []
    for cand in candidates:
        if cand.contact_key not in existing and cand.contact_key not in {f.contact_key for f in fresh}:
            fresh.append(cand)
    rules = rules_for(session, profile_id=profile_id, channels=channels, campaign_type=campaign.campaign_type)
    reasons = usable_channels(session, profile_id=profile_id, rules=rules,
                              contacts=[(c.phone, c.email) for c in fresh])
    ids_of = customer_ids(session, profile_id=profile_id, keys=[c.contact_key for c in fresh])
    by_reason = dict.fromkeys(REASONS, 0)
    added = 0
    for cand, reason in zip(fresh, reasons, strict=True):
        if reason is not None:
            by_reason[reason] += 1
            continue
        tested = campaign.variant_mode == "test_then_winner"
        session.add(CampaignRecipient(
            id=uuid.uuid4(), campaign_id=campaign.id, profile_id=profile_id, lead_id=cand.lead_id,
            customer_id=ids_of.get(cand.contact_key), contact_key=cand.contact_key, enrollment=1,
            customer_name=cand.name, customer_phone=cand.phone, customer_email=cand.email,
            variant=assign_variant(campaign.variants, campaign.id, cand.contact_key),
            ab_group="test" if tested else None,  # picked by hand: in the test, never kept waiting
            status="pending", step=0, attempts=0, next_attempt_at=first_step_due(campaign, now),
            created_at=now, updated_at=now,
        ))
        added += 1
    session.flush()
    total = session.scalar(select(func.count()).where(CampaignRecipient.campaign_id == campaign.id,
                                                      CampaignRecipient.status != "holdout")) or 0
    return SelectionResult(selected=added, suppressed=sum(by_reason[k] for k in REASONS[:-1]),
                           total_recipients=int(total), suppressed_by=by_reason)


def recipient_counts(session: Session, *, profile_id: uuid.UUID, campaign_id: uuid.UUID) -> dict[str, int]:
    """How many of the campaign's recipients are in each status (every status present)."""
    rows = session.execute(
        select(CampaignRecipient.status, func.count())
        .where(CampaignRecipient.campaign_id == campaign_id, CampaignRecipient.profile_id == profile_id)
        .group_by(CampaignRecipient.status)
    ).all()
    counts = dict.fromkeys(RECIPIENT_STATUSES, 0)
    counts.update({status: int(n) for status, n in rows})
    return counts


def list_recipients(
    session: Session, *, profile_id: uuid.UUID, campaign_id: uuid.UUID, status: str | None = None,
    search: str | None = None, limit: int = 50, offset: int = 0,
) -> tuple[list[CampaignRecipient], int]:
    """A page of a campaign's recipients (stable order) and the total matching."""
    get_campaign(session, profile_id=profile_id, campaign_id=campaign_id)
    if status is not None and status not in RECIPIENT_STATUSES:
        raise Invalid(f"unknown status '{status}'; allowed: {', '.join(RECIPIENT_STATUSES)}", field="status")
    r = CampaignRecipient
    conds = [r.campaign_id == campaign_id, r.profile_id == profile_id]
    if status:
        conds.append(r.status == status)
    if search and search.strip():
        pattern = "%" + search.strip().lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        conds.append(or_(func.lower(r.customer_name).like(pattern, escape="\\"),
                         r.customer_phone.like(pattern, escape="\\"),
                         r.customer_email.like(pattern, escape="\\")))
    total = session.scalar(select(func.count()).select_from(r).where(*conds)) or 0
    rows = session.scalars(select(r).where(*conds).order_by(r.created_at, r.id).limit(limit).offset(offset)).all()
    return list(rows), int(total)


def get_recipient(session: Session, *, profile_id: uuid.UUID, recipient_id: uuid.UUID) -> CampaignRecipient:
    """One recipient of the profile, or :class:`NotFound`."""
    recipient = session.scalars(select(CampaignRecipient).where(
        CampaignRecipient.id == recipient_id, CampaignRecipient.profile_id == profile_id)).one_or_none()
    if recipient is None:
        raise NotFound("No such recipient.", field="recipient_id")
    return recipient

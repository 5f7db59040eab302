"""Customers: the list, one customer's whole story, the business's own lead statuses, and erasing a customer.

A customer is one row of ``customers`` (a profile's leads sharing a
``contact_key`` — the normalized phone, else the e-mail — kept aggregated by
:mod:`core.customers_sync`).  Lists page over that table in SQL; the dashboard
and the API read the same functions.

Erasing keeps the anonymous facts (how many leads, statuses, dates, campaign
outcomes and counters) and removes everything that identifies the person:
names, phones, e-mails, notes, call summaries and transcripts, recordings,
provider payloads.  The customer's ``contact_key`` becomes an opaque
``erased:<uuid>`` so counts still group correctly, and so nothing can select
or match them again; their customer row becomes that anonymous one.  Opt-outs
are kept on purpose: they are what guarantees the person is never contacted
again if their details come back in an import.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

import pandas as pd
from sqlalchemy import ColumnElement, CursorResult, func, or_, select, update
from sqlalchemy.orm import Session

from core.contacts import ContactError, normalize_contact
from core.customers_sync import anonymize
from core.db import utcnow
from core.errors import Invalid, NotFound
from core.models import (
    Campaign,
    CampaignRecipient,
    Consent,
    Customer,
    Lead,
    OptOut,
    OutreachAttempt,
    OutreachEvent,
)
from core.outbound import message_from_detail

ERASED_PREFIX = "erased:"
CUSTOMER_COLUMNS = ["contact_key", "name", "phone", "email", "last_contact", "leads", "last_status", "service",
                    "id", "score"]


def _like(text: str) -> str:
    escaped = text.strip().lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _not_erased() -> ColumnElement[bool]:
    return Lead.contact_key.not_like(ERASED_PREFIX + "%")


def _conditions(profile_id: uuid.UUID, search: str | None, status: str | None) -> list[ColumnElement[bool]]:
    """Which customers a list shows: the business's, not erased, matching ``search`` (any of their leads'
    names, phones or e-mails) and ``status`` (their last status, ignoring case and spaces)."""
    c, lead = Customer, Lead
    conds: list[ColumnElement[bool]] = [c.profile_id == profile_id, c.contact_key.not_like(ERASED_PREFIX + "%")]
    if search and search.strip():
        pattern = _like(search)
        digits = "".join(ch for ch in search if ch.isdigit())
        matches = [func.lower(lead.customer_name).like(pattern, escape="\\"),
                   lead.customer_email.like(pattern, escape="\\"),
                   lead.customer_phone.like(pattern, escape="\\")]
        if len(digits) >= 3:
            matches.append(lead.customer_phone.like(f"%{digits}%"))
        conds.append(c.contact_key.in_(select(lead.contact_key).where(lead.profile_id == profile_id, or_(*matches))))
    if status and status.strip():
        conds.append(func.lower(func.trim(c.last_status)) == status.strip().lower())
    return conds


@dataclass(frozen=True)
class CustomerSummary:
    """One customer as a list shows them."""

    id: uuid.UUID
    contact_key: str
    customer_name: str | None
    customer_phone: str | None
    customer_email: str | None
    last_contact_at: datetime
    last_status: str
    lead_count: int
    score: int


def search_customers(session: Session, *, profile_id: uuid.UUID, search: str | None = None,
                     status: str | None = None, limit: int = 50, offset: int = 0
                     ) -> tuple[list[CustomerSummary], int]:
    """A page of the business's customers (most recently in touch first) and the total matching."""
    c = Customer
    conds = _conditions(profile_id, search, status)
    total = session.scalar(select(func.count()).select_from(c).where(*conds)) or 0
    rows = session.execute(
        select(c.id, c.contact_key, c.customer_name, c.customer_phone, c.customer_email, c.last_contact_at,
               c.last_status, c.lead_count, c.score)
        .where(*conds).order_by(c.last_contact_at.desc(), c.contact_key).limit(limit).offset(offset)).all()
    return [CustomerSummary(*row) for row in rows], int(total)


def list_customers(session: Session, *, profile_id: uuid.UUID, search: str | None = None, limit: int = 50,
                   offset: int = 0) -> tuple[pd.DataFrame, int]:
    """The dashboard's page of customers (:func:`search_customers`) as a table, with each one's most
    recent service (``service``: the newest lead that names one)."""
    page, total = search_customers(session, profile_id=profile_id, search=search, limit=limit, offset=offset)
    services: dict[str, str] = {}
    if page:
        lead = Lead
        newest = (select(lead.contact_key, lead.service_type,
                         func.row_number().over(partition_by=lead.contact_key,
                                                order_by=(lead.created_at.desc(), lead.id.desc())).label("rn"))
                  .where(lead.profile_id == profile_id, lead.contact_key.in_([p.contact_key for p in page]),
                         lead.service_type.is_not(None)).subquery("s"))
        services = {key: service for key, service in session.execute(
            select(newest.c.contact_key, newest.c.service_type).where(newest.c.rn == 1))}
    frame = pd.DataFrame.from_records(
        [(p.contact_key, p.customer_name, p.customer_phone, p.customer_email, p.last_contact_at, p.lead_count,
          p.last_status, services.get(p.contact_key), str(p.id), p.score) for p in page],
        columns=CUSTOMER_COLUMNS)
    if not frame.empty:
        frame["last_contact"] = pd.to_datetime(frame["last_contact"], utc=True)
        frame["leads"] = frame["leads"].astype(int)
        frame["score"] = frame["score"].astype(int)
    return frame, int(total)


def service_types(session: Session, *, profile_id: uuid.UUID) -> list[str]:
    """The service types the profile's leads mention, alphabetically."""
    return list(session.scalars(select(Lead.service_type).where(
        Lead.profile_id == profile_id, Lead.service_type.is_not(None)).distinct().order_by(Lead.service_type)))


@dataclass(frozen=True)
class StatusCount:
    """A lead status of the business, as it is most often spelled, with how many customers' most recent lead
    has it and how many leads have it at all."""

    status: str
    customers: int
    leads: int


def lead_statuses(session: Session, *, profile_id: uuid.UUID) -> list[StatusCount]:
    """The statuses the business's leads carry, grouped ignoring case and surrounding spaces (most
    customers first) — what criteria can match."""
    lead, c = Lead, Customer
    spellings: dict[str, list[tuple[int, str]]] = {}
    for status, n in session.execute(select(lead.status, func.count()).where(
            lead.profile_id == profile_id, _not_erased()).group_by(lead.status)):
        spellings.setdefault(status.strip().lower(), []).append((int(n), status.strip()))
    customers: dict[str, int] = {}
    for key, n in session.execute(select(func.lower(func.trim(c.last_status)), func.count()).where(
            c.profile_id == profile_id, c.contact_key.not_like(ERASED_PREFIX + "%"))
            .group_by(func.lower(func.trim(c.last_status)))):
        customers[key] = customers.get(key, 0) + int(n)
    out = []
    for key, found in spellings.items():
        best = sorted(found, key=lambda item: (-item[0], item[1]))[0][1]
        out.append(StatusCount(best, customers.get(key, 0), sum(n for n, _s in found)))
    return sorted(out, key=lambda s: (-s.customers, -s.leads, s.status.lower()))


# --- one customer ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LeadRecord:
    id: uuid.UUID
    created_at: datetime
    status: str
    service_type: str | None
    notes: str | None
    source: str
    agent_id: uuid.UUID | None
    campaign_id: uuid.UUID | None
    customer_name: str | None
    customer_phone: str | None
    customer_email: str | None


@dataclass(frozen=True)
class SentMessage:
    """One try of one step, as the attempt log recorded it before the provider was called."""

    channel: str
    at: datetime
    step: int
    subject: str | None
    body: str  # e-mail text, SMS text, or the call's opening script
    provider: str
    provider_message_id: str | None
    outcome: str | None  # accepted (the provider took it), retryable, permanent, … ; None: still in flight
    error: str | None


@dataclass(frozen=True)
class CustomerCampaign:
    campaign_id: uuid.UUID
    name: str
    recipient_id: uuid.UUID
    status: str
    enrollment: int
    converted: bool
    returned_at: datetime | None
    messages: list[SentMessage]


@dataclass(frozen=True)
class OptOutRecord:
    id: uuid.UUID
    contact: str
    channel: str
    source: str
    reason: str | None
    created_at: datetime


@dataclass(frozen=True)
class ConsentRecord:
    id: uuid.UUID
    contact: str
    channel: str
    level: str
    source: str
    proof: str | None
    captured_at: datetime
    revoked_at: datetime | None


@dataclass(frozen=True)
class CustomerDetail(CustomerSummary):
    """A customer with their leads, the campaigns that reached them (and what was sent), their opt-outs
    and their consents."""

    first_contact_at: datetime | None = None
    last_service_type: str | None = None
    service_types: list[str] = field(default_factory=list)
    timezone: str | None = None
    leads: list[LeadRecord] = field(default_factory=list)
    campaigns: list[CustomerCampaign] = field(default_factory=list)
    opt_outs: list[OptOutRecord] = field(default_factory=list)
    consents: list[ConsentRecord] = field(default_factory=list)


def customer_detail(session: Session, *, profile_id: uuid.UUID, customer_id: uuid.UUID) -> CustomerDetail:
    """Everything about one customer of the business, or :class:`NotFound` (also for another business's)."""
    customer = session.scalars(select(Customer).where(
        Customer.id == customer_id, Customer.profile_id == profile_id,
        Customer.contact_key.not_like(ERASED_PREFIX + "%"))).one_or_none()
    if customer is None:
        raise NotFound("No such customer.", field="customer_id")
    lead, r = Lead, CampaignRecipient
    leads = [LeadRecord(*row) for row in session.execute(
        select(lead.id, lead.created_at, lead.status, lead.service_type, lead.notes, lead.source, lead.agent_id,
               lead.campaign_id, lead.customer_name, lead.customer_phone, lead.customer_email)
        .where(lead.profile_id == profile_id, lead.contact_key == customer.contact_key)
        .order_by(lead.created_at.desc(), lead.id.desc()))]
    recipients = session.execute(
        select(r.id, r.campaign_id, Campaign.name, r.status, r.enrollment, r.converted, r.returned_at)
        .join(Campaign, Campaign.id == r.campaign_id)
        .where(r.profile_id == profile_id, or_(r.customer_id == customer.id, r.contact_key == customer.contact_key))
        .order_by(r.created_at, r.id)).all()
    messages: dict[uuid.UUID, list[SentMessage]] = {}
    if recipients:
        a = OutreachAttempt
        for attempt in session.scalars(select(a).where(a.profile_id == profile_id,
                                                       a.recipient_id.in_([row[0] for row in recipients]))
                                       .order_by(a.started_at, a.attempt_no)):
            message = message_from_detail(attempt.detail or {})
            if message is None:
                continue
            messages.setdefault(attempt.recipient_id, []).append(SentMessage(
                channel=attempt.channel, at=attempt.started_at, step=attempt.step, subject=message.subject,
                body=message.text, provider=attempt.provider, provider_message_id=attempt.provider_message_id,
                outcome=attempt.outcome, error=attempt.error_message))
    campaigns = [CustomerCampaign(cid, name, rid, status, int(enrollment), bool(converted), returned_at,
                                  messages.get(rid, []))
                 for rid, cid, name, status, enrollment, converted, returned_at in recipients]
    contacts = {customer.contact_key} | {x for row in leads for x in (row.customer_phone, row.customer_email) if x}
    opt_outs = [OptOutRecord(*row) for row in session.execute(
        select(OptOut.id, OptOut.contact, OptOut.channel, OptOut.source, OptOut.reason, OptOut.created_at)
        .where(OptOut.profile_id == profile_id, OptOut.contact.in_(sorted(contacts)))
        .order_by(OptOut.created_at, OptOut.id))]
    k = Consent
    consents = [ConsentRecord(*row) for row in session.execute(
        select(k.id, k.contact, k.channel, k.level, k.source, k.proof, k.captured_at, k.revoked_at)
        .where(k.profile_id == profile_id, k.contact.in_(sorted(contacts))).order_by(k.captured_at, k.id))]
    return CustomerDetail(
        id=customer.id, contact_key=customer.contact_key, customer_name=customer.customer_name,
        customer_phone=customer.customer_phone, customer_email=customer.customer_email,
        last_contact_at=customer.last_contact_at, last_status=customer.last_status, lead_count=customer.lead_count,
        score=customer.score, first_contact_at=customer.first_contact_at,
        last_service_type=customer.last_service_type, service_types=list(customer.service_types or []),
        timezone=customer.timezone, leads=leads, campaigns=campaigns, opt_outs=opt_outs, consents=consents)


def find_customer_key(session: Session, *, profile_id: uuid.UUID, contact: str, region: str = "US") -> str:
    """The ``contact_key`` of the customer a phone or e-mail belongs to, or :class:`NotFound`."""
    try:
        normalized = normalize_contact(contact, region)
    except ContactError as exc:
        raise Invalid(str(exc), field="contact") from None
    key = session.scalar(select(Lead.contact_key).where(
        Lead.profile_id == profile_id, _not_erased(),
        or_(Lead.contact_key == normalized, Lead.customer_phone == normalized, Lead.customer_email == normalized),
    ).limit(1))
    if key is None:
        raise NotFound(f"No customer with {contact} in this business.", field="contact")
    return key


# --- erasing --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ErasureReport:
    """What erasing a customer changed."""

    customers: int
    leads: int
    recipients: int
    events: int
    attempts: int

    def sentence(self) -> str:
        return (f"Erased the personal details from {self.leads} lead{'s' if self.leads != 1 else ''} and "
                f"{self.recipients} campaign recipient{'s' if self.recipients != 1 else ''}. Counts and "
                "results stay, without anything that identifies the person.")


def _rows(result: Any) -> int:
    """Rows an UPDATE changed."""
    return int(cast(CursorResult[Any], result).rowcount or 0)


def erase_customer(session: Session, *, profile_id: uuid.UUID, contact_key: str,
                   now: datetime | None = None) -> ErasureReport:
    """Remove a customer's personal data from their leads, customer row and campaign recipients.

    Leads of the profile that share a phone or e-mail with the customer are
    the same person and are erased too.  The caller's transaction commits.
    """
    now = now or utcnow()
    lead, rec = Lead, CampaignRecipient
    if not contact_key or contact_key.startswith(ERASED_PREFIX):
        raise NotFound("No such customer.", field="contact_key")
    own = select(lead.customer_phone, lead.customer_email).where(
        lead.profile_id == profile_id, lead.contact_key == contact_key)
    contacts = {contact_key}
    for phone, email in session.execute(own):
        contacts.update(c for c in (phone, email) if c)
    keys = set(session.scalars(select(lead.contact_key).where(
        lead.profile_id == profile_id, _not_erased(),
        or_(lead.contact_key.in_(contacts), lead.customer_phone.in_(contacts), lead.customer_email.in_(contacts)),
    ).distinct()))
    keys |= set(session.scalars(select(rec.contact_key).where(
        rec.profile_id == profile_id, rec.contact_key.not_like(ERASED_PREFIX + "%"),
        or_(rec.contact_key.in_(contacts), rec.customer_phone.in_(contacts), rec.customer_email.in_(contacts)),
    ).distinct()))
    if not keys:
        raise NotFound("No such customer in this business.", field="contact_key")

    leads = recipients = events = attempts = 0
    # one opaque key per original customer, so anonymous per-customer counts stay right
    for key in sorted(keys):
        erased = f"{ERASED_PREFIX}{uuid.uuid4()}"
        same_customer = (lead.profile_id == profile_id, lead.contact_key == key)
        leads += _rows(session.execute(update(lead).where(*same_customer).values(
            contact_key=erased, customer_name=None, customer_phone=None, customer_email=None, notes=None,
            call_summary=None, call_transcript=None, recording_url=None, structured_data={}, extra={},
            fingerprint=None, updated_at=now,
        ).execution_options(synchronize_session=False)))
        anonymize(session, profile_id=profile_id, contact_key=key, erased_key=erased, now=now)
        recipient_ids = select(rec.id).where(rec.profile_id == profile_id, rec.contact_key == key)
        events += _rows(session.execute(update(OutreachEvent).where(
            OutreachEvent.profile_id == profile_id, OutreachEvent.recipient_id.in_(recipient_ids),
        ).values(payload={}, error_message=None).execution_options(synchronize_session=False)))
        attempts += _rows(session.execute(update(OutreachAttempt).where(
            OutreachAttempt.profile_id == profile_id, OutreachAttempt.recipient_id.in_(recipient_ids),
        ).values(detail={}, error_message=None).execution_options(synchronize_session=False)))
        recipients += _rows(session.execute(update(rec).where(rec.profile_id == profile_id, rec.contact_key == key)
                                            .values(contact_key=erased, customer_name=None, customer_phone=None,
                                                    customer_email=None, response_data={}, error_message=None,
                                                    updated_at=now)
                                            .execution_options(synchronize_session=False)))
    session.expire_all()
    return ErasureReport(customers=len(keys), leads=leads, recipients=recipients, events=events, attempts=attempts)

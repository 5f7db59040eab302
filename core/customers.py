"""Customers: the list the dashboard shows, and erasing a customer's personal data.

A customer is the set of a profile's leads sharing a ``contact_key`` (the
normalized phone, else the e-mail).  The list is grouped and paged in SQL.

Erasing keeps the anonymous facts (how many leads, statuses, dates, campaign
outcomes and counters) and removes everything that identifies the person:
names, phones, e-mails, notes, call summaries and transcripts, recordings,
provider payloads.  The customer's ``contact_key`` becomes an opaque
``erased:<uuid>`` so counts still group correctly, and so nothing can select
or match them again.  Opt-outs are kept on purpose: they are what guarantees
the person is never contacted again if their details come back in an import.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import pandas as pd
from sqlalchemy import ColumnElement, CursorResult, func, or_, select, update
from sqlalchemy.orm import Session

from core.contacts import ContactError, normalize_contact
from core.db import utcnow
from core.errors import Invalid, NotFound
from core.models import CampaignRecipient, Lead, OutreachAttempt, OutreachEvent

ERASED_PREFIX = "erased:"
CUSTOMER_COLUMNS = ["contact_key", "name", "phone", "email", "last_contact", "leads", "last_status", "service"]


def _like(text: str) -> str:
    escaped = text.strip().lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _not_erased() -> ColumnElement[bool]:
    return Lead.contact_key.not_like(ERASED_PREFIX + "%")


def list_customers(session: Session, *, profile_id: uuid.UUID, search: str | None = None, limit: int = 50,
                   offset: int = 0) -> tuple[pd.DataFrame, int]:
    """A page of the profile's customers (most recently in touch first) and the total matching.

    ``search`` matches any of a customer's leads by name, phone or e-mail.
    Grouping, counting and paging happen in SQL; per customer the newest known
    name, e-mail and service are looked up for the page's rows only.
    """
    lead = Lead
    conds: list[ColumnElement[bool]] = [lead.profile_id == profile_id, _not_erased()]
    if search and search.strip():
        pattern = _like(search)
        digits = "".join(ch for ch in search if ch.isdigit())
        matches = [func.lower(lead.customer_name).like(pattern, escape="\\"),
                   lead.customer_email.like(pattern, escape="\\"),
                   lead.customer_phone.like(pattern, escape="\\")]
        if len(digits) >= 3:
            matches.append(lead.customer_phone.like(f"%{digits}%"))
        keys = select(lead.contact_key).where(lead.profile_id == profile_id, or_(*matches))
        conds.append(lead.contact_key.in_(keys))
    grouped = (select(lead.contact_key, func.max(lead.created_at).label("last_contact"),
                      func.count().label("leads"))
               .where(*conds).group_by(lead.contact_key))
    total = session.scalar(select(func.count()).select_from(grouped.subquery())) or 0
    page = grouped.subquery("page")
    page_rows = select(page).order_by(page.c.last_contact.desc(), page.c.contact_key).limit(limit).offset(offset) \
        .subquery("p")

    def newest(column: Any, *, non_null: bool = True) -> Any:
        cond = [lead.profile_id == profile_id, lead.contact_key == page_rows.c.contact_key]
        if non_null:
            cond.append(column.is_not(None))
        return (select(column).where(*cond).order_by(lead.created_at.desc(), lead.id.desc()).limit(1)
                .scalar_subquery())

    rows = session.execute(select(
        page_rows.c.contact_key,
        newest(lead.customer_name).label("name"),
        newest(lead.customer_phone).label("phone"),
        newest(lead.customer_email).label("email"),
        page_rows.c.last_contact,
        page_rows.c.leads,
        newest(lead.status, non_null=False).label("last_status"),
        newest(lead.service_type).label("service"),
    ).order_by(page_rows.c.last_contact.desc(), page_rows.c.contact_key)).all()
    frame = pd.DataFrame.from_records([tuple(r) for r in rows], columns=CUSTOMER_COLUMNS)
    if not frame.empty:
        frame["last_contact"] = pd.to_datetime(frame["last_contact"], utc=True)
        frame["leads"] = frame["leads"].astype(int)
    return frame, int(total)


def service_types(session: Session, *, profile_id: uuid.UUID) -> list[str]:
    """The service types the profile's leads mention, alphabetically."""
    return list(session.scalars(select(Lead.service_type).where(
        Lead.profile_id == profile_id, Lead.service_type.is_not(None)).distinct().order_by(Lead.service_type)))


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
    """Remove a customer's personal data from their leads and campaign recipients.

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

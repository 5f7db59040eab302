"""Attribution: a customer who comes back on their own after a campaign reached them.

A new lead (an agent's call, a lead added by hand, a row of an imported file)
from a customer a campaign contacted (``sent_at``) at most
``campaign.attribution_days`` days (default 14) before the lead counts as a
conversion of that campaign: a "converted" event goes through
:mod:`core.events`, which marks the recipient converted and links the lead to
the campaign (it creates no second lead — the lead is the conversion).

Rules:

- last touch: when several campaigns reached the customer within their
  windows, the most recent contact before the lead gets it;
- a recipient converts once: one already converted (by its call, an SMS
  reply, an earlier lead) is not counted again, and a campaign's own
  conversion leads (source ``campaign``) and leads already linked to a campaign
  are not new leads;
- the customer is matched by their customer key (phone, else e-mail), or by
  e-mail when the campaign knew them by e-mail only.

Matching is one SQL statement over any number of new leads (an import of
thousands of rows included); only the matches, which are about to change, are
looped over.

**Returns** (:func:`mark_returned`, for lift): every recipient of the customer —
contacted or kept back in the holdout group — whose campaign started at most
``attribution_days`` before the new lead is marked ``returned_at`` (the lead's
time), once, and announced as ``customer.returned``.  The window opens when the
campaign started, or when the recipient was enrolled if that was later (an
always-on campaign enrols people long after its start).  Leads campaigns record
themselves (source ``campaign``) are not returns.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, bindparam, case, exists, func, literal_column, or_, select, update
from sqlalchemy.orm import Session

from core import outbox
from core.db import in_values, utcnow
from core.events import apply_event, record_event
from core.models import Campaign, CampaignRecipient, Lead, OutreachEvent

PROVIDER = "attribution"


def _within_window(session: Session, lead_time: Any, sent_at: Any, days: Any) -> ColumnElement[bool]:
    """SQL: ``sent_at <= lead_time <= sent_at + days`` (interval arithmetic is spelled per dialect)."""
    if session.get_bind().dialect.name == "postgresql":
        upper = sent_at + func.make_interval(0, 0, 0, days)
        return and_(sent_at <= lead_time, lead_time <= upper)
    # SQLite keeps UTC times as ISO text: julianday() turns them into day numbers
    return and_(sent_at <= lead_time, func.julianday(lead_time) - func.julianday(sent_at) <= days)


def attribute_leads(session: Session, *, profile_id: uuid.UUID, lead_ids: Sequence[uuid.UUID] | Select[Any],
                    now: datetime | None = None) -> int:
    """Count the given new leads of ``profile_id`` as conversions of the campaign that last reached
    their customer within its attribution window; returns how many recipients converted.

    ``lead_ids`` is a list of ids or a ``SELECT`` of lead ids (an import's new rows)."""
    now = now or utcnow()
    r, c, lead = CampaignRecipient, Campaign, Lead
    # nothing to do for a business that never reached anybody (the common case of a first import)
    if not session.scalar(select(exists().where(r.profile_id == profile_id, r.sent_at.is_not(None)))):
        return 0
    chosen = lead.id.in_(lead_ids) if isinstance(lead_ids, Select) else in_values(session, lead.id, list(lead_ids))
    same_customer = or_(r.contact_key == lead.contact_key,
                        and_(lead.customer_email.is_not(None), r.customer_email == lead.customer_email))
    touches = (
        select(lead.id.label("lead_id"), lead.created_at.label("lead_at"), r.id.label("recipient_id"),
               r.converted.label("converted"),
               func.row_number().over(partition_by=lead.id, order_by=(r.sent_at.desc(), r.id)).label("touch"))
        .select_from(lead)
        .join(r, and_(r.profile_id == lead.profile_id, same_customer))
        .join(c, c.id == r.campaign_id)
        .where(chosen, lead.profile_id == profile_id, lead.source != "campaign", lead.campaign_id.is_(None),
               r.sent_at.is_not(None), _within_window(session, lead.created_at, r.sent_at, c.attribution_days))
        .subquery("touches"))
    # the last touch of each lead; the first such lead of each recipient that has not converted yet
    firsts = (
        select(touches.c.lead_id, touches.c.lead_at, touches.c.recipient_id,
               func.row_number().over(partition_by=touches.c.recipient_id,
                                      order_by=(touches.c.lead_at, touches.c.lead_id)).label("nth"))
        .where(touches.c.touch == 1, touches.c.converted.is_(False))
        .subquery("firsts"))
    matches = session.execute(select(firsts.c.lead_id, firsts.c.lead_at, firsts.c.recipient_id)
                              .where(firsts.c.nth == literal_column("1"))).all()
    converted = 0
    for lead_id, lead_at, recipient_id in matches:
        event_id = f"lead:{recipient_id}"
        if not record_event(session, provider=PROVIDER, provider_event_id=event_id, type="converted",
                            occurred_at=min(lead_at, now), recipient_id=recipient_id, received_at=now,
                            payload={"lead_id": str(lead_id), "source": "new lead within the attribution window"}):
            continue
        event = session.scalars(select(OutreachEvent).where(OutreachEvent.provider == PROVIDER,
                                                            OutreachEvent.provider_event_id == event_id)).one()
        apply_event(session, event, now=now)
        converted += 1
    return converted


def mark_returned(session: Session, *, profile_id: uuid.UUID, lead_ids: Sequence[uuid.UUID] | Select[Any],
                  now: datetime | None = None) -> int:
    """Mark the recipients whose customer came back with one of these new leads within the window of
    their campaign's start (contacted ones and the holdout group alike); announce each once as
    ``customer.returned``.  Returns how many recipients were marked."""
    now = now or utcnow()
    r, c, lead = CampaignRecipient, Campaign, Lead
    if not session.scalar(select(exists().where(
            r.profile_id == profile_id, r.returned_at.is_(None),
            or_(r.sent_at.is_not(None), r.status == "holdout")))):
        return 0
    chosen = lead.id.in_(lead_ids) if isinstance(lead_ids, Select) else in_values(session, lead.id, list(lead_ids))
    same_customer = or_(r.contact_key == lead.contact_key,
                        and_(lead.customer_email.is_not(None), r.customer_email == lead.customer_email))
    opens = case((c.started_at > r.created_at, c.started_at), else_=r.created_at)
    returns = (
        select(r.id.label("recipient_id"), r.campaign_id, r.customer_id, r.status, lead.id.label("lead_id"),
               lead.created_at.label("lead_at"),
               func.row_number().over(partition_by=r.id, order_by=(lead.created_at, lead.id)).label("nth"))
        .select_from(lead)
        .join(r, and_(r.profile_id == lead.profile_id, same_customer))
        .join(c, c.id == r.campaign_id)
        .where(chosen, lead.profile_id == profile_id, lead.source != "campaign", r.returned_at.is_(None),
               or_(r.sent_at.is_not(None), r.status == "holdout"), c.started_at.is_not(None),
               _within_window(session, lead.created_at, opens, c.attribution_days))
        .subquery("returns"))
    found = session.execute(select(returns).where(returns.c.nth == literal_column("1"))).mappings().all()
    if not found:
        return 0
    table = CampaignRecipient.__table__
    session.execute(update(table).where(table.c.id == bindparam("rid"), table.c.returned_at.is_(None))
                    .values(returned_at=bindparam("at")),
                    [{"rid": row["recipient_id"], "at": row["lead_at"]} for row in found])
    outbox.emit_many(session, [outbox.Event(profile_id, "customer.returned", {
        "recipient_id": str(row["recipient_id"]), "campaign_id": str(row["campaign_id"]),
        "customer_id": str(row["customer_id"]) if row["customer_id"] else None, "lead_id": str(row["lead_id"]),
        "returned_at": row["lead_at"].isoformat(), "holdout": row["status"] == "holdout"}) for row in found],
        now=now)
    marked = {row["recipient_id"] for row in found}
    for obj in list(session.identity_map.values()):
        if isinstance(obj, CampaignRecipient) and obj.id in marked:
            session.expire(obj, ["returned_at"])
    return len(found)

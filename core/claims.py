"""Claiming recipients: the work queue's leases.

A scheduler process takes a batch of due recipients with one statement::

    UPDATE campaign_recipients SET claimed_by = :worker, claim_expires_at = :now + lease,
           status = CASE WHEN status = 'pending' THEN 'queued' ELSE status END
    WHERE id IN (SELECT id FROM campaign_recipients
                 WHERE campaign_id = :c AND next_attempt_at <= :now
                   AND (claim_expires_at IS NULL OR claim_expires_at < :now)
                 ORDER BY next_attempt_at LIMIT :n FOR UPDATE SKIP LOCKED)
    RETURNING …

On PostgreSQL the inner ``SELECT`` is a materialized CTE, so ``SKIP LOCKED``
is evaluated once and any number of processes take disjoint batches.  SQLite
has no row locks (the clause is dropped) but its writers are serialized by
``BEGIN IMMEDIATE``; one scheduler process is the supported mode there.

A lease that expires is free for anybody: a process that died leaves its
recipients to the others once ``SCHEDULER_LEASE_SECONDS`` have passed.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, Table, case, exists, literal, null, or_, select, update
from sqlalchemy.orm import Session

from core.db import in_values
from core.models import CampaignRecipient, OutreachAttempt


@dataclass(frozen=True)
class Claimed:
    """A claimed recipient: what the dispatcher needs to work on it."""

    id: uuid.UUID
    campaign_id: uuid.UUID
    profile_id: uuid.UUID
    lead_id: uuid.UUID | None
    customer_id: uuid.UUID | None
    contact_key: str
    customer_name: str | None
    customer_phone: str | None
    customer_email: str | None
    variant: str | None
    ab_group: str | None
    status: str
    step: int
    attempts: int
    next_attempt_at: datetime | None
    planned_at: datetime | None
    sent_at: datetime | None
    answered_at: datetime | None
    responded_at: datetime | None
    last_call_outcome: str | None


_r = cast(Table, CampaignRecipient.__table__)
_COLUMNS = [_r.c[name] for name in Claimed.__dataclass_fields__]


def _claim(session: Session, due: object, *, worker: str, now: datetime, lease: timedelta) -> list[Claimed]:
    values = {
        "claimed_by": worker, "claim_expires_at": now + lease, "updated_at": now,
        "status": case((_r.c.status == "pending", "queued"), else_=_r.c.status),
    }
    if session.get_bind().dialect.name == "postgresql":
        picked = due.cte("picked").prefix_with("MATERIALIZED")  # type: ignore[attr-defined]
        stmt = update(_r).where(_r.c.id == picked.c.id).values(**values).returning(*_COLUMNS)
    else:
        stmt = update(_r).where(_r.c.id.in_(due)).values(**values).returning(*_COLUMNS)  # type: ignore[arg-type]
    rows = [Claimed(**row._mapping) for row in session.execute(stmt)]
    far = datetime.max.replace(tzinfo=now.tzinfo)
    rows.sort(key=lambda c: (c.next_attempt_at or far, str(c.id)))
    return rows


def claim_due(session: Session, *, campaign_id: uuid.UUID, worker: str, now: datetime, lease: timedelta,
              limit: int) -> list[Claimed]:
    """Lease up to ``limit`` of the campaign's due recipients to ``worker`` (oldest due first)."""
    due = (select(_r.c.id)
           .where(_r.c.campaign_id == campaign_id, _r.c.next_attempt_at <= now,
                  or_(_r.c.claim_expires_at.is_(None), _r.c.claim_expires_at < now))
           .order_by(_r.c.next_attempt_at).limit(limit).with_for_update(skip_locked=True))
    return _claim(session, due, worker=worker, now=now, lease=lease)


def claim_unsettled(session: Session, *, worker: str, now: datetime, lease: timedelta, limit: int,
                    campaign_id: uuid.UUID | None = None) -> list[Claimed]:
    """Lease recipients with an attempt whose outcome was never recorded and whose
    lease has expired (their process died mid-send), of any campaign."""
    a = OutreachAttempt
    open_attempt = exists().where(a.recipient_id == _r.c.id, a.outcome.is_(None), a.completed_at.is_(None))
    # a try the provider could not settle yet is asked again when its back-off says (next_attempt_at)
    conds = [open_attempt, or_(_r.c.claim_expires_at.is_(None), _r.c.claim_expires_at < now),
             or_(_r.c.next_attempt_at.is_(None), _r.c.next_attempt_at <= now)]
    if campaign_id is not None:
        conds.append(_r.c.campaign_id == campaign_id)
    due = (select(_r.c.id).where(*conds).order_by(_r.c.next_attempt_at).limit(limit)
           .with_for_update(skip_locked=True))
    return _claim(session, due, worker=worker, now=now, lease=lease)


def release(session: Session, ids: Sequence[uuid.UUID], *, worker: str, now: datetime,
            next_attempt_at: datetime | None = None) -> int:
    """Give back recipients untouched (optionally due later); only those ``worker`` still holds."""
    if not ids:
        return 0
    values: dict[str, object] = {"claimed_by": None, "claim_expires_at": None, "updated_at": now}
    if next_attempt_at is not None:
        values["next_attempt_at"] = case((_r.c.next_attempt_at.is_(None), null()),
                                         else_=literal(next_attempt_at, _r.c.next_attempt_at.type))
    result = session.execute(update(_r).where(in_values(session, _r.c.id, ids), _r.c.claimed_by == worker)
                             .values(**values))
    return int(cast(CursorResult[Any], result).rowcount)


def release_worker(session: Session, *, worker: str, now: datetime) -> int:
    """Give back everything ``worker`` still holds (a clean shutdown)."""
    result = session.execute(update(_r).where(_r.c.claimed_by == worker)
                             .values(claimed_by=None, claim_expires_at=None, updated_at=now))
    return int(cast(CursorResult[Any], result).rowcount)

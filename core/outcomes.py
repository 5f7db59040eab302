"""What a dispatch wave records: recipients' outcomes, attempts' outcomes, "sent"
events, opt-outs and provider back-offs, all in one transaction per batch.

A recipient is changed only while the worker still holds its lease; an
attempt's outcome is recorded whoever holds its recipient now, because it is
what happened.  Status and due time are SQL expressions over the row as it is
when the update runs, so an event applied in between (an opt-out, say) is never
undone, and a status only moves forward.
"""

from __future__ import annotations

import os
import random
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any, cast

from sqlalchemy import Float, Integer, String, Table, Text, Uuid, case, func, null, or_
from sqlalchemy.orm import Session

from core import outbox, ratelimit
from core.bulk import Values, insert_rows, update_rows
from core.claims import Claimed
from core.db import UTCDateTime
from core.models import CampaignRecipient, OutreachAttempt, OutreachEvent
from core.optouts import record_opt_out

# random like uuid4, without a system call per id (the dispatcher makes thousands a second)
_ids = random.Random(os.urandom(32))
os.register_at_fork(after_in_child=lambda: _ids.seed(os.urandom(32)))


def new_id() -> uuid.UUID:
    """A fresh random id for an attempt or an event."""
    return uuid.UUID(bytes=_ids.randbytes(16), version=4)


_r = cast(Table, CampaignRecipient.__table__)
_a = cast(Table, OutreachAttempt.__table__)
_NOT_REACHED = ("pending", "queued")


def _not_reached() -> Any:
    # spelled out instead of IN (…): an expanding IN cannot be part of an executemany statement
    return or_(*[_r.c.status == status for status in _NOT_REACHED])


_RECIPIENT_FIELDS: dict[str, Any] = {
    "rid": Uuid(), "at": UTCDateTime(), "step": Integer(), "attempts": Integer(), "next": UTCDateTime(),
    "error": Text(), "channel": String(8), "pmid": String(100), "wait": Text()}
_ATTEMPT_FIELDS: dict[str, Any] = {
    "aid": Uuid(), "outcome": String(16), "pmid": String(100), "code": String(100), "error": Text(),
    "at": UTCDateTime(), "done": UTCDateTime(), "cost": Float()}


def recipient_values(kind: str, v: Values) -> dict[str, Any]:
    """What one kind of outcome sets on a recipient.

    Status and due time are expressions over the row as it is when the update
    runs, so an event applied meanwhile (say, an opt-out) is never undone."""
    next_at = case((_r.c.status == "opted_out", null()), else_=v.next)
    values: dict[str, Any] = {"claimed_by": None, "claim_expires_at": None, "updated_at": v.at}
    if kind != "release":  # a put-off try says why it waits; anything else that moves it on clears that
        values["waiting_reason"] = v.wait if kind == "move" else None
    if kind == "accept":
        values.update(status=case((_not_reached(), "sent"), else_=_r.c.status),
                      sent_at=func.coalesce(_r.c.sent_at, v.at), last_channel=v.channel,
                      provider_message_id=v.pmid, step=v.step, attempts=v.attempts, next_attempt_at=next_at)
    elif kind == "move":
        values.update(step=v.step, attempts=v.attempts, next_attempt_at=next_at,
                      error_message=func.coalesce(v.error, _r.c.error_message))
    elif kind == "fail":
        values.update(status=case((_not_reached(), "failed"), else_=_r.c.status), step=v.step,
                      attempts=v.attempts, next_attempt_at=None, error_message=v.error)
    elif kind == "optout":
        values.update(status="opted_out", attempts=v.attempts, next_attempt_at=None, error_message=v.error)
    elif kind == "release":
        values.update(attempts=v.attempts)
    else:
        raise ValueError(kind)
    return values


def attempt_values(v: Values) -> dict[str, Any]:
    """What an outcome sets on an attempt (an error already recorded is kept when none is given; an end
    already recorded — a provider's report that overtook this write — is kept too)."""
    return {"outcome": v.outcome, "provider_message_id": func.coalesce(v.pmid, _a.c.provider_message_id),
            "error_code": func.coalesce(v.code, _a.c.error_code),
            "error_message": func.coalesce(v.error, _a.c.error_message), "finished_at": v.at,
            "completed_at": func.coalesce(_a.c.completed_at, v.done), "cost": func.coalesce(v.cost, _a.c.cost)}


@dataclass
class Writes:
    """Everything one batch records, written in one transaction."""

    worker: str
    now: datetime
    recipients: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    attempts: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    opt_outs: list[dict[str, Any]] = field(default_factory=list)
    blocks: dict[str, tuple[float, str]] = field(default_factory=dict)
    plans: list[dict[str, Any]] = field(default_factory=list)
    announcements: list[outbox.Event] = field(default_factory=list)
    pause: tuple[uuid.UUID, uuid.UUID, str] | None = None

    def recipient(self, kind: str, rid: uuid.UUID, *, step: int = 0, attempts: int = 0,
                  next_at: datetime | None = None, error: str | None = None, channel: str | None = None,
                  pmid: str | None = None, at: datetime | None = None, wait: str | None = None) -> None:
        """One recipient's outcome; ``at`` is when it happened (default: when the batch is recorded); ``wait``:
        why a ``move`` puts the try off until ``next_at``."""
        self.recipients.setdefault(kind, []).append({
            "rid": rid, "at": at or self.now, "step": step, "attempts": attempts, "next": next_at,
            "error": error[:2000] if error else None, "channel": channel, "pmid": pmid,
            "wait": wait[:2000] if wait else None})

    def attempt(self, aid: uuid.UUID, outcome: str | None, *, pmid: str | None = None, code: str | None = None,
                error: str | None = None, still_open: bool = False, cost: float | None = None) -> None:
        """An attempt's outcome (``still_open``: an accepted call under way, or a try whose fate the
        provider must still confirm; ``cost``: what it cost, when known now)."""
        self.attempts.append({"aid": aid, "outcome": outcome, "pmid": pmid, "code": code,
                              "error": error[:2000] if error else None, "at": self.now,
                              "done": None if still_open else self.now, "cost": cost})

    def plan(self, rid: uuid.UUID, at: datetime) -> None:
        """The recipient's first step is planned for ``at`` (best time to reach): recorded once."""
        self.plans.append({"rid": rid, "at": at})

    def sent_event(self, row: Claimed, *, step: int, channel: str, provider: str, attempt_id: uuid.UUID,
                   attempt_no: int, pmid: str, at: datetime) -> None:
        self.events.append({
            "id": new_id(), "profile_id": row.profile_id, "campaign_id": row.campaign_id,
            "recipient_id": row.id, "step": step, "channel": channel, "provider": provider,
            "provider_event_id": f"sent:{attempt_id}", "provider_message_id": pmid, "type": "sent",
            "payload": {"attempt": attempt_no}, "occurred_at": at, "received_at": at, "processed_at": at,
            "error_message": None})
        self.announcements.append(outbox.Event(row.profile_id, "recipient.sent", outbox.recipient_data(
            row, channel=channel, step=step, provider=provider, at=at.isoformat())))

    def empty(self) -> bool:
        return not (self.recipients or self.attempts or self.events or self.opt_outs or self.blocks or self.pause
                    or self.plans)

    def flush(self, session: Session) -> None:
        """Write everything.  A recipient is only changed while this worker still holds it;
        an attempt's outcome is recorded whoever holds its recipient now (it is the truth)."""
        def still_ours(v: Values) -> list[Any]:
            return [_r.c.claimed_by == self.worker]

        def not_recorded(v: Values) -> list[Any]:
            return [_a.c.outcome.is_(None)]

        for kind, rows in self.recipients.items():
            update_rows(session, _r, rows, types=_RECIPIENT_FIELDS, key="rid",
                        values=partial(recipient_values, kind), where=still_ours)
        update_rows(session, _a, self.attempts, types=_ATTEMPT_FIELDS, key="aid", values=attempt_values,
                    where=not_recorded)
        insert_rows(session, cast(Table, OutreachEvent.__table__), self.events,
                    conflict=["provider", "provider_event_id"])
        for item in self.opt_outs:
            record_opt_out(session, **item)
        for key, (until, reason) in self.blocks.items():
            ratelimit.block(session, key, until=until, reason=reason)
        update_rows(session, _r, self.plans, types={"rid": Uuid(), "at": UTCDateTime()}, key="rid",
                    values=lambda v: {"planned_at": func.coalesce(_r.c.planned_at, v.at)})
        outbox.emit_many(session, self.announcements, now=self.now)

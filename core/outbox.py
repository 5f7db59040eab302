"""The event outbox: announcements for other systems, written with the change they announce.

:func:`emit` (and :func:`emit_many` for a batch) is called inside the transaction
that changes the state — a recipient sent, responded, converted or opted out; a
campaign started, paused or completed; a customer who came back — and writes one
``webhook_events`` row plus one ``webhook_deliveries`` row per endpoint of the
business subscribed to that type.  Nothing is written for a business without
endpoints, so the outbox costs nothing until someone listens.  Delivery happens
after commit, at least once, with a stable event id (:mod:`core.webhook_delivery`).

Payload (Standard Webhooks): ``{"id", "type", "created_at", "data"}``; ``data``
carries ids and the facts of the change, never more personal data than the
business already has about its own customer.  An endpoint subscribed to ``"*"``
receives every type.  :func:`emit_to` writes an event for one endpoint only (the
*Send test event* of Settings and the API, whose ``data`` says ``"test": true``).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, select
from sqlalchemy.orm import Session

from core.bulk import insert_rows
from core.db import utcnow
from core.errors import NotFound
from core.models import WEBHOOK_EVENT_TYPES, WebhookDelivery, WebhookEndpoint, WebhookEvent

ALL_EVENTS = "*"  # an endpoint's ``events`` entry meaning every type, also those added later

_events = cast(Table, WebhookEvent.__table__)
_deliveries = cast(Table, WebhookDelivery.__table__)


@dataclass(frozen=True)
class Event:
    """One announcement: its type and what it says."""

    profile_id: uuid.UUID
    type: str
    data: Mapping[str, Any]


def event_id_text(event_id: uuid.UUID) -> str:
    """The ``webhook-id`` of an event as receivers see it (``msg_…``), the same on every delivery."""
    return f"msg_{event_id.hex}"


def payload(event_id: uuid.UUID, type: str, created_at: datetime, data: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON body delivered for an event."""
    return {"id": event_id_text(event_id), "type": type,
            "created_at": created_at.isoformat().replace("+00:00", "Z"), "data": dict(data)}


def _subscribers(session: Session, profile_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, list[tuple[uuid.UUID,
                                                                                                    set[str]]]]:
    wanted = sorted(set(profile_ids))
    if not wanted:
        return {}
    found: dict[uuid.UUID, list[tuple[uuid.UUID, set[str]]]] = {}
    for endpoint_id, profile_id, events in session.execute(
            select(WebhookEndpoint.id, WebhookEndpoint.profile_id, WebhookEndpoint.events)
            .where(WebhookEndpoint.profile_id.in_(wanted), WebhookEndpoint.disabled_at.is_(None))):
        found.setdefault(profile_id, []).append((endpoint_id, set(events or [])))
    return found


def emit_many(session: Session, events: Sequence[Event], *, now: datetime | None = None) -> list[uuid.UUID]:
    """Write ``events`` to the outbox in the caller's transaction; returns the ids of those that some
    endpoint listens to (the others are not stored: nobody would receive them)."""
    for event in events:
        if event.type not in WEBHOOK_EVENT_TYPES:
            raise ValueError(f"unknown event type {event.type!r}")
    if not events:
        return []
    subscribers = _subscribers(session, (e.profile_id for e in events))
    if not subscribers:
        return []
    now = now or utcnow()
    event_rows: list[dict[str, Any]] = []
    delivery_rows: list[dict[str, Any]] = []
    for event in events:
        listening = [eid for eid, types in subscribers.get(event.profile_id, [])
                     if event.type in types or ALL_EVENTS in types]
        if not listening:
            continue
        event_id = uuid.uuid4()
        event_rows.append({"id": event_id, "profile_id": event.profile_id, "type": event.type,
                           "data": dict(event.data), "created_at": now})
        delivery_rows.extend({"id": uuid.uuid4(), "profile_id": event.profile_id, "endpoint_id": endpoint_id,
                              "event_id": event_id, "status": "pending", "attempts": 0, "next_attempt_at": now,
                              "created_at": now} for endpoint_id in listening)
    insert_rows(session, _events, event_rows)
    insert_rows(session, _deliveries, delivery_rows)
    return [row["id"] for row in event_rows]


def emit(session: Session, *, profile_id: uuid.UUID, type: str, data: Mapping[str, Any],
         now: datetime | None = None) -> uuid.UUID | None:
    """Write one event to the outbox in the caller's transaction (``None``: nobody listens to it)."""
    ids = emit_many(session, [Event(profile_id=profile_id, type=type, data=data)], now=now)
    return ids[0] if ids else None


def emit_to(session: Session, *, profile_id: uuid.UUID, endpoint_id: uuid.UUID, type: str, data: Mapping[str, Any],
            now: datetime | None = None) -> tuple[uuid.UUID, uuid.UUID]:
    """Write an event for one endpoint of the business, whatever it subscribes to (a test event);
    returns the event's and the delivery's ids."""
    if type not in WEBHOOK_EVENT_TYPES:
        raise ValueError(f"unknown event type {type!r}")
    owned = session.scalar(select(WebhookEndpoint.id).where(WebhookEndpoint.id == endpoint_id,
                                                            WebhookEndpoint.profile_id == profile_id))
    if owned is None:
        raise NotFound("No such webhook endpoint.", field="endpoint_id")
    now = now or utcnow()
    event_id, delivery_id = uuid.uuid4(), uuid.uuid4()
    insert_rows(session, _events, [{"id": event_id, "profile_id": profile_id, "type": type, "data": dict(data),
                                    "created_at": now}])
    insert_rows(session, _deliveries, [{"id": delivery_id, "profile_id": profile_id, "endpoint_id": endpoint_id,
                                        "event_id": event_id, "status": "pending", "attempts": 0,
                                        "next_attempt_at": now, "created_at": now}])
    return event_id, delivery_id


def recipient_data(recipient: Any, **extra: Any) -> dict[str, Any]:
    """What a ``recipient.*`` event says about its recipient (an ORM row or a claimed row)."""
    return {"recipient_id": str(recipient.id), "campaign_id": str(recipient.campaign_id),
            "customer_name": recipient.customer_name, "customer_phone": recipient.customer_phone,
            "customer_email": recipient.customer_email, **extra}

"""Tenancy probes of the events a business sends out: its webhook endpoints and their delivery log
(core.webhook_endpoints), the outbox that writes events and deliveries (core.outbox) and the test event
(core.webhook_delivery): business B's id with business A's records, as :mod:`tests.test_tenancy` runs them
(``**endpoint_probes(session, world)`` in its ``probes``).  Each probe makes A's endpoint itself, then asks
as B; the caller rolls back after it.

Nothing here contacts the network: URLs are resolved by a table (:func:`resolve`) and the test event's
sender only records that it was called (it must not be).

``world`` needs ``a`` and ``b`` (profiles), ``now`` and ``factory`` (a sessionmaker of the test database).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core import outbox, webhook_delivery, webhook_endpoints
from core.config import Settings
from core.errors import Invalid, NotFound
from core.models import WebhookDelivery, WebhookEndpoint, WebhookEvent
from core.webhook_delivery import Answer
from core.webhook_endpoints import Target

SETTINGS = Settings(_env_file=None, secret_key="tenancy-probes")  # type: ignore[call-arg]
PUBLIC = "93.184.216.34"
A_URL = f"https://{PUBLIC}/a-shop-hook"
B_URL = f"https://{PUBLIC}/b-shop-hook"
A_DATA = {"customer_name": "Ann Able", "customer_phone": "+12125550111", "customer_email": "ann@a-shop.example"}


def resolve(host: str, port: int) -> list[str]:
    """Every host is the one public address (no DNS)."""
    return [PUBLIC]


def _check(condition: bool, why: str) -> None:
    assert condition, why


def _refused(call: Callable[[], Any]) -> None:
    with pytest.raises((NotFound, Invalid)):
        call()


def endpoint_probes(s: Session, w: Any) -> dict[str, Callable[[], None]]:
    a, b = w.a.id, w.b.id

    def endpoint(profile_id: uuid.UUID, url: str = A_URL, events: list[str] | None = None) -> WebhookEndpoint:
        row, _secret = webhook_endpoints.create_endpoint(s, profile_id=profile_id, url=url, events=events or ["*"],
                                                         settings=SETTINGS, resolver=resolve, now=w.now)
        return row

    def a_endpoint() -> WebhookEndpoint:
        return endpoint(a, A_URL, ["*"])

    def a_delivery(endpoint_id: uuid.UUID) -> uuid.UUID:
        """A's event delivered to A's endpoint: the delivery's id (A's own log shows it)."""
        _check(outbox.emit(s, profile_id=a, type="recipient.sent", data=A_DATA, now=w.now) is not None,
               "A's event found no listener")
        entries, total = webhook_endpoints.list_deliveries(s, profile_id=a, endpoint_id=endpoint_id)
        _check(total == 1, "A's own log does not show A's delivery")
        return entries[0].id

    def deliveries_of(endpoint_id: uuid.UUID) -> int:
        return int(s.scalar(select(func.count()).select_from(WebhookDelivery)
                            .where(WebhookDelivery.endpoint_id == endpoint_id)) or 0)

    def rows_of(model: Any, profile_id: uuid.UUID) -> int:
        return int(s.scalar(select(func.count()).select_from(model).where(model.profile_id == profile_id)) or 0)

    def still_there(endpoint_id: uuid.UUID) -> bool:
        s.expire_all()
        return s.scalar(select(WebhookEndpoint.id).where(WebhookEndpoint.id == endpoint_id)) is not None

    # --- core.webhook_endpoints ---------------------------------------------------------------------

    def create_endpoint() -> None:
        theirs = a_endpoint()
        mine = endpoint(b, B_URL)
        _check(mine.profile_id == b, "B's endpoint was created for another business")
        _check([e.id for e in webhook_endpoints.list_endpoints(s, profile_id=a)] == [theirs.id],
               "B's endpoint shows among A's")
        _check([e.id for e in webhook_endpoints.list_endpoints(s, profile_id=b)] == [mine.id],
               "B's endpoints are not B's own")

    def get_endpoint() -> None:
        theirs = a_endpoint()
        _check(webhook_endpoints.get_endpoint(s, profile_id=a, endpoint_id=theirs.id).id == theirs.id,
               "A cannot get A's endpoint")
        _refused(lambda: webhook_endpoints.get_endpoint(s, profile_id=b, endpoint_id=theirs.id))

    def delete_endpoint() -> None:
        theirs = a_endpoint()
        delivery = a_delivery(theirs.id)
        _refused(lambda: webhook_endpoints.delete_endpoint(s, profile_id=b, endpoint_id=theirs.id))
        _check(still_there(theirs.id), "B deleted A's endpoint")
        _check(s.get(WebhookDelivery, delivery) is not None, "B's delete dropped A's deliveries")

    def list_endpoints() -> None:
        theirs = a_endpoint()
        _check(theirs.id in {e.id for e in webhook_endpoints.list_endpoints(s, profile_id=a)},
               "A's list does not show A's endpoint")
        _check(webhook_endpoints.list_endpoints(s, profile_id=b) == [], "A's endpoint shows in B's list")

    def delivery_counts() -> None:
        theirs = a_endpoint()
        a_delivery(theirs.id)
        _check(webhook_endpoints.delivery_counts(s, profile_id=a).get(theirs.id, {}).get("pending") == 1,
               "A's counts do not count A's delivery")
        _check(webhook_endpoints.delivery_counts(s, profile_id=b) == {}, "A's deliveries are counted for B")

    def list_deliveries() -> None:
        theirs = a_endpoint()
        a_delivery(theirs.id)
        _refused(lambda: webhook_endpoints.list_deliveries(s, profile_id=b, endpoint_id=theirs.id))

    def get_delivery() -> None:
        theirs = a_endpoint()
        delivery = a_delivery(theirs.id)
        _check(webhook_endpoints.get_delivery(s, profile_id=a, delivery_id=delivery).id == delivery,
               "A cannot get A's delivery")
        _refused(lambda: webhook_endpoints.get_delivery(s, profile_id=b, delivery_id=delivery))

    # --- core.outbox --------------------------------------------------------------------------------

    def emit() -> None:
        theirs = a_endpoint()
        data = {"customer_name": "Bob Baker", "customer_phone": "+12125550199"}
        # B listens nowhere yet: its event is stored for nobody, and certainly not sent to A's endpoint
        _check(outbox.emit(s, profile_id=b, type="recipient.sent", data=data, now=w.now) is None,
               "B's event was stored though B has no endpoint (A's endpoint listened?)")
        _check(deliveries_of(theirs.id) == 0 and rows_of(WebhookEvent, a) == 0, "B's event reached A's endpoint")
        mine = endpoint(b, B_URL)
        event_id = outbox.emit(s, profile_id=b, type="recipient.sent", data=data, now=w.now)
        _check(event_id is not None, "B's event did not reach B's endpoint")
        event = s.get(WebhookEvent, event_id)
        _check(event is not None and event.profile_id == b, "B's event was stored for another business")
        _check(deliveries_of(mine.id) == 1 and deliveries_of(theirs.id) == 0, "B's event was delivered to A")
        _check(rows_of(WebhookEvent, a) == 0 and rows_of(WebhookDelivery, a) == 0,
               "B's event wrote rows of A")

    def emit_to() -> None:
        theirs = a_endpoint()
        _refused(lambda: outbox.emit_to(s, profile_id=b, endpoint_id=theirs.id, type="recipient.sent",
                                        data={"test": True}, now=w.now))
        _check(deliveries_of(theirs.id) == 0, "B wrote an event for A's endpoint")
        _check(rows_of(WebhookEvent, b) == 0 and rows_of(WebhookEvent, a) == 0, "B's refused event was stored")
        mine = endpoint(b, B_URL)
        _event_id, delivery_id = outbox.emit_to(s, profile_id=b, endpoint_id=mine.id, type="recipient.sent",
                                                data={"test": True}, now=w.now)
        delivery = s.get(WebhookDelivery, delivery_id)
        _check(delivery is not None and delivery.profile_id == b and delivery.endpoint_id == mine.id,
               "B's own test event did not land in B's log")
        _check(rows_of(WebhookEvent, a) == 0, "B's event was stored under A")

    # --- core.webhook_delivery ------------------------------------------------------------------------

    def send_test() -> None:
        theirs = a_endpoint()
        _refused(lambda: webhook_delivery.send_test(s, profile_id=b, endpoint_id=theirs.id, now=w.now))
        _check(deliveries_of(theirs.id) == 0 and rows_of(WebhookEvent, b) == 0,
               "B's test event was written for A's endpoint")

    def send_test_now() -> None:
        # the test event reads through its own sessions: A's endpoint must be committed for B to be refused it
        with w.factory() as fs, fs.begin():
            theirs, _secret = webhook_endpoints.create_endpoint(fs, profile_id=a, url=A_URL, events=["*"],
                                                                settings=SETTINGS, resolver=resolve, now=w.now)
        posted: list[str] = []

        def sender(target: Target, headers: Mapping[str, str], body: bytes, timeout: float) -> Answer:
            posted.append(str(target.url))
            return Answer(status=204)

        try:
            with w.factory() as fs:
                _check(webhook_endpoints.get_endpoint(fs, profile_id=a, endpoint_id=theirs.id).id == theirs.id,
                       "A's committed endpoint is not visible")
            _refused(lambda: webhook_delivery.send_test_now(w.factory, profile_id=b, endpoint_id=theirs.id,
                                                            settings=SETTINGS, resolver=resolve, sender=sender))
            _check(posted == [], f"B's test event was posted to A's endpoint: {posted}")
            with w.factory() as fs:
                written = fs.scalar(select(func.count()).select_from(WebhookDelivery)
                                    .where(WebhookDelivery.endpoint_id == theirs.id))
                _check(written == 0, "B's test event was written for A's endpoint")
            # the same call by A does go out (to the fake sender): B's refusal is about whose endpoint it is
            entry = webhook_delivery.send_test_now(w.factory, profile_id=a, endpoint_id=theirs.id, settings=SETTINGS,
                                                   resolver=resolve, sender=sender)
            _check(posted == [A_URL] and entry.status == "delivered", "A's own test event was not sent")
        finally:
            with w.factory() as fs, fs.begin():
                webhook_endpoints.delete_endpoint(fs, profile_id=a, endpoint_id=theirs.id)

    return {
        "core.webhook_endpoints.create_endpoint": create_endpoint,
        "core.webhook_endpoints.get_endpoint": get_endpoint,
        "core.webhook_endpoints.delete_endpoint": delete_endpoint,
        "core.webhook_endpoints.list_endpoints": list_endpoints,
        "core.webhook_endpoints.delivery_counts": delivery_counts,
        "core.webhook_endpoints.list_deliveries": list_deliveries,
        "core.webhook_endpoints.get_delivery": get_delivery,
        "core.outbox.emit": emit,
        "core.outbox.emit_to": emit_to,
        "core.webhook_delivery.send_test": send_test,
        "core.webhook_delivery.send_test_now": send_test_now,
    }

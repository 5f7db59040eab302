"""Where a business's events go: its webhook endpoints (n8n, Zapier, Make, a CRM), and their delivery log.

An endpoint is a URL, the event types it wants and a signing secret.  The secret
(``whsec_`` + base64 of 32 random bytes, the Standard Webhooks form) is shown once,
when the endpoint is created, and stored encrypted (:mod:`core.vault`); receivers
verify every delivery with it.  ``events`` lists types of
:data:`core.models.WEBHOOK_EVENT_TYPES`, or is ``["*"]``: every type, also those
added later.

**No SSRF.**  The product posts to URLs its users type, from inside the hosting
network, so a URL must be ``http(s)://`` with a host, and every address its host
resolves to must be public: loopback, private, link-local (cloud metadata at
169.254.169.254), shared/CGNAT, multicast, reserved and unspecified addresses —
also written as IPv4-mapped, 6to4, NAT64 or IPv4-compatible IPv6 — are refused,
unless ``WEBHOOKS_ALLOW_PRIVATE_URLS=true`` (development and tests).  The check
runs when an endpoint is created and again before every delivery, whose
connection then goes to the very address that was checked
(:mod:`core.webhook_delivery`), so a DNS answer that changes in between cannot
point a delivery inside.
"""

from __future__ import annotations

import base64
import ipaddress
import secrets
import socket
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core import vault
from core.config import Settings, get_settings
from core.db import utcnow
from core.errors import Conflict, FieldError, Invalid, NotFound
from core.models import WEBHOOK_EVENT_TYPES, WebhookDelivery, WebhookEndpoint, WebhookEvent
from core.outbox import ALL_EVENTS, event_id_text

MAX_ENDPOINTS = 20  # per business: each event is delivered to each endpoint that wants it
MAX_URL = 2000
MAX_DESCRIPTION = 500
SECRET_BYTES = 32

# (host, port) -> the addresses it resolves to; socket.getaddrinfo by default, a table in tests
Resolver = Callable[[str, int], Sequence[str]]


class UnsafeUrl(Invalid):
    """A URL events may not be delivered to (not http(s), or not a public address)."""

    def __init__(self, message: str) -> None:
        super().__init__([FieldError("url", message)])
        self.reason = message


@dataclass(frozen=True)
class Target:
    """A checked URL: where a delivery connects (``addresses``, all public) and what it asks for (``url``)."""

    url: httpx.URL
    host: str  # as resolved and as the TLS certificate must name it (ASCII, IDNA-encoded)
    port: int
    addresses: tuple[str, ...]


# --- checking a URL -------------------------------------------------------------------------------------


def system_resolver(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to, in the resolver's order (IPv6 zone ids removed)."""
    found: list[str] = []
    for _family, _type, _proto, _name, sockaddr in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
        address = str(sockaddr[0]).split("%", 1)[0]
        if address not in found:
            found.append(address)
    return found


_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")


def _embedded_v4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (mapped, 6to4, NAT64, IPv4-compatible), if any."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64 or (ip in _IPV4_COMPATIBLE and int(ip) > 1):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def not_public(address: str) -> str | None:
    """Why ``address`` is not a public unicast address (``None`` when it is one)."""
    try:
        ip: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(address)
    except ValueError:
        return "not an IP address"
    if isinstance(ip, ipaddress.IPv6Address):
        inner = _embedded_v4(ip)
        if inner is not None:  # judged by the IPv4 address it stands for
            why = not_public(str(inner))
            return f"{why} (written as IPv6)" if why else None
    checks = (("unspecified", ip.is_unspecified), ("loopback", ip.is_loopback), ("link-local", ip.is_link_local),
              ("multicast", ip.is_multicast), ("reserved", ip.is_reserved), ("private", ip.is_private))
    for name, hit in checks:
        if hit:
            return f"a {name} address"
    if not ip.is_global:
        return "not a public address (shared or special-purpose range)"
    return None


def check_url(url: str, *, allow_private: bool, resolver: Resolver | None = None) -> Target:
    """``url`` as a delivery :class:`Target`, or :class:`UnsafeUrl` saying why events may not go there.

    The host is resolved (all its addresses) and every address must be public unless
    ``allow_private``.  Called when an endpoint is saved and before each delivery."""
    text = (url or "").strip()
    if not text:
        raise UnsafeUrl("is required: the address events are posted to, like https://hooks.zapier.com/…")
    if len(text) > MAX_URL:
        raise UnsafeUrl(f"may be at most {MAX_URL} characters long")
    scheme = text.split(":", 1)[0].lower() if ":" in text else ""
    if scheme not in ("http", "https"):
        shown = f" (not {scheme}://)" if scheme else ""
        raise UnsafeUrl(f"must start with https:// or http://{shown}")
    try:
        parsed = httpx.URL(text)
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        host = parsed.raw_host.decode("ascii").strip("[]").rstrip(".").lower()
    except (httpx.InvalidURL, UnicodeError, ValueError) as exc:
        raise UnsafeUrl(f"is not a valid web address ({exc})") from None
    if not host:
        raise UnsafeUrl("needs a host name, like https://hooks.example.com/…")
    if parsed.userinfo:
        raise UnsafeUrl("may not contain a user name or password: every delivery is signed "
                        "(webhook-signature); verify that instead")
    try:
        addresses = tuple(resolver(host, port) if resolver else system_resolver(host, port))
    except (OSError, UnicodeError):
        addresses = ()
    if not addresses:
        raise UnsafeUrl(f"the host name {host} could not be found; check the address")
    if not allow_private:
        for address in addresses:
            why = not_public(address)
            if why:
                named = host if host == address else f"{host} resolves to {address}, which"
                raise UnsafeUrl(f"{named} is {why}: events go only to public addresses "
                                "(the server setting WEBHOOKS_ALLOW_PRIVATE_URLS=true allows others, "
                                "for development)")
    return Target(url=parsed, host=host, port=port, addresses=addresses)


# --- endpoints --------------------------------------------------------------------------------------------


def new_secret() -> str:
    """A Standard Webhooks signing secret: ``whsec_`` and base64 of 32 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


def _event_types(events: Any) -> list[str]:
    if not isinstance(events, list | tuple) or not events:
        raise Invalid("choose at least one event type, or [\"*\"] for all", field="events")
    chosen: list[str] = []
    for i, name in enumerate(events):
        if not isinstance(name, str) or (name != ALL_EVENTS and name not in WEBHOOK_EVENT_TYPES):
            raise Invalid(f"{name!r} is not an event type; known: {', '.join(WEBHOOK_EVENT_TYPES)} "
                          f"(or \"*\" for all)", field=f"events.{i}")
        if name not in chosen:
            chosen.append(name)
    if ALL_EVENTS in chosen and len(chosen) > 1:
        raise Invalid("\"*\" already means every event type; give it alone", field="events")
    return chosen


def create_endpoint(session: Session, *, profile_id: uuid.UUID, url: str, events: Sequence[str],
                    description: str | None = None, settings: Settings | None = None,
                    resolver: Resolver | None = None, now: datetime | None = None) -> tuple[WebhookEndpoint, str]:
    """Add an endpoint; returns it and its signing secret, which is never shown again."""
    settings = settings or get_settings()
    errors: list[FieldError] = []
    try:
        check_url(url, allow_private=settings.webhooks_allow_private_urls, resolver=resolver)
    except Invalid as exc:
        errors.extend(exc.errors)
    try:
        chosen = _event_types(events)
    except Invalid as exc:
        errors.extend(exc.errors)
    text = (description or "").strip() or None
    if text is not None and len(text) > MAX_DESCRIPTION:
        errors.append(FieldError("description", f"may be at most {MAX_DESCRIPTION} characters long"))
    if errors:
        raise Invalid(errors)
    count = session.scalar(select(func.count()).select_from(WebhookEndpoint)
                           .where(WebhookEndpoint.profile_id == profile_id)) or 0
    if count >= MAX_ENDPOINTS:
        raise Conflict(f"A business can have at most {MAX_ENDPOINTS} endpoints; delete one you no longer use "
                       "first.")
    secret = new_secret()
    now = now or utcnow()
    endpoint = WebhookEndpoint(id=uuid.uuid4(), profile_id=profile_id, url=url.strip(), events=chosen,
                               secret=vault.encrypt(secret, settings), description=text, created_at=now,
                               updated_at=now)
    session.add(endpoint)
    session.flush()
    return endpoint, secret


def get_endpoint(session: Session, *, profile_id: uuid.UUID, endpoint_id: uuid.UUID) -> WebhookEndpoint:
    """The business's endpoint, or :class:`NotFound` (also when it belongs to another business)."""
    endpoint = session.scalars(select(WebhookEndpoint).where(
        WebhookEndpoint.id == endpoint_id, WebhookEndpoint.profile_id == profile_id)).one_or_none()
    if endpoint is None:
        raise NotFound("No such webhook endpoint.", field="endpoint_id")
    return endpoint


def list_endpoints(session: Session, *, profile_id: uuid.UUID) -> list[WebhookEndpoint]:
    """The business's endpoints, oldest first."""
    return list(session.scalars(select(WebhookEndpoint).where(WebhookEndpoint.profile_id == profile_id)
                                .order_by(WebhookEndpoint.created_at, WebhookEndpoint.id)))


def delete_endpoint(session: Session, *, profile_id: uuid.UUID, endpoint_id: uuid.UUID) -> None:
    """Remove an endpoint; its deliveries (also those still pending) go with it."""
    endpoint = get_endpoint(session, profile_id=profile_id, endpoint_id=endpoint_id)
    session.delete(endpoint)
    session.flush()


def endpoint_secret(endpoint: WebhookEndpoint, settings: Settings | None = None) -> str:
    """The endpoint's signing secret, decrypted (for signing; never shown)."""
    return vault.decrypt(endpoint.secret, settings)


# --- the delivery log -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeliveryEntry:
    """One event for one endpoint, as the delivery log shows it."""

    id: uuid.UUID
    event_id: str
    event_type: str
    test: bool
    status: str
    attempts: int
    response_status: int | None
    last_error: str | None
    created_at: datetime
    last_attempt_at: datetime | None
    next_attempt_at: datetime | None
    delivered_at: datetime | None


def _entries(rows: Any) -> list[DeliveryEntry]:
    out = []
    for d, e in rows:
        out.append(DeliveryEntry(
            id=d.id, event_id=event_id_text(e.id), event_type=e.type, test=bool((e.data or {}).get("test")),
            status=d.status, attempts=d.attempts, response_status=d.response_status, last_error=d.last_error,
            created_at=e.created_at, last_attempt_at=d.last_attempt_at,
            next_attempt_at=d.next_attempt_at if d.status == "pending" else None, delivered_at=d.delivered_at))
    return out


def list_deliveries(session: Session, *, profile_id: uuid.UUID, endpoint_id: uuid.UUID, limit: int = 50,
                    offset: int = 0) -> tuple[list[DeliveryEntry], int]:
    """A page of an endpoint's delivery log, newest event first, and its total."""
    get_endpoint(session, profile_id=profile_id, endpoint_id=endpoint_id)
    conds = [WebhookDelivery.endpoint_id == endpoint_id, WebhookDelivery.profile_id == profile_id]
    total = session.scalar(select(func.count()).select_from(WebhookDelivery).where(*conds)) or 0
    rows = session.execute(select(WebhookDelivery, WebhookEvent)
                           .join(WebhookEvent, WebhookEvent.id == WebhookDelivery.event_id).where(*conds)
                           .order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id.desc())
                           .limit(limit).offset(offset)).all()
    return _entries(rows), int(total)


def get_delivery(session: Session, *, profile_id: uuid.UUID, delivery_id: uuid.UUID) -> DeliveryEntry:
    """One entry of a delivery log, or :class:`NotFound`."""
    rows = session.execute(select(WebhookDelivery, WebhookEvent)
                           .join(WebhookEvent, WebhookEvent.id == WebhookDelivery.event_id)
                           .where(WebhookDelivery.id == delivery_id, WebhookDelivery.profile_id == profile_id)
                           ).all()
    if not rows:
        raise NotFound("No such delivery.", field="delivery_id")
    return _entries(rows)[0]


def delivery_counts(session: Session, *, profile_id: uuid.UUID) -> dict[uuid.UUID, dict[str, int]]:
    """Per endpoint of the business: how many deliveries are pending, delivered and failed."""
    counts: dict[uuid.UUID, dict[str, int]] = {}
    for endpoint_id, status, n in session.execute(
            select(WebhookDelivery.endpoint_id, WebhookDelivery.status, func.count())
            .where(WebhookDelivery.profile_id == profile_id)
            .group_by(WebhookDelivery.endpoint_id, WebhookDelivery.status)):
        counts.setdefault(endpoint_id, {"pending": 0, "delivered": 0, "failed": 0})[status] = int(n)
    return counts

"""Delivering the outbox to the businesses' endpoints, signed per Standard Webhooks.

:func:`deliver_due` runs in the scheduler's own job (next to, never in the way of,
sending).  It takes due deliveries with a lease (``FOR UPDATE SKIP LOCKED``, like
:mod:`core.claims`, so any number of scheduler processes share the work), posts a
few at a time in parallel, and records each answer in its own short transaction —
no database transaction is open while a receiver is being waited for.

The request::

    POST <endpoint url>
    content-type: application/json
    webhook-id: msg_<event id>            the same on every attempt of the event
    webhook-timestamp: <unix seconds>     when this attempt was signed
    webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">

    {"id": "msg_…", "type": "recipient.converted", "created_at": "…Z", "data": {…}}

signed with the endpoint's secret by the ``standardwebhooks`` package.  The body is
built from the stored event alone, so every attempt of an event carries the same
bytes under the same ``webhook-id``, and no other event ever has that id.

The answer decides:

- **2xx**: delivered.  Nothing else ever marks a delivery delivered.
- **410 Gone**: the receiver asks for no more; the endpoint is disabled (reason
  recorded) and its waiting deliveries are closed as failed.
- **anything else**, a timeout, a refused connection, a redirect (never followed),
  an address that is no longer public: tried again after 30 s, 1 min, 2 min, …
  doubling up to 1 h (each shortened by up to a quarter at random, so receivers
  coming back are not hit all at once; a 429/503 ``Retry-After`` is honoured up to
  1 h), until 24 hours after the event was created; then ``failed``.

At least once: a process that dies after the receiver got a request but before the
answer was recorded leaves its lease to expire (``SCHEDULER_LEASE_SECONDS``, at least
three times ``WEBHOOK_TIMEOUT_SECONDS``), and the delivery is made again with the same
``webhook-id``; receivers dedupe on it.  The delivery log keeps each delivery's
attempt count and its last attempt (time, status code, error); every attempt is also
logged.
"""

from __future__ import annotations

import json
import logging
import os
import random
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from functools import lru_cache
from typing import Any, cast

import httpx
from sqlalchemy import CursorResult, Table, or_, select, update
from sqlalchemy.orm import Session, sessionmaker
from standardwebhooks import Webhook

from core import outbox, vault
from core.config import Settings, get_settings
from core.db import in_values, utcnow
from core.errors import Conflict
from core.models import WebhookDelivery, WebhookEndpoint, WebhookEvent
from core.webhook_endpoints import (
    DeliveryEntry,
    Resolver,
    Target,
    UnsafeUrl,
    check_url,
    get_delivery,
    get_endpoint,
)

log = logging.getLogger(__name__)

DEFAULT_CONCURRENCY = 4  # requests in flight per scheduler process
RETRY_FOR = timedelta(hours=24)
FIRST_RETRY = 30.0  # seconds
MAX_RETRY = 3600.0
USER_AGENT = "CONNEXT-Reengagement-Webhooks/1.0"
MAX_ERROR = 500

_d = cast(Table, WebhookDelivery.__table__)
_e = cast(Table, WebhookEvent.__table__)
_ep = cast(Table, WebhookEndpoint.__table__)


# --- one attempt ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """What came back from a receiver: a status code, or an error without one."""

    status: int | None
    error: str | None = None
    retry_after: float | None = None  # seconds, from a 429/503's Retry-After

    @property
    def unreachable(self) -> bool:
        """No HTTP answer at all (timeout, refused, no such host): the endpoint is sick right now."""
        return self.status is None


# (target, headers, body, timeout seconds) -> the answer
Sender = Callable[[Target, Mapping[str, str], bytes, float], Answer]


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, (parsedate_to_datetime(value) - utcnow()).total_seconds())
    except (TypeError, ValueError):
        return None


@lru_cache(maxsize=1)
def _default_tls() -> ssl.SSLContext:
    """One TLS context for every request of the process (building one loads the CA bundle: a tenth of a second)."""
    return httpx.create_ssl_context()


class HttpSender:
    """Posts over HTTP(S) to the address that was checked, not to whatever the name resolves to later.

    The URL's host is replaced by the checked IP address; the ``Host`` header and, for
    HTTPS, the TLS server name and certificate check stay those of the URL's host name.
    A fresh connection per request (a pooled one could carry another host's name).
    Redirects are never followed; proxies from the environment are not used (they would
    resolve the name themselves)."""

    def __init__(self, *, verify: ssl.SSLContext | None = None) -> None:
        self.verify = verify or _default_tls()

    def __call__(self, target: Target, headers: Mapping[str, str], body: bytes, timeout: float) -> Answer:
        extensions = {"sni_hostname": target.host} if target.url.scheme == "https" else {}
        sent = {**headers, "Host": target.url.netloc.decode("ascii")}
        last = Answer(None, "no address to connect to")
        for address in target.addresses:
            pinned = target.url.copy_with(host=address)
            try:
                with httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False,
                                  verify=self.verify) as client, \
                        client.stream("POST", pinned, content=body, headers=sent, extensions=extensions) as resp:
                    return _answer(resp)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:  # the name's next address may answer
                last = Answer(None, f"could not connect to {target.host} ({address}): {_short(exc)}")
            except httpx.TimeoutException:
                return Answer(None, f"no answer within {timeout:g} s")
            except httpx.HTTPError as exc:
                return Answer(None, f"the connection failed: {_short(exc)}")
        return last


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text[:200]


def _answer(resp: httpx.Response) -> Answer:
    """The answer from its status line; for a refusal, the start of what the receiver said (if it says it
    in time: the status is what counts, and a 2xx counts as soon as it arrives)."""
    code = resp.status_code
    if 200 <= code < 300:
        return Answer(code)
    snippet = b""
    try:
        for chunk in resp.iter_bytes():
            snippet += chunk
            if len(snippet) >= 300:
                break
    except httpx.HTTPError:
        pass
    said = snippet.decode("utf-8", "replace").strip().replace("\n", " ")[:200]
    if 300 <= code < 400:
        where = resp.headers.get("location", "")
        error = f"answered {code} (a redirect{' to ' + where[:200] if where else ''}): redirects are not " \
                "followed; use the final address as the endpoint URL"
    else:
        error = f"answered {code}{': ' + said if said else ''}"
    retry_after = _retry_after(resp.headers.get("retry-after")) if code in (429, 503) else None
    return Answer(code, error, retry_after)


def body_of(event_id: uuid.UUID, type: str, created_at: datetime, data: Mapping[str, Any]) -> bytes:
    """The exact bytes posted for an event (the same on every attempt).  Plain ASCII (other characters
    as ``\\u`` escapes), so a receiver that hands the body on as text still checks the signature over the
    very bytes that were signed."""
    return json.dumps(outbox.payload(event_id, type, created_at, data), ensure_ascii=True,
                      separators=(",", ":")).encode("ascii")


def signed_headers(*, secret: str, msg_id: str, body: bytes, at: datetime) -> dict[str, str]:
    """The Standard Webhooks headers of one attempt signed at ``at``."""
    return {"content-type": "application/json", "user-agent": USER_AGENT, "webhook-id": msg_id,
            "webhook-timestamp": str(int(at.timestamp())),
            "webhook-signature": Webhook(secret).sign(msg_id, at, body)}


# --- claiming -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    """A claimed delivery and everything its attempt needs."""

    id: uuid.UUID
    profile_id: uuid.UUID
    endpoint_id: uuid.UUID
    event_id: uuid.UUID
    event_type: str
    data: Mapping[str, Any]
    created_at: datetime
    attempt: int
    url: str
    secret: str  # encrypted
    disabled: bool


def _claim(session: Session, *, worker: str, now: datetime, lease: timedelta, limit: int,
           exclude: Sequence[uuid.UUID] = (), only: Sequence[uuid.UUID] | None = None) -> list[Job]:
    conds = [_d.c.status == "pending", or_(_d.c.claim_expires_at.is_(None), _d.c.claim_expires_at < now)]
    if only is not None:
        conds.append(in_values(session, _d.c.id, only))
    else:
        conds.append(_d.c.next_attempt_at <= now)
    if exclude:
        conds.append(~in_values(session, _d.c.endpoint_id, exclude))
    due = select(_d.c.id).where(*conds).order_by(_d.c.next_attempt_at).limit(limit).with_for_update(
        skip_locked=True)
    values = {"claimed_by": worker, "claim_expires_at": now + lease, "attempts": _d.c.attempts + 1,
              "last_attempt_at": now}
    if session.get_bind().dialect.name == "postgresql":
        picked = due.cte("picked").prefix_with("MATERIALIZED")
        stmt = update(_d).where(_d.c.id == picked.c.id).values(**values).returning(_d.c.id)
    else:
        stmt = update(_d).where(_d.c.id.in_(due)).values(**values).returning(_d.c.id)
    ids = list(session.scalars(stmt))
    if not ids:
        return []
    rows = session.execute(
        select(_d.c.id, _d.c.profile_id, _d.c.endpoint_id, _d.c.event_id, _d.c.attempts, _e.c.type, _e.c.data,
               _e.c.created_at, _ep.c.url, _ep.c.secret, _ep.c.disabled_at)
        .join(_e, _e.c.id == _d.c.event_id).join(_ep, _ep.c.id == _d.c.endpoint_id)
        .where(in_values(session, _d.c.id, ids)))
    jobs = [Job(id=r.id, profile_id=r.profile_id, endpoint_id=r.endpoint_id, event_id=r.event_id,
                event_type=r.type, data=r.data or {}, created_at=r.created_at, attempt=r.attempts, url=r.url,
                secret=r.secret, disabled=r.disabled_at is not None) for r in rows]
    jobs.sort(key=lambda j: (j.created_at, str(j.id)))
    return jobs


def release_deliveries(session: Session, *, worker: str) -> int:
    """Give back the deliveries ``worker`` still holds (a clean shutdown), due at once for another process."""
    result = session.execute(update(_d).where(_d.c.claimed_by == worker, _d.c.status == "pending")
                             .values(claimed_by=None, claim_expires_at=None))
    return int(cast(CursorResult[Any], result).rowcount)


# --- recording ------------------------------------------------------------------------------------------


def retry_delay(attempt: int, rng: random.Random, retry_after: float | None = None) -> float:
    """Seconds before the attempt after ``attempt`` (1-based): 30 s doubling to 1 h, minus up to a quarter."""
    base = min(MAX_RETRY, FIRST_RETRY * 2 ** max(0, attempt - 1))
    delay = base * rng.uniform(0.75, 1.0)
    if retry_after is not None:
        delay = max(delay, min(retry_after, MAX_RETRY))
    return delay


def _outcome(factory: sessionmaker[Session], job: Job, answer: Answer, *, worker: str, now: datetime,
             rng: random.Random) -> str:
    """Record an attempt's answer; returns ``delivered``, ``retrying``, ``failed``, ``disabled`` or ``lost``."""
    mine = [_d.c.id == job.id, _d.c.status == "pending"]
    common = {"response_status": answer.status, "claimed_by": None, "claim_expires_at": None}
    with factory() as session, session.begin():
        if answer.status is not None and 200 <= answer.status < 300:
            # a 2xx is the truth whoever holds the lease now
            session.execute(update(_d).where(*mine).values(status="delivered", delivered_at=now, last_error=None,
                                                            next_attempt_at=None, **common))
            log.info("webhook %s delivered to endpoint %s (%s, attempt %d): %d", outbox.event_id_text(job.event_id),
                     job.endpoint_id, job.event_type, job.attempt, answer.status)
            return "delivered"
        if answer.status == 410:
            reason = f"The endpoint answered 410 Gone on {now:%Y-%m-%d %H:%M} UTC: it asked to receive no more events."
            session.execute(update(_ep).where(_ep.c.id == job.endpoint_id, _ep.c.disabled_at.is_(None))
                            .values(disabled_at=now, disabled_reason=reason, updated_at=now))
            session.execute(update(_d).where(*mine).values(status="failed", last_error=answer.error,
                                                            next_attempt_at=None, **common))
            _close_waiting(session, job.endpoint_id, now=now, why="the endpoint was disabled (it answered 410 Gone)")
            log.warning("webhook endpoint %s answered 410 Gone: disabled", job.endpoint_id)
            return "disabled"
        delay = retry_delay(job.attempt, rng, answer.retry_after)
        at = now + timedelta(seconds=delay)
        give_up = at > job.created_at + RETRY_FOR
        result = session.execute(update(_d).where(*mine, _d.c.claimed_by == worker).values(
            status="failed" if give_up else "pending", last_error=answer.error,
            next_attempt_at=None if give_up else at, **common))
        if not cast(CursorResult[Any], result).rowcount:
            log.warning("webhook %s to endpoint %s: lease lost before the answer (%s) was recorded",
                        outbox.event_id_text(job.event_id), job.endpoint_id, answer.error)
            return "lost"
        if give_up:
            log.warning("webhook %s to endpoint %s failed for good after %d attempts over 24 hours: %s",
                        outbox.event_id_text(job.event_id), job.endpoint_id, job.attempt, answer.error)
            return "failed"
        log.warning("webhook %s to endpoint %s, attempt %d: %s; next attempt in %.0f s",
                    outbox.event_id_text(job.event_id), job.endpoint_id, job.attempt, answer.error, delay)
        return "retrying"


def _close_waiting(session: Session, endpoint_id: uuid.UUID, *, now: datetime, why: str) -> None:
    """Close an endpoint's waiting deliveries as failed (those in flight elsewhere record their own answer)."""
    session.execute(update(_d).where(
        _d.c.endpoint_id == endpoint_id, _d.c.status == "pending",
        or_(_d.c.claimed_by.is_(None), _d.c.claim_expires_at < now)).values(
        status="failed", last_error=f"not delivered: {why}", next_attempt_at=None, claimed_by=None,
        claim_expires_at=None))


def _attempt(job: Job, *, settings: Settings, now: datetime, resolver: Resolver | None, sender: Sender) -> Answer:
    try:
        secret = vault.decrypt(job.secret, settings)
    except vault.VaultError as exc:
        return Answer(None, f"the signing secret cannot be read: {exc}")
    try:
        target = check_url(job.url, allow_private=settings.webhooks_allow_private_urls, resolver=resolver)
    except UnsafeUrl as exc:
        return Answer(None, f"not sent: the URL {exc.reason}")
    body = body_of(job.event_id, job.event_type, job.created_at, job.data)
    headers = signed_headers(secret=secret, msg_id=outbox.event_id_text(job.event_id), body=body, at=now)
    return sender(target, headers, body, settings.webhook_timeout_seconds)


# --- the run --------------------------------------------------------------------------------------------


@dataclass
class DeliveryReport:
    """What one run did."""

    attempted: int = 0
    delivered: int = 0
    retrying: int = 0
    failed: int = 0
    disabled: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def default_worker() -> str:
    """A name for this process's leases."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def lease_for(settings: Settings) -> timedelta:
    """How long a claimed delivery stays this process's: long enough for the slowest answer."""
    return timedelta(seconds=max(float(settings.scheduler_lease_seconds), 3 * settings.webhook_timeout_seconds))


def deliver_due(factory: sessionmaker[Session], *, worker: str | None = None, settings: Settings | None = None,
                now: datetime | None = None, budget: float | None = None, concurrency: int | None = None,
                stop: threading.Event | None = None, only: Sequence[uuid.UUID] | None = None,
                resolver: Resolver | None = None, sender: Sender | None = None,
                rng: random.Random | None = None) -> DeliveryReport:
    """Deliver what is due, ``concurrency`` requests at a time, until nothing is due, ``budget`` seconds
    have passed (requests under way then finish) or ``stop`` is set.  ``now`` fixes the clock (tests);
    ``only`` limits the run to those deliveries (due or not: the test send)."""
    settings = settings or get_settings()
    worker = worker or default_worker()
    sender = sender or HttpSender()
    rng = rng or random.Random()
    slots = max(1, concurrency or DEFAULT_CONCURRENCY)
    lease = lease_for(settings)
    clock: Callable[[], datetime] = (lambda: now) if now is not None else utcnow
    report = DeliveryReport()
    started = time.monotonic()
    sick: set[uuid.UUID] = set()  # endpoints that did not answer in this run: their other deliveries wait

    def run(job: Job) -> tuple[str, Answer | None]:
        if job.disabled:
            with factory() as session, session.begin():
                _close_waiting(session, job.endpoint_id, now=clock(), why="the endpoint is disabled")
                session.execute(update(_d).where(_d.c.id == job.id, _d.c.status == "pending").values(
                    status="failed", last_error="not delivered: the endpoint is disabled", next_attempt_at=None,
                    claimed_by=None, claim_expires_at=None, attempts=_d.c.attempts - 1))  # nothing was sent
            return "failed", None
        answer = _attempt(job, settings=settings, now=clock(), resolver=resolver, sender=sender)
        return _outcome(factory, job, answer, worker=worker, now=clock(), rng=rng), answer

    remaining = list(only) if only is not None else None
    in_flight: dict[Future[tuple[str, Answer | None]], Job] = {}
    with ThreadPoolExecutor(max_workers=slots, thread_name_prefix="webhooks") as pool:
        while True:
            over = (budget is not None and time.monotonic() - started >= budget) or (stop is not None
                                                                                     and stop.is_set())
            if not over and len(in_flight) < slots and (remaining is None or remaining):
                with factory() as session, session.begin():
                    jobs = _claim(session, worker=worker, now=clock(), lease=lease, limit=slots - len(in_flight),
                                  exclude=sorted(sick), only=remaining)
                for job in jobs:
                    in_flight[pool.submit(run, job)] = job
                if remaining is not None:  # each of those once, however its attempt ends
                    remaining = [i for i in remaining if i not in {j.id for j in jobs}] if jobs else []
            if not in_flight:
                break
            done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            for future in done:
                job = in_flight.pop(future)
                try:
                    outcome, answer = future.result()
                except Exception:
                    log.exception("webhook delivery %s failed unexpectedly; retried after its lease", job.id)
                    continue
                report.attempted += answer is not None
                if outcome in ("delivered", "retrying", "failed", "disabled"):
                    setattr(report, outcome, getattr(report, outcome) + 1)
                if answer is not None and (answer.unreachable or outcome == "disabled"):
                    sick.add(job.endpoint_id)
    return report


# --- the test event -------------------------------------------------------------------------------------


def sample_data(type: str, *, now: datetime) -> dict[str, Any]:
    """Example ``data`` of an event type, shaped like the real thing, marked ``"test": true``."""
    campaign_id = "00000000-0000-4000-8000-000000000001"
    at = now.isoformat().replace("+00:00", "Z")
    if type.startswith("campaign."):
        status = {"campaign.started": "active", "campaign.paused": "paused"}.get(type, "completed")
        data: dict[str, Any] = {"campaign_id": campaign_id, "name": "Test campaign", "status": status,
                                "reason": None}
    else:
        data = {"recipient_id": "00000000-0000-4000-8000-000000000002", "campaign_id": campaign_id,
                "customer_name": "Test Customer", "customer_phone": "+15555550100",
                "customer_email": "test.customer@example.com", "channel": "sms", "at": at}
    return {**data, "test": True}


def send_test(session: Session, *, profile_id: uuid.UUID, endpoint_id: uuid.UUID,
              now: datetime | None = None) -> uuid.UUID:
    """Write a test event for one endpoint (in the caller's transaction); returns its delivery's id.

    The event is of the first type the endpoint subscribes to (``recipient.sent`` for ``"*"``), with
    example data shaped like that type's and ``"test": true`` — what a Zapier or n8n flow needs to map
    its fields — and is delivered like any other (signed, retried, in the log)."""
    endpoint = get_endpoint(session, profile_id=profile_id, endpoint_id=endpoint_id)
    if endpoint.disabled_at is not None:
        raise Conflict(f"This endpoint is disabled ({endpoint.disabled_reason or 'no reason recorded'}); delete "
                       "it and add it again to receive events.")
    now = now or utcnow()
    chosen = [t for t in endpoint.events or [] if t != outbox.ALL_EVENTS]
    type = chosen[0] if chosen else "recipient.sent"
    _event_id, delivery_id = outbox.emit_to(session, profile_id=profile_id, endpoint_id=endpoint_id, type=type,
                                            data=sample_data(type, now=now), now=now)
    return delivery_id


def send_test_now(factory: sessionmaker[Session], *, profile_id: uuid.UUID, endpoint_id: uuid.UUID,
                  settings: Settings | None = None, resolver: Resolver | None = None,
                  sender: Sender | None = None) -> DeliveryEntry:
    """*Send test event*: write it, deliver it right away (waiting at most ``WEBHOOK_TIMEOUT_SECONDS``),
    and return its log entry.  When the receiver did not take it, it is retried like any event."""
    with factory() as session, session.begin():
        delivery_id = send_test(session, profile_id=profile_id, endpoint_id=endpoint_id)
    deliver_due(factory, settings=settings, only=[delivery_id], concurrency=1, resolver=resolver, sender=sender)
    with factory() as session:
        return get_delivery(session, profile_id=profile_id, delivery_id=delivery_id)

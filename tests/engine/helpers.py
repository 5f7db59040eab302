"""Builders for the engine tests: a business with customers, campaigns, settings
and a clock that moves only when the test says so."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from core import accounts, campaigns
from core.channels.base import OutboundMessage, SendResult
from core.config import Settings
from core.customers_sync import sync_customers
from core.db import utcnow
from core.models import CampaignRecipient, CampaignResult, Lead, OutreachAttempt, OutreachEvent, Profile
from core.results import COUNTERS, count_recipients

EMAIL = {"email_subject": "We miss you, {first_name|friend}",
         "message_template": "Hi {first_name|there},\n\nCome back to {business_name}: {promotion}.",
         "variables": {"promotion": "20% off"}}
SMS = {"message_template": "Hi {first_name|there}, {business_name} misses you! {promotion}",
       "variables": {"promotion": "20% off"}}
CALL = {"call_script": "Hi {first_name|there}, this is {agent_name|the team} at {business_name}."}
OPEN_WINDOW = {"start": "00:00", "end": "24:00", "days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]}
_n = iter(range(1, 10**9))


def settings(**overrides: Any) -> Settings:
    """Sandbox settings (no provider credentials, no .env), limits high unless a test sets them."""
    values: dict[str, Any] = {"secret_key": "engine-tests", "resend_max_per_second": 100_000.0,
                              "twilio_max_per_second": 100_000.0, "vapi_max_concurrent_calls": 1000,
                              "scheduler_lease_seconds": 120, "scheduler_batch_size": 50,
                              "public_base_url": "https://shop.example"}
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def business(session: Session, *, name: str = "Bella Vista", timezone: str = "America/New_York",
             consent_policy: str = "none") -> Profile:
    """A business; by default one that takes responsibility for consent itself (policy ``none``), so the
    engine's tests are about the engine — the consent rules have tests of their own."""
    n = next(_n)
    profile, _key, _ = accounts.create_profile(
        session, business_name=name, email=f"owner{n}-{uuid.uuid4().hex[:6]}@shop.example",
        password="correct horse battery", timezone=timezone, default_region="US")
    profile.consent_policy = consent_policy
    return profile


def add_leads(session: Session, profile: Profile, contacts: Iterable[dict[str, Any]], *, now: datetime,
              days_ago: float = 200) -> list[Lead]:
    """Leads straight into the table (fast), one per contact: ``{"email": …, "phone": …, "name": …}``."""
    leads = []
    for i, c in enumerate(contacts):
        when = now - timedelta(days=days_ago, minutes=i)
        lead = Lead(id=uuid.uuid4(), profile_id=profile.id, contact_key=c.get("phone") or c["email"],
                    customer_name=c.get("name", f"Customer {i}"), customer_phone=c.get("phone"),
                    customer_email=c.get("email"), status="Closed", service_type=c.get("service", "Haircut"),
                    source="import", extra={}, structured_data={}, created_at=when, updated_at=when)
        leads.append(lead)
    session.add_all(leads)
    session.flush()
    sync_customers(session, profile_id=profile.id, keys=sorted({lead.contact_key for lead in leads}), now=now)
    return leads


def emails(n: int, *, domain: str = "example.com", prefix: str = "customer") -> list[dict[str, Any]]:
    return [{"email": f"{prefix}{i}@{domain}", "name": f"Pat{i} Doe"} for i in range(n)]


def campaign(session: Session, profile: Profile, *, method: str = "email", now: datetime, start: bool = True,
             **fields: Any) -> uuid.UUID:
    content = {"email": EMAIL, "sms": SMS, "call": CALL}.get(method, {})
    data: dict[str, Any] = {"name": f"Campaign {next(_n)}", "campaign_type": "winback", "outreach_method": method,
                            "send_window": OPEN_WINDOW, "rate_limit_per_minute": 10_000, "timezone": "America/New_York",
                            **content, **fields}
    c = campaigns.create_campaign(session, profile_id=profile.id, data=data, now=now)
    if start:
        campaigns.start_campaign(session, profile_id=profile.id, campaign_id=c.id, now=now)
    session.flush()
    return c.id


def _done(session: Session, value: Any) -> Any:
    # end the read's transaction: on SQLite every transaction holds the write lock the scheduler needs
    session.commit()
    return value


def recipients(session: Session, campaign_id: uuid.UUID) -> list[CampaignRecipient]:
    return _done(session, list(session.scalars(select(CampaignRecipient).where(
        CampaignRecipient.campaign_id == campaign_id).order_by(CampaignRecipient.contact_key)
        .execution_options(populate_existing=True))))


def statuses(session: Session, campaign_id: uuid.UUID) -> dict[str, int]:
    rows = session.execute(select(CampaignRecipient.status, func.count())
                           .where(CampaignRecipient.campaign_id == campaign_id).group_by(CampaignRecipient.status))
    return _done(session, {status: int(n) for status, n in rows})


def attempts(session: Session, campaign_id: uuid.UUID) -> list[OutreachAttempt]:
    return _done(session, list(session.scalars(select(OutreachAttempt).where(
        OutreachAttempt.campaign_id == campaign_id).order_by(OutreachAttempt.started_at, OutreachAttempt.attempt_no)
        .execution_options(populate_existing=True))))


def events(session: Session, campaign_id: uuid.UUID, *, kind: str | None = None) -> list[OutreachEvent]:
    stmt = select(OutreachEvent).where(OutreachEvent.campaign_id == campaign_id).execution_options(
        populate_existing=True)
    if kind:
        stmt = stmt.where(OutreachEvent.type == kind)
    return _done(session, list(session.scalars(stmt.order_by(OutreachEvent.occurred_at))))


def assert_results_match(session: Session, campaign_id: uuid.UUID) -> None:
    """The stored campaign_results row says exactly what the recipients say."""
    stored = session.scalars(select(CampaignResult).where(CampaignResult.campaign_id == campaign_id)
                             .execution_options(populate_existing=True)).one()
    counted = count_recipients(session, campaign_id=campaign_id)
    assert {k: getattr(stored, k) for k in COUNTERS} == {k: getattr(counted, k) for k in COUNTERS}
    session.commit()


def later(now: datetime | None = None, **delta: float) -> datetime:
    return (now or utcnow()) + timedelta(**delta)


class Scripted:
    """A channel double behind the :class:`core.channels.base.Channel` interface: it
    remembers every message and answers per address from a script (an exception to
    raise, or acceptance)."""

    live = False

    def __init__(self, channel: str, provider: str = "scripted") -> None:
        self.channel = channel
        self.provider = provider
        self.sent: list[OutboundMessage] = []
        self.accepted: dict[str, str] = {}
        self.fail: dict[str, Exception] = {}

    def send(self, message: OutboundMessage) -> SendResult:
        self.sent.append(message)
        error = self.fail.get(message.to)
        if error is not None:
            raise error
        pmid = self.accepted.setdefault(message.idempotency_key, f"{self.provider}-{uuid.uuid4().hex[:12]}")
        return SendResult(provider_message_id=pmid, status="queued" if self.channel == "call" else "accepted")

    def reconcile(self, message: OutboundMessage, *, started_at: datetime) -> SendResult | None:
        pmid = self.accepted.get(message.idempotency_key)
        return SendResult(provider_message_id=pmid) if pmid else None

    def to(self, address: str) -> list[OutboundMessage]:
        return [m for m in self.sent if m.to == address]


def handed_over_at(adapter: Scripted) -> list[datetime]:
    """The moments ``adapter``'s messages were checked and handed over (the sender's clock, stamped on each
    message; other sending threads move an injected clock on, so the test's own clock cannot say)."""
    moments: list[datetime] = []
    real_send = adapter.send

    def send(message: OutboundMessage) -> SendResult:
        moments.append(datetime.fromisoformat(message.metadata["clock"]))
        return real_send(message)

    adapter.send = send  # type: ignore[method-assign]
    return moments

"""Builders for the live-channel tests: settings pointing at the fakes, a business with
customers, campaigns run by the real dispatcher, webhooks delivered to the real app, and
readers of the database state."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from core.config import Settings
from core.dispatch import DispatchReport, run_campaign_pass
from core.models import Campaign, CampaignRecipient, CampaignResult, Lead, OptOut, OutreachAttempt, OutreachEvent
from core.results import COUNTERS, count_recipients
from tests.engine import helpers as engine_helpers
from tests.fakes import resend as fake_resend
from tests.fakes import twilio as fake_twilio
from tests.fakes import vapi as fake_vapi

PUBLIC = "https://shop.example"
VAPI_SECRET = "vapi-server-secret-4f1d"
RESEND_FROM = "hello@bellavista.example"

Post = Callable[[str, dict[str, str], bytes], httpx.Response]

business = engine_helpers.business
add_leads = engine_helpers.add_leads
campaign = engine_helpers.campaign


def live_settings(*, vapi: fake_vapi.FakeVapi | None = None, twilio: fake_twilio.FakeTwilio | None = None,
                  resend: fake_resend.FakeResend | None = None, **overrides: Any) -> Settings:
    """Settings with the given channels live against their fakes (the others in sandbox mode)."""
    values: dict[str, Any] = {"secret_key": "channel-tests", "public_base_url": PUBLIC,
                              "resend_max_per_second": 100_000.0, "twilio_max_per_second": 100_000.0,
                              "vapi_max_concurrent_calls": 1000, "scheduler_lease_seconds": 120}
    if vapi is not None:
        values.update(vapi_api_key=fake_vapi.DEFAULT_KEY, vapi_base_url=vapi.url,
                      vapi_assistant_id=fake_vapi.ASSISTANT_ID, vapi_phone_number_id=fake_vapi.PHONE_NUMBER_ID,
                      vapi_webhook_secret=VAPI_SECRET)
    if twilio is not None:
        values.update(twilio_account_sid=fake_twilio.ACCOUNT_SID, twilio_auth_token=fake_twilio.AUTH_TOKEN,
                      twilio_from_number=fake_twilio.FROM_NUMBER, twilio_base_url=twilio.url)
    if resend is not None:
        values.update(resend_api_key=fake_resend.DEFAULT_KEY, resend_from=RESEND_FROM, resend_base_url=resend.url,
                      resend_webhook_secret=resend.webhook_secret)
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def poster(client: TestClient) -> Post:
    """POST a provider's request for ``PUBLIC_BASE_URL/…`` to the app, as the proxy in front of it
    would: same path and query, but the app sees its own Host (``api.internal:8000``)."""

    def post(url: str, headers: dict[str, str], body: bytes) -> httpx.Response:
        parts = urlsplit(url)
        assert f"{parts.scheme}://{parts.netloc}" == PUBLIC, url
        return client.post(parts.path + (f"?{parts.query}" if parts.query else ""), content=body, headers=headers)

    return post


def calling_hours_after(moment: datetime) -> datetime:
    """The first 15:00 UTC (10:00 or 11:00 in New York: inside calling hours) at or after ``moment``.

    Webhooks are stamped with the real clock, the dispatcher runs on the test's: a step a webhook
    makes due again is run at a time the window allows."""
    target = moment.replace(hour=15, minute=0, second=0, microsecond=0)
    return target if target >= moment else target + timedelta(days=1)


def run(factory: sessionmaker[Session], profile_id: uuid.UUID, campaign_id: uuid.UUID, now: datetime,
        settings: Settings, **kw: Any) -> DispatchReport:
    """One dispatch pass of the campaign, as ``POST /execute`` or a scheduler tick runs it."""
    return run_campaign_pass(factory, profile_id=profile_id, campaign_id=campaign_id, now=now, settings=settings,
                             worker=kw.pop("worker", "channel-tests"), concurrency=kw.pop("concurrency", 1), **kw)


# --- reading the database ----------------------------------------------------------------------------------
# Each read ends its transaction with a commit (the session does not expire on commit): on SQLite an open
# transaction holds the write lock the app under test needs, and an expired object would open a new one
# when a test reads it.  Reads load fresh rows (populate_existing).


def _fresh(session: Session) -> None:
    session.commit()


def recipient(session: Session, campaign_id: uuid.UUID, contact: str) -> CampaignRecipient:
    _fresh(session)
    row = session.scalars(select(CampaignRecipient).where(CampaignRecipient.campaign_id == campaign_id,
                                                          CampaignRecipient.contact_key == contact)
                          .execution_options(populate_existing=True)).one()
    session.commit()
    return row


def recipients(session: Session, campaign_id: uuid.UUID) -> list[CampaignRecipient]:
    _fresh(session)
    return engine_helpers.recipients(session, campaign_id)


def opt_outs(session: Session, profile_id: uuid.UUID) -> set[tuple[str, str, str]]:
    """``{(contact, channel, source)}`` of a business."""
    _fresh(session)
    rows = session.execute(select(OptOut.contact, OptOut.channel, OptOut.source)
                           .where(OptOut.profile_id == profile_id)).all()
    session.commit()
    return {(r[0], r[1], r[2]) for r in rows}


def events(session: Session, *, provider: str | None = None, campaign_id: uuid.UUID | None = None,
           with_sends: bool = False) -> list[OutreachEvent]:
    """Stored events, oldest first (without the dispatcher's own "sent" records unless asked)."""
    _fresh(session)
    stmt = select(OutreachEvent).order_by(OutreachEvent.received_at, OutreachEvent.provider_event_id
                                          ).execution_options(populate_existing=True)
    if not with_sends:
        stmt = stmt.where(OutreachEvent.provider_event_id.not_like("sent:%"))
    if provider:
        stmt = stmt.where(OutreachEvent.provider == provider)
    if campaign_id:
        stmt = stmt.where(OutreachEvent.campaign_id == campaign_id)
    rows = list(session.scalars(stmt))
    session.commit()
    return rows


def attempts(session: Session, campaign_id: uuid.UUID) -> list[OutreachAttempt]:
    _fresh(session)
    return engine_helpers.attempts(session, campaign_id)


def leads_of(session: Session, profile_id: uuid.UUID, *, source: str | None = None) -> list[Lead]:
    _fresh(session)
    stmt = select(Lead).where(Lead.profile_id == profile_id).order_by(Lead.created_at).execution_options(
        populate_existing=True)
    if source:
        stmt = stmt.where(Lead.source == source)
    rows = list(session.scalars(stmt))
    session.commit()
    return rows


def count(session: Session, model: Any) -> int:
    _fresh(session)
    n = int(session.scalar(select(func.count()).select_from(model)) or 0)
    session.commit()
    return n


def campaign_row(session: Session, campaign_id: uuid.UUID) -> Campaign:
    _fresh(session)
    row = session.get(Campaign, campaign_id, populate_existing=True)
    assert row is not None
    session.commit()
    return row


def results_match(session: Session, campaign_id: uuid.UUID) -> dict[str, int]:
    """The stored campaign_results equal what the recipients say; returns the counters."""
    _fresh(session)
    stored = session.scalars(select(CampaignResult).where(CampaignResult.campaign_id == campaign_id)
                             .execution_options(populate_existing=True)).one()
    counted = count_recipients(session, campaign_id=campaign_id)
    values = {k: getattr(stored, k) for k in COUNTERS}
    assert values == {k: getattr(counted, k) for k in COUNTERS}
    session.commit()
    return values


def snapshot(session: Session) -> dict[str, Any]:
    """Every row that a webhook could change, to prove a refused one changed nothing."""
    _fresh(session)
    state = {
        "recipients": sorted((str(r.id), r.status, r.sent_at, r.delivered_at, r.answered_at, r.responded_at,
                              r.converted, r.error_message, str(sorted((r.response_data or {}).items())))
                             for r in session.scalars(select(CampaignRecipient)
                                                      .execution_options(populate_existing=True))),
        "events": session.scalar(select(func.count()).select_from(OutreachEvent)),
        "opt_outs": sorted((o.contact, o.channel, o.source) for o in session.scalars(select(OptOut))),
        "leads": session.scalar(select(func.count()).select_from(Lead)),
        "attempts": sorted((str(a.id), a.outcome, a.completed_at) for a in session.scalars(
            select(OutreachAttempt).execution_options(populate_existing=True))),
    }
    session.commit()
    return state


def campaign_status(session: Session, campaign_id: uuid.UUID) -> str:
    _fresh(session)
    status = session.scalar(select(Campaign.status).where(Campaign.id == campaign_id))
    session.commit()
    return str(status)

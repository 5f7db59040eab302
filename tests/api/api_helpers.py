"""Builders for the REST API tests: businesses with keys, leads and campaigns,
created through the same core functions the product uses."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core import accounts, campaigns
from core.db import utcnow
from core.leads import add_lead
from core.models import Campaign, CampaignRecipient, OptOut
from core.optouts import record_opt_out

EMAIL_CONTENT = {"email_subject": "We miss you, {first_name|friend}",
                 "message_template": "Hi {first_name|there}, come back to {business_name} for {promotion}.",
                 "variables": {"promotion": "20% off"}}


@dataclass
class Tenant:
    """A business as an API client sees it: its key and the ids it owns."""

    profile_id: uuid.UUID
    key: str
    agent_id: uuid.UUID
    lead_ids: list[uuid.UUID] = field(default_factory=list)
    emails: list[str] = field(default_factory=list)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


def make_tenant(session: Session, *, name: str, dormant: int = 4, recent: int = 1, area: str = "201",
                now: datetime | None = None, consent_policy: str = "none") -> Tenant:
    """A business with an agent, ``dormant`` customers last seen 200 days ago (phone and
    e-mail), ``recent`` customers seen 10 days ago, one e-mail-only and one phone-only
    dormant customer.  Committed."""
    now = now or utcnow()
    tag = uuid.uuid4().hex[:8]
    profile, key, _ = accounts.create_profile(session, business_name=name, email=f"owner-{tag}@shop.example",
                                              password="correct horse battery")
    profile.consent_policy = consent_policy  # "none": the business vouches for consent (tests of it say us_tcpa)
    agent = accounts.create_agent(session, profile_id=profile.id, name=f"{name} front desk")
    tenant = Tenant(profile_id=profile.id, key=key, agent_id=agent.id)
    n = 0

    def lead(phone: str | None, email: str | None, days: float, status: str = "Closed") -> None:
        nonlocal n
        n += 1
        row = add_lead(session, profile_id=profile.id, customer_name=f"Customer {n} of {name}",
                       customer_phone=phone, customer_email=email, status=status, service_type="Color",
                       agent_id=agent.id, created_at=now - timedelta(days=days))
        tenant.lead_ids.append(row.id)
        if row.customer_email:
            tenant.emails.append(row.customer_email)

    for i in range(dormant):
        lead(f"+1{area}555{1000 + i:04d}", f"dormant{i}-{tag}@example.com", 200)
    for i in range(recent):
        lead(f"+1{area}555{2000 + i:04d}", f"recent{i}-{tag}@example.com", 10)
    lead(None, f"mailonly-{tag}@example.com", 300)
    lead(f"+1{area}5553000", None, 250)
    session.commit()
    return tenant


def make_campaign(session: Session, tenant: Tenant, *, method: str = "email", **fields: Any) -> Campaign:
    """A draft campaign of ``tenant`` reaching every customer dormant for 180 days.  Committed."""
    content: dict[str, Any] = {
        "email": EMAIL_CONTENT,
        "sms": {"message_template": "Hi {first_name|there}, {business_name} misses you!"},
        "call": {"call_script": "Hi {first_name|there}, this is {business_name}."},
    }[method]
    data = {"name": "Autumn win-back", "campaign_type": "winback", "outreach_method": method,
            "target_criteria": {"last_contact_days": 180}, **content, **fields}
    campaign = campaigns.create_campaign(session, profile_id=tenant.profile_id, data=data)
    session.commit()
    return campaign


def opt_out(session: Session, tenant: Tenant, contact: str, channel: str = "all") -> OptOut:
    row = record_opt_out(session, profile_id=tenant.profile_id, contact=contact, channel=channel, source="manual")
    session.commit()
    return row


# The readers below end their transaction before returning: on SQLite an open
# transaction holds the write lock, and the app under test would wait for it.


def count(session: Session, model: Any, **where: Any) -> int:
    """Rows of ``model`` matching ``where``, read in a fresh transaction."""
    session.rollback()
    stmt = select(func.count()).select_from(model)
    for key, value in where.items():
        stmt = stmt.where(getattr(model, key) == value)
    try:
        return int(session.scalar(stmt) or 0)
    finally:
        session.rollback()


def recipients_of(session: Session, campaign_id: uuid.UUID) -> list[CampaignRecipient]:
    """The campaign's recipients as stored now (detached), ordered by contact."""
    session.rollback()
    rows = list(session.scalars(select(CampaignRecipient).where(CampaignRecipient.campaign_id == campaign_id)
                                .order_by(CampaignRecipient.contact_key)))
    session.expunge_all()
    session.rollback()
    return rows


def api_routes(app: FastAPI) -> list[tuple[str, str]]:
    """Every (method, path) the app serves under ``/api/`` (routers included)."""
    return sorted((method, ctx.path) for ctx in iter_route_contexts(app.routes)
                  if ctx.path and ctx.path.startswith("/api/") for method in (ctx.methods or ()) if method != "HEAD")

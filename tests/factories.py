"""Small builders for test data (through the same core functions the product uses)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from core import accounts, campaigns
from core.leads import add_lead
from core.models import Campaign, Lead, Profile

_counter = iter(range(1, 10**9))


def make_profile(session: Session, *, name: str | None = None, region: str = "US",
                 timezone: str = "America/New_York", consent_policy: str = "none") -> Profile:
    """A business.  Its consent policy is ``none`` (the business vouches for consent) unless a test
    asks for ``us_tcpa``, so tests about other things need no consent records."""
    n = next(_counter)
    profile, _key, _ = accounts.create_profile(
        session, business_name=name or f"Business {n}", email=f"owner{n}-{uuid.uuid4().hex[:6]}@shop.example",
        password="correct horse battery", timezone=timezone, default_region=region)
    profile.consent_policy = consent_policy
    session.flush()
    return profile


def make_key(session: Session, profile: Profile) -> str:
    return accounts.create_api_key(session, profile_id=profile.id)[1]


def lead(session: Session, profile: Profile, *, phone: str | None = None, email: str | None = None,
         name: str | None = "Pat Doe", status: str = "Closed", days_ago: float = 200, now: datetime,
         service_type: str | None = None, agent_id: uuid.UUID | None = None, notes: str | None = None) -> Lead:
    return add_lead(session, profile_id=profile.id, customer_name=name, customer_phone=phone,
                    customer_email=email, status=status, service_type=service_type, agent_id=agent_id,
                    notes=notes, created_at=now - timedelta(days=days_ago))


EMAIL_CONTENT = {"email_subject": "Hello {first_name|there}", "message_template": "We miss you at {business_name}."}
CONTENT = {
    "email": EMAIL_CONTENT,
    "sms": {"message_template": "Hi {first_name|there}, come back to {business_name}!"},
    "call": {"call_script": "Hi {first_name|there}, this is {business_name}."},
    "multi": {**EMAIL_CONTENT, "sms_template": "Hi from {business_name}", "call_script": "Hello {customer_name}",
              "steps": [{"channel": "email"}, {"channel": "call", "delay_hours": 48, "condition": "no_response"}]},
}


def campaign(session: Session, profile: Profile, *, method: str = "email", criteria: dict[str, Any] | None = None,
             now: datetime | None = None, **fields: Any) -> Campaign:
    data: dict[str, Any] = {"name": "Test campaign", "campaign_type": "winback", "outreach_method": method,
                            "target_criteria": criteria or {}, **CONTENT[method], **fields}
    return campaigns.create_campaign(session, profile_id=profile.id, data=data, now=now)

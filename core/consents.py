"""Consent records, and what consent a call, text or e-mail needs (DESIGN §10).

A consent is kept as evidence: who (a normalized phone or e-mail), on which channel (or
``all``), at which level (``express`` or ``express_written``), how it was captured and
when, with its proof.  Revoking keeps the record and stamps ``revoked_at``; a revoked
consent no longer counts.

:data:`CONSENT_RULES` is the table a reviewer checks: under the ``us_tcpa`` policy, which
campaigns need which consent on which channel, each row with its source.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.orm import Session

from core.accounts import get_profile
from core.contacts import ContactError, normalize_contact
from core.db import in_values, utcnow
from core.errors import Invalid, NotFound
from core.models import CAMPAIGN_TYPES, CONSENT_CHANNELS, CONSENT_LEVELS, CONSENT_POLICIES, CONSENT_SOURCES, Consent

# a client's clock may run a little ahead of ours: a capture time this close to now is not "the future"
CLOCK_SKEW = timedelta(minutes=5)
# consent levels, weakest first: written consent satisfies what plain express consent does
_STRENGTH = {"express": 1, "express_written": 2}


@dataclass(frozen=True)
class ConsentRule:
    """Under ``policy``, a campaign of ``purpose`` needs ``level`` consent to reach a customer on ``channels``."""

    policy: str
    purpose: str
    channels: tuple[str, ...]
    level: str
    source: str


# campaign types by what they are for: selling (marketing) or informing the customer
PURPOSE = {"winback": "marketing", "promotional": "marketing", "followup": "marketing", "feedback": "informational"}
assert set(PURPOSE) == set(CAMPAIGN_TYPES)

CONSENT_RULES: tuple[ConsentRule, ...] = (
    # an AI agent's voice is an "artificial voice" (FCC 24-17, 2024); a text is a call under the TCPA
    ConsentRule("us_tcpa", "marketing", ("call", "sms"), "express_written",
                "47 U.S.C. § 227(b)(1); 47 CFR 64.1200(a)(2)–(3) (telemarketing with an artificial voice or "
                "an autodialer needs prior express written consent); FCC 24-17"),
    ConsentRule("us_tcpa", "informational", ("call", "sms"), "express",
                "47 U.S.C. § 227(b)(1)(A)–(B); 47 CFR 64.1200(a)(1) (non-marketing calls with an artificial "
                "voice need prior express consent); FCC 24-17"),
    # e-mail: CAN-SPAM asks for an opt-out, not for consent (15 U.S.C. § 7704); opt-outs rule it
)


def required_level(policy: str, campaign_type: str, channel: str) -> str | None:
    """The consent a campaign of ``campaign_type`` needs to reach a customer on ``channel`` under
    ``policy`` (``None``: none).  A campaign type the table does not know is treated as marketing,
    the strictest."""
    if policy not in CONSENT_POLICIES:
        raise ValueError(f"unknown consent policy {policy!r}")
    purpose = PURPOSE.get(campaign_type, "marketing")
    for rule in CONSENT_RULES:
        if rule.policy == policy and rule.purpose == purpose and channel in rule.channels:
            return rule.level
    return None


def satisfies(level: str | None, needed: str | None) -> bool:
    """Whether consent at ``level`` (``None``: none on record) is enough where ``needed`` is asked."""
    if needed is None:
        return True
    return level is not None and _STRENGTH[level] >= _STRENGTH[needed]


def _choice(value: str, allowed: tuple[str, ...], field: str) -> str:
    if value not in allowed:
        raise Invalid(f"unknown {field} '{value}'; allowed: {', '.join(allowed)}", field=field)
    return value


def record_consent(session: Session, *, profile_id: uuid.UUID, contact: str, channel: str, level: str,
                   source: str = "api", proof: str | None = None, captured_at: datetime | None = None,
                   now: datetime | None = None) -> Consent:
    """Record that ``contact`` consented to be reached on ``channel`` (``all``: every channel).

    The contact is normalized with the business's region (phones to E.164, e-mails lower-cased);
    ``captured_at`` (default: now) may not lie in the future.  Recording the very same consent
    again (same contact, channel, level, source, proof and time, not revoked) returns the first."""
    now = now or utcnow()
    _choice(channel, CONSENT_CHANNELS, "channel")
    _choice(level, CONSENT_LEVELS, "level")
    _choice(source, CONSENT_SOURCES, "source")
    region = get_profile(session, profile_id=profile_id).default_region
    try:
        normalized = normalize_contact(contact, region)
    except ContactError as exc:
        raise Invalid(str(exc), field="contact") from None
    if captured_at is None:
        captured_at = now
    elif captured_at.tzinfo is None:
        raise Invalid("give the time the consent was captured with its time zone offset (e.g. "
                      "2026-06-15T09:00:00-04:00)", field="captured_at")
    elif captured_at > now + CLOCK_SKEW:
        raise Invalid("the consent cannot have been captured in the future", field="captured_at")
    proof = proof.strip() or None if proof is not None else None
    same = session.scalars(select(Consent).where(
        Consent.profile_id == profile_id, Consent.contact == normalized, Consent.channel == channel,
        Consent.level == level, Consent.source == source, Consent.captured_at == captured_at,
        Consent.revoked_at.is_(None),
        Consent.proof.is_(None) if proof is None else Consent.proof == proof).limit(1)).first()
    if same is not None:
        return same
    consent = Consent(id=uuid.uuid4(), profile_id=profile_id, contact=normalized, channel=channel, level=level,
                      source=source, proof=proof, captured_at=captured_at, created_at=now)
    session.add(consent)
    session.flush()
    return consent


def _search(search: str | None) -> list[ColumnElement[bool]]:
    text = (search or "").strip().lower()
    if not text:
        return []
    digits = "".join(ch for ch in text if ch.isdigit())
    matches = [Consent.contact.contains(text, autoescape=True)]
    if "@" not in text and len(digits) >= 3:  # "(305) 555" finds +13055550101
        matches.append(Consent.contact.contains(digits, autoescape=True))
    return [or_(*matches)]


def list_consents(session: Session, *, profile_id: uuid.UUID, search: str | None = None, limit: int = 50,
                  offset: int = 0) -> tuple[list[Consent], int]:
    """A page of the business's consent records (revoked ones included), newest first, and their total."""
    conds = [Consent.profile_id == profile_id, *_search(search)]
    total = session.scalar(select(func.count()).select_from(Consent).where(*conds)) or 0
    rows = session.scalars(select(Consent).where(*conds)
                           .order_by(Consent.captured_at.desc(), Consent.created_at.desc(), Consent.id)
                           .limit(limit).offset(offset)).all()
    return list(rows), int(total)


def revoke_consent(session: Session, *, profile_id: uuid.UUID, consent_id: uuid.UUID,
                   now: datetime | None = None) -> Consent:
    """Revoke a consent: it is kept, with ``revoked_at``, and no longer counts.  Revoking it again
    changes nothing (the first revocation time stays)."""
    consent = session.scalars(select(Consent).where(Consent.id == consent_id, Consent.profile_id == profile_id)
                              ).one_or_none()
    if consent is None:
        raise NotFound("No such consent.", field="consent_id")
    if consent.revoked_at is None:
        consent.revoked_at = now or utcnow()
        session.flush()
    return consent


def consent_level(session: Session, *, profile_id: uuid.UUID, contacts: Iterable[str],
                  channel: str) -> dict[str, str | None]:
    """For each of ``contacts`` (normalized), the strongest unrevoked consent on ``channel`` or ``all``
    (``None``: none).  One query for the batch."""
    wanted = sorted({c for c in contacts if c})
    levels: dict[str, str | None] = dict.fromkeys(wanted)
    if not wanted:
        return levels
    rows = session.execute(select(Consent.contact, Consent.level).where(
        Consent.profile_id == profile_id, in_values(session, Consent.contact, wanted),
        Consent.channel.in_((channel, "all")), Consent.revoked_at.is_(None)).distinct())
    for contact, level in rows:
        best = levels[contact]
        if best is None or _STRENGTH[level] > _STRENGTH[best]:
            levels[contact] = level
    return levels

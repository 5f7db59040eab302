"""The opt-out policy, in one place for every channel.

An opt-out covers one normalized contact (phone or e-mail) of one profile on one
channel, or on every channel (``all``).  It is checked when recipients are
selected and again immediately before every send.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.accounts import get_profile
from core.contacts import ContactError, normalize_contact
from core.db import in_values, utcnow
from core.errors import Invalid, NotFound
from core.models import OPT_OUT_CHANNELS, OPT_OUT_SOURCES, Campaign, OptOut


def is_opted_out(session: Session, *, profile_id: uuid.UUID, contact: str | None, channel: str) -> bool:
    """Whether ``contact`` may not be reached on ``channel``."""
    if not contact:
        return False
    return session.scalar(select(OptOut.id).where(
        OptOut.profile_id == profile_id, OptOut.contact == contact, OptOut.channel.in_((channel, "all"))
    ).limit(1)) is not None


def opted_out_among(session: Session, *, profile_id: uuid.UUID, contacts: Iterable[str | None],
                    channel: str) -> set[str]:
    """The ``contacts`` that may not be reached on ``channel`` (the same rule as
    :func:`is_opted_out`, one query for a whole batch)."""
    wanted = sorted({c for c in contacts if c})
    if not wanted:
        return set()
    return set(session.scalars(select(OptOut.contact).where(
        OptOut.profile_id == profile_id, in_values(session, OptOut.contact, wanted),
        OptOut.channel.in_((channel, "all")))))


def record_opt_out(
    session: Session, *, profile_id: uuid.UUID, contact: str, channel: str, source: str,
    reason: str | None = None, campaign_id: uuid.UUID | None = None, now: datetime | None = None,
) -> OptOut:
    """Record that ``contact`` opted out of ``channel`` (idempotent: an existing
    opt-out is returned unchanged).  A phone number written without its country code is
    read in the business's country.  Pending recipients it covers are marked
    ``opted_out`` at their next send; the check at send time is what guarantees it."""
    if channel not in OPT_OUT_CHANNELS:
        raise Invalid(f"unknown channel '{channel}'; allowed: {', '.join(OPT_OUT_CHANNELS)}", field="channel")
    if source not in OPT_OUT_SOURCES:
        raise Invalid(f"unknown source '{source}'; allowed: {', '.join(OPT_OUT_SOURCES)}", field="source")
    region = get_profile(session, profile_id=profile_id).default_region
    try:
        normalized = normalize_contact(contact, region)
    except ContactError as exc:
        raise Invalid(str(exc), field="contact") from None
    if campaign_id is not None and session.scalar(select(Campaign.id).where(
            Campaign.id == campaign_id, Campaign.profile_id == profile_id)) is None:
        raise Invalid(f"no campaign {campaign_id} in this business", field="campaign_id")
    existing = session.scalars(select(OptOut).where(
        OptOut.profile_id == profile_id, OptOut.contact == normalized, OptOut.channel == channel)).one_or_none()
    if existing is not None:
        return existing
    opt_out = OptOut(id=uuid.uuid4(), profile_id=profile_id, contact=normalized, channel=channel, source=source,
                     reason=reason, campaign_id=campaign_id, created_at=now or utcnow())
    # a concurrent writer may record the same opt-out: the savepoint keeps our transaction usable
    try:
        with session.begin_nested():
            session.add(opt_out)
    except IntegrityError:  # the other writer's row stands
        existing = session.scalars(select(OptOut).where(
            OptOut.profile_id == profile_id, OptOut.contact == normalized, OptOut.channel == channel)).one()
        return existing
    return opt_out


def list_opt_outs(session: Session, *, profile_id: uuid.UUID, search: str | None = None,
                  limit: int = 50, offset: int = 0) -> tuple[list[OptOut], int]:
    """A page of the profile's opt-outs, newest first, and their total."""
    conds = [OptOut.profile_id == profile_id]
    if search and search.strip():
        conds.append(OptOut.contact.like("%" + search.strip().lower() + "%"))
    total = session.scalar(select(func.count()).select_from(OptOut).where(*conds)) or 0
    rows = session.scalars(select(OptOut).where(*conds).order_by(OptOut.created_at.desc(), OptOut.id)
                           .limit(limit).offset(offset)).all()
    return list(rows), int(total)


def delete_opt_out(session: Session, *, profile_id: uuid.UUID, opt_out_id: uuid.UUID) -> None:
    """Remove an opt-out (the customer asked to hear from the business again)."""
    opt_out = session.scalars(select(OptOut).where(OptOut.id == opt_out_id, OptOut.profile_id == profile_id)
                              ).one_or_none()
    if opt_out is None:
        raise NotFound("No such opt-out.", field="opt_out_id")
    session.delete(opt_out)
    session.flush()


def opt_back_in(session: Session, *, profile_ids: Iterable[uuid.UUID], contact: str, channel: str,
                source: str) -> int:
    """Remove the opt-outs of ``contact`` on ``channel`` that came from ``source`` (an SMS START
    undoes what STOP did) for the given businesses; opt-outs of other sources stay.  Returns how many."""
    wanted = list(profile_ids)
    if not wanted:
        return 0
    result = session.execute(delete(OptOut).where(
        OptOut.profile_id.in_(wanted), OptOut.contact == contact, OptOut.channel == channel, OptOut.source == source))
    return int(getattr(result, "rowcount", 0) or 0)

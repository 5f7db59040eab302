"""When, and how often, a business may call or text a customer in the US (DESIGN §10): the law as data.

:data:`STATE_RULES` is the table a reviewer checks: one row per state whose own law is stricter
than the federal rule, each with its statute.  Every other US number, and every number of another
country, keeps the federal calling hours of :data:`FEDERAL` (the product applies them to calls
and texts everywhere, :mod:`core.windows`).

The state of a number is the state of its area code (the laws of these states presume that a number
with one of their area codes belongs to a resident): each row lists its state's area codes, as
``phonenumbers``' geocoder places them (overlays announced but not yet in service included); a test
checks the lists against the geocoder for every area code, so an upgrade of ``phonenumbers`` that
moves one is noticed.  The lists are written out, not looked up at run time, because the geocoder's
data costs a scheduler process about 100 MB.
The dispatcher gathers facts with :func:`state_rule` and :func:`recent_contact_times` and leaves
the deciding to :mod:`core.eligibility`; :func:`campaign_compliance` tells a shop owner what
applies to a campaign.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select, text
from sqlalchemy.orm import Session

from core.db import in_values
from core.errors import NotFound
from core.models import Campaign, CampaignRecipient, OutreachAttempt, Profile
from core.windows import QUIET_END, QUIET_START, hhmm_range

# a state's cap counts this business's calls (and, where the law says so, texts) over this period
CAP_PERIOD = timedelta(hours=24)
CAPPED_CHANNELS = ("call", "sms")
# attempts that may have reached the customer: accepted by the provider, still open (in flight, or
# a call still going on), or settled as unknown (it may have gone out); counted against a cap
_REACHED = ("accepted", "unknown")


@dataclass(frozen=True)
class CallingHours:
    """Local minutes ``[start, end)`` in which calls and texts may reach a number, and why."""

    start: int
    end: int
    source: str


@dataclass(frozen=True)
class StateRule:
    """A state's own rule for calls and texts, stricter than the federal one."""

    state: str  # USPS code
    name: str  # as phonenumbers' geocoder names it
    area_codes: tuple[str, ...]  # every area code of the state (checked against the geocoder by the tests)
    hours: tuple[int, int]  # local minutes [start, end)
    cap: int  # calls (and texts, when counts_texts) to one customer per 24 hours from one business
    counts_texts: bool  # whether texts count against the cap together with calls
    law: str
    citation: str

    @property
    def source(self) -> str:
        """The law and its statute, as a reader cites it."""
        return f"{self.law}, {self.citation}"

    @property
    def hours_text(self) -> str:
        return hhmm_range(*self.hours)


FEDERAL = CallingHours(QUIET_START, QUIET_END, "47 CFR 64.1200(c)(1)")

STATE_RULES: tuple[StateRule, ...] = (
    StateRule("FL", "Florida", ("239", "305", "321", "324", "352", "386", "407", "448", "561", "645", "656", "689",
                                "727", "728", "754", "772", "786", "813", "850", "863", "904", "941", "954"),
              (8 * 60, 20 * 60), cap=3, counts_texts=False,
              law="Florida Telephone Solicitation Act (CS/SB 1120, 2021)",
              citation="Fla. Stat. § 501.616(6)(a)–(b)"),
    StateRule("OK", "Oklahoma", ("405", "539", "572", "580", "918"), (8 * 60, 20 * 60), cap=3, counts_texts=False,
              law="Oklahoma Telephone Solicitation Act of 2022 (HB 3168, in force since 2022-11-01)",
              citation="15 O.S. § 775C.1 et seq."),
    StateRule("MD", "Maryland", ("227", "240", "301", "410", "443", "667"), (8 * 60, 20 * 60), cap=3,
              counts_texts=True,
              law="Maryland Stop the Spam Calls Act of 2023 (in force since 2024-01-01; texts are "
                  "telephone solicitations too)",
              citation="Md. Code, Com. Law § 14-4501 et seq."),
)
_BY_NAME = {rule.name: rule for rule in STATE_RULES}
_BY_CODE = {rule.state: rule for rule in STATE_RULES}


_BY_AREA_CODE = {npa: rule for rule in STATE_RULES for npa in rule.area_codes}


def _npa(e164: str) -> str | None:
    """The area code of a NANP number in E.164 (``+1`` and ten digits), else ``None``."""
    if len(e164) == 12 and e164.startswith("+1") and e164[1:].isdigit():
        return e164[2:5]
    return None


def state_rule(e164: str) -> StateRule | None:
    """The stricter rule of the US state ``e164`` belongs to by its area code; ``None`` for any other
    number (other states, toll-free numbers, other countries)."""
    npa = _npa(e164)
    return _BY_AREA_CODE.get(npa) if npa is not None else None


def rule_for_state(state: str) -> StateRule | None:
    """The row of ``state`` (USPS code) in :data:`STATE_RULES`, if it has one."""
    return _BY_CODE.get(state.upper())


def calling_hours(e164: str) -> tuple[int, int, str]:
    """``(start_minute, end_minute, source)``: the local hours calls and texts may reach ``e164``."""
    rule = state_rule(e164)
    if rule is not None:
        return rule.hours[0], rule.hours[1], rule.source
    return FEDERAL.start, FEDERAL.end, FEDERAL.source


def cap_applies(rule: StateRule | None, channel: str) -> bool:
    """Whether a send on ``channel`` counts against (and is held back by) ``rule``'s cap."""
    if rule is None:
        return False
    return channel == "call" or (channel == "sms" and rule.counts_texts)


def hold_caps(session: Session, *, profile_id: uuid.UUID, contacts: Iterable[str]) -> None:
    """Make this transaction the only one counting and reserving calls and texts to ``contacts`` for
    this business until it ends, so that two schedulers cannot both place the call a cap forbids.

    The dispatcher calls it before :func:`recent_contact_times`, in the transaction that then records
    the attempts: a second scheduler's wave waits here, and its count then includes the first one's
    attempts.  On PostgreSQL, a transaction-scoped advisory lock per (business, number), taken in one
    order (no deadlock between two waves) and released at commit — which works through a pooler in
    transaction mode too.  On SQLite the transaction already holds the database's write lock
    (``BEGIN IMMEDIATE``)."""
    if session.get_bind().dialect.name != "postgresql":
        return
    keys = sorted({_lock_key(profile_id, c) for c in contacts if c})
    if keys:
        # unnest scans the (sorted) array in order: the locks are taken in that order
        session.execute(text("SELECT count(pg_advisory_xact_lock(k)) FROM unnest(CAST(:keys AS bigint[])) AS k"),
                        {"keys": keys})


def _lock_key(profile_id: uuid.UUID, contact: str) -> int:
    digest = hashlib.blake2b(f"cap:{profile_id}:{contact}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def recent_contact_times(session: Session, *, profile_id: uuid.UUID, contacts: Iterable[str],
                         now: datetime, excluding: uuid.UUID | None = None) -> dict[str, dict[str, list[datetime]]]:
    """When this business called or texted each of ``contacts`` (E.164) in the 24 hours before ``now``,
    across all its campaigns: ``{contact: {"call": [started_at, …], "sms": […]}}`` for every contact asked.

    Counts the attempts that may have reached the customer (accepted, still open, or of unknown
    outcome) — except the attempt ``excluding``: at the moment of sending, the try about to go out is
    already recorded and is not one of the calls before it.  One query for the batch: the recipients
    by ``(profile_id, contact_key)``, then their attempts by ``recipient_id`` — both served by an index."""
    wanted = sorted({c for c in contacts if c})
    found: dict[str, dict[str, list[datetime]]] = {c: {"call": [], "sms": []} for c in wanted}
    if not wanted:
        return found
    a, r = OutreachAttempt, CampaignRecipient
    rows = session.execute(
        select(r.contact_key, a.channel, a.started_at)
        .join(a, a.recipient_id == r.id)
        .where(r.profile_id == profile_id, in_values(session, r.contact_key, wanted),
               a.profile_id == profile_id, a.channel.in_(CAPPED_CHANNELS),
               a.started_at > now - CAP_PERIOD,
               or_(a.outcome.is_(None), a.outcome.in_(_REACHED)),
               *([a.id != excluding] if excluding is not None else []))
        .order_by(a.started_at))
    for contact, channel, started_at in rows:
        found[contact][channel].append(started_at)
    return found


def recent_contacts(session: Session, *, profile_id: uuid.UUID, contacts: Iterable[str],
                    now: datetime) -> dict[str, dict[str, int]]:
    """How many calls and texts this business sent each of ``contacts`` in the 24 hours before ``now``
    (the counts of :func:`recent_contact_times`): ``{contact: {"call": n, "sms": m}}``."""
    times = recent_contact_times(session, profile_id=profile_id, contacts=contacts, now=now)
    return {contact: {channel: len(seen) for channel, seen in by.items()} for contact, by in times.items()}


def _campaign_channels(campaign: Campaign) -> set[str]:
    if campaign.outreach_method != "multi":
        return {campaign.outreach_method}
    return {str(step.get("channel")) for step in campaign.steps or [] if isinstance(step, Mapping)}


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


SUPPRESSION_REASONS = ("opted_out", "no_consent", "dnc", "no_contact")


def _suppressed_by(report: Mapping[str, Any]) -> dict[str, int]:
    """The selection's counts per reason, whether the report nests them or not; absent ones are 0."""
    nested = report.get("suppressed_by")
    source = nested if isinstance(nested, Mapping) else report
    return {reason: _count(source.get(reason)) or 0 for reason in SUPPRESSION_REASONS}


NOT_CHOSEN_YET = ("draft", "scheduled")  # statuses in which a campaign has chosen nobody yet


def campaign_compliance(session: Session, *, profile_id: uuid.UUID, campaign_id: uuid.UUID,
                        now: datetime | None = None) -> dict[str, Any]:
    """What the law asks of a campaign: the consent policy, who its selection left out and why, and
    for its calls and texts the states with their own rules, how many recipients each has, their
    hours and their cap.  ``counted_on`` says of whom: ``selection`` (the customers it chose), or for a
    draft or scheduled campaign that has chosen nobody yet (it chooses when it starts) ``audience`` — its
    audience as it stands ``now`` (the audience preview's counts)."""
    # read here, not through core.campaigns, so that choosing recipients may use this module's rules
    campaign = session.scalars(select(Campaign).where(Campaign.id == campaign_id,
                                                      Campaign.profile_id == profile_id)).one_or_none()
    if campaign is None:
        raise NotFound("No such campaign.", field="campaign_id")
    policy = session.scalar(select(Profile.consent_policy).where(Profile.id == profile_id))
    report = campaign.selection_report if isinstance(campaign.selection_report, Mapping) else {}
    r = CampaignRecipient
    if campaign.status in NOT_CHOSEN_YET and session.scalar(
            select(r.id).where(r.campaign_id == campaign.id).limit(1)) is None:
        from core import targeting  # imported here: core.targeting imports this module's rules

        audience: dict[str, Any] = {"target_criteria": campaign.target_criteria, "steps": campaign.steps or [],
                                    "outreach_method": campaign.outreach_method,
                                    "campaign_type": campaign.campaign_type, "now": now}
        preview = targeting.preview_audience(session, profile_id=profile_id, sample_size=0, **audience)
        return {"policy": policy, "counted_on": "audience", "selected": preview.count,
                "suppressed_by": _suppressed_by(preview.suppressed_by), "by_state": preview.by_state}
    contacted = [r.campaign_id == campaign.id, r.status != "holdout"]
    selected = _count(report.get("selected"))
    if selected is None:
        selected = session.scalar(select(func.count()).select_from(r).where(*contacted)) or 0
    by_state: dict[str, dict[str, Any]] = {}
    if _campaign_channels(campaign) & set(CAPPED_CHANNELS):
        prefix = func.substr(r.customer_phone, 1, 5)  # "+1305": the area code decides the state
        counts = session.execute(select(prefix, func.count()).where(
            *contacted, r.customer_phone.like("+1%")).group_by(prefix))
        by_state = states_of((head, int(n)) for head, n in counts)
    return {"policy": policy, "counted_on": "selection", "selected": int(selected),
            "suppressed_by": _suppressed_by(report), "by_state": by_state}


def states_of(counts: Iterable[tuple[str | None, int]]) -> dict[str, dict[str, Any]]:
    """``by_state`` from ``(first five characters of an E.164 number, how many)`` rows: the states with their
    own rules, each with its count, hours, cap and statute (the shape :func:`campaign_compliance` gives)."""
    by_state: dict[str, dict[str, Any]] = {}
    for head, n in counts:
        rule = _BY_AREA_CODE.get(head[2:]) if head and len(head) == 5 and head[2:].isdigit() else None
        if rule is None:
            continue
        entry = by_state.setdefault(rule.state, {"recipients": 0, "hours": rule.hours_text, "cap_per_24h": rule.cap,
                                                 "cap_counts_texts": rule.counts_texts, "source": rule.source})
        entry["recipients"] += int(n)
    return dict(sorted(by_state.items()))

"""A/B that picks the winner (DESIGN §11): ``variant_mode: "test_then_winner"``.

``test_percent`` of a campaign's customers (chosen by contact key at selection,
``ab_group = "test"``) are split between the versions; the rest (``"rest"``) wait.
Once one version is ahead on response with p < 0.05 — the two-sided
two-proportion test of the leader against the runner-up, with at least
:data:`MIN_SENT` sends each — or once ``test_hours`` have passed since the start
(then the leader wins, and the reason says it was not certain), the campaign
records ``winner_variant``, ``winner_decided_at`` and why, and the waiting customers
get the winner at once.  Works on every channel: a version may carry its own
subject, text or call script.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from core.lift import two_proportion_z_test
from core.models import Campaign, CampaignRecipient

log = logging.getLogger(__name__)

SIGNIFICANCE = 0.05
MIN_SENT = 20


@dataclass(frozen=True)
class Arm:
    """One version in the test: customers sent to, and those who responded."""

    name: str
    sent: int
    responded: int

    @property
    def rate(self) -> float:
        return self.responded / self.sent if self.sent else 0.0


@dataclass(frozen=True)
class Winner:
    variant: str
    reason: str


def decide(arms: Sequence[Arm], *, started_at: datetime, test_hours: float, now: datetime) -> Winner | None:
    """The winner, if the test says so now (pure)."""
    if not arms:
        return None
    ranked = sorted(arms, key=lambda a: (-a.rate, -a.sent, a.name))
    leader = ranked[0]
    runner = ranked[1] if len(ranked) > 1 else None
    if runner is not None and min(leader.sent, runner.sent) >= MIN_SENT and leader.rate > runner.rate:
        test = two_proportion_z_test(leader.responded, leader.sent, runner.responded, runner.sent)
        if test is not None and test[1] < SIGNIFICANCE:
            return Winner(leader.name, (
                f"Version {leader.name} responded better: {leader.rate:.1%} of {leader.sent:,} against "
                f"{runner.rate:.1%} of {runner.sent:,} for version {runner.name} (p = {test[1]:.3f}, so very "
                f"unlikely to be chance)."))
    if now >= started_at + timedelta(hours=test_hours):
        if runner is None or leader.rate == runner.rate:
            return Winner(leader.name, (
                f"After {test_hours:g} hours no version was ahead; version {leader.name} goes to everyone else."))
        return Winner(leader.name, (
            f"After {test_hours:g} hours version {leader.name} was ahead ({leader.rate:.1%} of {leader.sent:,} "
            f"against {runner.rate:.1%} of {runner.sent:,}), though not by enough to be sure; it goes to everyone "
            f"else."))
    return None


def arms_of(session: Session, campaign: Campaign) -> list[Arm]:
    r = CampaignRecipient
    counts: Mapping[str, tuple[int, int]] = {
        name: (int(sent or 0), int(responded or 0)) for name, sent, responded in session.execute(
            select(r.variant, func.count(r.sent_at), func.count(r.responded_at))
            .where(r.campaign_id == campaign.id, r.ab_group == "test", r.variant.is_not(None)).group_by(r.variant))}
    return [Arm(str(v["name"]), *counts.get(str(v["name"]), (0, 0))) for v in campaign.variants or []]


def settle_winner(session: Session, *, campaign_id: uuid.UUID, now: datetime) -> Winner | None:
    """Decide the winner of one campaign if the test says so, and hand it to the customers waiting for it
    (in the caller's transaction; the campaign row is locked)."""
    campaign = session.get(Campaign, campaign_id, with_for_update=True)
    if (campaign is None or campaign.status != "active" or campaign.variant_mode != "test_then_winner"
            or campaign.winner_variant is not None or campaign.started_at is None):
        return None
    winner = decide(arms_of(session, campaign), started_at=campaign.started_at, test_hours=campaign.test_hours,
                    now=now)
    if winner is None:
        return None
    campaign.winner_variant, campaign.winner_decided_at, campaign.winner_reason = winner.variant, now, winner.reason
    r = CampaignRecipient
    session.execute(update(r).where(r.campaign_id == campaign.id, r.ab_group == "rest", r.variant.is_(None))
                    .values(variant=winner.variant, updated_at=now))
    # those who waited for the winner go now (their later steps keep their own delays)
    session.execute(update(r).where(r.campaign_id == campaign.id, r.ab_group == "rest", r.status == "pending",
                                    r.step == 0, r.next_attempt_at > now).values(next_attempt_at=now))
    log.info("campaign %s: A/B winner %s (%s)", campaign.id, winner.variant, winner.reason)
    return winner


def settle_winners(factory: sessionmaker[Session], *, now: datetime) -> int:
    """Decide every running A/B test that can be decided; returns how many were."""
    with factory() as session:
        ids = list(session.scalars(select(Campaign.id).where(
            Campaign.status == "active", Campaign.variant_mode == "test_then_winner",
            Campaign.winner_variant.is_(None))))
    decided = 0
    for campaign_id in ids:
        with factory() as session, session.begin():
            if settle_winner(session, campaign_id=campaign_id, now=now) is not None:
                decided += 1
    return decided

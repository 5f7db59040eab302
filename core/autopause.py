"""Stop the bleeding: pause a campaign whose recent tries fail (DESIGN §11).

After each batch, the dispatcher looks at the campaign's last
:data:`WINDOW` finished tries (throttles and tries not sent at all left out: they
say nothing about the customers or the message).  When at least :data:`MINIMUM` of
them are there and the share that failed reaches the campaign's
``auto_pause_failure_rate`` (default 0.5), the campaign is paused with the reason
in words — how many failed, and the most common reason — so the owner can fix the
cause (a refused sender, a carrier filtering the texts, a list of dead addresses)
before the rest of the customers are burnt.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.eligibility import THROTTLE_CODES
from core.models import OutreachAttempt

WINDOW = 50
MINIMUM = 20
FAILED = frozenset({"permanent", "unknown", "retryable", "quota"})


@dataclass(frozen=True)
class Outcome:
    """One finished try: how it ended and why."""

    outcome: str
    error_code: str | None = None
    error_message: str | None = None


def verdict(recent: Sequence[Outcome], *, threshold: float) -> str | None:
    """Why the campaign should pause now, in words, or ``None`` (pure: the newest tries first)."""
    counted = [o for o in recent if o.outcome != "skipped"
               and not (o.outcome == "retryable" and o.error_code in THROTTLE_CODES)][:WINDOW]
    if len(counted) < MINIMUM:
        return None
    failed = [o for o in counted if o.outcome in FAILED]
    share = len(failed) / len(counted)
    if share < threshold:
        return None
    common = Counter((o.error_message or o.error_code or "no reason given").strip() for o in failed).most_common(1)
    reason = common[0][0] if common else "no reason given"
    return (f"Paused automatically: {len(failed)} of the last {len(counted)} tries failed ({share:.0%}), most "
            f"often “{reason[:200]}”. Check the cause — the sender, the provider account, the message, the list — "
            f"then resume the campaign.")


def check(session: Session, *, campaign_id: uuid.UUID, threshold: float) -> str | None:
    """:func:`verdict` over the campaign's most recent finished tries."""
    a = OutreachAttempt
    rows = session.execute(select(a.outcome, a.error_code, a.error_message)
                           .where(a.campaign_id == campaign_id, a.outcome.is_not(None))
                           .order_by(a.started_at.desc()).limit(WINDOW * 2)).all()
    return verdict([Outcome(*row) for row in rows], threshold=threshold)

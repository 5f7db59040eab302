"""Lift: how many customers came back because of a campaign, with its uncertainty (DESIGN §11).

A campaign with ``holdout_percent`` keeps that share of its matched customers back
(status ``holdout``, never contacted, chosen by contact key).  A customer *returned*
when a new lead of theirs (from outside the campaign: the voice agent, the CRM, an
import) arrives within ``attribution_days`` of the campaign's start.  Lift compares
the return rate of the contacted customers with the holdout's:

- ``absolute`` = contacted rate − holdout rate; ``relative`` = absolute / holdout rate;
- ``ci_low``/``ci_high``: the 95 % interval of the difference (normal approximation,
  unpooled standard error ``√(p₁(1−p₁)/n₁ + p₂(1−p₂)/n₂)``);
- ``p_value``: the two-sided two-proportion z-test (pooled), the same test the A/B
  comparison uses.

In words: "about 12 more customers came back than would have without the campaign
(± 7)", i.e. ``absolute × contacted`` and ``1.96 × SE × contacted``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

Z95 = 1.959963984540054


def two_proportion_z_test(x1: int, n1: int, x2: int, n2: int) -> tuple[float, float] | None:
    """Two-sided z-test of ``x1/n1`` against ``x2/n2`` (pooled); ``(z, p)`` or ``None`` when undefined."""
    if n1 <= 0 or n2 <= 0:
        return None
    pooled = (x1 + x2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        return None
    z = (x1 / n1 - x2 / n2) / se
    return z, math.erfc(abs(z) / math.sqrt(2))


@dataclass(frozen=True)
class Lift:
    """The contacted customers' return rate against the holdout's."""

    contacted: int
    contacted_returned: int
    holdout: int
    holdout_returned: int
    contacted_rate: float
    holdout_rate: float
    absolute: float
    relative: float | None
    ci_low: float
    ci_high: float
    p_value: float | None

    @property
    def extra_customers(self) -> float:
        """How many more customers came back than would have without the campaign (an estimate)."""
        return self.absolute * self.contacted

    @property
    def margin(self) -> float:
        """Half the width of the 95 % interval, in customers."""
        return (self.ci_high - self.ci_low) / 2 * self.contacted

    @property
    def significant(self) -> bool:
        return self.p_value is not None and self.p_value < 0.05

    def as_dict(self) -> dict[str, Any]:
        """The API's ``lift`` object."""
        out = asdict(self)
        return {k: out[k] for k in ("contacted_rate", "holdout_rate", "absolute", "relative", "ci_low", "ci_high",
                                    "p_value")}

    def sentence(self) -> str:
        """The answer in words, uncertainty included."""
        extra, margin = round(self.extra_customers), round(self.margin)
        who = f"{abs(extra)} more customer{'s' if abs(extra) != 1 else ''}"
        if extra > 0:
            head = f"About {who} came back than would have without the campaign (± {margin})."
        elif extra < 0:
            head = (f"About {abs(extra)} fewer customer{'s' if abs(extra) != 1 else ''} came back than in the "
                    f"group that was not contacted (± {margin}).")
        else:
            head = f"As many customers came back as would have without the campaign (± {margin})."
        rates = (f" {self.contacted_rate:.1%} of the {self.contacted:,} contacted came back, against "
                 f"{self.holdout_rate:.1%} of the {self.holdout:,} kept back.")
        if self.p_value is None:
            return head + rates
        if self.significant:
            return head + rates + f" The difference is very unlikely to be chance (p = {self.p_value:.3f})."
        return head + rates + f" It could still be chance (p = {self.p_value:.2f}): more data will tell."


def lift(*, contacted: int, contacted_returned: int, holdout: int, holdout_returned: int) -> Lift | None:
    """Lift of a campaign, or ``None`` without a holdout (or without contacted customers)."""
    if contacted <= 0 or holdout <= 0:
        return None
    p1, p2 = contacted_returned / contacted, holdout_returned / holdout
    diff = p1 - p2
    se = math.sqrt(p1 * (1 - p1) / contacted + p2 * (1 - p2) / holdout)
    test = two_proportion_z_test(contacted_returned, contacted, holdout_returned, holdout)
    return Lift(contacted=contacted, contacted_returned=contacted_returned, holdout=holdout,
                holdout_returned=holdout_returned, contacted_rate=round(p1, 6), holdout_rate=round(p2, 6),
                absolute=round(diff, 6), relative=round(diff / p2, 6) if p2 > 0 else None,
                ci_low=round(diff - Z95 * se, 6), ci_high=round(diff + Z95 * se, 6),
                p_value=round(test[1], 6) if test else None)

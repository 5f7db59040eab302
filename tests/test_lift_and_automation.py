"""The numbers behind "what worked" (DESIGN §11), against independent computations: lift and its
interval, the A/B winner at the edge of significance and at ``test_hours``, the auto-pause threshold,
and the best-time model's ordering and its behaviour with no history."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from core import abtest, autopause, besttime
from core.lift import lift, two_proportion_z_test

# --- lift ----------------------------------------------------------------------------------------------------


def reference(x1: int, n1: int, x2: int, n2: int) -> tuple[float, float, float, float]:
    """Difference, its 95 % interval (unpooled normal) and the pooled two-sided p-value — by scipy."""
    p1, p2 = x1 / n1, x2 / n2
    se = math.sqrt(p1 * (1 - p1) / n1 + p2 * (1 - p2) / n2)
    z95 = stats.norm.ppf(0.975)
    pooled = (x1 + x2) / (n1 + n2)
    z = (p1 - p2) / math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    return p1 - p2, p1 - p2 - z95 * se, p1 - p2 + z95 * se, 2 * stats.norm.sf(abs(z))


def test_lift_of_a_textbook_case():
    # 360 contacted, 54 came back (15 %); 40 kept back, 2 came back (5 %)
    result = lift(contacted=360, contacted_returned=54, holdout=40, holdout_returned=2)
    assert result is not None
    diff, low, high, p = reference(54, 360, 2, 40)
    assert result.absolute == pytest.approx(diff, abs=1e-6) == pytest.approx(0.10)
    assert (result.ci_low, result.ci_high) == (pytest.approx(low, abs=1e-6), pytest.approx(high, abs=1e-6))
    assert result.p_value == pytest.approx(p, abs=1e-6)
    assert result.relative == pytest.approx(2.0)  # three times the holdout's rate: +200 %
    assert round(result.extra_customers) == 36
    assert result.sentence().startswith("About 36 more customers came back than would have without the campaign (± ")


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 5000), st.integers(1, 5000), st.data())
def test_lift_matches_scipy_everywhere(n1, n2, data):
    x1 = data.draw(st.integers(0, n1))
    x2 = data.draw(st.integers(0, n2))
    result = lift(contacted=n1, contacted_returned=x1, holdout=n2, holdout_returned=x2)
    assert result is not None
    diff, low, high, p = reference(x1, n1, x2, n2) if 0 < x1 + x2 < n1 + n2 else (x1 / n1 - x2 / n2, 0, 0, None)
    assert result.absolute == pytest.approx(diff, abs=2e-6)
    if p is None:  # nobody, or everybody, came back: no test is possible
        assert result.p_value is None
        return
    assert result.p_value == pytest.approx(p, abs=2e-6)
    assert result.ci_low == pytest.approx(low, abs=2e-6) and result.ci_high == pytest.approx(high, abs=2e-6)
    assert result.ci_low <= result.absolute <= result.ci_high


def test_no_lift_without_a_holdout_or_contacts():
    assert lift(contacted=100, contacted_returned=5, holdout=0, holdout_returned=0) is None
    assert lift(contacted=0, contacted_returned=0, holdout=10, holdout_returned=1) is None


def test_a_lift_that_may_be_chance_says_so():
    result = lift(contacted=90, contacted_returned=9, holdout=10, holdout_returned=1)
    assert result is not None and not result.significant
    assert "could still be chance" in result.sentence()
    worse = lift(contacted=90, contacted_returned=3, holdout=10, holdout_returned=2)
    assert worse is not None and worse.sentence().startswith("About 15 fewer customers came back")


# --- the A/B winner ------------------------------------------------------------------------------------------

START = datetime(2026, 6, 15, 15, 0, tzinfo=UTC)


def test_the_winner_is_decided_exactly_at_the_edge_of_significance():
    # A: 14 of 40; B: x of 40 — find where scipy's p crosses 0.05
    for x in range(0, 14):
        p = two_proportion_z_test(14, 40, x, 40)[1]  # type: ignore[index]
        verdict = abtest.decide([abtest.Arm("A", 40, 14), abtest.Arm("B", 40, x)], started_at=START,
                                test_hours=24, now=START + timedelta(hours=1))
        _, _, _, expected = reference(14, 40, x, 40)
        assert p == pytest.approx(expected, abs=1e-9)
        assert (verdict is not None) == (expected < 0.05), (x, expected)
        if verdict is not None:
            assert verdict.variant == "A" and "very unlikely to be chance" in verdict.reason


def test_no_early_winner_below_the_minimum_sends():
    arms = [abtest.Arm("A", abtest.MIN_SENT - 1, 15), abtest.Arm("B", 40, 0)]
    assert abtest.decide(arms, started_at=START, test_hours=24, now=START + timedelta(hours=23, minutes=59)) is None
    arms = [abtest.Arm("A", abtest.MIN_SENT, 15), abtest.Arm("B", 40, 0)]
    assert abtest.decide(arms, started_at=START, test_hours=24, now=START + timedelta(hours=1)) is not None


def test_at_test_hours_the_leader_wins_and_the_reason_says_it_was_not_certain():
    arms = [abtest.Arm("A", 30, 4), abtest.Arm("B", 30, 6), abtest.Arm("C", 30, 5)]
    assert abtest.decide(arms, started_at=START, test_hours=24, now=START + timedelta(hours=23, minutes=59)) is None
    verdict = abtest.decide(arms, started_at=START, test_hours=24, now=START + timedelta(hours=24))
    assert verdict is not None and verdict.variant == "B" and "not by enough to be sure" in verdict.reason
    tie = abtest.decide([abtest.Arm("A", 30, 3), abtest.Arm("B", 30, 3)], started_at=START, test_hours=24,
                        now=START + timedelta(hours=25))
    assert tie is not None and tie.variant == "A" and "no version was ahead" in tie.reason


# --- auto-pause ----------------------------------------------------------------------------------------------


def outcomes(failed: int, fine: int, **kw: str) -> list[autopause.Outcome]:
    bad = [autopause.Outcome("permanent", kw.get("code"), kw.get("message", "21610 unsubscribed recipient"))]
    return bad * failed + [autopause.Outcome("accepted")] * fine


def test_auto_pause_at_the_threshold_and_not_below():
    assert autopause.verdict(outcomes(10, 10), threshold=0.5) is not None  # 50 %: pause
    assert autopause.verdict(outcomes(9, 11), threshold=0.5) is None  # 45 %: keep going
    assert autopause.verdict(outcomes(5, 15), threshold=0.25) is not None
    reason = autopause.verdict(outcomes(12, 8), threshold=0.5)
    assert reason is not None and "12 of the last 20 tries failed (60%)" in reason and "21610" in reason


def test_auto_pause_needs_enough_tries_and_ignores_throttles_and_skips():
    assert autopause.verdict(outcomes(autopause.MINIMUM - 1, 0), threshold=0.5) is None
    throttled = [autopause.Outcome("retryable", "rate_limited", "429")] * 40
    skipped = [autopause.Outcome("skipped", None, "outside the send window")] * 40
    assert autopause.verdict(throttled + skipped + outcomes(2, 18), threshold=0.5) is None
    # only the last WINDOW count: an old bad spell is forgotten
    recent_fine = outcomes(0, autopause.WINDOW) + outcomes(autopause.WINDOW, 0)
    assert autopause.verdict(recent_fine, threshold=0.5) is None


# --- best time to reach --------------------------------------------------------------------------------------


def history(rows: list[tuple[str, int, int, int]]) -> list[besttime.Observation]:
    """``(contact, hour, tries, successes)`` → observations."""
    out = []
    for contact, hour, tries, successes in rows:
        out += [besttime.Observation(contact, hour, i < successes) for i in range(tries)]
    return out


def test_with_no_history_the_typical_shape_decides():
    model = besttime.Model.from_observations("call", [])
    allowed = list(range(9, 20))
    rates = [model.rate(hr) for hr in allowed]
    assert rates == [besttime.DEFAULT_RATE["call"] * besttime.shape("call", hr) for hr in allowed]
    assert model.best_hour("+12125550101", allowed) == 10  # late morning, the earliest of the best
    assert model.best_hour("+12125550101", [14, 15, 16]) == 16
    assert model.best_hour("+12125550101", []) is None


def test_the_business_history_reorders_the_hours():
    # calls at 9 are answered 60 % of the time, at 10 and 17 only 10 %
    model = besttime.Model.from_observations("call", history([
        ("a", 9, 100, 60), ("b", 10, 100, 10), ("c", 17, 100, 10), ("d", 14, 20, 4)]))
    allowed = list(range(9, 20))
    assert model.best_hour("new-customer", allowed) == 9
    ranked = sorted(allowed, key=model.rate, reverse=True)
    assert ranked[0] == 9 and ranked.index(10) > ranked.index(13)  # 13 has no data: the prior
    # smoothing: the rate at 9 sits between the observed 60 % and the prior, nearer the data
    assert 0.30 < model.rate(9) < 0.60 and model.rate(9) > (60 + 0) / (100 + besttime.PRIOR_WEIGHT)


def test_a_customer_with_a_history_of_their_own_gets_their_hour():
    rows = [("a", 9, 100, 60), ("b", 18, 100, 20)]
    evening_person = [("+12125550199", 18, 4, 4), ("+12125550199", 9, 3, 0)]
    model = besttime.Model.from_observations("call", history(rows + evening_person))
    allowed = list(range(9, 20))
    assert model.best_hour("+12125550199", allowed) == 18
    assert model.best_hour("somebody-else", allowed) == 9
    two_tries = besttime.Model.from_observations("call", history([*rows, ("+12125550177", 18, 2, 2)]))
    assert two_tries.best_hour("+12125550177", allowed) == 9  # fewer than MIN_OWN: the business's hour


def test_the_planned_moment_is_the_next_best_hour_in_the_customers_time():
    model = besttime.Model.from_observations("call", history([("a", 17, 100, 70)]))
    rid = uuid.uuid4()
    new_york = ZoneInfo("America/New_York")
    morning = datetime(2026, 6, 15, 9, 30, tzinfo=new_york)
    planned = besttime.planned_moment(model, contact_key="+12125550101", recipient_id=rid,
                                      zones=["America/New_York"], send_window=None, quiet_hours=True, hours=None,
                                      now=morning)
    assert planned is not None and planned.astimezone(new_york).hour == 17
    assert planned.astimezone(new_york).minute == besttime.spread_minute(rid)
    evening = datetime(2026, 6, 15, 18, 5, tzinfo=new_york)  # past today's best hour: tomorrow's
    later = besttime.planned_moment(model, contact_key="+12125550101", recipient_id=rid, zones=["America/New_York"],
                                    send_window=None, quiet_hours=True, hours=None, now=evening)
    assert later is not None and later.astimezone(new_york).date() == evening.date() + timedelta(days=1)
    # a window that leaves out the best hour: the best of what it allows
    narrow = {"start": "09:00", "end": "12:00", "days": ["mon", "tue", "wed", "thu", "fri"]}
    inside = besttime.planned_moment(model, contact_key="+12125550101", recipient_id=rid, zones=["America/New_York"],
                                     send_window=narrow, quiet_hours=True, hours=None, now=morning)
    assert inside is not None and 9 <= inside.astimezone(new_york).hour < 12

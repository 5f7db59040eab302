"""Send windows and calling hours in the recipient's local time (several countries,
multi-zone numbers, DST edges), with an injected clock."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from core.contacts import phone_timezones
from core.windows import describe, next_opening, recipient_zones

WEEKDAYS = {"start": "09:00", "end": "20:00", "days": ["mon", "tue", "wed", "thu", "fri"]}
ALL_DAY = {"start": "00:00", "end": "24:00"}
MON = datetime(2026, 6, 15, 15, 0, tzinfo=UTC)  # Monday: 11:00 New York, 08:00 Los Angeles, 16:00 London


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def opening(now: datetime, phone: str | None, window: dict, *, quiet: bool, fallback: str = "America/New_York"):
    return next_opening(now, zones=recipient_zones(phone, fallback), send_window=window, quiet_hours=quiet)


@pytest.mark.parametrize(("phone", "expected"), [
    ("+12125550123", MON),                      # New York 11:00: inside
    ("+13105550123", utc(2026, 6, 15, 16, 0)),  # Los Angeles 08:00: opens at 09:00 LA
    ("+12085550123", utc(2026, 6, 15, 16, 0)),  # Boise 09:00 but Los Angeles 08:00: both must be open
    ("+442079460123", MON),                     # London 16:00
    ("+61291234567", utc(2026, 6, 15, 23, 0)),  # Sydney 01:00 Tuesday: opens 09:00 Sydney
    ("+61412345678", utc(2026, 6, 16, 2, 30)),  # Australian mobile: every zone from Cocos to Lord Howe
])
def test_numbers_in_several_countries_and_zones(phone, expected):
    assert opening(MON, phone, WEEKDAYS, quiet=True) == expected


def test_multi_zone_numbers_map_to_every_zone():
    # Idaho's 208: the number's own listing, and every zone the area code's exchanges lie in
    assert set(recipient_zones("+12085550123", "UTC")) == {"America/Boise", "America/Los_Angeles", "America/Denver"}
    assert len(recipient_zones("+18005550123", "UTC")) > 30  # toll-free: every NANP zone
    assert recipient_zones(None, "America/Chicago") == ("America/Chicago",)


def test_toll_free_number_has_no_common_window_for_office_hours():
    # from Guam (UTC+10) to Pago Pago (UTC-11) there is no 09:00–20:00 that fits everywhere
    assert opening(MON, "+18005550123", WEEKDAYS, quiet=True) is None
    reason = describe(phone_timezones("+18005550123"), WEEKDAYS, quiet_hours=True)
    assert "every time zone" in reason and "more" in reason
    # a whole-day window leaves the calling hours, which do overlap late in the US evening
    assert opening(MON, "+18005550123", ALL_DAY, quiet=True) == utc(2026, 6, 15, 22, 0)


def test_email_recipient_uses_the_campaign_zone_and_no_calling_hours():
    early = {"start": "06:00", "end": "07:00"}
    six_thirty_chicago = utc(2026, 6, 15, 11, 30)
    assert opening(six_thirty_chicago, None, early, quiet=False, fallback="America/Chicago") == six_thirty_chicago
    # the same window for a call or SMS is outside 08:00–21:00 altogether
    assert opening(six_thirty_chicago, None, early, quiet=True, fallback="America/Chicago") is None
    assert "legal calling hours" in describe(("America/Chicago",), early, quiet_hours=True)


def test_calling_hours_apply_whatever_the_campaign_says():
    ten_pm_ny = utc(2026, 6, 16, 2, 0)  # Monday 22:00 in New York
    assert opening(ten_pm_ny, "+12125550123", ALL_DAY, quiet=False) == ten_pm_ny
    assert opening(ten_pm_ny, "+12125550123", ALL_DAY, quiet=True) == utc(2026, 6, 16, 12, 0)  # 08:00 EDT


def test_window_days_are_local_days():
    saturday = utc(2026, 6, 20, 15, 0)
    assert opening(saturday, "+12125550123", WEEKDAYS, quiet=True) == utc(2026, 6, 22, 13, 0)  # Monday 09:00
    # Friday 23:30 UTC: still Friday 19:30 in New York, already Saturday in London
    friday_night = utc(2026, 6, 19, 23, 30)
    assert opening(friday_night, "+12125550123", WEEKDAYS, quiet=True) == friday_night
    assert opening(friday_night, "+442079460123", WEEKDAYS, quiet=True) == utc(2026, 6, 22, 8, 0)


def test_spring_forward_gap_opens_at_the_change():
    window = {"start": "02:30", "end": "05:00", "days": ["sun"]}
    # 02:30 does not exist in New York on 2026-03-08: the clock jumps from 02:00 EST to 03:00 EDT
    assert opening(utc(2026, 3, 8, 5, 0), "+12125550123", window, quiet=False) == utc(2026, 3, 8, 7, 0)


def test_fall_back_moves_the_calling_hours_in_utc():
    # 2026-11-01: New York goes back to EST, so 08:00 local is 13:00 UTC (it was 12:00 UTC the day before)
    assert opening(utc(2026, 10, 31, 11, 30), "+12125550123", ALL_DAY, quiet=True) == utc(2026, 10, 31, 12, 0)
    assert opening(utc(2026, 11, 1, 12, 30), "+12125550123", ALL_DAY, quiet=True) == utc(2026, 11, 1, 13, 0)
    # the repeated hour 01:00–02:00 is inside a 01:00–01:45 window both times
    window = {"start": "01:00", "end": "01:45"}
    assert opening(utc(2026, 11, 1, 5, 10), None, window, quiet=False) == utc(2026, 11, 1, 5, 10)   # 01:10 EDT
    assert opening(utc(2026, 11, 1, 6, 10), None, window, quiet=False) == utc(2026, 11, 1, 6, 10)   # 01:10 EST
    assert opening(utc(2026, 11, 1, 6, 50), None, window, quiet=False) == utc(2026, 11, 2, 6, 0)    # next day


def test_zones_changing_dst_on_different_dates():
    zones = ("America/New_York", "Europe/London")
    # 19:30 UTC on 20 March: London 19:30 (GMT), New York 15:30 (EDT) — both inside 09:00–20:00
    assert next_opening(utc(2026, 3, 20, 19, 30), zones=zones, send_window=ALL_DAY | {"start": "09:00",
                        "end": "20:00"}, quiet_hours=False) == utc(2026, 3, 20, 19, 30)
    # 30 March, London on BST: 20:30 local; the shared window reopens at 09:00 New York = 13:00 UTC
    assert next_opening(utc(2026, 3, 30, 19, 30), zones=zones, send_window={"start": "09:00", "end": "20:00"},
                        quiet_hours=False) == utc(2026, 3, 31, 13, 0)


@pytest.mark.parametrize("phone", ["+18502220123", "+18504330123", "+14485550123"],
                         ids=["tallahassee-exchange", "pensacola-exchange", "448-overlay"])
def test_a_florida_panhandle_number_rings_in_both_of_its_zones(phone):
    """850 spans Eastern (Tallahassee) and Central (Pensacola) time, and its 448 overlay's exchanges are
    not listed at all: a number moves with its owner inside the area code, so the calling hours must hold
    in both zones — never 08:00 Eastern, which is 07:00 in Pensacola."""
    assert set(recipient_zones(phone, "UTC")) == {"America/New_York", "America/Chicago"}
    eight_eastern = utc(2026, 6, 15, 12, 0)
    assert opening(eight_eastern, phone, ALL_DAY, quiet=True) == utc(2026, 6, 15, 13, 0)  # 08:00 Central
    # a number of one zone is not widened: Miami is Eastern only
    assert recipient_zones("+13055550123", "UTC") == ("America/New_York",)
    assert opening(eight_eastern, "+13055550123", ALL_DAY, quiet=True) == eight_eastern

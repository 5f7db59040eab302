"""A state's cap on calls (DESIGN §10): at most 3 calls from one business to a Florida number in 24 hours,
across all its campaigns — the third goes out, the fourth waits until the first is a day old, even when two
scheduler processes race for it.  Counted at the fake Vapi, where the calls arrive."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from core import analytics
from core.clock import ManualClock
from core.dispatch import run_campaign_pass
from core.models import CampaignRecipient, OutreachAttempt
from tests.channels import helpers
from tests.engine import helpers as h

ROOT = Path(__file__).resolve().parents[2]
NEW_YORK = ZoneInfo("America/New_York")
MONDAY = datetime(2026, 6, 15, tzinfo=NEW_YORK)


def _florida(session, n: int):
    """A business with ``n`` customers on Miami numbers (area code 305: Florida's rule)."""
    profile = h.business(session)
    numbers = [f"+1305555{i:04d}" for i in range(n)]
    h.add_leads(session, profile, [{"phone": p, "name": f"Pat{i} Doe"} for i, p in enumerate(numbers)],
                now=MONDAY)
    session.commit()
    return profile, profile.id, numbers


def _call_campaign(session, profile, at: datetime):
    cid = h.campaign(session, profile, method="call", now=at, max_concurrent_calls=100)
    session.commit()
    return cid


def _run(factory, pid, cid, at: datetime, settings) -> None:
    run_campaign_pass(factory, profile_id=pid, campaign_id=cid, clock=ManualClock(at), worker="earlier",
                      budget_seconds=10, settings=settings)


def _rows(session, cid):
    """The campaign's recipients (plain rows: the read's transaction ends, schedulers may write)."""
    r = CampaignRecipient
    rows = session.execute(select(r.status, r.next_attempt_at, r.customer_phone, r.waiting_reason)
                           .where(r.campaign_id == cid)).all()
    session.rollback()
    return rows


def test_the_third_call_of_the_day_goes_out_the_fourth_waits_for_the_first_to_age(session, factory, fake_vapi):
    settings = helpers.live_settings(vapi=fake_vapi)
    profile, pid, (number,) = _florida(session, 1)
    for hour in (9, 11, 13, 15):
        cid = _call_campaign(session, profile, MONDAY.replace(hour=hour))
        _run(factory, pid, cid, MONDAY.replace(hour=hour, minute=1), settings)
    assert len(fake_vapi.calls_to(number)) == 3  # 09:01, 11:01, 13:01
    (waiting,) = _rows(session, cid)
    assert waiting.status == "queued"
    # it may go once the 09:01 call is 24 hours old
    assert waiting.next_attempt_at == MONDAY.replace(hour=9, minute=1) + timedelta(days=1)
    # and says why, with the statute: on the campaign's customer list and in the API
    assert waiting.waiting_reason == ("3 calls in 24 hours already reached this FL number (Florida Telephone "
                                      "Solicitation Act (CS/SB 1120, 2021), Fla. Stat. § 501.616(6)(a)–(b))")
    page, _ = analytics.recipients_page(session, profile_id=pid, campaign_id=cid)
    session.rollback()
    assert page.loc[0, "waiting_reason"] == waiting.waiting_reason
    _run(factory, pid, cid, MONDAY.replace(hour=9, minute=1) + timedelta(days=1, seconds=5), settings)
    assert len(fake_vapi.calls_to(number)) == 4
    (called,) = _rows(session, cid)
    assert called.status != "queued" and called.waiting_reason is None


def _racer(db_url: str, vapi_url: str, start: Path, moment: datetime, worker: str, pid, cid) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "tests.channels.cap_racer", db_url, vapi_url, str(start),
                             moment.isoformat(), worker, str(pid), str(cid)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def test_two_scheduler_processes_never_both_place_the_fourth_call(db_url, backend, session, factory, fake_vapi,
                                                                  tmp_path):
    """Each customer has had 2 calls today; two campaigns each want to call all of them, and two scheduler
    processes dispatch them at the same moment, one each.  Every customer gets exactly one more call (the
    third); the other campaign's call waits for the first call of the day to be 24 hours old."""
    if backend != "postgresql":
        pytest.skip("several scheduler processes need PostgreSQL; SQLite runs one scheduler (see README)")
    settings = helpers.live_settings(vapi=fake_vapi)
    profile, pid, numbers = _florida(session, 60)
    for hour in (9, 11):
        _run(factory, pid, _call_campaign(session, profile, MONDAY.replace(hour=hour)),
             MONDAY.replace(hour=hour, minute=1), settings)
    assert {len(fake_vapi.calls_to(n)) for n in numbers} == {2}
    racing = [_call_campaign(session, profile, MONDAY.replace(hour=13)) for _ in range(2)]
    start = tmp_path / "go"
    moment = MONDAY.replace(hour=14)
    procs = [_racer(db_url, fake_vapi.url, start, moment, f"scheduler-{k}", pid, cid)
             for k, cid in enumerate(racing)]
    time.sleep(1.0)  # both have imported everything and wait for the signal
    start.touch()
    for p in procs:
        _out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()[-3000:]
    assert {n: len(fake_vapi.calls_to(n)) for n in numbers} == {n: 3 for n in numbers}
    rows = [r for cid in racing for r in _rows(session, cid)]
    called = [r for r in rows if r.status != "queued"]
    waiting = [r for r in rows if r.status == "queued"]
    assert sorted(r.customer_phone for r in called) == sorted(numbers)
    assert sorted(r.customer_phone for r in waiting) == sorted(numbers)
    assert {r.next_attempt_at for r in waiting} == {MONDAY.replace(hour=9, minute=1) + timedelta(days=1)}
    workers = session.scalars(select(OutreachAttempt.worker).where(OutreachAttempt.campaign_id.in_(racing))
                              .distinct()).all()
    session.rollback()
    assert sorted(workers) == ["scheduler-0", "scheduler-1"]

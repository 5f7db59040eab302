"""Real scheduler processes (``python scheduler.py``) against the fake Resend server:
several at once, killed with SIGKILL and restarted, stopped with SIGTERM.  What the
customers got is counted at the fake.

Several schedulers at once need PostgreSQL (row locks, SKIP LOCKED); on SQLite one
scheduler process is the supported mode, so those tests run on PostgreSQL only.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from bisect import bisect_right
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import pytest
from sqlalchemy import func, select

from core.db import utcnow
from core.models import Campaign, CampaignRecipient, OutreachAttempt
from tests.engine import helpers as h
from tests.fakes.resend import DEFAULT_KEY, FakeResend, FakeResendClient, fake_resend_process

ROOT = Path(__file__).resolve().parents[2]
ONLY_PG = "several scheduler processes need PostgreSQL; SQLite runs one scheduler (see README)"


def scheduler_env(db_url: str, fake: FakeResend | FakeResendClient, **env: str) -> dict[str, str]:
    """A scheduler's environment: the test database, live Resend pointed at the fake, fast ticks."""
    values = {**os.environ, "DATABASE_URL": db_url, "RESEND_API_KEY": DEFAULT_KEY,
              "RESEND_FROM": "hello@bellavista.example", "RESEND_BASE_URL": fake.url, "SECRET_KEY": "engine-tests",
              "RESEND_MAX_PER_SECOND": "100000", "SCHEDULER_TICK_SECONDS": "0.2", "SCHEDULER_BATCH_SIZE": "40",
              "LOG_LEVEL": "WARNING", **env}
    for name in ("TWILIO_ACCOUNT_SID", "VAPI_API_KEY"):
        values.pop(name, None)
    return values


@contextmanager
def schedulers(db_url: str, fake: FakeResend | FakeResendClient, n: int,
               **env: str) -> Iterator[list[subprocess.Popen[bytes]]]:
    values = scheduler_env(db_url, fake, **env)
    procs = [start(values) for _ in range(n)]
    try:
        yield procs
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait(10)


_LOGS: dict[int, IO[bytes]] = {}


def start(env: dict[str, str]) -> subprocess.Popen[bytes]:
    """A scheduler process; what it logs goes to a temporary file (see :func:`output`)."""
    log = tempfile.TemporaryFile()  # noqa: SIM115 - read by output(), closed at exit
    process = subprocess.Popen([sys.executable, "scheduler.py"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                               stderr=log)
    _LOGS[process.pid] = log
    return process


def output(process: subprocess.Popen[bytes]) -> str:
    """The end of what a scheduler process logged (for the message of a failed assertion)."""
    log = _LOGS[process.pid]
    log.seek(0)
    return log.read().decode("utf-8", "replace")[-4000:]


def seed(session, n: int, *, campaigns: int = 1, **fields) -> list:
    profile = h.business(session)
    h.add_leads(session, profile, h.emails(n), now=utcnow())
    ids = []
    per = n // campaigns
    for k in range(campaigns):
        ids.append(h.campaign(session, profile, now=utcnow(), target_criteria={"filters": [
            {"field": "customer_email", "op": "in", "value": [f"customer{i}@example.com"
                                                              for i in range(k * per, (k + 1) * per)]}]}, **fields))
    session.commit()
    return ids


def wait_completed(factory, ids, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with factory() as s:
            left = s.scalar(select(func.count()).select_from(Campaign)
                            .where(Campaign.id.in_(ids), Campaign.status != "completed"))
        if left == 0:
            return
        time.sleep(0.25)
    pytest.fail(f"campaigns not completed after {timeout} s")


def max_in_window(times: list[float], width: float) -> int:
    return max((bisect_right(times, t + width) - i for i, t in enumerate(times)), default=0)


def test_four_schedulers_send_each_email_exactly_once(db_url, backend, session, factory, fake_resend):
    if backend != "postgresql":
        pytest.skip(ONLY_PG)
    ids = seed(session, 2000, campaigns=2)
    with schedulers(db_url, fake_resend, 4):
        wait_completed(factory, ids, 120)
    per_address = fake_resend.emails_per_address()
    assert len(per_address) == 2000 and set(per_address.values()) == {1}
    assert set(fake_resend.posts_per_key().values()) == {1}  # not even a replay was needed
    with factory() as s:
        statuses = dict(s.execute(select(CampaignRecipient.status, func.count())
                                  .group_by(CampaignRecipient.status)).all())
        workers = s.scalar(select(func.count(func.distinct(OutreachAttempt.worker))))
    assert statuses == {"sent": 2000} and workers == 4  # they shared the work
    for cid in ids:
        h.assert_results_match(session, cid)


def test_kill_9_at_random_points_never_sends_twice(db_url, backend, session, factory, fake_resend):
    if backend != "postgresql":
        pytest.skip(ONLY_PG)
    (cid,) = seed(session, 200)
    rng = random.Random(20261124)
    env = {"SCHEDULER_LEASE_SECONDS": "10", "RESEND_MAX_PER_SECOND": "50"}
    kills = left_open = 0
    with schedulers(db_url, fake_resend, 1, **env) as procs:
        values = scheduler_env(db_url, fake_resend, **env)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and len(fake_resend.emails) < 170:
            # once the (re)started process is sending, kill it at a random moment
            before, started = len(fake_resend.emails), time.monotonic()
            while len(fake_resend.emails) == before and time.monotonic() - started < 5:
                time.sleep(0.01)
            time.sleep(rng.uniform(0.0, 0.4))
            procs[-1].send_signal(signal.SIGKILL)
            procs[-1].wait(10)
            kills += 1
            with factory() as s:
                left_open += s.scalar(select(func.count()).select_from(OutreachAttempt)
                                      .where(OutreachAttempt.outcome.is_(None))) or 0
            procs.append(start(values))
        wait_completed(factory, [cid], 90)
    assert kills >= 5 and left_open > 0  # the kills did land between a try and its outcome
    per_address = fake_resend.emails_per_address()
    assert len(per_address) == 200 and set(per_address.values()) == {1}
    assert not [r for r in fake_resend.requests if r.name == "invalid_idempotent_request"]
    with factory() as s:
        rows = s.execute(select(CampaignRecipient.status, CampaignRecipient.claimed_by,
                                CampaignRecipient.next_attempt_at)).all()
        unsettled = s.scalar(select(func.count()).select_from(OutreachAttempt)
                             .where(OutreachAttempt.outcome.is_(None)))
    assert {status for status, _, _ in rows} == {"sent"}
    assert all(claimed is None and due is None for _, claimed, due in rows) and unsettled == 0
    h.assert_results_match(session, cid)


def test_limits_hold_across_processes(db_url, backend, session, factory):
    if backend != "postgresql":
        pytest.skip(ONLY_PG)
    # measured at a fake in a process of its own, so its timestamps are not delayed by this one
    with fake_resend_process() as fake:
        # a campaign limit: 600 a minute, so a burst of 60 and then 10 a second
        (slow,) = seed(session, 80, rate_limit_per_minute=600)
        with schedulers(db_url, fake, 3):
            wait_completed(factory, [slow], 60)
        times = fake.accepted_times()
        assert len(times) == 80
        for width in (1.0, 2.0, 4.0):
            assert max_in_window(times, width) <= 10 * width + 60 + 3
        assert times[-1] - times[0] >= (80 - 60 - 1) / 10 - 0.5  # paced, not sent at once
        # a provider limit shared by every campaign and process: 20 a second
        fake.reset()
        second = seed(session, 60, campaigns=3)
        with schedulers(db_url, fake, 3, RESEND_MAX_PER_SECOND="20"):
            wait_completed(factory, second, 60)
        times = fake.accepted_times()
    assert len(times) == 60
    # the limits space the moments sends *start*; on this busy two-core machine a request can then
    # take some tens of milliseconds more than the next one to reach the server (an interpreter lock
    # and three schedulers sharing two cores), so a window may see a couple more than the limit —
    # against sixty at once without it
    assert max_in_window(times, 1.0) <= 20 + 3 and max_in_window(times, 2.0) <= 40 + 3
    assert times[-1] - times[0] >= 59 / 20 - 0.5


def test_sigterm_finishes_sends_under_way_and_releases_the_rest(db_url, session, factory, fake_resend):
    (cid,) = seed(session, 200)
    with schedulers(db_url, fake_resend, 1, RESEND_MAX_PER_SECOND="25") as procs:
        deadline = time.monotonic() + 30
        while len(fake_resend.emails) < 30 and time.monotonic() < deadline:
            time.sleep(0.05)
        procs[0].send_signal(signal.SIGTERM)
        assert procs[0].wait(20) == 0, output(procs[0])
    sent_at_fake = len(fake_resend.emails)
    assert 30 <= sent_at_fake < 200
    with factory() as s:
        rows = s.execute(select(CampaignRecipient.status, CampaignRecipient.claimed_by)).all()
        unsettled = s.scalar(select(func.count()).select_from(OutreachAttempt)
                             .where(OutreachAttempt.outcome.is_(None)))
    assert all(claimed is None for _, claimed in rows) and unsettled == 0
    assert sum(status == "sent" for status, _ in rows) == sent_at_fake
    with factory() as s:
        campaign = s.get(Campaign, cid)
        assert campaign.status == "active"
    # the next scheduler carries on where this one stopped
    with schedulers(db_url, fake_resend, 1):
        wait_completed(factory, [cid], 60)
    assert len(fake_resend.emails) == 200 and set(fake_resend.emails_per_address().values()) == {1}

"""Benchmark: e-mail dispatch throughput, on PostgreSQL, against the fake Resend.

    .venv/bin/python bench/dispatch.py [--recipients 20000] [--processes 1 2] [--server URL]

1. starts the fake Resend API in its own process (zero latency) and measures
   its raw capacity at the dispatcher's concurrency, with a plain
   ``httpx.Client`` and straight through httpx's pooled transport (the way the
   Resend adapter sends);
2. for each process count, seeds a fresh business with N e-mail customers and
   starts e-mail campaigns over them with every limit set high, runs that many
   real scheduler processes (``python scheduler.py``, live Resend adapter
   pointed at the fake) until every recipient is done, and reports messages
   per second as the fake saw them (first to last accepted e-mail), whether
   every customer got exactly one e-mail, and the peak RSS of each scheduler;
3. prints everything as JSON at the end.

The schema caps one campaign at 10,000 sends a minute (``rate_limit_per_minute``),
so the N recipients are split over enough campaigns that the per-campaign caps
add up to more than the engine can do: what is measured is the engine.

It creates (and drops) a scratch database ``connext_bench_dispatch`` on the
server (default: TEST_DATABASE_URL).
"""

# ruff: noqa: E402
from __future__ import annotations

import sys
from pathlib import Path

# bench/ holds a script named like the standard library's `select`: take this folder off the path
ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)

import argparse
import json
import os
import subprocess
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from itertools import pairwise

import httpx
from sqlalchemy import create_engine, func, insert, select, text
from sqlalchemy.engine import make_url

from core import accounts, campaigns, migrate
from core.config import get_settings
from core.customers_sync import sync_customers
from core.db import make_engine, session_factory, utcnow
from core.models import Campaign, CampaignRecipient, Lead
from tests.fakes.resend import DEFAULT_KEY, FakeResendClient

PER_CAMPAIGN = 1000  # recipients per campaign: within the burst of a 10,000/min campaign
CONCURRENCY = 4  # the dispatcher's number of sending threads (core.dispatch.SEND_THREADS)


def _rss_peak_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def start_fake() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, "-m", "tests.fakes.resend"], cwd=ROOT, stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


def raw_capacity(url: str, *, n: int = 6000, concurrency: int = CONCURRENCY, transport: bool = False) -> float:
    """Requests per second a plain httpx client gets from the fake at this concurrency; with
    ``transport``, sending straight through the pooled transport as the Resend adapter does."""
    client = httpx.Client(base_url=url, limits=httpx.Limits(max_connections=64, max_keepalive_connections=64),
                          trust_env=False)
    http_pool = httpx.HTTPTransport(limits=httpx.Limits(max_connections=64, max_keepalive_connections=64))
    target = httpx.URL(url + "/emails")
    body = {"from": "Bench <bench@shop.example>", "subject": "We miss you", "text": "x" * 600,
            "html": "<p>" + "x" * 700 + "</p>", "headers": {"List-Unsubscribe": "<https://x.example/u>"}}

    def one(i: int) -> None:
        headers = {"Authorization": f"Bearer {DEFAULT_KEY}", "Idempotency-Key": f"raw/{transport}/{i}"}
        if transport:
            request = httpx.Request("POST", target, json={**body, "to": [f"raw{i}@bench.example"]}, headers=headers)
            r = http_pool.handle_request(request)
            r.read()
            r.close()
        else:
            r = client.post("/emails", json={**body, "to": [f"raw{i}@bench.example"]}, headers=headers)
        assert r.status_code == 200

    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, range(300)))
        start = time.perf_counter()
        list(pool.map(one, range(300, 300 + n)))
        elapsed = time.perf_counter() - start
    client.close()
    http_pool.close()
    return n / elapsed


def seed(url: str, *, n: int, tag: str) -> list[uuid.UUID]:
    """A business with ``n`` e-mail customers and active campaigns covering all of them."""
    engine = make_engine(url)
    factory = session_factory(engine)
    now = utcnow()
    with factory() as session, session.begin():
        profile, _, _ = accounts.create_profile(session, business_name="Bench Salon", email=f"bench-{tag}@shop.example",
                                                password="bench-password", timezone="America/New_York")
        pid = profile.id
    rows = []
    for i in range(n):
        when = now - timedelta(days=200, minutes=i)
        email = f"c{i % (n // PER_CAMPAIGN or 1)}.{i}-{tag}@bench.example"
        rows.append({"id": uuid.uuid4(), "profile_id": pid, "contact_key": email, "customer_name": f"Pat {i}",
                     "customer_email": email, "status": "Closed", "service_type": "Haircut", "source": "import",
                     "extra": {}, "structured_data": {}, "created_at": when, "updated_at": when})
    with engine.begin() as conn:
        for k in range(0, n, 5000):
            conn.execute(insert(Lead), rows[k:k + 5000])
        # selection reads customers: kept equal to the leads in the same transaction, as every import does
        sync_customers(conn, profile_id=pid, keys=select(Lead.contact_key).where(Lead.profile_id == pid).distinct(),
                       now=now)
    ids = []
    groups = max(1, n // PER_CAMPAIGN)
    with factory() as session, session.begin():
        for g in range(groups):
            c = campaigns.create_campaign(session, profile_id=pid, data={
                "name": f"Bench {g}", "campaign_type": "winback", "outreach_method": "email",
                "target_criteria": {"filters": [{"field": "customer_email", "op": "starts_with", "value": f"c{g}."}]},
                "email_subject": "We miss you, {first_name|friend}",
                "message_template": "Hi {first_name|there},\n\nIt has been a while since {last_visit_date}. Enjoy "
                                    "{promotion} on your next {service_type|visit} at {business_name}.\n\n"
                                    "Book at https://bench.example/book",
                "variables": {"promotion": "20% off"}, "rate_limit_per_minute": 10_000,
                "send_window": {"start": "00:00", "end": "24:00"},
            })
            campaigns.start_campaign(session, profile_id=pid, campaign_id=c.id)
            ids.append(c.id)
    with factory() as session:
        total = session.scalar(select(func.count()).select_from(CampaignRecipient)
                               .where(CampaignRecipient.campaign_id.in_(ids)))
    assert total == n, (total, n)
    engine.dispose()
    return ids


def run(url: str, fake_url: str, *, n: int, processes: int, batch: int) -> dict[str, object]:
    fake = FakeResendClient(fake_url)
    fake.reset()
    ids = seed(url, n=n, tag=f"p{processes}-{uuid.uuid4().hex[:4]}")
    env = {**os.environ, "DATABASE_URL": url, "RESEND_API_KEY": DEFAULT_KEY, "RESEND_FROM": "bench@shop.example",
           "RESEND_BASE_URL": fake_url, "RESEND_MAX_PER_SECOND": "100000", "SCHEDULER_TICK_SECONDS": "0.5",
           "SCHEDULER_BATCH_SIZE": str(batch), "LOG_LEVEL": "WARNING", "SECRET_KEY": "bench"}
    procs = [subprocess.Popen([sys.executable, "scheduler.py"], cwd=ROOT, env=env) for _ in range(processes)]
    peaks = {p.pid: 0.0 for p in procs}
    engine = create_engine(url)
    started = time.perf_counter()
    deadline = started + 600
    try:
        while time.perf_counter() < deadline:
            for p in procs:
                peaks[p.pid] = max(peaks[p.pid], _rss_peak_mb(p.pid))
            with engine.connect() as conn:
                active = conn.scalar(select(func.count()).select_from(Campaign)
                                     .where(Campaign.id.in_(ids), Campaign.status != "completed"))
            if active == 0:
                break
            time.sleep(0.5)
        wall = time.perf_counter() - started
        for p in procs:
            peaks[p.pid] = max(peaks[p.pid], _rss_peak_mb(p.pid))
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=60)
    with engine.connect() as conn:
        by_status = dict(conn.execute(select(CampaignRecipient.status, func.count())
                                      .where(CampaignRecipient.campaign_id.in_(ids))
                                      .group_by(CampaignRecipient.status)).all())
    engine.dispose()
    state = fake.state()
    fake.close()
    emails = state["emails"]
    times = sorted(e["created_at"] for e in emails)
    per_address: dict[str, int] = {}
    for e in emails:
        for a in e["to"]:
            per_address[a] = per_address.get(a, 0) + 1
    posts: dict[str, int] = {}
    for r in state["requests"]:
        if r["path"] == "/emails":
            posts[r["key"]] = posts.get(r["key"], 0) + 1
    span = (times[-1] - times[0]) if len(times) > 1 else 0.0
    lo, hi = int(len(times) * 0.1), int(len(times) * 0.9)
    steady = (hi - lo) / (times[hi] - times[lo]) if len(times) > 10 and times[hi] > times[lo] else None
    gaps = max((b - a for a, b in pairwise(times)), default=0.0)
    return {
        "processes": processes, "recipients": n, "campaigns": len(ids), "batch_size": batch,
        "emails_accepted": len(emails), "msg_per_s": round(len(times) / span, 1) if span else None,
        "msg_per_s_middle_80pct": round(steady, 1) if steady else None, "longest_pause_s": round(gaps, 3),
        "seconds_first_to_last": round(span, 2), "wall_seconds_until_completed": round(wall, 2),
        "every_customer_exactly_once": len(per_address) == n and max(per_address.values()) == 1,
        "max_posts_per_key": max(posts.values()) if posts else 0,
        "recipients_by_status": by_status,
        "peak_rss_mb": {str(pid): round(mb, 1) for pid, mb in peaks.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipients", type=int, default=20_000)
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--batch", type=int, default=250, help="SCHEDULER_BATCH_SIZE of the schedulers")
    parser.add_argument("--server", default=get_settings().test_database_url)
    args = parser.parse_args()

    server = make_url(args.server)
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    name = "connext_bench_dispatch"
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = server.set(database=name).render_as_string(hide_password=False)
    migrate.upgrade(url)
    fake_proc, fake_url = start_fake()
    out: dict[str, object] = {"cpus": os.cpu_count()}
    try:
        out["raw_capacity_req_per_s"] = round(raw_capacity(fake_url), 1)
        out["raw_capacity_transport_req_per_s"] = round(raw_capacity(fake_url, transport=True), 1)
        print(f"fake Resend raw capacity: {out['raw_capacity_req_per_s']} req/s with httpx.Client, "
              f"{out['raw_capacity_transport_req_per_s']} req/s through httpx's transport "
              f"({CONCURRENCY} threads)", flush=True)
        runs = []
        for processes in args.processes:
            result = run(url, fake_url, n=args.recipients, processes=processes, batch=args.batch)
            runs.append(result)
            print(f"{processes} scheduler process(es): {result['msg_per_s']} msg/s, exactly once: "
                  f"{result['every_customer_exactly_once']}, peak RSS MB: {result['peak_rss_mb']}", flush=True)
        out["runs"] = runs
        raw = out["raw_capacity_req_per_s"]
        out["single_process_vs_raw"] = round(runs[0]["msg_per_s"] / raw, 2) if runs and runs[0]["msg_per_s"] else None
        raw_t = out["raw_capacity_transport_req_per_s"]
        out["single_process_vs_raw_transport"] = (round(runs[0]["msg_per_s"] / raw_t, 2)
                                                  if runs and runs[0]["msg_per_s"] else None)
    finally:
        fake_proc.terminate()
        fake_proc.wait()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    print(json.dumps(out, indent=2, default=str))


threading.excepthook = lambda args: None if args.exc_type is SystemExit else sys.__excepthook__(
    args.exc_type, args.exc_value, args.exc_traceback)

if __name__ == "__main__":
    main()

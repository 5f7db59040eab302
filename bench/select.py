"""Benchmark: lead import and recipient selection at scale, on PostgreSQL.

    .venv/bin/python bench/select.py [--leads 1000000] [--customers 300000] [--server URL]

1. writes a CSV of N leads (~N/3.3 customers, phones in several formats, a share
   of e-mail-only customers, two years of history) and imports it with
   ``python -m core import-leads`` (the real command, in its own process; its
   peak memory is reported);
2. times ``select-recipients`` (core.campaigns.select_campaign_recipients) for
   ``{"last_contact_days": 180, "status": "Closed"}`` against a hand-written raw
   ``INSERT … SELECT`` doing the same selection, alternating runs on fresh
   campaigns, and reports the best of each and their ratio;
3. reports this process's peak memory, showing the leads never come to Python.

It creates (and at the end drops) a scratch database ``connext_bench`` on the
server (default: TEST_DATABASE_URL).
"""

# ruff: noqa: E402
from __future__ import annotations

import sys
from pathlib import Path

# this file is named like the standard library's `select`: take its folder off the path first
ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)

import argparse
import csv
import json
import os
import random
import resource
import subprocess
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from core import accounts, campaigns, migrate
from core.config import get_settings
from core.db import make_engine, session_scope

AREAS = ("201", "212", "213", "312", "415", "512", "602", "617", "702", "713", "801", "919", "305", "404", "503")
STATUSES = ("New", "Contacted", "Closed", "Closed", "Closed")
SERVICES = ("Haircut", "Color", "Manicure", "Facial", "Massage", "Blowout")
CRITERIA = {"last_contact_days": 180, "status": "Closed"}

RAW_SELECT = """
INSERT INTO campaign_recipients (id, campaign_id, profile_id, lead_id, contact_key, customer_name, customer_phone,
                                 customer_email, status, step, attempts, next_attempt_at, converted, response_data,
                                 created_at, updated_at)
SELECT gen_random_uuid(), :campaign, :profile, c.id, c.contact_key,
       coalesce(c.customer_name, (SELECT l2.customer_name FROM leads l2
                                  WHERE l2.profile_id = :profile AND l2.contact_key = c.contact_key
                                    AND l2.customer_name IS NOT NULL ORDER BY l2.created_at DESC LIMIT 1)),
       c.customer_phone,
       coalesce(c.customer_email, (SELECT l2.customer_email FROM leads l2
                                   WHERE l2.profile_id = :profile AND l2.contact_key = c.contact_key
                                     AND l2.customer_email IS NOT NULL ORDER BY l2.created_at DESC LIMIT 1)),
       'pending', 0, 0, now(), false, '{}'::jsonb, now(), now()
FROM (SELECT l.*, row_number() OVER (PARTITION BY l.contact_key ORDER BY l.created_at DESC, l.id DESC) AS rn
      FROM leads l WHERE l.profile_id = :profile) c
WHERE c.rn = 1 AND c.created_at < now() - interval '180 days' AND c.status = 'Closed'
  AND c.customer_phone IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM opt_outs o WHERE o.profile_id = :profile AND o.contact = c.customer_phone
                  AND o.channel IN ('sms', 'all'))
  AND NOT EXISTS (SELECT 1 FROM campaign_recipients r WHERE r.campaign_id = :campaign
                  AND r.contact_key = c.contact_key)
"""


def peak_rss_mb(who: int = resource.RUSAGE_SELF) -> float:
    return resource.getrusage(who).ru_maxrss / 1024


def write_csv(path: Path, leads: int, customers: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    now = datetime.now(UTC)
    per_customer = leads / customers
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["customer_name", "customer_phone", "customer_email", "status", "service_type", "created_at",
                    "notes"])
        written = 0
        for i in range(customers):
            slot = i // len(AREAS)
            area, exchange, line = AREAS[i % len(AREAS)], 200 + slot // 10000, slot % 10000
            email_only = i % 7 == 0
            digits = f"{area}{exchange}{line:04d}"
            name = f"Customer {i}"
            email = f"customer{i}@example.com" if (email_only or i % 2) else ""
            remaining = customers - i
            n = max(1, min(12, round(rng.expovariate(1 / per_customer)))) if remaining > 1 else leads - written
            n = min(n, max(1, leads - written - (remaining - 1)))
            for _ in range(n):
                phone = "" if email_only else rng.choice(
                    (f"({area}) {exchange}-{line:04d}", f"{area}-{exchange}-{line:04d}", f"+1 {area} {exchange} "
                     f"{line:04d}", digits))
                created = now - timedelta(days=rng.uniform(0, 730))
                w.writerow([name, phone, email, rng.choice(STATUSES), rng.choice(SERVICES),
                            created.strftime("%Y-%m-%dT%H:%M:%S+00:00"), ""])
            written += n
            if written >= leads:
                break


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--leads", type=int, default=1_000_000)
    parser.add_argument("--customers", type=int, default=300_000)
    parser.add_argument("--server", default=get_settings().test_database_url)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    server = make_url(args.server)
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text('DROP DATABASE IF EXISTS "connext_bench" WITH (FORCE)'))
        conn.execute(text('CREATE DATABASE "connext_bench"'))
    url = server.set(database="connext_bench").render_as_string(hide_password=False)
    migrate.upgrade(url)
    engine = make_engine(url)
    try:
        with session_scope(engine) as s:
            profile, _, _ = accounts.create_profile(s, business_name="Bench", email="bench@bench.example",
                                                    password="benchmark1")
            profile_id = profile.id

        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "leads.csv"
            t0 = time.perf_counter()
            write_csv(path, args.leads, args.customers)
            print(f"generated {args.leads:,} leads in {time.perf_counter() - t0:.1f} s "
                  f"({path.stat().st_size / 1e6:.0f} MB)")
            t0 = time.perf_counter()
            proc = subprocess.run(
                [sys.executable, "-c",
                 "import resource, sys; from core.cli import main; rc = main(sys.argv[1:]); "
                 "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024, file=sys.stderr); "
                 "raise SystemExit(rc)",
                 "import-leads", "--profile", str(profile_id), str(path)],
                cwd=ROOT, env={**os.environ, "DATABASE_URL": url}, capture_output=True, text=True, check=False)
            took = time.perf_counter() - t0
            if proc.returncode != 0:
                raise SystemExit(f"import failed: {proc.stderr[-2000:]}")
            report = json.loads(proc.stdout)
            print(f"import-leads: {report['imported']:,} imported, {report['duplicates']:,} duplicates in "
                  f"{took:.1f} s = {args.leads / took:,.0f} rows/s; peak memory of the import process "
                  f"{proc.stderr.strip().splitlines()[-1]} MB")

        with engine.begin() as conn:
            conn.execute(text("ANALYZE"))
            customers = conn.scalar(text("SELECT count(DISTINCT contact_key) FROM leads"))
        print(f"{customers:,} customers")

        def new_campaign() -> uuid.UUID:
            with session_scope(engine) as s:
                return campaigns.create_campaign(s, profile_id=profile_id, data={
                    "name": "bench", "campaign_type": "winback", "outreach_method": "sms",
                    "message_template": "Hi {first_name|there}", "target_criteria": CRITERIA}).id

        ours: list[float] = []
        raw: list[float] = []
        counts = set()
        rss_before = peak_rss_mb()
        for _ in range(args.runs):
            cid = new_campaign()
            t0 = time.perf_counter()
            with session_scope(engine) as s:
                result = campaigns.select_campaign_recipients(s, profile_id=profile_id, campaign_id=cid)
            ours.append(time.perf_counter() - t0)
            counts.add(("select-recipients", result.selected))

            cid = new_campaign()
            t0 = time.perf_counter()
            with engine.begin() as conn:
                n = conn.execute(text(RAW_SELECT).execution_options(preserve_rowcount=True),
                                 {"campaign": cid, "profile": profile_id}).rowcount
            raw.append(time.perf_counter() - t0)
            counts.add(("raw", n))
        print(f"select-recipients {CRITERIA}: best {min(ours):.2f} s (runs: "
              f"{', '.join(f'{x:.2f}' for x in ours)})")
        print(f"raw INSERT … SELECT:                                 best {min(raw):.2f} s (runs: "
              f"{', '.join(f'{x:.2f}' for x in raw)})")
        print(f"ratio {min(ours) / min(raw):.2f}x (goal ≤ 1.5x); recipients selected: {sorted(counts)}")
        print(f"bench process peak memory: {rss_before:.0f} MB before selection, {peak_rss_mb():.0f} MB after")
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text('DROP DATABASE IF EXISTS "connext_bench" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()

"""Benchmark: lead import and recipient selection at scale, on PostgreSQL.

    .venv/bin/python bench/select.py [--leads 1000000] [--customers 300000] [--server URL] [--runs 5]

Each figure is printed next to a hand-written baseline measured in the same run:

1. **import** — writes a CSV of N leads (~N/3.3 customers, phones in several
   formats, a share of e-mail-only customers, two years of history) and imports it
   with ``python -m core import-leads`` (the real command, in its own process,
   customers kept as it goes; its peak memory is reported).  Baseline: ``COPY`` of
   the same file into an unindexed table of text columns (the database's floor).
   Goal: ≤ 45 s, < 300 MB.
2. **select-recipients** (``core.campaigns.select_campaign_recipients``) for
   ``{"last_contact_days": 180, "status": "Closed"}`` (SMS, a business that vouches
   for consent itself) against a hand-written ``INSERT … SELECT DISTINCT ON
   (contact_key) … ORDER BY contact_key, created_at DESC`` over the leads, with an
   index on ``(contact_key, created_at DESC)``; alternating runs on fresh
   campaigns, best of each and their ratio.  Goal: ≤ 1.0×.
3. **audience preview** (count, suppressed by reason, 10-row sample) for three
   criteria under the US consent policy, with consent records for most phone
   customers and a do-not-call list; best and median of the runs.  Baseline: a
   plain ``count(*)`` of the business's customers.  Goal: ≤ 200 ms each.

It also times the daily score refresh (``core.customers_sync.refresh_scores``)
and prints the load average before and after each part, to show how quiet the
machine was.  It creates (and at the end drops) a scratch database
``connext_bench`` on the server (default: TEST_DATABASE_URL).
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
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from core import accounts, campaigns, customers_sync, migrate, targeting
from core.config import get_settings
from core.db import make_engine, session_scope

AREAS = ("201", "212", "213", "312", "415", "512", "602", "617", "702", "713", "801", "919", "305", "404", "503")
STATUSES = ("New", "Contacted", "Closed", "Closed", "Closed")
SERVICES = ("Haircut", "Color", "Manicure", "Facial", "Massage", "Blowout")
CRITERIA = {"last_contact_days": 180, "status": "Closed"}
PREVIEWS: list[tuple[str, dict[str, Any], str, list[dict[str, Any]] | None]] = [
    ("dormant, closed (SMS)", {"last_contact_days": 180, "status": "Closed"}, "sms", None),
    ("color or facial, 2+ visits (e-mail)", {"service_type": ["Color", "Facial"], "min_leads": 2}, "email", None),
    ("score ≥ 40, not contacted in 30 days, no notes (SMS then e-mail)",
     {"score_min": 40, "exclude_contacted_within_days": 30, "filters": [{"field": "notes", "op": "is_null"}]},
     "multi", [{"channel": "sms"}, {"channel": "email", "delay_hours": 48, "condition": "no_response"}]),
]

RAW_SELECT = """
INSERT INTO campaign_recipients (id, campaign_id, profile_id, lead_id, contact_key, enrollment, customer_name,
                                 customer_phone, customer_email, status, step, attempts, next_attempt_at, converted,
                                 response_data, created_at, updated_at)
SELECT gen_random_uuid(), :campaign, :profile, c.id, c.contact_key, 1, c.customer_name, c.customer_phone,
       c.customer_email, 'pending', 0, 0, now(), false, '{}'::jsonb, now(), now()
FROM (SELECT DISTINCT ON (l.contact_key) l.id, l.contact_key, l.customer_name, l.customer_phone, l.customer_email,
                                         l.status, l.created_at
      FROM leads l WHERE l.profile_id = :profile
      ORDER BY l.contact_key, l.created_at DESC) c
WHERE c.created_at < now() - interval '180 days' AND lower(trim(c.status)) = 'closed'
  AND c.customer_phone IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM opt_outs o WHERE o.profile_id = :profile AND o.contact = c.customer_phone
                  AND o.channel IN ('sms', 'all'))
  AND NOT EXISTS (SELECT 1 FROM campaign_recipients r WHERE r.campaign_id = :campaign
                  AND r.contact_key = c.contact_key)
"""


def peak_rss_mb(who: int = resource.RUSAGE_SELF) -> float:
    return resource.getrusage(who).ru_maxrss / 1024


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


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
                notes = "" if rng.random() < 0.8 else "Prefers mornings"
                w.writerow([name, phone, email, rng.choice(STATUSES), rng.choice(SERVICES),
                            created.strftime("%Y-%m-%dT%H:%M:%S+00:00"), notes])
            written += n
            if written >= leads:
                break


def best_and_median(times: list[float]) -> str:
    return f"best {min(times) * 1000:.0f} ms, median {statistics.median(times) * 1000:.0f} ms"


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--leads", type=int, default=1_000_000)
    parser.add_argument("--customers", type=int, default=300_000)
    parser.add_argument("--server", default=get_settings().test_database_url)
    parser.add_argument("--runs", type=int, default=5)
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

        # --- 1. import -----------------------------------------------------------------------------------
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "leads.csv"
            t0 = time.perf_counter()
            write_csv(path, args.leads, args.customers)
            print(f"generated {args.leads:,} leads in {time.perf_counter() - t0:.1f} s "
                  f"({path.stat().st_size / 1e6:.0f} MB)")
            print(f"[{load()}]")
            t0 = time.perf_counter()
            proc = subprocess.run(
                [sys.executable, "-c",
                 "import resource, sys; from core.cli import main; rc = main(sys.argv[1:]); "
                 "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024, file=sys.stderr); "
                 "raise SystemExit(rc)",
                 "import-leads", "--profile", str(profile_id), str(path)],
                cwd=ROOT, env={**os.environ, "DATABASE_URL": url, "SECRET_KEY": "bench"}, capture_output=True,
                text=True, check=False)
            took = time.perf_counter() - t0
            if proc.returncode != 0:
                raise SystemExit(f"import failed: {proc.stderr[-2000:]}")
            report = json.loads(proc.stdout)
            print(f"import-leads: {report['imported']:,} imported, {report['duplicates']:,} duplicates in "
                  f"{took:.1f} s = {args.leads / took:,.0f} rows/s (goal ≤ 45 s); peak memory of the import "
                  f"process {proc.stderr.strip().splitlines()[-1]} MB (goal < 300 MB)  [{load()}]")
            with engine.begin() as conn:
                conn.execute(text("CREATE UNLOGGED TABLE raw_copy (customer_name text, customer_phone text, "
                                  "customer_email text, status text, service_type text, created_at text, "
                                  "notes text)"))
            raw = engine.raw_connection()
            try:
                t0 = time.perf_counter()
                with raw.cursor() as cursor, path.open("rb") as fh, cursor.copy(  # type: ignore[attr-defined]
                        "COPY raw_copy FROM STDIN WITH (FORMAT csv, HEADER true)") as copy:
                    while chunk := fh.read(1 << 20):
                        copy.write(chunk)
                raw.commit()
                copied = time.perf_counter() - t0
            finally:
                raw.close()
            print(f"baseline: COPY of the same file into a table of text columns, no checks, no indexes: "
                  f"{copied:.1f} s")
            with engine.begin() as conn:
                conn.execute(text("DROP TABLE raw_copy"))

        with engine.begin() as conn:
            conn.execute(text("CREATE INDEX bench_leads_key_time ON leads (contact_key, created_at DESC)"))
        # what autovacuum does soon after a big import (its insert threshold): statistics and the visibility map
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM (ANALYZE)"))
        with engine.begin() as conn:
            n_customers = conn.scalar(text("SELECT count(*) FROM customers"))
            distinct = conn.scalar(text("SELECT count(DISTINCT contact_key) FROM leads"))
        print(f"{n_customers:,} customers ({distinct:,} distinct contact keys among the leads)")
        t_scores, changed = timed(lambda: _in_session(engine, lambda s: customers_sync.refresh_scores(
            s, profile_id=profile_id)))
        print(f"daily score refresh: {changed:,} scores computed in {t_scores:.1f} s  [{load()}]")

        # --- 2. select-recipients vs the raw statement ----------------------------------------------------
        with engine.begin() as conn:
            conn.execute(text("UPDATE profiles SET consent_policy = 'none' WHERE id = :p"), {"p": profile_id})

        def new_campaign() -> uuid.UUID:
            with session_scope(engine) as s:
                return campaigns.create_campaign(s, profile_id=profile_id, data={
                    "name": "bench", "campaign_type": "winback", "outreach_method": "sms",
                    "message_template": "Hi {first_name|there}", "target_criteria": CRITERIA}).id

        ours: list[float] = []
        raw_runs: list[float] = []
        counts = set()
        rss_before = peak_rss_mb()
        print(f"[{load()}]")
        for _ in range(args.runs):
            cid = new_campaign()
            took, result = timed(lambda cid=cid: _in_session(engine, lambda s: campaigns.select_campaign_recipients(
                s, profile_id=profile_id, campaign_id=cid)))
            ours.append(took)
            counts.add(("select-recipients", result.selected))

            cid = new_campaign()
            t0 = time.perf_counter()
            with engine.begin() as conn:
                n = conn.execute(text(RAW_SELECT).execution_options(preserve_rowcount=True),
                                 {"campaign": cid, "profile": profile_id}).rowcount
            raw_runs.append(time.perf_counter() - t0)
            counts.add(("raw", n))
        print(f"select-recipients {CRITERIA}: best {min(ours):.2f} s (runs: "
              f"{', '.join(f'{x:.2f}' for x in ours)})")
        print(f"raw INSERT … SELECT DISTINCT ON over the leads:           best {min(raw_runs):.2f} s (runs: "
              f"{', '.join(f'{x:.2f}' for x in raw_runs)})")
        print(f"ratio {min(ours) / min(raw_runs):.2f}x (goal ≤ 1.0x); recipients selected: {sorted(counts)}  "
              f"[{load()}]")
        print(f"bench process peak memory: {rss_before:.0f} MB before selection, {peak_rss_mb():.0f} MB after")

        # --- 3. audience previews under the US consent policy ---------------------------------------------
        with engine.begin() as conn:
            conn.execute(text("UPDATE profiles SET consent_policy = 'us_tcpa' WHERE id = :p"), {"p": profile_id})
            # most phone customers agreed to texts in writing; a few are on the do-not-call list or opted out
            conn.execute(text("""
                INSERT INTO consents (id, profile_id, contact, channel, level, source, captured_at, created_at)
                SELECT gen_random_uuid(), :p, customer_phone, 'sms',
                       CASE WHEN abs(hashtext(contact_key)) % 10 < 7 THEN 'express_written' ELSE 'express' END,
                       'import', first_contact_at, now()
                FROM customers WHERE profile_id = :p AND customer_phone IS NOT NULL
                  AND abs(hashtext(contact_key)) % 10 < 9"""), {"p": profile_id})
            conn.execute(text("""
                INSERT INTO dnc_numbers (id, profile_id, number, source, created_at)
                SELECT gen_random_uuid(), :p, customer_phone, 'national_registry', now() FROM customers
                WHERE profile_id = :p AND customer_phone IS NOT NULL AND abs(hashtext(contact_key)) % 100 = 42"""),
                         {"p": profile_id})
            conn.execute(text("""
                INSERT INTO opt_outs (id, profile_id, contact, channel, source, created_at)
                SELECT gen_random_uuid(), :p, coalesce(customer_email, customer_phone), 'all', 'manual', now()
                FROM customers WHERE profile_id = :p AND abs(hashtext(contact_key)) % 100 = 7"""),
                         {"p": profile_id})
            conn.execute(text("ANALYZE"))
            baseline = []
            for _ in range(args.runs):
                t0 = time.perf_counter()
                conn.scalar(text("SELECT count(*) FROM customers WHERE profile_id = :p"), {"p": profile_id})
                baseline.append(time.perf_counter() - t0)
        print(f"baseline: SELECT count(*) of the business's customers: {best_and_median(baseline)}  [{load()}]")
        for label, criteria, method, steps in PREVIEWS:
            times = []
            preview = None
            for _ in range(args.runs):
                took, preview = timed(lambda c=criteria, m=method, st=steps: _in_session(
                    engine, lambda s: targeting.preview_audience(s, profile_id=profile_id, target_criteria=c,
                                                                 outreach_method=m, steps=st, sample_size=10)))
                times.append(took)
            assert preview is not None
            print(f"preview {label}: {best_and_median(times)} (goal ≤ 200 ms); count {preview.count:,}, "
                  f"suppressed {preview.suppressed:,} {preview.suppressed_by}, sample {len(preview.sample)}")
        print(f"[{load()}]")
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text('DROP DATABASE IF EXISTS "connext_bench" WITH (FORCE)'))
        admin.dispose()


def _in_session(engine: Any, work: Callable[[Any], Any]) -> Any:
    with session_scope(engine) as s:
        return work(s)


if __name__ == "__main__":
    main()

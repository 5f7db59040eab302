"""Benchmark: the dashboard over one campaign with 100,000 recipients, on PostgreSQL.

    .venv/bin/python bench/dashboard.py [--recipients 100000] [--runs 5] [--server URL]

1. creates a scratch database ``connext_bench_dashboard`` on the server
   (default: TEST_DATABASE_URL), migrates it, and fills one business with N
   customers, an A/B e-mail campaign over all of them (selected with the real
   ``select_recipients``), recipients in every status, one delivery attempt per
   reached recipient and ~3 provider events each, spread over two days — all
   with set-based SQL;
2. renders the real pages in Streamlit's AppTest (the same script runs a
   browser session gets) and times each complete script run: the campaign page
   (overview, live progress, first recipients page, a recipient's detail),
   the recipients table paged, filtered and searched, and the analytics page
   for the campaign and for all campaigns; first run (cold) and the median of
   the next runs (caches cleared before each run, so every number is the
   database at work, not Streamlit's cache);
3. times the core queries behind them one by one;
4. prints everything as JSON, then drops the database (``--keep`` keeps it).

A page renders in the browser a little after its script run completes; the
numbers here are the server side.
"""

# ruff: noqa: E402
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)

import argparse
import json
import os
import statistics
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url

ENTRY = ROOT / "tests" / "dashboard" / "entry.py"


def _timed(fn: Callable[[], Any], runs: int) -> dict[str, float]:
    cold_start = time.perf_counter()
    fn()
    cold = time.perf_counter() - cold_start
    warm = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        warm.append(time.perf_counter() - start)
    return {"cold_s": round(cold, 3), "median_s": round(statistics.median(warm), 3), "max_s": round(max(warm), 3)}


def seed(url: str, recipients: int) -> dict[str, Any]:
    """One business, N customers, one campaign over all of them, with results."""
    from core import accounts, campaigns
    from core.db import make_engine, session_scope, utcnow

    engine = make_engine(url)
    now = utcnow()
    with session_scope(engine) as session:
        profile, _key, _ = accounts.create_profile(session, business_name="Bench Salon",
                                                   email=f"bench-{uuid.uuid4().hex[:6]}@bench.example",
                                                   password="bench-password")
        pid = profile.id
    started = time.perf_counter()

    def step(what: str) -> None:
        print(f"  {what}: {time.perf_counter() - started:.1f} s", file=sys.stderr)

    with engine.begin() as conn:
        # customers: one lead each, last seen 200–900 days ago
        conn.execute(text("""
            INSERT INTO leads (id, profile_id, contact_key, customer_name, customer_phone, customer_email, status,
                               service_type, structured_data, extra, source, created_at, updated_at)
            SELECT gen_random_uuid(), :pid, 'c' || g || '@bench.example', 'Customer ' || g, NULL,
                   'c' || g || '@bench.example', 'Closed', (ARRAY['Color','Haircut','Facial','Massage'])[1 + g % 4],
                   '{}'::jsonb, '{}'::jsonb, 'import', :now - (200 + g % 700) * interval '1 day', :now
            FROM generate_series(1, :n) AS g"""), {"pid": pid, "n": recipients, "now": now})
        # the customers of these leads, kept in the same transaction as every import keeps them
        from core.customers_sync import sync_customers
        from core.models import Lead

        sync_customers(conn, profile_id=pid, keys=select(Lead.contact_key).where(Lead.profile_id == pid).distinct(),
                       now=now)
        # as autovacuum would have by the time a business starts a campaign over these leads
        conn.execute(text("ANALYZE leads"))
        conn.execute(text("ANALYZE customers"))
    step("leads")
    with session_scope(engine) as session:
        campaign = campaigns.create_campaign(session, profile_id=pid, data={
            "name": "Big win-back", "campaign_type": "winback", "outreach_method": "email",
            "target_criteria": {"last_contact_days": 180}, "email_subject": "We miss you, {first_name|there}",
            "message_template": "Hi {first_name|there}, come back to {business_name}.",
            "variants": [{"name": "A"}, {"name": "B", "email_subject": "A treat for you, {first_name|there}"}],
        }, now=now - timedelta(days=2))
        campaigns.start_campaign(session, profile_id=pid, campaign_id=campaign.id, now=now - timedelta(days=2))
        cid = campaign.id
    step("campaign started (recipients selected)")
    with engine.begin() as conn:
        # outcomes: 92 % sent, 88 % delivered, 4 % failed, 1 % opted out, 9 % responded, 2 % converted
        conn.execute(text("""
            WITH r AS (SELECT id, row_number() OVER (ORDER BY id) AS k FROM campaign_recipients
                       WHERE campaign_id = :cid)
            UPDATE campaign_recipients c SET
              status = CASE WHEN r.k % 100 < 4 THEN 'failed' WHEN r.k % 100 = 4 THEN 'opted_out'
                            WHEN r.k % 100 < 92 THEN 'delivered' WHEN r.k % 100 < 96 THEN 'sent' ELSE 'pending' END,
              sent_at = CASE WHEN r.k % 100 BETWEEN 5 AND 95 OR r.k % 100 < 4
                             THEN :start + (r.k % 2880) * interval '1 minute' END,
              delivered_at = CASE WHEN r.k % 100 BETWEEN 5 AND 91
                                  THEN :start + (r.k % 2880) * interval '1 minute' + interval '20 seconds' END,
              responded_at = CASE WHEN r.k % 100 BETWEEN 5 AND 13
                                  THEN :start + (r.k % 2880) * interval '1 minute' + interval '2 hours' END,
              converted = r.k % 100 BETWEEN 5 AND 6,
              last_channel = CASE WHEN r.k % 100 < 96 THEN 'email' END,
              attempts = CASE WHEN r.k % 100 < 96 THEN 1 ELSE 0 END,
              next_attempt_at = CASE WHEN r.k % 100 < 96 THEN NULL ELSE c.next_attempt_at END,
              error_message = CASE WHEN r.k % 100 < 4 THEN 'Resend 422 validation_error: invalid address' END
            FROM r WHERE c.id = r.id"""), {"cid": cid, "start": now - timedelta(days=2)})
        step("outcomes")
        conn.execute(text("""
            INSERT INTO outreach_attempts (id, profile_id, campaign_id, recipient_id, step, attempt_no, channel,
                                           provider, idempotency_key, outcome, provider_message_id, detail,
                                           started_at, finished_at, completed_at)
            SELECT gen_random_uuid(), profile_id, campaign_id, id, 0, 1, 'email', 'resend',
                   'reengage/' || id || '/0', CASE WHEN status = 'failed' THEN 'permanent' ELSE 'accepted' END,
                   'em_' || substr(md5(id::text), 1, 20), '{}'::jsonb, sent_at, sent_at, sent_at
            FROM campaign_recipients WHERE campaign_id = :cid AND sent_at IS NOT NULL"""), {"cid": cid})
        for kind, column, where in (("sent", "sent_at", "sent_at IS NOT NULL"),
                                    ("delivered", "delivered_at", "delivered_at IS NOT NULL"),
                                    ("opened", "delivered_at + interval '30 minutes'",
                                     "delivered_at IS NOT NULL AND ('x' || substr(md5(id::text), 1, 2))::bit(8)::int"
                                     " < 110"),
                                    ("clicked", "responded_at", "responded_at IS NOT NULL"),
                                    ("converted", "responded_at + interval '10 minutes'", "converted")):
            conn.execute(text(f"""
                INSERT INTO outreach_events (id, profile_id, campaign_id, recipient_id, step, channel, provider,
                                             provider_event_id, provider_message_id, type, payload, occurred_at,
                                             received_at, processed_at)
                SELECT gen_random_uuid(), profile_id, campaign_id, id, 0, 'email', 'resend',
                       '{kind}-' || id, 'em_' || substr(md5(id::text), 1, 20), '{kind}', '{{}}'::jsonb,
                       {column}, {column}, {column}
                FROM campaign_recipients WHERE campaign_id = :cid AND {where}"""), {"cid": cid})
        step("attempts and events")
        conn.execute(text("ANALYZE"))
    with engine.connect() as conn:
        counts = dict(conn.execute(text("""
            SELECT 'recipients', count(*) FROM campaign_recipients WHERE campaign_id = :cid
            UNION ALL SELECT 'attempts', count(*) FROM outreach_attempts WHERE campaign_id = :cid
            UNION ALL SELECT 'events', count(*) FROM outreach_events WHERE campaign_id = :cid"""),
            {"cid": cid}).all())
    engine.dispose()
    return {"profile_id": pid, "campaign_id": cid, "seed_s": round(time.perf_counter() - started, 1),
            **{k: int(v) for k, v in counts.items()}}


def kept(url: str) -> dict[str, Any]:
    """The business and campaign of a database an earlier run kept."""
    engine = create_engine(url)
    with engine.connect() as conn:
        pid, cid = conn.execute(text("SELECT profile_id, id FROM campaigns WHERE name = 'Big win-back'")).one()
        counts = dict(conn.execute(text("""
            SELECT 'recipients', count(*) FROM campaign_recipients WHERE campaign_id = :cid
            UNION ALL SELECT 'attempts', count(*) FROM outreach_attempts WHERE campaign_id = :cid
            UNION ALL SELECT 'events', count(*) FROM outreach_events WHERE campaign_id = :cid"""),
            {"cid": cid}).all())
    engine.dispose()
    return {"profile_id": pid, "campaign_id": cid, "seed_s": None, **{k: int(v) for k, v in counts.items()}}


def render_pages(url: str, profile_id: uuid.UUID, campaign_id: uuid.UUID, runs: int) -> dict[str, Any]:
    """Script-run times of the real pages in AppTest (Streamlit caches cleared before every run)."""
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("SECRET_KEY", "bench")  # on a database server the dashboard refuses to start without
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from core.config import get_settings

    get_settings.cache_clear()

    def app(page: str, query: dict[str, str] | None = None) -> AppTest:
        at = AppTest.from_file(str(ENTRY), default_timeout=120)
        for key, value in (("profile_id", str(profile_id)), ("user_email", "bench@bench.example"),
                           ("business_name", "Bench Salon"), ("timezone", "America/New_York")):
            at.session_state[key] = value
        at.run()
        at.switch_page(f"../../pages/{page}.py")
        if query:
            at.query_params.update(query)
        return at

    def run(at: AppTest) -> AppTest:
        st.cache_data.clear()
        at.run()
        if at.exception:
            raise RuntimeError(at.exception[0].value)
        return at

    results: dict[str, Any] = {}
    page = app("campaign", {"id": str(campaign_id)})
    results["campaign page"] = _timed(lambda: run(page), runs)

    recipients = app("campaign", {"id": str(campaign_id)})
    run(recipients)
    state = {"page": 1}

    def next_page() -> None:
        state["page"] = state["page"] % 1000 + 1
        recipients.number_input(key="recipients_page").set_value(state["page"] + 400)
        run(recipients)

    results["recipients table: another page (LIMIT/OFFSET ~20,000)"] = _timed(next_page, runs)
    statuses = ["failed", "delivered", "sent", "opted_out", "pending"]

    def filtered() -> None:
        statuses.append(statuses.pop(0))
        recipients.selectbox(key="recipient_status").set_value(statuses[0])
        run(recipients)

    results["recipients table: status filter"] = _timed(filtered, runs)
    recipients.selectbox(key="recipient_status").set_value("")
    words = ["customer 4242", "c777@", "customer 99999", "bench.example", "nobody"]

    def searched() -> None:
        words.append(words.pop(0))
        recipients.text_input(key="recipient_search").input(words[0])
        run(recipients)

    results["recipients table: search"] = _timed(searched, runs)

    one = app("analytics", {"id": str(campaign_id)})
    results["analytics page: the campaign"] = _timed(lambda: run(one), runs)
    every = app("analytics")
    results["analytics page: all campaigns"] = _timed(lambda: run(every), runs)
    listing = app("campaigns")
    results["campaign list"] = _timed(lambda: run(listing), runs)
    return results


def core_queries(url: str, profile_id: uuid.UUID, campaign_id: uuid.UUID, runs: int) -> dict[str, Any]:
    """The core queries behind those pages, one by one."""
    from sqlalchemy.orm import Session, sessionmaker

    from core import analytics
    from core.db import make_engine
    from core.exports import iter_recipient_csv

    engine = make_engine(url)
    kw = {"profile_id": profile_id, "campaign_id": campaign_id}
    with Session(engine) as s:
        rid = analytics.recipients_page(s, limit=1, **kw)[0]["id"].iloc[0]
        queries: dict[str, Callable[[], Any]] = {
            "campaign_progress": lambda: analytics.campaign_progress(s, **kw),
            "recipients_page offset 50,000": lambda: analytics.recipients_page(s, limit=50, offset=50_000, **kw),
            "recipients_page status=failed": lambda: analytics.recipients_page(s, status="failed", **kw),
            "recipients_page search": lambda: analytics.recipients_page(s, search="customer 4242", **kw),
            "recipient_detail": lambda: analytics.recipient_detail(s, profile_id=profile_id,
                                                                   recipient_id=uuid.UUID(rid)),
            "funnel": lambda: analytics.funnel(s, **kw),
            "summary": lambda: analytics.summary(s, **kw),
            "status_breakdown": lambda: analytics.status_breakdown(s, **kw),
            "event_timeline": lambda: analytics.event_timeline(s, timezone="America/New_York", **kw),
            "channel_comparison": lambda: analytics.channel_comparison(s, **kw),
            "variant_comparison": lambda: analytics.variant_comparison(s, **kw),
            "campaign_table": lambda: analytics.campaign_table(s, profile_id=profile_id),
            "funnel, all campaigns": lambda: analytics.funnel(s, profile_id=profile_id),
            "event_timeline, all campaigns": lambda: analytics.event_timeline(s, profile_id=profile_id),
        }
        out = {name: _timed(fn, runs) for name, fn in queries.items()}
        s.rollback()
    factory = sessionmaker(engine)
    start = time.perf_counter()
    size = sum(len(chunk) for chunk in iter_recipient_csv(factory, **kw))
    out["CSV export (whole campaign)"] = {"s": round(time.perf_counter() - start, 2), "bytes": size}
    engine.dispose()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipients", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5, help="timed runs after the first (cold) one")
    parser.add_argument("--server", help="PostgreSQL server URL (default: TEST_DATABASE_URL)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    parser.add_argument("--reuse", action="store_true", help="measure a database kept by an earlier --keep run")
    args = parser.parse_args()

    from core import migrate
    from core.config import get_settings

    server = make_url(args.server or get_settings().test_database_url)
    name = "connext_bench_dashboard"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    url = server.set(database=name).render_as_string(hide_password=False)
    if not args.reuse:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        if args.reuse:
            seeded = kept(url)
        else:
            migrate.upgrade(url)
            seeded = seed(url, args.recipients)
        print(f"seeded: {seeded}", file=sys.stderr)
        report = {
            "recipients": seeded["recipients"], "attempts": seeded["attempts"], "events": seeded["events"],
            "seed_s": seeded["seed_s"],
            "pages (AppTest script run, seconds)": render_pages(url, seeded["profile_id"], seeded["campaign_id"],
                                                                args.runs),
            "core queries (seconds)": core_queries(url, seeded["profile_id"], seeded["campaign_id"], args.runs),
        }
        print(json.dumps(report, indent=2))
    finally:
        if not args.keep:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()

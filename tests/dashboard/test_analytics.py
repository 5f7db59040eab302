"""What the dashboard's tables and charts count (core.analytics), on both backends."""

from __future__ import annotations

import math
import uuid
from datetime import timedelta

import pandas as pd
import pytest

from core import analytics, campaigns
from core.errors import NotFound
from tests import factories as f
from tests.dashboard import helpers as h


def _email_campaign(session, now, n=6, **fields):
    p = f.make_profile(session)
    for i in range(n):
        f.lead(session, p, email=f"c{i}@example.com", name=f"Customer {i}", now=now)
    c = f.campaign(session, p, method="email", now=now, **fields)
    return p, c, h.recipients(session, c, now=now)


def test_campaign_table_counts_progress_and_rates_per_campaign(session, now):
    p, _, ids = _email_campaign(session, now, n=5)
    t = now + timedelta(minutes=1)
    h.set_state(session, ids[0], status="delivered", sent_at=t, delivered_at=t, responded_at=t, converted=True,
                next_attempt_at=None)
    h.set_state(session, ids[1], status="sent", sent_at=t, next_attempt_at=None)
    h.set_state(session, ids[2], status="failed", error_message="bounced", next_attempt_at=None)
    # still queued: not done
    empty = f.campaign(session, p, method="sms", now=now - timedelta(hours=1), name="Nobody yet")
    other = f.make_profile(session)
    f.campaign(session, other, method="email", now=now)

    table, total = analytics.campaign_table(session, profile_id=p.id)
    assert total == 2
    assert list(table["name"]) == ["Test campaign", "Nobody yet"]  # newest first
    row = table.iloc[0]
    assert row["recipients"] == 5
    assert row["done"] == 3
    assert row["progress"] == pytest.approx(0.6)
    assert row["progress_text"] == "3 of 5"
    assert row["response_rate"] == pytest.approx(0.5)  # 1 responded of 2 sent
    assert row["conversion_rate"] == pytest.approx(0.5)
    assert row["status_label"] == "Draft"
    assert row["channel"] == "E-mail"
    assert table.iloc[1]["recipients"] == 0 and table.iloc[1]["progress"] == 0
    assert table.iloc[1]["id"] == str(empty.id)

    only_sms, n = analytics.campaign_table(session, profile_id=p.id, status="draft", campaign_type="winback",
                                           created_before=now - timedelta(minutes=30))
    assert n == 1 and list(only_sms["name"]) == ["Nobody yet"]


def test_funnel_stages_follow_the_channel(session, now):
    p, c, ids = _email_campaign(session, now, n=4)
    t = now + timedelta(minutes=2)
    for rid in ids[:3]:
        h.set_state(session, rid, status="delivered", sent_at=t, delivered_at=t)
    h.event(session, ids[0], "opened", t + timedelta(minutes=1))
    h.event(session, ids[0], "clicked", t + timedelta(minutes=2))
    h.event(session, ids[1], "opened", t + timedelta(minutes=1))
    # a simulated outcome still in the future has not happened yet
    h.event(session, ids[2], "opened", now + timedelta(days=3))
    h.set_state(session, ids[0], responded_at=t, converted=True)

    frame = analytics.funnel(session, profile_id=p.id, campaign_id=c.id, now=now + timedelta(hours=1))
    assert list(frame["stage"]) == ["Customers", "Sent", "Delivered", "Opened", "Responded", "Converted"]
    assert list(frame["count"]) == [4, 3, 3, 2, 1, 1]
    # every share is of sent, the base of every rate on the dashboard
    shares = list(frame["share_of_sent"])
    assert pd.isna(shares[0]) and shares[1:] == pytest.approx([1.0, 1.0, 2 / 3, 1 / 3, 1 / 3], abs=1e-4)

    call = f.campaign(session, p, method="call", now=now)
    assert list(analytics.funnel(session, profile_id=p.id, campaign_id=call.id)["stage"]) == [
        "Customers", "Sent", "Answered", "Responded", "Converted"]
    sms = f.campaign(session, p, method="sms", now=now)
    assert list(analytics.funnel(session, profile_id=p.id, campaign_id=sms.id)["stage"]) == [
        "Customers", "Sent", "Delivered", "Responded", "Converted"]
    everything = analytics.funnel(session, profile_id=p.id, now=now + timedelta(hours=1))
    assert everything["stage"].iloc[3] == "Answered or opened"
    assert everything["count"].iloc[0] == 4


def test_timeline_buckets_fit_the_span_in_local_time(session, now):
    p, c, ids = _email_campaign(session, now, n=3)
    base = now.replace(minute=0, second=0, microsecond=0)
    h.event(session, ids[0], "sent", base + timedelta(minutes=5))
    h.event(session, ids[1], "sent", base + timedelta(minutes=5, seconds=40))
    h.event(session, ids[2], "sent", base + timedelta(minutes=9))
    h.event(session, ids[0], "delivered", base + timedelta(minutes=6))
    h.event(session, ids[0], "opened", base + timedelta(days=10))  # not happened yet at `now + 2h`

    # a five-minute campaign is counted per minute, not one hourly block
    frame, granularity = analytics.event_timeline(session, profile_id=p.id, campaign_id=c.id,
                                                  timezone="America/New_York", now=now + timedelta(hours=2))
    assert granularity == "minute"
    sent = frame[frame["type"] == "sent"]
    assert list(sent["count"]) == [2, 1]
    first = sent["time"].iloc[0]
    assert first.tzinfo is not None and (first.hour, first.minute) == ((base.hour - 4) % 24, 5)  # EDT in June
    assert list(frame[frame["type"] == "delivered"]["event"]) == ["Delivered"]

    frame, granularity = analytics.event_timeline(session, profile_id=p.id, campaign_id=c.id,
                                                  timezone="America/New_York", now=now + timedelta(days=11))
    assert granularity == "day"
    assert frame[frame["type"] == "sent"]["count"].tolist() == [3]
    assert frame[frame["type"] == "opened"]["count"].tolist() == [1]
    assert all(t.hour == 0 for t in frame["time"])

    other = f.make_profile(session)
    empty, _ = analytics.event_timeline(session, profile_id=other.id, now=now + timedelta(days=11))
    assert empty.empty


@pytest.mark.parametrize(("span", "granularity", "buckets"), [
    (timedelta(hours=4), "5 minutes", 2), (timedelta(hours=12), "15 minutes", 2), (timedelta(days=2), "hour", 2)])
def test_timeline_bucket_follows_the_span(session, now, span, granularity, buckets):
    p, c, ids = _email_campaign(session, now, n=2)
    base = now.replace(minute=0, second=0, microsecond=0)
    h.event(session, ids[0], "sent", base + timedelta(minutes=1))
    h.event(session, ids[1], "sent", base + span)
    frame, found = analytics.event_timeline(session, profile_id=p.id, campaign_id=c.id, timezone="UTC",
                                            now=base + span + timedelta(minutes=1))
    assert found == granularity and len(frame) == buckets
    assert frame["time"].iloc[0] == base  # the bucket's start


def test_status_breakdown_and_progress(session, now):
    p, c, ids = _email_campaign(session, now, n=5)
    h.set_state(session, ids[0], status="sent", sent_at=now, next_attempt_at=None)
    h.set_state(session, ids[1], status="queued", claimed_by="worker-1", claim_expires_at=now + timedelta(minutes=2))
    h.set_state(session, ids[2], status="opted_out", next_attempt_at=None)
    h.set_state(session, ids[3], next_attempt_at=now + timedelta(hours=3))
    h.set_state(session, ids[4], next_attempt_at=now - timedelta(minutes=1))
    h.event(session, ids[0], "sent", now)

    breakdown = analytics.status_breakdown(session, profile_id=p.id, campaign_id=c.id)
    assert dict(zip(breakdown["status"], breakdown["count"], strict=True)) == {
        "pending": 2, "queued": 1, "sent": 1, "delivered": 0, "answered": 0, "failed": 0, "opted_out": 1}

    progress = analytics.campaign_progress(session, profile_id=p.id, campaign_id=c.id, now=now)
    assert progress.stats.recipients == 5 and progress.stats.done == 2
    assert progress.in_flight == 1
    assert progress.due_now == 2  # the claimed one and the overdue one
    assert progress.next_due_at is not None and progress.next_due_at <= now
    assert progress.last_event_at == now
    with pytest.raises(NotFound):
        analytics.campaign_progress(session, profile_id=f.make_profile(session).id, campaign_id=c.id)


def test_two_proportion_z_test_matches_the_textbook():
    # 30 % against 20 % of 200 each: pooled 25 %, se = sqrt(.25 * .75 * (1/200 + 1/200)) = 0.0433,
    # z = 0.10 / 0.0433 = 2.309, two-sided p = 2 * (1 - Phi(2.309)) = 0.0209
    z, p = analytics.two_proportion_z_test(60, 200, 40, 200)
    assert z == pytest.approx(2.3094, abs=1e-4)
    assert p == pytest.approx(0.0209, abs=1e-4)
    z, p = analytics.two_proportion_z_test(10, 100, 10, 100)
    assert z == 0 and p == pytest.approx(1.0)
    assert analytics.two_proportion_z_test(0, 50, 0, 50) is None
    assert analytics.two_proportion_z_test(1, 0, 1, 10) is None
    # symmetric
    z_back, p_back = analytics.two_proportion_z_test(40, 200, 60, 200)
    assert z_back == pytest.approx(-2.3094, abs=1e-4) and p_back == pytest.approx(0.0209, abs=1e-4)


def test_variant_comparison_names_the_leader_and_significance(session, now):
    p = f.make_profile(session)
    for i in range(120):
        f.lead(session, p, email=f"v{i}@example.com", name=f"V {i}", now=now)
    c = f.campaign(session, p, method="email", now=now, variants=[
        {"name": "A", "weight": 1}, {"name": "B", "weight": 1, "email_subject": "Treat for {first_name|you}"}])
    ids = h.recipients(session, c, now=now)
    rows = {r.id: r.variant for r in campaigns.list_recipients(session, profile_id=p.id, campaign_id=c.id,
                                                               limit=500)[0]}
    t = now + timedelta(minutes=1)
    responded = {"A": 0, "B": 0}
    for rid in ids:
        variant = rows[rid]
        h.set_state(session, rid, status="sent", sent_at=t)
        # B's customers respond far more often than A's
        if (variant == "B" and responded["B"] < 30) or (variant == "A" and responded["A"] < 3):
            h.set_state(session, rid, responded_at=t)
            responded[variant] += 1

    table, verdicts = analytics.variant_comparison(session, profile_id=p.id, campaign_id=c.id)
    assert list(table["variant"]) == ["A", "B"]
    assert table["recipients"].sum() == 120
    assert list(table["responded"]) == [3, 30]
    response, conversion = verdicts
    assert response.leader == "B" and response.runner_up == "A"
    assert response.significant and response.p_value < 0.001
    assert "Version B is ahead on response rate" in response.sentence()
    assert "statistically significant" in response.sentence()
    assert conversion.leader_rate == 0 and not conversion.significant
    assert "same conversion rate" in conversion.sentence()


def test_variant_verdict_with_too_little_data_says_so(session, now):
    p, c, ids = _email_campaign(session, now, n=6, variants=[{"name": "A"}, {"name": "B"}])
    for i, rid in enumerate(ids):  # three each (selection's split of six is random)
        h.set_state(session, rid, status="sent", sent_at=now, variant="AB"[i % 2])
    h.set_state(session, ids[0], responded_at=now)
    _, verdicts = analytics.variant_comparison(session, profile_id=p.id, campaign_id=c.id)
    assert not verdicts[0].enough_data and not verdicts[0].significant
    assert "Too few results" in verdicts[0].sentence()
    plain, none = analytics.variant_comparison(session, profile_id=p.id,
                                               campaign_id=f.campaign(session, p, method="sms", now=now).id)
    assert plain.empty and none == []


def test_channel_comparison_groups_by_the_channel_that_reached_them(session, now):
    p = f.make_profile(session)
    for i in range(4):
        f.lead(session, p, phone=f"+1201555{i:04d}", email=f"m{i}@example.com", name=f"M {i}", now=now)
    c = f.campaign(session, p, method="multi", now=now)
    ids = h.recipients(session, c, now=now)
    h.set_state(session, ids[0], status="delivered", sent_at=now, delivered_at=now, last_channel="email",
                responded_at=now)
    h.set_state(session, ids[1], status="sent", sent_at=now, last_channel="email")
    h.set_state(session, ids[2], status="answered", sent_at=now, answered_at=now, last_channel="call",
                responded_at=now, converted=True)
    # ids[3] was never reached: it belongs to no channel yet
    email_only = f.campaign(session, p, method="email", now=now, name="Plain")
    plain_ids = h.recipients(session, email_only, now=now)
    h.set_state(session, plain_ids[0], status="sent", sent_at=now)  # older rows may lack last_channel

    frame = analytics.channel_comparison(session, profile_id=p.id, campaign_id=c.id)
    assert list(frame["channel"]) == ["Call", "E-mail"]
    call, email = frame.iloc[0], frame.iloc[1]
    assert (call["reached"], call["conversion_rate"]) == (1, 1.0)
    assert (email["reached"], email["responded"], email["response_rate"]) == (2, 1, 0.5)
    everything = analytics.channel_comparison(session, profile_id=p.id)
    assert dict(zip(everything["channel"], everything["reached"], strict=True)) == {"Call": 1, "E-mail": 3}


def test_recipient_detail_collects_attempts_events_and_the_call(session, now):
    p = f.make_profile(session)
    f.lead(session, p, phone="+12015550188", name="Ana Lima", now=now)
    c = f.campaign(session, p, method="call", now=now)
    (rid,) = h.recipients(session, c, now=now)
    h.attempt(session, rid, at=now, outcome="retryable", channel="call", error="customer-busy")
    h.attempt(session, rid, at=now + timedelta(minutes=30), channel="call", attempt_no=2)
    h.event(session, rid, "answered", now + timedelta(minutes=31), channel="call")
    h.event(session, rid, "converted", now + timedelta(minutes=35), channel="call", payload={
        "message": {"type": "end-of-call-report", "artifact": {"transcript": "AI: Hi Ana\nUser: Book me in",
                                                               "recording": {"mono": {"combinedUrl":
                                                                                      "https://r.example/1.wav"}}},
                    "analysis": {"summary": "Booked a cut for Friday.", "successEvaluation": "true"}}})
    h.set_state(session, rid, status="answered", sent_at=now, answered_at=now + timedelta(minutes=31),
                responded_at=now + timedelta(minutes=31), converted=True, attempts=2)

    detail = analytics.recipient_detail(session, profile_id=p.id, recipient_id=rid, now=now + timedelta(hours=1))
    assert detail.customer_name == "Ana Lima" and detail.status == "answered" and detail.converted
    assert list(detail.attempts["outcome"]) == ["retryable", "accepted"]
    assert detail.attempts["error"].iloc[0] == "customer-busy"
    assert list(detail.events["event"]) == ["Answered", "Converted"]
    assert detail.transcript.startswith("AI: Hi Ana")
    assert detail.summary == "Booked a cut for Friday."
    assert detail.recording_url == "https://r.example/1.wav"
    with pytest.raises(NotFound):
        analytics.recipient_detail(session, profile_id=f.make_profile(session).id, recipient_id=rid)


def test_recipients_page_is_paged_and_filtered_in_sql(session, now):
    p, c, ids = _email_campaign(session, now, n=7)
    h.set_state(session, ids[0], status="failed", error_message="Mailbox does not exist")
    page, total = analytics.recipients_page(session, profile_id=p.id, campaign_id=c.id, limit=3, offset=0)
    assert total == 7 and len(page) == 3
    second, _ = analytics.recipients_page(session, profile_id=p.id, campaign_id=c.id, limit=3, offset=3)
    assert not set(page["id"]) & set(second["id"])
    failed, n = analytics.recipients_page(session, profile_id=p.id, campaign_id=c.id, status="failed")
    assert n == 1 and failed["error"].iloc[0] == "Mailbox does not exist"
    assert failed["status_label"].iloc[0] == "Failed"
    found, n = analytics.recipients_page(session, profile_id=p.id, campaign_id=c.id, search="customer 3")
    assert n == 1 and found["customer"].iloc[0] == "Customer 3"


def test_summary_covers_one_or_all_campaigns(session, now):
    p, c, ids = _email_campaign(session, now, n=3)
    other = f.campaign(session, p, method="email", now=now, name="Second")
    h.recipients(session, other, now=now)
    h.set_state(session, ids[0], status="sent", sent_at=now)
    assert analytics.summary(session, profile_id=p.id, campaign_id=c.id).recipients == 3
    total = analytics.summary(session, profile_id=p.id)
    assert (total.recipients, total.sent) == (6, 1)
    assert analytics.summary(session, profile_id=uuid.uuid4()).recipients == 0
    comparison = analytics.campaigns_comparison(session, profile_id=p.id)
    assert set(comparison["name"]) == {"Test campaign", "Second"}
    assert not math.isnan(comparison["response_rate"].sum())

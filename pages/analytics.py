"""Analytics: what worked, for one campaign (``?id=``) or for all of them.

First, for a campaign with a holdout group, whether it brought anyone back who
would not have come anyway (lift, in words and as two rates with their 95 %
intervals) and what it cost; then funnel, response and conversion rates, the
event timeline, the status breakdown, A/B versions (with a significance test),
channels, and the business's hour-of-day curves (what "best time" sends by);
CSV export.  Every number is aggregated in SQL by ``core.analytics`` and
``core.results``.
"""

from __future__ import annotations

import uuid
from typing import Any

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go_figure
import streamlit as st

from core import analytics, besttime, campaigns, results
from core.analytics import CampaignStats
from core.db import utcnow
from core.exports import export_filename, frame_csv, iter_recipient_csv
from core.launch import money
from core.lift import Z95
from pages._ui import (
    PERCENT_FORMAT,
    RECIPIENT_COLORS,
    as_percent,
    blank_missing_text,
    business_timezone,
    db,
    engine,
    page_link,
    percent,
    percent_axis,
    plural,
    profile_id,
    query_id,
)

pid = profile_id()
ALL = "all"
PRIMARY = "#4F46E5"
EVENT_COLORS = {"Sent": "#6366F1", "Delivered": "#14B8A6", "Opened": "#0EA5E9", "Clicked": "#22C55E",
                "Answered": "#16A34A", "Not answered": "#9CA3AF", "Replied": "#84CC16", "Converted": "#F59E0B",
                "Bounced": "#EF4444", "Failed": "#DC2626", "Opted out": "#F97316", "Marked as spam": "#B91C1C",
                "Delivery delayed": "#A78BFA", "Opted back in": "#10B981", "Status update": "#D1D5DB"}


@st.cache_data(ttl=10, show_spinner=False)
def load_campaign_names(profile: str) -> dict[str, str]:
    with db() as session:
        rows, _ = campaigns.list_campaigns(session, profile_id=uuid.UUID(profile), limit=500)
        return {str(c.id): c.name for c in rows}


@st.cache_data(ttl=10, show_spinner="Counting results…")
def load_charts(profile: str, campaign: str | None, timezone: str) -> dict[str, Any]:
    """Everything the page draws, in one cached dict (plain types: the cache pickles it)."""
    p = uuid.UUID(profile)
    c = uuid.UUID(campaign) if campaign else None
    with db() as session:
        timeline, granularity = analytics.event_timeline(session, profile_id=p, campaign_id=c, timezone=timezone)
        variants, verdicts = (analytics.variant_comparison(session, profile_id=p, campaign_id=c) if c
                              else (pd.DataFrame(), []))
        return {
            "stats": analytics.summary(session, profile_id=p, campaign_id=c),
            "funnel": analytics.funnel(session, profile_id=p, campaign_id=c),
            "statuses": analytics.status_breakdown(session, profile_id=p, campaign_id=c),
            "failures": analytics.failure_reasons(session, profile_id=p, campaign_id=c),
            "timeline": timeline, "granularity": granularity,
            "channels": analytics.channel_comparison(session, profile_id=p, campaign_id=c),
            "variants": variants, "verdicts": verdicts,
            "comparison": analytics.campaigns_comparison(session, profile_id=p) if c is None else pd.DataFrame(),
            "results": results.campaign_results(session, profile_id=p, campaign_id=c) if c else None,
            # the business's hour curves: on the overview, and for a campaign that sends at the best hour
            "hours": (besttime.curves(session, profile_id=p, now=utcnow())
                      if c is None or campaigns.get_campaign(session, profile_id=p, campaign_id=c).send_time == "best"
                      else None),
        }


def recipients_csv(campaign_id: uuid.UUID) -> str:
    """The campaign's recipients as CSV, built only when the download is clicked."""
    from core.db import session_factory

    return "".join(iter_recipient_csv(session_factory(engine()), profile_id=pid, campaign_id=campaign_id))


names = load_campaign_names(str(pid))
st.title("Analytics")
if not names:
    st.info("Results appear here once you have a campaign. Create one, start it, and come back to see who "
            "opened, answered, replied and booked.", icon=":material/insights:")
    page_link("create", "Create a campaign", icon=":material/add_circle:")
    st.stop()

wanted = query_id()
options = [ALL, *names]
if "analytics_campaign" not in st.session_state or (wanted and str(wanted) != st.session_state.analytics_campaign):
    st.session_state.analytics_campaign = str(wanted) if wanted and str(wanted) in names else ALL


def _sync_query() -> None:
    choice = st.session_state.analytics_campaign
    if choice == ALL:
        st.query_params.pop("id", None)
    else:
        st.query_params["id"] = choice


choice = st.selectbox("Show results for", options, key="analytics_campaign", on_change=_sync_query,
                      format_func=lambda i: "All campaigns" if i == ALL else names[i])
campaign_id = None if choice == ALL else uuid.UUID(choice)
charts = load_charts(str(pid), str(campaign_id) if campaign_id else None, business_timezone())
s: CampaignStats = charts["stats"]

if s.recipients == 0:
    st.info("No customer has been selected yet, so there is nothing to count. Start the campaign (or wait for "
            "its scheduled time) and results appear here as they come in.", icon=":material/hourglass_empty:")
    st.stop()

# --- key numbers ------------------------------------------------------------------------------------------
cols = st.columns(5)
if campaign_id is None:
    cols[0].metric("Customers", f"{s.customers:,}", help="Different customers your campaigns contacted: a customer "
                                                          "in two campaigns counts once.")
else:
    cols[0].metric("Customers", f"{s.recipients:,}", help="Customers this campaign contacts.")
cols[1].metric("Sent", f"{s.sent:,}", help="Customers sent a message or called: the base of every rate here.")
cols[2].metric("Response rate (of sent)", percent(s.response_rate),
               help="Replied, clicked or talked to the agent, out of the customers sent to.")
cols[3].metric("Conversion rate (of sent)", percent(s.conversion_rate),
               help="Booked or said yes, out of the customers sent to.")
cols[4].metric("Opted out", f"{s.opted_out:,}", help="Asked to stop or marked a message as spam.")
if s.holdout:
    st.caption(f"Not counted above: {plural(s.holdout, 'customer')} kept back as a holdout group (never contacted), "
               "to measure what the campaign changed.")

# --- did it bring anyone back, and what did it cost ---------------------------------------------------------
outcome: results.Results | None = charts["results"]
if outcome is not None:
    st.subheader("Did it bring customers back?", anchor=False)
    if outcome.lift is not None:
        lift = outcome.lift
        (st.success if lift.significant and lift.absolute > 0 else st.info)(lift.sentence())
        groups = pd.DataFrame({
            "group": [f"Contacted ({outcome.total_recipients:,})", f"Kept back ({outcome.holdout_count:,})"],
            "rate": [lift.contacted_rate, lift.holdout_rate],
            "returned": [outcome.returned_count, outcome.holdout_returned_count],
            "n": [outcome.total_recipients, outcome.holdout_count]})
        # each group's own 95 % interval (normal approximation), for the bars
        groups["margin"] = [Z95 * (r * (1 - r) / n) ** 0.5 if n else 0.0
                            for r, n in zip(groups["rate"], groups["n"], strict=True)]
        bars = px.bar(groups, x="group", y="rate", error_y="margin", text_auto=".1%",
                      color="group", color_discrete_sequence=[PRIMARY, "#9CA3AF"],
                      labels={"group": "", "rate": "Came back"},
                      hover_data={"returned": True, "n": True, "margin": ":.1%"})
        bars.update_layout(yaxis=percent_axis(float((groups["rate"] + groups["margin"]).max())), showlegend=False,
                           margin={"l": 10, "r": 10, "t": 10, "b": 10}, height=280)
        st.plotly_chart(bars, width="stretch", key="chart_lift")
        st.caption(f"Came back = a new lead of theirs (a call to your agent, a booking, an import) within the "
                   f"campaign's attribution window. The lines are 95 % intervals; the difference is "
                   f"{percent(lift.absolute)} (95 % interval {percent(lift.ci_low)} to {percent(lift.ci_high)}).")
    else:
        came = (f"{plural(outcome.returned_count, 'contacted customer')} came back after this campaign."
                if outcome.returned_count else "No contacted customer has come back yet.")
        st.info(f"{came} Without a holdout group there is no telling how many would have come anyway: give the "
                "next campaign a holdout (Create campaign → When) to measure it.")
    cost_cols = st.columns(3)
    cost_cols[0].metric("Cost so far", money(outcome.actual_cost),
                        help="What the messages sent and the calls that ended cost, at your prices (Settings).")
    cost_cols[1].metric("Estimated cost", money(outcome.estimated_cost),
                        help="Every step for every contacted customer at your prices, as estimated before launch.")
    cost_cols[2].metric("Cost per customer who came back", money(outcome.cost_per_returned),
                        help="Cost so far divided by the contacted customers who came back.")

# --- funnel and statuses ------------------------------------------------------------------------------------
left, right = st.columns(2, gap="large")
with left:
    st.subheader("How far customers got", anchor=False)
    stages = charts["funnel"]
    labels = [f"{n:,}" if pd.isna(share) else f"{n:,} · {percent(share)} of sent"
              for n, share in zip(stages["count"], stages["share_of_sent"], strict=True)]
    funnel = go_figure.Figure(go_figure.Funnel(y=stages["stage"], x=stages["count"], text=labels, textinfo="text",
                                               textposition="inside", marker={"color": PRIMARY}))
    funnel.update_layout(margin={"l": 10, "r": 10, "t": 10, "b": 10}, height=340)
    st.plotly_chart(funnel, width="stretch", key="chart_funnel")
    st.caption("Everyone who ever reached each stage; percentages are of the customers sent to, like every rate "
               "on this page.")
with right:
    st.subheader("Where every customer is now", anchor=False)
    statuses = charts["statuses"][charts["statuses"]["count"] > 0]
    status_chart = px.bar(statuses, x="count", y="meaning", orientation="h", color="meaning",
                          color_discrete_map={m: RECIPIENT_COLORS[label] for m, label in
                                              zip(statuses["meaning"], statuses["label"], strict=True)},
                          labels={"count": "Customers", "meaning": ""})
    status_chart.update_layout(showlegend=False, margin={"l": 10, "r": 10, "t": 10, "b": 10}, height=340)
    st.plotly_chart(status_chart, width="stretch", key="chart_status")
    st.caption("Each customer once, by their latest status: a delivered message whose customer then answered "
               "counts as answered here, and as delivered in the stages on the left.")
    if not charts["failures"].empty:
        st.caption("Why customers failed: " + "; ".join(f"{r.reason} ({r.customers:,})"
                                                        for r in charts["failures"].itertuples()) + ".")

# --- timeline ----------------------------------------------------------------------------------------------------
st.subheader("Activity over time", anchor=False)
if charts["timeline"].empty:
    st.caption("No activity yet: sends, deliveries, replies and bookings show up here as they happen.")
else:
    per = charts["granularity"]
    timeline = px.bar(charts["timeline"], x="time", y="count", color="event", color_discrete_map=EVENT_COLORS,
                      labels={"time": "", "count": f"Events per {per}", "event": ""})
    timeline.update_layout(margin={"l": 10, "r": 10, "t": 10, "b": 10}, height=320, bargap=0.1,
                           legend={"orientation": "h", "y": -0.2})
    st.plotly_chart(timeline, width="stretch", key="chart_timeline")
    st.caption(f"Times in {business_timezone()}, counted per {per}.")

# --- A/B versions -------------------------------------------------------------------------------------------------
if campaign_id is not None and not charts["variants"].empty:
    st.subheader("A/B test", anchor=False)
    for verdict in charts["verdicts"]:
        (st.success if verdict.significant else st.info)(verdict.sentence())
    melted = charts["variants"].melt(id_vars="variant", value_vars=["response_rate", "conversion_rate"],
                                  var_name="metric", value_name="rate")
    melted["metric"] = melted["metric"].map({"response_rate": "Response rate", "conversion_rate": "Conversion rate"})
    melted["variant"] = "Version " + melted["variant"].astype(str)
    ab = px.bar(melted, x="metric", y="rate", color="variant", barmode="group", text_auto=".1%",
                labels={"metric": "", "rate": "Of sent", "variant": ""})
    ab.update_layout(yaxis=percent_axis(melted["rate"].max()), margin={"l": 10, "r": 10, "t": 10, "b": 10},
                     height=300)
    st.plotly_chart(ab, width="stretch", key="chart_variants")
    st.dataframe(as_percent(charts["variants"], "response_rate", "conversion_rate"), hide_index=True, placeholder="",
                 width="stretch", column_config={
        "variant": "Version", "recipients": "Customers", "sent": "Sent", "delivered": "Delivered",
        "responded": "Responded", "converted": "Converted",
        "response_rate": st.column_config.NumberColumn("Response rate (of sent)", format=PERCENT_FORMAT),
        "conversion_rate": st.column_config.NumberColumn("Conversion rate (of sent)", format=PERCENT_FORMAT)})

# --- channels --------------------------------------------------------------------------------------------------------
st.subheader("By channel", anchor=False)
if charts["channels"].empty:
    st.caption("No customer has been reached yet.")
else:
    melted = charts["channels"].melt(id_vars="channel", value_vars=["response_rate", "conversion_rate"],
                                  var_name="metric", value_name="rate")
    melted["metric"] = melted["metric"].map({"response_rate": "Response rate", "conversion_rate": "Conversion rate"})
    by_channel = px.bar(melted, x="channel", y="rate", color="metric", barmode="group", text_auto=".1%",
                        labels={"channel": "", "rate": "Of sent", "metric": ""},
                        color_discrete_sequence=[PRIMARY, "#F59E0B"])
    by_channel.update_layout(yaxis=percent_axis(melted["rate"].max()), margin={"l": 10, "r": 10, "t": 10, "b": 10},
                             height=300)
    st.plotly_chart(by_channel, width="stretch", key="chart_channels")
    st.dataframe(as_percent(charts["channels"], "response_rate", "conversion_rate"), hide_index=True, placeholder="",
                 width="stretch", column_config={
        "channel": "Channel", "reached": "Customers", "sent": "Sent", "delivered": "Delivered",
        "answered": "Answered", "responded": "Responded", "converted": "Converted",
        "response_rate": st.column_config.NumberColumn("Response rate (of sent)", format=PERCENT_FORMAT),
        "conversion_rate": st.column_config.NumberColumn("Conversion rate (of sent)", format=PERCENT_FORMAT)})

# --- best time to reach ---------------------------------------------------------------------------------------------
hours = charts["hours"]
if hours is not None and int(hours["tries"].sum()) > 0:
    st.subheader("When customers answer", anchor=False)
    shown = hours[hours.groupby("channel")["tries"].transform("sum") > 0].copy()
    shown["channel"] = shown["channel"].map({"call": "Calls answered", "sms": "Texts replied to",
                                             "email": "E-mails responded to"})
    curve = px.line(shown, x="hour", y="rate", color="channel", markers=True,
                    hover_data={"tries": True, "successes": True},
                    labels={"hour": "Hour of the day (customer's local time)", "rate": "Success rate", "channel": ""})
    curve.update_layout(yaxis=percent_axis(float(shown["rate"].max())), xaxis={"dtick": 2, "range": [-0.5, 23.5]},
                        margin={"l": 10, "r": 10, "t": 10, "b": 10}, height=300, legend={"orientation": "h", "y": -0.3})
    st.plotly_chart(curve, width="stretch", key="chart_hours")
    st.caption("Your business's smoothed success rate by local hour, from every campaign (hours with few tries lean "
               "on a typical daily pattern). Campaigns set to send at the best time plan each customer's first "
               "message by this curve (or by the customer's own history, once they have one).")

# --- all campaigns side by side, and export ------------------------------------------------------------------------
if campaign_id is None:
    st.subheader("Campaigns side by side", anchor=False)
    st.dataframe(blank_missing_text(as_percent(charts["comparison"], "response_rate", "conversion_rate")),
                 hide_index=True, placeholder="", width="stretch", column_config={
        "name": st.column_config.TextColumn("Campaign", width="medium"), "type": "Type", "channel": "Channel",
        "status": "Status", "recipients": "Customers", "sent": "Sent", "responded": "Responded",
        "converted": "Converted",
        "response_rate": st.column_config.NumberColumn("Response rate (of sent)", format=PERCENT_FORMAT),
        "conversion_rate": st.column_config.NumberColumn("Conversion rate (of sent)", format=PERCENT_FORMAT),
        "created_at": st.column_config.DatetimeColumn("Created", format="MMM D, YYYY",
                                                      timezone=business_timezone())})
    st.download_button("Download this table (CSV)", data=frame_csv(charts["comparison"]),
                       file_name="campaign-results.csv", mime="text/csv", icon=":material/download:",
                       on_click="ignore")
else:
    with db() as session:
        file_name = export_filename(session, profile_id=pid, campaign_id=campaign_id)
    st.download_button("Download every customer's result (CSV)", data=lambda: recipients_csv(campaign_id),
                       file_name=file_name, mime="text/csv", icon=":material/download:", on_click="ignore",
                       help="One row per customer: contact details, status, outcome and timestamps.")

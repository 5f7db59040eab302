"""Analytics: what worked, for one campaign (``?id=``) or for all of them.

Funnel, response and conversion rates, the event timeline, the status
breakdown, A/B versions (with a significance test) and channels; CSV export.
Every number is aggregated in SQL by ``core.analytics``.
"""

from __future__ import annotations

import uuid
from typing import Any

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go_figure
import streamlit as st

from core import analytics, campaigns
from core.analytics import CampaignStats
from core.exports import export_filename, iter_recipient_csv
from pages._ui import RECIPIENT_COLORS, business_timezone, db, engine, page_link, percent, profile_id, query_id

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
            "timeline": timeline, "granularity": granularity,
            "channels": analytics.channel_comparison(session, profile_id=p, campaign_id=c),
            "variants": variants, "verdicts": verdicts,
            "comparison": analytics.campaigns_comparison(session, profile_id=p) if c is None else pd.DataFrame(),
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
cols[0].metric("Customers", f"{s.recipients:,}")
cols[1].metric("Reached", f"{s.sent:,}", help="Messages sent or calls placed.")
cols[2].metric("Response rate", percent(s.response_rate), help="Replied, clicked or talked, out of those reached.")
cols[3].metric("Conversion rate", percent(s.conversion_rate), help="Booked or said yes, out of those reached.")
cols[4].metric("Opted out", f"{s.opted_out:,}")

# --- funnel and statuses ------------------------------------------------------------------------------------
left, right = st.columns(2, gap="large")
with left:
    st.subheader("Funnel", anchor=False)
    funnel = go_figure.Figure(go_figure.Funnel(
        y=charts["funnel"]["stage"], x=charts["funnel"]["count"], textinfo="value+percent initial",
        marker={"color": PRIMARY}))
    funnel.update_layout(margin={"l": 10, "r": 10, "t": 10, "b": 10}, height=340)
    st.plotly_chart(funnel, width="stretch", key="chart_funnel")
with right:
    st.subheader("Where everyone is", anchor=False)
    statuses = charts["statuses"][charts["statuses"]["count"] > 0]
    status_chart = px.bar(statuses, x="count", y="label", orientation="h", color="label",
                          color_discrete_map=RECIPIENT_COLORS, labels={"count": "Customers", "label": ""})
    status_chart.update_layout(showlegend=False, margin={"l": 10, "r": 10, "t": 10, "b": 10}, height=340)
    st.plotly_chart(status_chart, width="stretch", key="chart_status")

# --- timeline ----------------------------------------------------------------------------------------------------
st.subheader("Activity over time", anchor=False)
if charts["timeline"].empty:
    st.caption("No activity yet: sends, deliveries, replies and bookings show up here as they happen.")
else:
    per = "hour" if charts["granularity"] == "hour" else "day"
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
                labels={"metric": "", "rate": "", "variant": ""})
    ab.update_layout(yaxis_tickformat=".0%", margin={"l": 10, "r": 10, "t": 10, "b": 10}, height=300)
    st.plotly_chart(ab, width="stretch", key="chart_variants")
    st.dataframe(charts["variants"], hide_index=True, width="stretch", column_config={
        "variant": "Version", "recipients": "Customers", "sent": "Reached", "delivered": "Delivered",
        "responded": "Responded", "converted": "Converted",
        "response_rate": st.column_config.NumberColumn("Response rate", format="percent"),
        "conversion_rate": st.column_config.NumberColumn("Conversion rate", format="percent")})

# --- channels --------------------------------------------------------------------------------------------------------
st.subheader("By channel", anchor=False)
if charts["channels"].empty:
    st.caption("No customer has been reached yet.")
else:
    melted = charts["channels"].melt(id_vars="channel", value_vars=["response_rate", "conversion_rate"],
                                  var_name="metric", value_name="rate")
    melted["metric"] = melted["metric"].map({"response_rate": "Response rate", "conversion_rate": "Conversion rate"})
    by_channel = px.bar(melted, x="channel", y="rate", color="metric", barmode="group", text_auto=".1%",
                        labels={"channel": "", "rate": "", "metric": ""},
                        color_discrete_sequence=[PRIMARY, "#F59E0B"])
    by_channel.update_layout(yaxis_tickformat=".0%", margin={"l": 10, "r": 10, "t": 10, "b": 10}, height=300)
    st.plotly_chart(by_channel, width="stretch", key="chart_channels")
    st.dataframe(charts["channels"], hide_index=True, width="stretch", column_config={
        "channel": "Channel", "reached": "Customers", "sent": "Reached", "delivered": "Delivered",
        "answered": "Answered", "responded": "Responded", "converted": "Converted",
        "response_rate": st.column_config.NumberColumn("Response rate", format="percent"),
        "conversion_rate": st.column_config.NumberColumn("Conversion rate", format="percent")})

# --- all campaigns side by side, and export ------------------------------------------------------------------------
if campaign_id is None:
    st.subheader("Campaigns side by side", anchor=False)
    st.dataframe(charts["comparison"], hide_index=True, width="stretch", column_config={
        "name": "Campaign", "type": "Type", "channel": "Channel", "status": "Status", "recipients": "Customers",
        "sent": "Reached", "responded": "Responded", "converted": "Converted",
        "response_rate": st.column_config.NumberColumn("Response rate", format="percent"),
        "conversion_rate": st.column_config.NumberColumn("Conversion rate", format="percent"),
        "created_at": st.column_config.DatetimeColumn("Created", format="MMM D, YYYY",
                                                      timezone=business_timezone())})
    st.download_button("Download this table (CSV)", data=charts["comparison"].to_csv(index=False),
                       file_name="campaign-results.csv", mime="text/csv", icon=":material/download:",
                       on_click="ignore")
else:
    with db() as session:
        file_name = export_filename(session, profile_id=pid, campaign_id=campaign_id)
    st.download_button("Download every customer's result (CSV)", data=lambda: recipients_csv(campaign_id),
                       file_name=file_name, mime="text/csv", icon=":material/download:", on_click="ignore",
                       help="One row per customer: contact details, status, outcome and timestamps.")

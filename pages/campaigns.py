"""Campaigns: every campaign with its status, progress, key rates and what it waits for ("next send
09:00"); filters; a click on a row opens the campaign; quick actions (open, start, pause, stop, delete)."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, time, timedelta

import pandas as pd
import streamlit as st

from core import analytics, campaigns
from core.models import CAMPAIGN_STATUSES, CAMPAIGN_TYPES
from pages._ui import (
    PERCENT_FORMAT,
    STATUS_COLORS,
    answered,
    as_percent,
    ask,
    asked,
    attempt,
    blank_missing_text,
    business_timezone,
    confirm_buttons,
    db,
    go,
    page_link,
    page_offset,
    pager,
    past_the_end,
    pick,
    profile_id,
)

PAGE_SIZE = 25
pid = profile_id()


@st.cache_data(ttl=5, show_spinner=False)
def load_table(profile: str, status: str | None, campaign_type: str | None, after: datetime | None,
               before: datetime | None, offset: int, timezone: str) -> tuple[pd.DataFrame, int]:
    """One page of the list (cached a few seconds: the list also says what each campaign waits for)."""
    with db() as session:
        return analytics.campaign_table(session, profile_id=uuid.UUID(profile), status=status,
                                        campaign_type=campaign_type, created_after=after, created_before=before,
                                        limit=PAGE_SIZE, offset=offset, timezone=timezone)


head, button = st.columns([4, 1], vertical_alignment="bottom")
head.title("Campaigns")
if button.button("New campaign", icon=":material/add:", type="primary", width="stretch"):
    go("create")

f1, f2, f3 = st.columns(3)
type_choice = f1.selectbox("Type", ["All types", *CAMPAIGN_TYPES],
                           format_func=lambda t: analytics.TYPE_LABELS.get(t, t), key="filter_type")
status_choice = f2.selectbox("Status", ["All statuses", *CAMPAIGN_STATUSES],
                             format_func=lambda s: analytics.STATUS_LABELS.get(s, s), key="filter_status")
created = f3.date_input("Created between", value=(), max_value=date.today() + timedelta(days=1),
                        key="filter_created", help="Pick a first and a last day.")
after = before = None
if isinstance(created, (tuple, list)) and len(created) == 2:
    after = datetime.combine(created[0], time(), UTC)
    before = datetime.combine(created[1] + timedelta(days=1), time(), UTC)
filtered = type_choice != "All types" or status_choice != "All statuses" or after is not None

offset = page_offset("campaigns_page", PAGE_SIZE, (type_choice, status_choice, after, before))
table, total = load_table(str(pid), None if status_choice == "All statuses" else status_choice,
                          None if type_choice == "All types" else type_choice, after, before, offset,
                          business_timezone())
past_the_end(len(table), total, key="campaigns_page", page_size=PAGE_SIZE)

if total == 0 and not filtered:
    st.info("You have no campaigns yet. Create your first one: choose who to win back, write the message, "
            "and pick when it goes out. It takes about two minutes.", icon=":material/lightbulb:")
    page_link("create", "Create your first campaign", icon=":material/add_circle:")
    st.stop()
if total == 0:
    st.info("No campaign matches these filters. Change or clear the filters above.")
    st.stop()

shown = blank_missing_text(as_percent(table, "progress", "response_rate", "conversion_rate")).assign(
    status_badge=[[label] for label in table["status_label"]], created=table["created_at"])
event = st.dataframe(
    shown,
    column_order=["name", "status_badge", "next_send", "channel", "schedule", "progress", "progress_text",
                  "response_rate", "conversion_rate", "type", "created"],
    column_config={
        "name": st.column_config.TextColumn("Campaign", width="medium", help="Click a row to open the campaign."),
        "status_badge": st.column_config.MultiselectColumn(
            "Status", options=list(STATUS_COLORS), color=list(STATUS_COLORS.values()), width="small"),
        "next_send": st.column_config.TextColumn("Next send", width="medium",
                                                 help="When the campaign sends next, or what it waits for."),
        "channel": st.column_config.TextColumn("Channel", width="small"),
        "schedule": st.column_config.TextColumn("Schedule", width="medium"),
        "progress": st.column_config.ProgressColumn("Progress", min_value=0.0, max_value=100.0, format=PERCENT_FORMAT,
                                                    help="Customers with nothing left to do, of all the customers "
                                                         "the campaign contacts.", width="small"),
        "progress_text": st.column_config.TextColumn("Done", width="small"),
        "response_rate": st.column_config.NumberColumn("Responded", format=PERCENT_FORMAT, width="small",
                                                       help="Customers who replied, clicked or answered, of sent."),
        "conversion_rate": st.column_config.NumberColumn("Converted", format=PERCENT_FORMAT, width="small",
                                                         help="Customers who booked, of sent."),
        "type": st.column_config.TextColumn("Type", width="small"),
        "created": st.column_config.DatetimeColumn("Created", format="MMM D, YYYY", timezone=business_timezone(),
                                                   width="small"),
    },
    hide_index=True, placeholder="", width="stretch", on_select="rerun", selection_mode="single-row",
    key="campaign_table",
)
if event is not None and event.selection.rows:
    go("campaign", id=table["id"].iloc[event.selection.rows[0]])  # a click on a row opens the campaign
pager(total, key="campaigns_page", page_size=PAGE_SIZE)

# --- quick actions ---------------------------------------------------------------------------------
st.subheader("Actions", anchor=False)
ids = list(table["id"])
names = dict(zip(table["id"], table["name"], strict=True))
statuses = dict(zip(table["id"], table["status"], strict=True))
chosen = pick("Campaign", ids, key="action_campaign",
              format_func=lambda i: f"{names[i]} ({analytics.STATUS_LABELS[statuses[i]]})")
cid = uuid.UUID(chosen)
status = statuses[chosen]


@st.dialog("Stop this campaign?", on_dismiss=answered)
def confirm_stop(campaign_id: uuid.UUID, name: str) -> None:
    st.write(f"**{name}** will stop for good: customers not reached yet will not be contacted, and a stopped "
             "campaign cannot be started again. To stop only for a while, pause it instead.")
    confirm_buttons("Stop the campaign",
                    lambda s: campaigns.stop_campaign(s, profile_id=pid, campaign_id=campaign_id),
                    success=f"“{name}” stopped.", no="Keep it running", destructive=True)


@st.dialog("Delete this campaign?", on_dismiss=answered)
def confirm_delete(campaign_id: uuid.UUID, name: str) -> None:
    st.write(f"**{name}** and its recipient list and results will be deleted. This cannot be undone.")
    confirm_buttons("Delete the campaign",
                    lambda s: campaigns.delete_campaign(s, profile_id=pid, campaign_id=campaign_id),
                    success=f"“{name}” deleted.", destructive=True)


with st.container(horizontal=True):
    if st.button("Open", icon=":material/open_in_new:"):
        go("campaign", id=cid)
    if st.button("Results", icon=":material/insights:"):
        go("analytics", id=cid)
    if st.button("Resume" if status == "paused" else "Start now", icon=":material/play_arrow:",
                 disabled=status not in ("draft", "scheduled", "paused")):
        with st.spinner("Choosing the customers who match and starting…"):
            attempt(lambda s: campaigns.start_campaign(s, profile_id=pid, campaign_id=cid),
                    success=f"“{names[chosen]}” is running.", remember=True)
        st.rerun()
    if st.button("Pause", icon=":material/pause:", disabled=status != "active"):
        attempt(lambda s: campaigns.pause_campaign(s, profile_id=pid, campaign_id=cid),
                success=f"“{names[chosen]}” paused.", remember=True)
        st.rerun()
    if st.button("Stop…", icon=":material/stop:", disabled=status in ("completed", "cancelled")):
        ask("stop_campaign", id=chosen)
    if st.button("Delete…", icon=":material/delete:", disabled=status == "active",
                 help="Pause or stop a running campaign before deleting it." if status == "active" else None):
        ask("delete_campaign", id=chosen)
if (question := asked("stop_campaign")) and question["id"] in names:
    confirm_stop(uuid.UUID(question["id"]), names[question["id"]])
if (question := asked("delete_campaign")) and question["id"] in names:
    confirm_delete(uuid.UUID(question["id"]), names[question["id"]])
waits = table.loc[table["id"] == chosen, "waiting"].iloc[0]
reason = table.loc[table["id"] == chosen, "status_reason"].iloc[0]
if waits:
    st.caption(waits)
elif reason:
    st.caption(f"Why it is {analytics.STATUS_LABELS[status].lower()}: {reason}")

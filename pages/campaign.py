"""One campaign (``?id=``): overview, start/pause/stop, who was left out and the law that applies to
its calls and texts, and — refreshing on their own while the campaign runs, or while it waits to
start — what it waits for, its progress and counters, the customers (paged on the server,
filterable) and the chosen customer's story."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import streamlit as st

from core import analytics, campaigns, compliance, waiting, wizard
from core.analytics import RECIPIENT_STATUS_LABELS, STATUS_LABELS, TYPE_LABELS
from core.errors import DomainError
from core.models import RECIPIENT_STATUSES
from core.schemas import CampaignOut
from pages._ui import (
    BADGE_COLORS,
    CONSENT_TAB,
    RECIPIENT_COLORS,
    answered,
    ask,
    asked,
    attempt,
    blank_missing_text,
    business_timezone,
    confirm_buttons,
    db,
    format_phone,
    go,
    local_time,
    page_link,
    page_offset,
    pager,
    past_the_end,
    percent,
    pick,
    plural,
    profile_id,
    query_id,
    sentence,
    state_rules_table,
)

REFRESH_SECONDS = 3
# a draft or a paused campaign may be started from another tab or the API: look now and then
IDLE_REFRESH_SECONDS = 15
PAGE_SIZE = 50
pid = profile_id()
cid = query_id()

if cid is None:
    st.title("Campaign")
    st.info("Open a campaign from the campaign list to see it here.")
    page_link("campaigns", "Go to the campaign list", icon=":material/campaign:")
    st.stop()


def load_campaign() -> CampaignOut | None:
    try:
        with db() as session:
            return CampaignOut.model_validate(campaigns.get_campaign(session, profile_id=pid, campaign_id=cid))
    except DomainError:
        return None


campaign = load_campaign()
if campaign is None:
    st.title("Campaign")
    st.error("This campaign does not exist any more (it may have been deleted).")
    page_link("campaigns", "Go to the campaign list", icon=":material/campaign:")
    st.stop()
status = campaign.status
refresh = {"active": REFRESH_SECONDS, "scheduled": REFRESH_SECONDS, "draft": IDLE_REFRESH_SECONDS,
           "paused": IDLE_REFRESH_SECONDS}.get(status)
tz = business_timezone()

# --- header and actions -------------------------------------------------------------------------------
page_link("campaigns", "All campaigns", icon=":material/arrow_back:")
title, badge = st.columns([5, 1], vertical_alignment="center")
title.title(campaign.name)
with badge:
    st.badge(STATUS_LABELS[status], color=BADGE_COLORS[status])  # type: ignore[arg-type]
method_text = wizard.METHOD_LABELS[campaign.outreach_method]
if campaign.outreach_method == "multi":
    method_text += ": " + " → ".join(analytics.CHANNEL_LABELS[s["channel"]] for s in campaign.steps)
st.caption(f"{TYPE_LABELS[campaign.campaign_type]} · {method_text} · created {local_time(campaign.created_at)}")
if campaign.description:
    st.write(campaign.description)
if campaign.status_reason and status in ("completed", "cancelled"):
    st.warning(campaign.status_reason, icon=":material/info:")


@st.dialog("Stop this campaign?", on_dismiss=answered)
def confirm_stop() -> None:
    st.write("Customers not reached yet will not be contacted, and a stopped campaign cannot be started again. "
             "To stop only for a while, pause it instead.")
    confirm_buttons("Stop the campaign", lambda s: campaigns.stop_campaign(s, profile_id=pid, campaign_id=cid),
                    success="Campaign stopped.", no="Keep it running", destructive=True)


@st.dialog("Delete this campaign?", on_dismiss=answered)
def confirm_delete() -> None:
    st.write("The campaign, its recipient list and its results will be deleted. This cannot be undone.")
    confirm_buttons("Delete the campaign", lambda s: campaigns.delete_campaign(s, profile_id=pid, campaign_id=cid),
                    success=f"“{campaign.name}” deleted.", then=lambda _: go("campaigns"), destructive=True)


with st.container(horizontal=True):
    if st.button("Resume" if status == "paused" else "Start now", icon=":material/play_arrow:", type="primary",
                 disabled=status not in ("draft", "scheduled", "paused")):
        with st.spinner("Choosing the customers who match and starting…"):
            attempt(lambda s: campaigns.start_campaign(s, profile_id=pid, campaign_id=cid),
                    success="Campaign running.", remember=True)
        st.rerun()
    if st.button("Pause", icon=":material/pause:", disabled=status != "active"):
        attempt(lambda s: campaigns.pause_campaign(s, profile_id=pid, campaign_id=cid), success="Campaign paused.",
                remember=True)
        st.rerun()
    if st.button("Stop…", icon=":material/stop:", disabled=status in ("completed", "cancelled")):
        ask("stop_one", id=str(cid))
    if st.button("Results and charts", icon=":material/insights:"):
        go("analytics", id=cid)
    if st.button("Delete…", icon=":material/delete:", disabled=status == "active",
                 help="Pause or stop it before deleting it." if status == "active" else None):
        ask("delete_one", id=str(cid))
if (question := asked("stop_one")) and question["id"] == str(cid):
    confirm_stop()
if (question := asked("delete_one")) and question["id"] == str(cid):
    confirm_delete()


def follow_status() -> None:
    """The campaign changed status meanwhile (the scheduler started or completed it, another tab paused it):
    the whole page is drawn again, buttons included."""
    try:
        with db() as session:
            now_status = campaigns.get_campaign(session, profile_id=pid, campaign_id=cid).status
    except DomainError:
        now_status = None
    if now_status != status:
        st.rerun(scope="app")


# --- what it waits for, and its progress ------------------------------------------------------------------


@st.fragment(run_every=refresh)
def live_progress() -> None:
    follow_status()
    try:
        with db() as session:
            progress = analytics.campaign_progress(session, profile_id=pid, campaign_id=cid)
            why = waiting.why_waiting(session, profile_id=pid, campaign_id=cid, timezone=tz)
            reasons = analytics.failure_reasons(session, profile_id=pid, campaign_id=cid)
    except DomainError as exc:
        st.error(sentence(exc))
        return
    if why is not None:
        alarm = why.kind in ("paused", "stalled", "provider")
        (st.warning if alarm else st.info)(why.sentence, icon=":material/schedule:" if not alarm else
                                           ":material/pause_circle:" if why.kind == "paused" else ":material/warning:")
    s = progress.stats
    if s.recipients == 0:
        if status not in ("draft", "scheduled"):
            st.warning("Nobody matched the audience when this campaign started, so there was no one to contact.")
        return
    st.progress(s.progress, text=f"{s.done:,} of {plural(s.recipients, 'customer')} done ({percent(s.progress)})")
    cols = st.columns(7)
    cols[0].metric("Customers", f"{s.recipients:,}", help="Customers this campaign contacts.")
    cols[1].metric("Sent", f"{s.sent:,}", help="Sent a message or called (delivered and answered ones included).")
    cols[2].metric("Delivered", f"{s.delivered:,}", help="Delivery confirmed at some point (a customer who then "
                                                         "replied still counts).")
    cols[3].metric("Responded", f"{s.responded:,}", help="Replied, clicked or talked to the agent.")
    cols[4].metric("Converted", f"{s.converted:,}", help="Booked or otherwise said yes.")
    cols[5].metric("Failed", f"{s.failed:,}", help="Bounced or could not be reached; the reasons are below.")
    cols[6].metric("Opted out", f"{s.opted_out:,}", help="Asked to stop or marked the message as spam.")
    notes = [f"Response rate {percent(s.response_rate)} of sent, conversion rate {percent(s.conversion_rate)} "
             "of sent."]
    if progress.last_event_at:
        notes.append(f"Last activity {local_time(progress.last_event_at)}.")
    if refresh == REFRESH_SECONDS:
        notes.append(f"Refreshes every {REFRESH_SECONDS} seconds.")
    st.caption(" ".join(notes))
    if s.holdout:
        st.caption(f"Plus {plural(s.holdout, 'customer')} kept back as a holdout group: never contacted, they show "
                   "how many would have come back without the campaign.")
    if not reasons.empty:
        st.caption("Why customers failed: " + "; ".join(f"{r.reason} ({r.customers:,})"
                                                        for r in reasons.itertuples()) + ".")


live_progress()

with st.expander("How this campaign is set up"):
    c1, c2 = st.columns(2)
    c1.markdown("**Audience**")
    c1.markdown("\n".join(f"- {line}" for line in wizard.describe_criteria(campaign.target_criteria)))
    window = campaign.send_window
    days = ", ".join(wizard.DAY_NAMES[d][:3] for d in window.get("days", []))
    c2.markdown("**Schedule and pace**")
    c2.markdown(f"- Send window {window.get('start')}–{window.get('end')} on {days} (customer's local time, "
                f"fallback {campaign.timezone})\n- {campaign.rate_limit_per_minute} per minute, up to "
                f"{campaign.max_attempts} tries each"
                + (f"\n- {campaign.max_concurrent_calls} calls at the same time"
                   if "call" in wizard.used_channels(campaign.model_dump()) else ""))
    for name, label in (("email_subject", "E-mail subject"), ("message_template", "Message"),
                        ("sms_template", "SMS text"), ("call_script", "Call script")):
        text = getattr(campaign, name)
        if text:
            st.markdown(f"**{label}**")
            st.text(text)
    if campaign.variables:
        st.caption("Variables: " + ", ".join(f"{{{k}}} = {v}" for k, v in campaign.variables.items()))
    if campaign.variants:
        st.caption("A/B test: " + ", ".join(f"version {v['name']} (weight {v.get('weight', 1)})"
                                            for v in campaign.variants))


# --- who was left out, and the law (DESIGN §10) -------------------------------------------------------------

@st.cache_data(ttl=30, show_spinner=False)
def load_compliance(profile: str, campaign_id: str, now_status: str) -> dict[str, Any] | str:
    """What the law asks of the campaign (:func:`core.compliance.campaign_compliance`: before it starts,
    counted on its audience as it stands now); a sentence when it cannot be read.  ``now_status`` is part
    of the cache key: the figures change meaning when the campaign starts."""
    try:
        with db() as session:
            return compliance.campaign_compliance(session, profile_id=uuid.UUID(profile),
                                                  campaign_id=uuid.UUID(campaign_id))
    except DomainError as exc:
        return sentence(exc)


def compliance_panel(campaign: CampaignOut) -> None:
    found = load_compliance(str(pid), str(cid), status)
    if isinstance(found, str):
        with st.expander("Who is left out, and the law"):
            st.error(found)
        return
    channels = wizard.used_channels(campaign.model_dump())
    chosen = found["counted_on"] == "selection"
    words = wizard.left_out(found["suppressed_by"], policy=found["policy"], campaign_type=campaign.campaign_type,
                            channels=channels, past=chosen)
    label = "Who was left out, and the law" if chosen else "Who would be left out, and the law"
    if words.total:
        label = label.replace(" left out", f" left out ({words.total:,})", 1)
    with st.expander(label):
        st.caption(wizard.policy_sentence(found["policy"]))
        if not chosen:
            st.caption("Customers are chosen when the campaign starts. As the audience stands now:")
        st.markdown(words.markdown())
        if words.no_contact:
            st.caption(words.no_contact)
        if set(channels) & {"call", "sms"}:
            state_rules_table(found["by_state"], channels=channels, past=chosen,
                              heading="Customers in states with their own rules for calls and texts")
        page_link("customers", "Import consent or manage the do-not-call list", icon=":material/verified_user:",
                  tab=CONSENT_TAB)


compliance_panel(campaign)


# --- the customers -----------------------------------------------------------------------------------------


def _when(value: datetime | None) -> str:
    return local_time(value) if value else "—"


@st.fragment(run_every=refresh)
def customers() -> None:
    follow_status()
    st.subheader("Customers in this campaign", anchor=False)
    f1, f2 = st.columns([1, 2])
    status_filter = f1.selectbox("Status", ["", *RECIPIENT_STATUSES], key="recipient_status",
                                 format_func=lambda s: RECIPIENT_STATUS_LABELS.get(s, "All statuses"))
    search = f2.text_input("Search by name, phone or e-mail", key="recipient_search",
                           placeholder="e.g. Garcia or 555")
    offset = page_offset("recipients_page", PAGE_SIZE, (str(cid), status_filter, search))
    try:
        with db() as session:
            page, total = analytics.recipients_page(session, profile_id=pid, campaign_id=cid,
                                                    status=status_filter or None, search=search or None,
                                                    limit=PAGE_SIZE, offset=offset)
    except DomainError as exc:
        st.error(sentence(exc))
        return
    past_the_end(len(page), total, key="recipients_page", page_size=PAGE_SIZE)

    if total == 0:
        if status_filter or search:
            st.info("No customer matches this filter.")
        elif status in ("draft", "scheduled"):
            st.info("Customers are selected when the campaign starts. Start it now, or wait for its scheduled "
                    "time.")
        else:
            st.info("This campaign has no customers.")
        return

    shown = blank_missing_text(page).assign(
        status_badge=[[label] for label in page["status_label"]],
        phone=[format_phone(p) for p in page["phone"]],
        customer_page=[f"customer?id={c}" if c else None for c in page["customer_id"]],
    )
    event = st.dataframe(
        shown, hide_index=True, placeholder="", width="stretch", on_select="rerun",
        selection_mode="single-row", key="recipient_table",
        # why a customer waits, beside their status: the end of a wide table is off screen
        column_order=["customer", "customer_page", "phone", "email", "status_badge", "waiting_reason",
                      "next_attempt_at", "channel", "step", "attempts", "sent_at", "responded_at", "converted",
                      "error", "variant"],
        column_config={
            "customer": st.column_config.TextColumn("Customer", width="medium"),
            "customer_page": st.column_config.LinkColumn("Customer page", display_text="Open ↗", width="small",
                                                         help="Everything about this customer, in a new tab."),
            "phone": st.column_config.TextColumn("Phone"),
            "email": st.column_config.TextColumn("E-mail", width="medium"),
            "status_badge": st.column_config.MultiselectColumn("Status", options=list(RECIPIENT_COLORS),
                                                               color=list(RECIPIENT_COLORS.values()), width="small"),
            "variant": st.column_config.TextColumn("Version", width="small"),
            "channel": st.column_config.TextColumn("Channel"),
            "step": st.column_config.NumberColumn("Step", width="small"),
            "attempts": st.column_config.NumberColumn("Tries", width="small"),
            "sent_at": st.column_config.DatetimeColumn("Sent", format="MMM D, HH:mm", timezone=tz),
            "responded_at": st.column_config.DatetimeColumn("Responded", format="MMM D, HH:mm", timezone=tz),
            "converted": st.column_config.CheckboxColumn("Converted", width="small"),
            "error": st.column_config.TextColumn("Problem", width="medium"),
            "next_attempt_at": st.column_config.DatetimeColumn("Next try", format="MMM D, HH:mm", timezone=tz,
                                                               width="medium"),
            "waiting_reason": st.column_config.TextColumn("Waits because", width="medium",
                                                          help="Why the next try was put off: the send window, a "
                                                               "state's calling hours or its 24-hour limit, the "
                                                               "customer's best hour, an A/B test."),
        },
    )
    pager(total, key="recipients_page", page_size=PAGE_SIZE)

    # --- one customer ------------------------------------------------------------------------------------
    ids = list(page["id"])
    labels = {row.id: f"{row.customer} · {format_phone(row.phone) or row.email or 'no contact'} · {row.status_label}"
              for row in blank_missing_text(page).itertuples()}
    chosen = pick("Details for", ids, key="recipient_detail", format_func=lambda i: labels[i],
                  clicked_rows=event.selection.rows if event is not None else None,
                  help="Or click a row in the table.")
    try:
        with db() as session:
            detail = analytics.recipient_detail(session, profile_id=pid, recipient_id=uuid.UUID(chosen))
    except DomainError as exc:
        st.error(sentence(exc))
        return
    customer_id = page.loc[page["id"] == chosen, "customer_id"].iloc[0]
    with st.container(border=True):
        head, link = st.columns([4, 1], vertical_alignment="center")
        head.markdown(f"**{detail.customer_name or 'Unnamed customer'}** — "
                      f"{' · '.join(x for x in (format_phone(detail.customer_phone), detail.customer_email) if x)}")
        if customer_id:
            with link:
                page_link("customer", "Customer page", icon=":material/person:", id=customer_id)
        c1, c2, c3, c4 = st.columns(4)
        c1.metric("Status", RECIPIENT_STATUS_LABELS[detail.status])
        c2.metric("Step", f"{detail.step + 1}")
        c3.metric("Tries so far", f"{detail.attempts_made}")
        c4.metric("Converted", "Yes" if detail.converted else "No")
        st.caption(f"Sent {_when(detail.sent_at)} · delivered {_when(detail.delivered_at)} · answered "
                   f"{_when(detail.answered_at)} · responded {_when(detail.responded_at)}"
                   + (f" · next try {_when(detail.next_attempt_at)}" if detail.next_attempt_at else "")
                   + (f" · version {detail.variant}" if detail.variant else ""))
        if detail.error_message:
            st.error(f"Problem: {detail.error_message}")
        if detail.waiting_reason and detail.next_attempt_at:
            st.info(f"Waits until {_when(detail.next_attempt_at)}: {detail.waiting_reason}.",
                    icon=":material/schedule:")
        if detail.summary:
            st.markdown(f"**Call summary.** {detail.summary}")
        if detail.reply:
            st.markdown(f"**Their reply.** {detail.reply}")
        if detail.recording_url:
            st.markdown(f"[Listen to the recording]({detail.recording_url})")
        if detail.transcript:
            with st.expander("Call transcript"):
                st.text(detail.transcript)
        tab_events, tab_attempts = st.tabs(["What happened", "Send attempts"])
        with tab_events:
            if detail.events.empty:
                st.caption("Nothing has happened yet for this customer.")
            else:
                st.dataframe(blank_missing_text(detail.events), hide_index=True, placeholder="", width="stretch",
                             column_config={
                    "time": st.column_config.DatetimeColumn("When", format="MMM D, HH:mm:ss", timezone=tz),
                    "event": "What", "channel": "Channel", "provider": "Provider",
                    "note": st.column_config.TextColumn("Details", width="large")})
        with tab_attempts:
            if detail.attempts.empty:
                st.caption("No send attempt yet.")
            else:
                st.dataframe(blank_missing_text(detail.attempts), hide_index=True, placeholder="", width="stretch",
                             column_config={
                    "step": "Step", "try": "Try", "channel": "Channel", "provider": "Provider", "outcome": "Outcome",
                    "message id": "Provider's id", "error": st.column_config.TextColumn("Problem", width="large"),
                    "started": st.column_config.DatetimeColumn("Started", format="MMM D, HH:mm:ss", timezone=tz),
                    "finished": st.column_config.DatetimeColumn("Finished", format="MMM D, HH:mm:ss", timezone=tz)})


customers()

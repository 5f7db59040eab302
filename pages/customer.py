"""One customer (``customer?id=<customer id>``): who they are, their leads, every campaign they were in
and every message exactly as it was sent — the e-mail rendered (in a sandboxed frame: nothing in it
runs, and its links cannot be clicked from here, so looking never counts as the customer's click), the
text, the call's summary, transcript and recording — what they clicked, their opt-outs and consents.

Opened from the customer list and from a campaign's customer rows; not a navigation entry of its own.
"""

from __future__ import annotations

import html
import uuid
from datetime import datetime

import pandas as pd
import streamlit as st

from core import customer_activity
from core.analytics import RECIPIENT_STATUS_LABELS
from core.customers import CustomerCampaign, CustomerDetail, SentMessage, customer_detail
from core.errors import DomainError
from core.templates import sms_length
from pages._ui import (
    blank_missing_text,
    business_timezone,
    db,
    format_phone,
    local_time,
    page_link,
    plural,
    profile_id,
    query_id,
    sentence,
)

pid = profile_id()
CHANNEL_WORDS = {"call": "Call", "email": "E-mail", "sms": "Text message"}
CHANNEL_ICONS = {"call": ":material/call:", "email": ":material/mail:", "sms": ":material/sms:"}
OUTCOME_WORDS = {"accepted": "handed to {provider}", "retryable": "not taken by {provider}, tried again later",
                 "permanent": "refused by {provider}", "opted_out": "not sent: opted out",
                 "quota": "not sent: the provider account could not send", "unknown": "outcome unknown",
                 "skipped": "not sent"}
PROVIDERS = {"vapi": "Vapi", "resend": "Resend", "smtp": "the SMTP server", "twilio": "Twilio", "vonage": "Vonage",
             "sns": "AWS SNS", "sandbox": "the sandbox (simulated)"}
SOURCE_WORDS = {"sms_stop": "Replied STOP", "unsubscribe_link": "Unsubscribe link", "call_request": "Asked on a call",
                "bounce": "E-mail bounced", "complaint": "Marked as spam", "manual": "Added by hand"}
OPT_OUT_CHANNELS = {"all": "Every channel", "call": "Calls", "email": "E-mail", "sms": "Texts"}
LEVELS = {"express_written": "Written", "express": "Express"}
CONSENT_SOURCES = {"manual": "Entered by hand", "web_form": "Web form", "call": "On a call", "import": "Import",
                   "api": "API"}


@st.cache_data(ttl=15, show_spinner=False)
def load(profile: str, customer: str) -> tuple[CustomerDetail, dict[uuid.UUID, list[customer_activity.Activity]],
                                                dict[tuple[uuid.UUID, int, datetime], str]]:
    with db() as session:
        detail = customer_detail(session, profile_id=uuid.UUID(profile), customer_id=uuid.UUID(customer))
        recipients = [c.recipient_id for c in detail.campaigns]
        events = customer_activity.recipient_activity(session, profile_id=uuid.UUID(profile),
                                                      recipient_ids=recipients)
        pages = customer_activity.sent_html(session, profile_id=uuid.UUID(profile), recipient_ids=recipients)
    return detail, events, pages


def email_frame(body: str, *, height: int) -> None:
    """The e-mail's HTML in a frame with every permission off (``sandbox=""``): no script runs, no form
    posts, and its links are inert, so opening this page never registers a click for the customer."""
    document = ("<!doctype html><html><head><meta charset='utf-8'>"
                "<style>body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;font-size:14px;"
                "line-height:1.5;color:#1f2937;margin:16px}a{pointer-events:none;color:#2563eb}</style></head>"
                f"<body>{body}</body></html>")
    st.iframe("<!doctype html><html><body style='margin:0'>"
              f"<iframe sandbox='' referrerpolicy='no-referrer' title='The e-mail as sent' "
              f"srcdoc=\"{html.escape(document, quote=True)}\" "
              f"style='width:100%;height:{height}px;border:1px solid #e5e7eb;border-radius:8px;background:#fff'>"
              "</iframe></body></html>", height=height + 8)


def _height(text: str) -> int:
    """About the height the e-mail needs (its text part, wrapped at ~100 characters a line)."""
    rows = sum(max(1, -(-len(line) // 100)) for line in text.splitlines())
    return max(160, min(700, rows * 23 + 60))


def show_message(message: SentMessage, html_part: str | None) -> None:
    provider = PROVIDERS.get(message.provider, message.provider)
    state = "still being sent" if message.outcome is None else OUTCOME_WORDS.get(
        message.outcome, message.outcome).format(provider=provider)
    head = f"{CHANNEL_WORDS.get(message.channel, message.channel)} · {local_time(message.at)} · {state}"
    with st.container(border=True):
        st.markdown(f"{CHANNEL_ICONS.get(message.channel, '')} **{head}**")
        if message.error:
            st.caption(f"Why: {message.error}")
        if message.channel == "email":
            st.markdown(f"**Subject:** {message.subject or '(none)'}")
            if html_part:
                email_frame(html_part, height=_height(message.body))
            else:
                st.text(message.body)
            with st.expander("Plain-text part"):
                st.text(message.body)
        elif message.channel == "sms":
            st.text(message.body)
            length = sms_length(message.body)
            st.caption(f"{length.characters} characters · {length.encoding} · "
                       f"{plural(length.segments, 'segment')}")
        else:
            st.caption("The agent opened the call with:")
            st.write(message.body)


def show_activity(events: list[customer_activity.Activity]) -> None:
    """What came back: clicks with their address, replies, how calls went."""
    shown = [e for e in events if e.type != "sent"]
    if not shown:
        st.caption("Nothing came back from these messages yet.")
        return
    for e in shown:
        line = f"**{e.words}** · {local_time(e.at)}"
        if e.url:
            line += f" · [{e.url}]({e.url})"
        if e.text:
            line += f" · “{e.text}”"
        if e.ended_reason and e.type in ("not_answered", "failed"):
            line += f" · {e.ended_reason.replace('-', ' ')}"
        st.markdown(line)
        if e.note:
            st.caption(e.note)
        if e.summary:
            st.caption(f"Summary: {e.summary}")
        if e.recording_url:
            st.markdown(f"[Listen to the recording]({e.recording_url})")
        if e.transcript:
            with st.expander("Transcript"):
                st.text(e.transcript)


def show_campaign(entry: CustomerCampaign, events: list[customer_activity.Activity],
                  pages: dict[tuple[uuid.UUID, int, datetime], str]) -> None:
    with st.container(border=True):
        c1, c2 = st.columns([3, 1], vertical_alignment="center")
        with c1:
            page_link("campaign", entry.name, icon=":material/campaign:", id=entry.campaign_id)
        status = RECIPIENT_STATUS_LABELS.get(entry.status, entry.status)
        facts = [status] + (["booked"] if entry.converted else []) + (
            [f"came back {local_time(entry.returned_at, with_time=False)}"] if entry.returned_at else []) + (
            [f"enrolment {entry.enrollment}"] if entry.enrollment > 1 else [])
        c2.markdown(" · ".join(f"**{f}**" if i == 0 else f for i, f in enumerate(facts)))
        if entry.status == "holdout":
            st.caption("Kept back as part of the holdout group: never contacted, so the campaign's effect can be "
                       "measured against customers like them.")
        if not entry.messages and entry.status != "holdout":
            st.caption("Nothing was sent to this customer in this campaign (yet).")
        for message in entry.messages:
            show_message(message, pages.get((entry.recipient_id, message.step, message.at)))
        if entry.messages:
            st.markdown("**What came back**")
            show_activity(events)


def contact_text(contact: str) -> str:
    return format_phone(contact) if contact.startswith("+") else contact


def table(rows: list[dict[str, object]], columns: dict[str, object], empty: str) -> None:
    if not rows:
        st.caption(empty)
        return
    frame = blank_missing_text(pd.DataFrame(rows))
    st.dataframe(frame, hide_index=True, width="stretch", column_order=list(columns), column_config=columns)


def when(label: str) -> object:
    return st.column_config.DatetimeColumn(label, format="MMM D, YYYY HH:mm", timezone=business_timezone())


def page() -> None:
    page_link("customers", "All customers", icon=":material/arrow_back:")
    customer_id = query_id()
    if customer_id is None:
        st.title("Customer")
        st.info("Open a customer from the customer list, or from a campaign's customer table.",
                icon=":material/person_search:")
        return
    try:
        detail, events, pages = load(str(pid), str(customer_id))
    except DomainError as exc:
        st.title("Customer")
        st.warning(f"{sentence(exc)} They may have been erased, or belong to another business.",
                   icon=":material/person_off:")
        return
    st.title(detail.customer_name or "Unnamed customer")
    contact = " · ".join(x for x in (format_phone(detail.customer_phone), detail.customer_email) if x)
    st.caption(contact or "No phone number or e-mail address on file.")
    m = st.columns([1.3, 1.7, 0.8, 1, 1])
    m[0].metric("Last status", detail.last_status)
    m[1].metric("Last in touch", local_time(detail.last_contact_at, with_time=False))
    m[2].metric("Leads", f"{detail.lead_count:,}")
    m[3].metric("Score", f"{detail.score}/100", help="Re-engagement score: how likely they are to come back, from "
                                                    "how recently and how often they were in touch and how they "
                                                    "answered before.")
    m[4].metric("Campaigns", f"{len(detail.campaigns):,}")
    facts = []
    if detail.first_contact_at:
        facts.append(f"First in touch {local_time(detail.first_contact_at, with_time=False)}")
    if detail.service_types:
        facts.append("Services: " + ", ".join(detail.service_types))
    if detail.timezone:
        facts.append(f"Time zone {detail.timezone}")
    if facts:
        st.caption(" · ".join(facts))

    tab_messages, tab_leads, tab_rules = st.tabs([
        f"Campaigns and messages ({len(detail.campaigns)})", f"Leads ({len(detail.leads)})",
        f"Opt-outs and consents ({len(detail.opt_outs) + len(detail.consents)})"])
    with tab_messages:
        if not detail.campaigns:
            st.info("No campaign has included this customer yet.", icon=":material/campaign:")
        for entry in reversed(detail.campaigns):  # the latest campaign first
            show_campaign(entry, events.get(entry.recipient_id, []), pages)
    with tab_leads:
        table([{"created_at": lead.created_at, "status": lead.status, "service": lead.service_type,
                "source": lead.source, "name": lead.customer_name, "phone": format_phone(lead.customer_phone),
                "email": lead.customer_email, "notes": lead.notes} for lead in detail.leads],
              {"created_at": when("When"), "status": "Status", "service": "Service", "source": "From",
               "name": "Name given", "phone": "Phone", "email": "E-mail",
               "notes": st.column_config.TextColumn("Notes", width="large")},
              "No leads.")
    with tab_rules:
        st.subheader("Opt-outs", anchor=False)
        table([{"contact": contact_text(o.contact), "channel": OPT_OUT_CHANNELS.get(o.channel, o.channel),
                "source": SOURCE_WORDS.get(o.source, o.source), "reason": o.reason, "created_at": o.created_at}
               for o in detail.opt_outs],
              {"contact": "Contact", "channel": "Stops", "source": "How", "reason": "Reason",
               "created_at": when("Since")},
              "No opt-outs: this customer may be contacted on every channel they have a contact for.")
        st.subheader("Consents", anchor=False)
        table([{"contact": contact_text(c.contact), "channel": OPT_OUT_CHANNELS.get(c.channel, c.channel),
                "level": LEVELS.get(c.level, c.level), "source": CONSENT_SOURCES.get(c.source, c.source),
                "proof": c.proof, "captured_at": c.captured_at, "revoked_at": c.revoked_at} for c in detail.consents],
              {"contact": "Contact", "channel": "For", "level": "Consent", "source": "How", "proof": "Proof",
               "captured_at": when("Given"), "revoked_at": when("Revoked")},
              "No consent records for this customer's phone or e-mail.")


page()

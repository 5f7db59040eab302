"""Settings: which channels are live or sandbox, API keys, the business profile, events out (webhooks)."""

from __future__ import annotations

import uuid
from zoneinfo import available_timezones

import pandas as pd
import streamlit as st

from core import accounts, senders, vault, webhook_delivery, webhook_endpoints
from core.channels import PROVIDER_NAMES
from core.config import Settings, get_settings
from core.db import session_factory
from core.errors import DomainError
from core.models import Profile
from pages._ui import (
    answered,
    ask,
    asked,
    attempt,
    business_timezone,
    confirm_buttons,
    db,
    engine,
    format_phone,
    local_time,
    pick,
    profile_id,
    say,
    sentence,
)

pid = profile_id()
ZONES = sorted(z for z in available_timezones() if "/" in z and not z.startswith(("Etc/", "SystemV/", "posix/",
                                                                                    "right/")))


@st.cache_data(ttl=30, show_spinner=False)
def load_keys(profile: str) -> pd.DataFrame:
    with db() as session:
        rows = accounts.list_api_keys(session, profile_id=uuid.UUID(profile))
        return pd.DataFrame.from_records([{
            "id": str(k.id), "name": k.name, "prefix": k.prefix + "…", "created_at": k.created_at,
            "last_used_at": k.last_used_at, "revoked_at": k.revoked_at,
            "state": "Revoked" if k.revoked_at else "Active",
        } for k in rows], columns=["id", "name", "prefix", "created_at", "last_used_at", "revoked_at", "state"])


def load_profile() -> Profile:
    with db() as session:
        return accounts.get_profile(session, profile_id=pid)


CHANNEL_TITLES = {"call": "AI voice calls", "email": "E-mail", "sms": "Text messages (SMS)"}
CHANNEL_WHAT = {
    "call": "Calls are placed by a Vapi assistant; the campaign's call script is its first message.",
    "email": "E-mails go out with a one-click unsubscribe link; bounces and complaints come back as opt-outs.",
    "sms": "The first text to a number says how to opt out; replies and STOP come back automatically.",
}


def _sender_line(channel: str, profile: Profile, business: Settings) -> str:
    """Who the customer sees the channel's messages come from."""
    if channel == "email":
        address = business.email_sender()
        if not address:
            return "No sender address yet."
        name = business.email_from_name or profile.business_name
        reply = business.email_reply_to or address
        return f"From “{name}” <{address}>; replies go to {reply}."
    if channel == "sms":
        sender = {"twilio": business.twilio_from_number or business.twilio_messaging_service_sid,
                  "vonage": business.vonage_from,
                  "sns": business.sns_origination_number or business.sns_sender_id}.get(business.provider_for("sms"))
        return f"Texts come from {format_phone(sender) if sender and sender.startswith('+') else sender}." \
            if sender else "No sender number yet."
    assistant, number = business.vapi_assistant_id, business.vapi_phone_number_id
    if not (assistant or number):
        return "Each calling agent's Vapi assistant and number are used (none is set for the business)."
    return (f"Calls use assistant {assistant or '(the agent’s)'} and phone number {number or '(the agent’s)'} "
            "unless a campaign's agent has its own.")


def channels_tab() -> None:
    profile = load_profile()
    base = get_settings()
    business = senders.settings_for(profile, base)
    modes = senders.channel_modes(profile, base)
    st.write("A channel is **live** when its provider is set up — with your own account (Business profile tab) or "
             "the platform's; otherwise it runs in **sandbox** mode: sending is simulated (deliveries, answers, "
             "replies and bookings included) and nothing reaches customers.")
    if profile.encrypted_secrets:
        try:
            senders.stored_secrets(profile, base)
        except vault.VaultError as exc:
            st.warning(str(exc), icon=":material/key_off:")
    for channel, title in CHANNEL_TITLES.items():
        mode = modes[channel]
        name = PROVIDER_NAMES.get(mode.provider, mode.provider)
        with st.container(border=True):
            c1, c2 = st.columns([4, 1], vertical_alignment="center")
            account = "your own account" if mode.own_account else "the platform's account"
            c1.markdown(f"**{title}** · {name}" + (f", through {account}" if mode.live else ""))
            c1.caption(f"{CHANNEL_WHAT[channel]} {_sender_line(channel, profile, business)}")
            if mode.live:
                c2.badge("Live", color="green", icon=":material/check_circle:")
            else:
                c2.badge("Sandbox", color="orange", icon=":material/science:")
                st.caption("To go live, add in the **Business profile** tab: "
                           + ", ".join(senders.missing_in_words(mode))
                           + ". (Or the platform's administrator sets " + ", ".join(f"`{m}`" for m in mode.missing)
                           + " for every business.)")
            hooks = senders.provider_webhooks(business, channel, sms_from=profile.sms_from)
            if hooks:
                with st.expander(f"Where {name} reports back: the webhook URLs to paste into {name}"):
                    for hook in hooks:
                        st.markdown(f"**{hook.purpose}**")
                        st.code(hook.url, language=None)
                        if hook.note:
                            st.caption(hook.note)
            else:
                st.caption(f"{name} sends only: nothing comes back to paste a webhook for.")
            if mode.live:
                if st.button("Test connection", key=f"test_connection_{channel}", icon=":material/cable:"):
                    with st.spinner(f"Asking {name}…"):
                        st.session_state[f"_connection_{channel}"] = senders.test_connection(
                            profile, channel=channel, base=base)
                found = st.session_state.get(f"_connection_{channel}")
                if found is not None and found.provider == mode.provider:
                    (st.success if found.ok else st.error)(found.sentence)
    st.caption(f"Webhooks and unsubscribe links point to `{base.public_base_url}` (`PUBLIC_BASE_URL`).")


# --- the business profile: who the business is and sends as ------------------------------------------------

POLICY_TEXT = {
    "us_tcpa": "US rules (TCPA): calls and texts of win-back, promotional and follow-up campaigns only reach "
               "customers with written consent on record for that channel; feedback campaigns need consent of "
               "either kind. E-mail needs none (opt-outs rule it).",
    "none": "My business takes responsibility for consent: campaigns call and text customers without checking "
            "consent records. Choose this only if you hold consent elsewhere or these rules do not apply to you.",
}
EMAIL_PROVIDER_TEXT = {"": "Whichever is set up (Resend first)", "resend": "Resend", "smtp": "SMTP (Amazon SES, "
                                                                                             "SendGrid, Postmark, …)"}
SMS_PROVIDER_TEXT = {"": "Whichever is set up (Twilio first)", "twilio": "Twilio", "vonage": "Vonage",
                     "sns": "AWS SNS"}
SECRET_GROUPS = {
    "Resend": ("resend_api_key", "resend_webhook_secret"),
    "SMTP": ("smtp_url",),
    "Twilio": ("twilio_account_sid", "twilio_auth_token"),
    "Vonage": ("vonage_api_key", "vonage_api_secret", "vonage_signature_secret"),
    "Vapi": ("vapi_api_key",),
}
SECRET_HELP = {
    "smtp_url": "smtp://user:password@host:587 (STARTTLS) or smtps://user:password@host:465.",
    "resend_webhook_secret": "whsec_… from the webhook's page in Resend.",
}


def _saved(message: str) -> None:
    say("toast", message, remember=True)
    st.rerun()


def profile_tab() -> None:
    try:
        profile = load_profile()
    except DomainError as exc:
        st.error(sentence(exc))
        return
    with st.form("profile_form"):
        st.markdown("**Your business**")
        business_name = st.text_input("Business name", value=profile.business_name, max_chars=200,
                                      help="Used as {business_name} in your messages.")
        c1, c2 = st.columns(2)
        timezone = c1.selectbox("Time zone", ZONES, index=ZONES.index(profile.timezone)
                                if profile.timezone in ZONES else 0, help="The default for new campaigns.")
        region = c2.text_input("Country for phone numbers", value=profile.default_region, max_chars=2,
                               help="Two letters, like US or GB: numbers written without +code are read in this "
                                    "country.")
        c3, c4 = st.columns(2)
        phone = c3.text_input("Business phone", value=format_phone(profile.phone) if profile.phone else "",
                              help="Also the default number for test texts and calls.")
        booking = c4.text_input("Online booking link", value=profile.booking_url or "", placeholder="https://…",
                                help="Your messages can carry it as {booking_link}.")
        st.markdown("**Consent to calls and texts**")
        policy = st.radio("Consent policy", list(POLICY_TEXT), format_func=POLICY_TEXT.__getitem__,
                          index=list(POLICY_TEXT).index(profile.consent_policy), key="profile_policy",
                          label_visibility="collapsed")
        st.markdown("**E-mail sender** — empty fields use the platform's")
        c5, c6 = st.columns(2)
        email_provider = c5.selectbox("E-mail provider", list(EMAIL_PROVIDER_TEXT),
                                      index=list(EMAIL_PROVIDER_TEXT).index(profile.email_provider or ""),
                                      format_func=EMAIL_PROVIDER_TEXT.__getitem__)
        email_from = c6.text_input("E-mail from (address)", value=profile.email_from or "",
                                   placeholder="hello@yourshop.com",
                                   help="Its domain must be verified with your e-mail provider.")
        c7, c8 = st.columns(2)
        email_name = c7.text_input("Sender name", value=profile.email_from_name or "",
                                   placeholder=profile.business_name, max_chars=200)
        reply_to = c8.text_input("Replies go to", value=profile.email_reply_to or "",
                                 placeholder="the sender address")
        st.markdown("**SMS sender**")
        c9, c10 = st.columns(2)
        sms_provider = c9.selectbox("SMS provider", list(SMS_PROVIDER_TEXT),
                                    index=list(SMS_PROVIDER_TEXT).index(profile.sms_provider or ""),
                                    format_func=SMS_PROVIDER_TEXT.__getitem__)
        sms_from = c10.text_input("SMS from", value=profile.sms_from or "", placeholder="+1 201 555 0100",
                                  help="Your own number (stored as +1…), a Twilio messaging service (MG…), or a "
                                       "sender name where your country allows one.")
        st.markdown("**Calls (Vapi)** — agents' own ids win over these")
        c11, c12 = st.columns(2)
        assistant = c11.text_input("Vapi assistant id", value=profile.vapi_assistant_id or "")
        number = c12.text_input("Vapi phone number id", value=profile.vapi_phone_number_id or "")
        st.markdown("**Prices** — for the cost estimates before a launch and the cost after")
        c13, c14, c15 = st.columns(3)
        sms_price = c13.number_input("Per SMS segment", min_value=0.0, max_value=100.0, step=0.0001, format="%.4f",
                                     value=float(profile.price_per_sms_segment))
        call_price = c14.number_input("Per call minute", min_value=0.0, max_value=100.0, step=0.01, format="%.4f",
                                      value=float(profile.price_per_call_minute))
        email_price = c15.number_input("Per e-mail", min_value=0.0, max_value=100.0, step=0.0001, format="%.4f",
                                       value=float(profile.price_per_email))
        save = st.form_submit_button("Save", type="primary", icon=":material/save:")
    if save:
        updated = attempt(lambda s: accounts.update_profile(
            s, profile_id=pid, business_name=business_name, timezone=timezone, default_region=region.strip().upper(),
            phone=phone.strip(), booking_url=booking.strip(), consent_policy=policy, email_provider=email_provider,
            email_from=email_from, email_from_name=email_name, email_reply_to=reply_to, sms_provider=sms_provider,
            sms_from=sms_from, vapi_assistant_id=assistant, vapi_phone_number_id=number,
            price_per_sms_segment=sms_price, price_per_call_minute=call_price, price_per_email=email_price))
        if updated is not None:
            st.session_state.update(business_name=updated.business_name, timezone=updated.timezone)
            _saved("Business profile saved.")
    credentials_form(profile)


def credentials_form(profile: Profile) -> None:
    """Write-only credentials: never shown again once saved, only whether each is set."""
    st.markdown("**Your own provider accounts**")
    st.caption("With its credentials here, a channel sends through your own account (and your own sender above) "
               "instead of the platform's. They are stored encrypted and never shown again: type a new value to "
               "replace one.")
    try:
        stored = set(senders.stored_secrets(profile, get_settings()))
    except vault.VaultError:
        stored = set()
    with st.form("credentials_form", clear_on_submit=True):
        typed: dict[str, str] = {}
        cleared: str | None = None
        for provider, names in SECRET_GROUPS.items():
            st.markdown(f"*{provider}*")
            for name in names:
                c1, c2, c3 = st.columns([4, 1, 1], vertical_alignment="bottom")
                typed[name] = c1.text_input(senders.SECRET_LABELS[name], type="password", value="",
                                            key=f"secret_{name}", help=SECRET_HELP.get(name),
                                            placeholder="set — type to replace" if name in stored else "not set",
                                            autocomplete="new-password")
                c2.markdown(":green-badge[set]" if name in stored else ":gray-badge[not set]")
                if c3.form_submit_button("Clear", key=f"clear_{name}", disabled=name not in stored,
                                         width="stretch"):
                    cleared = name
        save = st.form_submit_button("Save credentials", type="primary", icon=":material/lock:")
    if cleared is not None:
        if attempt(lambda s: accounts.update_profile(s, profile_id=pid, secrets={cleared: None})) is not None:
            _saved(f"{senders.SECRET_LABELS[cleared]} removed.")
    elif save:
        given = {k: v for k, v in typed.items() if v.strip()}
        if not given:
            st.info("Nothing to save: type a credential first.")
        elif attempt(lambda s: accounts.update_profile(s, profile_id=pid, secrets=given)) is not None:
            for name in given:  # what was typed is not kept in this browser tab either
                st.session_state.pop(f"secret_{name}", None)
            _saved(f"Saved: {', '.join(senders.SECRET_LABELS[k] for k in given)}.")


st.title("Settings")
tab_channels, tab_keys, tab_profile, tab_events = st.tabs(["Channels", "API keys", "Business profile",
                                                          "Events out"])

with tab_channels:
    channels_tab()

with tab_keys:
    st.write("API keys let other systems use the REST API on behalf of your business "
             "(`Authorization: Bearer <key>`).")
    new_key = st.session_state.get("new_api_key")
    if new_key:
        st.success("Here is your new key. Copy it now: it is shown only once and cannot be recovered.",
                   icon=":material/key:")
        st.code(new_key, language=None)
        if st.button("I have copied it", key="dismiss_key"):
            st.session_state.pop("new_api_key")
            st.rerun()
    with st.form("new_key_form", clear_on_submit=True):
        c1, c2 = st.columns([3, 1], vertical_alignment="bottom")
        name = c1.text_input("Name of the new key", key="new_key_name", placeholder="e.g. Booking system",
                             max_chars=100)
        create = c2.form_submit_button("Create key", icon=":material/add:", width="stretch")
    if create:
        created = attempt(lambda s: accounts.create_api_key(s, profile_id=pid, name=name)[1])
        if created:
            st.session_state["new_api_key"] = created
            say("toast", "API key created.", remember=True)
            st.rerun()
    keys = load_keys(str(pid))
    if keys.empty:
        st.info("No API keys yet. Create one above when another system needs to reach the API.")
    else:
        tz = business_timezone()
        st.dataframe(keys, hide_index=True, width="stretch",
                     column_order=["name", "prefix", "state", "created_at", "last_used_at", "revoked_at"],
                     column_config={
                         "name": "Name", "prefix": "Starts with", "state": "State",
                         "created_at": st.column_config.DatetimeColumn("Created", format="MMM D, YYYY HH:mm",
                                                                       timezone=tz),
                         "last_used_at": st.column_config.DatetimeColumn("Last used", format="MMM D, YYYY HH:mm",
                                                                         timezone=tz),
                         "revoked_at": st.column_config.DatetimeColumn("Revoked", format="MMM D, YYYY HH:mm",
                                                                       timezone=tz)})
        active = keys[keys["state"] == "Active"]
        if active.empty:
            st.caption("Every key is revoked.")
        else:
            labels = {row.id: f"{row.name} ({row.prefix}), created {local_time(row.created_at, with_time=False)}"
                      for row in active.itertuples()}

            @st.dialog("Revoke this API key?", on_dismiss=answered)
            def confirm_revoke(key_id: str) -> None:
                st.write(f"**{labels[key_id]}** stops working at once: every request using it is refused from now "
                         "on. This cannot be undone.")
                confirm_buttons("Revoke the key",
                                lambda s: accounts.revoke_api_key(s, profile_id=pid, key_id=uuid.UUID(key_id)),
                                success="API key revoked.")

            c1, c2 = st.columns([3, 1], vertical_alignment="bottom")
            with c1:
                picked = pick("Key", list(labels), format_func=labels.__getitem__, key="revoke_choice")
            if c2.button("Revoke…", icon=":material/key_off:", width="stretch"):
                ask("revoke_key", id=picked)
            if (question := asked("revoke_key")) and question["id"] in labels:
                confirm_revoke(question["id"])

with tab_profile:
    profile_tab()


# --- Events out: webhook endpoints for n8n, Zapier, Make and CRMs ------------------------------------------

EVENT_LABELS = {
    "recipient.sent": "A message went out (or a call was placed)",
    "recipient.responded": "A customer responded",
    "recipient.converted": "A customer booked (a conversion)",
    "recipient.opted_out": "A customer opted out",
    "campaign.started": "A campaign started",
    "campaign.paused": "A campaign paused",
    "campaign.completed": "A campaign finished",
    "customer.returned": "A customer came back",
}
DELIVERY_STATES = {"pending": "Waiting to retry", "delivered": "Delivered", "failed": "Failed"}


def _event_names(events: list[str]) -> str:
    if "*" in events:
        return "every event"
    return ", ".join(f"`{e}`" for e in events)


def _delivery_log(endpoint_id: uuid.UUID) -> None:
    with db() as session:
        entries, total = webhook_endpoints.list_deliveries(session, profile_id=pid, endpoint_id=endpoint_id, limit=50)
    if not entries:
        st.caption("Nothing sent yet. Events are sent as they happen; *Send test event* sends one now.")
        return
    tz = business_timezone()
    frame = pd.DataFrame.from_records([{
        "event": e.event_type + (" (test)" if e.test else ""), "state": DELIVERY_STATES[e.status],
        "attempts": e.attempts,
        "answer": (str(e.response_status) if e.response_status else "") + (f" {e.last_error}" if e.last_error
                                                                            and e.status != "delivered" else ""),
        "created_at": e.created_at, "last_attempt_at": e.last_attempt_at, "next_attempt_at": e.next_attempt_at,
        "event_id": e.event_id} for e in entries])
    when = "MMM D, YYYY HH:mm:ss"
    st.dataframe(frame, hide_index=True, width="stretch", column_config={
        "event": "Event", "state": "State", "attempts": st.column_config.NumberColumn("Attempts", format="%d"),
        "answer": "Last answer",
        "created_at": st.column_config.DatetimeColumn("Happened", format=when, timezone=tz),
        "last_attempt_at": st.column_config.DatetimeColumn("Last sent", format=when, timezone=tz),
        "next_attempt_at": st.column_config.DatetimeColumn("Next try", format=when, timezone=tz),
        "event_id": "webhook-id"})
    if total > len(entries):
        st.caption(f"The latest {len(entries)} of {total:,}; `GET /api/webhook-endpoints/{endpoint_id}/deliveries` "
                   "pages through all of them.")


def _send_test(endpoint_id: uuid.UUID) -> None:
    try:
        with st.spinner("Sending a test event…"):
            entry = webhook_delivery.send_test_now(session_factory(engine()), profile_id=pid,
                                                   endpoint_id=endpoint_id)
    except DomainError as exc:
        say("error", sentence(exc), remember=True)
        return
    if entry.status == "delivered":
        say("toast", f"Test event delivered: your endpoint answered {entry.response_status}.", remember=True)
    elif entry.status == "pending":
        say("error", f"The test event was not taken ({entry.last_error}). It is tried again at "
                     f"{local_time(entry.next_attempt_at)}, like any event.", remember=True)
    else:
        say("error", f"The test event was not delivered: {entry.last_error}.", remember=True)


def events_out_tab() -> None:
    st.write("Send what happens — a customer booked, replied or opted out; a campaign started or finished — to "
             "**n8n, Zapier, Make or your CRM**. Each event is a signed POST "
             "([Standard Webhooks](https://www.standardwebhooks.com/)), retried for 24 hours until your endpoint "
             "answers 2xx. The README has step-by-step recipes for n8n and Zapier.")
    new_secret = st.session_state.get("new_webhook_secret")
    if new_secret:
        st.success("Endpoint added. Here is its signing secret: copy it now into your workflow (it verifies the "
                   "`webhook-signature` header). It is shown only once.", icon=":material/key:")
        st.code(new_secret, language=None)
        if st.button("I have copied the secret", key="dismiss_webhook_secret"):
            st.session_state.pop("new_webhook_secret")
            st.rerun()
    with st.form("new_endpoint_form", clear_on_submit=True):
        url = st.text_input("Endpoint URL", key="new_endpoint_url", max_chars=2000,
                            placeholder="https://hooks.zapier.com/hooks/catch/…  or  https://n8n.example.com/webhook/…")
        every = st.checkbox("Every event (also kinds added later)", value=True, key="new_endpoint_all")
        chosen = st.multiselect("Or only these events", list(EVENT_LABELS), format_func=EVENT_LABELS.__getitem__,
                                key="new_endpoint_events", help="Used when *Every event* is off.")
        note = st.text_input("Description (optional)", key="new_endpoint_note", max_chars=500,
                             placeholder="e.g. Zapier: bookings to the CRM")
        add = st.form_submit_button("Add endpoint", icon=":material/add_link:")
    if add:
        created = attempt(lambda s: webhook_endpoints.create_endpoint(
            s, profile_id=pid, url=url, events=["*"] if every else chosen, description=note)[1])
        if created:
            st.session_state["new_webhook_secret"] = created
            say("toast", "Endpoint added.", remember=True)
            st.rerun()
    with db() as session:
        endpoints = webhook_endpoints.list_endpoints(session, profile_id=pid)
        counts = webhook_endpoints.delivery_counts(session, profile_id=pid)
    if not endpoints:
        st.info("No endpoints yet. Add one above to send events to another tool.")
        return
    labels = {str(e.id): e.description or e.url for e in endpoints}

    @st.dialog("Delete this endpoint?", on_dismiss=answered)
    def confirm_delete(endpoint_id: str) -> None:
        st.write(f"**{labels[endpoint_id]}** receives no more events, and events not delivered to it yet are "
                 "dropped. This cannot be undone.")
        confirm_buttons("Delete the endpoint", lambda s: webhook_endpoints.delete_endpoint(
            s, profile_id=pid, endpoint_id=uuid.UUID(endpoint_id)), success="Endpoint deleted.")

    for e in endpoints:
        with st.container(border=True):
            c1, c2 = st.columns([4, 1], vertical_alignment="center")
            c1.markdown(f"**{e.description or 'Endpoint'}** · `{e.url}`")
            n = counts.get(e.id, {})
            c1.caption(f"Receives {_event_names(list(e.events or []))} · added {local_time(e.created_at)} · "
                       f"{n.get('delivered', 0):,} delivered, {n.get('pending', 0):,} waiting, "
                       f"{n.get('failed', 0):,} failed")
            if e.disabled_at is not None:
                c2.badge("Disabled", color="red", icon=":material/block:")
                st.warning(f"{e.disabled_reason or 'This endpoint was disabled.'} Delete it and add it again to "
                           "receive events.", icon=":material/block:")
            else:
                c2.badge("Active", color="green", icon=":material/check_circle:")
            b1, b2, _ = st.columns([1, 1, 2])
            if e.disabled_at is None and b1.button("Send test event", key=f"test_endpoint_{e.id}",
                                                   icon=":material/send:", width="stretch"):
                _send_test(e.id)
                st.rerun()
            if b2.button("Delete…", key=f"delete_endpoint_{e.id}", icon=":material/delete:", width="stretch"):
                ask("delete_endpoint", id=str(e.id))
            with st.expander("Delivery log"):
                _delivery_log(e.id)
    if (question := asked("delete_endpoint")) and question["id"] in labels:
        confirm_delete(question["id"])


with tab_events:
    events_out_tab()

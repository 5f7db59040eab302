"""Settings: which channels are live or sandbox, API keys, the business profile."""

from __future__ import annotations

import uuid
from zoneinfo import available_timezones

import pandas as pd
import streamlit as st

from core import accounts
from core.config import get_settings
from core.errors import DomainError
from core.models import Profile
from pages._ui import (
    answered,
    ask,
    asked,
    attempt,
    business_timezone,
    channel_modes,
    confirm_buttons,
    db,
    local_time,
    pick,
    profile_id,
    say,
    sentence,
)

pid = profile_id()
ZONES = sorted(z for z in available_timezones() if "/" in z and not z.startswith(("Etc/", "SystemV/", "posix/",
                                                                                    "right/")))
CHANNELS = {
    "call": ("AI voice calls", "Vapi", "Calls are placed by your Vapi assistant; the call script is its first "
                                       "message."),
    "email": ("E-mail", "Resend", "E-mails go out from RESEND_FROM with a one-click unsubscribe link."),
    "sms": ("Text messages (SMS)", "Twilio", "Texts go out from your Twilio number; replies and STOP come back "
                                             "automatically."),
}


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


st.title("Settings")
tab_channels, tab_keys, tab_profile = st.tabs(["Channels", "API keys", "Business profile"])

with tab_channels:
    settings = get_settings()
    modes = channel_modes()
    st.write("A channel is **live** when its provider is set up; otherwise it runs in **sandbox** mode: sending "
             "is simulated (deliveries, answers, replies and bookings included) and nothing reaches customers.")
    for channel, (title, provider, what) in CHANNELS.items():
        with st.container(border=True):
            c1, c2 = st.columns([4, 1], vertical_alignment="center")
            c1.markdown(f"**{title}** · {provider}")
            c1.caption(what)
            if modes[channel] == "live":
                c2.badge("Live", color="green", icon=":material/check_circle:")
            else:
                c2.badge("Sandbox", color="orange", icon=":material/science:")
                missing = settings.missing_for(channel)
                if missing:
                    st.caption("To go live, set " + ", ".join(f"`{m}`" for m in missing)
                               + " in the server's environment or `.env` file, then restart the dashboard, the "
                                 "API and the scheduler.")
    st.caption(f"Webhooks and unsubscribe links point to `{settings.public_base_url}` (`PUBLIC_BASE_URL`).")

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
    try:
        profile = load_profile()
    except DomainError as exc:
        st.error(sentence(exc))
        st.stop()
    with st.form("profile_form"):
        business_name = st.text_input("Business name", value=profile.business_name, max_chars=200,
                                      help="Used as {business_name} in your messages.")
        c1, c2 = st.columns(2)
        timezone = c1.selectbox("Time zone", ZONES, index=ZONES.index(profile.timezone)
                                if profile.timezone in ZONES else 0, help="The default for new campaigns.")
        region = c2.text_input("Country for phone numbers", value=profile.default_region, max_chars=2,
                               help="Two letters, like US or GB: numbers written without +code are read in this "
                                    "country.")
        phone = st.text_input("Business phone", value=profile.phone or "",
                              help="Also the default number for test texts and calls.")
        booking = st.text_input("Online booking link", value=profile.booking_url or "",
                                placeholder="https://…")
        save = st.form_submit_button("Save", type="primary", icon=":material/save:")
    if save:
        updated = attempt(lambda s: accounts.update_profile(
            s, profile_id=pid, business_name=business_name, timezone=timezone, default_region=region.strip().upper(),
            phone=phone.strip(), booking_url=booking.strip()))
        if updated is not None:
            st.session_state.update(business_name=updated.business_name, timezone=updated.timezone)
            say("toast", "Business profile saved.", remember=True)
            st.rerun()

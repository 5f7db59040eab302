"""Streamlit dashboard: ``streamlit run app.py``.

The frame of every page: sign-in, the navigation over ``pages/``, and the
sidebar (business, channel modes, sign-out).  Pages read the signed-in
business from ``st.session_state.profile_id`` and pass it to ``core``.
"""

from __future__ import annotations

import streamlit as st

from core import accounts
from core.accounts import get_profile
from core.config import ConfigurationError, get_settings
from pages._ui import PAGES as FILES
from pages._ui import channel_modes, db, go_to_destination, show_outcome

st.set_page_config(page_title="CONNEXT Re-engagement", page_icon=":material/campaign:", layout="wide")
try:
    get_settings().require_secret_key()
except ConfigurationError as exc:
    st.error(str(exc), icon=":material/key:")
    st.stop()

PAGES = [
    st.Page(FILES["campaigns"], title="Campaigns", icon=":material/campaign:", default=True),
    st.Page(FILES["create"], title="Create campaign", icon=":material/add_circle:"),
    st.Page(FILES["analytics"], title="Analytics", icon=":material/insights:"),
    st.Page(FILES["customers"], title="Customers", icon=":material/groups:"),
    st.Page(FILES["settings"], title="Settings", icon=":material/settings:"),
    # opened from the campaign list (?id=…); not a navigation entry of its own
    st.Page(FILES["campaign"], title="Campaign", icon=":material/monitoring:", url_path="campaign",
            visibility="hidden"),
]


def sign_in() -> None:
    """The sign-in form; on success the business goes into session state."""
    _, middle, _ = st.columns([1, 2, 1])
    with middle:
        st.title("CONNEXT Re-engagement")
        st.write("Win back customers who went quiet. Sign in with your business login.")
        with st.form("login"):
            email = st.text_input("E-mail", autocomplete="username", key="login_email")
            password = st.text_input("Password", type="password", autocomplete="current-password",
                                     key="login_password")
            submitted = st.form_submit_button("Sign in", type="primary", width="stretch")
        if submitted:
            if not email.strip() or not password:
                st.error("Enter your e-mail address and your password.")
                return
            with db() as session:
                user = accounts.verify_login(session, email=email, password=password)
                profile = get_profile(session, profile_id=user.profile_id) if user is not None else None
                if user is not None and profile is not None:
                    st.session_state.update(profile_id=str(user.profile_id), user_email=user.email,
                                            business_name=profile.business_name, timezone=profile.timezone)
            if user is None:
                st.error("That e-mail and password do not match. Check both and try again.")
                return
            go_to_destination()  # a deep link opened before the sign-in
            st.rerun()


def sidebar() -> None:
    """Who is signed in, which channels really send, and sign-out."""
    with st.sidebar:
        st.markdown(f"**{st.session_state.business_name}**")
        st.caption(st.session_state.user_email)
        modes = channel_modes()
        names = {"call": "Calls", "email": "E-mail", "sms": "SMS"}
        lines = []
        for channel, mode in modes.items():
            badge = ":green-badge[live]" if mode == "live" else ":orange-badge[sandbox]"
            lines.append(f"{names[channel]} {badge}")
        st.markdown("  \n".join(lines))
        if any(mode == "sandbox" for mode in modes.values()):
            st.caption("Sandbox channels simulate sending: nothing reaches customers. See Settings to go live.")
        if st.button("Sign out", icon=":material/logout:", width="stretch"):
            # everything this browser tab kept (drafts, a new API key, answers) belongs to the one leaving
            for key in list(st.session_state.keys()):
                del st.session_state[key]
            st.rerun()


signed_in = st.session_state.get("profile_id") is not None
# the pages are registered even before sign-in, so a deep link (campaign?id=…) survives the login form
page = st.navigation(PAGES, position="sidebar" if signed_in else "hidden")
if not signed_in:
    sign_in()
    st.stop()
sidebar()
show_outcome()
page.run()

"""Streamlit dashboard: ``streamlit run app.py``.

The frame of every page: sign-in, the navigation over ``pages/``, and the
sidebar (business, channel modes, sign-out).  Pages read the signed-in
business from ``st.session_state.profile_id`` and pass it to ``core``.
"""

from __future__ import annotations

import uuid

import streamlit as st

from core import signin
from core.config import ConfigurationError, get_settings
from core.logs import configure_logging
from pages._ui import (
    FORGET_COOKIE_KEY,
    channel_modes,
    client_address,
    db,
    drop_session_cookie,
    forget_sign_in,
    go_to_destination,
    keep_session_cookie,
    remember_sign_in,
    restore_session,
    show_outcome,
)
from pages._ui import PAGES as FILES

st.set_page_config(page_title="CONNEXT Re-engagement", page_icon=":material/campaign:", layout="wide")
configure_logging("dashboard")  # database errors are logged without their values (idempotent on reruns)
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
    # opened from a customer list or a recipient row (?id=…)
    st.Page(FILES["customer"], title="Customer", icon=":material/person:", url_path="customer",
            visibility="hidden"),
]


def sign_in() -> None:
    """The sign-in form; on success the business goes into session state and the browser keeps a
    session cookie (throttled per e-mail and per address: ``core.signin``)."""
    drop_session_cookie()
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
                outcome = signin.sign_in(session, email=email, password=password, address=client_address())
            if outcome.signed_in is None:
                st.error(outcome.refusal or signin.WRONG)
                return
            remember_sign_in(outcome.signed_in, outcome.token)
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
            session_id = st.session_state.get("_session_id")
            if session_id is not None:
                with db() as session:
                    signin.end_session(session, session_id=uuid.UUID(str(session_id)))
            forget_sign_in()
            st.session_state[FORGET_COOKIE_KEY] = True
            st.rerun()
        keep_session_cookie()


signed_in = restore_session()
# the pages are registered even before sign-in, so a deep link (campaign?id=…) survives the login form; a page's
# address is its file's name (create_campaign?edit=…): before st.navigation first runs, Streamlit routes by the
# pages/ folder, and an address of another name would not be found on a server's first request
page = st.navigation(PAGES, position="sidebar" if signed_in else "hidden")
if not signed_in:
    sign_in()
    st.stop()
go_to_destination()  # a deep link whose first run went past the frame (see pages/_ui.profile_id)
sidebar()
show_outcome()
page.run()

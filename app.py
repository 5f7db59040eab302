"""Streamlit dashboard: ``streamlit run app.py``.  Login, then the pages."""

from __future__ import annotations

import streamlit as st

from core import accounts, campaigns
from core.db import session_scope

st.set_page_config(page_title="CONNEXT Re-engagement", page_icon="📣", layout="wide")

if "profile_id" not in st.session_state:
    st.title("CONNEXT Re-engagement")
    with st.form("login"):
        email = st.text_input("E-mail")
        password = st.text_input("Password", type="password")
        if st.form_submit_button("Sign in"):
            with session_scope() as s:
                user = accounts.verify_login(s, email=email, password=password)
                if user is None:
                    st.error("That e-mail and password do not match.")
                else:
                    st.session_state.profile_id = user.profile_id
                    st.rerun()
    st.stop()

with session_scope() as s:
    rows, total = campaigns.list_campaigns(s, profile_id=st.session_state.profile_id, limit=100)
    st.title("Campaigns")
    st.dataframe([{"name": c.name, "type": c.campaign_type, "channel": c.outreach_method, "status": c.status}
                  for c in rows], width="stretch")

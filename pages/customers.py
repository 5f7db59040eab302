"""Customers: the customer list, importing leads from CSV, the opt-out list,
and erasing a customer's personal data."""

from __future__ import annotations

import io
import uuid

import pandas as pd
import streamlit as st
from sqlalchemy.orm import Session

from core import accounts, customers, optouts
from core.errors import DomainError
from core.leads import COLUMNS, import_leads
from core.models import OPT_OUT_CHANNELS, OptOut
from pages._ui import (
    answered,
    ask,
    asked,
    attempt,
    blank_missing_text,
    business_timezone,
    clear_caches,
    confirm_buttons,
    db,
    local_time,
    page_offset,
    pager,
    past_the_end,
    pick,
    profile_id,
    say,
    sentence,
)

pid = profile_id()
PAGE_SIZE = 50
CHANNEL_TEXT = {"all": "Every channel", "call": "Calls", "email": "E-mail", "sms": "SMS"}
SOURCE_TEXT = {"sms_stop": "Replied STOP", "unsubscribe_link": "Unsubscribe link", "call_request": "Asked on a call",
               "bounce": "E-mail bounced", "complaint": "Marked as spam", "manual": "Added by hand"}


@st.cache_data(ttl=30, show_spinner=False)
def load_customers(profile: str, search: str, offset: int) -> tuple[pd.DataFrame, int]:
    with db() as session:
        return customers.list_customers(session, profile_id=uuid.UUID(profile), search=search or None,
                                        limit=PAGE_SIZE, offset=offset)


@st.cache_data(ttl=30, show_spinner=False)
def load_opt_outs(profile: str, search: str, offset: int) -> tuple[pd.DataFrame, int]:
    with db() as session:
        rows, total = optouts.list_opt_outs(session, profile_id=uuid.UUID(profile), search=search or None,
                                            limit=PAGE_SIZE, offset=offset)
        frame = pd.DataFrame.from_records(
            [{"id": str(o.id), "contact": o.contact, "channel": CHANNEL_TEXT.get(o.channel, o.channel),
              "source": SOURCE_TEXT.get(o.source, o.source), "reason": o.reason, "created_at": o.created_at}
             for o in rows], columns=["id", "contact", "channel", "source", "reason", "created_at"])
        return frame, total


@st.cache_data(ttl=120, show_spinner=False)
def load_agents(profile: str) -> dict[str, str]:
    with db() as session:
        return {str(a.id): a.name for a in accounts.list_agents(session, profile_id=uuid.UUID(profile))}


st.title("Customers")
tab_list, tab_import, tab_optouts = st.tabs(["Customers", "Import leads", "Opt-outs"])

# --- the customer list ---------------------------------------------------------------------------------


@st.dialog("Erase this customer?", on_dismiss=answered)
def confirm_erase(contact_key: str, label: str) -> None:
    st.write(f"This removes **{label}**'s personal details for good: names, phone numbers, e-mail addresses, "
             "notes, call summaries and transcripts, from their leads and from every campaign they were in.")
    st.write("Anonymous counts and campaign results stay. Their opt-outs stay too, so they are never contacted "
             "again. This cannot be undone.")
    confirm_buttons("Erase personal data",
                    lambda s: customers.erase_customer(s, profile_id=pid, contact_key=contact_key),
                    success="Customer erased.", no="Cancel",
                    then=lambda report: st.session_state.update(erase_report=report.sentence()))


with tab_list:
    search = st.text_input("Search by name, phone or e-mail", key="customer_search", placeholder="e.g. Garcia")
    offset = page_offset("customers_page", PAGE_SIZE, (search.strip(),))
    table, total = load_customers(str(pid), search.strip(), offset)
    past_the_end(len(table), total, key="customers_page", page_size=PAGE_SIZE)
    if st.session_state.get("erase_report"):
        st.success(st.session_state.pop("erase_report"))
    if total == 0 and not search.strip():
        st.info("No customers yet. Import a CSV file of leads in the Import leads tab; customers also appear here "
                "as your CONNEXT agents take calls.", icon=":material/group_add:")
    elif total == 0:
        st.info("No customer matches this search.")
    else:
        st.caption(f"{total:,} customers. A customer is everyone sharing a phone number (or, without one, an "
                   "e-mail address) across your leads.")
        shown = blank_missing_text(table)
        st.dataframe(shown, hide_index=True, width="stretch", column_order=[
            "name", "phone", "email", "last_contact", "leads", "last_status", "service"], column_config={
            "name": "Name", "phone": "Phone", "email": "E-mail",
            "last_contact": st.column_config.DatetimeColumn("Last in touch", format="MMM D, YYYY",
                                                            timezone=business_timezone()),
            "leads": st.column_config.NumberColumn("Leads"), "last_status": "Last status", "service": "Service"})
        pager(total, key="customers_page", page_size=PAGE_SIZE)
        customer_labels = {row.contact_key: f"{row.name or 'Unnamed'} · {row.phone or row.email}"
                           for row in shown.itertuples()}
        c1, c2 = st.columns([3, 1], vertical_alignment="bottom")
        with c1:
            chosen = pick("Customer", list(customer_labels), format_func=customer_labels.__getitem__,
                          key="erase_choice", help="Search above to find someone who is not on this page.")
        if c2.button("Erase personal data…", icon=":material/person_remove:", width="stretch"):
            ask("erase_customer", key=chosen, label=customer_labels[chosen])
        if question := asked("erase_customer"):
            confirm_erase(question["key"], question["label"])

# --- import -----------------------------------------------------------------------------------------------

with tab_import:
    st.markdown("Upload a CSV file with a header row. The columns we read are "
                + ", ".join(f"`{c}`" for c in COLUMNS)
                + "; other columns are kept with the lead. Each row needs a phone number or an e-mail address.")
    st.caption("Phone numbers are read in your business's country unless they start with +. Dates are like "
               "2025-03-14 or 2025-03-14T15:30. Status is New, Contacted or Closed. Importing the same file twice "
               "adds nothing the second time.")
    agents = load_agents(str(pid))
    with st.form("import_form", clear_on_submit=False):
        upload = st.file_uploader("Lead file (CSV)", type=["csv"], key="import_file")
        agent = st.selectbox("Agent these leads came from (optional)", ["", *agents], key="import_agent",
                             format_func=lambda a: agents.get(a, "None"))
        mode = st.radio("If some rows have problems", ["all_or_nothing", "skip_invalid"], key="import_mode",
                        format_func=lambda m: {
                            "all_or_nothing": "Import nothing and list the problems, so I can fix the file "
                                              "(recommended)",
                            "skip_invalid": "Import the good rows now and list the rows left out"}[m])
        pressed = st.form_submit_button("Import", type="primary", icon=":material/upload:")
    if pressed and upload is None:
        st.error("Choose a CSV file first.")
    elif pressed and upload is not None:
        data = upload.getvalue()
        rows = max(1, data.count(b"\n"))
        with st.status(f"Importing {upload.name}…", expanded=True) as status:
            bar = st.progress(0.0, text="Checking rows…")

            def progress(done: int) -> None:
                bar.progress(min(done / rows, 1.0), text=f"Checked {done:,} of about {rows:,} rows…")

            try:
                with db() as session:
                    report = import_leads(session, profile_id=pid, source=io.BytesIO(data),
                                          agent_id=uuid.UUID(agent) if agent else None,
                                          skip_invalid=mode == "skip_invalid", progress=progress)
            except DomainError as exc:
                status.update(label="The file could not be imported", state="error")
                st.session_state["import_report"] = {"error": sentence(exc)}
            else:
                bar.progress(1.0, text="Done")
                clear_caches()
                failed = bool(report.rejected) and mode != "skip_invalid"
                status.update(label="Nothing was imported" if failed else "Import finished",
                              state="error" if failed else "complete", expanded=False)
                st.session_state["import_report"] = {"mode": mode, **report.as_dict()}
                if report.imported:
                    st.rerun()  # the customer list above was drawn before the import
    result = st.session_state.get("import_report")
    if result:
        if "error" in result:
            st.error(result["error"])
        elif result["rejected"] and result["mode"] != "skip_invalid":
            st.error(f"Nothing was imported: {len(result['rejected'])} row"
                     f"{'s have' if len(result['rejected']) != 1 else ' has'} a problem. Fix them in the file and "
                     "import it again, or choose to import the good rows now.")
        else:
            st.success(f"Imported {result['imported']:,} lead{'s' if result['imported'] != 1 else ''}"
                       + (f"; skipped {result['duplicates']:,} already there" if result["duplicates"] else "")
                       + (f"; left out {len(result['rejected'])} row{'s' if len(result['rejected']) != 1 else ''} "
                          "with problems (below)" if result["rejected"] else "") + ".")
        if result.get("rejected"):
            st.dataframe(pd.DataFrame(result["rejected"]), hide_index=True, width="stretch", column_config={
                "line": st.column_config.NumberColumn("Line in the file", help="The header is line 1."),
                "error": st.column_config.TextColumn("Problem", width="large")})

# --- opt-outs ------------------------------------------------------------------------------------------------


@st.dialog("Remove this opt-out?", on_dismiss=answered)
def confirm_remove(opt_out_id: str, label: str) -> None:
    st.write(f"**{label}** will be reachable again on this channel. Only do this when the customer asked to hear "
             "from you again.")
    confirm_buttons("Remove the opt-out",
                    lambda s: optouts.delete_opt_out(s, profile_id=pid, opt_out_id=uuid.UUID(opt_out_id)),
                    success="Opt-out removed.")


with tab_optouts:
    st.caption("People on this list are never contacted on that channel, by any campaign. Replies like STOP, "
               "unsubscribe links, bounces and spam complaints add them automatically.")
    with st.form("optout_form", clear_on_submit=True):
        c1, c2 = st.columns([2, 1])
        contact = c1.text_input("Phone number or e-mail address", key="optout_contact")
        channel = c2.selectbox("Stop", OPT_OUT_CHANNELS[::-1], format_func=lambda c: CHANNEL_TEXT[c],
                               key="optout_channel")
        reason = st.text_input("Reason (optional)", key="optout_reason", placeholder="e.g. Asked at the front desk")
        add = st.form_submit_button("Add to the opt-out list", icon=":material/block:")
    if add:
        if not contact.strip():
            st.error("Enter the phone number or e-mail address to stop contacting.")
        else:
            def _record(session: Session) -> OptOut:
                region = accounts.get_profile(session, profile_id=pid).default_region
                return optouts.record_opt_out(session, profile_id=pid, contact=contact, channel=channel,
                                              source="manual", reason=reason.strip() or None, region=region)

            if attempt(_record) is not None:  # an error shows here, next to what was typed
                say("toast", f"{contact.strip()} will not be contacted ({CHANNEL_TEXT[channel].lower()}).",
                    remember=True)
                st.rerun()
    search_optouts = st.text_input("Search the list", key="optout_search")
    offset = page_offset("optouts_page", PAGE_SIZE, (search_optouts.strip(),))
    frame, total = load_opt_outs(str(pid), search_optouts.strip(), offset)
    past_the_end(len(frame), total, key="optouts_page", page_size=PAGE_SIZE)
    if total == 0:
        st.info("Nobody has opted out yet." if not search_optouts.strip() else "Nobody on the list matches.")
    else:
        st.dataframe(frame, hide_index=True, width="stretch", column_order=[
            "contact", "channel", "source", "reason", "created_at"], column_config={
            "contact": "Contact", "channel": "Channel", "source": "How", "reason": "Reason",
            "created_at": st.column_config.DatetimeColumn("Since", format="MMM D, YYYY",
                                                          timezone=business_timezone())})
        pager(total, key="optouts_page", page_size=PAGE_SIZE)
        optout_labels = {row.id: f"{row.contact} · {row.channel} · since "
                                 f"{local_time(row.created_at, with_time=False)}" for row in frame.itertuples()}
        c1, c2 = st.columns([3, 1], vertical_alignment="bottom")
        with c1:
            picked = pick("Opt-out", list(optout_labels), format_func=optout_labels.__getitem__,
                          key="optout_choice")
        if c2.button("Remove…", icon=":material/undo:", width="stretch"):
            ask("remove_opt_out", id=picked, label=optout_labels[picked])
        if question := asked("remove_opt_out"):
            confirm_remove(question["id"], question["label"])

"""Customers: the customer list, importing leads from CSV, the opt-out list,
erasing a customer's personal data, consent records and the do-not-call list."""

from __future__ import annotations

import io
import uuid
from datetime import UTC, datetime, time
from typing import IO
from zoneinfo import ZoneInfo

import pandas as pd
import streamlit as st
from sqlalchemy.orm import Session

from core import accounts, consents, customers, dnc, optouts
from core.errors import DomainError
from core.leads import FIELDS, FilePreview, import_leads, inspect_file
from core.models import OPT_OUT_CHANNELS, OptOut
from pages._ui import (
    CONSENT_TAB,
    answered,
    ask,
    asked,
    attempt,
    blank_missing_text,
    business_timezone,
    clear_caches,
    confirm_buttons,
    db,
    format_phone,
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
# the open tab is in the address (``customers?tab=Consent+%26+do-not-call``): other pages link to a tab
tab_list, tab_import, tab_optouts, tab_compliance = st.tabs(["Customers", "Import leads", "Opt-outs", CONSENT_TAB],
                                                            key="tab", bind="query-params")

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
        shown = blank_missing_text(table).assign(page=[f"customer?id={i}" for i in table["id"]],
                                                 phone_shown=[format_phone(p) for p in table["phone"]])
        st.dataframe(shown, hide_index=True, width="stretch", column_order=[
            "name", "page", "phone_shown", "email", "last_contact", "leads", "last_status", "service", "score"],
            column_config={
            "name": "Name", "phone_shown": "Phone", "email": "E-mail",
            "score": st.column_config.ProgressColumn("Score", min_value=0, max_value=100, format="%d", width="small",
                                                     help="Re-engagement score, 0–100: recent, frequent customers "
                                                          "who answered before score higher."),
            "page": st.column_config.LinkColumn("Customer page", display_text="Open ↗", width="small",
                                                help="Leads, campaigns and every message sent, in a new tab."),
            "last_contact": st.column_config.DatetimeColumn("Last in touch", format="MMM D, YYYY",
                                                            timezone=business_timezone()),
            "leads": st.column_config.NumberColumn("Leads"), "last_status": "Last status", "service": "Service"})
        pager(total, key="customers_page", page_size=PAGE_SIZE)
        customer_labels = {row.contact_key: f"{row.name or 'Unnamed'} · {row.phone_shown or row.email}"
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

FIELD_TEXT = {"customer_name": "Name", "first_name": "First name", "last_name": "Last name",
              "customer_phone": "Phone", "customer_email": "E-mail", "status": "Status", "service_type": "Service",
              "created_at": "Date", "notes": "Notes", "consent_call": "Consent to calls",
              "consent_sms": "Consent to texts", "consent_email": "Consent to e-mail", "consent_at": "Consent given on",
              "consent_proof": "Consent proof"}
NOT_IN_FILE = ""


def _forget_mapping() -> None:
    for key in [k for k in st.session_state if str(k).startswith("import_map_")]:
        del st.session_state[key]


def chosen_mapping() -> dict[str, str] | None:
    """The columns picked in the mapping step so far (none yet: the import's own matching)."""
    picked = {f: st.session_state[f"import_map_{f}"] for f in FIELDS if f"import_map_{f}" in st.session_state}
    return picked or None


def mapping_step(data: bytes) -> FilePreview | None:
    """How the file will be read: encoding and delimiter found, one column per lead field (pre-filled from the
    column names), and the first rows under the chosen columns."""
    try:
        preview = inspect_file(io.BytesIO(data), mapping=chosen_mapping())
    except DomainError as exc:
        st.error(sentence(exc), icon=":material/error:")
        return None
    st.caption(f"Read as {preview.encoding} text, columns separated by a {preview.delimiter}. Check which column "
               "holds what; columns not picked here are kept with each lead.")
    options = [NOT_IN_FILE, *preview.columns]
    grid = st.columns(3)
    for n, name in enumerate(FIELDS):
        current = preview.mapping.get(name) or NOT_IN_FILE
        grid[n % 3].selectbox(FIELD_TEXT[name], options, index=options.index(current) if current in options else 0,
                              key=f"import_map_{name}", format_func=lambda c: c or "— not in this file")
    if preview.rows:
        shown = [name for name in FIELDS if preview.mapping.get(name)]
        st.dataframe(pd.DataFrame(preview.rows, columns=shown).rename(columns=FIELD_TEXT), hide_index=True,
                     width="stretch")
        st.caption(f"The first {len(preview.rows)} rows as they will be read.")
    return preview


with tab_import:
    st.markdown("Upload your leads as a CSV file, the way your CRM or spreadsheet exports it: a header row, then "
                "one lead per row. Each row needs a phone number or an e-mail address.")
    st.caption("Columns are recognized by their names (Name, Full name, First name + Last name, Phone, Mobile, "
               "E-mail, Status, Stage, Service, Date, Last visit, Notes, consent_sms, …); pick the right column "
               "below when a name says nothing. Statuses are your own words. Dates are like 2025-03-14, or "
               "day and month in your country's order. Phone numbers are read in your business's country unless "
               "they start with +. Importing the same file twice adds nothing the second time.")
    agents = load_agents(str(pid))
    upload = st.file_uploader("Lead file (CSV)", type=["csv", "txt"], key="import_file")
    data = upload.getvalue() if upload is not None else None
    signature = f"{upload.name}:{len(data)}:{hash(data)}" if upload is not None and data is not None else None
    if st.session_state.get("import_signature") != signature:
        _forget_mapping()  # a new file: its own columns
        st.session_state["import_signature"] = signature
    preview = mapping_step(data) if data is not None else None
    agent = st.selectbox("Agent these leads came from (optional)", ["", *agents], key="import_agent",
                         format_func=lambda a: agents.get(a, "None"))
    mode = st.radio("If some rows have problems", ["all_or_nothing", "skip_invalid"], key="import_mode",
                    format_func=lambda m: {
                        "all_or_nothing": "Import nothing and list the problems, so I can fix the file "
                                          "(recommended)",
                        "skip_invalid": "Import the good rows now and list the rows left out"}[m])
    unreadable = data is not None and preview is None  # mapping_step said why
    pressed = st.button("Import", type="primary", icon=":material/upload:", disabled=unreadable)
    if pressed and data is None:
        st.error("Choose a CSV file first.")
    elif pressed and upload is not None and data is not None:
        rows = max(1, data.count(b"\n"))
        with st.status(f"Importing {upload.name}…", expanded=True) as status:
            bar = st.progress(0.0, text="Checking rows…")

            def progress(done: int) -> None:
                bar.progress(min(done / rows, 1.0), text=f"Checked {done:,} of about {rows:,} rows…")

            try:
                with db() as session:
                    report = import_leads(session, profile_id=pid, source=io.BytesIO(data),
                                          agent_id=uuid.UUID(agent) if agent else None, mapping=chosen_mapping(),
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
        if result.get("merged"):
            st.warning(f"{len(result['merged']):,} row{'s' if len(result['merged']) != 1 else ''} joined a customer "
                       "already on file under another name (same phone number or e-mail address). Check that they "
                       "are the same person:", icon=":material/group:")
            st.dataframe(pd.DataFrame(result["merged"]), hide_index=True, width="stretch", column_config={
                "line": st.column_config.NumberColumn("Line in the file", help="The header is line 1."),
                "customer_id": None,
                "customer_name": st.column_config.TextColumn("Name on file")})
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
                return optouts.record_opt_out(session, profile_id=pid, contact=contact, channel=channel,
                                              source="manual", reason=reason.strip() or None)

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


# --- consent and the do-not-call list (DESIGN §10) -------------------------------------------------------------

LEVEL_TEXT = {"express_written": "Written (signed form, ticked box)", "express": "Express (said yes)"}
CONSENT_SOURCE_TEXT = {"manual": "Entered by hand", "web_form": "Web form", "call": "On a call", "import": "Import",
                       "api": "API"}
DNC_SOURCE_TEXT = {"national_registry": "National Do Not Call Registry", "internal": "Our own list"}


@st.cache_data(ttl=30, show_spinner=False)
def load_consents(profile: str, search: str, offset: int) -> tuple[pd.DataFrame, int]:
    with db() as session:
        rows, total = consents.list_consents(session, profile_id=uuid.UUID(profile), search=search or None,
                                             limit=PAGE_SIZE, offset=offset)
        frame = pd.DataFrame.from_records(
            [{"id": str(c.id), "contact": c.contact, "channel": CHANNEL_TEXT.get(c.channel, c.channel),
              "level": "Written" if c.level == "express_written" else "Express",
              "source": CONSENT_SOURCE_TEXT.get(c.source, c.source), "proof": c.proof, "captured_at": c.captured_at,
              "revoked_at": c.revoked_at} for c in rows],
            columns=["id", "contact", "channel", "level", "source", "proof", "captured_at", "revoked_at"])
        return frame, total


def _contact_text(contact: str) -> str:
    """A consent's contact as people write it: a phone number formatted, an e-mail address as it is."""
    return format_phone(contact) if contact.startswith("+") else contact


@st.cache_data(ttl=30, show_spinner=False)
def load_dnc(profile: str, search: str, offset: int) -> tuple[pd.DataFrame, int]:
    with db() as session:
        rows, total = dnc.list_numbers(session, profile_id=uuid.UUID(profile), search=search or None,
                                       limit=PAGE_SIZE, offset=offset)
        frame = pd.DataFrame.from_records(
            [{"number": n.number, "source": DNC_SOURCE_TEXT.get(n.source, n.source), "created_at": n.created_at}
             for n in rows], columns=["number", "source", "created_at"])
        return frame, total


@st.cache_data(ttl=120, show_spinner=False)
def load_policy(profile: str) -> str:
    with db() as session:
        return accounts.get_profile(session, profile_id=uuid.UUID(profile)).consent_policy


@st.dialog("Revoke this consent?", on_dismiss=answered)
def confirm_revoke(consent_id: str, label: str) -> None:
    st.write(f"**{label}** no longer counts from now on; the record is kept, marked revoked, as evidence of what "
             "was given and when it was taken back.")
    confirm_buttons("Revoke the consent",
                    lambda s: consents.revoke_consent(s, profile_id=pid, consent_id=uuid.UUID(consent_id)),
                    success="Consent revoked.")


@st.dialog("Take this number off the do-not-call list?", on_dismiss=answered)
def confirm_undnc(number: str) -> None:
    st.write(f"Campaigns may call and text **{format_phone(number)}** again (opt-outs, consent and calling hours "
             "still apply).")
    confirm_buttons("Take it off the list", lambda s: dnc.remove_number(s, profile_id=pid, number=number),
                    success="Number taken off the do-not-call list.")


def consent_section() -> None:
    if load_policy(str(pid)) == "us_tcpa":
        st.caption("Calls and texts of win-back, promotional and follow-up campaigns reach only customers with "
                   "written consent on that channel; feedback campaigns need consent of either kind. E-mail needs "
                   "none (opt-outs rule it).")
    else:
        st.caption("Your business takes responsibility for consent (Settings): campaigns do not ask for these "
                   "records, and you can still keep them here as evidence.")
    with st.form("consent_form", clear_on_submit=True):
        c1, c2, c3 = st.columns([2, 1, 2])
        contact = c1.text_input("Phone number or e-mail address", key="consent_contact")
        channel = c2.selectbox("For", OPT_OUT_CHANNELS[::-1], format_func=lambda c: CHANNEL_TEXT[c],
                               key="consent_channel")
        level = c3.selectbox("Consent", list(LEVEL_TEXT), format_func=LEVEL_TEXT.__getitem__, key="consent_level")
        c4, c5 = st.columns([1, 2])
        today = datetime.now(UTC).astimezone(ZoneInfo(business_timezone())).date()
        given = c4.date_input("Given on", value=today, max_value=today, key="consent_date")
        proof = c5.text_input("Proof (optional)", key="consent_proof",
                              placeholder="e.g. Booking form, box 'Text me offers' ticked")
        add = st.form_submit_button("Record the consent", icon=":material/verified:")
    if add:
        if not contact.strip():
            st.error("Enter the phone number or e-mail address the consent is for.")
        else:
            # a day in the past stands for its noon; today for this moment (never a time still to come)
            now = datetime.now(UTC)
            captured = now if given >= today else datetime.combine(given, time(12), ZoneInfo(business_timezone()))
            if attempt(lambda s: consents.record_consent(
                    s, profile_id=pid, contact=contact, channel=channel, level=level, source="manual",
                    proof=proof.strip() or None, captured_at=captured)) is not None:
                say("toast", f"Consent recorded for {contact.strip()}.", remember=True)
                st.rerun()
    search = st.text_input("Search the consent records", key="consent_search")
    offset = page_offset("consents_page", PAGE_SIZE, (search.strip(),))
    frame, total = load_consents(str(pid), search.strip(), offset)
    past_the_end(len(frame), total, key="consents_page", page_size=PAGE_SIZE)
    if total == 0:
        st.info("No consent records yet." if not search.strip() else "No consent record matches.")
        return
    shown = frame.assign(
        contact_shown=[_contact_text(c) for c in frame["contact"]],
        revoked=[local_time(t, with_time=False) if pd.notna(t) else "" for t in frame["revoked_at"]])
    st.dataframe(blank_missing_text(shown), hide_index=True, width="stretch", column_order=[
        "contact_shown", "channel", "level", "source", "proof", "captured_at", "revoked"], column_config={
        "contact_shown": "Contact", "channel": "For", "level": "Consent", "source": "How", "proof": "Proof",
        "captured_at": st.column_config.DatetimeColumn("Given", format="MMM D, YYYY", timezone=business_timezone()),
        "revoked": "Revoked"})
    pager(total, key="consents_page", page_size=PAGE_SIZE)
    active = frame[frame["revoked_at"].isna()]
    if active.empty:
        return
    labels = {row.id: f"{_contact_text(row.contact)} · {row.channel} · {row.level.lower()} since "
                      f"{local_time(row.captured_at, with_time=False)}" for row in active.itertuples()}
    c1, c2 = st.columns([3, 1], vertical_alignment="bottom")
    with c1:
        picked = pick("Consent", list(labels), format_func=labels.__getitem__, key="consent_choice")
    if c2.button("Revoke…", icon=":material/undo:", width="stretch"):
        ask("revoke_consent", id=picked, label=labels[picked])
    if question := asked("revoke_consent"):
        confirm_revoke(question["id"], question["label"])


def dnc_section() -> None:
    st.caption("Numbers on this list are never called or texted, by any campaign. Upload a National Do Not Call "
               "Registry file (ten digits a line) or your own list: one number a line, any format.")
    with st.form("dnc_form", clear_on_submit=True):
        upload = st.file_uploader("File of numbers", type=["txt", "csv"], key="dnc_file")
        pasted = st.text_area("Or numbers, one a line", key="dnc_numbers", height=100)
        source = st.radio("Where they come from", list(DNC_SOURCE_TEXT), format_func=DNC_SOURCE_TEXT.__getitem__,
                          key="dnc_source", horizontal=True)
        skip = st.checkbox("If some lines are not phone numbers, add the others anyway", key="dnc_skip_invalid",
                           help="Without this, a single line that is not a phone number adds nothing, so that a "
                                "wrong file never goes in half.")
        add = st.form_submit_button("Add to the do-not-call list", icon=":material/phone_disabled:")
    if add:
        if upload is None and not pasted.strip():
            st.error("Choose a file or enter the numbers to add.")
        else:
            stream: IO[bytes] | IO[str] = io.BytesIO(upload.getvalue()) if upload is not None else io.StringIO(pasted)
            report = attempt(lambda s: dnc.import_file(s, profile_id=pid, stream=stream, source=source,
                                                       skip_invalid=skip))
            if report is not None:
                st.session_state["dnc_report"] = report.as_dict()
    result = st.session_state.get("dnc_report")
    if result:
        rejected = result["rejected"]
        bad = result.get("rejected_total", len(rejected))
        lines = f"{bad:,} line{'s' if bad != 1 else ''} that {'are' if bad != 1 else 'is'} not a phone number"
        shown = " (the first below)" if bad > len(rejected) else " (below)"
        if result.get("refused"):
            st.error(f"Nothing was added: the file has {lines}{shown}. Correct {'them' if bad != 1 else 'it'}, "
                     "or tick “add the others anyway” and add it again.")
        else:
            st.success(f"Added {result['added']:,} number{'s' if result['added'] != 1 else ''}"
                       + (f"; left out {lines}{shown}" if bad else "")
                       + ". Numbers already on the list are not added twice.")
        if rejected:
            st.dataframe(pd.DataFrame(rejected), hide_index=True, width="stretch", column_config={
                "line": st.column_config.NumberColumn("Line"), "number": "Entry",
                "error": st.column_config.TextColumn("Problem", width="large")})
    search = st.text_input("Search the list", key="dnc_search", placeholder="e.g. 305 555")
    offset = page_offset("dnc_page", PAGE_SIZE, (search.strip(),))
    frame, total = load_dnc(str(pid), search.strip(), offset)
    past_the_end(len(frame), total, key="dnc_page", page_size=PAGE_SIZE)
    if total == 0:
        st.info("The do-not-call list is empty." if not search.strip() else "No number on the list matches.")
        return
    st.caption(f"{total:,} number{'s' if total != 1 else ''} on the list.")
    st.dataframe(frame.assign(number_shown=[format_phone(n) for n in frame["number"]]), hide_index=True,
                 width="stretch", column_order=["number_shown", "source", "created_at"], column_config={
                     "number_shown": "Number", "source": "From",
                     "created_at": st.column_config.DatetimeColumn("Since", format="MMM D, YYYY",
                                                                   timezone=business_timezone())})
    pager(total, key="dnc_page", page_size=PAGE_SIZE)
    c1, c2 = st.columns([3, 1], vertical_alignment="bottom")
    with c1:
        number = pick("Number", list(frame["number"]), format_func=format_phone, key="dnc_choice")
    if c2.button("Take off the list…", icon=":material/undo:", width="stretch"):
        ask("remove_dnc", number=number)
    if question := asked("remove_dnc"):
        confirm_undnc(question["number"])


with tab_compliance:
    st.subheader("Consent records")
    consent_section()
    st.subheader("Do-not-call list")
    dnc_section()

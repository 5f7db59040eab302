"""Create campaign: the six-step wizard — also to edit a draft (``create_campaign?edit=<id>``) and to start a new
campaign from a copy of any campaign (``create_campaign?copy=<id>``).

The draft lives in ``st.session_state["wizard"]`` (a plain dict, not widget
state), so it survives going back and forth between steps and to other pages;
each step is a form whose submit writes into the draft — except the audience,
whose count follows every change, and the few choices that show or hide other
fields.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, available_timezones

import pandas as pd
import streamlit as st

from core import accounts, campaigns, launch, testsend, wizard
from core.config import get_settings
from core.customers import lead_statuses, service_types
from core.errors import DomainError, FieldError, Invalid
from core.launch import money
from core.models import CAMPAIGN_TYPES, CHANNELS, OUTREACH_METHODS, STEP_CONDITIONS
from core.schemas import DAYS, SendWindow
from core.targeting import ALL_OPS, FILTER_FIELDS, Preview, preview_audience
from core.templates import BUILTIN_VARIABLES, check_template, check_variable_names
from core.testsend import SampleCustomer, send_test
from pages._ui import (
    CONSENT_TAB,
    blank_missing_text,
    business_timezone,
    channel_modes,
    clear_caches,
    db,
    format_phone,
    go,
    page_link,
    plural,
    profile_id,
    say,
    sentence,
    state_rules_table,
)

pid = profile_id()
MAX_STEPS_ROWS = 3
FILTER_ROWS = 3
CHANNEL_WORDS = {"call": "AI voice call", "email": "E-mail", "sms": "SMS"}
CONTACT_NEEDED = {"call": "a phone number", "sms": "a phone number", "email": "an e-mail address"}
ZONES = sorted(z for z in available_timezones() if "/" in z and not z.startswith(("Etc/", "SystemV/", "posix/",
                                                                                    "right/")))


def _forget_widgets() -> None:
    # the step forms' widgets keep their own state; a new draft must not inherit it
    for key in [k for k in st.session_state if str(k).startswith("w_")]:
        del st.session_state[key]


def _fresh() -> dict[str, Any]:
    return {"step": 1, "reached": 1, "draft": wizard.new_draft(timezone=business_timezone()), "errors": {},
            "field_errors": {}, "test_result": None}


EDITABLE = ("draft", "scheduled")  # a scheduled campaign has not started yet


def _from_campaign(mode: str, raw: str) -> dict[str, Any] | None:
    """A wizard opened on a stored campaign (``mode`` ``edit`` or ``copy``), or None (said why)."""
    try:
        with db() as session:
            campaign = campaigns.get_campaign(session, profile_id=pid, campaign_id=uuid.UUID(raw))
            status, name = campaign.status, campaign.name
            loaded = wizard.draft_from_campaign(campaign, copy_of=mode == "copy")
    except (ValueError, DomainError):
        say("error", "That campaign does not exist (any more) in your business, so there is nothing to "
                     f"{'edit' if mode == 'edit' else 'copy'}.", remember=True)
        return None
    if mode == "edit" and status not in EDITABLE:
        st.session_state["_not_editable"] = (raw, name, status)
        return None
    return {**_fresh(), "draft": loaded, "reached": len(wizard.STEPS), "mode": mode,
            "source": (mode, raw, name)}


def _open_from_query() -> None:
    """Follow ``?edit=`` / ``?copy=`` once: the wizard then keeps its own draft (a reload keeps the edits)."""
    for mode in ("edit", "copy"):
        raw = st.query_params.get(mode)
        if not raw:
            continue
        current = st.session_state.get("wizard") or {}
        if (current.get("source") or (None, None))[:2] == (mode, raw):
            return
        _forget_widgets()
        opened = _from_campaign(mode, str(raw))
        if opened is not None:
            st.session_state["wizard"] = opened
        else:
            del st.query_params[mode]
        return


_open_from_query()
W: dict[str, Any] = st.session_state.get("wizard") or _fresh()
st.session_state["wizard"] = W
draft: dict[str, Any] = W["draft"]
EDITING = W.get("mode") == "edit"


# --- cached reads ------------------------------------------------------------------------------------


@st.cache_data(ttl=30, show_spinner=False)
def load_audience(profile: str, criteria_json: str, method: str, steps_json: str, campaign_type: str) -> Preview:
    with db() as session:
        return preview_audience(session, profile_id=uuid.UUID(profile), target_criteria=json.loads(criteria_json),
                                outreach_method=method, steps=json.loads(steps_json),  # type: ignore[arg-type]
                                campaign_type=campaign_type, sample_size=10)


@st.cache_data(ttl=120, show_spinner=False)
def load_agents(profile: str) -> dict[str, str]:
    with db() as session:
        return {str(a.id): a.name for a in accounts.list_agents(session, profile_id=uuid.UUID(profile))}


@st.cache_data(ttl=120, show_spinner=False)
def load_statuses(profile: str) -> dict[str, int]:
    with db() as session:
        return {s.status: s.customers for s in lead_statuses(session, profile_id=uuid.UUID(profile))}


@st.cache_data(ttl=120, show_spinner=False)
def load_services(profile: str) -> list[str]:
    with db() as session:
        return service_types(session, profile_id=uuid.UUID(profile))


@st.cache_data(ttl=120, show_spinner=False)
def load_profile(profile: str) -> dict[str, Any]:
    with db() as session:
        p = accounts.get_profile(session, profile_id=uuid.UUID(profile))
        return {"business_name": p.business_name, "timezone": p.timezone, "phone": p.phone, "email": p.email,
                "booking_url": p.booking_url, "consent_policy": p.consent_policy}


ANY_CHANNEL = [{"channel": c, "delay_hours": 0, "condition": "always"} for c in CHANNELS]


def audience_channels() -> list[str]:
    """The channels the audience is counted for: the chosen ones, or — before the channel step — all."""
    return wizard.used_channels(draft) if draft.get("channel_chosen", True) else list(CHANNELS)


def _audience_key() -> tuple[str, str, str, str, str]:
    """The draft's audience as the cached reads take it: (profile, criteria, method, steps, type)."""
    method = draft["outreach_method"]
    steps = draft["steps"] if method == "multi" else []
    if not draft.get("channel_chosen", True):
        method, steps = "multi", ANY_CHANNEL  # reachable on any channel
    elif method == "multi" and not steps:
        method, steps = "email", []
    return (str(pid), json.dumps(draft["target_criteria"], sort_keys=True, default=str), method,
            json.dumps(steps, sort_keys=True), draft["campaign_type"])


def audience() -> Preview | DomainError:
    """The draft's audience right now (or the error its criteria give)."""
    try:
        return load_audience(*_audience_key())
    except DomainError as exc:
        return exc


def audience_states() -> dict[str, dict[str, Any]]:
    """The states with their own rules among the audience's numbers (empty for e-mail, or bad criteria):
    counted by the same preview as the audience, in the same pass."""
    found = audience()
    return {} if isinstance(found, DomainError) else found.by_state


# --- navigation between steps ----------------------------------------------------------------------


def goto(step: int) -> None:
    W["step"] = step
    W["reached"] = max(W["reached"], step)
    st.rerun()


def _jump(step: int) -> None:
    W["step"] = step


def step_errors(step: int) -> None:
    for message in W["errors"].get(step, []):
        st.error(message, icon=":material/error:")


def field_error(name: str) -> None:
    message = W["field_errors"].get(name)
    if message:
        st.error(message, icon=":material/error:")


# Back | (space) | the step's own action | Next: wide enough for "Next: schedule" beside the audience panel
NAV_COLUMNS = [1.25, 0.5, 1.75, 2.0]


def nav_buttons(*, back: bool = True, next_label: str = "Next", extra: str | None = None) -> tuple[bool, bool, bool]:
    """The submit buttons of a step's form: (back, extra, next)."""
    # Back on the left; the step's own action and Next on the right
    cols = st.columns(NAV_COLUMNS)
    pressed_back = cols[0].form_submit_button("Back", icon=":material/arrow_back:", disabled=not back,
                                              width="stretch")
    pressed_extra = cols[2].form_submit_button(extra, width="stretch") if extra else False
    pressed_next = cols[3].form_submit_button(next_label, type="primary", icon=":material/arrow_forward:",
                                              width="stretch")
    return pressed_back, pressed_extra, pressed_next


def nav_row(*, next_label: str) -> tuple[bool, bool]:
    """Back and Next of a step that is not a form: (back, next)."""
    cols = st.columns(NAV_COLUMNS)
    pressed_back = cols[0].button("Back", icon=":material/arrow_back:", width="stretch", key=f"w_back_{W['step']}")
    pressed_next = cols[3].button(next_label, type="primary", icon=":material/arrow_forward:", width="stretch",
                                  key=f"w_next_{W['step']}")
    return pressed_back, pressed_next


def _start_over() -> None:
    _forget_widgets()
    for mode in ("edit", "copy"):
        if mode in st.query_params:
            del st.query_params[mode]
    st.session_state["wizard"] = _fresh()


def _open_copy(raw: str) -> None:
    opened = _from_campaign("copy", raw)
    if opened is not None:
        _forget_widgets()
        st.session_state["wizard"] = opened
        st.query_params["copy"] = raw  # a reload keeps the copy being made


def not_editable_notice() -> None:
    """Opened to edit a campaign that has started: say so, and offer the copy instead."""
    raw, name, status = st.session_state.pop("_not_editable")
    words = {"active": "running", "paused": "paused", "completed": "finished", "cancelled": "stopped"}
    st.warning(f"“{name}” is {words.get(status, status)}, so it can no longer be edited: only drafts, and "
               "scheduled campaigns before they start, can. You can start a new campaign from a copy of it.",
               icon=":material/edit_off:")
    c1, c2 = st.columns([1, 3])
    c1.button("Copy it into a new campaign", icon=":material/content_copy:", key="w_copy_instead",
              on_click=_open_copy, args=(raw,))
    with c2:
        page_link("campaign", "Back to the campaign", icon=":material/arrow_back:", id=raw)


source = W.get("source")
head, reset = st.columns([4, 1], vertical_alignment="bottom")
head.title(f"Edit “{source[2]}”" if EDITING and source else "Create campaign")
if reset.button("Start over" if not W.get("mode") else "New campaign instead", icon=":material/restart_alt:",
                width="stretch", key="w_start_over",
                help="Forget this draft and start again with the suggested texts."):
    _start_over()
    st.rerun()
if st.session_state.get("_not_editable"):
    not_editable_notice()
if EDITING and source:
    st.info(f"You are editing the {'scheduled campaign' if draft.get('start_mode') == 'later' else 'draft'} "
            f"“{source[2]}”: saving changes it; nothing is sent until it starts.", icon=":material/edit:")
elif W.get("mode") == "copy" and source:
    st.info(f"A new campaign, copied from “{source[2]}”: change what you like; saving creates a new draft and "
            "leaves the original as it is.", icon=":material/content_copy:")

step = int(W["step"])
nav = st.columns(len(wizard.STEPS))
for i, label in enumerate(wizard.STEPS, start=1):
    flag = " ⚠" if W["errors"].get(i) else ""
    nav[i - 1].button(f"{i}. {label}{flag}", key=f"wizard_nav_{i}", width="stretch",
                      type="primary" if i == step else "secondary", disabled=i > W["reached"] and i != step,
                      on_click=_jump, args=(i,))
st.progress(step / len(wizard.STEPS), text=f"Step {step} of {len(wizard.STEPS)}: {wizard.STEPS[step - 1]}")


# --- step 1: basics ----------------------------------------------------------------------------------


def step_basics() -> None:
    step_errors(1)
    with st.form("wizard_basics"):
        name = st.text_input("Campaign name", value=draft["name"], max_chars=200, key="w_name",
                             placeholder="e.g. Spring win-back")
        kind = st.radio("What kind of campaign is it?", CAMPAIGN_TYPES,
                        index=CAMPAIGN_TYPES.index(draft["campaign_type"]), key="w_type",
                        format_func=lambda t: wizard.TYPE_LABELS[t])
        description = st.text_area("Description (optional, only you see it)", value=draft["description"] or "",
                                   key="w_description", height=80)
        st.caption("The type fills in a suggested audience and message texts; you can change all of them in "
                   "the next steps.")
        _, _, pressed_next = nav_buttons(back=False, next_label="Next: audience")
    if pressed_next:
        if kind != draft["campaign_type"]:
            draft.update(wizard.apply_type(draft, kind))
        draft["name"], draft["description"] = name.strip(), description.strip()
        if not draft["name"]:
            W["errors"][1] = ["Campaign name: give the campaign a name so you can find it later."]
            st.rerun()
        W["errors"].pop(1, None)
        goto(2)


# --- step 2: audience --------------------------------------------------------------------------------


def _filter_value(field: str, op: str, raw: str) -> Any:
    if op in ("is_null", "not_null"):
        return None
    parts = [p.strip() for p in raw.split(",")] if op in ("in", "not_in") else [raw.strip()]
    if FILTER_FIELDS.get(field) == "number":
        converted: list[Any] = []
        for p in parts:
            try:
                converted.append(float(p) if "." in p else int(p))
            except ValueError:
                converted.append(p)
        parts = converted
    return parts if op in ("in", "not_in") else parts[0]


def audience_panel(*, note: str | None = None) -> None:
    result = audience()
    st.subheader("Who this reaches", anchor=False)
    if isinstance(result, DomainError):
        st.error(f"Audience: {sentence(result)}", icon=":material/error:")
        st.caption("The count appears once the conditions are fixed.")
        return
    m1, m2 = st.columns(2)
    m1.metric("Customers", f"{result.count:,}")
    m2.metric("Left out", f"{result.suppressed:,}", help=LEFT_OUT_HELP)
    st.markdown(left_out_words(result).markdown())
    channels = audience_channels() or ["email"]
    if not draft.get("channel_chosen", True):
        st.caption("Counted for any channel: every matching customer you can reach by e-mail, text or call. The "
                   f"count narrows to the channels you pick in the next step. {note or ''}")
    else:
        need = " or ".join(sorted({CONTACT_NEEDED[c] for c in channels}))
        st.caption(f"Counted for {', '.join(CHANNEL_WORDS[c] for c in channels)}: customers without {need} are "
                   f"not included. {note or ''}")
    if result.count == 0:
        st.warning("Nobody matches these conditions yet. Try fewer days without contact, more statuses, or "
                   "remove a condition.", icon=":material/person_off:")
        return
    sample = pd.DataFrame(result.sample)
    sample = blank_missing_text(sample.assign(customer_phone=[format_phone(p) for p in sample["customer_phone"]]))
    st.dataframe(sample, hide_index=True, width="stretch",
                 column_order=["customer_name", "customer_phone", "customer_email", "status", "service_type",
                               "last_contact_at", "lead_count", "score"],
                 column_config={
                     "customer_name": "Customer", "customer_phone": "Phone", "customer_email": "E-mail",
                     "status": "Last status", "service_type": "Service",
                     "last_contact_at": st.column_config.DatetimeColumn("Last in touch", format="MMM D, YYYY",
                                                                        timezone=business_timezone()),
                     "lead_count": st.column_config.NumberColumn("Leads"),
                     "score": st.column_config.ProgressColumn("Score", min_value=0, max_value=100, format="%d",
                                                              help="Re-engagement score, 0–100"),
                 })
    if result.count == 1:
        st.caption("The one customer who matches.")
    elif len(sample) == result.count:
        st.caption(f"All {result.count:,} customers, most recently in touch first.")
    else:
        st.caption(f"A sample of {len(sample)} of the {result.count:,} customers, most recently in touch first.")


LEFT_OUT_HELP = ("Customers who match but opted out, are on your do-not-call list or lack the consent this "
                 "campaign's calls and texts need.")


def left_out_words(result: Preview) -> wizard.LeftOut:
    """Who the audience leaves out and why, for the channels it is counted for."""
    return wizard.left_out(result.suppressed_by, policy=load_profile(str(pid)).get("consent_policy"),
                           campaign_type=draft["campaign_type"], channels=audience_channels() or ["email"])


def consent_link() -> None:
    page_link("customers", "Import consent or manage the do-not-call list", icon=":material/verified_user:",
              tab=CONSENT_TAB)
    st.caption("Your draft is kept.")


MANAGED_CRITERIA = {"last_contact_days", "last_contact_after", "last_contact_before", "status", "agent_id",
                    "min_leads", "service_type", "exclude_contacted_within_days", "filters", "score_min",
                    "score_max"}


def step_audience() -> None:
    crit = draft["target_criteria"]
    agents = load_agents(str(pid))
    services = sorted(set(load_services(str(pid))) | set(crit.get("service_type") or []))
    today = date.today()
    left, right = st.columns([3, 2], gap="large")
    # no form: every change reruns the page and the count beside follows it
    with left:
        days = st.number_input("Not in touch for at least … days", min_value=0, max_value=36500, step=1,
                               value=int(crit.get("last_contact_days") or 0), key="w_days",
                               help="0 means any time. A customer with a newer contact is not dormant and is left "
                                    "out.")
        current_range: tuple[date, ...] = ()
        only_after = bool(crit.get("last_contact_after")) and not crit.get("last_contact_before")
        if crit.get("last_contact_after") and crit.get("last_contact_before"):
            current_range = (date.fromisoformat(crit["last_contact_after"]),
                             date.fromisoformat(crit["last_contact_before"]) - timedelta(days=1))
        elif only_after:
            current_range = (min(date.fromisoformat(crit["last_contact_after"]), today), today)
        period = st.date_input("…and last in touch between (optional)", value=current_range, key="w_period",
                               max_value=today, help="Pick the first and the last day.")
        found = load_statuses(str(pid))  # the business's own words, most customers first
        wanted = crit.get("status") or []
        wanted = [wanted] if isinstance(wanted, str) else list(wanted)
        status_options = list(found) + [w for w in wanted if w.strip().lower() not in {o.lower() for o in found}]
        statuses = st.multiselect(
            "Status of their most recent lead", status_options, key="w_statuses", placeholder="Any status",
            default=[o for o in status_options if o.strip().lower() in {w.strip().lower() for w in wanted}],
            format_func=lambda o: f"{o} ({found[o]:,} customer{'s' if found[o] != 1 else ''})" if o in found else o,
            help="The statuses your leads carry, with how many customers' most recent lead has each.")
        agent_options = ["", *agents]
        agent = st.selectbox("Agent who handled their most recent lead", agent_options,
                             index=agent_options.index(str(crit.get("agent_id") or "")) if str(
                                 crit.get("agent_id") or "") in agent_options else 0,
                             format_func=lambda a: agents.get(a, "Any agent"), key="w_agent")
        min_leads = st.number_input("In touch at least … times", min_value=1, max_value=100000, step=1,
                                    value=int(crit.get("min_leads") or 1), key="w_min_leads",
                                    help="Counts every lead recorded for the customer.")
        chosen_services = st.multiselect("Had one of these services at some point", services,
                                         default=list(crit.get("service_type") or []), key="w_services",
                                         placeholder="Any service")
        score = st.slider("Re-engagement score", min_value=0, max_value=100, step=5, key="w_score",
                          value=(int(crit.get("score_min") or 0), int(crit.get("score_max") or 100)),
                          help="0–100, from how recently and how often a customer was in touch and how they "
                               "answered before: the higher, the likelier they come back. 0–100 means everyone.")
        cap = st.number_input("Skip customers any campaign contacted in the last … days", min_value=0,
                              max_value=3650, step=1, value=int(crit.get("exclude_contacted_within_days") or 0),
                              key="w_cap", help="0 means don't skip anyone. Keeps you from messaging the same "
                                                "person too often.")
        filters = list(crit.get("filters") or [])
        with st.expander("More conditions (advanced)", expanded=bool(filters)):
            st.caption("Conditions on each customer's most recent lead, e.g. notes contains wedding. For 'is one "
                       "of', separate values with commas.")
            rows = []
            for i in range(FILTER_ROWS):
                existing = filters[i] if i < len(filters) else {}
                c1, c2, c3 = st.columns(3)
                fields = ["", *FILTER_FIELDS]
                f = c1.selectbox("Field", fields, key=f"w_filter_field_{i}",
                                 index=fields.index(existing.get("field", "")) if existing.get("field", "") in fields
                                 else 0, format_func=lambda x: x.replace("_", " ") if x else "—",
                                 label_visibility="visible" if i == 0 else "collapsed")
                op = c2.selectbox("Condition", ALL_OPS, key=f"w_filter_op_{i}",
                                  index=ALL_OPS.index(existing.get("op", "eq")) if existing.get("op") in ALL_OPS
                                  else ALL_OPS.index("eq"), format_func=lambda o: wizard.OP_WORDS.get(o, o),
                                  label_visibility="visible" if i == 0 else "collapsed")
                raw_value = existing.get("value")
                shown = ", ".join(map(str, raw_value)) if isinstance(raw_value, list) else (
                    "" if raw_value is None else str(raw_value))
                value = c3.text_input("Value", value=shown, key=f"w_filter_value_{i}",
                                      label_visibility="visible" if i == 0 else "collapsed")
                rows.append((f, op, value))
    # what the owner does not see here (set over the API) is kept as it is
    new: dict[str, Any] = {k: v for k, v in crit.items() if k not in MANAGED_CRITERIA}
    if days:
        new["last_contact_days"] = int(days)
    if isinstance(period, (tuple, list)) and len(period) == 2:
        if only_after and tuple(period) == current_range:
            new["last_contact_after"] = crit["last_contact_after"]  # "since that day" stays as it was
        else:
            new["last_contact_after"] = period[0].isoformat()
            new["last_contact_before"] = (period[1] + timedelta(days=1)).isoformat()
    elif crit.get("last_contact_before") and not crit.get("last_contact_after"):
        new["last_contact_before"] = crit["last_contact_before"]
    if statuses:
        new["status"] = list(statuses)
    if agent:
        new["agent_id"] = agent
    if min_leads and int(min_leads) > 1:
        new["min_leads"] = int(min_leads)
    if chosen_services:
        new["service_type"] = list(chosen_services)
    if score[0] > 0:
        new["score_min"] = int(score[0])
    if score[1] < 100:
        new["score_max"] = int(score[1])
    if cap:
        new["exclude_contacted_within_days"] = int(cap)
    custom = [{"field": f, "op": op, "value": _filter_value(f, op, value)} for f, op, value in rows if f]
    custom += filters[FILTER_ROWS:]
    if custom:
        new["filters"] = custom
    draft["target_criteria"] = new
    result = audience()
    if isinstance(result, DomainError):
        W["errors"][2] = [f"Audience: {sentence(result)}"]
    else:
        W["errors"].pop(2, None)
    with left:
        pressed_back, pressed_next = nav_row(next_label="Next: channel")
    with right:
        audience_panel()
    if pressed_back:
        goto(1)
    if pressed_next and not isinstance(result, DomainError):
        goto(3)


# --- step 3: channel ---------------------------------------------------------------------------------


def _set_method() -> None:
    draft["outreach_method"] = st.session_state["w_method"]


def _use_starter() -> None:
    """One click: call → a text with the booking link an hour later if unanswered → an e-mail three days later
    if still no response."""
    draft.update(wizard.starter_sequence(draft))
    for key in [k for k in st.session_state if str(k).startswith(("w_step_", "w_sms_template"))]:
        del st.session_state[key]
    st.session_state["w_method"] = "multi"


def starter_offer() -> None:
    with st.container(border=True):
        st.markdown("**Starter sequence** — call first; if nobody answers or it reaches voicemail, a text with "
                    "your booking link an hour later; if still no response, an e-mail three days later.")
        st.button("Use the starter sequence", icon=":material/auto_awesome:", key="w_starter", width="content",
                  on_click=_use_starter)
    if draft.get("steps") == wizard.STARTER_STEPS and not load_profile(str(pid)).get("booking_url"):
        st.caption("Your business has no online booking link yet, so the text asks them to reply with a day "
                   "instead. Add the link in Settings → Business profile to send it as {booking_link}.")


def step_channel() -> None:
    step_errors(3)
    draft["channel_chosen"] = True  # from here on the audience is counted for the channel picked
    modes = channel_modes()
    agents = load_agents(str(pid))
    left, right = st.columns([3, 2], gap="large")
    with left:
        st.radio("How should we reach them?", OUTREACH_METHODS, key="w_method", on_change=_set_method,
                 index=OUTREACH_METHODS.index(draft["outreach_method"]),
                 format_func=lambda m: wizard.METHOD_LABELS[m], horizontal=True)
        method = draft["outreach_method"]
        starter_offer()
        sandbox = [CHANNEL_WORDS[c] for c in (CHANNELS if method == "multi" else [method]) if modes[c] == "sandbox"]
        if sandbox:
            st.info(f"{', '.join(sandbox)} {'runs' if len(sandbox) == 1 else 'run'} in sandbox mode: sending is "
                    "simulated and nothing reaches customers until the provider is set up in Settings.",
                    icon=":material/science:")
        with st.form("wizard_channel"):
            steps_out: list[dict[str, Any]] = []
            if method == "multi":
                st.markdown("**The sequence** — each step waits the given hours after the previous one.")
                existing = draft["steps"] or [{"channel": "email", "delay_hours": 0, "condition": "always"},
                                              {"channel": "sms", "delay_hours": 48, "condition": "no_response"}]
                for i in range(MAX_STEPS_ROWS):
                    cur = existing[i] if i < len(existing) else {}
                    c1, c2, c3 = st.columns(3)
                    options = ["", *CHANNELS]
                    ch = c1.selectbox(f"Step {i + 1}", options, key=f"w_step_channel_{i}",
                                      index=options.index(cur.get("channel", "")),
                                      format_func=lambda c: CHANNEL_WORDS.get(c, "— (no step)"))
                    delay = c2.number_input("Hours after start" if i == 0 else "Hours after the previous step",
                                            min_value=0.0, max_value=24.0 * 60, step=1.0,
                                            value=float(cur.get("delay_hours", 0)), key=f"w_step_delay_{i}")
                    cond = c3.selectbox("Send", STEP_CONDITIONS, key=f"w_step_condition_{i}",
                                        index=STEP_CONDITIONS.index(cur.get("condition", "always")),
                                        format_func=lambda c: wizard.CONDITION_LABELS[c], disabled=i == 0)
                    if ch:
                        steps_out.append({"channel": ch, "delay_hours": delay,
                                          "condition": "always" if i == 0 else cond})
            uses_call = method == "call" or (method == "multi" and any(
                s.get("channel") == "call" for s in draft["steps"] or [{"channel": "call"}]))
            agent_choice = draft.get("agent_id") or ""
            if uses_call:
                options = ["", *agents]
                agent_choice = st.selectbox(
                    "Which voice agent makes the calls", options, key="w_call_agent",
                    index=options.index(str(agent_choice)) if str(agent_choice) in options else 0,
                    format_func=lambda a: agents.get(a, "The default assistant (from Settings)"))
            if method != "multi" and not uses_call:
                st.caption("Nothing else to set for this channel.")
            pressed_back, _, pressed_next = nav_buttons(next_label="Next: content")
    if pressed_back or pressed_next:
        draft["steps"] = steps_out if method == "multi" else []
        draft["agent_id"] = agent_choice or None
        if method == "multi" and not steps_out:
            W["errors"][3] = ["Channel sequence: add at least one step, or pick a single channel."]
            st.rerun()
        W["errors"].pop(3, None)
        goto(2 if pressed_back else 4)
    with right:
        audience_panel()


# --- step 4: content ---------------------------------------------------------------------------------


def _check_content(values: dict[str, str], variables: dict[str, str]) -> dict[str, str]:
    errors: dict[str, str] = {}
    for name, text in values.items():
        if not text.strip():
            continue
        try:
            check_template(text, field=name, extra_variables=variables.keys())
        except Invalid as exc:
            errors[name] = wizard.describe_error(FieldError(name, exc.errors[0].message), draft)
    return errors


def profile_object() -> Any:
    """The business as the message builder reads it (name, booking link, prices), detached from its session."""
    with db() as session:
        profile = accounts.get_profile(session, profile_id=pid)
        session.expunge(profile)
    return profile


def agent_object() -> Any:
    agent_id = draft.get("agent_id")
    if not agent_id:
        return None
    with db() as session:
        agent = next((a for a in accounts.list_agents(session, profile_id=pid) if str(a.id) == str(agent_id)), None)
        if agent is not None:
            session.expunge(agent)
    return agent


def current_sample() -> SampleCustomer:
    """The customer the preview and the test are built for: the one picked from the audience's sample."""
    result = audience()
    samples = result.sample if isinstance(result, Preview) else []
    if not samples:
        return SampleCustomer()
    s = samples[min(int(st.session_state.get("w_preview_customer") or 0), len(samples) - 1)]
    return SampleCustomer(customer_name=s.get("customer_name"), customer_phone=s.get("customer_phone"),
                          customer_email=s.get("customer_email"), service_type=s.get("service_type"),
                          last_visit=testsend.last_visit(s.get("last_contact_at")))


def preview_panel() -> None:
    profile = profile_object()
    result = audience()
    samples = result.sample if isinstance(result, Preview) else []
    st.subheader("Preview", anchor=False)
    labels = [f"{s.get('customer_name') or 'Unnamed customer'} ({s.get('customer_phone') or s.get('customer_email')})"
              for s in samples]
    if samples:
        st.selectbox("Show it as this customer would get it", range(len(samples)), format_func=lambda i: labels[i],
                     key="w_preview_customer")
    else:
        st.caption("Nobody in the audience yet: the preview uses an example customer with no details, so you see "
                   "the fallbacks.")
    sample = current_sample()
    campaign = testsend.unsaved_campaign(profile=profile, data=wizard.campaign_data(draft, status="draft"))
    agent = agent_object()
    versions = [(None, "")] + ([("B", " — version B")] if campaign.variants else [])
    channels = wizard.used_channels(draft)
    tabs = st.tabs([f"{CHANNEL_WORDS[c]}{suffix}" for c in channels for _, suffix in versions])
    i = 0
    for channel in channels:
        for variant, _ in versions:
            with tabs[i]:
                try:
                    msg = testsend.render_message(campaign=campaign, profile=profile, channel=channel, sample=sample,
                                                  variant=variant, agent=agent, settings=get_settings())
                except DomainError as exc:
                    for message in wizard.describe_exception(exc, draft):
                        st.error(message)
                else:
                    show_message(msg)
            i += 1
    st.caption("This is the message exactly as it is sent, footers included; links go through click tracking, so "
               "they lead nowhere from this preview.")


def show_message(msg: Any) -> None:
    """One rendered message: the e-mail as the customer sees it, the text, or the call's opening."""
    with st.container(border=True):
        if msg.channel == "email":
            st.markdown(f"**Subject:** {msg.subject}")
            st.html(msg.html or "")
            with st.expander("Plain-text part"):
                st.text(msg.text)
        elif msg.channel == "call":
            st.markdown("**The agent opens the call with:**")
            st.write(msg.text)
        else:
            st.text(msg.text)
    if msg.sms is not None:
        note = (f"{msg.sms.characters} characters · {msg.sms.encoding} · {msg.sms.segments} SMS "
                f"segment{'s' if msg.sms.segments != 1 else ''} · {money(msg.cost)} per customer")
        if msg.sms.segments > 1:
            st.warning(f"{note}: longer than one text message, so it is billed as {msg.sms.segments} messages. "
                       "Shorten it to fit in one.")
        else:
            st.caption(note)
    elif msg.cost is not None:
        st.caption(f"{money(msg.cost)} per customer")


def test_send_panel() -> None:
    profile = load_profile(str(pid))
    channels = wizard.used_channels(draft)
    modes = channel_modes()
    st.subheader("Send yourself a test", anchor=False)
    with st.form("wizard_test"):
        channel = st.selectbox("Channel", channels, format_func=lambda c: CHANNEL_WORDS[c], key="w_test_channel")
        c1, c2 = st.columns(2)
        email = c1.text_input("Your e-mail address (for e-mail tests)", value=st.session_state.get("user_email", ""),
                              key="w_test_email")
        phone = c2.text_input("Your mobile number (for SMS and call tests)", value=profile.get("phone") or "",
                              key="w_test_phone")
        pressed = st.form_submit_button("Send test", icon=":material/send:")
    sandboxed = [CHANNEL_WORDS[c] for c in channels if modes[c] == "sandbox"]
    if sandboxed:
        st.caption(f"{', '.join(sandboxed)}: sandbox mode, so a test is simulated and nothing is delivered.")
    if pressed:
        agent = draft.get("agent_id")
        try:
            with db() as session:
                outcome = send_test(session, profile_id=pid, channel=channel,
                                    to=email if channel == "email" else phone,
                                    campaign_data=wizard.campaign_data(draft, status="draft"),
                                    sample=current_sample(), agent_id=uuid.UUID(agent) if agent else None)
        except DomainError as exc:
            W["test_result"] = ("error", sentence(exc))
        else:
            W["test_result"] = ("live" if outcome.live else "sandbox", outcome.sentence())
    if W.get("test_result"):
        kind, text = W["test_result"]
        {"error": st.error, "live": st.success, "sandbox": st.info}[kind](text)


def step_content() -> None:
    step_errors(4)
    needed = wizard.content_fields_for(draft)
    with st.form("wizard_content"):
        values: dict[str, str] = {}
        for name in needed:
            label = wizard.field_label(name, draft)
            if name == "email_subject":
                values[name] = st.text_input(label, value=draft.get(name) or "", key=f"w_{name}", max_chars=500)
            else:
                values[name] = st.text_area(label, value=draft.get(name) or "", key=f"w_{name}",
                                            height=220 if name == "message_template" and "email" in
                                            wizard.used_channels(draft) else 120)
            field_error(name)
        variables_text = st.text_area(
            "Campaign variables", value=wizard.format_variables(draft["variables"]), key="w_variables", height=80,
            help="One per line, like: promotion = 20% off. Use them in the texts as {promotion}.")
        field_error("variables")
        st.caption("You can use " + ", ".join("{" + v + "}" for v in BUILTIN_VARIABLES)
                   + " and your campaign variables. Write {first_name|there} to say 'there' when the name is "
                     "unknown.")
        with st.expander("A/B test: try a second version (optional)", expanded=bool(draft.get("variant_b"))):
            st.caption("Fill in only what version B changes; everything left empty stays as version A. Results "
                       "show which version does better.")
            variant_b: dict[str, str] = {}
            for name in needed:
                label = f"Version B: {wizard.field_label(name, draft)}"
                current = (draft.get("variant_b") or {}).get(name, "")
                if name == "email_subject":
                    variant_b[name] = st.text_input(label, value=current, key=f"w_b_{name}")
                else:
                    variant_b[name] = st.text_area(label, value=current, key=f"w_b_{name}", height=100)
                field_error(f"b_{name}")
            share = st.slider("Share of customers who get version B (%)", min_value=10, max_value=90, step=5,
                              value=int(draft.get("variant_b_share") or 50), key="w_b_share")
            mode = st.radio("How the test runs", list(wizard.VARIANT_MODE_LABELS), key="w_variant_mode",
                            index=list(wizard.VARIANT_MODE_LABELS).index(draft.get("variant_mode") or "split"),
                            format_func=wizard.VARIANT_MODE_LABELS.__getitem__)
            c1, c2 = st.columns(2)
            test_percent = c1.number_input("Test group (% of the customers)", min_value=1, max_value=100, step=5,
                                           value=int(draft.get("test_percent") or 20), key="w_test_percent",
                                           help="Test, then send the winner: this share tries both versions, "
                                                "split as above; the rest wait for the winner.")
            test_hours = c2.number_input("Pick the winner after at most … hours", min_value=1.0, max_value=720.0,
                                         step=1.0, value=float(draft.get("test_hours") or 48), key="w_test_hours",
                                         help="The version ahead on responses wins as soon as it is ahead for "
                                              "sure (p < 0.05), else the leader at this time.")
        pressed_back, pressed_check, pressed_next = nav_buttons(extra="Check and preview",
                                                                next_label="Next: schedule")
    if pressed_back or pressed_check or pressed_next:
        variables, bad = wizard.parse_variables(variables_text)
        draft.update(values)
        draft["variables"] = variables
        draft["variant_b"] = {k: v for k, v in variant_b.items() if v.strip()}
        draft["variant_b_share"] = int(share)
        draft.update(variant_mode=mode, test_percent=int(test_percent), test_hours=float(test_hours))
        errors = _check_content(values, variables)
        errors.update({f"b_{k}": v for k, v in _check_content(draft["variant_b"], variables).items()})
        for name in needed:
            if not (values.get(name) or "").strip():
                errors[name] = f"{wizard.field_label(name, draft)}: write this before going on."
        if bad:
            errors["variables"] = ("Campaign variables: write each one as name = value (could not read: "
                                   + "; ".join(bad) + ").")
        else:
            try:
                check_variable_names(variables)
            except Invalid as exc:
                errors["variables"] = wizard.describe_error(exc.errors[0], draft)
        W["field_errors"] = errors
        if errors:
            W["errors"][4] = ["Some texts need fixing: see the messages under them."]
        else:
            W["errors"].pop(4, None)
        W["test_result"] = None
        if pressed_back:
            goto(3)
        if pressed_next and not errors:
            goto(5)
        st.rerun()
    st.divider()
    left, right = st.columns([3, 2], gap="large")
    with left:
        preview_panel()
    with right:
        test_send_panel()


# --- step 5: schedule --------------------------------------------------------------------------------


def _hhmm(value: time) -> str:
    return value.strftime("%H:%M")


def _set_from(widget: str, field: str, kind: Any = None) -> None:
    value = st.session_state[widget]
    draft[field] = kind(value) if kind is not None else value


def holdout_sentence(percent: int, count: int) -> str:
    """The holdout's trade-off in words, with the audience's numbers."""
    if percent <= 0:
        return ("Everyone who matches is contacted. You will see how many came back, but not how many would have "
                "come back anyway.")
    kept = round(count * percent / 100)
    return (f"{percent} % of {plural(count, 'customer')} ({kept:,}) will not be contacted, so you can see how many "
            "came back because of the campaign. Keeping more back makes the answer surer, and reaches fewer.")


def measure_and_repeat() -> None:
    """Holdout and always-on: live widgets (their explanations follow them), not part of the step's form."""
    result = audience()
    count = result.count if isinstance(result, Preview) else 0
    with st.container(border=True):
        st.markdown("**Measure what it brings, and keep it running**")
        holdout = st.slider("Keep back a share of the customers, never contacted (%)", min_value=0, max_value=50,
                            step=5, value=int(draft.get("holdout_percent") or 0), key="w_holdout",
                            on_change=_set_from, args=("w_holdout", "holdout_percent", int))
        st.caption(holdout_sentence(int(holdout), count))
        always = st.checkbox("Always on: keep enrolling customers as they start matching", key="w_always_on",
                             value=bool(draft.get("always_on")), on_change=_set_from,
                             args=("w_always_on", "always_on", bool))
        if always:
            st.number_input("Enrol a customer again … days after their last time in this campaign", min_value=1,
                            max_value=3650, step=1, value=int(draft.get("reenroll_after_days") or 180),
                            key="w_reenroll", on_change=_set_from, args=("w_reenroll", "reenroll_after_days", int))
            st.caption("Every day it enrols the customers who newly match — e.g. who just passed the days without "
                       "contact. It never ends by itself: stop it from its page when you want it to end.")


def step_schedule() -> None:
    step_errors(5)
    zone = draft["timezone"] if draft["timezone"] in ZONES else business_timezone()
    window = draft["send_window"]
    scheduled = draft.get("scheduled_at")
    today = datetime.now(ZoneInfo(zone)).date()  # the campaign's today, not the server's
    local = (datetime.fromisoformat(scheduled).astimezone(ZoneInfo(zone)) if scheduled else
             wizard.default_start(zone, datetime.now(UTC)))
    uses_call = "call" in wizard.used_channels(draft)
    # a choice that shows or hides fields is outside the form, so the page follows it at once
    when = st.radio("When should it start?", ["now", "later"], index=0 if draft["start_mode"] == "now" else 1,
                    key="w_when", horizontal=True, on_change=_set_from, args=("w_when", "start_mode"),
                    format_func=lambda w: {"now": "As soon as I confirm", "later": "At a date and time"}[w])
    measure_and_repeat()
    with st.form("wizard_schedule"):
        c1, c2, c3 = st.columns(3)
        start_date, start_time = local.date(), local.time()
        if when == "later":
            start_date = c1.date_input("Date", value=local.date(), min_value=min(today, local.date()), key="w_date")
            start_time = c2.time_input("Time", value=local.time().replace(second=0, microsecond=0), step=900,
                                       key="w_time")
        timezone = c3.selectbox("Time zone", ZONES, index=ZONES.index(zone), key="w_timezone",
                                help="For the start time, and for customers whose phone number does not tell "
                                     "their time zone.")
        st.markdown("**Send window** — when customers may be contacted, in their own local time")
        days = st.multiselect("Days", DAYS, default=window.get("days", list(DAYS)), key="w_days_allowed",
                              format_func=lambda d: wizard.DAY_NAMES[d])
        c4, c5 = st.columns(2)
        win_start = c4.time_input("From", value=time.fromisoformat(window.get("start", "09:00")), step=900,
                                  key="w_window_start")
        end_text = window.get("end", "19:00")
        win_end = c5.time_input("Until", value=time(0, 0) if end_text == "24:00" else time.fromisoformat(end_text),
                                step=900, key="w_window_end", help="00:00 means until midnight.")
        st.caption("Calls and text messages never go out before 08:00 or after 21:00 in the customer's time zone, "
                   "whatever the window says.")
        send_time = st.radio("When in the window each customer is contacted", list(wizard.SEND_TIME_LABELS),
                             index=list(wizard.SEND_TIME_LABELS).index(draft.get("send_time") or "window"),
                             key="w_send_time", format_func=wizard.SEND_TIME_LABELS.__getitem__,
                             help="Best hour: the hour of the window your customers have answered or replied "
                                  "most (each customer's own once they have three or more past outcomes); before "
                                  "you have history, the hours that work best for this channel in general.")
        st.markdown("**Pace**")
        c6, c7, c8 = st.columns(3)
        rate = c6.number_input("Messages or calls per minute", min_value=1, max_value=10000, step=1,
                               value=int(draft["rate_limit_per_minute"]), key="w_rate")
        concurrent = int(draft["max_concurrent_calls"])
        if uses_call:
            concurrent = c7.number_input("Calls at the same time", min_value=1, max_value=1000, step=1,
                                         value=concurrent, key="w_concurrent")
        tries = c8.number_input("Tries per customer", min_value=1, max_value=10, step=1,
                                value=int(draft["max_attempts"]), key="w_tries",
                                help="How often to retry when a send fails for a temporary reason (busy line, "
                                     "provider hiccup).")
        pressed_back, _, pressed_next = nav_buttons(next_label="Next: review")
    if pressed_back or pressed_next:
        problems: list[str] = []
        end = "24:00" if win_end == time(0, 0) else _hhmm(win_end)
        try:
            sw = SendWindow(start=_hhmm(win_start), end=end, days=list(days))
        except ValueError as exc:
            message = str(exc).split("\n")[1].strip() if "\n" in str(exc) else str(exc)
            message = message.removeprefix("Value error, ")
            problems.append(f"Send window: {message[:1].upper()}{message[1:]}.")
        else:
            draft["send_window"] = sw.model_dump(mode="json")
        at = datetime.combine(start_date, start_time, ZoneInfo(timezone)).astimezone(UTC)
        draft.update(start_mode=when, scheduled_at=at.isoformat() if when == "later" else None, timezone=timezone,
                     rate_limit_per_minute=int(rate), max_concurrent_calls=int(concurrent), max_attempts=int(tries),
                     send_time=send_time)
        if when == "later" and at <= datetime.now(UTC):
            problems.append("Start time: pick a date and time in the future, or choose 'As soon as I confirm'.")
        if problems:
            W["errors"][5] = problems
        else:
            W["errors"].pop(5, None)
        if pressed_back:
            goto(4)
        if not problems:
            goto(6)
        st.rerun()


# --- step 6: review ----------------------------------------------------------------------------------


def _save(status: str, *, start_now: bool) -> None:
    """Create the campaign (or, editing, change the stored one), and start it when asked."""
    data = wizard.campaign_data(draft, status=status)
    edited = uuid.UUID(W["source"][1]) if EDITING else None
    try:
        with st.spinner("Saving the campaign" + (" and choosing its customers…" if start_now else "…")), \
                db() as session:
            if edited is not None:
                campaign = campaigns.update_campaign(session, profile_id=pid, campaign_id=edited, data=data)
            else:
                campaign = campaigns.create_campaign(session, profile_id=pid, data=data)
            if start_now:
                campaigns.start_campaign(session, profile_id=pid, campaign_id=campaign.id)
            campaign_id, name = campaign.id, campaign.name
    except Invalid as exc:
        W["errors"] = wizard.errors_by_step(exc.errors, draft)
        st.rerun()
    except DomainError as exc:
        W["errors"] = {6: wizard.describe_exception(exc, draft)}
        st.rerun()
    clear_caches()
    _forget_widgets()
    st.session_state.pop("wizard", None)
    if edited is not None and not start_now:
        verb = "scheduled" if status == "scheduled" else "saved"
    else:
        verb = {"draft": "saved as a draft", "scheduled": "scheduled", "active": "started"}[
            "active" if start_now else status]
    say("toast", f"“{name}” {verb}.", remember=True)
    go("campaign", id=campaign_id)


def _edit_button(step_no: int) -> None:
    st.button("Edit", key=f"w_edit_{step_no}", on_click=_jump, args=(step_no,), icon=":material/edit:")


def step_review() -> None:
    if any(W["errors"].get(i) for i in range(1, 6)):
        st.error("A few things need fixing before the campaign can be saved:", icon=":material/error:")
        for i in range(1, 6):
            for message in W["errors"].get(i, []):
                c1, c2 = st.columns([5, 1], vertical_alignment="center")
                c1.markdown(f"- **Step {i} · {wizard.STEPS[i - 1]}**: {message}")
                c2.button(f"Fix in step {i}", key=f"w_fix_{i}_{abs(hash(message))}", on_click=_jump, args=(i,))
    step_errors(6)
    agents = load_agents(str(pid))
    result = audience()
    method = draft["outreach_method"]
    left, right = st.columns([3, 2], gap="large")
    with left:
        with st.container(border=True):
            c1, c2 = st.columns([5, 1])
            c1.markdown(f"**1 · Basics** — {draft['name'] or '*(no name yet)*'}")
            c1.caption(f"{wizard.TYPE_LABELS[draft['campaign_type']]}. {draft['description'] or ''}")
            with c2:
                _edit_button(1)
        with st.container(border=True):
            c1, c2 = st.columns([5, 1])
            c1.markdown("**2 · Audience**")
            c1.markdown("\n".join(f"- {line}" for line in wizard.describe_criteria(draft["target_criteria"],
                                                                                   agent_names=agents)))
            with c2:
                _edit_button(2)
        with st.container(border=True):
            c1, c2 = st.columns([5, 1])
            c1.markdown(f"**3 · Channel** — {wizard.METHOD_LABELS[method]}")
            if method == "multi":
                for i, s in enumerate(draft["steps"], start=1):
                    wait = f"{s['delay_hours']:g} h after {'start' if i == 1 else 'the previous step'}"
                    cond = "" if i == 1 else f", {wizard.CONDITION_LABELS[s['condition']]}"
                    c1.caption(f"Step {i}: {CHANNEL_WORDS[s['channel']]} — {wait}{cond}")
            if draft.get("agent_id"):
                c1.caption(f"Calls by {agents.get(str(draft['agent_id']), 'the chosen agent')}.")
            with c2:
                _edit_button(3)
        with st.container(border=True):
            c1, c2 = st.columns([5, 1])
            c1.markdown("**4 · Content**")
            for name in wizard.content_fields_for(draft):
                text = (draft.get(name) or "").strip().replace("\n", " ")
                c1.caption(f"{wizard.field_label(name, draft)}: {text[:140]}{'…' if len(text) > 140 else ''}")
            if draft["variables"]:
                c1.caption("Variables: " + ", ".join(f"{{{k}}} = {v}" for k, v in draft["variables"].items()))
            if draft.get("variant_b"):
                if draft.get("variant_mode") == "test_then_winner":
                    c1.caption(f"A/B test: {draft['test_percent']}% try both versions ({draft['variant_b_share']}% "
                               f"of them version B); the rest get the winner, picked within "
                               f"{float(draft['test_hours']):g} hours.")
                else:
                    c1.caption(f"A/B test: {draft['variant_b_share']}% get version B.")
            with c2:
                _edit_button(4)
        with st.container(border=True):
            c1, c2 = st.columns([5, 1])
            zone = ZoneInfo(draft["timezone"])
            if draft["start_mode"] == "later" and draft.get("scheduled_at"):
                at = datetime.fromisoformat(draft["scheduled_at"]).astimezone(zone)
                when = f"Starts {at.strftime('%A %b %d, %Y at %H:%M')} ({draft['timezone']})"
            else:
                when = "Starts as soon as you confirm"
            window = draft["send_window"]
            day_text = ", ".join(wizard.DAY_NAMES[d][:3] for d in window["days"])
            c1.markdown(f"**5 · Schedule** — {when}")
            c1.caption(f"Send window {window['start']}–{window['end']} on {day_text}, customer's local time"
                       f"{', at each customer’s best hour' if draft.get('send_time') == 'best' else ''}. "
                       f"{draft['rate_limit_per_minute']} per minute, up to {draft['max_attempts']} tries each.")
            if int(draft.get("holdout_percent") or 0):
                c1.caption(f"{draft['holdout_percent']}% of the customers are kept back, never contacted, to "
                           "measure what the campaign brings.")
            if draft.get("always_on"):
                c1.caption(f"Always on: enrols newly matching customers every day; a customer again after "
                           f"{draft['reenroll_after_days']} days.")
            with c2:
                _edit_button(5)
    with right:
        ready_panel(result)
    law_panel(result)  # the whole width: the table of states and their statutes reads without squeezing


def law_panel(result: Preview | DomainError) -> None:
    """The consent policy, and for calls and texts the states with their own rules among the audience's numbers."""
    channels = wizard.used_channels(draft)
    with st.container(border=True):
        st.markdown("**Consent and the law**")
        st.caption(wizard.policy_sentence(load_profile(str(pid)).get("consent_policy")))
        if not set(channels) & {"call", "sms"} or isinstance(result, DomainError):
            return
        state_rules_table(audience_states(), channels=channels, heading="Customers in states with their own rules")


@st.cache_data(ttl=300, show_spinner=False)
def load_call_minutes(profile: str) -> float | None:
    with db() as session:
        return launch.average_call_minutes(session, profile_id=uuid.UUID(profile))


def launch_checks(result: Preview) -> None:
    """The estimated cost, and a warning when nothing could go out for a while after the start."""
    profile = profile_object()
    campaign = testsend.unsaved_campaign(profile=profile, data=wizard.campaign_data(draft, status="draft"))
    campaign.holdout_percent = int(draft.get("holdout_percent") or 0)
    campaign.send_window = draft["send_window"]
    samples = [SampleCustomer(customer_name=s.get("customer_name"), customer_phone=s.get("customer_phone"),
                              customer_email=s.get("customer_email"), service_type=s.get("service_type"),
                              last_visit=testsend.last_visit(s.get("last_contact_at"))) for s in result.sample]
    try:
        cost = launch.estimate_cost(campaign=campaign, profile=profile, agent=agent_object(), settings=get_settings(),
                                    audience=result.count, samples=samples, call_minutes=load_call_minutes(str(pid)))
    except DomainError:
        cost = None  # unusable content: the errors above say where
    if cost is not None:
        st.markdown(f"**Estimated cost.** About {money(cost.total)} for {plural(cost.contacted, 'customer')} "
                    "contacted.")
        for line in cost.lines:
            st.caption(f"{CHANNEL_WORDS[line.channel]}: {line.messages:,} × {money(line.unit)} ({line.basis}) = "
                       f"{money(line.total)}")
        st.caption("An estimate at your prices (Settings → Business profile): every step is counted for every "
                   "customer, though later steps reach only those their condition lets through.")
    later = draft["start_mode"] == "later" and draft.get("scheduled_at")
    start = datetime.fromisoformat(draft["scheduled_at"]) if later else datetime.now(UTC)
    phones = [s.get("customer_phone") for s in result.sample] or [None]
    found = launch.first_send(start=start, campaign=campaign, phones=phones)
    waiting = launch.waiting_sentence(found, start=start, send_window=draft["send_window"],
                                      starting_now=not later)
    if waiting:
        st.warning(waiting, icon=":material/schedule:")


def ready_panel(result: Preview | DomainError) -> None:
    settings = get_settings()
    method = draft["outreach_method"]
    st.subheader("Ready to go", anchor=False)
    if isinstance(result, DomainError):
        st.error(sentence(result))
        count = 0
    else:
        count = result.count
        st.metric("Customers to reach", f"{count:,}")
        words = left_out_words(result)
        st.markdown(words.markdown())
        if words.no_contact:
            st.caption(words.no_contact)
        consent_link()
    estimate = wizard.estimate_duration(
        audience=count, outreach_method=method, steps=draft["steps"],
        rate_limit_per_minute=int(draft["rate_limit_per_minute"]),
        max_concurrent_calls=min(int(draft["max_concurrent_calls"]), settings.vapi_max_concurrent_calls),
        send_window=draft["send_window"],
        provider_per_minute={"email": settings.resend_max_per_second * 60,
                             "sms": settings.twilio_max_per_second * 60})
    st.markdown(f"**Estimated duration.** {estimate.sentence()}")
    if isinstance(result, Preview):
        launch_checks(result)
    later = draft["start_mode"] == "later" and draft.get("scheduled_at")
    if EDITING:
        if st.button("Schedule it" if later else "Save changes", type="primary", icon=":material/save:",
                     width="stretch", key="w_save_changes",
                     help="Keep it as a draft (or scheduled) with these changes; nothing is sent yet."):
            _save("scheduled" if later else "draft", start_now=False)
        if st.button("Save and start now", icon=":material/rocket_launch:", width="stretch", key="w_confirm"):
            _save("draft", start_now=True)
        return
    primary = "Schedule campaign" if later else "Start now"
    if st.button(primary, type="primary", icon=":material/rocket_launch:", width="stretch", key="w_confirm"):
        _save("scheduled" if later else "draft", start_now=not later)
    if st.button("Save as draft", icon=":material/save:", width="stretch", key="w_save_draft",
                 help="Keep it without sending anything; start it later from the campaign list."):
        _save("draft", start_now=False)
    st.caption("Starting selects the customers who match at that moment; a scheduled campaign selects them "
               "when its time comes.")


{1: step_basics, 2: step_audience, 3: step_channel, 4: step_content, 5: step_schedule, 6: step_review}[step]()

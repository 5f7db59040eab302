"""What every dashboard page shares: the engine, sessions, the signed-in
business, error display, cached reads and the little formatting helpers.

Not a page itself (``app.py`` only navigates to the files it lists).
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlparse
from zoneinfo import ZoneInfo

import pandas as pd
import phonenumbers
import streamlit as st
from sqlalchemy import Engine
from sqlalchemy.orm import Session
from streamlit.errors import StreamlitAPIException

from core import accounts, senders, signin, wizard
from core.config import get_settings
from core.db import make_engine, session_scope
from core.errors import DomainError, Invalid

T = TypeVar("T")

ROOT = Path(__file__).resolve().parent.parent
MAIN = ROOT / "app.py"
# absolute paths, so the pages resolve whichever script Streamlit was started with
PAGES = {
    "campaigns": ROOT / "pages" / "campaigns.py",
    "create": ROOT / "pages" / "create_campaign.py",
    "analytics": ROOT / "pages" / "analytics.py",
    "customers": ROOT / "pages" / "customers.py",
    "settings": ROOT / "pages" / "settings.py",
    "campaign": ROOT / "pages" / "campaign.py",
    "customer": ROOT / "pages" / "customer.py",
}
STATUS_COLORS = {"Draft": "#9CA3AF", "Scheduled": "#6366F1", "Running": "#16A34A", "Paused": "#F59E0B",
                 "Completed": "#0EA5E9", "Stopped": "#EF4444", "Always on": "#059669"}
RECIPIENT_COLORS = {"Waiting": "#9CA3AF", "Queued": "#6366F1", "Sent": "#0EA5E9", "Delivered": "#14B8A6",
                    "Answered": "#16A34A", "Failed": "#EF4444", "Opted out": "#F59E0B"}
BADGE_COLORS = {"draft": "gray", "scheduled": "violet", "active": "green", "paused": "orange",
                "completed": "blue", "cancelled": "red"}


@st.cache_resource(show_spinner=False)
def _engine(url: str) -> Engine:
    return make_engine(url)


def engine() -> Engine:
    """The process's one engine for ``DATABASE_URL``."""
    return _engine(get_settings().database_url)


@contextmanager
def db() -> Iterator[Session]:
    """A session whose transaction commits when the block succeeds."""
    with session_scope(engine()) as session:
        yield session


def profile_id() -> uuid.UUID:
    """The signed-in business (the frame guarantees someone is signed in)."""
    value = st.session_state.get("profile_id")
    if value is None:
        # Only reachable when Streamlit runs a page without the frame: its legacy routing of a pages/
        # folder does that for the first request after a server start, until app.py registers the
        # navigation.  Send the visitor through the sign-in, which then takes them where they were going.
        remember_destination()
        with contextlib.suppress(StreamlitAPIException):
            st.switch_page(MAIN)
        st.warning("Please sign in first.")
        st.stop()
    return uuid.UUID(str(value))


def blank_missing_text(frame: Any) -> Any:
    """The frame with missing values of its text columns as empty cells (a table shows "None" otherwise);
    dates and numbers keep their type, so they still sort."""
    text = [c for c in frame.columns if frame[c].dtype == object or pd.api.types.is_string_dtype(frame[c])]
    return frame.assign(**{c: frame[c].fillna("") for c in text}) if text else frame


def business_timezone() -> str:
    return str(st.session_state.get("timezone") or "UTC")


def sentence(exc: DomainError) -> str:
    """A domain error as a sentence a shop owner can act on."""
    if isinstance(exc, Invalid):
        # the field names are for programs; the page already says which thing is being edited
        return " ".join(_capital(e.message) for e in exc.errors)
    return _capital(exc.message)


def _capital(text: str) -> str:
    text = text.strip()
    if not text:
        return "Something went wrong."
    text = text[0].upper() + text[1:]
    return text if text.endswith((".", "!", "?", ")")) else text + "."


def attempt(action: Callable[[Session], T], *, success: str | None = None, remember: bool = False) -> T | None:
    """Run ``action`` in one transaction; a domain error is shown as a sentence and gives None.

    On success, cached reads are cleared (the data changed) and ``success`` is
    toasted.  With ``remember`` the outcome is shown on the next run instead,
    for callers that rerun the page right after.
    """
    try:
        with db() as session:
            result = action(session)
    except DomainError as exc:
        say("error", sentence(exc), remember=remember)
        return None
    clear_caches()
    if success:
        say("toast", success, remember=remember)
    return result


FLASH_KEY = "_flash"


def say(kind: str, text: str, *, remember: bool = False) -> None:
    """Show an outcome now (``error`` box or ``toast``), or keep it for the next run."""
    if remember:
        st.session_state.setdefault(FLASH_KEY, []).append((kind, text))
    elif kind == "error":
        st.error(text, icon=":material/error:")
    else:
        st.toast(text, icon=":material/check_circle:")


def show_outcome() -> None:
    """Show the outcomes kept by :func:`say` for this run (the frame calls it before every page)."""
    for kind, text in st.session_state.pop(FLASH_KEY, []):
        say(kind, text)


CONFIRM_KEY = "_confirm"


def ask(kind: str, **details: Any) -> None:
    """Open the confirmation dialog ``kind`` (it stays open across reruns until answered or dismissed)."""
    st.session_state[CONFIRM_KEY] = {"kind": kind, **details}


def asked(kind: str) -> dict[str, Any] | None:
    """The pending confirmation of ``kind``, if one is open."""
    pending = st.session_state.get(CONFIRM_KEY)
    return pending if isinstance(pending, dict) and pending.get("kind") == kind else None


def confirm_buttons(yes: str, action: Callable[[Session], T], *, success: str, no: str = "Keep it",
                    then: Callable[[T], None] | None = None, destructive: bool = False) -> None:
    """The two buttons of a confirmation dialog: ``yes`` runs ``action`` (as :func:`attempt` does, and
    ``then`` with its result when it worked), ``no`` closes the dialog; either way the page reruns.
    A ``destructive`` action (delete, stop for good) never gets the primary style: the safe answer does."""
    left, right = st.columns(2)
    if left.button(yes, type="secondary" if destructive else "primary", width="stretch"):
        answered()
        done = False

        def run(session: Session) -> T:
            nonlocal done
            result = action(session)
            done = True
            return result

        result = attempt(run, success=success, remember=True)
        if done and then is not None:
            then(result)  # type: ignore[arg-type]
        st.rerun()
    if right.button(no, width="stretch", type="primary" if destructive else "secondary"):
        answered()
        st.rerun()


def answered() -> None:
    """Close the pending confirmation (answered, cancelled or dismissed)."""
    st.session_state.pop(CONFIRM_KEY, None)


def clear_caches() -> None:
    """Forget cached tables after a write so the next read shows it."""
    st.cache_data.clear()


def local_time(value: datetime | None, *, with_time: bool = True) -> str:
    """A UTC time shown in the business's time zone."""
    if value is None:
        return "—"
    local = value.astimezone(ZoneInfo(business_timezone()))
    return local.strftime("%b %d, %Y %H:%M" if with_time else "%b %d, %Y")


def percent(value: float) -> str:
    """A share (0–1) as the dashboard writes every percentage: one decimal."""
    return f"{value:.1%}"


# the one printf format of a percentage column, whose values are percent (0–100, see ``as_percent``)
PERCENT_FORMAT = "%.1f%%"


def as_percent(frame: Any, *columns: str) -> Any:
    """The frame with shares (0–1) in ``columns`` turned into percent (0–100) for :data:`PERCENT_FORMAT`."""
    return frame.assign(**{c: frame[c].astype(float) * 100 for c in columns if c in frame.columns})


def percent_axis(top: float) -> dict[str, Any]:
    """Plotly axis settings for shares from 0 to ``top``: ticks on a 1-2-5 step that fits the range, with as
    many decimals as that step needs, so no two ticks read alike (never "0 %, 1 %, 1 %")."""
    top = max(float(top), 0.0001)
    raw = top / 4
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw * (1 - 1e-9))
    decimals = max(0, math.ceil(-math.log10(step * 100) - 1e-9))
    return {"tickformat": f".{decimals}%", "dtick": step, "range": [0, top * 1.15]}


def plural(count: int, one: str, many: str | None = None) -> str:
    """``1 customer``, ``2 customers``, ``1,200 customers``."""
    return f"{count:,} {one if count == 1 else (many or one + 's')}"


def format_phone(e164: str | None, region: str | None = None) -> str:
    """A stored E.164 number as people write it: national format in the business's own country,
    international otherwise (``(201) 555-0142``, ``+44 20 7946 0958``)."""
    if not isinstance(e164, str) or not e164:
        return ""  # a missing number (None, or NaN in a table column)
    try:
        number = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return e164
    home = (region or st.session_state.get("region") or "US").upper()
    same = phonenumbers.region_code_for_number(number) == home or (
        number.country_code == phonenumbers.country_code_for_region(home))
    fmt = phonenumbers.PhoneNumberFormat.NATIONAL if same else phonenumbers.PhoneNumberFormat.INTERNATIONAL
    return phonenumbers.format_number(number, fmt)


@st.cache_data(ttl=60, show_spinner=False)
def _channel_modes(profile: str) -> dict[str, str]:
    with db() as session:
        modes = senders.channel_modes(accounts.get_profile(session, profile_id=uuid.UUID(profile)), get_settings())
    return {channel: "live" if mode.live else "sandbox" for channel, mode in modes.items()}


def channel_modes() -> dict[str, str]:
    """``{"call"|"email"|"sms": "live"|"sandbox"}`` for the signed-in business (its own sender and credentials
    over the platform's), for the sidebar, the wizard and Settings."""
    return _channel_modes(str(profile_id()))


CONSENT_TAB = "Consent & do-not-call"  # the Customers page's tab of consents and the do-not-call list


def state_rules_table(by_state: dict[str, dict[str, Any]], *, channels: list[str], heading: str,
                      past: bool = False) -> None:
    """The states with their own rules for calls and texts among a campaign's customers (a table with their
    hours, limit and statute), or a sentence that there are none (the campaign page, the wizard's review)."""
    rows = wizard.state_rows(by_state, channels=channels)
    if not rows:
        st.caption(wizard.no_states_sentence(past=past))
        return
    st.markdown(f"**{heading}**")
    st.table(pd.DataFrame(rows, columns=wizard.STATE_COLUMNS), hide_index=True)
    st.caption(wizard.states_note())


def page_link(page: str, label: str, icon: str | None = None, **query: Any) -> None:
    """A link to one of the dashboard's pages (in-app navigation: the sign-in is kept)."""
    st.page_link(PAGES[page], label=label, icon=icon, query_params={k: str(v) for k, v in query.items()} or None)


def go(page: str, **query: Any) -> None:
    """Switch to one of the dashboard's pages, with query parameters (e.g. ``id``)."""
    st.switch_page(PAGES[page], query_params={k: str(v) for k, v in query.items()} or None)


DESTINATION_KEY = "_after_sign_in"


def remember_destination() -> None:
    """Keep the page and query (e.g. ``campaign?id=…``) this request asked for, for after the sign-in."""
    stem = urlparse(st.context.url or "").path.rstrip("/").rsplit("/", 1)[-1]
    page = next((key for key, path in PAGES.items() if path.stem == stem), None)
    if page is not None:
        st.session_state[DESTINATION_KEY] = (page, {k: str(v) for k, v in st.query_params.items()})


def go_to_destination() -> None:
    """After the sign-in: go to the page a deep link asked for, if one was remembered."""
    destination = st.session_state.pop(DESTINATION_KEY, None)
    if destination is not None:
        page, query = destination
        go(page, **query)


def query_id() -> uuid.UUID | None:
    """The ``?id=`` of the current page, when it is a valid id."""
    raw = st.query_params.get("id")
    if not raw:
        return None
    try:
        return uuid.UUID(str(raw))
    except ValueError:
        return None


def pick(label: str, options: list[str], *, key: str, format_func: Callable[[str], str],
         clicked_rows: list[int] | None = None, help: str | None = None) -> str:
    """A choice among the rows of the table above (ids), following a click in that table.

    The widget's key carries the set of options, so a new page or filter starts
    from its first row instead of keeping a choice that is no longer listed.
    """
    widget_key = f"{key}_{hashlib.sha1('|'.join(options).encode()).hexdigest()[:10]}"
    if clicked_rows:
        clicked = options[clicked_rows[0]]
        if st.session_state.get(f"_{key}_clicked") != clicked:
            st.session_state[f"_{key}_clicked"] = st.session_state[widget_key] = clicked
    choice = st.selectbox(label, options, format_func=format_func, key=widget_key, help=help)
    return choice if choice is not None else options[0]


def page_offset(key: str, page_size: int, filters: tuple[Any, ...]) -> int:
    """The offset of the page the pager ``key`` shows; back to the first page when ``filters`` change."""
    signature = repr(filters)
    if st.session_state.get(f"_{key}_filters") != signature:
        st.session_state[f"_{key}_filters"] = signature
        st.session_state[key] = 1
    return (int(st.session_state.get(key, 1)) - 1) * page_size


def past_the_end(rows: int, total: int, *, key: str, page_size: int) -> None:
    """When rows vanished under the current page (deleted meanwhile), show the last page instead."""
    if rows == 0 and total > 0 and int(st.session_state.get(key, 1)) > 1:
        st.session_state[key] = max(1, -(-total // page_size))
        st.rerun()


def pager(total: int, *, key: str, page_size: int) -> int:
    """A page picker under a server-paged table; returns the offset to read."""
    pages = max(1, -(-total // page_size))
    if st.session_state.get(key, 1) > pages:
        st.session_state[key] = pages
    if pages == 1:
        return 0
    left, right = st.columns([1, 3], vertical_alignment="center")
    page = left.number_input("Page", min_value=1, max_value=pages, step=1, key=key)
    first = (int(page) - 1) * page_size
    right.caption(f"Showing {first + 1:,}–{min(first + page_size, total):,} of {total:,}")
    return first


# --- the browser's session (DESIGN §14: a reload or a pasted link keeps the sign-in) ----------------------

SESSION_COOKIE = "connext_session"
FORGET_COOKIE_KEY = "_forget_session_cookie"


def client_address() -> str | None:
    """The browser's address as the server sees it (``None`` on localhost or when unknown)."""
    address = st.context.ip_address
    return address if isinstance(address, str) else None


def remember_sign_in(signed: signin.SignedIn, token: str | None = None) -> None:
    """Put who is signed in into this browser tab's state (and the token its cookie keeps)."""
    st.session_state.update(profile_id=str(signed.profile_id), user_email=signed.email,
                            business_name=signed.business_name, timezone=signed.timezone, region=signed.region,
                            _session_id=str(signed.session_id), _session_expires=signed.expires_at.timestamp())
    if token is not None:
        st.session_state["_session_token"] = token


def forget_sign_in() -> None:
    """Everything this browser tab kept (drafts, a new API key, answers) belongs to the one leaving."""
    for key in list(st.session_state.keys()):
        del st.session_state[key]


def restore_session() -> bool:
    """Whether this run is signed in: by this tab's state while its session is still open, else by the
    browser's session cookie (a reload, a pasted link, a new tab).  A forged, expired or revoked cookie
    signs nobody in, and the browser is told to drop it."""
    session_id = st.session_state.get("_session_id")
    if st.session_state.get("profile_id") is not None:
        if session_id is None:
            return True  # signed in by the tests' harness, without a browser session
        with db() as session:
            alive = signin.session_alive(session, session_id=uuid.UUID(str(session_id)))
        if alive is not None:
            return True
        forget_sign_in()  # signed out in another tab, or the session ran out
        st.session_state[FORGET_COOKIE_KEY] = True
        return False
    token = st.context.cookies.get(SESSION_COOKIE)
    if not token:
        return False
    with db() as session:
        signed = signin.resume_session(session, token=token)
    if signed is None:
        st.session_state[FORGET_COOKIE_KEY] = True
        return False
    remember_sign_in(signed, token)
    return True


def _cookie_script(value: str, max_age: int) -> str:
    # set from the page: Streamlit has no response to put a Set-Cookie header on
    return ("<script>(function(){var secure = location.protocol === 'https:' ? '; Secure' : '';"
            f"document.cookie = '{SESSION_COOKIE}={value}; Max-Age={max_age}; Path=/; SameSite=Strict' + secure;"
            "})();</script>")


def keep_session_cookie() -> None:
    """Give the browser (again) the cookie of this tab's session, living as long as the session."""
    token = st.session_state.get("_session_token")
    expires = st.session_state.get("_session_expires")
    if not token or expires is None:
        return
    left = int(float(expires) - datetime.now(UTC).timestamp())
    if left > 0:
        st.html(_cookie_script(str(token), left), unsafe_allow_javascript=True, width="content")


def drop_session_cookie() -> None:
    """After a sign-out (or a cookie that signs nobody in): the browser forgets the cookie."""
    if st.session_state.pop(FORGET_COOKIE_KEY, False):
        st.html(_cookie_script("", 0), unsafe_allow_javascript=True, width="content")

"""Fixtures of the dashboard tests: the real app (``app.py``) in Streamlit's
AppTest, pointed at the parametrized test database through ``DATABASE_URL``."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
import streamlit as st
from sqlalchemy import Engine
from sqlalchemy.orm import Session
from streamlit.testing.v1 import AppTest

from core import accounts
from core.config import get_settings
from core.db import get_engine

ENTRY = Path(__file__).with_name("entry.py")
PASSWORD = "correct horse battery"
PROVIDER_VARIABLES = ("VAPI_API_KEY", "RESEND_API_KEY", "RESEND_FROM", "TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN",
                      "TWILIO_FROM_NUMBER", "TWILIO_MESSAGING_SERVICE_SID")
T = TypeVar("T")


@pytest.fixture(autouse=True)
def _keep_main_module() -> Iterator[None]:
    """Streamlit installs each script it runs as ``sys.modules["__main__"]`` and leaves it there; a later
    test in this process that starts ``multiprocessing`` workers (spawn) would re-run the app in them."""
    main = sys.modules.get("__main__")
    yield
    if main is not None:
        sys.modules["__main__"] = main


@pytest.fixture
def app_db(db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The test database as the dashboard's ``DATABASE_URL``, every channel in sandbox mode."""
    monkeypatch.setenv("DATABASE_URL", db_url)
    # with a database server every process needs the one SECRET_KEY (DESIGN §13)
    monkeypatch.setenv("SECRET_KEY", "dashboard-tests")
    for name in PROVIDER_VARIABLES:
        monkeypatch.setenv(name, "")
    get_settings.cache_clear()
    get_engine.cache_clear()
    yield db_url
    get_settings.cache_clear()
    get_engine.cache_clear()


@dataclass
class Shop:
    """A business with an owner login, as the dashboard sees it."""

    profile_id: uuid.UUID
    email: str
    business_name: str
    timezone: str = "America/New_York"


@pytest.fixture
def shop(app_db: str, session: Session) -> Shop:
    email = f"owner-{uuid.uuid4().hex[:8]}@bellavista.example"
    profile, _key, _ = accounts.create_profile(session, business_name="Bella Vista Salon", email=email,
                                               password=PASSWORD, phone="+12015550100")
    profile.consent_policy = "none"  # the business vouches for consent; the consent rules have tests of their own
    session.commit()
    return Shop(profile.id, email, profile.business_name)


def open_app(shop: Shop | None = None, page: str | None = None, query: dict[str, str] | None = None,
             timeout: float = 30) -> AppTest:
    """The dashboard, signed in as ``shop`` (without the form) and on ``page`` (a file of ``pages/``)."""
    # st.cache_data outlives an AppTest; the test just wrote behind the app's back, as the scheduler would
    st.cache_data.clear()
    at = AppTest.from_file(str(ENTRY), default_timeout=timeout)
    if shop is not None:
        at.session_state["profile_id"] = str(shop.profile_id)
        at.session_state["user_email"] = shop.email
        at.session_state["business_name"] = shop.business_name
        at.session_state["timezone"] = shop.timezone
    at.run()
    if page is not None:
        at.switch_page(f"../../pages/{page}.py")
        if query:
            at.query_params.update(query)
        at.run()
    assert_clean(at)
    return at


def assert_clean(at: AppTest) -> None:
    """No exception reached the page."""
    assert not at.exception, [e.value for e in at.exception]


def read(engine: Engine, fn: Callable[[Session], T]) -> T:
    """Read the database in a short session of its own (so the test holds no lock while the app writes)."""
    with Session(engine, expire_on_commit=False) as s:
        return fn(s)


def button(at: AppTest, label: str) -> Any:
    """The one button with this label."""
    found = [b for b in at.button if b.label == label]
    assert len(found) == 1, f"{len(found)} buttons labelled {label!r}: {[b.label for b in at.button]}"
    return found[0]


def texts(at: AppTest) -> str:
    """Everything the page says in markdown, captions, alerts and titles (for 'it says …' checks)."""
    parts: list[str] = []
    for kind in ("title", "header", "subheader", "markdown", "caption", "error", "warning", "info", "success"):
        parts += [str(e.value) for e in getattr(at, kind)]
    return "\n".join(parts)


def selectbox(at: AppTest, label: str) -> Any:
    """The one selectbox with this label."""
    found = [s for s in at.selectbox if s.label == label]
    assert len(found) == 1, f"{len(found)} selectboxes labelled {label!r}"
    return found[0]

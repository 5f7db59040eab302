"""Fixtures of the browser tests: the real dashboard (``streamlit run app.py``)
on a free port over a scratch, seeded SQLite database, and Debian's Chromium
driven by Playwright.

Locally the tests skip when ``/usr/bin/chromium`` is missing; with ``CI=true``
a missing browser is a failure.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine, select

from core import campaigns, demo, migrate
from core.config import Settings
from core.db import make_engine, session_factory, session_scope, utcnow
from core.events import process_due_events
from core.models import Campaign
from core.scheduling import tick
from core.schemas import DAYS

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "browser"
CHROMIUM = Path("/usr/bin/chromium")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
PROVIDER_VARIABLES = ("VAPI_API_KEY", "RESEND_API_KEY", "RESEND_FROM", "TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN",
                      "TWILIO_FROM_NUMBER", "TWILIO_MESSAGING_SERVICE_SID")


def run_demo_campaign(engine: Engine, url: str) -> None:
    """Start the demo's e-mail campaign and let the real scheduler code send it in sandbox mode (fast-forwarded),
    so the campaign page and the charts have something to show."""
    with session_scope(engine) as session:
        c = session.scalars(select(Campaign).where(Campaign.name == "Win back dormant regulars")).one()
        campaigns.update_campaign(session, profile_id=c.profile_id, campaign_id=c.id, data={
            "rate_limit_per_minute": 10000,
            "send_window": {"start": "00:00", "end": "24:00", "days": list(DAYS)}})
        campaigns.start_campaign(session, profile_id=c.profile_id, campaign_id=c.id)
    settings = Settings(_env_file=None, database_url=url, resend_max_per_second=1000,  # type: ignore[call-arg]
                        sandbox_speed=1000)
    factory = session_factory(engine)
    for _ in range(3):
        tick(factory, worker="browser-test", settings=settings)
    process_due_events(factory, now=utcnow() + timedelta(hours=2))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def chromium_path() -> Path:
    if not CHROMIUM.exists():
        if IN_CI:
            pytest.fail(f"the browser tests need Chromium at {CHROMIUM} in CI")
        pytest.skip(f"Chromium is not installed at {CHROMIUM} (apt-get install chromium); set CI=true to require it")
    return CHROMIUM


def _serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """``streamlit run app.py`` over a migrated, seeded SQLite database: (its URL, the database's URL)."""
    folder = tmp_path_factory.mktemp("dashboard")
    url = f"sqlite:///{folder / 'dashboard.db'}"
    migrate.upgrade(url)
    engine = make_engine(url)
    with session_scope(engine) as session:
        demo.seed_demo(session)
    run_demo_campaign(engine, url)
    engine.dispose()
    port = _free_port()
    env = {**os.environ, "DATABASE_URL": url, "SECRET_KEY": "browser-test-secret", **dict.fromkeys(
        PROVIDER_VARIABLES, "")}
    log = (folder / "streamlit.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false",
         "--server.fileWatcherType", "none"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/_stcore/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                log.flush()
                raise RuntimeError("the dashboard did not start:\n" + (folder / "streamlit.log").read_text())
            time.sleep(0.3)
        yield base, url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
        log.close()


@pytest.fixture(scope="session")
def dashboard(tmp_path_factory: pytest.TempPathFactory, chromium_path: Path) -> Iterator[str]:
    """The dashboard's URL (one server for the whole run)."""
    for base, _ in _serve(tmp_path_factory):
        yield base


@pytest.fixture
def cold_dashboard(tmp_path_factory: pytest.TempPathFactory, chromium_path: Path) -> Iterator[tuple[str, str]]:
    """A dashboard server nobody has visited yet, and its database's URL."""
    yield from _serve(tmp_path_factory)


@pytest.fixture(scope="session")
def browser(chromium_path: Path) -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(chromium_path), headless=True, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--disable-background-networking"])
        yield b
        b.close()


@pytest.fixture
def page(browser: object) -> Iterator[object]:
    context = browser.new_context(viewport={"width": 1440, "height": 1000}, locale="en-US",  # type: ignore[attr-defined]
                                  timezone_id="America/New_York")
    pg = context.new_page()
    pg.set_default_timeout(20_000)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    yield pg
    # what the browser showed last, for a failed run
    pg.screenshot(path=str(ARTIFACTS / "last.png"), full_page=True)
    context.close()

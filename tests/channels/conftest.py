"""Fixtures of the live-channel tests: the fake Vapi, Twilio and Resend servers, the API
app over the parametrized test database with settings pointing at the fakes, and a
poster that delivers the fakes' webhooks to that app."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import api  # noqa: E402
from tests.channels import helpers  # noqa: E402

# the dashboard's fixtures (its database as DATABASE_URL, a business with a login), for test_dashboard.py
from tests.dashboard.conftest import _keep_main_module, app_db, shop  # noqa: E402, F401
from tests.fakes.resend import FakeResend  # noqa: E402
from tests.fakes.twilio import FakeTwilio  # noqa: E402
from tests.fakes.vapi import FakeVapi  # noqa: E402


@pytest.fixture
def factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@pytest.fixture
def fake_vapi() -> Iterator[FakeVapi]:
    with FakeVapi(webhook_secret=helpers.VAPI_SECRET, server_url=f"{helpers.PUBLIC}/webhooks/vapi") as fake:
        yield fake


@pytest.fixture
def fake_twilio() -> Iterator[FakeTwilio]:
    with FakeTwilio(inbound_url=f"{helpers.PUBLIC}/webhooks/twilio/inbound") as fake:
        yield fake


@pytest.fixture
def fake_resend() -> Iterator[FakeResend]:
    with FakeResend(webhook_url=f"{helpers.PUBLIC}/webhooks/resend") as fake:
        yield fake


@pytest.fixture
def live(fake_vapi: FakeVapi, fake_twilio: FakeTwilio, fake_resend: FakeResend):  # type: ignore[no-untyped-def]
    """Settings with every channel live against its fake."""
    return helpers.live_settings(vapi=fake_vapi, twilio=fake_twilio, resend=fake_resend)


@pytest.fixture
def client(engine: Engine, live) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    """The API on the test database, configured like production behind a proxy at PUBLIC_BASE_URL."""
    with TestClient(api.create_app(engine=engine, settings=live), base_url="http://api.internal:8000",
                    raise_server_exceptions=True, follow_redirects=False) as c:
        yield c


@pytest.fixture
def post(client: TestClient) -> helpers.Post:
    """Delivers a provider's webhook (url under PUBLIC_BASE_URL) to the app, as the proxy would."""
    return helpers.poster(client)

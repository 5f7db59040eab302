"""Fixtures of the REST API tests: the real app over the parametrized test database."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session

sys.path.insert(0, str(Path(__file__).resolve().parent))
ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from api_helpers import Tenant, make_tenant  # noqa: E402

import api  # noqa: E402


@pytest.fixture
def app(engine: Engine) -> FastAPI:
    return api.create_app(engine=engine)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    # server exceptions are raised into the test: no test may ever see a 500
    with TestClient(app, raise_server_exceptions=True) as c:
        yield c


@pytest.fixture
def tenant(session: Session) -> Tenant:
    """The business whose objects the tests work on."""
    return make_tenant(session, name="Bella Vista")


@pytest.fixture
def other(session: Session) -> Tenant:
    """A second business, which must never see or touch the first one's objects."""
    return make_tenant(session, name="Studio Nine", area="415")

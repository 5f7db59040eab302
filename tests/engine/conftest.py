"""Fixtures of the engine tests: a session factory over the parametrized test database,
sandbox settings, and the fake Resend server."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.engine import helpers  # noqa: E402
from tests.fakes.resend import FakeResend  # noqa: E402


@pytest.fixture
def factory(engine: Engine) -> sessionmaker[Session]:
    return helpers.factory(engine)


@pytest.fixture
def fake_resend() -> Iterator[FakeResend]:
    with FakeResend() as fake:
        yield fake

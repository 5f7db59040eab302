"""Test fixtures: every database test runs on SQLite and on PostgreSQL.

``db_url``/``engine``/``session`` are parametrized over both backends.  SQLite
gets a fresh copy of a migrated template file per test; PostgreSQL gets one
scratch database per test process (migrated once, emptied between tests).
PostgreSQL is ``TEST_DATABASE_URL`` (default
``postgresql+psycopg://postgres@127.0.0.1:5432/test``); when it is unreachable
its tests are skipped, except with ``CI=true``, where that is a failure.

With ``TEST_POOLER=pgbouncer`` (``make test``'s second run, see :mod:`tests.pooler`) only
the PostgreSQL tests run, through a PgBouncer in transaction mode that the session starts
itself; the database is migrated over the direct connection, as on Supabase.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from core import migrate
from core.config import get_settings
from core.db import make_engine
from core.models import metadata

# generation speed depends on machine load, not on the code under test
hypothesis_settings.register_profile("default", deadline=None, suppress_health_check=[HealthCheck.too_slow])
hypothesis_settings.load_profile("default")

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
POOLED = os.environ.get("TEST_POOLER", "").lower() == "pgbouncer"
if POOLED:  # every engine the tests and the product make goes through the pooler as in production
    os.environ["DATABASE_POOLER"] = "true"
    get_settings.cache_clear()
BACKENDS = ("postgresql",) if POOLED else ("sqlite", "postgresql")


def _worker() -> str:
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite") / "template.db"
    migrate.upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def pg_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str | None]:
    """URL of a migrated scratch PostgreSQL database for this test process (or None); through
    PgBouncer when the run is pooled."""
    server = make_url(get_settings().test_database_url)
    try:
        admin = create_engine(server, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
        with admin.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        if IN_CI:
            pytest.fail(f"PostgreSQL is required in CI but {server.render_as_string()} is unreachable: {exc}")
        yield None
        return
    name = f"connext_test_{_worker()}_{os.getpid()}"
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = server.set(database=name).render_as_string(hide_password=False)
    migrate.upgrade(url)
    if POOLED:
        from tests.pooler.pgbouncer import running_pgbouncer

        with running_pgbouncer(server, tmp_path_factory.mktemp("pgbouncer")) as bouncer:
            yield bouncer.url(server.set(database=name)).render_as_string(hide_password=False)
    else:
        yield url
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def pg_engine(pg_url: str | None) -> Iterator[Engine | None]:
    if pg_url is None:
        yield None
        return
    engine = make_engine(pg_url)
    yield engine
    engine.dispose()


def _truncate(engine: Engine) -> None:
    tables = ", ".join(t.name for t in metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} CASCADE"))


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path,
           pg_url: str | None, pg_engine: Engine | None) -> Iterator[str]:
    """A freshly migrated, empty database on each backend."""
    if request.param == "sqlite":
        path = tmp_path / "test.db"
        shutil.copyfile(sqlite_template, path)
        yield f"sqlite:///{path}"
        return
    if pg_url is None or pg_engine is None:
        pytest.skip("PostgreSQL is not reachable (TEST_DATABASE_URL); set CI=true to make this an error")
    _truncate(pg_engine)
    yield pg_url


@pytest.fixture
def backend(db_url: str) -> str:
    return make_url(db_url).get_backend_name()


@pytest.fixture
def engine(db_url: str, pg_engine: Engine | None) -> Iterator[Engine]:
    if db_url.startswith("postgresql") and pg_engine is not None:
        yield pg_engine
        return
    eng = make_engine(db_url)
    yield eng
    eng.dispose()


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    """A session on the test database; tests commit (or not) as the code under test would."""
    with Session(engine, expire_on_commit=False) as s:
        yield s
        s.rollback()


NOW = datetime(2026, 6, 15, 15, 0, tzinfo=UTC)


@pytest.fixture
def now() -> datetime:
    """A fixed 'now' (a Monday, 11:00 in New York) for tests that inject the clock."""
    return NOW


def new_id() -> uuid.UUID:
    return uuid.uuid4()

"""PgBouncer in transaction mode really is the hazard Supabase's pooler is, and the product's engine
(``DATABASE_POOLER=true``) gets through it: proof that the pooled run of the suite can fail."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from core.claims import claim_due
from core.config import get_settings
from core.db import make_engine
from tests.conftest import POOLED
from tests.engine import helpers as h
from tests.pooler.pgbouncer import running_pgbouncer


@pytest.fixture
def server(pg_url: str | None) -> URL:
    """The test database on the PostgreSQL server itself (behind the session's PgBouncer in the pooled run)."""
    if pg_url is None:
        pytest.skip("PostgreSQL is not reachable (TEST_DATABASE_URL); set CI=true to make this an error")
    direct = make_url(get_settings().test_database_url)
    return make_url(pg_url).set(host=direct.host, port=direct.port)


@pytest.fixture
def pooled_url(server: URL, tmp_path: Path) -> Iterator[str]:
    """The test database through a PgBouncer of this test's own, with one server connection."""
    with running_pgbouncer(server, tmp_path / "pgbouncer", pool_size=1) as bouncer:
        yield bouncer.url(server).render_as_string(hide_password=False)


def _two_clients(engine: Engine, times: int = 6) -> None:
    """Two connections of one process run the same statement in turn, each in short transactions; behind
    the pooler both land on its one server connection, as clients share them on a busy pooler."""
    stmt = text("SELECT count(*) FROM profiles WHERE business_name <> :n")
    with engine.connect() as first, engine.connect() as second:
        for conn in (first, second):
            for i in range(times):
                with conn.begin():
                    conn.execute(stmt, {"n": str(i)})


def test_prepared_statements_break_through_the_pooler(pooled_url: str) -> None:
    """psycopg's default (prepare a statement on its fifth run, as ``_pg3_0``) fails once two clients share
    a server connection: the failure the pooled run of the suite guards against."""
    engine = make_engine(pooled_url, pooler=False, pool_size=2)
    try:
        with pytest.raises(DBAPIError) as caught:
            _two_clients(engine)
        assert isinstance(caught.value.orig, psycopg.errors.DuplicatePreparedStatement), caught.value.orig
    finally:
        engine.dispose()


def test_the_products_engine_gets_through(pooled_url: str) -> None:
    engine = make_engine(pooled_url, pooler=True, pool_size=2)
    try:
        _two_clients(engine)
    finally:
        engine.dispose()


def test_skip_locked_claims_work_through_the_pooler(server: URL, pg_engine: Engine, tmp_path: Path, now) -> None:
    """Two transactions open at once, on two server connections: each claims its own recipients."""
    with Session(pg_engine, expire_on_commit=False) as session:
        profile = h.business(session)
        h.add_leads(session, profile, h.emails(10), now=now)
        cid = h.campaign(session, profile, now=now)
        session.commit()
    later = now + timedelta(days=1)
    with running_pgbouncer(server, tmp_path / "pgbouncer", pool_size=2) as bouncer:
        engine = make_engine(bouncer.url(server), pooler=True, pool_size=2)
        try:
            with Session(engine) as one, one.begin(), Session(engine) as two, two.begin():
                first = claim_due(one, campaign_id=cid, worker="one", now=later, lease=timedelta(minutes=2), limit=6)
                second = claim_due(two, campaign_id=cid, worker="two", now=later, lease=timedelta(minutes=2),
                                   limit=6)
            assert len(first) == 6 and len(second) == 4
            assert not {c.id for c in first} & {c.id for c in second}
        finally:
            engine.dispose()


def test_the_tests_engine_is_the_one_the_run_says(pg_engine: Engine | None) -> None:
    """The pooled run goes through PgBouncer with nothing prepared on the server; the plain run does not."""
    if pg_engine is None:
        pytest.skip("PostgreSQL is not reachable (TEST_DATABASE_URL); set CI=true to make this an error")
    direct = make_url(get_settings().test_database_url)
    with pg_engine.connect() as conn:
        threshold = conn.connection.dbapi_connection.prepare_threshold  # type: ignore[union-attr]
        assert conn.execute(text("SELECT 1")).scalar() == 1
    if POOLED:
        assert pg_engine.url.port != (direct.port or 5432) and threshold is None
    else:
        assert pg_engine.url.port == (direct.port or 5432) and threshold is not None

"""The migrations build exactly the models' schema, and go down and up again."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from core import migrate
from core.db import make_engine
from core.models import metadata


def test_schema_matches_models_and_downgrades(db_url):
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), metadata)
        assert diff == []
        from alembic import command

        config = migrate.alembic_config(db_url)
        command.downgrade(config, "base")
        assert migrate.current_revision(engine) is None
        command.upgrade(config, "head")
        with engine.connect() as conn:
            assert compare_metadata(MigrationContext.configure(conn), metadata) == []
    finally:
        engine.dispose()

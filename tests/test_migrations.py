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


def test_customers_are_back_filled_from_the_leads_a_previous_version_stored(db_url):
    """A database made by the previous migration, with leads in it: after the upgrade every customer
    has one row, equal to a from-scratch aggregation of their leads, and recipients point at it."""
    import uuid
    from datetime import UTC, datetime, timedelta

    from alembic import command
    from sqlalchemy import text

    engine = make_engine(db_url)
    config = migrate.alembic_config(db_url)
    try:
        command.downgrade(config, "0004_leads_drop_created_at_index")
        pid, agent, cid = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        t0 = datetime(2026, 1, 1, tzinfo=UTC)
        sqlite = engine.dialect.name == "sqlite"

        def val(v):
            if isinstance(v, uuid.UUID):
                return v.hex if sqlite else v
            if isinstance(v, datetime):
                return v.replace(tzinfo=None).isoformat(sep=" ") if sqlite else v
            return v

        def insert(conn, table, **row):
            cols = ", ".join(row)
            conn.execute(text(f"INSERT INTO {table} ({cols}) VALUES ({', '.join(':' + k for k in row)})"),
                         {k: val(v) for k, v in row.items()})

        with engine.begin() as conn:
            insert(conn, "profiles", id=pid, business_name="Old Shop", email="o@shop.example",
                   timezone="America/New_York", default_region="US", created_at=t0, updated_at=t0)
            insert(conn, "agents", id=agent, profile_id=pid, name="Front desk", created_at=t0, updated_at=t0)
            leads = [  # (key, name, phone, email, status, service, days)
                ("+13055550101", "Ana Diaz", "+13055550101", None, "Closed", "Color", 0),
                ("+13055550101", None, "+13055550101", "ana@x.example", "New", "Haircut", 30),
                ("+13055550101", "Ana D.", "+13055550101", None, "Contacted", "Color", 10),
                ("bo@x.example", "Bo", None, "bo@x.example", "New", None, 5),
            ]
            for key, name, phone, email, status, service, days in leads:
                insert(conn, "leads", id=uuid.uuid4(), profile_id=pid, agent_id=agent, contact_key=key,
                       customer_name=name, customer_phone=phone, customer_email=email, status=status,
                       service_type=service, structured_data="{}", extra="{}", source="import",
                       created_at=t0 + timedelta(days=days), updated_at=t0)
            insert(conn, "campaigns", id=cid, profile_id=pid, name="C", campaign_type="winback",
                   outreach_method="email", status="draft", target_criteria="{}", variables="{}",
                   timezone="UTC", send_window="{}", rate_limit_per_minute=30, max_concurrent_calls=3,
                   max_attempts=3, attribution_days=14, variants="[]", steps="[]", created_at=t0, updated_at=t0)
            insert(conn, "campaign_recipients", id=uuid.uuid4(), campaign_id=cid, profile_id=pid,
                   contact_key="bo@x.example", customer_email="bo@x.example", status="pending", step=0,
                   attempts=0, converted=False, response_data="{}", created_at=t0, updated_at=t0)
        command.upgrade(config, "head")
        with engine.connect() as conn:
            rows = {r.contact_key: r for r in conn.execute(text(
                "SELECT contact_key, customer_name, customer_phone, customer_email, first_contact_at, "
                "last_contact_at, last_status, last_service_type, lead_count, service_types, timezone "
                "FROM customers"))}
            linked = conn.execute(text("SELECT c.contact_key FROM campaign_recipients r "
                                       "JOIN customers c ON c.id = r.customer_id")).scalars().all()
        assert set(rows) == {"+13055550101", "bo@x.example"}
        ana = rows["+13055550101"]
        assert ana.customer_name == "Ana D."  # the newest name known (the newest lead has none)
        assert ana.customer_email == "ana@x.example"
        assert (ana.last_status, ana.last_service_type, ana.lead_count) == ("New", "Haircut", 3)
        services = ana.service_types if isinstance(ana.service_types, list) else __import__("json").loads(
            ana.service_types)
        assert sorted(services) == ["Color", "Haircut"]
        assert ana.timezone == "America/New_York"
        assert rows["bo@x.example"].lead_count == 1 and rows["bo@x.example"].timezone is None
        assert linked == ["bo@x.example"]
    finally:
        command.upgrade(config, "head")
        engine.dispose()

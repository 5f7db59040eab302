"""second round: customers, consents, do-not-call, holdout and always-on campaigns, outcome-driven
steps, per-business senders and credentials, an event outbox, dashboard sessions and sign-in throttling

- ``customers``: one row per profile and contact key, back-filled here from the leads (the
  re-engagement score is computed by the scheduler at start and daily);
- lead statuses become the business's own words (1–50 characters): the check constraint goes;
- recipients: ``holdout`` status, the customer they are, enrolment number (always-on campaigns may
  enrol a customer again), A/B group, best-time plan, last call outcome, when the customer returned;
- campaigns: holdout, always-on, best time, auto-pause, A/B test-then-winner, selection report;
- profiles: consent policy, sender identity, prices, encrypted provider credentials;
- attempts: cost, and when a try was handed to a provider that cannot be asked afterwards; rate limits: the permits of the last minute (a ceiling over any sliding 60 s);
- consents, dnc_numbers, webhook_endpoints/events/deliveries, login_attempts, dashboard_sessions.

Revision ID: 0005_second_round
Revises: 0004_leads_drop_created_at_index
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import phonenumbers
import sqlalchemy as sa
from alembic import op
from phonenumbers import timezone as phone_timezone
from sqlalchemy.dialects import postgresql

import core.db

revision: str = "0005_second_round"
down_revision: str | None = "0004_leads_drop_created_at_index"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
UTC = core.db.UTCDateTime(timezone=True)
RECIPIENT_STATUSES_OLD = "('pending', 'queued', 'sent', 'delivered', 'answered', 'failed', 'opted_out')"
RECIPIENT_STATUSES = "('pending', 'queued', 'sent', 'delivered', 'answered', 'failed', 'opted_out', 'holdout')"


def _new_tables() -> None:
    op.create_table(
        "customers",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("profile_id", sa.Uuid(), nullable=False),
        sa.Column("contact_key", sa.String(length=320), nullable=False),
        sa.Column("customer_name", sa.String(length=200), nullable=True),
        sa.Column("customer_phone", sa.String(length=32), nullable=True),
        sa.Column("customer_email", sa.String(length=320), nullable=True),
        sa.Column("first_contact_at", UTC, nullable=False),
        sa.Column("last_contact_at", UTC, nullable=False),
        sa.Column("last_status", sa.String(length=50), nullable=False),
        sa.Column("last_agent_id", sa.Uuid(), nullable=True),
        sa.Column("last_service_type", sa.String(length=100), nullable=True),
        sa.Column("last_lead_id", sa.Uuid(), nullable=True),
        sa.Column("lead_count", sa.Integer(), nullable=False),
        sa.Column("service_types", JSON, nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=True),
        sa.Column("score", sa.Integer(), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("updated_at", UTC, nullable=False),
        sa.ForeignKeyConstraint(["last_agent_id"], ["agents.id"], name=op.f("fk_customers_last_agent_id_agents"),
                                ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["profile_id"], ["profiles.id"], name=op.f("fk_customers_profile_id_profiles"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customers")),
        sa.UniqueConstraint("profile_id", "contact_key", name=op.f("uq_customers_profile_id_contact_key")),
    )
    op.create_index(op.f("ix_customers_profile_id_last_contact_at"), "customers", ["profile_id", "last_contact_at"])

    op.create_table(
        "consents",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("profile_id", sa.Uuid(), nullable=False),
        sa.Column("contact", sa.String(length=320), nullable=False),
        sa.Column("channel", sa.String(length=8), nullable=False),
        sa.Column("level", sa.String(length=16), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("proof", sa.Text(), nullable=True),
        sa.Column("captured_at", UTC, nullable=False),
        sa.Column("revoked_at", UTC, nullable=True),
        sa.Column("created_at", UTC, nullable=False),
        sa.CheckConstraint("channel IN ('call', 'sms', 'email', 'all')", name=op.f("ck_consents_channel")),
        sa.CheckConstraint("level IN ('express', 'express_written')", name=op.f("ck_consents_level")),
        sa.CheckConstraint("source IN ('import', 'web_form', 'call', 'manual', 'api')",
                           name=op.f("ck_consents_source")),
        sa.ForeignKeyConstraint(["profile_id"], ["profiles.id"], name=op.f("fk_consents_profile_id_profiles"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_consents")),
    )
    op.create_index(op.f("ix_consents_profile_id_contact"), "consents", ["profile_id", "contact"])

    op.create_table(
        "dnc_numbers",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("profile_id", sa.Uuid(), nullable=False),
        sa.Column("number", sa.String(length=32), nullable=False),
        sa.Column("source", sa.String(length=20), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.CheckConstraint("source IN ('national_registry', 'internal')", name=op.f("ck_dnc_numbers_source")),
        sa.ForeignKeyConstraint(["profile_id"], ["profiles.id"], name=op.f("fk_dnc_numbers_profile_id_profiles"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dnc_numbers")),
        sa.UniqueConstraint("profile_id", "number", name=op.f("uq_dnc_numbers_profile_id_number")),
    )

    op.create_table(
        "webhook_endpoints",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("profile_id", sa.Uuid(), nullable=False),
        sa.Column("url", sa.String(length=2000), nullable=False),
        sa.Column("events", JSON, nullable=False),
        sa.Column("secret", sa.Text(), nullable=False),
        sa.Column("description", sa.String(length=500), nullable=True),
        sa.Column("disabled_at", UTC, nullable=True),
        sa.Column("disabled_reason", sa.Text(), nullable=True),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("updated_at", UTC, nullable=False),
        sa.ForeignKeyConstraint(["profile_id"], ["profiles.id"],
                                name=op.f("fk_webhook_endpoints_profile_id_profiles"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_endpoints")),
    )
    op.create_index(op.f("ix_webhook_endpoints_profile_id"), "webhook_endpoints", ["profile_id"])

    op.create_table(
        "webhook_events",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("profile_id", sa.Uuid(), nullable=False),
        sa.Column("type", sa.String(length=40), nullable=False),
        sa.Column("data", JSON, nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.ForeignKeyConstraint(["profile_id"], ["profiles.id"], name=op.f("fk_webhook_events_profile_id_profiles"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_events")),
    )
    op.create_index(op.f("ix_webhook_events_profile_id_created_at"), "webhook_events", ["profile_id", "created_at"])

    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("profile_id", sa.Uuid(), nullable=False),
        sa.Column("endpoint_id", sa.Uuid(), nullable=False),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", UTC, nullable=True),
        sa.Column("claimed_by", sa.String(length=100), nullable=True),
        sa.Column("claim_expires_at", UTC, nullable=True),
        sa.Column("last_attempt_at", UTC, nullable=True),
        sa.Column("response_status", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("delivered_at", UTC, nullable=True),
        sa.Column("created_at", UTC, nullable=False),
        sa.CheckConstraint("status IN ('pending', 'delivered', 'failed')", name=op.f("ck_webhook_deliveries_status")),
        sa.ForeignKeyConstraint(["endpoint_id"], ["webhook_endpoints.id"],
                                name=op.f("fk_webhook_deliveries_endpoint_id_webhook_endpoints"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["event_id"], ["webhook_events.id"],
                                name=op.f("fk_webhook_deliveries_event_id_webhook_events"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["profile_id"], ["profiles.id"],
                                name=op.f("fk_webhook_deliveries_profile_id_profiles"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_deliveries")),
        sa.UniqueConstraint("endpoint_id", "event_id", name=op.f("uq_webhook_deliveries_endpoint_id_event_id")),
    )
    op.create_index(op.f("ix_webhook_deliveries_endpoint_id_created_at"), "webhook_deliveries",
                    ["endpoint_id", "created_at"])
    op.create_index(op.f("ix_webhook_deliveries_status_next_attempt_at"), "webhook_deliveries",
                    ["status", "next_attempt_at"])
    # deleting old events (and their cascade) finds their deliveries by event
    op.create_index(op.f("ix_webhook_deliveries_event_id"), "webhook_deliveries", ["event_id"])

    op.create_table(
        "login_attempts",
        sa.Column("key", sa.String(length=400), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("first_failure_at", UTC, nullable=False),
        sa.Column("locked_until", UTC, nullable=True),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_login_attempts")),
    )

    op.create_table(
        "dashboard_sessions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("profile_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("expires_at", UTC, nullable=False),
        sa.Column("last_seen_at", UTC, nullable=True),
        sa.Column("revoked_at", UTC, nullable=True),
        sa.ForeignKeyConstraint(["profile_id"], ["profiles.id"],
                                name=op.f("fk_dashboard_sessions_profile_id_profiles"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_dashboard_sessions_user_id_users"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dashboard_sessions")),
    )
    op.create_index(op.f("ix_dashboard_sessions_user_id"), "dashboard_sessions", ["user_id"])


def _new_columns() -> None:
    with op.batch_alter_table("profiles", schema=None) as batch_op:
        batch_op.add_column(sa.Column("consent_policy", sa.String(length=16), nullable=False,
                                      server_default="us_tcpa"))
        for name, length in (("email_from", 320), ("email_from_name", 200), ("email_reply_to", 320),
                             ("sms_from", 64), ("vapi_assistant_id", 100), ("vapi_phone_number_id", 100),
                             ("email_provider", 16), ("sms_provider", 16)):
            batch_op.add_column(sa.Column(name, sa.String(length=length), nullable=True))
        batch_op.add_column(sa.Column("price_per_sms_segment", sa.Float(), nullable=False, server_default="0.0083"))
        batch_op.add_column(sa.Column("price_per_call_minute", sa.Float(), nullable=False, server_default="0.13"))
        batch_op.add_column(sa.Column("price_per_email", sa.Float(), nullable=False, server_default="0.001"))
        batch_op.add_column(sa.Column("encrypted_secrets", sa.Text(), nullable=True))
        batch_op.create_check_constraint("consent_policy", "consent_policy IN ('us_tcpa', 'none')")
        batch_op.create_check_constraint("email_provider",
                                         "email_provider IS NULL OR email_provider IN ('resend', 'smtp')")
        batch_op.create_check_constraint("sms_provider",
                                         "sms_provider IS NULL OR sms_provider IN ('twilio', 'vonage', 'sns')")

    with op.batch_alter_table("leads", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_leads_status"), type_="check")
        batch_op.alter_column("status", existing_type=sa.String(length=16), type_=sa.String(length=50),
                              existing_nullable=False)
        batch_op.alter_column("source", existing_type=sa.String(length=16), type_=sa.String(length=32),
                              existing_nullable=False)

    with op.batch_alter_table("campaigns", schema=None) as batch_op:
        batch_op.add_column(sa.Column("holdout_percent", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("always_on", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column("reenroll_after_days", sa.Integer(), nullable=False, server_default="180"))
        batch_op.add_column(sa.Column("last_enrolled_at", UTC, nullable=True))
        batch_op.add_column(sa.Column("send_time", sa.String(length=8), nullable=False, server_default="window"))
        batch_op.add_column(sa.Column("auto_pause_failure_rate", sa.Float(), nullable=False, server_default="0.5"))
        batch_op.add_column(sa.Column("variant_mode", sa.String(length=24), nullable=False, server_default="split"))
        batch_op.add_column(sa.Column("test_percent", sa.Integer(), nullable=False, server_default="20"))
        batch_op.add_column(sa.Column("test_hours", sa.Float(), nullable=False, server_default="48"))
        batch_op.add_column(sa.Column("winner_variant", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("winner_decided_at", UTC, nullable=True))
        batch_op.add_column(sa.Column("winner_reason", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("selection_report", JSON, nullable=False, server_default="{}"))
        batch_op.create_check_constraint("holdout_percent", "holdout_percent BETWEEN 0 AND 50")
        batch_op.create_check_constraint("reenroll_after_days", "reenroll_after_days BETWEEN 1 AND 3650")
        batch_op.create_check_constraint("send_time", "send_time IN ('window', 'best')")
        batch_op.create_check_constraint("auto_pause", "auto_pause_failure_rate > 0 AND auto_pause_failure_rate <= 1")
        batch_op.create_check_constraint("variant_mode", "variant_mode IN ('split', 'test_then_winner')")
        batch_op.create_check_constraint("test_percent", "test_percent BETWEEN 1 AND 100")
        batch_op.create_check_constraint("test_hours", "test_hours > 0")

    with op.batch_alter_table("campaign_recipients", schema=None) as batch_op:
        batch_op.add_column(sa.Column("customer_id", sa.Uuid(), nullable=True))
        batch_op.add_column(sa.Column("enrollment", sa.Integer(), nullable=False, server_default="1"))
        batch_op.add_column(sa.Column("ab_group", sa.String(length=8), nullable=True))
        batch_op.add_column(sa.Column("planned_at", UTC, nullable=True))
        batch_op.add_column(sa.Column("last_call_outcome", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("returned_at", UTC, nullable=True))
        batch_op.drop_constraint(op.f("uq_campaign_recipients_campaign_id_contact_key"), type_="unique")
        batch_op.create_unique_constraint(op.f("uq_campaign_recipients_campaign_id_contact_key_enrollment"),
                                          ["campaign_id", "contact_key", "enrollment"])
        batch_op.create_foreign_key(op.f("fk_campaign_recipients_customer_id_customers"), "customers", ["customer_id"],
                                    ["id"], ondelete="SET NULL")
        batch_op.drop_constraint(op.f("ck_campaign_recipients_status"), type_="check")
        batch_op.create_check_constraint("status", f"status IN {RECIPIENT_STATUSES}")
        batch_op.create_check_constraint(
            "last_call_outcome",
            "last_call_outcome IS NULL OR last_call_outcome IN ('answered', 'voicemail', 'not_answered', 'failed')")

    with op.batch_alter_table("outreach_attempts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("cost", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("handed_at", UTC, nullable=True))

    with op.batch_alter_table("rate_limits", schema=None) as batch_op:
        batch_op.add_column(sa.Column("recent", JSON, nullable=False, server_default="[]"))


def _drop_server_defaults() -> None:
    """The defaults above only filled existing rows; the application sets every value from now on."""
    with op.batch_alter_table("profiles", schema=None) as batch_op:
        for name in ("consent_policy", "price_per_sms_segment", "price_per_call_minute", "price_per_email"):
            batch_op.alter_column(name, server_default=None)
    with op.batch_alter_table("campaigns", schema=None) as batch_op:
        for name in ("holdout_percent", "always_on", "reenroll_after_days", "send_time", "auto_pause_failure_rate",
                     "variant_mode", "test_percent", "test_hours", "selection_report"):
            batch_op.alter_column(name, server_default=None)
    with op.batch_alter_table("campaign_recipients", schema=None) as batch_op:
        batch_op.alter_column("enrollment", server_default=None)
    with op.batch_alter_table("rate_limits", schema=None) as batch_op:
        batch_op.alter_column("recent", server_default=None)


_BACKFILL_PG = """
INSERT INTO customers (id, profile_id, contact_key, customer_name, customer_phone, customer_email,
                       first_contact_at, last_contact_at, last_status, last_agent_id, last_service_type,
                       last_lead_id, lead_count, service_types, timezone, score, created_at, updated_at)
SELECT gen_random_uuid(), l.profile_id, l.contact_key,
       (SELECT x.customer_name FROM leads x WHERE x.profile_id = l.profile_id AND x.contact_key = l.contact_key
          AND x.customer_name IS NOT NULL ORDER BY x.created_at DESC, x.id DESC LIMIT 1),
       l.customer_phone,
       (SELECT x.customer_email FROM leads x WHERE x.profile_id = l.profile_id AND x.contact_key = l.contact_key
          AND x.customer_email IS NOT NULL ORDER BY x.created_at DESC, x.id DESC LIMIT 1),
       agg.first_at, l.created_at, l.status, l.agent_id, l.service_type, l.id, agg.n, agg.services, NULL, 0,
       now(), now()
FROM (SELECT DISTINCT ON (profile_id, contact_key) * FROM leads
      ORDER BY profile_id, contact_key, created_at DESC, id DESC) l
JOIN (SELECT profile_id, contact_key, min(created_at) AS first_at, count(*) AS n,
             COALESCE(jsonb_agg(DISTINCT service_type) FILTER (WHERE service_type IS NOT NULL), '[]'::jsonb)
               AS services
      FROM leads GROUP BY profile_id, contact_key) agg
  ON agg.profile_id = l.profile_id AND agg.contact_key = l.contact_key
"""

_BACKFILL_SQLITE = """
INSERT INTO customers (id, profile_id, contact_key, customer_name, customer_phone, customer_email,
                       first_contact_at, last_contact_at, last_status, last_agent_id, last_service_type,
                       last_lead_id, lead_count, service_types, timezone, score, created_at, updated_at)
SELECT lower(hex(randomblob(16))), l.profile_id, l.contact_key,
       (SELECT x.customer_name FROM leads x WHERE x.profile_id = l.profile_id AND x.contact_key = l.contact_key
          AND x.customer_name IS NOT NULL ORDER BY x.created_at DESC, x.id DESC LIMIT 1),
       l.customer_phone,
       (SELECT x.customer_email FROM leads x WHERE x.profile_id = l.profile_id AND x.contact_key = l.contact_key
          AND x.customer_email IS NOT NULL ORDER BY x.created_at DESC, x.id DESC LIMIT 1),
       l.first_at, l.created_at, l.status, l.agent_id, l.service_type, l.id, l.n,
       (SELECT json_group_array(s) FROM (SELECT DISTINCT y.service_type AS s FROM leads y
          WHERE y.profile_id = l.profile_id AND y.contact_key = l.contact_key AND y.service_type IS NOT NULL
          ORDER BY 1)),
       NULL, 0, strftime('%Y-%m-%d %H:%M:%f', 'now'), strftime('%Y-%m-%d %H:%M:%f', 'now')
FROM (SELECT *, row_number() OVER (PARTITION BY profile_id, contact_key ORDER BY created_at DESC, id DESC) AS rn,
             min(created_at) OVER (PARTITION BY profile_id, contact_key) AS first_at,
             count(*) OVER (PARTITION BY profile_id, contact_key) AS n
      FROM leads) l
WHERE l.rn = 1
"""


def _zone(e164: str) -> str | None:
    try:
        zones = [z for z in phone_timezone.time_zones_for_number(phonenumbers.parse(e164, None))
                 if z != phone_timezone.UNKNOWN_TIMEZONE]
    except phonenumbers.NumberParseException:
        return None
    return zones[0] if len(zones) == 1 else None


def _backfill() -> None:
    bind = op.get_bind()
    pg = bind.dialect.name == "postgresql"
    op.execute(_BACKFILL_PG if pg else _BACKFILL_SQLITE)
    # a customer's time zone, when their phone number names exactly one
    customers = sa.table("customers", sa.column("id", sa.Uuid()), sa.column("customer_phone", sa.String()),
                         sa.column("timezone", sa.String()))
    updates = [{"cid": cid, "tz": zone} for cid, phone in bind.execute(
        sa.select(customers.c.id, customers.c.customer_phone).where(customers.c.customer_phone.is_not(None)))
        if (zone := _zone(phone)) is not None]
    if updates:
        bind.execute(customers.update().where(customers.c.id == sa.bindparam("cid"))
                     .values(timezone=sa.bindparam("tz")), updates)
    op.execute("UPDATE campaign_recipients SET customer_id = (SELECT c.id FROM customers c "
               "WHERE c.profile_id = campaign_recipients.profile_id "
               "AND c.contact_key = campaign_recipients.contact_key)")


def upgrade() -> None:
    _new_tables()
    _new_columns()
    _drop_server_defaults()
    _backfill()


def downgrade() -> None:
    op.execute("DELETE FROM campaign_recipients WHERE status = 'holdout' OR enrollment > 1")
    with op.batch_alter_table("outreach_attempts", schema=None) as batch_op:
        batch_op.drop_column("handed_at")
        batch_op.drop_column("cost")
    with op.batch_alter_table("rate_limits", schema=None) as batch_op:
        batch_op.drop_column("recent")
    with op.batch_alter_table("campaign_recipients", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_campaign_recipients_last_call_outcome"), type_="check")
        batch_op.drop_constraint(op.f("ck_campaign_recipients_status"), type_="check")
        batch_op.create_check_constraint("status", f"status IN {RECIPIENT_STATUSES_OLD}")
        batch_op.drop_constraint(op.f("fk_campaign_recipients_customer_id_customers"), type_="foreignkey")
        batch_op.drop_constraint(op.f("uq_campaign_recipients_campaign_id_contact_key_enrollment"), type_="unique")
        batch_op.create_unique_constraint(op.f("uq_campaign_recipients_campaign_id_contact_key"),
                                          ["campaign_id", "contact_key"])
        for name in ("returned_at", "last_call_outcome", "planned_at", "ab_group", "enrollment", "customer_id"):
            batch_op.drop_column(name)
    with op.batch_alter_table("campaigns", schema=None) as batch_op:
        for name in ("holdout_percent", "reenroll_after_days", "send_time", "auto_pause", "variant_mode",
                     "test_percent", "test_hours"):
            batch_op.drop_constraint(op.f(f"ck_campaigns_{name}"), type_="check")
        for name in ("selection_report", "winner_reason", "winner_decided_at", "winner_variant", "test_hours",
                     "test_percent", "variant_mode", "auto_pause_failure_rate", "send_time", "last_enrolled_at",
                     "reenroll_after_days", "always_on", "holdout_percent"):
            batch_op.drop_column(name)
    op.execute("UPDATE leads SET status = 'New' WHERE status NOT IN ('New', 'Contacted', 'Closed')")
    op.execute("UPDATE leads SET source = substr(source, 1, 16)")
    with op.batch_alter_table("leads", schema=None) as batch_op:
        batch_op.alter_column("source", existing_type=sa.String(length=32), type_=sa.String(length=16),
                              existing_nullable=False)
        batch_op.alter_column("status", existing_type=sa.String(length=50), type_=sa.String(length=16),
                              existing_nullable=False)
        batch_op.create_check_constraint("status", "status IN ('New', 'Contacted', 'Closed')")
    with op.batch_alter_table("profiles", schema=None) as batch_op:
        for name in ("consent_policy", "email_provider", "sms_provider"):
            batch_op.drop_constraint(op.f(f"ck_profiles_{name}"), type_="check")
        for name in ("encrypted_secrets", "price_per_email", "price_per_call_minute", "price_per_sms_segment",
                     "sms_provider", "email_provider", "vapi_phone_number_id", "vapi_assistant_id", "sms_from",
                     "email_reply_to", "email_from_name", "email_from", "consent_policy"):
            batch_op.drop_column(name)
    for table in ("dashboard_sessions", "login_attempts", "webhook_deliveries", "webhook_events", "webhook_endpoints",
                  "dnc_numbers", "consents", "customers"):
        op.drop_table(table)

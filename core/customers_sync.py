"""Customers kept equal to their leads, in the transaction of every write to ``leads``.

A customer is the set of a profile's leads sharing a ``contact_key`` (the
normalized phone, else the e-mail).  Choosing recipients, the customer list and
the customer page need the same aggregate on every read, so it is stored
(``customers``) instead of recomputed by ranking every lead each time.  Every
path that writes leads calls :func:`sync_customers` in its own transaction: the
CSV import once per batch, from its staging table; ``POST /api/leads``; a lead
added by an agent or by hand; the lead a conversion creates; the demo seed.
Erasing a customer turns their row into the anonymous one (:func:`anonymize`).

What a row holds, recomputed from all of the customer's leads on each sync:

- ``customer_name`` / ``customer_email``: the newest non-empty value (a newer
  lead may lack what an older one has);
- ``last_*`` and ``last_lead_id``: the most recent lead (ties: ``created_at``,
  then the larger lead id — the order selection always used);
- ``first_contact_at``, ``lead_count``; ``service_types``: the distinct services
  of all the leads, sorted;
- ``timezone``: the zone the phone number names when it names exactly one;
- ``score``: the re-engagement score below.

The row is upserted on ``(profile_id, contact_key)``: a customer keeps its id
when new leads arrive.

**Re-engagement score** (0–100; higher = more worth winning back)::

    score = round(100 * (0.45 * R + 0.35 * F + 0.20 * P))
    R = 0.5 ** (days since last_contact_at / 180)      recency: halves every 180 days
    F = 1 - exp(-lead_count / 3)                        frequency: 1 lead 0.28, 3 leads 0.63, 9 leads 0.95
    P = (responded + 1) / (contacted + 2)               past responses, smoothed: 0.5 with no history

``contacted``/``responded`` count the customer's campaign recipients of this
business (any campaign) with ``sent_at``/``responded_at``.  Days before the last
contact count as 0; halves round up.  The score rises with recency, with the
number of leads and with responses, and falls with contacts left unanswered.
It is computed in the same upsert, and again for every customer by
:func:`refresh_scores` (the scheduler, daily: recency changes with time alone).
:func:`score_of` is the same formula in Python.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    Connection,
    Float,
    Integer,
    Select,
    String,
    Table,
    and_,
    any_,
    bindparam,
    case,
    cast,
    exists,
    func,
    literal,
    literal_column,
    or_,
    select,
    true,
    type_coerce,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import ARRAY, aggregate_order_by, distinct_on
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import Grouping
from sqlalchemy.sql.functions import FunctionElement

from core.contacts import phone_timezones
from core.db import UTCDateTime, in_values, new_uuid, utcnow
from core.models import CampaignRecipient, Customer, Lead

RECENCY_WEIGHT = 0.45
FREQUENCY_WEIGHT = 0.35
RESPONSE_WEIGHT = 0.20
RECENCY_HALF_LIFE_DAYS = 180.0
FREQUENCY_SCALE = 3.0


def score_of(*, days_since_last_contact: float, lead_count: int, contacted: int, responded: int) -> int:
    """The re-engagement score, 0–100 (the formula of this module's docstring)."""
    recency = math.exp(max(days_since_last_contact, 0.0) * (-math.log(2) / RECENCY_HALF_LIFE_DAYS))  # 0.5 ** (d/180)
    frequency = 1.0 - math.exp(-lead_count / FREQUENCY_SCALE)
    response = (responded + 1.0) / (contacted + 2.0)
    raw = 100.0 * (RECENCY_WEIGHT * recency + FREQUENCY_WEIGHT * frequency + RESPONSE_WEIGHT * response)
    return min(100, max(0, math.floor(raw + 0.5)))


def zone_of(contact_key: str) -> str | None:
    """The time zone of a customer: the one their phone number names, if it names exactly one."""
    if not contact_key.startswith("+"):
        return None
    zones = phone_timezones(contact_key)
    return zones[0] if len(zones) == 1 else None


# --- the score in SQL ------------------------------------------------------------------------------


class _exp(FunctionElement[float]):
    type = Float()
    inherit_cache = True


@compiles(_exp, "postgresql")
def _exp_pg(element: Any, compiler: Any, **kw: Any) -> str:
    return f"exp({compiler.process(element.clauses, **kw)})"


@compiles(_exp, "sqlite")
def _exp_sqlite(element: Any, compiler: Any, **kw: Any) -> str:
    return f"cx_exp({compiler.process(element.clauses, **kw)})"  # registered by core.db on every connection


class _days_between(FunctionElement[float]):
    """``later - earlier`` in days (fractional)."""

    type = Float()
    inherit_cache = True


@compiles(_days_between, "postgresql")
def _days_pg(element: Any, compiler: Any, **kw: Any) -> str:
    later, earlier = (compiler.process(c, **kw) for c in element.clauses)
    return f"(EXTRACT(EPOCH FROM ({later} - {earlier})) / 86400.0)"


@compiles(_days_between, "sqlite")
def _days_sqlite(element: Any, compiler: Any, **kw: Any) -> str:
    later, earlier = (compiler.process(c, **kw) for c in element.clauses)
    return f"(julianday({later}) - julianday({earlier}))"


class _round_half_up(FunctionElement[int]):
    """A non-negative number rounded to the nearest integer, halves up (the same on both databases)."""

    type = Integer()
    inherit_cache = True


@compiles(_round_half_up, "postgresql")
def _round_pg(element: Any, compiler: Any, **kw: Any) -> str:
    return f"CAST(floor({compiler.process(element.clauses, **kw)} + 0.5) AS INTEGER)"


@compiles(_round_half_up, "sqlite")
def _round_sqlite(element: Any, compiler: Any, **kw: Any) -> str:
    return f"CAST({compiler.process(element.clauses, **kw)} + 0.5 AS INTEGER)"


def score_sql(*, last_contact_at: Any, lead_count: Any, contacted: Any, responded: Any, now: datetime | Any) -> Any:
    """:func:`score_of` as a SQL expression over columns (``now``: a time, or an expression of one)."""
    at = literal(now, UTCDateTime()) if isinstance(now, datetime) else now
    days = _days_between(at, last_contact_at)
    days = case((days < 0, literal(0.0)), else_=days)
    recency = _exp(days * literal(-math.log(2) / RECENCY_HALF_LIFE_DAYS))
    frequency = literal(1.0) - _exp(cast(lead_count, Float) * literal(-1.0 / FREQUENCY_SCALE))
    response = (cast(func.coalesce(responded, 0), Float) + literal(1.0)) / \
        (cast(func.coalesce(contacted, 0), Float) + literal(2.0))
    raw = _round_half_up(literal(100.0) * (literal(RECENCY_WEIGHT) * recency + literal(FREQUENCY_WEIGHT) * frequency
                                           + literal(RESPONSE_WEIGHT) * response))
    return case((raw > 100, literal(100)), (raw < 0, literal(0)), else_=raw)


def _contact_counts(profile_id: Any, chosen: Any) -> Any:
    """Per contact key: how many recipients of this business were contacted, and how many responded."""
    r = CampaignRecipient
    return (select(r.contact_key.label("contact_key"), func.count(r.sent_at).label("contacted"),
                   func.count(r.responded_at).label("responded"))
            .where(r.profile_id == profile_id, chosen(r.contact_key))
            .group_by(r.contact_key).subquery("contacts"))


# --- keeping customers equal to their leads -----------------------------------------------------------------


_LEAD_FIELDS = ("contact_key", "id", "customer_name", "customer_phone", "customer_email", "status", "agent_id",
                "service_type", "created_at")


def _aggregates_pg(src: Any) -> Select[Any]:
    """One row per contact key of ``src`` (leads, or rows shaped like them): the customer they make, from
    scratch.  One sort: the newest lead and the window aggregates share its order."""
    c = src.c
    window = {"partition_by": c.contact_key, "order_by": (c.created_at.desc(), c.id.desc()), "rows": (None, None)}

    def newest_known(column: Any) -> Any:
        # the first non-empty value in newest-first order: a newer lead may lack what an older one has
        values = func.array_agg(column).filter(column.is_not(None)).over(**window)
        return type_coerce(Grouping(values), ARRAY(column.type))[1]

    newest = (select(c.contact_key, c.id.label("lead_id"), c.customer_phone, c.status, c.agent_id, c.service_type,
                     c.created_at.label("last_at"), newest_known(c.customer_name).label("customer_name"),
                     newest_known(c.customer_email).label("customer_email"),
                     func.count().over(**window).label("n"), func.min(c.created_at).over(**window).label("first_at"))
              .ext(distinct_on(c.contact_key)).order_by(c.contact_key, c.created_at.desc(), c.id.desc())
              .subquery("newest"))
    service = c.service_type.collate("C")  # code-point order, as Python sorts
    services = (select(c.contact_key, func.jsonb_agg(aggregate_order_by(service.distinct(), service))
                       .filter(c.service_type.is_not(None)).label("services"))
                .group_by(c.contact_key).subquery("services"))
    return (select(newest.c.contact_key, newest.c.customer_name, newest.c.customer_phone, newest.c.customer_email,
                   newest.c.first_at, newest.c.last_at, newest.c.status, newest.c.agent_id, newest.c.service_type,
                   newest.c.lead_id, newest.c.n,
                   func.coalesce(services.c.services, literal_column("'[]'::jsonb")).label("services"))
            .select_from(newest).outerjoin(services, services.c.contact_key == newest.c.contact_key))


def _aggregates_sqlite(profile_id: Any, chosen: Any) -> Select[Any]:
    """:func:`_aggregates_pg` for SQLite, over the leads of the chosen keys."""
    lead = Lead
    ranked = (select(lead.contact_key, lead.id, lead.customer_phone, lead.status, lead.agent_id, lead.service_type,
                     lead.created_at,
                     func.row_number().over(partition_by=lead.contact_key,
                                            order_by=(lead.created_at.desc(), lead.id.desc())).label("rn"),
                     func.count().over(partition_by=lead.contact_key).label("n"),
                     func.min(lead.created_at).over(partition_by=lead.contact_key).label("first_at"))
              .where(lead.profile_id == profile_id, chosen(lead.contact_key)).subquery("ranked"))

    def newest_known(column: Any) -> Any:
        return (select(column).where(lead.profile_id == profile_id, lead.contact_key == ranked.c.contact_key,
                                     column.is_not(None))
                .order_by(lead.created_at.desc(), lead.id.desc()).limit(1).scalar_subquery())

    distinct_services = (select(lead.service_type.label("s")).where(
        lead.profile_id == profile_id, lead.contact_key == ranked.c.contact_key, lead.service_type.is_not(None))
        .distinct().order_by(lead.service_type).correlate(ranked).subquery("s"))
    services = select(func.json_group_array(distinct_services.c.s)).scalar_subquery()
    return (select(ranked.c.contact_key, newest_known(lead.customer_name).label("customer_name"),
                   ranked.c.customer_phone, newest_known(lead.customer_email).label("customer_email"),
                   ranked.c.first_at, ranked.c.created_at.label("last_at"), ranked.c.status, ranked.c.agent_id,
                   ranked.c.service_type, ranked.c.id.label("lead_id"), ranked.c.n, services.label("services"))
            .where(ranked.c.rn == 1))


_CUSTOMER_COLUMNS = ["id", "profile_id", "contact_key", "customer_name", "customer_phone", "customer_email",
                     "first_contact_at", "last_contact_at", "last_status", "last_agent_id", "last_service_type",
                     "last_lead_id", "lead_count", "service_types", "timezone", "score", "created_at", "updated_at"]
# recomputed from the leads on every sync (id, profile, key and created_at stay)
_RECOMPUTED = ["customer_name", "customer_phone", "customer_email", "first_contact_at", "last_contact_at",
               "last_status", "last_agent_id", "last_service_type", "last_lead_id", "lead_count", "service_types",
               "score", "updated_at"]


def _is_pg(db: Session | Connection) -> bool:
    dialect = db.get_bind().dialect if isinstance(db, Session) else db.dialect
    return dialect.name == "postgresql"


def _chooser(pg: bool, keys: Select[Any] | None) -> Any:
    """``column IN keys`` (a SELECT; ``None``: the bound list ``keys``)."""
    if keys is not None:
        key_select = keys
        return lambda column: column.in_(key_select)
    if pg:  # one statement text whatever the number of keys, and an index scan per key
        return lambda column: column == any_(bindparam("keys", type_=ARRAY(String)))
    return lambda column: column.in_(bindparam("keys", expanding=True))


def _upsert(pg: bool, keys: Select[Any] | None, zones: Select[Any] | None, rows: Any = None) -> Any:
    """The upsert of the customers of ``keys`` (a SELECT; ``None``: the bound list ``keys``) from all their
    leads — or, with ``rows`` (PostgreSQL), from those rows alone (customers every lead of whom is in them).
    Parameters ``business`` (the profile id) and ``now``."""
    table = Customer.__table__
    profile_id = bindparam("business", type_=table.c.profile_id.type)
    now = bindparam("now", type_=UTCDateTime())
    chosen = _chooser(pg, keys)
    if rows is not None:
        agg = _aggregates_pg(rows).subquery("a")
    elif pg:
        lead = Lead
        mine = select(*[getattr(lead, f) for f in _LEAD_FIELDS]).where(
            lead.profile_id == profile_id, chosen(lead.contact_key)).subquery("mine")
        agg = _aggregates_pg(mine).subquery("a")
    else:
        agg = _aggregates_sqlite(profile_id, chosen).subquery("a")
    contacts = _contact_counts(profile_id, chosen if rows is None else (lambda column: column.in_(
        select(rows.c.contact_key))))
    source = agg.outerjoin(contacts, contacts.c.contact_key == agg.c.contact_key)
    if zones is not None:
        zone_rows = zones.subquery("z")
        source = source.outerjoin(zone_rows, zone_rows.c.contact_key == agg.c.contact_key)
        zone: Any = zone_rows.c.timezone
    else:
        zone = literal(None)  # set afterwards, by one statement of the same text whatever the keys
    selected = select(
        new_uuid(), profile_id, agg.c.contact_key, agg.c.customer_name,
        agg.c.customer_phone, agg.c.customer_email, agg.c.first_at, agg.c.last_at, agg.c.status, agg.c.agent_id,
        agg.c.service_type, agg.c.lead_id, agg.c.n, agg.c.services, cast(zone, table.c.timezone.type),
        score_sql(last_contact_at=agg.c.last_at, lead_count=agg.c.n, contacted=contacts.c.contacted,
                  responded=contacts.c.responded, now=now),
        now, now,
    ).select_from(source).where(true())  # the WHERE keeps SQLite from reading ON CONFLICT as a join's ON
    stmt = (postgresql.insert(table) if pg else sqlite.insert(table)).from_select(_CUSTOMER_COLUMNS, selected)
    return stmt.on_conflict_do_update(
        index_elements=["profile_id", "contact_key"],
        set_={**{c: stmt.excluded[c] for c in _RECOMPUTED},
              "timezone": func.coalesce(stmt.excluded.timezone, table.c.timezone)})


@lru_cache(maxsize=2)
def _upsert_listed(pg: bool) -> Any:
    return _upsert(pg, None, None).execution_options(preserve_rowcount=True)


def _zone_update() -> Any:
    table = Customer.__table__
    return (update(table).where(table.c.profile_id == bindparam("business"),
                                table.c.contact_key == bindparam("key"),
                                or_(table.c.timezone.is_(None), table.c.timezone != bindparam("zone")))
            .values(timezone=bindparam("zone")))


def _expire_customers(db: Session | Connection) -> None:
    if isinstance(db, Session):  # customers this session holds are read again when next used
        for obj in list(db.identity_map.values()):
            if isinstance(obj, Customer):
                db.expire(obj)


def sync_customers(db: Session | Connection, *, profile_id: uuid.UUID, keys: Sequence[str] | Select[Any],
                   zones: Select[Any] | None = None, now: datetime | None = None) -> int:
    """Bring the customers of ``keys`` (contact keys, or a SELECT of them) up to date with their leads:
    one ``INSERT … SELECT … ON CONFLICT DO UPDATE``.  Returns how many customers were written.

    ``zones`` (a SELECT of ``contact_key, timezone``) gives the time zones of the keys when the caller
    has them already (an import checks every phone); otherwise they are looked up here.  ``db`` is
    the caller's session, or its connection (an import's loading thread).
    """
    params: dict[str, Any] = {"business": profile_id, "now": now or utcnow()}
    pg = _is_pg(db)
    if isinstance(keys, Select):
        stmt = _upsert(pg, keys, zones).execution_options(preserve_rowcount=True)
        written = int(db.execute(stmt, params).rowcount or 0)
    else:
        key_list = sorted({k for k in keys if k})
        if not key_list:
            return 0
        written = int(db.execute(_upsert_listed(pg), {**params, "keys": key_list}).rowcount or 0)
        located = [{"business": profile_id, "key": k, "zone": z} for k in key_list if (z := zone_of(k)) is not None]
        if located:
            db.execute(_zone_update(), located)
    _expire_customers(db)
    return written


def sync_new_leads(db: Session | Connection, *, profile_id: uuid.UUID, rows: Table, zones: Select[Any],
                   now: datetime | None = None) -> int:
    """Bring the customers of a batch of newly inserted leads up to date (an import's batch on PostgreSQL).

    ``rows`` (a temporary table, emptied of the existing customers' leads on the way) holds the new leads
    (the columns of :data:`_LEAD_FIELDS`).  Customers that did not exist yet are made from these rows alone —
    all their leads are here, so nothing else is read; customers that existed are recomputed from all their
    leads, found by the index of their key."""
    now = now or utcnow()
    c = Customer
    existing = list(db.execute(select(rows.c.contact_key).distinct().where(exists().where(
        c.profile_id == profile_id, c.contact_key == rows.c.contact_key))).scalars())
    if existing:  # ``rows`` keeps the leads of new customers only
        db.execute(rows.delete().where(rows.c.contact_key == any_(bindparam("keys", type_=ARRAY(String)))),
                   {"keys": existing})
    stmt = _upsert(True, None, zones, rows=rows).execution_options(preserve_rowcount=True)
    written = int(db.execute(stmt, {"business": profile_id, "now": now}).rowcount or 0)
    if existing:
        zone_rows = zones.subquery("given")
        stmt = _upsert(True, None, select(zone_rows).where(zone_rows.c.contact_key == any_(
            bindparam("keys", type_=ARRAY(String))))).execution_options(preserve_rowcount=True)
        written += int(db.execute(stmt, {"business": profile_id, "now": now, "keys": existing}).rowcount or 0)
    _expire_customers(db)
    return written


def anonymize(session: Session, *, profile_id: uuid.UUID, contact_key: str, erased_key: str,
              now: datetime | None = None) -> int:
    """An erased customer's row becomes the anonymous one: keyed by ``erased_key``, with its counts,
    dates and statuses and nothing that identifies the person."""
    return int(session.execute(
        update(Customer).where(Customer.profile_id == profile_id, Customer.contact_key == contact_key)
        .values(contact_key=erased_key, customer_name=None, customer_phone=None, customer_email=None, timezone=None,
                updated_at=now or utcnow())
        .execution_options(synchronize_session=False)).rowcount or 0)


def refresh_scores(session: Session, *, profile_id: uuid.UUID | None = None, now: datetime | None = None) -> int:
    """Recompute every customer's score (of one business, or of all); returns how many changed.

    Recency moves with the clock alone, so the scheduler calls this daily; only rows whose score
    changes are written."""
    now = now or utcnow()
    c, r = Customer, CampaignRecipient
    mine = (r.profile_id == c.profile_id, r.contact_key == c.contact_key)
    contacted = select(func.count(r.sent_at)).where(*mine).scalar_subquery()
    responded = select(func.count(r.responded_at)).where(*mine).scalar_subquery()
    new_score = score_sql(last_contact_at=c.last_contact_at, lead_count=c.lead_count, contacted=contacted,
                          responded=responded, now=now)
    conds = [c.score != new_score]
    if profile_id is not None:
        conds.insert(0, c.profile_id == profile_id)
    return int(session.execute(update(c).where(and_(*conds)).values(score=new_score)
                               .execution_options(synchronize_session=False)).rowcount or 0)


def customer_ids(session: Session, *, profile_id: uuid.UUID, keys: Sequence[str]) -> Mapping[str, uuid.UUID]:
    """The ids of the customers with these contact keys (those that exist)."""
    wanted = sorted({k for k in keys if k})
    if not wanted:
        return {}
    return dict(session.execute(select(Customer.contact_key, Customer.id).where(
        Customer.profile_id == profile_id, in_values(session, Customer.contact_key, wanted))).all())

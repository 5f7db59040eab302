"""Lead import from CSV, the customer list, and erasing a customer.

Import is all or nothing: every row is checked first (phones to E.164 with the
profile's region, e-mails validated and lower-cased, statuses and dates
parsed); a file with any bad row is refused whole, listing every bad line and
why, unless the caller asks to skip invalid rows.  Good rows are streamed into a
temporary table (``COPY`` on PostgreSQL) and inserted with one statement; rows
identical to a lead already stored, or to an earlier row of the file, are
counted as duplicates and skipped, so importing the same file twice adds nothing.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import IO, Any
from zoneinfo import ZoneInfo

from sqlalchemy import Column, MetaData, String, Table, Text, func, literal, select, true
from sqlalchemy.orm import Session

from core.accounts import get_profile
from core.contacts import ContactError, normalize_email, normalize_phone
from core.db import UTCDateTime, dialect_insert, new_uuid, utcnow
from core.errors import Invalid, NotFound
from core.models import LEAD_STATUSES, Agent, Lead

COLUMNS = ("customer_name", "customer_phone", "customer_email", "status", "service_type", "created_at", "notes")
_STATUS = {s.lower(): s for s in LEAD_STATUSES}
_LIMITS = {"customer_name": 200, "service_type": 100, "notes": 10_000}
_STAGE_BATCH = 5000


@dataclass
class ImportReport:
    imported: int = 0
    duplicates: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"imported": self.imported, "duplicates": self.duplicates, "rejected": self.rejected}


@dataclass(frozen=True)
class _Row:
    line: int
    contact_key: str
    customer_name: str | None
    customer_phone: str | None
    customer_email: str | None
    status: str
    service_type: str | None
    notes: str | None
    extra: str
    created_at: datetime
    fingerprint: str


class _RowError(ValueError):
    pass


def _parse_time(raw: str, tz: ZoneInfo, now: datetime) -> datetime:
    try:
        if len(raw) == 10:
            value = datetime.combine(date.fromisoformat(raw), time(), tz)
        else:
            value = datetime.fromisoformat(raw)
            if value.tzinfo is None:
                value = value.replace(tzinfo=tz)
    except ValueError:
        raise _RowError(f"created_at: {raw!r} is not an ISO date or date-time (e.g. 2025-03-14 or "
                        f"2025-03-14T15:30:00)") from None
    value = value.astimezone(UTC)
    if value > now + timedelta(days=1):
        raise _RowError(f"created_at: {raw!r} is in the future")
    return value


def _check_row(record: dict[str, Any], *, line: int, region: str, tz: ZoneInfo, now: datetime,
               agent_id: uuid.UUID | None) -> _Row:
    errors: list[str] = []
    if None in record:  # more fields than the header names
        errors.append(f"has {len(record) - 1 + len(record[None])} fields but the header names {len(record) - 1}")
    get = {k: (v.strip() if isinstance(v, str) else "") for k, v in record.items() if k is not None}
    phone = email = None
    if get.get("customer_phone"):
        try:
            phone = normalize_phone(get["customer_phone"], region)
        except ContactError as exc:
            errors.append(f"customer_phone: {exc}")
    if get.get("customer_email"):
        try:
            email = normalize_email(get["customer_email"])
        except ContactError as exc:
            errors.append(f"customer_email: {exc}")
    if not get.get("customer_phone") and not get.get("customer_email"):
        errors.append("customer_phone or customer_email is required")
    status = _STATUS.get(get.get("status", "").lower()) if get.get("status") else "New"
    if status is None:
        errors.append(f"status: {get['status']!r} is not one of {', '.join(LEAD_STATUSES)}")
    created = now
    if get.get("created_at"):
        try:
            created = _parse_time(get["created_at"], tz, now)
        except _RowError as exc:
            errors.append(str(exc))
    for name, limit in _LIMITS.items():
        if len(get.get(name, "")) > limit:
            errors.append(f"{name}: longer than {limit} characters")
    if errors:
        raise _RowError("; ".join(errors))
    extra = {k: v for k, v in get.items() if k not in COLUMNS and v}
    name = get.get("customer_name") or None
    service = get.get("service_type") or None
    notes = get.get("notes") or None
    created_iso = created.isoformat()
    fingerprint = hashlib.sha1("\x1f".join(
        str(x or "") for x in (phone, email, name, status, service, notes, created_iso, agent_id,
                               json.dumps(extra, sort_keys=True) if extra else "")
    ).encode("utf-8")).hexdigest()
    return _Row(line, phone or email or "", name, phone, email, status or "New", service, notes,
                json.dumps(extra) if extra else "{}", created, fingerprint)


def _records(stream: IO[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    reader = csv.DictReader(stream, restval="")
    if reader.fieldnames is None:
        raise Invalid("the file is empty; the first line must name the columns "
                      f"({', '.join(COLUMNS)})", field="file")
    reader.fieldnames = [(f or "").strip().lower() for f in reader.fieldnames]
    if "customer_phone" not in reader.fieldnames and "customer_email" not in reader.fieldnames:
        raise Invalid("the header row needs a customer_phone or a customer_email column "
                      f"(columns: {', '.join(COLUMNS)})", field="file")
    last = reader.line_num
    for record in reader:
        start, last = last + 1, reader.line_num
        if not any((v or "").strip() for k, v in record.items() if k is not None) and None not in record:
            continue  # a blank line
        yield start, record


_stage_meta = MetaData()
_stage = Table(
    "lead_import_stage", _stage_meta,
    Column("line", String), Column("contact_key", String), Column("customer_name", String),
    Column("customer_phone", String), Column("customer_email", String), Column("status", String),
    Column("service_type", String), Column("notes", Text), Column("extra", Text),
    Column("created_at", UTCDateTime()), Column("fingerprint", String),
    prefixes=["TEMPORARY"],
)
_STAGE_COLS = [c.name for c in _stage.columns]


class _Stager:
    """Streams checked rows into a temporary table inside the caller's transaction."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.pg = session.get_bind().dialect.name == "postgresql"
        conn = session.connection()
        conn.exec_driver_sql("DROP TABLE IF EXISTS lead_import_stage")
        _stage.create(conn)
        self.count = 0
        self._batch: list[tuple[Any, ...]] = []
        if self.pg:
            raw = conn.connection.driver_connection
            self._cursor = raw.cursor()  # type: ignore[union-attr]
            self._copy_cm = self._cursor.copy(
                f"COPY lead_import_stage ({', '.join(_STAGE_COLS)}) FROM STDIN")
            self._copy = self._copy_cm.__enter__()
        self.pg_open = self.pg

    def add(self, row: _Row) -> None:
        self.count += 1
        values = (row.line, row.contact_key, row.customer_name, row.customer_phone, row.customer_email,
                  row.status, row.service_type, row.notes, row.extra, row.created_at, row.fingerprint)
        if self.pg:
            self._copy.write_row(values)
        else:
            # the text form SQLAlchemy's SQLite DateTime stores and compares
            stamp = row.created_at.strftime("%Y-%m-%d %H:%M:%S.%f")
            self._batch.append(values[:9] + (stamp,) + values[10:])
            if len(self._batch) >= _STAGE_BATCH:
                self._flush()

    def _flush(self) -> None:
        if self._batch:
            placeholders = ", ".join("?" for _ in _STAGE_COLS)
            self.session.connection().connection.driver_connection.executemany(  # type: ignore[union-attr]
                f"INSERT INTO lead_import_stage ({', '.join(_STAGE_COLS)}) VALUES ({placeholders})", self._batch)
            self._batch = []

    def finish(self) -> None:
        """End the stream (the staged rows are then visible to SQL)."""
        if self.pg:
            self._copy_cm.__exit__(None, None, None)
            self._cursor.close()
            self.pg_open = False
        else:
            self._flush()

    def abandon(self) -> None:
        """Close an unfinished COPY after an error (the transaction is rolled back by the caller)."""
        if self.pg and self.pg_open:
            self.pg_open = False
            try:
                self._copy_cm.__exit__(RuntimeError, RuntimeError("import abandoned"), None)
            except Exception:
                pass
            self._cursor.close()

    def drop(self) -> None:
        self.session.connection().exec_driver_sql("DROP TABLE lead_import_stage")


def import_leads(
    session: Session, *, profile_id: uuid.UUID, source: str | Path | IO[str] | IO[bytes],
    agent_id: uuid.UUID | None = None, skip_invalid: bool = False,
    progress: Callable[[int], None] | None = None, now: datetime | None = None,
) -> ImportReport:
    """Import leads from a CSV file (path or open file) into the profile.

    Returns what happened; writes nothing when a row is rejected and
    ``skip_invalid`` is false.  The caller's transaction commits the import.
    """
    profile = get_profile(session, profile_id=profile_id)
    if agent_id is not None and session.scalar(
            select(Agent.id).where(Agent.id == agent_id, Agent.profile_id == profile_id)) is None:
        raise Invalid(f"no agent {agent_id} in this business", field="agent_id")
    now = now or utcnow()
    tz = ZoneInfo(profile.timezone)
    report = ImportReport()
    own: IO[Any] | None = None
    if isinstance(source, (str, Path)):
        try:
            own = stream = open(source, encoding="utf-8-sig", newline="")  # noqa: SIM115
        except OSError as exc:
            raise NotFound(f"cannot read {source}: {exc.strerror}", field="file") from None
    elif isinstance(source, io.TextIOBase):
        stream = source
    else:
        stream = io.TextIOWrapper(source, encoding="utf-8-sig", newline="")  # type: ignore[arg-type]

    stager = _Stager(session)
    finished = False
    try:
        try:
            for n, (line, record) in enumerate(_records(stream), start=1):
                try:
                    row = _check_row(record, line=line, region=profile.default_region, tz=tz, now=now,
                                     agent_id=agent_id)
                except _RowError as exc:
                    report.rejected.append({"line": line, "error": str(exc)})
                else:
                    if skip_invalid or not report.rejected:
                        stager.add(row)
                if progress is not None and n % 10_000 == 0:
                    progress(n)
        except UnicodeDecodeError as exc:
            raise Invalid(f"the file is not UTF-8 text ({exc.reason} at byte {exc.start})", field="file") from None
        except csv.Error as exc:
            raise Invalid(f"the file is not valid CSV: {exc}", field="file") from None
        stager.finish()
        if not report.rejected or skip_invalid:
            report.imported = _insert_staged(session, profile_id=profile_id, agent_id=agent_id, now=now)
            report.duplicates = stager.count - report.imported
        stager.drop()
        finished = True
        return report
    finally:
        if not finished:
            stager.abandon()
        if own is not None:
            own.close()


def _insert_staged(session: Session, *, profile_id: uuid.UUID, agent_id: uuid.UUID | None, now: datetime) -> int:
    s = _stage.c
    leads = Lead.__table__
    rows = select(
        new_uuid(), literal(profile_id), literal(agent_id, leads.c.agent_id.type), s.contact_key,
        s.customer_name, s.customer_phone, s.customer_email, s.status, s.service_type, s.notes,
        func.cast(s.extra, leads.c.extra.type) if session.get_bind().dialect.name == "postgresql" else s.extra,
        literal({}, leads.c.structured_data.type), literal("import"), s.fingerprint, s.created_at,
        literal(now, leads.c.updated_at.type),
    ).where(true())
    cols = ["id", "profile_id", "agent_id", "contact_key", "customer_name", "customer_phone", "customer_email",
            "status", "service_type", "notes", "extra", "structured_data", "source", "fingerprint", "created_at",
            "updated_at"]
    stmt = dialect_insert(session, leads).from_select(cols, rows).on_conflict_do_nothing(
        index_elements=["profile_id", "fingerprint"])
    return int(session.execute(stmt).rowcount)


# --- customers ------------------------------------------------------------------------------


def customer_count(session: Session, *, profile_id: uuid.UUID) -> int:
    return int(session.scalar(select(func.count(func.distinct(Lead.contact_key)))
                              .where(Lead.profile_id == profile_id)) or 0)


def lead_count(session: Session, *, profile_id: uuid.UUID) -> int:
    return int(session.scalar(select(func.count()).select_from(Lead).where(Lead.profile_id == profile_id)) or 0)


def add_lead(session: Session, *, profile_id: uuid.UUID, customer_name: str | None = None,
             customer_phone: str | None = None, customer_email: str | None = None, status: str = "New",
             service_type: str | None = None, notes: str | None = None, agent_id: uuid.UUID | None = None,
             campaign_id: uuid.UUID | None = None, source: str = "agent", created_at: datetime | None = None,
             structured_data: dict[str, Any] | None = None) -> Lead:
    """Record one lead (an agent's call, or a conversion a campaign produced)."""
    profile = get_profile(session, profile_id=profile_id)
    try:
        phone = normalize_phone(customer_phone, profile.default_region) if customer_phone else None
    except ContactError as exc:
        raise Invalid(str(exc), field="customer_phone") from None
    try:
        email = normalize_email(customer_email) if customer_email else None
    except ContactError as exc:
        raise Invalid(str(exc), field="customer_email") from None
    if not phone and not email:
        raise Invalid("customer_phone or customer_email is required", field="customer_phone")
    if status not in LEAD_STATUSES:
        raise Invalid(f"'{status}' is not one of {', '.join(LEAD_STATUSES)}", field="status")
    now = utcnow()
    lead = Lead(id=uuid.uuid4(), profile_id=profile_id, agent_id=agent_id, campaign_id=campaign_id,
                contact_key=phone or email, customer_name=customer_name, customer_phone=phone,
                customer_email=email, status=status, service_type=service_type, notes=notes, source=source,
                structured_data=structured_data or {}, extra={}, created_at=created_at or now, updated_at=now)
    session.add(lead)
    session.flush()
    return lead


"""Lead import from CSV, the customer list, and erasing a customer.

Import is all or nothing: every row is checked first (phones to E.164 with the
profile's region, e-mails validated and lower-cased, statuses and dates
parsed); a file with any bad row is refused whole, listing every bad line and
why, unless the caller asks to skip invalid rows.  Good rows are streamed into a
temporary table (``COPY`` on PostgreSQL) and inserted a batch at a time with
one statement each, inside a savepoint; rows identical to a lead already
stored, or to an earlier row of the file, are counted as duplicates and
skipped, so importing the same file twice adds nothing.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import os
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from multiprocessing import get_context
from pathlib import Path
from time import perf_counter
from typing import IO, Any
from zoneinfo import ZoneInfo

from sqlalchemy import Column, Connection, MetaData, String, Table, Text, exists, func, literal, select, true
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from core.accounts import get_profile
from core.attribution import attribute_leads
from core.contacts import ContactError, normalize_email, normalize_phone
from core.db import UTCDateTime, new_uuid, utcnow
from core.errors import Invalid, NotFound
from core.models import LEAD_STATUSES, Agent, Campaign, CampaignRecipient, Lead

log = logging.getLogger(__name__)

COLUMNS = ("customer_name", "customer_phone", "customer_email", "status", "service_type", "created_at", "notes")
_STATUS = {s.lower(): s for s in LEAD_STATUSES}
_LIMITS = {"customer_name": 200, "service_type": 100, "notes": 10_000}
_LOAD_BATCH = 100_000  # rows loaded into the database at a time
_CHUNK = 5000  # rows checked at a time
_ANALYZE_AFTER = 10_000  # rows imported at once that warrant new planner statistics
_SEQUENTIAL_CHUNKS = 4  # a file longer than this many chunks is checked in worker processes


@dataclass
class ImportReport:
    imported: int = 0
    duplicates: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"imported": self.imported, "duplicates": self.duplicates, "rejected": self.rejected}


# A checked row, in the staging table's column order:
# (line, contact_key, name, phone, email, status, service_type, notes, extra JSON, created_at, fingerprint)
_Staged = tuple[Any, ...]
# A rejected row: (line, error)
_Rejected = tuple[int, str]


class _RowError(ValueError):
    """One row of a lead file is not acceptable; the message says why."""


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


@dataclass(frozen=True)
class _Checker:
    """Checks and normalizes rows; picklable, so big files can be checked in worker processes."""

    header: tuple[str, ...]
    region: str
    tz_name: str
    now: datetime
    agent_id: uuid.UUID | None
    copy_text: bool = False  # give good rows as lines of PostgreSQL COPY text (cheap to pass between processes)

    def __call__(self, chunk: list[tuple[int, list[str]]]) -> list[_Staged | str | _Rejected]:
        tz = ZoneInfo(self.tz_name)
        out: list[_Staged | str | _Rejected] = []
        width = len(self.header)
        for line, fields in chunk:
            try:
                if len(fields) > width:
                    raise _RowError(f"has {len(fields)} fields but the header names {width}")
                row = self._check(line, dict(zip(self.header, fields, strict=False)), tz)
            except _RowError as exc:
                out.append((line, str(exc)))
            else:
                out.append(_copy_line(row) if self.copy_text else row)
        return out

    def _check(self, line: int, record: dict[str, str], tz: ZoneInfo) -> _Staged:
        get = {k: v.strip() for k, v in record.items()}
        errors: list[str] = []
        phone = email = None
        raw_phone, raw_email = get.get("customer_phone"), get.get("customer_email")
        if raw_phone:
            try:
                phone = normalize_phone(raw_phone, self.region)
            except ContactError as exc:
                errors.append(f"customer_phone: {exc}")
        if raw_email:
            try:
                email = normalize_email(raw_email)
            except ContactError as exc:
                errors.append(f"customer_email: {exc}")
        if not raw_phone and not raw_email:
            errors.append("customer_phone or customer_email is required")
        raw_status = get.get("status")
        status = _STATUS.get(raw_status.lower()) if raw_status else "New"
        if status is None:
            errors.append(f"status: {raw_status!r} is not one of {', '.join(LEAD_STATUSES)}")
        created = self.now
        if get.get("created_at"):
            try:
                created = _parse_time(get["created_at"], tz, self.now)
            except _RowError as exc:
                errors.append(str(exc))
        for name, limit in _LIMITS.items():
            if len(get.get(name, "")) > limit:
                errors.append(f"{name}: longer than {limit} characters")
        if errors:
            raise _RowError("; ".join(errors))
        extra = {k: v for k, v in get.items() if k not in COLUMNS and v}
        extra_json = json.dumps(extra, sort_keys=True) if extra else "{}"
        name = get.get("customer_name") or None
        service = get.get("service_type") or None
        notes = get.get("notes") or None
        fingerprint = hashlib.sha1("\x1f".join(
            str(x or "") for x in (phone, email, name, status, service, notes, created.isoformat(), self.agent_id,
                                   extra_json)
        ).encode("utf-8")).hexdigest()
        return (line, phone or email, name, phone, email, status, service, notes, extra_json, created, fingerprint)


_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_line(row: _Staged) -> str:
    """One row in PostgreSQL's COPY text format."""
    line, key, name, phone, email, status, service, notes, extra, created, fingerprint = row
    text = "\t".join((str(line), key, name or "\\N", phone or "\\N", email or "\\N", status, service or "\\N",
                      notes or "\\N", extra, created.isoformat(), fingerprint))
    nulls = (name is None) + (phone is None) + (email is None) + (service is None) + (notes is None)
    # each NULL wrote one backslash; any other backslash, tab or line break must be escaped
    if text.count("\\") != nulls or "\n" in text or "\r" in text or text.count("\t") != len(row) - 1:
        # a value holds a character COPY must see escaped: the careful way (rare)
        text = "\t".join("\\N" if v is None else (v.isoformat() if isinstance(v, datetime) else str(v))
                         .translate(_COPY_ESCAPES) for v in row)
    return text + "\n"


def _chunks(stream: IO[str]) -> tuple[tuple[str, ...], Iterator[list[tuple[int, list[str]]]]]:
    """The header and the data rows in chunks of (line number, fields); blank lines are skipped."""
    reader = csv.reader(stream)
    header = next(reader, None)
    if header is None:
        raise Invalid(f"the file is empty; the first line must name the columns ({', '.join(COLUMNS)})",
                      field="file")
    names = tuple(h.strip().lower() for h in header)
    if "customer_phone" not in names and "customer_email" not in names:
        raise Invalid("the header row needs a customer_phone or a customer_email column "
                      f"(columns: {', '.join(COLUMNS)})", field="file")

    def chunks() -> Iterator[list[tuple[int, list[str]]]]:
        chunk: list[tuple[int, list[str]]] = []
        last = reader.line_num
        for fields in reader:
            start, last = last + 1, reader.line_num
            if not any(f.strip() for f in fields):
                continue
            chunk.append((start, fields))
            if len(chunk) >= _CHUNK:
                yield chunk
                chunk = []
        if chunk:
            yield chunk

    return names, chunks()


def _checked(checker: _Checker, chunks: Iterator[list[tuple[int, list[str]]]]
             ) -> Iterator[list[_Staged | str | _Rejected]]:
    """Checked chunks in file order: the first ones here, the rest of a big file in worker processes."""
    for _ in range(_SEQUENTIAL_CHUNKS):
        chunk = next(chunks, None)
        if chunk is None:
            return
        yield checker(chunk)
    workers = min(os.cpu_count() or 1, 8)
    if workers < 2:
        yield from map(checker, chunks)
        return
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        pending: deque[Future[list[_Staged | str | _Rejected]]] = deque()
        for chunk in chunks:
            pending.append(pool.submit(checker, chunk))
            if len(pending) >= 2 * workers:  # bounded: the file is never all in memory
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


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
# the fingerprints of every batch, kept only when the import may convert a campaign's recipients
_loaded = Table("lead_import_loaded", _stage_meta, Column("fingerprint", String), prefixes=["TEMPORARY"])
_SAVEPOINT = "lead_import"


class _Loader:
    """Moves checked rows into ``leads`` in batches, inside a savepoint of the caller's transaction.

    Each batch is staged in a temporary table (``COPY`` on PostgreSQL) and
    inserted with one ``INSERT … SELECT`` that skips rows already stored.  On
    PostgreSQL the database loads one batch in a background thread while the
    next one is being checked, so the server and the checking processes work
    at the same time; on SQLite batches load in line.  :meth:`cancel` (a bad
    row in an all-or-nothing import) and :meth:`abandon` (an error) roll the
    savepoint back, so nothing of the file stays.
    """

    def __init__(self, session: Session, *, profile_id: uuid.UUID, agent_id: uuid.UUID | None, now: datetime,
                 batch_rows: int) -> None:
        self.session, self.profile_id, self.agent_id, self.now = session, profile_id, agent_id, now
        self.batch_rows = batch_rows
        self.pg = session.get_bind().dialect.name == "postgresql"
        self.conn = conn = session.connection()  # the loading thread uses it while this one only checks rows
        # a business that never reached anybody (a first import) has no conversions to find
        self.attribute = bool(session.scalar(select(exists().where(
            CampaignRecipient.profile_id == profile_id, CampaignRecipient.sent_at.is_not(None)))))
        conn.exec_driver_sql(f"SAVEPOINT {_SAVEPOINT}")
        self.open = True
        for table in (_stage, _loaded):
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {table.name}")
            table.create(conn)
        self.staged = self.imported = 0
        self._buffer: list[_Staged | str] = []
        self._threads = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lead-import") if self.pg else None
        self._running: Future[int] | None = None

    def add(self, values: _Staged | str) -> None:
        self._buffer.append(values)
        self.staged += 1
        if len(self._buffer) >= self.batch_rows:
            self._send()

    def _send(self) -> None:
        batch, self._buffer = self._buffer, []
        self._wait()
        if not batch:
            return
        if self._threads is None:
            self.imported += self._load(batch)
        else:
            self._running = self._threads.submit(self._load, batch)

    def _wait(self) -> None:
        running, self._running = self._running, None
        if running is not None:
            self.imported += running.result()

    def _load(self, batch: list[_Staged | str]) -> int:
        """Stage one batch and insert it (runs in the loading thread on PostgreSQL)."""
        conn = self.conn
        conn.exec_driver_sql(f"{'TRUNCATE' if self.pg else 'DELETE FROM'} {_stage.name}")
        driver = conn.connection.driver_connection
        if self.pg:
            with driver.cursor() as cursor, cursor.copy(  # type: ignore[union-attr]
                    f"COPY {_stage.name} ({', '.join(_STAGE_COLS)}) FROM STDIN") as copy:
                for values in batch:
                    if isinstance(values, str):
                        copy.write(values)
                    else:
                        copy.write_row(values)
        else:
            # the text form SQLAlchemy's SQLite DateTime stores and compares
            rows = [(*v[:9], v[9].strftime("%Y-%m-%d %H:%M:%S.%f"), v[10]) for v in batch]
            driver.executemany(  # type: ignore[union-attr]
                f"INSERT INTO {_stage.name} ({', '.join(_STAGE_COLS)}) "
                f"VALUES ({', '.join('?' for _ in _STAGE_COLS)})", rows)
        inserted = _insert_staged(conn, pg=self.pg, profile_id=self.profile_id, agent_id=self.agent_id, now=self.now)
        if self.attribute and inserted:
            conn.execute(_loaded.insert().from_select(["fingerprint"], select(_stage.c.fingerprint)))
        return inserted

    def finish(self) -> int:
        """Load what is left and keep it; the number of rows inserted (the rest were duplicates)."""
        self._send()
        self._wait()
        if self.attribute and self.imported:
            # customers a campaign reached who came back: conversions of that campaign (one statement)
            attribute_leads(self.session, profile_id=self.profile_id, now=self.now, lead_ids=select(Lead.id).where(
                Lead.profile_id == self.profile_id, Lead.fingerprint.in_(select(_loaded.c.fingerprint))))
        self._close(keep=True)
        return self.imported

    def cancel(self) -> None:
        """Keep nothing of this file (a row was rejected); rows added later are ignored."""
        if self.open:
            self._buffer = []
            self._wait()
            self._close(keep=False)

    def abandon(self) -> None:
        """After an error: wait for the loading thread and roll everything back."""
        if not self.open:
            return
        self._buffer = []
        try:
            self._wait()
        except Exception:  # the error being handled already says what went wrong
            log.debug("the lead import's loading thread failed too", exc_info=True)
        try:
            self._close(keep=False)
        except Exception:
            log.exception("could not clean up an abandoned lead import")

    def _close(self, *, keep: bool) -> None:
        self.open = False
        if self._threads is not None:
            self._threads.shutdown(wait=True)
        conn = self.conn
        if keep:
            for table in (_stage, _loaded):
                conn.exec_driver_sql(f"DROP TABLE {table.name}")
            conn.exec_driver_sql(f"RELEASE SAVEPOINT {_SAVEPOINT}")
        else:  # also drops the temporary tables, created after the savepoint
            conn.exec_driver_sql(f"ROLLBACK TO SAVEPOINT {_SAVEPOINT}")
            conn.exec_driver_sql(f"RELEASE SAVEPOINT {_SAVEPOINT}")
            self.imported = 0


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
    _check_own(session, Agent, agent_id, profile_id, field="agent_id", what="agent")
    now = now or utcnow()
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

    started = perf_counter()
    loader = _Loader(session, profile_id=profile_id, agent_id=agent_id, now=now, batch_rows=_LOAD_BATCH)
    finished = False
    done = 0
    try:
        try:
            header, chunks = _chunks(stream)
            checker = _Checker(header, profile.default_region, profile.timezone, now, agent_id, copy_text=loader.pg)
            for results in _checked(checker, chunks):
                for item in results:
                    if isinstance(item, tuple) and len(item) == 2:
                        report.rejected.append({"line": item[0], "error": item[1]})
                        if not skip_invalid:
                            loader.cancel()  # all or nothing: stop loading, keep checking to list every bad row
                    elif skip_invalid or not report.rejected:
                        loader.add(item)
                done += len(results)
                if progress is not None:
                    progress(done)
        except UnicodeDecodeError as exc:
            raise Invalid(f"the file is not UTF-8 text ({exc.reason} at byte {exc.start})", field="file") from None
        except csv.Error as exc:
            raise Invalid(f"the file is not valid CSV: {exc}", field="file") from None
        checked_at = perf_counter()
        if loader.open:
            report.imported = loader.finish()
            report.duplicates = loader.staged - report.imported
            if report.imported >= _ANALYZE_AFTER and loader.pg:
                # fresh planner statistics: without them the next selection over these leads
                # can pick a plan hundreds of times slower
                session.connection().exec_driver_sql("ANALYZE leads")
        log.info("lead import for %s: %d rows checked in %.1f s, %d inserted %.1f s after the last check, "
                 "%d rejected", profile_id, done, checked_at - started, report.imported,
                 perf_counter() - checked_at, len(report.rejected))
        finished = True
        return report
    finally:
        if not finished:
            loader.abandon()
        if own is not None:
            own.close()


def _insert_staged(conn: Connection, *, pg: bool, profile_id: uuid.UUID, agent_id: uuid.UUID | None,
                   now: datetime) -> int:
    s = _stage.c
    leads = Lead.__table__
    rows = select(
        new_uuid(), literal(profile_id), literal(agent_id, leads.c.agent_id.type), s.contact_key,
        s.customer_name, s.customer_phone, s.customer_email, s.status, s.service_type, s.notes,
        func.cast(s.extra, leads.c.extra.type) if pg else s.extra,
        literal({}, leads.c.structured_data.type), literal("import"), s.fingerprint, s.created_at,
        literal(now, leads.c.updated_at.type),
    ).where(true()).order_by(s.contact_key, s.created_at)  # index-friendly insertion order
    cols = ["id", "profile_id", "agent_id", "contact_key", "customer_name", "customer_phone", "customer_email",
            "status", "service_type", "notes", "extra", "structured_data", "source", "fingerprint", "created_at",
            "updated_at"]
    stmt = (postgresql.insert(leads) if pg else sqlite.insert(leads)).from_select(cols, rows).on_conflict_do_nothing(
        index_elements=["profile_id", "fingerprint"])
    return int(conn.execute(stmt.execution_options(preserve_rowcount=True)).rowcount)


# --- customers ------------------------------------------------------------------------------


def customer_count(session: Session, *, profile_id: uuid.UUID) -> int:
    return int(session.scalar(select(func.count(func.distinct(Lead.contact_key)))
                              .where(Lead.profile_id == profile_id)) or 0)


def lead_count(session: Session, *, profile_id: uuid.UUID) -> int:
    return int(session.scalar(select(func.count()).select_from(Lead).where(Lead.profile_id == profile_id)) or 0)


def _check_own(session: Session, model: Any, object_id: uuid.UUID | None, profile_id: uuid.UUID, *,
               field: str, what: str) -> None:
    if object_id is not None and session.scalar(
            select(model.id).where(model.id == object_id, model.profile_id == profile_id)) is None:
        raise Invalid(f"no {what} {object_id} in this business", field=field)


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
    _check_own(session, Agent, agent_id, profile_id, field="agent_id", what="agent")
    _check_own(session, Campaign, campaign_id, profile_id, field="campaign_id", what="campaign")
    now = utcnow()
    lead = Lead(id=uuid.uuid4(), profile_id=profile_id, agent_id=agent_id, campaign_id=campaign_id,
                contact_key=phone or email, customer_name=customer_name, customer_phone=phone,
                customer_email=email, status=status, service_type=service_type, notes=notes, source=source,
                structured_data=structured_data or {}, extra={}, created_at=created_at or now, updated_at=now)
    session.add(lead)
    session.flush()
    # a customer a campaign reached who came back on their own: a conversion of that campaign
    if (source != "campaign" and campaign_id is None
            and attribute_leads(session, profile_id=profile_id, lead_ids=[lead.id])):
        session.expire(lead, ["campaign_id"])  # now linked to the campaign that won the customer back
    return lead


"""Leads coming in: a CSV file as people export it, leads pushed by other systems, one lead at a time.

**Files.**  A file is read the way spreadsheets and CRMs write it: UTF-8 with or
without a byte-order mark, else Windows-1252 (UTF-16 with a BOM too, which is
what Excel's "Unicode text" writes); the delimiter (``,`` ``;`` or tab) is read
from the header line.  Columns are matched to lead fields by name,
case-insensitively and ignoring spaces, ``_`` and ``-``, with the synonyms of
:data:`SYNONYMS` (``Mobile`` is the phone, ``E-mail Address`` the e-mail, ``First
name`` + ``Last name`` the name, …); an explicit ``mapping`` ``{field: column}``
wins.  Other columns are kept with the lead (``extra``).  Dates are ISO 8601, or
day and month in the order of the business's country (``3/14/2025`` in the US,
``14/3/2025`` elsewhere), with or without a time; a two-digit year is the latest
such year that is not in the future.  A file that cannot be read at all
(binary, empty, no header, no phone or e-mail column) is refused with one
sentence saying why, and nothing is written.

**Checking.**  Every row is checked first (phones to E.164 with the business's
region, e-mails validated and lower-cased, statuses 1–50 characters as written,
dates parsed, consent columns read); a file with any bad row is refused whole,
listing every bad line and why, unless the caller asks to skip invalid rows.

**Loading.**  Good rows are streamed into a temporary table (``COPY`` on
PostgreSQL) and inserted a batch at a time with one statement each, inside a
savepoint; rows identical to a lead already stored, or to an earlier row of the
file, are counted as duplicates and skipped, so importing the same file twice
adds nothing.  In the same batch, with one statement each: the customers of the
batch are brought up to date (:mod:`core.customers_sync`), consent columns
become consent records, and rows that joined a customer already on file under a
different name are reported as ``merged``.  After the last batch, new leads of
customers a campaign reached count as its conversions and as returns
(:mod:`core.attribution`).

**Leads from other systems** (:func:`add_leads`, ``POST /api/leads``) go through
the same checks and the same loader; **one lead** (:func:`add_lead`, an agent's
call) is written directly, with its customer.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import itertools
import json
import logging
import os
import re
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from multiprocessing import get_context
from pathlib import Path
from time import perf_counter
from typing import IO, Any
from zoneinfo import ZoneInfo

from email_validator import GLOBALLY_DELIVERABLE, TEST_ENVIRONMENT, EmailNotValidError
from email_validator.rfc_constants import DOT_ATOM_TEXT, EMAIL_MAX_LENGTH
from email_validator.syntax import validate_email_domain_name
from sqlalchemy import (
    Column,
    Connection,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    Uuid,
    and_,
    exists,
    func,
    literal,
    not_,
    or_,
    select,
    true,
    union_all,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from core import nanp
from core.accounts import get_profile
from core.attribution import attribute_leads, mark_returned
from core.contacts import ContactError, normalize_email, normalize_phone
from core.customers_sync import sync_customers, sync_new_leads
from core.db import UTCDateTime, new_uuid, utcnow
from core.errors import FieldError, Invalid, NotFound
from core.models import (
    LEAD_STATUS_MAX,
    LEAD_STATUSES,
    Agent,
    Campaign,
    CampaignRecipient,
    Consent,
    Customer,
    Lead,
)

log = logging.getLogger(__name__)

COLUMNS = ("customer_name", "customer_phone", "customer_email", "status", "service_type", "created_at", "notes")
NAME_PARTS = ("first_name", "last_name")
CONSENT_COLUMNS = ("consent_call", "consent_sms", "consent_email", "consent_at", "consent_proof")
# what a column of a file can be mapped to
FIELDS = COLUMNS + NAME_PARTS + CONSENT_COLUMNS
# column names people use for each field (matched ignoring case, spaces, "_" and "-")
SYNONYMS: dict[str, tuple[str, ...]] = {
    "customer_name": ("customer_name", "name", "full name", "customer", "client", "contact"),
    "first_name": ("first name",),
    "last_name": ("last name",),
    "customer_phone": ("customer_phone", "phone", "phone number", "mobile", "cell", "telephone", "tel"),
    "customer_email": ("customer_email", "email", "e-mail", "email address", "mail"),
    "status": ("status", "stage", "lead status"),
    "service_type": ("service_type", "service", "service type", "treatment", "product"),
    "created_at": ("created_at", "date", "created", "created at", "last visit", "visit date", "date added"),
    "notes": ("notes", "note", "comment", "comments"),
    **{name: (name,) for name in CONSENT_COLUMNS},
}
# consent column values → consent level (None: no consent recorded by this row)
CONSENT_VALUES: dict[str, str | None] = {
    "written": "express_written", "express": "express", "yes": "express", "true": "express", "1": "express",
    "no": None, "false": None, "0": None, "": None,
}
# countries whose people write the month first (3/14/2025); everywhere else the day comes first
MONTH_FIRST_REGIONS = frozenset({"US", "PR", "GU", "VI", "AS", "MP", "UM", "FM", "MH", "PW", "PH"})
SOURCE_MAX = 32
MAX_API_LEADS = 10_000  # leads in one POST /api/leads
_CANONICAL_STATUS = {s.lower(): s for s in LEAD_STATUSES}
_LIMITS = {"customer_name": 200, "service_type": 100, "notes": 10_000, "consent_proof": 10_000}
_LOAD_BATCH = 100_000  # rows loaded into the database at a time
_CHUNK = 5000  # rows checked at a time
_ANALYZE_AFTER = 10_000  # rows imported at once that warrant new planner statistics
_SEQUENTIAL_CHUNKS = 4  # a file longer than this many chunks is checked in worker processes
_SNIFF = 65_536
NO_ROWS = "the file has a header row but no leads under it"


def _header_key(name: str) -> str:
    return re.sub(r"[\s_\-]+", "", name).lower()


_FIELD_OF_HEADER = {_header_key(s): f for f, names in SYNONYMS.items() for s in names}


@dataclass
class ImportReport:
    """What an import did.  ``position`` names how a row is identified: ``line`` of a file, ``index`` of a list."""

    imported: int = 0
    duplicates: int = 0
    merged: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)
    position: str = "line"

    def as_dict(self) -> dict[str, Any]:
        return {"imported": self.imported, "duplicates": self.duplicates, "merged": self.merged,
                "rejected": self.rejected}


# --- reading a file -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Layout:
    """Which column of a file holds which lead field; the rest are kept as ``extra``."""

    columns: tuple[str, ...]  # the header as written (trimmed)
    fields: tuple[tuple[str, int], ...]  # (field, column index)
    extra: tuple[tuple[str, int], ...]  # (extra key, column index)

    def index(self, name: str) -> int:
        return dict(self.fields).get(name, -1)

    def mapping(self) -> dict[str, str | None]:
        """Every field with the column it is read from (``None``: not in this file)."""
        found = dict(self.fields)
        return {f: (self.columns[found[f]] if f in found else None) for f in FIELDS}


def resolve_layout(header: Sequence[str], mapping: Mapping[str, str] | None = None) -> Layout:
    """Match a header row to lead fields: explicit ``mapping`` first (a field mapped to ``""`` is not read
    from any column), then names and synonyms.

    Raises :class:`Invalid` (field ``mapping``) for a field that does not exist or a column the file
    does not have, and (field ``file``) when no column holds a phone number or an e-mail address."""
    columns = tuple(h.strip() for h in header)
    chosen: dict[str, int] = {}
    unread: set[str] = set()
    if mapping:
        lowered = [c.lower() for c in columns]
        for name, column in mapping.items():
            if name not in FIELDS:
                raise Invalid(f"'{name}' is not a lead field; map columns to: {', '.join(FIELDS)}", field="mapping")
            wanted = str(column or "").strip()
            if not wanted:  # "not in this file": no column is read for it, not even one its name would match
                unread.add(name)
                continue
            if wanted in columns:
                idx = columns.index(wanted)
            elif wanted.lower() in lowered:
                idx = lowered.index(wanted.lower())
            else:
                shown = ", ".join(f"'{c}'" for c in columns if c) or "none"
                raise Invalid(f"{name} is mapped to the column '{wanted}', but the file has no such column "
                              f"(its columns: {shown})", field="mapping")
            if idx in chosen.values():
                other = next(f for f, i in chosen.items() if i == idx)
                raise Invalid(f"the column '{columns[idx]}' is mapped to both {other} and {name}", field="mapping")
            chosen[name] = idx
    for idx, column in enumerate(columns):
        target = _FIELD_OF_HEADER.get(_header_key(column))
        if target is not None and target not in chosen and target not in unread and idx not in chosen.values():
            chosen[target] = idx
    if "customer_phone" not in chosen and "customer_email" not in chosen:
        shown = ", ".join(f"'{c}'" for c in columns if c) or "none"
        raise Invalid("the file has no phone or e-mail column: name one customer_phone or customer_email (or "
                      "Phone, Mobile, E-mail, …), or map one of its columns to it "
                      f"(its columns: {shown})", field="file")
    used = set(chosen.values())
    extra = tuple((c.lower(), i) for i, c in enumerate(columns) if i not in used)
    order = {f: n for n, f in enumerate(FIELDS)}
    return Layout(columns, tuple(sorted(chosen.items(), key=lambda kv: order[kv[0]])), extra)


def _refuse_binary(sample: bytes) -> None:
    if sample.startswith(b"PK\x03\x04") or sample.startswith(b"\xd0\xcf\x11\xe0"):
        raise Invalid("the file is an Excel workbook, not a CSV file: open it in Excel and save it as "
                      "'CSV UTF-8 (comma delimited)', then import that file", field="file")
    if b"\x00" in sample:
        raise Invalid("the file is not text (it holds binary data); export your leads as a CSV file and import "
                      "that", field="file")


def _whole_file_decodes(raw: IO[bytes], encoding: str) -> bool:
    decoder = codecs.getincrementaldecoder(encoding)()
    try:
        while chunk := raw.read(1 << 20):
            decoder.decode(chunk)
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


@dataclass
class _Opened:
    stream: IO[str]
    encoding: str  # as people call it
    own: IO[Any] | None  # what to close afterwards (a file this module opened)

    def close(self) -> None:
        """Close what was opened here; a caller's stream stays open for the caller."""
        if self.own is not None:
            self.own.close()
        elif isinstance(self.stream, io.TextIOWrapper):
            self.stream.detach()


def _open(source: str | Path | IO[str] | IO[bytes]) -> _Opened:
    """A text stream over ``source`` in the encoding its bytes are in."""
    own: IO[Any] | None = None
    if isinstance(source, (str, Path)):
        try:
            own = raw = open(source, "rb")  # noqa: SIM115
        except OSError as exc:
            raise NotFound(f"cannot read {source}: {exc.strerror}", field="file") from None
    elif isinstance(source, io.TextIOBase):
        return _Opened(source, "text", None)  # type: ignore[arg-type]
    else:
        raw = source  # type: ignore[assignment]
    if not raw.seekable():
        raw = io.BytesIO(raw.read())
    start = raw.tell()
    sample = raw.read(_SNIFF)
    raw.seek(start)
    if sample.startswith(codecs.BOM_UTF8):
        encoding, label = "utf-8-sig", "UTF-8 (with BOM)"
    elif sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encoding, label = "utf-16", "UTF-16"
    else:
        _refuse_binary(sample)
        encoding, label = "utf-8", "UTF-8"
        if not _whole_file_decodes(raw, "utf-8"):
            raw.seek(start)
            if not _whole_file_decodes(raw, "cp1252"):
                raise Invalid("the file is neither UTF-8 nor Windows-1252 text; save it as 'CSV UTF-8' and "
                              "import it again", field="file")
            encoding, label = "cp1252", "Windows-1252"
        raw.seek(start)
    stream = io.TextIOWrapper(raw, encoding=encoding, newline="")  # type: ignore[arg-type]
    return _Opened(stream, label, stream if own is not None else None)


DELIMITERS = {",": "comma", ";": "semicolon", "\t": "tab"}


def _delimiter(first_line: str) -> str:
    counts = {d: first_line.count(d) for d in DELIMITERS}
    best = max(counts, key=lambda d: counts[d])  # ties: the order of DELIMITERS
    return best if counts[best] else ","


def _reader(stream: IO[str]) -> tuple[Any, str]:
    """A CSV reader over ``stream`` with its delimiter detected; refuses an empty file."""
    first = stream.readline()
    if first.startswith("\ufeff"):
        first = first[1:]
    if not first.strip():
        raise Invalid(f"the file is empty; its first line must name the columns (e.g. {', '.join(COLUMNS)})",
                      field="file")
    delimiter = _delimiter(first)
    return csv.reader(itertools.chain([first], stream), delimiter=delimiter), delimiter


def _chunks(reader: Any) -> Iterator[list[tuple[int, list[str]]]]:
    """The data rows in chunks of (line number, fields); blank lines are skipped."""
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


@dataclass(frozen=True)
class FilePreview:
    """What the import will read from a file, before importing it (the dashboard's mapping step)."""

    encoding: str
    delimiter: str  # "comma", "semicolon" or "tab"
    columns: list[str]
    mapping: dict[str, str | None]  # field → column (None: not in the file)
    rows: list[dict[str, str]]  # the first rows, field → value, under the chosen columns


def inspect_file(source: str | Path | IO[str] | IO[bytes], *, mapping: Mapping[str, str] | None = None,
                 rows: int = 5) -> FilePreview:
    """How a file will be read: its encoding, delimiter, the column each field comes from, and its first rows.

    Raises :class:`Invalid` for a file the import would refuse as unreadable."""
    opened = _open(source)
    try:
        reader, delimiter = _reader(opened.stream)
        header = next(reader, None) or []
        layout = resolve_layout(header, mapping)
        sample: list[dict[str, str]] = []
        for fields in reader:
            if len(sample) >= rows:
                break
            if any(f.strip() for f in fields):
                sample.append({f: (fields[i].strip() if i < len(fields) else "") for f, i in layout.fields})
        if not sample:
            raise Invalid(NO_ROWS, field="file")
        return FilePreview(opened.encoding, DELIMITERS[delimiter], list(layout.columns), layout.mapping(), sample)
    except UnicodeDecodeError as exc:
        raise Invalid(f"the file cannot be read as {opened.encoding} text ({exc.reason})", field="file") from None
    except csv.Error as exc:
        raise Invalid(f"the file is not valid CSV: {exc}", field="file") from None
    finally:
        opened.close()


# --- checking a row ----------------------------------------------------------------------------------

# A checked row, in the staging table's column order:
# (line, contact_key, name, phone, email, status, service_type, notes, extra JSON, created_at, fingerprint,
#  timezone, agent_id, source, consent_call, consent_sms, consent_email, consent_at, consent_proof)
_Staged = tuple[Any, ...]
# A rejected row: (line, error)
_Rejected = tuple[int, str]


class _RowError(ValueError):
    """One row is not acceptable: ``problems`` are (field, message, text as a file's report shows it)."""

    def __init__(self, problems: list[tuple[str, str, str]]) -> None:
        super().__init__("; ".join(text for _f, _m, text in problems))
        self.problems = problems


def _problem(name: str, message: str) -> tuple[str, str, str]:
    return (name, message, f"{name}: {message}")


_REGIONAL = re.compile(r"(\d{1,2})[/.\-](\d{1,2})[/.\-](\d{4}|\d{2})"
                       r"(?:[ T]+(\d{1,2}):(\d{2})(?::(\d{2}))?\s*([AaPp][Mm])?)?")
# 2025/03/14 (year first is never ambiguous)
_YEAR_FIRST = re.compile(r"(\d{4})[/.](\d{1,2})[/.](\d{1,2})(?:[ T]+(\d{1,2}):(\d{2})(?::(\d{2}))?\s*([AaPp][Mm])?)?")


def _year(text: str, now: datetime) -> int:
    if len(text) == 4:
        return int(text)
    # two digits: the latest year ending in them that is not in the future (25 → 2025, 98 → 1998)
    year = now.year - now.year % 100 + int(text)
    return year if year <= now.year else year - 100


def parse_when(raw: str, *, tz: ZoneInfo, month_first: bool, now: datetime, name: str = "created_at") -> datetime:
    """A date or date-time as people write it (see the module's docstring), in UTC; local times are
    the business's.  Raises ``ValueError`` with the sentence to show."""
    order, example = ("month/day/year", "3/14/2025") if month_first else ("day/month/year", "14/3/2025")
    value: datetime | None = None
    if raw[:4].isdigit():
        try:
            value = datetime.combine(date.fromisoformat(raw), time(), tz) if len(raw) == 10 and raw[4] == "-" \
                else datetime.fromisoformat(raw)
        except ValueError:
            value = None
    if value is None:
        match = _REGIONAL.fullmatch(raw)
        year_first = _YEAR_FIRST.fullmatch(raw) if match is None else None
        if match is None and year_first is None:
            raise ValueError(f"{raw!r} is not a date this import reads (e.g. 2025-03-14, 2025-03-14T15:30:00 or "
                             f"{example})")
        if match is not None:
            first, second, year, hour, minute, second_s, half = match.groups()
            month, day = (int(first), int(second)) if month_first else (int(second), int(first))
        else:
            assert year_first is not None
            year, first, second, hour, minute, second_s, half = year_first.groups()
            month, day = int(first), int(second)
        h = int(hour or 0)
        if half is not None:
            if not 1 <= h <= 12:
                raise ValueError(f"{raw!r} has an hour that is not 1–12 before {half.upper()}")
            h = h % 12 + (12 if half.lower() == "pm" else 0)
        try:
            value = datetime(_year(year, now), month, day, h, int(minute or 0), int(second_s or 0), tzinfo=tz)
        except ValueError:
            raise ValueError(f"{raw!r} is not a date in {order} order, the order used in this business's "
                             f"country (write it as 2025-03-14 or {example})") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=tz)
    try:
        value = value.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"{raw!r} is outside the range of dates this service handles") from None
    if value > now + timedelta(days=1):
        raise ValueError(f"{raw!r} is in the future")
    return value


_DOMAINS: dict[str, str | None] = {}  # domain → its normalized form, or None when it is not valid
_ASCII_DOMAIN = re.compile(r"[A-Za-z0-9.\-]+")


def fast_email(raw: str) -> str:
    """:func:`core.contacts.normalize_email`, exactly, with the common case done without the full parse.

    A plain ASCII address (one ``@``, a dot-atom before it, letters, digits, dots and hyphens after)
    is checked the way ``email_validator`` checks it — the local part by its own dot-atom rule, the
    domain by its own domain function (once per domain), the lengths by its limits; anything else,
    and every refusal, goes through :func:`normalize_email` itself, so the answer and the message are
    the same."""
    text = raw.strip()
    local, at, domain = text.partition("@")
    if at and text.isascii() and "@" not in domain and DOT_ATOM_TEXT.match(local) \
            and _ASCII_DOMAIN.fullmatch(domain):
        normalized = _DOMAINS.get(domain, "")
        if normalized == "":
            try:
                info = validate_email_domain_name(domain, test_environment=TEST_ENVIRONMENT,
                                                  globally_deliverable=GLOBALLY_DELIVERABLE)
            except EmailNotValidError:
                normalized = None
            else:
                normalized = info["domain"] if info["domain"] == info["ascii_domain"] else None
            if len(_DOMAINS) >= 100_000:
                _DOMAINS.clear()
            _DOMAINS[domain] = normalized
        if normalized is not None and len(text) <= EMAIL_MAX_LENGTH \
                and len(local) + 1 + len(normalized) <= EMAIL_MAX_LENGTH:
            return f"{local}@{normalized}".lower()
    return normalize_email(raw)


@dataclass(frozen=True)
class _Context:
    """What checking a row needs to know besides the row."""

    region: str
    tz: ZoneInfo
    month_first: bool
    now: datetime
    agent_id: uuid.UUID | None
    source: str
    copy_text: bool = False  # give good rows as lines of PostgreSQL COPY text (cheap to pass between processes)

    @property
    def agent_text(self) -> str:
        return str(self.agent_id) if self.agent_id else ""


_EMAILS: dict[str, str] = {}  # an address as written → normalized (a customer's leads repeat it)


def _email(raw: str) -> str:
    found = _EMAILS.get(raw)
    if found is None:
        found = fast_email(raw)
        if len(_EMAILS) >= 200_000:
            _EMAILS.clear()
        _EMAILS[raw] = found
    return found


@dataclass(frozen=True)
class _Checker:
    """Checks and normalizes rows; picklable, so big files can be checked in worker processes."""

    layout: Layout
    region: str
    tz_name: str
    now: datetime
    agent_id: uuid.UUID | None
    source: str = "import"
    copy_text: bool = False  # give good rows as lines of PostgreSQL COPY text (cheap to pass between processes)

    def __call__(self, chunk: list[tuple[int, list[str]]]) -> list[_Staged | str | _Rejected]:
        ctx = _Context(self.region, ZoneInfo(self.tz_name), self.region.upper() in MONTH_FIRST_REGIONS, self.now,
                       self.agent_id, self.source, self.copy_text)
        width = len(self.layout.columns)
        at = dict(self.layout.fields)
        name_i, first_i, last_i = at.get("customer_name", -1), at.get("first_name", -1), at.get("last_name", -1)
        phone_i, email_i, status_i = at.get("customer_phone", -1), at.get("customer_email", -1), at.get("status", -1)
        service_i, created_i, notes_i = at.get("service_type", -1), at.get("created_at", -1), at.get("notes", -1)
        consent = [at.get(f, -1) for f in CONSENT_COLUMNS] if any(f in at for f in CONSENT_COLUMNS) else None
        extra = self.layout.extra
        out: list[_Staged | str | _Rejected] = []
        for line, fields in chunk:
            n = len(fields)
            if n > width:
                out.append((line, f"has {n} fields but the header names {width}"))
                continue
            if n < width:
                fields = fields + [""] * (width - n)
            name = fields[name_i].strip() if name_i >= 0 else ""
            if not name and (first_i >= 0 or last_i >= 0):
                name = " ".join(p for p in (fields[first_i].strip() if first_i >= 0 else "",
                                            fields[last_i].strip() if last_i >= 0 else "") if p)
            try:
                out.append(check_row(
                    line, name, fields[phone_i].strip() if phone_i >= 0 else "",
                    fields[email_i].strip() if email_i >= 0 else "",
                    fields[status_i].strip() if status_i >= 0 else "",
                    fields[service_i].strip() if service_i >= 0 else "",
                    fields[created_i].strip() if created_i >= 0 else "",
                    fields[notes_i].strip() if notes_i >= 0 else "",
                    [(k, fields[i].strip()) for k, i in extra] if extra else (),
                    [fields[i].strip() if i >= 0 else "" for i in consent] if consent is not None else None, ctx))
            except _RowError as exc:
                out.append((line, str(exc)))
        return out


def check_lead(line: int, values: Mapping[str, str], extras: Iterable[tuple[str, str]], *, region: str, tz: ZoneInfo,
               month_first: bool, now: datetime, agent_id: uuid.UUID | None, source: str) -> _Staged:
    """One lead (``values``: field → text) checked and normalized into a staged row, or :class:`_RowError`
    listing every problem."""
    consent = [values.get(f, "") for f in CONSENT_COLUMNS]
    row = check_row(line, values.get("customer_name", ""), values.get("customer_phone", ""),
                    values.get("customer_email", ""), values.get("status", ""), values.get("service_type", ""),
                    values.get("created_at", ""), values.get("notes", ""), list(extras),
                    consent if any(consent) else None, _Context(region, tz, month_first, now, agent_id, source))
    assert isinstance(row, tuple)
    return row


_NO_CONSENT = (None, None, None, None, None)
_NO_CONSENT_TEXT = "\t".join(["\\N"] * 5)


def check_row(line: int, name: str, raw_phone: str, raw_email: str, status: str, service: str, raw_created: str,
              notes: str, extras: Iterable[tuple[str, str]], consent: list[str] | None, ctx: _Context
              ) -> _Staged | str:
    """The check of one row, its values already trimmed: a staged row (or its COPY line), or :class:`_RowError`.

    The hot loop of a big import: written for speed (no dictionaries, the COPY line built directly)."""
    problems: list[tuple[str, str, str]] | None = None
    phone = email = zone = None
    if raw_phone:
        try:
            phone, zone = nanp.normalize_with_zone(raw_phone, ctx.region)
        except ContactError as exc:
            problems = [_problem("customer_phone", str(exc))]
    if raw_email:
        try:
            email = _email(raw_email)
        except ContactError as exc:
            problems = (problems or []) + [_problem("customer_email", str(exc))]
    elif not raw_phone:
        problems = (problems or []) + [("customer_phone", "customer_phone or customer_email is required",
                                        "customer_phone or customer_email is required")]
    if not status:
        status = "New"
    elif len(status) > LEAD_STATUS_MAX:
        problems = (problems or []) + [_problem("status", f"longer than {LEAD_STATUS_MAX} characters")]
    created = ctx.now
    if raw_created:
        try:
            created = parse_when(raw_created, tz=ctx.tz, month_first=ctx.month_first, now=ctx.now)
        except ValueError as exc:
            problems = (problems or []) + [_problem("created_at", str(exc))]
    if len(name) > 200 or len(service) > 100 or len(notes) > 10_000:
        for field_name, value in (("customer_name", name), ("service_type", service), ("notes", notes)):
            if len(value) > _LIMITS[field_name]:
                problems = (problems or []) + [_problem(field_name, f"longer than {_LIMITS[field_name]} characters")]
    given = _NO_CONSENT
    if consent is not None:
        given, more = _consents(consent, raw_phone, raw_email, ctx)
        if more:
            problems = (problems or []) + more
    if problems:
        raise _RowError(problems)
    extra_json = "{}"
    if extras:
        extra = {k: v for k, v in extras if v}
        if extra:
            extra_json = json.dumps(extra, sort_keys=True)
    created_text = created.isoformat()
    # one lead written two ways (a status's case, a phone's punctuation) is one lead
    fingerprint = hashlib.sha1("\x1f".join((
        phone or "", email or "", name, _CANONICAL_STATUS.get(status.lower(), status.lower()), service, notes,
        created_text, ctx.agent_text, extra_json)).encode("utf-8")).hexdigest()
    if not ctx.copy_text:
        return (line, phone or email, name or None, phone, email, status, service or None, notes or None, extra_json,
                created, fingerprint, zone, ctx.agent_id, ctx.source, *given)
    text = "\t".join((str(line), phone or email or "", name or "\\N", phone or "\\N", email or "\\N", status,
                      service or "\\N", notes or "\\N", extra_json, created_text, fingerprint, zone or "\\N",
                      ctx.agent_text or "\\N", ctx.source,
                      _NO_CONSENT_TEXT if given is _NO_CONSENT else "\t".join(
                          "\\N" if v is None else (v.isoformat() if isinstance(v, datetime) else v) for v in given)))
    nulls = (not name) + (not phone) + (not email) + (not service) + (not notes) + (not zone) + (not ctx.agent_id) \
        + (5 if given is _NO_CONSENT else sum(v is None for v in given))
    # each NULL wrote one backslash; any other backslash, tab or line break must be escaped
    if text.count("\\") != nulls or "\n" in text or "\r" in text or text.count("\t") != 18:
        return _copy_line((line, phone or email, name or None, phone, email, status, service or None, notes or None,
                           extra_json, created, fingerprint, zone, ctx.agent_id, ctx.source, *given))
    return text + "\n"


def _consents(values: list[str], raw_phone: str, raw_email: str, ctx: _Context
              ) -> tuple[tuple[Any, ...], list[tuple[str, str, str]]]:
    """The consent columns of a row: (call, sms, email levels, consent_at, proof) and the problems found."""
    problems: list[tuple[str, str, str]] = []
    levels: list[str | None] = []
    for channel, raw in zip(("call", "sms", "email"), values[:3], strict=True):
        key = raw.lower()
        if key not in CONSENT_VALUES:
            problems.append(_problem(f"consent_{channel}", f"{raw!r} is not one of written, express, yes, true, 1, "
                                                           "no, false, 0"))
            levels.append(None)
            continue
        level = CONSENT_VALUES[key]
        if level is not None and not (raw_email if channel == "email" else raw_phone):
            need = "an e-mail address" if channel == "email" else "a phone number"
            problems.append(_problem(f"consent_{channel}", f"consent to be reached this way needs {need}"))
        levels.append(level)
    consent_at = None
    if values[3]:
        try:
            consent_at = parse_when(values[3], tz=ctx.tz, month_first=ctx.month_first, now=ctx.now, name="consent_at")
        except ValueError as exc:
            problems.append(_problem("consent_at", str(exc)))
    if len(values[4]) > _LIMITS["consent_proof"]:
        problems.append(_problem("consent_proof", f"longer than {_LIMITS['consent_proof']} characters"))
    return (levels[0], levels[1], levels[2], consent_at, values[4] or None), problems


_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_text(value: Any) -> str:
    if value is None:
        return "\\N"
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def _copy_line(row: _Staged) -> str:
    """One staged row in PostgreSQL's COPY text format, every value escaped."""
    return "\t".join(_copy_text(v).translate(_COPY_ESCAPES) if v is not None else "\\N" for v in row) + "\n"


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


# --- loading ----------------------------------------------------------------------------------------------

_stage_meta = MetaData()
_stage = Table(
    "lead_import_stage", _stage_meta,
    Column("line", Integer), Column("contact_key", String), Column("customer_name", String),
    Column("customer_phone", String), Column("customer_email", String), Column("status", String),
    Column("service_type", String), Column("notes", Text), Column("extra", Text),
    Column("created_at", UTCDateTime()), Column("fingerprint", String), Column("timezone", String),
    Column("agent_id", Uuid), Column("source", String), Column("consent_call", String),
    Column("consent_sms", String), Column("consent_email", String), Column("consent_at", UTCDateTime()),
    Column("consent_proof", Text),
    prefixes=["TEMPORARY"],
)
_STAGE_COLS = [c.name for c in _stage.columns]
# the fingerprints of every batch, kept only when the import may convert or bring back a campaign's recipients
_loaded = Table("lead_import_loaded", _stage_meta, Column("fingerprint", String), prefixes=["TEMPORARY"])
# each customer the import touches as it was before (for ``merged``), kept only when the business had customers
_prior = Table("lead_import_prior", _stage_meta, Column("contact_key", String, primary_key=True),
               Column("customer_id", Uuid), Column("customer_name", String), prefixes=["TEMPORARY"])
# the leads each batch inserted (PostgreSQL): their customers are made from them
_new = Table("lead_import_new", _stage_meta, Column("contact_key", String), Column("id", Uuid),
             Column("customer_name", String), Column("customer_phone", String), Column("customer_email", String),
             Column("status", String), Column("agent_id", Uuid), Column("service_type", String),
             Column("created_at", UTCDateTime()), prefixes=["TEMPORARY"])
_TEMP_TABLES = (_stage, _loaded, _prior, _new)
_SAVEPOINT = "lead_import"
_WORK_MEM = "64MB"
_SQLITE_TIME = "%Y-%m-%d %H:%M:%S.%f"  # the text form SQLAlchemy's SQLite DateTime stores and compares


def _sqlite_row(v: _Staged) -> tuple[Any, ...]:
    return (*v[:9], v[9].strftime(_SQLITE_TIME), v[10], v[11], v[12].hex if v[12] else None, *v[13:17],
            v[17].strftime(_SQLITE_TIME) if v[17] else None, v[18])


class _Loader:
    """Moves checked rows into ``leads`` in batches, inside a savepoint of the caller's transaction.

    Each batch is staged in a temporary table (``COPY`` on PostgreSQL) and
    inserted with one ``INSERT … SELECT`` that skips rows already stored; its
    customers, consents and merges follow with one statement each.  On
    PostgreSQL the database loads one batch in a background thread while the
    next one is being checked, so the server and the checking processes work
    at the same time; on SQLite batches load in line.  :meth:`cancel` (a bad
    row in an all-or-nothing import) and :meth:`abandon` (an error) roll the
    savepoint back, so nothing of the file stays.
    """

    def __init__(self, session: Session, *, profile_id: uuid.UUID, now: datetime, batch_rows: int,
                 consents: bool) -> None:
        self.session, self.profile_id, self.now = session, profile_id, now
        self.batch_rows = batch_rows
        self.consents = consents
        self.pg = session.get_bind().dialect.name == "postgresql"
        self.conn = conn = session.connection()  # the loading thread uses it while this one only checks rows
        r = CampaignRecipient
        # a business that never reached anybody (a first import) has no conversions or returns to find
        self.attribute = bool(session.scalar(select(exists().where(
            r.profile_id == profile_id, or_(r.sent_at.is_not(None), r.status == "holdout")))))
        # nobody can be merged into a customer of a business that had none
        self.track_merged = bool(session.scalar(select(exists().where(Customer.profile_id == profile_id))))
        conn.exec_driver_sql(f"SAVEPOINT {_SAVEPOINT}")
        if self.pg:  # a batch sorts its rows a few times: in memory, not in temporary files (this transaction only)
            conn.exec_driver_sql(f"SELECT set_config('work_mem', '{_WORK_MEM}', true)")
        self.open = True
        for table in _TEMP_TABLES:
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {table.name}")
            table.create(conn)
        self.staged = self.imported = 0
        self.merged: list[tuple[int, uuid.UUID, str | None]] = []
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
        """Stage one batch and write it (runs in the loading thread on PostgreSQL)."""
        conn = self.conn
        conn.exec_driver_sql(f"{'TRUNCATE' if self.pg else 'DELETE FROM'} {_stage.name}")
        driver = conn.connection.driver_connection
        if self.pg:
            conn.exec_driver_sql(f"TRUNCATE {_new.name}")
            with driver.cursor() as cursor, cursor.copy(  # type: ignore[union-attr]
                    f"COPY {_stage.name} ({', '.join(_STAGE_COLS)}) FROM STDIN") as copy:
                for values in batch:
                    copy.write(values if isinstance(values, str) else _copy_line(values))
        else:
            driver.executemany(  # type: ignore[union-attr]
                f"INSERT INTO {_stage.name} ({', '.join(_STAGE_COLS)}) "
                f"VALUES ({', '.join('?' for _ in _STAGE_COLS)})",
                [_sqlite_row(v) for v in batch if not isinstance(v, str)])
        if self.track_merged:
            self.merged += _merged_rows(conn, profile_id=self.profile_id)
        inserted = _insert_staged(conn, pg=self.pg, profile_id=self.profile_id, now=self.now)
        s = _stage.c
        zones = select(s.contact_key, func.max(s.timezone).label("timezone")).group_by(s.contact_key)
        if inserted and self.pg:
            sync_new_leads(conn, profile_id=self.profile_id, rows=_new, zones=zones, now=self.now)
        elif inserted:
            sync_customers(conn, profile_id=self.profile_id, keys=select(s.contact_key).distinct(), zones=zones,
                           now=self.now)
        if self.consents:
            _insert_consents(conn, pg=self.pg, profile_id=self.profile_id, now=self.now)
        if self.attribute and inserted:
            conn.execute(_loaded.insert().from_select(["fingerprint"], select(s.fingerprint)))
        return inserted

    def finish(self) -> int:
        """Load what is left and keep it; the number of rows inserted (the rest were duplicates)."""
        self._send()
        self._wait()
        if self.attribute and self.imported:
            # customers a campaign reached who came back: conversions of that campaign, and returns
            new_leads = select(Lead.id).where(Lead.profile_id == self.profile_id,
                                              Lead.fingerprint.in_(select(_loaded.c.fingerprint)))
            attribute_leads(self.session, profile_id=self.profile_id, now=self.now, lead_ids=new_leads)
            mark_returned(self.session, profile_id=self.profile_id, now=self.now, lead_ids=new_leads)
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
            for table in _TEMP_TABLES:
                conn.exec_driver_sql(f"DROP TABLE {table.name}")
            conn.exec_driver_sql(f"RELEASE SAVEPOINT {_SAVEPOINT}")
        else:  # also drops the temporary tables, created after the savepoint
            conn.exec_driver_sql(f"ROLLBACK TO SAVEPOINT {_SAVEPOINT}")
            conn.exec_driver_sql(f"RELEASE SAVEPOINT {_SAVEPOINT}")
            self.imported = 0
            self.merged = []


def _merged_rows(conn: Connection, *, profile_id: uuid.UUID) -> list[tuple[int, uuid.UUID, str | None]]:
    """Rows of the staged batch that join a customer already on file before this import under another name.

    Each customer the import touches is remembered as it was when the import first reached it, so
    the answer does not depend on how the file is cut into batches.  Rows that duplicate a stored
    lead join nobody; a row without a name is no conflict."""
    s, p, c = _stage.c, _prior.c, Customer
    keys = select(s.contact_key).distinct().subquery("k")
    conn.execute(_prior.insert().from_select(
        ["contact_key", "customer_id", "customer_name"],
        select(keys.c.contact_key, c.id, c.customer_name).select_from(keys)
        .outerjoin(c, and_(c.profile_id == profile_id, c.contact_key == keys.c.contact_key))
        .where(~exists().where(p.contact_key == keys.c.contact_key))))
    rows = conn.execute(
        select(func.min(s.line), p.customer_id, p.customer_name)
        .select_from(_stage.join(_prior, p.contact_key == s.contact_key))
        .where(p.customer_id.is_not(None), s.customer_name.is_not(None), p.customer_name.is_not(None),
               func.lower(func.trim(s.customer_name)) != func.lower(func.trim(p.customer_name)),
               ~exists().where(Lead.profile_id == profile_id, Lead.fingerprint == s.fingerprint))
        .group_by(s.fingerprint, p.customer_id, p.customer_name)).all()
    return [(int(line), cid, name) for line, cid, name in rows]


def _insert_staged(conn: Connection, *, pg: bool, profile_id: uuid.UUID, now: datetime) -> int:
    s = _stage.c
    leads = Lead.__table__
    rows = select(
        new_uuid(), literal(profile_id), s.agent_id, s.contact_key, s.customer_name, s.customer_phone,
        s.customer_email, s.status, s.service_type, s.notes,
        func.cast(s.extra, leads.c.extra.type) if pg else s.extra,
        literal({}, leads.c.structured_data.type), s.source, s.fingerprint, s.created_at,
        literal(now, leads.c.updated_at.type),
    ).where(true()).order_by(s.contact_key, s.created_at)  # index-friendly insertion order
    cols = ["id", "profile_id", "agent_id", "contact_key", "customer_name", "customer_phone", "customer_email",
            "status", "service_type", "notes", "extra", "structured_data", "source", "fingerprint", "created_at",
            "updated_at"]
    stmt = (postgresql.insert(leads) if pg else sqlite.insert(leads)).from_select(cols, rows).on_conflict_do_nothing(
        index_elements=["profile_id", "fingerprint"])
    if pg:  # and what was inserted, for its customers
        names = [column.name for column in _new.columns]
        inserted = stmt.returning(*[leads.c[name] for name in names]).cte("inserted")
        stmt = _new.insert().from_select(names, select(inserted))
    return int(conn.execute(stmt.execution_options(preserve_rowcount=True)).rowcount)


def _insert_consents(conn: Connection, *, pg: bool, profile_id: uuid.UUID, now: datetime) -> int:
    """Consent columns of the staged batch → consent records (source ``import``), one statement; a consent
    already recorded (same contact, channel, level and time, not revoked) is not recorded twice."""
    s = _stage.c
    captured = func.coalesce(s.consent_at, s.created_at)
    parts = [select(contact.label("contact"), literal(channel).label("channel"), level.label("level"),
                    s.consent_proof.label("proof"), captured.label("captured_at")).where(level.is_not(None))
             for channel, contact, level in (("call", s.customer_phone, s.consent_call),
                                             ("sms", s.customer_phone, s.consent_sms),
                                             ("email", s.customer_email, s.consent_email))]
    given = union_all(*parts).subquery("given")
    firsts = (select(given.c.contact, given.c.channel, given.c.level, func.max(given.c.proof).label("proof"),
                     given.c.captured_at)
              .group_by(given.c.contact, given.c.channel, given.c.level, given.c.captured_at).subquery("firsts"))
    k = Consent
    table = Consent.__table__
    rows = select(new_uuid(), literal(profile_id, table.c.profile_id.type), firsts.c.contact, firsts.c.channel,
                  firsts.c.level, literal("import"), firsts.c.proof, firsts.c.captured_at,
                  literal(now, UTCDateTime())).where(not_(exists().where(
                      k.profile_id == profile_id, k.contact == firsts.c.contact, k.channel == firsts.c.channel,
                      k.level == firsts.c.level, k.captured_at == firsts.c.captured_at, k.revoked_at.is_(None))))
    stmt = table.insert().from_select(["id", "profile_id", "contact", "channel", "level", "source", "proof",
                                       "captured_at", "created_at"], rows)
    return int(conn.execute(stmt.execution_options(preserve_rowcount=True)).rowcount or 0)


def _report_merged(session: Session, report: ImportReport, merged: list[tuple[int, uuid.UUID, str | None]]) -> None:
    report.merged = [{report.position: line, "customer_id": str(cid), "customer_name": name}
                     for line, cid, name in sorted(merged, key=lambda m: m[0])]


def _load_all(session: Session, *, profile_id: uuid.UUID, now: datetime, report: ImportReport,
              rows: Iterable[_Staged | str | _Rejected], skip_invalid: bool, consents: bool) -> int:
    """Feed checked rows to a loader; fills ``report``; returns how many rows were looked at."""
    loader = _Loader(session, profile_id=profile_id, now=now, batch_rows=_LOAD_BATCH, consents=consents)
    finished = False
    done = 0
    try:
        for item in rows:
            if isinstance(item, tuple) and len(item) == 2:
                report.rejected.append({report.position: item[0], "error": item[1]})
                if not skip_invalid:
                    loader.cancel()  # all or nothing: stop loading, keep checking to list every bad row
            elif skip_invalid or not report.rejected:
                loader.add(item)
            done += 1
        if done == 0:
            raise Invalid(NO_ROWS, field="file")
        if loader.open:
            report.imported = loader.finish()
            report.duplicates = loader.staged - report.imported
            _report_merged(session, report, loader.merged)
            if report.imported >= _ANALYZE_AFTER and loader.pg:
                # fresh planner statistics: without them the next selection over these rows
                # can pick a plan hundreds of times slower
                session.connection().exec_driver_sql("ANALYZE leads")
                session.connection().exec_driver_sql("ANALYZE customers")
        finished = True
        return done
    finally:
        if not finished:
            loader.abandon()


def import_leads(
    session: Session, *, profile_id: uuid.UUID, source: str | Path | IO[str] | IO[bytes],
    agent_id: uuid.UUID | None = None, skip_invalid: bool = False, mapping: Mapping[str, str] | None = None,
    progress: Callable[[int], None] | None = None, now: datetime | None = None,
) -> ImportReport:
    """Import leads from a CSV file (path or open file) into the profile.

    ``mapping`` (``{field: column}``) names the column of a field when its name says nothing (see
    :data:`FIELDS`).  Returns what happened; writes nothing when a row is rejected and
    ``skip_invalid`` is false.  The caller's transaction commits the import.
    """
    profile = get_profile(session, profile_id=profile_id)
    _check_own(session, Agent, agent_id, profile_id, field="agent_id", what="agent")
    now = now or utcnow()
    report = ImportReport()
    opened = _open(source)
    started = perf_counter()
    done = 0
    try:
        try:
            reader, _delim = _reader(opened.stream)
            header = next(reader, None) or []
            layout = resolve_layout(header, mapping)
            checker = _Checker(layout, profile.default_region, profile.timezone, now, agent_id,
                               copy_text=session.get_bind().dialect.name == "postgresql")

            def rows() -> Iterator[_Staged | str | _Rejected]:
                nonlocal done
                for results in _checked(checker, _chunks(reader)):
                    yield from results
                    done += len(results)
                    if progress is not None:
                        progress(done)

            _load_all(session, profile_id=profile_id, now=now, report=report, rows=rows(),
                      skip_invalid=skip_invalid, consents=any(f in CONSENT_COLUMNS for f, _i in layout.fields))
        except UnicodeDecodeError as exc:
            raise Invalid(f"the file cannot be read as {opened.encoding} text ({exc.reason} at byte {exc.start})",
                          field="file") from None
        except csv.Error as exc:
            raise Invalid(f"the file is not valid CSV: {exc}", field="file") from None
        log.info("lead import for %s: %d rows checked and %d inserted in %.1f s, %d rejected", profile_id, done,
                 report.imported, perf_counter() - started, len(report.rejected))
        return report
    finally:
        opened.close()


def add_leads(session: Session, *, profile_id: uuid.UUID, leads: Sequence[Mapping[str, Any]],
              skip_invalid: bool = False, now: datetime | None = None) -> ImportReport:
    """Leads another system pushes (``POST /api/leads``): the checks and the loading of a file, one
    lead per entry (fields: :data:`COLUMNS`, ``agent_id`` and ``source``).

    All or nothing: a bad lead refuses the whole request with :class:`Invalid` naming
    ``leads.<index>.<field>`` — unless ``skip_invalid``, which imports the good ones and lists the
    others in ``rejected``.  The caller's transaction commits."""
    profile = get_profile(session, profile_id=profile_id)
    if not 1 <= len(leads) <= MAX_API_LEADS:
        raise Invalid(f"send between 1 and {MAX_API_LEADS:,} leads at a time", field="leads")
    now = now or utcnow()
    tz = ZoneInfo(profile.timezone)
    month_first = profile.default_region.upper() in MONTH_FIRST_REGIONS
    wanted_agents = {a for lead in leads if (a := lead.get("agent_id")) is not None}
    own_agents = set(session.scalars(select(Agent.id).where(
        Agent.profile_id == profile_id, Agent.id.in_(wanted_agents)))) if wanted_agents else set()
    report = ImportReport(position="index")
    errors: list[FieldError] = []
    rows: list[_Staged | _Rejected] = []
    for i, lead in enumerate(leads):
        problems: list[tuple[str, str, str]] = []
        agent = lead.get("agent_id")
        if agent is not None and agent not in own_agents:
            problems.append(_problem("agent_id", f"no agent {agent} in this business"))
            agent = None
        source = str(lead.get("source") or "").strip() or "api"
        if len(source) > SOURCE_MAX:
            problems.append(_problem("source", f"longer than {SOURCE_MAX} characters"))
        elif source.lower() == "campaign":
            problems.append(_problem("source", "'campaign' is reserved for the leads campaigns record themselves"))
        values = {f: str(lead.get(f) or "").strip() for f in COLUMNS}
        try:
            staged = check_lead(i, values, (), region=profile.default_region, tz=tz, month_first=month_first,
                                now=now, agent_id=agent, source=source)
        except _RowError as exc:
            problems += exc.problems
        if problems:
            errors.extend(FieldError(f"leads.{i}.{f}" if f else f"leads.{i}", m or t) for f, m, t in problems)
            rows.append((i, "; ".join(t for _f, _m, t in problems)))
        else:
            rows.append(staged)
    if errors and not skip_invalid:
        raise Invalid(errors)
    _load_all(session, profile_id=profile_id, now=now, report=report, rows=rows, skip_invalid=True,
              consents=False)
    return report


# --- the business's statuses and counts ------------------------------------------------------------------


def customer_count(session: Session, *, profile_id: uuid.UUID) -> int:
    return int(session.scalar(select(func.count()).select_from(Customer).where(Customer.profile_id == profile_id))
               or 0)


def lead_count(session: Session, *, profile_id: uuid.UUID) -> int:
    return int(session.scalar(select(func.count()).select_from(Lead).where(Lead.profile_id == profile_id)) or 0)


def _check_own(session: Session, model: Any, object_id: uuid.UUID | None, profile_id: uuid.UUID, *,
               field: str, what: str) -> None:
    if object_id is not None and session.scalar(
            select(model.id).where(model.id == object_id, model.profile_id == profile_id)) is None:
        raise Invalid(f"no {what} {object_id} in this business", field=field)


def check_status(status: str | None) -> str:
    """A lead status as stored: the business's own word, trimmed, 1–50 characters (``New`` when empty)."""
    text = (status or "").strip() or "New"
    if len(text) > LEAD_STATUS_MAX:
        raise Invalid(f"a status is at most {LEAD_STATUS_MAX} characters", field="status")
    return text


def add_lead(session: Session, *, profile_id: uuid.UUID, customer_name: str | None = None,
             customer_phone: str | None = None, customer_email: str | None = None, status: str = "New",
             service_type: str | None = None, notes: str | None = None, agent_id: uuid.UUID | None = None,
             campaign_id: uuid.UUID | None = None, source: str = "agent", created_at: datetime | None = None,
             structured_data: dict[str, Any] | None = None) -> Lead:
    """Record one lead (an agent's call, or a conversion a campaign produced), and its customer."""
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
    status = check_status(status)
    _check_own(session, Agent, agent_id, profile_id, field="agent_id", what="agent")
    _check_own(session, Campaign, campaign_id, profile_id, field="campaign_id", what="campaign")
    now = utcnow()
    key = phone or email or ""
    lead = Lead(id=uuid.uuid4(), profile_id=profile_id, agent_id=agent_id, campaign_id=campaign_id,
                contact_key=key, customer_name=customer_name, customer_phone=phone,
                customer_email=email, status=status, service_type=service_type, notes=notes, source=source,
                structured_data=structured_data or {}, extra={}, created_at=created_at or now, updated_at=now)
    session.add(lead)
    session.flush()
    # a customer a campaign reached who came back on their own: a conversion of that campaign, and a return
    if source != "campaign" and campaign_id is None:
        if attribute_leads(session, profile_id=profile_id, lead_ids=[lead.id]):
            session.expire(lead, ["campaign_id"])  # now linked to the campaign that won the customer back
        mark_returned(session, profile_id=profile_id, lead_ids=[lead.id])
    session.flush()
    sync_customers(session, profile_id=profile_id, keys=[key], now=now)
    return lead



# --- what callers pass in ---------------------------------------------------------------------------------


def mapping_from_pairs(pairs: Iterable[str]) -> dict[str, str] | None:
    """A column mapping from ``field=column`` pairs (the command line's ``--map customer_phone="Mobile No"``)."""
    mapping: dict[str, str] = {}
    for pair in pairs:
        name, sep, column = pair.partition("=")
        if not sep or not name.strip():
            raise Invalid(f"'{pair}' is not field=column (e.g. customer_phone=\"Mobile No\"; notes= reads no "
                          "column as notes)", field="mapping")
        mapping[name.strip()] = column.strip()
    return mapping or None


def mapping_from_text(text: str | None) -> dict[str, str] | None:
    """A column mapping from JSON text (the API's and the dashboard's ``mapping``: ``{"customer_phone": "Mobile"}``)."""
    if text is None or not text.strip():
        return None
    try:
        value = json.loads(text)
    except ValueError:
        raise Invalid("mapping must be a JSON object such as {\"customer_phone\": \"Mobile No\"}",
                      field="mapping") from None
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise Invalid("mapping must be a JSON object of field names to column names, e.g. "
                      "{\"customer_phone\": \"Mobile No\"}", field="mapping")
    return value or None


def refuse_rejected(report: ImportReport) -> ImportReport:
    """An all-or-nothing import whose rows were refused, as an error naming every bad row."""
    if report.rejected:
        raise Invalid([FieldError(f"{report.position}.{r[report.position]}", r["error"]) for r in report.rejected])
    return report

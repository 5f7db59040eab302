"""The business's do-not-call list (DESIGN §10): numbers never called or texted, by any campaign.

Numbers arrive in any format — E.164, ``(305) 555-0101``, the ten-digit lines of the National
Do Not Call Registry's files — and are stored in E.164; adding a number already on the list changes
nothing.  A list or a file goes in whole or not at all: when an entry is not a phone number, every
such entry is reported (by position, or by line for a file) and nothing is added — unless the caller
asks for ``skip_invalid``, which adds the others.  Files are read a chunk at a time and each chunk is
written at once (one statement over an array on PostgreSQL) inside a savepoint that is rolled back
when the file is refused, so a registry file of millions of lines never sits in memory.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from itertools import islice
from typing import IO, Any, cast

import phonenumbers
from sqlalchemy import String, Table, Uuid, bindparam, column, delete, func, literal, select
from sqlalchemy import cast as cast_
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from core.accounts import get_profile
from core.bulk import insert_rows
from core.contacts import ContactError, normalize_phone
from core.db import UTCDateTime, in_values, new_uuid, utcnow
from core.errors import FieldError, Invalid, NotFound
from core.models import DNC_SOURCES, DncNumber

_CHUNK = 5000  # numbers normalized and inserted at a time
MAX_NUMBER_TEXT = 64  # longer entries are not phone numbers in any format
MAX_LISTED = 1000  # bad entries listed one by one (a file of garbage is counted, not echoed whole)
_t = cast(Table, DncNumber.__table__)


@dataclass
class DncReport:
    """What adding numbers did: how many were new, and the entries that are not phone numbers (the first
    :data:`MAX_LISTED` of them; ``rejected_total`` counts them all).  ``refused``: there were such entries
    and ``skip_invalid`` was not asked, so nothing was added."""

    added: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)
    rejected_total: int = 0
    refused: bool = False

    def reject(self, entry: dict[str, Any]) -> None:
        self.rejected_total += 1
        if len(self.rejected) < MAX_LISTED:
            self.rejected.append(entry)

    def as_dict(self) -> dict[str, Any]:
        return {"added": self.added, "rejected": self.rejected, "rejected_total": self.rejected_total,
                "refused": self.refused}

    def as_error(self, prefix: str) -> Invalid:
        """The refusal as a 422 naming every listed entry (``numbers.3``, ``line.12``)."""
        where = "index" if prefix == "numbers" else "line"
        errors = [FieldError(f"{prefix}.{r[where]}", f"{r['number']!r} is not a phone number"
                             if r["error"] == "not a phone number" else r["error"]) for r in self.rejected]
        if self.rejected_total > len(self.rejected):
            errors.append(FieldError(prefix, f"and {self.rejected_total - len(self.rejected):,} more entries that "
                                             "are not phone numbers"))
        errors.append(FieldError(prefix, "nothing was added; correct these entries, or ask to skip_invalid to "
                                         "add the others"))
        return Invalid(errors)


def _region(session: Session, profile_id: uuid.UUID, source: str) -> str:
    """How national numbers are read: the registry's files are of US numbers written without +1;
    the business's own list is in its own country's format."""
    region = get_profile(session, profile_id=profile_id).default_region
    return "US" if source == "national_registry" else region


def _clean(raw: str) -> str:
    # registry files and spreadsheets wrap numbers in quotes or end their lines with a comma
    return raw.strip().strip("\"',;").strip()


_PUNCTUATION = str.maketrans("", "", " ()-./,\t")


def _normalize(text: str, region: str, nanp: bool) -> str:
    """``text`` as E.164, like :func:`core.contacts.normalize_phone`, with a shortcut for the shape of
    a registry line (ten digits, ``1`` and ten, or ``+1`` and ten): checked without parsing, about
    five times faster, because a registry file has millions of lines."""
    compact = text.translate(_PUNCTUATION)
    digits = compact[1:] if compact.startswith("+") else compact
    if digits.isascii() and digits.isdigit() and (nanp or compact.startswith("+")):
        national = None
        if len(digits) == 11 and digits[0] == "1":
            national = digits[1:]
        elif len(digits) == 10 and not compact.startswith("+"):
            national = digits
        if national is not None:
            number = phonenumbers.PhoneNumber(country_code=1, national_number=int(national))
            # most are US numbers: one region's check first, then every region sharing +1 (Canada, …)
            if phonenumbers.is_valid_number_for_region(number, "US") or phonenumbers.is_valid_number(number):
                return "+1" + national
            raise ContactError(f"{text!r} is not a valid phone number (region {region})")
    return normalize_phone(text, region)


def _add(session: Session, *, profile_id: uuid.UUID, entries: Iterable[tuple[int, str]], source: str,
         region: str, where: str, now: datetime, report: DncReport, skip_invalid: bool) -> None:
    """Normalize and insert ``(position, text)`` entries a chunk at a time (blank ones are skipped), in a
    savepoint: rolled back when an entry is not a phone number and ``skip_invalid`` was not asked."""
    savepoint = session.begin_nested()
    try:
        _add_chunks(session, profile_id=profile_id, entries=entries, source=source, region=region, where=where,
                    now=now, report=report)
    except BaseException:
        savepoint.rollback()
        raise
    if report.rejected_total and not skip_invalid:
        savepoint.rollback()
        report.added, report.refused = 0, True
    else:
        savepoint.commit()


def _add_chunks(session: Session, *, profile_id: uuid.UUID, entries: Iterable[tuple[int, str]], source: str,
                region: str, where: str, now: datetime, report: DncReport) -> None:
    it = iter(entries)
    nanp = phonenumbers.country_code_for_region(region) == 1
    while chunk := list(islice(it, _CHUNK)):
        numbers: dict[str, None] = {}
        for position, raw in chunk:
            text = _clean(raw)
            if not text:
                continue
            if len(text) > MAX_NUMBER_TEXT:
                report.reject({where: position, "number": text[:MAX_NUMBER_TEXT] + "…",
                               "error": "not a phone number"})
                continue
            try:
                numbers[_normalize(text, region, nanp)] = None
            except ContactError as exc:
                report.reject({where: position, "number": text, "error": str(exc)})
        report.added += _insert(session, profile_id=profile_id, numbers=list(numbers), source=source, now=now)


def _insert(session: Session, *, profile_id: uuid.UUID, numbers: list[str], source: str, now: datetime) -> int:
    """Insert the numbers not on the list yet; how many were new.  On PostgreSQL one statement over an
    array (``INSERT … SELECT … FROM unnest(:numbers) ON CONFLICT DO NOTHING RETURNING id``)."""
    if not numbers:
        return 0
    if session.get_bind().dialect.name != "postgresql":
        rows = [{"id": uuid.uuid4(), "profile_id": profile_id, "number": n, "source": source, "created_at": now}
                for n in numbers]
        return len(insert_rows(session, _t, rows, conflict=["profile_id", "number"], returning=_t.c.id))
    given = func.unnest(cast_(bindparam("numbers", numbers, type_=ARRAY(String())), ARRAY(String()))).table_valued(
        column("number", String())).render_derived(name="given")
    chosen = select(new_uuid(), literal(profile_id, Uuid()), given.c.number, literal(source, String()),
                    literal(now, UTCDateTime()))
    stmt = (pg_insert(_t).from_select(["id", "profile_id", "number", "source", "created_at"], chosen)
            .on_conflict_do_nothing(index_elements=["profile_id", "number"]).returning(_t.c.id))
    return len(session.execute(stmt).all())


def _check_source(source: str) -> None:
    if source not in DNC_SOURCES:
        raise Invalid(f"unknown source '{source}'; allowed: {', '.join(DNC_SOURCES)}", field="source")


def add_numbers(session: Session, *, profile_id: uuid.UUID, numbers: Iterable[str], source: str,
                now: datetime | None = None, skip_invalid: bool = False) -> DncReport:
    """Put ``numbers`` (any format) on the business's do-not-call list, each once.  Entries that are not
    phone numbers are reported by ``index`` (from 0); then nothing is added (``refused``) unless
    ``skip_invalid``, which adds the others."""
    _check_source(source)
    region = _region(session, profile_id, source)
    report = DncReport()
    _add(session, profile_id=profile_id, entries=enumerate(numbers), source=source, region=region, where="index",
         now=now or utcnow(), report=report, skip_invalid=skip_invalid)
    return report


def _lines(stream: IO[str] | IO[bytes]) -> Iterator[tuple[int, str]]:
    for number, line in enumerate(cast(Iterable[str | bytes], stream), start=1):
        text = line.decode("utf-8", errors="replace") if isinstance(line, bytes) else line
        yield number, text.lstrip("\ufeff") if number == 1 else text


def import_file(session: Session, *, profile_id: uuid.UUID, stream: IO[str] | IO[bytes],
                source: str = "national_registry", now: datetime | None = None,
                skip_invalid: bool = False) -> DncReport:
    """Put every number of a file (one per line, any format; blank lines skipped) on the list, read a
    chunk at a time.  Lines that are not phone numbers are reported by ``line`` (from 1); then nothing
    is added (``refused``) unless ``skip_invalid``, which adds the others."""
    _check_source(source)
    region = _region(session, profile_id, source)
    report = DncReport()
    _add(session, profile_id=profile_id, entries=_lines(stream), source=source, region=region, where="line",
         now=now or utcnow(), report=report, skip_invalid=skip_invalid)
    return report


def dnc_among(session: Session, *, profile_id: uuid.UUID, numbers: Iterable[str | None]) -> set[str]:
    """The ``numbers`` (E.164) on the business's do-not-call list; one query for a batch."""
    wanted = sorted({n for n in numbers if n})
    if not wanted:
        return set()
    return set(session.scalars(select(DncNumber.number).where(
        DncNumber.profile_id == profile_id, in_values(session, DncNumber.number, wanted))))


def is_dnc(session: Session, *, profile_id: uuid.UUID, number: str | None) -> bool:
    """Whether ``number`` (E.164) is on the business's do-not-call list."""
    return bool(number) and bool(dnc_among(session, profile_id=profile_id, numbers=[number]))


def list_numbers(session: Session, *, profile_id: uuid.UUID, search: str | None = None, limit: int = 50,
                 offset: int = 0) -> tuple[list[DncNumber], int]:
    """A page of the list, newest first, and its total.  ``search`` matches digits anywhere in the
    number, whatever punctuation it is written with (``(305) 555`` finds ``+13055550101``)."""
    conds = [DncNumber.profile_id == profile_id]
    if search and search.strip():
        digits = "".join(ch for ch in search if ch.isdigit())
        if not digits:
            return [], 0
        conds.append(DncNumber.number.contains(digits, autoescape=True))
    total = session.scalar(select(func.count()).select_from(DncNumber).where(*conds)) or 0
    rows = session.scalars(select(DncNumber).where(*conds).order_by(DncNumber.created_at.desc(), DncNumber.number)
                           .limit(limit).offset(offset)).all()
    return list(rows), int(total)


def remove_number(session: Session, *, profile_id: uuid.UUID, number: str) -> None:
    """Take a number off the list, written in any format that reads as one on it (else :class:`NotFound`)."""
    region = get_profile(session, profile_id=profile_id).default_region
    for reading in dict.fromkeys((region, "US")):  # the business's own format, then a registry line without +1
        try:
            e164 = normalize_phone(_clean(number), reading)
        except ContactError:
            continue
        result = session.execute(delete(DncNumber).where(DncNumber.profile_id == profile_id,
                                                         DncNumber.number == e164))
        if getattr(result, "rowcount", 0):
            return
    raise NotFound("No such number on the do-not-call list.", field="number")

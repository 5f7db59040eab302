"""Exporting a campaign's recipients as CSV, streamed.

The rows are read in batches with keyset pagination over the campaign's unique
``(campaign_id, contact_key)`` index, each batch in its own short transaction:
an export of any size holds neither the whole file in memory nor a database
transaction (on SQLite, a lock) for the time the client takes to download it.
Recipients added while an export runs may or may not appear in it; none
appears twice.
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
import uuid
from collections.abc import Iterator, Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Row
from sqlalchemy.orm import Session, sessionmaker

from core.campaigns import get_campaign
from core.db import utcnow
from core.models import CampaignRecipient

EXPORT_COLUMNS = (
    "recipient_id", "customer_name", "customer_phone", "customer_email", "variant", "status", "outcome", "step",
    "attempts", "last_channel", "sent_at", "delivered_at", "answered_at", "responded_at", "converted",
    "converted_at", "error_message", "added_at",
)
_R = CampaignRecipient
_SELECTED = (_R.id, _R.contact_key, _R.customer_name, _R.customer_phone, _R.customer_email, _R.variant, _R.status,
             _R.step, _R.attempts, _R.last_channel, _R.sent_at, _R.delivered_at, _R.answered_at, _R.responded_at,
             _R.converted, _R.converted_at, _R.error_message, _R.created_at)
_PHONE = re.compile(r"^\+[0-9]{6,15}$")


def export_filename(session: Session, *, profile_id: uuid.UUID, campaign_id: uuid.UUID,
                    today: date | None = None) -> str:
    """A file name for the campaign's export (``holiday-win-back-recipients-2026-06-15.csv``).

    Raises :class:`~core.errors.NotFound` for a campaign that is not the profile's, so a
    caller can check before it starts streaming.
    """
    campaign = get_campaign(session, profile_id=profile_id, campaign_id=campaign_id)
    ascii_name = unicodedata.normalize("NFKD", campaign.name).encode("ascii", "ignore").decode("ascii")
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")[:60].strip("-") or "campaign"
    return f"{slug}-recipients-{(today or utcnow().date()).isoformat()}.csv"


def iter_recipient_rows(factory: sessionmaker[Session], *, profile_id: uuid.UUID, campaign_id: uuid.UUID,
                        batch: int = 1000) -> Iterator[Row[Any]]:
    """Every recipient of the campaign, ordered by contact, fetched ``batch`` rows at a time."""
    if batch < 1:
        raise ValueError("batch must be at least 1")
    after: str | None = None
    while True:
        stmt = select(*_SELECTED).where(_R.campaign_id == campaign_id, _R.profile_id == profile_id)
        if after is not None:
            stmt = stmt.where(_R.contact_key > after)
        with factory() as session:
            rows: Sequence[Any] = session.execute(stmt.order_by(_R.contact_key).limit(batch)).all()
        yield from rows
        if len(rows) < batch:
            return
        after = rows[-1].contact_key


def outcome_of(row: Any) -> str:
    """How far outreach got with one recipient, in a word or two."""
    if row.converted:
        return "converted"
    if row.status == "opted_out":
        return "opted out"
    if row.status == "failed":
        return "failed"
    if row.responded_at is not None:
        return "responded"
    if row.status == "answered":
        return "answered"
    if row.delivered_at is not None:
        return "delivered"
    if row.sent_at is not None:
        return "sent"
    return "queued" if row.status == "queued" else "not contacted yet"


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: Any) -> Any:
    """A value as a CSV cell a spreadsheet will not run: text starting with ``= + - @`` (or a tab or a
    carriage return) — also after leading spaces, which spreadsheets skip — gets a leading apostrophe
    (OWASP's advice); a phone number in E.164 (``+12015550123``) is left as it is."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str) and value.lstrip(" ")[:1] in _FORMULA_START and not _PHONE.match(value):
        return "'" + value
    return value


def frame_csv(frame: Any) -> str:
    """A pandas DataFrame as CSV text with every cell made safe (:func:`safe_cell`)."""
    return frame.map(safe_cell).to_csv(index=False)


_cell = safe_cell


def _csv_line(values: list[Any]) -> str:
    out = io.StringIO()
    csv.writer(out).writerow(values)
    return out.getvalue()


def iter_recipient_csv(factory: sessionmaker[Session], *, profile_id: uuid.UUID, campaign_id: uuid.UUID,
                       batch: int = 1000) -> Iterator[str]:
    """The campaign's recipients as CSV text: the header, then one chunk per batch of rows."""
    yield _csv_line(list(EXPORT_COLUMNS))
    out = io.StringIO()
    writer = csv.writer(out)
    pending = 0
    for row in iter_recipient_rows(factory, profile_id=profile_id, campaign_id=campaign_id, batch=batch):
        writer.writerow([_cell(v) for v in (
            str(row.id), row.customer_name, row.customer_phone, row.customer_email, row.variant, row.status,
            outcome_of(row), row.step, row.attempts, row.last_channel, row.sent_at, row.delivered_at,
            row.answered_at, row.responded_at, row.converted, row.converted_at, row.error_message, row.created_at,
        )])
        pending += 1
        if pending == batch:
            yield out.getvalue()
            out.seek(0)
            out.truncate()
            pending = 0
    if pending:
        yield out.getvalue()

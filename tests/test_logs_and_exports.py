"""What leaves the product besides messages (DESIGN §13, finding 9): a database error in a log names
the statement, never the customer's data bound to it; every CSV the product hands out is safe to open
in a spreadsheet, whatever a customer or an owner typed."""

from __future__ import annotations

import csv
import io
import logging
import uuid

import pandas as pd
import pytest
from sqlalchemy.exc import IntegrityError

from core.db import utcnow
from core.exports import frame_csv, iter_recipient_csv, safe_cell
from core.logs import install_redaction
from core.models import OptOut
from tests.engine import helpers as h

SECRET_EMAIL = "private.person.7741@example.com"


def test_a_database_error_in_the_log_carries_no_bound_values(session):
    """Finding 9: the statement is logged, not the values bound to it — nor the values PostgreSQL quotes in
    its ``DETAIL:`` line."""
    profile = h.business(session)
    session.commit()
    row = {"profile_id": profile.id, "contact": SECRET_EMAIL, "channel": "email", "source": "manual",
           "reason": "Jane Roe asked by phone", "created_at": utcnow()}
    session.add(OptOut(id=uuid.uuid4(), **row))
    session.commit()
    session.add(OptOut(id=uuid.uuid4(), **row))  # the same opt-out again: a unique constraint says no
    out = io.StringIO()
    handler = logging.StreamHandler(out)  # a handler of the process, as configure_logging finds them
    logging.getLogger().addHandler(handler)
    try:
        install_redaction()
        with pytest.raises(IntegrityError):
            try:
                session.commit()
            except IntegrityError as exc:
                logging.getLogger("core.test").exception("could not record the opt-out")
                logging.getLogger("core.test").error("again, as text: %s", exc)
                raise
    finally:
        logging.getLogger().removeHandler(handler)
    session.rollback()
    text = out.getvalue()
    assert text.count("INSERT INTO opt_outs") == 2  # the statement is there to debug with …
    assert SECRET_EMAIL not in text and "Jane Roe" not in text  # … the customer's data is not
    assert "parameters hidden" in text


@pytest.mark.parametrize(("value", "expected"), [
    ("=HYPERLINK(\"https://evil.example\",\"click\")", "'=HYPERLINK(\"https://evil.example\",\"click\")"),
    ("  =1+1", "'  =1+1"), (" @SUM(A1:A9)", "' @SUM(A1:A9)"), ("-2+3", "'-2+3"), ("+cmd|' /C calc'!A0", None),
    ("\t=1", "'\t=1"), ("+12015550123", "+12015550123"), ("Ann Lee", "Ann Lee"), ("", ""), (None, ""),
    (3, 3), (-3, -3), (True, "yes"),
])
def test_a_cell_a_spreadsheet_would_run_is_defused(value, expected):
    if expected is None:
        expected = "'" + value
    assert safe_cell(value) == expected


def test_the_analytics_table_download_is_defused():
    frame = pd.DataFrame({"Campaign": ["=cmd|' /C calc'!A0", " +Spring", "Winter"], "Sent": [3, 4, 5],
                          "Response rate": ["-10%", "12%", "0%"]})
    rows = list(csv.reader(io.StringIO(frame_csv(frame))))
    assert rows[0] == ["Campaign", "Sent", "Response rate"]
    assert [r[0] for r in rows[1:]] == ["'=cmd|' /C calc'!A0", "' +Spring", "Winter"]
    assert [r[2] for r in rows[1:]] == ["'-10%", "12%", "0%"]


def test_a_customers_name_in_the_results_download_is_defused(session, engine, now):
    factory = h.factory(engine)
    profile = h.business(session)
    h.add_leads(session, profile, [{"email": "ann@example.com", "name": " =HYPERLINK(\"https://evil.example\")"},
                                   {"email": "bo@example.com", "name": "Bo Kim"}], now=now)
    cid = h.campaign(session, profile, now=now)
    session.commit()
    text = "".join(iter_recipient_csv(factory, profile_id=profile.id, campaign_id=cid))
    cells = [cell for row in csv.reader(io.StringIO(text)) for cell in row]
    assert "' =HYPERLINK(\"https://evil.example\")" in cells
    assert not any(cell.lstrip(" ").startswith(("=", "@")) for cell in cells)

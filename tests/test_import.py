"""Lead import: normalization, all-or-nothing, duplicates, line numbers."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from core import leads as leads_module
from core.accounts import create_agent
from core.errors import Invalid
from core.leads import import_leads
from core.models import Lead
from tests import factories as f

HEADER = "customer_name,customer_phone,customer_email,status,service_type,created_at,notes\n"


def run(session, profile, text: str, **kw):
    return import_leads(session, profile_id=profile.id, source=io.BytesIO(text.encode("utf-8")), **kw)


def count(session, profile) -> int:
    return session.scalar(select(func.count()).select_from(Lead).where(Lead.profile_id == profile.id))


@pytest.fixture
def profile(session):
    p = f.make_profile(session, timezone="America/Chicago")
    session.commit()
    return p


def test_good_file_is_normalized(session, profile, now):
    report = run(session, profile, HEADER
                 + "Ana Li,(312) 555-0101,Ana.Li@Example.COM,closed,Color,2025-03-14,likes mornings\n"
                 + ",+44 20 7946 0958,,,,2025-03-14T15:30:00Z,\n"
                 + "Bo,,bo@example.com,New,,2025-03-14 09:15,\n", now=now)
    assert report.as_dict() == {"imported": 3, "duplicates": 0, "merged": [], "rejected": []}
    rows = {r.customer_name: r for r in session.scalars(select(Lead).where(Lead.profile_id == profile.id))}
    ana = rows["Ana Li"]
    # the status is the business's own word, stored as written
    assert (ana.customer_phone, ana.customer_email, ana.status, ana.contact_key) == (
        "+13125550101", "ana.li@example.com", "closed", "+13125550101")
    assert ana.created_at == datetime(2025, 3, 14, 5, 0, tzinfo=UTC)  # midnight in Chicago
    assert ana.source == "import" and ana.notes == "likes mornings"
    assert rows[None].customer_phone == "+442079460958" and rows[None].status == "New"
    assert rows[None].created_at == datetime(2025, 3, 14, 15, 30, tzinfo=UTC)
    assert rows["Bo"].contact_key == "bo@example.com"
    assert rows["Bo"].created_at == datetime(2025, 3, 14, 14, 15, tzinfo=UTC)


def test_bad_file_is_refused_whole_listing_every_bad_line(session, profile, now):
    report = run(session, profile, HEADER
                 + "Good,(312) 555-0101,,Closed,,2025-01-01,\n"
                 + "Bad phone,12345,,Closed,,2025-01-01,\n"
                 + "\"Multi\nline\",(312) 555-0102,,Closed,,2025-01-01,\"note\nwith lines\"\n"
                 + "Bad all,,not-an-email,Waiting for the customer to call back about the quote,,yesterday,\n"
                 + "No contact,,,,,,\n"
                 + "Too many,(312) 555-0103,,Closed,,2025-01-01,,extra,cells\n"
                 + "Future,(312) 555-0104,,Closed,,2099-01-01,\n", now=now)
    assert report.imported == 0
    lines = {r["line"]: r["error"] for r in report.rejected}
    # the quoted multi-line row occupies lines 4-6 of the file
    assert sorted(lines) == [3, 7, 8, 9, 10]
    assert "customer_phone" in lines[3] and "12345" in lines[3]
    assert "customer_email" in lines[7] and "status: longer than 50" in lines[7] and "created_at" in lines[7]
    assert "customer_phone or customer_email is required" in lines[8]
    assert "fields" in lines[9]
    assert "future" in lines[10]
    assert count(session, profile) == 0


def test_skip_invalid_imports_the_good_rows(session, profile, now):
    report = run(session, profile, HEADER + "A,(312) 555-0101,,,,,\nB,999,,,,,\nC,,c@example.com,,,,\n",
                 skip_invalid=True, now=now)
    assert report.imported == 2 and [r["line"] for r in report.rejected] == [3]
    assert count(session, profile) == 2


def test_duplicates_in_file_and_across_imports(session, profile, now):
    text = HEADER + "A,(312) 555-0101,,Closed,,2025-01-01,\nA,312-555-0101,,closed,,2025-01-01,\n" \
                    "A,(312) 555-0101,,Closed,,2025-02-01,\n"
    first = run(session, profile, text, now=now)
    assert (first.imported, first.duplicates) == (2, 1)  # the same row written two ways counts once
    second = run(session, profile, text, now=now)
    assert (second.imported, second.duplicates) == (0, 3)
    assert count(session, profile) == 2


def test_extra_columns_and_bom_and_blank_lines(session, profile, now):
    text = "\ufeffCustomer_Name, customer_email ,loyalty_tier\nAna,ana@example.com,gold\n\n,bo@example.com,\n"
    report = run(session, profile, text, now=now)
    assert report.imported == 2
    ana = session.scalars(select(Lead).where(Lead.customer_name == "Ana")).one()
    assert ana.extra == {"loyalty_tier": "gold"}


def test_agent_is_applied_and_must_belong_to_the_business(session, profile, now):
    agent = create_agent(session, profile_id=profile.id, name="Desk")
    other = create_agent(session, profile_id=f.make_profile(session).id, name="Theirs")
    run(session, profile, HEADER + "A,(312) 555-0101,,,,,\n", agent_id=agent.id, now=now)
    assert session.scalars(select(Lead.agent_id)).one() == agent.id
    with pytest.raises(Invalid) as err:
        run(session, profile, HEADER + "A,(312) 555-0101,,,,,\n", agent_id=other.id, now=now)
    assert err.value.field == "agent_id"


@pytest.mark.parametrize(("content", "words"), [
    (b"", "empty"),
    (b"first,second\nA,1\n", "no phone or e-mail column"),
    (b"customer_email\n\x00\x01\x02 broken\n", "not text"),
])
def test_unreadable_files(session, profile, now, content, words):
    with pytest.raises(Invalid) as err:
        import_leads(session, profile_id=profile.id, source=io.BytesIO(content), now=now)
    assert words in str(err.value) and err.value.field == "file"
    assert count(session, profile) == 0


def test_region_of_the_business_is_used(session, now):
    uk = f.make_profile(session, region="GB", timezone="Europe/London")
    run(session, uk, HEADER + "A,020 7946 0958,,,,,\n", now=now)
    assert session.scalars(select(Lead.customer_phone).where(Lead.profile_id == uk.id)).one() == "+442079460958"


def test_import_from_a_path(session, profile, now, tmp_path):
    path = tmp_path / "leads.csv"
    path.write_text(HEADER + "A,(312) 555-0101,,,,,\n", encoding="utf-8")
    assert import_leads(session, profile_id=profile.id, source=path, now=now).imported == 1
    with pytest.raises(Exception, match="cannot read"):
        import_leads(session, profile_id=profile.id, source=tmp_path / "missing.csv", now=now)


def test_big_file_checked_in_worker_processes_keeps_lines_and_all_or_nothing(session, profile, now):
    rows = [f"C{i},+1 312 {200 + i // 10000} {i % 10000:04d},,Closed,,2025-01-01,\n" for i in range(25_000)]
    rows[23_456] = "Broken,not a phone,,Closed,,2025-01-01,\n"  # file line 23,458
    seen: list[int] = []
    report = run(session, profile, HEADER + "".join(rows), now=now, progress=seen.append)
    assert report.imported == 0 and report.rejected == [
        {"line": 23_458, "error": "customer_phone: 'not a phone' is not a valid phone number (region US)"}]
    assert count(session, profile) == 0
    assert seen[-1] == 25_000 and seen == sorted(seen)
    report = run(session, profile, HEADER + "".join(rows), now=now, skip_invalid=True)
    assert (report.imported, len(report.rejected)) == (24_999, 1)
    assert count(session, profile) == 24_999


@pytest.fixture
def small_batches(monkeypatch):
    """Load two rows at a time, so a short file goes to the database in several batches."""
    monkeypatch.setattr(leads_module, "_LOAD_BATCH", 2)


def test_loaded_in_batches_counts_duplicates_across_batches(session, profile, now, small_batches):
    rows = ["A,(312) 555-0101,,Closed,,2025-01-01,\n", "B,(312) 555-0102,,Closed,,2025-01-01,\n",
            "C,(312) 555-0103,,Closed,,2025-01-01,\n", "A,312-555-0101,,Closed,,2025-01-01,\n",  # = row 1
            "D,,d@example.com,New,,2025-01-02,\n"]
    report = run(session, profile, HEADER + "".join(rows), now=now)
    assert report.as_dict() == {"imported": 4, "duplicates": 1, "merged": [], "rejected": []}
    session.commit()
    assert count(session, profile) == 4
    again = run(session, profile, HEADER + "".join(rows), now=now)
    assert again.as_dict() == {"imported": 0, "duplicates": 5, "merged": [], "rejected": []}


def test_a_bad_row_after_loaded_batches_keeps_nothing(session, profile, now, small_batches):
    rows = [f"C{i},(312) 555-{i:04d},,Closed,,2025-01-01,\n" for i in range(1, 8)]
    report = run(session, profile, HEADER + "".join(rows) + "Late,12345,,Closed,,2025-01-01,\n", now=now)
    assert report.imported == 0 and [r["line"] for r in report.rejected] == [9]
    session.commit()  # what a caller does with the report: nothing of the file may be in it
    assert count(session, profile) == 0
    # the session and its transaction are fine afterwards
    assert run(session, profile, HEADER + "".join(rows), now=now).imported == 7
    session.commit()
    assert count(session, profile) == 7


def test_a_broken_file_after_loaded_batches_keeps_nothing(session, profile, now, small_batches):
    rows = "".join(f"C{i},(312) 555-{i:04d},,Closed,,2025-01-01,\n" for i in range(1, 8))
    with pytest.raises(Invalid, match="not valid CSV"):  # a field no CSV reader takes, after the loaded batches
        import_leads(session, profile_id=profile.id, now=now,
                     source=io.BytesIO((HEADER + rows).encode() + b"X," + b"x" * 200_000 + b",,,,,\n"))
    assert count(session, profile) == 0
    assert run(session, profile, HEADER + rows, now=now).imported == 7
    session.commit()
    assert count(session, profile) == 7

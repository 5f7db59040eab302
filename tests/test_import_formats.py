"""Importing files as people export them: header synonyms, encodings, delimiters, regional dates, column
mapping, the merged report, consent columns, unreadable files — on SQLite and PostgreSQL (the file-reading
rules without a database)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from core import leads as leads_module
from core.config import ROOT
from core.contacts import ContactError, normalize_email
from core.errors import Invalid
from core.leads import (
    FIELDS,
    SYNONYMS,
    add_leads,
    fast_email,
    import_leads,
    inspect_file,
    mapping_from_pairs,
    mapping_from_text,
    parse_when,
    resolve_layout,
)
from core.models import Consent, Customer, Lead
from tests import factories as f

NOW = datetime(2026, 6, 15, 15, 0, tzinfo=UTC)


def run(session, profile, data: bytes | str, **kw):
    raw = data.encode("utf-8") if isinstance(data, str) else data
    return import_leads(session, profile_id=profile.id, source=io.BytesIO(raw), now=kw.pop("now", NOW), **kw)


def stored(session, profile) -> list[Lead]:
    return list(session.scalars(select(Lead).where(Lead.profile_id == profile.id)
                                .order_by(Lead.created_at, Lead.customer_phone, Lead.customer_email)))


def count(session, model, profile) -> int:
    return int(session.scalar(select(func.count()).select_from(model).where(model.profile_id == profile.id)) or 0)


@pytest.fixture
def profile(session):
    return f.make_profile(session, timezone="America/Chicago")


# --- columns -------------------------------------------------------------------------------------------


def _variants(name: str) -> list[str]:
    """How the same column name comes out of different tools."""
    return [name, name.upper(), name.title(), name.replace(" ", "_"), name.replace(" ", "-"), f"  {name}  ",
            name.replace(" ", "")]


@pytest.mark.parametrize(("field", "header"), [(field, header) for field, names in SYNONYMS.items()
                                               for name in names for header in _variants(name)])
def test_every_synonym_in_every_spelling(field, header):
    other = "Phone" if field not in ("customer_phone", "customer_email") else "Something else"
    layout = resolve_layout([other, header]) if field != "customer_phone" else resolve_layout([header, "x"])
    assert layout.mapping()[field] == header.strip()


def test_columns_people_use_are_read(session, profile):
    data = ("\ufeffFull Name;Mobile;E-mail Address;Lead Status;Treatment;Last Visit;Comments;Loyalty\n"
            "Ana Li;(312) 555-0101;Ana@Example.com;Booked;Color;3/14/2025;likes mornings;gold\n")
    report = run(session, profile, data)
    assert report.as_dict() == {"imported": 1, "duplicates": 0, "merged": [], "rejected": []}
    (ana,) = stored(session, profile)
    assert (ana.customer_name, ana.customer_phone, ana.customer_email, ana.status, ana.service_type, ana.notes) == (
        "Ana Li", "+13125550101", "ana@example.com", "Booked", "Color", "likes mornings")
    assert ana.created_at == datetime(2025, 3, 14, 5, 0, tzinfo=UTC)  # midnight in Chicago
    assert ana.extra == {"loyalty": "gold"}


def test_first_and_last_name_are_joined_unless_there_is_a_name(session, profile):
    run(session, profile, "First Name,Last Name,Name,Phone\nAna,Li,,312-555-0101\n,Lee,,312-555-0102\n"
                          "Bo,Kim,Robert Kim,312-555-0103\n")
    assert [lead.customer_name for lead in stored(session, profile)] == ["Ana Li", "Lee", "Robert Kim"]


def test_an_explicit_mapping_wins(session, profile):
    data = "Phone,Mobile No,Notes,Remarks\n312-555-0101,312-555-0199,from the form,call after 5\n"
    run(session, profile, data, mapping={"customer_phone": "mobile no", "notes": "Remarks"})
    (lead,) = stored(session, profile)
    assert (lead.customer_phone, lead.notes) == ("+13125550199", "call after 5")
    assert lead.extra == {"phone": "312-555-0101", "notes": "from the form"}  # the columns it did not read
    # a field mapped to nothing is not read from any column, not even one its name matches
    layout = resolve_layout(["Phone", "Notes"], {"notes": ""})
    assert layout.mapping()["notes"] is None and ("notes", 1) in layout.extra


@pytest.mark.parametrize(("mapping", "words"), [
    ({"telephone": "Phone"}, "'telephone' is not a lead field"),
    ({"customer_phone": "Mobile No"}, "no such column"),
    ({"customer_phone": "Phone", "notes": "Phone"}, "mapped to both"),
])
def test_a_mapping_that_cannot_be_followed_is_refused_naming_it(session, profile, mapping, words):
    with pytest.raises(Invalid) as err:
        run(session, profile, "Phone,Name\n312-555-0101,Ana\n", mapping=mapping)
    assert words in str(err.value) and err.value.field == "mapping"
    assert count(session, Lead, profile) == 0


def test_mappings_from_the_command_line_and_json():
    assert mapping_from_pairs(['customer_phone=Mobile No', "notes="]) == {"customer_phone": "Mobile No", "notes": ""}
    assert mapping_from_pairs([]) is None
    assert mapping_from_text('{"customer_phone": "Mobile No"}') == {"customer_phone": "Mobile No"}
    for bad in ("phone", "=Mobile"):
        with pytest.raises(Invalid, match="field=column"):
            mapping_from_pairs([bad])
    for bad in ("[1]", "{\"a\": 1}", "not json"):
        with pytest.raises(Invalid, match="JSON object"):
            mapping_from_text(bad)


def test_the_cli_takes_repeated_maps(db_url, session, profile, tmp_path):
    session.commit()
    path = tmp_path / "export.csv"
    path.write_text("Client,Cell No,When\nAna,312-555-0101,2025-03-14\n", encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "core", "import-leads", "--profile", str(profile.id),
                           "--map", "customer_phone=Cell No", "--map", "created_at=When", str(path)],
                          cwd=ROOT, env={**os.environ, "DATABASE_URL": db_url, "SECRET_KEY": "import-tests"},
                          capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"imported": 1, "duplicates": 0, "merged": [], "rejected": []}
    session.rollback()
    (lead,) = stored(session, profile)
    assert (lead.customer_name, lead.customer_phone, lead.created_at.date().isoformat()) == (
        "Ana", "+13125550101", "2025-03-14")


# --- encodings and delimiters ----------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "encoding", "delimiter"), [
    ("Name,Phone\nJosé Núñez,312-555-0101\n".encode(), "UTF-8", "comma"),
    (b"\xef\xbb\xbf" + "Name;Phone\nJosé Núñez;312-555-0101\n".encode(), "UTF-8 (with BOM)", "semicolon"),
    ("Name\tPhone\nJosé Núñez\t312-555-0101\n".encode("cp1252"), "Windows-1252", "tab"),
    ("Name\tPhone\r\nJosé Núñez\t312-555-0101\r\n".encode("utf-16"), "UTF-16", "tab"),  # Excel's "Unicode text"
])
def test_encodings_and_delimiters_are_detected(session, profile, raw, encoding, delimiter):
    preview = inspect_file(io.BytesIO(raw))
    assert (preview.encoding, preview.delimiter) == (encoding, delimiter)
    assert preview.rows == [{"customer_name": "José Núñez", "customer_phone": "312-555-0101"}]
    assert run(session, profile, raw).imported == 1
    assert stored(session, profile)[0].customer_name == "José Núñez"


def test_a_caller_s_stream_is_left_open(session, profile):
    stream = io.BytesIO(b"Phone\n312-555-0101\n")
    import_leads(session, profile_id=profile.id, source=stream, now=NOW)
    assert not stream.closed


@pytest.mark.parametrize(("content", "words"), [
    (b"", "empty"),
    (b"\n\n", "empty"),
    (b"Name,Phone\n", "header row but no leads"),
    (b"Name,Phone\n,\n  ,  \n", "header row but no leads"),
    (b"Name,Notes\nAna,hello\n", "no phone or e-mail column"),
    (b"PK\x03\x04\x14\x00\x06\x00" + b"\x00" * 100, "Excel workbook"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 100, "Excel workbook"),
    (b"Phone\n\x00\x01\x02\x03\xff\xfe", "not text"),
    (b"Phone\n312\x81555\x8d0101\n", "neither UTF-8 nor Windows-1252"),
])
def test_a_file_that_cannot_be_read_gets_one_sentence_and_nothing_is_written(session, profile, content, words):
    with pytest.raises(Invalid) as err:
        run(session, profile, content)
    assert words in str(err.value) and err.value.field == "file" and len(err.value.errors) == 1
    with pytest.raises(Invalid):
        inspect_file(io.BytesIO(content))
    assert count(session, Lead, profile) == 0 and count(session, Customer, profile) == 0


# --- dates ----------------------------------------------------------------------------------------------

CHICAGO = ZoneInfo("America/Chicago")


@pytest.mark.parametrize(("raw", "month_first", "expected"), [
    ("3/4/2025", True, datetime(2025, 3, 4, tzinfo=CHICAGO)),
    ("3/4/2025", False, datetime(2025, 4, 3, tzinfo=CHICAGO)),
    ("14.03.2025", False, datetime(2025, 3, 14, tzinfo=CHICAGO)),
    ("03-14-2025", True, datetime(2025, 3, 14, tzinfo=CHICAGO)),
    ("3/14/2025 15:30", True, datetime(2025, 3, 14, 15, 30, tzinfo=CHICAGO)),
    ("3/14/2025 3:30 PM", True, datetime(2025, 3, 14, 15, 30, tzinfo=CHICAGO)),
    ("3/14/2025 12:05 am", True, datetime(2025, 3, 14, 0, 5, tzinfo=CHICAGO)),
    ("14/3/2025 09:15:30", False, datetime(2025, 3, 14, 9, 15, 30, tzinfo=CHICAGO)),
    ("3/14/25", True, datetime(2025, 3, 14, tzinfo=CHICAGO)),     # two digits: the latest such year not ahead
    ("12/1/98", True, datetime(1998, 12, 1, tzinfo=CHICAGO)),
    ("1/6/26", False, datetime(2026, 6, 1, tzinfo=CHICAGO)),
    ("2025/03/14", True, datetime(2025, 3, 14, tzinfo=CHICAGO)),  # year first is never ambiguous
    ("2025-03-14", False, datetime(2025, 3, 14, tzinfo=CHICAGO)),
    ("2025-03-14T15:30:00Z", True, datetime(2025, 3, 14, 15, 30, tzinfo=UTC)),
    ("2025-03-14 09:15", True, datetime(2025, 3, 14, 9, 15, tzinfo=CHICAGO)),
])
def test_dates_in_the_order_of_the_business_s_country(raw, month_first, expected):
    assert parse_when(raw, tz=CHICAGO, month_first=month_first, now=NOW) == expected.astimezone(UTC)


@pytest.mark.parametrize(("raw", "month_first", "words"), [
    ("14/3/2025", True, "month/day/year order"),
    ("3/14/2025", False, "day/month/year order"),
    ("yesterday", True, "is not a date this import reads"),
    ("3/14/2025 13:00 PM", True, "1–12"),
    ("1/1/2099", True, "future"),
])
def test_dates_that_cannot_be_read_say_why(raw, month_first, words):
    with pytest.raises(ValueError, match=words):
        parse_when(raw, tz=CHICAGO, month_first=month_first, now=NOW)


def test_the_region_of_the_business_decides(session):
    us = f.make_profile(session, region="US", timezone="America/New_York")
    gb = f.make_profile(session, region="GB", timezone="Europe/London")
    data = "Phone,Date\n+44 20 7946 0958,3/4/2025\n"
    run(session, us, data)
    run(session, gb, data)
    assert stored(session, us)[0].created_at.astimezone(ZoneInfo("America/New_York")).date().isoformat() == \
        "2025-03-04"
    assert stored(session, gb)[0].created_at.astimezone(ZoneInfo("Europe/London")).date().isoformat() == \
        "2025-04-03"
    report = run(session, us, "Phone,Date\n312-555-0101,25/03/2025\n")
    assert "created_at" in report.rejected[0]["error"] and "month/day/year" in report.rejected[0]["error"]


# --- statuses ---------------------------------------------------------------------------------------------


def test_statuses_are_the_business_s_own_words(session, profile):
    report = run(session, profile, "Phone,Status\n312-555-0101,Booked\n312-555-0102,  No-show  \n312-555-0103,\n"
                                   f"312-555-0104,{'x' * 51}\n", skip_invalid=True)
    assert [lead.status for lead in stored(session, profile)] == ["Booked", "No-show", "New"]
    assert report.rejected == [{"line": 5, "error": "status: longer than 50 characters"}]


# --- merged ----------------------------------------------------------------------------------------------


def test_rows_that_join_a_customer_under_another_name_are_reported(session, profile, monkeypatch):
    f.lead(session, profile, phone="312-555-0101", name="Ana Li", now=NOW)
    f.lead(session, profile, email="bo@example.com", name="Bo Kim", now=NOW)
    ana = session.scalars(select(Customer).where(Customer.contact_key == "+13125550101")).one()
    bo = session.scalars(select(Customer).where(Customer.contact_key == "bo@example.com")).one()
    monkeypatch.setattr(leads_module, "_LOAD_BATCH", 2)  # the answer does not depend on the batches
    data = ("Name,Phone,E-mail,Date\n"
            "  ana li ,312-555-0101,,2025-01-01\n"       # the same name written another way: not a merge
            "Anna Lee,(312) 555-0101,,2025-01-02\n"       # another name: merged into Ana
            ",312-555-0101,,2025-01-03\n"                 # no name: nothing to compare
            "Robert Kim,,BO@example.com,2025-01-04\n"     # another name on Bo's e-mail
            "New Person,312-555-0177,,2025-01-05\n"
            "Other Person,312-555-0177,,2025-01-06\n")   # a customer this file created: not on file before
    report = run(session, profile, data)
    assert report.imported == 6
    assert report.merged == [{"line": 3, "customer_id": str(ana.id), "customer_name": "Ana Li"},
                             {"line": 5, "customer_id": str(bo.id), "customer_name": "Bo Kim"}]
    again = run(session, profile, data)  # nothing new joins anybody
    assert (again.imported, again.duplicates, again.merged) == (0, 6, [])


def test_leads_over_the_api_report_merges_by_index(session, profile):
    f.lead(session, profile, phone="312-555-0101", name="Ana Li", now=NOW)
    report = add_leads(session, profile_id=profile.id, now=NOW, leads=[
        {"customer_phone": "312 555 0199", "customer_name": "Cy"},
        {"customer_phone": "312-555-0101", "customer_name": "Anna"}])
    assert [m["index"] for m in report.merged] == [1] and report.merged[0]["customer_name"] == "Ana Li"


# --- consent columns --------------------------------------------------------------------------------------


def test_consent_columns_become_consent_records(session, profile):
    data = ("Name,Phone,Email,consent_call,consent_sms,consent_email,consent_at,consent_proof\n"
            "Ana,312-555-0101,ana@example.com,yes,written,TRUE,2025-02-01,Signed intake form\n"
            "Bo,312-555-0102,,no,1,,,\n"
            "Cy,312-555-0103,,0,false,,,\n"
            "Di,312-555-0104,,Express,\"\",,,\n")
    assert run(session, profile, data, now=NOW).imported == 4
    found = sorted((c.contact, c.channel, c.level, c.source, c.proof, c.captured_at.date().isoformat())
                   for c in session.scalars(select(Consent).where(Consent.profile_id == profile.id)))
    assert found == [
        ("+13125550101", "call", "express", "import", "Signed intake form", "2025-02-01"),
        ("+13125550101", "sms", "express_written", "import", "Signed intake form", "2025-02-01"),
        ("+13125550102", "sms", "express", "import", None, NOW.date().isoformat()),  # given when the lead was
        ("+13125550104", "call", "express", "import", None, NOW.date().isoformat()),  # the word itself
        ("ana@example.com", "email", "express", "import", "Signed intake form", "2025-02-01"),
    ]
    # the consent columns are fields, not extras
    assert all(lead.extra == {} for lead in stored(session, profile))
    run(session, profile, data, now=NOW)  # the same file again records nothing twice
    assert count(session, Consent, profile) == 5


def test_consent_values_that_say_nothing_are_refused(session, profile):
    report = run(session, profile, "Email,Phone,consent_sms\na@example.com,,written\nb@example.com,,maybe\n")
    assert [r["line"] for r in report.rejected] == [2, 3]
    assert "needs a phone number" in report.rejected[0]["error"]
    assert "'maybe' is not one of written, express" in report.rejected[1]["error"]
    assert count(session, Consent, profile) == 0


# --- e-mail checking: fast, and exactly what the validator says --------------------------------------------

EDGE_EMAILS = [
    "Ana.Li@Example.COM", "a+b@example.com", "info@example.com", "x@localhost", "x@example.test", "x@mail.local",
    "x@123.45", "x@-bad.example.com", "x@bad-.example.com", "x@ab--cd.example.com", "x@xn--nxasmq6b.com",
    "x@xn--bad.com", "a..b@example.com", ".a@example.com", "a.@example.com", "a@b@example.com", "@example.com",
    "a@", "a@example", "a@example.c0m", "a@" + "x" * 64 + ".com", "a" * 65 + "@example.com",
    "a" * 60 + "@" + ".".join(["b" * 60] * 4) + ".com", "user@exa_mple.com", "josé@example.com",
    '"quoted"@example.com', "a b@example.com", " padded@example.com ", "a@EXAMPLE.com.", "a@[127.0.0.1]",
]


def _outcome(fn, raw):
    try:
        return ("ok", fn(raw))
    except ContactError as exc:
        return ("error", str(exc))


@pytest.mark.parametrize("raw", EDGE_EMAILS)
def test_fast_email_is_the_validator_on_edge_cases(raw):
    assert _outcome(fast_email, raw) == _outcome(normalize_email, raw)


_atext = st.sampled_from([*"abcXYZ019!#$%&'*+-/=?^_`{|}~.", "é", " ", "@", '"'])
_label = st.sampled_from(["example", "EXAMPLE", "a", "x-y", "-x", "x-", "xn--abc", "ab--cd", "123", "c0m", "", "test",
                          "local", "mail_box", "b" * 64])


@settings(max_examples=400, deadline=None)
@given(st.text(_atext, min_size=0, max_size=12), st.lists(_label, min_size=1, max_size=4))
def test_fast_email_is_the_validator(local, labels):
    raw = f"{local}@{'.'.join(labels)}"
    assert _outcome(fast_email, raw) == _outcome(normalize_email, raw)


def test_every_field_has_a_label_for_the_dashboard():
    import ast

    source = Path(ROOT / "pages" / "customers.py").read_text(encoding="utf-8")
    labels = next(node for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Assign)
                  and getattr(node.targets[0], "id", "") == "FIELD_TEXT")
    assert {k.value for k in labels.value.keys} == set(FIELDS)  # type: ignore[attr-defined]


# --- North American numbers a prefix at a time: the library's answers, exactly ---------------------------


def test_the_prefix_that_decides_is_read_from_the_metadata():
    from core import nanp

    assert nanp.prefix_digits() is not None and 3 <= nanp.prefix_digits() <= 10
    # the reading of a pattern: leading characters it looks at, for strings of a given length
    assert nanp._looked_at(r"[2-9]\d{9}|3\d{6}", 10) == 1
    assert nanp._looked_at(r"246(?:2(?:2[78]|7[0-4])|4(?:1[024-6]|2\d))\d{4}", 10) == 6
    assert nanp._looked_at(r"(?:2|30)\d{8}", 10) is None  # alternatives of two widths: not shown, so not used
    assert nanp._looked_at(r"\d{10}", 10) == 0


@settings(max_examples=300, deadline=None)
@given(st.text("0123456789", min_size=10, max_size=10), st.sampled_from(["US", "CA", "GB"]),
       st.sampled_from(["{n}", "1{n}", "+1{n}", "({a}) {b}-{c}", "+1 {a} {b} {c}", "1-{a}-{b}-{c}", "{a}.{b}.{c}"]))
def test_nanp_numbers_get_the_library_s_answers(digits, region, form):
    from core import nanp
    from core.contacts import normalize_phone
    from core.customers_sync import zone_of

    raw = form.format(n=digits, a=digits[:3], b=digits[3:6], c=digits[6:])
    fast = _outcome(lambda text: nanp.normalize(text, region), raw)
    assert fast == _outcome(lambda text: normalize_phone(text, region), raw)
    if fast[0] == "ok" and fast[1].startswith("+1"):
        assert nanp.zone(fast[1]) == zone_of(fast[1])
        assert nanp.normalize_with_zone(raw, region) == (fast[1], zone_of(fast[1]))


def test_numbers_sharing_a_prefix_share_the_library_s_answers():
    import random

    from core import nanp
    from core.contacts import normalize_phone
    from core.customers_sync import zone_of

    rng = random.Random(11)
    prefixes = ["2125550", "3052001", "4155550", "2465210", "2465230", "8766060", "8005550", "9005550", "5003450",
                "2026250", "6045551", "8684800", "7875550", "3402001", "2842001", "1234567", "2120000"]
    for prefix in prefixes:
        for _ in range(60):
            digits = prefix + "".join(rng.choice("0123456789") for _ in range(10 - len(prefix)))
            for raw in (digits, f"+1 ({digits[:3]}) {digits[3:6]}-{digits[6:]}"):
                fast = _outcome(nanp.normalize, raw)
                assert fast == _outcome(normalize_phone, raw), raw
                if fast[0] == "ok":
                    assert nanp.zone(fast[1]) == zone_of(fast[1]), raw

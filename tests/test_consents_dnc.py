"""Consent records and the do-not-call list (core.consents, core.dnc), the command that loads a registry
file, and opt-outs read in the business's own country (issue 10, finding 11)."""

from __future__ import annotations

import inspect
import io
import json
import os
import subprocess
import sys
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core import compliance, consents, dnc
from core.config import ROOT
from core.contacts import ContactError, normalize_phone
from core.errors import Invalid, NotFound
from core.models import CampaignRecipient, Consent, DncNumber
from core.optouts import is_opted_out, record_opt_out
from tests import factories as f
from tests.compliance_probes import compliance_probes

# --- consents ---------------------------------------------------------------------------------------------


def test_a_consent_is_normalized_and_kept_as_given(session: Session, now: datetime) -> None:
    shop = f.make_profile(session)
    captured = now - timedelta(days=3)
    row = consents.record_consent(session, profile_id=shop.id, contact="(305) 555-0101", channel="sms",
                                  level="express_written", source="web_form", proof="  Booking form, box ticked ",
                                  captured_at=captured, now=now)
    assert (row.contact, row.channel, row.level, row.source) == ("+13055550101", "sms", "express_written", "web_form")
    assert row.proof == "Booking form, box ticked" and row.captured_at == captured and row.revoked_at is None
    mail = consents.record_consent(session, profile_id=shop.id, contact=" Ann@Example.COM ", channel="email",
                                   level="express", now=now)
    assert mail.contact == "ann@example.com" and mail.source == "api" and mail.captured_at == now


def test_national_numbers_are_read_in_the_business_country(session: Session, now: datetime) -> None:
    uk = f.make_profile(session, region="GB", timezone="Europe/London")
    row = consents.record_consent(session, profile_id=uk.id, contact="020 7946 0018", channel="call",
                                  level="express", now=now)
    assert row.contact == "+442079460018"


def test_the_same_record_twice_is_kept_once_a_new_capture_is_new(session: Session, now: datetime) -> None:
    shop = f.make_profile(session)
    args = {"contact": "+13055550101", "channel": "sms", "level": "express", "source": "call",
            "proof": "Said yes on the call", "captured_at": now - timedelta(hours=1), "now": now}
    first = consents.record_consent(session, profile_id=shop.id, **args)
    assert consents.record_consent(session, profile_id=shop.id, **args).id == first.id
    later = consents.record_consent(session, profile_id=shop.id, **{**args, "captured_at": now})
    assert later.id != first.id
    assert consents.list_consents(session, profile_id=shop.id)[1] == 2


@pytest.mark.parametrize(("change", "field"), [
    ({"contact": "not a contact"}, "contact"), ({"contact": "+1 555"}, "contact"),
    ({"channel": "fax"}, "channel"), ({"level": "implied"}, "level"), ({"source": "rumour"}, "source"),
    ({"captured_at": "future"}, "captured_at"), ({"captured_at": "naive"}, "captured_at")])
def test_bad_consents_name_the_field(session: Session, now: datetime, change: dict[str, str], field: str) -> None:
    shop = f.make_profile(session)
    args: dict[str, object] = {"contact": "+13055550101", "channel": "sms", "level": "express", **change}
    if change.get("captured_at") == "future":
        args["captured_at"] = now + timedelta(hours=1)
    elif change.get("captured_at") == "naive":
        args["captured_at"] = now.replace(tzinfo=None)
    with pytest.raises(Invalid) as err:
        consents.record_consent(session, profile_id=shop.id, now=now, **args)  # type: ignore[arg-type]
    assert err.value.field == field
    assert session.scalar(select(func.count()).select_from(Consent)) == 0


def test_a_capture_a_few_seconds_ahead_of_our_clock_is_taken(session: Session, now: datetime) -> None:
    shop = f.make_profile(session)
    row = consents.record_consent(session, profile_id=shop.id, contact="+13055550101", channel="sms",
                                  level="express", captured_at=now + timedelta(seconds=30), now=now)
    assert row.captured_at == now + timedelta(seconds=30)


def test_consent_level_is_the_best_unrevoked_on_the_channel_or_all(session: Session, now: datetime) -> None:
    shop, other = f.make_profile(session), f.make_profile(session)
    a, b, c, d = "+13055550101", "+13055550102", "+13055550103", "+13055550104"

    def give(contact: str, channel: str, level: str, profile_id: uuid.UUID = shop.id) -> Consent:
        return consents.record_consent(session, profile_id=profile_id, contact=contact, channel=channel,
                                       level=level, now=now)

    give(a, "sms", "express")
    give(a, "all", "express_written")
    give(b, "call", "express_written")
    give(b, "sms", "express")
    revoked = give(c, "sms", "express_written")
    give(c, "all", "express")
    give(d, "sms", "express_written", profile_id=other.id)
    consents.revoke_consent(session, profile_id=shop.id, consent_id=revoked.id, now=now)

    assert consents.consent_level(session, profile_id=shop.id, contacts=[a, b, c, d, a], channel="sms") == {
        a: "express_written", b: "express", c: "express", d: None}
    assert consents.consent_level(session, profile_id=shop.id, contacts=[a, b, c, d], channel="call") == {
        a: "express_written", b: "express_written", c: "express", d: None}
    assert consents.consent_level(session, profile_id=other.id, contacts=[d], channel="sms") == {
        d: "express_written"}
    assert consents.consent_level(session, profile_id=shop.id, contacts=[], channel="sms") == {}


def test_revoking_keeps_the_record_once_and_for_this_business_only(session: Session, now: datetime) -> None:
    shop, other = f.make_profile(session), f.make_profile(session)
    row = consents.record_consent(session, profile_id=shop.id, contact="+13055550101", channel="all",
                                  level="express_written", now=now - timedelta(days=1))
    with pytest.raises(NotFound):
        consents.revoke_consent(session, profile_id=other.id, consent_id=row.id, now=now)
    assert row.revoked_at is None
    consents.revoke_consent(session, profile_id=shop.id, consent_id=row.id, now=now)
    again = consents.revoke_consent(session, profile_id=shop.id, consent_id=row.id, now=now + timedelta(hours=1))
    assert again.revoked_at == now  # the first revocation stands
    rows, total = consents.list_consents(session, profile_id=shop.id)
    assert total == 1 and rows[0].revoked_at == now
    assert consents.consent_level(session, profile_id=shop.id, contacts=["+13055550101"], channel="call") == {
        "+13055550101": None}
    with pytest.raises(NotFound):
        consents.revoke_consent(session, profile_id=shop.id, consent_id=uuid.uuid4())


def test_list_consents_pages_and_searches(session: Session, now: datetime) -> None:
    shop, other = f.make_profile(session), f.make_profile(session)
    for i in range(5):
        consents.record_consent(session, profile_id=shop.id, contact=f"+1305555010{i}", channel="sms",
                                level="express", captured_at=now - timedelta(days=i), now=now)
    consents.record_consent(session, profile_id=shop.id, contact="ann_lee@example.com", channel="email",
                            level="express", captured_at=now - timedelta(days=10), now=now)
    consents.record_consent(session, profile_id=other.id, contact="+13055550100", channel="sms", level="express",
                            now=now)
    rows, total = consents.list_consents(session, profile_id=shop.id, limit=2, offset=1)
    assert total == 6 and [r.contact for r in rows] == ["+13055550101", "+13055550102"]
    assert consents.list_consents(session, profile_id=shop.id, search="(305) 555-0103")[1] == 1
    assert consents.list_consents(session, profile_id=shop.id, search="ANN_")[1] == 1
    assert consents.list_consents(session, profile_id=shop.id, search="%")[1] == 0  # no wildcard
    assert consents.list_consents(session, profile_id=shop.id, search="  ")[1] == 6


# --- the do-not-call list ---------------------------------------------------------------------------------


def numbers_of(session: Session, profile_id: uuid.UUID) -> set[str]:
    return set(session.scalars(select(DncNumber.number).where(DncNumber.profile_id == profile_id)))


MIXED = [
    "3055550101",          # a registry line: ten digits, no +1
    "+1 (305) 555-0102",
    "1-407-555-0103",
    '"8135550104",',       # quoted, with the separator of a spreadsheet export
    "305.555.0101",        # the first one again
    "call me maybe",
    "",                    # blank: skipped, not an error
    "555-0105",            # seven digits: no area code
    "9" * 80,
]


def test_a_list_with_bad_entries_adds_nothing_and_names_each(session: Session, now: datetime) -> None:
    shop = f.make_profile(session)
    dnc.add_numbers(session, profile_id=shop.id, numbers=["+19545550199"], source="internal")
    report = dnc.add_numbers(session, profile_id=shop.id, source="national_registry", now=now, numbers=MIXED)
    assert report.refused and report.added == 0 and report.rejected_total == 3
    assert [r["index"] for r in report.rejected] == [5, 7, 8]
    assert numbers_of(session, shop.id) == {"+19545550199"}  # the earlier list is kept, nothing of this one
    error = report.as_error("numbers")
    assert [e.field for e in error.errors] == ["numbers.5", "numbers.7", "numbers.8", "numbers"]
    assert "call me maybe" in error.errors[0].message and "skip_invalid" in error.errors[-1].message


def test_any_format_goes_in_bad_entries_are_reported_when_asked(session: Session, now: datetime) -> None:
    shop = f.make_profile(session)
    report = dnc.add_numbers(session, profile_id=shop.id, source="national_registry", now=now, numbers=MIXED,
                             skip_invalid=True)
    assert report.added == 4 and not report.refused
    assert [(r["index"], r["number"]) for r in report.rejected] == [
        (5, "call me maybe"), (7, "555-0105"), (8, "9" * 64 + "…")]
    assert all(r["error"] for r in report.rejected)
    assert numbers_of(session, shop.id) == {"+13055550101", "+13055550102", "+14075550103", "+18135550104"}
    again = dnc.add_numbers(session, profile_id=shop.id, numbers=["+13055550101", "(305) 555-0102"],
                            source="internal")
    assert again.as_dict() == {"added": 0, "rejected": [], "rejected_total": 0, "refused": False}
    assert session.scalar(select(func.count()).select_from(DncNumber)) == 4


def test_a_business_abroad_reads_its_own_list_in_its_country(session: Session) -> None:
    uk = f.make_profile(session, region="GB", timezone="Europe/London")
    assert dnc.add_numbers(session, profile_id=uk.id, numbers=["020 7946 0018"], source="internal").added == 1
    # the US registry's lines are US numbers, whatever the business's country
    assert dnc.add_numbers(session, profile_id=uk.id, numbers=["3055550101"], source="national_registry").added == 1
    assert numbers_of(session, uk.id) == {"+442079460018", "+13055550101"}
    dnc.remove_number(session, profile_id=uk.id, number="020 7946 0018")
    dnc.remove_number(session, profile_id=uk.id, number="3055550101")
    assert numbers_of(session, uk.id) == set()


def test_dnc_among_and_is_dnc(session: Session) -> None:
    shop, other = f.make_profile(session), f.make_profile(session)
    dnc.add_numbers(session, profile_id=shop.id, numbers=["3055550101", "3055550102"], source="internal")
    assert dnc.dnc_among(session, profile_id=shop.id, numbers=["+13055550101", None, "+13055550103"]) == {
        "+13055550101"}
    assert dnc.is_dnc(session, profile_id=shop.id, number="+13055550102")
    assert not dnc.is_dnc(session, profile_id=other.id, number="+13055550102")
    assert not dnc.is_dnc(session, profile_id=shop.id, number=None)
    assert dnc.dnc_among(session, profile_id=shop.id, numbers=[]) == set()


@pytest.mark.parametrize("spelling", ["+13055550101", "3055550101", "(305) 555-0101", "+1 305 555 0101",
                                      "1-305-555-0101", " 305.555.0101 "])
def test_a_number_comes_off_the_list_by_any_spelling(session: Session, spelling: str) -> None:
    shop, other = f.make_profile(session), f.make_profile(session)
    dnc.add_numbers(session, profile_id=shop.id, numbers=["+13055550101", "+13055550102"], source="internal")
    with pytest.raises(NotFound):
        dnc.remove_number(session, profile_id=other.id, number=spelling)
    dnc.remove_number(session, profile_id=shop.id, number=spelling)
    assert numbers_of(session, shop.id) == {"+13055550102"}
    with pytest.raises(NotFound):
        dnc.remove_number(session, profile_id=shop.id, number=spelling)
    with pytest.raises(NotFound):
        dnc.remove_number(session, profile_id=shop.id, number="not a number")


def test_list_numbers_pages_and_searches_digits(session: Session, now: datetime) -> None:
    shop, other = f.make_profile(session), f.make_profile(session)
    for i in range(5):
        dnc.add_numbers(session, profile_id=shop.id, numbers=[f"305555010{i}"], source="internal",
                        now=now - timedelta(minutes=i))
    dnc.add_numbers(session, profile_id=other.id, numbers=["3055550100"], source="internal")
    rows, total = dnc.list_numbers(session, profile_id=shop.id, limit=2, offset=1)
    assert total == 5 and [r.number for r in rows] == ["+13055550101", "+13055550102"]
    assert dnc.list_numbers(session, profile_id=shop.id, search="(305) 555-0103")[1] == 1
    assert dnc.list_numbers(session, profile_id=shop.id, search="abc") == ([], 0)
    assert dnc.list_numbers(session, profile_id=shop.id, search=" ")[1] == 5


def test_bad_source_or_business_is_refused(session: Session) -> None:
    shop = f.make_profile(session)
    with pytest.raises(Invalid) as err:
        dnc.add_numbers(session, profile_id=shop.id, numbers=["3055550101"], source="rumour")
    assert err.value.field == "source"
    with pytest.raises(NotFound) as missing:
        dnc.import_file(session, profile_id=uuid.uuid4(), stream=io.StringIO("3055550101\n"))
    assert missing.value.field == "profile"


def test_a_file_is_read_a_chunk_at_a_time_and_reports_lines(session: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dnc, "_CHUNK", 3)  # several chunks from a small file
    shop = f.make_profile(session)
    lines = ["\ufeff3055550101", "3055550102", "oops", "", "3055550103", "+1 (407) 555-0104", "3055550101",
             "12345", "8135550105"]
    refused = dnc.import_file(session, profile_id=shop.id, stream=io.BytesIO("\r\n".join(lines).encode()))
    assert refused.refused and refused.added == 0
    assert [(r["line"], r["number"]) for r in refused.rejected] == [(3, "oops"), (8, "12345")]
    # the chunks already written (lines 1–3, 4–6) were rolled back with the file
    assert numbers_of(session, shop.id) == set()
    report = dnc.import_file(session, profile_id=shop.id, stream=io.BytesIO("\r\n".join(lines).encode()),
                             skip_invalid=True)
    assert report.added == 5
    assert [(r["line"], r["number"]) for r in report.rejected] == [(3, "oops"), (8, "12345")]
    rows = session.scalars(select(DncNumber).where(DncNumber.profile_id == shop.id)).all()
    assert {r.source for r in rows} == {"national_registry"} and len(rows) == 5


def test_a_file_of_garbage_is_counted_not_echoed_whole(session: Session) -> None:
    shop = f.make_profile(session)
    garbage = "\n".join(f"row {i}" for i in range(dnc.MAX_LISTED + 250))
    report = dnc.import_file(session, profile_id=shop.id, stream=io.StringIO(garbage))
    assert report.refused and report.rejected_total == dnc.MAX_LISTED + 250
    assert len(report.rejected) == dnc.MAX_LISTED
    assert report.as_error("line").errors[-2].message == "and 250 more entries that are not phone numbers"


@given(st.text(alphabet="0123456789", min_size=9, max_size=12), st.sampled_from(["", "+", "1", "+1"]),
       st.sampled_from(["US", "CA", "GB"]))
def test_the_registry_shortcut_reads_numbers_as_contacts_does(digits: str, head: str, region: str) -> None:
    text = head + digits
    nanp = region in ("US", "CA")
    try:
        expected: str | None = normalize_phone(text, region)
    except ContactError:
        expected = None
    try:
        got: str | None = dnc._normalize(text, region, nanp)
    except ContactError:
        got = None
    assert got == expected


# --- the command line -------------------------------------------------------------------------------------


def cli(db_url: str, *args: str, expect: int = 0) -> dict:
    env = {**os.environ, "DATABASE_URL": db_url, "SECRET_KEY": "compliance-tests"}
    proc = subprocess.run([sys.executable, "-m", "core", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == expect, proc.stderr or proc.stdout
    return json.loads(proc.stdout if proc.stdout.strip() else proc.stderr)


def test_import_dnc_from_the_command_line(db_url: str, session: Session, tmp_path: Path) -> None:
    shop = f.make_profile(session)
    session.commit()
    pid = str(shop.id)
    registry = tmp_path / "registry.txt"
    registry.write_text("3055550101\n3055550102\n\nnot a number\n+1 (407) 555-0103\n3055550101\n")
    rejected = [{"line": 4, "number": "not a number",
                 "error": "'not a number' is not a valid phone number (region US)"}]
    out = cli(db_url, "import-dnc", "--profile", pid, str(registry), expect=1)
    assert out == {"added": 0, "rejected": rejected, "rejected_total": 1, "refused": True}
    session.rollback()
    assert numbers_of(session, uuid.UUID(pid)) == set()
    session.rollback()  # the embedded database's write lock is free for the next command
    out = cli(db_url, "import-dnc", "--profile", pid, "--skip-invalid", str(registry))
    assert out == {"added": 3, "rejected": rejected, "rejected_total": 1, "refused": False}
    assert cli(db_url, "import-dnc", "--profile", pid, "--source", "internal", "--skip-invalid",
               str(registry))["added"] == 0
    missing = cli(db_url, "import-dnc", "--profile", pid, str(tmp_path / "nope.txt"), expect=2)
    assert missing["field"] == "file" and "nope.txt" in missing["error"]
    session.rollback()
    assert numbers_of(session, uuid.UUID(pid)) == {"+13055550101", "+13055550102", "+14075550103"}


# --- opt-outs in the business's own country (issue 10, finding 11) ----------------------------------------


def test_an_opt_out_reads_a_national_number_in_the_business_country(session: Session) -> None:
    uk = f.make_profile(session, region="GB", timezone="Europe/London")
    row = record_opt_out(session, profile_id=uk.id, contact="020 7946 0018", channel="sms", source="manual")
    assert row.contact == "+442079460018"
    assert is_opted_out(session, profile_id=uk.id, contact="+442079460018", channel="sms")
    us = f.make_profile(session)
    assert record_opt_out(session, profile_id=us.id, contact="(305) 555-0101", channel="call",
                          source="manual").contact == "+13055550101"
    with pytest.raises(NotFound):
        record_opt_out(session, profile_id=uuid.uuid4(), contact="+13055550101", channel="call", source="manual")


# --- tenancy ----------------------------------------------------------------------------------------------


def test_another_business_never_reaches_these_records(session: Session, now: datetime) -> None:
    a, b = f.make_profile(session, name="Shop A"), f.make_profile(session, name="Shop B")
    campaign = f.campaign(session, a, method="call", now=now)
    recipient = CampaignRecipient(id=uuid.uuid4(), campaign_id=campaign.id, profile_id=a.id,
                                  contact_key="+12125550111", customer_phone="+12125550111", status="sent",
                                  response_data={})
    session.add(recipient)
    session.commit()
    probes = compliance_probes(session, SimpleNamespace(a=a, b=b, a_campaign=campaign, a_recipient=recipient,
                                                        now=now))
    scoped = {f"{module.__name__}.{name}" for module in (consents, dnc, compliance)
              for name, fn in inspect.getmembers(module, inspect.isfunction)
              if fn.__module__ == module.__name__ and not name.startswith("_")
              and "profile_id" in inspect.signature(fn).parameters}
    assert set(probes) == scoped
    for probe in probes.values():
        try:
            probe()
        finally:
            session.rollback()

"""The import tab's mapping step, and the wizard's status picker, in AppTest (on both backends)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select

from core.models import Customer, Lead, Profile
from tests import factories as f
from tests.dashboard.conftest import assert_clean, button, open_app, read, selectbox, texts

EXPORT = ("\ufeffFull Name;Mobile No;E-mail Address;Stage;Visit Date;Remarks\n"
          "Ana Li;(201) 555-7101;ana@example.com;Won;3/14/2025;likes mornings\n"
          "Bo Kim;201-555-7102;;No-show;12/1/2025 3:30 PM;\n")


def test_the_mapping_step_shows_how_the_file_is_read_and_imports_it(app_db, shop, session, engine):
    profile = session.get(Profile, shop.profile_id)
    f.lead(session, profile, phone="(201) 555-7101", name="Ana Lee", now=datetime.now(UTC))
    session.commit()
    at = open_app(shop, "customers")
    at.file_uploader(key="import_file").upload("crm-export.csv", EXPORT.encode("utf-8"), "text/csv")
    at.run()
    assert_clean(at)
    assert "Read as UTF-8 (with BOM) text, columns separated by a semicolon." in texts(at)
    # pre-filled from the column names; "Mobile No" says nothing the import recognizes
    assert selectbox(at, "Name").value == "Full Name"
    assert selectbox(at, "E-mail").value == "E-mail Address"
    assert selectbox(at, "Status").value == "Stage" and selectbox(at, "Date").value == "Visit Date"
    assert selectbox(at, "Phone").value == ""
    selectbox(at, "Phone").set_value("Mobile No").run()
    selectbox(at, "Notes").set_value("Remarks").run()
    shown = at.dataframe[-1].value
    assert list(shown["Phone"]) == ["(201) 555-7101", "201-555-7102"]  # the first rows under the chosen columns
    assert list(shown["Notes"]) == ["likes mornings", ""]

    button(at, "Import").click().run()
    assert_clean(at)
    assert any(s.value.startswith("Imported 2 leads") for s in at.success)
    assert any("joined a customer already on file under another name" in w.value for w in at.warning)
    leads = read(engine, lambda s: s.scalars(select(Lead).where(Lead.profile_id == shop.profile_id,
                                                                Lead.source == "import")
                                             .order_by(Lead.customer_phone)).all())
    assert [(lead.customer_phone, lead.status, lead.notes) for lead in leads] == [
        ("+12015557101", "Won", "likes mornings"), ("+12015557102", "No-show", None)]
    assert read(engine, lambda s: len(s.scalars(select(Customer).where(Customer.profile_id == shop.profile_id))
                                      .all())) == 2


def test_an_unreadable_file_is_explained_and_cannot_be_imported(app_db, shop, engine):
    at = open_app(shop, "customers")
    at.file_uploader(key="import_file").upload("leads.csv", b"PK\x03\x04" + b"\x00" * 64, "text/csv")
    at.run()
    assert any("Excel workbook" in e.value for e in at.error)
    assert button(at, "Import").disabled


def test_the_wizard_offers_the_business_s_own_statuses(app_db, shop, session):
    profile = session.get(Profile, shop.profile_id)
    now = datetime.now(UTC)
    for i, status in enumerate(["Booked", "booked ", "Lost", "Closed"]):
        f.lead(session, profile, phone=f"+1 201 555 72{i:02d}", status=status, now=now)
    session.commit()
    at = open_app(shop, "create_campaign")
    at.text_input(key="w_name").input("Bookings")
    button(at, "Next: audience").click()
    at.run()
    assert_clean(at)
    picker = at.multiselect(key="w_statuses")
    # the statuses found in the leads, grouped ignoring case and spaces, the most customers first
    assert picker.options[:3] == ["Booked (2 customers)", "Closed (1 customer)", "Lost (1 customer)"]

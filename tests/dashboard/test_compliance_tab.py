"""The Customers page's consent and do-not-call tab (pages/customers.py) in AppTest."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from core.config import get_settings
from core.models import Consent, DncNumber, OptOut
from tests.dashboard.conftest import assert_clean, button, open_app, read, texts


@pytest.fixture(autouse=True)
def _secret_key(app_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a database server the dashboard refuses to start without SECRET_KEY (DESIGN §13)."""
    monkeypatch.setenv("SECRET_KEY", "compliance-tab-tests")
    get_settings.cache_clear()


def test_consent_records_add_and_revoke(app_db, shop, engine):
    at = open_app(shop, "customers")
    assert "No consent records yet." in texts(at)
    # the shop vouches for consent itself (policy "none"): the tab says the records are kept as evidence
    assert "Your business takes responsibility for consent" in texts(at)
    at.text_input(key="consent_contact").input("(201) 555-0188")
    at.selectbox(key="consent_channel").set_value("sms")
    at.selectbox(key="consent_level").set_value("express_written")
    at.text_input(key="consent_proof").input("Signed the booking form")
    button(at, "Record the consent").click().run()
    assert_clean(at)
    row = read(engine, lambda s: s.scalars(select(Consent).where(Consent.profile_id == shop.profile_id)).one())
    assert (row.contact, row.channel, row.level, row.source, row.proof, row.revoked_at) == (
        "+12015550188", "sms", "express_written", "manual", "Signed the booking form", None)
    table = at.dataframe[-1].value
    assert list(table["contact"]) == ["+12015550188"] and list(table["level"]) == ["Written"]

    at.text_input(key="consent_contact").input("not a contact")
    button(at, "Record the consent").click().run()
    assert any("not a valid" in e.value for e in at.error)

    button(at, "Revoke…").click().run()
    assert "no longer counts from now on" in texts(at)
    button(at, "Revoke the consent").click().run()
    assert_clean(at)
    row = read(engine, lambda s: s.scalars(select(Consent).where(Consent.profile_id == shop.profile_id)).one())
    assert row.revoked_at is not None  # kept, revoked
    assert [b for b in at.button if b.label == "Revoke…"] == []  # nothing left to revoke


def test_do_not_call_list_add_and_take_off(app_db, shop, engine):
    at = open_app(shop, "customers")
    assert "The do-not-call list is empty." in texts(at)
    pasted = "2015550101\n+1 (201) 555-0102\nnope\n201.555.0101"
    at.text_area(key="dnc_numbers").input(pasted)
    button(at, "Add to the do-not-call list").click().run()
    assert any(e.value.startswith("Nothing was added: the file has 1 line that is not a phone number (below)")
               for e in at.error), [e.value for e in at.error]
    assert list(at.dataframe[-1].value["number"]) == ["nope"]  # the list itself is still empty
    assert "The do-not-call list is empty." in texts(at)
    assert read(engine, lambda s: s.scalars(select(DncNumber)).all()) == []
    at.text_area(key="dnc_numbers").input(pasted)
    at.checkbox(key="dnc_skip_invalid").check()
    button(at, "Add to the do-not-call list").click().run()
    assert_clean(at)
    assert any(s.value.startswith("Added 2 numbers; left out 1 line that is not a phone number") for s in at.success)
    rejected = at.dataframe[-2].value
    assert list(rejected["line"]) == [3] and list(rejected["number"]) == ["nope"]
    numbers = read(engine, lambda s: sorted(s.scalars(select(DncNumber.number).where(
        DncNumber.profile_id == shop.profile_id))))
    assert numbers == ["+12015550101", "+12015550102"]
    assert sorted(at.dataframe[-1].value["number"]) == numbers

    at.text_input(key="dnc_search").input("555-0102").run()
    assert list(at.dataframe[-1].value["number"]) == ["+12015550102"]
    button(at, "Take off the list…").click().run()
    assert "may call and text **(201) 555-0102** again" in texts(at)
    button(at, "Take it off the list").click().run()
    assert_clean(at)
    assert read(engine, lambda s: list(s.scalars(select(DncNumber.number)))) == ["+12015550101"]
    # the opt-out tab is untouched by all of this
    assert read(engine, lambda s: s.scalars(select(OptOut)).all()) == []

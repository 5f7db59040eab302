"""GET/PATCH /api/profile (DESIGN §12): each business reads and changes only its own profile; credentials are
write-only, stored encrypted and never returned; bad values are refused naming the field, changing nothing."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from api_helpers import Tenant
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

import api
from core import senders
from core.config import Settings
from core.models import Profile

SETTINGS = Settings(_env_file=None, secret_key="profile-api-tests", public_base_url="https://shop.example")  # type: ignore[call-arg]
RESEND_KEY = "re_own_key_7Hc2mQ"
TWILIO_TOKEN = "tw_token_b81f0e99"


@pytest.fixture
def client(engine: Engine) -> Iterator[TestClient]:
    with TestClient(api.create_app(engine=engine, settings=SETTINGS), raise_server_exceptions=True) as c:
        yield c


def _profile(session: Session, tenant: Tenant) -> Profile:
    session.rollback()
    row = session.scalars(select(Profile).where(Profile.id == tenant.profile_id)
                          .execution_options(populate_existing=True)).one()
    session.expunge(row)  # read now, detached: the test holds no transaction while the app writes
    session.rollback()
    return row


def test_get_returns_the_keys_own_profile_and_no_secret(client: TestClient, session: Session, tenant: Tenant,
                                                       other: Tenant) -> None:
    mine = client.get("/api/profile", headers=tenant.headers)
    theirs = client.get("/api/profile", headers=other.headers)
    assert mine.status_code == theirs.status_code == 200
    body = mine.json()
    assert body["id"] == str(tenant.profile_id) and theirs.json()["id"] == str(other.profile_id)
    assert (body["business_name"], theirs.json()["business_name"]) == ("Bella Vista", "Studio Nine")
    for field in ("business_name", "timezone", "default_region", "booking_url", "consent_policy", "email_from",
                  "email_from_name", "email_reply_to", "sms_from", "vapi_assistant_id", "vapi_phone_number_id",
                  "price_per_sms_segment", "price_per_call_minute", "price_per_email", "secrets_set"):
        assert field in body, field
    assert body["consent_policy"] == _profile(session, tenant).consent_policy
    assert body["secrets_set"] == []
    assert {ch: m["mode"] for ch, m in body["channels"].items()} == {"call": "sandbox", "email": "sandbox",
                                                                     "sms": "sandbox"}
    assert client.get("/api/profile").status_code == 401


def test_patch_changes_only_what_is_given_and_keeps_secrets_write_only(
        client: TestClient, session: Session, tenant: Tenant, other: Tenant) -> None:
    before_other = client.get("/api/profile", headers=other.headers).json()
    response = client.patch("/api/profile", headers=tenant.headers, json={
        "email_from": "Hello@BellaVista.example", "email_from_name": "Bella Vista Salon",
        "email_reply_to": "desk@bellavista.example", "sms_from": "(201) 555-0199", "consent_policy": "none",
        "vapi_assistant_id": "asst_42", "vapi_phone_number_id": "pn_42", "price_per_sms_segment": 0.0079,
        "resend_api_key": RESEND_KEY, "twilio_account_sid": "AC" + "1" * 32, "twilio_auth_token": TWILIO_TOKEN})
    assert response.status_code == 200, response.text
    body = response.json()
    assert RESEND_KEY not in response.text and TWILIO_TOKEN not in response.text
    assert body["email_from"] == "hello@bellavista.example"
    assert body["sms_from"] == "+12015550199"  # E.164: inbound STOP is matched on it
    assert (body["consent_policy"], body["price_per_sms_segment"]) == ("none", 0.0079)
    assert body["business_name"] == "Bella Vista"  # not given, not changed
    assert body["secrets_set"] == ["resend_api_key", "twilio_account_sid", "twilio_auth_token"]
    assert body["channels"]["email"] == {"mode": "live", "provider": "resend", "own_account": True, "missing": []}
    assert body["channels"]["sms"]["own_account"] is True and body["channels"]["sms"]["mode"] == "live"
    again = client.get("/api/profile", headers=tenant.headers)
    assert RESEND_KEY not in again.text and again.json()["secrets_set"] == body["secrets_set"]

    # stored encrypted: the database holds no plain text, yet the business sends with its own key
    row = _profile(session, tenant)
    assert row.encrypted_secrets and RESEND_KEY not in row.encrypted_secrets and TWILIO_TOKEN not in \
        row.encrypted_secrets
    own = senders.settings_for(row, SETTINGS)
    assert own.resend_api_key is not None and own.resend_api_key.get_secret_value() == RESEND_KEY
    assert (own.email_from, own.twilio_from_number) == ("hello@bellavista.example", "+12015550199")
    assert client.get("/api/profile", headers=other.headers).json() == before_other

    # null clears an optional text; an empty or null credential clears it
    cleared = client.patch("/api/profile", headers=tenant.headers, json={
        "email_reply_to": None, "resend_api_key": "", "twilio_auth_token": None}).json()
    assert cleared["email_reply_to"] is None and cleared["email_from"] == "hello@bellavista.example"
    assert cleared["secrets_set"] == ["twilio_account_sid"]
    assert cleared["channels"]["email"]["mode"] == "sandbox"


@pytest.mark.parametrize(("body", "field"), [
    ({"email_from": "not an address"}, "email_from"),
    ({"email_reply_to": "desk@"}, "email_reply_to"),
    ({"sms_from": "12"}, "sms_from"),
    ({"price_per_call_minute": -0.1}, "price_per_call_minute"),
    ({"price_per_email": "0.01"}, "price_per_email"),
    ({"consent_policy": "maybe"}, "consent_policy"),
    ({"timezone": "Mars/Olympus"}, "timezone"),
    ({"business_name": None}, "business_name"),
    ({"smtp_url": "http://mail.example.com"}, "smtp_url"),
    ({"email_provider": "mailchimp"}, "email_provider"),
    ({"booking_url": "ftp://book"}, "booking_url"),
    ({"email_from_name": "Bella\r\nBcc: x@evil.example"}, "email_from_name"),
    ({"api_key": "x"}, "api_key"),
])
def test_bad_values_are_refused_naming_the_field_and_change_nothing(
        client: TestClient, session: Session, tenant: Tenant, body: dict[str, object], field: str) -> None:
    before = client.get("/api/profile", headers=tenant.headers).json()
    response = client.patch("/api/profile", headers=tenant.headers,
                            json={"email_from_name": "Changed", "resend_api_key": RESEND_KEY, **body})
    assert response.status_code == 422, response.text
    assert field in [e["field"].removeprefix("body.") for e in response.json()["errors"]], response.json()
    assert field in response.json()["detail"] or field in response.text
    assert client.get("/api/profile", headers=tenant.headers).json() == before
    assert _profile(session, tenant).encrypted_secrets is None


def test_one_number_is_one_business_sender(client: TestClient, tenant: Tenant, other: Tenant) -> None:
    assert client.patch("/api/profile", headers=tenant.headers, json={"sms_from": "+1 201 555 0199"}).status_code == 200
    taken = client.patch("/api/profile", headers=other.headers, json={"sms_from": "201-555-0199"})
    assert taken.status_code == 422
    assert taken.json()["errors"][0]["field"] == "sms_from"
    assert "another business" in taken.json()["detail"]
    # a messaging service and a sender name are kept as written
    assert client.patch("/api/profile", headers=other.headers, json={"sms_from": "MG" + "a" * 32}).json()[
        "sms_from"] == "MG" + "a" * 32
    assert client.patch("/api/profile", headers=other.headers, json={"sms_from": "StudioNine"}).json()[
        "sms_from"] == "StudioNine"

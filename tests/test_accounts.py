"""Businesses, logins, API keys, agents."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from core import accounts
from core.errors import Conflict, Invalid, NotFound
from core.models import ApiKey, User


def test_profile_login_and_key(session):
    profile, key, generated = accounts.create_profile(session, business_name=" Studio 9 ", email="Owner@Studio.example",
                                                      password="s3cret-pass", timezone="Europe/Berlin",
                                                      default_region="de", phone="030 901820")
    assert generated is None and profile.business_name == "Studio 9" and profile.default_region == "DE"
    assert profile.phone == "+4930901820"
    user = session.scalars(select(User)).one()
    assert user.email == "owner@studio.example" and "s3cret-pass" not in user.password_hash
    assert accounts.verify_login(session, email="OWNER@studio.example ", password="s3cret-pass").id == user.id
    assert accounts.verify_login(session, email="owner@studio.example", password="wrong") is None
    assert accounts.verify_login(session, email="nobody@studio.example", password="s3cret-pass") is None
    stored = session.scalars(select(ApiKey)).one()
    assert key.startswith(stored.prefix) and key not in stored.key_hash and len(stored.key_hash) == 64
    assert accounts.authenticate_api_key(session, key=key) == profile.id


def test_generated_password_works(session):
    _, _, password = accounts.create_profile(session, business_name="B", email="b@shop.example")
    assert password and accounts.verify_login(session, email="b@shop.example", password=password)


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"email": "not an email"}, "email"),
    ({"password": "short"}, "password"),
    ({"timezone": "Atlantis/Capital"}, "timezone"),
    ({"default_region": "USA"}, "default_region"),
    ({"business_name": "  "}, "business_name"),
    ({"phone": "12"}, "phone"),
])
def test_profile_input_is_checked(session, kwargs, field):
    args = {"business_name": "B", "email": "b@shop.example", "password": "longenough", **kwargs}
    with pytest.raises(Invalid) as err:
        accounts.create_profile(session, **args)
    assert field in [e.field for e in err.value.errors]


def test_login_email_is_unique(session):
    accounts.create_profile(session, business_name="A", email="a@shop.example", password="longenough")
    with pytest.raises(Conflict):
        accounts.create_profile(session, business_name="B", email="A@shop.example", password="longenough")


def test_keys_are_revocable_and_scoped(session, now):
    p1, key1, _ = accounts.create_profile(session, business_name="A", email="a@shop.example", password="longenough")
    p2, key2, _ = accounts.create_profile(session, business_name="B", email="b@shop.example", password="longenough")
    extra, key3 = accounts.create_api_key(session, profile_id=p1.id, name="crm")
    assert accounts.authenticate_api_key(session, key=key3) == p1.id
    with pytest.raises(NotFound):
        accounts.revoke_api_key(session, profile_id=p2.id, key_id=extra.id)
    accounts.revoke_api_key(session, profile_id=p1.id, key_id=extra.id, now=now)
    assert accounts.authenticate_api_key(session, key=key3) is None
    assert accounts.authenticate_api_key(session, key=key1) == p1.id
    assert accounts.authenticate_api_key(session, key=key2) == p2.id
    for bad in ("", "cx_nope", key1 + "x", "x" * 500):
        assert accounts.authenticate_api_key(session, key=bad) is None
    assert [k.name for k in accounts.list_api_keys(session, profile_id=p1.id)] == ["crm", "default"]


def test_last_used_is_recorded_sparingly(session, now):
    _p, key, _ = accounts.create_profile(session, business_name="A", email="a@shop.example", password="longenough")
    accounts.authenticate_api_key(session, key=key, now=now)
    accounts.authenticate_api_key(session, key=key, now=now + timedelta(seconds=30))
    row = session.scalars(select(ApiKey)).one()
    assert row.last_used_at == now
    accounts.authenticate_api_key(session, key=key, now=now + timedelta(minutes=2))
    assert row.last_used_at == now + timedelta(minutes=2)


def test_agents_and_profile_updates(session):
    p, _, _ = accounts.create_profile(session, business_name="A", email="a@shop.example", password="longenough")
    agent = accounts.create_agent(session, profile_id=p.id, name="Desk", vapi_assistant_id="asst_1")
    assert [a.id for a in accounts.list_agents(session, profile_id=p.id)] == [agent.id]
    with pytest.raises(Invalid):
        accounts.create_agent(session, profile_id=p.id, name=" ")
    accounts.update_profile(session, profile_id=p.id, business_name="A2", timezone="Asia/Tokyo",
                            booking_url="https://a.example/book")
    assert (p.business_name, p.timezone, p.booking_url) == ("A2", "Asia/Tokyo", "https://a.example/book")
    with pytest.raises(Invalid) as err:
        accounts.update_profile(session, profile_id=p.id, booking_url="ftp://x")
    assert err.value.field == "booking_url"
    assert accounts.profile_for_login(session, email="A@shop.example") == p.id

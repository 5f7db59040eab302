"""Unsubscribe and click tokens: signed, tamper-evident, free of personal data."""

from __future__ import annotations

import base64
import uuid

from core.tokens import click_token, read_click_token, read_unsubscribe_token, unsubscribe_token, unsubscribe_url
from tests.engine.helpers import settings


def test_unsubscribe_token_round_trip_and_url():
    s = settings(public_base_url="https://api.shop.example/")
    rid = uuid.uuid4()
    token = unsubscribe_token(rid, s)
    assert read_unsubscribe_token(token, s) == rid
    assert unsubscribe_url(rid, s) == f"https://api.shop.example/unsubscribe/{token}"
    # URL-safe: nothing to escape in a path segment
    assert all(ch.isalnum() or ch in "-_." for ch in token)


def test_tampered_or_foreign_tokens_read_as_none():
    s = settings()
    rid = uuid.uuid4()
    token = unsubscribe_token(rid, s)
    _payload, signature = token.rsplit(".", 1)
    other = unsubscribe_token(uuid.uuid4(), s)
    forged = other.rsplit(".", 1)[0] + "." + signature
    assert read_unsubscribe_token(forged, s) is None
    assert read_unsubscribe_token(token[:-2] + ("AA" if token[-2:] != "AA" else "BB"), s) is None
    assert read_unsubscribe_token(token, settings(secret_key="another-key")) is None
    assert read_unsubscribe_token("", s) is None and read_unsubscribe_token("not-a-token", s) is None
    # a click token is not an unsubscribe token (different salt)
    assert read_unsubscribe_token(click_token(rid, "https://x.example", s), s) is None


def test_token_carries_no_personal_data():
    s = settings()
    rid = uuid.uuid4()
    payload = unsubscribe_token(rid, s).rsplit(".", 1)[0]
    decoded = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    assert decoded == rid.bytes  # only the recipient's random id


def test_click_token_round_trip():
    s = settings()
    rid = uuid.uuid4()
    url = "https://bellavista.example/book?service=color&utm=1"
    assert read_click_token(click_token(rid, url, s), s) == (rid, url)
    assert read_click_token(unsubscribe_token(rid, s), s) is None
    assert read_click_token("garbage.sig", s) is None

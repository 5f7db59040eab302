"""Dashboard sign-in throttling and sessions (core.signin), on both backends, and the frame that uses them."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import func, select
from streamlit.testing.v1 import AppTest

from core import signin
from core.config import Settings
from core.models import DashboardSession, LoginAttempt, User
from tests import factories as f
from tests.dashboard.conftest import ENTRY, PASSWORD, assert_clean, button

SETTINGS = Settings(_env_file=None, secret_key="signin-tests", login_max_failures=3,  # type: ignore[call-arg]
                    login_lock_minutes=15, dashboard_session_hours=2)


def _user(session):
    profile = f.make_profile(session, name="Corner Barber")
    return session.scalars(select(User).where(User.profile_id == profile.id)).one()


def test_failures_lock_the_email_until_the_lock_ends(session, now):
    user = _user(session)
    for _ in range(2):
        out = signin.sign_in(session, email=user.email, password="wrong", address="203.0.113.9", now=now,
                             settings=SETTINGS)
        assert out.refusal == signin.WRONG and out.signed_in is None
    out = signin.sign_in(session, email=user.email.upper(), password="wrong", address="198.51.100.1",
                         now=now + timedelta(minutes=3), settings=SETTINGS)
    assert out.refusal is not None and "Too many sign-in attempts" in out.refusal
    assert "try again in 15 minutes" in out.refusal
    # locked: even the right password is refused, and the hash is not even checked
    later = now + timedelta(minutes=6)
    locked = signin.check_allowed(session, email=user.email, address="192.0.2.50", now=later)
    assert locked is not None and locked.sentence(later).endswith("try again in 12 minutes.")
    out = signin.sign_in(session, email=user.email, password=PASSWORD, address="192.0.2.50", now=later,
                         settings=SETTINGS)
    assert out.signed_in is None and "try again in 12 minutes" in (out.refusal or "")
    # another login from the same addresses is not held up by this e-mail's lock
    assert signin.check_allowed(session, email="someone@else.example", address="192.0.2.50", now=later) is None
    # once the lock has run out, the right password works and clears the e-mail's counter
    after = now + timedelta(minutes=19)
    out = signin.sign_in(session, email=user.email, password=PASSWORD, address="192.0.2.50", now=after,
                         settings=SETTINGS)
    assert out.signed_in is not None and out.signed_in.profile_id == user.profile_id
    email_rows = session.scalars(select(LoginAttempt).where(LoginAttempt.key.like("email:%"))).all()
    assert email_rows == []
    # nothing typed is kept in clear
    keys = session.scalars(select(LoginAttempt.key)).all()
    assert keys and all(user.email not in k and "203.0.113.9" not in k for k in keys)


def test_one_address_guessing_many_emails_is_locked(session, now):
    _user(session)
    for n in range(3):
        signin.record_failure(session, email=f"guess{n}@example.com", address=None, now=now, settings=SETTINGS)
    # an unknown address counts under one key
    assert signin.check_allowed(session, email="new@example.com", address=None, now=now) is not None
    assert signin.check_allowed(session, email="new@example.com", address="203.0.113.7", now=now) is None


def test_old_failures_start_counting_again(session, now):
    user = _user(session)
    for minutes in (0, 10, 30, 31):  # the first two are more than 15 minutes before the last two
        lock = signin.record_failure(session, email=user.email, address="203.0.113.1",
                                     now=now + timedelta(minutes=minutes), settings=SETTINGS)
        assert lock is None
    row = session.scalars(select(LoginAttempt).where(LoginAttempt.key.like("email:%"))).one()
    assert row.failures == 2


def test_a_session_token_signs_in_until_it_is_revoked_or_expires(session, now):
    user = _user(session)
    signed, token = signin.open_session(session, user=user, now=now, settings=SETTINGS)
    assert signed.business_name == "Corner Barber" and signed.seconds_left(now) == 7200
    back = signin.resume_session(session, token=token, now=now + timedelta(minutes=30), settings=SETTINGS)
    assert back is not None and back.session_id == signed.session_id and back.email == user.email
    # forged, altered, signed with another key: nobody
    assert signin.resume_session(session, token=token[:-2] + "xx", now=now, settings=SETTINGS) is None
    other = Settings(_env_file=None, secret_key="another-key")  # type: ignore[call-arg]
    assert signin.resume_session(session, token=token, now=now, settings=other) is None
    assert signin.resume_session(session, token="", now=now, settings=SETTINGS) is None
    assert signin.resume_session(session, token=str(uuid.uuid4()), now=now, settings=SETTINGS) is None
    # expired
    assert signin.session_alive(session, session_id=signed.session_id, now=now + timedelta(hours=3)) is None
    # revoked by a sign-out
    signin.end_session(session, session_id=signed.session_id, now=now + timedelta(minutes=40))
    assert signin.session_alive(session, session_id=signed.session_id, now=now + timedelta(minutes=41)) is None
    row = session.get(DashboardSession, signed.session_id)
    assert row is not None and row.revoked_at is not None


# --- the frame (app.py) ------------------------------------------------------------------------------------


def _login(email: str, password: str) -> AppTest:
    at = AppTest.from_file(str(ENTRY), default_timeout=30).run()
    at.text_input(key="login_email").input(email)
    at.text_input(key="login_password").input(password)
    button(at, "Sign in").click()
    return at.run()


def _cookie_scripts(at: AppTest) -> list[str]:
    return [h.proto.body for h in at.get("html") if "connext_session=" in h.proto.body]


def test_sign_in_opens_a_session_and_gives_the_browser_its_cookie(shop, engine):
    at = _login(shop.email, PASSWORD)
    assert_clean(at)
    token = at.session_state["_session_token"]
    scripts = _cookie_scripts(at)
    assert len(scripts) == 1 and f"connext_session={token}; Max-Age=" in scripts[0]
    assert "SameSite=Strict" in scripts[0] and "Path=/" in scripts[0] and "Secure" in scripts[0]
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(DashboardSession)
                           .where(DashboardSession.revoked_at.is_(None))) == 1

    button(at, "Sign out").click()
    at.run()
    assert_clean(at)
    assert "profile_id" not in at.session_state
    assert [s for s in _cookie_scripts(at) if "connext_session=; Max-Age=0" in s]
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(DashboardSession)
                           .where(DashboardSession.revoked_at.is_(None))) == 0


def test_a_session_signed_out_elsewhere_ends_here_too(shop, engine):
    at = _login(shop.email, PASSWORD)
    with engine.begin() as conn:
        conn.execute(DashboardSession.__table__.update().values(revoked_at=func.now()))
    at.run()
    assert_clean(at)
    assert "profile_id" not in at.session_state
    assert at.text_input(key="login_email") is not None


def test_too_many_failures_pause_the_sign_in(shop, monkeypatch):
    monkeypatch.setenv("LOGIN_MAX_FAILURES", "2")
    from core.config import get_settings

    get_settings.cache_clear()
    at = _login(shop.email, "wrong one")
    assert [e.value for e in at.error] == [signin.WRONG]
    at = _login(shop.email, "wrong two")
    assert "Too many sign-in attempts" in at.error[0].value
    at = _login(shop.email, PASSWORD)
    assert "try again in 15 minutes" in at.error[0].value
    assert "profile_id" not in at.session_state

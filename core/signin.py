"""Dashboard sign-in: throttling of failed attempts and sessions that survive a reload (DESIGN §13, §14).

**Throttling.** Failed sign-ins are counted per e-mail address and per client address (a browser
whose address is unknown counts under one shared key) in ``login_attempts``.  After
``LOGIN_MAX_FAILURES`` failures within ``LOGIN_LOCK_MINUTES``, sign-in is refused for that key until
the lock ends — checked *before* the password hash is verified, so a locked key costs no Argon2
work.  A success clears the e-mail's counter (not the address's: one good login from a shared
address does not reset someone else's guessing).  Keys are SHA-256 digests: the table holds no
address or e-mail in clear, typed by anyone.

**Sessions.** A sign-in opens a ``dashboard_sessions`` row that expires after
``DASHBOARD_SESSION_HOURS``; the browser keeps a token naming that row, signed with
``Settings.signing_key()`` (an altered token, or one signed with another key, reads as nothing).
A new browser run presenting a valid, unexpired, unrevoked token is signed in again; sign-out
revokes the row, so a copied token stops working with it.
"""

from __future__ import annotations

import hashlib
import math
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache

from itsdangerous import BadData, URLSafeTimedSerializer
from sqlalchemy import case, delete, select, update
from sqlalchemy.orm import Session

from core import accounts
from core.config import Settings, get_settings
from core.db import dialect_insert, utcnow
from core.models import DashboardSession, LoginAttempt, Profile, User

_SESSION_SALT = "connext.dashboard-session"
UNKNOWN_ADDRESS = "unknown"
# how often a session's last_seen_at is written (not on every page run)
SEEN_EVERY = timedelta(minutes=5)


# --- throttling -------------------------------------------------------------------------------------------


def _digest(kind: str, value: str) -> str:
    return f"{kind}:{hashlib.sha256(value.encode('utf-8')).hexdigest()}"


def throttle_keys(*, email: str | None, address: str | None) -> list[str]:
    """The keys a sign-in counts under: its e-mail (normalized) and its client address."""
    keys = [_digest("ip", (address or "").strip() or UNKNOWN_ADDRESS)]
    login = (email or "").strip().lower()
    if login:
        keys.insert(0, _digest("email", login))
    return keys


@dataclass(frozen=True)
class Locked:
    """Sign-in is paused for this e-mail or address until ``until``."""

    until: datetime

    def minutes_left(self, now: datetime) -> int:
        return max(1, math.ceil((self.until - now).total_seconds() / 60))

    def sentence(self, now: datetime) -> str:
        minutes = self.minutes_left(now)
        return (f"Too many sign-in attempts for this e-mail address or from this network. To keep the account "
                f"safe, sign-in is paused: try again in {minutes} minute{'s' if minutes != 1 else ''}.")


def check_allowed(session: Session, *, email: str | None, address: str | None, now: datetime | None = None,
                  ) -> Locked | None:
    """``None`` when this e-mail and address may try to sign in now, else the lock that holds them."""
    now = now or utcnow()
    until = session.scalar(select(LoginAttempt.locked_until).where(
        LoginAttempt.key.in_(throttle_keys(email=email, address=address)), LoginAttempt.locked_until > now)
        .order_by(LoginAttempt.locked_until.desc()).limit(1))
    return Locked(until) if until is not None else None


def record_failure(session: Session, *, email: str | None, address: str | None, now: datetime | None = None,
                   settings: Settings | None = None) -> Locked | None:
    """Count a failed sign-in against the e-mail and the address; the lock it started, if it did.

    One upsert per key, computed in SQL, so two failures at the same moment both count.  A
    counter whose first failure is older than the lock period starts again at one."""
    settings = settings or get_settings()
    now = now or utcnow()
    period = timedelta(minutes=settings.login_lock_minutes)
    t = LoginAttempt.__table__
    stale = t.c.first_failure_at <= now - period
    failures = case((stale, 1), else_=t.c.failures + 1)
    for key in throttle_keys(email=email, address=address):
        stmt = dialect_insert(session, LoginAttempt).values(
            key=key, failures=1, first_failure_at=now,
            locked_until=now + period if settings.login_max_failures <= 1 else None)
        session.execute(stmt.on_conflict_do_update(index_elements=["key"], set_={
            "failures": failures,
            "first_failure_at": case((stale, now), else_=t.c.first_failure_at),
            "locked_until": case((failures >= settings.login_max_failures, now + period),
                                 else_=t.c.locked_until),
        }))
    session.flush()
    return check_allowed(session, email=email, address=address, now=now)


def record_success(session: Session, *, email: str, now: datetime | None = None) -> None:
    """A correct password: the e-mail's counter starts again from nothing."""
    session.execute(delete(LoginAttempt).where(LoginAttempt.key == _digest("email", email.strip().lower())))


# --- sessions ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SignedIn:
    """Who a dashboard browser is signed in as."""

    session_id: uuid.UUID
    user_id: uuid.UUID
    profile_id: uuid.UUID
    email: str
    business_name: str
    timezone: str
    region: str
    expires_at: datetime

    def seconds_left(self, now: datetime) -> int:
        return max(0, int((self.expires_at - now).total_seconds()))


@lru_cache(maxsize=4)
def _serializer(key: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(key, salt=_SESSION_SALT)


def _token(session_id: uuid.UUID, settings: Settings) -> str:
    return str(_serializer(settings.signing_key()).dumps(session_id.hex))


def read_token(token: str | None, *, settings: Settings | None = None) -> uuid.UUID | None:
    """The session id a token names, or ``None`` when it is not one of ours (altered, another key,
    older than a session can live)."""
    if not token or len(token) > 500:
        return None
    settings = settings or get_settings()
    try:
        value = _serializer(settings.signing_key()).loads(
            token, max_age=int(settings.dashboard_session_hours * 3600) + 60)
        return uuid.UUID(hex=str(value))
    except (BadData, ValueError, TypeError):
        return None


def open_session(session: Session, *, user: User, now: datetime | None = None,
                 settings: Settings | None = None) -> tuple[SignedIn, str]:
    """Start a dashboard session for ``user``: who they are and the token their browser keeps."""
    settings = settings or get_settings()
    now = now or utcnow()
    row = DashboardSession(id=uuid.uuid4(), user_id=user.id, profile_id=user.profile_id, created_at=now,
                           expires_at=now + timedelta(hours=settings.dashboard_session_hours), last_seen_at=now)
    session.add(row)
    session.flush()
    signed = _signed_in(session, row)
    assert signed is not None
    return signed, _token(row.id, settings)


def _signed_in(session: Session, row: DashboardSession) -> SignedIn | None:
    found = session.execute(select(User.email, Profile.business_name, Profile.timezone, Profile.default_region)
                            .join(Profile, Profile.id == User.profile_id)
                            .where(User.id == row.user_id, Profile.id == row.profile_id)).one_or_none()
    if found is None:
        return None
    return SignedIn(session_id=row.id, user_id=row.user_id, profile_id=row.profile_id, email=found.email,
                    business_name=found.business_name, timezone=found.timezone, region=found.default_region,
                    expires_at=row.expires_at)


def resume_session(session: Session, *, token: str | None, now: datetime | None = None,
                   settings: Settings | None = None) -> SignedIn | None:
    """Who a browser's token signs in, when it names a session that is still open; else ``None``."""
    session_id = read_token(token, settings=settings)
    return session_alive(session, session_id=session_id, now=now) if session_id is not None else None


def session_alive(session: Session, *, session_id: uuid.UUID, now: datetime | None = None) -> SignedIn | None:
    """The session, when it is neither revoked nor expired (and its login still exists)."""
    now = now or utcnow()
    row = session.scalars(select(DashboardSession).where(
        DashboardSession.id == session_id, DashboardSession.revoked_at.is_(None),
        DashboardSession.expires_at > now)).one_or_none()
    if row is None:
        return None
    if row.last_seen_at is None or row.last_seen_at < now - SEEN_EVERY:
        row.last_seen_at = now
    return _signed_in(session, row)


def end_session(session: Session, *, session_id: uuid.UUID, now: datetime | None = None) -> None:
    """Sign-out: the session's token no longer signs anyone in."""
    session.execute(update(DashboardSession).where(DashboardSession.id == session_id,
                                                   DashboardSession.revoked_at.is_(None))
                    .values(revoked_at=now or utcnow()))


# --- the sign-in itself -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """What a sign-in attempt came to: a session (and its token), or the sentence to show."""

    signed_in: SignedIn | None = None
    token: str | None = None
    refusal: str | None = None


WRONG = "That e-mail and password do not match. Check both and try again."


def sign_in(session: Session, *, email: str, password: str, address: str | None, now: datetime | None = None,
            settings: Settings | None = None) -> Outcome:
    """Check a sign-in: refused at once while its e-mail or address is locked (no password check),
    else the password; a failure is counted, a success opens a session."""
    settings = settings or get_settings()
    now = now or utcnow()
    locked = check_allowed(session, email=email, address=address, now=now)
    if locked is not None:
        return Outcome(refusal=locked.sentence(now))
    user = accounts.verify_login(session, email=email, password=password)
    if user is None:
        locked = record_failure(session, email=email, address=address, now=now, settings=settings)
        return Outcome(refusal=locked.sentence(now) if locked is not None else WRONG)
    record_success(session, email=user.email, now=now)
    signed, token = open_session(session, user=user, now=now, settings=settings)
    return Outcome(signed_in=signed, token=token)

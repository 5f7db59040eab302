"""Signed tokens for the links we put in front of customers.

An unsubscribe token carries only the recipient's id (a random UUID, no name,
address or number; 22 characters) and a signature made with
``Settings.signing_key()``; a click token adds the URL the link leads to.  A token that was altered, or
signed with another key, reads as ``None``.
"""

from __future__ import annotations

import base64
import uuid
from functools import lru_cache

from itsdangerous import BadData, Signer, URLSafeSerializer, URLSafeTimedSerializer

from core.config import Settings, get_settings

_UNSUBSCRIBE = "connext.unsubscribe"
_CLICK = "connext.click"
_CLICK_TIMED = "connext.click.v2"
# a tracked link keeps working this long after its e-mail was sent (a campaign's offer does not run forever)
CLICK_TOKEN_DAYS = 180


@lru_cache(maxsize=8)
def _serializer(key: str, salt: str) -> URLSafeSerializer:
    return URLSafeSerializer(key, salt=salt)


def _signer(salt: str, settings: Settings | None) -> URLSafeSerializer:
    return _serializer((settings or get_settings()).signing_key(), salt)


@lru_cache(maxsize=8)
def _plain_signer(key: str, salt: str) -> Signer:
    return Signer(key, salt=salt)


def unsubscribe_token(recipient_id: uuid.UUID, settings: Settings | None = None) -> str:
    """A short URL-safe token naming one campaign recipient: the id's 16 bytes, signed."""
    payload = base64.urlsafe_b64encode(recipient_id.bytes).rstrip(b"=")
    key = (settings or get_settings()).signing_key()
    return _plain_signer(key, _UNSUBSCRIBE).sign(payload).decode("ascii")


def read_unsubscribe_token(token: str, settings: Settings | None = None) -> uuid.UUID | None:
    """The recipient id in ``token``, or ``None`` when it is not one of ours."""
    key = (settings or get_settings()).signing_key()
    try:
        payload = _plain_signer(key, _UNSUBSCRIBE).unsign(token.encode("ascii"))
        return uuid.UUID(bytes=base64.urlsafe_b64decode(payload + b"=" * (-len(payload) % 4)))
    except (BadData, ValueError, UnicodeEncodeError):
        return None


def unsubscribe_url(recipient_id: uuid.UUID, settings: Settings | None = None) -> str:
    """``PUBLIC_BASE_URL/unsubscribe/<token>``: the one-click unsubscribe link of a recipient."""
    settings = settings or get_settings()
    return f"{settings.public_base_url.rstrip('/')}/unsubscribe/{unsubscribe_token(recipient_id, settings)}"


@lru_cache(maxsize=8)
def _timed(key: str, salt: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(key, salt=salt)


def click_token(recipient_id: uuid.UUID, url: str, settings: Settings | None = None) -> str:
    """A token for a tracked link: which recipient clicked, where the link goes, and when it was made
    (it expires after :data:`CLICK_TOKEN_DAYS`)."""
    return str(_timed((settings or get_settings()).signing_key(), _CLICK_TIMED).dumps([recipient_id.hex, url]))


def read_click_token(token: str, settings: Settings | None = None) -> tuple[uuid.UUID, str] | None:
    """``(recipient_id, url)`` from a click token, or ``None`` when it is not one of ours or has expired.
    Links of e-mails sent before tokens carried their time keep working."""
    key = (settings or get_settings()).signing_key()
    try:
        value = _timed(key, _CLICK_TIMED).loads(token, max_age=CLICK_TOKEN_DAYS * 86400)
    except BadData:
        try:
            value = _signer(_CLICK, settings).loads(token)
        except BadData:
            return None
    if not (isinstance(value, list) and len(value) == 2 and all(isinstance(v, str) for v in value)):
        return None
    try:
        return uuid.UUID(hex=value[0]), value[1]
    except ValueError:
        return None

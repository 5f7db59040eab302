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

from itsdangerous import BadData, Signer, URLSafeSerializer

from core.config import Settings, get_settings

_UNSUBSCRIBE = "connext.unsubscribe"
_CLICK = "connext.click"


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


def click_token(recipient_id: uuid.UUID, url: str, settings: Settings | None = None) -> str:
    """A token for a tracked link: which recipient clicked, and where the link goes."""
    return str(_signer(_CLICK, settings).dumps([recipient_id.hex, url]))


def read_click_token(token: str, settings: Settings | None = None) -> tuple[uuid.UUID, str] | None:
    """``(recipient_id, url)`` from a click token, or ``None`` when it is not one of ours."""
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

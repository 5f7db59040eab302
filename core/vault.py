"""Encryption at rest for what must be stored but never shown again: a business's provider
credentials and the signing secrets of its webhook endpoints.

``cryptography``'s Fernet (AES-128-CBC with HMAC-SHA256, a timestamped token), with a key
derived from ``SECRET_KEY`` by HKDF-SHA256, so the database alone reveals nothing.  Changing
``SECRET_KEY`` makes what was stored unreadable: :class:`VaultError` says so, and the values
must be entered again.
"""

from __future__ import annotations

import base64
import json
from functools import lru_cache
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from core.config import Settings, get_settings


class VaultError(RuntimeError):
    """Something stored encrypted cannot be read with this ``SECRET_KEY``."""


@lru_cache(maxsize=8)
def _fernet(signing_key: str) -> Fernet:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"connext-reengagement", info=b"vault/v1").derive(
        signing_key.encode("utf-8"))
    return Fernet(base64.urlsafe_b64encode(key))


def encrypt(value: str, settings: Settings | None = None) -> str:
    """``value`` encrypted (a URL-safe token)."""
    return _fernet((settings or get_settings()).signing_key()).encrypt(value.encode("utf-8")).decode("ascii")


def decrypt(token: str, settings: Settings | None = None) -> str:
    """The value :func:`encrypt` stored; :class:`VaultError` when this ``SECRET_KEY`` cannot read it."""
    try:
        return _fernet((settings or get_settings()).signing_key()).decrypt(token.encode("ascii")).decode("utf-8")
    except (InvalidToken, ValueError):
        raise VaultError("Stored credentials cannot be read with the current SECRET_KEY (it changed since they "
                         "were saved); enter them again in Settings.") from None


def encrypt_json(values: dict[str, Any], settings: Settings | None = None) -> str:
    return encrypt(json.dumps(values, sort_keys=True, separators=(",", ":")), settings)


def decrypt_json(token: str | None, settings: Settings | None = None) -> dict[str, Any]:
    if not token:
        return {}
    data = json.loads(decrypt(token, settings))
    return data if isinstance(data, dict) else {}

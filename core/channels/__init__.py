"""Channel adapters: Vapi calls; e-mail through Resend or SMTP; SMS through Twilio, Vonage or
AWS SNS; and the sandbox.

:func:`get_channel` is the registry: the live adapter of a channel's provider
(``Settings.provider_for``) when its credentials are set (``Settings.channel_live``),
otherwise the sandbox adapter of that channel, which simulates the provider
offline.  Live adapters are constructed with the settings (``Adapter(settings)``) —
a business's own, from :func:`core.senders.settings_for` — and imported only when
needed, so a process without a provider's SDK still runs in sandbox mode.
"""

from __future__ import annotations

import importlib
import inspect
import threading
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

import httpx
from sqlalchemy.orm import Session, sessionmaker

from core.channels.base import Channel
from core.config import Settings, get_settings
from core.errors import DomainError, Invalid
from core.models import CHANNELS

# provider → (module, class, what the person should know when it is missing)
LIVE_ADAPTERS: dict[str, tuple[str, str, str]] = {
    "resend": ("core.channels.resend_email", "ResendChannel", "e-mail (Resend)"),
    "smtp": ("core.channels.smtp_email", "SmtpChannel", "e-mail (SMTP)"),
    "vapi": ("core.channels.vapi", "VapiChannel", "call (Vapi)"),
    "twilio": ("core.channels.twilio_sms", "TwilioChannel", "SMS (Twilio)"),
    "vonage": ("core.channels.vonage_sms", "VonageChannel", "SMS (Vonage)"),
    "sns": ("core.channels.sns_sms", "SnsChannel", "SMS (AWS SNS)"),
}
PROVIDER_NAMES = {"vapi": "Vapi", "resend": "Resend", "smtp": "SMTP", "twilio": "Twilio", "vonage": "Vonage",
                  "sns": "AWS SNS", "sandbox": "the sandbox"}


def send_timeout(settings: Settings) -> float:
    """How long one provider request may take, for every adapter: far shorter than a
    scheduler lease, so a process that lost its lease is no longer talking to a provider."""
    return max(2.0, min(20.0, settings.scheduler_lease_seconds / 4))


T = TypeVar("T")
_pools: dict[Hashable, Any] = {}
_pools_lock = threading.Lock()


def shared(key: Hashable, make: Callable[[], T]) -> T:
    """The process's one client for ``key`` (made by ``make`` the first time; thread-safe): every send of an
    adapter to the same provider endpoint reuses its connection pool."""
    client = _pools.get(key)
    if client is None:
        with _pools_lock:
            client = _pools.get(key)
            if client is None:
                client = _pools[key] = make()
    return client


def shared_http_client(base_url: str, settings: Settings) -> httpx.Client:
    """The process's pooled ``httpx.Client`` to ``base_url``, with the adapters' send timeout."""
    timeout = send_timeout(settings)
    base = base_url.rstrip("/")
    return shared(("http", base, timeout), lambda: httpx.Client(
        base_url=base, timeout=httpx.Timeout(timeout, connect=min(5.0, timeout)), trust_env=False,
        headers={"User-Agent": "connext-reengagement", "Accept": "application/json"}))


class AdapterMissing(DomainError):
    """Credentials are set for a channel whose live adapter is not part of this installation."""

    status_code = 503


def get_channel(channel: str, settings: Settings | None = None, *,
                factory: sessionmaker[Session] | None = None) -> Channel:
    """The adapter that sends on ``channel``: live when its credentials are set, else sandbox.

    ``factory`` is the database the sandbox records its simulated outcomes in, and that a
    live adapter reads what it needs to settle a try from (a Vonage delivery receipt) when its
    class takes one (default: the process's ``DATABASE_URL``).
    """
    if channel not in CHANNELS:
        raise Invalid(f"unknown channel '{channel}'; allowed: {', '.join(CHANNELS)}", field="channel")
    settings = settings or get_settings()
    if settings.channel_live(channel):
        module_name, class_name, label = LIVE_ADAPTERS[settings.provider_for(channel)]
        try:
            module = importlib.import_module(module_name)
            adapter_class: Any = getattr(module, class_name)
        except (ImportError, AttributeError):
            raise AdapterMissing(
                f"The live {label} adapter is not installed, but its credentials are set. Remove them to use "
                f"the sandbox, or install the adapter.", field="channel") from None
        takes_factory = "factory" in inspect.signature(adapter_class).parameters
        adapter: Channel = adapter_class(settings, factory=factory) if takes_factory else adapter_class(settings)
        return adapter
    from core.channels.sandbox import SandboxChannel

    return SandboxChannel(channel, settings=settings, factory=factory)


def channel_modes(settings: Settings | None = None) -> dict[str, str]:
    """``{"call": "live"|"sandbox", "email": …, "sms": …}`` for the dashboard sidebar and logs."""
    settings = settings or get_settings()
    return {ch: "live" if settings.channel_live(ch) else "sandbox" for ch in CHANNELS}

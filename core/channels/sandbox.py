"""The sandbox: every channel simulated offline, so a campaign runs end to end
without provider credentials.

It behaves like a provider that answers at once and reports outcomes later:
``send`` accepts the message (a few are refused for good, a few fail
transiently, unless ``SANDBOX_REFUSALS`` is false) and records what will happen to it — deliveries, bounces,
opens, clicks, answered calls with transcripts, SMS replies, conversions,
opt-outs — as ``outreach_events`` dated in the near future (provider
``sandbox``).  The scheduler applies them when their time comes through
:func:`core.events.process_due_events`, the same path real webhooks take.

Everything is decided by a random generator seeded with the message's
idempotency key, so the same step always gets the same fate and
:meth:`SandboxChannel.reconcile` can answer from what was recorded.  Delays
are realistic but short enough for a demo, and divided by
``SANDBOX_SPEED``.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import random
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from core.channels.base import OutboundMessage, PermanentError, RetryableError, SendResult
from core.config import Settings, get_settings
from core.db import utcnow
from core.models import OutreachEvent

log = logging.getLogger(__name__)

PROVIDER = "sandbox"
CALL_END = ("answered", "not_answered", "delivered", "failed")
# (type, seconds after the send, payload); the dispatcher records the "sent" event itself
Plan = list[tuple[str, float, dict[str, Any]]]

REPLIES_POSITIVE = ("Yes please! Can I come in on Saturday?", "Sounds great, book me in for next week.",
                    "Yes! Do you have anything Thursday afternoon?")
REPLIES_NEUTRAL = ("Thanks!", "Who is this?", "5", "4 - lovely as always", "Maybe later, busy month.")
TRANSCRIPT_BOOKED = ("AI: Hi {first}, this is {business}. We'd love to welcome you back — shall I book you in?\n"
                     "Customer: Oh, yes actually, it's been too long.\n"
                     "AI: Wonderful. Does Saturday at 10 work?\nCustomer: Perfect, see you then.")
TRANSCRIPT_DECLINED = ("AI: Hi {first}, this is {business}. We'd love to welcome you back — shall I book you in?\n"
                       "Customer: Not right now, thanks. Maybe next month.\nAI: No problem, have a lovely day.")
TRANSCRIPT_STOP = ("AI: Hi {first}, this is {business}.\nCustomer: Please don't call me again.\n"
                   "AI: Understood, I've noted that. Sorry to bother you.")


def _rng(*parts: str) -> random.Random:
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8")).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def message_id(message: OutboundMessage) -> str:
    """The id the sandbox gives a message: the same for every try of one step."""
    digest = hashlib.sha256(message.idempotency_key.encode("utf-8")).hexdigest()[:24]
    return f"sbx_{message.channel}_{digest}"


def _clock(message: OutboundMessage) -> datetime:
    """When the send happens: the dispatcher's clock (which tests may set), else now."""
    raw = message.metadata.get("clock")
    if raw:
        with contextlib.suppress(ValueError):  # not a time: the real clock
            return datetime.fromisoformat(raw)
    return utcnow()


def _first(message: OutboundMessage) -> str:
    return (message.customer_name or "there").split()[0]


def _email_plan(rng: random.Random, message: OutboundMessage) -> Plan:
    if rng.random() < 0.03:
        permanent = rng.random() < 0.67
        return [("bounced", rng.uniform(2, 15), {
            "bounce_type": "Permanent" if permanent else "Transient",
            "error": "550 5.1.1 mailbox does not exist" if permanent else "452 4.2.2 mailbox full"})]
    delivered = rng.uniform(2, 15)
    plan: Plan = [("delivered", delivered, {})]
    if rng.random() < 0.004:
        plan.append(("complained", delivered + rng.uniform(60, 1800), {"error": "marked as spam"}))
        return plan
    if rng.random() < 0.55:
        opened = delivered + rng.uniform(20, 900)
        plan.append(("opened", opened, {}))
        if rng.random() < 0.4:
            clicked = opened + rng.uniform(5, 240)
            plan.append(("clicked", clicked, {"url": "https://booking.example/book"}))
            if rng.random() < 0.35:
                plan.append(("converted", clicked + rng.uniform(60, 900), {"source": "booking after click"}))
    return plan


def _sms_plan(rng: random.Random, message: OutboundMessage) -> Plan:
    if rng.random() < 0.04:
        return [("failed", rng.uniform(3, 20), {"error": "30008 unknown error: the carrier did not deliver it"})]
    delivered = rng.uniform(2, 10)
    plan: Plan = [("delivered", delivered, {})]
    if rng.random() < 0.22:
        replied = delivered + rng.uniform(20, 900)
        kind = rng.random()
        if kind < 0.1:
            plan.append(("opted_out", replied, {"text": "STOP", "error": "replied STOP"}))
        elif kind < 0.55:
            plan.append(("replied", replied, {"text": rng.choice(REPLIES_POSITIVE)}))
            plan.append(("converted", replied + rng.uniform(30, 300), {"source": "positive SMS reply"}))
        else:
            plan.append(("replied", replied, {"text": rng.choice(REPLIES_NEUTRAL)}))
    return plan


def _call_plan(rng: random.Random, message: OutboundMessage) -> Plan:
    first, business = _first(message), message.business_name
    u = rng.random()
    if u < 0.05:
        return [("failed", rng.uniform(3, 10), {"ended_reason": "twilio-failed-to-connect-call",
                                               "error": "the call could not be connected"})]
    if u < 0.35:
        reason = rng.choice(("customer-did-not-answer", "customer-did-not-answer", "customer-busy"))
        return [("not_answered", rng.uniform(25, 45), {"ended_reason": reason, "cost": 0.02})]
    if u < 0.55:
        return [("delivered", rng.uniform(30, 60), {
            "ended_reason": "voicemail", "summary": "Left a voicemail inviting the customer back.",
            "cost": 0.05, "duration_seconds": 28})]
    duration = rng.uniform(40, 240)
    outcome = rng.random()
    base = {"ended_reason": rng.choice(("customer-ended-call", "assistant-ended-call")),
            "recording_url": f"https://recordings.sandbox.invalid/{message_id(message)}.wav",
            "cost": round(0.09 * duration / 60 + 0.02, 3), "duration_seconds": round(duration)}
    if outcome < 0.04:
        return [("answered", duration, {**base, "transcript": TRANSCRIPT_STOP.format(first=first, business=business),
                                        "summary": "The customer asked not to be called again.",
                                        "success": "false"}),
                ("opted_out", duration + 1, {"error": "asked not to be called again"})]
    if outcome < 0.40:
        day = rng.choice(("Saturday 10:00", "Thursday 15:30", "Tuesday 11:00"))
        data = {"appointment_booked": True, "preferred_time": day}
        return [("answered", duration, {**base, "transcript": TRANSCRIPT_BOOKED.format(first=first, business=business),
                                        "summary": f"The customer booked an appointment ({day}).",
                                        "structured_data": data, "success": "true"}),
                ("converted", duration + 1, {"structured_data": data, "summary": f"Booked for {day}."})]
    return [("answered", duration, {**base, "transcript": TRANSCRIPT_DECLINED.format(first=first, business=business),
                                    "summary": "The customer was friendly but did not book.",
                                    "structured_data": {"appointment_booked": False}, "success": "false"})]


_PLANS = {"email": _email_plan, "sms": _sms_plan, "call": _call_plan}


class SandboxChannel:
    """One channel, simulated (provider ``sandbox``, never live)."""

    provider = PROVIDER
    live = False
    # the sandbox decides a step's fate from its idempotency key: a retry can never duplicate
    retry_needs_reconcile = False

    def __init__(self, channel: str, settings: Settings | None = None,
                 factory: sessionmaker[Session] | None = None) -> None:
        if channel not in _PLANS:
            raise ValueError(f"unknown channel {channel!r}")
        self.channel = channel
        self.settings = settings or get_settings()
        self._factory = factory

    def _sessions(self) -> sessionmaker[Session]:
        if self._factory is None:
            from core.db import session_factory

            self._factory = session_factory()
        return self._factory

    def plan(self, message: OutboundMessage) -> Plan:
        """What will happen to an accepted message (deterministic per idempotency key)."""
        return _PLANS[self.channel](_rng(message.idempotency_key, "fate"), message)

    def send(self, message: OutboundMessage) -> SendResult:
        """Accept (and schedule the simulated outcomes of) one message."""
        if self.settings.sandbox_refusals:
            self._refuse_some(message)
        pmid = message_id(message)
        plan = self.plan(message)
        if not message.test:
            self._record(message, pmid, plan)
        log.debug("sandbox %s: accepted %s for recipient %s of campaign %s (simulated, nothing sent)",
                 self.channel, pmid, message.recipient_id, message.campaign_id)
        status = "queued" if self.channel == "call" else "accepted"
        return SendResult(provider_message_id=pmid, status=status,
                          detail={"sandbox": True, "simulated": [kind for kind, _, _ in plan]})

    def _refuse_some(self, message: OutboundMessage) -> None:
        """Turn a few messages away as a real provider does: a step for good (an address or number it will
        not take; decided by the step's key) or one try for a moment (a retry can succeed)."""
        fate = _rng(message.idempotency_key, "send").random()
        if fate < (0.005 if self.channel == "email" else 0.015):
            if self.channel == "email":
                raise PermanentError("sandbox: the provider refused the address (validation_error)",
                                     code="validation_error")
            raise PermanentError("sandbox: the number is not a valid mobile or landline number (21211)",
                                 code="invalid_number")
        if _rng(message.idempotency_key, "try", message.metadata.get("attempt", "1")).random() < 0.02:
            raise RetryableError("sandbox: the simulated provider is busy (503)", code="sandbox_busy")

    def _record(self, message: OutboundMessage, pmid: str, plan: Plan) -> None:
        from core.events import record_event

        start = _clock(message)
        speed = self.settings.sandbox_speed
        with self._sessions()() as session, session.begin():
            for kind, delay, payload in plan:
                record_event(session, provider=PROVIDER, provider_event_id=f"{pmid}:{kind}", type=kind,
                             occurred_at=start + timedelta(seconds=delay / speed), received_at=start,
                             provider_message_id=pmid, recipient_id=message.recipient_id,
                             campaign_id=message.campaign_id, profile_id=message.profile_id, step=message.step,
                             channel=self.channel, payload={**payload, "sandbox": True})

    def reconcile(self, message: OutboundMessage, *, started_at: datetime) -> SendResult | None:
        """Whether an earlier try went out: the sandbox remembers what it recorded."""
        if message.test:
            return None
        pmid = message_id(message)
        with self._sessions()() as session:
            kinds = set(session.scalars(select(OutreachEvent.type).where(
                OutreachEvent.provider == PROVIDER, OutreachEvent.provider_message_id == pmid)))
        if not kinds:
            return None
        status = "accepted"
        if self.channel == "call":
            status = "ended" if kinds & set(CALL_END) else "in-progress"
        return SendResult(provider_message_id=pmid, status=status, detail={"sandbox": True, "reconciled": True})

"""Vapi's server messages: ``POST /webhooks/vapi``.

Authentication: the ``x-vapi-secret`` header must equal ``VAPI_WEBHOOK_SECRET``
(compared in constant time); without a configured secret every request is
refused, since nothing could tell Vapi's requests from anybody's.

Handled messages (``{"message": {"type": …, "call": {…}, …}}``):

- ``status-update``: ``queued``/``ringing``/``in-progress``/… are kept on the
  timeline; ``ended`` with an ``endedReason`` that settles the outcome on its
  own (not answered, busy, voicemail, could not connect, the concurrency limit,
  or a conversation the customer or assistant ended) is applied at once;
- ``end-of-call-report``: the outcome with everything the call produced —
  transcript, summary, recording, structured data, success evaluation, cost,
  duration — stored on the recipient; a successful call (a passing success
  evaluation, or an appointment in the structured data) also converts, and a
  customer who asked not to be called again is opted out of calls.

Outcomes: ``customer-did-not-answer``/``customer-busy`` → not answered;
``voicemail`` → delivered (a message was left); a call that could not be
connected → failed with the reason; ``…concurrency-limit…`` → the call never
started and its step is tried again; a conversation → answered.

Vapi sends no event ids: an event's id is the call id and what happened
(``<call>:status-update:ended:<reason>``, ``<call>:end-of-call-report``, …),
so a replayed message is a no-op.  A call is matched to its recipient through
the attempt that placed it (provider ``vapi``, the call id), else through the
``recipient_id`` in ``assistantOverrides.metadata``.  Other message types are
acknowledged and ignored.
"""

from __future__ import annotations

import hmac
import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

from core.channels.vapi import call_metadata
from core.config import Settings
from core.db import as_uuid, utcnow
from core.webhooks import BadPayload, Incoming, Ingested, SignatureError, as_int, ingest

PROVIDER = "vapi"
HEADER = "x-vapi-secret"

NOT_ANSWERED = frozenset({"customer-did-not-answer", "customer-busy", "customer-did-not-give-microphone-permission"})
VOICEMAIL = frozenset({"voicemail"})
# the customer was on the line and the conversation ended normally
CONVERSATION = frozenset({"customer-ended-call", "assistant-ended-call", "assistant-said-end-call-phrase",
                          "assistant-forwarded-call", "assistant-ended-call-after-message-spoken",
                          "assistant-ended-call-with-hangup-task", "exceeded-max-duration", "assistant-join-timed-out"})
# the call never reached the customer
NOT_CONNECTED = frozenset({"twilio-failed-to-connect-call", "twilio-reported-customer-misdialed",
                           "vonage-failed-to-connect-call", "vonage-rejected", "manually-canceled"})
_FAILURE_WORDS = ("error", "fault", "failed", "rejected")
# structured-data keys an assistant may use for "booked" and for "do not call me again"
BOOKED_KEYS = ("appointment_booked", "appointmentBooked", "booked", "appointment", "appointment_time",
               "appointmentTime", "booking", "converted")
DO_NOT_CALL_KEYS = ("do_not_call", "doNotCall", "dnc", "opt_out", "optOut", "opted_out", "unsubscribe",
                    "stop_calling")
# a conversion or an opt-out needs an explicit yes (DESIGN §13): these words, and true / 1, say yes;
# anything else ("declined", "not booked", "TBD", "maybe", a grade) does not
_YES_WORDS = frozenset({"true", "yes", "y", "1", "booked", "confirmed", "scheduled", "success", "successful",
                        "pass", "passed"})
_NEGATION = re.compile(r"\b(no|not|never|declined?|cancel+ed|none|tbd|unknown|maybe|pending|n/a)\b", re.IGNORECASE)
# a pass grade of a success evaluation: a yes word, or a score of 7/10, 70 %, 70/100 and up (grades A–F say
# how well the call went, not that anything was booked: they never convert on their own)
_PASSING_WORDS = frozenset({"true", "yes", "pass", "passed", "success", "successful"})
# a customer asking not to be called again: the request itself, not a time preference ("don't call me before
# noon", "don't call me at work" ask for another time, not for no calls)
_STOP_REQUEST = re.compile(
    r"\b(?:(?:please\s+)?(?:do\s+not|don'?t|dont|never)\s+(?:ever\s+)?(?:call|ring|phone|contact)\s+"
    r"(?:me|us|this\s+number)(?:\s+(?:again|anymore|any\s+more|ever\s+again|ever))?"
    r"|stop\s+(?:calling|ringing|phoning|contacting)(?:\s+(?:me|us|this\s+number))?"
    r"|(?:remove|take)\s+me\s+(?:off|from)\s+(?:your|the)\s+(?:list|calling\s+list|call\s+list|database)"
    r"|put\s+me\s+on\s+(?:your|the)\s+do[\s-]+not[\s-]+call\s+list"
    r"|(?:i\s+)?(?:want\s+to\s+)?unsubscribe)\b"
    r"(?P<rest>[^.!?]*)", re.IGNORECASE)
# what turns a "don't call me" into a time or place preference
_ONLY_SOMETIMES = re.compile(r"^\s*(?:before|after|until|till|at|on|in|during|tomorrow|today|tonight|this|next|"
                             r"right\s+now|now|so\s+early|so\s+late|while|when|from\s+\d|between)\b", re.IGNORECASE)
_CUSTOMER_LINE = re.compile(r"^\s*(user|customer)\s*:\s*(.*)$", re.IGNORECASE)


def verify(headers: Mapping[str, str], *, settings: Settings) -> None:
    """Refuse (401) a request whose ``x-vapi-secret`` is not ``VAPI_WEBHOOK_SECRET``."""
    if settings.vapi_webhook_secret is None:
        raise SignatureError("VAPI_WEBHOOK_SECRET is not set, so requests claiming to come from Vapi cannot be "
                             "checked; set the same secret here and in Vapi.")
    given = headers.get(HEADER) or ""
    expected = settings.vapi_webhook_secret.get_secret_value()
    if not hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8")):
        raise SignatureError("The x-vapi-secret header is missing or does not match VAPI_WEBHOOK_SECRET.")


def _time(value: Any) -> datetime | None:
    """A Vapi time: epoch milliseconds, or ISO 8601 text."""
    if isinstance(value, bool) or value in (None, ""):
        return None
    if isinstance(value, int | float):
        seconds = value / 1000 if value > 1e11 else value
        try:
            return datetime.fromtimestamp(seconds, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def explicit_yes(value: Any) -> bool:
    """Whether a structured-data value says yes in so many words: ``true``, ``1``, "yes", "booked",
    "confirmed", or an appointment time that is a real date-time.  "declined", "not booked", "TBD", an empty
    string, an object or a list do not."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value == 1
    if not isinstance(value, str):
        return False
    text = value.strip()
    if not text or _NEGATION.search(text):
        return False
    if text.lower() in _YES_WORDS:
        return True
    # an appointment given as its time ("2026-06-20T10:00", "Saturday 10:00") is a booking
    return bool(re.search(r"\d{1,2}:\d{2}", text) or re.fullmatch(r"\d{4}-\d{2}-\d{2}", text))


def customer_spoke(transcript: str | None) -> bool:
    """Whether the transcript has the customer saying something (a transcript without speaker
    labels counts when it is not empty)."""
    if not transcript or not transcript.strip():
        return False
    lines = [m.group(2) for m in map(_CUSTOMER_LINE.match, transcript.splitlines()) if m]
    labelled = any(re.match(r"^\s*(ai|bot|assistant|user|customer)\s*:", ln, re.IGNORECASE)
                   for ln in transcript.splitlines())
    return any(line.strip() for line in lines) if labelled else True


def asks_not_to_be_called(line: str) -> bool:
    """Whether one thing the customer said is a request not to be called again (not "don't call me
    before noon", which asks for another time)."""
    return any(not _ONLY_SOMETIMES.match(match.group("rest") or "") for match in _STOP_REQUEST.finditer(line))


def asked_not_to_be_called(structured: Mapping[str, Any], transcript: str | None) -> bool:
    """A do-not-call request: an explicit yes on a flag of the structured data, or the customer asking
    so in the call."""
    if any(explicit_yes(structured.get(k)) for k in DO_NOT_CALL_KEYS if k in structured):
        return True
    for line in (transcript or "").splitlines():
        m = _CUSTOMER_LINE.match(line)
        if m and asks_not_to_be_called(m.group(2)):
            return True
    return False


def successful(evaluation: Any, structured: Mapping[str, Any]) -> bool:
    """Whether the call's analysis reports an explicit success: a booking field of the structured data that
    says yes (:func:`explicit_yes`), or a success evaluation of ``true``/"true"/"pass" or a score of 7/10,
    70 % or 70/100 and up.  "declined", "not booked", "TBD" and letter grades are not conversions."""
    if any(explicit_yes(structured.get(k)) for k in BOOKED_KEYS if k in structured):
        return True
    if isinstance(evaluation, bool):
        return evaluation
    if isinstance(evaluation, int | float):
        score = float(evaluation)
        return score >= 70 if score > 10 else score >= 7
    text = str(evaluation or "").strip().lower()
    if not text or _NEGATION.search(text):
        return False
    number = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(%|/\s*10|/\s*100)?", text)
    if number:
        score = float(number.group(1))
        unit = (number.group(2) or "").replace(" ", "")
        if unit in ("%", "/100") or (not unit and score > 10):
            return score >= 70
        return score >= 7
    return text in _PASSING_WORDS


def classify(reason: str, *, transcript: str | None, final: bool) -> str | None:
    """Our event for a call that ended with ``reason``: ``answered``, ``not_answered``,
    ``delivered`` (voicemail), ``failed``, ``retry`` (never started; try again) — or ``None`` when
    only the end-of-call report can tell (``final`` is false for a status update)."""
    r = reason.strip().lower()
    spoke = customer_spoke(transcript)
    if "concurrency" in r:
        return "retry"
    if r in NOT_ANSWERED:
        return "not_answered"
    if r in VOICEMAIL:
        return "delivered"
    if r in NOT_CONNECTED or r.startswith("call.start.error"):
        return "answered" if spoke else "failed"
    if r in CONVERSATION:
        return "answered"
    if not final:
        return None
    if r == "silence-timed-out":
        return "answered" if spoke else "not_answered"
    if any(word in r for word in _FAILURE_WORDS):
        return "answered" if spoke else "failed"
    return "answered" if spoke else "not_answered"


_REASONS = {
    "twilio-failed-to-connect-call": "the call could not be connected",
    "twilio-reported-customer-misdialed": "the number could not be dialled",
    "manually-canceled": "the call was cancelled before it connected",
}


def _recording(message: Mapping[str, Any], artifact: Mapping[str, Any]) -> str | None:
    recording = _dict(artifact.get("recording"))
    for value in (_dict(recording.get("mono")).get("combinedUrl"), recording.get("combinedUrl"),
                  artifact.get("recordingUrl"), message.get("recordingUrl"), artifact.get("stereoRecordingUrl")):
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def parse(body: bytes, *, now: datetime | None = None) -> list[Incoming]:
    """The events in one Vapi server message (none for message types we do not use)."""
    now = now or utcnow()
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise BadPayload("The body is not JSON; Vapi sends {\"message\": {…}}.") from None
    message = _dict(_dict(data).get("message"))
    if not message:
        raise BadPayload("The body has no \"message\" object; Vapi sends {\"message\": {…}}.")
    kind = str(message.get("type") or "")
    call = _dict(message.get("call"))
    call_id = str(call.get("id") or "").strip()
    if kind not in ("status-update", "end-of-call-report") or not call_id:
        return []
    meta = call_metadata(call) or _dict(_dict(message.get("assistant")).get("metadata"))
    common: dict[str, Any] = {"provider": PROVIDER, "channel": "call", "message_id": call_id[:100],
                              "recipient_id": as_uuid(meta.get("recipient_id")), "step": as_int(meta.get("step"))}
    when = _time(message.get("timestamp")) or _time(message.get("endedAt")) or now

    if kind == "status-update":
        status = str(message.get("status") or call.get("status") or "").strip()
        if status != "ended":
            return [Incoming(event_id=f"{call_id}:status-update:{status}", type="status", occurred_at=when,
                             payload={"status": status}, **common)] if status else []
        reason = str(message.get("endedReason") or call.get("endedReason") or "").strip()
        outcome = classify(reason, transcript=None, final=False)
        event_id = f"{call_id}:status-update:ended:{reason}"
        payload: dict[str, Any] = {"status": "ended", "ended_reason": reason}
        if outcome is None:
            return [Incoming(event_id=event_id, type="status", occurred_at=when, payload=payload, **common)]
        return [_outcome(outcome, event_id, when, {**payload, **_failure(reason, outcome)}, common)]

    artifact = _dict(message.get("artifact"))
    analysis = _dict(message.get("analysis")) or _dict(call.get("analysis"))
    reason = str(message.get("endedReason") or call.get("endedReason") or "").strip()
    transcript = artifact.get("transcript") or message.get("transcript")
    transcript = transcript if isinstance(transcript, str) and transcript.strip() else None
    structured = _dict(analysis.get("structuredData"))
    evaluation = analysis.get("successEvaluation")
    started = _time(message.get("startedAt")) or _time(call.get("startedAt"))
    ended = _time(message.get("endedAt")) or _time(call.get("endedAt"))
    duration = message.get("durationSeconds")
    if not isinstance(duration, int | float) and started and ended:
        duration = (ended - started).total_seconds()
    summary = analysis.get("summary") or message.get("summary")
    cost = message.get("cost") if isinstance(message.get("cost"), int | float) else call.get("cost")
    artefacts: dict[str, Any] = {
        "ended_reason": reason or None, "transcript": transcript,
        "summary": summary if isinstance(summary, str) and summary.strip() else None,
        "recording_url": _recording(message, artifact), "structured_data": structured or None,
        "success": str(evaluation) if evaluation not in (None, "") else None,
        "cost": cost if isinstance(cost, int | float) else None,
        "duration_seconds": round(float(duration)) if isinstance(duration, int | float) else None,
    }
    artefacts = {k: v for k, v in artefacts.items() if v is not None}
    when = ended or when
    outcome = classify(reason, transcript=transcript, final=True) or "answered"
    base_id = f"{call_id}:end-of-call-report"
    events = [_outcome(outcome, base_id, when, {**artefacts, **_failure(reason, outcome)}, common)]
    if outcome == "retry":
        return events
    if asked_not_to_be_called(structured, transcript):
        events.append(Incoming(event_id=f"{base_id}:opted-out", type="opted_out", occurred_at=when,
                               payload={"reason": "asked on the call not to be called again",
                                        "source": "call_request"}, **common))
    elif outcome == "answered" and successful(evaluation, structured):
        events.append(Incoming(event_id=f"{base_id}:converted", type="converted", occurred_at=when,
                               payload={**artefacts, "source": "successful call"}, **common))
    return events


def _failure(reason: str, outcome: str) -> dict[str, Any]:
    if outcome == "retry":
        return {"retry": True, "error": f"Vapi could not start the call ({reason}); it will be placed again"}
    if outcome == "failed":
        return {"error": f"{_REASONS.get(reason, 'the call failed')} ({reason})" if reason else "the call failed"}
    return {}


def _outcome(outcome: str, event_id: str, when: datetime, payload: dict[str, Any],
             common: dict[str, Any]) -> Incoming:
    kind = "failed" if outcome == "retry" else outcome
    return Incoming(event_id=event_id, type=kind, occurred_at=when, payload=payload, **common)


def handle(session: Session, *, body: bytes, now: datetime | None = None) -> Ingested:
    """Store and apply the events of one (already verified) Vapi server message."""
    return ingest(session, parse(body, now=now), now=now)


def record_call(session: Session, *, call: Mapping[str, Any], now: datetime | None = None) -> Ingested | None:
    """Apply what Vapi's record of an ended call (``GET /call/{id}``) says, as its end-of-call report
    would have (same event ids); ``None`` while the call has not ended."""
    if call.get("status") != "ended":
        return None
    message = {"type": "end-of-call-report", "call": dict(call), "endedReason": call.get("endedReason"),
               "artifact": call.get("artifact") or {}, "analysis": call.get("analysis") or {},
               "startedAt": call.get("startedAt"), "endedAt": call.get("endedAt"), "cost": call.get("cost")}
    return ingest(session, parse(json.dumps({"message": message}).encode(), now=now), now=now)

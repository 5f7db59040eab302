"""A fake Vapi API: a real HTTP server on 127.0.0.1 that speaks Vapi's shapes.

- ``POST /call`` with ``Authorization: Bearer <key>`` (401 otherwise) validates
  the body as Vapi does — unknown top-level properties (``metadata`` among them)
  are a 400 ``property … should not exist``; ``customer.number`` must be E.164;
  an assistant and a phone number are required — and answers **201** with a
  Call object (``id``, ``status: "queued"``, ``createdAt``, the overrides …);
- ``GET /call/{id}`` and ``GET /call?createdAtGt=…&createdAtLt=…&limit=…``
  (newest first) read the calls;
- the account's concurrency limit: with ``concurrency`` set, a call beyond
  it is refused with 400 "Over Concurrency Limit";
- failures on demand: scripted answers for the next requests (any status,
  a lost answer after creating the call, a slow answer);
- the call's life: :meth:`FakeVapi.end_call` ends a call the way Vapi
  reports it, and :meth:`FakeVapi.status_update` / :meth:`FakeVapi.end_of_call_report`
  build the server messages Vapi would POST to the assistant's server URL,
  with the ``x-vapi-secret`` header (:meth:`FakeVapi.deliver` sends them).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import phonenumbers

from tests.fakes.loopback import LoopbackFake

DEFAULT_KEY = "vapi_test_private_key"
ASSISTANT_ID = "asst_5c0f6e3a-fake"
PHONE_NUMBER_ID = "pn_8d2b41e7-fake"
# Vapi's CreateCallDTO: anything else at the top level is refused
CREATE_PROPERTIES = frozenset({"assistantId", "assistant", "assistantOverrides", "squadId", "squad", "phoneNumberId",
                               "phoneNumber", "customerId", "customer", "customers", "name", "schedulePlan",
                               "transport", "workflowId", "workflow", "workflowOverrides", "squadOverrides"})
OVERRIDE_PROPERTIES = frozenset({"firstMessage", "firstMessageMode", "variableValues", "metadata", "model", "voice",
                                 "transcriber", "serverMessages", "server", "endCallMessage", "maxDurationSeconds",
                                 "voicemailMessage", "analysisPlan", "artifactPlan"})

# a webhook poster: (url, headers, body) -> the answer (an HTTP response)
Poster = Callable[[str, dict[str, str], bytes], Any]


def _iso(epoch: float) -> str:
    moment = datetime.fromtimestamp(epoch, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _epoch(text: str) -> float | None:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _bad(message: str | list[str], status: int = 400, error: str = "Bad Request") -> dict[str, Any]:
    return {"message": message, "error": error, "statusCode": status}


@dataclass
class Recorded:
    """One request as it arrived."""

    at: float
    method: str
    path: str
    status: int
    body: dict[str, Any] | None


@dataclass
class Scripted:
    """An answer forced on a coming ``POST /call``."""

    status: int
    message: str
    after_accept: bool = False  # create the call, then lose the answer (the client sees this error)
    delay: float = 0.0


class FakeVapi(LoopbackFake):
    """The fake's state and HTTP server."""

    thread_name = "fake-vapi"

    def __init__(self, *, api_key: str = DEFAULT_KEY, webhook_secret: str | None = None,
                 server_url: str = "https://shop.example/webhooks/vapi") -> None:
        self.api_key = api_key
        self.webhook_secret = webhook_secret
        self.server_url = server_url
        self.lock = threading.Lock()
        self.calls: dict[str, dict[str, Any]] = {}
        self.requests: list[Recorded] = []
        self.script: deque[Scripted] = deque()
        self.concurrency: int | None = None
        self.delay = 0.0
        self._listen()

    # --- control ------------------------------------------------------------------------------

    def fail_next(self, n: int = 1, *, status: int = 500, message: str = "Internal server error",
                  after_accept: bool = False, delay: float = 0.0) -> None:
        """Answer the next ``n`` call creations with this error (after creating the call: a lost answer)."""
        with self.lock:
            for _ in range(n):
                self.script.append(Scripted(status, message, after_accept, delay))

    def posts(self) -> list[dict[str, Any]]:
        """The body of every ``POST /call`` that arrived, in order."""
        with self.lock:
            return [r.body or {} for r in self.requests if r.method == "POST" and r.path == "/call"]

    def created(self) -> list[dict[str, Any]]:
        """Every call created, oldest first."""
        with self.lock:
            return sorted(self.calls.values(), key=lambda c: c["createdAt"])

    def calls_to(self, number: str) -> list[dict[str, Any]]:
        return [c for c in self.created() if c["customer"]["number"] == number]

    def active(self) -> int:
        with self.lock:
            return sum(1 for c in self.calls.values() if c["status"] != "ended")

    # --- the API --------------------------------------------------------------------------------

    def handle(self, method: str, raw_path: str, headers: Any, body: bytes) -> tuple[int, Any]:
        url = urlsplit(raw_path)
        path, query = url.path, parse_qs(url.query)
        auth = headers.get("Authorization") or ""
        if auth != f"Bearer {self.api_key}":
            return self._done(method, path, 401, _bad("Invalid Key. Hot tip, you may be using the private key "
                                                      "instead of the public key, or vice versa.", 401,
                                                      "Unauthorized"), None)
        if method == "GET" and path.startswith("/call/"):
            with self.lock:
                call = self.calls.get(path.rsplit("/", 1)[1])
            if call is None:
                return self._done(method, path, 404, _bad("Not Found", 404, "Not Found"), None)
            return self._done(method, path, 200, call, None)
        if method == "GET" and path == "/call":
            return self._done(method, path, 200, self._list(query), None)
        if method == "POST" and path == "/call":
            return self._create(body)
        return self._done(method, path, 404, _bad(f"Cannot {method} {path}", 404, "Not Found"), None)

    def _done(self, method: str, path: str, status: int, answer: Any,
              body: dict[str, Any] | None) -> tuple[int, Any]:
        with self.lock:
            self.requests.append(Recorded(time.time(), method, path, status, body))
        return status, answer

    def _list(self, query: dict[str, list[str]]) -> list[dict[str, Any]]:
        limit = int((query.get("limit") or ["100"])[0])
        gt = _epoch((query.get("createdAtGt") or [""])[0]) if query.get("createdAtGt") else None
        lt = _epoch((query.get("createdAtLt") or [""])[0]) if query.get("createdAtLt") else None
        with self.lock:
            calls = sorted(self.calls.values(), key=lambda c: c["createdAt"], reverse=True)
        out = []
        for call in calls:
            created = _epoch(call["createdAt"]) or 0.0
            if (gt is not None and created <= gt) or (lt is not None and created >= lt):
                continue
            out.append(call)
        return out[:limit]

    def _create(self, raw: bytes) -> tuple[int, Any]:
        try:
            payload = json.loads(raw)
            assert isinstance(payload, dict)
        except (ValueError, AssertionError):
            return self._done("POST", "/call", 400, _bad("Unexpected token in JSON"), None)
        unknown = sorted(set(payload) - CREATE_PROPERTIES)
        overrides = payload.get("assistantOverrides") or {}
        unknown += [f"assistantOverrides.{k}" for k in sorted(set(overrides) - OVERRIDE_PROPERTIES)]
        if unknown:
            return self._done("POST", "/call", 400, _bad([f"property {k} should not exist" for k in unknown]), payload)
        problems = []
        if not (payload.get("assistantId") or payload.get("assistant") or payload.get("squadId")):
            problems.append("Need Either `assistant`, `assistantId`, `squad`, Or `squadId`.")
        if not (payload.get("phoneNumberId") or payload.get("phoneNumber")):
            problems.append("Need Either `phoneNumberId` Or `phoneNumber`.")
        number = (payload.get("customer") or {}).get("number") or ""
        try:
            valid = number.startswith("+") and phonenumbers.is_valid_number(phonenumbers.parse(number, None))
        except phonenumbers.NumberParseException:
            valid = False
        if not valid:
            problems.append("customer.number must be a valid phone number in the E.164 format.")
        name = (payload.get("customer") or {}).get("name")
        if name is not None and len(name) > 40:
            problems.append("customer.name must be shorter than or equal to 40 characters")
        if problems:
            return self._done("POST", "/call", 400, _bad(problems), payload)
        with self.lock:
            scripted = self.script.popleft() if self.script else None
            busy = self.concurrency is not None and sum(
                1 for c in self.calls.values() if c["status"] != "ended") >= self.concurrency
            delay = self.delay + (scripted.delay if scripted else 0.0)
        if delay:
            time.sleep(delay)
        if busy and scripted is None:
            return self._done("POST", "/call", 400, _bad("Over Concurrency Limit."), payload)
        if scripted is not None and not scripted.after_accept:
            return self._done("POST", "/call", scripted.status, _bad(scripted.message, scripted.status), payload)
        now = time.time()
        call = {
            "id": str(uuid.uuid4()), "orgId": "org_fake", "type": "outboundPhoneCall", "status": "queued",
            "createdAt": _iso(now), "updatedAt": _iso(now), "assistantId": payload.get("assistantId"),
            "phoneNumberId": payload.get("phoneNumberId"), "customer": payload.get("customer"),
            "assistantOverrides": overrides, "phoneCallProvider": "twilio", "phoneCallTransport": "pstn",
            "monitor": {"listenUrl": "wss://fake.vapi/listen", "controlUrl": "https://fake.vapi/control"},
        }
        with self.lock:
            self.calls[call["id"]] = call
        if scripted is not None:  # created, but the answer is lost on the way back
            return self._done("POST", "/call", scripted.status, _bad(scripted.message, scripted.status), payload)
        return self._done("POST", "/call", 201, call, payload)

    # --- the call's life and Vapi's server messages -------------------------------------------------

    def set_status(self, call_id: str, status: str) -> dict[str, Any]:
        with self.lock:
            call = self.calls[call_id]
            call["status"] = status
            call["updatedAt"] = _iso(time.time())
            return dict(call)

    def end_call(self, call_id: str, *, ended_reason: str = "customer-ended-call", transcript: str | None = None,
                 summary: str | None = None, structured_data: dict[str, Any] | None = None,
                 success_evaluation: str | None = None, recording_url: str | None = None, cost: float = 0.11,
                 duration: float = 64.0) -> dict[str, Any]:
        """End a call as Vapi records it (status ``ended``, the reason, the artifacts and the analysis)."""
        now = time.time()
        with self.lock:
            call = self.calls[call_id]
            call.update({
                "status": "ended", "endedReason": ended_reason, "updatedAt": _iso(now),
                "startedAt": _iso(now - duration), "endedAt": _iso(now), "cost": cost,
                "analysis": {k: v for k, v in {"summary": summary, "structuredData": structured_data,
                                               "successEvaluation": success_evaluation}.items() if v is not None},
                "artifact": {k: v for k, v in {
                    "transcript": transcript,
                    "recording": {"mono": {"combinedUrl": recording_url}} if recording_url else None,
                    "recordingUrl": recording_url}.items() if v is not None},
            })
            return dict(call)

    def _call_in_message(self, call_id: str) -> dict[str, Any]:
        with self.lock:
            call = dict(self.calls[call_id])
        # the message carries the call as created (the report's fields are at the message level)
        return {k: v for k, v in call.items() if k not in ("analysis", "artifact")}

    def status_update(self, call_id: str, status: str, *, ended_reason: str | None = None) -> dict[str, Any]:
        """The ``status-update`` server message Vapi sends when a call changes status."""
        if status == "ended" and ended_reason:
            with self.lock:
                self.calls[call_id].update(status="ended", endedReason=ended_reason)
        else:
            self.set_status(call_id, status)
        message: dict[str, Any] = {"type": "status-update", "status": status, "timestamp": int(time.time() * 1000),
                                   "call": self._call_in_message(call_id)}
        if ended_reason:
            message["endedReason"] = ended_reason
        return {"message": message}

    def end_of_call_report(self, call_id: str) -> dict[str, Any]:
        """The ``end-of-call-report`` server message of an ended call (see :meth:`end_call`)."""
        with self.lock:
            call = dict(self.calls[call_id])
        artifact = dict(call.get("artifact") or {})
        artifact.setdefault("messages", [])
        message = {
            "type": "end-of-call-report", "timestamp": int(time.time() * 1000),
            "endedReason": call.get("endedReason"), "call": self._call_in_message(call_id),
            "artifact": artifact, "analysis": call.get("analysis") or {},
            "startedAt": call.get("startedAt"), "endedAt": call.get("endedAt"), "cost": call.get("cost"),
            "customer": call.get("customer"), "phoneNumber": {"id": call.get("phoneNumberId")},
        }
        if artifact.get("transcript"):
            message["transcript"] = artifact["transcript"]
        return {"message": message}

    def signed(self, message: dict[str, Any], *, secret: str | None = None) -> tuple[str, dict[str, str], bytes]:
        """``(url, headers, body)`` of the POST Vapi makes to the server URL with ``message``."""
        headers = {"Content-Type": "application/json"}
        chosen = self.webhook_secret if secret is None else secret
        if chosen:
            headers["x-vapi-secret"] = chosen
        return self.server_url, headers, json.dumps(message).encode()

    def deliver(self, message: dict[str, Any], post: Poster, *, secret: str | None = None) -> Any:
        """POST ``message`` to the server URL through ``post``; returns the answer."""
        return post(*self.signed(message, secret=secret))

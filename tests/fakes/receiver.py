"""A loopback event receiver: what an n8n, Zapier or CRM endpoint does with our events.

A real HTTP server on 127.0.0.1 that checks every request with the official
``standardwebhooks`` verifier (``Webhook(secret).verify(body, headers)``: the
``webhook-id``, ``webhook-timestamp`` within five minutes, and a matching
``webhook-signature``) and answers from a script:

- a status code (``200``, ``500``, ``410``, ``302`` with a ``Location``, ``429`` with
  ``Retry-After: 1``) for the next requests, then ``default`` (200);
- ``"hang"``: read the request, never answer (the sender times out), until the
  receiver is closed or :meth:`Receiver.release` is called;
- ``"stall"``: answer 200, then send only part of the promised body and wait
  (a receiver that streams its answer slowly).

Every request is kept (:class:`Received`): headers, raw body, whether it verified and
the parsed payload.  ``arrived`` is set at each request, for tests that act while one
is being answered.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any

from standardwebhooks import Webhook, WebhookVerificationError

from tests.fakes.loopback import LoopbackFake, LoopbackServer

PATH = "/hooks/connext"


@dataclass
class Received:
    """One request as it arrived."""

    at: float
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    payload: dict[str, Any] | None  # parsed after the signature verified
    error: str | None  # why it did not verify
    answer: int | None = None  # None: never answered

    @property
    def id(self) -> str | None:
        return self.headers.get("webhook-id")

    @property
    def verified(self) -> bool:
        return self.payload is not None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: LoopbackServer

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the receiver keeps its own record."""

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        receiver: Receiver = self.server.fake
        answer = receiver.handle(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
        if answer is None:
            self.close_connection = True
            return
        status, headers = answer
        if headers.pop("x-stall", None):
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.send_response(200)
                self.send_header("Content-Length", "1000")
                self.end_headers()
                self.wfile.write(b'{"ok": tr')
                self.wfile.flush()
                receiver._release.wait(60)
            self.close_connection = True
            return
        raw = json.dumps({"ok": 200 <= status < 300}).encode()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.send_response(status)
            for name, value in {"Content-Type": "application/json", "Content-Length": str(len(raw)),
                                **headers}.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(raw)

    do_PUT = do_POST


class Receiver(LoopbackFake):
    """``with Receiver(secret) as r``: an endpoint at ``r.endpoint`` that verifies and records."""

    thread_name = "fake-receiver"

    def __init__(self, secret: str | None = None, *, answers: tuple[int | str, ...] = (), default: int = 200) -> None:
        self.secret = secret
        self.script: deque[int | str] = deque(answers)
        self.default = default
        self.received: list[Received] = []
        self.arrived = threading.Event()
        self._release = threading.Event()
        self._lock = threading.Lock()
        self._listen()

    def _listen(self) -> None:
        self._server = LoopbackServer(("127.0.0.1", 0), _Handler)
        self._server.fake = self

    @property
    def endpoint(self) -> str:
        return f"{self.url}{PATH}"

    def answer(self, *answers: int | str) -> None:
        """Answer the next requests so (then ``default``)."""
        with self._lock:
            self.script.extend(answers)

    def release(self) -> None:
        """Let hanging requests go (unanswered)."""
        self._release.set()

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes
               ) -> tuple[int, dict[str, str]] | None:
        payload, error = None, None
        if self.secret is None:
            error = "no secret to verify with"
        else:
            try:
                payload = Webhook(self.secret).verify(body, headers)
            except WebhookVerificationError as exc:
                error = str(exc)
        with self._lock:
            step = self.script.popleft() if self.script else self.default
            record = Received(at=time.time(), method=method, path=path, headers=headers, body=body,
                              payload=payload, error=error)
            self.received.append(record)
        self.arrived.set()
        if step == "hang":
            self._release.wait(60)
            return None
        if step == "stall":
            record.answer = 200
            return 200, {"x-stall": "1"}
        status = int(step)
        record.answer = status
        extra = {"Location": "https://elsewhere.example/hook"} if 300 <= status < 400 else {}
        if status in (429, 503):
            extra["Retry-After"] = "1"
        return status, extra

    # --- reading what arrived ---------------------------------------------------------------------------

    def verified(self) -> list[dict[str, Any]]:
        """The payloads whose signature verified, in arrival order."""
        with self._lock:
            return [r.payload for r in self.received if r.payload is not None]

    def ids(self) -> list[str | None]:
        with self._lock:
            return [r.id for r in self.received]

    def __exit__(self, *exc: object) -> None:
        self._release.set()
        super().__exit__(*exc)

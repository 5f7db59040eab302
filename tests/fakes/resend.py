"""A fake Resend API: a real HTTP server on 127.0.0.1 that speaks Resend's shapes.

- ``POST /emails`` with ``Authorization: Bearer <key>`` (401 ``missing_api_key``
  / 403 ``invalid_api_key`` otherwise) answers ``{"id": …}``;
- ``Idempotency-Key`` semantics for 24 h: the same key with the same body →
  the original response and no second e-mail; a different body → 409
  ``invalid_idempotent_request``; a request with that key still running → 409
  ``concurrent_idempotent_requests``;
- ``GET /emails/{id}`` returns the stored e-mail;
- ``GET /domains`` lists the account's sending domains (:attr:`FakeResend.domains`, name →
  status), or answers 401 ``restricted_api_key`` for a sending-only key (``sending_only``);
- every request is recorded (arrival time, key, recipient, status) and every
  distinct accepted e-mail once, so tests count what a customer would get;
- failures on demand: scripted answers for the next requests (500, 429 with
  ``retry-after``, quota, a lost response after accepting), per-address
  failures, slow answers, and a quota that runs out.

Webhooks as Resend sends them (through Svix): :meth:`FakeResend.event` builds
an event envelope about a sent e-mail (``email.delivered``, ``email.bounced``,
… with ``tags`` as an object, or as a list), and :meth:`FakeResend.signed`
signs it with the official ``svix`` library (``svix-id``, ``svix-timestamp``,
``svix-signature``) for ``POST {webhook_url}``; :meth:`FakeResend.deliver`
posts it.

Use it in-process (``with FakeResend() as fake: fake.url``), or in its own
process (``python -m tests.fakes.resend --port N``) and read it through
:class:`FakeResendClient` (the ``/_fake/*`` endpoints).  The server is a
``ThreadingHTTPServer`` with Nagle's algorithm off and HTTP/1.1 keep-alive: a
few thousand requests per second on one core.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import json
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

IDEMPOTENCY_TTL = 24 * 3600.0
DEFAULT_KEY = "re_test_fake_key"
# a Svix signing secret: "whsec_" and 24 random bytes in base64
DEFAULT_WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"connext-fake-resend-hook").decode()
DEFAULT_WEBHOOK_URL = "https://shop.example/webhooks/resend"
# a webhook poster: (url, headers, body) -> the answer (an HTTP response)
Poster = Callable[[str, dict[str, str], bytes], Any]


@dataclass
class Recorded:
    """One request as it arrived."""

    at: float
    method: str
    path: str
    key: str | None
    to: str | None
    status: int
    name: str | None = None


@dataclass
class Email:
    id: str
    to: list[str]
    sender: str
    subject: str
    key: str | None
    created_at: float
    payload: dict[str, Any] = field(repr=False)


@dataclass
class Scripted:
    """An answer forced on a coming ``POST /emails``."""

    status: int
    name: str
    message: str
    retry_after: float | None = None
    after_accept: bool = False  # store the e-mail, then lose the answer (the client sees this error)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the fake keeps its own record of every request."""

    def handle_one_request(self) -> None:
        # the moment the request starts arriving (keep-alive: wait for its first byte), before it is
        # parsed: what a provider's limiter would see
        self.rfile.peek(1)  # type: ignore[attr-defined]
        self.arrived = time.time()
        super().handle_one_request()

    def _answer(self, status: int, body: dict[str, Any] | list[Any], headers: dict[str, str] | None = None) -> None:
        raw = json.dumps(body).encode()
        # one write for headers and body: no small-packet stalls
        head = [f"HTTP/1.1 {status} {self.responses.get(status, ('',))[0]}",
                "Content-Type: application/json", f"Content-Length: {len(raw)}"]
        head += [f"{k}: {v}" for k, v in (headers or {}).items()]
        self.wfile.write(("\r\n".join(head) + "\r\n\r\n").encode() + raw)

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def do_POST(self) -> None:
        body = self._body()
        status, payload, headers = self.server.fake.handle("POST", self.path, self.headers, body, self.arrived)
        self._answer(status, payload, headers)

    def do_GET(self) -> None:
        status, payload, headers = self.server.fake.handle("GET", self.path, self.headers, b"", self.arrived)
        self._answer(status, payload, headers)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 512
    fake: FakeResend


def _error(status: int, name: str, message: str) -> dict[str, Any]:
    return {"statusCode": status, "name": name, "message": message}


class FakeResend:
    """The fake's state and HTTP server."""

    def __init__(self, *, api_key: str = DEFAULT_KEY, host: str = "127.0.0.1", port: int = 0,
                 webhook_secret: str = DEFAULT_WEBHOOK_SECRET, webhook_url: str = DEFAULT_WEBHOOK_URL) -> None:
        self.api_key = api_key
        self.webhook_secret = webhook_secret
        self.webhook_url = webhook_url
        self.lock = threading.Lock()
        self.requests: list[Recorded] = []
        self.emails: dict[str, Email] = {}
        self._idem: dict[str, tuple[str, int, dict[str, Any], float]] = {}
        self._running: set[str] = set()
        self.script: deque[Scripted] = deque()
        self.address_failures: dict[str, Scripted] = {}
        self.delay = 0.0
        self.quota: int | None = None
        self.quota_name = "daily_quota_exceeded"
        self.domains: dict[str, str] = {"bellavista.example": "verified"}
        self.sending_only = False  # the API key may only send (it cannot list domains)
        self._server = _Server((host, port), _Handler)
        self._server.fake = self
        self._thread: threading.Thread | None = None

    # --- lifecycle ------------------------------------------------------------

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeResend:
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fake-resend", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in the calling thread (the fake's own process)."""
        self._server.serve_forever(poll_interval=0.2)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeResend:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- control --------------------------------------------------------------

    def fail_next(self, n: int = 1, *, status: int = 500, name: str = "internal_server_error",
                  message: str = "Something went wrong", retry_after: float | None = None,
                  after_accept: bool = False) -> None:
        """Answer the next ``n`` sends with this error."""
        with self.lock:
            for _ in range(n):
                self.script.append(Scripted(status, name, message, retry_after, after_accept))

    def rate_limit_next(self, n: int = 1, *, retry_after: float = 1.0) -> None:
        self.fail_next(n, status=429, name="rate_limit_exceeded", message="Too many requests", retry_after=retry_after)

    def fail_address(self, address: str, *, status: int = 422, name: str = "validation_error",
                     message: str = "Invalid `to` field.") -> None:
        """Always answer sends to ``address`` with this error."""
        with self.lock:
            self.address_failures[address.lower()] = Scripted(status, name, message)

    def set_quota(self, remaining: int | None, *, name: str = "daily_quota_exceeded") -> None:
        """Allow ``remaining`` more e-mails, then answer 429 ``name`` (``None``: no quota)."""
        with self.lock:
            self.quota, self.quota_name = remaining, name

    def reset(self) -> None:
        with self.lock:
            self.requests.clear()
            self.emails.clear()
            self._idem.clear()
            self.script.clear()
            self.address_failures.clear()
            self.delay, self.quota = 0.0, None

    # --- reading ----------------------------------------------------------------

    def emails_per_address(self) -> Counter[str]:
        """How many distinct e-mails each address got."""
        with self.lock:
            return Counter(addr.lower() for e in self.emails.values() for addr in e.to)

    def posts_per_key(self) -> Counter[str | None]:
        """How many ``POST /emails`` arrived with each idempotency key."""
        with self.lock:
            return Counter(r.key for r in self.requests if r.method == "POST" and r.path == "/emails")

    def accepted_times(self) -> list[float]:
        """Arrival time of every distinct accepted e-mail, in order."""
        with self.lock:
            return sorted(e.created_at for e in self.emails.values())

    def post_times(self) -> list[float]:
        """Arrival time of every ``POST /emails``, in order."""
        with self.lock:
            return sorted(r.at for r in self.requests if r.method == "POST" and r.path == "/emails")

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                "requests": [asdict(r) for r in self.requests],
                "emails": [{"id": e.id, "to": e.to, "subject": e.subject, "key": e.key, "created_at": e.created_at,
                            "payload": e.payload} for e in self.emails.values()],
            }

    # --- the API -------------------------------------------------------------------

    def handle(self, method: str, path: str, headers: Any, body: bytes,
               arrived: float | None = None) -> tuple[int, Any, dict[str, str]]:
        arrived = arrived or time.time()
        if path.startswith("/_fake/"):
            return self._admin(method, path, body)
        key = headers.get("Idempotency-Key")
        auth = headers.get("Authorization") or ""
        if not auth.startswith("Bearer "):
            return self._done(arrived, method, path, key, None, 401,
                              _error(401, "missing_api_key", "Missing API key in the authorization header."))
        if auth[7:] != self.api_key:
            return self._done(arrived, method, path, key, None, 403, _error(403, "invalid_api_key",
                                                                             "API key is invalid."))
        if method == "GET" and path == "/domains":
            if self.sending_only:
                return self._done(arrived, method, path, None, None, 401, _error(
                    401, "restricted_api_key", "This API key is restricted to only send emails"))
            return self._done(arrived, method, path, None, None, 200, {"object": "list", "has_more": False, "data": [
                {"id": str(uuid.uuid5(uuid.NAMESPACE_DNS, name)), "name": name, "status": status,
                 "created_at": "2026-01-05T10:00:00.000000+00:00", "region": "us-east-1"}
                for name, status in self.domains.items()]})
        if method == "GET" and path.startswith("/emails/"):
            email = self.emails.get(path.rsplit("/", 1)[1])
            if email is None:
                return self._done(arrived, method, path, None, None, 404, _error(404, "not_found", "Email not found"))
            return self._done(arrived, method, path, None, None, 200, {
                "object": "email", "id": email.id, "to": email.to, "from": email.sender, "subject": email.subject,
                "html": email.payload.get("html"), "text": email.payload.get("text"),
                "created_at": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(email.created_at)),
                "last_event": "delivered"})
        if method != "POST" or path != "/emails":
            return self._done(arrived, method, path, key, None, 405,
                              _error(405, "method_not_allowed", "Method not allowed"))
        return self._send(arrived, key, body)

    def _done(self, at: float, method: str, path: str, key: str | None, to: str | None, status: int,
              body: dict[str, Any], headers: dict[str, str] | None = None) -> tuple[int, Any, dict[str, str]]:
        with self.lock:
            self.requests.append(Recorded(at, method, path, key, to, status,
                                          body.get("name") if status >= 400 else None))
        return status, body, headers or {}

    def _send(self, arrived: float, key: str | None, body: bytes) -> tuple[int, Any, dict[str, str]]:
        try:
            payload = json.loads(body)
            assert isinstance(payload, dict)
        except (ValueError, AssertionError):
            return self._done(arrived, "POST", "/emails", key, None, 422,
                              _error(422, "validation_error", "The body is not a JSON object."))
        to = payload.get("to")
        to_list = [to] if isinstance(to, str) else list(to or [])
        first = to_list[0] if to_list else None
        missing = [f for f in ("from", "to", "subject") if not payload.get(f)]
        if missing or not (payload.get("html") or payload.get("text")):
            what = missing[0] if missing else "html"
            return self._done(arrived, "POST", "/emails", key, first, 422,
                              _error(422, "missing_required_field", f"Missing `{what}` field."))
        if key is not None and not 1 <= len(key) <= 256:
            return self._done(arrived, "POST", "/emails", key, first, 400,
                              _error(400, "invalid_idempotency_key", "The key must be between 1-256 chars."))
        digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()

        running = False  # whether this request holds its key's "in progress" mark
        with self.lock:
            if key is not None:
                known = self._idem.get(key)
                if known is not None and arrived - known[3] < IDEMPOTENCY_TTL:
                    if known[0] != digest:
                        scripted: Scripted | None = Scripted(409, "invalid_idempotent_request",
                                                             "Same idempotency key used with a different request "
                                                             "payload.")
                    else:
                        self.requests.append(Recorded(arrived, "POST", "/emails", key, first, known[1]))
                        return known[1], known[2], {}
                elif key in self._running:
                    scripted = Scripted(409, "concurrent_idempotent_requests",
                                        "Same idempotency key used while original request is still in progress.")
                else:
                    scripted = None
                    self._running.add(key)
                    running = True
            else:
                scripted = None
            if scripted is None:
                scripted = self.address_failures.get((first or "").lower())
            if scripted is None and self.script:
                scripted = self.script.popleft()
            if scripted is None and self.quota is not None:
                if self.quota <= 0:
                    scripted = Scripted(429, self.quota_name, "You have reached your daily email sending quota.")
                else:
                    self.quota -= 1
            delay = self.delay
        try:
            if delay:
                time.sleep(delay)
            if scripted is not None and not scripted.after_accept:
                headers = {"retry-after": f"{scripted.retry_after:g}"} if scripted.retry_after is not None else {}
                return self._done(arrived, "POST", "/emails", key, first, scripted.status,
                                  _error(scripted.status, scripted.name, scripted.message), headers)
            email = Email(id=str(uuid.uuid4()), to=to_list, sender=str(payload["from"]),
                          subject=str(payload["subject"]), key=key, created_at=arrived, payload=payload)
            answer = {"id": email.id}
            with self.lock:
                self.emails[email.id] = email
                if key is not None:
                    self._idem[key] = (digest, 200, answer, arrived)
            if scripted is not None:  # accepted, but the answer is lost on the way back
                return self._done(arrived, "POST", "/emails", key, first, scripted.status,
                                  _error(scripted.status, scripted.name, scripted.message))
            return self._done(arrived, "POST", "/emails", key, first, 200, answer)
        finally:
            if running:
                with self.lock:
                    self._running.discard(key)

    # --- webhooks (delivered by Svix) ------------------------------------------------------------

    def event(self, email_id: str, kind: str, *, tags_as: str = "object", **data: Any) -> dict[str, Any]:
        """The envelope of a Resend event about e-mail ``email_id`` (``kind`` e.g. ``email.delivered``);
        ``data`` adds fields (``bounce={"type": "Permanent", …}``, ``click={"link": …}``)."""
        with self.lock:
            email = self.emails.get(email_id)
        payload = email.payload if email is not None else {}
        tags = {t["name"]: t["value"] for t in payload.get("tags") or []}
        now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        body: dict[str, Any] = {
            "email_id": email_id, "created_at": now, "from": payload.get("from"), "to": payload.get("to") or [],
            "subject": payload.get("subject"),
            "tags": tags if tags_as == "object" else [{"name": k, "value": v} for k, v in tags.items()],
        }
        if kind == "email.clicked":
            body["click"] = {"ipAddress": "203.0.113.7", "link": "https://bellavista.example/book",
                             "timestamp": now, "userAgent": "Mozilla/5.0"}
        body.update(data)
        return {"type": kind, "created_at": now, "data": body}

    def signed(self, envelope: dict[str, Any], *, secret: str | None = None, msg_id: str | None = None,
               timestamp: datetime | None = None) -> tuple[str, dict[str, str], bytes]:
        """``(url, headers, body)`` of the POST Svix makes with ``envelope``, signed with the official
        ``svix`` library (``secret`` and ``timestamp`` may be wrong on purpose)."""
        from svix.webhooks import Webhook  # the reference implementation of the signature

        text = json.dumps(envelope)
        msg_id = msg_id or f"msg_{uuid.uuid4().hex[:27]}"
        when = timestamp or datetime.now(UTC)
        signature = Webhook(secret or self.webhook_secret).sign(msg_id, when, text)
        headers = {"Content-Type": "application/json", "svix-id": msg_id,
                   "svix-timestamp": str(int(when.timestamp())), "svix-signature": signature}
        return self.webhook_url, headers, text.encode()

    def deliver(self, request: tuple[str, dict[str, str], bytes], post: Poster) -> Any:
        """POST a webhook built by :meth:`signed` through ``post``; returns the answer."""
        return post(*request)

    def _admin(self, method: str, path: str, body: bytes) -> tuple[int, Any, dict[str, str]]:
        if path == "/_fake/state" and method == "GET":
            return 200, self.snapshot(), {}
        if path == "/_fake/reset" and method == "POST":
            self.reset()
            return 200, {"reset": True}, {}
        if path == "/_fake/config" and method == "POST":
            config = json.loads(body or b"{}")
            if "delay" in config:
                self.delay = float(config["delay"])
            if "quota" in config:
                self.set_quota(config["quota"])
            for item in config.get("fail_next", []):
                self.fail_next(**item)
            return 200, {"ok": True}, {}
        return 404, _error(404, "not_found", "no such fake endpoint"), {}


class FakeResendClient:
    """Reads and steers a fake running in another process."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.Client(base_url=self.url, timeout=60, trust_env=False)

    def state(self) -> dict[str, Any]:
        return self._http.get("/_fake/state").json()

    def reset(self) -> None:
        self._http.post("/_fake/reset")

    def configure(self, **config: Any) -> None:
        self._http.post("/_fake/config", json=config)

    def accepted_times(self) -> list[float]:
        return sorted(e["created_at"] for e in self.state()["emails"])

    def emails_per_address(self) -> Counter[str]:
        return Counter(a.lower() for e in self.state()["emails"] for a in e["to"])

    def close(self) -> None:
        self._http.close()


@contextlib.contextmanager
def fake_resend_process(*, api_key: str = DEFAULT_KEY) -> Iterator[FakeResendClient]:
    """The fake in a process of its own (its clock and GIL undisturbed by the test), for measurements."""
    proc = subprocess.Popen([sys.executable, "-m", "tests.fakes.resend", "--api-key", api_key],
                            cwd=Path(__file__).resolve().parents[2], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        client = FakeResendClient(proc.stdout.readline().strip())
        try:
            yield client
        finally:
            client.close()
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the fake Resend API until interrupted.")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--api-key", default=DEFAULT_KEY)
    args = parser.parse_args()
    fake = FakeResend(api_key=args.api_key, port=args.port)
    print(fake.url, flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        fake.serve_forever()


if __name__ == "__main__":
    main()

"""A fake Vonage SMS API: a real HTTP server on 127.0.0.1 that speaks Vonage's shapes.

- ``POST /sms/json`` (form-encoded; ``api_key``/``api_secret`` in the form, or HTTP Basic as the v4
  SDK sends them) always answers **HTTP 200** with ``{"message-count", "messages": [...]}``, one
  entry per part of the text (160/153 characters as ``text``, 70/67 UTF-16 units as ``unicode``),
  each with its ``status``: ``0`` and a ``message-id``, or an error status and ``error-text``.
  It refuses what Vonage refuses: bad credentials (4), a missing parameter (2), an invalid ``to``
  or an over-long ``client-ref`` (3), a sender the account does not own (15), a callback longer
  than 100 characters (23), a barred number (7), no credit left (9);
- ``GET /account/get-balance`` answers ``{"value", "autoReload"}`` (401 for bad credentials);
- failures on demand (:meth:`FakeVonage.fail_next`): a status code per part (throttled, internal
  error, …), an HTTP 500 before or after the text was taken, a slow answer (a timeout);
- every request is recorded (:meth:`FakeVonage.posts`, :attr:`FakeVonage.messages`);
- Vonage's webhooks, signed as Vonage signs them (``timestamp``, ``nonce``, ``sig`` — the HMAC
  methods by the official SDK's ``vonage_http_client.Auth``, the plain "MD5 hash" by hand), by GET,
  POST form or POST JSON: delivery receipts (:meth:`FakeVonage.receipts`, one per part, carrying the
  ``client-ref``) and inbound texts (:meth:`FakeVonage.inbound`, a long text in concatenated parts).
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from vonage_http_client import Auth

from tests.fakes.loopback import LoopbackFake

API_KEY = "a1b2c3d4"
API_SECRET = "vonage-test-secret-0123"
SIGNATURE_SECRET = "vonage-signature-secret-4f1d"
FROM_NUMBER = "12015550100"  # Vonage writes numbers without "+"
PRICE = "0.00820000"
GSM7 = set("@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿"
           "abcdefghijklmnopqrstuvwxyzäöñüà^{}\\[~]|€")

# (method, url, headers, body) of a webhook Vonage makes
Request = tuple[str, str, dict[str, str], bytes]
Sender = Callable[[str, str, dict[str, str], bytes], Any]


def split(text: str, kind: str) -> list[str]:
    """The parts Vonage cuts a text into."""
    if kind == "unicode":
        units = text.encode("utf-16-le")
        single, multi = 70 * 2, 67 * 2
        if len(units) <= single:
            return [text]
        return [units[i:i + multi].decode("utf-16-le", errors="ignore") for i in range(0, len(units), multi)]
    if len(text) <= 160:
        return [text]
    return [text[i:i + 153] for i in range(0, len(text), 153)]


def sign(params: dict[str, Any], *, secret: str, method: str) -> str:
    """Vonage's ``sig``: the official SDK for the HMAC methods, ``md5(string + secret)`` for "MD5 hash"."""
    if method == "md5hash":
        text = "".join(f"&{k}={str(params[k]).replace('&', '_').replace('=', '_')}" for k in sorted(params)
                       if k != "sig")
        return hashlib.md5((text + secret).encode()).hexdigest()
    unsigned = {k: v for k, v in params.items() if k != "sig"}
    return Auth(api_key=API_KEY, signature_secret=secret, signature_method=method).sign_params(unsigned)


@dataclass
class Message:
    message_id: str  # the first part's
    part_ids: list[str]
    to: str
    sender: str
    text: str
    kind: str
    client_ref: str | None
    callback: str | None
    form: dict[str, str]
    created: float = field(default_factory=time.time)


@dataclass
class Scripted:
    """An answer forced on a coming ``POST /sms/json``."""

    statuses: list[str] | None = None  # per part (the last repeats); None: the real answer
    error_text: str = ""
    http_status: int = 200
    after_accept: bool = False  # take the text, then answer with the error (or too late)
    delay: float = 0.0


class FakeVonage(LoopbackFake):
    """The fake's state and HTTP server."""

    thread_name = "fake-vonage"

    def __init__(self, *, api_key: str = API_KEY, api_secret: str = API_SECRET,
                 numbers: tuple[str, ...] = (FROM_NUMBER,), signature_secret: str = SIGNATURE_SECRET,
                 signature_method: str = "md5hash",
                 status_url: str = "https://shop.example/webhooks/vonage/status",
                 inbound_url: str = "https://shop.example/webhooks/vonage/inbound", balance: float = 25.0) -> None:
        self.api_key = api_key
        self.api_secret = api_secret
        self.numbers = set(numbers)
        self.signature_secret = signature_secret
        self.signature_method = signature_method
        self.status_url = status_url
        self.inbound_url = inbound_url
        self.balance = balance
        self.lock = threading.Lock()
        self.messages: dict[str, Message] = {}
        self.requests: list[tuple[str, str, int, dict[str, str]]] = []
        self.script: deque[Scripted] = deque()
        self.barred: set[str] = set()  # numbers Vonage refuses with status 7
        self._listen()

    # --- control and reading --------------------------------------------------------------------------

    def fail_next(self, n: int = 1, *, status: str | list[str] | None = None, error_text: str = "",
                  http_status: int = 200, after_accept: bool = False, delay: float = 0.0) -> None:
        """Answer the next ``n`` texts this way: a status for every part (or one per part), an HTTP error,
        taking the text first, or answering late."""
        statuses = [status] if isinstance(status, str) else status
        with self.lock:
            for _ in range(n):
                self.script.append(Scripted(statuses, error_text, http_status, after_accept, delay))

    def posts(self) -> list[dict[str, str]]:
        """The form of every ``POST /sms/json`` that arrived, in order."""
        with self.lock:
            return [form for method, path, _, form in self.requests if method == "POST" and path == "/sms/json"]

    def sent_to(self, number: str) -> list[Message]:
        """Texts taken for ``number`` (E.164, with or without "+"), oldest first."""
        digits = number.removeprefix("+")
        with self.lock:
            return sorted((m for m in self.messages.values() if m.to == digits), key=lambda m: m.created)

    # --- the API -----------------------------------------------------------------------------------------

    def handle(self, method: str, raw_path: str, headers: Any, body: bytes) -> tuple[int, Any]:
        url = urlsplit(raw_path)
        form = dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True)) if body else {}
        query = dict(parse_qsl(url.query, keep_blank_values=True))
        if url.path == "/sms/json" and method == "POST":
            return self._send(form, headers)
        if url.path == "/account/get-balance" and method == "GET":
            if (query.get("api_key"), query.get("api_secret")) != (self.api_key, self.api_secret):
                return self._done(method, url.path, 401, {"error-code": "401",
                                                          "error-code-label": "authentication failed"}, query)
            return self._done(method, url.path, 200, {"value": self.balance, "autoReload": False}, query)
        return self._done(method, url.path, 404, {"type": "https://developer.nexmo.com/api-errors#not-found",
                                                  "title": "Not Found"}, form)

    def _done(self, method: str, path: str, status: int, answer: Any, form: dict[str, str]) -> tuple[int, Any]:
        with self.lock:
            self.requests.append((method, path, status, form))
        return status, answer

    def _authorised(self, form: dict[str, str], headers: Any) -> bool:
        if "api_key" in form or "api_secret" in form:
            return (form.get("api_key"), form.get("api_secret")) == (self.api_key, self.api_secret)
        expected = "Basic " + base64.b64encode(f"{self.api_key}:{self.api_secret}".encode()).decode()
        return headers.get("Authorization") == expected

    @staticmethod
    def _refused(status: str, text: str) -> dict[str, Any]:
        return {"message-count": "1", "messages": [{"status": status, "error-text": text}]}

    def _send(self, form: dict[str, str], headers: Any) -> tuple[int, Any]:
        def done(answer: dict[str, Any], status: int = 200) -> tuple[int, Any]:
            return self._done("POST", "/sms/json", status, answer, form)

        if not self._authorised(form, headers):
            return done(self._refused("4", "Bad Credentials"))
        for name in ("from", "to", "text"):
            if not form.get(name):
                return done(self._refused("2", f"Missing {name} param"))
        to, sender, kind = form["to"], form["from"], form.get("type", "text")
        if not to.isdigit() or not 7 <= len(to) <= 15:
            return done(self._refused("3", "Invalid to address"))
        if len(form.get("client-ref", "")) > 100:
            return done(self._refused("3", "Invalid client-ref"))
        if sender not in self.numbers:
            return done(self._refused("15", "Illegal Sender Address - rejected"))
        if len(form.get("callback", "")) > 100:
            return done(self._refused("23", "Invalid callback url"))
        if to in self.barred:
            return done(self._refused("7", "Number barred."))
        parts = split(form["text"], kind)
        with self.lock:
            scripted = self.script.popleft() if self.script else None
            if self.balance < float(PRICE) * len(parts):
                scripted = Scripted(["9"], "Partner quota exceeded")
        if scripted is not None and scripted.delay and not scripted.after_accept:
            time.sleep(scripted.delay)
        if scripted is not None and not scripted.after_accept:
            if scripted.http_status != 200:
                return done({"type": "about:blank", "title": "Internal Server Error"}, scripted.http_status)
            if scripted.statuses is not None:
                return done(self._answer(form, parts, scripted.statuses, scripted.error_text))
        answer = self._answer(form, parts, ["0"], "")
        if scripted is not None and scripted.after_accept:
            if scripted.delay:
                time.sleep(scripted.delay)  # the text is taken; the answer comes too late
            if scripted.http_status != 200:
                return done({"type": "about:blank", "title": "Internal Server Error"}, scripted.http_status)
        return done(answer)

    def _answer(self, form: dict[str, str], parts: list[str], statuses: list[str], error_text: str) -> dict[str, Any]:
        entries = []
        taken: list[str] = []
        for i, _part in enumerate(parts):
            status = statuses[min(i, len(statuses) - 1)]
            if status != "0":
                entries.append({"status": status, "error-text": error_text or f"Error {status}"})
                continue
            part_id = uuid.uuid4().hex[:16].upper()
            taken.append(part_id)
            with self.lock:
                self.balance -= float(PRICE)
                balance = self.balance
            entry = {"to": form["to"], "message-id": part_id, "status": "0", "remaining-balance": f"{balance:.8f}",
                     "message-price": PRICE, "network": "310090"}
            if form.get("client-ref"):
                entry["client-ref"] = form["client-ref"]
            entries.append(entry)
        if taken:
            message = Message(message_id=taken[0], part_ids=taken, to=form["to"], sender=form["from"],
                              text=form["text"], kind=form.get("type", "text"), client_ref=form.get("client-ref"),
                              callback=form.get("callback"), form=form)
            with self.lock:
                self.messages[message.message_id] = message
        return {"message-count": str(len(parts)), "messages": entries}

    # --- webhooks, signed as Vonage signs them -----------------------------------------------------------------

    def signed(self, url: str, params: dict[str, Any], *, how: str = "POST", secret: str | None = None,
               method: str | None = None, timestamp: float | None = None) -> Request:
        """A webhook to ``url`` with ``params``, signed: ``how`` is ``GET``, ``POST`` (a form) or
        ``POST-JSON``."""
        params = {**params, "timestamp": str(int(time.time() if timestamp is None else timestamp)),
                  "nonce": str(uuid.uuid4())}
        params["sig"] = sign(params, secret=secret or self.signature_secret, method=method or self.signature_method)
        if how == "GET":
            return "GET", f"{url}?{urlencode(params)}", {}, b""
        if how == "POST-JSON":
            return "POST", url, {"Content-Type": "application/json"}, json.dumps(params).encode()
        return "POST", url, {"Content-Type": "application/x-www-form-urlencoded"}, urlencode(params).encode()

    def receipts(self, message_id: str, status: str = "delivered", *, err_code: str = "0", how: str = "POST",
                 secret: str | None = None, timestamp: float | None = None) -> list[Request]:
        """The delivery receipts of a text (one per part), sent to its callback (else the account's URL)."""
        with self.lock:
            message = self.messages[message_id]
        now = datetime.now(UTC)
        out = []
        for part_id in message.part_ids:
            params: dict[str, Any] = {
                "msisdn": message.to, "to": message.sender, "network-code": "310090", "messageId": part_id,
                "price": PRICE, "status": status, "scts": now.strftime("%y%m%d%H%M"), "err-code": err_code,
                "api-key": self.api_key, "message-timestamp": now.strftime("%Y-%m-%d %H:%M:%S")}
            if message.client_ref:
                params["client-ref"] = message.client_ref[:40]
            out.append(self.signed(message.callback or self.status_url, params, how=how, secret=secret,
                                   timestamp=timestamp))
        return out

    def inbound(self, from_: str, text: str, *, to: str = FROM_NUMBER, how: str = "POST", secret: str | None = None,
                timestamp: float | None = None, part_size: int | None = None) -> list[Request]:
        """A customer texts ``to``: the webhook(s) Vonage makes — one per part when ``part_size`` cuts the text
        into a concatenated message."""
        sender = from_.removeprefix("+")
        words = text.strip().split()
        common: dict[str, Any] = {"msisdn": sender, "to": to, "type": "unicode" if set(text) - GSM7 else "text",
                                  "keyword": words[0].upper() if words else "", "api-key": self.api_key,
                                  "message-timestamp": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")}
        if not part_size or len(text) <= part_size:
            return [self.signed(self.inbound_url, {**common, "messageId": uuid.uuid4().hex[:16].upper(),
                                                   "text": text}, how=how, secret=secret, timestamp=timestamp)]
        chunks = [text[i:i + part_size] for i in range(0, len(text), part_size)]
        ref = str(uuid.uuid4().int % 256)
        return [self.signed(self.inbound_url, {**common, "messageId": uuid.uuid4().hex[:16].upper(), "text": chunk,
                                               "concat": "true", "concat-ref": ref, "concat-total": str(len(chunks)),
                                               "concat-part": str(i + 1)}, how=how, secret=secret, timestamp=timestamp)
                for i, chunk in enumerate(chunks)]

    @staticmethod
    def deliver(request: Request, send: Sender) -> Any:
        """Make a webhook request built by :meth:`receipts` or :meth:`inbound` through ``send``."""
        return send(*request)

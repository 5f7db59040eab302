"""A fake Twilio Messages API: a real HTTP server on 127.0.0.1 that speaks Twilio's shapes.

Driven by the real ``twilio`` SDK with ``client.api.base_url = fake.url``:

- ``POST /2010-04-01/Accounts/{sid}/Messages.json`` (form-encoded, HTTP Basic
  ``sid:token``; 401 code 20003 otherwise) checks ``To`` (21211), the sender
  (``From`` one of the account's numbers, or ``MessagingServiceSid``: 21606 /
  21603), ``Body`` (21602), refuses numbers that texted STOP to the sender
  (21610), and answers **201** with a Message resource (``sid`` ``SM…``,
  ``status: "queued"``, ``num_segments`` …);
- ``GET …/Messages.json?To=&DateSent>=&PageSize=`` lists messages, newest
  first, in Twilio's page envelope; ``GET …/Messages/{sid}.json`` reads one;
- ``GET /2010-04-01/Accounts/{sid}.json`` reads the account (its status can be set);
- failures on demand: scripted answers (an HTTP status and a Twilio error
  code; a lost answer after creating the message; a slow answer);
- the message's life and Twilio's webhooks, signed as Twilio signs them
  (``X-Twilio-Signature`` computed by the SDK's ``RequestValidator`` over the
  URL Twilio calls and the form parameters): :meth:`FakeTwilio.status_callback`
  (to the message's ``StatusCallback``) and :meth:`FakeTwilio.inbound` (a text
  from a customer, to the number's messaging webhook).  Like Twilio's default
  opt-out handling, an inbound STOP blocks the sender for that number until START.
"""

from __future__ import annotations

import base64
import random
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import phonenumbers
from twilio.request_validator import RequestValidator

from tests.fakes.loopback import LoopbackFake

ACCOUNT_SID = "AC" + "f" * 32
AUTH_TOKEN = "twilio_test_auth_token_0123456789"
FROM_NUMBER = "+12015550100"
MESSAGING_SERVICE_SID = "MG" + "a" * 32
STOP_WORDS = {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"}
START_WORDS = {"START", "YES", "UNSTOP"}
SEGMENT = 160

# a webhook poster: (url, headers, form body) -> the answer (an HTTP response)
Poster = Callable[[str, dict[str, str], bytes], Any]


def _rfc2822(epoch: float) -> str:
    return format_datetime(datetime.fromtimestamp(epoch, UTC).replace(microsecond=0))


def _parse_date(text: str) -> float | None:
    for pattern in ("%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%d"):
        try:
            return datetime.strptime(text, pattern).replace(tzinfo=UTC).timestamp()
        except ValueError:
            continue
    return None


def _error(status: int, code: int, message: str) -> dict[str, Any]:
    return {"code": code, "message": message, "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status}


@dataclass
class Message:
    sid: str
    to: str
    sender: str | None
    service: str | None
    body: str
    status_callback: str | None
    created: float
    status: str = "queued"
    sent: float | None = None
    error_code: int | None = None
    form: dict[str, str] = field(default_factory=dict)

    def resource(self, account: str) -> dict[str, Any]:
        return {
            "account_sid": account, "api_version": "2010-04-01", "body": self.body,
            "date_created": _rfc2822(self.created), "date_updated": _rfc2822(self.sent or self.created),
            "date_sent": _rfc2822(self.sent) if self.sent else None, "direction": "outbound-api",
            "error_code": self.error_code, "error_message": None, "from": self.sender,
            "messaging_service_sid": self.service, "num_media": "0",
            "num_segments": str(max(1, -(-len(self.body) // SEGMENT))), "price": None, "price_unit": "USD",
            "sid": self.sid, "status": self.status, "to": self.to,
            "uri": f"/2010-04-01/Accounts/{account}/Messages/{self.sid}.json",
            "subresource_uris": {"media": f"/2010-04-01/Accounts/{account}/Messages/{self.sid}/Media.json"},
        }


@dataclass
class Scripted:
    """An answer forced on a coming message creation."""

    status: int
    code: int
    message: str
    after_accept: bool = False  # create the message, then lose the answer (the client sees this error)
    delay: float = 0.0


class FakeTwilio(LoopbackFake):
    """The fake's state and HTTP server."""

    thread_name = "fake-twilio"

    def __init__(self, *, account_sid: str = ACCOUNT_SID, auth_token: str = AUTH_TOKEN,
                 numbers: tuple[str, ...] = (FROM_NUMBER,), inbound_url: str = "https://shop.example"
                                                                               "/webhooks/twilio/inbound") -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.numbers = set(numbers)
        self.inbound_url = inbound_url
        self.lock = threading.Lock()
        self.messages: dict[str, Message] = {}
        self.requests: list[tuple[str, str, int, dict[str, str]]] = []
        self.script: deque[Scripted] = deque()
        self.blocked: set[str] = set()  # numbers that replied STOP to the account's senders
        self.delay = 0.0
        self.flaky: tuple[float, random.Random] | None = None  # (share of creations refused with a 500, dice)
        self.friendly_name = "Bella Vista SMS"
        self.account_status = "active"  # or "suspended", "closed"
        self._listen()

    # --- control and reading --------------------------------------------------------------------

    def fail_next(self, n: int = 1, *, status: int = 500, code: int = 20500, message: str = "Internal Server Error",
                  after_accept: bool = False, delay: float = 0.0) -> None:
        """Answer the next ``n`` message creations with this error."""
        with self.lock:
            for _ in range(n):
                self.script.append(Scripted(status, code, message, after_accept, delay))

    def fail_at_random(self, share: float, *, seed: int = 7) -> None:
        """Refuse this share of message creations with a 500, creating nothing (a degraded Twilio)."""
        with self.lock:
            self.flaky = (share, random.Random(seed)) if share > 0 else None

    def posts(self) -> list[dict[str, str]]:
        """The form of every message creation that arrived, in order."""
        with self.lock:
            return [form for method, path, _, form in self.requests if method == "POST"]

    def sent_to(self, number: str) -> list[Message]:
        """Messages created for ``number``, oldest first."""
        with self.lock:
            return sorted((m for m in self.messages.values() if m.to == number), key=lambda m: m.created)

    def lists(self) -> list[str]:
        """The query of every message list request."""
        with self.lock:
            return [urlsplit(path).query for method, path, _, _ in self.requests
                    if method == "GET" and urlsplit(path).path.endswith("/Messages.json")]

    # --- the API -----------------------------------------------------------------------------------

    def account(self) -> dict[str, Any]:
        """The Account resource (``GET /2010-04-01/Accounts/{sid}.json``)."""
        created = _rfc2822(time.time() - 86_400 * 30)
        prefix = f"/2010-04-01/Accounts/{self.account_sid}"
        return {"auth_token": self.auth_token, "date_created": created, "date_updated": created,
                "friendly_name": self.friendly_name, "owner_account_sid": self.account_sid, "sid": self.account_sid,
                "status": self.account_status, "type": "Full", "uri": f"{prefix}.json",
                "subresource_uris": {"messages": f"{prefix}/Messages.json"}}

    def handle(self, method: str, raw_path: str, headers: Any, body: bytes) -> tuple[int, Any]:
        url = urlsplit(raw_path)
        form = {k: v[-1] for k, v in parse_qs(body.decode("utf-8"), keep_blank_values=True).items()}
        prefix = f"/2010-04-01/Accounts/{self.account_sid}"
        expected = "Basic " + base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        if headers.get("Authorization") != expected:
            return self._done(method, raw_path, 401, _error(401, 20003, "Authenticate"), form)
        if url.path == f"{prefix}.json" and method == "GET":
            return self._done(method, raw_path, 200, self.account(), form)
        if url.path == f"{prefix}/Messages.json" and method == "POST":
            return self._create(form, raw_path)
        if url.path == f"{prefix}/Messages.json" and method == "GET":
            return self._done(method, raw_path, 200, self._list(prefix, parse_qs(url.query)), form)
        if url.path.startswith(f"{prefix}/Messages/") and method == "GET":
            sid = url.path.rsplit("/", 1)[1].removesuffix(".json")
            with self.lock:
                message = self.messages.get(sid)
            if message is None:
                return self._done(method, raw_path, 404, _error(404, 20404, "The requested resource was not found"),
                                  form)
            return self._done(method, raw_path, 200, message.resource(self.account_sid), form)
        return self._done(method, raw_path, 404, _error(404, 20404, "The requested resource was not found"), form)

    def _done(self, method: str, path: str, status: int, answer: Any, form: dict[str, str]) -> tuple[int, Any]:
        with self.lock:
            self.requests.append((method, path, status, form))
        return status, answer

    def _list(self, prefix: str, query: dict[str, list[str]]) -> dict[str, Any]:
        to = (query.get("To") or [None])[0]
        after = _parse_date(query["DateSent>"][0]) if query.get("DateSent>") else None
        size = int((query.get("PageSize") or ["50"])[0])
        with self.lock:
            found = sorted(self.messages.values(), key=lambda m: m.created, reverse=True)
        rows = []
        for m in found:
            if to and m.to != to:
                continue
            if after is not None and (m.sent is None or m.sent < after):
                continue  # a message not sent yet has no sent date: a DateSent filter leaves it out
            rows.append(m.resource(self.account_sid))
        page = rows[:size]
        uri = f"{prefix}/Messages.json?{urlencode({k: v[0] for k, v in query.items()})}"
        return {"messages": page, "end": max(0, len(page) - 1), "first_page_uri": uri, "next_page_uri": None,
                "page": 0, "page_size": size, "previous_page_uri": None, "start": 0, "uri": uri}

    def _create(self, form: dict[str, str], path: str) -> tuple[int, Any]:
        with self.lock:
            refused = self.flaky is not None and self.flaky[1].random() < self.flaky[0]
        if refused:
            return self._done("POST", path, 500, _error(500, 20500, "Internal Server Error"), form)
        to, sender, service = form.get("To", ""), form.get("From"), form.get("MessagingServiceSid")
        body = form.get("Body", "")
        try:
            valid = to.startswith("+") and phonenumbers.is_valid_number(phonenumbers.parse(to, None))
        except phonenumbers.NumberParseException:
            valid = False
        if not valid:
            return self._done("POST", path, 400, _error(400, 21211, f"Invalid 'To' Phone Number: {to}"), form)
        if not sender and not service:
            return self._done("POST", path, 400, _error(400, 21603, "A 'From' phone number is required."), form)
        if sender and sender not in self.numbers:
            return self._done("POST", path, 400, _error(
                400, 21606, f"The From phone number {sender} is not a valid, SMS-capable inbound phone number or "
                            "short code for your account."), form)
        if not body.strip():
            return self._done("POST", path, 400, _error(400, 21602, "Message body is required."), form)
        with self.lock:
            blocked = to in self.blocked
            scripted = self.script.popleft() if self.script else None
            delay = self.delay + (scripted.delay if scripted else 0.0)
        if blocked:
            return self._done("POST", path, 400, _error(400, 21610, "Attempt to send to unsubscribed recipient"),
                              form)
        if delay:
            time.sleep(delay)
        if scripted is not None and not scripted.after_accept:
            return self._done("POST", path, scripted.status, _error(scripted.status, scripted.code, scripted.message),
                              form)
        now = time.time()
        message = Message(sid="SM" + uuid.uuid4().hex, to=to, sender=sender or (sorted(self.numbers)[0] if service
                                                                                 else None),
                          service=service, body=body, status_callback=form.get("StatusCallback"), created=now,
                          form=form)
        answer = message.resource(self.account_sid)
        with self.lock:
            self.messages[message.sid] = message
            # Twilio hands the message to the carrier at once: listed as sent from now on
            message.status, message.sent = "sent", now
        if scripted is not None:
            return self._done("POST", path, scripted.status, _error(scripted.status, scripted.code, scripted.message),
                              form)
        return self._done("POST", path, 201, answer, form)

    # --- webhooks, signed as Twilio signs them ---------------------------------------------------------

    def sign(self, url: str, params: dict[str, str], *, token: str | None = None) -> str:
        """``X-Twilio-Signature`` of a POST to ``url`` with ``params``."""
        return RequestValidator(token or self.auth_token).compute_signature(url, params)

    def _signed(self, url: str, params: dict[str, str], token: str | None) -> tuple[str, dict[str, str], bytes]:
        headers = {"Content-Type": "application/x-www-form-urlencoded", "I-Twilio-Idempotency-Token": uuid.uuid4().hex,
                   "X-Twilio-Signature": self.sign(url, params, token=token)}
        return url, headers, urlencode(params).encode()

    def status_callback(self, sid: str, status: str, *, error_code: int | None = None,
                        token: str | None = None) -> tuple[str, dict[str, str], bytes]:
        """The message's status changes; ``(url, headers, body)`` of the callback Twilio then POSTs."""
        with self.lock:
            message = self.messages[sid]
            message.status = status
            message.error_code = error_code
        params = {"SmsSid": sid, "SmsStatus": status, "MessageStatus": status, "To": message.to,
                  "MessageSid": sid, "AccountSid": self.account_sid, "From": message.sender or "",
                  "ApiVersion": "2010-04-01"}
        if message.service:
            params["MessagingServiceSid"] = message.service
        if error_code is not None:
            params["ErrorCode"] = str(error_code)
        if status == "delivered":
            params["RawDlrDoneDate"] = datetime.now(UTC).strftime("%y%m%d%H%M")
        assert message.status_callback, "the message was created without a StatusCallback"
        return self._signed(message.status_callback, params, token)

    def inbound(self, from_: str, body: str, *, to: str = FROM_NUMBER,
                token: str | None = None) -> tuple[str, dict[str, str], bytes]:
        """A customer texts the business's number; ``(url, headers, body)`` of the webhook Twilio POSTs."""
        word = body.strip().upper()
        with self.lock:  # Twilio's own default handling of opt-out keywords on long codes
            if word in STOP_WORDS:
                self.blocked.add(from_)
            elif word in START_WORDS:
                self.blocked.discard(from_)
        sid = "SM" + uuid.uuid4().hex
        params = {"ToCountry": "US", "ToState": "NJ", "SmsMessageSid": sid, "NumMedia": "0", "ToCity": "",
                  "FromZip": "", "SmsSid": sid, "FromState": "NY", "SmsStatus": "received", "FromCity": "",
                  "Body": body, "FromCountry": "US", "To": to, "ToZip": "", "NumSegments": "1",
                  "MessageSid": sid, "AccountSid": self.account_sid, "From": from_, "ApiVersion": "2010-04-01"}
        return self._signed(self.inbound_url, params, token)

    def deliver(self, request: tuple[str, dict[str, str], bytes], post: Poster) -> Any:
        """POST a webhook built by :meth:`status_callback` or :meth:`inbound` through ``post``."""
        return post(*request)

"""E-mail over SMTP — Amazon SES, SendGrid, Postmark or any relay — with the standard library's smtplib.

``SMTP_URL`` says where and how:

- ``smtp://user:pass@host:587``: STARTTLS whenever the server offers it; a password is never sent
  over an unencrypted connection (a server without STARTTLS is refused as a set-up problem);
- ``smtps://user:pass@host:465``: TLS from the first byte (implicit TLS);
- ``smtp://host:25`` without credentials: a local relay, in plain text if it offers no STARTTLS.

User name and password are URL-decoded (``%40`` for ``@``).  The port defaults to 465 for
``smtps``, 587 with credentials and 25 without.  Two optional query parameters name what a
service needs besides: ``configuration_set`` (Amazon SES: the ``X-SES-CONFIGURATION-SET`` whose
event publishing sends opens and clicks) and ``message_stream`` (Postmark:
``X-PM-Message-Stream``; ``broadcast`` is used by default on ``smtp-broadcasts.postmarkapp.com``).
``SMTP_CA_FILE`` adds a private certificate authority to the trusted ones.

Each e-mail carries a ``Message-ID`` derived from the try's idempotency key (the same for every
try of one recipient's step), the one-click unsubscribe headers of RFC 8058, and the tags each
service hands back in its webhooks: ``X-SES-MESSAGE-TAGS``, ``X-SMTPAPI`` unique arguments
(SendGrid) and ``X-PM-Metadata-*`` / ``X-PM-Tag`` (Postmark) — so a bounce names its recipient
even when it overtakes the dispatcher's record of the send.  The server's id of the message is
read from its final DATA reply (``250 Ok <id>`` at SES, ``250 Ok: queued as <id>`` at SendGrid
and Postfix) and becomes the provider message id; without one, our Message-ID is used.

What a failure means (RFC 5321 §4.2.1): a 4yz reply, a lost connection or a timeout is
retryable — with code ``not_sent`` when it happened before the server could have accepted the
message (connecting, EHLO, STARTTLS, AUTH, MAIL, RCPT, DATA refused, or its final reply a
refusal), and ``lost_reply`` when the message had been handed over and the answer never came.
A 5yz reply is permanent for the recipient, except the replies that say the account or sender is
not set up (bad credentials, authentication required, sender not verified, relaying denied):
those pause the campaign with the reason.  SMTP takes no idempotency key and a server cannot be
asked afterwards whether it accepted a message, so a try that may have gone through is never
repeated: :meth:`SmtpChannel.reconcile` declares its outcome unknown.

Connections are pooled per process and ``SMTP_URL`` (:class:`Pool`): the dispatcher's sending
threads each borrow one, send, and give it back, so a campaign reuses a few connections for
all its e-mails.  A connection idle for a while is checked with NOOP before use; one the server
closed meanwhile is replaced (a refusal before MAIL was accepted changes nothing, so the e-mail
goes out on the new connection); after a refused MAIL/RCPT the transaction is reset with RSET.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
import smtplib
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import formatdate, parseaddr
from functools import cache
from typing import NoReturn
from urllib.parse import parse_qs, unquote, urlsplit

from core.channels import send_timeout
from core.channels.base import (
    ChannelError,
    OutboundMessage,
    OutcomeUnknown,
    PermanentError,
    QuotaExceededError,
    RetryableError,
    SendResult,
)
from core.channels.resend_email import reply_to_address, sender_header
from core.config import Settings, get_settings

log = logging.getLogger(__name__)

PROVIDER = "smtp"
# headers ASCII-only (non-ASCII names as encoded words), bodies quoted-printable or base64 when they are
# not plain ASCII: any server takes the message, whether or not it offers 8BITMIME or SMTPUTF8
POLICY = SMTP_POLICY.clone(cte_type="7bit")
IDLE_CHECK_SECONDS = 5.0  # a pooled connection idle longer than this is checked with NOOP before use
IDLE_CLOSE_SECONDS = 60.0  # … and one idle longer than this is replaced (servers drop idle clients)
MAX_IDLE_CONNECTIONS = 8
MAX_MESSAGES_PER_CONNECTION = 200  # then a fresh connection (some services cap messages per session)
THROTTLE_RETRY_AFTER = 5.0  # SES's first documented back-off step

_TAG_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
_QUEUED_AS = re.compile(r"queued as\s+<?([^\s<>]+)>?", re.IGNORECASE)
_OK_ID = re.compile(r"^ok:?\s+<?([A-Za-z0-9][A-Za-z0-9._@-]{7,})>?\s*$", re.IGNORECASE)
_DOT_STUFF = re.compile(rb"(?m)^\.")
# replies that say the account or the sender is not set up, whatever their code: every e-mail would fail
_SETUP = re.compile(
    r"not verified|unverified|unauthenticated sender|authentication (is )?required|must issue a starttls"
    r"|sender identity|not authori[sz]ed to (send|perform)|relay(ing)? (access )?(denied|not permitted)"
    r"|sending (is )?paused|account (is )?(suspended|disabled|paused)|daily message quota|sending quota",
    re.IGNORECASE)
_THROTTLE = re.compile(r"throttl|sending rate|rate limit|too many (connections|messages|requests)",
                       re.IGNORECASE)
_SETUP_CODES = frozenset({530, 534, 535, 538})


class _Stale(Exception):
    """The server closed the connection before it accepted anything of this e-mail (a pooled
    connection it had dropped while idle, or a 421 at MAIL): another connection may send it."""

    def __init__(self, error: ChannelError | None = None) -> None:
        super().__init__()
        self.error = error


# --- SMTP_URL ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    """What ``SMTP_URL`` says: where the server is, how to secure the connection, who to sign in as."""

    host: str
    port: int
    implicit_tls: bool
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    configuration_set: str | None = None
    message_stream: str | None = None

    @property
    def label(self) -> str:
        return f"{self.host}:{self.port}"


def parse_url(url: str) -> Endpoint:
    """The :class:`Endpoint` of an ``smtp://`` or ``smtps://`` URL; raises :class:`QuotaExceededError`
    (a set-up problem: the campaign pauses with the reason) when the URL cannot be used."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise QuotaExceededError(f"SMTP_URL is not a valid address ({exc}); write it as "
                                 "smtp://user:password@host:587 or smtps://user:password@host:465.",
                                 code="smtp_url") from None
    scheme = parts.scheme.lower()
    if scheme not in ("smtp", "smtps") or not parts.hostname:
        raise QuotaExceededError("SMTP_URL must start with smtp:// or smtps:// and name the server, as in "
                                 "smtp://user:password@host:587.", code="smtp_url")
    user = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    if user and password is None:
        raise QuotaExceededError("SMTP_URL names a user but no password (smtp://user:password@host:587); "
                                 "characters such as @ or : in them are written %40 and %3A.", code="smtp_url")
    query = {k.lower(): v[-1] for k, v in parse_qs(parts.query).items() if v}
    host = parts.hostname
    implicit = scheme == "smtps"
    stream = query.get("message_stream")
    if stream is None and host.lower().startswith("smtp-broadcasts.postmarkapp.com"):
        stream = "broadcast"
    return Endpoint(host=host, port=port or (465 if implicit else 587 if user else 25), implicit_tls=implicit,
                    user=user or None, password=password if user else None,
                    configuration_set=query.get("configuration_set"), message_stream=stream)


@cache
def _local_hostname() -> str:
    """What this machine calls itself in EHLO (looked up once: ``getfqdn`` may ask DNS)."""
    name = socket.getfqdn()
    return name if name and "." in name else "localhost"


def tls_context(ca_file: str | None) -> ssl.SSLContext:
    """The system's trusted authorities, plus ``SMTP_CA_FILE`` when set; hostname checked."""
    context = ssl.create_default_context()
    if ca_file:
        try:
            context.load_verify_locations(cafile=ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise QuotaExceededError(f"SMTP_CA_FILE ({ca_file}) cannot be read as certificates ({exc}); point it "
                                     "at a PEM file holding the authority's certificate.",
                                     code="smtp_ca_file") from None
    return context


# --- what a reply means ----------------------------------------------------------------------------------


def _text(reply: bytes | str) -> str:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
    return " ".join(text.split())[:500]


def _said(code: int, reply: bytes | str) -> str:
    text = _text(reply)
    return f"{code} {text}" if text else str(code)


def _setup_failure(code: int, text: str) -> bool:
    return code in _SETUP_CODES or bool(_SETUP.search(text))


def refusal(code: int, reply: bytes | str, *, stage: str, address: str, sender: str) -> ChannelError:
    """What an SMTP reply other than success means for this e-mail, in words a shop owner can act on.

    ``stage`` is the command refused: ``MAIL``, ``RCPT``, ``DATA`` (the command) or ``END`` (the
    final reply to the message): all of them before the server took the message.
    """
    said = _said(code, reply)
    text = _text(reply)
    if "daily message quota" in text.lower() or "sending quota" in text.lower():
        return QuotaExceededError(f"The e-mail service's sending quota is used up ({said}); resume the campaign "
                                  "when it resets, or ask the service for a higher quota.", code="quota")
    if 400 <= code < 500:
        if _THROTTLE.search(text) or (code == 421 and "too many" in text.lower()):
            return RetryableError(f"The SMTP server asked to slow down ({said}); the e-mail will be sent shortly.",
                                  code="rate_limited", retry_after=THROTTLE_RETRY_AFTER)
        what = f"the address {address}" if stage == "RCPT" else "the e-mail"
        return RetryableError(f"The SMTP server did not accept {what} for now ({said}); it will be tried again.",
                              code="not_sent")
    if code in (535, 534):
        return QuotaExceededError(f"The SMTP server refused the user name or password ({said}); correct SMTP_URL, "
                                  "then resume the campaign.", code="auth_failed")
    if code == 530 or "authentication required" in text.lower():
        return QuotaExceededError(f"The SMTP server requires signing in ({said}); put the user name and password "
                                  "in SMTP_URL, then resume the campaign.", code="auth_required")
    if _setup_failure(code, text) or stage == "MAIL":
        return QuotaExceededError(f"The e-mail service refused to send as {sender} ({said}); verify the sender "
                                  "address or domain there (in the Amazon SES sandbox, recipients too) and check "
                                  "EMAIL_FROM, then resume the campaign.", code="sender_refused")
    if stage == "RCPT":
        return PermanentError(f"The receiving server refused the address {address} ({said}).", code=f"smtp_{code}")
    if code == 552:
        return PermanentError(f"The e-mail is too large for the SMTP server ({said}).", code="smtp_552")
    return PermanentError(f"The SMTP server refused the e-mail to {address} ({said}).", code=f"smtp_{code}")


def server_message_id(reply: bytes | str) -> str | None:
    """The server's id of an accepted message in its final DATA reply (``Ok <id>``, ``queued as <id>``)."""
    text = _text(reply)
    found = _QUEUED_AS.search(text) or _OK_ID.match(text)
    return found.group(1)[:100] if found else None


# --- the message -----------------------------------------------------------------------------------------------


def _tag(value: object) -> str:
    return _TAG_UNSAFE.sub("_", str(value))[:256]


def _one_line(value: str) -> str:
    return " ".join(value.split())


def _domain(address: str) -> str:
    domain = address.rpartition("@")[2].strip().strip(">").lower()
    return domain if re.fullmatch(r"[a-z0-9.-]+", domain or "") else "localhost"


def _address_of(sender: str) -> str:
    return parseaddr(sender)[1] or sender


def message_id_for(idempotency_key: str, sender: str) -> str:
    """``<hash@sender-domain>``: the same for every try of one recipient's step, unique across steps."""
    digest = hashlib.sha256(idempotency_key.encode("utf-8")).hexdigest()[:32]
    return f"<{digest}@{_domain(sender)}>"


def tags_of(message: OutboundMessage) -> dict[str, str]:
    """What names the recipient when the service reports back (ASCII letters, digits, ``_`` and ``-``)."""
    tags: dict[str, str] = {}
    if message.recipient_id is not None:
        tags["recipient_id"] = _tag(message.recipient_id)
    if message.campaign_id is not None:
        tags["campaign_id"] = _tag(message.campaign_id)
        tags["step"] = _tag(message.step)
    if message.test:
        tags["test"] = "true"
    return tags


def _service(host: str) -> str | None:
    host = host.lower()
    for name, suffix in (("ses", ".amazonaws.com"), ("sendgrid", "sendgrid.net"), ("postmark", "postmarkapp.com")):
        if host.endswith(suffix):
            return name
    return None


def _smtpapi(unique_args: dict[str, str]) -> str:
    # SendGrid reads the header unfolded; JSON's own spaces are where it may be folded (lines < 1000 chars)
    return json.dumps({"unique_args": unique_args}, ensure_ascii=True, separators=(", ", ": "))


def build_message(message: OutboundMessage, settings: Settings, *, endpoint: Endpoint | None = None
                  ) -> EmailMessage:
    """The MIME e-mail of ``message`` (text, and HTML as its alternative), with every header the services read.

    The tag headers of all three services are added for a server none of them runs; a known
    service gets only its own (the others would reach the customer's mailbox as they are)."""
    address = envelope_address(message.to)
    sender = settings.email_sender() or ""
    email = EmailMessage(policy=POLICY)
    email["From"] = sender_header(settings, message.business_name)
    email["To"] = address
    reply_to = reply_to_address(settings)
    if reply_to:
        email["Reply-To"] = _one_line(reply_to)
    email["Subject"] = _one_line(message.subject or "")
    email["Date"] = formatdate(usegmt=True)
    email["Message-ID"] = message_id_for(message.idempotency_key, _address_of(sender))
    if message.unsubscribe_url:
        email["List-Unsubscribe"] = f"<{_one_line(message.unsubscribe_url)}>"
        email["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    tags = tags_of(message)
    service = _service(endpoint.host) if endpoint else None
    if endpoint is not None and endpoint.configuration_set and service in (None, "ses"):
        email["X-SES-CONFIGURATION-SET"] = _one_line(endpoint.configuration_set)
    if tags and service in (None, "ses"):
        email["X-SES-MESSAGE-TAGS"] = ", ".join(f"{k}={v}" for k, v in tags.items())
    if tags and service in (None, "sendgrid"):
        email["X-SMTPAPI"] = _smtpapi(tags)
    if service in (None, "postmark"):
        for key, value in tags.items():
            email[f"X-PM-Metadata-{key}"] = value
        if message.campaign_id is not None or message.test:
            email["X-PM-Tag"] = f"campaign-{tags['campaign_id']}" if message.campaign_id else "test"
        if endpoint is not None and endpoint.message_stream:
            email["X-PM-Message-Stream"] = _one_line(endpoint.message_stream)
        if service == "postmark":
            email["X-PM-KeepID"] = "true"
    email.set_content(message.text or "")
    if message.html:
        email.add_alternative(message.html, subtype="html")
    return email


def envelope_address(to: str) -> str:
    """The recipient as the envelope and the To header carry it: an international domain in its
    ASCII form (any server takes it); a local part outside ASCII needs a server with SMTPUTF8."""
    address = (to or "").strip()
    local, at, domain = address.rpartition("@")
    if not (local and at and domain) or any(c in address for c in "\r\n<>,;\" ") or "@" in local:
        raise PermanentError(f"'{address}' is not an e-mail address that can be written in the To header.",
                             code="invalid_address")
    if not domain.isascii():
        try:
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError:
            raise PermanentError(f"The domain of '{address}' is not a valid international domain name.",
                                 code="invalid_address") from None
    return f"{local}@{domain}"


def _wire(email: EmailMessage, *, utf8: bool = False) -> bytes:
    """The message as DATA carries it: CRLF lines, leading dots doubled, ending in CRLF.CRLF; with
    ``utf8`` (SMTPUTF8) an address outside ASCII is written as it is."""
    raw = email.as_bytes(policy=POLICY.clone(utf8=True) if utf8 else POLICY)
    if not raw.endswith(b"\r\n"):
        raw += b"\r\n"
    return _DOT_STUFF.sub(b"..", raw) + b".\r\n"


# --- connections -----------------------------------------------------------------------------------------------


@dataclass(eq=False)
class Connection:
    """One open SMTP session, signed in and ready for MAIL."""

    smtp: smtplib.SMTP
    secure: bool
    last_used: float = field(default_factory=time.monotonic)
    messages: int = 0

    def close(self) -> None:
        try:
            self.smtp.quit()
        except (smtplib.SMTPException, OSError):
            self.smtp.close()


class Pool:
    """The process's open connections to one SMTP server (one per sending thread at most)."""

    def __init__(self, endpoint: Endpoint, *, ca_file: str | None, timeout: float) -> None:
        self.endpoint = endpoint
        self.ca_file = ca_file
        self.timeout = timeout
        self._idle: list[Connection] = []
        self._lock = threading.Lock()
        self._context: ssl.SSLContext | None = None

    def context(self) -> ssl.SSLContext:
        if self._context is None:
            self._context = tls_context(self.ca_file)
        return self._context

    def acquire(self) -> tuple[Connection, bool]:
        """A connection ready for MAIL, and whether it was used before (and may have been closed since)."""
        while True:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                return self.connect(), False
            idle = time.monotonic() - conn.last_used
            if idle > IDLE_CLOSE_SECONDS:
                conn.close()
                continue
            if idle > IDLE_CHECK_SECONDS:
                try:
                    code, _ = conn.smtp.noop()
                except (smtplib.SMTPException, OSError):
                    code = 0
                if code != 250:
                    conn.smtp.close()
                    continue
            return conn, True

    def release(self, conn: Connection) -> None:
        """Give a connection back after a finished transaction (or close it when enough is enough)."""
        conn.last_used = time.monotonic()
        conn.messages += 1
        if conn.messages >= MAX_MESSAGES_PER_CONNECTION:
            conn.close()
            return
        with self._lock:
            if len(self._idle) < MAX_IDLE_CONNECTIONS:
                self._idle.append(conn)
                return
        conn.close()

    def discard(self, conn: Connection) -> None:
        conn.smtp.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def connect(self) -> Connection:
        """Open, secure and sign in a new connection; raises what a failure means (nothing was sent)."""
        e = self.endpoint
        smtp: smtplib.SMTP | None = None
        stage = "connect"
        try:
            if e.implicit_tls:
                smtp = smtplib.SMTP_SSL(e.host, e.port, local_hostname=_local_hostname(), timeout=self.timeout,
                                        context=self.context())
            else:
                smtp = smtplib.SMTP(e.host, e.port, local_hostname=_local_hostname(), timeout=self.timeout)
            stage = "EHLO"
            smtp.ehlo_or_helo_if_needed()
            secure = e.implicit_tls
            if not secure and smtp.has_extn("starttls"):
                stage = "STARTTLS"
                smtp.starttls(context=self.context())
                smtp.ehlo()
                secure = True
            if e.user and not secure:
                raise QuotaExceededError(
                    f"The SMTP server {e.label} does not offer STARTTLS, so the password in SMTP_URL would travel "
                    "unencrypted; use smtps:// (port 465), a port where the server offers STARTTLS, or a local "
                    "relay without a password.", code="no_tls")
            if e.user:
                stage = "AUTH"
                if not smtp.has_extn("auth"):
                    raise QuotaExceededError(f"The SMTP server {e.label} does not offer signing in (AUTH); remove the "
                                             "user name and password from SMTP_URL or use the service's "
                                             "submission port.", code="no_auth")
                smtp.login(e.user, e.password or "")
            return Connection(smtp, secure)
        except ChannelError:
            if smtp is not None:
                smtp.close()
            raise
        except Exception as exc:
            if smtp is not None:
                smtp.close()
            self._raise_connect_error(exc, stage)

    def _raise_connect_error(self, exc: BaseException, stage: str) -> NoReturn:
        e = self.endpoint
        if isinstance(exc, ssl.SSLCertVerificationError):
            raise QuotaExceededError(
                f"The certificate of the SMTP server {e.label} could not be verified ({exc.verify_message}); if a "
                "private authority signed it, set SMTP_CA_FILE to that authority's certificate.",
                code="tls_certificate") from None
        if isinstance(exc, smtplib.SMTPAuthenticationError):
            said = _said(exc.smtp_code, exc.smtp_error)
            if 400 <= exc.smtp_code < 500:
                raise RetryableError(f"The SMTP server {e.label} could not check the password for now ({said}); "
                                     "the e-mail will be tried again.", code="not_sent") from None
            raise QuotaExceededError(f"The SMTP server {e.label} refused the user name or password ({said}); "
                                     "correct SMTP_URL, then resume the campaign.", code="auth_failed") from None
        if isinstance(exc, smtplib.SMTPNotSupportedError):
            raise QuotaExceededError(f"The SMTP server {e.label} does not offer a way of signing in that this "
                                     f"service speaks ({exc}); check SMTP_URL.", code="no_auth") from None
        if isinstance(exc, smtplib.SMTPResponseException):  # SMTPConnectError, SMTPHeloError, STARTTLS refused
            code = exc.smtp_code
            if code >= 500:
                raise QuotaExceededError(f"The SMTP server {e.label} refused the connection at {stage} "
                                         f"({_said(code, exc.smtp_error)}); check SMTP_URL.",
                                         code=f"smtp_{code}") from None
            raise RetryableError(f"The SMTP server {e.label} is not taking connections for now "
                                 f"({_said(code, exc.smtp_error)}); the e-mail will be tried again.",
                                 code="rate_limited" if _THROTTLE.search(_text(exc.smtp_error)) else "not_sent",
                                 retry_after=THROTTLE_RETRY_AFTER) from None
        if isinstance(exc, (OSError, smtplib.SMTPException)):
            what = "did not answer in time" if isinstance(exc, TimeoutError) else \
                f"could not be reached ({type(exc).__name__}: {exc})"
            raise RetryableError(f"The SMTP server {e.label} {what} at {stage}; the e-mail will be tried again.",
                                 code="not_sent") from None
        raise exc


_pools: dict[tuple[str, str | None, float], Pool] = {}
_pools_lock = threading.Lock()


def shared_pool(endpoint: Endpoint, *, url: str, ca_file: str | None, timeout: float) -> Pool:
    """The process's pool for ``SMTP_URL`` (and CA file and timeout)."""
    key = (url, ca_file, timeout)
    pool = _pools.get(key)
    if pool is None:
        with _pools_lock:
            pool = _pools.get(key)
            if pool is None:
                pool = _pools[key] = Pool(endpoint, ca_file=ca_file, timeout=timeout)
    return pool


def close_connections() -> None:
    """Close every idle pooled connection of this process (a polite QUIT to each server)."""
    with _pools_lock:
        pools = list(_pools.values())
    for pool in pools:
        pool.close()


# --- the adapter ---------------------------------------------------------------------------------------------------


class SmtpChannel:
    """Live e-mail through an SMTP server."""

    channel = "email"
    provider = PROVIDER
    live = True
    # no idempotency key, and a server cannot be asked afterwards: a try that may have gone through is not repeated
    retry_needs_reconcile = True
    # cannot be asked afterwards whether a message went out: the hand-over is recorded right before it, so a
    # try never handed over is sent again after a crash and only one that was is "outcome unknown"
    handoff_marked = True

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or get_settings()
        if self.settings.smtp_url is None or not self.settings.email_sender():
            raise ValueError("SMTP_URL and EMAIL_FROM are needed for live e-mail over SMTP")
        self._url = self.settings.smtp_url.get_secret_value()
        self.sender = _address_of(self.settings.email_sender() or "")
        try:
            self.endpoint: Endpoint | None = parse_url(self._url)
            self._setup_error: QuotaExceededError | None = None
        except QuotaExceededError as exc:
            self.endpoint, self._setup_error = None, exc
        self.timeout = send_timeout(self.settings)

    def _pool(self) -> Pool:
        if self.endpoint is None:
            assert self._setup_error is not None
            raise self._setup_error
        return shared_pool(self.endpoint, url=self._url, ca_file=self.settings.smtp_ca_file, timeout=self.timeout)

    def build(self, message: OutboundMessage) -> EmailMessage:
        """The MIME e-mail this adapter sends for ``message``."""
        return build_message(message, self.settings, endpoint=self.endpoint)

    def send(self, message: OutboundMessage) -> SendResult:
        """Send one e-mail; raises what the dispatcher should do when it did not go through."""
        pool = self._pool()
        email = self.build(message)
        to = envelope_address(message.to)
        data = _wire(email, utf8=not (to.isascii() and self.sender.isascii()))
        message_id = str(email["Message-ID"])
        for _ in range(2):
            conn, reused = pool.acquire()
            try:
                code, reply = self._transaction(conn, to, data)
            except _Stale as stale:
                pool.discard(conn)
                if reused:
                    continue  # the server had closed an idle connection: nothing of this e-mail reached it
                raise stale.error or RetryableError(
                    f"The SMTP server {pool.endpoint.label} closed the connection before taking the e-mail; it "
                    "will be tried again.", code="not_sent") from None
            except ChannelError:
                # a refusal leaves the session reset and usable; a lost connection is closed already
                if conn.smtp.sock is not None:
                    pool.release(conn)
                else:
                    pool.discard(conn)
                raise
            except BaseException:
                pool.discard(conn)
                raise
            pool.release(conn)
            server_id = server_message_id(reply)
            log.debug("smtp: %s accepted %s for %s (%s)", pool.endpoint.label, message_id, message.recipient_id,
                      _said(code, reply))
            return SendResult(provider_message_id=server_id or message_id.strip("<>")[:100], status="accepted",
                              detail={"smtp_reply": _said(code, reply), "message_id": message_id,
                                      "server": pool.endpoint.label})
        raise RetryableError(f"The SMTP server {pool.endpoint.label} kept closing the connection; the e-mail will "
                             "be tried again.", code="not_sent")

    def _transaction(self, conn: Connection, to: str, data: bytes) -> tuple[int, bytes]:
        """MAIL, RCPT, DATA on an open connection; the final reply of an accepted message.

        Raises :class:`_Stale` when the connection turns out closed before MAIL was answered, and the
        meaning of any refusal; after a refusal the connection is reset (RSET) and may be reused."""
        smtp = conn.smtp
        options = [f"SIZE={len(data)}"] if smtp.has_extn("size") else []
        if not (to.isascii() and self.sender.isascii()):
            if not smtp.has_extn("smtputf8"):
                raise PermanentError(f"The address {to} has characters outside ASCII, and the SMTP server does not "
                                     "accept such addresses (no SMTPUTF8).", code="smtputf8")
            options.append("SMTPUTF8")
        stage = "MAIL"
        try:
            code, reply = smtp.mail(self.sender, options)
            if code != 250:
                self._refused(conn, code, reply, stage, to)
            stage = "RCPT"
            code, reply = smtp.rcpt(to)
            if code not in (250, 251):
                self._refused(conn, code, reply, stage, to)
            stage = "DATA"
            smtp.putcmd("data")
            code, reply = smtp.getreply()
            if code != 354:
                self._refused(conn, code, reply, stage, to)
            stage = "content"  # until the terminator is out, the server cannot have taken the message
            smtp.send(data)
            stage = "END"
            code, reply = smtp.getreply()
        except (OSError, smtplib.SMTPServerDisconnected, smtplib.SMTPResponseException) as exc:
            self._lost(exc, stage)
        if code != 250:
            self._refused(conn, code, reply, stage, to)
        return code, reply

    def _lost(self, exc: BaseException, stage: str) -> NoReturn:
        label = self.endpoint.label if self.endpoint else "?"
        if stage == "MAIL" and isinstance(exc, smtplib.SMTPServerDisconnected):
            raise _Stale() from None
        if stage == "END":
            raise RetryableError(f"The SMTP server {label} stopped answering after the e-mail was handed over "
                                 f"({type(exc).__name__}: {exc}); it may have been accepted.",
                                 code="lost_reply") from None
        raise RetryableError(f"The connection to the SMTP server {label} was lost at {stage} "
                             f"({type(exc).__name__}: {exc}), before it took the e-mail; it will be tried again.",
                             code="not_sent") from None

    def _refused(self, conn: Connection, code: int, reply: bytes, stage: str, to: str) -> NoReturn:
        error = refusal(code, reply, stage=stage, address=to, sender=self.sender)
        if code == 421:
            conn.smtp.close()  # the server is closing this session
            if stage == "MAIL":
                raise _Stale(error)
        elif stage != "END":
            try:
                conn.smtp.rset()
            except (smtplib.SMTPException, OSError):
                conn.smtp.close()
        raise error

    def reconcile(self, message: OutboundMessage, *, started_at: datetime) -> SendResult | None:
        """An SMTP server cannot be asked whether it accepted a message: a try that may have gone through
        is declared unknown rather than risk a second e-mail."""
        raise OutcomeUnknown("the SMTP server cannot be asked whether it accepted the message, so it is not sent "
                             "again (the customer may have received it)", code="smtp_unknown")

    def check(self) -> str:
        """Connect, secure, sign in and offer the sender (then RSET and QUIT): nothing is sent to anyone."""
        pool = self._pool()
        e = pool.endpoint
        conn = pool.connect()
        try:
            try:
                code, reply = conn.smtp.mail(self.sender)
            except (smtplib.SMTPException, OSError) as exc:
                raise RetryableError(f"The SMTP server {e.label} closed the connection when offered the sender "
                                     f"({exc}); try again.", code="not_sent") from None
            if code != 250:
                raise refusal(code, reply, stage="MAIL", address="", sender=self.sender)
            with contextlib.suppress(smtplib.SMTPException, OSError):
                conn.smtp.rset()
        finally:
            conn.close()
        how = "over TLS" if e.implicit_tls else "with STARTTLS" if conn.secure else "unencrypted"
        who = f"as {e.user}" if e.user else "without signing in"
        return f"Connected to {e.label} {how} {who}; the server accepts {self.sender} as the sender."

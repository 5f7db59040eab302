"""A real SMTP server on 127.0.0.1 (aiosmtpd) that answers like Amazon SES, SendGrid or a plain relay.

``with SmtpPeer(security="starttls", users={"shop": "secret"}, tls=tls_files(tmp_path)) as peer``
serves on a free port; :meth:`SmtpPeer.url` is the ``SMTP_URL`` to reach it.

- ``security``: ``"starttls"`` (STARTTLS offered and required before MAIL, AUTH only after it, as
  at SES and SendGrid), ``"implicit"`` (TLS from the first byte, port-465 style) or ``"none"``
  (no TLS at all; AUTH offered in plain when ``users`` are set — a server to which no password
  may be sent);
- ``users``: the accounts AUTH accepts (else no AUTH); ``auth_required`` makes MAIL without
  AUTH answer 530;
- ``reply``: the final DATA reply of an accepted message — ``"ses"`` (``250 Ok <id>``),
  ``"sendgrid"`` (``250 Ok: queued as <id>``) or ``"plain"`` (``250 OK``, no id);
- scripting: ``refuse_rcpt[address] = "550 5.1.1 …"``, ``mail_replies`` / ``data_replies`` (the
  next replies to MAIL / to the end of DATA, instead of accepting), ``drop_after_data`` (take the
  next N messages, then close the connection without answering: a lost reply), ``data_delay``
  (seconds before answering DATA: a slow server); ``smtputf8=False`` for a server that takes
  ASCII addresses only.

Everything is recorded: each accepted message (:class:`Received`, with the connection it came
on, the signed-in user, whether it was encrypted, the id the server gave it), every AUTH attempt,
and how many connections were made (counted at EHLO).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import socket
import ssl
import threading
import uuid
from collections import Counter, deque
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path
from typing import Any, Literal

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

Security = Literal["starttls", "implicit", "none"]
ReplyStyle = Literal["ses", "sendgrid", "plain"]


@dataclass(frozen=True)
class TlsFiles:
    """A private certificate authority and a server certificate it issued for 127.0.0.1 and localhost."""

    ca: Path
    cert: Path
    key: Path


def tls_files(directory: Path) -> TlsFiles:
    """Generate a CA and a server certificate (with ``cryptography``) into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Connext test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
          .not_valid_after(now + dt.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    files = TlsFiles(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    files.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption()))
    return files


def free_port() -> int:
    """A port nothing listens on (aiosmtpd cannot bind port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Received:
    """One message the server accepted."""

    connection: int
    mail_from: str
    rcpt_tos: list[str]
    content: bytes
    user: str | None
    tls: bool
    server_id: str | None

    @property
    def email(self) -> EmailMessage:
        parsed = message_from_bytes(self.content, policy=default_policy)
        assert isinstance(parsed, EmailMessage)
        return parsed

    @property
    def message_id(self) -> str:
        return str(self.email["Message-ID"])


@dataclass
class _State:
    lock: threading.Lock = field(default_factory=threading.Lock)
    messages: list[Received] = field(default_factory=list)
    auth_attempts: list[tuple[str, bool]] = field(default_factory=list)
    connections: int = 0
    lost: list[Received] = field(default_factory=list)


def _raw(content: bytes | str | None) -> bytes:
    return content.encode("utf-8") if isinstance(content, str) else bytes(content or b"")


class _Handler:
    def __init__(self, peer: SmtpPeer) -> None:
        self.peer = peer

    def _connection(self, server: SMTP) -> int:
        # one protocol object per TCP connection (STARTTLS starts a new session on the same one)
        number = getattr(server, "connection_no", None)
        if number is None:
            with self.peer.state.lock:
                self.peer.state.connections += 1
                number = self.peer.state.connections
            server.connection_no = number  # type: ignore[attr-defined]
        return int(number)

    async def handle_EHLO(self, server: SMTP, session: Session, envelope: Envelope, hostname: str,
                          responses: list[str]) -> list[str]:
        session.host_name = hostname
        self._connection(server)
        return responses

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          mail_options: list[str]) -> str:
        with self.peer.state.lock:
            scripted = self.peer.mail_replies.popleft() if self.peer.mail_replies else None
        if scripted:
            return scripted
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          rcpt_options: list[str]) -> str:
        refused = self.peer.refuse_rcpt.get(address.lower())
        if refused:
            return refused
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.peer.data_delay:
            await asyncio.sleep(self.peer.data_delay)
        with self.peer.state.lock:
            scripted = self.peer.data_replies.popleft() if self.peer.data_replies else None
            drop = self.peer.drop_after_data > 0
            if drop:
                self.peer.drop_after_data -= 1
        if scripted:
            return scripted
        server_id = self.peer.new_id()
        auth = session.auth_data
        user = auth.login.decode() if isinstance(auth, LoginPassword) else None
        tls = session.ssl is not None or self.peer.security == "implicit"
        received = Received(self._connection(server), str(envelope.mail_from), list(envelope.rcpt_tos),
                            _raw(envelope.content), user, tls, server_id)
        with self.peer.state.lock:
            self.peer.state.messages.append(received)
            if drop:
                self.peer.state.lost.append(received)
        if drop and server.transport is not None:
            server.transport.close()  # taken, and the answer never reaches the client
        if self.peer.reply == "ses":
            return f"250 Ok {server_id}"
        if self.peer.reply == "sendgrid":
            return f"250 Ok: queued as {server_id}"
        return "250 OK"


class SmtpPeer:
    """The server and what it saw."""

    def __init__(self, *, security: Security = "starttls", users: dict[str, str] | None = None,
                 auth_required: bool = False, tls: TlsFiles | None = None, reply: ReplyStyle = "ses",
                 data_delay: float = 0.0, port: int | None = None, smtputf8: bool = True) -> None:
        if security != "none" and tls is None:
            raise ValueError("a TLS server needs its certificate (tls_files)")
        self.security = security
        self.users = dict(users or {})
        self.reply = reply
        self.data_delay = data_delay
        self.refuse_rcpt: dict[str, str] = {}
        self.mail_replies: deque[str] = deque()
        self.data_replies: deque[str] = deque()
        self.drop_after_data = 0
        self.state = _State()
        self.port = port or free_port()
        context = None
        if tls is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(str(tls.cert), str(tls.key))
        kwargs: dict[str, Any] = {"hostname": "127.0.0.1", "port": self.port, "ident": "connext test SMTP",
                                  "enable_SMTPUTF8": smtputf8}
        if self.users:
            kwargs.update(authenticator=self._authenticate, auth_required=auth_required)
        elif auth_required:
            kwargs.update(authenticator=lambda *a: AuthResult(success=False, handled=False), auth_required=True)
        if security == "starttls":
            kwargs.update(tls_context=context, require_starttls=True)
        elif security == "implicit":
            kwargs.update(ssl_context=context, auth_require_tls=False)
        else:
            kwargs.update(auth_require_tls=False)
        self.controller = Controller(_Handler(self), **kwargs)

    def _authenticate(self, server: SMTP, session: Session, envelope: Envelope, mechanism: str,
                      auth_data: Any) -> AuthResult:
        ok = False
        login = ""
        if isinstance(auth_data, LoginPassword):
            login = auth_data.login.decode("utf-8", "replace")
            ok = self.users.get(login) == auth_data.password.decode("utf-8", "replace")
        with self.state.lock:
            self.state.auth_attempts.append((login, ok))
        if ok:
            return AuthResult(success=True, auth_data=auth_data)
        # handled=False: the server answers 535 itself (True would leave the client waiting)
        return AuthResult(success=False, handled=False)

    # --- lifecycle -------------------------------------------------------------------------------

    def start(self) -> SmtpPeer:
        self.controller.start()
        with self.state.lock:  # the controller's own readiness probe is no client
            self.state.connections = 0
        return self

    def stop(self) -> None:
        self.controller.stop()

    def __enter__(self) -> SmtpPeer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def url(self, user: str | None = None, password: str | None = None, *, scheme: str | None = None,
            query: str = "") -> str:
        """The ``SMTP_URL`` of this server (credentials URL-encoded as given)."""
        scheme = scheme or ("smtps" if self.security == "implicit" else "smtp")
        auth = f"{user}:{password}@" if user is not None else ""
        return f"{scheme}://{auth}127.0.0.1:{self.port}" + (f"?{query}" if query else "")

    # --- reading ---------------------------------------------------------------------------------

    def new_id(self) -> str:
        if self.reply == "sendgrid":
            return uuid.uuid4().hex[:22]
        return f"0100019{uuid.uuid4().hex[:9]}-{uuid.uuid4()}-000000"

    @property
    def messages(self) -> list[Received]:
        with self.state.lock:
            return list(self.state.messages)

    @property
    def connections(self) -> int:
        with self.state.lock:
            return self.state.connections

    @property
    def auth_attempts(self) -> list[tuple[str, bool]]:
        with self.state.lock:
            return list(self.state.auth_attempts)

    def per_message_id(self) -> Counter[str]:
        """How many times each Message-ID arrived (more than once: a customer got an e-mail twice)."""
        return Counter(m.message_id for m in self.messages)

    def per_address(self) -> Counter[str]:
        return Counter(a.lower() for m in self.messages for a in m.rcpt_tos)

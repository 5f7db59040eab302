"""What the fake providers share: a threaded HTTP server on 127.0.0.1 that hands every request
to the fake's ``handle(method, path, headers, body) -> (status, json_body)``, and the fake's
lifecycle as a context manager."""

from __future__ import annotations

import contextlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self


class JsonHandler(BaseHTTPRequestHandler):
    """Reads the body, asks the fake, answers its JSON."""

    protocol_version = "HTTP/1.1"
    server: LoopbackServer

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the fake keeps its own record of every request."""

    def _handle(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        status, payload = self.server.fake.handle(method, self.path, self.headers, body)
        raw = json.dumps(payload).encode()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout test)
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

    def do_POST(self) -> None:
        self._handle("POST")

    def do_GET(self) -> None:
        self._handle("GET")


class LoopbackServer(ThreadingHTTPServer):
    daemon_threads = True
    fake: Any


class LoopbackFake:
    """Base of a fake: ``with Fake(...) as fake`` serves on a free port of 127.0.0.1 at ``fake.url``."""

    thread_name = "fake-provider"

    def _listen(self) -> None:
        self._server = LoopbackServer(("127.0.0.1", 0), JsonHandler)
        self._server.fake = self

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> Self:
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True,
                         name=self.thread_name).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

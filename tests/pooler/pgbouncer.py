"""A PgBouncer of the test session's own, in transaction mode, in front of the test PostgreSQL server.

:func:`running_pgbouncer` writes a configuration into a fresh directory, starts Debian's
``pgbouncer`` (1.18: no prepared statements in transaction mode, like Supavisor) on a free
port of 127.0.0.1, waits until it accepts connections, and stops it afterwards.  Every
database name goes to the server (``* = host=… port=…``); clients are trusted, and PgBouncer
logs in to the server as the URL's user (with its password, if the URL has one).  Server
connections are handed out round-robin, so one client's consecutive transactions land
on different server connections — as they may behind a busy production pooler.

PgBouncer refuses to run as root: as root it is started with ``-u nobody``.  Without
the binary the pooled run is skipped, except with ``CI=true``, where that is a failure.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import URL

CANDIDATES = ("/usr/sbin/pgbouncer", "/usr/bin/pgbouncer")


def binary() -> str | None:
    """Where pgbouncer is (``PGBOUNCER`` may say), or ``None``."""
    named = os.environ.get("PGBOUNCER")
    if named:
        return named if os.access(named, os.X_OK) else None
    found = shutil.which("pgbouncer")
    return found or next((c for c in CANDIDATES if os.access(c, os.X_OK)), None)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class PgBouncer:
    """A running PgBouncer: ``url(server_url)`` is the same database reached through it."""

    port: int
    log: Path

    def url(self, server: URL) -> URL:
        return server.set(host="127.0.0.1", port=self.port)


def config(*, server: URL, port: int, userlist: Path, pool_size: int = 20) -> str:
    return "\n".join([
        "[databases]",
        f"* = host={server.host or '127.0.0.1'} port={server.port or 5432}",
        "[pgbouncer]",
        "listen_addr = 127.0.0.1",
        f"listen_port = {port}",
        "unix_socket_dir =",
        "auth_type = trust",
        f"auth_file = {userlist}",
        "pool_mode = transaction",
        "server_round_robin = 1",
        f"default_pool_size = {pool_size}",
        "max_client_conn = 500",
        "query_wait_timeout = 30",
        "ignore_startup_parameters = extra_float_digits",
        "logfile =",
        "",
    ])


@contextlib.contextmanager
def running_pgbouncer(server: URL, workdir: Path, *, pool_size: int = 20) -> Iterator[PgBouncer]:
    """A PgBouncer in transaction mode in front of ``server`` for the duration of the block, with at most
    ``pool_size`` server connections per database."""
    exe = binary()
    if exe is None:
        message = "pgbouncer is not installed (apt-get install pgbouncer); the pooled PostgreSQL run needs it"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message)
        pytest.skip(message)
    workdir.mkdir(parents=True, exist_ok=True)
    userlist = workdir / "userlist.txt"
    # clients are trusted; PgBouncer logs in to the server with this password (none: the server trusts it)
    userlist.write_text(f'"{server.username or "postgres"}" "{server.password or ""}"\n')
    userlist.chmod(0o600)
    log = workdir / "pgbouncer.log"
    run_as = ["-u", "nobody"] if os.geteuid() == 0 else []
    for _ in range(5):  # a port taken between choosing and listening: choose again
        port = _free_port()
        ini = workdir / "pgbouncer.ini"
        ini.write_text(config(server=server, port=port, userlist=userlist, pool_size=pool_size))
        with log.open("ab") as out:
            proc = subprocess.Popen([exe, *run_as, str(ini)], stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL)
        if _wait_ready(proc, server, port):
            break
        _stop(proc)
    else:
        pytest.fail(f"pgbouncer did not start; its log:\n{log.read_text()[-3000:]}")
    try:
        yield PgBouncer(port=port, log=log)
    finally:
        _stop(proc)


def _wait_ready(proc: subprocess.Popen[bytes], server: URL, port: int, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with psycopg.connect(host="127.0.0.1", port=port, user=server.username or "postgres",
                                 dbname=server.database or "postgres", connect_timeout=2,
                                 prepare_threshold=None) as conn:
                conn.execute("SELECT 1")
            return True
        except psycopg.OperationalError:
            time.sleep(0.1)
    return False


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)

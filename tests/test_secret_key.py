"""One signing key for every process of a deployment (DESIGN §13, finding 1): a link signed by the
scheduler works on the API although they run in different folders (as on two machines), and on a
database server nothing starts without ``SECRET_KEY``.  Real processes, each in a folder of its own."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from tests.engine import helpers as h

ROOT = Path(__file__).resolve().parents[1]

SIGN = """
import sys, uuid
from core.tokens import unsubscribe_url
print(unsubscribe_url(uuid.UUID(sys.argv[1])))
"""

FOLLOW = """
import sys
from fastapi.testclient import TestClient
import api
with TestClient(api.create_app()) as client:
    answer = client.get(sys.argv[1])
print(answer.status_code)
print(answer.text)
"""


def machine(folder: Path, script: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``script`` in a process of its own whose working directory is ``folder``; the environment
    is the deployment's (no .env file is read: the folder has none)."""
    folder.mkdir(parents=True, exist_ok=True)
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("SECRET_KEY", "DATABASE_URL"))}
    clean.update(PYTHONPATH=str(ROOT), PUBLIC_BASE_URL="https://shop.example", **env)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(script), *args], cwd=folder, env=clean,
                          capture_output=True, text=True, timeout=120)


def a_recipient(session: Session, now) -> str:
    profile = h.business(session)
    h.add_leads(session, profile, h.emails(1), now=now)
    cid = h.campaign(session, profile, now=now)
    session.commit()
    (r,) = h.recipients(session, cid)
    return str(r.id)


def test_a_link_signed_by_one_process_is_honoured_by_another_in_another_folder(db_url, backend, session, now,
                                                                               tmp_path):
    recipient = a_recipient(session, now)
    env = {"DATABASE_URL": db_url}
    if backend == "postgresql":
        env["SECRET_KEY"] = "the-one-key-of-this-deployment-0c9f41"
    signed = machine(tmp_path / "scheduler-host", SIGN, recipient, **env)
    assert signed.returncode == 0, signed.stderr
    url = signed.stdout.strip()
    assert url.startswith("https://shop.example/unsubscribe/")
    followed = machine(tmp_path / "api-host", FOLLOW, url.removeprefix("https://shop.example"), **env)
    assert followed.returncode == 0, followed.stderr
    status, page = followed.stdout.split("\n", 1)
    assert status == "200" and "Unsubscribe" in page and "not valid" not in page
    # neither process wrote a key of its own in its folder
    assert not list((tmp_path / "scheduler-host").rglob("secret_key"))
    assert not list((tmp_path / "api-host").rglob("secret_key"))


def test_the_embedded_database_keeps_one_key_beside_its_file(tmp_path):
    """Many processes starting at once on a new embedded database agree on one key."""
    database = tmp_path / "db" / "connext.db"
    script = "from core.config import Settings\nprint(Settings(_env_file=None).signing_key())"
    procs = [subprocess.Popen([sys.executable, "-c", script], cwd=tmp_path, text=True, stdout=subprocess.PIPE,
                              env={**os.environ, "PYTHONPATH": str(ROOT), "SECRET_KEY": "",
                                   "DATABASE_URL": f"sqlite:///{database}"}) for _ in range(6)]
    keys = {p.communicate(timeout=60)[0].strip() for p in procs}
    assert len(keys) == 1 and len(keys.pop()) >= 40
    assert (database.parent / "secret_key").stat().st_mode & 0o777 == 0o600
    assert [p.name for p in database.parent.iterdir()] == ["secret_key"]  # no half-written leftovers


@pytest.mark.parametrize("program", ["api", "scheduler", "dashboard"])
def test_nothing_starts_on_a_database_server_without_secret_key(program, tmp_path):
    scripts = {
        "api": "from fastapi.testclient import TestClient\nimport api\nwith TestClient(api.create_app()):\n pass",
        "scheduler": f"import runpy, sys\nsys.argv = ['scheduler.py']\nrunpy.run_path({str(ROOT / 'scheduler.py')!r},"
                     f" run_name='__main__')",
        # the dashboard shows the reason instead of a sign-in form, and nothing else
        "dashboard": f"from streamlit.testing.v1 import AppTest\nat = AppTest.from_file({str(ROOT / 'app.py')!r})"
                     f".run(timeout=60)\nprint([e.value for e in at.error], len(at.text_input))\n"
                     f"raise SystemExit(3 if at.error else 0)",
    }
    ran = machine(tmp_path / program, scripts[program], DATABASE_URL="postgresql+psycopg://u@127.0.0.1:1/none")
    assert ran.returncode != 0, ran.stdout + ran.stderr
    assert "SECRET_KEY is not set" in ran.stderr + ran.stdout
    if program == "dashboard":
        assert ran.stdout.strip().endswith(" 0")  # no sign-in form

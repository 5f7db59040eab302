"""The command line, run as a newcomer would (a subprocess per command, JSON on stdout)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select, text

from core.config import ROOT
from core.models import Lead


def cli(db_url: str, *args: str, expect: int = 0) -> dict:
    # a deployment on a database server sets one SECRET_KEY for every process, the command line included
    env = {**os.environ, "DATABASE_URL": db_url, "SECRET_KEY": "cli-tests"}
    proc = subprocess.run([sys.executable, "-m", "core", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == expect, proc.stderr or proc.stdout
    return json.loads(proc.stdout if proc.stdout.strip() else proc.stderr)


@pytest.fixture
def fresh_url(db_url: str, backend: str, tmp_path: Path) -> str:
    """An empty, unmigrated database (the CLI migrates it)."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'cli.db'}"
    engine = create_engine(db_url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    return db_url


def test_whole_cli_flow(fresh_url: str, tmp_path: Path):
    assert cli(fresh_url, "migrate")["revision"]
    assert cli(fresh_url, "migrate")["migrated"] is True  # idempotent
    created = cli(fresh_url, "create-profile", "--business-name", "Studio 9", "--email", "Owner@Studio9.example",
                  "--timezone", "America/Chicago")
    assert set(created) == {"profile_id", "api_key", "password"} and created["api_key"].startswith("cx_")
    pid = created["profile_id"]
    agent = cli(fresh_url, "create-agent", "--profile", pid, "--name", "Front desk")
    assert set(agent) == {"agent_id"}

    good = tmp_path / "good.csv"
    good.write_text("customer_name,customer_phone,customer_email,status,service_type,created_at,notes\n"
                    "Ana,(312) 555-0101,,Closed,Color,2025-01-01,\nAna,(312) 555-0101,,Closed,Color,2025-01-01,\n")
    assert cli(fresh_url, "import-leads", "--profile", pid, "--agent", agent["agent_id"], str(good)) == {
        "imported": 1, "duplicates": 1, "merged": [], "rejected": []}

    bad = tmp_path / "bad.csv"
    bad.write_text("customer_name,customer_phone\nBo,(312) 555-0102\nCy,42\n")
    out = cli(fresh_url, "import-leads", "--profile", pid, str(bad), expect=1)
    assert out["imported"] == 0 and out["rejected"][0]["line"] == 3
    out = cli(fresh_url, "import-leads", "--profile", pid, "--skip-invalid", str(bad))
    assert out["imported"] == 1 and len(out["rejected"]) == 1

    key = cli(fresh_url, "create-api-key", "--email", "owner@studio9.example", "--name", "crm")
    revoked = cli(fresh_url, "revoke-api-key", "--profile", pid, "--key-id", key["api_key_id"])
    assert revoked["revoked_at"]

    err = cli(fresh_url, "create-profile", "--business-name", "Dup", "--email", "owner@studio9.example", expect=2)
    assert err["field"] == "email"
    err = cli(fresh_url, "create-profile", "--business-name", "X", "--email", "x@studio.example",
              "--timezone", "Nowhere/City", expect=2)
    assert err["field"] == "timezone"

    engine = create_engine(fresh_url)
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(Lead)) == 2
    engine.dispose()


def test_seed_demo_only_when_empty(fresh_url: str):
    cli(fresh_url, "migrate")
    first = cli(fresh_url, "seed-demo", "--if-empty")
    assert first["seeded"] is True and first["login"]["email"] == "demo@bellavista.example"
    assert 300 <= first["customers"] <= 400 and first["leads"] > first["customers"]
    assert cli(fresh_url, "seed-demo", "--if-empty")["seeded"] is False

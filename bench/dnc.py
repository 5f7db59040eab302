"""Benchmark: importing a do-not-call list with ``python -m core import-dnc``, on PostgreSQL.

    .venv/bin/python bench/dnc.py [--rows 1000000] [--mixed 200000] [--url URL]

Goal (the issue): "CLI ``import-dnc`` (any format, 10-digit registry files, a
1,000,000-number file in under 60 s)".

It creates (and at the end drops) a scratch database ``connext_bench_dnc`` on
the server (``--url``, default: TEST_DATABASE_URL), migrates it with
``core.migrate.upgrade`` and creates one business per measure (so every
import starts from an empty list).  It writes two files:

* a registry file in the National DNC Registry's shape: ``--rows`` lines of
  ten digits, distinct valid US numbers in random order (real area codes,
  exchanges 200–999 without N11 and 555; a sample is checked with
  ``phonenumbers.is_valid_number``);
* a mixed-format file of ``--mixed`` other numbers written as ``(305) 555-0101``,
  ``+1 305-555-0101``, ``1-305-555-0101``, ``305.555.0101`` and ``3055550101``.

Then it measures wall-clock time of:

a. the real command as a user runs it (``SECRET_KEY=… DATABASE_URL=…
   python -m core import-dnc --profile ID FILE``, its own process, under
   ``/usr/bin/time -v`` for its peak memory when that exists), checking its
   exit status, its report (all added, nothing rejected) and the rows the
   table then holds for the business;
b. the hand-written baseline, in this process: psycopg ``COPY`` of the raw
   lines into a temporary table, then one ``INSERT INTO dnc_numbers … SELECT
   gen_random_uuid(), :profile, '+1' || line, … ON CONFLICT DO NOTHING`` — no
   validation — into another business;
c. the same file imported again through the command (every number already
   on the list), against the baseline statement run again;
d. the mixed-format file through the command, against the same baseline
   keeping the last ten digits of each line (``regexp_replace``).

Each baseline runs just before its measure, with a ``CHECKPOINT`` before
each of them.  It prints a table: seconds, rows, ratio to the baseline, peak
memory of the command, and whether the goal (a 1,000,000-number registry file
in under 60 s) is met.
"""

# ruff: noqa: E402
from __future__ import annotations

import sys
from pathlib import Path

# bench/ holds a script named like the standard library's `select`: take this folder off the path
ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)

import argparse
import json
import os
import random
import re
import resource
import shutil
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass

import phonenumbers
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url

from core import accounts, migrate
from core.config import get_settings
from core.db import make_engine, session_scope

DATABASE = "connext_bench_dnc"
GOAL_SECONDS = 60.0
GOAL_ROWS = 1_000_000
AREAS = ("201", "202", "205", "206", "212", "213", "214", "215", "217", "224", "239", "248", "253", "267", "281",
         "301", "303", "305", "310", "312", "313", "314", "317", "321", "347", "402", "404", "407", "408", "412",
         "415", "425", "469", "480", "503", "504", "512", "513", "516", "602", "603", "612", "614", "615", "617",
         "619", "646", "702", "704", "713", "718", "720", "732", "773", "786", "801", "813", "818", "832", "904",
         "916", "917", "919", "954", "972")
EXCHANGES = tuple(x for x in range(200, 1000) if x % 100 != 11 and x != 555)
MIXED = ("({a}) {e}-{n}", "+1 {a}-{e}-{n}", "1-{a}-{e}-{n}", "{a}.{e}.{n}", "{a}{e}{n}")

BASELINE_INSERT = """
INSERT INTO dnc_numbers (id, profile_id, number, source, created_at)
SELECT gen_random_uuid(), %(profile)s, {number}, 'national_registry', now() FROM dnc_raw
ON CONFLICT (profile_id, number) DO NOTHING
"""
REGISTRY_NUMBER = "'+1' || line"
MIXED_NUMBER = "'+1' || right(regexp_replace(line, '[^0-9]', '', 'g'), 10)"


@dataclass
class Measure:
    label: str
    seconds: float
    lines: int
    added: int
    baseline: float | None = None
    rss_mb: float | None = None
    goal: bool = False


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def numbers(rng: random.Random, count: int, taken: set[str]) -> list[tuple[str, str, str]]:
    """``count`` distinct valid US numbers not in ``taken`` (added to it), as (area, exchange, line)."""
    out: list[tuple[str, str, str]] = []
    while len(out) < count:
        area, exchange, line = rng.choice(AREAS), str(rng.choice(EXCHANGES)), f"{rng.randrange(10000):04d}"
        digits = area + exchange + line
        if digits not in taken:
            taken.add(digits)
            out.append((area, exchange, line))
    return out


def write_files(folder: Path, rows: int, mixed: int, seed: int = 11) -> tuple[Path, Path]:
    rng = random.Random(seed)
    taken: set[str] = set()
    registry, other = folder / "registry.txt", folder / "mixed.txt"
    registry_numbers = numbers(rng, rows, taken)
    with registry.open("w", encoding="ascii", newline="\n") as fh:
        fh.writelines(f"{a}{e}{n}\n" for a, e, n in registry_numbers)
    mixed_numbers = numbers(rng, mixed, taken)
    with other.open("w", encoding="ascii", newline="\n") as fh:
        fh.writelines(MIXED[i % len(MIXED)].format(a=a, e=e, n=n) + "\n" for i, (a, e, n) in enumerate(mixed_numbers))
    sample = rng.sample(registry_numbers, min(2000, rows)) + rng.sample(mixed_numbers, min(2000, mixed))
    invalid = [a + e + n for a, e, n in sample
               if not phonenumbers.is_valid_number(phonenumbers.parse(a + e + n, "US"))]
    if invalid:
        raise SystemExit(f"generated numbers phonenumbers does not accept: {invalid[:10]}")
    return registry, other


def count_rows(engine: Engine, profile_id: uuid.UUID) -> int:
    with engine.connect() as conn:
        return int(conn.scalar(text("SELECT count(*) FROM dnc_numbers WHERE profile_id = :p"), {"p": profile_id}))


def failed(report: dict[str, object]) -> bool:
    """Whether the command rejected a line or refused the file (it should not: every line is valid)."""
    return bool(report.get("rejected") or report.get("rejected_total") or report.get("refused"))


def checkpoint(engine: Engine) -> None:
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("CHECKPOINT"))


def run_cli(url: str, profile_id: uuid.UUID, path: Path) -> tuple[float, dict[str, object], float | None]:
    """Run ``python -m core import-dnc`` in its own process: wall-clock seconds, its report, its peak RSS (MB)."""
    command = [sys.executable, "-m", "core", "import-dnc", "--profile", str(profile_id), str(path)]
    gnu_time = shutil.which("time", path="/usr/bin:/bin")
    env = {**os.environ, "DATABASE_URL": url, "SECRET_KEY": "bench-dnc-secret-key", "LOG_LEVEL": "WARNING"}
    with tempfile.NamedTemporaryFile("r", suffix=".time", encoding="utf-8") as stats:
        if gnu_time:
            command = [gnu_time, "-v", "-o", stats.name, *command]
        t0 = time.perf_counter()
        proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
        took = time.perf_counter() - t0
        rss: float | None = None
        if gnu_time:
            found = re.search(r"Maximum resident set size \(kbytes\): (\d+)", stats.read())
            rss = int(found.group(1)) / 1024 if found else None
        else:  # the largest child so far: right for the first import, an upper bound after it
            rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    if proc.returncode != 0:
        raise SystemExit(f"import-dnc exited with {proc.returncode}: {proc.stderr[-2000:]}")
    return took, json.loads(proc.stdout), rss


def run_baseline(engine: Engine, profile_id: uuid.UUID, path: Path, number: str) -> tuple[float, int]:
    """COPY the raw lines into a temporary table and insert them in one statement, no checks."""
    raw = engine.raw_connection()
    try:
        t0 = time.perf_counter()
        with raw.cursor() as cursor:  # type: ignore[attr-defined]
            cursor.execute("CREATE TEMPORARY TABLE dnc_raw (line text) ON COMMIT DROP")
            with path.open("rb") as fh, cursor.copy("COPY dnc_raw (line) FROM STDIN") as copy:
                while chunk := fh.read(1 << 20):
                    copy.write(chunk)
            cursor.execute(BASELINE_INSERT.format(number=number), {"profile": profile_id})
            added = cursor.rowcount
        raw.commit()
        return time.perf_counter() - t0, added
    finally:
        raw.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000, help="lines of the registry file")
    parser.add_argument("--mixed", type=int, default=200_000, help="lines of the mixed-format file")
    parser.add_argument("--url", "--server", dest="url", default=get_settings().test_database_url,
                        help="PostgreSQL server (a scratch database is created on it)")
    args = parser.parse_args()

    started = time.perf_counter()
    server = make_url(args.url)
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{DATABASE}"'))
    url = server.set(database=DATABASE).render_as_string(hide_password=False)
    engine: Engine | None = None
    try:
        migrate.upgrade(url)
        engine = make_engine(url)
        profiles: dict[str, uuid.UUID] = {}
        with session_scope(engine) as s:
            for name in ("cli", "baseline", "cli-mixed", "baseline-mixed"):
                profile, _, _ = accounts.create_profile(s, business_name=f"Bench {name}",
                                                        email=f"{name}@bench.example", password="benchmark1")
                profiles[name] = profile.id
        measures: list[Measure] = []
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            registry, mixed = write_files(Path(tmp), args.rows, args.mixed)
            print(f"generated {args.rows:,} registry lines ({registry.stat().st_size / 1e6:.1f} MB) and "
                  f"{args.mixed:,} mixed-format lines ({mixed.stat().st_size / 1e6:.1f} MB) in "
                  f"{time.perf_counter() - t0:.1f} s; sample checked with phonenumbers")
            print(f"[{load()}]")

            # (b) then (a): the baseline and the command, each into an empty list of its own business
            checkpoint(engine)
            base, added = run_baseline(engine, profiles["baseline"], registry, REGISTRY_NUMBER)
            assert added == args.rows == count_rows(engine, profiles["baseline"]), (added, args.rows)
            checkpoint(engine)
            took, report, rss = run_cli(url, profiles["cli"], registry)
            rows = count_rows(engine, profiles["cli"])
            if report.get("added") != args.rows or failed(report) or rows != args.rows:
                raise SystemExit(f"import-dnc: expected {args.rows:,} rows, got {rows:,}; report "
                                 f"added={report.get('added')}, rejected={str(report.get('rejected'))[:500]}")
            measures.append(Measure("baseline: COPY + INSERT … SELECT", base, args.rows, added))
            measures.append(Measure("import-dnc, registry file", took, args.rows, rows, base, rss, goal=True))
            print(f"[{load()}]")

            # (c) the same file again: every number already on the list
            checkpoint(engine)
            base, added = run_baseline(engine, profiles["baseline"], registry, REGISTRY_NUMBER)
            assert added == 0, added
            checkpoint(engine)
            took, report, rss = run_cli(url, profiles["cli"], registry)
            rows = count_rows(engine, profiles["cli"])
            if report.get("added") != 0 or failed(report) or rows != args.rows:
                raise SystemExit(f"re-import: {rows:,} rows, report {str(report)[:500]}")
            measures.append(Measure("baseline again (all present)", base, args.rows, added))
            measures.append(Measure("import-dnc again (all present)", took, args.rows, 0, base, rss, goal=True))
            print(f"[{load()}]")

            # (d) mixed formats
            checkpoint(engine)
            base, added = run_baseline(engine, profiles["baseline-mixed"], mixed, MIXED_NUMBER)
            assert added == args.mixed, added
            checkpoint(engine)
            took, report, rss = run_cli(url, profiles["cli-mixed"], mixed)
            rows = count_rows(engine, profiles["cli-mixed"])
            if report.get("added") != args.mixed or failed(report) or rows != args.mixed:
                raise SystemExit(f"mixed: {rows:,} rows, report {str(report)[:500]}")
            with engine.connect() as conn:
                same = conn.scalar(text(
                    "SELECT count(*) FROM dnc_numbers a JOIN dnc_numbers b ON a.number = b.number "
                    "WHERE a.profile_id = :a AND b.profile_id = :b"),
                    {"a": profiles["cli-mixed"], "b": profiles["baseline-mixed"]})
            assert same == args.mixed, same  # the command read every line as the baseline did
            measures.append(Measure("baseline, mixed (last 10 digits)", base, args.mixed, added))
            measures.append(Measure("import-dnc, mixed formats", took, args.mixed, rows, base, rss))
            print(f"[{load()}]")
    finally:
        if engine is not None:
            engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)'))
        admin.dispose()

    print()
    print(f"{'measure':<34} {'seconds':>8} {'lines':>10} {'added':>10} {'lines/s':>10} {'× baseline':>10} "
          f"{'peak RSS':>9}  goal < {GOAL_SECONDS:.0f} s")
    for m in measures:
        ratio = f"{m.seconds / m.baseline:.1f}×" if m.baseline else "—"
        memory = f"{m.rss_mb:.0f} MB" if m.rss_mb is not None else "—"
        rate = f"{m.lines / m.seconds:,.0f}"
        goal = ("met" if m.seconds < GOAL_SECONDS else "not met") if m.goal else ""
        print(f"{m.label:<34} {m.seconds:>8.1f} {m.lines:>10,} {m.added:>10,} {rate:>10} {ratio:>10} {memory:>9}  "
              f"{goal}")
    first = measures[1]
    verdict = "met" if first.seconds < GOAL_SECONDS else "not met"
    scale = "" if args.rows == GOAL_ROWS else f" (measured on {args.rows:,} lines, not {GOAL_ROWS:,})"
    print(f"\ngoal: a {GOAL_ROWS:,}-number registry file in < {GOAL_SECONDS:.0f} s: {verdict} "
          f"({first.seconds:.1f} s){scale}; whole benchmark {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()

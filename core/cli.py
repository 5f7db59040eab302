"""Command line of the product; every command prints JSON on stdout.

    python -m core migrate
    python -m core create-profile --business-name N --email E [--password P] [--timezone TZ]
    python -m core create-agent --profile ID --name N [--vapi-assistant-id A] [--vapi-phone-number-id P]
    python -m core import-leads --profile ID [--agent ID] [--skip-invalid] [--map FIELD=COLUMN …] FILE.csv
    python -m core import-dnc --profile ID [--source national_registry|internal] [--skip-invalid] FILE
    python -m core create-api-key (--profile ID | --email LOGIN) [--name N]
    python -m core revoke-api-key --profile ID --key-id K
    python -m core seed-demo [--if-empty]

Errors print ``{"error": …, "field": …}`` on stderr and exit with status 2;
``import-leads`` and ``import-dnc`` are all or nothing: a bad row or line is listed, nothing is
written, and they exit with 1; with ``--skip-invalid`` they write the good ones, list the others and
exit with 0.
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy.engine import make_url

from core import accounts, demo, dnc, leads, migrate
from core.config import ConfigurationError, get_settings
from core.db import get_engine, session_scope
from core.errors import DomainError, Invalid
from core.models import DNC_SOURCES


def _uuid(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not an id (a UUID)") from None


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m core", description="CONNEXT Re-engagement command line")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("migrate", help="apply database migrations to DATABASE_URL")

    cp = sub.add_parser("create-profile", help="create a business with its owner's login and an API key")
    cp.add_argument("--business-name", required=True)
    cp.add_argument("--email", required=True, help="the owner's login e-mail")
    cp.add_argument("--password", help="login password (generated and printed when omitted)")
    cp.add_argument("--timezone", default="America/New_York", help="IANA zone, e.g. America/Chicago")
    cp.add_argument("--region", default="US", help="country for phone numbers written without +code")

    ca = sub.add_parser("create-agent", help="register a CONNEXT voice agent")
    ca.add_argument("--profile", required=True, type=_uuid)
    ca.add_argument("--name", required=True)
    ca.add_argument("--vapi-assistant-id")
    ca.add_argument("--vapi-phone-number-id")

    il = sub.add_parser("import-leads", help="import leads from a CSV file (all or nothing)")
    il.add_argument("--profile", required=True, type=_uuid)
    il.add_argument("--agent", type=_uuid)
    il.add_argument("--skip-invalid", action="store_true", help="import the good rows and list the bad ones")
    il.add_argument("--map", action="append", default=[], metavar="FIELD=COLUMN",
                    help='read a lead field from a column whose name says nothing, e.g. '
                         '--map customer_phone="Mobile No" (repeatable)')
    il.add_argument("file")

    dn = sub.add_parser("import-dnc", help="add a file of phone numbers (one per line, any format) to the "
                                           "do-not-call list")
    dn.add_argument("--profile", required=True, type=_uuid)
    dn.add_argument("--source", choices=DNC_SOURCES, default="national_registry",
                    help="national_registry (ten-digit registry lines are read as US numbers) or internal")
    dn.add_argument("--skip-invalid", action="store_true",
                    help="add the numbers and list the lines that are not phone numbers (without it, one such "
                         "line adds nothing)")
    dn.add_argument("file")

    ck = sub.add_parser("create-api-key", help="create another API key (shown once)")
    who = ck.add_mutually_exclusive_group(required=True)
    who.add_argument("--profile", type=_uuid)
    who.add_argument("--email", help="the business's login e-mail, instead of its id")
    ck.add_argument("--name", default="default")

    rk = sub.add_parser("revoke-api-key", help="revoke an API key")
    rk.add_argument("--profile", required=True, type=_uuid)
    rk.add_argument("--key-id", required=True, type=_uuid)

    sd = sub.add_parser("seed-demo", help="create the demo business")
    sd.add_argument("--if-empty", action="store_true", help="only when the database has no business yet")
    return p


def _safe_url(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def _run(args: argparse.Namespace) -> tuple[dict[str, Any], int]:
    settings = get_settings()
    if args.command != "migrate":
        settings.require_secret_key()
    if args.command == "migrate":
        revision = migrate.upgrade(settings.database_url)
        return {"migrated": True, "revision": revision, "database": _safe_url(settings.database_url)}, 0
    engine = get_engine()
    with session_scope(engine) as session:
        if args.command == "create-profile":
            profile, key, generated = accounts.create_profile(
                session, business_name=args.business_name, email=args.email, password=args.password,
                timezone=args.timezone, default_region=args.region)
            out: dict[str, Any] = {"profile_id": str(profile.id), "api_key": key}
            if generated:
                out["password"] = generated
            return out, 0
        if args.command == "create-agent":
            agent = accounts.create_agent(session, profile_id=args.profile, name=args.name,
                                          vapi_assistant_id=args.vapi_assistant_id,
                                          vapi_phone_number_id=args.vapi_phone_number_id)
            return {"agent_id": str(agent.id)}, 0
        if args.command == "import-leads":
            report = leads.import_leads(session, profile_id=args.profile, source=args.file, agent_id=args.agent,
                                        skip_invalid=args.skip_invalid, mapping=leads.mapping_from_pairs(args.map))
            return report.as_dict(), 1 if report.rejected and not args.skip_invalid else 0
        if args.command == "import-dnc":
            try:
                with open(args.file, "rb") as stream:
                    added = dnc.import_file(session, profile_id=args.profile, stream=stream, source=args.source,
                                            skip_invalid=args.skip_invalid)
            except OSError as exc:
                raise Invalid(f"cannot read {args.file}: {exc.strerror or exc}", field="file") from None
            return added.as_dict(), 1 if added.refused else 0
        if args.command == "create-api-key":
            profile_id = args.profile or accounts.profile_for_login(session, email=args.email)
            accounts.get_profile(session, profile_id=profile_id)
            row, key = accounts.create_api_key(session, profile_id=profile_id, name=args.name)
            return {"api_key_id": str(row.id), "api_key": key}, 0
        if args.command == "revoke-api-key":
            row = accounts.revoke_api_key(session, profile_id=args.profile, key_id=args.key_id)
            return {"api_key_id": str(row.id), "revoked_at": row.revoked_at.isoformat() if row.revoked_at else None}, 0
        if args.command == "seed-demo":
            return demo.seed_demo(session, if_empty=args.if_empty), 0
    raise AssertionError(args.command)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        out, status = _run(args)
    except DomainError as exc:
        print(json.dumps({"error": exc.message, "field": exc.field}), file=sys.stderr)
        return 2
    except ConfigurationError as exc:
        print(json.dumps({"error": str(exc), "field": "SECRET_KEY"}), file=sys.stderr)
        return 2
    print(json.dumps(out, default=str))
    return status

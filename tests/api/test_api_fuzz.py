"""Property-based fuzzing of every operation against the OpenAPI document (schemathesis).

Valid and invalid requests are generated from the schema and sent, with a valid
API key, to an app whose business has real campaigns and opt-outs; half of the
requests that name an object name a real one, so the routes get past "not
found".  Every answer must be a documented status, never a 5xx, with a body that
matches the schema; invalid input must be refused; dropping the key must give
401.  Bounded (the schema's examples, its boundary values and 20 random cases
per operation, SQLite only) to stay fast.
"""

from __future__ import annotations

import itertools
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import schemathesis
from api_helpers import Tenant, make_campaign, make_tenant, opt_out
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from schemathesis.core.parameters import ParameterLocation
from sqlalchemy.orm import Session

import api
from core.db import make_engine

CONFIG = schemathesis.Config.from_dict({
    # examples from the schema, boundary values (coverage), then random data (fuzzing);
    # the stateful phase is left out: real object ids (FuzzTarget) already take the routes deep
    "phases": {"stateful": {"enabled": False}},
    # the API key is sent by the test (a real one); schemathesis checks separately that
    # leaving it out is refused
    "generation": {"mode": "all", "max-examples": 20, "with-security-parameters": False},
    # schema-valid data may still break a business rule (an unknown template variable, a
    # campaign in the wrong state): a 4xx for it is correct, so this check does not apply
    "checks": {"positive_data_acceptance": {"enabled": False}},
})
schema = schemathesis.openapi.from_asgi("/openapi.json", api.create_app(database_url="sqlite://"), config=CONFIG)


@dataclass
class FuzzTarget:
    app: FastAPI
    tenant: Tenant
    campaign_ids: list[uuid.UUID]
    opt_out_id: uuid.UUID
    turns: Iterator[int]

    @property
    def headers(self) -> dict[str, str]:
        return self.tenant.headers

    def real_id(self, path: str) -> uuid.UUID | None:
        """Every other request that names an object names one of the business's own."""
        turn = next(self.turns)
        if turn % 2:
            return None
        if path.startswith("/api/opt-outs/"):
            return self.opt_out_id
        return self.campaign_ids[(turn // 2) % len(self.campaign_ids)]


@pytest.fixture
def fuzz_target(tmp_path: Path, sqlite_template: Path) -> Iterator[FuzzTarget]:
    path = tmp_path / "fuzz.db"
    shutil.copyfile(sqlite_template, path)
    engine = make_engine(f"sqlite:///{path}")
    with Session(engine, expire_on_commit=False) as session:
        tenant = make_tenant(session, name="Fuzzed Salon")
        draft = make_campaign(session, tenant)
        active = make_campaign(session, tenant, method="sms", variants=[{"name": "A"}, {"name": "B"}])
        call = make_campaign(session, tenant, method="call")
        from core.campaigns import start_campaign

        start_campaign(session, profile_id=tenant.profile_id, campaign_id=active.id)
        session.commit()
        opt = opt_out(session, tenant, "+12015551003", channel="sms")
    yield FuzzTarget(app=api.create_app(engine=engine), tenant=tenant,
                     campaign_ids=[draft.id, active.id, call.id], opt_out_id=opt.id, turns=itertools.count())
    engine.dispose()


@schema.parametrize()
@settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                                HealthCheck.filter_too_much])
def test_no_input_makes_the_api_fail(case: schemathesis.Case, fuzz_target: FuzzTarget) -> None:
    # an id generated to be invalid stays invalid: the answer to it must be a refusal
    if case.path_parameters and "id" in case.path_parameters and not case.meta.is_negative_at(ParameterLocation.PATH):
        real = fuzz_target.real_id(case.path)
        if real is not None:
            case.path_parameters["id"] = str(real)
    case.call_and_validate(app=fuzz_target.app, headers=fuzz_target.headers)

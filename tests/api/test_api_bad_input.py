"""Hostile and broken input: always a 4xx with the error body, never a 500, never a partial write."""

from __future__ import annotations

import json
from typing import Any

from api_helpers import EMAIL_CONTENT, Tenant, count, make_campaign, recipients_of
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from api_edge import MAX_JSON_DEPTH, parse_json_strictly
from core.config import get_settings
from core.models import Campaign, OptOut

GOOD = {"name": "Fine", "campaign_type": "winback", "outreach_method": "email", **EMAIL_CONTENT}
JSON = {"Content-Type": "application/json"}


def assert_error(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert isinstance(body["detail"], str) and body["detail"]
    assert isinstance(body["errors"], list)
    return body


BROKEN_JSON = [
    (b'{"name": "x",', "not valid JSON"),
    (b'{"name": NaN}', "NaN"),
    (b'{"name": Infinity}', "Infinity"),
    (b'{"rate_limit_per_minute": -Infinity}', "Infinity"),
    (b'{"rate_limit_per_minute": 1e999}', "too large"),
    (b'{"variables": {"promotion": 1' + b"0" * 5000 + b"}}", "not valid JSON"),
    (b"[" * 200_000 + b"]" * 200_000, "nested deeper"),
    (b'{"a":' * (MAX_JSON_DEPTH + 1) + b"1" + b"}" * (MAX_JSON_DEPTH + 1), "nested deeper"),
    (b'{"name": "nul \\u0000 inside"}', "NUL"),
    (b'{"name\\u0000": "x"}', "NUL"),
    (b'{"name": "lone \\ud800 surrogate"}', "surrogate"),
    (b'\xff\xfe{"name": 1}', "UTF-8"),
    (b"", "body: is required"),
    (b"null", "body"),
    (b'"just a string"', "must be an object"),
    (b"[1, 2, 3]", "must be an object"),
]


def test_broken_json_is_refused(client: TestClient, session: Session, tenant: Tenant, subtests: Any) -> None:
    for raw, words in BROKEN_JSON:
        with subtests.test(body=raw[:40]):
            response = client.post("/api/campaigns", content=raw, headers={**tenant.headers, **JSON})
            body = assert_error(response, 422)
            assert words in body["detail"]
    assert count(session, Campaign) == 0


def test_bodies_must_be_json(client: TestClient, session: Session, tenant: Tenant, subtests: Any) -> None:
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data",
                         "application/xml", None):
        with subtests.test(content_type=content_type):
            headers = dict(tenant.headers)
            if content_type:
                headers["Content-Type"] = content_type
            response = client.post("/api/campaigns", content=json.dumps(GOOD).encode(), headers=headers)
            assert "Content-Type: application/json" in assert_error(response, 415)["detail"]
    assert count(session, Campaign) == 0
    vendor = client.post("/api/campaigns", content=json.dumps(GOOD).encode(),
                         headers={**tenant.headers, "Content-Type": "application/vnd.api+json; charset=utf-8"})
    assert vendor.status_code == 201


def test_oversized_bodies_are_refused_before_parsing(client: TestClient, session: Session, tenant: Tenant) -> None:
    limit = get_settings().api_max_body_bytes
    big = {**GOOD, "description": "x" * limit}
    response = client.post("/api/campaigns", json=big, headers=tenant.headers)
    assert "larger than" in assert_error(response, 413)["detail"]

    def chunks():  # no Content-Length: the limit is applied while reading
        for _ in range(limit // 65536 + 2):
            yield b" " * 65536

    streamed = client.post("/api/campaigns", content=chunks(), headers={**tenant.headers, **JSON})
    assert_error(streamed, 413)
    lying = client.post("/api/campaigns", content=b"{}", headers={**tenant.headers, **JSON,
                                                                  "Content-Length": str(limit + 1)})
    assert lying.status_code in (400, 413)
    assert count(session, Campaign) == 0


def test_malformed_ids_in_paths(client: TestClient, tenant: Tenant, subtests: Any) -> None:
    for method, path in (
        ("GET", "/api/campaigns/not-a-uuid"), ("POST", "/api/campaigns/123/start"),
        ("GET", "/api/campaigns/%00/results"), ("PATCH", "/api/campaigns/' OR 1=1 --"),
        ("GET", "/api/campaigns/3fa85f64-5717-4562-b3fc-2c963f66afa/recipients"), ("DELETE", "/api/opt-outs/zzz"),
    ):
        with subtests.test(method=method, path=path):
            body = assert_error(client.request(method, path, headers=tenant.headers, json={}), 422)
            assert body["errors"][0]["field"] == "id" and "not a valid id" in body["detail"]


def test_bad_query_parameters(client: TestClient, session: Session, tenant: Tenant, subtests: Any) -> None:
    campaign = make_campaign(session, tenant)
    for params in ({"search": "a\x00b"}, {"status": "\x00"}, {"limit": "1e3"}, {"limit": "NaN"},
                   {"offset": "99999999999999999999"}, {"search": "x" * 201}):
        with subtests.test(params=params):
            response = client.get(f"/api/campaigns/{campaign.id}/recipients", params=params, headers=tenant.headers)
            assert next(iter(params)) in assert_error(response, 422)["detail"]
    assert_error(client.get("/api/opt-outs", params={"search": "\x00"}, headers=tenant.headers), 422)


EDGE_CAMPAIGNS: list[dict[str, Any]] = [
    {"scheduled_at": "9999-12-31T23:59:59-14:00"},
    {"scheduled_at": "0001-01-01T00:00:00+14:00"},
    {"target_criteria": {"filters": [{"field": "created_at", "op": "gt", "value": "0001-01-01T00:00:00+14:00"}]}},
    {"target_criteria": {"filters": [{"field": "duration", "op": "gt", "value": 10**30}]}},
    {"target_criteria": {"filters": [{"field": "duration", "op": "in", "value": [1, -(10**20)]}]}},
    {"target_criteria": {"last_contact_before": "0001-01-01", "last_contact_after": "0001-01-02"}},
    {"variables": {"promotion": "x", "": "empty name"}},
    {"variables": {"promotion": {"nested": True}}},
    {"steps": [{"channel": "email", "delay_hours": 1e308}]},
    {"variants": [{"name": " "}, {"name": "B"}]},
    {"send_window": {"start": "25:00", "end": "26:00"}},
    {"email_subject": "{" * 300},
    {"name": " "},
]


def test_edge_values_in_a_campaign_are_answered(client: TestClient, session: Session, tenant: Tenant,
                                                subtests: Any) -> None:
    created = 0
    for fields in EDGE_CAMPAIGNS:
        with subtests.test(fields=fields):
            response = client.post("/api/campaigns", json={**GOOD, **fields}, headers=tenant.headers)
            assert response.status_code in (201, 422), response.text
            if response.status_code == 201:  # a value at the edge may be fine; it must then read back
                created += 1
                assert client.get(f"/api/campaigns/{response.json()['id']}",
                                  headers=tenant.headers).status_code == 200
            else:
                assert_error(response, 422)
    assert count(session, Campaign) == created  # nothing refused was kept


def test_edge_criteria_in_a_preview_are_answered(client: TestClient, tenant: Tenant, subtests: Any) -> None:
    for criteria in (
        {"filters": [{"field": "duration", "op": "gt", "value": 10**30}]},
        {"filters": [{"field": "duration", "op": "lt", "value": -1e308}]},
        {"filters": [{"field": "created_at", "op": "lt", "value": "9999-12-31T23:59:59-14:00"}]},
        {"last_contact_days": 36500, "min_leads": 100000},
        {"filters": [{"field": "notes", "op": "contains", "value": "%_\\"}]},
    ):
        with subtests.test(criteria=criteria):
            response = client.post("/api/audience/preview", headers=tenant.headers,
                                   json={"target_criteria": criteria, "outreach_method": "email"})
            assert response.status_code in (200, 422), response.text


def test_a_refused_request_changes_nothing(client: TestClient, session: Session, tenant: Tenant) -> None:
    campaign = make_campaign(session, tenant)
    before = client.get(f"/api/campaigns/{campaign.id}", headers=tenant.headers).json()
    # one good and one bad change in the same request: neither is kept
    response = client.patch(f"/api/campaigns/{campaign.id}", headers=tenant.headers,
                            json={"name": "Changed", "message_template": "Hi {nope}"})
    assert_error(response, 422)
    after = client.get(f"/api/campaigns/{campaign.id}", headers=tenant.headers).json()
    assert after == before
    # a start that fails half-way leaves no recipients behind: an illegal status after a good field
    client.post(f"/api/campaigns/{campaign.id}/stop", headers=tenant.headers)
    assert_error(client.patch(f"/api/campaigns/{campaign.id}", headers=tenant.headers,
                              json={"description": "late", "status": "active"}), 409)
    assert client.get(f"/api/campaigns/{campaign.id}", headers=tenant.headers).json()["description"] is None
    assert recipients_of(session, campaign.id) == []
    assert count(session, OptOut) == 0


def test_unknown_routes_and_methods_answer_with_the_error_body(client: TestClient, tenant: Tenant) -> None:
    assert_error(client.get("/api/nothing-here", headers=tenant.headers), 404)
    refused = client.put("/api/campaigns", headers=tenant.headers, json={})
    assert_error(refused, 405)
    assert refused.headers["allow"] == "GET, POST"  # every method of the path, not those of one route
    one = client.put("/api/campaigns/3fa85f64-5717-4562-b3fc-2c963f66afa6", headers=tenant.headers, json={})
    assert one.status_code == 405 and one.headers["allow"] == "DELETE, GET, PATCH"


def test_the_strict_parser_keeps_ordinary_json() -> None:
    data = {"a": [1, 2.5, -3e10, True, None, "é ✓ 😀"], "b": {"c": ""}}
    assert parse_json_strictly(json.dumps(data, ensure_ascii=False).encode()) == data
    assert parse_json_strictly(json.dumps(data).encode()) == data


def test_json_types_are_taken_as_the_schema_says(client: TestClient, session: Session, tenant: Tenant,
                                                 subtests: Any) -> None:
    """A number sent as text, a date sent as a number, true sent for 1: refused, not reinterpreted."""
    for method, url, body, field in (
        ("POST", "/api/campaigns", {**GOOD, "max_attempts": "3"}, "max_attempts"),
        ("POST", "/api/campaigns", {**GOOD, "variables": {"promotion": True}}, "variables.promotion"),
        ("POST", "/api/campaigns", {**GOOD, "scheduled_at": 1700000000}, "scheduled_at"),
        ("POST", "/api/campaigns", {**GOOD, "variants": [{"name": "A", "weight": 1.5}, {"name": "B"}]},
         "variants.0.weight"),
        ("POST", "/api/audience/preview", {"target_criteria": {"last_contact_after": 5}, "outreach_method": "sms"},
         "target_criteria.last_contact_after"),
        ("POST", "/api/opt-outs", {"contact": 12015551002}, "contact"),
    ):
        with subtests.test(url=url, field=field):
            body_out = assert_error(client.request(method, url, json=body, headers=tenant.headers), 422)
            assert any(e["field"].startswith(field) for e in body_out["errors"]), body_out
    assert count(session, Campaign) == 0 and count(session, OptOut) == 0
    # the checks above come after the key: without one, the answer is 401
    assert client.post("/api/campaigns", json={**GOOD, "max_attempts": "3"}).status_code == 401

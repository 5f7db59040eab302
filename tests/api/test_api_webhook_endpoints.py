"""``/api/webhook-endpoints``: add (secret shown once), list, delete, the delivery log and the test event;
strict input, no SSRF, and another business's endpoint is a 404."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker
from standardwebhooks import Webhook

import api
from core import accounts, outbox, vault
from core.config import Settings
from core.models import WebhookEndpoint
from core.webhook_delivery import deliver_due
from tests.fakes.receiver import Receiver

KEY = "api-webhook-tests"
BASE = "/api/webhook-endpoints"


def make_settings(**kw: Any) -> Settings:
    return Settings(_env_file=None, secret_key=KEY, webhook_timeout_seconds=5.0, **kw)  # type: ignore[call-arg]


@pytest.fixture
def client(engine: Engine) -> Iterator[TestClient]:
    """The API as in development: private addresses allowed (the loopback receiver)."""
    app = api.create_app(engine=engine, settings=make_settings(webhooks_allow_private_urls=True))
    with TestClient(app, raise_server_exceptions=True) as c:
        yield c


@pytest.fixture
def strict(engine: Engine) -> Iterator[TestClient]:
    """The API as in production: only public addresses."""
    with TestClient(api.create_app(engine=engine, settings=make_settings()), raise_server_exceptions=True) as c:
        yield c


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


@dataclass(frozen=True)
class Business:
    """A business as an API client sees it (no customers: events out need none)."""

    profile_id: uuid.UUID
    headers: dict[str, str]


def business(session: Session, name: str) -> Business:
    profile, key, _ = accounts.create_profile(session, business_name=name, password="correct horse battery",
                                              email=f"owner-{uuid.uuid4().hex[:8]}@shop.example")
    session.commit()
    return Business(profile.id, {"Authorization": f"Bearer {key}"})


@pytest.fixture
def tenant(session: Session) -> Business:
    return business(session, "Bella Vista")


@pytest.fixture
def other(session: Session) -> Business:
    return business(session, "Studio Nine")


def add(client: TestClient, tenant, url: str, events: list[str] | None = None, **extra: Any):
    return client.post(BASE, json={"url": url, "events": events or ["*"], **extra}, headers=tenant.headers)


def test_add_list_and_delete(client, tenant, session, receiver) -> None:
    answer = add(client, tenant, receiver.endpoint, ["recipient.converted", "recipient.opted_out"],
                 description="Zapier: bookings to the CRM")
    assert answer.status_code == 201, answer.text
    body = answer.json()
    secret = body.pop("secret")
    assert secret.startswith("whsec_") and len(base64.b64decode(secret[6:])) == 32
    assert body["url"] == receiver.endpoint and body["events"] == ["recipient.converted", "recipient.opted_out"]
    assert body["description"] == "Zapier: bookings to the CRM" and body["disabled_at"] is None
    # the secret is stored encrypted and never shown again
    stored = session.get(WebhookEndpoint, uuid.UUID(body["id"])).secret
    assert secret not in stored and vault.decrypt(stored, make_settings()) == secret
    session.commit()
    listed = client.get(BASE, headers=tenant.headers)
    assert listed.status_code == 200 and listed.json() == {"endpoints": [body]}
    assert secret not in listed.text and "secret" not in listed.text
    # a second one with every type
    every = add(client, tenant, receiver.endpoint)
    assert every.status_code == 201 and every.json()["events"] == ["*"]
    assert every.json()["secret"] != secret
    assert len(client.get(BASE, headers=tenant.headers).json()["endpoints"]) == 2
    gone = client.delete(f"{BASE}/{body['id']}", headers=tenant.headers)
    assert gone.status_code == 204 and gone.content == b""
    assert client.delete(f"{BASE}/{body['id']}", headers=tenant.headers).status_code == 404
    assert [e["id"] for e in client.get(BASE, headers=tenant.headers).json()["endpoints"]] == [every.json()["id"]]


EVENT_MISTAKES = [
    ([], "events", "at least 1"),
    (["recipient.booked"], "events.0", "must be one of"),
    (["*", "recipient.sent"], "events", "alone"),
    ("recipient.sent", "events", "list"),
]


def test_event_types_are_checked(client, tenant, receiver) -> None:
    for events, field, words in EVENT_MISTAKES:
        answer = client.post(BASE, json={"url": receiver.endpoint, "events": events}, headers=tenant.headers)
        assert answer.status_code == 422, (events, answer.text)
        errors = answer.json()["errors"]
        assert any(e["field"] == field and words in e["message"] for e in errors), (events, errors)


def test_strict_input(client, tenant, receiver) -> None:
    extra = client.post(BASE, json={"url": receiver.endpoint, "events": ["*"], "secret": "mine"},
                        headers=tenant.headers)
    assert extra.status_code == 422 and extra.json()["errors"][0]["field"] == "secret"
    long = add(client, tenant, receiver.endpoint, description="x" * 501)
    assert long.status_code == 422 and long.json()["errors"][0]["field"] == "description"
    assert client.post(BASE, json={"url": receiver.endpoint, "events": ["*"]}).status_code == 401
    assert client.get(BASE).status_code == 401
    duplicates = add(client, tenant, receiver.endpoint, ["campaign.started", "campaign.started"])
    assert duplicates.status_code == 201 and duplicates.json()["events"] == ["campaign.started"]


UNSAFE = [
    ("http://127.0.0.1:8080/hook", "loopback"),
    ("http://10.0.0.5/hook", "private"),
    ("http://192.168.1.20/hook", "private"),
    ("http://169.254.169.254/latest/meta-data/", "link-local"),
    ("http://[::1]:8080/hook", "loopback"),
    ("http://[::ffff:127.0.0.1]/hook", "loopback"),
    ("http://100.64.0.9/hook", "shared"),
    ("http://0.0.0.0:8000/", "unspecified"),
    ("http://localhost:8080/hook", "localhost resolves to"),
    ("ftp://files.example.com/hook", "https:// or http://"),
    ("javascript:alert(1)", "https:// or http://"),
    ("https://user:password@93.184.216.34/hook", "user name or password"),
]


def test_private_and_odd_urls_are_refused(strict, tenant) -> None:
    for url, words in UNSAFE:
        answer = add(strict, tenant, url)
        assert answer.status_code == 422, (url, answer.text)
        (error,) = answer.json()["errors"]
        assert error["field"] == "url" and words in error["message"], (url, error)
    assert strict.get(BASE, headers=tenant.headers).json() == {"endpoints": []}


def test_a_public_address_is_taken(strict, tenant) -> None:
    answer = add(strict, tenant, "https://93.184.216.34/hooks/catch/1/abc/")
    assert answer.status_code == 201, answer.text


def test_private_addresses_are_allowed_only_when_the_server_says_so(client, strict, tenant) -> None:
    assert add(strict, tenant, "http://127.0.0.1:5678/webhook/connext").status_code == 422
    assert add(client, tenant, "http://127.0.0.1:5678/webhook/connext").status_code == 201


def test_at_most_twenty_endpoints(client, tenant, receiver) -> None:
    for _ in range(20):
        assert add(client, tenant, receiver.endpoint).status_code == 201
    refused = add(client, tenant, receiver.endpoint)
    assert refused.status_code == 409 and "at most 20" in refused.json()["detail"]


def test_another_business_endpoint_is_not_found(client, tenant, other, receiver) -> None:
    mine = add(client, tenant, receiver.endpoint).json()
    for method, path in [("delete", f"{BASE}/{mine['id']}"), ("get", f"{BASE}/{mine['id']}/deliveries"),
                         ("post", f"{BASE}/{mine['id']}/test")]:
        answer = client.request(method.upper(), path, headers=other.headers)
        assert answer.status_code == 404, (method, path, answer.text)
    assert client.get(BASE, headers=other.headers).json() == {"endpoints": []}
    assert receiver.received == []  # B's test request sent nothing to A's endpoint
    assert len(client.get(BASE, headers=tenant.headers).json()["endpoints"]) == 1


def test_send_test_event_and_the_delivery_log(client, tenant, engine, receiver) -> None:
    created = add(client, tenant, receiver.endpoint, ["recipient.converted"]).json()
    receiver.secret = created["secret"]
    sent = client.post(f"{BASE}/{created['id']}/test", headers=tenant.headers)
    assert sent.status_code == 200, sent.text
    entry = sent.json()
    assert entry["status"] == "delivered" and entry["test"] is True and entry["attempts"] == 1
    assert entry["event_type"] == "recipient.converted" and entry["response_status"] == 200
    (got,) = receiver.received
    # what an n8n Code node or a Zapier step does with it: the official verifier
    payload = Webhook(created["secret"]).verify(got.body, got.headers)
    assert payload["id"] == entry["event_id"] == got.headers["webhook-id"] and payload["data"]["test"] is True
    # real events join the log, newest first, a page at a time
    factory = sessionmaker(engine, expire_on_commit=False)
    with factory() as s, s.begin():
        for i in range(3):
            outbox.emit(s, profile_id=tenant.profile_id, type="recipient.converted", data={"recipient_id": f"r{i}"})
            outbox.emit(s, profile_id=tenant.profile_id, type="campaign.started", data={})  # not subscribed
    receiver.answer(500)
    report = deliver_due(factory, worker="api-tests", settings=make_settings(webhooks_allow_private_urls=True),
                         concurrency=1)
    assert (report.delivered, report.retrying) == (2, 1)
    log = client.get(f"{BASE}/{created['id']}/deliveries", params={"limit": 2}, headers=tenant.headers)
    assert log.status_code == 200
    page = log.json()
    assert page["total"] == 4 and page["limit"] == 2 and page["offset"] == 0 and len(page["deliveries"]) == 2
    rest = client.get(f"{BASE}/{created['id']}/deliveries", params={"limit": 2, "offset": 2},
                      headers=tenant.headers).json()
    entries = page["deliveries"] + rest["deliveries"]
    assert entries[-1]["id"] == entry["id"]  # the test event came first
    statuses = sorted(e["status"] for e in entries)
    assert statuses == ["delivered", "delivered", "delivered", "pending"]
    waiting = next(e for e in entries if e["status"] == "pending")
    assert waiting["response_status"] == 500 and waiting["next_attempt_at"] is not None
    assert waiting["last_error"].startswith("answered 500")
    assert {e["event_id"] for e in entries} == set(receiver.ids())
    bad = client.get(f"{BASE}/{created['id']}/deliveries", params={"limit": 0}, headers=tenant.headers)
    assert bad.status_code == 422


def test_a_test_event_nobody_takes_is_reported_and_retried(client, tenant, session) -> None:
    with Receiver(answers=(503,)) as r:
        created = add(client, tenant, r.endpoint, ["campaign.completed"]).json()
        entry = client.post(f"{BASE}/{created['id']}/test", headers=tenant.headers).json()
    assert entry["status"] == "pending" and entry["response_status"] == 503
    assert entry["next_attempt_at"] is not None and entry["last_error"].startswith("answered 503")


def test_a_disabled_endpoint_refuses_the_test_event(client, tenant, engine) -> None:
    with Receiver(answers=(410,)) as r:
        created = add(client, tenant, r.endpoint).json()
        first = client.post(f"{BASE}/{created['id']}/test", headers=tenant.headers).json()
        assert first["status"] == "failed" and first["response_status"] == 410
        again = client.post(f"{BASE}/{created['id']}/test", headers=tenant.headers)
    assert again.status_code == 409 and "410 Gone" in again.json()["detail"]
    (listed,) = client.get(BASE, headers=tenant.headers).json()["endpoints"]
    assert listed["disabled_at"] is not None and "410 Gone" in listed["disabled_reason"]


def test_the_routes_are_documented(client: TestClient, session: Session) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert set(paths[BASE]) == {"get", "post"}
    assert set(paths[f"{BASE}/{{id}}"]) == {"delete"}
    assert set(paths[f"{BASE}/{{id}}/deliveries"]) == {"get"} and set(paths[f"{BASE}/{{id}}/test"]) == {"post"}
    created = paths[BASE]["post"]["responses"]["201"]["content"]["application/json"]["schema"]["$ref"]
    assert created.endswith("/WebhookEndpointCreated")

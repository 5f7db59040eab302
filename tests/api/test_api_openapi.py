"""The OpenAPI document: every endpoint of the contract, every field described."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

import api

# DESIGN §7: method, path, success status
CONTRACT = [
    ("post", "/api/campaigns", "201"), ("get", "/api/campaigns", "200"), ("get", "/api/campaigns/{id}", "200"),
    ("patch", "/api/campaigns/{id}", "200"), ("delete", "/api/campaigns/{id}", "204"),
    ("post", "/api/campaigns/{id}/start", "200"), ("post", "/api/campaigns/{id}/pause", "200"),
    ("post", "/api/campaigns/{id}/stop", "200"), ("post", "/api/campaigns/{id}/execute", "200"),
    ("post", "/api/campaigns/{id}/select-recipients", "200"), ("post", "/api/campaigns/{id}/recipients", "200"),
    ("get", "/api/campaigns/{id}/recipients", "200"), ("get", "/api/campaigns/{id}/results", "200"),
    ("get", "/api/campaigns/{id}/export.csv", "200"), ("post", "/api/audience/preview", "200"),
    ("post", "/api/opt-outs", "201"), ("get", "/api/opt-outs", "200"), ("delete", "/api/opt-outs/{id}", "204"),
]


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return TestClient(api.create_app(database_url="sqlite://")).get("/openapi.json").json()


def test_every_contract_endpoint_is_documented(schema: dict[str, Any]) -> None:
    for method, path, success in CONTRACT:
        operation = schema["paths"][path][method]
        assert success in operation["responses"], (method, path)
        assert operation.get("summary") and operation.get("description"), (method, path)
        if path.startswith("/api/"):
            assert operation["security"] == [{"HTTPBearer": []}], (method, path)
            assert {"401", "422"} <= set(operation["responses"]), (method, path)
            if "{id}" in path:
                assert "404" in operation["responses"], (method, path)
            if "requestBody" in operation:
                assert {"413", "415"} <= set(operation["responses"]), (method, path)
    assert schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"


def test_errors_have_one_documented_shape(schema: dict[str, Any]) -> None:
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            for code, response in operation["responses"].items():
                if code.startswith("4"):
                    ref = response["content"]["application/json"]["schema"]["$ref"]
                    assert ref == "#/components/schemas/ErrorBody", (method, path, code)


def _documented_by_reference(prop: dict[str, Any]) -> bool:
    inner = [prop, prop.get("items", {}), prop.get("additionalProperties", {})]
    inner += [p for p in prop.get("anyOf", [])]
    return any(isinstance(p, dict) and "$ref" in p for p in inner[1:]) or "$ref" in prop


def test_every_field_has_a_description_and_an_example(schema: dict[str, Any]) -> None:
    missing = []
    for name, component in schema["components"]["schemas"].items():
        if name in ("HTTPValidationError", "ValidationError"):
            continue
        has_examples = bool(component.get("examples"))
        for field, prop in component.get("properties", {}).items():
            if not prop.get("description"):
                missing.append(f"{name}.{field}: description")
            if not has_examples and not prop.get("examples") and not _documented_by_reference(prop):
                missing.append(f"{name}.{field}: example")
    assert missing == []
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            for parameter in operation.get("parameters", []):
                assert parameter.get("description"), (method, path, parameter["name"])


def test_request_bodies_come_with_examples(schema: dict[str, Any]) -> None:
    components = schema["components"]["schemas"]
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            if "requestBody" not in operation:
                continue
            content = operation["requestBody"]["content"]
            if "multipart/form-data" in content:  # a file upload: every part is described
                parts = content["multipart/form-data"]["schema"]["properties"]
                assert parts and all(p.get("description") for p in parts.values()), (method, path)
                continue
            ref = content["application/json"]["schema"]["$ref"]
            assert components[ref.rsplit("/", 1)[1]].get("examples"), (method, path)

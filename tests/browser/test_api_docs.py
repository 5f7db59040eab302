"""The API's docs work offline: Swagger UI and ReDoc come from files a pinned package ships, not a CDN."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

import api
from core import migrate
from tests.browser.conftest import ARTIFACTS, ROOT, _free_port


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
def test_docs_pages_load_only_local_assets(tmp_path: Path, path: str) -> None:
    client = TestClient(api.create_app(database_url=f"sqlite:///{tmp_path / 'docs.db'}"))
    page = client.get(path)
    assert page.status_code == 200
    sources = re.findall(r"""(?:src|href)=["']([^"']+)["']""", page.text)
    assert sources and all(s.startswith("/docs/assets/") for s in sources), sources
    assert "cdn" not in page.text.lower() and "fonts.googleapis" not in page.text
    for asset in sources:
        assert client.get(asset).status_code == 200, asset
    assert not {"/docs", "/redoc"} & set(client.get("/openapi.json").json()["paths"])


@pytest.fixture
def api_server(tmp_path: Path) -> Iterator[str]:
    url = f"sqlite:///{tmp_path / 'api.db'}"
    migrate.upgrade(url)
    port = _free_port()
    log = (tmp_path / "api.log").open("w")
    process = subprocess.Popen([sys.executable, "-m", "uvicorn", "api:app", "--host", "127.0.0.1", "--port", str(port)],
                               cwd=ROOT, env={**os.environ, "DATABASE_URL": url, "SECRET_KEY": "docs-test"},
                               stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/openapi.json", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the API did not start:\n" + (tmp_path / "api.log").read_text())
            time.sleep(0.2)
        yield base
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=10)
        log.close()


@pytest.mark.browser
def test_swagger_ui_renders_with_no_network_but_the_api(api_server: str, page: Any) -> None:
    outside: list[str] = []

    def offline(route: Any) -> None:
        if route.request.url.startswith(api_server):
            route.continue_()
        else:  # as on a machine without internet
            outside.append(route.request.url)
            route.abort()

    page.route("**/*", offline)
    page.goto(f"{api_server}/docs")
    page.get_by_text("CONNEXT Re-engagement API").first.wait_for()
    page.locator(".opblock").first.wait_for()
    assert page.locator(".opblock").count() > 20
    page.screenshot(path=str(ARTIFACTS / "api-docs-offline.png"))
    page.goto(f"{api_server}/redoc")
    page.locator("h1", has_text="CONNEXT Re-engagement API").first.wait_for()
    page.locator("h2", has_text="List campaigns").first.wait_for()
    page.screenshot(path=str(ARTIFACTS / "api-redoc-offline.png"))
    # ReDoc's own "API docs by Redocly" badge asks for its logo; nothing the docs need comes from outside
    assert [u for u in outside if u != "https://cdn.redoc.ly/redoc/logo-mini.svg"] == []

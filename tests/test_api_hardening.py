"""API hardening: every state-changing route needs the token, bodies are size-limited, and names in
paths (static files, event ids, report entities) cannot reach outside the store or the static folder.

The routes are enumerated from the app itself, so an endpoint added later is checked too.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from blackout.serve.api import MAX_BODY, create_app
from serve_store import shared

TOKEN = "hardening-token"
SAFE = {"GET", "HEAD", "OPTIONS"}


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> str:
    copy = tmp_path_factory.mktemp("hardening") / "copy.duckdb"
    shutil.copyfile(shared(tmp_path_factory), copy)
    return str(copy)


def changing_routes(app: FastAPI) -> list[tuple[str, str]]:
    """(method, path with parameters filled) of every state-changing operation in the OpenAPI document."""
    out = []
    for path, ops in app.openapi()["paths"].items():
        for method in ops:
            if method.upper() not in SAFE:
                out.append((method.upper(), re.sub(r"\{[^}]+\}", "a-0000", path)))
    return out


def test_every_state_changing_route_needs_the_token(db: str) -> None:
    guarded = TestClient(create_app(db, token=TOKEN))
    routes = changing_routes(guarded.app)
    assert routes, "the API has state-changing routes (DELETE of events at least)"
    for method, path in routes:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}):
            r = guarded.request(method, path, headers=headers)
            assert r.status_code == 401, (method, path, headers, r.status_code)
    open_app = TestClient(create_app(db))  # no token configured: changes refused outright
    for method, path in routes:
        assert open_app.request(method, path, headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 403


def test_request_bodies_are_limited_on_every_route(db: str) -> None:
    client = TestClient(create_app(db, token=TOKEN))
    big = b"x" * (MAX_BODY + 1)
    for method, path in [*changing_routes(client.app), ("POST", "/attacks"), ("GET", "/attacks")]:
        r = client.request(method, path, content=big, headers={"Authorization": f"Bearer {TOKEN}"})
        assert r.status_code == 413, (method, path, r.status_code)


@pytest.mark.parametrize(
    "path",
    [
        "/static/../../../../etc/passwd",
        "/static/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/static/..%2f..%2f..%2fetc%2fpasswd",
        "/static//etc/passwd",
        "/attacks/..%2f..%2fetc%2fpasswd",
        "/outages/..%2f..%2f..%2fetc%2fpasswd",
        "/reports/daily?entity=../../../../etc/passwd",
        "/reports/daily?day=../../../../etc/passwd",
    ],
)
def test_no_path_traversal(db: str, path: str) -> None:
    client = TestClient(create_app(db, token=TOKEN))
    r = client.get(path)
    assert "root:" not in r.text
    assert r.status_code in (400, 404, 422, 501), (path, r.status_code)


def test_delete_with_a_traversal_id_touches_nothing(db: str, tmp_path: Path) -> None:
    client = TestClient(create_app(db, token=TOKEN, read_mode="direct"))
    before = client.get("/attacks").json()
    r = client.delete("/attacks/..%2f..%2fmeta", headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 404
    assert client.get("/attacks").json() == before

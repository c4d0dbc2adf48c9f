"""The API over HTTP (FastAPI's TestClient): always on the in-memory store, and also on
Postgres when DATABASE_URL is set (CI runs a postgres service for that)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from app.main import create_app
from app.store import MemoryStore, PostgresStore, Store
from fastapi.testclient import TestClient

STORES = ["memory"] + (["postgres"] if os.environ.get("DATABASE_URL") else [])


@pytest.fixture(params=STORES)
def client(request: pytest.FixtureRequest) -> Iterator[TestClient]:
    store: Store = (
        MemoryStore() if request.param == "memory" else PostgresStore(os.environ["DATABASE_URL"])
    )
    with TestClient(create_app(store)) as client:
        yield client


def test_healthz_and_readyz_answer_ok(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").status_code == 200


def test_an_item_posted_is_listed(client: TestClient) -> None:
    name = f"item-{uuid.uuid4().hex[:8]}"

    created = client.post("/items", json={"name": f"  {name} "})

    assert created.status_code == 201
    assert created.json()["name"] == name
    listed = client.get("/items").json()["items"]
    assert name in [item["name"] for item in listed]


@pytest.mark.parametrize("body", [{"name": ""}, {"nom": "x"}, {"name": "x" * 201}])
def test_a_bad_item_is_refused(client: TestClient, body: dict[str, str]) -> None:
    assert client.post("/items", json=body).status_code == 422


def test_readyz_says_unavailable_when_the_database_is_down() -> None:
    store = PostgresStore("postgresql://nobody@127.0.0.1:1/none")
    with TestClient(create_app(store)) as client:
        assert client.get("/readyz").status_code == 503

"""The HTTP API of {{ service }}: health checks and /items.

Run it with `uvicorn app.main:app`; tests build their own app with `create_app(store)`.
"""

from __future__ import annotations

import logging
import os
from datetime import datetime
from typing import Annotated

from fastapi import FastAPI, Response
from pydantic import BaseModel, StringConstraints

from app.store import Store, store_from_env

log = logging.getLogger(__name__)


class NewItem(BaseModel):
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


class ItemOut(BaseModel):
    id: int
    name: str
    created_at: datetime


class Items(BaseModel):
    items: list[ItemOut]


def create_app(store: Store) -> FastAPI:
    app = FastAPI(title="{{ service }}")

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz(response: Response) -> dict[str, str]:
        try:
            store.ping()
        except Exception as exc:  # any failure means "not ready"; say why in the log
            log.warning("readiness check failed: %s", exc)
            response.status_code = 503
            return {"status": "unavailable"}
        return {"status": "ready"}

    @app.get("/items")
    def list_items() -> Items:
        return Items(items=[ItemOut(**vars(item)) for item in store.list()])

    @app.post("/items", status_code=201)
    def add_item(new: NewItem) -> ItemOut:
        return ItemOut(**vars(store.add(new.name)))

    return app


app = create_app(store_from_env(os.environ))

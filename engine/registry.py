"""Services registered at run time (by new-service), stored in the database.

platform.yml stays the source of truth for teams, environments and policies; services
that the golden path creates are rows in `catalog_services`, merged into the in-memory
catalog at start-up, on registration, and by `refresh()` (called periodically, so every
replica learns of a service another replica created).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from catalog import Catalog, UnknownName
from catalog.model import Service
from engine.audit import record_in
from engine.db import Database, RegisteredServiceRow
from kernel.ids import ServiceName, SlackUserId
from kernel.ports.platform import AuditEntry

log = logging.getLogger(__name__)


class DatabaseServiceRegistry:
    """`ServiceRegistry` on the database, keeping one `Catalog` up to date."""

    def __init__(self, db: Database, catalog: Catalog) -> None:
        self.db, self.catalog = db, catalog
        self._configured = frozenset(catalog.model.services)
        self._registered: set[str] = set()

    async def register(
        self, name: ServiceName, definition: dict[str, Any], *, by: SlackUserId
    ) -> bool:
        if name in self._configured:
            raise ValueError(f"service '{name}' is defined in platform.yml")
        service = Service.model_validate(definition)
        self.catalog.add_service(name, service)

        def upsert(session: Session) -> bool:
            row = session.get(RegisteredServiceRow, name)
            created = row is None
            if row is None:
                session.add(
                    RegisteredServiceRow(
                        name=name, definition=service.model_dump(mode="json"), registered_by=by
                    )
                )
            else:
                row.definition = service.model_dump(mode="json")
            record_in(
                session, replace(AuditEntry.of(by, "catalog.registered"), service=ServiceName(name))
            )
            return created

        created = await self.db.run(upsert)
        self._registered.add(name)
        return created

    async def unregister(self, name: ServiceName, *, by: SlackUserId) -> bool:
        if name in self._configured:
            raise ValueError(f"service '{name}' is defined in platform.yml")

        def remove(session: Session) -> bool:
            gone = session.execute(
                delete(RegisteredServiceRow).where(RegisteredServiceRow.name == name)
            )
            existed = bool(getattr(gone, "rowcount", 0))
            if existed:
                record_in(
                    session,
                    replace(AuditEntry.of(by, "catalog.unregistered"), service=ServiceName(name)),
                )
            return existed

        existed = await self.db.run(remove)
        self.catalog.remove_service(name)
        self._registered.discard(name)
        return existed

    async def record_removal(
        self,
        name: ServiceName,
        definition: dict[str, Any],
        *,
        remains: Sequence[str],
        by: SlackUserId,
    ) -> None:
        if name in self._configured:
            raise ValueError(f"service '{name}' is defined in platform.yml")

        def upsert(session: Session) -> Service:
            row = session.get(RegisteredServiceRow, name)
            base = dict(row.definition) if row is not None else dict(definition)
            base["removal"] = {"requested_by": by, "remains": list(remains)}
            service = Service.model_validate(base)
            if row is None:
                session.add(
                    RegisteredServiceRow(
                        name=name, definition=service.model_dump(mode="json"), registered_by=by
                    )
                )
            else:
                row.definition = service.model_dump(mode="json")
            entry = AuditEntry.of(by, "catalog.removing", detail={"remains": list(remains)})
            record_in(session, replace(entry, service=ServiceName(name)))
            return service

        service = await self.db.run(upsert)
        self.catalog.add_service(name, service)
        self._registered.add(name)

    async def refresh(self) -> None:
        """Merge what the database holds into the catalog (and drop what it no longer does)."""
        rows = await self.db.run(
            lambda s: [
                (r.name, r.definition) for r in s.execute(select(RegisteredServiceRow)).scalars()
            ]
        )
        seen = set()
        for name, definition in rows:
            if name in self._configured:
                continue
            try:
                self.catalog.add_service(name, Service.model_validate(definition))
            except (UnknownName, ValueError) as exc:
                log.warning("registered service skipped", extra={"service": name, "why": str(exc)})
                continue
            seen.add(name)
        for name in self._registered - seen:
            self.catalog.remove_service(name)
        self._registered = seen

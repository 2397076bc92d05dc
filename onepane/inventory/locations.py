"""Locations: a provider account + region that onepane operates, from config or the API."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import datetime
from pathlib import Path
from typing import Any, cast

from sqlalchemy import Table, bindparam, func, or_, select, update
from sqlalchemy.orm import Session

from ..errors import Conflict, InvalidInput, NotFound, OnepaneError, TransientProviderError
from ..events import EventLog
from ..model import Location, LocationCreate
from ..providers.base import Provider
from ..providers.registry import Registry, build_provider
from ..secrets import Vault
from ..store.tables import InstanceRow, LocationRow, NetworkRow, VolumeRow
from .views import location_view

_LOCATIONS = cast(Table, LocationRow.__table__)

log = logging.getLogger(__name__)
CHECK_TIMEOUT_S = 30.0


class Locations:
    def __init__(self, state_dir: Path, events: EventLog, registry: Registry, vault: Vault) -> None:
        self.state_dir = state_dir
        self.events = events
        self.registry = registry
        self.vault = vault

    # ---- queries -------------------------------------------------------------------------

    def list(self) -> list[Location]:
        with self.events.store.tx() as s:
            rows = list(s.scalars(select(LocationRow).order_by(LocationRow.name)))
        return [self._view(r) for r in rows]

    def get(self, name: str) -> Location:
        with self.events.store.tx() as s:
            row = s.get(LocationRow, name)
            if row is None:
                raise NotFound(f"no location {name!r}", field="location")
        return self._view(row)

    def provider(self, name: str) -> Provider:
        return self.registry.get(name)

    def default(self) -> str:
        """Where a request that names no location goes: the first location by name."""
        with self.events.store.tx() as s:
            name = s.scalar(select(LocationRow.name).order_by(LocationRow.name).limit(1))
        if name is None:
            raise InvalidInput("onepane has no locations", field="location")
        return str(name)

    # ---- changes -------------------------------------------------------------------------

    def add(self, spec: LocationCreate) -> Location:
        """Build, set up and check the provider first: a location that cannot work is not stored."""
        with self.events.store.tx() as s:
            if s.get(LocationRow, spec.name) is not None:
                raise Conflict(f"location {spec.name!r} exists", field="name")
        provider = self._build(spec)
        _with_timeout(lambda: _setup_and_check(provider), CHECK_TIMEOUT_S, spec.name)
        with self.events.tx() as s:
            s.add(self._row(spec))
            self.events.emit("location.added", f"location {spec.name} added ({spec.provider})",
                             location=spec.name, session=s)
        self.registry.add(provider)
        return self.get(spec.name)

    def ensure(self, spec: LocationCreate) -> None:
        """Make a configured location exist, keeping state that is already stored."""
        with self.events.tx() as s:
            row = s.get(LocationRow, spec.name)
            if row is None:
                s.add(self._row(spec))
                self.events.emit("location.added", f"location {spec.name} configured",
                                 location=spec.name, session=s)
            else:
                row.provider, row.region, row.driver = spec.provider, spec.region, spec.driver
                row.labels = merge_labels(spec.labels, row.label_edits or {})
                row.options = spec.options
                row.credentials_enc = self.vault.seal(spec.credentials)

    def start_all(self) -> None:
        """Bring up a provider for every stored location; a broken one is marked, not fatal."""
        with self.events.store.tx() as s:
            rows = list(s.scalars(select(LocationRow)))
        for row in rows:
            try:
                spec = self._spec(row)
                provider = self._build(spec)
                provider.setup()
                self.registry.add(provider)
                for note in provider.recovered:  # what a crash had left, and what became of it
                    self.events.emit("location.recovered", f"{row.name}: {note}",
                                     severity="warning", location=row.name)
            except OnepaneError as exc:
                log.warning("location %s unavailable: %s", row.name, exc.detail)
                self.set_status(row.name, "error", exc.detail)
            except Exception as exc:  # one broken location never keeps onepane from starting
                log.exception("location %s failed to start", row.name)
                self.set_status(row.name, "error", f"failed to start: {exc}")

    def remove(self, name: str, force: bool = False) -> None:
        with self.events.tx() as s:
            row = s.get(LocationRow, name)
            if row is None:
                raise NotFound(f"no location {name!r}", field="location")
            n = s.scalar(select(func.count()).select_from(InstanceRow)
                         .where(InstanceRow.location == name)) or 0
            if n and not force:
                raise Conflict(f"location {name} still has {n} instances; destroy them first, or "
                               "remove it anyway with force=true (CLI: --force)",
                               field="location")
            for table in (InstanceRow, VolumeRow, NetworkRow):
                for child in s.scalars(select(table).where(table.location == name)):
                    s.delete(child)
            s.flush()  # the rows that point at the location go first (no ORM relationship
            s.delete(row)  # orders these deletes; SQLite and PostgreSQL enforce the keys)
            self.events.emit("location.removed", f"location {name} removed", location=name,
                             session=s)
        provider = self.registry.remove(name)
        if provider is not None:
            if force:  # what onepane ran there goes with it (processes, namespaces, VMs)
                try:
                    provider.teardown()
                except OnepaneError as exc:
                    log.warning("location %s removed, but its teardown failed: %s", name,
                                exc.detail)
            provider.close()

    def edit_labels(self, name: str, changes: dict[str, str | None]) -> Location:
        """Apply a merge patch to the labels. The edit is remembered apart, so that a location
        from the configuration file keeps it across restarts (file labels, then the edits)."""
        with self.events.tx() as s:
            row = s.get(LocationRow, name)
            if row is None:
                raise NotFound(f"no location {name!r}", field="location")
            row.label_edits = {**(row.label_edits or {}), **changes}
            row.labels = merge_labels(row.labels, changes)
            shown = ", ".join(f"{k}={v}" if v is not None else f"-{k}" for k, v in changes.items())
            self.events.emit("location.labels", f"location {name} labels: {shown}",
                             location=name, data={"labels": row.labels}, session=s)
        return self.get(name)

    def store_options(self, name: str, options: dict[str, Any]) -> None:
        """Remember a location's options as its provider now has them (hosts added or
        removed). A location from the configuration file takes the file's on the next start."""
        with self.events.tx() as s:
            row = s.get(LocationRow, name)
            if row is None:
                raise NotFound(f"no location {name!r}", field="location")
            row.options = options

    def set_status(self, name: str, status: str, detail: str | None) -> None:
        with self.events.tx() as s:
            self.record_status(s, name, status, detail)

    def record_synced(self, s: Session, synced: dict[str, datetime],
                      problems: Mapping[str, Sequence[str]] | None = None) -> None:
        """In the caller's transaction, good sync passes (location -> when): one statement for
        their times, and the status set back to ok, with its event, only where it was not;
        a location that answered but reports problems is degraded, saying which."""
        problems = {k: v for k, v in (problems or {}).items() if v and k in synced}
        for name in list(s.scalars(select(LocationRow.name).where(
                LocationRow.name.in_(list(synced)),
                or_(LocationRow.status != "ok", LocationRow.status_detail.is_not(None))))):
            if name not in problems:
                self.record_status(s, name, "ok", None)
        for name, notes in problems.items():
            self.record_status(s, name, "degraded", "; ".join(notes)[:1000])
        s.connection().execute(
            update(_LOCATIONS).where(_LOCATIONS.c.name == bindparam("b_name"))
            .values(last_sync=bindparam("b_at")),
            [{"b_name": name, "b_at": at} for name, at in synced.items()])

    def record_status(self, s: Session, name: str, status: str, detail: str | None) -> None:
        """In the caller's transaction: the location's status, with an event when it changes."""
        row = s.get(LocationRow, name)
        if row is None or (row.status, row.status_detail) == (status, detail):
            return
        before, row.status, row.status_detail = row.status, status, detail
        if before != status:
            sev = "info" if status == "ok" else "error"
            self.events.emit("location.status", f"location {name}: {before} -> {status}"
                             + (f" ({detail})" if detail else ""), severity=sev,
                             location=name, session=s)

    # ---- internals -----------------------------------------------------------------------

    def _build(self, spec: LocationCreate) -> Provider:
        return build_provider(spec.name, spec.provider, state_dir=self.state_dir,
                              region=spec.region, driver=spec.driver,
                              credentials=spec.credentials, options=spec.options)

    def _row(self, spec: LocationCreate) -> LocationRow:
        return LocationRow(name=spec.name, provider=spec.provider, region=spec.region,
                           driver=spec.driver, labels=spec.labels, options=spec.options,
                           credentials_enc=self.vault.seal(spec.credentials))

    def _spec(self, row: LocationRow) -> LocationCreate:
        return LocationCreate(name=row.name, provider=row.provider,  # type: ignore[arg-type]
                              region=row.region, driver=row.driver, labels=row.labels,
                              options=row.options, credentials=self.vault.open(row.credentials_enc))

    def _view(self, row: LocationRow) -> Location:
        try:
            caps = self.registry.get(row.name).capabilities
        except NotFound:
            return location_view(row)
        return location_view(row, caps.as_dict(), caps.reasons())


def merge_labels(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, str]:
    merged = {**base, **changes}
    return {k: v for k, v in merged.items() if v is not None}


def _with_timeout(fn: object, timeout: float, name: str) -> None:
    pool = ThreadPoolExecutor(max_workers=1)
    try:
        pool.submit(fn).result(timeout)  # type: ignore[arg-type]
    except FutureTimeout as exc:
        raise TransientProviderError(f"location {name} did not answer within {timeout:.0f}s") from exc
    finally:
        pool.shutdown(wait=False)  # a hung provider must not hang the request with it


def _setup_and_check(provider: Provider) -> None:
    provider.setup()
    provider.check()

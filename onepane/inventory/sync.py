"""Inventory sync: observe every location, fold what changed into the store, log drift.

Each location syncs in its own pool, so an unreachable cloud delays only its own inventory.
Writes happen only for what changed, so a quiet inventory costs reads, not writes.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..errors import OnepaneError
from ..events import EventLog
from ..model import InstanceState, JobStatus, new_id
from ..periodic import Periodic
from ..providers.base import Changes, Feature, ObservedInstance, Provider
from ..providers.registry import Registry
from ..store.tables import InstanceRow, JobRow, VolumeRow
from .locations import Locations

log = logging.getLogger(__name__)
FULL_EVERY = 60  # passes on a change feed between two full listings
# What a sync compares, read as plain columns: 100,000 ORM objects a pass cost more than the
# comparison itself; a row becomes an object only when it has to change.
KEY_COLUMNS = (InstanceRow.id, InstanceRow.name, InstanceRow.provider_id, InstanceRow.state,
               InstanceRow.addresses, InstanceRow.ports)


def differs(row: Any, obs: ObservedInstance) -> bool:
    return (row.state != obs.state or row.addresses != obs.addresses
            or (bool(obs.ports) and row.ports != obs.ports))


def batched(items: list[str], n: int) -> Iterator[list[str]]:
    for i in range(0, len(items), n):
        yield items[i:i + n]


class InventorySync:
    def __init__(self, events: EventLog, registry: Registry, locations: Locations,
                 interval: float, when: Callable[[], bool] = lambda: True) -> None:
        self.events = events
        self.registry = registry
        self.locations = locations
        self._loop = Periodic("inventory-sync", lambda: self.sync_all(wait=False), interval,
                              when)
        self._running: set[str] = set()
        self._lock = threading.Lock()
        self._tokens: dict[str, str | None] = {}  # location -> its change feed's last token
        self._passes: dict[str, int] = {}  # location -> passes since its last full listing
        self._listing = threading.BoundedSemaphore(2)

    def start(self) -> None:
        self._loop.start()

    def stop(self) -> None:
        self._loop.stop()

    def sync_all(self, wait: bool = True) -> dict[str, str]:
        """Sync every location concurrently; with wait, report each one's outcome."""
        futures = {}
        for name in self.registry.names():
            with self._lock:
                if name in self._running:
                    continue  # the previous round is still at it: do not pile up
                self._running.add(name)
            futures[name] = self.registry.submit(name, self.sync_location, name)
        if not wait:
            return {}
        return {name: f.result() for name, f in futures.items()}

    def sync_location(self, name: str) -> str:
        try:
            provider = self.registry.get(name)
            volumes = provider.capabilities.supports(Feature.volumes)

            def ok(s: Session) -> None:  # in the pass's last transaction: synced, and well
                self.locations.record_status(s, name, "ok", None, synced=True)
            changes = self._changes(name, provider)
            if changes is not None:  # the location's change feed: only what changed
                self._fold_instances(name, changes.changed, vanished=changes.vanished,
                                     then=None if volumes else ok)
                self._tokens[name] = changes.token
            else:
                with self._listing:  # a few full listings at a time: memory stays bounded
                    start = provider.changes_since(None)  # "now", taken before the listing
                    self._fold_instances(name, provider.list_instances(),
                                         then=None if volumes else ok)
                self._tokens[name] = start.token if start else None
                self._passes[name] = 0
            if volumes:
                self._fold_volumes(name, provider.list_volumes(), then=ok)
            return "ok"
        except OnepaneError as exc:
            self.locations.set_status(name, "unreachable", exc.detail)
            return f"error: {exc.detail}"
        except Exception as exc:
            log.exception("sync of %s crashed", name)
            self.locations.set_status(name, "error", str(exc))
            return f"error: {exc}"
        finally:
            with self._lock:
                self._running.discard(name)

    def _changes(self, name: str, provider: Provider) -> Changes | None:
        """The change feed's answer, unless a full listing is due: the first pass, a token
        the location forgot, and every FULL_EVERY passes (what a feed can miss, a listing
        finds)."""
        token = self._tokens.get(name)
        self._passes[name] = self._passes.get(name, 0) + 1
        if token is None or self._passes[name] >= FULL_EVERY:
            return None
        return provider.changes_since(token)

    def _fold_instances(self, name: str, observed: list[ObservedInstance],
                        vanished: list[str] | None = None,
                        then: Callable[[Session], None] | None = None) -> None:
        """Fold a listing (every instance there; the rest vanished) or a change feed's answer
        (`vanished` given: only these changed) into the store, writing only what differs."""
        full = vanished is None
        with self.events.tx() as s:
            if full:
                rows = s.execute(select(*KEY_COLUMNS).where(InstanceRow.location == name)).all()
            else:
                pids = [o.provider_id for o in observed] + list(vanished or [])
                rows = [r for chunk in batched(pids, 500) for r in s.execute(
                    select(*KEY_COLUMNS).where(InstanceRow.location == name,
                                               InstanceRow.provider_id.in_(chunk))).all()]
            # Asked only when needed: a quiet pass on a change feed makes one query.
            busy: set[str | None] = set(s.scalars(select(JobRow.target).where(
                JobRow.location == name,
                JobRow.status.in_([JobStatus.queued, JobStatus.running])))) if rows else set()
            by_pid = {r.provider_id: r for r in rows if r.provider_id}
            by_id = {r.id: r for r in rows}
            creating = functools.cache(lambda: set(s.scalars(select(InstanceRow.name).where(
                InstanceRow.location == name, InstanceRow.provider_id.is_(None)))))
            seen: set[str] = set()
            stored = self._to_change(s, observed, by_pid, by_id, busy, vanished)
            for obs in observed:
                row = by_pid.get(obs.provider_id) or by_id.get(obs.onepane_id or "")
                if row is None and not full and obs.onepane_id:
                    row = s.execute(select(*KEY_COLUMNS).where(
                        InstanceRow.id == obs.onepane_id, InstanceRow.location == name)).first()
                if row is None:
                    if obs.onepane_id and s.get(InstanceRow, obs.onepane_id) is not None:
                        continue  # known at another location: a live move under way
                    if obs.onepane_id and s.scalar(select(JobRow.id).where(
                            JobRow.target == obs.onepane_id, JobRow.kind == "instance.destroy")):
                        continue  # destroyed by onepane while this listing was taken: no ghost
                    if obs.name not in creating():  # else: a create whose job has not reported yet
                        self._appeared(s, name, obs)
                    continue
                seen.add(row.id)
                if row.id in busy or not differs(row, obs):
                    continue  # unchanged; or a job is changing it and its result is the truth
                self._update(s, stored.get(row.id) or s.get(InstanceRow, row.id), obs)
            gone = rows if full else [by_pid[p] for p in vanished or [] if p in by_pid]
            for row in gone:
                if row.id in seen or row.id in busy or row.provider_id is None:
                    continue
                obj = stored.get(row.id) or s.get(InstanceRow, row.id)
                if obj is not None and row.state != InstanceState.missing:
                    obj.state = InstanceState.missing
                    self.events.emit("drift.vanished",
                                     f"instance {row.name} ({row.id}) vanished from {name} "
                                     f"outside onepane (was {row.state})", severity="warning",
                                     location=name, subject=row.id, session=s)
            if then is not None:
                then(s)

    @staticmethod
    def _to_change(s: Any, observed: list[ObservedInstance], by_pid: dict[str, Any],
                   by_id: dict[str, Any], busy: set[str | None],
                   vanished: list[str] | None) -> dict[str, InstanceRow]:
        """The rows this pass will write, loaded as objects in a few queries, not one each."""
        ids = [r.id for o in observed
               if (r := by_pid.get(o.provider_id) or by_id.get(o.onepane_id or ""))
               and r.id not in busy and differs(r, o)]
        if vanished is not None:
            ids += [by_pid[p].id for p in vanished if p in by_pid
                    and by_pid[p].state != InstanceState.missing]
        out: dict[str, InstanceRow] = {}
        for chunk in batched(ids, 500):
            out.update((r.id, r) for r in s.scalars(select(InstanceRow).where(
                InstanceRow.id.in_(chunk))))
        return out

    def _appeared(self, s: Any, name: str, obs: ObservedInstance) -> None:
        row = InstanceRow(id=new_id("inst"), name=obs.name[:64], location=name,
                          provider_id=obs.provider_id, image=obs.image, size=obs.size,
                          state=obs.state, addresses=obs.addresses, ports=obs.ports,
                          tags=obs.tags, origin="discovered")
        s.add(row)
        self.events.emit("drift.appeared",
                         f"instance {obs.name} ({obs.provider_id}) appeared at {name} outside "
                         f"onepane; now known as {row.id}", severity="warning", location=name,
                         subject=row.id, session=s, data={"provider_id": obs.provider_id})

    def _update(self, s: Any, row: InstanceRow | None, obs: ObservedInstance) -> None:
        if row is None:
            return
        if row.state != obs.state:
            self.events.emit("instance.state", f"instance {row.name} ({row.id}): {row.state} -> "
                             f"{obs.state}", severity="warning" if obs.state == "error" else "info",
                             location=row.location, subject=row.id, session=s,
                             data={"from": row.state, "to": obs.state})
            row.state = obs.state
        if row.addresses != obs.addresses:
            row.addresses = obs.addresses
        if obs.ports and row.ports != obs.ports:
            row.ports = obs.ports

    def _fold_volumes(self, name: str, volumes: list[Any],
                      then: Callable[[Session], None] | None = None) -> None:
        with self.events.tx() as s:
            all_rows = list(s.scalars(select(VolumeRow).where(VolumeRow.location == name)))
            rows = {r.provider_id: r for r in all_rows if r.provider_id}
            creating = {r.name for r in all_rows if r.provider_id is None}
            attached_to = [v.attached_to for v in volumes if v.attached_to]
            inst_ids = {r[0]: r[1] for r in s.execute(
                select(InstanceRow.provider_id, InstanceRow.id).where(
                    InstanceRow.location == name, InstanceRow.provider_id.in_(attached_to)))
            } if attached_to else {}
            for v in volumes:
                row = rows.pop(v.provider_id, None)
                attached = inst_ids.get(v.attached_to) if v.attached_to else None
                if row is None and v.name in creating:
                    continue
                if row is None:
                    vid = new_id("vol")
                    s.add(VolumeRow(id=vid, name=v.name[:64], location=name,
                                    provider_id=v.provider_id, size_gb=v.size_gb, state=v.state,
                                    attached_to=attached, device=v.device))
                    self.events.emit("drift.appeared", f"volume {v.name} ({v.provider_id}) "
                                     f"appeared at {name} outside onepane", severity="warning",
                                     location=name, subject=vid, session=s)
                elif (row.state, row.attached_to) != (v.state, attached):
                    row.state, row.attached_to, row.device = v.state, attached, v.device
            for row in rows.values():
                if row.state not in ("creating", "missing"):
                    row.state = "missing"
                    self.events.emit("drift.vanished", f"volume {row.id} vanished from {name}",
                                     severity="warning", location=name, subject=row.id, session=s)
            if then is not None:
                then(s)

"""Inventory sync: observe every location, fold what changed into the store, log drift.

Each location syncs in its own pool, so an unreachable cloud delays only its own inventory.
Writes happen only for what changed, so a quiet inventory costs reads, not writes.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

from sqlalchemy import Table, and_, bindparam, or_, select, update
from sqlalchemy.orm import Session

from ..errors import OnepaneError
from ..events import EventLog
from ..model import UNFINISHED, InstanceState, new_id
from ..periodic import Periodic
from ..providers.base import Changes, Feature, ObservedInstance, Provider
from ..providers.registry import Registry
from ..store.tables import InstanceRow, JobRow, VolumeRow
from .locations import Locations

log = logging.getLogger(__name__)
T = TypeVar("T")
FULL_EVERY = 60  # passes on a change feed between two full listings
# What a sync compares, read as plain columns: 100,000 ORM objects a pass cost more than the
# comparison itself; a row becomes an object only when it has to change.
KEY_COLUMNS = (InstanceRow.id, InstanceRow.name, InstanceRow.provider_id, InstanceRow.state,
               InstanceRow.addresses, InstanceRow.ports)
_INSTANCES = cast(Table, InstanceRow.__table__)
WRITE = update(_INSTANCES).where(_INSTANCES.c.id == bindparam("b_id")).values(
    state=bindparam("b_state"), addresses=bindparam("b_addresses"), ports=bindparam("b_ports"))


# location -> what was seen there: (instances, None) for a full listing, (changed, vanished)
# for a change feed's answer
Seen = dict[str, tuple[list[ObservedInstance], list[str] | None]]
HUNG_AFTER_S = 10.0


def differs(row: Any, obs: ObservedInstance) -> bool:
    return (row.state != obs.state or row.addresses != obs.addresses
            or (bool(obs.ports) and row.ports != obs.ports))


def batched(items: list[T], n: int) -> Iterator[list[T]]:
    for i in range(0, len(items), n):
        yield items[i:i + n]


class InventorySync:
    def __init__(self, events: EventLog, registry: Registry, locations: Locations,
                 interval: float, when: Callable[[], bool] = lambda: True,
                 hung_after: float = HUNG_AFTER_S) -> None:
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
        # location -> its good pass not yet written: the change feed's answer (None: folded
        # already) and when
        self._round: dict[str, tuple[Changes | None, datetime]] = {}
        self._problems: dict[str, list[str]] = {}  # location -> what its good pass reported
        # A location whose pass has waited this long is shown unreachable while it still waits
        # (a hung endpoint answers nothing, not an error, for as long as its timeouts allow).
        self.hung_after = max(hung_after, 1.5 * interval)
        self._since: dict[str, float] = {}  # location -> when its running pass started
        self._flagged: set[str] = set()  # locations shown unreachable for a pass still waiting

    def start(self) -> None:
        self._loop.start()

    def stop(self) -> None:
        self._loop.stop()

    def sync_all(self, wait: bool = True) -> dict[str, str]:
        """Sync every location concurrently; with wait, report each one's outcome."""
        self.write_round()  # what a slow location held back in the last round
        futures = {}
        now = time.monotonic()
        for name in self.registry.names():
            with self._lock:
                if name in self._running:  # the previous round is still at it: do not pile up
                    hung = now - self._since.get(name, now) > self.hung_after
                    if hung and name not in self._flagged:
                        self._flagged.add(name)
                        self.locations.set_status(
                            name, "unreachable", f"no answer for {now - self._since[name]:.0f} s "
                            "(a listing is still waiting for it)")
                    continue
                self._running.add(name)
                self._since[name] = now
            futures[name] = self.registry.submit(name, self.sync_location, name)
        if not wait:
            return {}
        return {name: f.result() for name, f in futures.items()}

    def sync_location(self, name: str) -> str:
        """Observe one location (in its own thread). A full listing is folded at once, in a
        transaction of its own; a change feed's answer joins the round's, written together."""
        try:
            provider = self.registry.get(name)
            changes = self._changes(name, provider)
            if changes is not None:
                self._tokens[name] = changes.token  # taken back if writing the round fails
            else:
                with self._listing:  # a few full listings at a time: memory stays bounded
                    start = provider.changes_since(None)  # "now", taken before the listing
                    with self.events.tx() as s:
                        self._fold_instances(s, {name: (provider.list_instances(), None)})
                self._tokens[name] = start.token if start else None
                self._passes[name] = 0
            if provider.capabilities.supports(Feature.volumes):
                self._fold_volumes(name, provider.list_volumes())
            with self._lock:
                self._round[name] = (changes, datetime.now(UTC))
                self._problems[name] = provider.problems()
            return "ok"
        except OnepaneError as exc:
            self._failed(name, "unreachable", exc.detail)
            return f"error: {exc.detail}"
        except Exception as exc:
            log.exception("sync of %s crashed", name)
            self._failed(name, "error", str(exc))
            return f"error: {exc}"
        finally:
            with self._lock:
                self._running.discard(name)
                self._flagged.discard(name)
                last = not self._running
            if last:
                self.write_round()

    def write_round(self) -> None:
        """Write what the round's locations saw, in one transaction: every change feed's
        answer (one query for the rows, one for the jobs, one UPDATE), and when each location
        was last synced well. Done when the round's last location is done, or, for what a
        slow location held back, when the next round starts. One transaction per location
        with something to say cost more than the changes in it (bench/scale.py)."""
        with self._lock:
            done, self._round = self._round, {}
            problems, self._problems = self._problems, {}
        if not done:
            return
        feeds: Seen = {name: (ch.changed, ch.vanished) for name, (ch, _) in done.items()
                       if ch is not None and (ch.changed or ch.vanished)}
        try:
            with self.events.tx() as s:
                if feeds:
                    self._fold_instances(s, feeds)
                self.locations.record_synced(s, {name: at for name, (_, at) in done.items()},
                                             problems)
        except Exception:
            log.exception("writing the sync of %s failed", ", ".join(sorted(done)))
            for name in done:  # what they saw is lost: their next pass lists everything
                self._tokens.pop(name, None)

    def _failed(self, name: str, status: str, detail: str) -> None:
        with self._lock:  # a good pass not yet written must not say "ok" over this...
            unwritten = self._round.pop(name, None)
        if unwritten is not None and unwritten[0] is not None:
            self._tokens.pop(name, None)  # ...and what it saw is listed again next time
        self.locations.set_status(name, status, detail)

    def _changes(self, name: str, provider: Provider) -> Changes | None:
        """The change feed's answer, unless a full listing is due: the first pass, a token
        the location forgot, and every FULL_EVERY passes (what a feed can miss, a listing
        finds)."""
        token = self._tokens.get(name)
        self._passes[name] = self._passes.get(name, 0) + 1
        if token is None or self._passes[name] >= FULL_EVERY:
            return None
        return provider.changes_since(token)

    def _fold_instances(self, s: Session, seen_at: Seen) -> None:
        """Fold what locations showed into the store, writing only what differs. Per location:
        a listing (every instance there; the rest vanished: `vanished` is None) or a change
        feed's answer (only these changed, and `vanished` went)."""
        stored = self._stored(s, seen_at)
        busy: set[str | None] = set(s.scalars(select(JobRow.target).where(
            JobRow.location.in_(list(seen_at)),
            JobRow.status.in_(UNFINISHED)))) if any(
                stored.values()) else set()
        writes: list[dict[str, Any]] = []
        for name, (observed, vanished) in seen_at.items():
            writes += self._fold_location(s, name, observed, vanished, stored[name], busy)
        if writes:
            s.connection().execute(WRITE, writes)

    @staticmethod
    def _stored(s: Session, seen_at: Seen) -> dict[str, list[Any]]:
        """Each location's stored rows that the observations concern, as plain columns."""
        out: dict[str, list[Any]] = {name: [] for name in seen_at}
        pids: dict[str, set[str]] = {}
        for name, (observed, vanished) in seen_at.items():
            if vanished is None:  # a listing concerns every row there
                out[name] = list(s.execute(select(*KEY_COLUMNS).where(
                    InstanceRow.location == name)).all())
            else:
                pids[name] = {o.provider_id for o in observed} | set(vanished)
        # one statement per 500 ids, whatever the number of locations: (location = a AND
        # provider_id IN (...)) OR (location = b AND ...), which both databases answer from the
        # (location, provider_id) index
        pairs = [(name, pid) for name, ids in pids.items() for pid in sorted(ids)]
        for chunk in batched(pairs, 500):
            groups: dict[str, list[str]] = defaultdict(list)
            for name, pid in chunk:
                groups[name].append(pid)
            for r in s.execute(select(InstanceRow.location, *KEY_COLUMNS).where(or_(*(
                    and_(InstanceRow.location == name, InstanceRow.provider_id.in_(ids))
                    for name, ids in groups.items())))):
                out[r.location].append(r)
        return out

    def _fold_location(self, s: Session, name: str, observed: list[ObservedInstance],
                       vanished: list[str] | None, rows: list[Any], busy: set[str | None]
                       ) -> list[dict[str, Any]]:
        full = vanished is None
        by_pid = {r.provider_id: r for r in rows if r.provider_id}
        by_id = {r.id: r for r in rows}
        creating = functools.cache(lambda: set(s.scalars(select(InstanceRow.name).where(
            InstanceRow.location == name, InstanceRow.provider_id.is_(None)))))
        seen: set[str] = set()
        writes: list[dict[str, Any]] = []
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
            writes.append(self._update(s, name, row, obs.state, obs.addresses,
                                       obs.ports or row.ports))
        gone = rows if full else [by_pid[p] for p in vanished or [] if p in by_pid]
        for row in gone:
            if (row.id in seen or row.id in busy or row.provider_id is None
                    or row.state == InstanceState.missing):
                continue
            writes.append(self._update(s, name, row, InstanceState.missing, row.addresses,
                                       row.ports, vanished=True))
        return writes

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

    def _update(self, s: Session, location: str, row: Any, state: str, addresses: list[str],
                ports: dict[str, int], vanished: bool = False) -> dict[str, Any]:
        """The event a change makes, and the row's new values for the pass's one UPDATE."""
        if vanished:
            self.events.emit("drift.vanished", f"instance {row.name} ({row.id}) vanished from "
                             f"{location} outside onepane (was {row.state})", severity="warning",
                             location=location, subject=row.id, session=s)
        elif row.state != state:
            self.events.emit("instance.state", f"instance {row.name} ({row.id}): {row.state} -> "
                             f"{state}", severity="warning" if state == "error" else "info",
                             location=location, subject=row.id, session=s,
                             data={"from": row.state, "to": state})
        return {"b_id": row.id, "b_state": state, "b_addresses": addresses, "b_ports": ports}

    def _fold_volumes(self, name: str, volumes: list[Any]) -> None:
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

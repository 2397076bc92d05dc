"""Volume snapshots: a point-in-time copy a volume's location keeps (a sparse copy of the file
at process and VM locations, the cloud's own snapshot elsewhere), and volumes made from one.
Like every change, each is a job in the location's pool."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from ..errors import Conflict, InvalidInput, NotFound, OnepaneError
from ..model import Job, new_id
from ..providers.base import Feature, Provider
from ..store.tables import JobRow, SnapshotRow, VolumeRow
from .operations import Operations


@dataclass(frozen=True)
class Snapshot:
    id: str
    volume_id: str
    location: str
    size_gb: int
    description: str
    state: str  # pending | completed | error
    tags: dict[str, str]
    created_at: datetime


class Snapshots:
    def __init__(self, ops: Operations) -> None:
        self.ops = ops
        self.events = ops.events
        ops.runner.register("snapshot.create", self._do_create, self._failed)
        ops.runner.register("snapshot.delete", self._do_delete)
        ops.runner.register("volume.restore", self._do_restore, self._restore_failed)

    def find(self, ids: list[str] | None = None) -> list[Snapshot]:
        with self.events.store.tx() as s:
            rows = [_view(r) for r in s.scalars(select(SnapshotRow).order_by(SnapshotRow.id))]
        if ids:
            if missing := set(ids) - {x.id for x in rows}:
                raise NotFound(f"the snapshot {sorted(missing)[0]!r} does not exist",
                               field="snapshot")
            rows = [x for x in rows if x.id in ids]
        return rows

    def get(self, snapshot_id: str) -> Snapshot:
        return self.find([snapshot_id])[0]

    def create(self, volume_id: str, description: str = "") -> Snapshot:
        vol = self.ops.volumes.get_volume(volume_id)
        return self._submit(vol.id, vol.location, vol.size_gb, description, {"volume": vol.id},
                            f"volume {vol.name} ({vol.id})")

    def create_of_boot_disk(self, instance_id: str, volume_id: str, size_gb: int,
                            description: str = "") -> Snapshot:
        """A snapshot of an instance's boot disk, recorded under `volume_id`, the id its boot
        disk is shown by as a volume (EC2's root volume); restored like any snapshot."""
        inst = self.ops.instances.get_instance(instance_id)
        if inst.provider_id is None:
            raise Conflict(f"instance {inst.id} is not made yet", field="instance")
        return self._submit(volume_id, inst.location, size_gb, description,
                            {"instance": inst.id}, f"the boot disk of {inst.name} ({inst.id})")

    def _submit(self, volume_id: str, location: str, size_gb: int, description: str,
                params: dict[str, str], what: str) -> Snapshot:
        self.ops.locations.provider(location).require(Feature.snapshots, "volume")
        sid = new_id("snap")

        def rows(s: Any) -> None:
            s.add(SnapshotRow(id=sid, volume_id=volume_id, location=location, size_gb=size_gb,
                              description=description[:255], tags={}))
        self.ops.jobs.submit("snapshot.create", sid, location, params, None, rows,
                             f"snapshot {what} as {sid}")
        return self.get(sid)

    def delete(self, snapshot_id: str) -> Job:
        snap = self.get(snapshot_id)
        return self.ops.jobs.submit("snapshot.delete", snapshot_id, snap.location, {}, None, None,
                               f"delete snapshot {snapshot_id}")

    def retag(self, snapshot_id: str, add: dict[str, str], remove: dict[str, str | None]) -> None:
        with self.events.tx() as s:
            row = s.get(SnapshotRow, snapshot_id)
            if row is None:
                raise NotFound(f"the snapshot {snapshot_id!r} does not exist", field="snapshot")
            tags = {**(row.tags or {}), **add}
            for k, v in remove.items():
                if k in tags and (v is None or tags[k] == v):
                    del tags[k]
            row.tags = tags

    def restore(self, snapshot_id: str, name: str, location: str, size_gb: int | None,
                tags: dict[str, str]) -> Job:
        """A new volume with the snapshot's contents, at least as large as the snapshot."""
        snap = self.get(snapshot_id)
        if snap.state != "completed":
            raise Conflict(f"snapshot {snapshot_id} is {snap.state}", field="snapshot")
        if location != snap.location:
            raise InvalidInput(f"snapshot {snapshot_id} is at {snap.location}, not {location}",
                               field="location")
        size = size_gb or snap.size_gb
        if size < snap.size_gb:
            raise InvalidInput(f"the volume must be at least the snapshot's {snap.size_gb} GB",
                               field="size_gb")
        vol_id = new_id("vol")

        def rows(s: Any) -> None:
            s.add(VolumeRow(id=vol_id, name=name, location=location, size_gb=size,
                            state="creating", tags=tags))
        return self.ops.jobs.submit("volume.restore", vol_id, location,
                               {"name": name, "size_gb": size, "snapshot": snapshot_id}, None,
                               rows, f"create volume {name} ({vol_id}) from {snapshot_id}")

    # ---- jobs ----------------------------------------------------------------------------

    def _do_create(self, provider: Provider, job: JobRow) -> dict[str, Any]:
        if "instance" in job.params:  # an instance's boot disk
            inst = self.ops.instances.get_instance(job.params["instance"])
            pid = provider.snapshot_boot_disk(inst.provider_id or "", job.target or "")
        else:
            vol_pid = self.ops.volumes.provider_id_of(job.params["volume"])
            pid = provider.create_snapshot(vol_pid, job.target or "")
        with self.events.tx() as s:
            row = s.get(SnapshotRow, job.target)
            if row is not None:
                row.provider_id, row.state = pid, "completed"
                self.events.emit("snapshot.created", f"snapshot {row.id} of {row.volume_id} "
                                 "completed", location=row.location, subject=row.id, session=s)
        return {"provider_id": pid}

    def _failed(self, job: JobRow, exc: OnepaneError) -> None:
        with self.events.tx() as s:
            row = s.get(SnapshotRow, job.target)
            if row is not None:
                row.state = "error"

    def _do_delete(self, provider: Provider, job: JobRow) -> dict[str, Any]:
        with self.events.store.tx() as s:
            row = s.get(SnapshotRow, job.target)
            pid = row.provider_id if row else None
        if pid:
            provider.delete_snapshot(pid)
        with self.events.tx() as s:
            row = s.get(SnapshotRow, job.target)
            if row is not None:
                s.delete(row)
        return {}

    def _do_restore(self, provider: Provider, job: JobRow) -> dict[str, Any]:
        with self.events.store.tx() as s:
            snap = s.get(SnapshotRow, job.params["snapshot"])
            pid = snap.provider_id if snap else None
        if pid is None:
            raise NotFound(f"snapshot {job.params['snapshot']} is gone", field="snapshot")
        obs = provider.volume_from_snapshot(pid, job.params["name"], job.params["size_gb"])
        with self.events.tx() as s:
            row = s.get(VolumeRow, job.target)
            if row is not None:
                row.provider_id, row.state = obs.provider_id, obs.state
                self.events.emit("volume.created", f"volume {row.name} ({row.id}) created from "
                                 f"{job.params['snapshot']}", location=row.location,
                                 subject=row.id, session=s)
        return {"provider_id": obs.provider_id}

    def _restore_failed(self, job: JobRow, exc: OnepaneError) -> None:
        with self.events.tx() as s:
            row = s.get(VolumeRow, job.target)
            if row is not None:
                s.delete(row)


def _view(r: SnapshotRow) -> Snapshot:
    return Snapshot(r.id, r.volume_id, r.location, r.size_gb, r.description or "", r.state,
                    dict(r.tags or {}), r.created_at)

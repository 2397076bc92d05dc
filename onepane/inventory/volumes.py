"""Volumes: made, attached, detached and deleted through jobs, at every location that has
them."""

from __future__ import annotations

from typing import Any

from ..errors import Conflict, InvalidInput
from ..events import EventLog
from ..model import Job, Page, Volume, VolumeAttach, VolumeCreate, new_id
from ..providers.base import Feature, Provider
from ..store.tables import JobRow, VolumeRow
from .instances import Instances
from .jobqueue import Jobs, ResourceService
from .locations import Locations
from .paging import by_location
from .rows import volume_row
from .views import volume_view


class Volumes(ResourceService):
    def __init__(self, events: EventLog, locations: Locations, jobs: Jobs,
                 instances: Instances) -> None:
        super().__init__(events, locations, jobs)
        self.instances = instances  # an attach checks the instance's location and state

    def list_volumes(self, *, location: str | None = None, limit: int = 100,
                     cursor: str | None = None) -> Page[Volume]:
        return by_location(self.store, VolumeRow, volume_view, location, limit, cursor)

    def get_volume(self, volume_id: str) -> Volume:
        with self.store.tx() as s:
            return volume_view(volume_row(s, volume_id))

    def create_volume(self, req: VolumeCreate, idempotency_key: str | None = None) -> Job:
        if (existing := self.jobs.job_for_key(idempotency_key, "volume.create", req)) is not None:
            return existing
        self.jobs.require(req.location, Feature.volumes)
        vol_id = new_id("vol")

        def rows(s: Any) -> None:
            s.add(VolumeRow(id=vol_id, name=req.name, location=req.location, size_gb=req.size_gb,
                            state="creating", tags=req.tags))
        return self.jobs.submit("volume.create", vol_id, req.location,
                           {"name": req.name, "size_gb": req.size_gb}, idempotency_key, rows,
                           f"create volume {req.name} ({vol_id}, {req.size_gb} GB)", req)

    def attach_volume(self, volume_id: str, req: VolumeAttach) -> Job:
        vol = self.get_volume(volume_id)
        inst = self.instances.get_instance(req.instance)
        if inst.location != vol.location:
            raise InvalidInput(f"volume {volume_id} is at {vol.location}, instance {req.instance} "
                               f"at {inst.location}", field="instance")
        if vol.attached_to:
            raise Conflict(f"volume {volume_id} is attached to {vol.attached_to}", field="volume")
        if not vol.provider_id or not inst.provider_id:
            raise Conflict("volume or instance is still being created", field="volume")
        return self.jobs.submit("volume.attach", volume_id, vol.location,
                            {"instance": inst.id, "instance_pid": inst.provider_id,
                             "device": req.device}, None, None,
                            f"attach volume {volume_id} to {inst.id} as {req.device}")

    def detach_volume(self, volume_id: str) -> Job:
        vol = self.get_volume(volume_id)
        if not vol.attached_to:
            raise Conflict(f"volume {volume_id} is not attached", field="volume")
        return self.jobs.submit("volume.detach", volume_id, vol.location, {}, None, None,
                            f"detach volume {volume_id}")

    def delete_volume(self, volume_id: str) -> Job:
        vol = self.get_volume(volume_id)
        if vol.attached_to:
            raise Conflict(f"volume {volume_id} is attached to {vol.attached_to}; detach it first",
                           field="volume")
        return self.jobs.submit("volume.delete", volume_id, vol.location, {}, None, None,
                            f"delete volume {volume_id}")

    def _do_volume_create(self, provider: Provider, job: JobRow) -> dict[str, Any]:
        obs = provider.create_volume(job.params["name"], job.params["size_gb"])
        with self.events.tx() as s:
            row = volume_row(s, job.target or "")
            row.provider_id, row.state = obs.provider_id, obs.state
            self.events.emit("volume.created", f"volume {row.name} ({row.id}) created",
                             location=row.location, subject=row.id, session=s)
        return {"provider_id": obs.provider_id}

    def _do_volume_attach(self, provider: Provider, job: JobRow) -> dict[str, Any]:
        p = job.params
        provider.attach_volume(self.provider_id_of(job.target or ""), p["instance_pid"], p["device"])
        with self.events.tx() as s:
            row = volume_row(s, job.target or "")
            row.attached_to, row.device, row.state = p["instance"], p["device"], "in-use"
            self.events.emit("volume.attached", f"volume {row.id} attached to {p['instance']}",
                             location=row.location, subject=row.id, session=s)
        return {}

    def _do_volume_detach(self, provider: Provider, job: JobRow) -> dict[str, Any]:
        provider.detach_volume(self.provider_id_of(job.target or ""))
        with self.events.tx() as s:
            row = volume_row(s, job.target or "")
            row.attached_to, row.device, row.state = None, None, "available"
            self.events.emit("volume.detached", f"volume {row.id} detached",
                             location=row.location, subject=row.id, session=s)
        return {}

    def _do_volume_delete(self, provider: Provider, job: JobRow) -> dict[str, Any]:
        provider.delete_volume(self.provider_id_of(job.target or ""))
        with self.events.tx() as s:
            row = s.get(VolumeRow, job.target)
            if row is not None:
                s.delete(row)
                self.events.emit("volume.deleted", f"volume {row.id} deleted",
                                 location=row.location, subject=row.id, session=s)
        return {}

    def provider_id_of(self, volume_id: str) -> str:
        vol = self.get_volume(volume_id)
        if not vol.provider_id:
            raise Conflict(f"volume {volume_id} has no provider id yet")
        return vol.provider_id

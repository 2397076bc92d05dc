"""Networks: address plans (or a cloud's networks) made and deleted through jobs."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from ..errors import Conflict, NotFound
from ..model import Job, Network, NetworkCreate, Page, new_id
from ..providers.base import Feature, Provider
from ..store.tables import InstanceRow, JobRow, NetworkRow
from .jobqueue import ResourceService
from .paging import by_location
from .views import network_view


class Networks(ResourceService):
    def list_networks(self, *, location: str | None = None, limit: int = 100,
                      cursor: str | None = None) -> Page[Network]:
        return by_location(self.store, NetworkRow, network_view, location, limit, cursor)

    def get_network(self, network_id: str) -> Network:
        with self.store.tx() as s:
            row = s.get(NetworkRow, network_id)
            if row is None:
                raise NotFound(f"no network {network_id!r}", field="network")
            return network_view(row)

    def create_network(self, req: NetworkCreate, idempotency_key: str | None = None) -> Job:
        if (existing := self.jobs.job_for_key(idempotency_key, "network.create", req)) is not None:
            return existing
        self.jobs.require(req.location, Feature.networks)
        net_id = new_id("net")

        def rows(s: Any) -> None:
            s.add(NetworkRow(id=net_id, name=req.name, location=req.location, cidr=req.cidr,
                             state="creating"))
        return self.jobs.submit("network.create", net_id, req.location,
                           {"name": req.name, "cidr": req.cidr}, idempotency_key, rows,
                           f"create network {req.name} ({req.cidr}) at {req.location}", req)

    def delete_network(self, network_id: str) -> Job:
        net = self.get_network(network_id)
        with self.store.tx() as s:
            users = s.scalar(select(func.count()).select_from(InstanceRow).where(
                InstanceRow.network == network_id)) or 0
        if users:
            raise Conflict(f"network {network_id} has {users} instances; destroy or move them "
                           "first", field="dependency")
        return self.jobs.submit("network.delete", network_id, net.location, {}, None, None,
                           f"delete network {net.name} ({network_id})")

    def _do_network_create(self, provider: Provider, job: JobRow) -> dict[str, Any]:
        obs = provider.create_network(job.params["name"], job.params["cidr"])
        with self.events.tx() as s:
            row = s.get(NetworkRow, job.target)
            assert row is not None
            row.provider_id, row.state, row.cidr = obs.provider_id, obs.state, obs.cidr
            self.events.emit("network.created", f"network {row.name} ({row.cidr}) created",
                             location=row.location, subject=row.id, session=s)
        return {"provider_id": obs.provider_id}

    def _do_network_delete(self, provider: Provider, job: JobRow) -> dict[str, Any]:
        with self.store.tx() as s:
            row = s.get(NetworkRow, job.target)
            pid = row.provider_id if row else None
        if pid:
            provider.delete_network(pid)
        with self.events.tx() as s:
            row = s.get(NetworkRow, job.target)
            if row is not None:
                s.delete(row)
                self.events.emit("network.deleted", f"network {row.name} ({row.id}) deleted",
                                 location=row.location, subject=row.id, session=s)
        return {}

"""Rows to API models, in one place."""

from __future__ import annotations

from typing import Any

from ..model import Instance, InstanceState, Job, JobStatus, Location, Network, ProviderKind, Volume
from ..store.tables import InstanceRow, JobRow, LocationRow, NetworkRow, VolumeRow


def location_view(row: LocationRow, capabilities: dict[str, bool] | None = None,
                  unsupported: dict[str, str] | None = None) -> Location:
    return Location(name=row.name, provider=ProviderKind(row.provider), region=row.region,
                    driver=row.driver, labels=row.labels, options=row.options,
                    has_credentials=row.credentials_enc is not None, status=row.status,
                    status_detail=row.status_detail, last_sync=row.last_sync,
                    capabilities=capabilities or {}, unsupported=unsupported or {})


def instance_view(row: InstanceRow, provider: str | None = None) -> Instance:
    return Instance(id=row.id, name=row.name, location=row.location,
                    provider=ProviderKind(provider) if provider else None,
                    provider_id=row.provider_id, image=row.image, size=row.size,
                    state=InstanceState(row.state), addresses=row.addresses, ports=row.ports,
                    tags=row.tags, origin=row.origin,  # type: ignore[arg-type]
                    network=row.network,
                    created_at=row.created_at, updated_at=row.updated_at)


def instance_view_from_columns(row: Any) -> Instance:
    """The same view from a row of plain columns (the inventory's hot path)."""
    return Instance.model_validate({**row, "provider": row["provider_kind"]})


def volume_view(row: VolumeRow) -> Volume:
    return Volume(id=row.id, name=row.name, location=row.location, provider_id=row.provider_id,
                  size_gb=row.size_gb, state=row.state, attached_to=row.attached_to,
                  device=row.device, tags=row.tags, created_at=row.created_at)


def network_view(row: NetworkRow) -> Network:
    return Network(id=row.id, name=row.name, location=row.location, provider_id=row.provider_id,
                   cidr=row.cidr, state=row.state, created_at=row.created_at)


def job_view(row: JobRow) -> Job:
    return Job(id=row.id, kind=row.kind, target=row.target, location=row.location,
               status=JobStatus(row.status), attempts=row.attempts, error=row.error,
               result=row.result, created_at=row.created_at, finished_at=row.finished_at,
               node=row.node)

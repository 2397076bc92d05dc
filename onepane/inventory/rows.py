"""A row by its id, or NotFound naming the field: for every service of the inventory."""

from __future__ import annotations

from sqlalchemy.orm import Session

from ..errors import NotFound
from ..store.tables import InstanceRow, VolumeRow


def instance_row(s: Session, instance_id: str) -> InstanceRow:
    row = s.get(InstanceRow, instance_id)
    if row is None:
        raise NotFound(f"no instance {instance_id!r}", field="instance")
    return row


def volume_row(s: Session, volume_id: str) -> VolumeRow:
    row = s.get(VolumeRow, volume_id)
    if row is None:
        raise NotFound(f"no volume {volume_id!r}", field="volume")
    return row

"""Root devices: what an instance boots from, as EC2 shows it.

At a `vm` location an instance boots from a disk onepane holds (an overlay on its image): that
disk is its EBS root volume, shown as `vol-<instance hex>` at `/dev/vda`. The id is derived
from the instance's, as its primary interface's `eni-<instance hex>` is, so one lookup finds
it, and it never names a volume onepane made (those have time-ordered ids of their own). It
goes with the instance (DeleteOnTermination is always true: the overlay is the instance's),
cannot be detached, and can be snapshotted: a flattened copy of the disk kept with the
location's snapshots, restorable as a volume like any. A disk image's root mapping names the
snapshot it stands for, `snap-<image hex>`, listed by DescribeSnapshots and in use while the
image exists.

Processes and containers have no disk of their own: their images and instances are
`instance-store`, as EC2's are whose root device lives and dies with the host (CreateImage
refuses them, as EC2 does). A cloud's instances are EBS-backed by the cloud; their root
volumes are the cloud's own and not listed here.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from ...errors import OnepaneError
from ...model import Instance, Volume
from . import shapes

if TYPE_CHECKING:
    from .actions import Context

INSTANCE_STORE_KINDS = {"local", "netns", "docker", "sim"}
ROOT_VOLUME_KINDS = {"vm"}  # where onepane holds the disk an instance boots from
DISK_ROOT = "/dev/vda"
GIB = 2**30


def root_kinds(ctx: Context) -> dict[str, str]:
    """Location -> `ebs` or `instance-store`."""
    return {loc.name: "instance-store" if str(loc.provider) in INSTANCE_STORE_KINDS else "ebs"
            for loc in ctx.core.locations.list()}


def volume_locations(ctx: Context) -> set[str]:
    """The locations whose instances have a root volume onepane holds."""
    return {loc.name for loc in ctx.core.locations.list()
            if str(loc.provider) in ROOT_VOLUME_KINDS}


def root_volume_id(instance_id: str) -> str:
    return "vol-" + instance_id.split("-", 1)[1]


def is_root(vol: Volume) -> bool:
    return vol.attached_to is not None and vol.id == root_volume_id(vol.attached_to)


def image_snapshot_id(image_id: str) -> str:
    return "snap-" + image_id.split("-", 1)[1]


def disk_gb(image: Any) -> int:
    """A catalog image's boot disk in whole GiB (EC2 sizes volumes so), at least 1."""
    disks = getattr(image, "disks", None) or [{}]
    size = int(disks[0].get("capacity_bytes") or disks[0].get("virtual_size") or 0)
    return max(1, math.ceil(size / GIB))


def root_volumes(ctx: Context, insts: list[Instance]) -> dict[str, Volume]:
    """Instance id -> its root volume, for the instances that have one."""
    where = volume_locations(ctx)
    mine = [i for i in insts if i.location in where and i.provider_id]
    if not mine:
        return {}
    catalog = {c.id: c for c in ctx.core.catalog.all()}
    return {i.id: _root(i, disk_gb(catalog.get(i.image))) for i in mine}


def _root(inst: Instance, size_gb: int) -> Volume:
    return Volume(id=root_volume_id(inst.id), name=f"{inst.name}-root", location=inst.location,
                  provider_id=None, size_gb=size_gb, state="in-use", attached_to=inst.id,
                  device=DISK_ROOT, tags={}, created_at=inst.created_at)


def root_snapshot(ctx: Context, root: Volume) -> str:
    """The snapshot a root volume was made from, as EC2 shows it: its catalog image's."""
    try:
        image = ctx.core.ops.instances.get_instance(root.attached_to or "").image
    except OnepaneError:
        return ""
    return image_snapshot_id(image) if image.startswith("img-") else ""


def find_root(ctx: Context, volume_id: str) -> Volume | None:
    """The root volume `volume_id` names, if that is what it names."""
    try:
        inst = ctx.core.ops.instances.get_instance("inst-" + volume_id.removeprefix("vol-"))
    except OnepaneError:
        return None
    return root_volumes(ctx, [inst]).get(inst.id)


def all_roots(ctx: Context) -> list[Volume]:
    from ...inventory.paging import every
    return list(root_volumes(ctx, list(every(ctx.core.ops.instances.list_instances))).values())


def refuse_root(ctx: Context, volume_id: str, verb: str) -> None:
    """Attach, detach and delete are not for a root volume: it is the instance's boot disk."""
    root = find_root(ctx, volume_id)
    if root is not None:
        from .wire import Ec2Error
        raise Ec2Error("OperationNotPermitted", f"{volume_id} is the root volume of "
                       f"{shapes.instance_id(root.attached_to or '')}: it cannot be {verb} "
                       "(it goes with the instance)")


def is_image_snapshot(ctx: Context, snapshot_id: str) -> bool:
    """Whether `snapshot_id` is the snapshot a catalog image's root mapping names."""
    return any(image_snapshot_id(c.id) == snapshot_id for c in ctx.core.catalog.all())


def image_snapshots(ctx: Context) -> list[dict[str, Any]]:
    """The snapshots catalog images' root mappings name, as DescribeSnapshots shows them."""
    return [{"snapshotId": image_snapshot_id(c.id), "volumeId": "vol-ffffffff",
             "status": "completed", "startTime": c.created_at, "progress": "100%",
             "ownerId": shapes.OWNER, "volumeSize": disk_gb(c),
             "description": f"the disk of image {c.id} ({c.name})", "encrypted": False,
             "tagSet": []} for c in ctx.core.catalog.all()]

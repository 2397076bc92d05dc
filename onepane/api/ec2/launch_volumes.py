"""RunInstances' `BlockDeviceMapping.N`: the volumes an instance is launched with.

What Terraform's `ebs_block_device` and Ansible's `ec2_instance` `volumes:` send. Each mapping
of a device other than the root is a volume onepane makes at the instance's location (empty, of
`Ebs.VolumeSize` GiB, or from `Ebs.SnapshotId`) and attaches at that device once the instance
exists; `Ebs.DeleteOnTermination` (true unless said otherwise, as EC2 has it for launched
volumes) deletes it with the instance. A mapping of the root device may restate what the root
is (its size, DeleteOnTermination true); anything it cannot honour — a larger root, a root kept
after the instance, instance-store (`VirtualName`) volumes, encryption, provisioned IOPS — is
refused by name before anything is made. Every mapping is checked before the launch; if making
or attaching a volume fails, the launch is undone (its instances and volumes destroyed) and the
error is the answer.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ...errors import OnepaneError
from ...model import Instance, JobStatus, VolumeAttach, VolumeCreate, slug
from ...providers.base import Feature
from . import shapes
from .root_volumes import DISK_ROOT, disk_gb, root_kinds
from .settle import settle
from .wire import Ec2Error, integer, members

if TYPE_CHECKING:
    from .actions import Context

VOLUME_TYPES = (None, "standard", "gp2", "gp3")
STEP_WAIT_S = 60.0  # a volume made or attached at onepane's own locations takes a second


@dataclass(frozen=True)
class Launched:
    device: str
    size_gb: int | None
    snapshot: str | None
    delete_on_termination: bool


def parse(ctx: Context, p: dict[str, Any], image: str, zone: str) -> list[Launched]:
    """The volumes to make, every mapping checked (nothing is made yet)."""
    out: list[Launched] = []
    seen: set[str] = set()
    for n, m in enumerate(members(p, "BlockDeviceMapping"), 1):
        where = f"BlockDeviceMapping.{n}"
        device = m.get("DeviceName") if isinstance(m, dict) else None
        if not device:
            raise Ec2Error("MissingParameter", f"{where}.DeviceName is required")
        if device in seen:
            raise Ec2Error("InvalidBlockDeviceMapping", f"{where}: {device} is mapped twice")
        seen.add(device)
        if m.get("VirtualName"):
            raise Ec2Error("UnsupportedOperation", f"{where}.VirtualName: onepane's instances "
                           "have no instance-store volumes (map an Ebs volume)")
        root = device in (shapes.ROOT_DEVICE, DISK_ROOT)
        if "NoDevice" in m:
            if root:
                raise Ec2Error("InvalidBlockDeviceMapping", f"{where}: the root device cannot "
                               "be suppressed")
            continue  # the images map nothing else: nothing to suppress
        ebs = m.get("Ebs")
        if not isinstance(ebs, dict):
            raise Ec2Error("MissingParameter", f"{where}.Ebs is required")
        _check_kind(ebs, where)
        delete = str(ebs.get("DeleteOnTermination", "true")).lower() == "true"
        size = integer(ebs, "VolumeSize", None, low=1, high=16384)
        if root:
            _check_root(ctx, ebs, where, image, zone, delete, size)
            continue
        snapshot = ebs.get("SnapshotId")
        if size is None and not snapshot:
            raise Ec2Error("MissingParameter", f"{where}.Ebs needs VolumeSize or SnapshotId")
        if snapshot:
            try:
                snap = ctx.core.snapshots.get(snapshot)
            except OnepaneError as exc:
                raise Ec2Error("InvalidSnapshot.NotFound", f"{where}.Ebs.SnapshotId: the "
                               f"snapshot '{snapshot}' does not exist") from exc
            if snap.location != zone:
                raise Ec2Error("InvalidParameterValue", f"{where}.Ebs.SnapshotId: {snapshot} "
                               f"is in {snap.location}, the instance in {zone}")
        out.append(Launched(device, size, snapshot, delete))
    if out:
        loc = ctx.core.locations.get(zone)
        if str(loc.provider) == "cloud":
            raise Ec2Error("UnsupportedOperation", f"BlockDeviceMapping: onepane does not pass "
                           f"volume mappings to the cloud of {zone} yet (attach volumes after "
                           "the launch)")
        try:
            ctx.core.locations.provider(zone).capabilities.require(Feature.volumes, zone)
        except Exception as exc:
            raise Ec2Error("UnsupportedOperation", f"BlockDeviceMapping: {exc}") from exc
    return out


def _check_kind(ebs: dict[str, Any], where: str) -> None:
    if ebs.get("VolumeType") not in VOLUME_TYPES:
        raise Ec2Error("InvalidParameterValue", f"{where}.Ebs.VolumeType "
                       f"{ebs['VolumeType']!r}: onepane's volumes are one kind (standard; gp2 "
                       "and gp3 are taken as it)")
    if str(ebs.get("Encrypted", "false")).lower() == "true" or ebs.get("Iops") or \
            ebs.get("KmsKeyId") or ebs.get("Throughput"):
        raise Ec2Error("UnsupportedOperation", f"{where}.Ebs: onepane's volumes are not "
                       "encrypted and have no provisioned IOPS or throughput")


def _check_root(ctx: Context, ebs: dict[str, Any], where: str, image: str, zone: str,
                delete: bool, size: int | None) -> None:
    if root_kinds(ctx).get(zone) == "instance-store":
        raise Ec2Error("InvalidBlockDeviceMapping", f"{where}: an instance at {zone} is "
                       "instance-store backed; its root device is not a volume")
    if not delete:
        raise Ec2Error("UnsupportedOperation", f"{where}.Ebs.DeleteOnTermination=false: a "
                       "root volume goes with its instance here")
    if ebs.get("SnapshotId"):
        raise Ec2Error("InvalidBlockDeviceMapping", f"{where}.Ebs.SnapshotId: the root "
                       "device's snapshot is the image's")
    root_gb = disk_gb(next((c for c in ctx.core.catalog.all() if c.id == image), None))
    if size is not None and size > root_gb:
        raise Ec2Error("UnsupportedOperation", f"{where}.Ebs.VolumeSize: growing the root "
                       "volume at launch is not built yet (the root is the image's size, "
                       f"{root_gb} GiB)")


def attach_all(ctx: Context, inst: Instance, wanted: list[Launched],
               tags: dict[str, str] | None = None) -> list[str]:
    """Make and attach the instance's launch volumes, each with `tags` (TagSpecification's
    `volume` ones); returns their ids. On a failure the volumes made so far are deleted and
    the error raised (the caller undoes the launch)."""
    made: list[str] = []
    try:
        for n, w in enumerate(wanted):
            name = f"{slug(inst.name)[:50]}-{n + 1}"
            if w.snapshot:
                job = ctx.core.snapshots.restore(w.snapshot, name, inst.location, w.size_gb,
                                                 dict(tags or {}))
            else:
                job = ctx.core.ops.volumes.create_volume(VolumeCreate(
                    name=name, location=inst.location, size_gb=w.size_gb or 1,
                    tags=dict(tags or {})))
            made.append(job.target or "")
            _finished(ctx, job.id, f"making the volume for {w.device}")
            attach = ctx.core.ops.volumes.attach_volume(
                job.target or "", VolumeAttach(instance=inst.id, device=w.device))
            _finished(ctx, attach.id, f"attaching the volume at {w.device}")
            notes: dict[str, Any] = {"ec2.deleteOnTermination": w.delete_on_termination}
            if w.snapshot:
                notes["ec2.snapshot"] = w.snapshot
            ctx.core.annotations.put(job.target or "", notes, [])
    except Exception:
        for vol_id in made:
            _remove(ctx, vol_id)
        raise
    return made


def wait_made(ctx: Context, job_id: str, instance_id: str) -> None:
    """Until the instance's create has ended well (volumes attach to what exists)."""
    _finished(ctx, job_id, f"launching {shapes.instance_id(instance_id)}")


def _finished(ctx: Context, job_id: str, what: str) -> None:
    settle(ctx.core, [job_id], STEP_WAIT_S)
    job = ctx.core.ops.jobs.get_job(job_id)
    if job.status != JobStatus.succeeded:
        detail = (job.error or {}).get("message") or f"not done after {STEP_WAIT_S:.0f} s"
        raise Ec2Error("InvalidBlockDeviceMapping", f"{what}: {detail}")


def _remove(ctx: Context, volume_id: str) -> None:
    with contextlib.suppress(OnepaneError):
        vol = ctx.core.ops.volumes.get_volume(volume_id)
        if vol.attached_to:
            settle(ctx.core, [ctx.core.ops.volumes.detach_volume(volume_id).id], STEP_WAIT_S)
        settle(ctx.core, [ctx.core.ops.volumes.delete_volume(volume_id).id], STEP_WAIT_S)

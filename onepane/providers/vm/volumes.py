"""Volumes of a single-host vm location: qcow2 files in the location's folder, attached to a
guest as virtio disks (live when it runs, and in its definition either way). Snapshots are
sparse copies of the file (FileSnapshots)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...errors import InvalidInput
from ...model import new_id
from ..base import ObservedVolume
from ..volumetable import FileSnapshots
from .libvirtcalls import DISK_TARGETS, _libvirt, _qemu_img, libvirt_errors


class QcowVolumes(FileSnapshots):
    def _domain(self, instance_id: str) -> Any:
        raise NotImplementedError

    def _find(self, instance_id: str) -> Any | None:
        raise NotImplementedError

    def list_volumes(self) -> list[ObservedVolume]:
        return self.volumes.observed()

    def create_volume(self, name: str, size_gb: int) -> ObservedVolume:
        with self._lock:
            vols = self.volumes.load()
            vid = new_id("vvol")
            _qemu_img("create", "-q", "-f", "qcow2", str(self._volume_path(vid)), f"{size_gb}G")
            return self.volumes.add(vols, vid, name, size_gb)

    def attach_volume(self, volume_id: str, instance_id: str, device: str) -> None:
        lv = _libvirt()
        with self._lock:
            vols = self.volumes.load()
            vol = self.volumes.get(vols, volume_id)
            dom = self._domain(instance_id)
            self.volumes.attachable(vol, volume_id, instance_id)
            target = disk_target(device)
            flags = lv.VIR_DOMAIN_AFFECT_CONFIG | (lv.VIR_DOMAIN_AFFECT_LIVE if dom.isActive()
                                                   else 0)
            with libvirt_errors():
                dom.attachDeviceFlags(self._volume_xml(volume_id, target), flags)
            vol.update(attached_to=instance_id, device=device, state="in-use")
            self.volumes.save(vols)

    def detach_volume(self, volume_id: str) -> None:
        lv = _libvirt()
        with self._lock:
            vols = self.volumes.load()
            vol = self.volumes.get(vols, volume_id)
            if vol["attached_to"] and (dom := self._find(vol["attached_to"])) is not None:
                flags = lv.VIR_DOMAIN_AFFECT_CONFIG | (
                    lv.VIR_DOMAIN_AFFECT_LIVE if dom.isActive() else 0)
                with libvirt_errors():
                    dom.detachDeviceFlags(self._volume_xml(volume_id,
                                                           disk_target(vol["device"])), flags)
            self.volumes.detached(vols, vol)

    def delete_volume(self, volume_id: str) -> None:
        with self._lock:
            self.volumes.delete(volume_id, self._volume_path(volume_id))

    def _grow(self, path: Path, size_gb: int) -> None:
        _qemu_img("resize", "-q", "-f", "qcow2", str(path), f"{size_gb}G")

    def _volume_path(self, volume_id: str) -> Path:
        return self.root / "volumes" / f"{volume_id}.qcow2"

    def _volume_xml(self, volume_id: str, target: str) -> str:
        return (f"<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
                f"<source file='{self._volume_path(volume_id)}'/>"
                f"<target dev='{target}' bus='virtio'/></disk>")


def disk_target(device: str) -> str:
    """The guest's disk for a device name: `/dev/vdb` ... `/dev/vdp` as they are, and the names
    EC2 tools send (`/dev/sdh`, `/dev/xvdh`) as the virtio disk of the same letter, as EC2's own
    hypervisors show a mapping's device under another name inside the guest."""
    name = Path(device).name
    for prefix in ("xvd", "sd", "vd"):
        if name.startswith(prefix) and "vd" + name[len(prefix):] in DISK_TARGETS[1:]:
            return "vd" + name[len(prefix):]
    raise InvalidInput(f"device {device!r}: use /dev/vdb ... /dev/vdp (or /dev/sdb ..., "
                       "/dev/xvdb ...: the same disks)", field="device")


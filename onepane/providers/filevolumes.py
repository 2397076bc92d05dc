"""Volumes of a process data center: sparse files in the location's folder, attached by a link
in the instance's folder (`volumes/<device>`), which the sandbox hands to the instance's user.
Snapshots are sparse copies (FileSnapshots)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from ..model import new_id
from .base import ObservedVolume
from .volumetable import FileSnapshots


class FileVolumes(FileSnapshots):
    @property
    def instances_dir(self) -> Path:
        raise NotImplementedError

    def _check_instance(self, instance_id: str) -> None:
        """Raise unless the instance exists here (a volume is attached only to one)."""
        raise NotImplementedError

    def list_volumes(self) -> list[ObservedVolume]:
        with self._lock:
            return self.volumes.observed()

    def create_volume(self, name: str, size_gb: int) -> ObservedVolume:
        with self._lock:
            vols = self.volumes.load()
            vid = new_id("lvol")
            with open(self._volume_path(vid), "wb") as f:
                f.truncate(size_gb * 1024**3)
            return self.volumes.add(vols, vid, name, size_gb)

    def attach_volume(self, volume_id: str, instance_id: str, device: str) -> None:
        with self._lock:
            vols = self.volumes.load()
            vol = self.volumes.get(vols, volume_id)
            self._check_instance(instance_id)
            self.volumes.attachable(vol, volume_id, instance_id)
            link = self._link(instance_id, device)
            link.parent.mkdir(exist_ok=True)
            with contextlib.suppress(FileNotFoundError):
                link.unlink()
            link.symlink_to(self._volume_path(volume_id))
            vol.update(attached_to=instance_id, device=device, state="in-use")
            self.volumes.save(vols)

    def detach_volume(self, volume_id: str) -> None:
        with self._lock:
            vols = self.volumes.load()
            vol = self.volumes.get(vols, volume_id)
            if vol["attached_to"] and vol["device"]:
                with contextlib.suppress(FileNotFoundError):
                    self._link(vol["attached_to"], vol["device"]).unlink()
            self.volumes.detached(vols, vol)

    def delete_volume(self, volume_id: str) -> None:
        with self._lock:
            self.volumes.delete(volume_id, self._volume_path(volume_id))

    def _attached_volumes(self, instance_id: str) -> list[Path]:
        return [self._volume_path(vid) for vid, v in self.volumes.load().items()
                if v.get("attached_to") == instance_id]

    def _link(self, instance_id: str, device: str) -> Path:
        return self.instances_dir / Path(instance_id).name / "volumes" / Path(device).name

    def _volume_path(self, volume_id: str) -> Path:
        return self.root / "volumes" / f"{volume_id}.img"

    def _grow(self, path: Path, size_gb: int) -> None:
        if path.stat().st_size < size_gb * 1024**3:
            os.truncate(path, size_gb * 1024**3)

"""The volume table a data center of onepane's own keeps on disk (volumes.json).

Process and VM data centers keep the same facts about their volumes (name, size, state, what
it is attached to and as which device); only how a volume is made and attached differs. The
table is rewritten atomically: a crash leaves the old table or the new one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .. import atomic
from ..errors import Conflict, NotFound
from .base import ObservedVolume

Vols = dict[str, dict[str, Any]]


class VolumeTable:
    def __init__(self, location: str, path: Path) -> None:
        self.location = location
        self.path = path

    def load(self) -> Vols:
        return atomic.read_table(self.path, "volume table")

    def save(self, vols: Vols) -> None:
        atomic.write_json(self.path, vols)

    def observed(self) -> list[ObservedVolume]:
        return [ObservedVolume(provider_id=k, **v) for k, v in self.load().items()]

    def add(self, vols: Vols, vid: str, name: str, size_gb: int) -> ObservedVolume:
        vols[vid] = {"name": name, "size_gb": size_gb, "state": "available",
                     "attached_to": None, "device": None}
        self.save(vols)
        return ObservedVolume(provider_id=vid, **vols[vid])

    def get(self, vols: Vols, volume_id: str) -> dict[str, Any]:
        if volume_id not in vols:
            raise NotFound(f"no volume {volume_id!r} at {self.location}")
        return vols[volume_id]

    def attachable(self, vol: dict[str, Any], volume_id: str, instance_id: str) -> None:
        if vol["attached_to"] and vol["attached_to"] != instance_id:
            raise Conflict(f"volume {volume_id} is attached to {vol['attached_to']}",
                           field="volume")

    def delete(self, volume_id: str, file: Path) -> None:
        """Forget a volume and remove its file; deleting one that is gone is fine, an attached
        one is refused."""
        vols = self.load()
        if volume_id not in vols:
            return
        if vols[volume_id]["attached_to"]:
            raise Conflict(f"volume {volume_id} is attached; detach it first", field="volume")
        del vols[volume_id]
        file.unlink(missing_ok=True)
        self.save(vols)

    def detached(self, vols: Vols, vol: dict[str, Any]) -> None:
        vol.update(attached_to=None, device=None, state="available")
        self.save(vols)

    def detach_all(self, instance_id: str) -> None:
        vols = self.load()
        for vol in vols.values():
            if vol["attached_to"] == instance_id:
                vol.update(attached_to=None, device=None, state="available")
        self.save(vols)


class FileSnapshots:
    """Snapshots of a data center whose volumes are files: a sparse copy of the file, kept
    beside the volumes; a volume made from one is a copy again, grown to the size asked."""

    volumes: VolumeTable
    root: Path
    _lock: Any

    def _volume_path(self, volume_id: str) -> Path:
        raise NotImplementedError

    def _grow(self, path: Path, size_gb: int) -> None:
        raise NotImplementedError

    def create_snapshot(self, volume_id: str, snapshot_id: str) -> str:
        with self._lock:
            self.volumes.get(self.volumes.load(), volume_id)
            src = self._volume_path(volume_id)
            dst = self.root / "snapshots" / f"{snapshot_id}{src.suffix}"
            dst.parent.mkdir(parents=True, exist_ok=True)
            _sparse_copy(src, dst)
            return dst.name

    def delete_snapshot(self, provider_snapshot_id: str) -> None:
        (self.root / "snapshots" / Path(provider_snapshot_id).name).unlink(missing_ok=True)

    def volume_from_snapshot(self, provider_snapshot_id: str, name: str,
                             size_gb: int) -> ObservedVolume:
        src = self.root / "snapshots" / Path(provider_snapshot_id).name
        if not src.exists():
            raise NotFound(f"no snapshot {provider_snapshot_id!r} at {self.volumes.location}")
        with self._lock:
            vols = self.volumes.load()
            vid = src.stem.replace("snap-", "vsnap-", 1) + "-" + str(len(vols))
            dst = self._volume_path(vid)
            _sparse_copy(src, dst)
            self._grow(dst, size_gb)
            return self.volumes.add(vols, vid, name, size_gb)


def _sparse_copy(src: Path, dst: Path) -> None:
    import subprocess
    part = dst.with_name(dst.name + ".partial")
    proc = subprocess.run(["cp", "--sparse=always", str(src), str(part)], capture_output=True,
                          text=True, check=False)
    if proc.returncode != 0:
        part.unlink(missing_ok=True)
        from ..errors import PermanentProviderError
        raise PermanentProviderError(f"copying {src.name}: {proc.stderr.strip()}")
    part.replace(dst)

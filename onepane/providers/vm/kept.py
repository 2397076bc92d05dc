"""A replica's data disks kept for the replica that replaces it (a deployment's storage policy
`data: keep`): what makes a database tier's VM replaceable without losing its data.

The deployment tags each of its VMs `onepane:data=<deployment>.<slot>`; the VM's folder
remembers the key (`data-key`, a file: it survives the domain, and a live move copies it with
the VM's other small files). When such a VM is destroyed — replaced after a failure, or
scaled away — its extra disks (`disk1.qcow2`...; never the boot disk, an overlay on its image)
are moved aside under the key; the next VM created with the same key takes them instead of
blank ones. Moves are renames in one file system: nothing is copied, so keeping costs nothing
and a crash leaves the files whole, under the key or in the VM's folder. A live move never
parks: the running guest takes its disks with it, and the copy it left is stale.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from ...errors import InvalidInput
from ..base import DATA_TAG

KEY_FILE = "data-key"
KEY = re.compile(r"^[a-z0-9][a-z0-9.-]{0,95}$")


def checked(key: str) -> str:
    """A data key, refused unless it can be part of a file or volume name."""
    if not KEY.match(key):
        raise InvalidInput(f"{DATA_TAG} {key!r}: lowercase letters, digits, dots and dashes",
                           field="tags")
    return key


class KeptDisks:
    def __init__(self, root: Path) -> None:
        self.root = root

    def remember(self, instance_dir: Path, key: str) -> None:
        """The VM made in instance_dir keeps its data under key."""
        (instance_dir / KEY_FILE).write_text(checked(key))

    def keeps(self, instance_dir: Path) -> bool:
        """Whether the VM in instance_dir keeps its data disks when destroyed."""
        return (instance_dir / KEY_FILE).is_file()

    def adopt(self, instance_dir: Path, key: str, count: int) -> set[int]:
        """The kept disks 1..count moved into instance_dir (disk<n>.qcow2); which ones were."""
        kept = self._kept(key)
        if kept is None:
            return set()
        taken = set()
        for n in range(1, count + 1):
            disk = kept / f"disk{n}.qcow2"
            if disk.exists():
                disk.replace(instance_dir / disk.name)
                taken.add(n)
        shutil.rmtree(kept, ignore_errors=True)  # a disk the new VM has no place for: gone
        return taken

    def park(self, instance_dir: Path) -> str | None:
        """The data disks of the VM in instance_dir moved aside under its key (replacing
        what was kept there before); the key, or None for a VM that keeps nothing."""
        key_file = instance_dir / KEY_FILE
        if not key_file.is_file():
            return None
        key = key_file.read_text().strip()
        if not KEY.match(key):
            return None
        disks = sorted(p for p in instance_dir.glob("disk*.qcow2") if p.name != "disk0.qcow2")
        if not disks:
            return key
        self.root.mkdir(parents=True, exist_ok=True)
        parking = self.root / f".{key}.parking"
        shutil.rmtree(parking, ignore_errors=True)
        parking.mkdir()
        for disk in disks:
            disk.replace(parking / disk.name)
        final = self.root / key
        shutil.rmtree(final, ignore_errors=True)
        parking.rename(final)
        return key

    def forget(self, deployment: str) -> list[str]:
        """Every key of a deployment (`<deployment>.<slot>`) dropped: the deployment is gone."""
        if not self.root.is_dir():
            return []
        gone = []
        for d in self.root.iterdir():
            name = d.name.lstrip(".").removesuffix(".parking")
            if name.rsplit(".", 1)[0] == deployment:
                shutil.rmtree(d, ignore_errors=True)
                gone.append(name)
        return sorted(gone)

    def keys(self) -> list[str]:
        return sorted(d.name for d in self.root.iterdir() if not d.name.startswith(".")) \
            if self.root.is_dir() else []

    def _kept(self, key: str) -> Path | None:
        """Where key's disks are: parked, or still being parked when a crash stopped it."""
        for d in (self.root / key, self.root / f".{key}.parking"):
            if d.is_dir():
                return d
        return None

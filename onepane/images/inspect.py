"""Disk images checked before anything opens them: no disk a user sends may reach outside itself.

qemu-img follows what an image header tells it: a qcow2 backing file or external data file, a
VMDK extent or parent hint, a differencing VHD/VHDX/VDI's parent. A user who uploads such a disk
and exports it again reads any file the server can read (CVE-2024-32498 in OpenStack). So every
uploaded disk goes through two independent checks before it is kept:

1. oslo.utils' format inspector (what Glance, Nova and Cinder use): the format is decided from
   the content by every inspector at once — two matching formats are refused, since one header
   hidden in another is the trick — and the format's safety checks run (qcow2 backing and data
   files, unknown qcow2 features, VMDK subformats and extent names, MBR sanity). To those onepane
   adds what the inspector does not look at: a VMDK's parent hint, differencing VHD and VDI
   images, and a VHDX parent locator.
2. `qemu-img info` with the format given explicitly (never probed), under CPU and memory limits,
   must agree: same format, no backing file, no data file, every VMDK extent the file itself,
   and the same virtual size.

Only then is the disk converted, always with `-f` set to the format found here.
"""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InvalidInput, PermanentProviderError

if TYPE_CHECKING:
    from oslo_utils.imageutils import format_inspector as fi

MAX_VIRTUAL_SIZE = 16 * 2**40  # 16 TiB: more than any real appliance, less than qcow2's 2^63
QEMU_IMG_CPU_SECONDS = 30  # the limits OpenStack puts on `qemu-img info` for the same reason
QEMU_IMG_MEMORY = 1 * 2**30

# oslo's format names -> qemu-img's. A GPT-partitioned disk is a raw disk.
_QEMU_NAMES = {"raw": "raw", "gpt": "raw", "qcow2": "qcow2", "vmdk": "vmdk", "vdi": "vdi",
               "vhdx": "vhdx", "vhd": "vpc"}
_REFUSED = {
    "iso": "an ISO 9660 image is install media, not a disk",
    "qed": "QED images are not accepted (deprecated by QEMU; convert to qcow2 first)",
    "luks": "LUKS-encrypted images cannot be inspected",
}
_VIOLATIONS = {
    "backing_file": "it names a qcow2 backing file (another file on the server would be read)",
    "data_file": "it names a qcow2 external data file (another file on the server would be read)",
    "unknown_features": "it uses qcow2 features onepane does not know",
    "descriptor": "its VMDK descriptor is not a single self-contained file (extents or a "
                  "subformat that would open other files)",
    "footer": "its streamOptimized VMDK footer does not match its header",
    "mbr": "its MBR partition table is invalid",
}
_VHDX_PARENT_LOCATOR = "A8D35F2D-B30B-454D-ABF7-D3D84834AB0C"
_VDI_PARENT_TYPES = {3: "an undo disk", 4: "a differencing disk"}
_VHD_DIFFERENCING = 4
Refuse = Callable[[str], InvalidInput]


@dataclass(frozen=True)
class Inspected:
    format: str  # qemu-img's name
    virtual_size: int
    subformat: str | None = None


def check(path: Path, name: str | None = None, field: str = "disk") -> Inspected:
    """Decide the format from the content and refuse anything that reaches outside the file.
    `name` is what the user calls the file (an upload has no name of its own)."""
    # oslo's inspector is loaded by the first check, not by every server start
    from oslo_utils.imageutils import format_inspector as fi
    label = name or path.name

    def refuse(why: str) -> InvalidInput:
        return InvalidInput(f"{label}: refused: {why}", field=field)

    try:
        found = fi.detect_file_format(str(path))
    except fi.ImageFormatError as exc:
        raise refuse(f"its content matches more than one disk format ({exc}); a header hidden "
                     "in another is not accepted") from exc
    if found is None:
        raise refuse("not a disk image")
    if found.NAME in _REFUSED:
        raise refuse(_REFUSED[found.NAME])
    try:
        found.safety_check()
    except fi.SafetyCheckFailed as exc:
        reasons = [_VIOLATIONS.get(k.removeprefix("inner_"), f"{k}: {v}")
                   for k, v in exc.failures.items()]
        raise refuse("; ".join(reasons)) from exc
    except fi.ImageFormatError as exc:
        raise refuse(f"the {found.NAME} header does not match its content ({exc})") from exc
    _check_parents(path, found, refuse)
    fmt = _QEMU_NAMES[found.NAME]
    size = path.stat().st_size
    if fmt == "raw" and (size == 0 or size % 512):
        raise refuse(f"not a recognised disk image (not a known format, and {size} bytes is "
                     "not a whole number of 512-byte sectors for a raw disk)")
    qemu = qemu_info(path, fmt, label, field)
    if qemu.get("format") != fmt:
        raise refuse(f"qemu-img reads it as {qemu.get('format')!r}, not {fmt!r}")
    _check_qemu_view(path, qemu, refuse)
    virtual = int(qemu["virtual-size"])
    if fmt != "raw" and found.virtual_size and found.virtual_size != virtual:
        raise refuse(f"its header says {found.virtual_size} bytes but qemu-img reads {virtual}")
    if virtual > MAX_VIRTUAL_SIZE or virtual <= 0:
        raise refuse(f"declared virtual size {virtual} bytes is outside 1 byte .. "
                     f"{MAX_VIRTUAL_SIZE} bytes")
    sub = ((qemu.get("format-specific") or {}).get("data") or {}).get("create-type")
    return Inspected(format=fmt, virtual_size=virtual, subformat=sub)


def qemu_info(path: Path, fmt: str, label: str | None = None, field: str = "disk") -> dict[str, Any]:
    """`qemu-img info` with the format given (no probing) and CPU/memory limits, since it parses
    a file a user made."""
    args = [*limited(QEMU_IMG_CPU_SECONDS, QEMU_IMG_MEMORY), qemu_img(), "info", "-f", fmt,
            "--output=json", "--", str(path)]
    proc = subprocess.run(args, capture_output=True, text=True)
    if proc.returncode != 0:
        raise InvalidInput(f"{label or path.name}: qemu-img cannot read it as {fmt}: "
                           f"{proc.stderr.strip() or f'exit {proc.returncode}'}", field=field)
    data: dict[str, Any] = json.loads(proc.stdout)
    return data


def limited(cpu_seconds: int, memory: int) -> list[str]:
    """A prefix running a command under rlimits. `prlimit` (util-linux) rather than preexec_fn:
    preexec_fn is unsafe in a threaded server."""
    tool = shutil.which("prlimit")
    if tool is None:
        return []
    return [tool, f"--cpu={cpu_seconds}", f"--as={memory}", "--"]


def qemu_img() -> str:
    path = shutil.which("qemu-img")
    if path is None:
        raise PermanentProviderError("qemu-img is not installed (apt-get install qemu-utils)")
    return path


def _check_parents(path: Path, found: fi.FileInspector, refuse: Refuse) -> None:
    """The parent links oslo's inspector does not look at."""
    from oslo_utils.imageutils import format_inspector as fi
    if found.NAME == "vmdk":
        desc = getattr(found, "desc_text", None) or ""  # the inspector keeps it lower-cased
        for line in desc.splitlines():
            key, _, value = line.partition("=")
            key, value = key.strip().lower(), value.strip().strip('"').lower()
            if key == "parentfilenamehint" or (key == "parentcid" and value != "ffffffff"):
                raise refuse("its VMDK descriptor names a parent disk (parentFileNameHint / "
                             "parentCID): another file on the server would be read")
    elif found.NAME == "vdi":
        with path.open("rb") as f:
            header = f.read(0x50)
        (image_type,) = struct.unpack_from("<I", header, 0x4C)
        if image_type in _VDI_PARENT_TYPES:
            raise refuse(f"it is {_VDI_PARENT_TYPES[image_type]} VDI, which needs a parent image")
    elif found.NAME == "vhd":
        with path.open("rb") as f:
            footer = f.read(512)
        (disk_type,) = struct.unpack_from(">I", footer, 60)
        if disk_type == _VHD_DIFFERENCING:
            raise refuse("it is a differencing VHD, which names a parent image")
    elif found.NAME == "vhdx":
        table = found.region("metadata").data if found.has_region("metadata") else b""
        count = struct.unpack_from("<H", table, 10)[0] if len(table) >= 12 else 0
        for i in range(min(count, 2047)):
            entry = table[32 + i * 32: 48 + i * 32]
            if len(entry) == 16 and fi.VHDXInspector._guid(entry) == _VHDX_PARENT_LOCATOR:
                raise refuse("it is a differencing VHDX with a parent locator, which names "
                             "another image")


def _check_qemu_view(path: Path, qemu: dict[str, Any], refuse: Refuse) -> None:
    if qemu.get("backing-filename") or qemu.get("full-backing-filename"):
        raise refuse(f"it names a backing file ({qemu.get('backing-filename')!r}): another "
                     "file on the server would be read")
    data = (qemu.get("format-specific") or {}).get("data") or {}
    if data.get("data-file"):
        raise refuse(f"it names an external data file ({data['data-file']!r})")
    for extent in data.get("extents") or []:
        if Path(str(extent.get("filename", ""))).resolve() != path.resolve():
            raise refuse(f"a VMDK extent is another file ({extent.get('filename')!r}); only "
                         "single-file VMDKs are accepted")

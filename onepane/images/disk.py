"""Disk images through qemu-img: what a file is (by content, not by name), and conversion.

qemu-img is called with argument lists (never a shell) and `--` before paths.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import InvalidInput, PermanentProviderError

QEMU_IMG = "qemu-img"
FORMATS = ("raw", "qcow2", "vmdk", "vdi", "vhdx", "vpc")
_PROGRESS = re.compile(r"\((\d+(?:\.\d+)?)/100%\)")


@dataclass(frozen=True)
class DiskInfo:
    format: str
    virtual_size: int
    actual_size: int
    subformat: str | None = None  # e.g. vmdk streamOptimized


def _qemu_img() -> str:
    path = shutil.which(QEMU_IMG)
    if path is None:
        raise PermanentProviderError("qemu-img is not installed (apt-get install qemu-utils)")
    return path


def info(path: Path) -> DiskInfo:
    """Probe the format from the content. qemu-img calls anything it does not recognise raw."""
    proc = subprocess.run([_qemu_img(), "info", "--output=json", "--", str(path)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise InvalidInput(f"{path.name}: not a disk image qemu-img can read: "
                           f"{proc.stderr.strip()}", field="disk")
    data = json.loads(proc.stdout)
    fmt = data["format"]
    if fmt not in FORMATS:
        raise InvalidInput(f"{path.name}: unsupported disk format {fmt!r}; onepane handles "
                           f"{', '.join(FORMATS)}", field="disk")
    size = path.stat().st_size  # qemu-img rounds a raw file's size up to whole sectors
    if fmt == "raw" and (size == 0 or size % 512):
        # Anything qemu-img does not recognise reads as raw; a real raw disk is whole sectors.
        raise InvalidInput(f"{path.name}: not a recognised disk image (not a known format, and "
                           f"{size} bytes is not a whole number of 512-byte "
                           "sectors for a raw disk)", field="disk")
    sub = ((data.get("format-specific") or {}).get("data") or {}).get("create-type")
    return DiskInfo(format=fmt, virtual_size=int(data["virtual-size"]),
                    actual_size=int(data.get("actual-size") or path.stat().st_size), subformat=sub)


def convert(src: Path, dst: Path, fmt: str, progress: Callable[[float], None] | None = None,
            src_format: str | None = None) -> DiskInfo:
    """Convert to `fmt`; VMDKs are written streamOptimized (what OVF consumers expect) and VHDs
    with force_size, so the virtual size stays exactly what it was."""
    if fmt not in FORMATS:
        raise InvalidInput(f"unknown target format {fmt!r}; use one of {', '.join(FORMATS)}",
                           field="format")
    args = [_qemu_img(), "convert", "-p", "-O", fmt]
    if src_format:
        args += ["-f", src_format]
    if fmt == "vmdk":
        args += ["-o", "subformat=streamOptimized"]
    elif fmt == "vpc":
        args += ["-o", "subformat=dynamic,force_size=on"]
    tmp = dst.with_name(dst.name + ".partial")
    args += ["--", str(src), str(tmp)]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    buf = ""
    while chunk := proc.stdout.read(64):
        buf += chunk
        for m in _PROGRESS.finditer(buf):
            if progress:
                progress(float(m.group(1)))
        buf = buf[-32:]
    err = proc.stderr.read() if proc.stderr else ""
    if proc.wait() != 0:
        tmp.unlink(missing_ok=True)
        raise PermanentProviderError(f"qemu-img convert to {fmt} failed: {err.strip()}")
    tmp.replace(dst)
    return info(dst)


def identical(a: Path, b: Path) -> bool:
    """Same guest-visible contents, whatever the two formats (qemu-img compare)."""
    proc = subprocess.run([_qemu_img(), "compare", "-q", "--", str(a), str(b)],
                          capture_output=True, text=True)
    return proc.returncode == 0

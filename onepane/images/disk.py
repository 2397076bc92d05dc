"""Disk images through qemu-img: what a file is (by content, not by name), and conversion.

qemu-img is called with argument lists (never a shell), `--` before paths, the source format
always given, and resource limits. A disk a user sent is checked by `inspect.check` first.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import InvalidInput, PermanentProviderError
from . import inspect

FORMATS = ("raw", "qcow2", "vmdk", "vdi", "vhdx", "vpc")
_PROGRESS = re.compile(r"\((\d+(?:\.\d+)?)/100%\)")


@dataclass(frozen=True)
class DiskInfo:
    format: str
    virtual_size: int
    actual_size: int
    subformat: str | None = None  # e.g. vmdk streamOptimized


def info(path: Path, fmt: str) -> DiskInfo:
    """What qemu-img says of a disk onepane made or has already inspected; the format is always
    given, never probed (a probe is how a raw disk that looks like qcow2 gets its way)."""
    data = inspect.qemu_info(path, fmt)
    sub = ((data.get("format-specific") or {}).get("data") or {}).get("create-type")
    return DiskInfo(format=data["format"], virtual_size=int(data["virtual-size"]),
                    actual_size=int(data.get("actual-size") or path.stat().st_size), subformat=sub)


def convert(src: Path, dst: Path, fmt: str, src_format: str,
            progress: Callable[[float], None] | None = None) -> DiskInfo:
    """Convert to `fmt`; VMDKs are written streamOptimized (what OVF consumers expect) and VHDs
    with force_size, so the virtual size stays exactly what it was."""
    if fmt not in FORMATS:
        raise InvalidInput(f"unknown target format {fmt!r}; use one of {', '.join(FORMATS)}",
                           field="format")
    # Memory is capped; CPU time is not (a large disk legitimately converts for minutes).
    args = [*inspect.limited(24 * 3600, 2 * 2**30), inspect.qemu_img(), "convert", "-p",
            "-f", src_format, "-O", fmt]
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
    return info(dst, fmt)


def identical(a: Path, a_format: str, b: Path, b_format: str) -> bool:
    """Same guest-visible contents, whatever the two formats (qemu-img compare)."""
    proc = subprocess.run([inspect.qemu_img(), "compare", "-q", "-f", a_format, "-F", b_format,
                           "--", str(a), str(b)],
                          capture_output=True, text=True)
    return proc.returncode == 0

"""CPU and memory limits for process instances: cgroup v1 where writable, rlimit otherwise."""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

import psutil

log = logging.getLogger(__name__)
CGROUP_ROOT = Path("/sys/fs/cgroup")
PERIOD_US = 100_000


def apply_limits(pid: int, key: str, cpu: float | None, memory_mb: int | None) -> str:
    """Confine `pid`; returns how ("cgroup", "rlimit" or "none") so it can be reported."""
    try:
        if cpu:
            _cgroup(pid, "cpu", key, {"cpu.cfs_period_us": PERIOD_US,
                                      "cpu.cfs_quota_us": int(cpu * PERIOD_US)})
        if memory_mb:
            _cgroup(pid, "memory", key, {"memory.limit_in_bytes": memory_mb * 1024 * 1024})
        return "cgroup"
    except OSError as exc:
        log.debug("cgroup limits unavailable (%s); falling back to rlimit", exc)
    if memory_mb:
        # Address space is a coarse stand-in for resident memory; leave headroom for mappings.
        limit = max(memory_mb, 64) * 1024 * 1024 * 4
        with contextlib.suppress(psutil.Error, OSError):
            psutil.Process(pid).rlimit(psutil.RLIMIT_AS, (limit, limit))
            return "rlimit"
    return "none"


def _cgroup(pid: int, controller: str, key: str, values: dict[str, int]) -> None:
    base = CGROUP_ROOT / controller
    if not (base / "cgroup.procs").exists():
        raise OSError(f"no cgroup v1 {controller} controller")
    group = base / "onepane" / key
    try:
        os.mkdir(group)
    except FileNotFoundError:  # the first instance: onepane's own group first
        os.makedirs(group, exist_ok=True)
    except FileExistsError:
        pass
    for name, value in values.items():
        _write(group / name, value)
    _write(group / "cgroup.procs", pid)


def _write(path: Path, value: int) -> None:
    """One open, write and close: a text-mode open() adds a stat, a terminal check and a
    seek, each a system call a create made under its location's lock."""
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, str(value).encode())
    finally:
        os.close(fd)


def members(key: str) -> set[int]:
    """The processes in the instance's groups: who belongs to an instance when its record
    cannot say (the kernel keeps this list, so no process can hide from it or forge it)."""
    pids: set[int] = set()
    for controller in ("cpu", "memory"):
        with contextlib.suppress(OSError, ValueError):
            text = (CGROUP_ROOT / controller / "onepane" / key / "cgroup.procs").read_text()
            pids.update(int(line) for line in text.split())
    return pids


def remove_limits(key: str) -> bool:
    """Remove the instance's groups; whether they are gone (not while a process is in one)."""
    gone = True
    for controller in ("cpu", "memory"):
        group = CGROUP_ROOT / controller / "onepane" / key
        try:
            group.rmdir()
        except FileNotFoundError:
            pass
        except OSError:
            gone = False
    return gone


def prune_empty(prefix: str) -> None:
    """Remove this location's instance cgroups that hold no process (their instance died or
    was killed outside onepane; a destroy removes its own). Left behind they add up, and every
    new CPU quota costs the kernel a walk over all of them. A group with a process in it
    cannot be removed, so a live instance's, whoever's, is safe."""
    for controller in ("cpu", "memory"):
        base = CGROUP_ROOT / controller / "onepane"
        with contextlib.suppress(OSError):
            for entry in os.scandir(base):
                if entry.name.startswith(prefix) and entry.is_dir(follow_symlinks=False):
                    with contextlib.suppress(OSError):
                        os.rmdir(entry.path)

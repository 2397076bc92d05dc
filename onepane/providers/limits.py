"""CPU and memory limits for process instances: cgroup v1 where writable, rlimit otherwise."""

from __future__ import annotations

import contextlib
import logging
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
    group.mkdir(parents=True, exist_ok=True)
    for name, value in values.items():
        (group / name).write_text(str(value))
    (group / "cgroup.procs").write_text(str(pid))


def remove_limits(key: str) -> None:
    for controller in ("cpu", "memory"):
        with contextlib.suppress(OSError):
            (CGROUP_ROOT / controller / "onepane" / key).rmdir()

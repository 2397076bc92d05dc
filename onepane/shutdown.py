"""`onepane down`: stop onepane and what it runs on this machine.

Instances and data planes outlive `onepane up` on purpose (a restart or a crash must not take
applications down), so stopping the server stops only the control plane. This is the way to
stop the rest: the server (if it runs on this state directory), every deployment's data plane,
and every instance at a process or VM location (processes, namespaces, VMs). Cloud servers
are left alone: they cost money to lose and are the cloud's to stop. What is stored stays: the
next `onepane up` brings deployments back from their specs and restarts process instances
that should run.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
from sqlalchemy import func, select

from .config import Settings
from .errors import OnepaneError
from .providers.registry import build_provider
from .store.db import Store
from .store.tables import InstanceRow, LocationRow
from .traffic.dataplane import make_data_plane

PID_FILE = "onepane.pid"
ON_THIS_MACHINE = ("local", "netns", "vm")


@dataclass
class DownPlan:
    server_pid: int | None
    locations: dict[str, int]  # location on this machine -> instances onepane knows there
    left_running: dict[str, int]  # cloud location -> instances (not touched)
    data_planes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {"server_pid": self.server_pid, "locations": self.locations,
                "data_planes": self.data_planes, "left_running": self.left_running}


def write_pid(state_dir: Path) -> None:
    (state_dir / PID_FILE).write_text(f"{os.getpid()}\n")


def remove_pid(state_dir: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path = state_dir / PID_FILE
        if path.read_text().strip() == str(os.getpid()):
            path.unlink()


def running_server(state_dir: Path) -> int | None:
    """The pid of `onepane up` on this state directory, if it still runs."""
    with contextlib.suppress(FileNotFoundError, ValueError, psutil.Error):
        pid = int((state_dir / PID_FILE).read_text().split()[0])
        proc = psutil.Process(pid)
        if proc.status() != psutil.STATUS_ZOMBIE and "up" in proc.cmdline():
            return pid
    return None


def plan(settings: Settings) -> DownPlan:
    store = Store(settings.db_url)
    try:
        store.migrate()
        with store.tx() as s:
            counts = dict(s.execute(select(InstanceRow.location, func.count())
                                    .group_by(InstanceRow.location)).tuples().all())
            kinds = dict(s.execute(select(LocationRow.name, LocationRow.provider)).tuples().all())
    finally:
        store.close()
    traffic = settings.node_dir / "traffic"
    planes = sorted(p.stem for p in traffic.glob("*.pid")) if traffic.is_dir() else []
    return DownPlan(
        server_pid=running_server(settings.node_dir),
        locations={n: counts.get(n, 0) for n, k in sorted(kinds.items()) if k in ON_THIS_MACHINE},
        left_running={n: counts.get(n, 0) for n, k in sorted(kinds.items())
                      if k not in ON_THIS_MACHINE},
        data_planes=planes)


def execute(settings: Settings, todo: DownPlan) -> list[str]:
    """Stop in the order that loses no decision: the server first (so that no reconciler
    starts anything again), then the data planes, then the instances. Returns what was done."""
    done = []
    if todo.server_pid is not None:
        stop_process(todo.server_pid)
        done.append(f"stopped onepane (pid {todo.server_pid})")
    for name in todo.data_planes:
        for kind in ("builtin", "haproxy"):  # each stops only a process that is its own
            make_data_plane(kind, name, settings.node_dir / "traffic").stop()
        (settings.node_dir / "traffic" / f"{name}.pid").unlink(missing_ok=True)
        done.append(f"stopped the data plane of {name}")
    store = Store(settings.db_url)
    try:
        with store.tx() as s:
            rows = [(r.name, r.provider, r.options) for r in s.scalars(select(LocationRow))
                    if r.provider in ON_THIS_MACHINE]
    finally:
        store.close()
    for name, kind, options in rows:
        try:
            provider = build_provider(name, kind, state_dir=settings.state_dir, region="",
                                      driver=None, credentials={}, options=options)
            provider.teardown()
            provider.close()
            done.append(f"stopped everything at {name} ({instances(todo.locations.get(name, 0))})")
        except OnepaneError as exc:
            done.append(f"{name}: {exc.detail}")
    return done


def instances(n: int) -> str:
    return f"{n} instance" + ("" if n == 1 else "s")


def stop_process(pid: int, timeout: float = 30.0) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while psutil.pid_exists(pid) and time.monotonic() < deadline:
        with contextlib.suppress(psutil.Error):
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)

"""Control-plane side of the data planes: write a configuration, make sure the process runs.

A data plane is its own process, started in its own session, so it keeps serving with the last
configuration it was given when the control plane dies; a restarted control plane adopts it
through its pid file instead of starting a second one.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from ..errors import PermanentProviderError


@dataclass(frozen=True)
class PoolConfig:
    name: str
    backends: tuple[tuple[str, int], ...]
    weight: int = 1


@dataclass(frozen=True)
class DataPlaneConfig:
    listen: str
    mode: str  # http | tcp
    policy: str  # ordered | weighted
    pools: tuple[PoolConfig, ...]
    attempt_timeout: float = 5.0
    connect_timeout: float = 0.25
    hedge_factor: float = 3.0  # built-in plane: hedge after k x a backend's recent p99 (0: off)


EMPTY_GRACE_S = 30.0  # how long a plane keeps its last backends when the new config has none
# A client's keep-alive connection with no request for this long is closed, on both planes
# (HAProxy's `timeout http-keep-alive`; the built-in plane's Proxy.idle): what a burst made a
# client open does not stay in its pool for good (why: Proxy.idle's docstring)
CLIENT_KEEPALIVE_S = 2.0


def backends_of(config: DataPlaneConfig | None) -> int:
    return sum(len(p.backends) for p in config.pools) if config else 0


def keep_last(applied: DataPlaneConfig | None, new: DataPlaneConfig, empty_for: float) -> bool:
    """Whether to keep the applied configuration instead of one with no backend at all. A
    control plane's view can be empty for a moment (a replica crashed, its replacement not yet
    checked, the control plane restarted in between: issue 35 saw four 503s "no backend
    available"); the plane, which routes around dead backends itself, serves better from its
    last backends than from none. Only for a while: a deployment that has had nothing up for
    EMPTY_GRACE_S is told so."""
    return (applied is not None and backends_of(new) == 0 and backends_of(applied) > 0
            and (applied.listen, applied.mode) == (new.listen, new.mode)
            and empty_for < EMPTY_GRACE_S)


class DataPlane(ABC):
    def __init__(self, name: str, workdir: Path, wrap: tuple[str, ...] = ()) -> None:
        self.name = name
        self.workdir = workdir
        # argv prefix that starts the process where it must run (a location's namespace, for
        # a front door in that site); empty: on onepane's machine, beside it
        self.wrap = wrap
        workdir.mkdir(parents=True, exist_ok=True)
        self.applied: DataPlaneConfig | None = None

    @abstractmethod
    def apply(self, config: DataPlaneConfig) -> None: ...

    @abstractmethod
    def stop(self) -> None: ...

    @abstractmethod
    def stats(self) -> dict[str, Any]:
        """Cumulative served/retried/failed counts, per location, and recent latency."""

    @property
    def pidfile(self) -> Path:
        return self.workdir / f"{self.name}.pid"

    def pid(self) -> int | None:
        """The running data plane's pid, if the pid file names a live process of ours."""
        with contextlib.suppress(FileNotFoundError, ValueError, psutil.Error):
            pid = int(self.pidfile.read_text().split()[0])
            p = psutil.Process(pid)
            if p.status() != psutil.STATUS_ZOMBIE and self.marker in " ".join(p.cmdline()):
                return pid
        return None

    @property
    @abstractmethod
    def config_path(self) -> Path: ...

    @property
    def marker(self) -> str:
        """A string in the process's command line that proves the pid is still ours."""
        return str(self.config_path)

    def _kill(self) -> None:
        """Stop the process if it is ours. The pid file is shared by both kinds of plane (one
        deployment has one), so it goes only with our process, or when it names none: `down`
        asks each kind in turn, and the first must not take the other's file away."""
        pid = self.pid()
        if pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 5
            while psutil.pid_exists(pid) and time.monotonic() < deadline:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, os.WNOHANG)
                time.sleep(0.02)
        if pid or not self._names_a_process():
            self.pidfile.unlink(missing_ok=True)

    def _names_a_process(self) -> bool:
        with contextlib.suppress(FileNotFoundError, ValueError, psutil.Error):
            p = psutil.Process(int(self.pidfile.read_text().split()[0]))
            return p.status() != psutil.STATUS_ZOMBIE
        return False


def accepts(listen: str) -> bool:
    host, port = listen.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=0.2).close()
        return True
    except OSError:
        return False


def wait_ready(ready: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Return once `ready()` holds; `ready` may raise to give up early."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        time.sleep(0.01)
    raise PermanentProviderError(f"{what} did not start listening")


class BuiltinDataPlane(DataPlane):
    @property
    def config_path(self) -> Path:
        return self.workdir / f"{self.name}.json"

    def apply(self, config: DataPlaneConfig) -> None:
        body = {"listen": config.listen, "mode": config.mode, "policy": config.policy,
                "attempt_timeout": config.attempt_timeout,
                "connect_timeout": config.connect_timeout,
                "hedge_factor": config.hedge_factor,
                "pools": [{"name": p.name, "weight": p.weight,
                           "backends": [list(b) for b in p.backends]} for p in config.pools]}
        tmp = self.config_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(body))
        tmp.replace(self.config_path)
        pid = self.pid()
        if pid is None:
            self._spawn(config)
        else:
            os.kill(pid, signal.SIGHUP)
        self.applied = config

    def _spawn(self, config: DataPlaneConfig) -> None:
        log = open(self.workdir / f"{self.name}.log", "ab")  # noqa: SIM115 - the child keeps it
        proc = subprocess.Popen([*self.wrap, sys.executable, "-m", "onepane.traffic.proxy",
                                 str(self.config_path)], stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        self.pidfile.write_text(str(proc.pid))

        def ready() -> bool:
            if proc.poll() is not None:
                raise PermanentProviderError(
                    f"data plane for {self.name} exited: "
                    f"{(self.workdir / f'{self.name}.log').read_text()[-500:]}")
            return accepts(config.listen)
        wait_ready(ready, f"data plane for {self.name}")

    def stop(self) -> None:
        self._kill()
        self.config_path.unlink(missing_ok=True)

    def stats(self) -> dict[str, Any]:
        with contextlib.suppress(FileNotFoundError, ValueError):
            return dict(json.loads(self.config_path.with_suffix(".stats.json").read_text()))
        return {}


def make_data_plane(kind: str, name: str, workdir: Path, wrap: tuple[str, ...] = ()) -> DataPlane:
    if kind == "haproxy":
        from .haproxy import HaproxyDataPlane
        return HaproxyDataPlane(name, workdir, wrap)
    return BuiltinDataPlane(name, workdir, wrap)

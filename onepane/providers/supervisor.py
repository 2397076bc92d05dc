"""The processes of one process location: which are its own, whether one still runs, how it
stops, and what it uses.

An instance's process runs in a session of its own, so that it outlives onepane (the data plane
must survive the control plane), and with its instance's id in its environment, so that a
restarted onepane finds it again even when its record cannot say (damaged, or written before
the process started). A pid alone proves nothing: a record's pid is trusted only with the
process's start time, which a recycled pid does not share.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import psutil

from ..errors import PermanentProviderError
from ..model import InstanceState
from . import limits
from .base import ObservedInstance
from .process_records import RECORD, ProcessRecord

INSTANCE_PORTS = (20000, 32767)  # where instances listen (below Linux's ephemeral range)
STOP_GRACE_S = 5.0
log = logging.getLogger(__name__)


class Supervisor:
    def __init__(self, location: str, instances_dir: Path) -> None:
        self.location = location
        self.instances_dir = instances_dir
        self.children: dict[int, subprocess.Popen[bytes]] = {}  # reaped by alive()
        self._usage: dict[int, psutil.Process] = {}  # kept: cpu_percent() measures between calls

    def ours(self) -> dict[int, str]:
        """Session leaders started by this location: pid -> the instance id in their env."""
        out = {}
        for p in psutil.process_iter(["pid"]):
            with contextlib.suppress(psutil.Error, OSError):
                if os.getpgid(p.pid) != p.pid or p.status() == psutil.STATUS_ZOMBIE:
                    continue
                env = p.environ()
                if env.get("ONEPANE_LOCATION") == self.location and "ONEPANE_INSTANCE_ID" in env \
                        and env.get("ONEPANE_DATA_DIR", "").startswith(str(self.instances_dir)):
                    out[p.pid] = env["ONEPANE_INSTANCE_ID"]
        return out

    def adopt(self, rec: ProcessRecord) -> int | None:
        """Point the record at its instance's running process, if one runs (a create that
        recorded the instance but died before it recorded the process)."""
        orphan = next((pid for pid, i in self.ours().items() if i == rec.id), None)
        if orphan is not None:
            rec.pid = orphan
            with contextlib.suppress(psutil.Error):
                rec.started = psutil.Process(orphan).create_time()
        return orphan

    def start(self, rec: ProcessRecord, argv: list[str], env: dict[str, str], output: Path,
              cpu: float, memory_mb: int) -> None:
        """Start the instance's process in a session of its own, its output appended to
        `output`, confined to its size; the record gets its pid and start time."""
        with open(output, "ab") as log:
            try:
                proc = subprocess.Popen(argv, cwd="/", env=env, stdin=subprocess.DEVNULL,
                                        stdout=log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
            except OSError as exc:
                raise PermanentProviderError(f"cannot start {argv[0]}: {exc}") from exc
        self.children[proc.pid] = proc
        rec.pid, rec.exit_code, rec.desired = proc.pid, None, "running"
        with contextlib.suppress(psutil.Error):
            rec.started = psutil.Process(proc.pid).create_time()
        rec.limits = limits.apply_limits(proc.pid, f"{self.location}-{rec.id}", cpu, memory_mb)

    def settle(self, known: set[str]) -> list[str]:
        """After a crash: a process of this location whose instance has no folder is stopped,
        and so is a folder a destroy left half-removed. `known`: the instances with a record,
        readable or damaged. Returns what was done, for the operator."""
        said = []
        folders = {d.name for d in self.instances_dir.iterdir() if d.is_dir()}
        running = self.ours()
        for pid, inst_id in running.items():
            if inst_id not in folders:
                said.append(f"stopped process {pid} of instance {inst_id}, which has no "
                            "folder here")
                log.warning("%s: stopping process %d of unknown instance %s",
                            self.location, pid, inst_id)
                kill_group(pid)
        for name in folders - known:
            if (self.instances_dir / name / RECORD).exists():
                continue  # destroyed, not yet removed: listings skip it
            if name in running.values():
                said.append(f"instance {name} has a process but no record; both are left as "
                            "they are (destroy it, or restore its record)")
            else:
                shutil.rmtree(self.instances_dir / name, ignore_errors=True)
                said.append(f"removed the folder of instance {name}, which a destroy had left "
                            "without its record")
        return said

    def unrecorded(self, inst_id: str, pid: int | None) -> ObservedInstance:
        """What can be said of an instance without its record: whether its process lives,
        where it listens (from the process's environment)."""
        env: dict[str, str] = {}
        if pid is not None:
            with contextlib.suppress(psutil.Error):
                env = psutil.Process(pid).environ()
        port = env.get("PORT", "")
        return ObservedInstance(
            provider_id=inst_id, name=env.get("ONEPANE_INSTANCE_NAME", inst_id),
            state=InstanceState.running if env else InstanceState.error, image="", size="",
            addresses=[env["HOST"]] if "HOST" in env else [],
            ports={"app": int(port)} if port.isdigit() else {}, onepane_id=inst_id)

    def alive(self, rec: ProcessRecord) -> bool:
        if not rec.pid:
            return False
        child = self.children.get(rec.pid)
        if child is not None and child.poll() is not None:  # reap our own children
            rec.exit_code = child.returncode
            self.children.pop(rec.pid, None)
            return False
        try:
            p = psutil.Process(rec.pid)
            same = rec.started is None or abs(p.create_time() - rec.started) < 0.05
            return same and p.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False

    def terminate(self, rec: ProcessRecord) -> None:
        """SIGTERM to its whole group, SIGKILL after STOP_GRACE_S; returns once it is gone."""
        if not rec.pid or not self.alive(rec):
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(rec.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        while time.monotonic() < deadline and self.alive(rec):
            time.sleep(0.02)
        if self.alive(rec):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(rec.pid, signal.SIGKILL)
            while self.alive(rec):
                time.sleep(0.01)

    def kill_instance_of(self, instance_id: str) -> None:
        """Every process of an instance whose record cannot say which: the session leaders
        with its id in their environment, and what its cgroup holds (the kernel's list, where
        cgroups are writable)."""
        for pid, inst_id in self.ours().items():
            if inst_id == instance_id:
                kill_group(pid)
        for pid in limits.members(f"{self.location}-{instance_id}"):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(psutil.Error):
                psutil.Process(pid).wait(timeout=2)

    def usage(self, rec: ProcessRecord) -> tuple[float, int] | None:
        """CPU % and resident bytes of the process and its children, or None if it is down."""
        with contextlib.suppress(psutil.Error, OSError, ValueError):
            if not rec.pid or not self.alive(rec):
                return None
            proc = self._usage.get(rec.pid)
            if proc is None:
                proc = self._usage[rec.pid] = psutil.Process(rec.pid)
                proc.cpu_percent(None)  # the first call only sets the baseline
            procs = [proc, *proc.children(recursive=True)]
            return (sum(p.cpu_percent(None) for p in procs if p.is_running()),
                    sum(p.memory_info().rss for p in procs if p.is_running()))
        return None


def instance_env(location: str, rec: ProcessRecord, app_env: dict[str, str],
                 inst_dir: Path) -> dict[str, str]:
    """What an instance's process is told: where to listen, who it is (which is also how
    `ours()` finds it again), and where its data, user data and SSH keys are."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **app_env,
           "HOST": rec.host, "PORT": str(rec.port), "ONEPANE_INSTANCE_ID": rec.id,
           "ONEPANE_INSTANCE_NAME": rec.name, "ONEPANE_LOCATION": location,
           "ONEPANE_DATA_DIR": str(inst_dir / "data")}
    if (inst_dir / "user-data").exists():
        env["ONEPANE_USER_DATA_FILE"] = str(inst_dir / "user-data")
    if (inst_dir / "authorized_keys").exists():
        env["ONEPANE_SSH_AUTHORIZED_KEYS"] = str(inst_dir / "authorized_keys")
    return env


def kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(psutil.Error):  # gone, so that its group can go
        psutil.Process(pid).wait(timeout=2)


def free_port(bind_host: str) -> int:
    """A free port *below* the kernel's ephemeral range. A port the kernel hands out for
    bind(0) can be one a server just let go of while it restarts (onepane's own API under
    a kill -9 drill saw an instance take its port and answer its clients with 501)."""
    low = INSTANCE_PORTS[0]
    with contextlib.suppress(OSError, ValueError):
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    top = min(INSTANCE_PORTS[1], low - 1)
    rng = random.Random()
    for _ in range(64):
        port = rng.randint(INSTANCE_PORTS[0], top)
        with socket.socket() as s, contextlib.suppress(OSError):
            s.bind((bind_host, port))
            return port
    with socket.socket() as s:  # a crowded range: any free port
        s.bind((bind_host, 0))
        return int(s.getsockname()[1])

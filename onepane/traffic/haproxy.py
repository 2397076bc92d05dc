"""HAProxy as a data plane, driven by onepane through its runtime API.

The configuration is written once per deployment shape and holds *slots*: for every location a
set of normal servers and a set of `backup` servers, all parked in maintenance. onepane fills
and frees slots with the runtime API (`set server ... addr`, `state ready|maint`,
`set weight`), so failovers, moves, replaced replicas and weight changes need no reload:
reloads close idle keep-alive connections under clients that are just sending on them.

active-passive: the primary's replicas sit in normal slots and the next location's in backup
slots, so HAProxy itself falls over to the next location at the first refused or timed-out
connection (`observe layer4` + `on-error mark-down`, `retry-on` + `option redispatch`), before
onepane has even noticed; onepane then promotes that location and arms the one after it.
active-active: every location's replicas in normal slots, weighted.
A reload (seamless: `-x` hands the listening sockets over) happens only when the shape changes:
another listen address or mode, a new location, or more replicas than slots.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import os
import re
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from ..errors import PermanentProviderError
from .dataplane import CLIENT_KEEPALIVE_S, DataPlane, DataPlaneConfig, accepts, wait_ready

HAPROXY = "haproxy"
MIN_SLOTS = 4
UP_WAIT_S = 3.0


@dataclass(frozen=True)
class Shape:
    listen: str
    mode: str
    locations: tuple[str, ...]
    slots: int
    attempt_timeout: float
    connect_timeout: float


@dataclass(frozen=True)
class SlotState:
    addr: tuple[str, int] | None  # None: parked in maintenance
    weight: int = 1


SOCKET_PATH_MAX = 90  # sun_path holds 108 bytes; haproxy takes at most 97 (it adds a suffix)


def slot_prefix(location: str, backup: bool) -> str:
    """`n_<location>_` (normal) or `b_<location>_` (backup); HAProxy appends the slot number.
    The trailing `_` keeps a location whose name ends in a digit (`drill-1`) apart from its
    slot numbers when `show stat` is read back."""
    return ("b_" if backup else "n_") + re.sub(r"[^A-Za-z0-9_]", "_", location) + "_"


def shape_of(config: DataPlaneConfig, current: Shape | None) -> Shape:
    need = max([len(p.backends) for p in config.pools] + [MIN_SLOTS])
    slots = current.slots if current and current.slots >= need else max(need, MIN_SLOTS) * 2
    locations = tuple(sorted({p.name for p in config.pools}))
    return Shape(config.listen, config.mode, locations, slots, config.attempt_timeout,
                 config.connect_timeout)


def render(shape: Shape, sock: Path) -> str:
    http = shape.mode == "http"
    lines = [
        "global",
        f"    stats socket {sock} mode 600 level admin expose-fd listeners",
        "    maxconn 4096",
        "    nbthread 1",
        "defaults",
        f"    mode {shape.mode}",
        f"    timeout connect {int(shape.connect_timeout * 1000)}ms",
        "    timeout client 30s",
        f"    timeout http-keep-alive {int(CLIENT_KEEPALIVE_S * 1000)}ms",
        f"    timeout server {int(shape.attempt_timeout * 1000)}ms",
        "    timeout queue 1s",  # never hold a new request long behind a server that is full
        # A WebSocket (or a TCP connection) lives as long as both ends want; a backend that
        # dies or goes silent under it is found by TCP keepalive within ~8 s and the client's
        # side closed, never held open silently (the built-in plane does the same, tunnel.py).
        "    timeout tunnel 1h",
        "    option srvtcpka",
        "    srvtcpka-idle 5s",
        "    srvtcpka-intvl 1s",
        "    srvtcpka-cnt 3",
        "    retries 6",
        "    option redispatch 1",  # every retry goes to another server
    ]
    if http:
        lines.append("    retry-on all-retryable-errors")
    lines += [
        "frontend fe",
        f"    bind {shape.listen}",
        "    default_backend be",
        "backend be",
        "    balance roundrobin",
    ]
    if http:
        # `timeout server` is HAProxy's inactivity bound on the server side, for the wait for
        # an answer and for the gaps in a streamed one alike (2.6 cannot change it once the
        # head is in). A server-sent event stream (EventSource always asks for it) may stay
        # quiet far longer than an answer may take to start: it gets the tunnel's bound.
        lines.append("    http-request set-timeout server 1h "
                     "if { req.hdr(accept) -m sub text/event-stream }")
    lines += [
        # Passive observation marks a server down at its first failed connection (layer4, not
        # layer7: one 500 from an application must not move a location's traffic); a request
        # that timed out is retried on another server (retry-on). Active checks every 250 ms,
        # 100 ms while a server changes state, bring it back after two good ones.
        "    default-server check inter 250ms fastinter 100ms downinter 500ms fall 2 rise 2 "
        "observe layer4 error-limit 1 on-error mark-down",
    ]
    for loc in shape.locations:
        for backup in (False, True):
            lines.append(f"    server-template {slot_prefix(loc, backup)} {shape.slots} "
                         f"127.0.0.1:1 disabled{' backup' if backup else ''}")
    return "\n".join(lines) + "\n"


def desired_slots(config: DataPlaneConfig, shape: Shape) -> dict[str, SlotState]:
    """Every slot's wanted address and weight for this configuration."""
    want: dict[str, SlotState] = {}
    for loc in shape.locations:
        for backup in (False, True):
            for i in range(1, shape.slots + 1):
                want[f"{slot_prefix(loc, backup)}{i}"] = SlotState(None)
    ordered = config.policy == "ordered"
    for rank, pool in enumerate(config.pools):
        if ordered and rank > 1:
            break  # HAProxy has one level of backup: the next location in the order
        backup = ordered and rank == 1
        weight = 1 if ordered else max(0, min(256, pool.weight))
        for i, backend in enumerate(pool.backends, start=1):
            want[f"{slot_prefix(pool.name, backup)}{i}"] = SlotState(backend, weight)
    return want


class HaproxyDataPlane(DataPlane):
    def __init__(self, name: str, workdir: Path, wrap: tuple[str, ...] = ()) -> None:
        super().__init__(name, workdir, wrap)
        self.shape: Shape | None = None
        self.slots: dict[str, SlotState] = {}

    @property
    def config_path(self) -> Path:
        return self.workdir / f"{self.name}.haproxy.cfg"

    @property
    def sock(self) -> Path:
        """The runtime API's socket: beside the configuration, or, where that path is longer
        than a UNIX socket's address can be (108 bytes; a deep state directory), under
        /run/onepane, named for it."""
        near = self.workdir / f"{self.name}.haproxy.sock"
        if len(str(near)) < SOCKET_PATH_MAX:
            return near
        far = Path("/run/onepane") / (hashlib.sha256(str(near).encode()).hexdigest()[:24] + ".sock")
        far.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        return far

    def apply(self, config: DataPlaneConfig) -> None:
        if shutil.which(HAPROXY) is None:
            raise PermanentProviderError("haproxy is not installed (apt-get install haproxy)")
        shape = shape_of(config, self.shape)
        pid = self.pid()
        if pid is not None and self.shape is None:
            self._adopt(shape)
        if pid is None or shape != self.shape:
            self._start(shape, pid)
            self.shape, self.slots = shape, {}
        self._converge(desired_slots(config, shape))
        self.applied = config

    def _adopt(self, shape: Shape) -> None:
        """A HAProxy serving since before this onepane started: if it runs this very shape,
        take its slots as they are (no reload, nothing parked), so the first converge changes
        only what differs."""
        with contextlib.suppress(OSError):
            if self.config_path.read_text() != render(shape, self.sock):
                return
        self.shape, self.slots = shape, self._read_slots()

    def _read_slots(self) -> dict[str, SlotState]:
        lines = self.command("show servers state be").splitlines()
        header = next((ln[2:].split() for ln in lines if ln.startswith("# ")), [])
        need = ("srv_name", "srv_addr", "srv_admin_state", "srv_uweight", "srv_port")
        if not all(k in header for k in need):
            return {}
        i = {k: header.index(k) for k in need}
        out = {}
        for ln in lines:
            parts = ln.split()
            if ln.startswith("#") or len(parts) <= max(i.values()) or not parts[0].isdigit():
                continue
            armed = parts[i["srv_admin_state"]] == "0"
            addr = (parts[i["srv_addr"]], int(parts[i["srv_port"]])) if armed else None
            out[parts[i["srv_name"]]] = SlotState(addr, int(parts[i["srv_uweight"]]))
        return out

    # ---- runtime API ---------------------------------------------------------------------

    def _converge(self, want: dict[str, SlotState]) -> None:
        """Arm new slots first, wait until they are up, then park the old ones: at no moment
        is there less to serve from than before."""
        armed = []
        for name, st in want.items():
            have = self.slots.get(name, SlotState(None))
            if st.addr is None or have == st:
                continue
            if have.addr != st.addr:
                if have.addr is not None:
                    self.command(f"set server be/{name} state maint")
                self.command(f"set server be/{name} addr {st.addr[0]} port {st.addr[1]}")
                self.command(f"set server be/{name} weight {st.weight}")
                self.command(f"set server be/{name} state ready")
                armed.append(name)
            else:
                self.command(f"set server be/{name} weight {st.weight}")
            self.slots[name] = st
        self._wait_up(armed)
        for name, st in want.items():
            if st.addr is None and self.slots.get(name, SlotState(None)).addr is not None:
                self.command(f"set server be/{name} state maint")
                self.slots[name] = st

    def _wait_up(self, names: list[str]) -> None:
        deadline = time.monotonic() + UP_WAIT_S
        pending = set(names)
        while pending and time.monotonic() < deadline:
            states = self.server_states()
            pending = {n for n in pending if states.get(n) != "2"}  # 2: running
            if pending:
                time.sleep(0.02)

    def server_states(self) -> dict[str, str]:
        """Slot name -> srv_op_state, from `show servers state`."""
        lines = self.command("show servers state be").splitlines()
        header = next((ln[2:].split() for ln in lines if ln.startswith("# ")), [])
        if "srv_name" not in header:
            return {}
        i_name, i_state = header.index("srv_name"), header.index("srv_op_state")
        out = {}
        for ln in lines:
            parts = ln.split()
            if len(parts) > max(i_name, i_state) and not ln.startswith("#") and parts[0].isdigit():
                out[parts[i_name]] = parts[i_state]
        return out

    def command(self, cmd: str) -> str:
        """One runtime API command over the admin socket."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            s.connect(str(self.sock))
            s.sendall(cmd.encode() + b"\n")
            chunks = []
            while data := s.recv(65536):
                chunks.append(data)
        reply = b"".join(chunks).decode()
        if reply.startswith(("Unknown command", "No such")) or "not found" in reply:
            raise PermanentProviderError(f"haproxy runtime API: {cmd!r}: {reply.strip()}")
        return reply

    def stats(self) -> dict[str, Any]:
        """From `show stat`: requests, retries and 5xx of the backend, per-location sessions,
        and HAProxy's average response time over its last 1024 requests."""
        if self.shape is None or self.pid() is None:
            return {}
        rows = list(csv.DictReader(self.command("show stat").lstrip("# ").splitlines()))
        by_prefix = {slot_prefix(loc, b): loc for loc in self.shape.locations for b in (False, True)}
        by_location: dict[str, int] = {}
        out: dict[str, Any] = {"ts": time.time()}
        for row in rows:
            if row.get("pxname") != "be":
                continue
            if row.get("svname") == "BACKEND":
                out.update(served=int(row.get("req_tot") or row.get("stot") or 0),
                           retried=int(row.get("wretr") or 0) + int(row.get("wredis") or 0),
                           failed=int(row.get("hrsp_5xx") or 0),
                           p50_ms=float(row.get("rtime") or 0))
                continue
            prefix = re.sub(r"\d+$", "", row.get("svname", ""))
            if prefix in by_prefix:
                loc = by_prefix[prefix]
                by_location[loc] = by_location.get(loc, 0) + int(row.get("stot") or 0)
        out["by_location"] = by_location
        return out

    # ---- process -------------------------------------------------------------------------

    def _start(self, shape: Shape, old_pid: int | None) -> None:
        tmp = self.config_path.with_suffix(".tmp")
        tmp.write_text(render(shape, self.sock))
        check = subprocess.run([HAPROXY, "-c", "-f", str(tmp)], capture_output=True, text=True)
        if check.returncode != 0:
            alerts = [ln for ln in (check.stderr + check.stdout).splitlines() if "ALERT" in ln]
            raise PermanentProviderError("haproxy rejected the configuration: "
                                         + " ".join(alerts[:2])[:500])
        tmp.replace(self.config_path)
        args = [*self.wrap, HAPROXY, "-D", "-f", str(self.config_path), "-p", str(self.pidfile)]
        if old_pid:
            args += ["-x", str(self.sock), "-sf", str(old_pid)]
        run = subprocess.run(args, capture_output=True, text=True)
        if run.returncode != 0:
            raise PermanentProviderError(f"haproxy did not start: {run.stderr.strip()}")

        def serving() -> bool:
            """The new process (not the old one) answers on the admin socket and the port."""
            with contextlib.suppress(OSError, ValueError, PermanentProviderError):
                new_pid = int(self.pidfile.read_text().split()[0])
                return (new_pid != old_pid and f"Pid: {new_pid}" in self.command("show info")
                        and accepts(shape.listen))
            return False
        wait_ready(serving, "haproxy")
        soft_deadline = time.monotonic() + 2
        while old_pid and psutil.pid_exists(old_pid) and time.monotonic() < soft_deadline:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(old_pid, os.WNOHANG)
            time.sleep(0.01)

    def stop(self) -> None:
        self._kill()
        self.config_path.unlink(missing_ok=True)
        self.sock.unlink(missing_ok=True)

"""A data center in its own network namespace: real addresses that can really be cut off.

Location `index` N gets 10.200.N.0/24: the host side of its veth is .1, the namespace side .2,
and every instance binds 10.200.N.2 on a port of its own. A cut happens *inside* the namespace
(RECIPES.md §6), and a catch-all blackhole for 10.200.0.0/16 in the root namespace guarantees
that traffic for a location that is down never leaves the machine.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any, Literal

from ..errors import InvalidInput, PermanentProviderError
from .base import Capabilities
from .local import LocalProvider

PREFIX = "10.200"
CATCH_ALL = f"{PREFIX}.0.0/16"
FIRST_PORT = 20000
CutMode = Literal["silent", "down"]


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise PermanentProviderError(f"ip {' '.join(args)}: {proc.stderr.strip()}")
    return proc


def ensure_catch_all() -> None:
    ip("route", "replace", "blackhole", CATCH_ALL)


class NetnsProvider(LocalProvider):
    capabilities = Capabilities(volumes=True, networks=True, stop_start=True, reboot=True,
                                image_import=True, cut=True, disk_images=True)

    def __init__(self, location: str, state_dir: Path, options: dict[str, Any] | None = None) -> None:
        super().__init__(location, state_dir, options)
        index = int(self.options.get("index", 0))
        if not 1 <= index <= 254:
            raise InvalidInput("netns locations need options.index between 1 and 254 "
                               f"(their subnet is {PREFIX}.<index>.0/24)", field="options.index")
        self.index = index
        self.ns = f"op-{location}"[:32]
        self.host_if, self.ns_if = f"op-h{index}", f"op-c{index}"

    @property
    def bind_host(self) -> str:
        return f"{PREFIX}.{self.index}.2"

    @property
    def gateway(self) -> str:
        return f"{PREFIX}.{self.index}.1"

    def setup(self) -> None:
        if os.geteuid() != 0:
            raise PermanentProviderError("netns locations need root (ip netns)")
        ensure_catch_all()
        have_ns = self.ns in ip("netns", "list").stdout.split()
        have_veth = ip("link", "show", self.host_if, check=False).returncode == 0
        if have_ns and not have_veth:  # half-built by a run that died: start over
            ip("netns", "del", self.ns, check=False)
            have_ns = False
        if not have_ns:
            ip("netns", "add", self.ns)
        if not have_veth:
            ip("link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if)
            ip("link", "set", self.ns_if, "netns", self.ns)
            ip("addr", "add", f"{self.gateway}/24", "dev", self.host_if)
            ip("-n", self.ns, "addr", "add", f"{self.bind_host}/24", "dev", self.ns_if)
        ip("link", "set", self.host_if, "up")
        ip("-n", self.ns, "link", "set", self.ns_if, "up")
        ip("-n", self.ns, "link", "set", "lo", "up")
        super().setup()

    def teardown(self) -> None:
        """Stop every instance, delete the namespace and wait until its veth is gone."""
        for rec in self._records():
            self._terminate(rec)
        self.restore()
        # Anything else still inside would keep the namespace (and its veth) alive, unseen.
        for pid in ip("netns", "pids", self.ns, check=False).stdout.split():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
        ip("netns", "del", self.ns, check=False)
        deadline = time.monotonic() + 10
        while ip("link", "show", self.host_if, check=False).returncode == 0:
            if time.monotonic() > deadline:
                raise PermanentProviderError(f"{self.host_if} still exists after deleting {self.ns}")
            time.sleep(0.02)

    # ---- failure drills ------------------------------------------------------------------

    def cut(self, mode: CutMode = "silent") -> None:
        """Make the location unreachable. `silent`: packets vanish (clients time out);
        `down`: the link goes down (clients get an immediate error)."""
        if mode == "silent":
            ip("-n", self.ns, "route", "replace", "blackhole", f"{self.gateway}/32")
        elif mode == "down":
            ip("-n", self.ns, "link", "set", self.ns_if, "down")
        else:
            raise InvalidInput(f"unknown cut mode {mode!r}; use silent or down", field="mode")

    def restore(self) -> None:
        ip("-n", self.ns, "route", "del", "blackhole", f"{self.gateway}/32", check=False)
        ip("-n", self.ns, "link", "set", self.ns_if, "up", check=False)

    def is_cut(self) -> bool:
        routes = ip("-n", self.ns, "route", "show", "type", "blackhole", check=False).stdout
        link = ip("-n", self.ns, "link", "show", self.ns_if, check=False).stdout
        return self.gateway in routes or "state DOWN" in link

    # ---- internals -----------------------------------------------------------------------

    def _command(self, cmd: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.ns, *cmd]

    def _free_port(self) -> int:
        used = {r.port for r in self._records()}
        port = FIRST_PORT
        while port in used:
            port += 1
        return port

"""A data center's network: a namespace joined to the host by one veth, that can be cut.

Location `index` N gets 10.200.N.0/24 for that link: the host side is .1, the namespace side
.2. A cut happens *inside* the namespace, never on the host side, and a catch-all blackhole
for 10.200.0.0/16 in the root namespace guarantees that traffic for a location that is down
never leaves the machine. Process data centers (netns) and VM data centers (vm) both stand on
this.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from typing import Literal

from ..errors import InvalidInput, PermanentProviderError

PREFIX = "10.200"
CATCH_ALL = f"{PREFIX}.0.0/16"
CutMode = Literal["silent", "down"]


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise PermanentProviderError(f"ip {' '.join(args)}: {proc.stderr.strip()}")
    return proc


def ensure_catch_all() -> None:
    ip("route", "replace", "blackhole", CATCH_ALL)


def location_index(location: str, options: dict[str, object]) -> int:
    raw = options.get("index", 0)
    try:
        index = int(raw)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        index = 0
    if not 1 <= index <= 254:
        raise InvalidInput(f"location {location} needs options.index between 1 and 254 "
                           f"(its link is {PREFIX}.<index>.0/24)", field="options.index")
    return index


class DataCenterNet:
    def __init__(self, location: str, index: int) -> None:
        self.location = location
        self.index = index
        self.ns = f"op-{location}"[:32]
        self.host_if, self.ns_if = f"op-h{index}", f"op-c{index}"

    @property
    def inside(self) -> str:
        """The namespace's address on the link (where host routes into the location point)."""
        return f"{PREFIX}.{self.index}.2"

    @property
    def gateway(self) -> str:
        """The host's address on the link (the namespace's way out)."""
        return f"{PREFIX}.{self.index}.1"

    def setup(self) -> None:
        if os.geteuid() != 0:
            raise PermanentProviderError(f"location {self.location} needs root (ip netns)")
        ensure_catch_all()
        have_ns = self.ns in ip("netns", "list").stdout.split()
        have_veth = ip("link", "show", self.host_if, check=False).returncode == 0
        peer_inside = have_ns and ip("-n", self.ns, "link", "show", self.ns_if,
                                     check=False).returncode == 0
        if have_veth and not peer_inside:
            # The host end survived a namespace that was deleted while a process still held it
            # (its peer lives on in that orphan): deleting one end of a veth deletes both.
            ip("link", "del", self.host_if, check=False)
            have_veth = False
        if have_ns and not have_veth:  # half-built by a run that died: start over
            ip("netns", "del", self.ns, check=False)
            have_ns = False
        if not have_ns:
            ip("netns", "add", self.ns)
        if not have_veth:
            ip("link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if)
            ip("link", "set", self.ns_if, "netns", self.ns)
            ip("addr", "add", f"{self.gateway}/24", "dev", self.host_if)
            ip("-n", self.ns, "addr", "add", f"{self.inside}/24", "dev", self.ns_if)
        ip("link", "set", self.host_if, "up")
        ip("-n", self.ns, "link", "set", self.ns_if, "up")
        ip("-n", self.ns, "link", "set", "lo", "up")
        ip("-n", self.ns, "route", "replace", "default", "via", self.gateway)

    def exec_argv(self, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.ns, *argv]

    def teardown(self) -> None:
        """Kill what is still inside, delete the namespace, wait until its veth is gone."""
        self.restore()
        for pid in ip("netns", "pids", self.ns, check=False).stdout.split():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
        ip("netns", "del", self.ns, check=False)
        deadline = time.monotonic() + 10
        while ip("link", "show", self.host_if, check=False).returncode == 0:
            if time.monotonic() > deadline:
                raise PermanentProviderError(f"{self.host_if} still exists after deleting {self.ns}")
            time.sleep(0.02)

    def cut(self, mode: str = "silent") -> None:
        """Make the location unreachable. `silent`: packets vanish (clients time out);
        `down`: the link goes down (clients get an immediate error)."""
        if mode == "silent":
            ip("-n", self.ns, "route", "replace", "blackhole", f"{self.gateway}/32")
            ip("-n", self.ns, "route", "replace", "blackhole", "default")
        elif mode == "down":
            ip("-n", self.ns, "link", "set", self.ns_if, "down")
        else:
            raise InvalidInput(f"unknown cut mode {mode!r}; use silent or down", field="mode")

    def restore(self) -> None:
        ip("-n", self.ns, "route", "del", "blackhole", f"{self.gateway}/32", check=False)
        ip("-n", self.ns, "route", "del", "blackhole", "default", check=False)
        ip("-n", self.ns, "link", "set", self.ns_if, "up", check=False)
        ip("-n", self.ns, "route", "replace", "default", "via", self.gateway, check=False)

    def is_cut(self) -> bool:
        routes = ip("-n", self.ns, "route", "show", "type", "blackhole", check=False).stdout
        link = ip("-n", self.ns, "link", "show", self.ns_if, check=False).stdout
        return self.gateway in routes or "state DOWN" in link


class CutByNamespace:
    """The drill verbs of a provider that stands on a DataCenterNet (`self.net`)."""

    net: DataCenterNet

    def cut(self, mode: str = "silent") -> None:
        self.net.cut(mode)

    def restore(self) -> None:
        self.net.restore()

    def is_cut(self) -> bool:
        return self.net.is_cut()

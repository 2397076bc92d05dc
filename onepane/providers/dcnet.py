"""A data center's network: a namespace joined to the host by one veth, that can be cut.

Location `index` N gets 10.200.N.0/24 for that link: the host side is .1, the namespace side
.2. A cut happens *inside* the namespace, never on the host side, and a catch-all blackhole
for 10.200.0.0/16 in the root namespace guarantees that traffic for a location that is down
never leaves the machine. Process data centers (netns) and VM data centers (vm) both stand on
this.

Data centers also reach each other directly, as sites do over a WAN (a front door in one site
forwards to replicas in another): every pair of location namespaces gets a veth of its own,
`ow<a>-<b>`, unnumbered, with a host route to the other side's address. The root namespace does
not forward, so this is the only way between sites, and a cut takes it down with the rest.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from typing import Literal

from ..errors import InvalidInput, PermanentProviderError
from . import netclaims
from .nftrules import replace_table

PREFIX = "10.200"
CATCH_ALL = f"{PREFIX}.0.0/16"
CutMode = Literal["silent", "down"]
ADDRESS_ROUTES = "79"  # the routing protocol number on host routes to elastic addresses


HOST_IF_PREFIX = "op-h"  # the host side of each location's link


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
    def __init__(self, location: str, index: int, owner: str | None = None) -> None:
        self.location = location
        self.index = index
        # the state directory (or lab) whose network this is: claimed machine-wide before it
        # is made, so that another onepane here never takes it over or deletes it (netclaims)
        self.owner = owner
        self.ns = f"op-{location}"[:32]
        self.host_if, self.ns_if = f"{HOST_IF_PREFIX}{index}", f"op-c{index}"

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
        if self.owner is not None:
            netclaims.claim(self.index, self.ns, self.owner)
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
        self.join_wan()

    def join_wan(self) -> None:
        """A link to every other location namespace on this machine (see the module's doc)."""
        for index, peer in location_namespaces().items():
            if index == self.index or peer == self.ns:
                continue
            mine, theirs = wan_if(self.index, index), wan_if(index, self.index)
            try:
                if ip("-n", self.ns, "link", "show", mine, check=False).returncode != 0:
                    ip("link", "del", mine, check=False)  # a half-made pair from a run that died
                    ip("link", "add", mine, "type", "veth", "peer", "name", theirs)
                    ip("link", "set", mine, "netns", self.ns)
                    ip("link", "set", theirs, "netns", peer)
                ip("-n", self.ns, "link", "set", mine, "up")
                ip("-n", peer, "link", "set", theirs, "up")
            except PermanentProviderError:
                # the peer's namespace went away meanwhile (its location was torn down): no
                # link to make; what half of the pair exists goes with this namespace
                ip("link", "del", mine, check=False)
                continue
            _wan_route(self.ns, self.index, index, blocked=_cut_in(self.ns))
            _wan_route(peer, index, self.index, blocked=_cut_in(peer))

    def _wan_peers(self) -> list[int]:
        links = ip("-n", self.ns, "-o", "link", "show", check=False).stdout
        return sorted({int(m) for m in re.findall(rf"\bow{self.index}-(\d+)@", links)})

    def exec_argv(self, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.ns, *argv]

    def teardown(self) -> None:
        """Kill what is still inside, delete the namespace, wait until its veth is gone —
        only a network this owner holds (or nobody does): never another onepane's."""
        if self.owner is not None:
            netclaims.claim(self.index, self.ns, self.owner)  # refuses another's that runs
        self.restore()
        for pid in ip("netns", "pids", self.ns, check=False).stdout.split():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
        ip("netns", "del", self.ns, check=False)
        # The namespace goes with its last reference. A process in a mount namespace of its own
        # made while this one existed (a sandboxed instance elsewhere, a daemon started with
        # unshare -m) keeps a copy of its /run/netns entry, and so the namespace and its veth,
        # for as long as it lives: a clean run once waited 45 s on one. Its link is then taken
        # down from this side (deleting one end of a veth deletes both); what is left is an
        # empty namespace that goes when its holder does.
        deadline = time.monotonic() + 10
        while ip("link", "show", self.host_if, check=False).returncode == 0:
            if time.monotonic() > deadline:
                ip("link", "del", self.host_if, check=False)
                if ip("link", "show", self.host_if, check=False).returncode == 0:
                    raise PermanentProviderError(f"{self.host_if} still exists after deleting "
                                                 f"{self.ns}")
                break
            time.sleep(0.02)
        if self.owner is not None:
            netclaims.release(self.index, self.owner)

    def route_addresses(self, wanted: dict[str, str]) -> None:
        """Elastic addresses into this namespace: each address (every TCP port of it) reaches
        the destination it names: `ip:port` (a process's one port on the namespace's address)
        or `ip` (a guest on the namespace's bridge, port kept). Inside, one nft table, replaced whole,
        rewrites the destination (answers are rewritten back by conntrack); on the host, a /32
        route per address to the namespace, marked with ADDRESS_ROUTES so that the ones this
        location no longer wants are found and removed. A route is replaced, not added: an
        address moving here from another location takes its route over in one step."""
        replace_table(self.exec_argv(["nft"]), "ip", "onepane_eip", [
            " chain prerouting {", "  type nat hook prerouting priority dstnat; policy accept;",
            *(f"  ip daddr {address} tcp dport 0-65535 dnat to {to}"
              for address, to in sorted(wanted.items())), " }"], self.location)
        for address in sorted(wanted):
            ip("route", "replace", f"{address}/32", "via", self.inside, "dev", self.host_if,
               "proto", ADDRESS_ROUTES)
        routed = ip("route", "show", "dev", self.host_if, "proto", ADDRESS_ROUTES,
                    check=False).stdout.split("\n")
        for line in routed:
            address = line.split(" ", 1)[0].removesuffix("/32")
            if address and address not in wanted:
                ip("route", "del", f"{address}/32", "dev", self.host_if, "proto", ADDRESS_ROUTES,
                   check=False)

    def cut(self, mode: str = "silent") -> None:
        """Make the location unreachable. `silent`: packets vanish (clients time out);
        `down`: the link goes down (clients get an immediate error)."""
        if mode == "silent":
            ip("-n", self.ns, "route", "replace", "blackhole", f"{self.gateway}/32")
            ip("-n", self.ns, "route", "replace", "blackhole", "default")
            for peer in self._wan_peers():
                _wan_route(self.ns, self.index, peer, blocked=True)
        elif mode == "down":
            ip("-n", self.ns, "link", "set", self.ns_if, "down")
            for peer in self._wan_peers():
                ip("-n", self.ns, "link", "set", wan_if(self.index, peer), "down")
        else:
            raise InvalidInput(f"unknown cut mode {mode!r}; use silent or down", field="mode")

    def restore(self) -> None:
        ip("-n", self.ns, "route", "del", "blackhole", f"{self.gateway}/32", check=False)
        ip("-n", self.ns, "route", "del", "blackhole", "default", check=False)
        ip("-n", self.ns, "link", "set", self.ns_if, "up", check=False)
        ip("-n", self.ns, "route", "replace", "default", "via", self.gateway, check=False)
        for peer in self._wan_peers():
            ip("-n", self.ns, "link", "set", wan_if(self.index, peer), "up", check=False)
            _wan_route(self.ns, self.index, peer, blocked=False)

    def is_cut(self) -> bool:
        routes = ip("-n", self.ns, "route", "show", "type", "blackhole", check=False).stdout
        link = ip("-n", self.ns, "link", "show", self.ns_if, check=False).stdout
        return self.gateway in routes or "state DOWN" in link


def wan_if(index: int, peer: int) -> str:
    return f"ow{index}-{peer}"


def location_namespaces() -> dict[int, str]:
    """index -> namespace of every location namespace here (found by its `op-c<index>` link)."""
    found: dict[int, str] = {}
    for line in ip("netns", "list", check=False).stdout.splitlines():
        ns = line.split()[0] if line.strip() else ""
        if not ns.startswith("op-"):
            continue
        m = re.search(r"\bop-c(\d+)@", ip("-n", ns, "-o", "link", "show", check=False).stdout)
        if m:
            found[int(m.group(1))] = ns
    return found


def _cut_in(ns: str) -> bool:
    return "blackhole default" in ip("-n", ns, "route", "show", "type", "blackhole",
                                     check=False).stdout


def _wan_route(ns: str, index: int, peer: int, blocked: bool) -> None:
    """The route from `ns` (location `index`) to `peer`'s address: over their link, or into a
    blackhole while `ns` is cut silently (the peer's packets arrive, no answer leaves)."""
    dest = f"{PREFIX}.{peer}.2/32"
    if blocked:
        ip("-n", ns, "route", "replace", "blackhole", dest, check=False)
    else:
        ip("-n", ns, "route", "replace", dest, "dev", wan_if(index, peer), "src",
           f"{PREFIX}.{index}.2", check=False)


class CutByNamespace:
    """The drill verbs of a provider that stands on a DataCenterNet (`self.net`)."""

    net: DataCenterNet

    def cut(self, mode: str = "silent") -> None:
        self.net.cut(mode)

    def restore(self) -> None:
        self.net.restore()

    def is_cut(self) -> bool:
        return self.net.is_cut()

    def front_door(self) -> tuple[str, list[str]] | None:
        return self.net.inside, self.net.exec_argv([])

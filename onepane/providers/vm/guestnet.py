"""Guest addresses that stay with a VM wherever it moves.

Every `vm` location has a bridge with the same gateway address *and the same MAC*, so a guest
moved to another data center keeps its address and its ARP cache. The host reaches each guest
through a /32 route via the location that runs it; a live move switches that one route.

Guests talk to each other through their location, never directly: each guest's bridge port is
isolated and the location answers every ARP question on the bridge with the gateway's MAC
(proxy ARP, private-VLAN style), and it holds a /32 route for each guest it runs. So a guest's
ARP cache names one MAC for everything, which stays right when it or its peer moves to another
location, traffic between two guests of one location passes the location's forward chain (where
security groups are enforced), and a guest reaches a peer in another location by the same
routes as the outside does. The
address book is one file for the whole host, locked while it changes, because the guest network
and the host routes are the host's: two onepane state directories on one machine (a test run
beside a running onepane) must not hand out the same address either.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

from ... import atomic
from ...errors import Conflict
from ..dcnet import HOST_IF_PREFIX, DataCenterNet, ip
from ..nftrules import replace_table

GUEST_NET = ipaddress.ip_network("10.200.255.0/24")  # inside the host's 10.200/16 blackhole
GATEWAY = "10.200.255.1"
GATEWAY_MAC = "02:00:0a:c8:ff:01"
BRIDGE = "opbr0"
# onepane's health checks leave from this address (on the host's loopback): a guest's security
# groups let it through, and no other traffic of the host, so a tier closed to the outside is
# still checked (guestpolicy)
CHECKER = "10.200.254.1"
FIRST_HOST = 10


def mac_for(address: str) -> str:
    """A stable MAC from the address: the guest's identity on every bridge it visits."""
    a, b, c, d = (int(x) for x in address.split("."))
    return f"52:54:{a:02x}:{b:02x}:{c:02x}:{d:02x}"


def setup_bridge(net: DataCenterNet, routed: bool = False) -> None:
    """The location's guest bridge with the shared gateway; idempotent. `routed`: guests
    reach each other only through the location (see the module's doc): the gateway is a /32,
    each running guest gets its own /32 route (route_to), the rest goes to the host."""
    if ip("-n", net.ns, "link", "show", BRIDGE, check=False).returncode != 0:
        ip("-n", net.ns, "link", "add", BRIDGE, "type", "bridge")
        ip("-n", net.ns, "link", "set", BRIDGE, "address", GATEWAY_MAC)
    prefix = 32 if routed else GUEST_NET.prefixlen
    ip("-n", net.ns, "addr", "replace", f"{GATEWAY}/{prefix}", "dev", BRIDGE)
    if routed:
        ip("-n", net.ns, "addr", "del", f"{GATEWAY}/{GUEST_NET.prefixlen}", "dev", BRIDGE,
           check=False)
    ip("-n", net.ns, "link", "set", BRIDGE, "up")
    # The namespace routes between its bridge and its link to the host.
    settings = ["net.ipv4.ip_forward=1"]
    if routed:  # answer every guest's ARP, and never tell a guest to go around the location
        settings += [f"net.ipv4.conf.{BRIDGE}.proxy_arp=1",
                     f"net.ipv4.conf.{BRIDGE}.proxy_arp_pvlan=1",
                     "net.ipv4.conf.all.send_redirects=0",
                     f"net.ipv4.conf.{BRIDGE}.send_redirects=0"]
    subprocess.run(net.exec_argv(["sysctl", "-qw", *settings]), check=True,
                   capture_output=True)
    if routed:
        ip("addr", "replace", f"{CHECKER}/32", "dev", "lo")
        between_locations(net)


def between_locations(net: DataCenterNet) -> None:
    """The host forwards what a location sends to a guest of another location (by the
    guest's /32 route): forwarding is on only for what arrives from the location's link, and
    a table on the host drops anything forwarded from a location anywhere but to another
    location's link, so no guest reaches the host's own networks through it."""
    subprocess.run(["sysctl", "-qw", f"net.ipv4.conf.{net.host_if}.forwarding=1"], check=True,
                   capture_output=True)
    replace_table(["nft"], "inet", "onepane_guests", [
        " chain forward {", "  type filter hook forward priority 0; policy accept;",
        f'  iifname "{HOST_IF_PREFIX}*" oifname != "{HOST_IF_PREFIX}*" drop', " }"], "the host")


def last_location_gone() -> None:
    """The host's forwarding table goes once no location's link is left (it guards what the
    locations' links forward; another onepane's location keeps it)."""
    links = ip("-o", "link", "show", check=False).stdout
    if any(line.split(":")[1].strip().split("@")[0].startswith(HOST_IF_PREFIX)
           for line in links.splitlines() if line.count(":") >= 2):
        return
    subprocess.run(["nft", "delete", "table", "inet", "onepane_guests"], capture_output=True,
                   check=False)


def route_to(address: str, net: DataCenterNet, away_from: DataCenterNet | None = None) -> None:
    """Send the host's traffic for a guest to the location that runs it, and that location's
    own traffic for it (its other guests') onto its bridge; `away_from`: the location it left,
    which now sends it to the host like any other guest's elsewhere."""
    ip("-n", net.ns, "route", "replace", f"{address}/32", "dev", BRIDGE, check=False)
    ip("route", "replace", f"{address}/32", "via", net.inside, "dev", net.host_if)
    if away_from is not None and away_from.ns != net.ns:
        ip("-n", away_from.ns, "route", "del", f"{address}/32", "dev", BRIDGE, check=False)


def unroute(address: str, net: DataCenterNet | None = None) -> None:
    ip("route", "del", f"{address}/32", check=False)
    if net is not None:
        ip("-n", net.ns, "route", "del", f"{address}/32", "dev", BRIDGE, check=False)


BOOK = Path(os.environ.get("ONEPANE_VM_ADDRESS_BOOK", "/var/lib/onepane/vm-addresses.json"))


class AddressBook:
    """instance -> address, for every onepane on this host. Keys are `<state dir>|<instance>`;
    entries of a state directory that no longer exists are dropped on the next allocation."""

    def __init__(self, state_dir: Path, path: Path = BOOK) -> None:
        self.path = path
        self.owner = str(state_dir.resolve())

    def _key(self, instance_id: str) -> str:
        return f"{self.owner}|{instance_id}"

    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict[str, str]]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            book: dict[str, str] = atomic.read_table(self.path, "guest address book")
            before = dict(book)
            yield book
            if book != before:
                atomic.write_text(self.path, json.dumps(book, indent=1), mode=0o644)

    def allocate(self, instance_id: str) -> str:
        with self._locked() as book:
            if self._key(instance_id) in book:
                return book[self._key(instance_id)]
            for key in [k for k in book if not Path(k.split("|", 1)[0]).exists()]:
                del book[key]  # a state directory that is gone (a finished test run)
            used = set(book.values())
            for host in list(GUEST_NET.hosts())[FIRST_HOST - 1:]:
                if str(host) not in used:
                    book[self._key(instance_id)] = str(host)
                    return str(host)
        raise Conflict(f"no guest address left in {GUEST_NET}", field="location")

    def get(self, instance_id: str) -> str | None:
        with self._locked() as book:
            return book.get(self._key(instance_id))

    def release(self, instance_id: str) -> None:
        with self._locked() as book:
            book.pop(self._key(instance_id), None)

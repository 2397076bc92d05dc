"""Guest addresses that stay with a VM wherever it moves.

Every `vm` location has a bridge with the same gateway address *and the same MAC*, so a guest
moved to another data center keeps its address and its ARP cache. The host reaches each guest
through a /32 route via the location that runs it; a live move switches that one route. The
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
from ..dcnet import DataCenterNet, ip

GUEST_NET = ipaddress.ip_network("10.200.255.0/24")  # inside the host's 10.200/16 blackhole
GATEWAY = "10.200.255.1"
GATEWAY_MAC = "02:00:0a:c8:ff:01"
BRIDGE = "opbr0"
FIRST_HOST = 10


def mac_for(address: str) -> str:
    """A stable MAC from the address: the guest's identity on every bridge it visits."""
    a, b, c, d = (int(x) for x in address.split("."))
    return f"52:54:{a:02x}:{b:02x}:{c:02x}:{d:02x}"


def setup_bridge(net: DataCenterNet) -> None:
    """The location's guest bridge with the shared gateway; idempotent."""
    if ip("-n", net.ns, "link", "show", BRIDGE, check=False).returncode != 0:
        ip("-n", net.ns, "link", "add", BRIDGE, "type", "bridge")
        ip("-n", net.ns, "link", "set", BRIDGE, "address", GATEWAY_MAC)
        ip("-n", net.ns, "addr", "add", f"{GATEWAY}/{GUEST_NET.prefixlen}", "dev", BRIDGE)
    ip("-n", net.ns, "link", "set", BRIDGE, "up")
    # The namespace routes between its bridge and its link to the host.
    subprocess.run(net.exec_argv(["sysctl", "-qw", "net.ipv4.ip_forward=1"]), check=True,
                   capture_output=True)


def route_to(address: str, net: DataCenterNet) -> None:
    """Send the host's traffic for a guest to the location that runs it."""
    ip("route", "replace", f"{address}/32", "via", net.inside, "dev", net.host_if)


def unroute(address: str) -> None:
    ip("route", "del", f"{address}/32", check=False)


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

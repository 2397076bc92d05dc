"""Hypervisor hosts for tests, benches and demos: machines onepane reaches only over IP.

Each host is a network namespace with its own mount namespace, its own libvirtd listening on
TCP at the host's address (10.200.<index>.2), its own /etc/libvirt, /var/lib/libvirt (its disks)
and logs — what a separate machine looks like to onepane, which talks to it only through
`qemu+tcp://10.200.<index>.2/system`. Every host has the guest bridge with the shared gateway
(so a guest keeps its address on any host), and the hosts reach each other over direct links
(dcnet's links between location namespaces), which carry live migrations and their disks.

Only QEMU's capability cache is shared between hosts (it is the same everywhere and costs
seconds to build). auth_tcp is "none": the lab's daemons are reachable only from this machine;
docs/vm.md says what a real host needs.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..dcnet import CATCH_ALL, DataCenterNet, ensure_catch_all, ip
from . import guestnet
from .hypervisor import Hypervisor


@dataclass
class LabHost:
    name: str
    net: DataCenterNet
    hypervisor: Hypervisor

    @property
    def address(self) -> str:
        return self.net.inside

    @property
    def uri(self) -> str:
        return f"qemu+tcp://{self.address}/system"

    def spec(self) -> dict[str, str]:
        return {"name": self.name, "uri": self.uri}

    def kill_daemon(self) -> None:
        """libvirtd dies (its VMs keep running, as on a real host)."""
        self.hypervisor.stop()


def start_host(name: str, index: int, root: Path) -> LabHost:
    net = DataCenterNet(f"host-{name}", index)
    net.setup()
    guestnet.setup_bridge(net)
    hv = Hypervisor(f"host-{name}", net.ns, root / name, listen=net.inside)
    hv.start()
    return LabHost(name, net, hv)


def stop_host(host: LabHost) -> None:
    """Destroy its domains (through its own socket), stop its daemons, remove its namespace."""
    with contextlib.suppress(Exception):
        from .provider import _libvirt
        conn = _libvirt().open(host.hypervisor.uri)
        for dom in conn.listAllDomains():
            with contextlib.suppress(Exception):
                dom.destroy()
            with contextlib.suppress(Exception):
                dom.undefine()
        conn.close()
    host.hypervisor.stop()
    host.net.teardown()


@contextlib.contextmanager
def host_lab(hosts: dict[str, int]) -> Iterator[list[LabHost]]:
    """name -> index (10.200.<index>.0/24). Needs root, libvirt and QEMU."""
    had = CATCH_ALL in ip("route", "show", "type", "blackhole", check=False).stdout
    ensure_catch_all()
    root = Path(tempfile.mkdtemp(prefix="onepane-hosts-"))
    started: list[LabHost] = []
    try:
        for name, index in hosts.items():
            started.append(start_host(name, index, root))
        yield started
    finally:
        for host in started:
            stop_host(host)
        shutil.rmtree(root, ignore_errors=True)
        if not had:
            ip("route", "del", "blackhole", CATCH_ALL, check=False)

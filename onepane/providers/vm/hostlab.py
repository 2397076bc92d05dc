"""Hypervisor hosts for tests, benches and demos: machines onepane reaches only over IP.

Each host is a network namespace with its own mount namespace, its own libvirtd listening on
TCP at the host's address (10.200.<index>.2), its own /etc/libvirt, /var/lib/libvirt (its disks)
and logs — what a separate machine looks like to onepane, which talks to it only through
`qemu+tcp://10.200.<index>.2/system`. Every host has the guest bridge with the shared gateway
(so a guest keeps its address on any host), and the hosts reach each other over direct links
(dcnet's links between location namespaces), which carry live migrations and their disks.

Only QEMU's capability cache is shared between hosts (it is the same everywhere and costs
seconds to build). By default the daemons speak TLS (`qemu+tls://`): the lab makes a CA, a
server certificate per host (its address as subject alternative name), a client certificate per
host (what it presents when it migrates to another host peer-to-peer) and onepane's client
certificate, returned as the location's credentials (`credentials()`). `tls=False` gives plain
TCP with no authentication, reachable only from this machine. docs/vm.md says what a real host
needs.

The hosts' guest bridges share one Ethernet segment (`GuestSegment`), as hosts in a data center
share the guest VLAN: guests on two hosts reach each other directly, also while one of them is
moved (the destination's QEMU announces the guest on the segment when it takes over). Each host
stays its own guests' gateway: frames from the shared gateway MAC never cross the segment.
"""

from __future__ import annotations

import contextlib
import ipaddress
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

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
        scheme = "qemu+tls" if self.hypervisor.tls_dir else "qemu+tcp"
        return f"{scheme}://{self.address}/system"

    def spec(self) -> dict[str, str]:
        return {"name": self.name, "uri": self.uri}

    def cut(self, mode: str = "silent") -> None:
        """The host off every network, as a dead machine is: its link to onepane and the
        other hosts (dcnet's cut) and its port on the guest segment — a guest left running
        there must not answer for the copy restarted elsewhere."""
        self.net.cut(mode)
        ip("-n", self.net.ns, "link", "set", GuestSegment.port(self), "down", check=False)

    def restore(self) -> None:
        self.net.restore()
        ip("-n", self.net.ns, "link", "set", GuestSegment.port(self), "up", check=False)

    def kill_daemon(self) -> None:
        """libvirtd dies (its VMs keep running, as on a real host)."""
        self.hypervisor.stop()


class LabCA:
    """A throwaway certificate authority, and the certificates the lab hands out."""

    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "onepane-lab-ca")])
        self.cert = (self._builder(name, name, self.key.public_key())
                     .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
                     .sign(self.key, hashes.SHA256()))

    @staticmethod
    def _builder(subject: x509.Name, issuer: x509.Name, public: Any) -> x509.CertificateBuilder:
        now = datetime.now(UTC)
        return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
                .public_key(public).serial_number(x509.random_serial_number())
                .not_valid_before(now - timedelta(minutes=5))
                .not_valid_after(now + timedelta(days=2)))

    def issue(self, common_name: str, ip: str | None = None) -> tuple[str, str]:
        """(certificate PEM, key PEM): a server's with `ip` as its address, else a client's."""
        key = ec.generate_private_key(ec.SECP256R1())
        b = self._builder(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]),
                          self.cert.subject, key.public_key())
        usage = ExtendedKeyUsageOID.SERVER_AUTH if ip else ExtendedKeyUsageOID.CLIENT_AUTH
        b = b.add_extension(x509.ExtendedKeyUsage([usage]), False)
        if ip:
            b = b.add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address(ip))]), False)
        cert = b.sign(self.key, hashes.SHA256())
        return (cert.public_bytes(serialization.Encoding.PEM).decode(),
                key.private_bytes(serialization.Encoding.PEM,
                                  serialization.PrivateFormat.TraditionalOpenSSL,
                                  serialization.NoEncryption()).decode())

    @property
    def pem(self) -> str:
        return self.cert.public_bytes(serialization.Encoding.PEM).decode()

    def credentials(self) -> dict[str, str]:
        """onepane's client certificate, as a location's credentials hold it."""
        cert, key = self.issue("onepane")
        return {"tls_ca": self.pem, "tls_cert": cert, "tls_key": key}


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


def start_host(name: str, index: int, root: Path, ca: LabCA | None = None) -> LabHost:
    net = DataCenterNet(f"host-{name}", index, owner=str(root))
    net.setup()
    guestnet.setup_bridge(net)
    tls_dir = None
    if ca is not None:
        tls_dir = root / name / "tls"
        cert, key = ca.issue(net.inside, ip=net.inside)
        _write(tls_dir / "servercert.pem", cert)
        _write(tls_dir / "serverkey.pem", key, 0o600)
        _write(tls_dir / "cacert.pem", ca.pem)
        client, client_key = ca.issue(f"onepane-host-{name}")  # for peer-to-peer moves
        _write(tls_dir / "pki" / "CA" / "cacert.pem", ca.pem)
        _write(tls_dir / "pki" / "libvirt" / "clientcert.pem", client)
        _write(tls_dir / "pki" / "libvirt" / "private" / "clientkey.pem", client_key, 0o600)
    hv = Hypervisor(f"host-{name}", net.ns, root / name, listen=net.inside, tls_dir=tls_dir)
    hv.start()
    return LabHost(name, net, hv)


def stop_host(host: LabHost) -> None:
    """Destroy its domains (through its own socket), stop its daemons, remove its namespace."""
    with contextlib.suppress(Exception):
        from .provider import _libvirt
        conn = _libvirt().open(host.hypervisor.uri)  # its UNIX socket: the lab's own way in
        for dom in conn.listAllDomains():
            with contextlib.suppress(Exception):
                dom.destroy()
            with contextlib.suppress(Exception):
                dom.undefine()
        conn.close()
    host.hypervisor.stop()
    host.net.teardown()


NBD_PORT = 10809
SHARED_POOL = "/var/lib/libvirt/onepane-shared"


@dataclass
class LabStorage:
    """A storage host: its own libvirtd (onepane makes the disks through it) and an NBD server
    (nbdkit's file plugin) exporting every file of the shared pool, both at its address."""

    host: LabHost
    nbd: subprocess.Popen[bytes]

    def options(self) -> dict[str, str]:
        return {"uri": self.host.uri, "nbd": f"{self.host.address}:{NBD_PORT}",
                "pool_path": SHARED_POOL}


def start_storage(name: str, index: int, root: Path, ca: LabCA | None) -> LabStorage:
    if not shutil.which("nbdkit"):
        raise RuntimeError("the lab's storage host needs nbdkit (apt install nbdkit)")
    host = start_host(name, index, root, ca)
    # the pool as the storage host's libvirtd sees it (/var/lib/libvirt is its own, mounted
    # from root/<name>/lib): nbdkit serves the same files, in the host's network namespace
    pool = root / name / "lib" / SHARED_POOL.removeprefix("/var/lib/libvirt/")
    pool.mkdir(parents=True, exist_ok=True)
    log = open(root / name / "nbdkit.log", "ab")  # noqa: SIM115 - lives as long as nbdkit
    nbd = subprocess.Popen(
        ["ip", "netns", "exec", host.net.ns, "nbdkit", "--foreground", "--exit-with-parent",
         "-i", host.address, "-p", str(NBD_PORT), "file", f"dir={pool}"],
        stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
    deadline = time.monotonic() + 15
    while True:
        probe = subprocess.run(["ip", "netns", "exec", host.net.ns, "ss", "-ltnH",
                                f"sport = :{NBD_PORT}"], capture_output=True, text=True)
        if probe.stdout.strip():
            break
        if nbd.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"nbdkit did not start: {(root / name / 'nbdkit.log').read_text()}")
        time.sleep(0.05)
    return LabStorage(host, nbd)


def stop_storage(storage: LabStorage) -> None:
    storage.nbd.terminate()
    with contextlib.suppress(subprocess.TimeoutExpired):
        storage.nbd.wait(5)
    if storage.nbd.poll() is None:
        storage.nbd.kill()
    stop_host(storage.host)


class GuestSegment:
    """The guest VLAN between the lab's hosts: a bridge in a namespace of its own with a port
    per host, patched into that host's guest bridge. A frame from the gateway MAC (a host
    speaking as its guests' gateway) is dropped there, so every host answers only for its own
    guests and no host sees its own MAC arrive from the segment."""

    def __init__(self, hosts: list[LabHost]) -> None:
        self.ns = f"op-gseg{hosts[0].net.index}"
        self.hosts = hosts

    def setup(self) -> None:
        ip("netns", "del", self.ns, check=False)  # left by a run that died
        ip("netns", "add", self.ns)
        ip("-n", self.ns, "link", "add", "seg0", "type", "bridge")
        ip("-n", self.ns, "link", "set", "seg0", "up")
        subprocess.run(["ip", "netns", "exec", self.ns, "nft", "-f", "-"], check=True,
                       capture_output=True, text=True, input=(
                           "table bridge onepane_segment {\n chain forward {\n"
                           "  type filter hook forward priority 0; policy accept;\n"
                           f"  ether saddr {guestnet.GATEWAY_MAC} drop\n }}\n}}\n"))
        for host in self.hosts:
            outer, inner = f"opgs{host.net.index}", self.port(host)
            ip("link", "del", outer, check=False)
            ip("link", "add", outer, "type", "veth", "peer", "name", inner)
            ip("link", "set", outer, "netns", self.ns)
            ip("link", "set", inner, "netns", host.net.ns)
            ip("-n", self.ns, "link", "set", outer, "master", "seg0", "up")
            ip("-n", host.net.ns, "link", "set", inner, "master", guestnet.BRIDGE, "up")

    @staticmethod
    def port(host: LabHost) -> str:
        """The host's port on the segment, in its guest bridge."""
        return f"opgh{host.net.index}"

    def teardown(self) -> None:
        ip("netns", "del", self.ns, check=False)  # its ports' peers go with it


@dataclass
class HostLab:
    hosts: list[LabHost]
    ca: LabCA | None
    root: Path
    storage: LabStorage | None = None

    def specs(self) -> list[dict[str, str]]:
        return [h.spec() for h in self.hosts]

    def credentials(self) -> dict[str, str]:
        return self.ca.credentials() if self.ca else {}

    def connect(self, host: LabHost) -> Any:
        """A libvirt connection to the host over the network, as an observer other than
        onepane (a test checking where a guest runs) makes it: TLS with a client certificate
        of its own."""
        from .provider import _libvirt
        if self.ca is None:
            return _libvirt().open(host.uri)
        pki = self.root / "observer-pki"
        if not pki.exists():
            cert, key = self.ca.issue("onepane-observer")
            _write(pki / "cacert.pem", self.ca.pem)
            _write(pki / "clientcert.pem", cert)
            _write(pki / "clientkey.pem", key, 0o600)
        return _libvirt().open(f"{host.uri}?pkipath={pki}")


@contextlib.contextmanager
def host_lab(hosts: dict[str, int], tls: bool = True,
             storage: tuple[str, int] | None = None) -> Iterator[HostLab]:
    """name -> index (10.200.<index>.0/24); `storage`: (name, index) of a storage host too.
    Needs root, libvirt and QEMU (and nbdkit for the storage host)."""
    had = CATCH_ALL in ip("route", "show", "type", "blackhole", check=False).stdout
    ensure_catch_all()
    root = Path(tempfile.mkdtemp(prefix="onepane-hosts-"))
    ca = LabCA() if tls else None
    started: list[LabHost] = []
    shared: LabStorage | None = None
    segment: GuestSegment | None = None
    try:
        for name, index in hosts.items():
            started.append(start_host(name, index, root, ca))
        segment = GuestSegment(started)
        segment.setup()
        if storage is not None:
            shared = start_storage(storage[0], storage[1], root, ca)
        yield HostLab(started, ca, root, shared)
    finally:
        if shared is not None:
            stop_storage(shared)
        if segment is not None:
            segment.teardown()
        for host in started:
            stop_host(host)
        shutil.rmtree(root, ignore_errors=True)
        if not had:
            ip("route", "del", "blackhole", CATCH_ALL, check=False)

"""A throwaway DNS site for tests and benches: PowerDNS, BIND and unbound in a namespace.

One network namespace (`opdns<index>`) joined to the host by one veth (10.200.<index>.0/24,
inside the catch-all blackhole, so nothing leaves the machine). Each daemon has its own address
there, as separate servers would: PowerDNS (authoritative, HTTP API on :8081) at .2, BIND
(authoritative, RFC 2136 with a TSIG key) at .3, unbound (the caching resolver clients ask) at
.4, which sends each lab zone to its authority. Everything lives in a temporary directory and
goes with the context.
"""

from __future__ import annotations

import base64
import contextlib
import os
import secrets
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .providers.dcnet import PREFIX, ensure_catch_all, ip

API_KEY_BYTES = 24


@dataclass
class DnsLab:
    index: int
    workdir: Path
    api_key: str = field(default_factory=lambda: secrets.token_urlsafe(API_KEY_BYTES))
    tsig_secret: str = field(default_factory=lambda: base64.b64encode(
        secrets.token_bytes(32)).decode())
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def ns(self) -> str:
        return f"opdns{self.index}"

    def addr(self, last: int) -> str:
        return f"{PREFIX}.{self.index}.{last}"

    @property
    def pdns(self) -> str:
        return self.addr(2)

    @property
    def bind(self) -> str:
        return self.addr(3)

    @property
    def resolver(self) -> str:
        return self.addr(4)

    @property
    def pdns_api(self) -> str:
        return f"http://{self.pdns}:8081"

    def exec_argv(self, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.ns, *argv]

    def spawn(self, name: str, argv: list[str]) -> None:
        log = open(self.workdir / f"{name}.log", "ab")  # noqa: SIM115 - the child keeps it
        self.procs.append(subprocess.Popen(self.exec_argv(argv), stdout=log,
                                           stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                           start_new_session=True))
        log.close()

    def wait_tcp(self, host: str, port: int, what: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                socket.create_connection((host, port), timeout=0.2).close()
                return
            if any(p.poll() is not None for p in self.procs):
                break
            time.sleep(0.02)
        logs = "; ".join(f"{p.name}: {p.read_text()[-300:]}" for p in self.workdir.glob("*.log"))
        raise RuntimeError(f"{what} did not start: {logs}")


def _net_up(lab: DnsLab) -> None:
    ensure_catch_all()
    host_if, ns_if = f"opdnsh{lab.index}", f"opdnsn{lab.index}"
    ip("netns", "add", lab.ns)
    ip("link", "add", host_if, "type", "veth", "peer", "name", ns_if)
    ip("link", "set", ns_if, "netns", lab.ns)
    ip("addr", "add", f"{lab.addr(1)}/24", "dev", host_if)
    for last in (2, 3, 4):
        ip("-n", lab.ns, "addr", "add", f"{lab.addr(last)}/24", "dev", ns_if)
    ip("link", "set", host_if, "up")
    ip("-n", lab.ns, "link", "set", ns_if, "up")
    ip("-n", lab.ns, "link", "set", "lo", "up")
    ip("-n", lab.ns, "route", "add", "blackhole", "default")  # only the lab's own link


def _pdns(lab: DnsLab) -> None:
    d = lab.workdir / "pdns"
    (d / "run").mkdir(parents=True)
    db = d / "pdns.sqlite3"
    schema = Path("/usr/share/doc/pdns-backend-sqlite3/schema.sqlite3.sql").read_text()
    subprocess.run(["sqlite3", str(db)], input=schema, text=True, check=True)
    (d / "pdns.conf").write_text("\n".join([
        "launch=gsqlite3", f"gsqlite3-database={db}", f"local-address={lab.pdns}",
        "api=yes", f"api-key={lab.api_key}", "webserver=yes", f"webserver-address={lab.pdns}",
        "webserver-port=8081", f"webserver-allow-from={PREFIX}.0.0/16,127.0.0.1",
        f"socket-dir={d / 'run'}", "daemon=no", "guardian=no", "setuid=", "setgid=",
        "default-soa-content=ns1.@ hostmaster.@ 0 10800 3600 604800 5", ""]))
    lab.spawn("pdns", ["/usr/sbin/pdns_server", f"--config-dir={d}"])


def _bind(lab: DnsLab, zones: list[str]) -> None:
    d = lab.workdir / "bind"
    d.mkdir()
    (d / "key.conf").write_text(
        f'key "onepane-lab" {{ algorithm hmac-sha256; secret "{lab.tsig_secret}"; }};\n')
    conf = [f'include "{d / "key.conf"}";', "options {", f'  directory "{d}";',
            f'  pid-file "{d / "named.pid"}";', f'  session-keyfile "{d / "session.key"}";',
            f"  listen-on port 53 {{ {lab.bind}; }};", "  listen-on-v6 { none; };",
            "  recursion no;", "  dnssec-validation no;", "};", "controls { };"]
    for zone in zones:
        z = zone.rstrip(".")
        (d / f"{z}.zone").write_text(
            f"$TTL 5\n@ IN SOA ns1.{z}. hostmaster.{z}. 1 3600 600 86400 5\n"
            f"@ IN NS ns1.{z}.\nns1 IN A {lab.bind}\n")
        conf.append(f'zone "{z}" {{ type primary; file "{d / f"{z}.zone"}"; '
                    'allow-update { key "onepane-lab"; }; };')
    (d / "named.conf").write_text("\n".join(conf) + "\n")
    lab.spawn("named", ["/usr/sbin/named", "-g", "-c", str(d / "named.conf")])


def _unbound(lab: DnsLab, pdns_zones: list[str], bind_zones: list[str]) -> None:
    d = lab.workdir / "unbound"
    d.mkdir()
    lines = ["server:", f"  interface: {lab.resolver}", f"  access-control: {PREFIX}.0.0/16 allow",
             "  access-control: 127.0.0.0/8 allow", '  username: ""', '  chroot: ""',
             f'  directory: "{d}"', f'  pidfile: "{d / "unbound.pid"}"', "  use-syslog: no",
             "  do-ip6: no", "  module-config: \"iterator\"",
             # RFC 6761's test. (and friends) are answered NXDOMAIN by unbound itself unless
             # told they exist.
             '  local-zone: "test." nodefault', '  local-zone: "local." nodefault']
    for zone in pdns_zones + bind_zones:
        lines.append(f'  domain-insecure: "{zone}"')
    lines += ["remote-control:", "  control-enable: no"]
    for zone in pdns_zones:
        lines += ["stub-zone:", f'  name: "{zone}"', f"  stub-addr: {lab.pdns}"]
    for zone in bind_zones:
        lines += ["stub-zone:", f'  name: "{zone}"', f"  stub-addr: {lab.bind}"]
    (d / "unbound.conf").write_text("\n".join(lines) + "\n")
    lab.spawn("unbound", ["/usr/sbin/unbound", "-d", "-c", str(d / "unbound.conf")])


def create_pdns_zone(lab: DnsLab, zone: str) -> None:
    import httpx
    r = httpx.post(f"{lab.pdns_api}/api/v1/servers/localhost/zones",
                   headers={"X-API-Key": lab.api_key}, timeout=5,
                   json={"name": zone, "kind": "Native", "nameservers": [f"ns1.{zone}"]})
    r.raise_for_status()


@contextlib.contextmanager
def dns_lab(index: int = 250, pdns_zones: tuple[str, ...] = ("pdns.onepane.test.",),
            bind_zones: tuple[str, ...] = ("bind.onepane.test.",)) -> Iterator[DnsLab]:
    """Needs root and Debian's pdns-server, pdns-backend-sqlite3, bind9, unbound, sqlite3."""
    with tempfile.TemporaryDirectory(prefix="onepane-dnslab-") as tmp:
        lab = DnsLab(index, Path(tmp))
        os.chmod(tmp, 0o755)
        try:
            _net_up(lab)
            _pdns(lab)
            _bind(lab, list(bind_zones))
            _unbound(lab, list(pdns_zones), list(bind_zones))
            lab.wait_tcp(lab.pdns, 8081, "PowerDNS")
            lab.wait_tcp(lab.bind, 53, "BIND")
            lab.wait_tcp(lab.resolver, 53, "unbound")
            for zone in pdns_zones:
                create_pdns_zone(lab, zone)
            yield lab
        finally:
            for p in lab.procs:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.wait(5)
            ip("netns", "del", lab.ns, check=False)
            ip("link", "del", f"opdnsh{lab.index}", check=False)

"""A private data center of several hypervisor hosts that onepane reaches over the network.

A `vm` location whose options name `hosts` is this provider: each host is a libvirt daemon at a
connection URI (`qemu+tcp://`, `qemu+tls://`, `qemu+ssh://`), and onepane reads and writes it only
through that connection — no shared file system, no path of onepane's machine in a domain.

- **Disks live on the hosts**, in a libvirt storage pool (`onepane`, a directory on the host).
  A replicated image is uploaded to every host (libvirt's volume upload; a marker volume says
  the upload finished); a host that missed it gets it, relayed through onepane, when a VM there
  first needs it. Nothing of a host lives on onepane's machine, so any onepane node drives the
  same hosts. A VM's disk is a qcow2 overlay that the host's libvirt makes on the image.
- **Placement** (placement.py): a create goes to the host with room that holds the fewest of its
  deployment's replicas, then the most free memory.
- **Moves between hosts** are libvirt peer-to-peer live migrations over TCP, disks copied with
  `VIR_MIGRATE_NON_SHARED_DISK` (NBD): host maintenance empties a host that way, and `move
  --live` between two such locations is the same move between a host of each.
- **Addresses** stay the guest's: onepane's machine routes each guest's /32 via the host that
  runs it (`route_guests`, on by default) and switches that route the moment the destination
  runs the guest.
- **A move never leaves two running copies and never destroys the only one**: the destination
  is cleaned up after a failure only while the source still runs the guest; a paused leftover
  is removed only once the running copy is confirmed (`reconcile_copies`, also run at start:
  a move onepane died in the middle of is settled where the guest runs).

The domain is the record, as in the single-host provider: onepane's metadata in its XML.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field

from ...errors import (
    Conflict,
    InvalidInput,
    NotFound,
    OnepaneError,
    PermanentProviderError,
    TransientProviderError,
)
from ..base import (
    Capabilities,
    InstanceSpec,
    ObservedImage,
    ObservedInstance,
    ObservedNetwork,
    ObservedSize,
    Provider,
)
from ..dcnet import ip
from . import guestnet
from .domain import (
    Disk,
    DomainSpec,
    NbdSource,
    Nic,
    disk_paths,
    domain_xml,
    nbd_exports,
    read_metadata,
)
from .hostfailure import HostFailures
from .hostpools import STORAGE, HostPools
from .migration import Phase, Switch, Watch, report_end
from .placement import HostLoad, NoRoom, choose
from .provider import (
    DISK_TARGETS,
    SIZES,
    _extra_mac,
    _libvirt,
    find_domain,
    libvirt_errors,
    observe_domain,
    parse_options,
    resume_domain,
    stop_domain,
    suspend_domain,
    translate,
)

MAINTENANCE = ".onepane-maintenance"  # a volume in a host's pool: the host is in maintenance
HOST_TAG = "onepane:host"  # shown on every instance: the host that runs it
KEEPALIVE_S, KEEPALIVE_COUNT = 2, 3  # a host that stops answering fails its calls in ~8 s
FW_FILES = {"ovf-env.xml": "opt/onepane/ovf-env", "authorized_keys": "opt/onepane/ssh-keys"}
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


class HostSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=NAME_RE.pattern)
    uri: str = Field(pattern=r"^qemu\+(tcp|tls|ssh)://[^/\s]+/system(\?\S*)?$",
                     description="libvirt connection URI, e.g. qemu+tls://10.0.0.11/system")
    route_via: str | None = Field(default=None, description="where onepane's machine sends "
                                  "this host's guests' traffic; default: the URI's host")


class SharedStorage(BaseModel):
    """Network storage every host reaches: a storage host whose libvirt holds the disks in a
    directory pool and whose NBD server exports that directory (one export per file, e.g.
    `nbdkit file dir=POOL`). A VM whose disks live there restarts on another host when its
    host dies, and moves live without copying a disk."""

    model_config = ConfigDict(extra="forbid")
    uri: str = Field(pattern=r"^qemu\+(tcp|tls|ssh)://[^/\s]+/system(\?\S*)?$",
                     description="libvirt of the storage host: onepane makes and removes the "
                     "disks through it")
    nbd: str = Field(pattern=r"^[\w.:-]+:\d{1,5}$",
                     description="address:port of the NBD server exporting the pool")
    pool_path: str = Field(default="/var/lib/libvirt/onepane-shared", pattern=r"^/[\w./-]+$")

    @property
    def nbd_host(self) -> str:
        return self.nbd.rsplit(":", 1)[0]

    @property
    def nbd_port(self) -> int:
        return int(self.nbd.rsplit(":", 1)[1])


class HostsOptions(BaseModel):
    """A multi-host vm location's options; a misspelt one is refused with its name."""

    model_config = ConfigDict(extra="forbid")
    hosts: list[HostSpec] = Field(min_length=1, max_length=256)
    accel: Literal["qemu", "kvm"] = "qemu"
    pool_path: str = Field(default="/var/lib/libvirt/onepane", pattern=r"^/[\w./-]+$",
                           description="the directory on every host that holds onepane's disks")
    stop_timeout: float = Field(default=30.0, gt=0, le=600)
    migration_bandwidth: int = Field(default=64, ge=1, le=100_000, description="MiB/s")
    migration_downtime_ms: int = Field(default=100, ge=1, le=60_000)
    max_parallel_moves: int = Field(default=2, ge=1, le=16,
                                    description="live moves at once when a host is emptied")
    route_guests: bool = Field(default=True, description="route each guest's /32 from "
                               "onepane's machine via its host (off where the network does it)")
    storage: SharedStorage | None = Field(default=None, description="network storage: VMs' "
                                          "disks there survive their host")
    host_dead_after: float = Field(default=10.0, ge=2, le=600, description="seconds a host "
                                   "and its guests stay silent before it is declared dead")


def hosts_options(location: str, options: dict[str, Any]) -> HostsOptions:
    opts = parse_options(HostsOptions, location, options)
    names = [h.name for h in opts.hosts]
    if len(set(names)) != len(names):
        raise InvalidInput(f"location {location}: options.hosts: names must differ", field="options.hosts")
    return opts


_events_started = threading.Lock()
_events_running = False


def _event_loop() -> None:
    """libvirt's keepalive needs an event loop in the client; one thread for the process."""
    global _events_running
    with _events_started:
        if _events_running:
            return
        lv = _libvirt()
        lv.virEventRegisterDefaultImpl()

        def run() -> None:
            while True:
                lv.virEventRunDefaultImpl()
        threading.Thread(target=run, name="libvirt-events", daemon=True).start()
        _events_running = True


class HostsProvider(Provider):
    capabilities = Capabilities.all_but(
        resize="changing a VM's vCPUs and memory is not built yet: make a new instance",
        firewall="security groups are not enforced at VM locations yet (netns locations do)",
        attach_network="a VM's interface is chosen when it is created (onepane does not "
                       "hot-plug NICs)",
        app_images="a VM data center boots disk images; app images run in process data "
                   "centers",
        volumes="volumes on remote hosts are not built yet (a VM's extra disks are: disks=)",
        snapshots="volumes on remote hosts are not built yet",
        capture_image="reading a disk back from a remote host is not built yet",
        cut="the hosts' network is the operator's: onepane cannot cut it (drills cut a "
            "location onepane runs, or a host's link in the lab)")
    disk_formats = ("qcow2", "raw")

    def __init__(self, location: str, state_dir: Path, options: dict[str, Any] | None = None,
                 credentials: dict[str, str] | None = None) -> None:
        super().__init__(location)
        self.options = hosts_options(location, options or {})
        # onepane's TLS client certificate for qemu+tls:// hosts (tls_ca, tls_cert, tls_key,
        # PEM): kept encrypted with the location's credentials, on disk only while a
        # connection opens
        self.tls = {k: v for k, v in (credentials or {}).items()
                    if k in ("tls_ca", "tls_cert", "tls_key")}
        if self.tls and len(self.tls) != 3:
            raise InvalidInput(f"location {location}: TLS credentials need tls_ca, tls_cert and "
                               "tls_key together", field="credentials")
        self.root = state_dir / "locations" / location
        self.addresses = guestnet.AddressBook(state_dir)
        self.pools = HostPools(location, self.root, lambda: self.options, self.conn,
                               self._up_hosts)
        self._conns: dict[str, Any] = {}
        self._down: dict[str, str] = {}  # host -> why it does not answer
        self._damaged: dict[str, str] = {}  # domain -> why its metadata does not read
        self._lock = threading.RLock()
        self._host_locks = {h.name: threading.Lock() for h in self.options.hosts}
        self._host_locks[STORAGE] = threading.Lock()
        self._down_since: dict[str, float] = {}  # host -> when it stopped answering
        self._retry_at: dict[str, float] = {}  # host -> not asked again before (it failed)
        # instance -> (host, running) as last listed: where a dead host's VMs were
        self.last_seen: dict[str, tuple[str, bool]] = {}
        # instance -> (host, vCPUs, MiB) of a move in flight: not defined at its destination
        # yet, so placement would not count it without this
        self._reserved: dict[str, tuple[str, int, int]] = {}

    # ---- hosts -------------------------------------------------------------------------------

    def host(self, name: str) -> HostSpec:
        for h in self.options.hosts:
            if h.name == name:
                return h
        raise NotFound(f"no host {name!r} in location {self.location} (hosts: "
                       f"{', '.join(h.name for h in self.options.hosts)})", field="host")

    def add_host(self, spec: HostSpec) -> None:
        """A new host: it must answer (its pool is made) before it is listed."""
        with self._lock:
            if any(h.name == spec.name for h in self.options.hosts):
                raise Conflict(f"location {self.location} already has a host {spec.name}",
                               field="name")
            self.options.hosts.append(spec)
            self._host_locks[spec.name] = threading.Lock()
            try:
                self.pools.pool(spec.name)
            except OnepaneError:
                self.options.hosts.remove(spec)
                self._down.pop(spec.name, None)
                raise

    def remove_host(self, name: str) -> None:
        """Only an empty host leaves (empty it with maintenance first)."""
        with self._lock:
            spec = self.host(name)
            if len(self.options.hosts) == 1:
                raise Conflict(f"{name} is the last host of {self.location}", field="host")
            mine: list[str] = []
            with contextlib.suppress(OnepaneError):  # a dead host may go: it holds nothing
                mine = [d.name() for d in self._domains(name)
                        if read_metadata(d.XMLDesc(0)) is not None]
            if mine:
                raise Conflict(f"host {name} still holds {', '.join(mine)}; empty it first "
                               f"(onepane hosts maintenance {self.location} {name})",
                               field="host")
            self.options.hosts.remove(spec)
            self._down.pop(name, None)
            with contextlib.suppress(Exception):
                self._conns.pop(name).close()

    def maintenance(self) -> set[str]:
        """Hosts in maintenance. The mark is a volume in the host's own pool (MAINTENANCE), not
        a file of onepane's: every onepane node that drives the host sees the same."""
        lv = _libvirt()
        marked = set()
        for h in self.options.hosts:
            with contextlib.suppress(OnepaneError, lv.libvirtError):
                self.pools.pool(h.name).storageVolLookupByName(MAINTENANCE)
                marked.add(h.name)
        return marked

    def set_maintenance(self, name: str, on: bool) -> None:
        lv = _libvirt()
        self.host(name)
        pool = self.pools.pool(name)
        with self._errors():
            try:
                vol = pool.storageVolLookupByName(MAINTENANCE)
            except lv.libvirtError:
                vol = None
            if on and vol is None:
                self.pools.upload(name, MAINTENANCE, f"maintenance since {time.time():.0f}\n".encode())
            elif not on and vol is not None:
                vol.delete(0)

    def _uri(self, name: str) -> str:
        if name == STORAGE and self.options.storage is not None:
            return self.options.storage.uri
        return self.host(name).uri

    def conn(self, name: str) -> Any:
        """The host's connection, opened (with keepalive) when it is not alive. A host whose
        port does not answer within CONNECT_TIMEOUT_S fails at once: libvirt itself would wait
        for TCP's own time-out (minutes) on a host whose link is cut."""
        uri = self._uri(name)  # a clear NotFound for a name that is not a host here
        lv = _libvirt()
        with self._host_locks[name]:
            c = self._conns.get(name)
            if c is not None:
                with contextlib.suppress(Exception):
                    if c.isAlive():
                        return c
            if time.monotonic() < self._retry_at.get(name, 0.0):  # it failed a moment ago
                raise TransientProviderError(f"host {name} of {self.location} does not answer: "
                                             f"{self._down.get(name, 'not reachable')}")
            _event_loop()
            try:
                _reachable(uri)
                c = self.open_connection(name)
                c.setKeepAlive(KEEPALIVE_S, KEEPALIVE_COUNT)
            except (OSError, lv.libvirtError) as exc:
                self._down[name] = str(exc) or type(exc).__name__
                self._down_since.setdefault(name, time.monotonic())
                if isinstance(exc, TimeoutError):  # silent (a cut link): every call would wait
                    self._retry_at[name] = time.monotonic() + RETRY_DOWN_S
                raise TransientProviderError(f"host {name} of {self.location} does not answer: "
                                             f"{self._down[name]}") from exc
            self._conns[name] = c
            self._down.pop(name, None)
            self._down_since.pop(name, None)
            return c

    def open_connection(self, name: str) -> Any:
        """A new connection to the host. For a qemu+tls:// host with credentials, the client
        certificate and key are written to a private folder for as long as libvirt reads
        them (pkipath) and removed at once."""
        lv = _libvirt()
        uri = self._uri(name)
        if not (self.tls and uri.startswith("qemu+tls://")):
            return lv.open(uri)
        self.root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".pki-", dir=self.root) as pki:
            os.chmod(pki, 0o700)
            for file, key in (("cacert.pem", "tls_ca"), ("clientcert.pem", "tls_cert"),
                              ("clientkey.pem", "tls_key")):
                fd = os.open(Path(pki) / file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w") as f:
                    f.write(self.tls[key])
            return lv.open(f"{uri}{'&' if '?' in uri else '?'}pkipath={pki}")

    def _up_hosts(self) -> list[str]:
        up = []
        for h in self.options.hosts:
            with contextlib.suppress(OnepaneError):
                self.conn(h.name)
                up.append(h.name)
        return up

    def hosts(self) -> list[dict[str, Any]]:
        """Each host as an operator sees it: state, capacity, what is committed, its VMs."""
        maint = self.maintenance()
        fenced = HostFailures(self).fenced()
        out = []
        for h in self.options.hosts:
            row: dict[str, Any] = {"name": h.name, "uri": h.uri,
                                   "state": "fenced" if h.name in fenced else "unreachable",
                                   "maintenance": h.name in maint}
            if h.name in fenced:
                out.append(row)
                continue
            try:
                load = self._load(h.name, maint)
            except OnepaneError as exc:
                row["error"] = exc.detail
                out.append(row)
                continue
            row.update(state="maintenance" if h.name in maint else "up", cpus=load.cpus,
                       memory_mb=load.memory_mb, committed_vcpus=load.committed_vcpus,
                       committed_mb=load.committed_mb, free_mb=load.free_mb, vms=load.vms,
                       instances=sorted(
                           str((read_metadata(d.XMLDesc(0)) or {}).get("id") or d.name())
                           for d in self._domains(h.name)
                           if read_metadata(d.XMLDesc(0)) is not None))
            out.append(row)
        return out

    def _load(self, name: str, maint: set[str], deployment: str | None = None) -> HostLoad:
        c = self.conn(name)
        lv = _libvirt()
        try:
            info = c.getInfo()
            vcpus = mem = vms = same = 0
            for dom in c.listAllDomains():
                meta = read_metadata(dom.XMLDesc(0))
                if meta is None:
                    continue
                vms += 1
                st = dom.info()  # state, max memory KiB, memory, vCPUs, cpu time
                mem += st[1] // 1024
                vcpus += st[3]
                if deployment and (meta.get("tags") or {}).get("onepane:deployment") == deployment:
                    same += 1
        except lv.libvirtError as exc:
            raise translate(exc) from exc
        for host, r_cpus, r_mb in list(self._reserved.values()):
            if host == name:
                vcpus, mem = vcpus + r_cpus, mem + r_mb
        return HostLoad(name=name, up=True, maintenance=name in maint, cpus=int(info[2]),
                        memory_mb=int(info[1]), committed_vcpus=vcpus, committed_mb=mem, vms=vms,
                        same_deployment=same)

    def _loads(self, deployment: str | None = None) -> list[HostLoad]:
        maint = self.maintenance() | HostFailures(self).fenced()  # neither takes a new VM
        loads = []
        for h in self.options.hosts:
            try:
                loads.append(self._load(h.name, maint, deployment))
            except OnepaneError:
                loads.append(HostLoad(h.name, False, h.name in maint, 0, 0, 0, 0, 0))
        return loads

    def place(self, size: str, deployment: str | None = None,
              exclude: frozenset[str] = frozenset()) -> str:
        vcpus, memory = SIZES[size]
        try:
            return choose(self._loads(deployment), vcpus, memory, exclude)
        except NoRoom as exc:
            raise Conflict(f"location {self.location}: {exc}", field="location") from exc

    # ---- lifecycle ---------------------------------------------------------------------------

    def setup(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if self.options.storage is not None:
            with contextlib.suppress(OnepaneError):
                self.pools.pool(STORAGE)
        for name in self._up_hosts():
            with contextlib.suppress(OnepaneError):
                self.pools.pool(name)
                self._route_running(name)
        # a move onepane died in the middle of: the running copy stays, a paused one goes
        with contextlib.suppress(OnepaneError):
            self.recovered += self.reconcile_copies()

    def problems(self) -> list[str]:
        return [f"host {h} does not answer: {why}" for h, why in sorted(self._down.items())] + [
            f"instance {name}: {why}" for name, why in sorted(self._damaged.items())]

    def check(self) -> None:
        if not self._up_hosts():
            raise TransientProviderError(f"no host of {self.location} answers: "
                                         + "; ".join(self.problems()))

    def close(self) -> None:
        with self._lock:
            for c in self._conns.values():
                with contextlib.suppress(Exception):
                    c.close()
            self._conns.clear()

    def teardown(self) -> None:
        with contextlib.suppress(OnepaneError):
            for inst in self.list_instances():
                with contextlib.suppress(OnepaneError):
                    self.destroy_instance(inst.provider_id)
        self.close()

    # ---- instances ---------------------------------------------------------------------------

    def validate(self, image: str, size: str) -> None:
        super().validate(image, size)
        self._image_known(image)

    def list_instances(self) -> list[ObservedInstance]:
        found: dict[str, ObservedInstance] = {}
        damaged: dict[str, str] = {}
        for name in self._up_hosts():
            for dom in self._domains(name):
                with contextlib.suppress(Exception):
                    obs = observe_domain(dom, {HOST_TAG: name}, damaged)
                    if obs is None:
                        continue
                    # two copies (a move cut short): the one that runs is the instance
                    if obs.provider_id not in found or _running(dom):
                        found[obs.provider_id] = obs
                        self.last_seen[obs.provider_id] = (name, _running(dom))
        self._damaged = damaged
        return list(found.values())

    def create_instance(self, spec: InstanceSpec) -> ObservedInstance:
        with self._lock:
            located = self._locate(spec.onepane_id)
            if located is not None:  # a retry of a create that already happened
                host, dom = located
                if not dom.isActive():
                    self._start(host, dom)
                return self._observed(host, dom)
            self._image_known(spec.image)
            if spec.size not in SIZES:
                raise InvalidInput(f"unknown size {spec.size!r}; this location offers "
                                   f"{', '.join(SIZES)}", field="size")
            if len(spec.disks) > len(DISK_TARGETS) - 1:
                raise InvalidInput("a VM takes up to 15 extra disks", field="disks")
            host = self.place(spec.size, spec.tags.get("onepane:deployment"))
            try:
                xml = self._define(host, spec)
                with self._errors():
                    dom = self.conn(host).defineXML(xml)
                self._start(host, dom)
            except Exception:
                self._forget(host, spec.onepane_id)
                raise
            return self._observed(host, dom)

    def start_instance(self, provider_id: str) -> None:
        host, dom = self._located(provider_id)
        with self._errors():
            if not dom.isActive():
                self._start(host, dom)
            elif dom.state()[0] == _libvirt().VIR_DOMAIN_PAUSED:
                dom.resume()

    def stop_instance(self, provider_id: str) -> None:
        _, dom = self._located(provider_id)
        with self._errors():
            stop_domain(dom, self.options.stop_timeout)

    def reboot_instance(self, provider_id: str) -> None:
        self.stop_instance(provider_id)
        self.start_instance(provider_id)

    def suspend_instance(self, provider_id: str) -> None:
        suspend_domain(self._located(provider_id)[1])

    def resume_instance(self, provider_id: str) -> None:
        resume_domain(self._located(provider_id)[1])

    def destroy_instance(self, provider_id: str) -> None:
        lv = _libvirt()
        with self._lock:
            found = False
            for name in self._up_hosts():  # every copy, wherever a move left one
                dom = self._find(name, provider_id)
                if dom is None:
                    continue
                found = True
                with self._errors():
                    if dom.isActive():
                        with contextlib.suppress(lv.libvirtError):
                            dom.destroy()
                    with contextlib.suppress(lv.libvirtError):
                        dom.undefine()
                self._forget(name, provider_id)
            if self.options.storage is not None and not found:
                # on a dead host, or nowhere: its disks and definition on the storage go, so
                # that no recovery starts it again (a copy found above: _forget did it)
                self._delete_volumes(STORAGE, provider_id)

    def kill_instance(self, provider_id: str) -> None:
        _, dom = self._located(provider_id)
        with self._errors():
            dom.destroy()

    def console_output(self, provider_id: str, max_bytes: int = 65536) -> str:
        host, _ = self._located(provider_id)
        data = self.pools.download(host, f"{provider_id}-console.log", max_bytes)
        return data.decode(errors="replace")

    # ---- live moves --------------------------------------------------------------------------

    def live_migrate(self, provider_id: str, target: Provider, bound_s: float,
                     on_phase: Phase) -> ObservedInstance:
        if not isinstance(target, HostsProvider):
            raise InvalidInput(f"{target.location} is not a vm location of hosts; a running VM "
                               "moves only between locations of the same kind", field="to")
        found = self._locate(provider_id)
        if found is None or not _running(found[1]):
            there = target._locate(provider_id)
            if there is not None and _running(there[1]):
                # an earlier attempt got there (onepane died before it was recorded): route to
                # it, and only now that it runs there, remove what is left at the source
                target._route(there[0], provider_id)
                if found is not None:
                    self._remove_leftover(found[0], found[1])
                return target._observed(*there)
        src, dom = self._located(provider_id)
        meta = read_metadata(dom.XMLDesc(0)) or {}
        dst = target.place(str(meta.get("size", "vm.small")),
                           (meta.get("tags") or {}).get("onepane:deployment"))
        return self.move(provider_id, src, target, dst, bound_s, on_phase)

    def evacuate(self, host: str, bound_s: float = 300.0,
                 on_move: Callable[[str, str, dict[str, Any]], None] = lambda *a: None
                 ) -> dict[str, Any]:
        """Maintenance: no new VM goes to `host`, and every VM running there moves live to
        another host (at most max_parallel_moves at once). Returns what moved and what did not."""
        self.set_maintenance(host, True)
        todo = [d.name() for d in self._domains(host)
                if read_metadata(d.XMLDesc(0)) is not None and d.isActive()]
        moved: dict[str, str] = {}
        failed: dict[str, str] = {}
        place_lock = threading.Lock()

        def one(instance: str) -> None:
            try:
                with place_lock:  # two moves must not both count the same free memory
                    dom = self._find(host, instance)
                    if dom is None:
                        return  # gone meanwhile (destroyed): nothing to move
                    meta = read_metadata(dom.XMLDesc(0)) or {}
                    dst = self.place(str(meta.get("size", "vm.small")),
                                     (meta.get("tags") or {}).get("onepane:deployment"),
                                     exclude=frozenset({host}))
                    cpus, mb = SIZES.get(str(meta.get("size")), SIZES["vm.small"])
                    self._reserved[instance] = (dst, cpus, mb)
                phases: dict[str, Any] = {}
                self.move(instance, host, self, dst, bound_s,
                          lambda phase, s, data: phases.update({phase: {"seconds": s, **data}}))
                moved[instance] = dst
                on_move(instance, dst, phases)
            except OnepaneError as exc:
                failed[instance] = exc.detail
                on_move(instance, "", {"error": exc.detail})
            finally:
                self._reserved.pop(instance, None)

        with ThreadPoolExecutor(self.options.max_parallel_moves) as pool:
            list(pool.map(one, todo))
        left = [d.name() for d in self._domains(host)
                if read_metadata(d.XMLDesc(0)) is not None and d.isActive()]
        return {"host": host, "moved": moved, "failed": failed, "still_running": left}

    def move(self, instance: str, src: str, target: HostsProvider, dst: str, bound_s: float,
             on_phase: Phase) -> ObservedInstance:
        """A live move of `instance` from host `src` (here) to host `dst` of `target`."""
        lv = _libvirt()
        if target is self and src == dst:
            raise InvalidInput(f"{instance} already runs on {src}", field="to")
        dom = self._find(src, instance)
        if dom is None or not dom.isActive():
            there = target._find(dst, instance)
            if there is not None and _running(there):  # an earlier attempt got there
                target._route(dst, instance)
                if dom is not None:
                    self._remove_leftover(src, dom)
                return target._observed(dst, there)
            raise Conflict(f"instance {instance} is not running on {src}; only a running VM "
                           "moves live", field="instance")
        xml = dom.XMLDesc(lv.VIR_DOMAIN_XML_MIGRATABLE)
        meta = read_metadata(xml) or {}
        if nbd_exports(xml) and target is not self:
            raise Conflict(f"{instance}'s disks are on {self.location}'s network storage: it "
                           "moves live between that location's hosts only", field="to")
        target.conn(dst)  # fails early, with its reason, when the destination is down
        t0 = time.monotonic()
        try:
            target.pools.pool(dst)
            self._prepare(src, target, dst, instance, xml)
            dest_xml = xml.replace(self.options.pool_path, target.options.pool_path)
            params = {lv.VIR_MIGRATE_PARAM_MIGRATE_DISKS: list(disk_paths(xml)),
                      lv.VIR_MIGRATE_PARAM_BANDWIDTH: self.options.migration_bandwidth,
                      lv.VIR_MIGRATE_PARAM_DEST_XML: dest_xml}
            with contextlib.suppress(lv.libvirtError):
                dom.migrateSetMaxDowntime(self.options.migration_downtime_ms, 0)
            flags = lv.VIR_MIGRATE_LIVE | lv.VIR_MIGRATE_PEER2PEER | lv.VIR_MIGRATE_PERSIST_DEST
            if disk_paths(xml):  # disks of the host's own: copied; network storage's: not
                flags |= lv.VIR_MIGRATE_NON_SHARED_DISK
            else:
                del params[lv.VIR_MIGRATE_PARAM_MIGRATE_DISKS]
            watch = Watch(dom, t0, bound_s, on_phase)
            switch = Switch(lambda: target.open_connection(dst), instance,
                            lambda: target._route(dst, instance, meta))
            watch.start()
            switch.start()
            try:
                dom.migrateToURI3(target.host(dst).uri, params, flags)
            except lv.libvirtError as exc:
                watch.stop()
                switch.stop()
                if _running(dom):
                    self._route(src, instance, meta)  # the source runs it: traffic back there
                if watch.aborted:
                    raise Conflict(f"the move of {instance} did not converge within "
                                   f"{bound_s:.0f} s and was cancelled; it keeps running on "
                                   f"{src} ({watch.summary()})", field="to") from exc
                raise translate(exc) from exc
            watch.stop()
            switch.stop()
        except BaseException:
            target._clean_after_failed_move(dst, instance, source_runs=_running(dom))
            raise
        moved = target._find(dst, instance)
        if moved is None:
            raise PermanentProviderError(f"{instance} is not on {dst} after its move")
        if switch.switched is None:
            target._route(dst, instance, meta)
            switch.resumed = switch.switched = time.monotonic()
        report_end(on_phase, dom, watch, switch, t0, from_host=src, to_host=dst)
        # the running copy is confirmed: only now does the source's leftover go
        with contextlib.suppress(lv.libvirtError):
            if not dom.isActive():
                dom.undefine()
        self._delete_volumes(src, instance)
        return target._observed(dst, moved)

    def reconcile_copies(self) -> list[str]:
        """After a crash in the middle of a move: where a guest is defined on several hosts,
        keep the one that runs, route to it, and remove the others — only when exactly one
        runs (two running copies are reported, never resolved by guessing)."""
        seen: dict[str, list[tuple[str, Any]]] = {}
        for name in self._up_hosts():
            for dom in self._domains(name):
                if read_metadata(dom.XMLDesc(0)) is not None:
                    seen.setdefault(dom.name(), []).append((name, dom))
        said = []
        for instance, copies in seen.items():
            if len(copies) < 2:
                continue
            running = [(h, d) for h, d in copies if _running(d)]
            if len(running) != 1:
                said.append(f"{instance}: {len(running)} running copies on "
                            f"{', '.join(h for h, _ in copies)}; left as they are")
                continue
            keep, _ = running[0]
            self._route(keep, instance)
            for h, d in copies:
                if h == keep:
                    continue
                self._remove_leftover(h, d)  # paused mid-move: the other copy is the live one
                said.append(f"{instance}: runs on {keep}; removed its leftover on {h}")
        return said

    # ---- catalog -----------------------------------------------------------------------------

    def list_images(self) -> list[ObservedImage]:
        """The images some host holds whole (its upload marker is there)."""
        found: dict[str, ObservedImage] = {}
        for host in self._up_hosts():
            for name in self.pools.images_on(host):
                suffix = name.rsplit(".", 1)[-1]
                found.setdefault(name, ObservedImage(
                    provider_id=name, name=name.rsplit(".", 1)[0],
                    extra={"kind": "disk", "format": suffix}))
        return sorted(found.values(), key=lambda i: i.provider_id)

    def list_sizes(self) -> list[ObservedSize]:
        return [ObservedSize(provider_id=k, cpu=c, memory_mb=m) for k, (c, m) in SIZES.items()]

    def import_disk(self, image_id: str, name: str, path: Path, fmt: str, sha256: str,
                    progress: Callable[[float], None]) -> str:
        """Upload the image to every host that answers (a host that does not gets it from
        another the first time it needs it): the location's images live on its hosts, never
        on onepane's machine, so every onepane node sees the same."""
        if fmt not in self.disk_formats:
            raise InvalidInput(f"{self.location} stores {', '.join(self.disk_formats)} disks, "
                               f"not {fmt}", field="format")
        image = f"{image_id}.{fmt}"
        hosts = self._up_hosts()
        if not hosts:
            raise TransientProviderError(f"no host of {self.location} answers: "
                                         + "; ".join(self.problems()))
        if self.options.storage is not None:
            hosts.append(STORAGE)  # the network storage copies VMs' disks from it
        for n, host in enumerate(hosts):
            if image not in self.pools.images_on(host):
                self.pools.upload(host, image, path, fmt)
                self.pools.upload(host, f"{image}.ok", sha256.encode())
            progress((n + 1) / len(hosts))
        return image

    def list_networks(self) -> list[ObservedNetwork]:
        return [ObservedNetwork(provider_id="guest", name="guest",
                                cidr=str(guestnet.GUEST_NET))]

    def create_network(self, name: str, cidr: str) -> ObservedNetwork:
        raise Conflict(f"location {self.location} has one guest network ({guestnet.GUEST_NET})",
                       field="cidr")

    # ---- internals ---------------------------------------------------------------------------

    def _errors(self) -> contextlib.AbstractContextManager[None]:
        return libvirt_errors()

    def _domains(self, host: str) -> list[Any]:
        with self._errors():
            return list(self.conn(host).listAllDomains())

    def _find(self, host: str, instance: str) -> Any | None:
        return find_domain(self.conn(host), instance)

    def _locate(self, instance: str) -> tuple[str, Any] | None:
        """The host that runs the instance (or holds it stopped), preferring a running copy."""
        best: tuple[str, Any] | None = None
        for name in self._up_hosts():
            dom = self._find(name, instance)
            if dom is not None and (best is None or _running(dom)):
                best = (name, dom)
        return best

    def _located(self, instance: str) -> tuple[str, Any]:
        if "/" in instance or not instance:
            raise NotFound(f"no instance {instance!r} at {self.location}")
        found = self._locate(instance)
        if found is None:
            raise NotFound(f"no instance {instance!r} at {self.location}")
        return found

    def _observed(self, host: str, dom: Any) -> ObservedInstance:
        with self._errors():
            obs = observe_domain(dom, {HOST_TAG: host})
        if obs is None:
            raise PermanentProviderError(f"domain {dom.name()} has no onepane metadata")
        return obs

    def _image_known(self, image: str) -> None:
        if "/" in image or image.startswith(".") or not any(
                image in self.pools.images_on(h) for h in self._up_hosts()):
            names = ", ".join(i.provider_id for i in self.list_images()) or "none"
            raise InvalidInput(f"unknown image {image!r} at {self.location}; available: {names} "
                               "(replicate a catalog image here first)", field="image")

    def _define(self, host: str, spec: InstanceSpec) -> str:
        address = self.addresses.allocate(spec.onepane_id)
        cpus, memory = SIZES[spec.size]
        if self.options.storage is not None:  # the host needs no copy of the image then
            disks = self._shared_disks(spec)
        else:
            disks = self._local_disks(host, spec)
        files = {}
        small = {"ovf-env.xml": spec.user_data.encode() if spec.user_data else b"",
                 "authorized_keys": "".join(k.strip() + "\n" for k in spec.ssh_keys).encode()}
        for suffix, data in small.items():
            if not data:
                continue
            for where in (host, STORAGE) if self.options.storage else (host,):
                self.pools.upload(where, f"{spec.onepane_id}-{suffix}", data)
            files[FW_FILES[suffix]] = Path(self.pools.vol_path(f"{spec.onepane_id}-{suffix}"))
        nics = [Nic(guestnet.mac_for(address), guestnet.BRIDGE)]
        nics += [Nic(_extra_mac(address, n), guestnet.BRIDGE) for n in range(1, spec.nics)]
        meta = {"id": spec.onepane_id, "name": spec.name, "image": spec.image, "size": spec.size,
                "tags": spec.tags, "address": address}
        xml = domain_xml(DomainSpec(
            name=spec.onepane_id, vcpus=cpus, memory_mb=memory, disks=disks, nics=nics,
            console_log=Path(self.pools.vol_path(f"{spec.onepane_id}-console.log")),
            accel=self.options.accel,
            firmware_config={"opt/onepane/net": f"{address}/{guestnet.GUEST_NET.prefixlen} "
                                                f"{guestnet.GATEWAY}"},
            firmware_files=files, metadata=meta))
        if self.options.storage is not None:  # what another host boots it from if this dies
            self.pools.upload(STORAGE, f"{spec.onepane_id}-domain.xml", xml.encode())
        return xml

    def _local_disks(self, host: str, spec: InstanceSpec) -> list[Disk]:
        """A qcow2 overlay on the image in the host's own pool, and the extra disks there."""
        image, virtual = self.pools.ensure_image(host, spec.image)
        pool = self.pools.pool(host)
        fmt = "raw" if spec.image.endswith(".raw") else "qcow2"
        root = f"{spec.onepane_id}-disk0.qcow2"
        with self._errors():
            pool.createXML(f"<volume><name>{root}</name><capacity unit='bytes'>{virtual}"
                           "</capacity><target><format type='qcow2'/></target><backingStore>"
                           f"<path>{image}</path><format type='{fmt}'/></backingStore></volume>", 0)
            disks = [Disk(Path(self.pools.vol_path(root)))]
            for n, size in enumerate(spec.disks, start=1):
                extra = f"{spec.onepane_id}-disk{n}.qcow2"
                pool.createXML(f"<volume><name>{extra}</name><capacity unit='bytes'>{size}"
                               "</capacity><target><format type='qcow2'/></target></volume>", 0)
                disks.append(Disk(Path(self.pools.vol_path(extra)), target=DISK_TARGETS[n]))
        return disks

    def _shared_disks(self, spec: InstanceSpec) -> list[Disk]:
        """Raw disks on the storage host, reached over NBD: a whole copy of the image (no
        backing chain: a host reads the export, not the storage host's paths) and the extra
        disks. Raw, so that a copy taken while a dead host may still write is never a broken
        qcow2."""
        storage = self.options.storage
        assert storage is not None
        lv = _libvirt()
        self.pools.ensure_image(STORAGE, spec.image)
        pool = self.pools.pool(STORAGE)
        disks = []
        with self._errors():
            image_vol = pool.storageVolLookupByName(spec.image)
            for n, size in enumerate([0, *spec.disks]):
                name = f"{spec.onepane_id}-disk{n}.raw"
                with contextlib.suppress(lv.libvirtError):  # a retried create's leftover
                    pool.storageVolLookupByName(name).delete(0)
                if n == 0:
                    size = int(image_vol.info()[1])
                    pool.createXMLFrom(f"<volume><name>{name}</name><capacity unit='bytes'>"
                                       f"{size}</capacity><target><format type='raw'/>"
                                       "</target></volume>", image_vol, 0)
                else:
                    pool.createXML(f"<volume><name>{name}</name><capacity unit='bytes'>{size}"
                                   "</capacity><target><format type='raw'/></target></volume>",
                                   0)
                disks.append(Disk(Path(name), format="raw", target=DISK_TARGETS[n],
                                  nbd=NbdSource(storage.nbd_host, storage.nbd_port, name)))
        return disks

    def _start(self, host: str, dom: Any) -> None:
        with self._errors():
            dom.create()
        self._route(host, dom.name())

    def _route(self, host: str, instance: str, meta: dict[str, Any] | None = None) -> None:
        """Send onepane's machine's traffic for the guest to the host that runs it."""
        if not self.options.route_guests:
            return
        address = (meta or {}).get("address") or self.addresses.get(instance)
        if address:
            spec = self.host(host)
            via = spec.route_via or urlsplit(spec.uri).hostname or ""
            ip("route", "replace", f"{address}/32", "via", via)

    def _route_running(self, host: str) -> None:
        for dom in self._domains(host):
            with contextlib.suppress(Exception):
                meta = read_metadata(dom.XMLDesc(0))
                if meta and _running(dom):
                    self._route(host, dom.name(), meta)

    def _prepare(self, src: str, target: HostsProvider, dst: str, instance: str,
                 xml: str) -> None:
        """Empty disks of the same sizes at the destination (the mirror fills them) and the
        instance's small files (its OVF environment, its keys), copied host to host."""
        src_pool, dst_pool = self.pools.pool(src), target.pools.pool(dst)
        lv = _libvirt()
        with self._errors():
            for path in disk_paths(xml).values():
                name = path.name
                capacity = src_pool.storageVolLookupByName(name).info()[1]
                with contextlib.suppress(lv.libvirtError):
                    dst_pool.storageVolLookupByName(name).delete(0)
                dst_pool.createXML(f"<volume><name>{name}</name><capacity unit='bytes'>"
                                   f"{capacity}</capacity><target><format type='qcow2'/>"
                                   "</target></volume>", 0)
            # the console's log too (its last MiB): the destination's QEMU appends to it
            for suffix in ("ovf-env.xml", "authorized_keys", "console.log"):
                data = self.pools.download(src, f"{instance}-{suffix}", 1 << 20)
                if data:
                    target.pools.upload(dst, f"{instance}-{suffix}", data)

    def _remove_leftover(self, host: str, dom: Any) -> None:
        """A copy that does not run (paused or stopped by a move that finished elsewhere):
        its definition and its volumes go. Never called for a running copy."""
        lv = _libvirt()
        if _running(dom):
            return
        with contextlib.suppress(lv.libvirtError):
            if dom.isActive():
                dom.destroy()
        with contextlib.suppress(lv.libvirtError):
            dom.undefine()
        self._delete_volumes(host, dom.name())

    def _clean_after_failed_move(self, host: str, instance: str, source_runs: bool) -> None:
        """Remove what a failed move left at its destination — only while the source still
        runs the guest: the destination may otherwise hold the only running copy."""
        if not source_runs:
            return
        lv = _libvirt()
        with contextlib.suppress(Exception):
            dom = self._find(host, instance)
            if dom is not None:
                with contextlib.suppress(lv.libvirtError):
                    dom.destroy()
                with contextlib.suppress(lv.libvirtError):
                    dom.undefine()
            self._delete_volumes(host, instance)

    def _delete_volumes(self, host: str, instance: str) -> None:
        lv = _libvirt()
        with contextlib.suppress(OnepaneError, lv.libvirtError):
            pool = self.pools.pool(host)
            pool.refresh(0)
            for name in pool.listVolumes():
                if name.startswith(f"{instance}-"):
                    with contextlib.suppress(lv.libvirtError):
                        pool.storageVolLookupByName(name).delete(0)

    def _forget(self, host: str, instance: str) -> None:
        self._delete_volumes(host, instance)
        if self._locate(instance) is None:
            self.last_seen.pop(instance, None)
            if self.options.storage is not None:  # no copy is left anywhere: its disks go
                self._delete_volumes(STORAGE, instance)
            address = self.addresses.get(instance)
            if address:
                if self.options.route_guests:
                    ip("route", "del", f"{address}/32", check=False)
                self.addresses.release(instance)


CONNECT_TIMEOUT_S = 2.0
RETRY_DOWN_S = 2.0  # a silent host is not asked again sooner (a refusal is asked at once)
DEFAULT_PORTS = {"qemu+tls": 16514, "qemu+tcp": 16509, "qemu+ssh": 22}


def _reachable(uri: str) -> None:
    """Raise OSError unless the URI's host accepts a TCP connection within CONNECT_TIMEOUT_S."""
    parts = urlsplit(uri)
    port = parts.port or DEFAULT_PORTS.get(parts.scheme, 16514)
    with socket.create_connection((parts.hostname or "", port), timeout=CONNECT_TIMEOUT_S):
        pass


def _running(dom: Any) -> bool:
    """Running, or paused by its user (not paused half-way through a move)."""
    lv = _libvirt()
    with contextlib.suppress(lv.libvirtError):
        state, reason = dom.state()
        return bool(state in (lv.VIR_DOMAIN_RUNNING, lv.VIR_DOMAIN_BLOCKED)
                    or (state == lv.VIR_DOMAIN_PAUSED and reason == lv.VIR_DOMAIN_PAUSED_USER))
    return False

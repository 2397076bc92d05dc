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
  runs the guest; elastic addresses are rewritten to the guest's own on onepane's machine and
  ride that route (hostaddresses.py).
- **A move never leaves two running copies and never destroys the only one**: the destination
  is cleaned up after a failure only while the source still runs the guest; a paused leftover
  is removed only once the running copy is confirmed (`reconcile_copies`, also run at start:
  a move onepane died in the middle of is settled where the guest runs).

The domain is the record, as in the single-host provider: onepane's metadata in its XML.
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

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
from . import guestnet, hostaddresses, hostdisks, hostfilters
from .domain import read_metadata, resized_xml
from .hostconns import HostConnections
from .hostkept import HostKeptDisks, key_of
from .hostmoves import HostMoves, running
from .hostpools import STORAGE, HostPools
from .hostroster import HostRoster
from .migration import Phase
from .provider import (
    DISK_TARGETS,
    KEEP_STOP_S,
    SIZES,
    _libvirt,
    find_domain,
    libvirt_errors,
    observe_domain,
    parse_options,
    refuse_moved_away,
    resize_stopped,
    resume_domain,
    stop_domain,
    suspend_domain,
)

HOST_TAG = "onepane:host"  # shown on every instance: the host that runs it
KEEPALIVE_S, KEEPALIVE_COUNT = 2, 3  # a host that stops answering fails its calls in ~8 s
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


class HostsProvider(Provider):
    capabilities = Capabilities.all_but(
        attach_network="a VM's interface is chosen when it is created (onepane does not "
                       "hot-plug NICs)",
        app_images="a VM data center boots disk images; app images run in process data "
                   "centers",
        volumes="volumes on remote hosts are not built yet (a VM's extra disks are: disks=)",
        snapshots="volumes on remote hosts are not built yet",
        capture_image="reading a disk back from a remote host is not built yet",
        cut="the hosts' network is the operator's: onepane cannot cut it (drills cut a "
            "location onepane runs, or a host's link in the lab)",
        networks="a vm location has one guest network (10.200.255.0/24), shared by every "
                 "vm location so that a moved VM keeps its address; more are not built yet",
    )
    disk_formats = ("qcow2", "raw")

    def __init__(self, location: str, state_dir: Path, options: dict[str, Any] | None = None,
                 credentials: dict[str, str] | None = None) -> None:
        super().__init__(location)
        self.options = hosts_options(location, options or {})
        self.root = state_dir / "locations" / location
        self.addresses = guestnet.AddressBook(state_dir)
        self.links = HostConnections(location, self.root, self._uri,
                                     lambda: [h.name for h in self.options.hosts], credentials)
        self.conn, self.up_hosts = self.links.conn, self.links.up_hosts
        self.pools = HostPools(location, self.root, lambda: self.options, self.conn,
                               self.up_hosts)
        self._damaged: dict[str, str] = {}  # domain -> why its metadata does not read
        self._lock = threading.RLock()
        self.roster = HostRoster(self)
        self.kept = HostKeptDisks(self)  # data disks kept for a replica's replacement
        # instance -> (host, running) as last listed: where a dead host's VMs were
        self.last_seen: dict[str, tuple[str, bool]] = {}
        self.filters: dict[str, str] = {}  # filter name -> XML, as last enforced
        # instance -> (host, vCPUs, MiB) of a move in flight: not defined at its destination
        # yet, so placement would not count it without this
        self.reserved: dict[str, tuple[str, int, int]] = {}

    # ---- hosts -------------------------------------------------------------------------------

    # ---- lifecycle ---------------------------------------------------------------------------

    def setup(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if self.options.route_guests:  # health checks leave from it (check_source)
            ip("addr", "replace", f"{guestnet.CHECKER}/32", "dev", "lo")
        if self.options.storage is not None:
            with contextlib.suppress(OnepaneError):
                self.pools.pool(STORAGE)
        for name in self.up_hosts():
            with contextlib.suppress(OnepaneError):
                self.pools.pool(name)
                self.roster.route_running(name)
        # a move onepane died in the middle of: the running copy stays, a paused one goes
        with contextlib.suppress(OnepaneError):
            self.recovered += self.reconcile_copies()

    def problems(self) -> list[str]:
        return [f"host {h} does not answer: {why}" for h, why in sorted(self.links.down.items())] + [
            f"instance {name}: {why}" for name, why in sorted(self._damaged.items())]

    def check(self) -> None:
        if not self.up_hosts():
            raise TransientProviderError(f"no host of {self.location} answers: "
                                         + "; ".join(self.problems()))

    def check_source(self) -> str | None:
        """The checker address, which every guest's filter answers (hostfilters); it is on
        onepane's machine, where the guests' routes lead (route_guests)."""
        return guestnet.CHECKER if self.options.route_guests else None

    def teardown(self) -> None:
        with contextlib.suppress(OnepaneError):
            for inst in self.list_instances():
                with contextlib.suppress(OnepaneError):
                    self.destroy_instance(inst.provider_id)
        if self.options.route_guests:  # no address wanted: its table and routes go
            hostaddresses.route(self.location, {}, self._vias())
        self.close()

    def route_addresses(self, wanted: dict[str, str]) -> None:
        """Elastic addresses, rewritten to their guests' own on onepane's machine
        (hostaddresses): they reach a guest on whichever host runs it."""
        if not self.options.route_guests:
            raise PermanentProviderError(
                f"location {self.location}: elastic addresses ride on the guests' routes from "
                "onepane's machine (route_guests); with route_guests off, route them yourself")
        targets = {}
        for address, provider_id in wanted.items():
            guest, located = self.addresses.get(provider_id), self.locate(provider_id)
            if guest is None or located is None:
                raise PermanentProviderError(f"instance {provider_id} at {self.location} has "
                                             "no guest address or runs on no host")
            targets[address] = (guest, self.roster.via(located[0]))
        hostaddresses.route(self.location, targets, self._vias())

    def enforcement_epoch(self) -> str:
        """The hosts that answered last (no host is asked here): a host that joins or comes
        back gets every guest's filter, defined before a guest is moved or started there."""
        return ",".join(h for h in self.links.names() if h not in self.links.down)

    def enforce(self, ingress: dict[str, list[dict[str, Any]]],
                groups: dict[str, dict[str, list[dict[str, Any]]]],
                egress: dict[str, list[dict[str, Any]]] | None = None) -> None:
        """Security groups as libvirt network filters (hostfilters: what they hold and why):
        each guest's filter defined on every host, then referenced by its interface. A guest
        that left every group keeps its filter, opened."""
        egress = egress or {}
        filtered = set(ingress) | set(egress)
        wanted = {hostfilters.filter_name(pid): hostfilters.render(
                      pid, ingress.get(pid, []) if pid in filtered else None, egress.get(pid))
                  for pid in filtered | {n.removeprefix(hostfilters.PREFIX)
                                         for n in self.filters}}
        with self._lock, self._errors():
            for host in self.up_hosts():
                conn = self.conn(host)
                present = set(conn.listNWFilters())
                # only what a host lacks or what changed: libvirt rebuilds every guest's rules
                # for a filter defined again, unchanged or not
                for name, xml in wanted.items():
                    if name not in present or self.filters.get(name) != xml:
                        conn.nwfilterDefineXML(xml)
            self.filters.update(wanted)
            for pid in sorted(filtered):
                located = self.locate(pid)
                if located is not None:
                    self._reference(located[1], hostfilters.filter_name(pid))

    def _reference(self, dom: Any, name: str) -> None:
        """The guest's interfaces use filter `name`, now and at its next start."""
        lv = _libvirt()
        flags = lv.VIR_DOMAIN_AFFECT_CONFIG | (lv.VIR_DOMAIN_AFFECT_LIVE if dom.isActive() else 0)
        for iface in hostfilters.interfaces(dom.XMLDesc(0)):
            changed = hostfilters.with_filter(iface, name)
            if changed is not None:
                dom.updateDeviceFlags(changed, flags)

    def _drop_filter(self, provider_id: str) -> None:
        name = hostfilters.filter_name(provider_id)
        if self.filters.pop(name, None) is None:
            return
        lv = _libvirt()
        for host in self.up_hosts():
            with contextlib.suppress(lv.libvirtError, OnepaneError):
                self.conn(host).nwfilterLookupByName(name).undefine()

    def carry_filters(self, domain_xml: str, src_conn: Any, dst_conn: Any) -> None:
        """The filters a guest's interfaces use, defined where it is going if it lacks them
        (before a move: libvirt refuses to start a guest whose filter is missing)."""
        present = set(dst_conn.listNWFilters())
        for name in set(hostfilters.referenced(domain_xml)) - present:
            xml = self.filters.get(name)
            if xml is None and src_conn is not None:
                xml = src_conn.nwfilterLookupByName(name).XMLDesc(0)
            if xml is not None:
                dst_conn.nwfilterDefineXML(xml)

    def _vias(self) -> set[str]:
        return {self.roster.via(h.name) for h in self.options.hosts}

    def close(self) -> None:
        with self._lock:
            self.links.close()

    def _uri(self, name: str) -> str:
        if name == STORAGE and self.options.storage is not None:
            return self.options.storage.uri
        return self.roster.host(name).uri

    # ---- instances ---------------------------------------------------------------------------

    def validate(self, image: str, size: str) -> None:
        super().validate(image, size)
        self._image_known(image)

    def list_instances(self) -> list[ObservedInstance]:
        found: dict[str, ObservedInstance] = {}
        damaged: dict[str, str] = {}
        for name in self.up_hosts():
            for dom in self.domains(name):
                with contextlib.suppress(Exception):
                    obs = observe_domain(dom, {HOST_TAG: name}, damaged)
                    if obs is None:
                        continue
                    # two copies (a move cut short): the one that runs is the instance
                    if obs.provider_id not in found or running(dom):
                        found[obs.provider_id] = obs
                        self.last_seen[obs.provider_id] = (name, running(dom))
        self._damaged = damaged
        return list(found.values())

    def create_instance(self, spec: InstanceSpec) -> ObservedInstance:
        with self._lock:
            located = self.locate(spec.onepane_id)
            if located is not None:  # a retry of a create that already happened
                host, dom = located
                if not dom.isActive():
                    self._start(host, dom)
                return self.observed(host, dom)
            self._image_known(spec.image)
            if spec.size not in SIZES:
                raise InvalidInput(f"unknown size {spec.size!r}; this location offers "
                                   f"{', '.join(SIZES)}", field="size")
            if len(spec.disks) > len(DISK_TARGETS) - 1:
                raise InvalidInput("a VM takes up to 15 extra disks", field="disks")
            host = self._place(spec)
            try:
                xml = hostdisks.define(self, host, spec)
                with self._errors():
                    dom = self.conn(host).defineXML(xml)
                self._start(host, dom)
            except Exception:
                key = key_of(spec.tags)
                if key:  # kept disks it took go back under their key, whole
                    with contextlib.suppress(Exception):
                        self.kept.park(self.kept.pool_of(host), spec.onepane_id, key)
                with contextlib.suppress(Exception):  # defined but never started: no trace
                    left = self.find(host, spec.onepane_id)
                    if left is not None and not left.isActive():
                        left.undefine()
                self._forget(host, spec.onepane_id)
                raise
            return self.observed(host, dom)

    def _place(self, spec: InstanceSpec) -> str:
        """A host for a new VM: the one holding the data disks kept for it when it has room
        (no copy), else the best, which gets those disks first (hostkept)."""
        deployment = spec.tags.get("onepane:deployment")
        key = key_of(spec.tags)
        holder = self.kept.holder(key) if key and self.options.storage is None else None
        if key is None or holder is None:
            return self.roster.place(spec.size, deployment)
        others = frozenset(h.name for h in self.options.hosts if h.name != holder)
        with contextlib.suppress(Conflict):
            return self.roster.place(spec.size, deployment, exclude=others)
        host = self.roster.place(spec.size, deployment)
        self.kept.bring(key, holder, host)
        return host

    def start_instance(self, provider_id: str) -> None:
        host, dom = self.located(provider_id)
        with self._errors():
            if not dom.isActive():
                refuse_moved_away(dom)
                self._start(host, dom)
            elif dom.state()[0] == _libvirt().VIR_DOMAIN_PAUSED:
                dom.resume()

    def resize_instance(self, provider_id: str, size: str) -> None:
        """A stopped VM's vCPUs and memory, redefined on its host if the host has room for the
        difference, and in the copy of its definition on the network storage (what a restart
        after its host died boots from)."""
        with self._lock, self._errors():
            host, dom = self.located(provider_id)
            st = dom.info()  # state, max memory KiB, memory, vCPUs, cpu time
            resize_stopped(self.conn(host), dom, size, lambda cpus, mb: self.roster.check_growth(
                host, max(0, cpus - st[3]), max(0, mb - st[1] // 1024)))
            if self.options.storage is not None:
                cpus, memory = SIZES[size]
                name = f"{provider_id}-domain.xml"
                stored = self.pools.download(STORAGE, name, 1 << 20).decode()
                self.pools.upload(STORAGE, name, resized_xml(stored, cpus, memory, size).encode())

    def stop_instance(self, provider_id: str) -> None:
        _, dom = self.located(provider_id)
        with self._errors():
            stop_domain(dom, self.options.stop_timeout)

    def reboot_instance(self, provider_id: str) -> None:
        self.stop_instance(provider_id)
        self.start_instance(provider_id)

    def suspend_instance(self, provider_id: str) -> None:
        suspend_domain(self.located(provider_id)[1])

    def resume_instance(self, provider_id: str) -> None:
        resume_domain(self.located(provider_id)[1])

    def destroy_instance(self, provider_id: str) -> None:
        lv = _libvirt()
        with self._lock:
            copies = [(name, dom) for name in self.up_hosts()  # wherever a move left one
                      if (dom := self.find(name, provider_id)) is not None]
            # the running copy's disks are the ones a replacement may keep
            copies.sort(key=lambda c: not running(c[1]))
            key = self._data_key(copies[0][1] if copies else None, provider_id)
            for n, (name, dom) in enumerate(copies):
                with self._errors():
                    if n == 0 and key and dom.isActive():
                        # its data disks are kept: the guest writes back what it holds first
                        # (briefly: one that does not answer is stopped hard)
                        with contextlib.suppress(lv.libvirtError):
                            stop_domain(dom, min(self.options.stop_timeout, KEEP_STOP_S))
                    if dom.isActive():
                        with contextlib.suppress(lv.libvirtError):
                            dom.destroy()
                    with contextlib.suppress(lv.libvirtError):
                        dom.undefine()
                if n == 0 and key:
                    self.kept.park(self.kept.pool_of(name), provider_id, key)
                self._forget(name, provider_id)
            self._drop_filter(provider_id)
            if self.options.storage is not None and not copies:
                # on a dead host, or nowhere: its disks and definition on the storage go, so
                # that no recovery starts it again (a copy found above: _forget did it)
                if key:
                    self.kept.park(STORAGE, provider_id, key)
                self.pools.delete_volumes(STORAGE, provider_id)

    def forget_data(self, deployment: str) -> list[str]:
        return self.kept.forget(deployment)

    def forget_data_late(self) -> list[str]:
        """What forget_data could not drop from hosts that were down, dropped from those that
        answer now (the host watch's every pass)."""
        return self.kept.retry_forgotten()

    def _data_key(self, dom: Any | None, provider_id: str) -> str | None:
        """The data key in the VM's record: its domain's metadata, or (its host dead) the
        copy of its definition on the network storage."""
        xml = None
        with contextlib.suppress(Exception):
            if dom is not None:
                xml = dom.XMLDesc(0)
            elif self.options.storage is not None:
                xml = self.pools.download(STORAGE, f"{provider_id}-domain.xml",
                                          1 << 20).decode() or None
        meta = read_metadata(xml) if xml else None
        with contextlib.suppress(InvalidInput):
            return key_of((meta or {}).get("tags"))
        return None

    def kill_instance(self, provider_id: str) -> None:
        _, dom = self.located(provider_id)
        with self._errors():
            dom.destroy()

    def console_output(self, provider_id: str, max_bytes: int = 65536) -> str:
        host, _ = self.located(provider_id)
        data = self.pools.download(host, f"{provider_id}-console.log", max_bytes)
        return data.decode(errors="replace")

    # ---- live moves --------------------------------------------------------------------------

    def live_migrate(self, provider_id: str, target: Provider, bound_s: float,
                     on_phase: Phase) -> ObservedInstance:
        return HostMoves(self).live_migrate(provider_id, target, bound_s, on_phase)

    def evacuate(self, host: str, bound_s: float = 300.0,
                 on_move: Callable[[str, str, dict[str, Any]], None] = lambda *a: None
                 ) -> dict[str, Any]:
        """Maintenance: no new VM goes to `host`, and every VM running there moves live to
        another host. Returns what moved and what did not."""
        return HostMoves(self).evacuate(host, bound_s, on_move)

    def reconcile_copies(self) -> list[str]:
        return HostMoves(self).reconcile_copies()

    # ---- catalog -----------------------------------------------------------------------------

    def list_images(self) -> list[ObservedImage]:
        """The images some host holds whole (its upload marker is there)."""
        found: dict[str, ObservedImage] = {}
        for host in self.up_hosts():
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
        hosts = self.up_hosts()
        if not hosts:
            raise TransientProviderError(f"no host of {self.location} answers: "
                                         + "; ".join(self.problems()))
        if self.options.storage is not None:
            hosts.append(STORAGE)  # the network storage copies VMs' disks from it
        self.pools.replicate(hosts, image, path, fmt, sha256, progress)
        return image

    def delete_disk(self, provider_image_id: str) -> None:
        """Off every host that answers and the network storage. A host that does not answer
        keeps its copy, unused (every VM is made from the catalog's images by name, and the
        name of a deleted image is never handed out again: catalog ids are unique)."""
        self.refuse_in_use(provider_image_id)
        hosts = self.up_hosts()
        if self.options.storage is not None:
            hosts.append(STORAGE)
        if not self.pools.remove(hosts, provider_image_id):
            raise NotFound(f"no image {provider_image_id!r} at {self.location}", field="image")

    def list_networks(self) -> list[ObservedNetwork]:
        return [ObservedNetwork(provider_id="guest", name="guest",
                                cidr=str(guestnet.GUEST_NET))]

    # ---- internals ---------------------------------------------------------------------------

    def _errors(self) -> contextlib.AbstractContextManager[None]:
        return libvirt_errors()

    def domains(self, host: str) -> list[Any]:
        with self._errors():
            return list(self.conn(host).listAllDomains())

    def find(self, host: str, instance: str) -> Any | None:
        return find_domain(self.conn(host), instance)

    def locate(self, instance: str) -> tuple[str, Any] | None:
        """The host that runs the instance (or holds it stopped), preferring a running copy."""
        best: tuple[str, Any] | None = None
        for name in self.up_hosts():
            dom = self.find(name, instance)
            if dom is not None and (best is None or running(dom)):
                best = (name, dom)
        return best

    def located(self, instance: str) -> tuple[str, Any]:
        if "/" in instance or not instance:
            raise NotFound(f"no instance {instance!r} at {self.location}")
        found = self.locate(instance)
        if found is None:
            raise NotFound(f"no instance {instance!r} at {self.location}")
        return found

    def observed(self, host: str, dom: Any) -> ObservedInstance:
        with self._errors():
            obs = observe_domain(dom, {HOST_TAG: host})
        if obs is None:
            raise PermanentProviderError(f"domain {dom.name()} has no onepane metadata")
        return obs

    def _image_known(self, image: str) -> None:
        if "/" in image or image.startswith(".") or not any(
                image in self.pools.images_on(h) for h in self.up_hosts()):
            names = ", ".join(i.provider_id for i in self.list_images()) or "none"
            raise InvalidInput(f"unknown image {image!r} at {self.location}; available: {names} "
                               "(replicate a catalog image here first)", field="image")

    def _start(self, host: str, dom: Any) -> None:
        with self._errors():
            dom.create()
        self.roster.route(host, dom.name())

    def _forget(self, host: str, instance: str) -> None:
        self.pools.delete_volumes(host, instance)
        if self.locate(instance) is None:
            self.last_seen.pop(instance, None)
            if self.options.storage is not None:  # no copy is left anywhere: its disks go
                self.pools.delete_volumes(STORAGE, instance)
            address = self.addresses.get(instance)
            if address:
                if self.options.route_guests:
                    ip("route", "del", f"{address}/32", check=False)
                self.addresses.release(instance)



"""The hosts of one location as an operator manages them: which there are (added only when they
answer, removed only when empty), which are in maintenance, what each holds and has free, where
a new VM goes, and where onepane's machine sends a guest's traffic (via the host that runs it).

The maintenance mark is a volume in the host's own pool, not a file of onepane's: every onepane
node that drives the host sees the same. Placement (placement.choose) counts what each host
runs plus the moves in flight towards it (`reserved`), so that two moves at once do not both
count the same free memory.
"""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ...errors import Conflict, NotFound, OnepaneError
from ..dcnet import ip
from .domain import read_metadata
from .hostfailure import HostFailures
from .hostmoves import running
from .placement import OVERCOMMIT, HostLoad, NoRoom, choose
from .provider import SIZES, _libvirt, libvirt_errors, translate

if TYPE_CHECKING:
    from .hosts import HostSpec, HostsProvider

MAINTENANCE = ".onepane-maintenance"  # a volume in a host's pool: the host is in maintenance


class HostRoster:
    def __init__(self, provider: HostsProvider) -> None:
        self.p = provider

    def host(self, name: str) -> HostSpec:
        for h in self.p.options.hosts:
            if h.name == name:
                return h
        raise NotFound(f"no host {name!r} in location {self.p.location} (hosts: "
                       f"{', '.join(h.name for h in self.p.options.hosts)})", field="host")


    def add_host(self, spec: HostSpec) -> None:
        """A new host: it must answer (its pool is made) before it is listed."""
        with self.p._lock:
            if any(h.name == spec.name for h in self.p.options.hosts):
                raise Conflict(f"location {self.p.location} already has a host {spec.name}",
                               field="name")
            self.p.options.hosts.append(spec)
            try:
                self.p.pools.pool(spec.name)
            except OnepaneError:
                self.p.options.hosts.remove(spec)
                self.p.links.drop(spec.name)
                raise


    def remove_host(self, name: str) -> None:
        """Only an empty host leaves (empty it with maintenance first)."""
        with self.p._lock:
            spec = self.host(name)
            if len(self.p.options.hosts) == 1:
                raise Conflict(f"{name} is the last host of {self.p.location}", field="host")
            mine: list[str] = []
            with contextlib.suppress(OnepaneError):  # a dead host may go: it holds nothing
                mine = [d.name() for d in self.p.domains(name)
                        if read_metadata(d.XMLDesc(0)) is not None]
            if mine:
                raise Conflict(f"host {name} still holds {', '.join(mine)}; empty it first "
                               f"(onepane hosts maintenance {self.p.location} {name})",
                               field="host")
            self.p.options.hosts.remove(spec)
            self.p.links.drop(name)


    def maintenance(self) -> set[str]:
        """Hosts in maintenance. The mark is a volume in the host's own pool (MAINTENANCE), not
        a file of onepane's: every onepane node that drives the host sees the same."""
        lv = _libvirt()
        marked = set()
        for h in self.p.options.hosts:
            with contextlib.suppress(OnepaneError, lv.libvirtError):
                self.p.pools.pool(h.name).storageVolLookupByName(MAINTENANCE)
                marked.add(h.name)
        return marked


    def set_maintenance(self, name: str, on: bool) -> None:
        lv = _libvirt()
        self.host(name)
        pool = self.p.pools.pool(name)
        with libvirt_errors():
            try:
                vol = pool.storageVolLookupByName(MAINTENANCE)
            except lv.libvirtError:
                vol = None
            if on and vol is None:
                self.p.pools.upload(name, MAINTENANCE, f"maintenance since {time.time():.0f}\n".encode())
            elif not on and vol is not None:
                vol.delete(0)


    def hosts(self) -> list[dict[str, Any]]:
        """Each host as an operator sees it: state, capacity, what is committed, its VMs."""
        maint = self.maintenance()
        fenced = HostFailures(self.p).fenced()
        out = []
        for h in self.p.options.hosts:
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
                           for d in self.p.domains(h.name)
                           if read_metadata(d.XMLDesc(0)) is not None))
            out.append(row)
        return out


    def _load(self, name: str, maint: set[str], deployment: str | None = None) -> HostLoad:
        c = self.p.conn(name)
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
        for host, r_cpus, r_mb in list(self.p.reserved.values()):
            if host == name:
                vcpus, mem = vcpus + r_cpus, mem + r_mb
        return HostLoad(name=name, up=True, maintenance=name in maint, cpus=int(info[2]),
                        memory_mb=int(info[1]), committed_vcpus=vcpus, committed_mb=mem, vms=vms,
                        same_deployment=same)


    def _loads(self, deployment: str | None = None) -> list[HostLoad]:
        maint = self.maintenance() | HostFailures(self.p).fenced()  # neither takes a new VM
        loads = []
        for h in self.p.options.hosts:
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
            raise Conflict(f"location {self.p.location}: {exc}", field="location") from exc

    def check_growth(self, host: str, vcpus: int, memory_mb: int) -> None:
        """Conflict unless `host` can give a VM it holds `vcpus` and `memory_mb` more (a
        resize): the same limits a placement keeps."""
        load = self._load(host, set())
        if load.free_mb < memory_mb:
            raise Conflict(f"host {host} has {load.free_mb} MiB free, the resize needs "
                           f"{memory_mb} more", field="size")
        if load.committed_vcpus + vcpus > OVERCOMMIT * load.cpus:
            raise Conflict(f"host {host} has {load.committed_vcpus} of "
                           f"{int(OVERCOMMIT * load.cpus)} vCPUs committed", field="size")

    def route(self, host: str, instance: str, meta: dict[str, Any] | None = None) -> None:
        """Send onepane's machine's traffic for the guest to the host that runs it."""
        if not self.p.options.route_guests:
            return
        address = (meta or {}).get("address") or self.p.addresses.get(instance)
        if address:
            ip("route", "replace", f"{address}/32", "via", self.via(host))

    def via(self, host: str) -> str:
        """The address onepane's machine routes a host's guests through."""
        spec = self.host(host)
        return spec.route_via or urlsplit(spec.uri).hostname or ""

    def route_running(self, host: str) -> None:
        for dom in self.p.domains(host):
            with contextlib.suppress(Exception):
                meta = read_metadata(dom.XMLDesc(0))
                if meta and running(dom):
                    self.route(host, dom.name(), meta)

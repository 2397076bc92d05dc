"""Live moves of running VMs between hosts: one VM (`move`, `live_migrate` between two
locations of hosts), a host emptied for maintenance (`evacuate`), and what a move onepane died
in the middle of left behind (`reconcile_copies`).

The rule every step keeps: a move never leaves two running copies and never destroys the only
one. The destination is cleaned up after a failure only while the source still runs the guest;
the source's copy goes only once the destination's runs; a paused leftover is removed only once
the running copy is confirmed. Traffic follows the running copy: the guest's route switches the
moment the destination runs it (migration.Switch), and back to the source if the move fails.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from ...errors import Conflict, InvalidInput, OnepaneError, PermanentProviderError
from ..base import ObservedInstance, Provider
from .domain import disk_paths, nbd_exports, read_metadata
from .migration import POLL_S, Phase, Switch, Watch, failed_move, report_end
from .provider import SIZES, _libvirt, libvirt_errors

if TYPE_CHECKING:
    from .hosts import HostsProvider


class HostMoves:
    """The moves of one location of hosts (`p`); each call talks to the hosts."""

    def __init__(self, provider: HostsProvider) -> None:
        self.p = provider

    def live_migrate(self, provider_id: str, target: Provider, bound_s: float,
                     on_phase: Phase) -> ObservedInstance:
        if not isinstance(target, type(self.p)):
            raise InvalidInput(f"{target.location} is not a vm location of hosts; a running VM "
                               "moves only between locations of the same kind", field="to")
        found = self.p.locate(provider_id)
        if found is not None and inflight(found[1], bound_s):
            found = self.p.locate(provider_id)  # the earlier attempt ended: look again
        if found is None or not running(found[1]):
            there = target.locate(provider_id)
            if there is not None and running(there[1]):
                # an earlier attempt got there (onepane died before it was recorded): route to
                # it, and only now that it runs there, remove what is left at the source
                target.roster.route(there[0], provider_id)
                if found is not None:
                    self.remove_leftover(found[0], found[1])
                return target.observed(*there)
        src, dom = self.p.located(provider_id)
        meta = read_metadata(dom.XMLDesc(0)) or {}
        dst = target.roster.place(str(meta.get("size", "vm.small")),
                           (meta.get("tags") or {}).get("onepane:deployment"))
        return self.move(provider_id, src, target, dst, bound_s, on_phase)


    def evacuate(self, host: str, bound_s: float = 300.0,
                 on_move: Callable[[str, str, dict[str, Any]], None] = lambda *a: None
                 ) -> dict[str, Any]:
        """Maintenance: no new VM goes to `host`, and every VM running there moves live to
        another host (at most max_parallel_moves at once). Returns what moved and what did not."""
        self.p.roster.set_maintenance(host, True)
        todo = [d.name() for d in self.p.domains(host)
                if read_metadata(d.XMLDesc(0)) is not None and d.isActive()]
        moved: dict[str, str] = {}
        failed: dict[str, str] = {}
        place_lock = threading.Lock()

        def one(instance: str) -> None:
            try:
                with place_lock:  # two moves must not both count the same free memory
                    dom = self.p.find(host, instance)
                    if dom is None:
                        return  # gone meanwhile (destroyed): nothing to move
                    meta = read_metadata(dom.XMLDesc(0)) or {}
                    dst = self.p.roster.place(str(meta.get("size", "vm.small")),
                                     (meta.get("tags") or {}).get("onepane:deployment"),
                                     exclude=frozenset({host}))
                    cpus, mb = SIZES.get(str(meta.get("size")), SIZES["vm.small"])
                    self.p.reserved[instance] = (dst, cpus, mb)
                phases: dict[str, Any] = {}
                self.move(instance, host, self.p, dst, bound_s,
                          lambda phase, s, data: phases.update({phase: {"seconds": s, **data}}))
                moved[instance] = dst
                on_move(instance, dst, phases)
            except OnepaneError as exc:
                failed[instance] = exc.detail
                on_move(instance, "", {"error": exc.detail})
            finally:
                self.p.reserved.pop(instance, None)

        with ThreadPoolExecutor(self.p.options.max_parallel_moves) as pool:
            list(pool.map(one, todo))
        left = [d.name() for d in self.p.domains(host)
                if read_metadata(d.XMLDesc(0)) is not None and d.isActive()]
        return {"host": host, "moved": moved, "failed": failed, "still_running": left}


    def move(self, instance: str, src: str, target: HostsProvider, dst: str, bound_s: float,
             on_phase: Phase) -> ObservedInstance:
        """A live move of `instance` from host `src` (here) to host `dst` of `target`."""
        lv = _libvirt()
        if target is self.p and src == dst:
            raise InvalidInput(f"{instance} already runs on {src}", field="to")
        dom = self.p.find(src, instance)
        if dom is not None and inflight(dom, bound_s):
            dom = self.p.find(src, instance)  # the earlier attempt ended: look again
        if dom is None or not dom.isActive():
            there = target.find(dst, instance)
            if there is not None and running(there):  # an earlier attempt got there
                target.roster.route(dst, instance)
                if dom is not None:
                    self.remove_leftover(src, dom)
                return target.observed(dst, there)
            raise Conflict(f"instance {instance} is not running on {src}; only a running VM "
                           "moves live", field="instance")
        xml = dom.XMLDesc(lv.VIR_DOMAIN_XML_MIGRATABLE)
        meta = read_metadata(xml) or {}
        if nbd_exports(xml) and target is not self.p:
            raise Conflict(f"{instance}'s disks are on {self.p.location}'s network storage: it "
                           "moves live between that location's hosts only", field="to")
        target.conn(dst)  # fails early, with its reason, when the destination is down
        t0 = time.monotonic()
        try:
            target.pools.pool(dst)
            self.prepare(src, target, dst, instance, xml)
            dest_xml = xml.replace(self.p.options.pool_path, target.options.pool_path)
            params = {lv.VIR_MIGRATE_PARAM_MIGRATE_DISKS: list(disk_paths(xml)),
                      lv.VIR_MIGRATE_PARAM_BANDWIDTH: self.p.options.migration_bandwidth,
                      lv.VIR_MIGRATE_PARAM_DEST_XML: dest_xml}
            with contextlib.suppress(lv.libvirtError):
                dom.migrateSetMaxDowntime(self.p.options.migration_downtime_ms, 0)
            flags = lv.VIR_MIGRATE_LIVE | lv.VIR_MIGRATE_PEER2PEER | lv.VIR_MIGRATE_PERSIST_DEST
            if disk_paths(xml):  # disks of the host's own: copied; network storage's: not
                flags |= lv.VIR_MIGRATE_NON_SHARED_DISK
            else:
                del params[lv.VIR_MIGRATE_PARAM_MIGRATE_DISKS]
            watch = Watch(dom, t0, bound_s, on_phase)
            switch = Switch(lambda: target.links.open_connection(dst), instance,
                            lambda: target.roster.route(dst, instance, meta))
            watch.start()
            switch.start()
            try:
                dom.migrateToURI3(target.roster.host(dst).uri, params, flags)
            except lv.libvirtError as exc:
                watch.stop()
                switch.stop()
                if running(dom):
                    self.p.roster.route(src, instance, meta)  # the source runs it: traffic back there
                raise failed_move(exc, watch, instance, bound_s, f"on {src}") from exc
            watch.stop()
            switch.stop()
        except BaseException:
            HostMoves(target).clean_after_failed_move(dst, instance, source_runs=running(dom))
            raise
        moved = target.find(dst, instance)
        if moved is None:
            raise PermanentProviderError(f"{instance} is not on {dst} after its move")
        if switch.switched is None:
            target.roster.route(dst, instance, meta)
            switch.resumed = switch.switched = time.monotonic()
        report_end(on_phase, dom, watch, switch, t0, from_host=src, to_host=dst)
        # the running copy is confirmed: only now does the source's leftover go
        with contextlib.suppress(lv.libvirtError):
            if not dom.isActive():
                dom.undefine()
        self.p.pools.delete_volumes(src, instance)
        return target.observed(dst, moved)


    def reconcile_copies(self) -> list[str]:
        """After a crash in the middle of a move: where a guest is defined on several hosts,
        keep the one that runs, route to it, and remove the others — only when exactly one
        runs (two running copies are reported, never resolved by guessing)."""
        seen: dict[str, list[tuple[str, Any]]] = {}
        for name in self.p.up_hosts():
            for dom in self.p.domains(name):
                if read_metadata(dom.XMLDesc(0)) is not None:
                    seen.setdefault(dom.name(), []).append((name, dom))
        said = []
        for instance, copies in seen.items():
            if len(copies) < 2:
                continue
            live = [(h, d) for h, d in copies if running(d)]
            if len(live) != 1:
                said.append(f"{instance}: {len(live)} running copies on "
                            f"{', '.join(h for h, _ in copies)}; left as they are")
                continue
            keep, _ = live[0]
            self.p.roster.route(keep, instance)
            for h, d in copies:
                if h == keep:
                    continue
                self.remove_leftover(h, d)  # paused mid-move: the other copy is the live one
                said.append(f"{instance}: runs on {keep}; removed its leftover on {h}")
        return said


    def prepare(self, src: str, target: HostsProvider, dst: str, instance: str,
                 xml: str) -> None:
        """Empty disks of the same sizes at the destination (the mirror fills them), the
        instance's small files (its OVF environment, its keys), copied host to host, and the
        network filter its interface uses."""
        src_pool, dst_pool = self.p.pools.pool(src), target.pools.pool(dst)
        lv = _libvirt()
        with libvirt_errors():
            self.p.carry_filters(xml, self.p.conn(src), target.conn(dst))
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
                data = self.p.pools.download(src, f"{instance}-{suffix}", 1 << 20)
                if data:
                    target.pools.upload(dst, f"{instance}-{suffix}", data)


    def remove_leftover(self, host: str, dom: Any) -> None:
        """A copy that does not run (paused or stopped by a move that finished elsewhere):
        its definition and its volumes go. Never called for a running copy."""
        lv = _libvirt()
        if running(dom):
            return
        with contextlib.suppress(lv.libvirtError):
            if dom.isActive():
                dom.destroy()
        with contextlib.suppress(lv.libvirtError):
            dom.undefine()
        self.p.pools.delete_volumes(host, dom.name())


    def clean_after_failed_move(self, host: str, instance: str, source_runs: bool) -> None:
        """Remove what a failed move left at its destination — only while the source still
        runs the guest: the destination may otherwise hold the only running copy."""
        if not source_runs:
            return
        lv = _libvirt()
        with contextlib.suppress(Exception):
            dom = self.p.find(host, instance)
            if dom is not None:
                with contextlib.suppress(lv.libvirtError):
                    dom.destroy()
                with contextlib.suppress(lv.libvirtError):
                    dom.undefine()
            self.p.pools.delete_volumes(host, instance)


def inflight(dom: Any, bound_s: float) -> bool:
    """Whether a migration of `dom` was already under way — started by an onepane that died:
    a peer-to-peer migration runs on in the source's daemon without its client. A second one
    must not start beside it (it would recreate the disks the first is mirroring into), so
    this waits, within the move's bound, until the first has ended either way."""
    lv = _libvirt()
    deadline = time.monotonic() + bound_s
    waited = False
    while time.monotonic() < deadline:
        try:
            if not dom.isActive() or dom.jobInfo()[0] == lv.VIR_DOMAIN_JOB_NONE:
                return waited
        except lv.libvirtError:
            return waited
        waited = True
        time.sleep(POLL_S)
    raise Conflict(f"{dom.name()} is still in a migration started earlier after "
                   f"{bound_s:.0f} s; try again once it has ended", field="instance")


def running(dom: Any) -> bool:
    """Running, or paused by its user (not paused half-way through a move)."""
    lv = _libvirt()
    with contextlib.suppress(lv.libvirtError):
        state, reason = dom.state()
        return bool(state in (lv.VIR_DOMAIN_RUNNING, lv.VIR_DOMAIN_BLOCKED)
                    or (state == lv.VIR_DOMAIN_PAUSED and reason == lv.VIR_DOMAIN_PAUSED_USER))
    return False

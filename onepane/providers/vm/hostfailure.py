"""When a hypervisor host dies: declare it dead, fence it, start its VMs on the other hosts.

A host is **dead** when its libvirt has not answered for `host_dead_after` seconds *and* none of
its guests answers either (a TCP connection to a guest that is refused proves its kernel runs as
well as one that is accepted): a libvirtd that crashed on a healthy machine leaves its VMs
running, and starting them again elsewhere would run them twice.

**Fencing**, so that a VM never runs twice and its disk never has two writers:
- the host is marked fenced on the location's network storage (a volume `.onepane-fenced-<host>`
  in the storage pool, so every onepane node sees it) and takes no VM until it is readmitted;
- a VM started again elsewhere boots from a *fresh copy* of its disks, under new export names:
  whatever the dead host still holds open (if it was only cut off) writes to files no one else
  uses, and the new copy can never be corrupted by it;
- when the fenced host answers again, every VM of onepane's on it that runs elsewhere now is
  destroyed there (libvirt told to destroy it the moment it returns), the disks it used are
  removed, and only then is the host readmitted.
A VM whose disks were on the dead host's own pool cannot be started elsewhere: it is reported
lost, with that reason, and comes back with its host.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ...errors import Conflict, OnepaneError, PermanentProviderError
from .domain import nbd_exports, read_metadata, with_nbd_exports
from .provider import SIZES, _libvirt

if TYPE_CHECKING:
    from .hosts import HostsProvider

FENCE_PREFIX = ".onepane-fenced-"
GUEST_PROBE_PORT = 9  # discard: refused or accepted, either proves the guest's kernel runs
GUEST_PROBE_S = 1.0


@dataclass
class Recovery:
    host: str
    restarted: dict[str, str] = field(default_factory=dict)  # instance -> new host
    lost: dict[str, str] = field(default_factory=dict)  # instance -> why

    def as_dict(self) -> dict[str, Any]:
        return {"host": self.host, "restarted": self.restarted, "lost": self.lost}


def guest_answers(address: str) -> bool:
    try:
        with socket.create_connection((address, GUEST_PROBE_PORT), timeout=GUEST_PROBE_S):
            return True
    except ConnectionRefusedError:
        return True
    except OSError:
        return False


class HostFailures:
    """One location's view of its hosts' failures; every call talks to the hosts."""

    def __init__(self, provider: HostsProvider) -> None:
        self.p = provider

    # ---- detection ---------------------------------------------------------------------------

    def probe(self) -> dict[str, str]:
        """Ask every host once; host -> why it does not answer, for those that do not."""
        self.p.up_hosts()
        return dict(self.p.links.down)

    def silent_for(self, host: str) -> float:
        since = self.p.links.down_since.get(host)
        return 0.0 if since is None else time.monotonic() - since

    def guests_of(self, host: str) -> list[str]:
        return sorted(i for i, (h, _) in self.p.last_seen.items() if h == host)

    def dead(self, down: Mapping[str, str] | None = None,
             fenced: set[str] | None = None) -> list[str]:
        """Hosts silent for longer than host_dead_after whose guests are silent too, and not
        fenced yet. `down` and `fenced`: what a caller just asked (probe(), fenced()), so that a
        pass asks the hosts and the storage once."""
        fenced = self.fenced() if fenced is None else fenced
        out = []
        for host in self.probe() if down is None else down:
            if host in fenced or self.silent_for(host) < self.p.options.host_dead_after:
                continue
            addresses = [a for a in (self.p.addresses.get(i) for i in self.guests_of(host)) if a]
            if any(guest_answers(a) for a in addresses):
                continue  # only its libvirtd is away: its VMs run, they must not run twice
            out.append(host)
        return out

    # ---- fencing -----------------------------------------------------------------------------

    def fenced(self) -> set[str]:
        if self.p.options.storage is None:
            return set()
        from .hostpools import STORAGE
        with contextlib.suppress(OnepaneError):
            pool = self.p.pools.pool(STORAGE)
            with self.p._errors():
                pool.refresh(0)
                return {n.removeprefix(FENCE_PREFIX) for n in pool.listVolumes()
                        if n.startswith(FENCE_PREFIX)}
        return set()

    def fence(self, host: str) -> None:
        """Mark the host fenced where every node sees it, before any of its VMs starts
        elsewhere; its connection is dropped (it is not asked again until it answers)."""
        from .hostpools import STORAGE
        if self.p.options.storage is None:
            raise Conflict(f"{self.p.location} has no network storage: a dead host's VMs "
                           "cannot start elsewhere, so it is not fenced", field="host")
        self.p.pools.upload(STORAGE, f"{FENCE_PREFIX}{host}",
                       f"fenced at {time.time():.0f}\n".encode())
        with contextlib.suppress(Exception):
            self.p.links.open.pop(host).close()

    # ---- recovery ----------------------------------------------------------------------------

    def recover(self, host: str) -> Recovery:
        """Start every VM of the dead host on another host, from a fresh copy of its disks.
        Repeatable: a VM that runs somewhere already is left where it runs."""
        out = Recovery(host)
        for instance in self._stranded(host):
            try:
                out.restarted[instance] = self.restart(instance)
            except OnepaneError as exc:
                out.lost[instance] = exc.detail
        return out

    def _stranded(self, host: str) -> list[str]:
        """The dead host's VMs: those last listed there, and (after a restart of onepane)
        every VM on the network storage that no answering host holds."""
        from .hostpools import STORAGE
        mine = set(self.guests_of(host))
        # after a restart of onepane nothing was listed: with one host silent, the VMs on the
        # network storage that no host holds are its (with two, whose is unknown: wait)
        if self.p.options.storage is not None and set(self.p.links.down) == {host}:
            with contextlib.suppress(OnepaneError):
                pool = self.p.pools.pool(STORAGE)
                with self.p._errors():
                    pool.refresh(0)
                    mine |= {n.removesuffix("-domain.xml") for n in pool.listVolumes()
                             if n.endswith("-domain.xml")
                             and n.removesuffix("-domain.xml") not in self.p.last_seen}
        held = {d.name() for h in self.p.up_hosts() for d in self.p.domains(h)}
        return sorted(mine - held)

    def restart(self, instance: str) -> str:
        """Define and start the instance on the host placement picks, from new copies of its
        disks; returns that host."""
        from .hostpools import STORAGE
        lv = _libvirt()
        if self.p.options.storage is None:
            raise PermanentProviderError(f"{instance}'s disks were on its host's own pool; it "
                                         "comes back when its host does")
        xml = self.p.pools.download(STORAGE, f"{instance}-domain.xml", 1 << 20).decode()
        if not xml:
            raise PermanentProviderError(f"{instance}'s disks were on its host's own pool; it "
                                         "comes back when its host does")
        meta = read_metadata(xml) or {}
        # placement never picks a fenced host (it counts as one in maintenance)
        dst = self.p.roster.place(str(meta.get("size", "vm.small")),
                           (meta.get("tags") or {}).get("onepane:deployment"))
        pool = self.p.pools.pool(STORAGE)
        stamp = f"r{time.time_ns() // 1_000_000}"
        renamed: dict[str, str] = {}
        with self.p._errors():
            pool.refresh(0)
            for target, export in nbd_exports(xml).items():
                base = export.split(".r", 1)[0].removesuffix(".raw")
                fresh = f"{base}.{stamp}.raw"
                old = pool.storageVolLookupByName(export)
                pool.createXMLFrom(f"<volume><name>{fresh}</name><capacity unit='bytes'>"
                                   f"{int(old.info()[1])}</capacity><target><format "
                                   "type='raw'/></target></volume>", old, 0)
                renamed[target] = fresh
        new_xml = with_nbd_exports(xml, renamed)
        for suffix in ("ovf-env.xml", "authorized_keys"):
            data = self.p.pools.download(STORAGE, f"{instance}-{suffix}", 1 << 20)
            if data:
                self.p.pools.upload(dst, f"{instance}-{suffix}", data)
        cpus, mb = SIZES.get(str(meta.get("size")), SIZES["vm.small"])
        self.p.reserved[instance] = (dst, cpus, mb)
        try:
            with self.p._errors():
                self.p.carry_filters(new_xml, None, self.p.conn(dst))  # its host is dead
                dom = self.p.conn(dst).defineXML(new_xml)
                dom.create()
        except BaseException:
            with contextlib.suppress(Exception):  # not started: nothing of it may remain
                d = self.p.find(dst, instance)
                if d is not None:
                    with contextlib.suppress(lv.libvirtError):
                        d.undefine()
            raise
        finally:
            self.p.reserved.pop(instance, None)
        self.p.pools.upload(STORAGE, f"{instance}-domain.xml", new_xml.encode())
        self.p.roster.route(dst, instance, meta)
        self.p.last_seen[instance] = (dst, True)
        return dst

    # ---- the host comes back -----------------------------------------------------------------

    def readmit(self, host: str) -> list[str]:
        """The fenced host answers again: destroy its copies of VMs that run elsewhere now and
        remove the disks only they used, then lift the fence. Returns what was removed."""
        from .hostmoves import running as _running
        from .hostpools import STORAGE
        lv = _libvirt()
        removed = []
        others = [h for h in self.p.up_hosts() if h != host]
        for dom in self.p.domains(host):
            xml = dom.XMLDesc(0)
            if read_metadata(xml) is None:
                continue
            name = dom.name()
            live = next((d for h in others if (d := self.p.find(h, name)) is not None
                         and _running(d)), None)
            if live is None:
                continue  # its only copy (it was reported lost): it stays, adopted as it runs
            with contextlib.suppress(lv.libvirtError):
                dom.destroy()
            with contextlib.suppress(lv.libvirtError):
                dom.undefine()
            self.p.pools.delete_volumes(host, name)
            in_use = set(nbd_exports(live.XMLDesc(0)).values())
            with contextlib.suppress(OnepaneError, lv.libvirtError):
                pool = self.p.pools.pool(STORAGE)
                for export in set(nbd_exports(xml).values()) - in_use:
                    pool.storageVolLookupByName(export).delete(0)
            removed.append(name)
        with contextlib.suppress(OnepaneError, lv.libvirtError):
            self.p.pools.pool(STORAGE).storageVolLookupByName(f"{FENCE_PREFIX}{host}").delete(0)
        return removed

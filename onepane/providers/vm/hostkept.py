"""A replica's data disks kept for the replica that replaces it, at a location of hosts (the
deployment's storage policy `data: keep`; single-host vm locations: kept.py).

The VM's tags (in its domain's metadata, the instance's record) carry the key
(`onepane:data=<deployment>.<slot>`). When such a VM is destroyed its extra disks — never the
boot disk — are cloned under the key in the same pool (`kept.<key>.disk<n>.<format>`), where
they stay until the replacement takes them or the deployment's data is forgotten. The pool is
the host's own, or the network storage's when the location has one (then any host can take
them, also after the VM's host died). libvirt renames no volume: keeping and taking are clones
inside one pool (a copy of the data, made by the host), the original removed only once the
clone exists, so a crash between the two leaves both, never neither. A replacement is placed
on the host that holds its key's disks when that host has room; otherwise the disks are carried
to the chosen host over libvirt's streams first.
"""

from __future__ import annotations

import contextlib
import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ... import atomic
from ...errors import OnepaneError
from ..base import DATA_TAG
from .hostpools import STORAGE
from .kept import checked
from .provider import _libvirt, libvirt_errors

if TYPE_CHECKING:
    from .hosts import HostsProvider

DATA_DISK = re.compile(r"^(?P<instance>[^.]+)-disk(?P<n>[1-9][0-9]?)\.(?P<fmt>qcow2|raw)$")
KEPT = re.compile(r"^kept\.(?P<key>[a-z0-9][a-z0-9.-]*)\.disk(?P<n>[1-9][0-9]?)\."
                  r"(?P<fmt>qcow2|raw)$")


def key_of(tags: dict[str, Any] | None) -> str | None:
    """The data key a VM's tags give it, checked (it becomes part of volume names)."""
    key = (tags or {}).get(DATA_TAG)
    return checked(str(key)) if key else None


class HostKeptDisks:
    """Kept data disks in the pools of one location's hosts (`p`)."""

    def __init__(self, provider: HostsProvider) -> None:
        self.p = provider

    def pool_of(self, host: str) -> str:
        """Where the disks of a VM on `host` are: the network storage's pool, or the host's."""
        return STORAGE if self.p.options.storage is not None else host

    def pools(self) -> list[str]:
        """Where kept disks live: the network storage, or every host that answers."""
        return [STORAGE] if self.p.options.storage is not None else self.p.up_hosts()

    def park(self, where: str, instance: str, key: str) -> None:
        """The instance's data disks in `where`'s pool cloned under `key` (replacing what was
        kept under it before, wherever that was); nothing when it has none."""
        pool = self.p.pools.pool(where)
        with libvirt_errors():
            pool.refresh(0)
            disks = [m for m in map(DATA_DISK.match, pool.listVolumes())
                     if m is not None and m["instance"] == instance]
            if not disks:
                return  # (what is kept under the key stays: a failed create took nothing)
            self._drop(key)
            for m in disks:
                src = pool.storageVolLookupByName(m.string)
                kept = f"kept.{key}.disk{m['n']}.{m['fmt']}"
                pool.createXMLFrom(_volume(kept, int(src.info()[1]), m["fmt"]), src, 0)

    def holder(self, key: str) -> str | None:
        """The pool that holds `key`'s disks (a host, or the storage), or None."""
        for where in self.pools():
            if self._kept(where, key):
                return where
        return None

    def bring(self, key: str, source: str, host: str) -> None:
        """`key`'s disks from host `source` (its holder) onto `host` (streamed through
        onepane's machine: hosts share no pool)."""
        if source in (host, STORAGE):
            return
        with tempfile.TemporaryDirectory(prefix="onepane-kept-") as tmp:
            for name, fmt in self._kept(source, key).items():
                local = Path(tmp) / name
                self.p.pools.download_to(source, name, local)
                self.p.pools.upload(host, name, local, fmt)
        self._drop(key, keep_on=host)

    def adopt(self, where: str, instance: str, key: str, count: int) -> set[int]:
        """`key`'s disks 1..count in `where`'s pool cloned into the instance's own names
        (`<instance>-disk<n>.<format>`) and the kept ones removed; which disks were taken.
        A kept disk the new VM has no place for goes too."""
        kept = self._kept(where, key)
        if not kept:
            return set()
        pool = self.p.pools.pool(where)
        lv = _libvirt()
        taken = set()
        with libvirt_errors():
            for name, fmt in kept.items():
                n = int(KEPT.match(name)["n"])  # type: ignore[index]
                if n > count:
                    continue
                src = pool.storageVolLookupByName(name)
                target = f"{instance}-disk{n}.{fmt}"
                with contextlib.suppress(lv.libvirtError):  # a retried create's leftover
                    pool.storageVolLookupByName(target).delete(0)
                pool.createXMLFrom(_volume(target, int(src.info()[1]), fmt), src, 0)
                taken.add(n)
        self._drop(key)
        return taken

    def forget(self, deployment: str) -> list[str]:
        """Every key of a deployment (`<deployment>.<slot>`) dropped from every pool; the hosts
        that do not answer now are remembered and cleaned when they do (retry_forgotten)."""
        gone = self._forget_in(deployment, self.pools())
        if self.p.options.storage is None:
            missed = sorted(set(self.p.links.names()) - set(self.pools()))
            if missed:
                pending = self._pending()
                pending[deployment] = sorted(set(pending.get(deployment, [])) | set(missed))
                self._save(pending)
        return sorted(gone)

    def retry_forgotten(self) -> list[str]:
        """The kept disks of deleted deployments dropped from hosts that were down when the
        deployment went (the host watch calls it every pass; nothing to do is one file read).
        Returns the keys dropped."""
        pending = self._pending()
        if not pending:
            return []
        up = set(self.p.up_hosts())
        gone: set[str] = set()
        still: dict[str, list[str]] = {}
        for deployment, hosts in pending.items():
            gone |= self._forget_in(deployment, [h for h in hosts if h in up])
            if left := [h for h in hosts if h not in up and h in self.p.links.names()]:
                still[deployment] = left
        if still != pending:  # a host still down: nothing to write again
            self._save(still)
        return sorted(gone)

    def _forget_in(self, deployment: str, pools: list[str]) -> set[str]:
        gone = set()
        for where in pools:
            for key in self._keys(where):
                if key.rsplit(".", 1)[0] == deployment:
                    self._drop_in(where, key)
                    gone.add(key)
        return gone

    @property
    def _pending_file(self) -> Path:
        return self.p.root / "kept-forgotten.json"

    def _pending(self) -> dict[str, list[str]]:
        """deployment -> hosts whose kept disks of it are still to drop."""
        table = atomic.read_table(self._pending_file, "table of forgotten kept disks")
        return {d: [str(h) for h in entry.get("hosts", [])] for d, entry in table.items()
                if isinstance(entry, dict)}

    def _save(self, pending: dict[str, list[str]]) -> None:
        atomic.write_json(self._pending_file, {d: {"hosts": h} for d, h in pending.items()})

    def _keys(self, where: str) -> set[str]:
        pool = self.p.pools.pool(where)
        with libvirt_errors():
            pool.refresh(0)
            return {m["key"] for m in map(KEPT.match, pool.listVolumes()) if m is not None}

    def _kept(self, where: str, key: str) -> dict[str, str]:
        """`key`'s kept volumes in `where`'s pool: name -> format."""
        with contextlib.suppress(OnepaneError):
            pool = self.p.pools.pool(where)
            with libvirt_errors():
                pool.refresh(0)
                return {name: m["fmt"] for name in pool.listVolumes()
                        if (m := KEPT.match(name)) is not None and m["key"] == key}
        return {}

    def _drop(self, key: str, keep_on: str | None = None) -> None:
        for where in self.pools():
            if where != keep_on:
                self._drop_in(where, key)

    def _drop_in(self, where: str, key: str) -> None:
        lv = _libvirt()
        with contextlib.suppress(OnepaneError):
            pool = self.p.pools.pool(where)
            for name in self._kept(where, key):
                with contextlib.suppress(lv.libvirtError):
                    pool.storageVolLookupByName(name).delete(0)


def _volume(name: str, capacity: int, fmt: str) -> str:
    return (f"<volume><name>{name}</name><capacity unit='bytes'>{capacity}</capacity>"
            f"<target><format type='{fmt}'/></target></volume>")

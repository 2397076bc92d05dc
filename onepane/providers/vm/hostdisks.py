"""What a VM of a location of hosts is made of on its host: its disks (a qcow2 overlay on the
image in the host's own pool, or raw copies on the network storage reached over NBD), its small
files (OVF environment, SSH keys) handed to the guest through the firmware, and its domain XML
with onepane's metadata, which is the instance's record."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING

from ..base import InstanceSpec
from .domain import Disk, NbdSource
from .hostkept import key_of
from .hostpools import STORAGE
from .provider import DISK_TARGETS, FW_FILES, _libvirt, guest_domain, guest_files, libvirt_errors

if TYPE_CHECKING:
    from .hosts import HostsProvider

def define(p: HostsProvider, host: str, spec: InstanceSpec) -> str:
    address = p.addresses.allocate(spec.onepane_id)
    # on the network storage the host needs no copy of the image
    disks = shared_disks(p, spec) if p.options.storage is not None else local_disks(p, host, spec)
    files = {}
    for name, data in guest_files(spec).items():
        for where in (host, STORAGE) if p.options.storage else (host,):
            p.pools.upload(where, f"{spec.onepane_id}-{name}", data)
        files[FW_FILES[name]] = Path(p.pools.vol_path(f"{spec.onepane_id}-{name}"))
    xml = guest_domain(spec, address, disks, files,
                       Path(p.pools.vol_path(f"{spec.onepane_id}-console.log")), p.options.accel)
    if p.options.storage is not None:  # what another host boots it from if this dies
        p.pools.upload(STORAGE, f"{spec.onepane_id}-domain.xml", xml.encode())
    return xml


def local_disks(p: HostsProvider, host: str, spec: InstanceSpec) -> list[Disk]:
    """A qcow2 overlay on the image in the host's own pool, and the extra disks there."""
    image, virtual = p.pools.ensure_image(host, spec.image)
    pool = p.pools.pool(host)
    fmt = "raw" if spec.image.endswith(".raw") else "qcow2"
    root = f"{spec.onepane_id}-disk0.qcow2"
    with libvirt_errors():
        pool.createXML(f"<volume><name>{root}</name><capacity unit='bytes'>{virtual}"
                       "</capacity><target><format type='qcow2'/></target><backingStore>"
                       f"<path>{image}</path><format type='{fmt}'/></backingStore></volume>", 0)
        disks = [Disk(Path(p.pools.vol_path(root)))]
        kept = _adopt(p, host, spec)
        for n, size in enumerate(spec.disks, start=1):
            extra = f"{spec.onepane_id}-disk{n}.qcow2"
            if n in kept:  # the data a replica it replaces left: a kept disk keeps its size
                disks.append(Disk(Path(p.pools.vol_path(extra)), target=DISK_TARGETS[n]))
                continue
            pool.createXML(f"<volume><name>{extra}</name><capacity unit='bytes'>{size}"
                           "</capacity><target><format type='qcow2'/></target></volume>", 0)
            disks.append(Disk(Path(p.pools.vol_path(extra)), target=DISK_TARGETS[n]))
    return disks


def shared_disks(p: HostsProvider, spec: InstanceSpec) -> list[Disk]:
    """Raw disks on the storage host, reached over NBD: a whole copy of the image (no
    backing chain: a host reads the export, not the storage host's paths) and the extra
    disks. Raw, so that a copy taken while a dead host may still write is never a broken
    qcow2."""
    storage = p.options.storage
    assert storage is not None
    lv = _libvirt()
    p.pools.ensure_image(STORAGE, spec.image)
    pool = p.pools.pool(STORAGE)
    disks = []
    kept = _adopt(p, STORAGE, spec)
    with libvirt_errors():
        image_vol = pool.storageVolLookupByName(spec.image)
        for n, size in enumerate([0, *spec.disks]):
            name = f"{spec.onepane_id}-disk{n}.raw"
            if n not in kept:  # (a kept one holds the data a replica it replaces left)
                with contextlib.suppress(lv.libvirtError):  # a retried create's leftover
                    pool.storageVolLookupByName(name).delete(0)
                if n == 0:
                    size = int(image_vol.info()[1])
                    pool.createXMLFrom(f"<volume><name>{name}</name><capacity unit='bytes'>"
                                       f"{size}</capacity><target><format type='raw'/>"
                                       "</target></volume>", image_vol, 0)
                else:
                    pool.createXML(f"<volume><name>{name}</name><capacity unit='bytes'>"
                                   f"{size}</capacity><target><format type='raw'/></target>"
                                   "</volume>", 0)
            disks.append(Disk(Path(name), format="raw", target=DISK_TARGETS[n],
                              nbd=NbdSource(storage.nbd_host, storage.nbd_port, name)))
    return disks


def _adopt(p: HostsProvider, where: str, spec: InstanceSpec) -> set[int]:
    """The data disks kept for the replica this VM replaces, taken in `where`'s pool under
    the VM's own names (hostkept); which extra disks they are."""
    key = key_of(spec.tags)
    return p.kept.adopt(where, spec.onepane_id, key, len(spec.disks)) if key else set()

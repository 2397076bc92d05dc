"""A catalog image written out: an OVA that OVF consumers import (its disks converted to
streamOptimized VMDK, its hardware per deployment option, its properties, EULAs and product
section kept), or a single disk in the format asked."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import InvalidInput
from . import ova, ovf, ovf_writer
from .blobs import BlobStore

if TYPE_CHECKING:
    from .catalog import CatalogImage


def write(img: CatalogImage, store: BlobStore, out: Path, fmt: str = "ova",
          ovf_version: str = "1.0") -> Path:
    if fmt != "ova":
        if len(img.disks) > 1:
            raise InvalidInput(f"image {img.name} has {len(img.disks)} disks and a {fmt} file "
                               "holds one: export it as an OVA", field="format")
        first = img.disks[0]
        return Path(shutil.copyfile(store.converted(first["sha256"], fmt, first["format"],
                                                    first.get("subformat")), out))
    files: dict[str, Path] = {}
    disks, refs = [], []
    for i, d in enumerate(img.disks, start=1):
        path = store.converted(d["sha256"], "vmdk", d["format"], d.get("subformat"))
        href = f"{img.name}-disk{i}.vmdk"
        files[href] = path
        refs.append(ovf.OvfFile(id=f"file{i}", href=href, size=path.stat().st_size))
        disks.append(ovf.OvfDisk(id=d.get("id") or f"vmdisk{i}", file_ref=f"file{i}",
                                 capacity_bytes=max(d["virtual_size"],
                                                    d.get("capacity_bytes") or 0),
                                 format=ovf.VMDK_STREAM))
    meta = img.ovf or {}
    disks += [ovf.OvfDisk(id=b["id"], file_ref=None, capacity_bytes=b["capacity_bytes"],
                          format=ovf.VMDK_STREAM) for b in meta.get("blank_disks", [])]
    default = meta.get("default_option")
    options = [ovf.DeploymentOption(id=o["id"], label=o.get("label"),
                                    description=o.get("description"), default=o["id"] == default)
               for o in meta.get("options", [])]
    per_option = {(k or None): ovf.Hardware(**v) for k, v in meta.get("hardware", {}).items()} \
        or {None: ovf.Hardware(cpus=img.cpus, memory_bytes=img.memory_mb * 2**20,
                               disks=[d.id for d in disks], nics=list(img.networks))}
    default = default if default in per_option else next(iter(per_option))
    system = ovf.VirtualSystem(
        id=meta.get("system_id") or img.name, name=img.name,
        items=ovf_writer.build_items(per_option, default), os_id=meta.get("os_id"),
        os_description=img.os, product=img.product,
        properties=[ovf.Property(**p) for p in meta.get("properties", [])],
        eulas=list(meta.get("eulas", [])), annotation=meta.get("annotation"))
    networks = sorted({n for h in per_option.values() for n in h.nics if n})
    pkg = ovf.OvfPackage(version=ovf_version, files=refs, disks=disks, networks=networks,
                         systems=[system], options=options)
    ova.write_ova(pkg, files, out, ovf_version, img.name)
    return out

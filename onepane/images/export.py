"""A catalog image written out: an OVA that OVF consumers import (its disks converted to
streamOptimized VMDK, its hardware per deployment option, its properties, EULAs and product
section kept), or a single disk in the format asked; an application as one OVA of its
systems in a VirtualSystemCollection with its start order."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
    part = _member(img, store, "")
    pkg = ovf.OvfPackage(version=ovf_version, files=part.refs, disks=part.disks,
                         networks=part.networks, systems=[part.system], options=part.options)
    ova.write_ova(pkg, part.files, out, ovf_version, img.name)
    return out


def write_application(name: str, collection: str, members: list[CatalogImage],
                      startup: list[dict[str, Any]], store: BlobStore, out: Path,
                      ovf_version: str = "1.0") -> Path:
    """An application as one OVA: a VirtualSystemCollection of its members' systems, with its
    StartupSection (the order, delays and actions it was imported with)."""
    parts = [_member(img, store, f"{n}-") for n, img in enumerate(members, start=1)]
    system_of = {img.id: p.system.id for img, p in zip(members, parts, strict=True)}
    items = [ovf.StartupItem(system=system_of[line["image"]], order=line["order"],
                             start_delay=line.get("start_delay", 0),
                             waiting_for_guest=line.get("waiting_for_guest", False),
                             start_action=line.get("start_action", "powerOn"),
                             stop_delay=line.get("stop_delay", 0),
                             stop_action=line.get("stop_action", "powerOff"))
             for line in startup if line.get("order") is not None and line["image"] in system_of]
    pkg = ovf.OvfPackage(
        version=ovf_version, files=[r for p in parts for r in p.refs],
        disks=[d for p in parts for d in p.disks],
        networks=sorted({n for p in parts for n in p.networks}),
        systems=[p.system for p in parts], options=parts[0].options if parts else [],
        collection=collection, startup=items)
    ova.write_ova(pkg, {h: f for p in parts for h, f in p.files.items()}, out, ovf_version,
                  name)
    return out


@dataclass
class _Member:
    system: ovf.VirtualSystem
    files: dict[str, Path]
    refs: list[ovf.OvfFile]
    disks: list[ovf.OvfDisk]
    networks: list[str]
    options: list[ovf.DeploymentOption]


def _member(img: CatalogImage, store: BlobStore, prefix: str) -> _Member:
    """One image's system, its disks converted to streamOptimized VMDK, and its options.
    `prefix` keeps file ids apart when several systems share a package."""
    files: dict[str, Path] = {}
    disks, refs = [], []
    for i, d in enumerate(img.disks, start=1):
        path = store.converted(d["sha256"], "vmdk", d["format"], d.get("subformat"))
        href = f"{img.name}-disk{i}.vmdk"
        files[href] = path
        refs.append(ovf.OvfFile(id=f"{prefix}file{i}", href=href, size=path.stat().st_size))
        disks.append(ovf.OvfDisk(id=d.get("id") or f"{prefix}vmdisk{i}",
                                 file_ref=f"{prefix}file{i}",
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
    return _Member(system, files, refs, disks, networks, options)

"""libvirt domain XML: built from a plain description, and onepane's metadata read back.

Built with ElementTree (never string formatting) so no name, tag or path can inject XML; read
back with defusedxml because a domain's XML comes from a daemon onepane does not control.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import defusedxml.ElementTree as SafeET

META_NS = "https://onepane.dev/xmlns/instance/1"
ET.register_namespace("onepane", META_NS)


@dataclass
class NbdSource:
    """A disk on network storage: an NBD export that every host of the location reaches."""

    host: str
    port: int
    export: str


@dataclass
class Disk:
    path: Path
    format: str = "qcow2"
    target: str = "vda"
    nbd: NbdSource | None = None  # set: the disk is on network storage, `path` is unused


@dataclass
class Nic:
    mac: str
    bridge: str
    isolated: bool = False  # its bridge port talks only to the bridge itself (guestnet's doc)


@dataclass
class DomainSpec:
    name: str
    vcpus: int
    memory_mb: int
    disks: list[Disk]
    nics: list[Nic]
    console_log: Path
    accel: str = "qemu"  # "kvm" where KVM works
    firmware_config: dict[str, str] = field(default_factory=dict)  # fw_cfg name -> string
    firmware_files: dict[str, Path] = field(default_factory=dict)  # fw_cfg name -> file
    metadata: dict[str, Any] = field(default_factory=dict)


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    el = ET.SubElement(parent, tag, attrs)
    if text is not None:
        el.text = text
    return el


def domain_xml(spec: DomainSpec) -> str:
    dom = ET.Element("domain", {"type": spec.accel})
    _sub(dom, "name", spec.name)
    _sub(dom, "memory", str(spec.memory_mb), unit="MiB")
    _sub(dom, "vcpu", str(spec.vcpus))
    meta = _sub(dom, "metadata")
    _sub(meta, f"{{{META_NS}}}instance", json.dumps(spec.metadata, sort_keys=True))
    os_el = _sub(dom, "os")
    _sub(os_el, "type", "hvm", arch="x86_64", machine="pc")
    _sub(os_el, "boot", dev="hd")
    if spec.firmware_config or spec.firmware_files:
        sysinfo = _sub(dom, "sysinfo", type="fwcfg")
        for name, value in spec.firmware_config.items():
            _sub(sysinfo, "entry", value, name=name)
        for name, path in spec.firmware_files.items():
            _sub(sysinfo, "entry", name=name, file=str(path))
    features = _sub(dom, "features")
    _sub(features, "acpi")
    _sub(dom, "on_poweroff", "destroy")
    _sub(dom, "on_reboot", "restart")
    _sub(dom, "on_crash", "destroy")
    devices = _sub(dom, "devices")
    for disk in spec.disks:
        if disk.nbd is not None:
            d = _sub(devices, "disk", type="network", device="disk")
            _sub(d, "driver", name="qemu", type=disk.format, cache="none")
            src = _sub(d, "source", protocol="nbd", name=disk.nbd.export)
            _sub(src, "host", name=disk.nbd.host, port=str(disk.nbd.port))
        else:
            d = _sub(devices, "disk", type="file", device="disk")
            _sub(d, "driver", name="qemu", type=disk.format, cache="none", io="threads")
            _sub(d, "source", file=str(disk.path))
        _sub(d, "target", dev=disk.target, bus="virtio")
    for nic in spec.nics:
        n = _sub(devices, "interface", type="bridge")
        _sub(n, "mac", address=nic.mac)
        _sub(n, "source", bridge=nic.bridge)
        _sub(n, "model", type="virtio")
        _sub(n, "rom", enabled="no")
        if nic.isolated:
            _sub(n, "port", isolated="yes")
    serial = _sub(devices, "serial", type="file")
    _sub(serial, "source", path=str(spec.console_log), append="on")
    _sub(serial, "target", port="0")
    _sub(devices, "memballoon", model="none")
    return ET.tostring(dom, encoding="unicode")


def read_metadata(xml: str) -> dict[str, Any] | None:
    """onepane's metadata in a domain's XML; None for a domain onepane did not make.

    Metadata that onepane wrote but that no longer reads (an operator's `virsh edit`, a
    restore of another day) is never a reason to lose the VM or to stop a listing: it reads
    as the domain's own name for id and name, with `damaged` saying what is wrong, so the
    VM stays listed (and never looks like a stranger to clean up) while its location shows
    the damage until it is mended."""
    root = SafeET.fromstring(xml)
    el = root.find(f"metadata/{{{META_NS}}}instance")
    if el is None:
        return None
    why = ""
    try:
        data = json.loads(el.text or "")
    except ValueError as exc:
        why = f"its onepane metadata is not JSON ({exc})"
    else:
        if isinstance(data, dict) and isinstance(data.get("id", ""), str):
            return data
        why = f"its onepane metadata is a JSON {type(data).__name__}, not an object with an id"
    name = root.findtext("name") or "?"
    return {"id": name, "name": name, "damaged": why}


def resized_xml(xml: str, vcpus: int, memory_mb: int, size: str) -> str:
    """A stopped domain's definition with other vCPUs and memory, its metadata naming the
    new size; everything else as libvirt wrote it."""
    root = SafeET.fromstring(xml)
    for tag in ("memory", "currentMemory"):
        el = root.find(tag)
        if el is not None:
            el.text, el.attrib = str(memory_mb), {"unit": "MiB"}
    vcpu = root.find("vcpu")
    if vcpu is None:
        vcpu = _sub(root, "vcpu")
    vcpu.text = str(vcpus)
    meta = root.find(f"metadata/{{{META_NS}}}instance")
    if meta is not None:
        data = json.loads(meta.text or "{}")
        meta.text = json.dumps({**data, "size": size}, sort_keys=True)
    return ET.tostring(root, encoding="unicode")


def nbd_exports(xml: str) -> dict[str, str]:
    """target dev -> export name of every disk on network storage (NBD)."""
    root = SafeET.fromstring(xml)
    out = {}
    for d in root.findall("devices/disk"):
        src, tgt = d.find("source"), d.find("target")
        if src is not None and tgt is not None and src.get("protocol") == "nbd":
            out[tgt.get("dev", "")] = src.get("name", "")
    return out


def with_nbd_exports(xml: str, exports: dict[str, str]) -> str:
    """The domain XML with the named disks' exports replaced (target dev -> new export): a VM
    restarted after its host died boots from a fresh copy of its disks, never the files the
    dead host may still hold open."""
    root = SafeET.fromstring(xml)  # it came back from a daemon
    for d in root.findall("devices/disk"):
        src, tgt = d.find("source"), d.find("target")
        if src is not None and tgt is not None and tgt.get("dev") in exports:
            src.set("name", exports[tgt.get("dev", "")])
    return ET.tostring(root, encoding="unicode")


def disk_paths(xml: str) -> dict[str, Path]:
    """target dev -> source file of every file disk."""
    root = SafeET.fromstring(xml)
    out = {}
    for d in root.findall("devices/disk"):
        src, tgt = d.find("source"), d.find("target")
        if src is not None and tgt is not None and src.get("file"):
            out[tgt.get("dev", "")] = Path(src.get("file", ""))
    return out

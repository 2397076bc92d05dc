"""OVF descriptors (DMTF DSP0243, 1.x and 2.x): read what tools write, write what tools read.

VMware, VirtualBox and oVirt differ in namespaces, prefixes, units and which sections they
fill, so the reader goes by local element names and understands every unit notation they use.
Parsing is defusedxml: no DTDs, no entity expansion, no external entities.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

from ..errors import InvalidInput

NS_OVF1 = "http://schemas.dmtf.org/ovf/envelope/1"
NS_OVF2 = "http://schemas.dmtf.org/ovf/envelope/2"
NS_RASD = "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData"
NS_VSSD = "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData"
VMDK_STREAM = "http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"
RT_CPU, RT_MEMORY, RT_NIC, RT_DISK = "3", "4", "10", "17"
_UNITS = {"byte": 1, "bytes": 1, "kilobytes": 2**10, "kb": 2**10, "megabytes": 2**20,
          "mb": 2**20, "gigabytes": 2**30, "gb": 2**30, "terabytes": 2**40, "tb": 2**40}


@dataclass
class OvfFile:
    id: str
    href: str
    size: int | None


@dataclass
class OvfDisk:
    id: str
    file_ref: str | None
    capacity_bytes: int
    format: str | None


@dataclass
class VirtualSystem:
    id: str
    name: str
    cpus: int = 1
    memory_bytes: int = 0
    nics: list[str] = field(default_factory=list)  # network names
    disks: list[str] = field(default_factory=list)  # disk ids
    os_id: str | None = None
    os_description: str | None = None
    product: dict[str, str] = field(default_factory=dict)


@dataclass
class OvfPackage:
    version: str
    files: list[OvfFile]
    disks: list[OvfDisk]
    networks: list[str]
    systems: list[VirtualSystem]

    def file(self, ref: str | None) -> OvfFile | None:
        return next((f for f in self.files if f.id == ref), None)


def units(text: str | None) -> int:
    """'byte * 2^30', 'byte*2^20', 'MegaBytes', 'GB', 'byte * 1024' -> a multiplier."""
    if not text:
        return 1
    t = text.strip().lower().replace(" ", "")
    m = re.fullmatch(r"bytes?(?:\*(\d+)(?:\^(\d+))?)?", t)
    if m:
        base = int(m.group(1) or 1)
        return base ** int(m.group(2) or 1) if m.group(1) else 1
    if t in _UNITS:
        return _UNITS[t]
    raise InvalidInput(f"unknown allocation units {text!r}", field="ovf")


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _attr(el: Any, name: str) -> str | None:
    for k, v in el.attrib.items():
        if _local(k) == name:
            return str(v)
    return None


def _children(el: Any, name: str) -> list[Any]:
    return [c for c in el if _local(c.tag) == name]


def _is(el: Any, name: str) -> bool:
    """`<DiskSection>`, or oVirt's `<Section xsi:type="ovf:DiskSection_Type">`."""
    tag = _local(el.tag)
    if tag == name:
        return True
    xsi_type = _attr(el, "type") or ""
    return tag in ("Section", "Content") and xsi_type.rsplit(":", 1)[-1] == f"{name}_Type"


def _find(el: Any, name: str) -> Any | None:
    return next((c for c in el.iter() if _is(c, name)), None)


def _text(el: Any, name: str) -> str | None:
    found = next((c for c in el if _local(c.tag) == name), None)
    return found.text.strip() if found is not None and found.text else None


def parse(xml: bytes | str, source: str = "descriptor") -> OvfPackage:
    try:
        root = fromstring(xml, forbid_dtd=True)
    except DefusedXmlException as exc:
        raise InvalidInput(f"{source}: refused: {type(exc).__name__} (DTDs and entities are "
                           "not allowed in OVF descriptors)", field="ovf") from exc
    except ET.ParseError as exc:
        raise InvalidInput(f"{source}: malformed XML: {exc}", field="ovf") from exc
    if _local(root.tag) != "Envelope":
        raise InvalidInput(f"{source}: not an OVF envelope (root is {_local(root.tag)})",
                           field="ovf")
    ns = root.tag[1:].split("}")[0] if root.tag.startswith("{") else ""
    version = "2.0" if ns == NS_OVF2 else (_attr(root, "version") or "1.0")
    refs = _find(root, "References")
    files = [OvfFile(id=_attr(f, "id") or "", href=_attr(f, "href") or "",
                     size=int(s) if (s := _attr(f, "size")) else None)
             for f in (_children(refs, "File") if refs is not None else [])]
    disks = []
    section = _find(root, "DiskSection")
    for d in _children(section, "Disk") if section is not None else []:
        cap = _attr(d, "capacity")
        if cap is None:
            raise InvalidInput(f"{source}: disk {_attr(d, 'diskId')} has no capacity", field="ovf")
        try:
            capacity = int(cap) * units(_attr(d, "capacityAllocationUnits"))
        except ValueError as exc:
            raise InvalidInput(f"{source}: disk capacity {cap!r} is not a number",
                               field="ovf") from exc
        disks.append(OvfDisk(id=_attr(d, "diskId") or "", file_ref=_attr(d, "fileRef"),
                             capacity_bytes=capacity, format=_attr(d, "format")))
    net_section = _find(root, "NetworkSection")
    networks = [_attr(n, "name") or "" for n in
                (_children(net_section, "Network") if net_section is not None else [])]
    systems = [_system(vs) for vs in root.iter() if _is(vs, "VirtualSystem")]
    if not systems:
        raise InvalidInput(f"{source}: no VirtualSystem", field="ovf")
    for f in files:
        if "/" in f.href or "\\" in f.href or f.href.startswith(".") or not f.href:
            raise InvalidInput(f"{source}: file reference {f.href!r} leaves the package",
                               field="ovf")
    return OvfPackage(version=version, files=files, disks=disks, networks=networks,
                      systems=systems)


def _system(vs: Any) -> VirtualSystem:
    sys_ = VirtualSystem(id=_attr(vs, "id") or "vm", name=_text(vs, "Name") or _attr(vs, "id")
                         or "vm")
    os_section = next((c for c in vs if _is(c, "OperatingSystemSection")), None)
    if os_section is not None:
        sys_.os_id = _attr(os_section, "id")
        sys_.os_description = _text(os_section, "Description") or _attr(os_section, "osType")
    product = next((c for c in vs if _is(c, "ProductSection")), None)
    if product is not None:
        sys_.product = {k: v for k in ("Product", "Vendor", "Version", "FullVersion")
                        if (v := _text(product, k))}
    hw = next((c for c in vs.iter() if _is(c, "VirtualHardwareSection")), None)
    for item in hw if hw is not None else []:
        if _local(item.tag) not in ("Item", "StorageItem", "EthernetPortItem"):
            continue
        rtype = _text(item, "ResourceType")
        qty = _text(item, "VirtualQuantity")
        if rtype == RT_CPU and qty:
            sys_.cpus = int(qty)
        elif rtype == RT_MEMORY and qty:
            sys_.memory_bytes = int(qty) * units(_text(item, "AllocationUnits") or "byte * 2^20")
        elif rtype == RT_NIC:
            sys_.nics.append(_text(item, "Connection") or "")
        elif rtype == RT_DISK:
            host = _text(item, "HostResource") or ""
            sys_.disks.append(host.rsplit("/", 1)[-1])
    return sys_


def write(pkg: OvfPackage, version: str = "1.0") -> bytes:
    """A descriptor most tools import: OVF 1.0 by default (2.0 on request), units in MB/bytes."""
    ns = NS_OVF2 if version.startswith("2") else NS_OVF1
    ET.register_namespace("ovf", ns)
    ET.register_namespace("rasd", NS_RASD)
    ET.register_namespace("vssd", NS_VSSD)

    def q(tag: str, n: str = ns) -> str:
        return f"{{{n}}}{tag}"
    env = ET.Element(q("Envelope"), {q("version"): version if version.startswith("2") else "1.0"})
    refs = ET.SubElement(env, q("References"))
    for f in pkg.files:
        attrs = {q("id"): f.id, q("href"): f.href}
        if f.size is not None:
            attrs[q("size")] = str(f.size)
        ET.SubElement(refs, q("File"), attrs)
    ds = ET.SubElement(env, q("DiskSection"))
    ET.SubElement(ds, q("Info")).text = "Virtual disks"
    for d in pkg.disks:
        attrs = {q("diskId"): d.id, q("capacity"): str(d.capacity_bytes),
                 q("capacityAllocationUnits"): "byte", q("format"): d.format or VMDK_STREAM}
        if d.file_ref:
            attrs[q("fileRef")] = d.file_ref
        ET.SubElement(ds, q("Disk"), attrs)
    nsec = ET.SubElement(env, q("NetworkSection"))
    ET.SubElement(nsec, q("Info")).text = "Networks"
    for n in pkg.networks:
        net = ET.SubElement(nsec, q("Network"), {q("name"): n})
        ET.SubElement(net, q("Description")).text = n
    for vs in pkg.systems:
        el = ET.SubElement(env, q("VirtualSystem"), {q("id"): vs.id})
        ET.SubElement(el, q("Info")).text = "A virtual machine"
        ET.SubElement(el, q("Name")).text = vs.name
        if vs.product:
            ps = ET.SubElement(el, q("ProductSection"))
            ET.SubElement(ps, q("Info")).text = "Product"
            for k, v in vs.product.items():
                ET.SubElement(ps, q(k)).text = v
        os_el = ET.SubElement(el, q("OperatingSystemSection"), {q("id"): vs.os_id or "1"})
        ET.SubElement(os_el, q("Info")).text = "Guest OS"
        if vs.os_description:
            ET.SubElement(os_el, q("Description")).text = vs.os_description
        hw = ET.SubElement(el, q("VirtualHardwareSection"))
        ET.SubElement(hw, q("Info")).text = "Virtual hardware"
        items: list[dict[str, str]] = [
            {"ElementName": f"{vs.cpus} virtual CPU(s)", "ResourceType": RT_CPU,
             "VirtualQuantity": str(vs.cpus)},
            {"ElementName": f"{vs.memory_bytes // 2**20} MB of memory", "ResourceType": RT_MEMORY,
             "AllocationUnits": "byte * 2^20", "VirtualQuantity": str(vs.memory_bytes // 2**20)},
            *({"ElementName": f"Ethernet {i + 1}", "ResourceType": RT_NIC, "Connection": n}
              for i, n in enumerate(vs.nics)),
            *({"ElementName": f"Hard disk {i + 1}", "ResourceType": RT_DISK,
               "HostResource": f"ovf:/disk/{d}"} for i, d in enumerate(vs.disks)),
        ]
        for i, item in enumerate(items, start=1):
            it = ET.SubElement(hw, q("Item"))
            for k in sorted({**item, "InstanceID": str(i)}):
                ET.SubElement(it, q(k, NS_RASD)).text = {**item, "InstanceID": str(i)}[k]
    return ET.tostring(env, xml_declaration=True, encoding="utf-8")

"""OVF descriptors (DMTF DSP0243 0.9, 1.x and 2.x) as real producers write them.

VMware (vCenter, ovftool), VirtualBox, oVirt, Cisco appliances and Ganeti differ in namespaces,
prefixes, units, which sections they fill and whether sections are typed elements or
`<Section xsi:type=...>`, so the reader goes by local element names. What operators rely on is
kept: deployment options (an Item belongs to the configurations its `ovf:configuration` names),
ProductSection properties, every system of a VirtualSystemCollection, EULAs, the OS id.
Dangling or duplicate references are refused naming the element. Parsing is defusedxml: no DTDs,
no entity expansion, no external entities. Writing lives in `ovf_writer`.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

from ..errors import InvalidInput

NS_OVF09 = "http://www.vmware.com/schema/ovf/1/envelope"
NS_OVF1 = "http://schemas.dmtf.org/ovf/envelope/1"
NS_OVF2 = "http://schemas.dmtf.org/ovf/envelope/2"
NS_RASD = "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData"
NS_VSSD = "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData"
VMDK_STREAM = "http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"
RT_CPU, RT_MEMORY, RT_IDE, RT_SCSI, RT_NIC = "3", "4", "5", "6", "10"
RT_CDROM, RT_DVD, RT_DISK, RT_SATA = "15", "16", "17", "20"
_UNITS = {"byte": 1, "bytes": 1, "kilobytes": 2**10, "kb": 2**10, "megabytes": 2**20,
          "mb": 2**20, "gigabytes": 2**30, "gb": 2**30, "terabytes": 2**40, "tb": 2**40}
_PROPERTY_REF = re.compile(r"^\$\{([^}]+)\}$")


def envelope_version(namespace: str, declared: str | None) -> str | None:
    """The OVF version an envelope namespace stands for; None for one that is not OVF's.
    oVirt writes the 1.x namespace with a trailing slash."""
    ns = namespace.rstrip("/")
    if ns == NS_OVF09:
        return "0.9"
    if ns == NS_OVF1:
        return declared if declared and declared.startswith("1.") else "1.0"
    if ns == NS_OVF2:
        return "2.0"
    return None


@dataclass
class OvfFile:
    id: str
    href: str
    size: int | None
    compression: str | None = None  # "gzip"
    chunk_size: int | None = None  # split into href.000000000, href.000000001, ...


@dataclass
class OvfDisk:
    id: str
    file_ref: str | None
    capacity_bytes: int
    format: str | None
    capacity: str | None = None  # as written, when it is a ${property} reference
    capacity_units: int = 1


@dataclass
class Property:
    key: str  # as written
    id: str  # the full key DSP0243 defines: [class.]key[.instance]
    type: str = "string"
    default: str = ""
    user_configurable: bool = False
    password: bool = False
    label: str | None = None
    description: str | None = None
    qualifiers: str | None = None
    category: str | None = None
    cls: str | None = None  # the ProductSection's ovf:class and ovf:instance
    instance: str | None = None


@dataclass
class DeploymentOption:
    id: str
    label: str | None = None
    description: str | None = None
    default: bool = False


@dataclass
class Item:
    """One RASD Item of a VirtualHardwareSection; `configurations` None means every option."""

    instance_id: str
    resource_type: str
    quantity: str | None = None
    units: str | None = None
    host_resource: str | None = None
    connection: str | None = None
    parent: str | None = None
    address_on_parent: str | None = None
    address: str | None = None  # a controller's own bus address
    subtype: str | None = None
    name: str | None = None
    configurations: frozenset[str] | None = None


@dataclass
class Hardware:
    """What a virtual system gets under one deployment option."""

    cpus: int = 1
    memory_bytes: int = 0
    disks: list[str] = field(default_factory=list)  # disk ids
    nics: list[str] = field(default_factory=list)  # network names


@dataclass
class VirtualSystem:
    id: str
    name: str
    items: list[Item] = field(default_factory=list)
    os_id: str | None = None
    os_description: str | None = None
    product: dict[str, str] = field(default_factory=dict)
    properties: list[Property] = field(default_factory=list)
    eulas: list[str] = field(default_factory=list)
    annotation: str | None = None
    default_option: str | None = None
    # The NICs a vendor section names, in order: (the standard name it stands for, the real
    # one). Ganeti leaves rasd:Connection empty and names the network in its GanetiSection;
    # VirtualBox writes its attachment type ("Internal", "HostOnly", "Bridged") as the
    # network and the network's own name only in its vbox:Machine section.
    vendor_nics: list[tuple[str | None, str]] = field(default_factory=list)

    def hardware(self, option: str | None = None) -> Hardware:
        """The hardware under `option` (default: the package's default). For each InstanceID
        the Item that names the option wins over the one that names none."""
        option = option or self.default_option
        chosen: dict[str, Item] = {}
        for item in self.items:
            if item.configurations is None:
                chosen.setdefault(item.instance_id, item)
        for item in self.items:
            if item.configurations is not None and option in item.configurations:
                chosen[item.instance_id] = item
        hw = Hardware()
        for item in chosen.values():
            if item.resource_type == RT_CPU and item.quantity:
                hw.cpus = _int(item.quantity, f"VirtualSystem {self.id!r} Item "
                                              f"{item.instance_id!r} VirtualQuantity")
            elif item.resource_type == RT_MEMORY and item.quantity:
                hw.memory_bytes = (_int(item.quantity, f"VirtualSystem {self.id!r} Item "
                                                       f"{item.instance_id!r} VirtualQuantity")
                                   * units(item.units or "byte * 2^20"))
            elif item.resource_type == RT_NIC:
                hw.nics.append(self._network_of(item.connection or "", len(hw.nics)))
            elif item.resource_type == RT_DISK and item.host_resource:
                kind, ref = host_resource(item.host_resource)
                if kind == "disk":
                    hw.disks.append(ref)
        return hw

    def _network_of(self, connection: str, index: int) -> str:
        """The index-th NIC's network: its rasd:Connection, unless that is empty or only the
        placeholder a vendor section gives the real name for."""
        if index >= len(self.vendor_nics):
            return connection
        stands_for, name = self.vendor_nics[index]
        if name and (not connection or connection == stands_for):
            return name
        return connection

    # The default option's hardware, for callers that know of one configuration only.
    @property
    def cpus(self) -> int:
        return self.hardware().cpus

    @property
    def memory_bytes(self) -> int:
        return self.hardware().memory_bytes

    @property
    def disks(self) -> list[str]:
        return self.hardware().disks

    @property
    def nics(self) -> list[str]:
        return self.hardware().nics


@dataclass
class StartupItem:
    """One line of a collection's StartupSection (DSP0243 9.13): systems start in ascending
    `order` (the same order: together), each `start_delay` seconds after the one before (or
    once its guest tools say it runs, `waiting_for_guest`), and stop in the reverse order."""

    system: str
    order: int
    start_delay: int = 0
    waiting_for_guest: bool = False
    start_action: str = "powerOn"
    stop_delay: int = 0
    stop_action: str = "powerOff"


@dataclass
class OvfPackage:
    version: str
    files: list[OvfFile]
    disks: list[OvfDisk]
    networks: list[str]
    systems: list[VirtualSystem]
    options: list[DeploymentOption] = field(default_factory=list)
    collection: str | None = None  # the VirtualSystemCollection's id, when there is one
    properties: list[Property] = field(default_factory=list)  # envelope/collection level
    startup: list[StartupItem] = field(default_factory=list)  # the collection's, by order

    def file(self, ref: str | None) -> OvfFile | None:
        return next((f for f in self.files if f.id == ref), None)

    def disk(self, disk_id: str) -> OvfDisk | None:
        return next((d for d in self.disks if d.id == disk_id), None)

    @property
    def default_option(self) -> str | None:
        """DSP0243: the option marked default, else the first one listed."""
        marked = next((o.id for o in self.options if o.default), None)
        return marked or (self.options[0].id if self.options else None)

    def option(self, wanted: str | None) -> str | None:
        if wanted is None:
            return self.default_option
        if not any(o.id == wanted for o in self.options):
            known = ", ".join(o.id for o in self.options) or "none"
            raise InvalidInput(f"no deployment option {wanted!r}; the package has: {known}",
                               field="deployment_option")
        return wanted


def units(text: str | None) -> int:
    """'byte * 2^30', 'byte*2^20', 'byte * 10^6', 'MegaBytes', 'GB', 'byte * 1024' -> a
    multiplier."""
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


def host_resource(text: str) -> tuple[str, str]:
    """'ovf:/disk/vmdisk1', '/disk/vmdisk1', 'ovf:/file/f1', oVirt's 'fileid/diskid'."""
    t = text.strip()
    m = re.fullmatch(r"(?:ovf:)?/(disk|file)/(.+)", t)
    if m:
        return m.group(1), m.group(2)
    return "disk", t.rsplit("/", 1)[-1]


def _int(text: str, what: str) -> int:
    try:
        return int(text.strip())
    except ValueError as exc:
        raise InvalidInput(f"{what} {text!r} is not a whole number", field="ovf") from exc


def _local(tag: Any) -> str:
    return str(tag).rsplit("}", 1)[-1]


def _attr(el: Any, name: str) -> str | None:
    for k, v in el.attrib.items():
        if _local(k) == name:
            return str(v)
    return None


VBOX_ATTACHMENTS = {"InternalNetwork": "Internal", "HostOnlyInterface": "HostOnly",
                    "BridgedInterface": "Bridged", "NATNetwork": "NATNetwork",
                    "GenericInterface": "Generic"}


def vendor_nics(vs: Any, root: Any) -> list[tuple[str | None, str]]:
    """The NIC networks a vendor section names for this system (see VirtualSystem): Ganeti's
    GanetiSection (in the system or, as Ganeti writes it, in the envelope) or VirtualBox's
    vbox:Machine (its enabled adapters, in slot order: the order it exports NIC items in)."""
    ganeti = _section([*vs, *root], "GanetiSection")
    if ganeti is not None:
        network = _section(ganeti, "Network")
        return [(None, _text(nic, "Net") or _attr(nic, "name") or "")
                for nic in _sections(network if network is not None else [], "Nic")]
    network = vs
    for step in ("Machine", "Hardware", "Network"):  # vbox:Machine/Hardware/Network
        network = _section(network, step) if network is not None else None
    if network is None:
        return []
    adapters = sorted((a for a in _sections(network, "Adapter")
                       if (_attr(a, "enabled") or "true").lower() == "true"),
                      key=lambda a: _int_or(_attr(a, "slot"), 0))
    out: list[tuple[str | None, str]] = []
    for adapter in adapters:
        attached = next((c for c in adapter if _local(c.tag) in VBOX_ATTACHMENTS), None)
        if attached is None:  # NAT, or not attached: the standard name is all there is
            out.append((None, ""))
            continue
        out.append((VBOX_ATTACHMENTS[_local(attached.tag)],
                    _attr(attached, "name") or _attr(attached, "driver") or ""))
    return out


def _int_or(text: str | None, default: int) -> int:
    try:
        return int(text or "")
    except ValueError:
        return default


def _is(el: Any, name: str) -> bool:
    """`<DiskSection>`, or 0.9's and oVirt's `<Section xsi:type="ovf:DiskSection_Type">`."""
    tag = _local(el.tag)
    if tag == name:
        return True
    xsi_type = _attr(el, "type") or ""
    return tag in ("Section", "Content") and xsi_type.rsplit(":", 1)[-1] == f"{name}_Type"


def _sections(el: Any, name: str) -> list[Any]:
    return [c for c in el if _is(c, name)]


def _section(el: Any, name: str) -> Any | None:
    return next(iter(_sections(el, name)), None)


def _text(el: Any, name: str) -> str | None:
    found = next((c for c in el if _local(c.tag) == name), None)
    return found.text.strip() if found is not None and found.text else None


def _bool(text: str | None) -> bool:
    return (text or "").strip().lower() in ("true", "1")


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
    version = envelope_version(ns, _attr(root, "version"))
    if version is None:
        raise InvalidInput(f"{source}: envelope namespace {ns or '(none)'!r} is not OVF 0.9, "
                           "1.x or 2.x", field="ovf")
    return _Reader(source).read(root, version)


class _Reader:
    """One descriptor's reading: collects what the sections say, then checks references."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, what: str) -> InvalidInput:
        return InvalidInput(f"{self.source}: {what}", field="ovf")

    def read(self, root: Any, version: str) -> OvfPackage:
        files = self._files(root)
        disks = self._disks(root)
        net = _section(root, "NetworkSection")
        networks = [_attr(n, "name") or "" for n in net if _local(n.tag) == "Network"] \
            if net is not None else []
        options = self._options(root)
        content = next((c for c in root if _is(c, "VirtualSystem")
                        or _is(c, "VirtualSystemCollection")), None)
        if content is None:
            raise self.fail("no VirtualSystem")
        collection = _attr(content, "id") if _is(content, "VirtualSystemCollection") else None
        systems = [self._system(vs, root) for vs in content.iter() if _is(vs, "VirtualSystem")]
        if not systems:
            raise self.fail("no VirtualSystem")
        shared = [p for ps in _sections(root, "ProductSection") for p in self._properties(ps)]
        if collection is not None:
            shared += [p for ps in _sections(content, "ProductSection")
                       for p in self._properties(ps)]
        startup = self._startup(content, systems) if collection is not None else []
        pkg = OvfPackage(version=version, files=files, disks=disks, networks=networks,
                         systems=systems, options=options, collection=collection,
                         properties=shared, startup=startup)
        for vs in systems:
            vs.default_option = pkg.default_option
            for option in [o.id for o in options] or [""]:
                vs.hardware(option or None)  # numbers and units are checked now, not at first use
        self._check_references(pkg)
        self._resolve_capacities(pkg)
        return pkg

    def _startup(self, collection: Any, systems: list[VirtualSystem]) -> list[StartupItem]:
        """The collection's StartupSection, sorted by order; an item naming no system of the
        collection is refused (a dependency on nothing is a broken package)."""
        section = _section(collection, "StartupSection")
        if section is None:
            return []
        ids = {vs.id for vs in systems}
        items = []
        for el in section:
            if _local(el.tag) != "Item":
                continue
            system = _attr(el, "id") or ""
            if system not in ids:
                raise self.fail(f"StartupSection names {system!r}, which is not a system of "
                                f"the collection ({', '.join(sorted(ids))})")
            order = _int(_attr(el, "order") or "", "StartupSection ovf:order")
            items.append(StartupItem(
                system=system, order=order,
                start_delay=_int(_attr(el, "startDelay") or "0", "ovf:startDelay"),
                waiting_for_guest=_bool(_attr(el, "waitingForGuest")),
                start_action=_attr(el, "startAction") or "powerOn",
                stop_delay=_int(_attr(el, "stopDelay") or "0", "ovf:stopDelay"),
                stop_action=_attr(el, "stopAction") or "powerOff"))
        return sorted(items, key=lambda i: i.order)

    def _files(self, root: Any) -> list[OvfFile]:
        refs = _section(root, "References")
        files = []
        for f in (c for c in refs if _local(c.tag) == "File") if refs is not None else []:
            fid, href = _attr(f, "id") or "", _attr(f, "href") or ""
            where = f"References/File[@id={fid!r}]"
            if not href or "/" in href or "\\" in href or href.startswith(".") or ":" in href:
                raise self.fail(f"{where}: file reference {href!r} leaves the package (only "
                                "plain names of files inside it are accepted)")
            size = _attr(f, "size")
            chunk = _attr(f, "chunkSize")
            compression = _attr(f, "compression")
            if compression not in (None, "", "identity", "gzip"):
                raise self.fail(f"{where}: compression {compression!r} is not supported "
                                "(gzip is)")
            files.append(OvfFile(
                id=fid, href=href,
                size=_int(size, f"{where} ovf:size") if size is not None else None,
                compression="gzip" if compression == "gzip" else None,
                chunk_size=_int(chunk, f"{where} ovf:chunkSize") if chunk else None))
        self._unique([f.id for f in files], "References/File ovf:id")
        self._unique([f.href for f in files], "References/File ovf:href")
        return files

    def _disks(self, root: Any) -> list[OvfDisk]:
        section = _section(root, "DiskSection")
        disks = []
        for d in (c for c in section if _local(c.tag) == "Disk") if section is not None else []:
            did = _attr(d, "diskId") or ""
            where = f"DiskSection/Disk[@diskId={did!r}]"
            cap = _attr(d, "capacity")
            if not did:
                raise self.fail("DiskSection/Disk without ovf:diskId")
            if cap is None and not _attr(d, "fileRef"):
                raise self.fail(f"{where} has no ovf:capacity")
            cap = cap or "0"  # Ganeti leaves it out; the file's own virtual size then counts
            mult = units(_attr(d, "capacityAllocationUnits"))
            ref = _PROPERTY_REF.match(cap.strip())
            disks.append(OvfDisk(
                id=did, file_ref=_attr(d, "fileRef") or None,
                capacity_bytes=0 if ref else _int(cap, f"{where} ovf:capacity") * mult,
                format=_attr(d, "format"), capacity=cap.strip() if ref else None,
                capacity_units=mult))
        self._unique([d.id for d in disks], "DiskSection/Disk ovf:diskId")
        return disks

    def _options(self, root: Any) -> list[DeploymentOption]:
        section = _section(root, "DeploymentOptionSection")
        options = [DeploymentOption(id=_attr(c, "id") or "", label=_text(c, "Label"),
                                    description=_text(c, "Description"),
                                    default=_bool(_attr(c, "default")))
                   for c in (section if section is not None else []) if _local(c.tag) ==
                   "Configuration"]
        self._unique([o.id for o in options], "DeploymentOptionSection/Configuration ovf:id")
        return options

    def _system(self, vs: Any, root: Any) -> VirtualSystem:
        sys_ = VirtualSystem(id=_attr(vs, "id") or "vm",
                             name=_text(vs, "Name") or _attr(vs, "id") or "vm",
                             vendor_nics=vendor_nics(vs, root))
        os_section = _section(vs, "OperatingSystemSection")
        if os_section is not None:
            sys_.os_id = _attr(os_section, "id")
            sys_.os_description = _text(os_section, "Description") or _attr(os_section, "osType")
        for ps in _sections(vs, "ProductSection"):
            sys_.product.update({k: v for k in ("Product", "Vendor", "Version", "FullVersion")
                                 if (v := _text(ps, k)) and k not in sys_.product})
            sys_.properties += self._properties(ps)
        sys_.eulas = [t for e in _sections(vs, "EulaSection") if (t := _text(e, "License"))]
        annotation = _section(vs, "AnnotationSection")
        sys_.annotation = _text(annotation, "Annotation") if annotation is not None else None
        hw_sections = _sections(vs, "VirtualHardwareSection")
        for hw in hw_sections[:1]:  # further sections describe other virtualization platforms
            sys_.items = [self._item(it, sys_.id) for it in hw
                          if _local(it.tag) in ("Item", "StorageItem", "EthernetPortItem")]
        return sys_

    def _item(self, it: Any, system: str) -> Item:
        instance = _text(it, "InstanceID") or _text(it, "InstanceId") or ""
        configs = _attr(it, "configuration")
        return Item(
            instance_id=instance, resource_type=_text(it, "ResourceType") or "",
            quantity=_text(it, "VirtualQuantity"), units=_text(it, "AllocationUnits"),
            host_resource=_text(it, "HostResource"), connection=_text(it, "Connection"),
            parent=_text(it, "Parent"), address_on_parent=_text(it, "AddressOnParent"),
            address=_text(it, "Address"),
            subtype=_text(it, "ResourceSubType"),
            name=_text(it, "ElementName") or _text(it, "Caption"),
            configurations=frozenset(configs.split()) if configs is not None else None)

    def _properties(self, ps: Any) -> list[Property]:
        cls, inst = _attr(ps, "class"), _attr(ps, "instance")
        props, category = [], None
        for c in ps:
            tag = _local(c.tag)
            if tag == "Category":
                category = (c.text or "").strip() or None
            if tag != "Property":
                continue
            key = _attr(c, "key")
            if not key:
                raise self.fail("ProductSection/Property without ovf:key")
            full = ".".join(p for p in (cls, key, inst) if p)
            props.append(Property(
                key=key, id=full, type=_attr(c, "type") or "string",
                default=_attr(c, "value") or "",
                user_configurable=_bool(_attr(c, "userConfigurable")),
                password=_bool(_attr(c, "password")), label=_text(c, "Label"),
                description=_text(c, "Description"), qualifiers=_attr(c, "qualifiers"),
                category=category, cls=cls, instance=inst))
        return props

    def _unique(self, values: list[str], what: str) -> None:
        seen: set[str] = set()
        for v in values:
            if v in seen:
                raise self.fail(f"two elements share {what} {v!r}")
            seen.add(v)

    def _check_references(self, pkg: OvfPackage) -> None:
        file_ids = {f.id for f in pkg.files}
        disk_ids = {d.id for d in pkg.disks}
        option_ids = {o.id for o in pkg.options}
        for d in pkg.disks:
            if d.file_ref and d.file_ref not in file_ids:
                raise self.fail(f"DiskSection/Disk[@diskId={d.id!r}] ovf:fileRef "
                                f"{d.file_ref!r} names no References/File")
        for vs in pkg.systems:
            ids = [i.instance_id for i in vs.items if i.configurations is None]
            self._unique(ids, f"VirtualSystem {vs.id!r} Item InstanceID")
            for item in vs.items:
                where = f"VirtualSystem {vs.id!r} Item {item.instance_id!r}"
                for c in item.configurations or ():
                    if c not in option_ids:
                        raise self.fail(f"{where}: ovf:configuration names {c!r}, which is "
                                        "not in the DeploymentOptionSection")
                if not item.host_resource:
                    continue
                kind, ref = host_resource(item.host_resource)
                known = disk_ids if kind == "disk" else file_ids
                if ref not in known:
                    raise self.fail(f"{where}: HostResource {item.host_resource!r} names no "
                                    f"{'Disk' if kind == 'disk' else 'File'}")

    def _resolve_capacities(self, pkg: OvfPackage) -> None:
        for d in pkg.disks:
            if d.capacity is None:
                continue
            key = _PROPERTY_REF.match(d.capacity).group(1)  # type: ignore[union-attr]
            prop = find_property(pkg, key)
            if prop is None:
                raise self.fail(f"DiskSection/Disk[@diskId={d.id!r}] ovf:capacity "
                                f"{d.capacity!r} names no ProductSection property")
            d.capacity_bytes = _int(prop.default or "0", f"property {key}") * d.capacity_units


def every_property(pkg: OvfPackage) -> list[Property]:
    return [*pkg.properties, *(p for vs in pkg.systems for p in vs.properties)]


def find_property(pkg: OvfPackage, key: str) -> Property | None:
    return next((p for p in every_property(pkg) if key in (p.id, p.key)), None)

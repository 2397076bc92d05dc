"""OVF descriptors that other tools import: VMware's ovftool, VirtualBox, COT, virt-v2v.

What they insist on, and DSP0243 requires: RASD elements in schema (alphabetical) order, disks
hanging off a controller Item through `rasd:Parent`, a NetworkSection only when something
connects to a network, `ovf:id` on the OperatingSystemSection, deployment options as Items that
name their configurations, properties in a ProductSection.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable

from .ovf import (
    NS_OVF1,
    NS_OVF2,
    NS_RASD,
    NS_VSSD,
    RT_CPU,
    RT_DISK,
    RT_MEMORY,
    RT_NIC,
    RT_SCSI,
    VMDK_STREAM,
    Hardware,
    Item,
    OvfPackage,
    Property,
    VirtualSystem,
)

CONTROLLER_ID = "3"
OS_OTHER = "1"  # CIM_OperatingSystem "Other"


def build_items(per_option: dict[str | None, Hardware], default: str | None) -> list[Item]:
    """Items for every option: one base Item per resource, with the default option's value, and
    an Item naming the options whose value differs. A disk or NIC that only some options have
    names those options."""
    options = list(per_option)
    base = per_option[default]
    items = [*_varying(RT_CPU, "1", per_option, default, lambda h: str(h.cpus), None),
             *_varying(RT_MEMORY, "2", per_option, default,
                       lambda h: str(h.memory_bytes // 2**20), "byte * 2^20"),
             Item(instance_id=CONTROLLER_ID, resource_type=RT_SCSI, subtype="lsilogic",
                  name="SCSI Controller 0", address="0")]
    next_id = 4
    all_disks = list(dict.fromkeys(d for h in per_option.values() for d in h.disks))
    for n, disk_id in enumerate(all_disks):
        having = frozenset(o for o in options if disk_id in per_option[o].disks if o)
        items.append(Item(instance_id=str(next_id), resource_type=RT_DISK,
                          host_resource=f"ovf:/disk/{disk_id}", parent=CONTROLLER_ID,
                          address_on_parent=str(n), name=f"Hard disk {n + 1}",
                          configurations=None if disk_id in base.disks else having))
        next_id += 1
    longest = max(range(len(options)), key=lambda i: len(per_option[options[i]].nics))
    for n, network in enumerate(per_option[options[longest]].nics):
        having = frozenset(o for o in options if o and len(per_option[o].nics) > n)
        items.append(Item(instance_id=str(next_id), resource_type=RT_NIC, connection=network,
                          subtype="VmxNet3", address_on_parent=str(7 + n),
                          name=f"Network adapter {n + 1}",
                          configurations=None if len(base.nics) > n else having))
        next_id += 1
    return items


def _varying(rtype: str, instance: str, per_option: dict[str | None, Hardware],
             default: str | None, get: Callable[[Hardware], str], unit: str | None) -> list[Item]:
    base = get(per_option[default])
    noun = "virtual CPU(s)" if rtype == RT_CPU else "MB of memory"
    items = [Item(instance_id=instance, resource_type=rtype, quantity=base, units=unit,
                  name=f"{base} {noun}")]
    by_value: dict[str, set[str]] = {}
    for option, hw in per_option.items():
        if option and option != default and get(hw) != base:
            by_value.setdefault(get(hw), set()).add(option)
    items += [Item(instance_id=instance, resource_type=rtype, quantity=v, units=unit,
                   name=f"{v} {noun}", configurations=frozenset(opts))
              for v, opts in sorted(by_value.items())]
    return items


def write(pkg: OvfPackage, version: str = "1.0") -> bytes:
    """OVF 1.0 by default (2.0 on request)."""
    return _Writer(version).envelope(pkg)


class _Writer:
    def __init__(self, version: str) -> None:
        self.two = version.startswith("2")
        self.ns = NS_OVF2 if self.two else NS_OVF1
        ET.register_namespace("ovf", self.ns)
        ET.register_namespace("rasd", NS_RASD)
        ET.register_namespace("vssd", NS_VSSD)

    def q(self, tag: str) -> str:
        return f"{{{self.ns}}}{tag}"

    def sub(self, parent: ET.Element, tag: str, text: str | None = None,
            **attrs: str) -> ET.Element:
        el = ET.SubElement(parent, self.q(tag), {self.q(k): v for k, v in attrs.items()})
        if text is not None:
            el.text = text
        return el

    def envelope(self, pkg: OvfPackage) -> bytes:
        sub = self.sub
        env = ET.Element(self.q("Envelope"), {self.q("version"): "2.0" if self.two else "1.0"})
        refs = sub(env, "References")
        for f in pkg.files:
            sub(refs, "File", id=f.id, href=f.href,
                **({"size": str(f.size)} if f.size is not None else {}))
        ds = sub(env, "DiskSection")
        sub(ds, "Info", "Virtual disk information")
        for d in pkg.disks:
            sub(ds, "Disk", capacity=str(d.capacity_bytes), capacityAllocationUnits="byte",
                diskId=d.id, format=d.format or VMDK_STREAM,
                **({"fileRef": d.file_ref} if d.file_ref else {}))
        if pkg.networks:
            nsec = sub(env, "NetworkSection")
            sub(nsec, "Info", "The list of logical networks")
            for n in pkg.networks:
                sub(sub(nsec, "Network", name=n), "Description", f"The {n} network")
        if pkg.options:
            dsec = sub(env, "DeploymentOptionSection")
            sub(dsec, "Info", "Deployment options")
            for o in pkg.options:
                c = sub(dsec, "Configuration", id=o.id,
                        **({"default": "true"} if o.id == pkg.default_option else {}))
                sub(c, "Label", o.label or o.id)
                sub(c, "Description", o.description or o.label or o.id)
        parent = env
        if pkg.collection is not None:  # an application: its systems and their start order
            parent = sub(env, "VirtualSystemCollection", id=pkg.collection)
            sub(parent, "Info", "A collection of virtual machines")
            sub(parent, "Name", pkg.collection)
            if pkg.startup:
                start = sub(parent, "StartupSection")
                sub(start, "Info", "The order the systems start and stop in")
                for item in pkg.startup:
                    sub(start, "Item", id=item.system, order=str(item.order),
                        startDelay=str(item.start_delay),
                        waitingForGuest="true" if item.waiting_for_guest else "false",
                        startAction=item.start_action, stopDelay=str(item.stop_delay),
                        stopAction=item.stop_action)
        for vs in pkg.systems:
            self.system(sub(parent, "VirtualSystem", id=vs.id), vs)
        return ET.tostring(env, xml_declaration=True, encoding="utf-8")

    def system(self, el: ET.Element, vs: VirtualSystem) -> None:
        sub = self.sub
        sub(el, "Info", "A virtual machine")
        sub(el, "Name", vs.name)
        if vs.annotation:
            ann = sub(el, "AnnotationSection")
            sub(ann, "Info", "A human-readable annotation")
            sub(ann, "Annotation", vs.annotation)
        self.products(el, vs.product, vs.properties)
        for text in vs.eulas:
            eula = sub(el, "EulaSection")
            sub(eula, "Info", "License agreement")
            sub(eula, "License", text)
        os_el = sub(el, "OperatingSystemSection", id=vs.os_id or OS_OTHER)
        sub(os_el, "Info", "The kind of installed guest operating system")
        if vs.os_description:
            sub(os_el, "Description", vs.os_description)
        hw = sub(el, "VirtualHardwareSection")
        sub(hw, "Info", "Virtual hardware requirements")
        system = sub(hw, "System")
        for tag, text in (("ElementName", "Virtual Hardware Family"), ("InstanceID", "0"),
                          ("VirtualSystemIdentifier", vs.id), ("VirtualSystemType", "vmx-10")):
            ET.SubElement(system, f"{{{NS_VSSD}}}{tag}").text = text
        for item in vs.items:
            attrs = {self.q("configuration"): " ".join(sorted(item.configurations))} \
                if item.configurations else {}
            it = ET.SubElement(hw, self.q("Item"), attrs)
            for k, v in sorted(_rasd(item).items()):
                ET.SubElement(it, f"{{{NS_RASD}}}{k}").text = v

    def products(self, el: ET.Element, product: dict[str, str],
                 properties: Iterable[Property]) -> None:
        """One ProductSection per ovf:class/ovf:instance the properties came with; the product
        facts go in the first."""
        groups: dict[tuple[str | None, str | None], list[Property]] = {}
        for p in properties:
            groups.setdefault((p.cls, p.instance), []).append(p)
        if not groups and product:
            groups[(None, None)] = []
        for n, ((cls, inst), props) in enumerate(groups.items()):
            ps = self.sub(el, "ProductSection", **{k: v for k, v in (("class", cls),
                                                                   ("instance", inst)) if v})
            self.sub(ps, "Info", "Information about the installed software")
            for k in ("Product", "Vendor", "Version", "FullVersion") if n == 0 else ():
                if product.get(k):
                    self.sub(ps, k, product[k])
            category = None
            for p in props:
                if p.category and p.category != category:
                    category = p.category
                    self.sub(ps, "Category", category)
                attrs = {"key": p.key, "type": p.type, "value": p.default,
                         "userConfigurable": "true" if p.user_configurable else "false"}
                if p.password:
                    attrs["password"] = "true"
                if p.qualifiers:
                    attrs["qualifiers"] = p.qualifiers
                prop = self.sub(ps, "Property", **attrs)
                if p.label:
                    self.sub(prop, "Label", p.label)
                if p.description:
                    self.sub(prop, "Description", p.description)


def _rasd(item: Item) -> dict[str, str]:
    fields = {"InstanceID": item.instance_id, "ResourceType": item.resource_type,
              "ElementName": item.name or f"Item {item.instance_id}",
              "VirtualQuantity": item.quantity, "AllocationUnits": item.units,
              "HostResource": item.host_resource, "Connection": item.connection,
              "Parent": item.parent, "AddressOnParent": item.address_on_parent,
              "Address": item.address,
              "ResourceSubType": item.subtype}
    if item.resource_type == RT_NIC:
        fields["AutomaticAllocation"] = "true"
    return {k: v for k, v in fields.items() if v is not None}

"""The libvirt domain XML onepane writes: what a VM gets from a catalog image's OVF."""

from __future__ import annotations

from pathlib import Path

import defusedxml.ElementTree as ET

from onepane.providers.vm.domain import (
    Disk,
    DomainSpec,
    Nic,
    domain_xml,
    read_metadata,
)
from onepane.providers.vm.guestnet import mac_for
from onepane.providers.vm.provider import _extra_mac


def spec(**kw: object) -> DomainSpec:
    base: dict[str, object] = dict(
        name="inst-1", vcpus=2, memory_mb=512,
        disks=[Disk(Path("/s/inst-1/disk0.qcow2")), Disk(Path("/s/inst-1/disk1.qcow2"), target="vdb")],
        nics=[Nic("52:54:0a:c8:ff:0a", "opbr0"), Nic("52:55:0a:c8:ff:0a", "opbr0")],
        console_log=Path("/s/inst-1/console.log"),
        firmware_config={"opt/onepane/net": "10.200.255.10/24 10.200.255.1"},
        firmware_files={"opt/onepane/ovf-env": Path("/s/inst-1/ovf-env.xml")},
        metadata={"id": "inst-1", "name": "web <&> \"x\"", "tags": {"a": "b"}})
    base.update(kw)
    return DomainSpec(**base)  # type: ignore[arg-type]


def test_the_ovf_hardware_and_environment_reach_the_domain() -> None:
    xml = domain_xml(spec())
    root = ET.fromstring(xml)
    assert root.get("type") == "qemu"  # never kvm unless the location says so
    assert root.findtext("vcpu") == "2" and root.findtext("memory") == "512"
    assert [d.get("dev") for d in root.findall("devices/disk/target")] == ["vda", "vdb"]
    assert [n.get("bridge") for n in root.findall("devices/interface/source")] == ["opbr0"] * 2
    entries = {e.get("name"): e for e in root.findall("sysinfo/entry")}
    assert entries["opt/onepane/net"].text == "10.200.255.10/24 10.200.255.1"
    assert entries["opt/onepane/ovf-env"].get("file") == "/s/inst-1/ovf-env.xml"
    assert read_metadata(xml) == {"id": "inst-1", "name": "web <&> \"x\"", "tags": {"a": "b"}}
    assert ET.fromstring(domain_xml(spec(accel="kvm"))).get("type") == "kvm"


def test_every_nic_of_a_guest_has_its_own_stable_mac() -> None:
    macs = [mac_for("10.200.255.10"), *(_extra_mac("10.200.255.10", n) for n in (1, 2, 3))]
    assert len(set(macs)) == 4 and macs[0] == "52:54:0a:c8:ff:0a"
    assert mac_for("10.200.255.11") != macs[0]

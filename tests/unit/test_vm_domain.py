"""The libvirt domain XML onepane writes: what a VM gets from a catalog image's OVF."""

from __future__ import annotations

from pathlib import Path

import defusedxml.ElementTree as ET
import pytest

from onepane.errors import InvalidInput
from onepane.providers.vm.domain import (
    Disk,
    DomainSpec,
    Nic,
    domain_xml,
    read_metadata,
    resized_xml,
)
from onepane.providers.vm.guestnet import mac_for
from onepane.providers.vm.provider import _extra_mac
from onepane.providers.vm.volumes import disk_target


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


def test_damaged_metadata_keeps_the_vm_listed_and_says_what_is_wrong() -> None:
    """Issue 35 for vm locations: the domain's own record (onepane's metadata in its XML)
    damaged in each way a file can be still reads as onepane's VM, under its domain name,
    with the damage said; a domain with no onepane metadata stays a stranger."""
    import json
    import re
    from xml.sax.saxutils import escape

    from onepane.providers.vm.provider import observe_domain
    xml = domain_xml(spec())
    body = re.search(r"(<onepane:instance[^>]*>)(.*?)(</onepane:instance>)", xml, re.S)
    assert body is not None
    good = json.dumps(spec().metadata)
    ways = {"a list": "[]", "empty": "", "truncated": good[: len(good) // 2],
            "wrong shape": '{"id": [1, 2]}', "not JSON": "\u00ff\u00fe{"}
    for way, text in ways.items():
        damaged_xml = xml.replace(body.group(0), body.group(1) + escape(text) + body.group(3))
        meta = read_metadata(damaged_xml)
        assert meta is not None and meta["id"] == "inst-1" and meta["damaged"], way

        class Dom:  # what libvirt answers for such a domain (a fake for the logic)
            def __init__(self, xml: str) -> None:
                self.xml = xml

            def XMLDesc(self, flags: int) -> str:
                return self.xml

            def name(self) -> str:
                return "inst-1"

            def state(self) -> list[int]:
                return [1, 1]  # running

        seen: dict[str, str] = {}
        obs = observe_domain(Dom(damaged_xml), damaged=seen)
        assert obs is not None and obs.onepane_id == "inst-1", way
        assert obs.state.value == "running" and "metadata" in seen["inst-1"], way
    stranger = re.sub(r"<metadata>.*</metadata>", "", xml, flags=re.S)
    assert read_metadata(stranger) is None


def test_every_nic_of_a_guest_has_its_own_stable_mac() -> None:
    macs = [mac_for("10.200.255.10"), *(_extra_mac("10.200.255.10", n) for n in (1, 2, 3))]
    assert len(set(macs)) == 4 and macs[0] == "52:54:0a:c8:ff:0a"
    assert mac_for("10.200.255.11") != macs[0]


def test_a_disk_on_network_storage_is_an_nbd_export_and_a_restart_renames_it() -> None:
    from onepane.providers.vm.domain import NbdSource, disk_paths, nbd_exports, with_nbd_exports
    xml = domain_xml(spec(disks=[
        Disk(Path("inst-1-disk0.raw"), format="raw",
             nbd=NbdSource("10.0.1.20", 10809, "inst-1-disk0.raw")),
        Disk(Path("/s/inst-1/disk1.qcow2"), target="vdb")]))
    disk = ET.fromstring(xml).find("devices/disk")
    assert disk is not None and disk.get("type") == "network"
    src = disk.find("source")
    assert src is not None and src.get("protocol") == "nbd" and src.get("name") == "inst-1-disk0.raw"
    host = src.find("host")
    assert host is not None and (host.get("name"), host.get("port")) == ("10.0.1.20", "10809")
    assert nbd_exports(xml) == {"vda": "inst-1-disk0.raw"}
    assert disk_paths(xml) == {"vdb": Path("/s/inst-1/disk1.qcow2")}  # only the host's own
    renamed = with_nbd_exports(xml, {"vda": "inst-1-disk0.r1.raw"})
    assert nbd_exports(renamed) == {"vda": "inst-1-disk0.r1.raw"}
    assert read_metadata(renamed) == read_metadata(xml)


def test_storage_options_are_typed_and_refused_by_name() -> None:
    import pytest

    from onepane.errors import InvalidInput
    from onepane.providers.vm.hosts import hosts_options
    host = {"name": "h1", "uri": "qemu+tls://10.0.1.11/system"}
    opts = hosts_options("dc", {"hosts": [host], "storage": {
        "uri": "qemu+tls://10.0.1.20/system", "nbd": "10.0.1.20:10809"}})
    assert opts.storage is not None and (opts.storage.nbd_host, opts.storage.nbd_port) == (
        "10.0.1.20", 10809)
    assert opts.host_dead_after == 10.0
    for bad in ({"uri": "file:///etc/passwd", "nbd": "a:1"},
                {"uri": "qemu+tls://s/system", "nbd": "no-port"},
                {"uri": "qemu+tls://s/system", "nbd": "a:1", "nfs": "x"}):
        with pytest.raises(InvalidInput) as err:
            hosts_options("dc", {"hosts": [host], "storage": bad})
        assert "storage" in str(err.value.field or err.value.detail)
    with pytest.raises(InvalidInput):
        hosts_options("dc", {"hosts": [host], "host_dead_after": 0.5})


def test_a_guest_that_refuses_a_connection_is_alive() -> None:
    """Refused proves the guest's kernel answered (the silent case, a cut host's guest, is
    tests/e2e/test_hosts.py's: no address here may send packets off this machine)."""
    from onepane.providers.vm.hostfailure import guest_answers
    assert guest_answers("127.0.0.1")  # port 9 here: refused (or a discard server): alive


def test_a_resize_changes_cpus_memory_and_the_recorded_size_only() -> None:
    """ModifyInstanceAttribute's instance type at a vm location: the stopped domain is
    redefined with the size's vCPUs and memory, and its metadata names the size."""
    libvirt_wrote = domain_xml(spec()).replace("<memory unit=\"MiB\">512</memory>",
                                               "<memory unit=\"KiB\">524288</memory>"
                                               "<currentMemory unit=\"KiB\">524288"
                                               "</currentMemory>")
    root = ET.fromstring(resized_xml(libvirt_wrote, 1, 256, "vm.small"))
    assert root.findtext("vcpu") == "1"
    assert [(root.find(t).get("unit"), root.findtext(t))  # type: ignore[union-attr]
            for t in ("memory", "currentMemory")] == [("MiB", "256")] * 2
    assert read_metadata(ET.tostring(root, encoding="unicode"))["size"] == "vm.small"
    assert [d.get("dev") for d in root.findall("devices/disk/target")] == ["vda", "vdb"]


def test_ec2_device_names_are_the_guest_s_virtio_disks() -> None:
    assert [disk_target(d) for d in ("/dev/vdb", "/dev/sdh", "/dev/xvdp")] == ["vdb", "vdh", "vdp"]
    for bad in ("/dev/vda", "/dev/sda", "/dev/sdq", "/dev/nvme1n1", "/dev/xvd"):
        with pytest.raises(InvalidInput) as exc:
            disk_target(bad)
        assert exc.value.field == "device", bad

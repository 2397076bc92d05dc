"""Disk images and OVF/OVA packages with the real qemu-img: the shapes VMware, VirtualBox and
oVirt write, export and re-import, and every kind of bad input."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from onepane.errors import InvalidInput
from onepane.images import disk, inspect, ova, ovf

MiB = 2**20


def make_disk(tmp: Path, name: str = "src.qcow2", size_mib: int = 64) -> Path:
    raw = tmp / "data.raw"
    with raw.open("wb") as f:
        f.truncate(size_mib * MiB)
        f.seek(MiB)
        f.write(os.urandom(2 * MiB))  # some real content to compare
    out = tmp / name
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(out)],
                   check=True)
    raw.unlink()
    return out


VMWARE = """<?xml version="1.0" encoding="UTF-8"?>
<Envelope vmw:buildId="build-123" xmlns="http://schemas.dmtf.org/ovf/envelope/1"
  xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1"
  xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData"
  xmlns:vmw="http://www.vmware.com/schema/ovf">
  <References><File ovf:href="disk1.vmdk" ovf:id="file1" ovf:size="{size}"/></References>
  <DiskSection><Info>Virtual disk information</Info>
    <Disk ovf:capacity="64" ovf:capacityAllocationUnits="byte * 2^20" ovf:diskId="vmdisk1"
      ovf:fileRef="file1" ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"/>
  </DiskSection>
  <NetworkSection><Info>The list of logical networks</Info>
    <Network ovf:name="VM Network"><Description>The VM Network network</Description></Network>
  </NetworkSection>
  <VirtualSystem ovf:id="web01"><Info>A virtual machine</Info><Name>web01</Name>
    <OperatingSystemSection ovf:id="96" vmw:osType="debian10_64Guest"><Info>OS</Info>
      <Description>Debian GNU/Linux 10 (64-bit)</Description></OperatingSystemSection>
    <ProductSection><Info>Product</Info><Product>Shop</Product><Vendor>ACME</Vendor>
      <Version>2.1</Version></ProductSection>
    <VirtualHardwareSection><Info>Virtual hardware requirements</Info>
      <Item><rasd:AllocationUnits>hertz * 10^6</rasd:AllocationUnits>
        <rasd:ElementName>2 virtual CPU(s)</rasd:ElementName><rasd:InstanceID>1</rasd:InstanceID>
        <rasd:ResourceType>3</rasd:ResourceType><rasd:VirtualQuantity>2</rasd:VirtualQuantity></Item>
      <Item><rasd:AllocationUnits>byte * 2^20</rasd:AllocationUnits>
        <rasd:ElementName>2048MB of memory</rasd:ElementName><rasd:InstanceID>2</rasd:InstanceID>
        <rasd:ResourceType>4</rasd:ResourceType><rasd:VirtualQuantity>2048</rasd:VirtualQuantity></Item>
      <Item><rasd:AddressOnParent>0</rasd:AddressOnParent><rasd:ElementName>Hard disk 1</rasd:ElementName>
        <rasd:HostResource>ovf:/disk/vmdisk1</rasd:HostResource><rasd:InstanceID>3</rasd:InstanceID>
        <rasd:ResourceType>17</rasd:ResourceType></Item>
      <Item><rasd:AddressOnParent>7</rasd:AddressOnParent><rasd:Connection>VM Network</rasd:Connection>
        <rasd:ElementName>Network adapter 1</rasd:ElementName><rasd:InstanceID>4</rasd:InstanceID>
        <rasd:ResourceSubType>VmxNet3</rasd:ResourceSubType><rasd:ResourceType>10</rasd:ResourceType></Item>
    </VirtualHardwareSection>
  </VirtualSystem>
</Envelope>"""

VIRTUALBOX = """<?xml version="1.0"?>
<Envelope ovf:version="1.0" xml:lang="en-US" xmlns="http://schemas.dmtf.org/ovf/envelope/1"
  xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1"
  xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData"
  xmlns:vssd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData"
  xmlns:vbox="http://www.virtualbox.org/ovf/machine">
  <References><File ovf:id="file1" ovf:href="box-disk001.vmdk"/></References>
  <DiskSection><Info>List of the virtual disks used in the package</Info>
    <Disk ovf:capacity="{capacity}" ovf:diskId="vmdisk1" ovf:fileRef="file1"
      ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"
      vbox:uuid="a5b6"/></DiskSection>
  <NetworkSection><Info>Logical networks used in the package</Info>
    <Network ovf:name="NAT"><Description>Logical network used by this appliance.</Description></Network>
  </NetworkSection>
  <VirtualSystem ovf:id="box"><Info>A virtual machine</Info>
    <OperatingSystemSection ovf:id="96"><Info>The kind of installed guest operating system</Info>
      <Description>Debian_64</Description><vbox:OSType ovf:required="false">Debian_64</vbox:OSType>
    </OperatingSystemSection>
    <VirtualHardwareSection><Info>Virtual hardware requirements for a virtual machine</Info>
      <System><vssd:ElementName>Virtual Hardware Family</vssd:ElementName>
        <vssd:InstanceID>0</vssd:InstanceID><vssd:VirtualSystemIdentifier>box</vssd:VirtualSystemIdentifier>
        <vssd:VirtualSystemType>virtualbox-2.2</vssd:VirtualSystemType></System>
      <Item><rasd:Caption>1 virtual CPU</rasd:Caption><rasd:ElementName>1 virtual CPU</rasd:ElementName>
        <rasd:InstanceID>1</rasd:InstanceID><rasd:ResourceType>3</rasd:ResourceType>
        <rasd:VirtualQuantity>1</rasd:VirtualQuantity></Item>
      <Item><rasd:AllocationUnits>MegaBytes</rasd:AllocationUnits><rasd:Caption>1024 MB of memory</rasd:Caption>
        <rasd:ElementName>1024 MB of memory</rasd:ElementName><rasd:InstanceID>2</rasd:InstanceID>
        <rasd:ResourceType>4</rasd:ResourceType><rasd:VirtualQuantity>1024</rasd:VirtualQuantity></Item>
      <Item><rasd:AutomaticAllocation>true</rasd:AutomaticAllocation><rasd:Caption>Ethernet adapter on 'NAT'</rasd:Caption>
        <rasd:Connection>NAT</rasd:Connection><rasd:ElementName>Ethernet adapter on 'NAT'</rasd:ElementName>
        <rasd:InstanceID>3</rasd:InstanceID><rasd:ResourceSubType>E1000</rasd:ResourceSubType>
        <rasd:ResourceType>10</rasd:ResourceType></Item>
      <Item><rasd:AddressOnParent>0</rasd:AddressOnParent><rasd:Caption>disk1</rasd:Caption>
        <rasd:ElementName>disk1</rasd:ElementName><rasd:HostResource>/disk/vmdisk1</rasd:HostResource>
        <rasd:InstanceID>4</rasd:InstanceID><rasd:ResourceType>17</rasd:ResourceType></Item>
    </VirtualHardwareSection>
  </VirtualSystem>
</Envelope>"""

OVIRT = """<?xml version="1.0" encoding="UTF-8"?>
<ovf:Envelope xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1/"
  xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData"
  xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" ovf:version="4.4.0.0">
  <References><File ovf:href="8a3c1f" ovf:id="8a3c1f" ovf:size="{size}" ovf:description="vm-disk"/></References>
  <Section xsi:type="ovf:NetworkSection_Type"><Info>List of networks</Info>
    <Network ovf:name="ovirtmgmt"/></Section>
  <Section xsi:type="ovf:DiskSection_Type"><Info>List of Virtual Disks</Info>
    <Disk ovf:diskId="d1" ovf:capacity="{capacity_gb}" ovf:capacityAllocationUnits="byte * 2^30"
      ovf:fileRef="8a3c1f" ovf:format="http://www.gnome.org/~markmc/qcow-image-format.html"/></Section>
  <Content ovf:id="out" xsi:type="ovf:VirtualSystem_Type"><Name>db01</Name>
    <Section ovf:id="4f1" ovf:required="false" xsi:type="ovf:OperatingSystemSection_Type">
      <Info>Guest Operating System</Info><Description>rhel_8x64</Description></Section>
    <Section xsi:type="ovf:VirtualHardwareSection_Type"><Info>4 CPU, 4096 Memory</Info>
      <Item><rasd:Caption>4 virtual cpu</rasd:Caption><rasd:InstanceId>1</rasd:InstanceId>
        <rasd:ResourceType>3</rasd:ResourceType><rasd:num_of_sockets>2</rasd:num_of_sockets>
        <rasd:cpu_per_socket>2</rasd:cpu_per_socket><rasd:VirtualQuantity>4</rasd:VirtualQuantity></Item>
      <Item><rasd:Caption>4096 MB of memory</rasd:Caption><rasd:InstanceId>2</rasd:InstanceId>
        <rasd:ResourceType>4</rasd:ResourceType><rasd:AllocationUnits>MegaBytes</rasd:AllocationUnits>
        <rasd:VirtualQuantity>4096</rasd:VirtualQuantity></Item>
      <Item><rasd:Caption>vm-disk</rasd:Caption><rasd:InstanceId>d1</rasd:InstanceId>
        <rasd:ResourceType>17</rasd:ResourceType><rasd:HostResource>8a3c1f/d1</rasd:HostResource></Item>
      <Item><rasd:Caption>Ethernet adapter on ovirtmgmt</rasd:Caption><rasd:InstanceId>3</rasd:InstanceId>
        <rasd:ResourceType>10</rasd:ResourceType><rasd:Connection>ovirtmgmt</rasd:Connection></Item>
    </Section>
  </Content>
</ovf:Envelope>"""


def pack(tmp: Path, name: str, descriptor: str, files: dict[str, Path], mf: str | None = "SHA256",
         extra: list[tarfile.TarInfo] | None = None) -> Path:
    out = tmp / f"{name}.ova"
    with tarfile.open(out, "w") as tar:
        data = descriptor.encode()
        info = tarfile.TarInfo(f"{name}.ovf")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
        for href, path in files.items():
            tar.add(path, arcname=href)
        for member in extra or []:
            tar.addfile(member, io.BytesIO(b"x" * member.size) if member.isfile() else None)
        if mf:
            lines = [f"{mf}({name}.ovf)= {hashlib.new(mf.lower(), data).hexdigest()}"]
            lines += [f"{mf}({href})= {hashlib.new(mf.lower(), p.read_bytes()).hexdigest()}"
                      for href, p in files.items()]
            body = ("\n".join(lines) + "\n").encode()
            info = tarfile.TarInfo(f"{name}.mf")
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    return out


@pytest.fixture
def vmdk(tmp_path: Path) -> Path:
    src = make_disk(tmp_path)
    out = tmp_path / "disk1.vmdk"
    disk.convert(src, out, "vmdk", "qcow2")
    return out


def test_disk_formats_are_detected_by_content_and_converted(tmp_path: Path) -> None:
    src = make_disk(tmp_path)
    seen: list[float] = []
    for fmt in disk.FORMATS:
        out = tmp_path / f"converted.{fmt}.bin"  # the name says nothing true
        info = disk.convert(src, out, fmt, "qcow2", progress=seen.append)
        assert info.format == fmt and info.virtual_size == 64 * MiB
        assert disk.identical(src, "qcow2", out, fmt)
        assert inspect.check(out).format == fmt  # told apart by content, not by name
    assert disk.info(tmp_path / "converted.vmdk.bin", "vmdk").subformat == "streamOptimized"
    assert seen and max(seen) == 100.0


def test_vmware_ova_with_sha256_manifest(tmp_path: Path, vmdk: Path) -> None:
    archive = pack(tmp_path, "web01", VMWARE.format(size=vmdk.stat().st_size), {"disk1.vmdk": vmdk})
    pkg = ova.read_ova(archive, tmp_path / "out")
    vs = pkg.descriptor.systems[0]
    assert (vs.name, vs.cpus, vs.memory_bytes) == ("web01", 2, 2048 * MiB)
    assert vs.nics == ["VM Network"] and vs.disks == ["vmdisk1"]
    assert vs.os_description == "Debian GNU/Linux 10 (64-bit)"
    assert vs.product == {"Product": "Shop", "Vendor": "ACME", "Version": "2.1"}
    assert pkg.descriptor.disks[0].capacity_bytes == 64 * MiB


def test_virtualbox_ova_with_sha1_manifest(tmp_path: Path, vmdk: Path) -> None:
    archive = pack(tmp_path, "box", VIRTUALBOX.format(capacity=64 * MiB),
                   {"box-disk001.vmdk": vmdk}, mf="SHA1")
    vs = ova.read_ova(archive, tmp_path / "out").descriptor.systems[0]
    assert (vs.cpus, vs.memory_bytes, vs.nics, vs.os_description) == (1, 1024 * MiB, ["NAT"],
                                                                       "Debian_64")


def test_ovirt_descriptor_with_xsi_typed_sections(tmp_path: Path) -> None:
    src = make_disk(tmp_path, size_mib=1024)
    archive = pack(tmp_path, "db01", OVIRT.format(size=src.stat().st_size, capacity_gb=1),
                   {"8a3c1f": src}, mf=None)
    pkg = ova.read_ova(archive, tmp_path / "out").descriptor
    vs = pkg.systems[0]
    assert (vs.name, vs.cpus, vs.memory_bytes, vs.nics) == ("db01", 4, 4096 * MiB, ["ovirtmgmt"])
    assert pkg.disks[0].capacity_bytes == 2**30 and pkg.networks == ["ovirtmgmt"]


def test_certificate_is_ignored_with_a_warning(tmp_path: Path, vmdk: Path) -> None:
    cert = tarfile.TarInfo("web01.cert")
    cert.size = 10
    archive = pack(tmp_path, "web01", VMWARE.format(size=vmdk.stat().st_size), {"disk1.vmdk": vmdk},
                   extra=[cert])
    assert "certificate" in ova.read_ova(archive, tmp_path / "out").warnings[0]


def test_export_then_reimport_gives_the_same_image(tmp_path: Path, vmdk: Path) -> None:
    archive = pack(tmp_path, "web01", VMWARE.format(size=vmdk.stat().st_size), {"disk1.vmdk": vmdk})
    first = ova.read_ova(archive, tmp_path / "first")
    for version in ("1.0", "2.0"):
        desc = first.descriptor
        desc.files[0].size = vmdk.stat().st_size
        out = tmp_path / f"export-{version}.ova"
        ova.write_ova(desc, {"disk1.vmdk": first.directory / "disk1.vmdk"}, out, version, "web01")
        with tarfile.open(out) as tar:
            names = tar.getnames()
        assert names == ["web01.ovf", "web01.mf", "disk1.vmdk"]  # manifest before the disks
        again = ova.read_ova(out, tmp_path / f"again-{version}")
        a, b = first.descriptor.systems[0], again.descriptor.systems[0]
        assert (a.cpus, a.memory_bytes, a.nics, a.disks, a.product) == \
            (b.cpus, b.memory_bytes, b.nics, b.disks, b.product)
        assert again.descriptor.disks[0].capacity_bytes == 64 * MiB
        assert again.descriptor.version == ("2.0" if version == "2.0" else "1.0")
        assert disk.identical(vmdk, "vmdk", again.directory / "disk1.vmdk", "vmdk")


# ---- bad input: a clear error, and nothing left behind ----------------------------------------

def expect_rejected(archive: Path, tmp_path: Path, match: str, **kw: int) -> None:
    dest = tmp_path / "rejected"
    with pytest.raises(InvalidInput, match=match):
        ova.read_ova(archive, dest, **kw)
    assert not dest.exists()


def test_malformed_and_hostile_xml(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="malformed XML"):
        ovf.parse(b"<Envelope><References></Envelope>")
    bomb = b"""<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">
      <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]><Envelope>&lol2;</Envelope>"""
    with pytest.raises(InvalidInput, match="DTDs and entities"):
        ovf.parse(bomb)
    xxe = b"""<?xml version="1.0"?><!DOCTYPE e [<!ENTITY x SYSTEM "file:///etc/passwd">]>
      <Envelope>&x;</Envelope>"""
    with pytest.raises(InvalidInput, match="DTDs and entities"):
        ovf.parse(xxe)
    with pytest.raises(InvalidInput, match="not an OVF envelope"):
        ovf.parse(b"<html/>")
    with pytest.raises(InvalidInput, match="unknown allocation units"):
        ovf.units("furlongs")


@pytest.mark.parametrize(("member", "match"), [
    ("../evil.txt", "escapes"), ("/etc/evil.txt", "escapes"), ("dir/evil.txt", "folder")])
def test_members_escaping_the_package(tmp_path: Path, vmdk: Path, member: str, match: str) -> None:
    evil = tarfile.TarInfo(member)
    evil.size = 4
    archive = pack(tmp_path, "web01", VMWARE.format(size=vmdk.stat().st_size),
                   {"disk1.vmdk": vmdk}, extra=[evil])
    expect_rejected(archive, tmp_path, match)
    assert not (tmp_path / "evil.txt").exists()


def test_links_in_the_archive(tmp_path: Path, vmdk: Path) -> None:
    link = tarfile.TarInfo("passwd")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    archive = pack(tmp_path, "web01", VMWARE.format(size=vmdk.stat().st_size),
                   {"disk1.vmdk": vmdk}, extra=[link])
    expect_rejected(archive, tmp_path, "is a link")


def test_manifest_mismatch_missing_file_wrong_size(tmp_path: Path, vmdk: Path) -> None:
    desc = VMWARE.format(size=vmdk.stat().st_size)
    archive = pack(tmp_path, "web01", desc, {"disk1.vmdk": vmdk})
    tampered = tmp_path / "tampered.ova"
    with tarfile.open(archive) as src, tarfile.open(tampered, "w") as dst:
        for m in src.getmembers():
            data = src.extractfile(m).read()  # type: ignore[union-attr]
            if m.name == "disk1.vmdk":
                data = data[:-1] + bytes([data[-1] ^ 1])
            dst.addfile(m, io.BytesIO(data))
    expect_rejected(tampered, tmp_path, "does not match its SHA256")
    missing = pack(tmp_path, "web01", desc, {}, mf=None)
    expect_rejected(missing, tmp_path, "referenced file 'disk1.vmdk' is missing")
    wrong_size = pack(tmp_path, "web01", VMWARE.format(size=123), {"disk1.vmdk": vmdk}, mf=None)
    expect_rejected(wrong_size, tmp_path, "the descriptor says 123")


def test_disk_larger_than_it_claims(tmp_path: Path, vmdk: Path) -> None:
    small = VMWARE.format(size=vmdk.stat().st_size).replace('ovf:capacity="64"', 'ovf:capacity="8"')
    archive = pack(tmp_path, "web01", small, {"disk1.vmdk": vmdk})
    expect_rejected(archive, tmp_path, "more than the 8388608 it claims")


def test_descriptor_first_and_size_limit(tmp_path: Path, vmdk: Path) -> None:
    archive = tmp_path / "backwards.ova"
    with tarfile.open(archive, "w") as tar:
        tar.add(vmdk, arcname="disk1.vmdk")
    expect_rejected(archive, tmp_path, "descriptor")
    ok = pack(tmp_path, "web01", VMWARE.format(size=vmdk.stat().st_size), {"disk1.vmdk": vmdk})
    expect_rejected(ok, tmp_path, "limit", limit=1024)

"""Descriptors in the shapes VMware, VirtualBox, Cisco, Ganeti and the OVF 0.9 tools write
(tests/data/ovf/README.md says where each comes from): the values each must yield, and whole
packages built around them with real disks, read the way onepane imports them."""

from __future__ import annotations

import gzip
import hashlib
import io
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from onepane.errors import InvalidInput
from onepane.images import ova, ovf, ovf_writer

DATA = Path(__file__).parent.parent / "data" / "ovf"
MiB = 2**20


def descriptor(name: str, **sizes: int) -> str:
    text = (DATA / name).read_text()
    for key, value in sizes.items():
        text = text.replace("{" + key + "}", str(value))
    return text


def vmdk(tmp: Path, name: str, subformat: str = "streamOptimized", size: str = "64M") -> Path:
    out = tmp / name
    subprocess.run(["qemu-img", "create", "-q", "-f", "vmdk", "-o", f"subformat={subformat}",
                    str(out), size], check=True)
    return out


def ova_of(tmp: Path, stem: str, desc: str, members: dict[str, bytes | Path],
           manifest: str | None = None) -> Path:
    """Descriptor first, then the manifest (digests of the members as packed), then members."""
    out = tmp / f"{stem}.ova"
    blobs = {n: (m.read_bytes() if isinstance(m, Path) else m) for n, m in members.items()}
    with tarfile.open(out, "w") as tar:
        entries = [(f"{stem}.ovf", desc.encode())]
        if manifest:
            lines = [f"{manifest.upper()}({n})= {hashlib.new(manifest, b).hexdigest()}"
                     for n, b in [entries[0], *blobs.items()]]
            entries.append((f"{stem}.mf", ("\n".join(lines) + "\n").encode()))
        for name, data in [*entries, *blobs.items()]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out


# ---- what each descriptor says ---------------------------------------------------------------

def test_cisco_deployment_options_and_properties() -> None:
    pkg = ovf.parse(descriptor("cisco-csr1000v.ovf", disk1_size=1, iso_size=1))
    assert pkg.version == "1.0"
    assert [o.id for o in pkg.options] == ["1CPU-4GB", "2CPU-4GB", "4CPU-4GB", "4CPU-8GB"]
    assert pkg.default_option == "2CPU-4GB"  # marked default, not the first, not the last Item
    vs = pkg.systems[0]
    hw = {o.id: vs.hardware(o.id) for o in pkg.options}
    assert {k: (h.cpus, h.memory_bytes // MiB, len(h.nics)) for k, h in hw.items()} == {
        "1CPU-4GB": (1, 4096, 2), "2CPU-4GB": (2, 4096, 2), "4CPU-4GB": (4, 4096, 2),
        "4CPU-8GB": (4, 8192, 3)}
    assert vs.cpus == 2 and vs.disks == ["vmdisk1"]  # the default option's
    props = {p.key: p for p in vs.properties}
    assert props["hostname"].id == "com.cisco.csr1000v.hostname.1"
    assert (props["hostname"].user_configurable, props["hostname"].qualifiers,
            props["hostname"].label, props["hostname"].category) == (
        True, "MaxLen(63)", "Router Name", "1. Bootstrap Properties")
    assert props["login-password"].password
    assert not props["config-version"].user_configurable and props["config-version"].default == "1.0"
    assert (props["enable-ssh-server"].type, props["mgmt-vlan"].type) == ("boolean", "uint16")
    assert vs.product["Vendor"] == "Cisco Systems, Inc."
    assert pkg.file("csr.iso") is not None  # the CD-ROM's file reference is not dangling


def test_ovf_09_sections_and_content() -> None:
    pkg = ovf.parse(descriptor("ovf-0.9-vmware.ovf", disk1_size=1))
    vs = pkg.systems[0]
    assert pkg.version == "0.9" and vs.id == "legacy"
    assert (vs.cpus, vs.memory_bytes, vs.nics, vs.disks) == (1, 256 * MiB, ["bridged"], ["vmdisk1"])
    assert pkg.disks[0].capacity_bytes == 64 * MiB
    assert vs.eulas == ["Use at your own risk."] and vs.annotation == "A version 0.9 OVF."
    assert vs.os_id == "107"


def test_virtualbox_20_storage_and_ethernet_port_items() -> None:
    pkg = ovf.parse(descriptor("virtualbox-2.0.ovf"))
    vs = pkg.systems[0]
    assert pkg.version == "2.0" and pkg.files[0].size is None
    assert (vs.cpus, vs.memory_bytes, vs.nics, vs.disks, vs.os_description) == (
        1, 512 * MiB, ["NAT"], ["vmdisk1"], "Ubuntu_64")


def test_ganeti_disk_without_capacity_and_gzip_file() -> None:
    pkg = ovf.parse(descriptor("ganeti.ovf"))
    assert pkg.disks[0].capacity_bytes == 0 and pkg.files[0].compression == "gzip"
    vs = pkg.systems[0]
    assert (vs.name, vs.cpus, vs.memory_bytes, vs.nics) == ("ganeti-test-xen", 1, 2048 * MiB,
                                                        ["routed"])  # GanetiSection names it


def test_collection_keeps_every_system_and_resolves_property_capacities() -> None:
    pkg = ovf.parse(descriptor("collection-lamp.ovf", disk1_size=1, disk2_size=1))
    assert pkg.collection == "LAMP"
    assert [(s.id, s.cpus, s.memory_bytes // MiB) for s in pkg.systems] == [
        ("WebTier", 1, 512), ("DBTier", 2, 2048)]
    assert pkg.systems[1].disks == ["dbdisk", "dbdata"]
    caps = {d.id: d.capacity_bytes for d in pkg.disks}
    assert caps == {"webdisk": 64 * MiB, "dbdisk": 64 * MiB, "dbdata": 10 * 2**30}
    assert [p.key for p in pkg.properties] == ["web.disk.size", "db.data.size"]
    assert pkg.systems[0].properties[0].id == "org.apache.httpd.httpPort"


def test_a_vapps_startup_section_gives_its_systems_start_order() -> None:
    """Issue 33: a vSphere vApp's StartupSection read exactly (order, delays, actions)."""
    pkg = ovf.parse(descriptor("vsphere-vapp-3tier.ovf", web_size=1, app_size=1, db_size=1))
    assert pkg.collection == "shop"
    assert [(s.id, s.cpus, s.memory_bytes // MiB, s.nics) for s in pkg.systems] == [
        ("shop-web", 1, 256, ["shop-front"]), ("shop-app", 1, 256, ["shop-back"]),
        ("shop-db", 2, 512, ["shop-back"])]
    assert pkg.systems[2].disks == ["dbdisk", "dbdata"]
    assert [(i.system, i.order, i.start_delay, i.waiting_for_guest, i.stop_action,
             i.stop_delay) for i in pkg.startup] == [
        ("shop-db", 0, 30, True, "guestShutdown", 120),
        ("shop-app", 1, 10, False, "guestShutdown", 60),
        ("shop-web", 2, 0, False, "powerOff", 0)]
    broken = descriptor("vsphere-vapp-3tier.ovf", web_size=1, app_size=1, db_size=1) \
        .replace('ovf:id="shop-app" ovf:order="1"', 'ovf:id="shop-cache" ovf:order="1"')
    with pytest.raises(InvalidInput, match="StartupSection names 'shop-cache'"):
        ovf.parse(broken)


def test_ovftool_chunked_file_and_property_capacity() -> None:
    pkg = ovf.parse(descriptor("vmware-ovftool-chunked.ovf", chunk_size=1, disk1_size=1))
    assert pkg.files[0].chunk_size == 1
    assert pkg.disks[0].capacity_bytes == 64 * MiB and pkg.disks[0].capacity == "${disk.capacity}"
    vs = pkg.systems[0]
    assert (vs.cpus, vs.memory_bytes, vs.os_id, vs.eulas) == (2, 2048 * MiB, "36",
                                                              ["Photon OS EULA text"])


@pytest.mark.parametrize(("change", "match"), [
    (lambda d: (DATA / "ersatz-envelope-3.ovf").read_text(), "not OVF 0.9, 1.x or 2.x"),
    (lambda d: d.replace('ovf:fileRef="file1"', 'ovf:fileRef="nofile"'),
     r"Disk\[@diskId='vmdisk1'\] ovf:fileRef 'nofile' names no References/File"),
    (lambda d: d.replace('<ovf:Disk ', '<ovf:Disk ovf:diskId="vmdisk1" ovf:capacity="1" /><ovf:Disk ', 1),
     "two elements share DiskSection/Disk ovf:diskId 'vmdisk1'"),
    (lambda d: d.replace("ovf:/disk/vmdisk1", "ovf:/disk/vmdisk9"),
     "HostResource 'ovf:/disk/vmdisk9' names no Disk"),
    (lambda d: d.replace('ovf:size="1"', 'ovf:size="12kB"', 1),
     r"References/File\[@id='file1'\] ovf:size '12kB' is not a whole number"),
    (lambda d: d.replace('ovf:configuration="4CPU-8GB"', 'ovf:configuration="8CPU"', 1),
     "names '8CPU', which is not in the DeploymentOptionSection"),
    (lambda d: d.replace('ovf:href="csr-disk1.vmdk"', 'ovf:href="../etc/passwd"'),
     "leaves the package"),
    (lambda d: d.replace('<rasd:VirtualQuantity>2<', '<rasd:VirtualQuantity>two<'),
     "Item '1' VirtualQuantity 'two' is not a whole number"),
    (lambda d: d.replace('<vmw:CoresPerSocket ovf:required="false">1<', '<vmw:CoresPerSocket>x<', 1),
     None),
])
def test_bad_descriptors_name_the_element(change: object, match: str | None) -> None:
    assert callable(change)
    bad = change(descriptor("cisco-csr1000v.ovf", disk1_size=1, iso_size=1))
    if match is None:  # an element onepane does not read stays harmless
        ovf.parse(bad)
        return
    with pytest.raises(InvalidInput, match=match):
        ovf.parse(bad)


def test_non_numeric_quantity_is_a_clear_error() -> None:
    bad = descriptor("ganeti.ovf").replace("<rasd:VirtualQuantity>2048<",
                                            "<rasd:VirtualQuantity>lots<")
    with pytest.raises(InvalidInput, match="Item '2' VirtualQuantity 'lots' is not a whole number"):
        ovf.parse(bad)


# ---- whole packages, read the way onepane imports them ------------------------------------------

def test_cisco_ova_with_an_iso_and_a_sha1_manifest(tmp_path: Path) -> None:
    disk = vmdk(tmp_path, "csr-disk1.vmdk")
    iso = b"\0" * 4096
    desc = descriptor("cisco-csr1000v.ovf", disk1_size=disk.stat().st_size, iso_size=len(iso))
    pkg = ova.read_ova(ova_of(tmp_path, "csr", desc, {"csr-disk1.vmdk": disk, "csr-config.iso": iso},
                              manifest="sha1"), tmp_path / "out")
    assert pkg.disks["vmdisk1"].format == "vmdk"
    assert any("csr-config.iso" in w and "not a disk" in w for w in pkg.warnings)


def test_ovf_09_with_a_monolithic_sparse_disk(tmp_path: Path) -> None:
    disk = vmdk(tmp_path, "legacy-disk1.vmdk", "monolithicSparse")
    desc = descriptor("ovf-0.9-vmware.ovf", disk1_size=disk.stat().st_size)
    pkg = ova.read_ova(ova_of(tmp_path, "legacy", desc, {"legacy-disk1.vmdk": disk}), tmp_path / "o")
    assert pkg.disks["vmdisk1"].subformat == "monolithicSparse"


def test_ganeti_gzip_compressed_file(tmp_path: Path) -> None:
    disk = vmdk(tmp_path, "plain.vmdk", "monolithicSparse")
    packed = gzip.compress(disk.read_bytes())
    pkg = ova.read_ova(ova_of(tmp_path, "ganeti", descriptor("ganeti.ovf"),
                              {"ganeti-disk.vmdk.gz": packed}), tmp_path / "out")
    assert pkg.disks["vmdisk1"].virtual_size == 64 * MiB
    assert (pkg.directory / "ganeti-disk.vmdk.gz").read_bytes() == disk.read_bytes()


def test_chunked_file_is_joined_and_each_chunk_verified(tmp_path: Path) -> None:
    disk = vmdk(tmp_path, "whole.vmdk")
    data = disk.read_bytes()
    chunk = 4096
    parts = {f"photon-disk1.vmdk.{i:09d}": data[o:o + chunk]
             for i, o in enumerate(range(0, len(data), chunk))}
    assert len(parts) > 2
    desc = descriptor("vmware-ovftool-chunked.ovf", chunk_size=chunk, disk1_size=len(data))
    pkg = ova.read_ova(ova_of(tmp_path, "photon", desc, parts, manifest="sha256"), tmp_path / "o")
    assert (pkg.directory / "photon-disk1.vmdk").read_bytes() == data
    assert not list(pkg.directory.glob("photon-disk1.vmdk.0*"))
    parts.pop(f"photon-disk1.vmdk.{1:09d}")
    with pytest.raises(InvalidInput, match="not numbered"):
        ova.read_ova(ova_of(tmp_path, "photon", desc, parts), tmp_path / "o2")


def test_declared_size_differs_warning_with_manifest_refusal_without(tmp_path: Path) -> None:
    disk = vmdk(tmp_path, "csr-disk1.vmdk")
    desc = descriptor("cisco-csr1000v.ovf", disk1_size=disk.stat().st_size + 512, iso_size=1)
    members: dict[str, bytes | Path] = {"csr-disk1.vmdk": disk, "csr-config.iso": b"x"}
    pkg = ova.read_ova(ova_of(tmp_path, "csr", desc, members, manifest="sha256"), tmp_path / "a")
    assert any("the descriptor says" in w and "manifest" in w for w in pkg.warnings)
    with pytest.raises(InvalidInput, match="no manifest digest verifies it"):
        ova.read_ova(ova_of(tmp_path, "csr", desc, members), tmp_path / "b")


def test_gzip_compressed_ova_and_folder_form(tmp_path: Path) -> None:
    disk = vmdk(tmp_path, "ubuntu-disk001.vmdk")
    archive = ova_of(tmp_path, "ubuntu", descriptor("virtualbox-2.0.ovf"),
                     {"ubuntu-disk001.vmdk": disk}, manifest="sha256")
    gz = tmp_path / "ubuntu.ova.gz"
    gz.write_bytes(gzip.compress(archive.read_bytes()))
    pkg = ova.read_ova(gz, tmp_path / "from-gz")
    assert pkg.descriptor.systems[0].id == "ubuntu"
    # the folder ovftool writes: descriptor, manifest and disk side by side
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "ubuntu.ovf").write_text(descriptor("virtualbox-2.0.ovf"))
    shutil.copy(disk, folder / "ubuntu-disk001.vmdk")
    (folder / "unrelated.txt").write_text("not listed, never packed")
    packed = tmp_path / "packed.ova"
    ova.pack_folder(folder / "ubuntu.ovf", packed)
    with tarfile.open(packed) as tar:
        assert tar.getnames() == ["ubuntu.ovf", "ubuntu-disk001.vmdk"]
    assert ova.read_ova(packed, tmp_path / "from-folder").disks["vmdisk1"].format == "vmdk"
    broken = tmp_path / "bad.ova.gz"
    broken.write_bytes(gzip.compress(b"x" * 1000)[:-20])
    with pytest.raises(InvalidInput, match=r"not valid gzip data|not a tar archive"):
        ova.read_ova(broken, tmp_path / "from-broken")


def test_written_descriptor_round_trips_options_properties_and_eula() -> None:
    src = ovf.parse(descriptor("cisco-csr1000v.ovf", disk1_size=1, iso_size=1))
    vs = src.systems[0]
    per_option: dict[str | None, ovf.Hardware] = {o.id: vs.hardware(o.id) for o in src.options}
    vs.items = ovf_writer.build_items(per_option, src.default_option)
    vs.eulas = ["Be nice."]
    src.files = [src.files[0]]
    for version in ("1.0", "2.0"):
        again = ovf.parse(ovf_writer.write(src, version))
        assert [o.id for o in again.options] == [o.id for o in src.options]
        assert again.default_option == "2CPU-4GB"
        got = again.systems[0]
        for o in src.options:
            assert (got.hardware(o.id).cpus, got.hardware(o.id).memory_bytes,
                    got.hardware(o.id).nics) == (per_option[o.id].cpus,
                                                 per_option[o.id].memory_bytes,
                                                 per_option[o.id].nics)
        assert [(p.id, p.type, p.default, p.user_configurable, p.password) for p in got.properties] \
            == [(p.id, p.type, p.default, p.user_configurable, p.password) for p in vs.properties]
        assert (got.eulas, got.os_id) == (["Be nice."], "100")
        disk_item = next(i for i in got.items if i.resource_type == ovf.RT_DISK)
        controller = next(i for i in got.items if i.instance_id == disk_item.parent)
        assert controller.resource_type == ovf.RT_SCSI

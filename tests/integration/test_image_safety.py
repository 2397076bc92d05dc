"""No disk a user sends may reach outside itself: every trick, plain and inside an OVA, is refused
with a message naming it, and nothing is left behind. Real qemu-img makes every hostile disk."""

from __future__ import annotations

import struct
import subprocess
import tarfile
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from onepane.errors import InvalidInput
from onepane.images import inspect, ova
from tests.integration.test_images import VMWARE, pack

SECRET = "/etc/hostname"


def qemu_img(*args: str) -> None:
    subprocess.run(["qemu-img", *args], check=True, capture_output=True)


def patched(path: Path, offset: int, data: bytes) -> Path:
    with path.open("r+b") as f:
        f.seek(offset)
        f.write(data)
    return path


def backing_qcow2(tmp: Path) -> Path:
    out = tmp / "leak.qcow2"
    qemu_img("create", "-f", "qcow2", "-F", "raw", "-b", SECRET, str(out), "1M")
    return out


def data_file_qcow2(tmp: Path) -> Path:
    target = tmp / "outside.raw"
    out = tmp / "ext.qcow2"
    qemu_img("create", "-f", "qcow2", "-o", f"data_file={target},data_file_raw=on", str(out), "1M")
    return out


def flat_extent_vmdk(tmp: Path) -> Path:
    out = tmp / "desc.vmdk"
    out.write_text('# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\n'
                   f'createType="monolithicFlat"\n\nRW 2048 FLAT "{SECRET}" 0\n')
    return out


def relative_extent_vmdk(tmp: Path) -> Path:
    out = tmp / "rel.vmdk"
    out.write_text('# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\n'
                   'createType="monolithicFlat"\n\nRW 2048 FLAT "web01.ovf" 0\n')
    return out


def parent_hint_vmdk(tmp: Path) -> Path:
    """A single-file sparse VMDK whose embedded descriptor names a parent: qemu would open it."""
    out = tmp / "hint.vmdk"
    qemu_img("create", "-f", "vmdk", "-o", "subformat=monolithicSparse", str(out), "1M")
    data = out.read_bytes()
    start = data.index(b"# Disk DescriptorFile")
    end = data.index(b"\0", start)
    desc = data[start:end].replace(b"parentCID=ffffffff",
                                   f'parentCID=12345678\nparentFileNameHint="{SECRET}"'.encode())
    assert len(desc) <= end - start + 200  # the descriptor area has room to spare
    out.write_bytes(data[:start] + desc + data[start + len(desc):])
    return out


def differencing_vdi(tmp: Path) -> Path:
    out = tmp / "diff.vdi"
    qemu_img("create", "-f", "vdi", str(out), "1M")
    return patched(out, 0x4C, struct.pack("<I", 4))  # image type 4: differencing


def differencing_vhd(tmp: Path) -> Path:
    out = tmp / "diff.vhd"
    qemu_img("create", "-f", "vpc", str(out), "1M")
    return patched(out, 60, struct.pack(">I", 4))  # disk type 4: differencing


def parent_locator_vhdx(tmp: Path) -> Path:
    """A VHDX whose metadata table lists a parent locator (page 83 data's entry renamed)."""
    out = tmp / "diff.vhdx"
    qemu_img("create", "-f", "vhdx", str(out), "1M")
    page83 = uuid.UUID("BECA12AB-B2E6-4523-93EF-C309E000C746").bytes_le
    locator = uuid.UUID("A8D35F2D-B30B-454D-ABF7-D3D84834AB0C").bytes_le
    data = out.read_bytes()
    return patched(out, data.index(page83), locator)


def absurd_qcow2(tmp: Path) -> Path:
    out = tmp / "huge.qcow2"
    qemu_img("create", "-f", "qcow2", str(out), "20T")
    return out


def qed_disk(tmp: Path) -> Path:
    out = tmp / "old.qed"
    qemu_img("create", "-f", "qed", str(out), "1M")
    return out


def not_a_disk(tmp: Path) -> Path:
    out = tmp / "notes.vmdk"
    out.write_text("a text file with a disk's name")
    return out


HOSTILE: list[tuple[Callable[[Path], Path], str]] = [
    (backing_qcow2, "qcow2 backing file"),
    (data_file_qcow2, "external data file"),
    (flat_extent_vmdk, "VMDK descriptor is not a single self-contained file"),
    (relative_extent_vmdk, "VMDK descriptor is not a single self-contained file"),
    (parent_hint_vmdk, "names a parent disk"),
    (differencing_vdi, "differencing disk VDI"),
    (differencing_vhd, "differencing VHD"),
    (parent_locator_vhdx, "parent locator"),
    (absurd_qcow2, "declared virtual size"),
    (qed_disk, "QED images are not accepted"),
    (not_a_disk, "not a recognised disk image"),
]


@pytest.mark.parametrize(("make", "match"), HOSTILE, ids=[m.__name__ for m, _ in HOSTILE])
def test_hostile_disk_is_refused_plain(tmp_path: Path, make: Callable[[Path], Path],
                                       match: str) -> None:
    disk = make(tmp_path)
    with pytest.raises(InvalidInput, match=match) as err:
        inspect.check(disk, "upload")
    assert err.value.status == 422 and err.value.field == "disk"
    assert err.value.detail.startswith("upload: refused")


@pytest.mark.parametrize(("make", "match"), HOSTILE, ids=[m.__name__ for m, _ in HOSTILE])
def test_hostile_disk_is_refused_inside_an_ova(tmp_path: Path, make: Callable[[Path], Path],
                                               match: str) -> None:
    disk = make(tmp_path)
    desc = VMWARE.format(size=disk.stat().st_size).replace(
        'ovf:capacity="64" ovf:capacityAllocationUnits="byte * 2^20"',
        'ovf:capacity="30" ovf:capacityAllocationUnits="byte * 2^40"')
    archive = pack(tmp_path, "web01", desc, {"disk1.vmdk": disk})
    dest = tmp_path / "unpacked"
    with pytest.raises(InvalidInput, match=match):
        ova.read_ova(archive, dest)
    assert not dest.exists()  # nothing left behind


def test_declared_format_must_match_the_content(tmp_path: Path) -> None:
    qcow = tmp_path / "disk.qcow2"
    qemu_img("create", "-f", "qcow2", str(qcow), "1M")
    archive = pack(tmp_path, "web01", VMWARE.format(size=qcow.stat().st_size), {"disk1.vmdk": qcow})
    with pytest.raises(InvalidInput, match=r"declared .*vmdk.* but its content is qcow2"):
        ova.read_ova(archive, tmp_path / "out")


def test_honest_disks_of_every_format_pass(tmp_path: Path) -> None:
    for fmt, opts in [("raw", []), ("qcow2", []), ("vdi", []), ("vhdx", []),
                      ("vpc", ["-o", "subformat=dynamic,force_size=on"]),
                      ("vmdk", ["-o", "subformat=streamOptimized"]),
                      ("vmdk", ["-o", "subformat=monolithicSparse"])]:
        out = tmp_path / f"ok-{fmt}-{len(opts)}"
        out.unlink(missing_ok=True)
        qemu_img("create", "-f", fmt, *opts, str(out), "4M")
        found = inspect.check(out)
        assert (found.format, found.virtual_size) == (fmt, 4 * 2**20)


def test_a_descriptor_alone_is_recognised(tmp_path: Path) -> None:
    head = VMWARE.format(size=1).encode()
    assert ova.looks_like_descriptor(head)
    assert ova.looks_like_descriptor(b"\xef\xbb\xbf" + head)
    assert not ova.looks_like_descriptor(b"QFI\xfb" + bytes(100))


def test_tar_members_are_plain_files_only(tmp_path: Path) -> None:
    fifo = tarfile.TarInfo("pipe")
    fifo.type = tarfile.FIFOTYPE
    disk = tmp_path / "disk1.vmdk"
    qemu_img("create", "-f", "vmdk", "-o", "subformat=streamOptimized", str(disk), "1M")
    archive = pack(tmp_path, "web01", VMWARE.format(size=disk.stat().st_size),
                   {"disk1.vmdk": disk}, extra=[fifo])
    with pytest.raises(InvalidInput, match="not a regular file"):
        ova.read_ova(archive, tmp_path / "out")

"""The storage policy `keep` at a vm location, with libvirt and qemu-img (issue 33): a replica's
data disk outlives it and its replacement gets the same disk, its bytes unchanged; a replica
that fails to start gives the disk back; forgetting the deployment drops it."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from onepane.providers.base import DATA_TAG, InstanceSpec, Provider
from onepane.providers.copy import sha256_of
from onepane.providers.registry import build_provider
from onepane.providers.vm.provider import VmProvider

pytestmark = pytest.mark.root
MARK = "0x5a"


@pytest.fixture(scope="module")
def vm(tmp_path_factory: pytest.TempPathFactory, guest_disk: Path) -> Iterator[tuple[VmProvider, str]]:
    p = build_provider("kd-vm", "vm", state_dir=tmp_path_factory.mktemp("kept"), region="",
                       driver=None, credentials={}, options={"index": 248, "stop_timeout": 0.5})
    assert isinstance(p, VmProvider)
    with keeping(p, guest_disk) as image:
        yield p, image


@contextlib.contextmanager
def keeping(p: Provider, guest_disk: Path) -> Iterator[str]:
    """The provider set up with the guest image (its id yielded); afterwards every instance
    destroyed and the data kept for deployment `db` dropped (the replicas' key is db.<slot>)."""
    p.setup()
    try:
        yield p.import_disk("img-kept", "guest", guest_disk, "qcow2", sha256_of(guest_disk),
                            lambda _pct: None)
    finally:
        for inst in p.list_instances():
            p.destroy_instance(inst.provider_id)
        p.forget_data("db")
        p.teardown()
        p.close()


def replica(image: str, n: int, key: str | None = "db.0") -> InstanceSpec:
    return InstanceSpec(onepane_id=f"inst-kd{n}", name=f"db-{n}", image=image, size="vm.tiny",
                        disks=[2**20], tags={DATA_TAG: key} if key else {})


def io(disk: Path, command: str) -> subprocess.CompletedProcess[str]:
    """qemu-io on a disk a running guest may hold (-U: shared, read-only for reads)."""
    return subprocess.run(["qemu-io", "-U", "-r", "-f", "qcow2", "-c", command, str(disk)],
                          capture_output=True, text=True)


def test_the_replacement_gets_the_data_disk_its_predecessor_left(
        vm: tuple[VmProvider, str]) -> None:
    p, image = vm
    first = p.create_instance(replica(image, 1))
    disk = p.instance_dir(first.provider_id) / "disk1.qcow2"
    p.destroy_instance(first.provider_id)  # the replica is lost; its data disk is kept
    kept = p.kept.root / "db.0" / "disk1.qcow2"
    assert kept.exists() and not disk.exists()
    w = subprocess.run(["qemu-io", "-f", "qcow2", "-c", f"write -P {MARK} 0 4k", str(kept)],
                       capture_output=True, text=True)
    assert w.returncode == 0, w.stderr  # what the lost replica had written
    second = p.create_instance(replica(image, 2))
    adopted = p.instance_dir(second.provider_id) / "disk1.qcow2"
    r = io(adopted, f"read -P {MARK} 0 4k")
    assert r.returncode == 0 and "Pattern verification failed" not in r.stdout, r.stdout
    assert p.kept.keys() == []  # taken: nobody else gets it
    # a replica without the tag, or in another slot, starts blank
    other = p.create_instance(replica(image, 3, key="db.1"))
    blank = io(p.instance_dir(other.provider_id) / "disk1.qcow2", f"read -P {MARK} 0 4k")
    assert "Pattern verification failed" in blank.stdout
    p.destroy_instance(other.provider_id)
    p.destroy_instance(second.provider_id)
    assert p.kept.keys() == ["db.0", "db.1"]
    assert p.forget_data("db") == ["db.0", "db.1"] and p.kept.keys() == []


def test_a_replacement_that_fails_to_start_gives_the_disk_back(
        vm: tuple[VmProvider, str], monkeypatch: pytest.MonkeyPatch) -> None:
    p, image = vm
    first = p.create_instance(replica(image, 4))
    p.destroy_instance(first.provider_id)
    assert p.kept.keys() == ["db.0"]

    def no_start(_dom: object) -> None:
        raise RuntimeError("the host refused to start it")
    monkeypatch.setattr(p, "_start", no_start)  # defined (disks taken), then it fails
    with pytest.raises(RuntimeError):
        p.create_instance(replica(image, 5))
    assert p.kept.keys() == ["db.0"]  # given back, whole
    assert (p.kept.root / "db.0" / "disk1.qcow2").exists()
    assert not p.instance_dir("inst-kd5").exists()
    assert p.forget_data("db") == ["db.0"]

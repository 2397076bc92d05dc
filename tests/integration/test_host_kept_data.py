"""The storage policy `keep` at a location of remote hosts (issue 33; hostkept.py): a replica's
data disk outlives it in its host's pool and its replacement gets it, its bytes unchanged —
on the same host without a copy, or carried to another host when that one cannot take the
replacement; a replica that fails to start gives the disk back; forgetting the deployment drops
it everywhere. The hosts are reached only over TLS: bytes are put on and read back from a disk
through libvirt's volume streams, and checked here with qemu-io."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from onepane.errors import OnepaneError, TransientProviderError
from onepane.providers.base import DATA_TAG, InstanceSpec
from onepane.providers.registry import build_provider
from onepane.providers.vm.hostlab import HostLab, host_lab
from onepane.providers.vm.hosts import HostsProvider
from tests.helpers import wait_for
from tests.integration.test_kept_data import keeping

pytestmark = pytest.mark.root
MARK = "0x6b"


@pytest.fixture(scope="module")
def lab() -> Iterator[HostLab]:
    with host_lab({"kh1": 207, "kh2": 208}) as hosts:
        yield hosts


@pytest.fixture(scope="module")
def hosts(tmp_path_factory: pytest.TempPathFactory, guest_disk: Path,
          lab: HostLab) -> Iterator[tuple[HostsProvider, str]]:
    p = build_provider("kd-hosts", "vm", state_dir=tmp_path_factory.mktemp("hostkept"),
                       region="", driver=None, credentials=lab.credentials(),
                       options={"hosts": lab.specs(), "stop_timeout": 0.5})
    assert isinstance(p, HostsProvider)
    with keeping(p, guest_disk) as image:
        yield p, image


def replica(image: str, n: int, key: str | None = "db.0") -> InstanceSpec:
    return InstanceSpec(onepane_id=f"inst-hkd{n}", name=f"db-{n}", image=image,
                        size="vm.tiny", disks=[2**20], tags={DATA_TAG: key} if key else {})


def host_of(p: HostsProvider, instance: str) -> str:
    located = p.locate(instance)
    assert located is not None, instance
    return located[0]


def kept_on(p: HostsProvider) -> dict[str, list[str]]:
    """host -> the kept volumes in its pool, read over libvirt."""
    out = {}
    for h in p.up_hosts():
        pool = p.pools.pool(h)
        pool.refresh(0)
        out[h] = sorted(v for v in pool.listVolumes() if v.startswith("kept."))
    return out


def put_mark(p: HostsProvider, instance: str, tmp: Path) -> None:
    """The instance (stopped) gets a data disk with MARK in its first 4 KiB, uploaded."""
    disk = tmp / "marked.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), "1M"], check=True)
    subprocess.run(["qemu-io", "-f", "qcow2", "-c", f"write -P {MARK} 0 4k", str(disk)],
                   check=True, capture_output=True)
    p.pools.upload(host_of(p, instance), f"{instance}-disk1.qcow2", disk, "qcow2")


def has_mark(p: HostsProvider, instance: str, tmp: Path) -> bool:
    """Whether the instance's data disk (downloaded from its host) holds MARK."""
    disk = tmp / f"{instance}-disk1.qcow2"
    p.pools.download_to(host_of(p, instance), f"{instance}-disk1.qcow2", disk)
    r = subprocess.run(["qemu-io", "-r", "-f", "qcow2", "-c", f"read -P {MARK} 0 4k", str(disk)],
                       capture_output=True, text=True)
    return r.returncode == 0 and "Pattern verification failed" not in r.stdout


def test_the_replacement_gets_the_data_disk_on_its_host_or_carried_to_another(
        hosts: tuple[HostsProvider, str], tmp_path: Path) -> None:
    p, image = hosts
    first = p.create_instance(replica(image, 1))
    p.kill_instance(first.provider_id)  # stopped: its disk is written from here
    holder = host_of(p, first.provider_id)
    put_mark(p, first.provider_id, tmp_path)
    p.destroy_instance(first.provider_id)  # lost; its data disk is kept on its host
    assert kept_on(p)[holder] == ["kept.db.0.disk1.qcow2"]

    second = p.create_instance(replica(image, 2))  # placed where its data is: no copy
    assert host_of(p, second.provider_id) == holder
    assert all(v == [] for v in kept_on(p).values())  # taken, not copied
    p.kill_instance(second.provider_id)
    assert has_mark(p, second.provider_id, tmp_path)
    p.destroy_instance(second.provider_id)

    p.roster.set_maintenance(holder, True)  # the holder takes no VM: the data travels
    try:
        third = p.create_instance(replica(image, 3))
        assert host_of(p, third.provider_id) != holder
        assert all(v == [] for v in kept_on(p).values())
        p.kill_instance(third.provider_id)
        assert has_mark(p, third.provider_id, tmp_path)
    finally:
        p.roster.set_maintenance(holder, False)

    plain = p.create_instance(replica(image, 4, key=None))  # untagged: nothing is kept
    p.destroy_instance(plain.provider_id)
    p.destroy_instance(third.provider_id)
    assert sum(len(v) for v in kept_on(p).values()) == 1
    assert p.forget_data("db") == ["db.0"]
    assert all(v == [] for v in kept_on(p).values())


def test_a_replacement_that_fails_gives_the_disk_back(
        hosts: tuple[HostsProvider, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p, image = hosts
    first = p.create_instance(replica(image, 5))
    p.kill_instance(first.provider_id)
    put_mark(p, first.provider_id, tmp_path)
    p.destroy_instance(first.provider_id)
    broken = replica(image, 6)
    broken.size = "vm.no-such-size"
    with pytest.raises(OnepaneError):
        p.create_instance(broken)  # refused before it took anything
    def refuse(*_a: object) -> None:  # the host refuses to start it, after it took the disk
        raise TransientProviderError("the host could not start it")
    monkeypatch.setattr(p, "_start", refuse)
    with pytest.raises(TransientProviderError):
        p.create_instance(replica(image, 7))
    monkeypatch.undo()
    assert p.locate("inst-hkd7") is None
    assert sum(len(v) for v in kept_on(p).values()) == 1  # given back, whole
    again = p.create_instance(replica(image, 8))
    p.kill_instance(again.provider_id)
    assert has_mark(p, again.provider_id, tmp_path)
    p.destroy_instance(again.provider_id)
    assert p.forget_data("db") == ["db.0"]


def test_a_deleted_deployment_s_disks_go_from_a_host_that_was_down(
        hosts: tuple[HostsProvider, str], lab: HostLab) -> None:
    """A host that does not answer when its deployment is deleted keeps the deployment's
    disks until it answers again: then the host watch's pass drops them (forget_data_late)."""
    p, image = hosts
    first = p.create_instance(replica(image, 9, key="gone.0"))
    holder = host_of(p, first.provider_id)
    p.destroy_instance(first.provider_id)  # its data disk kept on its host
    assert kept_on(p)[holder] == ["kept.gone.0.disk1.qcow2"]
    host = next(h for h in lab.hosts if h.name == holder)
    host.cut()
    try:
        wait_for(lambda: holder not in p.up_hosts(), 30, what="the holder not answering")
        assert p.forget_data("gone") == []  # nothing it could reach
        assert p.forget_data_late() == []  # still down: still owed
    finally:
        host.restore()
    wait_for(lambda: holder in p.up_hosts(), 30, what="the holder answering again")
    assert p.forget_data_late() == ["gone.0"]
    assert kept_on(p)[holder] == []
    assert p.forget_data_late() == []  # said once

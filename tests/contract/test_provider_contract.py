"""One contract, every provider: what onepane's services may rely on whatever the location is.

The same tests run against process data centers (local, netns), VM data centers (vm: libvirt and
QEMU, one host or several over TLS), container data centers (docker: two Docker Engine hosts over
TLS), a Libcloud cloud (EC2 on moto's server), Libcloud's dummy driver and the simulated
data center used for scale (sim). A new provider is
done when it passes here.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from onepane.errors import Conflict, InvalidInput, NotFound, Unsupported
from onepane.model import InstanceState
from onepane.providers.base import CONTAINER_FORMAT, Feature, InstanceSpec, Provider
from onepane.providers.copy import sha256_of
from onepane.providers.dcnet import CATCH_ALL
from onepane.providers.docker.lab import DockerLab, busybox_archive, docker_lab
from onepane.providers.registry import build_provider
from onepane.providers.vm.hostlab import HostLab, host_lab
from tests.conftest import ec2_location
from tests.helpers import wait_for


@dataclass
class Case:
    provider: Provider
    image: str
    size: str


def _local(tmp: Path, **_: Any) -> Case:
    return Case(build_provider("c-local", "local", state_dir=tmp, region="", driver=None,
                               credentials={}, options={}), "httpecho", "nano")


def _netns(tmp: Path, **_: Any) -> Case:
    return Case(build_provider("c-netns", "netns", state_dir=tmp, region="", driver=None,
                               credentials={}, options={"index": 241}), "httpecho", "nano")


def _vm(tmp: Path, guest_disk: Path, **_: Any) -> Case:
    p = build_provider("c-vm", "vm", state_dir=tmp, region="", driver=None, credentials={},
                       options={"index": 242, "stop_timeout": 1})
    p.setup()
    image = p.import_disk("img-contract", "guest", guest_disk, "qcow2", sha256_of(guest_disk),
                          lambda _pct: None)
    return Case(p, image, "vm.tiny")


def _vm_hosts(tmp: Path, guest_disk: Path, lab_hosts: HostLab, **_: Any) -> Case:
    # disks on the lab's network storage (the local-disk flavour is tests/e2e/test_hosts_crash)
    assert lab_hosts.storage is not None
    p = build_provider("c-vmhosts", "vm", state_dir=tmp, region="", driver=None,
                       credentials=lab_hosts.credentials(),
                       options={"hosts": lab_hosts.specs(), "storage": lab_hosts.storage.options(),
                                "stop_timeout": 0.5})
    p.setup()
    image = p.import_disk("img-contract", "guest", guest_disk, "qcow2", sha256_of(guest_disk),
                          lambda _pct: None)
    return Case(p, image, "vm.tiny")


def _docker(tmp: Path, lab_docker: DockerLab, **_: Any) -> Case:
    p = build_provider("c-docker", "docker", state_dir=tmp, region="", driver=None,
                       credentials=lab_docker.credentials(), options={"hosts": lab_docker.specs()})
    p.setup()
    archive = busybox_archive(tmp / "busybox.tar")
    image = p.import_disk("img-contract", "busybox", archive, CONTAINER_FORMAT,
                          sha256_of(archive), lambda _pct: None)
    return Case(p, image, "docker.nano")


def _ec2(tmp: Path, moto: str, **_: Any) -> Case:
    loc = ec2_location(moto)
    return Case(build_provider("c-ec2", "cloud", state_dir=tmp, region="us-east-1",
                               driver="ec2-compat", credentials=loc["credentials"],  # type: ignore[arg-type]
                               options=loc["options"]), "ami-760aaa0f", "t2.micro")  # type: ignore[arg-type]


def _dummy(tmp: Path, **_: Any) -> Case:
    return Case(build_provider("c-dummy", "cloud", state_dir=tmp, region="", driver="dummy",
                               credentials={}, options={}), "1", "1")


def _sim(tmp: Path, **_: Any) -> Case:
    return Case(build_provider("c-sim", "sim", state_dir=tmp, region="", driver=None,
                               credentials={}, options={"instances": 1000,
                                                        "changes_per_minute": 600}),
                "sim-image", "sim.small")


CASES: dict[str, Callable[..., Case]] = {"local": _local, "netns": _netns, "vm": _vm,
                                         "vm-hosts": _vm_hosts, "docker": _docker,
                                         "ec2-on-moto": _ec2, "libcloud-dummy": _dummy,
                                         "sim": _sim}
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def lab_hosts() -> Iterator[HostLab]:
    """Two hypervisor hosts reached over TCP and a storage host, for the multi-host vm
    provider."""
    with host_lab({"ch1": 243, "ch2": 244}, storage=("cst", 245)) as hosts:
        yield hosts


@pytest.fixture(scope="module")
def lab_docker() -> Iterator[DockerLab]:
    """Two Docker Engine hosts reached over TCP with mutual TLS."""
    with docker_lab({"cd1": 246, "cd2": 247}) as hosts:
        yield hosts


@pytest.fixture(params=list(CASES))
def case(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Case]:
    kind = request.param
    extra: dict[str, Any] = {}
    if kind in ("vm", "vm-hosts"):
        extra["guest_disk"] = request.getfixturevalue("guest_disk")
    if kind == "vm-hosts":
        extra["lab_hosts"] = request.getfixturevalue("lab_hosts")
    if kind == "docker":
        extra["lab_docker"] = request.getfixturevalue("lab_docker")
    if kind == "ec2-on-moto":
        extra["moto"] = request.getfixturevalue("moto")
    # after the fixtures above: a lab's catch-all stays as long as its namespaces do
    had_catch_all = CATCH_ALL in subprocess.run(["ip", "route", "show", "type", "blackhole"],
                                                capture_output=True, text=True).stdout
    c = CASES[kind](tmp_path, **extra)
    try:
        c.provider.setup()
        yield c
    finally:
        with contextlib.suppress(Exception):
            for inst in c.provider.list_instances():
                if inst.onepane_id and inst.onepane_id.startswith("inst-k"):
                    c.provider.destroy_instance(inst.provider_id)
        c.provider.teardown()
        c.provider.close()
        if not had_catch_all:
            subprocess.run(["ip", "route", "del", "blackhole", CATCH_ALL], check=False)


def spec(case: Case, n: int, **kw: Any) -> InstanceSpec:
    return InstanceSpec(onepane_id=f"inst-k{n}", name=f"contract-{n}", image=case.image,
                        size=case.size, **kw)


def test_every_missing_capability_says_why(case: Case) -> None:
    caps = case.provider.capabilities
    for feature, reason in caps.missing.items():
        assert isinstance(feature, Feature) and len(reason) > 10, (feature, reason)
    assert caps.as_dict().keys() == {f.value for f in Feature}


def test_create_is_idempotent_per_onepane_id_where_declared(case: Case) -> None:
    p = case.provider
    first = p.create_instance(spec(case, 1))
    if not p.capabilities.supports(Feature.idempotent_create):
        # declared, so the job runner never retries a create here (tests/integration)
        assert "retried create" in p.capabilities.reasons()["idempotent_create"] or \
            "earlier attempt" in p.capabilities.reasons()["idempotent_create"]
        p.destroy_instance(first.provider_id)
        return
    again = p.create_instance(spec(case, 1))
    assert again.provider_id == first.provider_id
    mine = [i for i in p.list_instances() if i.onepane_id == "inst-k1"]
    assert len(mine) == 1
    p.destroy_instance(first.provider_id)


def test_destroy_twice_is_fine_and_a_destroyed_instance_leaves_listings(case: Case) -> None:
    p = case.provider
    obs = p.create_instance(spec(case, 2))
    assert obs.provider_id in {i.provider_id for i in p.list_instances()}
    if p.capabilities.supports(Feature.disk_images):  # its image cannot go while it lives
        with pytest.raises(Conflict) as refused:
            p.delete_disk(case.image)
        assert refused.value.field == "image" and "in use" in refused.value.detail
        assert case.image in {i.provider_id for i in p.list_images()}
    p.destroy_instance(obs.provider_id)
    p.destroy_instance(obs.provider_id)
    assert obs.provider_id not in {i.provider_id for i in p.list_instances()}


def test_volumes_snapshots_networks_and_disk_imports_work_where_declared(
        case: Case, tmp_path: Path) -> None:
    """The working path of each storage and network feature a provider declares (issue 30:
    a declared feature that does not work is a lie the services act on); what it declares
    missing is skipped here and refused by the one error below."""
    p = case.provider
    caps = p.capabilities
    ran = []
    if caps.supports(Feature.volumes):
        vol = p.create_volume("contract-vol", 1)
        assert vol.provider_id in {v.provider_id for v in p.list_volumes()}
        if caps.supports(Feature.snapshots):
            snap = p.create_snapshot(vol.provider_id, "snap-kcontract")
            copy = p.volume_from_snapshot(snap, "contract-copy", 2)
            assert copy.provider_id in {v.provider_id for v in p.list_volumes()}
            p.delete_volume(copy.provider_id)
            p.delete_snapshot(snap)
            ran.append("snapshots")
        p.delete_volume(vol.provider_id)
        wait_for(lambda: vol.provider_id not in {v.provider_id for v in p.list_volumes()
                                                 if v.state not in ("deleting", "deleted")},
                 30, what="the volume gone")
        ran.append("volumes")
    if caps.supports(Feature.networks):
        net = p.create_network("contract-net", "10.98.0.0/24")
        assert net.provider_id in {n.provider_id for n in p.list_networks()}
        p.delete_network(net.provider_id)
        assert net.provider_id not in {n.provider_id for n in p.list_networks()}
        ran.append("networks")
    if caps.supports(Feature.disk_images):
        fmt = "raw" if "raw" in p.disk_formats else p.disk_formats[0]
        disk = tmp_path / f"contract.{fmt}"
        if fmt == CONTAINER_FORMAT:  # a container location takes image archives
            busybox_archive(disk, tag="contract:1")
        else:
            subprocess.run(["qemu-img", "create", "-q", "-f", fmt, str(disk), "1M"], check=True)
        image = p.import_disk("img-kcontract", "contract", disk, fmt, sha256_of(disk),
                              lambda _pct: None)
        assert image in {i.provider_id for i in p.list_images()}
        p.delete_disk(image)  # the catalog deleting the image
        assert image not in {i.provider_id for i in p.list_images()}
        with pytest.raises(NotFound):
            p.delete_disk(image)
        ran.append("disk_images")
    if not ran:
        pytest.skip(f"{p.location} declares none of volumes, networks, disk images: "
                    f"{caps.reasons()}")


def test_data_disks_outlive_a_destroyed_replica_where_declared(case: Case) -> None:
    """A replica tagged onepane:data keeps its extra disks when destroyed (for the replica
    that replaces it) until its deployment's data is forgotten."""
    p = case.provider
    if not p.capabilities.supports(Feature.keep_data):
        pytest.skip(f"{p.location} declares no keep_data: {p.capabilities.reasons()['keep_data']}")
    obs = p.create_instance(spec(case, 4, disks=[2**20], tags={"onepane:data": "kdata.0"}))
    p.destroy_instance(obs.provider_id)
    assert p.forget_data("kdata") == ["kdata.0"]  # it was kept
    assert p.forget_data("kdata") == []
    plain = p.create_instance(spec(case, 5, disks=[2**20]))  # untagged: nothing is kept
    p.destroy_instance(plain.provider_id)
    assert p.forget_data("contract") == []


def state_of(p: Provider, provider_id: str) -> InstanceState | None:
    return next((i.state for i in p.list_instances() if i.provider_id == provider_id), None)


def test_suspend_keeps_the_instance_and_resume_or_start_goes_on_where_declared(case: Case) -> None:
    p = case.provider
    if not p.capabilities.supports(Feature.suspend):
        pytest.skip(f"{p.location} declares no suspend: "
                    f"{p.capabilities.reasons()['suspend']}")  # the verb's error: below
    obs = p.create_instance(spec(case, 3))
    wait_for(lambda: state_of(p, obs.provider_id) == InstanceState.running, 120,
             what="running")
    p.suspend_instance(obs.provider_id)
    assert state_of(p, obs.provider_id) == InstanceState.suspended
    p.suspend_instance(obs.provider_id)  # again: nothing to do
    p.start_instance(obs.provider_id)  # start goes on from where it was
    assert state_of(p, obs.provider_id) == InstanceState.running
    p.suspend_instance(obs.provider_id)
    p.resume_instance(obs.provider_id)
    assert state_of(p, obs.provider_id) == InstanceState.running
    p.destroy_instance(obs.provider_id)


def test_a_stopped_instance_takes_another_size_where_declared(case: Case) -> None:
    p = case.provider
    if not p.capabilities.supports(Feature.resize):
        pytest.skip(f"{p.location} declares no resize: {p.capabilities.reasons()['resize']}")
    other = next(s.provider_id for s in p.list_sizes() if s.provider_id != case.size)
    obs = p.create_instance(spec(case, 4))
    wait_for(lambda: state_of(p, obs.provider_id) == InstanceState.running, 120,
             what="running")
    p.stop_instance(obs.provider_id)
    wait_for(lambda: state_of(p, obs.provider_id) == InstanceState.stopped, 120,
             what="stopped")
    p.resize_instance(obs.provider_id, other)
    p.start_instance(obs.provider_id)
    wait_for(lambda: state_of(p, obs.provider_id) == InstanceState.running, 120,
             what="running again")
    now = next(i for i in p.list_instances() if i.provider_id == obs.provider_id)
    assert now.size == other
    p.destroy_instance(obs.provider_id)


def test_validate_names_the_field(case: Case) -> None:
    p = case.provider
    p.validate(case.image, case.size)
    with pytest.raises(InvalidInput) as exc:
        p.validate(case.image, "no-such-size")
    assert exc.value.field == "size"
    with pytest.raises(InvalidInput) as exc:
        p.validate("no-such-image-anywhere", case.size)
    assert exc.value.field == "image"


def test_acting_on_an_unknown_instance_is_not_found(case: Case) -> None:
    p = case.provider
    p.destroy_instance("inst-knever")  # destroying what is gone succeeds
    if p.capabilities.supports(Feature.stop_start):
        with pytest.raises(NotFound):
            p.stop_instance("inst-knever")


VERBS: dict[Feature, Callable[[Provider], Any]] = {
    Feature.volumes: lambda p: p.create_volume("v", 1),
    Feature.networks: lambda p: p.create_network("n", "10.99.0.0/24"),
    Feature.stop_start: lambda p: p.stop_instance("inst-knever"),
    Feature.reboot: lambda p: p.reboot_instance("inst-knever"),
    Feature.app_images: lambda p: p.import_image(Path("/nonexistent.tar.gz")),
    Feature.disk_images: lambda p: p.import_disk("img-x", "x", Path("/nonexistent"), "qcow2",
                                                 "0" * 64, lambda _pct: None),
    Feature.cut: lambda p: p.cut("silent"),
    Feature.suspend: lambda p: p.suspend_instance("inst-knever"),
    Feature.snapshots: lambda p: p.create_snapshot("vol-knever", "snap-knever"),
    Feature.resize: lambda p: p.resize_instance("inst-knever", "small"),
    Feature.capture_image: lambda p: p.export_disk("inst-knever", Path("/nonexistent")),
    Feature.firewall: lambda p: p.enforce({}, {}),
    Feature.addresses: lambda p: p.route_addresses({}),
    Feature.console: lambda p: p.console_output("inst-knever"),
    Feature.live_migration: lambda p: p.live_migrate("inst-knever", p, 1.0,
                                                     lambda *_a: None),
    Feature.keep_data: lambda p: p.forget_data("knever"),
}


def test_an_unsupported_verb_raises_the_one_error_with_its_reason(case: Case) -> None:
    p = case.provider
    for feature, reason in p.capabilities.missing.items():
        call = VERBS.get(feature)
        if call is None:
            continue
        with pytest.raises(Unsupported) as exc:
            call(p)
        assert reason in exc.value.detail and p.location in exc.value.detail

"""A docker location's provider against real Docker Engine hosts reached over TLS (issue 34):
what a restart of dockerd, a restart of onepane, a cut link and a volume do.

Two hosts in network namespaces (providers/docker/lab.py); each test drives the provider as
the inventory does and checks with the lab's own view of a host (its UNIX socket).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from onepane.errors import Conflict, TransientProviderError
from onepane.model import InstanceState
from onepane.providers.base import CONTAINER_FORMAT, InstanceSpec
from onepane.providers.copy import sha256_of
from onepane.providers.docker.lab import DockerLab, busybox_archive, docker_lab, restart_daemon
from onepane.providers.docker.provider import DockerProvider
from onepane.providers.registry import build_provider
from tests.helpers import wait_for

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def lab() -> Iterator[DockerLab]:
    with docker_lab({"v1": 254, "v2": 239}, ssh=True) as lab:
        yield lab


def provider(lab: DockerLab, state: Path) -> DockerProvider:
    p = build_provider("dc-v", "docker", state_dir=state, region="", driver=None,
                       credentials=lab.credentials(), options={"hosts": lab.specs()})
    p.setup()
    assert isinstance(p, DockerProvider)
    return p


@pytest.fixture
def made(lab: DockerLab, tmp_path: Path) -> Iterator[tuple[DockerProvider, str]]:
    p = provider(lab, tmp_path / "state")
    archive = busybox_archive(tmp_path / "web.tar")
    image = p.import_disk("img-v", "web", archive, CONTAINER_FORMAT, sha256_of(archive),
                          lambda _pct: None)
    try:
        yield p, image
    finally:
        p.teardown()
        p.close()


def answers(address: str, port: int) -> bool:
    r = subprocess.run(["curl", "-s", "-m", "2", f"http://{address}:{port}/"],
                       capture_output=True, text=True, check=False)
    return r.stdout.strip() == "hello"


def mine(p: DockerProvider, onepane_id: str) -> list[InstanceState]:
    return [i.state for i in p.list_instances() if i.onepane_id == onepane_id]


def test_a_restarted_dockerd_and_a_restarted_onepane_adopt_the_container_never_twin_it(
        lab: DockerLab, made: tuple[DockerProvider, str], tmp_path: Path) -> None:
    p, image = made
    obs = p.create_instance(InstanceSpec("inst-a1", "web", image, "docker.nano",
                                         tags={"team": "shop"}))
    host = obs.tags["onepane:host"]
    # each tag a label of its own: the host's own tools find what onepane shows
    assert lab.host(host).docker("ps", "-q", "--filter", "label=onepane.tag.team=shop").strip()
    lab.host(host).kill_daemon()
    assert mine(p, "inst-a1") == [InstanceState.missing]  # seen at once: the host is silent
    restart_daemon(lab.host(host))
    again = provider(lab, tmp_path / "state")  # onepane restarted: nothing but the labels
    wait_for(lambda: mine(again, "inst-a1") == [InstanceState.stopped], 10,
             what="the container found again by its label (stopped by the daemon's restart)")
    again.start_instance("inst-a1")
    (now,) = [i for i in again.list_instances() if i.onepane_id == "inst-a1"]
    assert now.state == InstanceState.running and now.tags["onepane:host"] == host
    wait_for(lambda: answers(now.addresses[0], now.ports["app"]), 10, what="serving again")
    assert lab.host(host).docker("ps", "-a", "--filter", "label=onepane.id=inst-a1",
                                 "-q").split().__len__() == 1
    again.close()


def test_a_cut_link_is_seen_in_seconds_and_the_container_is_back_when_it_heals(
        lab: DockerLab, made: tuple[DockerProvider, str]) -> None:
    p, image = made
    obs = p.create_instance(InstanceSpec("inst-c1", "web", image, "docker.nano"))
    net = lab.host(obs.tags["onepane:host"]).net
    net.cut("silent")
    try:
        assert mine(p, "inst-c1") == [InstanceState.missing]  # a 2 s connect, not minutes
        assert any("does not answer" in x for x in p.problems())
        rows = {r["name"]: r["state"] for r in p.hosts()}
        assert rows[obs.tags["onepane:host"]] == "unreachable" and "up" in rows.values()
    finally:
        net.restore()
    wait_for(lambda: mine(p, "inst-c1") == [InstanceState.running], 10,
             what="running again once the host answers")


def test_a_volume_keeps_its_data_across_attachments_and_stays_on_its_host(
        lab: DockerLab, made: tuple[DockerProvider, str]) -> None:
    p, image = made
    a = p.create_instance(InstanceSpec("inst-v1", "web", image, "docker.nano",
                                       tags={"onepane:deployment": "v"}))
    b = p.create_instance(InstanceSpec("inst-v2", "web", image, "docker.nano",
                                       tags={"onepane:deployment": "v"}))
    assert a.tags["onepane:host"] != b.tags["onepane:host"]  # spread by deployment
    host = lab.host(a.tags["onepane:host"])
    vol = p.create_volume("data", 1)
    p.attach_volume(vol.provider_id, "inst-v1", "/dev/sdh")
    host.docker("exec", "inst-v1", "sh", "-c", "echo kept > /mnt/sdh/file")
    with pytest.raises(Conflict, match="is attached"):
        p.delete_volume(vol.provider_id)
    p.detach_volume(vol.provider_id)
    assert "/mnt/sdh" not in host.docker("inspect", "-f", "{{json .Mounts}}", "inst-v1")
    with pytest.raises(Conflict, match="does not leave its host"):
        p.attach_volume(vol.provider_id, "inst-v2", "/dev/sdh")
    p.attach_volume(vol.provider_id, "inst-v1", "/dev/sdh")
    assert host.docker("exec", "inst-v1", "cat", "/mnt/sdh/file").strip() == "kept"
    (shown,) = [v for v in p.list_volumes() if v.provider_id == vol.provider_id]
    assert (shown.attached_to, shown.state) == ("inst-v1", "in-use")
    assert mine(p, "inst-v1") == [InstanceState.running]  # made again, running again
    p.destroy_instance("inst-v1")
    p.delete_volume(vol.provider_id)
    assert vol.provider_id not in host.docker("volume", "ls", "-q").split()
    assert vol.provider_id not in {v.provider_id for v in p.list_volumes()}


def test_a_host_reached_over_ssh_with_the_locations_key_and_known_host_keys_only(
        lab: DockerLab, tmp_path: Path) -> None:
    p = build_provider("dc-s", "docker", state_dir=tmp_path, region="", driver=None,
                       credentials=lab.credentials(ssh=True),
                       options={"hosts": lab.specs("v1", ssh=True)})
    assert isinstance(p, DockerProvider)
    try:
        p.setup()
        p.check()
        archive = busybox_archive(tmp_path / "web.tar")
        image = p.import_disk("img-s", "web", archive, CONTAINER_FORMAT, sha256_of(archive),
                              lambda _pct: None)
        obs = p.create_instance(InstanceSpec("inst-s1", "web", image, "docker.nano"))
        wait_for(lambda: answers(obs.addresses[0], obs.ports["app"]), 10, what="serving")
        assert "inst-s1" in lab.host("v1").docker("ps", "--format", "{{.Names}}").split()
        p.destroy_instance("inst-s1")
    finally:
        p.teardown()
        p.close()
    # a host whose key onepane was not given is refused: nothing is accepted on first use
    stranger = lab.host("v2").known_hosts.replace(lab.host("v2").address,
                                                  lab.host("v1").address)
    q = build_provider("dc-s2", "docker", state_dir=tmp_path, region="", driver=None,
                       credentials={**lab.credentials(ssh=True), "ssh_known_hosts": stranger},
                       options={"hosts": lab.specs("v1", ssh=True)})
    with pytest.raises(TransientProviderError, match="ssh"):
        q.check()
    assert any("ssh" in x for x in q.problems())
    q.close()


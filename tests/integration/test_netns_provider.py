"""A data center in a real network namespace: reachable at its own address, cut off for real."""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from onepane.model import InstanceState
from onepane.providers.base import InstanceSpec
from onepane.providers.dcnet import CATCH_ALL
from onepane.providers.netns import NetnsProvider
from tests.helpers import wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")
INDEX = 231  # away from what drills and benches use


@pytest.fixture
def dc(tmp_path: Path) -> Iterator[NetnsProvider]:
    had_catch_all = CATCH_ALL in subprocess.run(["ip", "route", "show", "type", "blackhole"],
                                                capture_output=True, text=True).stdout
    p = NetnsProvider("nst", tmp_path, {"index": INDEX})
    p.setup()
    yield p
    p.teardown()
    if not had_catch_all:
        subprocess.run(["ip", "route", "del", "blackhole", CATCH_ALL], check=False)


def test_instances_live_in_the_namespace_and_can_be_cut_off(dc: NetnsProvider) -> None:
    obs = dc.create_instance(InstanceSpec("inst-n1", "web", "httpecho", "small"))
    addr, port = obs.addresses[0], obs.ports["app"]
    assert addr == f"10.200.{INDEX}.2"
    url = f"http://{addr}:{port}/"
    assert wait_for(lambda: httpx.get(url, timeout=1).json(), what="app in netns")["location"] == "nst"
    # the process really runs inside the namespace
    pid = int(Path(dc.instances_dir / "inst-n1" / "instance.json").read_text().split('"pid": ')[1]
              .split(",")[0])
    assert os.readlink(f"/proc/{pid}/ns/net") != os.readlink("/proc/self/ns/net")

    dc.cut("silent")
    assert dc.is_cut()
    with pytest.raises((socket.timeout, TimeoutError)):  # no reset: only silence
        socket.create_connection((addr, port), timeout=0.5)
    dc.restore()
    assert not dc.is_cut()
    wait_for(lambda: httpx.get(url, timeout=1).status_code == 200, what="reachable again")

    dc.cut("down")
    with pytest.raises(OSError):
        socket.create_connection((addr, port), timeout=0.5)
    dc.restore()
    wait_for(lambda: httpx.get(url, timeout=1).status_code == 200, what="link back up")
    assert dc.list_instances()[0].state == InstanceState.running


def test_setup_rebuilds_a_link_whose_peer_was_left_in_an_orphan_namespace(tmp_path: Path) -> None:
    """What a crashed run leaves: the host end of the veth, its peer in a namespace that lost its
    name while a process still held it. CI met this; setup must start over, not fail."""
    had_catch_all = CATCH_ALL in subprocess.run(["ip", "route", "show", "type", "blackhole"],
                                                capture_output=True, text=True).stdout
    index, orphan = INDEX + 1, "op-orphan-test"
    subprocess.run(["ip", "netns", "add", orphan], check=True)
    try:
        subprocess.run(["ip", "link", "add", f"op-h{index}", "type", "veth", "peer", "name",
                        f"op-c{index}"], check=True)
        subprocess.run(["ip", "link", "set", f"op-c{index}", "netns", orphan], check=True)
        p = NetnsProvider("nso", tmp_path, {"index": index})
        subprocess.run(["ip", "netns", "add", p.net.ns], check=True)  # a namespace without the peer
        try:
            p.setup()
            inside = subprocess.run(["ip", "-n", p.net.ns, "-br", "link", "show", f"op-c{index}"],
                                    capture_output=True, text=True, check=True).stdout
            assert "UP" in inside
        finally:
            p.teardown()
    finally:
        subprocess.run(["ip", "netns", "del", orphan], check=False)
        subprocess.run(["ip", "link", "del", f"op-h{index}"], check=False, capture_output=True)
        if not had_catch_all:
            subprocess.run(["ip", "route", "del", "blackhole", CATCH_ALL], check=False)

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
            # `-br`: name, operational state, flags; the state column, not the flags' "UP"
            assert inside.split()[1] in ("UP", "UNKNOWN"), inside
        finally:
            p.teardown()
    finally:
        subprocess.run(["ip", "netns", "del", orphan], check=False)
        subprocess.run(["ip", "link", "del", f"op-h{index}"], check=False, capture_output=True)
        if not had_catch_all:
            subprocess.run(["ip", "route", "del", "blackhole", CATCH_ALL], check=False)


def test_another_onepane_s_network_is_neither_taken_nor_deleted(tmp_path: Path) -> None:
    """Issue 28: two onepanes on one machine with a location of the same name and index took
    over and deleted each other's namespace. The second is now refused, naming the first,
    and the first's namespace survives the second's teardown."""
    import sys

    from onepane.errors import Conflict
    from onepane.providers import netclaims
    from onepane.providers.dcnet import DataCenterNet, ip
    claims = tmp_path / "claims.json"
    first = tmp_path / "first"
    # the first onepane: another process that holds the claim while it runs
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        with netclaims._table(claims) as table:
            table[str(INDEX)] = {"owner": str(first), "pid": holder.pid, "namespace": "op-nst"}
        with pytest.raises(Conflict) as err:
            netclaims.claim(INDEX, "op-nst", str(tmp_path / "second"), path=claims)
        assert str(first) in err.value.detail and "options.index" in err.value.detail
        assert netclaims.owner_of(INDEX, path=claims) == str(first)
    finally:
        holder.kill()
        holder.wait()
    # its process gone, the claim is stale: taken over, then released on teardown
    netclaims.claim(INDEX, "op-nst", str(tmp_path / "second"), path=claims)
    assert netclaims.owner_of(INDEX, path=claims) == str(tmp_path / "second")
    netclaims.release(INDEX, str(tmp_path / "second"), path=claims)
    assert netclaims.owner_of(INDEX, path=claims) is None

    # for real, through the machine's table: a namespace made by one owner is refused to
    # another while a live process holds it, and stays
    had = CATCH_ALL in ip("route", "show", "type", "blackhole", check=False).stdout
    net = DataCenterNet("nst", INDEX, owner=str(first))
    net.setup()
    try:
        with netclaims._table(netclaims.CLAIMS) as table:
            table[str(INDEX)]["pid"] = holder_pid = subprocess.Popen(
                [sys.executable, "-c", "import time; time.sleep(60)"]).pid
        other = DataCenterNet("nst", INDEX, owner=str(tmp_path / "second"))
        with pytest.raises(Conflict):
            other.teardown()
        assert "op-nst" in ip("netns", "list").stdout  # still there
    finally:
        os.kill(holder_pid, 9)
        os.waitpid(holder_pid, 0)
        net.teardown()
    assert "op-nst" not in ip("netns", "list").stdout
    assert netclaims.owner_of(INDEX) is None
    if not had:
        ip("route", "del", "blackhole", CATCH_ALL, check=False)

"""Whack-a-mole over two real network-namespace data centers, under a steady client load.

Per data plane and kind of failure: cut the primary, check that no idempotent request failed and
that the other location now serves and is primary; bring the cut one back, cut the new primary,
see traffic come back: three rounds.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from onepane.core import Core
from onepane.lab import fail, netns_lab, recover
from onepane.spec import parse_spec
from onepane.traffic.drill import Load
from onepane.traffic.openloop import LoadProcess
from tests.helpers import free_port, kill_instances, wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")
LOCS = ("ns-east", "ns-west")
# The open-loop test's rate. bench/failover.py drives 300/s, the figure, on an idle
# machine; here the suite's shared guests and daemons share the CPU, and at 300/s a starved
# machine has no headroom left to drain what any client's pool queues during the second a
# silent cut takes to see (measured: with one core busy, 300/s never drained, 18 s worst). The
# fault under test, every request held for the connect timeout, still fails it at 150/s: a
# second of holds puts the seconds after the cut at p50 of hundreds of ms (the bound is 50).
RATE = 150.0


@pytest.fixture
def core(tmp_path: Path) -> Iterator[Core]:
    with netns_lab(tmp_path, {LOCS[0]: 241, LOCS[1]: 242}, sync_interval=0.3) as c:
        yield c
    kill_instances(tmp_path)


def status(core: Core) -> dict[str, object]:
    dep = core.deployments.get("shop")
    return {"primary": dep.primary, **dep.status}


def healthy(core: Core, loc: str) -> bool:
    locs = core.deployments.get("shop").status.get("locations") or {}
    return bool(locs.get(loc, {}).get("up"))


@pytest.mark.parametrize("failure", ["kill", "silent"])
@pytest.mark.parametrize("data_plane", ["builtin", "haproxy"])
def test_whack_a_mole(core: Core, failure: str, data_plane: str) -> None:
    port = free_port()
    core.deployments.apply(parse_spec({
        "name": "shop", "image": "httpecho", "size": "small",
        "replicas": {LOCS[0]: 1, LOCS[1]: 1}, "listen": f"127.0.0.1:{port}",
        "data_plane": data_plane,
        "health": {"interval": 0.2, "timeout": 0.2, "rise": 2, "fall": 2},
        "traffic": {"mode": "active-passive", "order": list(LOCS)}}))
    wait_for(lambda: all(healthy(core, loc) for loc in LOCS), 30, what="both locations healthy")
    assert status(core)["primary"] == LOCS[0]

    load = Load(f"http://127.0.0.1:{port}/").start()
    try:
        wait_for(lambda: load.served_by(LOCS[0], 0), 10, what="traffic at the primary")
        primary = LOCS[0]
        for round_ in range(3):
            other = LOCS[1] if primary == LOCS[0] else LOCS[0]
            cut_at = fail(core, primary, failure)
            wait_for(lambda other=other: status(core)["primary"] == other, 20,
                     what=f"round {round_}: {other} to become primary")
            wait_for(lambda other=other, t=cut_at: load.served_by(other, t), 10,
                     what=f"round {round_}: traffic at {other}")
            assert load.failures() == [], f"round {round_}: failed requests {load.failures()[:3]}"
            # bring the cut location back; it must stay secondary
            recover(core, primary, failure)
            wait_for(lambda p=primary: healthy(core, p), 30, what=f"{primary} healthy again")
            assert status(core)["primary"] == other
            primary = other
        assert load.failures() == []
        assert len(load.samples) > 100
    finally:
        load.stop()
    kinds = [e.kind for e in core.events.list(subject="shop", limit=1000).items]
    assert kinds.count("traffic.failover") == 3


@pytest.mark.parametrize("data_plane", ["builtin", "haproxy"])
def test_a_silent_cut_builds_no_queue_under_an_open_loop_client(core: Core, tmp_path: Path,
                                                                data_plane: str) -> None:
    """Issue 27: 300 requests/s on schedule through an ordinary client's pool (httpx, 256/64):
    a silent cut of the primary held every new request for the connect timeout, the client's
    pool opened a connection for each, then spent its CPU on them and never drained (p50 of
    seconds for as long as the load ran). HAProxy cannot hedge: its connect timeout, learned
    from the checks, is what bounds the hold (deploy/planes.py)."""
    port = free_port()
    core.deployments.apply(parse_spec({
        "name": "shop", "image": "httpecho", "size": "small",
        "replicas": {LOCS[0]: 1, LOCS[1]: 1}, "listen": f"127.0.0.1:{port}",
        "data_plane": data_plane, "traffic": {"mode": "active-passive", "order": list(LOCS)}}))
    wait_for(lambda: all(healthy(core, loc) for loc in LOCS), 30, what="both locations healthy")
    if data_plane == "haproxy":  # locations on this host: the shortest bound (it was 150 ms)
        cfg = (core.reconciler.workdir / "shop.haproxy.cfg").read_text()
        assert "timeout connect 50ms" in cfg, cfg
    load = LoadProcess(f"http://127.0.0.1:{port}/", tmp_path / "shots.jsonl", rate=RATE).start()
    try:
        wait_for(lambda: load.served_by(LOCS[0], 0), 10, what="traffic at the primary")
        cut = fail(core, LOCS[0], "silent")
        wait_for(lambda: load.served_by(LOCS[1], cut + 4, last=int(RATE)), 20,
                 what="four seconds of answers from the other location",
                 explain=lambda: {"seconds": load.per_second(cut, 1, 12),
                                  "last second by": Counter(s.where for s in
                                                            load.snapshot()[-int(RATE):]),
                                  "status": status(core)})
    finally:
        load.stop()
        recover(core, LOCS[0], "silent")
    seconds = load.per_second(cut, 1, 4)
    assert load.failed() == 0, [s for s in load.snapshot() if s.status != 200][:5]
    # the bound is 1 s built-in (it was 11-18 s), 2 s HAProxy (its attempt timeout is 1.5 s)
    assert load.worst_ms() < 2000, seconds
    assert all(s.p50_ms < 50 for s in seconds if s.second >= 1), seconds


def test_an_elastic_address_follows_the_deployment_through_a_failover(core: Core) -> None:
    """Issue 32: an address associated with a deployment reaches whatever instance serves it:
    a client connecting to the address (any port) reaches the primary, and after the primary
    fails, the new one — the address stays, what answers behind it moved."""
    import httpx
    core.deployments.apply(parse_spec({
        "name": "shop", "image": "httpecho", "size": "small",
        "replicas": {LOCS[0]: 1, LOCS[1]: 1}, "listen": f"127.0.0.1:{free_port()}",
        "health": {"interval": 0.2, "timeout": 0.2, "rise": 2, "fall": 2},
        "traffic": {"mode": "active-passive", "order": list(LOCS)}}))
    wait_for(lambda: all(healthy(core, loc) for loc in LOCS), 30, what="both locations healthy")
    address = core.addresses.allocate()
    core.addresses.associate(address.id, deployment="shop")

    def answered_by() -> str | None:
        try:
            return str(httpx.get(f"http://{address.public_ip}:80/", timeout=1).json()["location"])
        except httpx.HTTPError:
            return None
    wait_for(lambda: answered_by() == LOCS[0], 10, what="the address reaching the primary",
             explain=lambda: core.addresses.get(address.id))
    assert core.addresses.get(address.id).location == LOCS[0]
    fail(core, LOCS[0], "kill")
    wait_for(lambda: status(core)["primary"] == LOCS[1], 20, what="failover")
    wait_for(lambda: answered_by() == LOCS[1], 10, what="the address reaching the new primary",
             explain=lambda: core.addresses.get(address.id))
    wait_for(lambda: {e.location for e in core.events.list(kind="address.routed", limit=10).items}
             == set(LOCS), 5, what="an address.routed event for each move")
    with pytest.raises(Exception, match="associated"):
        core.addresses.release(address.id)  # in use: refused, nothing lost
    core.addresses.disassociate(address.id)
    wait_for(lambda: answered_by() is None, 10, what="disassociated: the address reaches nothing")
    core.addresses.release(address.id)
    assert core.addresses.find() == []

"""Pure logic of faux mobility: the spec, the traffic manager's decisions, the balancer."""

from __future__ import annotations

import pytest

from onepane.errors import InvalidInput
from onepane.spec import parse_spec
from onepane.traffic.balancer import Balancer, Pool
from onepane.traffic.http_protocols import MEMO_LIMIT, Heads
from onepane.traffic.manager import STARTUP_GRACE_S, decide

SPEC = """
name: shop
image: httpecho
replicas: {a: 1, b: 1, c: 1}
traffic: {mode: active-passive, order: [a, b, c]}
"""


def test_spec_defaults_and_errors() -> None:
    spec = parse_spec(SPEC)
    assert spec.service == "shop" and spec.traffic.order == ["a", "b", "c"]
    assert parse_spec('{"name": "x", "image": "i", "replicas": {"a": 1}}').traffic.order == ["a"]
    bad = [
        ("name: shop\nimage: i\nreplicas: {a: 1}\ntraffic: {order: [a, z]}", "traffic.order"),
        ("name: Shop\nimage: i\nreplicas: {a: 1}", "name"),
        ("name: shop\nimage: i\nreplicas: {}", "replicas"),
        ("name: shop\nimage: i\nreplicas: {a: 1}\nhealth: {rise: 0}", "health.rise"),
        ("name: shop\nimage: i\nreplicas: {a: 1}\nbogus: 1", "bogus"),
        ("name: shop\n  image: [", "line"),
        ("- just\n- a list", "mapping"),
        ("name: shop\nimage: i\nreplicas: {a: 1}\ntraffic: {mode: active-active, weights: {z: 1}}",
         "weights"),
    ]
    for text, where in bad:
        with pytest.raises(InvalidInput, match=where):
            parse_spec(text)


def test_failover_walks_the_order_round_and_round_and_stays() -> None:
    spec = parse_spec(SPEC)
    d = decide(spec, None, set(), {}, 0.0)
    assert (d.primary, d.reason) == ("a", "initial")
    d = decide(spec, "a", {"b", "c"}, {}, 100.0, ever_up={"a", "b", "c"})
    assert (d.primary, d.order, d.reason) == ("b", ["b", "c", "a"], "failover")
    # a recovers: b stays primary (no failback without a command)
    assert decide(spec, "b", {"a", "b", "c"}, {"a": 0.0}, 1000.0).primary == "b"
    assert decide(spec, "b", {"a"}, {}, 100.0, ever_up={"b"}).primary == "a"  # c is down too
    assert decide(spec, "c", {"a", "b"}, {}, 100.0, ever_up={"c"}).primary == "a"  # wraps
    # nowhere to go: stay
    assert decide(spec, "a", set(), {}, 100.0, ever_up={"a"}).primary == "a"


def test_a_new_deployment_waits_for_its_first_location() -> None:
    spec = parse_spec(SPEC)
    # b came up first, a has never been up yet: within the grace, traffic waits for a
    assert decide(spec, "a", {"b"}, {}, 1.0, ever_up={"b"}, started=0.0).primary == "a"
    assert decide(spec, "a", {"b"}, {}, STARTUP_GRACE_S + 1, ever_up={"b"},
                  started=0.0).primary == "b"


def test_auto_failback_after_hold_down() -> None:
    spec = parse_spec(SPEC.replace("order: [a, b, c]}", "order: [a, b, c], failback: auto, "
                                                        "hold_down: 10}"))
    assert decide(spec, "b", {"a", "b"}, {"a": 95.0}, 100.0).primary == "b"
    d = decide(spec, "b", {"a", "b"}, {"a": 85.0}, 100.0)
    assert (d.primary, d.reason) == ("a", "failback")


def test_active_active_shares_by_weight() -> None:
    spec = parse_spec("name: s\nimage: i\nreplicas: {a: 1, b: 1}\n"
                      "traffic: {mode: active-active, weights: {a: 3, b: 1}}")
    assert decide(spec, None, {"a", "b"}, {}, 0).weights == {"a": 3, "b": 1}
    assert decide(spec, "a", {"b"}, {}, 0).weights == {"a": 0, "b": 1}


def test_balancer_fails_over_locally_and_sticks() -> None:
    a, b = ("10.0.0.1", 1), ("10.0.0.2", 1)
    bal = Balancer([Pool("a", [a]), Pool("b", [b])])
    assert bal.choose() == (bal.pools[0], a)
    bal.mark_down(a)
    assert bal.choose()[1] == b  # type: ignore[index]
    bal.mark_up(a)
    assert bal.choose()[1] == b  # type: ignore[index]  # sticky: no failback by itself
    assert bal.choose({b})[1] == a  # type: ignore[index]  # a retry goes elsewhere


def test_balancer_weights_and_last_resort() -> None:
    a, b = ("a", 1), ("b", 1)
    bal = Balancer([Pool("a", [a], weight=3), Pool("b", [b], weight=1)], policy="weighted")
    picks = [bal.choose()[1] for _ in range(400)]  # type: ignore[index]
    assert picks.count(a) == 300 and picks.count(b) == 100
    bal.mark_down(a)
    bal.mark_down(b)
    assert bal.choose() is not None  # everything looks down: try rather than refuse
    assert bal.choose({a, b}) is None


def test_a_plane_keeps_its_last_backends_rather_than_none_for_a_while() -> None:
    """Issue 35, case 9: a control plane's momentarily empty view (a replica crashed, the
    control plane killed before the replacement was checked) must not leave the data plane
    with no backend at all; it keeps its last ones, for EMPTY_GRACE_S."""
    from onepane.traffic.dataplane import EMPTY_GRACE_S, DataPlaneConfig, PoolConfig, keep_last

    def config(*backends: tuple[str, int], listen: str = "127.0.0.1:8081") -> DataPlaneConfig:
        return DataPlaneConfig(listen=listen, mode="http", policy="ordered",
                               pools=(PoolConfig("dc-a", tuple(backends)), PoolConfig("dc-b", ())))
    serving, empty = config(("127.0.0.1", 4000)), config()
    assert keep_last(serving, empty, empty_for=0.0)
    assert not keep_last(serving, empty, empty_for=EMPTY_GRACE_S)  # told, after a while
    assert not keep_last(None, empty, 0.0)  # a new deployment starts listening at once
    assert not keep_last(empty, empty, 0.0)
    assert not keep_last(serving, config(listen="127.0.0.1:9"), 0.0)  # moved: applied
    assert not keep_last(serving, config(("127.0.0.1", 4001)), 0.0)  # other backends: applied


def test_the_proxy_counts_every_answer_and_samples_latency_only_under_load() -> None:
    from onepane.traffic.proxy import Latency, Settings, Stats
    stats = Stats()
    a, b = ("10.0.0.1", 80), ("10.0.0.2", 80)
    stats.by_backend = {a: 3000, b: 1000}
    stats.served = 4000
    stats.last_at -= 0.5  # 4000 answers in half a second: 8000/s
    snap = stats.snapshot({a: "east", b: "west"})
    assert snap["served"] == 4000 and snap["by_location"] == {"east": 3000, "west": 1000}
    assert 3 <= stats.every <= 8000 // Stats.SAMPLES_PER_S  # 1 in 4, less what the test took
    stats.by_backend = {a: 5}  # a reload moved a to another location: what it served stays
    stats.settle({a: "east"})
    stats.served += 5
    stats.last_at -= 1.0
    assert stats.snapshot({a: "north"})["by_location"] == {"east": 3005, "west": 1000}
    assert stats.every == 1  # 5 answers in a second: every one sampled

    latency = Latency(Settings(listen=("127.0.0.1", 1)))
    assert latency.hedge_after(a) == 1.0  # nothing known of a yet
    for _ in range(Latency.ENOUGH):
        latency.record(a, 0.2)
    assert latency.hedge_after(a) == pytest.approx(0.6)  # 3 x p99
    latency.retune(Settings(listen=("127.0.0.1", 1), hedge_factor=0))
    assert latency.hedge_after(a) == float("inf") and latency.hedge_after(b) == float("inf")


def test_haproxy_connect_timeout_follows_the_slowest_check_and_never_drops() -> None:
    """Issue 27: HAProxy holds what it sends to a silent location for its connect timeout, so
    onepane keeps it short for near locations and long enough for far ones."""
    from onepane.deploy.planes import haproxy_connect_timeout
    from onepane.spec import HealthCheck
    from onepane.traffic.health import Target

    def checked(*ms: float | None) -> list[Target]:
        return [Target(key=f"r{i}", location="a", host="10.0.0.1", port=80,
                       check=HealthCheck(), latency_ms=m)
                for i, m in enumerate(ms)]

    assert haproxy_connect_timeout([], None) == 0.05  # nothing measured yet: the shortest
    assert haproxy_connect_timeout(checked(1.2, 3.0, None), None) == 0.05  # this host, its LAN
    assert haproxy_connect_timeout(checked(2.0, 40.0), None) == 0.1  # a location 40 ms away
    assert haproxy_connect_timeout(checked(300.0), None) == 1.0
    assert haproxy_connect_timeout(checked(5000.0), None) == 2.0  # the cap
    assert haproxy_connect_timeout(checked(1.0), 0.25) == 0.25  # raised once, kept
    # one slow check on a busy machine is not a far location: the fastest recent one counts
    busy = checked(60.0)
    busy[0].recent_ms = (1.1, 0.9, 60.0)
    assert haproxy_connect_timeout(busy, None) == 0.05


def test_head_verdicts_are_remembered_per_head_and_forgotten_past_the_limit() -> None:
    verdicts = Heads()
    plain = b"GET / HTTP/1.1\r\nHost: a\r\n"
    hop = b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n"
    assert verdicts.request_passes(plain) and verdicts.request_passes(plain)
    assert not verdicts.request_passes(hop)  # a head seen after a passing one: its own verdict
    assert not verdicts.request_passes(b"GET / HTTP/1.1\r\nTE: trailers\r\n")
    framed = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n"
    assert verdicts.response_passes(framed)
    assert not verdicts.response_passes(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n")
    assert not verdicts.response_passes(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n"
                                        b"Keep-Alive: timeout=5\r\n")
    for i in range(MEMO_LIMIT + 10):  # a client sending a new head each time
        verdicts.request_passes(b"GET /%d HTTP/1.1\r\n" % i)
    assert len(verdicts.requests) <= MEMO_LIMIT
    assert not verdicts.request_passes(hop)

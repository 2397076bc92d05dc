"""The publisher's logic with a fake record writer (the real servers: tests/integration/test_gslb)."""

from __future__ import annotations

from pathlib import Path

import pytest

from onepane.deploy.publishing import wanted_answer
from onepane.events import EventLog
from onepane.gslb.publisher import Publisher, Wanted
from onepane.gslb.zones import Answer, DnsUnreachable, Writer, absolute
from onepane.spec import parse_spec
from onepane.store.db import Store


class FakeZone(Writer):
    def __init__(self) -> None:
        super().__init__("example.test.")
        self.records: dict[str, frozenset[str]] = {}
        self.down = False
        self.writes: list[frozenset[str]] = []

    def read(self, name: str) -> Answer:
        if self.down:
            raise DnsUnreachable("timed out")
        return Answer(self.records.get(name, frozenset()), 5)

    def write(self, name: str, addresses: frozenset[str], ttl: int,
              weights: dict[str, int] | None = None) -> None:
        if self.down:
            raise DnsUnreachable("timed out")
        self.writes.append(addresses)
        self.records[name] = addresses


@pytest.fixture
def world(tmp_path: Path) -> tuple[Publisher, FakeZone, list[float]]:
    store = Store(f"sqlite:///{tmp_path / 'db'}")
    store.migrate()
    now = [0.0]
    pub = Publisher(EventLog(store), {}, verify_interval=10, clock=lambda: now[0])
    zone = FakeZone()
    pub._writers[("acct", "example.test.")] = zone
    return pub, zone, now


def want(*addresses: str) -> Wanted:
    return Wanted("acct", "example.test.", "shop.example.test.", 5, frozenset(addresses))


def kinds(pub: Publisher) -> list[str]:
    return [e.kind for e in pub.events.list(limit=100).items]


def test_writes_only_changes_and_puts_back_a_hand_edit(world: tuple[Publisher, FakeZone, list[float]]
                                                       ) -> None:
    pub, zone, now = world
    pub.want("shop", want("10.0.0.1", "10.0.0.2"))
    pub.run_once()
    pub.want("shop", want("10.0.0.1", "10.0.0.2"))  # the same answer: nothing to write
    pub.run_once()
    assert zone.writes == [frozenset({"10.0.0.1", "10.0.0.2"})]
    zone.records["shop.example.test."] = frozenset({"192.0.2.9"})  # by hand
    now[0] += 10
    pub.run_once()
    assert zone.records["shop.example.test."] == frozenset({"10.0.0.1", "10.0.0.2"})
    assert kinds(pub) == ["dns.published", "dns.drift", "dns.published"]


def test_an_outage_is_retried_and_only_the_newest_answer_lands(
        world: tuple[Publisher, FakeZone, list[float]]) -> None:
    pub, zone, now = world
    zone.down = True
    pub.want("shop", want("10.0.0.1"))
    pub.run_once()
    pub.want("shop", want("10.0.0.2"))
    pub.run_once()
    status = pub.status("shop")
    assert status and status["state"] == "failing" and "timed out" in status["error"]
    assert kinds(pub).count("dns.failed") == 1  # once per distinct error, not per try
    zone.down = False
    now[0] += 6  # past the longest pause
    pub.run_once()
    assert zone.writes == [frozenset({"10.0.0.2"})]  # the stale answer never landed
    assert pub.status("shop")["state"] == "published"  # type: ignore[index]
    assert kinds(pub)[-2:] == ["dns.recovered", "dns.published"]


def test_forget_leaves_records_and_withdraw_removes_them(
        world: tuple[Publisher, FakeZone, list[float]]) -> None:
    pub, zone, _ = world
    pub.want("shop", want("10.0.0.1"))
    pub.run_once()
    pub.withdraw("shop")
    pub.run_once()
    assert zone.records["shop.example.test."] == frozenset() and pub.status("shop") is None
    pub.want("shop", want("10.0.0.1"))
    pub.run_once()
    pub.forget("shop")
    pub.run_once()
    assert zone.records["shop.example.test."] == frozenset({"10.0.0.1"})


def test_what_is_published() -> None:
    spec = parse_spec({"name": "shop", "image": "i", "replicas": {"a": 1, "b": 1},
                       "front_doors": "per-site",
                       "dns": {"provider": "p", "zone": "example.test", "ttl": 5}})
    doors = {"a": "10.200.1.2", "b": "10.200.2.2"}
    w = wanted_answer(spec, {"a"}, doors, "127.0.0.1")
    assert w and w.addresses == {"10.200.1.2", "10.200.2.2"} and w.name == "shop.example.test."
    assert spec.dns is not None
    spec.dns.publish = "serving"
    assert wanted_answer(spec, {"b"}, doors, "127.0.0.1").addresses == {"10.200.2.2"}  # type: ignore[union-attr]
    assert wanted_answer(spec, {"b"}, {"a": "10.200.1.2"}, "127.0.0.1") is None  # never empty
    spec.front_doors = "central"
    assert wanted_answer(spec, {"a"}, {}, "0.0.0.0") is None
    assert wanted_answer(spec, {"a"}, {}, "192.0.2.1").addresses == {"192.0.2.1"}  # type: ignore[union-attr]
    assert absolute("@", "example.test") == "example.test." and absolute("x.", "z.") == "x."

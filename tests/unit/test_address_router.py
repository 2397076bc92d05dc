"""The elastic-address router's decisions, over a fake registry: which location gets which
address, in which order, and what an address that cannot be routed says."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from onepane.errors import Conflict
from onepane.events import EventLog
from onepane.inventory import addresses as mod
from onepane.inventory.addresses import AddressRouter, ElasticAddresses
from onepane.inventory.records import Records
from onepane.providers.base import Capabilities, Feature
from onepane.store.db import Store


class FakeLocation:
    def __init__(self, name: str, routes: bool, calls: list[tuple[str, dict[str, str]]]) -> None:
        self.name, self.calls = name, calls
        self.capabilities = Capabilities() if routes else Capabilities(
            {Feature.addresses: "it listens on loopback"})

    def route_addresses(self, wanted: dict[str, str]) -> None:
        self.calls.append((self.name, dict(wanted)))


class FakeRegistry:
    def __init__(self, locations: dict[str, FakeLocation]) -> None:
        self.locations = locations

    def get(self, name: str) -> FakeLocation:
        return self.locations[name]

    def run(self, name: str, fn: Any, timeout: float) -> Any:
        return fn(self.locations[name])


@pytest.fixture
def addresses(tmp_path: Path) -> ElasticAddresses:
    store = Store(f"sqlite:///{tmp_path / 'db'}")
    store.migrate()
    return ElasticAddresses(Records(store), EventLog(store))


def test_an_address_follows_its_deployment_new_location_first(addresses: ElasticAddresses
                                                              ) -> None:
    calls: list[tuple[str, dict[str, str]]] = []
    registry = FakeRegistry({n: FakeLocation(n, n != "proc", calls)
                             for n in ("east", "west", "proc")})
    serving = {"shop": ("inst-1", "east", "p1")}
    router = AddressRouter(addresses, registry, instance=lambda i: None,
                           serving=lambda name, now: serving.get(name))
    a = addresses.allocate()
    addresses.associate(a.id, deployment="shop")
    router.apply_all()
    assert calls == [("east", {a.public_ip: "p1"})]
    assert addresses.get(a.id).routed_to == "inst-1"
    serving["shop"] = ("inst-2", "west", "p2")  # a failover
    calls.clear()
    router.apply_all()
    assert calls == [("west", {a.public_ip: "p2"}), ("east", {})]  # arrives, then leaves
    router.apply_all()
    assert calls == [("west", {a.public_ip: "p2"}), ("east", {})]  # nothing new: no call
    serving["shop"] = ("inst-3", "proc", "p3")
    router.apply_all()
    shown = addresses.get(a.id)
    assert shown.routed_to is None and "loopback" in (shown.why_not or "")


def test_the_pool_runs_out_with_a_clear_error(addresses: ElasticAddresses,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import ipaddress
    monkeypatch.setattr(mod, "POOL", ipaddress.ip_network("10.200.0.0/30"))
    got = {addresses.allocate().public_ip for _ in range(2)}
    assert got == {"10.200.0.1", "10.200.0.2"}
    with pytest.raises(Conflict, match="release one"):
        addresses.allocate()

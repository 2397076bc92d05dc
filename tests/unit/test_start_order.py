"""Start order between deployments (deploy/startorder.py): what holds an application's later
tier back at a location, and for how long."""

from __future__ import annotations

from typing import Any

from onepane.deploy.startorder import StartOrder
from onepane.spec import DeploymentSpec


def spec(after: list[dict[str, Any]]) -> DeploymentSpec:
    return DeploymentSpec.model_validate({"name": "shop-web", "image": "img", "replicas": {"a": 1},
                                          "after": after})


class Clock:
    now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_tier_waits_until_the_one_before_serves_there_and_its_delay_has_passed() -> None:
    statuses: dict[str, dict[str, Any]] = {}
    clock = Clock()
    order = StartOrder(statuses.get, clock)
    web = spec([{"deployment": "shop-app", "delay": 5}])
    assert "does not exist" in (order.waiting(web, "a") or "")
    statuses["shop-app"] = {"locations": {"a": {"desired": 1, "healthy": 0}}}
    assert "waiting for shop-app to serve at a" in (order.waiting(web, "a") or "")
    statuses["shop-app"]["locations"]["a"]["healthy"] = 1
    assert "starting in 5 s" in (order.waiting(web, "a") or "")  # the delay counts from now
    clock.now += 4.9
    assert order.waiting(web, "a") is not None
    clock.now += 0.2
    assert order.waiting(web, "a") is None
    # at another location where the earlier tier runs but does not serve yet: that one waits
    statuses["shop-app"]["locations"]["b"] = {"desired": 1, "healthy": 0}
    assert "to serve at b" in (order.waiting(web, "b") or "")
    del statuses["shop-app"]["locations"]["b"]
    # the earlier tier stops serving: the delay starts again once it is back
    statuses["shop-app"]["locations"]["a"]["healthy"] = 0
    assert order.waiting(web, "a") is not None
    statuses["shop-app"]["locations"]["a"]["healthy"] = 1
    assert "starting in 5 s" in (order.waiting(web, "a") or "")


def test_no_order_no_wait_and_a_deployment_cannot_wait_for_itself() -> None:
    assert StartOrder(lambda name: None).waiting(spec([]), "a") is None
    try:
        spec([{"deployment": "shop-web"}])
    except ValueError as exc:
        assert "cannot wait for itself" in str(exc)
    else:
        raise AssertionError("a deployment waiting for itself was accepted")


def test_a_tier_whose_earlier_tier_is_placed_elsewhere_waits_for_it_wherever_it_runs() -> None:
    """A spread application (issue 33): the database only at a, the app tier at a and b. The
    app tier at b cannot wait for a database at b that will never be."""
    statuses: dict[str, dict[str, Any]] = {}
    clock = Clock()
    order = StartOrder(statuses.get, clock)
    mid = spec([{"deployment": "shop-db", "delay": 2}])
    statuses["shop-db"] = {"locations": {}}  # made, not reconciled yet
    assert "waiting for shop-db to serve at every location it runs at" in (
        order.waiting(mid, "b") or "")
    statuses["shop-db"] = {"locations": {"a": {"desired": 1, "healthy": 0}}}
    assert order.waiting(mid, "b") is not None
    statuses["shop-db"]["locations"]["a"]["healthy"] = 1
    assert "starting in 2 s" in (order.waiting(mid, "b") or "")
    clock.now += 2.1
    assert order.waiting(mid, "b") is None
    assert "starting in 2 s" in (order.waiting(mid, "a") or "")  # here it runs: its own clock
    # moved away live: it wants nothing at a any more, so a new app-tier VM at a goes by
    # where it runs now (b), not by a copy at a that will never be
    statuses["shop-db"] = {"locations": {"a": {"desired": 0, "healthy": 0},
                                         "b": {"desired": 1, "healthy": 0}}}
    assert "to serve at every location it runs at" in (order.waiting(mid, "a") or "")
    statuses["shop-db"]["locations"]["b"]["healthy"] = 1
    assert "starting in 2 s" in (order.waiting(mid, "a") or "")
    clock.now += 2.1
    assert order.waiting(mid, "a") is None

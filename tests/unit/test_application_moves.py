"""The orchestration of an application's live move (deploy/applications.py), with the tiers'
own live moves faked (each is proven with real VMs in tests/e2e/test_applications.py): the
policy first, tiers in start order, a failure part-way moving the moved tiers back, and a
split said when even that fails."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from onepane.deploy.applications import Applications
from onepane.errors import Conflict, OnepaneError

TIERS = [{"deployment": f"shop-{t}", "tier": f"shop-{t}", "from": "a"} for t in ("db", "app", "web")]


class Events:
    def __init__(self) -> None:
        self.kinds: list[str] = []

    def emit(self, kind: str, *args: Any, **kw: Any) -> None:
        self.kinds.append(kind)


def app_with(fail: set[tuple[str, str]]) -> tuple[Applications, list[tuple[str, str]], Events]:
    """An Applications whose tier moves are recorded and fail for the (tier, to) in `fail`."""
    apps = Applications.__new__(Applications)
    moves: list[tuple[str, str]] = []
    events = Events()
    enforcer = SimpleNamespace(also_at={}, failed={}, apply_all=lambda: moves.append(("policy", "")))

    def move_tier(name: str, deployment: str, to: str, deadline: float) -> float:
        moves.append((deployment, to))
        if (deployment, to) in fail:
            raise OnepaneError(f"{deployment} cannot move to {to}")
        return 1.0
    apps.events = events  # type: ignore[assignment]
    apps.enforcer = enforcer  # type: ignore[assignment]
    apps._move_tier = move_tier  # type: ignore[method-assign]
    apps._instances = lambda tiers: ["inst-1"]  # type: ignore[method-assign]
    return apps, moves, events


def job(to: str = "b") -> Any:
    return SimpleNamespace(target="shop", params={"to": to, "bound_s": 60, "tiers": TIERS})


def test_the_policy_goes_first_then_every_tier_in_start_order() -> None:
    apps, moves, events = app_with(set())
    result = apps._do_move(None, job())  # type: ignore[arg-type]
    assert moves == [("policy", ""), ("shop-db", "b"), ("shop-app", "b"), ("shop-web", "b"),
                     ("policy", "")]  # and again at the end: the source's rules go
    assert events.kinds == ["app.move.policy", "app.move.tier", "app.move.tier",
                            "app.move.tier", "app.moved"]
    assert result["tiers"] == ["shop-db", "shop-app", "shop-web"]
    assert apps.enforcer.also_at == {}


def test_a_failure_part_way_moves_the_moved_tiers_back_last_first() -> None:
    apps, moves, events = app_with({("shop-web", "b")})
    with pytest.raises(Conflict, match=r"failed at tier shop-web .* 2 tier\(s\) that had moved "
                                       r"moved back$"):
        apps._do_move(None, job())  # type: ignore[arg-type]
    assert moves[1:-1] == [("shop-db", "b"), ("shop-app", "b"), ("shop-web", "b"),
                           ("shop-app", "a"), ("shop-db", "a")]
    assert events.kinds.count("app.move.back") == 2 and "app.moved" not in events.kinds


def test_a_tier_that_cannot_move_back_is_said_split() -> None:
    apps, _, events = app_with({("shop-app", "b"), ("shop-db", "a")})
    with pytest.raises(Conflict, match="1 could not move back: the application runs split"):
        apps._do_move(None, job())  # type: ignore[arg-type]
    assert "app.split" in events.kinds


def test_nothing_moves_when_the_destination_refuses_the_policy() -> None:
    apps, moves, _ = app_with(set())
    apps.enforcer.failed["b"] = "nft: no such table"  # type: ignore[attr-defined]
    with pytest.raises(Conflict, match="could not be put in force at b"):
        apps._do_move(None, job())  # type: ignore[arg-type]
    assert [m for m in moves if m[0] != "policy"] == []
    assert apps.enforcer.also_at == {}  # type: ignore[attr-defined]


def test_a_placement_rule_spreads_the_tiers_and_refuses_what_no_location_allows() -> None:
    """Issue 33: a tier runs at the application's locations whose labels its rule requires."""
    from onepane.deploy.applications import AppDeploy, tier_replicas
    from onepane.errors import InvalidInput

    labels = {"a": {"country": "de", "tier": "gold"}, "b": {"country": "fr"}}
    req = AppDeploy.model_validate({"name": "shop", "replicas": {"a": 1, "b": 2},
                                    "placement": {"shop-db": {"require": {"country": "de"}}}})
    assert tier_replicas(req, "shop-db", labels.__getitem__) == {"a": 1}
    assert tier_replicas(req, "shop-web", labels.__getitem__) == {"a": 1, "b": 2}

    apps = Applications.__new__(Applications)
    apps._labels = labels.__getitem__  # type: ignore[method-assign]
    apps.deployments = SimpleNamespace(  # type: ignore[assignment]
        locations=SimpleNamespace(provider=lambda loc: object()))
    systems = ["shop-db", "shop-app", "shop-web"]
    apps._check(req, systems)  # the database at a only, the rest at both: fine
    for placement, field in [({"shop-nope": {"require": {}}}, "placement"),
                             ({"shop-db": {"require": {"country": "us"}}}, "placement.shop-db")]:
        bad = req.model_copy(update={"placement": AppDeploy.model_validate(
            {"name": "x", "replicas": {"a": 1}, "placement": placement}).placement})
        with pytest.raises(InvalidInput) as exc:
            apps._check(bad, systems)
        assert exc.value.field == field, exc.value.detail


def test_an_application_whose_tier_may_not_run_at_the_destination_does_not_move() -> None:
    from onepane.errors import InvalidInput

    apps = Applications.__new__(Applications)
    apps._labels = {"a": {"country": "de"}, "b": {"country": "fr"}}.__getitem__  # type: ignore[method-assign]
    spec = {"name": "shop-db", "image": "i", "replicas": {"a": 1},
            "policies": {"placement": {"require": {"country": "de"}}}}
    apps.deployments = SimpleNamespace(  # type: ignore[assignment]
        get=lambda name: SimpleNamespace(spec=spec))
    tier = {"tier": "shop-db", "deployment": "shop-db", "primary": "a",
            "instances": [{"state": "running"}]}
    with pytest.raises(InvalidInput) as exc:
        apps._movable(tier, "b")
    assert exc.value.field == "to" and "shop-db cannot be placed at b" in exc.value.detail
    apps._movable(tier, "a")  # already there: nothing to check

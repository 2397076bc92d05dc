"""Deployed applications: an imported OVF collection (images/apps.py) running as one thing —
its tiers, its start order, its network policy — and moved live as one.

An application deployment is made of what onepane already runs, so each part keeps what it
already does (failover, replacement, health, metrics, live moves):
- one **deployment per tier** (`<name>-<tier>`), whose spec says which application and tier it
  is (`application`), which tiers it starts after (`after`, from the StartupSection: order and
  delay) and the security group its replicas join;
- one **security group per tier**: the network policy's `allow` rules become the ingress rules
  of the tier they lead to (from another tier: that tier's group; from `outside`: any address;
  or a CIDR). What no rule allows is refused, between tiers as from outside, wherever the
  location enforces groups (netns and vm locations: nftables in the location's namespace);
- the **front tier**'s data plane is the application's address for clients;
- **placement**: a tier runs at the application's locations whose labels satisfy its rule
  (`placement: {tier: {require: {...}}}`, the deployment spec's placement policy, which also
  keeps it there afterwards), so tiers may be spread: the database only where the data may
  live, the web tier everywhere. A tier whose earlier tier runs elsewhere starts once that one
  serves wherever it runs (startorder.py).

Nothing of it is a separate record: the application is the deployments whose spec names it, so
a restart, a second node or a backup sees it as it is.

A live move of the application (`move`) is one job: the network policy is put in force at the
destination first (every tier's rules, for the VMs about to arrive), then the tiers move one
after another in start order (the database before the tiers that call it), each a live move of
its own VMs, all within one bound. If one fails, the tiers already moved are moved back, so the
application is not left split; if even that fails, the job's error says where each tier runs.
"""

from __future__ import annotations

import builtins
import contextlib
import ipaddress
import time
from collections.abc import Callable, Mapping
from typing import Any, Literal

from pydantic import Field

from ..errors import Conflict, InvalidInput, NotFound, OnepaneError
from ..events import EventLog
from ..images import apps as catalog_apps
from ..images.catalog import Catalog
from ..inventory.firewall import Enforcer, Rule, SecurityGroups
from ..inventory.instances import fitting_size
from ..inventory.jobs import JobRunner
from ..inventory.operations import Operations
from ..model import NAME_PATTERN, UNFINISHED, Job, JobStatus, Strict
from ..policy.placement import violation
from ..providers.base import Provider
from ..spec import (
    AppTier,
    DeploymentSpec,
    HealthCheck,
    Placement,
    Policies,
    StartAfter,
    Storage,
)
from ..store.tables import JobRow
from .mobility import DEFAULT_BOUND_S, LiveMoves
from .reconciler import TAG
from .service import Deployments

APP_MOVE = "app.move"
OUTSIDE = "outside"
POLL_S = 0.2


class Allow(Strict):
    """One rule of the network policy: `source` (JSON `from`) may open `port` on `to`."""

    source: str = Field(alias="from", min_length=1, max_length=64,
                        description="a tier (its OVF system id), 'outside' (any address) or a "
                                    "CIDR")
    to: str = Field(min_length=1, max_length=64)
    port: int | None = Field(default=None, ge=1, le=65535,
                             description="TCP/UDP port; none: every port")
    protocol: Literal["tcp", "udp", "icmp", "all"] = "tcp"


class AppDeploy(Strict):
    name: str = Field(pattern=NAME_PATTERN, max_length=24)
    replicas: dict[str, int] = Field(min_length=1, description="location -> copies of the "
                                                               "whole application there")
    allow: list[Allow] = Field(default_factory=list, max_length=64)
    size: str | None = Field(default=None, description="every tier's size; default: the "
                                                       "smallest that fits each tier's OVF "
                                                       "hardware at the first location")
    sizes: dict[str, str] = Field(default_factory=dict, description="tier -> size")
    front: str | None = Field(default=None, description="the tier clients reach (through the "
                                                        "application's data plane); default: "
                                                        "the last to start")
    listen: str = Field(pattern=r"^[0-9.]+:\d{1,5}$", default="127.0.0.1:0")
    health_path: str = Field(default="/", pattern=r"^/", max_length=256)
    attempt_timeout: float | None = Field(default=None, gt=0, le=300,
                                          description="the front tier's data plane: seconds one "
                                                      "attempt may take (the deployment spec's)")
    keep_data: list[str] = Field(
        default_factory=list, max_length=32,
        description="tiers whose data disks outlive their VMs: a tier VM's replacement at a "
                    "location gets the data disks it left (the storage policy `keep`); other "
                    "tiers' replacements start blank. A live move takes every disk along")
    placement: dict[str, Placement] = Field(
        default_factory=dict, description="tier -> the labels a location must carry to run it "
                                          "(of the application's locations); default: every "
                                          "tier at every location")


def tier_replicas(req: AppDeploy, system: str,
                  labels_of: Callable[[str], Mapping[str, str]]) -> dict[str, int]:
    """Where a tier runs: the application's locations that its placement rule allows."""
    rule = req.placement.get(system)
    if rule is None:
        return dict(req.replicas)
    return {loc: n for loc, n in req.replicas.items()
            if violation(rule.require, labels_of(loc)) is None}


class Applications:
    def __init__(self, events: EventLog, catalog: Catalog, deployments: Deployments,
                 groups: SecurityGroups, enforcer: Enforcer, moves: LiveMoves,
                 ops: Operations, runner: JobRunner) -> None:
        self.events = events
        self.catalog = catalog
        self.deployments = deployments
        self.groups = groups
        self.enforcer = enforcer
        self.moves = moves
        self.ops = ops
        # Run again after a crash: tiers already at the destination are skipped, a tier's
        # move under way is waited for, so the job finishes what it started.
        runner.register(APP_MOVE, self._do_move, repeatable=lambda p: True)

    # -- reading -----------------------------------------------------------------------

    def list(self) -> builtins.list[dict[str, Any]]:
        by_app: dict[str, builtins.list[DeploymentSpec]] = {}
        for dep in self.deployments.list():
            spec = DeploymentSpec.model_validate(dep.spec)
            if spec.application is not None:
                by_app.setdefault(spec.application.name, []).append(spec)
        return [self._view(name, specs) for name, specs in sorted(by_app.items())]

    def get(self, name: str) -> dict[str, Any]:
        for app in self.list():
            if app["name"] == name:
                return app
        raise NotFound(f"no application deployment {name!r} (onepane apps deploy makes one)",
                       field="name")

    def _view(self, name: str, specs: builtins.list[DeploymentSpec]) -> dict[str, Any]:
        specs.sort(key=lambda s: (s.application.order if s.application and
                                  s.application.order is not None else 1 << 30))
        tiers: builtins.list[dict[str, Any]] = []
        front: dict[str, Any] = {}
        for spec in specs:
            dep = self.deployments.get(spec.name)
            tier = spec.application
            assert tier is not None
            insts = self.ops.instances.list_instances(tags={TAG: spec.name}, limit=1000).items
            row: dict[str, Any] = {"tier": tier.system, "deployment": spec.name, "order": tier.order,
                   "image": spec.image, "size": spec.size, "primary": dep.primary,
                   "after": [a.model_dump() for a in spec.after],
                   "security_groups": spec.security_groups,
                   "instances": [{"id": i.id, "location": i.location, "state": i.state,
                                  "addresses": i.addresses} for i in insts]}
            tiers.append(row)
            if tier.front:
                front = {"tier": tier.system, "listen": dep.listen, "primary": dep.primary}
        first = specs[0].application if specs else None
        locations = sorted({i["location"] for t in tiers for i in t["instances"]})
        return {"name": name, "app": first.app if first else None, "front": front,
                "listen": front.get("listen"), "locations": locations, "tiers": tiers,
                "policy": self._policy(tiers)}

    def _policy(self, tiers: builtins.list[dict[str, Any]]) -> builtins.list[dict[str, Any]]:
        """The rules in force, read back from the tiers' groups (what is enforced, not what
        was asked)."""
        by_group = {t["security_groups"][0]: t["tier"] for t in tiers if t["security_groups"]}
        out = []
        for gid, tier in by_group.items():
            try:
                group = self.groups.get(gid)
            except NotFound:
                continue
            for r in group.ingress:
                sources = [by_group.get(g, g) for g in r["groups"]] + [
                    OUTSIDE if c == "0.0.0.0/0" else c for c in r["cidrs"]]
                out += [{"from": s, "to": tier, "protocol": r["protocol"],
                         "port": r["from_port"]} for s in sources]
        return out

    # -- deploying ---------------------------------------------------------------------

    def deploy(self, app_id: str, req: AppDeploy) -> dict[str, Any]:
        """Check everything, then make the groups and the tier deployments; on any failure
        nothing made stays."""
        app = catalog_apps.application(self.catalog.all(), app_id)
        tiers = app["tiers"]
        systems = [t["system"] for t in tiers]
        self._check(req, systems)
        names = {t["system"]: f"{req.name}-{_short(t['system'], app)}"[:40] for t in tiers}
        taken = {d.name for d in self.deployments.list()}
        if clash := sorted(set(names.values()) & taken):
            raise Conflict(f"deployment {clash[0]} exists already: choose another name",
                           field="name")
        front = req.front or systems[-1]
        made_groups: builtins.list[str] = []
        made_deps: builtins.list[str] = []
        try:
            group_of = {}
            for system in systems:
                g = self.groups.create(names[system],
                                       f"application {req.name}: tier {system}", None)
                group_of[system] = g.id
                made_groups.append(g.id)
            for system in systems:
                rules = [_rule(a, group_of) for a in req.allow if a.to == system]
                if rules:
                    self.groups.change(group_of[system], "ingress", rules, add=True)
            previous: builtins.list[dict[str, Any]] = []
            for tier in tiers:
                spec = self._tier_spec(req, app, tier, names, previous, group_of, front)
                self.deployments.apply(spec)
                made_deps.append(spec.name)
                if not previous or tier.get("order") != previous[-1].get("order"):
                    previous = [tier]
                else:
                    previous.append(tier)  # same order: started together
        except OnepaneError:
            for name in made_deps:
                self.deployments.delete(name)
            for gid in made_groups:
                self.groups.delete(gid)
            raise
        self.events.emit("app.deployed", f"application {req.name} ({app_id}) deployed: "
                         f"{len(tiers)} tiers, started in order {' -> '.join(systems)}",
                         subject=req.name, data={"app": app_id, "tiers": names})
        return self.get(req.name)

    def _check(self, req: AppDeploy, systems: builtins.list[str]) -> None:
        for loc in req.replicas:
            try:
                self.deployments.locations.provider(loc)
            except NotFound:
                raise InvalidInput(f"replicas.{loc}: no such location",
                                   field=f"replicas.{loc}") from None
        if (req.front or systems[-1]) not in systems:
            raise InvalidInput(f"front: {req.front!r} is not a tier of the application "
                               f"({', '.join(systems)})", field="front")
        for n, a in enumerate(req.allow):
            if a.to not in systems:
                raise InvalidInput(f"allow.{n}.to: {a.to!r} is not a tier ({', '.join(systems)})",
                                   field=f"allow.{n}.to")
            if a.source not in systems and a.source != OUTSIDE:
                try:
                    ipaddress.ip_network(a.source, strict=False)
                except ValueError:
                    raise InvalidInput(f"allow.{n}.from: {a.source!r} is neither a tier, "
                                       f"'{OUTSIDE}' nor a CIDR", field=f"allow.{n}.from") from None
        if unknown := sorted(set(req.sizes) - set(systems)):
            raise InvalidInput(f"sizes names {unknown[0]!r}, not a tier", field="sizes")
        if unknown := sorted(set(req.keep_data) - set(systems)):
            raise InvalidInput(f"keep_data names {unknown[0]!r}, not a tier ({', '.join(systems)})",
                               field="keep_data")
        if unknown := sorted(set(req.placement) - set(systems)):
            raise InvalidInput(f"placement names {unknown[0]!r}, not a tier ({', '.join(systems)})",
                               field="placement")
        for system in systems:
            if not tier_replicas(req, system, self._labels):
                raise InvalidInput(
                    f"placement.{system}: none of the application's locations "
                    f"({', '.join(req.replicas)}) carries the labels it requires "
                    f"({req.placement[system].require})", field=f"placement.{system}")

    def _labels(self, location: str) -> Mapping[str, str]:
        return self.deployments.locations.get(location).labels

    def _tier_spec(self, req: AppDeploy, app: dict[str, Any], tier: dict[str, Any],
                   names: dict[str, str], previous: builtins.list[dict[str, Any]],
                   group_of: dict[str, str], front: str) -> DeploymentSpec:
        system = tier["system"]
        replicas = tier_replicas(req, system, self._labels)
        size = req.sizes.get(system) or req.size or self._fitting(next(iter(replicas)), tier)
        return DeploymentSpec(
            name=names[system], image=tier["image"], size=size, replicas=replicas,
            policies=Policies(placement=req.placement.get(system) or Placement()),
            listen=req.listen if system == front else "127.0.0.1:0",
            attempt_timeout=req.attempt_timeout,
            health=HealthCheck(path=req.health_path),
            after=[StartAfter(deployment=names[p["system"]], delay=float(p.get("start_delay") or 0))
                   for p in previous],
            security_groups=[group_of[system]],
            storage=Storage(data="keep" if system in req.keep_data else "blank"),
            application=AppTier(name=req.name, app=str(app["id"]), system=system,
                                order=tier.get("order"), front=system == front))

    def _fitting(self, location: str, tier: dict[str, Any]) -> str:
        provider: Provider = self.deployments.locations.provider(location)
        return fitting_size(provider, int(tier.get("cpus") or 1), int(tier.get("memory_mb") or 256),
                            None)

    def undeploy(self, name: str) -> None:
        """Every tier's deployment (its VMs go), then the tiers' groups once nothing is in
        them."""
        app = self.get(name)
        groups = {g for t in app["tiers"] for g in t["security_groups"]}
        for t in reversed(app["tiers"]):
            self.deployments.delete(t["deployment"])
            for inst in t["instances"]:
                self.groups.leave_all(inst["id"])
        for gid in groups:
            with contextlib.suppress(NotFound):
                self.groups.delete(gid)
        self.events.emit("app.deleted", f"application {name} deleted: its tiers' VMs go now",
                         subject=name)

    # -- moving ------------------------------------------------------------------------

    def move(self, name: str, to: str, bound_s: float = DEFAULT_BOUND_S) -> Job:
        app = self.get(name)
        tiers = app["tiers"]
        if all(t["primary"] == to for t in tiers):
            raise Conflict(f"{name} already runs at {to}", field="to")
        for t in tiers:  # what can be checked before anything moves
            if t["primary"] is None:
                raise Conflict(f"tier {t['tier']} of {name} has no primary yet: nothing runs "
                               "to move", field="name")
            self._movable(t, to)
        if self.ops.jobs.unfinished(APP_MOVE, name):
            raise Conflict(f"{name} is already moving", field="name")
        source = app["front"].get("primary") or tiers[0]["primary"]
        return self.ops.jobs.submit(
            APP_MOVE, name, source,
            {"to": to, "bound_s": bound_s,
             "tiers": [{"deployment": t["deployment"], "tier": t["tier"], "from": t["primary"]}
                       for t in tiers]},
            None, None, f"live move of application {name} to {to}")

    def _movable(self, tier: dict[str, Any], to: str) -> None:
        """Before anything moves: the tier has a running VM to move, and its placement rule
        allows the destination (a spread application whose database must stay where it is
        cannot move as a whole). The kinds of both locations are checked by LiveMoves.start
        as each tier's move begins."""
        if tier["primary"] == to:
            return
        running = [i for i in tier["instances"] if i["state"] == "running"]
        if not running:
            raise Conflict(f"tier {tier['tier']} has no running VM to move", field="name")
        require = DeploymentSpec.model_validate(
            self.deployments.get(tier["deployment"]).spec).policies.placement.require
        if (why := violation(require, self._labels(to))) is not None:
            raise InvalidInput(f"tier {tier['tier']} cannot be placed at {to}: it {why}",
                               field="to")

    def _do_move(self, provider: Provider, job: JobRow) -> dict[str, Any]:
        p = job.params
        name, to = job.target or "", p["to"]
        deadline = time.monotonic() + float(p["bound_s"])
        tiers = p["tiers"]
        t0 = time.monotonic()
        moved: builtins.list[dict[str, Any]] = []
        try:
            self._policy_first(name, tiers, to)
            for tier in tiers:
                took = self._move_tier(name, tier["deployment"], to, deadline)
                moved.append(tier)
                self.events.emit("app.move.tier", f"{name}: tier {tier['tier']} runs at {to} "
                                 f"({took:.1f} s)", location=to, subject=name,
                                 data={"tier": tier["tier"], "seconds": round(took, 3)})
        except OnepaneError as exc:
            back = self._back(name, moved, deadline + float(p["bound_s"]))
            split = "" if back == len(moved) else \
                f"; {len(moved) - back} could not move back: the application runs split"
            raise Conflict(f"{name}: the move to {to} failed at tier "
                           f"{tiers[len(moved)]['tier']} ({exc.detail}); {back} tier(s) that "
                           f"had moved moved back{split}", field="to") from exc
        finally:
            for ids in self._instances(tiers):
                self.enforcer.also_at.pop(ids, None)
            self.enforcer.apply_all()  # the source's rules for the VMs that left go
        total = time.monotonic() - t0
        self.events.emit("app.moved", f"{name}: every tier runs at {to} ({total:.1f} s)",
                         location=to, subject=name, data={"seconds": round(total, 3)})
        return {"application": name, "to": to, "seconds": round(total, 3),
                "tiers": [t["tier"] for t in tiers]}

    def _instances(self, tiers: builtins.list[dict[str, Any]]) -> builtins.list[str]:
        return [i.id for t in tiers for i in self.ops.instances.list_instances(
            tags={TAG: t["deployment"]}, limit=1000).items]

    def _policy_first(self, name: str, tiers: builtins.list[dict[str, Any]], to: str) -> None:
        """Every tier's rules in force at `to` before the first VM runs there."""
        for inst in self._instances(tiers):
            self.enforcer.also_at.setdefault(inst, set()).add(to)
        self.enforcer.apply_all()
        if to in self.enforcer.failed:
            raise Conflict(f"{name}: the network policy could not be put in force at {to} "
                           f"({self.enforcer.failed[to]}); nothing moved", field="to")
        self.events.emit("app.move.policy", f"{name}: network policy in force at {to}",
                         location=to, subject=name)

    def _move_tier(self, name: str, deployment: str, to: str, deadline: float) -> float:
        t0 = time.monotonic()
        if self.deployments.get(deployment).primary == to:
            return 0.0  # an earlier attempt of this job moved it
        left = deadline - time.monotonic()
        if left <= 0:
            raise Conflict(f"{name}: the move's bound ran out before {deployment}", field="bound_s")
        jobs = self._tier_jobs(deployment) or self.moves.start(deployment, to, left)
        for j in jobs:
            while (job := self.ops.jobs.get_job(j.id)).status in UNFINISHED:
                if time.monotonic() > deadline + 30:  # the tier's own bound cancels it first
                    raise Conflict(f"{deployment}'s move did not end within the bound",
                                   field="bound_s")
                time.sleep(POLL_S)
            if job.status != JobStatus.succeeded:
                raise Conflict(((job.error or {}).get("detail")) or f"{deployment}'s move failed",
                               field="to")
        return time.monotonic() - t0

    def _tier_jobs(self, deployment: str) -> builtins.list[Job]:
        """The live moves of the tier a killed onepane left queued or under way (to wait for
        them rather than start another beside them)."""
        moves = self.ops.jobs.live_moves()
        return [self.ops.jobs.get_job(moves[i.id]) for i in self.ops.instances.list_instances(
            tags={TAG: deployment}, limit=1000).items if i.id in moves]

    def _back(self, name: str, moved: builtins.list[dict[str, Any]], deadline: float) -> int:
        """Move the tiers that had moved back where they were, last first; how many did."""
        back = 0
        for tier in reversed(moved):
            try:
                self._move_tier(name, tier["deployment"], tier["from"], deadline)
                back += 1
                self.events.emit("app.move.back", f"{name}: tier {tier['tier']} moved back to "
                                 f"{tier['from']}", location=tier["from"], subject=name,
                                 severity="warning")
            except OnepaneError as exc:
                self.events.emit("app.split", f"{name}: tier {tier['tier']} could not move back "
                                 f"to {tier['from']} ({exc.detail}): the application runs split",
                                 location=tier["from"], subject=name, severity="error")
        return back


def _rule(a: Allow, group_of: dict[str, str]) -> Rule:
    proto = "-1" if a.protocol == "all" else a.protocol
    lo, hi = (a.port, a.port) if a.port else ((0, 65535) if proto in ("tcp", "udp") else (-1, -1))
    if a.source in group_of:
        return Rule(proto, lo, hi, [], [group_of[a.source]])
    return Rule(proto, lo, hi, ["0.0.0.0/0" if a.source == OUTSIDE else a.source], [])


def _short(system: str, app: dict[str, Any]) -> str:
    """A tier's part of its deployment's name: the system id without the collection's name
    (vSphere names a vApp's systems `<vapp>-<vm>`)."""
    prefix = f"{app.get('collection') or ''}-"
    short = system[len(prefix):] if prefix != "-" and system.startswith(prefix) else system
    return "".join(c if c.isalnum() or c == "-" else "-" for c in short.lower()).strip("-") or "tier"

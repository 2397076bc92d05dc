"""The deployment spec (YAML or JSON), validated with one clear error per field.

    name: shop
    image: httpecho
    size: small
    replicas: {dc-a: 2, dc-b: 1}
    images: {dc-c: img-...}             # another form of the app at a location (a container)
    sizes: {dc-c: docker.small}
    service: shop                       # DNS: shop.<zone>
    health: {type: http, path: /healthz, interval: 0.5, timeout: 0.3, rise: 2, fall: 2}
    traffic:
      mode: active-passive              # or active-active with weights: {dc-a: 3, dc-b: 1}
      order: [dc-a, dc-b]
      failback: manual                  # or auto, after hold_down seconds of health
      hold_down: 30
    data_plane: builtin                 # the default (hedges); or haproxy (more req/s)
    listen: 127.0.0.1:8081
    front_doors: central                # or per-site: a data plane in every location too
    dns: {provider: pdns, zone: example.com., name: shop, ttl: 5}   # a configured DNS account
    sla: {target: 99.9}
    policies:
      failure: {restart_after: 3, replace_after: 6, max_restarts: 1}
      autoscale: {metric: rps_per_replica, min: 1, max: 4, scale_out_above: 50,
                  scale_in_below: 10, sustain: 3, cooldown_out: 10, cooldown_in: 60}
      schedule:                         # active windows; outside them a location has 0 replicas
        - {cron: "0 8 * * 1-5", duration: 36000, locations: [dc-a]}
      placement: {require: {country: de, certifications: hipaa}}
    after: [{deployment: shop-db, delay: 10}]   # start order: created once shop-db serves here
    security_groups: [sg-...]           # every replica joins these onepane groups
"""

from __future__ import annotations

import json
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import Field, ValidationError, model_validator

from .errors import InvalidInput
from .model import NAME_PATTERN, Strict


class HealthCheck(Strict):
    type: Literal["http", "tcp"] = "http"
    path: str = Field(default="/", pattern=r"^/")
    interval: float = Field(default=0.5, gt=0, le=300)
    timeout: float = Field(default=0.3, gt=0, le=60)
    rise: int = Field(default=2, ge=1, le=20)
    fall: int = Field(default=2, ge=1, le=20)


class Storage(Strict):
    """The storage policy: what happens to a replica's data disks (the extra disks its image
    gives it) when the replica is replaced."""

    data: Literal["blank", "keep"] = Field(
        default="blank",
        description="blank: every new replica gets blank data disks; keep: a replica's data "
                    "disks outlive it, and the replica that replaces it at that location (or a "
                    "later one in its place, after a scale-down) gets them back — a database "
                    "tier's data survives the loss of its VM. Dropped when the deployment is "
                    "deleted. A live move takes the disks along either way")


class Traffic(Strict):
    mode: Literal["active-passive", "active-active"] = "active-passive"
    order: list[str] = Field(default_factory=list)
    weights: dict[str, int] = Field(default_factory=dict)
    failback: Literal["manual", "auto"] = "manual"
    hold_down: float = Field(default=30.0, ge=0)


class Sla(Strict):
    target: float = Field(default=99.9, gt=0, le=100, description="availability, percent")
    warm_up: float = Field(default=60.0, ge=0, le=86400,
                           description="seconds after a start (or onepane's restart) before "
                                       "unavailability counts, unless it is available sooner")


class FailurePolicy(Strict):
    """A replica whose checks fail `restart_after` times in a row is restarted; if it fails
    `replace_after` checks in a row after that (or `max_restarts` is 0), it is replaced."""

    restart_after: int = Field(default=3, ge=1, le=1000)
    replace_after: int = Field(default=6, ge=1, le=1000)
    max_restarts: int = Field(default=1, ge=0, le=10)
    boot_grace: float = Field(default=120.0, ge=0, le=3600,
                              description="seconds a restarted VM (not a process) may fail its "
                                          "checks while it boots again before they count "
                                          "towards replacing it; it ends at its first good check")


class Autoscale(Strict):
    """Scale the serving locations' replicas between min and max on one metric."""

    metric: Literal["rps_per_replica", "p95_ms", "cpu_percent"] = "rps_per_replica"
    min: int = Field(default=1, ge=0, le=100)
    max: int = Field(default=4, ge=1, le=100)
    scale_out_above: float = Field(gt=0)
    scale_in_below: float = Field(ge=0)
    sustain: float = Field(default=3.0, ge=0, le=3600, description="seconds over/under before acting")
    cooldown_out: float = Field(default=10.0, ge=0, le=86400)
    cooldown_in: float = Field(default=60.0, ge=0, le=86400)
    step: int = Field(default=1, ge=1, le=10)

    @model_validator(mode="after")
    def _bands(self) -> Autoscale:
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) must not exceed max ({self.max})")
        if self.scale_in_below >= self.scale_out_above:
            raise ValueError("scale_in_below must be below scale_out_above, or it would flap")
        return self


class Window(Strict):
    """Active from each time `cron` fires (5-field cron, in `timezone`) for `duration` seconds."""

    cron: str
    duration: float = Field(gt=0, le=31 * 86400)
    locations: list[str] | None = None  # which locations this window activates; None: all
    timezone: str = "UTC"

    @model_validator(mode="after")
    def _valid(self) -> Window:
        from croniter import croniter
        if len(self.cron.split()) != 5 or not croniter.is_valid(self.cron):
            raise ValueError(f"cron {self.cron!r} is not a valid 5-field cron expression")
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown timezone {self.timezone!r}") from exc
        return self


class Placement(Strict):
    """Labels every location of the deployment must carry. A label value may list several
    comma-separated values (certifications: "hipaa,pci"); a requirement may be a list."""

    require: dict[str, str | list[str]] = Field(default_factory=dict)


class Policies(Strict):
    failure: FailurePolicy = Field(default_factory=FailurePolicy)
    autoscale: Autoscale | None = None
    schedule: list[Window] = Field(default_factory=list)
    placement: Placement = Field(default_factory=Placement)


class StartAfter(Strict):
    """Start order (an OVF StartupSection's): this deployment's replicas at a location are
    created only once `deployment` serves there — every replica it wants there passes its
    health check — and `delay` seconds more have passed. Only creations wait; a replica
    replaced later waits again, a running one is never stopped for it."""

    deployment: str = Field(pattern=NAME_PATTERN, max_length=40)
    delay: float = Field(default=0, ge=0, le=3600)


class AppTier(Strict):
    """The tier of a deployed application (deploy/applications.py) this deployment is."""

    name: str = Field(pattern=NAME_PATTERN, max_length=24)  # the application deployment
    app: str  # the catalog application
    system: str  # the OVF VirtualSystem
    order: int | None = None
    front: bool = False


class DnsTarget(Strict):
    """Where the deployment is published: a name in a zone held by a configured DNS account."""

    provider: str = Field(min_length=1, max_length=64,
                          description="the DNS account's name in onepane.toml (dns_accounts)")
    zone: str = Field(pattern=r"^([a-zA-Z0-9_-]{1,63}\.)*[a-zA-Z0-9_-]{1,63}\.?$", max_length=253)
    name: str | None = Field(default=None, pattern=r"^(@|[a-zA-Z0-9_*-]{1,63}(\.[a-zA-Z0-9_-]{1,63})*)$",
                             description="relative to the zone; default: the service name")
    ttl: int = Field(default=5, ge=1, le=86400,
                     description="seconds resolvers may keep an answer: what a client that "
                                 "cached a dead site's address waits at most")
    publish: Literal["front-doors", "serving"] = Field(
        default="front-doors",
        description="front-doors: the front door of every site that is up (each one forwards "
                    "to whoever serves, so a client that cached any of them is served); "
                    "serving: only the serving sites' front doors (traffic enters where it is "
                    "served, but a client that cached a lost site waits out the TTL)")


class DeploymentSpec(Strict):
    name: str = Field(pattern=NAME_PATTERN, max_length=40)
    image: str = Field(min_length=1)
    size: str = "small"
    replicas: dict[str, int] = Field(min_length=1)
    # The same app in another form at some locations: a container image at a docker location,
    # an app image at a process one, a disk image at a vm one (location -> image / size)
    images: dict[str, str] = Field(default_factory=dict)
    sizes: dict[str, str] = Field(default_factory=dict)
    service: str | None = Field(default=None, pattern=NAME_PATTERN)
    health: HealthCheck = Field(default_factory=HealthCheck)
    traffic: Traffic = Field(default_factory=Traffic)
    # The built-in plane by default: a silent cut costs its worst request ~0.05 s and
    # HAProxy's 1.5 s, its attempt timeout (bench/failover.py); HAProxy serves ~1.2x its
    # requests per second (README, "Which data plane").
    data_plane: Literal["builtin", "haproxy"] = "builtin"
    storage: Storage = Field(default_factory=Storage)
    protocol: Literal["http", "tcp"] = "http"
    listen: str = Field(pattern=r"^[0-9.]+:\d{1,5}$", default="127.0.0.1:0")
    attempt_timeout: float | None = Field(
        default=None, gt=0, le=300,
        description="seconds one attempt at a backend may take before the request is retried "
                    "elsewhere. Default: 5 s on the built-in plane (which hedges slow requests "
                    "sooner), 1.5 s on HAProxy (which cannot hedge, so this bounds a silent "
                    "failover there; raise it for backends slower than that)")
    connect_timeout: float | None = Field(
        default=None, gt=0, le=60,
        description="seconds a connection to a backend may take before it counts as failed "
                    "and the request goes elsewhere. Default: 0.25 s built-in (which also leaves "
                    "a connect far slower than the backend's usual sooner); on HAProxy, learned "
                    "from the health checks: the smallest of 0.05/0.1/0.25/0.5/1/2 s at least "
                    "twice the farthest replica's check time, never lowered while onepane "
                    "runs")
    hedge: float = Field(default=3.0, ge=0, le=100,
                         description="built-in data plane: an idempotent request slower than k x "
                                     "its backend's recent p99 (at least 100 ms) gets a second "
                                     "copy at another backend, first answer wins; 0: never")
    front_doors: Literal["central", "per-site"] = Field(
        default="central",
        description="central: one front door, on onepane's machine (listen); per-site: also one "
                    "in every location that can run one, at that location's address and the "
                    "same port, each forwarding to whoever serves")
    dns: DnsTarget | None = None
    sla: Sla = Field(default_factory=Sla)
    policies: Policies = Field(default_factory=Policies)
    after: list[StartAfter] = Field(default_factory=list, max_length=16)
    security_groups: list[str] = Field(default_factory=list, max_length=5)
    application: AppTier | None = None

    def image_at(self, location: str) -> str:
        return self.images.get(location) or self.image

    def size_at(self, location: str) -> str:
        return self.sizes.get(location) or self.size

    @model_validator(mode="after")
    def _consistent(self) -> DeploymentSpec:
        for loc, n in self.replicas.items():
            if n < 0 or n > 100:
                raise ValueError(f"replicas.{loc}: must be between 0 and 100, not {n}")
        for what, per_location in (("images", self.images), ("sizes", self.sizes)):
            unknown = [loc for loc in per_location if loc not in self.replicas]
            if unknown:
                raise ValueError(f"{what} names {unknown} without replicas")
        if self.traffic.mode == "active-passive":
            order = self.traffic.order or list(self.replicas)
            unknown = [loc for loc in order if loc not in self.replicas]
            if unknown:
                raise ValueError(f"traffic.order names {unknown} without replicas")
            self.traffic.order = order + [loc for loc in self.replicas if loc not in order]
        else:
            weights = self.traffic.weights or dict.fromkeys(self.replicas, 1)
            unknown = [loc for loc in weights if loc not in self.replicas]
            if unknown:
                raise ValueError(f"traffic.weights names {unknown} without replicas")
            if any(w < 0 for w in weights.values()):
                raise ValueError("traffic.weights must not be negative")
            self.traffic.weights = {loc: weights.get(loc, 0) for loc in self.replicas}
        if self.service is None:
            self.service = self.name
        if any(a.deployment == self.name for a in self.after):
            raise ValueError("after: a deployment cannot wait for itself")
        for w in self.policies.schedule:
            unknown = [loc for loc in w.locations or [] if loc not in self.replicas]
            if unknown:
                raise ValueError(f"policies.schedule names {unknown} without replicas")
        return self


MAX_DEPTH = 32  # a deployment spec nests five levels; PyYAML's composer recurses per level


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader that refuses nesting deeper than MAX_DEPTH: `[` x 1000 made PyYAML's
    recursive composer overflow the stack (a 500) instead of a clear 422."""

    _depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise yaml.YAMLError(f"nested deeper than {MAX_DEPTH} levels at line "
                                     f"{mark.line + 1}, column {mark.column + 1}")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def parse_spec(text: str | bytes | dict[str, Any], source: str = "spec") -> DeploymentSpec:
    """Parse YAML or JSON and say exactly which field is wrong and why."""
    if isinstance(text, dict):
        data: Any = text
    else:
        try:
            data = yaml.load(text, Loader=_BoundedLoader)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            raise InvalidInput(f"{source}:{where} not valid YAML/JSON: "
                               f"{getattr(exc, 'problem', exc)}", field="spec") from exc
    if data is None:
        raise InvalidInput(f"{source}: the spec is empty; it needs at least name, image and "
                           "replicas", field="spec")
    if not isinstance(data, dict):
        raise InvalidInput(f"{source}: a deployment spec is a mapping, not {type(data).__name__}",
                           field="spec")
    try:
        return DeploymentSpec.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "(spec)"
        msg = err["msg"].removeprefix("Value error, ")
        raise InvalidInput(f"{source}: {where}: {msg}", field=where) from exc


def dump(spec: DeploymentSpec) -> str:
    return json.dumps(spec.model_dump(), indent=2)

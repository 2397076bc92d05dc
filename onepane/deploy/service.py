"""Deployments as desired state: create, read, delete, and the operator's move and failover."""

from __future__ import annotations

import builtins
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from typing import Any, Literal

from pydantic import BaseModel
from sqlalchemy import delete as sql_delete
from sqlalchemy import select
from sqlalchemy.orm import Session

from ..errors import Conflict, InvalidInput, NotFound
from ..events import EventLog
from ..inventory.locations import Locations
from ..policy.placement import violation
from ..policy.schedule import active_locations
from ..ports import check_free, free_port
from ..providers.base import Feature, Provider
from ..spec import DeploymentSpec
from ..store import fencing
from ..store.tables import DeploymentRow, MetricRow
from ..traffic.manager import next_healthy


class Deployment(BaseModel):
    name: str
    spec: dict[str, Any]
    primary: str | None
    listen: str
    status: dict[str, Any]
    generation: int
    created_at: datetime
    updated_at: datetime


def view(row: DeploymentRow) -> Deployment:
    return Deployment(name=row.name, spec=row.spec, primary=row.primary, listen=row.listen,
                      status=row.status, generation=row.generation, created_at=row.created_at,
                      updated_at=row.updated_at)


def _validate(provider: Provider, image: str, size: str) -> None:
    provider.validate(image, size)


class Deployments:
    def __init__(self, events: EventLog, locations: Locations) -> None:
        self.events = events
        self.locations = locations
        # Set by the core to the catalog's: what a location boots for a catalog image (img-...).
        self.boot_image: Callable[[str, str, str | None, dict[str, str]], Any] | None = None
        self.dns_accounts: frozenset[str] = frozenset()  # set by the core from the settings
        # Set by the core: raises NotFound for a security group id that does not exist.
        self.groups_exist: Callable[[builtins.list[str]], Any] | None = None

    def list(self) -> list[Deployment]:
        with self.events.store.tx() as s:
            return [view(r) for r in s.scalars(select(DeploymentRow).order_by(DeploymentRow.name))]

    def get(self, name: str) -> Deployment:
        with self.events.store.tx() as s:
            return view(self._row(s, name))

    def generation(self, name: str) -> int | None:
        """The spec's generation as stored now (None once deleted): one indexed read."""
        with self.events.store.tx() as s:
            return s.scalar(select(DeploymentRow.generation).where(DeploymentRow.name == name))

    def _location_problems(self, spec: DeploymentSpec, loc: str
                           ) -> builtins.list[tuple[str, str]]:
        """(field, reason) for what keeps the spec from running at `loc`: a location that does
        not exist is `replicas.<loc>`'s fault, a size it does not offer is `size`'s."""
        try:
            provider = self.locations.provider(loc)
        except NotFound:
            return [(f"replicas.{loc}", "no such location")]
        out = []
        if spec.front_doors == "per-site" and provider.front_door() is None:
            out.append(("front_doors", f"per-site needs a front door in every location, and "
                        f"{loc} ({type(provider).__name__}) cannot run one (it has no address "
                        "of its own)"))
        if spec.storage.data == "keep" and \
                (why_not := provider.capabilities.missing.get(Feature.keep_data)):
            out.append(("storage.data", f"{loc} cannot keep data disks for a replacement: "
                        f"{why_not}"))
        if (why := violation(spec.policies.placement.require,
                             self.locations.get(loc).labels)) is not None:
            out.append((f"replicas.{loc}", f"cannot be placed at {loc}: it {why}"))
        try:
            image = spec.image_at(loc)
            if self.boot_image is not None and image.startswith("img-"):
                image = self.boot_image(image, loc, None, {}).provider_image_id
            self.locations.registry.run(loc, partial(_validate, image=image, size=spec.size_at(loc)),
                                        timeout=10)
        except InvalidInput as exc:
            field = exc.field if exc.field in ("image", "size") else f"replicas.{loc}"
            out.append((field, exc.detail if loc in exc.detail else f"at {loc}: {exc.detail}"))
        return out

    def _reference_problems(self, spec: DeploymentSpec) -> builtins.list[tuple[str, str]]:
        """The deployments it starts after and the groups it joins must exist: a wait for a
        deployment that never comes would keep it from ever starting, silently."""
        out = []
        with self.events.store.tx() as s:
            for n, after in enumerate(spec.after):
                if s.get(DeploymentRow, after.deployment) is None:
                    out.append((f"after.{n}.deployment", f"no deployment {after.deployment!r}"))
        if spec.security_groups and self.groups_exist is not None:
            try:
                self.groups_exist(spec.security_groups)
            except NotFound as exc:
                out.append(("security_groups", exc.detail))
        return out

    def spec(self, name: str) -> DeploymentSpec:
        return DeploymentSpec.model_validate(self.get(name).spec)

    def apply(self, spec: DeploymentSpec, force: bool = False) -> Deployment:
        """Create or update. Every location must exist and offer the image and size, and the
        spec must leave somewhere to serve from *now* (unless forced)."""
        self._serves_somewhere_now(spec, force)
        if spec.dns is not None and spec.dns.provider not in self.dns_accounts:
            raise InvalidInput(f"dns.provider: no DNS account named {spec.dns.provider!r} "
                               f"(configured in onepane.toml's dns_accounts: "
                               f"{', '.join(sorted(self.dns_accounts)) or 'none'})",
                               field="dns.provider")
        problems = [p for loc in spec.replicas for p in self._location_problems(spec, loc)]
        problems += self._reference_problems(spec)
        if problems:  # every one at once, each under the field to change
            raise InvalidInput("; ".join(f"{field}: {reason}" for field, reason in problems),
                               field=problems[0][0],
                               errors=[{"field": f, "reason": r} for f, r in problems])
        with self.events.tx() as s:
            row = s.get(DeploymentRow, spec.name)
            if row is None:
                host, port = spec.listen.rsplit(":", 1)
                taken = s.scalar(select(DeploymentRow.name).where(
                    DeploymentRow.listen == spec.listen))
                if taken is not None:
                    raise Conflict(f"listen {spec.listen} is deployment {taken}'s; choose "
                                   "another port, or 0 for any free one", field="listen")
                check_free(host, int(port), what="serve the deployment", field="listen",
                           hint="another program has it; choose another port in the spec's "
                           "listen, or 0 for any free one")
                listen = f"{host}:{port if port != '0' else free_port(host)}"
                row = DeploymentRow(name=spec.name, spec=spec.model_dump(), listen=listen,
                                    status={})
                s.add(row)
                self.events.emit("deployment.created", f"deployment {spec.name} created, "
                                 f"serving on {listen}", subject=spec.name, session=s)
            else:
                if spec.listen not in ("127.0.0.1:0", row.listen) and not spec.listen.endswith(":0"):
                    raise Conflict("listen cannot change on an existing deployment", field="listen")
                row.spec, row.generation = spec.model_dump(), row.generation + 1
                self.events.emit("deployment.updated", f"deployment {spec.name} updated "
                                 f"(generation {row.generation})", subject=spec.name, session=s)
        return self.get(spec.name)

    def _serves_somewhere_now(self, spec: DeploymentSpec, force: bool) -> None:
        """A schedule whose windows are all closed right now would take every replica away the
        moment the spec is applied (the README's example once did, at 03:31 on a Thursday)."""
        now = datetime.now(UTC)
        open_now = active_locations(spec.policies.schedule, spec.replicas, now)
        serving = {loc for loc in open_now if spec.replicas.get(loc, 0) > 0}
        if serving or force:
            return
        when = now.strftime("%a %H:%M UTC")
        why = ("no schedule window is open now" if spec.policies.schedule
               else "every location has 0 replicas")
        raise InvalidInput(f"{spec.name} would serve nowhere now ({when}): {why}; fix the spec, "
                           "or apply it with --force (API: ?force=true) to mean it",
                           field="policies.schedule" if spec.policies.schedule else "replicas")

    def delete(self, name: str) -> None:
        with self.events.tx() as s:
            row = self._row(s, name)
            s.delete(row)
            # its charts go with it: a deployment made later under the name starts empty
            s.execute(sql_delete(MetricRow).where(MetricRow.deployment == name))
            self.events.emit("deployment.deleted", f"deployment {name} deleted", subject=name,
                             session=s)

    def move(self, name: str, to: str) -> Deployment:
        """A planned move: the target must be healthy; traffic shifts, the source drains."""
        spec = self.spec(name)
        if spec.traffic.mode != "active-passive":
            raise InvalidInput("move applies to active-passive deployments; change the weights "
                               "of an active-active one instead", field="traffic.mode")
        if to not in spec.replicas:
            raise InvalidInput(f"{to} is not one of {name}'s locations ({', '.join(spec.replicas)})",
                               field="to")
        dep = self.get(name)
        if dep.primary == to:
            return dep
        if to not in self._healthy(dep):
            raise Conflict(f"{to} has no healthy replica of {name}; not moving traffic there",
                           field="to")
        return self._set_primary(name, to, "move", f"operator moved {name} from {dep.primary} to {to}")

    def failover(self, name: str) -> Deployment:
        spec = self.spec(name)
        dep = self.get(name)
        target = next_healthy(spec.traffic.order, dep.primary, self._healthy(dep))
        if target is None:
            raise Conflict(f"no other healthy location for {name}", field="name")
        return self._set_primary(name, target, "failover",
                                 f"operator failed {name} over from {dep.primary} to {target}")

    def set_status(self, name: str, primary: str | None, status: dict[str, Any],
                   reason: str | None = None, message: str | None = None,
                   read_primary: str | Literal[False] | None = False) -> None:
        """`read_primary`: the primary the caller's decision started from. If an operator moved
        the deployment since, the decision is stale and is dropped (the next pass decides again
        from the new primary) instead of undoing the move."""
        with self.events.tx() as s:
            fencing.check(s)  # the leader's decision: refused once another node leads
            row = s.get(DeploymentRow, name)
            if row is None:
                return
            if read_primary is not False and row.primary != read_primary:
                return
            if row.primary != primary:
                before, row.primary = row.primary, primary
                if reason and reason != "initial":
                    self.events.emit(f"traffic.{reason}", message or
                                     f"{name}: primary {before} -> {primary} ({reason})",
                                     severity="warning" if reason == "failover" else "info",
                                     location=primary, subject=name, session=s,
                                     data={"from": before, "to": primary, "reason": reason})
            if row.status != status:
                row.status = status

    def _set_primary(self, name: str, to: str, reason: str, message: str) -> Deployment:
        dep = self.get(name)
        self.set_status(name, to, {**dep.status, "manual": reason}, reason, message)
        return self.get(name)

    @staticmethod
    def _healthy(dep: Deployment) -> set[str]:
        return {loc for loc, st in (dep.status.get("locations") or {}).items() if st.get("up")}

    @staticmethod
    def _row(s: Session, name: str) -> DeploymentRow:
        row = s.get(DeploymentRow, name)
        if row is None:
            raise NotFound(f"no deployment {name!r}", field="name")
        return row

"""Front doors in every site: a data plane inside each location of a deployment.

With `front_doors: per-site` a deployment gets, besides its front door on onepane's machine, one
data plane in each of its locations, listening on that location's own address and the spec's
port, with the same pools as every other front door: whichever door a client enters, it is
served by whoever serves now, across the sites' links if need be. So a client that cached the
address of a site that no longer serves is still answered, for as long as that site's door
lives — which is what lets DNS steer traffic with a TTL. Each door is checked from here like a
replica (through the door, with the deployment's own check), and only doors that pass are
published (deploy/publishing).
"""

from __future__ import annotations

import contextlib
from dataclasses import replace
from pathlib import Path

from ..errors import OnepaneError
from ..inventory.locations import Locations
from ..spec import DeploymentSpec
from ..traffic.dataplane import DataPlane, DataPlaneConfig, make_data_plane
from ..traffic.health import HealthMonitor, Target

GROUP_SUFFIX = "#doors"  # the health monitor's group of a deployment's doors


def doors_group(deployment: str) -> str:
    return deployment + GROUP_SUFFIX


def plane_name(deployment: str, location: str) -> str:
    return f"{deployment}@{location}"


class SiteFrontDoors:
    def __init__(self, locations: Locations, health: HealthMonitor, workdir: Path) -> None:
        self.locations = locations
        self.health = health
        self.workdir = workdir
        self.planes: dict[str, dict[str, DataPlane]] = {}  # deployment -> location -> plane

    def apply(self, deployment: str, spec: DeploymentSpec, config: DataPlaneConfig) -> None:
        """Make every site's door run `config` at that site's address (same port)."""
        port = int(config.listen.rsplit(":", 1)[1])
        mine = self.planes.setdefault(deployment, {})
        targets = []
        for loc in spec.replicas:
            where = self._site(loc)
            if where is None:
                continue
            host, wrap = where
            plane = mine.get(loc)
            if plane is None:
                plane = mine[loc] = make_data_plane(spec.data_plane, plane_name(deployment, loc),
                                                    self.workdir, tuple(wrap))
            site_config = replace(config, listen=f"{host}:{port}")
            if plane.applied != site_config:
                with contextlib.suppress(OnepaneError):  # a cut site: tried again next pass
                    plane.apply(site_config)
            targets.append(Target(key=f"door:{loc}", location=loc, host=host, port=port,
                                  check=spec.health))
        for loc in set(mine) - set(spec.replicas):
            mine.pop(loc).stop()
        self.health.set_targets(doors_group(deployment), targets)

    def up(self, deployment: str) -> dict[str, str]:
        """location -> address of each door whose checks pass now."""
        return {t.location: t.host for t in self.health.snapshot(doors_group(deployment)) if t.up}

    def remove(self, deployment: str) -> None:
        for plane in self.planes.pop(deployment, {}).values():
            plane.stop()
        self.health.forget(doors_group(deployment))

    def _site(self, location: str) -> tuple[str, list[str]] | None:
        try:
            return self.locations.provider(location).front_door()
        except OnepaneError:
            return None

"""The hypervisor hosts of a location: list them, empty one for maintenance, take it back.

Maintenance is a job (it takes as long as its live moves): no new VM is placed on the host
from the moment it starts, and every VM running there moves live to another host of the
location, each move an event with its phases; the job's result says what moved where and
what did not, with the reason. `activate` lets the host take VMs again (nothing moves back on
its own: the next creates fill it).
"""

from __future__ import annotations

from typing import Any

from ..errors import InvalidInput
from ..events import EventLog
from ..model import Job
from ..providers.base import Provider
from ..providers.vm.hosts import HostSpec, HostsProvider
from ..store.tables import JobRow
from .locations import Locations
from .operations import Operations

HOST_MAINTENANCE = "host.maintenance"
DEFAULT_BOUND_S = 300.0


class Hosts:
    def __init__(self, events: EventLog, locations: Locations, ops: Operations) -> None:
        self.events = events
        self.locations = locations
        self.ops = ops
        # Running it again is safe: a VM already moved is simply not on the host any more.
        ops.runner.register(HOST_MAINTENANCE, self._evacuate, repeatable=lambda _p: True)

    def provider(self, location: str) -> HostsProvider:
        provider = self.locations.provider(location)
        if not isinstance(provider, HostsProvider):
            raise InvalidInput(f"location {location} has no hosts of its own to manage (a vm "
                               "location of remote hosts has options.hosts)", field="location")
        return provider

    def list(self, location: str) -> list[dict[str, Any]]:
        self.provider(location)
        return list(self.locations.registry.run(
            location, lambda p: p.hosts() if isinstance(p, HostsProvider) else [], timeout=30))

    def add(self, location: str, spec: HostSpec) -> dict[str, Any]:
        provider = self.provider(location)
        self.locations.registry.run(location, lambda _p: provider.add_host(spec), timeout=60)
        self.locations.store_options(location, provider.options.model_dump(exclude_none=True))
        self.events.emit("host.added", f"{location}: host {spec.name} ({spec.uri}) added",
                         location=location, subject=spec.name)
        return {"location": location, "host": spec.name, "uri": spec.uri}

    def remove(self, location: str, host: str) -> None:
        provider = self.provider(location)
        self.locations.registry.run(location, lambda _p: provider.remove_host(host), timeout=60)
        self.locations.store_options(location, provider.options.model_dump(exclude_none=True))
        self.events.emit("host.removed", f"{location}: host {host} removed", location=location,
                         subject=host)

    def maintenance(self, location: str, host: str, bound_s: float = DEFAULT_BOUND_S) -> Job:
        provider = self.provider(location)
        provider.host(host)  # a clear 404 naming the host before anything is recorded
        provider.set_maintenance(host, True)  # placement avoids it from now on, job or not
        self.events.emit("host.maintenance", f"{location}: host {host} enters maintenance; "
                         "its VMs move to the other hosts", location=location,
                         subject=host, severity="warning")
        return self.ops.submit(HOST_MAINTENANCE, host, location,
                               {"host": host, "bound_s": bound_s}, None, None,
                               f"empty host {host} of {location} for maintenance")

    def activate(self, location: str, host: str) -> dict[str, Any]:
        provider = self.provider(location)
        provider.set_maintenance(host, False)
        self.events.emit("host.activated", f"{location}: host {host} takes VMs again",
                         location=location, subject=host)
        return {"location": location, "host": host, "maintenance": False}

    def _evacuate(self, provider: Provider, job: JobRow) -> dict[str, Any]:
        assert isinstance(provider, HostsProvider)
        host, location = job.params["host"], job.location

        def on_move(instance: str, to: str, phases: dict[str, Any]) -> None:
            if not to:
                self.events.emit("host.move_failed", f"{location}: {instance} could not leave "
                                 f"{host}: {phases.get('error')}", location=location,
                                 subject=host, severity="error",
                                 data={"instance": instance, **phases})
                return
            sw = phases.get("switchover", {})
            self.events.emit("host.moved", f"{location}: {instance} moved live from {host} to "
                             f"{to} (QEMU's downtime {sw.get('downtime_ms')} ms, "
                             f"{sw.get('total_ms')} ms in all)", location=location, subject=host,
                             data={"instance": instance, "from": host, "to": to,
                                   "phases": phases})

        result = provider.evacuate(host, float(job.params.get("bound_s") or DEFAULT_BOUND_S),
                                   on_move)
        if result["still_running"]:
            self.events.emit("host.not_empty", f"{location}: host {host} still runs "
                             f"{', '.join(result['still_running'])}", location=location,
                             subject=host, severity="error", data=result)
        else:
            self.events.emit("host.empty", f"{location}: host {host} is empty: "
                             f"{len(result['moved'])} VMs moved", location=location,
                             subject=host, data=result)
        return result

"""The hypervisor hosts of a location: list them, empty one for maintenance, take it back.

Maintenance is a job (it takes as long as its live moves): no new VM is placed on the host
from the moment it starts, and every VM running there moves live to another host of the
location, each move an event with its phases; the job's result says what moved where and
what did not, with the reason. `activate` lets the host take VMs again (nothing moves back on
its own: the next creates fill it).

Failure (the leader's `watch`, every WATCH_INTERVAL_S): a host that stops answering is an event;
one declared dead (providers/vm/hostfailure.py says when) is fenced and a `host.recover` job
starts its VMs on the other hosts; a fenced host that answers again is cleaned of the copies
that run elsewhere now and readmitted. Every step is an event.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from ..errors import InvalidInput
from ..events import EventLog
from ..model import Job
from ..providers.base import Provider
from ..providers.vm.hostfailure import HostFailures
from ..providers.vm.hosts import HostSpec, HostsProvider
from ..store.tables import JobRow
from .locations import Locations
from .operations import Operations

HOST_MAINTENANCE = "host.maintenance"
HOST_RECOVER = "host.recover"
DEFAULT_BOUND_S = 300.0
WATCH_INTERVAL_S = 1.0
log = logging.getLogger(__name__)


class Hosts:
    def __init__(self, events: EventLog, locations: Locations, ops: Operations) -> None:
        self.events = events
        self.locations = locations
        self.ops = ops
        # Running it again is safe: a VM already moved is simply not on the host any more.
        ops.runner.register(HOST_MAINTENANCE, self._evacuate, repeatable=lambda _p: True)
        # Again safe: a VM that runs somewhere already is not started a second time.
        ops.runner.register(HOST_RECOVER, self._recover, repeatable=lambda _p: True)
        self._silent: dict[tuple[str, str], float] = {}  # (location, host) -> since when
        self._declared: set[tuple[str, str]] = set()  # dead hosts already said (no storage)

    def provider(self, location: str) -> HostsProvider:
        provider = self.locations.provider(location)
        if not isinstance(provider, HostsProvider):
            raise InvalidInput(f"location {location} has no hypervisor hosts to manage (a vm "
                               "location of remote hosts has options.hosts; a docker "
                               "location's hosts are listed, not put in maintenance)",
                               field="location")
        return provider

    def list(self, location: str) -> list[dict[str, Any]]:
        # imported here: the Docker SDK (with paramiko) was a fifth of every server start's
        # imports, for locations most servers never have
        from ..providers.docker.provider import DockerProvider
        if isinstance(self.locations.provider(location), DockerProvider):  # its Docker hosts
            return list(self.locations.registry.run(
                location, lambda p: p.hosts() if isinstance(p, DockerProvider) else [],
                timeout=30))
        self.provider(location)
        return list(self.locations.registry.run(
            location, lambda p: p.roster.hosts() if isinstance(p, HostsProvider) else [], timeout=30))

    def add(self, location: str, spec: HostSpec) -> dict[str, Any]:
        provider = self.provider(location)
        self.locations.registry.run(location, lambda _p: provider.roster.add_host(spec), timeout=60)
        self.locations.store_options(location, provider.options.model_dump(exclude_none=True))
        self.events.emit("host.added", f"{location}: host {spec.name} ({spec.uri}) added",
                         location=location, subject=spec.name)
        return {"location": location, "host": spec.name, "uri": spec.uri}

    def remove(self, location: str, host: str) -> None:
        provider = self.provider(location)
        self.locations.registry.run(location, lambda _p: provider.roster.remove_host(host), timeout=60)
        self.locations.store_options(location, provider.options.model_dump(exclude_none=True))
        self.events.emit("host.removed", f"{location}: host {host} removed", location=location,
                         subject=host)

    def maintenance(self, location: str, host: str, bound_s: float = DEFAULT_BOUND_S) -> Job:
        provider = self.provider(location)
        provider.roster.host(host)  # a clear 404 naming the host before anything is recorded
        provider.roster.set_maintenance(host, True)  # placement avoids it from now on, job or not
        self.events.emit("host.maintenance", f"{location}: host {host} enters maintenance; "
                         "its VMs move to the other hosts", location=location,
                         subject=host, severity="warning")
        return self.ops.jobs.submit(HOST_MAINTENANCE, host, location,
                               {"host": host, "bound_s": bound_s}, None, None,
                               f"empty host {host} of {location} for maintenance")

    def activate(self, location: str, host: str) -> dict[str, Any]:
        provider = self.provider(location)
        provider.roster.set_maintenance(host, False)
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

    # ---- failure ---------------------------------------------------------------------------

    def watch(self) -> None:
        """One pass over every location of hosts (the leader's loop calls it)."""
        for loc in self.locations.list():
            try:
                provider = self.locations.provider(loc.name)
            except Exception:  # a location being removed or not started: the next pass
                continue
            if isinstance(provider, HostsProvider):
                try:
                    self.locations.registry.run(loc.name, self._watch_location, timeout=60)
                except Exception as exc:
                    log.warning("watching the hosts of %s: %s", loc.name, exc)

    def _watch_location(self, provider: Provider) -> None:
        assert isinstance(provider, HostsProvider)
        location = provider.location
        failures = HostFailures(provider)
        down = failures.probe()
        fenced = failures.fenced()
        for host, why in down.items():
            if (location, host) not in self._silent:
                self._silent[location, host] = time.monotonic()
                self.events.emit("host.unreachable", f"{location}: host {host} does not "
                                 f"answer ({why})", location=location, subject=host,
                                 severity="warning", data={"error": why})
        for key in [k for k in self._silent if k[0] == location and k[1] not in down]:
            del self._silent[key]
            self._declared.discard(key)
            if key[1] not in fenced:
                self.events.emit("host.answering", f"{location}: host {key[1]} answers again",
                                 location=location, subject=key[1])
        if late := provider.forget_data_late():
            self.events.emit("host.kept_dropped", f"{location}: kept disks of deleted "
                             f"deployments dropped from hosts answering again: "
                             f"{', '.join(late)}", location=location, data={"keys": late})
        for host in sorted(fenced - set(down)):  # a fenced host is back
            removed = failures.readmit(host)
            self.events.emit("host.readmitted", f"{location}: host {host} answers again; "
                             + (f"removed its stale copies of {', '.join(removed)}; "
                                if removed else "") + "it takes VMs again",
                             location=location, subject=host, data={"removed": removed})
        for host in failures.dead(down, fenced):
            if (location, host) in self._declared:
                continue  # said once (no storage: nothing to fence); dead until it answers
            silent = round(failures.silent_for(host), 1)
            guests = failures.guests_of(host)
            self.events.emit("host.dead", f"{location}: host {host} is dead: no answer for "
                             f"{silent} s, nor from its VMs ({', '.join(guests) or 'none'})",
                             location=location, subject=host, severity="error",
                             data={"silent_s": silent, "instances": guests})
            if provider.options.storage is None:
                self._declared.add((location, host))
                for inst in guests:
                    self.events.emit("host.vm_lost", f"{location}: {inst} ran on dead host "
                                     f"{host} with its disks there; it comes back with the "
                                     "host", location=location, subject=inst, severity="error",
                                     data={"host": host})
                continue
            failures.fence(host)
            self.events.emit("host.fenced", f"{location}: host {host} is fenced: it takes no "
                             "VM, and its VMs start elsewhere from fresh copies of their disks",
                             location=location, subject=host, severity="warning")
            self.ops.jobs.submit(HOST_RECOVER, host, location, {"host": host}, None, None,
                            f"start the VMs of dead host {host} of {location} elsewhere")

    def _recover(self, provider: Provider, job: JobRow) -> dict[str, Any]:
        assert isinstance(provider, HostsProvider)
        host, location = job.params["host"], job.location
        result = HostFailures(provider).recover(host)
        for inst, dst in result.restarted.items():
            self.events.emit("host.restarted", f"{location}: {inst} of dead host {host} runs "
                             f"again on {dst}", location=location, subject=inst,
                             data={"from": host, "to": dst})
        for inst, why in result.lost.items():
            self.events.emit("host.vm_lost", f"{location}: {inst} of dead host {host} could "
                             f"not start elsewhere: {why}", location=location, subject=inst,
                             severity="error", data={"host": host, "error": why})
        return result.as_dict()

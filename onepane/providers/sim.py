"""A simulated data center, for scale: tens of thousands of instances held in a few bytes each.

Nothing runs. An instance is an index: its name, address and tags follow from the index, its
state is one byte, and instances created through onepane keep their request. A configurable
number of changes per minute (an instance stops or starts, vanishes, or appears again) happens
as time passes, and every change is logged, so `changes_since` answers what changed since a
token as a cloud's change feed would: a sync then costs what changed, not what exists.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import InvalidInput, NotFound
from ..model import InstanceState
from .base import (
    Capabilities,
    Changes,
    InstanceSpec,
    ObservedImage,
    ObservedInstance,
    ObservedSize,
    Provider,
)

GONE, RUNNING, STOPPED = 0, 1, 2
STATES = {RUNNING: InstanceState.running, STOPPED: InstanceState.stopped}
SIZES = {"sim.small": (1.0, 1024), "sim.large": (4.0, 8192)}
IMAGE = "sim-image"
LOG_LIMIT = 1_000_000  # changes kept for change feeds; an older token gets a full listing
NOTHING_RUNS = "a simulated data center runs nothing"


class SimOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    instances: int = Field(default=0, ge=0, le=5_000_000, description="present at the start")
    changes_per_minute: float = Field(default=0.0, ge=0, le=10_000_000)
    latency_ms: float = Field(default=0.0, ge=0, le=60_000, description="added to every call")
    seed: int = 0


@dataclass
class Made:
    """An instance created through onepane: what it was asked to be."""

    onepane_id: str
    name: str
    image: str
    size: str
    tags: dict[str, str]


class SimProvider(Provider):
    capabilities = Capabilities.all_but(
        volumes=NOTHING_RUNS, networks=NOTHING_RUNS, app_images=NOTHING_RUNS,
        disk_images=NOTHING_RUNS, boot_images=NOTHING_RUNS, attach_network=NOTHING_RUNS,
        suspend=NOTHING_RUNS, snapshots=NOTHING_RUNS, resize=NOTHING_RUNS,
        capture_image=NOTHING_RUNS, keep_data=NOTHING_RUNS, firewall=NOTHING_RUNS, user_data=NOTHING_RUNS,
        cut=NOTHING_RUNS, console=NOTHING_RUNS, live_migration=NOTHING_RUNS,
        addresses=NOTHING_RUNS)

    def __init__(self, location: str, options: dict[str, Any] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(location)
        self.clock = clock  # tests move time on by hand
        try:
            self.options = SimOptions.model_validate(options or {})
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise InvalidInput(f"sim option {where}: {first['msg']}",
                               field=f"options.{where}") from exc
        self._state = bytearray([RUNNING]) * self.options.instances
        self._made: dict[int, Made] = {}
        self._by_onepane_id: dict[str, int] = {}
        self._log: list[int] = []  # indexes, in the order they changed
        self._log_base = 0  # the sequence number of _log[0]
        self._rng = random.Random(f"{self.options.seed}:{location}")
        self._last = clock()
        self._carry = 0.0
        self._lock = threading.Lock()

    # ---- the simulation ----------------------------------------------------------------------

    def _call(self) -> None:
        """Every call: the location's latency, then the changes that time has brought."""
        if self.options.latency_ms:
            time.sleep(self.options.latency_ms / 1000)
        with self._lock:
            self._advance()

    def _advance(self) -> None:
        now = self.clock()
        due = (now - self._last) * self.options.changes_per_minute / 60 + self._carry
        self._last = now
        n, self._carry = int(due), due - int(due)
        # The starting estate changes on its own; what onepane created changes when asked.
        for _ in range(min(n, self.options.instances)):
            i = self._rng.randrange(self.options.instances)
            roll = self._rng.random()
            if self._state[i] == GONE:
                self._state[i] = RUNNING  # appears (again)
            elif roll < 0.1:
                self._state[i] = GONE  # vanishes
            else:
                self._state[i] = STOPPED if self._state[i] == RUNNING else RUNNING
            self._changed(i)

    def _changed(self, i: int) -> None:
        self._log.append(i)
        if len(self._log) > LOG_LIMIT:
            drop = len(self._log) - LOG_LIMIT // 2
            del self._log[:drop]
            self._log_base += drop

    def _observe(self, i: int) -> ObservedInstance:
        made = self._made.get(i)
        address = f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"
        if made is None:
            return ObservedInstance(provider_id=f"s-{i}", name=f"sim-{i}",
                                    state=STATES[self._state[i]], image=IMAGE, size="sim.small",
                                    addresses=[address],
                                    tags={"team": f"t{i % 7}", "env": "prod"})
        return ObservedInstance(provider_id=f"s-{i}", name=made.name, state=STATES[self._state[i]],
                                image=made.image, size=made.size, addresses=[address],
                                tags=dict(made.tags), onepane_id=made.onepane_id)

    def _index(self, provider_id: str) -> int:
        try:
            i = int(provider_id.removeprefix("s-"))
        except ValueError:
            i = -1
        if not provider_id.startswith("s-") or not 0 <= i < len(self._state) \
                or self._state[i] == GONE:
            raise NotFound(f"no instance {provider_id} at {self.location}", field="instance")
        return i

    # ---- the provider --------------------------------------------------------------------------

    def list_instances(self) -> list[ObservedInstance]:
        self._call()
        with self._lock:
            return [self._observe(i) for i, st in enumerate(self._state) if st != GONE]

    def changes_since(self, token: str | None) -> Changes | None:
        self._call()
        with self._lock:
            head = self._log_base + len(self._log)
            if token is None:
                return Changes(changed=[], vanished=[], token=str(head))
            try:
                since = int(token)
            except ValueError:
                return None
            if since < self._log_base or since > head:
                return None  # older than the log keeps: the caller lists everything
            touched = dict.fromkeys(self._log[since - self._log_base:])
            changed = [self._observe(i) for i in touched if self._state[i] != GONE]
            vanished = [f"s-{i}" for i in touched if self._state[i] == GONE]
            return Changes(changed=changed, vanished=vanished, token=str(head))

    def create_instance(self, spec: InstanceSpec) -> ObservedInstance:
        self.validate(spec.image, spec.size)
        self._call()
        with self._lock:
            i = self._by_onepane_id.get(spec.onepane_id)
            if i is None or self._state[i] == GONE:  # a retried create finds the first one
                i = len(self._state)
                self._state.append(RUNNING)
                self._made[i] = Made(spec.onepane_id, spec.name, spec.image, spec.size,
                                     dict(spec.tags))
                self._by_onepane_id[spec.onepane_id] = i
                self._changed(i)
            return self._observe(i)

    def destroy_instance(self, provider_id: str) -> None:
        self._call()
        with self._lock:
            try:
                i = self._index(provider_id)
            except NotFound:
                return  # gone already: destroying twice is fine
            self._state[i] = GONE
            self._changed(i)

    def start_instance(self, provider_id: str) -> None:
        self._set(provider_id, RUNNING)

    def stop_instance(self, provider_id: str) -> None:
        self._set(provider_id, STOPPED)

    def reboot_instance(self, provider_id: str) -> None:
        self._set(provider_id, RUNNING)

    def _set(self, provider_id: str, state: int) -> None:
        self._call()
        with self._lock:
            i = self._index(provider_id)
            if self._state[i] != state:
                self._state[i] = state
                self._changed(i)

    def validate(self, image: str, size: str) -> None:
        super().validate(image, size)
        if image != IMAGE:
            raise InvalidInput(f"unknown image {image!r} at {self.location}; available: {IMAGE}",
                               field="image")

    def list_images(self) -> list[ObservedImage]:
        return [ObservedImage(provider_id=IMAGE, name=IMAGE, extra={"kind": "simulated"})]

    def list_sizes(self) -> list[ObservedSize]:
        return [ObservedSize(provider_id=name, cpu=cpu, memory_mb=mem)
                for name, (cpu, mem) in SIZES.items()]

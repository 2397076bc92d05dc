"""A throwaway lab: onepane in-process over network-namespace data centers, torn down after.

For failure drills, the failover tests and bench/failover.py. Needs root. The catch-all
blackhole route is installed before the first namespace and removed only after the last veth
is gone (see docs/architecture.md, "Drills"), so drill traffic never leaves the machine.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from .config import Settings
from .core import Core
from .model import LocationCreate, ProviderKind
from .providers.dcnet import CATCH_ALL, ensure_catch_all
from .providers.netns import NetnsProvider


@contextlib.contextmanager
def netns_lab(state_dir: Path, locations: dict[str, int], **settings: object) -> Iterator[Core]:
    """`locations`: name -> subnet index (10.200.<index>.0/24)."""
    had = CATCH_ALL in subprocess.run(["ip", "route", "show", "type", "blackhole"],
                                      capture_output=True, text=True).stdout
    ensure_catch_all()
    core = Core(Settings(state_dir=state_dir, dns_port=None, locations=[
        LocationCreate(name=name, provider=ProviderKind.netns, options={"index": index})
        for name, index in locations.items()], **settings))  # type: ignore[arg-type]
    core.runner.backoff = 0.01
    core.start()
    providers = [core.registry.get(name) for name in locations]
    try:
        yield core
    finally:
        core.stop()
        for plane in core.reconciler.planes.values():
            plane.stop()
        for doors in core.reconciler.sites.planes.values():  # the sites' own front doors
            for plane in doors.values():
                plane.stop()
        for p in providers:
            assert isinstance(p, NetnsProvider)
            p.teardown()  # processes inside, the namespace, then waits for the veth
        if not had:
            subprocess.run(["ip", "route", "del", "blackhole", CATCH_ALL], check=False)


def fail(core: Core, location: str, failure: str) -> float:
    """Make a location fail the way drills do: `kill` its instances' processes (connections
    are refused), cut it off `silent`ly (packets vanish) or take its link `down`. Returns when
    it happened."""
    provider = core.registry.get(location)
    assert isinstance(provider, NetnsProvider)
    at = time.monotonic()
    if failure == "kill":
        for inst in core.ops.instances.list_instances(location=location).items:
            provider.kill_instance(inst.id)
    else:
        provider.cut(failure)
    return at


def recover(core: Core, location: str, failure: str) -> None:
    """Undo a silent cut; killed instances are replaced by the reconciler on its own."""
    provider = core.registry.get(location)
    if failure in ("silent", "down") and isinstance(provider, NetnsProvider):
        provider.restore()

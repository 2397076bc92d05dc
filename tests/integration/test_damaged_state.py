"""Issue 35: onepane starts with any single state file of a process location damaged in any of
the ways seen (a list where an object belongs, empty, truncated, not UTF-8, an object of the
wrong shape), never kills the live instance for it, and says what is wrong instead of crashing.
Each round is onepane's start (`Core.start`, what `onepane up` runs before its API) over the
same state directory with one file damaged, then the file restored."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from onepane.config import Settings
from onepane.core import Core
from onepane.errors import OnepaneError
from onepane.model import LocationCreate, ProviderKind
from onepane.providers.base import InstanceSpec
from onepane.providers.local import LocalProvider
from tests.helpers import kill_instances

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="instances run as their own users")
WAYS: dict[str, Callable[[bytes], bytes]] = {
    "a list": lambda good: b"[]",
    "empty": lambda good: b"",
    "truncated": lambda good: good[: len(good) // 2],
    "not UTF-8": lambda good: b"\xff\xfe" + good,
    "wrong shape": lambda good: b'{"unexpected": [1, 2]}',
}


def test_up_starts_with_any_single_state_file_damaged(tmp_path: Path) -> None:
    state = tmp_path / "state"
    dc = LocalProvider("dc-d", state)
    dc.setup()
    obs = dc.create_instance(InstanceSpec("inst-d", "web", "httpecho", "nano",
                                          user_data="hello"))
    vol = dc.create_volume("v", 1)
    dc.attach_volume(vol.provider_id, "inst-d", "/dev/sdh")
    dc.create_network("n", "10.1.0.0/16")
    pid = dc._load("inst-d").pid
    files = sorted(p for p in dc.root.rglob("*") if p.is_file() and not p.is_symlink()
                   and p.suffix in (".json", "") and p.stat().st_size < 65536
                   and "volumes" not in p.parent.name and p.name != "output.log")
    assert {"instance.json", "volumes.json", "networks.json", "onepane-app.json"} <= \
        {p.name for p in files}
    settings = Settings(state_dir=state, dns_port=None, sync_interval=60, locations=[
        LocationCreate(name="dc-d", provider=ProviderKind.local)])
    try:
        for path in files:
            good = path.read_bytes()
            for way, damage in WAYS.items():
                path.write_bytes(damage(good))
                core = Core(settings)
                try:
                    core.start(background=False)  # does not raise
                    provider = core.registry.get("dc-d")
                    assert psutil.pid_exists(pid), (path.name, way, "its process was killed")
                    for call in (provider.list_instances, provider.list_volumes,
                                 provider.list_networks, provider.list_images):
                        try:
                            call()
                        except OnepaneError as exc:  # a clear error naming the damage
                            assert path.name in exc.detail, (path.name, way, exc.detail)
                    listed = {o.provider_id: o for o in provider.list_instances()}
                    assert listed["inst-d"].ports == obs.ports, (path.name, way)
                finally:
                    core.stop()
                    core.registry.close()
                path.write_bytes(good)
    finally:
        kill_instances(state)

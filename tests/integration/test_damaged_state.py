"""Issue 35: onepane starts with any single state file of a process or netns location damaged in
any of the ways seen (a list where an object belongs, empty, truncated, not UTF-8, an object of the
wrong shape), never kills the live instance for it, and says what is wrong instead of crashing.
Each round is onepane's start (`Core.start`, what `onepane up` runs before its API) over the
same state directory with one file damaged, then the file restored."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from onepane.config import Settings
from onepane.core import Core
from onepane.errors import OnepaneError
from onepane.model import LocationCreate, ProviderKind
from onepane.providers.base import InstanceSpec
from onepane.providers.dcnet import CATCH_ALL
from onepane.providers.local import LocalProvider
from onepane.providers.netns import NetnsProvider
from tests.helpers import kill_instances

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="instances run as their own users")
WAYS: dict[str, Callable[[bytes], bytes]] = {
    "a list": lambda good: b"[]",
    "empty": lambda good: b"",
    "truncated": lambda good: good[: len(good) // 2],
    "not UTF-8": lambda good: b"\xff\xfe" + good,
    "wrong shape": lambda good: b'{"unexpected": [1, 2]}',
}


NETNS_INDEX = 249  # away from what other tests, drills and benches use


@pytest.mark.parametrize("kind", ["local", "netns"])
def test_up_starts_with_any_single_state_file_damaged(tmp_path: Path, kind: str) -> None:
    state = tmp_path / "state"
    had_catch_all = CATCH_ALL in subprocess.run(["ip", "route", "show", "type", "blackhole"],
                                                capture_output=True, text=True).stdout
    options = {"index": NETNS_INDEX} if kind == "netns" else {}
    dc = NetnsProvider("dc-d", state, options) if kind == "netns" else LocalProvider("dc-d", state)
    dc.setup()
    obs = dc.create_instance(InstanceSpec("inst-d", "web", "httpecho", "nano",
                                          user_data="hello"))
    vol = dc.create_volume("v", 1)
    dc.attach_volume(vol.provider_id, "inst-d", "/dev/sdh")
    dc.create_network("n", "10.1.0.0/16")
    pid = dc.records.load("inst-d").pid
    assert pid is not None
    files = sorted(p for p in dc.root.rglob("*") if p.is_file() and not p.is_symlink()
                   and p.suffix in (".json", "") and p.stat().st_size < 65536
                   and "volumes" not in p.parent.name and p.name != "output.log")
    assert {"instance.json", "volumes.json", "networks.json", "onepane-app.json"} <= \
        {p.name for p in files}
    settings = Settings(state_dir=state, dns_port=None, sync_interval=60, locations=[
        LocationCreate(name="dc-d", provider=ProviderKind(kind), options=options)])
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
        dc.teardown()
        if not had_catch_all:
            subprocess.run(["ip", "route", "del", "blackhole", CATCH_ALL], check=False)


VM_INDEX = 248


def test_up_starts_with_a_vm_location_s_records_damaged() -> None:
    """A vm location keeps its VMs' records in their libvirt domains (onepane's metadata in
    the domain XML) and its volumes in volumes.json: each damaged, onepane still starts, the
    VM stays listed under its name with the damage among the location's problems, and the
    volume table's damage is a clear error naming the file. The domain is defined, never
    booted: what is read at start is the same."""
    from onepane.providers.vm.domain import Disk, DomainSpec, domain_xml
    from onepane.providers.vm.provider import VmProvider
    # deeper than a UNIX socket's path allows (108 bytes): libvirt's sockets go to /run/onepane
    state = Path(tempfile.mkdtemp(prefix="opdv-")) / ("deep-" * 16) / "state"
    assert len(str(state / "locations" / "dc-v" / "libvirt" / "run" / "libvirt-sock")) > 108
    had_catch_all = CATCH_ALL in subprocess.run(["ip", "route", "show", "type", "blackhole"],
                                                capture_output=True, text=True).stdout
    options = {"index": VM_INDEX}
    dc = VmProvider("dc-v", state, options)
    dc.setup()
    dc.create_volume("data", 1)
    disk = dc.instances_dir / "inst-v" / "disk0.qcow2"
    disk.parent.mkdir(parents=True)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), "64M"], check=True)
    good = domain_xml(DomainSpec(
        name="inst-v", vcpus=1, memory_mb=128, disks=[Disk(disk)], nics=[],
        console_log=disk.parent / "console.log",
        metadata={"id": "inst-v", "name": "v", "image": "img-v", "size": "vm.tiny"}))
    dc.connection().defineXML(good)
    settings = Settings(state_dir=state, dns_port=None, sync_interval=60, locations=[
        LocationCreate(name="dc-v", provider=ProviderKind.vm, options=options)])
    volumes = dc.root / "volumes.json"
    good_volumes = volumes.read_bytes()
    dc.close()

    def redefine(xml: str) -> None:
        """What an operator's `virsh define` does, with onepane stopped."""
        p = VmProvider("dc-v", state, options)
        p.hypervisor.start()
        uuid = p.connection().lookupByName("inst-v").UUIDString()
        p.connection().defineXML(xml.replace("<name>inst-v</name>",
                                             f"<name>inst-v</name><uuid>{uuid}</uuid>"))
        p.close()
    try:
        for way in ("metadata", "volumes.json"):
            if way == "metadata":
                redefine(good.replace('{"id"', '[{"id"'))  # an edit gone wrong: not JSON
            else:
                volumes.write_bytes(good_volumes[: len(good_volumes) // 2])
            core = Core(settings)
            try:
                core.start(background=False)  # does not raise
                provider = core.registry.get("dc-v")
                listed = {o.onepane_id: o for o in provider.list_instances()}
                assert "inst-v" in listed, way
                if way == "metadata":
                    assert any("inst-v" in p and "metadata" in p for p in provider.problems())
                    assert listed["inst-v"].state.value == "stopped"
                else:
                    with pytest.raises(OnepaneError) as err:
                        provider.list_volumes()
                    assert "volumes.json" in err.value.detail
            finally:
                core.stop()
                core.registry.close()
            if way == "metadata":
                redefine(good)
            volumes.write_bytes(good_volumes)
    finally:
        VmProvider("dc-v", state, options).teardown()
        shutil.rmtree(state.parents[1], ignore_errors=True)
        if not had_catch_all:
            subprocess.run(["ip", "route", "del", "blackhole", CATCH_ALL], check=False)

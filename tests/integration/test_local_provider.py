"""The local driver with real processes: lifecycle, limits, volumes, networks, adoption."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import tarfile
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from onepane.errors import Conflict, InvalidInput, OnepaneError
from onepane.model import InstanceState
from onepane.providers.base import InstanceSpec
from onepane.providers.local import LocalProvider
from tests.helpers import kill_instances, wait_for


@pytest.fixture
def dc(tmp_path: Path) -> Iterator[LocalProvider]:
    p = LocalProvider("dc-t", tmp_path)
    p.setup()
    yield p
    kill_instances(tmp_path)


def get(obs_addr: str, port: int) -> dict[str, str]:
    return httpx.get(f"http://{obs_addr}:{port}/", timeout=2).json()  # type: ignore[no-any-return]


def test_lifecycle_of_a_process_instance(dc: LocalProvider) -> None:
    obs = dc.create_instance(InstanceSpec("inst-1", "web", "httpecho", "small"))
    assert obs.state == InstanceState.running
    port = obs.ports["app"]
    assert wait_for(lambda: get("127.0.0.1", port), what="app answers") == {
        "instance": "inst-1", "location": "dc-t"}
    # a retried create finds the first instance instead of making a second
    again = dc.create_instance(InstanceSpec("inst-1", "web", "httpecho", "small"))
    assert again.ports == obs.ports and len(dc.list_instances()) == 1

    dc.stop_instance("inst-1")
    assert dc.list_instances()[0].state == InstanceState.stopped
    with pytest.raises(httpx.ConnectError):
        get("127.0.0.1", port)
    dc.start_instance("inst-1")
    wait_for(lambda: get("127.0.0.1", port), what="app answers after start")
    pid = json.loads((dc.instances_dir / "inst-1" / "instance.json").read_text())["pid"]
    dc.reboot_instance("inst-1")
    new_pid = json.loads((dc.instances_dir / "inst-1" / "instance.json").read_text())["pid"]
    assert new_pid != pid and not psutil.pid_exists(pid)

    dc.kill_instance("inst-1")  # a crash: desired running, process gone
    wait_for(lambda: dc.list_instances()[0].state == InstanceState.error, what="error state")

    dc.destroy_instance("inst-1")
    assert dc.list_instances() == []
    dc.destroy_instance("inst-1")  # idempotent


def test_size_limits_are_enforced(dc: LocalProvider) -> None:
    dc.create_instance(InstanceSpec("inst-2", "web", "httpecho", "nano"))
    rec = json.loads((dc.instances_dir / "inst-2" / "instance.json").read_text())
    assert rec["limits"] in ("cgroup", "rlimit")
    if rec["limits"] == "cgroup":
        mem = Path("/sys/fs/cgroup/memory/onepane/dc-t-inst-2/memory.limit_in_bytes")
        assert int(mem.read_text()) == 64 * 1024 * 1024
        assert str(rec["pid"]) in (mem.parent / "cgroup.procs").read_text().split()
        cpu = Path("/sys/fs/cgroup/cpu/onepane/dc-t-inst-2/cpu.cfs_quota_us")
        assert int(cpu.read_text()) == 25_000
    dc.destroy_instance("inst-2")


def test_creates_at_one_location_start_their_processes_at_once(tmp_path: Path) -> None:
    """A create holds the location's lock only to claim its record: another create runs while
    the first one's process is still being started, and a listing meanwhile says pending."""
    entered, release = threading.Event(), threading.Event()

    class Slow(LocalProvider):
        def _spawn(self, rec: Any, manifest: Any) -> None:
            if rec.id == "inst-s1":
                entered.set()
                release.wait(10)
            super()._spawn(rec, manifest)
    dc = Slow("dc-s", tmp_path)
    dc.setup()
    try:
        with ThreadPoolExecutor(1) as pool:
            first = pool.submit(dc.create_instance, InstanceSpec("inst-s1", "a", "httpecho", "nano"))
            assert entered.wait(10)
            second = dc.create_instance(InstanceSpec("inst-s2", "b", "httpecho", "nano"))
            assert second.state == InstanceState.running
            states = {i.provider_id: i.state for i in dc.list_instances()}
            assert states == {"inst-s1": InstanceState.pending, "inst-s2": InstanceState.running}
            release.set()
            assert first.result(10).state == InstanceState.running
        assert {i.state for i in dc.list_instances()} == {InstanceState.running}
    finally:
        release.set()
        kill_instances(tmp_path)


def test_killed_instances_leave_no_cgroup_behind(dc: LocalProvider, tmp_path: Path) -> None:
    """The suite's and the benches' clean-up kills instances outside onepane; their cgroups
    must go too: thousands left behind made every new CPU quota a walk over all of them."""
    dc.create_instance(InstanceSpec("inst-9", "web", "httpecho", "nano"))
    rec = json.loads((dc.instances_dir / "inst-9" / "instance.json").read_text())
    if rec["limits"] != "cgroup":
        pytest.skip("no writable cgroup v1 here")
    group = Path("/sys/fs/cgroup/cpu/onepane/dc-t-inst-9")
    assert group.is_dir()
    kill_instances(tmp_path)
    assert not group.exists() and not Path("/sys/fs/cgroup/memory/onepane/dc-t-inst-9").exists()
    # and one killed some other way: the next start of the location removes its empty group
    dc.create_instance(InstanceSpec("inst-10", "web", "httpecho", "nano"))
    pid = json.loads((dc.instances_dir / "inst-10" / "instance.json").read_text())["pid"]
    psutil.Process(pid).kill()
    left = Path("/sys/fs/cgroup/cpu/onepane/dc-t-inst-10")
    wait_for(lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie", 10,
             what="the instance to die")
    assert left.is_dir()
    LocalProvider("dc-t", tmp_path).setup()  # a restarted onepane
    assert not left.exists()
    # and a teardown (what drills and tests end with) takes the groups with the processes
    dc.create_instance(InstanceSpec("inst-11", "web", "httpecho", "nano"))
    assert Path("/sys/fs/cgroup/cpu/onepane/dc-t-inst-11").is_dir()
    dc.teardown()
    assert not Path("/sys/fs/cgroup/cpu/onepane/dc-t-inst-11").exists()


def test_a_restarted_onepane_adopts_running_instances(dc: LocalProvider, tmp_path: Path) -> None:
    obs = dc.create_instance(InstanceSpec("inst-3", "web", "httpecho", "small"))
    fresh = LocalProvider("dc-t", tmp_path)  # what a restarted onepane builds
    assert [i.state for i in fresh.list_instances()] == [InstanceState.running]
    fresh.stop_instance("inst-3")
    with pytest.raises(httpx.ConnectError):
        get("127.0.0.1", obs.ports["app"])


def test_bad_images_and_sizes_are_rejected(dc: LocalProvider, tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="unknown image 'nope'"):
        dc.validate("nope", "small")
    with pytest.raises(InvalidInput, match="unknown size"):
        dc.validate("httpecho", "xxl")
    bad = tmp_path / "bad-app"
    bad.mkdir()
    (bad / "onepane-app.json").write_text('{"name": "Bad", "command": []}')
    with pytest.raises(InvalidInput, match=r"manifest|onepane-app\.json"):
        dc.import_image(bad)
    assert [i.name for i in dc.list_images()] == ["httpecho"]  # nothing half-installed


def test_app_image_archive_path_traversal_is_refused(dc: LocalProvider, tmp_path: Path) -> None:
    archive = tmp_path / "evil.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        data = b"pwned"
        info = tarfile.TarInfo("../../escape.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    with pytest.raises(InvalidInput, match="unsafe"):
        dc.import_image(archive)
    assert not (tmp_path / "escape.txt").exists()
    assert not list(tmp_path.rglob("escape.txt"))


def test_volumes_and_networks(dc: LocalProvider) -> None:
    dc.create_instance(InstanceSpec("inst-4", "db", "httpecho", "small"))
    vol = dc.create_volume("data", 2)
    assert vol.size_gb == 2 and vol.state == "available"
    dc.attach_volume(vol.provider_id, "inst-4", "/dev/sdh")
    link = dc.instances_dir / "inst-4" / "volumes" / "sdh"
    assert link.resolve().stat().st_size == 2 * 1024**3
    with pytest.raises(Conflict):
        dc.delete_volume(vol.provider_id)
    dc.detach_volume(vol.provider_id)
    assert not link.exists()
    dc.delete_volume(vol.provider_id)
    assert dc.list_volumes() == []

    net = dc.create_network("backend", "10.50.0.0/16")
    assert net.cidr == "10.50.0.0/16"
    with pytest.raises(Conflict, match="overlaps"):
        dc.create_network("other", "10.50.1.0/24")
    with pytest.raises(InvalidInput):
        dc.create_network("broken", "10.50.0.0/99")
    assert [n.name for n in dc.list_networks()] == ["backend"]
    dc.destroy_instance("inst-4")


def test_a_crash_anywhere_in_a_create_leaves_no_orphan_and_no_twin(dc: LocalProvider,
                                                                     tmp_path: Path) -> None:
    from dataclasses import replace

    # 1. killed after the record was written, before the process started: started on recovery
    first = dc.create_instance(InstanceSpec("inst-r1", "web", "httpecho", "nano"))
    rec = dc.records.load("inst-r1")
    psutil.Process(rec.pid).kill()
    dc.records.save(replace(rec, pid=None, started=None))
    # 2. killed after the process started, before its pid was recorded: adopted, not doubled
    dc.create_instance(InstanceSpec("inst-r2", "web", "httpecho", "nano"))
    pid2 = dc.records.load("inst-r2").pid
    dc.records.save(replace(dc.records.load("inst-r2"), pid=None, started=None))
    # 3. a process of an instance with nothing left of it here (no folder): stopped
    r3 = dc.create_instance(InstanceSpec("inst-r3", "web", "httpecho", "nano"))
    pid3 = dc.records.load("inst-r3").pid
    wait_for(lambda: get("127.0.0.1", r3.ports["app"]), what="inst-r3 confined and serving")
    shutil.rmtree(dc.instances_dir / "inst-r3")

    again = LocalProvider("dc-t", tmp_path, {})  # onepane restarted
    again.setup()
    notes = " | ".join(again.recovered)
    assert "inst-r1: a create was interrupted; started it" in notes
    assert f"inst-r2: a create was interrupted; adopted its process {pid2}" in notes
    assert f"stopped process {pid3} of instance inst-r3" in notes
    assert not Path("/sys/fs/cgroup/cpu/onepane/dc-t-inst-r3").exists()  # and its cgroup
    r1, r2 = again.records.load("inst-r1"), again.records.load("inst-r2")
    assert r1.pid is not None and psutil.pid_exists(r1.pid)
    assert r2.pid == pid2  # the same process, adopted
    wait_for(lambda: not psutil.pid_exists(pid3) or psutil.Process(pid3).status() == "zombie",
             5, what="the unknown process stopped")
    assert sorted(again.processes.ours().values()) == ["inst-r1", "inst-r2"]
    assert {i.provider_id: i.state for i in again.list_instances()} == {
        "inst-r1": InstanceState.running, "inst-r2": InstanceState.running}
    # and a retried create of a recorded one returns it, no second process
    assert again.create_instance(InstanceSpec("inst-r2", "web", "httpecho", "nano")).provider_id \
        == "inst-r2" and again.records.load("inst-r2").pid == pid2
    assert first.provider_id == "inst-r1"


# ---- damaged records (issue 35): never stop the location, never kill a live process ------------

DAMAGE = {
    "a list": b"[]",
    "empty": b"",
    "truncated": None,  # the first half of the file
    "missing field": b'{"id": "inst-d", "name": "web"}',
    "not UTF-8": b'{"id": "inst-d", "name": "\xff\xfe"}',
    "wrong type": None,  # port: "many"
}


def _damage(path: Path, how: str) -> bytes:
    good = path.read_bytes()
    bad = DAMAGE[how]
    if how == "truncated":
        bad = good[: len(good) // 2]
    elif how == "wrong type":
        bad = json.dumps({**json.loads(good), "port": "many"}).encode()
    assert bad is not None
    path.write_bytes(bad)
    return good


@pytest.mark.parametrize("how", list(DAMAGE))
def test_a_damaged_record_costs_only_its_own_bookkeeping(tmp_path: Path, how: str) -> None:
    dc = LocalProvider("dc-d", tmp_path)
    dc.setup()
    obs = dc.create_instance(InstanceSpec("inst-d", "web", "httpecho", "nano"))
    dc.create_instance(InstanceSpec("inst-ok", "other", "httpecho", "nano"))
    record = dc.instances_dir / "inst-d" / "instance.json"
    pid = json.loads(record.read_text())["pid"]
    # its process exec'd first: seen before its exec (a busy machine) it has its parent's
    # environment, and the record-less look finds an instance by the environment it runs with
    wait_for(lambda: dc.processes.ours().get(pid) == "inst-d", 30,
             what="the instance's process running its app")
    try:
        good = _damage(record, how)
        again = LocalProvider("dc-d", tmp_path)  # a restart of onepane
        again.setup()  # does not raise
        assert psutil.pid_exists(pid), "recovery killed the process of a damaged record"
        assert any("damaged" in note for note in again.recovered)
        listed = {o.provider_id: o for o in again.list_instances()}
        assert listed["inst-ok"].state == InstanceState.running
        assert listed["inst-d"].state == InstanceState.running  # its process, seen without it
        assert listed["inst-d"].ports == obs.ports
        assert again.problems() and "inst-d" in again.problems()[0]
        with pytest.raises(Conflict, match="damaged record"):
            again.stop_instance("inst-d")
        record.write_bytes(good)  # repaired: the instance is itself again
        assert {o.provider_id: o.state for o in again.list_instances()}["inst-d"] == \
            InstanceState.running
        assert again.problems() == []
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        kill_instances(tmp_path)


def test_a_damaged_record_can_still_be_destroyed(tmp_path: Path) -> None:
    dc = LocalProvider("dc-d", tmp_path)
    dc.setup()
    dc.create_instance(InstanceSpec("inst-d", "web", "httpecho", "nano"))
    record = dc.instances_dir / "inst-d" / "instance.json"
    pid = json.loads(record.read_text())["pid"]
    record.write_text("[]")
    dc.destroy_instance("inst-d")
    wait_for(lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie",
             what="the process gone", explain=lambda: _described(pid))
    assert not record.parent.exists() and dc.list_instances() == []


def _described(pid: int) -> dict[str, object]:
    """What a failure on CI needs to say which way a damaged destroy missed the process."""
    proc = psutil.Process(pid)
    with proc.oneshot():
        return {"status": proc.status(), "pgid": os.getpgid(pid), "cmdline": proc.cmdline(),
                "env": sorted(k for k in proc.environ() if k.startswith("ONEPANE_")),
                "cgroup": Path(f"/proc/{pid}/cgroup").read_text().split()}


@pytest.mark.parametrize("table", ["volumes.json", "networks.json"])
def test_a_damaged_table_is_a_clear_error_not_a_crash(tmp_path: Path, table: str) -> None:
    dc = LocalProvider("dc-d", tmp_path)
    dc.setup()
    dc.create_volume("v", 1)
    dc.create_network("n", "10.1.0.0/16")
    (dc.root / table).write_bytes(b"\xff[")
    again = LocalProvider("dc-d", tmp_path)
    again.setup()
    with pytest.raises(OnepaneError, match=f"{table}.*damaged"):
        again.list_volumes() if table == "volumes.json" else again.list_networks()


def test_recovery_kills_only_processes_without_a_folder(tmp_path: Path) -> None:
    dc = LocalProvider("dc-d", tmp_path)
    dc.setup()
    dc.create_instance(InstanceSpec("inst-a", "a", "httpecho", "nano"))
    dc.create_instance(InstanceSpec("inst-b", "b", "httpecho", "nano"))
    pid_a = json.loads((dc.instances_dir / "inst-a" / "instance.json").read_text())["pid"]
    pid_b = json.loads((dc.instances_dir / "inst-b" / "instance.json").read_text())["pid"]
    try:
        (dc.instances_dir / "inst-a" / "instance.json").unlink()  # lost, process alive
        shutil.rmtree(dc.instances_dir / "inst-b")  # nothing of it left: unowned
        (dc.instances_dir / "inst-c").mkdir()  # a destroy cut short: an empty folder
        again = LocalProvider("dc-d", tmp_path)
        again.setup()
        assert not (dc.instances_dir / "inst-c").exists()
        wait_for(lambda: not psutil.pid_exists(pid_b) or
                 psutil.Process(pid_b).status() == "zombie", what="the unowned process stopped")
        assert psutil.pid_exists(pid_a)  # its folder says it is onepane's: left alone
        assert (dc.instances_dir / "inst-a").exists()
    finally:
        for pid in (pid_a, pid_b):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        kill_instances(tmp_path)

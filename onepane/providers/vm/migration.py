"""Live migration of a running VM between two vm locations, shared-nothing.

libvirt does the work, driven from here as a client of both daemons: the destination gets empty
disks of the same size, the source mirrors every disk into them over NBD while the guest runs,
then copies its memory in rounds until what is left fits QEMU's downtime limit, pauses, sends
the rest and the destination resumes. Both daemons see the same file system, so the migration
and NBD streams go over UNIX sockets in the state directory, not over the data centers' links.

Traffic moves only after the destination *runs* the guest: then the host's /32 route for the
guest's address is switched to the destination. The guest keeps its address, its MAC, its
memory and so its TCP connections: a client connection open across the move sees a pause of
tens of milliseconds, not a reset. If the copy does not converge within the bound, the job is
aborted, the source keeps running and the destination is cleaned up.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...errors import Conflict, OnepaneError, PermanentProviderError
from ..base import ObservedInstance
from . import guestnet
from .domain import disk_paths, read_metadata
from .libvirtcalls import translate

if TYPE_CHECKING:
    from .provider import VmProvider

Phase = Callable[[str, float, dict[str, Any]], None]
POLL_S = 0.1


def migrate(src: VmProvider, dst: VmProvider, instance_id: str, bound_s: float,
            on_phase: Phase) -> ObservedInstance:
    from .provider import _libvirt
    lv = _libvirt()
    dom = src._domain(instance_id)
    if dst._find(instance_id) is not None and not dom.isActive():
        # an earlier attempt got there (onepane died before it was recorded): route to it
        moved = dst._domain(instance_id)
        address = (read_metadata(moved.XMLDesc(0)) or {}).get("address")
        if address:
            guestnet.route_to(address, dst.net, away_from=src.net)
        return dst._observed(moved)
    if not dom.isActive():
        raise Conflict(f"instance {instance_id} is not running; only a running VM moves live "
                       "(a stopped one can be destroyed and created again)", field="instance")
    xml = dom.XMLDesc(lv.VIR_DOMAIN_XML_MIGRATABLE)
    meta = read_metadata(xml) or {}
    src_dir, dst_dir = src.instance_dir(instance_id), dst.instance_dir(instance_id)
    sockets = dst.root.parent.parent / "migrations" / instance_id
    t0 = time.monotonic()
    try:
        _prepare_destination(xml, src_dir, dst_dir)
        sockets.mkdir(parents=True, exist_ok=True)
        params = {
            lv.VIR_MIGRATE_PARAM_URI: f"unix://{sockets / 'memory.sock'}",
            lv.VIR_MIGRATE_PARAM_DISKS_URI: f"unix://{sockets / 'disks.sock'}",
            lv.VIR_MIGRATE_PARAM_DEST_XML: xml.replace(str(src_dir), str(dst_dir)),
            lv.VIR_MIGRATE_PARAM_MIGRATE_DISKS: list(disk_paths(xml)),
            lv.VIR_MIGRATE_PARAM_BANDWIDTH: src.options.migration_bandwidth,
        }
        with contextlib.suppress(lv.libvirtError):  # an older libvirt takes it only mid-move
            dom.migrateSetMaxDowntime(src.options.migration_downtime_ms, 0)
        flags = (lv.VIR_MIGRATE_LIVE | lv.VIR_MIGRATE_PERSIST_DEST
                 | lv.VIR_MIGRATE_NON_SHARED_DISK)
        watch = Watch(dom, t0, bound_s, on_phase)
        def reroute() -> None:
            if meta.get("address"):
                guestnet.route_to(meta["address"], dst.net, away_from=src.net)
        switch = Switch(lambda: lv.open(dst.hypervisor.uri), instance_id, reroute)
        watch.start()
        switch.start()
        try:
            dom.migrate3(dst.connection(), params, flags)
        except lv.libvirtError as exc:
            watch.stop()
            switch.stop()
            if switch.switched is not None and meta.get("address"):
                guestnet.route_to(meta["address"], src.net, away_from=dst.net)  # the source runs it again
            raise failed_move(exc, watch, instance_id, bound_s, f"at {src.location}") from exc
        watch.stop()
        switch.stop()
    except BaseException:
        _clean_destination(dst, instance_id, dst_dir)
        raise
    finally:
        shutil.rmtree(sockets, ignore_errors=True)
    moved = dst._domain(instance_id)
    if switch.switched is None:  # the watcher missed it: switch now
        if meta.get("address"):
            guestnet.route_to(meta["address"], dst.net, away_from=src.net)
        switch.resumed = switch.switched = time.monotonic()
    report_end(on_phase, dom, watch, switch, t0)
    with contextlib.suppress(lv.libvirtError):
        dom.undefine()
    shutil.rmtree(src_dir, ignore_errors=True)
    return dst._observed(moved)


def report_end(on_phase: Phase, dom: Any, watch: Watch, switch: Switch, t0: float,
               **extra: Any) -> None:
    """The memory and switchover phases of a finished move, from the source's statistics."""
    resumed = switch.resumed or switch.switched or time.monotonic()
    switched = switch.switched or resumed
    stats = completed_stats(dom)
    on_phase("memory", resumed - watch.memory_started, {
        "memory_iterations": stats.get("memory_iteration"),
        "memory_bytes": stats.get("memory_processed")})
    downtime = stats.get("downtime")
    on_phase("switchover", (downtime or 0) / 1000, {
        "downtime_ms": downtime, "route_switched_ms": round(1000 * (switched - resumed), 1),
        "disk_bytes": stats.get("disk_processed"), "total_ms": round(1000 * (switched - t0)),
        **extra})


class Watch(threading.Thread):
    """Reports the phases as libvirt's job statistics show them, and aborts at the bound."""

    def __init__(self, dom: Any, t0: float, bound_s: float, on_phase: Phase) -> None:
        super().__init__(daemon=True, name="vm-migration-watch")
        self.dom, self.t0, self.bound_s, self.on_phase = dom, t0, bound_s, on_phase
        self.done = threading.Event()
        self.aborted = False
        self.memory_started = t0
        self.last: dict[str, Any] = {}

    def stop(self) -> None:
        self.done.set()
        self.join(5)

    def summary(self) -> str:
        s = self.last
        if not s:
            return ("cancelled before libvirt reported any progress: the bound is shorter "
                    "than a move takes to start")
        return (f"disk {s.get('disk_processed', 0) / 2**20:.0f}/{s.get('disk_total', 0) / 2**20:.0f} "
                f"MiB, memory round {s.get('memory_iteration', 0)}, "
                f"{s.get('memory_remaining', 0) / 2**20:.0f} MiB left")

    def run(self) -> None:
        mirroring = True
        while not self.done.wait(POLL_S):
            with contextlib.suppress(Exception):
                stats = self.dom.jobStats()
                if stats:
                    self.last = stats
                if mirroring and (stats.get("memory_processed") or 0) > 0:
                    mirroring = False
                    self.memory_started = time.monotonic()
                    self.on_phase("mirror", self.memory_started - self.t0,
                                  {"disk_bytes": stats.get("disk_processed"),
                                   "disk_total": stats.get("disk_total")})
            if time.monotonic() - self.t0 > self.bound_s and not self.aborted:
                self.aborted = True
                with contextlib.suppress(Exception):
                    self.dom.abortJob()


class Switch(threading.Thread):
    """Switches the guest's route (`on_running`) the moment the destination runs it. libvirt's
    migrate call returns only after it has also stopped the source, which can take seconds;
    traffic must not wait for that. `open_conn` gives a connection of its own to the
    destination: the other one is busy migrating."""

    POLL_S = 0.002

    def __init__(self, open_conn: Callable[[], Any], instance_id: str,
                 on_running: Callable[[], object]) -> None:
        super().__init__(daemon=True, name="vm-migration-switch")
        self.open_conn, self.instance_id, self.on_running = open_conn, instance_id, on_running
        self.done = threading.Event()
        self.resumed: float | None = None
        self.switched: float | None = None

    def stop(self) -> None:
        self.done.set()
        self.join(5)

    def run(self) -> None:
        from .provider import _libvirt
        lv = _libvirt()
        conn = self.open_conn()
        try:
            while not self.done.wait(self.POLL_S):
                try:
                    state = conn.lookupByName(self.instance_id).state()[0]
                except lv.libvirtError:
                    continue
                if state == lv.VIR_DOMAIN_RUNNING:
                    self.resumed = time.monotonic()
                    self.on_running()
                    self.switched = time.monotonic()
                    return
        finally:
            with contextlib.suppress(Exception):
                conn.close()


def _prepare_destination(xml: str, src_dir: Path, dst_dir: Path) -> None:
    """Empty disks of the same virtual sizes (the mirror fills them: the destination needs no
    copy of the image), and the instance's other files (its OVF environment)."""
    dst_dir.mkdir(parents=True, exist_ok=True)
    for path in disk_paths(xml).values():
        info = json.loads(_qemu_img("info", "--output=json", "-U", str(path)))
        target = Path(str(path).replace(str(src_dir), str(dst_dir)))
        if target != path:
            _qemu_img("create", "-q", "-f", "qcow2", str(target), str(info["virtual-size"]))
    for f in src_dir.iterdir():  # the console's log too: the destination appends to it
        if f.is_file() and not f.name.endswith(".qcow2"):
            shutil.copy2(f, dst_dir / f.name)


def _clean_destination(dst: VmProvider, instance_id: str, dst_dir: Path) -> None:
    with contextlib.suppress(OnepaneError, Exception):
        leftover = dst._find(instance_id)
        if leftover is not None:
            with contextlib.suppress(Exception):
                leftover.destroy()
            with contextlib.suppress(Exception):
                leftover.undefine()
    shutil.rmtree(dst_dir, ignore_errors=True)


def completed_stats(dom: Any) -> dict[str, Any]:
    from .provider import _libvirt
    lv = _libvirt()
    with contextlib.suppress(lv.libvirtError):
        return dict(dom.jobStats(lv.VIR_DOMAIN_JOB_STATS_COMPLETED))
    return {}


def _qemu_img(*args: str) -> str:
    proc = subprocess.run(["qemu-img", *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise PermanentProviderError(f"qemu-img {args[0]}: {proc.stderr.strip()}")
    return proc.stdout


def failed_move(exc: Exception, watch: Watch, instance: str, bound_s: float,
                where: str) -> OnepaneError:
    """What a migration that failed raises: cancelled by the watch for not converging within
    its bound (the guest keeps running `where` it was), or libvirt's own error."""
    if watch.aborted:
        return Conflict(f"the move of {instance} did not converge within {bound_s:.0f} s and "
                        f"was cancelled; it keeps running {where} ({watch.summary()})",
                        field="to")
    return translate(exc)

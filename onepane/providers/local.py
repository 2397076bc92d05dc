"""A data center made of supervised processes on this host: the embedded default.

Each instance is a process running an app image (providers/appimage.py), started in its own session so it
outlives onepane: the data plane must survive the control plane. Its record on disk (pid and
process start time) lets a restarted onepane adopt it again without confusing a recycled pid.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..apps import BUILTIN_APPS
from ..errors import (
    Conflict,
    InvalidInput,
    OnepaneError,
)
from ..model import InstanceState
from . import copy, limits, sandbox
from .appimage import AppManifest, install_app_image, installed, read_manifest
from .base import (
    Capabilities,
    InstanceSpec,
    ObservedImage,
    ObservedInstance,
    ObservedNetwork,
    ObservedSize,
    Provider,
    tail_text,
)
from .filevolumes import FileVolumes
from .networktable import NetworkTable
from .process_records import DamagedInstance, ProcessRecord, RecordStore
from .supervisor import Supervisor, free_port, instance_env
from .volumetable import VolumeTable

SIZES: dict[str, tuple[float, int]] = {
    "nano": (0.25, 64),
    "small": (0.5, 256),
    "medium": (1.0, 512),
    "large": (2.0, 2048),
}
log = logging.getLogger(__name__)


PROCESSES_ONLY = ("a process data center keeps disk images (to replicate and export them) but "
                  "runs processes, not VMs; boot them at a vm location")


NO_SUSPEND = "a process data center stops and starts processes; it does not freeze them"


class LocalProvider(FileVolumes, Provider):
    capabilities = Capabilities.all_but(
        boot_images=PROCESSES_ONLY,
        suspend=NO_SUSPEND,
        capture_image="a process has no disk to make an image of; upload an app image instead",
        keep_data="a process has no disks of its own: a replacement starts from its app "
                  "image (keep data on a volume)",
        firewall="its processes share the host's network: filtering them would filter the host "
                 "(netns locations enforce security groups)",
        cut="its processes share the host's network; use a netns location for drills",
        addresses="its processes listen on the host's loopback, where no address can be "
                  "routed to one of them (netns locations route elastic addresses)",
        live_migration="a process is restarted, not moved, between data centers; "
                       "use vm locations for live moves")
    disk_formats = ("qcow2",)

    def __init__(self, location: str, state_dir: Path, options: dict[str, Any] | None = None) -> None:
        super().__init__(location)
        self.state_dir = state_dir
        self.root = state_dir / "locations" / location
        self.options = options or {}
        self._lock = threading.RLock()
        self._creating: set[str] = set()  # instances whose process is being started
        self.processes = Supervisor(location, self.instances_dir)
        self.records = RecordStore(location, self.instances_dir)
        self.volumes = VolumeTable(location, self.root / "volumes.json")
        self.networks = NetworkTable(self.root / "networks.json")

    # ---- layout --------------------------------------------------------------------------

    @property
    def images_dir(self) -> Path:
        return self.root / "images"

    @property
    def instances_dir(self) -> Path:
        return self.root / "instances"

    @property
    def bind_host(self) -> str:
        return "127.0.0.1"

    def setup(self) -> None:
        for d in (self.images_dir, self.instances_dir, self.root / "volumes"):
            d.mkdir(parents=True, exist_ok=True)
        for app in BUILTIN_APPS:
            if not (self.images_dir / app.name).exists():
                install_app_image(app, self.images_dir)
        self._recover()

    def _recover(self) -> None:
        """After a crash: a create that recorded its instance but not yet its process adopts the
        process if it started (else starts it); a process of this location whose instance has
        no folder at all is stopped, and so is a folder a destroy left half-removed. A record
        that cannot be read is reported and left alone, with its process: it proves nothing
        about either. Records and processes agree again before the first request."""
        with self._lock:
            records = self.records.all()
            for rec in records:
                if rec.uid is not None:
                    sandbox.claim_uid(self.location, rec.id, rec.uid)
                if rec.pid is None and rec.desired == "running":
                    with contextlib.suppress(OnepaneError):
                        self.recovered.append(f"instance {rec.id}: a create was interrupted; "
                                              f"{self._adopt_or_spawn(rec)}")
            for inst_id, reason in sorted(self.records.damaged.items()):
                self.recovered.append(f"instance {inst_id}: its record is damaged ({reason}); "
                                      "it is left as it is, with its process, until the record "
                                      "is repaired or the instance destroyed")
            self.recovered += self.processes.settle({r.id for r in records}
                                                    | set(self.records.damaged))
        limits.prune_empty(f"{self.location}-")  # of instances that died outside onepane

    def problems(self) -> list[str]:
        return [f"instance {i}: damaged record ({r})" for i, r in sorted(self.records.damaged.items())]

    def _adopt_or_spawn(self, rec: ProcessRecord) -> str:
        orphan = self.processes.adopt(rec)
        if orphan is None:
            self._spawn(rec, self._manifest(rec.image))
            return f"started it (process {rec.pid})"
        self.records.save(rec)
        return f"adopted its process {orphan}"

    def teardown(self) -> None:
        """Stop every instance's process and drop its cgroup (the files stay with the state
        directory; a later start makes the group again). Each is recorded as stopped: what
        `onepane down` stopped reads `stopped` after the next `up`, not `error` (a deployment's
        replicas are started again by their reconciler; other instances by their owner)."""
        for rec in self.records.all():
            if rec.desired == "running":
                rec.desired = "stopped"
                with contextlib.suppress(OSError):
                    self.records.save(rec)
            self.processes.terminate(rec)
            limits.remove_limits(f"{self.location}-{rec.id}")

    # ---- instances -----------------------------------------------------------------------

    def validate(self, image: str, size: str) -> None:
        super().validate(image, size)
        self._manifest(image)

    def list_instances(self) -> list[ObservedInstance]:
        with self._lock:
            out = [self._observe(r) for r in self.records.all()]
            if self.records.damaged:
                procs = {i: pid for pid, i in self.processes.ours().items()}
                if set(self.records.damaged) - set(procs):
                    # a process between two execs reads with no environment for a moment: one
                    # more look before one is called gone (a busy machine showed it)
                    time.sleep(0.2)
                    procs = {i: pid for pid, i in self.processes.ours().items()}
                out += [self.processes.unrecorded(i, procs.get(i)) for i in sorted(self.records.damaged)]
            return out

    def create_instance(self, spec: InstanceSpec) -> ObservedInstance:
        with self._lock:
            existing = self.records.path(spec.onepane_id)
            if existing.exists():  # a retry of a create that already happened (or began)
                rec = self.records.load(spec.onepane_id)
                if rec.pid is None and rec.desired == "running":
                    self._adopt_or_spawn(rec)
                return self._observe(rec)
            manifest = self._manifest(spec.image)
            if spec.size not in SIZES:
                raise InvalidInput(f"unknown size {spec.size!r}; this location offers "
                                   f"{', '.join(SIZES)}", field="size")
            port = manifest.port if isinstance(manifest.port, int) else self._free_port()
            rec = ProcessRecord(id=spec.onepane_id, name=spec.name, image=spec.image, size=spec.size,
                                host=self.bind_host, port=port, tags=dict(spec.tags))
            existing.parent.mkdir(parents=True, exist_ok=True)
            if spec.user_data:
                (existing.parent / "user-data").write_text(spec.user_data)
            if spec.ssh_keys:  # the app reads them from ONEPANE_SSH_AUTHORIZED_KEYS
                (existing.parent / "authorized_keys").write_text(
                    "".join(k.strip() + "\n" for k in spec.ssh_keys))
            self.records.save(rec)  # the record first: a crash from here on leaves no untracked process
            self._creating.add(rec.id)
        # The spawn, its limits and its record's second write need no lock of the location's:
        # held through them, the location's creates ran one at a time and waited on each
        # other's system calls (bench/provision.py). Until it is done, listings say pending;
        # one instance's jobs never run at once.
        try:
            self._spawn(rec, manifest)
        except Exception:
            shutil.rmtree(existing.parent, ignore_errors=True)
            raise
        finally:
            with self._lock:
                self._creating.discard(rec.id)
        return self._observe(rec)

    def start_instance(self, provider_id: str) -> None:
        with self._lock:
            rec = self.records.load(provider_id)
            rec.desired = "running"
            if not self.processes.alive(rec):
                self._spawn(rec, self._manifest(rec.image))
            else:
                self.records.save(rec)

    def stop_instance(self, provider_id: str) -> None:
        with self._lock:
            rec = self.records.load(provider_id)
            rec.desired = "stopped"
            self.records.save(rec)
        self.processes.terminate(rec)

    def resize_instance(self, provider_id: str, size: str) -> None:
        """The size is the process's resource limits, applied when it starts."""
        if size not in SIZES:
            raise InvalidInput(f"unknown size {size!r}; this location offers {', '.join(SIZES)}",
                               field="size")
        with self._lock:
            rec = self.records.load(provider_id)
            if self.processes.alive(rec):
                raise Conflict(f"instance {provider_id} is running; stop it to resize it",
                               field="state")
            rec.size = size
            self.records.save(rec)

    def reboot_instance(self, provider_id: str) -> None:
        self.stop_instance(provider_id)
        self.start_instance(provider_id)

    def destroy_instance(self, provider_id: str) -> None:
        with self._lock:
            path = self.records.path(provider_id)
            if not path.exists():
                return  # already gone: destroy is idempotent
            try:
                rec = self.records.load(provider_id)
            except DamagedInstance:  # its process is found by what it was started with
                self._destroy_damaged(provider_id)
                return
            rec.desired = "destroyed"
            self.records.save(rec)
        self.processes.terminate(rec)
        limits.remove_limits(f"{self.location}-{provider_id}")
        sandbox.release_uid(rec.uid)
        with self._lock:
            self.volumes.detach_all(provider_id)
            shutil.rmtree(path.parent, ignore_errors=True)

    def _destroy_damaged(self, provider_id: str) -> None:
        self.processes.kill_instance_of(provider_id)
        limits.remove_limits(f"{self.location}-{provider_id}")
        self.volumes.detach_all(provider_id)
        shutil.rmtree(self.records.path(provider_id).parent, ignore_errors=True)
        self.records.damaged.pop(provider_id, None)

    def usage(self, provider_id: str) -> tuple[float, int] | None:
        with contextlib.suppress(OnepaneError):
            return self.processes.usage(self.records.load(provider_id))
        return None

    def console_output(self, provider_id: str, max_bytes: int = 65536) -> str:
        """What the process wrote to stdout and stderr (its console)."""
        self.records.load(provider_id)
        return tail_text(self.records.path(provider_id).parent / "output.log", max_bytes)

    def kill_instance(self, provider_id: str) -> None:
        rec = self.records.load(provider_id)
        if rec.pid and self.processes.alive(rec):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(rec.pid, signal.SIGKILL)

    # ---- catalog -------------------------------------------------------------------------

    def list_images(self) -> list[ObservedImage]:
        apps = [ObservedImage(provider_id=m.name, name=m.name, extra={
            "kind": "app", "protocol": m.protocol, "health_path": m.health_path})
            for m in installed(self.images_dir)]
        # disk images are kept to replicate and export them, not booted (PROCESSES_ONLY)
        return apps + copy.stored_disks(self.root / "vm-images", self.disk_formats,
                                        bootable=False)

    def import_image(self, source: Path) -> ObservedImage:
        m = install_app_image(source, self.images_dir)
        return ObservedImage(provider_id=m.name, name=m.name, extra={"kind": "app"})

    def list_sizes(self) -> list[ObservedSize]:
        return [ObservedSize(provider_id=k, cpu=c, memory_mb=m) for k, (c, m) in SIZES.items()]

    def import_disk(self, image_id: str, name: str, path: Path, fmt: str, sha256: str,
                    progress: Callable[[float], None]) -> str:
        """Into this data center's image store, resuming a copy an interruption cut short."""
        return copy.into_store(self.root / "vm-images", image_id, path, fmt, sha256, progress)

    def delete_disk(self, provider_image_id: str) -> None:
        self.refuse_in_use(provider_image_id)
        copy.remove_from_store(self.root / "vm-images", provider_image_id)

    # ---- volumes: sparse files (filevolumes.py) ------------------------------------------

    def _check_instance(self, instance_id: str) -> None:
        self.records.load(instance_id)

    # ---- networks: address plans kept per location ---------------------------------------

    def list_networks(self) -> list[ObservedNetwork]:
        return self.networks.observed()

    def create_network(self, name: str, cidr: str) -> ObservedNetwork:
        return self.networks.create(name, cidr)

    def delete_network(self, provider_id: str) -> None:
        self.networks.delete(provider_id)

    # ---- internals -----------------------------------------------------------------------

    def _free_port(self) -> int:
        """Where a new instance listens (the netns driver numbers ports in its namespace)."""
        return free_port(self.bind_host)

    def _manifest(self, image: str) -> AppManifest:
        d = self.images_dir / image
        if "/" in image or not d.is_dir():
            names = ", ".join(m.name for m in installed(self.images_dir)) or "none"
            raise InvalidInput(f"unknown image {image!r} at {self.location}; available: {names}",
                               field="image")
        return read_manifest(d)

    def _command(self, cmd: list[str]) -> list[str]:
        """The argv to exec; the netns driver prefixes `ip netns exec`."""
        return cmd

    def _spawn(self, rec: ProcessRecord, manifest: AppManifest) -> None:
        subst = {"python": sys.executable, "host": rec.host, "port": str(rec.port)}
        argv = [part.format(**subst) for part in manifest.command]
        inst_dir = self.records.path(rec.id).parent
        env = instance_env(self.location, rec, manifest.env, inst_dir)
        rec.uid = sandbox.claim_uid(self.location, rec.id, rec.uid)
        argv = sandbox.confined_argv(argv, uid=rec.uid, cwd=self.images_dir / rec.image,
                                     state_dir=self.state_dir, instance_dir=inst_dir,
                                     volumes=self._attached_volumes(rec.id))
        cpu, mem = SIZES[rec.size]
        self.processes.start(rec, self._command(argv), env, inst_dir / "output.log", cpu, mem)
        self.records.save(rec)

    def _observe(self, rec: ProcessRecord) -> ObservedInstance:
        if rec.id in self._creating:
            state = InstanceState.pending
        elif rec.desired == "stopped":
            state = InstanceState.stopped
        elif self.processes.alive(rec):
            state = InstanceState.running
        else:
            state = InstanceState.error
        return ObservedInstance(provider_id=rec.id, name=rec.name, state=state, image=rec.image,
                                size=rec.size, addresses=[rec.host], ports={"app": rec.port},
                                tags=dict(rec.tags), onepane_id=rec.id)


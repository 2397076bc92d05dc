"""A data center made of supervised processes on this host: the embedded default.

Each instance is a process running an app image (providers/appimage.py), started in its own session so it
outlives onepane: the data plane must survive the control plane. Its record on disk (pid and
process start time) lets a restarted onepane adopt it again without confusing a recycled pid.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from .. import atomic
from ..apps import BUILTIN_APPS
from ..errors import (
    Conflict,
    InvalidInput,
    NotFound,
    OnepaneError,
    PermanentProviderError,
)
from ..model import InstanceState, new_id
from . import copy, limits, process_records, sandbox
from .appimage import AppManifest, install_app_image, read_manifest
from .base import (
    Capabilities,
    InstanceSpec,
    ObservedImage,
    ObservedInstance,
    ObservedNetwork,
    ObservedSize,
    ObservedVolume,
    Provider,
)
from .process_records import DamagedInstance, DamagedRecord, ProcessRecord
from .volumetable import FileSnapshots, VolumeTable

INSTANCE_PORTS = (20000, 32767)  # where instances listen (below Linux's ephemeral range)
SIZES: dict[str, tuple[float, int]] = {
    "nano": (0.25, 64),
    "small": (0.5, 256),
    "medium": (1.0, 512),
    "large": (2.0, 2048),
}
STOP_GRACE_S = 5.0
log = logging.getLogger(__name__)


PROCESSES_ONLY = ("a process data center keeps disk images (to replicate and export them) but "
                  "runs processes, not VMs; boot them at a vm location")


NO_SUSPEND = "a process data center stops and starts processes; it does not freeze them"


class LocalProvider(FileSnapshots, Provider):
    capabilities = Capabilities.all_but(
        boot_images=PROCESSES_ONLY,
        suspend=NO_SUSPEND,
        capture_image="a process has no disk to make an image of; upload an app image instead",
        firewall="its processes share the host's network: filtering them would filter the host "
                 "(netns locations enforce security groups)",
        cut="its processes share the host's network; use a netns location for drills",
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
        self._children: dict[int, subprocess.Popen[bytes]] = {}
        self._usage: dict[int, psutil.Process] = {}  # kept: cpu_percent() measures between calls
        self._damaged: dict[str, str] = {}  # instance id -> why its record cannot be read
        self.volumes = VolumeTable(location, self.root / "volumes.json")

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
            records = self._records()
            for rec in records:
                if rec.uid is not None:
                    sandbox.claim_uid(self.location, rec.id, rec.uid)
                if rec.pid is None and rec.desired == "running":
                    with contextlib.suppress(OnepaneError):
                        self.recovered.append(f"instance {rec.id}: a create was interrupted; "
                                              f"{self._adopt_or_spawn(rec)}")
            for inst_id, reason in sorted(self._damaged.items()):
                self.recovered.append(f"instance {inst_id}: its record is damaged ({reason}); "
                                      "it is left as it is, with its process, until the record "
                                      "is repaired or the instance destroyed")
            folders = {d.name for d in self.instances_dir.iterdir() if d.is_dir()}
            running = self._our_processes()
            for pid, inst_id in running.items():
                if inst_id not in folders:
                    self.recovered.append(f"stopped process {pid} of instance {inst_id}, "
                                          "which has no folder here")
                    log.warning("%s: stopping process %d of unknown instance %s",
                                self.location, pid, inst_id)
                    self._kill_group(pid)
            for name in folders - {r.id for r in records} - set(self._damaged):
                if (self.instances_dir / name / process_records.RECORD).exists():
                    continue  # destroyed, not yet removed: listings skip it
                if name in running.values():
                    self.recovered.append(f"instance {name} has a process but no record; both "
                                          "are left as they are (destroy it, or restore its "
                                          "record)")
                else:
                    shutil.rmtree(self.instances_dir / name, ignore_errors=True)
                    self.recovered.append(f"removed the folder of instance {name}, which a "
                                          "destroy had left without its record")
        limits.prune_empty(f"{self.location}-")  # of instances that died outside onepane

    def problems(self) -> list[str]:
        return [f"instance {i}: damaged record ({r})" for i, r in sorted(self._damaged.items())]

    @staticmethod
    def _kill_group(pid: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(psutil.Error):  # gone, so that its group can go
            psutil.Process(pid).wait(timeout=2)

    def _our_processes(self) -> dict[int, str]:
        """Session leaders started by this location: pid -> the instance id in their env."""
        out = {}
        for p in psutil.process_iter(["pid"]):
            with contextlib.suppress(psutil.Error, OSError):
                if os.getpgid(p.pid) != p.pid or p.status() == psutil.STATUS_ZOMBIE:
                    continue
                env = p.environ()
                if env.get("ONEPANE_LOCATION") == self.location and "ONEPANE_INSTANCE_ID" in env \
                        and env.get("ONEPANE_DATA_DIR", "").startswith(str(self.instances_dir)):
                    out[p.pid] = env["ONEPANE_INSTANCE_ID"]
        return out

    def _adopt_or_spawn(self, rec: ProcessRecord) -> str:
        orphan = next((pid for pid, i in self._our_processes().items() if i == rec.id), None)
        if orphan is None:
            self._spawn(rec, self._manifest(rec.image))
            return f"started it (process {rec.pid})"
        rec.pid = orphan
        with contextlib.suppress(psutil.Error):
            rec.started = psutil.Process(orphan).create_time()
        self._save(rec)
        return f"adopted its process {orphan}"

    def teardown(self) -> None:
        """Stop every instance's process and drop its cgroup (the files stay with the state
        directory; a later start makes the group again). Each is recorded as stopped: what
        `onepane down` stopped reads `stopped` after the next `up`, not `error` (a deployment's
        replicas are started again by their reconciler; other instances by their owner)."""
        for rec in self._records():
            if rec.desired == "running":
                rec.desired = "stopped"
                with contextlib.suppress(OSError):
                    self._save(rec)
            self._terminate(rec)
            limits.remove_limits(f"{self.location}-{rec.id}")

    # ---- instances -----------------------------------------------------------------------

    def validate(self, image: str, size: str) -> None:
        super().validate(image, size)
        self._manifest(image)

    def list_instances(self) -> list[ObservedInstance]:
        with self._lock:
            out = [self._observe(r) for r in self._records()]
            if self._damaged:
                procs = {i: pid for pid, i in self._our_processes().items()}
                out += [self._observe_damaged(i, procs.get(i)) for i in sorted(self._damaged)]
            return out

    def create_instance(self, spec: InstanceSpec) -> ObservedInstance:
        with self._lock:
            existing = self._record_path(spec.onepane_id)
            if existing.exists():  # a retry of a create that already happened (or began)
                rec = self._load(spec.onepane_id)
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
            self._save(rec)  # the record first: a crash from here on leaves no untracked process
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
            rec = self._load(provider_id)
            rec.desired = "running"
            if not self._alive(rec):
                self._spawn(rec, self._manifest(rec.image))
            else:
                self._save(rec)

    def stop_instance(self, provider_id: str) -> None:
        with self._lock:
            rec = self._load(provider_id)
            rec.desired = "stopped"
            self._save(rec)
        self._terminate(rec)

    def resize_instance(self, provider_id: str, size: str) -> None:
        """The size is the process's resource limits, applied when it starts."""
        if size not in SIZES:
            raise InvalidInput(f"unknown size {size!r}; this location offers {', '.join(SIZES)}",
                               field="size")
        with self._lock:
            rec = self._load(provider_id)
            if self._alive(rec):
                raise Conflict(f"instance {provider_id} is running; stop it to resize it",
                               field="state")
            rec.size = size
            self._save(rec)

    def reboot_instance(self, provider_id: str) -> None:
        self.stop_instance(provider_id)
        self.start_instance(provider_id)

    def destroy_instance(self, provider_id: str) -> None:
        with self._lock:
            path = self._record_path(provider_id)
            if not path.exists():
                return  # already gone: destroy is idempotent
            try:
                rec = self._load(provider_id)
            except DamagedInstance:  # its process is found by what it was started with
                self._destroy_damaged(provider_id)
                return
            rec.desired = "destroyed"
            self._save(rec)
        self._terminate(rec)
        limits.remove_limits(f"{self.location}-{provider_id}")
        sandbox.release_uid(rec.uid)
        with self._lock:
            self.volumes.detach_all(provider_id)
            shutil.rmtree(path.parent, ignore_errors=True)

    def _destroy_damaged(self, provider_id: str) -> None:
        """Its processes are those its cgroup holds and those started with its id in their
        environment (where cgroups are not writable)."""
        leaders = {pid for pid, inst_id in self._our_processes().items() if inst_id == provider_id}
        for pid in leaders:
            self._kill_group(pid)
        for pid in limits.members(f"{self.location}-{provider_id}"):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(psutil.Error):
                psutil.Process(pid).wait(timeout=2)
        limits.remove_limits(f"{self.location}-{provider_id}")
        self.volumes.detach_all(provider_id)
        shutil.rmtree(self._record_path(provider_id).parent, ignore_errors=True)
        self._damaged.pop(provider_id, None)

    def usage(self, provider_id: str) -> tuple[float, int] | None:
        with contextlib.suppress(OnepaneError, psutil.Error, OSError, ValueError):
            rec = self._load(provider_id)
            if not rec.pid or not self._alive(rec):
                return None
            proc = self._usage.get(rec.pid)
            if proc is None:
                proc = self._usage[rec.pid] = psutil.Process(rec.pid)
                proc.cpu_percent(None)  # the first call only sets the baseline
            procs = [proc, *proc.children(recursive=True)]
            return (sum(p.cpu_percent(None) for p in procs if p.is_running()),
                    sum(p.memory_info().rss for p in procs if p.is_running()))
        return None

    def console_output(self, provider_id: str, max_bytes: int = 65536) -> str:
        """What the process wrote to stdout and stderr (its console)."""
        log = self._record_path(provider_id).parent / "output.log"
        self._load(provider_id)
        with contextlib.suppress(FileNotFoundError), open(log, "rb") as f:
            f.seek(max(0, log.stat().st_size - max_bytes))
            return f.read().decode(errors="replace")
        return ""

    def kill_instance(self, provider_id: str) -> None:
        rec = self._load(provider_id)
        if rec.pid and self._alive(rec):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(rec.pid, signal.SIGKILL)

    # ---- catalog -------------------------------------------------------------------------

    def list_images(self) -> list[ObservedImage]:
        out = []
        for d in sorted(self.images_dir.iterdir()) if self.images_dir.exists() else []:
            if d.is_dir() and not d.name.startswith("."):
                with contextlib.suppress(InvalidInput):
                    m = read_manifest(d)
                    out.append(ObservedImage(provider_id=m.name, name=m.name,
                                             extra={"kind": "app", "protocol": m.protocol,
                                                    "health_path": m.health_path}))
        return out

    def import_image(self, source: Path) -> ObservedImage:
        m = install_app_image(source, self.images_dir)
        return ObservedImage(provider_id=m.name, name=m.name, extra={"kind": "app"})

    def list_sizes(self) -> list[ObservedSize]:
        return [ObservedSize(provider_id=k, cpu=c, memory_mb=m) for k, (c, m) in SIZES.items()]

    def import_disk(self, image_id: str, name: str, path: Path, fmt: str, sha256: str,
                    progress: Callable[[float], None]) -> str:
        """Into this data center's image store, resuming a copy an interruption cut short."""
        return copy.into_store(self.root / "vm-images", image_id, path, fmt, sha256, progress)

    # ---- volumes: sparse files -----------------------------------------------------------

    def list_volumes(self) -> list[ObservedVolume]:
        with self._lock:
            return self.volumes.observed()

    def create_volume(self, name: str, size_gb: int) -> ObservedVolume:
        with self._lock:
            vols = self.volumes.load()
            vid = new_id("lvol")
            with open(self.root / "volumes" / f"{vid}.img", "wb") as f:
                f.truncate(size_gb * 1024**3)
            return self.volumes.add(vols, vid, name, size_gb)

    def attach_volume(self, volume_id: str, instance_id: str, device: str) -> None:
        with self._lock:
            vols = self.volumes.load()
            vol = self.volumes.get(vols, volume_id)
            self._load(instance_id)
            self.volumes.attachable(vol, volume_id, instance_id)
            link = self._record_path(instance_id).parent / "volumes" / Path(device).name
            link.parent.mkdir(exist_ok=True)
            with contextlib.suppress(FileNotFoundError):
                link.unlink()
            link.symlink_to(self.root / "volumes" / f"{volume_id}.img")
            vol.update(attached_to=instance_id, device=device, state="in-use")
            self.volumes.save(vols)

    def detach_volume(self, volume_id: str) -> None:
        with self._lock:
            vols = self.volumes.load()
            vol = self.volumes.get(vols, volume_id)
            if vol["attached_to"] and vol["device"]:
                link = self._record_path(vol["attached_to"]).parent / "volumes" / Path(vol["device"]).name
                with contextlib.suppress(FileNotFoundError):
                    link.unlink()
            self.volumes.detached(vols, vol)

    def _volume_path(self, volume_id: str) -> Path:
        return self.root / "volumes" / f"{volume_id}.img"

    def _grow(self, path: Path, size_gb: int) -> None:
        if path.stat().st_size < size_gb * 1024**3:
            os.truncate(path, size_gb * 1024**3)

    def delete_volume(self, volume_id: str) -> None:
        with self._lock:
            self.volumes.delete(volume_id, self.root / "volumes" / f"{volume_id}.img")

    # ---- networks: address plans kept per location ---------------------------------------

    def list_networks(self) -> list[ObservedNetwork]:
        return [ObservedNetwork(provider_id=k, **v) for k, v in self._networks().items()]

    def create_network(self, name: str, cidr: str) -> ObservedNetwork:
        try:
            net = ipaddress.ip_network(cidr)
        except ValueError as exc:
            raise InvalidInput(f"{cidr!r} is not a network: {exc}", field="cidr") from exc
        with self._lock:
            nets = self._networks()
            for other in nets.values():
                if net.overlaps(ipaddress.ip_network(other["cidr"])):
                    raise Conflict(f"{cidr} overlaps network {other['name']} ({other['cidr']})",
                                   field="cidr")
            nid = new_id("lnet")
            nets[nid] = {"name": name, "cidr": str(net), "state": "available"}
            atomic.write_json(self.root / "networks.json", nets)
            return ObservedNetwork(provider_id=nid, **nets[nid])

    # ---- internals -----------------------------------------------------------------------

    def _manifest(self, image: str) -> AppManifest:
        d = self.images_dir / image
        if "/" in image or not d.is_dir():
            names = ", ".join(i.name for i in self.list_images()) or "none"
            raise InvalidInput(f"unknown image {image!r} at {self.location}; available: {names}",
                               field="image")
        return read_manifest(d)

    def _command(self, cmd: list[str]) -> list[str]:
        """The argv to exec; the netns driver prefixes `ip netns exec`."""
        return cmd

    def _spawn(self, rec: ProcessRecord, manifest: AppManifest) -> None:
        subst = {"python": sys.executable, "host": rec.host, "port": str(rec.port)}
        argv = [part.format(**subst) for part in manifest.command]
        inst_dir = self._record_path(rec.id).parent
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **manifest.env,
               "HOST": rec.host, "PORT": str(rec.port), "ONEPANE_INSTANCE_ID": rec.id,
               "ONEPANE_INSTANCE_NAME": rec.name, "ONEPANE_LOCATION": self.location,
               "ONEPANE_DATA_DIR": str(inst_dir / "data")}
        if (inst_dir / "user-data").exists():
            env["ONEPANE_USER_DATA_FILE"] = str(inst_dir / "user-data")
        if (inst_dir / "authorized_keys").exists():
            env["ONEPANE_SSH_AUTHORIZED_KEYS"] = str(inst_dir / "authorized_keys")
        rec.uid = sandbox.claim_uid(self.location, rec.id, rec.uid)
        argv = sandbox.confined_argv(argv, uid=rec.uid, cwd=self.images_dir / rec.image,
                                     state_dir=self.state_dir, instance_dir=inst_dir,
                                     volumes=self._attached_volumes(rec.id))
        with open(inst_dir / "output.log", "ab") as log:
            try:
                proc = subprocess.Popen(self._command(argv), cwd="/",
                                        env=env, stdin=subprocess.DEVNULL, stdout=log,
                                        stderr=subprocess.STDOUT, start_new_session=True)
            except OSError as exc:
                raise PermanentProviderError(f"cannot start {argv[0]}: {exc}") from exc
        self._children[proc.pid] = proc
        rec.pid, rec.exit_code, rec.desired = proc.pid, None, "running"
        with contextlib.suppress(psutil.Error):
            rec.started = psutil.Process(proc.pid).create_time()
        cpu, mem = SIZES[rec.size]
        rec.limits = limits.apply_limits(proc.pid, f"{self.location}-{rec.id}", cpu, mem)
        self._save(rec)

    def _attached_volumes(self, instance_id: str) -> list[Path]:
        return [self._volume_path(vid) for vid, v in self.volumes.load().items()
                if v.get("attached_to") == instance_id]

    def _alive(self, rec: ProcessRecord) -> bool:
        if not rec.pid:
            return False
        child = self._children.get(rec.pid)
        if child is not None and child.poll() is not None:  # reap our own children
            rec.exit_code = child.returncode
            self._children.pop(rec.pid, None)
            return False
        try:
            p = psutil.Process(rec.pid)
            same = rec.started is None or abs(p.create_time() - rec.started) < 0.05
            return same and p.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False

    def _terminate(self, rec: ProcessRecord) -> None:
        if not rec.pid or not self._alive(rec):
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(rec.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        while time.monotonic() < deadline and self._alive(rec):
            time.sleep(0.02)
        if self._alive(rec):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(rec.pid, signal.SIGKILL)
            while self._alive(rec):
                time.sleep(0.01)

    def _observe(self, rec: ProcessRecord) -> ObservedInstance:
        if rec.id in self._creating:
            state = InstanceState.pending
        elif rec.desired == "stopped":
            state = InstanceState.stopped
        elif self._alive(rec):
            state = InstanceState.running
        else:
            state = InstanceState.error
        return ObservedInstance(provider_id=rec.id, name=rec.name, state=state, image=rec.image,
                                size=rec.size, addresses=[rec.host], ports={"app": rec.port},
                                tags=dict(rec.tags), onepane_id=rec.id)

    def _free_port(self) -> int:
        """A free port *below* the kernel's ephemeral range. A port the kernel hands out for
        bind(0) can be one a server just let go of while it restarts (onepane's own API under
        a kill -9 drill saw an instance take its port and answer its clients with 501)."""
        low = INSTANCE_PORTS[0]
        with contextlib.suppress(OSError, ValueError):
            low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
        top = min(INSTANCE_PORTS[1], low - 1)
        rng = random.Random()
        for _ in range(64):
            port = rng.randint(INSTANCE_PORTS[0], top)
            with socket.socket() as s, contextlib.suppress(OSError):
                s.bind((self.bind_host, port))
                return port
        with socket.socket() as s:  # a crowded range: any free port
            s.bind((self.bind_host, 0))
            return int(s.getsockname()[1])

    def _record_path(self, instance_id: str) -> Path:
        if "/" in instance_id or instance_id.startswith("."):
            raise NotFound(f"no instance {instance_id!r} at {self.location}")
        return self.instances_dir / instance_id / "instance.json"

    def _load(self, instance_id: str) -> ProcessRecord:
        """The record, or NotFound; a damaged one is a Conflict naming the damage (DamagedRecord
        is one), so that an operation on it fails clearly instead of acting on a guess."""
        path = self._record_path(instance_id)
        try:
            return process_records.read(path)
        except FileNotFoundError as exc:
            raise NotFound(f"no instance {instance_id!r} at {self.location}") from exc
        except DamagedRecord as exc:
            self._damaged[instance_id] = str(exc)
            raise DamagedInstance(f"instance {instance_id} at {self.location} has a damaged "
                                  f"record ({exc}); repair {path} or destroy the instance",
                                  field="instance") from exc

    def _save(self, rec: ProcessRecord) -> None:
        process_records.write(self._record_path(rec.id), rec)

    def _records(self) -> list[ProcessRecord]:
        """Every readable record of a live instance; the damaged ones are noted, not returned."""
        out, damaged = [], {}
        for path in self.instances_dir.glob(f"*/{process_records.RECORD}"):
            try:
                rec = process_records.read(path)
            except FileNotFoundError:
                continue  # destroyed meanwhile
            except (DamagedRecord, OSError) as exc:
                damaged[path.parent.name] = str(exc)
                continue
            if rec.desired != "destroyed":
                out.append(rec)
        for inst_id in damaged.keys() - self._damaged.keys():
            log.warning("%s: instance %s has a damaged record (%s); left as it is",
                        self.location, inst_id, damaged[inst_id])
        self._damaged = damaged
        return out

    def _observe_damaged(self, inst_id: str, pid: int | None) -> ObservedInstance:
        """What can be said without the record: whether its process lives, where it listens."""
        env: dict[str, str] = {}
        if pid is not None:
            with contextlib.suppress(psutil.Error):
                env = psutil.Process(pid).environ()
        port = env.get("PORT", "")
        return ObservedInstance(
            provider_id=inst_id, name=env.get("ONEPANE_INSTANCE_NAME", inst_id),
            state=InstanceState.running if env else InstanceState.error, image="", size="",
            addresses=[env["HOST"]] if "HOST" in env else [],
            ports={"app": int(port)} if port.isdigit() else {}, onepane_id=inst_id)

    def delete_network(self, provider_id: str) -> None:
        with self._lock:
            nets = self._networks()
            if nets.pop(provider_id, None) is not None:
                atomic.write_json(self.root / "networks.json", nets)

    def _networks(self) -> dict[str, dict[str, Any]]:
        return atomic.read_table(self.root / "networks.json", "network table")

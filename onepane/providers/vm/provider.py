"""A private data center of real virtual machines: libvirt domains in the location's namespace.

Instances are QEMU guests that libvirt runs (`type='qemu'`, plain emulation, unless the location
says `accel = "kvm"` where KVM works), booted from catalog disk images replicated here. Each VM's
disk is a thin qcow2 overlay on the image, so a boot costs no copy. A guest gets its address
through the firmware config (`opt/onepane/net`: "ADDRESS/PREFIX GATEWAY") from an address book
shared by every vm location, which lets a live move keep it. The guest's app listens on port 80.

The domain itself is the record: onepane's id, name, image, size and tags live in the domain's
metadata, so a restarted onepane (or a second libvirt client) reads the same truth.
"""

from __future__ import annotations

import contextlib
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ...errors import (
    Conflict,
    InvalidInput,
    NotFound,
    OnepaneError,
    PermanentProviderError,
    TransientProviderError,
)
from ...model import InstanceState
from .. import copy
from ..base import (
    Capabilities,
    InstanceSpec,
    ObservedImage,
    ObservedInstance,
    ObservedNetwork,
    ObservedSize,
    Provider,
    tail_text,
)
from ..dcnet import CutByNamespace, DataCenterNet
from ..volumetable import VolumeTable
from . import guestnet
from .domain import Disk, DomainSpec, Nic, domain_xml, read_metadata, resized_xml
from .guestpolicy import GuestPolicy
from .hypervisor import Hypervisor
from .kept import DATA_TAG, KeptDisks
from .libvirtcalls import DISK_TARGETS, _libvirt, _qemu_img, libvirt_errors, translate
from .volumes import QcowVolumes

SIZES: dict[str, tuple[int, int]] = {  # name -> (vCPUs, MiB)
    "vm.tiny": (1, 128),
    "vm.small": (1, 256),
    "vm.medium": (1, 512),
    "vm.large": (2, 1024),
    "vm.xlarge": (2, 2048),
    "vm.2xlarge": (4, 4096),
}
APP_PORT = 80
MAX_EXTRA_DISK_BYTES = 2 * 1024**4


class VmOptions(BaseModel):
    """A vm location's options; a misspelt one is refused with its name."""

    model_config = ConfigDict(extra="forbid")

    index: int = Field(ge=1, le=254, description="its link to the host is 10.200.<index>.0/24")
    accel: Literal["qemu", "kvm"] = "qemu"
    stop_timeout: float = Field(default=30.0, gt=0, le=600,
                                description="seconds an ACPI shutdown may take before a hard stop")
    migration_bandwidth: int = Field(
        default=64, ge=1, le=100_000,
        description="MiB/s a live move may use. Unbounded, the copy starves an emulated guest's "
                    "CPU and it stops answering for the whole memory phase")
    migration_downtime_ms: int = Field(default=100, ge=1, le=60_000,
                                       description="the pause a live move may cost at its end")


OptionsT = TypeVar("OptionsT", bound=BaseModel)


def parse_options(model: type[OptionsT], location: str, options: dict[str, Any]) -> OptionsT:
    """A location's options as `model`, or one clear error naming the option."""
    try:
        return model.model_validate(options)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InvalidInput(f"location {location}: options.{where}: {first['msg']}",
                           field=f"options.{where}") from exc


def vm_options(location: str, options: dict[str, Any]) -> VmOptions:
    return parse_options(VmOptions, location, options)


class VmProvider(GuestPolicy, CutByNamespace, QcowVolumes, Provider):
    capabilities = Capabilities.all_but(
        attach_network="a VM's interface is chosen when it is created (onepane does not "
                       "hot-plug NICs)",
        app_images="a VM data center boots disk images; app images run in process data "
                   "centers",
        networks="a vm location has one guest network (10.200.255.0/24), shared by every "
                 "vm location so that a moved VM keeps its address; more are not built yet",
    )
    disk_formats = ("qcow2", "raw")

    def __init__(self, location: str, state_dir: Path, options: dict[str, Any] | None = None) -> None:
        super().__init__(location)
        self.options = vm_options(location, options or {})
        self.root = state_dir / "locations" / location
        self.net = DataCenterNet(location, self.options.index, owner=str(state_dir.resolve()))
        self.hypervisor = Hypervisor(location, self.net.ns, self.root / "libvirt")
        self.addresses = guestnet.AddressBook(state_dir)
        self.volumes = VolumeTable(location, self.root / "volumes.json")
        self.kept = KeptDisks(self.root / "kept")  # data disks kept for a replacement
        self._damaged: dict[str, str] = {}  # domain -> why its metadata does not read
        self._conn: Any = None
        self._lock = threading.RLock()

    # ---- layout and connection -----------------------------------------------------------

    @property
    def images_dir(self) -> Path:
        return self.root / "vm-images"

    @property
    def instances_dir(self) -> Path:
        return self.root / "instances"

    def instance_dir(self, instance_id: str) -> Path:
        if "/" in instance_id or instance_id.startswith("."):
            raise NotFound(f"no instance {instance_id!r} at {self.location}")
        return self.instances_dir / instance_id

    def connection(self) -> Any:
        with self._lock:
            if self._conn is not None:
                with contextlib.suppress(Exception):
                    if self._conn.isAlive():
                        return self._conn
            lv = _libvirt()
            try:
                self._conn = lv.open(self.hypervisor.uri)
            except lv.libvirtError as exc:
                raise TransientProviderError(f"libvirtd of {self.location}: {exc}") from exc
            return self._conn

    def _libvirt_errors(self) -> contextlib.AbstractContextManager[None]:
        return libvirt_errors()

    def setup(self) -> None:
        for d in (self.images_dir, self.instances_dir, self.root / "volumes"):
            d.mkdir(parents=True, exist_ok=True)
        self.net.setup()
        guestnet.setup_bridge(self.net, routed=True)
        self.hypervisor.start()
        self.connection()
        for dom in self._domains():  # host routes do not survive a host reboot; domains do
            meta = self._meta(dom)
            if meta and meta.get("address") and dom.isActive():
                guestnet.route_to(meta["address"], self.net)

    def check_source(self) -> str | None:
        return guestnet.CHECKER

    def check(self) -> None:
        with self._libvirt_errors():
            self.connection().getLibVersion()

    def close(self) -> None:
        """Leave the hypervisor running while it runs VMs (they must outlive onepane, like
        every instance); stop it when it runs none."""
        with self._lock:
            if self._conn is not None:
                with contextlib.suppress(Exception):
                    busy = any(d.isActive() for d in self._conn.listAllDomains())
                    self._conn.close()
                    if not busy:
                        self.hypervisor.stop()
                self._conn = None

    def teardown(self) -> None:
        """Destroy every VM, stop the hypervisor and delete the namespace."""
        with contextlib.suppress(OnepaneError):
            for dom in self._domains():
                with contextlib.suppress(OnepaneError):
                    self.destroy_instance(dom.name())
        self.close()
        self.hypervisor.stop()
        self.hypervisor.forget()
        self.net.teardown()
        guestnet.last_location_gone()

    # ---- instances -----------------------------------------------------------------------

    def validate(self, image: str, size: str) -> None:
        super().validate(image, size)
        self._image_path(image)

    def list_instances(self) -> list[ObservedInstance]:
        out = []
        self._damaged.clear()
        for dom in self._domains():
            with contextlib.suppress(OnepaneError):
                if (obs := self._observe(dom)) is not None:
                    out.append(obs)
        return out

    def create_instance(self, spec: InstanceSpec) -> ObservedInstance:
        with self._lock:
            existing = self._find(spec.onepane_id)
            if existing is not None:  # a retry of a create that already happened
                if not existing.isActive():
                    self._start(existing)
                return self._observed(existing)
            base = self._image_path(spec.image)
            if spec.size not in SIZES:
                raise InvalidInput(f"unknown size {spec.size!r}; this location offers "
                                   f"{', '.join(SIZES)}", field="size")
            if len(spec.disks) > len(DISK_TARGETS) - 1 or any(
                    not 0 < b <= MAX_EXTRA_DISK_BYTES for b in spec.disks):
                raise InvalidInput("a VM takes up to 15 extra disks of up to 2 TiB each",
                                   field="disks")
            d = self.instance_dir(spec.onepane_id)
            d.mkdir(parents=True, exist_ok=True)
            try:
                xml = self._define_xml(spec, base, d)
                with self._libvirt_errors():
                    dom = self.connection().defineXML(xml)
                self._start(dom)
            except Exception:
                self.kept.park(d)  # kept disks it took go back, whole
                self._forget(spec.onepane_id)
                raise
            return self._observed(dom)

    def start_instance(self, provider_id: str) -> None:
        dom = self._domain(provider_id)
        if not dom.isActive():
            refuse_moved_away(dom)
            self._start(dom)
        else:
            self.resume_instance(provider_id)

    def export_disk(self, provider_id: str, dest: Path) -> str:
        """The overlay and its base image, flattened into one qcow2. A running guest's disk is
        read shared (-U): crash-consistent, as EC2's CreateImage with NoReboot."""
        self._domain(provider_id)
        _qemu_img("convert", "-q", "-U", "-O", "qcow2", str(self.instance_dir(provider_id) /
                                                      "disk0.qcow2"), str(dest))
        return "qcow2"

    def resize_instance(self, provider_id: str, size: str) -> None:
        """A stopped VM's vCPUs and memory, redefined: they take effect at its next start."""
        with self._lock, self._libvirt_errors():
            resize_stopped(self.connection(), self._domain(provider_id), size)

    def snapshot_boot_disk(self, provider_id: str, snapshot_id: str) -> str:
        """The flattened boot disk among the volumes' snapshots: a qcow2 file like theirs, so a
        volume made from it is a copy of the file as for any snapshot."""
        dst = self.root / "snapshots" / f"{snapshot_id}.qcow2"
        dst.parent.mkdir(parents=True, exist_ok=True)
        part = dst.with_name(dst.name + ".partial")
        try:
            self.export_disk(provider_id, part)
            part.replace(dst)
        finally:
            part.unlink(missing_ok=True)
        return dst.name

    def suspend_instance(self, provider_id: str) -> None:
        suspend_domain(self._domain(provider_id))

    def resume_instance(self, provider_id: str) -> None:
        resume_domain(self._domain(provider_id))

    def stop_instance(self, provider_id: str) -> None:
        with self._libvirt_errors():
            stop_domain(self._domain(provider_id), self.options.stop_timeout)

    def reboot_instance(self, provider_id: str) -> None:
        self.stop_instance(provider_id)
        self.start_instance(provider_id)

    def destroy_instance(self, provider_id: str) -> None:
        lv = _libvirt()
        with self._lock:
            dom = self._find(provider_id)
            if dom is not None:
                with self._libvirt_errors():
                    if dom.isActive() and self.kept.keeps(self.instance_dir(provider_id)):
                        # its data disks are kept for its replacement: the guest writes back
                        # what it holds first, as at any planned stop (briefly: a guest
                        # that does not answer is stopped hard, keeping what it wrote)
                        with contextlib.suppress(lv.libvirtError):
                            stop_domain(dom, min(self.options.stop_timeout, KEEP_STOP_S))
                    if dom.isActive():
                        with contextlib.suppress(lv.libvirtError):
                            dom.destroy()
                    with contextlib.suppress(lv.libvirtError):  # gone meanwhile: fine
                        dom.undefine()
            self.volumes.detach_all(provider_id)
            self.kept.park(self.instance_dir(provider_id))  # where its deployment keeps data
            self._forget(provider_id)

    def forget_data(self, deployment: str) -> list[str]:
        return self.kept.forget(deployment)

    def kill_instance(self, provider_id: str) -> None:
        """Pull the plug without changing what onepane wants: what a crash looks like."""
        with self._libvirt_errors():
            self._domain(provider_id).destroy()

    def console_output(self, provider_id: str, max_bytes: int = 65536) -> str:
        self._domain(provider_id)
        return tail_text(self.instance_dir(provider_id) / "console.log", max_bytes)

    def live_migrate(self, provider_id: str, target: Provider, bound_s: float,
                     on_phase: Callable[[str, float, dict[str, Any]], None]) -> ObservedInstance:
        from .migration import migrate
        if not isinstance(target, VmProvider):
            raise InvalidInput(f"{target.location} is not a vm location; a running VM moves only "
                               "to another vm location", field="to")
        return migrate(self, target, provider_id, bound_s, on_phase)

    # ---- catalog -------------------------------------------------------------------------

    def list_images(self) -> list[ObservedImage]:
        return copy.stored_disks(self.images_dir, self.disk_formats, bootable=True)

    def list_sizes(self) -> list[ObservedSize]:
        return [ObservedSize(provider_id=k, cpu=c, memory_mb=m) for k, (c, m) in SIZES.items()]

    def import_disk(self, image_id: str, name: str, path: Path, fmt: str, sha256: str,
                    progress: Callable[[float], None]) -> str:
        return copy.into_store(self.images_dir, image_id, path, fmt, sha256, progress)

    def delete_disk(self, provider_image_id: str) -> None:
        """Refused while a VM here was made from it: its disk is an overlay on this file."""
        self.refuse_in_use(provider_image_id)
        copy.remove_from_store(self.images_dir, provider_image_id)

    # ---- networks ------------------------------------------------------------------------

    def list_networks(self) -> list[ObservedNetwork]:
        return [ObservedNetwork(provider_id="guest", name="guest",
                                cidr=str(guestnet.GUEST_NET))]

    # ---- internals -----------------------------------------------------------------------

    def _define_xml(self, spec: InstanceSpec, base: Path, d: Path) -> str:
        root = d / "disk0.qcow2"
        _qemu_img("create", "-q", "-f", "qcow2", "-F", base.suffix[1:], "-b", str(base), str(root))
        disks = [Disk(root)]
        adopted: set[int] = set()
        if key := spec.tags.get(DATA_TAG):
            self.kept.remember(d, key)
            adopted = self.kept.adopt(d, key, len(spec.disks))
        for n, size in enumerate(spec.disks, start=1):
            extra = d / f"disk{n}.qcow2"
            if n not in adopted:  # a kept disk keeps its own size
                _qemu_img("create", "-q", "-f", "qcow2", str(extra), str(size))
            disks.append(Disk(extra, target=DISK_TARGETS[n]))
        files = {}
        for name, data in guest_files(spec).items():
            (d / name).write_bytes(data)
            files[FW_FILES[name]] = d / name
        return guest_domain(spec, self.addresses.allocate(spec.onepane_id), disks, files,
                            d / "console.log", self.options.accel, isolated=True)

    def _start(self, dom: Any) -> None:
        meta = self._meta(dom) or {}
        with self._libvirt_errors():
            dom.create()
        if meta.get("address"):
            guestnet.route_to(meta["address"], self.net)

    def _forget(self, instance_id: str) -> None:
        address = self.addresses.get(instance_id)
        if address:
            guestnet.unroute(address, self.net)
            self.addresses.release(instance_id)
        shutil.rmtree(self.instance_dir(instance_id), ignore_errors=True)

    def _domains(self) -> list[Any]:
        with self._libvirt_errors():
            return list(self.connection().listAllDomains())

    def _find(self, instance_id: str) -> Any | None:
        return find_domain(self.connection(), instance_id)

    def _domain(self, instance_id: str) -> Any:
        dom = self._find(instance_id)
        if dom is None:
            raise NotFound(f"no instance {instance_id!r} at {self.location}")
        return dom

    def _meta(self, dom: Any) -> dict[str, Any] | None:
        with self._libvirt_errors():
            return read_metadata(dom.XMLDesc(0))

    def _observed(self, dom: Any) -> ObservedInstance:
        obs = self._observe(dom)
        if obs is None:
            raise PermanentProviderError(f"domain {dom.name()} has no onepane metadata")
        return obs

    def _observe(self, dom: Any) -> ObservedInstance | None:
        with self._libvirt_errors():
            return observe_domain(dom, damaged=self._damaged)

    def problems(self) -> list[str]:
        return [f"instance {name}: {why}" for name, why in sorted(self._damaged.items())]

    def _image_path(self, image: str) -> Path:
        path = self.images_dir / image
        if "/" in image or image.startswith(".") or not path.is_file():
            names = ", ".join(i.provider_id for i in self.list_images()) or "none"
            raise InvalidInput(f"unknown image {image!r} at {self.location}; available: {names} "
                               "(replicate a catalog image here first)", field="image")
        return path



def find_domain(conn: Any, name: str) -> Any | None:
    lv = _libvirt()
    try:
        return conn.lookupByName(name)
    except lv.libvirtError as exc:
        if exc.get_error_code() == lv.VIR_ERR_NO_DOMAIN:
            return None
        raise translate(exc) from exc


def suspend_domain(dom: Any) -> None:
    """Pause the guest's CPUs; its memory stays where it is until resume."""
    with libvirt_errors():
        if not dom.isActive():
            raise Conflict(f"instance {dom.name()} is not running; cannot suspend it",
                           field="state")
        if dom.state()[0] != _libvirt().VIR_DOMAIN_PAUSED:
            dom.suspend()


def resume_domain(dom: Any) -> None:
    with libvirt_errors():
        if dom.isActive() and dom.state()[0] == _libvirt().VIR_DOMAIN_PAUSED:
            dom.resume()


KEEP_STOP_S = 10.0  # a replica that keeps its data gets this long to power off cleanly


def stop_domain(dom: Any, timeout: float) -> None:
    """ACPI power button first; a guest that ignores it is stopped hard after `timeout`."""
    lv = _libvirt()
    if not dom.isActive():
        return
    if dom.state()[0] == lv.VIR_DOMAIN_PAUSED:
        dom.resume()  # a suspended guest cannot hear the power button
    with contextlib.suppress(lv.libvirtError):
        dom.shutdown()
    deadline = time.monotonic() + timeout
    while dom.isActive() and time.monotonic() < deadline:
        time.sleep(0.1)
    if dom.isActive():
        dom.destroy()


def observe_domain(dom: Any, extra_tags: dict[str, str] | None = None,
                   damaged: dict[str, str] | None = None) -> ObservedInstance | None:
    """What onepane shows of a domain it made (None for one it did not make); a domain
    whose metadata is damaged is shown with what libvirt itself says, and named in
    `damaged` (domain -> what is wrong) for the location's status."""
    lv = _libvirt()
    meta = read_metadata(dom.XMLDesc(0))
    if meta is None:
        return None
    if damaged is not None and meta.get("damaged"):
        damaged[dom.name()] = meta["damaged"]
    state, reason = dom.state()
    # paused by a suspend; paused to move (a live migration's last step) is still running
    user_paused = state == lv.VIR_DOMAIN_PAUSED and reason == lv.VIR_DOMAIN_PAUSED_USER
    states = {lv.VIR_DOMAIN_RUNNING: InstanceState.running,
              lv.VIR_DOMAIN_BLOCKED: InstanceState.running,
              lv.VIR_DOMAIN_PAUSED: InstanceState.suspended if user_paused
              else InstanceState.running,
              lv.VIR_DOMAIN_SHUTDOWN: InstanceState.running,
              lv.VIR_DOMAIN_SHUTOFF: InstanceState.stopped,
              lv.VIR_DOMAIN_PMSUSPENDED: InstanceState.stopped,
              lv.VIR_DOMAIN_CRASHED: InstanceState.error}
    return ObservedInstance(provider_id=dom.name(), name=meta.get("name", dom.name()),
                            # the source's copy of a finished live move, not yet removed
                            # (onepane died before it recorded the move): "stopped" would
                            # invite a failure policy to start it while the guest runs at the
                            # destination — two running copies of one VM
                            state=InstanceState.unknown if moved_away(state, reason)
                            else states.get(state, InstanceState.unknown),
                            image=meta.get("image", ""), size=meta.get("size", ""),
                            addresses=[meta["address"]] if meta.get("address") else [],
                            ports={"app": APP_PORT}, tags={**(meta.get("tags") or {}),
                                                           **(extra_tags or {})},
                            onepane_id=meta.get("id"))


def resize_stopped(conn: Any, dom: Any, size: str,
                   room: Callable[[int, int], None] = lambda _cpus, _mb: None) -> None:
    """Define the stopped domain `dom` again with `size`'s vCPUs and memory (`room`, given
    them, raises when they do not fit where it is)."""
    if size not in SIZES:
        raise InvalidInput(f"unknown size {size!r}; this location offers {', '.join(SIZES)}",
                           field="size")
    if dom.isActive():
        raise Conflict(f"instance {dom.name()} is running; stop it to resize it", field="state")
    cpus, memory = SIZES[size]
    room(cpus, memory)
    conn.defineXML(resized_xml(dom.XMLDesc(_libvirt().VIR_DOMAIN_XML_INACTIVE), cpus, memory,
                               size))


def moved_away(state: int, reason: int) -> bool:
    """A domain that libvirt shut off because a live migration moved its guest to another
    host: what is left of it here must never be started again (the guest runs there)."""
    lv = _libvirt()
    return bool(state == lv.VIR_DOMAIN_SHUTOFF and reason == lv.VIR_DOMAIN_SHUTOFF_MIGRATED)


def refuse_moved_away(dom: Any) -> None:
    """Conflict, naming why, when `dom` is what a finished live move left at its source."""
    if moved_away(*dom.state()):
        raise Conflict(f"{dom.name()} was moved live to another host; this is the copy it left "
                       "behind (removed once the move is recorded), not one to start",
                       field="instance")


FW_FILES = {"ovf-env.xml": "opt/onepane/ovf-env", "authorized_keys": "opt/onepane/ssh-keys"}


def guest_files(spec: InstanceSpec) -> dict[str, bytes]:
    """The small files a guest reads from its firmware config (its OVF environment, its SSH
    keys), by file name; only those the spec has."""
    files = {"ovf-env.xml": spec.user_data.encode() if spec.user_data else b"",
             "authorized_keys": "".join(k.strip() + "\n" for k in spec.ssh_keys).encode()}
    return {name: data for name, data in files.items() if data}


def guest_domain(spec: InstanceSpec, address: str, disks: list[Disk], files: dict[str, Path],
                 console_log: Path, accel: str, isolated: bool = False) -> str:
    """The domain XML of a new guest: its NICs on the guest bridge (MACs from its address;
    `isolated` ports where the location routes between its guests), its address handed in
    through the firmware, and onepane's metadata, its record."""
    cpus, memory = SIZES[spec.size]
    nics = [Nic(guestnet.mac_for(address), guestnet.BRIDGE, isolated)]
    nics += [Nic(_extra_mac(address, n), guestnet.BRIDGE, isolated)
             for n in range(1, spec.nics)]
    meta = {"id": spec.onepane_id, "name": spec.name, "image": spec.image, "size": spec.size,
            "tags": spec.tags, "address": address}
    return domain_xml(DomainSpec(
        name=spec.onepane_id, vcpus=cpus, memory_mb=memory, disks=disks, nics=nics,
        console_log=console_log, accel=accel,
        firmware_config={"opt/onepane/net": f"{address}/{guestnet.GUEST_NET.prefixlen} "
                                            f"{guestnet.GATEWAY}"},
        firmware_files=files, metadata=meta))


def _extra_mac(address: str, n: int) -> str:
    """The n-th extra NIC's MAC: the guest's MAC with the second octet counting up."""
    return f"52:{0x54 + n:02x}" + guestnet.mac_for(address)[5:]

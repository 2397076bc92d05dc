"""The narrow interface every driver implements, and the capabilities it declares.

Drivers are synchronous on purpose: Libcloud is blocking, process management is blocking, and the
caller (providers.registry) runs every call in a thread pool owned by that location, so one slow
cloud fills only its own pool and never stalls the others.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, NoReturn

from ..errors import Conflict, InvalidInput, Unsupported
from ..model import InstanceState

# A container image archive (docker save; an OCI layout with Docker's manifest added): the one
# format a container location takes, and one no other location does
CONTAINER_FORMAT = "docker-archive"


DATA_TAG = "onepane:data"  # a replica's data-disk key, <deployment>.<slot> (vm/kept.py)


class Feature(StrEnum):
    """What a provider may or may not be able to do. The values read as verbs in messages."""

    volumes = "volumes"
    networks = "networks"
    stop_start = "stop_start"
    reboot = "reboot"
    app_images = "image_import"  # app images (tar.gz) uploaded to a process data center
    disk_images = "disk_images"  # VM disk images from the catalog, stored there
    boot_images = "boot_images"  # an instance boots from such a disk image
    attach_network = "attach_network"  # an existing instance joins (or leaves) a network
    suspend = "suspend"  # an instance pauses with its memory kept, and resumes
    snapshots = "snapshots"  # point-in-time copies of volumes, and volumes made from them
    resize = "resize"  # a stopped instance takes another size
    capture_image = "capture_image"  # an instance's disk becomes an image
    firewall = "firewall"  # security groups' ingress rules are enforced
    user_data = "user_data"  # an OVF environment / user data handed to the instance
    cut = "cut"  # can be cut off from the network for drills
    console = "console"  # an instance's console (or process) output can be read
    live_migration = "live_migration"  # a running instance moves to another location of its kind
    idempotent_create = "idempotent_create"  # a retried create finds the first one
    addresses = "addresses"  # elastic addresses are routed to an instance here
    keep_data = "keep_data"  # a replica's data disks outlive it, for its replacement


VERBS = {
    Feature.volumes: "have volumes", Feature.networks: "create networks",
    Feature.stop_start: "start or stop instances", Feature.reboot: "reboot instances",
    Feature.app_images: "import app images", Feature.disk_images: "take disk images",
    Feature.boot_images: "boot disk images",
    Feature.attach_network: "connect an existing instance to a network",
    Feature.suspend: "suspend instances (keeping their memory)",
    Feature.snapshots: "snapshot volumes",
    Feature.resize: "resize instances",
    Feature.capture_image: "make an image of an instance's disk",
    Feature.firewall: "enforce security groups",
    Feature.user_data: "pass user data (an image's OVF properties) to an instance",
    Feature.cut: "be cut off", Feature.console: "show an instance's console",
    Feature.live_migration: "move a running instance",
    Feature.keep_data: "keep a replica's data disks for the replica that replaces it",
    Feature.idempotent_create: "recognise a retried create",
    Feature.addresses: "route elastic addresses to its instances",
}


@dataclass(frozen=True)
class Capabilities:
    """What a location cannot do, each with the reason a user reads ("dc-a cannot have
    volumes: ..."): checked once, before any work starts, instead of failing late."""

    missing: Mapping[Feature, str] = field(default_factory=dict)

    @classmethod
    def all_but(cls, **missing: str) -> Capabilities:
        return cls({Feature[k]: why for k, why in missing.items()})

    def supports(self, feature: Feature) -> bool:
        return feature not in self.missing

    def require(self, feature: Feature, location: str, field: str = "location") -> None:
        if feature in self.missing:
            raise Unsupported(f"location {location} cannot {VERBS[feature]}: "
                              f"{self.missing[feature]}", field=field)

    def as_dict(self) -> dict[str, bool]:
        return {f.value: f not in self.missing for f in Feature}

    def reasons(self) -> dict[str, str]:
        return {f.value: why for f, why in self.missing.items()}


@dataclass
class InstanceSpec:
    """What to create. `onepane_id` doubles as the idempotency token: a retry finds it again."""

    onepane_id: str
    name: str
    image: str
    size: str
    tags: dict[str, str] = field(default_factory=dict)
    network: str | None = None
    user_data: str | None = None  # e.g. a catalog image's OVF environment document
    disks: list[int] = field(default_factory=list)  # extra blank disks (bytes) after the boot disk
    nics: int = 1  # network interfaces, where the provider makes them (VMs)
    ssh_keys: list[str] = field(default_factory=list)  # OpenSSH public keys to let in
    security_groups: list[str] = field(default_factory=list)  # onepane group ids it is in
    # False only when no earlier attempt of this create can have reached the provider (a job's
    # first attempt): a provider whose search for one costs a call may skip it then
    retry: bool = True


@dataclass
class ObservedInstance:
    provider_id: str
    name: str
    state: InstanceState
    image: str = ""
    size: str = ""
    addresses: list[str] = field(default_factory=list)
    ports: dict[str, int] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    onepane_id: str | None = None


@dataclass
class Changes:
    """What changed at a location since a token: present instances as they are now, the
    provider ids of those that are gone, and the token to ask from next time."""

    changed: list[ObservedInstance]
    vanished: list[str]
    token: str


@dataclass
class ObservedVolume:
    provider_id: str
    name: str
    size_gb: int
    state: str
    attached_to: str | None = None  # provider id of the instance
    device: str | None = None


@dataclass
class ObservedNetwork:
    provider_id: str
    name: str
    cidr: str | None
    state: str = "available"


@dataclass
class ObservedImage:
    provider_id: str
    name: str
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class ObservedSize:
    provider_id: str
    cpu: float | None = None
    memory_mb: int | None = None
    disk_gb: int | None = None


class Provider(ABC):
    """One location's driver. Every method returns or raises a typed ProviderError.

    The verbs a provider *may* offer are all declared here and raise one `Unsupported` error,
    carrying the reason from `capabilities`, unless the provider overrides them."""

    capabilities = Capabilities()
    disk_formats: tuple[str, ...] = ()  # the disk formats it stores or boots, preferred first

    def __init__(self, location: str) -> None:
        self.location = location
        # What setup() found a crash had left (a half-made instance, an orphan process) and
        # what it did about it; the locations service turns each into an event.
        self.recovered: list[str] = []

    def setup(self) -> None:
        """Prepare the location (directories, namespaces); idempotent."""

    def problems(self) -> list[str]:
        """What is wrong at this location although it answers (a damaged record): the sync
        shows the location as degraded with these until they are gone."""
        return []

    def check(self) -> None:
        """Raise ProviderAuthError/ProviderError if the location cannot be used."""

    def check_source(self) -> str | None:
        """The address onepane's health checks of this location's instances leave from, where
        the location's firewall lets that address (and no other of onepane's host) through:
        an application tier that refuses the outside is still checked. None: any."""
        return None

    def front_door(self) -> tuple[str, list[str]] | None:
        """Where a deployment's front door can run inside this location: the address it
        listens on and the argv prefix that starts a process there. None: nowhere (a location
        that shares onepane's own address, or a cloud onepane runs nothing in)."""
        return None

    def close(self) -> None:
        """Release what setup() took that must not outlive onepane (never the instances)."""

    def teardown(self) -> None:
        """Remove the location and everything in it (tests, drills, `locations remove --force`)."""

    def validate(self, image: str, size: str) -> None:
        """Reject an instance request before anything is recorded: bad input leaves no trace."""
        sizes = [s.provider_id for s in self.list_sizes()]
        if size not in sizes:
            raise InvalidInput(f"unknown size {size!r} at {self.location}; available: "
                               f"{', '.join(sizes[:20])}", field="size")

    def require(self, feature: Feature, field: str = "location") -> None:
        self.capabilities.require(feature, self.location, field)

    def _unsupported(self, feature: Feature, field: str = "location") -> NoReturn:
        self.require(feature, field)
        raise Unsupported(f"location {self.location} cannot {VERBS[feature]}", field=field)

    # instances
    @abstractmethod
    def list_instances(self) -> list[ObservedInstance]: ...

    def changes_since(self, token: str | None) -> Changes | None:
        """A change feed, where the location has one: what changed since `token` (None: no
        changes, only a token for "now", taken before a full listing). None when it has no
        feed or no longer knows that token; the sync then lists everything."""
        return None

    @abstractmethod
    def create_instance(self, spec: InstanceSpec) -> ObservedInstance: ...

    @abstractmethod
    def destroy_instance(self, provider_id: str) -> None: ...

    def start_instance(self, provider_id: str) -> None:
        self._unsupported(Feature.stop_start, "action")

    def stop_instance(self, provider_id: str) -> None:
        self._unsupported(Feature.stop_start, "action")

    def reboot_instance(self, provider_id: str) -> None:
        self._unsupported(Feature.reboot, "action")

    def create_snapshot(self, volume_id: str, snapshot_id: str) -> str:
        """A point-in-time copy of a volume; returns the provider's id for it."""
        self._unsupported(Feature.snapshots, "volume")

    def delete_snapshot(self, provider_snapshot_id: str) -> None:
        self._unsupported(Feature.snapshots, "snapshot")

    def volume_from_snapshot(self, provider_snapshot_id: str, name: str,
                             size_gb: int) -> ObservedVolume:
        self._unsupported(Feature.snapshots, "snapshot")

    def snapshot_boot_disk(self, provider_id: str, snapshot_id: str) -> str:
        """A point-in-time copy of an instance's boot disk (EC2's snapshot of a root volume),
        kept like a volume's snapshot (volume_from_snapshot and delete_snapshot take it);
        returns the provider's id for it."""
        self._unsupported(Feature.snapshots, "volume")

    def export_disk(self, provider_id: str, dest: Path) -> str:
        """Write the instance's boot disk, whole (no backing file), to `dest`; returns its
        format. Crash-consistent while it runs: stop it first for a clean image."""
        self._unsupported(Feature.capture_image, "instance")

    def enforcement_epoch(self) -> str:
        """Changes when what `enforce` handed over must be handed over again although the
        rules did not change (a host joined the location, or came back): the enforcer calls
        `enforce` only when its picture, which includes this, changes."""
        return ""

    def enforce(self, ingress: dict[str, list[dict[str, Any]]],
                groups: dict[str, dict[str, list[dict[str, Any]]]],
                egress: dict[str, list[dict[str, Any]]] | None = None) -> None:
        """Filter inbound traffic: for each instance (provider id) in a group, only what one
        of its rules allows (protocol, port range, source CIDRs) reaches it; instances not
        named are not filtered. `egress` likewise for what an instance opens (protocol, port
        range, destination CIDRs); an instance not named there may open anything. `groups`
        has each group's own rules ({"ingress": [...], "egress": [...]}), for providers whose
        firewall has groups of its own (a cloud's). Called with the whole picture each time."""
        self._unsupported(Feature.firewall, "security_group")

    def route_addresses(self, wanted: dict[str, str]) -> None:
        """Elastic addresses: each address in `wanted` reaches the instance (provider id) it
        names, on every TCP port (the instance's one service port answers), from the machine
        and what routes through it; addresses this location routed before and `wanted` no
        longer names stop reaching it. Called with the whole picture each time."""
        self._unsupported(Feature.addresses, "address")

    def resize_instance(self, provider_id: str, size: str) -> None:
        """A stopped instance takes `size` at its next start."""
        self._unsupported(Feature.resize, "size")

    def suspend_instance(self, provider_id: str) -> None:
        self._unsupported(Feature.suspend, "action")

    def resume_instance(self, provider_id: str) -> None:
        self._unsupported(Feature.suspend, "action")

    def console_output(self, provider_id: str, max_bytes: int = 65536) -> str:
        """The last `max_bytes` of what the instance wrote to its console."""
        self._unsupported(Feature.console, "instance")

    def live_migrate(self, provider_id: str, target: Provider, bound_s: float,
                     on_phase: Callable[[str, float, dict[str, Any]], None]) -> ObservedInstance:
        """Move a running instance to `target` (a location of the same kind) without stopping
        it. `on_phase(name, seconds, details)` reports each phase as it ends. On failure the
        instance keeps running here."""
        self._unsupported(Feature.live_migration, "to")

    # catalog
    @abstractmethod
    def list_images(self) -> list[ObservedImage]: ...

    @abstractmethod
    def list_sizes(self) -> list[ObservedSize]: ...

    def import_image(self, source: Path) -> ObservedImage:
        """Install an app image (a tar.gz with onepane-app.json)."""
        self._unsupported(Feature.app_images)

    def usage(self, provider_id: str) -> tuple[float, int] | None:
        """CPU percent (100 = one core) and resident memory in bytes of a running instance,
        where the provider can see them (local processes); None elsewhere."""
        return None

    # volumes
    def list_volumes(self) -> list[ObservedVolume]:
        return []

    def create_volume(self, name: str, size_gb: int) -> ObservedVolume:
        self._unsupported(Feature.volumes)

    def attach_volume(self, volume_id: str, instance_id: str, device: str) -> None:
        self._unsupported(Feature.volumes)

    def detach_volume(self, volume_id: str) -> None:
        self._unsupported(Feature.volumes)

    def delete_volume(self, volume_id: str) -> None:
        self._unsupported(Feature.volumes)

    # disk images from the catalog
    def import_disk(self, image_id: str, name: str, path: Path, fmt: str, sha256: str,
                    progress: Callable[[float], None]) -> str:
        """Copy a disk here, verify it arrived intact, register it; return the provider's id.
        Idempotent: an image already there with the same digest is not sent again."""
        self._unsupported(Feature.disk_images)

    def delete_disk(self, provider_image_id: str) -> None:
        """Remove a disk import_disk put here (the catalog image is being deleted). Refused
        (Conflict) while an instance here was made from it: a VM's disk may be an overlay on
        that very file, and one image per catalog id is all a location keeps. NotFound when
        it is not here; for idempotence, the catalog treats that as done."""
        self._unsupported(Feature.disk_images)

    def forget_data(self, deployment: str) -> list[str]:
        """Drop the data disks kept for `deployment`'s replicas (tag `onepane:data`,
        `<deployment>.<slot>`: see vm/kept.py); the keys dropped. Called once the deployment
        is deleted and its instances are gone."""
        self._unsupported(Feature.keep_data)

    def refuse_in_use(self, provider_image_id: str) -> None:
        users = sorted(i.name or i.provider_id for i in self.list_instances()
                       if i.image == provider_image_id)
        if users:
            raise Conflict(f"image {provider_image_id} at {self.location} is in use by "
                           f"{', '.join(users)}: delete those instances first", field="image")

    # networks
    def list_networks(self) -> list[ObservedNetwork]:
        return []

    def create_network(self, name: str, cidr: str) -> ObservedNetwork:
        self._unsupported(Feature.networks)

    def delete_network(self, provider_id: str) -> None:
        """Deleting one that is gone succeeds."""
        self._unsupported(Feature.networks, "network")

    # failure drills
    def cut(self, mode: str = "silent") -> None:
        """Make the location unreachable: `silent` (packets vanish) or `down` (link down)."""
        self._unsupported(Feature.cut)

    def restore(self) -> None:
        self._unsupported(Feature.cut)

    def is_cut(self) -> bool:
        return False

    def kill_instance(self, provider_id: str) -> None:
        """Kill without changing the desired state: what a crash looks like (drills, tests)."""
        self._unsupported(Feature.cut, "instance")


def tail_text(path: Path, max_bytes: int) -> str:
    """The last `max_bytes` of a console log a provider keeps as a file ("" before there is
    one), decoded leniently: a console is whatever the guest or process wrote."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, path.stat().st_size - max_bytes))
            return f.read().decode(errors="replace")
    except FileNotFoundError:
        return ""

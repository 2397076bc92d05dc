"""The narrow interface every driver implements, and the capabilities it declares.

Drivers are synchronous on purpose: Libcloud is blocking, process management is blocking, and the
caller (providers.registry) runs every call in a thread pool owned by that location, so one slow
cloud fills only its own pool and never stalls the others.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InvalidInput, Unsupported
from ..model import InstanceState


@dataclass(frozen=True)
class Capabilities:
    volumes: bool = False
    networks: bool = False
    stop_start: bool = False
    reboot: bool = False
    image_import: bool = False
    cut: bool = False  # can be cut off from the network for drills (netns)
    disk_images: bool = False  # can store (and register) VM disk images from the catalog

    def as_dict(self) -> dict[str, bool]:
        return asdict(self)


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
    """One location's driver. Every method returns or raises a typed ProviderError."""

    capabilities = Capabilities()
    disk_formats: tuple[str, ...] = ()  # the disk formats it stores or boots, preferred first

    def __init__(self, location: str) -> None:
        self.location = location

    def setup(self) -> None:
        """Prepare the location (directories, namespaces); idempotent."""

    def check(self) -> None:
        """Raise ProviderAuthError/ProviderError if the location cannot be used."""

    def close(self) -> None:
        """Release what setup() took that must not outlive onepane (never the instances)."""

    def validate(self, image: str, size: str) -> None:
        """Reject an instance request before anything is recorded: bad input leaves no trace."""
        sizes = [s.provider_id for s in self.list_sizes()]
        if size not in sizes:
            raise InvalidInput(f"unknown size {size!r} at {self.location}; available: "
                               f"{', '.join(sizes[:20])}", field="size")

    # instances
    @abstractmethod
    def list_instances(self) -> list[ObservedInstance]: ...

    @abstractmethod
    def create_instance(self, spec: InstanceSpec) -> ObservedInstance: ...

    @abstractmethod
    def destroy_instance(self, provider_id: str) -> None: ...

    def start_instance(self, provider_id: str) -> None:
        raise Unsupported(f"location {self.location} cannot start/stop instances", field="action")

    def stop_instance(self, provider_id: str) -> None:
        raise Unsupported(f"location {self.location} cannot start/stop instances", field="action")

    def reboot_instance(self, provider_id: str) -> None:
        raise Unsupported(f"location {self.location} cannot reboot instances", field="action")

    # catalog
    @abstractmethod
    def list_images(self) -> list[ObservedImage]: ...

    @abstractmethod
    def list_sizes(self) -> list[ObservedSize]: ...

    def usage(self, provider_id: str) -> tuple[float, int] | None:
        """CPU percent (100 = one core) and resident memory in bytes of a running instance,
        where the provider can see them (local processes); None elsewhere."""
        return None

    # volumes
    def list_volumes(self) -> list[ObservedVolume]:
        return []

    def create_volume(self, name: str, size_gb: int) -> ObservedVolume:
        raise Unsupported(f"location {self.location} has no volumes", field="location")

    def attach_volume(self, volume_id: str, instance_id: str, device: str) -> None:
        raise Unsupported(f"location {self.location} has no volumes", field="location")

    def detach_volume(self, volume_id: str) -> None:
        raise Unsupported(f"location {self.location} has no volumes", field="location")

    def delete_volume(self, volume_id: str) -> None:
        raise Unsupported(f"location {self.location} has no volumes", field="location")

    # disk images from the catalog
    def import_disk(self, image_id: str, name: str, path: Path, fmt: str, sha256: str,
                    progress: Callable[[float], None]) -> str:
        """Copy a disk here, verify it arrived intact, register it; return the provider's id.
        Idempotent: an image already there with the same digest is not sent again."""
        raise Unsupported(f"location {self.location} cannot import disk images", field="location")

    # networks
    def list_networks(self) -> list[ObservedNetwork]:
        return []

    def create_network(self, name: str, cidr: str) -> ObservedNetwork:
        raise Unsupported(f"location {self.location} cannot create networks", field="location")

"""Any Apache Libcloud compute driver as a onepane location.

The driver is picked by Libcloud's provider name (`gce`, `openstack`, `azure_arm`, `dummy`,
...); EC2 and EC2-compatible endpoints (`ec2`, `ec2-compat`) are ec2.Ec2Provider, this class
plus what only EC2's API offers. Credentials come in as `key`/`secret`; a driver gets Libcloud's
connection options (`host`, `port`, ...) and its own keywords only from `options.driver_options`,
all typed and checked (model._OPTION_TYPES): a misspelt option is refused, not ignored.
"""

from __future__ import annotations

import re
import socket
import threading
from typing import Any

import requests
from libcloud.common.exceptions import BaseHTTPError, RateLimitReachedError
from libcloud.common.types import InvalidCredsError, LibcloudError, MalformedResponseError
from libcloud.compute.base import (
    Node,
    NodeAuthSSHKey,
    NodeDriver,
    NodeImage,
    NodeLocation,
    NodeSize,
    StorageVolume,
)
from libcloud.compute.providers import get_driver
from libcloud.compute.types import NodeState

from ..errors import (
    InvalidInput,
    NotFound,
    OnepaneError,
    PermanentProviderError,
    ProviderAuthError,
    TransientProviderError,
    Unsupported,
)
from ..model import InstanceState
from .base import (
    Capabilities,
    Feature,
    InstanceSpec,
    ObservedImage,
    ObservedInstance,
    ObservedNetwork,
    ObservedSize,
    ObservedVolume,
    Provider,
)
from .ec2_compat import CompatEC2NodeDriver

ONEPANE_TAG = "onepane:id"
# Options onepane reads itself rather than handing to the driver.
# Libcloud's connection options, given to every driver; a driver's own keywords come only from
# options.driver_options (model._OPTION_TYPES lists every option a cloud location takes).
CONNECTION_OPTIONS = ("host", "port", "secure", "path", "timeout")
_STATES = {
    NodeState.RUNNING: InstanceState.running,
    NodeState.STOPPED: InstanceState.stopped,
    NodeState.SUSPENDED: InstanceState.stopped,
    NodeState.PAUSED: InstanceState.stopped,
    NodeState.PENDING: InstanceState.pending,
    NodeState.STARTING: InstanceState.pending,
    NodeState.REBOOTING: InstanceState.rebooting,
    NodeState.STOPPING: InstanceState.stopped,
    NodeState.ERROR: InstanceState.error,
}
_STATUS_5XX = re.compile(r"(status[_ ]?code\W{0,3}|HTTP\W?)5\d\d\b", re.IGNORECASE)
_TRANSIENT_CODES = ("RequestLimitExceeded", "Throttling", "InternalError", "ServiceUnavailable",
                    "Unavailable", "InsufficientInstanceCapacity")


def make_driver(driver: str, region: str, credentials: dict[str, str],
                options: dict[str, Any]) -> NodeDriver:
    kwargs = {k: options[k] for k in CONNECTION_OPTIONS if k in options}
    kwargs.update(options.get("driver_options") or {})
    key, secret = credentials.get("key"), credentials.get("secret")
    try:
        if driver == "ec2-compat":
            return CompatEC2NodeDriver(key or "", secret, region=region, **kwargs)
        cls = get_driver(driver)
    except Exception as exc:  # AttributeError for unknown names, Exception for retired ones
        raise InvalidInput(f"unknown Libcloud driver {driver!r}: {exc}", field="driver") from exc
    if driver == "dummy":
        return cls(key or "0")
    if region and region != "local":
        kwargs.setdefault("region", region)
    try:
        return cls(key, secret, **kwargs) if secret is not None else cls(key, **kwargs)
    except TypeError as exc:
        raise InvalidInput(f"driver {driver!r} rejected its options: {exc}", field="options") from exc


def translate(exc: Exception) -> OnepaneError:
    """Sort Libcloud's many exception types into transient and permanent."""
    if isinstance(exc, OnepaneError):
        return exc
    if isinstance(exc, InvalidCredsError):
        return ProviderAuthError(f"credentials rejected: {exc}")
    if isinstance(exc, RateLimitReachedError):
        return TransientProviderError(f"throttled: {exc}")
    if isinstance(exc, BaseHTTPError):
        code = getattr(exc, "code", 0) or 0
        if code >= 500 or code == 429:
            return TransientProviderError(f"HTTP {code}: {exc}")
        return PermanentProviderError(f"HTTP {code}: {exc}")
    if isinstance(exc, (socket.timeout, TimeoutError, ConnectionError, requests.ConnectionError,
                        requests.Timeout)):
        return TransientProviderError(f"cannot reach the provider: {exc}")
    if isinstance(exc, MalformedResponseError):
        return TransientProviderError(f"malformed reply: {exc}")
    text = str(exc)
    # Libcloud's storage drivers (S3 among them) report a 5xx as a LibcloudError whose text
    # carries the status ("Unexpected status code, status_code=503"): as transient as any 5xx.
    if any(code in text for code in _TRANSIENT_CODES) or _STATUS_5XX.search(text):
        return TransientProviderError(text)
    if isinstance(exc, (LibcloudError, Exception)):
        return PermanentProviderError(text or type(exc).__name__)
    return PermanentProviderError(repr(exc))



def cloud_capabilities(name: str, d: type[NodeDriver]) -> Capabilities:
    """What a Libcloud driver cannot do, read from which of NodeDriver's verbs it overrides."""
    missing: dict[Feature, str] = {
        Feature.app_images: "app images run in process data centers; clouds boot disk images",
        Feature.cut: "a cloud cannot be cut off from this machine; drills use netns or vm "
                     "locations",
        Feature.live_migration: "a cloud moves no running server to another provider",
        Feature.console: "onepane does not read cloud consoles yet",
    }
    if d.create_volume_snapshot is NodeDriver.create_volume_snapshot:
        missing[Feature.snapshots] = f"Libcloud's {name} driver makes no volume snapshots"
    if not hasattr(d, "ex_change_node_size"):
        missing[Feature.resize] = f"Libcloud's {name} driver cannot change a server's size"
    missing[Feature.capture_image] = ("onepane does not copy a cloud server's disk into its "
                                      "catalog yet")
    missing[Feature.suspend] = "onepane suspends no cloud servers (Libcloud has no common verb)"
    missing[Feature.keep_data] = ("onepane keeps no cloud server's disks for its replacement "
                                  "(keep data on the cloud's volumes)")
    missing[Feature.attach_network] = ("a cloud server's network is chosen when it is created; "
                                       "onepane does not attach interfaces later")
    if d.create_volume is NodeDriver.create_volume:
        missing[Feature.volumes] = f"Libcloud's {name} driver creates no volumes"
    if not hasattr(d, "ex_create_network"):
        missing[Feature.networks] = f"Libcloud's {name} driver creates no networks"
    if d.stop_node is NodeDriver.stop_node and not hasattr(d, "ex_stop_node"):
        missing[Feature.stop_start] = f"Libcloud's {name} driver cannot stop a server"
    if d.reboot_node is NodeDriver.reboot_node:
        missing[Feature.reboot] = f"Libcloud's {name} driver cannot reboot a server"
    # EC2 can (ec2.Ec2Provider takes these out again)
    missing[Feature.firewall] = ("onepane passes its security groups to EC2's API only (other "
                                 "clouds' group verbs differ)")
    missing[Feature.addresses] = ("a cloud hands out its own public addresses (EC2's elastic "
                                  "IPs); onepane does not route its own to a cloud server")
    missing[Feature.disk_images] = missing[Feature.boot_images] = (
        "onepane registers disk images only through EC2's S3 + RegisterImage path")
    missing[Feature.idempotent_create] = (
        f"Libcloud's {name} driver keeps no tag or client token by which a retried create "
        "finds the server an earlier attempt made")
    if not name.startswith("openstack"):
        missing[Feature.user_data] = f"Libcloud's {name} driver takes no user data"
    return Capabilities(missing)


class CloudProvider(Provider):
    def __init__(self, location: str, driver: str, region: str, credentials: dict[str, str],
                 options: dict[str, Any] | None = None) -> None:
        super().__init__(location)
        self.options = options or {}
        self.driver_name = driver
        self.driver = make_driver(driver, region, credentials, self.options)
        self._sizes: dict[str, NodeSize] | None = None
        self.credentials = credentials
        self.region = region
        self._lock = threading.Lock()
        d = type(self.driver)
        self.capabilities = cloud_capabilities(driver, d)

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except NotImplementedError as exc:
            raise PermanentProviderError(f"{self.driver_name} does not support this: {exc}") from exc
        except Exception as exc:
            raise translate(exc) from exc

    def check(self) -> None:
        self._call(self.driver.list_nodes)

    # ---- instances -----------------------------------------------------------------------

    def validate(self, image: str, size: str) -> None:
        super().validate(image, size)
        if type(self.driver).get_image is NodeDriver.get_image:
            # The driver cannot look one image up: its list answers instead.
            if image not in {i.id for i in self._call(self.driver.list_images)}:
                raise InvalidInput(f"image {image!r} not found at {self.location}", field="image")
            return
        try:
            self._call(self.driver.get_image, image)
        except PermanentProviderError as exc:
            raise InvalidInput(f"image {image!r} not found at {self.location}: {exc.detail}",
                               field="image") from exc

    def list_instances(self) -> list[ObservedInstance]:
        nodes = self._call(self.driver.list_nodes)
        return [self._observe(n) for n in nodes if n.state != NodeState.TERMINATED]

    def create_instance(self, spec: InstanceSpec) -> ObservedInstance:
        if spec.retry and (earlier := self._made_by(spec.onepane_id)) is not None:
            return self._observe(earlier)
        size = self._size(spec.size)
        image = NodeImage(id=spec.image, name=spec.image, driver=self.driver)
        kwargs = self._create_options(spec)
        if spec.user_data:
            self.require(Feature.user_data, "properties")
            kwargs["ex_userdata"] = spec.user_data
        if spec.security_groups:
            self.require(Feature.firewall, "security_group")
        if spec.ssh_keys:
            if "ssh_key" not in (self.driver.features or {}).get("create_node", []):
                raise Unsupported(f"Libcloud's driver at {self.location} takes no SSH key",
                                  field="key_name")
            kwargs["auth"] = NodeAuthSSHKey(spec.ssh_keys[0])
        node = self._call(self.driver.create_node, name=spec.name, size=size, image=image, **kwargs)
        return self._observe(node)

    def _create_options(self, spec: InstanceSpec) -> dict[str, Any]:
        """What this cloud's driver takes beyond name, size and image (EC2: tags, a client
        token, a subnet)."""
        return {}

    def _tagged(self, onepane_id: str) -> dict[str, Any]:
        """list_nodes keywords that narrow the listing to onepane's server (EC2: a filter)."""
        return {}

    def _made_by(self, onepane_id: str) -> Node | None:
        """The server an earlier attempt of this create made, if any: a retry after a lost reply
        must not make a second one (EC2's client token does that too, but compatible clouds
        and moto ignore it). Where the cloud filters by tag (_tagged), one small answer; listing
        every server made each create cost what the estate costs to list."""
        for node in self._call(self.driver.list_nodes, **self._tagged(onepane_id)):
            tags = node.extra.get("tags") or {}
            if tags.get(ONEPANE_TAG) == onepane_id and node.state != NodeState.TERMINATED:
                return node
        return None

    def start_instance(self, provider_id: str) -> None:
        self.require(Feature.stop_start, "action")
        node = self._node(provider_id)
        start = getattr(self.driver, "ex_start_node", None) or self.driver.start_node
        self._call(start, node)

    def stop_instance(self, provider_id: str) -> None:
        self.require(Feature.stop_start, "action")
        node = self._node(provider_id)
        stop = getattr(self.driver, "ex_stop_node", None) or self.driver.stop_node
        self._call(stop, node)

    def reboot_instance(self, provider_id: str) -> None:
        self.require(Feature.reboot, "action")
        self._call(self.driver.reboot_node, self._node(provider_id))

    def destroy_instance(self, provider_id: str) -> None:
        try:
            node = self._node(provider_id)
        except NotFound:
            return
        self._call(self.driver.destroy_node, node)

    # ---- catalog -------------------------------------------------------------------------

    def list_images(self) -> list[ObservedImage]:
        kwargs = {"ex_owner": self.options["image_owner"]} if "image_owner" in self.options else {}
        images = self._call(self.driver.list_images, **kwargs)
        return [ObservedImage(provider_id=i.id, name=i.name or i.id,
                              extra={k: v for k, v in (i.extra or {}).items()
                                     if isinstance(v, (str, int, float, bool))})
                for i in images]

    def list_sizes(self) -> list[ObservedSize]:
        return [ObservedSize(provider_id=s.id, memory_mb=s.ram, disk_gb=s.disk,
                             cpu=_cpus(s.extra or {}))
                for s in self._size_map().values()]

    # ---- volumes -------------------------------------------------------------------------

    def list_volumes(self) -> list[ObservedVolume]:
        return [self._observe_volume(v) for v in self._call(self.driver.list_volumes)]

    def create_volume(self, name: str, size_gb: int) -> ObservedVolume:
        self.require(Feature.volumes)
        vol = self._call(self.driver.create_volume, size_gb, name, location=self._zone())
        return self._observe_volume(vol)

    def attach_volume(self, volume_id: str, instance_id: str, device: str) -> None:
        self.require(Feature.volumes)
        self._call(self.driver.attach_volume, self._node(instance_id), self._volume(volume_id),
                   device)

    def detach_volume(self, volume_id: str) -> None:
        self.require(Feature.volumes)
        self._call(self.driver.detach_volume, self._volume(volume_id))

    def delete_volume(self, volume_id: str) -> None:
        self.require(Feature.volumes)
        try:
            vol = self._volume(volume_id)
        except NotFound:
            return
        self._call(self.driver.destroy_volume, vol)

    def resize_instance(self, provider_id: str, size: str) -> None:
        self.require(Feature.resize, "size")
        sizes = self._size_map()
        if size not in sizes:
            raise InvalidInput(f"unknown size {size!r} at {self.location}", field="size")
        self._call(self.driver.ex_change_node_size, self._node(provider_id),  # type: ignore[attr-defined]
                   sizes[size])

    def create_snapshot(self, volume_id: str, snapshot_id: str) -> str:
        self.require(Feature.snapshots, "volume")
        snap = self._call(self.driver.create_volume_snapshot, self._volume(volume_id), snapshot_id)
        return str(snap.id)

    def delete_snapshot(self, provider_snapshot_id: str) -> None:
        self.require(Feature.snapshots, "snapshot")
        for snap in self._snapshots():
            if str(snap.id) == provider_snapshot_id:
                self._call(self.driver.destroy_volume_snapshot, snap)

    def _snapshots(self) -> list[Any]:
        """Every snapshot of the account (EC2's driver lists them all; the base class only a
        volume's)."""
        return list(self._call(self.driver.list_snapshots))  # type: ignore[attr-defined]

    def volume_from_snapshot(self, provider_snapshot_id: str, name: str,
                             size_gb: int) -> ObservedVolume:
        self.require(Feature.snapshots, "snapshot")
        snap = next((s for s in self._snapshots()
                     if str(s.id) == provider_snapshot_id), None)
        if snap is None:
            raise NotFound(f"no snapshot {provider_snapshot_id!r} at {self.location}")
        vol = self._call(self.driver.create_volume, size_gb, name, location=self._zone(),
                         snapshot=snap)
        return self._observe_volume(vol)

    # ---- networks ------------------------------------------------------------------------

    def list_networks(self) -> list[ObservedNetwork]:
        lister = getattr(self.driver, "ex_list_networks", None)
        if lister is None:
            return []
        return [ObservedNetwork(provider_id=n.id, name=n.name or n.id,
                                cidr=getattr(n, "cidr_block", None))
                for n in self._call(lister)]

    def create_network(self, name: str, cidr: str) -> ObservedNetwork:
        self.require(Feature.networks)
        creator = getattr(self.driver, "ex_create_network", None)
        if creator is None:
            return super().create_network(name, cidr)
        n = self._call(creator, cidr, name=name)
        return ObservedNetwork(provider_id=n.id, name=name, cidr=getattr(n, "cidr_block", cidr))

    def delete_network(self, provider_id: str) -> None:
        self.require(Feature.networks, "network")
        deleter = getattr(self.driver, "ex_delete_network", None)
        lister = getattr(self.driver, "ex_list_networks", None)
        if deleter is None or lister is None:
            raise Unsupported(f"Libcloud's driver at {self.location} deletes no networks",
                              field="network")
        for n in self._call(lister):
            if str(n.id) == provider_id:
                self._call(deleter, n)

    # ---- internals -----------------------------------------------------------------------

    def _observe(self, node: Node) -> ObservedInstance:
        extra = node.extra or {}
        tags = {str(k): str(v) for k, v in (extra.get("tags") or {}).items()}
        image = extra.get("image_id") or (node.image.id if node.image else "")
        size = extra.get("instance_type") or (node.size.id if node.size else "")
        return ObservedInstance(
            provider_id=str(node.id), name=node.name or str(node.id),
            state=_STATES.get(node.state, InstanceState.unknown), image=str(image), size=str(size),
            addresses=[*node.public_ips, *node.private_ips], tags=tags,
            onepane_id=tags.get(ONEPANE_TAG))

    def _observe_volume(self, vol: StorageVolume) -> ObservedVolume:
        extra = vol.extra or {}
        return ObservedVolume(provider_id=str(vol.id), name=vol.name or str(vol.id),
                              size_gb=int(vol.size or 0), state=str(vol.state or "unknown").lower(),
                              attached_to=extra.get("instance_id"), device=extra.get("device"))

    def _node(self, provider_id: str) -> Node:
        for node in self._call(self.driver.list_nodes):
            if str(node.id) == provider_id and node.state != NodeState.TERMINATED:
                return node
        raise NotFound(f"no instance {provider_id!r} at {self.location}")

    def _volume(self, provider_id: str) -> StorageVolume:
        for vol in self._call(self.driver.list_volumes):
            if str(vol.id) == provider_id:
                return vol
        raise NotFound(f"no volume {provider_id!r} at {self.location}")

    def _size_map(self) -> dict[str, NodeSize]:
        with self._lock:
            if self._sizes is None:
                self._sizes = {str(s.id): s for s in self._call(self.driver.list_sizes)}
            return self._sizes

    def _size(self, size_id: str) -> NodeSize:
        sizes = self._size_map()
        if size_id not in sizes:
            sample = ", ".join(sorted(sizes)[:12])
            raise InvalidInput(f"unknown size {size_id!r} at {self.location}; e.g. {sample}",
                               field="size")
        return sizes[size_id]

    def _zone(self) -> NodeLocation | None:
        zones = self._call(self.driver.list_locations)
        wanted = self.options.get("zone")
        for z in zones:
            if wanted in (None, z.name, z.id):
                return z
        raise InvalidInput(f"zone {wanted!r} not found at {self.location}", field="options.zone")


def _cpus(extra: dict[str, Any]) -> float | None:
    """Drivers name it differently: `cpu` (most), `vcpu` as a string (EC2's price list)."""
    for key in ("cpu", "vcpu", "vcpus"):
        try:
            return float(extra[key])
        except (KeyError, TypeError, ValueError):
            continue
    return None

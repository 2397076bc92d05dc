"""Domain types shared by every layer: what the API accepts and returns, what drivers observe."""

from __future__ import annotations

import ipaddress
import itertools
import os
import re
import time
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
)

NAME_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"


def slug(value: str | None) -> str:
    """Any title (an EC2 Name tag, an OCCI title) as a name NAME_PATTERN accepts; "" if none."""
    return re.sub(r"[^a-z0-9-]+", "-", (value or "").lower()).strip("-")[:63].strip("-")
TAG_KEY_PATTERN = r"^[A-Za-z0-9_.:/=+-@]{1,128}$"


def utc_iso(when: datetime) -> str:
    """The one notation for a time on the wire and in tables: ISO 8601 in UTC with `Z`
    (what pydantic writes for the models, so hand-built documents match them)."""
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


# After the millisecond, a counter from a random start: ids one process makes never collide
# (32 random bits alone did, at a million ids in a bench), and two processes' ids collide only
# if they hit the same millisecond at the same point of their counters.
_SEQUENCE = itertools.count(int.from_bytes(os.urandom(4), "big"))


def new_id(prefix: str) -> str:
    """Time-ordered ids, so that cursor pagination by id walks in creation order."""
    return f"{prefix}-{int(time.time() * 1000):011x}{next(_SEQUENCE) & 0xFFFFFFFF:08x}"


class ProviderKind(StrEnum):
    local = "local"
    netns = "netns"
    cloud = "cloud"
    vm = "vm"
    docker = "docker"  # Docker Engine hosts reached over TCP with TLS
    sim = "sim"  # simulated, for scale benches and tests


class InstanceState(StrEnum):
    pending = "pending"  # asked for, not yet at the provider
    running = "running"
    stopped = "stopped"
    suspended = "suspended"  # paused with its memory kept (a VM location's suspend)
    rebooting = "rebooting"
    error = "error"  # the process/VM died or the provider reports a fault
    missing = "missing"  # known to onepane, gone from the provider (drift)
    unknown = "unknown"


class JobStatus(StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"


UNFINISHED = (JobStatus.queued, JobStatus.running)  # a job in either is still to run or running


MAX_TAGS, MAX_TAG_KEY, MAX_TAG_VALUE = 50, 128, 256  # EC2's limits, which tools expect


def unstorable(value: Any) -> str | None:
    """Why a value cannot be stored as given, or None. One policy for every store: a NUL is
    refused by PostgreSQL but kept by SQLite, and a lone surrogate cannot be encoded as UTF-8
    at all (a 500 at the insert); both are refused at the edge, naming the field."""
    if isinstance(value, str):
        if value.isascii():
            return "contains a NUL character" if "\x00" in value else None
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "contains a lone surrogate (not valid Unicode text)"
        return "contains a NUL character" if "\x00" in value else None
    if isinstance(value, dict):
        return next((why for k, v in value.items() if (why := unstorable(k) or unstorable(v))),
                    None)
    if isinstance(value, list | tuple):
        return next((why for v in value if (why := unstorable(v))), None)
    return None


def _check_tags(tags: dict[str, str]) -> dict[str, str]:
    if len(tags) > MAX_TAGS:
        raise ValueError(f"at most {MAX_TAGS} tags")
    for k, v in tags.items():
        if not 1 <= len(k) <= MAX_TAG_KEY:
            raise ValueError(f"tag key {k[:20]!r}: 1 to {MAX_TAG_KEY} characters")
        if len(v) > MAX_TAG_VALUE:
            raise ValueError(f"tag {k[:20]!r}: a value has at most {MAX_TAG_VALUE} characters")
    return tags


Tags = Annotated[dict[str, str], AfterValidator(_check_tags)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="after")
    @classmethod
    def _storable(cls, value: Any) -> Any:
        if (why := unstorable(value)) is not None:
            raise ValueError(why)
        return value


# ---- locations -------------------------------------------------------------------------------


# Every option a location of each kind takes, with its type (cloud: onepane's own, Libcloud's
# connection options, and `driver_options`, the one mapping a driver gets as keywords of its
# own: Libcloud's drivers take **kwargs, so a misspelt option there would be silently ignored).
_OPTION_TYPES: dict[Any, dict[str, type]] = {
    ProviderKind.cloud: {"host": str, "port": int, "secure": bool, "path": str, "zone": str,
                         "image_owner": str, "image_bucket": str, "single_put_max": int,
                         "pool_size": int, "timeout": int, "driver_options": dict},
    ProviderKind.local: {},
    ProviderKind.netns: {"index": int},
}


class LocationCreate(Strict):
    name: str = Field(pattern=NAME_PATTERN, max_length=40)
    provider: ProviderKind
    region: str = Field(default="local", max_length=64)
    driver: str | None = Field(default=None, description="Libcloud provider name, for `cloud`")
    credentials: dict[str, str] = Field(default_factory=dict, description="Never returned")
    options: dict[str, Any] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict)

    @field_validator("options")
    @classmethod
    def _typed_options(cls, options: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        """Each option's type checked here, naming it: a number where a driver concatenates
        a string was a 502 from deep inside Libcloud. (vm, docker and sim locations check theirs
        whole, with their own models, when they are built.)"""
        kind = info.data.get("provider")
        for key, value in options.items():
            want = _OPTION_TYPES.get(kind, {}).get(key)
            if kind in _OPTION_TYPES and want is None:
                hint = "; a Libcloud driver's own keyword goes under options.driver_options" \
                    if kind == ProviderKind.cloud else ""
                raise ValueError(f"options.{key}: not an option of a {kind} location, which "
                                 f"takes {', '.join(_OPTION_TYPES[kind]) or 'none'}{hint}")
            if want is not None and (not isinstance(value, want)
                                     or (want is int and isinstance(value, bool))):
                raise ValueError(f"options.{key}: expected {want.__name__}, got "
                                 f"{type(value).__name__}")
        for key, value in (options.get("driver_options") or {}).items():
            if not isinstance(key, str) or not isinstance(value, str | int | float | bool):
                raise ValueError(f"options.driver_options.{key}: a driver option is a string, "
                                 "a number or true/false")
        return options


class LocationUpdate(Strict):
    """A JSON merge patch (RFC 7396) of a location's labels: a value sets, `null` removes."""
    labels: dict[str, str | None] = Field(default_factory=dict)

    @field_validator("labels")
    @classmethod
    def _label_shape(cls, v: dict[str, str | None]) -> dict[str, str | None]:
        for key, value in v.items():
            if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.:/-]{0,62}", key):
                raise ValueError(f"label key {key!r}: 1-63 letters, digits, _ . : / -, "
                                 "starting with a letter or digit")
            if value is not None and len(value) > 255:
                raise ValueError(f"label {key}: at most 255 characters")
        return v


class Location(BaseModel):
    name: str
    provider: ProviderKind
    region: str
    driver: str | None
    labels: dict[str, str]
    options: dict[str, Any]
    has_credentials: bool
    status: str
    status_detail: str | None = None
    last_sync: datetime | None = None
    capabilities: dict[str, bool] = Field(default_factory=dict)
    unsupported: dict[str, str] = Field(default_factory=dict,
                                        description="what the location cannot do, and why")


# ---- instances -------------------------------------------------------------------------------


class InstanceCreate(Strict):
    name: str = Field(pattern=NAME_PATTERN)
    location: str
    image: str = Field(min_length=1, max_length=256)
    size: str = Field(min_length=1, max_length=64)
    tags: Tags = Field(default_factory=dict)
    network: str | None = None
    user_data: str | None = Field(default=None, max_length=16384,
                                  description="handed to the instance where its location can")
    ssh_keys: list[str] = Field(default_factory=list, max_length=10,
                                description="OpenSSH public keys the instance lets in")
    security_groups: list[str] = Field(default_factory=list, max_length=5,
                                       description="onepane group ids, for a cloud's firewall")
    # For a catalog image (img-...): the OVF deployment option and property values to boot with.
    deployment_option: str | None = Field(default=None, max_length=128)
    properties: dict[str, str] = Field(default_factory=dict)


class Instance(BaseModel):
    id: str
    name: str
    location: str
    provider: ProviderKind | None = None
    provider_id: str | None
    image: str
    size: str
    state: InstanceState
    addresses: list[str]
    ports: dict[str, int]
    tags: dict[str, str]
    origin: Literal["onepane", "discovered"]
    network: str | None = None
    created_at: datetime
    updated_at: datetime


# ---- volumes and networks --------------------------------------------------------------------


class VolumeCreate(Strict):
    name: str = Field(pattern=NAME_PATTERN)
    location: str
    size_gb: int = Field(ge=1, le=16384)
    tags: Tags = Field(default_factory=dict)


class VolumeAttach(Strict):
    instance: str
    device: str = Field(default="/dev/sdh", pattern=r"^/dev/[a-z0-9]+$")


class Volume(BaseModel):
    id: str
    name: str
    location: str
    provider_id: str | None
    size_gb: int
    state: str
    attached_to: str | None
    device: str | None
    tags: dict[str, str]
    created_at: datetime


class NetworkCreate(Strict):
    name: str = Field(pattern=NAME_PATTERN)
    location: str
    cidr: str = Field(pattern=r"^\d{1,3}(\.\d{1,3}){3}/\d{1,2}$")

    @field_validator("cidr")
    @classmethod
    def _a_network(cls, v: str) -> str:
        try:
            ipaddress.ip_network(v, strict=False)
        except ValueError as exc:
            raise ValueError(f"{v!r} is not a network: {exc}") from None
        return v


class Network(BaseModel):
    id: str
    name: str
    location: str
    provider_id: str | None
    cidr: str | None
    state: str
    created_at: datetime


# ---- images, sizes ---------------------------------------------------------------------------


class Image(BaseModel):
    id: str
    name: str
    location: str
    extra: dict[str, Any] = Field(default_factory=dict)


class Size(BaseModel):
    id: str
    cpu: float | None = None
    memory_mb: int | None = None
    disk_gb: int | None = None


# ---- jobs and events -------------------------------------------------------------------------


class Job(BaseModel):
    id: str
    kind: str
    target: str | None
    location: str | None
    status: JobStatus
    attempts: int
    error: dict[str, Any] | None
    result: dict[str, Any] | None
    created_at: datetime
    finished_at: datetime | None
    node: str | None = None  # the onepane node that runs it


class Node(BaseModel):
    """A node of the control plane as the others see it."""

    name: str
    api_url: str
    front_door_host: str | None
    role: Literal["leader", "standby", "down"]
    heartbeat_age_s: float
    started_at: datetime


class Event(BaseModel):
    id: int
    ts: datetime
    kind: str
    severity: Literal["info", "warning", "error"]
    location: str | None
    subject: str | None
    message: str
    data: dict[str, Any] = Field(default_factory=dict)


T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = None

"""The tables. Alembic migrations under migrations/ are generated from these."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Float, ForeignKey, Index, Integer, LargeBinary, String, Text
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Every timestamp comes back aware and in UTC, whatever the database keeps: SQLite drops the
    zone, PostgreSQL answers in the session's zone. One notation everywhere follows from this."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is not None:
            return value.astimezone(UTC)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[str]: JSON, datetime: UTCDateTime()}


class LocationRow(Base):
    __tablename__ = "locations"
    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    provider: Mapped[str] = mapped_column(String(16))
    region: Mapped[str] = mapped_column(String(64))
    driver: Mapped[str | None] = mapped_column(String(64))
    labels: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # What operators changed through the API, laid over the configured labels at every start.
    label_edits: Mapped[dict[str, Any] | None] = mapped_column(default=dict)
    options: Mapped[dict[str, Any]] = mapped_column(default=dict)
    credentials_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    status: Mapped[str] = mapped_column(String(16), default="unknown")
    status_detail: Mapped[str | None] = mapped_column(Text)
    last_sync: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class InstanceRow(Base):
    __tablename__ = "instances"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    location: Mapped[str] = mapped_column(ForeignKey("locations.name"))
    provider_id: Mapped[str | None] = mapped_column(String(128))
    image: Mapped[str] = mapped_column(String(256))
    size: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))
    addresses: Mapped[list[str]] = mapped_column(default=list)
    ports: Mapped[dict[str, Any]] = mapped_column(default=dict)
    tags: Mapped[dict[str, Any]] = mapped_column(default=dict)
    origin: Mapped[str] = mapped_column(String(16), default="onepane")
    network: Mapped[str | None] = mapped_column(String(32))  # onepane network id, if asked for
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    __table_args__ = (
        Index("ix_instances_location_provider_id", "location", "provider_id"),
        Index("ix_instances_state", "state"),
        # a filtered page in the default order reads its rows in order and stops at the page
        Index("ix_instances_location_id", "location", "id"),
        Index("ix_instances_state_id", "state", "id"),
    )


class InstanceTagRow(Base):
    """Each instance's tags again, one row a tag, so that a tag filter is an index lookup on
    every database (the JSON column is what the API returns). Kept by store.tags."""

    __tablename__ = "instance_tags"
    instance_id: Mapped[str] = mapped_column(
        ForeignKey("instances.id", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    value: Mapped[str] = mapped_column(String(256))

    __table_args__ = (Index("ix_instance_tags_key_value", "key", "value", "instance_id"),)


class VolumeRow(Base):
    __tablename__ = "volumes"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    location: Mapped[str] = mapped_column(ForeignKey("locations.name"), index=True)
    provider_id: Mapped[str | None] = mapped_column(String(128))
    size_gb: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16))
    attached_to: Mapped[str | None] = mapped_column(String(32))
    device: Mapped[str | None] = mapped_column(String(32))
    tags: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class NetworkRow(Base):
    __tablename__ = "networks"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    location: Mapped[str] = mapped_column(ForeignKey("locations.name"), index=True)
    provider_id: Mapped[str | None] = mapped_column(String(128))
    cidr: Mapped[str | None] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class JobRow(Base):
    __tablename__ = "jobs"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    target: Mapped[str | None] = mapped_column(String(32), index=True)
    location: Mapped[str | None] = mapped_column(String(40))
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(16), index=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(128), unique=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
    # The onepane node that runs it; another takes it over (a conditional UPDATE, so exactly
    # one does) once this one stops heartbeating.
    node: Mapped[str | None] = mapped_column(String(64), index=True)


class EventRow(Base):
    __tablename__ = "events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ts: Mapped[datetime] = mapped_column(default=utcnow)
    kind: Mapped[str] = mapped_column(String(48), index=True)
    severity: Mapped[str] = mapped_column(String(8), default="info")
    location: Mapped[str | None] = mapped_column(String(40))
    subject: Mapped[str | None] = mapped_column(String(64), index=True)
    message: Mapped[str] = mapped_column(Text)
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)


class TokenRow(Base):
    __tablename__ = "tokens"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16), default="admin")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class MetricRow(Base):
    """One sample. `step` 0 is a raw sample; 60 is a one-minute average made by compaction.
    `ts` is epoch seconds, so bucketing is plain arithmetic on every database."""

    __tablename__ = "metric_samples"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ts: Mapped[float] = mapped_column(Float)
    deployment: Mapped[str] = mapped_column(String(40))
    location: Mapped[str] = mapped_column(String(40), default="")
    instance: Mapped[str] = mapped_column(String(32), default="")
    name: Mapped[str] = mapped_column(String(32))
    value: Mapped[float] = mapped_column(Float)
    step: Mapped[int] = mapped_column(Integer, default=0)

    __table_args__ = (Index("ix_metric_samples_dep_name_ts", "deployment", "name", "ts"),
                      Index("ix_metric_samples_step_ts", "step", "ts"))


class AccessKeyRow(Base):
    """EC2-style access keys. SigV4 needs the secret itself to check a signature, so it is
    stored encrypted with the vault key (like provider credentials), not hashed."""

    __tablename__ = "access_keys"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # the access key id, AKOP...
    name: Mapped[str] = mapped_column(String(64))
    secret_enc: Mapped[bytes] = mapped_column(LargeBinary)
    role: Mapped[str] = mapped_column(String(16), default="operator")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class DeploymentRow(Base):
    __tablename__ = "deployments"
    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    spec: Mapped[dict[str, Any]] = mapped_column(default=dict)
    primary: Mapped[str | None] = mapped_column(String(40))
    listen: Mapped[str] = mapped_column(String(32))
    status: Mapped[dict[str, Any]] = mapped_column(default=dict)
    generation: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class CatalogImageRow(Base):
    """A logical image: hardware needs and content-addressed disks, whatever the location."""

    __tablename__ = "catalog_images"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    version: Mapped[str] = mapped_column(String(32))
    os: Mapped[str | None] = mapped_column(String(128))
    cpus: Mapped[int] = mapped_column(Integer, default=1)
    memory_mb: Mapped[int] = mapped_column(Integer, default=512)
    disks: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)  # sha256, format, ...
    networks: Mapped[list[str]] = mapped_column(JSON, default=list)
    product: Mapped[dict[str, Any]] = mapped_column(default=dict)
    source: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # What the OVF said beyond the hardware: deployment options and each one's hardware,
    # properties, blank disks, EULAs, OS id (None for a plain disk).
    ovf: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    appliance: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    warnings: Mapped[list[str] | None] = mapped_column(JSON, default=None)


class ImageReplicaRow(Base):
    """Where a logical image is present, as which provider image, and how far along."""

    __tablename__ = "image_replicas"
    image_id: Mapped[str] = mapped_column(ForeignKey("catalog_images.id"), primary_key=True)
    location: Mapped[str] = mapped_column(String(40), primary_key=True)
    provider_image_id: Mapped[str | None] = mapped_column(String(128))
    state: Mapped[str] = mapped_column(String(16), default="pending")
    format: Mapped[str | None] = mapped_column(String(16))
    progress: Mapped[float] = mapped_column(default=0.0)
    error: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class AnnotationRow(Base):
    """What a standard front end keeps about a resource beyond onepane's model: OCCI's
    mutable attributes (title, summary) and the client-defined mixins that tag it."""

    __tablename__ = "annotations"
    resource: Mapped[str] = mapped_column(String(80), primary_key=True)  # inst-..., vol-..., ...
    attributes: Mapped[dict[str, Any]] = mapped_column(default=dict)
    categories: Mapped[list[str]] = mapped_column(JSON, default=list)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class CategoryDefRow(Base):
    """A category a client defined (an OCCI user mixin), with its collection's path."""

    __tablename__ = "category_defs"
    id: Mapped[str] = mapped_column(String(512), primary_key=True)  # scheme + term
    term: Mapped[str] = mapped_column(String(128))
    scheme: Mapped[str] = mapped_column(String(384))
    title: Mapped[str] = mapped_column(String(256), default="")
    location: Mapped[str] = mapped_column(String(256), unique=True)
    depends: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class KeyPairRow(Base):
    """An SSH key pair's public half, by name; handed to instances created with it."""

    __tablename__ = "key_pairs"
    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(128))
    public_key: Mapped[str] = mapped_column(Text)
    key_type: Mapped[str] = mapped_column(String(16), default="rsa")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class SecurityGroupRow(Base):
    """Firewall rules for a set of instances (enforced where a location can; see firewall.py)."""

    __tablename__ = "security_groups"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str] = mapped_column(String(255))
    network: Mapped[str | None] = mapped_column(String(32))  # None: not tied to a network
    ingress: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    egress: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    members: Mapped[list[str]] = mapped_column(JSON, default=list)  # instance ids
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class SnapshotRow(Base):
    """A point-in-time copy of a volume, kept by the volume's location."""

    __tablename__ = "snapshots"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    volume_id: Mapped[str] = mapped_column(String(32))
    location: Mapped[str] = mapped_column(String(40))
    size_gb: Mapped[int] = mapped_column(Integer)
    description: Mapped[str] = mapped_column(String(255), default="")
    state: Mapped[str] = mapped_column(String(16), default="pending")
    provider_id: Mapped[str | None] = mapped_column(String(128))
    tags: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class RecordRow(Base):
    """An object a standard front end keeps for its clients that changes nothing in onepane
    by itself (an EC2 VPC's address plan, an internet gateway, a route table, DHCP options)."""

    __tablename__ = "records"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), index=True)
    attributes: Mapped[dict[str, Any]] = mapped_column(default=dict)
    tags: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class NodeRow(Base):
    """One onepane node of the control plane, as it last said it was alive. `heartbeat` is
    epoch seconds (the nodes' clocks are kept by NTP, as PostgreSQL's own replicas assume)."""

    __tablename__ = "nodes"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    api_url: Mapped[str] = mapped_column(String(256), default="")
    front_door_host: Mapped[str | None] = mapped_column(String(64))
    pid: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    heartbeat: Mapped[float] = mapped_column(Float)


class LeaseRow(Base):
    """The leader's lease. `epoch` grows by one at every change of holder: a decision is
    written only while the epoch its leader took is still the lease's (fencing)."""

    __tablename__ = "leases"
    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    holder: Mapped[str] = mapped_column(String(64))
    epoch: Mapped[int] = mapped_column(Integer, default=0)
    acquired_at: Mapped[datetime] = mapped_column(default=utcnow)

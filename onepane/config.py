"""Settings: onepane.toml, overridden by ONEPANE_* environment variables.

With no file at all, onepane runs the *embedded default*: SQLite under the state directory and
two local data centers, `dc-a` and `dc-b`, so `./run` works on a bare machine.
"""

from __future__ import annotations

import contextlib
import difflib
import os
import socket
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import InvalidInput
from .gslb.accounts import DnsAccount
from .model import LocationCreate, ProviderKind

DEFAULT_PORT = 8640


WEBHOOK_EVENTS = ["policy.*", "sla.*", "traffic.failover", "replica.replaced"]


class Webhook(BaseModel):
    """Where the alerts of policy.alerts go: a configuration type, so it lives with the
    settings that hold it rather than with the code that sends."""

    url: str = Field(pattern=r"^https?://")
    secret: str = Field(min_length=16, repr=False)
    events: list[str] = Field(default_factory=lambda: list(WEBHOOK_EVENTS))
    attempts: int = Field(default=6, ge=1, le=20)
    backoff: float = Field(default=0.5, gt=0, le=60, description="first retry delay, doubled each time")


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt key is an error, not ignored

    state_dir: Path = Field(default_factory=lambda: Path(".onepane").resolve())
    database_url: str | None = None
    api_host: str = "127.0.0.1"
    api_port: int = DEFAULT_PORT
    dev: bool = False
    sync_interval: float = Field(default=10.0, gt=0)
    workers_per_location: int = Field(default=8, ge=1, le=256)
    reconcile_interval: float = Field(default=0.2, gt=0)
    answer_deadline: float = Field(default=10.0, gt=0, le=300, description=(
        "seconds a location may take to answer a listing before it is treated as not "
        "answering: a listing across locations answers without it, and a sync still waiting "
        "for it this long (or 1.5 sync intervals) shows it unreachable"))
    dns_host: str = "127.0.0.1"
    dns_port: int | None = Field(default=8653, ge=0, le=65535, description="None: no DNS")
    dns_zone: str = "onepane.local"
    dns_ttl: int = Field(default=5, ge=0)
    dns_accounts: dict[str, DnsAccount] = Field(
        default_factory=dict, description="where deployments may publish their records "
        "(dns: {provider: NAME}): PowerDNS, Route 53 or any RFC 2136 server")
    dns_verify_interval: float = Field(default=10.0, gt=0, le=3600, description=(
        "seconds between reading a published record back (a record changed by hand is put "
        "back within this)"))
    metrics_interval: float = Field(default=1.0, gt=0, le=60, description="seconds between samples")
    max_image_bytes: int = Field(default=64 * 2**30, ge=2**20, le=2**44, description=(
        "the largest disk image or OVA an import takes; a bigger one is refused with 413 "
        "before it is read (from its Content-Length) or the moment it passes the limit"))
    metrics_raw_retention: float = Field(default=3600.0, gt=0, description="raw samples, seconds")
    metrics_retention: float = Field(default=7 * 86400.0, gt=0, description="1-minute averages")
    webhooks: list[Webhook] = Field(default_factory=list)
    node_name: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9-]{0,62}$",
                                  description="this node's name when several share one database")
    front_door_host: str | None = Field(default=None, description="the address this node's data "
                                        "planes listen on, in place of the spec's host")
    node_timeout: float = Field(default=3.0, gt=0.5, le=60, description="seconds without a "
                                "heartbeat before a node's jobs are taken over")
    ec2_region: str = Field(default="onepane", pattern=r"^[a-z0-9-]{1,32}$",
                            description="the one region the EC2 front end shows; locations are its zones")
    locations: list[LocationCreate] = Field(
        default_factory=lambda: [
            LocationCreate(name="dc-a", provider=ProviderKind.local, region="local-a",
                           labels={"site": "dc-a"}),
            LocationCreate(name="dc-b", provider=ProviderKind.local, region="local-b",
                           labels={"site": "dc-b"}),
        ]
    )

    # Not a setting: where the settings came from (instances must not read it: credentials).
    config_file: Path | None = Field(default=None, exclude=True)

    @property
    def node(self) -> str:
        return self.node_name or socket.gethostname().split(".")[0].lower()[:63] or "node"

    @property
    def node_dir(self) -> Path:
        """What is this node's alone (its pid file, its data planes' files): the state directory
        itself for a single node, a folder of it when several nodes share one directory."""
        return self.state_dir / "nodes" / self.node_name if self.node_name else self.state_dir

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.state_dir / 'onepane.db'}"


_ENV = {
    "ONEPANE_STATE_DIR": "state_dir",
    "ONEPANE_DATABASE_URL": "database_url",
    "ONEPANE_API_HOST": "api_host",
    "ONEPANE_API_PORT": "api_port",
    "ONEPANE_SYNC_INTERVAL": "sync_interval",
    "ONEPANE_DNS_HOST": "dns_host",
    "ONEPANE_DNS_PORT": "dns_port",
    "ONEPANE_NODE_NAME": "node_name",
    "ONEPANE_FRONT_DOOR_HOST": "front_door_host",
}
OFF = ("off", "none", "")


def load_settings(path: Path | None = None, **overrides: Any) -> Settings:
    """Read the file (if any), then the environment, then explicit overrides, in that order."""
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            raw = tomllib.loads(path.read_text())
        except FileNotFoundError as exc:
            raise InvalidInput(f"config file {path} does not exist", field="config") from exc
        except tomllib.TOMLDecodeError as exc:
            raise InvalidInput(f"{path}: {exc}", field="config") from exc
        if "locations" in raw and isinstance(raw["locations"], dict):
            # [locations.dc-a] tables read naturally in TOML; accept them as a list.
            raw["locations"] = [{"name": k, **v} for k, v in raw["locations"].items()]
    for env, key in _ENV.items():
        if env in os.environ:
            raw[key] = os.environ[env]
    raw.update({k: v for k, v in overrides.items() if v is not None})
    if isinstance(raw.get("dns_port"), str) and raw["dns_port"].strip().lower() in OFF:
        raw["dns_port"] = None  # `off` in a flag, the environment or the file: no DNS
    try:
        settings = Settings.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = list(first["loc"])
        if len(loc) > 1 and loc[0] == "locations" and isinstance(loc[1], int):
            with contextlib.suppress(IndexError, KeyError, TypeError):
                loc[1] = raw["locations"][loc[1]]["name"]  # name it, not its position
        where = ".".join(str(p) for p in loc)
        msg = first["msg"]
        if first["type"] == "extra_forbidden":
            known = (LocationCreate.model_fields if len(loc) > 2 and loc[0] == "locations"
                     else Settings.model_fields)
            close = difflib.get_close_matches(str(loc[-1]), list(known), n=1)
            msg = f"unknown setting{f'; did you mean {close[0]!r}?' if close else ''}"
        raise InvalidInput(f"{path or 'settings'}: {where}: {msg}", field=where) from exc
    settings.state_dir = settings.state_dir.resolve()
    settings.config_file = path.resolve() if path is not None else None
    return settings

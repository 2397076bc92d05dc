"""DNS accounts: where onepane may publish a deployment's records, read from onepane.toml.

    [dns_accounts.pdns]
    kind = "powerdns"
    url = "http://10.0.0.53:8081"
    api_key = "..."

    [dns_accounts.aws]
    kind = "route53"
    access_key = "AKIA..."
    secret_key = "..."

    [dns_accounts.bind]
    kind = "rfc2136"
    server = "10.0.0.54"
    key_name = "onepane"
    key_secret = "base64..."

Secrets are `SecretStr`: they print as `**********` in logs, errors and `onepane config`.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr


class _Account(BaseModel):
    model_config = ConfigDict(extra="forbid")
    timeout: float = Field(default=5.0, gt=0, le=60, description="seconds one call may take")


class PowerDnsAccount(_Account):
    """PowerDNS Authoritative through its HTTP API (Libcloud's powerdns driver)."""

    kind: Literal["powerdns"]
    url: str = Field(pattern=r"^https?://[^/\s]+/?$", description="the API's base, no path")
    api_key: SecretStr
    server_id: str = "localhost"


class Route53Account(_Account):
    """Amazon Route 53 (Libcloud's route53 driver); `endpoint` for a Route 53 look-alike."""

    kind: Literal["route53"]
    access_key: str = Field(min_length=1)
    secret_key: SecretStr
    endpoint: str | None = Field(default=None, pattern=r"^https?://[^/\s]+/?$")
    region: str = "us-east-1"


class Rfc2136Account(_Account):
    """Any server that takes RFC 2136 dynamic updates signed with TSIG (BIND, Knot, ...)."""

    kind: Literal["rfc2136"]
    server: str = Field(min_length=1, description="the primary's address")
    port: int = Field(default=53, ge=1, le=65535)
    key_name: str = Field(min_length=1)
    key_secret: SecretStr
    key_algorithm: Literal["hmac-sha256", "hmac-sha512", "hmac-sha1"] = "hmac-sha256"


DnsAccount = Annotated[PowerDnsAccount | Route53Account | Rfc2136Account,
                       Field(discriminator="kind")]

"""AWS Signature Version 4, checked on the server side.

A signature is an HMAC of a canonical form of the request; the server rebuilds that form from
what it received and compares. Only the Authorization-header flavour is accepted (what boto3, the
aws CLI and Terraform send); presigned query URLs are not needed for the EC2 query API.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, quote, unquote

ALGORITHM = "AWS4-HMAC-SHA256"
MAX_SKEW = timedelta(minutes=15)
_AUTH = re.compile(r"AWS4-HMAC-SHA256\s+Credential=(?P<cred>[^,\s]+),\s*"
                   r"SignedHeaders=(?P<signed>[^,\s]+),\s*Signature=(?P<sig>[0-9a-f]{64})\s*$")


class SignatureError(Exception):
    """`code` is the EC2 error code to answer with."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Credential:
    key_id: str
    date: str
    region: str
    service: str

    @property
    def scope(self) -> str:
        return f"{self.date}/{self.region}/{self.service}/aws4_request"


@dataclass(frozen=True)
class SignedRequest:
    method: str
    raw_path: str
    raw_query: str
    headers: Mapping[str, list[str]]  # lower-case name -> every value received
    body: bytes


def parse_authorization(header: str | None) -> tuple[Credential, list[str], str]:
    if not header:
        raise SignatureError("MissingAuthenticationToken",
                             "the request must be signed with AWS Signature Version 4")
    m = _AUTH.match(header.strip())
    if not m:
        raise SignatureError("IncompleteSignature",
                             "the Authorization header is not a valid AWS4-HMAC-SHA256 signature")
    parts = m["cred"].split("/")
    if len(parts) != 5 or parts[4] != "aws4_request":
        raise SignatureError("IncompleteSignature", "malformed Credential in the Authorization header")
    cred = Credential(*parts[:4])
    return cred, m["signed"].split(";"), m["sig"]


def verify(req: SignedRequest, secret_of: Callable[[str], str | None], *,
           services: tuple[str, ...] = ("ec2",), now: datetime | None = None) -> Credential:
    """Checks the signature; returns the credential it was made with (its service one of
    `services`)."""
    cred, signed, signature = parse_authorization(_first(req.headers, "authorization"))
    if cred.service not in services:
        raise SignatureError("SignatureDoesNotMatch", f"credential scope names service "
                             f"{cred.service!r}; this endpoint serves {', '.join(services)}")
    amz_date = _first(req.headers, "x-amz-date")
    if not amz_date:
        raise SignatureError("MissingParameter", "the X-Amz-Date header is missing")
    try:
        when = datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError as exc:
        raise SignatureError("IncompleteSignature", f"X-Amz-Date {amz_date!r} is not "
                             "YYYYMMDDTHHMMSSZ") from exc
    if abs((now or datetime.now(UTC)) - when) > MAX_SKEW:
        raise SignatureError("RequestExpired", "the request's X-Amz-Date is more than 15 minutes "
                             "away from the server's clock")
    if cred.date != amz_date[:8]:
        raise SignatureError("SignatureDoesNotMatch", "credential scope date differs from X-Amz-Date")
    if "host" not in signed:
        raise SignatureError("SignatureDoesNotMatch", "the Host header must be signed")
    key = secret_of(cred.key_id)
    if key is None:
        raise SignatureError("AuthFailure", "AWS was not able to validate the provided access "
                             "credentials: unknown access key")
    expected = signature_of(req, signed, cred, amz_date, key)
    if not hmac.compare_digest(expected, signature):
        raise SignatureError("SignatureDoesNotMatch", "the request signature we calculated does not "
                             "match the signature you provided; check your secret access key")
    return cred


def signature_of(req: SignedRequest, signed: list[str], cred: Credential, amz_date: str,
                 secret: str) -> str:
    canonical = "\n".join([
        req.method.upper(),
        quote(unquote(req.raw_path) or "/", safe="/~"),
        canonical_query(req.raw_query),
        "".join(f"{h}:{','.join(' '.join(v.split()) for v in req.headers.get(h, []))}\n"
                for h in signed),
        ";".join(signed),
        _first(req.headers, "x-amz-content-sha256") or hashlib.sha256(req.body).hexdigest(),
    ])
    to_sign = "\n".join([ALGORITHM, amz_date, cred.scope,
                         hashlib.sha256(canonical.encode()).hexdigest()])
    key = ("AWS4" + secret).encode()
    for part in (cred.date, cred.region, cred.service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


def canonical_query(raw: str) -> str:
    pairs = parse_qsl(raw, keep_blank_values=True)
    return "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in sorted(pairs))


def _first(headers: Mapping[str, list[str]], name: str) -> str | None:
    values = headers.get(name)
    return values[0] if values else None

"""Authentication and roles for every route."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Header, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ..core import Core
from ..errors import Forbidden
from ..secrets import hash_token

bearer = HTTPBearer(auto_error=False, description="A token from `onepane up` or POST /v1/tokens")
RANK = {"viewer": 0, "operator": 1, "admin": 2}


def header_lists(request: Request) -> dict[str, list[str]]:
    """Every value of every header, names lower-cased: signatures and OCCI renderings need
    repeated headers in the order they came."""
    out: dict[str, list[str]] = {}
    for k, v in request.headers.raw:
        out.setdefault(k.decode("latin-1").lower(), []).append(v.decode("latin-1"))
    return out


def core(request: Request) -> Core:
    core: Core = request.app.state.core
    return core


async def role(request: Request,
               cred: HTTPAuthorizationCredentials | None = Depends(bearer)) -> str:
    """Async, and answered from the tokens' cache when it can be: a sync dependency is a
    thread hop per request, and every request has this one (bench/provision.py)."""
    c = core(request)
    if c.settings.dev:
        return "admin"
    # Header only, never a cookie: a browser cannot be tricked into sending it (no CSRF).
    token = cred.credentials if cred else None
    if (known := c.tokens.cached_role(token)) is not None:
        return known
    return await run_in_threadpool(c.tokens.role_of, token)


def require(minimum: str) -> Callable[..., Awaitable[str]]:
    async def check(r: str = Depends(role)) -> str:
        if RANK[r] < RANK[minimum]:
            raise Forbidden(f"this needs the {minimum} role; the token has {r}")
        return r
    return check


viewer = Depends(require("viewer"))
operator = Depends(require("operator"))
admin = Depends(require("admin"))


IdemKeyHeader = Annotated[str | None, Header(
    alias="Idempotency-Key", min_length=1, max_length=128, pattern=r"^[\x21-\x7e]+$",
    description="makes a retried request safe: the same key returns the first request's job; "
                "a key is bound to its caller and its request, and reusing it for another "
                "request is a 422")]


async def idempotency_key(request: Request, key: IdemKeyHeader = None,
                          cred: HTTPAuthorizationCredentials | None = Depends(bearer)) -> str | None:
    """The key as stored: scoped to the caller (the IETF draft's and AWS ClientToken's rule),
    so that another caller sending the same key and body gets a job of its own, never the
    first caller's. The scope is a digest of the token, not its id: no lookup per request."""
    if key is None:
        return None
    caller = "dev" if core(request).settings.dev or cred is None \
        else hash_token(cred.credentials)[:16]
    scoped = f"api:{caller}:{key}"
    return scoped if len(scoped) <= 128 else \
        f"api:{caller}:#{hashlib.sha256(key.encode()).hexdigest()}"


IdemKey = Annotated[str | None, Depends(idempotency_key)]

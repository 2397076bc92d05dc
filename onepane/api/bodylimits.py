"""Request body size limits, per route, enforced before a handler reads the body.

A 9.5 MB deployment spec took the API 6.6 s to refuse; an unbounded JSON body is memory the
server hands to whoever asks. Every body is bounded here: small for specs and JSON requests,
large only for the routes that stream an upload to disk (which also count what they write).
A body over its limit is a 413 problem naming `body`, answered from the Content-Length when
the client sent one, else as soon as the stream passes the limit.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

KIB, MIB, GIB = 1024, 1024**2, 1024**3
DEFAULT_LIMIT = 1 * MIB
# (method, path pattern, limit), first match wins
LIMITS: list[tuple[str, re.Pattern[str], int]] = [
    ("POST", re.compile(r"^/v1/deployments/?$"), 256 * KIB),
    ("POST", re.compile(r"^/v1/locations/[^/]+/images$"), 512 * MIB),  # app images
    ("POST", re.compile(r"^/v1/catalog/?$"), 1024 * GIB),  # disk images, OVAs: save_body's
    ("PUT", re.compile(r"^/occi/.*"), 4 * MIB),                # own limit applies
    ("POST", re.compile(r"^/occi/.*"), 4 * MIB),
]


IMAGE_UPLOAD = re.compile(r"^/v1/catalog/?$")


def limit_for(method: str, path: str) -> int:
    for m, pattern, limit in LIMITS:
        if m == method and pattern.match(path):
            return limit
    return DEFAULT_LIMIT


class TooLarge(Exception):
    pass


class BodyLimits:
    def __init__(self, app: ASGIApp, image_limit: int | None = None) -> None:
        self.app = app
        self.image_limit = image_limit  # the catalog's uploads: onepane.toml's max_image_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        limit = limit_for(scope["method"], scope["path"])
        if self.image_limit is not None and IMAGE_UPLOAD.match(scope["path"]) \
                and scope["method"] == "POST":
            limit = self.image_limit
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                await _refuse(send, limit)
                return
        seen = 0
        started = False

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise TooLarge
            return message

        async def tracking(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, tracking)
        except TooLarge:
            if not started:
                await _refuse(send, limit)


async def _refuse(send: Send, limit: int) -> None:
    body = json.dumps({"type": "about:blank", "title": "Content Too Large", "status": 413,
                       "detail": f"the request body is larger than this route takes "
                                 f"({limit} bytes)",
                       "errors": [{"field": "body", "message": f"at most {limit} bytes"}]}).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/problem+json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})

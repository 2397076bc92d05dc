"""Request bodies streamed to a file with a size limit, never held in memory."""

from __future__ import annotations

import hashlib
from pathlib import Path

from fastapi import Request
from starlette.requests import ClientDisconnect

from ..errors import InvalidInput, OnepaneError


class TooLarge(OnepaneError):
    status = 413
    title = "Content Too Large"
    exit_code = 2


class ClientGone(OnepaneError):
    """The client went away during its upload: the work stops there and its scratch file goes
    with the caller's temporary folder. Said as a problem (nobody reads it), never a trace."""

    status = 400
    title = "Client went away"
    exit_code = 1


async def save_body(request: Request, path: Path, limit: int) -> tuple[int, str]:
    """Returns the size and the SHA-256, computed on the way in: a disk image is hashed once,
    not read again after it has landed."""
    size = 0
    digest = hashlib.sha256()
    try:
        with path.open("wb") as f:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise TooLarge(f"upload larger than {limit} bytes (max_image_bytes)",
                                   field="body")
                digest.update(chunk)
                f.write(chunk)
    except ClientDisconnect:
        raise ClientGone(f"the client went away after {size} bytes") from None
    if size == 0:
        raise InvalidInput("empty upload", field="body")
    if await request.is_disconnected():  # nobody waits for the answer: do not start the work
        raise ClientGone(f"the client went away after sending {size} bytes")
    return size, digest.hexdigest()

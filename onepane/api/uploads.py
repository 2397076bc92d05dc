"""Request bodies streamed to a file with a size limit, never held in memory."""

from __future__ import annotations

import hashlib
from pathlib import Path

from fastapi import Request

from ..errors import InvalidInput


async def save_body(request: Request, path: Path, limit: int) -> tuple[int, str]:
    """Returns the size and the SHA-256, computed on the way in: a disk image is hashed once,
    not read again after it has landed."""
    size = 0
    digest = hashlib.sha256()
    with path.open("wb") as f:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise InvalidInput(f"upload larger than {limit} bytes", field="body")
            digest.update(chunk)
            f.write(chunk)
    if size == 0:
        raise InvalidInput("empty upload", field="body")
    return size, digest.hexdigest()

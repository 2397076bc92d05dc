"""Request bodies streamed to a file with a size limit, never held in memory."""

from __future__ import annotations

from pathlib import Path

from fastapi import Request

from ..errors import InvalidInput


async def save_body(request: Request, path: Path, limit: int) -> int:
    size = 0
    with path.open("wb") as f:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise InvalidInput(f"upload larger than {limit} bytes", field="body")
            f.write(chunk)
    if size == 0:
        raise InvalidInput("empty upload", field="body")
    return size

"""Files that are either the old version or the new one, never half of either.

Provider state (instance records, volume and network tables) is rewritten while onepane may be
killed at any moment; truncate-then-write left empty files that broke a location until someone
edited them. Write to a temporary file, fsync it, rename it over the old one (atomic on POSIX),
and fsync the directory so the rename itself survives a power cut.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .errors import PermanentProviderError

MAX_TABLE_BYTES = 64 << 20


def write_text(path: Path, text: str, mode: int = 0o600) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def write_json(path: Path, value: Any) -> None:
    write_text(path, json.dumps(value))


def read_table(path: Path, what: str) -> dict[str, Any]:
    """A JSON object table written by write_json, read as untrusted input: missing is empty;
    anything but a JSON object (empty, truncated, not UTF-8, a list, too large) is a clear
    error naming the file, never a TypeError deep inside a caller."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_TABLE_BYTES + 1)
    except FileNotFoundError:
        return {}
    try:
        data = json.loads(raw.decode("utf-8")) if len(raw) <= MAX_TABLE_BYTES else None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PermanentProviderError(f"the {what} {path} is damaged ({exc}); repair or remove "
                                     "it") from exc
    if not isinstance(data, dict) or not all(isinstance(v, dict | str) for v in data.values()):
        raise PermanentProviderError(f"the {what} {path} is damaged (not a table of entries); "
                                     "repair or remove it")
    return data

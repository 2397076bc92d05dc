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

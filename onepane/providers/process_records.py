"""A process location's instance records on disk, read as untrusted input.

A record is a small JSON file that anything with access to the host can damage: a disk that
filled up, an editor, a restore from a backup of another day. A damaged record must cost its
own instance's bookkeeping and nothing else: never `onepane up`, never another instance, and
never the instance's live process (a record that cannot be read proves nothing about it).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pydantic import TypeAdapter, ValidationError

from .. import atomic
from ..errors import Conflict

RECORD = "instance.json"
MAX_RECORD_BYTES = 1 << 20  # a record is a few hundred bytes; a huge one is damage


@dataclass
class ProcessRecord:
    id: str
    name: str
    image: str
    size: str
    host: str
    port: int
    tags: dict[str, str] = field(default_factory=dict)
    desired: str = "running"
    pid: int | None = None
    started: float | None = None  # psutil create_time, to tell our pid from a recycled one
    limits: str = "none"
    exit_code: int | None = None
    uid: int | None = None  # the instance's own user (sandbox.py); None before its first start


_ADAPTER = TypeAdapter(ProcessRecord)


class DamagedRecord(Exception):
    """The record exists but cannot be trusted; the reason says why, for the operator."""


class DamagedInstance(Conflict):
    """An operation on an instance whose record is damaged: refused, naming the damage."""


def read(path: Path) -> ProcessRecord:
    """The record at `path`, checked: JSON of the right shape, types, id matching its folder.
    FileNotFoundError when there is none; DamagedRecord when there is one that is wrong."""
    with open(path, "rb") as f:
        raw = f.read(MAX_RECORD_BYTES + 1)
    if len(raw) > MAX_RECORD_BYTES:
        raise DamagedRecord(f"larger than {MAX_RECORD_BYTES} bytes")
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise DamagedRecord(f"not UTF-8 ({exc.reason} at byte {exc.start})") from exc
    except json.JSONDecodeError as exc:
        raise DamagedRecord(f"not JSON ({exc.msg} at line {exc.lineno})") from exc
    if not isinstance(data, dict):
        raise DamagedRecord(f"a JSON {type(data).__name__}, not an object")
    try:
        rec = _ADAPTER.validate_python(data, strict=False)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "record"
        raise DamagedRecord(f"{where}: {first['msg']}") from exc
    if rec.id != path.parent.name:
        raise DamagedRecord(f"names instance {rec.id!r} but lies in {path.parent.name}")
    if not 0 < rec.port < 65536 or (rec.pid is not None and rec.pid <= 1):
        raise DamagedRecord(f"port {rec.port} or pid {rec.pid} out of range")
    return rec


def write(path: Path, rec: ProcessRecord) -> None:
    atomic.write_json(path, asdict(rec))

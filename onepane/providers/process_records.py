"""A process location's instance records on disk, read as untrusted input.

A record is a small JSON file that anything with access to the host can damage: a disk that
filled up, an editor, a restore from a backup of another day. A damaged record must cost its
own instance's bookkeeping and nothing else: never `onepane up`, never another instance, and
never the instance's live process (a record that cannot be read proves nothing about it).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pydantic import TypeAdapter, ValidationError

from .. import atomic
from ..errors import Conflict, NotFound

RECORD = "instance.json"
log = logging.getLogger(__name__)
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


class RecordStore:
    """One location's records, a folder per instance, and which of them are damaged (reported
    by the location's problems, listed from what their processes say)."""

    def __init__(self, location: str, instances_dir: Path) -> None:
        self.location = location
        self.instances_dir = instances_dir
        self.damaged: dict[str, str] = {}  # instance id -> why its record cannot be read

    def path(self, instance_id: str) -> Path:
        if "/" in instance_id or instance_id.startswith("."):
            raise NotFound(f"no instance {instance_id!r} at {self.location}")
        return self.instances_dir / instance_id / RECORD

    def load(self, instance_id: str) -> ProcessRecord:
        """The record, or NotFound; a damaged one is a Conflict naming the damage (DamagedRecord
        is one), so that an operation on it fails clearly instead of acting on a guess."""
        path = self.path(instance_id)
        try:
            return read(path)
        except FileNotFoundError as exc:
            raise NotFound(f"no instance {instance_id!r} at {self.location}") from exc
        except DamagedRecord as exc:
            self.damaged[instance_id] = str(exc)
            raise DamagedInstance(f"instance {instance_id} at {self.location} has a damaged "
                                  f"record ({exc}); repair {path} or destroy the instance",
                                  field="instance") from exc

    def save(self, rec: ProcessRecord) -> None:
        write(self.path(rec.id), rec)

    def all(self) -> list[ProcessRecord]:
        """Every readable record of a live instance; the damaged ones are noted, not returned."""
        out, damaged = [], {}
        for path in self.instances_dir.glob(f"*/{RECORD}"):
            try:
                rec = read(path)
            except FileNotFoundError:
                continue  # destroyed meanwhile
            except (DamagedRecord, OSError) as exc:
                damaged[path.parent.name] = str(exc)
                continue
            if rec.desired != "destroyed":
                out.append(rec)
        for inst_id in damaged.keys() - self.damaged.keys():
            log.warning("%s: instance %s has a damaged record (%s); left as it is",
                        self.location, inst_id, damaged[inst_id])
        self.damaged = damaged
        return out

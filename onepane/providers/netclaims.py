"""Which onepane a location's network (its index, namespace and veth) belongs to, machine-wide.

A location's network is named after its index (10.200.<index>.0/24, veth `op-h<index>`) and its
location (`op-<name>`): two onepanes on one machine (two state directories, a test run beside a
demo) that both have a location with the same index would take over — and on teardown delete —
each other's namespace. So a network is claimed before it is made: a small table shared by every
onepane here (`index -> owner state directory, pid, namespace`), changed under a file lock.
A claim held by another owner whose process still runs is refused with both names; one whose
process is gone is stale and taken over (a namespace outlives a crash of onepane on purpose,
and the same state directory's next `onepane up` takes its own back).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil

from .. import atomic
from ..errors import Conflict

log = logging.getLogger(__name__)
CLAIMS = Path(os.environ.get("ONEPANE_NET_CLAIMS", "/var/lib/onepane/net-claims.json"))


@contextlib.contextmanager
def _table(path: Path) -> Iterator[dict[str, Any]]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            table: dict[str, Any] = atomic.read_table(path, "network claims")
        except Exception as exc:  # damaged: start over rather than refuse every location
            log.warning("%s", exc)
            table = {}
        before = json.dumps(table, sort_keys=True)
        yield table
        if json.dumps(table, sort_keys=True) != before:
            atomic.write_text(path, json.dumps(table, indent=1), mode=0o644)


def _alive(pid: object) -> bool:
    try:
        return isinstance(pid, int) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def claim(index: int, namespace: str, owner: str, path: Path = CLAIMS) -> None:
    """Take the network of `index` for `owner` (a state directory), or refuse: another
    onepane that runs holds it."""
    with _table(path) as table:
        held = table.get(str(index))
        if (isinstance(held, dict) and held.get("owner") != owner and _alive(held.get("pid"))
                and held.get("pid") != os.getpid()):
            raise Conflict(f"the network of index {index} (10.200.{index}.0/24, namespace "
                           f"{held.get('namespace')}) belongs to the onepane of "
                           f"{held.get('owner')} (pid {held.get('pid')}), which runs; give "
                           f"{namespace.removeprefix('op-')} another options.index",
                           field="options.index")
        table[str(index)] = {"owner": owner, "pid": os.getpid(), "namespace": namespace}


def release(index: int, owner: str, path: Path = CLAIMS) -> None:
    with _table(path) as table:
        held = table.get(str(index))
        if isinstance(held, dict) and held.get("owner") == owner:
            del table[str(index)]


def owner_of(index: int, path: Path = CLAIMS) -> str | None:
    with _table(path) as table:
        held = table.get(str(index))
        return str(held.get("owner")) if isinstance(held, dict) else None

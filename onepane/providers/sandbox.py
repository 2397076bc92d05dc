"""Process instances run confined: a uid of their own and a view of the files that is theirs.

An app image is code an operator uploads; onepane runs as root. Unconfined, an operator token
was a root shell on the host (the state directory, the secret key, the configuration's cloud
credentials). Each instance therefore runs as an unprivileged uid of its own, with no groups and
no_new_privs, in a mount namespace where onepane's state directory and root's home are empty
tmpfs except for the instance's app image (read-only), its own folder (read-only) with its data
directory and its attached volumes, and where the configuration file reads as empty.
sandbox_exec.py does it, between the fork and the app's exec.

The uids come from a range no distribution hands out (above 2^24, like systemd's dynamic users
leave alone); every location of this process takes from one table so that two instances never
share a uid while onepane knows of both.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import sys
import threading
import zlib
from pathlib import Path

from ..errors import PermanentProviderError

UID_BASE = 0x1000000  # 16,777,216: above any distribution's and systemd's ranges
UID_SPAN = 0x1000000
_EXEC = Path(__file__).with_name("sandbox_exec.py")
_hidden_dirs: set[str] = set()
_hidden_files: set[str] = set()
_taken: set[int] = set()
_lock = threading.Lock()


def hide(path: Path) -> None:
    """A file (the configuration) or a folder no instance may read, whatever its mode."""
    resolved = str(path.resolve())
    with _lock:
        (_hidden_dirs if path.is_dir() else _hidden_files).add(resolved)


def claim_uid(location: str, instance_id: str, wanted: int | None = None) -> int:
    """The instance's uid: the one its record holds, else a stable one derived from its
    name, moved on past any uid another instance of this process holds."""
    with _lock:
        if wanted is not None:
            _taken.add(wanted)
            return wanted
        uid = UID_BASE + zlib.crc32(f"{location}/{instance_id}".encode()) % UID_SPAN
        while uid in _taken:
            uid = UID_BASE + (uid - UID_BASE + 1) % UID_SPAN
        _taken.add(uid)
        return uid


def release_uid(uid: int | None) -> None:
    with _lock:
        _taken.discard(uid or -1)


def _interpreter(hidden: list[str]) -> list[tuple[str, bool]]:
    """onepane's Python (`{python}` in app manifests), read-only, where a hidden folder would
    cover it (an interpreter built under root's home)."""
    out = []
    for prefix in sorted({sys.base_prefix, sys.prefix}):
        real = str(Path(prefix).resolve())
        if any(real == h or real.startswith(h + "/") for h in hidden):
            out.append((real, False))
    return out


def _opaque_ancestor(path: str) -> str | None:
    """The outermost folder above `path` that other users cannot pass through (a 0700 temp
    folder, a home): hidden too, so that what is revealed under it is reachable."""
    for parent in reversed(Path(path).parents):
        with contextlib.suppress(OSError):
            if not parent.stat().st_mode & stat.S_IXOTH:
                return str(parent)
    return None


def confined_argv(argv: list[str], *, uid: int, cwd: Path, state_dir: Path, instance_dir: Path,
                  volumes: list[Path]) -> list[str]:
    """The argv that runs `argv` confined. The instance sees its folder read-only (its record,
    user data, keys: onepane's to write, or a process could point its record's pid at
    another process for onepane to kill) and writes only to its `data` folder and volumes,
    which are handed to its uid here."""
    if os.geteuid() != 0:
        raise PermanentProviderError(
            "process instances run as users of their own, which needs onepane to run as root")
    data_dir = instance_dir / "data"
    data_dir.mkdir(mode=0o700, exist_ok=True)
    for path in (data_dir, *volumes):
        os.chown(path, uid, uid)
    with _lock:
        hide_dirs = sorted(_hidden_dirs | {str(state_dir.resolve()), str(Path.home())})
        hide_files = sorted(_hidden_files)
    reveal = [*_interpreter(hide_dirs), (str(cwd), False), (str(instance_dir), False),
              (str(data_dir), True), *((str(v), True) for v in volumes)]
    hide_dirs = sorted({*hide_dirs, *filter(None, (_opaque_ancestor(p) for p, _ in reveal))})
    cfg = {"uid": uid, "cwd": str(cwd), "reveal": reveal, "hide_dirs": hide_dirs,
           "hide_files": hide_files}
    return [sys.executable, "-I", "-S", str(_EXEC), json.dumps(cfg), "--", *argv]

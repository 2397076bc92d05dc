"""The first program of every process instance: it confines itself, then becomes the app.

Run as root by the process providers (`python -I -S sandbox_exec.py CONFIG -- ARGV...`), it
takes a mount namespace of its own, lays a tmpfs over every hidden directory (onepane's state
directory: its database, keys, tokens, other instances), binds back only what this instance may
see (its app image read-only, its own data directory, its volumes), covers hidden files (the
configuration with its cloud credentials) with /dev/null, drops to the instance's own uid with
no supplementary groups and no way to gain privileges again, and execs the app. The pid does
not change on the way, so onepane's record of the process stays true.

Standard library only and no site packages: it runs before anything else of the instance and
must stay small, fast and free of onepane's imports (it is executed as a file, not imported).
"""

from __future__ import annotations

import ctypes
import json
import os
import sys
from typing import TypedDict

CLONE_NEWNS = 0x00020000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_REMOUNT, MS_BIND, MS_REC = 1, 2, 4, 32, 4096, 16384
MS_PRIVATE = 1 << 18
PR_SET_NO_NEW_PRIVS = 38
EXIT_SANDBOX = 126  # like a shell's "found but cannot run": the app never started

_libc = ctypes.CDLL(None, use_errno=True)


class Confinement(TypedDict):
    """What the parent decided (sandbox.py), passed as one JSON argument."""

    uid: int
    cwd: str
    reveal: list[tuple[str, bool]]  # path, writable
    hide_dirs: list[str]
    hide_files: list[str]


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _enc(s: str | None) -> bytes | None:
    return s.encode() if s is not None else None


def _mount(source: str | None, target: str, fstype: str | None, flags: int,
           data: str | None = None) -> None:
    enc = _enc
    _check(_libc.mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)),
           f"mount {target}")


def confine(cfg: Confinement) -> None:
    """Everything before the exec; raises OSError when the confinement cannot be made (the
    instance then does not start: running it unconfined is never the fallback)."""
    _check(_libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    _mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing of ours leaks to the host's namespace
    reveal = [(str(p), bool(rw), os.open(str(p), os.O_PATH)) for p, rw in cfg["reveal"]]
    for d in cfg["hide_dirs"]:
        if os.path.isdir(d):
            _mount("tmpfs", d, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=64k")
    for path, rw, fd in reveal:
        if os.path.isdir(f"/proc/self/fd/{fd}"):
            os.makedirs(path, mode=0o755, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
            if not os.path.exists(path):
                open(path, "x").close()
        _mount(f"/proc/self/fd/{fd}", path, None, MS_BIND)
        flags = MS_REMOUNT | MS_BIND | MS_NOSUID | MS_NODEV | (0 if rw else MS_RDONLY)
        _mount(None, path, None, flags)
        os.close(fd)
    for f in cfg["hide_files"]:
        if os.path.isfile(f):
            _mount("/dev/null", f, None, MS_BIND)
    uid = int(cfg["uid"])
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(NO_NEW_PRIVS)")


def main(args: list[str]) -> None:
    if len(args) < 3 or args[1] != "--":
        sys.stderr.write("usage: sandbox_exec.py CONFIG_JSON -- ARGV...\n")
        sys.exit(EXIT_SANDBOX)
    try:
        cfg: Confinement = json.loads(args[0])
        confine(cfg)
        os.chdir(cfg["cwd"])  # after the mounts: a cwd taken before them would see past them
        os.execvp(args[2], args[2:])
    except OSError as exc:
        sys.stderr.write(f"onepane: cannot start the instance confined: {exc}\n")
        sys.exit(EXIT_SANDBOX)


if __name__ == "__main__":
    main(sys.argv[1:])

"""Test helpers: free ports, waiting on conditions with deadlines, cleaning up processes."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections.abc import Callable
from typing import Any, TypeVar

from bench.common import kill_instances

__all__ = ["free_port", "kill_instances", "ok", "port_open", "wait_for"]
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(cond: Callable[[], T], timeout: float = 10.0, interval: float = 0.02,
             what: str = "condition", explain: Callable[[], object] | None = None) -> T:
    """Poll until cond() is truthy; fail with `what` after the deadline. No blind sleeps.

    `explain` is asked at the deadline for what the world looked like: a failure on a machine
    no one here can log into (CI) then says why, not only that it waited."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = cond()
            if value:
                return value
        except AssertionError:
            raise  # the condition says it can never come true (e.g. the process died)
        except Exception as exc:
            last_exc = exc
        time.sleep(interval)
    seen = ""
    if explain is not None:
        try:
            seen = f"; seen: {explain()}"
        except Exception as exc:  # the explanation must never hide the failure
            seen = f"; explain() failed: {exc!r}"
    raise AssertionError(f"timed out after {timeout}s waiting for {what} "
                         f"(last error: {last_exc}){seen}")


def port_open(host: str, port: int, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def ok(r: subprocess.CompletedProcess[str]) -> Any:
    """A CLI run that must succeed: its JSON output parsed (or its text)."""
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout) if r.stdout.strip().startswith(("{", "[")) else r.stdout

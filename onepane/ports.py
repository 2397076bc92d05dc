"""Is a port free? Asked before anything listens, so that a busy port is a clear error that
names the setting to change, not a half-started onepane."""

from __future__ import annotations

import socket

from .errors import Conflict


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def check_free(host: str, port: int, *, what: str, field: str, hint: str,
               udp: bool = False) -> None:
    """Raise a Conflict (exit 4 in the CLI, 409 in the API) naming `field` if host:port is
    taken. Port 0 means "any free one" and is always fine."""
    if port == 0:
        return
    kind = socket.SOCK_DGRAM if udp else socket.SOCK_STREAM
    with socket.socket(socket.AF_INET, kind) as s:
        if not udp:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            raise Conflict(f"cannot {what} on {host}:{port}: {exc.strerror}; {hint}",
                           field=field) from exc

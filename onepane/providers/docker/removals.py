"""Containers destroyed while their host was silent, removed when it answers again.

A deployment replaces the containers of a host that stops answering; destroying the old ones
cannot reach that host. What could not be done is kept in the location's state folder (it
outlives onepane) and done the first time the host answers, so a host that comes back never
adds a replica twice.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

from ...errors import InvalidInput, TransientProviderError
from .engines import DockerEngines


class Removals:
    def __init__(self, path: Path, engines: DockerEngines) -> None:
        self.path = path
        self.engines = engines

    def remember(self, host: str, name: str) -> None:
        pending = self._read()
        if name not in pending.setdefault(host, []):
            pending[host].append(name)
        self._write(pending)

    def carry_out(self) -> list[str]:
        """Remove what is pending on the hosts that answer; what was done, as sentences."""
        pending = self._read()
        if not pending:
            return []
        import docker
        left: dict[str, list[str]] = {}
        said = []
        for host, names in pending.items():
            try:
                client = self.engines.client(host)
            except (TransientProviderError, InvalidInput):
                left[host] = names
                continue
            for name in names:
                with contextlib.suppress(docker.errors.NotFound):
                    client.containers.get(name).remove(force=True)
                said.append(f"{name}: removed from {host}, which answers again (it was "
                            "destroyed while the host was silent)")
        self._write(left)
        return said

    def _read(self) -> dict[str, list[str]]:
        with contextlib.suppress(FileNotFoundError, ValueError):
            return dict(json.loads(self.path.read_text()))
        return {}

    def _write(self, pending: dict[str, list[str]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(pending))

"""The connections to one location's hypervisor hosts, and what onepane knows of the hosts that
do not answer.

A host is reached only through its libvirt connection URI. Two things make that usable at
scale: a host whose link is cut must fail a call at once (libvirt alone waits for TCP's own
time-out, minutes), and a host that just failed that way is not asked again for a moment, so
that one silent host does not make every listing wait. Keepalive (which needs libvirt's event
loop in the client) ends a connection whose host stops answering in ~8 s.
"""

from __future__ import annotations

import contextlib
import os
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ...errors import InvalidInput, OnepaneError, TransientProviderError
from .provider import _libvirt

KEEPALIVE_S, KEEPALIVE_COUNT = 2, 3  # a host that stops answering fails its calls in ~8 s
CONNECT_TIMEOUT_S = 2.0
RETRY_DOWN_S = 2.0  # a silent host is not asked again sooner (a refusal is asked at once)
DEFAULT_PORTS = {"qemu+tls": 16514, "qemu+tcp": 16509, "qemu+ssh": 22}
TLS_KEYS = ("tls_ca", "tls_cert", "tls_key")

_events_started = threading.Lock()
_events_running = False


class HostConnections:
    """One open connection per host (or the network storage), opened again when it died.

    `uri(name)` says where a name lives (it raises NotFound for a name that is not a host),
    `names()` the hosts in order; both follow the location's options as hosts come and go."""

    def __init__(self, location: str, root: Path, uri: Callable[[str], str],
                 names: Callable[[], list[str]], credentials: dict[str, str] | None) -> None:
        self.location = location
        self.root = root  # where a TLS client key is written while libvirt reads it
        self.uri = uri
        self.names = names
        # onepane's TLS client certificate for qemu+tls:// hosts (PEM): kept encrypted with the
        # location's credentials, on disk only while a connection opens
        self.tls = {k: v for k, v in (credentials or {}).items() if k in TLS_KEYS}
        if self.tls and len(self.tls) != len(TLS_KEYS):
            raise InvalidInput(f"location {location}: TLS credentials need tls_ca, tls_cert and "
                               "tls_key together", field="credentials")
        self.open: dict[str, Any] = {}
        self.down: dict[str, str] = {}  # host -> why it does not answer
        self.down_since: dict[str, float] = {}  # host -> when it stopped answering
        self._retry_at: dict[str, float] = {}  # host -> not asked again before (it failed)
        self._locks: dict[str, threading.Lock] = {}
        self._locks_lock = threading.Lock()

    def conn(self, name: str) -> Any:
        """The host's connection, opened (with keepalive) when it is not alive. A host whose
        port does not answer within CONNECT_TIMEOUT_S fails at once."""
        uri = self.uri(name)  # a clear NotFound for a name that is not a host here
        lv = _libvirt()
        with self._lock(name):
            c = self.open.get(name)
            if c is not None:
                with contextlib.suppress(Exception):
                    if c.isAlive():
                        return c
            if time.monotonic() < self._retry_at.get(name, 0.0):  # it failed a moment ago
                raise TransientProviderError(f"host {name} of {self.location} does not answer: "
                                             f"{self.down.get(name, 'not reachable')}")
            _event_loop()
            try:
                _reachable(uri)
                c = self.open_connection(name)
                c.setKeepAlive(KEEPALIVE_S, KEEPALIVE_COUNT)
            except (OSError, lv.libvirtError) as exc:
                self.down[name] = str(exc) or type(exc).__name__
                self.down_since.setdefault(name, time.monotonic())
                if isinstance(exc, TimeoutError):  # silent (a cut link): every call would wait
                    self._retry_at[name] = time.monotonic() + RETRY_DOWN_S
                raise TransientProviderError(f"host {name} of {self.location} does not answer: "
                                             f"{self.down[name]}") from exc
            self.open[name] = c
            self.down.pop(name, None)
            self.down_since.pop(name, None)
            return c

    def open_connection(self, name: str) -> Any:
        """A new connection to the host. For a qemu+tls:// host with credentials, the client
        certificate and key are written to a private folder for as long as libvirt reads
        them (pkipath) and removed at once."""
        lv = _libvirt()
        uri = self.uri(name)
        if not (self.tls and uri.startswith("qemu+tls://")):
            return lv.open(uri)
        self.root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".pki-", dir=self.root) as pki:
            os.chmod(pki, 0o700)
            for file, key in (("cacert.pem", "tls_ca"), ("clientcert.pem", "tls_cert"),
                              ("clientkey.pem", "tls_key")):
                fd = os.open(Path(pki) / file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w") as f:
                    f.write(self.tls[key])
            return lv.open(f"{uri}{'&' if '?' in uri else '?'}pkipath={pki}")

    def up_hosts(self) -> list[str]:
        """The hosts that answer now, in the location's order (asking each)."""
        up = []
        for name in self.names():
            with contextlib.suppress(OnepaneError):
                self.conn(name)
                up.append(name)
        return up

    def drop(self, name: str) -> None:
        """Forget a host (removed, or fenced): its connection closes, it is not reported."""
        self.down.pop(name, None)
        self.down_since.pop(name, None)
        with contextlib.suppress(Exception):
            self.open.pop(name).close()

    def close(self) -> None:
        for c in list(self.open.values()):
            with contextlib.suppress(Exception):
                c.close()
        self.open.clear()

    def _lock(self, name: str) -> threading.Lock:
        with self._locks_lock:
            return self._locks.setdefault(name, threading.Lock())


def _event_loop() -> None:
    """libvirt's keepalive needs an event loop in the client; one thread for the process."""
    global _events_running
    with _events_started:
        if _events_running:
            return
        lv = _libvirt()
        lv.virEventRegisterDefaultImpl()

        def run() -> None:
            while True:
                lv.virEventRunDefaultImpl()
        threading.Thread(target=run, name="libvirt-events", daemon=True).start()
        _events_running = True


def _reachable(uri: str) -> None:
    """Raise OSError unless the URI's host accepts a TCP connection within CONNECT_TIMEOUT_S."""
    parts = urlsplit(uri)
    port = parts.port or DEFAULT_PORTS.get(parts.scheme, 16514)
    with socket.create_connection((parts.hostname or "", port), timeout=CONNECT_TIMEOUT_S):
        pass

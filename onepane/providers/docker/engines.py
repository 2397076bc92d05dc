"""The connections to one location's Docker Engine hosts: TCP with mutual TLS, or SSH.

Two things make the Docker SDK usable against hosts on the other side of a network. The TLS
material is onepane's (the location's credentials, kept encrypted by the store), so it is loaded
into one SSL context per location — on disk only for the instant the context reads it — and the
SDK's HTTP adapter is given that context instead of file paths (which would also let requests'
CA-bundle environment variables replace the location's CA). And a host that does not answer
must fail a call at once: the SDK alone waits for its read time-out on every call, so a host
that failed a moment ago is not asked again for RETRY_DOWN_S, and each use starts with a
bounded TCP connect.

An ssh:// host is reached as Docker's own CLI reaches one: an SSH session running `docker
system dial-stdio` on the host (the SDK's paramiko transport), with the location's private key
and the hosts' keys from its credentials — never an agent, ~/.ssh, or a key accepted on first
use.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import requests
from docker.transport.sshconn import SSHHTTPAdapter
from requests.adapters import HTTPAdapter

from ...errors import (
    Conflict,
    InvalidInput,
    NotFound,
    OnepaneError,
    PermanentProviderError,
    TransientProviderError,
)

API_VERSION = "1.41"  # Docker Engine 20.10 and later answer it; pinned so that no call probes
CONNECT_TIMEOUT_S = 2.0
CALL_TIMEOUT_S = 60
RETRY_DOWN_S = 2.0
SSH_POOL = 8  # HTTP connections (SSH sessions) kept per ssh:// host
TLS_KEYS = ("tls_ca", "tls_cert", "tls_key")


def tls_context(location: str, credentials: dict[str, str]) -> ssl.SSLContext:
    """The location's CA and onepane's client certificate (PEM, from its credentials)."""
    tls = {k: v for k, v in credentials.items() if k in TLS_KEYS}
    if len(tls) != len(TLS_KEYS):
        raise InvalidInput(f"location {location}: a docker location needs tls_ca, tls_cert and "
                           "tls_key in its credentials (mutual TLS to every host)",
                           field="credentials")
    ctx = ssl.create_default_context(cadata=tls["tls_ca"])
    with tempfile.TemporaryDirectory(prefix="onepane-docker-tls-") as tmp:
        cert, key = Path(tmp) / "cert.pem", Path(tmp) / "key.pem"
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(tls["tls_key"])
        cert.write_text(tls["tls_cert"])
        try:
            ctx.load_cert_chain(cert, key)
        except ssl.SSLError as exc:
            raise InvalidInput(f"location {location}: tls_cert and tls_key do not make a "
                               f"client certificate ({exc.reason})",
                               field="credentials") from None
    return ctx


class _ContextAdapter(HTTPAdapter):
    """requests' adapter with one SSL context, and no per-request CA or certificate files."""

    def __init__(self, ctx: ssl.SSLContext) -> None:
        self.ctx = ctx
        super().__init__(pool_connections=4, pool_maxsize=16)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["ssl_context"] = self.ctx
        super().init_poolmanager(*args, **kwargs)

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        """The context verifies (the location's CA, the host's address); nothing to add."""

    def build_connection_pool_key_attributes(self, request: Any, verify: Any,
                                             cert: Any = None) -> tuple[dict[str, Any],
                                                                        dict[str, Any]]:
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(
            request, verify, cert)
        for k in ("ca_certs", "ca_cert_dir", "cert_reqs", "cert_file", "key_file"):
            pool_kwargs.pop(k, None)
        pool_kwargs["ssl_context"] = self.ctx
        return host_params, pool_kwargs


@dataclass(frozen=True)
class HostUrl:
    scheme: str  # tcp (mutual TLS) or ssh
    address: str
    port: int
    user: str


def parse_url(url: str, field: str) -> HostUrl:
    parts = urlsplit(url)
    if parts.scheme not in ("tcp", "ssh") or not parts.hostname:
        raise InvalidInput(f"{url!r}: a docker host is tcp://ADDRESS:PORT (mutual TLS with the "
                           "location's certificates) or ssh://USER@ADDRESS[:PORT] (the "
                           "location's SSH key; the host's docker CLI answers)", field=field)
    default = 2376 if parts.scheme == "tcp" else 22
    return HostUrl(parts.scheme, parts.hostname, parts.port or default, parts.username or "root")


class _KeyedSSHAdapter(SSHHTTPAdapter):
    """The SDK's SSH transport (paramiko, `docker system dial-stdio` on the host) with the
    location's key and known host keys only: no agent, no ~/.ssh, no host key accepted on
    first use."""

    def __init__(self, url: HostUrl, key: Any, known_hosts: str) -> None:
        self._url, self._key, self._known = url, key, known_hosts
        # every pooled HTTP connection is an SSH session of one connection: sshd's MaxSessions
        # (10 by default) must be above SSH_POOL (docs/containers.md)
        super().__init__(f"ssh://{url.user}@{url.address}:{url.port}", timeout=CALL_TIMEOUT_S,
                         max_pool_size=SSH_POOL, shell_out=False)

    def _create_paramiko_client(self, base_url: str) -> None:
        import paramiko
        self.ssh_client = paramiko.SSHClient()
        keys = self.ssh_client.get_host_keys()
        for line in self._known.splitlines():
            entry = paramiko.hostkeys.HostKeyEntry.from_line(line)
            if entry is not None and entry.key is not None:
                for name in entry.hostnames:
                    keys.add(name, entry.key.get_name(), entry.key)
        self.ssh_client.set_missing_host_key_policy(paramiko.RejectPolicy())
        self.ssh_params = {"hostname": self._url.address, "port": self._url.port,
                           "username": self._url.user, "pkey": self._key,
                           "allow_agent": False, "look_for_keys": False,
                           "timeout": CONNECT_TIMEOUT_S, "banner_timeout": 5,
                           "auth_timeout": 5}


def ssh_key(location: str, credentials: dict[str, str]) -> tuple[Any, str]:
    """(the private key, known_hosts) of a location with ssh:// hosts."""
    if not credentials.get("ssh_key") or not credentials.get("ssh_known_hosts"):
        raise InvalidInput(f"location {location}: ssh:// docker hosts need ssh_key (onepane's "
                           "private key) and ssh_known_hosts (the hosts' keys: none is "
                           "accepted on first use) in its credentials", field="credentials")
    import paramiko
    for kind in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
        try:
            return kind.from_private_key(io.StringIO(credentials["ssh_key"])), \
                credentials["ssh_known_hosts"]
        except (paramiko.SSHException, ValueError):
            continue
    raise InvalidInput(f"location {location}: ssh_key is not an unencrypted Ed25519, ECDSA or "
                       "RSA private key", field="credentials")


class DockerEngines:
    """One SDK client per host, with the hosts that do not answer and why."""

    def __init__(self, location: str, hosts: Callable[[], dict[str, str]],
                 credentials: dict[str, str]) -> None:
        self.location = location
        self.hosts = hosts  # name -> tcp:// or ssh:// URL, as the location's options say now
        schemes = {parse_url(u, "options.hosts").scheme for u in hosts().values()}
        self.ctx = tls_context(location, credentials) if "tcp" in schemes else None
        self.ssh = ssh_key(location, credentials) if "ssh" in schemes else None
        self.clients: dict[str, Any] = {}
        self.down: dict[str, str] = {}
        self.down_since: dict[str, float] = {}
        self._retry_at: dict[str, float] = {}
        self._lock = threading.Lock()

    def client(self, name: str) -> Any:
        """The host's client; TransientProviderError at once for a host that does not answer."""
        url = self.hosts().get(name)
        if url is None:
            raise InvalidInput(f"no docker host {name!r} at {self.location}", field="host")
        where = parse_url(url, "options.hosts")
        address, port = where.address, where.port
        if time.monotonic() < self._retry_at.get(name, 0.0):
            raise TransientProviderError(f"docker host {name} of {self.location} does not "
                                         f"answer: {self.down.get(name, 'not reachable')}")
        try:
            with socket.create_connection((address, port), CONNECT_TIMEOUT_S):
                pass
        except OSError as exc:
            self.mark_down(name, f"{address}:{port}: {exc.strerror or exc}")
            raise TransientProviderError(f"docker host {name} of {self.location} does not "
                                         f"answer: {self.down[name]}") from None
        with self._lock:
            c = self.clients.get(name)
        if c is None:  # opened outside the lock: an SSH handshake takes a while, and fails
            opened = self._open(name, where)
            with self._lock:
                c = self.clients.setdefault(name, opened)
            if c is not opened:
                with contextlib.suppress(Exception):
                    opened.close()
        if name in self.down:
            self.down.pop(name, None)
            self.down_since.pop(name, None)
        return c

    def _open(self, name: str, where: HostUrl) -> Any:
        import docker
        if where.scheme == "tcp":
            assert self.ctx is not None
            c = docker.DockerClient(base_url=f"https://{where.address}:{where.port}", tls=True,
                                    version=API_VERSION, timeout=CALL_TIMEOUT_S)
            c.api.trust_env = False
            c.api.mount("https://", _ContextAdapter(self.ctx))
            return c
        assert self.ssh is not None
        try:
            adapter = _KeyedSSHAdapter(where, *self.ssh)
        except Exception as exc:  # paramiko's: a refused key, an unknown or changed host key
            self.mark_down(name, f"ssh: {exc}")
            raise TransientProviderError(f"docker host {name} of {self.location}: ssh "
                                         f"refused: {exc}") from None
        c = docker.DockerClient(base_url="tcp://127.0.0.1:1", version=API_VERSION,
                                timeout=CALL_TIMEOUT_S)  # no call is made until mounted
        c.api.trust_env = False
        c.api.base_url = "http+docker://ssh"
        c.api.mount("http+docker://ssh", adapter)
        return c

    def mark_down(self, name: str, why: str) -> None:
        self.down[name] = why
        self.down_since.setdefault(name, time.monotonic())
        self._retry_at[name] = time.monotonic() + RETRY_DOWN_S
        with self._lock:
            c = self.clients.pop(name, None)
        if c is not None:
            with contextlib.suppress(Exception):
                c.close()

    def up(self) -> list[str]:
        """The hosts that answer now, in the options' order (one connect each, bounded)."""
        out = []
        for name in self.hosts():
            with contextlib.suppress(TransientProviderError):
                self.client(name)
                out.append(name)
        return out

    def close(self) -> None:
        with self._lock:
            clients, self.clients = list(self.clients.values()), {}
        for c in clients:
            with contextlib.suppress(Exception):
                c.close()


F = TypeVar("F", bound=Callable[..., Any])


def sdk_errors(fn: F) -> F:
    """The Docker SDK's, requests' and paramiko's errors as onepane's: a 404 is NotFound, a
    409 a Conflict, another 4xx the host refusing (permanent), a 5xx or a broken connection
    transient (retried by jobs) — never an unexplained 500 from the API."""
    import docker

    @functools.wraps(fn)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except OnepaneError:
            raise
        except docker.errors.NotFound as exc:
            raise NotFound(f"docker: {exc.explanation or exc}") from None
        except docker.errors.APIError as exc:
            status, why = exc.status_code or 500, f"docker: {exc.explanation or exc}"
            if status == 409:
                raise Conflict(why, field="instance") from None
            if 400 <= status < 500:
                raise PermanentProviderError(why) from None
            raise TransientProviderError(why) from None
        except docker.errors.DockerException as exc:
            raise PermanentProviderError(f"docker: {exc}") from None
        except (requests.RequestException, OSError, EOFError) as exc:
            raise TransientProviderError(f"docker host connection: {exc}") from None
    return wrapped  # type: ignore[return-value]

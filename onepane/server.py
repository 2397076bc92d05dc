"""`onepane up`: wire the store, providers, jobs and sync to the API, and serve."""

from __future__ import annotations

import ipaddress
import logging
import os
from pathlib import Path

import uvicorn

from .api.app import create_app
from .config import Settings
from .core import Core
from .errors import InvalidInput
from .memory import bound_malloc
from .ports import check_free
from .shutdown import remove_pid, write_pid

log = logging.getLogger(__name__)
TOKEN_FILE = "admin.token"


def ensure_admin_token(core: Core) -> str | None:
    """Make the first admin token on first start, readable by the owner only. Returns it only
    when it was just made: it is printed once, never again on later starts (nor logged)."""
    path = core.settings.state_dir / TOKEN_FILE
    if path.exists() or core.tokens.count():
        return None  # made before (or the file was removed on purpose)
    _, token = core.tokens.create("admin", "admin")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return token


def check_dev_mode(settings: Settings) -> None:
    if not settings.dev:
        return
    host = settings.api_host
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise InvalidInput(f"--dev turns authentication off and is allowed on loopback only, "
                           f"not on {host}", field="dev")


def check_ports(settings: Settings) -> None:
    """Before anything starts or "up" is printed: a busy port is the user's to fix."""
    check_free(settings.api_host, settings.api_port, what="serve the API", field="api_port",
               hint="choose another port with --port, ONEPANE_API_PORT or api_port in the file")
    if settings.dns_port is not None:
        check_free(settings.dns_host, settings.dns_port, what="serve DNS", field="dns_port",
                   udp=True, hint="choose another port with --dns-port, ONEPANE_DNS_PORT or "
                   "dns_port in the file (0: any free port; off: no DNS)")


def serve(settings: Settings) -> None:
    check_dev_mode(settings)
    check_ports(settings)
    bound_malloc()
    settings.node_dir.mkdir(parents=True, exist_ok=True)
    core = Core(settings)
    core.start()
    # for `onepane down`; only now: a start refused above (another onepane on this state
    # directory) must not take the pid file of the one that runs
    write_pid(settings.node_dir)
    token = ensure_admin_token(core)
    app = create_app(core)
    base = f"http://{settings.api_host}:{settings.api_port}"
    print(f"onepane is up: {len(core.registry.names())} locations "
          f"({', '.join(core.registry.names())})", flush=True)
    print(f"  console  {base}/", flush=True)
    print(f"  API      {base}/v1   (OpenAPI: {base}/openapi.json, docs: {base}/docs)", flush=True)
    print(f"  EC2      {base}/ec2/   (aws --endpoint-url {base}/ec2/ ec2 ...; keys: onepane keys create)",
          flush=True)
    print(f"  OCCI     {base}/occi/-/", flush=True)
    if core.dns is not None:
        host, port = core.dns.address[:2]
        print(f"  DNS      {host}:{port}   (zone {settings.dns_zone})", flush=True)
    if settings.dev:
        print("  auth     off (--dev, loopback only)", flush=True)
    elif token:
        print(f"  token    {token}   (shown this once; also in {settings.state_dir / TOKEN_FILE},"
              " mode 0600, which the CLI reads)", flush=True)
    elif (settings.state_dir / TOKEN_FILE).exists():
        print(f"  token    in {settings.state_dir / TOKEN_FILE} (the CLI reads it)", flush=True)
    print(f"  state    {settings.db_url.split('@')[-1]}", flush=True)
    if settings.node_name:
        print(f"  node     {settings.node} ({'leader' if core.cluster.is_leader() else 'standby'}"
              f"; nodes: onepane status)", flush=True)
    config = uvicorn.Config(app, host=settings.api_host, port=settings.api_port,
                            log_level="warning", loop="uvloop", http="httptools",
                            access_log=False,  # off at "warning" anyway; its line cost CPU
                            server_header=False,  # one Server header: the front ends' own
                            timeout_graceful_shutdown=3)
    server = uvicorn.Server(config)
    app.state.server = server  # event streams watch it to end cleanly on shutdown
    try:
        server.run()
    finally:
        core.stop()
        remove_pid(settings.node_dir)


def state_token(state_dir: Path) -> str | None:
    path = state_dir / TOKEN_FILE
    return path.read_text().strip() if path.exists() else None

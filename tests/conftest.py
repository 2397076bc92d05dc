"""Shared fixtures: real parts (moto's server, PostgreSQL, onepane itself) started per session."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, sync_playwright

from bench.common import postgres_cluster
from tests.helpers import free_port, kill_instances, port_open, wait_for

VENV_BIN = Path(sys.executable).parent

# ./test runs two pytest-xdist workers (docs/testing.md). Everything that makes network
# namespaces, libvirt daemons, Docker or DNS hosts on this machine shares machine-wide state —
# fixed location indexes, the catch-all blackhole route a fixture adds and removes, host
# routes — so those files run in one worker, one after another ("host-net"); every other file
# is a group of its own, run whole in either worker (its module fixtures set up once).
HOST_NET = frozenset(f"tests/{f}.py" for f in (
    "contract/test_provider_contract", "e2e/test_applications", "e2e/test_console",
    "e2e/test_containers", "e2e/test_ec2_netns", "e2e/test_hosts", "e2e/test_hosts_apps",
    "e2e/test_hosts_crash", "e2e/test_hosts_nodes", "e2e/test_vm",
    "integration/test_damaged_state", "integration/test_docker_hosts",
    "integration/test_failover", "integration/test_gslb", "integration/test_guest_answers",
    "integration/test_host_kept_data", "integration/test_kept_data",
    "integration/test_long_lived", "integration/test_netns_provider"))


def test_group(nodeid: str) -> str:
    path = nodeid.split("::", 1)[0]
    return "host-net" if path in HOST_NET else path


@pytest.hookimpl(optionalhook=True)  # pytest without xdist (-p no:xdist) runs as before
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """xdist's load-by-scope scheduler with test_group as the scope (its `loadgroup` marks
    do not reach its scheduler under pytest 9: tried, tests of one group ran in both
    workers). Scopes go out largest first, each whole to one worker."""
    from xdist.scheduler import LoadScopeScheduling

    class ByGroup(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return test_group(nodeid)
    return ByGroup(config, log)


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    """moto's server: a real EC2/S3 API endpoint on localhost."""
    port = free_port()
    log = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the server
    proc = subprocess.Popen([str(VENV_BIN / "moto_server"), "-p", str(port)], stdout=log,
                            stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: port_open("127.0.0.1", port), 30, what="moto_server")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


@pytest.fixture
def moto(moto_url: str) -> str:
    httpx.post(f"{moto_url}/moto-api/reset")
    return moto_url


def ec2_location(moto_url: str, name: str = "aws-us-east-1") -> dict[str, object]:
    port = int(moto_url.rsplit(":", 1)[1])
    return {"name": name, "provider": "cloud", "driver": "ec2-compat", "region": "us-east-1",
            "credentials": {"key": "AKIDTESTING", "secret": "s3cr3t-never-shown"},
            "options": {"host": "127.0.0.1", "port": port, "secure": False},
            "labels": {"cloud": "aws"}}


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A throwaway PostgreSQL cluster (bench.common.postgres_cluster); ./test installs the
    server."""
    if not sorted(Path("/usr/lib/postgresql").glob("*/bin")) or os.geteuid() != 0:
        pytest.fail("PostgreSQL server not installed (./test installs Debian's postgresql)")
    with postgres_cluster("onepane_test") as url:
        yield url


class Server:
    """`onepane up` as a real process, with its own state directory."""

    def __init__(self, state_dir: Path, config: str, dev: bool = False,
                 port: int | None = None, config_file: str = "onepane.toml") -> None:
        self.state_dir = state_dir
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cfg = state_dir / config_file  # nodes sharing a state directory each have their own
        state_dir.mkdir(parents=True, exist_ok=True)
        # Tests never share the default DNS port (8653): one that needs DNS names its own.
        cfg.write_text(config if "dns_port" in config else "dns_port = 0\n" + config)
        self.log_path = cfg.with_suffix(".log")
        args = [str(VENV_BIN / "onepane"), "up", "--config", str(cfg), "--port", str(self.port),
                "--state-dir", str(state_dir)]
        if dev:
            args.append("--dev")
        self.proc = subprocess.Popen(args, stdout=self.log_path.open("wb"),
                                     stderr=subprocess.STDOUT)
        wait_for(self._healthy, 60, what="onepane up")
        self.token = (state_dir / "admin.token").read_text().strip() if not dev else None

    def _healthy(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"onepane exited: {self.log_path.read_text()}")
        try:
            return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def log(self) -> str:
        return self.log_path.read_text()

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        kill_instances(self.state_dir)


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[object]:
    servers: list[Server] = []

    def start(config: str = "", dev: bool = False) -> Server:
        s = Server(tmp_path / f"state{len(servers)}", config, dev)
        servers.append(s)
        return s
    yield start
    for s in servers:
        s.stop()


@pytest.fixture
def page() -> Iterator[Page]:
    """A page in Debian's chromium, headless, through Playwright; dialogs are accepted."""
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True)
        pg = browser.new_page(viewport={"width": 1280, "height": 800})
        pg.on("dialog", lambda d: d.accept())
        yield pg
        browser.close()


@pytest.fixture(scope="session")
def guest_disk(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bootable test guest (scripts/build-test-disk.sh), built once per run (~5 s)."""
    out = tmp_path_factory.mktemp("guest")
    subprocess.run([str(Path(__file__).resolve().parents[1] / "scripts" / "build-test-disk.sh"),
                    str(out)], check=True, capture_output=True, timeout=300)
    return out / "guest.qcow2"

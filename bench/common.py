"""Shared bench plumbing: a real `onepane up`, moto's server, percentiles, the RESULT line."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            httpx.get(url, timeout=1)
            return
        time.sleep(0.05)
    raise SystemExit(f"{url} did not come up")


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen([str(BIN / "moto_server"), "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(url + "/moto-api/")
        yield url
    finally:
        proc.terminate()
        proc.wait()


@contextlib.contextmanager
def onepane(state_dir: Path, config: str) -> Iterator[tuple[str, str, subprocess.Popen[bytes]]]:
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / "onepane.toml").write_text(config)
    port = free_port()
    proc = subprocess.Popen([str(BIN / "onepane"), "up", "--config", str(state_dir / "onepane.toml"),
                             "--state-dir", str(state_dir), "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(url + "/healthz")
        yield url, (state_dir / "admin.token").read_text().strip(), proc
    finally:
        proc.terminate()
        proc.wait()
        kill_instances(state_dir)


def kill_instances(state_dir: Path) -> None:
    """Kill every instance process and data plane a run started (they outlive onepane)."""
    groups = []
    for rec in state_dir.glob("locations/*/instances/*/instance.json"):
        groups.append(f"{rec.parts[-4]}-{rec.parts[-2]}")  # the local provider's cgroup key
        with contextlib.suppress(Exception):
            pid = json.loads(rec.read_text()).get("pid")
            if pid:
                os.killpg(pid, signal.SIGKILL)
    remove_cgroups(groups)
    # data planes: a node's own are under nodes/NAME/ when several share the directory
    for pidfile in [*state_dir.glob("traffic/*.pid"), *state_dir.glob("nodes/*/traffic/*.pid")]:
        with contextlib.suppress(Exception):
            os.kill(int(pidfile.read_text().split()[0]), signal.SIGTERM)


def remove_cgroups(keys: list[str], timeout: float = 5.0) -> None:
    """The killed instances' cgroups (a destroy removes them; a kill does not). Left behind,
    they add up over runs, and each new instance's CPU quota costs the kernel a walk over all
    of them (29,000 of them made a create's quota write 6 ms: bench/provision.py)."""
    from onepane.providers.limits import remove_limits
    deadline = time.monotonic() + timeout
    # a group cannot go while its killed process is still exiting: try again until it can
    left = [k for k in keys if not remove_limits(k)]
    while left and time.monotonic() < deadline:
        time.sleep(0.02)
        left = [k for k in left if not remove_limits(k)]


@contextlib.contextmanager
def postgres_cluster(database: str = "onepane") -> Iterator[str]:
    """A throwaway PostgreSQL (Debian's server; initdb as the postgres user, trust on
    loopback, no fsync) with one database; yields its SQLAlchemy URL. Needs root."""
    bins = sorted(Path("/usr/lib/postgresql").glob("*/bin"))
    if not bins:
        raise SystemExit("PostgreSQL server not installed (./test installs Debian's postgresql)")
    pgbin = bins[-1]
    d = Path(tempfile.mkdtemp(prefix="pgtest."))
    shutil.chown(d, "postgres")
    d.chmod(0o700)
    port = free_port()

    def pg(*args: str) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", *args], check=True,
                       capture_output=True)
    try:
        pg(str(pgbin / "initdb"), "-D", str(d / "data"), "-U", "postgres", "-A", "trust",
           "--no-sync", "-E", "UTF8", "--locale=C.UTF-8")
        pg(str(pgbin / "pg_ctl"), "-D", str(d / "data"), "-l", str(d / "log"), "-w", "-t", "30",
           "-o", f"-c listen_addresses=127.0.0.1 -p {port} -k {d} -c fsync=off "
           "-c synchronous_commit=off", "start")
        try:
            pg(str(pgbin / "createdb"), "-h", str(d), "-p", str(port), database)
            yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/{database}"
        finally:
            pg(str(pgbin / "pg_ctl"), "-D", str(d / "data"), "-m", "immediate", "-w", "stop")
    finally:
        shutil.rmtree(d, ignore_errors=True)


def percentile(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


def result(name: str, value: float, unit: str, op: str, target: float) -> None:
    print(f"RESULT {name} {value:.3f} {unit} target {op} {target}", flush=True)


def three_locations(moto: str, extra: str = "") -> str:
    """dc-a and dc-b (processes) and `aws` (EC2 on moto's server): the benches' setup."""
    port = int(moto.rsplit(":", 1)[1])
    return f"""sync_interval = 30
dns_port = 0
{extra}
[locations.dc-a]
provider = "local"
[locations.dc-b]
provider = "local"
[locations.aws]
provider = "cloud"
driver = "ec2-compat"
region = "us-east-1"
credentials = {{ key = "k", secret = "s" }}
options = {{ host = "127.0.0.1", port = {port}, secure = false }}
"""


def toml_value(value: Any) -> str:
    """A value as TOML writes it inline (strings and keys quoted as JSON does, which TOML reads)."""
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {toml_value(v)}"
                                for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)


def location_toml(name: str, provider: str, options: dict[str, Any],
                  credentials: dict[str, str]) -> str:
    """One [locations.NAME] table of onepane.toml (hosts, certificates: whatever it holds)."""
    return (f"[locations.{name}]\nprovider = {json.dumps(provider)}\n"
            f"options = {toml_value(options)}\ncredentials = {toml_value(credentials)}\n")


def create_and_wait(http: httpx.Client, body: dict[str, Any], wait: float = 30) -> None:
    """POST /v1/instances as a client that waits for the job (POST ?wait=, then GET ?wait= if
    the wait was over first), without polling; exits naming the job when it failed."""
    r = http.post("/v1/instances", params={"wait": wait}, json=body)
    r.raise_for_status()
    job, status = r.json()["id"], r.json()["status"]
    while status not in ("succeeded", "failed"):
        status = http.get(f"/v1/jobs/{job}", params={"wait": wait}).json()["status"]
    if status != "succeeded":
        raise SystemExit(f"job {job} failed: {http.get(f'/v1/jobs/{job}').json()}")


def round_line(n: int, reference: str, times: dict[str, float], count: int) -> str:
    """One round of a bench that times the same work directly and through onepane's API."""
    return (f"  round {n + 1}: {reference} {times['direct']:6.2f} s "
            f"({count / times['direct']:5.1f}/s), through onepane's API {times['api']:6.2f} s "
            f"({count / times['api']:5.1f}/s): {times['api'] / times['direct']:.3f}")


def wait_until(cond: Callable[[], bool], timeout: float, failure: str) -> None:
    """Wait for `cond` (every 0.5 s); the bench exits with `failure` past the deadline."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise SystemExit(failure)
        time.sleep(0.5)


def answers_http(address: str, path: str = "/", timeout: float = 1.0) -> bool:
    """Whether http://ADDRESS/PATH answers 200 within `timeout` (a guest that is up)."""
    try:
        conn = http.client.HTTPConnection(address, 80, timeout=timeout)
        conn.request("GET", path)
        ok = conn.getresponse().status == 200
        conn.close()
        return ok
    except (OSError, http.client.HTTPException):
        return False

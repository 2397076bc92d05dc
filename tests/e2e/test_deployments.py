"""Deployments through the CLI against a running `onepane up`: apply, move, fail over, DNS, and
the data plane outliving the control plane."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import dns.message
import dns.query
import dns.rcode
import httpx
import pytest

from onepane.traffic.drill import Load
from tests.conftest import VENV_BIN
from tests.e2e.test_cli import cli
from tests.helpers import free_port, port_open, wait_for


def spec(port: int, data_plane: str = "builtin") -> str:
    return f"""
name: shop
image: httpecho
size: nano
replicas: {{dc-a: 1, dc-b: 1}}
listen: 127.0.0.1:{port}
data_plane: {data_plane}
health: {{interval: 0.2, timeout: 0.3, rise: 2, fall: 2}}
traffic: {{mode: active-passive, order: [dc-a, dc-b]}}
"""


def served_by(port: int) -> str:
    return str(httpx.get(f"http://127.0.0.1:{port}/", timeout=5).json()["location"])


def deployment(server: Any) -> dict[str, Any]:
    r = cli(server, "-o", "json", "deployments", "show", "shop")
    assert r.returncode == 0, r.stderr
    return dict(json.loads(r.stdout))


def test_apply_move_failover_dns(start_server: Any, tmp_path: Path) -> None:
    dns_port = free_port()
    server = start_server(f"sync_interval = 0.5\ndns_port = {dns_port}\n")
    port = free_port()
    f = tmp_path / "shop.yaml"
    f.write_text(spec(port))
    r = cli(server, "deployments", "apply", "-f", str(f))
    assert r.returncode == 0, r.stderr
    wait_for(lambda: all(v["up"] for v in deployment(server)["status"]["locations"].values()),
             30, what="both replicas healthy")
    assert deployment(server)["primary"] == "dc-a" and served_by(port) == "dc-a"

    assert cli(server, "move", "shop", "--to", "dc-b").returncode == 0
    wait_for(lambda: served_by(port) == "dc-b", 10, what="traffic at dc-b after the move")
    assert cli(server, "failover", "shop").returncode == 0
    wait_for(lambda: served_by(port) == "dc-a", 10, what="traffic back at dc-a")

    r = cli(server, "-o", "json", "events", "--kind", "traffic.")
    kinds = [e["kind"] for e in json.loads(r.stdout)]
    assert kinds == ["traffic.move", "traffic.failover"]

    # DNS answers with what serves now
    q = dns.message.make_query("shop.onepane.local", "SRV")
    answer = dns.query.udp(q, "127.0.0.1", port=dns_port, timeout=2)
    srv = answer.answer[0][0]
    dc_a = [i for i in json.loads(cli(server, "-o", "json", "instances", "list", "--location",
                                      "dc-a").stdout)]
    assert srv.port == dc_a[0]["ports"]["app"]
    nx = dns.query.udp(dns.message.make_query("nope.onepane.local", "A"), "127.0.0.1",
                       port=dns_port, timeout=2)
    assert nx.rcode() == dns.rcode.NXDOMAIN

    # moving to a location that is not healthy is refused, and nothing changes
    r = cli(server, "move", "shop", "--to", "dc-z")
    assert r.returncode == 2 and "dc-z" in r.stderr

    # Prometheus sees the same
    text = httpx.get(f"{server.url}/metrics",
                     headers={"Authorization": f"Bearer {server.token}"}).text
    assert 'onepane_deployment_primary{deployment="shop",location="dc-a"} 1.0' in text
    assert 'onepane_instances{location="dc-b",state="running"} 1.0' in text
    assert 'onepane_dataplane_requests_total{deployment="shop",location="dc-a"}' in text
    assert "onepane_deployment_availability_ratio" in text
    assert httpx.get(f"{server.url}/metrics").status_code == 401

    # the data plane outlives the control plane
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait(10)
    assert all(served_by(port) == "dc-a" for _ in range(20))


def test_delete_removes_replicas_and_data_plane(start_server: Any, tmp_path: Path) -> None:
    server = start_server("sync_interval = 0.5\ndns_port = 0\n")
    port = free_port()
    f = tmp_path / "shop.yaml"
    f.write_text(spec(port))
    assert cli(server, "deployments", "apply", "-f", str(f)).returncode == 0
    wait_for(lambda: served_by(port) == "dc-a", 30, what="shop serving")
    import sqlite3
    with sqlite3.connect(server.state_dir / "onepane.db", timeout=30) as db:  # its history
        db.execute("INSERT INTO metric_samples (ts, deployment, location, instance, name, value, "
                   "step) VALUES (strftime('%s','now') - 60, 'shop', 'dc-a', '', 'rps', 42, 1)")
    assert cli(server, "deployments", "delete", "shop").returncode == 0
    wait_for(lambda: json.loads(cli(server, "-o", "json", "instances", "list").stdout) == [], 30,
             what="replicas destroyed")
    wait_for(lambda: not port_open("127.0.0.1", port), 10, what="data plane stopped")

    # made again under the same name, it starts with no history of the deleted one (issue 31)
    assert cli(server, "deployments", "apply", "-f", str(f)).returncode == 0
    headers = {"Authorization": f"Bearer {server.token}"}
    again = httpx.get(f"{server.url}/v1/deployments/shop", headers=headers).json()
    series = httpx.get(f"{server.url}/v1/deployments/shop/metrics", headers=headers,
                       params={"since": 3600}).json()["series"]
    assert not [s for s in series if s["name"] == "rps" and any(p[1] == 42 for p in s["points"])]
    old = httpx.get(f"{server.url}/v1/events", headers=headers, params={
        "subject": "shop", "kind": "deployment.deleted", "since": again["created_at"]}).json()
    assert old["items"] == []  # the console asks for events since the deployment was made


def test_bad_specs_are_rejected_with_the_field(start_server: Any, tmp_path: Path) -> None:
    server = start_server("dns_port = 0\n")
    f = tmp_path / "bad.yaml"
    f.write_text(spec(free_port()).replace("size: nano", "size: gigantic"))
    r = cli(server, "deployments", "apply", "-f", str(f))
    said = " ".join(r.stderr.split())
    assert r.returncode == 2 and "[size]" in said and "unknown size 'gigantic' at dc-a" in said
    # two mistakes: both said at once, each under its own field (issue 31); `-f -` is stdin
    two = spec(free_port()).replace("size: nano", "size: hugeee").replace("dc-b", "dc-q")
    r = subprocess.run([str(VENV_BIN / "onepane"), "deployments", "apply", "-f", "-"],
                       input=two, capture_output=True, text=True, timeout=60,
                       env={**os.environ, "ONEPANE_URL": server.url,
                            "ONEPANE_TOKEN": server.token or ""})
    said = " ".join(r.stderr.split())
    assert r.returncode == 2 and "unknown size 'hugeee' at dc-a" in said and \
        "replicas.dc-q: no such location" in said, r.stderr
    problem = httpx.post(f"{server.url}/v1/deployments", content=two, headers={
        "Content-Type": "application/yaml", "Authorization": f"Bearer {server.token}"}).json()
    assert {e["field"] for e in problem["errors"]} == {"size", "replicas.dc-q"}, problem
    f.write_text(spec(free_port()).replace("order: [dc-a, dc-b]", "order: [dc-a, mars]"))
    r = cli(server, "deployments", "apply", "-f", str(f))
    assert r.returncode == 2 and "traffic.order" in r.stderr
    assert json.loads(cli(server, "-o", "json", "deployments", "list").stdout) == []
    assert json.loads(cli(server, "-o", "json", "instances", "list").stdout) == []


def test_a_stopped_replica_is_reported_down_and_a_new_deployment_warms_up(
        start_server: Any, tmp_path: Path) -> None:
    server = start_server("sync_interval = 0.3\n")
    port = free_port()
    f = tmp_path / "shop.yaml"
    f.write_text(spec(port))
    assert cli(server, "deployments", "apply", "-f", str(f)).returncode == 0
    first = deployment(server)["status"].get("sla") or {}
    wait_for(lambda: all(v["up"] for v in deployment(server)["status"]["locations"].values()),
             30, what="both replicas healthy")
    sla = deployment(server)["status"]["sla"]
    assert sla["measuring"] is False and sla["availability"] == 100.0
    # booting replicas were not an outage: still measuring, or measured available throughout
    assert first == {} or first["measuring"] is True or first["availability"] == 100.0
    events = json.loads(cli(server, "-o", "json", "events", "--limit", "500").stdout)
    assert not [e for e in events if e["kind"] == "sla.violation"]

    inst = json.loads(cli(server, "-o", "json", "instances", "list", "--location", "dc-b").stdout)[0]
    assert cli(server, "instances", "stop", inst["id"]).returncode == 0
    down = wait_for(lambda: [e for e in json.loads(cli(server, "-o", "json", "events", "--kind",
                                                       "health.down").stdout)
                             if e["data"].get("instance") == inst["id"]], 20,
                    what="health.down for the stopped replica")
    assert "stopped" in down[0]["message"]


@pytest.mark.parametrize(("plane", "sig", "during_failover"), [
    ("builtin", signal.SIGKILL, False), ("haproxy", signal.SIGKILL, True),
    ("builtin", signal.SIGTERM, True), ("haproxy", signal.SIGTERM, False)])
def test_a_control_plane_stopped_and_restarted_costs_no_request(
        start_server: Any, tmp_path: Path, plane: str, sig: int, during_failover: bool) -> None:
    """onepane stopped (SIGTERM) or killed (kill -9) under steady load, also while dc-a's
    replica dies: the data plane keeps serving (moving to dc-b on its own); the restarted
    onepane adopts it and holds its configuration until its own health checks have spoken."""
    from tests.conftest import Server
    config = "sync_interval = 0.5\ndns_port = 0\n"
    server = start_server(config)
    port = free_port()
    f = tmp_path / "shop.yaml"
    f.write_text(spec(port, plane))
    assert cli(server, "deployments", "apply", "-f", str(f)).returncode == 0
    wait_for(lambda: all(v["up"] for v in deployment(server)["status"]["locations"].values()),
             30, what="both replicas healthy")
    load = Load(f"http://127.0.0.1:{port}/", clients=2).start()
    restarted = None
    try:
        wait_for(lambda: len(load.snapshot()) > 50, 10, what="load flowing")
        if during_failover:
            for rec in (server.state_dir / "locations" / "dc-a" / "instances").glob("*/instance.json"):
                os.killpg(json.loads(rec.read_text())["pid"], signal.SIGKILL)
        server.proc.send_signal(sig)
        server.proc.wait(20)
        n = len(load.snapshot())
        wait_for(lambda: len(load.snapshot()) > n + 100, 10, what="served while onepane is dead")
        restarted = Server(server.state_dir, config)
        wait_for(lambda: all(v["up"] for v in deployment(restarted)["status"]["locations"]
                             .values()), 30, what="the restarted onepane's checks")
        n = len(load.snapshot())
        wait_for(lambda: len(load.snapshot()) > n + 200, 10, what="served after the restart")
    finally:
        load.stop()
        if restarted is not None:
            restarted.proc.terminate()
            restarted.proc.wait(15)
    assert load.failures() == [], load.failures()[:3]
    served = {s.where for s in load.snapshot()}
    assert served == ({"dc-a", "dc-b"} if during_failover else {"dc-a"})  # no spurious failover


def test_a_spec_that_would_serve_nowhere_now_needs_force(start_server: Any, tmp_path: Path) -> None:
    server = start_server("sync_interval = 0.5\ndns_port = 0\n")
    f = tmp_path / "night.yaml"
    # open one minute a year: closed now (unless this runs at midnight on New Year's Day)
    f.write_text(spec(free_port()) + 'policies: {schedule: [{cron: "0 0 1 1 *", duration: 60}]}\n')
    r = cli(server, "deployments", "apply", "-f", str(f))
    assert r.returncode == 2 and "would serve nowhere now" in " ".join(r.stderr.split())
    assert cli(server, "-o", "json", "deployments", "list").stdout.strip() == "[]"
    r = cli(server, "-o", "json", "deployments", "apply", "-f", str(f), "--force")
    assert r.returncode == 0, r.stderr
    dep = json.loads(r.stdout)
    assert dep["status"]["observed_generation"] == dep["generation"]  # the new spec's status
    events = json.loads(cli(server, "-o", "json", "events", "--kind", "policy.").stdout)
    assert {e["kind"] for e in events} == {"policy.schedule_off"}  # the first look, said

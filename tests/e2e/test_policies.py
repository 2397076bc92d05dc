"""Policies against a running `onepane up`: a real load spike scales a deployment out and, after
the cooldown, back in; hung and killed replicas are restarted and replaced; placement accepts and
rejects specs by location labels; decisions reach a webhook, signed; metrics are served."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from onepane.policy.alerts import verify
from onepane.traffic.drill import Load
from tests.conftest import Server
from tests.e2e.test_cli import cli
from tests.helpers import free_port, wait_for

SECRET = "webhook-secret-for-the-policy-test"


class Hook(BaseHTTPRequestHandler):
    got: list[tuple[dict[str, str], bytes]] = []

    def do_POST(self) -> None:
        self.got.append((dict(self.headers), self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    hook = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    srv = Server(tmp_path_factory.mktemp("policies"), f"""
sync_interval = 0.5
metrics_interval = 0.5
dns_port = 0
[locations.dc-a]
provider = "local"
labels = {{ country = "de", certifications = "hipaa,pci" }}
[locations.dc-b]
provider = "local"
labels = {{ country = "us", certifications = "pci" }}
[[webhooks]]
url = "http://127.0.0.1:{hook.server_address[1]}/hook"
secret = "{SECRET}"
events = ["policy.*"]
backoff = 0.1
""")
    try:
        yield srv
    finally:
        srv.stop()
        hook.shutdown()
        hook.server_close()


def api(server: Server) -> httpx.Client:
    return httpx.Client(base_url=server.url, timeout=30,
                        headers={"Authorization": f"Bearer {server.token}"})


def apply(server: Server, spec: dict[str, Any]) -> httpx.Response:
    return api(server).post("/v1/deployments", json=spec)


def status(server: Server, name: str) -> dict[str, Any]:
    return dict(api(server).get(f"/v1/deployments/{name}").json()["status"])


def healthy(server: Server, name: str, loc: str) -> int:
    return int((status(server, name).get("locations") or {}).get(loc, {}).get("healthy", 0))


def policy_events(server: Server, name: str, kind: str) -> list[dict[str, Any]]:
    items = api(server).get("/v1/events", params={"kind": f"policy.{kind}", "limit": 100}).json()["items"]
    return [e for e in items if e["subject"] == name]


@pytest.mark.parametrize("data_plane", ["builtin", "haproxy"])
def test_load_spike_scales_out_then_in_after_cooldown(server: Server, data_plane: str) -> None:
    port = free_port()
    Hook.got = []
    r = apply(server, {
        "name": "shop", "image": "httpecho", "size": "nano", "replicas": {"dc-a": 1, "dc-b": 1},
        "data_plane": data_plane,
        "listen": f"127.0.0.1:{port}", "health": {"interval": 0.2, "rise": 1, "fall": 2},
        "policies": {"autoscale": {"metric": "rps_per_replica", "min": 1, "max": 3,
                                   "scale_out_above": 40, "scale_in_below": 5, "sustain": 1,
                                   "cooldown_out": 3, "cooldown_in": 4}}})
    assert r.status_code in (200, 201), r.text
    wait_for(lambda: healthy(server, "shop", "dc-a") == 1, 30, what="first replica healthy")

    load = Load(f"http://127.0.0.1:{port}/", clients=4).start()
    spike = time.monotonic()
    try:
        wait_for(lambda: healthy(server, "shop", "dc-a") >= 2, 30, what="a replica added under load")
        reacted = time.monotonic() - spike
        assert not load.failures()
    finally:
        load.stop()
    stopped = time.monotonic()
    out = policy_events(server, "shop", "scale_out")
    assert out and "rps_per_replica" in out[-1]["message"] and out[-1]["data"]["from"] == 1
    assert status(server, "shop")["locations"]["dc-b"]["desired"] == 1  # the standby is not scaled

    wait_for(lambda: status(server, "shop")["locations"]["dc-a"]["desired"] == 1
             and healthy(server, "shop", "dc-a") == 1, 60, what="scaled back in")
    assert time.monotonic() - stopped >= 1  # not before the sustain, whatever the cooldown left
    back = policy_events(server, "shop", "scale_in")
    assert back and "rps_per_replica" in back[-1]["message"] and "< 5" in back[-1]["message"]
    print(f"scale-out reaction: {reacted:.1f} s")

    # the decisions reached the webhook, signed
    wait_for(lambda: any(h["X-Onepane-Event"] == "policy.scale_in" for h, _ in Hook.got), 10,
             what="scale_in webhook")
    for headers, body in Hook.got:
        assert verify(SECRET, headers["X-Onepane-Signature"], body)
    assert {json.loads(b)["kind"] for _, b in Hook.got} >= {"policy.scale_out", "policy.scale_in"}

    # metrics: stored series and Prometheus
    series = api(server).get("/v1/deployments/shop/metrics", params={"since": 600}).json()["series"]
    names = {s["name"] for s in series}
    assert {"rps", "up", "check_ms", "cpu_percent", "memory_bytes"} <= names
    rps = next(s for s in series if s["name"] == "rps" and s["location"] == "dc-a")
    assert max(p[1] for p in rps["points"]) > 40
    shown = cli(server, "-o", "json", "deployments", "metrics", "shop", "--name", "rps")
    assert shown.returncode == 0 and json.loads(shown.stdout)["series"][0]["name"] == "rps"
    table = cli(server, "deployments", "metrics", "shop", "--name", "memory_bytes").stdout
    assert "MiB" in table, table  # people read MiB, %, ms; JSON keeps raw numbers
    prom = api(server).get("/metrics").text
    assert 'onepane_replica_cpu_percent{deployment="shop"' in prom
    assert 'onepane_policy_decisions_total{deployment="shop",kind="scale_out"}' in prom
    assert api(server).delete("/v1/deployments/shop").status_code == 204
    wait_for(lambda: api(server).get("/v1/deployments/shop").status_code == 404
             and not api(server).get("/v1/instances", params={"tag": "onepane:deployment=shop"}
                                     ).json()["items"], 30, what="shop gone")


def replica(server: Server, name: str) -> tuple[str, int]:
    items = api(server).get("/v1/instances", params={"tag": f"onepane:deployment={name}"}).json()["items"]
    running = [i for i in items if i["state"] == "running"]
    assert len(running) == 1, items
    rec = server.state_dir / "locations" / running[0]["location"] / "instances" / \
        running[0]["provider_id"] / "instance.json"
    return running[0]["id"], int(json.loads(Path(rec).read_text())["pid"])


def test_hung_replica_restarted_killed_one_replaced(server: Server) -> None:
    r = apply(server, {
        "name": "api", "image": "httpecho", "size": "nano", "replicas": {"dc-a": 1},
        "health": {"interval": 0.2, "timeout": 0.3, "rise": 1, "fall": 2},
        # replace_after: 20 checks (4 s) give the restarted process time to start under load
        "policies": {"failure": {"restart_after": 3, "replace_after": 20, "max_restarts": 1}}})
    assert r.status_code in (200, 201), r.text
    wait_for(lambda: healthy(server, "api", "dc-a") == 1, 30, what="replica healthy")
    first, pid = replica(server, "api")

    os.kill(pid, signal.SIGSTOP)  # hung: alive to the provider, dead to the health checks
    wait_for(lambda: policy_events(server, "api", "restart"), 30, what="restart decision")
    wait_for(lambda: healthy(server, "api", "dc-a") == 1 and replica(server, "api")[1] != pid, 30,
             what="restarted replica healthy")
    assert replica(server, "api")[0] == first  # restarted in place, not replaced
    restart = policy_events(server, "api", "restart")[0]
    assert "failed checks in a row" in restart["message"] and restart["data"]["instance"] == first

    _, pid = replica(server, "api")
    os.kill(pid, signal.SIGKILL)  # its one restart is used up: this time it is replaced
    wait_for(lambda: policy_events(server, "api", "replace"), 30, what="replace decision")
    wait_for(lambda: healthy(server, "api", "dc-a") == 1 and replica(server, "api")[0] != first, 30,
             what="replacement healthy")
    assert "after 1 restart(s)" in policy_events(server, "api", "replace")[0]["message"]
    assert policy_events(server, "api", "replace")[0]["data"]["instance"] == first
    assert api(server).delete("/v1/deployments/api").status_code == 204


def test_placement_accepts_and_rejects(server: Server) -> None:
    spec = {"name": "records", "image": "httpecho", "size": "nano", "replicas": {"dc-a": 1, "dc-b": 1},
            "policies": {"placement": {"require": {"country": "de"}}}}
    r = apply(server, spec)
    assert r.status_code == 422
    problem = r.json()
    assert problem["errors"][0]["field"] == "replicas.dc-b"
    assert "needs country=de (the location has country: us)" in problem["detail"]
    assert api(server).get("/v1/deployments/records").status_code == 404  # nothing left behind

    spec["policies"] = {"placement": {"require": {"certifications": ["hipaa"]}}}
    assert apply(server, spec).status_code == 422  # dc-b is pci only
    spec["replicas"] = {"dc-a": 1}
    r = apply(server, spec)
    assert r.status_code in (200, 201), r.text
    wait_for(lambda: healthy(server, "records", "dc-a") == 1, 30, what="placed replica healthy")
    items = api(server).get("/v1/instances", params={"tag": "onepane:deployment=records"}).json()["items"]
    assert {i["location"] for i in items} == {"dc-a"}
    assert api(server).delete("/v1/deployments/records").status_code == 204

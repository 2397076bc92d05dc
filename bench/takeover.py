"""How long the control plane is without a leader when its leader dies, and whether anyone
notices: two onepane nodes on one PostgreSQL, a deployment over two process data centers.

Each round kills (SIGKILL) the primary's replica and, at the same instant, the leading node;
the clock runs from that instant to the failover decision the other node writes as the new
leader. The reference, in the same run, is the same replica kill with the leader alive: the
failover decision's own time (health checks falling). Throughout, a client reads the surviving
node's API every 20 ms and another sends requests through its front door; neither may fail.

    .venv/bin/python bench/takeover.py [--rounds 5]        (root: PostgreSQL's test cluster)
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import BIN, free_port, kill_instances, percentile, postgres_cluster, result, wait_http
from onepane.traffic.drill import Load

HOSTS = {"n1": "127.0.0.1", "n2": "127.0.0.2"}


class Node:
    def __init__(self, state: Path, name: str, common: str) -> None:
        self.name, self.state = name, state
        cfg = state / f"{name}.toml"
        cfg.write_text(f'node_name = "{name}"\nfront_door_host = "{HOSTS[name]}"\n' + common)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen([str(BIN / "onepane"), "up", "--config", str(cfg),
                                      "--state-dir", str(state), "--port", str(self.port)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_http(self.url + "/healthz")
        self.http = httpx.Client(base_url=self.url, timeout=10, headers={
            "Authorization": f"Bearer {(state / 'admin.token').read_text().strip()}"})

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()


def until(check: object, timeout: float, what: str) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            got = check()  # type: ignore[operator]
        except httpx.HTTPError:
            got = None
        if got:
            return got
        time.sleep(0.02)
    raise SystemExit(f"timed out: {what}")


def serving_everywhere(n: Node) -> bool:
    """Both replicas up as the leader sees them *and* in this node's own data plane: each node
    checks the replicas itself, so a standby's front door can lag the leader's status by a
    check or two; a round that started then would kill the only backend it knew of (twenty 503s
    in 36 ms, seen in some runs)."""
    st = n.http.get("/v1/deployments/shop").json()["status"].get("locations", {})
    if not st or not all(v["up"] for v in st.values()):
        return False
    try:
        plane = json.loads((n.state / "nodes" / n.name / "traffic" / "shop.json").read_text())
    except (OSError, ValueError):
        return False
    return all(pool["backends"] for pool in plane["pools"])


def kill_primary_replica(n: Node) -> tuple[float, str]:
    """SIGKILL the replica that serves; returns the wall time of the kill and the primary."""
    dep = n.http.get("/v1/deployments/shop").json()
    inst = n.http.get("/v1/instances", params={"tag": "onepane:deployment=shop",
                                               "location": dep["primary"]}).json()["items"][0]
    pid = next(c.pid for c in psutil.net_connections("tcp") if c.status == psutil.CONN_LISTEN
               and c.laddr.port == inst["ports"]["app"] and c.pid)
    t0 = time.time()
    psutil.Process(pid).kill()
    return t0, dep["primary"]


def failover_after(n: Node, t0: float, since_id: int) -> float:
    """Milliseconds from t0 to the failover event written after event `since_id`."""
    def look() -> float | None:
        items = n.http.get("/v1/events", params={"kind": "traffic.failover", "subject": "shop",
                                                 "after": since_id}).json()["items"]
        return (datetime.fromisoformat(items[0]["ts"]).timestamp() - t0) * 1000 if items else None
    return float(until(look, 20, "the failover decision"))  # type: ignore[arg-type]


def last_event(n: Node) -> int:
    r = n.http.get("/v1/events", params={"before": 2 ** 53, "limit": 1})
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    return int(items[-1]["id"]) if items else 0


class ApiWatch(threading.Thread):
    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.target: Node | None = None
        self.done = threading.Event()
        self.requests = self.failed = 0

    def run(self) -> None:
        while not self.done.wait(0.02):
            node = self.target
            if node is None:
                continue
            self.requests += 1
            try:
                if node.http.get("/v1/locations").status_code != 200:
                    self.failed += 1
            except httpx.HTTPError:
                self.failed += 1


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    takeover: list[float] = []
    reference: list[float] = []
    load_failed = 0
    with postgres_cluster() as db, tempfile.TemporaryDirectory(prefix="onepane-bench-") as tmp:
        state = Path(tmp)
        port = free_port()
        common = (f'database_url = "{db}"\nsync_interval = 2\ndns_port = 0\nnode_timeout = 1.5\n'
                  '[locations.dc-a]\nprovider = "local"\n[locations.dc-b]\nprovider = "local"\n')
        nodes = {"n1": Node(state, "n1", common)}
        nodes["n2"] = Node(state, "n2", common)
        try:
            nodes["n1"].http.post("/v1/deployments", json={
                "name": "shop", "image": "httpecho", "size": "nano",
                "replicas": {"dc-a": 1, "dc-b": 1}, "listen": f"127.0.0.1:{port}",
                "health": {"interval": 0.2, "timeout": 0.3, "rise": 1, "fall": 2},
                "traffic": {"mode": "active-passive", "order": ["dc-a", "dc-b"]}}
            ).raise_for_status()
            watch = ApiWatch()
            watch.start()
            leader, standby = "n1", "n2"
            for _ in range(args.rounds):
                survivor = nodes[standby]
                until(lambda n=survivor: serving_everywhere(n), 60, "both replicas up")
                # the reference: the leader stays, the failover decision's own time
                since = last_event(survivor)
                t0, _ = kill_primary_replica(survivor)
                reference.append(failover_after(survivor, t0, since))
                until(lambda n=survivor: serving_everywhere(n), 60, "the replica replaced")
                # the leader dies with the replica: the standby must take over and decide
                watch.target = nodes[standby]
                load = Load(f"http://{HOSTS[standby]}:{port}/", clients=2).start()
                since = last_event(nodes[standby])
                t0, _ = kill_primary_replica(nodes[standby])
                nodes[leader].kill()
                takeover.append(failover_after(nodes[standby], t0, since))
                load.stop()
                load_failed += len(load.failures())
                nodes[leader] = Node(state, leader, common)  # back, as the standby now
                leader, standby = standby, leader
            watch.done.set()
            watch.join()
        finally:
            for n in nodes.values():
                if n.proc.poll() is None:
                    n.proc.terminate()
                    n.proc.wait()
            kill_instances(state)
    print(f"{args.rounds} rounds; two nodes on PostgreSQL; health every 0.2 s, fall 2")
    print(f"  failover decision, leader alive (reference): p50 {percentile(reference, 50):.0f} ms"
          f", max {max(reference):.0f} ms")
    print(f"  failover decision by the next leader after the leader's death: p50 "
          f"{percentile(takeover, 50):.0f} ms, max {max(takeover):.0f} ms")
    print(f"  API reads on the surviving node: {watch.requests}, failed {watch.failed}; "
          f"requests through its front door that failed: {load_failed}")
    result("leader_takeover_api_failed", watch.failed + load_failed, "requests", "<=", 0)
    result("leader_takeover_ms", max(takeover), "ms", "<=", 3000)


if __name__ == "__main__":
    main()

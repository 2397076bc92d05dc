"""Three onepane nodes on one PostgreSQL: the leader is killed (`kill -9`) while 100 creates
arrive through every node, and the next leader is killed while it fails a deployment over. Every
job ends once, no instance is made twice or left behind, the failover completes under the third
leader, and the survivors' API answers throughout. Also: SQLite refuses a second node."""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
import dns.message
import dns.query
import httpx
import psutil
import pytest
from playwright.sync_api import Page, expect

from onepane.traffic.drill import Load
from tests.conftest import Server, ec2_location
from tests.e2e.test_cli import cli
from tests.e2e.test_crash_drill import fresh_database
from tests.helpers import free_port, kill_instances, wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="PostgreSQL's test cluster needs root")
NODES = ("n1", "n2", "n3")


class Cluster:
    """Nodes sharing one state directory (one machine), each with its own front door."""

    def __init__(self, state: Path, common: str) -> None:
        self.state = state
        self.common = common
        self.nodes: dict[str, Server] = {}

    def start(self, name: str) -> Server:
        host = f"127.0.0.{NODES.index(name) + 1}"
        config = (f'node_name = "{name}"\nfront_door_host = "{host}"\nnode_timeout = 1.5\n'
                  + self.common)
        self.nodes[name] = Server(self.state, config, config_file=f"{name}.toml")
        return self.nodes[name]

    def http(self, name: str) -> httpx.Client:
        s = self.nodes[name]
        return httpx.Client(base_url=s.url, headers={"Authorization": f"Bearer {s.token}"},
                            timeout=10)

    def roles(self, via: str) -> dict[str, str]:
        return {n["name"]: n["role"] for n in self.http(via).get("/v1/nodes").json()}

    def kill(self, name: str) -> None:
        self.nodes[name].proc.send_signal(signal.SIGKILL)
        self.nodes[name].proc.wait(10)

    def close(self) -> None:
        for s in self.nodes.values():
            if s.proc.poll() is None:
                s.proc.terminate()
                s.proc.wait(15)
        kill_instances(self.state)


@pytest.fixture
def cluster(tmp_path: Path, postgres_url: str, moto: str) -> Iterator[Cluster]:
    url = fresh_database(postgres_url, "onepane_nodes")
    aws = ec2_location(moto)
    common = (f'database_url = "{url}"\nsync_interval = 0.5\ndns_port = 0\n'
              '[locations.dc-a]\nprovider = "local"\n[locations.dc-b]\nprovider = "local"\n'
              f'[locations.aws]\nprovider = "cloud"\ndriver = "ec2-compat"\nregion = "us-east-1"\n'
              'credentials = { key = "k", secret = "s" }\n'
              f'options = {{ host = "127.0.0.1", port = {aws["options"]["port"]}, '  # type: ignore[index]
              'secure = false }\n')
    c = Cluster(tmp_path / "state", common)
    try:
        yield c
    finally:
        c.close()


class Watch(threading.Thread):
    """Reads the survivors' API every 50 ms and counts what did not answer 200."""

    def __init__(self, urls: list[tuple[str, str]]) -> None:
        super().__init__(daemon=True)
        self.urls = urls
        self.stop = threading.Event()
        self.requests = 0
        self.failures: list[str] = []
        self.gone: set[str] = set()  # nodes the test is about to kill: not survivors

    def drop(self, url: str) -> None:
        self.gone.add(url)

    def run(self) -> None:
        with httpx.Client(timeout=5) as http:
            while not self.stop.wait(0.05):
                for url, token in self.urls:
                    if url in self.gone:
                        continue
                    self.requests += 1
                    try:
                        r = http.get(f"{url}/v1/locations",
                                     headers={"Authorization": f"Bearer {token}"})
                        if r.status_code != 200:
                            self.failures.append(f"{url}: {r.status_code}")
                    except httpx.HTTPError as exc:
                        if url not in self.gone:  # not killed while this request was out
                            self.failures.append(f"{url}: {exc!r}")


def front_doors(node: Server) -> list[str]:
    """The A records of front.shop.onepane.local from the node's own DNS server."""
    port = int(re.search(r"DNS\s+127\.0\.0\.1:(\d+)", node.log()).group(1))  # type: ignore[union-attr]
    answer = dns.query.udp(dns.message.make_query("front.shop.onepane.local", "A"),
                           "127.0.0.1", port=port, timeout=2)
    return sorted(r.address for rrset in answer.answer for r in rrset)


def replica_pid(port: int) -> int:
    for conn in psutil.net_connections("tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr.port == port and conn.pid:
            return conn.pid
    raise AssertionError(f"nothing listens on {port}")


def test_three_nodes_survive_the_death_of_two_leaders(cluster: Cluster, moto: str,
                                                      page: Page) -> None:
    for name in NODES:
        cluster.start(name)
    assert cluster.roles("n3") == {"n1": "leader", "n2": "standby", "n3": "standby"}

    # an event written by one node reaches another node's event stream
    got: list[str] = []
    s3 = cluster.nodes["n3"]

    def follow() -> None:
        with httpx.stream("GET", f"{s3.url}/v1/events/stream", params={"kind": "location."},
                          headers={"Authorization": f"Bearer {s3.token}"}, timeout=30) as r:
            for line in r.iter_lines():
                if line.startswith("data:"):
                    got.append(line)
                    return
    follower = threading.Thread(target=follow, daemon=True)
    follower.start()
    def poke() -> bool:  # again until the stream, connecting meanwhile, has one
        cluster.http("n2").patch("/v1/locations/dc-a", json={"labels": {"via": "n2"}}
                                 ).raise_for_status()
        return bool(got)
    wait_for(poke, 10, what="n2's event on n3's stream")
    assert "location.labels" in got[0], got
    follower.join(5)

    # a deployment applied through n2, served by every node's own front door
    port = free_port()
    spec = {"name": "shop", "image": "httpecho", "size": "nano",
            "replicas": {"dc-a": 1, "dc-b": 1}, "listen": f"127.0.0.1:{port}",
            "health": {"interval": 0.2, "timeout": 0.3, "rise": 1, "fall": 2},
            "traffic": {"mode": "active-passive", "order": ["dc-a", "dc-b"]}}
    cluster.http("n2").post("/v1/deployments", json=spec).raise_for_status()
    wait_for(lambda: all(v["up"] for v in cluster.http("n3").get("/v1/deployments/shop").json()
                         ["status"].get("locations", {"x": {"up": False}}).values()),
             60, what="shop up at dc-a and dc-b")
    for host in ("127.0.0.1", "127.0.0.2", "127.0.0.3"):
        wait_for(lambda h=host: httpx.get(f"http://{h}:{port}/", timeout=2).status_code == 200,
                 30, what=f"the front door at {host}")
    assert front_doors(cluster.nodes["n3"]) == ["127.0.0.1", "127.0.0.2", "127.0.0.3"]

    # 100 creates through all three nodes; the leader dies after 40 of them
    watch = Watch([(cluster.nodes[n].url, cluster.nodes[n].token or "") for n in ("n2", "n3")])
    watch.start()
    jobs: dict[str, str] = {}  # idempotency key -> job id
    lock = threading.Lock()
    alive = ["n1", "n2", "n3"]
    rr = itertools.count()
    took_by_n1 = [0]

    def create(i: int) -> None:
        key = f"node-drill-{i}"
        body = {"name": f"web-{i}", "location": "aws", "image": "ami-760aaa0f", "size": "t2.micro"}
        for _ in range(20):  # a client retries with the same key on a node that answers
            with lock:
                node = alive[next(rr) % len(alive)]
            try:
                r = cluster.http(node).post("/v1/instances", json=body,
                                            headers={"Idempotency-Key": key})
            except httpx.HTTPError:
                continue
            if r.status_code == 503:  # busy location: come back as Retry-After says
                threading.Event().wait(float(r.headers.get("Retry-After", "1")))
                continue
            assert r.status_code == 202, r.text
            with lock:
                jobs[key] = r.json()["id"]
                if node == "n1" and "n1" in alive:
                    took_by_n1[0] += 1
                    if took_by_n1[0] == 10:
                        # n1 dies the moment it has taken its tenth: that job, at least, is
                        # unfinished (killing it after a whole batch once found all of its
                        # jobs done, and the drill proved nothing)
                        cluster.kill("n1")
                        alive.remove("n1")
            return
        raise AssertionError(f"no node took {key}")

    with ThreadPoolExecutor(6) as pool:  # six clients at once, n1 killed among them
        list(pool.map(create, range(100)))
    assert "n1" not in alive
    assert len(jobs) == 100
    wait_for(lambda: "leader" in cluster.roles("n2").values(), 10, what="a new leader")
    for job in jobs.values():  # every job ends, and well (n1's are taken over)
        final = wait_for(lambda j=job: (x := cluster.http("n3").get(f"/v1/jobs/{j}").json())
                         ["status"] in ("succeeded", "failed") and x, 60, what=f"job {job}")
        assert final["status"] == "succeeded", final
    # n1's front door leaves the DNS answer of every node once n1 is known to be down
    wait_for(lambda: front_doors(cluster.nodes["n2"]) == ["127.0.0.2", "127.0.0.3"], 10,
             what="n1's front door out of DNS")
    # paging back from "the newest" (the console's 2**53) works on PostgreSQL's 32-bit ids
    newest = cluster.http("n3").get("/v1/events", params={"before": 2**53, "limit": 1})
    assert newest.status_code == 200 and len(newest.json()["items"]) == 1, newest.text
    takeovers = cluster.http("n3").get("/v1/events", params={"kind": "cluster.takeover"}).json()
    assert takeovers["items"], "n1 died with no unfinished job: the drill proved nothing"
    ec2 = boto3.client("ec2", endpoint_url=moto, region_name="us-east-1",
                       aws_access_key_id="k", aws_secret_access_key="s")
    made = [i for r in ec2.describe_instances(Filters=[{"Name": "instance-state-name",
                                                        "Values": ["pending", "running"]}])
            ["Reservations"] for i in r["Instances"]]
    rows = [i for i in cluster.http("n2").get("/v1/instances", params={
        "location": "aws", "limit": 1000}).json()["items"]]
    assert len(made) == 100, f"{len(made)} instances at the cloud for 100 creates"
    assert sorted(r["provider_id"] for r in rows) == sorted(i["InstanceId"] for i in made)
    assert sorted(r["name"] for r in rows) == sorted(f"web-{i}" for i in range(100))
    leader = next(n for n, role in cluster.roles("n2").items() if role == "leader")
    survivor = "n3" if leader == "n2" else "n2"

    # the new leader dies just as the primary's replica does: the third one fails over
    load = Load(f"http://127.0.0.{NODES.index(survivor) + 1}:{port}/", clients=2).start()
    try:
        dc_a = next(i for i in cluster.http(survivor).get("/v1/instances", params={
            "tag": "onepane:deployment=shop", "location": "dc-a"}).json()["items"])
        os.kill(replica_pid(dc_a["ports"]["app"]), signal.SIGKILL)
        watch.drop(cluster.nodes[leader].url)
        cluster.kill(leader)
        wait_for(lambda: cluster.http(survivor).get("/v1/deployments/shop").json()["primary"]
                 == "dc-b", 20, what="the failover to dc-b under the third leader")
        assert cluster.roles(survivor)[survivor] == "leader"
        events = cluster.http(survivor).get("/v1/events", params={
            "kind": "traffic.failover", "subject": "shop"}).json()["items"]
        assert len(events) == 1, events
    finally:
        load.stop()
        watch.stop.set()
        watch.join()
    assert watch.failures == [] and watch.requests > 50, watch.failures[:5]
    assert load.failures() == [], load.failures()[:5]
    # nothing lost or doubled by the takeovers: one row per job, no job run twice
    all_jobs = cluster.http(survivor).get("/v1/jobs", params={"limit": 1000}).json()["items"]
    assert len({j["id"] for j in all_jobs}) == len(all_jobs)

    # the survivor says who leads, in `onepane status` and in the console
    wait_for(lambda: cluster.roles(survivor)[leader] == "down", 10, what="the leader seen down")
    status = json.loads(cli(cluster.nodes[survivor], "status", "-o", "json").stdout)
    assert {n["name"]: n["role"] for n in status["nodes"]} == {
        "n1": "down", leader: "down", survivor: "leader"}
    assert any(f"node {leader}" in line and "down" in line for line in status["todo"])
    s = cluster.nodes[survivor]
    page.goto(s.url + "/")
    page.fill("#token", s.token or "")
    page.click("#login-form button")
    expect(page.locator("#nodes")).to_have_text(f"1 of 3 nodes up · leader {survivor}",
                                                timeout=10_000)
    expect(page.locator("#alerts")).to_contain_text(f"node {leader}")


def test_sqlite_refuses_a_second_node(start_server: Any, tmp_path: Path) -> None:
    s = start_server("")
    import subprocess

    from onepane.shutdown import PID_FILE
    from tests.conftest import VENV_BIN
    pid_file = next(s.state_dir.rglob(PID_FILE))
    before = pid_file.read_text()
    r = subprocess.run([str(VENV_BIN / "onepane"), "up", "--state-dir", str(s.state_dir),
                        "--port", str(free_port()), "--dns-port", "off"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert "SQLite" in r.stderr + r.stdout and "PostgreSQL" in r.stderr + r.stdout
    assert "Traceback" not in r.stderr
    # the refused start left the running one's pid file alone: `onepane down` still stops it
    assert pid_file.read_text() == before  # issue 31
    # event cursors out of range are the caller's error, never the store's
    http = httpx.Client(base_url=s.url, headers={"Authorization": f"Bearer {s.token}"})
    bad = http.get("/v1/events", params={"after": -2219645710195476001718272})
    assert bad.status_code == 422 and "after" in bad.text
    assert http.get("/v1/events", params={"before": 2**53}).status_code == 200

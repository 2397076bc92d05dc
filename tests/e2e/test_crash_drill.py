"""Crash drill: `kill -9` of a real `onepane up` at random points while it creates and destroys
instances, restart, retry every request with its Idempotency-Key; on SQLite and on PostgreSQL.
Afterwards the store and the data centers must agree exactly: every retried request converged,
one instance per key, no orphan process, no ghost row, every location healthy.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import threading
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
import sqlalchemy as sa

from onepane.providers.local import LocalProvider
from tests.conftest import Server, ec2_location
from tests.helpers import wait_for

POINTS = int(os.environ.get("ONEPANE_CRASH_POINTS", "6"))  # the suite's; more by hand


def fresh_database(postgres_url: str, name: str) -> str:
    engine = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as c:
        c.execute(sa.text(f"DROP DATABASE IF EXISTS {name}"))
        c.execute(sa.text(f"CREATE DATABASE {name}"))
    engine.dispose()
    return postgres_url.rsplit("/", 1)[0] + f"/{name}"


def api(server: Server) -> httpx.Client:
    return httpx.Client(base_url=server.url, timeout=10,
                        headers={"Authorization": f"Bearer {server.token}"})


def send(server: Server, op: tuple[str, str, Any], key: str) -> httpx.Response | None:
    method, path, body = op
    try:
        with api(server) as http:
            return http.request(method, path, json=body, headers={"Idempotency-Key": key})
    except httpx.HTTPError:
        return None  # the server died under it: the retry will tell what happened


@pytest.mark.parametrize("db", ["sqlite", "postgres"])
def test_kill_9_anywhere_loses_and_doubles_nothing(tmp_path: Path, db: str,
                                                   request: pytest.FixtureRequest) -> None:
    rng = random.Random(20261126)
    moto = request.getfixturevalue("moto")
    aws = ec2_location(moto)
    config = "sync_interval = 0.5\ndns_port = 0\n"
    if db == "postgres":
        url = fresh_database(request.getfixturevalue("postgres_url"), "onepane_drill")
        config += f'database_url = "{url}"\n'
    config += ('[locations.dc-a]\nprovider = "local"\n[locations.dc-b]\nprovider = "local"\n'
               f'[locations.{aws["name"]}]\nprovider = "cloud"\ndriver = "ec2-compat"\n'
               f'region = "us-east-1"\ncredentials = {{ key = "k", secret = "s" }}\n'
               f'options = {{ host = "127.0.0.1", port = {aws["options"]["port"]}, '  # type: ignore[index]
               f'secure = false }}\n')
    state = tmp_path / "state"
    server = Server(state, config)
    created: dict[str, str] = {}  # key -> instance id
    disk = tmp_path / "d.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), "64M"], check=True)
    with api(server) as http:
        image = http.post("/v1/catalog", params={"name": "drill"}, content=disk.read_bytes(),
                          headers={"Content-Type": "application/octet-stream"}).json()["id"]
    try:
        for i in range(POINTS):
            if i in (4, 11):  # replications, twice: the second finds the first's work
                op = ("POST", f"/v1/catalog/{image}/replicate",
                      {"to": ["dc-a", "dc-b", aws["name"]]})
            elif created and i % 3 == 2:  # every third point destroys one of the instances
                victim_key = rng.choice(sorted(created))
                op = ("DELETE", f"/v1/instances/{created.pop(victim_key)}", None)
            else:
                op = ("POST", "/v1/instances", {"name": f"drill-{i}", "location": rng.choice(
                    ["dc-a", "dc-b"]), "image": "httpecho", "size": "nano"})
            key = f"drill-{i}"
            threading.Thread(target=send, args=(server, op, key), daemon=True).start()
            threading.Event().wait(rng.uniform(0.0, 0.25))  # a random point of the operation
            server.proc.send_signal(signal.SIGKILL)
            server.proc.wait(10)
            server = Server(state, config)
            r = send(server, op, key)  # the client retries with the same key
            assert r is not None and r.status_code == 202, (op, r.text if r else None)
            jobs = r.json() if isinstance(r.json(), list) else [r.json()]
            with api(server) as http:
                for job in jobs:
                    final = wait_for(lambda j=job["id"], h=http: (
                        x := h.get(f"/v1/jobs/{j}").json())["status"] in ("succeeded", "failed")
                        and x, 30, what=f"job of {op[0]} {op[1]}")
                    assert final["status"] == "succeeded", final
            if op[1] == "/v1/instances":
                created[key] = jobs[0]["target"]

        with api(server) as http:
            wait_for(lambda: all(loc["status"] == "ok" for loc in http.get("/v1/locations").json()),
                     15, what="every location healthy")
            rows = [r for r in http.get("/v1/instances", params={"limit": 1000}).json()["items"]
                    if r["location"] in ("dc-a", "dc-b")]
        assert sorted(r["id"] for r in rows) == sorted(created.values())  # no ghost, no loss
        assert all(r["state"] == "running" and r["origin"] != "discovered" for r in rows)
        running = {}
        for loc in ("dc-a", "dc-b"):
            provider = LocalProvider(loc, state)
            records = {p.parent.name: json.loads(p.read_text())
                       for p in (state / "locations" / loc / "instances").glob("*/instance.json")}
            live = {r["id"] for r in records.values() if r["desired"] != "destroyed"}
            procs = provider.processes.ours()
            assert sorted(procs.values()) == sorted(live), (loc, procs, live)  # no orphan, no twin
            running.update({i: loc for i in live})
        assert sorted(running) == sorted(created.values())
        with api(server) as http:
            replicas = http.get(f"/v1/catalog/{image}").json()["replicas"]
        assert {r["location"]: r["state"] for r in replicas} == {
            "dc-a": "ready", "dc-b": "ready", aws["name"]: "ready"}
        amis = boto3.client("ec2", endpoint_url=moto, region_name="us-east-1",
                            aws_access_key_id="k", aws_secret_access_key="s").describe_images(
            Owners=["self"])["Images"]
        assert [a["Name"] for a in amis if image in a["Name"]] == [f"drill-{image}"]  # one AMI
        for loc in ("dc-a", "dc-b"):  # one copy each, nothing half-written left behind
            files = sorted(p.name for p in (state / "locations" / loc / "vm-images").iterdir())
            assert files == [f"{image}.qcow2"], files
    finally:
        server.stop()

"""The CLI against a running `onepane up`: three locations (two local, one EC2 on moto)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import psutil

from tests.conftest import VENV_BIN
from tests.helpers import ok, wait_for


def config(moto: str) -> str:
    port = int(moto.rsplit(":", 1)[1])
    return f"""
sync_interval = 0.5

[locations.dc-a]
provider = "local"
region = "local-a"
labels = {{ site = "a" }}

[locations.dc-b]
provider = "local"
region = "local-b"

[locations.aws-us-east-1]
provider = "cloud"
driver = "ec2-compat"
region = "us-east-1"
credentials = {{ key = "AKIDEXAMPLE", secret = "very-secret-value" }}
options = {{ host = "127.0.0.1", port = {port}, secure = false }}
"""


def cli(server: Any, *args: str, token: str | None = "from-server") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ONEPANE_URL": server.url, "ONEPANE_STATE_DIR": "/nonexistent"}
    env.pop("ONEPANE_TOKEN", None)
    if token == "from-server":
        token = server.token
    if token:
        env["ONEPANE_TOKEN"] = token
    return subprocess.run([str(VENV_BIN / "onepane"), *args], capture_output=True, text=True,
                          env=env, timeout=120)


def test_three_locations_one_inventory(start_server: Any, moto: str) -> None:
    server = start_server(config(moto))
    for name, loc, image, size in [("web-a", "dc-a", "httpecho", "small"),
                                   ("web-b", "dc-b", "httpecho", "nano"),
                                   ("web-aws", "aws-us-east-1", "ami-760aaa0f", "t2.micro")]:
        r = cli(server, "-o", "json", "instances", "create", name, "--location", loc,
                "--image", image, "--size", size, "--tag", "app=shop")
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["status"] == "succeeded"
    # EC2 answers RunInstances with "pending"; an observation of every location now (rather
    # than the next background sync) makes the states below the providers' current ones.
    assert cli(server, "sync").returncode == 0

    r = cli(server, "-o", "json", "instances", "list", "--tag", "app=shop")
    assert r.returncode == 0, r.stderr
    items = json.loads(r.stdout)
    assert {(i["name"], i["location"], i["state"]) for i in items} == {
        ("web-a", "dc-a", "running"), ("web-b", "dc-b", "running"),
        ("web-aws", "aws-us-east-1", "running")}
    by_name = {i["name"]: i for i in items}
    # the local instances are real processes answering HTTP
    a = by_name["web-a"]
    reply = httpx.get(f"http://{a['addresses'][0]}:{a['ports']['app']}/").json()
    assert reply == {"instance": a["id"], "location": "dc-a"}
    # the EC2 one is really at the EC2 endpoint
    ec2 = boto3.client("ec2", endpoint_url=moto, region_name="us-east-1",
                       aws_access_key_id="x", aws_secret_access_key="x")
    ids = [i["InstanceId"] for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]]
    assert by_name["web-aws"]["provider_id"] in ids

    # filters narrow the one inventory
    r = cli(server, "-o", "json", "instances", "list", "--location", "dc-b")
    assert [i["name"] for i in json.loads(r.stdout)] == ["web-b"]
    r = cli(server, "-o", "json", "instances", "list", "--provider", "cloud")
    assert [i["name"] for i in json.loads(r.stdout)] == ["web-aws"]

    # stop / start / destroy the same way everywhere
    for inst in items:
        assert cli(server, "instances", "stop", inst["id"]).returncode == 0
    r = cli(server, "-o", "json", "instances", "list", "--state", "stopped")
    assert len(json.loads(r.stdout)) == 3
    assert cli(server, "instances", "start", by_name["web-aws"]["id"]).returncode == 0
    assert cli(server, "instances", "destroy", by_name["web-b"]["id"]).returncode == 0
    r = cli(server, "-o", "json", "instances", "list")
    assert {i["name"] for i in json.loads(r.stdout)} == {"web-a", "web-aws"}

    # the table rendering works too
    r = cli(server, "instances", "list")
    assert r.returncode == 0 and "web-aws" in r.stdout


def test_exit_codes_and_errors(start_server: Any, moto: str) -> None:
    server = start_server(config(moto))
    bad = cli(server, "instances", "create", "x", "--location", "dc-a", "--image", "httpecho",
              "--size", "enormous")
    assert bad.returncode == 2 and "size" in bad.stderr and "enormous" in bad.stderr
    assert cli(server, "instances", "show", "inst-nope").returncode == 3
    assert cli(server, "instances", "list", token=None).returncode == 5
    assert cli(server, "instances", "list", token="op_wrong").returncode == 5
    env_down = cli(server, "instances", "list")
    assert env_down.returncode == 0
    r = subprocess.run([str(VENV_BIN / "onepane"), "--url", "http://127.0.0.1:9", "locations",
                        "list"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 6
    # nothing was left behind by the rejected create
    assert json.loads(cli(server, "-o", "json", "instances", "list").stdout) == []

    # a filter with a typo is an error naming it, not an empty answer (issue 31)
    r = cli(server, "instances", "list", "--location", "nowhere")
    assert r.returncode == 3 and "nowhere" in r.stderr, (r.returncode, r.stderr)
    r = cli(server, "instances", "list", "--state", "bogus")
    assert r.returncode == 2 and "state" in r.stderr and "running" in r.stderr, r.stderr
    assert cli(server, "instances", "list", "--provider", "nope").returncode == 2
    # something that is not onepane (a plain HTTP server here) is said, without a traceback
    with http_server(b'{"hello": "world"}', "application/json") as url:
        r = subprocess.run([str(VENV_BIN / "onepane"), "--url", url, "instances", "list"],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 6 and "not onepane" in r.stderr, r.stderr
        assert "Traceback" not in r.stderr
    with http_server(b"<html>hi</html>", "text/html") as url:
        r = subprocess.run([str(VENV_BIN / "onepane"), "--url", url, "locations", "list"],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 6 and "text/html" in r.stderr and "Traceback" not in r.stderr
    # a second instance of the same name is allowed, and said (issue 31)
    first = cli(server, "instances", "create", "twin", "--location", "dc-a", "--image",
                "httpecho", "--size", "nano")
    assert first.returncode == 0 and "named twin" not in first.stderr
    second = cli(server, "instances", "create", "twin", "--location", "dc-a", "--image",
                 "httpecho", "--size", "nano")
    assert second.returncode == 0 and "1 other instance is named twin" in " ".join(
        second.stderr.split()), second.stderr
    # a command that answers nothing still says what it did, also as JSON
    made = ok(cli(server, "-o", "json", "tokens", "create", "gone-soon", "--role", "viewer"))
    r = ok(cli(server, "-o", "json", "tokens", "revoke", made["id"]))
    assert r == {"token": made["id"], "revoked": True}
    ok(cli(server, "locations", "add", "dc-tmp", "--provider", "local"))
    r = cli(server, "locations", "remove", "dc-tmp")  # it holds nothing: removed, and said
    assert r.returncode == 0 and "removed location dc-tmp" in r.stdout, r.stdout + r.stderr


@contextlib.contextmanager
def http_server(body: bytes, content_type: str) -> Iterator[str]:
    """A plain HTTP server on loopback that answers every GET with `body`."""
    import http.server
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}"
    finally:
        srv.shutdown()
        srv.server_close()


def test_credentials_never_returned_or_logged(start_server: Any, moto: str) -> None:
    server = start_server(config(moto))
    r = cli(server, "-o", "json", "locations", "list")
    assert "very-secret-value" not in r.stdout
    aws = next(loc for loc in json.loads(r.stdout) if loc["name"] == "aws-us-east-1")
    assert aws["has_credentials"] is True and "credentials" not in aws
    assert cli(server, "sync").returncode == 0
    assert "very-secret-value" not in server.log()
    db = Path(server.state_dir / "onepane.db").read_bytes()
    assert b"very-secret-value" not in db  # stored encrypted
    assert (server.state_dir / "onepane.db").stat().st_mode & 0o077 == 0
    assert server.state_dir.stat().st_mode & 0o077 == 0
    # a secret from standard input (never in `ps`); a bad one is refused before it is stored
    port = int(moto.rsplit(":", 1)[1])
    env = {**os.environ, "ONEPANE_URL": server.url, "ONEPANE_TOKEN": server.token or ""}
    r = subprocess.run([str(VENV_BIN / "onepane"), "locations", "add", "aws2", "--provider",
                        "cloud", "--driver", "ec2-compat", "--region", "us-east-1", "--key", "k",
                        "--secret-file", "-", "--option", "host=127.0.0.1", "--option",
                        f"port={port}", "--option", "secure=false"],
                       input="from-stdin-secret\n", capture_output=True, text=True, env=env,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert "from-stdin-secret" not in server.log() + r.stdout + r.stderr


def test_openapi_documents_every_route(start_server: Any) -> None:
    """Every native route the routers declare is in the served OpenAPI, under its method, and
    tagged with its resource (/docs groups by tag; all were under "default")."""
    from fastapi.routing import APIRoute

    from onepane.api import catalog, deployments, hosts, inventory, metrics
    server = start_server("")
    spec = httpx.get(f"{server.url}/openapi.json").json()
    declared = [(r.path, m.lower()) for router in (inventory.router, hosts.router,
                                                   deployments.router, catalog.router,
                                                   metrics.router)
                for r in router.routes if isinstance(r, APIRoute) and r.include_in_schema
                for m in r.methods]
    assert len(declared) >= 50
    for path, method in declared:
        assert method in spec["paths"].get(path, {}), (method, path)
        op = spec["paths"][path][method]
        assert op.get("tags") and op["tags"] != ["default"], (method, path, op.get("tags"))
    assert {"instances", "deployments", "locations", "catalog"} <= {
        t for ops in spec["paths"].values() for op in ops.values() for t in op.get("tags", [])}


def test_upload_an_app_image_and_run_it(start_server: Any, tmp_path: Path) -> None:
    server = start_server("dns_port = 0\n")
    app = tmp_path / "hello"
    app.mkdir()
    (app / "onepane-app.json").write_text(json.dumps({
        "name": "hello", "command": ["{python}", "-m", "http.server", "{port}", "--bind", "{host}"],
        "health_path": "/"}))
    (app / "index.html").write_text("hello from an uploaded app")
    r = cli(server, "-o", "json", "images", "upload", "dc-b", str(app))
    assert r.returncode == 0, r.stderr
    r = cli(server, "-o", "json", "instances", "create", "hello-1", "--location", "dc-b",
            "--image", "hello", "--size", "small")
    assert r.returncode == 0, r.stderr
    inst = json.loads(cli(server, "-o", "json", "instances", "list", "--location", "dc-b").stdout)[0]
    url = f"http://{inst['addresses'][0]}:{inst['ports']['app']}/"
    assert "uploaded app" in wait_for(lambda: httpx.get(url, timeout=1).text, 15, what="app up")
    (app / "onepane-app.json").write_text('{"name": "Bad Name", "command": []}')
    r = cli(server, "images", "upload", "dc-b", str(app))
    assert r.returncode == 2 and "manifest" in r.stderr


def test_idempotency_keys_are_bound_to_their_request(start_server: Any) -> None:
    server = start_server("")
    http = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {server.token}"})
    body = {"name": "web", "location": "dc-a", "image": "httpecho", "size": "nano"}
    first = http.post("/v1/instances", json=body, headers={"Idempotency-Key": "k-1"})
    again = http.post("/v1/instances", json=body, headers={"Idempotency-Key": "k-1"})
    assert first.status_code == again.status_code == 202
    assert first.json()["id"] == again.json()["id"]  # the retry gets the first request's job
    other = http.post("/v1/instances", json={**body, "name": "db"},
                      headers={"Idempotency-Key": "k-1"})
    assert other.status_code == 422 and other.json()["errors"][0]["field"] == "Idempotency-Key"
    target = first.json()["target"]
    gone = http.delete(f"/v1/instances/{target}", headers={"Idempotency-Key": "k-1"})
    assert gone.status_code == 422  # not the create's job: nothing deleted by mistake either
    assert http.get(f"/v1/instances/{target}").status_code == 200
    for bad in ("", "a b", "x" * 129):
        r = http.post("/v1/instances", json=body, headers={"Idempotency-Key": bad})
        assert r.status_code == 422, (bad, r.text)
    assert len(http.get("/v1/instances").json()["items"]) == 1


def test_bad_input_is_a_4xx_that_leaves_nothing_behind(start_server: Any) -> None:
    server = start_server("")
    http = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {server.token}"})
    assert http.get("/v1/instances", params={"name": "a\x00b"}).status_code == 422
    r = http.post("/v1/networks", json={"name": "n2", "location": "dc-a", "cidr": "10.9.0.0/33"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "cidr"
    # a location that had a network can be removed (its rows go first)
    assert http.post("/v1/locations", json={"name": "dc-c", "provider": "local"}).status_code == 201
    job = http.post("/v1/networks", json={"name": "n1", "location": "dc-c",
                                          "cidr": "10.9.0.0/24"}).json()
    wait_for(lambda: http.get(f"/v1/jobs/{job['id']}").json()["status"] == "succeeded", 10,
             what="network created")
    job = http.post("/v1/instances", json={"name": "w", "location": "dc-c", "image": "httpecho",
                                           "size": "nano"}).json()
    wait_for(lambda: http.get(f"/v1/jobs/{job['id']}").json()["status"] == "succeeded", 10,
             what="instance created")
    rec = server.state_dir / "locations" / "dc-c" / "instances" / job["target"] / "instance.json"
    pid = json.loads(rec.read_text())["pid"]
    assert http.delete("/v1/locations/dc-c").status_code == 409  # instances there: not without force
    assert http.delete("/v1/locations/dc-c", params={"force": "true"}).status_code == 204
    wait_for(lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie", 10,
             what="its process stopped")
    assert http.get("/v1/networks").json()["items"] == []
    # a deployment's port held by another program: 409 naming listen, no deployment kept
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        busy = f"127.0.0.1:{s.getsockname()[1]}"
        r = http.post("/v1/deployments", json={"name": "busy", "image": "httpecho", "size": "nano",
                                               "listen": busy, "replicas": {"dc-a": 1}})
    assert r.status_code == 409 and r.json()["errors"][0]["field"] == "listen", r.text
    assert http.get("/v1/deployments/busy").status_code == 404


def test_a_missing_local_file_is_exit_2_with_its_name() -> None:
    env = {**os.environ, "ONEPANE_URL": "http://127.0.0.1:9", "ONEPANE_TOKEN": "x"}
    for args in (["deployments", "apply", "-f", "/missing.yaml"],
                 ["images", "upload", "dc-a", "/missing-app"]):
        r = subprocess.run([str(VENV_BIN / "onepane"), *args], capture_output=True, text=True,
                           env=env, timeout=30)
        assert r.returncode == 2 and "No such file" in r.stderr and "Traceback" not in r.stderr


def test_a_busy_port_is_said_before_anything_starts(tmp_path: Path) -> None:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = subprocess.run([str(VENV_BIN / "onepane"), "up", "--port", str(port), "--state-dir",
                            str(tmp_path / "state")], capture_output=True, text=True, timeout=60)
    assert r.returncode == 4 and "onepane is up" not in r.stdout
    said = " ".join(r.stderr.split())
    assert f"cannot serve the API on 127.0.0.1:{port}" in said and "--port" in said
    assert not (tmp_path / "state" / "admin.token").exists()  # nothing was set up
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:  # DNS is UDP
        s.bind(("127.0.0.1", 0))
        dns = s.getsockname()[1]
        r = subprocess.run([str(VENV_BIN / "onepane"), "up", "--port", "0", "--dns-port",
                            str(dns), "--state-dir", str(tmp_path / "state")],
                           capture_output=True, text=True, timeout=60)
    said = " ".join(r.stderr.split())
    assert r.returncode == 4 and f"cannot serve DNS on 127.0.0.1:{dns}" in said, r.stderr
    assert "--dns-port" in said and "ONEPANE_DNS_PORT" in said


def test_version_and_output_option_anywhere() -> None:
    r = subprocess.run([str(VENV_BIN / "onepane"), "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.startswith("onepane ")
    env = {**os.environ, "ONEPANE_URL": "http://127.0.0.1:9", "ONEPANE_TOKEN": "x"}
    r = subprocess.run([str(VENV_BIN / "onepane"), "locations", "list", "-o", "json"],
                       capture_output=True, text=True, env=env)
    assert "No such option" not in r.stderr and "cannot reach" in r.stderr


def test_status_says_what_is_well_and_what_to_do(start_server: Any) -> None:
    server = start_server("sync_interval = 0.5\n")
    r = cli(server, "status")
    assert r.returncode == 0, r.stderr
    assert "dc-a" in r.stdout and "nothing: every location answers" in r.stdout
    report = json.loads(cli(server, "status", "-o", "json").stdout)
    assert {loc["name"] for loc in report["locations"]} == {"dc-a", "dc-b"}
    assert report["jobs"] == {"running": 0, "queued": 0, "recently_failed": 0}
    assert "s ago" in report["nodes"][0]["heard"]  # a figure with its unit

    # an instance that died is named, with what happened to it (issue 31)
    made = ok(cli(server, "-o", "json", "instances", "create", "web-1", "--location", "dc-a",
                  "--image", "httpecho", "--size", "nano", "--wait"))
    from tests.helpers import kill_instances, wait_for
    kill_instances(server.state_dir)

    def said() -> list[str]:
        todo = json.loads(cli(server, "status", "-o", "json").stdout)["todo"]
        return [line for line in todo if made["target"] in line and "in error" in line]
    line = wait_for(said, 30, what="the dead instance in status")[0]
    assert "web-1" in line and "dc-a" in line and ": " in line.split("in error", 1)[1], line


def test_events_follow_survives_a_restart_and_ctrl_c_is_quiet(start_server: Any) -> None:
    import signal
    import threading

    from tests.conftest import Server
    from tests.helpers import wait_for
    server = start_server("")
    env = {**os.environ, "ONEPANE_URL": server.url, "ONEPANE_TOKEN": server.token or ""}
    again = None
    follower = subprocess.Popen([str(VENV_BIN / "onepane"), "-o", "json", "events", "--follow",
                                 "--kind", "instance.", "--limit", "0"], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        seen: list[str] = []
        lines: list[str] = []

        def read() -> None:  # a reader thread: the condition below must never block
            for line in follower.stdout:  # type: ignore[union-attr]
                lines.append(line)
                if line.startswith("{") and json.loads(line)["kind"] == "instance.created":
                    seen.append(json.loads(line)["message"].split()[1])  # "instance NAME (..."
        threading.Thread(target=read, daemon=True).start()
        wait_for(lambda: lines, 15, what="the follower listening")  # it printed its (empty) list
        http = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {server.token}"})
        body = {"name": "one", "location": "dc-a", "image": "httpecho", "size": "nano"}
        http.post("/v1/instances", json=body)
        server.proc.send_signal(signal.SIGINT)  # Ctrl-C with a follower attached
        server.proc.wait(15)
        assert "Traceback" not in server.log()
        again = Server(server.state_dir, "", port=server.port)  # restarted where it was
        httpx.post(f"{again.url}/v1/instances", json={**body, "name": "two"},
                   headers={"Authorization": f"Bearer {again.token}"})
        wait_for(lambda: sorted(seen) == ["one", "two"], 30,
                 what="events from before and after the restart")
    finally:
        follower.send_signal(signal.SIGINT)
        follower.wait(10)
        if again is not None:
            again.stop()  # (the first server is stopped by its fixture)
    assert follower.returncode == 130
    assert "Traceback" not in (follower.stderr.read() if follower.stderr else "")
    assert "Traceback" not in again.log()


def test_tokens_list_labels_edit_and_one_time_notation(start_server: Any) -> None:
    from tests.conftest import Server
    server = start_server('[locations.dc-a]\nprovider = "local"\nlabels = { site = "a", tier = "1" }\n')
    r = cli(server, "-o", "json", "tokens", "create", "ci", "--role", "viewer")
    created = json.loads(r.stdout)
    listed = json.loads(cli(server, "tokens", "list", "-o", "json").stdout)
    assert {(t["name"], t["role"]) for t in listed} >= {("ci", "viewer")}
    assert all("token" not in t and "token_hash" not in t for t in listed)
    assert all(t["created_at"].endswith("Z") for t in listed)  # one notation: UTC with Z
    assert cli(server, "tokens", "list", token=created["token"]).returncode == 5  # admin only

    r = cli(server, "-o", "json", "locations", "label", "dc-a", "country=de", "tier-")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["labels"] == {"site": "a", "country": "de"}
    assert cli(server, "locations", "label", "dc-a", "bad key=x").returncode == 2
    assert cli(server, "locations", "label", "nowhere", "a=b").returncode == 3
    # an edit survives a restart, laid over the labels of the configuration file
    server.stop()
    again = Server(server.state_dir, (server.state_dir / "onepane.toml").read_text(),
                   port=server.port)
    try:
        loc = json.loads(cli(again, "-o", "json", "locations", "show", "dc-a").stdout)
        assert loc["labels"] == {"site": "a", "country": "de"}
        assert loc["last_sync"] is None or loc["last_sync"].endswith("Z")
        for n in range(3):
            cli(again, "instances", "create", f"j{n}", "--location", "dc-a", "--image", "httpecho",
                "--size", "nano")
        jobs = json.loads(cli(again, "-o", "json", "jobs", "list").stdout)
        stamps = [j["created_at"] for j in jobs]
        assert stamps == sorted(stamps) and all(s.endswith("Z") for s in stamps)  # newest last
        events = json.loads(cli(again, "-o", "json", "events").stdout)
        assert [e["id"] for e in events] == sorted(e["id"] for e in events)
        table = cli(again, "jobs", "list").stdout
        assert "Z" in table and "+00:00" not in table
    finally:
        again.stop()


def test_down_stops_the_server_its_data_planes_and_instances(start_server: Any) -> None:
    server = start_server("sync_interval = 0.5\n")
    http = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {server.token}"})
    r = http.post("/v1/deployments", json={"name": "shop", "image": "httpecho", "size": "nano",
                                           "replicas": {"dc-a": 1, "dc-b": 1}})
    assert r.status_code in (200, 201), r.text
    listen = r.json()["listen"]
    wait_for(lambda: httpx.get(f"http://{listen}/", timeout=1).status_code == 200, 60,
             what="shop serving")
    solo = http.post("/v1/instances?wait=30", json={"name": "solo", "location": "dc-a",
                                                    "image": "httpecho", "size": "nano"}).json()
    assert solo["status"] == "succeeded", solo
    pids = [json.loads(p.read_text())["pid"]
            for p in server.state_dir.glob("locations/*/instances/*/instance.json")]
    plane = int(next((server.state_dir / "traffic").glob("*.pid")).read_text().split()[0])
    assert len(pids) == 3 and all(psutil.pid_exists(p) for p in [*pids, plane])

    args = [str(VENV_BIN / "onepane"), "down", "--state-dir", str(server.state_dir)]
    r = subprocess.run(args, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60)
    assert r.returncode == 2 and "--yes" in r.stderr  # it asks first; no terminal: no stop
    assert server.proc.poll() is None

    r = subprocess.run([*args, "--yes", "-o", "json"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["server_pid"] == server.proc.pid and report["locations"] == {"dc-a": 2, "dc-b": 1}
    assert server.proc.wait(30) is not None

    def gone(pid: int) -> bool:
        return not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert all(gone(p) for p in [*pids, plane])
    assert "Traceback" not in server.log()
    # nothing left to stop: a second down says so
    r = subprocess.run([*args, "--yes"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "no running server" in " ".join(r.stderr.split())

    # up again (issue 31): what down stopped reads `stopped`, never `error`; the deployment's
    # replicas are started again as replicas (not "it crashed"); the plain instance stays put
    from tests.conftest import Server
    again = Server(server.state_dir, "sync_interval = 0.5\n")
    try:
        http = httpx.Client(base_url=again.url, headers={"Authorization": f"Bearer {again.token}"})
        wait_for(lambda: httpx.get(f"http://{listen}/", timeout=1).status_code == 200, 60,
                 what="shop serving again", explain=lambda: [
                     (e["kind"], e["message"]) for e in http.get("/v1/events", params={
                         "limit": 15, "before": 2**53}).json()["items"]])
        states = {i["name"]: i["state"] for i in http.get("/v1/instances").json()["items"]}
        assert states["solo"] == "stopped" and "error" not in states.values(), states
        events = http.get("/v1/events", params={"limit": 1000}).json()["items"]
        assert not [e for e in events if "crashed" in e["message"]], events[-10:]
        assert [e for e in events if e["kind"].startswith("policy.") and "stopped" in e["message"]]
    finally:
        again.stop()


def test_a_job_is_waited_for_without_polling(start_server: Any) -> None:
    """`GET /v1/jobs/{id}?wait=S` answers when the job has ended (or S has passed)."""
    server = start_server("")
    http = httpx.Client(base_url=server.url, timeout=60,
                        headers={"Authorization": f"Bearer {server.token}"})
    job = http.post("/v1/instances", json={"name": "waited", "location": "dc-a",
                                           "image": "httpecho", "size": "nano"}).json()
    assert job["status"] in ("queued", "running")
    ended = http.get(f"/v1/jobs/{job['id']}", params={"wait": 30}).json()
    assert ended["status"] == "succeeded", ended  # one request, no polling
    assert http.get(f"/v1/jobs/{job['id']}", params={"wait": 61}).status_code == 422
    assert http.get("/v1/jobs/job-nope", params={"wait": 1}).status_code == 404
    # a create that waits: one request, answered with the job as it ended
    r = http.post("/v1/instances", params={"wait": 30}, json={
        "name": "waited2", "location": "dc-a", "image": "httpecho", "size": "nano"})
    assert r.status_code == 202 and r.headers["Location"] == f"/v1/jobs/{r.json()['id']}"
    assert r.json()["status"] == "succeeded" and r.json()["result"]["state"] == "running"
    # a wait that is over first answers with the job as it is
    slow = http.post("/v1/instances", params={"wait": 0.001}, json={
        "name": "waited3", "location": "dc-a", "image": "httpecho", "size": "nano"}).json()
    assert slow["status"] in ("queued", "running", "succeeded")
    assert http.post("/v1/instances", params={"wait": -1}, json={
        "name": "waited4", "location": "dc-a", "image": "httpecho", "size": "nano"}
    ).status_code == 422


def test_down_refuses_when_onepane_url_names_another_onepane(tmp_path: Path) -> None:
    """`down` stops the onepane of a state directory here; with ONEPANE_URL naming another one
    (a remote server) and no --state-dir, it refuses and says why, and stops nothing."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ONEPANE_")}
    env["ONEPANE_URL"] = "http://192.0.2.10:8640"
    r = subprocess.run([str(VENV_BIN / "onepane"), "down", "--yes"], capture_output=True,
                       text=True, env=env, cwd=tmp_path, timeout=60)
    assert r.returncode != 0 and "ONEPANE_URL" in r.stderr and "--state-dir" in r.stderr

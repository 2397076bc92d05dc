"""The CLI against a running `onepane up`: three locations (two local, one EC2 on moto)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
import httpx

from tests.conftest import VENV_BIN
from tests.helpers import wait_for


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


def test_openapi_documents_every_route(start_server: Any) -> None:
    server = start_server("")
    spec = httpx.get(f"{server.url}/openapi.json").json()
    for path in ["/v1/instances", "/v1/instances/{instance_id}", "/v1/volumes", "/v1/networks",
                 "/v1/images", "/v1/locations", "/v1/jobs/{job_id}", "/v1/events"]:
        assert path in spec["paths"], path
    assert sys.executable  # the suite runs in the venv the server uses


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

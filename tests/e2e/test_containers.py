"""Containers as a private data center (issue 34): Docker Engine hosts onepane reaches only over
TCP with mutual TLS, each a network namespace with its own dockerd, data root and certificates.

An image archive — one built by hand and one written by a real `docker save` — goes through the
catalog (a hostile one is refused with a 4xx naming the file), is replicated to two container
locations and to nowhere that cannot run it, and serves a deployment through the traffic
manager. The host running the primary location's replica loses its daemons (kill -9): no
request fails, the replica is replaced on the location's other host, and when the killed host
comes back its old container is removed rather than added as a second replica.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bench.common import location_toml
from onepane.providers.docker.lab import DockerLab, busybox_archive, docker_lab, restart_daemon
from onepane.traffic.drill import Load, served_by_location
from tests.conftest import Server
from tests.e2e.test_cli import cli
from tests.helpers import ok, wait_for

pytestmark = pytest.mark.root
HOSTS = {"d1": 251, "d2": 252, "d3": 253}
LOCATIONS = {"dc-d": ("d1", "d2"), "dc-e": ("d3",)}


@pytest.fixture(scope="module")
def lab() -> Iterator[DockerLab]:
    with docker_lab(HOSTS) as lab:
        yield lab


def config(lab: DockerLab) -> str:
    return "sync_interval = 0.5\n[locations.dc-a]\nprovider = \"local\"\n" + "".join(
        location_toml(loc, "docker", {"hosts": lab.specs(*names)}, lab.credentials())
        for loc, names in LOCATIONS.items())


@pytest.fixture(scope="module")
def server(lab: DockerLab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = Server(tmp_path_factory.mktemp("containers"), config(lab))
    try:
        yield s
    finally:
        s.stop()


def containers_on(lab: DockerLab, host: str) -> list[str]:
    """The onepane containers a host has (its own socket: the test's view, not onepane's)."""
    return lab.host(host).docker("ps", "-a", "--filter", "label=onepane.id",
                                 "--format", "{{.Names}}").split()


def page(r: httpx.Response) -> str:
    if r.text.strip() != "hello":
        raise ValueError(f"not the app's page: {r.text[:40]!r}")
    return "app"


@pytest.fixture(scope="module")
def image(server: Server, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The busybox web image, imported from its archive and replicated to both locations."""
    built = busybox_archive(tmp_path_factory.mktemp("image") / "web.tar")
    img = ok(cli(server, "-o", "json", "images", "import", str(built), "--name", "web"))
    ok(cli(server, "images", "replicate", img["id"], "--to", "dc-d", "--to", "dc-e"))
    return img  # type: ignore[no-any-return]


def test_an_image_archive_is_checked_imported_and_replicated_where_it_can_run(
        server: Server, lab: DockerLab, image: dict[str, Any], tmp_path: Path) -> None:
    assert image["source"] == "container" and image["disks"][0]["format"] == "docker-archive"
    assert image["disks"][0]["container"]["ports"] == ["80/tcp"]
    shown = ok(cli(server, "-o", "json", "images", "show", image["id"]))
    assert {(r["location"], r["state"]) for r in shown["replicas"]} == {("dc-d", "ready"),
                                                                       ("dc-e", "ready")}
    # what a real engine writes: `docker save` from one of the lab's hosts
    d3 = lab.host("d3")
    d3.docker("tag", shown["replicas"][0]["provider_image_id"], "saved/web:7")
    saved = tmp_path / "saved.tar"
    d3.docker("save", "-o", str(saved), "saved/web:7")
    again = ok(cli(server, "-o", "json", "images", "import", str(saved), "--name", "saved"))
    assert again["source"] == "container" and again["id"] != image["id"]
    assert again["disks"][0]["container"]["tags"] == ["saved/web:7"]
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {server.token}"},
                      timeout=30) as http:
        # hostile: a layer that writes outside the container's root
        evil = tmp_path / "evil.tar"
        _escaping_archive(evil)
        r = http.post("/v1/catalog", params={"name": "evil"}, content=evil.read_bytes())
        assert r.status_code == 422 and "leaves" in r.json()["detail"], r.text
        assert r.json()["errors"][0]["field"] == "file", r.text
        assert "evil" not in {i["name"] for i in http.get("/v1/catalog").json()}
        # a container image goes only where containers run
        r = http.post(f"/v1/catalog/{image['id']}/replicate", json={"to": ["dc-a"]})
        assert r.status_code == 422 and "container image" in r.json()["detail"], r.text


def _escaping_archive(dest: Path) -> None:
    import io
    import tarfile

    from onepane.providers.docker.lab import image_archive
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as layer:
        info = tarfile.TarInfo("../../etc/cron.d/onepane-evil")
        info.size = 2
        layer.addfile(info, io.BytesIO(b"x\n"))
    image_archive(dest, "evil:1", buf.getvalue(), {"Cmd": ["/bin/sh"]})


def deployed(server: Server, tmp_path: Path, image: str) -> dict[str, Any]:
    spec = tmp_path / "web.yaml"
    spec.write_text(json.dumps({
        "name": "web-c", "image": image, "size": "docker.nano",
        "replicas": {"dc-d": 1, "dc-e": 1}, "health": {"path": "/", "interval": 0.5},
        "traffic": {"order": ["dc-d", "dc-e"]}}))
    ok(cli(server, "deployments", "apply", "-f", str(spec)))
    return wait_for(lambda: (d := ok(cli(server, "-o", "json", "deployments", "show", "web-c")))
                    and all((d["status"].get("locations") or {}).get(loc, {}).get("healthy") == 1
                            for loc in LOCATIONS) and d, 120, what="both replicas serving")


def replicas(server: Server) -> list[dict[str, Any]]:
    return ok(cli(server, "-o", "json", "instances", "list", "--tag",  # type: ignore[no-any-return]
                  "onepane:deployment=web-c"))


def test_a_deployment_survives_a_host_whose_daemons_die_and_never_doubles_when_it_returns(
        server: Server, lab: DockerLab, image: dict[str, Any], tmp_path: Path) -> None:
    dep = deployed(server, tmp_path, image["id"])
    (first,) = [i for i in replicas(server) if i["location"] == "dc-d"]
    (host,) = [h for h in LOCATIONS["dc-d"] if first["provider_id"] in containers_on(lab, h)]
    other = next(h for h in LOCATIONS["dc-d"] if h != host)
    rows = {r["name"]: r for r in ok(cli(server, "-o", "json", "hosts", "list", "dc-d"))}
    assert rows.keys() == {"d1", "d2"} and all(r["state"] == "up" for r in rows.values())
    assert first["provider_id"] in rows[host]["instances"] and rows[host]["committed_mb"] >= 64
    load = Load(f"http://{dep['listen']}/", read=page).start()
    try:
        wait_for(lambda: len(load.snapshot()) > 20, 30, what="load flowing")
        killed = time.monotonic()
        lab.host(host).kill_daemon()
        # replaced on the location's other host, serving again
        wait_for(lambda: any(i["location"] == "dc-d" and i["state"] == "running" and
                             i["provider_id"] in containers_on(lab, other)
                             for i in replicas(server)),
                 60, what="the replica replaced on the other host")
        wait_for(lambda: (ok(cli(server, "-o", "json", "deployments", "show", "web-c"))["status"]
                          ["locations"]["dc-d"].get("healthy") == 1), 60,
                 what="dc-d healthy again")
        restart_daemon(lab.host(host))
        # the old container is removed, not adopted as a second replica
        wait_for(lambda: containers_on(lab, host) == [], 30,
                 what="the returned host's old container removed")
        wait_for(lambda: sorted(i["location"] for i in replicas(server)) == ["dc-d", "dc-e"],
                 30, what="exactly one replica per location")
        # the load ran through all of it (the kill, the replacement, the host's return)
        assert len([x for x in load.snapshot() if x.start > killed]) > 100
    finally:
        load.stop()
    failed = load.failures()
    assert failed == [], [(round(f.start - killed, 2), f.where[:80]) for f in failed[:5]]
    ok(cli(server, "deployments", "delete", "web-c"))
    wait_for(lambda: all(containers_on(lab, h) == [] for h in HOSTS), 60,
             what="the deployment's containers removed")


def either_form(r: httpx.Response) -> str:
    """The container's page, or httpecho's answer (the same app as a process): who served."""
    if r.text.strip() == "hello":
        return "container"
    try:
        return served_by_location(r)
    except ValueError as exc:  # say what came instead, for a failure's message
        raise ValueError(f"neither form: {r.status_code} {dict(r.headers)} {r.text[:80]!r}") \
            from exc


def test_the_same_app_as_a_container_and_as_a_process_fails_over_between_the_two(
        server: Server, lab: DockerLab, image: dict[str, Any], tmp_path: Path) -> None:
    spec = tmp_path / "mix.yaml"
    spec.write_text(json.dumps({
        "name": "mix", "image": image["id"], "size": "docker.nano",
        "images": {"dc-a": "httpecho"}, "sizes": {"dc-a": "nano"},
        "replicas": {"dc-e": 1, "dc-a": 1}, "health": {"path": "/", "interval": 0.5},
        "traffic": {"order": ["dc-e", "dc-a"]}}))
    ok(cli(server, "deployments", "apply", "-f", str(spec)))
    dep = wait_for(lambda: (d := ok(cli(server, "-o", "json", "deployments", "show", "mix")))
                   and all((d["status"].get("locations") or {}).get(loc, {}).get("healthy") == 1
                           for loc in ("dc-e", "dc-a")) and d, 120, what="both forms serving")
    load = Load(f"http://{dep['listen']}/", read=either_form).start()
    d3 = lab.host("d3")
    try:
        wait_for(lambda: {x.where for x in load.snapshot()} == {"container"}, 30,
                 what="the container serving first")
        killed = time.monotonic()
        d3.kill_daemon()  # dc-e's only host
        wait_for(lambda: any(x.where == "dc-a" and x.start > killed for x in load.snapshot()),
                 30, what="the process form serving")
    finally:
        load.stop()
        restart_daemon(d3)
    failed = load.failures()
    assert failed == [], [(round(f.start - killed, 2), f.where[:80]) for f in failed[:5]]
    ok(cli(server, "deployments", "delete", "mix"))
    wait_for(lambda: containers_on(lab, "d3") == [], 60, what="the container removed")

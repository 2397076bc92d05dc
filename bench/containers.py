"""Create 100 containers on a Docker Engine host reached over TLS, through onepane's API and
directly with the Docker SDK (the reference), in the same run; print the overhead ratio: the
median of `--rounds` pairs, measured back to back in alternating order.

Both ways make the same container — the image archive onepane imported, the same CPU and memory
limits, the image's port published on the host's address, docker's init — and count it made
when it runs: the SDK's create then start; onepane's POST /v1/instances, its job ended. Both
send at the same concurrency (onepane's 8 workers per location; the SDK from 8 threads).

    .venv/bin/python bench/containers.py [--count 100] [--rounds 3]   (root: a lab host in a
                                                                      network namespace)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import create_and_wait, location_toml, onepane, result, round_line
from onepane.providers.docker.engines import DockerEngines
from onepane.providers.docker.lab import DockerLab, busybox_archive, docker_lab
from onepane.providers.docker.sizes import CPU_PERIOD, SIZES

WORKERS = 8  # onepane's default workers_per_location
SIZE = "docker.nano"


def remove_all(lab: DockerLab) -> None:
    host = lab.hosts[0]
    ids = host.docker("ps", "-aq").split()
    for i in range(0, len(ids), 50):
        host.docker("rm", "-f", *ids[i:i + 50])


def direct(lab: DockerLab, image: str, count: int) -> float:
    """The reference: the SDK, over the same TLS, making what onepane makes."""
    host = lab.hosts[0]
    engines = DockerEngines("bench", lambda: {host.name: host.url}, lab.credentials())
    client = engines.client(host.name)
    cpus, mb = SIZES[SIZE]

    def one(n: int) -> None:
        ctr = client.containers.create(
            image, name=f"direct-{n}", init=True, detach=True, labels={"bench": "direct"},
            cpu_period=CPU_PERIOD, cpu_quota=int(cpus * CPU_PERIOD), mem_limit=mb * 2**20,
            memswap_limit=mb * 2**20, ports={"80/tcp": (host.address, None)})
        ctr.start()

    t0 = time.perf_counter()
    with ThreadPoolExecutor(WORKERS) as pool:
        list(pool.map(one, range(count)))
    elapsed = time.perf_counter() - t0
    engines.close()
    return elapsed


def via_api(http: httpx.Client, image_id: str, count: int, tag: str) -> float:
    def one(n: int) -> None:
        create_and_wait(http, {"name": f"web-{tag}-{n}", "location": "dc-c",
                               "image": image_id, "size": SIZE}, wait=60)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(WORKERS) as pool:
        list(pool.map(one, range(count)))
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    print(f"{args.count} container creates on one Docker host over TLS, {WORKERS} at a time; "
          f"{args.rounds} rounds")
    ratios = []
    with docker_lab({"bench-d": 231}) as lab, \
            tempfile.TemporaryDirectory(prefix="onepane-bench-") as tmp:
        config = location_toml("dc-c", "docker", {"hosts": lab.specs()}, lab.credentials())
        with onepane(Path(tmp) / "state", config) as (url, token, _):
            http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"},
                                timeout=120, limits=httpx.Limits(max_connections=WORKERS))
            archive = busybox_archive(Path(tmp) / "web.tar")
            img = http.post("/v1/catalog", params={"name": "web"},
                            content=archive.read_bytes()).raise_for_status().json()
            http.post(f"/v1/catalog/{img['id']}/replicate", json={"to": ["dc-c"]})
            deadline = time.monotonic() + 60
            tag = ""
            while not tag and time.monotonic() < deadline:
                reps = http.get(f"/v1/catalog/{img['id']}").json()["replicas"]
                tag = next((r["provider_image_id"] for r in reps if r["state"] == "ready"), "")
                time.sleep(0.1)
            for n in range(args.rounds):
                times = {}
                for way in (("direct", "api") if n % 2 == 0 else ("api", "direct")):
                    times[way] = (direct(lab, tag, args.count) if way == "direct"
                                  else via_api(http, img["id"], args.count, str(n)))
                    remove_all(lab)  # not timed: the next run starts from an empty host
                ratios.append(times["api"] / times["direct"])
                print(round_line(n, "the SDK directly", times, args.count))
    result("container_create_vs_docker_sdk", statistics.median(ratios), "ratio", "<=", 1.2)


if __name__ == "__main__":
    main()

"""Create 300 instances over three locations (two local, EC2 on moto) through onepane's API,
and the same creates directly with the drivers, in the same run; print the overhead ratio:
the median of `--rounds` pairs, measured back to back in alternating order.

    .venv/bin/python bench/provision.py [--count 300] [--concurrency 24] [--rounds 3]
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import tarfile
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import (
    create_and_wait,
    kill_instances,
    moto_server,
    onepane,
    result,
    round_line,
    three_locations,
)
from onepane.providers.base import InstanceSpec
from onepane.providers.ec2 import Ec2Provider
from onepane.providers.local import LocalProvider

AMI, SIZE = "ami-760aaa0f", "t2.micro"
WORKERS = 8  # onepane's default workers_per_location
SLEEPER = {"name": "sleeper", "command": ["sleep", "3600"], "port": "auto", "health_path": None}


def plan(count: int) -> list[tuple[str, str, str, str]]:
    locs = [("dc-a", "sleeper", "nano"), ("dc-b", "sleeper", "nano"), ("aws", AMI, SIZE)]
    return [(f"vm-{i}", *locs[i % 3]) for i in range(count)]


def sleeper_dir(root: Path) -> Path:
    d = root / "sleeper"
    d.mkdir()
    (d / "onepane-app.json").write_text(json.dumps(SLEEPER))
    return d


def direct(count: int, moto: str, root: Path) -> float:
    port = int(moto.rsplit(":", 1)[1])
    providers = {name: LocalProvider(name, root / "direct") for name in ("dc-a", "dc-b")}
    providers["aws"] = Ec2Provider("aws", "ec2-compat", "us-east-1",  # type: ignore[assignment]
                                     {"key": "k", "secret": "s"},
                                     {"host": "127.0.0.1", "port": port, "secure": False})
    app = sleeper_dir(root)
    for name in ("dc-a", "dc-b"):
        providers[name].setup()
        providers[name].import_image(app)

    def one(item: tuple[str, str, str, str]) -> None:
        name, loc, image, size = item
        p = providers[loc]
        p.validate(image, size)
        p.create_instance(InstanceSpec(f"inst-d{name}", name, image, size))

    for p in providers.values():  # warm up, as onepane's first sync does at start
        p.list_instances()
        p.list_sizes()
    # The same shape as onepane's runner: one pool of WORKERS threads per location.
    pools = {loc: ThreadPoolExecutor(WORKERS) for loc in providers}
    t0 = time.perf_counter()
    futures = [pools[item[1]].submit(one, item) for item in plan(count)]
    for f in futures:
        f.result()
    elapsed = time.perf_counter() - t0
    for pool in pools.values():
        pool.shutdown()
    kill_instances(root / "direct")
    return elapsed


def via_api(count: int, moto: str, root: Path, concurrency: int) -> float:
    config = three_locations(moto)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(sleeper_dir(root), ".")
    with onepane(root / "api", config) as (url, token, _):
        http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=120)
        for loc in ("dc-a", "dc-b"):
            http.post(f"/v1/locations/{loc}/images", content=buf.getvalue()).raise_for_status()

        def one(item: tuple[str, str, str, str]) -> None:
            name, loc, image, size = item
            create_and_wait(http, {"name": name, "location": loc, "image": image, "size": size})

        t0 = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(one, plan(count)))
        elapsed = time.perf_counter() - t0
        n = len(http.get("/v1/instances", params={"limit": 1000}).json()["items"])
        assert n == count, f"{n} instances in the inventory, expected {count}"
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=300)
    ap.add_argument("--concurrency", type=int, default=24)
    ap.add_argument("--rounds", type=int, default=3,
                    help="pairs of runs, the order alternating; the median ratio is the result")
    args = ap.parse_args()
    print(f"{args.count} creates over dc-a, dc-b, aws(moto); {WORKERS} workers per location, "
          f"{args.concurrency} concurrent API clients; {args.rounds} rounds")
    ratios = []
    with moto_server() as moto:
        for n in range(args.rounds):
            # A round measures both ways back to back, the order alternating between rounds
            # so that a drift of the machine (disk, the other processes) favours neither.
            times = {}
            for way in (("direct", "api") if n % 2 == 0 else ("api", "direct")):
                httpx.post(f"{moto}/moto-api/reset")
                with tempfile.TemporaryDirectory(prefix="onepane-bench-") as tmp:
                    times[way] = (direct(args.count, moto, Path(tmp)) if way == "direct"
                                  else via_api(args.count, moto, Path(tmp), args.concurrency))
            ratios.append(times["api"] / times["direct"])
            print(round_line(n, "direct with the drivers", times, args.count))
    result("provision_api_vs_direct", statistics.median(ratios), "ratio", "<=", 1.1)


if __name__ == "__main__":
    main()

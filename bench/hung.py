"""One hung cloud must not stall the API for everyone: a real `onepane up` with a local data
center and an EC2 location whose endpoint accepts connections and never answers. A user reads
the inventory and the locations steadily; the reference is that user's p99 while nothing else
happens, measured in the same run; then 45 creates at the hung location arrive at once.

    .venv/bin/python bench/hung.py [--creates 45] [--seconds 15]
"""

from __future__ import annotations

import argparse
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import onepane, percentile, result


def black_hole() -> tuple[socket.socket, int]:
    """Accepts every connection and never answers (a cloud endpoint that hangs)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(512)
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                held.append(srv.accept()[0])
            except OSError:
                return
    threading.Thread(target=accept, daemon=True).start()
    return srv, srv.getsockname()[1]


def reader(url: str, token: str, seconds: float) -> list[float]:
    lat = []
    deadline = time.monotonic() + seconds
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"},
                      timeout=120) as http:
        while time.monotonic() < deadline:
            for path in ("/v1/locations", "/v1/instances?limit=50"):
                t = time.monotonic()
                http.get(path).raise_for_status()
                lat.append(time.monotonic() - t)
            time.sleep(0.02)
    return lat


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--creates", type=int, default=45)
    ap.add_argument("--seconds", type=float, default=15.0)
    args = ap.parse_args()
    hole, port = black_hole()
    config = f"""sync_interval = 30
dns_port = 0
[locations.dc-a]
provider = "local"
[locations.hung]
provider = "cloud"
driver = "ec2-compat"
region = "us-east-1"
credentials = {{ key = "k", secret = "s" }}
options = {{ host = "127.0.0.1", port = {port}, secure = false }}
"""
    with tempfile.TemporaryDirectory(prefix="onepane-hung-") as tmp, \
            onepane(Path(tmp) / "state", config) as (url, token, _proc):
        idle = reader(url, token, args.seconds)
        outcomes: list[str] = []

        def create(n: int) -> None:
            with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"},
                              timeout=120) as http:
                r = http.post("/v1/instances", json={"name": f"h{n}", "location": "hung",
                                                     "image": "ami-760aaa0f", "size": "t2.micro"})
                outcomes.append(str(r.status_code))
        threads = [threading.Thread(target=create, args=(n,)) for n in range(args.creates)]
        for t in threads:
            t.start()
        busy = reader(url, token, args.seconds)
        for t in threads:
            t.join(120)
    hole.close()
    p99_idle, p99_busy = percentile(idle, 99) * 1000, percentile(busy, 99) * 1000
    print(f"user's reads: idle p99 {p99_idle:.1f} ms, max {max(idle) * 1000:.0f} ms "
          f"({len(idle)} requests); with {args.creates} creates waiting on the hung location "
          f"p99 {p99_busy:.1f} ms, max {max(busy) * 1000:.0f} ms ({len(busy)} requests)")
    counts = ", ".join(f"{c}: {outcomes.count(c)}" for c in sorted(set(outcomes)))
    print(f"the creates were answered: {counts}")
    result("hung_location_p99_ratio", p99_busy / p99_idle, "ratio", "<=", 2.0)


if __name__ == "__main__":
    main()

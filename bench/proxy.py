"""Requests/s and p99 through the built-in proxy and HAProxy (1 thread), on the same two
backends, in the same run, with wrk; direct to a backend as the ceiling, and bench/minproxy.py,
the least a Python proxy can do, as the floor under any proxy written in Python here. Beside
each rate, the proxy's own CPU time per request (user + system, from /proc): on a shared
2-core machine the rates move with what else runs, the CPU cost per request much less.

    .venv/bin/python bench/proxy.py [--seconds 3] [--rounds 9] [--connections 50]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import free_port, result, wait_http
from onepane.traffic.dataplane import DataPlaneConfig, PoolConfig
from onepane.traffic.haproxy import HaproxyDataPlane


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU time of a process so far (0 without one: the direct measurement)."""
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(url: str, seconds: int, connections: int, pid: int | None,
            backends: list[int]) -> tuple[float, float, float, float, float]:
    """Requests/s, p99 ms, and CPU microseconds per request of the proxy, of the backends
    and of wrk: the three share the 2 cores, so a proxy that makes the others work harder
    per request lowers the rate without costing more itself."""
    before = cpu_seconds(pid), sum(map(cpu_seconds, backends)), children_cpu()
    rps, p99, total = wrk(url, seconds, connections)
    after = cpu_seconds(pid), sum(map(cpu_seconds, backends)), children_cpu()
    per = [(a - b) / max(total, 1) * 1e6 for a, b in zip(after, before, strict=True)]
    return rps, p99, per[0], per[1], per[2]


def children_cpu() -> float:
    """User + system CPU time of the finished children (wrk runs) so far."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def wrk(url: str, seconds: int, connections: int) -> tuple[float, float, int]:
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", url],
                         capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    m = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    assert m, out
    p99 = float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    if "Non-2xx" in out or "Socket errors" in out:
        print(out)
    return rps, p99, total


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=3, help="per measurement")
    ap.add_argument("--rounds", type=int, default=9,
                    help="HAProxy, the floor and the built-in plane measured in turn, this "
                         "many times; the ratio is the median of each round's")
    ap.add_argument("--connections", type=int, default=50)
    args = ap.parse_args()
    procs: list[subprocess.Popen[bytes]] = []
    rounds: list[dict[str, tuple[float, float, float, float, float]]] = []
    with tempfile.TemporaryDirectory(prefix="onepane-bench-") as tmp:
        work = Path(tmp)
        try:
            ports = [free_port(), free_port()]
            for i, port in enumerate(ports):
                procs.append(subprocess.Popen([sys.executable, str(Path(__file__).parent /
                                                                   "fastbackend.py"),
                                               str(port), f"b{i}"]))
            for port in ports:
                wait_http(f"http://127.0.0.1:{port}/")
            backends = tuple(("127.0.0.1", p) for p in ports)
            builtin_port, hap_port = free_port(), free_port()
            cfg = work / "builtin.json"
            cfg.write_text(json.dumps({"listen": f"127.0.0.1:{builtin_port}", "mode": "http",
                                       "policy": "weighted", "pools": [
                                           {"name": "all", "weight": 1,
                                            "backends": [list(b) for b in backends]}]}))
            procs.append(subprocess.Popen([sys.executable, "-m", "onepane.traffic.proxy",
                                           str(cfg)], stdout=subprocess.DEVNULL))
            wait_http(f"http://127.0.0.1:{builtin_port}/")
            min_port = free_port()
            procs.append(subprocess.Popen([sys.executable, str(Path(__file__).parent /
                                                               "minproxy.py"), str(min_port),
                                           *(str(p) for p in ports)]))
            wait_http(f"http://127.0.0.1:{min_port}/")
            hap = HaproxyDataPlane("bench", work)
            hap.apply(DataPlaneConfig(listen=f"127.0.0.1:{hap_port}", mode="http",
                                      policy="weighted",
                                      pools=(PoolConfig("all", backends, 1),)))
            targets = [("direct", ports[0], None), ("haproxy", hap_port, hap.pid()),
                       ("minproxy", min_port, procs[3].pid), ("builtin", builtin_port, procs[2].pid)]
            for _, port, _ in targets:
                wrk(f"http://127.0.0.1:{port}/", 1, args.connections)  # warm up
            # The 2 cores are shared by wrk, both backends and the proxy measured, and what
            # else runs on the machine: one long measurement per plane compared planes at
            # different moments (HAProxy alone varied 68-76k req/s between runs). Taking them
            # in turn, round after round, compares each round's planes at nearly one moment.
            # The order turns round every round, so that a drift of the machine within a round
            # does not always fall on the plane measured last.
            for i in range(args.rounds):
                rounds.append({name: measure(f"http://127.0.0.1:{port}/", args.seconds,
                                             args.connections, pid, [p.pid for p in procs[:2]])
                               for name, port, pid in (targets[::-1] if i % 2 else targets)})
            hap.stop()
        finally:
            for p in procs:
                p.terminate()
                p.wait()
    print(f"wrk -t1 -c{args.connections} -d{args.seconds}s, two backends, 2 cores shared by all, "
          f"{args.rounds} rounds")
    for i, rows in enumerate(rounds, 1):
        print(f"  round {i}: " + "  ".join(
            f"{name} {rows[name][0]:6.0f}/s p99 {rows[name][1]:.2f} ms"
            + (f" {rows[name][2]:.1f} us" if rows[name][2] else "") for name, _, _ in targets))
    for name in ("direct", "haproxy", "minproxy", "builtin"):
        proxy, back, client = (statistics.median(r[name][i] for r in rounds) for i in (2, 3, 4))
        print(f"  {name}: CPU per request (medians) proxy {proxy:.1f} us, backends "
              f"{back:.1f} us, wrk {client:.1f} us, all {proxy + back + client:.1f} us")
    ratio = statistics.median(r["builtin"][0] / r["haproxy"][0] for r in rounds)
    floor = statistics.median(r["minproxy"][0] / r["haproxy"][0] for r in rounds)
    print(f"  built-in / HAProxy (median of the rounds): {ratio:.3f}; the least a Python proxy "
          f"does / HAProxy: {floor:.3f}")
    print("  (every feature the built-in plane exists for, hedging, retries, header hygiene,\n"
          "   timeouts, stats, costs Python time per request on top of that floor)")
    result("proxy_vs_haproxy", ratio, "ratio", ">=", 0.8)


if __name__ == "__main__":
    main()

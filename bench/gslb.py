"""DNS failover as a browser sees it: a site cut silently, clients resolving through unbound.

Two network-namespace sites with a front door each, a deployment published in PowerDNS (its
HTTP API, in a namespace of its own) with TTL 5 s, and unbound as the caching resolver between
the clients and PowerDNS. The load is open loop, in a process of its own: 100 requests a second
leave on schedule whether or not earlier ones have answered. Each request behaves like a
browser's: it resolves the name through unbound (whose cache is what a client waits out), then
tries the answer's addresses in turn on pooled keep-alive connections (one pool per address,
connect timeout 1 s, read timeout 2 s), moving to the next address when one fails; it fails only
when every address did.

Then the primary site is cut silently (its packets vanish, its door with it). Figures:
  gslb_failed_requests    requests that no address answered (target 0)
  gslb_record_update_ms   onepane's health decision (the door's `frontdoor.down` event) to the
                          authoritative answer changed, polled every 5 ms (target <= 1000)
  gslb_client_switch_s    the cut to the end of the last request that still tried the dead
                          door (after it every client goes straight to the other site), target
                          <= detection + TTL + 1 s
The reference, measured in the same run: PowerDNS's own API call to answer-changed time.

    .venv/bin/python bench/gslb.py [--rate 100] [--after 14]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import free_port, percentile, result

SITES = ("gb-east", "gb-west")
INDEX = {SITES[0]: 231, SITES[1]: 232}
ZONE = "pdns.onepane.test."
NAME = f"shop.{ZONE}"
TTL = 5


async def client(resolver: str, port: int, rate: float, seconds: float, out: Path) -> None:
    """The browser-like open-loop load; writes one JSON line per request."""
    import dns.asyncresolver
    import httpx

    res = dns.asyncresolver.Resolver(configure=False)
    res.nameservers, res.lifetime, res.cache = [resolver], 2.0, None
    timeout = httpx.Timeout(2.0, connect=1.0)
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=64)
    rows: list[dict[str, object]] = []
    async with httpx.AsyncClient(timeout=timeout, limits=limits) as http:
        async def one(due: float) -> None:
            tried: list[str] = []
            try:
                answer = await res.resolve(NAME, "A")
                addresses = [a.to_text() for a in answer]
            except Exception as exc:
                rows.append({"due": due, "end": time.time(), "ok": False, "error": f"dns {exc}"})
                return
            for address in addresses:
                tried.append(address)
                try:
                    r = await http.get(f"http://{address}:{port}/", headers={"Host": NAME})
                    rows.append({"due": due, "end": time.time(), "ok": r.status_code == 200,
                                 "tried": tried, "by": r.headers.get("x-served-by")})
                    return
                except httpx.HTTPError:
                    continue
            rows.append({"due": due, "end": time.time(), "ok": False, "tried": tried})

        start, tasks, n = time.time(), [], 0
        while time.time() - start < seconds:
            due = start + n / rate
            await asyncio.sleep(max(0.0, due - time.time()))
            tasks.append(asyncio.create_task(one(due)))
            n += 1
        await asyncio.gather(*tasks)
    out.write_text("\n".join(json.dumps(r) for r in rows))


def authoritative(server: str) -> set[str]:
    import dns.resolver
    r = dns.resolver.Resolver(configure=False)
    r.nameservers, r.lifetime, r.cache = [server], 1.0, None
    try:
        return {a.to_text() for a in r.resolve(NAME, "A")}
    except Exception:
        return set()


def wait(cond: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():  # type: ignore[operator]
            return
        time.sleep(0.01)
    raise SystemExit(f"timed out waiting for {what}")


def reference_update_ms(lab: object, rounds: int = 5) -> float:
    """PowerDNS alone: API PATCH sent -> the authoritative answer is the new one."""
    import httpx
    times = []
    for i in range(rounds):
        value = f"192.0.2.{100 + i}"
        t0 = time.monotonic()
        httpx.patch(f"{lab.pdns_api}/api/v1/servers/localhost/zones/{ZONE}",  # type: ignore[attr-defined]
                    headers={"X-API-Key": lab.api_key}, timeout=5,  # type: ignore[attr-defined]
                    json={"rrsets": [{"name": f"ref.{ZONE}", "type": "A", "ttl": TTL,
                                      "changetype": "REPLACE",
                                      "records": [{"content": value, "disabled": False}]}]})
        import dns.resolver
        r = dns.resolver.Resolver(configure=False)
        r.nameservers, r.cache = [lab.pdns], None  # type: ignore[attr-defined]
        while {a.to_text() for a in r.resolve(f"ref.{ZONE}", "A")} != {value}:
            time.sleep(0.005)
        times.append((time.monotonic() - t0) * 1000)
    return percentile(times, 50)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=float, default=100)
    ap.add_argument("--before", type=float, default=4)
    ap.add_argument("--after", type=float, default=14)
    ap.add_argument("--client", nargs=5, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.client:
        resolver, port, rate, seconds, out = args.client
        asyncio.run(client(resolver, int(port), float(rate), float(seconds), Path(out)))
        return

    from onepane.dnslab import dns_lab
    from onepane.lab import fail, netns_lab, recover
    from onepane.spec import parse_spec

    with dns_lab(index=233) as lab, tempfile.TemporaryDirectory() as tmp:
        ref_ms = reference_update_ms(lab)
        accounts = {"pdns": {"kind": "powerdns", "url": lab.pdns_api, "api_key": lab.api_key}}
        with netns_lab(Path(tmp), INDEX, sync_interval=0.5, dns_accounts=accounts) as core:
            port = free_port()
            core.deployments.apply(parse_spec({
                "name": "shop", "image": "httpecho", "replicas": {SITES[0]: 1, SITES[1]: 1},
                "listen": f"127.0.0.1:{port}", "front_doors": "per-site",
                "dns": {"provider": "pdns", "zone": ZONE, "name": "shop", "ttl": TTL},
                "traffic": {"order": list(SITES)}}))  # the default health check
            doors = {f"10.200.{i}.2" for i in INDEX.values()}
            wait(lambda: authoritative(lab.pdns) == doors, 60, "both doors published")
            out = Path(tmp) / "load.jsonl"
            seconds = args.before + args.after
            load = subprocess.Popen([sys.executable, __file__, "--client", lab.resolver,
                                     str(port), str(args.rate), str(seconds), str(out)])
            time.sleep(args.before)  # the load's own schedule: cut in its middle
            cut_at = time.time()
            fail(core, SITES[0], "silent")
            west = {f"10.200.{INDEX[SITES[1]]}.2"}
            wait(lambda: authoritative(lab.pdns) == west, 30, "the record to move")
            changed_at = time.time()
            load.wait(seconds + 60)
            rows = [json.loads(line) for line in out.read_text().splitlines()]
            events = core.events.list(subject="shop", limit=1000).items
            down = [e for e in events if e.kind == "frontdoor.down" and e.location == SITES[0]]
            decided_at = down[0].ts.timestamp() if down else changed_at
            recover(core, SITES[0], "silent")
    failed = [r for r in rows if not r["ok"]]
    dead = f"10.200.{INDEX[SITES[0]]}.2"
    after = [r for r in rows if r["due"] >= cut_at]
    touched = [r["end"] for r in after if dead in r.get("tried", [])]
    switch_s = (max(touched) - cut_at) if touched else 0.0
    detection_s = decided_at - cut_at
    update_ms = (changed_at - decided_at) * 1000
    lat = [(r["end"] - r["due"]) * 1000 for r in after if r["ok"]]
    print(f"requests {len(rows)} (after the cut {len(after)}), failed {len(failed)}; "
          f"detection {detection_s:.2f} s; record changed {update_ms:.0f} ms after the decision "
          f"(PowerDNS alone: {ref_ms:.1f} ms); last request to try the dead door ended "
          f"{switch_s:.2f} s after the cut; after the cut p50 {percentile(lat, 50):.0f} ms, "
          f"p99 {percentile(lat, 99):.0f} ms, max {max(lat):.0f} ms")
    for r in failed[:3]:
        print("failed:", r)
    result("gslb_failed_requests", len(failed), "requests", "==", 0)
    result("gslb_record_update_ms", update_ms, "ms", "<=", 1000)
    result("gslb_client_switch_s", switch_s, "s", "<=", round(detection_s + TTL + 1, 2))


if __name__ == "__main__":
    main()

"""How long each console page takes to render with 20,000 instances in the inventory and 500
deployments, in headless chromium against a real `onepane up`: navigation start to the frame
after the page's data-ready mark (what is on screen, painted), the traffic map's first paint on
the overview, and a tag filter plus a sort on the open inventory.

The 500 deployments are the API's answer as the browser sees it (served by Playwright in place
of `GET /v1/deployments`): 500 real ones would start 500 data planes and 1,000 replicas, which
measures this machine rather than the console. Everything else is the real server's.

    .venv/bin/python bench/console.py [--instances 20000] [--deployments 500] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from playwright.sync_api import Route, sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import onepane, percentile, result
from bench.inventory import seed

PAGES = ["#/overview", "#/inventory", "#/deployments", "#/images", "#/events", "#/manage"]
LOCS = ("dc-a", "dc-b", "aws")
# resolves once the browser has painted what is in the DOM now (the frame after the next)
PAINTED = "new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))"


def fake_deployments(n: int) -> list[dict[str, Any]]:
    return [{
        "name": f"app-{i}", "primary": LOCS[i % 2], "listen": f"127.0.0.1:{20000 + i}",
        "generation": 1, "created_at": "2026-11-26T00:00:00Z",
        "spec": {"traffic": {"mode": "active-passive"}, "data_plane": "builtin"},
        "status": {"serving": [LOCS[i % 2]], "observed_generation": 1, "locations": {
            loc: {"healthy": 1, "replicas": 1, "up": True} for loc in LOCS[:2]}}}
        for i in range(n)]


def answer_for(deployments: list[dict[str, Any]]) -> Callable[[Route], None]:
    """Serves the fake deployments as the API would: the list, one deployment, and empty
    metrics and traffic for it (no data plane ever ran)."""
    by_name = {d["name"]: d for d in deployments}
    listing = json.dumps(deployments)

    def answer(route: Route) -> None:
        path = urlsplit(route.request.url).path
        parts = path.removeprefix("/v1/deployments").strip("/").split("/")
        if parts == [""]:
            body = listing
        elif parts[0] not in by_name:
            route.continue_()
            return
        elif len(parts) == 1:
            body = json.dumps(by_name[parts[0]])
        else:
            body = json.dumps({"series": [], "locations": {}})
        route.fulfill(status=200, content_type="application/json", body=body)
    return answer


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--instances", type=int, default=20000)
    ap.add_argument("--deployments", type=int, default=500)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    times: dict[str, list[float]] = {p: [] for p in PAGES}
    map_paint: list[float] = []
    deployments = fake_deployments(args.deployments)
    with tempfile.TemporaryDirectory(prefix="onepane-bench-") as tmp:
        state = Path(tmp)
        seed(state, args.instances)
        config = "sync_interval = 3600\ndns_port = 0\n" + "".join(
            f'[locations.{loc}]\nprovider = "local"\n' for loc in ("dc-a", "dc-b", "aws"))
        with onepane(state, config) as (url, token, _), sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True)
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.route(re.compile(r".*/v1/deployments(/[^?]*)?(\?.*)?$"), answer_for(deployments))
            page.goto(url + "/")
            page.evaluate(f"sessionStorage.setItem('onepane-token', '{token}')")
            for _ in range(args.rounds + 1):  # the first round warms caches and is dropped
                for route in PAGES:
                    t0 = time.perf_counter()
                    page.goto(f"{url}/?r={time.time()}{route}")
                    if route == "#/overview":
                        page.wait_for_selector("#traffic-map", state="attached")
                        page.evaluate(PAINTED)
                        map_paint.append((time.perf_counter() - t0) * 1000)
                    page.wait_for_selector(f'main[data-ready="{route}"]', state="attached")
                    page.evaluate(PAINTED)
                    times[route].append((time.perf_counter() - t0) * 1000)
                page.goto(f"{url}/?r={time.time()}#/inventory")
                page.wait_for_selector('main[data-ready="#/inventory"]', state="attached")
                t0 = time.perf_counter()  # filter by tag, then sort by name, on the open page
                page.fill("#filter-tag", "team=t3")
                page.press("#filter-tag", "Enter")
                page.click('a[data-sort="name"]')
                page.wait_for_selector('a[data-sort="name"]:has-text("▲")')
                page.evaluate(PAINTED)
                times.setdefault("inventory filtered+sorted", []).append(
                    (time.perf_counter() - t0) * 1000)
            browser.close()
    print(f"console pages with {args.instances} instances and {args.deployments} deployments, "
          f"{args.rounds} rounds, full reloads")
    print(f"  traffic map first paint p50 {percentile(map_paint[1:], 50):6.1f} ms (target < 500)")
    worst = 0.0
    for route, ts in times.items():
        ts = ts[1:]
        p50, mx = percentile(ts, 50), max(ts)
        worst = max(worst, p50)
        print(f"  {route:15} p50 {p50:6.1f} ms   max {mx:6.1f} ms")
    result("console_slowest_page_p50", worst, "ms", "<", 300)


if __name__ == "__main__":
    main()

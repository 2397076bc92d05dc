"""How long each console page takes to render with 5,000 instances in the inventory, in
headless chromium against a real `onepane up`: navigation start to the page's data-ready mark.

    .venv/bin/python bench/console.py [--instances 5000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import onepane, percentile, result
from bench.inventory import seed

PAGES = ["#/overview", "#/inventory", "#/deployments", "#/images", "#/events"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--instances", type=int, default=5000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    times: dict[str, list[float]] = {p: [] for p in PAGES}
    with tempfile.TemporaryDirectory(prefix="onepane-bench-") as tmp:
        state = Path(tmp)
        seed(state, args.instances)
        config = "sync_interval = 3600\ndns_port = 0\n" + "".join(
            f'[locations.{loc}]\nprovider = "local"\n' for loc in ("dc-a", "dc-b", "aws"))
        with onepane(state, config) as (url, token, _), sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True)
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(url + "/")
            page.evaluate(f"sessionStorage.setItem('onepane-token', '{token}')")
            for _ in range(args.rounds + 1):  # the first round warms caches and is dropped
                for route in PAGES:
                    t0 = time.perf_counter()
                    page.goto(f"{url}/?r={time.time()}{route}")
                    page.wait_for_selector(f'main[data-ready="{route}"]', state="attached")
                    times[route].append((time.perf_counter() - t0) * 1000)
            browser.close()
    print(f"console pages with {args.instances} instances, {args.rounds} rounds, full reloads")
    worst = 0.0
    for route, ts in times.items():
        ts = ts[1:]
        p50, mx = percentile(ts, 50), max(ts)
        worst = max(worst, p50)
        print(f"  {route:15} p50 {p50:6.1f} ms   max {mx:6.1f} ms")
    result("console_slowest_page_p50", worst, "ms", "<", 300)


if __name__ == "__main__":
    main()

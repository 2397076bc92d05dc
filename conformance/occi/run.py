"""Run CESNET's OCCI compliance tool (pOCCI) against fresh onepane servers, one per
rendering, and check onepane's JSON documents against a JSON Schema written from GFD.226.

Called by conformance/occi.sh, which prepares pOCCI; runs with onepane's own Python. Each
rendering gets a fresh onepane (default local data centers) with one compute made first through
OCCI itself: three of pOCCI's tests read or act on "an existing compute" and create none.
The last line is `RESULT occi_pocci_passed N count target >= 26`.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from jsonschema import Draft202012Validator

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
ONEPANE = Path(sys.executable).parent / "onepane"
INFRA = "http://schemas.ogf.org/occi/infrastructure#"
JSON = "application/occi+json"
TARGET = 26


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Onepane:
    """A fresh `onepane up` with the embedded default configuration, stopped with `down`."""

    def __init__(self, state: Path) -> None:
        self.state, self.port = state, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = (state.parent / f"{state.name}.log").open("wb")
        self.proc = subprocess.Popen([str(ONEPANE), "up", "--port", str(self.port), "--dns-port",
                                      "off", "--state-dir", str(state)],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"onepane did not start; see {self.log.name}")
            time.sleep(0.1)
        self.token = (state / "admin.token").read_text().strip()
        self.http = httpx.Client(base_url=f"{self.url}/occi/", timeout=120,
                                 headers={"Authorization": f"Bearer {self.token}"})

    def stop(self) -> None:
        subprocess.run([str(ONEPANE), "down", "--yes", "--state-dir", str(self.state)],
                       capture_output=True, timeout=120, check=False)
        self.proc.wait(30)
        self.log.close()


def seed_compute(op: Onepane) -> None:
    body = f'Category: compute; scheme="{INFRA}"; class="kind"\nX-OCCI-Attribute: occi.core.title="seed"\n'
    r = op.http.post("compute/", content=body, headers={"Content-Type": "text/plain"})
    if r.status_code != 201:
        raise SystemExit(f"could not create the seed compute: {r.status_code} {r.text}")


def run_pocci(op: Onepane, python: str, src: Path, mime: str) -> list[dict[str, Any]]:
    r = subprocess.run([python, "-m", "pOCCI.pOCCI", "-a", "token", "-T", op.token, "-e", op.url,
                        "-m", mime, "-f", "json"], cwd=src, capture_output=True, text=True,
                       timeout=900, env={**os.environ, "PYTHONPATH": str(src)})
    try:
        start = r.stdout.index("{")
        return list(json.loads(r.stdout[start:])["tests"])
    except (ValueError, KeyError) as exc:
        raise SystemExit(f"pOCCI ({mime}) printed no results:\n{r.stdout}\n{r.stderr}") from exc


def json_documents(op: Onepane) -> list[tuple[str, Any]]:
    """Every kind of JSON document onepane writes: the model, collections (empty and not),
    resources, links, replies to create, update, action and filter requests."""
    h = {"Accept": JSON}
    docs: list[tuple[str, Any]] = []

    def get(path: str, **kw: Any) -> Any:
        r = op.http.get(path, headers={**h, **kw.pop("headers", {})}, **kw)
        r.raise_for_status()
        docs.append((f"GET {path}", r.json() if r.content else None))
        return docs[-1][1]

    def post(path: str, doc: dict[str, Any], expect: int = 201) -> Any:
        r = op.http.post(path, json=doc, headers={**h, "Content-Type": JSON})
        if r.status_code != expect:
            raise SystemExit(f"POST {path}: {r.status_code} {r.text}")
        docs.append((f"POST {path}", r.json()))
        return docs[-1][1]

    model = get("-/")
    get("storagelink/")  # empty yet
    compute = post("compute/", {"kind": INFRA + "compute", "attributes": {
        "occi.core.title": "json-web", "occi.compute.cores": 1}})
    storage = post("storage/", {"kind": INFRA + "storage", "attributes": {"occi.storage.size": 1}})
    network = post("network/", {"kind": INFRA + "network", "attributes": {"occi.core.title": "n1"}})
    c_url, s_url = op.http.base_url.join(f"compute/{compute['id']}"), op.http.base_url.join(
        f"storage/{storage['id']}")
    post("storagelink/", {"kind": INFRA + "storagelink", "source": {"location": str(c_url)},
                          "target": {"location": str(s_url)}, "attributes": {}})
    post("networkinterface/", {"kind": INFRA + "networkinterface", "source": {
        "location": str(c_url)}, "target": {"location": str(op.http.base_url.join(
            f"network/{network['id']}"))}, "attributes": {}})
    post(f"compute/{compute['id']}", {"attributes": {"occi.core.summary": "updated"}}, 200)
    post(f"compute/{compute['id']}?action=stop",
         {"action": "http://schemas.ogf.org/occi/infrastructure/compute/action#stop"}, 200)
    for cat in [*model.get("kinds", []), *model.get("mixins", [])]:
        body = get(cat["location"].removeprefix("/occi/"))
        for item in [*body.get("resources", []), *body.get("links", [])]:
            kind = item["kind"].split("#")[1]
            get(f"{kind}/{item['id']}")
    get("compute/", headers={"Category": f'compute; scheme="{INFRA}"; class="kind"'})
    get("-/", params={"category": INFRA + "compute"})
    return docs


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pocci-python", required=True)
    ap.add_argument("--pocci-src", type=Path, required=True)
    ap.add_argument("--renderings", default="text/plain,text/occi")
    args = ap.parse_args()
    schema = json.loads((HERE / "occi-json.schema.json").read_text())
    Draft202012Validator.check_schema(schema)
    validator = Draft202012Validator(schema)
    passed = total = 0
    with tempfile.TemporaryDirectory(prefix="onepane-occi-") as tmp:
        for mime in args.renderings.split(","):
            op = Onepane(Path(tmp) / mime.replace("/", "-"))
            try:
                seed_compute(op)
                results = run_pocci(op, args.pocci_python, args.pocci_src, mime)
            finally:
                op.stop()
            for t in results:
                ok = t["status"] == "OK"
                passed, total = passed + ok, total + 1
                reason = "" if ok else "  " + "; ".join(map(str, t.get("reason", [])))[:200]
                print(f"{mime:11} {t['name']:24} {t['status']}{reason}")
        op = Onepane(Path(tmp) / "json")
        try:
            docs = json_documents(op)
        finally:
            op.stop()
    invalid = [(where, e.message) for where, doc in docs
               for e in validator.iter_errors(doc)][:20]
    for where, message in invalid:
        print(f"JSON {where}: {message[:300]}")
    print(f"JSON documents: {len(docs)}, valid: {len(docs) - len({w for w, _ in invalid})}")
    print(f"pOCCI: {passed} of {total} passed")
    print(f"RESULT occi_pocci_passed {passed} count target >= {TARGET}")
    return 0 if passed >= TARGET and not invalid else 1


if __name__ == "__main__":
    sys.exit(main())

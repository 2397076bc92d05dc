"""Long-lived connections through both data planes (issue 27): a WebSocket to a backend that
lives survives a failover that moves new traffic elsewhere, and one whose backend is cut off
silently is closed for the client (not held open) within the keepalive bound. A real
WebSocket server (the `websockets` package) in two network-namespace data centers, a real
client."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from onepane.core import Core
from onepane.lab import fail, netns_lab, recover
from onepane.spec import parse_spec
from tests.helpers import free_port, kill_instances, wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")
LOCS = ("ws-east", "ws-west")
PLANES = ("builtin", "haproxy")
APP = '''import asyncio, http, os
from websockets.asyncio.server import serve

async def echo(ws):
    async for message in ws:
        await ws.send(os.environ["ONEPANE_LOCATION"] + ":" + message)

def health(connection, request):
    if request.path == "/healthz":
        return connection.respond(http.HTTPStatus.OK, "ok\\n")

async def main():
    async with serve(echo, os.environ["HOST"], int(os.environ["PORT"]), process_request=health):
        await asyncio.get_running_loop().create_future()

asyncio.run(main())
'''


@pytest.fixture
def core(tmp_path: Path) -> Iterator[Core]:
    app = tmp_path / "wsecho"
    app.mkdir()
    (app / "onepane-app.json").write_text(json.dumps(
        {"name": "wsecho", "command": ["{python}", "ws.py"], "health_path": "/healthz"}))
    (app / "ws.py").write_text(APP)
    with netns_lab(tmp_path / "state", {LOCS[0]: 237, LOCS[1]: 238}, sync_interval=0.3) as c:
        for loc in LOCS:
            c.registry.get(loc).import_image(app)
        yield c
    kill_instances(tmp_path / "state")


def up(core: Core, name: str, loc: str) -> bool:
    return bool((core.deployments.get(name).status.get("locations") or {}).get(loc, {}).get("up"))


def test_websockets_survive_a_failover_and_end_when_their_backend_is_cut(core: Core) -> None:
    ports = {}
    for plane in PLANES:
        ports[plane] = free_port()
        core.deployments.apply(parse_spec({
            "name": f"ws-{plane}", "image": "wsecho", "size": "small",
            "replicas": {LOCS[0]: 1, LOCS[1]: 1}, "listen": f"127.0.0.1:{ports[plane]}",
            "data_plane": plane, "health": {"path": "/healthz"},
            "traffic": {"mode": "active-passive", "order": list(LOCS)}}))
    for plane in PLANES:
        wait_for(lambda p=plane: all(up(core, f"ws-{p}", loc) for loc in LOCS), 40,
                 what=f"ws-{plane} up at both locations")
    stack = contextlib.ExitStack()
    first = {p: stack.enter_context(connect(f"ws://127.0.0.1:{ports[p]}/", open_timeout=10))
             for p in PLANES}
    second = {}
    try:
        for plane, ws in first.items():
            ws.send("hello")
            assert ws.recv(timeout=5) == f"{LOCS[0]}:hello", plane
        for plane in PLANES:  # new traffic goes to the other location; the old tunnel stays
            core.deployments.failover(f"ws-{plane}")
            wait_for(lambda p=plane: core.deployments.get(f"ws-{p}").primary == LOCS[1], 10,
                     what="the failover")

        def at_second(plane: str) -> bool:
            ws = stack.enter_context(connect(f"ws://127.0.0.1:{ports[plane]}/", open_timeout=10))
            ws.send("x")
            if ws.recv(timeout=5) == f"{LOCS[1]}:x":
                second[plane] = ws
                return True
            ws.close()
            return False
        for plane in PLANES:
            wait_for(lambda p=plane: at_second(p), 15, what=f"{plane}: new connections at B")
        for plane, ws in first.items():  # its backend lives: it survived the failover
            ws.send("still")
            assert ws.recv(timeout=5) == f"{LOCS[0]}:still", plane

        fail(core, LOCS[1], "silent")  # the second connections' backend goes silent
        for ws in second.values():
            with pytest.raises(ConnectionClosed):  # closed for the client, not held open
                ws.recv(timeout=25)
        for plane, ws in first.items():  # the other location's tunnels are untouched
            ws.send("after")
            assert ws.recv(timeout=5) == f"{LOCS[0]}:after", plane
    finally:
        recover(core, LOCS[1], "silent")
        stack.close()

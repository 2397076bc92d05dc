"""The OCCI 1.2 front end over HTTP, in every rendering, after the examples of the OCCI 1.2 HTTP
protocol and text/JSON rendering documents; malformed renderings and unknown kinds get 400s."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import Server
from tests.helpers import wait_for

INFRA = "http://schemas.ogf.org/occi/infrastructure#"
ACTION = "http://schemas.ogf.org/occi/infrastructure/compute/action#"
ONEPANE = "http://onepane.dev/occi/"
OCCI_JSON = "application/occi+json"

CONFIG = """
sync_interval = 0.5
[locations.dc-a]
provider = "local"
[locations.dc-b]
provider = "local"
"""


@pytest.fixture(scope="module")
def occi(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    """One server for the module: the tests make and delete their own entities."""
    server = Server(tmp_path_factory.mktemp("occi"), CONFIG)
    client = httpx.Client(base_url=f"{server.url}/occi/", timeout=30,
                          headers={"Authorization": f"Bearer {server.token}"})
    client.server = server  # type: ignore[attr-defined]
    try:
        yield client
    finally:
        server.stop()


def compute_state(occi: httpx.Client, location: str) -> str:
    r = occi.get(location, headers={"Accept": OCCI_JSON})
    assert r.status_code == 200, r.text
    return str(r.json()["attributes"]["occi.compute.state"])


def test_query_interface_in_every_rendering(occi: httpx.Client) -> None:
    plain = occi.get("-/", headers={"Accept": "text/plain"})
    assert plain.status_code == 200 and plain.headers["content-type"].startswith("text/plain")
    assert "OCCI/1.2" in plain.headers["server"]
    lines = plain.text.splitlines()
    compute = next(ln for ln in lines if ln.startswith("Category: compute;"))
    assert f'scheme="{INFRA}"; class="kind"' in compute
    assert 'rel="http://schemas.ogf.org/occi/core#resource"' in compute
    assert "occi.compute.state{immutable}" in compute and f"{ACTION}start" in compute
    assert any(f'scheme="{ONEPANE}dc-a/os_tpl#"' in ln and ln.startswith("Category: httpecho;")
               for ln in lines)

    headers = occi.get("-/", headers={"Accept": "text/occi"})
    assert headers.headers["content-type"].startswith("text/occi")
    categories = headers.headers.get_list("category")
    assert any(c.startswith("storagelink;") for c in categories)

    doc = occi.get("-/", headers={"Accept": OCCI_JSON}).json()
    kinds = {k["term"]: k for k in doc["kinds"]}
    assert set(kinds) >= {"entity", "resource", "link", "compute", "storage", "network",
                          "networkinterface", "storagelink"}
    assert kinds["compute"]["location"].endswith("/occi/compute/")
    assert kinds["compute"]["attributes"]["occi.compute.state"]["mutable"] is False
    mixins = {(m["scheme"], m["term"]): m for m in doc["mixins"]}
    assert mixins[(f"{ONEPANE}dc-b/resource_tpl#", "small")]["depends"] == [INFRA + "resource_tpl"]
    assert {a["term"] for a in doc["actions"]} >= {"start", "stop", "restart", "suspend"}

    only = occi.get("-/", params={"category": INFRA + "compute"}, headers={"Accept": OCCI_JSON}).json()
    assert [k["term"] for k in only["kinds"]] == ["compute"] and not only["mixins"]
    well_known = httpx.get(str(occi.base_url).replace("/occi/", "/.well-known/org/ogf/occi/-/"),
                           headers={**occi.headers, "Accept": "text/plain"})
    assert well_known.status_code == 200 and "Category: compute;" in well_known.text


def test_compute_lifecycle_in_three_renderings(occi: httpx.Client) -> None:
    # text/plain: everything in the body
    body = (f'Category: compute; scheme="{INFRA}"; class="kind"\n'
            f'Category: httpecho; scheme="{ONEPANE}dc-a/os_tpl#"; class="mixin"\n'
            f'Category: small; scheme="{ONEPANE}dc-a/resource_tpl#"; class="mixin"\n'
            'X-OCCI-Attribute: occi.core.title="web-plain"\n')
    r = occi.post("compute/", content=body, headers={"Content-Type": "text/plain"})
    assert r.status_code == 201, r.text
    plain_loc = r.headers["location"]
    assert "X-OCCI-Attribute: occi.core.title=\"web-plain\"" in r.text

    # text/occi: everything in headers
    r = occi.post("compute/", headers=[
        ("Content-Type", "text/occi"),
        ("Category", f'compute; scheme="{INFRA}"; class="kind", '
                     f'httpecho; scheme="{ONEPANE}dc-b/os_tpl#"; class="mixin"'),
        ("Category", f'dc-b; scheme="{ONEPANE}location#"; class="mixin"'),
        ("X-OCCI-Attribute", 'occi.core.title="web-headers"')])
    assert r.status_code == 201, r.text
    headers_loc = r.headers["location"]

    # application/occi+json
    doc = {"kind": INFRA + "compute", "mixins": [f"{ONEPANE}dc-a/os_tpl#httpecho"],
           "attributes": {"occi.core.title": "web-json"}}
    r = occi.post("compute/", content=json.dumps(doc),
                  headers={"Content-Type": OCCI_JSON, "Accept": OCCI_JSON})
    assert r.status_code == 201, r.text
    assert r.json()["kind"] == INFRA + "compute"
    json_loc = r.headers["location"]

    every = [plain_loc, headers_loc, json_loc]
    wait_for(lambda: all(compute_state(occi, loc) == "active" for loc in every), 30,
             what="three computes active")
    entity = occi.get(headers_loc, headers={"Accept": OCCI_JSON}).json()
    assert f"{ONEPANE}location#dc-b" in entity["mixins"]
    assert f"{ACTION}stop" in entity["actions"] and f"{ACTION}start" not in entity["actions"]

    # collections, filtered, in each rendering
    listing = occi.get("compute/", headers={"Accept": "text/plain"}).text.splitlines()
    assert sorted(ln.split(": ", 1)[1] for ln in listing) == sorted(every)
    uris = occi.get("compute/", headers={"Accept": "text/uri-list"}).text.split()
    assert sorted(uris) == sorted(every)
    in_b = occi.get("compute/", params={"category": f"{ONEPANE}location#dc-b"},
                    headers={"Accept": OCCI_JSON}).json()["resources"]
    assert [e["location"] for e in in_b] == [headers_loc]
    titled = occi.get("compute/", params={"attribute": "occi.core.title=web-json"},
                      headers={"Accept": "text/occi"})
    assert titled.headers.get_list("x-occi-location") == [json_loc]

    # actions: stop, start, restart; text/plain and JSON invocations
    r = occi.post(plain_loc, params={"action": "stop"},
                  content=f'Category: stop; scheme="{ACTION}"; class="action"\n',
                  headers={"Content-Type": "text/plain"})
    assert r.status_code == 200, r.text
    wait_for(lambda: compute_state(occi, plain_loc) == "inactive", 30, what="stopped")
    again = occi.post(plain_loc, params={"action": "stop"})
    assert again.status_code == 400 and "not applicable" in again.text
    r = occi.post(plain_loc, params={"action": "start"},
                  content=json.dumps({"action": ACTION + "start"}), headers={"Content-Type": OCCI_JSON})
    assert r.status_code == 200, r.text
    wait_for(lambda: compute_state(occi, plain_loc) == "active", 30, what="started")
    assert occi.post(plain_loc, params={"action": "restart"}).status_code == 200

    for loc in every:
        assert occi.delete(loc).status_code == 200
    wait_for(lambda: occi.get("compute/", headers={"Accept": "text/uri-list"}).text.strip() == "", 30,
             what="all computes deleted")


def test_storage_network_and_links(occi: httpx.Client) -> None:
    r = occi.post("network/", content=json.dumps({
        "kind": INFRA + "network",
        "mixins": ["http://schemas.ogf.org/occi/infrastructure/network#ipnetwork",
                   f"{ONEPANE}location#dc-a"],
        "attributes": {"occi.core.title": "backend", "occi.network.address": "10.30.0.0/24"}}),
        headers={"Content-Type": OCCI_JSON, "Accept": OCCI_JSON})
    assert r.status_code == 201, r.text
    net = r.json()
    assert net["attributes"]["occi.network.address"] == "10.30.0.0/24"
    wait_for(lambda: occi.get(r.headers["location"], headers={"Accept": OCCI_JSON}).json()
             ["attributes"]["occi.network.state"] == "active", 30, what="network active")

    body = (f'Category: compute; scheme="{INFRA}"; class="kind"\n'
            f'Category: httpecho; scheme="{ONEPANE}dc-a/os_tpl#"; class="mixin"\n'
            'X-OCCI-Attribute: occi.core.title="db"\n'
            f'Link: <{net["location"]}>; rel="{INFRA}network"; category="{INFRA}networkinterface"\n')
    r = occi.post("compute/", content=body, headers={"Content-Type": "text/plain"})
    assert r.status_code == 201, r.text
    compute = r.headers["location"]
    nics = occi.get("networkinterface/", headers={"Accept": OCCI_JSON}).json()["links"]
    assert [n["target"]["location"] for n in nics] == [net["location"]]
    assert nics[0]["source"]["location"] == compute

    r = occi.post("storage/", content=json.dumps({
        "kind": INFRA + "storage", "mixins": [f"{ONEPANE}location#dc-a"],
        "attributes": {"occi.core.title": "data", "occi.storage.size": 1.5}}),
        headers={"Content-Type": OCCI_JSON, "Accept": OCCI_JSON})
    assert r.status_code == 201, r.text
    storage = r.headers["location"]
    assert r.json()["attributes"]["occi.storage.size"] == 2.0  # whole GiB, rounded up
    wait_for(lambda: compute_state(occi, compute) == "active" and occi.get(
        storage, headers={"Accept": OCCI_JSON}).json()["attributes"]["occi.storage.state"] == "online",
        30, what="compute and storage ready")

    r = occi.post("storagelink/", content=(
        f'Category: storagelink; scheme="{INFRA}"; class="kind"\n'
        f'X-OCCI-Attribute: occi.core.source="{compute}"\n'
        f'X-OCCI-Attribute: occi.core.target="{storage}"\n'
        'X-OCCI-Attribute: occi.storagelink.deviceid="/dev/vdc"\n'), headers={"Content-Type": "text/plain"})
    assert r.status_code == 201, r.text
    link = r.headers["location"]

    def linked() -> list[dict[str, Any]]:
        doc = occi.get(compute, headers={"Accept": OCCI_JSON}).json()
        return [lk for lk in doc["links"] if lk["kind"] == INFRA + "storagelink"]
    wait_for(lambda: len(linked()) == 1, 30, what="storage linked")
    assert linked()[0]["attributes"]["occi.storagelink.deviceid"] == "/dev/vdc"
    text = occi.get(compute, headers={"Accept": "text/plain"}).text
    assert f'Link: <{storage}>; rel="{INFRA}storage"; self="{link}"' in text

    assert occi.delete(link).status_code == 200
    wait_for(lambda: not linked(), 30, what="storage unlinked")
    assert occi.delete(storage).status_code == 200
    assert occi.delete(compute).status_code == 200
    wait_for(lambda: occi.get(compute).status_code == 404, 30, what="compute deleted")


@pytest.mark.parametrize("ctype, body, expect", [
    ("text/plain", 'Category: compute scheme="x"\n', "line 1 (Category): malformed category"),
    ("text/plain", f'Category: compute; scheme="{INFRA}"; class="kind"\nX-OCCI-Attribute: title=\n',
     "line 2 (X-Occi-Attribute): malformed attribute"),
    ("text/plain", "this is not occi\n", "line 1: expected 'Name: value'"),
    ("text/plain", f'Category: compute; scheme="{INFRA}"; class="kind"\nX-Bogus: 1\n',
     "unknown OCCI header"),
    ("text/plain", 'Category: vm; scheme="http://example.org/occi#"; class="kind"\n', "unknown kind"),
    ("text/plain", f'Category: storage; scheme="{INFRA}"; class="kind"\n',
     "cannot be created in the compute/"),
    ("text/plain", f'Category: compute; scheme="{INFRA}"; class="kind"\n'
                   'Category: win95; scheme="http://example.org/os#"; class="mixin"\n', "unknown mixin"),
    ("text/plain", f'Category: compute; scheme="{INFRA}"; class="kind"\n', "exactly one os_tpl"),
    ("text/plain", f'Category: compute; scheme="{INFRA}"; class="kind"\n'
                   'X-OCCI-Attribute: occi.bogus.thing="x"\n', "is not defined for kind"),
    (OCCI_JSON, '{"kind": ', "malformed JSON"),
    (OCCI_JSON, '["compute"]', "must be an object"),
    (OCCI_JSON, '{"kind": "compute"}', "$.kind must be a category identifier"),
    (OCCI_JSON, json.dumps({"kind": INFRA + "compute", "mixins": "x"}), "$.mixins must be a list"),
    (OCCI_JSON, json.dumps({"kind": INFRA + "compute", "attributes": {"a": [1]}}),
     "$.attributes.a must be"),
])
def test_malformed_renderings_are_400s(occi: httpx.Client, ctype: str, body: str, expect: str) -> None:
    before = occi.get("compute/", headers={"Accept": "text/uri-list"}).text
    r = occi.post("compute/", content=body, headers={"Content-Type": ctype})
    assert r.status_code == 400, r.text
    assert expect in r.text
    assert occi.get("compute/", headers={"Accept": "text/uri-list"}).text == before  # nothing made


def test_protocol_errors_and_auth(occi: httpx.Client) -> None:
    assert occi.get("-/", headers={"Accept": "image/png"}).status_code == 406
    assert occi.post("compute/", content="<x/>", headers={"Content-Type": "application/xml"}
                     ).status_code == 415
    assert occi.get("compute/inst-00000000000000000").status_code == 404
    assert occi.get("bogus/").status_code == 404
    assert occi.put("compute/inst-1", content="").status_code == 405
    server = occi.server  # type: ignore[attr-defined]
    assert httpx.get(f"{server.url}/occi/-/").status_code == 401
    viewer = httpx.post(f"{server.url}/v1/tokens", json={"name": "v", "role": "viewer"},
                        headers={"Authorization": f"Bearer {server.token}"}).json()["token"]
    as_viewer = {"Authorization": f"Bearer {viewer}"}
    assert httpx.get(f"{server.url}/occi/compute/", headers=as_viewer).status_code == 200
    assert httpx.post(f"{server.url}/occi/compute/", headers=as_viewer, content="").status_code == 403

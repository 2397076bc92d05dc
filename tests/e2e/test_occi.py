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
    assert [k["term"] for k in only["kinds"]] == ["compute"] and "mixins" not in only
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
    assert [e["id"] for e in in_b] == [headers_loc.rsplit("/", 1)[1]]
    titled = occi.get("compute/", params={"attribute": "occi.core.title=web-json"},
                      headers={"Accept": "text/occi"})
    assert titled.headers.get_list("x-occi-location") == [json_loc]

    # actions: stop, start, restart; text/plain and JSON invocations
    r = occi.post(plain_loc, params={"action": "stop"},
                  content=f'Category: stop; scheme="{ACTION}"; class="action"\n',
                  headers={"Content-Type": "text/plain"})
    assert r.status_code == 200, r.text
    wait_for(lambda: compute_state(occi, plain_loc) == "inactive", 30, what="stopped")
    again = occi.post(plain_loc, params={"action": "stop"})  # already so: nothing to do
    assert again.status_code == 200 and "occi.compute.state=\"inactive\"" in again.text
    suspend = occi.post(plain_loc, params={"action": "suspend"})
    assert suspend.status_code == 409 and "not possible now" in suspend.text
    r = occi.post(plain_loc, params={"action": "start"},
                  content=json.dumps({"action": ACTION + "start"}), headers={"Content-Type": OCCI_JSON})
    assert r.status_code == 200, r.text
    wait_for(lambda: compute_state(occi, plain_loc) == "active", 30, what="started")
    assert occi.post(plain_loc, params={"action": "restart"}).status_code == 200

    for loc in every:
        assert occi.delete(loc).status_code == 200
        assert occi.delete(loc).status_code == 404  # gone: a second DELETE finds nothing
    assert occi.get("compute/", headers={"Accept": "text/uri-list"}).text.strip() == ""


def test_storage_network_and_links(occi: httpx.Client) -> None:
    r = occi.post("network/", content=json.dumps({
        "kind": INFRA + "network",
        "mixins": ["http://schemas.ogf.org/occi/infrastructure/network#ipnetwork",
                   f"{ONEPANE}location#dc-a"],
        "attributes": {"occi.core.title": "backend", "occi.network.address": "10.30.0.0/24"}}),
        headers={"Content-Type": OCCI_JSON, "Accept": OCCI_JSON})
    assert r.status_code == 201, r.text
    net = {**r.json(), "location": r.headers["location"]}
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
    assert nics[0]["id"] != compute.rsplit("/", 1)[1]  # a link has an id of its own

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
    ("text/plain", f'Category: compute; scheme="{INFRA}"; class="kind"\n'
                   'X-OCCI-Attribute: occi.compute.cores="abc"\n', "is not an Integer"),
    ("text/plain", f'Category: compute; scheme="{INFRA}"; class="kind"\n'
                   'X-OCCI-Attribute: occi.compute.cores=2.5\n', "is not an Integer"),
    ("text/plain", f'Category: compute; scheme="{INFRA}"; class="kind"\n'
                   'X-OCCI-Attribute: occi.compute.cores=64\n', "no size at dc-a has"),
    ("text/plain", f'Category: compute; scheme="{INFRA}"; class="kind"\n'
                   'X-OCCI-Attribute: occi.compute.state="sleeping"\n', "one of active"),
    ("text/plain", f'Category: storage; scheme="{INFRA}"; class="kind"\n'
                   'X-OCCI-Attribute: occi.storage.size=1e999\n', "not a finite number"),
    (OCCI_JSON, '{"kind": "' + INFRA + 'compute", "attributes": {"occi.compute.cores": NaN}}',
     "NaN is not a JSON number"),
    (OCCI_JSON, '{"kind": "' + INFRA + 'compute", "attributes": {"occi.compute.memory": Infinity}}',
     "Infinity is not a JSON number"),
    (OCCI_JSON, '{"kind": "' + INFRA + 'compute", "attributes": {"occi.compute.memory": 1e999}}',
     "not a finite number"),
    (OCCI_JSON, "[" * 100000 + "]" * 100000, "nested too deeply"),
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
    assert occi.put("bogus/x", content="").status_code == 404
    assert occi.put("compute/no spaces", content="").status_code == 400
    server = occi.server  # type: ignore[attr-defined]
    assert httpx.get(f"{server.url}/occi/-/").status_code == 401
    viewer = httpx.post(f"{server.url}/v1/tokens", json={"name": "v", "role": "viewer"},
                        headers={"Authorization": f"Bearer {server.token}"}).json()["token"]
    as_viewer = {"Authorization": f"Bearer {viewer}"}
    assert httpx.get(f"{server.url}/occi/compute/", headers=as_viewer).status_code == 200
    assert httpx.post(f"{server.url}/occi/compute/", headers=as_viewer, content="").status_code == 403


def _new_compute(occi: httpx.Client, title: str, **attrs: Any) -> str:
    r = occi.post("compute/", content=json.dumps({
        "kind": INFRA + "compute", "attributes": {"occi.core.title": title, **attrs}}),
        headers={"Content-Type": OCCI_JSON, "Accept": OCCI_JSON})
    assert r.status_code == 201, r.text
    return str(r.headers["location"])


def test_protocol_surface(occi: httpx.Client) -> None:
    """HEAD, one Server header, the OCCI version, filters by header, paging, updates, and
    sizes that follow the cores and memory asked for."""
    loc = _new_compute(occi, "proto", **{"occi.compute.cores": 2, "occi.compute.memory": 2.0})
    doc = occi.get(loc, headers={"Accept": OCCI_JSON}).json()
    assert f"{ONEPANE}dc-a/resource_tpl#large" in doc["mixins"]  # the smallest that fits
    assert doc["attributes"]["occi.compute.cores"] == 2
    head = occi.head(loc)
    assert head.status_code == 200 and head.content == b""
    assert len(head.headers.get_list("server")) == 1 and "OCCI/1.2" in head.headers["server"]
    assert occi.get("-/", headers={"User-Agent": "client OCCI/2.0"}).status_code == 501
    assert occi.get("-/", headers={"User-Agent": "client OCCI/1.1"}).status_code == 200

    # GFD.223's filter: a Category header on the query interface and on a collection
    only = occi.get("-/", headers={"Accept": "text/plain", "Content-Type": "text/occi",
                                   "Category": f'storage; scheme="{INFRA}"; class="kind"'})
    assert [ln.split(";")[0] for ln in only.text.splitlines()] == ["Category: storage"]
    second = _new_compute(occi, "proto-2")
    page = occi.get("compute/", params={"limit": 1}, headers={"Accept": "text/uri-list"})
    assert len(page.text.split()) == 1 and 'rel="next"' in page.headers["link"]
    rest = httpx.get(page.headers["link"].split(">")[0][1:], headers=dict(occi.headers) | {
        "Accept": "text/uri-list"})
    assert rest.text.split() and rest.text.split() != page.text.split()

    # POST partial update, PUT full replace; immutables refused, unknown attributes too
    r = occi.post(loc, content=json.dumps({"attributes": {"occi.core.summary": "db tier"}}),
                  headers={"Content-Type": OCCI_JSON, "Accept": OCCI_JSON})
    assert r.status_code == 200 and r.json()["summary"] == "db tier"
    plain = "\n".join(ln for ln in occi.get(loc, headers={"Accept": "text/plain"}).text.replace(
        'occi.core.title="proto"', 'occi.core.title="renamed"').splitlines()
        if "occi.core.summary" not in ln) + "\n"
    r = occi.put(loc, content=plain, headers={"Content-Type": "text/plain"})
    assert r.status_code == 200 and 'occi.core.title="renamed"' in r.text, r.text
    assert "occi.core.summary" not in r.text  # a full replace: what was not sent is gone
    r = occi.post(loc, content=json.dumps({"attributes": {"occi.compute.cores": 8}}),
                  headers={"Content-Type": OCCI_JSON})
    assert r.status_code == 409 and "immutable" in r.text
    r = occi.post(loc, content=json.dumps({"attributes": {"occi.nope": 1}}),
                  headers={"Content-Type": OCCI_JSON})
    assert r.status_code == 400 and "occi.nope" in r.text

    # an action's reply renders the entity
    r = occi.post(loc, params={"action": "stop"}, headers={"Accept": OCCI_JSON})
    assert r.status_code == 200 and r.json()["attributes"]["occi.compute.state"] == "inactive"
    for gone in (loc, second):
        assert occi.delete(gone).status_code == 200


def test_user_defined_mixins_tag_entities(occi: httpx.Client) -> None:
    loc = _new_compute(occi, "tagged")
    mixin = ('Category: gold; scheme="http://example.com/occi/tags#"; class="mixin"; '
             'location="/occi/tags/gold/"; title="gold customers"')
    r = occi.post("-/", content=mixin + "\n", headers={"Content-Type": "text/plain"})
    assert r.status_code == 200, r.text
    assert occi.post("-/", content=mixin + "\n", headers={"Content-Type": "text/plain"}
                     ).status_code == 409  # defined once
    qi = occi.get("-/", headers={"Accept": OCCI_JSON}).json()
    gold = next(m for m in qi["mixins"] if m["term"] == "gold")
    assert gold["location"] == "/occi/tags/gold/"

    r = occi.post("tags/gold/", content=f"X-OCCI-Location: {loc}\n",
                  headers={"Content-Type": "text/plain"})
    assert r.status_code == 200, r.text
    assert occi.get("tags/gold/", headers={"Accept": "text/uri-list"}).text.split() == [loc]
    entity = occi.get(loc, headers={"Accept": OCCI_JSON}).json()
    assert "http://example.com/occi/tags#gold" in entity["mixins"]
    assert occi.get("compute/", params={"category": "http://example.com/occi/tags#gold"},
                    headers={"Accept": "text/uri-list"}).text.split() == [loc]

    # onepane's own mixins cannot be deleted; a user mixin can, and its tags go with it
    r = occi.request("DELETE", "-/", content=f'Category: os_tpl; scheme="{INFRA}"; class="mixin"\n',
                     headers={"Content-Type": "text/plain"})
    assert r.status_code == 403
    r = occi.request("DELETE", "-/", content=mixin.split("; location")[0] + "\n",
                     headers={"Content-Type": "text/plain"})
    assert r.status_code == 200, r.text
    entity = occi.get(loc, headers={"Accept": OCCI_JSON}).json()
    assert "http://example.com/occi/tags#gold" not in entity.get("mixins", [])
    assert occi.get("tags/gold/").status_code == 404
    assert occi.delete(loc).status_code == 200


def test_every_json_document_validates_against_the_schema(occi: httpx.Client) -> None:
    """The schema conformance/occi.sh checks with, written from GFD.226: run here on every
    kind of document (the model, collections empty and not, resources, links, replies)."""
    from pathlib import Path

    from jsonschema import Draft202012Validator
    schema = json.loads((Path(__file__).resolve().parents[2] / "conformance" / "occi" /
                         "occi-json.schema.json").read_text())
    validator = Draft202012Validator(schema)
    h = {"Accept": OCCI_JSON}
    docs = [occi.get("-/", headers=h).json(), occi.get("storagelink/", headers=h).json()]
    loc = _new_compute(occi, "schema")
    storage = occi.post("storage/", content=json.dumps({
        "kind": INFRA + "storage", "attributes": {"occi.storage.size": 1}}),
        headers={"Content-Type": OCCI_JSON, **h})
    docs.append(storage.json())
    link = occi.post("storagelink/", content=json.dumps({
        "kind": INFRA + "storagelink", "source": {"location": loc},
        "target": {"location": storage.headers["location"]}, "attributes": {}}),
        headers={"Content-Type": OCCI_JSON, **h})
    assert link.status_code == 201, link.text
    docs += [link.json(), occi.get(loc, headers=h).json()]
    for path in ("compute/", "storage/", "storagelink/", "entity/", "resource/", "link/",
                 "mixin/location/", "mixin/os_tpl/"):
        docs.append(occi.get(path, headers=h).json())
    errors = [(n, e.message) for n, d in enumerate(docs) for e in validator.iter_errors(d)]
    assert not errors, errors
    for gone in (link.headers["location"], storage.headers["location"], loc):
        assert occi.delete(gone).status_code == 200


def test_put_creates_at_the_clients_path_and_replaces(occi: httpx.Client) -> None:
    doc = {"kind": INFRA + "compute", "attributes": {"occi.core.title": "mine"}}
    r = occi.put("compute/my-web", content=json.dumps(doc),
                 headers={"Content-Type": OCCI_JSON, "Accept": OCCI_JSON})
    assert r.status_code == 201, r.text
    assert r.headers["location"].endswith("/occi/compute/my-web") and r.json()["id"] == "my-web"
    assert r.headers["location"] in occi.get("compute/", headers={"Accept": "text/uri-list"}).text
    doc["attributes"]["occi.core.title"] = "still mine"
    r = occi.put("compute/my-web", content=json.dumps(doc),
                 headers={"Content-Type": OCCI_JSON, "Accept": OCCI_JSON})
    assert r.status_code == 200 and r.json()["title"] == "still mine", r.text
    r = occi.put("compute/my-web", content=json.dumps({"kind": INFRA + "storage"}),
                 headers={"Content-Type": OCCI_JSON})
    assert r.status_code == 409  # a kind does not change
    assert occi.delete("compute/my-web").status_code == 200
    assert occi.get("compute/my-web").status_code == 404


def test_fuzzed_renderings_never_get_a_server_error(occi: httpx.Client) -> None:
    """Valid documents in every rendering, mangled at random (seeded: reproducible), sent to
    every kind of request: each answer is a 2xx or a 4xx, never a 5xx."""
    import random
    rnd = random.Random(20261126)
    plain = (f'Category: compute; scheme="{INFRA}"; class="kind"\n'
             f'Category: httpecho; scheme="{ONEPANE}dc-a/os_tpl#"; class="mixin"\n'
             'X-OCCI-Attribute: occi.core.title="fz"\nX-OCCI-Attribute: occi.compute.cores=1\n'
             f'Link: <{occi.base_url}network/net-1>; rel="{INFRA}network"\n')
    js = json.dumps({"kind": INFRA + "compute", "mixins": [f"{ONEPANE}location#dc-a"],
                     "attributes": {"occi.core.title": "fz", "occi.compute.memory": 0.25},
                     "links": [{"target": {"location": "network/x"}}]})
    alphabet = ';,="{}[]<>#:\\ \n\t-.0123456789eE+abcxyzNaINF\x00\u00e9'

    def mangle(s: str) -> str:
        chars = list(s)
        for _ in range(rnd.randint(1, 6)):
            op, i = rnd.random(), rnd.randrange(len(chars) or 1)
            if op < 0.4 and chars:
                del chars[i]
            elif op < 0.8:
                chars.insert(i, rnd.choice(alphabet))
            else:
                chars[i:i] = chars[i:i + rnd.randint(1, 30)]
        return "".join(chars)

    made = set()
    for n in range(300):
        ctype, base = (("text/plain", plain), (OCCI_JSON, js))[n % 2]
        body = mangle(base).encode("utf-8", "surrogatepass")
        target = ("compute/", "compute/fz-put", "-/", "compute/fz-put?action=start")[n % 4]
        method = ("POST", "PUT", "POST", "POST")[n % 4]
        r = occi.request(method, target, content=body, headers={"Content-Type": ctype})
        assert r.status_code < 500, (n, method, target, body, r.status_code, r.text)
        if r.status_code == 201:
            made.add(r.headers["location"])
    headers = [("Category", f'compute; scheme="{INFRA}"; class="kind"'),
               ("X-OCCI-Attribute", 'occi.core.title="h", occi.compute.cores=1')]
    for n in range(100):
        name, value = headers[n % 2]
        mangled = mangle(value).encode("latin-1", "replace").decode("latin-1")
        mangled = "".join(c for c in mangled if c.isprintable() and c not in "\r\n")
        r = occi.post("compute/", headers=[("Content-Type", "text/occi"), headers[0],
                                           (name, mangled.encode("latin-1"))])
        assert r.status_code < 500, (n, mangled, r.status_code, r.text)
        if r.status_code == 201:
            made.add(r.headers["location"])
    for loc in made:
        assert occi.delete(loc).status_code in (200, 404)

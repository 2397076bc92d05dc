"""Global traffic through real DNS servers (issue 29).

Two network-namespace sites, a front door in each, one deployment per kind of DNS account:
PowerDNS (its HTTP API, through Libcloud), Route 53 (moto, through Libcloud) and BIND (RFC 2136
with TSIG), each daemon in a namespace of its own lab, with unbound as the resolver clients
ask. A silent cut of the primary site moves every record; a record edited by hand is put back;
a wrong TSIG key is an event and a status line, not a crash.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import boto3
import dns.resolver
import httpx
import pytest

from onepane.core import Core
from onepane.dnslab import DnsLab, dns_lab
from onepane.errors import InvalidInput
from onepane.lab import fail, netns_lab, recover
from onepane.spec import parse_spec
from tests.helpers import free_port, kill_instances, wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")
SITES = ("gs-east", "gs-west")
INDEX = {SITES[0]: 221, SITES[1]: 222}
DOOR = {site: f"10.200.{i}.2" for site, i in INDEX.items()}
R53_ZONE = "r53.onepane.test."


@pytest.fixture(scope="module")
def lab() -> Iterator[DnsLab]:
    with dns_lab(index=223) as lab:
        yield lab


@pytest.fixture(scope="module")
def world(lab: DnsLab, moto_url: str, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[Core]:
    r53 = boto3.client("route53", endpoint_url=moto_url, region_name="us-east-1",
                       aws_access_key_id="AKIDTEST", aws_secret_access_key="s3cr3t")
    r53.create_hosted_zone(Name=R53_ZONE, CallerReference=f"gslb-{os.getpid()}")
    bind = {"kind": "rfc2136", "server": lab.bind, "key_name": "onepane-lab",
            "key_secret": lab.tsig_secret}
    accounts = {
        "pdns": {"kind": "powerdns", "url": lab.pdns_api, "api_key": lab.api_key},
        "aws": {"kind": "route53", "access_key": "AKIDTEST", "secret_key": "s3cr3t",
                "endpoint": moto_url},
        "bind": bind,
        "bind-wrong-key": {**bind, "key_secret": "d3JvbmcgLSBub3QgdGhlIGxhYidzIGtleSBhdCBhbGw="},
    }
    state = tmp_path_factory.mktemp("gslb")
    with netns_lab(state, INDEX, sync_interval=0.3, dns_accounts=accounts,
                   dns_verify_interval=0.5) as core:
        yield core
    kill_instances(state)


def deploy(core: Core, name: str, dns: dict[str, object]) -> None:
    core.deployments.apply(parse_spec({
        "name": name, "image": "httpecho", "replicas": {SITES[0]: 1, SITES[1]: 1},
        "listen": f"127.0.0.1:{free_port()}", "front_doors": "per-site", "dns": dns,
        "health": {"interval": 0.2, "timeout": 1.0, "rise": 2, "fall": 2},
        "traffic": {"order": list(SITES)}}))


def dns_status(core: Core, name: str) -> dict[str, object]:
    return dict(core.deployments.get(name).status.get("dns") or {})


def explain(core: Core, *names: str) -> Callable[[], object]:
    """What the deployments said and did, for a failure message (a slow CI machine's failure
    must say whether a door was down, the publisher failing, or nothing published at all)."""
    def seen() -> object:
        out: dict[str, object] = {}
        for name in names:
            st = core.deployments.get(name).status
            events = core.events.list(subject=name, before=2**62, limit=8).items
            out[name] = {"dns": st.get("dns"), "front_doors": st.get("front_doors"),
                         "locations": st.get("locations"),
                         "events": [f"{e.kind}: {e.message}" for e in events]}
        return out
    return seen


def authoritative(server: str, name: str) -> set[str]:
    r = dns.resolver.Resolver(configure=False)
    r.nameservers, r.lifetime, r.cache = [server], 2.0, None
    try:
        return {a.to_text() for a in r.resolve(name, "A")}
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return set()


def browser_get(resolver: str, name: str, port: int) -> str | None:
    """Resolve through the caching resolver, then try each address until one answers."""
    for address in sorted(authoritative(resolver, name)):  # the dead site's first, if cached
        try:
            r = httpx.get(f"http://{address}:{port}/", headers={"Host": name},
                          timeout=httpx.Timeout(2.0, connect=0.5))
        except httpx.HTTPError:
            continue
        return r.headers.get("x-served-by")
    return None


def route53(core: Core, moto_url: str, name: str) -> set[str]:
    r53 = boto3.client("route53", endpoint_url=moto_url, region_name="us-east-1",
                       aws_access_key_id="AKIDTEST", aws_secret_access_key="s3cr3t")
    zone = next(z["Id"] for z in r53.list_hosted_zones()["HostedZones"] if z["Name"] == R53_ZONE)
    sets = r53.list_resource_record_sets(HostedZoneId=zone)["ResourceRecordSets"]
    return {v["Value"] for s in sets if s["Name"] == name and s["Type"] == "A"
            for v in s["ResourceRecords"]}


def test_records_follow_the_sites_and_survive_hands_and_bad_keys(
        world: Core, lab: DnsLab, moto_url: str) -> None:
    core = world
    deploy(core, "gp", {"provider": "pdns", "zone": "pdns.onepane.test", "name": "shop"})
    deploy(core, "ga", {"provider": "aws", "zone": R53_ZONE, "name": "shop",
                        "publish": "serving"})
    deploy(core, "gb", {"provider": "bind", "zone": "bind.onepane.test", "name": "shop",
                        "publish": "serving"})
    deploy(core, "gx", {"provider": "bind-wrong-key", "zone": "bind.onepane.test",
                        "name": "other"})
    both, east, west = set(DOOR.values()), {DOOR[SITES[0]]}, {DOOR[SITES[1]]}
    pdns_name, bind_name = "shop.pdns.onepane.test.", "shop.bind.onepane.test."

    # every door published in PowerDNS; only the serving site's in Route 53 and BIND
    wait_for(lambda: authoritative(lab.pdns, pdns_name) == both, 30, what="PowerDNS: both doors",
             explain=explain(core, "gp"))
    wait_for(lambda: route53(core, moto_url, f"shop.{R53_ZONE}") == east, 30,
             what="Route 53: the primary's door")
    wait_for(lambda: authoritative(lab.bind, bind_name) == east, 30, what="BIND: the primary's door")
    # what a client resolves through the caching resolver, and each door serves
    assert authoritative(lab.resolver, pdns_name) == both
    for site, door in DOOR.items():
        port = int(core.deployments.get("gp").listen.rsplit(":", 1)[1])
        r = httpx.get(f"http://{door}:{port}/", timeout=5)
        assert r.status_code == 200 and r.headers["x-served-by"] == SITES[0], site

    # the wrong key: an event and a status line, retried; the others unaffected
    wait_for(lambda: dns_status(core, "gx").get("state") == "failing", 20, what="gx failing")
    assert "TSIG" in str(dns_status(core, "gx")["error"])
    failed = core.events.list(subject="gx", limit=100).items
    assert [e for e in failed if e.kind == "dns.failed"], "no dns.failed event"
    assert authoritative(lab.bind, "other.bind.onepane.test.") == set()

    # a record edited by hand is put back, with an event
    httpx.patch(f"{lab.pdns_api}/api/v1/servers/localhost/zones/pdns.onepane.test.",
                headers={"X-API-Key": lab.api_key}, timeout=5, json={"rrsets": [
                    {"name": pdns_name, "type": "A", "ttl": 300, "changetype": "REPLACE",
                     "records": [{"content": "192.0.2.66", "disabled": False}]}]}
                ).raise_for_status()
    wait_for(lambda: authoritative(lab.pdns, pdns_name) == both, 15, what="PowerDNS repaired",
             explain=explain(core, "gp"))
    assert any(e.kind == "dns.drift" for e in core.events.list(subject="gp", limit=100).items)

    # a silent cut of the primary site moves every record to the other site
    fail(core, SITES[0], "silent")
    try:
        wait_for(lambda: authoritative(lab.pdns, pdns_name) == west, 30, what="PowerDNS moved",
                 explain=explain(core, "gp"))
        wait_for(lambda: route53(core, moto_url, f"shop.{R53_ZONE}") == west, 30,
                 what="Route 53 moved")
        wait_for(lambda: authoritative(lab.bind, bind_name) == west, 30, what="BIND moved")
        # a browser-like client: whatever the resolver still has cached, the next address
        # answers when the dead site's does not
        port = int(core.deployments.get("gp").listen.rsplit(":", 1)[1])
        assert browser_get(lab.resolver, pdns_name, port) == SITES[1]
        published = [e for e in core.events.list(subject="gb", limit=100).items
                     if e.kind == "dns.published"]
        assert published[-1].data["addresses"] == sorted(west)
        assert published[-1].data["update_ms"] < 5000
    finally:
        recover(core, SITES[0], "silent")
    # back: the restored site's door is published again where every door is
    wait_for(lambda: authoritative(lab.pdns, pdns_name) == both, 30, what="PowerDNS both again")
    # a deployment that is deleted takes its records with it
    core.deployments.delete("gp")
    wait_for(lambda: authoritative(lab.pdns, pdns_name) == set(), 30, what="records withdrawn")


def test_an_unknown_dns_account_is_refused_by_name(world: Core) -> None:
    with pytest.raises(InvalidInput) as err:
        deploy(world, "gz", {"provider": "nope", "zone": "pdns.onepane.test"})
    assert err.value.field == "dns.provider" and "pdns" in err.value.detail
    assert all(d.name != "gz" for d in world.deployments.list())


def test_active_active_weights_are_weighted_records_where_the_dns_has_them(
        world: Core, moto_url: str) -> None:
    core = world
    for name, provider, zone in (("gw", "aws", R53_ZONE), ("gv", "pdns", "pdns.onepane.test")):
        core.deployments.apply(parse_spec({
            "name": name, "image": "httpecho", "replicas": {SITES[0]: 1, SITES[1]: 1},
            "listen": f"127.0.0.1:{free_port()}", "front_doors": "per-site",
            "dns": {"provider": provider, "zone": zone, "name": name, "publish": "serving"},
            "health": {"interval": 0.2, "timeout": 1.0, "rise": 2, "fall": 2},
            "traffic": {"mode": "active-active", "weights": {SITES[0]: 3, SITES[1]: 1}}}))
    r53 = boto3.client("route53", endpoint_url=moto_url, region_name="us-east-1",
                       aws_access_key_id="AKIDTEST", aws_secret_access_key="s3cr3t")
    zone_id = next(z["Id"] for z in r53.list_hosted_zones()["HostedZones"]
                   if z["Name"] == R53_ZONE)

    def weighted() -> dict[str, int]:
        sets = r53.list_resource_record_sets(HostedZoneId=zone_id)["ResourceRecordSets"]
        return {s["ResourceRecords"][0]["Value"]: s["Weight"] for s in sets
                if s["Name"] == f"gw.{R53_ZONE}" and "Weight" in s}
    wait_for(lambda: weighted() == {DOOR[SITES[0]]: 3, DOOR[SITES[1]]: 1}, 30,
             what="Route 53: one weighted set per door", explain=explain(core, "gw"))
    # PowerDNS has no weighted records: both doors, and the status says so
    wait_for(lambda: dns_status(core, "gv").get("state") == "published", 30, what="gv published",
             explain=explain(core, "gv"))
    st = dns_status(core, "gv")
    assert st["published"] == sorted(DOOR.values()) and "equal share" in str(st["note"])
    for name in ("gw", "gv"):
        core.deployments.delete(name)
    wait_for(lambda: weighted() == {}, 30, what="weighted sets withdrawn")


def test_haproxy_runs_as_a_front_door_in_each_site(world: Core, lab: DnsLab) -> None:
    core = world
    port = free_port()
    core.deployments.apply(parse_spec({
        "name": "gh", "image": "httpecho", "replicas": {SITES[0]: 1, SITES[1]: 1},
        "listen": f"127.0.0.1:{port}", "front_doors": "per-site", "data_plane": "haproxy",
        "dns": {"provider": "pdns", "zone": "pdns.onepane.test", "name": "gh"},
        "health": {"interval": 0.2, "timeout": 1.0, "rise": 2, "fall": 2},
        "traffic": {"order": list(SITES)}}))
    wait_for(lambda: authoritative(lab.pdns, "gh.pdns.onepane.test.") == set(DOOR.values()), 30,
             what="both HAProxy doors published", explain=explain(core, "gh"))
    for door in DOOR.values():  # the west door forwards to the east primary, across the sites
        r = httpx.get(f"http://{door}:{port}/", timeout=5)
        assert r.status_code == 200 and r.headers["x-served-by"] == SITES[0], door
    core.deployments.delete("gh")
    wait_for(lambda: authoritative(lab.pdns, "gh.pdns.onepane.test.") == set(), 30,
             what="gh withdrawn")

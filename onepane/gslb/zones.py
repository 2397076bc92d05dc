"""Record writers: read and replace one name's A records in a zone, whatever holds the zone.

Each writer knows one kind of DNS account and does two things, both for a whole RRset at once:
`read` what the authority answers now (to find drift) and `write` a new set of addresses
(one atomic replacement: a resolver never sees half of a change). PowerDNS and Route 53 go
through Libcloud's drivers — their connections, authentication and error parsing; the RRset
replacement itself is sent through those connections because the drivers' record calls hold
one value per record. RFC 2136 servers get a TSIG-signed UPDATE from dnspython.
"""

from __future__ import annotations

import ipaddress
import json
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit
from xml.etree import ElementTree as ET

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.tsig
import dns.tsigkeyring
import dns.update

from .accounts import DnsAccount, PowerDnsAccount, Rfc2136Account, Route53Account

if TYPE_CHECKING:
    from libcloud.dns.base import Zone as LibcloudZone


class DnsRefused(Exception):
    """The authority answered and said no (bad key, no such zone): retrying the same call will
    not help until an operator fixes the account or the zone, though onepane keeps trying."""


class DnsUnreachable(Exception):
    """The authority did not answer (down, timed out, refused the connection): transient."""


@dataclass(frozen=True)
class Answer:
    addresses: frozenset[str]
    ttl: int | None
    weights: tuple[tuple[str, int], ...] = ()  # (address, weight), sorted; () when unweighted


def absolute(name: str, zone: str) -> str:
    """`shop` in `example.test.` -> `shop.example.test.`; a name with a dot is kept as given."""
    zone = zone.rstrip(".") + "."
    if name in ("", "@"):
        return zone
    if name.endswith("."):
        return name
    return f"{name}.{zone}"


def record_type(address: str) -> str:
    return "AAAA" if ipaddress.ip_address(address).version == 6 else "A"


class Writer(ABC):
    # whether the authority answers in proportion to weights (Route 53's weighted records);
    # where not, every address is published with an equal share
    weighted = False

    def __init__(self, zone: str) -> None:
        self.zone = zone.rstrip(".") + "."

    @abstractmethod
    def read(self, name: str) -> Answer:
        """The A and AAAA addresses the authority holds for `name` (absolute)."""

    @abstractmethod
    def write(self, name: str, addresses: frozenset[str], ttl: int,
              weights: dict[str, int] | None = None) -> None:
        """Replace `name`'s A and AAAA records with `addresses`, in one change (with weights
        per address where the writer is `weighted` and some are given)."""


def _libcloud_errors(exc: Exception, what: str) -> Exception:
    # Libcloud is imported where it is used: a server that writes no zone through it (most)
    # does not load it (with requests) on every start
    from libcloud.common.exceptions import BaseHTTPError
    from libcloud.common.types import InvalidCredsError, LibcloudError
    from libcloud.dns.types import ZoneDoesNotExistError
    if isinstance(exc, (InvalidCredsError, ZoneDoesNotExistError)):
        return DnsRefused(f"{what}: {exc}")
    if isinstance(exc, BaseHTTPError) and 400 <= int(exc.code) < 500:
        return DnsRefused(f"{what}: HTTP {exc.code} {exc.message}")
    if isinstance(exc, LibcloudError) and "40" in str(exc)[:60]:
        return DnsRefused(f"{what}: {exc}")
    return DnsUnreachable(f"{what}: {exc}")


class PowerDnsWriter(Writer):
    def __init__(self, account: PowerDnsAccount, zone: str) -> None:
        super().__init__(zone)
        from libcloud.dns.drivers.powerdns import PowerDNSDriver
        url = urlsplit(account.url)
        self.driver = PowerDNSDriver(account.api_key.get_secret_value(), host=url.hostname,
                                     port=url.port or (443 if url.scheme == "https" else 80),
                                     secure=url.scheme == "https", api_version="v1",
                                     timeout=account.timeout)
        self.driver.ex_server = account.server_id
        self.path = f"{self.driver.api_root}/servers/{account.server_id}/zones/{self.zone}"

    def read(self, name: str) -> Answer:
        try:
            zone = self.driver.get_zone(self.zone)
            records = self.driver.list_records(zone)
        except Exception as exc:
            raise _libcloud_errors(exc, f"PowerDNS zone {self.zone}") from exc
        mine = [r for r in records if r.name == name and r.type in ("A", "AAAA")]
        return Answer(frozenset(r.data for r in mine), mine[0].ttl if mine else None)

    def write(self, name: str, addresses: frozenset[str], ttl: int,
              weights: dict[str, int] | None = None) -> None:
        rrsets: list[dict[str, Any]] = []
        for rtype in ("A", "AAAA"):
            mine = sorted(a for a in addresses if record_type(a) == rtype)
            rrsets.append({"name": name, "type": rtype, "ttl": ttl,
                           "changetype": "REPLACE" if mine else "DELETE",
                           "records": [{"content": a, "disabled": False} for a in mine]})
        try:
            self.driver.connection.request(self.path, method="PATCH",
                                           data=json.dumps({"rrsets": rrsets}))
        except Exception as exc:
            raise _libcloud_errors(exc, f"PowerDNS zone {self.zone}") from exc


ROUTE53_ROOT = "/2013-04-01/"
ROUTE53_NS = "https://route53.amazonaws.com/doc/2013-04-01/"


def _route53_driver(account: Route53Account) -> Any:
    """Libcloud's Route 53 driver, signing with SigV4 and speaking the 2013-04-01 API.

    Libcloud 3.9.1 signs Route 53 calls with the retired AWS3-HTTPS scheme and calls API
    2012-02-29; moto (and AWS's documentation) know 2013-04-01 and SigV4. The driver reads the
    API root and XML namespace from module globals at call time, so they are set once here."""
    import libcloud.dns.drivers.route53 as r53
    from libcloud.common.aws import AWSRequestSignerAlgorithmV4

    r53.API_ROOT = ROUTE53_ROOT
    r53.NAMESPACE = ROUTE53_NS
    r53.Route53DNSResponse.namespace = r53.NAMESPACE

    class SigV4Connection(r53.Route53Connection):
        service_name = "route53"

        def pre_connect_hook(self, params: dict[str, Any], headers: dict[str, str]
                             ) -> tuple[dict[str, Any], dict[str, str]]:
            signer = AWSRequestSignerAlgorithmV4(access_key=self.user_id, access_secret=self.key,
                                                 version=ROUTE53_ROOT.strip("/"), connection=self)
            path, _, _query = (self.action or "/").partition("?")
            headers["Host"] = f"{self.host}:{self.port}" if self.port not in (80, 443) else self.host
            return signer.get_request_headers(params, headers, method=self.method, path=path,
                                              data=self.data)

    class Driver(r53.Route53DNSDriver):
        connectionCls = SigV4Connection
        region_name = account.region

    kwargs: dict[str, Any] = {"timeout": account.timeout}
    if account.endpoint:
        url = urlsplit(account.endpoint)
        kwargs.update(host=url.hostname, port=url.port or (443 if url.scheme == "https" else 80),
                      secure=url.scheme == "https")
    return Driver(account.access_key, account.secret_key.get_secret_value(), **kwargs)


@dataclass(frozen=True)
class RecordSet:
    type: str
    set_id: str | None  # weighted sets: an identifier each
    weight: int | None
    ttl: int
    values: tuple[str, ...]


class Route53Writer(Writer):
    weighted = True

    def __init__(self, account: Route53Account, zone: str) -> None:
        super().__init__(zone)
        self.driver = _route53_driver(account)
        self._zone: LibcloudZone | None = None

    def _hosted_zone(self) -> LibcloudZone:
        if self._zone is None:
            try:
                zones = self.driver.list_zones()
            except Exception as exc:
                raise _libcloud_errors(exc, "Route 53") from exc
            found = [z for z in zones if z.domain.rstrip(".") + "." == self.zone]
            if not found:
                raise DnsRefused(f"Route 53 has no hosted zone {self.zone}")
            self._zone = found[0]
        return self._zone

    def _sets(self, name: str) -> list[RecordSet]:
        """The A and AAAA record sets of `name`, weighted ones each on its own."""
        from libcloud.utils.xml import findall, findtext
        zone = self._hosted_zone()
        self.driver.connection.set_context({"zone_id": zone.id})
        try:
            data = self.driver.connection.request(
                f"{ROUTE53_ROOT}hostedzone/{zone.id}/rrset?name={name}&maxitems=300").object
        except Exception as exc:
            raise _libcloud_errors(exc, f"Route 53 zone {self.zone}") from exc
        out = []
        for el in findall(element=data, xpath="ResourceRecordSets/ResourceRecordSet",
                          namespace=ROUTE53_NS):
            rtype = findtext(element=el, xpath="Type", namespace=ROUTE53_NS)
            if findtext(element=el, xpath="Name", namespace=ROUTE53_NS) != name or \
                    rtype not in ("A", "AAAA"):
                continue
            weight = findtext(element=el, xpath="Weight", namespace=ROUTE53_NS)
            values = tuple(sorted(v.text or "" for v in findall(
                element=el, xpath="ResourceRecords/ResourceRecord/Value", namespace=ROUTE53_NS)))
            out.append(RecordSet(rtype, findtext(element=el, xpath="SetIdentifier",
                                                 namespace=ROUTE53_NS) or None,
                                 int(weight) if weight else None,
                                 int(findtext(element=el, xpath="TTL", namespace=ROUTE53_NS)
                                     or 0), values))
        return out

    def read(self, name: str) -> Answer:
        sets = self._sets(name)
        addresses = frozenset(v for rs in sets for v in rs.values)
        weights = tuple(sorted((v, rs.weight) for rs in sets if rs.weight is not None
                               for v in rs.values))
        return Answer(addresses, sets[0].ttl if sets else None, weights)

    def write(self, name: str, addresses: frozenset[str], ttl: int,
              weights: dict[str, int] | None = None) -> None:
        zone = self._hosted_zone()
        if weights:  # one weighted set per address, identified by the address
            wanted = [RecordSet(record_type(a), a, weights.get(a, 0), ttl, (a,))
                      for a in sorted(addresses)]
        else:
            wanted = [RecordSet(rtype, None, None, ttl, values) for rtype in ("A", "AAAA")
                      if (values := tuple(sorted(a for a in addresses
                                                 if record_type(a) == rtype)))]
        held = self._sets(name)
        keys = {(rs.type, rs.set_id) for rs in wanted}
        req = ET.Element("ChangeResourceRecordSetsRequest", {"xmlns": ROUTE53_NS})
        changes = ET.SubElement(ET.SubElement(req, "ChangeBatch"), "Changes")
        # a DELETE must name a set exactly as it stands; an UPSERT replaces one whole
        for action, rs in ([("DELETE", h) for h in held if (h.type, h.set_id) not in keys]
                           + [("UPSERT", w) for w in wanted if w not in held]):
            change = ET.SubElement(changes, "Change")
            ET.SubElement(change, "Action").text = action
            el = ET.SubElement(change, "ResourceRecordSet")
            ET.SubElement(el, "Name").text = name
            ET.SubElement(el, "Type").text = rs.type
            if rs.set_id is not None:
                ET.SubElement(el, "SetIdentifier").text = rs.set_id
                ET.SubElement(el, "Weight").text = str(rs.weight or 0)
            ET.SubElement(el, "TTL").text = str(rs.ttl)
            records = ET.SubElement(el, "ResourceRecords")
            for v in rs.values:
                ET.SubElement(ET.SubElement(records, "ResourceRecord"), "Value").text = v
        if not len(changes):
            return
        self.driver.connection.set_context({"zone_id": zone.id})
        try:
            self.driver.connection.request(f"{ROUTE53_ROOT}hostedzone/{zone.id}/rrset",
                                           method="POST", data=ET.tostring(req))
        except Exception as exc:
            raise _libcloud_errors(exc, f"Route 53 zone {self.zone}") from exc


class Rfc2136Writer(Writer):
    def __init__(self, account: Rfc2136Account, zone: str) -> None:
        super().__init__(zone)
        self.account = account
        self.keyring = dns.tsigkeyring.from_text(
            {account.key_name: (account.key_algorithm, account.key_secret.get_secret_value())})
        self.algorithm = dns.name.from_text(account.key_algorithm)

    def read(self, name: str) -> Answer:
        found: set[str] = set()
        ttl: int | None = None
        for rtype in ("A", "AAAA"):
            query = dns.message.make_query(name, rtype)
            query.flags &= ~dns.flags.RD
            reply = self._send(query)
            for rrset in reply.answer:
                if rrset.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
                    found |= {r.to_text() for r in rrset}
                    ttl = rrset.ttl
        return Answer(frozenset(found), ttl)

    def write(self, name: str, addresses: frozenset[str], ttl: int,
              weights: dict[str, int] | None = None) -> None:
        update = dns.update.UpdateMessage(self.zone, keyring=self.keyring,
                                          keyalgorithm=self.algorithm)
        for rtype in ("A", "AAAA"):
            mine = sorted(a for a in addresses if record_type(a) == rtype)
            if mine:
                update.replace(name, ttl, rtype, *mine)
            else:
                update.delete(name, rtype)
        reply = self._send(update)
        if reply.rcode() != dns.rcode.NOERROR:
            raise DnsRefused(f"{self.account.server} refused the update of {name}: "
                             f"{dns.rcode.to_text(reply.rcode())}")

    def _send(self, message: dns.message.Message) -> dns.message.Message:
        where = f"{self.account.server}:{self.account.port}"
        try:
            return dns.query.tcp(message, self.account.server, port=self.account.port,
                                 timeout=self.account.timeout)
        except (dns.tsig.PeerError, dns.tsig.BadSignature) as exc:
            raise DnsRefused(f"{where} rejected the TSIG key {self.account.key_name!r}: "
                             f"{type(exc).__name__}") from exc
        except (OSError, dns.exception.Timeout, EOFError) as exc:
            raise DnsUnreachable(f"{where}: {exc or type(exc).__name__}") from exc


def open_writer(account: DnsAccount, zone: str) -> Writer:
    if isinstance(account, PowerDnsAccount):
        return PowerDnsWriter(account, zone)
    if isinstance(account, Route53Account):
        return Route53Writer(account, zone)
    return Rfc2136Writer(account, zone)

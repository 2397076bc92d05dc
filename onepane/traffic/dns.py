"""Service discovery over DNS: `<service>.<zone>` answers with the addresses that serve now.

A/SRV answers follow the traffic manager, so after a move or a failover other applications
find the new primary at the next lookup (TTL configurable, short by default).

    dig @127.0.0.1 -p 8653 shop.onepane.local A
    dig @127.0.0.1 -p 8653 _http._tcp.shop.onepane.local SRV
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from ..model import Instance, Page

log = logging.getLogger(__name__)
TAG = "onepane:deployment"


class ServedDeployment(Protocol):
    """What the server reads of a deployment."""

    name: str
    spec: dict[str, Any]
    listen: str
    status: dict[str, Any]


class DeploymentList(Protocol):
    """The deployments' service, as far as this server needs it (deploy.service.Deployments):
    the traffic package stays below the deploy package that uses it."""

    def list(self) -> Sequence[ServedDeployment]: ...


class InstanceList(Protocol):
    """The inventory, as far as this server needs it (inventory.operations.Operations)."""

    def list_instances(self, *, tags: dict[str, str] | None = ...,
                       limit: int = ...) -> Page[Instance]: ...


class DnsServer:
    def __init__(self, deployments: DeploymentList, ops: InstanceList, zone: str, ttl: int,
                 bind: tuple[str, int],
                 front_doors: Callable[[], list[str | None]] = lambda: [None]) -> None:
        self.deployments = deployments
        # the front door host of every node alive now (None: the spec's own listen host)
        self.front_doors = front_doors
        self.ops = ops
        self.zone = dns.name.from_text(zone)
        self.ttl = ttl
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(bind)
        self.address = self.sock.getsockname()
        self._thread = threading.Thread(target=self._serve, name="dns", daemon=True)
        self._stopping = False

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping = True
        with contextlib.suppress(OSError):
            self.sock.close()

    def _serve(self) -> None:
        while not self._stopping:
            try:
                data, peer = self.sock.recvfrom(4096)
            except OSError:
                return
            try:
                reply = self.answer(data)
            except Exception:
                log.exception("DNS query failed")
                continue
            with contextlib.suppress(OSError):
                self.sock.sendto(reply, peer)

    def answer(self, wire: bytes) -> bytes:
        try:
            query = dns.message.from_wire(wire)
        except Exception:
            return b""
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        if not query.question:
            response.set_rcode(dns.rcode.FORMERR)
            return response.to_wire()
        q = query.question[0]
        if not q.name.is_subdomain(self.zone):
            response.set_rcode(dns.rcode.REFUSED)
            return response.to_wire()
        labels = [lbl.decode() for lbl in q.name.relativize(self.zone).labels]
        service = labels[-1] if labels else ""
        serving = self.serving(service)
        if serving is None:
            response.set_rcode(dns.rcode.NXDOMAIN)
            return response.to_wire()
        if q.rdtype == dns.rdatatype.A and labels[:1] == ["front"] and len(labels) == 2:
            # front.<service>: the data planes' front doors of the nodes alive now
            listen = self.listen(service)
            doors = sorted({host or listen for host in self.front_doors()} - {"0.0.0.0", ""})
            if doors:
                response.answer.append(dns.rrset.from_text_list(q.name, self.ttl, "IN", "A", doors))
        elif q.rdtype == dns.rdatatype.A:
            addrs = sorted({addr for addr, _, _ in serving})
            if addrs:
                response.answer.append(dns.rrset.from_text_list(q.name, self.ttl, "IN", "A", addrs))
        elif q.rdtype == dns.rdatatype.SRV:
            records, glue = [], []
            for addr, port, inst in serving:
                target = dns.name.from_text(f"{inst}.{service}", self.zone)
                records.append(f"0 10 {port} {target}")
                glue.append(dns.rrset.from_text(target, self.ttl, "IN", "A", addr))
            if records:
                response.answer.append(dns.rrset.from_text_list(q.name, self.ttl, "IN", "SRV",
                                                                records))
                response.additional.extend(glue)
        return response.to_wire()

    def listen(self, service: str) -> str:
        for dep in self.deployments.list():
            if (dep.spec.get("service") or dep.name) == service:
                return dep.listen.rsplit(":", 1)[0]
        return ""

    def serving(self, service: str) -> list[tuple[str, int, str]] | None:
        """(address, port, instance) of the healthy replicas in the locations that serve."""
        for dep in self.deployments.list():
            if (dep.spec.get("service") or dep.name) != service:
                continue
            where = set(dep.status.get("serving") or [])
            out = []
            for inst in self.ops.list_instances(tags={TAG: dep.name}, limit=1000).items:
                if inst.location in where and inst.state == "running" and inst.addresses:
                    out.append((inst.addresses[0], inst.ports.get("app", 0), inst.id))
            return out
        return None

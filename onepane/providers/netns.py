"""A data center of processes in its own network namespace: real addresses that can be cut off.

Every instance binds the namespace's address on the location's link (dcnet: 10.200.<index>.2)
on a port of its own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .base import Capabilities
from .dcnet import CutByNamespace, DataCenterNet, location_index
from .local import NO_SUSPEND, PROCESSES_ONLY, LocalProvider
from .nftrules import replace_table, rule_matches

FIRST_PORT = 20000


class NetnsProvider(CutByNamespace, LocalProvider):
    capabilities = Capabilities.all_but(
        boot_images=PROCESSES_ONLY,
        suspend=NO_SUSPEND,
        capture_image="a process has no disk to make an image of; upload an app image instead",
        keep_data="a process has no disks of its own: a replacement starts from its app "
                  "image (keep data on a volume)",
        live_migration="a process is restarted, not moved, between data centers; "
                       "use vm locations for live moves")

    def __init__(self, location: str, state_dir: Path, options: dict[str, Any] | None = None) -> None:
        super().__init__(location, state_dir, options)
        self.net = DataCenterNet(location, location_index(location, self.options),
                                 owner=str(state_dir.resolve()))
        self.index = self.net.index
        self.ns = self.net.ns

    @property
    def bind_host(self) -> str:
        return self.net.inside

    @property
    def gateway(self) -> str:
        return self.net.gateway

    def setup(self) -> None:
        self.net.setup()
        super().setup()

    def enforce(self, ingress: dict[str, list[dict[str, Any]]],
                groups: dict[str, dict[str, list[dict[str, Any]]]],
                egress: dict[str, list[dict[str, Any]]] | None = None) -> None:
        """nftables inside the namespace: one table, replaced whole each time. Inbound: each
        instance in a group listens on its own port of the namespace's address, so its rules
        are matched on that port; established connections and loopback always pass.
        Outbound: each instance runs as a uid of its own (sandbox.py), so what it opens is
        matched by the socket's owner (`meta skuid`); answers on connections made to it are
        established and pass."""
        lines = [" chain input {", "  type filter hook input priority 0; policy accept;",
                 "  ct state established,related accept", '  iifname "lo" accept']
        for rec in self.records.all():
            rules = ingress.get(rec.id)
            if rules is None:
                continue
            for r in rules:
                proto = r["protocol"]
                lo, hi = r.get("from_port"), r.get("to_port")
                if proto not in ("tcp", "-1") or (lo is not None and hi is not None
                                                  and not lo <= rec.port <= hi):
                    continue
                sources = [c for c in r.get("cidrs", []) if ":" not in c]
                if sources:
                    lines.append(f"  tcp dport {rec.port} ip saddr {{ {', '.join(sources)} }} "
                                 "accept")
            lines.append(f"  tcp dport {rec.port} drop")
        lines += [" }", " chain output {", "  type filter hook output priority 0; policy accept;",
                  "  ct state established,related accept"]
        for rec in self.records.all():
            rules = (egress or {}).get(rec.id)
            if rules is None or rec.uid is None:
                continue
            lines += [f"  meta skuid {rec.uid} {match} accept"
                      for match in rule_matches(rules, "daddr")]
            lines.append(f"  meta skuid {rec.uid} drop")
        lines.append(" }")
        replace_table(self.net.exec_argv(["nft"]), "inet", "onepane_sg", lines, self.location)

    def route_addresses(self, wanted: dict[str, str]) -> None:
        """Each address reaches its instance's one port (DataCenterNet.route_addresses)."""
        self.net.route_addresses({
            address: f"{self.net.inside}:{self.records.load(provider_id).port}"
            for address, provider_id in wanted.items()})

    def teardown(self) -> None:
        """Stop every instance, delete the namespace and wait until its veth is gone."""
        super().teardown()
        self.net.teardown()

    # ---- internals -----------------------------------------------------------------------

    def _command(self, cmd: list[str]) -> list[str]:
        return self.net.exec_argv(cmd)

    def _free_port(self) -> int:
        used = {r.port for r in self.records.all()}
        port = FIRST_PORT
        while port in used:
            port += 1
        return port

"""The control plane without its front ends: store, providers, jobs, sync, event log.

`onepane up` wraps this in the API server; tests and benches can start it in-process.
"""

from __future__ import annotations

import logging

from .auth import AccessKeys, Tokens
from .cluster.control import Cluster
from .config import Settings
from .deploy.addressing import instance_target, serving_replica
from .deploy.applications import Applications
from .deploy.mobility import LiveMoves
from .deploy.reconciler import Reconciler
from .deploy.service import Deployments
from .errors import OnepaneError
from .events import EventLog
from .gslb.publisher import Publisher
from .images.catalog import Catalog
from .inventory.addresses import (
    AddressRouter,
    ElasticAddresses,
    interface_addresses,
    interface_owner,
)
from .inventory.annotations import Annotations
from .inventory.firewall import Enforcer, SecurityGroups
from .inventory.hosts import WATCH_INTERVAL_S, Hosts
from .inventory.jobs import JobRunner
from .inventory.keypairs import KeyPairs
from .inventory.locations import Locations
from .inventory.operations import Operations
from .inventory.records import Records
from .inventory.snapshots import Snapshots
from .inventory.sync import InventorySync
from .periodic import Periodic
from .policy.alerts import Alerts
from .policy.metrics import Metrics
from .providers import sandbox
from .providers.base import Feature
from .providers.registry import Registry
from .secrets import Vault, load_key
from .store.db import Store
from .traffic.dns import DnsServer

log = logging.getLogger(__name__)


class Core:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        settings.state_dir.mkdir(parents=True, exist_ok=True)
        settings.state_dir.chmod(0o700)  # keys, tokens, the database: the owner's only
        if settings.config_file is not None:  # its credentials: out of every instance's sight
            sandbox.hide(settings.config_file)
        self.store = Store(settings.db_url)
        self.events = EventLog(self.store)
        self.registry = Registry(settings.workers_per_location)
        self.vault = Vault(load_key(settings.state_dir))
        self.tokens = Tokens(self.store)
        self.access_keys = AccessKeys(self.store, self.vault)
        self.annotations = Annotations(self.store)
        self.key_pairs = KeyPairs(self.store)
        self.records = Records(self.store)
        self.locations = Locations(settings.state_dir, self.events, self.registry, self.vault)
        self.runner = JobRunner(self.events, self.registry)
        self.cluster = Cluster(settings, self.store, self.events, self.runner)
        leads = self.cluster.is_leader
        self.ops = Operations(self.events, self.locations, self.runner, settings.answer_deadline)
        self.sync = InventorySync(self.events, self.registry, self.locations, settings.sync_interval,
                                  when=leads, hung_after=settings.answer_deadline)
        self.deployments = Deployments(self.events, self.locations)
        self.deployments.dns_accounts = frozenset(settings.dns_accounts)
        self.publisher = Publisher(self.events, settings.dns_accounts,
                                   verify_interval=settings.dns_verify_interval)
        self.snapshots = Snapshots(self.ops)
        self.security_groups = SecurityGroups(self.events)
        self.enforcer = Enforcer(self.security_groups, self.ops)
        self.security_groups.enforced_at = self._enforces
        self.security_groups.changed = self.enforcer.apply_all
        self.catalog = Catalog(self.events, self.registry, self.runner, settings.state_dir)
        self.ops.instances.boot_image = self.catalog.boot_image
        self.deployments.boot_image = self.catalog.boot_image
        self.hosts = Hosts(self.events, self.locations, self.ops)
        self.moves = LiveMoves(self.events, self.locations, self.runner, self.ops, self.deployments)
        self.metrics = Metrics(self.store, raw_retention=settings.metrics_raw_retention,
                               retention=settings.metrics_retention)
        self.alerts = Alerts(self.events, settings.webhooks, when=leads)
        self.reconciler = Reconciler(self.events, self.ops, self.deployments,
                                     settings.node_dir / "traffic", settings.reconcile_interval,
                                     metrics=self.metrics, decides=leads,
                                     fence=self.cluster.lease.fence,
                                     front_door_host=settings.front_door_host,
                                     publisher=self.publisher)
        self.reconciler.join_groups = self.security_groups.join
        self.deployments.groups_exist = self.security_groups.find
        self.applications = Applications(self.events, self.catalog, self.deployments,
                                         self.security_groups, self.enforcer, self.moves,
                                         self.ops, self.runner)
        self.addresses = ElasticAddresses(self.records, self.events)
        self.address_router = AddressRouter(
            self.addresses, self.registry,
            instance=lambda iid: instance_target(self.ops.instances, iid),
            serving=lambda name, now: serving_replica(self.deployments, self.ops.instances,
                                                      name, now),
            interfaces=lambda: interface_addresses(self.records),
            interface_owner=lambda eni: interface_owner(self.records, eni))
        self.addresses.changed = self.address_router.apply_all
        self.address_routing = Periodic("addresses", self.address_router.apply_all, 0.5, leads)
        self.sampler = Periodic("metrics", self._sample, settings.metrics_interval, leads)
        self.firewall = Periodic("firewall", self.enforcer.apply_all, 2.0, leads)
        self.host_watch = Periodic("hosts", self.hosts.watch, WATCH_INTERVAL_S, leads)
        self.dns: DnsServer | None = None

    def start(self, *, background: bool = True) -> None:
        self.store.migrate()
        self.cluster.join()
        for spec in self.settings.locations:
            self.locations.ensure(spec)
        self.locations.start_all()
        resumed = self.runner.resume()
        if resumed:
            log.info("resumed %d unfinished jobs", resumed)
        if background:
            self.cluster.start()
            self.sync.start()
            self.reconciler.start()
            self.publisher.start()
            self.sampler.start()
            self.firewall.start()
            self.address_routing.start()
            self.host_watch.start()
            self.alerts.start()
            if self.settings.dns_port is not None:
                try:
                    self.dns = DnsServer(self.deployments, self.ops.instances, self.settings.dns_zone,
                                         self.settings.dns_ttl, (self.settings.dns_host,
                                                                 self.settings.dns_port),
                                         front_doors=self._front_doors)
                    self.dns.start()
                except OSError as exc:
                    log.warning("DNS disabled: cannot bind %s:%s (%s)", self.settings.dns_host,
                                self.settings.dns_port, exc)

    def _front_doors(self) -> list[str | None]:
        return [n.front_door_host for n in self.cluster.membership.list() if n.role != "down"]

    def _enforces(self, location: str) -> bool:
        try:
            return self.registry.get(location).capabilities.supports(Feature.firewall)
        except OnepaneError:
            return False

    def _sample(self) -> None:
        self.reconciler.sample_metrics()
        self.metrics.flush()

    def stop(self) -> None:
        """Stop the control plane. Instances and data planes keep running on purpose."""
        if self.dns:
            self.dns.stop()
        self.sampler.stop()
        self.firewall.stop()
        self.address_routing.stop()
        self.host_watch.stop()
        self.alerts.stop()
        self.reconciler.stop()
        self.publisher.stop()
        self.sync.stop()
        self.cluster.stop()
        self.registry.close()
        self.runner.close()
        self.store.close()

"""One node's part in the control plane: heartbeat, contend for the lease, and when it leads,
run the loops only one node may run and take over the jobs of nodes that stopped.

Every node serves the API, runs the jobs it accepted and feeds its own data planes. The leader
alone decides: failovers, replicas, policies, inventory sync, metrics, webhooks. A standby
tries the lease every `tick` seconds; on PostgreSQL a dead leader's lock is free the moment
its session closes, so the next try wins.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..config import Settings
from ..events import EventLog
from ..inventory.jobs import JobRunner
from ..periodic import Periodic
from ..store.db import Store
from .lease import LeaderLease
from .membership import Membership

if TYPE_CHECKING:
    from .relay import EventRelay

log = logging.getLogger(__name__)


class Cluster:
    def __init__(self, settings: Settings, store: Store, events: EventLog, runner: JobRunner,
                 tick: float = 0.1, heartbeat: float = 0.5) -> None:
        self.node = settings.node
        self.events = events
        self.runner = runner
        self.membership = Membership(store, settings)
        self.lease = LeaderLease(store, self.node)
        self.relay: EventRelay | None = None
        if self.lease.postgres:  # psycopg is loaded only where it is used
            from .relay import EventRelay
            self.relay = EventRelay(store, events)
        self.heartbeat = heartbeat
        self.on_lead: list[Callable[[], None]] = []  # called once each time this node leads
        self._loop = Periodic("cluster", self._pass, tick)
        self._beaten = 0.0
        self._swept = 0.0

    def is_leader(self) -> bool:
        return self.lease.held

    def join(self) -> None:
        """Before the node serves: its row (refused on SQLite if another node runs) and, when
        nobody leads, the lease, so that a single node leads from its first moment."""
        self.membership.join()
        self.runner.node = self.node
        self._contend()

    def start(self) -> None:
        if self.relay:
            self.relay.start()
        self._loop.start()

    def stop(self) -> None:
        self._loop.stop()
        if self.relay:
            self.relay.stop()
        try:
            self.membership.leave()
        except Exception:
            log.warning("could not record that node %s left", self.node, exc_info=True)
        self.lease.release()

    def _pass(self) -> None:
        now = time.monotonic()
        if now - self._beaten >= self.heartbeat:
            self.membership.beat()
            self._beaten = now
        if self.lease.held and not self.lease.still_held():
            self.events.emit("cluster.standby", f"node {self.node} lost the lead",
                             severity="warning", subject=self.node)
        if not self.lease.held:
            self._contend()
        if self.lease.held and now - self._swept >= self.heartbeat:
            self._swept = now
            self._take_over()

    def _contend(self) -> None:
        if not self.lease.try_acquire():
            return
        log.info("node %s leads (epoch %d)", self.node, self.lease.epoch)
        self.events.emit("cluster.leader", f"node {self.node} leads (epoch {self.lease.epoch})",
                         subject=self.node, data={"node": self.node, "epoch": self.lease.epoch})
        for call in self.on_lead:
            call()
        self._take_over()

    def _take_over(self) -> None:
        dead = self.membership.dead()
        if not dead:
            return
        moved = self.runner.take_over(dead)
        if moved:
            self.events.emit("cluster.takeover", f"node {self.node} took over {moved} unfinished "
                             f"jobs of {', '.join(dead)}", severity="warning", subject=self.node,
                             data={"from": dead, "jobs": moved})

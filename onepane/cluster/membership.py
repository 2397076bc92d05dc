"""Which nodes there are and which are alive: each writes a heartbeat into the shared store."""

from __future__ import annotations

import os
import time

import psutil
from sqlalchemy import select, update

from ..config import Settings
from ..errors import Conflict
from ..model import Node
from ..store.db import Store
from ..store.tables import LeaseRow, NodeRow
from .lease import LEADER


class Membership:
    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.node = settings.node
        self.timeout = settings.node_timeout
        self.api_url = f"http://{settings.api_host}:{settings.api_port}"
        self.front_door_host = settings.front_door_host
        self.sqlite = store.engine.url.get_backend_name() == "sqlite"

    def join(self) -> None:
        """Write this node's row. SQLite serves one node: a second one is refused, by name."""
        now = time.time()
        with self.store.tx() as s:
            alive = [r for r in s.scalars(select(NodeRow))
                     if now - r.heartbeat < self.timeout and r.pid != os.getpid()
                     and not (self._here(r) and not onepane_running(r.pid))]
            if self.sqlite and alive:
                other = alive[0]
                raise Conflict(
                    f"node {other.name} (pid {other.pid}, {other.api_url}) already runs on this "
                    "SQLite store, which serves one node: stop it first, or run several nodes on "
                    "PostgreSQL (the same database_url and a node_name for each)",
                    field="database_url")
            if any(r.name == self.node for r in alive):
                raise Conflict(f"a node named {self.node} is already running on this store "
                               "(give each node its own node_name)", field="node_name")
            row = s.get(NodeRow, self.node)
            if row is None:
                row = NodeRow(name=self.node, heartbeat=now)
                s.add(row)
            row.api_url, row.front_door_host, row.pid = self.api_url, self.front_door_host, \
                os.getpid()
            row.heartbeat = now

    def _here(self, row: NodeRow) -> bool:
        """A row this host wrote: SQLite's always are; on PostgreSQL, this node's own name."""
        return self.sqlite or row.name == self.node

    def beat(self) -> None:
        with self.store.tx() as s:
            s.execute(update(NodeRow).where(NodeRow.name == self.node)
                      .values(heartbeat=time.time(), pid=os.getpid()))

    def leave(self) -> None:
        """A node that stops on purpose says so: its unfinished jobs move at once."""
        with self.store.tx() as s:
            s.execute(update(NodeRow).where(NodeRow.name == self.node).values(heartbeat=0.0))

    def dead(self) -> list[str]:
        """Nodes whose heartbeat is older than the time-out (this one is never among them)."""
        cutoff = time.time() - self.timeout
        with self.store.tx() as s:
            return list(s.scalars(select(NodeRow.name).where(NodeRow.heartbeat < cutoff,
                                                             NodeRow.name != self.node)))

    def list(self) -> list[Node]:
        now = time.time()
        with self.store.tx() as s:
            rows = list(s.scalars(select(NodeRow).order_by(NodeRow.name)))
            lease = s.get(LeaseRow, LEADER)
        leader = lease.holder if lease else None
        return [Node(name=r.name, api_url=r.api_url, front_door_host=r.front_door_host,
                     role="down" if now - r.heartbeat >= self.timeout
                     else "leader" if r.name == leader else "standby",
                     heartbeat_age_s=round(max(0.0, now - r.heartbeat), 3) if r.heartbeat else -1,
                     started_at=r.started_at) for r in rows]


def onepane_running(pid: int) -> bool:
    """A heartbeat younger than the time-out from a process that is gone (`kill -9`, then a
    restart at once) must not keep its successor out."""
    try:
        return "onepane" in " ".join(psutil.Process(pid).cmdline())
    except (psutil.Error, OSError):
        return False

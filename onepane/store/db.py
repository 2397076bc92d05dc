"""Engine, sessions and schema migrations for SQLite (embedded) and PostgreSQL (by URL)."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.orm import Session, sessionmaker

from .tags import keep_tags

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"
# The newest migration's revision (tests/unit/test_store_schema.py checks it is Alembic's head):
# a database already there is not handed to Alembic at all, whose loading and run were a tenth
# of every server start.
HEAD = "0013"


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30},
                               pool_size=20, max_overflow=20)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_size=20, max_overflow=20, pool_pre_ping=True)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # WAL lets the API read while job workers write; NORMAL sync is safe with WAL.
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


class WriterGate:
    """One SQLite writer of this process at a time, queued on a lock.

    SQLite lets one connection write at once; the others, told the database is busy, poll
    with sleeps of 1, 2, 5 … 100 ms (its busy handler). Under two dozen job workers that was
    most of a create's time spent asleep with the database free (bench/provision.py). A
    waiter on this lock is woken the moment the writer before it commits. The lock is taken at
    a transaction's first write (the driver begins it there) and let go when its connection
    returns to the pool, after the commit or rollback; other processes still meet the busy
    handler, as before."""

    HELD = "onepane_writer"

    def __init__(self, timeout: float = 30.0) -> None:
        self._lock = threading.Lock()
        self.timeout = timeout

    @property
    def held(self) -> bool:
        return self._lock.locked()

    def watch(self, engine: Engine) -> None:
        event.listen(engine, "before_cursor_execute", self._before)
        for name in ("checkin", "close", "detach", "invalidate"):
            event.listen(engine.pool, name, self._after)

    def _before(self, conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        info = conn.info
        if info.get(self.HELD) or statement.lstrip()[:6].upper() in ("SELECT", "PRAGMA"):
            return
        if not self._lock.acquire(timeout=self.timeout):
            raise sqlite3.OperationalError("database is locked")
        info[self.HELD] = True

    def _after(self, _dbapi_conn: Any, record: Any, *_args: Any) -> None:
        if record is not None and record.info.pop(self.HELD, False):
            self._lock.release()


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision; safe to call on every start."""
    if revision(engine) == HEAD:
        return
    from alembic import command
    cfg = alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def alembic_config() -> Config:
    """Alembic's configuration for onepane's migrations (Alembic imported here: a start whose
    database is at HEAD does not load it)."""
    from alembic.config import Config
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def revision(engine: Engine) -> str | None:
    """The schema revision Alembic recorded in the database (None: none yet)."""
    with engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return None
        return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


class Store:
    """Owns the engine and hands out short transactions."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self.gate: WriterGate | None = None
        if self.engine.url.get_backend_name() == "sqlite":
            self.gate = WriterGate()
            self.gate.watch(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        keep_tags(self._sessions)

    def migrate(self) -> None:
        migrate(self.engine)
        db = self.engine.url.database
        if self.engine.url.get_backend_name() == "sqlite" and db and db != ":memory:":
            with contextlib.suppress(OSError):
                os.chmod(db, 0o600)  # the store holds sealed credentials and token hashes

    def before_commit(self, hook: Callable[[Session], None]) -> None:
        """Run `hook` in every transaction just before it commits (still inside it)."""
        event.listen(self._sessions, "before_commit", hook)

    @contextmanager
    def tx(self) -> Iterator[Session]:
        with self._sessions.begin() as session:
            yield session

    def close(self) -> None:
        self.engine.dispose()

"""The schema's revision: store.db.HEAD names Alembic's newest migration (a start skips Alembic
when the database is there already, so a stale HEAD would leave a new migration unapplied),
and a database at an older revision is still brought up to it."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.script import ScriptDirectory

from onepane.store.db import HEAD, Store, alembic_config, revision


def test_head_is_alembic_s_newest_migration() -> None:
    assert ScriptDirectory.from_config(alembic_config()).get_heads() == [HEAD]


def test_a_new_database_and_an_old_one_reach_head(tmp_path: Path) -> None:
    fresh = Store(f"sqlite:///{tmp_path / 'fresh.db'}")
    assert revision(fresh.engine) is None
    fresh.migrate()
    assert revision(fresh.engine) == HEAD
    fresh.migrate()  # already there: nothing to do, nothing fails
    assert revision(fresh.engine) == HEAD

    old = Store(f"sqlite:///{tmp_path / 'old.db'}")
    cfg = alembic_config()
    with old.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0012")
    assert revision(old.engine) == "0012"
    old.migrate()
    assert revision(old.engine) == HEAD

"""Keeps `instance_tags` equal to each instance's `tags`, whatever code changed them.

After every flush, the instances the flush added or whose tags it changed get their tag rows
written again (one DELETE, for those that had some, and one INSERT per flush, batched), on the
flush's own connection, so the copy commits or rolls back with the change. Deleted instances
lose theirs by the foreign key's ON DELETE CASCADE.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, event, insert, inspect
from sqlalchemy.orm import Session, sessionmaker

from .tables import InstanceRow, InstanceTagRow


def keep_tags(sessions: sessionmaker[Session]) -> None:
    event.listen(sessions, "after_flush", _after_flush)


def tag_rows(instance_id: str, tags: dict[str, Any]) -> list[dict[str, str]]:
    return [{"instance_id": instance_id, "key": str(k)[:128], "value": str(v)[:256]}
            for k, v in (tags or {}).items()]


def _after_flush(session: Session, _context: Any) -> None:
    new = [o for o in session.new if isinstance(o, InstanceRow)]
    retagged = [o for o in session.dirty if isinstance(o, InstanceRow)
                and inspect(o).attrs.tags.history.has_changes()]
    gone = [o.id for o in session.deleted if isinstance(o, InstanceRow)]
    changed = new + retagged
    if not changed and not gone:
        return
    conn = session.connection()
    ids = [o.id for o in retagged] + gone  # a new instance has no tag rows to replace yet
    for i in range(0, len(ids), 500):
        conn.execute(delete(InstanceTagRow).where(InstanceTagRow.instance_id.in_(ids[i:i + 500])))
    rows = [r for o in changed for r in tag_rows(o.id, o.tags)]
    if rows:
        conn.execute(insert(InstanceTagRow), rows)

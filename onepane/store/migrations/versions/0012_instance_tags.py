"""instance_tags: each instance's tags, one row a tag, for indexed tag filters

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-26 12:00:00
"""

import json

import sqlalchemy as sa
from alembic import op

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('instance_tags',
    sa.Column('instance_id', sa.String(length=32), nullable=False),
    sa.Column('key', sa.String(length=128), nullable=False),
    sa.Column('value', sa.String(length=256), nullable=False),
    sa.ForeignKeyConstraint(['instance_id'], ['instances.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('instance_id', 'key')
    )
    op.create_index('ix_instance_tags_key_value', 'instance_tags',
                    ['key', 'value', 'instance_id'], unique=False)
    conn = op.get_bind()
    rows = []
    for iid, tags in conn.execute(sa.text("SELECT id, tags FROM instances")):
        if isinstance(tags, str):
            tags = json.loads(tags)
        rows += [{"instance_id": iid, "key": str(k)[:128], "value": str(v)[:256]}
                 for k, v in (tags or {}).items()]
    if rows:
        conn.execute(sa.text("INSERT INTO instance_tags (instance_id, key, value) "
                             "VALUES (:instance_id, :key, :value)"), rows)


def downgrade() -> None:
    op.drop_index('ix_instance_tags_key_value', table_name='instance_tags')
    op.drop_table('instance_tags')

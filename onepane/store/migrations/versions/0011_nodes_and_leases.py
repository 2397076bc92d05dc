"""nodes of the control plane, the leader's lease, and which node runs each job

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-26 11:50:00
"""

import sqlalchemy as sa
from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('nodes',
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('api_url', sa.String(length=256), nullable=False),
    sa.Column('front_door_host', sa.String(length=64), nullable=True),
    sa.Column('pid', sa.Integer(), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('heartbeat', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('name')
    )
    op.create_table('leases',
    sa.Column('name', sa.String(length=32), nullable=False),
    sa.Column('holder', sa.String(length=64), nullable=False),
    sa.Column('epoch', sa.Integer(), nullable=False),
    sa.Column('acquired_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('name')
    )
    with op.batch_alter_table('jobs') as batch:
        batch.add_column(sa.Column('node', sa.String(length=64), nullable=True))
        batch.create_index('ix_jobs_node', ['node'])


def downgrade() -> None:
    with op.batch_alter_table('jobs') as batch:
        batch.drop_index('ix_jobs_node')
        batch.drop_column('node')
    op.drop_table('leases')
    op.drop_table('nodes')

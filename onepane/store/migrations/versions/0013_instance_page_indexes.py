"""indexes for filtered inventory pages: (location, id) and (state, id)

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-26 12:20:00
"""

from alembic import op

revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_instances_location_id', 'instances', ['location', 'id'], unique=False)
    op.create_index('ix_instances_state_id', 'instances', ['state', 'id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_instances_state_id', table_name='instances')
    op.drop_index('ix_instances_location_id', table_name='instances')

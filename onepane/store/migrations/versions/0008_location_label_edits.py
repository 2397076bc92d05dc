"""locations keep the label edits made through the API, apart from the configured labels

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-26 10:05:00
"""

import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('locations', schema=None) as batch_op:
        batch_op.add_column(sa.Column('label_edits', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('locations', schema=None) as batch_op:
        batch_op.drop_column('label_edits')

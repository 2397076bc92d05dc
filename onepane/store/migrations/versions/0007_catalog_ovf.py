"""catalog images keep what the OVF said: options, properties, appliance, warnings

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26 06:50:00
"""

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('catalog_images', schema=None) as batch_op:
        batch_op.add_column(sa.Column('ovf', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('appliance', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('warnings', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('catalog_images', schema=None) as batch_op:
        batch_op.drop_column('warnings')
        batch_op.drop_column('appliance')
        batch_op.drop_column('ovf')

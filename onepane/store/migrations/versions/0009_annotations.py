"""annotations (front ends' extra attributes and categories per resource) and client-defined
categories

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-26 10:10:00
"""

import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('annotations',
    sa.Column('resource', sa.String(length=80), nullable=False),
    sa.Column('attributes', sa.JSON(), nullable=False),
    sa.Column('categories', sa.JSON(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('resource')
    )
    op.create_table('category_defs',
    sa.Column('id', sa.String(length=512), nullable=False),
    sa.Column('term', sa.String(length=128), nullable=False),
    sa.Column('scheme', sa.String(length=384), nullable=False),
    sa.Column('title', sa.String(length=256), nullable=False),
    sa.Column('location', sa.String(length=256), nullable=False),
    sa.Column('depends', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('location')
    )


def downgrade() -> None:
    op.drop_table('category_defs')
    op.drop_table('annotations')

"""panel: each user's time zone for the dates pages show (blank: the configured default)

Revision ID: 0006_panel
Revises: 0005_hardening
Create Date: 2026-12-02 04:40:00.000000
"""
from alembic import op
import sqlalchemy as sa


revision = '0006_panel'
down_revision = "0005_hardening"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('timezone', sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('timezone')

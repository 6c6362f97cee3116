"""users: a session version, raised to end every session of a user (logout, new password, deactivation)

Revision ID: 0005_hardening
Revises: 0004
Create Date: 2026-12-02 04:50:00.000000
"""
from alembic import op
import sqlalchemy as sa


revision = '0005_hardening'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('session_version', sa.Integer(), server_default=sa.text('0'),
                                      nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('session_version')

"""recurring payments: the last error as a code with parameters, translated when shown

The run stored the last error translated into the cron's language. It now stores a code and its
parameters (and an untranslated text); rows from before keep their text, which is shown as it is.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28 10:30:00.000000
"""
from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('recurring_profiles', schema=None) as batch_op:
        batch_op.add_column(sa.Column('last_error_code', sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column('last_error_params', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('recurring_profiles', schema=None) as batch_op:
        batch_op.drop_column('last_error_params')
        batch_op.drop_column('last_error_code')

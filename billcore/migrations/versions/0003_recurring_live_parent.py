"""recurring payments: at most one live profile per parent payment

Two concurrent opt-ins could create two live profiles on one parent payment (two charges a period).
Duplicates left by that bug are cancelled first (the oldest live profile of a parent is kept), then a
partial unique index on ``parent_payment_id`` over the live statuses makes a second one impossible.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28 10:00:00.000000
"""
from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

LIVE = "status IN ('active', 'suspended')"


def upgrade() -> None:
    op.execute(sa.text(
        "UPDATE recurring_profiles SET status = 'cancelled', next_charge_at = NULL "
        f"WHERE {LIVE} AND EXISTS (SELECT 1 FROM recurring_profiles AS older "
        "WHERE older.parent_payment_id = recurring_profiles.parent_payment_id "
        "AND older.status IN ('active', 'suspended') AND older.id < recurring_profiles.id)"))
    with op.batch_alter_table('recurring_profiles', schema=None) as batch_op:
        batch_op.create_index('uq_recurring_profiles_live_parent', ['parent_payment_id'], unique=True,
                              sqlite_where=sa.text(LIVE), postgresql_where=sa.text(LIVE))


def downgrade() -> None:
    with op.batch_alter_table('recurring_profiles', schema=None) as batch_op:
        batch_op.drop_index('uq_recurring_profiles_live_parent', sqlite_where=sa.text(LIVE),
                            postgresql_where=sa.text(LIVE))

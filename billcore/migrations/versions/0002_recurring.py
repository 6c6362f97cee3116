"""recurring payments: auto-payment profiles and their charged periods

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 18:54:43.807192
"""
from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('recurring_profiles',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('paymethod_id', sa.Integer(), nullable=False),
    sa.Column('parent_payment_id', sa.Integer(), nullable=False),
    sa.Column('rule', sa.String(length=16), nullable=False),
    sa.Column('amount', sa.Numeric(precision=18, scale=2), nullable=False),
    sa.Column('threshold', sa.Numeric(precision=18, scale=2), nullable=True),
    sa.Column('monthly_max', sa.Numeric(precision=18, scale=2), nullable=False),
    sa.Column('charge_day', sa.Integer(), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('next_charge_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('sequence', sa.Integer(), nullable=False),
    sa.Column('failures', sa.Integer(), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('actor', sa.String(length=254), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_recurring_profiles_account_id_accounts')),
    sa.ForeignKeyConstraint(['parent_payment_id'], ['payments.id'], name=op.f('fk_recurring_profiles_parent_payment_id_payments')),
    sa.ForeignKeyConstraint(['paymethod_id'], ['paymethods.id'], name=op.f('fk_recurring_profiles_paymethod_id_paymethods')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_recurring_profiles'))
    )
    with op.batch_alter_table('recurring_profiles', schema=None) as batch_op:
        batch_op.create_index('ix_recurring_profiles_account_id_id', ['account_id', 'id'], unique=False)
        batch_op.create_index(batch_op.f('ix_recurring_profiles_parent_payment_id'), ['parent_payment_id'], unique=False)
        batch_op.create_index('ix_recurring_profiles_status_next', ['status', 'next_charge_at'], unique=False)

    op.create_table('recurring_charges',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('profile_id', sa.Integer(), nullable=False),
    sa.Column('period', sa.String(length=32), nullable=False),
    sa.Column('payment_id', sa.Integer(), nullable=True),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('info', sa.Text(), nullable=True),
    sa.Column('charged_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['payment_id'], ['payments.id'], name=op.f('fk_recurring_charges_payment_id_payments')),
    sa.ForeignKeyConstraint(['profile_id'], ['recurring_profiles.id'], name=op.f('fk_recurring_charges_profile_id_recurring_profiles')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_recurring_charges')),
    sa.UniqueConstraint('payment_id', name=op.f('uq_recurring_charges_payment_id')),
    sa.UniqueConstraint('profile_id', 'period', name='uq_recurring_charges_profile_period')
    )


def downgrade() -> None:
    op.drop_table('recurring_charges')
    with op.batch_alter_table('recurring_profiles', schema=None) as batch_op:
        batch_op.drop_index('ix_recurring_profiles_status_next')
        batch_op.drop_index(batch_op.f('ix_recurring_profiles_parent_payment_id'))
        batch_op.drop_index('ix_recurring_profiles_account_id_id')

    op.drop_table('recurring_profiles')

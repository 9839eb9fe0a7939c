"""add login failures and the Whop sync state

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04 19:59:04.256145
"""

from alembic import op
import sqlalchemy as sa
import justtrades.db.types


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('login_failures',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('scope', sa.String(length=16), nullable=False),
    sa.Column('key_hash', sa.String(length=64), nullable=False),
    sa.Column('failed_at', justtrades.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_login_failures'))
    )
    with op.batch_alter_table('login_failures', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_login_failures_failed_at'), ['failed_at'], unique=False)
        batch_op.create_index('ix_login_failures_scope_key_hash_failed_at', ['scope', 'key_hash', 'failed_at'], unique=False)

    op.create_table('whop_sync_state',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('last_run_at', justtrades.db.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_attempt_at', justtrades.db.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('last_synced', sa.Integer(), nullable=False),
    sa.Column('last_resent', sa.Integer(), nullable=False),
    sa.Column('last_instance', sa.String(length=128), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_whop_sync_state'))
    )


def downgrade() -> None:
    op.drop_table('whop_sync_state')
    with op.batch_alter_table('login_failures', schema=None) as batch_op:
        batch_op.drop_index('ix_login_failures_scope_key_hash_failed_at')
        batch_op.drop_index(batch_op.f('ix_login_failures_failed_at'))

    op.drop_table('login_failures')

"""create the initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-12-04 19:52:12.444385
"""

from alembic import op
import sqlalchemy as sa
import justtrades.db.types


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('accounts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=120), nullable=False),
    sa.Column('broker', sa.String(length=16), nullable=False),
    sa.Column('environment', sa.String(length=8), nullable=False),
    sa.Column('broker_account_id', sa.BigInteger(), nullable=True),
    sa.Column('token_group', sa.String(length=120), nullable=True),
    sa.Column('access_token', sa.Text(), nullable=True),
    sa.Column('token_expires_at', justtrades.db.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('auth_status', sa.String(length=16), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('created_at', justtrades.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_accounts')),
    sa.UniqueConstraint('name', name=op.f('uq_accounts_name'))
    )
    op.create_table('counters',
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('value', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_counters'))
    )
    op.create_table('execution_failures',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('created_at', justtrades.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('job_id', sa.BigInteger(), nullable=True),
    sa.Column('recorder_name', sa.String(length=120), nullable=True),
    sa.Column('trader_id', sa.Integer(), nullable=True),
    sa.Column('account_id', sa.Integer(), nullable=True),
    sa.Column('symbol', sa.String(length=32), nullable=True),
    sa.Column('action', sa.String(length=16), nullable=True),
    sa.Column('reason', sa.String(length=32), nullable=False),
    sa.Column('error', sa.Text(), nullable=False),
    sa.Column('permanent', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_execution_failures'))
    )
    with op.batch_alter_table('execution_failures', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_execution_failures_created_at'), ['created_at'], unique=False)

    op.create_table('raw_webhooks',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('received_at', justtrades.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('webhook_token', sa.String(length=128), nullable=False),
    sa.Column('source_ip', sa.String(length=64), nullable=True),
    sa.Column('content_type', sa.String(length=128), nullable=True),
    sa.Column('size_bytes', sa.Integer(), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('truncated', sa.Boolean(), nullable=False),
    sa.Column('action', sa.String(length=16), nullable=True),
    sa.Column('outcome', sa.String(length=16), nullable=True),
    sa.Column('http_status', sa.Integer(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_raw_webhooks'))
    )
    with op.batch_alter_table('raw_webhooks', schema=None) as batch_op:
        batch_op.create_index('ix_raw_webhooks_received_at', ['received_at'], unique=False)

    op.create_table('recorders',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=120), nullable=False),
    sa.Column('webhook_token', sa.String(length=64), nullable=False),
    sa.Column('strategy', sa.String(length=120), nullable=True),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('trading_windows', sa.String(length=255), nullable=False),
    sa.Column('cooldown_seconds', sa.Integer(), nullable=False),
    sa.Column('last_signal_at', justtrades.db.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_at', justtrades.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_recorders')),
    sa.UniqueConstraint('name', name=op.f('uq_recorders_name')),
    sa.UniqueConstraint('webhook_token', name=op.f('uq_recorders_webhook_token'))
    )
    op.create_table('users',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('email', sa.String(length=255), nullable=False),
    sa.Column('password_hash', sa.String(length=255), nullable=True),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('approved', sa.Boolean(), nullable=False),
    sa.Column('is_affiliate', sa.Boolean(), nullable=False),
    sa.Column('whop_membership_id', sa.String(length=64), nullable=True),
    sa.Column('whop_status', sa.String(length=32), nullable=True),
    sa.Column('activation_token_hash', sa.String(length=128), nullable=True),
    sa.Column('activation_sent_at', justtrades.db.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('activation_resends', sa.Integer(), nullable=False),
    sa.Column('activated_at', justtrades.db.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_at', justtrades.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_users')),
    sa.UniqueConstraint('email', name=op.f('uq_users_email')),
    sa.UniqueConstraint('whop_membership_id', name=op.f('uq_users_whop_membership_id'))
    )
    op.create_table('webhook_duplicate_guard',
    sa.Column('fingerprint', sa.String(length=64), nullable=False),
    sa.Column('expires_at', justtrades.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('fingerprint', name=op.f('pk_webhook_duplicate_guard'))
    )
    with op.batch_alter_table('webhook_duplicate_guard', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_webhook_duplicate_guard_expires_at'), ['expires_at'], unique=False)

    op.create_table('positions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('symbol', sa.String(length=32), nullable=False),
    sa.Column('net_pos', sa.Integer(), nullable=False),
    sa.Column('avg_price', justtrades.db.types.ExactDecimal(precision=24, scale=10), nullable=True),
    sa.Column('realized_pnl', justtrades.db.types.ExactDecimal(precision=24, scale=10), nullable=False),
    sa.Column('updated_at', justtrades.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_positions_account_id_accounts')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_positions')),
    sa.UniqueConstraint('account_id', 'symbol', name='uq_positions_account_symbol')
    )
    op.create_table('signal_blocks',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('recorder_id', sa.Integer(), nullable=True),
    sa.Column('symbol_root', sa.String(length=16), nullable=True),
    sa.Column('reason', sa.String(length=255), nullable=False),
    sa.Column('until', justtrades.db.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_at', justtrades.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['recorder_id'], ['recorders.id'], name=op.f('fk_signal_blocks_recorder_id_recorders')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_signal_blocks'))
    )
    op.create_table('traders',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('recorder_id', sa.Integer(), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=True),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('quantity', sa.Integer(), nullable=False),
    sa.Column('max_daily_loss', justtrades.db.types.ExactDecimal(precision=24, scale=10), nullable=True),
    sa.Column('created_at', justtrades.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_traders_account_id_accounts')),
    sa.ForeignKeyConstraint(['recorder_id'], ['recorders.id'], name=op.f('fk_traders_recorder_id_recorders')),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_traders_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_traders')),
    sa.UniqueConstraint('recorder_id', 'account_id', name='uq_traders_recorder_account')
    )
    with op.batch_alter_table('traders', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_traders_account_id'), ['account_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_traders_recorder_id'), ['recorder_id'], unique=False)

    op.create_table('webhook_activity',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('created_at', justtrades.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('raw_webhook_id', sa.BigInteger(), nullable=True),
    sa.Column('recorder_id', sa.Integer(), nullable=False),
    sa.Column('recorder_name', sa.String(length=120), nullable=False),
    sa.Column('action', sa.String(length=16), nullable=True),
    sa.Column('ticker', sa.String(length=32), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('reason', sa.String(length=255), nullable=True),
    sa.Column('latency_ms', sa.Integer(), nullable=True),
    sa.Column('traders_notified', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['recorder_id'], ['recorders.id'], name=op.f('fk_webhook_activity_recorder_id_recorders')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_activity'))
    )
    with op.batch_alter_table('webhook_activity', schema=None) as batch_op:
        batch_op.create_index('ix_webhook_activity_created_at', ['created_at'], unique=False)

    op.create_table('execution_jobs',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('idempotency_key', sa.String(length=96), nullable=False),
    sa.Column('activity_id', sa.BigInteger(), nullable=True),
    sa.Column('recorder_id', sa.Integer(), nullable=False),
    sa.Column('trader_id', sa.Integer(), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('action', sa.String(length=16), nullable=False),
    sa.Column('symbol', sa.String(length=32), nullable=False),
    sa.Column('quantity', sa.Integer(), nullable=False),
    sa.Column('price', justtrades.db.types.ExactDecimal(precision=24, scale=10), nullable=True),
    sa.Column('take_profit', justtrades.db.types.ExactDecimal(precision=24, scale=10), nullable=True),
    sa.Column('stop_loss', justtrades.db.types.ExactDecimal(precision=24, scale=10), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', justtrades.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('lease_expires_at', justtrades.db.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('claimed_by', sa.String(length=64), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('signal_received_at', justtrades.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('created_at', justtrades.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('finished_at', justtrades.db.types.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_execution_jobs_account_id_accounts')),
    sa.ForeignKeyConstraint(['recorder_id'], ['recorders.id'], name=op.f('fk_execution_jobs_recorder_id_recorders')),
    sa.ForeignKeyConstraint(['trader_id'], ['traders.id'], name=op.f('fk_execution_jobs_trader_id_traders')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_execution_jobs')),
    sa.UniqueConstraint('idempotency_key', name=op.f('uq_execution_jobs_idempotency_key'))
    )
    with op.batch_alter_table('execution_jobs', schema=None) as batch_op:
        batch_op.create_index('ix_execution_jobs_status_next_attempt_at', ['status', 'next_attempt_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_execution_jobs_trader_id'), ['trader_id'], unique=False)

    op.create_table('loss_breaches',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('trader_id', sa.Integer(), nullable=False),
    sa.Column('session_date', sa.Date(), nullable=False),
    sa.Column('daily_pnl', justtrades.db.types.ExactDecimal(precision=24, scale=10), nullable=False),
    sa.Column('max_daily_loss', justtrades.db.types.ExactDecimal(precision=24, scale=10), nullable=False),
    sa.Column('created_at', justtrades.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['trader_id'], ['traders.id'], name=op.f('fk_loss_breaches_trader_id_traders')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_loss_breaches')),
    sa.UniqueConstraint('trader_id', 'session_date', name='uq_loss_breaches_trader_session')
    )
    op.create_table('paper_trades',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('trader_id', sa.Integer(), nullable=True),
    sa.Column('symbol', sa.String(length=32), nullable=False),
    sa.Column('side', sa.String(length=8), nullable=False),
    sa.Column('quantity', sa.Integer(), nullable=False),
    sa.Column('entry_price', justtrades.db.types.ExactDecimal(precision=24, scale=10), nullable=False),
    sa.Column('exit_price', justtrades.db.types.ExactDecimal(precision=24, scale=10), nullable=True),
    sa.Column('pnl', justtrades.db.types.ExactDecimal(precision=24, scale=10), nullable=True),
    sa.Column('opened_at', justtrades.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('closed_at', justtrades.db.types.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_paper_trades_account_id_accounts')),
    sa.ForeignKeyConstraint(['trader_id'], ['traders.id'], name=op.f('fk_paper_trades_trader_id_traders')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_paper_trades'))
    )
    with op.batch_alter_table('paper_trades', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_paper_trades_account_id'), ['account_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_paper_trades_closed_at'), ['closed_at'], unique=False)

    op.create_table('orders',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('job_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('trader_id', sa.Integer(), nullable=True),
    sa.Column('client_order_id', sa.String(length=96), nullable=False),
    sa.Column('broker_order_id', sa.String(length=64), nullable=True),
    sa.Column('symbol', sa.String(length=32), nullable=False),
    sa.Column('side', sa.String(length=8), nullable=False),
    sa.Column('quantity', sa.Integer(), nullable=False),
    sa.Column('order_type', sa.String(length=16), nullable=False),
    sa.Column('take_profit', justtrades.db.types.ExactDecimal(precision=24, scale=10), nullable=True),
    sa.Column('stop_loss', justtrades.db.types.ExactDecimal(precision=24, scale=10), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('created_at', justtrades.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_orders_account_id_accounts')),
    sa.ForeignKeyConstraint(['job_id'], ['execution_jobs.id'], name=op.f('fk_orders_job_id_execution_jobs')),
    sa.ForeignKeyConstraint(['trader_id'], ['traders.id'], name=op.f('fk_orders_trader_id_traders')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_orders')),
    sa.UniqueConstraint('client_order_id', name=op.f('uq_orders_client_order_id')),
    sa.UniqueConstraint('job_id', name=op.f('uq_orders_job_id'))
    )
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_orders_account_id'), ['account_id'], unique=False)

    op.create_table('fills',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('order_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('trader_id', sa.Integer(), nullable=True),
    sa.Column('symbol', sa.String(length=32), nullable=False),
    sa.Column('side', sa.String(length=8), nullable=False),
    sa.Column('quantity', sa.Integer(), nullable=False),
    sa.Column('price', justtrades.db.types.ExactDecimal(precision=24, scale=10), nullable=False),
    sa.Column('filled_at', justtrades.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_fills_account_id_accounts')),
    sa.ForeignKeyConstraint(['order_id'], ['orders.id'], name=op.f('fk_fills_order_id_orders')),
    sa.ForeignKeyConstraint(['trader_id'], ['traders.id'], name=op.f('fk_fills_trader_id_traders')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_fills'))
    )
    with op.batch_alter_table('fills', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_fills_filled_at'), ['filled_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_fills_order_id'), ['order_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_fills_trader_id'), ['trader_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('fills', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_fills_trader_id'))
        batch_op.drop_index(batch_op.f('ix_fills_order_id'))
        batch_op.drop_index(batch_op.f('ix_fills_filled_at'))

    op.drop_table('fills')
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_orders_account_id'))

    op.drop_table('orders')
    with op.batch_alter_table('paper_trades', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_paper_trades_closed_at'))
        batch_op.drop_index(batch_op.f('ix_paper_trades_account_id'))

    op.drop_table('paper_trades')
    op.drop_table('loss_breaches')
    with op.batch_alter_table('execution_jobs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_execution_jobs_trader_id'))
        batch_op.drop_index('ix_execution_jobs_status_next_attempt_at')

    op.drop_table('execution_jobs')
    with op.batch_alter_table('webhook_activity', schema=None) as batch_op:
        batch_op.drop_index('ix_webhook_activity_created_at')

    op.drop_table('webhook_activity')
    with op.batch_alter_table('traders', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_traders_recorder_id'))
        batch_op.drop_index(batch_op.f('ix_traders_account_id'))

    op.drop_table('traders')
    op.drop_table('signal_blocks')
    op.drop_table('positions')
    with op.batch_alter_table('webhook_duplicate_guard', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_webhook_duplicate_guard_expires_at'))

    op.drop_table('webhook_duplicate_guard')
    op.drop_table('users')
    op.drop_table('recorders')
    with op.batch_alter_table('raw_webhooks', schema=None) as batch_op:
        batch_op.drop_index('ix_raw_webhooks_received_at')

    op.drop_table('raw_webhooks')
    with op.batch_alter_table('execution_failures', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_execution_failures_created_at'))

    op.drop_table('execution_failures')
    op.drop_table('counters')
    op.drop_table('accounts')

"""keep daily PnL per trader

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05 10:00:00

The daily PnL readers (/metrics, dashboard stats, the max daily loss monitor) read each trader's position per
contract and realized PnL per CME session from these tables, kept with every fill by db.pnl_totals, instead of
replaying the session's fills on every call. The upgrade builds both tables by replaying the fills already
there, which takes about 10 s per million fills of Python work.
"""

from alembic import op
import sqlalchemy as sa
import justtrades.db.types


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('trader_positions',
    sa.Column('trader_id', sa.Integer(), nullable=False),
    sa.Column('symbol', sa.String(length=32), nullable=False),
    sa.Column('net', sa.Integer(), nullable=False),
    sa.Column('avg_price', justtrades.db.types.DecimalText(length=64), nullable=True),
    sa.Column('last_filled_at', justtrades.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('last_fill_id', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['trader_id'], ['traders.id'], name=op.f('fk_trader_positions_trader_id_traders')),
    sa.PrimaryKeyConstraint('trader_id', 'symbol', name=op.f('pk_trader_positions'))
    )
    op.create_table('trader_session_pnl',
    sa.Column('session_date', sa.Date(), nullable=False),
    sa.Column('trader_id', sa.Integer(), nullable=False),
    sa.Column('realized', justtrades.db.types.DecimalText(length=64), nullable=False),
    sa.Column('fills', sa.Integer(), nullable=False),
    sa.Column('unpriced_symbols', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['trader_id'], ['traders.id'], name=op.f('fk_trader_session_pnl_trader_id_traders')),
    sa.PrimaryKeyConstraint('session_date', 'trader_id', name=op.f('pk_trader_session_pnl'))
    )

    # The replay is the one the platform runs when a fill arrives out of order, so both build the same rows.
    from justtrades.db import pnl_totals

    pnl_totals.rebuild_all(op.get_bind())


def downgrade() -> None:
    op.drop_table('trader_session_pnl')
    op.drop_table('trader_positions')
    op.execute("DELETE FROM counters WHERE name = 'fill_changes'")

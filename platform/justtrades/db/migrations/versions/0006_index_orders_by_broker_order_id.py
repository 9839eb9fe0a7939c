"""index orders by broker order id

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05 00:10:00

The position monitor matches every Tradovate fill to its order by `broker_order_id` within the token group's
accounts. Without an index that lookup scanned all of an account's orders, which grow by one per signal.
"""

from alembic import op


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_orders_broker_order_id", "orders", ["broker_order_id"])


def downgrade() -> None:
    op.drop_index("ix_orders_broker_order_id", table_name="orders")

"""record tradovate fill ids

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04 23:45:00

The position monitor records Tradovate fills in the fills table. `broker_fill_id` stores Tradovate's fill id,
unique per account, so a fill that arrives twice (a duplicate event, the sync replay after a reconnect) gives
one row. Tradovate numbers fills per environment, and an account belongs to one environment, so the account
scopes the id. Paper fills leave it NULL, and NULLs never collide in a unique constraint.
"""

import sqlalchemy as sa
from alembic import op


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("fills") as batch:
        batch.add_column(sa.Column("broker_fill_id", sa.String(length=64), nullable=True))
        batch.create_unique_constraint("uq_fills_account_broker_fill", ["account_id", "broker_fill_id"])


def downgrade() -> None:
    with op.batch_alter_table("fills") as batch:
        batch.drop_constraint("uq_fills_account_broker_fill", type_="unique")
        batch.drop_column("broker_fill_id")

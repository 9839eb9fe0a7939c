"""count the fills in counters

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04 21:15:00

/status and /metrics read the number of fills from counters.fills_total instead of COUNT(*) over a table that
grows with every order; this sets the counter from the rows already there.
"""

from alembic import op


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("DELETE FROM counters WHERE name = 'fills_total'")
    op.execute("INSERT INTO counters (name, value) SELECT 'fills_total', COUNT(*) FROM fills")


def downgrade() -> None:
    op.execute("DELETE FROM counters WHERE name = 'fills_total'")

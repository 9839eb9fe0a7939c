"""stripe the counters

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05 02:00:00

Every webhook raised the same three counter rows, and on PostgreSQL each transaction held their row locks until
its commit: under load the webhook transactions queued behind each other on those locks. A counter is now the sum
of its stripes and each pooled connection writes its own, so concurrent transactions touch different rows. The
rows already there become stripe 0.
"""

import sqlalchemy as sa
from alembic import op


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # SQLite cannot change a primary key in place; batch mode copies the table into a new one.
    with op.batch_alter_table("counters", recreate="auto") as batch:
        batch.add_column(sa.Column("stripe", sa.SmallInteger(), nullable=False, server_default="0"))
        batch.drop_constraint("pk_counters", type_="primary")
        batch.create_primary_key("pk_counters", ["name", "stripe"])


def downgrade() -> None:
    # Fold the stripes back into one row per counter before the column goes.
    op.execute("CREATE TABLE counters_folded AS SELECT name, SUM(value) AS value FROM counters GROUP BY name")
    op.execute("DELETE FROM counters")
    with op.batch_alter_table("counters", recreate="auto") as batch:
        batch.drop_constraint("pk_counters", type_="primary")
        batch.drop_column("stripe")
        batch.create_primary_key("pk_counters", ["name"])
    op.execute("INSERT INTO counters (name, value) SELECT name, value FROM counters_folded")
    op.drop_table("counters_folded")

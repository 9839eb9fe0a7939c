"""keep token digests in raw webhooks

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05 08:30:00

The raw webhook log stored each delivery's webhook token, and the token in a webhook URL lets anyone send orders
for its recorder. A row now keeps the token's SHA-256 digest, which still matches a replayed delivery and names
the recorder, and the token's last four characters for operators (none for a token under 12 characters). The
upgrade rewrites every row in batches. A downgrade cannot bring the tokens back from their digests: it restores
the tokens of the recorders that still exist and leaves the other rows with an empty token.
"""

import hashlib

import sqlalchemy as sa
from alembic import op


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

BATCH_ROWS = 5000

_RAW = sa.table(
    "raw_webhooks",
    sa.column("id", sa.BigInteger),
    sa.column("webhook_token", sa.String),
    sa.column("token_sha256", sa.String),
    sa.column("token_tail", sa.String),
)
_RECORDERS = sa.table("recorders", sa.column("webhook_token", sa.String))


def _digest(token: str) -> str:
    # The same digest as justtrades.webhooks.redaction.token_digest, written out so this revision never changes.
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def _tail(token: str) -> str:
    return token[-4:] if len(token) >= 12 else ""


def upgrade() -> None:
    with op.batch_alter_table("raw_webhooks") as batch:
        batch.add_column(sa.Column("token_sha256", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("token_tail", sa.String(length=4), nullable=True))

    connection = op.get_bind()
    rewrite = (
        _RAW.update()
        .where(_RAW.c.id == sa.bindparam("row_id"))
        .values(token_sha256=sa.bindparam("row_digest"), token_tail=sa.bindparam("row_tail"), webhook_token="")
    )
    last_id = 0
    while True:
        # Batches in id order, so each one is a short statement and the loop ends with the last row.
        rows = connection.execute(
            sa.select(_RAW.c.id, _RAW.c.webhook_token).where(_RAW.c.id > last_id).order_by(_RAW.c.id).limit(BATCH_ROWS)
        ).all()
        if not rows:
            break
        connection.execute(rewrite, [
            {"row_id": row.id, "row_digest": _digest(row.webhook_token), "row_tail": _tail(row.webhook_token)}
            for row in rows
        ])
        last_id = rows[-1].id

    with op.batch_alter_table("raw_webhooks") as batch:
        batch.alter_column("token_sha256", existing_type=sa.String(length=64), nullable=False)
        batch.alter_column("token_tail", existing_type=sa.String(length=4), nullable=False)
        batch.drop_column("webhook_token")


def downgrade() -> None:
    with op.batch_alter_table("raw_webhooks") as batch:
        batch.add_column(sa.Column("webhook_token", sa.String(length=128), nullable=False, server_default=""))

    connection = op.get_bind()
    tokens = connection.scalars(sa.select(_RECORDERS.c.webhook_token)).all()
    if tokens:
        connection.execute(
            _RAW.update().where(_RAW.c.token_sha256 == sa.bindparam("row_digest"))
            .values(webhook_token=sa.bindparam("row_token")),
            [{"row_digest": _digest(token), "row_token": token} for token in tokens],
        )

    with op.batch_alter_table("raw_webhooks") as batch:
        batch.alter_column("webhook_token", existing_type=sa.String(length=128), server_default=None)
        batch.drop_column("token_tail")
        batch.drop_column("token_sha256")

"""Order rows of execution jobs, read and written with statements built once on the tables.

The executor reads a job's account and order row, and writes the order row of an entry, in the transaction that
claims the job (see `prepare`). So a job costs one transaction before the broker call and one after it, and the
order row is committed before the broker can receive the order. A broker whose book is in our own database (the
paper broker) places the order in that same transaction instead, and the job costs one transaction in all. Statements run on the session's connection,
which skips the ORM's handling of each statement but stays in the session's transaction.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.engine import Row
from sqlalchemy.orm import Session

from ..brokers.base import AccountRef, OrderResult
from ..db.models import Account, ExecutionJob, Order

ENTRY_SIDES = {"buy": "Buy", "sell": "Sell"}


@dataclasses.dataclass(frozen=True)
class OrderRow:
    """The columns of an order row that the executor decides on."""

    id: int
    client_order_id: str
    side: str
    quantity: int
    status: str


@dataclasses.dataclass(frozen=True)
class PreparedJob:
    """The rows the claim transaction read and wrote for a job.

    `order` is None for a close whose side and quantity depend on the broker's position. `earlier_attempt` is True
    when the order row was already there, so the broker may hold the order and must be asked before placing it.
    """

    account: AccountRef
    order: OrderRow | None
    earlier_attempt: bool


def account_ref(account) -> AccountRef:
    """Build the broker's view of an account from an Account entity or a row with the same column names."""
    return AccountRef(
        id=account.id,
        name=account.name,
        broker=account.broker,
        environment=account.environment,
        broker_account_id=account.broker_account_id,
        token_group=account.token_group,
        access_token=account.access_token,
    )


def prepare(session: Session, job: Row, configured_brokers) -> PreparedJob | None:
    """Read the job's account and order row, and write the order row of an entry that has none yet.

    Runs inside the claim transaction. Returns None when the account no longer exists. No row is written for an
    account whose broker is not configured, because that job fails before any order.
    """
    row = session.connection().execute(_ACCOUNT_AND_ORDER, {"account_id": job.account_id, "job_id": job.id}).first()
    if row is None:
        return None

    prepared = _without_new_order(job, row, configured_brokers)
    if prepared is not None:
        return prepared
    order = insert_order(session, job, ENTRY_SIDES[job.action], job.quantity)
    return PreparedJob(account_ref(row), order, earlier_attempt=False)


def prepare_batch(session: Session, jobs: Sequence[Row], configured_brokers) -> dict[int, PreparedJob | None]:
    """Do what `prepare` does for several jobs, with one read and one insert for all of them; map job id to result.

    An IntegrityError from the insert rolls the whole transaction back, claims included.
    """
    rows = session.connection().execute(_ACCOUNTS_AND_ORDERS_OF_JOBS, {"job_ids": [job.id for job in jobs]}).all()
    by_job = {row.job_id: row for row in rows}

    prepared: dict[int, PreparedJob | None] = {}
    new_orders = []
    for job in jobs:
        row = by_job.get(job.id)
        prepared[job.id] = None if row is None else _without_new_order(job, row, configured_brokers)
        if row is not None and prepared[job.id] is None:
            new_orders.append((job, account_ref(row)))

    if new_orders:
        values = [_order_values(job, ENTRY_SIDES[job.action], job.quantity) for job, _ in new_orders]
        order_ids = session.connection().execute(_INSERT_ORDERS, values).scalars().all()
        for (job, account), order_id, row in zip(new_orders, order_ids, values):
            order = OrderRow(order_id, row["client_order_id"], row["side"], row["quantity"], "pending")
            prepared[job.id] = PreparedJob(account, order, earlier_attempt=False)
    return prepared


def _without_new_order(job: Row, row: Row, configured_brokers) -> PreparedJob | None:
    """Return the prepared job when it needs no new order row (one exists, or it is a close); None when it does."""
    account = account_ref(row)
    if row.order_id is not None:
        order = OrderRow(row.order_id, row.client_order_id, row.side, row.quantity, row.order_status)
        return PreparedJob(account, order, earlier_attempt=True)

    if job.action not in ENTRY_SIDES or account.broker not in configured_brokers:
        return PreparedJob(account, None, earlier_attempt=False)
    return None


def insert_order(session: Session, job: Row, side: str, quantity: int) -> OrderRow:
    """Write the pending order row of the job; the unique job_id and client_order_id reject a second one."""
    order_id = session.connection().execute(_INSERT_ORDER, _order_values(job, side, quantity)).scalar_one()
    return OrderRow(order_id, job.idempotency_key, side, quantity, "pending")


def _order_values(job: Row, side: str, quantity: int) -> dict:
    return {
        "job_id": job.id,
        "account_id": job.account_id,
        "trader_id": job.trader_id,
        "client_order_id": job.idempotency_key,
        "symbol": job.symbol,
        "side": side,
        "quantity": quantity,
        "take_profit": job.take_profit,
        "stop_loss": job.stop_loss,
    }


def find_order(session: Session, job_id: int) -> OrderRow | None:
    row = session.connection().execute(_ORDER_OF_JOB, {"job_id": job_id}).first()
    if row is None:
        return None
    return OrderRow(row.id, row.client_order_id, row.side, row.quantity, row.status)


def mark_order(session: Session, order_id: int, result: OrderResult) -> None:
    """Store the broker's status and order id on the order row."""
    session.connection().execute(
        _MARK_ORDER,
        {"order_id": order_id, "order_status": result.status, "order_broker_order_id": result.broker_order_id},
    )


_ACCOUNTS = Account.__table__
_ORDERS = Order.__table__

# One statement for the account and the job's order row, if any: the outer join keeps the account row when the
# job has no order yet.
_ACCOUNT_AND_ORDER = (
    select(
        _ACCOUNTS.c.id,
        _ACCOUNTS.c.name,
        _ACCOUNTS.c.broker,
        _ACCOUNTS.c.environment,
        _ACCOUNTS.c.broker_account_id,
        _ACCOUNTS.c.token_group,
        _ACCOUNTS.c.access_token,
        _ORDERS.c.id.label("order_id"),
        _ORDERS.c.client_order_id,
        _ORDERS.c.side,
        _ORDERS.c.quantity,
        _ORDERS.c.status.label("order_status"),
    )
    .select_from(_ACCOUNTS.outerjoin(_ORDERS, _ORDERS.c.job_id == bindparam("job_id")))
    .where(_ACCOUNTS.c.id == bindparam("account_id"))
)
_JOBS = ExecutionJob.__table__
_ACCOUNTS_AND_ORDERS_OF_JOBS = (
    select(_JOBS.c.id.label("job_id"), *_ACCOUNT_AND_ORDER.selected_columns)
    .select_from(
        _JOBS.join(_ACCOUNTS, _ACCOUNTS.c.id == _JOBS.c.account_id).outerjoin(_ORDERS, _ORDERS.c.job_id == _JOBS.c.id)
    )
    .where(_JOBS.c.id.in_(bindparam("job_ids", expanding=True)))
)
_ORDER_OF_JOB = select(
    _ORDERS.c.id, _ORDERS.c.client_order_id, _ORDERS.c.side, _ORDERS.c.quantity, _ORDERS.c.status
).where(_ORDERS.c.job_id == bindparam("job_id"))
_INSERT_ORDER = insert(_ORDERS).returning(_ORDERS.c.id)
# Several rows in one statement; the ids come back in the order of the rows.
_INSERT_ORDERS = insert(_ORDERS).returning(_ORDERS.c.id, sort_by_parameter_order=True)
_MARK_ORDER = (
    update(_ORDERS)
    .where(_ORDERS.c.id == bindparam("order_id"))
    .values(status=bindparam("order_status"), broker_order_id=bindparam("order_broker_order_id"))
)

"""Database writes of the position monitor: Tradovate fills into `fills`, positions into `positions`.

Each write is one short transaction through a Session, so the flush listener of db.counters updates the fill
count and the traders' running daily PnL with the fill. A fill is unique per (account_id, broker_fill_id), so a
replay or a duplicate event finds its row and writes nothing new.
"""

from __future__ import annotations

import logging
import time

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..db.models import Fill, Order, Position
from .broker_events import FillEvent, PositionEvent

logger = logging.getLogger("position_monitor")

# Order statuses a fill may complete. Rejected and canceled orders keep their status, so a late fill of a
# canceled order shows in the fills table without hiding the cancel.
_OPEN_ORDER_STATUSES = ("pending", "placed", "unknown")

# Outcomes of record_fill.
RECORDED, DUPLICATE, ADOPTED, CORRECTED, INACTIVE, PENDING, UNATTRIBUTED = (
    "recorded", "duplicate", "adopted", "corrected", "inactive", "pending", "unattributed",
)
# Outcomes of record_position.
UPDATED, STALE = "updated", "stale"


def record_fill(session: Session, event: FillEvent, match_grace_seconds: float) -> str:
    """Write one Tradovate fill in the caller's transaction and return what happened (RECORDED, DUPLICATE...).

    The platform order with the fill's broker order id gives the trader and symbol. The socket can deliver a
    fill before the executor has stored the broker order id. So an unmatched fill returns PENDING until it is
    `match_grace_seconds` old, and only then is it recorded as manual, with no trader.
    """
    if event.broker_account_id is not None and event.scope.account_id(event.broker_account_id) is None:
        return UNATTRIBUTED  # another token group's account

    order = _find_order(session, event)
    account_id = order.account_id if order is not None else event.scope.account_id(event.broker_account_id)

    existing = _find_fill(session, account_id, event.fill_id) if account_id is not None else None
    if existing is not None:
        return _reconcile(session, existing, order, event)

    if order is None and time.monotonic() - event.received_at < match_grace_seconds:
        return PENDING
    if account_id is None:
        return UNATTRIBUTED
    if not event.active:
        return INACTIVE

    if not _insert_fill(session, account_id, order, event):
        return DUPLICATE
    if order is not None:
        _complete_order(session, order)
    return RECORDED


def record_position(session: Session, event: PositionEvent) -> str:
    """Write the broker's net position for one account and contract; an event older than the row is STALE."""
    account_id = event.scope.account_id(event.broker_account_id)
    if account_id is None:
        return UNATTRIBUTED

    position = session.scalars(
        select(Position).where(Position.account_id == account_id, Position.symbol == event.symbol).with_for_update()
    ).one_or_none()
    if position is not None and position.updated_at is not None and position.updated_at > event.updated_at:
        return STALE
    if position is None:
        position = Position(account_id=account_id, symbol=event.symbol)
        session.add(position)

    position.net_pos = event.net_pos
    position.avg_price = event.net_price
    position.updated_at = event.updated_at
    return UPDATED


def _find_order(session: Session, event: FillEvent) -> Order | None:
    if event.broker_order_id is None:
        return None
    known = event.scope.account_id(event.broker_account_id)
    account_ids = [known] if known is not None else event.scope.account_ids
    return session.scalars(
        select(Order)
        .where(Order.broker_order_id == event.broker_order_id, Order.account_id.in_(account_ids))
        .order_by(Order.id)
        .limit(1)
    ).first()


def _find_fill(session: Session, account_id: int, fill_id: str) -> Fill | None:
    return session.scalars(
        select(Fill).where(Fill.account_id == account_id, Fill.broker_fill_id == fill_id)
    ).one_or_none()


def _insert_fill(session: Session, account_id: int, order: Order | None, event: FillEvent) -> bool:
    """Add the fill row; return False when another writer inserted the same fill id first."""
    row = Fill(
        order_id=order.id if order is not None else None,
        account_id=account_id,
        trader_id=order.trader_id if order is not None else None,
        symbol=order.symbol if order is not None else event.contract_symbol,
        side=event.side,
        quantity=event.quantity,
        price=event.price,
        filled_at=event.filled_at,
        broker_fill_id=event.fill_id,
    )
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:
        # Another replica held the monitor lock a moment ago and wrote this fill: the unique key caught it.
        return False
    return True


def _reconcile(session: Session, row: Fill, order: Order | None, event: FillEvent) -> str:
    """Compare a fill seen again with its row: attach a late-matched order, or apply Tradovate's correction."""
    if not event.active:
        # NOTE: Tradovate's reference does not say what `active: false` means for a fill (a bust is likely). The
        # row stays, so a daily loss is never removed on a guess; an operator checks the warning.
        logger.warning(
            "%s Fill %s on account %s is inactive at Tradovate; its row %s is kept, check it by hand",
            event.scope.token_label, event.fill_id, row.account_id, row.id,
        )
        return INACTIVE

    outcome = DUPLICATE
    if row.trader_id is None and order is not None:
        # Recorded as manual before the executor stored the broker order id; the order row names the trader.
        row.order_id, row.trader_id, row.symbol = order.id, order.trader_id, order.symbol
        outcome = ADOPTED
    if (row.side, row.quantity, row.price) != (event.side, event.quantity, event.price):
        logger.warning(
            "%s Fill %s on account %s corrected by Tradovate: %s %s @ %s -> %s %s @ %s",
            event.scope.token_label, event.fill_id, row.account_id, row.side, row.quantity, row.price,
            event.side, event.quantity, event.price,
        )
        row.side, row.quantity, row.price = event.side, event.quantity, event.price
        outcome = CORRECTED
    if outcome != DUPLICATE and row.order_id is not None:
        session.flush()
        _complete_order(session, session.get(Order, row.order_id))
    return outcome


def _complete_order(session: Session, order: Order) -> None:
    """Mark the order filled once its recorded fills add up to its quantity."""
    if order.status not in _OPEN_ORDER_STATUSES:
        return
    filled = session.scalar(select(func.coalesce(func.sum(Fill.quantity), 0)).where(Fill.order_id == order.id))
    if filled >= order.quantity:
        order.status = "filled"

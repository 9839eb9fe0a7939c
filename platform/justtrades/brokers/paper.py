"""The paper broker: fills market orders at the signal price or the last cached price, and keeps positions and PnL."""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from ..db.models import Fill, Order, PaperTrade, Position, utcnow
from ..markets.products import get_product, point_value as product_point_value
from ..markets.symbols import contract_root
from .base import AccountRef, BrokerError, BrokerPosition, FailureReason, OrderRequest, OrderResult

logger = logging.getLogger(__name__)

PriceSource = Callable[[str], Decimal | None]


class PaperBroker:
    name = "paper"

    def __init__(self, session_factory: sessionmaker[Session], last_price: PriceSource | None = None):
        self._session_factory = session_factory
        self._last_price = last_price or (lambda root: None)

    def place_order(self, request: OrderRequest) -> OrderResult:
        price = request.price if request.price is not None else self._last_price(contract_root(request.symbol))
        if price is None:
            raise BrokerError(
                FailureReason.NO_PRICE,
                f"no signal price and no cached price for {request.symbol}; send a price in the alert "
                "or start the price feed",
                permanent=True,
            )

        with self._session_factory() as session, session.begin():
            order = session.scalars(
                select(Order).where(Order.client_order_id == request.client_order_id).with_for_update()
            ).one_or_none()
            if order is None:
                raise BrokerError(
                    FailureReason.INTERNAL_ERROR,
                    f"no order row for client id {request.client_order_id}; the executor writes it first",
                    permanent=True,
                )
            if order.status == "filled":
                return OrderResult(order.broker_order_id, "filled")

            self._fill(session, order, request, price)
            order.status = "filled"
            order.broker_order_id = f"paper-{order.id}"

        logger.info(
            "paper fill account=%s order=%s %s %d %s @ %s",
            request.account.id, order.id, request.side, request.quantity, request.symbol, price,
        )
        return OrderResult(order.broker_order_id, "filled", fill_price=price)

    def find_order(self, account: AccountRef, client_order_id: str) -> OrderResult | None:
        with self._session_factory() as session:
            order = session.scalars(select(Order).where(Order.client_order_id == client_order_id)).one_or_none()
        if order is None or order.status != "filled":
            return None
        return OrderResult(order.broker_order_id, "filled")

    def positions(self, account: AccountRef) -> list[BrokerPosition]:
        with self._session_factory() as session:
            rows = session.scalars(
                select(Position).where(Position.account_id == account.id, Position.net_pos != 0).order_by(Position.symbol)
            ).all()
        return [BrokerPosition(row.symbol, row.net_pos, row.avg_price) for row in rows]

    def working_orders(self, account: AccountRef) -> list[dict]:
        return []  # market orders fill at once; the paper broker keeps no resting orders

    def clear_caches(self) -> None:
        return None  # the paper broker reads the database every time

    def _fill(self, session: Session, order: Order, request: OrderRequest, price: Decimal) -> None:
        session.add(
            Fill(
                order_id=order.id,
                account_id=request.account.id,
                trader_id=request.trader_id,
                symbol=request.symbol,
                side=request.side,
                quantity=request.quantity,
                price=price,
            )
        )

        position = session.scalars(
            select(Position)
            .where(Position.account_id == request.account.id, Position.symbol == request.symbol)
            .with_for_update()
        ).one_or_none()
        if position is None:
            position = Position(account_id=request.account.id, symbol=request.symbol, net_pos=0, realized_pnl=Decimal(0))
            session.add(position)

        signed_quantity = request.quantity if request.side == "Buy" else -request.quantity
        _apply_fill(session, position, signed_quantity, price, request)


def _apply_fill(session: Session, position: Position, signed_quantity: int, price: Decimal, request: OrderRequest):
    """Update net position, average price, realized PnL and the paper trade for one fill."""
    point_value = product_point_value(get_product(contract_root(position.symbol)))
    old = position.net_pos
    new = old + signed_quantity

    # The part of the fill that reduces an open position realizes PnL against the average entry price.
    if old != 0 and (old > 0) != (signed_quantity > 0):
        closed = min(abs(old), abs(signed_quantity))
        direction = 1 if old > 0 else -1
        position.realized_pnl += (price - position.avg_price) * closed * direction * point_value

    if new == 0:
        position.avg_price = None
    elif old == 0 or (old > 0) != (new > 0):
        position.avg_price = price  # opened, or flipped through flat: the remainder entered at this price
    elif abs(new) > abs(old):
        position.avg_price = (position.avg_price * abs(old) + price * abs(signed_quantity)) / abs(new)

    position.net_pos = new
    position.updated_at = utcnow()
    _track_paper_trade(session, position, old, new, price, point_value, request)


def _track_paper_trade(session, position, old, new, price, point_value, request):
    open_trade = session.scalars(
        select(PaperTrade).where(
            PaperTrade.account_id == position.account_id,
            PaperTrade.symbol == position.symbol,
            PaperTrade.closed_at.is_(None),
        )
    ).first()

    if open_trade is not None and (new == 0 or (old > 0) != (new > 0)):
        direction = 1 if open_trade.side == "Buy" else -1
        open_trade.exit_price = price
        open_trade.closed_at = utcnow()
        open_trade.pnl = (price - open_trade.entry_price) * open_trade.quantity * direction * point_value
        open_trade = None

    if new != 0 and open_trade is None:
        session.add(
            PaperTrade(
                account_id=position.account_id,
                trader_id=request.trader_id,
                symbol=position.symbol,
                side="Buy" if new > 0 else "Sell",
                quantity=abs(new),
                entry_price=price,
            )
        )
    elif open_trade is not None:
        open_trade.quantity = abs(new)

"""The paper broker: fills market orders on the tick grid at the signal or cached price; keeps positions and PnL.

The book is tables of the platform's own database (`paper_book`). The executor places paper orders in the
transaction that claims their jobs (`place_orders_in`), all the orders of a claim together. `db.counters` writes
the fill rows together with the fill count and the traders' running PnL.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from decimal import Decimal
from typing import Callable

from sqlalchemy import Connection, String, bindparam, cast, literal, select, update
from sqlalchemy.orm import Session, sessionmaker

from ..db import counters
from ..db.models import Order, Position, utcnow
from ..markets.products import get_product, point_value as product_point_value
from ..markets.symbols import contract_root, snap_to_tick
from .base import AccountRef, BrokerError, BrokerPosition, FailureReason, OrderRequest, OrderResult
from .paper_book import PaperBook

logger = logging.getLogger(__name__)

PriceSource = Callable[[str], Decimal | None]


class PaperBroker:
    name = "paper"

    def __init__(self, session_factory: sessionmaker[Session], last_price: PriceSource | None = None):
        self._session_factory = session_factory
        self._last_price = last_price or (lambda root: None)

    def place_order(self, request: OrderRequest) -> OrderResult:
        with self._session_factory() as session, session.begin():
            [outcome] = self._place(session, [request])
        if isinstance(outcome, BrokerError):
            raise outcome

        logger.info("paper fill account=%s order=%s %s %d %s @ %s", request.account.id, outcome.broker_order_id,
                    request.side, request.quantity, request.symbol, outcome.fill_price)
        return outcome

    def place_orders_in(self, session: Session, requests: Sequence[OrderRequest]) -> list[OrderResult | BrokerError]:
        """Fill the orders in the caller's transaction, in their order; return each one's result or error.

        The executor calls this inside the transaction that claims the jobs, so the claims, the order rows, the
        fills and the jobs' ends commit together or not at all. An order that cannot fill (no price) gets its
        BrokerError in the list and writes nothing; the others fill. A database error is raised and leaves the
        transaction to the caller.
        """
        return self._place(session, requests)

    def _place(self, session: Session, requests: Sequence[OrderRequest]) -> list[OrderResult | BrokerError]:
        outcomes: list[OrderResult | BrokerError | None] = [None] * len(requests)
        prices = {}
        for index, request in enumerate(requests):
            try:
                prices[index] = self._fill_price(request)
            except BrokerError as error:
                outcomes[index] = error
        if not prices:
            return outcomes

        connection = session.connection()
        # Marking the orders filled first locks their rows, so a second attempt at one of them waits here and
        # then finds it filled.
        client_ids = [requests[index].client_order_id for index in prices]
        marked = {row.client_order_id: row for row in connection.execute(_MARK_FILLED, {"client_ids": client_ids})}
        # A client id that comes twice fills once: its second request finds the order filled, as a retry would.
        first = {}
        for index in prices:
            first.setdefault(requests[index].client_order_id, index)
        earlier = [index for index in prices
                   if requests[index].client_order_id not in marked or first[requests[index].client_order_id] != index]
        for index, outcome in zip(earlier, _filled_earlier(connection, [requests[i] for i in earlier])):
            outcomes[index] = outcome
            del prices[index]

        if prices:
            self._fill(session, [(requests[index], price) for index, price in prices.items()], marked)
        for index, price in prices.items():
            order = marked[requests[index].client_order_id]
            outcomes[index] = OrderResult(order.broker_order_id, "filled", fill_price=price)
        return outcomes

    def _fill_price(self, request: OrderRequest) -> Decimal:
        price = request.price if request.price is not None else self._last_price(contract_root(request.symbol))
        if price is None:
            raise BrokerError(
                FailureReason.NO_PRICE,
                f"no signal price and no cached price for {request.symbol}; send a price in the alert "
                "or start the price feed",
                permanent=True,
            )
        # An exchange trades on the tick grid, so a signal price off it (21500.13 for NQ) fills at the nearest tick.
        return snap_to_tick(price, get_product(contract_root(request.symbol)))

    @staticmethod
    def _fill(session: Session, fills: list[tuple[OrderRequest, Decimal]], orders: dict) -> None:
        """Apply the fills to the book in their order, then write the book's rows and the fill rows."""
        connection = session.connection()
        now = utcnow()
        book = PaperBook.load(connection, [(request.account.id, request.symbol) for request, _ in fills])
        for request, price in fills:
            signed_quantity = request.quantity if request.side == "Buy" else -request.quantity
            point_value = product_point_value(get_product(contract_root(request.symbol)))
            book.fill((request.account.id, request.symbol), request.trader_id, signed_quantity, price, point_value,
                      now)
        book.write(connection, now)

        # The fills go in last because they lock their traders' PnL rows until commit (db/pnl_totals.py). Written
        # last, they keep that lock only for the end of the transaction; in a claim the lock waits for its end
        # (counters.fills_totalled_at_end).
        counters.insert_fills(session, [
            {"order_id": orders[request.client_order_id].id, "account_id": request.account.id,
             "trader_id": request.trader_id, "symbol": request.symbol, "side": request.side,
             "quantity": request.quantity, "price": price, "filled_at": now}
            for request, price in fills
        ])

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


def _filled_earlier(connection: Connection, requests: list[OrderRequest]) -> list[OrderResult | BrokerError]:
    """Return the results of orders that an earlier attempt filled, read from their order rows."""
    if not requests:
        return []
    rows = connection.execute(_ORDERS_OF_CLIENT_IDS, {"client_ids": [request.client_order_id for request in requests]})
    broker_ids = {row.client_order_id: row.broker_order_id for row in rows}
    return [
        OrderResult(broker_ids[request.client_order_id], "filled") if request.client_order_id in broker_ids
        else BrokerError(FailureReason.INTERNAL_ERROR, f"no order row for client id {request.client_order_id}; "
                         "the executor writes it first", permanent=True)
        for request in requests
    ]


_ORDERS = Order.__table__

# A paper order's broker id is "paper-" followed by the id of its order row. The update touches only orders not
# yet filled.
_MARK_FILLED = (
    update(_ORDERS)
    .where(_ORDERS.c.client_order_id.in_(bindparam("client_ids", expanding=True)), _ORDERS.c.status != "filled")
    .values(status="filled", broker_order_id=literal("paper-") + cast(_ORDERS.c.id, String))
    .returning(_ORDERS.c.id, _ORDERS.c.client_order_id, _ORDERS.c.broker_order_id)
)
_ORDERS_OF_CLIENT_IDS = (
    select(_ORDERS.c.client_order_id, _ORDERS.c.broker_order_id)
    .where(_ORDERS.c.client_order_id.in_(bindparam("client_ids", expanding=True)))
)

"""The interface every broker adapter implements, and the errors it raises."""

from __future__ import annotations

import dataclasses
import enum
from decimal import Decimal
from typing import Protocol


class FailureReason(str, enum.Enum):
    """Classes of execution failure; the first five are the reference table of common broker errors."""

    TOKEN_EXPIRED = "token_expired"
    RATE_LIMIT_EXCEEDED = "rate_limit_exceeded"
    INVALID_PRICE_INCREMENT = "invalid_price_increment"
    ACCOUNT_NOT_FOUND = "account_not_found"
    INSUFFICIENT_FUNDS = "insufficient_funds"
    ORDER_REJECTED = "order_rejected"
    TIMEOUT = "timeout"
    CONNECTION_ERROR = "connection_error"
    NO_PRICE = "no_price"
    INTERNAL_ERROR = "internal_error"

    @property
    def message(self) -> str:
        return _REASON_MESSAGES[self]


_REASON_MESSAGES = {
    FailureReason.TOKEN_EXPIRED: "Token expired - needs re-authentication",
    FailureReason.RATE_LIMIT_EXCEEDED: "Rate limit exceeded",
    FailureReason.INVALID_PRICE_INCREMENT: "Invalid price increment",
    FailureReason.ACCOUNT_NOT_FOUND: "Account not found",
    FailureReason.INSUFFICIENT_FUNDS: "Insufficient funds",
    FailureReason.ORDER_REJECTED: "Order rejected by the broker",
    FailureReason.TIMEOUT: "Broker request timed out",
    FailureReason.CONNECTION_ERROR: "Broker connection failed",
    FailureReason.NO_PRICE: "No price known for the symbol",
    FailureReason.INTERNAL_ERROR: "Internal error while executing",
}


class BrokerError(Exception):
    """A broker call failed; the fields tell the executor whether and when it may retry.

    `order_may_exist` is set when the request may have reached the broker (a timeout after sending):
    the executor must look the order up by its client id before placing it again.
    """

    def __init__(
        self,
        reason: FailureReason,
        detail: str,
        *,
        permanent: bool,
        retry_after: float | None = None,
        order_may_exist: bool = False,
    ):
        super().__init__(f"{reason.message}: {detail}" if detail else reason.message)
        self.reason = reason
        self.detail = detail
        self.permanent = permanent
        self.retry_after = retry_after
        self.order_may_exist = order_may_exist


@dataclasses.dataclass(frozen=True)
class AccountRef:
    """The account fields an adapter needs, built from the database row by the executor."""

    id: int
    name: str
    broker: str
    environment: str = "demo"
    broker_account_id: int | None = None
    token_group: str | None = None
    access_token: str | None = dataclasses.field(default=None, repr=False)


@dataclasses.dataclass(frozen=True)
class OrderRequest:
    account: AccountRef
    symbol: str  # a Tradovate contract name such as NQZ6
    side: str  # "Buy" or "Sell"
    quantity: int
    client_order_id: str  # the job's idempotency key: the broker-side handle for "was it placed?"
    price: Decimal | None = None  # the signal price; the paper broker fills at it
    take_profit: Decimal | None = None
    stop_loss: Decimal | None = None
    trader_id: int | None = None


@dataclasses.dataclass(frozen=True)
class OrderResult:
    broker_order_id: str
    status: str  # "placed", "filled", "rejected" or "canceled" (the last two only from find_order)
    fill_price: Decimal | None = None


@dataclasses.dataclass(frozen=True)
class BrokerPosition:
    symbol: str
    net_pos: int
    net_price: Decimal | None = None


class Broker(Protocol):
    """A broker adapter. Implementations must be safe to call from several worker threads.

    An adapter whose book lives in the platform's own database may also offer
    `place_orders_in(session, requests) -> list[OrderResult | BrokerError]`, which places the orders in the
    caller's open transaction and writes the order rows' status and broker order id there. The executor then
    claims, places and ends the jobs of a claim in one transaction (see execution.executor).
    """

    name: str

    def place_order(self, request: OrderRequest) -> OrderResult:
        """Place the order, or raise BrokerError."""

    def find_order(self, account: AccountRef, client_order_id: str) -> OrderResult | None:
        """Return the order placed earlier under this client id, or None if the broker has no such order."""

    def positions(self, account: AccountRef) -> list[BrokerPosition]:
        """Return the account's open positions, read live from the broker."""

    def working_orders(self, account: AccountRef) -> list[dict]:
        """Return the account's working orders, read live from the broker."""

    def clear_caches(self) -> None:
        """Drop cached prices, positions and orders."""

"""The Tradovate REST adapter: market orders with optional brackets, order lookup, positions, working orders.

Every call goes to the base URL of the account's environment (demo or live) with the token of its token
group (see tradovate_auth). Failures become BrokerError with a FailureReason, so the executor decides
retries from `permanent`, `retry_after` and `order_may_exist` alone.

Thread safety: one instance serves every worker thread. HTTP goes through one requests.Session per thread
(TradovateHttp); the caches and the rate-limit state are guarded by locks.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import threading
from collections import OrderedDict
from decimal import Decimal
from typing import Any, Callable, Mapping

from .base import AccountRef, BrokerError, BrokerPosition, FailureReason, OrderRequest, OrderResult
from .tradovate_auth import TokenManager, load_credentials_from_environ, token_group_key
from .tradovate_http import (
    DEMO_URL,
    LIVE_URL,
    PenaltyTicket,
    TradovateHttp,
    body_excerpt,
    decode_json,
    parse_retry_after,
)

logger = logging.getLogger(__name__)

# Tradovate's Order.ordStatus values for an order that can still execute.
WORKING_STATUSES = frozenset({"Working", "PendingNew", "PendingReplace", "PendingCancel", "Suspended"})
_RESULT_STATUS = {"Filled": "filled", "Rejected": "rejected", "Canceled": "canceled", "Expired": "canceled"}

# After a timeout the order may still be on its way through Tradovate. The executor looks it up by its
# client id only after this delay, so that a late order is found instead of being placed twice.
# NOTE: an estimate (twice the request timeout, at least 10 s), because Tradovate documents no upper bound.
MIN_ORDER_SETTLE_SECONDS = 10.0

# Penalty tickets waiting to be resent with the order they were issued for, by client order id.
_MAX_PENDING_TICKETS = 1000

_PRICE_INCREMENT = re.compile(r"increment|\btick(s|\s+size)?\b|multiple of", re.IGNORECASE)
_ACCOUNT_MISSING = re.compile(r"account.*(not found|unknown|invalid|does not exist|doesn't exist)", re.IGNORECASE)
_NO_FUNDS = re.compile(r"insufficient|margin|buying power|not enough (funds|cash)|\bfunds\b", re.IGNORECASE)
_EXPIRED_TOKEN = re.compile(r"expired.*(token|session|access)|(token|session|access).*expired", re.IGNORECASE)


def default_base_urls(demo_url: str = DEMO_URL, live_url: str = LIVE_URL) -> dict[str, str]:
    return {"demo": demo_url.rstrip("/"), "live": live_url.rstrip("/")}


def build_tradovate_broker(settings, environ: Mapping[str, str] | None = None) -> "TradovateBroker":
    """Build the adapter and its token manager from Settings and JT_TRADOVATE_CREDENTIALS_FILE."""
    return TradovateBroker.from_settings(settings, environ)


def classify_order_failure(failure_reason: str | None, failure_text: str | None) -> FailureReason:
    """Map Tradovate's failureReason/failureText (or errorText) onto the project's failure classes."""
    text = f"{failure_reason or ''} {failure_text or ''}"

    if _PRICE_INCREMENT.search(text):
        return FailureReason.INVALID_PRICE_INCREMENT
    if _ACCOUNT_MISSING.search(text):
        return FailureReason.ACCOUNT_NOT_FOUND
    if _NO_FUNDS.search(text):
        return FailureReason.INSUFFICIENT_FUNDS
    return FailureReason.ORDER_REJECTED


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _to_decimal(value: Any) -> Decimal | None:
    if value is None:
        return None
    return value if isinstance(value, Decimal) else Decimal(str(value))


def _to_float(value: Any) -> float | None:
    return None if value is None else float(value)


class TradovateBroker:
    """Broker adapter for Tradovate's REST API (see the module docstring for thread safety)."""

    name = "tradovate"

    def __init__(
        self,
        token_manager: TokenManager,
        *,
        base_urls: Mapping[str, str] | None = None,
        timeout_seconds: float = 5.0,
        http: TradovateHttp | None = None,
        clock: Callable[[], dt.datetime] = _utc_now,
    ):
        self._tokens = token_manager
        self._base_urls = {env: url.rstrip("/") for env, url in (base_urls or default_base_urls()).items()}
        self._http = http or TradovateHttp(timeout_seconds)
        self._clock = clock
        self._settle_seconds = max(2 * self._http.timeout_seconds, MIN_ORDER_SETTLE_SECONDS)

        self._cache_lock = threading.Lock()
        self._contract_names: dict[tuple[str, int], str] = {}
        self._account_specs: dict[tuple[str, str, int], str] = {}

        self._throttle_lock = threading.Lock()
        self._blocked_until: dict[tuple[str, str], dt.datetime] = {}
        self._pending_tickets: OrderedDict[str, str] = OrderedDict()

    @classmethod
    def from_settings(cls, settings, environ: Mapping[str, str] | None = None) -> "TradovateBroker":
        """Build the adapter and its token manager from Settings and JT_TRADOVATE_CREDENTIALS_FILE."""
        base_urls = default_base_urls(settings.tradovate_url, settings.tradovate_live_url)
        http = TradovateHttp(settings.tradovate_timeout_seconds)
        tokens = TokenManager(load_credentials_from_environ(environ), base_urls, http=http)
        return cls(tokens, base_urls=base_urls, http=http)

    @property
    def token_manager(self) -> TokenManager:
        return self._tokens

    # -- Broker protocol ----------------------------------------------------------------------------------

    def place_order(self, request: OrderRequest) -> OrderResult:
        """Place a market order, with a take-profit and/or stop-loss bracket when the request has them."""
        side = self._validate(request)
        account = request.account
        account_spec = self._account_spec(account)

        body = self._order_body(request, side, account_spec)
        with_brackets = "bracket1" in body
        path = "/order/placeOSO" if with_brackets else "/order/placeorder"

        result = self._call(
            account,
            "POST",
            path,
            json_body=body,
            places_order=True,
            penalty_key=request.client_order_id,
        )
        order_id = self._order_id_from(result, request)

        logger.info(
            "placed Tradovate order %s for account %s (client order %s, %s %s %s%s)",
            order_id,
            account.id,
            request.client_order_id,
            side,
            request.quantity,
            request.symbol,
            " with brackets" if with_brackets else "",
        )
        return OrderResult(broker_order_id=str(order_id), status="placed")

    def find_order(self, account: AccountRef, client_order_id: str) -> OrderResult | None:
        """Look the order up by the clOrdId it was placed with.

        Tradovate keeps clOrdId on the Command that created the order, not on the Order itself, so the
        lookup reads /command/list, then the order's status from /order/item.
        """
        self._require_broker_account(account)
        commands = self._call(account, "GET", "/command/list")
        order_id = next(
            (
                command.get("orderId")
                for command in commands or []
                if isinstance(command, dict)
                and command.get("clOrdId") == client_order_id
                and command.get("commandType", "New") == "New"
            ),
            None,
        )
        if order_id is None:
            return None

        order = self._call(account, "GET", "/order/item", params={"id": order_id}, missing_ok=True)
        if not order:
            # The command exists, so Tradovate accepted the order even if the order entity is not readable yet.
            return OrderResult(broker_order_id=str(order_id), status="placed")

        if order.get("accountId") != account.broker_account_id:
            logger.warning(
                "client order %s belongs to Tradovate account %s, not to account %s (%s); ignoring it",
                client_order_id,
                order.get("accountId"),
                account.id,
                account.broker_account_id,
            )
            return None

        status = _RESULT_STATUS.get(order.get("ordStatus"), "placed")
        fill_price = self._average_fill_price(account, order_id) if status == "filled" else None
        return OrderResult(broker_order_id=str(order_id), status=status, fill_price=fill_price)

    def positions(self, account: AccountRef) -> list[BrokerPosition]:
        """Return the account's open positions (netPos not 0) from /position/list."""
        self._require_broker_account(account)
        rows = self._call(account, "GET", "/position/list") or []
        open_rows = [
            row
            for row in rows
            if isinstance(row, dict) and row.get("accountId") == account.broker_account_id and row.get("netPos")
        ]

        names = self._contract_names_for(account, {row["contractId"] for row in open_rows})
        return [
            BrokerPosition(
                symbol=names[row["contractId"]],
                net_pos=int(row["netPos"]),
                net_price=_to_decimal(row.get("netPrice")),
            )
            for row in open_rows
        ]

    def working_orders(self, account: AccountRef) -> list[dict]:
        """Return the account's orders that can still execute, with quantity and prices from their versions."""
        self._require_broker_account(account)
        orders = [
            order
            for order in self._call(account, "GET", "/order/list") or []
            if isinstance(order, dict)
            and order.get("accountId") == account.broker_account_id
            and order.get("ordStatus") in WORKING_STATUSES
        ]
        if not orders:
            return []

        versions = self._latest_versions(account)
        names = self._contract_names_for(account, {order["contractId"] for order in orders if "contractId" in order})
        return [self._working_order_row(order, versions.get(order.get("id"), {}), names) for order in orders]

    def clear_caches(self) -> None:
        """Drop the cached contract names and account names; the next calls read them again."""
        with self._cache_lock:
            self._contract_names.clear()
            self._account_specs.clear()

    def close(self) -> None:
        self._http.close()

    # -- requests -----------------------------------------------------------------------------------------

    def _call(
        self,
        account: AccountRef,
        method: str,
        path: str,
        *,
        json_body: dict | None = None,
        params: dict | None = None,
        places_order: bool = False,
        penalty_key: str | None = None,
        missing_ok: bool = False,
    ) -> Any:
        """Send one request for the account, renewing the token once after a 401, and return the JSON body."""
        environment, base_url = self._environment_of(account)
        group = self._token_group(account)
        request_line = f"{method} {path}"
        self._raise_if_blocked(group, environment)

        token = self._tokens.access_token(group, environment, account.access_token)
        if penalty_key is not None and json_body is not None:
            json_body = self._with_pending_ticket(json_body, penalty_key)
        response = self._send(method, base_url + path, token, json_body, params, places_order)

        # Tradovate checks the token before acting on a request, so after a 401 a single retry cannot
        # place an order twice.
        if self._is_token_rejection(response):
            token = self._tokens.renew_rejected(group, environment, token)
            response = self._send(method, base_url + path, token, json_body, params, places_order)
            if self._is_token_rejection(response):
                raise BrokerError(
                    FailureReason.TOKEN_EXPIRED,
                    f"{request_line} for account {account.id} was refused with a renewed token of group {group!r}; "
                    "re-authenticate the account",
                    permanent=True,
                )

        self._raise_if_throttled(response, group, environment, request_line, penalty_key)
        if missing_ok and response.status_code == 404:
            return None
        self._raise_for_status(response, request_line, places_order)
        return decode_json(response, what=request_line, order_may_exist=places_order)

    def _send(self, method, url, token, json_body, params, places_order):
        try:
            return self._http.send(
                method,
                url,
                token=token,
                json_body=json_body,
                params=params,
                places_order=places_order,
            )
        except BrokerError as error:
            if error.order_may_exist and error.retry_after is None:
                # Give a late order time to show up before the executor looks it up by client id.
                error.retry_after = self._settle_seconds
            raise

    @staticmethod
    def _is_token_rejection(response) -> bool:
        if response.status_code == 401:
            return True
        if response.status_code != 200 or "errorText" not in (response.text or ""):
            return False
        try:
            body = response.json()
        except ValueError:
            return False
        return isinstance(body, dict) and bool(_EXPIRED_TOKEN.search(str(body.get("errorText") or "")))

    def _raise_if_blocked(self, group: str, environment: str) -> None:
        """Fail fast while Tradovate's 429 for this token group lasts, instead of extending the penalty."""
        now = self._clock()
        with self._throttle_lock:
            until = self._blocked_until.get((group, environment))
        if until is None or until <= now:
            return

        raise BrokerError(
            FailureReason.RATE_LIMIT_EXCEEDED,
            f"Tradovate rate-limited token group {group!r} ({environment}) until {until.isoformat()}; not sent",
            permanent=False,
            retry_after=(until - now).total_seconds(),
        )

    def _raise_if_throttled(self, response, group, environment, request_line, penalty_key) -> None:
        now = self._clock()
        if response.status_code in (423, 429):
            # 423 announces an imminent lockout; both mean the request was not executed.
            wait = parse_retry_after(response.headers.get("Retry-After"), now)
            with self._throttle_lock:
                self._blocked_until[(group, environment)] = now + dt.timedelta(seconds=wait)
            logger.warning(
                "%s for token group %s returned %s; pausing %.0f s", request_line, group, response.status_code, wait
            )
            raise BrokerError(
                FailureReason.RATE_LIMIT_EXCEEDED,
                f"{request_line} returned HTTP {response.status_code}; retry in {wait:.0f} s",
                permanent=False,
                retry_after=wait,
            )

        if response.status_code != 200 or "p-ticket" not in (response.text or ""):
            return
        try:
            penalty = PenaltyTicket.from_body(response.json())
        except ValueError:
            return
        if penalty is None:
            return

        self._raise_for_penalty(penalty, request_line, penalty_key)

    def _raise_for_penalty(self, penalty: PenaltyTicket, request_line: str, penalty_key: str | None) -> None:
        if penalty.captcha:
            # An automated client cannot solve the CAPTCHA, and an order an hour late is worse than none.
            raise BrokerError(
                FailureReason.RATE_LIMIT_EXCEEDED,
                f"{request_line} got a penalty that requires a CAPTCHA; Tradovate clears it after about an hour",
                permanent=True,
            )

        if penalty_key is not None:
            with self._throttle_lock:
                self._pending_tickets[penalty_key] = penalty.ticket
                while len(self._pending_tickets) > _MAX_PENDING_TICKETS:
                    self._pending_tickets.popitem(last=False)
        logger.warning("%s got a penalty ticket; retry in %.0f s", request_line, penalty.wait_seconds)
        raise BrokerError(
            FailureReason.RATE_LIMIT_EXCEEDED,
            f"{request_line} got a penalty ticket; retry in {penalty.wait_seconds:.0f} s",
            permanent=False,
            retry_after=penalty.wait_seconds,
        )

    def _with_pending_ticket(self, body: dict, penalty_key: str) -> dict:
        """Add the p-ticket issued to this order's earlier attempt: Tradovate expects the same body plus the ticket."""
        with self._throttle_lock:
            ticket = self._pending_tickets.pop(penalty_key, None)
        return {**body, "p-ticket": ticket} if ticket else body

    @staticmethod
    def _raise_for_status(response, request_line: str, places_order: bool) -> None:
        status = response.status_code
        if status == 200:
            return

        if status >= 500:
            # The server may have failed after acting on the request.
            raise BrokerError(
                FailureReason.CONNECTION_ERROR,
                f"{request_line} returned HTTP {status}: {body_excerpt(response)!r}",
                permanent=False,
                order_may_exist=places_order,
            )
        raise BrokerError(
            FailureReason.ORDER_REJECTED,
            f"{request_line} returned HTTP {status}: {body_excerpt(response)!r}",
            permanent=True,
        )

    # -- orders -------------------------------------------------------------------------------------------

    @staticmethod
    def _validate(request: OrderRequest) -> str:
        side = str(request.side).capitalize()
        if side not in ("Buy", "Sell"):
            raise BrokerError(
                FailureReason.ORDER_REJECTED,
                f"side {request.side!r} of client order {request.client_order_id} is invalid; use Buy or Sell",
                permanent=True,
            )
        if not isinstance(request.quantity, int) or request.quantity < 1:
            raise BrokerError(
                FailureReason.ORDER_REJECTED,
                f"quantity {request.quantity!r} of client order {request.client_order_id} is invalid; "
                "use a whole number of contracts of at least 1",
                permanent=True,
            )
        if not request.symbol or not request.client_order_id:
            raise BrokerError(
                FailureReason.ORDER_REJECTED,
                f"symbol {request.symbol!r} or client order id {request.client_order_id!r} is missing",
                permanent=True,
            )
        return side

    @staticmethod
    def _order_body(request: OrderRequest, side: str, account_spec: str) -> dict:
        body = {
            "accountSpec": account_spec,
            "accountId": request.account.broker_account_id,
            "clOrdId": request.client_order_id,
            "action": side,
            "symbol": request.symbol,
            "orderQty": request.quantity,
            "orderType": "Market",
            "isAutomated": True,
        }

        exit_leg = {"action": "Sell" if side == "Buy" else "Buy", "orderQty": request.quantity}
        brackets = []
        if request.take_profit is not None:
            brackets.append({**exit_leg, "orderType": "Limit", "price": float(request.take_profit)})
        if request.stop_loss is not None:
            brackets.append({**exit_leg, "orderType": "Stop", "stopPrice": float(request.stop_loss)})
        # With two brackets Tradovate links them as an OCO: the fill of one cancels the other.
        for number, bracket in enumerate(brackets, start=1):
            body[f"bracket{number}"] = bracket
        return body

    @staticmethod
    def _order_id_from(result: Any, request: OrderRequest) -> int:
        result = result if isinstance(result, dict) else {}
        failure_reason = result.get("failureReason")
        failure_text = result.get("failureText") or result.get("errorText")

        failed = bool(failure_text) or failure_reason not in (None, "", "Success")
        if result.get("orderId") is not None and not failed:
            return result["orderId"]

        if failed:
            reason = classify_order_failure(failure_reason, failure_text)
            raise BrokerError(
                reason,
                f"Tradovate rejected client order {request.client_order_id}: "
                f"{failure_reason or 'no failureReason'}: {failure_text or 'no failureText'}",
                permanent=True,
            )

        # HTTP 200 without orderId or failure: the order may or may not exist.
        raise BrokerError(
            FailureReason.INTERNAL_ERROR,
            f"Tradovate returned neither orderId nor failureReason for client order "
            f"{request.client_order_id}: {result!r}",
            permanent=False,
            order_may_exist=True,
        )

    def _average_fill_price(self, account: AccountRef, order_id: int) -> Decimal | None:
        fills = self._call(account, "GET", "/fill/deps", params={"masterid": order_id}) or []
        parts = [
            (int(fill["qty"]), _to_decimal(fill["price"]))
            for fill in fills
            if isinstance(fill, dict) and fill.get("qty") and fill.get("price") is not None
        ]
        quantity = sum(qty for qty, _ in parts)
        if quantity == 0:
            return None
        return sum(qty * price for qty, price in parts) / quantity

    def _latest_versions(self, account: AccountRef) -> dict[Any, dict]:
        latest: dict[Any, dict] = {}
        for version in self._call(account, "GET", "/orderVersion/list") or []:
            if not isinstance(version, dict):
                continue
            order_id = version.get("orderId")
            if order_id not in latest or (version.get("id") or 0) > (latest[order_id].get("id") or 0):
                latest[order_id] = version
        return latest

    @staticmethod
    def _working_order_row(order: dict, version: dict, names: dict[int, str]) -> dict:
        return {
            "order_id": str(order.get("id")),
            "symbol": names.get(order.get("contractId")),
            "action": order.get("action"),
            "status": order.get("ordStatus"),
            "order_type": version.get("orderType"),
            "quantity": version.get("orderQty"),
            "price": _to_float(version.get("price")),
            "stop_price": _to_float(version.get("stopPrice")),
            "created_at": order.get("timestamp"),
        }

    # -- accounts and contracts ---------------------------------------------------------------------------

    def _environment_of(self, account: AccountRef) -> tuple[str, str]:
        environment = account.environment or "demo"
        base_url = self._base_urls.get(environment)
        if base_url is None:
            known = ", ".join(sorted(self._base_urls))
            raise BrokerError(
                FailureReason.ACCOUNT_NOT_FOUND,
                f"account {account.id} has environment {environment!r}; set it to one of {known}",
                permanent=True,
            )
        return environment, base_url

    @staticmethod
    def _token_group(account: AccountRef) -> str:
        return token_group_key(account.token_group, account.access_token, account.id)

    @staticmethod
    def _require_broker_account(account: AccountRef) -> None:
        if account.broker_account_id is None:
            raise BrokerError(
                FailureReason.ACCOUNT_NOT_FOUND,
                f"account {account.id} ({account.name}) has no broker_account_id; "
                "set it to the account id Tradovate lists in /account/list",
                permanent=True,
            )

    def _account_spec(self, account: AccountRef) -> str:
        """Return the Tradovate account name (accountSpec) for the account's id, read once from /account/list."""
        self._require_broker_account(account)
        environment, _ = self._environment_of(account)
        key = (environment, self._token_group(account), account.broker_account_id)
        with self._cache_lock:
            cached = self._account_specs.get(key)
        if cached is not None:
            return cached

        rows = self._call(account, "GET", "/account/list") or []
        names = {row.get("id"): row.get("name") for row in rows if isinstance(row, dict)}
        with self._cache_lock:
            for account_id, name in names.items():
                if account_id is not None and name:
                    self._account_specs[(environment, key[1], account_id)] = str(name)
            cached = self._account_specs.get(key)

        if cached is None:
            raise BrokerError(
                FailureReason.ACCOUNT_NOT_FOUND,
                f"Tradovate account id {account.broker_account_id} of account {account.id} is not among the "
                f"{len(names)} account(s) of token group {key[1]!r}; check broker_account_id",
                permanent=True,
            )
        return cached

    def _contract_names_for(self, account: AccountRef, contract_ids: set) -> dict[int, str]:
        """Return contract names by id, asking /contract/item only for ids not cached yet."""
        environment, _ = self._environment_of(account)
        names: dict[int, str] = {}
        missing = []
        with self._cache_lock:
            for contract_id in contract_ids:
                name = self._contract_names.get((environment, contract_id))
                if name is None:
                    missing.append(contract_id)
                else:
                    names[contract_id] = name

        for contract_id in sorted(missing):
            contract = self._call(account, "GET", "/contract/item", params={"id": contract_id}, missing_ok=True)
            name = contract.get("name") if isinstance(contract, dict) else None
            if not name:
                logger.warning("Tradovate has no name for contract %s (account %s)", contract_id, account.id)
                names[contract_id] = f"contract {contract_id}"
                continue
            names[contract_id] = str(name)
            with self._cache_lock:
                self._contract_names[(environment, contract_id)] = str(name)
        return names

"""A local Tradovate-style REST server on 127.0.0.1 for tests.

It speaks the shapes of Tradovate's /v1 REST API that the platform uses: access tokens (with expiry,
renewal and penalty tickets), accounts, contracts, market orders with OSO brackets, commands (which carry
clOrdId), order versions, fills and positions. Market orders fill at once at the configured price.

Faults are queued per endpoint, and each one decides the response to one request: a 429 with Retry-After,
a penalty ticket, HTTP 200 with failureReason/failureText or errorText, a 401, a delay before the order is
recorded, a slow response after it is recorded, a 5xx, or a dropped connection. The server does not
de-duplicate clOrdId: every accepted placement creates a new order, so the client alone must avoid
duplicates, and the order log shows any it makes.

Use it in-process (`with TradovatePeer() as peer: peer.url`) or as a subprocess:

    python -m tests.peers.tradovate_rest --port 0 --latency-ms 50 --order-log orders.jsonl

which prints its base URL (http://127.0.0.1:PORT/v1) on the first line of stdout. A subprocess is steered
through /_peer/faults, /_peer/orders, /_peer/expire-tokens and /_peer/requests, which Tradovate does not have.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import datetime as dt
import json
import secrets
import signal
import socket
import sys
import threading
import time
from decimal import Decimal, InvalidOperation
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

API_PREFIX = "/v1"

DEFAULT_USERS = {"jt-demo": "demo-password"}
DEFAULT_ACCOUNTS = ({"id": 26029294, "name": "DEMO26029294", "user": "jt-demo"},)
# name: (contract id, tick size, market price)
DEFAULT_CONTRACTS = {
    "NQZ6": (3001, "0.25", "21500.25"),
    "ESZ6": (3002, "0.25", "6120.50"),
    "MNQZ6": (3003, "0.25", "21500.25"),
    "CLZ6": (3004, "0.01", "72.13"),
    "GCZ6": (3005, "0.1", "2945.3"),
}

FAULT_KINDS = (
    "rate_limit",
    "penalty",
    "order_failure",
    "error_text",
    "unauthorized",
    "delay",
    "slow_response",
    "server_error",
    "drop_connection",
)


@dataclasses.dataclass
class Fault:
    """One injected misbehaviour: it decides the response to one request to its endpoint, then it is used up."""

    kind: str
    retry_after: float | None = None  # rate_limit: Retry-After header in seconds (None: no header)
    p_time: float = 1.0  # penalty: seconds to wait before resending with the p-ticket
    captcha: bool = False  # penalty: p-captcha, which a program cannot solve
    failure_reason: str = "UnknownReason"  # order_failure
    failure_text: str = ""  # order_failure
    error_text: str = ""  # error_text
    seconds: float = 0.0  # delay (before recording) and slow_response (after recording)
    status: int = 503  # server_error
    after_record: bool = False  # server_error and drop_connection: act on the request first

    def __post_init__(self):
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"fault kind {self.kind!r} is unknown; use one of {', '.join(FAULT_KINDS)}")

    @classmethod
    def rate_limit(cls, retry_after: float | None = 2) -> "Fault":
        return cls("rate_limit", retry_after=retry_after)

    @classmethod
    def penalty(cls, p_time: float = 1.0, captcha: bool = False) -> "Fault":
        return cls("penalty", p_time=p_time, captcha=captcha)

    @classmethod
    def order_failure(cls, failure_reason: str, failure_text: str) -> "Fault":
        return cls("order_failure", failure_reason=failure_reason, failure_text=failure_text)

    @classmethod
    def error(cls, error_text: str) -> "Fault":
        return cls("error_text", error_text=error_text)

    @classmethod
    def unauthorized(cls) -> "Fault":
        return cls("unauthorized")

    @classmethod
    def delay(cls, seconds: float) -> "Fault":
        return cls("delay", seconds=seconds)

    @classmethod
    def slow_response(cls, seconds: float) -> "Fault":
        return cls("slow_response", seconds=seconds)

    @classmethod
    def server_error(cls, status: int = 503, after_record: bool = False) -> "Fault":
        return cls("server_error", status=status, after_record=after_record)

    @classmethod
    def drop_connection(cls, after_record: bool = True) -> "Fault":
        return cls("drop_connection", after_record=after_record)


@dataclasses.dataclass
class PeerResponse:
    status: int = 200
    body: Any = None
    headers: dict = dataclasses.field(default_factory=dict)
    drop: bool = False  # close the connection without sending a response
    sleep_after: float = 0.0  # wait this long before sending the response


class _PeerError(Exception):
    def __init__(self, response: PeerResponse):
        super().__init__(response.status)
        self.response = response


def _iso(moment: dt.datetime) -> str:
    moment = moment.astimezone(dt.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _json_default(value):
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")


def _failure(reason: str, text: str) -> _PeerError:
    return _PeerError(PeerResponse(200, {"failureReason": reason, "failureText": text}))


def _decimal(value: Any, field: str) -> Decimal:
    try:
        result = Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise _failure("InvalidPrice", f"{field} {value!r} is not a number") from None
    if not result.is_finite():
        raise _failure("InvalidPrice", f"{field} {value!r} is not a number")
    return result


class TradovatePeer:
    """The server and its state; every public method is safe to call from the test thread while it runs."""

    def __init__(
        self,
        *,
        latency_ms: float = 0,
        order_log: str | Path | None = None,
        users: dict[str, str] | None = None,
        accounts: tuple[dict, ...] | list[dict] | None = None,
        contracts: dict[str, tuple[int, str, str]] | None = None,
        token_lifetime_seconds: float = 80 * 60,
        clock: Callable[[], float] = time.time,
    ):
        self.latency_seconds = latency_ms / 1000
        self.order_log_path = Path(order_log) if order_log else None
        self.users = dict(users or DEFAULT_USERS)
        self.user_ids = {name: 100 + index for index, name in enumerate(sorted(self.users))}
        self.accounts = [dict(account) for account in (accounts or DEFAULT_ACCOUNTS)]
        self.contracts = {
            name: {"id": cid, "tick": Decimal(tick), "price": Decimal(price)}
            for name, (cid, tick, price) in (contracts or DEFAULT_CONTRACTS).items()
        }
        self.token_lifetime_seconds = token_lifetime_seconds
        # Epoch seconds for token expiry, penalties and timestamps; tests pass a settable clock.
        self._clock = clock

        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._ids = iter(range(500_000, 10**9))
        self._tokens: dict[str, dict] = {}
        self._faults: dict[str, collections.deque[Fault]] = collections.defaultdict(collections.deque)
        self._penalties: dict[str, dict] = {}  # path -> {"ticket", "not_before", "fault"}
        self.request_counts: collections.Counter[str] = collections.Counter()
        self.token_requests: collections.Counter[str] = collections.Counter()
        self.order_log: list[dict] = []
        self.orders: dict[int, dict] = {}
        self.order_versions: dict[int, dict] = {}
        self.commands: dict[int, dict] = {}
        self.fills: dict[int, dict] = {}
        self.positions: dict[tuple[int, int], dict] = {}

        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ----------------------------------------------------------------------------------------

    def start(self, port: int = 0) -> str:
        """Listen on 127.0.0.1 (port 0: the OS picks a free port) and return the base URL."""
        handler = type("TradovatePeerHandler", (_Handler,), {"peer": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self._server.daemon_threads = True
        # A short poll interval keeps stop() quick; serve_forever checks for shutdown at each poll.
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="tradovate-peer", daemon=True
        )
        self._thread.start()
        return self.url

    def stop(self) -> None:
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> "TradovatePeer":
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def _now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self._clock(), dt.timezone.utc)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{API_PREFIX}"

    # -- control from tests -----------------------------------------------------------------------------

    def inject(self, path: str, fault: Fault, times: int = 1) -> None:
        """Queue `fault` for the next `times` requests to `path` (such as "/order/placeorder")."""
        with self._lock:
            for _ in range(times):
                self._faults[path.lower()].append(fault)

    def expire_tokens(self) -> None:
        """Let every token issued so far expire now; renewing them is refused too, as at Tradovate."""
        with self._lock:
            for token in self._tokens.values():
                token["expires_at"] = self._clock() - 1

    def issue_token(self, user: str) -> str:
        """Return a fresh access token for `user`, as an OAuth login would store on an account row."""
        return self._new_token(user)["accessToken"]

    def set_price(self, symbol: str, price: str | Decimal) -> None:
        with self._lock:
            self.contracts[symbol]["price"] = Decimal(str(price))

    def orders_with_client_id(self, client_order_id: str) -> list[dict]:
        with self._lock:
            return [entry for entry in self.order_log if entry["clOrdId"] == client_order_id]

    def snapshot_orders(self) -> list[dict]:
        with self._lock:
            return [dict(entry) for entry in self.order_log]

    # -- request handling ---------------------------------------------------------------------------------

    def handle(self, method: str, raw_path: str, headers, body: bytes) -> PeerResponse:
        parts = urlsplit(raw_path)
        query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
        if parts.path.startswith("/_peer/"):
            return self._control(method, parts.path, body)
        if not parts.path.startswith(API_PREFIX + "/"):
            return PeerResponse(404, {"errorText": f"unknown path {parts.path}"})

        path = parts.path[len(API_PREFIX):].lower()
        with self._lock:
            self.request_counts[path] += 1
        if self.latency_seconds:
            self._stop.wait(self.latency_seconds)

        try:
            payload = self._parse_body(method, body)
            return self._handle_api(method, path, query, headers, payload)
        except _PeerError as error:
            return error.response

    def _handle_api(self, method, path, query, headers, payload) -> PeerResponse:
        route = _ROUTES.get((method, path))
        if route is None:
            return PeerResponse(404, {"errorText": f"{method} {path} is not an endpoint of this server"})

        penalty = self._penalty_response(path, payload)
        if penalty is not None:
            return penalty

        fault = self._next_fault(path)
        early = self._response_before_handling(fault, path, payload)
        if early is not None:
            return early

        user = None
        if path != "/auth/accesstokenrequest":
            user = self._authorised_user(headers)
            if user is None:
                return PeerResponse(401, "Access is denied")

        response = PeerResponse(200, route(self, user, query, payload))
        return self._response_after_handling(fault, response)

    @staticmethod
    def _parse_body(method: str, body: bytes) -> Any:
        if method != "POST":
            return None
        if not body:
            return {}
        try:
            return json.loads(body)
        except ValueError:
            raise _PeerError(PeerResponse(400, {"errorText": "the request body is not JSON"})) from None

    def _next_fault(self, path: str) -> Fault | None:
        with self._lock:
            queue = self._faults.get(path)
            return queue.popleft() if queue else None

    def _response_before_handling(self, fault: Fault | None, path: str, payload) -> PeerResponse | None:
        if fault is None:
            return None
        if fault.kind == "rate_limit":
            headers = {} if fault.retry_after is None else {"Retry-After": str(int(fault.retry_after))}
            return PeerResponse(429, "", headers)
        if fault.kind == "penalty":
            return self._issue_penalty(path, fault)
        if fault.kind == "unauthorized":
            return PeerResponse(401, "Access is denied")
        if fault.kind == "order_failure":
            return PeerResponse(200, {"failureReason": fault.failure_reason, "failureText": fault.failure_text})
        if fault.kind == "error_text":
            return PeerResponse(200, {"errorText": fault.error_text})
        if fault.kind == "delay":
            self._stop.wait(fault.seconds)
        if fault.kind == "server_error" and not fault.after_record:
            return PeerResponse(fault.status, {"errorText": "injected server error"})
        if fault.kind == "drop_connection" and not fault.after_record:
            return PeerResponse(drop=True)
        return None

    @staticmethod
    def _response_after_handling(fault: Fault | None, response: PeerResponse) -> PeerResponse:
        if fault is None:
            return response
        if fault.kind == "slow_response":
            response.sleep_after = fault.seconds
        if fault.kind == "server_error" and fault.after_record:
            return PeerResponse(fault.status, {"errorText": "injected server error"})
        if fault.kind == "drop_connection" and fault.after_record:
            return PeerResponse(drop=True)
        return response

    # -- penalty tickets ----------------------------------------------------------------------------------

    def _issue_penalty(self, path: str, fault: Fault) -> PeerResponse:
        ticket = secrets.token_hex(8)
        with self._lock:
            self._penalties[path] = {"ticket": ticket, "not_before": self._clock() + fault.p_time, "fault": fault}
        return PeerResponse(200, {"p-ticket": ticket, "p-time": fault.p_time, "p-captcha": fault.captcha})

    def _penalty_response(self, path: str, payload) -> PeerResponse | None:
        """Return a penalty again until the request is resent with the ticket after p-time."""
        with self._lock:
            penalty = self._penalties.get(path)
            if penalty is None:
                return None

            sent_ticket = payload.get("p-ticket") if isinstance(payload, dict) else None
            remaining = penalty["not_before"] - self._clock()
            if sent_ticket == penalty["ticket"] and remaining <= 0:
                del self._penalties[path]
                return None

        if penalty["fault"].captcha or remaining > 0:
            wait = max(remaining, 0.0)
            body = {"p-ticket": penalty["ticket"], "p-time": round(wait, 3), "p-captcha": penalty["fault"].captcha}
            return PeerResponse(200, body)
        return self._issue_penalty(path, penalty["fault"])

    # -- tokens -------------------------------------------------------------------------------------------

    def _authorised_user(self, headers) -> str | None:
        authorization = headers.get("Authorization") or ""
        if not authorization.startswith("Bearer "):
            return None
        with self._lock:
            token = self._tokens.get(authorization[len("Bearer "):])
            if token is None or token["expires_at"] <= self._clock():
                return None
            return token["user"]

    def _new_token(self, user: str) -> dict:
        token = secrets.token_urlsafe(24)
        expires_at = self._clock() + self.token_lifetime_seconds
        with self._lock:
            self._tokens[token] = {"user": user, "expires_at": expires_at}
        return {
            "accessToken": token,
            "mdAccessToken": secrets.token_urlsafe(24),
            "expirationTime": _iso(dt.datetime.fromtimestamp(expires_at, dt.timezone.utc)),
            "userStatus": "Active",
            "userId": self.user_ids[user],
            "name": user,
            "hasLive": False,
        }

    def _access_token_request(self, _user, _query, payload) -> dict:
        payload = payload if isinstance(payload, dict) else {}
        missing = [field for field in ("name", "password", "appId", "cid", "sec") if payload.get(field) in (None, "")]
        if missing:
            return {"errorText": f"Missing field(s): {', '.join(missing)}"}

        name = payload["name"]
        with self._lock:
            self.token_requests[name] += 1
        if self.users.get(name) != payload["password"]:
            return {"errorText": "Incorrect username or password. Passwords are case-sensitive."}
        return self._new_token(name)

    def _renew_access_token(self, user, _query, _payload) -> dict:
        return self._new_token(user)

    # -- accounts and contracts ---------------------------------------------------------------------------

    def _accounts_of(self, user: str) -> list[dict]:
        return [account for account in self.accounts if account["user"] == user]

    def _account_list(self, user, _query, _payload) -> list[dict]:
        return [
            {
                "id": account["id"],
                "name": account["name"],
                "userId": self.user_ids[user],
                "accountType": "Customer",
                "active": True,
                "archived": False,
                "legalStatus": "Individual",
                "marginAccountType": "Speculator",
            }
            for account in self._accounts_of(user)
        ]

    def _contract_entity(self, name: str) -> dict:
        contract = self.contracts[name]
        return {"id": contract["id"], "name": name, "contractMaturityId": contract["id"] + 10_000}

    def _contract_by_id(self, contract_id: int) -> str | None:
        return next((name for name, c in self.contracts.items() if c["id"] == contract_id), None)

    def _contract_item(self, _user, query, _payload):
        name = self._contract_by_id(_int(query.get("id")))
        if name is None:
            raise _PeerError(PeerResponse(404, {"errorText": f"Contract {query.get('id')} not found"}))
        return self._contract_entity(name)

    def _contract_find(self, _user, query, _payload):
        name = query.get("name")
        if name not in self.contracts:
            raise _PeerError(PeerResponse(404, {"errorText": f"Contract {name} not found"}))
        return self._contract_entity(name)

    # -- orders -------------------------------------------------------------------------------------------

    def _place_order(self, user, _query, payload) -> dict:
        entry, account, contract_name = self._validate_order(user, payload)
        brackets = [
            self._validate_bracket(payload[key], contract_name, entry)
            for key in ("bracket1", "bracket2")
            if payload.get(key)
        ]

        with self._lock:
            order_id = self._record_order(account, contract_name, entry, payload.get("clOrdId"))
            bracket_ids = [self._record_bracket(account, contract_name, leg, order_id) for leg in brackets]
            self._log_order(payload, account, order_id, bracket_ids)

        result = {"orderId": order_id}
        for number, bracket_id in enumerate(bracket_ids, start=1):
            result[f"oso{number}Id"] = bracket_id
        return result

    def _validate_order(self, user: str, payload) -> tuple[dict, dict, str]:
        if not isinstance(payload, dict):
            raise _failure("UnknownReason", "The request body must be a JSON object")

        account = next((a for a in self._accounts_of(user) if a["id"] == payload.get("accountId")), None)
        if account is None:
            raise _failure("UnknownReason", f"Account {payload.get('accountId')} not found")
        if payload.get("accountSpec") not in (None, account["name"]):
            spec = payload.get("accountSpec")
            raise _failure("UnknownReason", f"Account spec {spec} does not match account {account['id']}")

        symbol = payload.get("symbol")
        if symbol not in self.contracts:
            raise _failure("InvalidContract", f"Unknown symbol {symbol}")
        if payload.get("action") not in ("Buy", "Sell"):
            raise _failure("UnknownReason", f"Invalid action {payload.get('action')}")
        quantity = payload.get("orderQty")
        if not isinstance(quantity, int) or isinstance(quantity, bool) or quantity < 1:
            raise _failure("UnknownReason", f"Invalid orderQty {quantity}")

        order_type = payload.get("orderType")
        if order_type not in ("Market", "Limit", "Stop"):
            raise _failure("Unsupported", f"Unsupported orderType {order_type}")
        entry = {"action": payload["action"], "orderQty": quantity, "orderType": order_type}
        self._validate_prices(entry, payload, symbol)
        return entry, account, symbol

    def _validate_bracket(self, leg, symbol: str, entry: dict) -> dict:
        if not isinstance(leg, dict) or leg.get("action") not in ("Buy", "Sell"):
            raise _failure("UnknownReason", "A bracket needs an action of Buy or Sell")
        if leg.get("orderType") not in ("Limit", "Stop"):
            raise _failure("Unsupported", f"Unsupported bracket orderType {leg.get('orderType')}")
        quantity = leg.get("orderQty") or entry["orderQty"]
        result = {"action": leg["action"], "orderQty": quantity, "orderType": leg["orderType"]}
        self._validate_prices(result, leg, symbol)
        return result

    def _validate_prices(self, target: dict, source: dict, symbol: str) -> None:
        tick = self.contracts[symbol]["tick"]
        needed = {"Limit": "price", "Stop": "stopPrice"}.get(target["orderType"])
        if needed and source.get(needed) is None:
            raise _failure("InvalidPrice", f"{target['orderType']} order needs {needed}")

        for field in ("price", "stopPrice"):
            if source.get(field) is None:
                continue
            value = _decimal(source[field], field)
            if value % tick != 0:
                raise _failure("InvalidPrice", f"Price {value} is not a multiple of the tick size {tick} for {symbol}")
            target[field] = value

    def _record_order(self, account: dict, symbol: str, entry: dict, client_order_id: str | None) -> int:
        """Create the command, order, version and, for a market order, the fill and position change."""
        now = self._now()
        contract = self.contracts[symbol]
        order_id = next(self._ids)
        self.orders[order_id] = {
            "id": order_id,
            "accountId": account["id"],
            "contractId": contract["id"],
            "timestamp": _iso(now),
            "action": entry["action"],
            "ordStatus": "Working",
            "admin": False,
        }
        self._record_version(order_id, entry)
        command_id = next(self._ids)
        self.commands[command_id] = {
            "id": command_id,
            "orderId": order_id,
            "timestamp": _iso(now),
            "clOrdId": client_order_id,
            "commandType": "New",
            "commandStatus": "ExecutionStopped" if entry["orderType"] == "Market" else "RiskPassed",
            "isAutomated": True,
        }

        if entry["orderType"] == "Market":
            self._fill(order_id, account, symbol, entry["action"], entry["orderQty"], contract["price"], now)
        return order_id

    def _record_bracket(self, account: dict, symbol: str, leg: dict, parent_id: int) -> int:
        order_id = next(self._ids)
        self.orders[order_id] = {
            "id": order_id,
            "accountId": account["id"],
            "contractId": self.contracts[symbol]["id"],
            "timestamp": _iso(self._now()),
            "action": leg["action"],
            "ordStatus": "Working",
            "parentId": parent_id,
            "admin": False,
        }
        self._record_version(order_id, leg)
        return order_id

    def _record_version(self, order_id: int, leg: dict) -> None:
        version_id = next(self._ids)
        self.order_versions[version_id] = {
            "id": version_id,
            "orderId": order_id,
            "orderQty": leg["orderQty"],
            "orderType": leg["orderType"],
            "price": leg.get("price"),
            "stopPrice": leg.get("stopPrice"),
            "timeInForce": "Day",
        }

    def _fill(self, order_id, account, symbol, action, quantity, price, now) -> None:
        contract_id = self.contracts[symbol]["id"]
        fill_id = next(self._ids)
        trade_date = {"year": now.year, "month": now.month, "day": now.day}
        self.fills[fill_id] = {
            "id": fill_id,
            "orderId": order_id,
            "contractId": contract_id,
            "timestamp": _iso(now),
            "tradeDate": trade_date,
            "action": action,
            "qty": quantity,
            "price": price,
            "active": True,
        }
        self.orders[order_id]["ordStatus"] = "Filled"

        key = (account["id"], contract_id)
        position = self.positions.get(key) or {
            "id": next(self._ids),
            "accountId": account["id"],
            "contractId": contract_id,
            "netPos": 0,
            "netPrice": None,
            "bought": 0,
            "boughtValue": Decimal(0),
            "sold": 0,
            "soldValue": Decimal(0),
            "prevPos": 0,
        }
        signed = quantity if action == "Buy" else -quantity
        position["netPrice"] = _net_price(position["netPos"], position["netPrice"], signed, price)
        position["netPos"] += signed
        side = "bought" if action == "Buy" else "sold"
        position[side] += quantity
        position[side + "Value"] += price * quantity
        position["timestamp"] = _iso(now)
        position["tradeDate"] = trade_date
        self.positions[key] = position

    def _log_order(self, payload: dict, account: dict, order_id: int, bracket_ids: list[int]) -> None:
        entry = {
            "clOrdId": payload.get("clOrdId"),
            "orderId": order_id,
            "accountId": account["id"],
            "accountSpec": payload.get("accountSpec"),
            "symbol": payload.get("symbol"),
            "action": payload.get("action"),
            "orderQty": payload.get("orderQty"),
            "orderType": payload.get("orderType"),
            "isAutomated": payload.get("isAutomated"),
            "brackets": [payload[key] for key in ("bracket1", "bracket2") if payload.get(key)],
            "bracketOrderIds": bracket_ids,
            "pTicket": "p-ticket" in payload,
            "at": _iso(self._now()),
        }
        self.order_log.append(entry)
        if self.order_log_path is not None:
            with self.order_log_path.open("a", encoding="utf-8") as log:
                log.write(json.dumps(entry, default=_json_default) + "\n")

    # -- lists --------------------------------------------------------------------------------------------

    def _user_account_ids(self, user: str) -> set[int]:
        return {account["id"] for account in self._accounts_of(user)}

    def _order_list(self, user, _query, _payload) -> list[dict]:
        accounts = self._user_account_ids(user)
        with self._lock:
            return [dict(order) for order in self.orders.values() if order["accountId"] in accounts]

    def _order_item(self, user, query, _payload) -> dict:
        with self._lock:
            order = self.orders.get(_int(query.get("id")))
            if order is None or order["accountId"] not in self._user_account_ids(user):
                raise _PeerError(PeerResponse(404, {"errorText": f"Order {query.get('id')} not found"}))
            return dict(order)

    def _visible_order_ids(self, user: str) -> set[int]:
        accounts = self._user_account_ids(user)
        return {order_id for order_id, order in self.orders.items() if order["accountId"] in accounts}

    def _order_version_list(self, user, _query, _payload) -> list[dict]:
        with self._lock:
            visible = self._visible_order_ids(user)
            return [dict(v) for v in self.order_versions.values() if v["orderId"] in visible]

    def _order_version_deps(self, user, query, _payload) -> list[dict]:
        master = _int(query.get("masterid"))
        return [v for v in self._order_version_list(user, None, None) if v["orderId"] == master]

    def _command_list(self, user, _query, _payload) -> list[dict]:
        with self._lock:
            visible = self._visible_order_ids(user)
            return [dict(c) for c in self.commands.values() if c["orderId"] in visible]

    def _fill_list(self, user, _query, _payload) -> list[dict]:
        with self._lock:
            visible = self._visible_order_ids(user)
            return [dict(f) for f in self.fills.values() if f["orderId"] in visible]

    def _fill_deps(self, user, query, _payload) -> list[dict]:
        master = _int(query.get("masterid"))
        return [f for f in self._fill_list(user, None, None) if f["orderId"] == master]

    def _position_list(self, user, _query, _payload) -> list[dict]:
        accounts = self._user_account_ids(user)
        with self._lock:
            return [dict(p) for p in self.positions.values() if p["accountId"] in accounts]

    # -- control endpoints for a subprocess ---------------------------------------------------------------

    def _control(self, method: str, path: str, body: bytes) -> PeerResponse:
        if method == "GET" and path == "/_peer/orders":
            return PeerResponse(200, self.snapshot_orders())
        if method == "GET" and path == "/_peer/requests":
            with self._lock:
                counts = {"requests": dict(self.request_counts), "token_requests": dict(self.token_requests)}
            return PeerResponse(200, counts)
        if method == "POST" and path == "/_peer/expire-tokens":
            self.expire_tokens()
            return PeerResponse(200, {"ok": True})
        if method == "POST" and path == "/_peer/faults":
            return self._control_fault(body)
        return PeerResponse(404, {"errorText": f"{method} {path} is not a control endpoint"})

    def _control_fault(self, body: bytes) -> PeerResponse:
        try:
            spec = json.loads(body or b"{}")
            path = spec.pop("path")
            times = int(spec.pop("times", 1))
            fault = Fault(**spec)
        except (ValueError, TypeError, KeyError) as error:
            fields = ", ".join(field.name for field in dataclasses.fields(Fault))
            message = f"invalid fault ({error}); send path, times and fields among {fields}"
            return PeerResponse(400, {"errorText": message})
        self.inject(path, fault, times)
        return PeerResponse(200, {"ok": True, "path": path, "kind": fault.kind, "times": times})


def _int(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _net_price(net_pos: int, net_price: Decimal | None, signed_quantity: int, price: Decimal) -> Decimal | None:
    """Average entry price after a fill: grows on additions, stays on reductions, resets on a flip."""
    new_pos = net_pos + signed_quantity
    if new_pos == 0:
        return None
    if net_pos == 0 or (net_pos > 0) != (new_pos > 0):
        return price
    if abs(new_pos) > abs(net_pos):
        return (net_price * abs(net_pos) + price * abs(signed_quantity)) / abs(new_pos)
    return net_price


_ROUTES = {
    ("POST", "/auth/accesstokenrequest"): TradovatePeer._access_token_request,
    ("GET", "/auth/renewaccesstoken"): TradovatePeer._renew_access_token,
    ("GET", "/account/list"): TradovatePeer._account_list,
    ("GET", "/contract/item"): TradovatePeer._contract_item,
    ("GET", "/contract/find"): TradovatePeer._contract_find,
    ("POST", "/order/placeorder"): TradovatePeer._place_order,
    ("POST", "/order/placeoso"): TradovatePeer._place_order,
    ("GET", "/order/list"): TradovatePeer._order_list,
    ("GET", "/order/item"): TradovatePeer._order_item,
    ("GET", "/orderversion/list"): TradovatePeer._order_version_list,
    ("GET", "/orderversion/deps"): TradovatePeer._order_version_deps,
    ("GET", "/command/list"): TradovatePeer._command_list,
    ("GET", "/fill/list"): TradovatePeer._fill_list,
    ("GET", "/fill/deps"): TradovatePeer._fill_deps,
    ("GET", "/position/list"): TradovatePeer._position_list,
}


class _Handler(BaseHTTPRequestHandler):
    """HTTP/1.1 with keep-alive, as Tradovate's API, so clients reuse connections."""

    protocol_version = "HTTP/1.1"
    timeout = 30  # an idle keep-alive connection frees its thread after this many seconds
    # The headers go out in one write and the body in a second. With Nagle's algorithm on, the body waits for
    # the client's delayed ACK of the headers: a response took 44 ms instead of 1.7 ms on loopback here.
    disable_nagle_algorithm = True
    peer: TradovatePeer

    def do_GET(self):
        self._serve("GET")

    def do_POST(self):
        self._serve("POST")

    def _serve(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        response = self.peer.handle(method, self.path, self.headers, body)

        if response.drop:
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if response.sleep_after:
            self.peer._stop.wait(response.sleep_after)

        if isinstance(response.body, (dict, list)):
            payload = json.dumps(response.body, default=_json_default).encode()
            content_type = "application/json"
        else:
            payload = str(response.body or "").encode()
            content_type = "text/plain; charset=utf-8"

        try:
            self.send_response(response.status, HTTPStatus(response.status).phrase)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            for name, value in response.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            # The client gave up (a timeout test), so nobody reads this response.
            self.close_connection = True

    def log_message(self, format, *args):  # noqa: A002 - the signature is http.server's
        pass


def _login(value: str) -> tuple[str, str]:
    name, separator, password = value.partition(":")
    if not separator or not name or not password:
        raise argparse.ArgumentTypeError(f"--user {value!r} is invalid; write it as NAME:PASSWORD")
    return name, password


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run a local Tradovate-style REST server on 127.0.0.1.")
    parser.add_argument("--port", type=int, default=0, help="TCP port; 0 lets the OS pick a free one (default)")
    parser.add_argument("--latency-ms", type=float, default=0, help="delay added to each API request, in milliseconds")
    parser.add_argument("--order-log", help="append every placed order as one JSON line to this file")
    parser.add_argument(
        "--user", action="append", default=[], type=_login, metavar="NAME:PASSWORD", help="a login; repeatable"
    )
    parser.add_argument("--max-seconds", type=float, default=3600, help="exit after this many seconds (default 3600)")
    args = parser.parse_args(argv)

    users = dict(args.user) if args.user else None
    peer = TradovatePeer(latency_ms=args.latency_ms, order_log=args.order_log, users=users)
    peer.start(args.port)
    print(peer.url, flush=True)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait(args.max_seconds)
    peer.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

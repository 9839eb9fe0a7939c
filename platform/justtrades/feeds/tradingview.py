"""TradingView price feed: a quote socket in a registered thread, with liveness, backoff and a polling fallback.

Three threads share one `TradingViewFeed`:
- `tradingview-feed` connects, subscribes the configured roots, echoes heartbeats and merges `qsd` updates. A
  socket that sends nothing (heartbeats included) for `liveness_deadline_seconds` is closed and reconnected with
  exponential backoff and jitter; the subscription is sent again on every connection.
- `tradingview-poller` fetches quotes over HTTP while the socket is down, so prices keep coming where possible.
- `tradingview-session` renews the JWT with the session cookies before it expires.

`snapshot()` feeds /api/tradingview/status, /api/market-data/status and the metrics; `price_snapshot()` gives
the cached prices to /status and the paper broker.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import threading
import time
from decimal import Decimal, InvalidOperation
from typing import NamedTuple

import requests
import websocket

from ..daemons import ThreadContext, redact_error
from . import tradingview_protocol as protocol
from .settings import TradingViewSettings
from .tradingview_session import SessionRefreshError, TradingViewSession

logger = logging.getLogger(__name__)


class FeedStalled(Exception):
    """The socket sent nothing within the liveness deadline."""


class ReconnectRequested(Exception):
    """An operator asked for a new connection (POST /api/tradingview/refresh)."""


class Quote(NamedTuple):
    last: Decimal
    updated: dt.datetime


class PriceSnapshot(dict):
    """Cached prices, {root: Quote(last, updated)}, with attributes telling how far they can be trusted."""

    def __init__(self, prices: dict[str, Quote], *, connected: bool, delayed: bool, source: str):
        super().__init__(prices)
        self.connected = connected
        self.delayed = delayed
        self.source = source  # "websocket", "polling" or "none"


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def iso(moment: dt.datetime | None) -> str | None:
    return moment.isoformat().replace("+00:00", "Z") if moment else None


def backoff_delay(attempt: int, base: float, maximum: float) -> float:
    """Return the wait before reconnect `attempt` (0-based): half fixed, half random, doubling up to `maximum`.

    The random half spreads the reconnects of many replicas after a shared outage.
    """
    ceiling = min(maximum, base * (2 ** min(attempt, 30)))
    return ceiling / 2 + random.uniform(0, ceiling / 2)


class TradingViewFeed:
    """State and loops of the TradingView quote feed; every public method is thread-safe."""

    def __init__(self, settings: TradingViewSettings, http: requests.Session | None = None):
        self.settings = settings
        self.session = TradingViewSession(settings)
        self.http = http or requests.Session()

        self._root_by_symbol = {settings.tradingview_symbol(root): root for root in settings.roots}
        self._lock = threading.Lock()
        self._prices: dict[str, Quote] = {}
        self._update_modes: dict[str, str] = {}
        self._connected = False
        self._connected_at: dt.datetime | None = None
        self._last_message_at: dt.datetime | None = None
        self._reconnects = 0
        self._last_error: str | None = None
        self._price_source = "none"
        self._polling_active = False
        self._last_poll_at: dt.datetime | None = None
        self._last_poll_error: str | None = None
        self._last_manual_refresh: float | None = None

        self._socket: websocket.WebSocket | None = None
        self._reconnect_requested = threading.Event()
        self._stopped = threading.Event()

    # Threads

    def register_threads(self, threads) -> None:
        threads.register("tradingview-feed", self.run_socket, restart="always", on_stop=self.stop)
        threads.register("tradingview-poller", self.run_poller, restart="always", on_stop=self.stop)
        threads.register("tradingview-session", self.run_session_refresh, restart="always", on_stop=self.stop)

    def stop(self) -> None:
        """Unblock every loop at shutdown: the socket is closed so a pending receive returns at once."""
        self._stopped.set()
        self._reconnect_requested.set()
        self._close_socket()

    def _close_socket(self) -> None:
        ws = self._socket
        if ws is not None:
            try:
                ws.abort()
            except Exception:  # websocket-client raises several types while closing a broken socket
                logger.debug("closing the TradingView socket raised; it is being discarded anyway", exc_info=True)

    # The socket loop

    def run_socket(self, context: ThreadContext) -> None:
        attempt = 0
        first = True

        while not context.stopping():
            if not first:
                with self._lock:
                    self._reconnects += 1
            first = False

            started = time.monotonic()
            try:
                self._run_connection(context)
            except ReconnectRequested:
                logger.info("TradingView reconnect requested; reconnecting now")
                attempt = 0
                continue
            except (FeedStalled, protocol.ProtocolError, websocket.WebSocketException, OSError) as error:
                self._record_socket_error(error)
            finally:
                self._mark_disconnected()

            if context.stopping():
                return
            if time.monotonic() - started >= self.settings.stable_connection_seconds:
                attempt = 0
            delay = backoff_delay(attempt, self.settings.backoff_base_seconds, self.settings.backoff_max_seconds)
            attempt += 1
            logger.info("TradingView reconnect attempt %d in %.1fs", attempt, delay)
            self._wait_before_reconnect(context, delay)

    def _wait_before_reconnect(self, context: ThreadContext, delay: float) -> None:
        deadline = time.monotonic() + delay
        while not context.stopping() and not self._reconnect_requested.is_set():
            context.beat()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._reconnect_requested.wait(min(remaining, 0.2))

    def _record_socket_error(self, error: Exception) -> None:
        message = redact_error(error)
        with self._lock:
            self._last_error = message
        logger.warning("TradingView socket to %s lost: %s", self.settings.ws_url, message)

    def _run_connection(self, context: ThreadContext) -> None:
        self._reconnect_requested.clear()
        ws = websocket.create_connection(
            self.settings.ws_url,
            timeout=self.settings.connect_timeout_seconds,
            origin=self.settings.origin,
            enable_multithread=True,
        )
        self._socket = ws
        try:
            jwt = self._subscribe(ws)
            self._receive_until_failure(context, ws, jwt)
        finally:
            self._socket = None
            ws.abort()

    def _subscribe(self, ws: websocket.WebSocket) -> str | None:
        """Authenticate and subscribe; return the JWT held at this moment, so a renewed one can be detected."""
        jwt = self.session.auth_token()
        # An expired or refused JWT would get the socket refused; the unauthorized token still gets delayed quotes.
        token = jwt if jwt and self.session.jwt_valid() else protocol.UNAUTHORIZED_TOKEN
        symbols = list(self._root_by_symbol)
        for frame in protocol.subscription_messages(token, protocol.new_session_id(), symbols):
            ws.send(frame)

        with self._lock:
            self._connected = True
            self._connected_at = _utc_now()
            self._price_source = "websocket"
            self._polling_active = False
        logger.info(
            "TradingView socket connected to %s; subscribed %d symbols (%s token)",
            self.settings.ws_url,
            len(symbols),
            "JWT" if token != protocol.UNAUTHORIZED_TOKEN else "unauthorized",
        )
        return jwt

    def _receive_until_failure(self, context: ThreadContext, ws: websocket.WebSocket, jwt: str | None) -> None:
        deadline = self.settings.liveness_deadline_seconds
        # Short receive timeouts let the loop check the deadline, stop and reconnect requests several times a second.
        ws.settimeout(min(0.25, deadline / 4))
        last_received = time.monotonic()

        while not context.stopping():
            context.beat()
            if self._reconnect_requested.is_set():
                raise ReconnectRequested()
            if self.session.auth_token() != jwt:
                # The session thread renewed the JWT; only a new connection authenticates with it.
                raise ReconnectRequested()
            if time.monotonic() - last_received > deadline:
                raise FeedStalled(f"no message (heartbeats included) for {deadline:g}s; closing the socket")

            try:
                message = ws.recv()
            except websocket.WebSocketTimeoutException:
                continue
            if not ws.connected:
                raise websocket.WebSocketConnectionClosedException("the server closed the socket")
            if not message:
                continue

            last_received = time.monotonic()
            self._handle_message(ws, message)

    def _handle_message(self, ws: websocket.WebSocket, message: str | bytes) -> None:
        if isinstance(message, bytes):
            message = message.decode("utf-8", errors="replace")
        with self._lock:
            self._last_message_at = _utc_now()

        for item in protocol.parse_message(message):
            if isinstance(item, protocol.Heartbeat):
                ws.send(protocol.encode_frame(item.payload))
            elif isinstance(item, protocol.Message):
                self._handle_method(item)

    def _handle_method(self, message: protocol.Message) -> None:
        if message.method == "qsd":
            for update in protocol.quote_updates(message):
                self._merge_update(update)
        elif message.method == "quote_completed":
            logger.debug("TradingView quote snapshot complete for %s", message.params[1:])
        elif message.method in ("critical_error", "protocol_error"):
            detail = " ".join(str(param) for param in message.params)[:200]
            if "auth" in detail.lower():
                self.session.mark_jwt_rejected()
            raise protocol.ProtocolError(f"TradingView sent {message.method}: {detail}")

    def _merge_update(self, update: protocol.QuoteUpdate) -> None:
        root = self._root_by_symbol.get(update.symbol)
        if root is None:
            return
        if update.status != "ok":
            logger.warning("TradingView reports symbol %s (%s) as %s: %s", update.symbol, root, update.status, update.values)
            return

        values = update.values
        with self._lock:
            mode = values.get("update_mode")
            if isinstance(mode, str):
                self._update_modes[root] = mode
            last = self._decimal(values.get("lp"))
            if last is not None:
                self._prices[root] = Quote(last, _utc_now())

    @staticmethod
    def _decimal(value) -> Decimal | None:
        if value is None or isinstance(value, bool):
            return None
        try:
            number = Decimal(str(value))
        except InvalidOperation:
            return None
        return number if number.is_finite() else None

    def _mark_disconnected(self) -> None:
        with self._lock:
            was_connected = self._connected
            self._connected = False
            self._price_source = "polling" if self._polling_active else "none"
        if was_connected:
            logger.warning("TradingView socket disconnected; cached prices age until it is back")

    def request_reconnect(self) -> None:
        self._reconnect_requested.set()
        self._close_socket()

    # Polling fallback

    def run_poller(self, context: ThreadContext) -> None:
        while not context.stopping():
            context.beat()
            if self.settings.poll_url and not self.connected:
                self._poll_once()
            elif self._polling_active:
                with self._lock:
                    self._polling_active = False
            if context.wait(self.settings.poll_interval_seconds):
                return

    def _poll_once(self) -> None:
        symbols = list(self._root_by_symbol)
        body = {"symbols": {"tickers": symbols, "query": {"types": []}}, "columns": ["close"]}

        try:
            response = self.http.post(self.settings.poll_url, json=body, timeout=self.settings.http_timeout_seconds)
            response.raise_for_status()
            rows = response.json(parse_float=Decimal).get("data") or []
        except (requests.RequestException, ValueError, AttributeError) as error:
            self._record_poll_failure(error)
            return

        now = _utc_now()
        updated = 0
        with self._lock:
            for row in rows:
                root = self._root_by_symbol.get(row.get("s")) if isinstance(row, dict) else None
                values = row.get("d") if root else None
                last = self._decimal(values[0]) if isinstance(values, list) and values else None
                if last is not None:
                    self._prices[root] = Quote(last, now)
                    updated += 1

            if not self._connected:
                self._polling_active = updated > 0
                self._price_source = "polling" if updated else "none"
            self._last_poll_at = now
            self._last_poll_error = None if updated else "the quote poll returned no price for any subscribed symbol"
        logger.debug("TradingView quote poll updated %d of %d symbols", updated, len(symbols))

    def _record_poll_failure(self, error: Exception) -> None:
        message = redact_error(error)
        with self._lock:
            first_failure = self._last_poll_error is None
            self._polling_active = False
            if not self._connected:
                self._price_source = "none"
            self._last_poll_error = message
        # Every poll interval would repeat the same line while the outage lasts; log the first at warning only.
        level = logging.WARNING if first_failure else logging.DEBUG
        logger.log(level, "TradingView quote poll to %s failed: %s", self.settings.poll_url, message)

    # Session refresh

    def run_session_refresh(self, context: ThreadContext) -> None:
        while not context.stopping():
            context.beat()
            if self.session.refresh_due():
                self._refresh_session()
            if context.wait(self.settings.session_check_seconds):
                return

    def _refresh_session(self) -> tuple[bool, str]:
        """Renew the JWT; the socket loop sees the new token and reconnects with it."""
        try:
            self.session.refresh(self.http)
        except SessionRefreshError as error:
            logger.error("TradingView session refresh failed: %s", error)
            return False, str(error)
        return True, "TradingView session refreshed"

    def manual_refresh(self) -> tuple[int, dict, float | None]:
        """Serve POST /api/tradingview/refresh: renew the JWT when cookies exist, then reconnect.

        Return (HTTP status, body, Retry-After seconds or None). Calls closer together than the configured
        minimum interval get 429, because the endpoint is unauthenticated.
        """
        with self._lock:
            now = time.monotonic()
            last = self._last_manual_refresh
            wait = self.settings.manual_refresh_min_interval_seconds
            if last is not None and now - last < wait:
                return 429, {"success": False, "message": "TradingView refresh was requested recently; retry later"}, wait - (now - last)
            self._last_manual_refresh = now

        if not self.settings.enabled:
            message = "the TradingView feed is disabled; set JT_FEEDS_ENABLED=true and leave JT_TRADINGVIEW_ENABLED unset"
            return 503, {"success": False, "message": message}, None

        if not self.session.has_cookies():
            self.request_reconnect()
            return 200, {"success": True, "message": "no TradingView session cookies to refresh; WebSocket reconnecting"}, None

        refreshed, detail = self._refresh_session()
        self.request_reconnect()
        if refreshed:
            return 200, {"success": True, "message": "TradingView session refreshed, WebSocket reconnecting"}, None
        return 502, {"success": False, "message": f"{detail}; WebSocket reconnecting with the current token"}, None

    # Snapshots

    @property
    def connected(self) -> bool:
        with self._lock:
            return self._connected

    def price_snapshot(self) -> PriceSnapshot:
        with self._lock:
            return PriceSnapshot(
                dict(self._prices),
                connected=self._connected,
                delayed=self._delayed_locked(),
                source=self._price_source,
            )

    def latest_price(self, root: str) -> Quote | None:
        with self._lock:
            return self._prices.get(root.upper())

    def _delayed_locked(self) -> bool:
        return any(protocol.is_delayed(mode) for mode in self._update_modes.values())

    def _update_mode_locked(self) -> str | None:
        delayed = sorted(mode for mode in self._update_modes.values() if protocol.is_delayed(mode))
        if delayed:
            return delayed[0]
        modes = sorted(set(self._update_modes.values()))
        return modes[0] if modes else None

    def snapshot(self) -> dict:
        """Return the feed state as /api/tradingview/status serialises it (ISO times, prices as numbers)."""
        jwt_valid = self.session.jwt_valid()
        session_updated_at = self.session.updated_at()
        with self._lock:
            prices = {
                root: {"last": float(self._prices[root].last), "updated": iso(self._prices[root].updated)}
                for root in self.settings.roots
                if root in self._prices
            }
            return {
                "enabled": self.settings.enabled,
                "websocket_connected": self._connected,
                "subscribed_symbols": list(self.settings.roots),
                "cached_prices": prices,
                "session_updated_at": iso(session_updated_at),
                "auto_refresh_enabled": self.session.auto_refresh_enabled,
                "jwt_token_valid": jwt_valid,
                "delayed": self._delayed_locked(),
                "update_mode": self._update_mode_locked(),
                "polling_fallback_active": self._polling_active and not self._connected,
                "price_source": self._price_source,
                "connected_at": iso(self._connected_at),
                "last_message_at": iso(self._last_message_at),
                "last_poll_at": iso(self._last_poll_at),
                "reconnects": self._reconnects,
                "last_error": self._last_error,
                "last_poll_error": self._last_poll_error,
            }

    def auth_status(self) -> dict:
        session = self.session
        has_credentials = session.has_credentials()
        jwt_valid = session.jwt_valid()
        cookies_valid = session.cookies_valid()
        return {
            "has_credentials": has_credentials,
            "session_file_exists": session.session_file_exists(),
            "cookies_valid": cookies_valid,
            "auto_refresh_enabled": session.auto_refresh_enabled,
            "jwt_token_valid": jwt_valid,
            "jwt_expires_at": iso(session.jwt_expires_at()),
            "last_refresh_at": iso(session.last_refresh_at),
            "message": self._auth_message(session, has_credentials, jwt_valid, cookies_valid),
        }

    @staticmethod
    def _auth_message(session: TradingViewSession, has_credentials: bool, jwt_valid: bool, cookies_valid: bool) -> str:
        if not has_credentials:
            return "no TradingView session configured; quotes use the unauthorized token and are delayed"
        if session.has_cookies() and session.cookies_checked() and not cookies_valid:
            return "TradingView rejected the session cookies; log in again and update JT_TRADINGVIEW_SESSIONID or the session file"
        if jwt_valid:
            return "TradingView session active with valid JWT"
        if session.auto_refresh_enabled:
            return "TradingView JWT missing or expired; a refresh with the session cookies is pending"
        return "TradingView JWT expired and no session cookies are set to renew it; update JT_TRADINGVIEW_JWT"

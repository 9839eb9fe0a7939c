"""One Tradovate user socket for one token group: authorize, subscribe to sync, read props events, stay alive.

Log lines go to the `position_monitor` logger with the wording operators' runbooks grep for, each prefixed with
the token's last 6 characters ("[...abc123]").
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from typing import Callable

import websocket

from ..daemons import ThreadContext, redact_error
from . import tradovate_protocol as protocol
from .account_groups import AccountGroup
from .broker_events import InvalidEntity, Scope, parse_fill, parse_position
from .event_writer import EventWriter
from .settings import PositionMonitorSettings
from .tradingview import backoff_delay

logger = logging.getLogger("position_monitor")

STATES = ("connecting", "authenticated", "subscribed", "stale", "disconnected")
# Event types counted by name; every other entity type (cashBalance, contract, ...) counts as "other".
EVENT_TYPES = ("position", "fill", "order", "other")

_AUTHORIZE_ID = 1
_SYNC_ID = 2


class ConnectionFailed(Exception):
    """The socket failed; the message is what the log line and the status endpoint show."""


class AuthFailed(ConnectionFailed):
    pass


class NoData(ConnectionFailed):
    pass


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class GroupConnection:
    """State and loop of one token group's socket; the monitor reads `describe()` for the status endpoint."""

    def __init__(self, group: AccountGroup, settings: PositionMonitorSettings, count: Callable[[str, str | None], None],
                 writer: EventWriter | None = None):
        self.settings = settings
        self._count = count  # reports to the monitor's totals: count("events", "position"), count("auth_failures", None)
        self._writer = writer  # records fill and position events in its own thread; None records nothing
        self._resync_generation = writer.resync_generation if writer is not None else 0
        self._lock = threading.Lock()
        self._group = group
        self._socket: websocket.WebSocket | None = None

        self.state = "disconnected"
        self.connected_at: dt.datetime | None = None
        self.authenticated_at: dt.datetime | None = None
        self.last_message_at: dt.datetime | None = None
        self.messages = 0
        self.data_messages = 0
        self.events = {event_type: 0 for event_type in EVENT_TYPES}
        self.auth_failures = 0
        self.errors = 0
        self.stale_windows = 0
        self.connects = 0
        self.last_error: str | None = None
        self.invalid_entities = 0

        self._contract_names: dict[int, str] = {}
        self._order_accounts: dict[int, int] = {}
        self._subscribed_at: float | None = None  # time.monotonic() when the current connection reached sync

    # Group updates from the monitor's reload

    @property
    def group(self) -> AccountGroup:
        with self._lock:
            return self._group

    def update_group(self, group: AccountGroup) -> None:
        """Take a reloaded definition (a renewed token, added accounts); it applies from the next connection."""
        with self._lock:
            self._group = group

    def close(self) -> None:
        ws = self._socket
        if ws is not None:
            try:
                ws.abort()
            except Exception:  # websocket-client raises several types while closing a broken socket
                logger.debug("closing a position socket raised; it is being discarded anyway", exc_info=True)

    # Loop

    def run(self, context: ThreadContext) -> None:
        attempt = 0
        while not context.stopping():
            group = self.group
            subscribed = False
            self._subscribed_at = None
            try:
                subscribed = self._run_connection(context, group)
            except AuthFailed as error:
                self._record_failure(group, str(error))
            except NoData as error:
                self._record_failure(group, str(error))
            except (ConnectionFailed, protocol.ProtocolError, websocket.WebSocketException, OSError) as error:
                self._record_failure(group, f"Connection error: {redact_error(error)}")
            finally:
                self._set_state("disconnected")

            if context.stopping():
                return
            attempt = 0 if subscribed or self._was_stable() else attempt + 1
            delay = backoff_delay(attempt, self.settings.backoff_base_seconds, self.settings.backoff_max_seconds)
            if context.wait(delay):
                return

    def _was_stable(self) -> bool:
        """Tell whether the last connection stayed subscribed for a whole silence-detection period.

        Its failure is then a blip, and the backoff starts again from the base; otherwise the failures of a
        lifetime would add up and every reconnect would wait the maximum.
        """
        subscribed_at = self._subscribed_at
        stable_seconds = self.settings.stats_window_seconds * self.settings.stale_windows
        return subscribed_at is not None and time.monotonic() - subscribed_at >= stable_seconds

    def _record_failure(self, group: AccountGroup, message: str) -> None:
        with self._lock:
            self.errors += 1
            self.last_error = message
        logger.warning("%s %s", group.token_label, message)

    def _run_connection(self, context: ThreadContext, group: AccountGroup) -> bool:
        """Connect, authorize, subscribe and read until the socket fails; return whether sync was reached."""
        self._set_state("connecting")
        with self._lock:
            self.connects += 1
        logger.info(
            "%s Connecting to Tradovate (%d accounts, %s)", group.token_label, len(group.accounts), group.environment
        )

        ws = websocket.create_connection(
            self.settings.ws_url(group.environment), timeout=self.settings.connect_timeout_seconds, enable_multithread=True
        )
        self._socket = ws
        try:
            ws.settimeout(min(0.25, self.settings.heartbeat_seconds / 2))
            with self._lock:
                self.connected_at = _utc_now()

            self._authorize(context, ws, group)
            self._subscribe(context, ws, group)
            self._read_events(context, ws, group)
            return True
        finally:
            self._socket = None
            ws.abort()

    def _authorize(self, context: ThreadContext, ws: websocket.WebSocket, group: AccountGroup) -> None:
        ws.send(protocol.encode_request("authorize", _AUTHORIZE_ID, group.access_token))
        response = self._await_response(context, ws, group, _AUTHORIZE_ID)

        if response is None or response.status != 200:
            with self._lock:
                self.auth_failures += 1
            self._count("auth_failures", None)
            raise AuthFailed("Auth failed — no s:200 response")

        with self._lock:
            self.authenticated_at = _utc_now()
        self._set_state("authenticated")
        logger.info("%s Authenticated", group.token_label)

    def _subscribe(self, context: ThreadContext, ws: websocket.WebSocket, group: AccountGroup) -> None:
        account_ids = group.broker_account_ids
        # NOTE: the accounts table keeps no Tradovate user id, so the request filters by account ids alone.
        body = {"users": [], "accounts": account_ids, "entityTypes": list(self.settings.entity_types)}
        ws.send(protocol.encode_request("user/syncrequest", _SYNC_ID, body))

        response = self._await_response(context, ws, group, _SYNC_ID)
        if response is None or response.status != 200:
            status = response.status if response else "no"
            raise ConnectionFailed(f"Sync request failed — {status} response for accounts {account_ids}")

        self._remember_sync_data(response.data)
        if self._writer is not None:
            self._resync_generation = self._writer.resync_generation
        self._record_sync_data(group, response.data)
        self._subscribed_at = time.monotonic()
        self._set_state("subscribed")
        logger.info("%s Subscribed to sync for accounts %s", group.token_label, account_ids)

    def _await_response(self, context, ws, group, request_id: int) -> protocol.Response | None:
        """Read frames until the response to `request_id`, handling events on the way; None on timeout."""
        deadline = time.monotonic() + self.settings.response_timeout_seconds
        next_heartbeat = time.monotonic() + self.settings.heartbeat_seconds

        while time.monotonic() < deadline and not context.stopping():
            context.beat()
            next_heartbeat = self._send_heartbeat_if_due(ws, next_heartbeat)
            for message in self._receive_messages(ws, group):
                if isinstance(message, protocol.Response) and message.request_id == request_id:
                    return message
        return None

    def _read_events(self, context: ThreadContext, ws: websocket.WebSocket, group: AccountGroup) -> None:
        window = self.settings.stats_window_seconds
        window_end = time.monotonic() + window
        next_heartbeat = time.monotonic() + self.settings.heartbeat_seconds
        window_messages = window_data = empty_windows = 0

        while not context.stopping():
            context.beat()
            next_heartbeat = self._send_heartbeat_if_due(ws, next_heartbeat)

            before = (self.messages, self.data_messages)
            for _ in self._receive_messages(ws, group):
                pass
            window_messages += self.messages - before[0]
            window_data += self.data_messages - before[1]

            if self._writer is not None and self._writer.resync_generation != self._resync_generation:
                raise ConnectionFailed("Reconnecting to sync again: fill or position events were dropped")
            if time.monotonic() < window_end:
                continue

            logger.info("%s WS stats: %d msgs (%d data) in %gs", group.token_label, window_messages, window_data, window)
            empty_windows = empty_windows + 1 if window_messages == 0 else 0
            self._close_window(empty_windows)
            if empty_windows >= self.settings.stale_windows:
                raise NoData(f"No data for {empty_windows} consecutive windows")
            window_end += window
            window_messages = window_data = 0

    def _close_window(self, empty_windows: int) -> None:
        # Silence covers heartbeats too: an idle account still gets the server's "h" frames, a dead socket does not.
        if empty_windows:
            with self._lock:
                self.stale_windows += 1
            self._count("stale_windows", None)
            self._set_state("stale")
        else:
            self._set_state("subscribed")

    def _send_heartbeat_if_due(self, ws: websocket.WebSocket, next_heartbeat: float) -> float:
        now = time.monotonic()
        if now < next_heartbeat:
            return next_heartbeat
        ws.send(protocol.CLIENT_HEARTBEAT)
        return now + self.settings.heartbeat_seconds

    def _receive_messages(self, ws: websocket.WebSocket, group: AccountGroup) -> list:
        """Receive at most one frame (waiting up to the socket timeout) and return the responses it carried."""
        try:
            text = ws.recv()
        except websocket.WebSocketTimeoutException:
            return []
        if not ws.connected:
            raise ConnectionFailed("the server closed the socket")
        if not text:
            return []
        if isinstance(text, bytes):
            text = text.decode("utf-8", errors="replace")

        frame = protocol.parse_frame(text)
        with self._lock:
            self.messages += 1
            self.data_messages += frame.kind == "data"
            self.last_message_at = _utc_now()
            if self.state == "stale":
                self.state = "subscribed"

        if frame.kind == "close":
            raise ConnectionFailed(f"the server closed the socket ({frame.close_code} {frame.close_reason})")

        responses = []
        for raw in frame.messages:
            message = protocol.classify(raw)
            if isinstance(message, protocol.PropsEvent):
                self._handle_event(group, message)
            elif isinstance(message, protocol.Response):
                responses.append(message)
        return responses

    # Events

    def _remember_sync_data(self, data) -> None:
        if not isinstance(data, dict):
            return
        for contract in data.get("contracts") or []:
            self._remember_contract(contract)
        for order in data.get("orders") or []:
            self._remember_order(order)

    def _record_sync_data(self, group: AccountGroup, data) -> None:
        """Hand the sync response's fills and positions to the writer: after a reconnect they replay what was missed."""
        if not isinstance(data, dict) or self._writer is None:
            return
        events = [self._parse_entity(group, "fill", "Created", fill) for fill in data.get("fills") or []]
        events += [self._parse_entity(group, "position", "Updated", item) for item in data.get("positions") or []]
        self._writer.submit_batch([event for event in events if event is not None])

    def _record_entity(self, group: AccountGroup, entity_type: str, event_type: str, entity) -> None:
        if self._writer is None:
            return
        event = self._parse_entity(group, entity_type, event_type, entity)
        if event is not None:
            self._writer.submit(event)

    def _parse_entity(self, group: AccountGroup, entity_type: str, event_type: str, entity):
        """Return the fill or position event of an entity, or None (logged and counted) when it is invalid."""
        scope = Scope(tuple((a.broker_account_id, a.id) for a in group.accounts if a.broker_account_id is not None),
                      group.token_label)
        try:
            if not isinstance(entity, dict):
                raise InvalidEntity(f"{entity_type} entity is {type(entity).__name__}, not an object")
            if entity_type == "fill":
                account = entity.get("accountId") or self._order_accounts.get(entity.get("orderId"))
                event = parse_fill(entity, scope, account, self._symbol(entity), event_type)
            else:
                event = parse_position(entity, scope, self._symbol(entity))
        except InvalidEntity as error:
            with self._lock:
                self.invalid_entities += 1
            logger.warning("%s Invalid %s entity not recorded: %s", group.token_label, entity_type, error)
            return None
        return event

    def _remember_contract(self, contract: dict) -> None:
        if isinstance(contract, dict) and isinstance(contract.get("id"), int) and contract.get("name"):
            self._contract_names[contract["id"]] = str(contract["name"])

    def _remember_order(self, order: dict) -> None:
        if isinstance(order, dict) and isinstance(order.get("id"), int) and order.get("accountId") is not None:
            self._order_accounts[order["id"]] = order["accountId"]

    def _symbol(self, entity: dict) -> str:
        contract_id = entity.get("contractId")
        return entity.get("symbol") or self._contract_names.get(contract_id) or f"contract:{contract_id}"

    def _handle_event(self, group: AccountGroup, event: protocol.PropsEvent) -> None:
        event_type = event.entity_type if event.entity_type in EVENT_TYPES else "other"
        with self._lock:
            self.events[event_type] += 1
        self._count("events", event_type)

        entity = event.entity
        if event.entity_type == "contract":
            self._remember_contract(entity)
        elif event_type == "order":
            self._remember_order(entity)
        elif event_type == "position":
            logger.info(
                "%s Position event: account=%s symbol=%s netPos=%s netPrice=%s",
                group.token_label,
                entity.get("accountId"),
                self._symbol(entity),
                entity.get("netPos"),
                entity.get("netPrice"),
            )
            self._record_entity(group, "position", event.event_type, entity)
        elif event_type == "fill":
            account = entity.get("accountId") or self._order_accounts.get(entity.get("orderId"))
            logger.info(
                "%s Fill event: account=%s symbol=%s action=%s qty=%s price=%s orderId=%s",
                group.token_label,
                account,
                self._symbol(entity),
                entity.get("action"),
                entity.get("qty"),
                entity.get("price"),
                entity.get("orderId"),
            )
            self._record_entity(group, "fill", event.event_type, entity)

    # Status

    def _set_state(self, state: str) -> None:
        with self._lock:
            self.state = state

    def describe(self) -> dict:
        with self._lock:
            group = self._group
            return {
                "token_group": group.key,
                "token_key": group.token_label.strip("[]"),
                "environment": group.environment,
                "state": self.state,
                "accounts": [
                    {"id": account.id, "name": account.name, "broker_account_id": account.broker_account_id}
                    for account in group.accounts
                ],
                "connected_at": self.connected_at,
                "authenticated_at": self.authenticated_at,
                "last_message_at": self.last_message_at,
                "messages_received": self.messages,
                "data_messages_received": self.data_messages,
                "events": dict(self.events),
                "auth_failures": self.auth_failures,
                "errors": self.errors,
                "stale_detections": self.stale_windows,
                "connects": self.connects,
                "invalid_entities": self.invalid_entities,
                "last_error": self.last_error,
            }

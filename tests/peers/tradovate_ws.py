"""A local Tradovate-style user socket on 127.0.0.1 for tests (SockJS-style frames over a websocket).

The server sends `o` on open and `h` heartbeats; requests arrive as "endpoint\\nid\\n\\nbody". `authorize`
returns a[{"s":200,"i":id}] for a token in `valid_tokens` and s:401 otherwise. `user/syncrequest` returns s:200
with the accounts' contracts, orders, fills and positions (the lists `contracts`, `orders`, `fills` and
`positions`, empty apart from the contracts unless a test fills them), after which `push_event()` sends `props`
events to every subscribed socket. `disconnect_all()` closes the subscribed sockets, so clients reconnect and
sync again.

Modes (switch with `set_mode`, new connections use the new mode):
- normal: as above;
- silent: authorizes and syncs, then sends nothing more (no heartbeats) without closing;
- drop: closes every connection right after `o`.
Use it as a context manager: `with TradovateSocketPeer(valid_tokens={"tok"}) as peer: peer.url`.
"""

from __future__ import annotations

import json
import threading
import time

from websockets.exceptions import ConnectionClosed
from websockets.sync.server import ServerConnection, serve

MODES = ("normal", "silent", "drop")

DEFAULT_CONTRACTS = [{"id": 3001, "name": "NQZ6"}, {"id": 3003, "name": "MNQZ6"}, {"id": 3005, "name": "GCZ6"}]


def data_frame(*messages: dict) -> str:
    return "a" + json.dumps(list(messages), separators=(",", ":"))


class TradovateSocketPeer:
    def __init__(self, *, valid_tokens: set[str] | None = None, mode: str = "normal", heartbeat_seconds: float = 0.25):
        self.valid_tokens = set(valid_tokens or ())
        self.heartbeat_seconds = heartbeat_seconds
        self.contracts = list(DEFAULT_CONTRACTS)
        # Entities the sync response lists, as Tradovate's does for the day's orders, fills and open positions.
        self.orders: list[dict] = []
        self.fills: list[dict] = []
        self.positions: list[dict] = []

        self._lock = threading.Lock()
        self._mode = mode
        self._server = None
        self._thread: threading.Thread | None = None
        self._subscribed: list[tuple[ServerConnection, threading.Lock]] = []

        # What clients did, for assertions.
        self.connections = 0
        self.authorize_tokens: list[str] = []
        self.sync_requests: list[dict] = []
        self.client_heartbeats = 0

    def __enter__(self) -> "TradovateSocketPeer":
        self._server = serve(self._handle, "127.0.0.1", 0, compression=None, ping_interval=None, close_timeout=0.5)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._server.shutdown()
        self._thread.join(timeout=5)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self._server.socket.getsockname()[1]}/v1/websocket"

    def set_mode(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"mode {mode!r} is unknown; use one of {MODES}")
        with self._lock:
            self._mode = mode

    def push_event(self, entity_type: str, entity: dict, event_type: str = "Updated") -> int:
        """Send a props event to every subscribed socket; return how many received it."""
        text = data_frame({"e": "props", "d": {"entityType": entity_type, "eventType": event_type, "entity": entity}})
        with self._lock:
            targets = list(self._subscribed)

        delivered = 0
        for connection, send_lock in targets:
            try:
                with send_lock:
                    connection.send(text)
                delivered += 1
            except ConnectionClosed:
                continue
        return delivered

    def disconnect_all(self) -> int:
        """Close every subscribed socket; return how many were closed."""
        with self._lock:
            targets = list(self._subscribed)
            self._subscribed = []
        for connection, send_lock in targets:
            with send_lock:
                connection.close()
        return len(targets)

    # Connection handling

    def _handle(self, connection: ServerConnection) -> None:
        with self._lock:
            self.connections += 1
            mode = self._mode
        send_lock = threading.Lock()

        try:
            connection.send("o")
            if mode == "drop":
                connection.close()
                return
            self._serve(connection, send_lock, mode)
        except ConnectionClosed:
            return
        finally:
            with self._lock:
                self._subscribed = [entry for entry in self._subscribed if entry[0] is not connection]

    def _serve(self, connection: ServerConnection, send_lock: threading.Lock, mode: str) -> None:
        silent = False
        next_heartbeat = time.monotonic() + self.heartbeat_seconds

        while True:
            try:
                text = connection.recv(timeout=0.02)
            except TimeoutError:
                text = None

            if text == "[]":
                with self._lock:
                    self.client_heartbeats += 1
            elif text:
                reply, subscribed = self._answer(text)
                with send_lock:
                    connection.send(reply)
                if subscribed:
                    with self._lock:
                        self._subscribed.append((connection, send_lock))
                    silent = mode == "silent"

            if not silent and time.monotonic() >= next_heartbeat:
                with send_lock:
                    connection.send("h")
                next_heartbeat = time.monotonic() + self.heartbeat_seconds

    def _answer(self, text: str) -> tuple[str, bool]:
        endpoint, request_id, _, body = (text.split("\n", 3) + ["", "", ""])[:4]
        request_id = int(request_id)

        if endpoint == "authorize":
            with self._lock:
                self.authorize_tokens.append(body)
            if body in self.valid_tokens:
                return data_frame({"s": 200, "i": request_id}), False
            return data_frame({"s": 401, "i": request_id, "d": "Access is denied"}), False

        if endpoint == "user/syncrequest":
            request = json.loads(body or "{}")
            with self._lock:
                self.sync_requests.append(request)
            accounts = [{"id": account_id, "name": f"DEMO{account_id}"} for account_id in request.get("accounts", [])]
            with self._lock:
                data = {"users": [], "accounts": accounts, "orders": list(self.orders), "fills": list(self.fills),
                        "positions": list(self.positions), "contracts": list(self.contracts)}
            return data_frame({"s": 200, "i": request_id, "d": data}), True

        return data_frame({"s": 404, "i": request_id, "d": f"unknown endpoint {endpoint}"}), False

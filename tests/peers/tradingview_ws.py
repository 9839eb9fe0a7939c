"""A local TradingView-style quote server on 127.0.0.1 for tests: a websocket and a small HTTP side.

The websocket speaks the framing `~m~<length>~m~<payload>`: it greets each client with a hello, sends
`~h~<n>` heartbeats the client must echo, and replies to quote_add_symbols with a full `qsd` per symbol, then
`quote_completed`, then partial `qsd` updates (only `lp` changes), several frames per websocket message.

Modes (switch with `set_mode`, new connections use the new mode):
- normal: real-time for a JWT the peer accepts, delayed (`delayed_streaming_600`) for any other token;
- delayed: delayed quotes whatever the token;
- silent: accepts connections and never sends anything;
- drop: closes every connection right after the hello.

The HTTP side serves `POST /scan` (quotes in TradingView's scanner shape, for the polling fallback) and
`GET /chart/` (a page embedding `"auth_token":"<jwt>"` when the `sessionid` cookie is accepted).
Use it as a context manager: `with TradingViewPeer() as peer: peer.ws_url, peer.http_url`.
"""

from __future__ import annotations

import base64
import itertools
import json
import threading
import time
from decimal import Decimal
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from websockets.exceptions import ConnectionClosed
from websockets.sync.server import ServerConnection, serve

MODES = ("normal", "delayed", "silent", "drop")

DEFAULT_PRICES = {
    "CME_MINI:NQ1!": Decimal("21534.75"),
    "CME_MINI:ES1!": Decimal("6120.50"),
    "COMEX:GC1!": Decimal("2945.30"),
    "CME_MINI:MNQ1!": Decimal("21534.75"),
    "COMEX:MGC1!": Decimal("2945.30"),
    "NYMEX:CL1!": Decimal("72.13"),
    "COMEX:SI1!": Decimal("32.455"),
    "CME_MINI:MES1!": Decimal("6120.50"),
}


def make_jwt(expires_in_seconds: float, subject: str = "jt-test") -> str:
    """Build a JWT-shaped token with an exp claim (unsigned: the feed only reads exp)."""

    def part(data: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    claims = {"sub": subject, "exp": int(time.time() + expires_in_seconds)}
    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}.signature"


def frame(payload: str) -> str:
    return f"~m~{len(payload)}~m~{payload}"


def message(method: str, params: list) -> str:
    return frame(json.dumps({"m": method, "p": params}, default=float, separators=(",", ":")))


def split_frames(text: str) -> list[str]:
    payloads = []
    while text.startswith("~m~"):
        length_end = text.index("~m~", 3)
        length = int(text[3:length_end])
        start = length_end + 3
        payloads.append(text[start : start + length])
        text = text[start + length :]
    return payloads


class TradingViewPeer:
    def __init__(
        self,
        *,
        mode: str = "normal",
        heartbeat_seconds: float = 0.3,
        update_seconds: float = 0.1,
        accepted_jwts: set[str] | None = None,
        session_id: str = "test-session-cookie",
        issue_jwt_seconds: float = 3600,
    ):
        self.heartbeat_seconds = heartbeat_seconds
        self.update_seconds = update_seconds
        self.accepted_jwts = set(accepted_jwts or ())
        self.session_id = session_id
        self.issue_jwt_seconds = issue_jwt_seconds
        self.prices = dict(DEFAULT_PRICES)
        self.poll_prices = dict(DEFAULT_PRICES)

        self._lock = threading.Lock()
        self._mode = mode
        self._ws_server = None
        self._ws_thread: threading.Thread | None = None
        self._ws_port = 0
        self._http_server: ThreadingHTTPServer | None = None
        self._http_thread: threading.Thread | None = None
        self._counter = itertools.count(1)

        # What clients did, for assertions.
        self.connections = 0
        self.auth_tokens: list[str] = []
        self.subscribed: list[list[str]] = []
        self.heartbeat_echoes = 0
        self.scan_requests = 0
        self.jwt_requests = 0
        self.issued_jwts: list[str] = []

    # Lifecycle

    def __enter__(self) -> "TradingViewPeer":
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def start(self) -> None:
        self.start_websocket()
        handler = type("TradingViewHttpHandler", (_HttpHandler,), {"peer": self})
        self._http_server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._http_server.daemon_threads = True
        self._http_thread = threading.Thread(target=self._http_server.serve_forever, args=(0.05,), daemon=True)
        self._http_thread.start()

    def start_websocket(self) -> None:
        """Listen for websockets; after stop_websocket() it listens again on the same port."""
        self._ws_server = serve(self._handle, "127.0.0.1", self._ws_port, compression=None, ping_interval=None, close_timeout=0.5)
        self._ws_port = self._ws_server.socket.getsockname()[1]
        self._ws_thread = threading.Thread(target=self._ws_server.serve_forever, daemon=True)
        self._ws_thread.start()

    def stop_websocket(self) -> None:
        if self._ws_server is not None:
            self._ws_server.shutdown()
            self._ws_thread.join(timeout=5)
            self._ws_server = None

    def stop(self) -> None:
        self.stop_websocket()
        if self._http_server is not None:
            self._http_server.shutdown()
            self._http_server.server_close()
            self._http_thread.join(timeout=5)

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self._ws_port}/socket.io/websocket"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self._http_server.server_address[1]}"

    def set_mode(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"mode {mode!r} is unknown; use one of {MODES}")
        with self._lock:
            self._mode = mode

    @property
    def mode(self) -> str:
        with self._lock:
            return self._mode

    # Websocket side

    def _handle(self, connection: ServerConnection) -> None:
        with self._lock:
            self.connections += 1
            mode = self._mode

        try:
            if mode == "silent":
                self._stay_silent(connection)
                return
            connection.send(frame(json.dumps({"session_id": "peer-session", "timestamp": int(time.time()), "release": "test"})))
            if mode == "drop":
                connection.close()
                return
            self._serve_quotes(connection, mode)
        except ConnectionClosed:
            return

    def _stay_silent(self, connection: ServerConnection) -> None:
        # Read and discard what the client sends, and neither reply nor close.
        while True:
            try:
                connection.recv(timeout=1)
            except TimeoutError:
                continue

    def _serve_quotes(self, connection: ServerConnection, mode: str) -> None:
        symbols: list[str] = []
        session = None
        token = None
        next_heartbeat = time.monotonic() + self.heartbeat_seconds
        next_update = time.monotonic() + self.update_seconds

        while True:
            try:
                text = connection.recv(timeout=0.02)
            except TimeoutError:
                text = None

            if text is not None:
                for payload in split_frames(text):
                    token, session, added = self._handle_client_payload(payload, token, session)
                    if added:
                        symbols.extend(added)
                        self._send_snapshot(connection, session, added, self._update_mode(mode, token))

            now = time.monotonic()
            if now >= next_heartbeat:
                connection.send(frame(f"~h~{next(self._counter)}"))
                next_heartbeat = now + self.heartbeat_seconds
            if symbols and now >= next_update:
                self._send_partial_updates(connection, session, symbols)
                next_update = now + self.update_seconds

    def _handle_client_payload(self, payload: str, token, session):
        if payload.startswith("~h~"):
            with self._lock:
                self.heartbeat_echoes += 1
            return token, session, []

        data = json.loads(payload)
        method, params = data.get("m"), data.get("p", [])
        if method == "set_auth_token":
            token = params[0]
            with self._lock:
                self.auth_tokens.append(token)
        elif method == "quote_create_session":
            session = params[0]
        elif method == "quote_add_symbols":
            with self._lock:
                self.subscribed.append(list(params[1:]))
            return token, session, list(params[1:])
        return token, session, []

    def _update_mode(self, mode: str, token: str | None) -> str:
        if mode == "delayed" or token not in self.accepted_jwts:
            return "delayed_streaming_600"
        return "streaming"

    def _send_snapshot(self, connection, session, symbols, update_mode: str) -> None:
        for symbol in symbols:
            price = self.prices.get(symbol)
            if price is None:
                connection.send(message("qsd", [session, {"n": symbol, "s": "error", "v": {}}]))
                continue
            values = {"lp": price, "lp_time": int(time.time()), "update_mode": update_mode, "ch": 0, "chp": 0}
            connection.send(message("qsd", [session, {"n": symbol, "s": "ok", "v": values}]))
        connection.send(message("quote_completed", [session, *symbols]))

    def _send_partial_updates(self, connection, session, symbols) -> None:
        # One websocket message carrying several frames, as TradingView batches them.
        frames = []
        for symbol in symbols:
            if symbol in self.prices:
                frames.append(message("qsd", [session, {"n": symbol, "s": "ok", "v": {"lp": self.prices[symbol]}}]))
        if frames:
            connection.send("".join(frames))

    # HTTP side

    def scan(self, body: dict) -> dict:
        with self._lock:
            self.scan_requests += 1
        tickers = body.get("symbols", {}).get("tickers", [])
        rows = [{"s": ticker, "d": [self.poll_prices[ticker]]} for ticker in tickers if ticker in self.poll_prices]
        return {"totalCount": len(rows), "data": rows}

    def chart_page(self, cookies: dict) -> str:
        with self._lock:
            self.jwt_requests += 1
        if cookies.get("sessionid") != self.session_id:
            return "<html><script>window.user = {\"is_pro\": false};</script></html>"

        token = make_jwt(self.issue_jwt_seconds, subject=f"refresh-{next(self._counter)}")
        with self._lock:
            self.accepted_jwts.add(token)
            self.issued_jwts.append(token)
        return f'<html><script>window.user = {{"username": "jt", "auth_token":"{token}"}};</script></html>'


class _HttpHandler(BaseHTTPRequestHandler):
    peer: TradingViewPeer

    def log_message(self, *args) -> None:  # keep test output quiet
        return

    def do_POST(self) -> None:
        if self.path != "/scan":
            self._send(404, "text/plain", b"not found")
            return
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        self._send(200, "application/json", json.dumps(self.peer.scan(body), default=float).encode())

    def do_GET(self) -> None:
        if not self.path.startswith("/chart"):
            self._send(404, "text/plain", b"not found")
            return
        cookie = SimpleCookie(self.headers.get("Cookie") or "")
        cookies = {name: morsel.value for name, morsel in cookie.items()}
        self._send(200, "text/html", self.peer.chart_page(cookies).encode())

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

"""A TCP proxy on 127.0.0.1 that breaks the connections through it on command, for socket client scenarios.

Modes (switch with `set_mode`; they apply to open connections at once and to new ones):
- pass: bytes flow both ways;
- blackhole: bytes are read and dropped while the sockets stay open, as with a peer whose host vanished or a
  NAT that lost the connection (a half-open connection: no FIN, no RST, nothing);
- slow: each chunk is forwarded `delay_seconds` after it arrived, in order;
- flap: bytes flow, but every connection is reset `flap_seconds` after it was accepted.

`accepted_times` records when each connection was accepted, so a test can count the client's connection attempts
over a window. Use it as a context manager: `with ChaosProxy(port) as proxy: proxy.port`.
"""

from __future__ import annotations

import collections
import select
import socket
import struct
import threading
import time

MODES = ("pass", "blackhole", "slow", "flap")
_CHUNK = 65536
_POLL_SECONDS = 0.02


def _reset(sock: socket.socket) -> None:
    """Close with RST instead of FIN, as a crashed peer or a middlebox dropping state does."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


class ChaosProxy:
    def __init__(self, target_port: int, target_host: str = "127.0.0.1"):
        self.target = (target_host, target_port)
        self.delay_seconds = 0.0
        self.flap_seconds = 0.5
        self.accepted_times: list[float] = []

        self._mode = "pass"
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._listener: socket.socket | None = None
        self._threads: list[threading.Thread] = []
        self._connections: list[tuple[socket.socket, socket.socket]] = []

    # Lifecycle

    def __enter__(self) -> "ChaosProxy":
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self._listener.settimeout(0.1)
        self._spawn(self._accept_loop)
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        with self._lock:
            connections = list(self._connections)
        for client, upstream in connections:
            _reset(client)
            _reset(upstream)
        self._listener.close()
        for thread in self._threads:
            thread.join(timeout=5)

    @property
    def port(self) -> int:
        return self._listener.getsockname()[1]

    def url(self, scheme: str = "ws", path: str = "/") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    # Steering

    def set_mode(self, mode: str, *, delay_seconds: float | None = None, flap_seconds: float | None = None) -> None:
        if mode not in MODES:
            raise ValueError(f"mode {mode!r} is unknown; use one of {', '.join(MODES)}")
        if delay_seconds is not None:
            self.delay_seconds = delay_seconds
        if flap_seconds is not None:
            self.flap_seconds = flap_seconds
        with self._lock:
            self._mode = mode

    @property
    def mode(self) -> str:
        with self._lock:
            return self._mode

    def reset_connections(self) -> None:
        """Reset every open connection once (a blip); new connections are served in the current mode."""
        with self._lock:
            connections = list(self._connections)
        for client, upstream in connections:
            _reset(client)
            _reset(upstream)

    def accepted_after(self, moment: float) -> list[float]:
        """Return the accept times after a time.monotonic() reading."""
        with self._lock:
            return [accepted for accepted in self.accepted_times if accepted > moment]

    def accepted_between(self, start: float, end: float) -> int:
        """Count connections accepted between two time.monotonic() readings."""
        with self._lock:
            return sum(1 for moment in self.accepted_times if start <= moment < end)

    # Serving

    def _spawn(self, target, *args) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True, name="chaos-proxy")
        thread.start()
        self._threads.append(thread)

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except (socket.timeout, OSError):
                continue
            accepted = time.monotonic()
            with self._lock:
                self.accepted_times.append(accepted)
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                _reset(client)
                continue
            with self._lock:
                self._connections.append((client, upstream))
            self._spawn(self._pump, client, upstream, accepted)

    def _pump(self, client: socket.socket, upstream: socket.socket, accepted: float) -> None:
        """Move bytes both ways until either side closes, applying the current mode to every chunk."""
        peers = {client: upstream, upstream: client}
        delayed: dict[socket.socket, collections.deque] = {client: collections.deque(), upstream: collections.deque()}
        try:
            while not self._stop.is_set():
                mode = self.mode
                if mode == "flap" and time.monotonic() - accepted >= self.flap_seconds:
                    return
                readable, _, _ = select.select([client, upstream], [], [], _POLL_SECONDS)
                for source in readable:
                    data = source.recv(_CHUNK)
                    if not data:
                        return
                    if mode == "blackhole":
                        continue
                    delayed[peers[source]].append((time.monotonic() + self._delay_for(mode), data))
                self._flush_due(delayed)
        except (OSError, ValueError):
            # ValueError: another thread reset one of the sockets (reset_connections, exit), so select gets fd -1.
            return
        finally:
            with self._lock:
                if (client, upstream) in self._connections:
                    self._connections.remove((client, upstream))
            _reset(client)
            _reset(upstream)

    def _delay_for(self, mode: str) -> float:
        return self.delay_seconds if mode == "slow" else 0.0

    @staticmethod
    def _flush_due(delayed: dict) -> None:
        now = time.monotonic()
        for target, queue in delayed.items():
            while queue and queue[0][0] <= now:
                target.sendall(queue.popleft()[1])

"""A local Whop-style REST server on 127.0.0.1 for tests.

It serves the membership list in the two shapes the platform follows:

- `GET /api/v1/memberships?first=N&after=CURSOR` (the current API): `{"data": [...], "page_info": {...}}`
  with `end_cursor` and `has_next_page`; each membership has a nested `user` object carrying the email;
- `GET /api/v2/memberships?per=N&page=P` (the older API): `{"data": [...], "pagination": {...}}` with
  `next_page`; the email sits on the membership and `user` is the user's id.

Requests must carry `Authorization: Bearer <api key>`, or the server returns 401 with a JSON error.
Faults for tests: `fail_with(status)` answers every request with that status, and `stop_answering()` makes
the server accept requests but never reply (each request is held until `resume()`, the bounded hold
time or shutdown), as a hung upstream does.

Use it in-process: `with WhopPeer(api_key="k") as peer: peer.v1_url`.
"""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

MAX_PAGE_SIZE = 100
HOLD_SECONDS = 30.0  # max time a stopped server keeps a request open without replying


def membership(membership_id: str, email: str | None, status: str = "active", user_id: str | None = None) -> dict:
    """Build a membership record; the server renders it in the v1 or v2 shape."""
    return {"id": membership_id, "email": email, "status": status, "user_id": user_id or f"user_{membership_id}"}


def _encode_cursor(index: int) -> str:
    return base64.urlsafe_b64encode(f"offset:{index}".encode()).decode()


def _decode_cursor(cursor: str) -> int:
    text = base64.urlsafe_b64decode(cursor.encode()).decode()
    if not text.startswith("offset:"):
        raise ValueError(cursor)
    return int(text.removeprefix("offset:"))


class WhopPeer:
    def __init__(self, api_key: str = "whop-test-key", memberships: list[dict] | None = None):
        self.api_key = api_key
        self._memberships = list(memberships or [])
        self._lock = threading.Lock()
        self._failure_status: int | None = None
        self._answering = threading.Event()
        self._answering.set()
        self._shutdown = threading.Event()
        self.requests: list[dict] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    # Control

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def v1_url(self) -> str:
        return f"{self.base_url}/api/v1"

    @property
    def v2_url(self) -> str:
        return f"{self.base_url}/api/v2"

    def set_memberships(self, memberships: list[dict]) -> None:
        with self._lock:
            self._memberships = list(memberships)

    def fail_with(self, status: int | None) -> None:
        with self._lock:
            self._failure_status = status

    def stop_answering(self) -> None:
        self._answering.clear()

    def resume(self) -> None:
        self._answering.set()

    def start(self) -> "WhopPeer":
        self._thread = threading.Thread(target=self._server.serve_forever, name="whop-peer", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._shutdown.set()
        self._answering.set()
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> "WhopPeer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # Serving

    def _handler_class(self):
        peer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format, *args):  # keep test output quiet
                return

            def do_GET(self):
                peer._serve(self)

        return Handler

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        url = urlsplit(handler.path)
        params = {key: values[-1] for key, values in parse_qs(url.query).items()}
        with self._lock:
            self.requests.append({"path": url.path, "params": params, "authorization": handler.headers.get("Authorization")})
            failure = self._failure_status
            memberships = list(self._memberships)

        if not self._answering.is_set():
            self._answering.wait(HOLD_SECONDS)
            handler.close_connection = True
            return

        if handler.headers.get("Authorization") != f"Bearer {self.api_key}":
            self._reply(handler, 401, {"error": {"type": "unauthorized", "message": "invalid API key"}})
            return
        if failure is not None:
            self._reply(handler, failure, {"error": {"type": "server_error", "message": f"injected HTTP {failure}"}})
            return

        if url.path == "/api/v1/memberships":
            self._reply(handler, *self._v1_page(memberships, params))
        elif url.path == "/api/v2/memberships":
            self._reply(handler, *self._v2_page(memberships, params))
        else:
            self._reply(handler, 404, {"error": {"type": "not_found", "message": f"no route {url.path}"}})

    @staticmethod
    def _v1_page(memberships: list[dict], params: dict) -> tuple[int, dict]:
        try:
            size = min(int(params.get("first", 10)), MAX_PAGE_SIZE)
            start = _decode_cursor(params["after"]) if params.get("after") else 0
        except (ValueError, UnicodeDecodeError):
            return 400, {"error": {"type": "bad_request", "message": "invalid first or after"}}

        page = memberships[start : start + size]
        end = start + len(page)
        data = [
            {
                "id": item["id"],
                "status": item["status"],
                "user": {"id": item["user_id"], "email": item["email"], "name": None, "username": item["user_id"]},
                "member": {"id": f"mber_{item['id']}"},
            }
            for item in page
        ]
        page_info = {
            "start_cursor": _encode_cursor(start) if page else None,
            "end_cursor": _encode_cursor(end) if page else None,
            "has_next_page": end < len(memberships),
            "has_previous_page": start > 0,
        }
        return 200, {"data": data, "page_info": page_info}

    @staticmethod
    def _v2_page(memberships: list[dict], params: dict) -> tuple[int, dict]:
        try:
            size = min(int(params.get("per", 10)), MAX_PAGE_SIZE)
            page_number = int(params.get("page", 1))
        except ValueError:
            return 400, {"error": {"type": "bad_request", "message": "invalid per or page"}}

        total_pages = max(1, -(-len(memberships) // size))
        start = (page_number - 1) * size
        data = [
            {"id": item["id"], "status": item["status"], "user": item["user_id"], "email": item["email"]}
            for item in memberships[start : start + size]
        ]
        pagination = {
            "current_page": page_number,
            "total_page": total_pages,
            "total_count": len(memberships),
            "next_page": page_number + 1 if page_number < total_pages else None,
            "prev_page": page_number - 1 if page_number > 1 else None,
        }
        return 200, {"data": data, "pagination": pagination}

    @staticmethod
    def _reply(handler: BaseHTTPRequestHandler, status: int, body: dict) -> None:
        payload = json.dumps(body).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)

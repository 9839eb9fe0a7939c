"""The Tradovate user socket's wire format (SockJS-style frames), without any I/O.

Server frames: `o` (open), `h` (heartbeat), `a[...]` (a JSON array of messages), `c[code,"reason"]` (close).
A message is either a response {"s": status, "i": request id, "d": data} or an event {"e": "props", "d": {...}}.
Client requests are text "endpoint\\nid\\n\\nbody"; the client heartbeat is the text "[]".
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

CLIENT_HEARTBEAT = "[]"


class ProtocolError(ValueError):
    """The server sent a frame this client cannot read."""


@dataclasses.dataclass(frozen=True)
class Frame:
    kind: str  # "open", "heartbeat", "data" or "close"
    messages: list[dict] = dataclasses.field(default_factory=list)
    close_code: int | None = None
    close_reason: str | None = None


@dataclasses.dataclass(frozen=True)
class Response:
    request_id: int
    status: int
    data: Any


@dataclasses.dataclass(frozen=True)
class PropsEvent:
    entity_type: str
    event_type: str
    entity: dict


def encode_request(endpoint: str, request_id: int, body: Any = None) -> str:
    """Encode a request; a string body (the access token of `authorize`) is sent as is, anything else as JSON."""
    if body is None:
        text = ""
    elif isinstance(body, str):
        text = body
    else:
        text = json.dumps(body, separators=(",", ":"))
    return f"{endpoint}\n{request_id}\n\n{text}"


def parse_frame(text: str) -> Frame:
    if text == "o":
        return Frame("open")
    if text == "h":
        return Frame("heartbeat")

    kind = text[:1]
    if kind not in ("a", "c"):
        raise ProtocolError(f"unknown frame type {kind!r} in {text[:80]!r}")

    try:
        body = json.loads(text[1:])
    except json.JSONDecodeError as error:
        raise ProtocolError(f"frame {text[:80]!r} does not carry valid JSON") from error
    if not isinstance(body, list):
        raise ProtocolError(f"frame {text[:80]!r} must carry a JSON array")

    if kind == "c":
        code = body[0] if body and isinstance(body[0], int) else None
        reason = str(body[1]) if len(body) > 1 else None
        return Frame("close", close_code=code, close_reason=reason)

    return Frame("data", messages=[message for message in body if isinstance(message, dict)])


def classify(message: dict) -> Response | PropsEvent | None:
    """Return the message as a Response or a PropsEvent, or None for other events (clock, shutdown)."""
    if "i" in message and "s" in message:
        try:
            return Response(int(message["i"]), int(message["s"]), message.get("d"))
        except (TypeError, ValueError):
            return None

    if message.get("e") == "props" and isinstance(message.get("d"), dict):
        data = message["d"]
        entity = data.get("entity") if isinstance(data.get("entity"), dict) else {}
        return PropsEvent(str(data.get("entityType", "")), str(data.get("eventType", "")), entity)

    return None

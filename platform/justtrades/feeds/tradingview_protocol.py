"""The TradingView quote socket's wire format, without any I/O.

Every websocket text message holds one or more frames `~m~<length>~m~<payload>`, where length counts the
payload's characters. A payload is either a heartbeat `~h~<n>` (the client must send the same frame back) or a
JSON object: the server's hello (session_id, release, ...) or a message {"m": method, "p": [params]}.

Quote data arrives as `qsd` messages, {"m": "qsd", "p": [session, {"n": symbol, "s": "ok", "v": {fields}}]},
where `v` holds only the fields that changed; `lp` is the last price and `update_mode` is "streaming" for real-time
data or "delayed_streaming_<seconds>" for delayed data.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import string
from decimal import Decimal
from typing import Any

FRAME_MARKER = "~m~"
HEARTBEAT_PREFIX = "~h~"

# The token TradingView accepts from clients without a login; its quotes are delayed.
UNAUTHORIZED_TOKEN = "unauthorized_user_token"

QUOTE_FIELDS = ("lp", "lp_time", "ch", "chp", "volume", "update_mode", "current_session", "short_name", "description")


class ProtocolError(ValueError):
    """The server sent something that does not follow the framing or message format."""


@dataclasses.dataclass(frozen=True)
class Heartbeat:
    payload: str  # the whole "~h~<n>" text, echoed back as is


@dataclasses.dataclass(frozen=True)
class Message:
    method: str
    params: list


@dataclasses.dataclass(frozen=True)
class Hello:
    """The first payload of a session: server information without a method."""

    fields: dict


@dataclasses.dataclass(frozen=True)
class QuoteUpdate:
    """One symbol's changed fields from a `qsd` message."""

    symbol: str
    status: str  # "ok" or "error"
    values: dict[str, Any]


def encode_frame(payload: str) -> str:
    return f"{FRAME_MARKER}{len(payload)}{FRAME_MARKER}{payload}"


def encode_message(method: str, params: list) -> str:
    return encode_frame(json.dumps({"m": method, "p": params}, separators=(",", ":")))


def split_frames(message: str) -> list[str]:
    """Return the payloads of every frame in one websocket message."""
    payloads = []
    position = 0

    while position < len(message):
        if not message.startswith(FRAME_MARKER, position):
            raise ProtocolError(f"expected {FRAME_MARKER!r} at offset {position} of message {message[:80]!r}")

        length_start = position + len(FRAME_MARKER)
        length_end = message.find(FRAME_MARKER, length_start)
        length_text = message[length_start:length_end] if length_end != -1 else ""
        if not length_text.isdigit():
            raise ProtocolError(f"frame length {length_text!r} at offset {position} is not a number")

        payload_start = length_end + len(FRAME_MARKER)
        payload_end = payload_start + int(length_text)
        if payload_end > len(message):
            raise ProtocolError(
                f"frame at offset {position} announces {length_text} characters but only "
                f"{len(message) - payload_start} follow"
            )

        payloads.append(message[payload_start:payload_end])
        position = payload_end

    return payloads


def parse_payload(payload: str) -> Heartbeat | Message | Hello:
    """Classify one frame payload; JSON numbers become Decimal so prices stay exact."""
    if payload.startswith(HEARTBEAT_PREFIX):
        return Heartbeat(payload)

    try:
        data = json.loads(payload, parse_float=Decimal)
    except json.JSONDecodeError as error:
        raise ProtocolError(f"payload is neither a heartbeat nor JSON: {payload[:80]!r}") from error

    if not isinstance(data, dict):
        raise ProtocolError(f"payload is JSON but not an object: {payload[:80]!r}")
    if "m" not in data:
        return Hello(data)

    params = data.get("p", [])
    return Message(str(data["m"]), params if isinstance(params, list) else [params])


def parse_message(message: str) -> list[Heartbeat | Message | Hello]:
    return [parse_payload(payload) for payload in split_frames(message)]


def quote_updates(message: Message) -> list[QuoteUpdate]:
    """Return the symbol updates carried by a `qsd` message (one symbol per message in practice)."""
    updates = []
    for item in message.params[1:]:
        if isinstance(item, dict) and "n" in item:
            values = item.get("v") if isinstance(item.get("v"), dict) else {}
            updates.append(QuoteUpdate(str(item["n"]), str(item.get("s", "ok")), values))
    return updates


def is_delayed(update_mode: str | None) -> bool:
    return bool(update_mode) and update_mode.startswith("delayed")


def new_session_id(prefix: str = "qs") -> str:
    alphabet = string.ascii_lowercase + string.digits
    return f"{prefix}_" + "".join(secrets.choice(alphabet) for _ in range(12))


def subscription_messages(auth_token: str, session_id: str, symbols: list[str]) -> list[str]:
    """Return the frames that authenticate, open a quote session and subscribe `symbols`, in order."""
    return [
        encode_message("set_auth_token", [auth_token]),
        encode_message("quote_create_session", [session_id]),
        encode_message("quote_set_fields", [session_id, *QUOTE_FIELDS]),
        encode_message("quote_add_symbols", [session_id, *symbols]),
        encode_message("quote_fast_symbols", [session_id, *symbols]),
    ]

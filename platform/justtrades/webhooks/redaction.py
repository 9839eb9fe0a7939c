"""Redact secret-looking values from a raw webhook body before it is stored, then truncate it.

Alert templates often carry a passphrase or a broker token next to the trade fields, and the raw
webhook log must keep what arrived without keeping those. A key counts as secret-looking when its
name contains one of SECRET_KEY_WORDS, in any letter case.
"""

from __future__ import annotations

import hashlib
import json
import re
from decimal import Decimal
from typing import Any

REDACTED = "[REDACTED]"
SECRET_KEY_WORDS = (
    "passphrase",
    "password",
    "passwd",
    "secret",
    "token",
    "api_key",
    "apikey",
    "api-key",
    "access_key",
    "private_key",
    "auth",
)

# `key=value`, `key: value`, `"key": "value"` and `'key': 'value'`. A match covers the key and the
# separator only, and the value is read by a lookahead: when the key is not secret-looking, the scan
# goes on inside its value, where "https://host/hook?token=abc" still contains a secret. A key starts
# only where no key character precedes it, which keeps the scan linear on long runs of word
# characters. A quoted value may lack its closing quote (a body cut short), and a bare value may
# carry an auth scheme ("Authorization: Bearer abc"), so both the scheme and the credential go.
_PAIR = re.compile(
    r"""(?<![\w.-])["']?(?P<name>[\w.-]+)["']?\s*[:=]\s*"""
    r"""(?=(?P<value>"(?:[^"\\]|\\.)*(?:"|$)|'(?:[^'\\]|\\.)*(?:'|$)|(?:(?:bearer|basic|token)[ \t]+)?[^\s,;&}\]"']+))""",
    re.IGNORECASE,
)


def is_secret_key(key: str) -> bool:
    """Return True when a field name looks like it names a credential."""
    lowered = key.lower()
    return any(word in lowered for word in SECRET_KEY_WORDS)


def _redacted_like(value: str) -> str:
    quote = value[0] if value[0] in "\"'" else ""
    return f"{quote}{REDACTED}{quote}"


def redact_text(text: str) -> str:
    """Redact the values of secret-looking `key=value` and `key: value` pairs in free text."""
    pieces = []
    position = 0
    for match in _PAIR.finditer(text):
        # Pairs inside a value that was just redacted are gone with it.
        if match.start() < position or not is_secret_key(match["name"]):
            continue

        value = match["value"]
        pieces.append(text[position : match.end()])
        pieces.append(_redacted_like(value))
        position = match.end() + len(value)

    pieces.append(text[position:])
    return "".join(pieces)


class _Members(list):
    """The members of one JSON object as (key, value) pairs in document order, duplicate keys included."""


def _redact_value(value: Any, redactions: list[str]) -> Any:
    """Return `value` with secrets replaced, appending the name of each redacted key to `redactions`."""
    if isinstance(value, _Members):
        result = _Members()
        for key, item in value:
            if is_secret_key(key):
                redactions.append(key)
                result.append((key, REDACTED))
            else:
                result.append((key, _redact_value(item, redactions)))
        return result

    if isinstance(value, list):
        return [_redact_value(item, redactions) for item in value]

    if isinstance(value, str):
        # A string can itself contain pairs, such as a URL with "?token=..." in a comment field.
        redacted = redact_text(value)
        if redacted != value:
            redactions.append("(text)")
        return redacted
    return value


def _serialise(value: Any) -> str:
    """Write JSON compactly, keeping member order, duplicate keys and the exact text of every number."""
    if isinstance(value, _Members):
        members = (f"{json.dumps(key, ensure_ascii=False)}:{_serialise(item)}" for key, item in value)
        return "{" + ",".join(members) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_serialise(item) for item in value) + "]"
    if isinstance(value, Decimal):
        # Decimal keeps the number as written (21500.00 stays 21500.00), and NaN and Infinity
        # come out as Python's json module writes them.
        return str(value)
    return json.dumps(value, ensure_ascii=False)


def _redact_json(text: str) -> str | None:
    """Return the redacted JSON text, the input itself when nothing is secret, or None for non-JSON."""
    try:
        # Keeping every member, duplicates included, means an earlier duplicate of a secret key
        # cannot slip through: json.loads would otherwise keep only the last one.
        document = json.loads(text.lstrip("\ufeff"), parse_float=Decimal, parse_constant=Decimal, object_pairs_hook=_Members)
        redactions: list[str] = []
        redacted = _redact_value(document, redactions)
        return _serialise(redacted) if redactions else text
    except (ValueError, RecursionError):
        # Not JSON (or too deeply nested to walk): the free-text patterns take over.
        return None


def truncate_utf8(text: str, keep_bytes: int) -> tuple[str, bool]:
    """Cut `text` to at most `keep_bytes` bytes of UTF-8 without splitting a character."""
    encoded = text.encode("utf-8")
    if len(encoded) <= keep_bytes:
        return text, False
    return encoded[:keep_bytes].decode("utf-8", errors="ignore"), True


REPLACEMENT_CHARACTER = "\N{REPLACEMENT CHARACTER}"


def redact_body(body: bytes, keep_bytes: int) -> tuple[str, bool]:
    """Return the body as text with secrets redacted and cut to `keep_bytes`, and whether it was cut.

    Redaction runs before truncation, so a cut can never leave half of a secret behind. A JSON body
    in which nothing is secret comes back unchanged; one with secrets is written again compactly in
    its original key order.
    """
    if keep_bytes < 0:
        raise ValueError(f"keep_bytes {keep_bytes} is negative: pass 0 or more")

    # PostgreSQL text cannot hold a NUL character, so a NUL byte is kept as the replacement character, like a byte
    # that is not UTF-8.
    text = bytes(body).decode("utf-8", errors="replace").replace("\x00", REPLACEMENT_CHARACTER)
    redacted = _redact_json(text)
    if redacted is None:
        redacted = redact_text(text)
    return truncate_utf8(redacted, keep_bytes)


def token_digest(token: str) -> str:
    """Return the SHA-256 hex digest of a webhook token, which the raw webhook log stores instead of the token."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def token_tail(token: str) -> str:
    """Return the last four characters of a webhook token for display; "" when it has fewer than 12 characters."""
    return token[-4:].replace("\x00", REPLACEMENT_CHARACTER) if len(token) >= 12 else ""

"""Parse a TradingView alert body into an Alert, or reject it with an error naming the field and the fix.

The body is read as JSON whatever the Content-Type, because TradingView sends text/plain when the
message does not look like JSON to it. Numbers are parsed as Decimal, never through float, so that
a price arrives exactly as the alert wrote it. parse_alert raises AlertError for every bad input;
any other exception from it is a bug.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
import re
from decimal import Decimal
from typing import Any, Callable

from justtrades.markets.products import Product
from justtrades.markets.symbols import Contract, SymbolError, resolve_symbol, snap_to_tick

# The largest quantity one alert may ask for: far above any single order this platform places, so
# a larger number is a template error (a price or an account number in the quantity field).
MAX_QUANTITY = 10_000
# Prices at or above this are template errors too, and the bound keeps tick snapping within Decimal's
# default 28-digit precision.
MAX_PRICE = Decimal(10) ** 9
_MAX_SHOWN_CHARS = 60

_PLACEHOLDER = re.compile(r"\{\{[^{}]*\}\}")
_NUMERIC_TEXT = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")

TICKER_FIELDS = ("ticker", "symbol")
QUANTITY_FIELDS = ("quantity", "qty", "contracts")
TAKE_PROFIT_FIELDS = ("take_profit", "tp", "takeProfit")
STOP_LOSS_FIELDS = ("stop_loss", "sl", "stopLoss")
POSITION_SIZE_FIELDS = ("market_position_size", "position_size")
TIME_FIELDS = ("time", "timenow")
MARKET_POSITIONS = ("long", "short", "flat")
KNOWN_FIELDS = (
    "action",
    *TICKER_FIELDS,
    *QUANTITY_FIELDS,
    "price",
    *TAKE_PROFIT_FIELDS,
    *STOP_LOSS_FIELDS,
    "market_position",
    "prev_market_position",
    *POSITION_SIZE_FIELDS,
    *TIME_FIELDS,
)


class Action(enum.StrEnum):
    """What an alert asks for: open or add in a direction, or flatten."""

    BUY = "buy"
    SELL = "sell"
    CLOSE = "close"  # flatten any position in the symbol
    CLOSE_LONG = "close_long"  # flatten long positions only
    CLOSE_SHORT = "close_short"  # flatten short positions only


# Spellings after lower-casing and removing "_", "-" and spaces.
_ACTION_SPELLINGS = {
    "buy": Action.BUY,
    "sell": Action.SELL,
    "close": Action.CLOSE,
    "exit": Action.CLOSE,
    "closelong": Action.CLOSE_LONG,
    "exitlong": Action.CLOSE_LONG,
    "closeshort": Action.CLOSE_SHORT,
    "exitshort": Action.CLOSE_SHORT,
}
_ACCEPTED_ACTIONS_TEXT = "buy, sell, close (or exit), close_long (or closelong) and close_short (or closeshort)"


class AlertError(ValueError):
    """An alert body the platform cannot act on.

    `field` is the JSON field at fault, or "body" when the body as a whole is. `fields` lists every
    field at fault when there are several (unresolved placeholders). `message` states what is wrong
    with which value and what to do.
    """

    def __init__(self, field: str, message: str, fields: tuple[str, ...] | None = None):
        super().__init__(message)
        self.field = field
        self.message = message
        self.fields = fields or (field,)

    def to_dict(self) -> dict[str, str]:
        return {"error": self.message, "field": self.field}


@dataclasses.dataclass(frozen=True)
class Alert:
    """A parsed alert. Prices are Decimal; take_profit and stop_loss are already on the tick grid."""

    action: Action
    ticker: str  # as sent, exchange prefix and letter case included
    contract: Contract
    quantity: int | None = None  # None: the recorder's default quantity applies
    price: Decimal | None = None
    take_profit: Decimal | None = None
    stop_loss: Decimal | None = None
    market_position: str | None = None
    prev_market_position: str | None = None
    market_position_size: Decimal | None = None
    alert_time: str | None = None
    fingerprint_fields: dict[str, str | None] = dataclasses.field(default_factory=dict, compare=False)


def _clip(text: str) -> str:
    return text if len(text) <= _MAX_SHOWN_CHARS else text[:_MAX_SHOWN_CHARS] + "..."


def _shown(value: Any) -> str:
    """Return a short printable form of a received value for an error message."""
    if isinstance(value, str):
        return _clip(repr(value))
    if isinstance(value, (int, Decimal)) and not isinstance(value, bool):
        return _clip(str(value))

    try:
        return _clip(json.dumps(value, default=str))
    except (ValueError, RecursionError):
        return f"(a JSON {type(value).__name__})"


def _canonical(number: Decimal | None) -> str | None:
    """Write a number so that equal values read the same ("21500.00" and 21500 both become "21500")."""
    if number is None:
        return None

    normalized = number.normalize()
    # Plain notation for everyday magnitudes; scientific notation otherwise keeps the text short.
    if -30 <= normalized.adjusted() <= 30:
        return format(normalized, "f")
    return str(normalized)


# --- body ---------------------------------------------------------------------------------------


def _decode(body: bytes) -> str:
    if not isinstance(body, (bytes, bytearray)):
        raise AlertError("body", f"body must be bytes, got {type(body).__name__}")

    try:
        text = bytes(body).decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise AlertError("body", f"body is not valid UTF-8 (byte {error.start}): send the alert message as UTF-8 text") from None

    if not text.strip():
        raise AlertError("body", "empty body: put a JSON alert message such as {\"action\": \"buy\", \"ticker\": \"NQ1!\"} in the TradingView alert")
    return text


def _unique_placeholders(text: str) -> list[str]:
    return list(dict.fromkeys(_PLACEHOLDER.findall(text)))


class _ConflictingField(Exception):
    """A known alert field set twice to different values, raised out of json.loads and turned into AlertError."""

    def __init__(self, name: str, first: Any, second: Any):
        super().__init__(name)
        self.name, self.first, self.second = name, first, second


def _object_without_conflicts(pairs: list[tuple[str, Any]]) -> dict:
    """Build a JSON object, raising _ConflictingField for an alert field set twice to different values.

    The json module keeps the last of two equal keys. For {"action": "buy", "action": "sell"} that would place a
    sell order from an alert whose author may have meant either, so the alert is rejected instead.
    NOTE: json.loads calls the hook for nested objects too, without their depth. So a nested object that sets
    a field name such as "price" twice to different values is rejected as well, though the parser never reads it.
    """
    document = {}
    for name, value in pairs:
        if name in document and name in KNOWN_FIELDS and document[name] != value:
            raise _ConflictingField(name, document[name], value)
        document[name] = value
    return document


def _load_json(text: str) -> Any:
    try:
        return json.loads(text, parse_float=Decimal, parse_constant=Decimal,
                          object_pairs_hook=_object_without_conflicts)
    except _ConflictingField as conflict:
        raise AlertError(conflict.name, f'field "{conflict.name}" is set twice, to {_shown(conflict.first)} and '
                         f'{_shown(conflict.second)}: keep one "{conflict.name}" in the alert message') from None
    except json.JSONDecodeError as error:
        placeholders = _unique_placeholders(text)
        if placeholders:
            names = ", ".join(_clip(p) for p in placeholders[:10])
            raise AlertError(
                "body",
                f"unresolved TradingView placeholders {names}: TradingView left them unreplaced, so the body is not JSON; "
                "use placeholders that exist for this alert (strategy.* ones only in strategy alerts) "
                "and quote text placeholders",
            ) from None
        # Some of the json module's messages end in " at" themselves ("Invalid control character at").
        reason = error.msg.removesuffix(" at")
        raise AlertError(
            "body",
            f"body is not JSON: {reason} at line {error.lineno} column {error.colno} (char {error.pos}); "
            "send a JSON object such as {\"action\": \"buy\", \"ticker\": \"NQ1!\"}",
        ) from None
    except RecursionError:
        raise AlertError("body", "body nests JSON arrays or objects too deeply: send a flat JSON object of alert fields") from None
    except ValueError:
        # Python reads integers of at most sys.get_int_max_str_digits() digits (4300 unless configured).
        raise AlertError("body", "body contains a number with too many digits to read: send prices and quantities "
                         "as ordinary numbers") from None


def _require_object(document: Any) -> dict:
    if not isinstance(document, dict):
        kind = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(type(document), "a number")
        raise AlertError("body", f"body must be a JSON object, got {kind}: send {{\"action\": ..., \"ticker\": ...}}")
    return document


def _reject_unstorable_text(fields: dict) -> None:
    # The activity row and the error message keep these fields, and two kinds of character cannot be stored there.
    # JSON may escape half of a UTF-16 pair ("\ud800") on its own: Python keeps it in the string, but UTF-8 has no
    # form for it. And "\u0000" gives a NUL character, which PostgreSQL text cannot hold. Either made the delivery
    # fail with 503.
    for name, value in fields.items():
        if name not in KNOWN_FIELDS or not isinstance(value, str):
            continue
        if "\x00" in value:
            raise AlertError(name, f'field "{name}" contains \\u0000, a NUL character, which no alert field takes: '
                             "send the text without it")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as error:
            escape = f"\\u{ord(value[error.start]):04x}"
            raise AlertError(name, f'field "{name}" contains {escape}, half of a UTF-16 surrogate pair without its other '
                             "half: send the text without that escape") from None


def _reject_placeholders(fields: dict) -> None:
    found_by_field = {name: _unique_placeholders(value) for name, value in fields.items() if name in KNOWN_FIELDS and isinstance(value, str)}
    unresolved = {name: found for name, found in found_by_field.items() if found}
    if not unresolved:
        return

    names = ", ".join(f'"{name}"' for name in unresolved)
    placeholders = ", ".join(_clip(p) for found in unresolved.values() for p in found[:3])
    subject = f"fields {names} contain" if len(unresolved) > 1 else f"field {names} contains"
    raise AlertError(
        next(iter(unresolved)),
        f"{subject} unresolved TradingView placeholders ({placeholders}): "
        "use placeholders that exist for this alert (strategy.* ones only in strategy alerts)",
        fields=tuple(unresolved),
    )


# --- fields -------------------------------------------------------------------------------------


def _first_present(fields: dict, names: tuple[str, ...]) -> tuple[str, Any]:
    """Return the first of `names` that the alert sets to something other than null."""
    for name in names:
        if fields.get(name) is not None:
            return name, fields[name]
    return names[0], None


def _unknown_fields_hint(fields: dict) -> str:
    """Return the alert's field names the parser does not read, for the message of a missing field.

    Field names are case-sensitive, so "Action" or a misspelt "actoin" leaves the action missing.
    """
    unknown = [name for name in fields if name not in KNOWN_FIELDS]
    if not unknown:
        return ""
    names = ", ".join(_clip(repr(name)) for name in unknown[:5])
    more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
    return f"; the alert has fields the parser does not read: {names}{more}"


def _parse_action(fields: dict) -> Action:
    value = fields.get("action")
    if value is None:
        raise AlertError("action", f"action is missing: set \"action\" to one of {_ACCEPTED_ACTIONS_TEXT}"
                         f"{_unknown_fields_hint(fields)}")
    if not isinstance(value, str):
        raise AlertError("action", f"action {_shown(value)} is not text: set it to one of {_ACCEPTED_ACTIONS_TEXT}")

    spelling = re.sub(r"[\s_-]", "", value).lower()
    action = _ACTION_SPELLINGS.get(spelling)
    if action is None:
        raise AlertError("action", f"action {_shown(value)} is not supported: use one of {_ACCEPTED_ACTIONS_TEXT}")
    return action


def _parse_contract(fields: dict, now: dt.datetime) -> tuple[str, Contract]:
    name, value = _first_present(fields, TICKER_FIELDS)
    if value is None:
        raise AlertError("ticker", "ticker is missing: set \"ticker\" to a symbol such as \"NQ1!\" or \"{{ticker}}\""
                         f"{_unknown_fields_hint(fields)}")
    if not isinstance(value, str):
        raise AlertError(name, f"{name} {_shown(value)} is not text: send a symbol such as \"NQ1!\"")

    try:
        return value, resolve_symbol(value, now)
    except SymbolError as error:
        raise AlertError(name, error.message) from None


def _to_decimal(name: str, value: Any, example: str = "21500.25") -> Decimal:
    """Convert a JSON number or numeric string to a finite Decimal, or raise AlertError naming the field.

    `example` is the value the error message suggests: a price by default.
    """
    if isinstance(value, bool) or not isinstance(value, (int, Decimal, str)):
        raise AlertError(name, f"{name} {_shown(value)} is not a number: send a number such as {example}")

    if isinstance(value, str):
        text = value.strip()
        if not text:
            raise AlertError(name, f"{name} is empty: send a number or leave the field out")
        if not _NUMERIC_TEXT.fullmatch(text):
            raise AlertError(name, f"{name} {_shown(value)} is not a number: send a number such as {example}")
        value = text

    number = Decimal(value)
    if not number.is_finite():
        raise AlertError(name, f"{name} {_shown(value)} is not a finite number: send a number such as {example}")
    return number


def _parse_aliases(fields: dict, names: tuple[str, ...], parse_one: Callable[[str, Any], Any]) -> tuple[str, Any]:
    """Parse the first of `names` that the alert sets; another of them set to a different value is rejected.

    Templates name one field in several ways ("qty", "contracts"), and two different values would leave the
    order size or a bracket level to a guess.
    """
    present = [(name, fields[name]) for name in names if fields.get(name) is not None]
    if not present:
        return names[0], None

    first_name, first = present[0][0], parse_one(*present[0])
    for name, value in present[1:]:
        other = parse_one(name, value)
        if other != first:
            raise AlertError(name, f'"{first_name}" is {_shown(first)} but "{name}" is {_shown(other)}, two names '
                             f'for one field: keep one of them in the alert message')
    return first_name, first


def _parse_price(fields: dict, names: tuple[str, ...], product: Product) -> tuple[str, Decimal | None]:
    return _parse_aliases(fields, names, lambda name, value: _price_value(name, value, product))


def _price_value(name: str, value: Any, product: Product) -> Decimal:
    number = _to_decimal(name, value)
    if number <= 0:
        raise AlertError(name, f"{name} {_shown(number)} must be positive: send the price in the instrument's quote units")
    if number < product.tick_size:
        raise AlertError(name, f"{name} {_shown(number)} is below one tick ({product.tick_size}) of {product.root}: send a real price level")
    if number >= MAX_PRICE:
        raise AlertError(name, f"{name} {_shown(number)} is too large for a futures price: check the alert template")
    return number


def _parse_bracket(fields: dict, names: tuple[str, ...], product: Product) -> tuple[str, Decimal | None]:
    # A price of at least one tick never snaps to zero, so the snapped level is positive.
    name, number = _parse_price(fields, names, product)
    return name, None if number is None else snap_to_tick(number, product)


def _check_bracket_sides(action: Action, price: Decimal | None, take_profit: tuple[str, Decimal | None],
                         stop_loss: tuple[str, Decimal | None]) -> None:
    """Reject brackets on the wrong side of an entry, which a broker rejects or triggers as soon as the entry fills.

    A buy takes profit above its price and stops out below it, and a sell the other way round. Without a price,
    the take-profit and the stop-loss are checked against each other. Closes place no brackets. Each level comes
    as (field name, level), so the error names the field the alert used.
    """
    if action not in (Action.BUY, Action.SELL):
        return
    long = action is Action.BUY
    (profit_name, profit), (stop_name, stop) = take_profit, stop_loss
    profit_side, stop_side = ("above", "below") if long else ("below", "above")
    direction = "a buy (long)" if long else "a sell (short)"

    if price is not None and profit is not None and (profit <= price if long else profit >= price):
        raise AlertError(profit_name, f"{profit_name} {_shown(profit)} is not {profit_side} the price "
                         f"{_shown(price)} of {direction}: send a take-profit level {profit_side} the entry")
    if price is not None and stop is not None and (stop >= price if long else stop <= price):
        raise AlertError(stop_name, f"{stop_name} {_shown(stop)} is not {stop_side} the price "
                         f"{_shown(price)} of {direction}: send a stop-loss level {stop_side} the entry")
    if profit is not None and stop is not None and (profit <= stop if long else profit >= stop):
        raise AlertError(profit_name, f"{profit_name} {_shown(profit)} is not {profit_side} {stop_name} "
                         f"{_shown(stop)} of {direction}: swap the two levels or check the alert template")


def _parse_quantity(fields: dict) -> int | None:
    return _parse_aliases(fields, QUANTITY_FIELDS, _quantity_value)[1]


def _quantity_value(name: str, value: Any) -> int:
    number = _to_decimal(name, value, example="2")
    if number <= 0 or number != number.to_integral_value():
        raise AlertError(name, f"{name} {_shown(value)} is not a positive whole number of contracts: send 1 or more")
    if number > MAX_QUANTITY:
        raise AlertError(name, f"{name} {_shown(number)} is above the limit of {MAX_QUANTITY} contracts per alert: check the alert template")
    return int(number)


def _parse_market_position(fields: dict, name: str) -> str | None:
    value = fields.get(name)
    if value is None:
        return None

    text = value.strip().lower() if isinstance(value, str) else None
    if text not in MARKET_POSITIONS:
        raise AlertError(name, f"{name} {_shown(value)} is not a market position: send long, short or flat")
    return text


def _parse_position_size(fields: dict) -> Decimal | None:
    # Stored as sent: TradingView's strategy.market_position_size is unsigned, strategy.position_size is signed.
    name, value = _first_present(fields, POSITION_SIZE_FIELDS)
    if value is None:
        return None
    return _to_decimal(name, value)


def _parse_alert_time(fields: dict) -> str | None:
    name, value = _first_present(fields, TIME_FIELDS)
    if value is None:
        return None

    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise AlertError(name, f"{name} {_shown(value)} is not a time: send TradingView's {{{{{name}}}}} text")
    return str(value).strip() if isinstance(value, str) else str(value)


# --- alert --------------------------------------------------------------------------------------


def parse_alert(body: bytes, now: dt.datetime) -> Alert:
    """Parse an alert body received at `now` (timezone-aware, for symbol resolution), or raise AlertError."""

    # The body as a whole: UTF-8 text holding a JSON object without unresolved placeholders.
    fields = _require_object(_load_json(_decode(body)))
    _reject_unstorable_text(fields)
    _reject_placeholders(fields)

    # What to trade: the action and the contract decide everything after them.
    action = _parse_action(fields)
    ticker, contract = _parse_contract(fields, now)

    # Quantity and prices. Brackets snap to the tick grid here, before any broker call.
    quantity = _parse_quantity(fields)
    _, price = _parse_price(fields, ("price",), contract.product)
    profit_name, take_profit = _parse_bracket(fields, TAKE_PROFIT_FIELDS, contract.product)
    stop_name, stop_loss = _parse_bracket(fields, STOP_LOSS_FIELDS, contract.product)
    _check_bracket_sides(action, price, (profit_name, take_profit), (stop_name, stop_loss))

    # Strategy context, kept for the activity log and for close_long/close_short decisions.
    market_position = _parse_market_position(fields, "market_position")
    prev_market_position = _parse_market_position(fields, "prev_market_position")
    market_position_size = _parse_position_size(fields)
    alert_time = _parse_alert_time(fields)

    fingerprint = {
        "action": action.value,
        "symbol": contract.symbol,
        "quantity": None if quantity is None else str(quantity),
        "price": _canonical(price),
        "take_profit": _canonical(take_profit),
        "stop_loss": _canonical(stop_loss),
        "market_position": market_position,
        "prev_market_position": prev_market_position,
        "market_position_size": _canonical(market_position_size),
        "alert_time": alert_time,
    }
    return Alert(
        action=action,
        ticker=ticker,
        contract=contract,
        quantity=quantity,
        price=price,
        take_profit=take_profit,
        stop_loss=stop_loss,
        market_position=market_position,
        prev_market_position=prev_market_position,
        market_position_size=market_position_size,
        alert_time=alert_time,
        fingerprint_fields=fingerprint,
    )

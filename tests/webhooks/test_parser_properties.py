"""Property tests: parse_alert returns an Alert or raises AlertError for any input, and its results keep their promises."""

import datetime as dt
import json
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from justtrades.markets.products import PRODUCTS
from justtrades.webhooks.parser import KNOWN_FIELDS, MAX_QUANTITY, Action, Alert, AlertError, parse_alert

REFERENCE = dt.datetime(2026, 12, 3, 15, 30, tzinfo=dt.timezone.utc)


def outcome(body: bytes, now: dt.datetime = REFERENCE) -> Alert | AlertError:
    """Parse the body; any exception other than AlertError fails the test."""
    try:
        return parse_alert(body, now)
    except AlertError as error:
        return error


def check_contract(result: Alert | AlertError) -> None:
    if isinstance(result, AlertError):
        assert result.field
        assert result.message
        assert result.to_dict() == {"error": result.message, "field": result.field}
        return

    product = result.contract.product
    assert isinstance(result.action, Action)
    assert result.quantity is None or 1 <= result.quantity <= MAX_QUANTITY
    assert result.price is None or result.price > 0
    for bracket in (result.take_profit, result.stop_loss):
        assert bracket is None or (bracket > 0 and bracket % product.tick_size == 0)
    assert result.market_position in (None, "long", "short", "flat")
    assert result.prev_market_position in (None, "long", "short", "flat")


json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.builds("{}.{}e{}".format, st.integers(-(10**9), 10**9), st.integers(0, 10**6), st.integers(-40, 40)),
    st.text(max_size=30),
)
json_values = st.recursive(json_scalars, lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4), max_leaves=10)
field_names = st.one_of(st.sampled_from(KNOWN_FIELDS), st.text(max_size=12))
json_objects = st.dictionaries(field_names, json_values, max_size=8)

moments = st.datetimes(min_value=dt.datetime(2001, 1, 1), max_value=dt.datetime(2090, 12, 31), timezones=st.just(dt.timezone.utc))


@given(st.binary(max_size=400))
def test_any_bytes_alert_or_error(body):
    check_contract(outcome(body))


@given(st.text(max_size=200))
def test_any_text_alert_or_error(text):
    check_contract(outcome(text.encode("utf-8", errors="surrogatepass")))


@given(json_objects)
def test_any_json_object_alert_or_error(document):
    check_contract(outcome(json.dumps(document).encode()))


tickers = st.one_of(
    st.sampled_from([f"{root}{index}!" for root in PRODUCTS for index in (1, 2)]),
    st.builds(lambda root, month, year: f"{root}{month}{year}", st.sampled_from(sorted(PRODUCTS)), st.sampled_from("FGHJKMNQUVXZAB"), st.integers(0, 2099).map(str)),
    st.builds(lambda prefix, ticker: f"{prefix}:{ticker}", st.sampled_from(["CME_MINI", "COMEX", "NYMEX", "CBOT", ""]), st.sampled_from(["NQ1!", "gc1!", "CLF7"])),
    st.text(max_size=12),
)
numbers = st.one_of(
    st.integers(-10, 10**6),
    st.builds(lambda units, ten_thousandths: Decimal(units) + Decimal(ten_thousandths) / 10000, st.integers(-10, 10**6), st.integers(0, 9999)),
    st.floats(allow_nan=True, allow_infinity=True),
)
number_fields = st.one_of(numbers, numbers.map(str), st.sampled_from(["", "abc", "1e400", "-0", "{{close}}", None, True]))
actions = st.one_of(
    st.sampled_from(["buy", "SELL", " close ", "exit", "closelong", "close_short", "Close Long", "hold", "", "{{strategy.order.action}}"]),
    st.text(max_size=10),
)


def encode_number(value):
    return str(value) if isinstance(value, Decimal) else value


@st.composite
def plausible_alerts(draw):
    """Draw alerts shaped like real templates, with values that are often valid and sometimes not."""
    document = {"action": draw(actions), draw(st.sampled_from(["ticker", "symbol"])): draw(tickers)}
    for names in (("quantity", "qty", "contracts"), ("price",), ("take_profit", "tp", "takeProfit"), ("stop_loss", "sl", "stopLoss"), ("market_position_size", "position_size")):
        if draw(st.booleans()):
            document[draw(st.sampled_from(names))] = encode_number(draw(number_fields))
    for name in ("market_position", "prev_market_position"):
        if draw(st.booleans()):
            document[name] = draw(st.sampled_from(["long", "Short", "FLAT", "up", "", 1]))
    if draw(st.booleans()):
        document[draw(st.sampled_from(["time", "timenow"]))] = draw(st.one_of(st.text(max_size=25), st.integers()))
    return json.dumps(document)


@given(plausible_alerts(), moments)
def test_plausible_alerts_alert_or_error(body, now):
    check_contract(outcome(body.encode(), now))


@given(
    st.sampled_from(sorted(PRODUCTS)),
    st.builds(lambda units, fraction: Decimal(units) + Decimal(fraction) / 100000, st.integers(1, 99998), st.integers(0, 99999)),
    st.sampled_from(["buy", "sell"]),
    st.sampled_from(["tp", "sl"]),
)
def test_valid_bracket_snaps_within_half_tick(root, level, action, field):
    # One level at a time: a take-profit and a stop-loss at the same level would be on the wrong side of each other.
    body = json.dumps({"action": action, "ticker": f"{root}1!", field: str(level)})
    alert = parse_alert(body.encode(), REFERENCE)
    tick = PRODUCTS[root].tick_size
    snapped = alert.take_profit if field == "tp" else alert.stop_loss

    assert snapped % tick == 0
    assert abs(snapped - level) <= tick / 2


@given(moments, st.sampled_from(sorted(PRODUCTS)))
def test_front_contract_tradeable_any_time(now, root):
    alert = parse_alert(json.dumps({"action": "buy", "ticker": f"{root}1!"}).encode(), now)

    assert not alert.contract.is_expired(now)
    assert alert.contract.symbol.startswith(root)
    assert alert.contract.symbol[-1] == str(alert.contract.year % 10)


@given(st.dictionaries(st.text(max_size=12), json_scalars, max_size=6))
def test_fingerprint_ignores_unknown_fields(extra):
    base = {"action": "buy", "ticker": "NQ1!", "price": 21500}
    unknown_only = {key: value for key, value in extra.items() if key not in KNOWN_FIELDS}

    first = parse_alert(json.dumps(base).encode(), REFERENCE)
    second = parse_alert(json.dumps({**unknown_only, **base}).encode(), REFERENCE)

    assert first.fingerprint_fields == second.fingerprint_fields

"""Alert parser: every recorded TradingView delivery form, plus field-by-field rules."""

import datetime as dt
import json
from decimal import Decimal

import pytest

from justtrades.webhooks.parser import MAX_QUANTITY, Action, Alert, AlertError, parse_alert

from ..conftest import case_body, load_shared_cases

REFERENCE = dt.datetime(2026, 12, 3, 15, 30, tzinfo=dt.timezone.utc)
CASES = {case["id"]: case for case in load_shared_cases()}


def parse(body: bytes | str) -> Alert:
    return parse_alert(body.encode("utf-8") if isinstance(body, str) else body, REFERENCE)


def parse_error(body: bytes | str) -> AlertError:
    with pytest.raises(AlertError) as caught:
        parse(body)
    return caught.value


def alert_json(**fields) -> str:
    return json.dumps({"action": "buy", "ticker": "NQ1!", **fields})


# --- the recorded delivery forms ----------------------------------------------------------------


def check_w01(alert):
    assert alert.action is Action.BUY
    assert alert.ticker == "NQZ6"
    assert alert.contract.symbol == "NQZ6"
    assert alert.price == Decimal("21500.00")
    assert alert.quantity is None


def check_w02(alert):
    assert alert.action is Action.SELL
    assert alert.ticker == "NQ1!"
    assert alert.contract.symbol == "NQZ6"
    assert alert.price == Decimal("21480.25")


def check_w03(alert):
    assert alert.action is Action.BUY
    assert alert.ticker == "mnq1!"
    assert alert.contract.symbol == "MNQZ6"
    assert alert.price == Decimal("24893")


def check_w04(alert):
    assert alert.contract.symbol == "MNQZ6"
    assert alert.quantity == 2
    assert alert.price == Decimal("24893.00")


def check_w05(alert):
    assert alert.action is Action.CLOSE_LONG
    assert alert.contract.symbol == "NQZ6"


def check_w06(alert):
    assert alert.action is Action.CLOSE_SHORT
    assert alert.contract.symbol == "NQZ6"


def check_w07(alert):
    assert alert.action is Action.CLOSE
    assert alert.contract.symbol == "ESZ6"


def check_w08(alert):
    assert alert.action is Action.CLOSE
    assert alert.contract.symbol == "ESZ6"


def check_w09(alert):
    assert alert.contract.product.root == "GC"
    assert alert.contract.symbol == "GCG7"
    assert alert.price == Decimal("2945.3")
    assert alert.take_profit == Decimal("2955.4")
    assert alert.stop_loss == Decimal("2940.1")


def check_w10(alert):
    assert alert.ticker == "CME_MINI:ES1!"
    assert alert.contract.symbol == "ESZ6"
    assert alert.price == Decimal("6120.5")


def check_w11(error):
    assert error.field == "body"
    assert error.message.startswith("unresolved TradingView placeholders {{strategy.order.action}}, {{ticker}}, {{close}}")


def check_w12(error):
    assert error.field == "action"
    assert error.fields == ("action", "price")
    assert '"action", "price"' in error.message
    assert "{{strategy.order.action}}" in error.message
    assert "{{close}}" in error.message


def check_w13(error):
    assert error.field == "body"
    assert error.message.startswith("body is not JSON:")
    assert "line 1 column 1" in error.message


def check_w14(error):
    assert error.field == "body"
    assert error.message.startswith("body is not JSON:")
    assert "line 1 column 33 (char 32)" in error.message


def check_w15(error):
    assert error.field == "body"
    assert error.message.startswith("empty body")


def check_w16(error):
    assert error.field == "action"
    assert "'hold'" in error.message
    for accepted in ("buy", "sell", "close", "exit", "close_long", "close_short"):
        assert accepted in error.message


def check_w17(error):
    assert error.field == "ticker"
    assert "ticker is missing" in error.message


def check_w18(error):
    assert error.field == "ticker"
    assert "unknown symbol ZZZ" in error.message


def check_w19(alert):
    # The unknown webhook token is an ingestion concern; the body itself is a valid alert.
    assert alert.action is Action.BUY
    assert alert.contract.symbol == "NQZ6"


def check_w20(alert):
    # The size limit is an ingestion concern; the body itself is a valid alert.
    assert alert.action is Action.BUY
    assert alert.contract.symbol == "NQZ6"


def check_w21(alert):
    # Duplicate detection is an ingestion concern; the parser supplies a stable fingerprint.
    assert alert.contract.symbol == "NQZ6"
    assert alert.price == Decimal("21500")
    assert alert.alert_time == "2026-12-03T15:30:00Z"
    assert alert.fingerprint_fields["alert_time"] == "2026-12-03T15:30:00Z"


CHECKS = {
    "W01": check_w01, "W02": check_w02, "W03": check_w03, "W04": check_w04, "W05": check_w05,
    "W06": check_w06, "W07": check_w07, "W08": check_w08, "W09": check_w09, "W10": check_w10,
    "W11": check_w11, "W12": check_w12, "W13": check_w13, "W14": check_w14, "W15": check_w15,
    "W16": check_w16, "W17": check_w17, "W18": check_w18, "W19": check_w19, "W20": check_w20,
    "W21": check_w21,
}  # fmt: skip


def test_every_case_has_a_check():
    assert len(CASES) == 21
    assert set(CASES) == set(CHECKS)


@pytest.mark.parametrize("case_id", sorted(CASES))
def test_recorded_delivery(case_id):
    case = CASES[case_id]
    check = CHECKS[case_id]

    if case["outcome"] == "rejected":
        error = parse_error(case_body(case))
        check(error)
        assert error.to_dict() == {"error": error.message, "field": error.field}
    else:
        check(parse(case_body(case)))


def test_duplicate_deliveries_same_fingerprint():
    body = case_body(CASES["W21"])
    fingerprints = [parse(body).fingerprint_fields for _ in range(4)]

    assert all(fingerprint == fingerprints[0] for fingerprint in fingerprints)


# --- body ---------------------------------------------------------------------------------------


def test_utf8_bom_and_trailing_whitespace():
    alert = parse(b"\xef\xbb\xbf" + alert_json().encode() + b" \r\n\t\n")

    assert alert.contract.symbol == "NQZ6"


def test_whitespace_only_body_empty():
    error = parse_error(b" \n\t ")

    assert error.field == "body"
    assert error.message.startswith("empty body")


def test_invalid_utf8_rejected():
    error = parse_error(b'{"action":"buy","ticker":"NQ1!","note":"\xff"}')

    assert error.field == "body"
    assert "UTF-8" in error.message


def test_lone_surrogate_escape_rejected():
    error = parse_error(b'{"action":"buy","ticker":"ES1!\\ud800"}')

    assert error.field == "ticker"
    assert "\\ud800" in error.message


def test_surrogate_pair_escape_reaches_resolver():
    error = parse_error(b'{"action":"buy","ticker":"NQ\\ud83d\\ude00"}')

    assert error.field == "ticker"
    assert "surrogate" not in error.message


@pytest.mark.parametrize("body, kind", [("[]", "an array"), ('"buy"', "a string"), ("12", "a number"), ("null", "null"), ("true", "a boolean")])
def test_non_object_body_rejected(body, kind):
    error = parse_error(body)

    assert error.field == "body"
    assert f"must be a JSON object, got {kind}" in error.message


def test_deep_nesting_rejected():
    error = parse_error("[" * 100_000 + "]" * 100_000)

    assert error.field == "body"
    assert "too deeply" in error.message


def test_huge_integer_rejected():
    error = parse_error('{"action":"buy","ticker":"NQ1!","price":' + "9" * 5000 + "}")

    assert error.field in ("body", "price")
    assert "too many digits" in error.message


def test_control_character_message_reads_once():
    error = parse_error('{"action":"buy","ticker":"NQ1!","note":"a\x01b"}')

    assert error.field == "body"
    assert "Invalid control character at line 1" in error.message
    assert " at at " not in error.message


def test_placeholder_in_unknown_field_ignored():
    alert = parse(alert_json(comment="{{strategy.order.comment}}"))

    assert alert.contract.symbol == "NQZ6"


def test_single_placeholder_field_named():
    error = parse_error(alert_json(ticker="{{ticker}}"))

    assert error.field == "ticker"
    assert error.fields == ("ticker",)
    assert 'field "ticker" contains' in error.message


def test_unknown_fields_ignored():
    alert = parse(alert_json(comment="hello", strategy={"id": 7}, passphrase="secret"))

    assert alert.action is Action.BUY


# --- action -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sent, action",
    [
        ("buy", Action.BUY),
        ("BUY", Action.BUY),
        (" Sell ", Action.SELL),
        ("close", Action.CLOSE),
        ("EXIT", Action.CLOSE),
        ("closelong", Action.CLOSE_LONG),
        ("close_long", Action.CLOSE_LONG),
        ("Close Long", Action.CLOSE_LONG),
        ("exit_long", Action.CLOSE_LONG),
        ("closeshort", Action.CLOSE_SHORT),
        ("CLOSE_SHORT", Action.CLOSE_SHORT),
        ("close-short", Action.CLOSE_SHORT),
    ],
)
def test_action_spellings(sent, action):
    assert parse(alert_json(action=sent)).action is action


def test_action_values_are_strings():
    assert Action.CLOSE_LONG == "close_long"
    assert [a.value for a in Action] == ["buy", "sell", "close", "close_long", "close_short"]


def test_action_missing():
    error = parse_error('{"ticker":"NQ1!"}')

    assert error.field == "action"
    assert "action is missing" in error.message


def test_action_missing_lists_unread_fields():
    error = parse_error('{"Action":"buy","actión":"sell","ticker":"NQ1!"}')

    assert error.field == "action"
    assert "'Action'" in error.message
    assert "'actión'" in error.message


def test_ticker_missing_lists_unread_fields():
    error = parse_error('{"action":"buy","Ticker":"NQ1!"}')

    assert error.field == "ticker"
    assert "'Ticker'" in error.message


def test_conflicting_duplicate_field_rejected():
    error = parse_error('{"action":"buy","ticker":"NQ1!","action":"sell"}')

    assert error.field == "action"
    assert "'buy'" in error.message
    assert "'sell'" in error.message


def test_repeated_equal_field_accepted():
    assert parse('{"action":"buy","ticker":"NQ1!","action":"buy"}').action is Action.BUY


def test_duplicate_unknown_field_ignored():
    assert parse('{"action":"buy","ticker":"NQ1!","note":"a","note":"b"}').action is Action.BUY


@pytest.mark.parametrize("value", [1, True, ["buy"], {"side": "buy"}])
def test_action_not_text(value):
    error = parse_error(json.dumps({"action": value, "ticker": "NQ1!"}))

    assert error.field == "action"
    assert "not text" in error.message


# --- ticker -------------------------------------------------------------------------------------


def test_symbol_field_accepted():
    alert = parse('{"action":"buy","symbol":"COMEX:GC1!"}')

    assert alert.ticker == "COMEX:GC1!"
    assert alert.contract.symbol == "GCG7"


def test_null_ticker_uses_symbol():
    alert = parse('{"action":"buy","ticker":null,"symbol":"ES1!"}')

    assert alert.contract.symbol == "ESZ6"


def test_symbol_error_names_symbol_field():
    error = parse_error('{"action":"buy","symbol":"ZZZ1!"}')

    assert error.field == "symbol"
    assert "unknown symbol ZZZ" in error.message


def test_ticker_not_text():
    error = parse_error('{"action":"buy","ticker":123}')

    assert error.field == "ticker"
    assert "123" in error.message


def test_expired_contract_rejected():
    error = parse_error(alert_json(ticker="NQH5"))

    assert error.field == "ticker"
    assert "contract NQH5 expired on 2025-03-21" in error.message


# --- quantity -----------------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["quantity", "qty", "contracts"])
@pytest.mark.parametrize("value, expected", [(3, 3), ("3", 3), (" 3 ", 3), (3.0, 3), ("3.00", 3), ("1e1", 10)])
def test_quantity_forms(field, value, expected):
    alert = parse(json.dumps({"action": "buy", "ticker": "NQ1!", field: value}))

    assert alert.quantity == expected
    assert type(alert.quantity) is int


@pytest.mark.parametrize("value", [0, -1, 2.5, "2.5", "abc", "", True, [1], {"n": 1}, "NaN", MAX_QUANTITY + 1])
def test_quantity_rejected(value):
    error = parse_error(json.dumps({"action": "buy", "ticker": "NQ1!", "qty": value}))

    assert error.field == "qty"
    assert error.message.startswith("qty")


@pytest.mark.parametrize("value", [True, "abc"])
def test_quantity_error_suggests_contract_count(value):
    error = parse_error(json.dumps({"action": "buy", "ticker": "NQ1!", "contracts": value}))

    assert "such as 2" in error.message
    assert "21500.25" not in error.message


def test_quantity_at_limit_accepted():
    assert parse(alert_json(quantity=MAX_QUANTITY)).quantity == MAX_QUANTITY


def test_quantity_aliases_with_equal_values_pass():
    assert parse(alert_json(quantity=3, qty="3", contracts=3.0)).quantity == 3


def test_quantity_aliases_with_different_values_rejected():
    error = parse_error(alert_json(quantity=1, qty=5))

    assert error.field == "qty"
    assert error.message == '"quantity" is 1 but "qty" is 5, two names for one field: keep one of them in the alert message'


def test_bracket_aliases_with_different_values_rejected():
    error = parse_error(alert_json(price=21500, tp=21510, take_profit=21520))

    assert error.field == "tp"
    assert '"take_profit" is 21520 but "tp" is 21510' in error.message


def test_quantity_null_means_absent():
    assert parse(alert_json(quantity=None)).quantity is None


# --- prices -------------------------------------------------------------------------------------


def test_price_parsed_exactly():
    alert = parse('{"action":"buy","ticker":"NQ1!","price":21500.1234567890123456789}')

    assert alert.price == Decimal("21500.1234567890123456789")
    assert isinstance(alert.price, Decimal)


@pytest.mark.parametrize("value", ['"21500.25"', "21500.25", '"2.150025e4"', "2.150025E4"])
def test_price_numeric_forms(value):
    alert = parse('{"action":"buy","ticker":"NQ1!","price":' + value + "}")

    assert alert.price == Decimal("21500.25")


@pytest.mark.parametrize(
    "value, words",
    [
        ("0", "must be positive"),
        ("-5", "must be positive"),
        ("NaN", "not a finite number"),
        ("Infinity", "not a finite number"),
        ("-Infinity", "not a finite number"),
        ('"NaN"', "not a number"),
        ('"inf"', "not a number"),
        ('"1_000"', "not a number"),
        ('"abc"', "not a number"),
        ('""', "is empty"),
        ("true", "not a number"),
        ("[1]", "not a number"),
        ("0.1", "below one tick"),
        ("1e-99999", "below one tick"),
        ("1e12", "too large"),
    ],
)
def test_price_rejected(value, words):
    error = parse_error('{"action":"buy","ticker":"NQ1!","price":' + value + "}")

    assert error.field == "price"
    assert words in error.message


@pytest.mark.parametrize("field", ["take_profit", "tp", "takeProfit"])
def test_take_profit_aliases_snap(field):
    alert = parse(json.dumps({"action": "buy", "ticker": "GC1!", field: "2955.37"}))

    assert alert.take_profit == Decimal("2955.4")


@pytest.mark.parametrize("field", ["stop_loss", "sl", "stopLoss"])
def test_stop_loss_aliases_snap(field):
    alert = parse(json.dumps({"action": "buy", "ticker": "GC1!", field: 2940.12}))

    assert alert.stop_loss == Decimal("2940.1")


def test_brackets_snap_to_quarter_points():
    alert = parse('{"action":"sell","ticker":"NQ1!","tp":21450.13,"sl":21510.1}')

    assert alert.take_profit == Decimal("21450.25")
    assert alert.stop_loss == Decimal("21510.00")


@pytest.mark.parametrize("field", ["tp", "stop_loss"])
def test_bracket_errors_name_field(field):
    error = parse_error(json.dumps({"action": "buy", "ticker": "NQ1!", field: -3}))

    assert error.field == field
    assert error.message.startswith(field)


@pytest.mark.parametrize("body, field, words", [
    ('{"action":"buy","ticker":"NQ1!","price":21500,"tp":20000}', "tp", "is not above the price 21500"),
    ('{"action":"buy","ticker":"NQ1!","price":21500,"sl":22000}', "sl", "is not below the price 21500"),
    ('{"action":"buy","ticker":"NQ1!","price":21500,"tp":21500}', "tp", "is not above the price"),
    ('{"action":"sell","ticker":"NQ1!","price":21500,"take_profit":21600}', "take_profit", "is not below the price"),
    ('{"action":"sell","ticker":"NQ1!","price":21500,"stop_loss":21400}', "stop_loss", "is not above the price"),
    ('{"action":"buy","ticker":"NQ1!","tp":21400,"sl":21600}', "tp", "is not above sl 21600.00"),
    ('{"action":"sell","ticker":"NQ1!","tp":21600,"sl":21400}', "tp", "is not below sl 21400.00"),
])
def test_bracket_on_wrong_side_rejected(body, field, words):
    error = parse_error(body)

    assert error.field == field
    assert words in error.message


def test_close_ignores_bracket_sides():
    assert parse('{"action":"close","ticker":"NQ1!","price":21500,"tp":20000}').take_profit == Decimal("20000")


def test_price_is_not_snapped():
    assert parse(alert_json(price=21500.1)).price == Decimal("21500.1")


# --- strategy fields ----------------------------------------------------------------------------


def test_strategy_fields_parsed():
    alert = parse(
        alert_json(market_position="Long", prev_market_position=" FLAT ", market_position_size="2", timenow="2026-12-03T15:30:01Z")
    )

    assert alert.market_position == "long"
    assert alert.prev_market_position == "flat"
    assert alert.market_position_size == Decimal("2")
    assert alert.alert_time == "2026-12-03T15:30:01Z"


def test_position_size_alias_signed():
    assert parse(alert_json(position_size=-3)).market_position_size == Decimal("-3")


def test_time_preferred_over_timenow():
    alert = parse(alert_json(time="2026-12-03T15:30:00Z", timenow="2026-12-03T15:30:02Z"))

    assert alert.alert_time == "2026-12-03T15:30:00Z"


def test_integer_time_kept_as_text():
    assert parse(alert_json(time=1796311800000)).alert_time == "1796311800000"


@pytest.mark.parametrize("field", ["market_position", "prev_market_position"])
@pytest.mark.parametrize("value", ["up", "", 1])
def test_market_position_rejected(field, value):
    error = parse_error(alert_json(**{field: value}))

    assert error.field == field
    assert "long, short or flat" in error.message


def test_position_size_not_finite():
    error = parse_error('{"action":"buy","ticker":"NQ1!","market_position_size":"Infinity"}')

    assert error.field == "market_position_size"


def test_time_of_wrong_type():
    error = parse_error(alert_json(time=[1]))

    assert error.field == "time"


# --- fingerprint --------------------------------------------------------------------------------


def test_fingerprint_equal_numbers_match():
    first = parse(alert_json(price="21500.00", quantity="2")).fingerprint_fields
    second = parse(alert_json(price=21500, quantity=2)).fingerprint_fields

    assert first == second
    assert first["price"] == "21500"


def test_fingerprint_continuous_and_explicit_match():
    assert parse(alert_json(ticker="NQ1!")).fingerprint_fields == parse(alert_json(ticker="NQZ6")).fingerprint_fields


@pytest.mark.parametrize("change", [{"price": 21500.25}, {"action": "sell"}, {"qty": 3}, {"ticker": "ES1!"}, {"time": "t2"}, {"tp": 21600}])
def test_fingerprint_differs_on_change(change):
    base = parse(alert_json(price=21500, qty=2, time="t1")).fingerprint_fields
    changed = parse(alert_json(**{"price": 21500, "qty": 2, "time": "t1", **change})).fingerprint_fields

    assert base != changed


def test_fingerprint_fields_are_text():
    fingerprint = parse(alert_json(price=21500, tp=21600.1, market_position_size=1)).fingerprint_fields

    assert set(fingerprint) == {
        "action", "symbol", "quantity", "price", "take_profit", "stop_loss",
        "market_position", "prev_market_position", "market_position_size", "alert_time",
    }  # fmt: skip
    assert all(value is None or isinstance(value, str) for value in fingerprint.values())
    assert fingerprint["take_profit"] == "21600"


# --- errors -------------------------------------------------------------------------------------


def test_alert_error_shape():
    error = parse_error('{"action":"hold","ticker":"NQ1!"}')

    assert isinstance(error, ValueError)
    assert str(error) == error.message
    assert error.to_dict() == {"error": error.message, "field": "action"}


def test_long_values_shortened_in_messages():
    error = parse_error(alert_json(action="x" * 10_000))

    assert len(error.message) < 300


def test_naive_time_is_programming_error():
    with pytest.raises(ValueError) as caught:
        parse_alert(alert_json().encode(), dt.datetime(2026, 12, 3, 15, 30))

    assert not isinstance(caught.value, AlertError)

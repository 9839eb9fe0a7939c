"""Symbol resolution: continuous and explicit tickers, roll rules per product and error messages."""

import datetime as dt

import pytest

from justtrades.markets.products import PRODUCTS
from justtrades.markets.symbols import SymbolError, contract_for, contract_root, continuous_contract, resolve_symbol

UTC = dt.timezone.utc
REFERENCE = dt.datetime(2026, 12, 3, 15, 30, tzinfo=UTC)  # a Thursday, session open


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


def resolve_error(ticker: str, now: dt.datetime = REFERENCE) -> SymbolError:
    with pytest.raises(SymbolError) as caught:
        resolve_symbol(ticker, now)
    return caught.value


FRONT_AT_REFERENCE = {
    "NQ1!": "NQZ6",
    "MNQ1!": "MNQZ6",
    "ES1!": "ESZ6",
    "MES1!": "MESZ6",
    "YM1!": "YMZ6",
    "MYM1!": "MYMZ6",
    "RTY1!": "RTYZ6",
    "M2K1!": "M2KZ6",
    "GC1!": "GCG7",  # GCZ6 rolled on 2026-11-26, two business days before its first notice day
    "MGC1!": "MGCG7",
    "SI1!": "SIH7",
    "CL1!": "CLF7",  # CLF7 rolls on 2026-12-17
    "MCL1!": "MCLF7",
}


@pytest.mark.parametrize("ticker", sorted(FRONT_AT_REFERENCE))
def test_front_contract_at_reference(ticker):
    contract = resolve_symbol(ticker, REFERENCE)

    assert contract.symbol == FRONT_AT_REFERENCE[ticker]
    assert contract.product is PRODUCTS[ticker[:-2]]
    assert contract.roll_date > REFERENCE.date()
    assert not contract.is_expired(REFERENCE)


def test_second_contract_follows_front():
    assert resolve_symbol("NQ2!", REFERENCE).symbol == "NQH7"
    assert resolve_symbol("GC2!", REFERENCE).symbol == "GCJ7"
    assert resolve_symbol("SI2!", REFERENCE).symbol == "SIK7"
    assert resolve_symbol("CL2!", REFERENCE).symbol == "CLG7"


@pytest.mark.parametrize("ticker", ["nq1!", "Nq1!", " NQ1! ", "CME_MINI:NQ1!", "cme_mini:nq1!"])
def test_ticker_case_and_prefix_ignored(ticker):
    assert resolve_symbol(ticker, REFERENCE).symbol == "NQZ6"


def test_exchange_prefixes_stripped():
    assert resolve_symbol("CME_MINI:ES1!", REFERENCE).symbol == "ESZ6"
    assert resolve_symbol("COMEX:GC1!", REFERENCE).symbol == "GCG7"
    assert resolve_symbol("NYMEX:CL1!", REFERENCE).symbol == "CLF7"
    assert resolve_symbol("CBOT_MINI:YM1!", REFERENCE).symbol == "YMZ6"


@pytest.mark.parametrize("ticker", ["NQZ6", "NQZ26", "NQZ2026", "nqz6", "CME_MINI:NQZ2026"])
def test_explicit_contract_forms(ticker):
    contract = resolve_symbol(ticker, REFERENCE)

    assert contract.symbol == "NQZ6"
    assert contract.year == 2026
    assert contract.month_code == "Z"
    assert contract.month == 12


def test_one_digit_year_nearest_decade():
    assert resolve_symbol("NQZ0", REFERENCE).year == 2030
    assert resolve_symbol("NQH7", REFERENCE).year == 2027
    assert resolve_symbol("MNQU9", REFERENCE).symbol == "MNQU9"
    assert resolve_symbol("MNQU9", REFERENCE).year == 2029


def test_equity_roll_at_session_of_roll_date():
    # NQZ6 expires Friday 2026-12-18 and rolls on Thursday 2026-12-10, whose session opens
    # at 18:00 ET (23:00 UTC) on Wednesday 2026-12-09.
    assert resolve_symbol("NQ1!", at("2026-12-09T21:59:00")).symbol == "NQZ6"
    assert resolve_symbol("NQ1!", at("2026-12-09T23:00:00")).symbol == "NQH7"
    assert resolve_symbol("NQ1!", at("2026-12-10T15:30:00")).symbol == "NQH7"
    assert resolve_symbol("MNQ1!", at("2026-12-10T15:30:00")).symbol == "MNQH7"
    assert resolve_symbol("ES1!", at("2026-12-10T15:30:00")).symbol == "ESH7"
    assert resolve_symbol("NQ2!", at("2026-12-10T15:30:00")).symbol == "NQM7"


def test_equity_expiry_third_friday():
    contract = contract_for(PRODUCTS["ES"], "Z", 2026)

    assert contract.expiry == dt.date(2026, 12, 18)
    assert contract.roll_date == dt.date(2026, 12, 10)
    assert contract.first_notice is None


def test_equity_roll_published_dates():
    # CME's published roll calendar: December 2014 expired on the 19th and rolled on the 11th.
    assert contract_for(PRODUCTS["ES"], "Z", 2014).expiry == dt.date(2014, 12, 19)
    assert contract_for(PRODUCTS["ES"], "Z", 2014).roll_date == dt.date(2014, 12, 11)
    assert contract_for(PRODUCTS["ES"], "U", 2014).roll_date == dt.date(2014, 9, 11)
    assert contract_for(PRODUCTS["ES"], "Z", 2012).roll_date == dt.date(2012, 12, 13)


def test_equity_roll_month_starting_friday():
    # March 2024 starts on a Friday: the roll is eight days before the 15th, the first Thursday.
    contract = contract_for(PRODUCTS["NQ"], "H", 2024)

    assert contract.expiry == dt.date(2024, 3, 15)
    assert contract.roll_date == dt.date(2024, 3, 7)


def test_gold_dates_and_roll():
    contract = contract_for(PRODUCTS["GC"], "J", 2027)

    assert contract.first_notice == dt.date(2027, 3, 31)
    assert contract.roll_date == dt.date(2027, 3, 29)
    assert contract.expiry == dt.date(2027, 4, 28)
    assert resolve_symbol("GC1!", at("2027-03-25T15:00:00")).symbol == "GCJ7"
    # Good Friday 2027-03-26 is closed, so its time belongs to Monday's session, the roll date.
    assert resolve_symbol("GC1!", at("2027-03-26T15:00:00")).symbol == "GCM7"
    assert resolve_symbol("GC1!", at("2027-03-29T15:00:00")).symbol == "GCM7"
    assert resolve_symbol("MGC1!", at("2027-03-29T15:00:00")).symbol == "MGCM7"


def test_gold_january_crosses_year():
    # GCG7's first notice day is Friday 2027-01-29, so it rolls on Wednesday 2027-01-27.
    assert resolve_symbol("GC1!", at("2027-01-26T15:00:00")).symbol == "GCG7"
    assert resolve_symbol("GC1!", at("2027-01-27T15:00:00")).symbol == "GCJ7"


def test_silver_dates():
    contract = contract_for(PRODUCTS["SI"], "H", 2027)

    assert contract.first_notice == dt.date(2027, 2, 26)
    assert contract.roll_date == dt.date(2027, 2, 24)
    assert contract.expiry == dt.date(2027, 3, 29)


def test_crude_expiry_25th_business_day():
    # 2026-09-25 is a Friday: CLV6 stops three business days earlier, MCLV6 one more day earlier.
    crude = contract_for(PRODUCTS["CL"], "V", 2026)
    micro = contract_for(PRODUCTS["MCL"], "V", 2026)

    assert crude.expiry == dt.date(2026, 9, 22)
    assert micro.expiry == dt.date(2026, 9, 21)
    assert crude.roll_date == dt.date(2026, 9, 17)
    assert micro.roll_date == crude.roll_date


def test_crude_expiry_25th_on_weekend():
    # 2026-04-25 is a Saturday: CLK6 stops four business days before it.
    crude = contract_for(PRODUCTS["CL"], "K", 2026)

    assert crude.expiry == dt.date(2026, 4, 21)
    assert contract_for(PRODUCTS["MCL"], "K", 2026).expiry == dt.date(2026, 4, 20)
    assert crude.roll_date == dt.date(2026, 4, 16)


def test_crude_roll_switches_month():
    assert resolve_symbol("CL1!", at("2026-09-16T15:00:00")).symbol == "CLV6"
    assert resolve_symbol("CL1!", at("2026-09-17T15:00:00")).symbol == "CLX6"
    assert resolve_symbol("MCL1!", at("2026-09-17T15:00:00")).symbol == "MCLX6"


@pytest.mark.parametrize("root", sorted(PRODUCTS))
def test_front_never_expired_all_year(root):
    product = PRODUCTS[root]
    day = dt.datetime(2026, 1, 1, 15, tzinfo=UTC)
    previous = None
    while day.year == 2026:
        front = continuous_contract(product, day)
        following = continuous_contract(product, day, 2)

        assert not front.is_expired(day)
        assert (following.year, following.month) > (front.year, front.month)
        if previous is not None:
            assert (front.year, front.month) >= (previous.year, previous.month)
        previous = front
        day += dt.timedelta(days=1)


def test_explicit_contract_after_roll_accepted():
    contract = resolve_symbol("NQZ6", at("2026-12-15T15:00:00"))

    assert contract.symbol == "NQZ6"


def test_explicit_contract_on_expiry_day():
    assert resolve_symbol("NQZ6", at("2026-12-18T14:00:00")).symbol == "NQZ6"

    error = resolve_error("NQZ6", at("2026-12-19T14:00:00"))

    assert error.field == "expiry"
    assert "2026-12-18" in error.message


def test_expired_contract_names_fix():
    error = resolve_error("NQH5")

    assert error.field == "expiry"
    assert "contract NQH5 expired on 2025-03-21" in error.message
    assert "NQ1!" in error.message
    assert "NQZ6" in error.message


def test_unknown_root_lists_products():
    error = resolve_error("ZZZ1!")

    assert error.field == "root"
    assert error.message.startswith("unknown symbol ZZZ: use one of NQ, MNQ,")
    for root in PRODUCTS:
        assert root in error.message


def test_unknown_root_explicit_form():
    error = resolve_error("ZZZZ6")

    assert error.field == "root"
    assert "unknown symbol ZZZ" in error.message


def test_bad_month_code():
    error = resolve_error("NQA6")

    assert error.field == "month_code"
    assert "month code A" in error.message
    assert "F G H J K M N Q U V X Z" in error.message


def test_unlisted_month_for_product():
    error = resolve_error("NQF7")

    assert error.field == "month_code"
    assert "NQF7" in error.message
    assert "H (Mar), M (Jun), U (Sep), Z (Dec)" in error.message


def test_serial_gold_month_accepted():
    assert resolve_symbol("GCF7", REFERENCE).symbol == "GCF7"


def test_three_digit_year_rejected():
    error = resolve_error("NQZ206")

    assert error.field == "year"
    assert "206" in error.message


def test_far_future_year_rejected():
    error = resolve_error("NQZ2040")

    assert error.field == "year"
    assert "2040" in error.message


@pytest.mark.parametrize("ticker", ["NQ0!", "NQ10!"])
def test_continuous_index_out_of_range(ticker):
    error = resolve_error(ticker)

    assert error.field == "ticker"
    assert ticker in error.message
    assert "NQ1!" in error.message


@pytest.mark.parametrize("ticker", ["NQ", "NQ1", "NQZ"])
def test_known_root_wrong_form(ticker):
    error = resolve_error(ticker)

    assert error.field == "ticker"
    assert "NQ1!" in error.message
    assert "NQZ6" in error.message


@pytest.mark.parametrize("ticker", ["", "   ", "CME_MINI:"])
def test_empty_ticker(ticker):
    error = resolve_error(ticker)

    assert error.field == "ticker"
    assert "empty" in error.message


def test_non_text_ticker():
    error = resolve_error(12345)

    assert error.field == "ticker"
    assert "int" in error.message


def test_long_ticker_shortened_in_message():
    error = resolve_error("Q" * 5000)

    assert len(error.message) < 200


def test_naive_time_rejected():
    with pytest.raises(ValueError):
        resolve_symbol("NQ1!", dt.datetime(2026, 12, 3, 15, 30))


@pytest.mark.parametrize(
    "symbol, root",
    [
        ("NQZ6", "NQ"),
        ("mnqh5", "MNQ"),
        ("MGCG7", "MGC"),
        ("M2KZ2026", "M2K"),
        ("CME_MINI:ES1!", "ES"),
        ("CL", "CL"),
        ("ZZZZ6", None),
        ("NQ 1", None),
        ("", None),
    ],
)
def test_contract_root_of_symbol(symbol, root):
    assert contract_root(symbol) == root

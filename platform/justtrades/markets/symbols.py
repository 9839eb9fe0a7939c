"""Resolve TradingView tickers to the futures contract to trade, and snap prices to the tick grid.

Accepted tickers (any letter case, with or without an exchange prefix such as "CME_MINI:"):
continuous "NQ1!" (the front contract at the given time) and "NQ2!" (the one after it), and explicit
contracts "NQZ6", "NQZ26" and "NQZ2026". Contracts carry the Tradovate symbol, which writes the year
with one digit ("NQZ6"). The roll rules are described in docs/products.md.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import re
from collections.abc import Iterator
from decimal import ROUND_HALF_UP, Decimal

from justtrades.markets import calendar
from justtrades.markets.products import (
    CRUDE_MONTHLY,
    EQUITY_QUARTERLY,
    METALS_BEFORE_FIRST_NOTICE,
    MONTH_CODES,
    PRODUCTS,
    Product,
    SymbolError,
)

__all__ = ["Contract", "SymbolError", "contract_for", "contract_root", "continuous_contract", "resolve_symbol", "snap_to_tick"]

_CONTINUOUS = re.compile(r"(?P<root>[A-Z0-9]+?)(?P<index>\d+)!")
_EXPLICIT = re.compile(r"(?P<root>[A-Z0-9]+)(?P<month>[A-Z])(?P<year>\d{1,4})")
_MAX_CONTINUOUS_INDEX = 9
# Crude oil, the longest-listed product here, is listed about ten years ahead; a later year is a typo.
_MAX_YEARS_AHEAD = 10
_MAX_SHOWN_CHARS = 40
# The longest ticker form is about 20 characters ("CME_MINI:MNQZ2026"). Longer text is rejected before any regex
# runs, because the continuous-ticker pattern backtracks quadratically on long runs of digits (a 20,000-digit
# ticker took seconds of CPU, holding the GIL).
_MAX_TICKER_CHARS = 64

_MONTH_NAMES = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@dataclasses.dataclass(frozen=True)
class Contract:
    """One futures contract: a product, a delivery month and the dates that matter for trading it.

    `expiry` is the last trading day. `roll_date` is the first trading day on which continuous
    tickers name the following contract instead of this one. `first_notice` is set for physically
    delivered metals only.
    """

    product: Product
    month_code: str
    year: int
    symbol: str
    expiry: dt.date
    roll_date: dt.date
    first_notice: dt.date | None = None

    @property
    def month(self) -> int:
        return MONTH_CODES.index(self.month_code) + 1

    def is_expired(self, now: dt.datetime) -> bool:
        """Return True once the trading day of `now` is past the last trading day."""
        return calendar.session_date(now) > self.expiry


def _shown(text: str) -> str:
    return text if len(text) <= _MAX_SHOWN_CHARS else text[:_MAX_SHOWN_CHARS] + "..."


def _third_friday(year: int, month: int) -> dt.date:
    first = dt.date(year, month, 1)
    first_friday = first + dt.timedelta(days=(4 - first.weekday()) % 7)
    return first_friday + dt.timedelta(days=14)


def _previous_month(year: int, month: int) -> tuple[int, int]:
    return (year - 1, 12) if month == 1 else (year, month - 1)


def _crude_oil_last_trade(year: int, month: int) -> dt.date:
    # CL stops trading 3 business days before the 25th of the month before delivery,
    # or 4 business days before it when the 25th is not a business day.
    prior_year, prior_month = _previous_month(year, month)
    the_25th = dt.date(prior_year, prior_month, 25)
    days_before = 3 if calendar.is_business_day(the_25th) else 4
    return calendar.add_business_days(the_25th, -days_before)


# Contract dates depend only on the arguments, and every continuous-ticker lookup walks a year or more of them.
@functools.lru_cache(maxsize=4096)
def contract_for(product: Product, month_code: str, year: int) -> Contract:
    """Build the contract of `product` for a month code and a four-digit year (no listing checks)."""
    month = MONTH_CODES.index(month_code) + 1
    first_notice = None

    if product.roll_rule == EQUITY_QUARTERLY:
        # CME's roll convention: eight calendar days before the third-Friday expiry, which is
        # the second Thursday of the month unless the month starts on a Friday.
        expiry = _third_friday(year, month)
        roll_date = expiry - dt.timedelta(days=8)
    elif product.roll_rule == METALS_BEFORE_FIRST_NOTICE:
        expiry = calendar.add_business_days(calendar.last_business_day(year, month), -2)
        first_notice = calendar.last_business_day(*_previous_month(year, month))
        roll_date = calendar.add_business_days(first_notice, -2)
    elif product.roll_rule == CRUDE_MONTHLY:
        crude_last_trade = _crude_oil_last_trade(year, month)
        # The micro contract is cash-settled one business day before the standard contract ends.
        days_before = 1 if product.root == "MCL" else 0
        expiry = calendar.add_business_days(crude_last_trade, -days_before)
        roll_date = calendar.add_business_days(crude_last_trade, -3)
    else:
        raise ValueError(f"roll rule {product.roll_rule!r} of {product.root} is not implemented")

    return Contract(
        product=product,
        month_code=month_code,
        year=year,
        symbol=f"{product.root}{month_code}{year % 10}",
        expiry=expiry,
        roll_date=roll_date,
        first_notice=first_notice,
    )


def _roll_cycle(product: Product, start_year: int) -> Iterator[Contract]:
    year = start_year
    while True:
        for month_code in product.roll_months:
            yield contract_for(product, month_code, year)
        year += 1


def continuous_contract(product: Product, now: dt.datetime, index: int = 1) -> Contract:
    """Return the contract that the continuous ticker `<root><index>!` names at `now` (1 is the front)."""
    if not 1 <= index <= _MAX_CONTINUOUS_INDEX:
        raise ValueError(f"continuous index {index} is out of range 1 to {_MAX_CONTINUOUS_INDEX}")

    trading_day = calendar.session_date(now)
    # Start a year back: a contract of last year can still be before its roll date in January.
    candidates = (c for c in _roll_cycle(product, trading_day.year - 1) if c.roll_date > trading_day)

    for position, contract in enumerate(candidates, start=1):
        if position == index:
            return contract
    raise AssertionError("unreachable: the roll cycle is endless")


def _listed_months_text(product: Product) -> str:
    names = ", ".join(f"{code} ({_MONTH_NAMES[MONTH_CODES.index(code)]})" for code in product.months)
    return f"{product.root} lists {names}"


def _four_digit_year(year_text: str, ticker: str, now: dt.datetime) -> int:
    # A one- or two-digit year names the year with those last digits nearest to now, in a window
    # from half the cycle back to half the cycle ahead: in 2026, "5" is 2025 and "0" is 2030.
    if len(year_text) == 4:
        return int(year_text)

    if len(year_text) == 3:
        raise SymbolError("year", f"year {year_text} in {ticker} is not valid: write the year with 1, 2 or 4 digits (NQZ6, NQZ26, NQZ2026)")

    cycle = 10 ** len(year_text)
    window_start = now.year - cycle // 2
    offset = (int(year_text) - window_start) % cycle
    return window_start + offset


def _product_for_root(root: str, ticker: str) -> Product:
    product = PRODUCTS.get(root)
    if product is not None:
        return product

    # "NQ1" or "NQZ" start with a known root but do not follow either ticker form.
    known = [r for r in sorted(PRODUCTS, key=len, reverse=True) if ticker.startswith(r)]
    if known:
        raise SymbolError(
            "ticker",
            f"ticker {_shown(ticker)} is not a valid {known[0]} symbol: use {known[0]}1! for the front contract, "
            f"{known[0]}2! for the next one, or a contract such as {known[0]}Z6",
        )
    raise SymbolError("root", f"unknown symbol {_shown(root)}: use one of {', '.join(PRODUCTS)}")


def _resolve_continuous(match: re.Match, ticker: str, now: dt.datetime) -> Contract:
    product = _product_for_root(match["root"], ticker)

    index = int(match["index"])
    if not 1 <= index <= _MAX_CONTINUOUS_INDEX:
        raise SymbolError(
            "ticker",
            f"continuous ticker {_shown(ticker)} is not supported: use {product.root}1! for the front contract "
            f"or {product.root}2! for the next one",
        )
    return continuous_contract(product, now, index)


def _resolve_explicit(match: re.Match, ticker: str, now: dt.datetime) -> Contract:
    product = _product_for_root(match["root"], ticker)

    month_code = match["month"]
    if month_code not in MONTH_CODES:
        raise SymbolError("month_code", f"month code {month_code} in {ticker} is not a futures month code: use one of {' '.join(MONTH_CODES)}")
    if month_code not in product.months:
        raise SymbolError("month_code", f"{ticker} is not a listed contract: {_listed_months_text(product)}")

    year = _four_digit_year(match["year"], ticker, now)
    if year > now.year + _MAX_YEARS_AHEAD:
        raise SymbolError("year", f"contract {ticker} is for {year}, more than {_MAX_YEARS_AHEAD} years ahead: check the year")

    contract = contract_for(product, month_code, year)
    if contract.is_expired(now):
        front = continuous_contract(product, now)
        raise SymbolError(
            "expiry",
            f"contract {ticker} expired on {contract.expiry.isoformat()}; "
            f"use {product.root}1! or {front.symbol} (the front contract now)",
        )
    return contract


def _strip_exchange_prefix(text: str) -> str:
    # TradingView writes "CME_MINI:ES1!" or "COMEX:GC1!"; the contract root follows the last colon.
    return text.rsplit(":", 1)[-1].strip()


def resolve_symbol(ticker: str, now: dt.datetime) -> Contract:
    """Resolve a TradingView ticker to a contract at `now` (timezone-aware), or raise SymbolError."""
    if not isinstance(ticker, str):
        raise SymbolError("ticker", f"ticker must be text such as \"NQ1!\", got {type(ticker).__name__}")

    stripped = ticker.strip()
    if len(stripped) > _MAX_TICKER_CHARS:
        raise SymbolError(
            "ticker",
            f"ticker {_shown(stripped)} is {len(stripped)} characters long, more than the {_MAX_TICKER_CHARS} "
            "allowed: send a symbol such as NQ1! or NQZ6",
        )

    text = _strip_exchange_prefix(stripped.upper())
    if not text:
        raise SymbolError("ticker", "ticker is empty: send a symbol such as NQ1! or NQZ6")

    continuous = _CONTINUOUS.fullmatch(text)
    if continuous:
        return _resolve_continuous(continuous, text, now)

    explicit = _EXPLICIT.fullmatch(text)
    if explicit:
        return _resolve_explicit(explicit, text, now)

    if text in PRODUCTS:
        raise SymbolError(
            "ticker",
            f"ticker {text} names a product, not a contract: use {text}1! for the front contract, "
            f"{text}2! for the next one, or a contract such as {text}Z6",
        )
    _product_for_root(text, text)
    raise SymbolError(
        "ticker",
        f"ticker {_shown(text)} is not a futures symbol: send a continuous ticker such as NQ1! or a contract such as NQZ6",
    )


def contract_root(symbol: str) -> str | None:
    """Return the product root of a contract or ticker ("NQZ6", "MGCG7", "CME_MINI:ES1!"), or None if unknown.

    Unlike resolve_symbol this checks no month, year or expiry, so it also reads the symbols of
    expired contracts stored in positions and fills.
    """
    stripped = symbol.strip()
    if len(stripped) > _MAX_TICKER_CHARS:
        return None
    text = _strip_exchange_prefix(stripped.upper())
    match = _CONTINUOUS.fullmatch(text) or _EXPLICIT.fullmatch(text)
    root = match["root"] if match else text
    return root if root in PRODUCTS else None


def snap_to_tick(price: Decimal, product: Product) -> Decimal:
    """Round a price to the nearest tick of the product, halves away from zero (ROUND_HALF_UP).

    GC (tick 0.1): 2955.37 becomes 2955.4 and 2940.12 becomes 2940.1; NQ (tick 0.25): 21500.125
    becomes 21500.25. The result has the exponent of the tick size.
    """
    if not price.is_finite():
        raise ValueError(f"price {price} is not a finite number")

    ticks = (price / product.tick_size).to_integral_value(rounding=ROUND_HALF_UP)
    return (ticks * product.tick_size).quantize(product.tick_size)

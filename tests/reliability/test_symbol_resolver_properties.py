"""Property tests of the symbol resolver: any input resolves or fails with SymbolError, and the front contract
of every product is tradeable, round-trips and is stable under letter case and exchange prefixes.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from justtrades.markets.products import PRODUCTS
from justtrades.markets.symbols import SymbolError, contract_root, resolve_symbol, snap_to_tick

ROOTS = sorted(PRODUCTS)
ERROR_FIELDS = {"ticker", "root", "month_code", "year", "expiry"}
moments = st.datetimes(min_value=dt.datetime(2020, 1, 1), max_value=dt.datetime(2045, 12, 31),
                       timezones=st.just(dt.timezone.utc))
ticker_like = st.one_of(
    st.text(max_size=80),
    st.text(alphabet="0123456789!:ABCDEFGHIJKLMNOPQRSTUVWXYZ_ ", max_size=80),
    st.builds(lambda root, rest: root + rest, st.sampled_from(ROOTS), st.text(alphabet="0123456789FGHJKMNQUVXZ!", max_size=8)),
    st.builds(lambda digits: "NQ" + "1" * digits + "?", st.integers(min_value=60, max_value=5000)),
)


@settings(max_examples=300)
@given(ticker=ticker_like, now=moments)
def test_any_ticker_resolves_or_symbol_error(ticker, now):
    try:
        contract = resolve_symbol(ticker, now)
    except SymbolError as error:
        assert error.field in ERROR_FIELDS
        assert 0 < len(str(error)) < 600
        return
    assert contract.product.root in PRODUCTS
    assert not contract.is_expired(now)


@given(value=st.one_of(st.none(), st.integers(), st.floats(allow_nan=True), st.binary(), st.lists(st.text())))
def test_non_text_ticker_is_symbol_error(value):
    with pytest.raises(SymbolError) as caught:
        resolve_symbol(value, dt.datetime(2026, 12, 3, tzinfo=dt.timezone.utc))
    assert caught.value.field == "ticker"


@settings(max_examples=150)
@given(root=st.sampled_from(ROOTS), now=moments)
def test_front_contract_round_trips(root, now):
    front = resolve_symbol(f"{root}1!", now)
    again = resolve_symbol(front.symbol, now)

    assert front.symbol.startswith(root)
    assert not front.is_expired(now)
    assert again.symbol == front.symbol
    assert contract_root(front.symbol) == root


@settings(max_examples=150)
@given(root=st.sampled_from(ROOTS), now=moments)
def test_second_contract_expires_later(root, now):
    front = resolve_symbol(f"{root}1!", now)
    second = resolve_symbol(f"{root}2!", now)

    assert second.expiry > front.expiry


@settings(max_examples=100)
@given(root=st.sampled_from(ROOTS), now=moments, prefix=st.sampled_from(["", "CME:", "cme_mini:", "COMEX:", " "]))
def test_case_and_prefix_do_not_matter(root, now, prefix):
    plain = resolve_symbol(f"{root}1!", now)
    decorated = resolve_symbol(f"{prefix}{root.lower()}1! ", now)

    assert decorated.symbol == plain.symbol


@given(digits=st.integers(min_value=65, max_value=100_000))
def test_very_long_ticker_rejected_by_length(digits):
    with pytest.raises(SymbolError) as caught:
        resolve_symbol("NQ" + "1" * digits, dt.datetime(2026, 12, 3, tzinfo=dt.timezone.utc))

    assert "characters long" in str(caught.value)
    assert len(str(caught.value)) < 300


@given(text=st.text(max_size=200))
def test_contract_root_never_raises(text):
    root = contract_root(text)

    assert root is None or root in PRODUCTS


@settings(max_examples=500)
@given(root=st.sampled_from(ROOTS),
       price=st.decimals(min_value=Decimal("0.0001"), max_value=Decimal("999999"), allow_nan=False, places=6))
def test_snap_lands_on_grid_within_half_tick(root, price):
    product = PRODUCTS[root]
    snapped = snap_to_tick(price, product)

    assert snapped % product.tick_size == 0
    assert abs(snapped - price) <= product.tick_size / 2

"""Product table: tick grids, point values and root lookup."""

from decimal import Decimal

import pytest

from justtrades.markets.products import MONTH_CODES, PRODUCTS, SymbolError, get_product, point_value
from justtrades.markets.symbols import snap_to_tick

# root: (exchange, tick size, tick value in USD, USD per point)
EXPECTED_SPECS = {
    "NQ": ("CME", "0.25", "5.00", "20"),
    "MNQ": ("CME", "0.25", "0.50", "2"),
    "ES": ("CME", "0.25", "12.50", "50"),
    "MES": ("CME", "0.25", "1.25", "5"),
    "YM": ("CBOT", "1", "5.00", "5"),
    "MYM": ("CBOT", "1", "0.50", "0.5"),
    "RTY": ("CME", "0.1", "5.00", "50"),
    "M2K": ("CME", "0.1", "0.50", "5"),
    "GC": ("COMEX", "0.1", "10.00", "100"),
    "MGC": ("COMEX", "0.1", "1.00", "10"),
    "SI": ("COMEX", "0.005", "25.00", "5000"),
    "CL": ("NYMEX", "0.01", "10.00", "1000"),
    "MCL": ("NYMEX", "0.01", "1.00", "100"),
}


def test_table_covers_required_roots():
    assert set(EXPECTED_SPECS) <= set(PRODUCTS)


@pytest.mark.parametrize("root", sorted(EXPECTED_SPECS))
def test_product_exchange_specs(root):
    exchange, tick_size, tick_value, per_point = EXPECTED_SPECS[root]
    product = PRODUCTS[root]

    assert product.root == root
    assert product.exchange == exchange
    assert product.tick_size == Decimal(tick_size)
    assert product.tick_value == Decimal(tick_value)
    assert point_value(product) == Decimal(per_point)


@pytest.mark.parametrize("root", sorted(PRODUCTS))
def test_product_months_are_month_codes(root):
    product = PRODUCTS[root]

    assert product.months
    assert set(product.months) <= set(MONTH_CODES)
    assert set(product.roll_months) <= set(product.months)
    assert product.name


def test_equity_index_lists_quarterly_months():
    for root in ("NQ", "MNQ", "ES", "MES", "YM", "MYM", "RTY", "M2K"):
        assert PRODUCTS[root].months == "HMUZ"
        assert PRODUCTS[root].roll_rule == "equity_quarterly"


def test_metals_and_crude_roll_months():
    assert PRODUCTS["GC"].roll_months == "GJMQVZ"
    assert PRODUCTS["MGC"].roll_months == "GJMQVZ"
    assert PRODUCTS["SI"].roll_months == "HKNUZ"
    assert PRODUCTS["CL"].roll_months == MONTH_CODES
    assert PRODUCTS["MCL"].roll_months == MONTH_CODES


def test_get_product_any_case():
    assert get_product("nq") is PRODUCTS["NQ"]
    assert get_product(" m2k ") is PRODUCTS["M2K"]


def test_get_product_unknown_root():
    with pytest.raises(SymbolError) as caught:
        get_product("zzz")

    assert caught.value.field == "root"
    assert "unknown symbol ZZZ" in caught.value.message
    assert "NQ, MNQ, ES" in caught.value.message
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize(
    "root, price, snapped",
    [
        ("GC", "2955.37", "2955.4"),
        ("GC", "2940.12", "2940.1"),
        ("GC", "2945.35", "2945.4"),  # a half tick rounds up
        ("NQ", "21500.125", "21500.25"),
        ("NQ", "21500.12", "21500.00"),
        ("NQ", "21500.13", "21500.25"),
        ("ES", "6120.5", "6120.50"),
        ("YM", "44000.5", "44001"),
        ("YM", "44000.49", "44000"),
        ("SI", "32.4575", "32.460"),
        ("SI", "32.4574", "32.455"),
        ("CL", "61.235", "61.24"),
        ("MCL", "61.2349", "61.23"),
        ("RTY", "2250.05", "2250.1"),
    ],
)
def test_snap_to_tick_rounds_half_up(root, price, snapped):
    result = snap_to_tick(Decimal(price), PRODUCTS[root])

    assert result == Decimal(snapped)
    assert str(result) == snapped


@pytest.mark.parametrize("root", sorted(PRODUCTS))
def test_snap_lands_on_tick_grid(root):
    product = PRODUCTS[root]
    for price in ("1.0001", "99.9999", "2955.37", "21500.13", "44000.77"):
        snapped = snap_to_tick(Decimal(price), product)

        assert snapped % product.tick_size == 0
        assert abs(snapped - Decimal(price)) <= product.tick_size / 2


def test_snap_rejects_non_finite():
    with pytest.raises(ValueError):
        snap_to_tick(Decimal("NaN"), PRODUCTS["NQ"])

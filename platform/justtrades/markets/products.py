"""The futures products the platform trades: exchange, tick grid, listed months and roll rule.

Tick sizes and values are those of the exchanges' published contract specifications (CME Group).
docs/products.md explains each roll rule and where it comes from.
"""

from __future__ import annotations

import dataclasses
from decimal import Decimal

# Roll rule names; markets.symbols computes expiry and roll dates for each of them.
EQUITY_QUARTERLY = "equity_quarterly"
METALS_BEFORE_FIRST_NOTICE = "metals_before_first_notice"
CRUDE_MONTHLY = "crude_monthly"
ROLL_RULES = (EQUITY_QUARTERLY, METALS_BEFORE_FIRST_NOTICE, CRUDE_MONTHLY)

# Futures month codes in calendar order: F is January, Z is December.
MONTH_CODES = "FGHJKMNQUVXZ"
ALL_MONTHS = MONTH_CODES


class SymbolError(ValueError):
    """A ticker or contract that the product table cannot resolve; `field` names the part at fault."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


@dataclasses.dataclass(frozen=True)
class Product:
    """One futures product (a contract root such as NQ) and the rules for its contracts.

    `months` lists the contract months the exchange lists, and `roll_months` the subset that
    continuous tickers (NQ1!, NQ2!) step through. Both use futures month codes.
    """

    root: str
    name: str
    exchange: str
    tick_size: Decimal
    tick_value: Decimal  # USD per tick per contract
    months: str
    roll_rule: str
    roll_months: str

    def __post_init__(self):
        if self.roll_rule not in ROLL_RULES:
            raise ValueError(f"roll rule {self.roll_rule!r} of {self.root} is unknown: use one of {', '.join(ROLL_RULES)}")

        if not set(self.roll_months) <= set(self.months):
            raise ValueError(f"roll months {self.roll_months} of {self.root} are not all in its listed months {self.months}")

        if self.tick_size <= 0 or self.tick_value <= 0:
            raise ValueError(f"tick size and tick value of {self.root} must be positive")


def _product(root, name, exchange, tick_size, tick_value, months, roll_rule, roll_months=None) -> Product:
    return Product(
        root=root,
        name=name,
        exchange=exchange,
        tick_size=Decimal(tick_size),
        tick_value=Decimal(tick_value),
        months=months,
        roll_rule=roll_rule,
        roll_months=roll_months or months,
    )


_TABLE = (
    # Equity-index futures: quarterly contracts, expiring on the third Friday of the month.
    _product("NQ", "E-mini Nasdaq-100", "CME", "0.25", "5.00", "HMUZ", EQUITY_QUARTERLY),
    _product("MNQ", "Micro E-mini Nasdaq-100", "CME", "0.25", "0.50", "HMUZ", EQUITY_QUARTERLY),
    _product("ES", "E-mini S&P 500", "CME", "0.25", "12.50", "HMUZ", EQUITY_QUARTERLY),
    _product("MES", "Micro E-mini S&P 500", "CME", "0.25", "1.25", "HMUZ", EQUITY_QUARTERLY),
    _product("YM", "E-mini Dow ($5)", "CBOT", "1", "5.00", "HMUZ", EQUITY_QUARTERLY),
    _product("MYM", "Micro E-mini Dow", "CBOT", "1", "0.50", "HMUZ", EQUITY_QUARTERLY),
    _product("RTY", "E-mini Russell 2000", "CME", "0.1", "5.00", "HMUZ", EQUITY_QUARTERLY),
    _product("M2K", "Micro E-mini Russell 2000", "CME", "0.1", "0.50", "HMUZ", EQUITY_QUARTERLY),
    # Metals: the exchange lists the nearest calendar months as well, but volume trades in the
    # active months, so continuous tickers step through those only.
    _product("GC", "Gold", "COMEX", "0.1", "10.00", ALL_MONTHS, METALS_BEFORE_FIRST_NOTICE, "GJMQVZ"),
    _product("MGC", "Micro Gold", "COMEX", "0.1", "1.00", ALL_MONTHS, METALS_BEFORE_FIRST_NOTICE, "GJMQVZ"),
    _product("SI", "Silver", "COMEX", "0.005", "25.00", ALL_MONTHS, METALS_BEFORE_FIRST_NOTICE, "HKNUZ"),
    # Crude oil: every calendar month is listed and traded.
    _product("CL", "Crude Oil (WTI)", "NYMEX", "0.01", "10.00", ALL_MONTHS, CRUDE_MONTHLY),
    _product("MCL", "Micro WTI Crude Oil", "NYMEX", "0.01", "1.00", ALL_MONTHS, CRUDE_MONTHLY),
)

PRODUCTS: dict[str, Product] = {product.root: product for product in _TABLE}


def get_product(root: str) -> Product:
    """Return the product for a contract root in any letter case, or raise SymbolError."""
    key = root.strip().upper()
    product = PRODUCTS.get(key)
    if product is None:
        raise SymbolError("root", f"unknown symbol {key or repr(root)}: use one of {', '.join(PRODUCTS)}")
    return product


def point_value(product: Product) -> Decimal:
    """Return the USD value of a one-point price move for one contract (NQ: 20)."""
    return product.tick_value / product.tick_size

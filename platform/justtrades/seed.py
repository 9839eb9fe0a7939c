"""Idempotent loading of accounts, recorders and traders from a YAML file (format: docs/seed-format.md)."""

from __future__ import annotations

import dataclasses
import logging
from decimal import Decimal, InvalidOperation
from pathlib import Path

import yaml
from sqlalchemy import select

from .db.models import Account, Recorder, Trader
from .webhooks.filters import TradingWindowError, parse_trading_windows

logger = logging.getLogger(__name__)

ACCOUNT_FIELDS = {"name", "broker", "environment", "broker_account_id", "token_group", "enabled"}
RECORDER_FIELDS = {"name", "webhook_token", "strategy", "enabled", "trading_windows", "cooldown_seconds"}
TRADER_FIELDS = {"recorder", "account", "enabled", "quantity", "max_daily_loss"}
BROKERS = ("paper", "tradovate")


class SeedError(ValueError):
    """The seed file has a value that cannot be loaded; the message names the entry and the field."""


@dataclasses.dataclass
class SeedReport:
    created: int = 0
    updated: int = 0

    def __str__(self) -> str:
        return f"{self.created} created, {self.updated} updated"


def load_seed_file(path: Path) -> dict:
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise SeedError(f"cannot read seed file {path}: {error.strerror}") from error
    except yaml.YAMLError as error:
        raise SeedError(f"seed file {path} is not valid YAML: {error}") from error

    if not isinstance(document, dict):
        raise SeedError(f"seed file {path} must be a mapping with the keys accounts, recorders and traders")
    unknown = set(document) - {"accounts", "recorders", "traders"}
    if unknown:
        raise SeedError(f"seed file {path} has unknown top-level keys {sorted(unknown)}: use accounts, recorders, traders")
    return document


def apply_seed(session, document: dict) -> SeedReport:
    """Create or update every entry, matched by name (traders by recorder and account); run it twice, change nothing."""
    report = SeedReport()
    accounts = {entry["name"]: _upsert_account(session, entry, report) for entry in _entries(document, "accounts", ACCOUNT_FIELDS)}
    recorders = {entry["name"]: _upsert_recorder(session, entry, report) for entry in _entries(document, "recorders", RECORDER_FIELDS)}
    session.flush()

    for entry in _entries(document, "traders", TRADER_FIELDS, required=("recorder", "account")):
        _upsert_trader(session, entry, accounts, recorders, report)
    return report


def _entries(document: dict, key: str, allowed: set[str], required: tuple[str, ...] = ("name",)) -> list[dict]:
    entries = document.get(key) or []
    if not isinstance(entries, list):
        raise SeedError(f"'{key}' must be a list of mappings")

    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise SeedError(f"{key}[{index}] must be a mapping, got {entry!r}")
        unknown = set(entry) - allowed
        if unknown:
            raise SeedError(f"{key}[{index}] has unknown fields {sorted(unknown)}; allowed: {sorted(allowed)}")
        missing = [field for field in required if not entry.get(field)]
        if missing:
            raise SeedError(f"{key}[{index}] is missing {', '.join(missing)}")
    return entries


def _upsert(session, model, lookup: dict, values: dict, report: SeedReport):
    row = session.scalars(select(model).filter_by(**lookup)).one_or_none()
    if row is None:
        row = model(**lookup, **values)
        session.add(row)
        report.created += 1
        return row

    changed = False
    for field, value in values.items():
        if getattr(row, field) != value:
            setattr(row, field, value)
            changed = True
    report.updated += changed
    return row


def _upsert_account(session, entry: dict, report: SeedReport) -> Account:
    broker = entry.get("broker", "paper")
    if broker not in BROKERS:
        raise SeedError(f"account {entry['name']!r}: broker {broker!r} is unknown; use one of {', '.join(BROKERS)}")
    values = {
        "broker": broker,
        "environment": entry.get("environment", "demo"),
        "broker_account_id": entry.get("broker_account_id"),
        "token_group": entry.get("token_group"),
        "enabled": bool(entry.get("enabled", True)),
    }
    return _upsert(session, Account, {"name": entry["name"]}, values, report)


def _upsert_recorder(session, entry: dict, report: SeedReport) -> Recorder:
    token = entry.get("webhook_token")
    if not token or len(str(token)) < 16:
        raise SeedError(f"recorder {entry['name']!r}: webhook_token must have at least 16 characters, so it cannot be guessed")
    windows = entry.get("trading_windows") or ""
    try:
        parse_trading_windows(windows)
    except TradingWindowError as error:
        raise SeedError(f"recorder {entry['name']!r}: {error}") from None

    values = {
        "webhook_token": str(token),
        "strategy": entry.get("strategy"),
        "enabled": bool(entry.get("enabled", True)),
        "trading_windows": windows,
        "cooldown_seconds": int(entry.get("cooldown_seconds", 0)),
    }
    return _upsert(session, Recorder, {"name": entry["name"]}, values, report)


def _upsert_trader(session, entry: dict, accounts: dict, recorders: dict, report: SeedReport) -> Trader:
    recorder = recorders.get(entry["recorder"]) or session.scalars(select(Recorder).filter_by(name=entry["recorder"])).one_or_none()
    account = accounts.get(entry["account"]) or session.scalars(select(Account).filter_by(name=entry["account"])).one_or_none()
    if recorder is None:
        raise SeedError(f"trader of account {entry['account']!r}: recorder {entry['recorder']!r} is not defined")
    if account is None:
        raise SeedError(f"trader of recorder {entry['recorder']!r}: account {entry['account']!r} is not defined")

    quantity = entry.get("quantity", 1)
    if not isinstance(quantity, int) or quantity < 1:
        raise SeedError(f"trader {entry['recorder']}/{entry['account']}: quantity {quantity!r} must be a whole number >= 1")

    values = {
        "enabled": bool(entry.get("enabled", True)),
        "quantity": quantity,
        "max_daily_loss": _decimal_or_none(entry, "max_daily_loss"),
    }
    return _upsert(session, Trader, {"recorder_id": recorder.id, "account_id": account.id}, values, report)


def _decimal_or_none(entry: dict, field: str) -> Decimal | None:
    raw = entry.get(field)
    if raw is None:
        return None
    try:
        value = Decimal(str(raw))
    except InvalidOperation:
        raise SeedError(f"{field} {raw!r} is not a number") from None
    if not value.is_finite() or value <= 0:
        raise SeedError(f"{field} {raw!r} must be a positive amount in US dollars")
    return value

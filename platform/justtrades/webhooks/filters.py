"""Filters between a parsed alert and its execution jobs: each returns the reason a signal is blocked, or None."""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import math
import zoneinfo
from collections.abc import Sequence
from typing import NamedTuple

from sqlalchemy import Row, and_, bindparam, or_, select
from sqlalchemy.orm import Session

from ..db.models import Account, LossBreach, Recorder, SignalBlock, Trader
from ..markets import calendar
from .parser import Action, Alert

NEW_YORK = zoneinfo.ZoneInfo("America/New_York")
ENTRY_ACTIONS = (Action.BUY, Action.SELL)

# Every reason a signal can be blocked; also the label values of justtrades_signals_blocked_total.
BLOCK_REASONS = (
    "recorder_disabled",
    "outside_trading_window",
    "cooldown",
    "signal_blocked",
    "no_enabled_traders",
    "loss_limit",
)


class TradingWindowError(ValueError):
    """A recorder's trading_windows setting cannot be read."""


class EligibleTrader(NamedTuple):
    """An enabled trader of the signal's recorder, with its account's broker and its breach this CME session."""

    id: int
    account_id: int | None
    quantity: int
    broker: str | None
    breach_id: int | None


@dataclasses.dataclass(frozen=True)
class SignalContext:
    """What a parsed alert's outcome depends on besides the duplicate guard, read in one statement."""

    recorder: Row  # the columns of RECORDER_COLUMNS
    signal_blocked: bool  # a signal block covers the recorder and the alert's product now
    traders: tuple[EligibleTrader, ...]  # the recorder's enabled traders, breached or not


def read_signal_context(session: Session, token: str, alert: Alert, now: dt.datetime) -> SignalContext | None:
    """Read and lock (PostgreSQL) the recorder of this webhook token with its traders; None for an unknown token.

    One statement instead of the three it replaces (recorder, signal blocks, traders): two round trips fewer per
    webhook, both of which ran while the recorder row was locked.
    """
    values = {
        "recorder_token": token,
        "block_root": alert.contract.product.root,
        "block_now": now,
        "traders_session_date": calendar.session_date(now),
    }
    rows = session.connection().execute(_SIGNAL_CONTEXT, values).all()
    if not rows:
        return None

    traders = tuple(
        EligibleTrader(row.trader_id, row.account_id, row.quantity, row.broker, row.breach_id)
        for row in rows
        if row.trader_id is not None
    )
    return SignalContext(rows[0], rows[0].signal_blocked, traders)


def parse_trading_windows(text: str) -> list[tuple[dt.time, dt.time]]:
    """Parse "09:30-11:00,13:00-15:45" (America/New_York); an empty text means no restriction."""
    windows = []
    for part in filter(None, (piece.strip() for piece in text.split(","))):
        try:
            start_text, end_text = part.split("-")
            windows.append((dt.time.fromisoformat(start_text.strip()), dt.time.fromisoformat(end_text.strip())))
        except ValueError:
            raise TradingWindowError(
                f"trading window {part!r} is invalid: write HH:MM-HH:MM in New York time, e.g. 09:30-16:00"
            ) from None
    return windows


def in_trading_windows(windows: Sequence[tuple[dt.time, dt.time]], now: dt.datetime) -> bool:
    if not windows:
        return True

    local = now.astimezone(NEW_YORK).time()
    for start, end in windows:
        # A window whose end is before its start runs over midnight, e.g. 18:00-02:00 for the evening session.
        if start <= end and start <= local < end:
            return True
        if start > end and (local >= start or local < end):
            return True
    return False


def recorder_block_reason(context: SignalContext, alert: Alert, now: dt.datetime) -> str | None:
    """Return why the recorder takes no signal now, or None. Closes pass time windows, so positions can be exited."""
    recorder = context.recorder
    if not recorder.enabled:
        return "recorder_disabled"

    if alert.action in ENTRY_ACTIONS and not in_trading_windows(_trading_windows(recorder.trading_windows), now):
        return "outside_trading_window"

    if recorder.cooldown_seconds and recorder.last_signal_at is not None:
        if now - recorder.last_signal_at < dt.timedelta(seconds=recorder.cooldown_seconds):
            return "cooldown"

    if context.signal_blocked:
        return "signal_blocked"
    return None


def block_message(reason: str, recorder, alert: Alert, now: dt.datetime) -> str:
    """Return a sentence for the alert's sender: the recorder setting that blocked it and when signals pass again."""
    name = recorder.name
    if reason == "outside_trading_window":
        windows = ", ".join(f"{start:%H:%M}-{end:%H:%M}" for start, end in _trading_windows(recorder.trading_windows))
        return (f"recorder {name} takes entries {windows} New York time and it is {now.astimezone(NEW_YORK):%H:%M} "
                "there; closes pass at any time")
    if reason == "cooldown":
        waited = (now - recorder.last_signal_at).total_seconds()
        return (f"recorder {name} waits {recorder.cooldown_seconds} s after each signal and its last one came "
                f"{math.floor(waited)} s ago; send again in {math.ceil(recorder.cooldown_seconds - waited)} s")
    if reason == "recorder_disabled":
        return f"recorder {name} is disabled; enable it to take signals"
    if reason == "signal_blocked":
        return (f"a signal block in the signal_blocks table covers recorder {name} and {alert.contract.product.root}; "
                "signals pass again when it ends or is removed")
    if reason == "no_enabled_traders":
        return f"recorder {name} has no enabled trader to place orders for"
    if reason == "loss_limit":
        return (f"every trader of recorder {name} reached its max daily loss this CME session; entries pass again "
                "at the next session, closes at any time")
    return reason


@functools.lru_cache(maxsize=256)
def _trading_windows(text: str) -> tuple[tuple[dt.time, dt.time], ...]:
    # The cache keeps one entry per distinct setting text, at most 256.
    return tuple(parse_trading_windows(text))


def eligible_traders(context: SignalContext, alert: Alert) -> tuple[list[EligibleTrader], str | None]:
    """Return the enabled traders that take this signal, or an empty list and the reason none does.

    A trader that breached its max daily loss this CME session takes no new entries until the next one.
    """
    if not context.traders:
        return [], "no_enabled_traders"

    if alert.action not in ENTRY_ACTIONS:
        return list(context.traders), None

    allowed = [trader for trader in context.traders if trader.breach_id is None]
    if not allowed:
        return [], "loss_limit"
    return allowed, None


# Statements of the webhook path, built once: building and caching a statement per call costs more than running it.
RECORDER_COLUMNS = (
    Recorder.id, Recorder.name, Recorder.enabled, Recorder.trading_windows, Recorder.cooldown_seconds,
    Recorder.last_signal_at,
)
# Whether a signal block covers the recorder and the alert's product now; correlated with the recorder row.
_SIGNAL_BLOCKED = (
    select(SignalBlock.id)
    .where(
        or_(SignalBlock.recorder_id.is_(None), SignalBlock.recorder_id == Recorder.id),
        or_(SignalBlock.symbol_root.is_(None), SignalBlock.symbol_root == bindparam("block_root")),
        or_(SignalBlock.until.is_(None), SignalBlock.until > bindparam("block_now")),
    )
    .exists()
    .label("signal_blocked")
)
# One row per enabled trader, or one row of NULL trader columns when there is none. (trader_id, session_date) is
# unique in loss_breaches, so the breach join adds no rows. Only the recorder row is locked (PostgreSQL): the
# cooldown check and the last-signal update of concurrent signals for one recorder then happen one at a time.
# The lock is FOR NO KEY UPDATE, which still excludes itself. A plain FOR UPDATE also waits for the key-share
# locks of foreign key checks. A claim transaction that updates its jobs twice checks their recorders, so at
# 200 webhooks/s the webhooks of every recorder in a claim queued behind it (docs/benchmarks.md, fix 25).
_SIGNAL_CONTEXT = (
    select(
        *RECORDER_COLUMNS, _SIGNAL_BLOCKED, Trader.id.label("trader_id"), Trader.account_id, Trader.quantity,
        Account.broker, LossBreach.id.label("breach_id"),
    )
    .select_from(Recorder)
    .outerjoin(Trader, and_(Trader.recorder_id == Recorder.id, Trader.enabled.is_(True)))
    .outerjoin(Account, Account.id == Trader.account_id)
    .outerjoin(
        LossBreach,
        and_(LossBreach.trader_id == Trader.id, LossBreach.session_date == bindparam("traders_session_date")),
    )
    .where(Recorder.webhook_token == bindparam("recorder_token"))
    .order_by(Trader.id)
    .with_for_update(of=Recorder, key_share=True)
)


def currently_blocked(session: Session, now: dt.datetime) -> list[dict]:
    """List active signal blocks and loss-limit blocks, for signal_blocking.currently_blocked."""
    blocks = session.execute(
        select(SignalBlock, Recorder.name)
        .outerjoin(Recorder, Recorder.id == SignalBlock.recorder_id)
        .where(or_(SignalBlock.until.is_(None), SignalBlock.until > now))
        .order_by(SignalBlock.id)
    ).all()
    listed = [
        {
            "type": "signal_block",
            "recorder_name": recorder_name,
            "symbol": block.symbol_root,
            "reason": block.reason,
            "until": block.until.isoformat().replace("+00:00", "Z") if block.until else None,
        }
        for block, recorder_name in blocks
    ]

    breaches = session.scalars(
        select(LossBreach).where(LossBreach.session_date == calendar.session_date(now)).order_by(LossBreach.id)
    ).all()
    listed.extend(
        {"type": "loss_limit", "trader_id": breach.trader_id, "reason": "max daily loss reached", "until": None}
        for breach in breaches
    )
    return listed

"""Filters between a parsed alert and its execution jobs: each returns the reason a signal is blocked, or None."""

from __future__ import annotations

import datetime as dt
import zoneinfo

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from ..db.models import LossBreach, Recorder, SignalBlock, Trader
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


def in_trading_windows(windows: list[tuple[dt.time, dt.time]], now: dt.datetime) -> bool:
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


def recorder_block_reason(session: Session, recorder: Recorder, alert: Alert, now: dt.datetime) -> str | None:
    """Return why the recorder takes no signal now, or None. Closes pass time windows, so positions can be exited."""
    if not recorder.enabled:
        return "recorder_disabled"

    if alert.action in ENTRY_ACTIONS and not in_trading_windows(parse_trading_windows(recorder.trading_windows), now):
        return "outside_trading_window"

    if recorder.cooldown_seconds and recorder.last_signal_at is not None:
        if now - recorder.last_signal_at < dt.timedelta(seconds=recorder.cooldown_seconds):
            return "cooldown"

    if _is_signal_blocked(session, recorder.id, alert.contract.product.root, now):
        return "signal_blocked"
    return None


def _is_signal_blocked(session: Session, recorder_id: int, root: str, now: dt.datetime) -> bool:
    block = session.scalar(
        select(SignalBlock.id)
        .where(
            or_(SignalBlock.recorder_id.is_(None), SignalBlock.recorder_id == recorder_id),
            or_(SignalBlock.symbol_root.is_(None), SignalBlock.symbol_root == root),
            or_(SignalBlock.until.is_(None), SignalBlock.until > now),
        )
        .limit(1)
    )
    return block is not None


def eligible_traders(session: Session, recorder: Recorder, alert: Alert, now: dt.datetime) -> tuple[list[Trader], str | None]:
    """Return the enabled traders that take this signal, or an empty list and the reason none does.

    A trader that breached its max daily loss this CME session takes no new entries until the next one.
    """
    traders = session.scalars(
        select(Trader).where(Trader.recorder_id == recorder.id, Trader.enabled.is_(True)).order_by(Trader.id)
    ).all()
    if not traders:
        return [], "no_enabled_traders"

    if alert.action not in ENTRY_ACTIONS:
        return list(traders), None

    breached = set(
        session.scalars(
            select(LossBreach.trader_id).where(
                LossBreach.trader_id.in_([trader.id for trader in traders]),
                LossBreach.session_date == calendar.session_date(now),
            )
        )
    )
    allowed = [trader for trader in traders if trader.id not in breached]
    if not allowed:
        return [], "loss_limit"
    return allowed, None


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

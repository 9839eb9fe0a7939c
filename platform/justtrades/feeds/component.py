"""Wires the feeds into the runtime: the TradingView price feed, the position monitor and token refresh.

Attributes set on the runtime: `price_feed` (TradingViewFeed: `price_snapshot()`, `latest_price(root)`),
`position_monitor` (PositionMonitor) and `token_refresher` (TokenRefresher).
"""

from __future__ import annotations

import logging

from sqlalchemy.exc import SQLAlchemyError

from ..daemons import redact_error
from . import metrics, views
from .position_monitor import PositionMonitor
from .settings import FeedSettings
from .tokens import TokenRefresher, account_auth_status
from .tradingview import TradingViewFeed

logger = logging.getLogger(__name__)
position_logger = logging.getLogger("position_monitor")


def init_app(app, runtime) -> None:
    settings: FeedSettings = runtime.component_settings.get("feeds") or FeedSettings.from_environ()

    runtime.price_feed = TradingViewFeed(settings.tradingview)
    if settings.tradingview.enabled:
        runtime.price_feed.register_threads(runtime.threads)

    runtime.position_monitor = PositionMonitor(
        settings.position_monitor, runtime.session_factory, runtime.engine, runtime.threads
    )
    if settings.position_monitor.enabled:
        _start_position_monitor(runtime.position_monitor)

    runtime.token_refresher = TokenRefresher(
        settings.token_refresh, runtime.session_factory, runtime.engine, lambda: find_token_manager(runtime)
    )
    if settings.token_refresh.enabled:
        runtime.token_refresher.register_threads(runtime.threads)

    app.register_blueprint(views.blueprint)
    runtime.add_collector("tradingview", lambda: metrics.collect_tradingview(runtime.price_feed), live=True)
    runtime.add_collector("position_monitor", lambda: metrics.collect_position_monitor(runtime.position_monitor), live=True)
    runtime.add_collector("accounts", lambda: _collect_accounts(runtime))


def _start_position_monitor(monitor: PositionMonitor) -> None:
    try:
        monitor.register_threads()
    except Exception as error:
        # The platform keeps serving without the monitor; the status endpoint shows why it is missing.
        monitor.start_error = redact_error(error)
        position_logger.exception("Position WebSocket monitor failed to start")


def _collect_accounts(runtime):
    try:
        accounts = account_auth_status(runtime.session_factory)
    except SQLAlchemyError as error:
        logger.warning("account gauges left out of this scrape: reading accounts failed (%s)", type(error).__name__)
        return
    yield from metrics.collect_accounts(accounts)


def find_token_manager(runtime):
    """Return the process's Tradovate TokenManager: the runtime's, else the Tradovate broker's, else None."""
    manager = getattr(runtime, "token_manager", None)
    if manager is not None:
        return manager

    broker = getattr(runtime, "brokers", {}).get("tradovate")
    return getattr(broker, "token_manager", None)

"""Wires users, login, the max daily loss monitor and the Whop sync into the app and the runtime."""

from __future__ import annotations

import datetime as dt
import logging

from flask import Flask

from ..daemons import ThreadContext
from .csrf import install_csrf
from .login import blueprint as login_blueprint
from .login import install_login_manager
from .login_limits import LoginThrottle
from .mailer import Mailer
from .max_loss import MaxLossMonitor
from .metrics import dashboard_families, max_loss_families, whop_families
from .pnl import contract_root
from .settings import AccountsSettings
from .stats import dashboard_stats
from .views import blueprint as views_blueprint
from .whop_client import WhopClient
from .whop_sync import WhopSync

logger = logging.getLogger(__name__)

MAX_LOSS_THREAD = "max-loss-monitor"
WHOP_SYNC_THREAD = "whop-sync"


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class Accounts:
    """The services of the accounts area, kept on the runtime as `runtime.accounts`."""

    def __init__(self, runtime, settings: AccountsSettings):
        self.settings = settings
        self.session_factory = runtime.session_factory
        self.login_throttle = LoginThrottle(
            runtime.session_factory,
            max_failures=settings.login_max_failures,
            window_seconds=settings.login_failure_window_seconds,
        )
        self.max_loss = MaxLossMonitor(runtime.session_factory, last_price=lambda symbol: _feed_price(runtime, symbol))
        self.mailer = Mailer(settings)
        self.whop = WhopSync(
            runtime.session_factory,
            runtime.engine,
            settings,
            self.mailer,
            client=_whop_client(settings),
            instance_id=runtime.instance_id,
        )

    def dashboard_stats(self, now: dt.datetime) -> dict:
        return dashboard_stats(self.session_factory, self.max_loss, now)


def _whop_client(settings: AccountsSettings) -> WhopClient | None:
    if not settings.whop_enabled:
        return None
    return WhopClient(
        settings.whop_api_url,
        settings.whop_api_key,
        company_id=settings.whop_company_id,
        page_size=settings.whop_page_size,
        max_pages=settings.whop_max_pages,
        timeout=settings.whop_timeout_seconds,
    )


def _feed_price(runtime, symbol: str):
    """Return the TradingView feed's last price for the contract's product, or None without a feed or price."""
    feed = getattr(runtime, "price_feed", None)
    root = contract_root(symbol)
    if feed is None or root is None:
        return None
    quote = feed.latest_price(root)
    return quote.last if quote is not None else None


def init_app(app: Flask, runtime) -> None:
    settings = runtime.component_settings.get("accounts") or AccountsSettings.from_environ()
    accounts = Accounts(runtime, settings)
    runtime.accounts = accounts

    install_login_manager(app, runtime)
    install_csrf(app)
    app.register_blueprint(login_blueprint)
    app.register_blueprint(views_blueprint)

    runtime.add_collector("dashboard stats", lambda: dashboard_families(accounts.dashboard_stats(_utc_now())))
    runtime.add_collector("max daily loss", lambda: max_loss_families(accounts.max_loss.snapshot(_utc_now())))
    runtime.add_collector("whop sync", lambda: whop_families(accounts.whop.snapshot(_utc_now())))

    runtime.threads.register(MAX_LOSS_THREAD, lambda context: run_max_loss_monitor(accounts, context))
    if settings.whop_enabled:
        runtime.threads.register(WHOP_SYNC_THREAD, lambda context: run_whop_sync(accounts, context))
    else:
        logger.info("Whop sync is off: JT_WHOP_API_KEY is not set")


def run_max_loss_monitor(accounts: Accounts, context: ThreadContext) -> None:
    """Recompute daily PnL and record breaches every interval until the runtime stops."""
    interval = accounts.settings.max_loss_check_interval_seconds
    failures = 0
    while not context.stopping():
        try:
            accounts.max_loss.check(_utc_now())
        except Exception:
            # Usually the database is away; keep trying, and let the missing heartbeats show the outage.
            failures += 1
            logger.exception("max daily loss check failed (%d in a row); retrying in %.1fs", failures, interval)
        else:
            failures = 0
            context.beat()
        context.wait(interval)


def run_whop_sync(accounts: Accounts, context: ThreadContext) -> None:
    """Sync Whop memberships every interval until the runtime stops."""
    interval = accounts.settings.whop_sync_interval_seconds
    while not context.stopping():
        now = _utc_now()
        try:
            accounts.whop.run_once(now)
        except Exception as error:
            logger.exception("Whop sync run failed unexpectedly; retrying in %.1fs", interval)
            _record_crash(accounts, now, error)
        context.beat()
        context.wait(interval)


def _record_crash(accounts: Accounts, now: dt.datetime, error: Exception) -> None:
    try:
        accounts.whop.record_crash(now, error)
    except Exception:
        logger.exception("could not store the Whop sync error; the database may be unreachable")

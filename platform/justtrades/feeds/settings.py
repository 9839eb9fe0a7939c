"""Settings of the feeds: the TradingView price feed, the Tradovate position monitor and token refresh.

Every deadline and interval is a setting, so tests can shorten them. `FeedSettings.from_environ()` reads the
JT_* variables listed on each field; `create_app(..., feeds=FeedSettings(...))` passes them directly.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

# Front-month continuous contracts on TradingView, keyed by the CME root the platform trades.
DEFAULT_TRADINGVIEW_SYMBOLS = {
    "NQ": "CME_MINI:NQ1!",
    "MNQ": "CME_MINI:MNQ1!",
    "ES": "CME_MINI:ES1!",
    "MES": "CME_MINI:MES1!",
    "RTY": "CME_MINI:RTY1!",
    "M2K": "CME_MINI:M2K1!",
    "YM": "CBOT_MINI:YM1!",
    "MYM": "CBOT_MINI:MYM1!",
    "GC": "COMEX:GC1!",
    "MGC": "COMEX:MGC1!",
    "SI": "COMEX:SI1!",
    "HG": "COMEX:HG1!",
    "CL": "NYMEX:CL1!",
    "MCL": "NYMEX:MCL1!",
    "NG": "NYMEX:NG1!",
    "ZB": "CBOT:ZB1!",
    "ZN": "CBOT:ZN1!",
}

DEFAULT_SUBSCRIBED_ROOTS = ("NQ", "ES", "GC", "MNQ", "MGC", "CL", "SI", "MES")


class FeedConfigError(ValueError):
    """A feed setting has a value the platform cannot use."""


def _number(environ, name: str, default: float) -> float:
    raw = environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise FeedConfigError(f"{name}={raw!r} is not a number; set it to seconds such as {default}") from None


def _flag(environ, name: str, default: bool) -> bool:
    raw = environ.get(name)
    if raw is None or raw == "":
        return default
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise FeedConfigError(f"{name}={raw!r} is not a boolean; use true or false")


def _require_positive(owner: object, *names: str) -> None:
    for name in names:
        value = getattr(owner, name)
        if value <= 0:
            raise FeedConfigError(f"{type(owner).__name__}.{name}={value!r} must be above 0")


def parse_symbol_map(raw: str) -> dict[str, str]:
    """Parse "ROOT=EXCHANGE:NAME,..." (the JT_TRADINGVIEW_SYMBOL_MAP format) into a mapping."""
    mapping = {}
    for item in filter(None, (part.strip() for part in raw.split(","))):
        root, separator, name = item.partition("=")
        if not separator or not root.strip() or ":" not in name:
            raise FeedConfigError(
                f"JT_TRADINGVIEW_SYMBOL_MAP entry {item!r} is invalid; write ROOT=EXCHANGE:NAME such as NQ=CME_MINI:NQ1!"
            )
        mapping[root.strip().upper()] = name.strip()
    return mapping


@dataclasses.dataclass(frozen=True)
class TradingViewSettings:
    enabled: bool = True  # JT_TRADINGVIEW_ENABLED
    ws_url: str = "wss://data.tradingview.com/socket.io/websocket"  # JT_TRADINGVIEW_WS_URL
    origin: str = "https://www.tradingview.com"  # JT_TRADINGVIEW_ORIGIN, sent as the Origin header
    roots: tuple[str, ...] = DEFAULT_SUBSCRIBED_ROOTS  # JT_TRADINGVIEW_SYMBOLS, e.g. "NQ,ES,GC"
    symbol_map: dict[str, str] = dataclasses.field(default_factory=lambda: dict(DEFAULT_TRADINGVIEW_SYMBOLS))

    # Credentials: a JWT (auth_token) and/or the session cookies that can fetch a new one.
    jwt: str | None = dataclasses.field(default=None, repr=False)  # JT_TRADINGVIEW_JWT
    session_id: str | None = dataclasses.field(default=None, repr=False)  # JT_TRADINGVIEW_SESSIONID
    session_id_sign: str | None = dataclasses.field(default=None, repr=False)  # JT_TRADINGVIEW_SESSIONID_SIGN
    session_file: Path | None = None  # JT_TRADINGVIEW_SESSION_FILE, JSON (see docs/connections.md)
    auto_refresh: bool = True  # JT_TRADINGVIEW_AUTO_REFRESH
    jwt_refresh_url: str = "https://www.tradingview.com/chart/"  # JT_TRADINGVIEW_JWT_REFRESH_URL
    jwt_refresh_margin_seconds: float = 300.0  # JT_TRADINGVIEW_JWT_REFRESH_MARGIN_SECONDS
    session_check_seconds: float = 60.0  # JT_TRADINGVIEW_SESSION_CHECK_SECONDS

    # Connection health.
    connect_timeout_seconds: float = 10.0  # JT_TRADINGVIEW_CONNECT_TIMEOUT_SECONDS
    liveness_deadline_seconds: float = 30.0  # JT_TRADINGVIEW_LIVENESS_SECONDS: silence (heartbeats included) allowed
    backoff_base_seconds: float = 1.0  # JT_TRADINGVIEW_BACKOFF_SECONDS
    backoff_max_seconds: float = 60.0  # JT_TRADINGVIEW_BACKOFF_MAX_SECONDS
    # A connection that stayed up this long resets the backoff, so one blip after hours starts from the base again.
    stable_connection_seconds: float = 60.0  # JT_TRADINGVIEW_STABLE_SECONDS

    # HTTP quote polling while the websocket is down; an empty URL switches the fallback off.
    poll_url: str = "https://scanner.tradingview.com/futures/scan"  # JT_TRADINGVIEW_POLL_URL
    poll_interval_seconds: float = 5.0  # JT_TRADINGVIEW_POLL_SECONDS
    http_timeout_seconds: float = 5.0  # JT_TRADINGVIEW_HTTP_TIMEOUT_SECONDS

    # POST /api/tradingview/refresh is unauthenticated, so it is limited per process.
    manual_refresh_min_interval_seconds: float = 30.0  # JT_TRADINGVIEW_REFRESH_MIN_INTERVAL_SECONDS

    def __post_init__(self):
        _require_positive(
            self,
            "jwt_refresh_margin_seconds",
            "session_check_seconds",
            "connect_timeout_seconds",
            "liveness_deadline_seconds",
            "backoff_base_seconds",
            "backoff_max_seconds",
            "stable_connection_seconds",
            "poll_interval_seconds",
            "http_timeout_seconds",
            "manual_refresh_min_interval_seconds",
        )
        if self.backoff_max_seconds < self.backoff_base_seconds:
            raise FeedConfigError(
                f"backoff_max_seconds={self.backoff_max_seconds} is below backoff_base_seconds="
                f"{self.backoff_base_seconds}; raise JT_TRADINGVIEW_BACKOFF_MAX_SECONDS"
            )
        unknown = [root for root in self.roots if root not in self.symbol_map]
        if unknown:
            raise FeedConfigError(
                f"no TradingView symbol known for root(s) {unknown}; add ROOT=EXCHANGE:NAME to JT_TRADINGVIEW_SYMBOL_MAP"
            )

    def tradingview_symbol(self, root: str) -> str:
        return self.symbol_map[root]

    @classmethod
    def from_environ(cls, environ=None) -> "TradingViewSettings":
        environ = os.environ if environ is None else environ
        defaults = cls()

        symbol_map = dict(DEFAULT_TRADINGVIEW_SYMBOLS)
        symbol_map.update(parse_symbol_map(environ.get("JT_TRADINGVIEW_SYMBOL_MAP", "")))
        roots_raw = environ.get("JT_TRADINGVIEW_SYMBOLS", "")
        roots = tuple(r.strip().upper() for r in roots_raw.split(",") if r.strip()) or defaults.roots
        session_file = environ.get("JT_TRADINGVIEW_SESSION_FILE") or None

        return cls(
            enabled=_flag(environ, "JT_TRADINGVIEW_ENABLED", defaults.enabled),
            ws_url=environ.get("JT_TRADINGVIEW_WS_URL") or defaults.ws_url,
            origin=environ.get("JT_TRADINGVIEW_ORIGIN") or defaults.origin,
            roots=roots,
            symbol_map=symbol_map,
            jwt=environ.get("JT_TRADINGVIEW_JWT") or None,
            session_id=environ.get("JT_TRADINGVIEW_SESSIONID") or None,
            session_id_sign=environ.get("JT_TRADINGVIEW_SESSIONID_SIGN") or None,
            session_file=Path(session_file) if session_file else None,
            auto_refresh=_flag(environ, "JT_TRADINGVIEW_AUTO_REFRESH", defaults.auto_refresh),
            jwt_refresh_url=environ.get("JT_TRADINGVIEW_JWT_REFRESH_URL") or defaults.jwt_refresh_url,
            jwt_refresh_margin_seconds=_number(
                environ, "JT_TRADINGVIEW_JWT_REFRESH_MARGIN_SECONDS", defaults.jwt_refresh_margin_seconds
            ),
            session_check_seconds=_number(
                environ, "JT_TRADINGVIEW_SESSION_CHECK_SECONDS", defaults.session_check_seconds
            ),
            connect_timeout_seconds=_number(
                environ, "JT_TRADINGVIEW_CONNECT_TIMEOUT_SECONDS", defaults.connect_timeout_seconds
            ),
            liveness_deadline_seconds=_number(
                environ, "JT_TRADINGVIEW_LIVENESS_SECONDS", defaults.liveness_deadline_seconds
            ),
            backoff_base_seconds=_number(environ, "JT_TRADINGVIEW_BACKOFF_SECONDS", defaults.backoff_base_seconds),
            backoff_max_seconds=_number(environ, "JT_TRADINGVIEW_BACKOFF_MAX_SECONDS", defaults.backoff_max_seconds),
            stable_connection_seconds=_number(
                environ, "JT_TRADINGVIEW_STABLE_SECONDS", defaults.stable_connection_seconds
            ),
            poll_url=environ.get("JT_TRADINGVIEW_POLL_URL", defaults.poll_url),
            poll_interval_seconds=_number(environ, "JT_TRADINGVIEW_POLL_SECONDS", defaults.poll_interval_seconds),
            http_timeout_seconds=_number(
                environ, "JT_TRADINGVIEW_HTTP_TIMEOUT_SECONDS", defaults.http_timeout_seconds
            ),
            manual_refresh_min_interval_seconds=_number(
                environ,
                "JT_TRADINGVIEW_REFRESH_MIN_INTERVAL_SECONDS",
                defaults.manual_refresh_min_interval_seconds,
            ),
        )


@dataclasses.dataclass(frozen=True)
class PositionMonitorSettings:
    enabled: bool = True  # JT_POSITION_MONITOR_ENABLED
    # JT_TRADOVATE_WS_URL sets both; JT_TRADOVATE_WS_URL_DEMO / _LIVE override one environment.
    ws_url_demo: str = "wss://demo.tradovateapi.com/v1/websocket"
    ws_url_live: str = "wss://live.tradovateapi.com/v1/websocket"
    connect_timeout_seconds: float = 10.0  # JT_POSITION_MONITOR_CONNECT_TIMEOUT_SECONDS
    response_timeout_seconds: float = 10.0  # JT_POSITION_MONITOR_RESPONSE_TIMEOUT_SECONDS: authorize and sync
    # Tradovate closes a socket whose client sends no "[]" heartbeat for a few seconds; its docs use 2.5 s.
    heartbeat_seconds: float = 2.5  # JT_POSITION_MONITOR_HEARTBEAT_SECONDS
    stats_window_seconds: float = 30.0  # JT_POSITION_MONITOR_STATS_WINDOW_SECONDS
    stale_windows: int = 3  # JT_POSITION_MONITOR_STALE_WINDOWS: empty windows in a row before a reconnect
    backoff_base_seconds: float = 1.0  # JT_POSITION_MONITOR_BACKOFF_SECONDS
    backoff_max_seconds: float = 60.0  # JT_POSITION_MONITOR_BACKOFF_MAX_SECONDS
    reload_seconds: float = 60.0  # JT_POSITION_MONITOR_RELOAD_SECONDS: re-read account groups from the database
    entity_types: tuple[str, ...] = ("position", "fill", "order", "cashBalance", "contract")

    def __post_init__(self):
        _require_positive(
            self,
            "connect_timeout_seconds",
            "response_timeout_seconds",
            "heartbeat_seconds",
            "stats_window_seconds",
            "stale_windows",
            "backoff_base_seconds",
            "backoff_max_seconds",
            "reload_seconds",
        )

    def ws_url(self, environment: str) -> str:
        return self.ws_url_live if environment == "live" else self.ws_url_demo

    @classmethod
    def from_environ(cls, environ=None) -> "PositionMonitorSettings":
        environ = os.environ if environ is None else environ
        defaults = cls()
        both = environ.get("JT_TRADOVATE_WS_URL") or None

        stale_raw = environ.get("JT_POSITION_MONITOR_STALE_WINDOWS") or str(defaults.stale_windows)
        if not stale_raw.isdigit():
            raise FeedConfigError(
                f"JT_POSITION_MONITOR_STALE_WINDOWS={stale_raw!r} is not a whole number; set it to a count such as 3"
            )

        return cls(
            enabled=_flag(environ, "JT_POSITION_MONITOR_ENABLED", defaults.enabled),
            ws_url_demo=environ.get("JT_TRADOVATE_WS_URL_DEMO") or both or defaults.ws_url_demo,
            ws_url_live=environ.get("JT_TRADOVATE_WS_URL_LIVE") or both or defaults.ws_url_live,
            connect_timeout_seconds=_number(
                environ, "JT_POSITION_MONITOR_CONNECT_TIMEOUT_SECONDS", defaults.connect_timeout_seconds
            ),
            response_timeout_seconds=_number(
                environ, "JT_POSITION_MONITOR_RESPONSE_TIMEOUT_SECONDS", defaults.response_timeout_seconds
            ),
            heartbeat_seconds=_number(environ, "JT_POSITION_MONITOR_HEARTBEAT_SECONDS", defaults.heartbeat_seconds),
            stats_window_seconds=_number(
                environ, "JT_POSITION_MONITOR_STATS_WINDOW_SECONDS", defaults.stats_window_seconds
            ),
            stale_windows=int(stale_raw),
            backoff_base_seconds=_number(environ, "JT_POSITION_MONITOR_BACKOFF_SECONDS", defaults.backoff_base_seconds),
            backoff_max_seconds=_number(
                environ, "JT_POSITION_MONITOR_BACKOFF_MAX_SECONDS", defaults.backoff_max_seconds
            ),
            reload_seconds=_number(environ, "JT_POSITION_MONITOR_RELOAD_SECONDS", defaults.reload_seconds),
        )


@dataclasses.dataclass(frozen=True)
class TokenRefreshSettings:
    enabled: bool = True  # JT_TOKEN_REFRESH_ENABLED
    interval_seconds: float = 60.0  # JT_TOKEN_REFRESH_INTERVAL_SECONDS: how often tokens are checked
    # Tradovate access tokens last about 90 minutes; renewing 15 minutes ahead leaves room for retries.
    renew_before_seconds: float = 900.0  # JT_TOKEN_RENEW_BEFORE_SECONDS

    def __post_init__(self):
        _require_positive(self, "interval_seconds", "renew_before_seconds")

    @classmethod
    def from_environ(cls, environ=None) -> "TokenRefreshSettings":
        environ = os.environ if environ is None else environ
        defaults = cls()
        return cls(
            enabled=_flag(environ, "JT_TOKEN_REFRESH_ENABLED", defaults.enabled),
            interval_seconds=_number(environ, "JT_TOKEN_REFRESH_INTERVAL_SECONDS", defaults.interval_seconds),
            renew_before_seconds=_number(environ, "JT_TOKEN_RENEW_BEFORE_SECONDS", defaults.renew_before_seconds),
        )


@dataclasses.dataclass(frozen=True)
class FeedSettings:
    tradingview: TradingViewSettings = dataclasses.field(default_factory=TradingViewSettings)
    position_monitor: PositionMonitorSettings = dataclasses.field(default_factory=PositionMonitorSettings)
    token_refresh: TokenRefreshSettings = dataclasses.field(default_factory=TokenRefreshSettings)

    @classmethod
    def from_environ(cls, environ=None) -> "FeedSettings":
        """Read every feed setting; JT_FEEDS_ENABLED=false switches all three daemons off (for test suites)."""
        environ = os.environ if environ is None else environ
        settings = cls(
            tradingview=TradingViewSettings.from_environ(environ),
            position_monitor=PositionMonitorSettings.from_environ(environ),
            token_refresh=TokenRefreshSettings.from_environ(environ),
        )
        if not _flag(environ, "JT_FEEDS_ENABLED", True):
            return settings.without_daemons()
        return settings

    @classmethod
    def disabled(cls) -> "FeedSettings":
        """Settings with no daemon enabled: the endpoints answer, and nothing connects anywhere."""
        return cls().without_daemons()

    def without_daemons(self) -> "FeedSettings":
        return FeedSettings(
            tradingview=dataclasses.replace(self.tradingview, enabled=False),
            position_monitor=dataclasses.replace(self.position_monitor, enabled=False),
            token_refresh=dataclasses.replace(self.token_refresh, enabled=False),
        )

"""Settings of the accounts area: login limits, the max daily loss monitor, the Whop sync and SMTP."""

from __future__ import annotations

import dataclasses
import os

from ..config import ConfigError, _env_float, _env_int

SMTP_SECURITY_MODES = ("starttls", "ssl", "none")

DAY_SECONDS = 24 * 60 * 60


@dataclasses.dataclass(frozen=True)
class AccountsSettings:
    """Tunables of users, login, the max daily loss monitor and the Whop membership sync."""

    # Failed logins allowed per account and per client address within the window, before 429.
    login_max_failures: int = 5
    login_failure_window_seconds: float = 15 * 60
    # How long the device cookie of a successful login exempts its browser from the per-account count.
    login_device_cookie_days: float = 90.0

    # How often the max daily loss monitor recomputes daily PnL and records breaches.
    max_loss_check_interval_seconds: float = 5.0

    # Whop API. The key is a secret: it only goes into the Authorization header.
    whop_api_url: str = "https://api.whop.com/api/v1"
    whop_api_key: str | None = dataclasses.field(default=None, repr=False)
    whop_company_id: str | None = None
    whop_sync_interval_seconds: float = 30.0
    whop_timeout_seconds: float = 10.0
    whop_page_size: int = 50
    whop_max_pages: int = 200

    # SMTP for activation emails. The password is a secret.
    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_user: str | None = None
    smtp_password: str | None = dataclasses.field(default=None, repr=False)
    smtp_from: str = "Just Trades <no-reply@localhost>"
    smtp_security: str = "starttls"
    smtp_timeout_seconds: float = 10.0

    # Activation emails: the link base, when to resend, how often, and when a user counts as stuck.
    public_url: str = "http://localhost:5000"
    activation_resend_after_seconds: float = DAY_SECONDS
    activation_max_resends: int = 3
    activation_stuck_after_seconds: float = 3 * DAY_SECONDS
    activation_token_ttl_seconds: float = 7 * DAY_SECONDS

    def __post_init__(self):
        if self.smtp_security not in SMTP_SECURITY_MODES:
            raise ConfigError(
                f"JT_SMTP_SECURITY={self.smtp_security!r} is unknown; use one of {', '.join(SMTP_SECURITY_MODES)}"
            )

        positive = (
            "login_failure_window_seconds",
            "login_device_cookie_days",
            "max_loss_check_interval_seconds",
            "whop_sync_interval_seconds",
            "whop_timeout_seconds",
            "smtp_timeout_seconds",
            "activation_token_ttl_seconds",
        )
        for name in positive:
            if getattr(self, name) <= 0:
                raise ConfigError(f"AccountsSettings.{name}={getattr(self, name)!r} must be above 0")

        if self.login_max_failures < 1 or self.whop_page_size < 1 or self.whop_max_pages < 1:
            raise ConfigError("login_max_failures, whop_page_size and whop_max_pages must be at least 1")

    @property
    def whop_enabled(self) -> bool:
        return bool(self.whop_api_key)

    @property
    def smtp_enabled(self) -> bool:
        return bool(self.smtp_host)

    @classmethod
    def from_environ(cls, environ=None) -> "AccountsSettings":
        """Build the settings from JT_* environment variables; docs/accounts.md lists each one."""
        environ = os.environ if environ is None else environ
        defaults = cls()

        return cls(
            login_max_failures=_env_int(environ, "JT_LOGIN_MAX_FAILURES", defaults.login_max_failures, minimum=1),
            login_failure_window_seconds=_env_float(
                environ, "JT_LOGIN_FAILURE_WINDOW_SECONDS", defaults.login_failure_window_seconds
            ),
            login_device_cookie_days=_env_float(
                environ, "JT_LOGIN_DEVICE_COOKIE_DAYS", defaults.login_device_cookie_days
            ),
            max_loss_check_interval_seconds=_env_float(
                environ, "JT_MAX_LOSS_CHECK_INTERVAL_SECONDS", defaults.max_loss_check_interval_seconds
            ),
            whop_api_url=environ.get("JT_WHOP_API_URL") or defaults.whop_api_url,
            whop_api_key=environ.get("JT_WHOP_API_KEY") or None,
            whop_company_id=environ.get("JT_WHOP_COMPANY_ID") or None,
            whop_sync_interval_seconds=_env_float(
                environ, "JT_WHOP_SYNC_INTERVAL_SECONDS", defaults.whop_sync_interval_seconds
            ),
            whop_timeout_seconds=_env_float(environ, "JT_WHOP_TIMEOUT_SECONDS", defaults.whop_timeout_seconds),
            whop_page_size=_env_int(environ, "JT_WHOP_PAGE_SIZE", defaults.whop_page_size, minimum=1),
            whop_max_pages=_env_int(environ, "JT_WHOP_MAX_PAGES", defaults.whop_max_pages, minimum=1),
            smtp_host=environ.get("JT_SMTP_HOST") or None,
            smtp_port=_env_int(environ, "JT_SMTP_PORT", defaults.smtp_port, minimum=1),
            smtp_user=environ.get("JT_SMTP_USER") or None,
            smtp_password=environ.get("JT_SMTP_PASSWORD") or None,
            smtp_from=environ.get("JT_SMTP_FROM") or defaults.smtp_from,
            smtp_security=(environ.get("JT_SMTP_SECURITY") or defaults.smtp_security).strip().lower(),
            smtp_timeout_seconds=_env_float(environ, "JT_SMTP_TIMEOUT_SECONDS", defaults.smtp_timeout_seconds),
            public_url=(environ.get("JT_PUBLIC_URL") or defaults.public_url).rstrip("/"),
            activation_resend_after_seconds=_env_float(
                environ, "JT_ACTIVATION_RESEND_AFTER_SECONDS", defaults.activation_resend_after_seconds
            ),
            activation_max_resends=_env_int(
                environ, "JT_ACTIVATION_MAX_RESENDS", defaults.activation_max_resends, minimum=0
            ),
            activation_stuck_after_seconds=_env_float(
                environ, "JT_ACTIVATION_STUCK_AFTER_SECONDS", defaults.activation_stuck_after_seconds
            ),
            activation_token_ttl_seconds=_env_float(
                environ, "JT_ACTIVATION_TOKEN_TTL_SECONDS", defaults.activation_token_ttl_seconds
            ),
        )

    def replace(self, **changes) -> "AccountsSettings":
        return dataclasses.replace(self, **changes)

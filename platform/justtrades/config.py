"""Settings read from the environment, with embedded defaults for a single machine."""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import secrets
from pathlib import Path

from .execution.claim_rounds import MAX_INTERVAL_SECONDS


class ConfigError(ValueError):
    """A setting has a value the platform cannot use."""


def _env_int(environ, name: str, default: int, minimum: int = 0) -> int:
    raw = environ.get(name)
    if raw is None or raw == "":
        return default

    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a whole number; set it to an integer such as {default}") from None

    if value < minimum:
        raise ConfigError(f"{name}={value} is below the minimum {minimum}; set it to at least {minimum}")
    return value


def _claim_interval(environ, default: float) -> float:
    seconds = _env_float(environ, "JT_BROKER_CLAIM_INTERVAL_SECONDS", default)
    if seconds > MAX_INTERVAL_SECONDS:
        raise ConfigError(f"JT_BROKER_CLAIM_INTERVAL_SECONDS={seconds:g} is above {MAX_INTERVAL_SECONDS:g}, and a "
                          f"paper job may wait that long for its claim; set it to {default:g} or at most "
                          f"{MAX_INTERVAL_SECONDS:g}")
    return seconds


def _env_float(environ, name: str, default: float) -> float:
    raw = environ.get(name)
    if raw is None or raw == "":
        return default

    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number; set it to a value such as {default}") from None

    if value < 0:
        raise ConfigError(f"{name}={value} is negative; set it to 0 or more")
    return value


def _env_bool(environ, name: str, default: bool) -> bool:
    raw = environ.get(name)
    if raw is None or raw == "":
        return default

    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name}={raw!r} is not a boolean; use true or false")


def _env_networks(environ, name: str) -> tuple[str, ...]:
    raw = environ.get(name) or ""
    networks = []
    for part in filter(None, (piece.strip() for piece in raw.split(","))):
        try:
            networks.append(str(ipaddress.ip_network(part, strict=False)))
        except ValueError:
            raise ConfigError(
                f"{name} entry {part!r} is not an IP address or CIDR block; use a list such as 52.89.214.238,10.0.0.0/8"
            ) from None
    return tuple(networks)


def _broker_process(environ, database_url: str) -> bool:
    """Read JT_BROKER_PROCESS: true, false, or auto (the default), which is true on PostgreSQL only.

    On SQLite a second process would contend for the file's one write lock outside the process's own queue,
    which lets webhook transactions go first (db/engine.py), so the embedded default keeps threads.
    """
    raw = environ.get("JT_BROKER_PROCESS") or "auto"
    if raw.strip().lower() == "auto":
        return database_url.startswith("postgresql")
    try:
        return _env_bool(environ, "JT_BROKER_PROCESS", False)
    except ConfigError:
        raise ConfigError(f"JT_BROKER_PROCESS={raw!r} is not true, false or auto; use one of them") from None


def default_database_url() -> str:
    """Return the SQLite file used when DATABASE_URL is not set."""
    path = Path(os.environ.get("JT_DATA_DIR", "instance")).resolve() / "justtrades.sqlite3"
    return f"sqlite:///{path}"


@dataclasses.dataclass(frozen=True)
class Settings:
    """Every tunable of the platform; tests build one with shortened intervals."""

    database_url: str = dataclasses.field(default_factory=default_database_url)
    admin_api_key: str | None = None
    secret_key: str = dataclasses.field(default_factory=lambda: secrets.token_hex(32))

    # Execution.
    broker: str = "paper"
    broker_workers: int = 10
    # Claim transactions at once, each for the batches of all workers waiting for it. A paper order is placed in
    # that transaction, so it is CPU in this process: more at once only takes the interpreter lock from the
    # webhook threads. Network waits don't count.
    broker_claim_concurrency: int = 1
    # Minimum seconds between the starts of two claim rounds, so that jobs arriving one by one are claimed
    # together, because most of a claim's statements cost the same for one job as for fifty. A job arriving
    # after a quiet spell does not wait.
    broker_claim_interval_seconds: float = 0.05
    # Paper jobs a worker claims and fills in one transaction when several wait; 1 claims each job alone.
    broker_batch_size: int = 16
    worker_poll_seconds: float = 1.0
    # Paper jobs run in a child process of their own (execution/process.py), so that filling them does not take
    # the interpreter lock from the webhook threads. Settings built in code keep them in threads; from the
    # environment the default is the child process on PostgreSQL and threads on SQLite (see from_environ).
    broker_process: bool = False
    job_max_attempts: int = 5
    job_lease_seconds: float = 60.0
    # Seconds between vacuums of the tables with dead rows (db/upkeep.py), on PostgreSQL; 0 leaves it to autovacuum.
    database_vacuum_seconds: float = 15.0

    # Webhook ingestion. TradingView gives up on a delivery after 3 seconds.
    webhook_max_body_bytes: int = 64 * 1024
    raw_body_keep_bytes: int = 4 * 1024
    duplicate_window_seconds: float = 5.0

    # Tradovate REST.
    tradovate_url: str = "https://demo.tradovateapi.com/v1"
    tradovate_live_url: str = "https://live.tradovateapi.com/v1"
    tradovate_timeout_seconds: float = 5.0

    # Access to the per-entity broker-state endpoints, which expose customers' positions.
    open_entity_debugging: bool = False

    # Webhook senders allowed by source address (IPs or CIDR blocks); empty allows every address.
    webhook_allowed_networks: tuple[str, ...] = ()
    # Reverse proxies in front of the platform whose X-Forwarded-For entry is trusted for the client address.
    trusted_proxies: int = 0
    # Seconds a connection may send nothing before the HTTP server closes it: a request whose body never arrives,
    # or an idle keep-alive connection. waitress's own default, 120 s, let a hundred stalled requests (its
    # connection limit) hold webhook intake for two minutes.
    http_channel_timeout_seconds: int = 15

    @classmethod
    def from_environ(cls, environ=None) -> "Settings":
        """Build the settings from environment variables (see the README for each one)."""
        environ = os.environ if environ is None else environ
        defaults = cls()

        database_url = environ.get("DATABASE_URL") or defaults.database_url

        return cls(
            database_url=database_url,
            admin_api_key=environ.get("JT_ADMIN_API_KEY") or None,
            secret_key=environ.get("JT_SECRET_KEY") or defaults.secret_key,
            broker=environ.get("JT_BROKER", defaults.broker),
            broker_workers=_env_int(environ, "JT_BROKER_WORKERS", defaults.broker_workers, minimum=1),
            broker_claim_concurrency=_env_int(
                environ, "JT_BROKER_CLAIM_CONCURRENCY", defaults.broker_claim_concurrency, minimum=1
            ),
            broker_claim_interval_seconds=_claim_interval(environ, defaults.broker_claim_interval_seconds),
            broker_batch_size=_env_int(environ, "JT_BROKER_BATCH_SIZE", defaults.broker_batch_size, minimum=1),
            worker_poll_seconds=_env_float(environ, "JT_WORKER_POLL_SECONDS", defaults.worker_poll_seconds),
            broker_process=_broker_process(environ, database_url),
            job_max_attempts=_env_int(environ, "JT_JOB_MAX_ATTEMPTS", defaults.job_max_attempts, minimum=1),
            job_lease_seconds=_env_float(environ, "JT_JOB_LEASE_SECONDS", defaults.job_lease_seconds),
            database_vacuum_seconds=_env_float(environ, "JT_DB_VACUUM_SECONDS", defaults.database_vacuum_seconds),
            webhook_max_body_bytes=_env_int(
                environ, "JT_WEBHOOK_MAX_BODY_BYTES", defaults.webhook_max_body_bytes, minimum=1024
            ),
            raw_body_keep_bytes=_env_int(environ, "JT_RAW_BODY_KEEP_BYTES", defaults.raw_body_keep_bytes, minimum=256),
            duplicate_window_seconds=_env_float(
                environ, "JT_DUPLICATE_WINDOW_SECONDS", defaults.duplicate_window_seconds
            ),
            tradovate_url=environ.get("JT_TRADOVATE_URL", defaults.tradovate_url),
            tradovate_live_url=environ.get("JT_TRADOVATE_LIVE_URL", defaults.tradovate_live_url),
            tradovate_timeout_seconds=_env_float(
                environ, "JT_TRADOVATE_TIMEOUT_SECONDS", defaults.tradovate_timeout_seconds
            ),
            open_entity_debugging=_env_bool(environ, "JT_OPEN_ENTITY_DEBUGGING", defaults.open_entity_debugging),
            webhook_allowed_networks=_env_networks(environ, "JT_WEBHOOK_ALLOWED_IPS"),
            trusted_proxies=_env_int(environ, "JT_TRUSTED_PROXIES", defaults.trusted_proxies),
            http_channel_timeout_seconds=_env_int(
                environ, "JT_HTTP_CHANNEL_TIMEOUT_SECONDS", defaults.http_channel_timeout_seconds, minimum=1
            ),
        )

    def replace(self, **changes) -> "Settings":
        return dataclasses.replace(self, **changes)

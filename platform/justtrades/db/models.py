"""SQLAlchemy models of the platform: accounts, recorders, traders, the webhook log and execution."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from .types import DecimalText, ExactDecimal, UTCDateTime


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


# Named constraints make Alembic migrations reproducible on both SQLite and PostgreSQL.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(255), unique=True)
    password_hash: Mapped[str | None] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16), default="user")  # "admin" or "user"
    approved: Mapped[bool] = mapped_column(Boolean, default=False)
    is_affiliate: Mapped[bool] = mapped_column(Boolean, default=False)
    whop_membership_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    whop_status: Mapped[str | None] = mapped_column(String(32))
    activation_token_hash: Mapped[str | None] = mapped_column(String(128))
    activation_sent_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    activation_resends: Mapped[int] = mapped_column(Integer, default=0)
    activated_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class Account(Base):
    """A broker account; Tradovate accounts that share credentials form one token group."""

    __tablename__ = "accounts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    broker: Mapped[str] = mapped_column(String(16), default="paper")  # "paper" or "tradovate"
    environment: Mapped[str] = mapped_column(String(8), default="demo")  # "demo" or "live"
    broker_account_id: Mapped[int | None] = mapped_column(BigInteger)
    token_group: Mapped[str | None] = mapped_column(String(120))
    # Secrets: used only to call the broker, never serialised into a response, log or metric.
    access_token: Mapped[str | None] = mapped_column(Text)
    token_expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    auth_status: Mapped[str] = mapped_column(String(16), default="valid")  # valid, expired, missing
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class Recorder(Base):
    """A strategy: TradingView posts its alerts to the recorder's webhook token."""

    __tablename__ = "recorders"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    webhook_token: Mapped[str] = mapped_column(String(64), unique=True)
    strategy: Mapped[str | None] = mapped_column(String(120))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    # Comma-separated "HH:MM-HH:MM" windows in America/New_York; empty means always.
    trading_windows: Mapped[str] = mapped_column(String(255), default="")
    cooldown_seconds: Mapped[int] = mapped_column(Integer, default=0)
    last_signal_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    traders: Mapped[list["Trader"]] = relationship(back_populates="recorder")


class Trader(Base):
    """A user's subscription to a recorder, bound to one broker account."""

    __tablename__ = "traders"
    __table_args__ = (UniqueConstraint("recorder_id", "account_id", name="uq_traders_recorder_account"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    recorder_id: Mapped[int] = mapped_column(ForeignKey("recorders.id"), index=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    quantity: Mapped[int] = mapped_column(Integer, default=1)
    max_daily_loss: Mapped[Decimal | None] = mapped_column(ExactDecimal)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    recorder: Mapped[Recorder] = relationship(back_populates="traders")
    account: Mapped[Account] = relationship()


class SignalBlock(Base):
    """An operator's block on a recorder's signals, optionally for one symbol root and until a time."""

    __tablename__ = "signal_blocks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    recorder_id: Mapped[int | None] = mapped_column(ForeignKey("recorders.id"))
    symbol_root: Mapped[str | None] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(255))
    until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class RawWebhook(Base):
    """A delivery as it arrived, before any filter (body truncated and secrets redacted)."""

    __tablename__ = "raw_webhooks"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The token in a webhook URL lets anyone send orders, so the row keeps only its SHA-256 digest (to match a
    # replayed delivery and name the recorder) and, for a token of 12 characters or more, its last four.
    token_sha256: Mapped[str] = mapped_column(String(64))
    token_tail: Mapped[str] = mapped_column(String(4))
    source_ip: Mapped[str | None] = mapped_column(String(64))
    content_type: Mapped[str | None] = mapped_column(String(128))
    size_bytes: Mapped[int] = mapped_column(Integer)
    body: Mapped[str] = mapped_column(Text)
    truncated: Mapped[bool] = mapped_column(Boolean, default=False)
    action: Mapped[str | None] = mapped_column(String(16))
    outcome: Mapped[str | None] = mapped_column(String(16))
    http_status: Mapped[int | None] = mapped_column(Integer)


class WebhookActivity(Base):
    """The processing record of one delivery for a known recorder: status, reason, latency, traders notified."""

    __tablename__ = "webhook_activity"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    raw_webhook_id: Mapped[int | None] = mapped_column(BigInteger)
    recorder_id: Mapped[int] = mapped_column(ForeignKey("recorders.id"))
    recorder_name: Mapped[str] = mapped_column(String(120))
    action: Mapped[str | None] = mapped_column(String(16))
    ticker: Mapped[str | None] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))  # success, failed, blocked, duplicate
    reason: Mapped[str | None] = mapped_column(String(255))
    latency_ms: Mapped[int | None] = mapped_column(Integer)
    traders_notified: Mapped[int] = mapped_column(Integer, default=0)


class DuplicateGuard(Base):
    """One row per recent alert fingerprint; the unique key makes concurrent copies lose the race."""

    __tablename__ = "webhook_duplicate_guard"

    fingerprint: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)


class Counter(Base):
    """Running totals kept in the same transaction as the rows they count, so stats need no table scan."""

    __tablename__ = "counters"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    # A counter is the sum of its stripes. Each pooled connection writes its own stripe, so concurrent webhook
    # transactions do not wait for each other's row lock on a counter they all raise (see db/counters.py).
    stripe: Mapped[int] = mapped_column(SmallInteger, primary_key=True, default=0, server_default="0")
    value: Mapped[int] = mapped_column(BigInteger, default=0)


class ExecutionJob(Base):
    """One order intent for one trader; stored before the webhook is acknowledged."""

    __tablename__ = "execution_jobs"
    __table_args__ = (Index("ix_execution_jobs_status_next_attempt_at", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(96), unique=True)
    activity_id: Mapped[int | None] = mapped_column(BigInteger)
    recorder_id: Mapped[int] = mapped_column(ForeignKey("recorders.id"))
    trader_id: Mapped[int] = mapped_column(ForeignKey("traders.id"), index=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    action: Mapped[str] = mapped_column(String(16))
    symbol: Mapped[str] = mapped_column(String(32))
    quantity: Mapped[int] = mapped_column(Integer)
    price: Mapped[Decimal | None] = mapped_column(ExactDecimal)
    take_profit: Mapped[Decimal | None] = mapped_column(ExactDecimal)
    stop_loss: Mapped[Decimal | None] = mapped_column(ExactDecimal)
    status: Mapped[str] = mapped_column(String(16), default="queued")  # queued, running, done, failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    lease_expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    last_error: Mapped[str | None] = mapped_column(Text)
    signal_received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class Order(Base):
    """A broker order; at most one per job, written before the broker is called."""

    __tablename__ = "orders"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("execution_jobs.id"), unique=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    trader_id: Mapped[int | None] = mapped_column(ForeignKey("traders.id"))
    client_order_id: Mapped[str] = mapped_column(String(96), unique=True)
    broker_order_id: Mapped[str | None] = mapped_column(String(64), index=True)
    symbol: Mapped[str] = mapped_column(String(32))
    side: Mapped[str] = mapped_column(String(8))  # Buy or Sell
    quantity: Mapped[int] = mapped_column(Integer)
    order_type: Mapped[str] = mapped_column(String(16), default="Market")
    take_profit: Mapped[Decimal | None] = mapped_column(ExactDecimal)
    stop_loss: Mapped[Decimal | None] = mapped_column(ExactDecimal)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending, placed, filled, rejected, canceled, unknown
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class Fill(Base):
    __tablename__ = "fills"
    __table_args__ = (UniqueConstraint("account_id", "broker_fill_id", name="uq_fills_account_broker_fill"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    order_id: Mapped[int | None] = mapped_column(ForeignKey("orders.id"), index=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    trader_id: Mapped[int | None] = mapped_column(ForeignKey("traders.id"), index=True)
    symbol: Mapped[str] = mapped_column(String(32))
    side: Mapped[str] = mapped_column(String(8))
    quantity: Mapped[int] = mapped_column(Integer)
    price: Mapped[Decimal] = mapped_column(ExactDecimal)
    filled_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    # Tradovate's fill id, for fills recorded by the position monitor; NULL for paper fills.
    broker_fill_id: Mapped[str | None] = mapped_column(String(64))


class TraderPosition(Base):
    """A trader's net position in one contract at average cost, after every fill of that pair.

    Kept by `db.pnl_totals` in the transaction of each fill. A new fill older than the newest applied one, by
    (filled_at, id), arrived out of order, so the trader's fills are replayed instead of applying it on top.
    """

    __tablename__ = "trader_positions"

    trader_id: Mapped[int] = mapped_column(ForeignKey("traders.id"), primary_key=True)
    symbol: Mapped[str] = mapped_column(String(32), primary_key=True)
    net: Mapped[int] = mapped_column(Integer, default=0)
    avg_price: Mapped[Decimal | None] = mapped_column(DecimalText)
    last_filled_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    last_fill_id: Mapped[int] = mapped_column(BigInteger)


class TraderSessionPnl(Base):
    """A trader's realized PnL in one CME session, in US dollars, kept by `db.pnl_totals` with each fill.

    `unpriced_symbols` is a JSON list of the contracts of unknown products traded in the session, whose
    realized PnL cannot be valued in dollars and is left out of `realized`.
    """

    __tablename__ = "trader_session_pnl"

    # session_date first: the readers ask for every trader of the current session.
    session_date: Mapped[dt.date] = mapped_column(primary_key=True)
    trader_id: Mapped[int] = mapped_column(ForeignKey("traders.id"), primary_key=True)
    realized: Mapped[Decimal] = mapped_column(DecimalText)
    fills: Mapped[int] = mapped_column(Integer, default=0)
    unpriced_symbols: Mapped[str] = mapped_column(Text, default="[]")


class Position(Base):
    """Net position per account and contract, kept by the paper broker and by fills from Tradovate."""

    __tablename__ = "positions"
    __table_args__ = (UniqueConstraint("account_id", "symbol", name="uq_positions_account_symbol"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    symbol: Mapped[str] = mapped_column(String(32))
    net_pos: Mapped[int] = mapped_column(Integer, default=0)
    avg_price: Mapped[Decimal | None] = mapped_column(ExactDecimal)
    realized_pnl: Mapped[Decimal] = mapped_column(ExactDecimal, default=Decimal(0))
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class ExecutionFailure(Base):
    __tablename__ = "execution_failures"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    job_id: Mapped[int | None] = mapped_column(BigInteger)
    recorder_name: Mapped[str | None] = mapped_column(String(120))
    trader_id: Mapped[int | None] = mapped_column(Integer)
    account_id: Mapped[int | None] = mapped_column(Integer)
    symbol: Mapped[str | None] = mapped_column(String(32))
    action: Mapped[str | None] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(32))  # a FailureReason value
    error: Mapped[str] = mapped_column(Text)
    permanent: Mapped[bool] = mapped_column(Boolean, default=True)


class PaperTrade(Base):
    """A round trip on the paper broker: opened at one cached price, closed at another."""

    __tablename__ = "paper_trades"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    trader_id: Mapped[int | None] = mapped_column(ForeignKey("traders.id"))
    symbol: Mapped[str] = mapped_column(String(32))
    side: Mapped[str] = mapped_column(String(8))
    quantity: Mapped[int] = mapped_column(Integer)
    entry_price: Mapped[Decimal] = mapped_column(ExactDecimal)
    exit_price: Mapped[Decimal | None] = mapped_column(ExactDecimal)
    pnl: Mapped[Decimal | None] = mapped_column(ExactDecimal)
    opened_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    closed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, index=True)


class LossBreach(Base):
    """A trader that reached its max daily loss in one CME session; new entries stay blocked until the next."""

    __tablename__ = "loss_breaches"
    __table_args__ = (UniqueConstraint("trader_id", "session_date", name="uq_loss_breaches_trader_session"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    trader_id: Mapped[int] = mapped_column(ForeignKey("traders.id"))
    session_date: Mapped[dt.date] = mapped_column()
    daily_pnl: Mapped[Decimal] = mapped_column(ExactDecimal)
    max_daily_loss: Mapped[Decimal] = mapped_column(ExactDecimal)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)



class LoginFailure(Base):
    """One failed login, keyed by account or client address; login throttling counts these within a window.

    The key is a SHA-256 digest, so a password typed into the email field never lands in the table.
    """

    __tablename__ = "login_failures"
    __table_args__ = (Index("ix_login_failures_scope_key_hash_failed_at", "scope", "key_hash", "failed_at"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    scope: Mapped[str] = mapped_column(String(16))  # "account" or "address"
    key_hash: Mapped[str] = mapped_column(String(64))
    failed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class WhopSyncState(Base):
    """The single row (id 1) that records the last Whop sync, shared by every replica."""

    __tablename__ = "whop_sync_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    last_run_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)  # last successful run
    last_attempt_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    last_synced: Mapped[int] = mapped_column(Integer, default=0)
    last_resent: Mapped[int] = mapped_column(Integer, default=0)
    last_instance: Mapped[str | None] = mapped_column(String(128))

Index("ix_raw_webhooks_received_at", RawWebhook.received_at)
Index("ix_webhook_activity_created_at", WebhookActivity.created_at)

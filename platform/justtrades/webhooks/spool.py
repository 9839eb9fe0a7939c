"""A durable local spool for webhook deliveries that arrive while the database is unreachable.

TradingView does not retry a webhook, so a delivery that gets a 5xx response is a lost signal. While the database is
unreachable, the webhook view therefore writes each delivery to a file in the spool and answers 202. A replayer
thread ingests the files in arrival order once the database answers, with the original received time, so duplicate
detection, cooldowns, trading windows and the raw log see the delivery as it arrived. Each file is deleted only
after its outcome is committed.

Layout under the spool directory (default `$JT_DATA_DIR/spool`):
- `pending/<name>.json`: one delivery per file, written to `tmp/` first, flushed with fsync and renamed, so a
  crash leaves either a whole file or none. A name is the arrival time in nanoseconds (unique per token, so
  sorting names gives the replay order) and a hash of the webhook token, so the index knows each file's recorder.
- `failed/<name>.json`: deliveries that could not be replayed for a reason other than the database (a corrupt
  file, or a bug that raised three times); they wait there for an operator, next to a `.error` text file.
- `.lock`: an exclusive lock, because two processes replaying one spool would race for the same files.

The spool holds raw bodies, secrets included (they are redacted when the delivery is recorded, at replay), so
its directories are created with mode 0700 and its files with mode 0600.
"""

from __future__ import annotations

import base64
import collections
import dataclasses
import datetime as dt
import fcntl
import hashlib
import heapq
import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Callable

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from sqlalchemy import exc as sa_exc

from .ingest import Delivery

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
# A delivery whose replay raised something other than a database outage this many times goes to failed/.
MAX_REPLAY_ATTEMPTS = 3


class SpoolConfigError(ValueError):
    """A spool setting has a value the platform cannot use."""


class SpoolFull(Exception):
    """The spool has no room left for the delivery."""


class SpoolUnavailable(Exception):
    """The spool is switched off or its directory cannot be used."""


def is_database_unavailable(error: BaseException) -> bool:
    """Tell whether an exception means the database cannot be reached (or is too busy), not that a query is wrong.

    SQLAlchemy raises OperationalError for refused or dropped connections (and for SQLite's "database is locked"),
    InterfaceError for a closed connection, and TimeoutError when the pool has no connection to give. A hung
    PostgreSQL shows as OperationalError too: psycopg's QueryCanceled (statement_timeout), LockNotAvailable
    (lock_timeout) and ConnectionTimeout (connect_timeout) derive from it, and a call cut at its reply deadline
    (db/postgres.py) fails as a closed connection.
    """
    if isinstance(error, (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError, sa_exc.DisconnectionError)):
        return True
    return isinstance(error, sa_exc.DBAPIError) and bool(error.connection_invalidated)


def _env_number(environ, name: str, default: float, *, minimum: float, integer: bool = False):
    raw = environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        kind = "a whole number" if integer else "a number"
        raise SpoolConfigError(f"{name}={raw!r} is not {kind}; set it to a value such as {default}") from None
    if value < minimum:
        raise SpoolConfigError(f"{name}={value} is below the minimum {minimum}; set it to at least {minimum}")
    return value


@dataclasses.dataclass(frozen=True)
class SpoolSettings:
    directory: Path  # JT_WEBHOOK_SPOOL_DIR, default $JT_DATA_DIR/spool
    max_bytes: int = DEFAULT_MAX_BYTES  # JT_WEBHOOK_SPOOL_MAX_BYTES; 0 switches the spool off
    retry_seconds: float = 0.5  # JT_WEBHOOK_SPOOL_RETRY_SECONDS: first wait after a failed replay
    retry_max_seconds: float = 5.0  # JT_WEBHOOK_SPOOL_RETRY_MAX_SECONDS: the wait doubles up to this

    @property
    def enabled(self) -> bool:
        return self.max_bytes > 0

    @classmethod
    def from_environ(cls, environ=None) -> "SpoolSettings":
        environ = os.environ if environ is None else environ
        data_dir = Path(environ.get("JT_DATA_DIR") or "instance")
        directory = Path(environ.get("JT_WEBHOOK_SPOOL_DIR") or data_dir / "spool").resolve()
        retry = _env_number(environ, "JT_WEBHOOK_SPOOL_RETRY_SECONDS", 0.5, minimum=0.01)
        retry_max = _env_number(environ, "JT_WEBHOOK_SPOOL_RETRY_MAX_SECONDS", 5.0, minimum=retry)
        return cls(
            directory=directory,
            max_bytes=_env_number(environ, "JT_WEBHOOK_SPOOL_MAX_BYTES", DEFAULT_MAX_BYTES, minimum=0, integer=True),
            retry_seconds=retry,
            retry_max_seconds=retry_max,
        )


def token_key(token: str) -> str:
    """Return the part of a spool file name that identifies the delivery's webhook token without revealing it."""
    return hashlib.sha256(token.encode()).hexdigest()[:16]


def _key_of(name: str) -> str:
    return name.split("-", 1)[1] if "-" in name else ""


@dataclasses.dataclass(frozen=True)
class SpoolEntry:
    name: str  # file stem "<arrival ns, zero-padded>-<token key>", so names sort in arrival order
    path: Path
    size: int

    @property
    def spooled_at(self) -> dt.datetime:
        return _spooled_at(self.name)


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


def _spooled_at(name: str) -> dt.datetime:
    nanoseconds = int(name.split("-", 1)[0])
    return dt.datetime.fromtimestamp(nanoseconds / 1e9, dt.timezone.utc)


def encode_delivery(delivery: Delivery) -> bytes:
    document = {
        "version": FORMAT_VERSION,
        "token": delivery.token,
        "body_base64": base64.b64encode(delivery.body).decode("ascii"),
        "size_bytes": delivery.size_bytes,
        "too_large": delivery.too_large,
        "content_type": delivery.content_type,
        "source_ip": delivery.source_ip,
        "received_at": delivery.received_at.isoformat(),
    }
    return json.dumps(document, separators=(",", ":")).encode()


def decode_delivery(data: bytes) -> Delivery:
    """Rebuild a Delivery from a spool file; raise ValueError when the file is not one this version wrote."""
    document = json.loads(data)
    version = document.get("version") if isinstance(document, dict) else None
    if version != FORMAT_VERSION:
        raise ValueError(f"spool file format version {version!r} is not {FORMAT_VERSION}")

    received_at = dt.datetime.fromisoformat(document["received_at"])
    if received_at.tzinfo is None:
        raise ValueError("spool file has a received_at without a time zone")
    return Delivery(
        token=str(document["token"]),
        body=base64.b64decode(document["body_base64"], validate=True),
        size_bytes=int(document["size_bytes"]),
        too_large=bool(document["too_large"]),
        content_type=document.get("content_type"),
        source_ip=document.get("source_ip"),
        received_at=received_at,
        # Latency of a replayed delivery is measured from the start of its replay.
        started=time.monotonic(),
    )


class WebhookSpool:
    """The spool directory and its in-memory index; every method is thread-safe."""

    def __init__(self, settings: SpoolSettings):
        self.settings = settings
        self._lock = threading.Lock()
        self._arrived = threading.Event()
        self._heap: list[str] = []  # names in pending/, smallest first
        self._sizes: dict[str, int] = {}
        self._pending_by_key: collections.Counter[str] = collections.Counter()
        self._writing: set[str] = set()  # names reserved by appends still writing their file
        self._bytes = 0
        self._lock_file = None
        self._opened = False
        self.disabled_reason: str | None = None if settings.enabled else "JT_WEBHOOK_SPOOL_MAX_BYTES is 0"

        self.spooled_total = 0
        self.replayed_total = 0
        self.rejected_total = 0
        self.quarantined_total = 0

        # An existing spool is opened at once, so deliveries left by a crash are replayed; an empty one on first use.
        if settings.enabled and self._pending_dir.exists():
            try:
                self._open()
            except SpoolUnavailable:
                pass  # logged by _open; the platform serves on, and appends try to open the spool again

    # Paths

    @property
    def _pending_dir(self) -> Path:
        return self.settings.directory / "pending"

    @property
    def _tmp_dir(self) -> Path:
        return self.settings.directory / "tmp"

    @property
    def _failed_dir(self) -> Path:
        return self.settings.directory / "failed"

    # Opening

    def _open(self) -> None:
        """Create the directories, take the lock and index the pending files (from __init__ or under _lock)."""
        if self._opened:
            return
        try:
            for directory in (self.settings.directory, self._pending_dir, self._tmp_dir, self._failed_dir):
                directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._take_lock()
            self._remove_partial_writes()
            self._index_pending()
        except (OSError, SpoolUnavailable) as error:
            self.disabled_reason = f"spool directory {self.settings.directory} is unusable: {error}"
            logger.error("webhook spool disabled: %s", self.disabled_reason)
            raise SpoolUnavailable(self.disabled_reason) from error
        self._opened = True
        self.disabled_reason = None
        if self._heap:
            logger.warning("webhook spool %s contains %d deliveries from an earlier run; replaying them",
                           self.settings.directory, len(self._heap))

    def _take_lock(self) -> None:
        handle = open(self.settings.directory / ".lock", "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise SpoolUnavailable("its lock is taken by another process; give each process its own JT_WEBHOOK_SPOOL_DIR") from None
        self._lock_file = handle

    def _remove_partial_writes(self) -> None:
        # A file still in tmp/ was never renamed, so its delivery was never acknowledged with 202.
        for leftover in self._tmp_dir.glob("*.tmp"):
            leftover.unlink(missing_ok=True)

    def _index_pending(self) -> None:
        for path in self._pending_dir.glob("*.json"):
            size = path.stat().st_size
            self._sizes[path.stem] = size
            self._bytes += size
            self._heap.append(path.stem)
            self._pending_by_key[_key_of(path.stem)] += 1
        heapq.heapify(self._heap)

    def close(self) -> None:
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    # Writing

    def has_backlog(self, token: str) -> bool:
        """True while deliveries for this webhook token wait in the spool or are being written to it.

        Order matters within one recorder (a close after its entry, cooldowns, duplicate detection), not across
        recorders, so a delivery for another token need not wait behind them.
        """
        key = token_key(token)
        with self._lock:
            return self._pending_by_key[key] > 0 or any(_key_of(name) == key for name in self._writing)

    def append(self, delivery: Delivery) -> str:
        """Write the delivery durably and return its spool id; raise SpoolFull or SpoolUnavailable."""
        data = encode_delivery(delivery)
        name = self._reserve(len(data), token_key(delivery.token), delivery.received_at)
        try:
            self._write_file(name, data)
        except OSError as error:
            with self._lock:
                self._writing.discard(name)
                self._bytes -= len(data)
                self.rejected_total += 1
            logger.error("webhook spool could not write delivery for token ...%s: %s", delivery.token[-4:], error)
            raise SpoolUnavailable(f"writing to the spool failed: {error.strerror or error}") from error

        with self._lock:
            self._writing.discard(name)
            self._sizes[name] = len(data)
            self._pending_by_key[_key_of(name)] += 1
            heapq.heappush(self._heap, name)
            self.spooled_total += 1
        self._arrived.set()
        return name

    def _reserve(self, size: int, key: str, received_at: dt.datetime) -> str:
        with self._lock:
            if not self.settings.enabled:
                self.rejected_total += 1
                raise SpoolUnavailable("the spool is switched off (JT_WEBHOOK_SPOOL_MAX_BYTES=0)")
            if not self._opened:
                try:
                    self._open()
                except SpoolUnavailable:
                    self.rejected_total += 1
                    raise
            if self._bytes + size > self.settings.max_bytes:
                self.rejected_total += 1
                raise SpoolFull(
                    f"the webhook spool is full ({self._bytes} of {self.settings.max_bytes} bytes in "
                    f"{len(self._heap)} deliveries); raise JT_WEBHOOK_SPOOL_MAX_BYTES or restore the database"
                )

            # Names start with the arrival time, not the time of spooling: a delivery that waited for a hung
            # database before it failed is spooled after later ones that failed at once, yet replays first.
            arrival_ns = (received_at - _EPOCH) // dt.timedelta(microseconds=1) * 1000
            name = f"{arrival_ns:020d}-{key}"
            for _ in range(len(self._sizes) + len(self._writing)):
                if name not in self._sizes and name not in self._writing:
                    break
                arrival_ns += 1  # two deliveries of one token in the same microsecond keep their spooling order
                name = f"{arrival_ns:020d}-{key}"
            self._writing.add(name)
            self._bytes += size
            return name

    def _write_file(self, name: str, data: bytes) -> None:
        temporary = self._tmp_dir / f"{name}.tmp"
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(descriptor, data)
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        os.rename(temporary, self._pending_dir / f"{name}.json")
        _fsync_directory(self._pending_dir)

    # Reading and removing (the replayer is the only caller)

    def oldest(self) -> SpoolEntry | None:
        """Return the oldest pending delivery, or None when there is none or an older one is still being written."""
        with self._lock:
            if not self._heap:
                return None
            name = self._heap[0]
            if self._writing and min(self._writing) < name:
                return None
            return SpoolEntry(name, self._pending_dir / f"{name}.json", self._sizes[name])

    def remove(self, entry: SpoolEntry, *, replayed: bool = False) -> None:
        """Delete a delivery whose outcome is committed."""
        entry.path.unlink(missing_ok=True)
        self._forget(entry)
        if replayed:
            with self._lock:
                self.replayed_total += 1

    def quarantine(self, entry: SpoolEntry, reason: str) -> None:
        """Move a delivery that cannot be replayed to failed/, with the reason beside it, for an operator."""
        target = self._failed_dir / entry.path.name
        try:
            # The reason is written first, so an operator who finds the file in failed/ can also read why it is there.
            (self._failed_dir / f"{entry.name}.error").write_text(reason + "\n", encoding="utf-8")
            with self._lock:
                # Rename and forget under one lock, so no snapshot counts the delivery both pending and failed.
                os.rename(entry.path, target)
                self._forget_locked(entry)
                self.quarantined_total += 1
        except OSError as error:
            logger.error("webhook spool entry %s could not be moved to %s: %s", entry.name, self._failed_dir, error)
            return
        logger.error("webhook spool entry %s moved to %s: %s", entry.name, target, reason)

    def _forget(self, entry: SpoolEntry) -> None:
        with self._lock:
            self._forget_locked(entry)

    def _forget_locked(self, entry: SpoolEntry) -> None:
        if self._heap and self._heap[0] == entry.name:
            heapq.heappop(self._heap)
        elif entry.name in self._sizes:
            self._heap.remove(entry.name)
            heapq.heapify(self._heap)
        if entry.name in self._sizes:
            self._bytes -= self._sizes.pop(entry.name)
            key = _key_of(entry.name)
            self._pending_by_key[key] -= 1
            if self._pending_by_key[key] <= 0:
                del self._pending_by_key[key]

    def wait_for_arrival(self, timeout: float) -> None:
        self._arrived.wait(timeout)
        self._arrived.clear()

    # Snapshot

    def snapshot(self) -> dict:
        """Return the spool state as GET /api/webhook-spool serialises it and the metrics read it."""
        now = dt.datetime.now(dt.timezone.utc)
        with self._lock:
            oldest = self._heap[0] if self._heap else None
            document = {
                "enabled": self.disabled_reason is None,
                "disabled_reason": self.disabled_reason,
                "depth": len(self._heap),
                "bytes": self._bytes,
                "max_bytes": self.settings.max_bytes,
                "spooled_total": self.spooled_total,
                "replayed_total": self.replayed_total,
                "rejected_total": self.rejected_total,
                "quarantined_total": self.quarantined_total,
                "failed_files": self._count_failed(),
            }
        oldest_at = _spooled_at(oldest) if oldest else None
        document["oldest_spooled_at"] = oldest_at.isoformat().replace("+00:00", "Z") if oldest_at else None
        document["oldest_age_seconds"] = round((now - oldest_at).total_seconds(), 3) if oldest_at else 0.0
        return document

    def _count_failed(self) -> int:
        if not self._opened:
            return 0
        try:
            return sum(1 for _ in self._failed_dir.glob("*.json"))
        except OSError:
            return 0


def _fsync_directory(directory: Path) -> None:
    # The rename is durable only once the directory entry is on disk too.
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


class SpoolReplayer:
    """Ingests spooled deliveries in arrival order once the database is reachable; runs in a registered thread."""

    def __init__(self, spool: WebhookSpool, ingest: Callable[[Delivery], object], on_result: Callable[[object], None]):
        self._spool = spool
        self._ingest = ingest
        self._on_result = on_result
        self._attempts: dict[str, int] = {}

    def run(self, context) -> None:
        settings = self._spool.settings
        delay = settings.retry_seconds

        while not context.stopping():
            context.beat()
            entry = self._spool.oldest()
            if entry is None:
                self._spool.wait_for_arrival(0.5)
                continue

            if self.replay_one(entry):
                delay = settings.retry_seconds
                continue
            if context.wait(delay):
                return
            delay = min(delay * 2, settings.retry_max_seconds)

    def replay_one(self, entry: SpoolEntry) -> bool:
        """Replay one delivery; return False when it must wait (database down, or a retry of an error)."""
        try:
            delivery = decode_delivery(entry.path.read_bytes())
        except (OSError, ValueError, KeyError, TypeError) as error:
            self._spool.quarantine(entry, f"unreadable spool file: {type(error).__name__}: {error}")
            return True

        try:
            result = self._ingest(delivery)
        except Exception as error:
            return self._handle_failure(entry, error)

        self._attempts.pop(entry.name, None)
        try:
            self._on_result(result)
        except Exception:
            # The jobs are committed; the worker pool's table poll runs them even if handing them over failed.
            logger.exception("webhook spool entry %s: handing its jobs to the workers failed", entry.name)
        self._spool.remove(entry, replayed=True)
        logger.info("webhook spool entry %s replayed (received %s): %s",
                    entry.name, delivery.received_at.isoformat(), getattr(result, "outcome", result))
        return True

    def _handle_failure(self, entry: SpoolEntry, error: Exception) -> bool:
        if is_database_unavailable(error):
            logger.info("webhook spool replay waits: the database is still unreachable (%s)", type(error).__name__)
            return False

        attempts = self._attempts.get(entry.name, 0) + 1
        self._attempts[entry.name] = attempts
        logger.exception("webhook spool entry %s failed to replay (attempt %d of %d)",
                         entry.name, attempts, MAX_REPLAY_ATTEMPTS)
        if attempts >= MAX_REPLAY_ATTEMPTS:
            self._attempts.pop(entry.name, None)
            self._spool.quarantine(entry, f"replay raised {type(error).__name__} {attempts} times: {error}")
            return True
        return False


def collect_spool_metrics(spool: WebhookSpool):
    """Yield the spool gauges and counters from one snapshot; names and meanings are in docs/metrics.md."""
    snapshot = spool.snapshot()

    def gauge(name, documentation, value):
        family = GaugeMetricFamily(name, documentation)
        family.add_metric([], float(value))
        return family

    def counter(name, documentation, value):
        family = CounterMetricFamily(name, documentation)
        family.add_metric([], float(value))
        return family

    yield gauge("justtrades_webhook_spool_depth", "Webhook deliveries waiting in the local spool for the database.",
                snapshot["depth"])
    yield gauge("justtrades_webhook_spool_bytes", "Bytes of webhook deliveries waiting in the local spool.",
                snapshot["bytes"])
    yield gauge("justtrades_webhook_spool_oldest_age_seconds",
                "Age of the oldest delivery waiting in the spool; 0 when it is empty.", snapshot["oldest_age_seconds"])
    yield gauge("justtrades_webhook_spool_failed_files",
                "Spooled deliveries moved to failed/ because they could not be replayed.", snapshot["failed_files"])
    yield counter("justtrades_webhook_spooled", "Webhook deliveries this process wrote to the spool.",
                  snapshot["spooled_total"])
    yield counter("justtrades_webhook_spool_replayed", "Spooled deliveries this process replayed into the database.",
                  snapshot["replayed_total"])
    yield counter("justtrades_webhook_spool_rejected",
                  "Deliveries the spool could not take (full or unwritable), answered with 503.",
                  snapshot["rejected_total"])

"""Fast bulk rows for the large-table benchmarks: sqlite3 executemany, or COPY on PostgreSQL.

The rows bypass the platform, so the running totals in `counters` are raised by the same amounts in the same
transaction, the way the platform keeps them (webhooks.ingest), and the per-trader PnL rows are rebuilt from
the fills the way the platform rebuilds them (db.pnl_totals).
"""

from __future__ import annotations

import datetime as dt
import itertools
import sqlite3
from decimal import Decimal
from typing import Iterable, Iterator

from sqlalchemy.engine import make_url

from justtrades.webhooks.redaction import token_digest, token_tail

BATCH_ROWS = 50_000
ACTIVITY_STATUSES = ("success", "success", "success", "blocked", "failed", "duplicate")  # a plausible mix
RAW_ACTIONS = ("buy", "sell", "close", "closelong", "closeshort")


class BulkWriter:
    """Inserts rows with the driver directly; one instance is one transaction, committed by close()."""

    def __init__(self, database_url: str):
        url = make_url(database_url)
        self.backend = url.get_backend_name()
        if self.backend == "sqlite":
            self._connection = sqlite3.connect(url.database, isolation_level=None, timeout=60)
            self._connection.execute("BEGIN IMMEDIATE")
        else:
            import psycopg

            self._connection = psycopg.connect(url.set(drivername="postgresql").render_as_string(False))

    def timestamp(self, moment: dt.datetime):
        # SQLAlchemy's SQLite DateTime keeps naive UTC text; PostgreSQL takes aware datetimes.
        if self.backend == "sqlite":
            return moment.astimezone(dt.timezone.utc).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")
        return moment

    def decimal(self, value: Decimal):
        return str(value) if self.backend == "sqlite" else value

    def boolean(self, value: bool):
        return int(value) if self.backend == "sqlite" else value

    def insert(self, table: str, columns: tuple[str, ...], rows: Iterable[tuple]) -> int:
        """Insert every row; return how many there were."""
        column_list = ", ".join(columns)
        count = 0
        if self.backend == "sqlite":
            statement = f"INSERT INTO {table} ({column_list}) VALUES ({', '.join('?' * len(columns))})"
            iterator = iter(rows)
            while batch := list(itertools.islice(iterator, BATCH_ROWS)):
                self._connection.executemany(statement, batch)
                count += len(batch)
            return count

        with self._connection.cursor() as cursor:
            with cursor.copy(f"COPY {table} ({column_list}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
                    count += 1
        return count

    def add_to_counters(self, amounts: dict[str, int]) -> None:
        # Stripe 0 of each counter: the platform reads a counter as the sum of its stripes (db/counters.py).
        statement = ("INSERT INTO counters (name, stripe, value) VALUES ({0}, 0, {0}) "
                     "ON CONFLICT (name, stripe) DO UPDATE SET value = counters.value + excluded.value")
        placeholder = "?" if self.backend == "sqlite" else "%s"
        rows = [(name, value) for name, value in amounts.items() if value]
        if self.backend == "sqlite":
            self._connection.executemany(statement.format(placeholder), rows)
        else:
            with self._connection.cursor() as cursor:
                cursor.executemany(statement.format(placeholder), rows)

    def traders(self) -> list[tuple[int, int]]:
        """Return (trader id, account id) of every trader, by trader id."""
        query = "SELECT id, account_id FROM traders ORDER BY id"
        if self.backend == "sqlite":
            return [tuple(row) for row in self._connection.execute(query)]
        with self._connection.cursor() as cursor:
            return [tuple(row) for row in cursor.execute(query)]

    def rows(self, query: str, parameters: tuple = ()) -> Iterator[tuple]:
        """Yield the rows of a query in batches, so a million fills need not sit in memory twice."""
        if self.backend == "sqlite":
            cursor = self._connection.execute(query, parameters)
        else:
            # A named cursor stays on the server, which sends the rows a batch at a time.
            cursor = self._connection.cursor(name="bulk_rows")
            cursor.execute(query.replace("?", "%s"), parameters)
        while batch := cursor.fetchmany(BATCH_ROWS):
            yield from batch
        cursor.close()

    def execute(self, query: str, parameters: tuple = ()) -> None:
        if self.backend == "sqlite":
            self._connection.execute(query, parameters)
            return
        with self._connection.cursor() as cursor:
            cursor.execute(query.replace("?", "%s"), parameters)

    def date(self, day: dt.date):
        return day.isoformat() if self.backend == "sqlite" else day

    def scalar(self, query: str):
        if self.backend == "sqlite":
            return self._connection.execute(query).fetchone()[0]
        with self._connection.cursor() as cursor:
            return cursor.execute(query).fetchone()[0]

    def close(self) -> None:
        """Commit, and refresh the planner statistics the way a running database's autovacuum would."""
        if self.backend == "sqlite":
            self._connection.execute("COMMIT")
            self._connection.execute("ANALYZE")
            self._connection.close()
            return
        self._connection.commit()
        self._connection.autocommit = True
        self._connection.execute("ANALYZE")
        self._connection.close()


def add_webhook_history(writer: BulkWriter, rows: int, recorder_id: int, recorder_name: str, token: str,
                        end: dt.datetime) -> None:
    """Insert `rows` raw webhooks and as many activity rows, one a second up to `end`, and raise the counters."""
    start = end - dt.timedelta(seconds=rows)
    raw_id_base = int(writer.scalar("SELECT COALESCE(MAX(id), 0) FROM raw_webhooks"))
    digest, tail = token_digest(token), token_tail(token)
    action_counts = dict.fromkeys(RAW_ACTIONS, 0)
    status_counts = dict.fromkeys(set(ACTIVITY_STATUSES), 0)

    def _raw_rows() -> Iterator[tuple]:
        for index in range(rows):
            action = RAW_ACTIONS[index % len(RAW_ACTIONS)]
            action_counts[action] += 1
            body = f'{{"action":"{action}","ticker":"NQ1!","price":{20000 + index % 4000}.25}}'
            yield (raw_id_base + index + 1, writer.timestamp(start + dt.timedelta(seconds=index)), digest, tail,
                   "127.0.0.1", "application/json", len(body), body, writer.boolean(False), action, "accepted", 200)

    def _activity_rows() -> Iterator[tuple]:
        for index in range(rows):
            status = ACTIVITY_STATUSES[index % len(ACTIVITY_STATUSES)]
            status_counts[status] += 1
            reason = None if status == "success" else f"benchmark {status} row"
            yield (writer.timestamp(start + dt.timedelta(seconds=index)), raw_id_base + index + 1, recorder_id,
                   recorder_name, RAW_ACTIONS[index % 2], "NQZ6", status, reason, 3, 1 if status == "success" else 0)

    writer.insert("raw_webhooks", ("id", "received_at", "token_sha256", "token_tail", "source_ip", "content_type",
                                   "size_bytes", "body", "truncated", "action", "outcome", "http_status"), _raw_rows())
    writer.insert("webhook_activity", ("created_at", "raw_webhook_id", "recorder_id", "recorder_name", "action",
                                       "ticker", "status", "reason", "latency_ms", "traders_notified"),
                  _activity_rows())
    if writer.backend == "postgresql":
        # Explicit ids bypass the sequence; move it past them so the platform's next insert gets a free id.
        writer.scalar("SELECT setval(pg_get_serial_sequence('raw_webhooks', 'id'), "
                      "(SELECT MAX(id) FROM raw_webhooks))")

    counters = {"raw_total": rows}
    counters.update({f"raw_action_{action}": count for action, count in action_counts.items()})
    counters.update({f"activity_{status}": count for status, count in status_counts.items()})
    writer.add_to_counters(counters)


def add_fills(writer: BulkWriter, rows: int, traders: list[tuple[int, int]], symbols: list[str],
              end: dt.datetime) -> None:
    """Insert `rows` fills, one a second up to `end`, over the (trader id, account id) pairs and the symbols.

    Each trader buys and then sells one contract of a symbol, so positions stay between 0 and 1.
    """
    start = end - dt.timedelta(seconds=rows)

    def _rows() -> Iterator[tuple]:
        for index in range(rows):
            trader_id, account_id = traders[(index // 2) % len(traders)]
            yield (trader_id, account_id, symbols[(index // 2) % len(symbols)], "Buy" if index % 2 == 0 else "Sell",
                   1, writer.decimal(Decimal("20000.25") + index % 2), writer.timestamp(start + dt.timedelta(seconds=index)))

    writer.insert("fills", ("trader_id", "account_id", "symbol", "side", "quantity", "price", "filled_at"), _rows())
    # The platform keeps the number of fills in counters (db/counters.py); COUNT(*) is not read any more.
    writer.add_to_counters({"fills_total": rows, "fill_changes": rows})
    rebuild_pnl_totals(writer, {trader_id for trader_id, _ in traders})


def rebuild_pnl_totals(writer: BulkWriter, trader_ids: set[int]) -> None:
    """Replace the traders' rows in trader_positions and trader_session_pnl with a replay of all their fills.

    It is the replay that db.pnl_totals.rebuild_traders runs when a fill arrives out of order. Here it runs on
    the writer's own connection, so the rows commit with the fills.
    """
    from justtrades.db.pnl_totals import Replay

    ids = sorted(trader_ids)
    if not ids:
        return
    in_list = ", ".join(str(int(trader_id)) for trader_id in ids)
    writer.execute(f"DELETE FROM trader_positions WHERE trader_id IN ({in_list})")
    writer.execute(f"DELETE FROM trader_session_pnl WHERE trader_id IN ({in_list})")

    replay = Replay()
    query = (f"SELECT trader_id, symbol, side, quantity, price, filled_at, id FROM fills "
             f"WHERE trader_id IN ({in_list}) ORDER BY trader_id, filled_at, id")
    for trader_id, symbol, side, quantity, price, filled_at, fill_id in writer.rows(query):
        replay.apply(trader_id, symbol, side, quantity, Decimal(price), _aware(filled_at), fill_id)

    writer.insert("trader_positions", ("trader_id", "symbol", "net", "avg_price", "last_filled_at", "last_fill_id"),
                  ((row["trader_id"], row["symbol"], row["net"], _text(row["avg_price"]),
                    writer.timestamp(row["last_filled_at"]), row["last_fill_id"]) for row in replay.position_rows()))
    writer.insert("trader_session_pnl", ("session_date", "trader_id", "realized", "fills", "unpriced_symbols"),
                  ((writer.date(row["session_date"]), row["trader_id"], _text(row["realized"]), row["fills"],
                    row["unpriced_symbols"]) for row in replay.session_rows()))


def _aware(moment) -> dt.datetime:
    # SQLite returns the naive UTC text SQLAlchemy wrote; PostgreSQL an aware datetime.
    if isinstance(moment, str):
        moment = dt.datetime.fromisoformat(moment)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.timezone.utc)


def _text(value: Decimal | None) -> str | None:
    # trader_positions and trader_session_pnl keep decimals as text on both databases (db.types.DecimalText).
    return None if value is None else str(value)


def add_positions(writer: BulkWriter, account_ids: list[int], symbols: list[str], now: dt.datetime) -> int:
    """Insert one position per account and symbol, every third one flat; return how many."""
    def _rows() -> Iterator[tuple]:
        for index, (account_id, symbol) in enumerate(itertools.product(account_ids, symbols)):
            if index % 3 == 0:
                net = 0
            else:
                net = 1 if index % 2 else -1
            yield (account_id, symbol, net, None if net == 0 else writer.decimal(Decimal("20000.25")),
                   writer.decimal(Decimal(0)), writer.timestamp(now))

    return writer.insert("positions", ("account_id", "symbol", "net_pos", "avg_price", "realized_pnl", "updated_at"),
                         _rows())

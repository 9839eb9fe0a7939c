"""Outcomes of the single ingestion transaction: filters, duplicates, counters and a failure inside processing."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select, update

from justtrades.db import counters
from justtrades.db.engine import transaction
from justtrades.db.models import ExecutionJob, LossBreach, RawWebhook, Recorder, SignalBlock, Trader, WebhookActivity
from justtrades.markets import calendar
from justtrades.webhooks import filters

# Thursday 10:30 in New York: inside GOLDSWING's 08:20-13:30 window.
REFERENCE_TIME = dt.datetime(2026, 12, 3, 15, 30, tzinfo=dt.timezone.utc)
NQ_TOKEN = "demo-nq-7f3a9c2e41b8d605"
BUY_NQ = b'{"action":"buy","ticker":"NQZ6","price":21500.00}'
CLOSE_NQ = b'{"action":"close","ticker":"NQZ6"}'


@pytest.fixture
def frozen_app(app):
    app.extensions["justtrades"].clock = lambda: REFERENCE_TIME
    return app


def post(app, body: bytes, token: str = NQ_TOKEN):
    return app.test_client().post(f"/webhook/{token}", data=body, headers={"Content-Type": "application/json"})


def change(app, statement) -> None:
    with transaction(app.extensions["justtrades"].session_factory) as session:
        session.execute(statement)


def add(app, row) -> None:
    with transaction(app.extensions["justtrades"].session_factory) as session:
        session.add(row)


def rows(app, entity) -> list:
    with app.extensions["justtrades"].session_factory() as session:
        return session.scalars(select(entity).order_by(entity.id)).all()


def recorder_id(app, name: str = "JADNQ") -> int:
    with app.extensions["justtrades"].session_factory() as session:
        return session.scalar(select(Recorder.id).where(Recorder.name == name))


def read_counters(app, names: list[str]) -> dict[str, int]:
    with app.extensions["justtrades"].session_factory() as session:
        return counters.read(session, names)


def test_trailing_slash_reaches_recorder(frozen_app):
    response = frozen_app.test_client().post(f"/webhook/{NQ_TOKEN}/", data=BUY_NQ,
                                             headers={"Content-Type": "application/json"})

    assert response.status_code == 200
    assert response.get_json()["status"] == "accepted"
    assert [row.token_tail for row in rows(frozen_app, RawWebhook)] == [NQ_TOKEN[-4:]]


def test_disabled_recorder_blocks_and_keeps_raw(frozen_app):
    change(frozen_app, update(Recorder).where(Recorder.name == "JADNQ").values(enabled=False))

    response = post(frozen_app, BUY_NQ)

    assert response.status_code == 200
    assert response.get_json()["status"] == "blocked"
    assert response.get_json()["reason"] == "recorder_disabled"
    assert response.get_json()["message"] == "recorder JADNQ is disabled; enable it to take signals"
    assert rows(frozen_app, ExecutionJob) == []
    (raw,) = rows(frozen_app, RawWebhook)
    assert (raw.http_status, raw.outcome, raw.action) == (200, "blocked", "buy")
    (activity,) = rows(frozen_app, WebhookActivity)
    assert (activity.status, activity.reason, activity.raw_webhook_id) == ("blocked", "recorder_disabled", raw.id)


def test_cooldown_blocks_second_signal(frozen_app):
    change(frozen_app, update(Recorder).where(Recorder.name == "JADNQ").values(cooldown_seconds=60))
    runtime = frozen_app.extensions["justtrades"]

    first = post(frozen_app, BUY_NQ)
    runtime.clock = lambda: REFERENCE_TIME + dt.timedelta(seconds=30)
    second = post(frozen_app, b'{"action":"sell","ticker":"NQZ6","price":21501.00}')

    assert first.get_json()["status"] == "accepted"
    assert second.get_json()["reason"] == "cooldown"
    assert second.get_json()["message"] == (
        "recorder JADNQ waits 60 s after each signal and its last one came 30 s ago; send again in 30 s"
    )
    with runtime.session_factory() as session:
        assert session.scalar(select(Recorder.last_signal_at).where(Recorder.name == "JADNQ")) == REFERENCE_TIME


def test_signal_block_matches_symbol_root(frozen_app):
    add(frozen_app, SignalBlock(recorder_id=recorder_id(frozen_app), symbol_root="NQ", reason="news"))

    blocked = post(frozen_app, BUY_NQ)
    other_root = post(frozen_app, b'{"action":"buy","ticker":"MNQZ6","price":21500.00}')

    assert blocked.get_json()["reason"] == "signal_blocked"
    assert "covers recorder JADNQ and NQ" in blocked.get_json()["message"]
    assert other_root.get_json()["status"] == "accepted"


def test_expired_signal_block_lets_signal_through(frozen_app):
    add(frozen_app, SignalBlock(recorder_id=None, symbol_root=None, reason="maintenance",
                                until=REFERENCE_TIME - dt.timedelta(minutes=1)))

    response = post(frozen_app, BUY_NQ)

    assert response.get_json()["status"] == "accepted"


def test_loss_breach_blocks_entries_not_closes(frozen_app):
    with frozen_app.extensions["justtrades"].session_factory() as session:
        breached, other = session.scalars(
            select(Trader.id).where(Trader.recorder_id == recorder_id(frozen_app), Trader.enabled.is_(True)).order_by(Trader.id)
        ).all()
    add(frozen_app, LossBreach(trader_id=breached, session_date=calendar.session_date(REFERENCE_TIME),
                               daily_pnl=-1200, max_daily_loss=1000))

    entry = post(frozen_app, BUY_NQ)
    close = post(frozen_app, CLOSE_NQ)

    assert entry.get_json()["jobs"] == 1
    assert close.get_json()["jobs"] == 2
    assert [job.trader_id for job in rows(frozen_app, ExecutionJob)] == [other, breached, other]


def test_breach_of_every_trader_is_loss_limit(frozen_app):
    session_date = calendar.session_date(REFERENCE_TIME)
    with frozen_app.extensions["justtrades"].session_factory() as session:
        trader_ids = session.scalars(select(Trader.id).where(Trader.recorder_id == recorder_id(frozen_app))).all()
    for trader_id in trader_ids:
        add(frozen_app, LossBreach(trader_id=trader_id, session_date=session_date, daily_pnl=-1, max_daily_loss=1))

    response = post(frozen_app, BUY_NQ)

    assert response.get_json()["reason"] == "loss_limit"
    assert "every trader of recorder JADNQ reached its max daily loss" in response.get_json()["message"]
    assert rows(frozen_app, ExecutionJob) == []


def test_recorder_without_enabled_traders_is_blocked(frozen_app):
    change(frozen_app, update(Trader).where(Trader.recorder_id == recorder_id(frozen_app)).values(enabled=False))

    response = post(frozen_app, BUY_NQ)

    assert response.get_json()["reason"] == "no_enabled_traders"
    assert response.get_json()["message"] == "recorder JADNQ has no enabled trader to place orders for"


def test_close_passes_outside_trading_window(frozen_app):
    runtime = frozen_app.extensions["justtrades"]
    runtime.clock = lambda: REFERENCE_TIME + dt.timedelta(hours=5)  # 15:30 in New York, after 13:30

    entry = post(frozen_app, b'{"action":"buy","ticker":"GCG7","price":2950.0}', token="demo-gc-91e5c7a02d4b6f83")
    close = post(frozen_app, b'{"action":"close","ticker":"GCG7"}', token="demo-gc-91e5c7a02d4b6f83")

    assert entry.get_json()["reason"] == "outside_trading_window"
    assert entry.get_json()["message"] == (
        "recorder GOLDSWING takes entries 08:20-13:30 New York time and it is 15:30 there; closes pass at any time"
    )
    assert close.get_json()["status"] == "accepted"


def test_duplicate_keeps_raw_row_and_counts(frozen_app):
    first = post(frozen_app, BUY_NQ)
    second = post(frozen_app, BUY_NQ)

    assert first.get_json()["status"] == "accepted"
    assert second.get_json()["status"] == "duplicate"
    raws = rows(frozen_app, RawWebhook)
    assert [raw.outcome for raw in raws] == ["accepted", "duplicate"]
    assert [activity.raw_webhook_id for activity in rows(frozen_app, WebhookActivity)] == [raw.id for raw in raws]
    assert len(rows(frozen_app, ExecutionJob)) == first.get_json()["jobs"]
    assert read_counters(frozen_app, ["raw_total", "raw_action_buy", "activity_success", "activity_duplicate"]) == {
        "raw_total": 2, "raw_action_buy": 2, "activity_success": 1, "activity_duplicate": 1,
    }


def test_counters_of_rejected_and_unknown(frozen_app):
    post(frozen_app, b'{"action":"hold","ticker":"NQZ6"}')
    post(frozen_app, BUY_NQ, token="no-such-token-0000000000")

    assert read_counters(frozen_app, ["raw_total", "raw_action_unparsed", "activity_failed"]) == {
        "raw_total": 2, "raw_action_unparsed": 2, "activity_failed": 1,
    }
    assert [raw.outcome for raw in rows(frozen_app, RawWebhook)] == ["rejected", "unknown_token"]


def test_lone_surrogate_rejected_and_kept(frozen_app):
    response = post(frozen_app, b'{"action":"buy","ticker":"ES1!\\ud800"}')

    assert response.status_code == 400
    assert response.get_json()["field"] == "ticker"
    assert [raw.outcome for raw in rows(frozen_app, RawWebhook)] == ["rejected"]


def test_nul_in_alert_field_rejected_and_kept(frozen_app):
    response = post(frozen_app, b'{"action":"buy","ticker":"NQ1!\\u0000"}')

    assert response.status_code == 400
    assert response.get_json()["field"] == "ticker"
    assert "NUL character" in response.get_json()["error"]
    (raw,) = rows(frozen_app, RawWebhook)
    assert (raw.outcome, raw.body) == ("rejected", '{"action":"buy","ticker":"NQ1!\\u0000"}')
    (activity,) = rows(frozen_app, WebhookActivity)
    assert activity.status == "failed"


def test_nul_byte_in_body_rejected_and_kept(frozen_app):
    response = post(frozen_app, b'{"action":"b\x00uy","ticker":"NQ1!"}')

    assert response.status_code == 400
    assert response.get_json()["field"] == "body"
    (raw,) = rows(frozen_app, RawWebhook)
    # PostgreSQL text cannot contain a NUL, so the raw log shows the replacement character in its place.
    assert (raw.outcome, raw.body) == ("rejected", '{"action":"b\ufffduy","ticker":"NQ1!"}')


def test_nul_in_token_is_unknown_token(frozen_app):
    response = post(frozen_app, BUY_NQ, token="demo-nq-7f3a9c2e41b8%00d605")

    assert response.status_code == 404
    (raw,) = rows(frozen_app, RawWebhook)
    assert (raw.outcome, raw.token_tail) == ("unknown_token", "d605")
    assert rows(frozen_app, ExecutionJob) == []


def test_failure_inside_processing_keeps_raw_only(frozen_app, monkeypatch):
    def broken(*_args):
        raise RuntimeError("filter bug")

    monkeypatch.setattr(filters, "eligible_traders", broken)

    response = post(frozen_app, BUY_NQ)

    assert response.status_code == 503
    (raw,) = rows(frozen_app, RawWebhook)
    assert raw.http_status is None
    assert raw.outcome is None
    assert rows(frozen_app, WebhookActivity) == []
    assert rows(frozen_app, ExecutionJob) == []
    assert read_counters(frozen_app, ["raw_total", "activity_success"]) == {"raw_total": 1, "activity_success": 0}


def test_increment_many_sums_repeated_names(frozen_app):
    factory = frozen_app.extensions["justtrades"].session_factory
    with transaction(factory) as session:
        counters.increment_many(session, ["test_b", "test_a", "test_a"])
    with transaction(factory) as session:
        counters.increment_many(session, ["test_a"])

    assert read_counters(frozen_app, ["test_a", "test_b"]) == {"test_a": 3, "test_b": 1}

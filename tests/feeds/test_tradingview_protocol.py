"""TradingView wire format, JWT expiry, session files and feed settings, without a network."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import pytest

from justtrades.feeds import tradingview_protocol as protocol
from justtrades.feeds.settings import FeedConfigError, FeedSettings, TradingViewSettings, parse_symbol_map
from justtrades.feeds.tradingview import backoff_delay
from justtrades.feeds.tradingview_session import TradingViewSession, jwt_expiry
from tests.peers.tradingview_ws import make_jwt


def test_split_frames_reads_several_frames():
    message = protocol.encode_frame("~h~7") + protocol.encode_message("qsd", ["qs_1", {"n": "X", "v": {"lp": 1.5}}])

    payloads = protocol.split_frames(message)

    assert payloads[0] == "~h~7"
    assert json.loads(payloads[1]) == {"m": "qsd", "p": ["qs_1", {"n": "X", "v": {"lp": 1.5}}]}


def test_frame_length_counts_characters():
    payload = '{"m":"x","p":["é"]}'
    assert protocol.split_frames(protocol.encode_frame(payload)) == [payload]


@pytest.mark.parametrize(
    "message, error",
    [
        ("hello", "expected '~m~' at offset 0"),
        ("~m~abc~m~{}", "frame length 'abc'"),
        ("~m~50~m~{}", "announces 50 characters but only 2 follow"),
        ("~m~2~m~{}garbage", "expected '~m~' at offset 9"),
    ],
)
def test_split_frames_rejects_malformed(message, error):
    with pytest.raises(protocol.ProtocolError, match=error):
        protocol.split_frames(message)


def test_parse_payload_kinds():
    assert protocol.parse_payload("~h~12") == protocol.Heartbeat("~h~12")
    assert protocol.parse_payload('{"session_id":"abc"}') == protocol.Hello({"session_id": "abc"})
    assert protocol.parse_payload('{"m":"quote_completed","p":["qs","X"]}') == protocol.Message(
        "quote_completed", ["qs", "X"]
    )


def test_parse_payload_rejects_non_json():
    with pytest.raises(protocol.ProtocolError, match="neither a heartbeat nor JSON"):
        protocol.parse_payload("not json")


def test_quote_update_prices_are_exact():
    message = protocol.parse_payload('{"m":"qsd","p":["qs",{"n":"CME_MINI:NQ1!","s":"ok","v":{"lp":21534.75}}]}')

    (update,) = protocol.quote_updates(message)

    assert update.symbol == "CME_MINI:NQ1!"
    assert update.values["lp"] == Decimal("21534.75")
    assert isinstance(update.values["lp"], Decimal)


def test_subscription_messages_order():
    frames = protocol.subscription_messages("jwt-token", "qs_abc", ["CME_MINI:NQ1!", "COMEX:GC1!"])

    methods = [json.loads(protocol.split_frames(frame)[0])["m"] for frame in frames]
    assert methods == ["set_auth_token", "quote_create_session", "quote_set_fields", "quote_add_symbols", "quote_fast_symbols"]
    assert json.loads(protocol.split_frames(frames[0])[0])["p"] == ["jwt-token"]
    assert json.loads(protocol.split_frames(frames[3])[0])["p"] == ["qs_abc", "CME_MINI:NQ1!", "COMEX:GC1!"]


@pytest.mark.parametrize(
    "mode, delayed",
    [("streaming", False), ("delayed_streaming_600", True), ("delayed", True), ("endofday", False), (None, False)],
)
def test_is_delayed(mode, delayed):
    assert protocol.is_delayed(mode) is delayed


def test_backoff_delay_stays_within_bounds():
    for attempt in range(12):
        ceiling = min(8.0, 0.5 * 2**attempt)
        delays = [backoff_delay(attempt, 0.5, 8.0) for _ in range(50)]
        assert min(delays) >= ceiling / 2
        assert max(delays) <= ceiling


def test_jwt_expiry_reads_exp_claim():
    token = make_jwt(600)
    expiry = jwt_expiry(token)

    assert expiry is not None
    assert expiry.tzinfo is dt.timezone.utc
    assert 590 < (expiry - dt.datetime.now(dt.timezone.utc)).total_seconds() <= 600


@pytest.mark.parametrize("token", [None, "", "opaque-token", "a.b.c", "a.bm90LWpzb24.c"])
def test_jwt_expiry_none_for_non_jwt(token):
    assert jwt_expiry(token) is None


def test_session_jwt_validity():
    assert TradingViewSession(TradingViewSettings(jwt=make_jwt(600))).jwt_valid() is True
    assert TradingViewSession(TradingViewSettings(jwt=make_jwt(-10))).jwt_valid() is False
    assert TradingViewSession(TradingViewSettings()).jwt_valid() is False


def test_session_rejected_jwt_invalid():
    session = TradingViewSession(TradingViewSettings(jwt=make_jwt(600)))
    session.mark_jwt_rejected()
    assert session.jwt_valid() is False


def test_session_refresh_due_within_margin():
    expiring = TradingViewSession(TradingViewSettings(jwt=make_jwt(60), session_id="c", jwt_refresh_margin_seconds=300))
    expiring._cookies_valid = True
    fresh = TradingViewSession(TradingViewSettings(jwt=make_jwt(3600), session_id="c", jwt_refresh_margin_seconds=300))
    fresh._cookies_valid = True
    no_cookies = TradingViewSession(TradingViewSettings(jwt=make_jwt(60)))

    assert expiring.refresh_due() is True
    assert fresh.refresh_due() is False
    assert no_cookies.refresh_due() is False


def test_session_file_loaded(tmp_path):
    token = make_jwt(600)
    path = tmp_path / "tv-session.json"
    path.write_text(json.dumps({"sessionid": "abc", "sessionid_sign": "sig", "auth_token": token,
                                "updated_at": "2026-02-20T10:00:00Z"}))

    session = TradingViewSession(TradingViewSettings(session_file=path))

    assert session.auth_token() == token
    assert session.has_cookies() is True
    assert session.updated_at() == dt.datetime(2026, 2, 20, 10, tzinfo=dt.timezone.utc)
    assert session.auto_refresh_enabled is True


def test_session_file_unreadable_is_ignored(tmp_path, caplog):
    path = tmp_path / "tv-session.json"
    path.write_text("{not json")

    session = TradingViewSession(TradingViewSettings(session_file=path))

    assert session.has_credentials() is False
    assert "unreadable" in caplog.text


def test_settings_reject_unknown_root():
    with pytest.raises(FeedConfigError, match=r"no TradingView symbol known for root\(s\) \['XYZ'\]"):
        TradingViewSettings(roots=("NQ", "XYZ"))


def test_symbol_map_parsing():
    assert parse_symbol_map("NQ=CME_MINI:NQ1!, xyz=CBOT:XYZ1!") == {"NQ": "CME_MINI:NQ1!", "XYZ": "CBOT:XYZ1!"}
    with pytest.raises(FeedConfigError, match="entry 'NQ' is invalid"):
        parse_symbol_map("NQ")


def test_settings_from_environ():
    settings = FeedSettings.from_environ({
        "JT_TRADINGVIEW_WS_URL": "ws://127.0.0.1:1/ws",
        "JT_TRADINGVIEW_SYMBOLS": "nq,es",
        "JT_TRADINGVIEW_LIVENESS_SECONDS": "5",
        "JT_TRADOVATE_WS_URL": "ws://127.0.0.1:2/ws",
        "JT_TRADOVATE_WS_URL_LIVE": "ws://127.0.0.1:3/ws",
        "JT_POSITION_MONITOR_STATS_WINDOW_SECONDS": "10",
    })

    assert settings.tradingview.ws_url == "ws://127.0.0.1:1/ws"
    assert settings.tradingview.roots == ("NQ", "ES")
    assert settings.tradingview.liveness_deadline_seconds == 5.0
    assert settings.position_monitor.ws_url("demo") == "ws://127.0.0.1:2/ws"
    assert settings.position_monitor.ws_url("live") == "ws://127.0.0.1:3/ws"
    assert settings.position_monitor.stats_window_seconds == 10.0
    assert settings.tradingview.enabled is True


def test_settings_feeds_switch_off():
    settings = FeedSettings.from_environ({"JT_FEEDS_ENABLED": "false"})
    assert not settings.tradingview.enabled
    assert not settings.position_monitor.enabled
    assert not settings.token_refresh.enabled


@pytest.mark.parametrize(
    "name, value, error",
    [
        ("JT_TRADINGVIEW_LIVENESS_SECONDS", "soon", "JT_TRADINGVIEW_LIVENESS_SECONDS='soon' is not a number"),
        ("JT_TRADINGVIEW_LIVENESS_SECONDS", "0", "liveness_deadline_seconds=0.0 must be above 0"),
        ("JT_FEEDS_ENABLED", "maybe", "JT_FEEDS_ENABLED='maybe' is not a boolean"),
        ("JT_POSITION_MONITOR_STALE_WINDOWS", "three", "JT_POSITION_MONITOR_STALE_WINDOWS='three' is not a whole number"),
    ],
)
def test_settings_reject_bad_values(name, value, error):
    with pytest.raises(FeedConfigError, match=error):
        FeedSettings.from_environ({name: value})

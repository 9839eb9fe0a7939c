"""Tradovate credentials and the token manager: one request per group, renewal, penalties, no leaked secrets."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import threading
import time

import pytest

from justtrades.brokers.base import BrokerError, FailureReason, OrderRequest
from justtrades.brokers.tradovate_auth import (
    CredentialsError,
    TokenManager,
    TradovateCredentials,
    load_credentials,
    load_credentials_from_environ,
    parse_expiration_time,
    token_group_key,
)
from tests.peers.tradovate_rest import Fault, TradovatePeer

GROUP_YAML = """
main:
  name: jt-demo
  password: demo-password
  app_id: JustTrades
  app_version: "2.1"
  cid: 4242
  sec: api-secret-value
  device_id: 6f1c-device
"""


# -- credentials ----------------------------------------------------------------------------------------


def test_yaml_credentials_load_every_field(tmp_path):
    path = tmp_path / "tradovate.yaml"
    path.write_text(GROUP_YAML)

    [(group, credentials)] = load_credentials(path).items()

    assert group == "main"
    assert credentials.request_body() == {
        "name": "jt-demo",
        "password": "demo-password",
        "appId": "JustTrades",
        "appVersion": "2.1",
        "cid": 4242,
        "sec": "api-secret-value",
        "deviceId": "6f1c-device",
    }


def test_json_credentials_get_defaults(tmp_path):
    path = tmp_path / "tradovate.json"
    fields = {"name": "u", "password": "p", "app_id": "a", "cid": "17", "sec": "s"}
    path.write_text(json.dumps({"group-a": fields, "group-b": dict(fields, name="v")}))

    loaded = load_credentials(path)

    assert loaded["group-a"].cid == 17
    assert loaded["group-a"].app_version == "1.0"
    assert loaded["group-a"].device_id == load_credentials(path)["group-a"].device_id  # stable across loads
    assert loaded["group-a"].device_id != loaded["group-b"].device_id


@pytest.mark.parametrize(
    ("content", "message_part"),
    [
        ("main:\n  name: u\n  password: p\n  app_id: a\n  cid: 1\n", "missing sec"),
        ("main:\n  name: u\n  password: p\n  app_id: a\n  cid: 1\n  sec: s\n  secret: x\n", "unknown field(s) secret"),
        ("main:\n  name: u\n  password: p\n  app_id: a\n  cid: abc\n  sec: s\n", "cid must be the numeric"),
        ("- main\n", "must map token group names"),
        ("main: [unclosed\n", "not valid YAML or JSON"),
        ("main: just-a-string\n", "must be a mapping of fields"),
    ],
)
def test_bad_credentials_file_names_problem(tmp_path, content, message_part):
    path = tmp_path / "bad.yaml"
    path.write_text(content)

    with pytest.raises(CredentialsError) as caught:
        load_credentials(path)

    assert message_part in str(caught.value)
    assert str(path) in str(caught.value)


def test_missing_credentials_file_names_variable(tmp_path):
    missing = tmp_path / "absent.yaml"

    with pytest.raises(CredentialsError) as caught:
        load_credentials_from_environ({"JT_TRADOVATE_CREDENTIALS_FILE": str(missing)})

    assert str(missing) in str(caught.value)
    assert "JT_TRADOVATE_CREDENTIALS_FILE" in str(caught.value)


def test_unset_variable_means_no_credentials():
    assert load_credentials_from_environ({}) == {}


def test_credentials_error_never_shows_secret(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("main:\n  name: u\n  password: hunter2-secret\n  app_id: a\n  cid: hunter3-secret\n  sec: s\n")

    with pytest.raises(CredentialsError) as caught:
        load_credentials(path)

    assert "hunter2-secret" not in str(caught.value)
    assert "hunter3-secret" not in str(caught.value)


def test_repr_hides_password_and_secret(credentials):
    main = credentials["main"]
    text = f"{main!r} {main} {credentials!r}"

    assert main.password not in text
    assert main.sec not in text
    assert "jt-demo" in text


def test_readable_credentials_file_is_warned(tmp_path, caplog):
    path = tmp_path / "tradovate.yaml"
    path.write_text(GROUP_YAML)
    path.chmod(0o644)

    with caplog.at_level(logging.WARNING, logger="justtrades.brokers.tradovate_auth"):
        load_credentials(path)

    assert "chmod 600" in caplog.text


# -- expirationTime -------------------------------------------------------------------------------------


@pytest.mark.parametrize("zone", ["Asia/Tokyo", "America/New_York", "Pacific/Kiritimati", "UTC"])
def test_expiration_time_is_utc_in_any_zone(zone):
    previous = os.environ.get("TZ")
    os.environ["TZ"] = zone
    time.tzset()
    try:
        parsed = parse_expiration_time("2026-12-04T21:00:00.000Z")
        naive = parse_expiration_time("2026-12-04T21:00:00")
        offset = parse_expiration_time("2026-12-05T06:00:00+09:00")
    finally:
        if previous is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = previous
        time.tzset()

    expected = dt.datetime(2026, 12, 4, 21, 0, tzinfo=dt.timezone.utc)
    assert parsed == expected
    assert parsed.utcoffset() == dt.timedelta(0)
    assert naive == expected
    assert offset == expected


@pytest.mark.parametrize("value", [None, "", "tomorrow", 1764882000000])
def test_unreadable_expiration_time_is_none(value):
    assert parse_expiration_time(value) is None


def test_token_freshness_ignores_host_zone(peer, credentials, clock):
    previous = os.environ.get("TZ")
    os.environ["TZ"] = "Asia/Kolkata"
    time.tzset()
    try:
        manager = TokenManager(credentials, {"demo": peer.url}, clock=clock, renew_before_seconds=600)
        first = manager.access_token("main", "demo")
        clock.advance(minutes=60)  # 20 minutes before the peer's 80-minute expiry: still fresh
        second = manager.access_token("main", "demo")
        manager.close()
    finally:
        if previous is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = previous
        time.tzset()

    assert first == second
    assert peer.token_requests["jt-demo"] == 1
    assert peer.request_counts["/auth/renewaccesstoken"] == 0


# -- one request per group ------------------------------------------------------------------------------


def test_concurrent_callers_share_one_request(credentials, clock):
    with TradovatePeer(latency_ms=150) as slow_peer:
        manager = TokenManager(credentials, {"demo": slow_peer.url}, clock=clock)
        tokens, errors = [], []
        start = threading.Barrier(20)

        def fetch():
            start.wait(timeout=5)
            try:
                tokens.append(manager.access_token("main", "demo"))
            except Exception as error:  # collected so the main thread can report it
                errors.append(error)

        threads = [threading.Thread(target=fetch) for _ in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=10)
        manager.close()

        assert errors == []
        assert len(tokens) == 20
        assert len(set(tokens)) == 1
        assert slow_peer.token_requests["jt-demo"] == 1


def test_groups_get_separate_tokens(peer, credentials, clock):
    both = {"main": credentials["main"], "second": credentials["main"]}
    manager = TokenManager(both, {"demo": peer.url}, clock=clock)

    first = manager.access_token("main", "demo")
    second = manager.access_token("second", "demo")
    again = manager.access_token("main", "demo")

    assert first != second
    assert again == first
    assert peer.token_requests["jt-demo"] == 2


def test_token_renewed_ahead_of_expiry(token_manager, peer, clock):
    first = token_manager.access_token("main", "demo")

    clock.advance(minutes=71)  # 9 minutes before expiry, inside the 10-minute margin
    renewed = token_manager.access_token("main", "demo")

    assert renewed != first
    assert peer.request_counts["/auth/renewaccesstoken"] == 1
    assert peer.token_requests["jt-demo"] == 1
    [row] = token_manager.snapshot()
    assert row["valid"] is True
    assert parse_expiration_time(row["expires_at"]) > clock() + dt.timedelta(minutes=60)


def test_expired_token_requests_new_one(token_manager, peer, clock):
    token_manager.access_token("main", "demo")

    clock.advance(minutes=81)
    token_manager.access_token("main", "demo")

    assert peer.request_counts["/auth/renewaccesstoken"] == 0  # an expired token cannot be renewed
    assert peer.token_requests["jt-demo"] == 2


def test_renew_due_renews_expiring_tokens(token_manager, peer, clock):
    token_manager.access_token("main", "demo")

    assert token_manager.renew_due() == 0
    clock.advance(minutes=75)
    assert token_manager.renew_due() == 1

    assert peer.request_counts["/auth/renewaccesstoken"] == 1


def test_renewal_network_failure_keeps_current_token(token_manager, peer, clock):
    first = token_manager.access_token("main", "demo")
    peer.inject("/auth/renewaccesstoken", Fault.server_error(503))

    clock.advance(minutes=75)
    still = token_manager.access_token("main", "demo")

    assert still == first
    [row] = token_manager.snapshot()
    assert row["valid"] is True
    assert "503" in row["last_error"]


def test_rejected_token_renewed_only_once(token_manager, peer):
    rejected = token_manager.access_token("main", "demo")

    replacement = token_manager.renew_rejected("main", "demo", rejected)
    again = token_manager.renew_rejected("main", "demo", rejected)

    assert replacement != rejected
    assert again == replacement
    assert peer.request_counts["/auth/renewaccesstoken"] == 1


# -- penalties and refusals -----------------------------------------------------------------------------


def test_penalty_ticket_honours_p_time(token_manager, peer, clock):
    peer.inject("/auth/accesstokenrequest", Fault.penalty(p_time=0.2))

    with pytest.raises(BrokerError) as caught:
        token_manager.access_token("main", "demo")
    assert caught.value.reason is FailureReason.RATE_LIMIT_EXCEEDED
    assert caught.value.permanent is False
    assert caught.value.retry_after >= 0.2

    with pytest.raises(BrokerError) as early:
        token_manager.access_token("main", "demo")
    assert early.value.reason is FailureReason.RATE_LIMIT_EXCEEDED
    assert peer.request_counts["/auth/accesstokenrequest"] == 1  # nothing sent during the wait

    clock.advance(seconds=2)
    token = token_manager.access_token("main", "demo")

    assert token
    assert peer.request_counts["/auth/accesstokenrequest"] == 2
    assert peer.token_requests["jt-demo"] == 1  # the penalised request never reached the login check


def test_captcha_penalty_needs_a_human(token_manager, peer, clock):
    peer.inject("/auth/accesstokenrequest", Fault.penalty(p_time=3, captcha=True))

    with pytest.raises(BrokerError) as caught:
        token_manager.access_token("main", "demo")

    assert caught.value.reason is FailureReason.TOKEN_EXPIRED
    assert caught.value.permanent is True
    assert "log in once by hand" in caught.value.detail

    clock.advance(minutes=30)
    with pytest.raises(BrokerError):
        token_manager.access_token("main", "demo")
    assert peer.request_counts["/auth/accesstokenrequest"] == 1
    [row] = token_manager.snapshot()
    assert row["valid"] is False
    assert "CAPTCHA" in row["last_error"]
    assert row["blocked_until"] is not None


def test_wrong_password_is_permanent_and_backs_off(peer, credentials, clock):
    wrong = {"main": TradovateCredentials("jt-demo", "wrong", "a", "1.0", 1, "s", "d")}
    manager = TokenManager(wrong, {"demo": peer.url}, clock=clock)

    with pytest.raises(BrokerError) as caught:
        manager.access_token("main", "demo")
    assert caught.value.reason is FailureReason.TOKEN_EXPIRED
    assert caught.value.permanent is True
    assert "Incorrect username or password" in caught.value.detail

    with pytest.raises(BrokerError):
        manager.access_token("main", "demo")
    assert peer.token_requests["jt-demo"] == 1

    clock.advance(seconds=61)
    with pytest.raises(BrokerError):
        manager.access_token("main", "demo")
    assert peer.token_requests["jt-demo"] == 2


def test_429_on_token_request_is_rate_limit(token_manager, peer):
    peer.inject("/auth/accesstokenrequest", Fault.rate_limit(retry_after=12))

    with pytest.raises(BrokerError) as caught:
        token_manager.access_token("main", "demo")

    assert caught.value.reason is FailureReason.RATE_LIMIT_EXCEEDED
    assert caught.value.retry_after == 12
    assert caught.value.permanent is False


# -- stored tokens (OAuth) ------------------------------------------------------------------------------


def test_stored_token_used_without_credentials(peer, clock):
    seeding = TokenManager({}, {"demo": peer.url}, clock=clock)
    with pytest.raises(BrokerError) as caught:
        seeding.access_token("oauth-user", "demo")
    assert caught.value.reason is FailureReason.TOKEN_EXPIRED
    assert "is missing" in caught.value.detail
    assert "OAuth" in caught.value.detail

    stored = peer.issue_token("jt-demo")
    assert seeding.access_token("oauth-user", "demo", stored) == stored
    assert peer.request_counts["/auth/accesstokenrequest"] == 0


def test_stored_token_renewed_after_401(peer, clock):
    manager = TokenManager({}, {"demo": peer.url}, clock=clock)
    stored = peer.issue_token("jt-demo")

    manager.access_token("oauth-user", "demo", stored)

    renewed = manager.renew_rejected("oauth-user", "demo", stored)

    assert renewed != stored
    assert peer.request_counts["/auth/renewaccesstoken"] == 1


def test_expired_stored_token_needs_oauth(peer, clock):
    manager = TokenManager({}, {"demo": peer.url}, clock=clock)
    stored = peer.issue_token("jt-demo")
    manager.access_token("oauth-user", "demo", stored)
    peer.expire_tokens()

    with pytest.raises(BrokerError) as caught:
        manager.renew_rejected("oauth-user", "demo", stored)

    assert caught.value.reason is FailureReason.TOKEN_EXPIRED
    assert caught.value.permanent is True
    assert "re-authenticate the account via OAuth" in caught.value.detail


def test_new_stored_token_replaces_old(peer, clock):
    manager = TokenManager({}, {"demo": peer.url}, clock=clock)
    old = peer.issue_token("jt-demo")
    manager.access_token("oauth-user", "demo", old)
    peer.expire_tokens()
    with pytest.raises(BrokerError):
        manager.renew_rejected("oauth-user", "demo", old)

    fresh = peer.issue_token("jt-demo")

    assert manager.access_token("oauth-user", "demo", fresh) == fresh
    [row] = manager.snapshot()
    assert row["valid"] is True
    assert row["source"] == "stored_token"


# -- snapshot and logs ----------------------------------------------------------------------------------


def test_snapshot_never_contains_token(token_manager, clock):
    token = token_manager.access_token("main", "demo")

    rows = token_manager.snapshot()

    assert token not in json.dumps(rows)
    [row] = rows
    assert set(row) == {
        "token_group",
        "environment",
        "source",
        "valid",
        "expires_at",
        "last_refreshed_at",
        "last_error",
        "blocked_until",
    }
    assert row["token_group"] == "main"
    assert row["source"] == "credentials"
    assert row["last_error"] is None
    assert row["expires_at"].endswith("Z")


def test_snapshot_marks_expired_token_invalid(token_manager, clock):
    token_manager.access_token("main", "demo")

    clock.advance(minutes=81)

    [row] = token_manager.snapshot()
    assert row["valid"] is False


def test_logs_never_contain_secrets(broker, peer, account, token_manager, credentials, caplog):
    with caplog.at_level(logging.DEBUG):
        broker.place_order(OrderRequest(account, "NQZ6", "Buy", 1, "secret-check"))
        peer.inject("/order/placeorder", Fault.unauthorized())
        broker.place_order(OrderRequest(account, "NQZ6", "Buy", 1, "secret-check-2"))
        token = token_manager.access_token("main", "demo")

    logged = caplog.text + " ".join(str(record.args) for record in caplog.records)
    assert "requesting a Tradovate token" in logged
    assert credentials["main"].password not in logged
    assert credentials["main"].sec not in logged
    assert token not in logged


def test_unknown_environment_is_rejected(token_manager):
    with pytest.raises(BrokerError) as caught:
        token_manager.access_token("main", "staging")

    assert caught.value.reason is FailureReason.ACCOUNT_NOT_FOUND
    assert "'staging'" in caught.value.detail


# -- refresh daemon interface ---------------------------------------------------------------------------


def test_renew_replaces_token_ahead_of_expiry(token_manager, peer, clock):
    first = token_manager.access_token("main", "demo")
    first_expiry = token_manager.token_expiry("main", "demo")

    clock.advance(minutes=30)
    renewed = token_manager.renew("main", "demo")

    assert renewed != first
    assert token_manager.token_expiry("main", "demo") == first_expiry + dt.timedelta(minutes=30)
    assert peer.request_counts["/auth/renewaccesstoken"] == 1
    assert peer.token_requests["jt-demo"] == 1
    assert token_manager.access_token("main", "demo") == renewed


def test_renew_of_stored_token_keeps_session(peer, clock):
    manager = TokenManager({}, {"demo": peer.url}, clock=clock)
    stored = peer.issue_token("jt-demo")

    renewed = manager.renew("oauth-user", "demo", stored)

    assert renewed != stored
    assert manager.token_expiry("oauth-user", "demo") is not None
    assert peer.request_counts["/auth/accesstokenrequest"] == 0


def test_token_expiry_unknown_group_is_none(token_manager):
    assert token_manager.token_expiry("never-used", "demo") is None


def test_group_key_prefers_group_then_token():
    assert token_group_key("main", "tok", 3) == "main"
    assert token_group_key(None, "tok", 3) == token_group_key(None, "tok", 4)
    assert token_group_key(None, "tok", 3).startswith("token-")
    assert "tok" not in token_group_key(None, "tok", 3)[len("token-"):]
    assert token_group_key(None, None, 3) == "account-3"

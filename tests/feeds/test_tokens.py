"""Token refresh against a local Tradovate REST server, and /api/accounts/auth-status with its metrics."""

from __future__ import annotations

import datetime as dt
import json

import pytest
import requests

from justtrades.brokers.tradovate_auth import TokenManager, TradovateCredentials
from justtrades.db.engine import transaction
from justtrades.db.models import Account
from justtrades.feeds.settings import TokenRefreshSettings
from tests.feeds.conftest import feed_settings, metric, wait_until
from tests.peers.tradovate_rest import DEFAULT_USERS, TradovatePeer

USER = "jt-demo"
CREDENTIALS = TradovateCredentials(name=USER, password=DEFAULT_USERS[USER], app_id="JustTrades", app_version="1.0",
                                   cid=8, sec="test-secret-key", device_id="test-device")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


@pytest.fixture
def peer():
    with TradovatePeer() as peer:
        yield peer


def build(make_app, peer, *, credentials=None, renew_before_seconds=900.0):
    """Build an app whose token refresh uses a TokenManager pointed at the local peer; not started yet."""
    refresh = TokenRefreshSettings(interval_seconds=0.2, renew_before_seconds=renew_before_seconds)
    app = make_app(feed_settings(token_refresh=refresh), start_background=False)
    runtime = app.extensions["justtrades"]
    runtime.token_manager = TokenManager(credentials or {}, {"demo": peer.url, "live": peer.url})
    return app, runtime


def add_accounts(runtime, *accounts: Account) -> None:
    with transaction(runtime.session_factory) as session:
        session.add_all(accounts)


def account(account_id: int, group: str | None, token: str | None, expires_at: dt.datetime | None) -> Account:
    return Account(id=account_id, name=f"Demo {account_id}", broker="tradovate", environment="demo",
                   broker_account_id=26029294 + account_id, token_group=group, access_token=token,
                   token_expires_at=expires_at, auth_status="valid", enabled=True)


def auth_status(app) -> dict:
    return app.test_client().get("/api/accounts/auth-status").get_json()


def stored_tokens(runtime) -> dict[int, tuple[str | None, dt.datetime | None, str]]:
    with runtime.session_factory() as session:
        return {a.id: (a.access_token, a.token_expires_at, a.auth_status) for a in session.query(Account).all()}


def issue_token(peer: TradovatePeer) -> str:
    """Log in at the peer as an OAuth login would, and return the access token."""
    body = CREDENTIALS.request_body()
    return requests.post(peer.url + "/auth/accesstokenrequest", json=body, timeout=5).json()["accessToken"]


def test_expired_token_shown_then_renewed(peer, make_app):
    app, runtime = build(make_app, peer, credentials={"grp-a": CREDENTIALS})
    expired = utcnow() - dt.timedelta(minutes=1)
    add_accounts(runtime, account(1, "grp-a", "old-token", expired), account(2, "grp-a", "old-token", expired))

    before = auth_status(app)
    assert before["all_accounts_valid"] is False
    assert before["count"] == 2
    assert before["total_accounts"] == 2
    assert before["accounts_needing_reauth"][0] == {
        "id": 1, "name": "Demo 1", "status": "expired", "action": "Re-authenticate via OAuth"
    }
    assert metric(app, "justtrades_accounts_needing_reauth") == 2.0
    assert metric(app, "justtrades_accounts_all_valid") == 0.0
    assert metric(app, "justtrades_accounts") == 2.0

    runtime.start()

    after = wait_until(lambda: (b := auth_status(app))["all_accounts_valid"] and b, timeout=5, message="renewal")
    assert after["count"] == 0
    assert after["accounts_needing_reauth"] == []
    tokens = stored_tokens(runtime)
    assert tokens[1][0] == tokens[2][0] != "old-token"
    assert tokens[1][1] > utcnow() + dt.timedelta(minutes=70)
    assert tokens[1][2] == "valid"
    assert peer.token_requests[USER] == 1
    assert metric(app, "justtrades_accounts_all_valid") == 1.0
    assert metric(app, "justtrades_account_token_earliest_expiry_timestamp_seconds") == pytest.approx(
        tokens[1][1].timestamp()
    )
    assert after["token_refresh"]["renewed_total"] == 1
    assert tokens[1][0] not in json.dumps(after)


def test_expired_token_without_credentials_stays_expired(peer, make_app, caplog):
    app, runtime = build(make_app, peer)
    add_accounts(runtime, account(1, "grp-b", "old-token", utcnow() - dt.timedelta(minutes=5)))

    runtime.start()

    wait_until(lambda: stored_tokens(runtime)[1][2] == "expired", timeout=5, message="marked expired")
    body = auth_status(app)
    assert body["all_accounts_valid"] is False
    assert body["accounts_needing_reauth"][0]["status"] == "expired"
    assert sum(peer.request_counts.values()) == 0
    assert caplog.text.count("cannot be renewed, so accounts [1] need OAuth") == 1
    assert "old-token" not in caplog.text


def test_expiring_oauth_token_renewed(peer, make_app):
    app, runtime = build(make_app, peer)
    token = issue_token(peer)
    add_accounts(runtime, account(1, None, token, utcnow() + dt.timedelta(minutes=5)))
    assert auth_status(app)["all_accounts_valid"] is True

    runtime.start()

    renewed = wait_until(lambda: (t := stored_tokens(runtime)[1])[0] != token and t, timeout=5, message="renewal")
    assert renewed[1] > utcnow() + dt.timedelta(minutes=70)
    assert renewed[2] == "valid"
    assert peer.request_counts["/auth/renewaccesstoken"] == 1


def test_fresh_token_left_alone(peer, make_app):
    app, runtime = build(make_app, peer, credentials={"grp-a": CREDENTIALS})
    add_accounts(runtime, account(1, "grp-a", "fresh-token", utcnow() + dt.timedelta(hours=1)))

    runtime.start()
    first_pass = wait_until(lambda: runtime.token_refresher.snapshot()["last_run_at"], timeout=5)
    wait_until(lambda: runtime.token_refresher.snapshot()["last_run_at"] != first_pass, timeout=5, message="second pass")

    assert stored_tokens(runtime)[1][0] == "fresh-token"
    assert sum(peer.request_counts.values()) == 0


def test_missing_token_listed(peer, make_app):
    app, runtime = build(make_app, peer)
    add_accounts(runtime, account(1, "grp-a", None, None),
                 account(2, "grp-b", "fine", utcnow() + dt.timedelta(hours=1)))

    body = auth_status(app)

    assert body["accounts_needing_reauth"] == [
        {"id": 1, "name": "Demo 1", "status": "missing", "action": "Re-authenticate via OAuth"}
    ]
    assert body["count"] == 1
    assert body["total_accounts"] == 2
    assert body["earliest_token_expiry"].endswith("Z")
    assert metric(app, "justtrades_market_data_tokens_available") == 1.0


def test_no_tradovate_accounts(peer, make_app):
    app, runtime = build(make_app, peer)
    add_accounts(runtime, Account(id=1, name="Paper", broker="paper"))

    body = auth_status(app)

    assert body["all_accounts_valid"] is True
    assert body["count"] == 0
    assert body["total_accounts"] == 0
    assert body["earliest_token_expiry"] is None
    assert metric(app, "justtrades_account_token_earliest_expiry_timestamp_seconds") is None


def test_market_data_tokens_count_valid_groups(peer, make_app):
    app, runtime = build(make_app, peer)
    later = utcnow() + dt.timedelta(hours=1)
    add_accounts(runtime, account(1, "grp-a", "a", later), account(2, "grp-a", "a", later),
                 account(3, "grp-b", "b", later), account(4, "grp-c", "c", utcnow() - dt.timedelta(minutes=1)))

    body = app.test_client().get("/api/market-data/status").get_json()

    assert body["available_tokens"] == 2
    assert metric(app, "justtrades_market_data_tokens_available") == 2.0

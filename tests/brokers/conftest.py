"""Fixtures for the broker adapter tests: a local Tradovate peer, credentials, a token manager, an adapter."""

from __future__ import annotations

import datetime as dt
import threading

import pytest

from justtrades.brokers.base import AccountRef
from justtrades.brokers.tradovate import TradovateBroker
from justtrades.brokers.tradovate_auth import TokenManager, TradovateCredentials
from tests.peers.tradovate_rest import DEFAULT_ACCOUNTS, DEFAULT_USERS, TradovatePeer

USER_NAME, USER_PASSWORD = next(iter(DEFAULT_USERS.items()))
BROKER_ACCOUNT_ID = DEFAULT_ACCOUNTS[0]["id"]


class FakeClock:
    """A settable UTC clock, so expiry and back-off can be tested without waiting."""

    def __init__(self):
        self._now = dt.datetime.now(dt.timezone.utc)
        self._lock = threading.Lock()

    def __call__(self) -> dt.datetime:
        with self._lock:
            return self._now

    def advance(self, **delta) -> None:
        with self._lock:
            self._now += dt.timedelta(**delta)


@pytest.fixture
def peer(clock):
    # The peer shares the test's clock, so token expiry and penalty waits move when the test advances it.
    with TradovatePeer(clock=lambda: clock().timestamp()) as server:
        yield server


@pytest.fixture
def credentials():
    return {
        "main": TradovateCredentials(
            name=USER_NAME,
            password=USER_PASSWORD,
            app_id="JustTradesTests",
            app_version="1.0",
            cid=4242,
            sec="peer-api-secret-do-not-log",
            device_id="tests-device",
        )
    }


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def token_manager(peer, credentials, clock):
    manager = TokenManager(credentials, {"demo": peer.url}, timeout_seconds=2.0, clock=clock)
    yield manager
    manager.close()


@pytest.fixture
def make_broker(peer, token_manager, clock):
    """Build adapters on the peer; each test may pick its own request timeout."""
    built = []

    def build(timeout_seconds: float = 2.0, manager: TokenManager | None = None) -> TradovateBroker:
        broker = TradovateBroker(
            manager or token_manager,
            base_urls={"demo": peer.url},
            timeout_seconds=timeout_seconds,
            clock=clock,
        )
        built.append(broker)
        return broker

    yield build
    for broker in built:
        broker.close()


@pytest.fixture
def broker(make_broker):
    return make_broker()


@pytest.fixture
def account():
    return AccountRef(
        id=7,
        name="Demo account 7",
        broker="tradovate",
        environment="demo",
        broker_account_id=BROKER_ACCOUNT_ID,
        token_group="main",
    )

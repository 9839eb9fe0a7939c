"""The platform of the fault drills: served in-process with its local peers, and the exporter polling it.

The test keeps the Runtime, so it causes faults through the peers (a stalled Tradovate order endpoint, expired
Tradovate sessions, a stopped TradingView socket, a Whop API that does not answer) and through the runtime's own
objects (a broker adapter that kills its worker thread, a registered daemon that crashes). Metrics are never set
by hand: both producers read the platform's real state.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import threading
from decimal import Decimal
from pathlib import Path
from typing import Iterator

import requests
from sqlalchemy import update

from justtrades.accounts.settings import AccountsSettings
from justtrades.app import create_app
from justtrades.brokers.base import OrderRequest, OrderResult
from justtrades.config import Settings
from justtrades.daemons import DaemonSettings
from justtrades.db.engine import create_database_engine, transaction
from justtrades.db.migrate import upgrade
from justtrades.db.models import Account
from justtrades.feeds.settings import FeedSettings, PositionMonitorSettings, TokenRefreshSettings, TradingViewSettings
from justtrades.markets.symbols import resolve_symbol
from justtrades.seed import apply_seed
from justtrades.wsgi import create_server
from justtrades_exporter.server import BackgroundServer, Exporter, ExporterSettings
from tests.conftest import TEST_API_KEY, stop_waitress
from tests.peers.tradingview_ws import TradingViewPeer, make_jwt
from tests.peers.tradovate_rest import TradovatePeer
from tests.peers.whop_api import WhopPeer, membership

TRADOVATE_USER = "jt-demo"
ORDERS_ACCOUNT = "Drill Tradovate Orders"
STANDBY_ACCOUNT = "Drill Tradovate Standby"
# Two accounts of the Tradovate peer's user, one per platform account, in separate token groups.
PEER_ACCOUNTS = (
    {"id": 26029294, "name": "DEMO26029294", "user": TRADOVATE_USER},
    {"id": 26029295, "name": "DEMO26029295", "user": TRADOVATE_USER},
)
# Tradovate tokens live 80 minutes and the refresh daemon renews them 15 minutes ahead. The drill shrinks both, so
# renewals happen every few seconds and the platform notices an ended session at the next renewal.
TOKEN_LIFETIME_SECONDS = 60.0
TOKEN_RENEW_BEFORE_SECONDS = 50.0

PAPER_ACCOUNTS = tuple(f"Drill Paper {number}" for number in range(1, 9))
PAPER_RECORDER_TOKEN = "drill-paper-4c1f9e27b05d83a6"
TRADOVATE_RECORDER_TOKEN = "drill-tradovate-93b7d0e15a2c46f8"
TICKER = "NQ1!"
TICK = Decimal("0.25")
BASE_PRICE = Decimal("21500.25")

WHOP_API_KEY = "drill-whop-key"
SERVER_THREADS = 24
# Above the longest stall the backlog drill causes (fault_drills.STALL_SECONDS), so a held order arrives late but
# never fails with a timeout, which would count as an execution failure.
TRADOVATE_TIMEOUT_SECONDS = 75.0


def drill_seed() -> dict:
    """Return the seed: eight paper accounts behind one recorder and two Tradovate accounts, one of them traded.

    The paper recorder fans a signal out to eight accounts, so one webhook gives jobs in eight lanes (account and
    symbol), which eight workers can run at the same time.
    """
    tradovate = [
        {"name": ORDERS_ACCOUNT, "broker": "tradovate", "broker_account_id": PEER_ACCOUNTS[0]["id"],
         "token_group": "drill-orders"},
        {"name": STANDBY_ACCOUNT, "broker": "tradovate", "broker_account_id": PEER_ACCOUNTS[1]["id"],
         "token_group": "drill-standby"},
    ]
    return {
        "accounts": [{"name": name, "broker": "paper"} for name in PAPER_ACCOUNTS] + tradovate,
        "recorders": [
            {"name": "DRILL-PAPER", "webhook_token": PAPER_RECORDER_TOKEN, "cooldown_seconds": 0},
            {"name": "DRILL-TRADOVATE", "webhook_token": TRADOVATE_RECORDER_TOKEN, "cooldown_seconds": 0},
        ],
        "traders": [{"recorder": "DRILL-PAPER", "account": name} for name in PAPER_ACCOUNTS]
        + [{"recorder": "DRILL-TRADOVATE", "account": ORDERS_ACCOUNT}],
    }


class PoisonedBroker:
    """A broker adapter that raises SystemExit in the calling worker thread while `armed` is set.

    SystemExit is what ends a thread for good: the executor gives the job back and re-raises it, and the worker
    pool's supervisor has to start a replacement. Unarmed, every call goes to the wrapped adapter.
    """

    def __init__(self, broker):
        self._broker = broker
        self.name = broker.name
        self.armed = threading.Event()

    def place_order(self, request: OrderRequest) -> OrderResult:
        self._exit_if_armed(request)
        return self._broker.place_order(request)

    def place_orders_in(self, session, requests: list[OrderRequest]) -> list:
        # The executor places paper orders inside the claim transaction through this method.
        for request in requests:
            self._exit_if_armed(request)
        return self._broker.place_orders_in(session, requests)

    def _exit_if_armed(self, request: OrderRequest) -> None:
        if self.armed.is_set():
            raise SystemExit(f"fault drill: broker worker for client order {request.client_order_id} exits")

    def __getattr__(self, name):
        return getattr(self._broker, name)


@dataclasses.dataclass
class Peers:
    tradovate: TradovatePeer
    tradingview: TradingViewPeer
    whop: WhopPeer
    jwt: str


@contextlib.contextmanager
def start_peers() -> Iterator[Peers]:
    """Start the Tradovate REST, TradingView and Whop peers on 127.0.0.1; stop them on exit."""
    front_month = resolve_symbol(TICKER, dt.datetime.now(dt.timezone.utc)).symbol
    jwt = make_jwt(3600)
    with contextlib.ExitStack() as stack:
        tradovate = stack.enter_context(TradovatePeer(
            accounts=PEER_ACCOUNTS,
            contracts={front_month: (3001, str(TICK), str(BASE_PRICE))},
            token_lifetime_seconds=TOKEN_LIFETIME_SECONDS,
        ))
        tradingview = stack.enter_context(TradingViewPeer(accepted_jwts={jwt}))
        whop = stack.enter_context(WhopPeer(api_key=WHOP_API_KEY, memberships=[
            membership("mem_drill_1", "drill-member@example.com"),
        ]))
        yield Peers(tradovate, tradingview, whop, jwt)


def component_settings(peers: Peers) -> dict:
    """Return the feed, accounts and thread settings: every daemon on a local peer, with short intervals."""
    tradingview = TradingViewSettings(
        ws_url=peers.tradingview.ws_url,
        poll_url="",  # no polling fallback: the drill watches the socket itself
        jwt=peers.jwt,
        jwt_refresh_url=f"{peers.tradingview.http_url}/chart/",
        connect_timeout_seconds=2.0,
        liveness_deadline_seconds=2.0,
        backoff_base_seconds=0.2,
        backoff_max_seconds=0.5,
        session_check_seconds=1.0,
        http_timeout_seconds=2.0,
    )
    feeds = FeedSettings(
        tradingview=tradingview,
        # Off because no drill needs the position monitor, which would need the Tradovate socket peer.
        position_monitor=PositionMonitorSettings(enabled=False),
        token_refresh=TokenRefreshSettings(interval_seconds=1.0, renew_before_seconds=TOKEN_RENEW_BEFORE_SECONDS),
    )
    accounts = AccountsSettings(
        whop_api_url=peers.whop.v1_url,
        whop_api_key=WHOP_API_KEY,
        whop_sync_interval_seconds=1.0,
        whop_timeout_seconds=2.0,
    )
    threads = DaemonSettings(
        supervise_interval_seconds=0.2, restart_backoff_base_seconds=0.5, restart_backoff_max_seconds=2.0,
        join_timeout_seconds=3.0,
    )
    return {"feeds": feeds, "accounts": accounts, "threads": threads}


class DrillPlatform:
    """The platform app and its waitress server in this process, on 127.0.0.1 and a port the OS picked."""

    def __init__(self, workdir: Path, peers: Peers, *, worker_poll_seconds: float):
        self.peers = peers
        self.database_url = f"sqlite:///{workdir / 'drill.sqlite3'}"
        engine = create_database_engine(self.database_url)
        upgrade(engine)
        engine.dispose()

        settings = Settings(
            database_url=self.database_url,
            admin_api_key=TEST_API_KEY,
            secret_key="drill-secret",
            worker_poll_seconds=worker_poll_seconds,
            tradovate_url=peers.tradovate.url,
            tradovate_live_url=peers.tradovate.url,
            tradovate_timeout_seconds=TRADOVATE_TIMEOUT_SECONDS,
            # The killed-workers drill needs each of its eight paper jobs in a worker of its own, not in one batch.
            broker_batch_size=1,
        )
        self.app = create_app(settings, start_background=False, **component_settings(peers))
        self.runtime = self.app.extensions["justtrades"]
        self.paper_broker = PoisonedBroker(self.runtime.brokers["paper"])
        self.runtime.brokers["paper"] = self.paper_broker

        self._server = create_server(self.app, "127.0.0.1", 0, SERVER_THREADS)
        self.url = f"http://127.0.0.1:{self._server.effective_port}"
        self._thread = threading.Thread(target=self._server.run, name="drill-platform-server", daemon=True)
        self._signals = 0
        self._signals_lock = threading.Lock()

    @property
    def address(self) -> str:
        return self.url.removeprefix("http://")

    def start(self) -> "DrillPlatform":
        with transaction(self.runtime.session_factory) as session:
            apply_seed(session, drill_seed())
        for name in (ORDERS_ACCOUNT, STANDBY_ACCOUNT):
            self.store_oauth_token(name)

        self.runtime.start()
        self._thread.start()
        return self

    def stop(self) -> None:
        stop_waitress(self._server, self._thread)
        self.runtime.stop()

    # Steps the drills take

    def store_oauth_token(self, account_name: str) -> None:
        """Store a new Tradovate token on the account, as the OAuth login of its owner does."""
        token = self.peers.tradovate.issue_token(TRADOVATE_USER)
        expires_at = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=TOKEN_LIFETIME_SECONDS)
        with transaction(self.runtime.session_factory) as session:
            changed = session.execute(
                update(Account)
                .where(Account.name == account_name)
                .values(access_token=token, token_expires_at=expires_at, auth_status="valid")
            ).rowcount
        if changed != 1:
            raise RuntimeError(f"account {account_name!r} is not in the drill seed; use one of {ORDERS_ACCOUNT!r}, "
                               f"{STANDBY_ACCOUNT!r}")

    def post_signal(self, token: str) -> requests.Response:
        """Send a buy signal with a price of its own, so that no signal is a duplicate of another."""
        with self._signals_lock:
            self._signals += 1
            price = BASE_PRICE + TICK * self._signals
        body = {"action": "buy", "ticker": TICKER, "quantity": 1, "price": str(price)}
        response = requests.post(f"{self.url}/webhook/{token}", json=body, timeout=10)
        if response.status_code != 200:
            raise AssertionError(f"webhook for recorder token ...{token[-4:]} returned {response.status_code}: "
                                 f"{response.text[:300]}")
        return response

    def get_json(self, path: str) -> dict:
        response = requests.get(self.url + path, headers={"X-API-Key": TEST_API_KEY}, timeout=10)
        response.raise_for_status()
        return response.json()


class DrillExporter:
    """The standalone exporter in this process, polling the drill platform on every scrape."""

    def __init__(self, platform_url: str):
        self.exporter = Exporter(ExporterSettings(platform_url=platform_url, api_key=TEST_API_KEY, timeout_seconds=2.0))
        self.server = BackgroundServer(self.exporter)

    @property
    def address(self) -> str:
        return self.server.url.removeprefix("http://")

    def start(self) -> "DrillExporter":
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()
        self.exporter.close()

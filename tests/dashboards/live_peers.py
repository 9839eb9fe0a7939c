"""Local peers for every outside service of the live dashboard stack, and the settings that point at them.

`start_live_peers()` starts, on 127.0.0.1 and OS-picked ports, the TradingView quote socket, the Whop API, an
SMTP server, and Tradovate's REST API and user socket. It writes the Tradovate credentials file and the seed
(the demo data plus `live_seed.yaml`), and returns the environment for `justtrades serve`.
`seed_with_oauth_token()` seeds the database and stores a token on the Tradovate account, as an OAuth login
does. With both, every subsystem of the platform gets state: real-time prices, a completed Whop sync that
mails an activation link, a Tradovate token renewed at the REST peer, and a position monitor socket that this
token authorizes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import requests
import yaml
from sqlalchemy import update

from justtrades.db.engine import create_database_engine, create_session_factory, transaction
from justtrades.db.models import Account
from tests.conftest import DEMO_SEED, PlatformServer
from tests.peers.smtp import SmtpPeer
from tests.peers.tradingview_ws import TradingViewPeer, make_jwt
from tests.peers.tradovate_rest import DEFAULT_USERS, TradovatePeer
from tests.peers.tradovate_ws import TradovateSocketPeer
from tests.peers.whop_api import WhopPeer, membership

LIVE_SEED = Path(__file__).with_name("live_seed.yaml")
TRADOVATE_ACCOUNT_NAME = "Dashboards Tradovate"
TRADOVATE_TOKEN_GROUP = "dashboards"
# The token refresh daemon renews a token this close to its expiry (JT_TOKEN_RENEW_BEFORE_SECONDS).
TOKEN_RENEW_BEFORE_SECONDS = 900
# Inside that margin, so the daemon's first pass renews the stored token at the REST peer.
OAUTH_TOKEN_LIFETIME_SECONDS = 120
TRADOVATE_USER = "jt-demo"
WHOP_API_KEY = "dashboards-whop-key"
WHOP_MEMBERSHIPS = [membership("mem_dashboards_1", "member@example.com")]
TOKEN_CHECK_TIMEOUT_SECONDS = 5


class RestAcceptedTokens:
    """The access tokens that the Tradovate REST peer accepts now, usable as the socket peer's `valid_tokens`.

    Tradovate's user socket authorizes the same access tokens as its REST API. The platform gets its token from
    the REST peer, so the socket peer checks each token with an authenticated REST request. The socket peer only
    tests membership (`token in valid_tokens`), which is all this class supports.
    """

    def __init__(self, rest_peer: TradovatePeer):
        self.rest_peer = rest_peer

    def __contains__(self, token: object) -> bool:
        if not isinstance(token, str) or not token:
            return False
        response = requests.get(
            f"{self.rest_peer.url}/account/list",
            headers={"Authorization": f"Bearer {token}"},
            timeout=TOKEN_CHECK_TIMEOUT_SECONDS,
        )
        return response.status_code == 200


@dataclasses.dataclass
class LivePeers:
    tradingview: TradingViewPeer
    whop: WhopPeer
    smtp: SmtpPeer
    tradovate_rest: TradovatePeer
    tradovate_socket: TradovateSocketPeer
    seed: Path
    environment: dict[str, str]


@contextlib.contextmanager
def start_live_peers(workdir: Path) -> Iterator[LivePeers]:
    """Start every peer, write the seed and the credentials under `workdir`, and stop the peers on exit."""
    jwt = make_jwt(3600)

    with contextlib.ExitStack() as stack:
        tradingview = stack.enter_context(TradingViewPeer(accepted_jwts={jwt}))
        whop = stack.enter_context(WhopPeer(api_key=WHOP_API_KEY, memberships=WHOP_MEMBERSHIPS))
        smtp = stack.enter_context(SmtpPeer())
        tradovate_rest = stack.enter_context(TradovatePeer())
        tradovate_socket = stack.enter_context(TradovateSocketPeer())
        tradovate_socket.valid_tokens = RestAcceptedTokens(tradovate_rest)

        credentials = write_tradovate_credentials(workdir / "tradovate-credentials.yaml")
        seed = write_seed(workdir / "seed.yaml", tradovate_rest)
        environment = {
            **_tradingview_environment(tradingview, jwt),
            **_tradovate_environment(tradovate_rest, tradovate_socket, credentials),
            **_accounts_environment(whop, smtp),
        }
        yield LivePeers(tradingview, whop, smtp, tradovate_rest, tradovate_socket, seed, environment)


def write_tradovate_credentials(path: Path) -> Path:
    """Write the credentials of the seeded token group for the REST peer's default user, mode 600."""
    credentials = {
        TRADOVATE_TOKEN_GROUP: {
            "name": TRADOVATE_USER,
            "password": DEFAULT_USERS[TRADOVATE_USER],
            "app_id": "JustTradesDashboards",
            "cid": 4343,
            "sec": "dashboards-api-secret-5c2e",
            "device_id": "dashboards-tests",
        }
    }
    path.write_text(yaml.safe_dump(credentials), encoding="utf-8")
    path.chmod(0o600)
    return path


def write_seed(path: Path, tradovate_rest: TradovatePeer) -> Path:
    """Write the demo data plus the entries of `live_seed.yaml` as one seed file."""
    demo = yaml.safe_load(DEMO_SEED.read_text(encoding="utf-8"))
    extra = yaml.safe_load(LIVE_SEED.read_text(encoding="utf-8"))

    peer_accounts = {account["id"] for account in tradovate_rest.accounts if account["user"] == TRADOVATE_USER}
    for account in extra.get("accounts", []):
        if account.get("broker") == "tradovate" and account.get("broker_account_id") not in peer_accounts:
            raise ValueError(
                f"{LIVE_SEED}: broker_account_id {account.get('broker_account_id')} of {account['name']!r} is not "
                f"an account of the Tradovate peer's user {TRADOVATE_USER}; use one of {sorted(peer_accounts)}"
            )

    merged = {key: (demo.get(key) or []) + (extra.get(key) or []) for key in ("accounts", "recorders", "traders")}
    path.write_text(yaml.safe_dump(merged, sort_keys=False), encoding="utf-8")
    return path


def _tradingview_environment(peer: TradingViewPeer, jwt: str) -> dict[str, str]:
    # Empty values switch off session cookies that the outer environment might set, so the feed uses the JWT.
    return {
        "JT_FEEDS_ENABLED": "true",
        "JT_TRADINGVIEW_WS_URL": peer.ws_url,
        "JT_TRADINGVIEW_POLL_URL": f"{peer.http_url}/scan",
        "JT_TRADINGVIEW_JWT_REFRESH_URL": f"{peer.http_url}/chart/",
        "JT_TRADINGVIEW_JWT": jwt,
        "JT_TRADINGVIEW_SESSIONID": "",
        "JT_TRADINGVIEW_SESSIONID_SIGN": "",
        "JT_TRADINGVIEW_SESSION_FILE": "",
    }


def _tradovate_environment(rest: TradovatePeer, socket: TradovateSocketPeer, credentials: Path) -> dict[str, str]:
    # One-second passes, so the token arrives and the monitor opens its socket within seconds of the start,
    # not after the production defaults of 60 seconds.
    return {
        "JT_TRADOVATE_URL": rest.url,
        "JT_TRADOVATE_LIVE_URL": rest.url,
        "JT_TRADOVATE_CREDENTIALS_FILE": str(credentials),
        "JT_TRADOVATE_WS_URL": socket.url,
        "JT_TRADOVATE_WS_URL_DEMO": socket.url,
        "JT_TRADOVATE_WS_URL_LIVE": socket.url,
        "JT_TOKEN_REFRESH_INTERVAL_SECONDS": "1",
        "JT_TOKEN_RENEW_BEFORE_SECONDS": str(TOKEN_RENEW_BEFORE_SECONDS),
        "JT_POSITION_MONITOR_RELOAD_SECONDS": "1",
    }


def _accounts_environment(whop: WhopPeer, smtp: SmtpPeer) -> dict[str, str]:
    # The SMTP peer speaks plain SMTP without login on loopback. Empty values drop any login of the outer environment.
    return {
        "JT_WHOP_API_URL": whop.v1_url,
        "JT_WHOP_API_KEY": whop.api_key,
        "JT_WHOP_COMPANY_ID": "",
        "JT_WHOP_SYNC_INTERVAL_SECONDS": "2",
        "JT_SMTP_HOST": smtp.host,
        "JT_SMTP_PORT": str(smtp.port),
        "JT_SMTP_SECURITY": "none",
        "JT_SMTP_USER": "",
        "JT_SMTP_PASSWORD": "",
    }


def seed_with_oauth_token(server: PlatformServer, rest_peer: TradovatePeer) -> None:
    """Seed the platform's database and store a REST peer token on the Tradovate account, as an OAuth login does.

    The stored token expires within the renewal margin, so the token refresh daemon renews it through the REST
    peer, and the renewed token's expiry is what the platform reports.
    """
    # NOTE: without a stored token the token refresh daemon names the group "account-<id>" instead of its
    # token_group, finds no credentials under that name and marks the account "missing", so a seeded
    # account with credentials never gets its first token. The stored token works around that.
    seed = [sys.executable, "-m", "justtrades.cli", "seed", str(server.seed)]
    subprocess.run(seed, env=server.env, check=True, capture_output=True, timeout=60)

    token = rest_peer.issue_token(TRADOVATE_USER)
    expires_at = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=OAUTH_TOKEN_LIFETIME_SECONDS)
    engine = create_database_engine(server.database_url)
    try:
        with transaction(create_session_factory(engine)) as session:
            stored = session.execute(
                update(Account)
                .where(Account.name == TRADOVATE_ACCOUNT_NAME)
                .values(access_token=token, token_expires_at=expires_at, auth_status="valid")
            ).rowcount
    finally:
        engine.dispose()
    if stored != 1:
        raise RuntimeError(f"account {TRADOVATE_ACCOUNT_NAME!r} of {LIVE_SEED} not found after seeding {server.seed}")

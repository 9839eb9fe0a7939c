"""Fixtures of the security scenarios: live platform processes with users, an API key and known secrets."""

from __future__ import annotations

import os

# Platform processes started here inherit this: their feed daemons must never reach TradingView or Tradovate.
os.environ.setdefault("JT_FEEDS_ENABLED", "false")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import requests  # noqa: E402
from sqlalchemy import create_engine  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from tests.reliability.support import platform_process  # noqa: E402

API_KEY = "sec-admin-key-4f1c9e07b2d8a365"
ADMIN_EMAIL = "admin@example.com"
ADMIN_PASSWORD = "admin-password-9d3e"
USER_EMAIL = "user@example.com"
USER_PASSWORD = "user-password-2b7a"


def add_users(database_url: str) -> None:
    """Create an admin and an ordinary user in the platform's database."""
    from justtrades.accounts.users import create_user

    engine = create_engine(database_url)
    with Session(engine) as session, session.begin():
        create_user(session, ADMIN_EMAIL, ADMIN_PASSWORD, role="admin")
        create_user(session, USER_EMAIL, USER_PASSWORD, role="user")
    engine.dispose()


def start_server(workdir: Path, env: dict | None = None, seed: Path | None = None):
    """Start a platform process with API_KEY, the demo data (or `seed`) and the two users."""
    server = platform_process(workdir, seed=seed, env={"JT_ADMIN_API_KEY": API_KEY, **(env or {})})
    server.api_key = API_KEY
    server.start()
    add_users(server.database_url)
    return server


def log_in(server, email: str, password: str, client_address: str | None = None) -> tuple[requests.Session, str]:
    """Log in over HTTP and return the session (holding the cookie) and its CSRF token."""
    session = requests.Session()
    if client_address:
        session.headers["X-Forwarded-For"] = client_address
    response = session.post(f"{server.url}/login", json={"email": email, "password": password}, timeout=10)
    assert response.status_code == 200, response.text
    return session, response.json()["csrf_token"]


@pytest.fixture(scope="module")
def secured_server(tmp_path_factory):
    """A platform process that trusts one proxy hop, so each test can act from its own client address."""
    server = start_server(tmp_path_factory.mktemp("secured"), env={
        "JT_TRUSTED_PROXIES": "1",
        "JT_LOGIN_MAX_FAILURES": "3",
        "JT_LOGIN_FAILURE_WINDOW_SECONDS": "600",
    })
    yield server
    server.stop()

"""Login throttling per account and per client address, and the CSRF check of cookie-authenticated requests.

The server allows 3 failed logins per account and per address in 10 minutes and trusts one proxy hop, so each
test acts from client addresses of its own (X-Forwarded-For).
"""

from __future__ import annotations

import requests
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from .conftest import ADMIN_EMAIL, ADMIN_PASSWORD, API_KEY, log_in

MAX_FAILURES = 3


def add_user(server, email: str, password: str) -> None:
    from justtrades.accounts.users import create_user

    engine = create_engine(server.database_url)
    with Session(engine) as session, session.begin():
        create_user(session, email, password)
    engine.dispose()


def attempt(server, email: str, password: str, address: str) -> requests.Response:
    return requests.post(f"{server.url}/login", json={"email": email, "password": password},
                         headers={"X-Forwarded-For": address}, timeout=10)


def test_address_throttled_after_failures(secured_server):
    add_user(secured_server, "address-victim@example.com", "right-password-1")

    failures = [attempt(secured_server, f"nobody-{n}@example.com", "wrong-password", "10.1.0.1").status_code
                for n in range(MAX_FAILURES)]
    throttled = attempt(secured_server, "address-victim@example.com", "right-password-1", "10.1.0.1")
    other_address = attempt(secured_server, "address-victim@example.com", "right-password-1", "10.1.0.2")

    assert failures == [401] * MAX_FAILURES
    assert throttled.status_code == 429
    assert "address" in throttled.json()["error"]
    assert int(throttled.headers["Retry-After"]) >= 1
    assert other_address.status_code == 200


def test_account_throttled_across_addresses(secured_server):
    add_user(secured_server, "account-victim@example.com", "right-password-2")

    failures = [attempt(secured_server, "account-victim@example.com", "guess", f"10.2.0.{n}").status_code
                for n in range(1, MAX_FAILURES + 1)]
    throttled = attempt(secured_server, "Account-Victim@Example.com", "right-password-2", "10.2.0.99")

    assert failures == [401] * MAX_FAILURES
    assert throttled.status_code == 429
    assert "account" in throttled.json()["error"]


def test_throttled_login_reveals_nothing(secured_server):
    add_user(secured_server, "silent-victim@example.com", "right-password-3")
    for n in range(MAX_FAILURES):
        attempt(secured_server, "silent-victim@example.com", f"guess-{n}", "10.3.0.1")

    right = attempt(secured_server, "silent-victim@example.com", "right-password-3", "10.3.0.1")
    wrong = attempt(secured_server, "silent-victim@example.com", "still-wrong", "10.3.0.1")

    assert right.status_code == wrong.status_code == 429
    assert right.json() == wrong.json()
    assert "session" not in right.cookies


def test_session_post_needs_csrf_token(secured_server):
    session, csrf_token = log_in(secured_server, ADMIN_EMAIL, ADMIN_PASSWORD, "10.4.0.1")
    url = f"{secured_server.url}/api/broker-queue/clear-cache"

    missing = session.post(url, timeout=10)
    wrong = session.post(url, headers={"X-CSRFToken": "forged-token"}, timeout=10)
    right = session.post(url, headers={"X-CSRFToken": csrf_token}, timeout=10)

    assert missing.status_code == 400
    assert "CSRF" in missing.json()["error"]
    assert wrong.status_code == 400
    assert right.status_code == 200


def test_logout_without_token_keeps_session(secured_server):
    session, csrf_token = log_in(secured_server, ADMIN_EMAIL, ADMIN_PASSWORD, "10.4.0.2")

    forged = session.post(f"{secured_server.url}/logout", timeout=10)
    still_in = session.get(f"{secured_server.url}/api/session", timeout=10).json()
    genuine = session.post(f"{secured_server.url}/logout", headers={"X-CSRFToken": csrf_token}, timeout=10)
    after = session.get(f"{secured_server.url}/api/session", timeout=10).json()

    assert forged.status_code == 400
    assert still_in["authenticated"] is True
    assert genuine.status_code == 200
    assert after["authenticated"] is False


def test_api_key_request_skips_csrf(secured_server):
    session, _ = log_in(secured_server, ADMIN_EMAIL, ADMIN_PASSWORD, "10.4.0.3")

    response = session.post(f"{secured_server.url}/api/broker-queue/clear-cache", headers={"X-API-Key": API_KEY},
                            timeout=10)

    assert response.status_code == 200


def test_session_cookie_flags(secured_server):
    response = attempt(secured_server, ADMIN_EMAIL, ADMIN_PASSWORD, "10.4.0.4")
    cookie = response.headers["Set-Cookie"]

    assert response.status_code == 200
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie

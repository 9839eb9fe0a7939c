"""Session login, logout, failed-login throttling, CSRF and activation, through the real app."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select

from justtrades.accounts.users import UserError, create_user, hash_activation_token, new_activation_token
from justtrades.db.engine import transaction
from justtrades.db.models import LoginFailure, User

from .conftest import (
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    API_KEY,
    USER_EMAIL,
    USER_PASSWORD,
    add_user,
    log_in,
)

STATS = "/api/admin/dashboard-stats"


def test_login_with_json_starts_session(app, users):
    client = app.test_client()
    assert client.get(STATS).status_code == 401

    response = client.post("/login", json={"email": USER_EMAIL, "password": USER_PASSWORD})

    assert response.status_code == 200
    body = response.get_json()
    assert body["user"] == {"id": users["user"], "email": USER_EMAIL, "role": "user"}
    assert body["csrf_token"]
    assert client.get(STATS).status_code == 200


def test_login_with_form_fields(app, users):
    client = app.test_client()

    response = client.post("/login", data={"email": ADMIN_EMAIL.upper(), "password": ADMIN_PASSWORD})

    assert response.status_code == 200
    assert response.get_json()["user"]["role"] == "admin"
    assert client.get(STATS).status_code == 200


@pytest.mark.parametrize(
    "email, password",
    [(USER_EMAIL, "wrong-password"), ("nobody@example.com", USER_PASSWORD), (USER_EMAIL, USER_PASSWORD.upper())],
)
def test_login_rejects_bad_credentials(app, users, email, password):
    client = app.test_client()

    response = client.post("/login", json={"email": email, "password": password})

    assert response.status_code == 401
    assert "invalid email or password" in response.get_json()["error"]
    assert client.get(STATS).status_code == 401


@pytest.mark.parametrize("body", [{}, {"email": USER_EMAIL}, {"password": "x"}, {"email": 5, "password": "x"}])
def test_login_requires_both_fields(app, users, body):
    response = app.test_client().post("/login", json=body)

    assert response.status_code == 400
    assert "email and password are required" in response.get_json()["error"]


def test_login_rejects_unapproved_user(app, runtime):
    add_user(runtime, "pending@example.com", "pending-password", approved=False)

    response = app.test_client().post("/login", json={"email": "pending@example.com", "password": "pending-password"})

    assert response.status_code == 401


def test_logout_ends_session(app, users):
    client = app.test_client()
    token = log_in(client, USER_EMAIL, USER_PASSWORD)

    response = client.post("/logout", headers={"X-CSRFToken": token})

    assert response.status_code == 200
    assert client.get(STATS).status_code == 401


def test_revoked_user_loses_session(app, runtime, users):
    client = app.test_client()
    log_in(client, USER_EMAIL, USER_PASSWORD)
    assert client.get(STATS).status_code == 200

    with transaction(runtime.session_factory) as session:
        session.get(User, users["user"]).approved = False

    assert client.get(STATS).status_code == 401


def test_session_endpoint_reports_user(app, users):
    client = app.test_client()
    assert client.get("/api/session").get_json()["authenticated"] is False

    log_in(client, ADMIN_EMAIL, ADMIN_PASSWORD)
    body = client.get("/api/session").get_json()

    assert body["authenticated"] is True
    assert body["user"]["email"] == ADMIN_EMAIL
    assert body["csrf_token"]


def test_password_stored_hashed(runtime, users):
    with runtime.session_factory() as session:
        user = session.get(User, users["user"])

    assert user.password_hash
    assert USER_PASSWORD not in user.password_hash
    assert user.password_hash.startswith(("scrypt:", "pbkdf2:"))


def test_create_user_validates_input(runtime, users):
    cases = [
        (ADMIN_EMAIL, "long-enough-password", "user", "already exists"),
        ("not-an-address", "long-enough-password", "user", "is not an address"),
        ("new@example.com", "short", "user", "too short"),
        ("new@example.com", "long-enough-password", "root", "role 'root' is unknown"),
    ]
    for email, password, role, message in cases:
        with transaction(runtime.session_factory) as session:
            with pytest.raises(UserError, match=message):
                create_user(session, email, password, role)


# Throttling of failed logins


def _fail(client, email: str, address: str = "10.0.0.1"):
    return client.post("/login", json={"email": email, "password": "wrong-password"},
                       environ_base={"REMOTE_ADDR": address})


def test_failed_logins_throttle_account(app, users):
    client = app.test_client()
    for _ in range(5):
        assert _fail(client, USER_EMAIL).status_code == 401

    throttled = client.post("/login", json={"email": USER_EMAIL, "password": USER_PASSWORD},
                            environ_base={"REMOTE_ADDR": "10.9.9.9"})

    assert throttled.status_code == 429
    retry_after = int(throttled.headers["Retry-After"])
    assert 800 < retry_after <= 900
    assert "account" in throttled.get_json()["error"]
    assert client.get(STATS).status_code == 401


def test_failed_logins_throttle_address(app, users):
    client = app.test_client()
    for attempt in range(5):
        assert _fail(client, f"guess{attempt}@example.com", address="10.0.0.7").status_code == 401

    throttled = client.post("/login", json={"email": USER_EMAIL, "password": USER_PASSWORD},
                            environ_base={"REMOTE_ADDR": "10.0.0.7"})
    other_address = client.post("/login", json={"email": USER_EMAIL, "password": USER_PASSWORD},
                                environ_base={"REMOTE_ADDR": "10.0.0.8"})

    assert throttled.status_code == 429
    assert "address" in throttled.get_json()["error"]
    assert other_address.status_code == 200


def test_throttle_expires_after_window(db_url, app_factory):
    from justtrades.accounts.settings import AccountsSettings

    app = app_factory(db_url, AccountsSettings(login_max_failures=2, login_failure_window_seconds=60))
    runtime = app.extensions["justtrades"]
    add_user(runtime, USER_EMAIL, USER_PASSWORD)
    client = app.test_client()
    _fail(client, USER_EMAIL)
    _fail(client, USER_EMAIL)
    assert client.post("/login", json={"email": USER_EMAIL, "password": USER_PASSWORD}).status_code == 429

    # Age the failures past the window, as time passing would.
    with transaction(runtime.session_factory) as session:
        for failure in session.scalars(select(LoginFailure)):
            failure.failed_at -= dt.timedelta(seconds=61)

    assert client.post("/login", json={"email": USER_EMAIL, "password": USER_PASSWORD}).status_code == 200


def test_successful_login_clears_account_failures(app, runtime, users):
    client = app.test_client()
    for _ in range(4):
        _fail(client, USER_EMAIL, address="10.0.0.2")
    log_in(client, USER_EMAIL, USER_PASSWORD)

    with runtime.session_factory() as session:
        remaining = session.scalars(select(LoginFailure.scope)).all()

    assert remaining.count("account") == 0
    assert remaining.count("address") == 4


def test_throttle_shared_across_apps(db_url, app_factory):
    """Two replicas on one database see the same failures, because they live in the database."""
    first = app_factory(db_url)
    second = app_factory(db_url)
    add_user(first.extensions["justtrades"], USER_EMAIL, USER_PASSWORD)
    for _ in range(5):
        _fail(first.test_client(), USER_EMAIL)

    response = second.test_client().post("/login", json={"email": USER_EMAIL, "password": USER_PASSWORD})

    assert response.status_code == 429


def _log_in_and_out(client, email: str, password: str) -> None:
    token = log_in(client, email, password)
    assert client.post("/logout", headers={"X-CSRFToken": token}).status_code == 200


def test_known_device_logs_in_despite_account_lockout(app, users):
    owner = app.test_client()
    _log_in_and_out(owner, USER_EMAIL, USER_PASSWORD)
    stranger = app.test_client()
    for _ in range(5):
        assert _fail(stranger, USER_EMAIL, address="10.0.0.66").status_code == 401

    stranger_login = stranger.post("/login", json={"email": USER_EMAIL, "password": USER_PASSWORD},
                                   environ_base={"REMOTE_ADDR": "10.0.0.67"})
    owner_login = owner.post("/login", json={"email": USER_EMAIL, "password": USER_PASSWORD})

    assert stranger_login.status_code == 429
    assert "account" in stranger_login.get_json()["error"]
    assert owner_login.status_code == 200


def test_known_device_throttled_by_own_failures(app, runtime, users):
    owner = app.test_client()
    _log_in_and_out(owner, USER_EMAIL, USER_PASSWORD)
    for attempt in range(5):
        assert _fail(owner, USER_EMAIL, address=f"10.0.1.{attempt}").status_code == 401

    throttled = owner.post("/login", json={"email": USER_EMAIL, "password": USER_PASSWORD},
                           environ_base={"REMOTE_ADDR": "10.0.1.99"})
    cookieless = app.test_client().post("/login", json={"email": USER_EMAIL, "password": USER_PASSWORD},
                                        environ_base={"REMOTE_ADDR": "10.0.1.98"})

    assert throttled.status_code == 429
    assert "device" in throttled.get_json()["error"]
    assert cookieless.status_code == 200
    with runtime.session_factory() as session:
        scopes = session.scalars(select(LoginFailure.scope)).all()
    assert "account" not in scopes


def test_device_cookie_bound_to_its_account(app, runtime, users):
    client = app.test_client()
    _log_in_and_out(client, ADMIN_EMAIL, ADMIN_PASSWORD)
    for _ in range(5):
        _fail(client, USER_EMAIL, address="10.0.2.1")

    response = client.post("/login", json={"email": USER_EMAIL, "password": USER_PASSWORD},
                           environ_base={"REMOTE_ADDR": "10.0.2.2"})

    assert response.status_code == 429
    assert "account" in response.get_json()["error"]


def test_forged_device_cookie_ignored(app, users):
    client = app.test_client()
    client.set_cookie("jt_login_device", "forged.value.signature", path="/login")
    for _ in range(5):
        _fail(client, USER_EMAIL, address="10.0.3.1")

    response = client.post("/login", json={"email": USER_EMAIL, "password": USER_PASSWORD},
                           environ_base={"REMOTE_ADDR": "10.0.3.2"})

    assert response.status_code == 429
    assert "account" in response.get_json()["error"]


def test_device_cookie_is_http_only_and_login_scoped(app, users):
    response = app.test_client().post("/login", json={"email": USER_EMAIL, "password": USER_PASSWORD})

    header = next(value for value in response.headers.getlist("Set-Cookie") if value.startswith("jt_login_device="))
    assert "HttpOnly" in header
    assert "Path=/login" in header
    assert "SameSite=Strict" in header
    assert USER_EMAIL not in header


def test_failure_rows_hold_no_email(app, runtime, users):
    _fail(app.test_client(), USER_EMAIL)

    with runtime.session_factory() as session:
        keys = session.scalars(select(LoginFailure.key_hash)).all()

    assert len(keys) == 2
    assert all(USER_EMAIL not in key and len(key) == 64 for key in keys)


# CSRF


def test_cookie_post_without_csrf_rejected(app, users):
    client = app.test_client()
    log_in(client, ADMIN_EMAIL, ADMIN_PASSWORD)

    response = client.post("/api/run-migrations")

    assert response.status_code == 400
    assert "CSRF" in response.get_json()["error"]
    assert "X-CSRFToken" in response.get_json()["error"]


def test_cookie_post_with_csrf_accepted(app, users):
    client = app.test_client()
    token = log_in(client, ADMIN_EMAIL, ADMIN_PASSWORD)

    response = client.post("/api/run-migrations", headers={"X-CSRFToken": token})

    assert response.status_code == 200
    assert response.get_json()["success"] is True


def test_csrf_token_from_other_session_rejected(app, users):
    stolen = log_in(app.test_client(), ADMIN_EMAIL, ADMIN_PASSWORD)
    client = app.test_client()
    log_in(client, ADMIN_EMAIL, ADMIN_PASSWORD)

    response = client.post("/api/run-migrations", headers={"X-CSRFToken": stolen})

    assert response.status_code == 400


def test_api_key_post_needs_no_csrf(app, users):
    client = app.test_client()
    log_in(client, ADMIN_EMAIL, ADMIN_PASSWORD)

    response = client.post("/api/run-migrations", headers={"X-API-Key": API_KEY})

    assert response.status_code == 200


def test_webhook_path_exempt_from_csrf(app, users):
    client = app.test_client()
    log_in(client, ADMIN_EMAIL, ADMIN_PASSWORD)

    response = client.post("/webhook/no-such-token", json={"action": "buy", "ticker": "NQ1!"})

    # Whatever the webhook view returns for an unknown token, it is not the CSRF rejection.
    assert "CSRF" not in (response.get_json() or {}).get("error", "")
    assert response.status_code != 400


# Activation


def _invite(runtime, email: str, sent_at: dt.datetime) -> str:
    token, token_hash = new_activation_token()
    with transaction(runtime.session_factory) as session:
        user = create_user(session, email, None, "user")
        user.activation_token_hash = token_hash
        user.activation_sent_at = sent_at
        user.whop_membership_id = f"mem_{email}"
    return token


def test_activation_sets_password(app, runtime):
    token = _invite(runtime, "invited@example.com", dt.datetime.now(dt.timezone.utc))
    client = app.test_client()

    response = client.post("/api/activate", json={"token": token, "password": "fresh-password"})

    assert response.status_code == 200
    with runtime.session_factory() as session:
        user = session.scalars(select(User).where(User.email == "invited@example.com")).one()
    assert user.activated_at is not None
    assert user.activation_token_hash is None
    assert log_in(client, "invited@example.com", "fresh-password")
    # The token works once.
    assert client.post("/api/activate", json={"token": token, "password": "other-password"}).status_code == 400


def test_activation_rejects_expired_token(app, runtime):
    token = _invite(runtime, "late@example.com", dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=8))

    response = app.test_client().post("/api/activate", json={"token": token, "password": "fresh-password"})

    assert response.status_code == 400
    assert "invalid or expired" in response.get_json()["error"]


def test_activation_rejects_short_password(app, runtime):
    token = _invite(runtime, "short@example.com", dt.datetime.now(dt.timezone.utc))

    response = app.test_client().post("/api/activate", data={"token": token, "password": "short"})

    assert response.status_code == 400
    assert "too short" in response.get_json()["error"]


def test_activation_page_escapes_token(app):
    response = app.test_client().get('/activate?token="><script>')

    assert response.status_code == 200
    assert b"<script>" not in response.data
    assert b'action="/api/activate"' in response.data


def test_activation_token_stored_as_digest():
    token, digest = new_activation_token()

    assert token not in digest
    assert digest == hash_activation_token(token)
    assert len(digest) == 64


def test_user_count_matches_rows(runtime, users):
    with runtime.session_factory() as session:
        assert session.scalar(select(func.count(User.id))) == 2

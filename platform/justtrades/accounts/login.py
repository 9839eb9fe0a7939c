"""Session login with Flask-Login: POST /login, POST /logout, GET /api/session and POST /api/activate."""

from __future__ import annotations

import datetime as dt
import logging

from flask import Blueprint, Flask, current_app, g, jsonify, request, session
from markupsafe import escape
from flask_login import LoginManager, login_user, logout_user
from flask_wtf.csrf import generate_csrf
from sqlalchemy import select

from .. import auth
from .login_devices import COOKIE_NAME as DEVICE_COOKIE, DeviceCookies
from ..db.engine import transaction
from ..db.models import User
from .users import (
    SessionUser,
    UserError,
    MIN_PASSWORD_LENGTH,
    authenticate,
    hash_activation_token,
    may_log_in,
    set_password,
    utc_now,
)

logger = logging.getLogger(__name__)

blueprint = Blueprint("accounts_login", __name__)


def install_login_manager(app: Flask, runtime) -> LoginManager:
    manager = LoginManager()
    manager.init_app(app)

    @manager.user_loader
    def load_user(user_id: str) -> SessionUser | None:
        # Read on every request, so a user revoked by the Whop sync loses its session at the next request.
        try:
            key = int(user_id)
        except (TypeError, ValueError):
            return None

        with runtime.session_factory() as db:
            user = db.get(User, key)
            if user is None or not may_log_in(user):
                return None
            return SessionUser.from_row(user)

    return manager


def _accounts():
    return current_app.extensions["justtrades"].accounts


def _request_fields() -> dict:
    """Return the body as a dict, parsed as a form or as JSON whatever the Content-Type header is."""
    if request.form:
        return request.form.to_dict()

    body = request.get_json(silent=True, force=True)
    return body if isinstance(body, dict) else {}


def _error(status: int, message: str, **headers):
    response = jsonify({"error": message})
    response.status_code = status
    response.headers.update(headers)
    return response


def _user_json(user: SessionUser) -> dict:
    return {"id": user.id, "email": user.email, "role": user.role}


@blueprint.post("/login")
def login():
    fields = _request_fields()
    email, password = fields.get("email"), fields.get("password")
    if not isinstance(email, str) or not email.strip() or not isinstance(password, str) or not password:
        return _error(400, "email and password are required: send them as JSON or form fields")

    accounts = _accounts()
    account_key = email.strip().lower()
    address = request.remote_addr or "unknown"
    now = utc_now()
    devices = _device_cookies(accounts)
    device = devices.device_id(account_key, request.cookies.get(DEVICE_COOKIE))

    # 1. Refuse before checking the password, so a throttled client learns nothing from further guesses.
    throttle = accounts.login_throttle.check(account_key, address, now, device)
    if throttle is not None:
        logger.warning(
            "login from %s throttled by the per-%s limit; retry after %ds", address, throttle.scope, throttle.retry_after_seconds
        )
        return _error(
            429,
            f"too many failed logins for this {throttle.scope}; retry after {throttle.retry_after_seconds} seconds",
            **{"Retry-After": str(throttle.retry_after_seconds)},
        )

    # 2. Check the password.
    with accounts.session_factory() as db:
        user = authenticate(db, email, password)
        session_user = SessionUser.from_row(user) if user is not None else None

    if session_user is None:
        accounts.login_throttle.record_failure(account_key, address, now, device)
        logger.info("failed login from %s (known device: %s)", address, "yes" if device else "no")
        return _error(401, "invalid email or password, or the account is not approved yet")

    # 3. Start a fresh session; the old one may have been planted by someone else.
    accounts.login_throttle.clear_account(account_key, device)
    session.clear()
    g.pop("csrf_token", None)  # a token generated earlier in this request was signed for the cleared session
    login_user(session_user)
    logger.info("user %s logged in from %s", session_user.id, address)
    response = jsonify({"success": True, "user": _user_json(session_user), "csrf_token": generate_csrf()})
    _set_device_cookie(response, devices.issue(account_key), accounts.settings.login_device_cookie_days)
    return response


def _device_cookies(accounts) -> DeviceCookies:
    max_age = accounts.settings.login_device_cookie_days * 24 * 60 * 60
    return DeviceCookies(current_app.config["SECRET_KEY"], max_age)


def _set_device_cookie(response, value: str, days: float) -> None:
    # HttpOnly and bound to the /login path, so scripts cannot read it and no other request carries it.
    response.set_cookie(
        DEVICE_COOKIE,
        value,
        max_age=int(days * 24 * 60 * 60),
        path="/login",
        httponly=True,
        secure=request.is_secure,
        samesite="Strict",
    )


@blueprint.post("/logout")
def logout():
    user = auth.current_user()
    # current_user is a proxy that turns anonymous on logout, so read the id first.
    user_id = user.id if user is not None else None
    logout_user()
    session.clear()
    if user_id is not None:
        logger.info("user %s logged out", user_id)
    return jsonify({"success": True})


@blueprint.get("/api/session")
def session_info():
    """Return who is logged in and the CSRF token that state-changing requests must send."""
    user = auth.current_user()
    return jsonify(
        {
            "authenticated": user is not None,
            "user": _user_json(user) if user is not None else None,
            "csrf_token": generate_csrf(),
        }
    )


@blueprint.post("/api/activate")
def activate():
    """Set the password of a user invited by the Whop sync, using the token from the activation email."""
    fields = _request_fields()
    token, password = fields.get("token"), fields.get("password")
    if not isinstance(token, str) or not token:
        return _error(400, "token is required: send the token from the activation email")

    accounts = _accounts()
    ttl = dt.timedelta(seconds=accounts.settings.activation_token_ttl_seconds)
    now = utc_now()

    with transaction(accounts.session_factory) as db:
        user = db.scalars(select(User).where(User.activation_token_hash == hash_activation_token(token))).first()
        if user is None or user.activation_sent_at is None or user.activation_sent_at + ttl < now:
            return _error(400, "activation token is invalid or expired; ask for a new activation email")

        try:
            set_password(user, password)
        except UserError as error:
            return _error(400, str(error))

        user.activated_at = now
        user.activation_token_hash = None
        user_id, email = user.id, user.email

    logger.info("user %s activated", user_id)
    return jsonify({"success": True, "user": {"id": user_id, "email": email}})


_ACTIVATION_PAGE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Activate your Just Trades account</title></head>
<body>
<h1>Activate your Just Trades account</h1>
<form method="post" action="/api/activate">
<input type="hidden" name="token" value="{token}">
<label>Choose a password (at least {minimum} characters)
<input type="password" name="password" minlength="{minimum}" required autocomplete="new-password"></label>
<button type="submit">Activate</button>
</form>
</body>
</html>
"""


@blueprint.get("/activate")
def activation_page():
    """Serve the page the activation email links to: a form that posts the token and a new password."""
    token = request.args.get("token", "")
    body = _ACTIVATION_PAGE.format(token=escape(token), minimum=MIN_PASSWORD_LENGTH)
    response = current_app.response_class(body, mimetype="text/html")
    # The page carries the token in its URL; keep it out of other sites' Referer headers.
    response.headers["Referrer-Policy"] = "no-referrer"
    return response

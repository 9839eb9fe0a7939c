"""CSRF protection for requests authenticated by the session cookie.

Flask-WTF checks the token from the `X-CSRFToken` header (or a `csrf_token` form field) against the one kept
in the signed session. The check applies only where a forged cross-site request could act with a victim's
rights: a state-changing method whose session cookie belongs to a logged-in user. These requests skip it:

- requests carrying a valid API key, because a browser never adds that header on its own;
- `/webhook/` deliveries, which carry no cookie and authenticate by the recorder's token;
- requests without a logged-in session (no cookie, or an anonymous one), which act with no user's rights.
  So a login from an anonymous session needs no token, and it starts a new session with a new token.
"""

from __future__ import annotations

import logging

from flask import Flask, current_app, jsonify, request
from flask_wtf.csrf import CSRFError, CSRFProtect

from .. import auth

logger = logging.getLogger(__name__)

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
EXEMPT_PATH_PREFIXES = ("/webhook/",)

csrf = CSRFProtect()


def install_csrf(app: Flask) -> None:
    # Checked selectively by the hook below instead of on every POST.
    app.config.setdefault("WTF_CSRF_CHECK_DEFAULT", False)
    # The token lives as long as the login session; rotating it hourly would break long-open dashboards.
    app.config.setdefault("WTF_CSRF_TIME_LIMIT", None)
    csrf.init_app(app)

    app.before_request(_protect_cookie_requests)
    app.register_error_handler(CSRFError, _csrf_error)


def _protect_cookie_requests():
    if request.method not in UNSAFE_METHODS:
        return None
    if request.path.startswith(EXEMPT_PATH_PREFIXES):
        return None

    if current_app.config["SESSION_COOKIE_NAME"] not in request.cookies:
        return None
    if auth.api_key_is_valid():
        return None
    if auth.current_user() is None:
        return None

    csrf.protect()
    return None


def _csrf_error(error: CSRFError):
    logger.info("rejected %s %s from %s: %s", request.method, request.path, request.remote_addr, error.description)
    response = jsonify(
        {
            "error": f"CSRF check failed: {error.description} Send the csrf_token returned by POST /login "
            "or GET /api/session in the X-CSRFToken header.",
            "status": 400,
        }
    )
    response.status_code = 400
    return response

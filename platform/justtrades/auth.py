"""The auth levels of the monitoring endpoints: none, login, admin-or-API-key, and API key only.

The API key is read from the `X-API-Key` header or the documented `api_key` query parameter. The header is preferred
because query strings end up in proxy and access logs; our own access log strips the parameter (see `wsgi.py`).
"""

from __future__ import annotations

import functools
import hmac
import logging

from flask import current_app, jsonify, request

logger = logging.getLogger(__name__)

API_KEY_HEADER = "X-API-Key"
API_KEY_PARAM = "api_key"


def presented_api_key() -> str | None:
    return request.headers.get(API_KEY_HEADER) or request.args.get(API_KEY_PARAM) or None


def api_key_is_valid() -> bool:
    """Compare the presented key with JT_ADMIN_API_KEY in constant time; no key is configured means no access."""
    expected = current_app.extensions["justtrades"].settings.admin_api_key
    presented = presented_api_key()
    if not expected or not presented:
        return False
    return hmac.compare_digest(presented.encode(), expected.encode())


def current_user():
    """Return the logged-in user, or None when no one is logged in or login is not set up on this app."""
    if "login_manager" not in current_app.extensions and not hasattr(current_app, "login_manager"):
        return None

    from flask_login import current_user as user

    if user is None or not user.is_authenticated:
        return None
    return user


def _is_admin(user) -> bool:
    return user is not None and getattr(user, "role", None) == "admin"


def _reject(status: int, message: str):
    response = jsonify({"error": message})
    response.status_code = status
    return response


def admin_or_api_key_required(view):
    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        if api_key_is_valid() or _is_admin(current_user()):
            return view(*args, **kwargs)

        if presented_api_key():
            logger.warning("rejected invalid API key for %s from %s", request.path, request.remote_addr)
            return _reject(403, "invalid API key: send the key set in JT_ADMIN_API_KEY in the X-API-Key header")
        return _reject(
            401,
            "authentication required: log in as an admin, or send the key set in JT_ADMIN_API_KEY in the X-API-Key header",
        )

    return wrapper


def api_key_required(view):
    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        if api_key_is_valid():
            return view(*args, **kwargs)

        if presented_api_key():
            logger.warning("rejected invalid API key for %s from %s", request.path, request.remote_addr)
            return _reject(403, "invalid API key: send the key set in JT_ADMIN_API_KEY in the X-API-Key header")
        return _reject(401, "API key required: send the key set in JT_ADMIN_API_KEY in the X-API-Key header")

    return wrapper


def login_required(view):
    """Require a logged-in user (any role); an API key is accepted too, so monitoring can read these endpoints."""

    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        if current_user() is not None or api_key_is_valid():
            return view(*args, **kwargs)
        return _reject(401, "login required: log in at /login or send an API key in the X-API-Key header")

    return wrapper


def entity_debugging_access(view):
    """Guard the per-entity debugging endpoints, which expose customers' positions.

    They need an admin session or the API key, unless JT_OPEN_ENTITY_DEBUGGING=true restores open access.
    """
    guarded = admin_or_api_key_required(view)

    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        if current_app.extensions["justtrades"].settings.open_entity_debugging:
            return view(*args, **kwargs)
        return guarded(*args, **kwargs)

    return wrapper

"""The Flask application factory."""

from __future__ import annotations

import importlib
import logging

from flask import Flask, jsonify, request
from sqlalchemy.exc import DataError
from werkzeug.exceptions import HTTPException, MethodNotAllowed, RequestEntityTooLarge
from werkzeug.routing import IntegerConverter

from .config import Settings
from .markets import calendar
from .runtime import Runtime
from .webhooks.spool import is_database_unavailable

logger = logging.getLogger(__name__)

# The largest request body an endpoint reads; larger ones get 413 before a view runs. Without it, /login and
# /api/activate would read and hash a body of any size. The webhook view lifts it and reads at most its own limit
# plus one byte, so that an oversized delivery still reaches the raw log.
MAX_REQUEST_BYTES = 1024 * 1024

# The largest row id a URL may name, the maximum of the Integer keys of recorders, traders and accounts (32-bit
# columns on PostgreSQL). A larger id must not reach a query. PostgreSQL raises "integer out of range" for it,
# and the SQLite driver raises OverflowError above 2**63 - 1.
MAX_ROW_ID = 2**31 - 1

# Seconds a client is asked to wait (Retry-After) when a request fails because the database is unavailable.
DATABASE_RETRY_AFTER_SECONDS = 5

# Each module has init_app(app, runtime); order matters where one component uses another's services.
COMPONENTS = (
    "justtrades.execution.component",
    "justtrades.webhooks.views",
    "justtrades.monitoring.views",
    "justtrades.paper.service",
    "justtrades.accounts.component",
    "justtrades.daemons",
    "justtrades.db.upkeep",
    "justtrades.feeds.component",
)


def create_app(settings: Settings | None = None, *, start_background: bool = True, **component_settings) -> Flask:
    """Build the platform app; with start_background=False no thread starts (for unit tests)."""
    settings = settings or Settings.from_environ()
    # An invalid JT_MARKET_HOLIDAYS_FILE fails here, at start, instead of in every /health request.
    calendar.load_holiday_overrides()

    app = Flask(__name__)
    # Registered before the components add their routes, which name row ids as <row_id:...>.
    app.url_map.converters["row_id"] = RowIdConverter
    app.config.update(
        SECRET_KEY=settings.secret_key,
        MAX_CONTENT_LENGTH=MAX_REQUEST_BYTES,
        JSON_SORT_KEYS=False,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
    )
    app.json.sort_keys = False

    runtime = Runtime(settings, component_settings)
    app.extensions["justtrades"] = runtime

    for module_name in COMPONENTS:
        importlib.import_module(module_name).init_app(app, runtime)

    _register_error_handlers(app)
    _register_security_headers(app)

    if start_background:
        runtime.start()
    return app


class RowIdConverter(IntegerConverter):
    """A row id in a URL: a non-negative integer up to MAX_ROW_ID; a larger one matches no route and gets 404."""

    def __init__(self, url_map):
        super().__init__(url_map, max=MAX_ROW_ID)


def _register_error_handlers(app: Flask) -> None:
    @app.errorhandler(RequestEntityTooLarge)
    def _too_large(error: RequestEntityTooLarge):
        limit = app.config["MAX_CONTENT_LENGTH"]
        response = jsonify({"error": f"request body exceeds the {limit}-byte limit: send a smaller body", "status": 413})
        response.status_code = 413
        return response

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException):
        message = error.description
        if isinstance(error, MethodNotAllowed) and error.valid_methods:
            allowed = ", ".join(method for method in error.valid_methods if method not in ("HEAD", "OPTIONS"))
            message = f"method {request.method} is not allowed on this URL: use {allowed}"
        response = jsonify({"error": message, "status": error.code})
        response.status_code = error.code or 500
        # Keep the headers the error carries, such as Allow on a 405, which HTTP requires there.
        for name, value in error.get_headers():
            if name.lower() != "content-type":
                response.headers[name] = value
        return response

    @app.errorhandler(Exception)
    def _unexpected_error(error: Exception):
        if is_database_unavailable(error):
            return _database_unavailable(error)
        if _is_nul_in_text(error):
            # A value of the request reached a query with a NUL character, which PostgreSQL text cannot hold.
            logger.info("%s %s rejected: a value contains a NUL character", request.method, request.path)
            response = jsonify({
                "error": "a value of the request contains a NUL character (%00 in a URL or form, \\u0000 in JSON): "
                         "remove it",
                "status": 400,
            })
            response.status_code = 400
            return response

        # A bug must not leak a stack trace or a secret to the client; the log has the details.
        logger.exception("unhandled error while serving the request")
        response = jsonify({"error": "internal error; the server log has the details", "status": 500})
        response.status_code = 500
        return response


def _is_nul_in_text(error: Exception) -> bool:
    return isinstance(error, DataError) and "NUL (0x00)" in str(error.orig)


def _database_unavailable(error: Exception):
    """Build the 503 response for a request that failed because the database is stopped, hung or out of connections.

    It is an outage, not a bug, so the log gets one line without a traceback and the client learns to retry.
    """
    logger.warning("%s %s failed: database unavailable (%s)", request.method, request.path, type(error).__name__)
    response = jsonify({
        "error": "database unavailable: retry later; GET /health/detailed shows the database state",
        "status": 503,
    })
    response.status_code = 503
    response.headers["Retry-After"] = str(DATABASE_RETRY_AFTER_SECONDS)
    return response


def _register_security_headers(app: Flask) -> None:
    @app.after_request
    def _add_headers(response):
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        response.headers.setdefault("Cache-Control", "no-store")
        return response

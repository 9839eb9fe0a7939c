"""Every endpoint of a running platform against missing, wrong and right credentials of each auth level.

The table below classifies every route of the app; a route missing from it fails the suite, so a new endpoint
cannot ship without a decision about who may call it.
"""

from __future__ import annotations

import tempfile

import pytest
import requests

from .conftest import ADMIN_EMAIL, ADMIN_PASSWORD, API_KEY, USER_EMAIL, USER_PASSWORD, log_in

NONE, LOGIN, ADMIN_OR_KEY, KEY_ONLY, TOKEN = "none", "login", "admin or API key", "API key only", "webhook token"

ROUTES = {
    ("GET", "/health"): NONE,
    ("GET", "/status"): NONE,
    ("GET", "/metrics"): NONE,
    ("GET", "/api/broker-queue/stats"): NONE,
    ("GET", "/api/tradingview/status"): NONE,
    ("GET", "/api/tradingview/auth-status"): NONE,
    ("POST", "/api/tradingview/refresh"): NONE,
    ("GET", "/api/accounts/auth-status"): NONE,
    ("GET", "/api/market-data/status"): NONE,
    ("GET", "/api/paper-trades/service-status"): NONE,
    ("GET", "/api/session"): NONE,
    ("POST", "/login"): NONE,
    ("POST", "/logout"): NONE,
    ("GET", "/activate"): NONE,
    ("POST", "/api/activate"): NONE,
    ("GET", "/static/<path:filename>"): NONE,
    ("GET", "/api/admin/dashboard-stats"): LOGIN,
    ("GET", "/api/admin/max-loss-monitor/status"): LOGIN,
    ("GET", "/health/detailed"): ADMIN_OR_KEY,
    ("GET", "/api/broker-execution/status"): ADMIN_OR_KEY,
    ("GET", "/api/broker-execution/failures"): ADMIN_OR_KEY,
    ("POST", "/api/broker-queue/clear-cache"): ADMIN_OR_KEY,
    ("GET", "/api/webhook-activity"): ADMIN_OR_KEY,
    ("GET", "/api/raw-webhooks"): ADMIN_OR_KEY,
    ("GET", "/api/webhook-spool"): ADMIN_OR_KEY,
    ("GET", "/api/thread-health"): ADMIN_OR_KEY,
    ("GET", "/api/position-monitor/status"): ADMIN_OR_KEY,
    ("GET", "/api/recorders/<row_id:recorder_id>/execution-status"): ADMIN_OR_KEY,
    ("GET", "/api/traders/<row_id:trader_id>/broker-state"): ADMIN_OR_KEY,
    ("GET", "/api/account/<row_id:account_id>/broker-state"): ADMIN_OR_KEY,
    ("POST", "/api/run-migrations"): ADMIN_OR_KEY,
    ("GET", "/api/admin/whop-sync-status"): KEY_ONLY,
    ("POST", "/webhook/<token>"): TOKEN,
    ("POST", "/webhook/<token>/"): TOKEN,
}

# Expected status per credential; "ok" means the request got past authentication (any status below 400).
ANONYMOUS, BAD_HEADER, BAD_QUERY, USER, ADMIN, KEY_HEADER, KEY_QUERY = (
    "anonymous", "wrong key in X-API-Key", "wrong key in api_key", "user session", "admin session",
    "key in X-API-Key", "key in api_key",
)
EXPECTED = {
    LOGIN: {ANONYMOUS: 401, BAD_HEADER: 401, BAD_QUERY: 401, USER: "ok", ADMIN: "ok", KEY_HEADER: "ok", KEY_QUERY: "ok"},
    ADMIN_OR_KEY: {ANONYMOUS: 401, BAD_HEADER: 403, BAD_QUERY: 403, USER: 401, ADMIN: "ok", KEY_HEADER: "ok",
                   KEY_QUERY: "ok"},
    KEY_ONLY: {ANONYMOUS: 401, BAD_HEADER: 403, BAD_QUERY: 403, USER: 401, ADMIN: 401, KEY_HEADER: "ok",
               KEY_QUERY: "ok"},
}
PATH_IDS = {"<row_id:recorder_id>": "1", "<row_id:trader_id>": "1", "<row_id:account_id>": "1",
            "<path:filename>": "missing.css", "<token>": "demo-nq-7f3a9c2e41b8d605"}


def concrete_path(rule: str) -> str:
    for placeholder, value in PATH_IDS.items():
        rule = rule.replace(placeholder, value)
    return rule


def app_routes() -> set[tuple[str, str]]:
    from justtrades.app import create_app
    from justtrades.config import Settings

    with tempfile.TemporaryDirectory() as directory:
        app = create_app(Settings(database_url=f"sqlite:///{directory}/routes.sqlite3"), start_background=False)
        routes = {(method, rule.rule) for rule in app.url_map.iter_rules()
                  for method in rule.methods - {"HEAD", "OPTIONS"}}
        app.extensions["justtrades"].stop()
    return routes


@pytest.fixture(scope="module")
def sessions(secured_server):
    """One logged-in session per role, each from its own client address (the server trusts one proxy hop)."""
    return {
        USER: log_in(secured_server, USER_EMAIL, USER_PASSWORD, "10.0.1.1"),
        ADMIN: log_in(secured_server, ADMIN_EMAIL, ADMIN_PASSWORD, "10.0.1.2"),
    }


def call(server, sessions, method: str, path: str, credential: str) -> requests.Response:
    params, headers, http = {}, {"X-Forwarded-For": "10.0.2.1"}, requests
    if credential == BAD_HEADER:
        headers["X-API-Key"] = "wrong-key-0000"
    elif credential == BAD_QUERY:
        params["api_key"] = "wrong-key-0000"
    elif credential == KEY_HEADER:
        headers["X-API-Key"] = API_KEY
    elif credential == KEY_QUERY:
        params["api_key"] = API_KEY
    elif credential in (USER, ADMIN):
        http, csrf_token = sessions[credential]
        headers = {"X-CSRFToken": csrf_token}
    return http.request(method, server.url + path, params=params, headers=headers, timeout=15)


def test_every_route_is_classified():
    routes = app_routes()

    assert routes - set(ROUTES) == set(), "classify these routes in ROUTES"
    assert set(ROUTES) - routes == set(), "these routes no longer exist; remove them from ROUTES"


@pytest.mark.parametrize("method, rule", [key for key, level in ROUTES.items() if level in EXPECTED],
                         ids=lambda value: value)
def test_guarded_route_checks_credentials(secured_server, sessions, method, rule):
    expected = EXPECTED[ROUTES[(method, rule)]]
    path = concrete_path(rule)

    for credential, status in expected.items():
        response = call(secured_server, sessions, method, path, credential)
        if status == "ok":
            assert response.status_code < 400, f"{credential}: {response.status_code} {response.text[:200]}"
        else:
            assert response.status_code == status, f"{credential}: {response.status_code} {response.text[:200]}"
            assert "error" in response.json(), credential
            assert API_KEY not in response.text


@pytest.mark.parametrize("method, rule", [key for key, level in ROUTES.items() if level == NONE],
                         ids=lambda value: value)
def test_open_route_needs_no_credentials(secured_server, method, rule):
    response = requests.request(method, secured_server.url + concrete_path(rule),
                                headers={"X-Forwarded-For": "10.0.3.1"}, timeout=15)

    assert response.status_code not in (401, 403), response.text[:200]
    assert response.status_code != 500, response.text[:200]


def test_webhook_needs_known_token(secured_server):
    unknown = secured_server.post_webhook("not-a-recorder-token-000", '{"action":"buy","ticker":"NQ1!"}')
    known = secured_server.post_webhook(PATH_IDS["<token>"], '{"action":"buy","ticker":"NQ1!"}')

    assert unknown.status_code == 404
    assert known.status_code == 200


def test_api_key_is_not_a_login(secured_server):
    """The API key opens API endpoints; the session cookie of that request opens nothing without it."""
    with_key = requests.get(secured_server.url + "/api/session", headers={"X-API-Key": API_KEY}, timeout=10)
    cookie_only = requests.get(secured_server.url + "/api/admin/dashboard-stats", cookies=with_key.cookies, timeout=10)

    assert with_key.json()["authenticated"] is False
    assert cookie_only.status_code == 401

"""Each endpoint of the accounts area accepts and rejects the credentials of its auth level."""

from __future__ import annotations

import pytest

from .conftest import ADMIN_EMAIL, ADMIN_PASSWORD, API_KEY, USER_EMAIL, USER_PASSWORD, add_trading_setup, log_in

# Credentials: none, a wrong API key, a user session, an admin session, the API key.
NONE, BAD_KEY, USER, ADMIN, KEY = "none", "bad key", "user session", "admin session", "api key"

LOGIN = {NONE: 401, BAD_KEY: 401, USER: 200, ADMIN: 200, KEY: 200}
ADMIN_OR_KEY = {NONE: 401, BAD_KEY: 403, USER: 401, ADMIN: 200, KEY: 200}
KEY_ONLY = {NONE: 401, BAD_KEY: 403, USER: 401, ADMIN: 401, KEY: 200}

ENDPOINTS = [
    ("GET", "/api/admin/dashboard-stats", LOGIN),
    ("GET", "/api/admin/max-loss-monitor/status", LOGIN),
    ("GET", "/api/admin/whop-sync-status", KEY_ONLY),
    ("GET", "/api/traders/{trader}/broker-state", ADMIN_OR_KEY),
    ("GET", "/api/account/{account}/broker-state", ADMIN_OR_KEY),
    ("POST", "/api/run-migrations", ADMIN_OR_KEY),
]


def _request(app, method: str, path: str, credential: str):
    client = app.test_client()
    headers = {}
    if credential == BAD_KEY:
        headers["X-API-Key"] = "wrong-key"
    elif credential == KEY:
        headers["X-API-Key"] = API_KEY
    elif credential in (USER, ADMIN):
        email, password = (USER_EMAIL, USER_PASSWORD) if credential == USER else (ADMIN_EMAIL, ADMIN_PASSWORD)
        headers["X-CSRFToken"] = log_in(client, email, password)
    return client.open(path, method=method, headers=headers)


@pytest.mark.parametrize("method, template, expected", ENDPOINTS, ids=[row[1] for row in ENDPOINTS])
def test_endpoint_auth_levels(app, runtime, users, method, template, expected):
    ids = add_trading_setup(runtime)
    path = template.format(**ids)

    outcomes = {credential: _request(app, method, path, credential) for credential in expected}

    for credential, status in expected.items():
        response = outcomes[credential]
        assert response.status_code == status, f"{credential}: {response.status_code} {response.get_json()}"
        if status != 200:
            assert "error" in response.get_json()


def test_api_key_accepted_as_query_parameter(app, users):
    response = app.test_client().get(f"/api/admin/whop-sync-status?api_key={API_KEY}")

    assert response.status_code == 200


def test_open_entity_debugging_allows_anyone(db_url, app_factory):
    app = app_factory(db_url, open_entity_debugging=True)
    ids = add_trading_setup(app.extensions["justtrades"])
    client = app.test_client()

    assert client.get(f"/api/traders/{ids['trader']}/broker-state").status_code == 200
    assert client.get(f"/api/account/{ids['account']}/broker-state").status_code == 200
    # The other admin endpoints keep their auth level.
    assert client.post("/api/run-migrations").status_code == 401
    assert client.get("/api/admin/whop-sync-status").status_code == 401

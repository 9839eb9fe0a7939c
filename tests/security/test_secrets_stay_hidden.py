"""Secrets sent through every input of a running platform never show in its logs, tables, JSON or metrics.

Each secret is a fresh random string with a label saying where it went in: query parameters, headers, webhook
bodies (JSON and text, accepted and rejected, oversized, for an unknown token), failed logins and activations,
the admin API key, and the credentials the platform itself is configured with (Tradovate, Whop, SMTP, TradingView,
Flask). The platform logs at DEBUG, trades at a local Tradovate peer (so it requests, renews and uses access
tokens), and its Whop sync fails against a closed port, so error paths log too. Then every stream is searched.
"""

from __future__ import annotations

import json
import secrets
from urllib.parse import quote

import pytest
import requests
import yaml
from sqlalchemy import create_engine, inspect, text

from tests.peers.tradovate_rest import TradovatePeer
from tests.reliability.support import PRICES, front_contracts, platform_logs, wait_until

from .conftest import API_KEY, USER_EMAIL, start_server
from .test_endpoint_auth import ROUTES, concrete_path

RECORDER_TOKEN = "secrets-recorder-" + secrets.token_hex(8)
TRADOVATE_USER = "secret-tester"


def _secret(label: str) -> str:
    return f"S3CR3T{label.replace('_', '').upper()}{secrets.token_hex(6)}"


# Secrets the tests send in.
SENT = {label: _secret(label) for label in (
    "query_api_key_wrong", "query_token", "query_password", "query_access_token", "query_auth", "query_passphrase",
    "query_secret", "query_apikey", "webhook_query_passphrase", "header_api_key_wrong", "header_bearer",
    "header_cookie", "json_passphrase", "json_password", "json_api_key", "json_token", "json_secret",
    "json_nested_auth", "url_token", "text_passphrase", "text_password", "rejected_json_passphrase",
    "oversized_passphrase", "unknown_token_passphrase", "login_password", "login_password_unknown_user",
    "activate_token", "activate_password", "broker_error_password",
)}
# Secrets the platform is configured with.
HELD = {label: _secret(label) for label in (
    "tradovate_password", "tradovate_sec", "whop_api_key", "smtp_password", "tradingview_jwt",
    "tradingview_sessionid", "flask_secret_key",
)}


@pytest.fixture(scope="module")
def leak_run(tmp_path_factory):
    """Run every input against one platform and collect every output stream; yield (outputs, secrets to find)."""
    workdir = tmp_path_factory.mktemp("secrets")
    contracts = front_contracts()
    peer_contracts = {symbol: (4001 + n, *PRICES[root]) for n, (root, symbol) in enumerate(sorted(contracts.items()))}
    peer = TradovatePeer(users={TRADOVATE_USER: HELD["tradovate_password"]}, contracts=peer_contracts,
                         accounts=({"id": 26029294, "name": "DEMO26029294", "user": TRADOVATE_USER},))
    peer.start()
    server = start_server(workdir, seed=_seed(workdir), env=_environment(workdir, peer.url))
    try:
        responses = _send_everything(server, peer, contracts)
        outputs = {
            "server log (stderr: app and access log)": platform_logs(server),
            **{f"response to {name}": response.text for name, response in responses.items()},
            **_json_endpoints(server),
            "GET /metrics": requests.get(server.url + "/metrics", timeout=10).text,
            **_tables(server.database_url),
        }
    finally:
        server.stop()
        peer.stop()

    issued_tokens = {f"tradovate_access_token_{n}": token for n, token in enumerate(peer._tokens)}
    assert issued_tokens, "the platform never requested a Tradovate token; the run did not cover the broker"
    outputs["server log (stderr: app and access log)"] = platform_logs(server)  # lines written at shutdown
    yield outputs, {**SENT, **HELD, **issued_tokens, "admin_api_key": API_KEY}


def _seed(workdir):
    path = workdir / "seed.yaml"
    path.write_text(yaml.safe_dump({
        "accounts": [
            {"name": "Paper", "broker": "paper"},
            {"name": "Tradovate", "broker": "tradovate", "broker_account_id": 26029294, "token_group": "main"},
        ],
        "recorders": [{"name": "SECRETS", "webhook_token": RECORDER_TOKEN}],
        "traders": [{"recorder": "SECRETS", "account": "Paper"}, {"recorder": "SECRETS", "account": "Tradovate"}],
    }))
    return path


def _environment(workdir, tradovate_url: str) -> dict:
    credentials = workdir / "tradovate.yaml"
    credentials.write_text(yaml.safe_dump({"main": {
        "name": TRADOVATE_USER, "password": HELD["tradovate_password"], "app_id": "Secrets", "cid": 7,
        "sec": HELD["tradovate_sec"],
    }}))
    credentials.chmod(0o600)
    return {
        "JT_LOG_LEVEL": "DEBUG",
        "JT_SECRET_KEY": HELD["flask_secret_key"],
        "JT_TRADOVATE_URL": tradovate_url,
        "JT_TRADOVATE_CREDENTIALS_FILE": str(credentials),
        "JT_WHOP_API_KEY": HELD["whop_api_key"],
        "JT_WHOP_COMPANY_ID": "biz_secrets",
        "JT_WHOP_API_URL": "http://127.0.0.1:9/api/v1",  # nothing listens: the sync fails and logs
        "JT_WHOP_SYNC_INTERVAL_SECONDS": "1",
        "JT_SMTP_HOST": "127.0.0.1",
        "JT_SMTP_PORT": "9",
        "JT_SMTP_USER": "mailer",
        "JT_SMTP_PASSWORD": HELD["smtp_password"],
        "JT_TRADINGVIEW_JWT": HELD["tradingview_jwt"],
        "JT_TRADINGVIEW_SESSIONID": HELD["tradingview_sessionid"],
    }


def _send_everything(server, peer, contracts) -> dict[str, requests.Response]:
    url, hook = server.url, f"{server.url}/webhook/{RECORDER_TOKEN}"
    nq = contracts["NQ"]
    sent = {}

    # Query strings, with and without a valid key; secret-looking parameter names of every usual spelling.
    sent["query keys"] = requests.get(f"{url}/api/broker-execution/status", params={
        "api_key": API_KEY, "token": SENT["query_token"], "password": SENT["query_password"],
        "access_token": SENT["query_access_token"], "auth": SENT["query_auth"], "passphrase": SENT["query_passphrase"],
        "secret": SENT["query_secret"], "apikey": SENT["query_apikey"]}, timeout=10)
    sent["wrong query key"] = requests.get(f"{url}/health/detailed?api_key={SENT['query_api_key_wrong']}", timeout=10)

    # Headers.
    sent["wrong header key"] = requests.get(f"{url}/api/raw-webhooks", headers={"X-API-Key": SENT["header_api_key_wrong"]},
                                            timeout=10)
    sent["bearer and cookie"] = requests.get(f"{url}/api/webhook-activity", headers={
        "Authorization": f"Bearer {SENT['header_bearer']}", "Cookie": f"session={SENT['header_cookie']}"}, timeout=10)

    # Webhook bodies: accepted JSON with secret fields (it also trades at the Tradovate peer), text, rejected ones.
    peer.inject("/order/placeorder", _broker_error_fault())
    sent["webhook json"] = requests.post(f"{hook}?passphrase={SENT['webhook_query_passphrase']}", data=json.dumps({
        "action": "buy", "ticker": nq, "price": 21500.25, "passphrase": SENT["json_passphrase"],
        "password": SENT["json_password"], "api_key": SENT["json_api_key"], "token": SENT["json_token"],
        "client_secret": SENT["json_secret"], "meta": {"auth": SENT["json_nested_auth"]},
        "note": f"https://hooks.example/x?token={SENT['url_token']}"}), timeout=10)
    sent["webhook text"] = requests.post(hook, data=f"action=sell ticker={nq} passphrase={SENT['text_passphrase']} "
                                                    f"password: {SENT['text_password']}",
                                         headers={"Content-Type": "text/plain"}, timeout=10)
    sent["webhook rejected"] = requests.post(hook, data=json.dumps({
        "action": "teleport", "ticker": nq, "passphrase": SENT["rejected_json_passphrase"]}), timeout=10)
    sent["webhook oversized"] = requests.post(hook, data=json.dumps({
        "passphrase": SENT["oversized_passphrase"], "action": "buy", "padding": "x" * 70_000}), timeout=10)
    sent["webhook unknown token"] = requests.post(f"{url}/webhook/unknown-{secrets.token_hex(8)}", data=json.dumps({
        "action": "buy", "ticker": nq, "passphrase": SENT["unknown_token_passphrase"]}), timeout=10)

    # Failed logins and activations.
    sent["login"] = requests.post(f"{url}/login", json={"email": USER_EMAIL, "password": SENT["login_password"]},
                                  timeout=10)
    sent["login unknown"] = requests.post(f"{url}/login", data={"email": "ghost@example.com",
                                                                "password": SENT["login_password_unknown_user"]},
                                          timeout=10)
    sent["activate"] = requests.post(f"{url}/api/activate", json={"token": SENT["activate_token"],
                                                                  "password": SENT["activate_password"]}, timeout=10)
    sent["activate page"] = requests.get(f"{url}/activate?token={quote(SENT['activate_token'])}", timeout=10)

    # Let the broker jobs run (a rejected order, then a fresh signal after a forced token renewal) and the Whop
    # sync fail a few times.
    wait_until(lambda: peer.request_counts.get("/order/placeorder", 0) >= 1, 30, "no order reached the peer")
    peer.expire_tokens()
    sent["webhook after expiry"] = requests.post(hook, data=json.dumps({"action": "sell", "ticker": nq, "price": 21500.5}),
                                                 timeout=10)
    wait_until(lambda: peer.request_counts.get("/order/placeorder", 0) >= 2, 30, "the second order never came")
    wait_until(lambda: server.get("/api/broker-execution/status").json()["broker_execution"]["queue_size"] == 0,
               30, "the jobs did not finish")
    wait_until(lambda: server.get("/api/admin/whop-sync-status").json().get("last_error"), 30,
               "the Whop sync never failed")
    return sent


def _broker_error_fault():
    from tests.peers.tradovate_rest import Fault

    # A broker whose error text repeats a credential: the failure is stored and shown, the credential must not be.
    return Fault.order_failure("UnknownReason", f"login failed for password={SENT['broker_error_password']}")


def _json_endpoints(server) -> dict[str, str]:
    documents = {}
    for (method, rule), _ in ROUTES.items():
        if method != "GET" or rule in ("/metrics", "/activate", "/static/<path:filename>"):
            continue
        path = concrete_path(rule)
        for trader_or_account in ("1", "2"):
            path_variant = path.replace("/1/", f"/{trader_or_account}/")
            query = "?limit=500" if rule in ("/api/raw-webhooks", "/api/webhook-activity",
                                               "/api/broker-execution/failures") else ""
            response = requests.get(server.url + path_variant + query, headers={"X-API-Key": API_KEY}, timeout=15)
            documents[f"GET {path_variant}{query}"] = response.text
    return documents


def _tables(database_url: str) -> dict[str, str]:
    """Return every table's rows as text; a row is the repr of its column values."""
    engine = create_engine(database_url)
    dumps = {}
    with engine.connect() as connection:
        for table in inspect(connection).get_table_names():
            rows = connection.execute(text(f'SELECT * FROM "{table}"')).all()
            dumps[f"table {table}"] = "\n".join(repr(tuple(row)) for row in rows)
    engine.dispose()
    return dumps


def _leaks(outputs: dict[str, str], secret_values: dict[str, str], where) -> list[str]:
    return [f"{label} in {name}" for name, content in outputs.items() if where(name)
            for label, value in secret_values.items() if value in content]


def test_logs_hold_no_secret(leak_run):
    outputs, secret_values = leak_run

    assert _leaks(outputs, {**secret_values, "recorder_webhook_token": RECORDER_TOKEN},
                  lambda name: name.startswith("server log")) == []


def test_tables_hold_no_secret(leak_run):
    outputs, secret_values = leak_run

    assert "table raw_webhooks" in outputs
    assert _leaks(outputs, secret_values, lambda name: name.startswith("table ")) == []
    # The recorders table must hold the webhook token to match deliveries; the raw webhook log must not.
    assert RECORDER_TOKEN not in outputs["table raw_webhooks"]


def test_json_endpoints_hold_no_secret(leak_run):
    outputs, secret_values = leak_run
    endpoints = [name for name in outputs if name.startswith("GET /")]

    assert "GET /api/raw-webhooks?limit=500" in endpoints
    assert _leaks(outputs, {**secret_values, "recorder_webhook_token": RECORDER_TOKEN},
                  lambda name: name.startswith("GET /")) == []


def test_metrics_hold_no_secret(leak_run):
    outputs, secret_values = leak_run

    assert _leaks(outputs, {**secret_values, "recorder_webhook_token": RECORDER_TOKEN},
                  lambda name: name == "GET /metrics") == []


def test_responses_echo_no_secret(leak_run):
    outputs, secret_values = leak_run
    # The activation page must carry the token of the emailed link into its form; only its visitor receives it.
    echoed_by_design = {"activate_token in response to activate page"}

    assert set(_leaks(outputs, secret_values, lambda name: name.startswith("response to"))) - echoed_by_design == set()


def test_run_covered_every_path(leak_run):
    """The inputs reached the code that could leak them: stored raw bodies, a broker failure, a Whop error."""
    outputs, _ = leak_run

    assert "[REDACTED]" in outputs["table raw_webhooks"]
    assert "UnknownReason" in outputs["GET /api/broker-execution/failures?limit=500"]
    assert "too_large" in outputs["table raw_webhooks"]
    assert "unknown_token" in outputs["table raw_webhooks"]

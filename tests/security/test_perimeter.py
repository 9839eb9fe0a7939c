"""The edges of a running platform: webhook sender allow-list, body size limits and security headers."""

from __future__ import annotations

import http.client
import socket

import pytest
import requests

from tests.reliability.support import platform_logs

from .conftest import API_KEY, start_server
from .test_endpoint_auth import ROUTES, concrete_path

NQ_TOKEN = "demo-nq-7f3a9c2e41b8d605"
BUY = '{"action":"buy","ticker":"NQ1!"}'
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


@pytest.fixture(scope="module")
def allow_listed_server(tmp_path_factory):
    """A platform that takes webhooks from 10.20.30.40 only and trusts no proxy."""
    server = start_server(tmp_path_factory.mktemp("allow-list"), env={
        "JT_WEBHOOK_ALLOWED_IPS": "10.20.30.40",
        "JT_LOGIN_MAX_FAILURES": "3",
    })
    yield server
    server.stop()


def test_sender_outside_allow_list_is_403(allow_listed_server):
    direct = allow_listed_server.post_webhook(NQ_TOKEN, BUY)
    spoofed = requests.post(f"{allow_listed_server.url}/webhook/{NQ_TOKEN}", data=BUY,
                            headers={"X-Forwarded-For": "10.20.30.40"}, timeout=10)
    raw = allow_listed_server.get("/api/raw-webhooks?limit=10").json()
    activity = allow_listed_server.get("/api/webhook-activity").json()

    assert direct.status_code == 403
    assert "127.0.0.1" in direct.json()["error"]
    assert "JT_WEBHOOK_ALLOWED_IPS" in direct.json()["error"]
    assert spoofed.status_code == 403, "X-Forwarded-For must not be believed without JT_TRUSTED_PROXIES"
    assert [hook["outcome"] for hook in raw["webhooks"]] == ["forbidden", "forbidden"]
    assert activity["stats"]["success"] == 0


def test_trusted_proxy_passes_sender_address(tmp_path):
    server = start_server(tmp_path, env={"JT_WEBHOOK_ALLOWED_IPS": "10.20.30.40", "JT_TRUSTED_PROXIES": "1"})
    try:
        through_proxy = requests.post(f"{server.url}/webhook/{NQ_TOKEN}", data=BUY,
                                      headers={"X-Forwarded-For": "10.20.30.40"}, timeout=10)
        other_sender = requests.post(f"{server.url}/webhook/{NQ_TOKEN}", data='{"action":"sell","ticker":"NQ1!"}',
                                     headers={"X-Forwarded-For": "10.20.30.41"}, timeout=10)
    finally:
        server.stop()

    assert through_proxy.status_code == 200
    assert other_sender.status_code == 403
    assert "10.20.30.41" in other_sender.json()["error"]


def test_forwarded_for_cannot_dodge_login_throttle(allow_listed_server):
    failures = [
        requests.post(f"{allow_listed_server.url}/login", json={"email": f"nobody{n}@example.com", "password": "x"},
                      headers={"X-Forwarded-For": f"10.9.9.{n}"}, timeout=10).status_code
        for n in range(3)
    ]
    next_try = requests.post(f"{allow_listed_server.url}/login", json={"email": "other@example.com", "password": "y"},
                             headers={"X-Forwarded-For": "10.9.9.200"}, timeout=10)

    assert failures == [401, 401, 401]
    assert next_try.status_code == 429


def test_request_whose_body_never_arrives_is_closed(tmp_path):
    # waitress's default channel timeout, 120 s, would outlast the socket timeout below and fail the test.
    server = start_server(tmp_path, env={"JT_HTTP_CHANNEL_TIMEOUT_SECONDS": "2"})
    host, port = server.url.removeprefix("http://").split(":")
    try:
        with socket.create_connection((host, int(port)), timeout=30) as stalled:
            stalled.sendall(f"POST /webhook/{NQ_TOKEN} HTTP/1.1\r\nHost: {host}\r\nContent-Type: text/plain\r\n"
                            "Content-Length: 1000\r\n\r\n{\"action\":".encode())
            meanwhile = server.post_webhook(NQ_TOKEN, BUY)
            try:
                reply = stalled.recv(1024)
            except ConnectionResetError:
                reply = b""
    finally:
        server.stop()

    assert meanwhile.status_code == 200
    assert reply == b"", "the server answered a request whose body never arrived"


def test_oversized_webhook_is_413_and_logged(secured_server):
    body = '{"action":"buy","ticker":"NQ1!","comment":"' + "x" * 70_000 + '"}'
    response = secured_server.post_webhook(NQ_TOKEN, body)
    raw = secured_server.get("/api/raw-webhooks?limit=1").json()["webhooks"][0]

    assert response.status_code == 413
    assert response.json()["field"] == "body"
    assert "65536" in response.json()["error"]
    assert raw["outcome"] == "too_large"
    assert raw["truncated"] is True
    assert raw["size_bytes"] == len(body)


def test_oversized_chunked_webhook_is_413(secured_server):
    def chunks():
        yield b'{"action":"buy","ticker":"NQ1!","comment":"'
        for _ in range(20):
            yield b"y" * 10_000
        yield b'"}'

    response = requests.post(f"{secured_server.url}/webhook/{NQ_TOKEN}", data=chunks(), timeout=10)

    assert response.status_code == 413
    assert response.json()["field"] == "body"


def test_large_body_elsewhere_is_413(secured_server):
    body = b'{"email":"a@example.com","password":"' + b"p" * (2 * 1024 * 1024) + b'"}'

    login = requests.post(f"{secured_server.url}/login", data=body, headers={"Content-Type": "application/json"},
                          timeout=30)
    activate = requests.post(f"{secured_server.url}/api/activate", data=body,
                             headers={"Content-Type": "application/json"}, timeout=30)

    assert login.status_code == 413
    assert "limit" in login.json()["error"]
    assert activate.status_code == 413


def _responses(server) -> dict[str, requests.Response]:
    """One response of every kind: each route with the API key, and the usual errors."""
    responses = {}
    for (method, rule), _ in ROUTES.items():
        responses[f"{method} {rule}"] = requests.request(
            method, server.url + concrete_path(rule), headers={"X-API-Key": API_KEY, "X-Forwarded-For": "10.5.0.1"},
            timeout=15,
        )
    responses["401"] = requests.get(server.url + "/health/detailed", timeout=10)
    responses["403"] = requests.get(server.url + "/health/detailed", headers={"X-API-Key": "wrong"}, timeout=10)
    responses["404"] = requests.get(server.url + "/no-such-page", timeout=10)
    responses["405"] = requests.delete(server.url + "/health", timeout=10)
    responses["400 limit"] = requests.get(server.url + "/api/raw-webhooks?limit=abc",
                                          headers={"X-API-Key": API_KEY}, timeout=10)
    responses["404 webhook"] = server.post_webhook("unknown-token-0000000000", BUY)
    responses["400 webhook"] = server.post_webhook(NQ_TOKEN, "not an alert")
    return responses


def test_every_response_has_security_headers(secured_server):
    for name, response in _responses(secured_server).items():
        for header, value in SECURITY_HEADERS.items():
            assert response.headers.get(header) == value, f"{name}: {header} is {response.headers.get(header)!r}"


def test_405_names_allowed_methods(secured_server):
    response = requests.delete(secured_server.url + "/health", timeout=10)

    assert response.status_code == 405
    assert set(response.headers["Allow"].replace(" ", "").split(",")) >= {"GET", "HEAD"}
    assert response.json()["error"] == "method DELETE is not allowed on this URL: use GET"


def test_errors_are_json_without_traces(secured_server):
    for name, response in _responses(secured_server).items():
        if response.status_code < 400 or name.startswith("GET /static"):
            continue
        assert response.headers["Content-Type"].startswith("application/json"), name
        assert "Traceback" not in response.text, name
        assert "error" in response.json() or "message" in response.json(), name


def test_path_cannot_forge_access_log_lines(secured_server):
    host, port = secured_server.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    connection.request("GET", "/health%0D%0A2026-12-05%20FORGED%20LINE/caf%C3%A9")
    status = connection.getresponse().status
    connection.close()

    logged = [line for line in platform_logs(secured_server).splitlines() if "FORGED" in line]
    assert status == 404
    assert len(logged) == 1
    assert "/health\\r\\n2026-12-05 FORGED LINE/café 404" in logged[0]

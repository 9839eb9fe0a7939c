"""The optional allow-list of webhook source addresses."""

from __future__ import annotations

from sqlalchemy import select

from justtrades.db.models import ExecutionJob, RawWebhook

from ..conftest import build_app

NQ_TOKEN = "demo-nq-7f3a9c2e41b8d605"
BODY = '{"action":"buy","ticker":"NQ1!","price":21500}'


def test_sender_outside_list_is_403_and_logged_raw(sqlite_url):
    app = build_app(sqlite_url, webhook_allowed_networks=("52.89.214.238/32", "10.0.0.0/8"))

    response = app.test_client().post(f"/webhook/{NQ_TOKEN}", data=BODY, environ_base={"REMOTE_ADDR": "203.0.113.9"})

    assert response.status_code == 403
    assert "203.0.113.9" in response.get_json()["error"]
    with app.extensions["justtrades"].session_factory() as session:
        raw = session.scalars(select(RawWebhook)).one()
        jobs = session.scalars(select(ExecutionJob)).all()
    assert raw.outcome == "forbidden"
    assert raw.source_ip == "203.0.113.9"
    assert jobs == []


def test_sender_inside_list_is_accepted(sqlite_url):
    app = build_app(sqlite_url, webhook_allowed_networks=("52.89.214.238/32", "10.0.0.0/8"))

    response = app.test_client().post(f"/webhook/{NQ_TOKEN}", data=BODY, environ_base={"REMOTE_ADDR": "10.1.2.3"})

    assert response.status_code == 200


def test_forwarded_address_used_behind_trusted_proxy(sqlite_url):
    app = build_app(sqlite_url, webhook_allowed_networks=("52.89.214.238/32",), trusted_proxies=1)

    response = app.test_client().post(
        f"/webhook/{NQ_TOKEN}", data=BODY,
        headers={"X-Forwarded-For": "52.89.214.238"}, environ_base={"REMOTE_ADDR": "127.0.0.1"},
    )

    assert response.status_code == 200


def test_empty_list_allows_every_sender(sqlite_url):
    app = build_app(sqlite_url)

    response = app.test_client().post(f"/webhook/{NQ_TOKEN}", data=BODY, environ_base={"REMOTE_ADDR": "198.51.100.7"})

    assert response.status_code == 200

"""The Tradovate peer as a subprocess: it prints its URL, serves the adapter, logs orders, takes faults."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from justtrades.brokers.base import AccountRef, BrokerError, FailureReason, OrderRequest
from justtrades.brokers.tradovate import TradovateBroker
from justtrades.brokers.tradovate_auth import TokenManager

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def peer_process(tmp_path):
    order_log = tmp_path / "orders.jsonl"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.peers.tradovate_rest",
            "--port",
            "0",
            "--latency-ms",
            "50",
            "--order-log",
            str(order_log),
            "--max-seconds",
            "60",
        ],
        cwd=REPOSITORY_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPOSITORY_ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = _read_url(process)
        yield url, order_log
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _read_url(process: subprocess.Popen) -> str:
    # readline blocks until the peer prints; --max-seconds and the fixture's terminate bound the wait.
    line = process.stdout.readline().strip()
    if not line.startswith("http://127.0.0.1:"):
        process.kill()
        raise AssertionError(f"the peer printed {line!r} instead of its URL; stderr: {process.stderr.read()}")
    return line


def test_subprocess_peer_logs_placed_order(peer_process, credentials):
    url, order_log = peer_process
    manager = TokenManager(credentials, {"demo": url})
    broker = TradovateBroker(manager, base_urls={"demo": url})
    account = AccountRef(id=1, name="Demo", broker="tradovate", broker_account_id=26029294, token_group="main")

    result = broker.place_order(OrderRequest(account, "MNQZ6", "Sell", 1, "job-77:trader-5"))
    broker.close()
    manager.close()

    [line] = order_log.read_text().splitlines()
    logged = json.loads(line)
    assert logged["clOrdId"] == "job-77:trader-5"
    assert str(logged["orderId"]) == result.broker_order_id
    assert logged["isAutomated"] is True


def test_subprocess_peer_takes_faults(peer_process, credentials):
    url, order_log = peer_process
    control = url.rsplit("/v1", 1)[0]
    answer = requests.post(
        f"{control}/_peer/faults",
        json={"path": "/order/placeorder", "kind": "rate_limit", "retry_after": 9},
        timeout=5,
    )
    assert answer.status_code == 200

    manager = TokenManager(credentials, {"demo": url})
    broker = TradovateBroker(manager, base_urls={"demo": url})
    account = AccountRef(id=1, name="Demo", broker="tradovate", broker_account_id=26029294, token_group="main")
    try:
        with pytest.raises(BrokerError) as caught:
            broker.place_order(OrderRequest(account, "MNQZ6", "Buy", 1, "job-78:trader-5"))
    finally:
        broker.close()
        manager.close()

    assert caught.value.reason is FailureReason.RATE_LIMIT_EXCEEDED
    assert caught.value.retry_after == 9
    assert not order_log.exists()
    counts = requests.get(f"{control}/_peer/requests", timeout=5).json()
    assert counts["requests"]["/order/placeorder"] == 1
    assert counts["token_requests"] == {"jt-demo": 1}


def test_subprocess_peer_rejects_bad_fault(peer_process):
    url, _ = peer_process
    control = url.rsplit("/v1", 1)[0]

    answer = requests.post(f"{control}/_peer/faults", json={"path": "/order/placeorder", "kind": "meteor"}, timeout=5)

    assert answer.status_code == 400
    assert "meteor" in answer.json()["errorText"]

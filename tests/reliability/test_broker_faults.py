"""Broker faults from the Tradovate peer, seen through the whole platform: webhook, job, executor, adapter.

Each fault must be classified in /api/broker-execution/failures and in
justtrades_broker_execution_failures_total{reason}, retried only where a retry cannot double the order, never in a
hot loop (the peer counts the requests it got), and never end with two orders for one job (the peer logs every
order with its clOrdId and does not de-duplicate them).
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import time

import pytest
import requests
from sqlalchemy import select

from justtrades.db.engine import create_database_engine
from justtrades.db.models import ExecutionJob

from .support import TradovatePeerProcess, metric_samples, platform_process, report_result, tradovate_seed, wait_until

TOKEN = "reliability-faults-8d2f6b0a4e1c9357"
PLACE = "/order/placeorder"
_alert_numbers = itertools.count(1)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """One platform process with one Tradovate account, and the peer process it trades at."""
    workdir = tmp_path_factory.mktemp("faults")
    peer = TradovatePeerProcess(workdir).start()
    server = platform_process(workdir, seed=tradovate_seed(workdir / "seed.yaml", 1, TOKEN), env={
        "JT_TRADOVATE_URL": peer.url,
        "JT_TRADOVATE_CREDENTIALS_FILE": str(peer.write_credentials(workdir / "tradovate.yaml")),
        "JT_TRADOVATE_TIMEOUT_SECONDS": "1",
        "JT_BROKER_WORKERS": "2",
    })
    server.start()
    yield server, peer
    server.stop()
    peer.stop()


class Signal:
    """One alert sent through the platform, and the job it created."""

    def __init__(self, server, peer, ticker_root: str = "NQ"):
        self.server = server
        self.peer = peer
        self.sent_at = dt.datetime.now(dt.timezone.utc)
        body = json.dumps({"action": "buy", "ticker": f"{ticker_root}1!", "alert_id": f"fault-{next(_alert_numbers)}"})
        response = server.post_webhook(TOKEN, body)
        assert response.status_code == 200, response.text
        self.client_order_id = f"jt-{response.json()['activity_id']}-1"  # one trader, id 1

    def job(self) -> ExecutionJob:
        engine = create_database_engine(self.server.database_url)
        with engine.connect() as connection:
            row = connection.execute(select(ExecutionJob).where(ExecutionJob.idempotency_key == self.client_order_id)).one()
        engine.dispose()
        return row

    def wait_finished(self, timeout: float = 30) -> ExecutionJob:
        return wait_until(lambda: (lambda job: job if job.status in ("done", "failed") else None)(self.job()),
                          timeout, f"job {self.client_order_id} did not finish")

    def orders_at_broker(self) -> list[dict]:
        return [order for order in self.peer.logged_orders() if order["clOrdId"] == self.client_order_id]

    def failures(self) -> list[dict]:
        document = self.server.get("/api/broker-execution/failures?limit=100").json()
        since = self.sent_at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        return [failure for failure in document["failures"] if failure["timestamp"] >= since]


def failure_counts(server) -> dict[str, float]:
    samples = metric_samples(requests.get(server.url + "/metrics", timeout=10).text)
    return {dict(labels)["reason"]: value for (name, labels), value in samples.items()
            if name == "justtrades_broker_execution_failures_total"}


def place_requests(peer) -> int:
    return peer.request_counts().get(PLACE, 0)


def test_429_retries_after_retry_after(stack):
    server, peer = stack
    peer.inject(PLACE, "rate_limit", retry_after=2)
    before, places_before = failure_counts(server), place_requests(peer)

    signal = Signal(server, peer)
    wait_until(lambda: signal.failures(), 10, "the 429 was not recorded as a failure")
    time.sleep(1.0)
    places_while_throttled = place_requests(peer) - places_before
    job = signal.wait_finished()

    assert places_while_throttled == 1, "the platform sent again before Retry-After was over"
    assert job.status == "done"
    assert [f["reason"] for f in signal.failures()] == ["rate_limit_exceeded"]
    assert signal.failures()[0]["final"] is False
    assert failure_counts(server)["rate_limit_exceeded"] == before["rate_limit_exceeded"] + 1
    assert place_requests(peer) - places_before == 2
    assert len(signal.orders_at_broker()) == 1


def test_penalty_ticket_is_resent_once(stack):
    server, peer = stack
    peer.inject(PLACE, "penalty", p_time=1.5)
    places_before = place_requests(peer)

    signal = Signal(server, peer)
    job = signal.wait_finished()

    assert job.status == "done"
    assert [f["reason"] for f in signal.failures()] == ["rate_limit_exceeded"]
    [order] = signal.orders_at_broker()
    assert order["pTicket"] is True
    assert place_requests(peer) - places_before == 2


def test_captcha_penalty_fails_without_retry(stack):
    server, peer = stack
    peer.inject(PLACE, "penalty", p_time=1, captcha=True)
    places_before = place_requests(peer)

    signal = Signal(server, peer)
    job = signal.wait_finished()
    time.sleep(1.5)  # a retry would have come by now

    assert job.status == "failed"
    assert [(f["reason"], f["final"]) for f in signal.failures()] == [("rate_limit_exceeded", True)]
    assert place_requests(peer) - places_before == 1
    assert signal.orders_at_broker() == []
    # The peer keeps returning the CAPTCHA ticket; a fresh peer process on the same port clears it. The
    # platform's token is unknown to the new process, so one signal renews it before the next fault is queued.
    peer.stop()
    peer.start(peer.port)
    assert Signal(server, peer).wait_finished().status == "done"


def test_timeout_after_placement_finds_order(stack):
    server, peer = stack
    peer.inject(PLACE, "slow_response", seconds=3)  # recorded at once, with the response only after the 1 s timeout
    before, places_before = failure_counts(server), place_requests(peer)

    signal = Signal(server, peer)
    wait_until(lambda: signal.failures(), 10, "the timeout was not recorded as a failure")
    job = signal.wait_finished(timeout=40)

    assert job.status == "done"
    assert [(f["reason"], f["final"]) for f in signal.failures()] == [("timeout", False)]
    assert failure_counts(server)["timeout"] == before["timeout"] + 1
    assert place_requests(peer) - places_before == 1, "the order was placed again instead of looked up"
    assert len(signal.orders_at_broker()) == 1


def test_failure_reason_is_permanent(stack):
    server, peer = stack
    peer.inject(PLACE, "order_failure", failure_reason="RiskCheck", failure_text="Insufficient buying power")
    before, places_before = failure_counts(server), place_requests(peer)

    signal = Signal(server, peer)
    job = signal.wait_finished()
    time.sleep(1.5)

    assert job.status == "failed"
    assert [(f["reason"], f["final"]) for f in signal.failures()] == [("insufficient_funds", True)]
    assert "Insufficient buying power" in signal.failures()[0]["error"]
    assert failure_counts(server)["insufficient_funds"] == before["insufficient_funds"] + 1
    assert place_requests(peer) - places_before == 1
    assert signal.orders_at_broker() == []


def test_401_mid_run_renews_token(stack):
    server, peer = stack
    peer.inject(PLACE, "unauthorized")
    renewals_before = peer.request_counts().get("/auth/renewaccesstoken", 0)

    signal = Signal(server, peer)
    job = signal.wait_finished()

    assert job.status == "done"
    assert signal.failures() == []
    assert peer.request_counts().get("/auth/renewaccesstoken", 0) == renewals_before + 1
    assert len(signal.orders_at_broker()) == 1


def test_expired_tokens_get_new_token(stack):
    server, peer = stack
    response = requests.post(f"{peer.control_url}/expire-tokens", timeout=10)
    assert response.status_code == 200

    signal = Signal(server, peer)
    job = signal.wait_finished()

    assert job.status == "done"
    assert signal.failures() == []
    assert len(signal.orders_at_broker()) == 1


def test_refused_connection_backs_off(stack):
    server, peer = stack
    before = failure_counts(server)
    peer.stop()
    try:
        signal = Signal(server, peer)
        down_started = time.monotonic()
        time.sleep(5)
        attempts_while_down = len(signal.failures())
    finally:
        peer.start(peer.port)  # same port, so the platform's URL stays right; the order log is appended to
    down_seconds = time.monotonic() - down_started
    job = signal.wait_finished(timeout=40)

    report_result("broker_connection_refused", seconds_down=round(down_seconds, 1),
                  attempts_while_down=attempts_while_down)
    # Backoff 1, 2, 4 s after attempts 1, 2, 3: at most 4 attempts in 5 s, where a hot loop would make hundreds.
    assert 1 <= attempts_while_down <= 4
    assert {f["reason"] for f in signal.failures()} == {"connection_error"}
    assert failure_counts(server)["connection_error"] >= before["connection_error"] + attempts_while_down
    assert job.status == "done"
    assert len(signal.orders_at_broker()) == 1


def test_no_job_ordered_twice(stack):
    """Over every fault above, the peer's order log contains each job's client order id at most once."""
    server, peer = stack
    client_ids = [order["clOrdId"] for order in peer.logged_orders()]

    assert client_ids, "no order reached the peer"
    assert len(client_ids) == len(set(client_ids))

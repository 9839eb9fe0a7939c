"""Signal to order: time from a webhook to the last broker order of its fan-out, through the Tradovate adapter.

One recorder with 50 traders, each on its own Tradovate account; 10 broker workers; the local Tradovate REST
server responds to every request after 50 ms. Ten workers place 50 orders in ceil(50 / 10) rounds, so the last order
cannot be acknowledged before ceil(50 / 10) x 50 ms = 250 ms. Goal: at most 1.15 times that.

The measured time runs from just before the webhook is sent to the broker's record of the last order of that
signal (the stub stamps an order once its 50 ms have passed, that is when it responds). The baseline is the same
50 orders sent straight to the stub by 10 client threads, measured in the same run.

    python -m bench.signal_to_order                     # 50 traders, 10 workers, 50 ms, 5 signals
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime as dt
import math
import os
import statistics
import sys
import threading
import time
from pathlib import Path

import requests
import yaml

from . import servers, tradovate_stub, workloads
from .databases import database_url_for
from .report import Report, ms

TOKEN = "bench-token-0123456789abcdef"
SYMBOL = "NQZ6"


def _write_credentials(workdir: Path) -> Path:
    path = workdir / "tradovate-credentials.yaml"
    path.write_text(yaml.safe_dump(tradovate_stub.credentials_document("bench")), encoding="utf-8")
    os.chmod(path, 0o600)
    return path


def _orders_of(stub_url: str, activity_id: int) -> list[dict]:
    prefix = f"jt-{activity_id}-"
    orders = requests.get(stub_url + "/_peer/orders", timeout=10).json()
    return [order for order in orders if str(order.get("clOrdId") or "").startswith(prefix)]


def _send_signal(platform_url: str, stub_url: str, index: int, traders: int, timeout: float) -> tuple[float, float]:
    """Send one alert and return (first, last) order time in seconds after the send."""
    sent_at = time.time()
    response = requests.post(f"{platform_url}/webhook/{TOKEN}", data=workloads.alert_body(index, SYMBOL),
                             headers={"Content-Type": "application/json"}, timeout=10)
    payload = response.json()
    if response.status_code != 200 or payload.get("status") != "accepted" or payload.get("jobs") != traders:
        raise RuntimeError(f"signal {index} was not accepted with {traders} jobs: {response.status_code} {payload}")

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        orders = _orders_of(stub_url, payload["activity_id"])
        if len(orders) >= traders:
            stamps = [dt.datetime.fromisoformat(order["at"].replace("Z", "+00:00")).timestamp() for order in orders]
            return min(stamps) - sent_at, max(stamps) - sent_at
        time.sleep(0.05)
    raise RuntimeError(f"signal {index}: only {len(orders)} of {traders} orders reached the broker in {timeout:.0f} s")


def _direct_orders(stub_url: str, traders: int, workers: int) -> float:
    """Send one order per account straight to the stub from `workers` threads; return the time to the last response."""
    api = stub_url + "/v1"
    credentials = tradovate_stub.credentials_document("bench")["bench"]
    token = requests.post(api + "/auth/accesstokenrequest", timeout=10, json={
        "name": credentials["name"], "password": credentials["password"], "appId": credentials["app_id"],
        "appVersion": "1.0", "cid": credentials["cid"], "sec": credentials["sec"], "deviceId": "bench",
    }).json()["accessToken"]
    # One keep-alive session per client thread, as the platform's broker workers have.
    local = threading.local()
    accounts = tradovate_stub.account_ids(traders)

    def _place(index: int) -> None:
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
        body = {"accountSpec": f"BENCH{accounts[index]}", "accountId": accounts[index], "clOrdId": f"direct-{index}",
                "action": "Buy", "symbol": SYMBOL, "orderQty": 1, "orderType": "Market", "isAutomated": True}
        response = session.post(api + "/order/placeorder", json=body, timeout=10,
                              headers={"Authorization": f"Bearer {token}"})
        response.raise_for_status()

    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        list(pool.map(_place, range(traders)))
    return time.monotonic() - started


def run(args) -> Report:
    report = Report("signal to order")
    limit = math.ceil(args.traders / args.workers) * args.latency_ms / 1000
    with servers.work_folder("s2o", args.keep) as workdir:
        with database_url_for(args.database, workdir) as database_url, \
                servers.start_tradovate_stub(workdir, args.traders, args.latency_ms) as stub:
            seed = workloads.recorder_with_traders(
                args.traders, token=TOKEN, broker="tradovate",
                broker_account_ids=tradovate_stub.account_ids(args.traders), token_group="bench",
            )
            env = {
                "JT_BROKER_WORKERS": str(args.workers),
                "JT_TRADOVATE_URL": stub.url + "/v1",
                "JT_TRADOVATE_CREDENTIALS_FILE": str(_write_credentials(workdir)),
            }
            servers.seed_platform(database_url, seed, workdir, env)
            report.figure("workload", f"{args.traders} traders, {args.workers} workers, broker "
                          f"{args.latency_ms:g} ms, {args.signals} signals, {args.database}")

            direct = [_direct_orders(stub.url, args.traders, args.workers) for _ in range(args.signals)]
            with servers.start_platform(database_url, workdir, env) as platform:
                # The first signal fetches the token, account names and contract ids; it is not counted.
                _send_signal(platform.url, stub.url, 0, args.traders, args.timeout)
                times = []
                for index in range(1, args.signals + 1):
                    time.sleep(args.pause)
                    times.append(_send_signal(platform.url, stub.url, index, args.traders, args.timeout))

            lasts = [last for _, last in times]
            report.section("per signal")
            report.figure("first order", ms(statistics.median(first for first, _ in times)))
            report.figure("last order, median", ms(statistics.median(lasts)), ms(statistics.median(direct)))
            report.figure("last order, max", ms(max(lasts)), ms(max(direct)))
            report.figure("limit ceil(traders / workers) x latency", ms(limit))
            report.goal("last order, median over signals, vs limit", statistics.median(lasts) / limit, 1.15, "x")
    report.finish()
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--traders", type=int, default=50, help="traders of the recorder (default 50)")
    parser.add_argument("--workers", type=int, default=10, help="broker workers, JT_BROKER_WORKERS (default 10)")
    parser.add_argument("--latency-ms", type=float, default=50, help="delay of each broker response, in milliseconds (default 50)")
    parser.add_argument("--signals", type=int, default=5, help="measured signals (default 5)")
    parser.add_argument("--pause", type=float, default=1.0, help="seconds between signals (default 1)")
    parser.add_argument("--timeout", type=float, default=60, help="seconds to wait for one signal's orders")
    servers.add_database_argument(parser)
    servers.add_keep_argument(parser)
    run(parser.parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())

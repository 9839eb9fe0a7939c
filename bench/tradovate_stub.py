"""The local Tradovate REST server of the test suite (tests/peers/tradovate_rest.py) with many accounts.

Every API request waits --latency-ms before the response, so an order placement costs what a real broker
round trip costs. Run as `python -m bench.tradovate_stub --accounts 50 --latency-ms 50`; it prints
"tradovate stub listening on http://127.0.0.1:PORT" once it accepts requests; the API is under /v1.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from tests.peers.tradovate_rest import TradovatePeer

USER = "bench-user"
PASSWORD = "bench-password"
FIRST_ACCOUNT_ID = 40_000_001


def account_ids(count: int) -> list[int]:
    return [FIRST_ACCOUNT_ID + index for index in range(count)]


def credentials_document(group: str) -> dict:
    """Return the JT_TRADOVATE_CREDENTIALS_FILE content that logs the platform in as the stub's user."""
    return {group: {"name": USER, "password": PASSWORD, "app_id": "JustTradesBench", "cid": 1, "sec": "bench-sec"}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve a Tradovate-style REST API with many accounts on 127.0.0.1.")
    parser.add_argument("--accounts", type=int, default=50, help="accounts of the one user (default 50)")
    parser.add_argument("--latency-ms", type=float, default=50, help="delay of each response, in milliseconds (default 50)")
    parser.add_argument("--max-seconds", type=float, default=1800, help="exit after this many seconds")
    args = parser.parse_args(argv)

    accounts = [{"id": number, "name": f"BENCH{number}", "user": USER} for number in account_ids(args.accounts)]
    peer = TradovatePeer(latency_ms=args.latency_ms, users={USER: PASSWORD}, accounts=accounts)
    peer.start(0)
    print(f"tradovate stub listening on http://127.0.0.1:{peer.port}", flush=True)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait(args.max_seconds)
    peer.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

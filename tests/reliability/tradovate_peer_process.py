"""Run the local Tradovate peer as a process with the contracts a scenario trades.

The scenarios resolve continuous tickers (NQ1!) to the front contract of the day they run, so the peer must know
those contracts; its own command line only has a fixed list. Usage:

    python -m tests.reliability.tradovate_peer_process --port 0 --latency-ms 200 --order-log orders.jsonl \\
        --contract NQZ6=3001:0.25:21500.25 --contract ESZ6=3002:0.25:6120.50

It prints the base URL on the first line of stdout, serves until SIGTERM or --max-seconds, and takes the
control requests of tests/peers/tradovate_rest.py (/_peer/faults, /_peer/orders, /_peer/requests).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from tests.peers.tradovate_rest import DEFAULT_CONTRACTS, TradovatePeer


def _contract(value: str) -> tuple[str, tuple[int, str, str]]:
    name, separator, rest = value.partition("=")
    parts = rest.split(":")
    if not separator or len(parts) != 3 or not parts[0].isdigit():
        raise argparse.ArgumentTypeError(f"--contract {value!r} is invalid; write NAME=ID:TICK:PRICE such as NQZ6=3001:0.25:21500")
    return name, (int(parts[0]), parts[1], parts[2])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the local Tradovate peer on 127.0.0.1 with chosen contracts.")
    parser.add_argument("--port", type=int, default=0, help="TCP port; 0 lets the OS pick one (default)")
    parser.add_argument("--latency-ms", type=float, default=0, help="delay added to each API request, in milliseconds")
    parser.add_argument("--order-log", help="append every placed order as one JSON line to this file")
    parser.add_argument("--contract", action="append", default=[], type=_contract, metavar="NAME=ID:TICK:PRICE",
                        help="a tradable contract; repeatable; the peer's defaults are kept")
    parser.add_argument("--max-seconds", type=float, default=1800, help="exit after this many seconds (default 1800)")
    arguments = parser.parse_args(argv)

    contracts = dict(DEFAULT_CONTRACTS)
    contracts.update(dict(arguments.contract))
    peer = TradovatePeer(latency_ms=arguments.latency_ms, order_log=arguments.order_log, contracts=contracts)
    peer.start(arguments.port)
    print(peer.url, flush=True)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait(arguments.max_seconds)
    peer.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

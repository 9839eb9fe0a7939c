"""Load generators: open-loop at a fixed rate (latency from the scheduled send time) and closed-loop maximum.

Open loop: a scheduler thread releases request i at t0 + i / rate into a queue that a pool of keep-alive
connections drains. Latency is measured from the scheduled time, so a stalled server is charged for every
request that should have been sent meanwhile (no coordinated omission).
"""

from __future__ import annotations

import dataclasses
import http.client
import math
import queue
import re
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit

# (method, path, body, headers) for request number i.
RequestFactory = Callable[[int], tuple[str, str, bytes | None, dict]]


@dataclasses.dataclass
class Sample:
    scheduled: float
    finished: float
    status: int  # 0 when the request failed without a response

    @property
    def latency(self) -> float:
        return self.finished - self.scheduled


@dataclasses.dataclass
class OpenLoopResult:
    samples: list[Sample]
    planned: int
    elapsed: float

    @property
    def latencies(self) -> list[float]:
        return [sample.latency for sample in self.samples]

    def status_counts(self) -> dict[int, int]:
        counts: dict[int, int] = {}
        for sample in self.samples:
            counts[sample.status] = counts.get(sample.status, 0) + 1
        return counts


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile: the smallest value with at least `fraction` of the values at or below it."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


class Connection:
    """One keep-alive HTTP/1.1 connection that reconnects after an error."""

    def __init__(self, base_url: str, timeout: float):
        parts = urlsplit(base_url)
        self._host, self._port = parts.hostname, parts.port
        self._timeout = timeout
        self._connection: http.client.HTTPConnection | None = None

    def request(self, method: str, path: str, body: bytes | None, headers: dict) -> tuple[int, bytes]:
        if self._connection is None:
            self._connection = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)
        try:
            self._connection.request(method, path, body=body, headers=headers)
            response = self._connection.getresponse()
            return response.status, response.read()
        except (OSError, http.client.HTTPException):
            self.close()
            raise

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def open_loop(base_url: str, make_request: RequestFactory, rate: float, duration: float,
              connections: int = 32, timeout: float = 10.0) -> OpenLoopResult:
    """Send rate * duration requests at a fixed rate and return one sample per request."""
    planned = int(rate * duration)
    work: queue.Queue = queue.Queue()
    samples: list[Sample] = []
    lock = threading.Lock()

    def _send_loop():
        connection = Connection(base_url, timeout)
        while True:
            item = work.get()
            if item is None:
                break
            index, scheduled = item
            method, path, body, headers = make_request(index)
            try:
                status, _ = connection.request(method, path, body, headers)
            except (OSError, http.client.HTTPException):
                status = 0
            with lock:
                samples.append(Sample(scheduled, time.monotonic(), status))
        connection.close()

    senders = [threading.Thread(target=_send_loop, daemon=True) for _ in range(connections)]
    for sender in senders:
        sender.start()

    started = time.monotonic() + 0.05
    for index in range(planned):
        scheduled = started + index / rate
        delay = scheduled - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        work.put((index, scheduled))
    for _ in senders:
        work.put(None)

    deadline = time.monotonic() + timeout + 5
    for sender in senders:
        sender.join(max(0.0, deadline - time.monotonic()))
    return OpenLoopResult(samples, planned, time.monotonic() - started)


def closed_loop_python(base_url: str, make_request: RequestFactory, connections: int, duration: float,
                       timeout: float = 10.0) -> tuple[float, dict[int, int]]:
    """Run `connections` threads that each send the next request as soon as the last one has its response.

    Returns requests per second and the count of each status. The client runs on the same cores as the server,
    so on a small machine it is itself a bottleneck; wrk (closed_loop_wrk) costs far less CPU per request.
    """
    counter = iter(range(10**12))
    counter_lock = threading.Lock()
    statuses: dict[int, int] = {}
    stop_at = time.monotonic() + duration

    def _send_loop():
        connection = Connection(base_url, timeout)
        local: dict[int, int] = {}
        while time.monotonic() < stop_at:
            with counter_lock:
                index = next(counter)
            method, path, body, headers = make_request(index)
            try:
                status, _ = connection.request(method, path, body, headers)
            except (OSError, http.client.HTTPException):
                status = 0
            local[status] = local.get(status, 0) + 1
        connection.close()
        with counter_lock:
            for status, count in local.items():
                statuses[status] = statuses.get(status, 0) + count

    started = time.monotonic()
    threads = [threading.Thread(target=_send_loop, daemon=True) for _ in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(duration + timeout + 5)
    elapsed = time.monotonic() - started
    return sum(statuses.values()) / elapsed, statuses


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


# Every wrk thread numbers its requests apart from the others, so no two bodies repeat (the platform
# reports a repeated alert as a duplicate, which is cheaper and would flatter it).
_WRK_SCRIPT = """
local counter = 0
local thread_number = 0
local next_thread = 0

function setup(thread)
  thread:set("thread_number", next_thread)
  next_thread = next_thread + 1
end

function request()
  counter = counter + 1
  local index = thread_number * 150000 + counter
  local body = string.format(%(body_format)s, %(body_args)s)
  return wrk.format("POST", "%(path)s", {["Content-Type"] = "application/json"}, body)
end
"""
_REQUESTS_PER_SECOND = re.compile(r"Requests/sec:\s+([\d.]+)")
_NON_2XX = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
_TOTAL = re.compile(r"(\d+) requests in")
_SOCKET_ERRORS = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")


def closed_loop_wrk(base_url: str, path: str, body_format: str, body_args: str, connections: int,
                    duration: float, threads: int = 2) -> tuple[float, dict[str, int]]:
    """Run wrk against base_url + path with POST bodies built by a Lua string.format from the request index.

    Returns requests per second and counts of total, non-2xx and socket-error requests.
    """
    with tempfile.TemporaryDirectory() as folder:
        script = Path(folder) / "post.lua"
        script.write_text(_WRK_SCRIPT % {"body_format": body_format, "body_args": body_args, "path": path})
        output = subprocess.run(
            ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(duration))}s", "--timeout", "10s",
             "-s", str(script), base_url],
            capture_output=True, text=True, timeout=duration + 60, check=True,
        ).stdout

    rate = float(_REQUESTS_PER_SECOND.search(output).group(1))
    counts = {"total": int(_TOTAL.search(output).group(1)), "non_2xx": 0, "socket_errors": 0}
    if match := _NON_2XX.search(output):
        counts["non_2xx"] = int(match.group(1))
    if match := _SOCKET_ERRORS.search(output):
        counts["socket_errors"] = sum(int(value) for value in match.groups())
    return rate, counts

"""ClaimRounds: requests that wait while a round runs are served together by the next one, led by the oldest."""

from __future__ import annotations

import threading
import time

import pytest

from justtrades.execution.claim_rounds import ClaimRequest, ClaimRounds

WAIT_SECONDS = 5.0


class _Server:
    """A `serve` callable that records each round, blocks its first round until released, and echoes job ids."""

    def __init__(self):
        self.rounds: list[tuple[str, list[list[int]]]] = []
        self.first_round_started = threading.Event()
        self.release_first_round = threading.Event()
        self.fail_with: Exception | None = None

    def __call__(self, requests: list[ClaimRequest]) -> None:
        self.rounds.append((threading.current_thread().name, [request.job_ids for request in requests]))
        if len(self.rounds) == 1:
            self.first_round_started.set()
            assert self.release_first_round.wait(WAIT_SECONDS), "the test never released the first round"
        if self.fail_with is not None:
            raise self.fail_with
        for request in requests:
            request.finish([job_id * 10 for job_id in request.job_ids])


def _submit_in_thread(rounds: ClaimRounds, job_ids: list[int], name: str, outcomes: dict) -> threading.Thread:
    def submit() -> None:
        try:
            outcomes[name] = rounds.submit(ClaimRequest(job_ids))
        except Exception as error:  # the test compares it
            outcomes[name] = error

    thread = threading.Thread(target=submit, name=name, daemon=True)
    thread.start()
    return thread


def _wait_pending(rounds: ClaimRounds, count: int) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while rounds.pending() < count:
        assert time.monotonic() < deadline, f"{count} request(s) did not start waiting within {WAIT_SECONDS} s"
        time.sleep(0.001)


def _start_blocked_round(server: _Server, rounds: ClaimRounds, outcomes: dict) -> threading.Thread:
    """Start a first round that runs until the test releases it; return its thread."""
    thread = _submit_in_thread(rounds, [1], "first", outcomes)
    assert server.first_round_started.wait(WAIT_SECONDS)
    return thread


def test_requests_waiting_during_round_share_next_one():
    server, outcomes = _Server(), {}
    rounds = ClaimRounds(1, server)
    threads = [_start_blocked_round(server, rounds, outcomes)]
    for number, job_ids in enumerate(([2, 3], [4], [5, 6])):
        threads.append(_submit_in_thread(rounds, job_ids, f"waiting-{number}", outcomes))
        _wait_pending(rounds, number + 1)

    server.release_first_round.set()
    for thread in threads:
        thread.join(WAIT_SECONDS)

    assert [job_ids for _, job_ids in server.rounds] == [[[1]], [[2, 3], [4], [5, 6]]]
    assert outcomes == {"first": [10], "waiting-0": [20, 30], "waiting-1": [40], "waiting-2": [50, 60]}


def test_oldest_waiting_request_leads_next_round():
    server, outcomes = _Server(), {}
    rounds = ClaimRounds(1, server)
    threads = [_start_blocked_round(server, rounds, outcomes)]
    for number in range(3):
        threads.append(_submit_in_thread(rounds, [number + 2], f"waiting-{number}", outcomes))
        _wait_pending(rounds, number + 1)

    server.release_first_round.set()
    for thread in threads:
        thread.join(WAIT_SECONDS)

    assert [leader for leader, _ in server.rounds] == ["first", "waiting-0"]


def test_round_error_raised_in_every_request():
    server, outcomes = _Server(), {}
    rounds = ClaimRounds(1, server)
    threads = [_start_blocked_round(server, rounds, outcomes)]
    threads.append(_submit_in_thread(rounds, [2], "waiting", outcomes))
    _wait_pending(rounds, 1)

    server.fail_with = RuntimeError("database unavailable")
    server.release_first_round.set()
    for thread in threads:
        thread.join(WAIT_SECONDS)

    assert outcomes["first"] is server.fail_with
    assert outcomes["waiting"] is server.fail_with


def test_request_without_result_gets_error():
    rounds = ClaimRounds(1, lambda requests: None)

    with pytest.raises(RuntimeError, match=r"no result for jobs \[7\]"):
        rounds.submit(ClaimRequest([7]))
    assert rounds.pending() == 0


def test_lead_freed_after_last_round():
    server, outcomes = _Server(), {}
    server.release_first_round.set()
    rounds = ClaimRounds(1, server)

    assert rounds.submit(ClaimRequest([1])) == [10]
    assert rounds.submit(ClaimRequest([2])) == [20]
    assert rounds.pending() == 0
    assert [job_ids for _, job_ids in server.rounds] == [[[1]], [[2]]]


def test_two_leaders_run_rounds_at_once():
    server, outcomes = _Server(), {}
    rounds = ClaimRounds(2, server)
    first = _start_blocked_round(server, rounds, outcomes)

    # The second lead serves this request while the first round still runs.
    assert rounds.submit(ClaimRequest([2])) == [20]

    server.release_first_round.set()
    first.join(WAIT_SECONDS)
    assert outcomes == {"first": [10]}
    assert [job_ids for _, job_ids in server.rounds] == [[[1]], [[2]]]


def test_zero_leaders_rejected():
    with pytest.raises(ValueError, match="at least 1, got 0"):
        ClaimRounds(0, lambda requests: None)


def test_rounds_start_interval_apart():
    starts = []

    def serve(requests):
        starts.append(time.monotonic())
        for request in requests:
            request.finish(request.job_ids)

    rounds = ClaimRounds(1, serve, interval=0.2)
    rounds.submit(ClaimRequest([1]))
    rounds.submit(ClaimRequest([2]))

    assert starts[1] - starts[0] >= 0.2


def test_requests_during_interval_join_round():
    server, outcomes = _Server(), {}
    server.release_first_round.set()
    rounds = ClaimRounds(1, server, interval=1.0)
    assert rounds.submit(ClaimRequest([1])) == [10]

    # The next leader waits out the interval with its request pending, and a request that comes meanwhile joins.
    leader = _submit_in_thread(rounds, [2], "leader", outcomes)
    _wait_pending(rounds, 1)
    joining = _submit_in_thread(rounds, [3], "joining", outcomes)
    for thread in (leader, joining):
        thread.join(WAIT_SECONDS)

    assert outcomes == {"leader": [20], "joining": [30]}
    assert [job_ids for _, job_ids in server.rounds] == [[[1]], [[2], [3]]]


def test_interval_above_limit_rejected():
    with pytest.raises(ValueError, match="from 0 to 1 s, got 5"):
        ClaimRounds(1, lambda requests: None, interval=5)

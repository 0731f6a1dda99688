"""The QueueGate: may this worker take from queue Q now, and if not, until when (real Redis)."""

from __future__ import annotations

import time

import redis

from jobengine.ratelimit import RateLimiter
from jobengine.runtime.gate import QueueGate
from jobengine.runtime.jobinfo import IN_HAND_WAIT


def test_without_a_limiter_every_job_is_admitted() -> None:
    gate = QueueGate()
    assert [gate.admit("default", f"j{i}") for i in range(100)] == [None] * 100
    assert gate.reason("default") == "is at its rate limit"
    assert gate.closed() == {} and gate.opens_in() is None


def test_admit_takes_a_slot_then_says_when_one_opens(redis_conn: redis.Redis) -> None:
    gate = QueueGate(RateLimiter(redis_conn, {"default": 2}))
    assert gate.admit("default", "a") is None and gate.admit("default", "b") is None
    wait = gate.admit("default", "c")
    assert wait is not None and 50 < wait <= 60  # the moving window: the first slot frees in a minute
    assert gate.reason("default") == "is at its rate limit (2/min)"
    assert gate.admit("low", "d") is None  # an unlimited queue is not touched
    other = QueueGate(RateLimiter(redis_conn, {"default": 2}))  # limits hold across workers (Redis)
    assert other.admit("default", "e") is not None


def test_a_run_time_override_reaches_the_gate(redis_conn: redis.Redis) -> None:
    gate = QueueGate(RateLimiter(redis_conn, {}, refresh=0.0))
    assert gate.admit("default", "a") is None and gate.admit("default", "b") is None
    RateLimiter(redis_conn, {}).set_limit("default", 1)  # the operator, from another process
    assert gate.admit("default", "c") is None  # unlimited hits were not counted: one slot is free
    assert gate.admit("default", "d") is not None
    assert gate.reason("default") == "is at its rate limit (1/min)"


def test_a_held_queue_is_closed_until_its_time() -> None:
    gate = QueueGate()
    gate.hold("default", 0.15)
    gate.hold("low", 30)
    closed = gate.closed()
    assert set(closed) == {"default", "low"}
    opens_in = gate.opens_in()
    assert opens_in is not None and 0.1 < opens_in <= 0.15
    time.sleep(0.2)
    assert set(gate.closed()) == {"low"}  # default opened again, low is still held
    later = gate.opens_in()
    assert later is not None and later > 29


def test_wait_in_hand_waits_only_for_a_slot_that_opens_soon() -> None:
    answers = iter([0.01, None])
    waits: list[str] = []
    start = time.monotonic()
    assert QueueGate.wait_in_hand(0.02, lambda: next(answers), lambda: waits.append("flush")) is None
    assert waits == ["flush"]  # once, before the first pause
    assert 0.025 <= time.monotonic() - start < 0.5
    asked: list[int] = []

    def ask() -> None:
        asked.append(1)

    assert QueueGate.wait_in_hand(IN_HAND_WAIT + 1, ask) == IN_HAND_WAIT + 1
    assert asked == []  # too far off: not waited for, the job is deferred
    assert QueueGate.wait_in_hand(None, lambda: 1.0) is None  # admitted at once

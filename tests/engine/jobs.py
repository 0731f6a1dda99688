"""Job functions the engine tests dispatch (importable as tests.engine.jobs)."""

from __future__ import annotations

import os
import time

from jobengine.errors import ResourceError, TemporaryError


def add(a: int, b: int) -> int:
    return a + b


def noop() -> None:
    return None


def flaky_temporary(message: str = "upstream timed out") -> None:
    raise TemporaryError(message)


def busy_resource() -> None:
    raise ResourceError("connection pool exhausted")


def broken(value: int = 0) -> None:
    raise ValueError(f"bad value {value}")


def sleepy(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def write_pid(path: str) -> int:
    """Record which process ran the job."""
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(f"{os.getpid()}\n")
    return os.getpid()


def mixed(n: int) -> int:
    """Fails permanently for multiples of 7, temporarily for multiples of 5."""
    if n % 7 == 0:
        raise ValueError(f"job {n} is invalid")
    if n % 5 == 0:
        raise TemporaryError(f"job {n} hit a timeout")
    return n * 2


def raise_message(kind: str) -> None:
    """Raise an exception whose message PostgreSQL or UTF-8 cannot take as is."""
    text = {"surrogate": "bad \udc80 surrogate", "nul": "bad \x00 nul", "huge": "x" * 5_000_000}[kind]
    raise ValueError(text)

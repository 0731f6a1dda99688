"""Helpers shared by engine tests: run burst workers until the queues settle, read PostgreSQL."""

from __future__ import annotations

import time
from typing import Any

import psycopg

from jobengine.engine import Engine


def run_until_idle(engine: Engine, rounds: int = 30, queues: list[str] | None = None) -> int:
    """Burst workers (with the scheduler) until no job is queued or due; returns rounds used."""
    for i in range(rounds):
        worker = engine.worker(queues)
        worker.work(burst=True, with_scheduler=True, logging_level="WARNING")
        pending = sum(engine.connection.llen(f"rq:queue:{q}") for q in engine.settings.queues)
        due = sum(engine.connection.zcount(f"rq:scheduled:{q}", "-inf", "+inf")
                  for q in engine.settings.queues)
        if not pending and not due:
            return i + 1
    raise AssertionError(f"queues still busy after {rounds} burst rounds")


def rows(database_url: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(database_url) as conn:
        return conn.execute(sql, params).fetchall()


def scalar(database_url: str, sql: str, *params: Any) -> Any:
    return rows(database_url, sql, *params)[0][0]


def wait_for_a_lock_wait(conn: psycopg.Connection[Any], timeout: float = 5.0) -> None:
    """Until another session of this database waits for a row lock (`conn` may be inside a
    transaction: it only reads pg_stat_activity)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        waiting = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                               "AND datname = current_database()").fetchone()
        if waiting and waiting[0]:
            return
        time.sleep(0.02)

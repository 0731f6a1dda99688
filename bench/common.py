"""Shared set-up for the benchmarks: servers (loopback, or embedded), a fresh database, counters."""

from __future__ import annotations

import argparse
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import redis

DEFAULT_REDIS = "redis://127.0.0.1:6379/15"
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432"


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--redis-url", default=DEFAULT_REDIS, help="Redis to benchmark against (it is FLUSHED)")
    p.add_argument("--pg-url", default=DEFAULT_PG, help="PostgreSQL server (a scratch database is made)")
    return p


@contextmanager
def scratch_database(pg_url: str) -> Iterator[str]:
    """A fresh database for the run, dropped afterwards."""
    name = f"jobtui_bench_{uuid.uuid4().hex[:8]}"
    admin = f"{pg_url.rstrip('/')}/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{pg_url.rstrip('/')}/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def commands_processed(conn: redis.Redis) -> int:
    return int(conn.info("stats")["total_commands_processed"])

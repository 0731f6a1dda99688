"""Fixtures: every engine test gets a clean Redis db and its own PostgreSQL database.

Servers come from JOBTUI_TEST_REDIS_URL / JOBTUI_TEST_DATABASE_URL (default: loopback, as on
CI). The database is a copy of a template that has the migrations applied once per session.
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Iterator

import psycopg
import pytest
import redis

REDIS_BASE = os.environ.get("JOBTUI_TEST_REDIS_URL", "redis://127.0.0.1:6379")
PG_BASE = os.environ.get("JOBTUI_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432")
_db_numbers = itertools.cycle(range(1, 16))


def _pg_url(dbname: str) -> str:
    return f"{PG_BASE.rstrip('/')}/{dbname}"


def _admin() -> psycopg.Connection:
    return psycopg.connect(_pg_url("postgres"), autocommit=True)


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    """A database with every migration applied, copied for each test."""
    from jobengine.store.postgres import PostgresStore

    name = f"jobtui_tmpl_{uuid.uuid4().hex[:8]}"
    with _admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    store = PostgresStore(_pg_url(name))
    store.migrate()
    store.close()
    yield name
    with _admin() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def database_url(pg_template: str) -> Iterator[str]:
    name = f"jobtui_t_{uuid.uuid4().hex[:10]}"
    with _admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{pg_template}"')
    yield _pg_url(name)
    with _admin() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def redis_url() -> Iterator[str]:
    url = f"{REDIS_BASE.rstrip('/')}/{next(_db_numbers)}"
    conn = redis.Redis.from_url(url)
    conn.flushdb()
    yield url
    conn.flushdb()
    conn.close()


@pytest.fixture
def redis_conn(redis_url: str) -> Iterator[redis.Redis]:
    conn = redis.Redis.from_url(redis_url)
    yield conn
    conn.close()

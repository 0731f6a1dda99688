"""Embedded Redis + PostgreSQL: real servers, real second processes, real crashes.

Data directories live directly under /tmp: as root, pgserver widens the permissions of every
parent of its data dir, which is harmless there (and keeps unix socket paths short).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import psutil
import psycopg
import pytest
import redis
from rq import Queue
from rq.job import JobStatus

from jobengine.config import Settings
from jobengine.embedded import ROOT_DATA_DIR, EmbeddedServers, default_data_dir, resolve
from jobengine.errors import ConfigError, UnavailableError

# A user of the embedded servers in another process. argv: data_dir mode [marker]
#   mode "exit": report and stop; "hold": report, stop after a line on stdin; "crash": report, sleep.
USER_SCRIPT = textwrap.dedent("""
    import json, sys, time
    import psycopg, redis
    from jobengine.embedded import EmbeddedServers

    data_dir, mode = sys.argv[1], sys.argv[2]
    servers = EmbeddedServers(data_dir).start()
    conn = redis.Redis.from_url(servers.redis_url)
    if len(sys.argv) > 3:
        conn.set("marker", sys.argv[3])
    with psycopg.connect(servers.database_url, autocommit=True) as pg:
        started_at = str(pg.execute("SELECT pg_postmaster_start_time()").fetchone()[0])
        if len(sys.argv) > 3:
            pg.execute("CREATE TABLE IF NOT EXISTS marker (v text)")
            pg.execute("INSERT INTO marker VALUES (%s)", (sys.argv[3],))
    print(json.dumps({"redis_pid": conn.info("server")["process_id"], "pg_started": started_at,
                      "started": servers.started, "redis_url": servers.redis_url,
                      "database_url": servers.database_url, "pid": servers.postgres_pid}), flush=True)
    conn.close()
    if mode == "hold":
        sys.stdin.readline()
    elif mode == "crash":
        time.sleep(600)
    servers.stop()
""")


Spawn = Callable[..., subprocess.Popen[str]]


def server_processes(data_dir: Path) -> list[psutil.Process]:
    """Live redis-server/postgres processes running in, or naming, `data_dir`."""
    found = []
    for proc in psutil.process_iter(["name", "cmdline", "cwd", "status"]):
        info = proc.info
        if info["name"] not in ("redis-server", "postgres") or info["status"] == psutil.STATUS_ZOMBIE:
            continue
        where = " ".join(info["cmdline"] or []) + " " + (info["cwd"] or "")
        if str(data_dir) in where:
            found.append(proc)
    return found


def wait_dead(procs: list[psutil.Process], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = [p for p in procs if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        if not alive:
            return True
        time.sleep(0.05)
    return False


def pg_socket(database_url: str) -> Path:
    query = parse_qs(urlsplit(database_url).query)
    return Path(query["host"][0]) / f".s.PGSQL.{query['port'][0]}"


def redis_socket(redis_url: str) -> Path:
    return Path(urlsplit(redis_url).path)


def redis_identity(url: str) -> int:
    conn = redis.Redis.from_url(url)
    try:
        return int(conn.info("server")["process_id"])
    finally:
        conn.close()


def pg_identity(url: str) -> str:
    with psycopg.connect(url, connect_timeout=5) as conn:
        return str(conn.execute("SELECT pg_postmaster_start_time()").fetchone()[0])


@pytest.fixture
def data_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="jobtui-emb-", dir="/tmp"))
    try:
        yield path
    finally:
        for proc in server_processes(path):
            proc.kill()
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def spawn() -> Iterator[Spawn]:
    """Start USER_SCRIPT in a subprocess; every one is killed at teardown."""
    children: list[subprocess.Popen[str]] = []

    def start(data_dir: Path, mode: str, marker: str | None = None) -> subprocess.Popen[str]:
        argv = [sys.executable, "-c", USER_SCRIPT, str(data_dir), mode] + ([marker] if marker else [])
        child = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        children.append(child)
        return child

    yield start
    for child in children:
        if child.poll() is None:
            child.kill()
        child.wait()
        for stream in (child.stdin, child.stdout):
            if stream is not None:
                stream.close()


def report(child: subprocess.Popen[str]) -> dict[str, object]:
    assert child.stdout is not None
    line = child.stdout.readline()
    assert line, f"user process exited early with {child.wait()}"
    return json.loads(line)


def assert_all_gone(data_dir: Path, redis_url: str, database_url: str) -> None:
    assert wait_dead(server_processes(data_dir)), server_processes(data_dir)
    assert not redis_socket(redis_url).exists()
    assert not pg_socket(database_url).exists()


def test_start_serves_both_servers_and_stop_removes_them(data_dir: Path) -> None:
    with EmbeddedServers(data_dir) as servers:
        assert servers.started
        assert servers.redis_url.startswith("unix://") and servers.redis_url.endswith("?db=0")
        conn = redis.Redis.from_url(servers.redis_url)
        conn.set("greeting", "hello")
        assert conn.get("greeting") == b"hello"
        conn.close()
        with psycopg.connect(servers.database_url) as pg:
            assert pg.execute("SELECT 1, current_database()").fetchone() == (1, "jobtui")
        assert servers.users() == [os.getpid()]
        names = {p.name() for p in server_processes(data_dir)}
        assert names == {"redis-server", "postgres"}
    assert not servers.running
    assert servers.users() == []
    assert_all_gone(data_dir, servers.redis_url, servers.database_url)


def test_urls_work_from_another_process_and_an_rq_worker(data_dir: Path) -> None:
    with EmbeddedServers(data_dir) as servers:
        conn = redis.Redis.from_url(servers.redis_url)
        conn.set("from-parent", "yes")
        script = textwrap.dedent("""
            import sys, psycopg, redis
            conn = redis.Redis.from_url(sys.argv[1])
            with psycopg.connect(sys.argv[2]) as pg:
                db = pg.execute("SELECT current_database()").fetchone()[0]
            print(conn.get("from-parent").decode(), db)
        """)
        out = subprocess.run([sys.executable, "-c", script, servers.redis_url, servers.database_url],
                             capture_output=True, text=True, timeout=30, check=True)
        assert out.stdout.split() == ["yes", "jobtui"]

        job = Queue("default", connection=conn).enqueue("os.getpid")
        rq = Path(sys.executable).with_name("rq")
        subprocess.run([str(rq), "worker", "--burst", "-q", "-w", "rq.worker.SimpleWorker",
                        "--url", servers.redis_url, "default"], timeout=60, check=True)
        job.refresh()
        assert job.get_status() == JobStatus.FINISHED
        assert job.return_value() not in (None, os.getpid())
        conn.close()


def test_second_process_attaches_and_leaves_servers_running(data_dir: Path, spawn: Spawn) -> None:
    with EmbeddedServers(data_dir) as servers:
        mine = (redis_identity(servers.redis_url), pg_identity(servers.database_url))
        child = spawn(data_dir, "exit")
        theirs = report(child)
        assert child.wait(timeout=30) == 0
        assert theirs["started"] is False
        assert (theirs["redis_pid"], theirs["pg_started"]) == mine
        assert theirs["redis_url"] == servers.redis_url
        assert theirs["database_url"] == servers.database_url
        # the child stopped its handle, but we still hold ours: both servers keep running
        assert (redis_identity(servers.redis_url), pg_identity(servers.database_url)) == mine
        assert servers.users() == [os.getpid()]
    assert_all_gone(data_dir, servers.redis_url, servers.database_url)


def test_last_user_stops_servers_even_if_it_did_not_start_them(data_dir: Path, spawn: Spawn) -> None:
    servers = EmbeddedServers(data_dir).start()
    child = spawn(data_dir, "hold")
    theirs = report(child)
    assert theirs["started"] is False
    assert sorted(servers.users()) == sorted([os.getpid(), child.pid])
    servers.stop()
    assert redis_identity(str(theirs["redis_url"])) == theirs["redis_pid"]  # child still holds them
    assert pg_identity(str(theirs["database_url"])) == theirs["pg_started"]
    assert child.stdin is not None
    child.stdin.write("done\n")
    child.stdin.flush()
    assert child.wait(timeout=30) == 0
    assert_all_gone(data_dir, servers.redis_url, servers.database_url)


def test_servers_left_by_a_killed_owner_are_reattached(data_dir: Path, spawn: Spawn) -> None:
    child = spawn(data_dir, "crash")
    theirs = report(child)
    assert theirs["started"] is True
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=10)
    with EmbeddedServers(data_dir) as servers:
        assert servers.started is False
        assert redis_identity(servers.redis_url) == theirs["redis_pid"]
        assert pg_identity(servers.database_url) == theirs["pg_started"]
        assert servers.users() == [os.getpid()]  # the dead owner was pruned
    assert_all_gone(data_dir, servers.redis_url, servers.database_url)


def test_stale_state_after_everything_was_killed_is_replaced(data_dir: Path, spawn: Spawn) -> None:
    child = spawn(data_dir, "crash", marker="survived")
    theirs = report(child)
    victims = [psutil.Process(child.pid), *server_processes(data_dir)]
    assert {p.name() for p in victims} >= {"redis-server", "postgres"}
    for proc in victims:
        proc.kill()
    child.wait(timeout=10)
    assert wait_dead(victims)
    old_redis_socket, old_pg_socket = redis_socket(str(theirs["redis_url"])), pg_socket(str(theirs["database_url"]))
    assert old_redis_socket.exists() and old_pg_socket.exists()  # a crash leaves its sockets behind
    with EmbeddedServers(data_dir) as servers:
        assert servers.started is True
        assert redis_identity(servers.redis_url) != theirs["redis_pid"]
        assert pg_identity(servers.database_url) != theirs["pg_started"]
        conn = redis.Redis.from_url(servers.redis_url)
        assert conn.get("marker") == b"survived"  # data kept, only the processes replaced
        conn.close()
        with psycopg.connect(servers.database_url) as pg:
            assert pg.execute("SELECT v FROM marker").fetchall() == [("survived",)]
        assert servers.users() == [os.getpid()]
    assert_all_gone(data_dir, servers.redis_url, servers.database_url)


def test_processes_starting_together_share_one_pair_of_servers(data_dir: Path, spawn: Spawn) -> None:
    children = [spawn(data_dir, "hold") for _ in range(3)]
    reports = [report(child) for child in children]
    assert len({(r["redis_pid"], r["pg_started"]) for r in reports}) == 1
    assert sorted(r["started"] for r in reports) == [False, False, True]
    for child in children:
        assert child.stdin is not None
        child.stdin.write("done\n")
        child.stdin.flush()
    assert [child.wait(timeout=30) for child in children] == [0, 0, 0]
    assert_all_gone(data_dir, str(reports[0]["redis_url"]), str(reports[0]["database_url"]))


def test_resolve_embedded_fills_both_urls(data_dir: Path) -> None:
    settings = Settings(data_dir=str(data_dir), refresh=2.5)
    resolved, servers = resolve(settings)
    assert servers is not None
    try:
        assert resolved.redis_url == servers.redis_url
        assert resolved.database_url == servers.database_url
        assert resolved.refresh == 2.5 and resolved.data_dir == str(data_dir)
        assert settings.redis_url is None  # the input is not mutated
        with psycopg.connect(resolved.database_url) as pg:
            assert pg.execute("SELECT current_database()").fetchone() == ("jobtui",)
    finally:
        servers.stop()
    assert_all_gone(data_dir, resolved.redis_url, resolved.database_url)


def test_resolve_with_urls_configured_starts_nothing(data_dir: Path) -> None:
    settings = Settings(redis_url="redis://127.0.0.1:1/0", database_url="postgresql://x@127.0.0.1:1/x",
                        data_dir=str(data_dir))
    resolved, servers = resolve(settings)
    assert servers is None
    assert resolved is settings
    assert list(data_dir.iterdir()) == []
    assert server_processes(data_dir) == []


@pytest.mark.parametrize("field", ["redis_url", "database_url"])
def test_resolve_with_one_url_is_a_config_error(data_dir: Path, field: str) -> None:
    url = {"redis_url": "redis://127.0.0.1:1/0", "database_url": "postgresql://x@127.0.0.1:1/x"}[field]
    settings = Settings(data_dir=str(data_dir), **{field: url})
    with pytest.raises(ConfigError, match="set both JOBENGINE_REDIS_URL and JOBENGINE_DATABASE_URL"):
        resolve(settings)
    assert list(data_dir.iterdir()) == []


def test_default_data_dir(monkeypatch: pytest.MonkeyPatch, data_dir: Path) -> None:
    monkeypatch.delenv("JOBENGINE_DATA_DIR", raising=False)
    if os.geteuid() == 0:
        assert default_data_dir() == ROOT_DATA_DIR
    else:
        assert default_data_dir().name == "jobtui"
        assert str(default_data_dir()).startswith(str(Path.home()))
    monkeypatch.setenv("JOBENGINE_DATA_DIR", str(data_dir / "elsewhere"))
    assert default_data_dir() == data_dir / "elsewhere"
    assert EmbeddedServers().data_dir == data_dir / "elsewhere"


def test_postgres_failure_is_one_line_unavailable_error_and_stops_redis(data_dir: Path) -> None:
    pgdata = data_dir / "postgres"
    pgdata.mkdir()
    (pgdata / "PG_VERSION").write_text("9\n")  # not a cluster this PostgreSQL can run
    servers = EmbeddedServers(data_dir)
    with pytest.raises(UnavailableError) as caught:
        servers.start()
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"embedded PostgreSQL failed to start in {pgdata}: ")
    assert "JOBENGINE_DATABASE_URL" in message
    assert not servers.running and servers.users() == []
    assert wait_dead(server_processes(data_dir))  # the Redis it started was stopped again
    assert not (data_dir / "redis" / "redis.sock").exists()


def test_busy_lock_is_an_unavailable_error(data_dir: Path) -> None:
    with open(data_dir / ".lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(UnavailableError, match="another process held"):
            EmbeddedServers(data_dir, lock_timeout=0.3).start()
    assert server_processes(data_dir) == []

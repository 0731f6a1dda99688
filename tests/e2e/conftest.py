"""End-to-end fixtures: a PRIVATE redis-server on a free port (the test may kill what uses it),
the shared PostgreSQL with a scratch database (tests/conftest.py's `database_url`), and worker
processes started as an operator would (`python -m jobtui.cli --config ... worker`)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

from jobengine import Engine, Settings, keys
from jobengine.history.writer import HistoryWriter

ROOT = Path(__file__).resolve().parents[2]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under pytest-xdist (`-n`, `--dist loadgroup`), the end-to-end tests run one after another
    in one process: each starts servers and worker processes and measures rates and recovery
    times, which two of them at once on a small machine would distort."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.xdist_group("e2e"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RedisServer:
    port: int
    process: subprocess.Popen[bytes]
    host: str = "127.0.0.1"
    command: list[str] = field(default_factory=list)

    def url(self, host: str | None = None) -> str:
        return f"redis://{host or self.host}:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url())

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def restart_empty(self, down: float, first: Callable[[redis.Redis], object] | None = None) -> None:
        """SHUTDOWN NOSAVE (every key gone), `down` seconds without a server, then an empty one on
        the same port, as after a crash of a Redis without persistence; `first` runs on it as
        soon as it answers (before the workers' reconnect back-off has let them back)."""
        with contextlib.suppress(redis.ConnectionError):
            self.client().shutdown(nosave=True)
        self.process.wait(10)
        time.sleep(down)
        self.process = subprocess.Popen(self.command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = _wait_until_up(self, every=0.005)
        if first is not None:
            first(client)


def _wait_until_up(server: RedisServer, every: float = 0.05) -> redis.Redis:
    client = server.client()
    for _ in range(int(5 / every)):
        try:
            if client.ping():
                return client
        except redis.ConnectionError:
            time.sleep(every)
    server.stop()
    raise RuntimeError("private redis-server did not start")


def start_redis(binds: Sequence[str] = ()) -> RedisServer:
    """redis-server on a free port, no persistence, bound to loopback and `binds`."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="jobtui-e2e-redis-")
    command = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", *binds, "--save", "",
               "--appendonly", "no", "--dir", workdir, "--protected-mode", "no"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = RedisServer(port, process, command=command)
    _wait_until_up(server)
    return server


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    server = start_redis()
    yield server
    server.stop()


@dataclass
class Cluster:
    """Worker processes on one configuration file; each worker's log is kept for the asserts."""

    config: Path
    logs: Path
    prefix: list[str] = field(default_factory=list)  # e.g. ["ip", "netns", "exec", "host-a"]
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    count: int = 0

    def start(self, name: str | None = None, prefix: Sequence[str] | None = None) -> str:
        self.count += 1
        name = name or f"w{self.count}-{os.urandom(3).hex()}"
        env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
        log = open(self.logs / f"{name}.log", "wb")  # noqa: SIM115 - kept open for the process
        cmd = [*(self.prefix if prefix is None else prefix), sys.executable, "-m", "jobtui.cli", "--config",
               str(self.config), "worker", "--name", name]
        self.procs[name] = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        return name

    def kill(self, name: str, sig: signal.Signals = signal.SIGKILL) -> float:
        """Send `sig` to the worker; the wall-clock time it was sent."""
        at = time.time()
        self.procs[name].send_signal(sig)
        if sig == signal.SIGKILL:
            self.procs[name].wait(5)
        return at

    def alive(self) -> list[str]:
        return [n for n, p in self.procs.items() if p.poll() is None]

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")

    def stop_all(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def write_config(path: Path, redis_url: str, database_url: str, recovery_after: float, worker: str = "") -> Path:
    """Lanes without delays, the worker's recovery window, and `worker` (more `[worker]` lines)."""
    lanes = "\n".join(f"[lanes.{lane}]\ndelay = 0" for lane in ("critical", "high", "normal", "low"))
    path.write_text(f'[redis]\nurl = "{redis_url}"\n[database]\nurl = "{database_url}"\n'
                    f"[worker]\nrecovery_after = {recovery_after}\n{worker}\n{lanes}\n", encoding="utf-8")
    return path


@contextlib.contextmanager
def running_cluster(redis_url: str, database_url: str, tmp_path: Path, recovery_after: float,
                    worker: str = "") -> Iterator[tuple[Cluster, Engine]]:
    """A configuration file (see `write_config`), an engine on it and a `Cluster` of worker
    processes, all stopped afterwards."""
    config = write_config(tmp_path / "jobtui.toml", redis_url, database_url, recovery_after, worker)
    engine = Engine(Settings.load(config, env={}))
    cluster = Cluster(config, tmp_path)
    try:
        yield cluster, engine
    finally:
        cluster.stop_all()
        engine.close()


def wait_for(check, timeout: float, every: float = 0.1, what: str = "condition") -> float:  # type: ignore[no-untyped-def]
    """Poll `check` until it is true; the seconds it took."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)
    return time.monotonic() - start


def settle_history(engine: Engine, timeout: float = 60) -> None:
    """Write every event to PostgreSQL, the ones a killed worker's history writer had read but not
    written included (claimed once idle 2 s; the workers' own writers claim them after 30 s)."""
    writer = HistoryWriter(engine.connection, engine.store, claim_idle=2.0)

    def settled() -> bool:
        writer.drain()
        return not engine.connection.xlen(keys.EVENTS_STREAM)

    try:
        wait_for(settled, timeout, 0.5, what="every history event to reach PostgreSQL")
    finally:
        writer.stop(flush=False)

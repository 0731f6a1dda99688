"""Private servers for tests that stop, restart or flush them: a redis-server on a free port and a
PostgreSQL cluster (initdb + pg_ctl on a data dir of the test's own, run as `postgres` when the
tests run as root). Import the fixture into a test module: `from tests.e2e.private_servers
import private_pg  # noqa: F401` (`private_redis` is tests/conftest.py's).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[4]))
    exe = found[-1] if found else shutil.which("pg_ctl")
    return Path(exe).parent if exe else None


class PrivatePostgres:
    """A throw-away PostgreSQL cluster (trust auth, fsync off) on 127.0.0.1 and a free port."""

    def __init__(self) -> None:
        bindir = _pg_bin()
        if bindir is None:
            pytest.skip("no PostgreSQL binaries (initdb, pg_ctl) on this machine")
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="jobtui-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self._as: list[str] = []
        if os.geteuid() == 0:  # initdb refuses root: run the cluster as the postgres user
            user = pwd.getpwnam("postgres")
            os.chown(self.root, user.pw_uid, user.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]

    def _run(self, tool: str, *args: str) -> None:
        result = subprocess.run([*self._as, str(self.bindir / tool), *args], capture_output=True, text=True,
                                timeout=120, cwd=self.root)
        if result.returncode:
            raise RuntimeError(f"{tool} failed: {result.stderr or result.stdout}")

    def init(self) -> PrivatePostgres:
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")
        return self

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "log"), "-o", options, "-w", "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def cleanup(self) -> None:
        with contextlib.suppress(RuntimeError):  # already stopped
            self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def private_pg() -> Iterator[PrivatePostgres]:
    """A running private PostgreSQL (`.url`, `.stop()`, `.start()`), removed afterwards."""
    pg = PrivatePostgres().init()
    try:
        pg.start()
        yield pg
    finally:
        pg.cleanup()

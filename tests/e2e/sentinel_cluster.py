"""A Redis primary, a replica and three sentinels of a test's own, on free ports of 127.0.0.1.

Generated config files in a tmp dir; quorum 2, down-after 1000 ms, failover-timeout 3000 ms.
Redis servers require REDIS_PASSWORD, sentinels SENTINEL_PASSWORD; the replica replicates as the
ACL user `repl`, which `cut_replication()` disables (a network partition between the two, while
every client still reaches the primary).
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import redis

from tests.e2e.private_servers import free_port

SERVICE = "mymaster"
REDIS_PASSWORD = "redis-secret"
SENTINEL_PASSWORD = "sentinel-secret"
_REPL_PASSWORD = "repl-secret"


def _wait(check: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():  # type: ignore[operator]
                return
        except redis.RedisError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"sentinel cluster: {what} not within {timeout:.0f} s")
        time.sleep(0.05)


class SentinelCluster:
    """`start()`, then `url(db)`, `primary`/`replica` ports, `kill_primary()`, `stop()`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.exe = shutil.which("redis-server") or "redis-server"
        self.primary, self.replica = free_port(), free_port()
        self.sentinels = [free_port() for _ in range(3)]
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    def _server_conf(self, port: int, replica_of: int | None) -> str:
        lines = [f"port {port}", "bind 127.0.0.1", f"dir {self.root}", "save ''", "appendonly no",
                 f"dbfilename dump-{port}.rdb", f"requirepass {REDIS_PASSWORD}", "masteruser repl",
                 f"masterauth {_REPL_PASSWORD}", f"user repl on >{_REPL_PASSWORD} +psync +replconf +ping",
                 f"logfile {self.root}/redis-{port}.log"]
        if replica_of is not None:
            lines.append(f"replicaof 127.0.0.1 {replica_of}")
        return "\n".join(lines) + "\n"

    def _sentinel_conf(self, port: int) -> str:
        return "\n".join([
            f"port {port}", "bind 127.0.0.1", f"dir {self.root}", f"requirepass {SENTINEL_PASSWORD}",
            f"logfile {self.root}/sentinel-{port}.log",
            f"sentinel monitor {SERVICE} 127.0.0.1 {self.primary} 2",
            f"sentinel auth-pass {SERVICE} {REDIS_PASSWORD}",
            f"sentinel down-after-milliseconds {SERVICE} 1000",
            f"sentinel failover-timeout {SERVICE} 3000",
            f"sentinel parallel-syncs {SERVICE} 1",
        ]) + "\n"

    def _spawn(self, port: int, conf: str, *extra: str) -> None:
        path = self.root / f"{'sentinel' if extra else 'redis'}-{port}.conf"
        path.write_text(conf)
        self.procs[port] = subprocess.Popen([self.exe, str(path), *extra], stdout=subprocess.DEVNULL,
                                            stderr=subprocess.DEVNULL)

    def client(self, port: int, password: str = REDIS_PASSWORD) -> redis.Redis:
        return redis.Redis(port=port, password=password, socket_timeout=2, socket_connect_timeout=2)

    def start(self) -> SentinelCluster:
        self._spawn(self.primary, self._server_conf(self.primary, None))
        self._spawn(self.replica, self._server_conf(self.replica, self.primary))
        _wait(lambda: self.client(self.replica).info("replication")["master_link_status"] == "up", 15,
              "replica in sync")
        for port in self.sentinels:
            self._spawn(port, self._sentinel_conf(port), "--sentinel")

        def settled() -> bool:  # every sentinel sees the other two and the replica
            for port in self.sentinels:
                state: Any = self.client(port, SENTINEL_PASSWORD).sentinel_master(SERVICE)
                if state["num-other-sentinels"] < 2 or state["num-slaves"] < 1:
                    return False
            return True

        _wait(settled, 30, "sentinels know each other and the replica")
        return self

    def url(self, db: int = 0, query: str = "") -> str:
        hosts = ",".join(f"127.0.0.1:{p}" for p in self.sentinels)
        return (f"redis+sentinel://:{REDIS_PASSWORD}@{hosts}/{SERVICE}/{db}"
                f"?sentinel_password={SENTINEL_PASSWORD}{'&' + query if query else ''}")

    def master_port(self) -> int:
        """The master the sentinels report now (asked of the first that answers)."""
        for port in self.sentinels:
            with contextlib.suppress(redis.RedisError):
                addr: Any = self.client(port, SENTINEL_PASSWORD).sentinel_get_master_addr_by_name(SERVICE)
                return int(addr[1])
        raise RuntimeError("no sentinel answers")

    def cut_replication(self) -> None:
        """The replica loses its link and cannot get it back (its user is disabled on the primary)."""
        primary = self.client(self.primary)
        primary.execute_command("ACL", "SETUSER", "repl", "off")
        primary.client_kill_filter(_type="replica")
        _wait(lambda: self.client(self.replica).info("replication")["master_link_status"] == "down", 5,
              "replica link down")

    def kill_primary(self) -> None:
        self.procs[self.primary].send_signal(signal.SIGKILL)
        self.procs[self.primary].wait(timeout=10)

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()

"""CPU use of the processes a benchmark drives, read from /proc (Linux; zeros elsewhere).

`CpuSampler` reads /proc/<pid>/stat (utime + stime) of named groups of processes every 0.1 s
while a run lasts: the worker processes, the Redis server, and the PostgreSQL backends serving
the benchmark's database (found in pg_stat_activity, so a shared server's other databases do not
count). A process first seen after the start counts from zero (it started during the run).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable

import psycopg

TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def proc_cpu(pid: int) -> float | None:
    """CPU seconds (user + system, all threads) of a live process; None when gone or unreadable."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime (fields 14 and 15 of stat)


def machine_cpu() -> float:
    """CPU seconds the whole machine has been busy so far (every process); 0 without /proc/stat."""
    try:
        with open("/proc/stat") as stat:
            ticks = [int(v) for v in stat.readline().split()[1:]]
    except OSError:
        return 0.0
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
    return (sum(ticks[:8]) - idle) / TICK


def pg_backends(database_url: str) -> Callable[[], list[int]]:
    """A function listing the pids of the PostgreSQL backends connected to the URL's database
    (other than the one asking)."""
    conn = psycopg.connect(database_url, autocommit=True)

    def pids() -> list[int]:
        try:
            rows = conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                                "AND pid <> pg_backend_pid()").fetchall()
        except psycopg.Error:
            return []
        return [int(r[0]) for r in rows]

    pids.close = conn.close  # type: ignore[attr-defined]
    return pids


class CpuSampler:
    """Samples groups of processes (`name -> function returning pids`) until `stop()`, which
    returns CPU seconds per group spent between `start()` and `stop()`; `busy` is the machine's."""

    def __init__(self, groups: dict[str, Callable[[], Iterable[int]]], every: float = 0.1) -> None:
        self.groups, self.every = groups, every
        self._first: dict[tuple[str, int], float] = {}
        self._last: dict[tuple[str, int], float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="cpu-sampler")
        self.busy = 0.0
        self.seconds = 0.0

    def _sample(self, initial: bool) -> None:
        for name, pids in self.groups.items():
            for pid in pids():
                value = proc_cpu(pid)
                if value is None:
                    continue
                key = (name, pid)
                if key not in self._first:
                    self._first[key] = value if initial else 0.0
                self._last[key] = value

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self._sample(initial=False)

    def start(self) -> CpuSampler:
        self._sample(initial=True)
        self._busy0, self._t0 = machine_cpu(), time.perf_counter()
        self._thread.start()
        return self

    def stop(self) -> dict[str, float]:
        self._sample(initial=False)
        self._stop.set()
        self._thread.join(timeout=5)
        self.busy, self.seconds = machine_cpu() - self._busy0, time.perf_counter() - self._t0
        used = dict.fromkeys(self.groups, 0.0)
        for (name, pid), last in self._last.items():
            used[name] += last - self._first[(name, pid)]
        return used

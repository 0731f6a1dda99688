"""Pruning: finished history and its logs out of PostgreSQL, finished and failed jobs out of RQ.

    jobtui prune --older-than 7d [--keep-failed 30d] [--dry-run]
    jobtui worker --prune-every 1h        # one worker of the deployment at a time (Redis lock)

PostgreSQL: jobs that finished (or were canceled or stopped) before the cutoff with their
`job_logs`, failed jobs and `failed_jobs` rows before the keep-failed cutoff; in batches, each
its own short transaction (`PostgresStore.prune`), never a job in flight. Redis: RQ's finished
and failed registries lose the entries whose job hash already expired, and the jobs that ended
before the cutoffs (hash, result and registry entry); canceled registries lose jobs canceled
before the cutoff.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import islice
from typing import Any

import redis
from rq.job import Job
from rq.utils import utcparse

from jobengine import keys
from jobengine import validate as v
from jobengine.cache import TAG_STATS, TaggedCache
from jobengine.config import Settings
from jobengine.errors import StoreUnavailable
from jobengine.monitor import deployment_queues
from jobengine.store.postgres import PostgresStore

log = logging.getLogger("jobengine.prune")

DEFAULT_OLDER_THAN = 7 * 86400.0
DEFAULT_KEEP_FAILED = 30 * 86400.0


def parse_duration(text: str) -> float:
    """Seconds in '90s', '15m', '12h', '7d' or '2w' (at most 100 years); ValidationError (a
    ValueError, one line) for anything else."""
    return v.parse_duration(text, "")


def describe_duration(seconds: float) -> str:
    for unit, size in (("w", 7 * 86400), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


@dataclass(frozen=True)
class PruneReport:
    """What a prune removed (or, dry, would remove)."""

    dry_run: bool
    cutoff: datetime
    failed_cutoff: datetime
    jobs: int = 0
    job_logs: int = 0
    failed_jobs: int = 0
    rq_finished: int = 0
    rq_failed: int = 0
    rq_canceled: int = 0
    rq_dangling: int = 0

    def lines(self) -> list[str]:
        verb = "would remove" if self.dry_run else "removed"
        return [
            f"PostgreSQL: {verb} {self.jobs:,} jobs finished before {self.cutoff:%Y-%m-%d %H:%M} UTC "
            f"(failed ones before {self.failed_cutoff:%Y-%m-%d %H:%M} UTC), {self.job_logs:,} job log rows "
            f"and {self.failed_jobs:,} failed-job rows.",
            f"Redis: {verb} {self.rq_finished:,} finished, {self.rq_failed:,} failed and {self.rq_canceled:,} "
            f"canceled RQ jobs, and {self.rq_dangling:,} registry entries whose job had expired.",
        ]


def _batched(items: Iterable[Any], size: int) -> Iterable[list[Any]]:
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class Pruner:
    """Runs one prune over PostgreSQL and Redis."""

    def __init__(self, connection: redis.Redis, store: PostgresStore, settings: Settings, *,
                 guard: Callable[[str], None] | None = None, audit: Callable[[str, str], None] | None = None) -> None:
        self.connection = connection
        self.store = store
        self.settings = settings
        self.guard = guard or self._guard
        self.audit = audit or self._audit

    def _guard(self, action: str) -> None:
        from jobengine.operations import check_permitted

        check_permitted(action, self.settings.read_only, self.settings.permissions)

    def _audit(self, action: str, detail: str) -> None:
        from jobengine.operations import actor

        try:
            self.store.record_audit(action, None, *actor(), detail)
        except StoreUnavailable as exc:
            log.warning("audit row for %s not written: %s", action, exc)

    def run(self, older_than: float = DEFAULT_OLDER_THAN, keep_failed: float | None = None, *,
            dry_run: bool = False, batch_size: int = 5000,
            progress: Callable[[int], None] | None = None) -> PruneReport:
        """Prune history older than `older_than` seconds (failures: `keep_failed`, default the same).

        Refused when read-only (a dry run is a read); audited as one `prune` row (what and how many)."""
        v.number(older_than, "older_than", 0, v.MAX_AGE, lo_open=True)
        if keep_failed is not None:
            v.number(keep_failed, "keep_failed", 0, v.MAX_AGE, lo_open=True)
        v.integer(batch_size, "batch_size", 1, 1_000_000)
        if not dry_run:
            self.guard("prune")
        now = datetime.now(UTC)
        cutoff = now - timedelta(seconds=older_than)
        failed_cutoff = now - timedelta(seconds=keep_failed if keep_failed is not None else older_than)
        pg = self.store.prune(cutoff, failed_cutoff, batch_size=batch_size, dry_run=dry_run, progress=progress)
        rq = self.trim_rq(cutoff.timestamp(), failed_cutoff.timestamp(), dry_run=dry_run)
        report = PruneReport(dry_run, cutoff, failed_cutoff, pg["jobs"], pg["job_logs"], pg["failed_jobs"], **rq)
        if not dry_run:
            with contextlib.suppress(redis.RedisError):
                TaggedCache(self.connection).flush_tag(TAG_STATS)  # history counts changed
            keep = describe_duration(keep_failed if keep_failed is not None else older_than)
            self.audit("prune", f"older than {describe_duration(older_than)} (failed {keep}): "
                                f"{report.jobs} jobs, {report.job_logs} log rows, {report.failed_jobs} failed rows; "
                                f"Redis {report.rq_finished} finished, {report.rq_failed} failed, "
                                f"{report.rq_canceled} canceled, {report.rq_dangling} dangling")
        return report

    def count(self, older_than: float, keep_failed: float | None = None) -> int:
        """Rows a prune would delete from PostgreSQL (for a progress bar's total)."""
        v.number(older_than, "older_than", 0, v.MAX_AGE, lo_open=True)
        if keep_failed is not None:
            v.number(keep_failed, "keep_failed", 0, v.MAX_AGE, lo_open=True)
        now = datetime.now(UTC)
        keep = keep_failed if keep_failed is not None else older_than
        report = self.store.prune(now - timedelta(seconds=older_than), now - timedelta(seconds=keep), dry_run=True)
        return sum(report.values())

    # ---- Redis -------------------------------------------------------------------------------
    def queues(self) -> list[str]:
        return deployment_queues(self.connection, self.settings)

    def trim_rq(self, cutoff: float, failed_cutoff: float, *, dry_run: bool = False) -> dict[str, int]:
        totals = {"rq_finished": 0, "rq_failed": 0, "rq_canceled": 0, "rq_dangling": 0}
        for q in self.queues():
            for kind, key, limit in (("rq_finished", keys.rq_finished_key(q), cutoff),
                                     ("rq_failed", keys.rq_failed_key(q), failed_cutoff)):
                removed, dangling = self._trim_expiring(key, limit, dry_run)
                totals[kind] += removed
                totals["rq_dangling"] += dangling
            removed, dangling = self._trim_canceled(keys.rq_canceled_key(q), cutoff, dry_run)
            totals["rq_canceled"] += removed
            totals["rq_dangling"] += dangling
        return totals

    def _trim_expiring(self, key: str, cutoff: float, dry_run: bool) -> tuple[int, int]:
        """A registry scored by expiry time: drop expired entries, delete jobs ended before cutoff."""
        now = time.time()
        dangling = int(self.connection.zcount(key, 0, now))
        if dangling and not dry_run:
            self.connection.zremrangebyscore(key, 0, now)
        removed = 0
        members = (m for m, _ in self.connection.zscan_iter(key, count=1000))
        for chunk in _batched(members, 1000):
            old, gone = self._classify(chunk, cutoff)
            removed += len(old)
            dangling += len(gone)
            if not dry_run:
                self._delete(key, old, gone)
        return removed, dangling

    def _trim_canceled(self, key: str, cutoff: float, dry_run: bool) -> tuple[int, int]:
        """The canceled registry is scored by cancel time: delete the jobs canceled before cutoff."""
        removed = dangling = 0
        for chunk in _batched(iter(self.connection.zrangebyscore(key, 0, cutoff)), 1000):
            with self.connection.pipeline(transaction=False) as pipe:
                for job_id in chunk:
                    pipe.exists(keys.rq_job_key(_text(job_id)))
                alive = pipe.execute()
            old = [_text(j) for j, ok in zip(chunk, alive, strict=True) if ok]
            gone = [_text(j) for j, ok in zip(chunk, alive, strict=True) if not ok]
            removed += len(old)
            dangling += len(gone)
            if not dry_run:
                self._delete(key, old, gone)
        return removed, dangling

    def _classify(self, chunk: list[bytes], cutoff: float) -> tuple[list[str], list[str]]:
        """(ids of jobs that ended before cutoff, ids whose job hash is gone)."""
        ids = [_text(m) for m in chunk]
        with self.connection.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.hmget(keys.rq_job_key(job_id), "ended_at", "status")
            fields = pipe.execute()
        old, gone = [], []
        for job_id, (ended_at, status) in zip(ids, fields, strict=True):
            if status is None:
                gone.append(job_id)
            elif ended_at and utcparse(_text(ended_at)).timestamp() < cutoff:
                old.append(job_id)
        return old, gone

    def _delete(self, registry_key: str, old: list[str], gone: list[str]) -> None:
        if gone:
            self.connection.zrem(registry_key, *gone)
        if not old:
            return
        with self.connection.pipeline() as pipe:
            for job in Job.fetch_many(old, connection=self.connection):
                if job is not None:
                    job.delete(pipeline=pipe, remove_from_queue=False)
            pipe.zrem(registry_key, *old)
            pipe.execute()


@contextlib.contextmanager
def exclusive(connection: redis.Redis, timeout: float, wait: float = 0.0) -> Iterator[bool]:
    """Hold the deployment's prune lock (True), or learn another process holds it (False)."""
    lock = connection.lock(keys.PRUNE_LOCK, timeout=timeout, blocking=wait > 0, blocking_timeout=wait or None)
    mine = bool(lock.acquire())
    try:
        yield mine
    finally:
        if mine:
            with contextlib.suppress(redis.exceptions.LockError):
                lock.release()


class PruneTimer:
    """`jobtui worker --prune-every`: prune periodically from a daemon thread; a Redis lock lets
    one process of the deployment prune at a time (the others skip that round)."""

    def __init__(self, pruner: Pruner, every: float, older_than: float = DEFAULT_OLDER_THAN,
                 keep_failed: float | None = DEFAULT_KEEP_FAILED) -> None:
        v.number(every, "prune every", 0, v.MAX_AGE, lo_open=True)
        self.pruner = pruner
        self.every = every
        self.older_than = older_than
        self.keep_failed = keep_failed
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> PruneReport | None:
        """Prune now unless another process holds the lock (then None)."""
        with exclusive(self.pruner.connection, max(300.0, self.every)) as mine:
            if not mine:
                log.debug("prune skipped: another process is pruning")
                return None
            report = self.pruner.run(self.older_than, self.keep_failed)
        for line in report.lines():
            log.info("prune: %s", line)
        return report

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="prune-timer", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self.run_once()
            except Exception:  # keep the timer alive; the next round tries again
                log.exception("prune failed")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

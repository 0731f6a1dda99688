"""Operator actions on jobs: retry and cancel, idempotent, audited with OS user and host.

`guard` is the one gate of every operator action of the engine (dispatch, retry, cancel, limit,
prune, reconcile, ...): read-only refuses them all, `[permissions] allow` all but those listed.
"""

from __future__ import annotations

import getpass
import logging
import socket
from collections.abc import Sequence
from datetime import UTC, datetime

import redis
from rq.command import send_stop_job_command
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job, JobStatus
from rq.registry import CanceledJobRegistry, FailedJobRegistry

from jobengine.cache import TAG_SNAPSHOT, TaggedCache, invalidate_job_status
from jobengine.errors import JobNotFound, OperationRefused, StoreUnavailable
from jobengine.history.events import add_event
from jobengine.store.protocol import HistoryStore
from jobengine.types import EventKind

log = logging.getLogger("jobengine.operations")


def actor() -> tuple[str, str]:
    """(OS user, host) recorded with every operator action."""
    try:
        user = getpass.getuser()
    except Exception:  # no passwd entry in some containers
        user = "unknown"
    return user, socket.gethostname()


def check_permitted(action: str, read_only: bool, permissions: Sequence[str] | None) -> None:
    """The one refusal of operator actions: read-only refuses all, `[permissions] allow` the rest."""
    if read_only:
        raise OperationRefused(f"{action} refused: the engine is in read-only mode")
    if permissions is not None and action not in permissions:
        allowed = ", ".join(permissions) or "nothing"
        raise OperationRefused(f"{action} refused: [permissions] allow lists only {allowed}")


class Operations:
    """retry / cancel against RQ's registries, with history events and an audit row."""

    def __init__(self, connection: redis.Redis, store: HistoryStore, *, read_only: bool = False,
                 permissions: Sequence[str] | None = None) -> None:
        self.connection = connection
        self.store = store
        self.read_only = read_only
        self.permissions = None if permissions is None else tuple(permissions)

    def _fetch(self, job_id: str) -> Job:
        try:
            return Job.fetch(job_id, connection=self.connection)
        except NoSuchJobError:
            raise JobNotFound(
                f"job {job_id} is not in Redis (unknown id, or its failure_ttl/result_ttl expired)"
            ) from None

    def guard(self, action: str) -> None:
        """OperationRefused (one line) unless operators may `action` now."""
        check_permitted(action, self.read_only, self.permissions)

    _guard = guard

    def retry(self, job_id: str) -> bool:
        """Put a failed, stopped or canceled job back on its queue; False if it is not in one."""
        self._guard("retry")
        return bool(self._retry([self._fetch(job_id)]))

    def retry_many(self, job_ids: Sequence[str], *, audit: bool = True) -> list[str]:
        """Retry each job as `retry` does (ids no longer in Redis are skipped); their failures leave
        the failed list in one UPDATE. Returns the ids put back on their queues. `audit=False`:
        no audit row per job (a bulk action by filter writes its one row itself)."""
        self._guard("retry")
        found = Job.fetch_many(list(job_ids), connection=self.connection) if job_ids else []
        return self._retry([job for job in found if job is not None], audit=audit)

    def _retry(self, jobs: Sequence[Job], *, audit: bool = True) -> list[str]:
        # Stamped before the first requeue: a worker may run and fail a requeued job again while
        # the others are requeued, and that new failure must stay on the failed list.
        at = datetime.now(UTC)
        done: list[Job] = []
        try:
            for job in jobs:
                # An operator retry is one more attempt (it does not restart the automatic retries).
                runs = (job.number_of_retries or 0) + (1 if job.started_at else 0)
                job.number_of_retries = runs or None
                for registry in (FailedJobRegistry, CanceledJobRegistry):
                    try:
                        registry(job.origin, connection=self.connection).requeue(job)
                    except InvalidJobOperation:
                        continue  # not in this registry (ZREM removed nothing): nothing to do here
                    done.append(job)
                    break
        finally:  # what went back is recorded even if a later job could not be requeued
            self._record(EventKind.REQUEUED, done, "retry", at, audit=audit)
        return [job.id for job in done]

    def cancel(self, job_id: str, *, audit: bool = True) -> bool:
        """Cancel a queued or scheduled job, stop a running one; False if it is already done.
        `audit=False`: no audit row (a bulk action by filter writes its one row itself)."""
        self._guard("cancel")
        job = self._fetch(job_id)
        status = job.get_status(refresh=True)
        if status == JobStatus.STARTED:
            send_stop_job_command(self.connection, job.id)
            if audit:
                self._audit("stop", [job.id])
            return True  # the worker records the `stopped` event (and drops the cached status)
        if status not in (JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.DEFERRED):
            return False
        try:
            job.cancel()
        except InvalidJobOperation:
            return False
        self._record(EventKind.CANCELED, [job], "cancel", datetime.now(UTC), audit=audit)
        return True

    def _record(self, kind: EventKind, jobs: Sequence[Job], action: str, at: datetime, *,
                audit: bool = True) -> None:
        """History events, status-cache drops, (for retries) the failures up to `at` resolved,
        the snapshot flushed and the audit lines of one action on `jobs`: a constant number of
        round trips."""
        if not jobs:
            return
        user, host = actor()
        with self.connection.pipeline(transaction=False) as pipe:
            for job in jobs:
                add_event(pipe, kind, job.id, job.origin, at=at, message=f"{action} by {user}@{host}")
                invalidate_job_status(pipe, job.id)  # after the state change: no stale status survives
            pipe.execute()
        ids = [job.id for job in jobs]
        if kind is EventKind.REQUEUED:  # off the failed list now, not when a writer drains the events
            try:
                self.store.resolve_failures(ids, at)
            except StoreUnavailable as exc:
                log.warning("failures of %s stay listed until PostgreSQL is back: %s", _some(ids), exc)
        TaggedCache(self.connection).flush_tag(TAG_SNAPSHOT)  # the next poll shows the action
        if audit:
            self._audit(action, ids)

    def audit(self, action: str, job_ids: Sequence[str]) -> None:
        """An audit row per job for one action (a PostgreSQL outage only logs it)."""
        self._audit(action, job_ids)

    def _audit(self, action: str, job_ids: Sequence[str]) -> None:
        user, host = actor()
        try:
            self.store.record_audits(action, job_ids, user, host)
        except StoreUnavailable as exc:
            # The job log still names the actor (the event's message reaches PostgreSQL later).
            log.warning("audit rows for %s of %s not written: %s", action, _some(job_ids), exc)


def _some(job_ids: Sequence[str]) -> str:
    """Job ids for a log line: all of a few, the first ones and a count of many."""
    return ", ".join(job_ids) if len(job_ids) <= 3 else f"{', '.join(job_ids[:3])} and {len(job_ids) - 3} more"

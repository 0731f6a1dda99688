"""Operator actions on jobs: retry and cancel, idempotent, audited with OS user and host."""

from __future__ import annotations

import getpass
import logging
import socket
from datetime import UTC, datetime

import redis
from rq.command import send_stop_job_command
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job, JobStatus
from rq.registry import CanceledJobRegistry, FailedJobRegistry

from jobengine.cache import TAG_SNAPSHOT, TaggedCache, invalidate_job_status
from jobengine.errors import JobNotFound, OperationRefused, StoreUnavailable
from jobengine.history import add_event
from jobengine.store.postgres import PostgresStore
from jobengine.types import EventKind

log = logging.getLogger("jobengine.operations")


def actor() -> tuple[str, str]:
    """(OS user, host) recorded with every operator action."""
    try:
        user = getpass.getuser()
    except Exception:  # no passwd entry in some containers
        user = "unknown"
    return user, socket.gethostname()


class Operations:
    """retry / cancel against RQ's registries, with history events and an audit row."""

    def __init__(self, connection: redis.Redis, store: PostgresStore, *, read_only: bool = False) -> None:
        self.connection = connection
        self.store = store
        self.read_only = read_only

    def _fetch(self, job_id: str) -> Job:
        try:
            return Job.fetch(job_id, connection=self.connection)
        except NoSuchJobError:
            raise JobNotFound(
                f"job {job_id} is not in Redis (unknown id, or its failure_ttl/result_ttl expired)"
            ) from None

    def _guard(self, action: str) -> None:
        if self.read_only:
            raise OperationRefused(f"{action} refused: the engine is in read-only mode")

    def retry(self, job_id: str) -> bool:
        """Put a failed, stopped or canceled job back on its queue; False if it is not in one."""
        self._guard("retry")
        job = self._fetch(job_id)
        # An operator retry is one more attempt (it does not restart the automatic retries).
        runs = (job.number_of_retries or 0) + (1 if job.started_at else 0)
        job.number_of_retries = runs or None
        for registry in (FailedJobRegistry, CanceledJobRegistry):
            try:
                registry(job.origin, connection=self.connection).requeue(job)
            except InvalidJobOperation:
                continue  # not in this registry (ZREM removed nothing): nothing to do here
            self._record(EventKind.REQUEUED, job, "retry")
            return True
        return False

    def cancel(self, job_id: str) -> bool:
        """Cancel a queued or scheduled job, stop a running one; False if it is already done."""
        self._guard("cancel")
        job = self._fetch(job_id)
        status = job.get_status(refresh=True)
        if status == JobStatus.STARTED:
            send_stop_job_command(self.connection, job.id)
            self._audit("stop", job.id)
            return True  # the worker records the `stopped` event (and drops the cached status)
        if status not in (JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.DEFERRED):
            return False
        try:
            job.cancel()
        except InvalidJobOperation:
            return False
        self._record(EventKind.CANCELED, job, "cancel")
        return True

    def _record(self, kind: EventKind, job: Job, action: str) -> None:
        user, host = actor()
        at = datetime.now(UTC)
        with self.connection.pipeline(transaction=False) as pipe:
            add_event(pipe, kind, job.id, job.origin, at=at, message=f"{action} by {user}@{host}")
            invalidate_job_status(pipe, job.id)  # after the state change: no stale status survives
            pipe.execute()
        if kind is EventKind.REQUEUED:  # off the failed list now, not when a writer drains the event
            try:
                self.store.resolve_failures([job.id], at)
            except StoreUnavailable as exc:
                log.warning("failures of %s stay listed until PostgreSQL is back: %s", job.id, exc)
        TaggedCache(self.connection).flush_tag(TAG_SNAPSHOT)  # the next poll shows the action
        self._audit(action, job.id)

    def _audit(self, action: str, job_id: str) -> None:
        user, host = actor()
        try:
            self.store.record_audit(action, job_id, user, host)
        except StoreUnavailable as exc:
            # The job log still names the actor (the event's message reaches PostgreSQL later).
            log.warning("audit row for %s of %s not written: %s", action, job_id, exc)

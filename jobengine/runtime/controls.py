"""The fast worker's commands and signals (a mixin of `FastWorker`): RQ's worker commands over
pub/sub (stop-job and stop-execution also reach a job held but not started yet), a warm stop on
the first SIGINT/SIGTERM and a cold one on the second, a job's timeout as RQ's death penalty
without its per-job signal.signal calls, and a stop-job request raising `JobStopped` in the
running job.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections import deque
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

from rq.command import handle_command, parse_payload
from rq.timeouts import JobTimeoutException
from rq.utils import now

from jobengine.runtime.jobinfo import STOP_SIGNAL, JobStopped
from jobengine.runtime.outcomes import Held

if TYPE_CHECKING:
    from rq.worker import BaseWorker

log = logging.getLogger("jobengine.worker")


class Controls:
    """Worker commands and signal handlers (a mixin of `FastWorker`)."""

    name: str
    pubsub: Any
    pubsub_thread: Any
    _lock: threading.Lock
    _running: Held | None
    _in_hand: deque[Held]
    _stop_ids: set[str]
    _stopped_job_id: str | None
    _in_perform: bool
    _timeout: float
    _stop_requested: bool
    _shutdown_requested_date: datetime | None

    def handle_payload(self, message: dict[str, Any]) -> None:
        """RQ's worker commands; stop-job and stop-execution stop a running or held job."""
        payload = parse_payload(message)
        if payload.get("command") not in ("stop-job", "stop-execution"):
            handle_command(cast("BaseWorker", self), payload)
            return
        job_id, exec_id = payload.get("job_id"), payload.get("execution_id")
        with self._lock:
            item = self._running
            if item is not None and (item.job.id == job_id if exec_id is None else item.exec_id == exec_id):
                self._stopped_job_id = item.job.id
                os.kill(os.getpid(), STOP_SIGNAL)  # the main thread raises JobStopped inside the job
            elif any(h.job.id == job_id for h in self._in_hand):
                self._stop_ids.add(str(job_id))
            else:
                log.warning("worker %s is not running job %s; stop ignored", self.name, job_id)

    def _install_signal_handlers(self) -> None:
        signal.signal(signal.SIGINT, self.request_stop)
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(STOP_SIGNAL, self._stop_current_job)
        signal.signal(signal.SIGALRM, self._job_timed_out)

    def _job_timed_out(self, signum: int, frame: Any) -> None:
        """RQ's UnixSignalDeathPenalty, minus its two signal.signal calls per job."""
        if self._in_perform:
            raise JobTimeoutException(f"Task exceeded maximum timeout value ({self._timeout} seconds)")

    def request_stop(self, signum: int, frame: Any) -> None:
        """First signal: finish the running job, put the held ones back, exit. Second: cold stop."""
        if self._stop_requested:
            if self._shutdown_requested_date and now() - self._shutdown_requested_date < timedelta(seconds=1):
                return
            log.warning("worker %s: cold shut down", self.name)
            raise SystemExit(1)
        self._stop_requested, self._shutdown_requested_date = True, now()

    def _stop_current_job(self, signum: int, frame: Any) -> None:
        item = self._running
        if self._in_perform and item is not None and self._stopped_job_id == item.job.id:
            raise JobStopped(f"job {item.job.id} stopped on request")

    def unsubscribe(self) -> None:
        """Stop the command listener: flag first, then UNSUBSCRIBE, whose reply wakes the thread."""
        if self.pubsub_thread:
            self.pubsub_thread.stop()
            self.pubsub.unsubscribe()
            self.pubsub_thread.join(timeout=1)
            self.pubsub.close()

"""Every Redis key jobengine reads or writes, in one place.

RQ's keys (`rq:*`) are RQ's business: the helpers below build them from RQ's own prefixes and
templates (so `RQ_KEY_PREFIX` and RQ's spelling stay RQ's), never by hand.
"""

from __future__ import annotations

from rq.defaults import RQ_KEY_PREFIX
from rq.executions import WORKER_EXECUTIONS_KEY_TEMPLATE
from rq.job import Job
from rq.queue import Queue
from rq.registry import (
    CanceledJobRegistry,
    DeferredJobRegistry,
    FailedJobRegistry,
    FinishedJobRegistry,
    ScheduledJobRegistry,
    StartedJobRegistry,
)
from rq.results import Result
from rq.scheduler import SCHEDULER_LOCKING_KEY_TEMPLATE
from rq.worker import Worker
from rq.worker_registration import REDIS_WORKER_KEYS

# ---- RQ's keys ---------------------------------------------------------------------------------

#: Set of every queue's key (`rq:queues`).
RQ_QUEUES = Queue.redis_queues_keys
#: Set of every registered worker's key (`rq:workers`).
RQ_WORKERS = REDIS_WORKER_KEYS
#: Prefix of a job's hash key (`rq:job:`), for Lua scripts that build job keys from ids.
RQ_JOB_PREFIX = Job.redis_job_namespace_prefix
RQ_QUEUE_PREFIX = Queue.redis_queue_namespace_prefix
RQ_WORKER_PREFIX = Worker.redis_worker_namespace_prefix


def rq_queue_key(queue: str) -> str:
    """The list of a queue's waiting job ids (`rq:queue:{queue}`)."""
    return RQ_QUEUE_PREFIX + queue


def rq_queue_name(key: bytes | str) -> str:
    """The queue name of a key from RQ_QUEUES."""
    return (key.decode() if isinstance(key, bytes) else key).removeprefix(RQ_QUEUE_PREFIX)


def rq_job_key(job_id: str) -> str:
    """A job's hash (`rq:job:{id}`)."""
    return Job.key_for(job_id)


def rq_dependents_key(job_id: str) -> str:
    return Job.dependents_key_for(job_id)


def rq_results_key(job_id: str) -> str:
    """A job's Result stream (`rq:results:{id}`)."""
    return Result.get_key(job_id)


def rq_started_key(queue: str) -> str:
    """RQ's started registry (`rq:wip:{queue}`), scored by heartbeat deadline."""
    return StartedJobRegistry.key_template.format(queue)


def rq_scheduled_key(queue: str) -> str:
    """RQ's scheduled registry (`rq:scheduled:{queue}`), scored by due time (epoch seconds)."""
    return ScheduledJobRegistry.key_template.format(queue)


def rq_failed_key(queue: str) -> str:
    return FailedJobRegistry.key_template.format(queue)


def rq_finished_key(queue: str) -> str:
    return FinishedJobRegistry.key_template.format(queue)


def rq_canceled_key(queue: str) -> str:
    return CanceledJobRegistry.key_template.format(queue)


def rq_deferred_key(queue: str) -> str:
    return DeferredJobRegistry.key_template.format(queue)


def rq_scheduler_lock_key(queue: str) -> str:
    """Held by the RQ scheduler that promotes `queue`'s scheduled jobs."""
    return SCHEDULER_LOCKING_KEY_TEMPLATE % queue


def rq_worker_key(name: str) -> str:
    """A worker's hash (`rq:worker:{name}`)."""
    return RQ_WORKER_PREFIX + name


def rq_worker_name(key: bytes | str) -> str:
    """The worker name of a key from RQ_WORKERS."""
    return (key.decode() if isinstance(key, bytes) else key).removeprefix(RQ_WORKER_PREFIX)


def rq_worker_executions_key(name: str) -> str:
    """Set of a worker's current executions (`{job id}:{execution id}`)."""
    return WORKER_EXECUTIONS_KEY_TEMPLATE.format(name)


def rq_execution_key(composite: str) -> str:
    """RQ's execution hash (`created_at`: the run's start, epoch seconds) of `{job id}:{execution id}`."""
    return f"{RQ_KEY_PREFIX}:execution:{composite}"


# ---- jobengine's keys --------------------------------------------------------------------------

PREFIX = "jobengine"

#: Stream of job events waiting to be written to PostgreSQL (see jobengine.history).
EVENTS_STREAM = f"{PREFIX}:events"
#: Consumer group of the history writers on EVENTS_STREAM.
HISTORY_GROUP = "history"
#: Stream of events PostgreSQL refused as data (or that do not parse), each with the reason
#: (see jobengine.history.deadletters and `jobtui history dead-letters`).
EVENTS_DEAD = f"{PREFIX}:events:dead"
#: Hash of the history writers' progress, shared by every writer: `last_write` (epoch seconds of
#: the last batch PostgreSQL took), `last_error` and `last_error_at` (the last failed attempt).
HISTORY_PROGRESS = f"{PREFIX}:history:progress"


def job_meta_key(job_id: str) -> str:
    """Not used by RQ: reserved for per-job engine data that must outlive RQ's job hash."""
    return f"{PREFIX}:job:{job_id}"


# ---- operations layer (rate limits, metrics, cache, monitor, prune) ------------------------

#: Hash queue -> jobs per minute ("off" = unlimited), set at run time by `jobtui limit`;
#: overrides `[limits]` from the configuration.
RATE_LIMITS = f"{PREFIX}:ratelimit:limits"


def rate_window_key(queue: str) -> str:
    """Sorted set of the hits admitted in the current moving window of `queue` (score = time)."""
    return f"{PREFIX}:ratelimit:window:{queue}"


def queue_processed_key(queue: str) -> str:
    """The specification's `queue:{queue}:processed`: INCR per finished job, EXPIRE 3600."""
    return f"{PREFIX}:queue:{queue}:processed"


#: Counter hashes, field = JSON list of label values (see jobengine.metrics).
METRICS_PROCESSED = f"{PREFIX}:metrics:processed"  # [type, queue, status] -> runs ended
METRICS_FAILED = f"{PREFIX}:metrics:failed"  # [type, error class] -> failed runs
METRICS_DURATION = f"{PREFIX}:metrics:duration"  # [type, bucket | "sum"] -> count | seconds
METRICS_DEFERRED = f"{PREFIX}:metrics:deferred"  # queue -> rate-limit deferrals


def minute_bucket_key(minute: int) -> str:
    """Hash of one minute (epoch seconds // 60): `p:{queue}` processed, `f:{queue}` failed,
    `d:{type}:{le}` runs of that type per duration bucket."""
    return f"{PREFIX}:metrics:minute:{minute}"


def hour_bucket_key(hour: int) -> str:
    """Hash of one hour (epoch seconds // 3600), fields as the minute buckets'."""
    return f"{PREFIX}:metrics:hour:{hour}"


def cache_key(name: str) -> str:
    return f"{PREFIX}:cache:{name}"


def cache_tag_key(tag: str) -> str:
    """Set of the cache keys carrying `tag` (flushed together)."""
    return f"{PREFIX}:cache-tag:{tag}"


def cache_flushes_key(tag: str) -> str:
    """Counter of the flushes of `tag` (a shared value computed across one is computed again)."""
    return f"{PREFIX}:cache-flushes:{tag}"


def job_status_cache_name(job_id: str) -> str:
    """Cache entry name of one job's status (deleted on every transition)."""
    return f"job_status:{job_id}"


#: Hash queue -> JSON {"by": "user@host", "since": epoch seconds, "reason": text | null} of the
#: paused queues (`jobtui pause`): every worker's QueueGate skips them; dispatch still enqueues.
PAUSED = f"{PREFIX}:queues:paused"
#: Hash queue -> "1" while the queue is over its size threshold (one warning per crossing).
OVER_THRESHOLD = f"{PREFIX}:monitor:over-threshold"
#: Lock held by the one process pruning the deployment.
PRUNE_LOCK = f"{PREFIX}:prune:lock"

# ---- alerts (jobengine.alerts) -------------------------------------------------------------

#: Lock held by the one process evaluating and sending alerts.
ALERTS_LOCK = f"{PREFIX}:alerts:lock"
#: Set while the last evaluation is fresher than `[alerts] check_every` (expires then).
ALERTS_DUE = f"{PREFIX}:alerts:checked"
#: Hash alert key -> JSON state (active since, notified, last sent): no resend after a restart.
ALERTS_STATE = f"{PREFIX}:alerts:state"
#: List of the notices sent, newest first (JSON; capped).
ALERTS_SENT = f"{PREFIX}:alerts:sent"


# ---- reconcile (Redis data loss, see jobengine.reconcile) ----------------------------------

#: Random token written into a Redis once; PostgreSQL records it (table redis_epoch). A Redis
#: without it, or with another one, lost its data since: a reset to reconcile.
REDIS_EPOCH = f"{PREFIX}:epoch"
#: Set of the job ids reconcile re-created in this Redis: none is ever pushed twice (expires).
RECONCILE_RESTORED = f"{PREFIX}:reconcile:restored"
#: Set of the RQ ends (`{job id} {status} {when}`) reconcile recorded as history events: each
#: once, however many reconcilers run (expires).
RECONCILE_RECORDED = f"{PREFIX}:reconcile:recorded"
#: Lock held by the one process running reconcile after a detected reset.
RECONCILE_LOCK = f"{PREFIX}:reconcile:lock"

# ---- worker death and recovery (jobengine.runtime.recovery) ----------------------------------

#: Set of the names of every fast worker that may hold jobs (registered at start, removed by
#: its clean exit or by the recovery of its death).
WORKERS = f"{PREFIX}:workers"
#: Lock held by the one process running recovery at a time.
RECOVERY_LOCK = f"{PREFIX}:recovery:lock"
#: Hash member -> queue: the started-registry entries about to expire, watched for RQ's own sweep.
RECOVERY_WATCH = f"{PREFIX}:recovery:watch"


def worker_held_key(name: str) -> str:
    """Hash of the jobs a fast worker holds: `{job id}:{execution id}` -> "{taken at} {index} {queue}"
    (written by dequeue.lua), plus `running` (the member it runs, once it runs past `hold`) and
    `beat` (its last heartbeat, epoch seconds)."""
    return f"{PREFIX}:worker:{name}:held"


def worker_alive_key(name: str) -> str:
    """Present while a worker is alive: its heartbeat sets it with a TTL of `recovery_after`."""
    return f"{PREFIX}:worker:{name}:alive"


def worker_fence_key(name: str) -> str:
    """The worker's token; recovery deletes it, so a block the worker sent before it knew it was
    declared dead is refused by WATCH (see FastWorker)."""
    return f"{PREFIX}:worker:{name}:fence"


def abandoned_recorded_key(job_id: str, run: str) -> str:
    """Set (NX) by whoever records an abandoned run first: the run's outcome is recorded once."""
    return f"{PREFIX}:abandoned:{job_id}:{run}"

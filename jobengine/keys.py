"""Every Redis key jobengine writes, in one place. RQ's own keys (rq:*) are RQ's business."""

from __future__ import annotations

PREFIX = "jobengine"

#: Stream of job events waiting to be written to PostgreSQL (see jobengine.history).
EVENTS_STREAM = f"{PREFIX}:events"
#: Consumer group of the history writers on EVENTS_STREAM.
HISTORY_GROUP = "history"


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
    """Hash of one minute (epoch seconds // 60): `p:{queue}` processed, `f:{queue}` failed."""
    return f"{PREFIX}:metrics:minute:{minute}"


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


#: Hash queue -> "1" while the queue is over its size threshold (one warning per crossing).
OVER_THRESHOLD = f"{PREFIX}:monitor:over-threshold"
#: Lock held by the one process pruning the deployment.
PRUNE_LOCK = f"{PREFIX}:prune:lock"


# ---- reconcile (Redis data loss, see jobengine.reconcile) ----------------------------------

#: Random token written into a Redis once; PostgreSQL records it (table redis_epoch). A Redis
#: without it, or with another one, lost its data since: a reset to reconcile.
REDIS_EPOCH = f"{PREFIX}:epoch"
#: Set of the job ids reconcile re-created in this Redis: none is ever pushed twice (expires).
RECONCILE_RESTORED = f"{PREFIX}:reconcile:restored"
#: Lock held by the one process running reconcile after a detected reset.
RECONCILE_LOCK = f"{PREFIX}:reconcile:lock"

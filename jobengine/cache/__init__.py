"""Tagged TTL cache in Redis (see `tagged`), and the invalidations workers append to their
bookkeeping pipelines."""

from __future__ import annotations

from typing import Any

from jobengine import keys
from jobengine.cache.tagged import TaggedCache

#: Tags of the engine's cache entries.
TAG_JOBS = "jobs"
TAG_STATS = "stats"
TAG_CONFIG = "config"
TAG_SNAPSHOT = "snapshot"


def invalidate_job_status(pipe: Any, job_id: str) -> None:
    """Append the deletion of one job's cached status to a pipeline (no round trip of its own)."""
    pipe.delete(keys.cache_key(keys.job_status_cache_name(job_id)))


__all__ = ["TAG_CONFIG", "TAG_JOBS", "TAG_SNAPSHOT", "TAG_STATS", "TaggedCache", "invalidate_job_status"]

"""`[dispatch] allow` at the worker: a job whose function is outside the list fails without running.

Dispatch refuses such jobs already; this catches jobs put on the queues by a plain RQ client. The
check reads the job's function name only (nothing is imported for a refused job).
"""

from __future__ import annotations

from typing import Any

from jobengine.validate import check_allowed


def check_job_allowed(job: Any, settings: Any) -> None:
    """Raise JobFunctionError (the job's failure, not retried) unless `job`'s function is allowed."""
    patterns = getattr(settings, "dispatch_allow", None)
    if patterns is not None:
        check_allowed(str(job.func_name), patterns, what=f"job {job.id}: function")

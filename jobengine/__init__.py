"""jobengine: priority job queues on RQ, Redis and PostgreSQL.

    from jobengine import Engine, TemporaryError, ResourceError

Names are imported lazily, so `import jobengine.models` stays light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jobengine.config import Settings
    from jobengine.dispatch import JobSpec
    from jobengine.engine import Engine
    from jobengine.errors import JobEngineError, ResourceError, TemporaryError
    from jobengine.types import JobStatus, Priority

_EXPORTS = {
    "Engine": "jobengine.engine",
    "JobSpec": "jobengine.dispatch",
    "Settings": "jobengine.config",
    "JobEngineError": "jobengine.errors",
    "ResourceError": "jobengine.errors",
    "TemporaryError": "jobengine.errors",
    "JobStatus": "jobengine.types",
    "Priority": "jobengine.types",
}

__all__ = ["Engine", "JobEngineError", "JobSpec", "JobStatus", "Priority", "ResourceError", "Settings",
           "TemporaryError"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'jobengine' has no attribute {name!r}")

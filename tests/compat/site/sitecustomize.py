"""Loaded by every Python process of the RQ-suite run (tests/compat/run.py puts this folder first
on PYTHONPATH): points RQ's tests at the private Redis and swaps our worker classes in for RQ's.

RQ's tests connect to `Redis()` and to URLs naming 127.0.0.1:6379; `JOBTUI_COMPAT_REDIS_PORT`
redirects a connection to localhost:6379 to the private server (the connection kwargs RQ's tests
assert on stay as given). `JOBTUI_COMPAT_WORKER` (fast, classic, fork; rq or simple for RQ's own)
replaces `rq.Worker` and `rq.SimpleWorker` once `rq` is imported (a post-import hook, so a process
that never imports rq, or whose `import rq` must fail, is left alone).
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import sys
from typing import Any

_PORT = os.environ.get("JOBTUI_COMPAT_REDIS_PORT")
_WORKER = os.environ.get("JOBTUI_COMPAT_WORKER", "rq")
_LOCAL = ("localhost", "127.0.0.1", "::1")


def _redirect_redis() -> None:
    if not _PORT:
        return
    import redis.connection

    original = redis.connection.Connection.__init__

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        if kwargs.get("host", "localhost") in _LOCAL and int(kwargs.get("port", 6379)) == 6379:
            kwargs["host"], kwargs["port"] = "127.0.0.1", int(_PORT)
        original(self, *args, **kwargs)

    redis.connection.Connection.__init__ = __init__  # type: ignore[method-assign]


def _swap_workers() -> None:
    import rq
    import rq.worker

    if _WORKER == "rq":
        return
    if _WORKER == "simple":
        cls: Any = rq.worker.SimpleWorker
    elif _WORKER == "fast":
        from jobengine.runtime.fastworker import FastWorker as cls
    elif _WORKER == "classic":
        from jobengine.runtime.worker import JobWorker as cls
    elif _WORKER == "fork":
        from jobengine.runtime.worker import ForkingJobWorker as cls
    else:
        raise SystemExit(f"JOBTUI_COMPAT_WORKER={_WORKER!r}: expected fast, classic, fork, rq or simple")
    import rq.worker_pool

    original = rq.worker.Worker
    for module in (rq, rq.worker):
        module.Worker = cls  # type: ignore[attr-defined]
        module.SimpleWorker = cls  # type: ignore[attr-defined]
    rq.worker_pool.Worker = cls  # type: ignore[attr-defined]
    init = rq.worker_pool.WorkerPool.__init__  # its default worker_class was bound at import
    init.__defaults__ = tuple(cls if d is original else d for d in init.__defaults__ or ())


class _AfterRQ(importlib.abc.MetaPathFinder):
    """Runs `_swap_workers` right after the `rq` package has finished importing."""

    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        if name != "rq":
            return None
        sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        loader, exec_module = spec.loader, spec.loader.exec_module

        def exec_and_swap(module: Any) -> None:
            exec_module(module)
            sys.modules[name] = module
            _swap_workers()

        loader.exec_module = exec_and_swap  # type: ignore[method-assign]
        return spec


_redirect_redis()
if _WORKER != "rq":
    sys.meta_path.insert(0, _AfterRQ())

"""RQ's own test suite on our workers (tests/compat/run.py): no failure beyond the listed ones,
and no listed one that passes. FastWorker by default; JOBTUI_COMPAT_WORKERS=fast,classic,fork
(or `all`) picks others. Needs pip to reach PyPI once (the sdist is cached)."""

from __future__ import annotations

import os

import pytest

from tests.compat.run import check, summary

_CHOSEN = os.environ.get("JOBTUI_COMPAT_WORKERS", "fast")
WORKERS = ["fast", "classic", "fork"] if _CHOSEN == "all" else [w for w in _CHOSEN.split(",") if w]


@pytest.mark.slow
@pytest.mark.parametrize("worker", WORKERS)
def test_rq_suite_passes_on_our_worker(worker: str) -> None:
    result = check(worker)
    assert result.counts()["passed"] > 700, summary(result)  # the suite really ran
    assert result.ok, summary(result)

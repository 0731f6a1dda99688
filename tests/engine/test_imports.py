"""What importing the light entry points loads: `from jobengine import JobSpec` and the fast
worker module pull no PostgreSQL driver, no Prometheus client and no UI (fresh interpreters)."""

from __future__ import annotations

import json
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

HEAVY = ("psycopg", "psycopg_pool", "prometheus_client", "textual")
ENTRY_POINTS = {"JobSpec": "from jobengine import JobSpec", "fastworker": "import jobengine.runtime.fastworker"}


@cache
def loaded(statement: str) -> frozenset[str]:
    """The modules a fresh interpreter holds after `statement`."""
    code = f"import json, sys\n{statement}\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, timeout=60)
    return frozenset(json.loads(out.stdout))


def _cases() -> list[object]:
    cases: list[object] = []
    for entry in ENTRY_POINTS:
        for package in HEAVY:
            cases.append(pytest.param(entry, package, id=f"{entry}-{package}"))
    return cases


@pytest.mark.parametrize(("entry", "package"), _cases())
def test_light_imports_load_no_heavy_package(entry: str, package: str) -> None:
    modules = loaded(ENTRY_POINTS[entry])
    assert not [m for m in modules if m == package or m.startswith(f"{package}.")]


def test_jobspec_loads_no_worker_store_or_writer() -> None:
    ours = {m for m in loaded(ENTRY_POINTS["JobSpec"]) if m.startswith("jobengine")}
    assert "jobengine.dispatch" in ours
    assert not {m for m in ours if m.startswith(("jobengine.runtime", "jobengine.engine", "jobengine.metrics",
                                                  "jobengine.store.postgres", "jobengine.history.writer"))}


def test_the_fast_worker_loads_the_event_format_not_the_writer() -> None:
    ours = loaded(ENTRY_POINTS["fastworker"])
    assert {"jobengine.history.events", "jobengine.runtime.gate", "jobengine.runtime.records"} <= ours
    assert "jobengine.history.writer" not in ours and "jobengine.store.postgres" not in ours
    assert "jobengine.runtime.worker" not in ours  # the classic worker is not the fast one's library


def test_the_store_and_history_packages_load_no_driver_until_asked() -> None:
    modules = loaded("import jobengine.store, jobengine.history")
    assert "psycopg" not in modules and "jobengine.store.postgres" not in modules
    modules = loaded("from jobengine.store import PostgresStore, HistoryStore\n"
                     "assert issubclass(PostgresStore, HistoryStore)")  # lazily, and it satisfies the Protocol
    assert "psycopg" in modules

"""The CLI: one line and exit code 2 on bad input, no traceback; dispatch and worker work."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.engine.helpers import rows

ROOT = Path(__file__).resolve().parents[2]


def jobtui(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("JOBENGINE_")}
    full_env.update(env or {}, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "jobengine.cli", *args], capture_output=True, text=True,
                          env=full_env, cwd=ROOT, timeout=60)


@pytest.fixture
def servers(redis_url: str, database_url: str) -> list[str]:
    return ["--redis-url", redis_url, "--database-url", database_url]


def _one_line_error(result: subprocess.CompletedProcess[str], needle: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert needle in lines[0]


def test_dispatch_and_burst_worker(servers: list[str], database_url: str) -> None:
    result = jobtui(*servers, "dispatch", "tests.engine.jobs:add", "2", "40", "--priority", "critical",
                    "--type", "sum")
    assert result.returncode == 0, result.stderr
    job_id = result.stdout.strip()
    worker = jobtui(*servers, "worker", "--burst")
    assert worker.returncode == 0, worker.stderr
    assert rows(database_url, "SELECT status, type FROM jobs WHERE id=%s", job_id) == [("finished", "sum")]


@pytest.mark.parametrize("args,needle", [
    (["dispatch", "tests.engine.jobs:add", "--priority", "urgent"], "unknown priority 'urgent'"),
    (["dispatch", "tests.engine.nope:add", "--priority", "critical"], "does not import"),
    (["dispatch", "tests.engine.jobs:add", "{oops", "--priority", "critical"], "not valid JSON"),
    (["dispatch", "tests.engine.jobs:add", "--kwargs", "[1]", "--priority", "critical"], "JSON object"),
])
def test_bad_dispatch_input(servers: list[str], database_url: str, args: list[str], needle: str) -> None:
    _one_line_error(jobtui(*servers, *args), needle)
    assert rows(database_url, "SELECT count(*) FROM jobs") == [(0,)]


def test_malformed_config(tmp_path: Path) -> None:
    cfg = tmp_path / "jobtui.toml"
    cfg.write_text("[thresholds]\nstuck_after = 'later'\n")
    _one_line_error(jobtui("--config", str(cfg), "migrate"), "thresholds.stuck_after: expected float")


def test_unreachable_servers(database_url: str, redis_url: str) -> None:
    _one_line_error(jobtui("--redis-url", redis_url, "--database-url", "postgresql://postgres@127.0.0.1:1/x",
                           "migrate"), "PostgreSQL at 127.0.0.1:1/x is unreachable")
    _one_line_error(jobtui("--redis-url", "redis://127.0.0.1:1/0", "--database-url", database_url,
                           "dispatch", "tests.engine.jobs:noop", "--priority", "critical"),
                    "Redis at 127.0.0.1:1/0 is unreachable")
    assert rows(database_url, "SELECT count(*) FROM jobs") == [(0,)]  # nothing half written


def test_worker_refuses_a_retry_mapping_that_does_not_import(servers: list[str], tmp_path: Path) -> None:
    cfg = tmp_path / "jobtui.toml"
    cfg.write_text('[retry.strategies]\n"myapp.errors.Missing" = "linear"\n')
    _one_line_error(jobtui("--config", str(cfg), *servers, "worker", "--burst"), "myapp.errors.Missing")

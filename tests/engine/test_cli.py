"""The CLI: one line and exit code 2 on bad input, no traceback; dispatch and worker work; global
options before or after the command; the engine never imports the CLI or the console."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from jobtui.cli import cli
from jobtui.cli.context import Context, Group, global_options, pass_ctx
from tests.engine.helpers import rows

ROOT = Path(__file__).resolve().parents[2]


def jobtui(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("JOBENGINE_")}
    full_env.update(env or {}, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "jobtui.cli", *args], capture_output=True, text=True,
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


# ---- global options before or after the command ---------------------------------------------
def test_dispatch_and_worker_take_the_servers_after_the_command(servers: list[str], database_url: str) -> None:
    result = jobtui("dispatch", "tests.engine.jobs:add", "1", "2", "--priority", "critical", *servers)
    assert result.returncode == 0, result.stderr
    worker = jobtui("worker", "--burst", *servers)
    assert worker.returncode == 0, worker.stderr
    assert rows(database_url, "SELECT status FROM jobs WHERE id=%s", result.stdout.strip()) == [("finished",)]


def test_config_after_the_command(tmp_path: Path) -> None:
    cfg = tmp_path / "jobtui.toml"
    cfg.write_text("[thresholds]\nstuck_after = 'later'\n")
    _one_line_error(jobtui("migrate", "--config", str(cfg)), "thresholds.stuck_after: expected float")


@pytest.mark.parametrize("where", ["before", "after"])
def test_health_takes_the_servers_before_or_after(redis_url: str, database_url: str, where: str) -> None:
    servers = ["--redis-url", redis_url, "--database-url", database_url]
    args = [*servers, "health", "--json"] if where == "before" else ["health", "--json", *servers]
    result = CliRunner().invoke(cli, args, env={"JOBENGINE_CONFIG": ""})
    report = json.loads(result.stdout)
    assert report["redis_ok"] and report["postgres_ok"], result.output
    assert result.exit_code == report["exit_code"] == 0


def test_an_option_after_the_command_wins(redis_url: str, database_url: str) -> None:
    result = CliRunner().invoke(cli, ["--redis-url", "redis://127.0.0.1:1/0", "--database-url", database_url,
                                      "health", "--json", "--redis-url", redis_url])
    assert result.exit_code == 0 and json.loads(result.stdout)["redis_ok"], result.output
    result = CliRunner().invoke(cli, ["--redis-url", redis_url, "--database-url", database_url,
                                      "health", "--json", "--redis-url", "redis://127.0.0.1:1/0"])
    report = json.loads(result.stdout)
    assert result.exit_code == 2 and report["verdict"] == "unknown"
    assert "Redis at 127.0.0.1:1/0 is unreachable" in report["reasons"][0]


def _probe_group() -> click.Group:
    """A group like `jobtui`'s with one command printing the merged settings."""

    @click.group(cls=Group)
    @global_options
    def group() -> None:
        pass

    @click.command()
    @pass_ctx
    def show(ctx: Context) -> None:
        s = ctx.settings()
        click.echo(json.dumps([ctx.config, s.redis_url, s.database_url, s.data_dir, s.read_only, ctx.verbose]))

    group.add_command(show)
    return group


@pytest.mark.parametrize("where", ["before", "after"])
def test_every_global_option_works_in_both_positions(tmp_path: Path, where: str) -> None:
    cfg = tmp_path / "jobtui.toml"
    cfg.write_text("")
    options = ["--config", str(cfg), "--redis-url", "redis://r", "--database-url", "postgresql://d",
               "--data-dir", str(tmp_path), "--read-only", "-v"]
    args = [*options, "show"] if where == "before" else ["show", *options]
    result = CliRunner().invoke(_probe_group(), args, env={"JOBENGINE_CONFIG": ""})
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == [str(cfg), "redis://r", "postgresql://d", str(tmp_path), True, True]


def test_unset_global_options_leave_the_settings_alone() -> None:
    result = CliRunner().invoke(_probe_group(), ["--redis-url", "redis://first", "show", "--database-url", "postgresql://x"],
                                env={"JOBENGINE_CONFIG": "", "JOBENGINE_READ_ONLY": ""})
    assert json.loads(result.stdout) == [None, "redis://first", "postgresql://x", None, False, False]


def test_every_command_takes_the_global_options() -> None:
    for name, command in cli.commands.items():
        assert {"--redis-url", "--database-url", "--config", "--read-only"} <= \
            {o for p in command.params for o in p.opts}, name


# ---- layering --------------------------------------------------------------------------------
def test_the_engine_imports_nothing_from_jobtui() -> None:
    offenders = []
    for path in (ROOT / "jobengine").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else []
            offenders += [f"{path.relative_to(ROOT)}: {n}" for n in names if n.split(".")[0] == "jobtui"]
    assert offenders == []


def test_commands_without_the_console_load_no_textual() -> None:
    code = "import sys, jobtui.cli; assert not [m for m in sys.modules if m.startswith('textual')], 'textual'"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr


def test_python_dash_m_jobtui_is_the_cli() -> None:
    result = subprocess.run([sys.executable, "-m", "jobtui", "--help"], capture_output=True, text=True, cwd=ROOT,
                            timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0 and "Usage: jobtui" in result.stdout and "worker" in result.stdout

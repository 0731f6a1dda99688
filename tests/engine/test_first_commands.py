"""First commands on a deployment: health on a fresh database, migrate, worker --burst with jobs
coming due, job ID, stats saying when it counted; the demo's settings file and the config lookup."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from jobengine import Engine, JobSpec
from jobengine.config import Settings
from jobengine.store.sqlfile import migrations
from tests.conftest import pg_url
from tests.engine import jobs
from tests.engine.helpers import rows
from tests.engine.test_cli import jobtui


@pytest.fixture
def fresh_database() -> Iterator[str]:
    """A database nothing has touched: no schema at all."""
    name = f"jobtui_fresh_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_url("postgres"), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield pg_url(name)
    with psycopg.connect(pg_url("postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_health_on_a_fresh_deployment_gives_a_verdict(redis_url: str, fresh_database: str) -> None:
    result = jobtui("--redis-url", redis_url, "--database-url", fresh_database, "health", "--json")
    report = json.loads(result.stdout)
    assert result.returncode == 0, result.stderr  # a warning, not "cannot check"
    assert report["verdict"] == "warning" and report["postgres_ok"] is True
    n = len(migrations())
    assert any(f"not applied yet ({n} of {n} migrations pending)" in r and "jobtui migrate" in r
               for r in report["reasons"]), report["reasons"]
    assert "does not exist" not in result.stdout + result.stderr
    # health applies nothing: the database is still empty
    assert rows(fresh_database, "SELECT to_regclass('jobs') IS NULL") == [(True,)]


def test_migrate_says_what_it_applied_then_up_to_date(redis_url: str, fresh_database: str) -> None:
    servers = ["--redis-url", redis_url, "--database-url", fresh_database]
    n = len(migrations())
    first = jobtui(*servers, "migrate")
    assert first.returncode == 0, first.stderr
    names = [name for name, _ in migrations()]
    assert first.stdout.strip() == f"applied {n} migration(s): {', '.join(names)} ({n} applied in all)"
    again = jobtui(*servers, "migrate")
    assert again.stdout.strip() == f"up to date ({n} applied)"
    healthy = json.loads(jobtui(*servers, "health", "--json").stdout)
    assert not any("migrations pending" in r for r in healthy["reasons"])


def test_burst_waits_for_a_job_due_soon(redis_url: str, database_url: str) -> None:
    with Engine(Settings.load(env={}, redis_url=redis_url, database_url=database_url)) as engine:
        soon = engine.dispatch_many([JobSpec(jobs.add, (1, 2), priority="critical", delay=3)])[0]
    started = time.monotonic()
    result = jobtui("--redis-url", redis_url, "--database-url", database_url, "worker", "--burst")
    took = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert "waiting" in result.stderr and "scheduled job(s) coming due" in result.stderr
    assert took >= 2.0
    assert rows(database_url, "SELECT status FROM jobs WHERE id=%s", soon) == [("finished",)]


def test_burst_says_when_the_next_job_is_due_beyond_the_wait(redis_url: str, database_url: str) -> None:
    with Engine(Settings.load(env={}, redis_url=redis_url, database_url=database_url)) as engine:
        later = engine.dispatch_many([JobSpec(jobs.add, (1, 2), priority="low", delay=600)] * 2)
    started = time.monotonic()
    result = jobtui("--redis-url", redis_url, "--database-url", database_url, "worker", "--burst",
                    "--burst-wait", "5")
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 30  # it did not wait ten minutes
    assert "2 job(s) scheduled, the next due at" in result.stderr and "(in 9m" in result.stderr
    assert "later than --burst-wait 5s" in result.stderr
    assert rows(database_url, "SELECT count(*) FROM jobs WHERE status='scheduled' AND id = ANY(%s)",
                later) == [(2,)]


def test_job_prints_the_detail_as_text_and_json(redis_url: str, database_url: str) -> None:
    servers = ["--redis-url", redis_url, "--database-url", database_url]
    with Engine(Settings.load(env={}, redis_url=redis_url, database_url=database_url,
                              lanes={"critical": ("critical", 0.0)})) as engine:
        job_id = engine.dispatch(jobs.broken, 7, type="parse", priority="critical")
        engine.worker().work(burst=True, logging_level="ERROR")
        engine.flush_history()
    data = json.loads(jobtui(*servers, "job", job_id[:8], "--json").stdout)
    assert (data["id"], data["type"], data["status"], data["queue"], data["priority"]) == \
        (job_id, "parse", "failed", "critical", "critical")
    assert data["attempts"] == 1 and data["args"] == "7" and data["started_at"] and data["failed_at"]
    assert data["last_error"]["class"] == "ValueError" and data["last_error"]["message"] == "bad value 7"
    assert [e["kind"] for e in data["log"]] == ["started", "failed"]
    text = jobtui(*servers, "job", job_id)
    assert text.returncode == 0, text.stderr
    assert f"job {job_id}  parse" in text.stdout and "status     failed" in text.stdout
    assert "ValueError: bad value 7" in text.stdout and "Traceback" in text.stdout
    cut = json.loads(jobtui(*servers, "job", job_id, "--json", "--max-text", "20").stdout)
    assert "traceback" in cut["truncated"] and len(cut["last_error"]["traceback"]) < 200
    missing = jobtui(*servers, "job", "nope-nope")
    assert missing.returncode == 2 and "no job with id or id prefix 'nope-nope'" in missing.stderr


def test_stats_says_when_it_counted(redis_url: str, database_url: str) -> None:
    servers = ["--redis-url", redis_url, "--database-url", database_url]
    first = jobtui(*servers, "stats")
    assert first.returncode == 0, first.stderr
    assert "counted" in first.stdout and "UTC" in first.stdout and "(cached; --fresh recounts)" in first.stdout
    with Engine(Settings.load(env={}, redis_url=redis_url, database_url=database_url)) as engine:
        engine.dispatch(jobs.add, 1, 2)
    cached = json.loads(jobtui(*servers, "stats", "--json").stdout)["history"]
    fresh = json.loads(jobtui(*servers, "stats", "--json", "--fresh").stdout)["history"]
    assert cached["total"] == 0 and fresh["total"] == 1  # the cache says so, and --fresh recounts
    assert fresh["computed_at"] >= cached["computed_at"]


def test_a_config_file_in_the_data_dir_is_found_when_the_data_dir_is_named(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "jobtui.toml").write_text("[thresholds]\nlong_running = 2.5\n")
    other = tmp_path / "cwd"
    other.mkdir()
    (other / "jobtui.toml").write_text("[thresholds]\nlong_running = 9.0\n")
    monkeypatch.chdir(other)
    assert Settings.load(env={}, data_dir=str(tmp_path)).long_running == 2.5  # --data-dir
    assert Settings.load(env={"JOBENGINE_DATA_DIR": str(tmp_path)}).long_running == 2.5
    assert Settings.load(env={}).long_running == 9.0  # no data dir named: ./jobtui.toml
    explicit = tmp_path / "explicit.toml"
    explicit.write_text("[thresholds]\nlong_running = 4.0\n")
    assert Settings.load(explicit, env={}, data_dir=str(tmp_path)).long_running == 4.0  # --config wins
    assert Settings.load(env={"JOBENGINE_CONFIG": str(explicit), "JOBENGINE_DATA_DIR": str(tmp_path)}) \
        .long_running == 4.0


def test_the_demo_writes_its_settings_where_health_and_stats_find_them(tmp_path: Path, redis_url: str,
                                                                     database_url: str) -> None:
    from jobtui.cli.demo import demo_settings, write_demo_config

    settings = demo_settings(Settings.load(env={}, redis_url=redis_url, database_url=database_url,
                                           data_dir=str(tmp_path)))
    path = write_demo_config(settings, embedded=False)
    assert path == tmp_path / "jobtui.toml" and oct(path.stat().st_mode & 0o777) == "0o600"
    seen = Settings.load(env={}, data_dir=str(tmp_path))
    assert (seen.long_running, seen.stuck_after, seen.failed_per_hour, seen.lanes) == \
        (settings.long_running, settings.stuck_after, settings.failed_per_hour, settings.lanes)
    assert (seen.redis_url, seen.database_url) == (redis_url, database_url)
    embedded = write_demo_config(settings, embedded=True)  # embedded servers: found through the data dir
    assert embedded is not None and "url" not in embedded.read_text()
    (tmp_path / "jobtui.toml").write_text("# mine\n[thresholds]\nlong_running = 7.0\n")
    assert write_demo_config(settings, embedded=True) is None  # not the demo's: kept
    assert Settings.load(env={}, data_dir=str(tmp_path)).long_running == 7.0
    # jobtui health and stats pointed at the data dir read the demo's thresholds
    write_demo_config(settings, embedded=False)
    health = jobtui("--data-dir", str(tmp_path), "health", "--json")
    assert health.returncode == 0, health.stderr
    assert json.loads(health.stdout)["verdict"] in ("healthy", "warning")


def test_the_demos_stuck_job_has_its_own_long_timeout(redis_url: str, database_url: str) -> None:
    from jobengine.demo import STUCK_TIMEOUT, Producer

    with Engine(Settings.load(env={}, redis_url=redis_url, database_url=database_url)) as engine:
        producer = Producer(engine, rate=0.001)
        producer.start()
        producer.stop()
        (job_id,) = [r[0] for r in rows(database_url, "SELECT id FROM jobs WHERE type='stuck-sync'")]
        assert STUCK_TIMEOUT >= 2 * 3600
        assert int(engine.connection.hget(f"rq:job:{job_id}", "timeout")) == STUCK_TIMEOUT
        assert rows(database_url, "SELECT options->>'timeout' FROM jobs WHERE id=%s", job_id) == \
            [(str(STUCK_TIMEOUT),)]

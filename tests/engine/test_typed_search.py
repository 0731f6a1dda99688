"""Typed search (`type:email queue:high error:Timeout since:1h args:ada@` and free text), its
index use (EXPLAIN on a realistic table), and bulk actions by filter: counts, batches, progress,
stop, cap, one audit row; `jobtui retry --filter` / `jobtui cancel --filter`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner

from jobengine import Engine, JobSpec, bulk
from jobengine.errors import ValidationError
from jobengine.models import JobEvent
from jobengine.query import JobQuery, parse_query
from jobengine.store.filters import query_params
from jobengine.store.postgres import PostgresStore
from jobengine.types import EventKind
from jobtui.cli.main import cli
from tests.engine import jobs
from tests.engine.helpers import rows, run_until_idle

NOW = datetime(2030, 1, 15, 12, 0, tzinfo=UTC)


# ---- parsing ------------------------------------------------------------------------------------

def test_keys_values_and_free_text() -> None:
    q = parse_query('type:email,sms queue:high error:"read timed out" since:1h args:ada@ id:3f2a '
                    "ConnectionError: refused", NOW)
    assert q.types == ("email", "sms") and q.queues == ("high",) and q.error == "read timed out"
    assert q.since == NOW - timedelta(hours=1) and q.args == "ada@" and q.id_prefix == "3f2a"
    assert q.text == "ConnectionError: refused"  # an unknown key is free text
    assert parse_query("since:2030-01-15", NOW).since == datetime(2030, 1, 15, tzinfo=UTC)
    assert parse_query("since:2030-01-15T10:00+02:00", NOW).since == datetime(2030, 1, 15, 8, tzinfo=UTC)
    assert parse_query("TYPE:x", NOW).types == ("x",)
    assert not parse_query("   ") and not parse_query(None) and parse_query("x")
    assert parse_query("type:a since:1h boom", NOW).describe() == "type:a since:2030-01-15T11:00:00Z boom"


@pytest.mark.parametrize(("text", "message"), [
    ("type:", "type: needs a value"),
    ("type:a type:b", "given twice"),
    ("since:soon", "neither a duration"),
    ("since:0s", "not a duration"),
    ("queue:bad/name", "queue name"),
    ("id:ab%", "id: letters"),
    ("x" * 501, "at most 500"),
])
def test_bad_values_are_one_line(text: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        parse_query(text, NOW)


# ---- the store ----------------------------------------------------------------------------------

@pytest.fixture
def store(database_url: str) -> Iterator[PostgresStore]:
    with PostgresStore(database_url) as s:
        yield s


def _failure(n: int, job_type: str, queue: str, error: str, message: str, at: datetime,
             args: str = "()") -> list[JobEvent]:
    job = f"job-{n:03d}"
    return [JobEvent(f"{1700000000000 + 2 * n}-0", EventKind.QUEUED, job, at - timedelta(seconds=5), queue=queue,
                     type=job_type, func=f"app.{job_type}", args=args),
            JobEvent(f"{1700000000001 + 2 * n}-0", EventKind.FAILED, job, at, queue=queue, type=job_type,
                     error_class=error, error_message=message, traceback="...", attempt=1)]


def test_typed_filters_on_the_failed_list(store: PostgresStore) -> None:
    events = [
        *_failure(1, "email", "high", "TimeoutError", "read timed out", NOW - timedelta(minutes=5), "('ada@x.org',)"),
        *_failure(2, "email", "low", "ValueError", "bad address", NOW - timedelta(hours=3), "('bob@x.org',)"),
        *_failure(3, "sms", "high", "TimeoutError", "gateway timeout", NOW - timedelta(minutes=20)),
        *_failure(4, "report", "default", "KeyError", "'ada'", NOW - timedelta(days=2)),
    ]
    store.apply_events(events)

    def ids(text: str) -> list[str]:
        q = parse_query(text, NOW)
        found = [f.job_id for f in store.failed_jobs(search=q)]
        assert store.failed_total(q) == len(found)
        return found

    assert ids("type:email") == ["job-001", "job-002"]
    assert ids("type:email,sms queue:high") == ["job-001", "job-003"]
    assert ids("error:timeout") == ["job-001", "job-003"]  # class or message, any case
    assert ids("since:1h") == ["job-001", "job-003"]
    assert ids("args:ada@") == ["job-001"]  # the job's arguments, not its message ('ada')
    assert ids("id:job-00") == ["job-001", "job-003", "job-002", "job-004"]
    assert ids("type:email bad") == ["job-002"]  # free text as before: type, queue, error, message, id
    assert ids("type:nothing") == []
    assert [g.error_class for g in store.failure_groups(search=parse_query("queue:high", NOW), days=None)] \
        == ["TimeoutError", "TimeoutError"]
    batch, cursor = store.failed_filtered_ids(parse_query("id:job", NOW), None, 3)
    assert batch == ["job-001", "job-003", "job-002"] and cursor is not None
    rest, last = store.failed_filtered_ids(parse_query("id:job", NOW), cursor, 3)
    assert rest == ["job-004"] and last is None


def _plan_nodes(plan: dict[str, Any]) -> list[tuple[str, str | None, str | None]]:
    out = [(plan["Node Type"], plan.get("Index Name"), plan.get("Relation Name"))]
    for child in plan.get("Plans", []):
        out += _plan_nodes(child)
    return out


def test_the_common_filters_use_indexes(store: PostgresStore, database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        conn.execute("""
            INSERT INTO jobs (id, type, queue, priority, status, attempts, created_at, updated_at, args)
            SELECT 'j' || n, 'type' || (n % 40), (ARRAY['critical','high','default','low'])[1 + n % 4], 1,
                   CASE WHEN n % 10 = 0 THEN 'queued' ELSE 'failed' END, 1,
                   now() - n * interval '1 minute', now(), '(' || n || ',)'
            FROM generate_series(1, 40000) AS n""")
        conn.execute("""
            INSERT INTO failed_jobs (event_id, job_id, type, queue, error_class, error_message, fingerprint,
                                     failed_at, attempts, retried_at)
            SELECT n::text, 'j' || n, 'type' || (n % 40),
                   CASE WHEN n % 97 = 0 THEN 'rare' ELSE (ARRAY['critical','high','default','low'])[1 + n % 4] END,
                   'E' || (n % 7), 'boom ' || n, left(md5((n % 20)::text), 12), now() - n * interval '1 minute', 1,
                   CASE WHEN n % 5 = 0 THEN now() END
            FROM generate_series(1, 40000) AS n""")
        conn.execute("ANALYZE")
    page = {"limit": 50, "before_at": "infinity", "before_id": 2**63 - 1}
    cases = {
        "type:type7": "failed_jobs_open_type_idx",
        "queue:rare": "failed_jobs_open_queue_idx",
        "queue:low": None,  # a quarter of the rows: walking the time index finds a page as fast
        "since:1h": "failed_jobs_open_idx",
        "type:type7 since:2h": None,  # either of the two; never a sequential scan
        "error:E3 boom": "failed_jobs_open_idx",  # free text walks the time index in page order
    }
    for text, index in cases.items():
        params = query_params(parse_query(text))
        for name, extra in (("failed_page", page), ("failed_total", {}), ("failed_filtered_ids", page)):
            if name == "failed_total" and text.startswith("error"):
                continue  # counting a substring match reads every open failure (no trigram index)
            nodes = _plan_nodes(store.explain(name, {**params, **extra}))
            used = {i for _, i, _ in nodes if i}
            assert not any(t == "Seq Scan" and r == "failed_jobs" for t, _, r in nodes), (text, name, nodes)
            assert used and (index is None or index in used), (text, name, nodes)


# ---- bulk actions -------------------------------------------------------------------------------

def _failures(engine: Engine, n: int, job_type: str = "email") -> list[str]:
    ids = engine.dispatch_many([JobSpec(jobs.broken, (i,), type=job_type, priority="high") for i in range(n)])
    run_until_idle(engine)
    engine.flush_history()
    return ids


def test_bulk_retry_by_filter_in_batches_with_progress_stop_and_cap(
        fast_engine: Engine, database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    emails = _failures(fast_engine, 5)
    others = _failures(fast_engine, 2, "sms")
    monkeypatch.setattr(bulk, "BATCH", 2)
    assert fast_engine.count_filtered("retry", "type:email") == 5
    dry = fast_engine.bulk("retry", "type:email", dry_run=True)
    assert (dry.matched, dry.done) == (5, 0) and "5 job(s) match" in dry.line()

    seen: list[tuple[int, int]] = []
    stopped = fast_engine.bulk("retry", "type:email", progress=lambda d, t: seen.append((d, t)),
                               stop=lambda: len(seen) >= 1)
    assert stopped.stopped and stopped.done == 2 and seen == [(2, 5)]
    capped = fast_engine.bulk("retry", "type:email", cap=2, progress=lambda d, t: seen.append((d, t)))
    assert capped.done == 2 and capped.capped and seen[1:] == [(2, 2)]
    rest = fast_engine.bulk("retry", "type:email", progress=lambda d, t: seen.append((d, t)))
    assert rest.done == 1 and seen[2:] == [(1, 1)]
    assert fast_engine.count_filtered("retry", "type:email") == 0
    queued = set(fast_engine.lane_page("high", "queued").jobs[i].id for i in range(5))
    assert queued == set(emails)
    assert fast_engine.count_filtered("retry", "type:sms") == len(others)  # untouched
    audit = rows(database_url, "SELECT action, job_id, detail FROM audit_log ORDER BY id")
    assert audit == [
        ("retry_filtered", None, "filter 'type:email': 2 of 5 job(s) retried (stopped after 2)"),
        ("retry_filtered", None, "filter 'type:email': 2 of 3 job(s) retried (capped at 2)"),
        ("retry_filtered", None, "filter 'type:email': 1 of 1 job(s) retried"),
    ]  # one row per action, none per job


def test_bulk_cancel_by_filter_and_the_cli(fast_engine: Engine, redis_url: str, database_url: str) -> None:
    mail = fast_engine.dispatch_many([JobSpec(jobs.noop, kwargs={"to": f"u{i}@ada.org"}, type="mail",
                                              priority="low") for i in range(3)])
    keep = fast_engine.dispatch_many([JobSpec(jobs.noop, type="mail", priority="high"),
                                      JobSpec(jobs.noop, type="report", priority="low")])
    servers = ["--redis-url", redis_url, "--database-url", database_url]
    runner = CliRunner()
    dry = runner.invoke(cli, [*servers, "cancel", "--filter", "type:mail queue:low", "--dry-run"])
    assert dry.exit_code == 0 and "3 job(s) match; 3 would be canceled" in dry.output
    assert {fast_engine.job_status(j) for j in mail} == {"queued"}
    done = runner.invoke(cli, [*servers, "cancel", "--filter", "type:mail args:ada.org"])
    assert done.exit_code == 0, done.output
    assert "3 of 3 job(s) canceled" in done.output
    assert {fast_engine.job_status(j) for j in mail} == {"canceled"}
    assert {fast_engine.job_status(j) for j in keep} == {"queued"}
    bad = runner.invoke(cli, [*servers, "cancel", "--filter", "error:Timeout"])
    assert bad.exit_code == 2 and "cancel works on queued" in bad.output
    as_json = runner.invoke(cli, [*servers, "retry", "--filter", "type:mail", "--dry-run", "--json"])
    assert json.loads(as_json.output)["matched"] == 0
    assert rows(database_url, "SELECT action FROM audit_log ORDER BY id") == [("cancel_filtered",)]


def test_bulk_arguments_are_validated(fast_engine: Engine) -> None:
    with pytest.raises(ValidationError, match="expected retry or cancel"):
        fast_engine.bulk("delete", "x")
    with pytest.raises(ValidationError, match="cap"):
        fast_engine.bulk("retry", "x", cap=0)
    assert isinstance(parse_query("x"), JobQuery)

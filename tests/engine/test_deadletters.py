"""Poison never blocks history: the writer isolates what PostgreSQL refuses, parks it as a dead
letter, and `jobtui history dead-letters` lists, retries or drops it; health sees lag and letters."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from click.testing import CliRunner

from jobengine import Engine, keys
from jobengine.errors import OperationRefused
from jobengine.health import ago
from jobengine.history import deadletters, event_fields
from jobengine.history.writer import HistoryWriter
from jobengine.types import EventKind
from jobtui.cli import cli
from tests.engine.helpers import rows, scalar


def _queued(engine: Engine, n: int, prefix: str = "good") -> list[str]:
    """XADD `n` queued events of new jobs straight to the stream (as a producer would)."""
    ids = [f"{prefix}-{i}" for i in range(n)]
    with engine.connection.pipeline(transaction=False) as pipe:
        for job_id in ids:
            pipe.xadd(keys.EVENTS_STREAM, event_fields(EventKind.QUEUED, job_id, "default", type="report",
                                                       priority="normal"))
        pipe.execute()
    return ids


def _poison(engine: Engine, job_id: str = "poison-1") -> str:
    """An entry as an old client would send it: a NUL byte in the type."""
    fields = event_fields(EventKind.QUEUED, job_id, "default", priority="normal")
    fields["type"] = "re\x00port"
    entry = engine.connection.xadd(keys.EVENTS_STREAM, fields)  # type: ignore[arg-type]
    return entry.decode() if isinstance(entry, bytes) else str(entry)


class CountingStore:
    """The real store, counting the writer's apply_rows calls (the halving must stay logarithmic)."""

    def __init__(self, store: object) -> None:
        self.store, self.calls = store, 0

    def __getattr__(self, name: str) -> object:
        return getattr(self.store, name)

    def apply_rows(self, rows: object) -> None:
        self.calls += 1
        self.store.apply_rows(rows)  # type: ignore[attr-defined]


def test_a_poison_entry_is_isolated_and_parked_and_the_rest_written(engine: Engine, database_url: str) -> None:
    good = _queued(engine, 150)
    bad = _poison(engine)
    good += _queued(engine, 150, "later")
    store = CountingStore(engine.store)
    writer = HistoryWriter(engine.connection, store, batch=500)  # type: ignore[arg-type]
    assert writer.drain() == 300
    assert scalar(database_url, "SELECT count(*) FROM jobs") == 300
    assert scalar(database_url, "SELECT count(*) FROM jobs WHERE id = 'poison-1'") == 0
    assert engine.connection.xlen(keys.EVENTS_STREAM) == 0
    assert store.calls <= 2 * 9 + 1  # halving 301 entries: about 2 log2(n) batches, not one per entry
    (letter,) = deadletters.dead_letters(engine.connection)
    assert (letter.event_id, letter.job_id, letter.kind) == (bad, "poison-1", "queued")
    assert ("NUL" in letter.error or "0x00" in letter.error) and letter.fields["type"] == "re\\x00port"
    assert writer.dead == 1 and writer.drain() == 0  # nothing waits; the letter stays parked


def test_unreadable_entries_are_parked_without_touching_postgres(engine: Engine, database_url: str) -> None:
    engine.connection.xadd(keys.EVENTS_STREAM, {"k": "exploded", "j": "x1", "q": "default", "t": "1"})
    engine.connection.xadd(keys.EVENTS_STREAM, {"j": "x2", "q": "default", "t": "1"})  # no kind
    engine.connection.xadd(keys.EVENTS_STREAM, {"k": "queued", "j": b"x3\xff", "q": "default", "t": "1"})
    _queued(engine, 3)
    assert engine.flush_history() == 3
    letters = deadletters.dead_letters(engine.connection)
    assert [d.job_id for d in letters] == ["x1", "x2", "x3\\xff"]
    assert all(d.error.startswith("unreadable event: ") for d in letters)


def test_retry_puts_letters_back_and_a_refused_one_returns(engine: Engine, database_url: str) -> None:
    _poison(engine)
    engine.flush_history()
    assert deadletters.count(engine.connection) == 1
    assert engine.dead_letters().retry() == 1
    assert deadletters.count(engine.connection) == 0 and engine.connection.xlen(keys.EVENTS_STREAM) == 1
    engine.flush_history()
    (letter,) = deadletters.dead_letters(engine.connection)  # still refused: back, byte for byte
    raw = engine.connection.xrange(keys.EVENTS_DEAD)[0][1]
    assert raw[b"type"] == b"re\x00port" and letter.job_id == "poison-1"


def test_retry_of_a_letter_postgres_now_takes_writes_it(engine: Engine, database_url: str) -> None:
    """A letter whose cause went away (here: the field fixed by hand) is written on retry."""
    _poison(engine)
    engine.flush_history()
    (entry_id, raw), = engine.connection.xrange(keys.EVENTS_DEAD)
    engine.connection.xdel(keys.EVENTS_DEAD, entry_id)
    engine.connection.xadd(keys.EVENTS_DEAD, {**raw, b"type": b"report"})
    assert engine.dead_letters().retry() == 1
    assert engine.flush_history() == 1
    assert rows(database_url, "SELECT type FROM jobs WHERE id = 'poison-1'") == [("report",)]


def test_cli_lists_and_drops_with_an_audit_line(engine: Engine, redis_url: str, database_url: str) -> None:
    _poison(engine, "poison-a")
    _poison(engine, "poison-b")
    engine.flush_history()
    servers = ["--redis-url", redis_url, "--database-url", database_url]
    listed = CliRunner().invoke(cli, ["history", "dead-letters", "--json", *servers])
    assert listed.exit_code == 0, listed.output
    data = json.loads(listed.stdout)
    assert data["total"] == 2 and [d["job_id"] for d in data["dead_letters"]] == ["poison-a", "poison-b"]
    text = CliRunner().invoke(cli, ["history", "dead-letters", *servers])
    assert "job poison-a  queued  PostgreSQL refused apply_events as data" in text.stdout
    first = data["dead_letters"][0]["id"]
    dropped = CliRunner().invoke(cli, ["history", "dead-letters", "--drop", first, *servers])
    assert dropped.exit_code == 0 and "dropped 1 dead letter(s) (audited)" in dropped.stdout
    assert [d.job_id for d in deadletters.dead_letters(engine.connection)] == ["poison-b"]
    (audit,) = rows(database_url, "SELECT job_id, detail FROM audit_log WHERE action = 'dead-letter-drop'")
    assert audit[0] == "poison-a" and ("NUL" in audit[1] or "0x00" in audit[1])
    refused = CliRunner().invoke(cli, ["history", "dead-letters", "--drop", "--read-only", *servers])
    assert refused.exit_code == 2 and deadletters.count(engine.connection) == 1
    both = CliRunner().invoke(cli, ["history", "dead-letters", "--retry", "--json", *servers])
    assert json.loads(both.stdout) == {"retried": 1, "left": 0}


def test_retry_and_drop_are_guarded_operator_actions(engine: Engine, database_url: str) -> None:
    """Read-only (and `[permissions] allow` without `dead_letters`) refuses them in the engine,
    whoever calls it; nothing moves and no audit row is written."""
    _poison(engine)
    engine.flush_history()
    before = engine.connection.xrange(keys.EVENTS_DEAD)
    for settings, why in ((replace(engine.settings, read_only=True), "the engine is in read-only mode"),
                          (replace(engine.settings, permissions=("retry", "prune")),
                           r"\[permissions\] allow lists only retry, prune")):
        with Engine(settings) as other:
            for action in (other.dead_letters().retry, other.dead_letters().drop):
                with pytest.raises(OperationRefused, match=f"^dead_letters refused: {why}$"):
                    action()
                with pytest.raises(OperationRefused):
                    action([before[0][0].decode()])
    assert engine.connection.xrange(keys.EVENTS_DEAD) == before and engine.connection.xlen(keys.EVENTS_STREAM) == 0
    assert rows(database_url, "SELECT action FROM audit_log") == []
    with Engine(replace(engine.settings, permissions=("dead_letters",))) as allowed:
        assert allowed.dead_letters().retry() == 1


def test_each_retry_and_drop_leaves_its_audit_rows(engine: Engine, database_url: str) -> None:
    for n in range(3):
        _poison(engine, f"poison-{n}")
    engine.flush_history()
    first = deadletters.dead_letters(engine.connection)[0].id
    assert engine.dead_letters().retry([first, "0-1"]) == 1  # an id no longer there is skipped
    engine.flush_history()  # refused again: parked again, under a new id
    assert engine.dead_letters().retry() == 3
    engine.flush_history()
    second, third = (d.id for d in deadletters.dead_letters(engine.connection)[:2])
    assert engine.dead_letters().drop([second, third]) == 2
    assert engine.dead_letters().drop([second]) == 0
    audit = rows(database_url, "SELECT action, job_id, detail, os_user, host FROM audit_log ORDER BY id")
    assert [(a, j, d) for a, j, d, _, _ in audit[:2]] == [
        ("dead-letter-retry", None, f"1 of 2 dead letter(s): {first}, 0-1"),
        ("dead-letter-retry", None, "3 dead letter(s): all")]
    assert [(a, j) for a, j, _, _, _ in audit[2:]] == [("dead-letter-drop", "poison-1"),
                                                       ("dead-letter-drop", "poison-2")]
    assert all(user and host for *_, user, host in audit)
    assert [d.job_id for d in deadletters.dead_letters(engine.connection)] == ["poison-0"]


def test_health_warns_on_dead_letters(engine: Engine) -> None:
    _poison(engine)
    engine.flush_history()
    report = engine.health()
    assert (report.verdict, report.dead_letters) == ("warning", 1)
    assert report.reasons == ("1 history event PostgreSQL refused is parked as dead letters: see "
                              "`jobtui history dead-letters`.",)


@pytest.mark.parametrize(("age", "verdict"), [(30, "healthy"), (120, "warning"), (400, "failing")])
def test_health_sees_history_lag(engine: Engine, age: int, verdict: str) -> None:
    now_ms = int(time.time() * 1000)
    fields = event_fields(EventKind.QUEUED, "late-1", "default", type="report")
    engine.connection.xadd(keys.EVENTS_STREAM, fields, id=f"{now_ms - age * 1000}-0")  # type: ignore[arg-type]
    engine.connection.hset(keys.HISTORY_PROGRESS, "last_write", f"{time.time() - age - 5:.3f}")
    report = engine.health()
    assert report.verdict == verdict and report.history_backlog == 1
    assert report.history_lag is not None and age - 2 < report.history_lag < age + 5
    if verdict != "healthy":
        threshold = "60 s" if verdict == "warning" else "5 min"
        assert report.reasons[0].startswith(f"Job history is {ago(age)} behind, more than {threshold}: ")
        assert "1 event waits in Redis for PostgreSQL and the last batch was written " in report.reasons[0]
    engine.flush_history()
    assert engine.health().verdict == "healthy"


def test_the_writer_recreates_its_group_after_the_stream_vanished(engine: Engine, database_url: str) -> None:
    writer = engine.history_writer()
    _queued(engine, 2, "before")
    assert writer.drain() == 2
    engine.connection.delete(keys.EVENTS_STREAM)  # what a Redis reset does to the stream and its group
    _queued(engine, 3, "after")
    assert writer.drain() == 3  # NOGROUP once, the group is created again, the new events flow
    assert scalar(database_url, "SELECT count(*) FROM jobs") == 5


def test_the_writer_stamps_its_progress(engine: Engine) -> None:
    _queued(engine, 1)
    before = datetime.now(UTC).timestamp()
    engine.flush_history()
    stamp = float(engine.connection.hget(keys.HISTORY_PROGRESS, "last_write") or 0)
    assert before - 1 < stamp <= datetime.now(UTC).timestamp() + 1

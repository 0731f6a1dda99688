"""Redis data loss: dispatch keeps what re-creates a job; reconcile puts lost jobs back once."""

from __future__ import annotations

import pickle

from jobengine import Engine, JobSpec
from jobengine.dispatch import rq_job_hash
from jobengine.types import JobStatus
from tests.engine.helpers import rows


def _as_redis(fields: dict[str, object]) -> dict[bytes, bytes]:
    return {k.encode(): v if isinstance(v, bytes) else str(v).encode() for k, v in fields.items()}


def test_dispatch_keeps_payload_and_options_that_rebuild_its_job_hash(engine: Engine, database_url: str) -> None:
    ids = engine.dispatch_many([JobSpec("tests.engine.jobs:add", (1, 2), type="math", priority="critical"),
                                JobSpec("tests.engine.jobs:add", (3,), {"b": 4}, priority="low")])
    kept = {r[0]: r[1:] for r in rows(database_url, "SELECT id, payload, options, status FROM jobs")}
    assert set(kept) == set(ids)
    for job_id in ids:
        payload, options, status = kept[job_id]
        raw = engine.connection.hgetall(f"rq:job:{job_id}")
        enqueued = raw.get(b"enqueued_at")
        rebuilt = rq_job_hash(bytes(payload), options, raw[b"origin"].decode(), JobStatus(status),
                              raw[b"created_at"].decode(), enqueued.decode() if enqueued else None)
        assert _as_redis(rebuilt) == raw  # the row alone rebuilds the hash dispatch wrote
    options = kept[ids[0]][1]
    assert options["meta"] == {"type": "math", "priority": "critical"}
    assert options["timeout"] == engine.settings.job_timeout
    assert pickle.loads(engine.connection.hget(f"rq:job:{ids[0]}", "meta")) == options["meta"]
    assert kept[ids[1]][2] == "scheduled"

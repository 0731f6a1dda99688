"""History at a year's scale: the set-based apply with `--history` job_logs rows already present,
and while `store.prune` deletes `--prune` of them.

1. The apply on empty tables: `--events` events (two per dispatched job) in batches of `--batch`.
2. `--history` log rows (two per finished job, spread over the last year) are loaded, indexed and
   VACUUM ANALYZEd (not timed); the same apply again.
3. The oldest `--prune` log rows' jobs are pruned (`store.prune`, batches of 5,000) while a
   writer thread applies batches of new events; the writer's batch latencies during the prune
   against its latencies alone.

    python -m bench.history_scale --history 10000000 --prune 1000000
"""

from __future__ import annotations

import statistics
import threading
import time
from datetime import UTC, datetime, timedelta

import psycopg

from bench.common import parser, scratch_database
from bench.history_apply import old_apply as per_event
from bench.history_apply import workload
from jobengine.models import JobEvent, NewJob
from jobengine.store.batch import BATCH_TYPES, batch_rows, in_order
from jobengine.store.postgres import PostgresStore
from jobengine.store.sqlfile import queries

NOW = datetime.now(UTC)
YEAR = timedelta(days=365)


def preload(url: str, logs: int) -> float:
    """`logs` job_logs rows and `logs // 2` finished jobs over the last year, loaded without
    indexes, which are then rebuilt from their own definitions. Returns seconds."""
    start = time.perf_counter()
    jobs = logs // 2
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET synchronous_commit = off")
        conn.execute("SET maintenance_work_mem = '512MB'")
        defs = conn.execute("""
            SELECT c.conname, c.conrelid::regclass::text, pg_get_constraintdef(c.oid) FROM pg_constraint c
            WHERE c.conrelid IN ('jobs'::regclass, 'job_logs'::regclass) AND c.contype IN ('p', 'u')""").fetchall()
        indexes = conn.execute("""
            SELECT indexrelid::regclass::text, pg_get_indexdef(indexrelid) FROM pg_index
            WHERE indrelid IN ('jobs'::regclass, 'job_logs'::regclass)
              AND indexrelid NOT IN (SELECT conindid FROM pg_constraint WHERE contype IN ('p', 'u'))""").fetchall()
        for name, table, _ in defs:
            conn.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
        for name, _ in indexes:
            conn.execute(f"DROP INDEX {name}")
        step = YEAR / jobs
        conn.execute("""
            INSERT INTO jobs (id, type, queue, priority, status, attempts, func, args, worker, created_at,
                              started_at, finished_at, duration, updated_at)
            SELECT 'old-' || lpad(n::text, 9, '0'), 'bench.noop', 'default', 2, 'finished', 1,
                   'jobengine.demo.noop', '()', 'bench-host:1:fast', t, t, t + interval '300 microseconds',
                   0.0003, t + interval '300 microseconds'
            FROM generate_series(0, %s - 1) AS n, LATERAL (SELECT %s::timestamptz + n * %s::interval AS t) AS x""",
                     (jobs, NOW - YEAR, step))
        conn.execute("""
            INSERT INTO job_logs (event_id, job_id, created_at, kind, level, attempt, message)
            SELECT CASE WHEN k = 0 THEN (1500000000000 + n) || '-0-s' ELSE (1500000000000 + n) || '-0' END,
                   'old-' || lpad(n::text, 9, '0'), t + k * interval '300 microseconds',
                   CASE WHEN k = 0 THEN 'started' ELSE 'finished' END, 'info', 1,
                   CASE WHEN k = 0 THEN 'attempt 1 started on bench-host:1:fast' ELSE 'finished in 0.000s' END
            FROM generate_series(0, %s - 1) AS n, generate_series(0, 1) AS k,
                 LATERAL (SELECT %s::timestamptz + n * %s::interval AS t) AS x""", (jobs, NOW - YEAR, step))
        for name, table, definition in defs:
            conn.execute(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')
        for _, definition in indexes:
            conn.execute(definition)
        conn.execute("VACUUM ANALYZE jobs")
        conn.execute("VACUUM ANALYZE job_logs")
    return time.perf_counter() - start


def rate(store: PostgresStore, prefix: str, events: int, batch: int, old: bool = False) -> float:
    """Events/s of the set-based apply (`old`: the per-event reference) on dispatched jobs."""
    jobs, evs = relabel(prefix, *workload(events))
    store.insert_jobs(jobs)
    apply = per_event(store) if old else store.apply_events
    start = time.perf_counter()
    for k in range(0, len(evs), batch):
        apply(evs[k:k + batch])
    return len(evs) / (time.perf_counter() - start)


def join_plan(url: str, batch: list[JobEvent]) -> str:
    """How apply_batch_jobs reaches `jobs` for this batch (EXPLAIN ANALYZE, rolled back)."""
    q = queries()
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        cur.execute(q["apply_batch_table"])
        with cur.copy(q["apply_batch_copy"]) as copy:
            copy.set_types(BATCH_TYPES)
            for row in batch_rows(in_order(batch)):
                copy.write_row(row)
        cur.execute(q["apply_batch_log"])
        plan = [r[0] for r in cur.execute("EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) " + q["apply_batch_jobs"])]
        conn.rollback()
    scans = sorted({line.strip().split(" (")[0].removeprefix("->  ") for line in plan
                    if " on jobs " in line and "Scan" in line})
    return "; ".join(scans)


def relabel(prefix: str, jobs: list[NewJob], events: list[JobEvent]) -> tuple[list[NewJob], list[JobEvent]]:
    """The same workload under other job and event ids (and now as its time)."""
    shift = NOW - datetime(2030, 1, 1, tzinfo=UTC)
    return ([NewJob(**{**j.__dict__, "id": f"{prefix}{j.id}", "created_at": j.created_at + shift}) for j in jobs],
            [JobEvent(**{**e.__dict__, "event_id": f"{prefix}{e.event_id}", "job_id": f"{prefix}{e.job_id}",
                         "at": e.at + shift}) for e in events])


def writer_latencies(store: PostgresStore, prefix: str, batch: int, stop: threading.Event,
                     out: list[float]) -> None:
    """Apply batches of fresh events until `stop`; each batch's seconds into `out`."""
    n = 0
    while not stop.is_set():
        jobs, evs = relabel(f"{prefix}{n}-", *workload(batch))
        store.insert_jobs(jobs)
        start = time.perf_counter()
        store.apply_events(evs)
        out.append(time.perf_counter() - start)
        n += 1


def summary(latencies: list[float], batch: int) -> str:
    qs = statistics.quantiles(latencies, n=100, method="inclusive") if len(latencies) > 1 else latencies * 99
    return (f"{len(latencies)} batches, {batch * len(latencies) / sum(latencies):,.0f} events/s, latency "
            f"p50 {qs[49] * 1000:.0f} ms, p99 {qs[98] * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms")


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--history", type=int, default=10_000_000, help="job_logs rows to load")
    p.add_argument("--prune", type=int, default=1_000_000, help="job_logs rows to prune while writing")
    p.add_argument("--events", type=int, default=20000)
    p.add_argument("--batch", type=int, default=2000)
    args = p.parse_args()
    with scratch_database(args.pg_url) as url, PostgresStore(url, max_size=2) as store:
        store.migrate()
        empty = rate(store, "a-", args.events, args.batch)
        print(f"apply, empty tables: {empty:,.0f} events/s ({args.events:,} events, batches of {args.batch:,})")
        seconds = preload(url, args.history)
        print(f"loaded {args.history:,} job_logs rows and {args.history // 2:,} jobs in {seconds:.0f}s")
        jobs, evs = relabel("p-", *workload(args.batch))
        store.insert_jobs(jobs)
        print(f"apply_batch_jobs reaches jobs by: {join_plan(url, evs)}")
        full = rate(store, "b-", args.events, args.batch)
        old = rate(store, "o-", args.events, args.batch, old=True)
        print(f"apply, {args.history:,} log rows present: {full:,.0f} events/s ({full / empty:.2f}x empty); "
              f"per-event apply {old:,.0f} events/s (set-based {full / old:.1f}x)")

        alone: list[float] = []
        stop = threading.Event()
        timer = threading.Timer(5.0, stop.set)
        timer.start()
        writer_latencies(store, "c-", args.batch, stop, alone)
        print(f"writer alone, 5 s: {summary(alone, args.batch)}")

        during: list[float] = []
        stop = threading.Event()
        writer = threading.Thread(target=writer_latencies, args=(store, "d-", args.batch, stop, during))
        cutoff = NOW - YEAR + YEAR * (args.prune / args.history)
        writer.start()
        start = time.perf_counter()
        with PostgresStore(url) as pruner:
            pruned = pruner.prune(cutoff)
        prune_seconds = time.perf_counter() - start
        stop.set()
        writer.join()
        print(f"prune: {pruned['job_logs']:,} log rows, {pruned['jobs']:,} jobs in {prune_seconds:.1f}s "
              f"({pruned['job_logs'] / prune_seconds:,.0f} log rows/s)")
        print(f"writer during the prune: {summary(during, args.batch)}")


if __name__ == "__main__":
    main()

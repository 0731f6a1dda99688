"""History apply: the set-based `PostgresStore.apply_events` against the per-event apply it
replaced (`batch.apply_one_by_one`: one `apply_event` statement per event), same run, same
database, interleaved.

N events, two per job as the fast worker sends them (a `finished` with its run's `started`
folded in), for jobs already dispatched (their rows exist), applied in batches of `--batch`
(each batch its own transaction, as the history writer commits them). Each run starts from empty
tables; the median of `--repeat` runs is reported, with the CPU seconds this process and the
server's backend spent (the backend's only when PostgreSQL runs on this machine).

    python -m bench.history_apply --events 20000 --batch 500,5000
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import LiteralString

from bench.common import parser, scratch_database
from jobengine.models import JobEvent, NewJob
from jobengine.store.batch import apply_one_by_one
from jobengine.store.postgres import PostgresStore
from jobengine.store.sqlfile import queries
from jobengine.types import EventKind, JobStatus, Priority

T0 = datetime(2030, 1, 1, tzinfo=UTC)


def workload(events: int) -> tuple[list[NewJob], list[JobEvent]]:
    """Dispatched rows and their events: `started` (id `<id>-s`) + `finished` per job."""
    jobs: list[NewJob] = []
    out: list[JobEvent] = []
    for n in range(events // 2):
        job_id, stream_id, at = f"bench-{n:08d}", f"{1893456000000 + n}-0", T0 + timedelta(microseconds=500 * n)
        jobs.append(NewJob(id=job_id, type="bench.noop", queue="default", priority=Priority.NORMAL,
                           status=JobStatus.QUEUED, func="jobengine.demo.noop", args="()",
                           created_at=at - timedelta(milliseconds=5)))
        out.append(JobEvent(event_id=f"{stream_id}-s", kind=EventKind.STARTED, job_id=job_id, queue="default",
                            at=at, type="bench.noop", attempt=1, worker="bench-host:1:fast"))
        out.append(JobEvent(event_id=stream_id, kind=EventKind.FINISHED, job_id=job_id, queue="default",
                            at=at + timedelta(microseconds=300), type="bench.noop", attempt=1, duration=0.0003,
                            worker="bench-host:1:fast"))
    return jobs, out


def _backend_cpu(pid: int | None) -> float:
    """CPU seconds of a local PostgreSQL backend (0 when it is not on this machine)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, TypeError, IndexError, ValueError):
        return 0.0


def _one(store: PostgresStore, sql: LiteralString) -> int:
    """One integer from the store's pooled connection (max_size=1: the backend that applies)."""
    row = store._run("probe", lambda conn: conn.execute(sql).fetchone())
    return int(next(iter(row.values()))) if row else 0


def old_apply(store: PostgresStore) -> Callable[[Sequence[JobEvent]], None]:
    """The per-event apply the set-based one replaced, in the store's own transaction handling."""
    q = queries()

    def apply(batch: Sequence[JobEvent]) -> None:
        def work(conn: object) -> None:
            with conn.cursor() as cur:  # type: ignore[attr-defined]
                apply_one_by_one(cur, q["apply_event"], q["resolve_failures"], batch)
        store._run("apply_events", work)

    return apply


def run(store: PostgresStore, mode: str, batch: int, jobs: list[NewJob], events: list[JobEvent],
        local: bool) -> tuple[float, float, float]:
    """(events/s, client CPU s, server CPU s) of one run from empty tables."""
    store.clear_history()
    for k in range(0, len(jobs), 5000):
        store.insert_jobs(jobs[k:k + 5000])
    apply = old_apply(store) if mode == "old" else store.apply_events
    pid = _one(store, "SELECT pg_backend_pid()") if local else None
    cpu, server = time.process_time(), _backend_cpu(pid)
    start = time.perf_counter()
    for k in range(0, len(events), batch):
        apply(events[k:k + batch])
    seconds = time.perf_counter() - start
    written = _one(store, "SELECT count(*) FROM job_logs")
    if written != len(events):
        raise SystemExit(f"{mode}: {written} log rows for {len(events)} events")
    return len(events) / seconds, time.process_time() - cpu, _backend_cpu(pid) - server


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--events", type=int, default=20000)
    p.add_argument("--batch", default="500,5000", help="comma-separated batch sizes")
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    jobs, events = workload(args.events)
    local = args.pg_url.split("@")[-1].startswith(("127.0.0.1", "localhost")) and Path("/proc").is_dir()
    print(f"{len(events):,} events ({len(jobs):,} jobs, 2 events each), median of {args.repeat} runs, "
          "interleaved")
    print(f"{'batch':>6} {'apply':<11} {'events/s':>10} {'client CPU s':>13} {'server CPU s':>13}")
    with scratch_database(args.pg_url) as url, PostgresStore(url, max_size=1) as store:
        store.migrate()
        for batch in (int(b) for b in args.batch.split(",")):
            results: dict[str, list[tuple[float, float, float]]] = {"old": [], "new": []}
            for _ in range(args.repeat):
                for mode in results:
                    results[mode].append(run(store, mode, batch, jobs, events, local))
            medians = {}
            for mode, runs in results.items():
                rate = statistics.median(r[0] for r in runs)
                medians[mode] = rate
                client = statistics.median(r[1] for r in runs)
                server = statistics.median(r[2] for r in runs)
                label = "per event" if mode == "old" else "set-based"
                print(f"{batch:>6} {label:<11} {rate:>10,.0f} {client:>13.2f} {server if local else 0:>13.2f}")
            print(f"{batch:>6} ratio set-based / per event: {medians['new'] / medians['old']:.1f}x")


if __name__ == "__main__":
    main()

"""PostgreSQL history store: jobs, their event logs, final failures and the audit trail.

The only module that imports psycopg. Every statement lives in `sql/queries.sql`; the schema in
`migrations/`. Any failure to reach the server, or any statement the server refuses, is raised as
`StoreUnavailable` with a one-line message that never contains the password.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, LiteralString, TypeVar

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool, PoolTimeout

from jobengine.errors import HistoryDataError, JobNotFound, StoreUnavailable
from jobengine.models import (
    FailedJob,
    FailureGroup,
    JobDetail,
    JobEvent,
    JobRecord,
    LogEntry,
    NewJob,
    RestorableJob,
    ThroughputPoint,
)
from jobengine.query import JobQuery
from jobengine.store.batch import BATCH_TYPES, batch_rows, event_message, in_order
from jobengine.store.batch import first_line as _first_line
from jobengine.store.filters import is_plain, query_params, search_params
from jobengine.store.sqlfile import migrations, queries
from jobengine.types import JobStatus, Priority

__all__ = ["PostgresStore", "event_message", "prefix_bounds", "search_params"]

T = TypeVar("T")
Row = dict[str, Any]
Conn = psycopg.Connection[Any]

PREFIX_MATCH_CAP = 1000
"""get_job counts at most this many ids sharing a prefix before calling it ambiguous."""

TRANSIENT_RETRIES = 3
"""A transaction the server aborted as a deadlock victim or serialization failure is run again
up to this many times in all."""
_SECRET_URL = re.compile(r"(://[^:/@\s]*:)[^@\s]*@")
_SECRET_KV = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


def _q(name: str) -> LiteralString:
    return queries()[name]


# ---- rows -> models (the only place that knows column names) -------------------------------------

def _job(row: Row) -> JobRecord:
    rank = row["priority"]
    return JobRecord(**{**row, "priority": None if rank is None else Priority.from_rank(rank),
                        "status": JobStatus(row["status"])})


def _failed(row: Row) -> FailedJob:
    return FailedJob(id=row["id"], job_id=row["job_id"], type=row["type"] or "unknown",
                     queue=row["queue"], error_class=row["error_class"] or "",
                     error_message=row["error_message"] or "", traceback=row["traceback"] or "",
                     fingerprint=row["fingerprint"] or "", failed_at=row["failed_at"],
                     attempts=row["attempts"] or 0, retried_at=row.get("retried_at"))


def _group(row: Row) -> FailureGroup:
    return FailureGroup(error_class=row["error_class"] or "", fingerprint=row["fingerprint"] or "",
                        sample_message=row["sample_message"] or "", count=row["n"],
                        first_seen=row["first_seen"], last_seen=row["last_seen"])


def _log(row: Row) -> LogEntry:
    return LogEntry(at=row["created_at"], kind=row["kind"] or "", level=row["level"],
                    message=row["message"] or "", attempt=row["attempt"], delay=row["delay"])


# ---- search and prefix helpers --------------------------------------------------------------------

def prefix_bounds(prefix: str) -> tuple[str, str | None]:
    """[lo, hi) such that, byte-wise (UTF-8 order = code point order), lo <= id < hi iff id starts
    with `prefix`; hi is None when no such bound exists (a prefix of only U+10FFFF)."""
    stem = prefix.rstrip(chr(0x10FFFF))
    if not stem:
        return prefix, None
    nxt = ord(stem[-1]) + 1
    if 0xD800 <= nxt <= 0xDFFF:  # surrogates cannot be encoded: skip to the next real code point
        nxt = 0xE000
    return prefix, stem[:-1] + chr(nxt)


def _is_connection_error(exc: BaseException) -> bool:
    """True when the failure is about reaching the server, not about the statement."""
    if isinstance(exc, (PoolTimeout, psycopg.InterfaceError)):
        return True
    if isinstance(exc, psycopg.OperationalError):
        state = exc.sqlstate
        return state is None or state.startswith(("08", "57P"))
    return False


def _is_transient(exc: BaseException) -> bool:
    """A deadlock victim or serialization failure: the transaction was rolled back; run it again."""
    return isinstance(exc, psycopg.Error) and exc.sqlstate in ("40P01", "40001")


def _is_data_error(exc: BaseException) -> bool:
    """The server (or psycopg, before sending) rejected a value: a NUL byte in text, a number or
    time out of range, a constraint, an index row too large. The same rows fail the same way."""
    if isinstance(exc, (psycopg.DataError, psycopg.IntegrityError)):
        return True
    return isinstance(exc, psycopg.Error) and (exc.sqlstate or "").startswith(("22", "23", "54"))


class PostgresStore:
    """Job history in PostgreSQL behind a small, lazily opened connection pool. Thread-safe."""

    def __init__(self, dsn: str, *, min_size: int = 1, max_size: int = 4,
                 connect_timeout: float = 3.0) -> None:
        self._dsn = dsn
        self._min_size = min_size
        self._max_size = max(max_size, min_size)
        self._timeout = connect_timeout
        self._pool: ConnectionPool[Any] | None = None
        self._lock = threading.Lock()
        self._password, self.target = self._describe(dsn)
        self.transient_retries = 0
        """Transactions run again after the server aborted them as deadlock victims."""

    # ---- connection handling ------------------------------------------------------------------
    @staticmethod
    def _describe(dsn: str) -> tuple[str | None, str]:
        """(password, "HOST:PORT/DB") of the DSN, for scrubbing and for messages."""
        try:
            info = conninfo_to_dict(dsn)
        except psycopg.Error:
            return None, "<invalid database URL>"
        host = str(info.get("host") or info.get("hostaddr") or "localhost")
        port = str(info.get("port") or 5432)
        db = str(info.get("dbname") or info.get("user") or "postgres")
        password = info.get("password")
        return (str(password) if password else None), f"{host}:{port}/{db}"

    def _scrub(self, text: str) -> str:
        if self._password:
            text = text.replace(self._password, "***")
        return _SECRET_KV.sub(r"\1***", _SECRET_URL.sub(r"\1***@", text))

    def _unreachable(self, reason: str) -> StoreUnavailable:
        return StoreUnavailable(f"PostgreSQL at {self.target} is unreachable: {self._scrub(reason)}; "
                                "check the database URL and that the server is running")

    def _probe(self) -> str | None:
        """Connect once outside the pool: None if the server answers, else the reason it does not."""
        try:
            with psycopg.connect(self._dsn, connect_timeout=max(1, round(self._timeout)), autocommit=True):
                return None
        except Exception as exc:  # psycopg raises several types for a bad DSN or host
            return _first_line(str(exc)) or type(exc).__name__

    @staticmethod
    def _configure(conn: Conn) -> None:
        conn.execute("SET TIME ZONE 'UTC'")
        conn.commit()

    def _ensure_pool(self) -> ConnectionPool[Any]:
        with self._lock:
            if self._pool is None:
                reason = self._probe()  # a fast, precise reason instead of a pool timeout
                if reason is not None:
                    raise self._unreachable(reason)
                pool: ConnectionPool[Any] = ConnectionPool(
                    self._dsn, min_size=self._min_size, max_size=self._max_size, open=False,
                    timeout=self._timeout, configure=self._configure, name="jobengine-store",
                    kwargs={"row_factory": dict_row, "connect_timeout": max(1, round(self._timeout))})
                pool.open(wait=False)
                self._pool = pool
            return self._pool

    def _discard_pool(self, pool: ConnectionPool[Any]) -> None:
        with self._lock:
            if self._pool is pool:
                self._pool = None
        pool.close(timeout=0)

    def _run(self, name: str, work: Callable[[Conn], T], refused: type[StoreUnavailable] = StoreUnavailable) -> T:
        """Run `work` in one transaction on a pooled connection, translating every database error.

        A connection-level failure drops the whole pool (a restarted server leaves every pooled
        connection dead) and retries once on fresh connections; a deadlock victim runs again (up to
        TRANSIENT_RETRIES times); every statement here is idempotent. A data error is raised as
        `refused` (the caller's subclass of StoreUnavailable).
        """
        dropped = transient = 0
        while True:
            pool = self._ensure_pool()
            try:
                with pool.connection() as conn:
                    return work(conn)
            except psycopg.Error as exc:
                if _is_transient(exc) and transient < TRANSIENT_RETRIES - 1:
                    transient += 1
                    self.transient_retries += 1
                    continue
                if not _is_connection_error(exc):
                    data = _is_data_error(exc) and refused is not StoreUnavailable
                    raise (refused if data else StoreUnavailable)(
                        f"PostgreSQL refused {name}{' as data' if data else ''}: "
                        f"{self._scrub(_first_line(str(exc)))}") from None
                self._discard_pool(pool)
                dropped += 1
                if dropped == 2:
                    raise self._unreachable(_first_line(str(exc))) from None
            except PoolTimeout:
                reason = self._probe()
                if reason is None:
                    raise StoreUnavailable(f"PostgreSQL at {self.target} is busy: no pooled connection free "
                                           f"after {self._timeout:g}s for {name}") from None
                self._discard_pool(pool)
                raise self._unreachable(reason) from None

    def _rows(self, name: str, params: Mapping[str, Any] | None = None) -> list[Row]:
        return self._run(name, lambda conn: conn.execute(_q(name), params).fetchall())

    def _scalar(self, name: str, params: Mapping[str, Any] | None = None) -> Any:
        rows = self._rows(name, params)
        return next(iter(rows[0].values())) if rows else None

    def close(self) -> None:
        """Close the pool; the store opens a new one if used again."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()

    def __enter__(self) -> PostgresStore:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def ping(self) -> bool:
        """True when PostgreSQL answers a query; never raises."""
        try:
            return self._scalar("ping") == 1
        except Exception:
            return False

    def explain(self, name: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The plan of a named query as EXPLAIN (FORMAT JSON) gives it (its top "Plan" object)."""
        sql = "EXPLAIN (FORMAT JSON) " + _q(name)
        rows = self._run(f"explain {name}", lambda conn: conn.execute(sql, params).fetchall())
        return dict(next(iter(rows[0].values()))[0]["Plan"])

    # ---- schema -------------------------------------------------------------------------------
    def migrate(self) -> list[str]:
        """Apply the migrations not yet recorded in `schema_migrations`; returns their names.

        One transaction under an advisory lock, so concurrent callers apply each migration once.
        """
        def work(conn: Conn) -> list[str]:
            applied: list[str] = []
            with conn.transaction():
                conn.execute(_q("migrate_lock"))
                conn.execute(_q("migrate_table"))
                done = {row["name"] for row in conn.execute(_q("migrate_applied"))}
                for name, script in migrations():
                    if name not in done:
                        conn.execute(script)
                        conn.execute(_q("migrate_record"), {"name": name})
                        applied.append(name)
            return applied

        return self._run("migrate", work)

    def migration_state(self) -> tuple[list[str], list[str]]:
        """(applied, pending) migration names, read only: a fresh database has none applied."""
        def work(conn: Conn) -> list[str]:
            row = conn.execute(_q("migrate_state")).fetchone()
            if not row or not row["ready"]:
                return []
            return [r["name"] for r in conn.execute(_q("migrate_applied"))]

        done = set(self._run("migration state", work))
        names = [name for name, _ in migrations()]
        return [n for n in names if n in done], [n for n in names if n not in done]

    # ---- writes -------------------------------------------------------------------------------
    def insert_jobs(self, rows: Sequence[NewJob]) -> None:
        """Write dispatched jobs in one statement (a row the worker's history made first is filled in;
        one a dispatch wrote is left alone)."""
        if not rows:
            return
        params = {
            "id": [r.id for r in rows], "type": [r.type for r in rows], "queue": [r.queue for r in rows],
            "priority": [r.priority.rank for r in rows], "status": [r.status.value for r in rows],
            "func": [r.func for r in rows], "args": [r.args for r in rows],
            "created_at": [r.created_at for r in rows], "scheduled_for": [r.scheduled_for for r in rows],
            "payload": [r.payload for r in rows],
            "options": [None if r.options is None else json.dumps(r.options) for r in rows],
        }
        self._run("insert_jobs", lambda conn: conn.execute(_q("insert_jobs"), params))

    def apply_events(self, events: Sequence[JobEvent]) -> int:
        """Apply a batch of events in one transaction and a few statements whatever its size;
        returns how many of them were new.

        The batch is COPYed into a temporary table, then folded per job (sql/queries.sql,
        `apply_batch_*`) exactly as `batch.apply_one_by_one` applies it event by event, oldest
        first. Idempotent: an event whose id is already in job_logs changes nothing. Status only
        moves forward in time (events older than the row's updated_at only fill missing fields).
        Concurrent writers lock rows in one order, so they neither deadlock nor lose updates.
        Raises HistoryDataError when PostgreSQL rejects a value of the batch (the same batch
        fails the same way: split it to find the event), StoreUnavailable otherwise.
        """
        return self.apply_rows(batch_rows(in_order(events)))

    def apply_rows(self, rows: Sequence[Sequence[Any]]) -> int:
        """`apply_events` of rows already built (`batch.batch_rows`/`batch.ordered_rows`: BATCH_COLUMNS,
        oldest first, each event id once), as the history writer sends them."""
        if not rows:
            return 0

        def work(conn: Conn) -> int:
            # COPY, not a pipelined INSERT of arrays: in one pipeline the apply saved no time here
            # and cost the process 0.67 ms of Python per batch of 66 rows, COPY 0.40
            with conn.cursor() as cur:
                cur.execute(_q("apply_batch_table"))
                with cur.copy(_q("apply_batch_copy")) as copy:
                    copy.set_types(BATCH_TYPES)
                    for row in rows:
                        copy.write_row(row)
                # never prepared: a plan cached per connection would keep the row estimates of
                # the day it was made while `jobs` grows (a seq scan planned on an empty table)
                stale = cur.execute(_q("apply_batch_log"), prepare=False).rowcount
                if stale < len(rows):
                    cur.execute(_q("apply_batch_jobs"), prepare=False)
            return len(rows) - stale

        return self._run("apply_events", work, refused=HistoryDataError)

    def resolve_failures(self, job_ids: Sequence[str], at: datetime) -> int:
        """Take the open failures of `job_ids` up to `at` off the failed list in one UPDATE: the
        jobs were put back on their queue. Idempotent; the rows stay as history. Returns the rows
        resolved."""
        if not job_ids:
            return 0
        params = {"ids": list(job_ids), "ats": [at] * len(job_ids)}
        return self._run("resolve_failures", lambda conn: conn.execute(_q("resolve_failures"), params).rowcount)

    def has_history(self) -> bool:
        return bool(self._scalar("has_history"))

    def clear_history(self) -> None:
        """Delete every job, log line, failure and audit row (used by the demo's fresh start)."""
        self._run("clear_history", lambda conn: conn.execute(_q("clear_history")))

    def record_audit(self, action: str, job_id: str | None, os_user: str, host: str,
                     detail: str = "") -> None:
        """Append one line to the audit log."""
        params = {"action": action, "job_id": job_id, "os_user": os_user, "host": host, "detail": detail}
        self._run("record_audit", lambda conn: conn.execute(_q("record_audit"), params))

    def record_job_log(self, job_id: str, kind: str, level: str, message: str) -> None:
        """Append a line to a job's log (now, no event id): what the engine notes itself."""
        params = {"job_id": job_id, "kind": kind, "level": level, "message": message}
        self._run("record_job_log", lambda conn: conn.execute(_q("record_job_log"), params))

    def record_audits(self, action: str, job_ids: Sequence[str], os_user: str, host: str) -> None:
        """One audit line per job for one action, in one transaction and one round trip."""
        params = [{"action": action, "job_id": j, "os_user": os_user, "host": host, "detail": ""}
                  for j in job_ids]

        def work(conn: Conn) -> None:
            with conn.cursor() as cur:
                cur.executemany(_q("record_audit"), params)

        if params:
            self._run("record_audit", work)

    # ---- reads --------------------------------------------------------------------------------
    def active_jobs(self, limit: int = 100) -> list[JobRecord]:
        """Queued, scheduled and processing jobs created in the last 7 days, highest priority
        first (jobs without a lane last), then oldest first."""
        return [_job(r) for r in self._rows("active_jobs", {"limit": limit})]

    def failed_jobs(self, limit: int = 50, before: tuple[datetime, int] | None = None,
                    search: str | JobQuery | None = None) -> list[FailedJob]:
        """Newest failures first. Pass the last row's (failed_at, id) as `before` for the next page.

        `search` is a typed search (jobengine.query: type:, queue:, since:, error:, args:, id:)
        whose free text matches type, queue, error class or message (substring) or a job id
        prefix, ignoring case; free text filters while walking the time index, so rare terms read
        more rows, while type: and queue: walk their own index.
        """
        before_at, before_id = before if before is not None else ("infinity", 2**63 - 1)
        params = {"limit": limit, "before_at": before_at, "before_id": before_id, **query_params(search)}
        return [_failed(r) for r in self._rows("failed_page", params)]

    def failed_total(self, search: str | JobQuery | None = None) -> int:
        """Exact number of open (not retried) failures matching `search`; without one, an O(1)
        counter read."""
        if search is None or is_plain(search):
            return int(self._scalar("failed_count"))
        return int(self._scalar("failed_total", query_params(search)))

    def failed_filtered_ids(self, search: str | JobQuery | None, before: tuple[datetime, int] | None = None,
                            limit: int = 1000) -> tuple[list[str], tuple[datetime, int] | None]:
        """One batch of a bulk action: job ids of open failures matching `search`, newest first
        after the keyset cursor `before`; and the cursor of the next batch (None: the last)."""
        before_at, before_id = before if before is not None else ("infinity", 2**63 - 1)
        rows = self._rows("failed_filtered_ids", {"limit": limit, "before_at": before_at, "before_id": before_id,
                                                  **query_params(search)})
        cursor = (rows[-1]["failed_at"], rows[-1]["id"]) if len(rows) == limit else None
        return list(dict.fromkeys(r["job_id"] for r in rows)), cursor

    def in_flight_total(self, search: str | JobQuery | None = None) -> int:
        """Queued, scheduled and running jobs (as history knows them) matching `search`."""
        return int(self._scalar("in_flight_total", query_params(search)))

    def in_flight_filtered_ids(self, search: str | JobQuery | None, after: tuple[datetime, str] | None = None,
                               limit: int = 1000) -> tuple[list[str], tuple[datetime, str] | None]:
        """One batch of a bulk cancel: in-flight job ids matching `search`, oldest first after
        the keyset cursor `after`; and the next batch's cursor (None: the last)."""
        after_at, after_id = after if after is not None else ("-infinity", "")
        rows = self._rows("in_flight_filtered", {"limit": limit, "after_at": after_at, "after_id": after_id,
                                                 **query_params(search)})
        cursor = (rows[-1]["created_at"], rows[-1]["id"]) if len(rows) == limit else None
        return [r["id"] for r in rows], cursor

    def failure_groups(self, limit: int = 100, search: str | JobQuery | None = None,
                       days: int | None = 7) -> list[FailureGroup]:
        """Failures grouped by (error class, fingerprint), biggest first, each with its newest
        message. Only failures of the last `days` days count (None: all time) to stay cheap."""
        params = {"limit": limit, "days": days, **query_params(search)}
        return [_group(r) for r in self._rows("failure_groups", params)]

    def recent_failure_groups(self, since: datetime, limit: int = 100,
                              days: int = 7) -> list[tuple[FailureGroup, bool]]:
        """Groups with failures since `since` (retried ones too), counted in that window, biggest
        first, each with whether it is new (no open failure of it in the `days` before)."""
        rows = self._rows("recent_failure_groups", {"since": since, "limit": limit, "days": days})
        return [(_group(r), bool(r["is_new"])) for r in rows]

    def failed_job_ids_in_group(self, fingerprint: str, limit: int = 10000) -> list[str]:
        """Distinct job ids with a failure of this fingerprint, most recent failure first."""
        rows = self._rows("failed_job_ids_in_group", {"fingerprint": fingerprint, "limit": limit})
        return [r["job_id"] for r in rows]

    def stuck_jobs(self, older_than_seconds: float, limit: int = 100) -> list[JobRecord]:
        """Jobs processing for longer than `older_than_seconds`, oldest start first."""
        params = {"seconds": float(older_than_seconds), "limit": limit}
        return [_job(r) for r in self._rows("stuck_jobs", params)]

    def failures_since(self, since: datetime) -> int:
        """Number of final failures recorded at or after `since` and not retried since."""
        return int(self._scalar("failures_since", {"since": since}))

    def throughput_per_minute(self, since: datetime, until: datetime | None = None) -> list[ThroughputPoint]:
        """Jobs finished successfully and jobs failed per minute from `since` to `until` (now),
        one point per minute including empty ones."""
        rows = self._rows("throughput", {"since": since, "until": until})
        return [ThroughputPoint(minute=r["minute"], processed=r["processed"], failed=r["failed"])
                for r in rows]

    def get_job(self, job_id_or_prefix: str) -> JobDetail | None:
        """A job with its logs (oldest first) and latest failure, by id or unique id prefix.

        Raises JobNotFound when the prefix matches more than one job.
        """
        key = job_id_or_prefix.strip()
        if not key:
            return None

        def work(conn: Conn) -> JobDetail | None:
            row = conn.execute(_q("job_by_id"), {"id": key}).fetchone()
            if row is None:
                lo, hi = prefix_bounds(key)
                if hi is None:
                    return None
                match = conn.execute(_q("job_prefix_matches"),
                                     {"lo": lo, "hi": hi, "cap": PREFIX_MATCH_CAP + 1}).fetchone()
                count = match["matches"] if match else 0
                if count > 1:
                    many = f"more than {PREFIX_MATCH_CAP}" if count > PREFIX_MATCH_CAP else str(count)
                    raise JobNotFound(f"prefix {key!r} matches {many} jobs; type more of the id")
                if count == 0 or match is None:
                    return None
                row = conn.execute(_q("job_by_id"), {"id": match["id"]}).fetchone()
                if row is None:
                    return None
            logs = conn.execute(_q("job_logs"), {"id": row["id"]}).fetchall()
            failure = conn.execute(_q("job_failure"), {"id": row["id"]}).fetchone()
            return JobDetail(record=_job(row), logs=tuple(_log(r) for r in logs),
                             failure=_failed(failure) if failure else None)

        return self._run("get_job", work)

    def job_status(self, job_id: str) -> JobStatus | None:
        """The recorded status of one job, or None if there is no row."""
        status = self._scalar("job_status", {"id": job_id})
        return JobStatus(status) if status is not None else None

    def get_jobs(self, ids: Sequence[str]) -> list[JobRecord]:
        """The rows of these ids, in the order given; unknown ids are skipped."""
        if not ids:
            return []
        return [_job(r) for r in self._rows("get_jobs", {"ids": list(ids)})]

    def stats_by_status_type(self) -> list[tuple[str, str, int]]:
        """(status, type, jobs) over the whole history (expensive on a big table: cache it)."""
        return [(r["status"], r["type"], int(r["n"])) for r in self._rows("stats_by_status_type")]

    def audit_entries(self, limit: int = 50, since: datetime | None = None) -> list[dict[str, Any]]:
        """Newest audit lines first (since `since`): dicts with id, at, action, job_id, os_user, host, detail."""
        return self._rows("audit_entries", {"limit": limit, "since": since})

    def audit_for_job(self, job_id: str, limit: int = 200) -> list[dict[str, Any]]:
        """The audit lines naming one job, oldest first."""
        return self._rows("audit_for_job", {"job_id": job_id, "limit": limit})

    # ---- reconcile (jobengine.reconcile) -------------------------------------------------------
    def in_flight_count(self) -> int:
        """Jobs queued, scheduled or processing."""
        return int(self._scalar("reconcile_count"))

    def in_flight_page(self, priority: Priority | None, after: tuple[datetime, str] | None,
                       limit: int = 500) -> list[tuple[str, JobStatus, datetime]]:
        """(id, status, created_at) of in-flight jobs of one priority (None: off the lanes),
        oldest first; pass the last row's (created_at, id) as `after` for the next page."""
        after_at, after_id = after if after is not None else ("-infinity", "")
        params = {"priority": None if priority is None else priority.rank, "after_at": after_at,
                  "after_id": after_id, "limit": limit}
        name = "reconcile_page" if priority is not None else "reconcile_page_unranked"
        return [(r["id"], JobStatus(r["status"]), r["created_at"]) for r in self._rows(name, params)]

    def restorable_jobs(self, ids: Sequence[str]) -> list[RestorableJob]:
        """What re-creates these jobs; only those still in flight are returned."""
        if not ids:
            return []
        return [RestorableJob(id=r["id"], queue=r["queue"], status=JobStatus(r["status"]), attempts=r["attempts"],
                              created_at=r["created_at"], scheduled_for=r["scheduled_for"],
                              payload=None if r["payload"] is None else bytes(r["payload"]), options=r["options"])
                for r in self._rows("reconcile_rows", {"ids": list(ids)})]

    def redis_epoch(self) -> str | None:
        """The epoch of the Redis this history belongs to, as last recorded (None: never)."""
        return self._scalar("epoch_get")

    def record_redis_epoch(self, epoch: str, *, replace: bool) -> None:
        """Record the Redis epoch: always with `replace` (a reconciled reset), else only when
        none is recorded yet."""
        name = "epoch_set" if replace else "epoch_init"
        self._run(name, lambda conn: conn.execute(_q(name), {"epoch": epoch}))

    # ---- maintenance --------------------------------------------------------------------------
    def prune(self, older_than: datetime, keep_failed_since: datetime | None = None,
              batch_size: int = 5000, dry_run: bool = False,
              progress: Callable[[int], None] | None = None) -> dict[str, int]:
        """Delete history: finished, canceled and stopped jobs finished before `older_than`, failed
        jobs and failed_jobs rows before `keep_failed_since` (default `older_than`), and the logs
        of the deleted jobs. Never touches jobs in flight.

        Works in batches of `batch_size`, each its own short transaction; `progress` gets the
        running total of rows deleted after each batch. `dry_run` only counts. Returns the rows
        deleted (or that would be) per table.
        """
        base = {"cutoff": older_than, "failed_cutoff": keep_failed_since or older_than}
        if dry_run:
            def count(conn: Conn) -> dict[str, int]:
                jobs = conn.execute(_q("prune_count_jobs"), base).fetchone() or {}
                failed = conn.execute(_q("prune_count_failed"), base).fetchone() or {}
                return {"jobs": int(jobs.get("jobs", 0)), "job_logs": int(jobs.get("job_logs", 0)),
                        "failed_jobs": int(failed.get("n", 0))}
            return self._run("prune", count)

        totals = {"jobs": 0, "job_logs": 0, "failed_jobs": 0}
        batch = max(1, batch_size)
        params = {**base, "batch": batch}
        while True:
            row = self._run("prune", lambda c: c.execute(_q("prune_jobs_batch"), params).fetchone())
            jobs, logs = (int(row["jobs"]), int(row["job_logs"])) if row else (0, 0)
            totals["jobs"] += jobs
            totals["job_logs"] += logs
            if progress is not None and jobs:
                progress(sum(totals.values()))
            if jobs < batch:
                break
        while True:
            gone = self._run("prune", lambda c: c.execute(_q("prune_failed_batch"), params).rowcount)
            totals["failed_jobs"] += max(gone, 0)
            if progress is not None and gone > 0:
                progress(sum(totals.values()))
            if gone < batch:
                break
        return totals

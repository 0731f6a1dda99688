-- Every statement the store runs, by name (see jobengine/store/sqlfile.py).
-- Job rows are always selected with the same columns so one function turns them into JobRecords.

-- ---- migrations ----------------------------------------------------------------------------

-- name: migrate_lock
SELECT pg_advisory_xact_lock(7230814501)

-- name: migrate_table
CREATE TABLE IF NOT EXISTS schema_migrations (
    name       text PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
)

-- name: migrate_applied
SELECT name FROM schema_migrations

-- name: migrate_state
-- The migrations recorded, or none when the table is not there yet (a fresh database).
SELECT to_regclass('schema_migrations') IS NOT NULL AS ready

-- name: migrate_record
INSERT INTO schema_migrations (name) VALUES (%(name)s)

-- name: ping
SELECT 1

-- ---- writes ---------------------------------------------------------------------------------

-- name: insert_jobs
INSERT INTO jobs (id, type, queue, priority, status, func, args, created_at, scheduled_for, payload,
                  options, updated_at)
SELECT r.id, r.type, r.queue, r.priority, r.status, r.func, r.args, r.created_at, r.scheduled_for,
       r.payload, r.options::jsonb, r.created_at
FROM unnest(%(id)s::text[], %(type)s::text[], %(queue)s::text[], %(priority)s::smallint[],
            %(status)s::text[], %(func)s::text[], %(args)s::text[], %(created_at)s::timestamptz[],
            %(scheduled_for)s::timestamptz[], %(payload)s::bytea[], %(options)s::text[])
     AS r(id, type, queue, priority, status, func, args, created_at, scheduled_for, payload, options)
-- In id order, the order a history batch locks jobs in: a dispatch racing the history of its own
-- jobs then waits behind the batch instead of deadlocking with it (the victim loses deadlock_timeout).
ORDER BY r.id
-- A row already there: dispatch enqueues before it writes, so a fast worker's history may have
-- made the row first; fill what its events left empty. A row a dispatch wrote (it has a
-- payload) is left alone.
ON CONFLICT (id) DO UPDATE SET
    type = CASE WHEN jobs.type = 'unknown' OR jobs.type = jobs.func THEN EXCLUDED.type ELSE jobs.type END,
    priority = coalesce(jobs.priority, EXCLUDED.priority), func = coalesce(jobs.func, EXCLUDED.func),
    args = coalesce(jobs.args, EXCLUDED.args), created_at = least(jobs.created_at, EXCLUDED.created_at),
    scheduled_for = coalesce(jobs.scheduled_for, EXCLUDED.scheduled_for),
    payload = EXCLUDED.payload, options = EXCLUDED.options
WHERE jobs.payload IS NULL

-- ---- history: the set-based apply (PostgresStore.apply_events) --------------------------------
-- A batch is COPYed into history_batch (one row per event, `pos` = its place in event order),
-- then three statements apply it whatever its size. Row locks are taken in one global order
-- (job_logs by event id, then jobs by id, then failed_jobs of those jobs, then the failed
-- counter), so concurrent writers queue on shared jobs instead of deadlocking.

-- name: apply_batch_table
CREATE TEMPORARY TABLE IF NOT EXISTS history_batch (
    pos int NOT NULL, event_id text NOT NULL, job_id text NOT NULL, at timestamptz NOT NULL,
    kind text NOT NULL, level text NOT NULL, attempt int, delay float8, message text, type text,
    queue text NOT NULL, priority smallint, func text, args text, worker text, duration float8,
    scheduled_for timestamptz, error_class text, error_message text, traceback text, fingerprint text
) ON COMMIT DELETE ROWS

-- name: apply_batch_copy
COPY history_batch (pos, event_id, job_id, at, kind, level, attempt, delay, message, type, queue,
                    priority, func, args, worker, duration, scheduled_for, error_class,
                    error_message, traceback, fingerprint) FROM STDIN (FORMAT BINARY)

-- name: apply_batch_log
-- The log rows gate everything: events whose id is already in job_logs leave the batch. Every
-- job of a new event is then locked in id order; a job without a row gets a neutral one
-- (updated_at -infinity: every event is newer; created_at infinity: the oldest event sets it)
-- that apply_batch_jobs fills in. Returns the number of events already applied.
WITH logged AS (
    INSERT INTO job_logs (event_id, job_id, created_at, kind, level, attempt, delay, message)
    SELECT event_id, job_id, at, kind, level, attempt, delay, message
    FROM history_batch
    ORDER BY event_id
    ON CONFLICT (event_id) DO NOTHING
    RETURNING event_id
), locked AS (
    INSERT INTO jobs AS j (id, type, queue, status, attempts, created_at, updated_at)
    SELECT DISTINCT ON (b.job_id) b.job_id, 'unknown', b.queue, 'queued', 0, 'infinity'::timestamptz,
           '-infinity'::timestamptz
    FROM logged l JOIN history_batch b ON b.event_id = l.event_id
    ORDER BY b.job_id, b.pos
    ON CONFLICT (id) DO UPDATE SET updated_at = j.updated_at WHERE false  -- locks, changes nothing
)
DELETE FROM history_batch b WHERE NOT EXISTS (SELECT 1 FROM logged l WHERE l.event_id = b.event_id)

-- name: apply_batch_jobs
-- Each job's new events folded onto its locked row as apply_event would apply them one by one in
-- `pos` order. An event wins when it is not older than the row's updated_at (the winners are
-- the newest events, a suffix of the job's events); only winners move status, end, schedule,
-- duration and the running worker; every event fills gaps, counts attempts and may set the type.
-- Then the batch's failures (born retried when a later `requeued` event is logged) and the
-- open failures its `requeued` events resolve.
WITH e AS (
    SELECT b.*, j.ctid AS row_id, j.updated_at = '-infinity' AS neutral, j.started_at AS s0, j.attempts AS a0,
           b.at >= j.updated_at AS wins,
           b.kind = 'started' AND b.attempt IS NULL AS bump,
           CASE WHEN b.kind IN ('started', 'finished', 'failed') THEN coalesce(b.attempt, 0) ELSE 0 END AS ran
    FROM history_batch b JOIN jobs j ON j.id = b.job_id
), running AS (
    -- started_before is read on `finished` and `failed` rows only, so the frame may include the row
    SELECT e.*,
           count(*) FILTER (WHERE bump) OVER upto AS bumps,  -- starts without an attempt so far
           coalesce(max(at) FILTER (WHERE wins AND kind = 'started') OVER upto, s0,
                    min(at) FILTER (WHERE kind = 'started') OVER upto) AS started_before
    FROM e
    WINDOW upto AS (PARTITION BY job_id ORDER BY pos ROWS UNBOUNDED PRECEDING)
), marked AS (
    -- the position of the event that decides each field, and the attempts so far: after event k
    -- they are bumps_k + greatest(a0, max over i <= k of (ran_i - bumps_i))
    SELECT running.*,
           CASE WHEN wins AND kind IN ('finished', 'failed')
                THEN coalesce(duration, extract(epoch FROM at - started_before)::float8) END AS run_time,
           max(ran - bumps) OVER (PARTITION BY job_id ORDER BY pos ROWS UNBOUNDED PRECEDING) AS ran_max,
           max(pos) OVER job AS p_last, min(pos) OVER job AS p_first,
           min(pos) FILTER (WHERE type IS NOT NULL) OVER job AS p_type,
           min(pos) FILTER (WHERE func IS NOT NULL) OVER job AS p_func,
           min(pos) FILTER (WHERE args IS NOT NULL) OVER job AS p_args,
           min(pos) FILTER (WHERE priority IS NOT NULL) OVER job AS p_priority,
           min(pos) FILTER (WHERE worker IS NOT NULL) OVER job AS p_worker,
           max(pos) FILTER (WHERE wins AND kind = 'started' AND worker IS NOT NULL) OVER job AS p_runner,
           max(pos) FILTER (WHERE wins AND kind IN ('finished', 'failed', 'canceled', 'stopped',
                                                    'queued', 'requeued')) OVER job AS p_end,
           max(pos) FILTER (WHERE wins AND kind IN ('failed', 'queued', 'requeued')) OVER job AS p_fail,
           max(pos) FILTER (WHERE wins AND kind IN ('finished', 'failed')
                            AND coalesce(duration, extract(epoch FROM at - started_before)) IS NOT NULL)
               OVER job AS p_run_time,
           max(pos) FILTER (WHERE wins AND kind IN ('retry', 'deferred', 'scheduled')
                            AND scheduled_for IS NOT NULL) OVER job AS p_schedule
    FROM running
    WINDOW job AS (PARTITION BY job_id ORDER BY pos ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)
), folded AS (
    SELECT job_id, row_id,
           bool_or(wins) AS any_wins,
           max(kind) FILTER (WHERE pos = p_last) AS last_kind,
           min(at) AS first_at, max(at) AS last_at,
           max(type) FILTER (WHERE pos = p_type) AS first_type,
           max(func) FILTER (WHERE pos = p_first) AS opening_func,
           max(func) FILTER (WHERE pos = p_func) AS first_func,
           max(args) FILTER (WHERE pos = p_args) AS first_args,
           max(priority) FILTER (WHERE pos = p_priority) AS first_priority,
           max(worker) FILTER (WHERE pos = p_worker) AS first_worker,
           max(worker) FILTER (WHERE pos = p_runner) AS runner,
           max(at) FILTER (WHERE wins AND kind = 'started') AS last_start,
           min(at) FILTER (WHERE kind = 'started') AS first_start,
           max(p_end) IS NOT NULL AS ends,
           max(at) FILTER (WHERE pos = p_end AND kind IN ('finished', 'failed', 'canceled', 'stopped')) AS end_at,
           max(p_fail) IS NOT NULL AS fails,
           max(at) FILTER (WHERE pos = p_fail AND kind = 'failed') AS fail_at,
           max(run_time) FILTER (WHERE pos = p_run_time) AS run_time,
           max(scheduled_for) FILTER (WHERE pos = p_schedule) AS scheduled_for,
           max(bumps) AS bumps, max(ran - bumps) AS ran_max
    FROM marked
    GROUP BY job_id, row_id
), updated AS (
    UPDATE jobs j SET
        status = CASE WHEN NOT f.any_wins THEN j.status
                      WHEN f.last_kind = 'started' THEN 'processing'
                      WHEN f.last_kind IN ('retry', 'deferred') THEN 'scheduled'
                      WHEN f.last_kind = 'requeued' THEN 'queued'
                      ELSE f.last_kind END,
        updated_at = greatest(j.updated_at, f.last_at),
        created_at = least(j.created_at, f.first_at),
        type = CASE WHEN j.updated_at = '-infinity' THEN coalesce(f.first_type, f.opening_func, 'unknown')
                    WHEN f.first_type IS NOT NULL AND (j.type = 'unknown' OR j.type = j.func) THEN f.first_type
                    ELSE j.type END,
        priority = coalesce(j.priority, f.first_priority),
        func = coalesce(j.func, f.first_func),
        args = coalesce(j.args, f.first_args),
        attempts = f.bumps + greatest(j.attempts, f.ran_max),
        worker = coalesce(f.runner, j.worker, f.first_worker),
        started_at = coalesce(f.last_start, j.started_at, f.first_start),
        finished_at = CASE WHEN f.ends THEN f.end_at ELSE j.finished_at END,
        failed_at = CASE WHEN f.fails THEN f.fail_at ELSE j.failed_at END,
        duration = coalesce(f.run_time, j.duration),
        scheduled_for = coalesce(f.scheduled_for, j.scheduled_for)
    FROM folded f
    WHERE j.ctid = f.row_id  -- the row locked by apply_batch_log and read by `e`: no second index lookup
    RETURNING j.id, j.type
), resolved AS (
    -- open failures from earlier batches, each resolved by the batch's first retry at or after it
    UPDATE failed_jobs o SET retried_at = r.at
    FROM (SELECT DISTINCT ON (x.id) x.id, u.at
          FROM history_batch u
          JOIN failed_jobs x ON x.job_id = u.job_id AND x.failed_at <= u.at AND x.retried_at IS NULL
          WHERE u.kind = 'requeued'
          ORDER BY x.id, u.at) AS r
    WHERE o.id = r.id AND o.retried_at IS NULL
)
INSERT INTO failed_jobs (event_id, job_id, type, queue, error_class, error_message, traceback,
                         fingerprint, failed_at, attempts, retried_at)
SELECT m.event_id, m.job_id,
       coalesce(m.type, CASE WHEN NOT (m.neutral AND m.pos = m.p_first) THEN u.type END, m.func, 'unknown'),
       m.queue, m.error_class, m.error_message, m.traceback, m.fingerprint, m.at,
       coalesce(m.attempt, m.bumps + greatest(m.a0, m.ran_max)),
       (SELECT min(r.created_at) FROM job_logs r
        WHERE r.job_id = m.job_id AND r.kind = 'requeued' AND r.created_at >= m.at)
FROM marked m JOIN updated u ON u.id = m.job_id
WHERE m.kind = 'failed'
ORDER BY m.event_id
ON CONFLICT (event_id) DO NOTHING

-- ---- history: one event at a time (the reference the set-based apply is tested against) -----

-- name: apply_event
-- One event: its log row gates everything else, so an event already applied changes nothing.
-- A stale event (older than the row's updated_at) only fills gaps; it never moves the status back.
WITH log AS (
    INSERT INTO job_logs (event_id, job_id, created_at, kind, level, attempt, delay, message)
    VALUES (%(event_id)s::text, %(job_id)s::text, %(at)s::timestamptz, %(kind)s::text, %(level)s::text,
            %(attempt)s::int, %(delay)s::float8, %(message)s::text)
    ON CONFLICT (event_id) DO NOTHING
    RETURNING job_id
), failure AS (
    -- Born retried when a later `requeued` event of the job is already in (events applied out
    -- of order by concurrent writers): the retry took it off the failed list before it arrived.
    INSERT INTO failed_jobs (event_id, job_id, type, queue, error_class, error_message, traceback,
                             fingerprint, failed_at, attempts, retried_at)
    SELECT %(event_id)s::text, log.job_id, coalesce(%(type)s::text, jb.type, %(func)s::text, 'unknown'),
           %(queue)s::text, %(error_class)s::text, %(error_message)s::text, %(traceback)s::text,
           %(fingerprint)s::text, %(at)s::timestamptz, coalesce(%(run_attempt)s::int, jb.attempts, 0),
           (SELECT min(r.created_at) FROM job_logs r
            WHERE r.job_id = log.job_id AND r.kind = 'requeued' AND r.created_at >= %(at)s::timestamptz)
    FROM log LEFT JOIN jobs jb ON jb.id = log.job_id
    WHERE %(is_failed)s::boolean
    ON CONFLICT (event_id) DO NOTHING
)
INSERT INTO jobs AS j (id, type, queue, priority, status, attempts, func, args, worker, created_at,
                       scheduled_for, started_at, finished_at, failed_at, duration, updated_at)
SELECT log.job_id, coalesce(%(type)s::text, %(func)s::text, 'unknown'), %(queue)s::text,
       %(priority)s::smallint, %(status)s::text, %(insert_attempts)s::int, %(func)s::text,
       %(args)s::text, %(worker)s::text, %(at)s::timestamptz, %(scheduled_for)s::timestamptz,
       %(started_at)s::timestamptz, %(finished_at)s::timestamptz, %(failed_at)s::timestamptz,
       %(duration)s::float8, %(at)s::timestamptz
FROM log
ON CONFLICT (id) DO UPDATE SET
    status = CASE WHEN EXCLUDED.updated_at >= j.updated_at THEN EXCLUDED.status ELSE j.status END,
    updated_at = greatest(j.updated_at, EXCLUDED.updated_at),
    created_at = least(j.created_at, EXCLUDED.created_at),
    type = CASE WHEN %(type)s::text IS NOT NULL AND (j.type = 'unknown' OR j.type = j.func)
                THEN %(type)s::text ELSE j.type END,
    priority = coalesce(j.priority, EXCLUDED.priority),
    func = coalesce(j.func, EXCLUDED.func),
    args = coalesce(j.args, EXCLUDED.args),
    attempts = CASE WHEN %(bump)s::boolean THEN j.attempts + 1
                    ELSE greatest(j.attempts, coalesce(%(run_attempt)s::int, 0)) END,
    worker = CASE WHEN %(is_started)s::boolean AND EXCLUDED.updated_at >= j.updated_at
                  THEN coalesce(EXCLUDED.worker, j.worker) ELSE coalesce(j.worker, EXCLUDED.worker) END,
    started_at = CASE WHEN %(is_started)s::boolean AND EXCLUDED.updated_at >= j.updated_at
                      THEN EXCLUDED.started_at ELSE coalesce(j.started_at, EXCLUDED.started_at) END,
    finished_at = CASE WHEN EXCLUDED.updated_at < j.updated_at THEN j.finished_at
                       WHEN %(sets_finish)s::boolean THEN EXCLUDED.finished_at
                       WHEN %(clears_finish)s::boolean THEN NULL
                       ELSE j.finished_at END,
    failed_at = CASE WHEN EXCLUDED.updated_at < j.updated_at THEN j.failed_at
                     WHEN %(is_failed)s::boolean THEN EXCLUDED.failed_at
                     WHEN %(clears_finish)s::boolean THEN NULL
                     ELSE j.failed_at END,
    duration = CASE WHEN %(sets_duration)s::boolean AND EXCLUDED.updated_at >= j.updated_at
                    THEN coalesce(EXCLUDED.duration,
                                  extract(epoch FROM EXCLUDED.updated_at - j.started_at)::float8,
                                  j.duration)
                    ELSE j.duration END,
    scheduled_for = CASE WHEN %(sets_schedule)s::boolean AND EXCLUDED.updated_at >= j.updated_at
                         THEN coalesce(EXCLUDED.scheduled_for, j.scheduled_for)
                         ELSE j.scheduled_for END

-- name: resolve_failures
-- The open failures of jobs put back on their queue at `at` (one pair per retry), each resolved
-- by the first retry at or after it (failed_jobs_job_id_idx). Idempotent: a resolved row keeps
-- its retried_at.
UPDATE failed_jobs f SET retried_at = r.at
FROM (SELECT DISTINCT ON (o.id) o.id, u.at
      FROM unnest(%(ids)s::text[], %(ats)s::timestamptz[]) AS u(job_id, at)
      JOIN failed_jobs o ON o.job_id = u.job_id AND o.failed_at <= u.at AND o.retried_at IS NULL
      ORDER BY o.id, u.at) AS r
WHERE f.id = r.id AND f.retried_at IS NULL

-- name: has_history
SELECT EXISTS (SELECT 1 FROM jobs) OR EXISTS (SELECT 1 FROM failed_jobs) AS n

-- name: clear_history
-- Every job, log line, failure and audit row (the demo's fresh start); the failed counter too.
TRUNCATE jobs, job_logs, failed_jobs, audit_log;
UPDATE history_counters SET value = 0

-- name: record_job_log
-- A line the engine writes itself (no event id): the long-running warning.
INSERT INTO job_logs (job_id, kind, level, message) VALUES (%(job_id)s, %(kind)s, %(level)s, %(message)s)

-- name: record_audit
INSERT INTO audit_log (action, job_id, os_user, host, detail)
VALUES (%(action)s, %(job_id)s, %(os_user)s, %(host)s, %(detail)s)

-- ---- reads ----------------------------------------------------------------------------------

-- name: active_jobs
-- In flight and created in the last 7 days; walks jobs_in_flight_idx in display order.
SELECT id, type, queue, priority, status, attempts, created_at, started_at, finished_at, failed_at,
       func, args, worker, duration
FROM jobs
WHERE status IN ('queued', 'scheduled', 'processing')
  AND created_at >= now() - interval '7 days'
ORDER BY priority DESC NULLS LAST, created_at
LIMIT %(limit)s

-- name: failed_page
-- Keyset page of open failures: rows strictly before (before_at, before_id), newest first
-- (failed_jobs_open_idx; with type: or queue: their own open indexes of migration 008). Every
-- filtering query takes the same typed-search parameters (jobengine/store/filters.py): a NULL one
-- does not filter.
SELECT id, job_id, type, queue, error_class, error_message, traceback, fingerprint, failed_at, attempts
FROM failed_jobs
WHERE retried_at IS NULL AND (failed_at, id) < (%(before_at)s::timestamptz, %(before_id)s::bigint)
  AND (%(type1)s::text IS NULL OR type = %(type1)s) AND (%(types)s::text[] IS NULL OR type = ANY(%(types)s::text[]))
  AND (%(queue1)s::text IS NULL OR queue = %(queue1)s) AND (%(queues)s::text[] IS NULL OR queue = ANY(%(queues)s::text[]))
  AND failed_at >= coalesce(%(since)s::timestamptz, '-infinity')
  AND (%(error)s::text IS NULL OR error_class ILIKE %(error)s OR error_message ILIKE %(error)s)
  AND (%(id_like)s::text IS NULL OR job_id LIKE %(id_like)s)
  AND (%(args)s::text IS NULL OR EXISTS (SELECT 1 FROM jobs j WHERE j.id = failed_jobs.job_id AND j.args ILIKE %(args)s))
  AND (%(search)s::text IS NULL
       OR type ILIKE %(contains)s OR queue ILIKE %(contains)s OR error_class ILIKE %(contains)s
       OR error_message ILIKE %(contains)s OR job_id ILIKE %(prefix)s)
ORDER BY failed_at DESC, id DESC
LIMIT %(limit)s

-- name: failed_count
-- O(1): open failures, maintained by the triggers of migrations 002-004.
SELECT value AS n FROM history_counters WHERE name = 'failed_jobs'

-- name: failed_total
SELECT count(*) AS n
FROM failed_jobs
WHERE retried_at IS NULL
  AND (%(type1)s::text IS NULL OR type = %(type1)s) AND (%(types)s::text[] IS NULL OR type = ANY(%(types)s::text[]))
  AND (%(queue1)s::text IS NULL OR queue = %(queue1)s) AND (%(queues)s::text[] IS NULL OR queue = ANY(%(queues)s::text[]))
  AND failed_at >= coalesce(%(since)s::timestamptz, '-infinity')
  AND (%(error)s::text IS NULL OR error_class ILIKE %(error)s OR error_message ILIKE %(error)s)
  AND (%(id_like)s::text IS NULL OR job_id LIKE %(id_like)s)
  AND (%(args)s::text IS NULL OR EXISTS (SELECT 1 FROM jobs j WHERE j.id = failed_jobs.job_id AND j.args ILIKE %(args)s))
  AND (%(search)s::text IS NULL
       OR type ILIKE %(contains)s OR queue ILIKE %(contains)s OR error_class ILIKE %(contains)s
       OR error_message ILIKE %(contains)s OR job_id ILIKE %(prefix)s)

-- name: failure_groups
-- Biggest groups of open failures in the window; the sample is each group's newest message
-- (failed_jobs_open_fingerprint_idx).
WITH groups AS (
    SELECT error_class, fingerprint, count(*) AS n, min(failed_at) AS first_seen,
           max(failed_at) AS last_seen
    FROM failed_jobs
    WHERE retried_at IS NULL AND failed_at >= coalesce(now() - make_interval(days => %(days)s::int), '-infinity')
      AND (%(type1)s::text IS NULL OR type = %(type1)s) AND (%(types)s::text[] IS NULL OR type = ANY(%(types)s::text[]))
      AND (%(queue1)s::text IS NULL OR queue = %(queue1)s) AND (%(queues)s::text[] IS NULL OR queue = ANY(%(queues)s::text[]))
      AND failed_at >= coalesce(%(since)s::timestamptz, '-infinity')
      AND (%(error)s::text IS NULL OR error_class ILIKE %(error)s OR error_message ILIKE %(error)s)
      AND (%(id_like)s::text IS NULL OR job_id LIKE %(id_like)s)
      AND (%(args)s::text IS NULL OR EXISTS (SELECT 1 FROM jobs j WHERE j.id = failed_jobs.job_id AND j.args ILIKE %(args)s))
      AND (%(search)s::text IS NULL
           OR type ILIKE %(contains)s OR queue ILIKE %(contains)s OR error_class ILIKE %(contains)s
           OR error_message ILIKE %(contains)s OR job_id ILIKE %(prefix)s)
    GROUP BY error_class, fingerprint
    ORDER BY n DESC, last_seen DESC, fingerprint
    LIMIT %(limit)s
)
SELECT g.error_class, g.fingerprint, s.error_message AS sample_message, g.n, g.first_seen, g.last_seen
FROM groups g
CROSS JOIN LATERAL (
    SELECT f.error_message FROM failed_jobs f
    WHERE f.retried_at IS NULL AND f.fingerprint = g.fingerprint AND f.error_class IS NOT DISTINCT FROM g.error_class
    ORDER BY f.failed_at DESC
    LIMIT 1
) AS s
ORDER BY g.n DESC, g.last_seen DESC, g.fingerprint

-- name: recent_failure_groups
-- Failure groups with failures at or after `since` (failed_jobs_failed_at_idx), each with its count
-- in that window, its newest message and whether it is new: no open failure of it in the `days`
-- before its first one in the window (failed_jobs_open_fingerprint_idx). For jobengine.alerts.
WITH groups AS (
    SELECT error_class, fingerprint, count(*) AS n, min(failed_at) AS first_seen, max(failed_at) AS last_seen
    FROM failed_jobs
    WHERE failed_at >= %(since)s::timestamptz
    GROUP BY error_class, fingerprint
    ORDER BY n DESC, last_seen DESC, fingerprint
    LIMIT %(limit)s
)
SELECT g.error_class, g.fingerprint, s.error_message AS sample_message, g.n, g.first_seen, g.last_seen,
       NOT EXISTS (
           SELECT 1 FROM failed_jobs p
           WHERE p.retried_at IS NULL AND p.fingerprint = g.fingerprint
             AND p.error_class IS NOT DISTINCT FROM g.error_class
             AND p.failed_at < g.first_seen AND p.failed_at >= g.first_seen - make_interval(days => %(days)s::int)
       ) AS is_new
FROM groups g
CROSS JOIN LATERAL (
    SELECT f.error_message FROM failed_jobs f
    WHERE f.fingerprint = g.fingerprint AND f.error_class IS NOT DISTINCT FROM g.error_class
      AND f.failed_at >= %(since)s::timestamptz
    ORDER BY f.failed_at DESC
    LIMIT 1
) AS s
ORDER BY g.n DESC, g.last_seen DESC, g.fingerprint

-- name: failed_filtered_ids
-- A bulk action's batch: the jobs of open failures matching the search, strictly before the
-- keyset cursor, newest first (the same walk as failed_page).
SELECT job_id, failed_at, id
FROM failed_jobs
WHERE retried_at IS NULL AND (failed_at, id) < (%(before_at)s::timestamptz, %(before_id)s::bigint)
  AND (%(type1)s::text IS NULL OR type = %(type1)s) AND (%(types)s::text[] IS NULL OR type = ANY(%(types)s::text[]))
  AND (%(queue1)s::text IS NULL OR queue = %(queue1)s) AND (%(queues)s::text[] IS NULL OR queue = ANY(%(queues)s::text[]))
  AND failed_at >= coalesce(%(since)s::timestamptz, '-infinity')
  AND (%(error)s::text IS NULL OR error_class ILIKE %(error)s OR error_message ILIKE %(error)s)
  AND (%(id_like)s::text IS NULL OR job_id LIKE %(id_like)s)
  AND (%(args)s::text IS NULL OR EXISTS (SELECT 1 FROM jobs j WHERE j.id = failed_jobs.job_id AND j.args ILIKE %(args)s))
  AND (%(search)s::text IS NULL
       OR type ILIKE %(contains)s OR queue ILIKE %(contains)s OR error_class ILIKE %(contains)s
       OR error_message ILIKE %(contains)s OR job_id ILIKE %(prefix)s)
ORDER BY failed_at DESC, id DESC
LIMIT %(limit)s

-- name: in_flight_filtered
-- A bulk cancel's batch: queued, scheduled or running jobs matching the search, oldest first,
-- strictly after the keyset cursor (the in-flight rows of jobs_in_flight_idx, sorted).
SELECT id, created_at
FROM jobs
WHERE status IN ('queued', 'scheduled', 'processing')
  AND (created_at, id) > (%(after_at)s::timestamptz, %(after_id)s::text)
  AND (%(type1)s::text IS NULL OR type = %(type1)s) AND (%(types)s::text[] IS NULL OR type = ANY(%(types)s::text[]))
  AND (%(queue1)s::text IS NULL OR queue = %(queue1)s) AND (%(queues)s::text[] IS NULL OR queue = ANY(%(queues)s::text[]))
  AND created_at >= coalesce(%(since)s::timestamptz, '-infinity')
  AND (%(id_like)s::text IS NULL OR id LIKE %(id_like)s)
  AND (%(args)s::text IS NULL OR args ILIKE %(args)s)
  AND (%(search)s::text IS NULL
       OR type ILIKE %(contains)s OR queue ILIKE %(contains)s OR func ILIKE %(contains)s
       OR args ILIKE %(contains)s OR id ILIKE %(prefix)s)
ORDER BY created_at, id
LIMIT %(limit)s

-- name: in_flight_total
SELECT count(*) AS n
FROM jobs
WHERE status IN ('queued', 'scheduled', 'processing')
  AND (%(type1)s::text IS NULL OR type = %(type1)s) AND (%(types)s::text[] IS NULL OR type = ANY(%(types)s::text[]))
  AND (%(queue1)s::text IS NULL OR queue = %(queue1)s) AND (%(queues)s::text[] IS NULL OR queue = ANY(%(queues)s::text[]))
  AND created_at >= coalesce(%(since)s::timestamptz, '-infinity')
  AND (%(id_like)s::text IS NULL OR id LIKE %(id_like)s)
  AND (%(args)s::text IS NULL OR args ILIKE %(args)s)
  AND (%(search)s::text IS NULL
       OR type ILIKE %(contains)s OR queue ILIKE %(contains)s OR func ILIKE %(contains)s
       OR args ILIKE %(contains)s OR id ILIKE %(prefix)s)

-- name: failed_job_ids_in_group
SELECT job_id
FROM failed_jobs
WHERE retried_at IS NULL AND fingerprint = %(fingerprint)s
GROUP BY job_id
ORDER BY max(failed_at) DESC
LIMIT %(limit)s

-- name: stuck_jobs
SELECT id, type, queue, priority, status, attempts, created_at, started_at, finished_at, failed_at,
       func, args, worker, duration
FROM jobs
WHERE status = 'processing'
  AND started_at < now() - make_interval(secs => %(seconds)s::float8)
ORDER BY started_at
LIMIT %(limit)s

-- name: failures_since
-- Open failures only (failed_jobs_open_idx): retried ones were dealt with.
SELECT count(*) AS n FROM failed_jobs WHERE retried_at IS NULL AND failed_at >= %(since)s::timestamptz

-- name: throughput
-- One row per minute from since to until (now when null), zero-filled.
WITH bounds AS (
    SELECT date_trunc('minute', %(since)s::timestamptz) AS lo,
           date_trunc('minute', coalesce(%(until)s::timestamptz, now())) AS hi
), done AS (
    SELECT date_trunc('minute', j.finished_at) AS minute, count(*) AS n
    FROM jobs j, bounds b
    WHERE j.finished_at >= b.lo AND j.finished_at < b.hi + interval '1 minute' AND j.status = 'finished'
    GROUP BY 1
), failed AS (
    SELECT date_trunc('minute', f.failed_at) AS minute, count(*) AS n
    FROM failed_jobs f, bounds b
    WHERE f.failed_at >= b.lo AND f.failed_at < b.hi + interval '1 minute'
    GROUP BY 1
)
SELECT m.minute, coalesce(done.n, 0) AS processed, coalesce(failed.n, 0) AS failed
FROM bounds b
CROSS JOIN LATERAL generate_series(b.lo, b.hi, interval '1 minute') AS m(minute)
LEFT JOIN done ON done.minute = m.minute
LEFT JOIN failed ON failed.minute = m.minute
ORDER BY m.minute

-- name: job_by_id
SELECT id, type, queue, priority, status, attempts, created_at, started_at, finished_at, failed_at,
       func, args, worker, duration
FROM jobs
WHERE id = %(id)s

-- name: job_prefix_matches
-- Ids in [lo, hi) byte-wise are exactly the ids starting with the prefix (jobs_id_pattern_idx).
SELECT count(*) AS matches, min(id) AS id
FROM (
    SELECT id FROM jobs
    WHERE id ~>=~ %(lo)s::text AND id ~<~ %(hi)s::text
    LIMIT %(cap)s
) AS m

-- name: job_logs
SELECT created_at, kind, level, message, attempt, delay
FROM job_logs
WHERE job_id = %(id)s
ORDER BY created_at, id

-- name: job_failure
-- The job's latest failure, open or retried (its detail shows it either way).
SELECT id, job_id, type, queue, error_class, error_message, traceback, fingerprint, failed_at, attempts,
       retried_at
FROM failed_jobs
WHERE job_id = %(id)s
ORDER BY failed_at DESC, id DESC
LIMIT 1

-- name: job_status
SELECT status FROM jobs WHERE id = %(id)s

-- name: get_jobs
SELECT j.id, j.type, j.queue, j.priority, j.status, j.attempts, j.created_at, j.started_at,
       j.finished_at, j.failed_at, j.func, j.args, j.worker, j.duration
FROM unnest(%(ids)s::text[]) WITH ORDINALITY AS wanted(id, n)
JOIN jobs j ON j.id = wanted.id
ORDER BY wanted.n

-- name: audit_entries
SELECT id, at, action, job_id, os_user, host, detail
FROM audit_log
WHERE at >= coalesce(%(since)s::timestamptz, '-infinity')
ORDER BY at DESC, id DESC
LIMIT %(limit)s

-- name: audit_for_job
-- The job's audit lines oldest first (audit_log_job_idx).
SELECT id, at, action, job_id, os_user, host, detail
FROM audit_log
WHERE job_id = %(job_id)s
ORDER BY at, id
LIMIT %(limit)s

-- ---- prune ----------------------------------------------------------------------------------
-- Finished jobs before the cutoff, failed ones before the failed cutoff; never jobs in flight.

-- name: prune_count_jobs
SELECT count(*) AS jobs,
       (SELECT count(*) FROM job_logs l
        WHERE l.job_id IN (
            SELECT id FROM jobs
            WHERE finished_at < greatest(%(cutoff)s::timestamptz, %(failed_cutoff)s::timestamptz)
              AND ((status IN ('finished', 'canceled', 'stopped') AND finished_at < %(cutoff)s::timestamptz)
                   OR (status = 'failed' AND finished_at < %(failed_cutoff)s::timestamptz)))) AS job_logs
FROM jobs
WHERE finished_at < greatest(%(cutoff)s::timestamptz, %(failed_cutoff)s::timestamptz)
  AND ((status IN ('finished', 'canceled', 'stopped') AND finished_at < %(cutoff)s::timestamptz)
       OR (status = 'failed' AND finished_at < %(failed_cutoff)s::timestamptz))

-- name: prune_count_failed
SELECT count(*) AS n FROM failed_jobs WHERE failed_at < %(failed_cutoff)s::timestamptz

-- name: prune_jobs_batch
WITH doomed AS (
    SELECT id FROM jobs
    WHERE finished_at < greatest(%(cutoff)s::timestamptz, %(failed_cutoff)s::timestamptz)
      AND ((status IN ('finished', 'canceled', 'stopped') AND finished_at < %(cutoff)s::timestamptz)
           OR (status = 'failed' AND finished_at < %(failed_cutoff)s::timestamptz))
    LIMIT %(batch)s
    FOR UPDATE SKIP LOCKED
), logs AS (
    DELETE FROM job_logs WHERE job_id IN (SELECT id FROM doomed) RETURNING 1
), gone AS (
    DELETE FROM jobs WHERE id IN (SELECT id FROM doomed) RETURNING 1
)
SELECT (SELECT count(*) FROM gone) AS jobs, (SELECT count(*) FROM logs) AS job_logs

-- name: prune_failed_batch
DELETE FROM failed_jobs
WHERE id IN (SELECT id FROM failed_jobs WHERE failed_at < %(failed_cutoff)s::timestamptz LIMIT %(batch)s)

-- ---- stats ----------------------------------------------------------------------------------

-- name: stats_by_status_type
-- Whole-history counts for `jobtui stats`: an index-only scan of jobs_status_type_idx; the
-- result is cached (cache.stats, 30 min) because it grows with history.
SELECT status, type, count(*) AS n
FROM jobs
GROUP BY status, type
ORDER BY status, n DESC, type

-- ---- reconcile (jobengine.reconcile) --------------------------------------------------------
-- The in-flight jobs in keyset pages over jobs_in_flight_idx, one priority at a time (the index
-- order within a priority is (created_at, id): unique, no sort). ORDER BY names the index's own
-- order: for `priority IS NULL` the planner would sort (created_at, id) instead.

-- name: reconcile_count
SELECT count(*) AS n FROM jobs WHERE status IN ('queued', 'scheduled', 'processing')

-- name: reconcile_page
SELECT id, status, created_at
FROM jobs
WHERE status IN ('queued', 'scheduled', 'processing') AND priority = %(priority)s::smallint
  AND (created_at, id) > (%(after_at)s::timestamptz, %(after_id)s::text)
ORDER BY priority DESC NULLS LAST, created_at, id
LIMIT %(limit)s

-- name: reconcile_page_unranked
-- Jobs off the lanes (priority null: plain RQ clients).
SELECT id, status, created_at
FROM jobs
WHERE status IN ('queued', 'scheduled', 'processing') AND priority IS NULL
  AND (created_at, id) > (%(after_at)s::timestamptz, %(after_id)s::text)
ORDER BY priority DESC NULLS LAST, created_at, id
LIMIT %(limit)s

-- name: reconcile_rows
-- What re-creates these jobs, read again just before: only those still in flight.
SELECT id, queue, status, attempts, created_at, scheduled_for, payload, options
FROM jobs
WHERE id = ANY(%(ids)s::text[]) AND status IN ('queued', 'scheduled', 'processing')

-- name: epoch_get
SELECT epoch FROM redis_epoch

-- name: epoch_init
-- The first engine that sees an epoch records it; a recorded one is kept.
INSERT INTO redis_epoch (epoch) VALUES (%(epoch)s::text) ON CONFLICT (one) DO NOTHING

-- name: epoch_set
-- A reconciled reset: the new Redis epoch becomes the recorded one.
INSERT INTO redis_epoch (epoch) VALUES (%(epoch)s::text)
ON CONFLICT (one) DO UPDATE SET epoch = EXCLUDED.epoch, recorded_at = now()

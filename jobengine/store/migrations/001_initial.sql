-- Job history: one row per job, its event log, its final failures, and the operators' audit trail.

CREATE TABLE jobs (
    id            text PRIMARY KEY,                 -- the RQ job id
    type          text NOT NULL,
    queue         text NOT NULL,
    priority      smallint CHECK (priority BETWEEN 0 AND 3),  -- Priority.rank; null off the lanes
    status        text NOT NULL CHECK (status IN ('queued', 'scheduled', 'processing', 'finished',
                                                  'failed', 'canceled', 'stopped')),
    attempts      integer NOT NULL DEFAULT 0,       -- runs started
    func          text,
    args          text,                             -- a repr, for display only
    worker        text,
    created_at    timestamptz NOT NULL,
    scheduled_for timestamptz,
    started_at    timestamptz,
    finished_at   timestamptz,
    failed_at     timestamptz,
    duration      double precision,                 -- seconds of the last run
    updated_at    timestamptz NOT NULL              -- time of the last event applied (monotonic)
);

-- Dashboards by status and type.
CREATE INDEX jobs_status_type_idx ON jobs (status, type, created_at);
-- active_jobs: the in-flight set in display order.
CREATE INDEX jobs_in_flight_idx ON jobs (priority DESC NULLS LAST, created_at)
    WHERE status IN ('queued', 'scheduled', 'processing');
-- stuck_jobs: running jobs, oldest start first.
CREATE INDEX jobs_processing_idx ON jobs (started_at) WHERE status = 'processing';
-- throughput and prune: range scans on finished_at that can filter on status from the index.
CREATE INDEX jobs_finished_at_idx ON jobs (finished_at) INCLUDE (status) WHERE finished_at IS NOT NULL;
-- get_job by id prefix (byte-wise range with ~>=~ / ~<~).
CREATE INDEX jobs_id_pattern_idx ON jobs (id text_pattern_ops);

CREATE TABLE job_logs (
    id         bigserial PRIMARY KEY,
    event_id   text UNIQUE,                         -- Redis stream id; null for direct writes
    job_id     text NOT NULL,                       -- no FK: events may precede the job row
    created_at timestamptz NOT NULL DEFAULT now(),
    kind       text,
    level      text NOT NULL DEFAULT 'info' CHECK (level IN ('info', 'warning', 'error')),
    attempt    integer,
    delay      double precision,
    message    text
);

CREATE INDEX job_logs_job_id_idx ON job_logs (job_id, created_at);

CREATE TABLE failed_jobs (
    id            bigserial PRIMARY KEY,
    event_id      text UNIQUE,
    job_id        text NOT NULL,
    type          text,
    queue         text NOT NULL,
    error_class   text,
    error_message text,
    traceback     text,
    fingerprint   text,
    failed_at     timestamptz NOT NULL,
    attempts      integer
);

-- Newest-first keyset pages, failures_since and prune.
CREATE INDEX failed_jobs_failed_at_idx ON failed_jobs (failed_at DESC, id DESC);
-- failure_groups samples and failed_job_ids_in_group.
CREATE INDEX failed_jobs_fingerprint_idx ON failed_jobs (fingerprint, failed_at);
-- The latest failure of one job (get_job).
CREATE INDEX failed_jobs_job_id_idx ON failed_jobs (job_id, failed_at);
-- From the specification: failures on the default queue.
CREATE INDEX failed_jobs_queue_idx ON failed_jobs (queue) WHERE queue = 'default';

CREATE TABLE audit_log (
    id      bigserial PRIMARY KEY,
    at      timestamptz NOT NULL DEFAULT now(),
    action  text NOT NULL,
    job_id  text,
    os_user text,
    host    text,
    detail  text
);

CREATE INDEX audit_log_at_idx ON audit_log (at DESC, id DESC);

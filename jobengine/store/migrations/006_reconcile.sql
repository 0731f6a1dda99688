-- What re-creates a job whose Redis data was lost (jobengine.reconcile), and the Redis epoch that
-- tells a Redis reset. Migration 005 is another change's; the runner applies by name, so the gap
-- (or 005 arriving after 006) is fine: the two touch different things.

-- The RQ job's `data` (the zlib-compressed pickle of function and arguments, as RQ stores it) and
-- the options of its job hash (timeout, result_ttl, failure_ttl, description, meta). Null for jobs
-- from plain RQ clients and for rows that reached PostgreSQL as events (dispatched while it was
-- down): those cannot be re-created. Already compressed: kept out of line without recompressing.
ALTER TABLE jobs ADD COLUMN payload bytea, ADD COLUMN options jsonb;
ALTER TABLE jobs ALTER COLUMN payload SET STORAGE EXTERNAL;

-- reconcile walks the in-flight jobs in keyset pages, one priority at a time: the id makes the
-- index order unique (a dispatch_many gives every job the same created_at). Same name and leading
-- columns, so active_jobs walks it as before; no second index to maintain on every transition.
DROP INDEX jobs_in_flight_idx;
CREATE INDEX jobs_in_flight_idx ON jobs (priority DESC NULLS LAST, created_at, id)
    WHERE status IN ('queued', 'scheduled', 'processing');

-- One row: the epoch token of the Redis this history belongs to (see jobengine.keys.REDIS_EPOCH).
-- Redis holding no token or another one means Redis lost its data since: a reset to reconcile.
CREATE TABLE redis_epoch (
    one         boolean PRIMARY KEY DEFAULT true CHECK (one),
    epoch       text NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
);

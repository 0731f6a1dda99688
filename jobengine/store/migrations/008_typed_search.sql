-- Typed search (jobengine/query.py): `type:` and `queue:` on the open failures walk their own
-- index in the failed list's order (newest first) instead of filtering the whole time index.
CREATE INDEX IF NOT EXISTS failed_jobs_open_type_idx ON failed_jobs (type, failed_at DESC, id DESC)
    WHERE retried_at IS NULL;
CREATE INDEX IF NOT EXISTS failed_jobs_open_queue_idx ON failed_jobs (queue, failed_at DESC, id DESC)
    WHERE retried_at IS NULL;

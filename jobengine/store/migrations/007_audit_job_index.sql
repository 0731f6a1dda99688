-- A job's audit lines (its detail shows them): by job id, oldest first.

CREATE INDEX IF NOT EXISTS audit_log_job_idx ON audit_log (job_id, at, id) WHERE job_id IS NOT NULL;

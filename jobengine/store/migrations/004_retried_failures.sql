-- A failure that was retried (the console's r/R, `engine.retry`, any `requeued` event) is dealt
-- with: its row stays as history (the job's detail still shows it) but it leaves the failed list,
-- the failure groups and the failed total. A job that fails again gets a new, open row.

ALTER TABLE failed_jobs ADD COLUMN retried_at timestamptz;

-- The failed list, the groups and failures_since read open rows only; prune and throughput keep
-- using failed_jobs_failed_at_idx over every row.
CREATE INDEX failed_jobs_open_idx ON failed_jobs (failed_at DESC, id DESC) WHERE retried_at IS NULL;
DROP INDEX failed_jobs_fingerprint_idx;
CREATE INDEX failed_jobs_open_fingerprint_idx ON failed_jobs (fingerprint, failed_at) WHERE retried_at IS NULL;

-- The counter counts open rows: inserted or deleted open rows, rows retried (or reopened).
CREATE OR REPLACE FUNCTION history_count_failed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    n bigint := (SELECT count(*) FROM changed WHERE retried_at IS NULL);
BEGIN
    IF n > 0 THEN
        UPDATE history_counters SET value = value + CASE WHEN TG_OP = 'INSERT' THEN n ELSE -n END
        WHERE name = 'failed_jobs';
    END IF;
    RETURN NULL;
END $$;

CREATE FUNCTION history_count_failed_retried() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    n bigint := (SELECT count(*) FILTER (WHERE o.retried_at IS NULL AND r.retried_at IS NOT NULL)
                      - count(*) FILTER (WHERE o.retried_at IS NOT NULL AND r.retried_at IS NULL)
                 FROM before_rows o JOIN after_rows r USING (id));
BEGIN
    IF n <> 0 THEN
        UPDATE history_counters SET value = value - n WHERE name = 'failed_jobs';
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER failed_jobs_counted_update AFTER UPDATE ON failed_jobs
    REFERENCING OLD TABLE AS before_rows NEW TABLE AS after_rows
    FOR EACH STATEMENT EXECUTE FUNCTION history_count_failed_retried();

UPDATE history_counters SET value = (SELECT count(*) FROM failed_jobs WHERE retried_at IS NULL)
WHERE name = 'failed_jobs';

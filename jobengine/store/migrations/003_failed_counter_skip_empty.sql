-- Statement-level triggers also fire for statements that changed no row, and apply_event's
-- failed_jobs CTE runs for every event: without this guard every event of every batch updated
-- (and locked until commit) the one counter row, serialising concurrent history writers.
CREATE OR REPLACE FUNCTION history_count_failed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    n bigint := (SELECT count(*) FROM changed);
BEGIN
    IF n > 0 THEN
        UPDATE history_counters SET value = value + CASE WHEN TG_OP = 'INSERT' THEN n ELSE -n END
        WHERE name = 'failed_jobs';
    END IF;
    RETURN NULL;
END $$;

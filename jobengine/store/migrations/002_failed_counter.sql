-- The unfiltered failed total on every console refresh must not grow with history: keep it in a
-- one-row counter maintained by statement-level triggers (one UPDATE per batch, not per row).
-- TRUNCATE of failed_jobs is not tracked; run this migration's INSERT again after one.

CREATE TABLE history_counters (
    name  text PRIMARY KEY,
    value bigint NOT NULL
);

INSERT INTO history_counters (name, value) SELECT 'failed_jobs', count(*) FROM failed_jobs;

CREATE FUNCTION history_count_failed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        UPDATE history_counters SET value = value + (SELECT count(*) FROM changed) WHERE name = 'failed_jobs';
    ELSE
        UPDATE history_counters SET value = value - (SELECT count(*) FROM changed) WHERE name = 'failed_jobs';
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER failed_jobs_counted_insert AFTER INSERT ON failed_jobs
    REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION history_count_failed();
CREATE TRIGGER failed_jobs_counted_delete AFTER DELETE ON failed_jobs
    REFERENCING OLD TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION history_count_failed();

-- A year of history: vacuum and analyze by a small fraction of the table, not the default 20%.
--
-- jobs: every job is one INSERT (dispatch) and about one UPDATE per writer batch; the update
-- changes status (indexed), so it is never HOT and leaves a dead tuple plus index entries each
-- time. A lower fillfactor would buy no HOT updates here, so it stays 100; vacuum instead runs
-- after 1% (+10,000 rows) is dead, before index bloat builds up, and analyze after 0.5% changed,
-- so the planner's picture of jobs (the apply's join, the console's reads) stays current.
ALTER TABLE jobs SET (autovacuum_vacuum_scale_factor = 0.01, autovacuum_vacuum_threshold = 10000,
                      autovacuum_analyze_scale_factor = 0.005, autovacuum_analyze_threshold = 10000);

-- job_logs: insert-only until prune deletes a day's jobs at a time. Vacuum after 1% inserted
-- (visibility map and hint bits set in the background, not by the console's first read) or 1%
-- deleted (prune's dead rows reused before the table grows).
ALTER TABLE job_logs SET (autovacuum_vacuum_scale_factor = 0.01, autovacuum_vacuum_threshold = 10000,
                          autovacuum_vacuum_insert_scale_factor = 0.01,
                          autovacuum_vacuum_insert_threshold = 10000,
                          autovacuum_analyze_scale_factor = 0.01);

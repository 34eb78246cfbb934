-- Dashboard data layer: keyset indexes over the run ledger and a per-day rollup kept by a trigger.
-- Idempotent: every statement can run again on an existing schema.

-- Newest-first keyset over all pipelines: (started_at, pipeline, run_id) < cursor is an index condition.
CREATE INDEX IF NOT EXISTS pipeline_runs_started_pipeline_run_idx
    ON etl_audit.pipeline_runs (started_at DESC, pipeline DESC, run_id DESC);
-- One pipeline's runs newest first with a unique order: no sort for the run_id tie-break.
CREATE INDEX IF NOT EXISTS pipeline_runs_pipeline_started_run_idx
    ON etl_audit.pipeline_runs (pipeline, started_at DESC, run_id DESC);

-- One row per (pipeline, UTC day of started_at, status, duration bucket): the stats and the daily series
-- read this instead of the runs. duration_bucket is floor(ln(seconds) / ln(1.1)) (10 % wide buckets,
-- seconds clamped to >= 0.001, so real buckets are >= -73); runs without finished_at go to bucket -1000,
-- not -1, because -1 is the real bucket of runs lasting [0.909, 1) s.
CREATE TABLE IF NOT EXISTS etl_audit.pipeline_run_rollup (
    pipeline         text             NOT NULL,
    day              date             NOT NULL,
    status           text             NOT NULL,
    duration_bucket  integer          NOT NULL,
    runs             bigint           NOT NULL,
    duration_sum     double precision NOT NULL,
    rows_sum         bigint           NOT NULL,
    bytes_sum        bigint           NOT NULL,
    PRIMARY KEY (pipeline, day, status, duration_bucket)
);
CREATE INDEX IF NOT EXISTS pipeline_run_rollup_day_idx ON etl_audit.pipeline_run_rollup (day);

-- A run's rollup coordinates, in one place for the trigger and the rebuild (inlined by the planner).
CREATE OR REPLACE FUNCTION etl_audit.pipeline_run_day(started timestamptz)
RETURNS date
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $fn$ SELECT (started AT TIME ZONE 'UTC')::date $fn$;

CREATE OR REPLACE FUNCTION etl_audit.pipeline_run_seconds(started timestamptz, finished timestamptz)
RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $fn$ SELECT extract(epoch FROM finished - started)::double precision $fn$;

CREATE OR REPLACE FUNCTION etl_audit.pipeline_run_duration_bucket(started timestamptz, finished timestamptz)
RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $fn$
    SELECT CASE WHEN finished IS NULL THEN -1000
                ELSE floor(ln(greatest(etl_audit.pipeline_run_seconds(started, finished), 0.001))
                           / ln(1.1))::integer
           END
$fn$;

CREATE OR REPLACE FUNCTION etl_audit.pipeline_runs_rollup_sync()
RETURNS trigger
LANGUAGE plpgsql
AS $fn$
DECLARE
    remaining bigint;
    old_day date;
    old_bucket integer;
BEGIN
    IF TG_OP = 'UPDATE'
       AND (OLD.pipeline, OLD.status, OLD.started_at, OLD.finished_at, OLD."rows", OLD.bytes)
           IS NOT DISTINCT FROM (NEW.pipeline, NEW.status, NEW.started_at, NEW.finished_at, NEW."rows", NEW.bytes)
    THEN
        RETURN NULL;
    END IF;
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        old_day := etl_audit.pipeline_run_day(OLD.started_at);
        old_bucket := etl_audit.pipeline_run_duration_bucket(OLD.started_at, OLD.finished_at);
        UPDATE etl_audit.pipeline_run_rollup r
        SET runs = r.runs - 1,
            duration_sum = r.duration_sum - coalesce(etl_audit.pipeline_run_seconds(OLD.started_at, OLD.finished_at), 0),
            rows_sum = r.rows_sum - OLD."rows",
            bytes_sum = r.bytes_sum - OLD.bytes
        WHERE (r.pipeline, r.day, r.status, r.duration_bucket) = (OLD.pipeline, old_day, OLD.status, old_bucket)
        RETURNING r.runs INTO remaining;
        IF remaining = 0 THEN
            DELETE FROM etl_audit.pipeline_run_rollup r
            WHERE (r.pipeline, r.day, r.status, r.duration_bucket) = (OLD.pipeline, old_day, OLD.status, old_bucket)
              AND r.runs = 0;
        END IF;
    END IF;
    IF TG_OP IN ('UPDATE', 'INSERT') THEN
        INSERT INTO etl_audit.pipeline_run_rollup AS r
            (pipeline, day, status, duration_bucket, runs, duration_sum, rows_sum, bytes_sum)
        VALUES (NEW.pipeline, etl_audit.pipeline_run_day(NEW.started_at), NEW.status,
                etl_audit.pipeline_run_duration_bucket(NEW.started_at, NEW.finished_at), 1,
                coalesce(etl_audit.pipeline_run_seconds(NEW.started_at, NEW.finished_at), 0), NEW."rows", NEW.bytes)
        ON CONFLICT (pipeline, day, status, duration_bucket) DO UPDATE
        SET runs = r.runs + 1,
            duration_sum = r.duration_sum + EXCLUDED.duration_sum,
            rows_sum = r.rows_sum + EXCLUDED.rows_sum,
            bytes_sum = r.bytes_sum + EXCLUDED.bytes_sum;
    END IF;
    RETURN NULL;
END
$fn$;

-- A row trigger on the partitioned parent is cloned onto every partition, present and future.
-- A row moved between partitions fires AFTER DELETE + AFTER INSERT (not UPDATE): counted once.
CREATE OR REPLACE TRIGGER pipeline_runs_rollup_sync
    AFTER INSERT OR UPDATE OR DELETE ON etl_audit.pipeline_runs
    FOR EACH ROW EXECUTE FUNCTION etl_audit.pipeline_runs_rollup_sync();

-- Recomputes the rollup from the runs in one statement: after a bulk load with the trigger disabled,
-- or to repair drift. TRUNCATE locks the rollup, so concurrent writers' triggers wait and then apply
-- their own change on top of a rebuild that did not see it.
CREATE OR REPLACE FUNCTION etl_audit.rebuild_pipeline_run_rollup()
RETURNS bigint
LANGUAGE plpgsql
AS $fn$
DECLARE
    written bigint;
BEGIN
    TRUNCATE etl_audit.pipeline_run_rollup;
    INSERT INTO etl_audit.pipeline_run_rollup
        (pipeline, day, status, duration_bucket, runs, duration_sum, rows_sum, bytes_sum)
    SELECT pipeline, etl_audit.pipeline_run_day(started_at), status,
           etl_audit.pipeline_run_duration_bucket(started_at, finished_at), count(*),
           coalesce(sum(etl_audit.pipeline_run_seconds(started_at, finished_at)), 0), sum("rows"), sum(bytes)
    FROM etl_audit.pipeline_runs
    GROUP BY 1, 2, 3, 4
    ORDER BY 2, 1;  -- heap in day order, as the trigger appends it: a day range reads few pages
    GET DIAGNOSTICS written = ROW_COUNT;
    RETURN written;
END
$fn$;

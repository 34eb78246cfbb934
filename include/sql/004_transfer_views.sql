-- Per-run transfer views (issue 13): how each transfer attempt moved its rows, chunk by chunk.
-- Idempotent: every statement can run again on an existing schema.

-- How the rows reached the destination (the summary's strategy: append, upsert, swap, staged, ...).
ALTER TABLE etl_audit.task_runs ADD COLUMN IF NOT EXISTS strategy text;

-- One row per committed chunk of a task attempt (task_runs' pipeline, run_id, task_id, map_index,
-- try_number), written in batches by the transfer operator. No key: a chunk row is a measurement, and
-- the operator writes each once; partitioned by month like task_runs so retention drops old months.
CREATE TABLE IF NOT EXISTS etl_audit.task_chunks (
    pipeline      text             NOT NULL,
    run_id        text             NOT NULL,
    task_id       text             NOT NULL,
    map_index     integer          NOT NULL DEFAULT -1,
    try_number    integer          NOT NULL DEFAULT 1,
    stream        integer          NOT NULL DEFAULT 0,  -- the key-range stream, from 0
    seq           integer          NOT NULL,            -- the attempt's chunk count, from 1
    committed_at  timestamptz      NOT NULL,
    "rows"        bigint           NOT NULL,
    bytes         bigint           NOT NULL,
    seconds       double precision NOT NULL,
    rss_mb        double precision                      -- the worker's resident memory after the chunk
) PARTITION BY RANGE (committed_at);

-- Catch-all: a chunk row never fails for want of a partition; maintenance drains it.
CREATE TABLE IF NOT EXISTS etl_audit.task_chunks_default PARTITION OF etl_audit.task_chunks DEFAULT;

-- The transfer view: one task attempt's chunks in commit order.
CREATE INDEX IF NOT EXISTS task_chunks_attempt_idx
    ON etl_audit.task_chunks (pipeline, run_id, task_id, map_index, try_number, committed_at, seq);
-- A run's attempts (the view's other read): task_runs has no index on run_id.
CREATE INDEX IF NOT EXISTS task_runs_pipeline_run_idx
    ON etl_audit.task_runs (pipeline, run_id, task_id, map_index, try_number);

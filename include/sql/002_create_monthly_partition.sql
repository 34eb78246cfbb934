-- create_monthly_partition(parent, start_date): the original design's helper, made idempotent and
-- lock-friendly. It creates the month containing start_date as a standalone table with a CHECK
-- constraint matching the bound, moves any rows for that month out of the default partition,
-- then ATTACHes it (SHARE UPDATE EXCLUSIVE on the parent, not ACCESS EXCLUSIVE).
-- Returns the partition's name; a month that already has a partition returns that partition.

CREATE OR REPLACE FUNCTION etl_audit.create_monthly_partition(parent regclass, start_date date)
RETURNS text
LANGUAGE plpgsql
AS $fn$
DECLARE
    lo          date := date_trunc('month', start_date)::date;
    hi          date := (date_trunc('month', start_date) + interval '1 month')::date;
    parent_ns   text;
    parent_name text;
    key_column  text;
    child_name  text;
    existing    text;
    default_rel regclass;
    columns     text;
BEGIN
    SELECT n.nspname, c.relname INTO parent_ns, parent_name
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.oid = parent AND c.relkind = 'p';
    IF parent_name IS NULL THEN
        RAISE EXCEPTION 'create_monthly_partition: % is not a partitioned table', parent;
    END IF;
    SELECT a.attname INTO key_column
    FROM pg_partitioned_table p JOIN pg_attribute a ON a.attrelid = p.partrelid AND a.attnum = p.partattrs[0]
    WHERE p.partrelid = parent AND p.partstrat = 'r' AND p.partnatts = 1;
    IF key_column IS NULL THEN
        RAISE EXCEPTION 'create_monthly_partition: % is not range-partitioned on one column', parent;
    END IF;

    -- Idempotent: a partition that already overlaps this month is the answer.
    SELECT c.relname INTO existing
    FROM pg_inherits i
    JOIN pg_class c ON c.oid = i.inhrelid
    CROSS JOIN LATERAL (
        SELECT regexp_match(pg_get_expr(c.relpartbound, c.oid), '^FOR VALUES FROM \((.*)\) TO \((.*)\)$') AS m
    ) b
    WHERE i.inhparent = parent
      AND b.m IS NOT NULL
      AND CASE WHEN b.m[1] = 'MINVALUE' THEN true ELSE btrim(b.m[1], '''')::timestamptz < hi::timestamptz END
      AND CASE WHEN b.m[2] = 'MAXVALUE' THEN true ELSE btrim(b.m[2], '''')::timestamptz > lo::timestamptz END
    LIMIT 1;
    IF existing IS NOT NULL THEN
        RETURN existing;
    END IF;

    child_name := left(parent_name, 63 - 8) || '_p' || to_char(lo, 'YYYYMM');
    SELECT i.inhrelid::regclass INTO default_rel
    FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
    WHERE i.inhparent = parent AND pg_get_expr(c.relpartbound, c.oid) = 'DEFAULT';
    SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) INTO columns
    FROM pg_attribute WHERE attrelid = parent AND attnum > 0 AND NOT attisdropped AND attgenerated = '';

    IF default_rel IS NOT NULL THEN
        EXECUTE format('LOCK TABLE %s IN ACCESS EXCLUSIVE MODE', default_rel);
    END IF;
    EXECUTE format('CREATE TABLE %I.%I (LIKE %s INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING GENERATED)',
                   parent_ns, child_name, parent);
    EXECUTE format('ALTER TABLE %I.%I ADD CONSTRAINT %I CHECK (%I IS NOT NULL AND %I >= %L AND %I < %L)',
                   parent_ns, child_name, child_name || '_bound', key_column, key_column, lo, key_column, hi);
    IF default_rel IS NOT NULL THEN
        EXECUTE format('WITH moved AS (DELETE FROM %s WHERE %I >= %L AND %I < %L RETURNING %s) '
                       'INSERT INTO %I.%I (%s) SELECT %s FROM moved',
                       default_rel, key_column, lo, key_column, hi, columns, parent_ns, child_name, columns, columns);
    END IF;
    EXECUTE format('ALTER TABLE %s ATTACH PARTITION %I.%I FOR VALUES FROM (%L) TO (%L)',
                   parent, parent_ns, child_name, lo, hi);
    EXECUTE format('ALTER TABLE %I.%I DROP CONSTRAINT %I', parent_ns, child_name, child_name || '_bound');
    RETURN child_name;
END
$fn$;

-- create_monthly_partition(parent, start_date): the original design's helper, made idempotent and
-- lock-friendly, doing what the Python maintenance (etl_platform.partitions) does for one month:
-- the month containing start_date is created as a standalone table with a CHECK constraint matching
-- the bound, any rows for that month are moved out of the default partition (with the default's user
-- triggers off: a row changing partition is not a new or deleted row), then it is ATTACHed (SHARE
-- UPDATE EXCLUSIVE on the parent, not ACCESS EXCLUSIVE) and given the parent's owner and grants.
-- Bounds are midnight UTC whatever the caller's TimeZone (SET TimeZone below); every lock wait is
-- bounded by lock_timeout. Returns the partition's name; a month that already has one returns it.
-- Lock order (as etl_platform.partitions.create): every lock is taken before anything changes, the
-- default's with NOWAIT, so a caller never waits behind a reader of the default while holding the
-- parent (which would stall every writer through the parent): a busy default raises SQLSTATE 55P03
-- (lock_not_available) at once and the caller retries later; nothing has moved.

CREATE OR REPLACE FUNCTION etl_audit.create_monthly_partition(parent regclass, start_date date)
RETURNS text
LANGUAGE plpgsql
SET TimeZone = 'UTC'
SET lock_timeout = '5s'
AS $fn$
DECLARE
    lo           date := date_trunc('month', start_date)::date;
    hi           date := (date_trunc('month', start_date) + interval '1 month')::date;
    parent_ns    text;
    parent_name  text;
    parent_owner text;
    key_column   text;
    child_name   text;
    existing     text;
    default_rel  regclass;
    columns      text;
    moving       boolean;
    trig_names   text[];
    trig_modes   text[];
    grant_row    record;
    i            integer;
BEGIN
    SELECT n.nspname, c.relname, pg_get_userbyid(c.relowner) INTO parent_ns, parent_name, parent_owner
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

    -- Writers through the parent route each row with the partition list they read when they locked
    -- it: a row routed to the default before the ATTACH would fail the default's new constraint.
    -- SHARE ROW EXCLUSIVE on ONLY the parent makes them wait (reads do not), and serializes two
    -- callers, so the existence check below cannot race.
    EXECUTE format('LOCK TABLE ONLY %s IN SHARE ROW EXCLUSIVE MODE', parent);

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

    -- The parent's name cut (on a character boundary) so the whole name fits 63 bytes.
    child_name := parent_name;
    WHILE octet_length(child_name) > 63 - 8 LOOP
        child_name := left(child_name, -1);
    END LOOP;
    child_name := child_name || '_p' || to_char(lo, 'YYYYMM');
    SELECT i.inhrelid::regclass INTO default_rel
    FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
    WHERE i.inhparent = parent AND pg_get_expr(c.relpartbound, c.oid) = 'DEFAULT';
    SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) INTO columns
    FROM pg_attribute WHERE attrelid = parent AND attnum > 0 AND NOT attisdropped AND attgenerated = '';

    IF default_rel IS NOT NULL THEN
        -- ATTACH needs ACCESS EXCLUSIVE on the default: taken now, NOWAIT (see the lock order above).
        EXECUTE format('LOCK TABLE ONLY %s IN ACCESS EXCLUSIVE MODE NOWAIT', default_rel);
    END IF;
    EXECUTE format('CREATE TABLE %I.%I (LIKE %s INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING GENERATED '
                   'INCLUDING STORAGE INCLUDING COMMENTS)', parent_ns, child_name, parent);
    EXECUTE format('ALTER TABLE %I.%I ADD CONSTRAINT %I CHECK (%I IS NOT NULL AND %I >= %L AND %I < %L)',
                   parent_ns, child_name, child_name || '_bound', key_column, key_column, lo, key_column, hi);
    IF default_rel IS NOT NULL THEN
        EXECUTE format('SELECT EXISTS (SELECT 1 FROM %s WHERE %I >= %L AND %I < %L)',
                       default_rel, key_column, lo, key_column, hi) INTO moving;
    END IF;
    IF moving THEN
        IF EXISTS (SELECT 1 FROM pg_constraint WHERE contype = 'f' AND confrelid = parent) THEN
            RAISE EXCEPTION 'create_monthly_partition: % holds rows for % but foreign keys reference %; '
                            'moving them would fire their ON DELETE actions', default_rel, lo, parent;
        END IF;
        -- Each enabled user trigger off by name, restored to its own mode after the move.
        SELECT coalesce(array_agg(tgname::text ORDER BY tgname), '{}'),
               coalesce(array_agg(tgenabled::text ORDER BY tgname), '{}')
        INTO trig_names, trig_modes
        FROM pg_trigger WHERE tgrelid = default_rel AND NOT tgisinternal AND tgenabled <> 'D';
        FOR i IN 1 .. coalesce(array_length(trig_names, 1), 0) LOOP
            EXECUTE format('ALTER TABLE %s DISABLE TRIGGER %I', default_rel, trig_names[i]);
        END LOOP;
        EXECUTE format('WITH moved AS (DELETE FROM %s WHERE %I >= %L AND %I < %L RETURNING %s) '
                       'INSERT INTO %I.%I (%s) SELECT %s FROM moved',
                       default_rel, key_column, lo, key_column, hi, columns, parent_ns, child_name, columns, columns);
        FOR i IN 1 .. coalesce(array_length(trig_names, 1), 0) LOOP
            EXECUTE format('ALTER TABLE %s %s TRIGGER %I', default_rel,
                           CASE trig_modes[i] WHEN 'A' THEN 'ENABLE ALWAYS' WHEN 'R' THEN 'ENABLE REPLICA'
                                ELSE 'ENABLE' END,
                           trig_names[i]);
        END LOOP;
    END IF;
    EXECUTE format('ALTER TABLE %I.%I OWNER TO %I', parent_ns, child_name, parent_owner);
    EXECUTE format('ALTER TABLE %s ATTACH PARTITION %I.%I FOR VALUES FROM (%L) TO (%L)',
                   parent, parent_ns, child_name, lo, hi);
    EXECUTE format('ALTER TABLE %I.%I DROP CONSTRAINT %I', parent_ns, child_name, child_name || '_bound');
    FOR grant_row IN
        SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) END AS grantee,
               a.privilege_type
        FROM pg_class c, aclexplode(c.relacl) a
        WHERE c.oid = parent AND a.grantee <> c.relowner
    LOOP
        EXECUTE format('GRANT %s ON %I.%I TO %s', grant_row.privilege_type, parent_ns, child_name, grant_row.grantee);
    END LOOP;
    RETURN child_name;
END
$fn$;

-- tasker.uuid_generate_v7(): layout, embedded time, ordering, uniqueness.

CREATE TEMP TABLE u AS
SELECT i, tasker.uuid_generate_v7() AS id, clock_timestamp() AS at
FROM generate_series(1, 5000) AS i;

SELECT tap.ok((SELECT bool_and(substring(id::text FROM 15 FOR 1) = '7') FROM u),
    'version nibble is 7');
SELECT tap.ok((SELECT bool_and(substring(id::text FROM 20 FOR 1) IN ('8', '9', 'a', 'b')) FROM u),
    'variant bits are 10 (RFC 9562)');
SELECT tap.is((SELECT count(DISTINCT id)::int FROM u), 5000, '5000 values are distinct');
SELECT tap.ok(
    (SELECT bool_and(abs(extract(epoch FROM tasker.uuid_v7_time(id) - at)) < 1) FROM u),
    'embedded timestamp is the generation time (within 1 s)');
SELECT tap.ok(
    (SELECT bool_and(tasker.uuid_v7_time(id) <= tasker.uuid_v7_time(nxt))
     FROM (SELECT id, lead(id) OVER (ORDER BY i) AS nxt FROM u) AS s WHERE nxt IS NOT NULL),
    'millisecond timestamps never go backwards in generation order');
-- Within one session, values generated in different microseconds sort in
-- generation order (12-bit sub-millisecond field); equal-microsecond pairs
-- may be in either order, so allow a small fraction.
SELECT tap.ok(
    (SELECT count(*) FILTER (WHERE id > nxt) <= 50
     FROM (SELECT id, lead(id) OVER (ORDER BY i) AS nxt FROM u) AS s WHERE nxt IS NOT NULL),
    'values sort in generation order (monotonic to the microsecond)');

CREATE TEMP TABLE spaced (i int, id uuid);
DO $$
BEGIN
    FOR i IN 1..20 LOOP
        INSERT INTO spaced VALUES (i, tasker.uuid_generate_v7());
        PERFORM pg_sleep(0.002);
    END LOOP;
END $$;
SELECT tap.ok(
    (SELECT bool_and(id < nxt) FROM (SELECT id, lead(id) OVER (ORDER BY i) AS nxt FROM spaced) AS s
     WHERE nxt IS NOT NULL),
    'values generated 2 ms apart are strictly increasing');

SELECT tap.ok(
    (SELECT tasker.uuid_v7_time(tasker.uuid_generate_v7()) BETWEEN now() - interval '1 minute'
                                                               AND clock_timestamp() + interval '1 second'),
    'uuid_v7_time decodes the embedded time');

SELECT tap.ok(
    (SELECT provolatile = 'v' FROM pg_proc WHERE oid = 'tasker.uuid_generate_v7'::regproc),
    'uuid_generate_v7 is VOLATILE (a new value per call)');

INSERT INTO tasker.task_namespaces (name) VALUES ('a'), ('b');
SELECT tap.ok(
    (SELECT bool_and(substring(task_namespace_uuid::text FROM 15 FOR 1) = '7') FROM tasker.task_namespaces),
    'primary keys default to version 7 UUIDs');

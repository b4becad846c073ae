-- The rows of the raw claim-and-complete loop (sqlbench ceiling), in schema
-- "bench" of the benchmark's database, beside the tasker schema.
--
-- One row per step of N diamonds (a -> b, a -> c, b -> d, c -> d), with the
-- number of parents not yet complete in "waiting"; a step is 'ready' when
-- that number is 0. Completing a step decrements its children's "waiting"
-- (sqlbench.c, SQL_COMPLETE). Filled by bench.reset(N).
CREATE SCHEMA IF NOT EXISTS bench;

DROP TABLE IF EXISTS bench.edges;
DROP TABLE IF EXISTS bench.steps;

CREATE TABLE bench.steps (
    id      bigint  PRIMARY KEY,
    task    integer NOT NULL,
    name    text    NOT NULL,
    state   text    NOT NULL,   -- pending (a parent is not complete), ready, complete
    waiting integer NOT NULL    -- parents not complete yet
);
-- The claim reads the ready rows in id order.
CREATE INDEX steps_ready ON bench.steps (id) WHERE state = 'ready';

CREATE TABLE bench.edges (
    parent bigint NOT NULL REFERENCES bench.steps (id),
    child  bigint NOT NULL REFERENCES bench.steps (id),
    PRIMARY KEY (parent, child)
);

CREATE OR REPLACE FUNCTION bench.reset(p_tasks integer) RETURNS bigint
LANGUAGE plpgsql
AS $$
BEGIN
    TRUNCATE bench.edges, bench.steps;
    -- task t has steps 4t+0 (a), 4t+1 (b), 4t+2 (c), 4t+3 (d)
    INSERT INTO bench.steps (id, task, name, state, waiting)
    SELECT 4 * t + s, t, (ARRAY['a', 'b', 'c', 'd'])[s + 1],
           CASE WHEN s = 0 THEN 'ready' ELSE 'pending' END,
           (ARRAY[0, 1, 1, 2])[s + 1]
    FROM generate_series(0, p_tasks - 1) t, generate_series(0, 3) s;
    INSERT INTO bench.edges (parent, child)
    SELECT 4 * t + e.p, 4 * t + e.c
    FROM generate_series(0, p_tasks - 1) t,
         (VALUES (0, 1), (0, 2), (1, 3), (2, 3)) AS e(p, c);
    RETURN (SELECT count(*) FROM bench.steps);
END;
$$;

-- The floor: the rows that the schema contract (tasker-api.md §3.2, the
-- lifecycle of §3.6) makes one diamond write, written set-based for
-- :N diamonds per statement, with none of the engine's decisions, JSON,
-- handler input, notifications or processes. Its PostgreSQL CPU per step is
-- a lower bound for any engine on this schema (run.sh, "The floor").
--
--   psql -v N=1000 -v R=1 -f floor.sql      (R numbers the run)
--
-- Run with taskerd and the worker stopped and their queues drained: the
-- queue statements take every message of the floor's queues.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
-- the template rows and the worker queue (once)
SELECT pgmq.create('worker_floorbench_queue');
INSERT INTO tasker.task_namespaces (name) VALUES ('floorbench') ON CONFLICT DO NOTHING;
INSERT INTO tasker.named_tasks (task_namespace_uuid, name, version)
SELECT task_namespace_uuid, 'floor_diamond', '1.0.0' FROM tasker.task_namespaces WHERE name = 'floorbench'
ON CONFLICT DO NOTHING;
INSERT INTO tasker.named_steps (name)
SELECT x FROM unnest(ARRAY['floor_a', 'floor_b', 'floor_c', 'floor_d']) x
WHERE NOT EXISTS (SELECT 1 FROM tasker.named_steps WHERE name = x);
-- the keys of this run's diamonds, made before the measured part
DROP TABLE IF EXISTS bench.floor_k, bench.floor_ks;
CREATE UNLOGGED TABLE bench.floor_k AS
SELECT g AS i, tasker.uuid_generate_v7() AS t, tasker.uuid_generate_v7() AS corr
FROM generate_series(1, :N) g;
CREATE UNLOGGED TABLE bench.floor_ks AS
SELECT k.i, k.t, k.corr, s.pos, tasker.uuid_generate_v7() AS step,
       CASE s.pos WHEN 1 THEN 1 WHEN 4 THEN 3 ELSE 2 END AS lvl,
       (SELECT named_step_uuid FROM tasker.named_steps WHERE name = 'floor_' || chr(96 + s.pos)) AS ns
FROM bench.floor_k k, generate_series(1, 4) AS s(pos);
CREATE INDEX ON bench.floor_ks (step);
CREATE INDEX ON bench.floor_ks (lvl);
ANALYZE bench.floor_k, bench.floor_ks;

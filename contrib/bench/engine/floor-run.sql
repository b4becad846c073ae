-- The measured part of the floor (floor.sql made the keys): per diamond,
-- the request message, the task with its 4 steps, 4 edges and initial
-- transitions, then per level (a; b and c; d) the worker's claim and report
-- and the orchestration's settling, each as the rows it writes.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
-- this session's CPU (utime + stime, clock ticks) from its /proc entry
-- (a superuser may read server files): printed at the end
SELECT (f[12])::bigint + (f[13])::bigint AS cpu0
FROM string_to_array(split_part(pg_read_file('/proc/self/stat'), ') ', 2), ' ') AS f \gset
-- the request: send, read, archive
INSERT INTO pgmq.q_orchestration_task_requests (vt, message)
SELECT now(), jsonb_build_object('floor', true, 'namespace', 'floorbench', 'name', 'floor_diamond',
                                 'context', jsonb_build_object('i', i))
FROM bench.floor_k;
UPDATE pgmq.q_orchestration_task_requests SET vt = now() + interval '30 s', read_ct = read_ct + 1
WHERE message ? 'floor';
WITH d AS (DELETE FROM pgmq.q_orchestration_task_requests WHERE message ? 'floor' RETURNING *)
INSERT INTO pgmq.a_orchestration_task_requests (msg_id, read_ct, enqueued_at, vt, message)
SELECT msg_id, read_ct, enqueued_at, vt, message FROM d;
-- the task, its steps and edges, the steps pending (the root enqueued), the
-- task pending -> initializing -> enqueuing_steps -> steps_in_process, the
-- root's worker message
INSERT INTO tasker.tasks (task_uuid, named_task_uuid, identity_hash, context, correlation_id,
                          initiator, source_system, reason)
SELECT k.t, (SELECT named_task_uuid FROM tasker.named_tasks WHERE name = 'floor_diamond'),
       md5(k.t::text), jsonb_build_object('i', k.i), k.corr, 'floor', 'floor', 'floor'
FROM bench.floor_k k;
INSERT INTO tasker.workflow_steps (workflow_step_uuid, task_uuid, named_step_uuid, inputs)
SELECT step, t, ns, '{}'::jsonb FROM bench.floor_ks;
INSERT INTO tasker.workflow_step_edges (from_step_uuid, to_step_uuid)
SELECT p.step, c.step FROM bench.floor_ks p JOIN bench.floor_ks c ON c.i = p.i
WHERE (p.pos, c.pos) IN ((1, 2), (1, 3), (2, 4), (3, 4));
INSERT INTO tasker.workflow_step_transitions (workflow_step_uuid, from_state, to_state, metadata, sort_key, most_recent)
SELECT step, NULL, 'pending', '{}'::jsonb, 1, lvl <> 1 FROM bench.floor_ks
UNION ALL
SELECT step, 'pending', 'enqueued', '{}'::jsonb, 2, true FROM bench.floor_ks WHERE lvl = 1;
INSERT INTO tasker.task_transitions (task_uuid, from_state, to_state, metadata, sort_key, most_recent)
SELECT k.t, v.f, v.x, '{}'::jsonb, v.n, v.n = 3
FROM bench.floor_k k, (VALUES (1, 'pending', 'initializing'), (2, 'initializing', 'enqueuing_steps'),
                              (3, 'enqueuing_steps', 'steps_in_process')) v(n, f, x);
INSERT INTO pgmq.q_worker_floorbench_queue (vt, message)
SELECT now(), jsonb_build_object('task_uuid', t, 'step_uuid', step, 'correlation_id', corr)
FROM bench.floor_ks WHERE lvl = 1;
\set L 1
\ir floor-level.sql
\set L 2
\ir floor-level.sql
\set L 3
\ir floor-level.sql
SELECT 'floor_cpu_ticks=' || ((f[12])::bigint + (f[13])::bigint - :cpu0)
FROM string_to_array(split_part(pg_read_file('/proc/self/stat'), ') ', 2), ' ') AS f;

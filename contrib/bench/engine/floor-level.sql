-- One level of the floor's diamonds (:L = 1 a, 2 b and c, 3 d).
-- The worker's claim: the message read, the step enqueued -> in_progress,
-- in_process and the attempt.
UPDATE pgmq.q_worker_floorbench_queue SET vt = now() + interval '30 s', read_ct = read_ct + 1;
WITH o AS (UPDATE tasker.workflow_step_transitions st SET most_recent = false, updated_at = now()
           FROM bench.floor_ks ks
           WHERE ks.lvl = :L AND st.workflow_step_uuid = ks.step AND st.most_recent
           RETURNING st.workflow_step_uuid, st.to_state, st.sort_key)
INSERT INTO tasker.workflow_step_transitions (workflow_step_uuid, from_state, to_state, metadata, sort_key, most_recent)
SELECT o.workflow_step_uuid, o.to_state, 'in_progress',
       jsonb_build_object('worker_uuid', ks.corr, 'correlation_id', ks.corr, 'event', 'Start'),
       o.sort_key + 1, true
FROM o JOIN bench.floor_ks ks ON ks.step = o.workflow_step_uuid;
UPDATE tasker.workflow_steps ws
SET in_process = true, attempts = attempts + 1, last_attempted_at = now(), updated_at = now()
FROM bench.floor_ks ks WHERE ks.lvl = :L AND ws.workflow_step_uuid = ks.step;
-- The worker's report: in_progress -> enqueued_for_orchestration with the
-- result (the audit trigger writes its row), the result on the step, the
-- notice on orchestration_step_results, the worker message archived.
WITH o AS (UPDATE tasker.workflow_step_transitions st SET most_recent = false, updated_at = now()
           FROM bench.floor_ks ks
           WHERE ks.lvl = :L AND st.workflow_step_uuid = ks.step AND st.most_recent
           RETURNING st.workflow_step_uuid, st.to_state, st.sort_key)
INSERT INTO tasker.workflow_step_transitions (workflow_step_uuid, from_state, to_state, metadata, sort_key, most_recent)
SELECT o.workflow_step_uuid, o.to_state, 'enqueued_for_orchestration',
       jsonb_build_object('worker_uuid', ks.corr, 'correlation_id', ks.corr,
                          'event', jsonb_build_object('step_uuid', ks.step, 'success', true, 'status', 'completed',
                                                      'result', jsonb_build_object('ok', true),
                                                      'metadata', jsonb_build_object('execution_time_ms', 0,
                                                                                     'retryable', false))),
       o.sort_key + 1, true
FROM o JOIN bench.floor_ks ks ON ks.step = o.workflow_step_uuid;
UPDATE tasker.workflow_steps ws
SET in_process = false, updated_at = now(),
    results = jsonb_build_object('step_uuid', ks.step, 'success', true, 'status', 'completed',
                                 'result', jsonb_build_object('ok', true),
                                 'metadata', jsonb_build_object('execution_time_ms', 0, 'retryable', false))
FROM bench.floor_ks ks WHERE ks.lvl = :L AND ws.workflow_step_uuid = ks.step;
INSERT INTO pgmq.q_orchestration_step_results (vt, message)
SELECT now(), jsonb_build_object('floor', true, 'task_uuid', t, 'step_uuid', step, 'correlation_id', corr)
FROM bench.floor_ks WHERE lvl = :L;
WITH d AS (DELETE FROM pgmq.q_worker_floorbench_queue RETURNING *)
INSERT INTO pgmq.a_worker_floorbench_queue (msg_id, read_ct, enqueued_at, vt, message)
SELECT msg_id, read_ct, enqueued_at, vt, message FROM d;
-- The orchestration: the notice archived, the step -> complete (processed),
-- the children whose parents are all complete -> enqueued with their worker
-- messages, the task steps_in_process -> evaluating_results ->
-- enqueuing_steps -> steps_in_process (at the last level -> complete).
WITH d AS (DELETE FROM pgmq.q_orchestration_step_results WHERE message ? 'floor' RETURNING *)
INSERT INTO pgmq.a_orchestration_step_results (msg_id, read_ct, enqueued_at, vt, message)
SELECT msg_id, read_ct, enqueued_at, vt, message FROM d;
WITH o AS (UPDATE tasker.workflow_step_transitions st SET most_recent = false, updated_at = now()
           FROM bench.floor_ks ks
           WHERE ks.lvl = :L AND st.workflow_step_uuid = ks.step AND st.most_recent
           RETURNING st.workflow_step_uuid, st.to_state, st.sort_key, st.metadata)
INSERT INTO tasker.workflow_step_transitions (workflow_step_uuid, from_state, to_state, metadata, sort_key, most_recent)
SELECT o.workflow_step_uuid, o.to_state, 'complete', o.metadata, o.sort_key + 1, true FROM o;
UPDATE tasker.workflow_steps ws SET processed = true, processed_at = now(), updated_at = now()
FROM bench.floor_ks ks WHERE ks.lvl = :L AND ws.workflow_step_uuid = ks.step;
WITH o AS (UPDATE tasker.workflow_step_transitions st SET most_recent = false, updated_at = now()
           FROM bench.floor_ks ks
           WHERE ks.lvl = :L + 1 AND st.workflow_step_uuid = ks.step AND st.most_recent
           RETURNING st.workflow_step_uuid, st.to_state, st.sort_key)
INSERT INTO tasker.workflow_step_transitions (workflow_step_uuid, from_state, to_state, metadata, sort_key, most_recent)
SELECT o.workflow_step_uuid, o.to_state, 'enqueued', '{}'::jsonb, o.sort_key + 1, true FROM o;
INSERT INTO pgmq.q_worker_floorbench_queue (vt, message)
SELECT now(), jsonb_build_object('task_uuid', t, 'step_uuid', step, 'correlation_id', corr)
FROM bench.floor_ks WHERE lvl = :L + 1;
WITH o AS (UPDATE tasker.task_transitions tt SET most_recent = false, updated_at = now()
           FROM bench.floor_k k WHERE tt.task_uuid = k.t AND tt.most_recent
           RETURNING tt.task_uuid, tt.sort_key)
INSERT INTO tasker.task_transitions (task_uuid, from_state, to_state, metadata, sort_key, most_recent)
SELECT o.task_uuid, v.f, v.x, '{}'::jsonb, o.sort_key + v.n, v.n = CASE WHEN :L = 3 THEN 2 ELSE 3 END
FROM o, (VALUES (1, 'steps_in_process', 'evaluating_results'),
                (2, 'evaluating_results', CASE WHEN :L = 3 THEN 'complete' ELSE 'enqueuing_steps' END),
                (3, 'enqueuing_steps', 'steps_in_process')) v(n, f, x)
WHERE v.n <= CASE WHEN :L = 3 THEN 2 ELSE 3 END;
UPDATE tasker.tasks t SET complete = true, completed_at = now(), updated_at = now()
FROM bench.floor_k k WHERE :L = 3 AND t.task_uuid = k.t;

-- migrations: all
-- The batch functions of 0010 (create_tasks, worker_claim_steps,
-- worker_report_steps, orchestrate_step_results) take a diamond from its
-- request to complete, and write what the one-at-a-time path writes; the
-- statement-level triggers keep the checks and rows of the row triggers
-- they replace.

SELECT pgmq.create('worker_ft_queue') \g /dev/null
CREATE TEMP TABLE f (k text PRIMARY KEY, v text);
INSERT INTO f VALUES ('worker', gen_random_uuid()::text), ('proc', gen_random_uuid()::text);
CREATE FUNCTION pg_temp.v(p_k text) RETURNS text LANGUAGE sql AS $$ SELECT v FROM f WHERE k = p_k $$;
CREATE FUNCTION pg_temp.u(p_k text) RETURNS uuid LANGUAGE sql AS $$ SELECT v::uuid FROM f WHERE k = p_k $$;

-- The template rows the registry would write, and the template as the engine passes it.
INSERT INTO tasker.task_namespaces (name) VALUES ('ft');
INSERT INTO tasker.named_tasks (task_namespace_uuid, name, version)
SELECT task_namespace_uuid, 'diamond', '1.0.0' FROM tasker.task_namespaces WHERE name = 'ft';
INSERT INTO tasker.named_steps (name) VALUES ('fa'), ('fb'), ('fc'), ('fd');
INSERT INTO f SELECT 'nt', named_task_uuid::text FROM tasker.named_tasks WHERE name = 'diamond';
INSERT INTO f VALUES ('tpl', jsonb_build_object(pg_temp.v('nt'), jsonb_build_object(
    'namespace', 'ft',
    'steps', '[{"name": "fa", "retryable": true, "max_attempts": 3, "inputs": {"op": "start"}},
               {"name": "fb", "retryable": true, "max_attempts": 3, "inputs": {}},
               {"name": "fc", "retryable": false, "max_attempts": 1, "inputs": null},
               {"name": "fd", "retryable": true, "max_attempts": 3, "inputs": {}}]'::jsonb,
    'edges', '[{"parent": "fa", "child": "fb"}, {"parent": "fa", "child": "fc"},
               {"parent": "fb", "child": "fd"}, {"parent": "fc", "child": "fd"}]'::jsonb))::text);
CREATE FUNCTION pg_temp.req(p_i int, p_ctx text, p_extra jsonb DEFAULT '{}') RETURNS jsonb LANGUAGE sql AS $$
    SELECT jsonb_build_object('i', p_i, 'named_task_uuid', pg_temp.v('nt'), 'identity_strategy', 'strict',
                              'context', p_ctx, 'priority', 0) || p_extra $$;

-- =============================================================== create_tasks
SELECT pgmq.send('orchestration_task_requests', '{"r": 1}'::jsonb) \g /dev/null
CREATE TEMP TABLE created AS
SELECT * FROM tasker.create_tasks(
    jsonb_build_array(pg_temp.req(0, '{"n": 1, "a": [1, 2]}', '{"initiator": "tester", "tags": "[\"x\"]"}'),
                      pg_temp.req(1, '{"a":[1,2],  "n":1}'),
                      pg_temp.req(2, '{"n": 2}')),
    pg_temp.v('tpl')::jsonb, pg_temp.u('proc'),
    ARRAY(SELECT msg_id FROM pgmq.q_orchestration_task_requests));
INSERT INTO f SELECT 't', task_uuid::text FROM created WHERE i = 0;

SELECT tap.is((SELECT string_agg(i || ':' || (task_uuid IS NOT NULL), ' ' ORDER BY i) FROM created),
    '0:true 1:false 2:true', 'create_tasks: one row per request; the same context again creates nothing');
SELECT tap.is((SELECT count(*)::int FROM tasker.tasks WHERE named_task_uuid = pg_temp.u('nt')), 2,
    'create_tasks: two tasks');
SELECT tap.is((SELECT identity_hash::text FROM tasker.tasks WHERE task_uuid = pg_temp.u('t')),
    encode(sha256(convert_to(pg_temp.v('nt') || ':ctx:' || '{"n": 1, "a": [1, 2]}'::jsonb::text, 'UTF8')), 'hex'),
    'create_tasks: the strict identity hash of the engine');
SELECT tap.ok((SELECT initiator = 'tester' AND tags = '["x"]' AND context = '{"a": [1, 2], "n": 1}'
                      AND substring(task_uuid::text FROM 15 FOR 1) = '7'
               FROM tasker.tasks WHERE task_uuid = pg_temp.u('t')),
    'create_tasks: the request''s fields, a UUIDv7 key');
SELECT tap.is((SELECT string_agg(ns.name || ':' || ws.retryable || ':' || ws.max_attempts || ':' || ws.inputs::text,
                                 ' ' ORDER BY ns.name)
               FROM tasker.workflow_steps ws JOIN tasker.named_steps ns USING (named_step_uuid)
               WHERE ws.task_uuid = pg_temp.u('t')),
    'fa:true:3:{"op": "start"} fb:true:3:{} fc:false:1:{} fd:true:3:{}', 'create_tasks: the steps and their settings');
SELECT tap.is((SELECT string_agg(p.name || '>' || c.name, ' ' ORDER BY p.name, c.name)
               FROM tasker.workflow_step_edges e
               JOIN tasker.workflow_steps pw ON pw.workflow_step_uuid = e.from_step_uuid
               JOIN tasker.named_steps p ON p.named_step_uuid = pw.named_step_uuid
               JOIN tasker.workflow_steps cw ON cw.workflow_step_uuid = e.to_step_uuid
               JOIN tasker.named_steps c ON c.named_step_uuid = cw.named_step_uuid
               WHERE pw.task_uuid = pg_temp.u('t')),
    'fa>fb fa>fc fb>fd fc>fd', 'create_tasks: the edges');
SELECT tap.is((SELECT string_agg(coalesce(from_state, '-') || '>' || to_state || ':' || sort_key || ':' || most_recent
                                 || ':' || (metadata ->> 'event') || ':' || (processor_uuid IS NOT NULL), ' '
                                 ORDER BY sort_key)
               FROM tasker.task_transitions WHERE task_uuid = pg_temp.u('t')),
    '->pending:1:false:Initialize:false pending>initializing:2:false:Start:true '
    'initializing>enqueuing_steps:3:false:ReadyStepsFound:true enqueuing_steps>steps_in_process:4:true:StepsEnqueued:true',
    'create_tasks: the task goes pending -> initializing -> enqueuing_steps -> steps_in_process');
SELECT tap.is((SELECT string_agg(tap.step_state(pg_temp.u('t'), n), ' ' ORDER BY n) FROM unnest(ARRAY['fa', 'fb', 'fc', 'fd']) n),
    'enqueued pending pending pending', 'create_tasks: the root step is enqueued, the others pending');
SELECT tap.is((SELECT string_agg(coalesce(from_state, '-') || '>' || to_state || ':' || sort_key || ':' || most_recent, ' '
                                 ORDER BY sort_key)
               FROM tasker.workflow_step_transitions WHERE workflow_step_uuid = tap.step(pg_temp.u('t'), 'fa')),
    '->pending:1:false pending>enqueued:2:true', 'create_tasks: the root''s Initialize and Enqueue rows');
SELECT tap.is((SELECT message FROM pgmq.q_worker_ft_queue WHERE message ->> 'task_uuid' = pg_temp.v('t')),
    jsonb_build_object('task_uuid', pg_temp.v('t'), 'step_uuid', tap.step(pg_temp.u('t'), 'fa'),
                       'correlation_id', (SELECT correlation_id FROM tasker.tasks WHERE task_uuid = pg_temp.u('t'))),
    'create_tasks: the root step''s worker message');
SELECT tap.ok((SELECT count(*) = 0 FROM pgmq.q_orchestration_task_requests)
              AND (SELECT count(*) = 1 FROM pgmq.a_orchestration_task_requests),
    'create_tasks: the request message is archived');
SELECT tap.throws($$SELECT * FROM tasker.create_tasks(jsonb_build_array(pg_temp.req(0, '{"n": 9}')),
                      jsonb_build_object(pg_temp.v('nt'), '{"namespace": "ft", "steps": [{"name": "nope"}], "edges": []}'::jsonb),
                      NULL)$$, 'P0002', 'create_tasks: an unregistered step name raises no_data_found');

-- =============================================================== claim
-- The claim statement of tasker-worker (worker.c) for queue worker_ft_queue.
CREATE FUNCTION pg_temp.claim(p_qty int, p_handled jsonb) RETURNS TABLE (msg_id bigint, verdict text, k text, input jsonb)
LANGUAGE sql AS $$
    WITH r AS (UPDATE pgmq.q_worker_ft_queue m SET vt = clock_timestamp() + interval '30 s', read_ct = m.read_ct + 1
               FROM (SELECT q.msg_id FROM pgmq.q_worker_ft_queue q WHERE q.vt <= clock_timestamp()
                     ORDER BY q.msg_id LIMIT p_qty FOR UPDATE SKIP LOCKED) c
               WHERE m.msg_id = c.msg_id RETURNING m.msg_id, m.read_ct, m.message)
    SELECT c.msg_id, c.verdict, concat_ws('/', c.namespace_name, c.task_name, c.task_version, c.step_name), c.input
    FROM tasker.worker_claim_steps(pg_temp.u('worker'), (SELECT array_agg(msg_id ORDER BY msg_id) FROM r),
                                   (SELECT array_agg(read_ct ORDER BY msg_id) FROM r),
                                   (SELECT array_agg(message ORDER BY msg_id) FROM r), p_handled) c
$$;
CREATE FUNCTION pg_temp.report(p_steps text[], p_results jsonb DEFAULT '{"success": true, "result": {"v": 1}, "metadata": {"execution_time_ms": 7}}')
RETURNS TABLE (step_uuid uuid, written boolean) LANGUAGE sql AS $$
    SELECT * FROM tasker.worker_report_steps(pg_temp.u('worker'),
        (SELECT jsonb_agg(jsonb_build_object('step_uuid', s, 'task_uuid', ws.task_uuid,
                                             'correlation_id', t.correlation_id,
                                             'to_state', CASE WHEN p_results ->> 'success' = 'false'
                                                              THEN 'enqueued_as_error_for_orchestration'
                                                              ELSE 'enqueued_for_orchestration' END,
                                             'results', p_results || jsonb_build_object('step_uuid', s)))
         FROM unnest(p_steps) s
         JOIN tasker.workflow_steps ws ON ws.workflow_step_uuid = s::uuid
         JOIN tasker.tasks t ON t.task_uuid = ws.task_uuid))
$$;

CREATE TEMP TABLE c1 AS SELECT * FROM pg_temp.claim(10, '[]');
SELECT tap.is((SELECT string_agg(verdict || ':' || k, ' ') FROM c1), 'foreign:ft/diamond/1.0.0/fa foreign:ft/diamond/1.0.0/fa',
    'claim: steps whose handler key is not listed are foreign');
SELECT tap.is((SELECT string_agg(tap.step_state(task_uuid, 'fa'), ' ') FROM created WHERE task_uuid IS NOT NULL),
    'enqueued enqueued', '... and stay enqueued');
UPDATE pgmq.q_worker_ft_queue SET vt = clock_timestamp();  -- visible again
CREATE TEMP TABLE c2 AS SELECT * FROM pg_temp.claim(10, '[["ft", "diamond", "1.0.0", "fa"]]');
SELECT tap.is((SELECT string_agg(verdict, ' ') FROM c2), 'claimed claimed', 'claim: listed steps are claimed');
SELECT tap.is((SELECT input FROM c2 WHERE input ->> 'task_uuid' = pg_temp.v('t')),
    tasker.worker_step_input(tap.step(pg_temp.u('t'), 'fa'), NULL),
    'claim: the handler input is worker_step_input''s');
SELECT tap.ok((SELECT attempts = 1 AND in_process AND last_attempted_at IS NOT NULL
               FROM tasker.workflow_steps WHERE workflow_step_uuid = tap.step(pg_temp.u('t'), 'fa'))
              AND (SELECT metadata = jsonb_build_object('worker_uuid', pg_temp.v('worker'), 'event', 'Start',
                                                        'correlation_id', (SELECT correlation_id FROM tasker.tasks
                                                                           WHERE task_uuid = pg_temp.u('t')))
                          AND from_state = 'enqueued' AND sort_key = 3
                   FROM tasker.workflow_step_transitions
                   WHERE workflow_step_uuid = tap.step(pg_temp.u('t'), 'fa') AND most_recent),
    'claim: enqueued -> in_progress (Start), attempts 1, in_process');

-- =============================================================== report + orchestrate
CREATE TEMP TABLE r1 AS SELECT * FROM pg_temp.report(ARRAY(SELECT input ->> 'step_uuid' FROM c2));
SELECT tap.is((SELECT string_agg(written::text, ' ') FROM r1), 'true true', 'report: written');
SELECT tap.is((SELECT count(*)::int FROM pg_temp.report(ARRAY[tap.step(pg_temp.u('t'), 'fa')::text]) WHERE written), 0,
    'report: a step that left in_progress is not written again');
SELECT tap.ok((SELECT NOT in_process AND results ->> 'success' = 'true'
               FROM tasker.workflow_steps WHERE workflow_step_uuid = tap.step(pg_temp.u('t'), 'fa')),
    'report: the step''s results, in_process cleared');
SELECT tap.is((SELECT worker_uuid::text || ':' || success || ':' || execution_time_ms
               FROM tasker.workflow_step_result_audit WHERE workflow_step_uuid = tap.step(pg_temp.u('t'), 'fa')),
    pg_temp.v('worker') || ':true:7', 'report: one audit row with worker, success and execution time');
SELECT tap.is((SELECT count(*)::int FROM pgmq.q_orchestration_step_results), 2, 'report: two notices for the orchestration');

CREATE TEMP TABLE o1 AS SELECT * FROM tasker.orchestrate_step_results(32, 30, pg_temp.u('proc'));
SELECT tap.is((SELECT string_agg(handled::text, ' ') FROM o1), 'true true', 'orchestrate: both results handled');
SELECT tap.is((SELECT string_agg(tap.step_state(pg_temp.u('t'), n), ' ' ORDER BY n) FROM unnest(ARRAY['fa', 'fb', 'fc', 'fd']) n),
    'complete enqueued enqueued pending', 'orchestrate: the step completes and its children are enqueued');
SELECT tap.is((SELECT string_agg(from_state || '>' || to_state || ':' || (metadata ->> 'event'), ' ' ORDER BY sort_key)
               FROM tasker.task_transitions WHERE task_uuid = pg_temp.u('t') AND sort_key > 4),
    'steps_in_process>evaluating_results:StepCompleted evaluating_results>enqueuing_steps:ReadyStepsFound '
    'enqueuing_steps>steps_in_process:StepsEnqueued', 'orchestrate: the task''s transitions for ready steps');
SELECT tap.ok((SELECT count(*) = 0 FROM pgmq.q_orchestration_step_results)
              AND (SELECT count(*) = 2 FROM pgmq.a_orchestration_step_results),
    'orchestrate: the results are archived');
SELECT tap.ok((SELECT processed AND processed_at IS NOT NULL FROM tasker.workflow_steps
               WHERE workflow_step_uuid = tap.step(pg_temp.u('t'), 'fa')),
    'orchestrate: the completed step is processed');

-- fb alone: the task keeps processing (fc is still enqueued)
UPDATE pgmq.q_worker_ft_queue SET vt = clock_timestamp();
CREATE TEMP TABLE c3 AS SELECT * FROM pg_temp.claim(10, '[["ft", "diamond", "1.0.0", "fb"], ["ft", "diamond", "1.0.0", "fc"]]');
SELECT tap.is((SELECT count(*)::int FROM c3 WHERE verdict = 'claimed'), 4, 'claim: fb and fc of both tasks');
SELECT count(*) FROM pg_temp.report(ARRAY[tap.step(pg_temp.u('t'), 'fb')::text]) \g /dev/null
SELECT count(*) FROM tasker.orchestrate_step_results(32, 30, pg_temp.u('proc')) \g /dev/null
SELECT tap.is((SELECT count(*)::int FROM tasker.task_transitions WHERE task_uuid = pg_temp.u('t')), 7,
    'orchestrate: no task transition while another step is processing');
-- fc fails: the one-at-a-time path takes the message
SELECT count(*) FROM pg_temp.report(ARRAY[tap.step(pg_temp.u('t'), 'fc')::text],
                                    '{"success": false, "error": {"retryable": false}}') \g /dev/null
CREATE TEMP TABLE o2 AS SELECT * FROM tasker.orchestrate_step_results(32, 30, pg_temp.u('proc'));
SELECT tap.ok((SELECT NOT handled AND read_ct = 1 AND message::jsonb ->> 'step_uuid' = tap.step(pg_temp.u('t'), 'fc')::text FROM o2)
              AND (SELECT vt > clock_timestamp() + interval '20 s' FROM pgmq.q_orchestration_step_results),
    'orchestrate: a failure is read for the one-at-a-time path (hidden, read_ct 1), not settled');
SELECT tap.is(tap.step_state(pg_temp.u('t'), 'fc'), 'enqueued_as_error_for_orchestration', '... and the step is untouched');
SELECT tap.ok((SELECT to_state = 'enqueued_as_error_for_orchestration' AND NOT success
               FROM tasker.workflow_step_result_audit a
               JOIN tasker.workflow_step_transitions st USING (workflow_step_transition_uuid)
               WHERE a.workflow_step_uuid = tap.step(pg_temp.u('t'), 'fc')),
    'report: an error result''s audit row says success false');

-- the other task: fb, fc, then fd, all successful
SELECT count(*) FROM pg_temp.report(ARRAY(SELECT input ->> 'step_uuid' FROM c3 WHERE input ->> 'task_uuid' <> pg_temp.v('t'))) \g /dev/null
SELECT count(*) FROM tasker.orchestrate_step_results(32, 30, pg_temp.u('proc')) \g /dev/null
INSERT INTO f SELECT 't2', task_uuid::text FROM created WHERE i = 2;
SELECT tap.is(tap.step_state(pg_temp.u('t2'), 'fd'), 'enqueued', 'orchestrate: fd is enqueued once fb and fc are complete');
CREATE TEMP TABLE c4 AS SELECT * FROM pg_temp.claim(10, '[["ft", "diamond", "1.0.0", "fd"]]');
SELECT tap.is((SELECT input -> 'dependency_results' FROM c4 WHERE verdict = 'claimed'),
    tasker.worker_step_input(tap.step(pg_temp.u('t2'), 'fd'), NULL) -> 'dependency_results',
    'claim: every ancestor''s result by name, as worker_step_input');
SELECT count(*) FROM pg_temp.report(ARRAY(SELECT input ->> 'step_uuid' FROM c4 WHERE verdict = 'claimed')) \g /dev/null
SELECT count(*) FROM tasker.orchestrate_step_results(32, 30, pg_temp.u('proc')) \g /dev/null
SELECT tap.is(tap.task_state(pg_temp.u('t2')), 'complete', 'orchestrate: the last result completes the task');
SELECT tap.ok((SELECT complete AND completed_at IS NOT NULL AND updated_at > created_at
               FROM tasker.tasks WHERE task_uuid = pg_temp.u('t2')),
    '... with tasks.complete and completed_at');
SELECT tap.is((SELECT string_agg(coalesce(from_state, '-') || '>' || to_state, ' ' ORDER BY sort_key)
               FROM tasker.task_transitions WHERE task_uuid = pg_temp.u('t2')),
    '->pending pending>initializing initializing>enqueuing_steps enqueuing_steps>steps_in_process '
    'steps_in_process>evaluating_results evaluating_results>enqueuing_steps enqueuing_steps>steps_in_process '
    'steps_in_process>evaluating_results evaluating_results>enqueuing_steps enqueuing_steps>steps_in_process '
    'steps_in_process>evaluating_results evaluating_results>complete',
    'the task''s whole chain: only edges of the state table, one row each');
SELECT tap.is((SELECT count(*)::int FROM tasker.task_transitions WHERE task_uuid = pg_temp.u('t2') AND most_recent), 1,
    '... one most_recent row');
SELECT tap.is((SELECT string_agg(DISTINCT chain, ' ') FROM (
                   SELECT string_agg(to_state, '>' ORDER BY sort_key) AS chain
                   FROM tasker.workflow_step_transitions st JOIN tasker.workflow_steps ws USING (workflow_step_uuid)
                   WHERE ws.task_uuid = pg_temp.u('t2') GROUP BY workflow_step_uuid) x),
    'pending>enqueued>in_progress>enqueued_for_orchestration>complete', 'every step: the five states of a success');

-- =============================================================== claim corner cases
DELETE FROM pgmq.q_worker_ft_queue;
SELECT pgmq.send('worker_ft_queue', '{"step_uuid": "not-a-uuid", "task_uuid": "x"}'::jsonb) \g /dev/null
SELECT pgmq.send('worker_ft_queue', jsonb_build_object('task_uuid', gen_random_uuid(), 'step_uuid', gen_random_uuid())) \g /dev/null
CREATE TEMP TABLE c5 AS SELECT * FROM pg_temp.claim(10, NULL);
SELECT tap.is((SELECT string_agg(verdict, ' ' ORDER BY msg_id) FROM c5), 'invalid skip',
    'claim: a malformed message is invalid; one for a step that does not exist is skip');
-- reclaim: in_progress and the message was read before
DELETE FROM pgmq.q_worker_ft_queue;
INSERT INTO f VALUES ('t3', tap.make_task('ft', 'diamond', ARRAY['fa'], '{}', 0, '{}', true));
SELECT tap.drive(tap.step(pg_temp.u('t3'), 'fa'), 'enqueued');
SELECT pgmq.send('worker_ft_queue', jsonb_build_object('task_uuid', pg_temp.v('t3'), 'step_uuid', tap.step(pg_temp.u('t3'), 'fa'))) \g /dev/null
SELECT pgmq.send('worker_ft_queue', jsonb_build_object('task_uuid', pg_temp.v('t3'), 'step_uuid', tap.step(pg_temp.u('t3'), 'fa'))) \g /dev/null
CREATE TEMP TABLE c6 AS SELECT * FROM pg_temp.claim(10, NULL);
SELECT tap.is((SELECT string_agg(verdict, ' ' ORDER BY msg_id) FROM c6), 'claimed skip',
    'claim: a second message for the same step in one batch is skip');
UPDATE pgmq.q_worker_ft_queue SET vt = clock_timestamp();
UPDATE f SET v = gen_random_uuid()::text WHERE k = 'worker';
CREATE TEMP TABLE c7 AS SELECT * FROM pg_temp.claim(10, NULL);
SELECT tap.is((SELECT string_agg(verdict, ' ' ORDER BY msg_id) FROM c7), 'reclaimed skip',
    'claim: a message read before, for a step in_progress, reclaims it');
SELECT tap.ok((SELECT attempts = 2 FROM tasker.workflow_steps WHERE workflow_step_uuid = tap.step(pg_temp.u('t3'), 'fa'))
              AND (SELECT metadata ->> 'event' = 'Reclaim' AND metadata ->> 'worker_uuid' = pg_temp.v('worker')
                          AND metadata ? 'previous_worker_uuid' AND (metadata ->> 'read_ct')::int = 2
                          AND from_state = 'in_progress'
                   FROM tasker.workflow_step_transitions
                   WHERE workflow_step_uuid = tap.step(pg_temp.u('t3'), 'fa') AND most_recent),
    '... in_progress -> in_progress (Reclaim), attempts 2');
-- a step without transition rows is pending: claimable
DELETE FROM pgmq.q_worker_ft_queue;
INSERT INTO f VALUES ('t4', tap.make_task('ft', 'diamond', ARRAY['fb'], '{}', 0, '{}', false));
SELECT pgmq.send('worker_ft_queue', jsonb_build_object('task_uuid', pg_temp.v('t4'), 'step_uuid', tap.step(pg_temp.u('t4'), 'fb'))) \g /dev/null
CREATE TEMP TABLE c8 AS SELECT * FROM pg_temp.claim(10, NULL);
SELECT tap.is((SELECT string_agg(verdict, ' ') FROM c8), 'claimed', 'claim: a step without rows (pending) is claimed');
SELECT tap.is((SELECT coalesce(from_state, '-') || '>' || to_state || ':' || sort_key FROM tasker.workflow_step_transitions
               WHERE workflow_step_uuid = tap.step(pg_temp.u('t4'), 'fb')), '->in_progress:1', '... from NULL, sort_key 1');
SELECT tap.throws($$SELECT * FROM tasker.worker_report_steps(gen_random_uuid(), '[{"step_uuid": "01000000-0000-7000-8000-000000000000", "to_state": "complete"}]')$$,
    '22023', 'report: only the two result states are accepted');

-- =============================================================== building blocks
SELECT tap.ok(tasker.uuid_or_null('0189D1C0-0000-7000-8000-00000000000A') = '0189d1c0-0000-7000-8000-00000000000a'
              AND tasker.uuid_or_null('0189d1c00000700080000000000000aa') IS NULL
              AND tasker.uuid_or_null('0189d1c0-0000-7000-8000-00000000000g') IS NULL
              AND tasker.uuid_or_null('0189d1c0-0000-7000-8000000000000-0a') IS NULL
              AND tasker.uuid_or_null(NULL) IS NULL,
    'uuid_or_null: canonical uuids only');
SELECT tap.ok((SELECT prolang = (SELECT oid FROM pg_language WHERE lanname = 'plpgsql')
               FROM pg_proc WHERE oid = 'tasker.uuid_generate_v7'::regproc),
    'uuid_generate_v7 is PL/pgSQL (plans cached per session)');
-- edges: the statement-level check sees the whole statement
INSERT INTO f VALUES ('t5', tap.make_task('ft', 'diamond', ARRAY['fa', 'fb', 'fc'], '{}', 0, '{}', true));
SELECT tap.throws(format($$INSERT INTO tasker.workflow_step_edges (from_step_uuid, to_step_uuid)
                           VALUES (%L, %L), (%L, %L), (%L, %L)$$,
                         tap.step(pg_temp.u('t5'), 'fa'), tap.step(pg_temp.u('t5'), 'fb'),
                         tap.step(pg_temp.u('t5'), 'fb'), tap.step(pg_temp.u('t5'), 'fc'),
                         tap.step(pg_temp.u('t5'), 'fc'), tap.step(pg_temp.u('t5'), 'fa')),
    '23514', 'edges: a cycle closed within one multi-row insert is rejected');
SELECT tap.throws(format($$INSERT INTO tasker.workflow_step_edges (from_step_uuid, to_step_uuid) VALUES (%L, %L)$$,
                         tap.step(pg_temp.u('t5'), 'fa'), tap.step(pg_temp.u('t3'), 'fa')),
    '23514', 'edges: an edge across tasks is rejected');
-- redrive requests: a step of a task in error that completes files one
SELECT tap.drive_task(pg_temp.u('t5'), 'initializing', 'enqueuing_steps', 'steps_in_process', 'error');
SELECT tap.drive(tap.step(pg_temp.u('t5'), 'fa'), 'enqueued', 'in_progress', 'error');
SELECT tap.is((SELECT count(*)::int FROM tasker.task_redrive_requests WHERE task_uuid = pg_temp.u('t5')), 0,
    'redrive: no request for a step entering error');
SELECT tap.drive(tap.step(pg_temp.u('t5'), 'fa'), 'complete');
SELECT tap.is((SELECT workflow_step_transition_uuid FROM tasker.task_redrive_requests WHERE task_uuid = pg_temp.u('t5')),
    (SELECT workflow_step_transition_uuid FROM tasker.workflow_step_transitions
     WHERE workflow_step_uuid = tap.step(pg_temp.u('t5'), 'fa') AND most_recent),
    'redrive: a request naming the completing transition');
-- updated_at: the trigger still runs for statements that leave it alone
SELECT tap.ok((SELECT updated_at > created_at FROM tasker.workflow_steps WHERE workflow_step_uuid = tap.step(pg_temp.u('t5'), 'fa')),
    'updated_at: maintained for updates that do not set it');

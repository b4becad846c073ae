-- CAS transitions for tasks and steps, their side effects, the audit trigger.

CREATE TEMP TABLE f (k text PRIMARY KEY, v uuid);
INSERT INTO f VALUES
    ('t1', tap.make_task('ns', 'cas', ARRAY['a', 'b', 'c'], '{}', 0, '{}', false)),
    ('t2', tap.make_task('ns', 'cas', ARRAY['a'], '{}', 0, '{}', false)),
    ('t3', tap.make_task('ns', 'cas', ARRAY['a'], '{}', 0, '{}', true)),
    ('proc', gen_random_uuid()),
    ('worker', gen_random_uuid()),
    ('corr', gen_random_uuid());
CREATE FUNCTION pg_temp.v(p_k text) RETURNS uuid LANGUAGE sql AS $$ SELECT v FROM f WHERE k = p_k $$;
CREATE FUNCTION pg_temp.ntt(p_task uuid) RETURNS int LANGUAGE sql AS
    $$ SELECT count(*)::int FROM tasker.task_transitions WHERE task_uuid = p_task $$;

-- --------------------------------------------------------------- tasks
SELECT tap.is(tasker.get_current_task_state(pg_temp.v('t1')), 'pending', 'a task without transitions is pending');
SELECT tap.is(tasker.get_current_task_state(gen_random_uuid()), NULL, 'current state of an unknown task is NULL');

SELECT tap.is(tasker.transition_task_state_atomic(pg_temp.v('t1'), 'initializing', 'enqueuing_steps'), false,
    'CAS from the wrong state returns false');
SELECT tap.is(pg_temp.ntt(pg_temp.v('t1')), 0, '... and writes nothing');

SELECT tap.is(tasker.transition_task_state_atomic(pg_temp.v('t1'), NULL, 'pending'), true,
    'from_state NULL writes the initial row of a task without rows');
SELECT tap.ok((SELECT from_state IS NULL FROM tasker.task_transitions WHERE task_uuid = pg_temp.v('t1')),
    'initial row has from_state NULL');
SELECT tap.is((SELECT to_state || '|' || sort_key || '|' || most_recent
               FROM tasker.task_transitions WHERE task_uuid = pg_temp.v('t1')),
    'pending|1|true', 'initial row: pending, sort_key 1, most_recent');
SELECT tap.is(tasker.transition_task_state_atomic(pg_temp.v('t1'), NULL, 'initializing'), false,
    'from_state NULL no longer matches once a row exists');

SELECT tap.is(tasker.transition_task_state_atomic(pg_temp.v('t1'), 'pending', 'initializing',
                                                  pg_temp.v('proc'), '{"event": "start"}',
                                                  '{"timeout_at": "2030-01-01T00:00:00Z"}'),
    true, 'CAS pending -> initializing succeeds');
SELECT tap.is((SELECT string_agg(from_state || '>' || to_state || ':' || sort_key || ':' || most_recent, ' ' ORDER BY sort_key)
               FROM tasker.task_transitions WHERE task_uuid = pg_temp.v('t1') AND from_state IS NOT NULL),
    'pending>initializing:2:true', 'new row: from pending, sort_key max+1, most_recent');
SELECT tap.is((SELECT count(*)::int FROM tasker.task_transitions WHERE task_uuid = pg_temp.v('t1') AND most_recent),
    1, 'the previous row is no longer most_recent');
SELECT tap.ok((SELECT processor_uuid = pg_temp.v('proc') AND metadata = '{"event": "start"}'
                      AND transition_metadata ->> 'timeout_at' = '2030-01-01T00:00:00Z'
               FROM tasker.task_transitions WHERE task_uuid = pg_temp.v('t1') AND most_recent),
    'processor_uuid, metadata and transition_metadata are recorded');
SELECT tap.is(tasker.transition_task_state_atomic(pg_temp.v('t1'), 'pending', 'initializing'), false,
    'repeating the same CAS fails (state moved on)');
SELECT tap.is(pg_temp.ntt(pg_temp.v('t1')), 2, '... and writes nothing');

SELECT tap.is(tasker.transition_task_state_atomic(pg_temp.v('t2'), 'pending', 'initializing'), true,
    'CAS from implicit pending (no rows) succeeds');
SELECT tap.ok((SELECT from_state IS NULL AND sort_key = 1 FROM tasker.task_transitions WHERE task_uuid = pg_temp.v('t2')),
    '... recording from_state NULL and sort_key 1');

SELECT tap.ok((SELECT NOT complete AND completed_at IS NULL FROM tasker.tasks WHERE task_uuid = pg_temp.v('t1')),
    'task not complete before entering complete');
SELECT tap.is(tasker.transition_task_state_atomic(pg_temp.v('t1'), 'initializing', 'enqueuing_steps'), true, 'initializing -> enqueuing_steps');
SELECT tap.is(tasker.transition_task_state_atomic(pg_temp.v('t1'), 'enqueuing_steps', 'steps_in_process'), true, 'enqueuing_steps -> steps_in_process');
SELECT tap.is(tasker.transition_task_state_atomic(pg_temp.v('t1'), 'steps_in_process', 'evaluating_results'), true, 'steps_in_process -> evaluating_results');
SELECT tap.is(tasker.transition_task_state_atomic(pg_temp.v('t1'), 'evaluating_results', 'complete'), true, 'evaluating_results -> complete');
SELECT tap.ok((SELECT complete AND completed_at IS NOT NULL AND updated_at > created_at
               FROM tasker.tasks WHERE task_uuid = pg_temp.v('t1')),
    'entering complete sets tasks.complete and completed_at; updated_at moves');
SELECT tap.is((SELECT array_agg(sort_key ORDER BY sort_key) FROM tasker.task_transitions WHERE task_uuid = pg_temp.v('t1')),
    ARRAY[1, 2, 3, 4, 5, 6], 'sort keys are contiguous');
SELECT tap.is((SELECT string_agg(COALESCE(from_state, '-') || '>' || to_state, ' ' ORDER BY sort_key)
               FROM tasker.task_transitions WHERE task_uuid = pg_temp.v('t1')),
    '->pending pending>initializing initializing>enqueuing_steps enqueuing_steps>steps_in_process steps_in_process>evaluating_results evaluating_results>complete',
    'from_state of each row is the previous to_state');

SELECT tap.is(tasker.transition_task_state_from_any(pg_temp.v('t3'),
                  ARRAY['pending', 'initializing', 'enqueuing_steps', 'steps_in_process', 'evaluating_results',
                        'waiting_for_dependencies', 'waiting_for_retry', 'blocked_by_failures'],
                  'cancelled', NULL, '{"reason": "user"}'),
    'pending', 'transition_task_state_from_any returns the state it left');
SELECT tap.is(tasker.transition_task_state_from_any(pg_temp.v('t3'), ARRAY['pending', 'initializing'], 'cancelled'),
    NULL, 'transition_task_state_from_any returns NULL when no state matches');
SELECT tap.ok((SELECT NOT complete FROM tasker.tasks WHERE task_uuid = pg_temp.v('t3')), 'cancelled does not set complete');

SELECT tap.throws(format($$SELECT tasker.transition_task_state_atomic(%L, 'pending', 'initializing')$$, gen_random_uuid()),
    'P0002', 'CAS on an unknown task raises no_data_found');
SELECT tap.throws(format($$SELECT tasker.transition_task_state_atomic(%L, 'pending', 'running')$$, pg_temp.v('t2')),
    '22023', 'unknown to_state raises invalid_parameter_value');
SELECT tap.throws(format($$SELECT tasker.transition_task_state_atomic(%L, 'enqueued', 'complete')$$, pg_temp.v('t2')),
    '22023', 'unknown from_state raises invalid_parameter_value');
SELECT tap.throws(format($$SELECT tasker.transition_task_state_from_any(%L, NULL, 'complete')$$, pg_temp.v('t2')),
    '22004', 'a NULL from-state list raises null_value_not_allowed');

-- --------------------------------------------------------------- steps
CREATE FUNCTION pg_temp.s(p_name text) RETURNS uuid LANGUAGE sql AS $$ SELECT tap.step(pg_temp.v('t1'), p_name) $$;
CREATE FUNCTION pg_temp.row_of(p_name text) RETURNS tasker.workflow_steps LANGUAGE sql AS
    $$ SELECT * FROM tasker.workflow_steps WHERE workflow_step_uuid = pg_temp.s(p_name) $$;

SELECT tap.is(tasker.get_current_step_state(pg_temp.s('a')), 'pending', 'a step without transitions is pending');
SELECT tap.is(tasker.transition_step_state_atomic(pg_temp.s('a'), ARRAY['enqueued'], 'in_progress'), false,
    'step CAS from the wrong state returns false');
SELECT tap.is((SELECT count(*)::int FROM tasker.workflow_step_transitions WHERE workflow_step_uuid = pg_temp.s('a')), 0,
    '... and writes nothing');
SELECT tap.is(tasker.transition_step_state_atomic(pg_temp.s('a'), ARRAY['pending'], 'enqueued'), true, 'Enqueue: pending -> enqueued');
SELECT tap.ok((SELECT NOT in_process AND attempts = 0 FROM pg_temp.row_of('a')), 'enqueued: not in process, no attempt yet');

SELECT tap.is(tasker.transition_step_state_atomic(pg_temp.s('a'), ARRAY['enqueued', 'pending'], 'in_progress'), true,
    'Start: enqueued -> in_progress (any of several from-states)');
SELECT tap.ok((SELECT in_process AND attempts = 1 AND last_attempted_at > now() - interval '1 minute' FROM pg_temp.row_of('a')),
    'Start sets in_process, increments attempts, stamps last_attempted_at');
SELECT tap.is(tasker.transition_step_state_atomic(pg_temp.s('a'), ARRAY['in_progress'], 'in_progress'), false,
    'Start refused while in_process');

SELECT tap.is(tasker.transition_step_state_atomic(pg_temp.s('a'), ARRAY['in_progress'], 'enqueued_for_orchestration',
        jsonb_build_object('worker_uuid', pg_temp.v('worker'), 'correlation_id', pg_temp.v('corr'),
                           'event', jsonb_build_object('success', true, 'result', '{"x": 1}'::jsonb,
                                                       'metadata', '{"execution_time_ms": 1234}'::jsonb)),
        '{"success": true, "result": {"x": 1}}'),
    true, 'EnqueueForOrchestration with a result');
SELECT tap.ok((SELECT NOT in_process AND results = '{"success": true, "result": {"x": 1}}' AND NOT processed
               FROM pg_temp.row_of('a')),
    'result stored, in_process cleared, not processed yet');
SELECT tap.ok(
    (SELECT worker_uuid = pg_temp.v('worker') AND correlation_id = pg_temp.v('corr') AND success
            AND execution_time_ms = 1234 AND task_uuid = pg_temp.v('t1')
            AND workflow_step_transition_uuid = (SELECT workflow_step_transition_uuid FROM tasker.workflow_step_transitions
                                                 WHERE workflow_step_uuid = pg_temp.s('a') AND most_recent)
     FROM tasker.workflow_step_result_audit WHERE workflow_step_uuid = pg_temp.s('a')),
    'audit row: worker, correlation id, success and execution time from the transition metadata');

SELECT tap.is(tasker.transition_step_state_atomic(pg_temp.s('a'), ARRAY['enqueued_for_orchestration'], 'complete'), true,
    'Complete: enqueued_for_orchestration -> complete');
SELECT tap.ok((SELECT processed AND processed_at > now() - interval '1 minute' AND NOT in_process AND results IS NOT NULL FROM pg_temp.row_of('a')),
    'complete sets processed and processed_at, keeps the result');
SELECT tap.is((SELECT count(*)::int FROM tasker.workflow_step_result_audit WHERE workflow_step_uuid = pg_temp.s('a')), 1,
    'only worker-result transitions are audited');

-- Error path with a serialized (string) event and a retry cycle.
SELECT tap.drive(pg_temp.s('b'), 'enqueued', 'in_progress');
SELECT tap.is(tasker.transition_step_state_atomic(pg_temp.s('b'), ARRAY['in_progress'], 'enqueued_as_error_for_orchestration',
        jsonb_build_object('worker_uuid', 'not-a-uuid',
                           'event', '{"success": false, "metadata": {"execution_time_ms": 42, "retryable": true}}'),
        '{"success": false, "error": {"message": "boom"}}'),
    true, 'EnqueueAsErrorForOrchestration with a result');
SELECT tap.ok((SELECT NOT success AND execution_time_ms = 42 AND worker_uuid IS NULL
               FROM tasker.workflow_step_result_audit WHERE workflow_step_uuid = pg_temp.s('b')),
    'audit reads a serialized event string; an unparsable worker uuid becomes NULL');
SELECT tap.ok((SELECT NOT in_process AND results -> 'error' ->> 'message' = 'boom' FROM pg_temp.row_of('b')),
    'error result stored, in_process cleared');
SELECT tap.is(tasker.transition_step_state_atomic(pg_temp.s('b'), ARRAY['enqueued_as_error_for_orchestration'], 'waiting_for_retry'),
    true, 'WaitForRetry');
SELECT tap.is(tasker.transition_step_state_atomic(pg_temp.s('b'), ARRAY['waiting_for_retry', 'error'], 'pending'),
    true, 'Retry: waiting_for_retry -> pending');
SELECT tap.drive(pg_temp.s('b'), 'enqueued', 'in_progress', 'error');
SELECT tap.ok((SELECT attempts = 2 AND NOT in_process AND NOT processed FROM pg_temp.row_of('b')),
    'Fail from in_progress: in_process cleared, step not processed, 2 attempts');
SELECT tap.is(tasker.transition_step_state_atomic(pg_temp.s('b'), ARRAY['error'], 'pending'), true,
    'Retry from error allowed while attempts < max_attempts');
SELECT tap.drive(pg_temp.s('b'), 'enqueued', 'in_progress', 'error');
SELECT tap.is(tasker.transition_step_state_atomic(pg_temp.s('b'), ARRAY['error'], 'pending'), false,
    'Retry from error refused once attempts = max_attempts');
SELECT tap.check(tasker.set_step_backoff_atomic(pg_temp.s('b'), 30), 'backoff b');
SELECT tap.is(tasker.reset_step_for_retry(pg_temp.s('b'), '{"operator": "alice"}'), true,
    'ResetForRetry: error -> pending regardless of the limit');
SELECT tap.ok((SELECT attempts = 0 AND backoff_request_seconds IS NULL FROM pg_temp.row_of('b')),
    'ResetForRetry resets attempts to 0 and clears the backoff');
SELECT tap.is(tasker.reset_step_for_retry(pg_temp.s('b')), false, 'ResetForRetry only from error');

UPDATE tasker.workflow_steps SET retryable = false WHERE workflow_step_uuid = pg_temp.s('c');
SELECT tap.drive(pg_temp.s('c'), 'enqueued', 'in_progress', 'error');
SELECT tap.is(tasker.transition_step_state_atomic(pg_temp.s('c'), ARRAY['error'], 'pending'), false,
    'Retry from error refused for a non-retryable step');
SELECT tap.is(tasker.transition_step_state_atomic(pg_temp.s('c'), ARRAY['error'], 'cancelled'), true, 'Cancel from error');
SELECT tap.ok((SELECT processed AND processed_at IS NOT NULL FROM pg_temp.row_of('c')), 'cancel sets processed');

SELECT tap.is(tasker.transition_step_state_atomic(tap.step(pg_temp.v('t2'), 'a'),
                  ARRAY['pending', 'enqueued', 'in_progress', 'error'], 'resolved_manually', '{"by": "op"}'),
    true, 'ResolveManually');
SELECT tap.ok((SELECT processed FROM tasker.workflow_steps WHERE workflow_step_uuid = tap.step(pg_temp.v('t2'), 'a')),
    'resolved_manually sets processed');

SELECT tap.is(tasker.transition_step_state_atomic(tap.step(pg_temp.v('t3'), 'a'), ARRAY['pending'], 'complete',
                  '{"manual": true}', '{"success": true, "result": {"ok": 1}}'),
    true, 'CompleteManually with a result');
SELECT tap.ok((SELECT processed AND results -> 'result' ->> 'ok' = '1'
               FROM tasker.workflow_steps WHERE workflow_step_uuid = tap.step(pg_temp.v('t3'), 'a')),
    'CompleteManually stores the result and sets processed');

SELECT tap.ok(
    (SELECT bool_and(n_recent = 1 AND keys = ARRAY(SELECT generate_series(1, n)))
     FROM (SELECT count(*) FILTER (WHERE most_recent) AS n_recent, count(*)::int AS n,
                  array_agg(sort_key ORDER BY sort_key) AS keys
           FROM tasker.workflow_step_transitions GROUP BY workflow_step_uuid) AS per_step),
    'every step has one most_recent row and contiguous sort keys');

SELECT tap.throws(format($$SELECT tasker.transition_step_state_atomic(%L, ARRAY['pending'], 'enqueued')$$, gen_random_uuid()),
    'P0002', 'step CAS on an unknown step raises no_data_found');
SELECT tap.throws(format($$SELECT tasker.transition_step_state_atomic(%L, NULL, 'enqueued')$$, pg_temp.s('a')),
    '22004', 'a NULL from-state list raises null_value_not_allowed');
SELECT tap.throws(format($$SELECT tasker.transition_step_state_atomic(%L, ARRAY['pending'], 'initializing')$$, pg_temp.s('a')),
    '22023', 'a task state as step to_state raises invalid_parameter_value');

-- --------------------------------------------------------- audit details
CREATE TEMP TABLE aud AS SELECT tap.make_task('ns', 'audit', ARRAY['w1', 'w2', 'w3', 'w4']) AS t;
SELECT tap.drive(tap.step((SELECT t FROM aud), s), 'enqueued', 'in_progress') FROM unnest(ARRAY['w1', 'w2', 'w3', 'w4']) AS s;
SELECT tap.check(tasker.transition_step_state_atomic(tap.step((SELECT t FROM aud), 'w1'), ARRAY['in_progress'], 'enqueued_for_orchestration', '{}'), 'w1');
SELECT tap.check(tasker.transition_step_state_atomic(tap.step((SELECT t FROM aud), 'w2'), ARRAY['in_progress'], 'enqueued_as_error_for_orchestration',
    '{"event": "{not json"}'), 'w2');
SELECT tap.check(tasker.transition_step_state_atomic(tap.step((SELECT t FROM aud), 'w3'), ARRAY['in_progress'], 'enqueued_for_orchestration',
    '{"event": {"StepCompleted": {"success": false, "metadata": {"execution_time_ms": 7.6}}}}'), 'w3');
SELECT tap.check(tasker.transition_step_state_atomic(tap.step((SELECT t FROM aud), 'w4'), ARRAY['in_progress'], 'enqueued_as_error_for_orchestration',
    '{"event": {"success": "true"}, "correlation_id": "0190b3c5-0000-7000-8000-000000000001"}'), 'w4');
CREATE FUNCTION pg_temp.aud(p text) RETURNS tasker.workflow_step_result_audit LANGUAGE sql AS
    $$ SELECT * FROM tasker.workflow_step_result_audit WHERE workflow_step_uuid = tap.step((SELECT t FROM aud), p) $$;
SELECT tap.ok((SELECT success AND execution_time_ms IS NULL AND worker_uuid IS NULL FROM pg_temp.aud('w1')),
    'no event: success falls back to the state (enqueued_for_orchestration = success)');
SELECT tap.ok((SELECT NOT success FROM pg_temp.aud('w2')),
    'unparsable event: success falls back to the state (error state = failure)');
SELECT tap.ok((SELECT NOT success AND execution_time_ms = 8 FROM pg_temp.aud('w3')),
    'a result wrapped in an event enum is found; fractional ms are rounded');
SELECT tap.ok((SELECT success AND correlation_id = '0190b3c5-0000-7000-8000-000000000001' FROM pg_temp.aud('w4')),
    'string "true" success and correlation id are read');

-- ------------------------------------------------------------- backoff
SELECT tap.is(tasker.set_step_backoff_atomic(pg_temp.s('b'), 45), true, 'set_step_backoff_atomic on a step');
SELECT tap.ok((SELECT backoff_request_seconds = 45 AND last_attempted_at > now() - interval '1 minute' FROM pg_temp.row_of('b')),
    '... sets backoff_request_seconds and last_attempted_at');
SELECT tap.is(tasker.set_step_backoff_atomic(gen_random_uuid(), 45), false, 'set_step_backoff_atomic on an unknown step is false');
SELECT tap.throws(format($$SELECT tasker.set_step_backoff_atomic(%L, -1)$$, pg_temp.s('b')),
    '22023', 'negative backoff is rejected');

-- --------------------------------------------- calls with untyped parameters
-- The engine calls these through libpq with parameters of unspecified type
-- (text literals); the names must resolve without casts.
INSERT INTO f VALUES ('t4', tap.make_task('ns', 'cas', ARRAY['a']));
SELECT pg_temp.v('t4') AS t4, tap.step(pg_temp.v('t4'), 'a') AS s4 \gset
PREPARE task_cas AS SELECT tasker.transition_task_state_atomic($1, $2, $3, $4, $5);
PREPARE step_cas AS SELECT tasker.transition_step_state_atomic($1, $2, $3, $4, $5);
PREPARE step_cas3 AS SELECT tasker.transition_step_state_atomic($1, $2, $3);
SELECT tap.is(
    (SELECT string_agg(format_type(p.t, NULL), ',' ORDER BY p.n)
     FROM pg_prepared_statements, unnest(parameter_types) WITH ORDINALITY AS p(t, n)
     WHERE name = 'task_cas'),
    'uuid,text,text,uuid,jsonb', 'untyped parameters of the task CAS infer uuid, text, text, uuid, jsonb');
\o /dev/null
EXECUTE task_cas(:'t4', 'pending', 'initializing', NULL, '{"via": "libpq"}');
EXECUTE step_cas(:'s4', '{pending}', 'enqueued', '{}', NULL);
EXECUTE step_cas3(:'s4', '{enqueued,pending}', 'in_progress');
\o
SELECT tap.is(tasker.get_current_task_state(:'t4') || '/' || tasker.get_current_step_state(:'s4'),
    'initializing/in_progress', 'CAS functions resolve with untyped (libpq-style) parameters');

-- Step readiness, retry timing, execution context, DAG helpers.

CREATE TEMP TABLE f (k text PRIMARY KEY, v uuid);
INSERT INTO f VALUES
    ('diamond', tap.make_task('ns', 'diamond', ARRAY['a', 'b', 'c', 'd'], ARRAY['a>b', 'a>c', 'b>d', 'c>d'])),
    ('manual',  tap.make_task('ns', 'diamond', ARRAY['a', 'b', 'c', 'd'], ARRAY['a>b', 'a>c', 'b>d', 'c>d'], 0, '{}', false)),
    ('blocked', tap.make_task('ns', 'pair', ARRAY['x', 'y'])),
    ('waiting', tap.make_task('ns', 'chain', ARRAY['x', 'y'], ARRAY['x>y'])),
    ('empty',   tap.make_task('ns', 'empty', ARRAY[]::text[])),
    ('retry',   tap.make_task('ns', 'retry', ARRAY['r1', 'r2', 'r3', 'r4', 'r5']));
CREATE FUNCTION pg_temp.v(p_k text) RETURNS uuid LANGUAGE sql AS $$ SELECT v FROM f WHERE k = p_k $$;

-- Readiness of one named step of a fixture task.
CREATE FUNCTION pg_temp.r(p_task text, p_step text)
RETURNS TABLE (state text, ready boolean, deps boolean, total int, done int, eligible boolean,
               last_failure_at timestamptz, next_retry_at timestamptz)
LANGUAGE sql AS $$
    SELECT s.current_state, s.ready_for_execution, s.dependencies_satisfied, s.total_parents,
           s.completed_parents, s.retry_eligible, s.last_failure_at, s.next_retry_at
    FROM tasker.get_step_readiness_status(pg_temp.v(p_task)) s
    WHERE s.name = p_step
$$;
CREATE FUNCTION pg_temp.ready(p_task text) RETURNS text LANGUAGE sql AS $$
    SELECT COALESCE(string_agg(s.name, ',' ORDER BY s.name), '')
    FROM tasker.get_step_readiness_status(pg_temp.v(p_task)) s WHERE s.ready_for_execution
$$;
CREATE FUNCTION pg_temp.ctx(p_task text) RETURNS text LANGUAGE sql AS $$
    SELECT c.execution_status || '/' || c.recommended_action || '/' || c.health_status || '/'
           || c.completion_percentage || '/ready=' || c.ready_steps
    FROM tasker.get_task_execution_context(pg_temp.v(p_task)) c
$$;
CREATE FUNCTION pg_temp.s(p_task text, p_step text) RETURNS uuid LANGUAGE sql AS $$ SELECT tap.step(pg_temp.v(p_task), p_step) $$;

-- ------------------------------------------------------------ diamond DAG
SELECT tap.is(pg_temp.ready('diamond'), 'a', 'diamond: initially only a is ready');
SELECT tap.is((SELECT string_agg(s.name || ':' || s.total_parents || '/' || s.completed_parents || ':' || s.dependencies_satisfied,
                                 ' ' ORDER BY s.name)
               FROM tasker.get_step_readiness_status(pg_temp.v('diamond')) s),
    'a:0/0:true b:1/0:false c:1/0:false d:2/0:false', 'diamond: parent counts and dependency flags');
SELECT tap.is(pg_temp.ctx('diamond'), 'has_ready_steps/execute_ready_steps/healthy/0.00/ready=1',
    'diamond: context has_ready_steps');
SELECT tap.is((SELECT c.total_steps || '/' || c.pending_steps || '/' || c.status
               FROM tasker.get_task_execution_context(pg_temp.v('diamond')) c),
    '4/4/pending', 'diamond: 4 steps, 4 pending, task pending');

SELECT tap.drive(pg_temp.s('diamond', 'a'), 'enqueued');
SELECT tap.is(pg_temp.ready('diamond'), '', 'a enqueued: nothing ready');
SELECT tap.is(pg_temp.ctx('diamond'), 'processing/wait_for_completion/healthy/0.00/ready=0', 'a enqueued: processing');
SELECT tap.drive(pg_temp.s('diamond', 'a'), 'in_progress', 'enqueued_for_orchestration');
SELECT tap.is(pg_temp.ctx('diamond'), 'processing/wait_for_completion/healthy/0.00/ready=0',
    'a enqueued_for_orchestration: still processing');
SELECT tap.drive(pg_temp.s('diamond', 'a'), 'complete');
SELECT tap.is(pg_temp.ready('diamond'), 'b,c', 'after a completes: b and c are ready');
SELECT tap.is((SELECT r.total || '/' || r.done || '/' || r.deps FROM pg_temp.r('diamond', 'd') r), '2/0/false',
    'after a completes: d still waits for both parents');
SELECT tap.is(pg_temp.ctx('diamond'), 'has_ready_steps/execute_ready_steps/healthy/25.00/ready=2', 'after a: 25 % complete');
SELECT tap.complete_step(pg_temp.s('diamond', 'b'));
SELECT tap.is(pg_temp.ready('diamond'), 'c', 'after b: c ready, d not yet');
SELECT tap.is((SELECT r.total || '/' || r.done FROM pg_temp.r('diamond', 'd') r), '2/1', 'after b: d has 1 of 2 parents');
SELECT tap.complete_step(pg_temp.s('diamond', 'c'));
SELECT tap.is(pg_temp.ready('diamond'), 'd', 'after b and c: d is ready');
SELECT tap.is((SELECT count(*)::int FROM tasker.get_step_readiness_status(pg_temp.v('diamond'), ARRAY[pg_temp.s('diamond', 'd')]) s
               WHERE s.ready_for_execution AND s.completed_parents = 2),
    1, 'filtering by step uuid still sees the parents');
SELECT tap.complete_step(pg_temp.s('diamond', 'd'));
SELECT tap.is(pg_temp.ctx('diamond'), 'all_complete/finalize_task/healthy/100.00/ready=0', 'all steps complete: all_complete');

-- resolved_manually satisfies dependencies; steps without rows are pending
SELECT tap.is(pg_temp.ready('manual'), 'a', 'steps without transition rows: root is ready');
SELECT tap.check(tasker.transition_step_state_atomic(pg_temp.s('manual', 'a'), ARRAY['pending'], 'resolved_manually'), 'resolve');
SELECT tap.is(pg_temp.ready('manual'), 'b,c', 'a resolved manually: b and c are ready');
SELECT tap.is((SELECT c.completed_steps FROM tasker.get_task_execution_context(pg_temp.v('manual')) c), 1::bigint,
    'resolved_manually counts as completed');

-- ------------------------------------------------------ failure contexts
SELECT tap.drive(pg_temp.s('blocked', 'x'), 'enqueued', 'in_progress', 'error');
SELECT tap.is(pg_temp.ready('blocked'), 'y', 'independent step stays ready next to a failed one');
SELECT tap.is(pg_temp.ctx('blocked'), 'blocked_by_failures/handle_failures/blocked/0.00/ready=1',
    'a step in error: blocked_by_failures wins over ready steps');
SELECT tap.is((SELECT c.failed_steps FROM tasker.get_task_execution_context(pg_temp.v('blocked')) c), 1::bigint,
    'failed_steps counts the error step');

SELECT tap.drive(pg_temp.s('waiting', 'x'), 'enqueued', 'in_progress', 'enqueued_as_error_for_orchestration');
SELECT tap.is(pg_temp.ctx('waiting'), 'processing/wait_for_completion/recovering/0.00/ready=0',
    'error result awaiting orchestration: processing, recovering');
SELECT tap.drive(pg_temp.s('waiting', 'x'), 'waiting_for_retry');
SELECT tap.check(tasker.set_step_backoff_atomic(pg_temp.s('waiting', 'x'), 600), 'backoff');
SELECT tap.is(pg_temp.ctx('waiting'), 'waiting_for_dependencies/wait_for_dependencies/recovering/0.00/ready=0',
    'retry in backoff, child blocked: waiting_for_dependencies, recovering');

SELECT tap.is(pg_temp.ctx('empty'), 'waiting_for_dependencies/wait_for_dependencies/healthy/0.00/ready=0',
    'a task without steps: waiting_for_dependencies, 0 %');
SELECT tap.is((SELECT count(*)::int FROM tasker.get_task_execution_context(gen_random_uuid())), 0,
    'no context row for an unknown task');

-- ----------------------------------------------------- retry eligibility
UPDATE tasker.workflow_steps SET retryable = false, max_attempts = 0 WHERE workflow_step_uuid = pg_temp.s('retry', 'r1');
SELECT tap.ok((SELECT r.eligible AND r.ready FROM pg_temp.r('retry', 'r1') r),
    'first attempt is always eligible (even non-retryable, max_attempts 0)');
UPDATE tasker.workflow_steps SET attempts = 1 WHERE workflow_step_uuid = pg_temp.s('retry', 'r1');
SELECT tap.ok((SELECT NOT r.eligible AND NOT r.ready FROM pg_temp.r('retry', 'r1') r),
    'non-retryable step after one attempt is not eligible');
UPDATE tasker.workflow_steps SET attempts = 2 WHERE workflow_step_uuid = pg_temp.s('retry', 'r2');
SELECT tap.ok((SELECT r.eligible FROM pg_temp.r('retry', 'r2') r), 'retryable, 2 of 3 attempts: eligible');
UPDATE tasker.workflow_steps SET attempts = 3 WHERE workflow_step_uuid = pg_temp.s('retry', 'r2');
SELECT tap.ok((SELECT NOT r.eligible AND NOT r.ready FROM pg_temp.r('retry', 'r2') r), 'retryable, 3 of 3 attempts: not eligible');

-- --------------------------------------------------------- retry timing
-- r3: server-requested backoff
SELECT tap.drive(pg_temp.s('retry', 'r3'), 'enqueued', 'in_progress', 'enqueued_as_error_for_orchestration', 'waiting_for_retry');
UPDATE tasker.workflow_steps SET backoff_request_seconds = 10, last_attempted_at = now() - interval '5 seconds'
WHERE workflow_step_uuid = pg_temp.s('retry', 'r3');
SELECT tap.ok((SELECT r.next_retry_at = ws.last_attempted_at + interval '10 seconds' AND NOT r.ready AND r.eligible
               FROM pg_temp.r('retry', 'r3') r, tasker.workflow_steps ws
               WHERE ws.workflow_step_uuid = pg_temp.s('retry', 'r3')),
    'backoff_request_seconds: next_retry_at = last_attempted_at + backoff; not ready before it');
UPDATE tasker.workflow_steps SET last_attempted_at = now() - interval '11 seconds'
WHERE workflow_step_uuid = pg_temp.s('retry', 'r3');
SELECT tap.ok((SELECT r.ready FROM pg_temp.r('retry', 'r3') r), 'waiting_for_retry step is ready once the backoff has passed');
SELECT tap.ok((SELECT r.last_failure_at = (SELECT created_at FROM tasker.workflow_step_transitions
                                           WHERE workflow_step_uuid = pg_temp.s('retry', 'r3')
                                             AND to_state = 'enqueued_as_error_for_orchestration')
               FROM pg_temp.r('retry', 'r3') r),
    'last_failure_at is the time of the error result');

-- r4: exponential fallback (no backoff requested)
SELECT tap.drive(pg_temp.s('retry', 'r4'), 'enqueued', 'in_progress', 'enqueued_as_error_for_orchestration', 'waiting_for_retry');
UPDATE tasker.workflow_step_transitions SET created_at = now() - interval '1 second'
WHERE workflow_step_uuid = pg_temp.s('retry', 'r4') AND to_state = 'enqueued_as_error_for_orchestration';
SELECT tap.ok((SELECT r.next_retry_at = r.last_failure_at + interval '2 seconds' AND NOT r.ready
               FROM pg_temp.r('retry', 'r4') r),
    'exponential fallback: failure + 2^1 s after one attempt, not ready yet');
UPDATE tasker.workflow_steps SET attempts = 2 WHERE workflow_step_uuid = pg_temp.s('retry', 'r4');
SELECT tap.ok((SELECT r.next_retry_at = r.last_failure_at + interval '4 seconds' FROM pg_temp.r('retry', 'r4') r),
    'exponential fallback: 2^2 s after two attempts');
UPDATE tasker.workflow_steps SET attempts = 10, max_attempts = 20 WHERE workflow_step_uuid = pg_temp.s('retry', 'r4');
SELECT tap.ok((SELECT r.next_retry_at = r.last_failure_at + interval '60 seconds' AND NOT r.ready FROM pg_temp.r('retry', 'r4') r),
    'exponential fallback is capped at 60 s');
UPDATE tasker.workflow_step_transitions SET created_at = now() - interval '61 seconds'
WHERE workflow_step_uuid = pg_temp.s('retry', 'r4') AND to_state = 'enqueued_as_error_for_orchestration';
SELECT tap.ok((SELECT r.ready FROM pg_temp.r('retry', 'r4') r), 'ready once the fallback delay has passed');

-- r5: a step that never failed has no retry time
SELECT tap.ok((SELECT r.next_retry_at IS NULL AND r.last_failure_at IS NULL AND r.ready FROM pg_temp.r('retry', 'r5') r),
    'no failure and no backoff: next_retry_at NULL, ready');

SELECT tap.is(tasker.calculate_step_next_retry_time(10, '2030-01-01 00:00:00+00', NULL, 0),
    '2030-01-01 00:00:10+00'::timestamptz, 'calculate_step_next_retry_time: backoff from last attempt');
SELECT tap.is(tasker.calculate_step_next_retry_time(10, NULL, '2030-01-01 00:00:00+00', 3),
    '2030-01-01 00:00:08+00'::timestamptz, 'calculate_step_next_retry_time: backoff without last attempt falls back');
SELECT tap.is(tasker.calculate_step_next_retry_time(NULL, NULL, '2030-01-01 00:00:00+00', 5, 300, 3.0),
    '2030-01-01 00:04:03+00'::timestamptz, 'calculate_step_next_retry_time: custom multiplier and cap');
SELECT tap.is(tasker.calculate_step_next_retry_time(NULL, now(), NULL, 2), NULL,
    'calculate_step_next_retry_time: NULL without backoff or failure');

SELECT tap.is(
    (SELECT string_agg(s || '=' || tasker.evaluate_step_state_readiness(s, false, false, true, true, NULL), ' ' ORDER BY s)
     FROM unnest(tasker.step_state_names()) AS s),
    'cancelled=false complete=false enqueued=false enqueued_as_error_for_orchestration=false enqueued_for_orchestration=false error=false in_progress=false pending=true resolved_manually=false waiting_for_retry=true',
    'only pending and waiting_for_retry can be ready');
SELECT tap.ok(NOT tasker.evaluate_step_state_readiness('pending', false, true, true, true, NULL)
          AND NOT tasker.evaluate_step_state_readiness('pending', true, false, true, true, NULL)
          AND NOT tasker.evaluate_step_state_readiness('pending', false, false, false, true, NULL)
          AND NOT tasker.evaluate_step_state_readiness('pending', false, false, true, false, NULL)
          AND NOT tasker.evaluate_step_state_readiness('pending', false, false, true, true, now() + interval '1 s')
          AND tasker.evaluate_step_state_readiness(NULL, NULL, NULL, true, true, now() - interval '1 s'),
    'readiness needs: not in process, not processed, dependencies, eligibility, retry time passed');

-- ------------------------------------------------------------ DAG helpers
INSERT INTO f VALUES ('dag', tap.make_task('ns', 'dag', ARRAY['a', 'b', 'c', 'd', 'e'],
                                           ARRAY['a>b', 'a>c', 'b>d', 'c>d', 'a>e', 'd>e']));
SELECT tap.is(
    (SELECT string_agg(ns.name || '=' || l.dependency_level, ' ' ORDER BY ns.name)
     FROM tasker.calculate_dependency_levels(pg_temp.v('dag')) l
     JOIN tasker.workflow_steps ws USING (workflow_step_uuid)
     JOIN tasker.named_steps ns USING (named_step_uuid)),
    'a=0 b=1 c=1 d=2 e=3', 'calculate_dependency_levels: longest path from a root');

UPDATE tasker.workflow_steps SET results = jsonb_build_object('from', ns.name)
FROM tasker.named_steps ns
WHERE ns.named_step_uuid = workflow_steps.named_step_uuid AND task_uuid = pg_temp.v('dag');
SELECT tap.is(
    (SELECT string_agg(d.step_name || ':' || d.distance || ':' || (d.results ->> 'from'), ' ' ORDER BY d.distance, d.step_name)
     FROM tasker.get_step_transitive_dependencies(pg_temp.s('dag', 'e')) d),
    'a:1:a d:1:d b:2:b c:2:c', 'transitive dependencies: every ancestor once, at its shortest distance, with results');
SELECT tap.is(
    (SELECT string_agg(d.step_name || ':' || d.distance, ' ' ORDER BY d.distance, d.step_name)
     FROM tasker.get_step_transitive_dependencies(pg_temp.s('dag', 'd')) d),
    'b:1 c:1 a:2', 'transitive dependencies of the diamond sink');
SELECT tap.is((SELECT count(*)::int FROM tasker.get_step_transitive_dependencies(pg_temp.s('dag', 'a'))), 0,
    'a root has no dependencies');

SELECT tap.is(
    (SELECT string_agg(ns.name || ':' || r.parent_count || '/' || r.child_count || ':' || r.is_root_step || '/'
                       || r.is_leaf_step || ':' || r.min_depth_from_root, ' ' ORDER BY ns.name)
     FROM tasker.step_dag_relationships r
     JOIN tasker.named_steps ns USING (named_step_uuid)
     WHERE r.task_uuid = pg_temp.v('dag')),
    'a:0/3:true/false:0 b:1/1:false/false:1 c:1/1:false/false:1 d:2/1:false/false:2 e:2/0:false/true:1',
    'step_dag_relationships: counts, root/leaf, shortest depth');
SELECT tap.ok(
    (SELECT r.parent_step_uuids @> to_jsonb(ARRAY[pg_temp.s('dag', 'b'), pg_temp.s('dag', 'c')])
            AND jsonb_array_length(r.parent_step_uuids) = 2
            AND r.child_step_uuids = to_jsonb(ARRAY[pg_temp.s('dag', 'e')])
     FROM tasker.step_dag_relationships r WHERE r.workflow_step_uuid = pg_temp.s('dag', 'd')),
    'step_dag_relationships: parent and child uuid arrays');

SELECT tap.throws(format($$INSERT INTO tasker.workflow_step_edges (from_step_uuid, to_step_uuid) VALUES (%L, %L)$$,
                         pg_temp.s('dag', 'e'), pg_temp.s('dag', 'b')),
    '23514', 'an edge closing a longer cycle (e -> b) is rejected');
SELECT tap.throws(format($$INSERT INTO tasker.workflow_step_edges (from_step_uuid, to_step_uuid) VALUES (%L, %L)$$,
                         pg_temp.s('dag', 'a'), pg_temp.s('diamond', 'a')),
    '23514', 'an edge between steps of different tasks is rejected');

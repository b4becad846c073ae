-- System health counts and the analytics functions.

CREATE TEMP TABLE f (k text PRIMARY KEY, v uuid);
CREATE FUNCTION pg_temp.v(p_k text) RETURNS uuid LANGUAGE sql AS $$ SELECT v FROM f WHERE k = p_k $$;
CREATE FUNCTION pg_temp.s(p_task text, p_step text) RETURNS uuid LANGUAGE sql AS $$ SELECT tap.step(pg_temp.v(p_task), p_step) $$;

-- ------------------------------------------------------- health counts
INSERT INTO f VALUES
    ('h_none',  tap.make_task('health', 'h', ARRAY['a', 'b'], '{}', 0, '{}', false)),
    ('h_init',  tap.make_task('health', 'h', ARRAY['a'])),
    ('h_run',   tap.make_task('health', 'h', ARRAY['a', 'b', 'c'])),
    ('h_retry', tap.make_task('health', 'h', ARRAY['a'])),
    ('h_done',  tap.make_task('health', 'h', ARRAY['a', 'b'])),
    ('h_err',   tap.make_task('health', 'h', ARRAY['a', 'b'])),
    ('h_pend',  tap.make_task('health', 'h', ARRAY['a']));
SELECT tap.drive_task(pg_temp.v('h_init'), 'initializing');
SELECT tap.drive(pg_temp.s('h_init', 'a'), 'enqueued');
SELECT tap.drive_task(pg_temp.v('h_run'), 'initializing', 'enqueuing_steps', 'steps_in_process');
SELECT tap.drive(pg_temp.s('h_run', 'a'), 'enqueued', 'in_progress');
SELECT tap.drive(pg_temp.s('h_run', 'b'), 'enqueued', 'in_progress', 'enqueued_for_orchestration');
SELECT tap.drive(pg_temp.s('h_run', 'c'), 'enqueued', 'in_progress', 'enqueued_as_error_for_orchestration');
SELECT tap.drive_task(pg_temp.v('h_retry'), 'initializing', 'enqueuing_steps', 'steps_in_process', 'waiting_for_retry');
SELECT tap.drive(pg_temp.s('h_retry', 'a'), 'enqueued', 'in_progress', 'enqueued_as_error_for_orchestration', 'waiting_for_retry');
SELECT tap.drive_task(pg_temp.v('h_done'), 'initializing', 'enqueuing_steps', 'steps_in_process', 'evaluating_results', 'complete');
SELECT tap.complete_step(pg_temp.s('h_done', 'a'));
SELECT tap.drive(pg_temp.s('h_done', 'b'), 'resolved_manually');
SELECT tap.drive_task(pg_temp.v('h_err'), 'initializing', 'enqueuing_steps', 'steps_in_process', 'error');
SELECT tap.drive(pg_temp.s('h_err', 'a'), 'enqueued', 'in_progress', 'error');
SELECT tap.drive(pg_temp.s('h_err', 'b'), 'cancelled');

SELECT tap.is(
    (SELECT string_agg(a.attname, ' ' ORDER BY a.ord)
     FROM pg_proc p, unnest(p.proargnames, p.proargmodes) WITH ORDINALITY AS a(attname, mode, ord)
     WHERE p.oid = 'tasker.get_system_health_counts'::regproc AND a.mode = 't'),
    'pending_tasks initializing_tasks enqueuing_steps_tasks steps_in_process_tasks evaluating_results_tasks waiting_for_dependencies_tasks waiting_for_retry_tasks blocked_by_failures_tasks complete_tasks error_tasks cancelled_tasks resolved_manually_tasks total_tasks pending_steps enqueued_steps in_progress_steps enqueued_for_orchestration_steps enqueued_as_error_for_orchestration_steps waiting_for_retry_steps complete_steps error_steps cancelled_steps resolved_manually_steps total_steps',
    'get_system_health_counts: the 24 SystemHealthCounts columns, in field order');
SELECT tap.is(
    (SELECT row(h.*)::text FROM tasker.get_system_health_counts() h),
    '(2,1,0,1,0,0,1,0,1,1,0,0,7,3,1,1,1,1,1,1,1,1,1,12)',
    'get_system_health_counts: counts per current state (no rows = pending) and totals');

-- ------------------------------------------------------------- metrics
-- Window fixture: tasks created in the last hour with known durations,
-- plus one old task outside a 2 h window.
INSERT INTO f VALUES
    ('m_ok1',  tap.make_task('metrics', 'm', ARRAY['a'])),
    ('m_ok2',  tap.make_task('metrics', 'm', ARRAY['a'])),
    ('m_err',  tap.make_task('metrics', 'm', ARRAY['a'])),
    ('m_new',  tap.make_task('metrics', 'm', ARRAY['a'])),
    ('m_old',  tap.make_task('metrics', 'm2', ARRAY['a']));
SELECT tap.drive_task(pg_temp.v(k), 'initializing', 'enqueuing_steps', 'steps_in_process', 'evaluating_results', 'complete')
FROM unnest(ARRAY['m_ok1', 'm_ok2', 'm_old']) AS k;
SELECT tap.complete_step(pg_temp.s(k, 'a')) FROM unnest(ARRAY['m_ok1', 'm_ok2', 'm_old']) AS k;
SELECT tap.drive(pg_temp.s('m_err', 'a'), 'enqueued', 'in_progress', 'error');
SELECT tap.drive_task(pg_temp.v('m_err'), 'initializing', 'enqueuing_steps', 'steps_in_process', 'error');
BEGIN;  -- one transaction, so that every now() below is the same instant
UPDATE tasker.tasks SET created_at = now() - interval '10 minutes', completed_at = now() - interval '9 minutes'
WHERE task_uuid = pg_temp.v('m_ok1');
UPDATE tasker.tasks SET created_at = now() - interval '10 minutes', completed_at = now() - interval '7 minutes'
WHERE task_uuid = pg_temp.v('m_ok2');
UPDATE tasker.tasks SET created_at = now() - interval '3 days' WHERE task_uuid = pg_temp.v('m_old');
UPDATE tasker.workflow_steps SET created_at = now() - interval '3 days' WHERE task_uuid = pg_temp.v('m_old');
UPDATE tasker.workflow_steps SET created_at = now() - interval '10 minutes'
WHERE task_uuid IN (pg_temp.v('m_ok1'), pg_temp.v('m_ok2'));
UPDATE tasker.workflow_step_transitions SET created_at = now() - interval '9 minutes 50 seconds'
WHERE most_recent AND workflow_step_uuid = pg_temp.s('m_ok1', 'a');
UPDATE tasker.workflow_step_transitions SET created_at = now() - interval '9 minutes 30 seconds'
WHERE most_recent AND workflow_step_uuid = pg_temp.s('m_ok2', 'a');
-- The health fixture tasks are moved out of the window.
UPDATE tasker.tasks SET created_at = now() - interval '2 days' WHERE task_uuid IN (SELECT v FROM f WHERE k LIKE 'h\_%');
UPDATE tasker.workflow_steps SET created_at = now() - interval '2 days'
WHERE task_uuid IN (SELECT v FROM f WHERE k LIKE 'h\_%');
COMMIT;

CREATE TEMP TABLE m AS SELECT * FROM tasker.get_analytics_metrics(now() - interval '2 hours');
SELECT tap.is((SELECT tasks_in_window || '/' || completion_count || '/' || error_count || '/' || steps_in_window FROM m),
    '4/2/1/4', 'window counts: 4 tasks (2 complete, 1 error), 4 steps');
SELECT tap.is((SELECT completion_rate || '/' || error_rate FROM m), '50.00/25.00',
    'completion_rate and error_rate are percentages of the window''s tasks');
SELECT tap.is((SELECT avg_task_duration_seconds FROM m), 120.000, 'avg_task_duration_seconds: mean of completed_at - created_at');
SELECT tap.is((SELECT avg_step_duration_seconds FROM m), 20.000, 'avg_step_duration_seconds: mean creation-to-complete of complete steps');
SELECT tap.is((SELECT window_hours || '/' || tasks_per_hour || '/' || steps_per_hour FROM m), '2.0000/2.00/2.00',
    'tasks_per_hour / steps_per_hour are window counts divided by window_hours');
SELECT tap.is((SELECT system_health_score FROM m), 0.667, 'system_health_score: complete / (complete + error) over the last hour');
SELECT tap.is((SELECT active_tasks_count || '/' || total_namespaces_count || '/' || unique_task_types_count FROM m),
    '6/2/3', 'active tasks (non-terminal state, all time), namespaces and task types with tasks');
SELECT tap.ok((SELECT analysis_period_start = calculated_at - interval '2 hours' AND calculated_at <= now() FROM m),
    'analysis_period_start is p_since; calculated_at is the query time');

SELECT tap.ok((SELECT analysis_period_start = now() - interval '24 hours' AND tasks_in_window = 4
               FROM tasker.get_analytics_metrics()),
    'default window is the last 24 hours');
SELECT tap.ok((SELECT tasks_in_window = 12 FROM tasker.get_analytics_metrics(now() - interval '4 days')),
    'a wider window includes older tasks');
SELECT tap.ok((SELECT tasks_in_window = 0 AND completion_rate = 0 AND error_rate = 0 AND avg_task_duration_seconds = 0
                      AND tasks_per_hour IS NULL
               FROM tasker.get_analytics_metrics(now())),
    'an empty window gives zero counts and rates and no per-hour rate');
UPDATE tasker.tasks SET created_at = now() - interval '90 minutes' WHERE task_uuid IN (pg_temp.v('m_ok1'), pg_temp.v('m_ok2'), pg_temp.v('m_err'));
SELECT tap.is((SELECT system_health_score FROM tasker.get_analytics_metrics()), 1.000,
    'system_health_score is 1 when no task of the last hour finished');

-- ------------------------------------------------------------ bottlenecks
-- Five runs of template perf/bench: step "fast" takes 1 s, step "slow"
-- 10..50 s; run 3's slow step fails.
DO $$
DECLARE
    i    integer;
    t    uuid;
    base timestamptz;
BEGIN
    FOR i IN 1..5 LOOP
        t := tap.make_task('perf', 'bench', ARRAY['fast', 'slow']);
        INSERT INTO f VALUES ('b' || i, t);
        PERFORM tap.complete_step(tap.step(t, 'fast'));
        IF i = 3 THEN
            PERFORM tap.drive(tap.step(t, 'slow'), 'enqueued', 'in_progress', 'error');
        ELSE
            PERFORM tap.complete_step(tap.step(t, 'slow'));
        END IF;
        base := now() - interval '1 hour' + i * interval '1 minute';
        UPDATE tasker.tasks SET created_at = base WHERE task_uuid = t;
        UPDATE tasker.workflow_steps SET created_at = base WHERE task_uuid = t;
        UPDATE tasker.workflow_step_transitions SET created_at = base + interval '1 second'
        WHERE most_recent AND workflow_step_uuid = tap.step(t, 'fast');
        UPDATE tasker.workflow_step_transitions SET created_at = base + i * interval '10 seconds'
        WHERE most_recent AND workflow_step_uuid = tap.step(t, 'slow');
    END LOOP;
END $$;

SELECT tap.is(
    (SELECT string_agg(s.namespace_name || '/' || s.task_name || '@' || s.version || '::' || s.step_name || ' avg='
                       || s.average_duration_seconds || ' max=' || s.max_duration_seconds || ' n=' || s.execution_count
                       || ' err=' || s.error_count || ' rate=' || s.error_rate, '; ')
     FROM tasker.get_slowest_steps_aggregated(now() - interval '2 hours', 10, 5) s),
    'perf/bench@1.0.0::slow avg=30.000 max=50.000 n=5 err=1 rate=0.2000; perf/bench@1.0.0::fast avg=1.000 max=1.000 n=5 err=0 rate=0.0000',
    'slowest steps: grouped by template and step, slowest first, error_rate as a ratio');
SELECT tap.ok((SELECT s.last_executed_at = (SELECT created_at FROM tasker.tasks WHERE task_uuid = pg_temp.v('b5')) + interval '50 seconds'
                      AND s.step_name = 'slow'
               FROM tasker.get_slowest_steps_aggregated(now() - interval '2 hours', 1, 5) s),
    'slowest steps: limit and last_executed_at');
SELECT tap.is((SELECT count(*)::int FROM tasker.get_slowest_steps_aggregated(now() - interval '2 hours', 10, 6)), 0,
    'slowest steps: groups below min_executions are left out');
SELECT tap.is((SELECT count(*)::int FROM tasker.get_slowest_steps_aggregated(now() - interval '2 hours', 10, 1, 'other')), 0,
    'slowest steps: namespace filter');
SELECT tap.is((SELECT count(*)::int FROM tasker.get_slowest_steps_aggregated(now() - interval '2 hours', 10, 1, 'perf', 'bench', '1.0.0')), 2,
    'slowest steps: namespace, name and version filters');

SELECT tap.is(
    (SELECT string_agg(s.namespace_name || '/' || s.task_name || '@' || s.version || ' avg=' || s.average_duration_seconds
                       || ' max=' || s.max_duration_seconds || ' n=' || s.execution_count || ' steps=' || s.average_step_count
                       || ' err=' || s.error_count || ' rate=' || s.error_rate, '; ')
     FROM tasker.get_slowest_tasks_aggregated(now() - interval '2 hours', 10, 5) s),
    'perf/bench@1.0.0 avg=30.000 max=50.000 n=5 steps=2.00 err=1 rate=0.2000',
    'slowest tasks: duration to the last finished step, step count, error steps, ratio of failed tasks');
SELECT tap.is(
    (SELECT string_agg(s.task_name || ' n=' || s.execution_count, '; ' ORDER BY s.task_name)
     FROM tasker.get_slowest_tasks_aggregated(now() - interval '2 hours', 10, 1) s),
    'bench n=5; m n=3', 'slowest tasks: min_executions 1 includes every template with finished steps');

SELECT tap.ok(
    (SELECT bool_and(obj_description(p.oid, 'pg_proc') ~* 'percent' AND obj_description(p.oid, 'pg_proc') ~* 'ratio')
     FROM pg_proc p WHERE p.oid = 'tasker.get_analytics_metrics'::regproc)
    AND (SELECT bool_and(obj_description(p.oid, 'pg_proc') ~* 'ratio 0-1')
         FROM pg_proc p WHERE p.oid IN ('tasker.get_slowest_steps_aggregated'::regproc, 'tasker.get_slowest_tasks_aggregated'::regproc)),
    'the unit of every rate is documented in the function comments');

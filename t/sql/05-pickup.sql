-- Task pickup (get_next_ready_tasks, get_task_ready_info), priority,
-- re-driving unblocked tasks, stuck tasks.

CREATE TEMP TABLE f (k text PRIMARY KEY, v uuid);
CREATE FUNCTION pg_temp.v(p_k text) RETURNS uuid LANGUAGE sql AS $$ SELECT v FROM f WHERE k = p_k $$;
CREATE FUNCTION pg_temp.k(p_v uuid) RETURNS text LANGUAGE sql AS $$ SELECT k FROM f WHERE v = p_v $$;
CREATE FUNCTION pg_temp.s(p_task text, p_step text) RETURNS uuid LANGUAGE sql AS $$ SELECT tap.step(pg_temp.v(p_task), p_step) $$;
CREATE FUNCTION pg_temp.picked(p_limit int, p_deps int DEFAULT 60, p_retry int DEFAULT 30) RETURNS text
LANGUAGE sql AS $$
    SELECT COALESCE(string_agg(pg_temp.k(r.task_uuid), ' ' ORDER BY r.n), '')
    FROM tasker.get_next_ready_tasks(p_limit, p_deps, p_retry) WITH ORDINALITY AS r(task_uuid, task_name, priority, namespace_name, ready_steps_count, computed_priority, current_state, n)
$$;

-- --------------------------------------------------------------- priority
SELECT tap.is(tasker.compute_task_priority(5, now() - interval '10 hours', now() - interval '10 minutes'), 6.000000,
    'fresh state: priority + task age in hours * 0.1');
SELECT tap.is(tasker.compute_task_priority(5, now() - interval '10 hours', now() - interval '3 hours'),
    round(5 * exp(-3 / 12.0), 6), 'aging state (1-24 h): priority * exp(-hours in state / 12)');
SELECT tap.is(tasker.compute_task_priority(50, now() - interval '30 hours', now() - interval '25 hours'), 0.100000,
    'stale state (> 24 h): 0.1');

-- --------------------------------------------------------------- fixtures
INSERT INTO f VALUES
    ('p_hi',     tap.make_task('ns', 'pick', ARRAY['a', 'b'], ARRAY['a>b'], 10)),
    ('p_lo',     tap.make_task('ns', 'pick', ARRAY['a', 'b'], ARRAY['a>b'], 1)),
    ('p_old',    tap.make_task('ns', 'pick', ARRAY['a', 'b'], ARRAY['a>b'], 5)),
    ('p_stale',  tap.make_task('ns', 'pick', ARRAY['a', 'b'], ARRAY['a>b'], 9)),
    ('implicit', tap.make_task('ns', 'pick', ARRAY['a', 'b'], ARRAY['a>b'], 7, '{}', false)),
    ('wfd_ready',    tap.make_task('ns', 'pick', ARRAY['a', 'b'], ARRAY['a>b'], 2)),
    ('wfd_notready', tap.make_task('ns', 'pick', ARRAY['a', 'b'], ARRAY['a>b'], 20)),
    ('wfd_stale',    tap.make_task('ns', 'pick', ARRAY['a', 'b'], ARRAY['a>b'], 20)),
    ('wfd_blocked',  tap.make_task('ns', 'pick', ARRAY['a', 'b'], '{}', 20)),
    ('wfr_ready',    tap.make_task('ns', 'pick', ARRAY['a', 'b'], ARRAY['a>b'], 3)),
    ('wfr_stale',    tap.make_task('ns', 'pick', ARRAY['a', 'b'], ARRAY['a>b'], 20)),
    ('active',       tap.make_task('ns', 'pick', ARRAY['a', 'b'], ARRAY['a>b'], 20)),
    ('done',         tap.make_task('ns', 'pick', ARRAY['a'], '{}', 20));

SELECT tap.age_task_state(pg_temp.v('p_old'), interval '3 hours');
SELECT tap.age_task_state(pg_temp.v('p_stale'), interval '30 hours');

SELECT tap.drive_task(pg_temp.v(k), 'initializing', 'enqueuing_steps', 'steps_in_process', 'evaluating_results',
                      'waiting_for_dependencies')
FROM unnest(ARRAY['wfd_ready', 'wfd_notready', 'wfd_stale', 'wfd_blocked']) AS k;
SELECT tap.age_task_state(pg_temp.v('wfd_ready'), interval '10 minutes');
SELECT tap.age_task_state(pg_temp.v('wfd_stale'), interval '61 minutes');
SELECT tap.drive(pg_temp.s('wfd_notready', 'a'), 'enqueued', 'in_progress');
SELECT tap.drive(pg_temp.s('wfd_blocked', 'a'), 'enqueued', 'in_progress', 'error');

SELECT tap.drive_task(pg_temp.v(k), 'initializing', 'enqueuing_steps', 'steps_in_process', 'waiting_for_retry')
FROM unnest(ARRAY['wfr_ready', 'wfr_stale']) AS k;
SELECT tap.drive(pg_temp.s(k, 'a'), 'enqueued', 'in_progress', 'enqueued_as_error_for_orchestration', 'waiting_for_retry')
FROM unnest(ARRAY['wfr_ready', 'wfr_stale']) AS k;
UPDATE tasker.workflow_step_transitions SET created_at = now() - interval '5 minutes'
WHERE workflow_step_uuid IN (pg_temp.s('wfr_ready', 'a'), pg_temp.s('wfr_stale', 'a'));
SELECT tap.age_task_state(pg_temp.v('wfr_ready'), interval '10 minutes');
SELECT tap.age_task_state(pg_temp.v('wfr_stale'), interval '31 minutes');

SELECT tap.drive_task(pg_temp.v('active'), 'initializing', 'enqueuing_steps', 'steps_in_process');
SELECT tap.drive_task(pg_temp.v('done'), 'initializing', 'complete');

-- ----------------------------------------------------------------- pickup
SELECT tap.is(pg_temp.picked(100), 'p_hi implicit p_old wfr_ready wfd_ready p_lo p_stale',
    'get_next_ready_tasks: eligible tasks in computed-priority order');
SELECT tap.is(pg_temp.picked(3), 'p_hi implicit p_old', 'get_next_ready_tasks honours the limit');
SELECT tap.is(pg_temp.picked(0), '', 'limit 0 returns nothing');
SELECT tap.is(pg_temp.picked(100, 120, 60),
    'wfr_stale wfd_stale p_hi implicit p_old wfr_ready wfd_ready p_lo p_stale',
    'staleness cut-offs are parameters (60 / 30 min by default)');
SELECT tap.is(
    (SELECT string_agg(pg_temp.k(r.task_uuid) || ':' || r.current_state || ':' || r.ready_steps_count
                       || ':' || r.namespace_name || '/' || r.task_name, ' ' ORDER BY r.computed_priority DESC)
     FROM tasker.get_next_ready_tasks(4) r),
    'p_hi:pending:1:ns/pick implicit:pending:1:ns/pick p_old:pending:1:ns/pick wfr_ready:waiting_for_retry:1:ns/pick',
    'rows carry state, ready step count, namespace and name');
SELECT tap.is((SELECT r.computed_priority FROM tasker.get_next_ready_tasks(100) r WHERE r.task_uuid = pg_temp.v('p_stale')),
    0.100000, 'a task pending for 30 h has the minimum priority 0.1');

-- Two equal priorities: the older task first.
INSERT INTO f VALUES ('tie1', tap.make_task('ns2', 'tie', ARRAY['a'], '{}', 100)),
                     ('tie2', tap.make_task('ns2', 'tie', ARRAY['a'], '{}', 100));
UPDATE tasker.tasks SET created_at = now() - interval '1 second' WHERE task_uuid = pg_temp.v('tie2');
UPDATE tasker.tasks SET created_at = now() - interval '1 second' WHERE task_uuid = pg_temp.v('tie1');
SELECT tap.is((SELECT string_agg(pg_temp.k(r.task_uuid), ' ') FROM tasker.get_next_ready_tasks(2) r), 'tie2 tie1',
    'equal base priority: the earlier created task first');
SELECT tap.drive_task(pg_temp.v(k), 'cancelled') FROM unnest(ARRAY['tie1', 'tie2']) AS k;

SELECT tap.is(
    (SELECT r.current_state || ':' || r.ready_steps_count || ':' || r.priority FROM tasker.get_task_ready_info(pg_temp.v('active')) r),
    'steps_in_process:1:20', 'get_task_ready_info returns the row for any task');
SELECT tap.is((SELECT count(*)::int FROM tasker.get_task_ready_info(gen_random_uuid())), 0,
    'get_task_ready_info: no row for an unknown task');

-- The pickup is the start of a CAS claim: after one poller moves the task
-- on, the next poll does not return it.
SELECT tap.is(tasker.transition_task_state_atomic(pg_temp.v('p_hi'), 'pending', 'initializing', gen_random_uuid()), true,
    'claiming the first task with a CAS');
SELECT tap.is(pg_temp.picked(1), 'implicit', 'a claimed task is no longer offered');

-- ---------------------------------------------------------------- redrive
INSERT INTO f VALUES
    ('r1', tap.make_task('ns', 'redrive', ARRAY['x', 'y'], ARRAY['x>y'])),
    ('r2', tap.make_task('ns', 'redrive', ARRAY['x', 'y'])),
    ('r3', tap.make_task('ns', 'redrive', ARRAY['x'])),
    ('r4', tap.make_task('ns', 'redrive', ARRAY['x'])),
    ('r5', tap.make_task('ns', 'redrive', ARRAY['x']));
CREATE FUNCTION pg_temp.redrive() RETURNS text LANGUAGE sql AS $$
    SELECT COALESCE(string_agg(pg_temp.k(r.task_uuid) || ':' || r.current_state || ':' || r.execution_status,
                               ' ' ORDER BY pg_temp.k(r.task_uuid)), '')
    FROM tasker.get_tasks_needing_redrive(10) r
$$;
SELECT tap.drive_task(pg_temp.v(k), 'initializing', 'enqueuing_steps', 'steps_in_process')
FROM unnest(ARRAY['r1', 'r2', 'r3', 'r4', 'r5']) AS k;

-- r1: x fails, task blocked; an operator resolves x.
SELECT tap.drive(pg_temp.s('r1', 'x'), 'enqueued', 'in_progress', 'error');
SELECT tap.drive_task(pg_temp.v('r1'), 'evaluating_results', 'blocked_by_failures');
-- r2: both steps fail, task given up (error).
SELECT tap.drive(pg_temp.s('r2', s), 'enqueued', 'in_progress', 'error') FROM unnest(ARRAY['x', 'y']) AS s;
SELECT tap.drive_task(pg_temp.v('r2'), 'evaluating_results', 'blocked_by_failures', 'error');
-- The failures happened a while ago (a reset step waits 2^0 s after its last failure).
UPDATE tasker.workflow_step_transitions SET created_at = created_at - interval '1 minute'
WHERE workflow_step_uuid IN (pg_temp.s('r2', 'x'), pg_temp.s('r2', 'y'));
-- r3: moved to error (e.g. by the staleness detector) while x was running.
SELECT tap.drive(pg_temp.s('r3', 'x'), 'enqueued', 'in_progress');
SELECT tap.drive_task(pg_temp.v('r3'), 'error');
-- r4: like r3, but x comes back with an error result and waits for a retry.
SELECT tap.drive(pg_temp.s('r4', 'x'), 'enqueued', 'in_progress');
SELECT tap.drive_task(pg_temp.v('r4'), 'error');
-- r5: in error, nothing changes afterwards.
SELECT tap.drive(pg_temp.s('r5', 'x'), 'enqueued', 'in_progress', 'error');
SELECT tap.drive_task(pg_temp.v('r5'), 'evaluating_results', 'blocked_by_failures', 'error');

SELECT tap.is(pg_temp.redrive(), '', 'no redrive while nothing changed after the tasks were parked');
SELECT tap.is((SELECT count(*)::int FROM tasker.task_redrive_requests), 0, 'failures before parking file no requests');

SELECT tap.check(tasker.transition_step_state_atomic(pg_temp.s('r1', 'x'), ARRAY['error'], 'resolved_manually'), 'resolve r1.x');
SELECT tap.is(pg_temp.redrive(), 'r1:blocked_by_failures:has_ready_steps',
    'manual resolution of the failed step: the blocked task needs a redrive');
SELECT tap.is(pg_temp.redrive(), 'r1:blocked_by_failures:has_ready_steps', 'the answer is stable until the engine acts');

SELECT tap.check(tasker.reset_step_for_retry(pg_temp.s('r2', 'x')), 'reset r2.x');
SELECT tap.is(pg_temp.redrive(), 'r1:blocked_by_failures:has_ready_steps',
    'one of two failed steps reset: still blocked, no redrive');
SELECT tap.ok(NOT EXISTS (SELECT 1 FROM tasker.task_redrive_requests WHERE task_uuid = pg_temp.v('r2')),
    '... and the request of the still-blocked task is dropped');
SELECT tap.check(tasker.reset_step_for_retry(pg_temp.s('r2', 'y')), 'reset r2.y');
SELECT tap.is(pg_temp.redrive(), 'r1:blocked_by_failures:has_ready_steps r2:error:has_ready_steps',
    'both failed steps reset: the errored task needs a redrive');

SELECT tap.drive(pg_temp.s('r3', 'x'), 'enqueued_for_orchestration', 'complete');
SELECT tap.is(pg_temp.redrive(), 'r1:blocked_by_failures:has_ready_steps r2:error:has_ready_steps r3:error:all_complete',
    'a late successful result completes every step: redrive to finish the task');

SELECT tap.drive(pg_temp.s('r4', 'x'), 'enqueued_as_error_for_orchestration', 'waiting_for_retry');
SELECT tap.check(tasker.set_step_backoff_atomic(pg_temp.s('r4', 'x'), 3600), 'long backoff');
SELECT tap.ok(position('r4' IN pg_temp.redrive()) = 0, 'retry still in backoff: not yet');
SELECT tap.ok(EXISTS (SELECT 1 FROM tasker.task_redrive_requests WHERE task_uuid = pg_temp.v('r4')),
    '... but the request is kept');
UPDATE tasker.workflow_steps SET last_attempted_at = now() - interval '2 hours' WHERE workflow_step_uuid = pg_temp.s('r4', 'x');
SELECT tap.ok(position('r4:error:has_ready_steps' IN pg_temp.redrive()) > 0, 'backoff over: redrive');

SELECT tap.is(tasker.transition_task_state_atomic(pg_temp.v('r1'), 'blocked_by_failures', 'pending'), true, 'the engine re-drives r1');
SELECT tap.ok(position('r1' IN pg_temp.redrive()) = 0, 'a re-driven task is not returned again');
SELECT tap.ok(NOT EXISTS (SELECT 1 FROM tasker.task_redrive_requests WHERE task_uuid = pg_temp.v('r1')),
    '... and its request is gone');
SELECT tap.is((SELECT count(*)::int FROM tasker.get_tasks_needing_redrive(1)), 1, 'redrive honours the limit');
SELECT tap.ok(position('r5' IN pg_temp.redrive()) = 0, 'an errored task nobody touched is never re-driven');

-- ----------------------------------------------------------------- stuck
INSERT INTO f VALUES ('stuck', tap.make_task('ns', 'stuck', ARRAY['a']));
SELECT tap.drive_task(pg_temp.v('stuck'), 'initializing');
SELECT tap.age_task_state(pg_temp.v('stuck'), interval '20 minutes');
SELECT tap.is(
    (SELECT s.current_state || ':' || (s.stuck_duration_minutes >= 20) FROM tasker.find_stuck_tasks(10) s
     WHERE s.task_uuid = pg_temp.v('stuck')),
    'initializing:true', 'find_stuck_tasks: active state longer than the timeout');
SELECT tap.is((SELECT count(*)::int FROM tasker.find_stuck_tasks(30) s WHERE s.task_uuid = pg_temp.v('stuck')), 0,
    'find_stuck_tasks: not before the timeout');
SELECT tap.is((SELECT count(*)::int FROM tasker.find_stuck_tasks(10) s WHERE s.task_uuid = pg_temp.v('p_stale')), 0,
    'find_stuck_tasks: waiting/pending states are not stuck');

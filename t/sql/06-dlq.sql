-- Staleness thresholds, monitoring views, the staleness detector, DLQ entries.

CREATE TEMP TABLE f (k text PRIMARY KEY, v uuid);
CREATE FUNCTION pg_temp.v(p_k text) RETURNS uuid LANGUAGE sql AS $$ SELECT v FROM f WHERE k = p_k $$;
CREATE FUNCTION pg_temp.k(p_v uuid) RETURNS text LANGUAGE sql AS $$ SELECT k FROM f WHERE v = p_v $$;

-- ------------------------------------------------------------- thresholds
SELECT tap.is(
    (SELECT string_agg(s || '=' || tasker.calculate_staleness_threshold(s, '{}'), ' ')
     FROM unnest(ARRAY['waiting_for_dependencies', 'waiting_for_retry', 'steps_in_process', 'pending', 'evaluating_results']) AS s),
    'waiting_for_dependencies=60 waiting_for_retry=30 steps_in_process=30 pending=1440 evaluating_results=1440',
    'default thresholds: 60 / 30 / 30 min, 1440 for other states');
SELECT tap.is(
    (SELECT string_agg(s || '=' || tasker.calculate_staleness_threshold(s,
        '{"lifecycle": {"max_waiting_for_dependencies_minutes": 120, "max_waiting_for_retry_minutes": "15",
                        "max_steps_in_process_minutes": 5}}'), ' ')
     FROM unnest(ARRAY['waiting_for_dependencies', 'waiting_for_retry', 'steps_in_process']) AS s),
    'waiting_for_dependencies=120 waiting_for_retry=15 steps_in_process=5',
    'template lifecycle overrides (numbers or numeric strings)');
SELECT tap.is(
    (SELECT string_agg(tasker.calculate_staleness_threshold('waiting_for_dependencies', c::jsonb)::text, ' ')
     FROM unnest(ARRAY['{"lifecycle": {"max_waiting_for_dependencies_minutes": "abc"}}',
                       '{"lifecycle": {"max_waiting_for_dependencies_minutes": -5}}',
                       '{"lifecycle": {"max_waiting_for_dependencies_minutes": 0}}',
                       '{"lifecycle": {"max_waiting_for_dependencies_minutes": null}}',
                       '{"lifecycle": 3}', 'null']) AS c),
    '60 60 60 60 60 60', 'invalid overrides fall back to the default');
SELECT tap.is(tasker.calculate_staleness_threshold('waiting_for_retry', NULL, 60, 45, 30), 45, 'defaults are parameters');

-- ---------------------------------------------------------------- fixtures
INSERT INTO f VALUES
    ('s_deps',     tap.make_task('ns', 'stale', ARRAY['a', 'b'], ARRAY['a>b'], 4)),
    ('s_retry',    tap.make_task('ns', 'stale', ARRAY['a'])),
    ('s_proc',     tap.make_task('ns', 'stale', ARRAY['a'])),
    ('s_fresh',    tap.make_task('ns', 'stale', ARRAY['a'])),
    ('s_warn',     tap.make_task('ns', 'stale', ARRAY['a'])),
    ('s_old',      tap.make_task('ns', 'stale', ARRAY['a'])),
    ('s_pending',  tap.make_task('ns', 'stale', ARRAY['a'])),
    ('s_dlq',      tap.make_task('ns', 'stale', ARRAY['a'])),
    ('s_long',     tap.make_task('ns', 'patient', ARRAY['a'], '{}', 0,
                                 '{"lifecycle": {"max_waiting_for_dependencies_minutes": 120}}')),
    ('s_short',    tap.make_task('ns', 'impatient', ARRAY['a'], '{}', 0,
                                 '{"lifecycle": {"max_steps_in_process_minutes": 5}}'));

SELECT tap.drive_task(pg_temp.v(k), 'initializing', 'enqueuing_steps', 'steps_in_process', 'evaluating_results',
                      'waiting_for_dependencies')
FROM unnest(ARRAY['s_deps', 's_fresh', 's_warn', 's_old', 's_dlq', 's_long']) AS k;
SELECT tap.drive_task(pg_temp.v('s_retry'), 'initializing', 'enqueuing_steps', 'steps_in_process', 'waiting_for_retry');
SELECT tap.drive_task(pg_temp.v(k), 'initializing', 'enqueuing_steps', 'steps_in_process')
FROM unnest(ARRAY['s_proc', 's_short']) AS k;

SELECT tap.age_task_state(pg_temp.v('s_deps'),  interval '90 minutes');
SELECT tap.age_task_state(pg_temp.v('s_retry'), interval '31 minutes');
SELECT tap.age_task_state(pg_temp.v('s_proc'),  interval '45 minutes');
SELECT tap.age_task_state(pg_temp.v('s_fresh'), interval '10 minutes');
SELECT tap.age_task_state(pg_temp.v('s_warn'),  interval '50 minutes');
SELECT tap.age_task_state(pg_temp.v('s_old'),   interval '10 minutes');
UPDATE tasker.tasks SET created_at = now() - interval '25 hours' WHERE task_uuid = pg_temp.v('s_old');
SELECT tap.age_task_state(pg_temp.v('s_pending'), interval '3 days');
SELECT tap.age_task_state(pg_temp.v('s_dlq'),   interval '90 minutes');
SELECT tap.age_task_state(pg_temp.v('s_long'),  interval '100 minutes');
SELECT tap.age_task_state(pg_temp.v('s_short'), interval '6 minutes');
SELECT tap.ok(tasker.create_dlq_entry(pg_temp.v('s_dlq'), 'manual_dlq', NULL, '{"note": "already looked at"}') IS NOT NULL,
    'create_dlq_entry opens an entry');
SELECT tap.is(tasker.create_dlq_entry(pg_temp.v('s_dlq'), 'manual_dlq'), NULL,
    'create_dlq_entry returns NULL while the task has a pending entry');
SELECT tap.throws(format($$SELECT tasker.create_dlq_entry(%L)$$, gen_random_uuid()), 'P0002',
    'create_dlq_entry on an unknown task raises no_data_found');

-- ------------------------------------------------------------------ views
SELECT tap.ok(
    (SELECT a.current_state = 'waiting_for_dependencies' AND a.time_in_state_minutes BETWEEN 89.9 AND 91
            AND a.namespace_name = 'ns' AND a.task_name = 'stale' AND a.priority = 4 AND NOT a.complete
            AND a.task_age_minutes < 1
     FROM tasker.v_task_state_analysis a WHERE a.task_uuid = pg_temp.v('s_deps')),
    'v_task_state_analysis: state, minutes in state, task age, names, priority');
SELECT tap.is(
    (SELECT string_agg(pg_temp.k(m.task_uuid) || ':' || m.health_status || ':' || m.staleness_threshold_minutes
                       || ':' || m.time_in_state_minutes, ' ' ORDER BY pg_temp.k(m.task_uuid))
     FROM tasker.v_task_staleness_monitoring m WHERE pg_temp.k(m.task_uuid) IS NOT NULL),
    's_deps:stale:60:90 s_dlq:stale:60:90 s_fresh:healthy:60:10 s_long:warning:120:100 s_old:healthy:60:10 s_proc:stale:30:45 s_retry:stale:30:31 s_short:stale:5:6 s_warn:warning:60:50',
    'v_task_staleness_monitoring: stale at the threshold, warning from 80 %, template overrides applied');

-- ------------------------------------------------------------- detection
SELECT tap.is(
    (SELECT string_agg(pg_temp.k(d.task_uuid) || ':' || d.action_taken || ':' || d.moved_to_dlq || ':' || d.transition_success,
                       ' ' ORDER BY pg_temp.k(d.task_uuid))
     FROM tasker.detect_and_transition_stale_tasks(true) d),
    's_deps:would_transition_to_dlq_and_error:false:false s_old:would_transition_to_dlq_and_error:false:false s_proc:would_transition_to_dlq_and_error:false:false s_retry:would_transition_to_dlq_and_error:false:false s_short:would_transition_to_dlq_and_error:false:false',
    'dry run lists the stale tasks (threshold or 24 h lifetime), skipping ones with a pending DLQ entry');
SELECT tap.is((SELECT count(*)::int FROM tasker.tasks_dlq), 1, 'dry run writes no DLQ entry');
SELECT tap.is(tasker.get_current_task_state(pg_temp.v('s_deps')), 'waiting_for_dependencies', 'dry run changes no state');

SELECT tap.is((SELECT count(*)::int FROM tasker.detect_and_transition_stale_tasks(false, 1)), 1, 'batch size limits the work');
SELECT tap.is((SELECT pg_temp.k(task_uuid) FROM tasker.tasks_dlq WHERE dlq_reason = 'staleness_timeout'), 's_deps',
    'longest in state first');

CREATE TEMP TABLE run1 AS SELECT * FROM tasker.detect_and_transition_stale_tasks(false, 100);
SELECT tap.is(
    (SELECT string_agg(pg_temp.k(d.task_uuid) || ':' || d.action_taken || ':' || d.moved_to_dlq || ':' || d.transition_success,
                       ' ' ORDER BY pg_temp.k(d.task_uuid))
     FROM run1 d),
    's_old:transitioned_to_dlq_and_error:true:true s_proc:transitioned_to_dlq_and_error:true:true s_retry:transitioned_to_dlq_and_error:true:true s_short:transitioned_to_dlq_and_error:true:true',
    'detector: DLQ entry and error transition for each remaining stale task');
SELECT tap.is(
    (SELECT string_agg(pg_temp.k(d.task_uuid) || ':' || d.current_state || ':' || d.staleness_threshold_minutes || ':' || d.time_in_state_minutes,
                       ' ' ORDER BY pg_temp.k(d.task_uuid))
     FROM run1 d),
    's_old:waiting_for_dependencies:60:10 s_proc:steps_in_process:30:45 s_retry:waiting_for_retry:30:31 s_short:steps_in_process:5:6',
    'detector rows report the state left, the threshold and whole minutes in state');
SELECT tap.is(
    (SELECT string_agg(pg_temp.k(t.task_uuid) || ':' || tasker.get_current_task_state(t.task_uuid), ' ' ORDER BY pg_temp.k(t.task_uuid))
     FROM tasker.tasks t WHERE pg_temp.k(t.task_uuid) IN ('s_deps', 's_old', 's_proc', 's_retry', 's_short', 's_fresh', 's_warn', 's_long', 's_pending', 's_dlq')),
    's_deps:error s_dlq:waiting_for_dependencies s_fresh:waiting_for_dependencies s_long:waiting_for_dependencies s_old:error s_pending:pending s_proc:error s_retry:error s_short:error s_warn:waiting_for_dependencies',
    'stale tasks are in error, the others untouched');
SELECT tap.is(
    (SELECT string_agg(pg_temp.k(task_uuid) || ':' || n, ' ' ORDER BY pg_temp.k(task_uuid))
     FROM (SELECT task_uuid, count(*) AS n FROM tasker.tasks_dlq GROUP BY task_uuid) AS c),
    's_deps:1 s_dlq:1 s_old:1 s_proc:1 s_retry:1 s_short:1', 'exactly one DLQ entry per stale task');

SELECT tap.is((SELECT count(*)::int FROM tasker.detect_and_transition_stale_tasks(false, 100)), 0,
    'a second run finds nothing');
SELECT tap.is((SELECT count(*)::int FROM tasker.tasks_dlq), 6, '... and writes no further entry');

SELECT tap.ok(
    (SELECT d.original_state = 'waiting_for_dependencies' AND d.dlq_reason = 'staleness_timeout'
            AND d.resolution_status = 'pending' AND d.resolution_timestamp IS NULL
            AND d.task_snapshot ->> 'task_uuid' = pg_temp.v('s_deps')::text
            AND d.task_snapshot ->> 'namespace' = 'ns' AND d.task_snapshot ->> 'task_name' = 'stale'
            AND d.task_snapshot ->> 'current_state' = 'waiting_for_dependencies'
            AND (d.task_snapshot ->> 'time_in_state_minutes')::int = 90
            AND (d.task_snapshot ->> 'threshold_minutes')::int = 60
            AND d.task_snapshot ? 'snapshot_timestamp'
            AND d.task_snapshot -> 'task_details' ?& ARRAY['correlation_id', 'priority', 'requested_at', 'created_at']
            AND (d.task_snapshot -> 'task_details' ->> 'priority')::int = 4
            AND d.metadata = '{"detection_method": "automatic_staleness", "time_in_state_minutes": 90, "threshold_minutes": 60}'
     FROM tasker.tasks_dlq d WHERE d.task_uuid = pg_temp.v('s_deps')),
    'DLQ entry: original state, reason, snapshot and metadata');
SELECT tap.ok(
    (SELECT tt.from_state = 'waiting_for_dependencies' AND tt.metadata ->> 'reason' = 'staleness_timeout'
            AND (tt.metadata ->> 'dlq_entry_uuid')::uuid = (SELECT dlq_entry_uuid FROM tasker.tasks_dlq WHERE task_uuid = pg_temp.v('s_deps'))
     FROM tasker.task_transitions tt WHERE tt.task_uuid = pg_temp.v('s_deps') AND tt.most_recent),
    'the error transition records the reason and the DLQ entry');
SELECT tap.is((SELECT metadata ->> 'detection_method' || '/' || (metadata ->> 'note') FROM tasker.tasks_dlq
               WHERE task_uuid = pg_temp.v('s_dlq')),
    'manual/already looked at', 'manual entries carry detection_method manual and caller metadata');

-- ------------------------------------------------ investigation and stats
SELECT tap.check(tasker.create_dlq_entry(pg_temp.v('s_fresh'), 'dependency_cycle_detected') IS NOT NULL, 'cycle entry');
SELECT tap.check(tasker.create_dlq_entry(pg_temp.v('s_warn'), 'max_retries_exceeded') IS NOT NULL, 'retries entry');
SELECT tap.check(tasker.create_dlq_entry(pg_temp.v('s_long'), 'worker_unavailable') IS NOT NULL, 'worker entry');
UPDATE tasker.tasks_dlq SET dlq_timestamp = now() - interval '30 minutes' WHERE task_uuid = pg_temp.v('s_long');
SELECT tap.is(
    (SELECT string_agg(pg_temp.k(q.task_uuid) || ':' || q.dlq_reason || ':' || floor(q.priority_score), ' '
                       ORDER BY q.priority_score DESC, pg_temp.k(q.task_uuid))
     FROM tasker.v_dlq_investigation_queue q),
    's_fresh:dependency_cycle_detected:1000 s_warn:max_retries_exceeded:500 s_deps:staleness_timeout:100 s_old:staleness_timeout:100 s_proc:staleness_timeout:100 s_retry:staleness_timeout:100 s_short:staleness_timeout:100 s_long:worker_unavailable:80 s_dlq:manual_dlq:10',
    'investigation queue: base score by reason plus minutes in the DLQ');
SELECT tap.is(
    (SELECT q.namespace_name || '/' || q.task_name || '/' || q.current_state || '/' || q.time_in_state_minutes
     FROM tasker.v_dlq_investigation_queue q WHERE q.task_uuid = pg_temp.v('s_proc')),
    'ns/stale/steps_in_process/45', 'investigation queue: names and state from the snapshot, minutes from metadata');

SELECT tap.is(tasker.update_dlq_investigation(
                  (SELECT dlq_entry_uuid FROM tasker.tasks_dlq WHERE task_uuid = pg_temp.v('s_proc')),
                  NULL, 'looking into it', NULL, NULL),
    true, 'update_dlq_investigation with notes only');
SELECT tap.ok((SELECT resolution_status = 'pending' AND resolution_timestamp IS NULL AND resolution_notes = 'looking into it'
                      AND metadata ->> 'detection_method' = 'automatic_staleness' AND updated_at > created_at
               FROM tasker.tasks_dlq WHERE task_uuid = pg_temp.v('s_proc')),
    '... keeps status and metadata, stamps updated_at, no resolution time');
SELECT tap.is(tasker.update_dlq_investigation(
                  (SELECT dlq_entry_uuid FROM tasker.tasks_dlq WHERE task_uuid = pg_temp.v('s_proc')),
                  'manually_resolved', NULL, 'alice', '{"ticket": 42}'),
    true, 'update_dlq_investigation with a status');
SELECT tap.ok((SELECT resolution_status = 'manually_resolved' AND resolution_timestamp IS NOT NULL
                      AND resolution_notes = 'looking into it' AND resolved_by = 'alice' AND metadata = '{"ticket": 42}'
               FROM tasker.tasks_dlq WHERE task_uuid = pg_temp.v('s_proc')),
    '... sets resolution_timestamp, keeps unsupplied fields, overwrites supplied ones');
SELECT tap.is(tasker.update_dlq_investigation(gen_random_uuid(), 'cancelled'), false, 'update of an unknown entry is false');
SELECT tap.ok(position('s_proc' IN (SELECT string_agg(pg_temp.k(task_uuid), ' ') FROM tasker.v_dlq_investigation_queue)) = 0,
    'resolved entries leave the investigation queue');
SELECT tap.ok(tasker.create_dlq_entry(pg_temp.v('s_proc'), 'manual_dlq') IS NOT NULL,
    'after resolution a new entry can be opened for the task');
SELECT tap.check(tasker.update_dlq_investigation(
                     (SELECT dlq_entry_uuid FROM tasker.tasks_dlq WHERE task_uuid = pg_temp.v('s_old')), 'permanently_failed'),
                 'permanently_failed');

SELECT tap.is(
    (SELECT string_agg(d.dlq_reason || ':' || d.total_entries || '/' || d.pending || '/' || d.manually_resolved || '/'
                       || d.permanent_failures || '/' || d.cancelled, ' ' ORDER BY d.dlq_reason)
     FROM tasker.v_dlq_dashboard d),
    'staleness_timeout:5/3/1/1/0 max_retries_exceeded:1/1/0/0/0 dependency_cycle_detected:1/1/0/0/0 worker_unavailable:1/1/0/0/0 manual_dlq:2/2/0/0/0',
    'v_dlq_dashboard: counts per reason and resolution status');
SELECT tap.ok(
    (SELECT d.oldest_entry <= d.newest_entry AND d.avg_resolution_time_minutes >= 0
     FROM tasker.v_dlq_dashboard d WHERE d.dlq_reason = 'staleness_timeout')
    AND (SELECT d.avg_resolution_time_minutes BETWEEN 29.9 AND 31 FROM tasker.v_dlq_dashboard d
         WHERE d.dlq_reason = 'worker_unavailable'),
    'v_dlq_dashboard: time range and mean minutes to resolution (or now)');

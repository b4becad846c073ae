-- Schema shape: tables, enums, defaults, CHECKs, unique keys, indexes.

SELECT tap.is(
    (SELECT array_agg(table_name::text ORDER BY table_name)
     FROM information_schema.tables
     WHERE table_schema = 'tasker' AND table_type = 'BASE TABLE'
       AND table_name NOT IN ('schema_migrations', 'task_redrive_requests')),
    ARRAY['named_steps', 'named_tasks', 'named_tasks_named_steps', 'task_namespaces',
          'task_transitions', 'tasks', 'tasks_dlq', 'workflow_step_edges',
          'workflow_step_result_audit', 'workflow_step_transitions', 'workflow_steps'],
    'the eleven tables of the data model exist');

SELECT tap.is(enum_range(NULL::tasker.dlq_reason)::text,
    '{staleness_timeout,max_retries_exceeded,dependency_cycle_detected,worker_unavailable,manual_dlq}',
    'enum dlq_reason');
SELECT tap.is(enum_range(NULL::tasker.dlq_resolution_status)::text,
    '{pending,manually_resolved,permanently_failed,cancelled}',
    'enum dlq_resolution_status');
SELECT tap.is(enum_range(NULL::tasker.identity_strategy)::text,
    '{strict,caller_provided,always_unique}',
    'enum identity_strategy');

-- Every single-column uuid primary key defaults to uuid_generate_v7().
SELECT tap.is(
    (SELECT string_agg(c.relname || '.' || a.attname, ', ' ORDER BY c.relname)
     FROM pg_constraint k
     JOIN pg_class c ON c.oid = k.conrelid
     JOIN pg_namespace n ON n.oid = c.relnamespace
     JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.conkey[1]
     LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
     WHERE n.nspname = 'tasker' AND k.contype = 'p' AND a.atttypid = 'uuid'::regtype
       AND c.relname <> 'task_redrive_requests'
       AND pg_get_expr(d.adbin, d.adrelid) IS DISTINCT FROM 'tasker.uuid_generate_v7()'),
    NULL,
    'every uuid primary key defaults to tasker.uuid_generate_v7()');

SELECT tap.is(
    (SELECT count(*)::int FROM pg_constraint k
     JOIN pg_class c ON c.oid = k.conrelid
     JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = 'tasker' AND k.contype = 'p'
       AND c.relname IN ('named_steps', 'named_tasks', 'named_tasks_named_steps', 'task_namespaces',
                         'task_transitions', 'tasks', 'tasks_dlq', 'workflow_step_edges',
                         'workflow_step_result_audit', 'workflow_step_transitions', 'workflow_steps')),
    11, 'every table has a primary key');

-- Column defaults
INSERT INTO tasker.task_namespaces (name) VALUES ('ns');
INSERT INTO tasker.named_tasks (task_namespace_uuid, name)
    SELECT task_namespace_uuid, 'tmpl' FROM tasker.task_namespaces WHERE name = 'ns';
INSERT INTO tasker.named_steps (name) VALUES ('s1'), ('s2'), ('s3');
INSERT INTO tasker.named_tasks_named_steps (named_task_uuid, named_step_uuid)
    SELECT nt.named_task_uuid, ns.named_step_uuid FROM tasker.named_tasks nt, tasker.named_steps ns WHERE ns.name = 's1';
INSERT INTO tasker.tasks (named_task_uuid, identity_hash)
    SELECT named_task_uuid, 'hash-1' FROM tasker.named_tasks;
INSERT INTO tasker.workflow_steps (task_uuid, named_step_uuid)
    SELECT t.task_uuid, ns.named_step_uuid FROM tasker.tasks t, tasker.named_steps ns;

SELECT tap.is((SELECT version || '/' || identity_strategy || '/' || configuration::text FROM tasker.named_tasks),
    '0.1.0/strict/{}', 'named_tasks defaults: version 0.1.0, identity_strategy strict, configuration {}');
SELECT tap.is((SELECT default_retryable || '/' || default_max_attempts FROM tasker.named_tasks_named_steps),
    'true/3', 'named_tasks_named_steps defaults: retryable, 3 attempts');
SELECT tap.ok((SELECT complete = false AND priority = 0 AND correlation_id IS NOT NULL
                      AND requested_at IS NOT NULL AND created_at IS NOT NULL
               FROM tasker.tasks), 'tasks defaults: not complete, priority 0, correlation id generated');
SELECT tap.is((SELECT DISTINCT retryable || '/' || max_attempts || '/' || attempts || '/' || in_process || '/' || processed
               FROM tasker.workflow_steps),
    'true/3/0/false/false', 'workflow_steps defaults: retryable, 3 attempts, 0 done, idle');

INSERT INTO tasker.workflow_step_edges (from_step_uuid, to_step_uuid)
    SELECT a.workflow_step_uuid, b.workflow_step_uuid
    FROM tasker.workflow_steps a JOIN tasker.named_steps na ON na.named_step_uuid = a.named_step_uuid,
         tasker.workflow_steps b JOIN tasker.named_steps nb ON nb.named_step_uuid = b.named_step_uuid
    WHERE na.name = 's1' AND nb.name = 's2';
SELECT tap.is((SELECT name::text FROM tasker.workflow_step_edges), 'provides', 'edge name defaults to provides');

-- Unique keys
SELECT tap.throws($$INSERT INTO tasker.tasks (named_task_uuid, identity_hash)
                    SELECT named_task_uuid, 'hash-1' FROM tasker.named_tasks$$,
    '23505', 'identity_hash is unique');
SELECT tap.throws($$INSERT INTO tasker.task_namespaces (name) VALUES ('ns')$$, '23505', 'namespace name is unique');
SELECT tap.throws($$INSERT INTO tasker.named_steps (name) VALUES ('s1')$$, '23505', 'named step name is unique');
SELECT tap.throws($$INSERT INTO tasker.named_tasks (task_namespace_uuid, name, version)
                    SELECT task_namespace_uuid, 'tmpl', '0.1.0' FROM tasker.task_namespaces$$,
    '23505', 'named task (namespace, name, version) is unique');
SELECT tap.throws($$INSERT INTO tasker.workflow_steps (task_uuid, named_step_uuid)
                    SELECT t.task_uuid, ns.named_step_uuid FROM tasker.tasks t, tasker.named_steps ns WHERE ns.name = 's1'$$,
    '23505', 'one workflow step per (task, named step)');
SELECT tap.throws($$INSERT INTO tasker.workflow_step_edges (from_step_uuid, to_step_uuid)
                    SELECT from_step_uuid, to_step_uuid FROM tasker.workflow_step_edges$$,
    '23505', 'edge (from, to, name) is unique');

-- Edge integrity
SELECT tap.throws($$INSERT INTO tasker.workflow_step_edges (from_step_uuid, to_step_uuid)
                    SELECT workflow_step_uuid, workflow_step_uuid FROM tasker.workflow_steps LIMIT 1$$,
    '23514', 'self-loop edge is rejected');
SELECT tap.throws($$INSERT INTO tasker.workflow_step_edges (from_step_uuid, to_step_uuid)
                    SELECT to_step_uuid, from_step_uuid FROM tasker.workflow_step_edges$$,
    '23514', 'edge closing a cycle (s2 -> s1) is rejected');

-- State CHECK constraints accept exactly the state vocabularies.
DO $$
DECLARE
    v_task uuid := (SELECT task_uuid FROM tasker.tasks);
    v_step uuid := (SELECT workflow_step_uuid FROM tasker.workflow_steps LIMIT 1);
    v_s    text;
    i      integer := 0;
BEGIN
    FOREACH v_s IN ARRAY tasker.task_state_names() LOOP
        i := i + 1;
        INSERT INTO tasker.task_transitions (task_uuid, from_state, to_state, sort_key)
        VALUES (v_task, v_s, v_s, i);
    END LOOP;
    i := 0;
    FOREACH v_s IN ARRAY tasker.step_state_names() LOOP
        i := i + 1;
        INSERT INTO tasker.workflow_step_transitions (workflow_step_uuid, from_state, to_state, sort_key)
        VALUES (v_step, v_s, v_s, i);
    END LOOP;
END $$;
SELECT tap.is((SELECT count(*)::int FROM tasker.task_transitions), 12, 'all 12 task states pass the CHECK');
SELECT tap.is((SELECT count(*)::int FROM tasker.workflow_step_transitions), 10, 'all 10 step states pass the CHECK');
SELECT tap.throws($$INSERT INTO tasker.task_transitions (task_uuid, to_state, sort_key)
                    SELECT task_uuid, 'running', 99 FROM tasker.tasks$$,
    '23514', 'unknown task to_state is rejected');
SELECT tap.throws($$INSERT INTO tasker.task_transitions (task_uuid, from_state, to_state, sort_key)
                    SELECT task_uuid, 'enqueued', 'pending', 99 FROM tasker.tasks$$,
    '23514', 'step state as task from_state is rejected');
SELECT tap.throws($$INSERT INTO tasker.workflow_step_transitions (workflow_step_uuid, to_state, sort_key)
                    SELECT workflow_step_uuid, 'initializing', 99 FROM tasker.workflow_steps LIMIT 1$$,
    '23514', 'task state as step to_state is rejected');
SELECT tap.is(
    (SELECT count(*)::int FROM pg_constraint
     WHERE conname IN ('chk_task_transitions_from_state', 'chk_task_transitions_to_state',
                       'chk_workflow_step_transitions_from_state', 'chk_workflow_step_transitions_to_state')),
    4, 'from_state and to_state CHECKs exist on both transition tables');

-- One most_recent row per task / step, unique sort keys.
UPDATE tasker.task_transitions SET most_recent = true WHERE sort_key = 12;
SELECT tap.throws($$UPDATE tasker.task_transitions SET most_recent = true WHERE sort_key = 11$$,
    '23505', 'at most one most_recent task transition per task');
UPDATE tasker.workflow_step_transitions SET most_recent = true WHERE sort_key = 10;
SELECT tap.throws($$UPDATE tasker.workflow_step_transitions SET most_recent = true WHERE sort_key = 9$$,
    '23505', 'at most one most_recent step transition per step');
SELECT tap.throws($$INSERT INTO tasker.task_transitions (task_uuid, to_state, sort_key)
                    SELECT task_uuid, 'pending', 1 FROM tasker.tasks$$,
    '23505', 'task transition sort_key is unique per task');

-- DLQ: one pending entry per task, history allowed.
INSERT INTO tasker.tasks_dlq (task_uuid, original_state, dlq_reason, task_snapshot)
    SELECT task_uuid, 'error', 'manual_dlq', '{}' FROM tasker.tasks;
SELECT tap.throws($$INSERT INTO tasker.tasks_dlq (task_uuid, original_state, dlq_reason, task_snapshot)
                    SELECT task_uuid, 'error', 'manual_dlq', '{}' FROM tasker.tasks$$,
    '23505', 'a second pending DLQ entry for a task is rejected');
UPDATE tasker.tasks_dlq SET resolution_status = 'manually_resolved';
INSERT INTO tasker.tasks_dlq (task_uuid, original_state, dlq_reason, task_snapshot)
    SELECT task_uuid, 'error', 'manual_dlq', '{}' FROM tasker.tasks;
SELECT tap.is((SELECT count(*)::int FROM tasker.tasks_dlq), 2, 'resolved DLQ entries stay as history');
SELECT tap.ok((SELECT bool_and(updated_at > created_at) FROM tasker.tasks_dlq WHERE resolution_status <> 'pending'),
    'tasks_dlq.updated_at is maintained by trigger');
SELECT tap.throws($$INSERT INTO tasker.tasks_dlq (task_uuid, original_state, dlq_reason)
                    SELECT task_uuid, 'error', 'manual_dlq' FROM tasker.tasks$$,
    '23502', 'task_snapshot is NOT NULL');

-- Audit: unique (step, transition).
INSERT INTO tasker.workflow_step_result_audit (workflow_step_uuid, workflow_step_transition_uuid, task_uuid, success)
    SELECT st.workflow_step_uuid, st.workflow_step_transition_uuid, ws.task_uuid, true
    FROM tasker.workflow_step_transitions st JOIN tasker.workflow_steps ws USING (workflow_step_uuid)
    WHERE st.sort_key = 1;
SELECT tap.throws($$INSERT INTO tasker.workflow_step_result_audit (workflow_step_uuid, workflow_step_transition_uuid, task_uuid, success)
                    SELECT workflow_step_uuid, workflow_step_transition_uuid, task_uuid, false
                    FROM tasker.workflow_step_result_audit$$,
    '23505', 'one audit row per (step, transition)');

-- Indexes named in the data model
SELECT tap.is(
    (SELECT array_agg(x ORDER BY x) FROM unnest(ARRAY[
        'idx_task_transitions_uuid_most_recent', 'idx_workflow_step_transitions_uuid_most_recent',
        'idx_dlq_unique_pending_task', 'idx_named_tasks_lifecycle_config', 'idx_tasks_correlation_id',
        'idx_tasks_parent_correlation_id', 'idx_tasks_priority', 'idx_tasks_requested_at',
        'idx_tasks_tags_gin', 'idx_tasks_active_with_priority_covering',
        'idx_workflow_steps_active_operations', 'idx_workflow_steps_ready_covering',
        'tasks_identity_hash_unique', 'uq_audit_step_transition', 'unique_edge_per_step_pair',
        'uq_workflow_step_task_named_step', 'named_tasks_namespace_name_version_unique',
        'named_tasks_named_steps_unique']) AS x
     WHERE NOT EXISTS (SELECT 1 FROM pg_indexes WHERE schemaname = 'tasker' AND indexname = x)),
    NULL::text[], 'the indexes of the data model exist');

SELECT tap.ok(
    (SELECT indexdef LIKE '%UNIQUE%WHERE most_recent%' FROM pg_indexes
     WHERE indexname = 'idx_task_transitions_uuid_most_recent')
    AND (SELECT indexdef LIKE '%UNIQUE%WHERE (resolution_status = ''pending''%' FROM pg_indexes
         WHERE indexname = 'idx_dlq_unique_pending_task'),
    'most_recent and pending-DLQ indexes are unique and partial');

SELECT tap.ok(
    (SELECT indexdef LIKE '%USING gin%lifecycle%' FROM pg_indexes WHERE indexname = 'idx_named_tasks_lifecycle_config')
    AND (SELECT indexdef LIKE '%INCLUDE%WHERE (complete = false)%' FROM pg_indexes
         WHERE indexname = 'idx_tasks_active_with_priority_covering'),
    'GIN index on configuration->lifecycle and partial covering index on incomplete tasks');

-- Deleting a task removes everything that belongs to it.
DELETE FROM tasker.tasks;
SELECT tap.is((SELECT (SELECT count(*) FROM tasker.workflow_steps) + (SELECT count(*) FROM tasker.task_transitions)
               + (SELECT count(*) FROM tasker.workflow_step_transitions) + (SELECT count(*) FROM tasker.tasks_dlq)
               + (SELECT count(*) FROM tasker.workflow_step_edges) + (SELECT count(*) FROM tasker.workflow_step_result_audit))::int,
    0, 'deleting a task cascades to its steps, edges, transitions, audit and DLQ rows');
SELECT tap.throws($$DELETE FROM tasker.named_steps$$, '23503', 'named steps in use by a template cannot be deleted');

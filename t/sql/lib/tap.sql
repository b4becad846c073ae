-- t/sql/lib/tap.sql -- assertion and fixture helpers for the SQL tests.
-- Installed into the test template database (schema tap), never into a
-- real database. Each assertion returns one line "ok - name" or
-- "not ok - name" followed by "# ..." diagnostics; t/sql/run.sh numbers
-- the lines and prints the TAP plan.

CREATE SCHEMA tap;

CREATE FUNCTION tap.ok(p_cond boolean, p_name text) RETURNS text
LANGUAGE sql
AS $$
    SELECT CASE WHEN p_cond IS TRUE THEN 'ok - ' || p_name
                ELSE 'not ok - ' || p_name || E'\n# condition was ' || COALESCE(p_cond::text, 'NULL') END
$$;

CREATE FUNCTION tap.is(p_got anyelement, p_want anyelement, p_name text) RETURNS text
LANGUAGE sql
AS $$
    SELECT CASE WHEN p_got IS NOT DISTINCT FROM p_want THEN 'ok - ' || p_name
                ELSE 'not ok - ' || p_name
                     || E'\n#      got: ' || COALESCE(p_got::text, 'NULL')
                     || E'\n# expected: ' || COALESCE(p_want::text, 'NULL') END
$$;

-- Runs p_sql; ok if it raises SQLSTATE p_state.
CREATE FUNCTION tap.throws(p_sql text, p_state text, p_name text) RETURNS text
LANGUAGE plpgsql
AS $$
BEGIN
    EXECUTE p_sql;
    RETURN 'not ok - ' || p_name || E'\n# no error raised';
EXCEPTION WHEN OTHERS THEN
    IF SQLSTATE = p_state THEN
        RETURN 'ok - ' || p_name;
    END IF;
    RETURN 'not ok - ' || p_name || E'\n# raised ' || SQLSTATE || ': ' || SQLERRM
           || E'\n# expected SQLSTATE ' || p_state;
END;
$$;

-- Creates namespace / template / named steps as needed, then a task with
-- one step per name and edges given as 'parent>child'. With p_initial_rows
-- the task and its steps get an initial pending transition (as the engine
-- does); without, they have no transition rows (implicitly pending).
CREATE FUNCTION tap.make_task(
    p_namespace    text,
    p_name         text,
    p_steps        text[],
    p_edges        text[]  DEFAULT '{}',
    p_priority     integer DEFAULT 0,
    p_config       jsonb   DEFAULT '{}'::jsonb,
    p_initial_rows boolean DEFAULT true,
    p_version      text    DEFAULT '1.0.0'
) RETURNS uuid
LANGUAGE plpgsql
AS $$
DECLARE
    v_ns   uuid;
    v_nt   uuid;
    v_task uuid;
    v_step uuid;
    v_name text;
    v_edge text;
BEGIN
    INSERT INTO tasker.task_namespaces (name) VALUES (p_namespace)
    ON CONFLICT (name) DO NOTHING;
    SELECT task_namespace_uuid INTO v_ns FROM tasker.task_namespaces WHERE name = p_namespace;

    INSERT INTO tasker.named_tasks (task_namespace_uuid, name, version, configuration)
    VALUES (v_ns, p_name, p_version, p_config)
    ON CONFLICT (task_namespace_uuid, name, version) DO UPDATE SET configuration = EXCLUDED.configuration;
    SELECT named_task_uuid INTO v_nt FROM tasker.named_tasks
    WHERE task_namespace_uuid = v_ns AND name = p_name AND version = p_version;

    INSERT INTO tasker.tasks (named_task_uuid, identity_hash, priority, context)
    VALUES (v_nt, gen_random_uuid()::text, p_priority, '{}'::jsonb)
    RETURNING task_uuid INTO v_task;
    IF p_initial_rows THEN
        PERFORM tap.check(tasker.transition_task_state_atomic(v_task, NULL, 'pending'), 'initial task row');
    END IF;

    FOREACH v_name IN ARRAY p_steps LOOP
        INSERT INTO tasker.named_steps (name) VALUES (v_name) ON CONFLICT (name) DO NOTHING;
        INSERT INTO tasker.named_tasks_named_steps (named_task_uuid, named_step_uuid)
        SELECT v_nt, named_step_uuid FROM tasker.named_steps WHERE name = v_name
        ON CONFLICT DO NOTHING;
        INSERT INTO tasker.workflow_steps (task_uuid, named_step_uuid)
        SELECT v_task, named_step_uuid FROM tasker.named_steps WHERE name = v_name
        RETURNING workflow_step_uuid INTO v_step;
        IF p_initial_rows THEN
            PERFORM tap.check(tasker.transition_step_state_atomic(v_step, ARRAY[NULL::text], 'pending'),
                              'initial step row');
        END IF;
    END LOOP;

    FOREACH v_edge IN ARRAY p_edges LOOP
        INSERT INTO tasker.workflow_step_edges (from_step_uuid, to_step_uuid)
        VALUES (tap.step(v_task, split_part(v_edge, '>', 1)), tap.step(v_task, split_part(v_edge, '>', 2)));
    END LOOP;
    RETURN v_task;
END;
$$;

CREATE FUNCTION tap.check(p_cond boolean, p_what text) RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
    IF p_cond IS NOT TRUE THEN
        RAISE EXCEPTION 'fixture step failed: %', p_what;
    END IF;
END;
$$;

CREATE FUNCTION tap.step(p_task uuid, p_name text) RETURNS uuid
LANGUAGE sql STABLE
AS $$
    SELECT ws.workflow_step_uuid
    FROM tasker.workflow_steps ws
    JOIN tasker.named_steps ns ON ns.named_step_uuid = ws.named_step_uuid
    WHERE ws.task_uuid = p_task AND ns.name = p_name
$$;

-- Moves a step through the given states with CAS transitions from
-- whatever state it is in; raises if one is refused.
CREATE FUNCTION tap.drive(p_step uuid, VARIADIC p_states text[]) RETURNS void
LANGUAGE plpgsql
AS $$
DECLARE
    v_state text;
BEGIN
    FOREACH v_state IN ARRAY p_states LOOP
        PERFORM tap.check(
            tasker.transition_step_state_atomic(p_step, ARRAY[tasker.get_current_step_state(p_step)], v_state),
            format('step %s -> %s', p_step, v_state));
    END LOOP;
END;
$$;

CREATE FUNCTION tap.drive_task(p_task uuid, VARIADIC p_states text[]) RETURNS void
LANGUAGE plpgsql
AS $$
DECLARE
    v_state text;
BEGIN
    FOREACH v_state IN ARRAY p_states LOOP
        PERFORM tap.check(
            tasker.transition_task_state_atomic(p_task, tasker.get_current_task_state(p_task), v_state),
            format('task %s -> %s', p_task, v_state));
    END LOOP;
END;
$$;

-- The worker/orchestration happy path for one step.
CREATE FUNCTION tap.complete_step(p_step uuid) RETURNS void
LANGUAGE sql
AS $$
    SELECT tap.drive(p_step, 'enqueued', 'in_progress', 'enqueued_for_orchestration', 'complete')
$$;

-- Pretends the task entered its current state p_ago ago.
CREATE FUNCTION tap.age_task_state(p_task uuid, p_ago interval) RETURNS void
LANGUAGE sql
AS $$
    UPDATE tasker.task_transitions SET created_at = now() - p_ago
    WHERE task_uuid = p_task AND most_recent
$$;

CREATE FUNCTION tap.task_state(p_task uuid) RETURNS text
LANGUAGE sql STABLE
AS $$ SELECT tasker.get_current_task_state(p_task) $$;

CREATE FUNCTION tap.step_state(p_task uuid, p_name text) RETURNS text
LANGUAGE sql STABLE
AS $$ SELECT tasker.get_current_step_state(tap.step(p_task, p_name)) $$;

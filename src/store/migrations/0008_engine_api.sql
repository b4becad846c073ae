-- Engine operations that touch many rows, done in one round trip each.
-- The decisions (which transition, when) are made by the C engine; these
-- functions only carry them out atomically.

-- ---------------------------------------------------------------------------
-- Task creation: the task, one step per template step, the edges and the
-- initial transitions, in the caller's transaction.
--   p_steps: [{"name", "retryable", "max_attempts", "inputs"}, ...]
--   p_edges: [{"parent", "child"}, ...] (step names)
-- A duplicate identity_hash raises unique_violation (23505).
-- ---------------------------------------------------------------------------
CREATE FUNCTION tasker.create_task(
    p_named_task_uuid       uuid,
    p_identity_hash         text,
    p_context               jsonb,
    p_initiator             text,
    p_source_system         text,
    p_reason                text,
    p_tags                  jsonb,
    p_priority              integer,
    p_correlation_id        uuid,
    p_parent_correlation_id uuid,
    p_steps                 jsonb,
    p_edges                 jsonb
) RETURNS TABLE (task_uuid uuid, correlation_id uuid)
LANGUAGE plpgsql
AS $$
#variable_conflict use_column
DECLARE
    v_task uuid;
    v_corr uuid;
    s      record;
    v_ids  jsonb := '{}'::jsonb;
    v_step uuid;
    e      record;
BEGIN
    INSERT INTO tasker.tasks (named_task_uuid, identity_hash, context, initiator, source_system,
                              reason, tags, priority, correlation_id, parent_correlation_id)
    VALUES (p_named_task_uuid, p_identity_hash, COALESCE(p_context, '{}'::jsonb), p_initiator,
            p_source_system, p_reason, p_tags, COALESCE(p_priority, 0),
            COALESCE(p_correlation_id, tasker.uuid_generate_v7()), p_parent_correlation_id)
    RETURNING tasks.task_uuid, tasks.correlation_id INTO v_task, v_corr;

    FOR s IN SELECT * FROM jsonb_to_recordset(p_steps)
             AS x(name text, retryable boolean, max_attempts integer, inputs jsonb)
    LOOP
        INSERT INTO tasker.workflow_steps (task_uuid, named_step_uuid, retryable, max_attempts, inputs)
        SELECT v_task, ns.named_step_uuid, COALESCE(s.retryable, true),
               COALESCE(s.max_attempts, 3), COALESCE(s.inputs, '{}'::jsonb)
        FROM tasker.named_steps ns WHERE ns.name = s.name
        RETURNING workflow_step_uuid INTO v_step;
        IF v_step IS NULL THEN
            RAISE EXCEPTION 'step "%" is not registered', s.name USING ERRCODE = 'no_data_found';
        END IF;
        v_ids := v_ids || jsonb_build_object(s.name, v_step);
        PERFORM tasker.transition_step_state_from_any(v_step, ARRAY[NULL]::text[], 'pending',
                                                      '{"event":"Initialize"}'::jsonb);
    END LOOP;

    FOR e IN SELECT * FROM jsonb_to_recordset(COALESCE(p_edges, '[]'::jsonb)) AS x(parent text, child text)
    LOOP
        INSERT INTO tasker.workflow_step_edges (from_step_uuid, to_step_uuid, name)
        VALUES ((v_ids ->> e.parent)::uuid, (v_ids ->> e.child)::uuid, 'provides');
    END LOOP;

    PERFORM tasker.transition_task_state_from_any(v_task, ARRAY[NULL]::text[], 'pending', NULL,
                                                  '{"event":"Initialize"}'::jsonb);
    RETURN QUERY SELECT v_task, v_corr;
END;
$$;

COMMENT ON FUNCTION tasker.create_task(uuid, text, jsonb, text, text, text, jsonb, integer, uuid, uuid, jsonb, jsonb) IS
'Creates a task with its steps, edges and initial (pending) transitions in the caller''s transaction. Raises unique_violation on a duplicate identity_hash.';

-- ---------------------------------------------------------------------------
-- Enqueue every ready step of a task: waiting_for_retry -> pending (Retry),
-- pending -> enqueued (Enqueue), and the worker message, in the caller's
-- transaction (so the message is sent if and only if the step moved).
-- Returns the uuids of the steps enqueued.
-- ---------------------------------------------------------------------------
CREATE FUNCTION tasker.enqueue_ready_steps(
    p_task_uuid      uuid,
    p_queue_name     text,
    p_correlation_id uuid,
    p_processor_uuid uuid DEFAULT NULL
) RETURNS SETOF uuid
LANGUAGE plpgsql
AS $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT rs.workflow_step_uuid, rs.current_state
             FROM tasker.get_step_readiness_status(p_task_uuid) rs
             WHERE rs.ready_for_execution
    LOOP
        IF r.current_state = 'waiting_for_retry' THEN
            IF tasker.transition_step_state_from_any(r.workflow_step_uuid, ARRAY['waiting_for_retry'],
                   'pending', jsonb_build_object('event', 'Retry')) IS NULL THEN
                CONTINUE;
            END IF;
        END IF;
        IF tasker.transition_step_state_from_any(r.workflow_step_uuid, ARRAY['pending'], 'enqueued',
               jsonb_build_object('event', 'Enqueue', 'processor_uuid', p_processor_uuid)) IS NULL THEN
            CONTINUE;
        END IF;
        PERFORM tasker.pgmq_send_with_notify(p_queue_name,
            jsonb_build_object('task_uuid', p_task_uuid, 'step_uuid', r.workflow_step_uuid,
                               'correlation_id', p_correlation_id), 0);
        RETURN NEXT r.workflow_step_uuid;
    END LOOP;
END;
$$;

COMMENT ON FUNCTION tasker.enqueue_ready_steps(uuid, text, uuid, uuid) IS
'Moves every ready step to enqueued and sends its worker message in the same transaction; returns the steps enqueued.';

-- ---------------------------------------------------------------------------
-- Cancel: every non-terminal step of the task goes to cancelled. The task
-- transition itself is the engine's. Returns the number of steps cancelled.
-- ---------------------------------------------------------------------------
CREATE FUNCTION tasker.cancel_task_steps(p_task_uuid uuid, p_metadata jsonb DEFAULT '{}'::jsonb)
RETURNS integer
LANGUAGE plpgsql
AS $$
DECLARE
    r record;
    n integer := 0;
BEGIN
    FOR r IN SELECT ws.workflow_step_uuid
             FROM tasker.workflow_steps ws
             LEFT JOIN tasker.workflow_step_transitions st
                    ON st.workflow_step_uuid = ws.workflow_step_uuid AND st.most_recent
             WHERE ws.task_uuid = p_task_uuid
               AND COALESCE(st.to_state, 'pending') NOT IN ('complete', 'cancelled', 'resolved_manually')
             ORDER BY ws.workflow_step_uuid
    LOOP
        IF tasker.transition_step_state_from_any(r.workflow_step_uuid,
               ARRAY[NULL, 'pending', 'enqueued', 'in_progress', 'enqueued_for_orchestration',
                     'enqueued_as_error_for_orchestration', 'waiting_for_retry', 'error'],
               'cancelled', p_metadata) IS NOT NULL THEN
            n := n + 1;
        END IF;
    END LOOP;
    RETURN n;
END;
$$;

-- 0007_worker.sql -- what tasker-worker needs: claiming a step from a queue
-- message, and the handler input in one round trip.
--
-- The protocol (the orchestration follows the same one):
--   * Steps of namespace NS are enqueued on queue worker_NS_queue with the
--     message {"task_uuid", "step_uuid", "correlation_id"}.
--   * A worker reads the message with a visibility timeout and, in one
--     transaction, calls tasker.claim_step(step, worker, correlation_id,
--     read_ct). 'skip' means the step is not the worker's to run (it was
--     cancelled, already finished, or another live worker has it); the
--     worker archives the message in the same transaction.
--   * While the handler runs, the worker keeps extending the message's
--     visibility timeout. A message that becomes visible again while its
--     step is in_progress (read_ct > 1) means the worker that claimed it
--     stopped doing so: the next reader takes the step over (a reclaim).
--   * The worker reports with transition_step_state_atomic(step,
--     {in_progress}, enqueued_for_orchestration | enqueued_as_error_for_
--     orchestration, ...), sends {"task_uuid", "step_uuid",
--     "correlation_id"} to orchestration_step_results when that returned
--     true, and archives the message, all in one transaction.

-- ===========================================================================
-- Claim
-- ===========================================================================
-- Returns
--   'claimed'    the step was enqueued (or pending, from older enqueuers) and
--                is now in_progress for p_worker_uuid: attempts + 1,
--                in_process, last_attempted_at = now(); transition metadata
--                {worker_uuid, correlation_id, event: "Start"}
--   'reclaimed'  the step was in_progress and the message has been read
--                before (p_read_ct > 1), so its visibility timeout ran out
--                and the previous worker is presumed dead: a new
--                in_progress -> in_progress transition, attempts + 1,
--                last_attempted_at = now(); metadata {worker_uuid,
--                correlation_id, event: "Reclaim", previous_worker_uuid,
--                read_ct}
--   'skip'       anything else, including a step that does not exist
-- p_correlation_id NULL means the task's correlation id.
CREATE FUNCTION tasker.claim_step(
    p_step_uuid      uuid,
    p_worker_uuid    uuid,
    p_correlation_id uuid,
    p_read_ct        integer
) RETURNS text
LANGUAGE plpgsql
AS $$
DECLARE
    v_corr     uuid;
    v_current  text;
    v_previous jsonb;
BEGIN
    -- The same row lock as transition_step_state_from_any: a concurrent
    -- claim, report or cancel of this step waits here.
    SELECT COALESCE(p_correlation_id, t.correlation_id) INTO v_corr
    FROM tasker.workflow_steps ws
    JOIN tasker.tasks t ON t.task_uuid = ws.task_uuid
    WHERE ws.workflow_step_uuid = p_step_uuid
    FOR NO KEY UPDATE OF ws;
    IF NOT FOUND THEN
        RETURN 'skip';
    END IF;

    SELECT st.to_state, st.metadata INTO v_current, v_previous
    FROM tasker.workflow_step_transitions st
    WHERE st.workflow_step_uuid = p_step_uuid AND st.most_recent;
    v_current := COALESCE(v_current, 'pending');

    IF v_current IN ('enqueued', 'pending') THEN
        IF tasker.transition_step_state_from_any(
               p_step_uuid, ARRAY['enqueued', 'pending'], 'in_progress',
               jsonb_build_object('worker_uuid', p_worker_uuid,
                                  'correlation_id', v_corr,
                                  'event', 'Start')) IS NULL THEN
            RETURN 'skip'; -- a guard refused (in_process already set)
        END IF;
        RETURN 'claimed';
    END IF;

    IF v_current <> 'in_progress' OR COALESCE(p_read_ct, 0) <= 1 THEN
        RETURN 'skip';
    END IF;

    -- Reclaim: the previous claim is void. Clearing in_process lets the
    -- ordinary CAS transition write in_progress -> in_progress with its
    -- side effects (attempts + 1, last_attempted_at, in_process); the row
    -- lock taken above is held throughout, so nobody sees the step between.
    UPDATE tasker.workflow_steps ws
    SET in_process = false
    WHERE ws.workflow_step_uuid = p_step_uuid;

    IF tasker.transition_step_state_from_any(
           p_step_uuid, ARRAY['in_progress'], 'in_progress',
           jsonb_build_object('worker_uuid', p_worker_uuid,
                              'correlation_id', v_corr,
                              'event', 'Reclaim',
                              'previous_worker_uuid', v_previous -> 'worker_uuid',
                              'read_ct', p_read_ct)) IS NULL THEN
        RAISE EXCEPTION 'reclaim of step % refused', p_step_uuid; -- cannot happen under the lock
    END IF;
    RETURN 'reclaimed';
END;
$$;

COMMENT ON FUNCTION tasker.claim_step(uuid, uuid, uuid, integer) IS
'Worker claim of a step from a queue message read p_read_ct times: ''claimed'' (enqueued/pending -> in_progress), ''reclaimed'' (in_progress and the message came back after its visibility timeout: in_progress -> in_progress, attempts + 1) or ''skip''.';

-- ===========================================================================
-- Handler input
-- ===========================================================================
-- The input a worker gives a step handler, NULL when the step does not
-- exist:
--   {task_uuid, step_uuid, step_name, correlation_id, attempt,
--    task: {namespace, name, version, context, initiator, tags},
--    step_inputs,                      -- workflow_steps.inputs
--    dependency_results: {"<ancestor step name>": <its result>, ...}}
-- dependency_results covers every ancestor (get_step_transitive_
-- dependencies). An ancestor's result is results.result when its results
-- are a step execution result (an object with "success"), otherwise the
-- stored results as they are (NULL included). Call it after the claim, so
-- that attempt counts the current one.
CREATE FUNCTION tasker.worker_step_input(p_step_uuid uuid, p_correlation_id uuid DEFAULT NULL)
RETURNS jsonb
LANGUAGE sql STABLE
AS $$
    SELECT jsonb_build_object(
        'task_uuid', t.task_uuid,
        'step_uuid', ws.workflow_step_uuid,
        'step_name', ns.name,
        'correlation_id', COALESCE(p_correlation_id, t.correlation_id),
        'attempt', ws.attempts,
        'task', jsonb_build_object(
            'namespace', tn.name,
            'name', nt.name,
            'version', nt.version,
            'context', t.context,
            'initiator', t.initiator,
            'tags', t.tags),
        'step_inputs', COALESCE(ws.inputs, '{}'::jsonb),
        'dependency_results', COALESCE((
            SELECT jsonb_object_agg(
                       d.step_name,
                       CASE WHEN jsonb_typeof(d.results) = 'object' AND d.results ? 'success'
                            THEN d.results -> 'result'
                            ELSE d.results END)
            FROM tasker.get_step_transitive_dependencies(ws.workflow_step_uuid) AS d),
            '{}'::jsonb))
    FROM tasker.workflow_steps ws
    JOIN tasker.tasks t            ON t.task_uuid = ws.task_uuid
    JOIN tasker.named_steps ns     ON ns.named_step_uuid = ws.named_step_uuid
    JOIN tasker.named_tasks nt     ON nt.named_task_uuid = t.named_task_uuid
    JOIN tasker.task_namespaces tn ON tn.task_namespace_uuid = nt.task_namespace_uuid
    WHERE ws.workflow_step_uuid = p_step_uuid
$$;

COMMENT ON FUNCTION tasker.worker_step_input(uuid, uuid) IS
'Step handler input: task and step identity, attempt, task facts, step_inputs and the results of every ancestor by step name. NULL if the step does not exist.';

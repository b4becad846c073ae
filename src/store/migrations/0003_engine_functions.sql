-- 0003_engine_functions.sql -- state transitions, readiness, task pickup,
-- DAG helpers, health counts, the step result audit trigger.
--
-- Conventions
--   * Every function schema-qualifies what it touches; none sets search_path.
--   * State names are text. A task or step without any transition row is in
--     state 'pending'.
--   * Compare-and-swap (CAS) transitions lock the owning row (tasks row for
--     task transitions, workflow_steps row for step transitions) with
--     FOR NO KEY UPDATE, re-read the current state under that lock, and
--     append a transition only if the current state is one of the expected
--     ones. They are meant for READ COMMITTED (the default); under
--     REPEATABLE READ a concurrent winner surfaces as a serialization error
--     (SQLSTATE 40001) instead of false.
--   * Transition rows are written only through these functions (a direct
--     INSERT would bypass the row lock). They check atomicity and the few
--     guards listed below; which transitions are legal (the state machine
--     tables) is the engine's business.
--
-- Errors raised on purpose (SQLSTATE):
--   P0002 no_data_found            task or step does not exist
--   22023 invalid_parameter_value  unknown state name, negative backoff
--   22004 null_value_not_allowed   NULL from-state array
--   23514 check_violation          edge across tasks or closing a cycle

-- ===========================================================================
-- Small helpers
-- ===========================================================================
CREATE FUNCTION tasker.task_state_is_terminal(p_state text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT p_state IN ('complete', 'error', 'cancelled', 'resolved_manually') $$;

CREATE FUNCTION tasker.step_state_is_terminal(p_state text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT p_state IN ('complete', 'cancelled', 'resolved_manually') $$;

COMMENT ON FUNCTION tasker.task_state_is_terminal(text) IS
'Task terminal states: complete, error, cancelled, resolved_manually.';
COMMENT ON FUNCTION tasker.step_state_is_terminal(text) IS
'Step terminal states: complete, cancelled, resolved_manually (error is recoverable by an operator).';

-- Lenient parsers for values read out of JSON written by other programs:
-- they return NULL instead of raising, without opening a subtransaction.
CREATE FUNCTION tasker.try_parse_uuid(p_text text) RETURNS uuid
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE
        WHEN p_text ~* '^([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[0-9a-f]{32})$'
        THEN p_text::uuid
    END
$$;

CREATE FUNCTION tasker.try_parse_bigint(p_text text) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE WHEN abs(n) < 9.2e18 THEN round(n)::bigint END
    FROM (SELECT CASE
                     WHEN btrim(p_text) ~ '^-?[0-9]{1,30}(\.[0-9]{1,30})?([eE][-+]?[0-9]{1,3})?$'
                     THEN btrim(p_text)::numeric
                 END AS n) AS parsed
$$;

COMMENT ON FUNCTION tasker.try_parse_uuid(text) IS
'text -> uuid (canonical or 32 hex digits), NULL if it does not parse.';
COMMENT ON FUNCTION tasker.try_parse_bigint(text) IS
'JSON number text -> bigint (rounded), NULL if it does not parse or is out of range.';

-- Does the current state (v_current, NULL when there is no most_recent row)
-- match one of the expected states? A NULL element matches only an entity
-- that has no transition rows at all; 'pending' matches both an explicit
-- pending row and the implicit pending of an entity without rows.
CREATE FUNCTION tasker.state_matches(p_current text, p_has_history boolean, p_expected text[])
RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    -- "= ANY" yields NULL (not false) when the array holds a NULL and
    -- nothing matches; COALESCE keeps the result strictly true/false.
    SELECT COALESCE(CASE
        WHEN NOT p_has_history
            THEN 'pending' = ANY (p_expected) OR array_position(p_expected, NULL) IS NOT NULL
        ELSE COALESCE(p_current, 'pending') = ANY (p_expected)
    END, false)
$$;

-- ===========================================================================
-- Current state
-- ===========================================================================
CREATE FUNCTION tasker.get_current_task_state(p_task_uuid uuid) RETURNS text
LANGUAGE sql STABLE
AS $$
    SELECT COALESCE(tt.to_state::text, 'pending')
    FROM tasker.tasks t
    LEFT JOIN tasker.task_transitions tt ON tt.task_uuid = t.task_uuid AND tt.most_recent
    WHERE t.task_uuid = p_task_uuid
$$;

CREATE FUNCTION tasker.get_current_step_state(p_step_uuid uuid) RETURNS text
LANGUAGE sql STABLE
AS $$
    SELECT COALESCE(st.to_state::text, 'pending')
    FROM tasker.workflow_steps ws
    LEFT JOIN tasker.workflow_step_transitions st
           ON st.workflow_step_uuid = ws.workflow_step_uuid AND st.most_recent
    WHERE ws.workflow_step_uuid = p_step_uuid
$$;

COMMENT ON FUNCTION tasker.get_current_task_state(uuid) IS
'Current task state (''pending'' when there is no transition row); NULL if the task does not exist.';
COMMENT ON FUNCTION tasker.get_current_step_state(uuid) IS
'Current step state (''pending'' when there is no transition row); NULL if the step does not exist.';

-- ===========================================================================
-- Task transitions (compare-and-swap)
-- ===========================================================================
CREATE FUNCTION tasker.transition_task_state_from_any(
    p_task_uuid           uuid,
    p_from_states         text[],
    p_to_state            text,
    p_processor_uuid      uuid  DEFAULT NULL,
    p_metadata            jsonb DEFAULT '{}'::jsonb,
    p_transition_metadata jsonb DEFAULT '{}'::jsonb
) RETURNS text
LANGUAGE plpgsql
AS $$
DECLARE
    v_current   text;
    v_last_sort integer;
BEGIN
    IF p_from_states IS NULL THEN
        RAISE EXCEPTION 'from-state list must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF p_to_state IS NULL OR NOT (p_to_state = ANY (tasker.task_state_names())) THEN
        RAISE EXCEPTION 'unknown task state %', COALESCE(quote_literal(p_to_state), 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF EXISTS (SELECT 1 FROM unnest(p_from_states) AS f(s)
               WHERE f.s IS NOT NULL AND NOT (f.s = ANY (tasker.task_state_names()))) THEN
        RAISE EXCEPTION 'unknown task state in from-states %', p_from_states
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    -- Serialise all transitions of this task on its row.
    PERFORM 1 FROM tasker.tasks t WHERE t.task_uuid = p_task_uuid FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'task % does not exist', p_task_uuid USING ERRCODE = 'no_data_found';
    END IF;

    SELECT tt.to_state INTO v_current
    FROM tasker.task_transitions tt
    WHERE tt.task_uuid = p_task_uuid AND tt.most_recent;

    SELECT max(tt.sort_key) INTO v_last_sort
    FROM tasker.task_transitions tt
    WHERE tt.task_uuid = p_task_uuid;

    IF NOT tasker.state_matches(v_current, v_last_sort IS NOT NULL, p_from_states) THEN
        RETURN NULL;
    END IF;

    UPDATE tasker.task_transitions tt
    SET most_recent = false
    WHERE tt.task_uuid = p_task_uuid AND tt.most_recent;

    INSERT INTO tasker.task_transitions
        (task_uuid, from_state, to_state, metadata, transition_metadata,
         sort_key, most_recent, processor_uuid)
    VALUES
        (p_task_uuid, v_current, p_to_state, COALESCE(p_metadata, '{}'::jsonb),
         COALESCE(p_transition_metadata, '{}'::jsonb), COALESCE(v_last_sort, 0) + 1, true,
         p_processor_uuid);

    -- updated_at is bumped by the trigger on every transition.
    UPDATE tasker.tasks t
    SET complete     = t.complete OR p_to_state = 'complete',
        completed_at = CASE WHEN p_to_state = 'complete' THEN now() ELSE t.completed_at END
    WHERE t.task_uuid = p_task_uuid;

    RETURN COALESCE(v_current, 'pending');
END;
$$;

COMMENT ON FUNCTION tasker.transition_task_state_from_any(uuid, text[], text, uuid, jsonb, jsonb) IS
'CAS task transition from any of p_from_states. Returns the state left (''pending'' for a task without rows) or NULL when the current state is not in the list (nothing written). A NULL element matches only a task without any transition row. Entering complete sets tasks.complete and completed_at.';

CREATE FUNCTION tasker.transition_task_state_atomic(
    p_task_uuid           uuid,
    p_from_state          text,
    p_to_state            text,
    p_processor_uuid      uuid  DEFAULT NULL,
    p_metadata            jsonb DEFAULT '{}'::jsonb,
    p_transition_metadata jsonb DEFAULT '{}'::jsonb
) RETURNS boolean
LANGUAGE sql
AS $$
    SELECT tasker.transition_task_state_from_any(
               p_task_uuid, ARRAY[p_from_state], p_to_state,
               p_processor_uuid, p_metadata, p_transition_metadata) IS NOT NULL
$$;

COMMENT ON FUNCTION tasker.transition_task_state_atomic(uuid, text, text, uuid, jsonb, jsonb) IS
'CAS task transition: appends p_from_state -> p_to_state only if the current state equals p_from_state; true if written. p_from_state NULL means "the task has no transition row yet" (use it for the initial row). Metadata goes to task_transitions.metadata, p_transition_metadata to transition_metadata; processor_uuid is recorded, not enforced.';

-- ===========================================================================
-- Step transitions (compare-and-swap with the step-row side effects)
-- ===========================================================================
-- Side effects on workflow_steps, applied with the transition:
--   in_process := (to_state = 'in_progress')
--   to in_progress:      attempts + 1, last_attempted_at := now()
--   to complete / cancelled / resolved_manually:
--                        processed := true, processed_at := now()
--   to any other state:  processed := false, processed_at := NULL
--   p_results not NULL:  results := p_results
--   p_reset_attempts:    attempts := 0, backoff_request_seconds := NULL
-- Guards (return NULL, nothing written):
--   to in_progress or enqueued while in_process is set;
--   error -> pending without p_reset_attempts unless the step can be retried
--   (retryable and attempts < max_attempts).
CREATE FUNCTION tasker.transition_step_state_from_any(
    p_step_uuid      uuid,
    p_from_states    text[],
    p_to_state       text,
    p_metadata       jsonb   DEFAULT '{}'::jsonb,
    p_results        jsonb   DEFAULT NULL,
    p_reset_attempts boolean DEFAULT false
) RETURNS text
LANGUAGE plpgsql
AS $$
DECLARE
    v_step      record;
    v_current   text;
    v_last_sort integer;
    v_terminal  boolean;
    v_reset     boolean := COALESCE(p_reset_attempts, false);
BEGIN
    IF p_from_states IS NULL THEN
        RAISE EXCEPTION 'from-state list must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF p_to_state IS NULL OR NOT (p_to_state = ANY (tasker.step_state_names())) THEN
        RAISE EXCEPTION 'unknown step state %', COALESCE(quote_literal(p_to_state), 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF EXISTS (SELECT 1 FROM unnest(p_from_states) AS f(s)
               WHERE f.s IS NOT NULL AND NOT (f.s = ANY (tasker.step_state_names()))) THEN
        RAISE EXCEPTION 'unknown step state in from-states %', p_from_states
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    SELECT ws.in_process, ws.attempts, ws.max_attempts, ws.retryable INTO v_step
    FROM tasker.workflow_steps ws
    WHERE ws.workflow_step_uuid = p_step_uuid
    FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'workflow step % does not exist', p_step_uuid USING ERRCODE = 'no_data_found';
    END IF;

    SELECT st.to_state INTO v_current
    FROM tasker.workflow_step_transitions st
    WHERE st.workflow_step_uuid = p_step_uuid AND st.most_recent;

    SELECT max(st.sort_key) INTO v_last_sort
    FROM tasker.workflow_step_transitions st
    WHERE st.workflow_step_uuid = p_step_uuid;

    IF NOT tasker.state_matches(v_current, v_last_sort IS NOT NULL, p_from_states) THEN
        RETURN NULL;
    END IF;
    IF p_to_state IN ('in_progress', 'enqueued') AND v_step.in_process THEN
        RETURN NULL;
    END IF;
    IF v_current = 'error' AND p_to_state = 'pending' AND NOT v_reset
       AND NOT (v_step.retryable AND v_step.attempts < v_step.max_attempts) THEN
        RETURN NULL;
    END IF;

    UPDATE tasker.workflow_step_transitions st
    SET most_recent = false
    WHERE st.workflow_step_uuid = p_step_uuid AND st.most_recent;

    INSERT INTO tasker.workflow_step_transitions
        (workflow_step_uuid, from_state, to_state, metadata, sort_key, most_recent)
    VALUES
        (p_step_uuid, v_current, p_to_state, COALESCE(p_metadata, '{}'::jsonb),
         COALESCE(v_last_sort, 0) + 1, true);

    v_terminal := tasker.step_state_is_terminal(p_to_state);

    UPDATE tasker.workflow_steps ws
    SET in_process              = (p_to_state = 'in_progress'),
        attempts                = CASE WHEN v_reset THEN 0
                                       WHEN p_to_state = 'in_progress' THEN ws.attempts + 1
                                       ELSE ws.attempts END,
        last_attempted_at       = CASE WHEN p_to_state = 'in_progress' THEN now()
                                       ELSE ws.last_attempted_at END,
        backoff_request_seconds = CASE WHEN v_reset THEN NULL
                                       ELSE ws.backoff_request_seconds END,
        processed               = v_terminal,
        processed_at            = CASE WHEN v_terminal THEN now() END,
        results                 = COALESCE(p_results, ws.results)
    WHERE ws.workflow_step_uuid = p_step_uuid;

    RETURN COALESCE(v_current, 'pending');
END;
$$;

COMMENT ON FUNCTION tasker.transition_step_state_from_any(uuid, text[], text, jsonb, jsonb, boolean) IS
'CAS step transition with side effects (see the comment in 0003). Returns the state left, or NULL when nothing was written (state not in p_from_states, or a guard refused).';

CREATE FUNCTION tasker.transition_step_state_atomic(
    p_step_uuid   uuid,
    p_from_states text[],
    p_to_state    text,
    p_metadata    jsonb DEFAULT '{}'::jsonb,
    p_results     jsonb DEFAULT NULL
) RETURNS boolean
LANGUAGE sql
AS $$
    SELECT tasker.transition_step_state_from_any(
               p_step_uuid, p_from_states, p_to_state, p_metadata, p_results, false) IS NOT NULL
$$;

COMMENT ON FUNCTION tasker.transition_step_state_atomic(uuid, text[], text, jsonb, jsonb) IS
'CAS step transition: appends (current) -> p_to_state only if the current state is in p_from_states; true if written. Side effects: in_process, attempts/last_attempted_at (to in_progress), processed/processed_at (terminal states), results (p_results when not NULL). error -> pending requires retryable and attempts < max_attempts.';

CREATE FUNCTION tasker.reset_step_for_retry(
    p_step_uuid uuid,
    p_metadata  jsonb DEFAULT '{}'::jsonb
) RETURNS boolean
LANGUAGE sql
AS $$
    SELECT tasker.transition_step_state_from_any(
               p_step_uuid, ARRAY['error'], 'pending', p_metadata, NULL, true) IS NOT NULL
$$;

COMMENT ON FUNCTION tasker.reset_step_for_retry(uuid, jsonb) IS
'Operator ResetForRetry: error -> pending with attempts := 0 and backoff cleared, regardless of the retry limit. True if written.';

-- Backoff chosen by the orchestration for the next retry.
CREATE FUNCTION tasker.set_step_backoff_atomic(p_step_uuid uuid, p_backoff_seconds integer)
RETURNS boolean
LANGUAGE plpgsql
AS $$
BEGIN
    IF p_backoff_seconds IS NULL OR p_backoff_seconds < 0 THEN
        RAISE EXCEPTION 'backoff must be a non-negative number of seconds, got %', p_backoff_seconds
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    UPDATE tasker.workflow_steps ws
    SET backoff_request_seconds = p_backoff_seconds,
        last_attempted_at       = now()
    WHERE ws.workflow_step_uuid = p_step_uuid;
    RETURN FOUND;
END;
$$;

COMMENT ON FUNCTION tasker.set_step_backoff_atomic(uuid, integer) IS
'Sets backoff_request_seconds and last_attempted_at := now() under the row lock of the UPDATE, so next_retry_at = now() + backoff. False if the step does not exist.';

-- ===========================================================================
-- Readiness
-- ===========================================================================
CREATE FUNCTION tasker.calculate_step_next_retry_time(
    p_backoff_request_seconds integer,
    p_last_attempted_at       timestamptz,
    p_failure_time            timestamptz,
    p_attempts                integer,
    p_max_backoff_seconds     integer DEFAULT 60,
    p_backoff_multiplier      numeric DEFAULT 2.0
) RETURNS timestamptz
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT CASE
        WHEN p_backoff_request_seconds IS NOT NULL AND p_last_attempted_at IS NOT NULL
            THEN p_last_attempted_at + make_interval(secs => p_backoff_request_seconds)
        WHEN p_failure_time IS NOT NULL
            THEN p_failure_time + make_interval(secs => LEAST(
                     power(p_backoff_multiplier, GREATEST(COALESCE(p_attempts, 0), 0)),
                     p_max_backoff_seconds)::double precision)
    END
$$;

COMMENT ON FUNCTION tasker.calculate_step_next_retry_time(integer, timestamptz, timestamptz, integer, integer, numeric) IS
'Earliest retry time: last_attempted_at + backoff_request_seconds when both are set; else failure_time + min(multiplier^attempts, max) seconds; else NULL (no wait).';

CREATE FUNCTION tasker.evaluate_step_state_readiness(
    p_current_state          text,
    p_processed              boolean,
    p_in_process             boolean,
    p_dependencies_satisfied boolean,
    p_retry_eligible         boolean,
    p_next_retry_at          timestamptz
) RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT COALESCE(p_current_state, 'pending') IN ('pending', 'waiting_for_retry')
       AND NOT COALESCE(p_processed, false)
       AND NOT COALESCE(p_in_process, false)
       AND COALESCE(p_dependencies_satisfied, false)
       AND COALESCE(p_retry_eligible, false)
       AND (p_next_retry_at IS NULL OR p_next_retry_at <= now())
$$;

COMMENT ON FUNCTION tasker.evaluate_step_state_readiness(text, boolean, boolean, boolean, boolean, timestamptz) IS
'A step is ready when it is pending or waiting_for_retry, not processed, not in process, its parents are complete/resolved_manually, it is retry-eligible and its next retry time (if any) has passed.';

CREATE FUNCTION tasker.get_step_readiness_status_batch(
    p_task_uuids uuid[],
    p_step_uuids uuid[] DEFAULT NULL
) RETURNS TABLE (
    workflow_step_uuid      uuid,
    task_uuid               uuid,
    named_step_uuid         uuid,
    name                    text,
    current_state           text,
    dependencies_satisfied  boolean,
    retry_eligible          boolean,
    ready_for_execution     boolean,
    last_failure_at         timestamptz,
    next_retry_at           timestamptz,
    total_parents           integer,
    completed_parents       integer,
    attempts                integer,
    max_attempts            integer,
    backoff_request_seconds integer,
    last_attempted_at       timestamptz
)
LANGUAGE sql STABLE
AS $$
    SELECT ws.workflow_step_uuid,
           ws.task_uuid,
           ws.named_step_uuid,
           ns.name::text,
           cur.state,
           dep.total = dep.done,
           elig.ok,
           tasker.evaluate_step_state_readiness(cur.state, ws.processed, ws.in_process,
                                                dep.total = dep.done, elig.ok, nxt.at),
           fail.at,
           nxt.at,
           dep.total,
           dep.done,
           ws.attempts,
           ws.max_attempts,
           ws.backoff_request_seconds,
           ws.last_attempted_at
    FROM tasker.workflow_steps ws
    JOIN tasker.named_steps ns ON ns.named_step_uuid = ws.named_step_uuid
    CROSS JOIN LATERAL (
        SELECT COALESCE((SELECT st.to_state::text
                         FROM tasker.workflow_step_transitions st
                         WHERE st.workflow_step_uuid = ws.workflow_step_uuid AND st.most_recent),
                        'pending') AS state
    ) AS cur
    CROSS JOIN LATERAL (
        -- Parent states are looked up directly, so filtering by step uuids
        -- never hides a parent.
        SELECT count(*)::integer AS total,
               (count(*) FILTER (WHERE pst.to_state IN ('complete', 'resolved_manually')))::integer AS done
        FROM tasker.workflow_step_edges e
        LEFT JOIN tasker.workflow_step_transitions pst
               ON pst.workflow_step_uuid = e.from_step_uuid AND pst.most_recent
        WHERE e.to_step_uuid = ws.workflow_step_uuid
    ) AS dep
    CROSS JOIN LATERAL (
        -- A failure is the step entering error, or a worker reporting an
        -- error result (enqueued_as_error_for_orchestration).
        SELECT max(st.created_at) AS at
        FROM tasker.workflow_step_transitions st
        WHERE st.workflow_step_uuid = ws.workflow_step_uuid
          AND st.to_state IN ('error', 'enqueued_as_error_for_orchestration')
    ) AS fail
    CROSS JOIN LATERAL (
        SELECT (ws.attempts = 0 OR (ws.retryable AND ws.attempts < ws.max_attempts)) AS ok
    ) AS elig
    CROSS JOIN LATERAL (
        SELECT tasker.calculate_step_next_retry_time(ws.backoff_request_seconds,
                                                     ws.last_attempted_at, fail.at,
                                                     ws.attempts) AS at
    ) AS nxt
    WHERE ws.task_uuid = ANY (p_task_uuids)
      AND (p_step_uuids IS NULL OR ws.workflow_step_uuid = ANY (p_step_uuids))
    ORDER BY ws.task_uuid, ws.workflow_step_uuid
$$;

COMMENT ON FUNCTION tasker.get_step_readiness_status_batch(uuid[], uuid[]) IS
'One readiness row per step of the given tasks (optionally only the given steps). retry_eligible = attempts = 0 OR (retryable AND attempts < max_attempts). last_failure_at = newest transition into error or enqueued_as_error_for_orchestration.';

CREATE FUNCTION tasker.get_step_readiness_status(
    p_task_uuid  uuid,
    p_step_uuids uuid[] DEFAULT NULL
) RETURNS TABLE (
    workflow_step_uuid      uuid,
    task_uuid               uuid,
    named_step_uuid         uuid,
    name                    text,
    current_state           text,
    dependencies_satisfied  boolean,
    retry_eligible          boolean,
    ready_for_execution     boolean,
    last_failure_at         timestamptz,
    next_retry_at           timestamptz,
    total_parents           integer,
    completed_parents       integer,
    attempts                integer,
    max_attempts            integer,
    backoff_request_seconds integer,
    last_attempted_at       timestamptz
)
LANGUAGE sql STABLE
AS $$
    SELECT * FROM tasker.get_step_readiness_status_batch(ARRAY[p_task_uuid], p_step_uuids)
$$;

COMMENT ON FUNCTION tasker.get_step_readiness_status(uuid, uuid[]) IS
'Readiness rows for the steps of one task; see get_step_readiness_status_batch.';

-- ===========================================================================
-- Task execution context
-- ===========================================================================
CREATE FUNCTION tasker.get_task_execution_contexts_batch(p_task_uuids uuid[])
RETURNS TABLE (
    task_uuid                        uuid,
    named_task_uuid                  uuid,
    status                           text,
    total_steps                      bigint,
    pending_steps                    bigint,
    enqueued_steps                   bigint,
    in_progress_steps                bigint,
    enqueued_for_orchestration_steps bigint,
    waiting_for_retry_steps          bigint,
    completed_steps                  bigint,
    failed_steps                     bigint,
    cancelled_steps                  bigint,
    ready_steps                      bigint,
    execution_status                 text,
    recommended_action               text,
    completion_percentage            numeric,
    health_status                    text
)
LANGUAGE sql STABLE
AS $$
    WITH steps AS (
        SELECT * FROM tasker.get_step_readiness_status_batch(p_task_uuids)
    ),
    agg AS (
        SELECT s.task_uuid,
               count(*)                                                        AS total,
               count(*) FILTER (WHERE s.current_state = 'pending')             AS pending,
               count(*) FILTER (WHERE s.current_state = 'enqueued')            AS enqueued,
               count(*) FILTER (WHERE s.current_state = 'in_progress')         AS in_progress,
               count(*) FILTER (WHERE s.current_state IN ('enqueued_for_orchestration',
                                                          'enqueued_as_error_for_orchestration'))
                                                                                AS for_orchestration,
               count(*) FILTER (WHERE s.current_state = 'enqueued_as_error_for_orchestration')
                                                                                AS error_reported,
               count(*) FILTER (WHERE s.current_state = 'waiting_for_retry')   AS waiting_for_retry,
               count(*) FILTER (WHERE s.current_state IN ('complete', 'resolved_manually'))
                                                                                AS completed,
               count(*) FILTER (WHERE s.current_state = 'error')               AS failed,
               count(*) FILTER (WHERE s.current_state = 'cancelled')           AS cancelled,
               count(*) FILTER (WHERE s.ready_for_execution)                   AS ready
        FROM steps s
        GROUP BY s.task_uuid
    ),
    c AS (
        SELECT t.task_uuid,
               t.named_task_uuid,
               COALESCE(tt.to_state::text, 'pending')  AS status,
               COALESCE(a.total, 0)                    AS total,
               COALESCE(a.pending, 0)                  AS pending,
               COALESCE(a.enqueued, 0)                 AS enqueued,
               COALESCE(a.in_progress, 0)              AS in_progress,
               COALESCE(a.for_orchestration, 0)        AS for_orchestration,
               COALESCE(a.error_reported, 0)           AS error_reported,
               COALESCE(a.waiting_for_retry, 0)        AS waiting_for_retry,
               COALESCE(a.completed, 0)                AS completed,
               COALESCE(a.failed, 0)                   AS failed,
               COALESCE(a.cancelled, 0)                AS cancelled,
               COALESCE(a.ready, 0)                    AS ready
        FROM tasker.tasks t
        LEFT JOIN tasker.task_transitions tt ON tt.task_uuid = t.task_uuid AND tt.most_recent
        LEFT JOIN agg a ON a.task_uuid = t.task_uuid
        WHERE t.task_uuid = ANY (p_task_uuids)
    )
    SELECT c.task_uuid, c.named_task_uuid, c.status,
           c.total, c.pending, c.enqueued, c.in_progress, c.for_orchestration,
           c.waiting_for_retry, c.completed, c.failed, c.cancelled, c.ready,
           x.execution_status,
           CASE x.execution_status
               WHEN 'blocked_by_failures' THEN 'handle_failures'
               WHEN 'has_ready_steps'     THEN 'execute_ready_steps'
               WHEN 'processing'          THEN 'wait_for_completion'
               WHEN 'all_complete'        THEN 'finalize_task'
               ELSE 'wait_for_dependencies'
           END,
           CASE WHEN c.total = 0 THEN 0.00
                ELSE round(c.completed * 100.0 / c.total, 2) END,
           CASE WHEN c.failed > 0 THEN 'blocked'
                WHEN c.waiting_for_retry + c.error_reported > 0 THEN 'recovering'
                WHEN c.failed = 0 THEN 'healthy'
                ELSE 'unknown' END
    FROM c
    CROSS JOIN LATERAL (
        SELECT CASE
            WHEN c.failed > 0 THEN 'blocked_by_failures'
            WHEN c.ready > 0 THEN 'has_ready_steps'
            WHEN c.enqueued + c.in_progress + c.for_orchestration > 0 THEN 'processing'
            WHEN c.total > 0 AND c.completed = c.total THEN 'all_complete'
            ELSE 'waiting_for_dependencies'
        END AS execution_status
    ) AS x
    ORDER BY c.task_uuid
$$;

COMMENT ON FUNCTION tasker.get_task_execution_contexts_batch(uuid[]) IS
'Execution context per existing task. completed_steps counts complete + resolved_manually; failed_steps counts error. execution_status, by priority: blocked_by_failures (a step in error), has_ready_steps, processing (enqueued / in_progress / enqueued_*_for_orchestration), all_complete, waiting_for_dependencies; recommended_action maps 1:1 (handle_failures, execute_ready_steps, wait_for_completion, finalize_task, wait_for_dependencies). completion_percentage is a percent 0-100 with 2 decimals. health_status: blocked (a step in error), recovering (a step in waiting_for_retry or enqueued_as_error_for_orchestration), healthy (otherwise); unknown is not produced.';

CREATE FUNCTION tasker.get_task_execution_context(p_task_uuid uuid)
RETURNS TABLE (
    task_uuid                        uuid,
    named_task_uuid                  uuid,
    status                           text,
    total_steps                      bigint,
    pending_steps                    bigint,
    enqueued_steps                   bigint,
    in_progress_steps                bigint,
    enqueued_for_orchestration_steps bigint,
    waiting_for_retry_steps          bigint,
    completed_steps                  bigint,
    failed_steps                     bigint,
    cancelled_steps                  bigint,
    ready_steps                      bigint,
    execution_status                 text,
    recommended_action               text,
    completion_percentage            numeric,
    health_status                    text
)
LANGUAGE sql STABLE
AS $$
    SELECT * FROM tasker.get_task_execution_contexts_batch(ARRAY[p_task_uuid])
$$;

COMMENT ON FUNCTION tasker.get_task_execution_context(uuid) IS
'Execution context of one task (no row if the task does not exist); see get_task_execution_contexts_batch.';

-- ===========================================================================
-- Task pickup
-- ===========================================================================
-- Priority for pickup ordering:
--   < 1 h in the current state:  priority + task_age_hours * 0.1
--   1 h .. 24 h in the state:    priority * exp(-hours_in_state / 12)
--   >= 24 h in the state:        0.1
CREATE FUNCTION tasker.compute_task_priority(
    p_priority         integer,
    p_task_created_at  timestamptz,
    p_state_entered_at timestamptz
) RETURNS numeric
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT round(CASE
        WHEN a.in_state < 3600  THEN p_priority + a.task_age / 3600.0 * 0.1
        WHEN a.in_state < 86400 THEN p_priority * exp(-a.in_state / (12 * 3600.0))
        ELSE 0.1
    END, 6)
    FROM (SELECT extract(epoch FROM now() - p_state_entered_at) AS in_state,
                 extract(epoch FROM now() - p_task_created_at)  AS task_age) AS a
$$;

COMMENT ON FUNCTION tasker.compute_task_priority(integer, timestamptz, timestamptz) IS
'Pickup priority: fresh (< 1 h in state) priority + task age in hours * 0.1; 1-24 h priority * exp(-hours in state / 12); older 0.1.';

-- Try to lock a task row without waiting and confirm (with a fresh
-- snapshot) that it is still in the expected state. Used by the pickup
-- functions; the lock lasts until the caller's transaction ends.
CREATE FUNCTION tasker.try_claim_task_row(p_task_uuid uuid, p_expected_state text)
RETURNS boolean
LANGUAGE plpgsql
AS $$
BEGIN
    PERFORM 1 FROM tasker.tasks t WHERE t.task_uuid = p_task_uuid
    FOR NO KEY UPDATE SKIP LOCKED;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    RETURN p_expected_state IS NULL
        OR tasker.get_current_task_state(p_task_uuid) = p_expected_state;
END;
$$;

COMMENT ON FUNCTION tasker.try_claim_task_row(uuid, text) IS
'Locks the task row FOR NO KEY UPDATE SKIP LOCKED; true if locked and (when given) still in p_expected_state.';

CREATE FUNCTION tasker.get_next_ready_tasks(
    p_limit                                integer DEFAULT 5,
    p_max_waiting_for_dependencies_minutes integer DEFAULT 60,
    p_max_waiting_for_retry_minutes        integer DEFAULT 30
) RETURNS TABLE (
    task_uuid         uuid,
    task_name         text,
    priority          integer,
    namespace_name    text,
    ready_steps_count bigint,
    computed_priority numeric,
    current_state     text
)
LANGUAGE plpgsql
AS $$
#variable_conflict use_column
DECLARE
    r        record;
    v_ready  bigint;
    v_status text;
    v_found  integer := 0;
BEGIN
    IF p_limit IS NULL OR p_limit <= 0 THEN
        RETURN;
    END IF;

    -- Candidates in priority order; readiness is checked lazily, and each
    -- returned task is locked (SKIP LOCKED) only when its turn comes, so
    -- tasks locked by another poller are passed over and the batch is
    -- still filled from the rest.
    FOR r IN
        SELECT t.task_uuid                                     AS uuid,
               nt.name::text                                   AS task_name,
               t.priority                                      AS priority,
               tns.name::text                                  AS namespace_name,
               COALESCE(tt.to_state::text, 'pending')          AS state,
               tasker.compute_task_priority(t.priority, t.created_at,
                                            COALESCE(tt.created_at, t.created_at)) AS cp,
               t.created_at                                    AS created_at
        FROM tasker.tasks t
        JOIN tasker.named_tasks nt      ON nt.named_task_uuid = t.named_task_uuid
        JOIN tasker.task_namespaces tns ON tns.task_namespace_uuid = nt.task_namespace_uuid
        LEFT JOIN tasker.task_transitions tt ON tt.task_uuid = t.task_uuid AND tt.most_recent
        WHERE t.complete = false
          AND (tt.to_state IS NULL
               OR tt.to_state = 'pending'
               OR (tt.to_state = 'waiting_for_dependencies'
                   AND tt.created_at >= now() - make_interval(mins => p_max_waiting_for_dependencies_minutes))
               OR (tt.to_state = 'waiting_for_retry'
                   AND tt.created_at >= now() - make_interval(mins => p_max_waiting_for_retry_minutes)))
        ORDER BY cp DESC, t.created_at, t.task_uuid
    LOOP
        SELECT ctx.ready_steps, ctx.execution_status INTO v_ready, v_status
        FROM tasker.get_task_execution_context(r.uuid) AS ctx;

        CONTINUE WHEN r.state <> 'pending' AND v_status IS DISTINCT FROM 'has_ready_steps';
        CONTINUE WHEN NOT tasker.try_claim_task_row(r.uuid, r.state);

        task_uuid         := r.uuid;
        task_name         := r.task_name;
        priority          := r.priority;
        namespace_name    := r.namespace_name;
        ready_steps_count := COALESCE(v_ready, 0);
        computed_priority := r.cp;
        current_state     := r.state;
        RETURN NEXT;

        v_found := v_found + 1;
        EXIT WHEN v_found >= p_limit;
    END LOOP;
END;
$$;

COMMENT ON FUNCTION tasker.get_next_ready_tasks(integer, integer, integer) IS
'Up to p_limit tasks to drive, best computed_priority first: state pending, or waiting_for_dependencies (entered <= 60 min ago) / waiting_for_retry (<= 30 min) with execution_status has_ready_steps. Each returned task row is locked FOR NO KEY UPDATE SKIP LOCKED until the caller''s transaction ends (call it inside a transaction to keep the locks; the CAS transition is the real claim).';

CREATE FUNCTION tasker.get_task_ready_info(p_task_uuid uuid)
RETURNS TABLE (
    task_uuid         uuid,
    task_name         text,
    priority          integer,
    namespace_name    text,
    ready_steps_count bigint,
    computed_priority numeric,
    current_state     text
)
LANGUAGE sql STABLE
AS $$
    SELECT t.task_uuid,
           nt.name::text,
           t.priority,
           tns.name::text,
           COALESCE(ctx.ready_steps, 0),
           tasker.compute_task_priority(t.priority, t.created_at, COALESCE(tt.created_at, t.created_at)),
           COALESCE(tt.to_state::text, 'pending')
    FROM tasker.tasks t
    JOIN tasker.named_tasks nt      ON nt.named_task_uuid = t.named_task_uuid
    JOIN tasker.task_namespaces tns ON tns.task_namespace_uuid = nt.task_namespace_uuid
    LEFT JOIN tasker.task_transitions tt ON tt.task_uuid = t.task_uuid AND tt.most_recent
    LEFT JOIN LATERAL tasker.get_task_execution_context(t.task_uuid) AS ctx ON true
    WHERE t.task_uuid = p_task_uuid
$$;

COMMENT ON FUNCTION tasker.get_task_ready_info(uuid) IS
'The get_next_ready_tasks row for one task, whatever its state; no filtering, no locking.';

-- Re-driving tasks parked in blocked_by_failures or error (the readiness
-- poller only looks at pending and waiting states). When a step of such a
-- task changes state in a way that can unblock it (back to pending or
-- waiting_for_retry, complete, resolved_manually), a trigger records a
-- redrive request. get_tasks_needing_redrive returns the requested tasks
-- that now have something to do; the engine re-drives them (for example
-- error / blocked_by_failures -> pending, then the normal pickup path).
-- Scanning requests instead of all errored tasks keeps each poll
-- proportional to recent operator activity, not to history.
CREATE TABLE tasker.task_redrive_requests (
    task_uuid                     uuid        NOT NULL,
    requested_at                  timestamptz NOT NULL DEFAULT now(),
    workflow_step_transition_uuid uuid,
    CONSTRAINT task_redrive_requests_pkey PRIMARY KEY (task_uuid),
    CONSTRAINT task_redrive_requests_task_uuid_fkey
        FOREIGN KEY (task_uuid) REFERENCES tasker.tasks (task_uuid) ON DELETE CASCADE
);

COMMENT ON TABLE tasker.task_redrive_requests IS
'Tasks in blocked_by_failures/error whose steps changed since; filled by trigger trg_step_redrive_request, read and pruned by get_tasks_needing_redrive.';

CREATE FUNCTION tasker.record_redrive_request() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    INSERT INTO tasker.task_redrive_requests (task_uuid, workflow_step_transition_uuid)
    SELECT ws.task_uuid, NEW.workflow_step_transition_uuid
    FROM tasker.workflow_steps ws
    JOIN tasker.task_transitions tt ON tt.task_uuid = ws.task_uuid AND tt.most_recent
    WHERE ws.workflow_step_uuid = NEW.workflow_step_uuid
      AND tt.to_state IN ('blocked_by_failures', 'error')
    ON CONFLICT (task_uuid) DO UPDATE
        SET requested_at = now(),
            workflow_step_transition_uuid = EXCLUDED.workflow_step_transition_uuid;
    RETURN NULL;
END;
$$;

CREATE TRIGGER trg_step_redrive_request
    AFTER INSERT ON tasker.workflow_step_transitions
    FOR EACH ROW
    WHEN (NEW.to_state IN ('pending', 'waiting_for_retry', 'complete', 'resolved_manually'))
    EXECUTE FUNCTION tasker.record_redrive_request();

CREATE FUNCTION tasker.get_tasks_needing_redrive(p_limit integer DEFAULT 10)
RETURNS TABLE (
    task_uuid        uuid,
    current_state    text,
    execution_status text,
    ready_steps      bigint,
    state_entered_at timestamptz,
    requested_at     timestamptz
)
LANGUAGE plpgsql
AS $$
#variable_conflict use_column
DECLARE
    r        record;
    v_status text;
    v_ready  bigint;
    v_found  integer := 0;
BEGIN
    IF p_limit IS NULL OR p_limit <= 0 THEN
        RETURN;
    END IF;

    FOR r IN
        SELECT rq.task_uuid AS uuid, rq.requested_at AS requested,
               COALESCE(tt.to_state::text, 'pending') AS state, tt.created_at AS entered
        FROM tasker.task_redrive_requests rq
        LEFT JOIN tasker.task_transitions tt ON tt.task_uuid = rq.task_uuid AND tt.most_recent
        ORDER BY rq.requested_at, rq.task_uuid
    LOOP
        IF r.state NOT IN ('blocked_by_failures', 'error') THEN
            -- Already re-driven (or otherwise moved on): the request is done.
            DELETE FROM tasker.task_redrive_requests rq WHERE rq.task_uuid = r.uuid;
            CONTINUE;
        END IF;

        SELECT ctx.execution_status, ctx.ready_steps INTO v_status, v_ready
        FROM tasker.get_task_execution_context(r.uuid) AS ctx;

        IF v_status IS NULL OR v_status = 'blocked_by_failures' THEN
            -- Still a step in error; the next step change files a new request.
            DELETE FROM tasker.task_redrive_requests rq WHERE rq.task_uuid = r.uuid;
            CONTINUE;
        END IF;
        -- processing / waiting_for_dependencies: keep the request, look again later.
        CONTINUE WHEN v_status NOT IN ('has_ready_steps', 'all_complete');
        CONTINUE WHEN NOT tasker.try_claim_task_row(r.uuid, r.state);

        task_uuid        := r.uuid;
        current_state    := r.state;
        execution_status := v_status;
        ready_steps      := v_ready;
        state_entered_at := r.entered;
        requested_at     := r.requested;
        RETURN NEXT;

        v_found := v_found + 1;
        EXIT WHEN v_found >= p_limit;
    END LOOP;
END;
$$;

COMMENT ON FUNCTION tasker.get_tasks_needing_redrive(integer) IS
'Tasks in blocked_by_failures/error with a redrive request whose execution_status is now has_ready_steps or all_complete (no step in error). Oldest request first; each row locked FOR NO KEY UPDATE SKIP LOCKED. Requests are deleted once the task left blocked_by_failures/error, or while a step is still in error (a later step change re-files them); the function is idempotent until the engine transitions the task.';

-- Tasks sitting in an active (processor-owned) state for too long.
CREATE FUNCTION tasker.find_stuck_tasks(p_timeout_minutes integer DEFAULT 10)
RETURNS TABLE (
    task_uuid              uuid,
    current_state          text,
    processor_uuid         uuid,
    state_entered_at       timestamptz,
    stuck_duration_minutes integer
)
LANGUAGE sql STABLE
AS $$
    SELECT tt.task_uuid,
           tt.to_state::text,
           tt.processor_uuid,
           tt.created_at,
           floor(extract(epoch FROM now() - tt.created_at) / 60)::integer
    FROM tasker.task_transitions tt
    WHERE tt.most_recent
      AND tt.to_state IN ('initializing', 'enqueuing_steps', 'steps_in_process', 'evaluating_results')
      AND tt.created_at < now() - make_interval(mins => p_timeout_minutes)
    ORDER BY tt.created_at
$$;

COMMENT ON FUNCTION tasker.find_stuck_tasks(integer) IS
'Tasks in initializing / enqueuing_steps / steps_in_process / evaluating_results for longer than p_timeout_minutes; stuck_duration_minutes is whole minutes.';

-- ===========================================================================
-- DAG helpers
-- ===========================================================================
-- Edges must join two steps of the same task and must not close a cycle.
-- Edges of one task are created in the task's creation transaction, so the
-- check does not need to guard against concurrent inserters.
CREATE FUNCTION tasker.check_workflow_step_edge() RETURNS trigger
LANGUAGE plpgsql
AS $$
DECLARE
    v_from_task uuid;
    v_to_task   uuid;
BEGIN
    SELECT ws.task_uuid INTO v_from_task FROM tasker.workflow_steps ws
    WHERE ws.workflow_step_uuid = NEW.from_step_uuid;
    SELECT ws.task_uuid INTO v_to_task FROM tasker.workflow_steps ws
    WHERE ws.workflow_step_uuid = NEW.to_step_uuid;

    -- Missing steps are left to the foreign keys.
    IF v_from_task IS NOT NULL AND v_to_task IS NOT NULL AND v_from_task <> v_to_task THEN
        RAISE EXCEPTION 'edge % -> % joins steps of different tasks', NEW.from_step_uuid, NEW.to_step_uuid
            USING ERRCODE = 'check_violation';
    END IF;

    IF EXISTS (
        WITH RECURSIVE below(step_uuid) AS (
            SELECT NEW.to_step_uuid
            UNION
            SELECT e.to_step_uuid
            FROM below b
            JOIN tasker.workflow_step_edges e ON e.from_step_uuid = b.step_uuid
        )
        SELECT 1 FROM below WHERE below.step_uuid = NEW.from_step_uuid
    ) THEN
        RAISE EXCEPTION 'edge % -> % would create a dependency cycle', NEW.from_step_uuid, NEW.to_step_uuid
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER trg_workflow_step_edges_check
    BEFORE INSERT OR UPDATE OF from_step_uuid, to_step_uuid ON tasker.workflow_step_edges
    FOR EACH ROW EXECUTE FUNCTION tasker.check_workflow_step_edge();

-- Longest path from a root (level 0) to each step.
CREATE FUNCTION tasker.calculate_dependency_levels(p_task_uuid uuid)
RETURNS TABLE (workflow_step_uuid uuid, dependency_level integer)
LANGUAGE sql STABLE
AS $$
    WITH RECURSIVE levels(step_uuid, level) AS (
        SELECT ws.workflow_step_uuid, 0
        FROM tasker.workflow_steps ws
        WHERE ws.task_uuid = p_task_uuid
          AND NOT EXISTS (SELECT 1 FROM tasker.workflow_step_edges e
                          WHERE e.to_step_uuid = ws.workflow_step_uuid)
        UNION
        SELECT e.to_step_uuid, l.level + 1
        FROM levels l
        JOIN tasker.workflow_step_edges e ON e.from_step_uuid = l.step_uuid
        WHERE l.level < 10000
    )
    SELECT l.step_uuid, max(l.level)
    FROM levels l
    GROUP BY l.step_uuid
    ORDER BY max(l.level), l.step_uuid
$$;

COMMENT ON FUNCTION tasker.calculate_dependency_levels(uuid) IS
'Dependency level of each step of a task: 0 for roots, else the length of the longest path from a root.';

-- All ancestors of a step, each once, at its shortest distance (<= 50).
CREATE FUNCTION tasker.get_step_transitive_dependencies(p_step_uuid uuid)
RETURNS TABLE (
    workflow_step_uuid uuid,
    task_uuid          uuid,
    named_step_uuid    uuid,
    step_name          text,
    results            jsonb,
    processed          boolean,
    distance           integer,
    current_state      text
)
LANGUAGE sql STABLE
AS $$
    WITH RECURSIVE up(step_uuid, distance) AS (
        SELECT e.from_step_uuid, 1
        FROM tasker.workflow_step_edges e
        WHERE e.to_step_uuid = p_step_uuid
        UNION
        SELECT e.from_step_uuid, u.distance + 1
        FROM up u
        JOIN tasker.workflow_step_edges e ON e.to_step_uuid = u.step_uuid
        WHERE u.distance < 50
    ),
    nearest AS (
        SELECT u.step_uuid, min(u.distance) AS distance
        FROM up u
        GROUP BY u.step_uuid
    )
    SELECT ws.workflow_step_uuid,
           ws.task_uuid,
           ws.named_step_uuid,
           ns.name::text,
           ws.results,
           ws.processed,
           n.distance,
           COALESCE(st.to_state::text, 'pending')
    FROM nearest n
    JOIN tasker.workflow_steps ws ON ws.workflow_step_uuid = n.step_uuid
    JOIN tasker.named_steps ns    ON ns.named_step_uuid = ws.named_step_uuid
    LEFT JOIN tasker.workflow_step_transitions st
           ON st.workflow_step_uuid = ws.workflow_step_uuid AND st.most_recent
    ORDER BY n.distance, ws.workflow_step_uuid
$$;

COMMENT ON FUNCTION tasker.get_step_transitive_dependencies(uuid) IS
'Every ancestor of a step once, with name, results, processed, current state and shortest distance (1 = direct parent, at most 50). Used by workers to build handler input.';

-- Per-step DAG facts; computed per row, so filtering by task_uuid is cheap.
CREATE VIEW tasker.step_dag_relationships AS
SELECT ws.workflow_step_uuid,
       ws.task_uuid,
       ws.named_step_uuid,
       par.uuids                 AS parent_step_uuids,
       chi.uuids                 AS child_step_uuids,
       par.n                     AS parent_count,
       chi.n                     AS child_count,
       par.n = 0                 AS is_root_step,
       chi.n = 0                 AS is_leaf_step,
       depth.min_depth_from_root AS min_depth_from_root
FROM tasker.workflow_steps ws
CROSS JOIN LATERAL (
    SELECT COALESCE(jsonb_agg(e.from_step_uuid ORDER BY e.from_step_uuid), '[]'::jsonb) AS uuids,
           count(*) AS n
    FROM tasker.workflow_step_edges e
    WHERE e.to_step_uuid = ws.workflow_step_uuid
) AS par
CROSS JOIN LATERAL (
    SELECT COALESCE(jsonb_agg(e.to_step_uuid ORDER BY e.to_step_uuid), '[]'::jsonb) AS uuids,
           count(*) AS n
    FROM tasker.workflow_step_edges e
    WHERE e.from_step_uuid = ws.workflow_step_uuid
) AS chi
CROSS JOIN LATERAL (
    WITH RECURSIVE up(step_uuid, dist) AS (
        SELECT ws.workflow_step_uuid, 0
        UNION
        SELECT e.from_step_uuid, u.dist + 1
        FROM up u
        JOIN tasker.workflow_step_edges e ON e.to_step_uuid = u.step_uuid
        WHERE u.dist < 50
    )
    SELECT min(u.dist) AS min_depth_from_root
    FROM up u
    WHERE NOT EXISTS (SELECT 1 FROM tasker.workflow_step_edges e2 WHERE e2.to_step_uuid = u.step_uuid)
) AS depth;

COMMENT ON VIEW tasker.step_dag_relationships IS
'Per step: parent and child uuids (JSON arrays), counts, root/leaf flags, and the shortest distance to a root (0 for roots).';

-- ===========================================================================
-- System health counts (the 24 SystemHealthCounts fields)
-- ===========================================================================
CREATE FUNCTION tasker.get_system_health_counts()
RETURNS TABLE (
    pending_tasks                            bigint,
    initializing_tasks                       bigint,
    enqueuing_steps_tasks                    bigint,
    steps_in_process_tasks                   bigint,
    evaluating_results_tasks                 bigint,
    waiting_for_dependencies_tasks           bigint,
    waiting_for_retry_tasks                  bigint,
    blocked_by_failures_tasks                bigint,
    complete_tasks                           bigint,
    error_tasks                              bigint,
    cancelled_tasks                          bigint,
    resolved_manually_tasks                  bigint,
    total_tasks                              bigint,
    pending_steps                            bigint,
    enqueued_steps                           bigint,
    in_progress_steps                        bigint,
    enqueued_for_orchestration_steps         bigint,
    enqueued_as_error_for_orchestration_steps bigint,
    waiting_for_retry_steps                  bigint,
    complete_steps                           bigint,
    error_steps                              bigint,
    cancelled_steps                          bigint,
    resolved_manually_steps                  bigint,
    total_steps                              bigint
)
LANGUAGE sql STABLE
AS $$
    WITH ts AS (
        SELECT COALESCE(tt.to_state::text, 'pending') AS s
        FROM tasker.tasks t
        LEFT JOIN tasker.task_transitions tt ON tt.task_uuid = t.task_uuid AND tt.most_recent
    ),
    ss AS (
        SELECT COALESCE(st.to_state::text, 'pending') AS s
        FROM tasker.workflow_steps ws
        LEFT JOIN tasker.workflow_step_transitions st
               ON st.workflow_step_uuid = ws.workflow_step_uuid AND st.most_recent
    ),
    tc AS (
        SELECT count(*) FILTER (WHERE s = 'pending')                  AS pending,
               count(*) FILTER (WHERE s = 'initializing')             AS initializing,
               count(*) FILTER (WHERE s = 'enqueuing_steps')          AS enqueuing_steps,
               count(*) FILTER (WHERE s = 'steps_in_process')         AS steps_in_process,
               count(*) FILTER (WHERE s = 'evaluating_results')       AS evaluating_results,
               count(*) FILTER (WHERE s = 'waiting_for_dependencies') AS waiting_for_dependencies,
               count(*) FILTER (WHERE s = 'waiting_for_retry')        AS waiting_for_retry,
               count(*) FILTER (WHERE s = 'blocked_by_failures')      AS blocked_by_failures,
               count(*) FILTER (WHERE s = 'complete')                 AS complete,
               count(*) FILTER (WHERE s = 'error')                    AS error,
               count(*) FILTER (WHERE s = 'cancelled')                AS cancelled,
               count(*) FILTER (WHERE s = 'resolved_manually')        AS resolved_manually,
               count(*)                                               AS total
        FROM ts
    ),
    sc AS (
        SELECT count(*) FILTER (WHERE s = 'pending')                             AS pending,
               count(*) FILTER (WHERE s = 'enqueued')                            AS enqueued,
               count(*) FILTER (WHERE s = 'in_progress')                         AS in_progress,
               count(*) FILTER (WHERE s = 'enqueued_for_orchestration')          AS enqueued_for_orchestration,
               count(*) FILTER (WHERE s = 'enqueued_as_error_for_orchestration') AS enqueued_as_error_for_orchestration,
               count(*) FILTER (WHERE s = 'waiting_for_retry')                   AS waiting_for_retry,
               count(*) FILTER (WHERE s = 'complete')                            AS complete,
               count(*) FILTER (WHERE s = 'error')                               AS error,
               count(*) FILTER (WHERE s = 'cancelled')                           AS cancelled,
               count(*) FILTER (WHERE s = 'resolved_manually')                   AS resolved_manually,
               count(*)                                                          AS total
        FROM ss
    )
    SELECT tc.pending, tc.initializing, tc.enqueuing_steps, tc.steps_in_process,
           tc.evaluating_results, tc.waiting_for_dependencies, tc.waiting_for_retry,
           tc.blocked_by_failures, tc.complete, tc.error, tc.cancelled, tc.resolved_manually,
           tc.total,
           sc.pending, sc.enqueued, sc.in_progress, sc.enqueued_for_orchestration,
           sc.enqueued_as_error_for_orchestration, sc.waiting_for_retry, sc.complete,
           sc.error, sc.cancelled, sc.resolved_manually, sc.total
    FROM tc CROSS JOIN sc
$$;

COMMENT ON FUNCTION tasker.get_system_health_counts() IS
'One row: task count per current state (12), total tasks, step count per current state (10), total steps. Entities without transition rows count as pending. Counts over all rows ever (no time window).';

-- ===========================================================================
-- Step result audit
-- ===========================================================================
-- The step execution result the worker stored in metadata.event: either the
-- result object itself (it has "success"), or an object wrapping it under a
-- single key (a serialized event enum). The event may be a JSON object or a
-- string holding serialized JSON.
CREATE FUNCTION tasker.step_result_from_event(p_event jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE
        WHEN jsonb_typeof(p_event) <> 'object' THEN NULL
        WHEN p_event ? 'success' THEN p_event
        WHEN (SELECT count(*) FROM jsonb_object_keys(p_event)) = 1 THEN
            (SELECT v.value FROM jsonb_each(p_event) AS v
             WHERE jsonb_typeof(v.value) = 'object' AND v.value ? 'success')
    END
$$;

CREATE FUNCTION tasker.create_step_result_audit() RETURNS trigger
LANGUAGE plpgsql
AS $$
DECLARE
    v_task_uuid uuid;
    v_event     jsonb;
    v_result    jsonb;
    v_success   boolean;
BEGIN
    SELECT ws.task_uuid INTO v_task_uuid
    FROM tasker.workflow_steps ws
    WHERE ws.workflow_step_uuid = NEW.workflow_step_uuid;

    v_event := NEW.metadata -> 'event';
    IF jsonb_typeof(v_event) = 'string' THEN
        BEGIN
            v_event := (v_event #>> '{}')::jsonb;
        EXCEPTION WHEN invalid_text_representation THEN
            v_event := NULL;
        END;
    END IF;
    v_result := tasker.step_result_from_event(v_event);

    v_success := CASE WHEN v_result ->> 'success' IN ('true', 'false')
                      THEN (v_result ->> 'success')::boolean END;

    INSERT INTO tasker.workflow_step_result_audit
        (workflow_step_uuid, workflow_step_transition_uuid, task_uuid,
         worker_uuid, correlation_id, success, execution_time_ms)
    VALUES
        (NEW.workflow_step_uuid, NEW.workflow_step_transition_uuid, v_task_uuid,
         tasker.try_parse_uuid(NEW.metadata ->> 'worker_uuid'),
         tasker.try_parse_uuid(NEW.metadata ->> 'correlation_id'),
         COALESCE(v_success, NEW.to_state = 'enqueued_for_orchestration'),
         tasker.try_parse_bigint(v_result -> 'metadata' ->> 'execution_time_ms'))
    ON CONFLICT ON CONSTRAINT uq_audit_step_transition DO NOTHING;

    RETURN NULL;
END;
$$;

COMMENT ON FUNCTION tasker.create_step_result_audit() IS
'AFTER INSERT trigger on workflow_step_transitions for worker results: worker_uuid and correlation_id from metadata, success and metadata.execution_time_ms from the result in metadata.event; success falls back to (to_state = enqueued_for_orchestration).';

CREATE TRIGGER trg_step_result_audit
    AFTER INSERT ON tasker.workflow_step_transitions
    FOR EACH ROW
    WHEN (NEW.to_state IN ('enqueued_for_orchestration', 'enqueued_as_error_for_orchestration'))
    EXECUTE FUNCTION tasker.create_step_result_audit();

-- 0005_dlq.sql -- dead letter queue: staleness thresholds, analysis views,
-- DLQ entry creation and update, the staleness detector.
--
-- The DLQ is an investigation log, not a queue: tasks stay in tasker.tasks
-- (the detector moves a stale task to state error) and an entry records why
-- and what was done about it. Operators fix steps through the step
-- functions, then close the entry (update_dlq_investigation). The table
-- tasker.tasks_dlq, its indexes (including the one-pending-entry-per-task
-- unique index) and its updated_at trigger come from 0001/0002.
--
-- Minutes are wall-clock minutes: numeric (fractional) in
-- v_task_state_analysis, whole minutes (rounded down) where a column is
-- an integer.

-- ===========================================================================
-- Thresholds
-- ===========================================================================
-- A positive whole number of minutes from configuration->'lifecycle'->key
-- (number or numeric string), else NULL.
CREATE FUNCTION tasker.lifecycle_minutes(p_template_config jsonb, p_key text) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE WHEN v BETWEEN 1 AND 2147483647 THEN v::integer END
    FROM (SELECT tasker.try_parse_bigint(p_template_config -> 'lifecycle' ->> p_key) AS v) AS parsed
$$;

CREATE FUNCTION tasker.calculate_staleness_threshold(
    p_task_state            text,
    p_template_config       jsonb,
    p_default_waiting_deps  integer DEFAULT 60,
    p_default_waiting_retry integer DEFAULT 30,
    p_default_steps_process integer DEFAULT 30
) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE p_task_state
        WHEN 'waiting_for_dependencies' THEN
            COALESCE(tasker.lifecycle_minutes(p_template_config, 'max_waiting_for_dependencies_minutes'),
                     p_default_waiting_deps)
        WHEN 'waiting_for_retry' THEN
            COALESCE(tasker.lifecycle_minutes(p_template_config, 'max_waiting_for_retry_minutes'),
                     p_default_waiting_retry)
        WHEN 'steps_in_process' THEN
            COALESCE(tasker.lifecycle_minutes(p_template_config, 'max_steps_in_process_minutes'),
                     p_default_steps_process)
        ELSE 1440
    END
$$;

COMMENT ON FUNCTION tasker.calculate_staleness_threshold(text, jsonb, integer, integer, integer) IS
'Staleness threshold in minutes for a task state: the template override configuration.lifecycle.max_waiting_for_dependencies_minutes / max_waiting_for_retry_minutes / max_steps_in_process_minutes (positive integers; anything else is ignored), else the given default (60 / 30 / 30); 1440 for every other state.';

-- ===========================================================================
-- Views
-- ===========================================================================
-- Incomplete tasks with their current state. Tasks without any transition
-- row (implicitly pending, only during creation) are not listed; the inner
-- join lets state filters use the most_recent state index.
CREATE VIEW tasker.v_task_state_analysis AS
SELECT t.task_uuid,
       t.correlation_id,
       tns.name::text                                      AS namespace_name,
       tns.task_namespace_uuid                             AS namespace_uuid,
       nt.name::text                                       AS task_name,
       nt.version::text                                    AS task_version,
       nt.named_task_uuid,
       nt.configuration                                    AS template_config,
       tt.to_state::text                                   AS current_state,
       tt.created_at                                       AS state_entered_at,
       extract(epoch FROM now() - tt.created_at) / 60      AS time_in_state_minutes,
       extract(epoch FROM now() - t.created_at) / 60       AS task_age_minutes,
       t.priority,
       t.complete
FROM tasker.tasks t
JOIN tasker.named_tasks nt      ON nt.named_task_uuid = t.named_task_uuid
JOIN tasker.task_namespaces tns ON tns.task_namespace_uuid = nt.task_namespace_uuid
JOIN tasker.task_transitions tt ON tt.task_uuid = t.task_uuid AND tt.most_recent
WHERE t.complete = false;

COMMENT ON VIEW tasker.v_task_state_analysis IS
'Incomplete tasks (complete = false) with namespace, template, template configuration, current state, state_entered_at, time_in_state_minutes and task_age_minutes (numeric, fractional minutes).';

CREATE VIEW tasker.v_task_staleness_monitoring AS
SELECT a.task_uuid,
       a.namespace_name,
       a.task_name,
       a.current_state,
       floor(a.time_in_state_minutes)::integer AS time_in_state_minutes,
       floor(a.task_age_minutes)::integer      AS task_age_minutes,
       th.minutes                              AS staleness_threshold_minutes,
       CASE WHEN a.time_in_state_minutes >= th.minutes       THEN 'stale'
            WHEN a.time_in_state_minutes >= th.minutes * 0.8 THEN 'warning'
            ELSE 'healthy' END                 AS health_status,
       a.priority
FROM tasker.v_task_state_analysis a
CROSS JOIN LATERAL (
    SELECT tasker.calculate_staleness_threshold(a.current_state, a.template_config, 60, 30, 30) AS minutes
) AS th
WHERE a.current_state IN ('waiting_for_dependencies', 'waiting_for_retry', 'steps_in_process');

COMMENT ON VIEW tasker.v_task_staleness_monitoring IS
'Tasks in waiting_for_dependencies / waiting_for_retry / steps_in_process with their threshold (defaults 60/30/30 min, template overrides applied) and health_status: stale (>= threshold), warning (>= 80 %), healthy. Minutes are whole minutes. Order by time_in_state_minutes DESC for a dashboard.';

CREATE VIEW tasker.v_dlq_investigation_queue AS
SELECT d.dlq_entry_uuid,
       d.task_uuid,
       d.original_state,
       d.dlq_reason,
       d.dlq_timestamp,
       m.minutes_in_dlq,
       d.task_snapshot ->> 'namespace'                                          AS namespace_name,
       d.task_snapshot ->> 'task_name'                                          AS task_name,
       d.task_snapshot ->> 'current_state'                                      AS current_state,
       tasker.try_parse_bigint(d.metadata ->> 'time_in_state_minutes')::integer AS time_in_state_minutes,
       CASE d.dlq_reason
           WHEN 'dependency_cycle_detected' THEN 1000
           WHEN 'max_retries_exceeded'      THEN 500
           WHEN 'staleness_timeout'         THEN 100
           WHEN 'worker_unavailable'        THEN 50
           ELSE 10
       END + m.minutes_in_dlq                                                   AS priority_score
FROM tasker.tasks_dlq d
CROSS JOIN LATERAL (
    SELECT (extract(epoch FROM now() - d.dlq_timestamp) / 60)::double precision AS minutes_in_dlq
) AS m
WHERE d.resolution_status = 'pending';

COMMENT ON VIEW tasker.v_dlq_investigation_queue IS
'Pending DLQ entries with priority_score = base(reason) + minutes in the DLQ; base: dependency_cycle_detected 1000, max_retries_exceeded 500, staleness_timeout 100, worker_unavailable 50, other 10. namespace/task/state come from the snapshot, time_in_state_minutes from metadata. Order by priority_score DESC.';

CREATE VIEW tasker.v_dlq_dashboard AS
SELECT d.dlq_reason,
       count(*)                                                              AS total_entries,
       count(*) FILTER (WHERE d.resolution_status = 'pending')               AS pending,
       count(*) FILTER (WHERE d.resolution_status = 'manually_resolved')     AS manually_resolved,
       count(*) FILTER (WHERE d.resolution_status = 'permanently_failed')    AS permanent_failures,
       count(*) FILTER (WHERE d.resolution_status = 'cancelled')             AS cancelled,
       min(d.dlq_timestamp)                                                  AS oldest_entry,
       max(d.dlq_timestamp)                                                  AS newest_entry,
       avg(extract(epoch FROM COALESCE(d.resolution_timestamp, now()) - d.dlq_timestamp) / 60)::double precision
                                                                             AS avg_resolution_time_minutes
FROM tasker.tasks_dlq d
GROUP BY d.dlq_reason;

COMMENT ON VIEW tasker.v_dlq_dashboard IS
'Per DLQ reason: entry counts in total and per resolution status, oldest/newest dlq_timestamp, and the mean minutes from dlq_timestamp to resolution_timestamp (now() for unresolved entries).';

-- ===========================================================================
-- Entries
-- ===========================================================================
CREATE FUNCTION tasker.create_dlq_entry(
    p_task_uuid         uuid,
    p_dlq_reason        tasker.dlq_reason DEFAULT 'staleness_timeout',
    p_threshold_minutes integer           DEFAULT NULL,
    p_metadata          jsonb             DEFAULT NULL
) RETURNS uuid
LANGUAGE plpgsql
AS $$
DECLARE
    v_task    record;
    v_minutes integer;
    v_uuid    uuid;
BEGIN
    SELECT t.task_uuid, t.correlation_id, t.priority, t.requested_at, t.created_at,
           tns.name::text AS namespace_name, nt.name::text AS task_name,
           COALESCE(tt.to_state::text, 'pending') AS state,
           COALESCE(tt.created_at, t.created_at) AS entered
    INTO v_task
    FROM tasker.tasks t
    JOIN tasker.named_tasks nt      ON nt.named_task_uuid = t.named_task_uuid
    JOIN tasker.task_namespaces tns ON tns.task_namespace_uuid = nt.task_namespace_uuid
    LEFT JOIN tasker.task_transitions tt ON tt.task_uuid = t.task_uuid AND tt.most_recent
    WHERE t.task_uuid = p_task_uuid;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'task % does not exist', p_task_uuid USING ERRCODE = 'no_data_found';
    END IF;

    v_minutes := floor(extract(epoch FROM now() - v_task.entered) / 60)::integer;

    INSERT INTO tasker.tasks_dlq (task_uuid, original_state, dlq_reason, task_snapshot, metadata)
    VALUES (
        p_task_uuid,
        v_task.state,
        p_dlq_reason,
        jsonb_build_object(
            'task_uuid',             v_task.task_uuid,
            'namespace',             v_task.namespace_name,
            'task_name',             v_task.task_name,
            'current_state',         v_task.state,
            'time_in_state_minutes', v_minutes,
            'threshold_minutes',     p_threshold_minutes,
            'snapshot_timestamp',    now(),
            'task_details', jsonb_build_object(
                'correlation_id', v_task.correlation_id,
                'priority',       v_task.priority,
                'requested_at',   v_task.requested_at,
                'created_at',     v_task.created_at)),
        jsonb_build_object(
            'detection_method', CASE p_dlq_reason
                                    WHEN 'staleness_timeout' THEN 'automatic_staleness'
                                    WHEN 'manual_dlq' THEN 'manual'
                                    ELSE 'engine' END,
            'time_in_state_minutes', v_minutes,
            'threshold_minutes',     p_threshold_minutes) || COALESCE(p_metadata, '{}'::jsonb)
    )
    ON CONFLICT (task_uuid) WHERE resolution_status = 'pending' DO NOTHING
    RETURNING dlq_entry_uuid INTO v_uuid;

    RETURN v_uuid;
END;
$$;

COMMENT ON FUNCTION tasker.create_dlq_entry(uuid, tasker.dlq_reason, integer, jsonb) IS
'Opens a DLQ entry for a task with a snapshot {task_uuid, namespace, task_name, current_state, time_in_state_minutes, threshold_minutes, snapshot_timestamp, task_details{correlation_id, priority, requested_at, created_at}} and metadata {detection_method, time_in_state_minutes, threshold_minutes} merged with p_metadata. Returns the entry uuid, or NULL when the task already has a pending entry (nothing written). Raises P0002 for an unknown task.';

CREATE FUNCTION tasker.update_dlq_investigation(
    p_dlq_entry_uuid    uuid,
    p_resolution_status tasker.dlq_resolution_status DEFAULT NULL,
    p_resolution_notes  text  DEFAULT NULL,
    p_resolved_by       text  DEFAULT NULL,
    p_metadata          jsonb DEFAULT NULL
) RETURNS boolean
LANGUAGE plpgsql
AS $$
BEGIN
    UPDATE tasker.tasks_dlq d
    SET resolution_status    = COALESCE(p_resolution_status, d.resolution_status),
        resolution_notes     = COALESCE(p_resolution_notes, d.resolution_notes),
        resolved_by          = COALESCE(p_resolved_by, d.resolved_by),
        metadata             = COALESCE(p_metadata, d.metadata),
        resolution_timestamp = CASE WHEN p_resolution_status IS NOT NULL THEN now()
                                    ELSE d.resolution_timestamp END
    WHERE d.dlq_entry_uuid = p_dlq_entry_uuid;
    RETURN FOUND;
END;
$$;

COMMENT ON FUNCTION tasker.update_dlq_investigation(uuid, tasker.dlq_resolution_status, text, text, jsonb) IS
'Overwrites each non-NULL field; a supplied status also sets resolution_timestamp = now(); updated_at by trigger. False if the entry does not exist. Re-opening (status pending) while the task has another pending entry raises unique_violation.';

-- ===========================================================================
-- Staleness detection
-- ===========================================================================
CREATE FUNCTION tasker.get_stale_tasks_for_dlq(
    p_default_waiting_deps  integer DEFAULT 60,
    p_default_waiting_retry integer DEFAULT 30,
    p_default_steps_process integer DEFAULT 30,
    p_max_lifetime_hours    integer DEFAULT 24,
    p_batch_size            integer DEFAULT 100
) RETURNS TABLE (
    task_uuid             uuid,
    namespace_name        text,
    task_name             text,
    current_state         text,
    time_in_state_minutes numeric,
    threshold_minutes     integer,
    task_age_minutes      numeric
)
LANGUAGE sql STABLE
AS $$
    SELECT a.task_uuid, a.namespace_name, a.task_name, a.current_state,
           a.time_in_state_minutes, th.minutes, a.task_age_minutes
    FROM tasker.v_task_state_analysis a
    CROSS JOIN LATERAL (
        SELECT tasker.calculate_staleness_threshold(a.current_state, a.template_config,
                   p_default_waiting_deps, p_default_waiting_retry, p_default_steps_process) AS minutes
    ) AS th
    WHERE a.current_state IN ('waiting_for_dependencies', 'waiting_for_retry', 'steps_in_process')
      AND NOT EXISTS (SELECT 1 FROM tasker.tasks_dlq d
                      WHERE d.task_uuid = a.task_uuid AND d.resolution_status = 'pending')
      AND (a.time_in_state_minutes >= th.minutes
           OR a.task_age_minutes >= p_max_lifetime_hours * 60)
    ORDER BY a.time_in_state_minutes DESC, a.task_uuid
    LIMIT p_batch_size
$$;

COMMENT ON FUNCTION tasker.get_stale_tasks_for_dlq(integer, integer, integer, integer, integer) IS
'Stale-task candidates: state waiting_for_dependencies / waiting_for_retry / steps_in_process, no pending DLQ entry, and minutes in state >= threshold or task age >= p_max_lifetime_hours. Longest in state first.';

CREATE FUNCTION tasker.detect_and_transition_stale_tasks(
    p_dry_run                            boolean DEFAULT true,
    p_batch_size                         integer DEFAULT 100,
    p_default_waiting_deps_threshold     integer DEFAULT 60,
    p_default_waiting_retry_threshold    integer DEFAULT 30,
    p_default_steps_in_process_threshold integer DEFAULT 30,
    p_default_task_max_lifetime_hours    integer DEFAULT 24
) RETURNS TABLE (
    task_uuid                   uuid,
    namespace_name              text,
    task_name                   text,
    current_state               text,
    time_in_state_minutes       integer,
    staleness_threshold_minutes integer,
    action_taken                text,
    moved_to_dlq                boolean,
    transition_success          boolean
)
LANGUAGE plpgsql
AS $$
#variable_conflict use_column
DECLARE
    r       record;
    v_entry uuid;
    v_ok    boolean;
BEGIN
    FOR r IN
        SELECT * FROM tasker.get_stale_tasks_for_dlq(
            p_default_waiting_deps_threshold, p_default_waiting_retry_threshold,
            p_default_steps_in_process_threshold, p_default_task_max_lifetime_hours,
            p_batch_size) AS s
    LOOP
        task_uuid                   := r.task_uuid;
        namespace_name              := r.namespace_name;
        task_name                   := r.task_name;
        current_state               := r.current_state;
        time_in_state_minutes       := floor(r.time_in_state_minutes)::integer;
        staleness_threshold_minutes := r.threshold_minutes;

        IF p_dry_run THEN
            action_taken       := 'would_transition_to_dlq_and_error';
            moved_to_dlq       := false;
            transition_success := false;
            RETURN NEXT;
            CONTINUE;
        END IF;

        -- Another detector or an engine thread holds the task, or its state
        -- moved on since discovery: not stale in that state any more, skip.
        CONTINUE WHEN NOT tasker.try_claim_task_row(r.task_uuid, r.current_state);

        v_entry := tasker.create_dlq_entry(r.task_uuid, 'staleness_timeout', r.threshold_minutes);
        v_ok := tasker.transition_task_state_atomic(
            r.task_uuid, r.current_state, 'error', NULL,
            jsonb_build_object(
                'reason',                'staleness_timeout',
                'namespace',             r.namespace_name,
                'task_name',             r.task_name,
                'detected_at',           now(),
                'time_in_state_minutes', floor(r.time_in_state_minutes)::integer,
                'threshold_minutes',     r.threshold_minutes,
                'dlq_entry_uuid',        v_entry));

        action_taken := CASE
            WHEN v_entry IS NOT NULL AND v_ok THEN 'transitioned_to_dlq_and_error'
            WHEN v_entry IS NOT NULL          THEN 'moved_to_dlq_only'
            WHEN v_ok                         THEN 'transitioned_to_error_only'
            ELSE 'transition_failed'
        END;
        moved_to_dlq       := v_entry IS NOT NULL;
        transition_success := v_ok;
        RETURN NEXT;
    END LOOP;
END;
$$;

COMMENT ON FUNCTION tasker.detect_and_transition_stale_tasks(boolean, integer, integer, integer, integer, integer) IS
'Staleness detector. For each candidate of get_stale_tasks_for_dlq (at most p_batch_size): in dry run report action would_transition_to_dlq_and_error and change nothing; otherwise lock the task (SKIP LOCKED; tasks locked elsewhere or no longer in the candidate state are skipped), open a staleness_timeout DLQ entry and CAS the task to error. action_taken: transitioned_to_dlq_and_error | moved_to_dlq_only | transitioned_to_error_only | transition_failed. time_in_state_minutes is whole minutes.';

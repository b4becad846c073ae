-- 0006_analytics.sql -- performance metrics and bottleneck analysis.
--
-- Units, stated once here and in each function's COMMENT:
--   *_rate in get_analytics_metrics          percent, 0-100, 2 decimals
--   error_rate in get_slowest_*_aggregated   ratio, 0-1, 4 decimals
--   system_health_score                      ratio, 0-1, 3 decimals
--   *_duration_seconds                       seconds, 3 decimals
--   tasks_in_window / steps_in_window        counts of rows created in the window
--   tasks_per_hour / steps_per_hour          those counts divided by the window length in hours
-- The window is [p_since, now()); p_since NULL means the last 24 hours.
-- Task outcomes are read from the task's own current state (complete,
-- error), not inferred from step states.

CREATE FUNCTION tasker.get_analytics_metrics(p_since timestamptz DEFAULT NULL)
RETURNS TABLE (
    active_tasks_count        bigint,
    total_namespaces_count    bigint,
    unique_task_types_count   bigint,
    system_health_score       numeric,
    tasks_in_window           bigint,
    completion_count          bigint,
    error_count               bigint,
    completion_rate           numeric,
    error_rate                numeric,
    avg_task_duration_seconds numeric,
    avg_step_duration_seconds numeric,
    steps_in_window           bigint,
    window_hours              numeric,
    tasks_per_hour            numeric,
    steps_per_hour            numeric,
    analysis_period_start     timestamptz,
    calculated_at             timestamptz
)
LANGUAGE sql STABLE
AS $$
    WITH win AS (
        SELECT COALESCE(p_since, now() - interval '24 hours') AS since,
               extract(epoch FROM now() - COALESCE(p_since, now() - interval '24 hours')) / 3600 AS hours
    ),
    task_state AS (
        SELECT t.task_uuid, t.named_task_uuid, t.created_at, t.completed_at,
               COALESCE(tt.to_state::text, 'pending') AS state,
               CASE WHEN tt.to_state = 'complete' THEN tt.created_at END AS completed_transition_at
        FROM tasker.tasks t
        LEFT JOIN tasker.task_transitions tt ON tt.task_uuid = t.task_uuid AND tt.most_recent
    ),
    overall AS (
        SELECT count(*) FILTER (WHERE NOT tasker.task_state_is_terminal(ts.state)) AS active,
               count(DISTINCT ts.named_task_uuid)                                  AS task_types
        FROM task_state ts
    ),
    namespaces AS (
        SELECT count(DISTINCT nt.task_namespace_uuid) AS n
        FROM tasker.named_tasks nt
        WHERE EXISTS (SELECT 1 FROM tasker.tasks t WHERE t.named_task_uuid = nt.named_task_uuid)
    ),
    last_hour AS (
        SELECT count(*) FILTER (WHERE ts.state = 'complete') AS completed,
               count(*) FILTER (WHERE ts.state = 'error')    AS errored
        FROM task_state ts
        WHERE ts.created_at >= now() - interval '1 hour'
    ),
    period AS (
        SELECT count(*)                                     AS tasks,
               count(*) FILTER (WHERE ts.state = 'complete') AS completed,
               count(*) FILTER (WHERE ts.state = 'error')    AS errored,
               avg(extract(epoch FROM COALESCE(ts.completed_at, ts.completed_transition_at) - ts.created_at))
                   FILTER (WHERE ts.state = 'complete')     AS avg_task_seconds
        FROM task_state ts, win
        WHERE ts.created_at >= win.since
    ),
    step_period AS (
        SELECT count(*) AS steps,
               avg(extract(epoch FROM st.created_at - ws.created_at))
                   FILTER (WHERE st.to_state = 'complete') AS avg_step_seconds
        FROM tasker.workflow_steps ws
        CROSS JOIN win
        LEFT JOIN tasker.workflow_step_transitions st
               ON st.workflow_step_uuid = ws.workflow_step_uuid AND st.most_recent
        WHERE ws.created_at >= win.since
    )
    SELECT overall.active,
           namespaces.n,
           overall.task_types,
           CASE WHEN last_hour.completed + last_hour.errored > 0
                THEN round(last_hour.completed::numeric / (last_hour.completed + last_hour.errored), 3)
                ELSE 1.000 END,
           period.tasks,
           period.completed,
           period.errored,
           CASE WHEN period.tasks > 0 THEN round(period.completed * 100.0 / period.tasks, 2) ELSE 0.00 END,
           CASE WHEN period.tasks > 0 THEN round(period.errored * 100.0 / period.tasks, 2) ELSE 0.00 END,
           round(COALESCE(period.avg_task_seconds, 0), 3),
           round(COALESCE(step_period.avg_step_seconds, 0), 3),
           step_period.steps,
           round(win.hours, 4),
           CASE WHEN win.hours > 0 THEN round(period.tasks / win.hours, 2) END,
           CASE WHEN win.hours > 0 THEN round(step_period.steps / win.hours, 2) END,
           win.since,
           now()
    FROM win, overall, namespaces, last_hour, period, step_period
$$;

COMMENT ON FUNCTION tasker.get_analytics_metrics(timestamptz) IS
'Performance metrics for tasks created in [p_since, now()) (default: last 24 h). active_tasks_count: tasks (all time) in a non-terminal state. total_namespaces_count / unique_task_types_count: namespaces / named task versions that have tasks. system_health_score: RATIO 0-1 = complete / (complete + error) over tasks created in the last hour, 1.000 if none. tasks_in_window, steps_in_window: COUNTS of tasks / steps created in the window. completion_count / error_count: window tasks whose current state is complete / error. completion_rate, error_rate: PERCENT 0-100 (2 dp) of tasks_in_window. avg_task_duration_seconds: mean completed_at - created_at of complete window tasks. avg_step_duration_seconds: mean time from step creation to its complete transition, for complete window steps. window_hours: window length; tasks_per_hour / steps_per_hour: counts divided by window_hours (NULL for an empty window). Durations in seconds, 0 when there is nothing to average.';

CREATE FUNCTION tasker.get_slowest_steps_aggregated(
    p_since          timestamptz DEFAULT NULL,
    p_limit          integer     DEFAULT 10,
    p_min_executions integer     DEFAULT 5,
    p_namespace      text        DEFAULT NULL,
    p_task_name      text        DEFAULT NULL,
    p_version        text        DEFAULT NULL
) RETURNS TABLE (
    namespace_name           text,
    task_name                text,
    version                  text,
    step_name                text,
    average_duration_seconds numeric,
    max_duration_seconds     numeric,
    execution_count          bigint,
    error_count              bigint,
    error_rate               numeric,
    last_executed_at         timestamptz
)
LANGUAGE sql STABLE
AS $$
    WITH runs AS (
        SELECT tns.name::text AS ns, nt.name::text AS task, nt.version::text AS ver, nst.name::text AS step,
               extract(epoch FROM st.created_at - ws.created_at) AS seconds,
               st.to_state AS final_state,
               st.created_at AS finished_at
        FROM tasker.workflow_steps ws
        JOIN tasker.workflow_step_transitions st
          ON st.workflow_step_uuid = ws.workflow_step_uuid AND st.most_recent
        JOIN tasker.named_steps nst     ON nst.named_step_uuid = ws.named_step_uuid
        JOIN tasker.tasks t             ON t.task_uuid = ws.task_uuid
        JOIN tasker.named_tasks nt      ON nt.named_task_uuid = t.named_task_uuid
        JOIN tasker.task_namespaces tns ON tns.task_namespace_uuid = nt.task_namespace_uuid
        WHERE ws.created_at >= COALESCE(p_since, now() - interval '24 hours')
          AND st.to_state IN ('complete', 'error')
          AND (p_namespace IS NULL OR tns.name = p_namespace)
          AND (p_task_name IS NULL OR nt.name = p_task_name)
          AND (p_version IS NULL OR nt.version = p_version)
    )
    SELECT r.ns, r.task, r.ver, r.step,
           round(avg(r.seconds), 3),
           round(max(r.seconds), 3),
           count(*),
           count(*) FILTER (WHERE r.final_state = 'error'),
           round((count(*) FILTER (WHERE r.final_state = 'error'))::numeric / count(*), 4),
           max(r.finished_at)
    FROM runs r
    GROUP BY r.ns, r.task, r.ver, r.step
    HAVING count(*) >= p_min_executions
    ORDER BY avg(r.seconds) DESC, r.ns, r.task, r.ver, r.step
    LIMIT p_limit
$$;

COMMENT ON FUNCTION tasker.get_slowest_steps_aggregated(timestamptz, integer, integer, text, text, text) IS
'Slowest steps per (namespace, task, version, step) over steps created since p_since (default last 24 h) whose current state is complete or error. Duration (seconds, 3 dp) = final transition time - step creation. execution_count / error_count are counts; error_rate is a RATIO 0-1 (4 dp) = error_count / execution_count. Groups with fewer than p_min_executions runs are left out; slowest average first.';

CREATE FUNCTION tasker.get_slowest_tasks_aggregated(
    p_since          timestamptz DEFAULT NULL,
    p_limit          integer     DEFAULT 10,
    p_min_executions integer     DEFAULT 5,
    p_namespace      text        DEFAULT NULL,
    p_task_name      text        DEFAULT NULL,
    p_version        text        DEFAULT NULL
) RETURNS TABLE (
    namespace_name           text,
    task_name                text,
    version                  text,
    average_duration_seconds numeric,
    max_duration_seconds     numeric,
    execution_count          bigint,
    average_step_count       numeric,
    error_count              bigint,
    error_rate               numeric,
    last_executed_at         timestamptz
)
LANGUAGE sql STABLE
AS $$
    WITH runs AS (
        SELECT tns.name::text AS ns, nt.name::text AS task, nt.version::text AS ver,
               t.task_uuid, t.created_at,
               fin.finished_at, fin.step_count, fin.error_steps
        FROM tasker.tasks t
        JOIN tasker.named_tasks nt      ON nt.named_task_uuid = t.named_task_uuid
        JOIN tasker.task_namespaces tns ON tns.task_namespace_uuid = nt.task_namespace_uuid
        CROSS JOIN LATERAL (
            SELECT max(st.created_at) FILTER (WHERE st.to_state IN ('complete', 'error')) AS finished_at,
                   count(*)                                                              AS step_count,
                   count(*) FILTER (WHERE st.to_state = 'error')                         AS error_steps
            FROM tasker.workflow_steps ws
            LEFT JOIN tasker.workflow_step_transitions st
                   ON st.workflow_step_uuid = ws.workflow_step_uuid AND st.most_recent
            WHERE ws.task_uuid = t.task_uuid
        ) AS fin
        WHERE t.created_at >= COALESCE(p_since, now() - interval '24 hours')
          AND fin.finished_at IS NOT NULL
          AND (p_namespace IS NULL OR tns.name = p_namespace)
          AND (p_task_name IS NULL OR nt.name = p_task_name)
          AND (p_version IS NULL OR nt.version = p_version)
    )
    SELECT r.ns, r.task, r.ver,
           round(avg(extract(epoch FROM r.finished_at - r.created_at)), 3),
           round(max(extract(epoch FROM r.finished_at - r.created_at)), 3),
           count(*),
           round(avg(r.step_count), 2),
           sum(r.error_steps)::bigint,
           round((count(*) FILTER (WHERE r.error_steps > 0))::numeric / count(*), 4),
           max(r.finished_at)
    FROM runs r
    GROUP BY r.ns, r.task, r.ver
    HAVING count(*) >= p_min_executions
    ORDER BY avg(extract(epoch FROM r.finished_at - r.created_at)) DESC, r.ns, r.task, r.ver
    LIMIT p_limit
$$;

COMMENT ON FUNCTION tasker.get_slowest_tasks_aggregated(timestamptz, integer, integer, text, text, text) IS
'Slowest task templates per (namespace, task, version) over tasks created since p_since (default last 24 h) with at least one step currently complete or error. Duration (seconds, 3 dp) = latest such step transition - task creation. execution_count: tasks; average_step_count: steps per task; error_count: COUNT of steps in error summed over those tasks; error_rate: RATIO 0-1 (4 dp) of tasks with at least one step in error. Groups with fewer than p_min_executions tasks are left out; slowest average first.';

-- 0009_task_events.sql -- a notification per task whose state or whose
-- steps' states changed, for the status streams of taskerd
-- (TaskService.StreamTaskStatus).
--
-- Channel 'tasker_task_events', payload: the task uuid (36 characters).
-- The triggers are statement-level with a transition table, so a statement
-- that writes many transition rows sends one notification per distinct
-- task, not one per row; and PostgreSQL drops a notification identical to
-- one already queued in the same transaction, so a transaction that moves
-- a task through several states sends one. Notifications are delivered at
-- commit: a listener that reads after it sees the committed rows. Nothing
-- is sent for transactions that roll back.

CREATE FUNCTION tasker.notify_task_events_from_task_transitions() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    PERFORM pg_notify('tasker_task_events', n.task_uuid::text)
    FROM (SELECT DISTINCT task_uuid FROM new_transitions) AS n;
    RETURN NULL;
END;
$$;

COMMENT ON FUNCTION tasker.notify_task_events_from_task_transitions() IS
'AFTER INSERT statement trigger on task_transitions: pg_notify(''tasker_task_events'', task_uuid) once per task of the statement.';

CREATE TRIGGER trg_task_transitions_notify
    AFTER INSERT ON tasker.task_transitions
    REFERENCING NEW TABLE AS new_transitions
    FOR EACH STATEMENT
    EXECUTE FUNCTION tasker.notify_task_events_from_task_transitions();

CREATE FUNCTION tasker.notify_task_events_from_step_transitions() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    PERFORM pg_notify('tasker_task_events', n.task_uuid::text)
    FROM (SELECT DISTINCT ws.task_uuid
          FROM new_transitions nt
          JOIN tasker.workflow_steps ws ON ws.workflow_step_uuid = nt.workflow_step_uuid) AS n;
    RETURN NULL;
END;
$$;

COMMENT ON FUNCTION tasker.notify_task_events_from_step_transitions() IS
'AFTER INSERT statement trigger on workflow_step_transitions: pg_notify(''tasker_task_events'', task_uuid) once per task whose steps the statement moved.';

CREATE TRIGGER trg_step_transitions_notify
    AFTER INSERT ON tasker.workflow_step_transitions
    REFERENCING NEW TABLE AS new_transitions
    FOR EACH STATEMENT
    EXECUTE FUNCTION tasker.notify_task_events_from_step_transitions();

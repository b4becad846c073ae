-- Reduces the benchmark's (throw-away) database to the keys, indexes and
-- triggers that tasker-api.md §3.2 lists, for a second floor measurement
-- (run.sh, "The floor"): what the brief's schema costs without anything
-- this engine added. Never run on a real database.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
-- indexes the brief does not list
DROP INDEX IF EXISTS tasker.idx_tasks_named_task_uuid, tasker.idx_tasks_created_at,
    tasker.idx_tasks_completed_at, tasker.idx_tasks_source_system;
DROP INDEX IF EXISTS tasker.idx_workflow_steps_named_step_uuid, tasker.idx_workflow_steps_created_at,
    tasker.idx_workflow_steps_in_process, tasker.idx_workflow_steps_processed_at,
    tasker.idx_workflow_steps_checkpoint_exists;
DROP INDEX IF EXISTS tasker.idx_workflow_step_edges_to_step;
DROP INDEX IF EXISTS tasker.idx_task_transitions_uuid_sort_key, tasker.idx_task_transitions_current_state,
    tasker.idx_task_transitions_processor, tasker.idx_task_transitions_timeout;
DROP INDEX IF EXISTS tasker.idx_workflow_step_transitions_uuid_sort_key,
    tasker.idx_workflow_step_transitions_current_state, tasker.idx_workflow_step_transitions_step_state;
DROP INDEX IF EXISTS tasker.idx_audit_task_uuid, tasker.idx_audit_transition, tasker.idx_audit_recorded_at,
    tasker.idx_audit_worker_uuid, tasker.idx_audit_correlation_id;
-- the engine's own triggers (task event notifications, redrive requests);
-- the result audit trigger and the edge checks stay: the brief has them
ALTER TABLE tasker.task_transitions DISABLE TRIGGER trg_task_transitions_notify;
ALTER TABLE tasker.workflow_step_transitions DISABLE TRIGGER trg_step_transitions_notify;
ALTER TABLE tasker.workflow_step_transitions DISABLE TRIGGER trg_step_redrive_request;
SELECT 'indexes_left=' || count(*) FROM pg_indexes WHERE schemaname = 'tasker';

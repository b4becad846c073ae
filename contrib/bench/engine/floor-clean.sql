-- Removes the rows of the last floor run (bench.floor_k / floor_ks), so
-- that every floor run finds tables of the same size. Table by table,
-- set-based, with the foreign-key triggers off for this session: on the
-- reduced schema (floor-contract.sql) a cascading delete would scan a
-- table per row.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
SET session_replication_role = replica;
DELETE FROM tasker.workflow_step_result_audit a USING bench.floor_k k WHERE a.task_uuid = k.t;
DELETE FROM tasker.workflow_step_transitions x USING bench.floor_ks k WHERE x.workflow_step_uuid = k.step;
DELETE FROM tasker.workflow_step_edges e USING bench.floor_ks k WHERE e.from_step_uuid = k.step;
DELETE FROM tasker.workflow_steps s USING bench.floor_ks k WHERE s.workflow_step_uuid = k.step;
DELETE FROM tasker.task_transitions x USING bench.floor_k k WHERE x.task_uuid = k.t;
DELETE FROM tasker.task_redrive_requests r USING bench.floor_k k WHERE r.task_uuid = k.t;
DELETE FROM tasker.tasks_dlq d USING bench.floor_k k WHERE d.task_uuid = k.t;
DELETE FROM tasker.tasks t USING bench.floor_k k WHERE t.task_uuid = k.t;
RESET session_replication_role;
SELECT 'left=' || count(*) FROM tasker.workflow_steps s JOIN bench.floor_ks k ON k.step = s.workflow_step_uuid;
VACUUM;

-- 0002_constraints_and_indexes.sql -- unique keys, foreign keys, indexes,
-- updated_at triggers.
--
-- Foreign keys from rows that belong to a task or a step cascade on delete,
-- so a retention job can delete whole tasks; the template registry
-- (namespaces, named tasks, named steps) is protected (RESTRICT).

-- ---------------------------------------------------------------------------
-- Unique keys
-- ---------------------------------------------------------------------------
ALTER TABLE tasker.task_namespaces
    ADD CONSTRAINT task_namespaces_name_unique UNIQUE (name);

ALTER TABLE tasker.named_tasks
    ADD CONSTRAINT named_tasks_namespace_name_version_unique UNIQUE (task_namespace_uuid, name, version);

ALTER TABLE tasker.named_steps
    ADD CONSTRAINT named_steps_name_unique UNIQUE (name);

ALTER TABLE tasker.named_tasks_named_steps
    ADD CONSTRAINT named_tasks_named_steps_unique UNIQUE (named_task_uuid, named_step_uuid);

ALTER TABLE tasker.tasks
    ADD CONSTRAINT tasks_identity_hash_unique UNIQUE (identity_hash);

ALTER TABLE tasker.workflow_steps
    ADD CONSTRAINT uq_workflow_step_task_named_step UNIQUE (task_uuid, named_step_uuid);

ALTER TABLE tasker.workflow_step_edges
    ADD CONSTRAINT unique_edge_per_step_pair UNIQUE (from_step_uuid, to_step_uuid, name);

ALTER TABLE tasker.workflow_step_result_audit
    ADD CONSTRAINT uq_audit_step_transition UNIQUE (workflow_step_uuid, workflow_step_transition_uuid);

-- One current state per task / step.
CREATE UNIQUE INDEX idx_task_transitions_uuid_most_recent
    ON tasker.task_transitions (task_uuid) WHERE most_recent;
CREATE UNIQUE INDEX idx_workflow_step_transitions_uuid_most_recent
    ON tasker.workflow_step_transitions (workflow_step_uuid) WHERE most_recent;

-- Transition history order; unique so that two writers that bypassed the
-- row lock cannot both append the same position.
CREATE UNIQUE INDEX idx_task_transitions_uuid_sort_key
    ON tasker.task_transitions (task_uuid, sort_key);
CREATE UNIQUE INDEX idx_workflow_step_transitions_uuid_sort_key
    ON tasker.workflow_step_transitions (workflow_step_uuid, sort_key);

-- One open (pending) investigation per task; history is kept.
CREATE UNIQUE INDEX idx_dlq_unique_pending_task
    ON tasker.tasks_dlq (task_uuid) WHERE resolution_status = 'pending';

-- ---------------------------------------------------------------------------
-- Foreign keys
-- ---------------------------------------------------------------------------
ALTER TABLE tasker.named_tasks
    ADD CONSTRAINT named_tasks_task_namespace_uuid_fkey
    FOREIGN KEY (task_namespace_uuid) REFERENCES tasker.task_namespaces (task_namespace_uuid);

ALTER TABLE tasker.named_tasks_named_steps
    ADD CONSTRAINT named_tasks_named_steps_named_task_uuid_fkey
    FOREIGN KEY (named_task_uuid) REFERENCES tasker.named_tasks (named_task_uuid) ON DELETE CASCADE,
    ADD CONSTRAINT named_tasks_named_steps_named_step_uuid_fkey
    FOREIGN KEY (named_step_uuid) REFERENCES tasker.named_steps (named_step_uuid);

ALTER TABLE tasker.tasks
    ADD CONSTRAINT tasks_named_task_uuid_fkey
    FOREIGN KEY (named_task_uuid) REFERENCES tasker.named_tasks (named_task_uuid);

ALTER TABLE tasker.workflow_steps
    ADD CONSTRAINT workflow_steps_task_uuid_fkey
    FOREIGN KEY (task_uuid) REFERENCES tasker.tasks (task_uuid) ON DELETE CASCADE,
    ADD CONSTRAINT workflow_steps_named_step_uuid_fkey
    FOREIGN KEY (named_step_uuid) REFERENCES tasker.named_steps (named_step_uuid);

ALTER TABLE tasker.workflow_step_edges
    ADD CONSTRAINT workflow_step_edges_from_step_uuid_fkey
    FOREIGN KEY (from_step_uuid) REFERENCES tasker.workflow_steps (workflow_step_uuid) ON DELETE CASCADE,
    ADD CONSTRAINT workflow_step_edges_to_step_uuid_fkey
    FOREIGN KEY (to_step_uuid) REFERENCES tasker.workflow_steps (workflow_step_uuid) ON DELETE CASCADE;

ALTER TABLE tasker.task_transitions
    ADD CONSTRAINT task_transitions_task_uuid_fkey
    FOREIGN KEY (task_uuid) REFERENCES tasker.tasks (task_uuid) ON DELETE CASCADE;

ALTER TABLE tasker.workflow_step_transitions
    ADD CONSTRAINT workflow_step_transitions_workflow_step_uuid_fkey
    FOREIGN KEY (workflow_step_uuid) REFERENCES tasker.workflow_steps (workflow_step_uuid) ON DELETE CASCADE;

ALTER TABLE tasker.workflow_step_result_audit
    ADD CONSTRAINT workflow_step_result_audit_workflow_step_uuid_fkey
    FOREIGN KEY (workflow_step_uuid) REFERENCES tasker.workflow_steps (workflow_step_uuid) ON DELETE CASCADE,
    ADD CONSTRAINT workflow_step_result_audit_step_transition_uuid_fkey
    FOREIGN KEY (workflow_step_transition_uuid)
    REFERENCES tasker.workflow_step_transitions (workflow_step_transition_uuid) ON DELETE CASCADE,
    ADD CONSTRAINT workflow_step_result_audit_task_uuid_fkey
    FOREIGN KEY (task_uuid) REFERENCES tasker.tasks (task_uuid) ON DELETE CASCADE;

ALTER TABLE tasker.tasks_dlq
    ADD CONSTRAINT tasks_dlq_task_uuid_fkey
    FOREIGN KEY (task_uuid) REFERENCES tasker.tasks (task_uuid) ON DELETE CASCADE;

-- ---------------------------------------------------------------------------
-- Indexes
-- ---------------------------------------------------------------------------
-- Registry
CREATE INDEX idx_named_tasks_namespace_uuid ON tasker.named_tasks (task_namespace_uuid);
CREATE INDEX idx_named_tasks_lifecycle_config ON tasker.named_tasks
    USING gin ((configuration -> 'lifecycle')) WHERE (configuration -> 'lifecycle') IS NOT NULL;
CREATE INDEX idx_named_tasks_named_steps_named_step ON tasker.named_tasks_named_steps (named_step_uuid);

-- Tasks
CREATE INDEX idx_tasks_named_task_uuid ON tasker.tasks (named_task_uuid);
CREATE INDEX idx_tasks_correlation_id ON tasker.tasks (correlation_id);
CREATE INDEX idx_tasks_parent_correlation_id ON tasker.tasks (parent_correlation_id, correlation_id)
    WHERE parent_correlation_id IS NOT NULL;
CREATE INDEX idx_tasks_priority ON tasker.tasks (priority);
CREATE INDEX idx_tasks_requested_at ON tasker.tasks (requested_at);
CREATE INDEX idx_tasks_created_at ON tasker.tasks (created_at);
CREATE INDEX idx_tasks_completed_at ON tasker.tasks (completed_at) WHERE completed_at IS NOT NULL;
CREATE INDEX idx_tasks_source_system ON tasker.tasks (source_system);
CREATE INDEX idx_tasks_tags_gin ON tasker.tasks USING gin (tags);
CREATE INDEX idx_tasks_active_with_priority_covering ON tasker.tasks (priority, task_uuid)
    INCLUDE (named_task_uuid, requested_at, created_at) WHERE complete = false;

-- Steps
CREATE INDEX idx_workflow_steps_named_step_uuid ON tasker.workflow_steps (named_step_uuid);
CREATE INDEX idx_workflow_steps_created_at ON tasker.workflow_steps (created_at);
CREATE INDEX idx_workflow_steps_active_operations ON tasker.workflow_steps (task_uuid, workflow_step_uuid)
    WHERE processed = false;
CREATE INDEX idx_workflow_steps_ready_covering ON tasker.workflow_steps (task_uuid, in_process)
    INCLUDE (workflow_step_uuid, attempts, max_attempts, retryable) WHERE processed = false;
CREATE INDEX idx_workflow_steps_in_process ON tasker.workflow_steps (last_attempted_at)
    WHERE in_process = true;
CREATE INDEX idx_workflow_steps_processed_at ON tasker.workflow_steps (processed_at)
    WHERE processed_at IS NOT NULL;
CREATE INDEX idx_workflow_steps_checkpoint_exists ON tasker.workflow_steps (workflow_step_uuid)
    WHERE checkpoint IS NOT NULL;

-- Edges (from_step_uuid is covered by unique_edge_per_step_pair)
CREATE INDEX idx_workflow_step_edges_to_step ON tasker.workflow_step_edges (to_step_uuid);

-- Transitions
CREATE INDEX idx_task_transitions_current_state ON tasker.task_transitions (to_state, created_at)
    WHERE most_recent;
CREATE INDEX idx_task_transitions_processor ON tasker.task_transitions (processor_uuid)
    WHERE processor_uuid IS NOT NULL;
CREATE INDEX idx_task_transitions_timeout ON tasker.task_transitions ((transition_metadata ->> 'timeout_at'))
    WHERE most_recent;
CREATE INDEX idx_workflow_step_transitions_current_state ON tasker.workflow_step_transitions (to_state, created_at)
    WHERE most_recent;
CREATE INDEX idx_workflow_step_transitions_step_state ON tasker.workflow_step_transitions
    (workflow_step_uuid, to_state, created_at);

-- Audit
CREATE INDEX idx_audit_task_uuid ON tasker.workflow_step_result_audit (task_uuid);
CREATE INDEX idx_audit_transition ON tasker.workflow_step_result_audit (workflow_step_transition_uuid);
CREATE INDEX idx_audit_recorded_at ON tasker.workflow_step_result_audit (recorded_at);
CREATE INDEX idx_audit_worker_uuid ON tasker.workflow_step_result_audit (worker_uuid) WHERE worker_uuid IS NOT NULL;
CREATE INDEX idx_audit_correlation_id ON tasker.workflow_step_result_audit (correlation_id) WHERE correlation_id IS NOT NULL;

-- DLQ
CREATE INDEX idx_dlq_task_lookup ON tasker.tasks_dlq (task_uuid, dlq_timestamp DESC);
CREATE INDEX idx_dlq_reason ON tasker.tasks_dlq (dlq_reason);
CREATE INDEX idx_dlq_resolution_status ON tasker.tasks_dlq (resolution_status, dlq_timestamp);

-- ---------------------------------------------------------------------------
-- updated_at maintenance
-- ---------------------------------------------------------------------------
CREATE FUNCTION tasker.set_updated_at() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END;
$$;

COMMENT ON FUNCTION tasker.set_updated_at() IS
'BEFORE UPDATE trigger: updated_at := now() (the transaction start time).';

CREATE TRIGGER trg_task_namespaces_updated_at BEFORE UPDATE ON tasker.task_namespaces
    FOR EACH ROW EXECUTE FUNCTION tasker.set_updated_at();
CREATE TRIGGER trg_named_tasks_updated_at BEFORE UPDATE ON tasker.named_tasks
    FOR EACH ROW EXECUTE FUNCTION tasker.set_updated_at();
CREATE TRIGGER trg_named_steps_updated_at BEFORE UPDATE ON tasker.named_steps
    FOR EACH ROW EXECUTE FUNCTION tasker.set_updated_at();
CREATE TRIGGER trg_named_tasks_named_steps_updated_at BEFORE UPDATE ON tasker.named_tasks_named_steps
    FOR EACH ROW EXECUTE FUNCTION tasker.set_updated_at();
CREATE TRIGGER trg_tasks_updated_at BEFORE UPDATE ON tasker.tasks
    FOR EACH ROW EXECUTE FUNCTION tasker.set_updated_at();
CREATE TRIGGER trg_workflow_steps_updated_at BEFORE UPDATE ON tasker.workflow_steps
    FOR EACH ROW EXECUTE FUNCTION tasker.set_updated_at();
CREATE TRIGGER trg_workflow_step_edges_updated_at BEFORE UPDATE ON tasker.workflow_step_edges
    FOR EACH ROW EXECUTE FUNCTION tasker.set_updated_at();
CREATE TRIGGER trg_task_transitions_updated_at BEFORE UPDATE ON tasker.task_transitions
    FOR EACH ROW EXECUTE FUNCTION tasker.set_updated_at();
CREATE TRIGGER trg_workflow_step_transitions_updated_at BEFORE UPDATE ON tasker.workflow_step_transitions
    FOR EACH ROW EXECUTE FUNCTION tasker.set_updated_at();
CREATE TRIGGER trg_workflow_step_result_audit_updated_at BEFORE UPDATE ON tasker.workflow_step_result_audit
    FOR EACH ROW EXECUTE FUNCTION tasker.set_updated_at();
CREATE TRIGGER update_dlq_updated_at BEFORE UPDATE ON tasker.tasks_dlq
    FOR EACH ROW EXECUTE FUNCTION tasker.set_updated_at();

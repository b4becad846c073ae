-- 0001_schema_and_tables.sql -- schema tasker: types, UUIDv7, tables.
--
-- Runs inside one transaction (the migration runner opens it; this file
-- must not contain BEGIN/COMMIT or psql meta-commands). Every name is
-- schema-qualified; nothing depends on search_path. No extension is used.
--
-- Conventions for every table:
--   * primary key: a uuid defaulting to tasker.uuid_generate_v7()
--   * created_at / updated_at: timestamptz, default now(); updated_at is
--     maintained by the trigger tasker.set_updated_at (0002)
--   * primary keys, NOT NULL, defaults and CHECKs live here; unique keys,
--     foreign keys, indexes and triggers live in 0002.
--
-- All timestamps are timestamptz. Clients should set TimeZone = 'UTC' on
-- connect so text output is UTC.

CREATE SCHEMA IF NOT EXISTS tasker;   -- the runner normally creates it first

-- ---------------------------------------------------------------------------
-- UUID version 7 (RFC 9562), without extensions
-- ---------------------------------------------------------------------------
-- Layout: 48-bit big-endian Unix time in ms | version 7 | 12 bits of
-- sub-millisecond time (RFC 9562 section 6.2 method 3, microsecond clock
-- scaled to 0..4095) | variant 10 | 62 random bits.
-- The random part comes from gen_random_uuid() (core since PostgreSQL 13),
-- whose byte 8 already carries the RFC variant bits.
-- Values generated at least one microsecond apart sort in generation order;
-- values from the same microsecond are ordered by their random part.
CREATE FUNCTION tasker.uuid_generate_v7() RETURNS uuid
LANGUAGE sql VOLATILE PARALLEL SAFE
AS $$
    SELECT encode(
               substring(int8send(us / 1000) FROM 3)                    -- 6 bytes: ms
            || int2send((28672 | ((us % 1000) * 4096 / 1000)::int)::smallint)   -- 0x7000 | sub-ms
            || substring(uuid_send(gen_random_uuid()) FROM 9),          -- variant + random
           'hex')::uuid
    FROM (SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::bigint AS us) AS now_us
$$;

COMMENT ON FUNCTION tasker.uuid_generate_v7() IS
'UUID version 7: 48-bit Unix ms timestamp, version nibble 7, 12-bit sub-ms fraction, RFC variant, random rest. Default of every primary key.';

-- The creation time embedded in a version 7 UUID (millisecond precision).
CREATE FUNCTION tasker.uuid_v7_time(p_uuid uuid) RETURNS timestamptz
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$
    SELECT to_timestamp(
        ('x' || lpad(substring(replace(p_uuid::text, '-', '') FROM 1 FOR 12), 16, '0'))::bit(64)::bigint
        / 1000.0)
$$;

COMMENT ON FUNCTION tasker.uuid_v7_time(uuid) IS
'Timestamp (ms precision) embedded in a UUIDv7; meaningless for other versions.';

-- ---------------------------------------------------------------------------
-- State vocabularies (the CHECK constraints below list the same names)
-- ---------------------------------------------------------------------------
CREATE FUNCTION tasker.task_state_names() RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT ARRAY['pending', 'initializing', 'enqueuing_steps', 'steps_in_process',
                 'evaluating_results', 'waiting_for_dependencies', 'waiting_for_retry',
                 'blocked_by_failures', 'complete', 'error', 'cancelled',
                 'resolved_manually']::text[]
$$;

CREATE FUNCTION tasker.step_state_names() RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT ARRAY['pending', 'enqueued', 'in_progress', 'enqueued_for_orchestration',
                 'enqueued_as_error_for_orchestration', 'waiting_for_retry', 'complete',
                 'error', 'cancelled', 'resolved_manually']::text[]
$$;

COMMENT ON FUNCTION tasker.task_state_names() IS 'The 12 task states, in state-machine order.';
COMMENT ON FUNCTION tasker.step_state_names() IS 'The 10 workflow step states, in state-machine order.';

-- ---------------------------------------------------------------------------
-- Enums
-- ---------------------------------------------------------------------------
CREATE TYPE tasker.dlq_reason AS ENUM (
    'staleness_timeout',
    'max_retries_exceeded',
    'dependency_cycle_detected',
    'worker_unavailable',
    'manual_dlq'
);

CREATE TYPE tasker.dlq_resolution_status AS ENUM (
    'pending',
    'manually_resolved',
    'permanently_failed',
    'cancelled'
);

CREATE TYPE tasker.identity_strategy AS ENUM (
    'strict',
    'caller_provided',
    'always_unique'
);

-- ---------------------------------------------------------------------------
-- Template registry
-- ---------------------------------------------------------------------------
CREATE TABLE tasker.task_namespaces (
    task_namespace_uuid uuid         NOT NULL DEFAULT tasker.uuid_generate_v7(),
    name                varchar(64)  NOT NULL,
    description         varchar(255),
    created_at          timestamptz  NOT NULL DEFAULT now(),
    updated_at          timestamptz  NOT NULL DEFAULT now(),
    CONSTRAINT task_namespaces_pkey PRIMARY KEY (task_namespace_uuid)
);

CREATE TABLE tasker.named_tasks (
    named_task_uuid     uuid         NOT NULL DEFAULT tasker.uuid_generate_v7(),
    task_namespace_uuid uuid         NOT NULL,
    name                varchar(64)  NOT NULL,
    version             varchar(16)  NOT NULL DEFAULT '0.1.0',
    description         varchar(255),
    configuration       jsonb                 DEFAULT '{}'::jsonb,
    identity_strategy   tasker.identity_strategy NOT NULL DEFAULT 'strict',
    created_at          timestamptz  NOT NULL DEFAULT now(),
    updated_at          timestamptz  NOT NULL DEFAULT now(),
    CONSTRAINT named_tasks_pkey PRIMARY KEY (named_task_uuid)
);

COMMENT ON COLUMN tasker.named_tasks.configuration IS
'The whole task template as JSON; configuration->''lifecycle'' holds the staleness overrides.';

CREATE TABLE tasker.named_steps (
    named_step_uuid uuid         NOT NULL DEFAULT tasker.uuid_generate_v7(),
    name            varchar(128) NOT NULL,
    description     varchar(255),
    created_at      timestamptz  NOT NULL DEFAULT now(),
    updated_at      timestamptz  NOT NULL DEFAULT now(),
    CONSTRAINT named_steps_pkey PRIMARY KEY (named_step_uuid)
);

CREATE TABLE tasker.named_tasks_named_steps (
    ntns_uuid            uuid        NOT NULL DEFAULT tasker.uuid_generate_v7(),
    named_task_uuid      uuid        NOT NULL,
    named_step_uuid      uuid        NOT NULL,
    default_retryable    boolean     NOT NULL DEFAULT true,
    default_max_attempts integer     NOT NULL DEFAULT 3,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT named_tasks_named_steps_pkey PRIMARY KEY (ntns_uuid),
    CONSTRAINT named_tasks_named_steps_max_attempts_check CHECK (default_max_attempts >= 0)
);

-- ---------------------------------------------------------------------------
-- Tasks and steps
-- ---------------------------------------------------------------------------
CREATE TABLE tasker.tasks (
    task_uuid             uuid         NOT NULL DEFAULT tasker.uuid_generate_v7(),
    named_task_uuid       uuid         NOT NULL,
    complete              boolean      NOT NULL DEFAULT false,
    requested_at          timestamptz  NOT NULL DEFAULT now(),
    completed_at          timestamptz,
    initiator             varchar(128),
    source_system         varchar(128),
    reason                varchar(128),
    tags                  jsonb,
    context               jsonb,
    identity_hash         varchar(128) NOT NULL,
    priority              integer      NOT NULL DEFAULT 0,
    correlation_id        uuid         NOT NULL DEFAULT tasker.uuid_generate_v7(),
    parent_correlation_id uuid,
    created_at            timestamptz  NOT NULL DEFAULT now(),
    updated_at            timestamptz  NOT NULL DEFAULT now(),
    CONSTRAINT tasks_pkey PRIMARY KEY (task_uuid)
);

COMMENT ON COLUMN tasker.tasks.identity_hash IS
'Deduplication key computed by the engine per named_tasks.identity_strategy; unique.';
COMMENT ON COLUMN tasker.tasks.complete IS
'Set by transition_task_state_atomic when the task enters state complete.';
COMMENT ON COLUMN tasker.tasks.updated_at IS
'Also bumped by every task state transition.';

CREATE TABLE tasker.workflow_steps (
    workflow_step_uuid      uuid        NOT NULL DEFAULT tasker.uuid_generate_v7(),
    task_uuid               uuid        NOT NULL,
    named_step_uuid         uuid        NOT NULL,
    retryable               boolean     NOT NULL DEFAULT true,
    max_attempts            integer     NOT NULL DEFAULT 3,
    in_process              boolean     NOT NULL DEFAULT false,
    processed               boolean     NOT NULL DEFAULT false,
    processed_at            timestamptz,
    attempts                integer     NOT NULL DEFAULT 0,
    last_attempted_at       timestamptz,
    backoff_request_seconds integer,
    inputs                  jsonb,
    results                 jsonb,
    priority                integer     NOT NULL DEFAULT 0,
    checkpoint              jsonb,
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT workflow_steps_pkey PRIMARY KEY (workflow_step_uuid),
    CONSTRAINT workflow_steps_max_attempts_check CHECK (max_attempts >= 0),
    CONSTRAINT workflow_steps_attempts_check CHECK (attempts >= 0),
    CONSTRAINT workflow_steps_backoff_check CHECK (backoff_request_seconds IS NULL OR backoff_request_seconds >= 0)
);

COMMENT ON COLUMN tasker.workflow_steps.in_process IS
'True exactly while the step is in state in_progress (maintained by transition_step_state_atomic).';
COMMENT ON COLUMN tasker.workflow_steps.processed IS
'True while the step is in a terminal state: complete, cancelled, resolved_manually.';
COMMENT ON COLUMN tasker.workflow_steps.attempts IS
'Worker claims so far: incremented by the transition to in_progress, reset by reset_step_for_retry.';
COMMENT ON COLUMN tasker.workflow_steps.backoff_request_seconds IS
'Delay before the next retry, counted from last_attempted_at (see set_step_backoff_atomic).';
COMMENT ON COLUMN tasker.workflow_steps.inputs IS 'Handler initialization from the template.';
COMMENT ON COLUMN tasker.workflow_steps.checkpoint IS 'Handler-written checkpoint for resumable batch steps.';

CREATE TABLE tasker.workflow_step_edges (
    workflow_step_edge_uuid uuid        NOT NULL DEFAULT tasker.uuid_generate_v7(),
    from_step_uuid          uuid        NOT NULL,
    to_step_uuid            uuid        NOT NULL,
    name                    varchar(64) NOT NULL DEFAULT 'provides',
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT workflow_step_edges_pkey PRIMARY KEY (workflow_step_edge_uuid),
    CONSTRAINT workflow_step_edges_no_self_loop CHECK (from_step_uuid <> to_step_uuid)
);

COMMENT ON TABLE tasker.workflow_step_edges IS
'DAG edges: from_step_uuid is the parent, to_step_uuid the child that depends on it. Both ends must belong to the same task and an edge must not close a cycle (trigger in 0003).';

-- ---------------------------------------------------------------------------
-- State transitions (append-only; current state = the most_recent row,
-- no row at all means "pending")
-- ---------------------------------------------------------------------------
CREATE TABLE tasker.task_transitions (
    task_transition_uuid uuid        NOT NULL DEFAULT tasker.uuid_generate_v7(),
    task_uuid            uuid        NOT NULL,
    from_state           varchar(64),
    to_state             varchar(64) NOT NULL,
    metadata             jsonb                DEFAULT '{}'::jsonb,
    transition_metadata  jsonb                DEFAULT '{}'::jsonb,
    sort_key             integer     NOT NULL,
    most_recent          boolean     NOT NULL DEFAULT false,
    processor_uuid       uuid,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT task_transitions_pkey PRIMARY KEY (task_transition_uuid),
    CONSTRAINT chk_task_transitions_from_state CHECK (
        from_state IS NULL OR from_state IN (
            'pending', 'initializing', 'enqueuing_steps', 'steps_in_process',
            'evaluating_results', 'waiting_for_dependencies', 'waiting_for_retry',
            'blocked_by_failures', 'complete', 'error', 'cancelled', 'resolved_manually')),
    CONSTRAINT chk_task_transitions_to_state CHECK (
        to_state IN (
            'pending', 'initializing', 'enqueuing_steps', 'steps_in_process',
            'evaluating_results', 'waiting_for_dependencies', 'waiting_for_retry',
            'blocked_by_failures', 'complete', 'error', 'cancelled', 'resolved_manually'))
);

COMMENT ON COLUMN tasker.task_transitions.metadata IS
'Caller-supplied event metadata (p_metadata of transition_task_state_atomic).';
COMMENT ON COLUMN tasker.task_transitions.transition_metadata IS
'Engine bookkeeping (e.g. {"timeout_at": ...}); p_transition_metadata of transition_task_state_atomic.';
COMMENT ON COLUMN tasker.task_transitions.processor_uuid IS
'The orchestration processor that made the transition; recorded for audit, never enforced.';

CREATE TABLE tasker.workflow_step_transitions (
    workflow_step_transition_uuid uuid        NOT NULL DEFAULT tasker.uuid_generate_v7(),
    workflow_step_uuid            uuid        NOT NULL,
    from_state                    varchar(64),
    to_state                      varchar(64) NOT NULL,
    metadata                      jsonb                DEFAULT '{}'::jsonb,
    sort_key                      integer     NOT NULL,
    most_recent                   boolean     NOT NULL DEFAULT false,
    created_at                    timestamptz NOT NULL DEFAULT now(),
    updated_at                    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT workflow_step_transitions_pkey PRIMARY KEY (workflow_step_transition_uuid),
    CONSTRAINT chk_workflow_step_transitions_from_state CHECK (
        from_state IS NULL OR from_state IN (
            'pending', 'enqueued', 'in_progress', 'enqueued_for_orchestration',
            'enqueued_as_error_for_orchestration', 'waiting_for_retry', 'complete',
            'error', 'cancelled', 'resolved_manually')),
    CONSTRAINT chk_workflow_step_transitions_to_state CHECK (
        to_state IN (
            'pending', 'enqueued', 'in_progress', 'enqueued_for_orchestration',
            'enqueued_as_error_for_orchestration', 'waiting_for_retry', 'complete',
            'error', 'cancelled', 'resolved_manually'))
);

COMMENT ON COLUMN tasker.workflow_step_transitions.metadata IS
'Caller-supplied metadata. For worker results: worker_uuid, correlation_id and event (the serialized step execution result), read by the audit trigger.';

CREATE TABLE tasker.workflow_step_result_audit (
    workflow_step_result_audit_uuid uuid        NOT NULL DEFAULT tasker.uuid_generate_v7(),
    workflow_step_uuid              uuid        NOT NULL,
    workflow_step_transition_uuid   uuid        NOT NULL,
    task_uuid                       uuid        NOT NULL,
    recorded_at                     timestamptz NOT NULL DEFAULT now(),
    worker_uuid                     uuid,
    correlation_id                  uuid,
    success                         boolean     NOT NULL,
    execution_time_ms               bigint,
    created_at                      timestamptz NOT NULL DEFAULT now(),
    updated_at                      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT workflow_step_result_audit_pkey PRIMARY KEY (workflow_step_result_audit_uuid)
);

COMMENT ON TABLE tasker.workflow_step_result_audit IS
'One row per worker result (transition into enqueued_for_orchestration or enqueued_as_error_for_orchestration), written by trigger trg_step_result_audit. The result itself stays in the transition metadata.';

-- ---------------------------------------------------------------------------
-- Dead letter queue: an investigation log, tasks stay in tasker.tasks
-- ---------------------------------------------------------------------------
CREATE TABLE tasker.tasks_dlq (
    dlq_entry_uuid       uuid                         NOT NULL DEFAULT tasker.uuid_generate_v7(),
    task_uuid            uuid                         NOT NULL,
    original_state       varchar(64)                  NOT NULL,
    dlq_reason           tasker.dlq_reason            NOT NULL,
    dlq_timestamp        timestamptz                  NOT NULL DEFAULT now(),
    resolution_status    tasker.dlq_resolution_status NOT NULL DEFAULT 'pending',
    resolution_timestamp timestamptz,
    resolution_notes     text,
    resolved_by          varchar(255),
    task_snapshot        jsonb                        NOT NULL,
    metadata             jsonb,
    created_at           timestamptz                  NOT NULL DEFAULT now(),
    updated_at           timestamptz                  NOT NULL DEFAULT now(),
    CONSTRAINT tasks_dlq_pkey PRIMARY KEY (dlq_entry_uuid)
);

COMMENT ON TABLE tasker.tasks_dlq IS
'Dead letter queue investigation log. At most one pending entry per task (partial unique index); resolved entries stay as history.';
COMMENT ON COLUMN tasker.tasks_dlq.task_snapshot IS
'Task facts at the time of the entry: task_uuid, namespace, task_name, current_state, time_in_state_minutes, threshold_minutes, snapshot_timestamp, task_details{correlation_id, priority, requested_at, created_at}.';

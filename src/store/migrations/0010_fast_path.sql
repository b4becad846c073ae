-- 0010_fast_path.sql -- the engine's hot path as set-based SQL: task
-- creation, the worker's claim and report, and the orchestration of step
-- results, each for a batch in one statement; cheaper building blocks
-- under the older functions.
--
-- The batch functions make the same decisions and write the same rows as
-- the one-at-a-time path (0003, 0007, 0008 and the C state machine driver
-- in src/engine/orchestrate.c), with the same locks:
--   * a task's row lock (FOR NO KEY UPDATE) is held while its state or the
--     state of its steps is decided; batches lock their tasks in uuid order;
--   * a step's row lock (FOR NO KEY UPDATE) is held while a worker claims
--     or reports it; batches lock their steps in uuid order;
--   * every state change is a transition row: the previous most_recent row
--     is cleared and the new one appended with sort_key + 1 in the same
--     transaction. A task that passes several states in one decision gets
--     one row per edge of the state table (section 3.3), all but the last
--     with most_recent = false.
-- What the fast path does not handle (failures, retries, cancellations,
-- operator actions, unusual states) it leaves to the one-at-a-time path.

-- ===========================================================================
-- Building blocks
-- ===========================================================================

-- The same UUIDv7 as in 0001, in PL/pgSQL: its expressions are planned once
-- per session, where the SQL function (with a sub-select, so never inlined)
-- was parsed and planned again for every statement that used it as a
-- column default (~10 times slower per row).
CREATE OR REPLACE FUNCTION tasker.uuid_generate_v7() RETURNS uuid
LANGUAGE plpgsql VOLATILE PARALLEL SAFE
AS $$
DECLARE
    us bigint := (extract(epoch FROM clock_timestamp()) * 1000000)::bigint;
BEGIN
    RETURN encode(substring(int8send(us / 1000) FROM 3)                       -- 6 bytes: ms
                  || int2send((28672 | ((us % 1000) * 4096 / 1000)::int)::smallint)  -- 7, sub-ms
                  || substring(uuid_send(gen_random_uuid()) FROM 9),         -- variant + random
                  'hex')::uuid;
END
$$;

-- A uuid in canonical text form (what the C side accepts), else NULL.
-- A single expression, which the planner inlines; without a regular
-- expression, several times cheaper than one.
CREATE FUNCTION tasker.uuid_or_null(p_text text) RETURNS uuid
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE WHEN length(p_text) = 36
                     AND translate(p_text, '0123456789abcdefABCDEF', '') = '----'
                     AND substr(p_text, 9, 1) = '-' AND substr(p_text, 14, 1) = '-'
                     AND substr(p_text, 19, 1) = '-' AND substr(p_text, 24, 1) = '-'
                THEN p_text::uuid END
$$;

COMMENT ON FUNCTION tasker.uuid_or_null(text) IS
'text -> uuid when it is a canonical 8-4-4-4-12 uuid (either case), else NULL.';

-- updated_at: the trigger of 0002 runs only when the statement left
-- updated_at alone, so the batch statements below, which set it themselves,
-- do not pay a PL/pgSQL call per row. The result is the same: now().
DROP TRIGGER trg_tasks_updated_at ON tasker.tasks;
CREATE TRIGGER trg_tasks_updated_at BEFORE UPDATE ON tasker.tasks
    FOR EACH ROW WHEN (OLD.updated_at IS NOT DISTINCT FROM NEW.updated_at)
    EXECUTE FUNCTION tasker.set_updated_at();
DROP TRIGGER trg_workflow_steps_updated_at ON tasker.workflow_steps;
CREATE TRIGGER trg_workflow_steps_updated_at BEFORE UPDATE ON tasker.workflow_steps
    FOR EACH ROW WHEN (OLD.updated_at IS NOT DISTINCT FROM NEW.updated_at)
    EXECUTE FUNCTION tasker.set_updated_at();
DROP TRIGGER trg_task_transitions_updated_at ON tasker.task_transitions;
CREATE TRIGGER trg_task_transitions_updated_at BEFORE UPDATE ON tasker.task_transitions
    FOR EACH ROW WHEN (OLD.updated_at IS NOT DISTINCT FROM NEW.updated_at)
    EXECUTE FUNCTION tasker.set_updated_at();
DROP TRIGGER trg_workflow_step_transitions_updated_at ON tasker.workflow_step_transitions;
CREATE TRIGGER trg_workflow_step_transitions_updated_at BEFORE UPDATE ON tasker.workflow_step_transitions
    FOR EACH ROW WHEN (OLD.updated_at IS NOT DISTINCT FROM NEW.updated_at)
    EXECUTE FUNCTION tasker.set_updated_at();

-- ---------------------------------------------------------------------------
-- Step result audit, once per statement
-- ---------------------------------------------------------------------------
-- The rows of create_step_result_audit (0003), written for all the result
-- transitions of a statement at once. The common cases are computed
-- inline; the helpers of 0003 (SQL functions the planner cannot inline) are
-- only called for the unusual ones, with the same results.

-- A string holding serialized JSON -> that JSON; anything else unparsable -> NULL.
CREATE FUNCTION tasker.jsonb_or_null(p_text text) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE
AS $$
BEGIN
    RETURN p_text::jsonb;
EXCEPTION WHEN invalid_text_representation THEN
    RETURN NULL;
END;
$$;

CREATE FUNCTION tasker.create_step_result_audits() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    -- Most statements write no worker result: skip the INSERT, whose start
    -- (the audit table and its seven indexes) costs more than this test.
    IF NOT EXISTS (SELECT 1 FROM new_rows n
                   WHERE n.to_state IN ('enqueued_for_orchestration',
                                        'enqueued_as_error_for_orchestration')) THEN
        RETURN NULL;
    END IF;
    INSERT INTO tasker.workflow_step_result_audit
        (workflow_step_uuid, workflow_step_transition_uuid, task_uuid,
         worker_uuid, correlation_id, success, execution_time_ms)
    SELECT n.workflow_step_uuid, n.workflow_step_transition_uuid, ws.task_uuid,
           -- try_parse_uuid, its common case first
           COALESCE(tasker.uuid_or_null(n.metadata ->> 'worker_uuid'),
                    tasker.try_parse_uuid(n.metadata ->> 'worker_uuid')),
           COALESCE(tasker.uuid_or_null(n.metadata ->> 'correlation_id'),
                    tasker.try_parse_uuid(n.metadata ->> 'correlation_id')),
           COALESCE(CASE WHEN r.result ->> 'success' IN ('true', 'false')
                         THEN (r.result ->> 'success')::boolean END,
                    n.to_state = 'enqueued_for_orchestration'),
           CASE WHEN r.ms IS NULL THEN NULL
                WHEN r.ms ~ '^[0-9]{1,15}$' THEN r.ms::bigint
                ELSE tasker.try_parse_bigint(r.ms) END
    FROM new_rows n
    JOIN tasker.workflow_steps ws ON ws.workflow_step_uuid = n.workflow_step_uuid
    CROSS JOIN LATERAL (
        SELECT CASE WHEN jsonb_typeof(n.metadata -> 'event') = 'string'
                    THEN tasker.jsonb_or_null(n.metadata ->> 'event')
                    ELSE n.metadata -> 'event' END AS event
    ) AS e
    CROSS JOIN LATERAL (
        SELECT CASE WHEN jsonb_typeof(e.event) = 'object' AND e.event ? 'success' THEN e.event
                    ELSE tasker.step_result_from_event(e.event) END AS result
    ) AS r0
    CROSS JOIN LATERAL (
        SELECT r0.result, r0.result -> 'metadata' ->> 'execution_time_ms' AS ms
    ) AS r
    WHERE n.to_state IN ('enqueued_for_orchestration', 'enqueued_as_error_for_orchestration');
    -- (0003 added ON CONFLICT DO NOTHING; the transitions are new in this
    -- statement, so no audit row can exist for them yet)
    RETURN NULL;
END;
$$;

COMMENT ON FUNCTION tasker.create_step_result_audits() IS
'AFTER INSERT statement trigger on workflow_step_transitions: one audit row per worker result transition of the statement, as create_step_result_audit (0003) wrote per row.';

DROP TRIGGER trg_step_result_audit ON tasker.workflow_step_transitions;
CREATE TRIGGER trg_step_result_audit
    AFTER INSERT ON tasker.workflow_step_transitions
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION tasker.create_step_result_audits();

-- ---------------------------------------------------------------------------
-- Redrive requests, once per statement
-- ---------------------------------------------------------------------------
-- The requests of record_redrive_request (0003) for all the transitions of
-- a statement: a step of a task in blocked_by_failures or error entered
-- pending, waiting_for_retry, complete or resolved_manually. One request
-- per task (the newest transition of the statement names it).
CREATE FUNCTION tasker.record_redrive_requests() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    INSERT INTO tasker.task_redrive_requests (task_uuid, workflow_step_transition_uuid)
    SELECT DISTINCT ON (ws.task_uuid) ws.task_uuid, n.workflow_step_transition_uuid
    FROM new_rows n
    JOIN tasker.workflow_steps ws ON ws.workflow_step_uuid = n.workflow_step_uuid
    JOIN tasker.task_transitions tt ON tt.task_uuid = ws.task_uuid AND tt.most_recent
    WHERE n.to_state IN ('pending', 'waiting_for_retry', 'complete', 'resolved_manually')
      AND tt.to_state IN ('blocked_by_failures', 'error')
    ORDER BY ws.task_uuid, n.workflow_step_transition_uuid DESC
    ON CONFLICT (task_uuid) DO UPDATE
        SET requested_at = now(),
            workflow_step_transition_uuid = EXCLUDED.workflow_step_transition_uuid;
    RETURN NULL;
END;
$$;

COMMENT ON FUNCTION tasker.record_redrive_requests() IS
'AFTER INSERT statement trigger on workflow_step_transitions: the redrive requests of record_redrive_request (0003) for the whole statement, one per task.';

DROP TRIGGER trg_step_redrive_request ON tasker.workflow_step_transitions;
CREATE TRIGGER trg_step_redrive_request
    AFTER INSERT ON tasker.workflow_step_transitions
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION tasker.record_redrive_requests();

-- ---------------------------------------------------------------------------
-- DAG edge checks, once per statement
-- ---------------------------------------------------------------------------
-- The checks of check_workflow_step_edge (0003) over all the edges a
-- statement wrote: both ends in one task, no cycle. Checked after the
-- statement, so a multi-row insert is checked as a whole.
CREATE FUNCTION tasker.check_workflow_step_edges() RETURNS trigger
LANGUAGE plpgsql
AS $$
DECLARE
    v_from uuid;
    v_to   uuid;
BEGIN
    SELECT n.from_step_uuid, n.to_step_uuid INTO v_from, v_to
    FROM new_edges n
    JOIN tasker.workflow_steps f ON f.workflow_step_uuid = n.from_step_uuid
    JOIN tasker.workflow_steps t ON t.workflow_step_uuid = n.to_step_uuid
    WHERE f.task_uuid <> t.task_uuid
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'edge % -> % joins steps of different tasks', v_from, v_to
            USING ERRCODE = 'check_violation';
    END IF;

    WITH RECURSIVE below(edge_from, edge_to, step_uuid) AS (
        SELECT n.from_step_uuid, n.to_step_uuid, n.to_step_uuid
        FROM new_edges n
        UNION
        SELECT b.edge_from, b.edge_to, e.to_step_uuid
        FROM below b
        JOIN tasker.workflow_step_edges e ON e.from_step_uuid = b.step_uuid
    )
    SELECT b.edge_from, b.edge_to INTO v_from, v_to
    FROM below b
    WHERE b.step_uuid = b.edge_from
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'edge % -> % would create a dependency cycle', v_from, v_to
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END;
$$;

COMMENT ON FUNCTION tasker.check_workflow_step_edges() IS
'AFTER INSERT / UPDATE statement trigger on workflow_step_edges: every edge of the statement joins two steps of one task and closes no cycle (check_violation otherwise).';

DROP TRIGGER trg_workflow_step_edges_check ON tasker.workflow_step_edges;
CREATE TRIGGER trg_workflow_step_edges_check_insert
    AFTER INSERT ON tasker.workflow_step_edges
    REFERENCING NEW TABLE AS new_edges
    FOR EACH STATEMENT EXECUTE FUNCTION tasker.check_workflow_step_edges();
CREATE TRIGGER trg_workflow_step_edges_check_update
    AFTER UPDATE ON tasker.workflow_step_edges
    REFERENCING NEW TABLE AS new_edges
    FOR EACH STATEMENT EXECUTE FUNCTION tasker.check_workflow_step_edges();

-- ---------------------------------------------------------------------------
-- Statistics on the tables that grow with every task
-- ---------------------------------------------------------------------------
-- With the defaults (50 rows + 10 % for analyze) a fresh database keeps the
-- plans made on near-empty tables for a long time; these tables grow by
-- several rows per step.
ALTER TABLE tasker.tasks SET (autovacuum_analyze_scale_factor = 0.02, autovacuum_analyze_threshold = 500,
                              autovacuum_vacuum_scale_factor = 0.05);
ALTER TABLE tasker.workflow_steps SET (autovacuum_analyze_scale_factor = 0.02, autovacuum_analyze_threshold = 500,
                                       autovacuum_vacuum_scale_factor = 0.05);
ALTER TABLE tasker.workflow_step_edges SET (autovacuum_analyze_scale_factor = 0.02, autovacuum_analyze_threshold = 500);
ALTER TABLE tasker.task_transitions SET (autovacuum_analyze_scale_factor = 0.02, autovacuum_analyze_threshold = 500,
                                         autovacuum_vacuum_scale_factor = 0.05);
ALTER TABLE tasker.workflow_step_transitions SET (autovacuum_analyze_scale_factor = 0.02,
                                                  autovacuum_analyze_threshold = 500,
                                                  autovacuum_vacuum_scale_factor = 0.05);
ALTER TABLE tasker.workflow_step_result_audit SET (autovacuum_analyze_scale_factor = 0.02,
                                                   autovacuum_analyze_threshold = 500);

-- The orchestration queues, which the functions below name directly.
DO $$
BEGIN
    PERFORM pgmq.create('orchestration_step_results');
    PERFORM pgmq.create('orchestration_task_requests');
END
$$;

-- ===========================================================================
-- Task creation
-- ===========================================================================
-- Creates tasks in the caller's transaction, and carries each as far as the
-- engine would at once: Initialize (-> pending), then Start (-> initializing),
-- ReadyStepsFound (-> enqueuing_steps), the root steps pending -> enqueued
-- with their worker messages, StepsEnqueued (-> steps_in_process). A
-- template has at least one step, so it has a root step, which is ready.
--   p_requests:  [{"i", "named_task_uuid", "identity_strategy", "context",
--                  "idempotency_key", "initiator", "source_system", "reason",
--                  "tags", "priority", "correlation_id",
--                  "parent_correlation_id"}, ...]; "i" numbers the requests;
--                "context" and "tags" are JSON texts (parsed here, as the
--                one-at-a-time path let PostgreSQL parse them)
--   p_templates: {"<named_task_uuid>": {"namespace": "<name>",
--                  "steps": [{"name", "retryable", "max_attempts", "inputs"}, ...],
--                  "edges": [{"parent", "child"}, ...]}, ...}
--   p_archive:   request messages (queue orchestration_task_requests) to
--                archive in the same transaction, or NULL
-- The identity hash is that of the one-at-a-time path (engine.c): the
-- template and the idempotency key; or a fresh uuid (always_unique); or the
-- template and the context's canonical text. A request whose identity
-- exists already (or comes earlier in p_requests) creates nothing: its row
-- has NULL task_uuid. Raises no_data_found for a step name that is not
-- registered. Returns one row per request.
CREATE FUNCTION tasker.create_tasks(
    p_requests       jsonb,
    p_templates      jsonb,
    p_processor_uuid uuid,
    p_archive        bigint[] DEFAULT NULL
) RETURNS TABLE (i integer, task_uuid uuid, correlation_id uuid)
LANGUAGE plpgsql
AS $$
#variable_conflict use_column
DECLARE
    v_i      integer[];
    v_task   uuid[];
    v_corr   uuid[];
    v_nt     uuid[];
    v_s_uuid  uuid[];     -- the steps, and whether each is a root
    v_s_root  boolean[];
    v_map     jsonb;      -- "<task>:<step name>" -> step uuid
    v_r_queue text[];     -- the root steps' worker queues and messages
    v_r_msg   jsonb[];
    v_absent  text;
    v_queue   record;
BEGIN
    -- Tasks: one per distinct identity not in the table yet.
    WITH r AS (
        SELECT x.*,
               CASE WHEN x.idempotency_key IS NOT NULL
                        THEN encode(sha256(convert_to(x.named_task_uuid::text || ':key:' || x.idempotency_key, 'UTF8')), 'hex')
                    WHEN x.identity_strategy = 'always_unique'
                        THEN tasker.uuid_generate_v7()::text
                    ELSE encode(sha256(convert_to(x.named_task_uuid::text || ':ctx:'
                                                  || x.context::text, 'UTF8')), 'hex')
               END AS identity_hash
        FROM (SELECT y.i, y.named_task_uuid, y.identity_strategy,
                     COALESCE(y.context::jsonb, '{}'::jsonb) AS context, y.idempotency_key,
                     y.initiator, y.source_system, y.reason, y.tags::jsonb AS tags, y.priority,
                     y.correlation_id, y.parent_correlation_id
              FROM jsonb_to_recordset(p_requests) AS y(
                       i integer, named_task_uuid uuid, identity_strategy text, context text,
                       idempotency_key text, initiator text, source_system text, reason text,
                       tags text, priority integer, correlation_id uuid,
                       parent_correlation_id uuid)) AS x
    ),
    firsts AS (
        SELECT DISTINCT ON (r.identity_hash) r.*
        FROM r
        ORDER BY r.identity_hash, r.i
    ),
    ins AS (
        INSERT INTO tasker.tasks AS t
            (task_uuid, named_task_uuid, identity_hash, context, initiator, source_system, reason,
             tags, priority, correlation_id, parent_correlation_id)
        SELECT tasker.uuid_generate_v7(), f.named_task_uuid, f.identity_hash,
               f.context, f.initiator, f.source_system, f.reason, f.tags,
               COALESCE(f.priority, 0), COALESCE(f.correlation_id, tasker.uuid_generate_v7()),
               f.parent_correlation_id
        FROM firsts f
        ORDER BY f.i
        ON CONFLICT ON CONSTRAINT tasks_identity_hash_unique DO NOTHING
        RETURNING t.task_uuid, t.identity_hash, t.correlation_id, t.named_task_uuid
    )
    SELECT array_agg(f.i ORDER BY f.i), array_agg(ins.task_uuid ORDER BY f.i),
           array_agg(ins.correlation_id ORDER BY f.i), array_agg(ins.named_task_uuid ORDER BY f.i)
    INTO v_i, v_task, v_corr, v_nt
    FROM ins
    JOIN firsts f ON f.identity_hash = ins.identity_hash;

    IF v_task IS NOT NULL THEN
        -- Steps, in template order, with their uuids drawn here so that the
        -- edges can name them (v_map: "<task>:<step name>" -> step uuid),
        -- and the worker messages of the root steps.
        WITH s AS MATERIALIZED (
            SELECT t.task_uuid, t.corr, t.nt, e.ord, st.name, ns.named_step_uuid,
                   COALESCE(st.retryable, true) AS retryable,
                   COALESCE(st.max_attempts, 3) AS max_attempts,
                   COALESCE(st.inputs, '{}'::jsonb) AS inputs,
                   tasker.uuid_generate_v7() AS step_uuid,
                   NOT EXISTS (SELECT 1 FROM jsonb_array_elements(p_templates -> t.nt::text -> 'edges') AS d(edge)
                               WHERE d.edge ->> 'child' = st.name) AS root
            FROM unnest(v_task, v_nt, v_corr) AS t(task_uuid, nt, corr)
            CROSS JOIN LATERAL jsonb_array_elements(p_templates -> t.nt::text -> 'steps')
                 WITH ORDINALITY AS e(step, ord)
            CROSS JOIN LATERAL jsonb_to_record(e.step)
                 AS st(name text, retryable boolean, max_attempts integer, inputs jsonb)
            LEFT JOIN tasker.named_steps ns ON ns.name = st.name
        ),
        missing AS (
            SELECT s.name FROM s WHERE s.named_step_uuid IS NULL LIMIT 1
        ),
        ins AS (
            INSERT INTO tasker.workflow_steps
                (workflow_step_uuid, task_uuid, named_step_uuid, retryable, max_attempts, inputs)
            SELECT s.step_uuid, s.task_uuid, s.named_step_uuid, s.retryable, s.max_attempts, s.inputs
            FROM s
            WHERE NOT EXISTS (SELECT 1 FROM missing)
            ORDER BY s.task_uuid, s.ord
        )
        SELECT array_agg(s.step_uuid), array_agg(s.root),
               jsonb_object_agg(s.task_uuid::text || ':' || s.name, s.step_uuid),
               array_agg('worker_' || (p_templates -> s.nt::text ->> 'namespace') || '_queue'
                         ORDER BY s.task_uuid, s.step_uuid) FILTER (WHERE s.root),
               array_agg(jsonb_build_object('task_uuid', s.task_uuid, 'step_uuid', s.step_uuid,
                                            'correlation_id', s.corr)
                         ORDER BY s.task_uuid, s.step_uuid) FILTER (WHERE s.root),
               (SELECT m.name FROM missing m)
        INTO v_s_uuid, v_s_root, v_map, v_r_queue, v_r_msg, v_absent
        FROM s;
        IF v_absent IS NOT NULL THEN
            RAISE EXCEPTION 'step "%" is not registered', v_absent USING ERRCODE = 'no_data_found';
        END IF;

        INSERT INTO tasker.workflow_step_edges (from_step_uuid, to_step_uuid, name)
        SELECT (v_map ->> (t.task_uuid::text || ':' || (d.edge ->> 'parent')))::uuid,
               (v_map ->> (t.task_uuid::text || ':' || (d.edge ->> 'child')))::uuid, 'provides'
        FROM unnest(v_task, v_nt) AS t(task_uuid, nt)
        CROSS JOIN LATERAL jsonb_array_elements(p_templates -> t.nt::text -> 'edges') AS d(edge);

        -- Every step: Initialize; the roots also Enqueue.
        INSERT INTO tasker.workflow_step_transitions
            (workflow_step_uuid, from_state, to_state, metadata, sort_key, most_recent)
        SELECT s.step_uuid, NULL, 'pending', '{"event": "Initialize"}'::jsonb, 1, NOT s.root
        FROM unnest(v_s_uuid, v_s_root) AS s(step_uuid, root)
        UNION ALL
        SELECT s.step_uuid, 'pending', 'enqueued',
               jsonb_build_object('event', 'Enqueue', 'processor_uuid', p_processor_uuid), 2, true
        FROM unnest(v_s_uuid, v_s_root) AS s(step_uuid, root)
        WHERE s.root;

        INSERT INTO tasker.task_transitions
            (task_uuid, from_state, to_state, metadata, sort_key, most_recent, processor_uuid)
        SELECT t.task_uuid, p.from_state, p.to_state, jsonb_build_object('event', p.event), p.n,
               p.n = 4, CASE WHEN p.n > 1 THEN p_processor_uuid END
        FROM unnest(v_task) AS t(task_uuid)
        CROSS JOIN (VALUES (1, NULL, 'pending', 'Initialize'),
                           (2, 'pending', 'initializing', 'Start'),
                           (3, 'initializing', 'enqueuing_steps', 'ReadyStepsFound'),
                           (4, 'enqueuing_steps', 'steps_in_process', 'StepsEnqueued'))
             AS p(n, from_state, to_state, event);

        -- The root steps' messages, one batch (and one notification) per queue.
        FOR v_queue IN
            SELECT r.queue AS name, array_agg(r.msg ORDER BY r.ord) AS messages
            FROM unnest(v_r_queue, v_r_msg) WITH ORDINALITY AS r(queue, msg, ord)
            GROUP BY r.queue
        LOOP
            PERFORM tasker.pgmq_send_batch_with_notify(v_queue.name, v_queue.messages, 0);
        END LOOP;
    END IF;

    IF p_archive IS NOT NULL THEN
        WITH moved AS (
            DELETE FROM pgmq.q_orchestration_task_requests q
            WHERE q.msg_id = ANY (p_archive)
            RETURNING q.msg_id, q.read_ct, q.enqueued_at, q.vt, q.message, q.headers
        )
        INSERT INTO pgmq.a_orchestration_task_requests (msg_id, read_ct, enqueued_at, vt, message, headers)
        SELECT m.msg_id, m.read_ct, m.enqueued_at, m.vt, m.message, m.headers FROM moved m;
    END IF;

    RETURN QUERY
    SELECT x.i, c.task_uuid, c.correlation_id
    FROM jsonb_to_recordset(p_requests) AS x(i integer)
    LEFT JOIN unnest(v_i, v_task, v_corr) AS c(i, task_uuid, correlation_id) ON c.i = x.i
    ORDER BY x.i;
END;
$$;

COMMENT ON FUNCTION tasker.create_tasks(jsonb, jsonb, uuid, bigint[]) IS
'Creates a batch of tasks (steps, edges, transitions) and enqueues their root steps, as create_task plus the engine''s first drive; archives the request messages given. A duplicate identity yields a row with NULL task_uuid.';

-- ===========================================================================
-- Worker: claim
-- ===========================================================================
-- claim_step + worker_step_input (0007) for a batch of queue messages,
-- with the same verdicts, transitions and handler input. Per message:
--   'claimed' / 'reclaimed'  as claim_step; input is the handler input
--   'skip'     as claim_step (no such step, cancelled, finished, running
--              elsewhere, or a later message for a step claimed here)
--   'invalid'  the message is not {"task_uuid", "step_uuid", "correlation_id"?}
--              with canonical uuids
--   'foreign'  p_handled does not list the step's handler key
--              [namespace, task name, version, step name]: nothing done
-- namespace_name .. step_name give the key of every existing step.
-- p_handled: a JSON array of such keys, or NULL to claim any step.
CREATE FUNCTION tasker.worker_claim_steps(
    p_worker_uuid uuid,
    p_msg_ids     bigint[],
    p_read_cts    integer[],
    p_messages    jsonb[],
    p_handled     jsonb DEFAULT NULL
) RETURNS TABLE (msg_id bigint, verdict text, namespace_name text, task_name text,
                 task_version text, step_name text, input jsonb)
LANGUAGE plpgsql
AS $$
#variable_conflict use_column
DECLARE
    -- the messages: parsed, with their step's handler key
    k_id    bigint[];
    k_rct   integer[];
    k_step  uuid[];
    k_corr  uuid[];     -- the message's correlation id, else the task's
    k_ok    boolean[];  -- well-formed
    k_ns    text[];     -- NULL: no such step
    k_name  text[];
    k_ver   text[];
    k_sname text[];
    k_hand  boolean[];  -- the step's key is handled here
    k_go    boolean[];  -- the message to claim its step from
    v_steps uuid[];     -- steps to claim, one message each
    v_go    uuid[];     -- steps claimed or reclaimed here
    v_recl  uuid[];     -- of those, the reclaims
BEGIN
    IF p_msg_ids IS NULL THEN
        RETURN;
    END IF;

    WITH m AS (
        SELECT u.id, u.rct, p.step, p.corr,
               p.task IS NOT NULL AND p.step IS NOT NULL
                   AND (u.msg -> 'correlation_id' IS NULL OR p.corr IS NOT NULL) AS ok,
               tn.name::text AS ns, nt.name::text AS name, nt.version::text AS ver,
               ns.name::text AS sname, t.correlation_id AS task_corr
        FROM unnest(p_msg_ids, p_read_cts, p_messages) AS u(id, rct, msg)
        CROSS JOIN LATERAL (
            SELECT tasker.uuid_or_null(u.msg ->> 'task_uuid') AS task,
                   tasker.uuid_or_null(u.msg ->> 'step_uuid') AS step,
                   tasker.uuid_or_null(u.msg ->> 'correlation_id') AS corr
        ) AS p
        LEFT JOIN tasker.workflow_steps ws ON ws.workflow_step_uuid = p.step AND p.task IS NOT NULL
        LEFT JOIN tasker.tasks t ON t.task_uuid = ws.task_uuid
        LEFT JOIN tasker.named_steps ns ON ns.named_step_uuid = ws.named_step_uuid
        LEFT JOIN tasker.named_tasks nt ON nt.named_task_uuid = t.named_task_uuid
        LEFT JOIN tasker.task_namespaces tn ON tn.task_namespace_uuid = nt.task_namespace_uuid
    ),
    c AS (
        SELECT m.*,
               m.ok AND m.ns IS NOT NULL
               AND (p_handled IS NULL
                    OR EXISTS (SELECT 1 FROM jsonb_array_elements(p_handled) AS h(key)
                               WHERE h.key = jsonb_build_array(m.ns, m.name, m.ver, m.sname)))
               AS handled
        FROM m
    ),
    g AS (
        -- go: the first message of each handled step
        SELECT c.*, c.handled AND NOT EXISTS (SELECT 1 FROM c c2
                                              WHERE c2.handled AND c2.step = c.step
                                                AND c2.id < c.id) AS go
        FROM c
    )
    SELECT array_agg(g.id ORDER BY g.id), array_agg(g.rct ORDER BY g.id),
           array_agg(g.step ORDER BY g.id), array_agg(COALESCE(g.corr, g.task_corr) ORDER BY g.id),
           array_agg(g.ok ORDER BY g.id), array_agg(g.ns ORDER BY g.id),
           array_agg(g.name ORDER BY g.id), array_agg(g.ver ORDER BY g.id),
           array_agg(g.sname ORDER BY g.id), array_agg(g.handled ORDER BY g.id),
           array_agg(g.go ORDER BY g.id), array_agg(g.step ORDER BY g.step) FILTER (WHERE g.go)
    INTO k_id, k_rct, k_step, k_corr, k_ok, k_ns, k_name, k_ver, k_sname, k_hand, k_go, v_steps
    FROM g;

    IF v_steps IS NOT NULL THEN
        -- The lock of claim_step and transition_step_state_from_any, in uuid order.
        PERFORM 1 FROM tasker.workflow_steps ws
        WHERE ws.workflow_step_uuid = ANY (v_steps)
        ORDER BY ws.workflow_step_uuid
        FOR NO KEY UPDATE;

        -- Under the locks (a new snapshot), the decision and the transition
        -- in one statement: enqueued or pending and not in process: claim
        -- (a step without any transition row is pending); in_progress from
        -- a message read before: reclaim.
        WITH old AS (
            UPDATE tasker.workflow_step_transitions st
            SET most_recent = false, updated_at = now()
            FROM tasker.workflow_steps ws, unnest(k_step, k_rct, k_go) AS k(step, rct, go)
            WHERE k.go AND ws.workflow_step_uuid = k.step
              AND st.workflow_step_uuid = k.step AND st.most_recent
              AND (st.to_state IN ('enqueued', 'pending') AND NOT ws.in_process
                   OR st.to_state = 'in_progress' AND k.rct > 1)
            RETURNING st.workflow_step_uuid, st.to_state, st.sort_key, st.metadata
        ),
        fresh AS (
            SELECT k.step
            FROM unnest(k_step, k_go) AS k(step, go)
            JOIN tasker.workflow_steps ws ON ws.workflow_step_uuid = k.step
            WHERE k.go AND NOT ws.in_process
              AND NOT EXISTS (SELECT 1 FROM tasker.workflow_step_transitions st
                              WHERE st.workflow_step_uuid = k.step)
        ),
        ins AS (
            INSERT INTO tasker.workflow_step_transitions
                (workflow_step_uuid, from_state, to_state, metadata, sort_key, most_recent)
            SELECT k.step, old.to_state, 'in_progress',
                   CASE WHEN old.to_state = 'in_progress'
                        THEN jsonb_build_object('worker_uuid', p_worker_uuid, 'correlation_id', k.corr,
                                                'event', 'Reclaim',
                                                'previous_worker_uuid', old.metadata -> 'worker_uuid',
                                                'read_ct', k.rct)
                        ELSE jsonb_build_object('worker_uuid', p_worker_uuid, 'correlation_id', k.corr,
                                                'event', 'Start') END,
                   COALESCE(old.sort_key, 0) + 1, true
            FROM unnest(k_step, k_corr, k_rct, k_go) AS k(step, corr, rct, go)
            LEFT JOIN old ON old.workflow_step_uuid = k.step
            WHERE k.go AND (old.workflow_step_uuid IS NOT NULL
                            OR k.step IN (SELECT fresh.step FROM fresh))
            ORDER BY k.step
            RETURNING workflow_step_uuid, from_state
        )
        SELECT array_agg(ins.workflow_step_uuid),
               array_agg(ins.workflow_step_uuid) FILTER (WHERE ins.from_state = 'in_progress')
        INTO v_go, v_recl
        FROM ins;
    END IF;

    IF v_go IS NOT NULL THEN
        UPDATE tasker.workflow_steps ws
        SET in_process = true, attempts = ws.attempts + 1, last_attempted_at = now(),
            processed = false, processed_at = NULL, updated_at = now()
        WHERE ws.workflow_step_uuid = ANY (v_go);
    END IF;

    RETURN QUERY
    WITH RECURSIVE up(origin, step_uuid, distance) AS (
        SELECT e.to_step_uuid, e.from_step_uuid, 1
        FROM tasker.workflow_step_edges e
        WHERE e.to_step_uuid = ANY (v_go)
        UNION
        SELECT u.origin, e.from_step_uuid, u.distance + 1
        FROM up u
        JOIN tasker.workflow_step_edges e ON e.to_step_uuid = u.step_uuid
        WHERE u.distance < 50
    ),
    deps AS (
        SELECT a.origin, jsonb_object_agg(r.name, r.results) AS results
        FROM (SELECT DISTINCT u.origin, u.step_uuid FROM up u) AS a
        CROSS JOIN LATERAL (
            SELECT ns.name,
                   CASE WHEN jsonb_typeof(ws.results) = 'object' AND ws.results ? 'success'
                        THEN ws.results -> 'result' ELSE ws.results END AS results
            FROM tasker.workflow_steps ws
            JOIN tasker.named_steps ns ON ns.named_step_uuid = ws.named_step_uuid
            WHERE ws.workflow_step_uuid = a.step_uuid
            OFFSET 0
        ) AS r
        GROUP BY a.origin
    )
    SELECT k.id,
           CASE WHEN NOT k.ok THEN 'invalid'
                WHEN k.ns IS NULL THEN 'skip'
                WHEN NOT k.hand THEN 'foreign'
                WHEN k.go AND k.step = ANY (COALESCE(v_recl, '{}')) THEN 'reclaimed'
                WHEN k.go AND k.step = ANY (COALESCE(v_go, '{}')) THEN 'claimed'
                ELSE 'skip' END,
           k.ns, k.name, k.ver, k.sname,
           CASE WHEN k.go AND k.step = ANY (COALESCE(v_go, '{}')) THEN
               jsonb_build_object(
                   'task_uuid', t.task_uuid,
                   'step_uuid', ws.workflow_step_uuid,
                   'step_name', k.sname,
                   'correlation_id', k.corr,
                   'attempt', ws.attempts,
                   'task', jsonb_build_object(
                       'namespace', k.ns,
                       'name', k.name,
                       'version', k.ver,
                       'context', t.context,
                       'initiator', t.initiator,
                       'tags', t.tags),
                   'step_inputs', COALESCE(ws.inputs, '{}'::jsonb),
                   'dependency_results', COALESCE(d.results, '{}'::jsonb))
           END
    FROM unnest(k_id, k_step, k_corr, k_ok, k_ns, k_name, k_ver, k_sname, k_hand, k_go)
         AS k(id, step, corr, ok, ns, name, ver, sname, hand, go)
    LEFT JOIN tasker.workflow_steps ws ON ws.workflow_step_uuid = k.step AND k.go
    LEFT JOIN tasker.tasks t ON t.task_uuid = ws.task_uuid
    LEFT JOIN deps d ON d.origin = k.step AND k.go
    ORDER BY k.id;
END;
$$;

COMMENT ON FUNCTION tasker.worker_claim_steps(uuid, bigint[], integer[], jsonb[], jsonb) IS
'claim_step + worker_step_input for a batch of worker queue messages (verdicts claimed, reclaimed, skip, invalid, foreign); see 0010.';

-- ===========================================================================
-- Worker: report
-- ===========================================================================
-- The report of a batch of finished steps, as the one-at-a-time worker
-- does it per step: transition_step_state_atomic(step, {in_progress},
-- to_state, {worker_uuid, correlation_id, event: result}, result) and,
-- when written, the notice {task_uuid, step_uuid, correlation_id} on
-- orchestration_step_results (one notification for the batch). The result
-- audit rows come from the trigger. Archiving the worker's messages is the
-- caller's (the statement that calls this names the worker queue).
--   p_reports: [{"step_uuid", "task_uuid", "correlation_id", "to_state",
--                "results"}, ...]; to_state is enqueued_for_orchestration
--              or enqueued_as_error_for_orchestration
-- Returns written = false for a step that left in_progress meanwhile (and
-- for a second report of one step in the batch).
CREATE FUNCTION tasker.worker_report_steps(p_worker_uuid uuid, p_reports jsonb)
RETURNS TABLE (step_uuid uuid, written boolean)
LANGUAGE plpgsql
AS $$
#variable_conflict use_column
DECLARE
    v_steps   uuid[];    -- one report per step, in the order given
    v_tasks   text[];
    v_corrs   text[];
    v_states  text[];
    v_results jsonb[];
    v_go      uuid[];    -- the steps written
    v_ids     bigint[];
    v_bad     bigint;
BEGIN
    SELECT array_agg(r.step_uuid ORDER BY r.ord), array_agg(r.task_uuid ORDER BY r.ord),
           array_agg(r.correlation_id ORDER BY r.ord), array_agg(r.to_state ORDER BY r.ord),
           array_agg(r.results ORDER BY r.ord),
           count(*) FILTER (WHERE r.to_state IS DISTINCT FROM 'enqueued_for_orchestration'
                              AND r.to_state IS DISTINCT FROM 'enqueued_as_error_for_orchestration')
    INTO v_steps, v_tasks, v_corrs, v_states, v_results, v_bad
    FROM (SELECT DISTINCT ON (x.step_uuid) x.*
          FROM ROWS FROM (jsonb_to_recordset(p_reports)
                          AS (step_uuid uuid, task_uuid text, correlation_id text, to_state text,
                              results jsonb))
               WITH ORDINALITY AS x(step_uuid, task_uuid, correlation_id, to_state, results, ord)
          ORDER BY x.step_uuid, x.ord) AS r;
    IF v_steps IS NULL THEN
        RETURN;
    END IF;
    IF v_bad > 0 THEN
        RAISE EXCEPTION 'a worker report goes to enqueued_for_orchestration or enqueued_as_error_for_orchestration'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    -- The lock of transition_step_state_from_any, in uuid order.
    PERFORM 1 FROM tasker.workflow_steps ws
    WHERE ws.workflow_step_uuid = ANY (v_steps)
    ORDER BY ws.workflow_step_uuid
    FOR NO KEY UPDATE;

    -- in_progress -> the reported state (a new snapshot, under the locks).
    WITH old AS (
        UPDATE tasker.workflow_step_transitions st
        SET most_recent = false, updated_at = now()
        WHERE st.workflow_step_uuid = ANY (v_steps) AND st.most_recent AND st.to_state = 'in_progress'
        RETURNING st.workflow_step_uuid, st.sort_key
    ),
    ins AS (
        INSERT INTO tasker.workflow_step_transitions
            (workflow_step_uuid, from_state, to_state, metadata, sort_key, most_recent)
        SELECT r.step, 'in_progress', r.state,
               jsonb_build_object('worker_uuid', p_worker_uuid, 'correlation_id', r.corr,
                                  'event', r.results),
               old.sort_key + 1, true
        FROM unnest(v_steps, v_states, v_corrs, v_results) WITH ORDINALITY AS r(step, state, corr, results, ord)
        JOIN old ON old.workflow_step_uuid = r.step
        ORDER BY r.ord
        RETURNING workflow_step_uuid
    )
    SELECT array_agg(ins.workflow_step_uuid) INTO v_go FROM ins;

    IF v_go IS NOT NULL THEN
        UPDATE tasker.workflow_steps ws
        SET in_process = false, processed = false, processed_at = NULL, results = r.results,
            updated_at = now()
        FROM unnest(v_steps, v_results) AS r(step, results)
        WHERE ws.workflow_step_uuid = r.step AND r.step = ANY (v_go);

        WITH sent AS (
            INSERT INTO pgmq.q_orchestration_step_results AS q (vt, message)
            SELECT clock_timestamp(),
                   jsonb_build_object('task_uuid', r.task, 'step_uuid', r.step,
                                      'correlation_id', r.corr)
            FROM unnest(v_steps, v_tasks, v_corrs) WITH ORDINALITY AS r(step, task, corr, ord)
            WHERE r.step = ANY (v_go)
            ORDER BY r.ord
            RETURNING q.msg_id
        )
        SELECT array_agg(sent.msg_id ORDER BY sent.msg_id) INTO v_ids FROM sent;
        PERFORM tasker.pgmq_notify_batch('orchestration_step_results', v_ids);
    END IF;

    RETURN QUERY
    SELECT s.step, s.step = ANY (COALESCE(v_go, '{}'))
    FROM unnest(v_steps) AS s(step);
END;
$$;

COMMENT ON FUNCTION tasker.worker_report_steps(uuid, jsonb) IS
'Worker report of a batch of steps: in_progress -> enqueued_(as_error_)for_orchestration with the result, and the notices on orchestration_step_results; see 0010.';

-- The notification pgmq_send_batch_with_notify (0004) sends for a batch.
CREATE FUNCTION tasker.pgmq_notify_batch(p_queue_name text, p_msg_ids bigint[])
RETURNS void
LANGUAGE plpgsql
AS $$
DECLARE
    ns      text := tasker.extract_queue_namespace(p_queue_name);
    payload text;
BEGIN
    IF cardinality(p_msg_ids) IS NULL OR cardinality(p_msg_ids) = 0 THEN
        RETURN;
    END IF;
    payload := json_build_object(
        'event_type', 'batch_ready',
        'msg_ids', p_msg_ids,
        'queue_name', p_queue_name,
        'namespace', ns,
        'message_count', cardinality(p_msg_ids),
        'ready_at', now(),
        'delay_seconds', 0)::text;
    IF octet_length(payload) > 7900 THEN
        payload := json_build_object(
            'event_type', 'batch_ready',
            'queue_name', p_queue_name,
            'namespace', ns,
            'message_count', cardinality(p_msg_ids),
            'ready_at', now(),
            'delay_seconds', 0,
            'payload_omitted', true)::text;
    END IF;
    PERFORM tasker.pgmq_notify_ready(p_queue_name, payload);
END;
$$;

-- ===========================================================================
-- Orchestration: step results
-- ===========================================================================
-- Takes up to p_qty visible messages of orchestration_step_results and
-- settles, in this transaction, the tasks for which the engine's decision
-- is the ordinary one: every message of the task in the batch reports a
-- successful step in enqueued_for_orchestration, the task is in
-- steps_in_process, and each of its steps has a transition row and is in
-- pending, enqueued, in_progress, enqueued_for_orchestration,
-- enqueued_as_error_for_orchestration, complete or resolved_manually. For
-- those, as process_result and eng_drive_locked (orchestrate.c) would:
--   each step: enqueued_for_orchestration -> complete (Complete);
--   the task, by its execution status afterwards (the rules of
--   get_task_execution_context and get_step_readiness_status, 0003):
--     processing                stays in steps_in_process
--     all_complete              -> evaluating_results (AllStepsCompleted)
--                               -> complete (AllStepsSuccessful)
--     has_ready_steps           -> evaluating_results (StepCompleted)
--                               -> enqueuing_steps (ReadyStepsFound), the
--                               ready steps pending -> enqueued (Enqueue) with
--                               their worker messages,
--                               -> steps_in_process (StepsEnqueued)
--     waiting_for_dependencies  -> evaluating_results (StepCompleted)
--                               -> waiting_for_dependencies (NoDependenciesReady)
--   and the messages are archived. Every other message is taken as
--   pgmq.read would (hidden for p_vt seconds, read_ct + 1) and returned
--   with handled = false, for the one-at-a-time path. Handled messages are
--   returned with handled = true.
CREATE FUNCTION tasker.orchestrate_step_results(p_qty integer, p_vt integer, p_processor_uuid uuid)
RETURNS TABLE (msg_id bigint, read_ct integer, message text, handled boolean)
LANGUAGE plpgsql
AS $$
#variable_conflict use_column
DECLARE
    v_ids     bigint[];
    v_mtask   uuid[];     -- the messages' task and step
    v_mstep   uuid[];
    v_tasks   uuid[];     -- tasks decided here
    v_fast    bigint[];   -- their messages
    v_steps   uuid[];     -- and steps
    v_moving  uuid[];     -- tasks that change state, and to what execution status
    v_status  text[];
    v_ready   uuid[];     -- steps to enqueue
    v_settled bigint;
    v_queue   record;
BEGIN
    SELECT array_agg(q.msg_id ORDER BY q.msg_id),
           array_agg(tasker.uuid_or_null(q.message ->> 'task_uuid') ORDER BY q.msg_id),
           array_agg(tasker.uuid_or_null(q.message ->> 'step_uuid') ORDER BY q.msg_id)
    INTO v_ids, v_mtask, v_mstep
    FROM (SELECT q.msg_id, q.message
          FROM pgmq.q_orchestration_step_results q
          WHERE q.vt <= clock_timestamp()
          ORDER BY q.msg_id
          LIMIT greatest(p_qty, 0)
          FOR UPDATE SKIP LOCKED) AS q;
    IF v_ids IS NULL THEN
        RETURN;
    END IF;

    -- The tasks' row locks, in uuid order.
    PERFORM 1 FROM tasker.tasks t
    WHERE t.task_uuid = ANY (v_mtask)
    ORDER BY t.task_uuid
    FOR NO KEY UPDATE;

    -- Under the locks (a new snapshot): the tasks this function decides.
    WITH m AS (
        SELECT u.id, u.task, u.step
        FROM unnest(v_ids, v_mtask, v_mstep) AS u(id, task, step)
    ),
    f AS (
        SELECT m.id, m.task, m.step,
               ws.task_uuid = m.task AND st.to_state = 'enqueued_for_orchestration'
               AND COALESCE(ws.results -> 'success', 'true'::jsonb) = 'true'::jsonb
               AND row_number() OVER (PARTITION BY m.step ORDER BY m.id) = 1 AS plain
        FROM m
        LEFT JOIN tasker.workflow_steps ws ON ws.workflow_step_uuid = m.step
        LEFT JOIN tasker.workflow_step_transitions st
               ON st.workflow_step_uuid = m.step AND st.most_recent
    ),
    ok AS (
        SELECT f.task
        FROM f
        WHERE f.task IS NOT NULL
        GROUP BY f.task
        HAVING bool_and(COALESCE(f.plain, false))
           AND EXISTS (SELECT 1 FROM tasker.task_transitions tt
                       WHERE tt.task_uuid = f.task AND tt.most_recent
                         AND tt.to_state = 'steps_in_process')
           AND NOT EXISTS (SELECT 1
                           FROM tasker.workflow_steps ws
                           LEFT JOIN tasker.workflow_step_transitions st
                                  ON st.workflow_step_uuid = ws.workflow_step_uuid AND st.most_recent
                           WHERE ws.task_uuid = f.task
                             AND (st.to_state IS NULL
                                  OR st.to_state NOT IN ('pending', 'enqueued', 'in_progress',
                                                         'enqueued_for_orchestration',
                                                         'enqueued_as_error_for_orchestration',
                                                         'complete', 'resolved_manually')))
    )
    SELECT array_agg(DISTINCT ok.task) FILTER (WHERE ok.task IS NOT NULL),
           array_agg(f.id) FILTER (WHERE ok.task IS NOT NULL),
           array_agg(f.step) FILTER (WHERE ok.task IS NOT NULL)
    INTO v_tasks, v_fast, v_steps
    FROM f
    LEFT JOIN ok ON ok.task = f.task;

    IF v_tasks IS NOT NULL THEN
        -- The tasks' execution status once their reported steps are complete,
        -- and the steps that are ready then (both computed before writing,
        -- so that the steps' transitions are one statement).
        WITH s AS MATERIALIZED (
            SELECT ws.task_uuid, ws.workflow_step_uuid AS step,
                   CASE WHEN ws.workflow_step_uuid = ANY (v_steps) THEN 'complete'
                        ELSE st.to_state END AS state,
                   ws.processed OR ws.workflow_step_uuid = ANY (v_steps) AS processed,
                   ws.in_process AND NOT ws.workflow_step_uuid = ANY (v_steps) AS in_process,
                   ws.attempts, ws.max_attempts, ws.retryable,
                   ws.backoff_request_seconds, ws.last_attempted_at
            FROM tasker.workflow_steps ws
            JOIN tasker.workflow_step_transitions st
              ON st.workflow_step_uuid = ws.workflow_step_uuid AND st.most_recent
            WHERE ws.task_uuid = ANY (v_tasks)
        ),
        ready AS (
            SELECT s.task_uuid, s.step
            FROM s
            CROSS JOIN LATERAL (
                SELECT max(fl.created_at) AS at
                FROM tasker.workflow_step_transitions fl
                WHERE fl.workflow_step_uuid = s.step
                  AND fl.to_state IN ('error', 'enqueued_as_error_for_orchestration')
            ) AS fail
            WHERE s.state = 'pending' AND NOT s.processed AND NOT s.in_process
              AND (s.attempts = 0 OR (s.retryable AND s.attempts < s.max_attempts))
              -- every parent complete or resolved_manually (or completing now)
              AND NOT EXISTS (SELECT 1
                              FROM tasker.workflow_step_edges e
                              LEFT JOIN tasker.workflow_step_transitions pst
                                     ON pst.workflow_step_uuid = e.from_step_uuid AND pst.most_recent
                              WHERE e.to_step_uuid = s.step
                                AND e.from_step_uuid <> ALL (v_steps)
                                AND pst.to_state IS DISTINCT FROM 'complete'
                                AND pst.to_state IS DISTINCT FROM 'resolved_manually')
              AND COALESCE(tasker.calculate_step_next_retry_time(
                      s.backoff_request_seconds, s.last_attempted_at, fail.at,
                      s.attempts) <= now(), true)
        ),
        x AS (
            SELECT s.task_uuid,
                   CASE WHEN EXISTS (SELECT 1 FROM ready r WHERE r.task_uuid = s.task_uuid)
                            THEN 'has_ready_steps'
                        WHEN count(*) FILTER (WHERE s.state IN ('enqueued', 'in_progress',
                                                                'enqueued_for_orchestration',
                                                                'enqueued_as_error_for_orchestration')) > 0
                            THEN 'processing'
                        WHEN count(*) FILTER (WHERE s.state IN ('complete', 'resolved_manually')) = count(*)
                            THEN 'all_complete'
                        ELSE 'waiting_for_dependencies' END AS status
            FROM s
            GROUP BY s.task_uuid
        )
        SELECT (SELECT array_agg(x.task_uuid ORDER BY x.task_uuid) FROM x WHERE x.status <> 'processing'),
               (SELECT array_agg(x.status ORDER BY x.task_uuid) FROM x WHERE x.status <> 'processing'),
               (SELECT array_agg(r.step ORDER BY r.step) FROM ready r)
        INTO v_moving, v_status, v_ready;

        -- The reported steps enqueued_for_orchestration -> complete (Complete)
        -- and the ready ones pending -> enqueued (Enqueue), in one statement.
        WITH old AS (
            UPDATE tasker.workflow_step_transitions st
            SET most_recent = false, updated_at = now()
            WHERE st.workflow_step_uuid = ANY (v_steps || COALESCE(v_ready, '{}')) AND st.most_recent
              AND st.to_state = CASE WHEN st.workflow_step_uuid = ANY (v_steps)
                                     THEN 'enqueued_for_orchestration' ELSE 'pending' END
            RETURNING st.workflow_step_uuid, st.to_state, st.sort_key
        ),
        ins AS (
            INSERT INTO tasker.workflow_step_transitions
                (workflow_step_uuid, from_state, to_state, metadata, sort_key, most_recent)
            SELECT old.workflow_step_uuid, old.to_state,
                   CASE WHEN old.to_state = 'pending' THEN 'enqueued' ELSE 'complete' END,
                   CASE WHEN old.to_state = 'pending'
                        THEN jsonb_build_object('event', 'Enqueue', 'processor_uuid', p_processor_uuid)
                        ELSE '{"event": "Complete"}'::jsonb END,
                   old.sort_key + 1, true
            FROM old
            ORDER BY old.workflow_step_uuid
            RETURNING workflow_step_uuid, to_state
        )
        SELECT count(*) FILTER (WHERE ins.to_state = 'complete'),
               array_agg(ins.workflow_step_uuid) FILTER (WHERE ins.to_state = 'enqueued')
        INTO v_settled, v_ready
        FROM ins;
        IF v_settled <> cardinality(v_steps) THEN
            -- cannot happen under the tasks' locks; the caller falls back
            RAISE EXCEPTION 'step results changed under the task locks';
        END IF;

        UPDATE tasker.workflow_steps ws
        SET in_process = ws.in_process AND ws.workflow_step_uuid <> ALL (v_steps),
            processed = ws.processed OR ws.workflow_step_uuid = ANY (v_steps),
            processed_at = CASE WHEN ws.workflow_step_uuid = ANY (v_steps) THEN now()
                                ELSE ws.processed_at END,
            updated_at = now()
        WHERE ws.workflow_step_uuid = ANY (v_steps || COALESCE(v_ready, '{}'));

        IF v_moving IS NOT NULL THEN
            WITH old AS (
                UPDATE tasker.task_transitions tt
                SET most_recent = false, updated_at = now()
                WHERE tt.task_uuid = ANY (v_moving) AND tt.most_recent
                RETURNING tt.task_uuid, tt.sort_key
            )
            INSERT INTO tasker.task_transitions
                (task_uuid, from_state, to_state, metadata, sort_key, most_recent, processor_uuid)
            SELECT old.task_uuid, p.from_state, p.to_state, jsonb_build_object('event', p.event),
                   old.sort_key + p.n, p.last, p_processor_uuid
            FROM old
            JOIN unnest(v_moving, v_status) AS x(task, status) ON x.task = old.task_uuid
            JOIN (VALUES ('all_complete', 1, 'steps_in_process', 'evaluating_results', 'AllStepsCompleted', false),
                         ('all_complete', 2, 'evaluating_results', 'complete', 'AllStepsSuccessful', true),
                         ('has_ready_steps', 1, 'steps_in_process', 'evaluating_results', 'StepCompleted', false),
                         ('has_ready_steps', 2, 'evaluating_results', 'enqueuing_steps', 'ReadyStepsFound', false),
                         ('has_ready_steps', 3, 'enqueuing_steps', 'steps_in_process', 'StepsEnqueued', true),
                         ('waiting_for_dependencies', 1, 'steps_in_process', 'evaluating_results', 'StepCompleted', false),
                         ('waiting_for_dependencies', 2, 'evaluating_results', 'waiting_for_dependencies',
                          'NoDependenciesReady', true))
                 AS p(status, n, from_state, to_state, event, last) ON p.status = x.status
            ORDER BY old.task_uuid, p.n;

            UPDATE tasker.tasks t
            SET complete = t.complete OR x.status = 'all_complete',
                completed_at = CASE WHEN x.status = 'all_complete' THEN now() ELSE t.completed_at END,
                updated_at = now()
            FROM unnest(v_moving, v_status) AS x(task, status)
            WHERE t.task_uuid = x.task;
        END IF;

        -- The worker messages of the enqueued steps: one batch (and one
        -- notification) per queue.
        FOR v_queue IN
            SELECT 'worker_' || tn.name || '_queue' AS name,
                   array_agg(jsonb_build_object('task_uuid', t.task_uuid,
                                                'step_uuid', ws.workflow_step_uuid,
                                                'correlation_id', t.correlation_id)
                             ORDER BY t.task_uuid, ws.workflow_step_uuid) AS messages
            FROM tasker.workflow_steps ws
            JOIN tasker.tasks t ON t.task_uuid = ws.task_uuid
            JOIN tasker.named_tasks nt ON nt.named_task_uuid = t.named_task_uuid
            JOIN tasker.task_namespaces tn ON tn.task_namespace_uuid = nt.task_namespace_uuid
            WHERE ws.workflow_step_uuid = ANY (v_ready)
            GROUP BY 1
        LOOP
            PERFORM tasker.pgmq_send_batch_with_notify(v_queue.name, v_queue.messages, 0);
        END LOOP;

        WITH moved AS (
            DELETE FROM pgmq.q_orchestration_step_results q
            WHERE q.msg_id = ANY (v_fast)
            RETURNING q.msg_id, q.read_ct, q.enqueued_at, q.vt, q.message, q.headers
        )
        INSERT INTO pgmq.a_orchestration_step_results (msg_id, read_ct, enqueued_at, vt, message, headers)
        SELECT mv.msg_id, mv.read_ct + 1, mv.enqueued_at, mv.vt, mv.message, mv.headers FROM moved mv;
    END IF;

    RETURN QUERY
    UPDATE pgmq.q_orchestration_step_results q
    SET vt = clock_timestamp() + make_interval(secs => greatest(coalesce(p_vt, 0), 0)),
        read_ct = q.read_ct + 1
    WHERE q.msg_id = ANY (v_ids) AND NOT (q.msg_id = ANY (COALESCE(v_fast, '{}')))
    RETURNING q.msg_id, q.read_ct, q.message::text, false;

    RETURN QUERY
    SELECT f.id, NULL::integer, NULL::text, true FROM unnest(v_fast) AS f(id);
END;
$$;

COMMENT ON FUNCTION tasker.orchestrate_step_results(integer, integer, uuid) IS
'Takes a batch of step result messages and settles the tasks whose next steps are the ordinary ones (success, ready children, completion) in one transaction; the other messages are read for the one-at-a-time path. See 0010.';

-- ===========================================================================
-- Plans
-- ===========================================================================
-- Every statement of the batch functions finds a few rows by key (the
-- batch's tasks, steps, messages, edges). Their plans are cached per
-- session, and a plan made while the tables were small (a fresh database)
-- or for a batch size the planner misjudges (arrays, recursive CTEs and
-- transition tables are estimated at tens to hundreds of rows) would read
-- whole tables instead of looking rows up: keep the planner to nested loops
-- over index scans. This matters most for the statement-level triggers
-- fired inside (the audit, the redrive requests, the task event
-- notifications of 0009): a trigger's query has no parameters, so the plan
-- made at its first run in a session, for that statement's transition
-- table, serves every later statement; made for a batch of a hundred rows
-- with the default settings it hashes the whole workflow_steps table at
-- every run, a cost that grows with the table. And plan each statement
-- once per session: with arrays as parameters the plan cache would
-- otherwise make a custom plan at every call (the generic plan's estimate
-- never looks cheaper), which cost more than the statements themselves.
ALTER FUNCTION tasker.create_tasks(jsonb, jsonb, uuid, bigint[])
    SET plan_cache_mode = force_generic_plan SET enable_seqscan = off
    SET enable_hashjoin = off SET enable_mergejoin = off;
ALTER FUNCTION tasker.worker_claim_steps(uuid, bigint[], integer[], jsonb[], jsonb)
    SET plan_cache_mode = force_generic_plan SET enable_seqscan = off
    SET enable_hashjoin = off SET enable_mergejoin = off;
ALTER FUNCTION tasker.worker_report_steps(uuid, jsonb)
    SET plan_cache_mode = force_generic_plan SET enable_seqscan = off
    SET enable_hashjoin = off SET enable_mergejoin = off;
ALTER FUNCTION tasker.orchestrate_step_results(integer, integer, uuid)
    SET plan_cache_mode = force_generic_plan SET enable_seqscan = off
    SET enable_hashjoin = off SET enable_mergejoin = off;

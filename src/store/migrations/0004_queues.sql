-- 0004_queues: message queues with pgmq's semantics in plain SQL, so that no
-- extension is needed, and the send-and-notify wrappers of the engine.
--
-- Schema pgmq mirrors the pgmq extension's API: a queue <name> is the table
-- pgmq.q_<name> (live messages) and pgmq.a_<name> (archive). A message read
-- with a visibility timeout (vt) stays in the table but is invisible until
-- vt passes; read_ct counts the reads. Readers take rows with
-- FOR UPDATE SKIP LOCKED, so concurrent readers never get the same message.
--
-- Queue names become table names through format('%I'); they are checked
-- (letters, digits, underscore; at most 47 characters so that every derived
-- name stays within PostgreSQL's 63) and folded to lower case, as pgmq does.

DO $$
BEGIN
	IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pgmq') THEN
		RAISE EXCEPTION 'the pgmq extension is installed in this database, but tasker provides schema pgmq itself'
			USING HINT = 'Drop the extension or use another database.';
	END IF;
END
$$;

CREATE SCHEMA IF NOT EXISTS pgmq;
CREATE SCHEMA IF NOT EXISTS tasker;

-- One row per queue (pgmq.meta in the extension).
CREATE TABLE pgmq.meta (
	queue_name text PRIMARY KEY,
	is_partitioned boolean NOT NULL DEFAULT false,
	is_unlogged boolean NOT NULL DEFAULT false,
	created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TYPE pgmq.message_record AS (
	msg_id bigint,
	read_ct integer,
	enqueued_at timestamptz,
	vt timestamptz,
	message jsonb,
	headers jsonb
);

CREATE TYPE pgmq.queue_record AS (
	queue_name text,
	is_partitioned boolean,
	is_unlogged boolean,
	created_at timestamptz
);

CREATE TYPE pgmq.metrics_result AS (
	queue_name text,
	queue_length bigint,
	newest_msg_age_sec integer,
	oldest_msg_age_sec integer,
	total_messages bigint,
	scrape_time timestamptz,
	queue_visible_length bigint
);

-- ------------------------------------------------------------------ names

-- Returns the table name '<prefix>_<queue>' after checking the queue name;
-- every function below goes through it before interpolating a name.
CREATE FUNCTION pgmq.format_table_name(queue_name text, prefix text)
RETURNS text
LANGUAGE plpgsql IMMUTABLE
AS $$
BEGIN
	IF queue_name IS NULL OR queue_name !~ '^[A-Za-z0-9_]+$' OR length(queue_name) > 47 THEN
		RAISE EXCEPTION 'invalid queue name "%": use 1 to 47 letters, digits or underscores',
			queue_name
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	RETURN prefix || '_' || lower(queue_name);
END
$$;

-- worker_<ns>_queue -> <ns>; orchestration* -> orchestration;
-- <ns>_queue -> <ns>; anything else -> default. Case-insensitive, as queue names are.
CREATE FUNCTION tasker.extract_queue_namespace(queue_name text)
RETURNS text
LANGUAGE plpgsql IMMUTABLE
AS $$
BEGIN
	queue_name := lower(queue_name);
	IF queue_name ~ '^orchestration' THEN
		RETURN 'orchestration';
	END IF;
	IF queue_name ~ '^worker_.+_queue$' THEN
		RETURN (regexp_match(queue_name, '^worker_(.+)_queue$'))[1];
	END IF;
	IF queue_name ~ '^[A-Za-z][A-Za-z0-9_]*_queue$' THEN
		RETURN (regexp_match(queue_name, '^([A-Za-z][A-Za-z0-9_]*)_queue$'))[1];
	END IF;
	RETURN 'default';
END
$$;

-- ------------------------------------------------------------------ queues

CREATE FUNCTION pgmq.create(queue_name text)
RETURNS void
LANGUAGE plpgsql
AS $$
DECLARE
	qtable text := pgmq.format_table_name(queue_name, 'q');
	atable text := pgmq.format_table_name(queue_name, 'a');
	qname text := lower(queue_name);
BEGIN
	-- Two sessions creating one queue would race in CREATE TABLE IF NOT EXISTS
	-- (a unique violation on pg_type); the second waits here and finds it done.
	PERFORM pg_advisory_xact_lock(hashtext('pgmq.create'), hashtext(qname));
	IF EXISTS (SELECT 1 FROM pgmq.meta m WHERE m.queue_name = qname) THEN
		RETURN;
	END IF;
	EXECUTE format(
		'CREATE TABLE IF NOT EXISTS pgmq.%I ('
		' msg_id bigserial PRIMARY KEY,'
		' read_ct integer NOT NULL DEFAULT 0,'
		' enqueued_at timestamptz NOT NULL DEFAULT now(),'
		' vt timestamptz NOT NULL,'
		' message jsonb,'
		' headers jsonb)', qtable);
	EXECUTE format(
		'CREATE TABLE IF NOT EXISTS pgmq.%I ('
		' msg_id bigint PRIMARY KEY,'
		' read_ct integer NOT NULL DEFAULT 0,'
		' enqueued_at timestamptz NOT NULL DEFAULT now(),'
		' archived_at timestamptz NOT NULL DEFAULT now(),'
		' vt timestamptz NOT NULL,'
		' message jsonb,'
		' headers jsonb)', atable);
	EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON pgmq.%I (vt)', qtable || '_vt_idx', qtable);
	EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON pgmq.%I (archived_at)',
		'archived_at_idx_' || qname, atable);
	INSERT INTO pgmq.meta (queue_name) VALUES (qname);
	PERFORM pg_notify('pgmq_queue_created', json_build_object(
		'event_type', 'queue_created',
		'queue_name', qname,
		'namespace', tasker.extract_queue_namespace(qname),
		'created_at', now())::text);
END
$$;

CREATE FUNCTION pgmq.drop_queue(queue_name text)
RETURNS boolean
LANGUAGE plpgsql
AS $$
DECLARE
	qtable text := pgmq.format_table_name(queue_name, 'q');
	atable text := pgmq.format_table_name(queue_name, 'a');
BEGIN
	PERFORM pg_advisory_xact_lock(hashtext('pgmq.create'), hashtext(lower(queue_name)));
	EXECUTE format('DROP TABLE IF EXISTS pgmq.%I', qtable);
	EXECUTE format('DROP TABLE IF EXISTS pgmq.%I', atable);
	DELETE FROM pgmq.meta m WHERE m.queue_name = lower($1);
	RETURN FOUND;
END
$$;

CREATE FUNCTION pgmq.list_queues()
RETURNS SETOF pgmq.queue_record
LANGUAGE sql STABLE
AS $$
	SELECT queue_name, is_partitioned, is_unlogged, created_at
	FROM pgmq.meta
	ORDER BY queue_name
$$;

-- Deletes every live message; returns how many.
CREATE FUNCTION pgmq.purge_queue(queue_name text)
RETURNS bigint
LANGUAGE plpgsql
AS $$
DECLARE
	n bigint;
BEGIN
	EXECUTE format('DELETE FROM pgmq.%I', pgmq.format_table_name(queue_name, 'q'));
	GET DIAGNOSTICS n = ROW_COUNT;
	RETURN n;
END
$$;

-- ------------------------------------------------------------------ sending

-- Sends one message, visible after delay seconds; returns its msg_id.
CREATE FUNCTION pgmq.send(queue_name text, msg jsonb, headers jsonb, delay integer)
RETURNS bigint
LANGUAGE plpgsql
AS $$
DECLARE
	id bigint;
BEGIN
	EXECUTE format(
		'INSERT INTO pgmq.%I (vt, message, headers)'
		' VALUES (clock_timestamp() + make_interval(secs => $1), $2, $3)'
		' RETURNING msg_id', pgmq.format_table_name(queue_name, 'q'))
	INTO id
	USING greatest(coalesce(delay, 0), 0), msg, headers;
	RETURN id;
END
$$;

CREATE FUNCTION pgmq.send(queue_name text, msg jsonb, delay integer DEFAULT 0)
RETURNS bigint
LANGUAGE sql
AS $$
	SELECT pgmq.send(queue_name, msg, NULL::jsonb, delay)
$$;

-- Sends several messages in one statement; returns their msg_ids in order.
CREATE FUNCTION pgmq.send_batch(queue_name text, msgs jsonb[], delay integer DEFAULT 0)
RETURNS SETOF bigint
LANGUAGE plpgsql
AS $$
BEGIN
	RETURN QUERY EXECUTE format(
		'INSERT INTO pgmq.%I (vt, message)'
		' SELECT clock_timestamp() + make_interval(secs => $1), m.msg'
		' FROM unnest($2) WITH ORDINALITY AS m(msg, ord)'
		' ORDER BY m.ord'
		' RETURNING msg_id', pgmq.format_table_name(queue_name, 'q'))
	USING greatest(coalesce(delay, 0), 0), msgs;
END
$$;

-- ------------------------------------------------------------------ reading

-- Takes up to qty visible messages, oldest first, and hides them for vt
-- seconds (read_ct + 1). Rows locked by a concurrent reader are skipped.
CREATE FUNCTION pgmq.read(queue_name text, vt integer, qty integer)
RETURNS SETOF pgmq.message_record
LANGUAGE plpgsql
AS $$
BEGIN
	RETURN QUERY EXECUTE format(
		'WITH cte AS ('
		'  SELECT msg_id FROM pgmq.%1$I'
		'  WHERE vt <= clock_timestamp()'
		'  ORDER BY msg_id'
		'  LIMIT $1'
		'  FOR UPDATE SKIP LOCKED)'
		' UPDATE pgmq.%1$I m'
		' SET vt = clock_timestamp() + make_interval(secs => $2), read_ct = m.read_ct + 1'
		' FROM cte WHERE m.msg_id = cte.msg_id'
		' RETURNING m.msg_id, m.read_ct, m.enqueued_at, m.vt, m.message, m.headers',
		pgmq.format_table_name(queue_name, 'q'))
	USING greatest(qty, 0), greatest(coalesce(vt, 0), 0);
END
$$;

-- Takes one visible message and deletes it (read without a timeout).
CREATE FUNCTION pgmq.pop(queue_name text)
RETURNS SETOF pgmq.message_record
LANGUAGE plpgsql
AS $$
BEGIN
	RETURN QUERY EXECUTE format(
		'WITH cte AS ('
		'  SELECT msg_id FROM pgmq.%1$I'
		'  WHERE vt <= clock_timestamp()'
		'  ORDER BY msg_id'
		'  LIMIT 1'
		'  FOR UPDATE SKIP LOCKED)'
		' DELETE FROM pgmq.%1$I m USING cte WHERE m.msg_id = cte.msg_id'
		' RETURNING m.msg_id, m.read_ct, m.enqueued_at, m.vt, m.message, m.headers',
		pgmq.format_table_name(queue_name, 'q'));
END
$$;

-- Sets a message's visibility timeout to now + vt seconds (0: visible
-- again at once); returns the message, or no row when it does not exist.
CREATE FUNCTION pgmq.set_vt(queue_name text, msg_id bigint, vt integer)
RETURNS SETOF pgmq.message_record
LANGUAGE plpgsql
AS $$
BEGIN
	RETURN QUERY EXECUTE format(
		'UPDATE pgmq.%I SET vt = clock_timestamp() + make_interval(secs => $2)'
		' WHERE msg_id = $1'
		' RETURNING msg_id, read_ct, enqueued_at, vt, message, headers',
		pgmq.format_table_name(queue_name, 'q'))
	USING msg_id, greatest(coalesce(vt, 0), 0);
END
$$;

-- ------------------------------------------------------------------ acknowledging

-- Moves a message to the archive; false when it is not in the queue.
CREATE FUNCTION pgmq.archive(queue_name text, msg_id bigint)
RETURNS boolean
LANGUAGE plpgsql
AS $$
DECLARE
	n integer;
BEGIN
	EXECUTE format(
		'WITH moved AS ('
		'  DELETE FROM pgmq.%I WHERE msg_id = $1'
		'  RETURNING msg_id, read_ct, enqueued_at, vt, message, headers)'
		' INSERT INTO pgmq.%I (msg_id, read_ct, enqueued_at, vt, message, headers)'
		' SELECT msg_id, read_ct, enqueued_at, vt, message, headers FROM moved',
		pgmq.format_table_name(queue_name, 'q'), pgmq.format_table_name(queue_name, 'a'))
	USING msg_id;
	GET DIAGNOSTICS n = ROW_COUNT;
	RETURN n > 0;
END
$$;

-- Archives several messages; returns the msg_ids that were archived.
CREATE FUNCTION pgmq.archive(queue_name text, msg_ids bigint[])
RETURNS SETOF bigint
LANGUAGE plpgsql
AS $$
BEGIN
	RETURN QUERY EXECUTE format(
		'WITH moved AS ('
		'  DELETE FROM pgmq.%I WHERE msg_id = ANY($1)'
		'  RETURNING msg_id, read_ct, enqueued_at, vt, message, headers)'
		' INSERT INTO pgmq.%I (msg_id, read_ct, enqueued_at, vt, message, headers)'
		' SELECT msg_id, read_ct, enqueued_at, vt, message, headers FROM moved'
		' RETURNING msg_id',
		pgmq.format_table_name(queue_name, 'q'), pgmq.format_table_name(queue_name, 'a'))
	USING msg_ids;
END
$$;

-- Deletes a message; false when it is not in the queue.
CREATE FUNCTION pgmq.delete(queue_name text, msg_id bigint)
RETURNS boolean
LANGUAGE plpgsql
AS $$
DECLARE
	n integer;
BEGIN
	EXECUTE format('DELETE FROM pgmq.%I WHERE msg_id = $1',
		pgmq.format_table_name(queue_name, 'q'))
	USING msg_id;
	GET DIAGNOSTICS n = ROW_COUNT;
	RETURN n > 0;
END
$$;

-- Deletes several messages; returns the msg_ids that were deleted.
CREATE FUNCTION pgmq.delete(queue_name text, msg_ids bigint[])
RETURNS SETOF bigint
LANGUAGE plpgsql
AS $$
BEGIN
	RETURN QUERY EXECUTE format(
		'DELETE FROM pgmq.%I WHERE msg_id = ANY($1) RETURNING msg_id',
		pgmq.format_table_name(queue_name, 'q'))
	USING msg_ids;
END
$$;

-- ------------------------------------------------------------------ metrics

CREATE FUNCTION pgmq.metrics(queue_name text)
RETURNS pgmq.metrics_result
LANGUAGE plpgsql
AS $$
DECLARE
	qtable text := pgmq.format_table_name(queue_name, 'q');
	r pgmq.metrics_result;
BEGIN
	r.queue_name := lower(queue_name);
	r.scrape_time := clock_timestamp();
	EXECUTE format(
		'SELECT count(*),'
		' extract(epoch FROM $1 - max(enqueued_at))::integer,'
		' extract(epoch FROM $1 - min(enqueued_at))::integer,'
		' count(*) FILTER (WHERE vt <= $1)'
		' FROM pgmq.%I', qtable)
	INTO r.queue_length, r.newest_msg_age_sec, r.oldest_msg_age_sec, r.queue_visible_length
	USING r.scrape_time;
	-- Messages ever sent: the msg_id sequence's position.
	EXECUTE format('SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM %s',
		pg_get_serial_sequence(format('pgmq.%I', qtable), 'msg_id'))
	INTO r.total_messages;
	RETURN r;
END
$$;

CREATE FUNCTION pgmq.metrics_all()
RETURNS SETOF pgmq.metrics_result
LANGUAGE sql
AS $$
	SELECT r.* FROM pgmq.meta m CROSS JOIN LATERAL pgmq.metrics(m.queue_name) r
	ORDER BY m.queue_name
$$;

-- ------------------------------------------------------------------ send and notify
--
-- The engine sends through these wrappers: the message and its wake-up go
-- out in one transaction (a NOTIFY is delivered at commit, so listeners
-- never hear of a message they cannot read yet). Channels:
-- 'pgmq_message_ready.<namespace>' and the global 'pgmq_message_ready'.
-- Payload: event_type 'message_with_payload' carrying the message when its
-- text is under 7000 bytes (pg_notify's limit is 8000), otherwise
-- 'message_ready' with payload_omitted; batches send 'batch_ready'.

CREATE FUNCTION tasker.pgmq_payload_size_threshold()
RETURNS integer
LANGUAGE sql IMMUTABLE
AS $$ SELECT 7000 $$;

CREATE FUNCTION tasker.pgmq_notify_ready(queue_name text, payload text)
RETURNS void
LANGUAGE plpgsql
AS $$
DECLARE
	channel text := 'pgmq_message_ready.' || tasker.extract_queue_namespace(queue_name);
BEGIN
	PERFORM pg_notify(channel, payload);
	IF channel <> 'pgmq_message_ready' THEN
		PERFORM pg_notify('pgmq_message_ready', payload);
	END IF;
END
$$;

CREATE FUNCTION tasker.pgmq_send_with_notify(queue_name text, message jsonb,
	delay_seconds integer DEFAULT 0)
RETURNS bigint
LANGUAGE plpgsql
AS $$
DECLARE
	id bigint;
	ns text := tasker.extract_queue_namespace(queue_name);
	ready_at timestamptz := now() + make_interval(secs => greatest(coalesce(delay_seconds, 0), 0));
	payload text;
BEGIN
	id := pgmq.send(queue_name, message, delay_seconds);
	IF octet_length(message::text) < tasker.pgmq_payload_size_threshold() THEN
		payload := json_build_object(
			'event_type', 'message_with_payload',
			'msg_id', id,
			'queue_name', queue_name,
			'namespace', ns,
			'message', message,
			'ready_at', ready_at,
			'delay_seconds', delay_seconds)::text;
	END IF;
	-- Multi-byte escapes can still push the wrapper over the limit.
	IF payload IS NULL OR octet_length(payload) > 7900 THEN
		payload := json_build_object(
			'event_type', 'message_ready',
			'msg_id', id,
			'queue_name', queue_name,
			'namespace', ns,
			'ready_at', ready_at,
			'delay_seconds', delay_seconds,
			'payload_omitted', true)::text;
	END IF;
	PERFORM tasker.pgmq_notify_ready(queue_name, payload);
	RETURN id;
END
$$;

CREATE FUNCTION tasker.pgmq_send_batch_with_notify(queue_name text, messages jsonb[],
	delay_seconds integer DEFAULT 0)
RETURNS SETOF bigint
LANGUAGE plpgsql
AS $$
DECLARE
	ids bigint[];
	ns text := tasker.extract_queue_namespace(queue_name);
	ready_at timestamptz := now() + make_interval(secs => greatest(coalesce(delay_seconds, 0), 0));
	payload text;
BEGIN
	SELECT coalesce(array_agg(s.id), '{}') INTO ids
	FROM pgmq.send_batch(queue_name, messages, delay_seconds) AS s(id);
	IF cardinality(ids) = 0 THEN
		RETURN;
	END IF;
	payload := json_build_object(
		'event_type', 'batch_ready',
		'msg_ids', ids,
		'queue_name', queue_name,
		'namespace', ns,
		'message_count', cardinality(ids),
		'ready_at', ready_at,
		'delay_seconds', delay_seconds)::text;
	IF octet_length(payload) > 7900 THEN
		payload := json_build_object(
			'event_type', 'batch_ready',
			'queue_name', queue_name,
			'namespace', ns,
			'message_count', cardinality(ids),
			'ready_at', ready_at,
			'delay_seconds', delay_seconds,
			'payload_omitted', true)::text;
	END IF;
	PERFORM tasker.pgmq_notify_ready(queue_name, payload);
	RETURN QUERY SELECT unnest(ids);
END
$$;

-- Claims one message by id, as a consumer does after a notification that
-- carried it: hides it for vt_seconds (read_ct + 1) if it is visible and
-- not locked by another reader; no row otherwise.
CREATE FUNCTION tasker.pgmq_read_specific_message(queue_name text, target_msg_id bigint,
	vt_seconds integer DEFAULT 30)
RETURNS SETOF pgmq.message_record
LANGUAGE plpgsql
AS $$
BEGIN
	RETURN QUERY EXECUTE format(
		'WITH cte AS ('
		'  SELECT msg_id FROM pgmq.%1$I'
		'  WHERE msg_id = $1 AND vt <= clock_timestamp()'
		'  FOR UPDATE SKIP LOCKED)'
		' UPDATE pgmq.%1$I m'
		' SET vt = clock_timestamp() + make_interval(secs => $2), read_ct = m.read_ct + 1'
		' FROM cte WHERE m.msg_id = cte.msg_id'
		' RETURNING m.msg_id, m.read_ct, m.enqueued_at, m.vt, m.message, m.headers',
		pgmq.format_table_name(queue_name, 'q'))
	USING target_msg_id, greatest(coalesce(vt_seconds, 0), 0);
END
$$;

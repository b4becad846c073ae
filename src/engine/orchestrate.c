/*
 * orchestrate: the task state machine driver (§3.3, §3.6 steps 2, 6, 7, 8)
 * and the orchestration threads.
 *
 * Every decision about a task is taken in one transaction holding the
 * task's row lock (SELECT ... FOR UPDATE), and every transition is a
 * compare-and-swap, so several taskerd processes can drive the same
 * database without stepping on each other.
 */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <jansson.h>

#include "engine/engine_int.h"
#include "engine/template.h"

/* ------------------------------------------------------------------ helpers */

void eng_random_uuid(char out[37])
{
	unsigned char b[16];
	if (getrandom(b, sizeof b, 0) != (ssize_t)sizeof b) {
		/* getrandom does not fail for 16 bytes once the pool is ready;
		 * fall back on the clock rather than leave zeros. */
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		for (size_t i = 0; i < sizeof b; i++)
			b[i] = (unsigned char)((ts.tv_nsec >> (i % 8)) ^ (ts.tv_sec >> i) ^ i);
	}
	b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
	b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
	snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
	         b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12],
	         b[13], b[14], b[15]);
}

int eng_task_terminal(const char *s)
{
	return strcmp(s, "complete") == 0 || strcmp(s, "error") == 0 ||
	       strcmp(s, "cancelled") == 0 || strcmp(s, "resolved_manually") == 0;
}

static int is(const char *a, const char *b)
{
	return strcmp(a, b) == 0;
}

struct task_row {
	char state[32];
	char namespace_name[72];
	char correlation_id[37];
};

static int lock_task_row(PGconn *conn, const char *task_uuid, struct task_row *row,
                         struct tk_err *err)
{
	const char *p[] = {task_uuid};
	PGresult *res = db_exec_prepared(
	    conn, "eng_lock_task",
	    "SELECT COALESCE(tt.to_state, 'pending'), ns.name, t.correlation_id "
	    "FROM tasker.tasks t "
	    "JOIN tasker.named_tasks nt ON nt.named_task_uuid = t.named_task_uuid "
	    "JOIN tasker.task_namespaces ns ON ns.task_namespace_uuid = nt.task_namespace_uuid "
	    "LEFT JOIN tasker.task_transitions tt ON tt.task_uuid = t.task_uuid AND tt.most_recent "
	    "WHERE t.task_uuid = $1::uuid FOR NO KEY UPDATE OF t",
	    1, p, err);
	if (res == NULL)
		return err->code;
	if (PQntuples(res) == 0) {
		PQclear(res);
		return tk_err_set(err, TRPC_ERR_NOT_FOUND, "no task %s", task_uuid);
	}
	snprintf(row->state, sizeof row->state, "%s", PQgetvalue(res, 0, 0));
	snprintf(row->namespace_name, sizeof row->namespace_name, "%s", PQgetvalue(res, 0, 1));
	snprintf(row->correlation_id, sizeof row->correlation_id, "%s", PQgetvalue(res, 0, 2));
	PQclear(res);
	return 0;
}

int eng_lock_task(PGconn *conn, const char *task_uuid, char *state, size_t size, struct tk_err *err)
{
	struct task_row row;
	int rv = lock_task_row(conn, task_uuid, &row, err);
	if (rv == 0)
		snprintf(state, size, "%s", row.state);
	return rv;
}

int eng_task_transition(struct eng *e, PGconn *conn, const char *task_uuid, const char *from,
                        const char *to, const char *event, struct tk_err *err)
{
	char meta[160];
	snprintf(meta, sizeof meta, "{\"event\":\"%s\"}", event);
	const char *p[] = {task_uuid, from, to, e->processor_uuid, meta};
	PGresult *res = db_exec_prepared(
	    conn, "eng_task_transition",
	    "SELECT tasker.transition_task_state_atomic($1::uuid, $2, $3, $4::uuid, $5::jsonb)", 5,
	    p, err);
	if (res == NULL)
		return err->code;
	int ok = PQgetvalue(res, 0, 0)[0] == 't';
	PQclear(res);
	if (!ok)
		return tk_err_set(err, TRPC_ERR_STATE, "task %s left %s before %s -> %s", task_uuid,
		                  from, from, to);
	trpc_log(TRPC_LOG_DEBUG, "task %s: %s -> %s (%s)", task_uuid, from, to, event);
	return 0;
}

struct exec_ctx {
	char status[32];
	long waiting_for_retry;
};

static int execution_context(PGconn *conn, const char *task_uuid, struct exec_ctx *ctx,
                             struct tk_err *err)
{
	const char *p[] = {task_uuid};
	PGresult *res = db_exec_prepared(conn, "eng_exec_ctx",
	                                 "SELECT execution_status, waiting_for_retry_steps "
	                                 "FROM tasker.get_task_execution_context($1::uuid)",
	                                 1, p, err);
	if (res == NULL)
		return err->code;
	if (PQntuples(res) == 0) {
		PQclear(res);
		return tk_err_set(err, TRPC_ERR_NOT_FOUND, "no execution context for %s",
		                  task_uuid);
	}
	snprintf(ctx->status, sizeof ctx->status, "%s", PQgetvalue(res, 0, 0));
	ctx->waiting_for_retry = atol(PQgetvalue(res, 0, 1));
	PQclear(res);
	return 0;
}

static int enqueue_ready(struct eng *e, PGconn *conn, const char *task_uuid,
                         const struct task_row *row, long *count, struct tk_err *err)
{
	char queue[96];
	snprintf(queue, sizeof queue, "worker_%s_queue", row->namespace_name);
	const char *p[] = {task_uuid, queue, row->correlation_id, e->processor_uuid};
	PGresult *res = db_exec_prepared(
	    conn, "eng_enqueue",
	    "SELECT count(*) FROM tasker.enqueue_ready_steps($1::uuid, $2, $3::uuid, $4::uuid)", 4,
	    p, err);
	if (res == NULL)
		return err->code;
	*count = atol(PQgetvalue(res, 0, 0));
	PQclear(res);
	return 0;
}

/* ------------------------------------------------------------------ driver */

#define T(to, event)                                                                               \
	do {                                                                                       \
		rv = eng_task_transition(e, conn, task_uuid, row.state, (to), (event), err);       \
		if (rv != 0)                                                                       \
			return rv;                                                                 \
		snprintf(row.state, sizeof row.state, "%s", (to));                                 \
	} while (0)

int eng_drive_locked(struct eng *e, PGconn *conn, const char *task_uuid, int redrive,
                     struct tk_err *err)
{
	struct task_row row;
	int rv = lock_task_row(conn, task_uuid, &row, err);
	if (rv != 0)
		return rv;
	/* Each pass makes at least one transition or returns; the longest
	 * path through the table is well under this bound. */
	for (int pass = 0; pass < 16; pass++) {
		const char *s = row.state;
		if (is(s, "pending")) {
			T("initializing", "Start");
			continue;
		}
		if (is(s, "complete") || is(s, "cancelled") || is(s, "resolved_manually"))
			return 0;
		if (is(s, "error") && !redrive)
			return 0;
		struct exec_ctx ctx;
		if ((rv = execution_context(conn, task_uuid, &ctx, err)) != 0)
			return rv;
		const char *x = ctx.status;
		int waiting = is(x, "waiting_for_dependencies");
		/* Only transitions of the §3.3 table, chosen by the current state
		 * first and the execution status second. */
		if (is(s, "error")) {
			/* Re-drive after an operator settled the failed steps. */
			if (is(x, "blocked_by_failures"))
				return 0;
			T("pending", "Reset");
		} else if (is(s, "blocked_by_failures")) {
			T("error", "GiveUp"); /* re-drive continues from error */
			if (!redrive)
				return 0;
		} else if (is(s, "initializing")) {
			if (is(x, "all_complete")) {
				T("complete", "NoStepsFound");
				return 0;
			}
			if (waiting || is(x, "blocked_by_failures")) {
				T("waiting_for_dependencies", "NoDependenciesReady");
				if (waiting)
					return 0;
			} else {
				T("enqueuing_steps", "ReadyStepsFound");
			}
		} else if (is(s, "enqueuing_steps")) {
			if (is(x, "has_ready_steps")) {
				long n = 0;
				if ((rv = enqueue_ready(e, conn, task_uuid, &row, &n, err)) != 0)
					return rv;
				T("steps_in_process", "StepsEnqueued");
				return 0;
			}
			T("steps_in_process", "StepsEnqueued");
		} else if (is(s, "steps_in_process")) {
			if (is(x, "processing"))
				return 0; /* the next result drives it on */
			if (waiting && ctx.waiting_for_retry > 0) {
				T("waiting_for_retry", "StepFailed");
				return 0;
			}
			T("evaluating_results",
			  is(x, "all_complete") ? "AllStepsCompleted" : "StepCompleted");
		} else if (is(s, "evaluating_results")) {
			if (is(x, "all_complete")) {
				T("complete", "AllStepsSuccessful");
				return 0;
			}
			if (is(x, "blocked_by_failures")) {
				T("blocked_by_failures", "PermanentFailure");
			} else if (is(x, "has_ready_steps")) {
				T("enqueuing_steps", "ReadyStepsFound");
			} else if (waiting) {
				T("waiting_for_dependencies", "NoDependenciesReady");
				return 0;
			} else {
				return 0; /* processing: results will drive it */
			}
		} else if (is(s, "waiting_for_dependencies")) {
			if (waiting)
				return 0;
			T("evaluating_results", "DependenciesReady");
		} else if (is(s, "waiting_for_retry")) {
			if (waiting)
				return 0;
			T("enqueuing_steps", "RetryReady");
		} else {
			return tk_err_set(err, TRPC_ERR_STATE, "task %s: unknown state %s",
			                  task_uuid, s);
		}
	}
	return tk_err_set(err, TRPC_ERR_STATE, "task %s: state machine did not settle (at %s)",
	                  task_uuid, row.state);
}

#undef T

int eng_task_drive(struct eng *e, const char *task_uuid, struct tk_err *err)
{
	if (!eng_valid_uuid(task_uuid))
		return tk_err_set(err, TRPC_ERR_INVALID, "task \"%.64s\" is not a uuid", task_uuid);
	PGconn *conn = db_acquire(e->pool, err);
	if (conn == NULL)
		return err->code;
	int rv = db_begin(conn, err);
	if (rv == 0) {
		rv = eng_drive_locked(e, conn, task_uuid, 0, err);
		if (rv == 0)
			rv = db_commit(conn, err);
		else
			db_rollback(conn, NULL);
	}
	db_release(e->pool, conn, rv != 0 && db_is_connection_error(conn));
	return rv;
}

/* ------------------------------------------------------------------ results */

/* Backoff for a failed step: the worker's (server-requested) hint, else the
 * step template's exponential backoff with jitter, in whole seconds. */
static int backoff_seconds(struct eng *e, const struct tpl_step *st, int attempts, json_t *results)
{
	json_t *hint = json_object_get(
	    json_object_get(json_object_get(results, "orchestration_metadata"), "backoff_hint"),
	    "delay_seconds");
	if (json_is_number(hint)) {
		double d = json_number_value(hint);
		if (d < 0)
			d = 0;
		if (d > e->cfg.backoff_max_s)
			d = e->cfg.backoff_max_s;
		return (int)ceil(d);
	}
	double base = st ? st->backoff_base_ms / 1000.0 : 1.0;
	double max = st ? st->max_backoff_ms / 1000.0 : e->cfg.backoff_max_s;
	const char *kind = st && st->backoff ? st->backoff : "exponential";
	double d;
	if (is(kind, "none"))
		d = 0;
	else if (is(kind, "linear"))
		d = base * attempts;
	else if (is(kind, "fibonacci")) {
		double a = 1, b = 1;
		for (int i = 2; i <= attempts; i++) {
			double c = a + b;
			a = b;
			b = c;
		}
		d = base * b;
	} else
		d = base * pow(e->cfg.backoff_multiplier, attempts > 0 ? attempts - 1 : 0);
	if (d > max)
		d = max;
	if (e->cfg.backoff_jitter > 0 && d > 0) {
		unsigned r;
		if (getrandom(&r, sizeof r, 0) == (ssize_t)sizeof r)
			d *= 1.0 + e->cfg.backoff_jitter * ((double)(r % 2001) / 1000.0 - 1.0);
	}
	return (int)ceil(d);
}

static const struct tpl_step *template_step(struct eng *e, const char *named_task_uuid,
                                            const char *step_name)
{
	struct tk_err ignore;
	const struct tpl *t = eng_template(e, named_task_uuid, &ignore);
	return t ? tpl_step(t, step_name) : NULL;
}

/*
 * §3.6 step 6: a worker reported on a step. Settles the step (complete,
 * error, or waiting_for_retry with its backoff), then drives the task.
 * In the caller's transaction.
 */
static int process_result(struct eng *e, PGconn *conn, const char *task_uuid, const char *step_uuid,
                          struct tk_err *err)
{
	struct task_row row;
	int rv = lock_task_row(conn, task_uuid, &row, err);
	if (rv != 0)
		return rv;
	const char *p[] = {step_uuid};
	PGresult *res = db_exec_prepared(
	    conn, "eng_step_result",
	    "SELECT tasker.get_current_step_state(ws.workflow_step_uuid), ws.results::text, "
	    "ws.attempts, ws.max_attempts, ws.retryable, ns.name, t.named_task_uuid "
	    "FROM tasker.workflow_steps ws "
	    "JOIN tasker.named_steps ns ON ns.named_step_uuid = ws.named_step_uuid "
	    "JOIN tasker.tasks t ON t.task_uuid = ws.task_uuid "
	    "WHERE ws.workflow_step_uuid = $1::uuid",
	    1, p, err);
	if (res == NULL)
		return err->code;
	if (PQntuples(res) == 0) {
		PQclear(res);
		return 0; /* a message about a step that is gone: nothing to do */
	}
	char state[40], name[130], nt[37];
	snprintf(state, sizeof state, "%s", PQgetvalue(res, 0, 0));
	json_error_t je;
	json_t *results =
	    PQgetisnull(res, 0, 1) ? json_object() : json_loads(PQgetvalue(res, 0, 1), 0, &je);
	int attempts = atoi(PQgetvalue(res, 0, 2));
	int max_attempts = atoi(PQgetvalue(res, 0, 3));
	int retryable = PQgetvalue(res, 0, 4)[0] == 't';
	snprintf(name, sizeof name, "%s", PQgetvalue(res, 0, 5));
	snprintf(nt, sizeof nt, "%s", PQgetvalue(res, 0, 6));
	PQclear(res);
	if (results == NULL)
		results = json_object();

	const char *to = NULL, *event = NULL;
	if (is(state, "enqueued_for_orchestration")) {
		json_t *ok = json_object_get(results, "success");
		int success = ok == NULL || json_is_true(ok);
		to = success ? "complete" : "error";
		event = success ? "Complete" : "Fail";
	} else if (is(state, "enqueued_as_error_for_orchestration")) {
		json_t *r = json_object_get(json_object_get(results, "metadata"), "retryable");
		if (r == NULL)
			r = json_object_get(json_object_get(results, "error"), "retryable");
		int wants_retry = r == NULL || json_is_true(r);
		if (retryable && wants_retry && attempts < max_attempts) {
			int secs =
			    backoff_seconds(e, template_step(e, nt, name), attempts, results);
			char sb[16];
			snprintf(sb, sizeof sb, "%d", secs);
			const char *pb[] = {step_uuid, sb};
			res = db_exec_prepared(
			    conn, "eng_backoff",
			    "SELECT tasker.set_step_backoff_atomic($1::uuid, $2::integer)", 2, pb,
			    err);
			if (res == NULL) {
				json_decref(results);
				return err->code;
			}
			PQclear(res);
			to = "waiting_for_retry";
			event = "WaitForRetry";
		} else {
			to = "error";
			event = "Fail";
		}
	}
	json_decref(results);
	if (to != NULL) {
		char meta[96];
		snprintf(meta, sizeof meta, "{\"event\":\"%s\"}", event);
		const char *pt[] = {step_uuid, state, to, meta};
		res = db_exec_prepared(conn, "eng_step_settle",
		                       "SELECT tasker.transition_step_state_atomic($1::uuid, "
		                       "ARRAY[$2], $3, $4::jsonb)",
		                       4, pt, err);
		if (res == NULL)
			return err->code;
		PQclear(res);
	}
	return eng_drive_locked(e, conn, task_uuid, 0, err);
}

/* ------------------------------------------------------------------ threads */

/* A consumer that found less than a full batch waits this long before it
 * reads again, so that the results of several steps (and several task
 * requests) share one statement. */
#define BATCH_WINDOW_MS 5

/*
 * Sleeps up to ms. With a queue (ENG_WAKE_RESULTS, ENG_WAKE_REQUESTS), a
 * notification for it ends the sleep early, also one that came since *seen
 * (the count the caller saw last; updated): a notification that arrives
 * while the consumer works is not lost. which < 0 is a timer (the poller,
 * the staleness detector), which must not run on every message. Stopping
 * always ends it. Returns 1 when a notification ended it.
 */
static int sleep_for(struct eng *e, int ms, int which, unsigned *seen)
{
	struct timespec ts;
	int woken = 0;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (long)(ms % 1000) * 1000000;
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	pthread_mutex_lock(&e->wake_mu);
	while (!atomic_load(&e->stopping)) {
		if (which >= 0 && e->wake_seq[which] != *seen) {
			*seen = e->wake_seq[which];
			woken = 1;
			break;
		}
		if (pthread_cond_timedwait(&e->wake_cv, &e->wake_mu, &ts) != 0)
			break;
	}
	pthread_mutex_unlock(&e->wake_mu);
	return woken;
}

static void sleep_ms(struct eng *e, int ms)
{
	sleep_for(e, ms, -1, NULL);
}

/* Wakes the consumers of the queues in mask (1 << ENG_WAKE_*). */
static void wake(struct eng *e, unsigned mask)
{
	pthread_mutex_lock(&e->wake_mu);
	for (int i = 0; i < ENG_WAKE_N; i++)
		if (mask & (1u << i))
			e->wake_seq[i]++;
	pthread_cond_broadcast(&e->wake_cv);
	pthread_mutex_unlock(&e->wake_mu);
}

/*
 * A consumer's loop: consume() one batch after another; after a partial
 * batch, a pause of BATCH_WINDOW_MS; when the queue was empty, a wait for
 * its notification (then the pause) or for the poll interval.
 */
static void consume_loop(struct eng *e, int which, const char *queue,
                         int (*consume)(struct eng *, PGconn *));

/* Handles one message in the caller's open transaction. */
typedef int (*msg_fn)(struct eng *e, PGconn *conn, json_t *msg, struct tk_err *err);

static int is_db_error(int rv)
{
	return rv == TRPC_ERR_DB || rv == TRPC_ERR_UNAVAILABLE || rv == TRPC_ERR_TIMEOUT ||
	       rv == TRPC_ERR_NOMEM;
}

/*
 * The one-at-a-time path: each message read from queue (and hidden for
 * the visibility timeout) in a transaction of its own. Returns 1 when the
 * connection broke, else 0.
 */
static int process_msgs(struct eng *e, PGconn *conn, const char *queue, const struct mq_msg *msgs,
                        size_t n, msg_fn fn)
{
	struct tk_err err = {0};
	int broken = 0;

	for (size_t i = 0; i < n && !broken; i++) {
		json_error_t je;
		json_t *m = json_loads(msgs[i].message ? msgs[i].message : "", 0, &je);
		int rv = db_begin(conn, &err);
		if (rv == 0 && m != NULL)
			rv = fn(e, conn, m, &err);
		else if (m == NULL)
			trpc_log(TRPC_LOG_WARN, "%s: message %lld is not JSON: dropped", queue,
			         (long long)msgs[i].msg_id);
		/* The message is archived in the same transaction as its effect:
		 * processed exactly once, or not at all (then seen again after its
		 * visibility timeout). Business errors (a stale message) archive it
		 * too; database errors leave it. */
		int dberr = is_db_error(rv);
		if (rv != 0 && !dberr)
			trpc_log(TRPC_LOG_INFO, "%s: message %lld: %s", queue,
			         (long long)msgs[i].msg_id, err.msg);
		if (dberr) {
			trpc_log(TRPC_LOG_WARN, "%s: message %lld: %s (will retry)", queue,
			         (long long)msgs[i].msg_id, err.msg);
			db_rollback(conn, NULL);
			broken = db_is_connection_error(conn);
		} else {
			if (rv != 0) {
				/* undo the partial effect, keep the archive */
				db_rollback(conn, NULL);
				db_begin(conn, NULL);
			}
			if (mq_archive(conn, queue, msgs[i].msg_id, &err) != 0 ||
			    db_commit(conn, &err) != 0) {
				trpc_log(TRPC_LOG_WARN, "%s: archiving %lld: %s", queue,
				         (long long)msgs[i].msg_id, err.msg);
				db_rollback(conn, NULL);
				broken = db_is_connection_error(conn);
			}
		}
		json_decref(m);
	}
	return broken;
}

/* Reads one batch from a queue and handles it message by message; returns
 * the number of messages, or -1 after a database error (the caller backs
 * off). */
static int consume_batch(struct eng *e, PGconn *conn, const char *queue, msg_fn fn)
{
	struct tk_err err = {0};
	struct mq_msg *msgs = NULL;
	size_t n = 0;
	int broken;

	if (mq_read(conn, queue, e->cfg.visibility_timeout_s, e->cfg.result_batch, &msgs, &n,
	            &err) != 0) {
		trpc_log(TRPC_LOG_WARN, "reading %s: %s", queue, err.msg);
		return -1;
	}
	broken = process_msgs(e, conn, queue, msgs, n, fn);
	mq_msgs_free(msgs, n);
	return broken ? -1 : (int)n;
}

static int on_step_result(struct eng *e, PGconn *conn, json_t *m, struct tk_err *err)
{
	const char *task = json_string_value(json_object_get(m, "task_uuid"));
	const char *step = json_string_value(json_object_get(m, "step_uuid"));
	if (task == NULL || step == NULL)
		return tk_err_set(err, TRPC_ERR_INVALID, "step result without task_uuid/step_uuid");
	return process_result(e, conn, task, step, err);
}

/*
 * One batch of step results: tasker.orchestrate_step_results (migration
 * 0010) settles the ordinary ones in one statement and hands back the
 * others, which go the one-at-a-time way. Returns the number of messages,
 * or -1 after a database error.
 */
static int consume_results(struct eng *e, PGconn *conn)
{
	struct tk_err err = {0};
	char qty[16], vt[16];
	const char *p[] = {qty, vt, e->processor_uuid};
	struct mq_msg *msgs = NULL;
	size_t n = 0;
	int rows, broken;
	PGresult *res;

	snprintf(qty, sizeof qty, "%d", e->cfg.result_batch);
	snprintf(vt, sizeof vt, "%d", e->cfg.visibility_timeout_s);
	res =
	    db_exec_prepared(conn, "eng_results",
	                     "SELECT msg_id, read_ct, message, handled FROM "
	                     "tasker.orchestrate_step_results($1::integer, $2::integer, $3::uuid)",
	                     3, p, &err);
	if (res == NULL) {
		trpc_log(TRPC_LOG_WARN, "settling step results: %s", err.msg);
		if (db_is_connection_error(conn))
			return -1;
		return consume_batch(e, conn, ENG_RESULTS_QUEUE, on_step_result);
	}
	rows = PQntuples(res);
	msgs = calloc((size_t)rows + 1, sizeof *msgs);
	for (int i = 0; i < rows && msgs != NULL; i++) {
		if (PQgetvalue(res, i, 3)[0] == 't')
			continue;
		struct mq_msg *m = &msgs[n++];
		m->msg_id = strtoll(PQgetvalue(res, i, 0), NULL, 10);
		m->read_ct = atoi(PQgetvalue(res, i, 1));
		m->message = PQgetisnull(res, i, 2) ? NULL : strdup(PQgetvalue(res, i, 2));
	}
	PQclear(res);
	if (msgs == NULL) /* the messages come back after their visibility timeout */
		return rows;
	broken = process_msgs(e, conn, ENG_RESULTS_QUEUE, msgs, n, on_step_result);
	mq_msgs_free(msgs, n);
	return broken ? -1 : rows;
}

static const char *jstr(json_t *o, const char *k)
{
	return json_string_value(json_object_get(o, k));
}

/* The request in a TaskRequestMessage. It points into m, *ctxs and *tagss
 * (the context and tags as text; free them). */
static void request_from_json(json_t *m, struct eng_task_request *req, char **ctxs, char **tagss)
{
	json_t *ctx = json_object_get(m, "context");
	json_t *tags = json_object_get(m, "tags");

	*ctxs = ctx ? json_dumps(ctx, JSON_COMPACT) : NULL;
	*tagss = tags ? json_dumps(tags, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
	*req = (struct eng_task_request){
	    .namespace_name = jstr(m, "namespace"),
	    .name = jstr(m, "name"),
	    .version = jstr(m, "version"),
	    .context_json = *ctxs,
	    .initiator = jstr(m, "initiator"),
	    .source_system = jstr(m, "source_system"),
	    .reason = jstr(m, "reason"),
	    .tags_json = *tagss,
	    .priority = (int)json_integer_value(json_object_get(m, "priority")),
	    .correlation_id = jstr(m, "correlation_id"),
	    .parent_correlation_id = jstr(m, "parent_correlation_id"),
	    .idempotency_key = jstr(m, "idempotency_key"),
	};
}

/* A TaskRequestMessage from queue orchestration_task_requests. */
static int on_task_request(struct eng *e, PGconn *conn, json_t *m, struct tk_err *err)
{
	struct eng_task_request req;
	struct eng_task_created out;
	char *ctxs, *tagss;

	request_from_json(m, &req, &ctxs, &tagss);
	/* In the consumer's transaction: the task exists if and only if its
	 * request message is archived. */
	int rv = eng_task_create_in(e, conn, &req, &out, err);
	free(ctxs);
	free(tagss);
	if (rv == 0)
		trpc_log(TRPC_LOG_INFO, "task %s created from a queued request", out.task_uuid);
	return rv;
}

/*
 * One batch of task requests, created with one statement that also
 * archives every message of the batch (eng_tasks_create). When that fails,
 * the messages go the one-at-a-time way. Returns the number of messages,
 * or -1 after a database error.
 */
static int consume_requests(struct eng *e, PGconn *conn)
{
	struct tk_err err = {0};
	struct mq_msg *msgs = NULL;
	size_t n = 0;
	int rv = 0;

	if (mq_read(conn, ENG_REQUESTS_QUEUE, e->cfg.visibility_timeout_s, e->cfg.result_batch,
	            &msgs, &n, &err) != 0) {
		trpc_log(TRPC_LOG_WARN, "reading %s: %s", ENG_REQUESTS_QUEUE, err.msg);
		return -1;
	}
	if (n == 0)
		return 0;
	struct eng_batch_item *items = calloc(n, sizeof *items);
	json_t **parsed = calloc(n, sizeof *parsed);
	char **strs = calloc(2 * n, sizeof *strs);
	int64_t *ids = calloc(n, sizeof *ids);
	if (items == NULL || parsed == NULL || strs == NULL || ids == NULL) {
		rv = tk_err_set(&err, TRPC_ERR_NOMEM, "out of memory");
		goto fallback;
	}
	for (size_t i = 0; i < n; i++) {
		json_error_t je;
		ids[i] = msgs[i].msg_id;
		parsed[i] = json_loads(msgs[i].message ? msgs[i].message : "", 0, &je);
		if (parsed[i] == NULL || !json_is_object(parsed[i])) {
			/* refused below: no namespace */
			items[i].req = (struct eng_task_request){0};
			continue;
		}
		request_from_json(parsed[i], &items[i].req, &strs[2 * i], &strs[2 * i + 1]);
	}
	rv = eng_tasks_create(e, conn, items, n, ids, n, &err);
	if (rv == 0) {
		for (size_t i = 0; i < n; i++) {
			if (items[i].rv == 0)
				trpc_log(TRPC_LOG_INFO, "task %s created from a queued request",
				         items[i].created.task_uuid);
			else if (parsed[i] == NULL)
				trpc_log(TRPC_LOG_WARN, "%s: message %lld is not JSON: dropped",
				         ENG_REQUESTS_QUEUE, (long long)ids[i]);
			else
				trpc_log(TRPC_LOG_INFO, "%s: message %lld: %s", ENG_REQUESTS_QUEUE,
				         (long long)ids[i], items[i].err.msg);
		}
		goto out;
	}
fallback:
	trpc_log(TRPC_LOG_WARN, "creating %zu tasks at once: %s; one at a time instead", n,
	         err.msg);
	rv = db_is_connection_error(conn) ||
	     process_msgs(e, conn, ENG_REQUESTS_QUEUE, msgs, n, on_task_request);
out:
	for (size_t i = 0; parsed != NULL && i < n; i++)
		json_decref(parsed[i]);
	for (size_t i = 0; strs != NULL && i < 2 * n; i++)
		free(strs[i]);
	free(items);
	free(parsed);
	free(strs);
	free(ids);
	mq_msgs_free(msgs, n);
	return rv != 0 ? -1 : (int)n;
}

/* Runs consume(e, conn) on a pooled connection. */
static int with_pooled(struct eng *e, const char *what, int (*consume)(struct eng *, PGconn *))
{
	struct tk_err err = {0};
	PGconn *conn = db_acquire(e->pool, &err);
	int n;

	if (conn == NULL) {
		trpc_log(TRPC_LOG_WARN, "%s: %s", what, err.msg);
		return -1;
	}
	n = consume(e, conn);
	db_release(e->pool, conn, n < 0 && db_is_connection_error(conn));
	return n;
}

static void consume_loop(struct eng *e, int which, const char *queue,
                         int (*consume)(struct eng *, PGconn *))
{
	unsigned seen;
	int backoff = 100;

	pthread_mutex_lock(&e->wake_mu);
	seen = e->wake_seq[which];
	pthread_mutex_unlock(&e->wake_mu);
	while (!atomic_load(&e->stopping)) {
		/* One thread of this process reads a queue at a time: two
		 * reading at once would split a batch in two statements. */
		if (pthread_mutex_trylock(&e->read_mu[which]) != 0) {
			sleep_ms(e, BATCH_WINDOW_MS);
			continue;
		}
		int n = with_pooled(e, queue, consume);
		pthread_mutex_unlock(&e->read_mu[which]);
		if (n < 0) {
			sleep_ms(e, backoff);
			backoff = backoff < 5000 ? backoff * 2 : 5000;
			continue;
		}
		backoff = 100;
		if (n >= e->cfg.result_batch)
			continue;
		if (n == 0 && !sleep_for(e, e->cfg.poll_interval_ms, which, &seen))
			continue; /* the poll interval passed */
		sleep_ms(e, BATCH_WINDOW_MS);
	}
}

static void *results_main(void *arg)
{
	consume_loop(arg, ENG_WAKE_RESULTS, ENG_RESULTS_QUEUE, consume_results);
	return NULL;
}

static void *requests_main(void *arg)
{
	consume_loop(arg, ENG_WAKE_REQUESTS, ENG_REQUESTS_QUEUE, consume_requests);
	return NULL;
}

/* Runs fn over the task uuids a query returns, one transaction each. */
static int drive_listed(struct eng *e, const char *sql, int redrive)
{
	struct tk_err err = {0};
	PGconn *conn = db_acquire(e->pool, &err);
	if (conn == NULL)
		return -1;
	char lim[16];
	snprintf(lim, sizeof lim, "%d", e->cfg.result_batch);
	const char *p[] = {lim};
	PGresult *res = db_exec(conn, sql, 1, p, &err);
	if (res == NULL) {
		trpc_log(TRPC_LOG_WARN, "poller: %s", err.msg);
		db_release(e->pool, conn, db_is_connection_error(conn));
		return -1;
	}
	int n = PQntuples(res);
	for (int i = 0; i < n && !atomic_load(&e->stopping); i++) {
		const char *task = PQgetvalue(res, i, 0);
		if (db_begin(conn, &err) != 0)
			break;
		int rv = eng_drive_locked(e, conn, task, redrive, &err);
		if (rv == 0)
			rv = db_commit(conn, &err);
		else
			db_rollback(conn, NULL);
		if (rv != 0 && rv != TRPC_ERR_STATE && rv != TRPC_ERR_NOT_FOUND)
			trpc_log(TRPC_LOG_WARN, "poller: task %s: %s", task, err.msg);
	}
	PQclear(res);
	db_release(e->pool, conn, db_is_connection_error(conn));
	return n;
}

static void *poller_main(void *arg)
{
	struct eng *e = arg;
	while (!atomic_load(&e->stopping)) {
		int n = drive_listed(
		    e, "SELECT task_uuid FROM tasker.get_next_ready_tasks($1::integer)", 0);
		int m = drive_listed(
		    e, "SELECT task_uuid FROM tasker.get_tasks_needing_redrive($1::integer)", 1);
		if (n < 0 || m < 0)
			sleep_ms(e, 2000);
		else if (n < e->cfg.result_batch)
			sleep_ms(e, e->cfg.poll_interval_ms);
	}
	return NULL;
}

static void *staleness_main(void *arg)
{
	struct eng *e = arg;
	while (!atomic_load(&e->stopping)) {
		sleep_ms(e, e->cfg.staleness_interval_s * 1000);
		if (atomic_load(&e->stopping))
			break;
		struct tk_err err = {0};
		PGconn *conn = db_acquire(e->pool, &err);
		if (conn == NULL)
			continue;
		char batch[16];
		snprintf(batch, sizeof batch, "%d", e->cfg.staleness_batch);
		const char *p[] = {batch};
		PGresult *res =
		    db_exec(conn,
		            "SELECT task_uuid, action_taken FROM "
		            "tasker.detect_and_transition_stale_tasks(false, $1::integer)",
		            1, p, &err);
		if (res == NULL)
			trpc_log(TRPC_LOG_WARN, "staleness detection: %s", err.msg);
		else {
			for (int i = 0; i < PQntuples(res); i++)
				trpc_log(TRPC_LOG_WARN, "stale task %s: %s", PQgetvalue(res, i, 0),
				         PQgetvalue(res, i, 1));
			PQclear(res);
		}
		db_release(e->pool, conn, res == NULL && db_is_connection_error(conn));
	}
	return NULL;
}

/* Which consumers a notification is for: its payload names the queue
 * (tasker.pgmq_notify_ready, migration 0004); when it does not, both. */
static unsigned wake_mask(const char *payload)
{
	unsigned mask = 0;

	if (payload != NULL && strstr(payload, ENG_RESULTS_QUEUE) != NULL)
		mask |= 1u << ENG_WAKE_RESULTS;
	if (payload != NULL && strstr(payload, ENG_REQUESTS_QUEUE) != NULL)
		mask |= 1u << ENG_WAKE_REQUESTS;
	return mask != 0 ? mask : (1u << ENG_WAKE_N) - 1;
}

/* LISTEN for orchestration queue notifications and wake the consumers; on
 * a lost connection the consumers keep polling meanwhile. */
static void *listener_main(void *arg)
{
	struct eng *e = arg;
	static const char *channels[] = {"pgmq_message_ready.orchestration"};
	struct tk_err err = {0};
	struct mq_listener *l = NULL;
	while (!atomic_load(&e->stopping)) {
		if (l == NULL) {
			l = mq_listener_new(e->database_url, channels, 1, &err);
			if (l == NULL) {
				sleep_ms(e, 2000);
				continue;
			}
		}
		char ch[64];
		char *payload = NULL;
		int rv = mq_listener_wait(l, 500, ch, sizeof ch, &payload, &err);
		if (rv > 0)
			wake(e, wake_mask(payload));
		free(payload);
	}
	mq_listener_free(l);
	return NULL;
}

int eng_start(struct eng *e, struct tk_err *err)
{
	int n =
	    e->cfg.result_threads + e->cfg.request_threads + 2 + (e->cfg.staleness_enabled ? 1 : 0);
	e->threads = calloc((size_t)n, sizeof *e->threads);
	if (e->threads == NULL)
		return tk_err_set(err, TRPC_ERR_NOMEM, "out of memory");
	void *(*fns[136])(void *);
	int k = 0;
	for (int i = 0; i < e->cfg.result_threads; i++)
		fns[k++] = results_main;
	for (int i = 0; i < e->cfg.request_threads; i++)
		fns[k++] = requests_main;
	fns[k++] = poller_main;
	fns[k++] = listener_main;
	if (e->cfg.staleness_enabled)
		fns[k++] = staleness_main;
	for (int i = 0; i < k; i++) {
		if (pthread_create(&e->threads[i], NULL, fns[i], e) != 0) {
			eng_stop(e);
			return tk_err_set(err, TRPC_ERR_SYSTEM,
			                  "cannot start orchestration threads");
		}
		e->nthreads = i + 1;
	}
	trpc_log(TRPC_LOG_INFO, "orchestration running: %d result consumers, processor %s",
	         e->cfg.result_threads, e->processor_uuid);
	return 0;
}

void eng_stop(struct eng *e)
{
	if (e->nthreads == 0) {
		free(e->threads);
		e->threads = NULL;
		return;
	}
	atomic_store(&e->stopping, 1);
	wake(e, (1u << ENG_WAKE_N) - 1);
	for (int i = 0; i < e->nthreads; i++)
		pthread_join(e->threads[i], NULL);
	e->nthreads = 0;
	free(e->threads);
	e->threads = NULL;
}

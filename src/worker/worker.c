/*
 * worker: the claim / run / report loop (worker.h; the SQL side is
 * migrations/0007_worker.sql).
 *
 * A job is one queue message in hand, from the read until it is archived,
 * released or left to time out. Every job is on the `held` list (which
 * the lease thread walks) and counts in `busy`. The dispatcher reads and
 * claims a batch of messages with one statement (tasker.worker_claim_steps,
 * migrations/0010_fast_path.sql) and reads no more than there are idle
 * handler threads (`active` counts the jobs queued for or inside a
 * handler), so every claimed step starts at once. A handler thread runs
 * the step and hands the job to the reporter, which writes the results of
 * the jobs finished meanwhile with one statement (tasker.worker_report_
 * steps, which also archives their messages). One mutex guards the run
 * and report queues, the held list and the counters; it is never held
 * across a database call or a handler.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "store/migrate.h"
#include "store/queue.h"
#include "worker/worker.h"

#define IDLE_SLICE_MS     200  /* longest wait before looking at the stop flag */
#define BACKOFF_MIN_MS    250  /* after a database error */
#define BACKOFF_MAX_MS    5000 /* the pause stops growing here */
#define LISTENER_RETRY_MS 5000 /* LISTEN connection attempts while polling */
#define UUID_LEN          36
#define REPORT_MAX        64 /* results written by one statement */
#define REPORT_LINGER_MS  5  /* a result waits this long for others to share a statement */
#define HELD_PER_THREAD   4  /* messages in hand: at most concurrency times this */

#define NS_PER_MS 1000000LL

/* A claimed step: its handler input and handler. */
struct step_run {
	json_t *input;
	char *input_text;
	const struct wk_step_entry *entry;
	const char *correlation_id; /* inside input */
	int attempt;
};

struct job {
	struct job *next;          /* run queue, then report queue */
	struct job *lprev, *lnext; /* held list */
	size_t queue;              /* index into w->queues */
	struct mq_msg msg;         /* msg.message is owned */
	int64_t lease_due_ns;      /* next visibility extension */
	atomic_int child_pgid;     /* a running exec handler's process group */
	char task_uuid[UUID_LEN + 1], step_uuid[UUID_LEN + 1];
	char correlation_id[UUID_LEN + 1]; /* "" when the message had none */
	struct step_run run;               /* from the claim */
	struct wk_outcome out;             /* from the handler */
	struct wk_result_meta meta;
};

struct wk_worker {
	char uuid[UUID_LEN + 1];
	int vt_s, batch, poll_ms, step_timeout_ms, concurrency;
	char *conninfo;
	const struct wk_registry *reg;
	struct db_pool *pool;
	char **queues, **channels;
	char **claim_sql, **report_sql; /* per queue: statements naming its tables */
	size_t nq;
	size_t next_queue;  /* dispatcher only: where the next poll round starts */
	json_t *handled;    /* dispatcher only: handler keys known to be served here */
	char *handled_text; /* its JSON text */

	pthread_mutex_t mu;
	pthread_cond_t work_cv;    /* a job was queued, or quit */
	pthread_cond_t idle_cv;    /* a job ended */
	pthread_cond_t lease_cv;   /* lease_quit */
	pthread_cond_t report_cv;  /* a job was finished, or report_quit */
	struct job *head, *tail;   /* run queue */
	struct job *rhead, *rtail; /* report queue */
	struct job *held;          /* every job in hand */
	int busy;                  /* jobs in hand */
	int active;                /* of those, queued for or inside a handler */
	int nreport;               /* of those, in the report queue */
	int quit;                  /* handler threads: leave when the run queue is empty */
	int report_quit;           /* reporter: leave when the report queue is empty */
	int lease_quit;
	int sync_ready;                   /* mu and the condition variables exist */
	atomic_int results_queue_missing; /* seen NOT_FOUND: create it before the next report */

	atomic_int stopping;
	atomic_int abandoned;

	/* Event counters (status.h, wk_worker_events), relaxed atomics. */
	atomic_long ev_notifications, ev_reads, ev_listener_connects, ev_listener_errors;
	atomic_long ev_claimed, ev_reclaimed, ev_reported, ev_report_fallbacks;

	pthread_t dispatcher, leaser, reporter, *handlers;
	int n_handlers; /* started */
	int dispatcher_started, leaser_started, reporter_started;
};

/* ================================================================== helpers */

static int64_t ms_to_ns(int64_t ms)
{
	return ms * NS_PER_MS;
}

static void sleep_ms(int ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * NS_PER_MS};

	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
}

static int next_backoff(int ms)
{
	ms = ms < BACKOFF_MIN_MS ? BACKOFF_MIN_MS : ms * 2;
	return ms > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : ms;
}

/* pthread_cond_timedwait on CLOCK_MONOTONIC for at most ms. */
static void cond_wait_ms(pthread_cond_t *cv, pthread_mutex_t *mu, int ms)
{
	int64_t t = wk_now_ns() + ms_to_ns(ms);
	struct timespec ts = {.tv_sec = (time_t)(t / 1000000000),
	                      .tv_nsec = (long)(t % 1000000000)};

	pthread_cond_timedwait(cv, mu, &ts);
}

static int cond_init_monotonic(pthread_cond_t *cv)
{
	pthread_condattr_t a;
	int rc;

	pthread_condattr_init(&a);
	pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
	rc = pthread_cond_init(cv, &a);
	pthread_condattr_destroy(&a);
	return rc;
}

static int is_uuid(const char *s)
{
	if (s == NULL || strlen(s) != UUID_LEN)
		return 0;
	for (int i = 0; i < UUID_LEN; i++) {
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (s[i] != '-')
				return 0;
		} else if (!isxdigit((unsigned char)s[i])) {
			return 0;
		}
	}
	return 1;
}

/* UUID version 7 (RFC 9562): 48-bit Unix milliseconds, then random bits. */
static void make_uuid_v7(char out[UUID_LEN + 1])
{
	uint8_t b[16];
	struct timespec ts;
	uint64_t ms;

	if (getrandom(b, sizeof(b), 0) != (ssize_t)sizeof(b)) {
		/* Not expected on Linux >= 3.17; mix time and pid rather than fail. */
		clock_gettime(CLOCK_MONOTONIC, &ts);
		uint64_t x =
		    (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 32) ^ (uint64_t)ts.tv_sec;
		for (size_t i = 0; i < sizeof(b); i++) {
			x ^= x << 13, x ^= x >> 7, x ^= x << 17;
			b[i] = (uint8_t)x;
		}
	}
	clock_gettime(CLOCK_REALTIME, &ts);
	ms = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
	for (int i = 0; i < 6; i++)
		b[i] = (uint8_t)(ms >> (40 - 8 * i));
	b[6] = (uint8_t)(0x70 | (b[6] & 0x0F));
	b[8] = (uint8_t)(0x80 | (b[8] & 0x3F));
	snprintf(out, UUID_LEN + 1,
	         "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
	         b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
	         b[15]);
}

/* Logs the first failure of a streak and the recovery, not every retry. */
struct streak {
	int failing;
};

static void streak_fail(struct streak *s, const char *what, const struct tk_err *err)
{
	if (!s->failing)
		trpc_log(TRPC_LOG_WARN, "%s: %s; retrying", what, err->msg);
	s->failing = 1;
}

static void streak_ok(struct streak *s, const char *what)
{
	if (s->failing)
		trpc_log(TRPC_LOG_INFO, "%s: working again", what);
	s->failing = 0;
}

/*
 * Runs op(w, conn, arg, err) on a pooled connection; one that failed under
 * op goes back marked broken, so that the pool resets it before its next
 * use. Returns op's result or db_acquire()'s error.
 */
typedef int (*conn_op)(struct wk_worker *w, PGconn *conn, void *arg, struct tk_err *err);

static int with_conn(struct wk_worker *w, conn_op op, void *arg, struct tk_err *err)
{
	PGconn *conn = db_acquire(w->pool, err);
	int rc;

	if (conn == NULL)
		return err->code;
	rc = op(w, conn, arg, err);
	db_release(w->pool, conn, rc == TRPC_ERR_UNAVAILABLE);
	return rc;
}

/* ================================================================== jobs */

static void step_run_clear(struct step_run *run)
{
	json_decref(run->input);
	free(run->input_text);
	memset(run, 0, sizeof(*run));
}

/* A job for message m of queue qi (m.message taken over), or NULL. */
static struct job *job_new(struct wk_worker *w, size_t qi, struct mq_msg *m)
{
	struct job *job = calloc(1, sizeof(*job));

	if (job == NULL)
		return NULL;
	job->queue = qi;
	job->msg = *m;
	m->message = NULL;
	job->lease_due_ns = wk_now_ns() + ms_to_ns((int64_t)w->vt_s * 1000) / 2;
	wk_outcome_init(&job->out);
	return job;
}

static void job_free(struct job *job)
{
	if (job == NULL)
		return;
	free(job->msg.message);
	step_run_clear(&job->run);
	wk_outcome_clear(&job->out);
	free(job);
}

/* Takes a claimed step into hand and queues it for a handler thread (the
 * caller holds no lock). */
static void job_push(struct wk_worker *w, struct job *job)
{
	pthread_mutex_lock(&w->mu);
	job->lnext = w->held;
	if (w->held != NULL)
		w->held->lprev = job;
	w->held = job;
	w->busy++;
	w->active++;
	if (w->tail != NULL)
		w->tail->next = job;
	else
		w->head = job;
	w->tail = job;
	pthread_cond_signal(&w->work_cv);
	pthread_mutex_unlock(&w->mu);
}

/* Lets go of a job the handler thread has finished with. */
static void job_done(struct wk_worker *w, struct job *job)
{
	pthread_mutex_lock(&w->mu);
	if (job->lprev != NULL)
		job->lprev->lnext = job->lnext;
	else
		w->held = job->lnext;
	if (job->lnext != NULL)
		job->lnext->lprev = job->lprev;
	w->busy--;
	pthread_cond_broadcast(&w->idle_cv);
	pthread_mutex_unlock(&w->mu);
	job_free(job);
}

/* Reads task_uuid, step_uuid and correlation_id from the message. Returns 0 or -1. */
static int parse_message(struct job *job)
{
	json_t *m = job->msg.message != NULL ? json_loads(job->msg.message, 0, NULL) : NULL;
	const char *task = json_string_value(json_object_get(m, "task_uuid"));
	const char *step = json_string_value(json_object_get(m, "step_uuid"));
	const char *corr = json_string_value(json_object_get(m, "correlation_id"));
	int ok = is_uuid(task) && is_uuid(step) && (corr == NULL || is_uuid(corr));

	if (ok) {
		memcpy(job->task_uuid, task, UUID_LEN + 1);
		memcpy(job->step_uuid, step, UUID_LEN + 1);
		if (corr != NULL)
			memcpy(job->correlation_id, corr, UUID_LEN + 1);
	}
	json_decref(m);
	return ok ? 0 : -1;
}

/* ================================================================== single-message operations */

/* The operations a handler thread does on its own message outside a claim or a report. */
enum msg_op {
	MSG_ARCHIVE = 1, /* drop a message that can never be processed */
	MSG_RELEASE = 2  /* visible again at once, for another worker */
};

struct msg_ref {
	const char *queue;
	int64_t msg_id;
	enum msg_op op;
};

static int message_op_tx(struct wk_worker *w, PGconn *conn, void *arg, struct tk_err *err)
{
	const struct msg_ref *m = arg;

	return m->op == MSG_ARCHIVE ? mq_archive(conn, m->queue, m->msg_id, err)
	                            : mq_set_vt(conn, m->queue, m->msg_id, 0, err);
}

static void message_op(struct wk_worker *w, const char *queue, int64_t msg_id, enum msg_op op)
{
	struct msg_ref m = {.queue = queue, .msg_id = msg_id, .op = op};
	struct tk_err err;
	int rc;

	tk_err_clear(&err);
	rc = with_conn(w, message_op_tx, &m, &err);
	if (rc != 0 && rc != TRPC_ERR_NOT_FOUND)
		trpc_log(TRPC_LOG_WARN,
		         "%s message %" PRId64 ": %s (it comes back after its timeout)", queue,
		         msg_id, err.msg);
}

/* ================================================================== claim */

/* Parses the handler input and finds the step's handler. 0, or -1 when not ours. */
static int take_input(struct wk_worker *w, const char *text, struct step_run *run)
{
	json_t *task;
	const char *ns, *name, *version, *step;

	if ((run->input = json_loads(text, 0, NULL)) == NULL)
		return -1;
	task = json_object_get(run->input, "task");
	ns = json_string_value(json_object_get(task, "namespace"));
	name = json_string_value(json_object_get(task, "name"));
	version = json_string_value(json_object_get(task, "version"));
	step = json_string_value(json_object_get(run->input, "step_name"));
	run->correlation_id = json_string_value(json_object_get(run->input, "correlation_id"));
	run->attempt = (int)json_integer_value(json_object_get(run->input, "attempt"));
	if (ns == NULL || name == NULL || version == NULL || step == NULL)
		return -1;
	run->entry = wk_registry_find(w->reg, ns, name, version, step);
	if (run->entry == NULL || run->entry->handler == NULL)
		return -1;
	run->input_text = json_dumps(run->input, JSON_COMPACT);
	return run->input_text != NULL ? 0 : -1;
}

/*
 * The claim statement of a queue: reads up to $2 visible messages (hiding
 * them for $1 seconds, as pgmq.read does) and claims their steps with
 * tasker.worker_claim_steps for worker $3, for the handler keys $4 only.
 */
static const char SQL_CLAIM_QUEUE[] =
    "WITH r AS (UPDATE {q} m SET vt = clock_timestamp() + make_interval(secs => $1::integer), "
    "read_ct = m.read_ct + 1 FROM (SELECT msg_id FROM {q} WHERE vt <= clock_timestamp() "
    "ORDER BY msg_id LIMIT $2::integer FOR UPDATE SKIP LOCKED) c WHERE m.msg_id = c.msg_id "
    "RETURNING m.msg_id, m.read_ct, m.message, m.enqueued_at, m.vt) "
    "SELECT c.msg_id, r.read_ct, r.message::text, extract(epoch FROM r.enqueued_at)::float8, "
    "extract(epoch FROM r.vt)::float8, c.verdict, c.namespace_name, c.task_name, "
    "c.task_version, c.step_name, c.input::text "
    "FROM tasker.worker_claim_steps($3::uuid, "
    "(SELECT array_agg(msg_id ORDER BY msg_id) FROM r), "
    "(SELECT array_agg(read_ct ORDER BY msg_id) FROM r), "
    "(SELECT array_agg(message ORDER BY msg_id) FROM r), $4::jsonb) c "
    "JOIN r ON r.msg_id = c.msg_id ORDER BY c.msg_id";

/* The claim of messages read already ($2 ids, $3 read counts, $4 a JSON
 * array of the messages), for any handler key. Same columns from 5 on. */
static const char SQL_CLAIM_IDS[] =
    "SELECT c.msg_id, NULL, NULL, NULL, NULL, c.verdict, c.namespace_name, c.task_name, "
    "c.task_version, c.step_name, c.input::text "
    "FROM tasker.worker_claim_steps($1::uuid, $2::bigint[], $3::integer[], "
    "ARRAY(SELECT x.e FROM jsonb_array_elements($4::jsonb) WITH ORDINALITY AS x(e, o) "
    "ORDER BY x.o), NULL) c ORDER BY c.msg_id";

enum { COL_VERDICT = 5, COL_NS, COL_TASK, COL_VERSION, COL_STEP, COL_INPUT };

/* Remembers that steps of this key have a handler here. Dispatcher only. */
static void learn_handled(struct wk_worker *w, const struct wk_step_entry *e)
{
	json_t *key =
	    json_pack("[s, s, s, s]", e->namespace_name, e->task_name, e->version, e->step_name);
	size_t i;
	json_t *k;
	char *text;

	json_array_foreach(w->handled, i, k) if (json_equal(k, key))
	{
		json_decref(key);
		return;
	}
	json_array_append_new(w->handled, key);
	if ((text = json_dumps(w->handled, JSON_COMPACT)) != NULL) {
		free(w->handled_text);
		w->handled_text = text;
	}
}

/* A claimed step: into a handler thread's hands. */
static void on_claimed(struct wk_worker *w, struct job *job, const char *verdict, const char *input)
{
	if (parse_message(job) != 0 || take_input(w, input, &job->run) != 0) {
		/* Not expected: the claim checked both. The message comes back at
		 * once and the step is reclaimed. */
		trpc_log(TRPC_LOG_WARN,
		         "%s message %" PRId64 ": claimed, but the handler input is unusable; "
		         "released",
		         w->queues[job->queue], job->msg.msg_id);
		message_op(w, w->queues[job->queue], job->msg.msg_id, MSG_RELEASE);
		job_free(job);
		return;
	}
	if (strcmp(verdict, "reclaimed") == 0)
		trpc_log(TRPC_LOG_WARN,
		         "step %s (%s): reclaimed, attempt %d: its message came back after the "
		         "visibility timeout (read %d times); the previous worker is presumed dead",
		         job->step_uuid, job->run.entry->step_name, job->run.attempt,
		         job->msg.read_ct);
	else
		trpc_log(TRPC_LOG_DEBUG, "step %s (%s): claimed, attempt %d", job->step_uuid,
		         job->run.entry->step_name, job->run.attempt);
	job_push(w, job);
}

/*
 * What the claim said about one message (row of res). Returns 1 when the
 * job waits for a claim by id (a handler key seen for the first time),
 * else 0 (the job was pushed or freed).
 */
static int on_claim_row(struct wk_worker *w, PGconn *conn, const PGresult *res, int row,
                        struct job *job)
{
	const char *verdict = PQgetvalue(res, row, COL_VERDICT);
	const char *queue = w->queues[job->queue];
	struct tk_err err;

	if (strcmp(verdict, "claimed") == 0 || strcmp(verdict, "reclaimed") == 0) {
		atomic_fetch_add_explicit(verdict[0] == 'c' ? &w->ev_claimed : &w->ev_reclaimed, 1,
		                          memory_order_relaxed);
		on_claimed(w, job, verdict, PQgetvalue(res, row, COL_INPUT));
		return 0;
	}
	if (strcmp(verdict, "foreign") == 0) {
		const char *ns = PQgetvalue(res, row, COL_NS),
		           *name = PQgetvalue(res, row, COL_TASK);
		const char *version = PQgetvalue(res, row, COL_VERSION);
		const char *step = PQgetvalue(res, row, COL_STEP);
		const struct wk_step_entry *e = wk_registry_find(w->reg, ns, name, version, step);
		if (e != NULL && e->handler != NULL) {
			learn_handled(w, e);
			return 1;
		}
		parse_message(job);
		trpc_log(TRPC_LOG_WARN,
		         "step %s (%s/%s@%s, step %s): %s here; left for another worker",
		         job->step_uuid, ns, name, version, step,
		         e == NULL ? "template not loaded" : "no handler for its callable");
		job_free(job);
		return 0;
	}
	tk_err_clear(&err);
	if (strcmp(verdict, "invalid") == 0)
		trpc_log(TRPC_LOG_ERROR,
		         "%s message %" PRId64 ": not a step message (want task_uuid, step_uuid, "
		         "correlation_id): archived",
		         queue, job->msg.msg_id);
	else if (parse_message(job) == 0)
		trpc_log(TRPC_LOG_INFO,
		         "step %s: not claimable (cancelled, finished, or running elsewhere); "
		         "message %" PRId64 " archived",
		         job->step_uuid, job->msg.msg_id);
	if (mq_archive(conn, queue, job->msg.msg_id, &err) != 0 && err.code != TRPC_ERR_NOT_FOUND)
		trpc_log(TRPC_LOG_WARN,
		         "%s message %" PRId64 ": %s (it comes back after its timeout)", queue,
		         job->msg.msg_id, err.msg);
	job_free(job);
	return 0;
}

/* Claims by id the steps of jobs whose handler keys were new. */
static int claim_by_id(struct wk_worker *w, PGconn *conn, struct job **jobs, size_t n,
                       struct tk_err *err)
{
	int64_t *ids = calloc(n, sizeof(*ids));
	char *idlist = NULL, *rcts = NULL, *msgs = NULL;
	size_t cap = 3, len = 0;
	PGresult *res = NULL;
	int rc = TRPC_ERR_NOMEM;

	for (size_t i = 0; i < n; i++)
		cap += (jobs[i]->msg.message ? strlen(jobs[i]->msg.message) : 4) + 1 + 12;
	if (ids == NULL || (msgs = malloc(cap)) == NULL || (rcts = malloc(cap)) == NULL)
		goto out;
	msgs[len++] = '[';
	for (size_t i = 0; i < n; i++) {
		ids[i] = jobs[i]->msg.msg_id;
		len += (size_t)snprintf(msgs + len, cap - len, "%s%s", i > 0 ? "," : "",
		                        jobs[i]->msg.message ? jobs[i]->msg.message : "null");
	}
	snprintf(msgs + len, cap - len, "]");
	len = 0;
	rcts[len++] = '{';
	for (size_t i = 0; i < n; i++)
		len += (size_t)snprintf(rcts + len, cap - len, "%s%d", i > 0 ? "," : "",
		                        jobs[i]->msg.read_ct);
	snprintf(rcts + len, cap - len, "}");
	if ((idlist = mq_ids_literal(ids, n)) == NULL)
		goto out;
	const char *const params[] = {w->uuid, idlist, rcts, msgs};
	if ((res = db_exec_prepared(conn, "wk_claim_ids", SQL_CLAIM_IDS, 4, params, err)) == NULL) {
		rc = err->code;
		goto out;
	}
	for (int row = 0; row < PQntuples(res); row++) {
		int64_t id = strtoll(PQgetvalue(res, row, 0), NULL, 10);
		for (size_t i = 0; i < n; i++)
			if (jobs[i] != NULL && jobs[i]->msg.msg_id == id) {
				on_claim_row(w, conn, res, row, jobs[i]);
				jobs[i] = NULL;
			}
	}
	rc = 0;
out:
	if (rc == TRPC_ERR_NOMEM && err->code == 0)
		tk_err_set(err, rc, "out of memory");
	PQclear(res);
	for (size_t i = 0; i < n; i++) /* not answered: back after the timeout */
		job_free(jobs[i]);
	free(ids);
	free(idlist);
	free(rcts);
	free(msgs);
	return rc;
}

/*
 * Reads and claims up to want messages of queue qi; *got is the number of
 * messages read. Returns 0 or a negative code with err set.
 */
static int claim_queue(struct wk_worker *w, PGconn *conn, size_t qi, int want, int *got,
                       struct tk_err *err)
{
	char stmt[64], vt[16], qty[16];
	const char *const params[] = {vt, qty, w->uuid, w->handled_text};
	struct job **later;
	size_t nlater = 0;
	PGresult *res;
	int rows, rc = 0;

	*got = 0;
	snprintf(vt, sizeof(vt), "%d", w->vt_s);
	snprintf(qty, sizeof(qty), "%d", want);
	if (mq_queue_stmt(stmt, sizeof(stmt), "wk_claim", w->queues[qi]) != 0)
		return tk_err_set(err, TRPC_ERR_INVALID, "queue %s: name too long", w->queues[qi]);
	if ((res = db_exec_prepared(conn, stmt, w->claim_sql[qi], 4, params, err)) == NULL)
		return err->code;
	rows = PQntuples(res);
	*got = rows;
	later = calloc((size_t)rows + 1, sizeof(*later));
	for (int row = 0; row < rows; row++) {
		struct mq_msg m = {
		    .msg_id = strtoll(PQgetvalue(res, row, 0), NULL, 10),
		    .read_ct = atoi(PQgetvalue(res, row, 1)),
		    .message = PQgetisnull(res, row, 2) ? NULL : strdup(PQgetvalue(res, row, 2)),
		    .enqueued_at_epoch = strtod(PQgetvalue(res, row, 3), NULL),
		    .vt_epoch = strtod(PQgetvalue(res, row, 4), NULL),
		};
		struct job *job = later != NULL ? job_new(w, qi, &m) : NULL;
		if (job == NULL) { /* out of memory: the message comes back after its timeout */
			free(m.message);
			continue;
		}
		if (on_claim_row(w, conn, res, row, job))
			later[nlater++] = job;
	}
	PQclear(res);
	if (nlater > 0)
		rc = claim_by_id(w, conn, later, nlater, err);
	free(later);
	return rc;
}

/* ================================================================== report */

static const char SQL_REPORT[] = "SELECT tasker.transition_step_state_atomic($1::uuid, "
                                 "ARRAY['in_progress'], $2::text, $3::jsonb, $4::jsonb)";

struct report {
	const char *to_state;
	char *results;  /* the StepExecutionResult */
	char *metadata; /* {worker_uuid, correlation_id, event: <result>} */
	char *notice;   /* the message for orchestration_step_results */
};

static void report_clear(struct report *r)
{
	free(r->results);
	free(r->metadata);
	free(r->notice);
	memset(r, 0, sizeof(*r));
}

static int report_build(struct wk_worker *w, const struct job *job, const struct step_run *run,
                        const struct wk_outcome *out, const struct wk_result_meta *meta,
                        struct report *r)
{
	const char *corr = run->correlation_id != NULL ? run->correlation_id : job->correlation_id;
	json_t *res = wk_outcome_to_result(out, meta), *md, *notice;

	r->to_state = out->status == WK_COMPLETED ? "enqueued_for_orchestration"
	                                          : "enqueued_as_error_for_orchestration";
	if (res == NULL)
		return TRPC_ERR_NOMEM;
	md = json_pack("{s:s, s:s, s:O}", "worker_uuid", w->uuid, "correlation_id", corr, "event",
	               res);
	notice = json_pack("{s:s, s:s, s:s}", "task_uuid", job->task_uuid, "step_uuid",
	                   job->step_uuid, "correlation_id", corr);
	r->results = json_dumps(res, JSON_COMPACT);
	r->metadata = md != NULL ? json_dumps(md, JSON_COMPACT) : NULL;
	r->notice = notice != NULL ? json_dumps(notice, JSON_COMPACT) : NULL;
	json_decref(res);
	json_decref(md);
	json_decref(notice);
	return r->results && r->metadata && r->notice ? 0 : TRPC_ERR_NOMEM;
}

struct report_args {
	const struct job *job;
	const struct report *r;
	int written; /* out: the transition happened */
};

/*
 * One transaction: the CAS transition with the result, the notice to the
 * orchestration when it was written, the archive of the message. The
 * transition does not happen when the step was cancelled or finished by
 * someone else meanwhile; the message is archived all the same.
 */
static int report_tx(struct wk_worker *w, PGconn *conn, void *arg, struct tk_err *err)
{
	struct report_args *a = arg;
	const struct job *job = a->job;
	const struct report *r = a->r;
	int *written = &a->written;
	const char *const params[] = {job->step_uuid, r->to_state, r->metadata, r->results};
	PGresult *res;
	int rc;

	if (atomic_load(&w->results_queue_missing) && mq_create(conn, WK_RESULTS_QUEUE, err) == 0)
		atomic_store(&w->results_queue_missing, 0);
	if ((rc = db_begin(conn, err)) != 0)
		return rc;
	if ((res = db_exec_prepared(conn, "wk_report", SQL_REPORT, 4, params, err)) == NULL)
		return err->code;
	*written = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
	PQclear(res);
	if (*written && (rc = mq_send(conn, WK_RESULTS_QUEUE, r->notice, 0, NULL, err)) != 0) {
		if (rc == TRPC_ERR_NOT_FOUND) /* dropped since start-up: recreate, then retry */
			atomic_store(&w->results_queue_missing, 1);
		return rc;
	}
	rc = mq_archive(conn, w->queues[job->queue], job->msg.msg_id, err);
	if (rc != 0 && rc != TRPC_ERR_NOT_FOUND)
		return rc;
	return db_commit(conn, err);
}

static void log_outcome(const struct job *job, const struct step_run *run,
                        const struct wk_outcome *out, int64_t ms, int written)
{
	const char *step = run->entry->step_name;

	if (!written)
		trpc_log(TRPC_LOG_INFO,
		         "step %s (%s): result dropped: the step left in_progress meanwhile "
		         "(cancelled or finished elsewhere)",
		         job->step_uuid, step);
	else if (out->status == WK_COMPLETED)
		trpc_log(TRPC_LOG_INFO, "step %s (%s): completed in %" PRId64 " ms (attempt %d)",
		         job->step_uuid, step, ms, run->attempt);
	else
		trpc_log(TRPC_LOG_INFO, "step %s (%s): %s in %" PRId64 " ms (attempt %d, %s): %s",
		         job->step_uuid, step, out->status == WK_FAILED ? "failed" : "error", ms,
		         run->attempt, out->retryable ? "retryable" : "not retryable",
		         out->error_message != NULL ? out->error_message : "");
}

/*
 * Reports until it worked: connection problems are retried with a growing
 * pause (the lease thread keeps the message hidden meanwhile); a result
 * the database refuses is replaced once by an error result saying so.
 */
static void report(struct wk_worker *w, const struct job *job, const struct step_run *run,
                   struct wk_outcome *out, const struct wk_result_meta *meta)
{
	struct streak streak = {0};
	int delay = 0, replaced = 0, rc;
	char what[96];

	snprintf(what, sizeof(what), "step %s: reporting the result", job->step_uuid);
	for (;;) {
		struct report r = {0};
		struct report_args args = {.job = job, .r = &r};
		struct tk_err err;

		tk_err_clear(&err);
		rc = report_build(w, job, run, out, meta, &r);
		if (rc != 0)
			tk_err_set(&err, rc, "out of memory");
		else
			rc = with_conn(w, report_tx, &args, &err);
		report_clear(&r);
		if (rc == 0) {
			streak_ok(&streak, what);
			log_outcome(job, run, out, meta->execution_time_ms, args.written);
			atomic_fetch_add_explicit(&w->ev_reported, 1, memory_order_relaxed);
			return;
		}
		if ((rc == TRPC_ERR_DB || rc == TRPC_ERR_INVALID) && !replaced) {
			trpc_log(TRPC_LOG_ERROR, "%s: refused: %s", what, err.msg);
			wk_outcome_fail(out, WK_ERROR, "ResultNotStored", 0,
			                "the handler's result could not be stored: %s", err.msg);
			replaced = 1;
			continue;
		}
		if (rc == TRPC_ERR_DB || rc == TRPC_ERR_INVALID || rc == TRPC_ERR_NOMEM ||
		    atomic_load(&w->abandoned)) {
			trpc_log(
			    TRPC_LOG_ERROR,
			    "%s: giving up: %s; the message comes back after its timeout and the "
			    "step is reclaimed",
			    what, err.msg);
			return;
		}
		streak_fail(&streak, what, &err);
		sleep_ms(delay = next_backoff(delay));
	}
}

/*
 * The report statement of a queue: the results of a batch (worker $2,
 * reports $3) with tasker.worker_report_steps, and the messages $1
 * archived in the same transaction.
 */
static const char SQL_REPORT_QUEUE[] =
    "WITH d AS (DELETE FROM {q} WHERE msg_id = ANY ($1::bigint[]) "
    "RETURNING msg_id, read_ct, enqueued_at, vt, message, headers), "
    "a AS (INSERT INTO {a} (msg_id, read_ct, enqueued_at, vt, message, headers) "
    "SELECT msg_id, read_ct, enqueued_at, vt, message, headers FROM d) "
    "SELECT r.step_uuid, r.written FROM tasker.worker_report_steps($2::uuid, $3::jsonb) r";

/* The reports of jobs as tasker.worker_report_steps takes them, and the
 * message ids; NULL when out of memory. */
static char *reports_json(struct wk_worker *w, struct job **jobs, size_t n, int64_t *ids)
{
	json_t *a = json_array();
	char *text;

	for (size_t i = 0; i < n && a != NULL; i++) {
		struct job *job = jobs[i];
		const char *corr =
		    job->run.correlation_id != NULL ? job->run.correlation_id : job->correlation_id;
		json_t *res = wk_outcome_to_result(&job->out, &job->meta);
		json_t *r = res == NULL ? NULL
		                        : json_pack("{s:s, s:s, s:s, s:s, s:o}", "step_uuid",
		                                    job->step_uuid, "task_uuid", job->task_uuid,
		                                    "correlation_id", corr, "to_state",
		                                    job->out.status == WK_COMPLETED
		                                        ? "enqueued_for_orchestration"
		                                        : "enqueued_as_error_for_orchestration",
		                                    "results", res);
		if (r == NULL || json_array_append_new(a, r) != 0) {
			json_decref(a);
			return NULL;
		}
		ids[i] = job->msg.msg_id;
	}
	text = a != NULL ? json_dumps(a, JSON_COMPACT) : NULL;
	json_decref(a);
	return text;
}

struct batch_args {
	size_t queue;
	struct job **jobs;
	size_t n;
};

/* Reports the jobs (all of one queue) with one statement; logs each outcome. */
static int report_batch_tx(struct wk_worker *w, PGconn *conn, void *arg, struct tk_err *err)
{
	struct batch_args *a = arg;
	int64_t *ids = calloc(a->n, sizeof(*ids));
	char *reports = ids != NULL ? reports_json(w, a->jobs, a->n, ids) : NULL;
	char *idlist = reports != NULL ? mq_ids_literal(ids, a->n) : NULL;
	const char *const params[] = {idlist, w->uuid, reports};
	char stmt[64];
	PGresult *res = NULL;
	int rc;

	if (idlist == NULL)
		rc = tk_err_set(err, TRPC_ERR_NOMEM, "out of memory");
	else if (mq_queue_stmt(stmt, sizeof(stmt), "wk_report", w->queues[a->queue]) != 0)
		rc = tk_err_set(err, TRPC_ERR_INVALID, "queue %s: name too long",
		                w->queues[a->queue]);
	else if ((res = db_exec_prepared(conn, stmt, w->report_sql[a->queue], 3, params, err)) ==
	         NULL)
		rc = err->code;
	else
		rc = 0;
	for (size_t i = 0; rc == 0 && i < a->n; i++) {
		struct job *job = a->jobs[i];
		int written = 0;
		for (int row = 0; row < PQntuples(res); row++)
			if (strcmp(PQgetvalue(res, row, 0), job->step_uuid) == 0)
				written = PQgetvalue(res, row, 1)[0] == 't';
		log_outcome(job, &job->run, &job->out, job->meta.execution_time_ms, written);
	}
	PQclear(res);
	free(ids);
	free(reports);
	free(idlist);
	return rc;
}

/*
 * Reports finished jobs, one statement per queue, and lets go of them.
 * When a statement fails, its jobs are reported one by one (report(),
 * which retries and replaces a refused result).
 */
static void report_jobs(struct wk_worker *w, struct job **jobs, size_t n)
{
	struct job **sub = calloc(n, sizeof(*sub));

	for (size_t qi = 0; qi < w->nq; qi++) {
		struct batch_args args = {.queue = qi, .jobs = sub};
		struct tk_err err;
		for (size_t i = 0; i < n; i++)
			if (jobs[i]->queue == qi) {
				if (sub == NULL) /* out of memory: one by one */
					report(w, jobs[i], &jobs[i]->run, &jobs[i]->out,
					       &jobs[i]->meta);
				else
					sub[args.n++] = jobs[i];
			}
		if (args.n == 0)
			continue;
		tk_err_clear(&err);
		if (atomic_load(&w->abandoned)) {
			/* the messages were released: other workers reclaim the steps */
		} else if (with_conn(w, report_batch_tx, &args, &err) != 0) {
			trpc_log(TRPC_LOG_WARN,
			         "reporting %zu results at once: %s; reporting them one by one",
			         args.n, err.msg);
			atomic_fetch_add_explicit(&w->ev_report_fallbacks, (long)args.n,
			                          memory_order_relaxed);
			for (size_t i = 0; i < args.n; i++)
				report(w, sub[i], &sub[i]->run, &sub[i]->out, &sub[i]->meta);
		} else {
			atomic_fetch_add_explicit(&w->ev_reported, (long)args.n,
			                          memory_order_relaxed);
		}
	}
	for (size_t i = 0; i < n; i++)
		job_done(w, jobs[i]);
	free(sub);
}

/* ================================================================== handler threads */

static void run_step(struct wk_worker *w, struct job *job)
{
	struct step_run *run = &job->run;
	const struct wk_step_entry *e = run->entry;
	int timeout_ms = e->timeout_s > 0 ? e->timeout_s * 1000 : w->step_timeout_ms;
	int64_t start = wk_now_ns();
	struct wk_call call = {
	    .input = run->input,
	    .input_text = run->input_text,
	    .input_len = strlen(run->input_text),
	    .step_name = e->step_name,
	    .attempt = run->attempt,
	    .timeout_ms = timeout_ms,
	    .deadline_ns = start + ms_to_ns(timeout_ms),
	    .child_pgid = &job->child_pgid,
	};

	job->meta = (struct wk_result_meta){
	    .step_uuid = job->step_uuid, .worker_uuid = w->uuid, .attempt = run->attempt};
	wk_handler_run(e->handler, &call, &job->out);
	job->meta.execution_time_ms = (wk_now_ns() - start) / NS_PER_MS;
}

static void *handler_main(void *arg)
{
	struct wk_worker *w = arg;
	struct job *job;

	for (;;) {
		pthread_mutex_lock(&w->mu);
		while (w->head == NULL && !w->quit)
			pthread_cond_wait(&w->work_cv, &w->mu);
		job = w->head;
		if (job != NULL) {
			w->head = job->next;
			if (w->head == NULL)
				w->tail = NULL;
			job->next = NULL;
		}
		pthread_mutex_unlock(&w->mu);
		if (job == NULL)
			return NULL; /* quit, and nothing left */
		/* The step is claimed: it runs even when the worker is stopping
		 * (the shutdown waits for running steps). */
		run_step(w, job);
		pthread_mutex_lock(&w->mu);
		w->active--;
		if (w->rtail != NULL)
			w->rtail->next = job;
		else
			w->rhead = job;
		w->rtail = job;
		w->nreport++;
		pthread_cond_signal(&w->report_cv);
		pthread_cond_broadcast(&w->idle_cv); /* a handler thread is free */
		pthread_mutex_unlock(&w->mu);
	}
}

/* pthread_cond_timedwait on CLOCK_MONOTONIC until deadline_ns. */
static void cond_wait_until(pthread_cond_t *cv, pthread_mutex_t *mu, int64_t deadline_ns)
{
	struct timespec ts = {.tv_sec = (time_t)(deadline_ns / 1000000000),
	                      .tv_nsec = (long)(deadline_ns % 1000000000)};

	pthread_cond_timedwait(cv, mu, &ts);
}

/*
 * The reporter: takes the finished jobs and reports them together. A
 * first result waits up to REPORT_LINGER_MS for others (while the worker
 * is claiming, or handlers are running), so that results share a statement.
 */
static void *reporter_main(void *arg)
{
	struct wk_worker *w = arg;
	struct job *batch[REPORT_MAX];

	pthread_mutex_lock(&w->mu);
	for (;;) {
		size_t n = 0;
		while (w->rhead == NULL && !w->report_quit)
			pthread_cond_wait(&w->report_cv, &w->mu);
		if (w->rhead == NULL)
			break; /* report_quit, and nothing left */
		int64_t until = wk_now_ns() + ms_to_ns(REPORT_LINGER_MS);
		while (!w->report_quit && w->nreport < REPORT_MAX && wk_now_ns() < until &&
		       (w->active > 0 || !atomic_load(&w->stopping)))
			cond_wait_until(&w->report_cv, &w->mu, until);
		while (w->rhead != NULL && n < REPORT_MAX) {
			batch[n++] = w->rhead;
			w->rhead = w->rhead->next;
			w->nreport--;
		}
		if (w->rhead == NULL)
			w->rtail = NULL;
		pthread_mutex_unlock(&w->mu);
		report_jobs(w, batch, n);
		pthread_mutex_lock(&w->mu);
	}
	pthread_mutex_unlock(&w->mu);
	return NULL;
}

/* ================================================================== leases */

struct lease {
	size_t queue;
	int64_t msg_id;
};

/* Copies the leases due now (at most cap) and schedules their next extension. */
static size_t due_leases(struct wk_worker *w, struct lease *out, size_t cap)
{
	int64_t now = wk_now_ns(), half = ms_to_ns((int64_t)w->vt_s * 1000) / 2;
	size_t n = 0;

	for (struct job *j = w->held; j != NULL && n < cap; j = j->lnext) {
		if (j->lease_due_ns > now)
			continue;
		out[n++] = (struct lease){.queue = j->queue, .msg_id = j->msg.msg_id};
		j->lease_due_ns = now + half;
	}
	return n;
}

/* A lease that could not be extended is tried again at the next tick. */
static void lease_retry(struct wk_worker *w, const struct lease *l)
{
	for (struct job *j = w->held; j != NULL; j = j->lnext)
		if (j->msg.msg_id == l->msg_id && j->queue == l->queue)
			j->lease_due_ns = 0;
}

struct extend_args {
	const struct lease *ls;
	size_t n, done;
};

/* Extends the leases in order; args->done counts the ones extended. */
static int extend_tx(struct wk_worker *w, PGconn *conn, void *arg, struct tk_err *err)
{
	struct extend_args *a = arg;
	int rc;

	for (; a->done < a->n; a->done++) {
		const struct lease *l = &a->ls[a->done];
		rc = mq_set_vt(conn, w->queues[l->queue], l->msg_id, w->vt_s, err);
		if (rc != 0 && rc != TRPC_ERR_NOT_FOUND) /* NOT_FOUND: archived meanwhile */
			return rc;
	}
	return 0;
}

static void *leaser_main(void *arg)
{
	struct wk_worker *w = arg;
	/* Extensions are due every vt/2 and happen up to one tick late; vt/8
	 * leaves 3/8 of the timeout as margin for a slow database. */
	int tick = w->vt_s * 1000 / 8;
	size_t cap = (size_t)w->concurrency * HELD_PER_THREAD;
	struct lease *ls = calloc(cap, sizeof(*ls));
	struct streak streak = {0};

	tick = tick < 100 ? 100 : tick > 1000 ? 1000 : tick;
	pthread_mutex_lock(&w->mu);
	while (!w->lease_quit) {
		struct extend_args args = {.ls = ls, .n = ls != NULL ? due_leases(w, ls, cap) : 0};
		struct tk_err err;
		int rc = 0;

		pthread_mutex_unlock(&w->mu);
		tk_err_clear(&err);
		if (args.n > 0 && (rc = with_conn(w, extend_tx, &args, &err)) != 0)
			streak_fail(&streak, "extending visibility timeouts", &err);
		else if (args.n > 0)
			streak_ok(&streak, "extending visibility timeouts");
		pthread_mutex_lock(&w->mu);
		for (size_t i = args.done; rc != 0 && i < args.n; i++)
			lease_retry(w, &ls[i]);
		if (!w->lease_quit)
			cond_wait_ms(&w->lease_cv, &w->mu, tick);
	}
	pthread_mutex_unlock(&w->mu);
	free(ls);
	return NULL;
}

/* ================================================================== dispatcher */

struct poll_args {
	int room; /* messages we can take */
	int more; /* out: a queue may hold further messages */
};

/* Reads and claims up to args->room messages over the queues. Returns 0
 * or a negative code with err set. Dispatcher thread only. */
static int poll_tx(struct wk_worker *w, PGconn *conn, void *arg, struct tk_err *err)
{
	struct poll_args *a = arg;
	int room = a->room, rc = 0;

	a->more = 0;
	for (size_t k = 0; k < w->nq && room > 0 && rc == 0; k++) {
		size_t qi = (w->next_queue + k) % w->nq;
		int want = room < w->batch ? room : w->batch, got = 0;

		rc = claim_queue(w, conn, qi, want, &got, err);
		room -= got;
		if (got == want)
			a->more = 1;
	}
	w->next_queue = (w->next_queue + 1) % w->nq;
	return rc;
}

/* Idle handler threads, as far as the messages in hand allow. w->mu held. */
static int room_locked(const struct wk_worker *w)
{
	int idle = w->concurrency - w->active;
	int held = w->concurrency * HELD_PER_THREAD - w->busy;

	return idle < held ? idle : held;
}

static int room_now(struct wk_worker *w)
{
	int room;

	pthread_mutex_lock(&w->mu);
	room = room_locked(w);
	pthread_mutex_unlock(&w->mu);
	return room;
}

/* Waits up to ms for a handler thread to become free. */
static void wait_for_room(struct wk_worker *w, int ms)
{
	pthread_mutex_lock(&w->mu);
	if (room_locked(w) <= 0)
		cond_wait_ms(&w->idle_cv, &w->mu, ms);
	pthread_mutex_unlock(&w->mu);
}

/* Most queued notifications taken after one before reading the queues. */
#define NOTIFY_COALESCE_MAX 1024

struct dispatch {
	struct mq_listener *listener;
	int64_t listener_retry_ns;
	int listener_warned;
};

static void ensure_listener(struct wk_worker *w, struct dispatch *d)
{
	struct tk_err err;

	if (d->listener != NULL || wk_now_ns() < d->listener_retry_ns)
		return;
	tk_err_clear(&err);
	d->listener = mq_listener_new(w->conninfo, (const char *const *)w->channels, w->nq, &err);
	if (d->listener == NULL) {
		if (!d->listener_warned)
			trpc_log(TRPC_LOG_WARN, "LISTEN: %s; polling every %d ms meanwhile",
			         err.msg, w->poll_ms);
		d->listener_warned = 1;
		d->listener_retry_ns = wk_now_ns() + ms_to_ns(LISTENER_RETRY_MS);
		atomic_fetch_add_explicit(&w->ev_listener_errors, 1, memory_order_relaxed);
		return;
	}
	atomic_fetch_add_explicit(&w->ev_listener_connects, 1, memory_order_relaxed);
	if (d->listener_warned) {
		trpc_log(TRPC_LOG_INFO, "LISTEN: connected");
		d->listener_warned = 0;
	}
}

/* Waits up to ms for a notification. Returns 1 when one came. */
static int wait_notification(struct wk_worker *w, struct dispatch *d, int ms)
{
	char channel[128];
	struct tk_err err;
	int rc;

	if (d->listener == NULL) {
		sleep_ms(ms);
		return 0;
	}
	tk_err_clear(&err);
	rc = mq_listener_wait(d->listener, ms, channel, sizeof(channel), NULL, &err);
	if (rc < 0) {
		trpc_log(TRPC_LOG_WARN, "LISTEN: %s", err.msg);
		atomic_fetch_add_explicit(&w->ev_listener_errors, 1, memory_order_relaxed);
		sleep_ms(ms);
	}
	if (rc == 1)
		atomic_fetch_add_explicit(&w->ev_notifications, 1, memory_order_relaxed);
	return rc == 1;
}

static void *dispatcher_main(void *arg)
{
	struct wk_worker *w = arg;
	struct dispatch d = {0};
	struct streak streak = {0};
	int64_t next_poll = 0;
	int more = 1, delay = 0;

	while (!atomic_load(&w->stopping)) {
		int room = room_now(w);
		int64_t now = wk_now_ns();

		ensure_listener(w, &d);
		if (room > 0 && (more || now >= next_poll)) {
			struct poll_args args = {.room = room};
			struct tk_err err;
			tk_err_clear(&err);
			if (with_conn(w, poll_tx, &args, &err) != 0) {
				streak_fail(&streak, "reading the queues", &err);
				delay = next_backoff(delay);
				next_poll = wk_now_ns() + ms_to_ns(delay);
				more = 0;
			} else {
				atomic_fetch_add_explicit(&w->ev_reads, 1, memory_order_relaxed);
				streak_ok(&streak, "reading the queues");
				more = args.more;
				delay = 0;
				next_poll = wk_now_ns() + ms_to_ns(w->poll_ms);
			}
			continue;
		}
		if (room <= 0) {
			/* All handler threads busy: when one frees up, look again
			 * (the queues may have filled meanwhile). */
			wait_for_room(w, IDLE_SLICE_MS);
			more = room_now(w) > 0;
			continue;
		}
		int64_t left_ms = (next_poll - now) / NS_PER_MS + 1;
		if (wait_notification(w, &d,
		                      left_ms < IDLE_SLICE_MS ? (int)left_ms : IDLE_SLICE_MS)) {
			more = 1;
			/* Notifications already queued (one per message sent) ask
			 * for the same read: take them now rather than one read
			 * each (bounded, so a steady stream cannot starve it). */
			for (int i = 0; i < NOTIFY_COALESCE_MAX && wait_notification(w, &d, 0); i++)
				;
		}
	}
	mq_listener_free(d.listener);
	return NULL;
}

/* ================================================================== lifecycle */

int wk_worker_new(const struct wk_worker_options *o, struct wk_worker **out, struct tk_err *err)
{
	struct wk_worker *w;

	if (o->n_namespaces == 0)
		return tk_err_set(err, TRPC_ERR_INVALID, "no namespaces to serve");
	if ((w = calloc(1, sizeof(*w))) == NULL)
		return tk_err_set(err, TRPC_ERR_NOMEM, "out of memory");
	make_uuid_v7(w->uuid);
	w->vt_s = o->cfg->visibility_timeout_s;
	w->batch = o->cfg->batch_size;
	w->poll_ms = o->cfg->poll_interval_ms;
	w->step_timeout_ms = o->cfg->step_timeout_ms;
	w->concurrency = o->cfg->concurrency;
	w->reg = o->registry;
	w->pool = o->pool;
	w->conninfo = strdup(o->cfg->database_url);
	w->queues = calloc(o->n_namespaces, sizeof(char *));
	w->channels = calloc(o->n_namespaces, sizeof(char *));
	w->claim_sql = calloc(o->n_namespaces, sizeof(char *));
	w->report_sql = calloc(o->n_namespaces, sizeof(char *));
	w->handlers = calloc((size_t)w->concurrency, sizeof(pthread_t));
	w->handled = json_array();
	w->handled_text = strdup("[]");
	if (w->conninfo == NULL || w->queues == NULL || w->channels == NULL ||
	    w->claim_sql == NULL || w->report_sql == NULL || w->handlers == NULL ||
	    w->handled == NULL || w->handled_text == NULL)
		goto fail_nomem;
	for (size_t i = 0; i < o->n_namespaces; i++, w->nq++) {
		if (asprintf(&w->queues[i], "worker_%s_queue", o->namespaces[i]) == -1) {
			w->queues[i] = NULL;
			goto fail_nomem;
		}
		if (asprintf(&w->channels[i], "pgmq_message_ready.%s", o->namespaces[i]) == -1) {
			w->channels[i] = NULL;
			goto fail_nomem;
		}
		/* Queue names fold to lower case, and so does the channel the send wrapper picks. */
		for (char *p = w->channels[i]; *p != '\0'; p++)
			*p = (char)tolower((unsigned char)*p);
		if (!mq_name_valid(w->queues[i])) {
			tk_err_set(err, TRPC_ERR_INVALID,
			           "namespace \"%s\": queue name %s is not valid (1 to 47 letters, "
			           "digits or underscores)",
			           o->namespaces[i], w->queues[i]);
			w->nq++;
			wk_worker_free(w);
			return TRPC_ERR_INVALID;
		}
		w->claim_sql[i] = mq_queue_sql(SQL_CLAIM_QUEUE, w->queues[i]);
		w->report_sql[i] = mq_queue_sql(SQL_REPORT_QUEUE, w->queues[i]);
		if (w->claim_sql[i] == NULL || w->report_sql[i] == NULL) {
			w->nq++;
			goto fail_nomem;
		}
	}
	if (pthread_mutex_init(&w->mu, NULL) != 0)
		goto fail_nomem;
	if (cond_init_monotonic(&w->work_cv) != 0) {
		pthread_mutex_destroy(&w->mu);
		goto fail_nomem;
	}
	if (cond_init_monotonic(&w->idle_cv) != 0) {
		pthread_cond_destroy(&w->work_cv);
		pthread_mutex_destroy(&w->mu);
		goto fail_nomem;
	}
	if (cond_init_monotonic(&w->lease_cv) != 0) {
		pthread_cond_destroy(&w->idle_cv);
		pthread_cond_destroy(&w->work_cv);
		pthread_mutex_destroy(&w->mu);
		goto fail_nomem;
	}
	if (cond_init_monotonic(&w->report_cv) != 0) {
		pthread_cond_destroy(&w->lease_cv);
		pthread_cond_destroy(&w->idle_cv);
		pthread_cond_destroy(&w->work_cv);
		pthread_mutex_destroy(&w->mu);
		goto fail_nomem;
	}
	w->sync_ready = 1;
	*out = w;
	return 0;

fail_nomem:
	w->nq = o->n_namespaces; /* free what was allocated (calloc'd rest is NULL) */
	wk_worker_free(w);
	return tk_err_set(err, TRPC_ERR_NOMEM, "out of memory");
}

const char *wk_worker_uuid(const struct wk_worker *w)
{
	return w->uuid;
}

static int ensure_queues_tx(struct wk_worker *w, PGconn *conn, void *arg, struct tk_err *err)
{
	int rc = 0;

	for (size_t i = 0; i < w->nq && rc == 0; i++)
		rc = mq_create(conn, w->queues[i], err);
	return rc != 0 ? rc : mq_create(conn, WK_RESULTS_QUEUE, err);
}

int wk_worker_start(struct wk_worker *w, struct tk_err *err)
{
	int rc;

	if ((rc = with_conn(w, ensure_queues_tx, NULL, err)) != 0)
		return rc;
	for (int i = 0; i < w->concurrency; i++, w->n_handlers++)
		if ((rc = pthread_create(&w->handlers[i], NULL, handler_main, w)) != 0)
			return tk_err_set(err, TRPC_ERR_SYSTEM, "cannot start a handler thread: %s",
			                  strerror(rc));
	if ((rc = pthread_create(&w->leaser, NULL, leaser_main, w)) != 0)
		return tk_err_set(err, TRPC_ERR_SYSTEM, "cannot start the lease thread: %s",
		                  strerror(rc));
	w->leaser_started = 1;
	if ((rc = pthread_create(&w->reporter, NULL, reporter_main, w)) != 0)
		return tk_err_set(err, TRPC_ERR_SYSTEM, "cannot start the report thread: %s",
		                  strerror(rc));
	w->reporter_started = 1;
	if ((rc = pthread_create(&w->dispatcher, NULL, dispatcher_main, w)) != 0)
		return tk_err_set(err, TRPC_ERR_SYSTEM, "cannot start the dispatcher thread: %s",
		                  strerror(rc));
	w->dispatcher_started = 1;
	return 0;
}

void wk_worker_stop_claiming(struct wk_worker *w)
{
	atomic_store(&w->stopping, 1);
}

int wk_worker_wait_idle(struct wk_worker *w, int64_t deadline_ns)
{
	int idle;

	pthread_mutex_lock(&w->mu);
	while (w->busy > 0 && wk_now_ns() < deadline_ns) {
		int64_t left = (deadline_ns - wk_now_ns()) / NS_PER_MS + 1;
		cond_wait_ms(&w->idle_cv, &w->mu, left < IDLE_SLICE_MS ? (int)left : IDLE_SLICE_MS);
	}
	idle = w->busy == 0;
	pthread_mutex_unlock(&w->mu);
	return idle;
}

void wk_worker_abandon(struct wk_worker *w)
{
	size_t cap = (size_t)w->concurrency * HELD_PER_THREAD + 1, n = 0;
	struct lease *ls = calloc(cap, sizeof(*ls));

	atomic_store(&w->stopping, 1);
	atomic_store(&w->abandoned, 1);
	/* The dispatcher ends within a poll slice; the other threads may be
	 * inside handlers and are left to the process exit. */
	if (w->dispatcher_started) {
		pthread_join(w->dispatcher, NULL);
		w->dispatcher_started = 0;
	}
	pthread_mutex_lock(&w->mu);
	for (struct job *j = w->held; j != NULL; j = j->lnext) {
		int pgid = atomic_load(&j->child_pgid);
		if (pgid > 0)
			kill(-pgid, SIGKILL);
		if (ls != NULL && n < cap)
			ls[n++] = (struct lease){.queue = j->queue, .msg_id = j->msg.msg_id};
	}
	pthread_mutex_unlock(&w->mu);
	/* Visible at once: the next reader reclaims the step. */
	for (size_t i = 0; i < n; i++)
		message_op(w, w->queues[ls[i].queue], ls[i].msg_id, MSG_RELEASE);
	trpc_log(TRPC_LOG_WARN, "gave up %zu running step(s); their messages were released", n);
	free(ls);
}

void wk_worker_free(struct wk_worker *w)
{
	struct job *j;

	if (w == NULL)
		return;
	atomic_store(&w->stopping, 1);
	if (w->dispatcher_started)
		pthread_join(w->dispatcher, NULL);
	if (w->handlers != NULL && (w->n_handlers > 0 || w->leaser_started)) {
		pthread_mutex_lock(&w->mu);
		w->quit = 1;
		pthread_cond_broadcast(&w->work_cv);
		pthread_mutex_unlock(&w->mu);
		for (int i = 0; i < w->n_handlers; i++)
			pthread_join(w->handlers[i], NULL);
		pthread_mutex_lock(&w->mu);
		w->report_quit = 1; /* after the results still queued */
		pthread_cond_broadcast(&w->report_cv);
		pthread_mutex_unlock(&w->mu);
		if (w->reporter_started)
			pthread_join(w->reporter, NULL);
		pthread_mutex_lock(&w->mu);
		w->lease_quit = 1;
		pthread_cond_broadcast(&w->lease_cv);
		pthread_mutex_unlock(&w->mu);
		if (w->leaser_started)
			pthread_join(w->leaser, NULL);
	}
	while ((j = w->head) != NULL) { /* only when a start failed half-way */
		w->head = j->next;
		job_free(j);
	}
	while ((j = w->rhead) != NULL) {
		w->rhead = j->next;
		job_free(j);
	}
	for (size_t i = 0; i < w->nq; i++) {
		free(w->queues != NULL ? w->queues[i] : NULL);
		free(w->channels != NULL ? w->channels[i] : NULL);
		free(w->claim_sql != NULL ? w->claim_sql[i] : NULL);
		free(w->report_sql != NULL ? w->report_sql[i] : NULL);
	}
	free(w->queues);
	free(w->channels);
	free(w->claim_sql);
	free(w->report_sql);
	json_decref(w->handled);
	free(w->handled_text);
	free(w->handlers);
	free(w->conninfo);
	if (w->sync_ready) {
		pthread_cond_destroy(&w->report_cv);
		pthread_cond_destroy(&w->lease_cv);
		pthread_cond_destroy(&w->idle_cv);
		pthread_cond_destroy(&w->work_cv);
		pthread_mutex_destroy(&w->mu);
	}
	free(w);
}

/* ================================================================== schema */

int wk_check_schema(PGconn *conn, struct tk_err *err)
{
	char *versions = malloc(db_migrations_count * 8 + 3), *p;
	const char *params[1];
	PGresult *res;
	int rc = 0;

	if (versions == NULL)
		return tk_err_set(err, TRPC_ERR_NOMEM, "out of memory");
	p = versions;
	*p++ = '{';
	for (size_t i = 0; i < db_migrations_count; i++)
		p += sprintf(p, "%s%.6s", i > 0 ? "," : "", db_migrations[i].version);
	strcpy(p, "}");
	params[0] = versions;
	res = db_exec(conn,
	              "SELECT coalesce(string_agg(v, ', ' ORDER BY v), '') "
	              "FROM unnest($1::text[]) AS v "
	              "WHERE v NOT IN (SELECT version FROM tasker.schema_migrations)",
	              1, params, err);
	free(versions);
	if (res == NULL) {
		if (db_err_is_sqlstate(err, "42P01") || db_err_is_sqlstate(err, "3F000"))
			return tk_err_set(
			    err, TRPC_ERR_STATE,
			    "the database has no tasker schema: run taskerd --migrate-only "
			    "against it first (the worker does not migrate)");
		return err->code;
	}
	if (PQgetvalue(res, 0, 0)[0] != '\0')
		rc = tk_err_set(err, TRPC_ERR_STATE,
		                "the database schema lacks migration(s) %s: run taskerd "
		                "--migrate-only against it first (the worker does not migrate)",
		                PQgetvalue(res, 0, 0));
	PQclear(res);
	return rc;
}

/* ================================================================== status (status.h) */

#include "worker/status.h"

void wk_worker_status(struct wk_worker *w, struct wk_worker_status *out)
{
	memset(out, 0, sizeof(*out));
	out->concurrency = w->concurrency;
	out->visibility_timeout_s = w->vt_s;
	out->poll_interval_ms = w->poll_ms;
	out->n_queues = w->nq;
	out->stopping = atomic_load(&w->stopping);
	out->abandoned = atomic_load(&w->abandoned);
	if (!w->sync_ready)
		return;
	pthread_mutex_lock(&w->mu);
	out->busy = w->busy;
	for (const struct job *j = w->head; j != NULL; j = j->next)
		out->queued++;
	out->handler_threads = w->n_handlers;
	out->dispatcher_running = w->dispatcher_started;
	out->leaser_running = w->leaser_started;
	pthread_mutex_unlock(&w->mu);
}

void wk_worker_events(struct wk_worker *w, struct wk_worker_events *out)
{
	out->notifications = atomic_load_explicit(&w->ev_notifications, memory_order_relaxed);
	out->reads = atomic_load_explicit(&w->ev_reads, memory_order_relaxed);
	out->listener_connects =
	    atomic_load_explicit(&w->ev_listener_connects, memory_order_relaxed);
	out->listener_errors = atomic_load_explicit(&w->ev_listener_errors, memory_order_relaxed);
	out->claimed = atomic_load_explicit(&w->ev_claimed, memory_order_relaxed);
	out->reclaimed = atomic_load_explicit(&w->ev_reclaimed, memory_order_relaxed);
	out->reported = atomic_load_explicit(&w->ev_reported, memory_order_relaxed);
	out->report_fallbacks = atomic_load_explicit(&w->ev_report_fallbacks, memory_order_relaxed);
}

const char *wk_worker_queue(const struct wk_worker *w, size_t i)
{
	return i < w->nq ? w->queues[i] : NULL;
}

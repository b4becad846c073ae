/*
 * WorkerHealthService (tasker.v1): the worker's health, from real checks.
 *
 *   database          a pooled connection answers SELECT 1 within
 *                     check_timeout_ms (the wait is ours, not the server's:
 *                     a database that stopped answering is caught too)
 *   command_processor the worker's threads: dispatcher, lease thread and
 *                     every handler thread started, and not shutting down
 *   queue_processing  every namespace queue exists and no message waits
 *                     there longer than the worker should take to read it
 *                     while handler threads are idle
 *   event_system      a LISTEN/NOTIFY round trip on a connection of its
 *                     own (the dispatcher's wake-ups use the same path)
 *   step_processing   results this worker reported in the last 5 minutes;
 *                     degraded when most of them are errors
 *   circuit_breakers  database connection failures of the pool since the
 *                     previous detailed check (the worker has no breaker
 *                     of its own: the pool's failures are what one counts)
 *
 * Readiness: database, command_processor and queue_processing; "ready"
 * when all three are healthy, else "not_ready" and UNAVAILABLE (the
 * response is filled all the same, for the REST twin's 503 body).
 * Detailed: all six; "healthy" when all are, else "degraded".
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "services/ops.h"
#include "services/svc_env.h"
#include "services/worker/wsvc.h"
#include "store/db.h"
#include "store/queue.h"
#include "tasker/v1/worker.pb-c.h"
#include "worker/status.h"
#include "worker/worker.h"

#define HEALTHY   "healthy"
#define DEGRADED  "degraded"
#define UNHEALTHY "unhealthy"

#define RECENT_RESULTS_WINDOW "5 minutes"

struct check {
	const char *status;
	char message[256];
	uint64_t duration_ms;
};

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void check_set(struct check *c, const char *status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void check_set(struct check *c, const char *status, const char *fmt, ...)
{
	va_list ap;

	c->status = status;
	va_start(ap, fmt);
	vsnprintf(c->message, sizeof(c->message), fmt, ap);
	va_end(ap);
}

/* Appends to the check's message (cut at its size). */
static void check_add(struct check *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void check_add(struct check *c, const char *fmt, ...)
{
	size_t used = strlen(c->message);
	va_list ap;

	if (used + 1 >= sizeof(c->message))
		return;
	va_start(ap, fmt);
	vsnprintf(c->message + used, sizeof(c->message) - used, fmt, ap);
	va_end(ap);
}

/* ------------------------------------------------------------------ database access */

/*
 * Runs one statement on conn and waits at most timeout_ms for its answer.
 * Returns the result, or NULL with why set; *broken is set when the
 * connection must be reset before its next use (no answer, lost).
 */
static PGresult *query_within(PGconn *conn, const char *sql, int nparams, const char *const *params,
                              int timeout_ms, char *why, size_t whylen, int *broken)
{
	int64_t deadline = mono_ms() + timeout_ms;
	PGresult *res = NULL, *r;

	if (!PQsendQueryParams(conn, sql, nparams, NULL, params, NULL, NULL, 0)) {
		*broken = 1;
		snprintf(why, whylen, "the connection failed");
		return NULL;
	}
	while (PQisBusy(conn)) {
		int64_t left = deadline - mono_ms();
		struct pollfd pfd = {.fd = PQsocket(conn), .events = POLLIN};
		if (left <= 0) {
			*broken = 1;
			snprintf(why, whylen, "no answer within %d ms", timeout_ms);
			return NULL;
		}
		if (poll(&pfd, 1, (int)left) == -1 && errno != EINTR) {
			*broken = 1;
			snprintf(why, whylen, "poll: %s", strerror(errno));
			return NULL;
		}
		if (!PQconsumeInput(conn)) {
			*broken = 1;
			snprintf(why, whylen, "the connection was lost");
			return NULL;
		}
	}
	while ((r = PQgetResult(conn)) != NULL) {
		PQclear(res);
		res = r;
	}
	if (res == NULL ||
	    (PQresultStatus(res) != PGRES_TUPLES_OK && PQresultStatus(res) != PGRES_COMMAND_OK)) {
		const char *m =
		    res != NULL ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
		snprintf(why, whylen, "%s", m != NULL ? m : "the query failed");
		*broken = db_is_connection_error(conn);
		PQclear(res);
		return NULL;
	}
	return res;
}

/* A pooled connection for the checks of one request. */
struct probe {
	const struct wsvc *w;
	PGconn *conn; /* NULL when none could be had */
	int broken;
	char why[160]; /* why conn is NULL */
};

static void probe_open(struct probe *p, const struct wsvc *w)
{
	struct tk_err err;

	memset(p, 0, sizeof(*p));
	p->w = w;
	tk_err_clear(&err);
	if ((p->conn = db_acquire(w->pool, &err)) == NULL) {
		/* The detail can name the server: it goes to the log only. */
		trpc_log(TRPC_LOG_WARN, "health check: %s", err.msg);
		snprintf(p->why, sizeof(p->why), "no database connection (%s)",
		         trpc_strerror(err.code));
	}
}

static void probe_close(struct probe *p)
{
	if (p->conn != NULL)
		db_release(p->w->pool, p->conn, p->broken);
	p->conn = NULL;
}

static PGresult *probe_query(struct probe *p, const char *sql, int nparams,
                             const char *const *params, char *why, size_t whylen)
{
	PGresult *res;

	if (p->conn == NULL || p->broken) {
		snprintf(why, whylen, "%s", p->conn == NULL ? p->why : "the connection failed");
		return NULL;
	}
	res = query_within(p->conn, sql, nparams, params, p->w->check_timeout_ms, why, whylen,
	                   &p->broken);
	return res;
}

/* ------------------------------------------------------------------ checks */

static void check_database(struct probe *p, struct check *c)
{
	int64_t t0 = mono_ms();
	char why[160];
	PGresult *res = probe_query(p, "SELECT 1", 0, NULL, why, sizeof(why));

	if (res != NULL)
		check_set(c, HEALTHY, "database connection OK");
	else
		check_set(c, UNHEALTHY, "database: %s", why);
	PQclear(res);
	c->duration_ms = (uint64_t)(mono_ms() - t0);
}

static void check_command_processor(const struct wk_worker_status *st, struct check *c)
{
	if (st->stopping)
		check_set(c, UNHEALTHY, "shutting down: no longer claiming steps%s",
		          st->abandoned ? " (running steps were given up)" : "");
	else if (!st->dispatcher_running || !st->leaser_running ||
	         st->handler_threads < st->concurrency)
		check_set(c, UNHEALTHY,
		          "threads not running: dispatcher %s, lease thread %s, %d of %d handler "
		          "threads",
		          st->dispatcher_running ? "up" : "down",
		          st->leaser_running ? "up" : "down", st->handler_threads, st->concurrency);
	else
		check_set(c, HEALTHY, "%d of %d handler threads busy", st->busy, st->concurrency);
	c->duration_ms = 0;
}

/* Seconds a visible message may wait before it counts as stuck: the
 * dispatcher reads at once after a notification and at least every poll
 * interval; a message whose claim was rolled back comes back after the
 * visibility timeout. */
static int64_t stall_after_s(const struct wk_worker_status *st)
{
	int64_t s = 2 * (int64_t)st->visibility_timeout_s, poll3 = 3 * st->poll_interval_ms / 1000;

	if (poll3 > s)
		s = poll3;
	return s < 10 ? 10 : s;
}

static void check_queue_processing(struct probe *p, const struct wk_worker_status *st,
                                   struct check *c)
{
	int64_t t0 = mono_ms(), stall = stall_after_s(st);
	int idle = st->concurrency - st->busy;

	check_set(c, HEALTHY, "%d message(s) in hand, %d handler thread(s) idle", st->busy,
	          idle > 0 ? idle : 0);
	for (size_t i = 0; i < st->n_queues; i++) {
		const char *q = wk_worker_queue(p->w->worker, i);
		char sql[256], why[160], lower[64];
		PGresult *res;
		size_t k;

		/* Queue names are checked at start-up (mq_name_valid): letters,
		 * digits and underscores, so they can go into the table name. */
		for (k = 0; q[k] != '\0' && k + 1 < sizeof(lower); k++)
			lower[k] = (char)(q[k] >= 'A' && q[k] <= 'Z' ? q[k] - 'A' + 'a' : q[k]);
		lower[k] = '\0';
		snprintf(sql, sizeof(sql),
		         "SELECT count(*) FILTER (WHERE vt <= now()), "
		         "coalesce(extract(epoch FROM now() - min(enqueued_at) FILTER "
		         "(WHERE vt <= now()))::bigint, 0) FROM pgmq.q_%s",
		         lower);
		if ((res = probe_query(p, sql, 0, NULL, why, sizeof(why))) == NULL) {
			check_set(c, UNHEALTHY, "queue %s: %s", q, why);
			break;
		}
		int64_t waiting = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
		int64_t oldest = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
		PQclear(res);
		check_add(c, "; %s: %" PRId64 " waiting", q, waiting);
		if (waiting > 0)
			check_add(c, " (oldest %" PRId64 " s)", oldest);
		if (waiting > 0 && oldest > stall && idle > 0 && !st->stopping &&
		    strcmp(c->status, HEALTHY) == 0)
			c->status = DEGRADED;
	}
	if (strcmp(c->status, DEGRADED) == 0)
		check_add(c,
		          "; messages wait longer than %" PRId64 " s while handler threads are "
		          "idle (steps of templates this worker lacks, or reads failing)",
		          stall);
	c->duration_ms = (uint64_t)(mono_ms() - t0);
}

static void check_step_processing(struct probe *p, struct check *c)
{
	static const char sql[] =
	    "SELECT count(*) FILTER (WHERE to_state = 'enqueued_for_orchestration'), "
	    "count(*) FILTER (WHERE to_state = 'enqueued_as_error_for_orchestration') "
	    "FROM tasker.workflow_step_transitions "
	    "WHERE to_state IN ('enqueued_for_orchestration', "
	    "'enqueued_as_error_for_orchestration') "
	    "AND created_at > now() - interval '" RECENT_RESULTS_WINDOW "' "
	    "AND metadata->>'worker_uuid' = $1";
	const char *const params[] = {wk_worker_uuid(p->w->worker)};
	int64_t t0 = mono_ms();
	char why[160];
	PGresult *res = probe_query(p, sql, 1, params, why, sizeof(why));

	if (res == NULL) {
		check_set(c, UNHEALTHY, "recent results: %s", why);
	} else {
		int64_t ok = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
		int64_t failed = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
		/* Failed steps are usually the handlers' business; a worker whose
		 * results are mostly errors is worth a look all the same. */
		check_set(c, failed >= 10 && failed > ok ? DEGRADED : HEALTHY,
		          "last " RECENT_RESULTS_WINDOW ": %" PRId64 " step(s) succeeded, %" PRId64
		          " failed",
		          ok, failed);
	}
	PQclear(res);
	c->duration_ms = (uint64_t)(mono_ms() - t0);
}

static void check_event_system(struct probe *p, struct check *c)
{
	const char *uuid = wk_worker_uuid(p->w->worker);
	char channel[64], got[64], why[160];
	const char *chans[1] = {channel};
	const char *params[1] = {channel};
	int64_t t0 = mono_ms();
	struct mq_listener *l;
	struct tk_err err;
	PGresult *res;
	size_t o;

	/* A channel of this worker alone: tasker_health_<uuid hex>. */
	o = (size_t)snprintf(channel, sizeof(channel), "tasker_health_");
	for (const char *s = uuid; *s != '\0' && o + 1 < sizeof(channel); s++)
		if (*s != '-')
			channel[o++] = *s;
	channel[o] = '\0';
	tk_err_clear(&err);
	if ((l = mq_listener_new(p->w->conninfo, chans, 1, &err)) == NULL) {
		trpc_log(TRPC_LOG_WARN, "health check: LISTEN: %s", err.msg);
		check_set(c, UNHEALTHY, "cannot open a LISTEN connection (%s)",
		          trpc_strerror(err.code));
		c->duration_ms = (uint64_t)(mono_ms() - t0);
		return;
	}
	res = probe_query(p, "SELECT pg_notify($1, 'ping')", 1, params, why, sizeof(why));
	if (res == NULL) {
		check_set(c, UNHEALTHY, "NOTIFY: %s", why);
	} else {
		int64_t left = p->w->check_timeout_ms;
		int rc = 0;
		while (rc == 0 && left > 0) {
			rc = mq_listener_wait(l, (int)left, got, sizeof(got), NULL, &err);
			left = p->w->check_timeout_ms - (mono_ms() - t0);
		}
		if (rc == 1)
			check_set(c, HEALTHY, "LISTEN/NOTIFY round trip in %" PRId64 " ms",
			          mono_ms() - t0);
		else
			check_set(c, UNHEALTHY, "notification not received within %d ms",
			          p->w->check_timeout_ms);
	}
	PQclear(res);
	mq_listener_free(l);
	c->duration_ms = (uint64_t)(mono_ms() - t0);
}

static void check_circuit_breakers(struct wsvc *w, struct check *c)
{
	struct db_pool_stats ps;
	unsigned long long before;

	db_pool_stats(w->pool, &ps);
	before = atomic_exchange(&w->last_pool_errors, (unsigned long long)ps.errors);
	if (ps.errors > before)
		check_set(c, DEGRADED,
		          "%" PRIu64
		          " database connection failure(s) since the last check (%" PRIu64
		          " in all)",
		          (uint64_t)(ps.errors - before), ps.errors);
	else
		check_set(c, HEALTHY,
		          "no database connection failures since the last check (%" PRIu64
		          " in all)",
		          ps.errors);
	c->duration_ms = 0;
}

/* ------------------------------------------------------------------ messages */

static Tasker__V1__WorkerHealthCheck *check_pb(struct wsvc_pb *b, const struct check *c)
{
	Tasker__V1__WorkerHealthCheck *h = wsvc_pb_alloc(b, sizeof(*h));

	if (h == NULL)
		return NULL;
	tasker__v1__worker_health_check__init(h);
	h->status = wsvc_pb_strdup(b, c->status);
	if (c->message[0] != '\0') {
		h->_message_case = TASKER__V1__WORKER_HEALTH_CHECK___MESSAGE_MESSAGE;
		h->message = wsvc_pb_strdup(b, c->message);
	}
	h->duration_ms = c->duration_ms;
	h->last_checked = wsvc_pb_now(b);
	return h;
}

static Tasker__V1__WorkerPoolDetail *pool_pb(struct wsvc_pb *b, const struct db_pool_stats *ps)
{
	Tasker__V1__WorkerPoolDetail *d = wsvc_pb_alloc(b, sizeof(*d));

	if (d == NULL)
		return NULL;
	tasker__v1__worker_pool_detail__init(d);
	d->active_connections = (uint32_t)ps->active;
	d->idle_connections = (uint32_t)ps->idle;
	d->max_connections = (uint32_t)ps->size;
	d->utilization_percent = ps->size > 0 ? 100.0 * ps->active / ps->size : 0;
	d->total_acquires = ps->acquires;
	d->slow_acquires = ps->slow_acquires;
	d->acquire_errors = ps->errors;
	d->average_acquire_time_ms = ps->avg_acquire_ms;
	d->max_acquire_time_ms = ps->max_acquire_ms;
	return d;
}

static Tasker__V1__WorkerSystemInfo *system_info_pb(struct wsvc_pb *b, const struct svc_env *env,
                                                    const struct wk_worker_status *st)
{
	const struct wsvc *w = env->wsvc;
	Tasker__V1__WorkerSystemInfo *si = wsvc_pb_alloc(b, sizeof(*si));
	Tasker__V1__WorkerPoolUtilizationInfo *pu = wsvc_pb_alloc(b, sizeof(*pu));
	struct db_pool_stats ps;

	if (si == NULL || pu == NULL)
		return NULL;
	tasker__v1__worker_system_info__init(si);
	tasker__v1__worker_pool_utilization_info__init(pu);
	si->version = wsvc_pb_strdup(b, env->pub.version);
	si->environment = wsvc_pb_strdup(b, env->pub.environment);
	si->uptime_seconds = (uint64_t)((mono_ms() - w->started_ns / 1000000) / 1000);
	si->worker_type = wsvc_pb_strdup(b, env->pub.worker_type);
	si->database_pool_size = (uint32_t)w->db_pool_size;
	si->command_processor_active =
	    !st->stopping && st->dispatcher_running && st->handler_threads == st->concurrency;
	if ((si->supported_namespaces = wsvc_pb_alloc(b, w->n_namespaces * sizeof(char *))) != NULL)
		for (size_t i = 0; i < w->n_namespaces; i++)
			si->supported_namespaces[si->n_supported_namespaces++] =
			    wsvc_pb_strdup(b, w->namespaces[i]);
	/* One pool serves the worker's steps and its queues (the queues are
	 * tables of the same database): both entries describe it. */
	db_pool_stats(w->pool, &ps);
	pu->tasker_pool = pool_pb(b, &ps);
	pu->pgmq_pool = pool_pb(b, &ps);
	si->pool_utilization = pu;
	return si;
}

/* The fields every health response starts with. */
static void head_pb(struct wsvc_pb *b, const struct svc_env *env, const char *status,
                    char **status_out, Google__Protobuf__Timestamp **ts, char **worker_id)
{
	*status_out = wsvc_pb_strdup(b, status);
	*ts = wsvc_pb_now(b);
	*worker_id = wsvc_pb_strdup(b, wk_worker_uuid(env->wsvc->worker));
}

static int all_healthy(const struct check *c, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(c[i].status, HEALTHY) != 0)
			return 0;
	return 1;
}

static int nomem(struct svc_result *res)
{
	return svc_fail(res, TRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
}

/* ------------------------------------------------------------------ operations */

static int on_check_health(struct svc_env *env, const ProtobufCMessage *req,
                           ProtobufCMessage *resp_msg, const struct svc_ctx *ctx,
                           struct svc_result *res)
{
	Tasker__V1__WorkerBasicHealthResponse *resp =
	    (Tasker__V1__WorkerBasicHealthResponse *)resp_msg;
	struct wsvc_pb b = {.a = ctx->alloc};

	head_pb(&b, env, "healthy", &resp->status, &resp->timestamp, &resp->worker_id);
	return b.oom ? nomem(res) : 0;
}

static int on_check_liveness(struct svc_env *env, const ProtobufCMessage *req,
                             ProtobufCMessage *resp_msg, const struct svc_ctx *ctx,
                             struct svc_result *res)
{
	Tasker__V1__WorkerBasicHealthResponse *resp =
	    (Tasker__V1__WorkerBasicHealthResponse *)resp_msg;
	struct wsvc_pb b = {.a = ctx->alloc};
	struct wk_worker_status st;

	/* Takes the worker's lock: a deadlocked worker does not answer. */
	wk_worker_status(env->wsvc->worker, &st);
	head_pb(&b, env, "alive", &resp->status, &resp->timestamp, &resp->worker_id);
	return b.oom ? nomem(res) : 0;
}

static int on_check_readiness(struct svc_env *env, const ProtobufCMessage *req,
                              ProtobufCMessage *resp_msg, const struct svc_ctx *ctx,
                              struct svc_result *res)
{
	Tasker__V1__WorkerReadinessResponse *resp = (Tasker__V1__WorkerReadinessResponse *)resp_msg;
	struct wsvc_pb b = {.a = ctx->alloc};
	Tasker__V1__WorkerReadinessChecks *ck = wsvc_pb_alloc(&b, sizeof(*ck));
	struct wk_worker_status st;
	struct check c[3];
	struct probe p;
	int ready;

	if (ck == NULL)
		return nomem(res);
	tasker__v1__worker_readiness_checks__init(ck);
	wk_worker_status(env->wsvc->worker, &st);
	probe_open(&p, env->wsvc);
	check_database(&p, &c[0]);
	check_command_processor(&st, &c[1]);
	check_queue_processing(&p, &st, &c[2]);
	probe_close(&p);
	ready = all_healthy(c, 3);
	ck->database = check_pb(&b, &c[0]);
	ck->command_processor = check_pb(&b, &c[1]);
	ck->queue_processing = check_pb(&b, &c[2]);
	resp->checks = ck;
	resp->system_info = system_info_pb(&b, env, &st);
	head_pb(&b, env, ready ? "ready" : "not_ready", &resp->status, &resp->timestamp,
	        &resp->worker_id);
	if (b.oom)
		return nomem(res);
	return ready ? 0 : svc_fail(res, TRPC_STATUS_UNAVAILABLE, "Service is not ready");
}

static int on_check_detailed(struct svc_env *env, const ProtobufCMessage *req,
                             ProtobufCMessage *resp_msg, const struct svc_ctx *ctx,
                             struct svc_result *res)
{
	Tasker__V1__WorkerDetailedHealthResponse *resp =
	    (Tasker__V1__WorkerDetailedHealthResponse *)resp_msg;
	struct wsvc_pb b = {.a = ctx->alloc};
	Tasker__V1__WorkerDetailedChecks *ck = wsvc_pb_alloc(&b, sizeof(*ck));
	struct wk_worker_status st;
	struct check c[6];
	struct probe p;

	if (ck == NULL)
		return nomem(res);
	tasker__v1__worker_detailed_checks__init(ck);
	wk_worker_status(env->wsvc->worker, &st);
	probe_open(&p, env->wsvc);
	check_database(&p, &c[0]);
	check_command_processor(&st, &c[1]);
	check_queue_processing(&p, &st, &c[2]);
	check_event_system(&p, &c[3]);
	check_step_processing(&p, &c[4]);
	probe_close(&p);
	check_circuit_breakers(env->wsvc, &c[5]);
	ck->database = check_pb(&b, &c[0]);
	ck->command_processor = check_pb(&b, &c[1]);
	ck->queue_processing = check_pb(&b, &c[2]);
	ck->event_system = check_pb(&b, &c[3]);
	ck->step_processing = check_pb(&b, &c[4]);
	ck->circuit_breakers = check_pb(&b, &c[5]);
	resp->checks = ck;
	resp->system_info = system_info_pb(&b, env, &st);
	/* No distributed cache in this worker: distributed_cache stays absent. */
	head_pb(&b, env, all_healthy(c, 6) ? "healthy" : "degraded", &resp->status,
	        &resp->timestamp, &resp->worker_id);
	return b.oom ? nomem(res) : 0;
}

#define HEALTH_OP(m, fn_, req_, resp_)                                                             \
	{                                                                                          \
		.service = "tasker.v1.WorkerHealthService", .method = (m), .permission = NULL,     \
		.request = &(req_), .response = &(resp_), .fn = (fn_)                              \
	}

static const struct svc_op health_ops[] = {
    HEALTH_OP("CheckHealth", on_check_health, tasker__v1__worker_health_request__descriptor,
              tasker__v1__worker_basic_health_response__descriptor),
    HEALTH_OP("CheckLiveness", on_check_liveness, tasker__v1__worker_liveness_request__descriptor,
              tasker__v1__worker_basic_health_response__descriptor),
    HEALTH_OP("CheckReadiness", on_check_readiness,
              tasker__v1__worker_readiness_request__descriptor,
              tasker__v1__worker_readiness_response__descriptor),
    HEALTH_OP("CheckDetailedHealth", on_check_detailed,
              tasker__v1__worker_detailed_health_request__descriptor,
              tasker__v1__worker_detailed_health_response__descriptor),
};

const struct svc_table svc_worker_health_table = {
    .service = "tasker.v1.WorkerHealthService",
    .ops = health_ops,
    .n_ops = sizeof(health_ops) / sizeof(health_ops[0]),
};

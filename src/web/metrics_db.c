/*
 * metrics_db: database pool figures and queue depths for /metrics (see the
 * header). Collectors run one scrape at a time, so the cache needs no lock.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "web/metrics_db.h"

#define QUEUE_DEPTH_SQL "SELECT queue_name, queue_length FROM pgmq.metrics_all()"

struct queue_depth {
	char *name;
	double depth;
};

struct metrics_db {
	struct db_pool *pool;
	int64_t refresh_ns;
	int64_t refreshed_at; /* CLOCK_MONOTONIC ns of the last attempt; 0: never */
	struct queue_depth *queues;
	size_t n_queues;
};

static int64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

struct metrics_db *metrics_db_new(struct db_pool *pool, int refresh_ms)
{
	struct metrics_db *m = calloc(1, sizeof *m);

	if (m == NULL)
		return NULL;
	m->pool = pool;
	m->refresh_ns = (int64_t)(refresh_ms > 0 ? refresh_ms : 5000) * 1000000;
	return m;
}

static void clear_queues(struct queue_depth *q, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(q[i].name);
	free(q);
}

void metrics_db_free(struct metrics_db *m)
{
	if (m == NULL)
		return;
	clear_queues(m->queues, m->n_queues);
	free(m);
}

/* ------------------------------------------------------------------ queue depths */

/* Runs the query and replaces the cache; on failure the old figures stay
 * (and the next attempt waits for the next period, not the next scrape). */
static void refresh_queues(struct metrics_db *m)
{
	struct tk_err err;
	struct queue_depth *q = NULL;
	PGresult *res;
	PGconn *conn;
	int n, broken = 0;

	tk_err_clear(&err);
	if ((conn = db_acquire(m->pool, &err)) == NULL) {
		trpc_log(TRPC_LOG_WARN, "metrics: queue depths: %s", err.msg);
		return;
	}
	res = db_exec_prepared(conn, "tk_metrics_queue_depth", QUEUE_DEPTH_SQL, 0, NULL, &err);
	if (res == NULL) {
		broken = err.code == TRPC_ERR_UNAVAILABLE;
		trpc_log(TRPC_LOG_WARN, "metrics: queue depths: %s", err.msg);
		db_release(m->pool, conn, broken);
		return;
	}
	n = PQntuples(res);
	if (n > 0 && (q = calloc((size_t)n, sizeof *q)) == NULL)
		goto out;
	for (int i = 0; i < n; i++) {
		if ((q[i].name = strdup(PQgetvalue(res, i, 0))) == NULL) {
			clear_queues(q, (size_t)i);
			goto out;
		}
		q[i].depth = strtod(PQgetvalue(res, i, 1), NULL);
	}
	clear_queues(m->queues, m->n_queues);
	m->queues = q;
	m->n_queues = (size_t)n;
out:
	PQclear(res);
	db_release(m->pool, conn, 0);
}

/* ------------------------------------------------------------------ collector */

static void gauge(trpc_metrics_buf *out, const char *name, const char *help, double v)
{
	trpc_metrics_family(out, name, "gauge", help);
	trpc_metrics_sample(out, name, NULL, 0, v);
}

static void counter(trpc_metrics_buf *out, const char *name, const char *help, double v)
{
	trpc_metrics_family(out, name, "counter", help);
	trpc_metrics_sample(out, name, NULL, 0, v);
}

static void write_pool(trpc_metrics_buf *out, const struct db_pool_stats *st)
{
	static const char name[] = "tasker_db_pool_connections";
	const char *active[] = {"state", "active"}, *idle[] = {"state", "idle"},
	           *max[] = {"state", "max"};

	trpc_metrics_family(out, name, "gauge",
	                    "Database pool connections: in use, open and idle, configured.");
	trpc_metrics_sample(out, name, active, 1, st->active);
	trpc_metrics_sample(out, name, idle, 1, st->idle);
	trpc_metrics_sample(out, name, max, 1, st->size);
	counter(out, "tasker_db_pool_acquires_total", "Connections taken from the pool.",
	        (double)st->acquires);
	counter(out, "tasker_db_pool_slow_acquires_total",
	        "Connections that took more than 100 ms to get from the pool.",
	        (double)st->slow_acquires);
	counter(out, "tasker_db_pool_errors_total",
	        "Failed attempts to get a connection (timeouts, connect failures).",
	        (double)st->errors);
	gauge(out, "tasker_db_pool_acquire_seconds",
	      "Mean time to get a connection from the pool since start, in seconds.",
	      st->avg_acquire_ms / 1e3);
	counter(out, "tasker_db_pool_acquire_seconds_total",
	        "Time spent getting connections from the pool, in seconds.",
	        st->avg_acquire_ms * (double)st->acquires / 1e3);
	gauge(out, "tasker_db_pool_acquire_max_seconds",
	      "Longest time taken to get a connection from the pool, in seconds.",
	      st->max_acquire_ms / 1e3);
}

void metrics_db_collect(trpc_metrics_buf *out, void *ud)
{
	struct metrics_db *m = ud;
	struct db_pool_stats st;
	int64_t now = mono_ns();

	db_pool_stats(m->pool, &st);
	write_pool(out, &st);
	if (m->refreshed_at == 0 || now - m->refreshed_at >= m->refresh_ns) {
		m->refreshed_at = now;
		refresh_queues(m);
	}
	trpc_metrics_family(out, "tasker_queue_depth", "gauge",
	                    "Messages in a queue (visible or not), refreshed every few seconds.");
	for (size_t i = 0; i < m->n_queues; i++) {
		const char *l[] = {"queue", m->queues[i].name};
		trpc_metrics_sample(out, "tasker_queue_depth", l, 1, m->queues[i].depth);
	}
}

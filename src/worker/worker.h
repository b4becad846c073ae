/*
 * worker: claims steps from the namespace queues, runs their handlers and
 * reports the results (the protocol is in migrations/0007_worker.sql; the
 * batch statements used here in 0010_fast_path.sql).
 *
 * Threads (all started by wk_worker_start):
 *   dispatcher  LISTENs on pgmq_message_ready.<namespace> and polls the
 *               queues worker_<namespace>_queue (at once after a
 *               notification, otherwise every poll_interval); reads and
 *               claims, in one statement, at most as many messages as
 *               there are idle handler threads, so a message is never
 *               hidden from other workers while it waits here
 *   handlers    `concurrency` threads; each runs one claimed step at a
 *               time and hands its outcome to the reporter
 *   reporter    writes the outcomes finished meanwhile (after up to a few
 *               milliseconds' wait for others) with one statement per
 *               queue, which also archives their messages; falls back to
 *               one report per step when that statement fails
 *   leases      extends the visibility timeout of every message in hand
 *               every visibility_timeout / 2, so that a slow but live
 *               worker keeps its steps
 * Every thread takes a pooled connection for one transaction at a time.
 * Database errors are logged and retried with a growing pause; a message
 * whose claim failed simply becomes visible again.
 */
#ifndef TK_WORKER_WORKER_H
#define TK_WORKER_WORKER_H

#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "store/db.h"
#include "worker/settings.h"
#include "worker/handler.h"

#define WK_RESULTS_QUEUE "orchestration_step_results"

struct wk_worker;

struct wk_worker_options {
	const struct wk_settings *cfg;      /* read during wk_worker_new only */
	const struct wk_registry *registry; /* must outlive the worker */
	struct db_pool *pool;               /* must outlive the worker */
	const char *const *namespaces;      /* the namespaces served (copied) */
	size_t n_namespaces;
};

/*
 * Creates a worker with a fresh UUIDv7 identity. Nothing runs yet.
 * Returns 0 with *out set, TRPC_ERR_INVALID (no namespaces, or one whose
 * queue name would be invalid) or TRPC_ERR_NOMEM, with err set.
 */
int wk_worker_new(const struct wk_worker_options *o, struct wk_worker **out, struct tk_err *err);

/* The worker's identity, "xxxxxxxx-xxxx-7xxx-....". */
const char *wk_worker_uuid(const struct wk_worker *w);

/*
 * Creates the queues it uses when missing (its namespace queues and
 * orchestration_step_results) and starts the threads. Returns 0, a
 * db_exec() code with err set, or TRPC_ERR_SYSTEM (a thread could not be
 * started).
 */
int wk_worker_start(struct wk_worker *w, struct tk_err *err);

/* Stops taking new messages; messages read but not yet claimed are made
 * visible again. Running handlers go on. Any thread, any number of times. */
void wk_worker_stop_claiming(struct wk_worker *w);

/* Waits until no message is in hand or until the CLOCK_MONOTONIC time
 * deadline_ns. Returns 1 when idle, 0 on timeout. */
int wk_worker_wait_idle(struct wk_worker *w, int64_t deadline_ns);

/*
 * Gives up the steps still running (after a shutdown timeout): kills the
 * process groups of running exec handlers, makes their messages visible
 * at once so that another worker reclaims the steps, and makes the
 * handler threads drop their results. The worker cannot be freed
 * afterwards (threads may still be inside handlers); exit the process.
 */
void wk_worker_abandon(struct wk_worker *w);

/* Stops claiming, waits for the threads to finish and frees the worker.
 * Call after wk_worker_wait_idle() returned 1 (or before start). NULL is a no-op. */
void wk_worker_free(struct wk_worker *w);

/*
 * Checks that the database schema has every migration this program was
 * built with. The worker never migrates: taskerd does.
 * Returns 0, TRPC_ERR_STATE (schema missing or behind, err says which
 * migrations and what to run), or a db_exec() code.
 */
int wk_check_schema(PGconn *conn, struct tk_err *err);

#endif

/*
 * engine_int: what engine.c and orchestrate.c share. Not for other layers.
 */
#ifndef TK_ENGINE_INT_H
#define TK_ENGINE_INT_H

#include <pthread.h>
#include <stdatomic.h>

#include <libpq-fe.h>

#include "engine/engine.h"
#include "store/db.h"
#include "store/queue.h"

#define ENG_RESULTS_QUEUE  "orchestration_step_results"
#define ENG_REQUESTS_QUEUE "orchestration_task_requests"

struct tpl;

struct tpl_cache_entry {
	char uuid[37];
	struct tpl *tpl;
};

/* The queues whose consumers a notification wakes. */
enum { ENG_WAKE_RESULTS = 0, ENG_WAKE_REQUESTS = 1, ENG_WAKE_N = 2 };

struct eng {
	struct eng_config cfg;
	char *database_url;
	struct db_pool *pool;
	char processor_uuid[37];

	pthread_mutex_t tpl_mu;
	struct tpl_cache_entry *cache;
	size_t n_cache;

	/* orchestration threads */
	pthread_t *threads;
	int nthreads;
	atomic_int stopping;
	pthread_mutex_t wake_mu; /* sleeping threads wait on wake_cv */
	pthread_cond_t wake_cv;
	unsigned wake_seq[ENG_WAKE_N];       /* notifications seen, per queue (wake_mu) */
	pthread_mutex_t read_mu[ENG_WAKE_N]; /* held by the thread reading the queue */
};

/* The parsed template of a named task (cached; loaded from the database). */
const struct tpl *eng_template(struct eng *e, const char *named_task_uuid, struct tk_err *err);

/* Locks the task row (FOR NO KEY UPDATE, as every transition does) in the
 * caller's transaction and reads its current state. TRPC_ERR_NOT_FOUND for
 * an unknown task. */
int eng_lock_task(PGconn *conn, const char *task_uuid, char *state, size_t size,
                  struct tk_err *err);

/* CAS transition of a task (caller holds the row lock). TRPC_ERR_STATE when
 * the current state is no longer `from`. */
int eng_task_transition(struct eng *e, PGconn *conn, const char *task_uuid, const char *from,
                        const char *to, const char *event, struct tk_err *err);

int eng_task_terminal(const char *state);
int eng_valid_uuid(const char *s);

/* eng_task_create in the caller's open transaction (the task-request
 * consumer archives the message in the same one). */
int eng_task_create_in(struct eng *e, PGconn *conn, const struct eng_task_request *req,
                       struct eng_task_created *out, struct tk_err *err);

/* One request of a batch for eng_tasks_create(), and what became of it. */
struct eng_batch_item {
	struct eng_task_request req;     /* in (borrowed strings) */
	int rv;                          /* out: 0 created, else why not (err) */
	struct tk_err err;               /* out when rv != 0 */
	struct eng_task_created created; /* out when rv == 0 */
	/* the request's template, found by eng_tasks_create */
	char named_task_uuid[37];
	char version[17];
};

/*
 * Creates the tasks of n requests with one statement (tasker.create_tasks,
 * migration 0010), which also enqueues their first steps and archives the
 * messages archive[0..narchive) of orchestration_task_requests: all of it
 * in the caller's transaction, or as one of its own when none is open.
 * Each item ends with rv 0 (created), TRPC_ERR_EXISTS (the identity
 * exists), or the refusal of its request (TRPC_ERR_INVALID,
 * TRPC_ERR_NOT_FOUND), as eng_task_create would return it.
 * Returns 0, or a database code (TRPC_ERR_DB, TRPC_ERR_UNAVAILABLE, ...)
 * with err set: then nothing was written.
 */
int eng_tasks_create(struct eng *e, PGconn *conn, struct eng_batch_item *items, size_t n,
                     const int64_t *archive, size_t narchive, struct tk_err *err);

/* Runs the task state machine as far as it goes now, in the caller's
 * transaction (takes the task row lock). `redrive` also restarts a task in
 * error or blocked_by_failures whose steps are no longer failed. */
int eng_drive_locked(struct eng *e, PGconn *conn, const char *task_uuid, int redrive,
                     struct tk_err *err);

/* A random (version 4) uuid as text, for this process's processor id. */
void eng_random_uuid(char out[37]);

#endif

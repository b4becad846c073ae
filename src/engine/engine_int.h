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
};

/* The parsed template of a named task (cached; loaded from the database). */
const struct tpl *eng_template(struct eng *e, const char *named_task_uuid, struct tk_err *err);

/* Locks the task row (FOR UPDATE) in the caller's transaction and reads its
 * current state. TRPC_ERR_NOT_FOUND for an unknown task. */
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

/* Runs the task state machine as far as it goes now, in the caller's
 * transaction (takes the task row lock). `redrive` also restarts a task in
 * error or blocked_by_failures whose steps are no longer failed. */
int eng_drive_locked(struct eng *e, PGconn *conn, const char *task_uuid, int redrive,
                     struct tk_err *err);

/* A random (version 4) uuid as text, for this process's processor id. */
void eng_random_uuid(char out[37]);

#endif

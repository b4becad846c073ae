/*
 * engine: Tasker's orchestration engine, the service layer under the APIs.
 *
 * One function per operation, typed inputs, errors as a code (enum
 * trpc_error) plus a message in struct tk_err; the gRPC and REST layers map
 * codes to statuses once. The orchestration loop runs in the engine's own
 * threads (never on the RPC pool): a step-result consumer, a task-request
 * consumer, a readiness poller and a staleness detector, woken by
 * LISTEN/NOTIFY with polling as the fallback. Several engines (taskerd
 * processes) may share one database: every decision is taken under the
 * task's row lock with compare-and-swap transitions.
 */
#ifndef TK_ENGINE_H
#define TK_ENGINE_H

#include <stdint.h>

#include "store/db.h"
#include "store/err.h"

struct eng;

struct eng_config {
	const char *database_url;    /* libpq URI or conninfo (required) */
	int pool_size;               /* default 16 */
	int pool_acquire_timeout_ms; /* default 5000 */
	const char *template_path;   /* colon-separated directories; NULL = none */
	const char *environment;     /* template environment overrides; NULL = none */
	int poll_interval_ms;        /* readiness poller fallback; default 1000 */
	int result_batch;            /* step results read at once; default 32 */
	int result_threads;          /* result consumers; default 2 */
	int request_threads;         /* task-request consumers; default 2 */
	int visibility_timeout_s;    /* orchestration queue messages; default 30 */
	/* staleness detection */
	int staleness_enabled;    /* default 1 */
	int staleness_interval_s; /* default 300 */
	int staleness_batch;      /* default 100 */
	/* backoff when a step's template gives none */
	double backoff_multiplier; /* default 2.0 */
	double backoff_jitter;     /* fraction, default 0.15 */
	int backoff_max_s;         /* default 3600 */
};

void eng_config_init(struct eng_config *cfg);

/* Connects, checks the schema (run migrations first: eng_migrate), loads
 * and registers the templates of template_path. */
struct eng *eng_new(const struct eng_config *cfg, struct tk_err *err);
/* Applies the schema migrations (taskerd --migrate-only, or at start). */
int eng_migrate(const char *database_url, struct tk_err *err);
/* Starts the orchestration threads. */
int eng_start(struct eng *e, struct tk_err *err);
/* Stops the threads (finishing the operation in hand); idempotent. */
void eng_stop(struct eng *e);
void eng_free(struct eng *e);

struct db_pool *eng_pool(struct eng *e);

/* ------------------------------------------------------------------ tasks */

struct eng_task_request {
	const char *namespace_name; /* required */
	const char *name;           /* required */
	const char *version;        /* NULL = the highest registered version */
	const char *context_json;   /* JSON object; NULL = {} */
	const char *initiator, *source_system, *reason;
	const char *tags_json; /* JSON array or object; NULL = none */
	int priority;
	const char *correlation_id;        /* uuid; NULL = new */
	const char *parent_correlation_id; /* uuid or NULL */
	const char *idempotency_key;       /* for identity strategy caller_provided */
};

struct eng_task_created {
	char task_uuid[37];
	char correlation_id[37];
};

/*
 * Creates a task (one transaction: task, steps, edges, initial
 * transitions) and enqueues its first steps. Errors:
 *   TRPC_ERR_INVALID   bad request (unknown fields, bad JSON, missing key for
 *                      caller_provided identity)
 *   TRPC_ERR_NOT_FOUND no such template
 *   TRPC_ERR_EXISTS    a task with the same identity exists (message names it)
 *   TRPC_ERR_DB / TRPC_ERR_UNAVAILABLE / TRPC_ERR_TIMEOUT  database trouble
 */
int eng_task_create(struct eng *e, const struct eng_task_request *req, struct eng_task_created *out,
                    struct tk_err *err);

/*
 * Who performs an operator action and why. The fields given are recorded
 * in the `metadata` of every transition the action writes, next to its
 * "event": {"event", "operator", "reason", "subject", "transport"}. Each
 * may be NULL (not recorded); so may the whole struct.
 */
struct eng_actor {
	const char *operator_name; /* who the caller says acted (ResolveStep performed_by) */
	const char *reason;        /* why, as the caller gave it */
	const char *subject;       /* the authenticated subject; NULL when none */
	const char *transport;     /* the API it came through: "grpc", "rest" */
};

/* Cancels a task: every non-terminal step, then the task, in one
 * transaction; `by` goes into those transitions' metadata with event
 * "Cancel". TRPC_ERR_STATE when it is already terminal, TRPC_ERR_NOT_FOUND
 * when unknown. */
int eng_task_cancel(struct eng *e, const char *task_uuid, const struct eng_actor *by,
                    struct tk_err *err);

/* Runs the task's state machine now (as the poller would). */
int eng_task_drive(struct eng *e, const char *task_uuid, struct tk_err *err);

/* The task's current state into buf ("pending" ...). */
int eng_task_state(struct eng *e, const char *task_uuid, char *buf, size_t size,
                   struct tk_err *err);

/* ------------------------------------------------------------------ steps */

enum eng_step_action {
	ENG_STEP_RESET_FOR_RETRY = 1,  /* error -> pending, attempts reset */
	ENG_STEP_RESOLVE_MANUALLY = 2, /* any -> resolved_manually */
	ENG_STEP_COMPLETE_MANUALLY = 3 /* any -> complete with the given result */
};

/*
 * Operator action on a step, then the task is driven again (a task that
 * was blocked or in error continues), all in one transaction. `by` goes
 * into the step transition's metadata (event "ResetForRetry",
 * "ResolveManually" or "CompleteManually").
 *
 * COMPLETE_MANUALLY stores the step execution result {step_uuid, success:
 * true, result, status: "completed", metadata}: result is result_json
 * (NULL = {}); metadata is {"manual": true, "operator"} with the keys of
 * metadata_json (a JSON object, or NULL) added, the engine's keys winning.
 * The other actions take neither.
 *
 * Errors: TRPC_ERR_INVALID (bad uuid, result or metadata not JSON,
 * metadata not an object or given to another action), TRPC_ERR_NOT_FOUND,
 * TRPC_ERR_STATE when the action does not apply to the step's state, and
 * the database codes.
 */
int eng_step_resolve(struct eng *e, const char *step_uuid, int action, const char *result_json,
                     const char *metadata_json, const struct eng_actor *by, struct tk_err *err);

#endif

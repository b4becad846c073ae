/*
 * query: the read side of the engine for the APIs: tasks, steps, task
 * context, summaries, step audit, the status of a task for a status stream
 * and the depth of the queues. One function per operation, typed results;
 * the SQL lives here, never in the service layer.
 *
 * Conventions:
 *   - uuids are validated first: TRPC_ERR_INVALID "invalid task uuid: ..."
 *   - instants are microseconds since 1970 (UTC); ENG_NO_TIME when NULL
 *   - short text columns are copied into fixed arrays, "" when NULL
 *   - JSON columns are jansson values the result owns (NULL when SQL NULL);
 *     numbers are decoded as reals (a jsonb number can exceed 64 bits),
 *     which is what google.protobuf.Value holds anyway
 *   - errors: TRPC_ERR_INVALID, TRPC_ERR_NOT_FOUND, and the database codes
 *     of db_exec() (TRPC_ERR_UNAVAILABLE, TRPC_ERR_TIMEOUT, TRPC_ERR_DB,
 *     TRPC_ERR_NOMEM), with a message in *err
 * Every function takes a pooled connection for the duration of the call and
 * may be called from any thread.
 */
#ifndef TK_ENGINE_QUERY_H
#define TK_ENGINE_QUERY_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "engine/engine.h"
#include "store/err.h"

struct tpl;

#define ENG_NO_TIME INT64_MIN

/* Page sizes of eng_task_list. */
#define ENG_LIST_DEFAULT_LIMIT 50
#define ENG_LIST_MAX_LIMIT     1000

/* 0 when s is a uuid in canonical text form, else TRPC_ERR_INVALID with
 * "invalid <what> uuid: \"s\"" in err. */
int eng_check_uuid(const char *what, const char *s, struct tk_err *err);

/* ------------------------------------------------------------------ tasks */

struct eng_task {
	char task_uuid[37], named_task_uuid[37];
	char name[65], namespace_name[65], version[17];
	char state[32]; /* current state */
	int64_t created_at, updated_at, completed_at;
	json_t *context; /* the task's inputs (object); owned */
	json_t *tags;    /* as stored (array), NULL when none; owned */
	char initiator[129], source_system[129], reason[129];
	int priority;
	char correlation_id[37], parent_correlation_id[37];
	/* execution context (tasker.get_task_execution_contexts_batch) */
	int64_t total_steps, pending_steps, in_progress_steps, completed_steps, failed_steps,
	    ready_steps;
	char execution_status[32], recommended_action[32], health_status[16];
	double completion_percentage; /* 0..100 */
};

/* Frees what n tasks own, and the array. NULL is allowed. */
void eng_tasks_free(struct eng_task *tasks, size_t n);

/* One task. *out is a new array of one (eng_tasks_free(*out, 1)).
 * TRPC_ERR_NOT_FOUND for an unknown task. */
int eng_task_get(struct eng *e, const char *task_uuid, struct eng_task **out, struct tk_err *err);

enum eng_sort_dir { ENG_SORT_DEFAULT = 0, ENG_SORT_ASC = 1, ENG_SORT_DESC = 2 };

struct eng_task_filter {
	const char *namespace_name, *name, *initiator; /* NULL = any */
	const char *const *states;                     /* current state in this set */
	size_t n_states;                               /* 0 = any */
	const char *const *tags;                       /* the task carries every one */
	size_t n_tags;
	int64_t created_from, created_to; /* created_at in [from, to); ENG_NO_TIME = open */
	/* created_at (default), updated_at, completed_at, priority, name,
	 * namespace, version, state, initiator. Ties are broken by task uuid. */
	const char *sort_field;
	int sort_dir; /* enum eng_sort_dir; default: DESC for the default field, else ASC */
	int limit;    /* 1..ENG_LIST_MAX_LIMIT; 0 = ENG_LIST_DEFAULT_LIMIT */
	int offset;   /* >= 0 */
};

struct eng_task_page {
	struct eng_task *tasks; /* eng_tasks_free(tasks, n) */
	size_t n;
	int64_t total; /* tasks matching the filter */
};

/* A page of tasks. TRPC_ERR_INVALID for an unknown state or sort field, a
 * limit outside 0..ENG_LIST_MAX_LIMIT or a negative offset. */
int eng_task_list(struct eng *e, const struct eng_task_filter *f, struct eng_task_page *out,
                  struct tk_err *err);

/*
 * The task's context: inputs (tasks.context), outputs ({step name: its
 * result} for every step in state complete: the `result` of a step
 * execution result, other stored results as they are) and merged (inputs
 * with the outputs' keys added, an output winning over an input of the same
 * name). Three new references. TRPC_ERR_NOT_FOUND for an unknown task.
 */
int eng_task_context(struct eng *e, const char *task_uuid, json_t **inputs, json_t **outputs,
                     json_t **merged, struct tk_err *err);

/* ------------------------------------------------------------------ steps */

struct eng_step {
	char step_uuid[37], task_uuid[37], name[129], state[40];
	int64_t created_at, updated_at;
	int64_t completed_at; /* processed_at: when it reached complete, cancelled or
	                         resolved_manually */
	json_t *results;      /* NULL when none; owned */
	int dependencies_satisfied, retry_eligible, ready_for_execution;
	int total_parents, completed_parents, attempts, max_attempts;
	int64_t last_failure_at, next_retry_at, last_attempted_at;
	int has_backoff, backoff_request_seconds;
};

void eng_steps_free(struct eng_step *steps, size_t n);

/*
 * The steps of a task in creation order, with their readiness, or only
 * step_uuid when it is not NULL. *out is NULL when *n is 0.
 * TRPC_ERR_NOT_FOUND for an unknown task or step; TRPC_ERR_INVALID when
 * the step belongs to another task.
 */
int eng_task_steps(struct eng *e, const char *task_uuid, const char *step_uuid,
                   struct eng_step **out, size_t *n, struct tk_err *err);

/* 0 when step_uuid is a step of task_uuid; TRPC_ERR_NOT_FOUND (no such
 * task or step) or TRPC_ERR_INVALID (another task's step) otherwise. */
int eng_step_of_task(struct eng *e, const char *task_uuid, const char *step_uuid,
                     struct tk_err *err);

struct eng_audit {
	char audit_uuid[37], step_uuid[37], transition_uuid[37], task_uuid[37];
	int64_t recorded_at;
	char worker_uuid[37], correlation_id[37]; /* "" when not recorded */
	int success;
	int has_execution_time;
	int64_t execution_time_ms;
	json_t *result; /* the step execution result reported with the transition; owned */
	char step_name[129];
	char from_state[40]; /* "" for none */
	char to_state[40];
};

void eng_audits_free(struct eng_audit *a, size_t n);

/* The result audit of a step, newest first. NOT_FOUND / INVALID as
 * eng_task_steps. */
int eng_step_audit(struct eng *e, const char *task_uuid, const char *step_uuid,
                   struct eng_audit **out, size_t *n, struct tk_err *err);

/* ------------------------------------------------------------------ summary */

struct eng_task_summary {
	struct eng_task *task; /* one */
	struct eng_step *steps;
	size_t n_steps;
	const struct tpl *tpl; /* the task's template: the engine's cache, not freed */
	int has_dlq;           /* the task has DLQ entries; the fields are the newest's */
	int in_dlq;            /* the newest entry is still pending */
	char dlq_reason[40], dlq_resolution_status[40];
};

int eng_task_summary(struct eng *e, const char *task_uuid, struct eng_task_summary *out,
                     struct tk_err *err);
void eng_task_summary_clear(struct eng_task_summary *s);

/* ------------------------------------------------------------------ status stream */

struct eng_task_transition {
	char state[32];
	int sort_key;
	int64_t at;
};

struct eng_step_status {
	char step_uuid[37], name[129], state[40];
	int attempts;
	int64_t at;      /* the step's latest transition */
	char error[256]; /* in state error: the failure message of its result */
};

struct eng_task_status {
	struct eng_task_transition *transitions; /* oldest first */
	size_t n_transitions;
	struct eng_step_status *steps; /* in creation order */
	size_t n_steps;
};

/*
 * What a status stream needs after a notification: the task's transitions
 * with sort_key > after (after < 0: only the current one), and its steps
 * (all_steps = 0: only the steps in state error). TRPC_ERR_NOT_FOUND for an
 * unknown task. Free with eng_task_status_clear.
 */
int eng_task_status(struct eng *e, const char *task_uuid, int after, int all_steps,
                    struct eng_task_status *out, struct tk_err *err);
void eng_task_status_clear(struct eng_task_status *s);

/* ------------------------------------------------------------------ queues */

/* The deepest queue (messages in it, visible or not) over every queue of
 * the system: the orchestration queues and the workers' namespace queues. */
struct eng_queue_depth {
	int64_t depth; /* 0 when there is no queue */
	char queue[64];
};

int eng_queue_depth(struct eng *e, struct eng_queue_depth *out, struct tk_err *err);

#endif

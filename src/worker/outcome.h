/*
 * outcome: what a step handler produced, and its wire form, the
 * StepExecutionResult JSON the worker stores in workflow_steps.results and
 * in the transition's metadata.event:
 *
 *   {step_uuid, success, result,
 *    metadata: {execution_time_ms, retryable, worker_uuid, attempt},
 *    status: "completed" | "failed" | "error",
 *    error: {message, error_type, backtrace: [], retryable, status_code?, context: {}},
 *    orchestration_metadata: {headers: {}, error_context: null,
 *                             backoff_hint: {backoff_type: "ServerRequested",
 *                                            delay_seconds, context: {}},
 *                             custom: {}}}
 *
 * `error` is present only on failure, `backoff_hint` only when the handler
 * asked for a delay, `status_code` only when the handler gave one.
 * "failed" means the handler ran and reported a failure; "error" means it
 * produced no usable outcome (timeout, crash, unreadable output).
 */
#ifndef TK_WORKER_OUTCOME_H
#define TK_WORKER_OUTCOME_H

#include <stdint.h>

#include <jansson.h>

enum wk_status { WK_COMPLETED = 1, WK_FAILED = 2, WK_ERROR = 3 };

struct wk_outcome {
	int status;            /* enum wk_status; 0 until a handler set it */
	json_t *result;        /* owned; the result on success, NULL = JSON null */
	char *error_message;   /* owned; failures only */
	char *error_type;      /* owned; failures only */
	int retryable;         /* failures only */
	int backoff_seconds;   /* > 0: server-requested delay before the retry */
	int status_code;       /* < 0: none */
	json_t *error_context; /* owned object or NULL; failures only */
};

/* An empty outcome (status 0, status_code -1). */
void wk_outcome_init(struct wk_outcome *o);

/* Frees what o owns and re-initialises it. */
void wk_outcome_clear(struct wk_outcome *o);

/* Success with `result` (reference stolen; NULL is JSON null). Clears o first. */
void wk_outcome_success(struct wk_outcome *o, json_t *result);

/*
 * A failure: clears o, then sets status (WK_FAILED or WK_ERROR), the
 * error type, retryable and the printf-style message. The message is cut
 * at 8 KiB. Out of memory leaves a fixed message.
 */
void wk_outcome_fail(struct wk_outcome *o, int status, const char *type, int retryable,
                     const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* Adds key = value (reference stolen) to the error context, creating it. */
void wk_outcome_context_set(struct wk_outcome *o, const char *key, json_t *value);

/* Facts the worker adds to every result. */
struct wk_result_meta {
	const char *step_uuid;
	const char *worker_uuid;
	int attempt;
	int64_t execution_time_ms;
};

/*
 * Builds the StepExecutionResult for o (which must have a status). Returns
 * a new object (json_decref it) or NULL when out of memory.
 */
json_t *wk_outcome_to_result(const struct wk_outcome *o, const struct wk_result_meta *meta);

#endif

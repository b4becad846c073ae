/*
 * outcome: handler outcomes and the StepExecutionResult JSON (outcome.h).
 */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "worker/outcome.h"

#define MESSAGE_MAX 8192

static const char *const status_names[] = {
    [WK_COMPLETED] = "completed",
    [WK_FAILED] = "failed",
    [WK_ERROR] = "error",
};

void wk_outcome_init(struct wk_outcome *o)
{
	memset(o, 0, sizeof(*o));
	o->status_code = -1;
}

void wk_outcome_clear(struct wk_outcome *o)
{
	json_decref(o->result);
	json_decref(o->error_context);
	free(o->error_message);
	free(o->error_type);
	wk_outcome_init(o);
}

void wk_outcome_success(struct wk_outcome *o, json_t *result)
{
	wk_outcome_clear(o);
	o->status = WK_COMPLETED;
	o->result = result;
}

void wk_outcome_fail(struct wk_outcome *o, int status, const char *type, int retryable,
                     const char *fmt, ...)
{
	char msg[MESSAGE_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	wk_outcome_clear(o);
	o->status = status;
	o->retryable = retryable != 0;
	o->error_message = strdup(msg);
	o->error_type = strdup(type != NULL ? type : "HandlerError");
}

void wk_outcome_context_set(struct wk_outcome *o, const char *key, json_t *value)
{
	if (o->error_context == NULL)
		o->error_context = json_object();
	if (o->error_context == NULL) {
		json_decref(value);
		return;
	}
	json_object_set_new(o->error_context, key, value);
}

/* "error": {message, error_type, backtrace, retryable, status_code?, context} */
static json_t *error_object(const struct wk_outcome *o)
{
	json_t *ctx = o->error_context != NULL ? json_incref(o->error_context) : json_object();
	json_t *err;

	/* "o" steals ctx, on failure too (jansson >= 2.11). */
	err = json_pack("{s:s, s:s, s:[], s:b, s:o}", "message",
	                o->error_message != NULL ? o->error_message
	                                         : "handler failed (out of memory)",
	                "error_type", o->error_type != NULL ? o->error_type : "HandlerError",
	                "backtrace", "retryable", o->retryable, "context", ctx);
	if (err != NULL && o->status_code >= 0)
		json_object_set_new(err, "status_code", json_integer(o->status_code));
	return err;
}

static json_t *orchestration_metadata(const struct wk_outcome *o)
{
	json_t *om = json_pack("{s:{}, s:n, s:{}}", "headers", "error_context", "custom");

	if (om != NULL && o->status != WK_COMPLETED && o->backoff_seconds > 0)
		json_object_set_new(om, "backoff_hint",
		                    json_pack("{s:s, s:i, s:{}}", "backoff_type", "ServerRequested",
		                              "delay_seconds", o->backoff_seconds, "context"));
	return om;
}

json_t *wk_outcome_to_result(const struct wk_outcome *o, const struct wk_result_meta *meta)
{
	int success = o->status == WK_COMPLETED;
	int retryable = !success && o->retryable;
	json_t *res;

	res = json_pack(
	    "{s:s, s:b, s:O?, s:{s:I, s:b, s:s, s:i}, s:s, s:o}", "step_uuid", meta->step_uuid,
	    "success", success, "result", success ? o->result : NULL, "metadata",
	    "execution_time_ms", (json_int_t)meta->execution_time_ms, "retryable", retryable,
	    "worker_uuid", meta->worker_uuid, "attempt", meta->attempt, "status",
	    o->status >= WK_COMPLETED && o->status <= WK_ERROR ? status_names[o->status] : "error",
	    "orchestration_metadata", orchestration_metadata(o));
	if (res == NULL)
		return NULL;
	if (!success) {
		json_t *err = error_object(o);
		if (err == NULL || json_object_set_new(res, "error", err) != 0) {
			json_decref(res);
			return NULL;
		}
	}
	return res;
}

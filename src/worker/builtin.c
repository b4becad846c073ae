/*
 * builtin: the handlers compiled into the worker (noop, echo, sleep, fail).
 * They take their parameters from step_inputs, the step's handler
 * initialization; a parameter of the wrong type is a non-retryable failure
 * (the template is wrong, a retry would not help).
 */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <time.h>

#include "worker/kinds.h"

#define SLEEP_DEFAULT_MS 1000

static json_t *step_inputs(const struct wk_call *call)
{
	json_t *in = json_object_get(call->input, "step_inputs");
	return json_is_object(in) ? in : NULL;
}

/* A copy of input[key], or an empty object. */
static json_t *input_or_empty(const struct wk_call *call, const char *key)
{
	json_t *v = json_object_get(call->input, key);
	return v != NULL ? json_deep_copy(v) : json_object();
}

static void oom(struct wk_outcome *out)
{
	wk_outcome_fail(out, WK_ERROR, "OutOfMemory", 1, "out of memory");
}

void wk_builtin_noop(const struct wk_call *call, struct wk_outcome *out)
{
	json_t *r = json_object();

	if (r == NULL)
		oom(out);
	else
		wk_outcome_success(out, r);
}

void wk_builtin_echo(const struct wk_call *call, struct wk_outcome *out)
{
	json_t *r = json_pack("{s:o, s:o}", "step_inputs", input_or_empty(call, "step_inputs"),
	                      "dependency_results", input_or_empty(call, "dependency_results"));

	if (r == NULL)
		oom(out);
	else
		wk_outcome_success(out, r);
}

/* ------------------------------------------------------------------ sleep */

/* Sleeps until the CLOCK_MONOTONIC time `until_ns`. */
static void sleep_until(int64_t until_ns)
{
	struct timespec ts = {.tv_sec = (time_t)(until_ns / 1000000000),
	                      .tv_nsec = (long)(until_ns % 1000000000)};

	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
		;
}

/* step_inputs.ms (integer) or .seconds (number); default 1 s. -1 when malformed. */
static int64_t sleep_ms(const json_t *in)
{
	const json_t *ms = json_object_get(in, "ms"), *s = json_object_get(in, "seconds");

	if (ms != NULL)
		return json_is_integer(ms) && json_integer_value(ms) >= 0 ? json_integer_value(ms)
		                                                          : -1;
	if (s != NULL) {
		double v = json_number_value(s);
		if (!json_is_number(s) || !(v >= 0) || v > 1e9)
			return -1;
		return (int64_t)llround(v * 1000.0);
	}
	return SLEEP_DEFAULT_MS;
}

void wk_builtin_sleep(const struct wk_call *call, struct wk_outcome *out)
{
	int64_t ms = sleep_ms(step_inputs(call)), start = wk_now_ns(), end;
	json_t *r;

	if (ms < 0) {
		wk_outcome_fail(out, WK_FAILED, "InvalidInput", 0,
		                "sleep: step_inputs.ms must be a non-negative integer or "
		                "step_inputs.seconds a non-negative number");
		return;
	}
	end = start + ms * 1000000;
	if (end > call->deadline_ns) {
		sleep_until(call->deadline_ns);
		wk_outcome_fail(out, WK_ERROR, "TimeoutError", 1,
		                "sleep: the step timeout of %d ms ended the %lld ms sleep",
		                call->timeout_ms, (long long)ms);
		wk_outcome_context_set(out, "timeout_ms", json_integer(call->timeout_ms));
		return;
	}
	sleep_until(end);
	if ((r = json_pack("{s:I}", "slept_ms", (json_int_t)ms)) == NULL)
		oom(out);
	else
		wk_outcome_success(out, r);
}

/* ------------------------------------------------------------------ fail */

/* Reads an optional parameter; returns 0, or -1 when it has the wrong type. */
static int opt_int(const json_t *in, const char *key, long long min, long long *v)
{
	const json_t *j = json_object_get(in, key);

	if (j == NULL || json_is_null(j))
		return 0;
	if (!json_is_integer(j) || json_integer_value(j) < min)
		return -1;
	*v = json_integer_value(j);
	return 0;
}

void wk_builtin_fail(const struct wk_call *call, struct wk_outcome *out)
{
	const json_t *in = step_inputs(call), *retry = json_object_get(in, "retryable"),
	             *msg = json_object_get(in, "message");
	long long fail_times = -1, backoff = 0, status_code = -1;
	json_t *r;

	if (opt_int(in, "fail_times", 0, &fail_times) != 0 ||
	    opt_int(in, "backoff_seconds", 0, &backoff) != 0 ||
	    opt_int(in, "status_code", 0, &status_code) != 0 || backoff > INT32_MAX ||
	    status_code > INT32_MAX || (retry != NULL && !json_is_boolean(retry)) ||
	    (msg != NULL && !json_is_string(msg))) {
		wk_outcome_fail(
		    out, WK_FAILED, "InvalidInput", 0,
		    "fail: bad step_inputs (fail_times, backoff_seconds and status_code "
		    "are non-negative integers, retryable a boolean, message a string)");
		return;
	}
	if (fail_times >= 0 && call->attempt > fail_times) {
		if ((r = json_pack("{s:i}", "attempt", call->attempt)) == NULL)
			oom(out);
		else
			wk_outcome_success(out, r);
		return;
	}
	if (msg != NULL)
		wk_outcome_fail(out, WK_FAILED, "HandlerError",
		                retry == NULL || json_is_true(retry), "%s", json_string_value(msg));
	else
		wk_outcome_fail(out, WK_FAILED, "HandlerError",
		                retry == NULL || json_is_true(retry),
		                "fail: attempt %d failed as configured", call->attempt);
	out->backoff_seconds = (int)backoff;
	out->status_code = (int)status_code;
	wk_outcome_context_set(out, "attempt", json_integer(call->attempt));
}

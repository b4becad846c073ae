/*
 * cmd_task: the `task` commands: TaskService and StepService over gRPC,
 * /v1/tasks... over REST (tasker-api.md §1.4, §1.5, §2.1).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "cli/cli.h"
#include "cli/output.h"
#include "cli/transport.h"
#include "common/states.h"
#include "tasker/v1/steps.pb-c.h"
#include "tasker/v1/tasks.pb-c.h"

#define TASK_SVC "/tasker.v1.TaskService/"
#define STEP_SVC "/tasker.v1.StepService/"

/* §9 defaults of `task create`. */
#define DEF_NAMESPACE "default"
#define DEF_VERSION   "1.0.0"
#define DEF_PRIORITY  5
#define DEF_INITIATOR "tasker-ctl"
#define DEF_SOURCE    "cli"
#define DEF_REASON    "CLI task creation"
#define DEF_OPERATOR  "cli-operator"

#define WATCH_INTERVAL_MS 1000

static const struct cli_col task_cols[] = {
    {"TASK UUID", "task_uuid"}, {"NAMESPACE", "namespace"},   {"NAME", "name"},
    {"VERSION", "version"},     {"STATE", "state|status"},    {"DONE", "completed_steps"},
    {"STEPS", "total_steps"},   {"CREATED AT", "created_at"}, {NULL, NULL},
};

static const struct cli_col step_cols[] = {
    {"STEP UUID", "step_uuid|workflow_step_uuid"},
    {"NAME", "name"},
    {"STATE", "state|current_state"},
    {"ATTEMPTS", "attempts"},
    {"MAX", "max_attempts"},
    {"READY", "ready_for_execution"},
    {"COMPLETED AT", "completed_at"},
    {NULL, NULL},
};

static const struct cli_col audit_cols[] = {
    {"RECORDED AT", "recorded_at"},
    {"FROM", "from_state"},
    {"TO", "to_state"},
    {"SUCCESS", "success"},
    {"WORKER", "worker_uuid"},
    {"TIME MS", "execution_time_ms"},
    {"AUDIT UUID", "audit_uuid"},
    {NULL, NULL},
};

/* ------------------------------------------------------------------ display */

static const char *const task_skip[] = {"steps", NULL};

static void show_steps(json_t *rows)
{
	if (json_array_size(rows) != 0) {
		cli_print_heading("Steps");
		cli_print_table(rows, step_cols);
	}
}

/* Task answers: {"task": {...}, "steps": [...], "context": {...}} over
 * gRPC, the task itself (with "steps") over REST. */
static void show_task(json_t *resp)
{
	json_t *task = cli_json_unwrap(resp, "task");
	json_t *steps = cli_json_rows(resp, "steps");
	json_t *ctx = resp != task ? cli_json_get(resp, "context") : NULL;
	json_t *bp = cli_json_get(resp, "backpressure");

	cli_print_object(task, task_skip);
	show_steps(steps != NULL ? steps : cli_json_rows(task, "steps"));
	if (json_is_object(ctx)) {
		cli_print_heading("Context");
		cli_print_object(ctx, NULL);
	}
	if (json_is_object(bp)) {
		cli_print_heading("Backpressure");
		cli_print_object(bp, NULL);
	}
}

static void show_task_list(json_t *resp)
{
	json_t *rows = cli_json_rows(resp, "tasks");
	json_t *total = cli_json_get(resp, "pagination.total|pagination.total_count");
	char text[64];

	cli_print_table(rows, task_cols);
	if (total != NULL) {
		printf("\ntotal: %s\n", cli_text(total, text, sizeof text));
	}
}

static void show_step_list(json_t *resp)
{
	cli_print_table(cli_json_rows(resp, "steps"), step_cols);
}

static void show_step(json_t *resp)
{
	cli_print_object(cli_json_unwrap(resp, "step"), NULL);
}

static void show_audit(json_t *resp)
{
	cli_print_table(cli_json_rows(resp, "audit_records"), audit_cols);
}

/* ------------------------------------------------------------------ create */

/* "a, b,c" -> ["a", "b", "c"]; NULL text -> NULL. */
static json_t *split_tags(const char *text)
{
	json_t *arr;
	const char *p = text;

	if (text == NULL || (arr = json_array()) == NULL) {
		return NULL;
	}
	while (*p != '\0') {
		size_t n = strcspn(p, ",");
		const char *s = p, *e = p + n;

		while (s < e && (*s == ' ' || *s == '\t')) {
			s++;
		}
		while (e > s && (e[-1] == ' ' || e[-1] == '\t')) {
			e--;
		}
		if (e > s && json_array_append_new(arr, json_stringn(s, (size_t)(e - s))) != 0) {
			json_decref(arr);
			return NULL;
		}
		p += n + (p[n] == ',');
	}
	return arr;
}

static int task_create(struct cli *c, const struct cli_args *a)
{
	struct cli_request r;
	json_t *msg = NULL, *ctx = NULL, *tags = NULL;
	long priority;
	int rc;

	if ((rc = cli_opt_int(a, "priority", DEF_PRIORITY, -100, 100, &priority)) != 0 ||
	    (rc = cli_opt_json(a, cli_opt(a, "context") ? "context" : "input", 1, &ctx)) != 0) {
		return rc;
	}
	if (cli_opt(a, "tags") != NULL && (tags = split_tags(cli_opt(a, "tags"))) == NULL) {
		rc = cli_build_failed();
		goto done;
	}
	/* CreateTaskRequest and the REST TaskRequest share these names. */
	msg = json_object();
	if (cli_set_str(msg, "name", cli_opt(a, "name")) ||
	    cli_set_str(msg, "namespace", cli_opt_or(a, "namespace", DEF_NAMESPACE)) ||
	    cli_set_str(msg, "version", cli_opt_or(a, "version", DEF_VERSION)) ||
	    (ctx != NULL ? cli_set(msg, "context", ctx)
	                 : json_object_set_new(msg, "context", json_object())) ||
	    cli_set_str(msg, "initiator", cli_opt_or(a, "initiator", DEF_INITIATOR)) ||
	    cli_set_str(msg, "source_system", cli_opt_or(a, "source-system", DEF_SOURCE)) ||
	    cli_set_str(msg, "reason",
	                cli_opt_or(a, "reason", cli_opt_or(a, "description", DEF_REASON))) ||
	    cli_set_int(msg, "priority", priority) || cli_set(msg, "tags", tags) ||
	    cli_set_str(msg, "correlation_id", cli_opt(a, "correlation-id")) ||
	    cli_set_str(msg, "parent_correlation_id", cli_opt(a, "parent-correlation-id"))) {
		rc = cli_build_failed();
		goto done;
	}
	cli_request_init(&r, TASK_SVC "CreateTask", &tasker__v1__create_task_request__descriptor,
	                 &tasker__v1__create_task_response__descriptor, msg);
	cli_request_path(&r, "POST", "/v1/tasks");
	r.body = msg;
	rc = cli_call_and_show(c, &r, show_task);
done:
	json_decref(msg);
	json_decref(ctx);
	json_decref(tags);
	return rc;
}

/* ------------------------------------------------------------------ get, list */

/* GetTask; the answer in *resp. */
static int get_task(struct cli *c, const char *uuid, int steps, int context, json_t **resp)
{
	struct cli_request r;
	json_t *msg = json_object();
	int rc;

	if (cli_set_str(msg, "task_uuid", uuid) || cli_set_bool(msg, "include_steps", steps) ||
	    cli_set_bool(msg, "include_context", context)) {
		json_decref(msg);
		return cli_build_failed();
	}
	cli_request_init(&r, TASK_SVC "GetTask", &tasker__v1__get_task_request__descriptor,
	                 &tasker__v1__get_task_response__descriptor, msg);
	cli_request_path(&r, "GET", "/v1/tasks/%s", uuid);
	rc = cli_call(c, &r, resp);
	json_decref(msg);
	return rc;
}

static int task_get(struct cli *c, const struct cli_args *a)
{
	json_t *resp = NULL;
	int rc = get_task(c, a->pos[0], cli_flag(a, "steps"), cli_flag(a, "context"), &resp);

	if (resp != NULL) {
		cli_show(c, resp, show_task);
		json_decref(resp);
	}
	return rc;
}

/* Accepts a state in any case; writes the lower-case form into buf. */
static int check_state(const struct cli_args *a, const char *const *states, const char *value,
                       char *buf, size_t size)
{
	const char *const *s;

	for (s = states; *s != NULL; s++) {
		if (strcasecmp(*s, value) == 0) {
			snprintf(buf, size, "%s", *s);
			return 0;
		}
	}
	cli_usage_error(a->cmd, "'%s' is not a state (pending, complete, error, ...)", value);
	return -1;
}

static int task_list(struct cli *c, const struct cli_args *a)
{
	struct cli_request r;
	json_t *msg = NULL, *page_obj = NULL, *states = NULL;
	const char *status = cli_opt(a, "status");
	char state[64], num[32], per[32];
	long limit, page;
	int rc;

	if ((rc = cli_opt_int(a, "limit", 20, 1, 1000, &limit)) != 0 ||
	    (rc = cli_opt_int(a, "page", 1, 1, 1000000, &page)) != 0) {
		return rc;
	}
	if (status != NULL && check_state(a, tk_task_states, status, state, sizeof state) != 0) {
		return CLI_EXIT_USAGE;
	}
	msg = json_object();
	page_obj = json_object();
	states = json_array();
	if (cli_set_int(page_obj, "limit", limit) ||
	    cli_set_int(page_obj, "offset", (page - 1) * limit) ||
	    cli_set(msg, "pagination", page_obj) ||
	    cli_set_str(msg, "namespace", cli_opt(a, "namespace")) ||
	    cli_set_str(msg, "initiator", cli_opt(a, "initiator")) ||
	    (status != NULL &&
	     (states == NULL || json_array_append_new(states, json_string(state)) != 0 ||
	      cli_set(msg, "states", states)))) {
		rc = cli_build_failed();
		goto done;
	}
	cli_request_init(&r, TASK_SVC "ListTasks", &tasker__v1__list_tasks_request__descriptor,
	                 &tasker__v1__list_tasks_response__descriptor, msg);
	snprintf(num, sizeof num, "%ld", page);
	snprintf(per, sizeof per, "%ld", limit);
	cli_request_path(&r, "GET", "/v1/tasks");
	cli_request_query(&r, "page", num);
	cli_request_query(&r, "per_page", per);
	cli_request_query(&r, "namespace", cli_opt(a, "namespace"));
	cli_request_query(&r, "status", status != NULL ? state : NULL);
	cli_request_query(&r, "initiator", cli_opt(a, "initiator"));
	rc = cli_call_and_show(c, &r, show_task_list);
done:
	json_decref(msg);
	json_decref(page_obj);
	json_decref(states);
	return rc;
}

/* ------------------------------------------------------------------ cancel */

static int task_cancel(struct cli *c, const struct cli_args *a)
{
	struct cli_request r;
	json_t *msg = cli_msg_str("task_uuid", a->pos[0]), *resp = NULL, *ok;
	char text[512];
	int rc;

	if (msg == NULL || cli_set_str(msg, "reason", cli_opt(a, "reason"))) {
		json_decref(msg);
		return cli_build_failed();
	}
	cli_request_init(&r, TASK_SVC "CancelTask", &tasker__v1__cancel_task_request__descriptor,
	                 &tasker__v1__cancel_task_response__descriptor, msg);
	cli_request_path(&r, "DELETE", "/v1/tasks/%s", a->pos[0]);
	cli_request_query(&r, "reason", cli_opt(a, "reason"));
	rc = cli_call(c, &r, &resp);
	json_decref(msg);
	if (resp == NULL) {
		return rc;
	}
	cli_show(c, resp, show_task);
	/* A task that already ended is not cancelled: success false, no error
	 * status; scripts see it in the exit code. */
	ok = cli_json_get(resp, "success");
	if (json_is_false(ok)) {
		cli_error("task %s was not cancelled: %s", a->pos[0],
		          cli_text(cli_json_get(resp, "message"), text, sizeof text));
		rc = CLI_EXIT_REFUSED;
	}
	json_decref(resp);
	return rc;
}

/* ------------------------------------------------------------------ steps */

static int task_steps(struct cli *c, const struct cli_args *a)
{
	struct cli_request r;
	json_t *msg = cli_msg_str("task_uuid", a->pos[0]);
	int rc;

	if (msg == NULL) {
		return cli_build_failed();
	}
	cli_request_init(&r, STEP_SVC "ListSteps", &tasker__v1__list_steps_request__descriptor,
	                 &tasker__v1__list_steps_response__descriptor, msg);
	cli_request_path(&r, "GET", "/v1/tasks/%s/workflow_steps", a->pos[0]);
	rc = cli_call_and_show(c, &r, show_step_list);
	json_decref(msg);
	return rc;
}

/* GetStep and GetStepAudit take the same two uuids. */
static int step_call(struct cli *c, const struct cli_args *a, int audit)
{
	struct cli_request r;
	json_t *msg = json_object();
	int rc;

	if (cli_set_str(msg, "task_uuid", a->pos[0]) || cli_set_str(msg, "step_uuid", a->pos[1])) {
		json_decref(msg);
		return cli_build_failed();
	}
	if (audit) {
		cli_request_init(&r, STEP_SVC "GetStepAudit",
		                 &tasker__v1__get_step_audit_request__descriptor,
		                 &tasker__v1__get_step_audit_response__descriptor, msg);
		cli_request_path(&r, "GET", "/v1/tasks/%s/workflow_steps/%s/audit", a->pos[0],
		                 a->pos[1]);
	} else {
		cli_request_init(&r, STEP_SVC "GetStep", &tasker__v1__get_step_request__descriptor,
		                 &tasker__v1__get_step_response__descriptor, msg);
		cli_request_path(&r, "GET", "/v1/tasks/%s/workflow_steps/%s", a->pos[0], a->pos[1]);
	}
	rc = cli_call_and_show(c, &r, audit ? show_audit : show_step);
	json_decref(msg);
	return rc;
}

static int task_step(struct cli *c, const struct cli_args *a)
{
	return step_call(c, a, 0);
}

static int task_step_audit(struct cli *c, const struct cli_args *a)
{
	return step_call(c, a, 1);
}

/* ------------------------------------------------------------------ manual actions */

/* One row per StepManualActionType: the REST action_type tag and the
 * name of the "who" field of its PATCH body (§2.1). */
struct step_action {
	const char *grpc;     /* StepManualActionType value name */
	const char *rest;     /* action_type tag */
	const char *who_opt;  /* command option naming the operator */
	const char *who_body; /* REST body field */
};

static const struct step_action reset_action = {"STEP_MANUAL_ACTION_TYPE_RESET_FOR_RETRY",
                                                "reset_for_retry", "reset-by", "reset_by"};
static const struct step_action resolve_action = {"STEP_MANUAL_ACTION_TYPE_RESOLVE_MANUALLY",
                                                  "resolve_manually", "resolved-by", "resolved_by"};
static const struct step_action complete_action = {"STEP_MANUAL_ACTION_TYPE_COMPLETE_MANUALLY",
                                                   "complete_manually", "completed-by",
                                                   "completed_by"};

static int resolve_step(struct cli *c, const struct cli_args *a, const struct step_action *act)
{
	struct cli_request r;
	json_t *msg = NULL, *body = NULL, *data = NULL, *result = NULL, *meta = NULL;
	const char *who = cli_opt_or(a, act->who_opt, DEF_OPERATOR);
	const char *reason = cli_opt(a, "reason");
	int rc, complete = act == &complete_action;

	if (complete && ((rc = cli_opt_json(a, "result", 1, &result)) != 0 ||
	                 (rc = cli_opt_json(a, "metadata", 1, &meta)) != 0)) {
		json_decref(result);
		return rc;
	}
	msg = json_object();
	body = json_object();
	if (cli_set_str(msg, "task_uuid", a->pos[0]) || cli_set_str(msg, "step_uuid", a->pos[1]) ||
	    cli_set_str(msg, "action_type", act->grpc) || cli_set_str(msg, "performed_by", who) ||
	    cli_set_str(msg, "reason", reason) || cli_set(msg, "result", result) ||
	    cli_set(msg, "metadata", meta) || cli_set_str(body, "action_type", act->rest) ||
	    cli_set_str(body, "reason", reason) || cli_set_str(body, act->who_body, who)) {
		rc = cli_build_failed();
		goto done;
	}
	if (complete) {
		data = json_object();
		if (cli_set(data, "result", result) || cli_set(data, "metadata", meta) ||
		    cli_set(body, "completion_data", data)) {
			rc = cli_build_failed();
			goto done;
		}
	}
	cli_request_init(&r, STEP_SVC "ResolveStep", &tasker__v1__resolve_step_request__descriptor,
	                 &tasker__v1__resolve_step_response__descriptor, msg);
	cli_request_path(&r, "PATCH", "/v1/tasks/%s/workflow_steps/%s", a->pos[0], a->pos[1]);
	r.body = body;
	rc = cli_call_and_show(c, &r, show_step);
done:
	json_decref(msg);
	json_decref(body);
	json_decref(data);
	json_decref(result);
	json_decref(meta);
	return rc;
}

static int task_reset_step(struct cli *c, const struct cli_args *a)
{
	return resolve_step(c, a, &reset_action);
}

static int task_resolve_step(struct cli *c, const struct cli_args *a)
{
	return resolve_step(c, a, &resolve_action);
}

static int task_complete_step(struct cli *c, const struct cli_args *a)
{
	return resolve_step(c, a, &complete_action);
}

/* ------------------------------------------------------------------ watch */

struct watch {
	const char *uuid;
	char state[64]; /* last task state seen, short form */
	json_t *steps;  /* step name -> last state seen (REST) */
};

static const char *str_or(json_t *v, const char *def)
{
	return json_is_string(v) ? json_string_value(v) : def;
}

static int state_terminal(const char *s)
{
	return strcmp(s, "complete") == 0 || strcmp(s, "error") == 0 ||
	       strcmp(s, "cancelled") == 0 || strcmp(s, "resolved_manually") == 0;
}

static int state_success(const char *s)
{
	return strcmp(s, "complete") == 0 || strcmp(s, "resolved_manually") == 0;
}

/* "2026-03-21T10:11:12.345Z" -> "10:11:12"; anything else as it is. */
static const char *clock_of(json_t *ts, char *buf, size_t size)
{
	const char *s = json_string_value(ts);

	if (s != NULL && strlen(s) >= 19 && s[10] == 'T') {
		snprintf(buf, size, "%.8s", s + 11);
	} else {
		snprintf(buf, size, "%s", s != NULL ? s : "-");
	}
	return buf;
}

static void now_rfc3339(char *buf, size_t size)
{
	time_t t = time(NULL);
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* One TaskStatusUpdate of the stream. */
static int on_update(struct cli *c, json_t *u, void *ud)
{
	struct watch *w = ud;
	json_t *state = cli_json_get(u, "task_state"), *step = cli_json_get(u, "step_update");
	json_t *err = cli_json_get(u, "error_message");
	char tbuf[40], s1[128], s2[128], s3[512], before[sizeof w->state];
	int has_err = json_is_string(err) && *json_string_value(err) != '\0';

	snprintf(before, sizeof before, "%s", w->state);
	if (json_is_string(state)) {
		cli_enum_text(json_string_value(state), w->state, sizeof w->state);
	}
	if (c->format == CLI_FORMAT_JSON) {
		cli_print_json(u);
		fflush(stdout);
		return CLI_EXIT_OK;
	}
	/* TASK_COMPLETE after the change to complete says nothing new */
	if (!json_is_object(step) && !has_err && json_is_string(state) &&
	    strcmp(before, w->state) == 0) {
		return CLI_EXIT_OK;
	}
	clock_of(cli_json_get(u, "timestamp"), tbuf, sizeof tbuf);
	if (json_is_object(step)) {
		printf("%s  step  %s  %s  (attempt %s)\n", tbuf,
		       cli_text(cli_json_get(step, "name"), s1, sizeof s1),
		       cli_text(cli_json_get(step, "state"), s2, sizeof s2),
		       cli_text(cli_json_get(step, "attempt"), s3, sizeof s3));
	} else if (json_is_string(state)) {
		printf("%s  task  %s\n", tbuf, w->state);
	} else {
		printf("%s  %s\n", tbuf, cli_text(cli_json_get(u, "update_type"), s1, sizeof s1));
	}
	if (has_err) {
		printf("%s  error %s\n", tbuf, json_string_value(err));
	}
	fflush(stdout);
	return CLI_EXIT_OK;
}

/* Prints the changes between two polls (REST) as the stream would show them. */
static void poll_changes(struct cli *c, struct watch *w, json_t *task, json_t *steps)
{
	const char *raw = str_or(cli_json_get(task, "state|status"), "");
	char state[64], now[40], sname[128], sstate[64];
	json_t *u, *row;
	size_t i;

	cli_enum_text(raw, state, sizeof state);
	now_rfc3339(now, sizeof now);
	json_array_foreach(steps, i, row)
	{
		const char *name = json_string_value(cli_json_get(row, "name"));
		const char *st = json_string_value(cli_json_get(row, "state|current_state"));
		const char *seen;

		if (name == NULL || st == NULL) {
			continue;
		}
		cli_enum_text(st, sstate, sizeof sstate);
		seen = json_string_value(json_object_get(w->steps, name));
		if (seen != NULL && strcmp(seen, sstate) == 0) {
			continue;
		}
		json_object_set_new(w->steps, name, json_string(sstate));
		snprintf(sname, sizeof sname, "%s", name);
		u = json_pack("{s:s, s:s, s:{s:s?, s:s, s:s, s:O?}}", "update_type",
		              "UPDATE_TYPE_STEP_STATE_CHANGE", "timestamp", now, "step_update",
		              "step_uuid", json_string_value(cli_json_get(row, "step_uuid")),
		              "name", sname, "state", st, "attempt", cli_json_get(row, "attempts"));
		if (u != NULL) {
			on_update(c, u, w);
			json_decref(u);
		}
	}
	if (strcmp(state, w->state) != 0) {
		u = json_pack("{s:s, s:s, s:s}", "update_type", "UPDATE_TYPE_TASK_STATE_CHANGE",
		              "timestamp", now, "task_state", raw);
		if (u != NULL) {
			on_update(c, u, w);
		}
		json_decref(u);
	}
}

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* REST has no stream: GET the task every `interval` ms until it ends. */
static int watch_poll(struct cli *c, struct watch *w, long interval_ms, long max_wait_s)
{
	int64_t deadline = max_wait_s > 0 ? mono_ms() + max_wait_s * 1000 : INT64_MAX;
	struct timespec ts = {(time_t)(interval_ms / 1000), (interval_ms % 1000) * 1000000L};
	json_t *resp, *steps;
	int rc;

	for (;;) {
		resp = NULL;
		rc = get_task(c, w->uuid, 1, 0, &resp);
		if (rc != CLI_EXIT_OK) {
			return rc;
		}
		steps = cli_json_rows(resp, "steps");
		poll_changes(c, w, cli_json_unwrap(resp, "task"),
		             steps != NULL ? steps
		                           : cli_json_rows(cli_json_unwrap(resp, "task"), "steps"));
		json_decref(resp);
		if (state_terminal(w->state)) {
			return CLI_EXIT_OK;
		}
		if (mono_ms() + interval_ms > deadline) {
			cli_error("task %s is still %s after %ld s", w->uuid, w->state, max_wait_s);
			return CLI_EXIT_UNAVAILABLE;
		}
		nanosleep(&ts, NULL);
	}
}

static int watch_stream(struct cli *c, struct watch *w, long max_wait_s)
{
	struct cli_request r;
	json_t *msg = json_object();
	int rc;

	if (cli_set_str(msg, "task_uuid", w->uuid) || cli_set_bool(msg, "include_steps", 1)) {
		json_decref(msg);
		return cli_build_failed();
	}
	cli_request_init(&r, TASK_SVC "StreamTaskStatus",
	                 &tasker__v1__stream_task_status_request__descriptor,
	                 &tasker__v1__task_status_update__descriptor, msg);
	rc = cli_stream(c, &r, max_wait_s * 1000, on_update, w);
	json_decref(msg);
	return rc;
}

/* The end of a watch: the task's final state decides the exit code. */
static int watch_result(struct cli *c, struct watch *w)
{
	json_t *resp = NULL, *task;
	char done[32], total[32];
	int rc = get_task(c, w->uuid, 0, 0, &resp);

	if (rc != CLI_EXIT_OK) {
		return rc;
	}
	task = cli_json_unwrap(resp, "task");
	cli_enum_text(str_or(cli_json_get(task, "state|status"), "?"), w->state, sizeof w->state);
	if (c->format == CLI_FORMAT_TABLE) {
		printf("task %s %s: %s of %s steps complete\n", w->uuid, w->state,
		       cli_text(cli_json_get(task, "completed_steps"), done, sizeof done),
		       cli_text(cli_json_get(task, "total_steps"), total, sizeof total));
	}
	json_decref(resp);
	if (!state_terminal(w->state)) {
		cli_error("the status stream ended while task %s is %s", w->uuid, w->state);
		return CLI_EXIT_ERROR;
	}
	return state_success(w->state) ? CLI_EXIT_OK : CLI_EXIT_TASK_FAILED;
}

static int task_watch(struct cli *c, const struct cli_args *a)
{
	struct watch w;
	long interval, max_wait;
	int rc;

	if ((rc = cli_opt_int(a, "interval", WATCH_INTERVAL_MS, 100, 3600000, &interval)) != 0 ||
	    (rc = cli_opt_int(a, "max-wait", 0, 0, 31L * 24 * 3600, &max_wait)) != 0) {
		return rc;
	}
	memset(&w, 0, sizeof w);
	w.uuid = a->pos[0];
	if ((w.steps = json_object()) == NULL) {
		return cli_build_failed();
	}
	if (c->prof.transport == CLI_TRANSPORT_REST) {
		rc = watch_poll(c, &w, interval, max_wait);
	} else {
		rc = watch_stream(c, &w, max_wait);
	}
	json_decref(w.steps);
	if (rc != CLI_EXIT_OK) {
		return rc;
	}
	return watch_result(c, &w);
}

/* ------------------------------------------------------------------ the table */

static const struct cli_opt create_opts[] = {
    {"name", 0, "NAME", "template name", 1},
    {"namespace", 0, "NAMESPACE", "template namespace (default: " DEF_NAMESPACE ")", 0},
    {"version", 0, "VERSION", "template version (default: " DEF_VERSION ")", 0},
    {"input", 0, "JSON", "task context, a JSON object; @FILE reads a file, - stdin (default: {})",
     0},
    {"context", 0, "JSON", "the same as --input", 0},
    {"priority", 0, "N", "priority, -100 to 100 (default: 5)", 0},
    {"correlation-id", 0, "ID", "correlation id (default: the server makes one)", 0},
    {"parent-correlation-id", 0, "ID", "correlation id of a parent workflow", 0},
    {"tags", 0, "A,B", "tags, comma separated", 0},
    {"initiator", 0, "WHO", "who asks (default: " DEF_INITIATOR ")", 0},
    {"source-system", 0, "NAME", "where the request comes from (default: " DEF_SOURCE ")", 0},
    {"reason", 0, "TEXT", "why (default: \"" DEF_REASON "\")", 0},
    {"description", 0, "TEXT", "the same as --reason (the reference client's name)", 0},
    {NULL, 0, NULL, NULL, 0},
};

static const struct cli_opt get_opts[] = {
    {"steps", 0, NULL, "include the steps (gRPC include_steps)", 0},
    {"context", 0, NULL, "include the task context (gRPC include_context)", 0},
    {NULL, 0, NULL, NULL, 0},
};

static const struct cli_opt list_opts[] = {
    {"namespace", 0, "NAMESPACE", "only tasks of this namespace", 0},
    {"status", 0, "STATE", "only tasks in this state (pending, steps_in_process, complete, ...)",
     0},
    {"initiator", 0, "WHO", "only tasks created by this initiator", 0},
    {"limit", 0, "N", "tasks per page (default: 20; REST allows at most 100)", 0},
    {"page", 0, "N", "page number, from 1 (default: 1)", 0},
    {NULL, 0, NULL, NULL, 0},
};

static const struct cli_opt cancel_opts[] = {
    {"reason", 0, "TEXT", "why the task is cancelled (recorded with the cancellation)", 0},
    {NULL, 0, NULL, NULL, 0},
};

static const struct cli_opt reset_opts[] = {
    {"reason", 0, "TEXT", "why the step is reset", 1},
    {"reset-by", 0, "WHO", "operator (default: " DEF_OPERATOR ")", 0},
    {NULL, 0, NULL, NULL, 0},
};

static const struct cli_opt resolve_opts[] = {
    {"reason", 0, "TEXT", "why the step is resolved by hand", 1},
    {"resolved-by", 0, "WHO", "operator (default: " DEF_OPERATOR ")", 0},
    {NULL, 0, NULL, NULL, 0},
};

static const struct cli_opt complete_opts[] = {
    {"result", 0, "JSON", "the step's result, a JSON object (@FILE, - for stdin)", 1},
    {"metadata", 0, "JSON", "metadata of the completion, a JSON object", 0},
    {"reason", 0, "TEXT", "why the step is completed by hand", 1},
    {"completed-by", 0, "WHO", "operator (default: " DEF_OPERATOR ")", 0},
    {NULL, 0, NULL, NULL, 0},
};

static const struct cli_opt watch_opts[] = {
    {"interval", 0, "MS", "REST only: time between two polls (default: 1000)", 0},
    {"max-wait", 0, "SECONDS", "give up (exit 6) after this long; 0 waits for ever (default)", 0},
    {NULL, 0, NULL, NULL, 0},
};

/* clang-format off */
const struct cli_cmd cli_task_cmds[] = {
    {"task", "create", NULL, 0, 0, "Create a task from a template",
     "Sends CreateTask (gRPC) or POST /v1/tasks (REST) and shows the new task.\n",
     create_opts, task_create, CLI_NEEDS_PROFILE},
    {"task", "get", "<task_uuid>", 1, 1, "Show a task",
     "Sends GetTask (gRPC) or GET /v1/tasks/<uuid> (REST).\n",
     get_opts, task_get, CLI_NEEDS_PROFILE},
    {"task", "list", NULL, 0, 0, "List tasks", NULL, list_opts, task_list, CLI_NEEDS_PROFILE},
    {"task", "cancel", "<task_uuid>", 1, 1, "Cancel a task",
     "A task that has already ended is not cancelled: the server says so and the\n"
     "exit status is 4.\n",
     cancel_opts, task_cancel, CLI_NEEDS_PROFILE},
    {"task", "steps", "<task_uuid>", 1, 1, "List the steps of a task", NULL, cli_no_opts,
     task_steps, CLI_NEEDS_PROFILE},
    {"task", "step", "<task_uuid> <step_uuid>", 2, 2, "Show one step", NULL, cli_no_opts, task_step,
     CLI_NEEDS_PROFILE},
    {"task", "reset-step", "<task_uuid> <step_uuid>", 2, 2, "Reset a failed step for a retry",
     "ResolveStep with action RESET_FOR_RETRY (REST: PATCH with action_type\n"
     "reset_for_retry).\n",
     reset_opts, task_reset_step, CLI_NEEDS_PROFILE},
    {"task", "resolve-step", "<task_uuid> <step_uuid>", 2, 2, "Mark a step resolved by hand",
     "ResolveStep with action RESOLVE_MANUALLY (REST: action_type resolve_manually).\n",
     resolve_opts, task_resolve_step, CLI_NEEDS_PROFILE},
    {"task", "complete-step", "<task_uuid> <step_uuid>", 2, 2,
     "Complete a step by hand with a result",
     "ResolveStep with action COMPLETE_MANUALLY (REST: action_type complete_manually with\n"
     "completion_data). The result is what the step's dependants see.\n",
     complete_opts, task_complete_step, CLI_NEEDS_PROFILE},
    {"task", "step-audit", "<task_uuid> <step_uuid>", 2, 2,
     "Show the audit trail of a step (newest first)", NULL, cli_no_opts, task_step_audit,
     CLI_NEEDS_PROFILE},
    {"task", "watch", "<task_uuid>", 1, 1, "Follow a task until it ends",
     "Prints the task's progress live until it reaches complete, error, cancelled or\n"
     "resolved_manually, then a summary line.\n"
     "\n"
     "Over gRPC this is the StreamTaskStatus stream. The REST API has no stream: the\n"
     "task is polled with GET /v1/tasks/<uuid> every --interval milliseconds (1000 by\n"
     "default) and changes are printed in the same form. With --format json every\n"
     "update is one line of JSON (a TaskStatusUpdate).\n"
     "\n"
     "Exit status: 0 when the task completed (or was resolved by hand), 7 when it\n"
     "ended in error or was cancelled.\n",
     watch_opts, task_watch, CLI_NEEDS_PROFILE},
    {NULL, NULL, NULL, 0, 0, NULL, NULL, NULL, NULL, 0},
};
/* clang-format on */

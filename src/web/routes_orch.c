/*
 * The orchestration REST routes (tasker-api.md §2.1) over the tasker.v1
 * operation tables of taskerd.
 *
 * Every route answers its RPC's response message in the proto3 JSON
 * mapping (pbjson.h), except for the REST forms that §2.1 spells out:
 *   - a task is a TaskResponse: the fields of Task plus `status` (the
 *     state's name in lower case, "steps_in_process") and, for one task,
 *     `steps` (its workflow steps, as Step); POST /v1/tasks answers 201
 *     with the created task so (and `backpressure` when the queues are at
 *     the warning tier);
 *   - GET /v1/tasks takes page (>= 1, default 1), per_page (1..100,
 *     default 25), namespace, status, initiator and name, and answers
 *     {tasks: [TaskResponse without steps], pagination: {page, per_page,
 *     total_count, total_pages, has_next, has_previous}};
 *   - POST /v1/tasks takes the TaskRequest body: name, namespace (default
 *     "default"), version (default "0.1.0"), context, initiator,
 *     source_system, reason (the REST defaults are the operation's, for
 *     transport "rest"), tags, priority, correlation_id,
 *     parent_correlation_id; requested_at, options and idempotency_key
 *     are accepted and not used (no field of CreateTaskRequest holds
 *     them);
 *   - PATCH of a step takes the body tagged by action_type:
 *     reset_for_retry {reason, reset_by}, resolve_manually {reason,
 *     resolved_by}, complete_manually {completion_data: {result,
 *     metadata?}, reason, completed_by}; or ResolveStepRequest's own form.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tasker/v1/steps.pb-c.h"
#include "tasker/v1/tasks.pb-c.h"
#include "web/pbjson.h"
#include "web/routes.h"

#define TASKS     "tasker.v1.TaskService"
#define STEPS     "tasker.v1.StepService"
#define TEMPLATES "tasker.v1.TemplateService"
#define ANALYTICS "tasker.v1.AnalyticsService"
#define DLQ       "tasker.v1.DlqService"
#define HEALTH    "tasker.v1.HealthService"
#define CONFIG    "tasker.v1.ConfigService"

#define PER_PAGE_DEFAULT 25
#define PER_PAGE_MAX     100

/* 400: JSON_ERROR for the body, BAD_REQUEST for a query parameter. */
static int bad_request(struct svc_result *res, const char *what, const struct tk_err *err)
{
	if (err->code == TRPC_ERR_NOMEM)
		return svc_fail(res, TRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
	if (strcmp(what, "body") == 0)
		res->rest_code = "JSON_ERROR";
	return svc_fail(res, TRPC_STATUS_INVALID_ARGUMENT, "%s: %s", what, err->msg);
}

static int nomem(struct svc_result *res)
{
	return svc_fail(res, TRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
}

/* ------------------------------------------------------------------ TaskResponse */

/* "TASK_STATE_STEPS_IN_PROCESS" -> "steps_in_process". */
static json_t *status_of(const json_t *state)
{
	const char *s = json_string_value(state);
	char buf[64];
	size_t i;

	if (s == NULL || strncmp(s, "TASK_STATE_", 11) != 0)
		return json_string("unknown");
	s += 11;
	for (i = 0; s[i] != '\0' && i + 1 < sizeof(buf); i++)
		buf[i] = (char)tolower((unsigned char)s[i]);
	buf[i] = '\0';
	return json_string(buf);
}

/* A copy of the Task object with `status`, and `steps` when not NULL. */
static json_t *task_response(const json_t *task, const json_t *steps)
{
	json_t *t = json_copy((json_t *)(uintptr_t)task);

	if (t == NULL ||
	    json_object_set_new(t, "status", status_of(json_object_get(task, "state"))) != 0 ||
	    (steps != NULL && json_object_set(t, "steps", (json_t *)(uintptr_t)steps) != 0)) {
		json_decref(t);
		return NULL;
	}
	return t;
}

/* GET /v1/tasks/{task_uuid}: always with its steps. */
static int build_get_task(struct rest_request *rq, ProtobufCMessage *req, struct svc_result *res)
{
	((Tasker__V1__GetTaskRequest *)req)->include_steps = 1;
	return 0;
}

static int adapt_get_task(struct rest_request *rq, const ProtobufCMessage *resp, json_t **body,
                          struct svc_result *res)
{
	json_t *t = task_response(json_object_get(*body, "task"), json_object_get(*body, "steps"));

	if (t == NULL)
		return nomem(res);
	json_decref(*body);
	*body = t;
	return 0;
}

/* ------------------------------------------------------------------ POST /v1/tasks */

static int build_create_task(struct rest_request *rq, ProtobufCMessage *req, struct svc_result *res)
{
	static const char *const rest_only[] = {"requested_at", "options", "idempotency_key"};
	Tasker__V1__CreateTaskRequest *r = (Tasker__V1__CreateTaskRequest *)req;
	const json_t *body = rest_body(rq);
	struct tk_err err;
	json_t *copy;
	int rc;

	if (body != NULL && !json_is_object(body))
		return svc_fail(res, TRPC_STATUS_INVALID_ARGUMENT,
		                "the body must be a JSON object");
	if (body != NULL) {
		if ((copy = json_copy((json_t *)(uintptr_t)body)) == NULL)
			return nomem(res);
		for (size_t i = 0; i < sizeof(rest_only) / sizeof(rest_only[0]); i++)
			json_object_del(copy, rest_only[i]);
		rc = pbjson_merge(copy, req, rest_alloc(rq), PBJSON_LENIENT_ENUMS, &err);
		json_decref(copy);
		if (rc != 0)
			return bad_request(res, "body", &err);
	}
	/* The TaskRequest defaults of §2.1 (the operation has the others). */
	if (r->namespace_[0] == '\0')
		r->namespace_ = "default";
	if (r->version[0] == '\0')
		r->version = "0.1.0";
	return 0;
}

static int adapt_create_task(struct rest_request *rq, const ProtobufCMessage *resp, json_t **body,
                             struct svc_result *res)
{
	const Tasker__V1__CreateTaskResponse *cr = (const Tasker__V1__CreateTaskResponse *)resp;
	Tasker__V1__ListStepsRequest list = TASKER__V1__LIST_STEPS_REQUEST__INIT;
	ProtobufCMessage *got = NULL;
	struct svc_result ignored;
	json_t *steps = NULL, *t;

	/* The steps as GetTask shows them, under its permission (tasks:read):
	 * a caller without it gets the task alone (it was created all the
	 * same). The task itself is CreateTask's: it is read once. */
	memset(&ignored, 0, sizeof(ignored));
	if (cr->task != NULL) {
		list.task_uuid = cr->task->task_uuid;
		if (rest_call_as(rq, "tasks:read", STEPS, "ListSteps", &list.base, &got,
		                 &ignored) == 0) {
			json_t *g = pbjson_encode(got, PBJSON_EMIT_DEFAULTS);
			steps = json_incref(json_object_get(g, "steps"));
			json_decref(g);
		}
	}
	t = task_response(json_object_get(*body, "task"), steps);
	json_decref(steps);
	if (t == NULL)
		return nomem(res);
	if (json_object_get(*body, "backpressure") != NULL)
		json_object_set(t, "backpressure", json_object_get(*body, "backpressure"));
	json_decref(*body);
	*body = t;
	return 0;
}

/* ------------------------------------------------------------------ GET /v1/tasks */

/* page and per_page, checked. 0 or -1 with res set. */
static int page_of(struct rest_request *rq, long *page, long *per_page, struct svc_result *res)
{
	const char *p = rest_query(rq, "page"), *pp = rest_query(rq, "per_page");
	char *end;

	*page = 1;
	*per_page = PER_PAGE_DEFAULT;
	if (p != NULL) {
		errno = 0;
		*page = strtol(p, &end, 10);
		if (errno != 0 || end == p || *end != '\0' || *page < 1 || *page > INT_MAX)
			return svc_fail(res, TRPC_STATUS_INVALID_ARGUMENT,
			                "page must be an integer >= 1");
	}
	if (pp != NULL) {
		errno = 0;
		*per_page = strtol(pp, &end, 10);
		if (errno != 0 || end == pp || *end != '\0' || *per_page < 1 ||
		    *per_page > PER_PAGE_MAX)
			return svc_fail(res, TRPC_STATUS_INVALID_ARGUMENT,
			                "per_page must be an integer in 1..%d", PER_PAGE_MAX);
	}
	if ((*page - 1) * *per_page > INT_MAX)
		return svc_fail(res, TRPC_STATUS_INVALID_ARGUMENT, "page is too large");
	return 0;
}

/* query parameter -> ListTasksRequest field */
static const char *const filters[][2] = {
    {"namespace", "namespace"}, {"status", "states"}, {"initiator", "initiator"}, {"name", "name"}};

/* What page_of and build_list_tasks read, for the OpenAPI document. */
static const char *const list_tasks_query[] = {"page",      "per_page", "namespace", "status",
                                               "initiator", "name",     NULL};

static int build_list_tasks(struct rest_request *rq, ProtobufCMessage *req, struct svc_result *res)
{
	Tasker__V1__ListTasksRequest *r = (Tasker__V1__ListTasksRequest *)req;
	ProtobufCAllocator *a = rest_alloc(rq);
	Tasker__V1__PaginationRequest *pg;
	struct tk_err err;
	long page, per_page;

	if (page_of(rq, &page, &per_page, res) != 0)
		return -1;
	if (rest_query(rq, "source_system") != NULL)
		return svc_fail(res, TRPC_STATUS_INVALID_ARGUMENT,
		                "filtering by source_system is not supported (ListTasksRequest has "
		                "no such filter)");
	if ((pg = a->alloc(a->allocator_data, sizeof(*pg))) == NULL)
		return nomem(res);
	tasker__v1__pagination_request__init(pg);
	pg->_limit_case = TASKER__V1__PAGINATION_REQUEST___LIMIT_LIMIT;
	pg->limit = (int32_t)per_page;
	pg->_offset_case = TASKER__V1__PAGINATION_REQUEST___OFFSET_OFFSET;
	pg->offset = (int32_t)((page - 1) * per_page);
	r->pagination = pg;
	for (size_t i = 0; i < sizeof(filters) / sizeof(filters[0]); i++) {
		const char *v = rest_query(rq, filters[i][0]);
		if (v != NULL &&
		    pbjson_set_text(req, filters[i][1], v, a, PBJSON_LENIENT_ENUMS, &err) != 0)
			return bad_request(res, filters[i][0], &err);
	}
	return 0;
}

static int adapt_list_tasks(struct rest_request *rq, const ProtobufCMessage *resp, json_t **body,
                            struct svc_result *res)
{
	const Tasker__V1__ListTasksResponse *lr = (const Tasker__V1__ListTasksResponse *)resp;
	json_t *in = json_object_get(*body, "tasks"), *tasks = json_array(), *out, *t;
	long page, per_page;
	int64_t total = lr->pagination != NULL ? lr->pagination->total : 0, pages;
	size_t i;

	if (page_of(rq, &page, &per_page, res) != 0) {
		json_decref(tasks);
		return -1;
	}
	json_array_foreach(in, i, t)
	{
		if (json_array_append_new(tasks, task_response(t, NULL)) != 0) {
			json_decref(tasks);
			return nomem(res);
		}
	}
	pages = (total + per_page - 1) / per_page;
	out = json_pack("{s:o, s:{s:I, s:I, s:I, s:I, s:b, s:b}}", "tasks", tasks, "pagination",
	                "page", (json_int_t)page, "per_page", (json_int_t)per_page, "total_count",
	                (json_int_t)total, "total_pages", (json_int_t)pages, "has_next",
	                page<pages, "has_previous", page> 1);
	if (out == NULL)
		return nomem(res);
	json_decref(*body);
	*body = out;
	return 0;
}

/* ------------------------------------------------------------------ PATCH a step */

struct action_form {
	const char *action_type; /* the REST tag */
	int value;               /* StepManualActionType */
	const char *by;          /* the key naming who acted */
};

static const struct action_form action_forms[] = {
    {"reset_for_retry",
     TASKER__V1__STEP_MANUAL_ACTION_TYPE__STEP_MANUAL_ACTION_TYPE_RESET_FOR_RETRY, "reset_by"},
    {"resolve_manually",
     TASKER__V1__STEP_MANUAL_ACTION_TYPE__STEP_MANUAL_ACTION_TYPE_RESOLVE_MANUALLY, "resolved_by"},
    {"complete_manually",
     TASKER__V1__STEP_MANUAL_ACTION_TYPE__STEP_MANUAL_ACTION_TYPE_COMPLETE_MANUALLY,
     "completed_by"},
};

/* The REST form into ResolveStepRequest's JSON form. NULL with res set. */
static json_t *step_action_json(const json_t *body, const struct action_form *f,
                                struct svc_result *res)
{
	json_t *out = json_object(), *v;
	const char *key;

	if (out == NULL) {
		nomem(res);
		return NULL;
	}
	json_object_foreach((json_t *)(uintptr_t)body, key, v)
	{
		int rc = 0;
		if (strcmp(key, "action_type") == 0)
			continue;
		if (strcmp(key, "reason") == 0)
			rc = json_object_set(out, "reason", v);
		else if (strcmp(key, f->by) == 0)
			rc = json_object_set(out, "performed_by", v);
		else if (
		    strcmp(key, "completion_data") == 0 &&
		    f->value ==
		        TASKER__V1__STEP_MANUAL_ACTION_TYPE__STEP_MANUAL_ACTION_TYPE_COMPLETE_MANUALLY &&
		    json_is_object(v)) {
			const char *k2;
			json_t *v2;
			json_object_foreach(v, k2, v2)
			{
				if (strcmp(k2, "result") != 0 && strcmp(k2, "metadata") != 0) {
					json_decref(out);
					svc_fail(
					    res, TRPC_STATUS_INVALID_ARGUMENT,
					    "body: completion_data has no field \"%s\" (result, "
					    "metadata)",
					    k2);
					return NULL;
				}
				rc |= json_object_set(out, k2, v2);
			}
		} else {
			json_decref(out);
			svc_fail(res, TRPC_STATUS_INVALID_ARGUMENT,
			         "body: \"%s\" is not a field of a %s action", key, f->action_type);
			return NULL;
		}
		if (rc != 0) {
			json_decref(out);
			nomem(res);
			return NULL;
		}
	}
	return out;
}

static int build_resolve_step(struct rest_request *rq, ProtobufCMessage *req,
                              struct svc_result *res)
{
	Tasker__V1__ResolveStepRequest *r = (Tasker__V1__ResolveStepRequest *)req;
	const json_t *body = rest_body(rq);
	const char *tag = json_string_value(json_object_get(body, "action_type"));
	const struct action_form *f = NULL;
	struct tk_err err;
	json_t *form;
	int rc;

	if (!json_is_object(body))
		return svc_fail(res, TRPC_STATUS_INVALID_ARGUMENT,
		                "the body must be a JSON object with an action_type");
	for (size_t i = 0; tag != NULL && i < sizeof(action_forms) / sizeof(action_forms[0]); i++)
		if (strcmp(tag, action_forms[i].action_type) == 0)
			f = &action_forms[i];
	if (f == NULL) { /* ResolveStepRequest's own JSON form */
		rc = pbjson_merge(body, req, rest_alloc(rq), PBJSON_LENIENT_ENUMS, &err);
	} else if ((form = step_action_json(body, f, res)) == NULL) {
		return -1;
	} else {
		rc = pbjson_merge(form, req, rest_alloc(rq), 0, &err);
		json_decref(form);
		r->action_type = f->value;
	}
	if (rc != 0)
		return bad_request(res, "body", &err);
	/* the path names the step: the body cannot move it elsewhere */
	r->task_uuid = (char *)rest_param(rq, "task_uuid");
	r->step_uuid = (char *)rest_param(rq, "step_uuid");
	return 0;
}

/* ------------------------------------------------------------------ the table */

#define GET(path, svc, m, fl)                                                                      \
	{                                                                                          \
		.method = "GET", .pattern = (path), .service = (svc), .rpc = (m), .flags = (fl)    \
	}

const struct rest_route rest_orchestration_routes[] = {
    /* public */
    GET("/health", HEALTH, "CheckHealth", 0),
    GET("/health/live", HEALTH, "CheckLiveness", 0),
    GET("/health/ready", HEALTH, "CheckReadiness", REST_BODY_ON_FAILURE),
    GET("/health/detailed", HEALTH, "CheckDetailedHealth", 0),
    {.method = "GET",
     .pattern = "/metrics",
     .handler = rest_metrics_handler,
     .produces = TRPC_METRICS_CONTENT_TYPE},
    REST_API_DOCS_ROUTES,
    /* tasks */
    {.method = "POST",
     .pattern = "/v1/tasks",
     .service = TASKS,
     .rpc = "CreateTask",
     .build = build_create_task,
     .adapt = adapt_create_task,
     .flags = REST_BODY_BUILT,
     .status = 201},
    {.method = "GET",
     .pattern = "/v1/tasks",
     .service = TASKS,
     .rpc = "ListTasks",
     .build = build_list_tasks,
     .adapt = adapt_list_tasks,
     .query_params = list_tasks_query},
    {.method = "GET",
     .pattern = "/v1/tasks/{task_uuid}",
     .service = TASKS,
     .rpc = "GetTask",
     .build = build_get_task,
     .adapt = adapt_get_task},
    {.method = "DELETE",
     .pattern = "/v1/tasks/{task_uuid}",
     .service = TASKS,
     .rpc = "CancelTask",
     .flags = REST_QUERY | REST_BODY},
    GET("/v1/tasks/{task_uuid}/summary", TASKS, "GetTaskSummary", 0),
    /* steps */
    GET("/v1/tasks/{task_uuid}/workflow_steps", STEPS, "ListSteps", 0),
    GET("/v1/tasks/{task_uuid}/workflow_steps/{step_uuid}", STEPS, "GetStep", 0),
    {.method = "PATCH",
     .pattern = "/v1/tasks/{task_uuid}/workflow_steps/{step_uuid}",
     .service = STEPS,
     .rpc = "ResolveStep",
     .build = build_resolve_step,
     .flags = REST_BODY_BUILT},
    GET("/v1/tasks/{task_uuid}/workflow_steps/{step_uuid}/audit", STEPS, "GetStepAudit", 0),
    /* templates, analytics */
    GET("/v1/templates", TEMPLATES, "ListTemplates", REST_QUERY),
    GET("/v1/templates/{namespace}/{name}/{version}", TEMPLATES, "GetTemplate", 0),
    GET("/v1/analytics/performance", ANALYTICS, "GetPerformanceMetrics", REST_QUERY),
    GET("/v1/analytics/bottlenecks", ANALYTICS, "GetBottleneckAnalysis", REST_QUERY),
    /* dead letter queue */
    GET("/v1/dlq", DLQ, "ListEntries", REST_QUERY),
    GET("/v1/dlq/task/{task_uuid}", DLQ, "GetEntryByTask", 0),
    {.method = "PATCH",
     .pattern = "/v1/dlq/entry/{dlq_entry_uuid}",
     .service = DLQ,
     .rpc = "UpdateInvestigation",
     .flags = REST_BODY},
    GET("/v1/dlq/stats", DLQ, "GetStats", 0),
    GET("/v1/dlq/investigation-queue", DLQ, "GetInvestigationQueue", REST_QUERY),
    GET("/v1/dlq/staleness", DLQ, "GetStalenessMonitoring", REST_QUERY),
    /* safe config, when enabled */
    GET("/config", CONFIG, "GetConfig", REST_CONFIG_ENDPOINT),
};

const size_t rest_orchestration_n_routes =
    sizeof(rest_orchestration_routes) / sizeof(rest_orchestration_routes[0]);

/*
 * Unit tests for src/web/openapi.c: the document of a small route table
 * over real tasker.v1 descriptors (paths and methods, parameters, bodies,
 * permissions and security, the schema of each field kind, the
 * well-known types, maps, enums), the self-contained UI page, and every
 * out-of-memory path (the N-th jansson allocation fails, for every N).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "tasker/v1/dlq.pb-c.h"
#include "tasker/v1/tasks.pb-c.h"
#include "web/openapi.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

static int dummy_fn(struct svc_env *env, const ProtobufCMessage *req, ProtobufCMessage *resp,
                    const struct svc_ctx *ctx, struct svc_result *res)
{
	return 0;
}

static int dummy_handler(struct rest_request *rq, struct rest_reply *out, struct svc_result *res)
{
	return 0;
}

static int dummy_adapt(struct rest_request *rq, const ProtobufCMessage *resp, json_t **body,
                       struct svc_result *res)
{
	return 0;
}

static const struct svc_op get_task = {"tasker.v1.TaskService",
                                       "GetTask",
                                       "tasks:read",
                                       &tasker__v1__get_task_request__descriptor,
                                       &tasker__v1__get_task_response__descriptor,
                                       dummy_fn};
static const struct svc_op create_task = {"tasker.v1.TaskService",
                                          "CreateTask",
                                          "tasks:create",
                                          &tasker__v1__create_task_request__descriptor,
                                          &tasker__v1__create_task_response__descriptor,
                                          dummy_fn};
static const struct svc_op list_dlq = {"tasker.v1.DlqService",
                                       "ListEntries",
                                       "dlq:read",
                                       &tasker__v1__list_dlq_entries_request__descriptor,
                                       &tasker__v1__list_dlq_entries_response__descriptor,
                                       dummy_fn};

static const char *const extra_query[] = {"page", NULL};

static const struct rest_route table[] = {
    {.method = "GET", .pattern = "/metrics", .handler = dummy_handler, .produces = "text/plain"},
    {.method = "GET",
     .pattern = "/v1/tasks/{task_uuid}",
     .adapt = dummy_adapt,
     .query_params = extra_query},
    {.method = "POST", .pattern = "/v1/tasks", .flags = REST_BODY_BUILT, .status = 201},
    {.method = "GET", .pattern = "/v1/dlq", .flags = REST_QUERY},
    {.method = "POST",
     .pattern = "/v1/x/{name}/validate",
     .handler = dummy_handler,
     .permission = "templates:validate"},
};

static const struct openapi_route routes[] = {
    {&table[0], NULL},      {&table[1], &get_task}, {&table[2], &create_task},
    {&table[3], &list_dlq}, {&table[4], NULL},
};

static const struct openapi_info info = {"test API", "1.2.3", "for tests", NULL};

/* ------------------------------------------------------------------ allocation failures */

static long n_allocs, fail_at;

static void *counting_malloc(size_t n)
{
	if (fail_at > 0 && ++n_allocs == fail_at)
		return NULL;
	return malloc(n);
}

/* ------------------------------------------------------------------ helpers */

static json_t *path_op(json_t *doc, const char *path, const char *method)
{
	json_t *op = json_object_get(json_object_get(json_object_get(doc, "paths"), path), method);

	assert_non_null(op);
	return op;
}

static json_t *schema_of(json_t *doc, const char *name)
{
	json_t *s =
	    json_object_get(json_object_get(json_object_get(doc, "components"), "schemas"), name);

	assert_non_null(s);
	return s;
}

static json_t *prop(json_t *schema, const char *field)
{
	json_t *p = json_object_get(json_object_get(schema, "properties"), field);

	assert_non_null(p);
	return p;
}

static const char *str(json_t *v, const char *key)
{
	return json_string_value(json_object_get(v, key));
}

/* The parameter `name` of op, or NULL. */
static json_t *param(json_t *op, const char *name)
{
	size_t i;
	json_t *p;

	json_array_foreach(json_object_get(op, "parameters"), i,
	                   p) if (strcmp(str(p, "name"), name) == 0) return p;
	return NULL;
}

/* ------------------------------------------------------------------ tests */

static void test_paths(void **state)
{
	json_t *doc = openapi_document(&info, routes, ARRAY_LEN(routes)), *op, *p;

	assert_non_null(doc);
	assert_string_equal(str(doc, "openapi"), "3.0.3");
	assert_string_equal(str(json_object_get(doc, "info"), "title"), "test API");
	assert_int_equal(json_object_size(json_object_get(doc, "paths")), 5);

	op = path_op(doc, "/metrics", "get");
	assert_null(json_object_get(op, "x-required-permission"));
	assert_int_equal(json_array_size(json_object_get(op, "security")), 0);
	assert_non_null(json_object_get(
	    json_object_get(json_object_get(json_object_get(op, "responses"), "200"), "content"),
	    "text/plain"));

	op = path_op(doc, "/v1/tasks/{task_uuid}", "get");
	assert_string_equal(str(op, "operationId"), "TaskService.GetTask");
	assert_string_equal(str(op, "x-required-permission"), "tasks:read");
	assert_true(json_is_true(json_object_get(op, "x-rest-adapted")));
	assert_int_equal(json_array_size(json_object_get(op, "security")), 2);
	p = param(op, "task_uuid");
	assert_non_null(p);
	assert_string_equal(str(p, "in"), "path");
	assert_true(json_is_true(json_object_get(p, "required")));
	assert_string_equal(str(json_object_get(p, "schema"), "format"), "uuid");
	assert_non_null(param(op, "page"));
	assert_null(param(op, "include_steps")); /* no REST_QUERY */

	op = path_op(doc, "/v1/tasks", "post");
	assert_string_equal(
	    str(json_object_get(
	            json_object_get(json_object_get(json_object_get(op, "requestBody"), "content"),
	                            "application/json"),
	            "schema"),
	        "$ref"),
	    "#/components/schemas/tasker.v1.CreateTaskRequest");
	assert_non_null(json_object_get(json_object_get(op, "responses"), "201"));
	assert_non_null(json_object_get(json_object_get(op, "responses"), "401"));

	op = path_op(doc, "/v1/dlq", "get");
	p = param(op, "resolution_status");
	assert_non_null(p);
	assert_string_equal(str(p, "in"), "query");
	assert_string_equal(str(json_object_get(p, "schema"), "$ref"),
	                    "#/components/schemas/tasker.v1.DlqResolutionStatus");

	op = path_op(doc, "/v1/x/{name}/validate", "post");
	assert_string_equal(str(op, "operationId"), "post_v1_x_name_validate");
	assert_string_equal(str(op, "x-required-permission"), "templates:validate");
	assert_string_equal(str(json_object_get(param(op, "name"), "schema"), "type"), "string");
	json_decref(doc);
}

static void test_schemas(void **state)
{
	json_t *doc = openapi_document(&info, routes, ARRAY_LEN(routes)), *task, *p;

	assert_non_null(doc);
	task = schema_of(doc, "tasker.v1.Task");
	assert_string_equal(str(prop(task, "task_uuid"), "type"), "string");
	assert_string_equal(str(prop(task, "created_at"), "format"), "date-time");
	p = prop(task, "context"); /* Struct */
	assert_string_equal(str(p, "type"), "object");
	assert_true(json_is_true(json_object_get(p, "additionalProperties")));
	assert_string_equal(str(prop(task, "state"), "$ref"),
	                    "#/components/schemas/tasker.v1.TaskState");
	p = schema_of(doc, "tasker.v1.TaskState");
	assert_string_equal(str(p, "type"), "string");
	assert_string_equal(json_string_value(json_array_get(json_object_get(p, "enum"), 0)),
	                    "TASK_STATE_UNSPECIFIED");
	p = prop(task, "tags"); /* repeated string */
	assert_string_equal(str(p, "type"), "array");
	assert_string_equal(str(json_object_get(p, "items"), "type"), "string");
	/* int64 as strings */
	assert_string_equal(str(prop(task, "total_steps"), "type"), "string");
	assert_string_equal(str(prop(task, "total_steps"), "format"), "int64");
	json_decref(doc);
}

static void test_security_schemes(void **state)
{
	json_t *doc = openapi_document(&info, routes, ARRAY_LEN(routes)), *s;

	assert_non_null(doc);
	s = json_object_get(json_object_get(doc, "components"), "securitySchemes");
	assert_string_equal(str(json_object_get(s, "bearerAuth"), "bearerFormat"), "JWT");
	assert_string_equal(str(json_object_get(s, "apiKeyAuth"), "name"), "X-API-Key");
	json_decref(doc);
}

static void test_ui(void **state)
{
	const char *html = openapi_ui_html();

	assert_non_null(strstr(html, "fetch('openapi.json')"));
	assert_null(strstr(html, "http://"));
	assert_null(strstr(html, "https://"));
	assert_null(strstr(html, "src="));
}

static void test_oom(void **state)
{
	long n;

	for (n = 1;; n++) {
		json_t *doc;
		n_allocs = 0;
		fail_at = n;
		json_set_alloc_funcs(counting_malloc, free);
		doc = openapi_document(&info, routes, ARRAY_LEN(routes));
		json_set_alloc_funcs(malloc, free);
		fail_at = 0;
		if (doc != NULL) {
			if (n_allocs >= n)
				print_message(
				    "# allocation %ld of %ld failed, yet a document came back\n", n,
				    n_allocs);
			/* no failure injected: every path before n was walked */
			assert_true(n_allocs < n);
			json_decref(doc);
			break;
		}
	}
	assert_true(n > 100);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_paths),
	    cmocka_unit_test(test_schemas),
	    cmocka_unit_test(test_security_schemes),
	    cmocka_unit_test(test_ui),
	    cmocka_unit_test(test_oom),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

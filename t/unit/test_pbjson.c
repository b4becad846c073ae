/*
 * Unit tests for src/web/pbjson.c, the proto3 JSON mapping, on messages of
 * proto/tasker/v1 (and grpc.testing for bytes): output names, presence of
 * the proto3-optional fields, int64 as strings, enums, Timestamps,
 * Struct/Value/ListValue, maps, bytes; input in both name styles, every
 * error with the field it names; text values for URL parameters; the
 * compact writer; and every out-of-memory path of the decoder and the
 * encoder (the N-th allocation fails, for every N).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grpc/testing/messages.pb-c.h"
#include "tasker/v1/common.pb-c.h"
#include "tasker/v1/dlq.pb-c.h"
#include "tasker/v1/tasks.pb-c.h"
#include "tasker/v1/worker.pb-c.h"
#include "web/pbjson.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* ------------------------------------------------------------------ a tracking arena */

/* Every block is remembered and freed at the end, like a request arena;
 * fail_at > 0 makes the fail_at-th allocation fail. */
struct track {
	void *blocks[4096];
	size_t n;
	long count, fail_at;
};

static void *track_alloc(void *data, size_t size)
{
	struct track *t = data;
	void *p;

	if (t->fail_at > 0 && ++t->count == t->fail_at)
		return NULL;
	if (t->n == ARRAY_LEN(t->blocks) || (p = malloc(size)) == NULL)
		return NULL;
	t->blocks[t->n++] = p;
	return p;
}

static void track_free(void *data, void *p)
{
	(void)data;
	(void)p; /* freed with the arena */
}

static void track_release(struct track *t)
{
	for (size_t i = 0; i < t->n; i++)
		free(t->blocks[i]);
	t->n = 0;
}

struct fixture {
	struct track track;
	ProtobufCAllocator alloc;
	struct tk_err err;
};

static int setup(void **state)
{
	struct fixture *fx = calloc(1, sizeof(*fx));

	if (fx == NULL)
		return -1;
	fx->alloc.alloc = track_alloc;
	fx->alloc.free = track_free;
	fx->alloc.allocator_data = &fx->track;
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *fx = *state;

	track_release(&fx->track);
	free(fx);
	return 0;
}

/* ------------------------------------------------------------------ helpers */

static json_t *parse(const char *text)
{
	json_error_t e;
	json_t *j = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, &e);

	if (j == NULL)
		fail_msg("bad test JSON %s: %s", text, e.text);
	return j;
}

/* json_equal, except that numbers compare by value (1 equals 1.0). */
static int same(const json_t *a, const json_t *b)
{
	const char *key;
	json_t *va;

	if (json_is_number(a) && json_is_number(b))
		return json_number_value(a) == json_number_value(b);
	if (json_typeof(a) != json_typeof(b))
		return 0;
	if (json_is_array(a)) {
		if (json_array_size(a) != json_array_size(b))
			return 0;
		for (size_t i = 0; i < json_array_size(a); i++)
			if (!same(json_array_get(a, i), json_array_get(b, i)))
				return 0;
		return 1;
	}
	if (json_is_object(a)) {
		if (json_object_size(a) != json_object_size(b))
			return 0;
		json_object_foreach((json_t *)(uintptr_t)a, key, va)
		{
			json_t *vb = json_object_get(b, key);
			if (vb == NULL || !same(va, vb))
				return 0;
		}
		return 1;
	}
	return json_equal((json_t *)(uintptr_t)a, (json_t *)(uintptr_t)b);
}

/* Asserts that v is the JSON `want` (compared as values, not text). */
static void assert_json(const json_t *v, const char *want)
{
	json_t *w = parse(want);
	char *got = pbjson_dumps(v, NULL);

	if (!same(v, w))
		fail_msg("got  %s\nwant %s", got != NULL ? got : "(null)", want);
	free(got);
	json_decref(w);
}

static void assert_encodes(const ProtobufCMessage *m, unsigned flags, const char *want)
{
	json_t *j = pbjson_encode(m, flags);

	assert_non_null(j);
	assert_json(j, want);
	json_decref(j);
}

static ProtobufCMessage *decode_ok(struct fixture *fx, const ProtobufCMessageDescriptor *d,
                                   const char *text, unsigned flags)
{
	json_t *j = parse(text);
	ProtobufCMessage *m = NULL;
	int rc = pbjson_decode(j, d, &fx->alloc, flags, &m, &fx->err);

	if (rc != 0)
		fail_msg("decoding %s: %d %s", text, rc, fx->err.msg);
	json_decref(j);
	return m;
}

/* Decodes, encodes again and compares with `want` (the input when NULL). */
static void assert_round_trip(struct fixture *fx, const ProtobufCMessageDescriptor *d,
                              const char *text, const char *want)
{
	ProtobufCMessage *m = decode_ok(fx, d, text, 0);

	assert_encodes(m, 0, want != NULL ? want : text);
}

/* ------------------------------------------------------------------ output */

static void build_struct(Google__Protobuf__Struct *s, Google__Protobuf__Struct__FieldsEntry *e,
                         Google__Protobuf__Struct__FieldsEntry **pe, Google__Protobuf__Value *v)
{
	/* {"a": 1, "b": "x", "c": null, "d": true} */
	static const char *keys[] = {"a", "b", "c", "d"};

	for (int i = 0; i < 4; i++) {
		google__protobuf__struct__fields_entry__init(&e[i]);
		google__protobuf__value__init(&v[i]);
		e[i].key = (char *)keys[i];
		e[i].value = &v[i];
		pe[i] = &e[i];
	}
	v[0].kind_case = GOOGLE__PROTOBUF__VALUE__KIND_NUMBER_VALUE;
	v[0].number_value = 1;
	v[1].kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE;
	v[1].string_value = "x";
	v[2].kind_case = GOOGLE__PROTOBUF__VALUE__KIND_NULL_VALUE;
	v[3].kind_case = GOOGLE__PROTOBUF__VALUE__KIND_BOOL_VALUE;
	v[3].bool_value = 1;
	s->n_fields = 4;
	s->fields = pe;
}

static void test_encode_task(void **state)
{
	Tasker__V1__Task t = TASKER__V1__TASK__INIT;
	Google__Protobuf__Timestamp created = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
	Google__Protobuf__Struct ctx = GOOGLE__PROTOBUF__STRUCT__INIT;
	Google__Protobuf__Struct__FieldsEntry e[4], *pe[4];
	Google__Protobuf__Value v[4];
	char *tags[] = {"x", "y"};

	(void)state;
	build_struct(&ctx, e, pe, v);
	created.seconds = 1700000000;
	created.nanos = 500000000;
	t.task_uuid = "0190b1a2-0000-7000-8000-000000000001";
	t.state = TASKER__V1__TASK_STATE__TASK_STATE_COMPLETE;
	t.created_at = &created;
	t.context = &ctx;
	t.n_tags = 2;
	t.tags = tags;
	t.total_steps = 5;
	t.completed_steps = -3;
	t.completion_percentage = 100.0 / 3;
	/* proto3 optional: present at zero, absent when not set */
	t._priority_case = TASKER__V1__TASK___PRIORITY_PRIORITY;
	t.priority = 0;

	assert_encodes(&t.base, 0,
	               "{\"task_uuid\": \"0190b1a2-0000-7000-8000-000000000001\","
	               " \"state\": \"TASK_STATE_COMPLETE\","
	               " \"created_at\": \"2023-11-14T22:13:20.500Z\","
	               " \"context\": {\"a\": 1, \"b\": \"x\", \"c\": null, \"d\": true},"
	               " \"tags\": [\"x\", \"y\"], \"total_steps\": \"5\","
	               " \"completed_steps\": \"-3\","
	               " \"completion_percentage\": 33.333333333333336, \"priority\": 0}");

	t._parent_correlation_id_case =
	    TASKER__V1__TASK___PARENT_CORRELATION_ID_PARENT_CORRELATION_ID;
	t.parent_correlation_id = "";
	t._priority_case = TASKER__V1__TASK___PRIORITY__NOT_SET;
	t.priority = 7; /* not set: not written whatever the union holds */
	json_t *j = pbjson_encode(&t.base, 0);
	assert_non_null(j);
	assert_null(json_object_get(j, "priority"));
	assert_string_equal(json_string_value(json_object_get(j, "parent_correlation_id")), "");
	json_decref(j);
}

static void test_emit_defaults(void **state)
{
	Tasker__V1__Task t = TASKER__V1__TASK__INIT;
	json_t *j;

	(void)state;
	assert_encodes(&t.base, 0, "{}");
	j = pbjson_encode(&t.base, PBJSON_EMIT_DEFAULTS);
	assert_non_null(j);
	assert_string_equal(json_string_value(json_object_get(j, "state")),
	                    "TASK_STATE_UNSPECIFIED");
	assert_string_equal(json_string_value(json_object_get(j, "total_steps")), "0");
	assert_string_equal(json_string_value(json_object_get(j, "name")), "");
	assert_true(json_is_array(json_object_get(j, "tags")));
	assert_true(json_is_real(json_object_get(j, "completion_percentage")));
	/* fields with presence stay absent */
	assert_null(json_object_get(j, "priority"));
	assert_null(json_object_get(j, "created_at"));
	assert_null(json_object_get(j, "context"));
	assert_int_equal(json_object_size(j), 20);
	json_decref(j);
}

static void test_camel_case(void **state)
{
	Tasker__V1__Task t = TASKER__V1__TASK__INIT;

	(void)state;
	t.task_uuid = "u";
	t.in_progress_steps = 2;
	t._parent_correlation_id_case =
	    TASKER__V1__TASK___PARENT_CORRELATION_ID_PARENT_CORRELATION_ID;
	t.parent_correlation_id = "p";
	assert_encodes(&t.base, PBJSON_CAMEL_CASE,
	               "{\"taskUuid\": \"u\", \"inProgressSteps\": \"2\","
	               " \"parentCorrelationId\": \"p\"}");
}

static void test_encode_unknown_enum_and_specials(void **state)
{
	Tasker__V1__Task t = TASKER__V1__TASK__INIT;
	Tasker__V1__WorkerHealthCheck hc = TASKER__V1__WORKER_HEALTH_CHECK__INIT;

	(void)state;
	t.state = (Tasker__V1__TaskState)99;
	t.completion_percentage = NAN;
	assert_encodes(&t.base, 0, "{\"state\": 99, \"completion_percentage\": \"NaN\"}");
	t.state = 0;
	t.completion_percentage = -INFINITY;
	assert_encodes(&t.base, 0, "{\"completion_percentage\": \"-Infinity\"}");
	hc.duration_ms = UINT64_MAX;
	assert_encodes(&hc.base, 0, "{\"duration_ms\": \"18446744073709551615\"}");
}

/* ------------------------------------------------------------------ input */

static void test_decode_create_request(void **state)
{
	struct fixture *fx = *state;
	Tasker__V1__CreateTaskRequest *r = (Tasker__V1__CreateTaskRequest *)decode_ok(
	    fx, &tasker__v1__create_task_request__descriptor,
	    "{\"name\": \"diamond\", \"namespace\": \"integration\", \"version\": \"1.0.0\","
	    " \"context\": {\"n\": [1, 2.5, {\"deep\": null}], \"s\": \"\\u00e9\"},"
	    " \"sourceSystem\": \"cli\", \"priority\": 0, \"tags\": [\"a\", \"b\"],"
	    " \"parent_correlation_id\": null}",
	    0);

	assert_string_equal(r->name, "diamond");
	assert_string_equal(r->namespace_, "integration");
	assert_int_equal(r->_source_system_case,
	                 TASKER__V1__CREATE_TASK_REQUEST___SOURCE_SYSTEM_SOURCE_SYSTEM);
	assert_string_equal(r->source_system, "cli");
	assert_int_equal(r->_priority_case, TASKER__V1__CREATE_TASK_REQUEST___PRIORITY_PRIORITY);
	assert_int_equal(r->priority, 0);
	assert_int_equal(r->_parent_correlation_id_case,
	                 TASKER__V1__CREATE_TASK_REQUEST___PARENT_CORRELATION_ID__NOT_SET);
	assert_int_equal(r->_initiator_case, TASKER__V1__CREATE_TASK_REQUEST___INITIATOR__NOT_SET);
	assert_int_equal(r->n_tags, 2);
	assert_string_equal(r->tags[1], "b");
	assert_non_null(r->context);
	assert_int_equal(r->context->n_fields, 2);
	assert_encodes(&r->base, 0,
	               "{\"name\": \"diamond\", \"namespace\": \"integration\","
	               " \"version\": \"1.0.0\","
	               " \"context\": {\"n\": [1, 2.5, {\"deep\": null}], \"s\": \"\\u00e9\"},"
	               " \"source_system\": \"cli\", \"priority\": 0, \"tags\": [\"a\", \"b\"]}");
}

static void test_decode_numbers(void **state)
{
	struct fixture *fx = *state;
	Tasker__V1__Task *t = (Tasker__V1__Task *)decode_ok(
	    fx, &tasker__v1__task__descriptor,
	    "{\"total_steps\": \"9223372036854775807\", \"pending_steps\": -9223372036854775807,"
	    " \"ready_steps\": 1e3, \"priority\": \"-12\", \"completion_percentage\": \"Infinity\","
	    " \"failed_steps\": 4.0}",
	    0);

	assert_true(t->total_steps == INT64_MAX);
	assert_true(t->pending_steps == -INT64_MAX);
	assert_int_equal(t->ready_steps, 1000);
	assert_int_equal(t->failed_steps, 4);
	assert_int_equal(t->priority, -12);
	assert_true(isinf(t->completion_percentage));

	Tasker__V1__WorkerHealthCheck *hc = (Tasker__V1__WorkerHealthCheck *)decode_ok(
	    fx, &tasker__v1__worker_health_check__descriptor,
	    "{\"duration_ms\": \"18446744073709551615\"}", 0);
	assert_true(hc->duration_ms == UINT64_MAX);
	assert_round_trip(fx, &tasker__v1__worker_system_info__descriptor,
	                  "{\"database_pool_size\": 4294967295, \"uptime_seconds\": \"12\"}", NULL);
}

static void test_decode_enums(void **state)
{
	struct fixture *fx = *state;
	Tasker__V1__ListTasksRequest *r = (Tasker__V1__ListTasksRequest *)decode_ok(
	    fx, &tasker__v1__list_tasks_request__descriptor,
	    "{\"states\": [\"TASK_STATE_PENDING\", 9], \"sort\": {\"field\": \"created_at\","
	    " \"direction\": \"SORT_DIRECTION_DESC\"}}",
	    0);

	assert_int_equal(r->n_states, 2);
	assert_int_equal(r->states[0], TASKER__V1__TASK_STATE__TASK_STATE_PENDING);
	assert_int_equal(r->states[1], TASKER__V1__TASK_STATE__TASK_STATE_COMPLETE);
	assert_int_equal(r->sort->direction, TASKER__V1__SORT_DIRECTION__SORT_DIRECTION_DESC);

	r = (Tasker__V1__ListTasksRequest *)decode_ok(
	    fx, &tasker__v1__list_tasks_request__descriptor,
	    "{\"states\": [\"complete\", \"Waiting_For_Retry\", \"task_state_error\"]}",
	    PBJSON_LENIENT_ENUMS);
	assert_int_equal(r->n_states, 3);
	assert_int_equal(r->states[0], TASKER__V1__TASK_STATE__TASK_STATE_COMPLETE);
	assert_int_equal(r->states[1], TASKER__V1__TASK_STATE__TASK_STATE_WAITING_FOR_RETRY);
	assert_int_equal(r->states[2], TASKER__V1__TASK_STATE__TASK_STATE_ERROR);
}

static void test_decode_timestamps(void **state)
{
	static const struct {
		const char *in, *out;
	} cases[] = {
	    {"2024-02-29T23:59:59.5+01:00", "2024-02-29T22:59:59.500Z"},
	    {"0001-01-01T00:00:00Z", "0001-01-01T00:00:00Z"},
	    {"9999-12-31T23:59:59.999999999Z", "9999-12-31T23:59:59.999999999Z"},
	    {"1969-12-31t23:59:59.000001z", "1969-12-31T23:59:59.000001Z"},
	    {"2000-01-01T00:00:00-00:30", "2000-01-01T00:30:00Z"},
	};
	static const char *const bad[] = {
	    "2023-02-29T00:00:00Z",
	    "2024-01-01T00:00:00",
	    "2024-1-01T00:00:00Z",
	    "2024-01-01T24:00:00Z",
	    "2024-01-01T00:00:00.Z",
	    "2024-01-01T00:00:00.1234567890Z",
	    "9999-12-31T23:59:59-01:00",
	    "2024-01-01T00:00:00Zjunk",
	    "",
	};
	struct fixture *fx = *state;
	char text[160];

	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		char want[160];
		snprintf(text, sizeof(text), "{\"timestamp\": \"%s\"}", cases[i].in);
		snprintf(want, sizeof(want), "{\"timestamp\": \"%s\"}", cases[i].out);
		assert_round_trip(fx, &tasker__v1__worker_basic_health_response__descriptor, text,
		                  want);
	}
	for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
		json_t *j;
		ProtobufCMessage *m = NULL;
		snprintf(text, sizeof(text), "{\"timestamp\": \"%s\"}", bad[i]);
		j = parse(text);
		assert_int_equal(
		    pbjson_decode(j, &tasker__v1__worker_basic_health_response__descriptor,
		                  &fx->alloc, 0, &m, &fx->err),
		    TRPC_ERR_INVALID);
		assert_non_null(strstr(fx->err.msg, "field \"timestamp\": "));
		assert_non_null(strstr(fx->err.msg, "RFC 3339"));
		assert_null(m);
		json_decref(j);
	}
}

static void test_decode_map_and_bytes(void **state)
{
	struct fixture *fx = *state;
	Tasker__V1__ErrorDetail *e = (Tasker__V1__ErrorDetail *)decode_ok(
	    fx, &tasker__v1__error_detail__descriptor,
	    "{\"code\": \"X\", \"metadata\": {\"a\": \"1\", \"b\": \"2\"}, \"field\": \"\"}", 0);
	Grpc__Testing__SimpleRequest *r;

	assert_int_equal(e->n_metadata, 2);
	assert_string_equal(e->metadata[1]->key, "b");
	assert_string_equal(e->metadata[1]->value, "2");
	assert_int_equal(e->_field_case, TASKER__V1__ERROR_DETAIL___FIELD_FIELD);
	assert_encodes(&e->base, 0,
	               "{\"code\": \"X\", \"metadata\": {\"a\": \"1\", \"b\": \"2\"},"
	               " \"field\": \"\"}");

	r = (Grpc__Testing__SimpleRequest *)decode_ok(
	    fx, &grpc__testing__simple_request__descriptor,
	    "{\"payload\": {\"body\": \"AAEC_w\"}, \"fillUsername\": true,"
	    " \"response_type\": \"COMPRESSABLE\"}",
	    0);
	assert_int_equal(r->payload->body.len, 4);
	assert_memory_equal(r->payload->body.data, "\x00\x01\x02\xff", 4);
	assert_true(r->fill_username);
	assert_encodes(&r->base, 0,
	               "{\"payload\": {\"body\": \"AAEC/w==\"}, \"fill_username\": true}");
	assert_round_trip(fx, &grpc__testing__simple_request__descriptor,
	                  "{\"payload\": {\"body\": \"YQ\"}}",
	                  "{\"payload\": {\"body\": \"YQ==\"}}");
	assert_round_trip(fx, &grpc__testing__simple_request__descriptor,
	                  "{\"payload\": {\"body\": \"\"}}", "{\"payload\": {}}");
}

static void test_decode_errors(void **state)
{
	static const struct {
		const ProtobufCMessageDescriptor *d;
		const char *in, *want;
	} cases[] = {
	    {&tasker__v1__create_task_request__descriptor, "{\"nope\": 1}",
	     "unknown field \"nope\" (tasker.v1.CreateTaskRequest has no such field)"},
	    {&tasker__v1__list_tasks_request__descriptor, "{\"pagination\": {\"bogus\": 1}}",
	     "unknown field \"pagination.bogus\" (tasker.v1.PaginationRequest"},
	    {&tasker__v1__create_task_request__descriptor, "{\"priority\": 2147483648}",
	     "field \"priority\": 2147483648 is out of range"},
	    {&tasker__v1__create_task_request__descriptor, "{\"priority\": \"abc\"}",
	     "field \"priority\": \"abc\" is not an integer"},
	    {&tasker__v1__create_task_request__descriptor, "{\"priority\": \" 1\"}",
	     "is not an integer"},
	    {&tasker__v1__create_task_request__descriptor, "{\"priority\": 1.5}",
	     "field \"priority\": 1.5 is not an integer"},
	    {&tasker__v1__create_task_request__descriptor, "{\"priority\": true}",
	     "field \"priority\": expected an integer, got a boolean"},
	    {&tasker__v1__create_task_request__descriptor, "{\"tags\": \"x\"}",
	     "field \"tags\": expected an array, got a string"},
	    {&tasker__v1__create_task_request__descriptor, "{\"tags\": [\"a\", 1]}",
	     "field \"tags[1]\": expected a string, got a number"},
	    {&tasker__v1__create_task_request__descriptor, "{\"tags\": [null]}",
	     "field \"tags[0]\": an element cannot be null"},
	    {&tasker__v1__create_task_request__descriptor, "{\"name\": {}}",
	     "field \"name\": expected a string, got an object"},
	    {&tasker__v1__create_task_request__descriptor, "{\"name\": \"a\\u0000b\"}",
	     "field \"name\": a NUL character is not allowed"},
	    {&tasker__v1__create_task_request__descriptor, "{\"context\": [1]}",
	     "field \"context\": expected an object, got an array"},
	    {&tasker__v1__create_task_request__descriptor, "[]",
	     "expected an object, got an array"},
	    {&tasker__v1__get_task_request__descriptor,
	     "{\"task_uuid\": \"a\", \"taskUuid\": \"b\"}", "field \"task_uuid\" is given twice"},
	    {&tasker__v1__get_task_request__descriptor, "{\"include_steps\": \"true\"}",
	     "field \"include_steps\": expected true or false, got a string"},
	    {&tasker__v1__list_tasks_request__descriptor, "{\"states\": [\"BOGUS\"]}",
	     "field \"states[0]\": \"BOGUS\" is not a value of tasker.v1.TaskState"},
	    {&tasker__v1__list_tasks_request__descriptor, "{\"states\": [\"pending\"]}",
	     "\"pending\" is not a value of tasker.v1.TaskState"},
	    {&tasker__v1__list_tasks_request__descriptor, "{\"states\": [77]}",
	     "field \"states[0]\": 77 is not a value of tasker.v1.TaskState"},
	    {&tasker__v1__list_tasks_request__descriptor,
	     "{\"created_at\": {\"start\": \"yesterday\"}}",
	     "field \"created_at.start\": \"yesterday\" is not an RFC 3339 timestamp"},
	    {&tasker__v1__error_detail__descriptor, "{\"metadata\": {\"k\": 1}}",
	     "field \"metadata[\"k\"]\": expected a string, got a number"},
	    {&tasker__v1__error_detail__descriptor, "{\"metadata\": {\"k\": null}}",
	     "a map value cannot be null"},
	    {&tasker__v1__worker_health_check__descriptor, "{\"duration_ms\": -1}",
	     "field \"duration_ms\": -1 is out of range"},
	    {&tasker__v1__worker_health_check__descriptor, "{\"duration_ms\": \"-1\"}",
	     "is not an unsigned integer"},
	    {&tasker__v1__worker_system_info__descriptor, "{\"database_pool_size\": 4294967296}",
	     "out of range"},
	    {&tasker__v1__task__descriptor, "{\"completion_percentage\": \"lots\"}",
	     "field \"completion_percentage\": \"lots\" is not a number"},
	    {&grpc__testing__simple_request__descriptor, "{\"payload\": {\"body\": \"!!\"}}",
	     "field \"payload.body\": not valid base64"},
	    {&grpc__testing__simple_request__descriptor, "{\"payload\": {\"body\": \"A\"}}",
	     "not valid base64"},
	};
	struct fixture *fx = *state;

	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		json_t *j = parse(cases[i].in);
		ProtobufCMessage *m = NULL;
		int rc = pbjson_decode(j, cases[i].d, &fx->alloc, 0, &m, &fx->err);
		json_decref(j);
		if (rc != TRPC_ERR_INVALID || strstr(fx->err.msg, cases[i].want) == NULL)
			fail_msg("%s: rc %d, message \"%s\", want \"%s\"", cases[i].in, rc,
			         fx->err.msg, cases[i].want);
		assert_null(m);
	}
}

/* Decoding without an allocator uses malloc; errors free what was built. */
static void test_decode_default_allocator(void **state)
{
	struct fixture *fx = *state;
	json_t *j = parse("{\"name\": \"n\", \"context\": {\"a\": [1, {\"b\": \"c\"}]},"
	                  " \"tags\": [\"t\"]}");
	json_t *bad = parse("{\"name\": \"n\", \"context\": {\"a\": [1]}, \"tags\": [\"t\", 2]}");
	ProtobufCMessage *m = NULL;

	assert_int_equal(
	    pbjson_decode(j, &tasker__v1__create_task_request__descriptor, NULL, 0, &m, &fx->err),
	    0);
	assert_non_null(m);
	protobuf_c_message_free_unpacked(m, NULL);
	m = NULL;
	assert_int_equal(
	    pbjson_decode(bad, &tasker__v1__create_task_request__descriptor, NULL, 0, &m, &fx->err),
	    TRPC_ERR_INVALID);
	assert_null(m);
	json_decref(j);
	json_decref(bad);
}

static void test_merge(void **state)
{
	struct fixture *fx = *state;
	Tasker__V1__UpdateDlqInvestigationRequest r =
	    TASKER__V1__UPDATE_DLQ_INVESTIGATION_REQUEST__INIT;
	json_t *j =
	    parse("{\"resolution_status\": \"manually_resolved\", \"resolution_notes\": \"n\","
	          " \"metadata\": {\"k\": 1}}");

	r.dlq_entry_uuid = "from-the-path";
	assert_int_equal(pbjson_merge(j, &r.base, &fx->alloc, PBJSON_LENIENT_ENUMS, &fx->err), 0);
	assert_string_equal(r.dlq_entry_uuid, "from-the-path");
	assert_int_equal(
	    r.resolution_status,
	    TASKER__V1__DLQ_RESOLUTION_STATUS__DLQ_RESOLUTION_STATUS_MANUALLY_RESOLVED);
	assert_int_equal(
	    r._resolution_status_case,
	    TASKER__V1__UPDATE_DLQ_INVESTIGATION_REQUEST___RESOLUTION_STATUS_RESOLUTION_STATUS);
	assert_string_equal(r.resolution_notes, "n");
	assert_non_null(r.metadata);
	json_decref(j);
}

/* ------------------------------------------------------------------ text values */

static void test_set_text(void **state)
{
	struct fixture *fx = *state;
	Tasker__V1__ListTasksRequest l = TASKER__V1__LIST_TASKS_REQUEST__INIT;
	Tasker__V1__GetTaskRequest g = TASKER__V1__GET_TASK_REQUEST__INIT;
	Tasker__V1__TaskStatusUpdate u = TASKER__V1__TASK_STATUS_UPDATE__INIT;
	Tasker__V1__WorkerListTemplatesRequest w = TASKER__V1__WORKER_LIST_TEMPLATES_REQUEST__INIT;
	ProtobufCAllocator *a = &fx->alloc;

	assert_int_equal(pbjson_set_text(&l.base, "namespace", "ns", a, 0, &fx->err), 0);
	assert_int_equal(l._namespace_case, TASKER__V1__LIST_TASKS_REQUEST___NAMESPACE_NAMESPACE);
	assert_string_equal(l.namespace_, "ns");
	assert_int_equal(
	    pbjson_set_text(&l.base, "states", "pending", a, PBJSON_LENIENT_ENUMS, &fx->err), 0);
	assert_int_equal(pbjson_set_text(&l.base, "states", "9", a, 0, &fx->err), 0);
	assert_int_equal(l.n_states, 2);
	assert_int_equal(l.states[0], TASKER__V1__TASK_STATE__TASK_STATE_PENDING);
	assert_int_equal(l.states[1], TASKER__V1__TASK_STATE__TASK_STATE_COMPLETE);
	assert_int_equal(
	    pbjson_set_text(&l.base, "states", "nope", a, PBJSON_LENIENT_ENUMS, &fx->err),
	    TRPC_ERR_INVALID);
	assert_int_equal(pbjson_set_text(&l.base, "pagination", "1", a, 0, &fx->err),
	                 TRPC_ERR_INVALID);
	assert_non_null(strstr(fx->err.msg, "field \"pagination\": cannot be given as text"));
	assert_int_equal(pbjson_set_text(&l.base, "nope", "1", a, 0, &fx->err), TRPC_ERR_NOT_FOUND);

	assert_int_equal(pbjson_set_text(&g.base, "taskUuid", "u-1", a, 0, &fx->err), 0);
	assert_string_equal(g.task_uuid, "u-1");
	assert_int_equal(pbjson_set_text(&g.base, "include_steps", "true", a, 0, &fx->err), 0);
	assert_int_equal(pbjson_set_text(&g.base, "include_context", "1", a, 0, &fx->err), 0);
	assert_true(g.include_steps && g.include_context);
	assert_int_equal(pbjson_set_text(&w.base, "include_cache_stats", "yes", a, 0, &fx->err),
	                 TRPC_ERR_INVALID);
	assert_non_null(strstr(fx->err.msg, "expected true or false, got \"yes\""));

	assert_int_equal(
	    pbjson_set_text(&u.base, "timestamp", "2024-01-01T00:00:01Z", a, 0, &fx->err), 0);
	assert_true(u.timestamp->seconds == 1704067201);
	assert_int_equal(pbjson_set_text(&u.base, "task_state", "TASK_STATE_ERROR", a, 0, &fx->err),
	                 0);
	assert_int_equal(u._task_state_case,
	                 TASKER__V1__TASK_STATUS_UPDATE___TASK_STATE_TASK_STATE);
	assert_int_equal(pbjson_set_text(&u.base, "task_state", "12x", a, 0, &fx->err),
	                 TRPC_ERR_INVALID);
	assert_int_equal(pbjson_set_text(&u.base, "error_message", "\xff", a, 0, &fx->err),
	                 TRPC_ERR_INVALID);
	assert_non_null(strstr(fx->err.msg, "UTF-8"));
}

/* ------------------------------------------------------------------ writer */

static void test_dumps(void **state)
{
	static const struct {
		const char *in, *out;
	} cases[] = {
	    {"[0.1, 100.0, 1e300, -0.0, 33.333333333333336, 5e-324, 1.5, 1e16, 123456789012345.6,"
	     " 0.0001, 0.00001, -2.5e-7]",
	     "[0.1,100.0,1e+300,-0.0,33.333333333333336,5e-324,1.5,1e+16,123456789012345.6,"
	     "0.0001,1e-05,-2.5e-07]"},
	    {"{\"a\": \"q\\\"b\\\\s\\/\\n\\t\\u0001\\u007f\\u00e9\\u2028\"}",
	     "{\"a\":\"q\\\"b\\\\s/\\n\\t\\u0001\\u007f\xc3\xa9\xe2\x80\xa8\"}"},
	    {"{\"z\": 1, \"a\": [true, false, null, {}, []], \"m\": -9223372036854775807}",
	     "{\"z\":1,\"a\":[true,false,null,{},[]],\"m\":-9223372036854775807}"},
	    {"\"a\\u0000b\"", "\"a\\u0000b\""},
	};

	(void)state;
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		json_t *j = parse(cases[i].in);
		size_t len;
		char *s = pbjson_dumps(j, &len);
		assert_non_null(s);
		assert_string_equal(s, cases[i].out);
		assert_int_equal(len, strlen(cases[i].out));
		json_t *back = json_loads(s, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
		assert_true(json_equal(j, back));
		json_decref(back);
		free(s);
		json_decref(j);
	}
	assert_null(pbjson_dumps(NULL, NULL));
}

/* ------------------------------------------------------------------ out of memory */

static void test_decode_oom(void **state)
{
	struct fixture *fx = *state;
	json_t *j = parse("{\"name\": \"n\", \"context\": {\"a\": [1, {\"b\": \"c\"}, null]},"
	                  " \"tags\": [\"t\", \"u\"], \"initiator\": \"i\"}");
	json_t *m = parse("{\"code\": \"c\", \"metadata\": {\"a\": \"1\", \"b\": \"2\"}}");
	int ok = 0;

	for (long n = 1; n < 200 && !ok; n++) {
		ProtobufCMessage *out = NULL;
		struct track *t = &fx->track;
		int rc1, rc2;
		t->count = 0;
		t->fail_at = n;
		rc1 = pbjson_decode(j, &tasker__v1__create_task_request__descriptor, &fx->alloc, 0,
		                    &out, &fx->err);
		t->count = 0;
		rc2 = pbjson_decode(m, &tasker__v1__error_detail__descriptor, &fx->alloc, 0, &out,
		                    &fx->err);
		track_release(t);
		if (rc1 == 0 && rc2 == 0)
			ok = 1;
		else if ((rc1 != 0 && rc1 != TRPC_ERR_NOMEM) || (rc2 != 0 && rc2 != TRPC_ERR_NOMEM))
			fail_msg("allocation %ld failing gave %d/%d: %s", n, rc1, rc2, fx->err.msg);
	}
	assert_true(ok);
	fx->track.fail_at = 0;
	json_decref(j);
	json_decref(m);
}

static long json_fail_at, json_count;

static void *failing_malloc(size_t n)
{
	if (json_fail_at > 0 && ++json_count == json_fail_at)
		return NULL;
	return malloc(n);
}

static void test_encode_oom(void **state)
{
	Tasker__V1__Task t = TASKER__V1__TASK__INIT;
	Google__Protobuf__Timestamp created = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
	Google__Protobuf__Struct ctx = GOOGLE__PROTOBUF__STRUCT__INIT;
	Google__Protobuf__Struct__FieldsEntry e[4], *pe[4];
	Google__Protobuf__Value v[4];
	char *tags[] = {"x", "y"};
	int ok = 0;

	(void)state;
	build_struct(&ctx, e, pe, v);
	t.created_at = &created;
	t.context = &ctx;
	t.n_tags = 2;
	t.tags = tags;
	t.task_uuid = "u";
	json_set_alloc_funcs(failing_malloc, free);
	for (long n = 1; n < 200 && !ok; n++) {
		json_t *j;
		json_count = 0;
		json_fail_at = n;
		j = pbjson_encode(&t.base, PBJSON_EMIT_DEFAULTS);
		ok = j != NULL;
		json_decref(j);
	}
	json_fail_at = 0;
	json_set_alloc_funcs(malloc, free);
	assert_true(ok);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_encode_task),
	    cmocka_unit_test(test_emit_defaults),
	    cmocka_unit_test(test_camel_case),
	    cmocka_unit_test(test_encode_unknown_enum_and_specials),
	    cmocka_unit_test_setup_teardown(test_decode_create_request, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_decode_numbers, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_decode_enums, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_decode_timestamps, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_decode_map_and_bytes, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_decode_errors, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_decode_default_allocator, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_merge, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_set_text, setup, teardown),
	    cmocka_unit_test(test_dumps),
	    cmocka_unit_test_setup_teardown(test_decode_oom, setup, teardown),
	    cmocka_unit_test(test_encode_oom),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

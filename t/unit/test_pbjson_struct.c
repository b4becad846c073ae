/*
 * Unit tests of src/services/pbjson_struct.c: google.protobuf.Struct <->
 * jansson, through the wire format (a Struct is packed and unpacked
 * between the two directions).
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "services/pbjson_struct.h"

/* An arena for the tests: every block on a list, all freed at the end. */
struct block {
	struct block *next;
	max_align_t data[];
};

static struct block *blocks;

static void *arena_alloc(void *ud, size_t size)
{
	(void)ud;
	struct block *b = malloc(sizeof *b + size);
	if (b == NULL)
		return NULL;
	b->next = blocks;
	blocks = b;
	return b->data;
}

static void arena_free(void *ud, void *p)
{
	(void)ud;
	(void)p; /* freed with the arena */
}

static ProtobufCAllocator arena = {arena_alloc, arena_free, NULL};

static int arena_teardown(void **state)
{
	(void)state;
	while (blocks != NULL) {
		struct block *b = blocks;
		blocks = b->next;
		free(b);
	}
	return 0;
}

/* JSON text -> Struct -> wire -> Struct -> JSON; returns the JSON. */
static json_t *round_trip(const char *text)
{
	struct tk_err err = {0};
	json_error_t je;
	json_t *in = json_loads(text, 0, &je);
	assert_non_null(in);
	Google__Protobuf__Struct *s = pbjson_struct_from_json(&arena, in, &err);
	assert_non_null(s);
	json_decref(in);
	size_t len = google__protobuf__struct__get_packed_size(s);
	uint8_t *buf = malloc(len + 1);
	assert_non_null(buf);
	google__protobuf__struct__pack(s, buf);
	Google__Protobuf__Struct *back = google__protobuf__struct__unpack(NULL, len, buf);
	free(buf);
	assert_non_null(back);
	json_t *out = pbjson_struct_to_json(back, "test", &err);
	google__protobuf__struct__free_unpacked(back, NULL);
	assert_non_null(out);
	return out;
}

static void test_round_trip(void **state)
{
	(void)state;
	const char *text = "{\"s\": \"h\\u00e9llo\", \"n\": 42, \"neg\": -7, \"r\": 0.25, "
	                   "\"t\": true, \"f\": false, \"z\": null, \"a\": [1, \"two\", [], {}], "
	                   "\"o\": {\"deep\": {\"er\": [null]}}, \"empty\": {}}";
	json_error_t je;
	json_t *want = json_loads(text, 0, &je);
	json_t *got = round_trip(text);
	assert_true(json_equal(want, got));
	json_decref(want);
	json_decref(got);
}

static void test_integers_stay_integers(void **state)
{
	(void)state;
	json_t *got = round_trip("{\"i\": 9007199254740991, \"big\": 1e300, \"half\": 2.5}");
	assert_true(json_is_integer(json_object_get(got, "i")));
	assert_int_equal(json_integer_value(json_object_get(got, "i")), 9007199254740991LL);
	/* beyond 2^53 a double is not an exact integer: it stays a real */
	assert_true(json_is_real(json_object_get(got, "big")));
	assert_true(json_is_real(json_object_get(got, "half")));
	json_decref(got);
}

static void test_not_an_object(void **state)
{
	(void)state;
	struct tk_err err = {0};
	json_t *arr = json_array();
	assert_null(pbjson_struct_from_json(&arena, arr, &err));
	assert_int_equal(err.code, TRPC_ERR_INVALID);
	json_decref(arr);
	/* a NULL Struct is an empty object */
	json_t *o = pbjson_struct_to_json(NULL, "x", &err);
	assert_true(json_is_object(o) && json_object_size(o) == 0);
	json_decref(o);
}

static void test_refused_values(void **state)
{
	(void)state;
	struct tk_err err = {0};
	Google__Protobuf__Value v = GOOGLE__PROTOBUF__VALUE__INIT;

	assert_null(pbjson_value_to_json(&v, "context", &err)); /* no kind */
	assert_int_equal(err.code, TRPC_ERR_INVALID);
	v.kind_case = GOOGLE__PROTOBUF__VALUE__KIND_NUMBER_VALUE;
	v.number_value = NAN;
	tk_err_clear(&err);
	assert_null(pbjson_value_to_json(&v, "context", &err));
	assert_int_equal(err.code, TRPC_ERR_INVALID);
	assert_non_null(strstr(err.msg, "context"));
	v.number_value = INFINITY;
	assert_null(pbjson_value_to_json(&v, "context", &err));
}

static void test_depth_limit(void **state)
{
	(void)state;
	struct tk_err err = {0};
	json_t *root = json_object(), *cur = root;
	for (int i = 0; i < PBJSON_MAX_DEPTH + 2; i++) {
		json_t *next = json_object();
		json_object_set_new(cur, "k", next);
		cur = next;
	}
	assert_null(pbjson_struct_from_json(&arena, root, &err));
	assert_int_equal(err.code, TRPC_ERR_INVALID);
	json_decref(root);

	/* and the other way: a Struct nested beyond the limit */
	Google__Protobuf__Struct *s = arena_alloc(NULL, sizeof *s), *top = s;
	google__protobuf__struct__init(s);
	for (int i = 0; i < PBJSON_MAX_DEPTH + 2; i++) {
		Google__Protobuf__Struct__FieldsEntry *e = arena_alloc(NULL, sizeof *e);
		Google__Protobuf__Value *v = arena_alloc(NULL, sizeof *v);
		Google__Protobuf__Struct *child = arena_alloc(NULL, sizeof *child);
		google__protobuf__struct__fields_entry__init(e);
		google__protobuf__value__init(v);
		google__protobuf__struct__init(child);
		e->key = "k";
		e->value = v;
		v->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRUCT_VALUE;
		v->struct_value = child;
		s->fields = arena_alloc(NULL, sizeof *s->fields);
		s->fields[0] = e;
		s->n_fields = 1;
		s = child;
	}
	tk_err_clear(&err);
	assert_null(pbjson_struct_to_json(top, "context", &err));
	assert_int_equal(err.code, TRPC_ERR_INVALID);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_teardown(test_round_trip, arena_teardown),
	    cmocka_unit_test_teardown(test_integers_stay_integers, arena_teardown),
	    cmocka_unit_test_teardown(test_not_an_object, arena_teardown),
	    cmocka_unit_test_teardown(test_refused_values, arena_teardown),
	    cmocka_unit_test_teardown(test_depth_limit, arena_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

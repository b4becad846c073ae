/*
 * pbjson_struct: google.protobuf.Struct <-> jansson (see pbjson_struct.h).
 */
#include "config.h"

#include <math.h>
#include <string.h>

#include "services/pbjson_struct.h"

/* 2^53: doubles below this magnitude represent every integer exactly. */
#define EXACT_INT_LIMIT 9007199254740992.0

/* ------------------------------------------------------------ JSON -> proto */

static void *pb_alloc(ProtobufCAllocator *a, size_t size, struct tk_err *err)
{
	void *p = a->alloc(a->allocator_data, size);
	if (p == NULL)
		tk_err_set(err, TRPC_ERR_NOMEM, "out of memory");
	return p;
}

static char *pb_strdup(ProtobufCAllocator *a, const char *s, size_t len, struct tk_err *err)
{
	char *p = pb_alloc(a, len + 1, err);
	if (p != NULL) {
		memcpy(p, s, len);
		p[len] = '\0';
	}
	return p;
}

static Google__Protobuf__Value *value_from(ProtobufCAllocator *a, const json_t *v, int depth,
                                           struct tk_err *err);

static Google__Protobuf__Struct *struct_from(ProtobufCAllocator *a, const json_t *obj, int depth,
                                             struct tk_err *err)
{
	if (!json_is_object(obj)) {
		tk_err_set(err, TRPC_ERR_INVALID, "a JSON object is expected");
		return NULL;
	}
	if (depth > PBJSON_MAX_DEPTH) {
		tk_err_set(err, TRPC_ERR_INVALID, "JSON nested deeper than %d levels",
		           PBJSON_MAX_DEPTH);
		return NULL;
	}
	Google__Protobuf__Struct *s = pb_alloc(a, sizeof *s, err);
	if (s == NULL)
		return NULL;
	google__protobuf__struct__init(s);
	size_t n = json_object_size(obj);
	if (n == 0)
		return s;
	s->fields = pb_alloc(a, n * sizeof *s->fields, err);
	if (s->fields == NULL)
		return NULL;
	const char *key;
	json_t *val;
	json_object_foreach((json_t *)obj, key, val)
	{
		Google__Protobuf__Struct__FieldsEntry *e = pb_alloc(a, sizeof *e, err);
		if (e == NULL)
			return NULL;
		google__protobuf__struct__fields_entry__init(e);
		e->key = pb_strdup(a, key, strlen(key), err);
		e->value = e->key != NULL ? value_from(a, val, depth + 1, err) : NULL;
		if (e->value == NULL)
			return NULL;
		s->fields[s->n_fields++] = e;
	}
	return s;
}

static Google__Protobuf__ListValue *list_from(ProtobufCAllocator *a, const json_t *arr, int depth,
                                              struct tk_err *err)
{
	Google__Protobuf__ListValue *l = pb_alloc(a, sizeof *l, err);
	if (l == NULL)
		return NULL;
	google__protobuf__list_value__init(l);
	size_t n = json_array_size(arr);
	if (n == 0)
		return l;
	l->values = pb_alloc(a, n * sizeof *l->values, err);
	if (l->values == NULL)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		l->values[i] = value_from(a, json_array_get(arr, i), depth + 1, err);
		if (l->values[i] == NULL)
			return NULL;
		l->n_values++;
	}
	return l;
}

static Google__Protobuf__Value *value_from(ProtobufCAllocator *a, const json_t *v, int depth,
                                           struct tk_err *err)
{
	if (depth > PBJSON_MAX_DEPTH) {
		tk_err_set(err, TRPC_ERR_INVALID, "JSON nested deeper than %d levels",
		           PBJSON_MAX_DEPTH);
		return NULL;
	}
	Google__Protobuf__Value *pv = pb_alloc(a, sizeof *pv, err);
	if (pv == NULL)
		return NULL;
	google__protobuf__value__init(pv);
	switch (json_typeof(v)) {
	case JSON_NULL:
		pv->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_NULL_VALUE;
		pv->null_value = GOOGLE__PROTOBUF__NULL_VALUE__NULL_VALUE;
		break;
	case JSON_TRUE:
	case JSON_FALSE:
		pv->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_BOOL_VALUE;
		pv->bool_value = json_is_true(v);
		break;
	case JSON_INTEGER:
	case JSON_REAL:
		pv->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_NUMBER_VALUE;
		pv->number_value = json_number_value(v);
		break;
	case JSON_STRING:
		pv->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE;
		pv->string_value = pb_strdup(a, json_string_value(v), json_string_length(v), err);
		if (pv->string_value == NULL)
			return NULL;
		break;
	case JSON_OBJECT:
		pv->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRUCT_VALUE;
		pv->struct_value = struct_from(a, v, depth, err);
		if (pv->struct_value == NULL)
			return NULL;
		break;
	case JSON_ARRAY:
		pv->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_LIST_VALUE;
		pv->list_value = list_from(a, v, depth, err);
		if (pv->list_value == NULL)
			return NULL;
		break;
	}
	return pv;
}

Google__Protobuf__Struct *pbjson_struct_from_json(ProtobufCAllocator *a, const json_t *obj,
                                                  struct tk_err *err)
{
	return struct_from(a, obj, 0, err);
}

Google__Protobuf__Value *pbjson_value_from_json(ProtobufCAllocator *a, const json_t *v,
                                                struct tk_err *err)
{
	if (v == NULL) {
		tk_err_set(err, TRPC_ERR_INVALID, "no JSON value");
		return NULL;
	}
	return value_from(a, v, 0, err);
}

/* ------------------------------------------------------------ proto -> JSON */

static json_t *value_to(const Google__Protobuf__Value *v, const char *what, int depth,
                        struct tk_err *err);

static json_t *nomem(struct tk_err *err)
{
	tk_err_set(err, TRPC_ERR_NOMEM, "out of memory");
	return NULL;
}

static json_t *struct_to(const Google__Protobuf__Struct *s, const char *what, int depth,
                         struct tk_err *err)
{
	if (depth > PBJSON_MAX_DEPTH) {
		tk_err_set(err, TRPC_ERR_INVALID, "%s: nested deeper than %d levels", what,
		           PBJSON_MAX_DEPTH);
		return NULL;
	}
	json_t *obj = json_object();
	if (obj == NULL)
		return nomem(err);
	for (size_t i = 0; s != NULL && i < s->n_fields; i++) {
		const Google__Protobuf__Struct__FieldsEntry *e = s->fields[i];
		json_t *jv = value_to(e->value, what, depth + 1, err);
		if (jv == NULL) {
			json_decref(obj);
			return NULL;
		}
		/* A key given twice on the wire: the last one wins, as in proto3 maps. */
		if (json_object_set_new(obj, e->key != NULL ? e->key : "", jv) != 0) {
			json_decref(obj);
			return nomem(err);
		}
	}
	return obj;
}

static json_t *list_to(const Google__Protobuf__ListValue *l, const char *what, int depth,
                       struct tk_err *err)
{
	json_t *arr = json_array();
	if (arr == NULL)
		return nomem(err);
	for (size_t i = 0; l != NULL && i < l->n_values; i++) {
		json_t *jv = value_to(l->values[i], what, depth + 1, err);
		if (jv == NULL || json_array_append_new(arr, jv) != 0) {
			json_decref(arr);
			return jv == NULL ? NULL : nomem(err);
		}
	}
	return arr;
}

static json_t *number_to(double d, const char *what, struct tk_err *err)
{
	if (!isfinite(d)) {
		tk_err_set(err, TRPC_ERR_INVALID, "%s: %s is not a JSON number", what,
		           isnan(d) ? "NaN" : "an infinite value");
		return NULL;
	}
	json_t *j = (floor(d) == d && fabs(d) < EXACT_INT_LIMIT) ? json_integer((json_int_t)d)
	                                                         : json_real(d);
	return j != NULL ? j : nomem(err);
}

static json_t *value_to(const Google__Protobuf__Value *v, const char *what, int depth,
                        struct tk_err *err)
{
	json_t *j = NULL;

	if (depth > PBJSON_MAX_DEPTH) {
		tk_err_set(err, TRPC_ERR_INVALID, "%s: nested deeper than %d levels", what,
		           PBJSON_MAX_DEPTH);
		return NULL;
	}
	if (v == NULL) {
		tk_err_set(err, TRPC_ERR_INVALID, "%s: a google.protobuf.Value without a kind",
		           what);
		return NULL;
	}
	switch (v->kind_case) {
	case GOOGLE__PROTOBUF__VALUE__KIND_NULL_VALUE:
		j = json_null();
		break;
	case GOOGLE__PROTOBUF__VALUE__KIND_BOOL_VALUE:
		j = json_boolean(v->bool_value);
		break;
	case GOOGLE__PROTOBUF__VALUE__KIND_NUMBER_VALUE:
		return number_to(v->number_value, what, err);
	case GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE:
		j = json_string(v->string_value != NULL ? v->string_value : "");
		if (j == NULL) {
			tk_err_set(err, TRPC_ERR_INVALID, "%s: a string that is not UTF-8", what);
			return NULL;
		}
		return j;
	case GOOGLE__PROTOBUF__VALUE__KIND_STRUCT_VALUE:
		return struct_to(v->struct_value, what, depth, err);
	case GOOGLE__PROTOBUF__VALUE__KIND_LIST_VALUE:
		return list_to(v->list_value, what, depth, err);
	default:
		tk_err_set(err, TRPC_ERR_INVALID, "%s: a google.protobuf.Value without a kind",
		           what);
		return NULL;
	}
	return j != NULL ? j : nomem(err);
}

json_t *pbjson_struct_to_json(const Google__Protobuf__Struct *s, const char *what,
                              struct tk_err *err)
{
	return struct_to(s, what, 0, err);
}

json_t *pbjson_value_to_json(const Google__Protobuf__Value *v, const char *what, struct tk_err *err)
{
	return value_to(v, what, 0, err);
}

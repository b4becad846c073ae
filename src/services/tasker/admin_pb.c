/*
 * admin_pb: message-building helpers of the admin operations (admin_pb.h).
 */
#include "config.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "services/pbjson_struct.h"
#include "services/tasker/admin_pb.h"

void *apb_alloc(struct apb *b, size_t size)
{
	void *p = b->a->alloc(b->a->allocator_data, size > 0 ? size : 1);
	if (p != NULL)
		memset(p, 0, size);
	else
		b->oom = 1;
	return p;
}

char *apb_strdup(struct apb *b, const char *s)
{
	if (s == NULL)
		s = "";
	size_t n = strlen(s);
	char *p = apb_alloc(b, n + 1);
	if (p != NULL)
		memcpy(p, s, n + 1);
	return p;
}

void *apb_ptrs(struct apb *b, size_t n)
{
	return apb_alloc(b, (n > 0 ? n : 1) * sizeof(void *));
}

static Google__Protobuf__Timestamp *make_time(struct apb *b, int64_t s, int32_t ns)
{
	Google__Protobuf__Timestamp *t = apb_alloc(b, sizeof *t);
	if (t == NULL)
		return NULL;
	google__protobuf__timestamp__init(t);
	t->seconds = s;
	t->nanos = ns;
	return t;
}

Google__Protobuf__Timestamp *apb_time(struct apb *b, const struct adm_time *t)
{
	return t->valid ? make_time(b, t->seconds, t->nanos) : NULL;
}

Google__Protobuf__Timestamp *apb_now(struct apb *b)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return make_time(b, (int64_t)ts.tv_sec, (int32_t)ts.tv_nsec);
}

void apb_now_iso(char *buf, size_t size)
{
	struct timespec ts;
	struct tm tm;
	char day[32];
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(day, sizeof day, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf, size, "%s.%03ldZ", day, ts.tv_nsec / 1000000L);
}

Google__Protobuf__Struct *apb_struct(struct apb *b, const char *json, struct tk_err *err)
{
	json_error_t je;
	json_t *v = json_loads(json != NULL ? json : "", JSON_DECODE_ANY, &je);
	if (v == NULL) {
		tk_err_set(err, TRPC_ERR_DB, "stored JSON does not parse: %s", je.text);
		return NULL;
	}
	Google__Protobuf__Struct *s = pbjson_struct_from_json(b->a, v, err);
	json_decref(v);
	if (s == NULL && err->code == TRPC_ERR_NOMEM)
		b->oom = 1;
	return s;
}

char *apb_struct_text(const Google__Protobuf__Struct *s, const char *what, struct tk_err *err)
{
	json_t *v = pbjson_struct_to_json(s, what, err);
	if (v == NULL)
		return NULL;
	char *text = json_dumps(v, JSON_COMPACT);
	json_decref(v);
	if (text == NULL)
		tk_err_set(err, TRPC_ERR_NOMEM, "out of memory");
	return text;
}

int apb_enum_from_db(const ProtobufCEnumDescriptor *d, const char *prefix, const char *db)
{
	char name[96];
	if (db == NULL)
		return 0;
	int n = snprintf(name, sizeof name, "%s%s", prefix, db);
	if (n < 0 || (size_t)n >= sizeof name)
		return 0;
	for (char *p = name; *p; p++)
		*p = (char)toupper((unsigned char)*p);
	const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value_by_name(d, name);
	return v != NULL ? v->value : 0;
}

int apb_enum_to_db(const ProtobufCEnumDescriptor *d, const char *prefix, int value, char *buf,
                   size_t size)
{
	const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(d, value);
	size_t plen = strlen(prefix);
	if (value == 0 || v == NULL || strncmp(v->name, prefix, plen) != 0)
		return -1;
	snprintf(buf, size, "%s", v->name + plen);
	for (char *p = buf; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	return 0;
}

int apb_nomem(struct svc_result *res)
{
	return svc_fail(res, TRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
}

int apb_finish(const struct apb *b, int built, const struct tk_err *err, struct svc_result *res)
{
	if (built == 0 && !b->oom)
		return 0;
	if (!b->oom && err != NULL && err->code != 0)
		return svc_fail_err(res, err);
	return apb_nomem(res);
}

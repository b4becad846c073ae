/*
 * pbjson: the proto3 JSON mapping over protobuf-c descriptors (pbjson.h).
 *
 * Field storage in a protobuf-c message, as the descriptors describe it:
 *   repeated     size_t count at quantifier_offset, array pointer at offset
 *   oneof member uint32_t case at quantifier_offset (the member's id when
 *                set), the value in a union at offset
 *   proto2 optional scalar: protobuf_c_boolean has_ at quantifier_offset
 *   everything else: the value at offset (message fields are pointers,
 *                NULL when absent)
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "google/protobuf/struct.pb-c.h"
#include "google/protobuf/timestamp.pb-c.h"
#include "web/pbjson.h"

#define NAME_MAX_LEN 128 /* longest field name we convert to a json name */

/* ================================================================== storage helpers */

static void *member(const void *msg, unsigned offset)
{
	return (char *)(uintptr_t)msg + offset;
}

static size_t value_size(ProtobufCType t)
{
	switch (t) {
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64:
	case PROTOBUF_C_TYPE_DOUBLE:
		return 8;
	case PROTOBUF_C_TYPE_BOOL:
		return sizeof(protobuf_c_boolean);
	case PROTOBUF_C_TYPE_STRING:
		return sizeof(char *);
	case PROTOBUF_C_TYPE_BYTES:
		return sizeof(ProtobufCBinaryData);
	case PROTOBUF_C_TYPE_MESSAGE:
		return sizeof(ProtobufCMessage *);
	default: /* the 32-bit integers, float and enum */
		return 4;
	}
}

static int is_oneof(const ProtobufCFieldDescriptor *f)
{
	return (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) != 0;
}

/* A map field: protoc turns map<K, V> x into repeated XEntry {K key = 1; V value = 2;}. */
int pbjson_is_map(const ProtobufCFieldDescriptor *f)
{
	const ProtobufCMessageDescriptor *e = f->descriptor;
	size_t n;

	if (f->label != PROTOBUF_C_LABEL_REPEATED || f->type != PROTOBUF_C_TYPE_MESSAGE ||
	    e == NULL)
		return 0;
	n = strlen(e->name);
	return e->n_fields == 2 && e->fields[0].id == 1 && strcmp(e->fields[0].name, "key") == 0 &&
	       e->fields[1].id == 2 && strcmp(e->fields[1].name, "value") == 0 && n > 5 &&
	       strcmp(e->name + n - 5, "Entry") == 0;
}

/* lowerCamelCase json name of a proto field name (protoc's ToJsonName). */
static void json_name(const char *name, char *out, size_t size)
{
	size_t o = 0;
	int upper = 0;

	for (const char *p = name; *p != '\0' && o + 1 < size; p++) {
		if (*p == '_') {
			upper = 1;
			continue;
		}
		out[o++] = upper ? (char)toupper((unsigned char)*p) : *p;
		upper = 0;
	}
	out[o] = '\0';
}

const ProtobufCFieldDescriptor *pbjson_find_field(const ProtobufCMessageDescriptor *d,
                                                  const char *name)
{
	const ProtobufCFieldDescriptor *f =
	    protobuf_c_message_descriptor_get_field_by_name(d, name);
	char camel[NAME_MAX_LEN];

	if (f != NULL)
		return f;
	for (unsigned i = 0; i < d->n_fields; i++) {
		json_name(d->fields[i].name, camel, sizeof(camel));
		if (strcmp(camel, name) == 0)
			return &d->fields[i];
	}
	return NULL;
}

/* ================================================================== base64 */

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Standard alphabet, padded. Returns a malloc'd string or NULL. */
static char *b64_encode(const uint8_t *in, size_t len)
{
	char *out = malloc((len + 2) / 3 * 4 + 1), *o = out;

	if (out == NULL)
		return NULL;
	for (size_t i = 0; i < len; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16;
		if (i + 1 < len)
			v |= (uint32_t)in[i + 1] << 8;
		if (i + 2 < len)
			v |= in[i + 2];
		*o++ = B64[v >> 18 & 63];
		*o++ = B64[v >> 12 & 63];
		*o++ = i + 1 < len ? B64[v >> 6 & 63] : '=';
		*o++ = i + 2 < len ? B64[v & 63] : '=';
	}
	*o = '\0';
	return out;
}

static int b64_digit(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+' || c == '-')
		return 62;
	if (c == '/' || c == '_')
		return 63;
	return -1;
}

/* Standard or URL-safe, padded or not, into out (room for len * 3 / 4 + 3
 * bytes). Returns the decoded length, or -1 when s is not base64. */
static long b64_decode(const char *s, size_t len, uint8_t *out)
{
	uint32_t acc = 0;
	long n = 0;
	int bits = 0;

	while (len > 0 && s[len - 1] == '=')
		len--;
	if (len % 4 == 1)
		return -1;
	for (size_t i = 0; i < len; i++) {
		int v = b64_digit(s[i]);
		if (v < 0)
			return -1;
		acc = acc << 6 | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[n++] = (uint8_t)(acc >> bits);
		}
	}
	return n;
}

/* ================================================================== calendar */

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	unsigned yoe = (unsigned)(y - era * 400);
	unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t)doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
	z += 719468;
	int64_t era = (z >= 0 ? z : z - 146096) / 146097;
	unsigned doe = (unsigned)(z - era * 146097);
	unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	unsigned mp = (5 * doy + 2) / 153;

	*d = doy - (153 * mp + 2) / 5 + 1;
	*m = mp < 10 ? mp + 3 : mp - 9;
	*y = (int64_t)yoe + era * 400 + (*m <= 2);
}

/* 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z, the range of the mapping. */
#define TS_MIN_SECONDS (-62135596800LL)
#define TS_MAX_SECONDS 253402300799LL

static int format_timestamp(int64_t seconds, int32_t nanos, char *buf, size_t size)
{
	int64_t days = seconds / 86400, rem = seconds % 86400, y;
	unsigned m, d;
	char frac[16] = "";

	if (rem < 0)
		rem += 86400, days--;
	civil_from_days(days, &y, &m, &d);
	if (nanos < 0 || nanos > 999999999)
		nanos = 0;
	if (nanos == 0)
		frac[0] = '\0';
	else if (nanos % 1000000 == 0)
		snprintf(frac, sizeof(frac), ".%03d", nanos / 1000000);
	else if (nanos % 1000 == 0)
		snprintf(frac, sizeof(frac), ".%06d", nanos / 1000);
	else
		snprintf(frac, sizeof(frac), ".%09d", nanos);
	return snprintf(buf, size, "%04" PRId64 "-%02u-%02uT%02d:%02d:%02d%sZ", y, m, d,
	                (int)(rem / 3600), (int)(rem / 60 % 60), (int)(rem % 60), frac);
}

static int digits(const char **p, int n, int *out)
{
	int v = 0;

	for (int i = 0; i < n; i++, (*p)++) {
		if (!isdigit((unsigned char)**p))
			return -1;
		v = v * 10 + (**p - '0');
	}
	*out = v;
	return 0;
}

/* RFC 3339: YYYY-MM-DDTHH:MM:SS[.f{1,9}](Z|+HH:MM|-HH:MM). Returns 0 or -1. */
static int parse_timestamp(const char *s, int64_t *seconds, int32_t *nanos)
{
	static const unsigned mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	int y, mo, d, h, mi, sec, oh = 0, om = 0, ns = 0, sign = 0;
	const char *p = s;

	if (digits(&p, 4, &y) || *p++ != '-' || digits(&p, 2, &mo) || *p++ != '-' ||
	    digits(&p, 2, &d) || (*p != 'T' && *p != 't' && *p != ' '))
		return -1;
	p++;
	if (digits(&p, 2, &h) || *p++ != ':' || digits(&p, 2, &mi) || *p++ != ':' ||
	    digits(&p, 2, &sec))
		return -1;
	if (*p == '.') {
		int n = 0;
		p++;
		while (isdigit((unsigned char)*p) && n < 9)
			ns = ns * 10 + (*p++ - '0'), n++;
		if (n == 0 || isdigit((unsigned char)*p))
			return -1;
		while (n++ < 9)
			ns *= 10;
	}
	if (*p == 'Z' || *p == 'z') {
		p++;
	} else if (*p == '+' || *p == '-') {
		sign = *p++ == '-' ? -1 : 1;
		if (digits(&p, 2, &oh) || *p++ != ':' || digits(&p, 2, &om) || oh > 23 || om > 59)
			return -1;
	} else {
		return -1;
	}
	if (*p != '\0' || y < 1 || mo < 1 || mo > 12 || h > 23 || mi > 59 || sec > 59)
		return -1;
	unsigned dim = mdays[mo - 1] + (mo == 2 && (y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)));
	if (d < 1 || (unsigned)d > dim)
		return -1;
	*seconds = days_from_civil(y, (unsigned)mo, (unsigned)d) * 86400 + h * 3600 + mi * 60 +
	           sec - sign * (oh * 3600 + om * 60);
	*nanos = ns;
	return *seconds < TS_MIN_SECONDS || *seconds > TS_MAX_SECONDS ? -1 : 0;
}

/* ================================================================== output */

static json_t *encode_message(const ProtobufCMessage *m, unsigned flags);

/* A JSON string of s; bytes that are not UTF-8 become U+FFFD (json_string
 * refuses them, and a response must stay valid JSON). */
static json_t *string_json(const char *s)
{
	json_t *j;
	size_t len;
	char *clean, *o;

	if (s == NULL)
		s = "";
	if ((j = json_string(s)) != NULL)
		return j;
	len = strlen(s);
	if ((clean = malloc(len * 3 + 1)) == NULL)
		return NULL;
	o = clean;
	for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
		/* Keep ASCII; anything else is replaced (a conservative repair). */
		if (*p < 0x80) {
			*o++ = (char)*p;
		} else {
			memcpy(o, "\xEF\xBF\xBD", 3);
			o += 3;
		}
	}
	*o = '\0';
	j = json_string(clean);
	free(clean);
	return j;
}

static json_t *double_json(double v)
{
	if (isnan(v))
		return json_string("NaN");
	if (isinf(v))
		return json_string(v > 0 ? "Infinity" : "-Infinity");
	return json_real(v);
}

static json_t *timestamp_json(const Google__Protobuf__Timestamp *ts)
{
	char buf[48];

	format_timestamp(ts->seconds, ts->nanos, buf, sizeof(buf));
	return json_string(buf);
}

static json_t *wkt_value_json(const Google__Protobuf__Value *v);

static json_t *struct_json(const Google__Protobuf__Struct *s)
{
	json_t *o = json_object();

	for (size_t i = 0; o != NULL && s != NULL && i < s->n_fields; i++) {
		const Google__Protobuf__Struct__FieldsEntry *e = s->fields[i];
		if (e == NULL || e->key == NULL)
			continue;
		if (json_object_set_new(o, e->key, wkt_value_json(e->value)) != 0) {
			json_decref(o);
			return NULL;
		}
	}
	return o;
}

static json_t *list_json(const Google__Protobuf__ListValue *l)
{
	json_t *a = json_array();

	for (size_t i = 0; a != NULL && l != NULL && i < l->n_values; i++)
		if (json_array_append_new(a, wkt_value_json(l->values[i])) != 0) {
			json_decref(a);
			return NULL;
		}
	return a;
}

static json_t *wkt_value_json(const Google__Protobuf__Value *v)
{
	if (v == NULL)
		return json_null();
	switch (v->kind_case) {
	case GOOGLE__PROTOBUF__VALUE__KIND_NUMBER_VALUE:
		/* A Value holds JSON numbers as doubles: give integral ones back
		 * as integers ({"n": 1} stays 1, not 1.0), while exact. */
		if (fabs(v->number_value) < 9007199254740992.0 &&
		    v->number_value == floor(v->number_value))
			return json_integer((json_int_t)v->number_value);
		return double_json(v->number_value);
	case GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE:
		return string_json(v->string_value);
	case GOOGLE__PROTOBUF__VALUE__KIND_BOOL_VALUE:
		return json_boolean(v->bool_value);
	case GOOGLE__PROTOBUF__VALUE__KIND_STRUCT_VALUE:
		return struct_json(v->struct_value);
	case GOOGLE__PROTOBUF__VALUE__KIND_LIST_VALUE:
		return list_json(v->list_value);
	default: /* null_value, or no kind */
		return json_null();
	}
}

/* One value of field f stored at p (an element, for repeated fields). */
static json_t *value_json(const ProtobufCFieldDescriptor *f, const void *p, unsigned flags)
{
	char buf[32];

	switch (f->type) {
	case PROTOBUF_C_TYPE_INT32:
	case PROTOBUF_C_TYPE_SINT32:
	case PROTOBUF_C_TYPE_SFIXED32:
		return json_integer(*(const int32_t *)p);
	case PROTOBUF_C_TYPE_UINT32:
	case PROTOBUF_C_TYPE_FIXED32:
		return json_integer(*(const uint32_t *)p);
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
		snprintf(buf, sizeof(buf), "%" PRId64, *(const int64_t *)p);
		return json_string(buf);
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64:
		snprintf(buf, sizeof(buf), "%" PRIu64, *(const uint64_t *)p);
		return json_string(buf);
	case PROTOBUF_C_TYPE_FLOAT:
		return double_json(*(const float *)p);
	case PROTOBUF_C_TYPE_DOUBLE:
		return double_json(*(const double *)p);
	case PROTOBUF_C_TYPE_BOOL:
		return json_boolean(*(const protobuf_c_boolean *)p);
	case PROTOBUF_C_TYPE_ENUM: {
		int v = *(const int *)p;
		const ProtobufCEnumValue *ev;
		if (f->descriptor == &google__protobuf__null_value__descriptor)
			return json_null();
		ev = protobuf_c_enum_descriptor_get_value(f->descriptor, v);
		return ev != NULL ? json_string(ev->name) : json_integer(v);
	}
	case PROTOBUF_C_TYPE_STRING:
		return string_json(*(char *const *)p);
	case PROTOBUF_C_TYPE_BYTES: {
		const ProtobufCBinaryData *b = p;
		char *s = b64_encode(b->data, b->len);
		json_t *j = s != NULL ? json_string(s) : NULL;
		free(s);
		return j;
	}
	case PROTOBUF_C_TYPE_MESSAGE: {
		const ProtobufCMessage *sub = *(ProtobufCMessage *const *)p;
		if (sub == NULL) /* a NULL element of a repeated field: what it stands for */
			return f->descriptor == &google__protobuf__value__descriptor
			           ? json_null()
			           : json_object();
		return encode_message(sub, flags);
	}
	}
	return NULL;
}

/* Whether field f of m is written. */
static int is_written(const ProtobufCMessage *m, const ProtobufCFieldDescriptor *f, unsigned flags)
{
	const void *p = member(m, f->offset);
	static const uint8_t zero[sizeof(ProtobufCBinaryData)];

	if (f->label == PROTOBUF_C_LABEL_REPEATED)
		return *(const size_t *)member(m, f->quantifier_offset) > 0 ||
		       (flags & PBJSON_EMIT_DEFAULTS);
	if (is_oneof(f))
		return *(const uint32_t *)member(m, f->quantifier_offset) == f->id;
	if (f->type == PROTOBUF_C_TYPE_MESSAGE)
		return *(void *const *)p != NULL;
	if (f->label == PROTOBUF_C_LABEL_REQUIRED)
		return 1;
	if (f->label == PROTOBUF_C_LABEL_OPTIONAL) { /* proto2 */
		if (f->type == PROTOBUF_C_TYPE_STRING)
			return *(char *const *)p != NULL;
		return *(const protobuf_c_boolean *)member(m, f->quantifier_offset);
	}
	if (flags & PBJSON_EMIT_DEFAULTS)
		return 1;
	if (f->type == PROTOBUF_C_TYPE_STRING)
		return *(char *const *)p != NULL && **(char *const *)p != '\0';
	if (f->type == PROTOBUF_C_TYPE_BYTES)
		return ((const ProtobufCBinaryData *)p)->len > 0;
	return memcmp(p, zero, value_size(f->type)) != 0;
}

/* The text of a map key (keys are strings, integers or bools). */
static void map_key_text(const ProtobufCFieldDescriptor *kf, const void *p, char *buf, size_t size)
{
	json_t *k;

	if (kf->type == PROTOBUF_C_TYPE_STRING) {
		const char *s = *(char *const *)p;
		snprintf(buf, size, "%s", s != NULL ? s : "");
		return;
	}
	if (kf->type == PROTOBUF_C_TYPE_BOOL) {
		snprintf(buf, size, "%s", *(const protobuf_c_boolean *)p ? "true" : "false");
		return;
	}
	k = value_json(kf, p, 0);
	if (json_is_string(k))
		snprintf(buf, size, "%s", json_string_value(k));
	else
		snprintf(buf, size, "%" JSON_INTEGER_FORMAT, json_integer_value(k));
	json_decref(k);
}

static json_t *map_json(const ProtobufCFieldDescriptor *f, const ProtobufCMessage *m,
                        unsigned flags)
{
	size_t n = *(const size_t *)member(m, f->quantifier_offset);
	ProtobufCMessage *const *entries = *(ProtobufCMessage *const **)member(m, f->offset);
	const ProtobufCMessageDescriptor *ed = f->descriptor;
	json_t *o = json_object();
	char key[512];

	for (size_t i = 0; o != NULL && i < n; i++) {
		const ProtobufCMessage *e = entries[i];
		if (e == NULL)
			continue;
		map_key_text(&ed->fields[0], member(e, ed->fields[0].offset), key, sizeof(key));
		if (json_object_set_new(
		        o, key,
		        value_json(&ed->fields[1], member(e, ed->fields[1].offset), flags)) != 0) {
			json_decref(o);
			return NULL;
		}
	}
	return o;
}

static json_t *repeated_json(const ProtobufCFieldDescriptor *f, const ProtobufCMessage *m,
                             unsigned flags)
{
	size_t n = *(const size_t *)member(m, f->quantifier_offset), size = value_size(f->type);
	const char *arr = *(char *const *)member(m, f->offset);
	json_t *a = json_array();

	for (size_t i = 0; a != NULL && i < n; i++)
		if (json_array_append_new(a, value_json(f, arr + i * size, flags)) != 0) {
			json_decref(a);
			return NULL;
		}
	return a;
}

static json_t *encode_message(const ProtobufCMessage *m, unsigned flags)
{
	const ProtobufCMessageDescriptor *d = m->descriptor;
	char camel[NAME_MAX_LEN];
	json_t *o;

	if (d == &google__protobuf__timestamp__descriptor)
		return timestamp_json((const Google__Protobuf__Timestamp *)m);
	if (d == &google__protobuf__struct__descriptor)
		return struct_json((const Google__Protobuf__Struct *)m);
	if (d == &google__protobuf__value__descriptor)
		return wkt_value_json((const Google__Protobuf__Value *)m);
	if (d == &google__protobuf__list_value__descriptor)
		return list_json((const Google__Protobuf__ListValue *)m);
	if ((o = json_object()) == NULL)
		return NULL;
	for (unsigned i = 0; i < d->n_fields; i++) {
		const ProtobufCFieldDescriptor *f = &d->fields[i];
		const char *key = f->name;
		json_t *v;

		if (!is_written(m, f, flags))
			continue;
		if (pbjson_is_map(f))
			v = map_json(f, m, flags);
		else if (f->label == PROTOBUF_C_LABEL_REPEATED)
			v = repeated_json(f, m, flags);
		else
			v = value_json(f, member(m, f->offset), flags);
		if (flags & PBJSON_CAMEL_CASE) {
			json_name(f->name, camel, sizeof(camel));
			key = camel;
		}
		if (v == NULL || json_object_set_new(o, key, v) != 0) {
			json_decref(o);
			return NULL;
		}
	}
	return o;
}

json_t *pbjson_encode(const ProtobufCMessage *msg, unsigned flags)
{
	return msg != NULL ? encode_message(msg, flags) : NULL;
}

/* ================================================================== text */

struct sbuf {
	char *p;
	size_t len, cap;
	int oom;
};

static void sb_put(struct sbuf *b, const char *s, size_t n)
{
	if (b->oom)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		char *p;
		while (cap < b->len + n + 1)
			cap *= 2;
		if ((p = realloc(b->p, cap)) == NULL) {
			b->oom = 1;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void sb_str(struct sbuf *b, const char *s)
{
	sb_put(b, s, strlen(s));
}

static void dump_string(struct sbuf *b, const char *s, size_t n)
{
	size_t run = 0;
	char esc[8];

	sb_put(b, "\"", 1);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		const char *e = NULL;
		switch (c) {
		case '"':
			e = "\\\"";
			break;
		case '\\':
			e = "\\\\";
			break;
		case '\n':
			e = "\\n";
			break;
		case '\r':
			e = "\\r";
			break;
		case '\t':
			e = "\\t";
			break;
		case '\b':
			e = "\\b";
			break;
		case '\f':
			e = "\\f";
			break;
		default:
			if (c < 0x20 || c == 0x7f) {
				snprintf(esc, sizeof(esc), "\\u%04x", c);
				e = esc;
			}
		}
		if (e == NULL) {
			run++;
			continue;
		}
		sb_put(b, s + i - run, run);
		run = 0;
		sb_str(b, e);
	}
	sb_put(b, s + n - run, run);
	sb_put(b, "\"", 1);
}

/*
 * The shortest digits of a finite v that read back as v, written as
 * Python's repr() does: positional for exponents -4..15 (with ".0" on
 * integral values, so that they stay visibly floating point), else
 * scientific ("1e+300", "5e-324").
 */
static void dump_real(struct sbuf *b, double v)
{
	char sci[40], out[400];
	int prec, exp;

	for (prec = 0; prec < 17; prec++) {
		snprintf(sci, sizeof(sci), "%.*e", prec, v);
		if (strtod(sci, NULL) == v)
			break;
	}
	exp = atoi(strchr(sci, 'e') + 1);
	if (exp < -4 || exp >= 16) {
		/* %.0e never has a point; mantissa digits are already minimal */
		sb_str(b, sci);
		return;
	}
	snprintf(out, sizeof(out), "%.*f", prec - exp > 0 ? prec - exp : 0, v);
	if (strchr(out, '.') == NULL)
		strcat(out, ".0");
	sb_str(b, out);
}

static void dump_value(struct sbuf *b, const json_t *v)
{
	char buf[32];

	switch (json_typeof(v)) {
	case JSON_OBJECT: {
		const char *key;
		json_t *val;
		int first = 1;
		sb_put(b, "{", 1);
		json_object_foreach((json_t *)(uintptr_t)v, key, val)
		{
			if (!first)
				sb_put(b, ",", 1);
			first = 0;
			dump_string(b, key, strlen(key));
			sb_put(b, ":", 1);
			dump_value(b, val);
		}
		sb_put(b, "}", 1);
		break;
	}
	case JSON_ARRAY:
		sb_put(b, "[", 1);
		for (size_t i = 0; i < json_array_size(v); i++) {
			if (i > 0)
				sb_put(b, ",", 1);
			dump_value(b, json_array_get(v, i));
		}
		sb_put(b, "]", 1);
		break;
	case JSON_STRING:
		dump_string(b, json_string_value(v), json_string_length(v));
		break;
	case JSON_INTEGER:
		snprintf(buf, sizeof(buf), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
		sb_str(b, buf);
		break;
	case JSON_REAL:
		dump_real(b, json_real_value(v));
		break;
	case JSON_TRUE:
		sb_str(b, "true");
		break;
	case JSON_FALSE:
		sb_str(b, "false");
		break;
	default:
		sb_str(b, "null");
	}
}

char *pbjson_dumps(const json_t *v, size_t *len)
{
	struct sbuf b = {0};

	if (v == NULL)
		return NULL;
	dump_value(&b, v);
	if (b.oom || b.p == NULL) {
		free(b.p);
		return NULL;
	}
	if (len != NULL)
		*len = b.len;
	return b.p;
}

/* ================================================================== input */

struct dec {
	ProtobufCAllocator *alloc;
	unsigned flags;
	struct tk_err *err;
	char path[256]; /* the field being decoded, for messages */
};

static int dec_fail(struct dec *d, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int dec_fail(struct dec *d, int code, const char *fmt, ...)
{
	char what[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	if (d->path[0] != '\0')
		return tk_err_set(d->err, code, "field \"%s\": %s", d->path, what);
	return tk_err_set(d->err, code, "%s", what);
}

static int dec_nomem(struct dec *d)
{
	return tk_err_set(d->err, TRPC_ERR_NOMEM, "out of memory");
}

static void *dec_alloc(struct dec *d, size_t n)
{
	void *p;

	if (n == 0)
		n = 1;
	p = d->alloc != NULL ? d->alloc->alloc(d->alloc->allocator_data, n) : malloc(n);
	if (p != NULL)
		memset(p, 0, n);
	return p;
}

static char *dec_strndup(struct dec *d, const char *s, size_t n)
{
	char *p = dec_alloc(d, n + 1);

	if (p != NULL)
		memcpy(p, s, n);
	return p;
}

static ProtobufCMessage *dec_new_message(struct dec *d, const ProtobufCMessageDescriptor *md)
{
	ProtobufCMessage *m = dec_alloc(d, md->sizeof_message);

	if (m != NULL)
		protobuf_c_message_init(md, m);
	return m;
}

/* Appends ".name" or "[i]" to the path; returns the old length for path_pop. */
static size_t path_push(struct dec *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static size_t path_push(struct dec *d, const char *fmt, ...)
{
	size_t old = strlen(d->path);
	va_list ap;

	va_start(ap, fmt);
	if (old < sizeof(d->path))
		vsnprintf(d->path + old, sizeof(d->path) - old, fmt, ap);
	va_end(ap);
	return old;
}

static void path_pop(struct dec *d, size_t old)
{
	d->path[old] = '\0';
}

static const char *type_name(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT:
		return "an object";
	case JSON_ARRAY:
		return "an array";
	case JSON_STRING:
		return "a string";
	case JSON_INTEGER:
	case JSON_REAL:
		return "a number";
	case JSON_TRUE:
	case JSON_FALSE:
		return "a boolean";
	default:
		return "null";
	}
}

/* An integer in [min, max] from a JSON number or a decimal string. */
static int get_int(struct dec *d, const json_t *v, int64_t min, int64_t max, int64_t *out)
{
	if (json_is_integer(v)) {
		*out = json_integer_value(v);
	} else if (json_is_real(v)) {
		double x = json_real_value(v);
		if (x != floor(x) || x < -9223372036854775808.0 || x >= 9223372036854775808.0)
			return dec_fail(d, TRPC_ERR_INVALID, "%.17g is not an integer", x);
		*out = (int64_t)x;
	} else if (json_is_string(v)) {
		const char *s = json_string_value(v);
		char *end;
		errno = 0;
		long long x = strtoll(s, &end, 10);
		if (*s == '\0' || isspace((unsigned char)*s) || *end != '\0' || errno != 0)
			return dec_fail(d, TRPC_ERR_INVALID, "\"%.64s\" is not an integer", s);
		*out = x;
	} else {
		return dec_fail(d, TRPC_ERR_INVALID, "expected an integer, got %s", type_name(v));
	}
	if (*out < min || *out > max)
		return dec_fail(d, TRPC_ERR_INVALID, "%" PRId64 " is out of range", *out);
	return 0;
}

static int get_uint64(struct dec *d, const json_t *v, uint64_t max, uint64_t *out)
{
	if (json_is_string(v)) {
		const char *s = json_string_value(v);
		char *end;
		errno = 0;
		unsigned long long x = strtoull(s, &end, 10);
		if (!isdigit((unsigned char)*s) || *end != '\0' || errno != 0)
			return dec_fail(d, TRPC_ERR_INVALID, "\"%.64s\" is not an unsigned integer",
			                s);
		*out = x;
	} else {
		int64_t x;
		int rc = get_int(d, v, 0, INT64_MAX, &x);
		if (rc != 0)
			return rc;
		*out = (uint64_t)x;
	}
	if (*out > max)
		return dec_fail(d, TRPC_ERR_INVALID, "%" PRIu64 " is out of range", *out);
	return 0;
}

static int get_double(struct dec *d, const json_t *v, double *out)
{
	if (json_is_number(v)) {
		*out = json_number_value(v);
		return 0;
	}
	if (json_is_string(v)) {
		const char *s = json_string_value(v);
		char *end;
		if (strcmp(s, "NaN") == 0)
			*out = NAN;
		else if (strcmp(s, "Infinity") == 0)
			*out = INFINITY;
		else if (strcmp(s, "-Infinity") == 0)
			*out = -INFINITY;
		else if (*s == '\0' || isspace((unsigned char)*s) ||
		         (*out = strtod(s, &end), *end != '\0') || !isfinite(*out))
			return dec_fail(d, TRPC_ERR_INVALID, "\"%.64s\" is not a number", s);
		return 0;
	}
	return dec_fail(d, TRPC_ERR_INVALID, "expected a number, got %s", type_name(v));
}

/* The enum value named s: exact, or (lenient) the name without the enum's
 * UPPER_SNAKE prefix, in any case. */
static const ProtobufCEnumValue *find_enum(const ProtobufCEnumDescriptor *ed, const char *s,
                                           unsigned flags)
{
	const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value_by_name(ed, s);
	char prefix[128];
	size_t o = 0, plen;

	if (ev != NULL || !(flags & PBJSON_LENIENT_ENUMS))
		return ev;
	for (const char *p = ed->short_name; *p != '\0' && o + 3 < sizeof(prefix); p++) {
		if (isupper((unsigned char)*p) && p != ed->short_name)
			prefix[o++] = '_';
		prefix[o++] = (char)toupper((unsigned char)*p);
	}
	prefix[o++] = '_';
	prefix[o] = '\0';
	plen = o;
	for (unsigned i = 0; i < ed->n_values; i++) {
		const char *name = ed->values[i].name;
		if (strncmp(name, prefix, plen) == 0 && strcasecmp(name + plen, s) == 0)
			return &ed->values[i];
		if (strcasecmp(name, s) == 0)
			return &ed->values[i];
	}
	return NULL;
}

static int decode_message(struct dec *d, const json_t *in, ProtobufCMessage *m);

/* One value of field f (an element, for repeated fields) into p. */
static int decode_value(struct dec *d, const ProtobufCFieldDescriptor *f, const json_t *v, void *p)
{
	int64_t i;
	uint64_t u;
	double x;
	int rc = 0;

	switch (f->type) {
	case PROTOBUF_C_TYPE_INT32:
	case PROTOBUF_C_TYPE_SINT32:
	case PROTOBUF_C_TYPE_SFIXED32:
		if ((rc = get_int(d, v, INT32_MIN, INT32_MAX, &i)) == 0)
			*(int32_t *)p = (int32_t)i;
		return rc;
	case PROTOBUF_C_TYPE_UINT32:
	case PROTOBUF_C_TYPE_FIXED32:
		if ((rc = get_uint64(d, v, UINT32_MAX, &u)) == 0)
			*(uint32_t *)p = (uint32_t)u;
		return rc;
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
		if ((rc = get_int(d, v, INT64_MIN, INT64_MAX, &i)) == 0)
			*(int64_t *)p = i;
		return rc;
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64:
		if ((rc = get_uint64(d, v, UINT64_MAX, &u)) == 0)
			*(uint64_t *)p = u;
		return rc;
	case PROTOBUF_C_TYPE_FLOAT:
		if ((rc = get_double(d, v, &x)) != 0)
			return rc;
		if (isfinite(x) && fabs(x) > FLT_MAX)
			return dec_fail(d, TRPC_ERR_INVALID, "%.17g is out of range", x);
		*(float *)p = (float)x;
		return 0;
	case PROTOBUF_C_TYPE_DOUBLE:
		if ((rc = get_double(d, v, &x)) == 0)
			*(double *)p = x;
		return rc;
	case PROTOBUF_C_TYPE_BOOL:
		if (!json_is_boolean(v))
			return dec_fail(d, TRPC_ERR_INVALID, "expected true or false, got %s",
			                type_name(v));
		*(protobuf_c_boolean *)p = json_is_true(v);
		return 0;
	case PROTOBUF_C_TYPE_ENUM: {
		const ProtobufCEnumDescriptor *ed = f->descriptor;
		const ProtobufCEnumValue *ev = NULL;
		if (ed == &google__protobuf__null_value__descriptor && json_is_null(v)) {
			*(int *)p = 0;
			return 0;
		}
		if (json_is_string(v))
			ev = find_enum(ed, json_string_value(v), d->flags);
		else if (json_is_integer(v) && json_integer_value(v) >= INT32_MIN &&
		         json_integer_value(v) <= INT32_MAX)
			ev = protobuf_c_enum_descriptor_get_value(ed, (int)json_integer_value(v));
		else
			return dec_fail(d, TRPC_ERR_INVALID, "expected a %s name, got %s", ed->name,
			                type_name(v));
		if (ev == NULL) {
			char shown[80];
			if (json_is_string(v))
				snprintf(shown, sizeof(shown), "\"%.64s\"", json_string_value(v));
			else
				snprintf(shown, sizeof(shown), "%" JSON_INTEGER_FORMAT,
				         json_integer_value(v));
			return dec_fail(d, TRPC_ERR_INVALID, "%s is not a value of %s", shown,
			                ed->name);
		}
		*(int *)p = ev->value;
		return 0;
	}
	case PROTOBUF_C_TYPE_STRING: {
		const char *s = json_string_value(v);
		size_t n = json_string_length(v);
		if (!json_is_string(v))
			return dec_fail(d, TRPC_ERR_INVALID, "expected a string, got %s",
			                type_name(v));
		if (memchr(s, '\0', n) != NULL)
			return dec_fail(d, TRPC_ERR_INVALID, "a NUL character is not allowed");
		if ((*(char **)p = dec_strndup(d, s, n)) == NULL)
			return dec_nomem(d);
		return 0;
	}
	case PROTOBUF_C_TYPE_BYTES: {
		ProtobufCBinaryData *b = p;
		size_t n = json_string_length(v);
		long got;
		if (!json_is_string(v))
			return dec_fail(d, TRPC_ERR_INVALID, "expected a base64 string, got %s",
			                type_name(v));
		if ((b->data = dec_alloc(d, n / 4 * 3 + 3)) == NULL)
			return dec_nomem(d);
		if ((got = b64_decode(json_string_value(v), n, b->data)) < 0)
			return dec_fail(d, TRPC_ERR_INVALID, "not valid base64");
		b->len = (size_t)got;
		return 0;
	}
	case PROTOBUF_C_TYPE_MESSAGE: {
		ProtobufCMessage **slot = p;
		if (*slot == NULL && (*slot = dec_new_message(d, f->descriptor)) == NULL)
			return dec_nomem(d);
		return decode_message(d, v, *slot);
	}
	}
	return dec_fail(d, TRPC_ERR_INVALID, "unsupported field type");
}

/* Grows the repeated field f of m by n zeroed elements; returns the first new one. */
static void *grow_repeated(struct dec *d, ProtobufCMessage *m, const ProtobufCFieldDescriptor *f,
                           size_t n)
{
	size_t *count = member(m, f->quantifier_offset), size = value_size(f->type);
	char **arr = member(m, f->offset), *grown;

	if ((grown = dec_alloc(d, (*count + n) * size)) == NULL)
		return NULL;
	if (*count > 0)
		memcpy(grown, *arr, *count * size);
	/* The old array stays with the allocator (an arena frees it with the rest). */
	if (d->alloc == NULL)
		free(*arr);
	*arr = grown;
	*count += n;
	return grown + (*count - n) * size;
}

/* Sets the map key field kf at p from the text of a JSON object key. */
static int decode_map_key(struct dec *d, const ProtobufCFieldDescriptor *kf, const char *key,
                          void *p)
{
	json_t *k;
	int rc;

	if (kf->type == PROTOBUF_C_TYPE_BOOL) {
		if (strcmp(key, "true") != 0 && strcmp(key, "false") != 0)
			return dec_fail(d, TRPC_ERR_INVALID, "map key \"%.64s\" is not a bool",
			                key);
		*(protobuf_c_boolean *)p = strcmp(key, "true") == 0;
		return 0;
	}
	if ((k = json_string(key)) == NULL)
		return dec_nomem(d);
	rc = decode_value(d, kf, k, p);
	json_decref(k);
	return rc;
}

static int decode_map(struct dec *d, const ProtobufCFieldDescriptor *f, const json_t *v,
                      ProtobufCMessage *m)
{
	const ProtobufCMessageDescriptor *ed = f->descriptor;
	ProtobufCMessage **slots;
	const char *key;
	json_t *val;
	size_t i = 0;
	int rc;

	if (!json_is_object(v))
		return dec_fail(d, TRPC_ERR_INVALID, "expected an object, got %s", type_name(v));
	if (json_object_size(v) == 0)
		return 0;
	if ((slots = grow_repeated(d, m, f, json_object_size(v))) == NULL)
		return dec_nomem(d);
	json_object_foreach((json_t *)(uintptr_t)v, key, val)
	{
		size_t old = path_push(d, "[\"%s\"]", key);
		ProtobufCMessage *e = dec_new_message(d, ed);
		if (e == NULL)
			return dec_nomem(d);
		slots[i++] = e;
		if ((rc = decode_map_key(d, &ed->fields[0], key,
		                         member(e, ed->fields[0].offset))) != 0)
			return rc;
		if (json_is_null(val) &&
		    ed->fields[1].descriptor != &google__protobuf__value__descriptor)
			return dec_fail(d, TRPC_ERR_INVALID, "a map value cannot be null");
		if ((rc = decode_value(d, &ed->fields[1], val, member(e, ed->fields[1].offset))) !=
		    0)
			return rc;
		path_pop(d, old);
	}
	return 0;
}

static int decode_repeated(struct dec *d, const ProtobufCFieldDescriptor *f, const json_t *v,
                           ProtobufCMessage *m)
{
	size_t n = json_array_size(v), size = value_size(f->type);
	char *first;
	int rc;

	if (!json_is_array(v))
		return dec_fail(d, TRPC_ERR_INVALID, "expected an array, got %s", type_name(v));
	if (n == 0)
		return 0;
	if ((first = grow_repeated(d, m, f, n)) == NULL)
		return dec_nomem(d);
	for (size_t i = 0; i < n; i++) {
		size_t old = path_push(d, "[%zu]", i);
		const json_t *e = json_array_get(v, i);
		if (json_is_null(e) && f->descriptor != &google__protobuf__value__descriptor)
			return dec_fail(d, TRPC_ERR_INVALID, "an element cannot be null");
		if ((rc = decode_value(d, f, e, first + i * size)) != 0)
			return rc;
		path_pop(d, old);
	}
	return 0;
}

/* Field f of m from v (v is not JSON null, or f is a Value). */
static int decode_field(struct dec *d, const ProtobufCFieldDescriptor *f, const json_t *v,
                        ProtobufCMessage *m)
{
	void *p = member(m, f->offset);
	int rc;

	if (pbjson_is_map(f))
		return decode_map(d, f, v, m);
	if (f->label == PROTOBUF_C_LABEL_REPEATED)
		return decode_repeated(d, f, v, m);
	if (is_oneof(f)) {
		uint32_t *which = member(m, f->quantifier_offset);
		/* Another member's bytes are in the union: start from empty. */
		if (*which != f->id)
			memset(p, 0, value_size(f->type));
		if ((rc = decode_value(d, f, v, p)) != 0)
			return rc;
		*which = f->id;
		return 0;
	}
	if ((rc = decode_value(d, f, v, p)) != 0)
		return rc;
	if (f->label == PROTOBUF_C_LABEL_OPTIONAL && f->type != PROTOBUF_C_TYPE_STRING &&
	    f->type != PROTOBUF_C_TYPE_MESSAGE)
		*(protobuf_c_boolean *)member(m, f->quantifier_offset) = 1;
	return 0;
}

/* ------------------------------------------------------------------ well-known types */

static int decode_wkt_value(struct dec *d, const json_t *in, Google__Protobuf__Value *v);

static int decode_struct(struct dec *d, const json_t *in, Google__Protobuf__Struct *s)
{
	Google__Protobuf__Struct__FieldsEntry **entries;
	const char *key;
	json_t *val;
	size_t i = 0;
	int rc;

	if (!json_is_object(in))
		return dec_fail(d, TRPC_ERR_INVALID, "expected an object, got %s", type_name(in));
	if ((entries = dec_alloc(d, json_object_size(in) * sizeof(*entries))) == NULL)
		return dec_nomem(d);
	s->fields = entries;
	s->n_fields = 0;
	json_object_foreach((json_t *)(uintptr_t)in, key, val)
	{
		Google__Protobuf__Struct__FieldsEntry *e =
		    (Google__Protobuf__Struct__FieldsEntry *)dec_new_message(
		        d, &google__protobuf__struct__fields_entry__descriptor);
		if (e == NULL || (e->key = dec_strndup(d, key, strlen(key))) == NULL ||
		    (e->value = (Google__Protobuf__Value *)dec_new_message(
		         d, &google__protobuf__value__descriptor)) == NULL)
			return dec_nomem(d);
		if ((rc = decode_wkt_value(d, val, e->value)) != 0)
			return rc;
		entries[i++] = e;
		s->n_fields = i;
	}
	return 0;
}

static int decode_list(struct dec *d, const json_t *in, Google__Protobuf__ListValue *l)
{
	size_t n = json_array_size(in);
	int rc;

	if (!json_is_array(in))
		return dec_fail(d, TRPC_ERR_INVALID, "expected an array, got %s", type_name(in));
	if ((l->values = dec_alloc(d, n * sizeof(*l->values))) == NULL)
		return dec_nomem(d);
	l->n_values = 0;
	for (size_t i = 0; i < n; i++) {
		l->values[i] = (Google__Protobuf__Value *)dec_new_message(
		    d, &google__protobuf__value__descriptor);
		if (l->values[i] == NULL)
			return dec_nomem(d);
		if ((rc = decode_wkt_value(d, json_array_get(in, i), l->values[i])) != 0)
			return rc;
		l->n_values = i + 1;
	}
	return 0;
}

static int decode_wkt_value(struct dec *d, const json_t *in, Google__Protobuf__Value *v)
{
	switch (json_typeof(in)) {
	case JSON_OBJECT:
		v->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRUCT_VALUE;
		v->struct_value = (Google__Protobuf__Struct *)dec_new_message(
		    d, &google__protobuf__struct__descriptor);
		return v->struct_value != NULL ? decode_struct(d, in, v->struct_value)
		                               : dec_nomem(d);
	case JSON_ARRAY:
		v->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_LIST_VALUE;
		v->list_value = (Google__Protobuf__ListValue *)dec_new_message(
		    d, &google__protobuf__list_value__descriptor);
		return v->list_value != NULL ? decode_list(d, in, v->list_value) : dec_nomem(d);
	case JSON_STRING:
		v->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE;
		v->string_value = dec_strndup(d, json_string_value(in), json_string_length(in));
		return v->string_value != NULL ? 0 : dec_nomem(d);
	case JSON_INTEGER:
	case JSON_REAL:
		v->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_NUMBER_VALUE;
		v->number_value = json_number_value(in);
		return 0;
	case JSON_TRUE:
	case JSON_FALSE:
		v->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_BOOL_VALUE;
		v->bool_value = json_is_true(in);
		return 0;
	default:
		v->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_NULL_VALUE;
		v->null_value = GOOGLE__PROTOBUF__NULL_VALUE__NULL_VALUE;
		return 0;
	}
}

static int decode_timestamp(struct dec *d, const json_t *in, Google__Protobuf__Timestamp *ts)
{
	int64_t s;
	int32_t ns;

	if (!json_is_string(in))
		return dec_fail(d, TRPC_ERR_INVALID,
		                "expected an RFC 3339 timestamp string, got %s", type_name(in));
	if (parse_timestamp(json_string_value(in), &s, &ns) != 0)
		return dec_fail(d, TRPC_ERR_INVALID,
		                "\"%.64s\" is not an RFC 3339 timestamp (like "
		                "2024-05-01T12:00:00Z) between years 1 and 9999",
		                json_string_value(in));
	ts->seconds = s;
	ts->nanos = ns;
	return 0;
}

/* ------------------------------------------------------------------ messages */

/* Marks f as given; returns 1 when it, or another member of its oneof, was
 * given before in the same object (JSON names and proto names are the same
 * field). Messages of more than 256 fields are not checked. */
static int field_seen(const ProtobufCMessageDescriptor *md, const ProtobufCFieldDescriptor *f,
                      uint8_t seen[32])
{
	size_t k = (size_t)(f - md->fields);

	if (k >= 256)
		return 0;
	for (size_t i = 0; is_oneof(f) && i < md->n_fields && i < 256; i++)
		if (i != k && is_oneof(&md->fields[i]) &&
		    md->fields[i].quantifier_offset == f->quantifier_offset &&
		    (seen[i / 8] & (1u << (i % 8))))
			return 1;
	if (seen[k / 8] & (1u << (k % 8)))
		return 1;
	seen[k / 8] |= (uint8_t)(1u << (k % 8));
	return 0;
}

static int decode_message(struct dec *d, const json_t *in, ProtobufCMessage *m)
{
	const ProtobufCMessageDescriptor *md = m->descriptor;
	uint8_t seen[32] = {0}; /* bit per field index: given in this object */
	const char *key;
	json_t *v;
	int rc;

	if (md == &google__protobuf__timestamp__descriptor)
		return decode_timestamp(d, in, (Google__Protobuf__Timestamp *)m);
	if (md == &google__protobuf__struct__descriptor)
		return decode_struct(d, in, (Google__Protobuf__Struct *)m);
	if (md == &google__protobuf__value__descriptor)
		return decode_wkt_value(d, in, (Google__Protobuf__Value *)m);
	if (md == &google__protobuf__list_value__descriptor)
		return decode_list(d, in, (Google__Protobuf__ListValue *)m);
	if (!json_is_object(in))
		return dec_fail(d, TRPC_ERR_INVALID, "expected an object, got %s", type_name(in));
	json_object_foreach((json_t *)(uintptr_t)in, key, v)
	{
		const ProtobufCFieldDescriptor *f = pbjson_find_field(md, key);
		size_t old;

		if (f == NULL)
			return tk_err_set(d->err, TRPC_ERR_INVALID,
			                  "unknown field \"%s%s%s\" (%s has no such field)",
			                  d->path, d->path[0] != '\0' ? "." : "", key, md->name);
		if (field_seen(md, f, seen))
			return tk_err_set(d->err, TRPC_ERR_INVALID,
			                  "field \"%s%s%s\" is given twice (or with another member "
			                  "of its oneof)",
			                  d->path, d->path[0] != '\0' ? "." : "", f->name);
		if (json_is_null(v) && !(f->type == PROTOBUF_C_TYPE_MESSAGE &&
		                         f->descriptor == &google__protobuf__value__descriptor &&
		                         f->label != PROTOBUF_C_LABEL_REPEATED))
			continue; /* null: the default value, i.e. leave it unset */
		old = path_push(d, "%s%s", d->path[0] != '\0' ? "." : "", f->name);
		if ((rc = decode_field(d, f, v, m)) != 0)
			return rc;
		path_pop(d, old);
	}
	return 0;
}

int pbjson_merge(const json_t *in, ProtobufCMessage *msg, ProtobufCAllocator *alloc, unsigned flags,
                 struct tk_err *err)
{
	struct dec d = {.alloc = alloc, .flags = flags, .err = err};

	if (in == NULL || msg == NULL)
		return tk_err_set(err, TRPC_ERR_INVALID, "no input");
	return decode_message(&d, in, msg);
}

int pbjson_decode(const json_t *in, const ProtobufCMessageDescriptor *md, ProtobufCAllocator *alloc,
                  unsigned flags, ProtobufCMessage **out, struct tk_err *err)
{
	struct dec d = {.alloc = alloc, .flags = flags, .err = err};
	ProtobufCMessage *m;
	int rc;

	if (in == NULL || md == NULL)
		return tk_err_set(err, TRPC_ERR_INVALID, "no input");
	if ((m = dec_new_message(&d, md)) == NULL)
		return dec_nomem(&d);
	if ((rc = decode_message(&d, in, m)) != 0) {
		if (alloc == NULL) /* without an arena, free what we can */
			protobuf_c_message_free_unpacked(m, NULL);
		return rc;
	}
	*out = m;
	return 0;
}

int pbjson_set_text(ProtobufCMessage *msg, const char *name, const char *text,
                    ProtobufCAllocator *alloc, unsigned flags, struct tk_err *err)
{
	struct dec d = {.alloc = alloc, .flags = flags, .err = err};
	const ProtobufCFieldDescriptor *f = pbjson_find_field(msg->descriptor, name);
	json_t *v = NULL, *arr = NULL;
	int rc;

	if (f == NULL)
		return tk_err_set(err, TRPC_ERR_NOT_FOUND, "%s has no field \"%s\"",
		                  msg->descriptor->name, name);
	path_push(&d, "%s", f->name);
	if (f->type == PROTOBUF_C_TYPE_MESSAGE &&
	    f->descriptor != &google__protobuf__timestamp__descriptor)
		return dec_fail(&d, TRPC_ERR_INVALID, "cannot be given as text");
	if (f->type == PROTOBUF_C_TYPE_BOOL) {
		if (strcmp(text, "true") == 0 || strcmp(text, "1") == 0)
			v = json_true();
		else if (strcmp(text, "false") == 0 || strcmp(text, "0") == 0)
			v = json_false();
		else
			return dec_fail(&d, TRPC_ERR_INVALID,
			                "expected true or false, got \"%.64s\"", text);
	} else if (f->type == PROTOBUF_C_TYPE_ENUM &&
	           (isdigit((unsigned char)text[0]) ||
	            (text[0] == '-' && isdigit((unsigned char)text[1])))) {
		char *end;
		errno = 0;
		long long n = strtoll(text, &end, 10);
		if (*end != '\0' || errno != 0)
			return dec_fail(&d, TRPC_ERR_INVALID, "\"%.64s\" is not a number", text);
		v = json_integer(n);
	} else if ((v = json_string(text)) == NULL) {
		return dec_fail(&d, TRPC_ERR_INVALID, "not valid UTF-8");
	}
	if (v == NULL)
		return dec_nomem(&d);
	if (f->label == PROTOBUF_C_LABEL_REPEATED) {
		if ((arr = json_array()) == NULL || json_array_append(arr, v) != 0) {
			json_decref(arr);
			json_decref(v);
			return dec_nomem(&d);
		}
	}
	rc = decode_field(&d, f, arr != NULL ? arr : v, msg);
	json_decref(arr);
	json_decref(v);
	return rc;
}

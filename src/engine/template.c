/*
 * template: YAML task templates -> struct tpl.
 *
 * Two passes. The loader (libyaml event API) builds a jansson value and is
 * the only code that knows about YAML: scalar resolution, anchors, syntax
 * error positions, limits. The validator knows only JSON: it checks every
 * known key against a row of a rule table (type, required, range), then
 * copies the values into the structs, applies environment overrides,
 * checks the dependency graph and finally writes the effective template
 * back as JSON for named_tasks.configuration.
 *
 * Ownership: everything a parse allocates belongs to the struct tpl it
 * returns, or is freed before the call returns. Errors return a negative
 * enum trpc_error code with the message in the caller's struct tk_err.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* strtod_l, newlocale */
#endif

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <locale.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <yaml.h>

#include "engine/template.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#define NAME_MAX_TEMPLATE 64     /* named_tasks.name, task_namespaces.name */
#define NAME_MAX_STEP     128    /* named_steps.name */
#define VERSION_MAX       16     /* named_tasks.version */
#define MINUTES_MAX       525600 /* lifecycle limits: a year */

#define TAG_PREFIX "tag:yaml.org,2002:"

/* ================================================================== errors */

/* Records "source: message" with TRPC_ERR_INVALID or another code. */
static int __attribute__((format(printf, 4, 5)))
fail_code(struct tk_err *err, int code, const char *src, const char *fmt, ...)
{
	char msg[sizeof(err->msg)];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return tk_err_set(err, code, "%s: %s", src, msg);
}

static int nomem(struct tk_err *err, const char *src)
{
	return fail_code(err, TRPC_ERR_NOMEM, src, "out of memory");
}

/* ================================================================== YAML -> JSON */

/* The text of a plain scalar that became a number, so that messages can
 * quote what the user wrote ("1.10", not 1.1000000000000001). */
struct numtext {
	const json_t *value;
	char *text;
};

struct anchor {
	char *name;
	json_t *value; /* own reference */
	size_t nodes;  /* nodes in value, alias expansions included */
};

/* An open sequence or mapping. */
struct frame {
	json_t *value;  /* own reference until attached to the parent */
	char *key;      /* mapping: the key whose value comes next, or NULL */
	int merge_key;  /* key is a plain "<<": its value is merged, not stored */
	json_t *merged; /* mapping: keys from merge keys, added at the end */
	char *anchor;   /* registered when the node ends, or NULL */
	size_t first_node;
	yaml_mark_t mark;
};

struct loader {
	const char *src;
	struct tk_err *err;
	yaml_parser_t parser;
	struct frame stack[TPL_MAX_DEPTH];
	size_t depth;
	json_t *root;
	int documents;
	size_t nodes;
	struct anchor *anchors;
	size_t n_anchors, cap_anchors;
	struct numtext *nums;
	size_t n_nums, cap_nums;
};

static int __attribute__((format(printf, 4, 5)))
fail_at(struct loader *ld, int code, const yaml_mark_t *mark, const char *fmt, ...)
{
	char msg[sizeof(ld->err->msg)];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return tk_err_set(ld->err, code, "%s: line %zu column %zu: %s", ld->src, mark->line + 1,
	                  mark->column + 1, msg);
}

/* An array of n elem-byte items with room for one more: array itself, or
 * array reallocated with *cap updated; NULL when out of memory (array is
 * then untouched and still owned by the caller). */
static void *grow(void *array, size_t *cap, size_t n, size_t elem)
{
	size_t ncap;
	void *p;

	if (n < *cap)
		return array;
	ncap = *cap ? *cap * 2 : 8;
	if (ncap > SIZE_MAX / elem || (p = realloc(array, ncap * elem)) == NULL)
		return NULL;
	*cap = ncap;
	return p;
}

static int on_syntax_error(struct loader *ld)
{
	const yaml_parser_t *p = &ld->parser;
	const char *problem = p->problem ? p->problem : "unknown error";

	if (p->error == YAML_MEMORY_ERROR)
		return nomem(ld->err, ld->src);
	if (p->error == YAML_READER_ERROR)
		return fail_code(ld->err, TRPC_ERR_INVALID, ld->src,
		                 "byte %zu: YAML syntax error: %s", p->problem_offset, problem);
	if (p->context != NULL)
		return fail_at(ld, TRPC_ERR_INVALID, &p->problem_mark,
		               "YAML syntax error: %s (%s at line %zu column %zu)", problem,
		               p->context, p->context_mark.line + 1, p->context_mark.column + 1);
	return fail_at(ld, TRPC_ERR_INVALID, &p->problem_mark, "YAML syntax error: %s", problem);
}

static int count_node(struct loader *ld, size_t n, const yaml_mark_t *mark)
{
	if (n > TPL_MAX_NODES - ld->nodes)
		return fail_at(ld, TRPC_ERR_TOO_LARGE, mark, "document has more than %d nodes",
		               TPL_MAX_NODES);
	ld->nodes += n;
	return 0;
}

static int add_anchor(struct loader *ld, char *name, json_t *value, size_t nodes)
{
	struct anchor *a = grow(ld->anchors, &ld->cap_anchors, ld->n_anchors, sizeof(*a));

	if (a == NULL)
		return nomem(ld->err, ld->src);
	ld->anchors = a;
	a = &ld->anchors[ld->n_anchors++];
	a->name = name;
	a->value = json_incref(value);
	a->nodes = nodes;
	return 0;
}

/* Takes the anchor name of an event, or NULL. */
static int take_anchor(struct loader *ld, const yaml_char_t *anchor, char **out)
{
	*out = NULL;
	if (anchor == NULL)
		return 0;
	*out = strdup((const char *)anchor);
	return *out == NULL ? nomem(ld->err, ld->src) : 0;
}

/* Adds to dst the keys of src that dst lacks (sharing the values). */
static int add_missing(json_t *dst, json_t *src)
{
	const char *key;
	json_t *val;

	json_object_foreach(src, key, val)
	{
		if (json_object_get(dst, key) == NULL && json_object_set(dst, key, val))
			return -1;
	}
	return 0;
}

/* Collects the keys of one merged mapping: earlier merges win. */
static int merge_keys(json_t **merged, json_t *src)
{
	if (*merged == NULL && (*merged = json_object()) == NULL)
		return -1;
	return add_missing(*merged, src);
}

/* The value of a merge key (YAML 1.1 "<<", still common with anchors): a
 * mapping or a list of mappings whose keys the open mapping gets unless
 * it has them itself. Consumes v. */
static int on_merge(struct loader *ld, struct frame *f, json_t *v, const yaml_mark_t *mark)
{
	int rc = 0;

	free(f->key);
	f->key = NULL;
	f->merge_key = 0;
	if (json_is_object(v)) {
		rc = merge_keys(&f->merged, v) ? nomem(ld->err, ld->src) : 0;
	} else if (json_is_array(v)) {
		for (size_t i = 0; i < json_array_size(v) && rc == 0; i++)
			if (!json_is_object(json_array_get(v, i)))
				rc = -1;
			else if (merge_keys(&f->merged, json_array_get(v, i)))
				rc = nomem(ld->err, ld->src);
	} else {
		rc = -1;
	}
	if (rc == -1)
		rc = fail_at(ld, TRPC_ERR_INVALID, mark,
		             "a merge key (<<) takes a mapping or a list of mappings");
	json_decref(v);
	return rc;
}

/* Puts a finished value (own reference, consumed) into the open collection,
 * or makes it the root. mark: where the value starts. */
static int attach(struct loader *ld, json_t *v, const yaml_mark_t *mark)
{
	struct frame *f;
	int rc;

	if (ld->depth == 0) {
		ld->root = v;
		return 0;
	}
	f = &ld->stack[ld->depth - 1];
	if (f->merge_key)
		return on_merge(ld, f, v, mark);
	if (json_is_object(f->value)) {
		rc = json_object_set_new(f->value, f->key, v);
		free(f->key);
		f->key = NULL;
	} else {
		rc = json_array_append_new(f->value, v);
	}
	return rc ? nomem(ld->err, ld->src) : 0;
}

/* True when the open collection is a mapping waiting for a key. */
static int expects_key(const struct loader *ld)
{
	const struct frame *f = ld->depth ? &ld->stack[ld->depth - 1] : NULL;

	return f != NULL && json_is_object(f->value) && f->key == NULL;
}

/* ------------------------------------------------------------ scalars */

enum scalar_kind {
	SK_STRING = 1,
	SK_NULL,
	SK_BOOL,
	SK_INT,
	SK_FLOAT,
};

static int text_is(const char *s, size_t n, const char *const *words, size_t n_words)
{
	for (size_t i = 0; i < n_words; i++)
		if (strlen(words[i]) == n && memcmp(s, words[i], n) == 0)
			return 1;
	return 0;
}

/* Number of leading characters of s[0..n) that are digits of base 8, 10 or 16. */
static size_t digits(const char *s, size_t n, int base)
{
	static const char hex[] = "0123456789abcdefABCDEF";
	size_t i = 0;

	while (i < n && s[i] != '\0' &&
	       (base == 16 ? strchr(hex, s[i]) != NULL
	                   : s[i] >= '0' && s[i] < (base == 8 ? '8' : ':')))
		i++;
	return i;
}

/* YAML 1.2 core schema float: [-+]? ( \. [0-9]+ | [0-9]+ ( \. [0-9]* )? ) ( [eE] [-+]? [0-9]+ )? */
static int is_core_float(const char *s, size_t n)
{
	size_t i = (n > 0 && (s[0] == '-' || s[0] == '+')), d;

	d = digits(s + i, n - i, 10);
	i += d;
	if (i < n && s[i] == '.') {
		size_t frac = digits(s + i + 1, n - i - 1, 10);

		if (d == 0 && frac == 0)
			return 0;
		i += 1 + frac;
	} else if (d == 0) {
		return 0;
	}
	if (i < n && (s[i] == 'e' || s[i] == 'E')) {
		i++;
		if (i < n && (s[i] == '-' || s[i] == '+'))
			i++;
		d = digits(s + i, n - i, 10);
		if (d == 0)
			return 0;
		i += d;
	}
	return i == n;
}

/* Which core-schema type a plain scalar has. .inf and .nan are strings:
 * JSON has no such numbers. */
static enum scalar_kind classify(const char *s, size_t n)
{
	static const char *const nulls[] = {"~", "null", "Null", "NULL"};
	static const char *const bools[] = {"true", "True", "TRUE", "false", "False", "FALSE"};
	size_t sign = (n > 0 && (s[0] == '-' || s[0] == '+'));

	if (n == 0 || text_is(s, n, nulls, ARRAY_LEN(nulls)))
		return SK_NULL;
	if (text_is(s, n, bools, ARRAY_LEN(bools)))
		return SK_BOOL;
	if (n > 2 && s[0] == '0' && s[1] == 'o' && digits(s + 2, n - 2, 8) == n - 2)
		return SK_INT;
	if (n > 2 && s[0] == '0' && s[1] == 'x' && digits(s + 2, n - 2, 16) == n - 2)
		return SK_INT;
	if (n > sign && digits(s + sign, n - sign, 10) == n - sign)
		return SK_INT;
	if (is_core_float(s, n))
		return SK_FLOAT;
	return SK_STRING;
}

/* A double from text checked by is_core_float, whatever LC_NUMERIC says. */
static double c_strtod(const char *s)
{
	locale_t c = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
	double d;

	if (c == (locale_t)0)
		return strtod(s, NULL);
	d = strtod_l(s, NULL, c);
	freelocale(c);
	return d;
}

/* The JSON value of a scalar of kind k (NULL when out of memory).
 * Integers too large for json_int_t become reals (decimal) or strings
 * (0o, 0x); reals too large for a double stay strings. */
static json_t *scalar_json(const char *s, size_t n, enum scalar_kind k)
{
	char *end;
	long long i;
	double d;

	switch (k) {
	case SK_NULL:
		return json_null();
	case SK_BOOL:
		return json_boolean(s[0] == 't' || s[0] == 'T');
	case SK_INT:
		errno = 0;
		if (s[0] == '0' && (s[1] == 'o' || s[1] == 'x'))
			i = strtoll(s + 2, &end, s[1] == 'o' ? 8 : 16);
		else
			i = strtoll(s, &end, 10);
		if (errno == 0)
			return json_integer(i);
		if (s[0] == '0' && (s[1] == 'o' || s[1] == 'x'))
			return json_stringn(s, n);
		d = c_strtod(s);
		return isfinite(d) ? json_real(d) : json_stringn(s, n);
	case SK_FLOAT:
		d = c_strtod(s);
		return isfinite(d) ? json_real(d) : json_stringn(s, n);
	case SK_STRING:
		break;
	}
	return json_stringn(s, n);
}

/* The kind an explicit tag asks for: 0 for none of the core tags. */
static enum scalar_kind tag_kind(const char *tag)
{
	static const struct {
		const char *name;
		enum scalar_kind kind;
	} tags[] = {
	    {TAG_PREFIX "str", SK_STRING},  {TAG_PREFIX "null", SK_NULL},
	    {TAG_PREFIX "bool", SK_BOOL},   {TAG_PREFIX "int", SK_INT},
	    {TAG_PREFIX "float", SK_FLOAT},
	};

	if (strcmp(tag, "!") == 0)
		return SK_STRING;
	for (size_t i = 0; i < ARRAY_LEN(tags); i++)
		if (strcmp(tag, tags[i].name) == 0)
			return tags[i].kind;
	return 0;
}

static int remember_number(struct loader *ld, const json_t *v, const char *s)
{
	struct numtext *nt;

	if (!json_is_number(v))
		return 0;
	if ((nt = grow(ld->nums, &ld->cap_nums, ld->n_nums, sizeof(*nt))) == NULL)
		return nomem(ld->err, ld->src);
	ld->nums = nt;
	nt = &ld->nums[ld->n_nums];
	nt->text = strdup(s);
	if (nt->text == NULL)
		return nomem(ld->err, ld->src);
	nt->value = v;
	ld->n_nums++;
	return 0;
}

/* Resolves a scalar event: plain scalars and the core tags by the core
 * schema, everything else (quoted, block, other tags) as a string. */
static int scalar_value(struct loader *ld, const yaml_event_t *ev, json_t **out)
{
	const char *s = (const char *)ev->data.scalar.value;
	size_t n = ev->data.scalar.length;
	const char *tag = (const char *)ev->data.scalar.tag;
	enum scalar_kind want = tag ? tag_kind(tag) : 0, k = SK_STRING;

	if (tag == NULL && ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE)
		k = classify(s, n);
	else if (want != 0 && want != SK_STRING)
		k = classify(s, n);
	/* "!!float 5" is 5.0: the core float pattern covers decimal integers */
	if (want == SK_FLOAT && is_core_float(s, n))
		k = SK_FLOAT;
	if (want != 0 && want != SK_STRING && k != want)
		return fail_at(ld, TRPC_ERR_INVALID, &ev->start_mark,
		               "\"%.60s\" is not a valid !!%s", s, tag + strlen(TAG_PREFIX));
	*out = scalar_json(s, n, k);
	if (*out == NULL)
		return nomem(ld->err, ld->src);
	return remember_number(ld, *out, s);
}

/* ------------------------------------------------------------ events */

static int on_scalar(struct loader *ld, const yaml_event_t *ev)
{
	const char *s = (const char *)ev->data.scalar.value;
	size_t n = ev->data.scalar.length;
	json_t *v = NULL;
	char *anchor;
	int rc;

	if (memchr(s, '\0', n) != NULL)
		return fail_at(ld, TRPC_ERR_INVALID, &ev->start_mark, "NUL character in a scalar");
	if ((rc = count_node(ld, 1, &ev->start_mark)) != 0)
		return rc;
	if (expects_key(ld)) {
		struct frame *f = &ld->stack[ld->depth - 1];

		/* Keys are strings whatever they look like: JSON has no other. */
		f->merge_key =
		    ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE && strcmp(s, "<<") == 0;
		if (!f->merge_key && json_object_get(f->value, s) != NULL)
			return fail_at(ld, TRPC_ERR_INVALID, &ev->start_mark,
			               "duplicate key \"%.60s\"", s);
		f->key = strdup(s);
		return f->key == NULL ? nomem(ld->err, ld->src) : 0;
	}
	if ((rc = scalar_value(ld, ev, &v)) != 0)
		goto fail_value;
	if ((rc = take_anchor(ld, ev->data.scalar.anchor, &anchor)) != 0)
		goto fail_value;
	if (anchor != NULL && (rc = add_anchor(ld, anchor, v, 1)) != 0)
		goto fail_anchor;
	return attach(ld, v, &ev->start_mark);

fail_anchor:
	free(anchor);
fail_value:
	json_decref(v);
	return rc;
}

static int on_alias(struct loader *ld, const yaml_event_t *ev)
{
	const char *name = (const char *)ev->data.alias.anchor;
	const struct anchor *a = NULL;
	json_t *copy;
	int rc;

	if (expects_key(ld))
		return fail_at(ld, TRPC_ERR_INVALID, &ev->start_mark,
		               "an alias cannot be a mapping key");
	/* The last definition wins; an anchor of a node still open is not
	 * registered yet, which refuses recursive aliases. */
	for (size_t i = ld->n_anchors; i-- > 0 && a == NULL;)
		if (strcmp(ld->anchors[i].name, name) == 0)
			a = &ld->anchors[i];
	if (a == NULL)
		return fail_at(ld, TRPC_ERR_INVALID, &ev->start_mark, "unknown anchor \"%.60s\"",
		               name);
	if ((rc = count_node(ld, a->nodes, &ev->start_mark)) != 0)
		return rc;
	copy = json_deep_copy(a->value);
	if (copy == NULL)
		return nomem(ld->err, ld->src);
	return attach(ld, copy, &ev->start_mark);
}

static int on_collection_start(struct loader *ld, const yaml_event_t *ev, int is_mapping)
{
	const yaml_char_t *anchor =
	    is_mapping ? ev->data.mapping_start.anchor : ev->data.sequence_start.anchor;
	struct frame *f;
	int rc;

	if (expects_key(ld))
		return fail_at(ld, TRPC_ERR_INVALID, &ev->start_mark,
		               "a mapping key must be a scalar");
	if (ld->depth == TPL_MAX_DEPTH)
		return fail_at(ld, TRPC_ERR_TOO_LARGE, &ev->start_mark,
		               "nested more than %d levels deep", TPL_MAX_DEPTH);
	if ((rc = count_node(ld, 1, &ev->start_mark)) != 0)
		return rc;
	f = &ld->stack[ld->depth];
	memset(f, 0, sizeof(*f));
	f->first_node = ld->nodes - 1;
	f->mark = ev->start_mark;
	f->value = is_mapping ? json_object() : json_array();
	if (f->value == NULL)
		return nomem(ld->err, ld->src);
	ld->depth++;
	return take_anchor(ld, anchor, &f->anchor);
}

static int on_collection_end(struct loader *ld)
{
	struct frame f = ld->stack[--ld->depth];
	int rc = 0;

	/* keys written in the mapping beat merged ones, wherever they stand */
	if (f.merged != NULL && add_missing(f.value, f.merged))
		rc = nomem(ld->err, ld->src);
	json_decref(f.merged);
	if (rc == 0 && f.anchor != NULL &&
	    (rc = add_anchor(ld, f.anchor, f.value, ld->nodes - f.first_node)) == 0)
		f.anchor = NULL;
	free(f.anchor);
	if (rc != 0) {
		json_decref(f.value);
		return rc;
	}
	return attach(ld, f.value, &f.mark);
}

static int on_event(struct loader *ld, const yaml_event_t *ev)
{
	switch (ev->type) {
	case YAML_DOCUMENT_START_EVENT:
		if (ld->documents++ > 0)
			return fail_at(ld, TRPC_ERR_INVALID, &ev->start_mark,
			               "more than one YAML document");
		return 0;
	case YAML_SCALAR_EVENT:
		return on_scalar(ld, ev);
	case YAML_ALIAS_EVENT:
		return on_alias(ld, ev);
	case YAML_SEQUENCE_START_EVENT:
		return on_collection_start(ld, ev, 0);
	case YAML_MAPPING_START_EVENT:
		return on_collection_start(ld, ev, 1);
	case YAML_SEQUENCE_END_EVENT:
	case YAML_MAPPING_END_EVENT:
		return on_collection_end(ld);
	default:
		return 0;
	}
}

static void loader_clear(struct loader *ld)
{
	while (ld->depth > 0) {
		struct frame *f = &ld->stack[--ld->depth];

		json_decref(f->value);
		json_decref(f->merged);
		free(f->key);
		free(f->anchor);
	}
	for (size_t i = 0; i < ld->n_anchors; i++) {
		free(ld->anchors[i].name);
		json_decref(ld->anchors[i].value);
	}
	free(ld->anchors);
	for (size_t i = 0; i < ld->n_nums; i++)
		free(ld->nums[i].text);
	free(ld->nums);
	json_decref(ld->root);
	ld->root = NULL;
}

/* Parses the YAML text into ld->root (NULL for an empty stream). */
static int load_yaml(struct loader *ld, const char *text, size_t len)
{
	yaml_event_t ev;
	int rc = 0, done = 0;

	if (!yaml_parser_initialize(&ld->parser))
		return nomem(ld->err, ld->src);
	yaml_parser_set_input_string(&ld->parser, (const unsigned char *)(text ? text : ""), len);
	while (rc == 0 && !done) {
		if (!yaml_parser_parse(&ld->parser, &ev)) {
			rc = on_syntax_error(ld);
			break;
		}
		done = ev.type == YAML_STREAM_END_EVENT;
		rc = on_event(ld, &ev);
		yaml_event_delete(&ev);
	}
	yaml_parser_delete(&ld->parser);
	return rc;
}

/* ================================================================== validation */

struct vctx {
	const char *src;
	struct tk_err *err;
	const struct loader *ld; /* for the text of numbers */
};

static int __attribute__((format(printf, 2, 3))) invalid(struct vctx *v, const char *fmt, ...)
{
	char msg[sizeof(v->err->msg)];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return tk_err_set(v->err, TRPC_ERR_INVALID, "%s: %s", v->src, msg);
}

/* The value of a key, NULL when absent or null. */
static json_t *get(const json_t *obj, const char *key)
{
	json_t *j = json_object_get(obj, key);

	return json_is_null(j) ? NULL : j;
}

/* The text of a scalar as the user wrote it (numbers) or as JSON would. */
static void scalar_text(const struct vctx *v, const json_t *j, char *buf, size_t size)
{
	if (json_is_string(j)) {
		snprintf(buf, size, "%s", json_string_value(j));
		return;
	}
	for (size_t i = 0; v->ld != NULL && i < v->ld->n_nums; i++)
		if (v->ld->nums[i].value == j) {
			snprintf(buf, size, "%s", v->ld->nums[i].text);
			return;
		}
	if (json_is_integer(j))
		snprintf(buf, size, "%" JSON_INTEGER_FORMAT, json_integer_value(j));
	else if (json_is_real(j))
		snprintf(buf, size, "%.17g", json_real_value(j));
	else
		snprintf(buf, size, "%s",
		         json_is_true(j)    ? "true"
		         : json_is_false(j) ? "false"
		                            : "null");
}

/* "a string \"abc\"", "an integer 5", "a mapping", ... for messages. */
static void describe(const struct vctx *v, const json_t *j, char *buf, size_t size)
{
	char text[64];

	if (json_is_object(j) || json_is_array(j) || json_is_null(j)) {
		snprintf(buf, size, "%s",
		         json_is_object(j)  ? "a mapping"
		         : json_is_array(j) ? "a list"
		                            : "null");
		return;
	}
	scalar_text(v, j, text, sizeof(text));
	if (strlen(text) == sizeof(text) - 1)
		memcpy(text + sizeof(text) - 4, "...", 4);
	if (json_is_string(j))
		snprintf(buf, size, "a string \"%s\"", text);
	else
		snprintf(buf, size, "%s %s",
		         json_is_integer(j) ? "an integer"
		         : json_is_real(j)  ? "a number"
		                            : "a boolean",
		         text);
}

/* ------------------------------------------------------------ rule tables */

enum kind {
	K_STR = 1 << 0,
	K_INT = 1 << 1,
	K_REAL = 1 << 2,
	K_BOOL = 1 << 3,
	K_OBJ = 1 << 4,
	K_ARR = 1 << 5,
	K_STRARR = 1 << 6, /* a list of strings */
};

/* One known key of a mapping. Integers with max > min are range-checked. */
struct rule {
	const char *key;
	unsigned kinds;
	int required;
	long long min, max;
	const char *expect; /* for the message; NULL: from kinds */
};

static const struct rule top_rules[] = {
    {.key = "name", .kinds = K_STR, .required = 1},
    {.key = "namespace_name", .kinds = K_STR, .required = 1},
    /* numbers too, to answer `version: 1.0` with "is not x.y.z" */
    {.key = "version",
     .kinds = K_STR | K_INT | K_REAL | K_BOOL,
     .required = 1,
     .expect = "a string"},
    {.key = "description", .kinds = K_STR},
    {.key = "identity_strategy", .kinds = K_STR},
    {.key = "metadata", .kinds = K_OBJ},
    {.key = "system_dependencies", .kinds = K_OBJ},
    {.key = "domain_events", .kinds = K_ARR},
    {.key = "input_schema", .kinds = K_OBJ | K_BOOL},
    {.key = "steps", .kinds = K_ARR, .required = 1},
    {.key = "environments", .kinds = K_OBJ},
    {.key = "lifecycle", .kinds = K_OBJ},
};

static const struct rule metadata_rules[] = {
    {.key = "author", .kinds = K_STR},
    {.key = "tags", .kinds = K_STRARR},
    {.key = "documentation_url", .kinds = K_STR},
    {.key = "created_at", .kinds = K_STR},
    {.key = "updated_at", .kinds = K_STR},
};

static const struct rule sysdeps_rules[] = {
    {.key = "primary", .kinds = K_STR},
    {.key = "secondary", .kinds = K_STRARR},
};

static const struct rule lifecycle_rules[] = {
    {.key = "max_duration_minutes", .kinds = K_INT, .min = 1, .max = MINUTES_MAX},
    {.key = "max_waiting_for_dependencies_minutes", .kinds = K_INT, .min = 1, .max = MINUTES_MAX},
    {.key = "max_waiting_for_retry_minutes", .kinds = K_INT, .min = 1, .max = MINUTES_MAX},
    {.key = "max_steps_in_process_minutes", .kinds = K_INT, .min = 1, .max = MINUTES_MAX},
    {.key = "staleness_action", .kinds = K_STR},
    {.key = "auto_fail_on_timeout", .kinds = K_BOOL},
    {.key = "auto_dlq_on_timeout", .kinds = K_BOOL},
};

static const struct rule step_rules[] = {
    {.key = "name", .kinds = K_STR, .required = 1},
    {.key = "description", .kinds = K_STR},
    {.key = "handler", .kinds = K_OBJ, .required = 1},
    {.key = "type", .kinds = K_STR},
    {.key = "step_type", .kinds = K_STR},
    {.key = "system_dependency", .kinds = K_STR},
    {.key = "dependencies", .kinds = K_STRARR},
    {.key = "depends_on", .kinds = K_STRARR},
    {.key = "retry", .kinds = K_OBJ},
    {.key = "timeout_seconds", .kinds = K_INT, .min = 1, .max = 3600},
    {.key = "publishes_events", .kinds = K_ARR},
    {.key = "batch_config", .kinds = K_OBJ},
    {.key = "result_schema", .kinds = K_OBJ | K_BOOL},
    {.key = "composition", .kinds = K_OBJ},
};

static const struct rule handler_rules[] = {
    {.key = "callable", .kinds = K_STR, .required = 1},
    {.key = "method", .kinds = K_STR},
    {.key = "resolver", .kinds = K_STR},
    {.key = "initialization", .kinds = K_OBJ},
};

static const struct rule retry_rules[] = {
    {.key = "retryable", .kinds = K_BOOL},
    {.key = "max_attempts", .kinds = K_INT, .min = 1, .max = 100},
    {.key = "limit", .kinds = K_INT, .min = 1, .max = 100},
    {.key = "backoff", .kinds = K_STR},
    {.key = "backoff_base_ms", .kinds = K_INT, .min = 0, .max = 3600000},
    {.key = "max_backoff_ms", .kinds = K_INT, .min = 0, .max = 3600000},
};

static const struct rule env_rules[] = {
    {.key = "steps", .kinds = K_ARR},
};

static const struct rule override_rules[] = {
    {.key = "name", .kinds = K_STR, .required = 1},
    {.key = "handler", .kinds = K_OBJ},
    {.key = "timeout_seconds", .kinds = K_INT, .min = 1, .max = 3600},
    {.key = "retry", .kinds = K_OBJ},
};

static const struct rule override_handler_rules[] = {
    {.key = "initialization", .kinds = K_OBJ},
};

static const char *const step_types[] = {"standard", "decision", "deferred_convergence",
                                         "batchable", "batch_worker"};
static const char *const backoffs[] = {"none", "linear", "exponential", "fibonacci"};
static const char *const identity_strategies[] = {"strict", "caller_provided", "always_unique"};

static unsigned kind_of(const json_t *j)
{
	switch (json_typeof(j)) {
	case JSON_STRING:
		return K_STR;
	case JSON_INTEGER:
		return K_INT;
	case JSON_REAL:
		return K_REAL;
	case JSON_TRUE:
	case JSON_FALSE:
		return K_BOOL;
	case JSON_OBJECT:
		return K_OBJ;
	case JSON_ARRAY:
		return K_ARR;
	default:
		return 0;
	}
}

static const char *expected(const struct rule *r)
{
	static const struct {
		unsigned kinds;
		const char *text;
	} names[] = {
	    {K_STR, "a string"},
	    {K_INT, "an integer"},
	    {K_BOOL, "a boolean"},
	    {K_OBJ, "a mapping"},
	    {K_ARR, "a list"},
	    {K_STRARR, "a list of strings"},
	    {K_OBJ | K_BOOL, "a mapping or a boolean"},
	};

	if (r->expect != NULL)
		return r->expect;
	for (size_t i = 0; i < ARRAY_LEN(names); i++)
		if (names[i].kinds == r->kinds)
			return names[i].text;
	return "another type";
}

static int wrong_type(struct vctx *v, const char *where, const char *path, const char *want,
                      const json_t *got)
{
	char desc[96];

	describe(v, got, desc, sizeof(desc));
	return invalid(v, "%s%s: expected %s, got %s", where, path, want, desc);
}

static int check_rule(struct vctx *v, const char *where, const char *prefix, const struct rule *r,
                      const json_t *j)
{
	char path[128];
	unsigned k = kind_of(j);

	snprintf(path, sizeof(path), "%s%s", prefix, r->key);
	if (r->kinds == K_STRARR) {
		if (k != K_ARR)
			return wrong_type(v, where, path, expected(r), j);
		for (size_t i = 0; i < json_array_size(j); i++)
			if (!json_is_string(json_array_get(j, i))) {
				char elem[160];

				snprintf(elem, sizeof(elem), "%s[%zu]", path, i);
				return wrong_type(v, where, elem, "a string", json_array_get(j, i));
			}
		return 0;
	}
	if ((r->kinds & k) == 0)
		return wrong_type(v, where, path, expected(r), j);
	if (k == K_INT && r->max > r->min &&
	    (json_integer_value(j) < r->min || json_integer_value(j) > r->max))
		return invalid(v, "%s%s %" JSON_INTEGER_FORMAT " out of range %lld..%lld", where,
		               path, json_integer_value(j), r->min, r->max);
	return 0;
}

/* Checks the known keys of obj against rules; where is "" or "step \"x\": ",
 * prefix the key path so far ("retry."). */
static int check_keys(struct vctx *v, const char *where, const char *prefix, const json_t *obj,
                      const struct rule *rules, size_t n)
{
	int rc;

	for (size_t i = 0; i < n; i++) {
		const json_t *j = get(obj, rules[i].key);

		if (j == NULL) {
			if (rules[i].required)
				return invalid(v, "%s%s%s is required", where, prefix,
				               rules[i].key);
			continue;
		}
		if ((rc = check_rule(v, where, prefix, &rules[i], j)) != 0)
			return rc;
	}
	return 0;
}

/* Checks an optional nested mapping (already type-checked) against rules. */
static int check_nested(struct vctx *v, const char *where, const json_t *obj, const char *key,
                        const struct rule *rules, size_t n)
{
	char prefix[64];
	const json_t *j = get(obj, key);

	if (j == NULL)
		return 0;
	snprintf(prefix, sizeof(prefix), "%s.", key);
	return check_keys(v, where, prefix, j, rules, n);
}

static int check_enum(struct vctx *v, const char *where, const char *path, const char *value,
                      const char *const *names, size_t n)
{
	char list[160] = "";

	for (size_t i = 0; i < n; i++) {
		if (strcmp(value, names[i]) == 0)
			return 0;
		snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s", i ? ", " : "",
		         names[i]);
	}
	return invalid(v, "%s%s \"%.60s\" is not one of %s", where, path, value, list);
}

static int is_snake_case(const char *s)
{
	if (*s < 'a' || *s > 'z')
		return 0;
	for (; *s != '\0'; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_'))
			return 0;
	return 1;
}

/* A name already checked to be a string: snake_case, at most max bytes. */
static int check_name(struct vctx *v, const char *where, const char *key, const char *s, size_t max)
{
	if (!is_snake_case(s))
		return invalid(v, "%s%s \"%.*s\" is not snake_case", where, key, (int)max, s);
	if (strlen(s) > max)
		return invalid(v, "%s%s \"%.*s...\" is longer than %zu bytes", where, key, 40, s,
		               max);
	return 0;
}

static int check_version(struct vctx *v, const json_t *j)
{
	char text[64];
	const char *s = text;
	int parts = 0;

	scalar_text(v, j, text, sizeof(text));
	for (;;) {
		size_t d = json_is_string(j) ? digits(s, strlen(s), 10) : 0;

		if (d == 0)
			break;
		s += d;
		parts++;
		if (*s != '.' || parts == 3)
			break;
		s++;
	}
	if (parts != 3 || *s != '\0')
		return invalid(v, "version \"%.40s\" is not x.y.z", text);
	if (strlen(text) > VERSION_MAX)
		return invalid(v, "version \"%.40s\" is longer than %d bytes", text, VERSION_MAX);
	return 0;
}

/* Both spellings of a key (type-checked before): the value to use, or an
 * error if both are given and differ. prefix is the key path so far. */
static int pick_alias(struct vctx *v, const char *where, const char *prefix, const json_t *obj,
                      const char *key, const char *alias, const json_t **out)
{
	const json_t *a = get(obj, key), *b = get(obj, alias);
	char ta[64], tb[64];

	*out = a ? a : b;
	if (a == NULL || b == NULL || json_equal(a, b))
		return 0;
	if (json_is_array(a))
		return invalid(v, "%s%s%s and %s%s disagree", where, prefix, key, prefix, alias);
	scalar_text(v, a, ta, sizeof(ta));
	scalar_text(v, b, tb, sizeof(tb));
	if (json_is_string(a))
		return invalid(v, "%s%s%s \"%s\" and %s%s \"%s\" disagree", where, prefix, key, ta,
		               prefix, alias, tb);
	return invalid(v, "%s%s%s %s and %s%s %s disagree", where, prefix, key, ta, prefix, alias,
	               tb);
}

static int dup_str(const char *s, char **out)
{
	*out = NULL;
	if (s == NULL)
		return 0;
	*out = strdup(s);
	return *out == NULL ? -1 : 0;
}

/* A string member (type-checked before) copied into *out; NULL if absent. */
static int dup_member(struct vctx *v, const json_t *obj, const char *key, char **out)
{
	if (dup_str(json_string_value(get(obj, key)), out))
		return nomem(v->err, v->src);
	return 0;
}

/* Copies every key of src over dst (deep copies: no sharing with src). */
static int merge_object(json_t *dst, const json_t *src)
{
	const char *key;
	json_t *val;

	json_object_foreach((json_t *)src, key, val)
	{
		if (json_object_set_new(dst, key, json_deep_copy(val)))
			return -1;
	}
	return 0;
}

/* ------------------------------------------------------------ retry */

/* The retry fields given in one retry mapping (a step's or an override's). */
struct retry_vals {
	const json_t *retryable, *max_attempts, *base, *max;
	const char *backoff; /* one of backoffs[], or NULL */
};

/* Reads a type-checked retry mapping; refuses a bad backoff and a limit that
 * disagrees with max_attempts. */
static int read_retry(struct vctx *v, const char *where, const json_t *retry, struct retry_vals *rv)
{
	const json_t *b;
	int rc;

	memset(rv, 0, sizeof(*rv));
	if (retry == NULL)
		return 0;
	if ((rc = check_keys(v, where, "retry.", retry, retry_rules, ARRAY_LEN(retry_rules))) != 0)
		return rc;
	if ((rc = pick_alias(v, where, "retry.", retry, "max_attempts", "limit",
	                     &rv->max_attempts)) != 0)
		return rc;
	rv->retryable = get(retry, "retryable");
	rv->base = get(retry, "backoff_base_ms");
	rv->max = get(retry, "max_backoff_ms");
	if ((b = get(retry, "backoff")) != NULL) {
		if ((rc = check_enum(v, where, "retry.backoff", json_string_value(b), backoffs,
		                     ARRAY_LEN(backoffs))) != 0)
			return rc;
		rv->backoff = json_string_value(b);
	}
	return 0;
}

static int set_retry(struct vctx *v, struct tpl_step *st, const struct retry_vals *rv)
{
	if (rv->retryable)
		st->retryable = json_is_true(rv->retryable);
	if (rv->max_attempts)
		st->max_attempts = (int)json_integer_value(rv->max_attempts);
	if (rv->base)
		st->backoff_base_ms = (int)json_integer_value(rv->base);
	if (rv->max)
		st->max_backoff_ms = (int)json_integer_value(rv->max);
	if (rv->backoff) {
		char *b = strdup(rv->backoff);

		if (b == NULL)
			return nomem(v->err, v->src);
		free(st->backoff);
		st->backoff = b;
	}
	return 0;
}

/* ------------------------------------------------------------ steps */

static size_t step_index(const struct tpl *t, const char *name)
{
	for (size_t i = 0; i < t->n_steps; i++)
		if (t->steps[i].name != NULL && strcmp(t->steps[i].name, name) == 0)
			return i;
	return SIZE_MAX;
}

static int step_defaults(struct vctx *v, struct tpl_step *st)
{
	st->retryable = 1;
	st->max_attempts = 3;
	st->backoff_base_ms = 1000;
	st->max_backoff_ms = 30000;
	st->backoff = strdup("exponential");
	st->type = strdup("standard");
	st->initialization = json_object();
	if (st->backoff == NULL || st->type == NULL || st->initialization == NULL)
		return nomem(v->err, v->src);
	return 0;
}

static int step_type(struct vctx *v, const char *where, const json_t *js, struct tpl_step *st)
{
	const json_t *type;
	const char *key;
	int rc;

	if ((rc = pick_alias(v, where, "", js, "type", "step_type", &type)) != 0 || type == NULL)
		return rc;
	key = get(js, "type") ? "type" : "step_type";
	if ((rc = check_enum(v, where, key, json_string_value(type), step_types,
	                     ARRAY_LEN(step_types))) != 0)
		return rc;
	free(st->type);
	return dup_member(v, js, key, &st->type);
}

static int step_dependencies(struct vctx *v, const char *where, const json_t *js,
                             struct tpl_step *st)
{
	const json_t *deps;
	size_t n;
	int rc;

	if ((rc = pick_alias(v, where, "", js, "dependencies", "depends_on", &deps)) != 0 ||
	    deps == NULL)
		return rc;
	n = json_array_size(deps);
	if (n == 0)
		return 0;
	st->dependencies = calloc(n, sizeof(*st->dependencies));
	if (st->dependencies == NULL)
		return nomem(v->err, v->src);
	for (size_t i = 0; i < n; i++) {
		const char *d = json_string_value(json_array_get(deps, i));

		for (size_t k = 0; k < i; k++)
			if (strcmp(st->dependencies[k], d) == 0)
				return invalid(v, "%sdependency \"%.128s\" listed twice", where, d);
		st->dependencies[i] = strdup(d);
		if (st->dependencies[i] == NULL)
			return nomem(v->err, v->src);
		st->n_dependencies = i + 1;
	}
	return 0;
}

static int parse_step(struct vctx *v, const json_t *js, size_t idx, struct tpl *t)
{
	struct tpl_step *st = &t->steps[idx];
	const json_t *handler, *init, *name;
	struct retry_vals rv;
	char where[NAME_MAX_STEP + 16], item[32];
	int rc;

	snprintf(item, sizeof(item), "steps[%zu]", idx);
	snprintf(where, sizeof(where), "%s: ", item);
	if (!json_is_object(js))
		return wrong_type(v, "", item, "a mapping", js);
	if ((rc = check_keys(v, where, "", js, step_rules, 1)) != 0)
		return rc;
	name = get(js, "name");
	if ((rc = check_name(v, where, "name", json_string_value(name), NAME_MAX_STEP)) != 0)
		return rc;
	if (step_index(t, json_string_value(name)) != SIZE_MAX)
		return invalid(v, "duplicate step name \"%s\"", json_string_value(name));
	snprintf(where, sizeof(where), "step \"%s\": ", json_string_value(name));
	if ((rc = check_keys(v, where, "", js, step_rules, ARRAY_LEN(step_rules))) != 0)
		return rc;
	handler = get(js, "handler");
	if ((rc = check_keys(v, where, "handler.", handler, handler_rules,
	                     ARRAY_LEN(handler_rules))) != 0)
		return rc;
	/* which handlers exist is the worker's business; an empty name is not one */
	if (*json_string_value(get(handler, "callable")) == '\0')
		return invalid(v, "%shandler.callable is empty", where);
	if ((rc = step_defaults(v, st)) != 0)
		return rc;
	if ((rc = dup_member(v, js, "name", &st->name)) != 0 ||
	    (rc = dup_member(v, js, "description", &st->description)) != 0 ||
	    (rc = dup_member(v, handler, "callable", &st->handler_callable)) != 0 ||
	    (rc = dup_member(v, handler, "method", &st->handler_method)) != 0 ||
	    (rc = dup_member(v, handler, "resolver", &st->handler_resolver)) != 0)
		return rc;
	if ((init = get(handler, "initialization")) != NULL &&
	    merge_object(st->initialization, init))
		return nomem(v->err, v->src);
	if ((rc = step_type(v, where, js, st)) != 0 ||
	    (rc = step_dependencies(v, where, js, st)) != 0 ||
	    (rc = read_retry(v, where, get(js, "retry"), &rv)) != 0 ||
	    (rc = set_retry(v, st, &rv)) != 0)
		return rc;
	if (get(js, "timeout_seconds") != NULL)
		st->timeout_seconds = (int)json_integer_value(get(js, "timeout_seconds"));
	return 0;
}

/* ------------------------------------------------------------ dependency graph */

/* Dependencies as step indexes: the parents of step i are
 * dep[first[i] .. first[i + 1]). */
struct graph {
	size_t *dep;
	size_t *first;
};

static void graph_free(struct graph *g)
{
	free(g->dep);
	free(g->first);
}

/* Returns 0, TRPC_ERR_NOMEM, or TRPC_ERR_INVALID with *bad_step and
 * *bad_dep naming an unknown dependency. */
static int graph_build(const struct tpl *t, struct graph *g, size_t *bad_step, size_t *bad_dep)
{
	size_t n_edges = 0, e = 0;

	for (size_t i = 0; i < t->n_steps; i++)
		n_edges += t->steps[i].n_dependencies;
	g->dep = malloc((n_edges ? n_edges : 1) * sizeof(*g->dep));
	g->first = malloc((t->n_steps + 1) * sizeof(*g->first));
	if (g->dep == NULL || g->first == NULL) {
		graph_free(g);
		return TRPC_ERR_NOMEM;
	}
	for (size_t i = 0; i < t->n_steps; i++) {
		g->first[i] = e;
		for (size_t k = 0; k < t->steps[i].n_dependencies; k++) {
			g->dep[e] = step_index(t, t->steps[i].dependencies[k]);
			if (g->dep[e++] == SIZE_MAX) {
				*bad_step = i;
				*bad_dep = k;
				graph_free(g);
				return TRPC_ERR_INVALID;
			}
		}
	}
	g->first[t->n_steps] = e;
	return 0;
}

/* Kahn's algorithm, always taking the lowest ready index. Sets placed[i]
 * for every step it orders; returns how many it ordered (n unless the
 * graph has a cycle). O(n * edges), plenty for templates. */
static size_t graph_order(const struct graph *g, size_t n, size_t *order, char *placed)
{
	size_t done = 0;

	memset(placed, 0, n);
	while (done < n) {
		size_t pick = SIZE_MAX;

		for (size_t i = 0; i < n && pick == SIZE_MAX; i++) {
			size_t k = g->first[i];

			while (!placed[i] && k < g->first[i + 1] && placed[g->dep[k]])
				k++;
			if (!placed[i] && k == g->first[i + 1])
				pick = i;
		}
		if (pick == SIZE_MAX)
			break;
		placed[pick] = 1;
		order[done++] = pick;
	}
	return done;
}

/* Some cycle among the unplaced steps, written parent -> child starting
 * at its lowest index: "a -> b -> a" means b depends on a, a on b. Every
 * unplaced step has an unplaced parent, so walking parents must loop. */
static void describe_cycle(const struct tpl *t, const struct graph *g, const char *placed,
                           size_t *path, size_t *pos, char *buf, size_t size)
{
	size_t len = 0, s = 0, start, low, n;

	while (placed[s])
		s++;
	for (size_t i = 0; i < t->n_steps; i++)
		pos[i] = SIZE_MAX;
	while (pos[s] == SIZE_MAX) {
		size_t k = g->first[s];

		pos[s] = len;
		path[len++] = s;
		while (placed[g->dep[k]])
			k++;
		s = g->dep[k];
	}
	/* path[start..len) is the cycle child -> parent; print it reversed */
	start = pos[s];
	n = len - start;
	low = start;
	for (size_t i = start; i < len; i++)
		if (path[i] < path[low])
			low = i;
	buf[0] = '\0';
	for (size_t i = 0; i <= n; i++) {
		size_t at = path[start + (low - start + n - i % n) % n];

		snprintf(buf + strlen(buf), size - strlen(buf), "%s%s", i ? " -> " : "",
		         t->steps[at].name);
	}
}

static int check_graph(struct vctx *v, const struct tpl *t)
{
	struct graph g;
	size_t bad_step = 0, bad_dep = 0, *order, *pos;
	char *placed, cycle[400];
	int rc = graph_build(t, &g, &bad_step, &bad_dep);

	if (rc == TRPC_ERR_INVALID)
		return invalid(v, "step \"%s\": depends on unknown step \"%.128s\"",
		               t->steps[bad_step].name, t->steps[bad_step].dependencies[bad_dep]);
	if (rc != 0)
		return nomem(v->err, v->src);
	order = calloc(t->n_steps, sizeof(*order));
	pos = calloc(t->n_steps, sizeof(*pos));
	placed = calloc(t->n_steps, 1);
	if (order == NULL || pos == NULL || placed == NULL)
		rc = nomem(v->err, v->src);
	else if (graph_order(&g, t->n_steps, order, placed) < t->n_steps) {
		describe_cycle(t, &g, placed, order, pos, cycle, sizeof(cycle));
		rc = invalid(v, "dependency cycle: %s", cycle);
	}
	free(placed);
	free(pos);
	free(order);
	graph_free(&g);
	return rc;
}

/* ------------------------------------------------------------ environments */

enum override_pass {
	CHECK_ONLY = 1,
	APPLY_ALL,   /* entries named "ALL" */
	APPLY_NAMED, /* entries naming one step */
};

static int apply_override(struct vctx *v, const json_t *entry, const struct retry_vals *rv,
                          struct tpl_step *st)
{
	const json_t *init = get(get(entry, "handler"), "initialization");

	if (init != NULL && merge_object(st->initialization, init))
		return nomem(v->err, v->src);
	if (get(entry, "timeout_seconds") != NULL)
		st->timeout_seconds = (int)json_integer_value(get(entry, "timeout_seconds"));
	return set_retry(v, st, rv);
}

/* Checks one entry of environments.<env>.steps and, in the pass that
 * matches its kind, applies it. */
static int override_entry(struct vctx *v, const char *env_where, size_t idx, const json_t *entry,
                          struct tpl *t, enum override_pass pass)
{
	static const char *const fixed[] = {"callable", "method", "resolver"};
	char where[NAME_MAX_STEP + 200], item[32];
	const char *name;
	struct retry_vals rv;
	size_t target;
	int all, rc;

	snprintf(item, sizeof(item), "steps[%zu]", idx);
	snprintf(where, sizeof(where), "%s%s: ", env_where, item);
	if (!json_is_object(entry))
		return wrong_type(v, env_where, item, "a mapping", entry);
	if ((rc = check_keys(v, where, "", entry, override_rules, 1)) != 0)
		return rc;
	name = json_string_value(get(entry, "name"));
	all = strcmp(name, "ALL") == 0;
	target = all ? SIZE_MAX : step_index(t, name);
	if (!all && target == SIZE_MAX)
		return invalid(v, "%sunknown step \"%.128s\"", where, name);
	snprintf(where, sizeof(where), "%sstep \"%s\": ", env_where, name);
	if ((rc = check_keys(v, where, "", entry, override_rules, ARRAY_LEN(override_rules))) !=
	        0 ||
	    (rc = check_nested(v, where, entry, "handler", override_handler_rules,
	                       ARRAY_LEN(override_handler_rules))) != 0)
		return rc;
	for (size_t i = 0; i < ARRAY_LEN(fixed); i++)
		if (get(get(entry, "handler"), fixed[i]) != NULL)
			return invalid(v, "%shandler.%s cannot be overridden per environment",
			               where, fixed[i]);
	if ((rc = read_retry(v, where, get(entry, "retry"), &rv)) != 0)
		return rc;
	if ((pass == APPLY_ALL && !all) || (pass == APPLY_NAMED && all) || pass == CHECK_ONLY)
		return 0;
	for (size_t i = 0; i < t->n_steps; i++)
		if ((all || i == target) && (rc = apply_override(v, entry, &rv, &t->steps[i])) != 0)
			return rc;
	return 0;
}

static int override_pass(struct vctx *v, const char *where, const json_t *steps, struct tpl *t,
                         enum override_pass pass)
{
	int rc;

	for (size_t i = 0; i < json_array_size(steps); i++)
		if ((rc = override_entry(v, where, i, json_array_get(steps, i), t, pass)) != 0)
			return rc;
	return 0;
}

/* Checks every environment block; applies the selected one, if any. */
static int apply_environments(struct vctx *v, const json_t *envs, const char *environment,
                              struct tpl *t)
{
	const char *env;
	json_t *block;
	int rc;

	json_object_foreach((json_t *)envs, env, block)
	{
		char item[128], where[132];
		const json_t *steps;
		int selected = environment != NULL && strcmp(env, environment) == 0;

		snprintf(item, sizeof(item), "environments.%.100s", env);
		snprintf(where, sizeof(where), "%s: ", item);
		if (json_is_null(block))
			continue;
		if (!json_is_object(block))
			return wrong_type(v, "", item, "a mapping", block);
		if ((rc = check_keys(v, where, "", block, env_rules, ARRAY_LEN(env_rules))) != 0)
			return rc;
		steps = get(block, "steps");
		if ((rc = override_pass(v, where, steps, t, CHECK_ONLY)) != 0)
			return rc;
		if (selected && ((rc = override_pass(v, where, steps, t, APPLY_ALL)) != 0 ||
		                 (rc = override_pass(v, where, steps, t, APPLY_NAMED)) != 0))
			return rc;
	}
	return 0;
}

/* ------------------------------------------------------------ template */

/* Cross-field checks on the final values. */
static int check_steps_final(struct vctx *v, const struct tpl *t)
{
	for (size_t i = 0; i < t->n_steps; i++) {
		const struct tpl_step *st = &t->steps[i];

		if (st->backoff_base_ms > st->max_backoff_ms)
			return invalid(v,
			               "step \"%s\": retry.backoff_base_ms %d exceeds "
			               "retry.max_backoff_ms %d",
			               st->name, st->backoff_base_ms, st->max_backoff_ms);
	}
	return 0;
}

static int parse_steps(struct vctx *v, const json_t *steps, struct tpl *t)
{
	size_t n = json_array_size(steps);
	int rc;

	if (n == 0)
		return invalid(v, "steps is empty");
	t->steps = calloc(n, sizeof(*t->steps));
	if (t->steps == NULL)
		return nomem(v->err, v->src);
	for (size_t i = 0; i < n; i++) {
		/* n_steps counts the steps that tpl_free must look at */
		t->n_steps = i + 1;
		if ((rc = parse_step(v, json_array_get(steps, i), i, t)) != 0)
			return rc;
	}
	return 0;
}

static int parse_top(struct vctx *v, const json_t *root, struct tpl *t)
{
	const json_t *strategy;
	int rc;

	if ((rc = check_keys(v, "", "", root, top_rules, ARRAY_LEN(top_rules))) != 0 ||
	    (rc = check_name(v, "", "name", json_string_value(get(root, "name")),
	                     NAME_MAX_TEMPLATE)) != 0 ||
	    (rc = check_name(v, "", "namespace_name",
	                     json_string_value(get(root, "namespace_name")), NAME_MAX_TEMPLATE)) !=
	        0 ||
	    (rc = check_version(v, get(root, "version"))) != 0 ||
	    (rc = check_nested(v, "", root, "metadata", metadata_rules,
	                       ARRAY_LEN(metadata_rules))) != 0 ||
	    (rc = check_nested(v, "", root, "system_dependencies", sysdeps_rules,
	                       ARRAY_LEN(sysdeps_rules))) != 0 ||
	    (rc = check_nested(v, "", root, "lifecycle", lifecycle_rules,
	                       ARRAY_LEN(lifecycle_rules))) != 0)
		return rc;
	strategy = get(root, "identity_strategy");
	if (strategy != NULL &&
	    (rc = check_enum(v, "", "identity_strategy", json_string_value(strategy),
	                     identity_strategies, ARRAY_LEN(identity_strategies))) != 0)
		return rc;
	if ((rc = dup_member(v, root, "name", &t->name)) != 0 ||
	    (rc = dup_member(v, root, "namespace_name", &t->namespace_name)) != 0 ||
	    (rc = dup_member(v, root, "version", &t->version)) != 0 ||
	    (rc = dup_member(v, root, "description", &t->description)) != 0)
		return rc;
	if (dup_str(strategy ? json_string_value(strategy) : "strict", &t->identity_strategy))
		return nomem(v->err, v->src);
	if (get(root, "lifecycle") != NULL &&
	    (t->lifecycle = json_deep_copy(get(root, "lifecycle"))) == NULL)
		return nomem(v->err, v->src);
	return 0;
}

/* ------------------------------------------------------------ effective JSON */

static int step_config(json_t *s, const struct tpl_step *st)
{
	json_t *deps = json_array(), *retry, *handler = json_object_get(s, "handler");

	if (deps == NULL || json_object_set_new(s, "dependencies", deps))
		return -1;
	for (size_t i = 0; i < st->n_dependencies; i++)
		if (json_array_append_new(deps, json_string(st->dependencies[i])))
			return -1;
	json_object_del(s, "depends_on");
	json_object_del(s, "step_type");
	if (json_object_set_new(s, "type", json_string(st->type)) ||
	    json_object_set_new(handler, "initialization", json_deep_copy(st->initialization)))
		return -1;
	if (st->timeout_seconds != 0 &&
	    json_object_set_new(s, "timeout_seconds", json_integer(st->timeout_seconds)))
		return -1;
	retry = json_object_get(s, "retry");
	if (!json_is_object(retry) && json_object_set_new(s, "retry", retry = json_object()))
		return -1;
	json_object_del(retry, "limit");
	return json_object_set_new(retry, "retryable", json_boolean(st->retryable)) ||
	       json_object_set_new(retry, "max_attempts", json_integer(st->max_attempts)) ||
	       json_object_set_new(retry, "backoff", json_string(st->backoff)) ||
	       json_object_set_new(retry, "backoff_base_ms", json_integer(st->backoff_base_ms)) ||
	       json_object_set_new(retry, "max_backoff_ms", json_integer(st->max_backoff_ms));
}

static int build_config(struct vctx *v, const json_t *root, struct tpl *t)
{
	json_t *steps;

	t->config = json_deep_copy(root);
	if (t->config == NULL ||
	    json_object_set_new(t->config, "identity_strategy", json_string(t->identity_strategy)))
		return nomem(v->err, v->src);
	steps = json_object_get(t->config, "steps");
	for (size_t i = 0; i < t->n_steps; i++)
		if (step_config(json_array_get(steps, i), &t->steps[i]))
			return nomem(v->err, v->src);
	return 0;
}

static int build_tpl(struct vctx *v, const json_t *root, const char *environment, struct tpl *t)
{
	int rc;

	if (root == NULL)
		return invalid(v, "the document is empty");
	if (!json_is_object(root)) {
		char desc[96];

		describe(v, root, desc, sizeof(desc));
		return invalid(v, "expected a mapping at the top level, got %s", desc);
	}
	if ((rc = parse_top(v, root, t)) != 0 ||
	    (rc = parse_steps(v, get(root, "steps"), t)) != 0 || (rc = check_graph(v, t)) != 0 ||
	    (rc = apply_environments(v, get(root, "environments"), environment, t)) != 0 ||
	    (rc = check_steps_final(v, t)) != 0)
		return rc;
	return build_config(v, root, t);
}

/* ================================================================== public: parsing */

int tpl_parse_string(const char *yaml, size_t len, const char *source_name, const char *environment,
                     struct tpl **out, struct tk_err *err)
{
	const char *src = source_name ? source_name : "<string>";
	struct loader *ld;
	struct vctx v = {.src = src, .err = err};
	struct tpl *t;
	int rc;

	if (len > TPL_MAX_FILE_BYTES)
		return fail_code(err, TRPC_ERR_TOO_LARGE, src, "larger than %d bytes",
		                 TPL_MAX_FILE_BYTES);
	ld = calloc(1, sizeof(*ld));
	t = calloc(1, sizeof(*t));
	if (ld == NULL || t == NULL) {
		rc = nomem(err, src);
		goto fail_alloc;
	}
	ld->src = src;
	ld->err = err;
	v.ld = ld;
	if ((rc = load_yaml(ld, yaml, len)) != 0 || (rc = build_tpl(&v, ld->root, environment, t)))
		goto fail_parse;
	if ((t->source = strdup(src)) == NULL) {
		rc = nomem(err, src);
		goto fail_parse;
	}
	loader_clear(ld);
	free(ld);
	*out = t;
	return 0;

fail_parse:
	loader_clear(ld);
fail_alloc:
	free(ld);
	tpl_free(t);
	return rc;
}

/* Reads a whole regular file into a new buffer. */
static int read_file(const char *path, char **buf, size_t *len, struct tk_err *err)
{
	struct stat sb;
	size_t got = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC), rc = 0;

	if (fd == -1)
		return fail_code(err, TRPC_ERR_SYSTEM, path, "%s", strerror(errno));
	if (fstat(fd, &sb) == -1) {
		rc = fail_code(err, TRPC_ERR_SYSTEM, path, "%s", strerror(errno));
		goto out_close;
	}
	if (!S_ISREG(sb.st_mode)) {
		rc = fail_code(err, TRPC_ERR_SYSTEM, path, "not a regular file");
		goto out_close;
	}
	if (sb.st_size > TPL_MAX_FILE_BYTES) {
		rc = fail_code(err, TRPC_ERR_TOO_LARGE, path, "larger than %d bytes",
		               TPL_MAX_FILE_BYTES);
		goto out_close;
	}
	/* one byte more than fstat says, to notice a file that grew */
	*buf = malloc((size_t)sb.st_size + 1);
	if (*buf == NULL) {
		rc = nomem(err, path);
		goto out_close;
	}
	for (;;) {
		ssize_t r = read(fd, *buf + got, (size_t)sb.st_size + 1 - got);

		if (r == -1 && errno == EINTR)
			continue;
		if (r == -1) {
			rc = fail_code(err, TRPC_ERR_SYSTEM, path, "%s", strerror(errno));
			free(*buf);
			goto out_close;
		}
		if (r == 0 || (got += (size_t)r) == (size_t)sb.st_size + 1)
			break;
	}
	if (got > (size_t)sb.st_size) {
		rc = fail_code(err, TRPC_ERR_SYSTEM, path, "changed while being read");
		free(*buf);
		goto out_close;
	}
	*len = got;
out_close:
	close(fd);
	return rc;
}

int tpl_parse_file(const char *path, const char *environment, struct tpl **out, struct tk_err *err)
{
	char *buf = NULL;
	size_t len = 0;
	int rc = read_file(path, &buf, &len, err);

	if (rc != 0)
		return rc;
	rc = tpl_parse_string(buf, len, path, environment, out, err);
	free(buf);
	return rc;
}

/* ================================================================== public: discovery */

struct file_id {
	dev_t dev;
	ino_t ino;
};

struct walk {
	const char *environment;
	struct tk_err *err;
	struct tpl **list;
	size_t n, cap;
	struct file_id *seen; /* directories and files already read */
	size_t n_seen, cap_seen;
};

/* Returns 1 if the file was seen before, else records it; -1 out of memory. */
static int seen_before(struct walk *w, const struct stat *sb)
{
	struct file_id *seen;

	for (size_t i = 0; i < w->n_seen; i++)
		if (w->seen[i].dev == sb->st_dev && w->seen[i].ino == sb->st_ino)
			return 1;
	if ((seen = grow(w->seen, &w->cap_seen, w->n_seen, sizeof(*seen))) == NULL)
		return -1;
	w->seen = seen;
	w->seen[w->n_seen++] = (struct file_id){sb->st_dev, sb->st_ino};
	return 0;
}

static int same_id(const struct tpl *a, const struct tpl *b)
{
	return strcmp(a->namespace_name, b->namespace_name) == 0 && strcmp(a->name, b->name) == 0 &&
	       strcmp(a->version, b->version) == 0;
}

static int add_file(struct walk *w, const char *path)
{
	struct tpl *t, **list;
	int rc = tpl_parse_file(path, w->environment, &t, w->err);

	if (rc != 0)
		return rc;
	for (size_t i = 0; i < w->n; i++)
		if (same_id(w->list[i], t)) {
			rc = fail_code(w->err, TRPC_ERR_INVALID, path,
			               "template %s/%s version %s is already defined in %s",
			               t->namespace_name, t->name, t->version, w->list[i]->source);
			tpl_free(t);
			return rc;
		}
	if ((list = grow(w->list, &w->cap, w->n, sizeof(*list))) == NULL) {
		tpl_free(t);
		return nomem(w->err, path);
	}
	w->list = list;
	w->list[w->n++] = t;
	return 0;
}

static int has_yaml_ext(const char *name)
{
	const char *dot = strrchr(name, '.');

	return dot != NULL && dot != name &&
	       (strcmp(dot, ".yml") == 0 || strcmp(dot, ".yaml") == 0);
}

static int by_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The visible entries of a directory, sorted. */
static int list_dir(const char *path, char ***names, size_t *n, struct tk_err *err)
{
	DIR *d = opendir(path);
	struct dirent *de;
	char **grown;
	size_t cap = 0;
	int rc = 0;

	*names = NULL;
	*n = 0;
	if (d == NULL)
		return fail_code(err, TRPC_ERR_SYSTEM, path, "%s", strerror(errno));
	for (;;) {
		errno = 0;
		if ((de = readdir(d)) == NULL) {
			if (errno != 0)
				rc = fail_code(err, TRPC_ERR_SYSTEM, path, "%s", strerror(errno));
			break;
		}
		if (de->d_name[0] == '.')
			continue;
		if ((grown = grow(*names, &cap, *n, sizeof(*grown))) != NULL)
			*names = grown;
		if (grown == NULL || (grown[*n] = strdup(de->d_name)) == NULL) {
			rc = nomem(err, path);
			break;
		}
		(*n)++;
	}
	closedir(d);
	if (rc == 0 && *n > 1)
		qsort(*names, *n, sizeof(**names), by_name);
	return rc;
}

static int walk_path(struct walk *w, const char *path, int top);

static int walk_dir(struct walk *w, const char *path)
{
	char **names;
	size_t n;
	int rc = list_dir(path, &names, &n, w->err);
	size_t plen = strlen(path);

	/* "dir/" and "/" must not become "dir//x" */
	while (plen > 1 && path[plen - 1] == '/')
		plen--;
	for (size_t i = 0; i < n && rc == 0; i++) {
		size_t size = plen + strlen(names[i]) + 2;
		char *child = malloc(size);

		if (child == NULL) {
			rc = nomem(w->err, path);
			break;
		}
		snprintf(child, size, "%.*s%s%s", (int)plen, path,
		         plen && path[plen - 1] == '/' ? "" : "/", names[i]);
		rc = walk_path(w, child, 0);
		free(child);
	}
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	return rc;
}

/* top: an element of the search path, which must exist and may be a file
 * of any name. Below it, only *.yml and *.yaml files are read and entries
 * that cannot be stat'ed (a dangling link) are errors only if they would
 * be read. */
static int walk_path(struct walk *w, const char *path, int top)
{
	struct stat sb;
	int seen;

	if (stat(path, &sb) == -1) {
		if (top || has_yaml_ext(path))
			return fail_code(w->err, TRPC_ERR_SYSTEM, path, "%s", strerror(errno));
		return 0;
	}
	if (!S_ISDIR(sb.st_mode) && !(S_ISREG(sb.st_mode) && (top || has_yaml_ext(path))))
		return top ? fail_code(w->err, TRPC_ERR_SYSTEM, path, "not a directory or a file")
		           : 0;
	if ((seen = seen_before(w, &sb)) != 0)
		return seen < 0 ? nomem(w->err, path) : 0;
	return S_ISDIR(sb.st_mode) ? walk_dir(w, path) : add_file(w, path);
}

int tpl_discover(const char *dirs, const char *environment, struct tpl ***out, size_t *n,
                 struct tk_err *err)
{
	struct walk w = {.environment = environment, .err = err};
	const char *p = dirs ? dirs : "";
	int rc = 0;

	while (rc == 0 && *p != '\0') {
		size_t len = strcspn(p, ":");
		char *dir;

		if (len > 0) {
			if ((dir = strndup(p, len)) == NULL) {
				rc = nomem(err, "template search path");
				break;
			}
			rc = walk_path(&w, dir, 1);
			free(dir);
		}
		p += len + (p[len] == ':');
	}
	free(w.seen);
	if (rc != 0) {
		tpl_free_all(w.list, w.n);
		return rc;
	}
	*out = w.list;
	*n = w.n;
	return 0;
}

/* ================================================================== public: the rest */

static void step_free(struct tpl_step *st)
{
	free(st->name);
	free(st->description);
	free(st->type);
	free(st->handler_callable);
	free(st->handler_method);
	free(st->handler_resolver);
	json_decref(st->initialization);
	for (size_t i = 0; i < st->n_dependencies; i++)
		free(st->dependencies[i]);
	free(st->dependencies);
	free(st->backoff);
}

void tpl_free(struct tpl *t)
{
	if (t == NULL)
		return;
	for (size_t i = 0; i < t->n_steps; i++)
		step_free(&t->steps[i]);
	free(t->steps);
	free(t->name);
	free(t->namespace_name);
	free(t->version);
	free(t->description);
	free(t->identity_strategy);
	json_decref(t->lifecycle);
	json_decref(t->config);
	free(t->source);
	free(t);
}

void tpl_free_all(struct tpl **list, size_t n)
{
	for (size_t i = 0; i < n; i++)
		tpl_free(list[i]);
	free(list);
}

const struct tpl_step *tpl_step(const struct tpl *t, const char *name)
{
	size_t i = step_index(t, name);

	return i == SIZE_MAX ? NULL : &t->steps[i];
}

int tpl_topo_order(const struct tpl *t, size_t *order)
{
	struct graph g;
	size_t bad_step, bad_dep, done;
	char *placed;
	int rc = graph_build(t, &g, &bad_step, &bad_dep);

	if (rc != 0)
		return rc;
	placed = malloc(t->n_steps ? t->n_steps : 1);
	if (placed == NULL) {
		graph_free(&g);
		return TRPC_ERR_NOMEM;
	}
	done = graph_order(&g, t->n_steps, order, placed);
	free(placed);
	graph_free(&g);
	return done == t->n_steps ? 0 : TRPC_ERR_INVALID;
}

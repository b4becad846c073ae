/*
 * output: JSON lines, "key: value" blocks and aligned tables. See output.h.
 */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/output.h"
#include "web/pbjson.h"

#define CELL_MAX 512

/* Enum value prefixes of tasker.v1 (tasker-api.md §1.2), longest first
 * where one is the start of another. */
static const char *const enum_prefixes[] = {
    "TASK_STATE_",
    "STEP_STATE_",
    "DLQ_RESOLUTION_STATUS_",
    "DLQ_REASON_",
    "STALENESS_HEALTH_STATUS_",
    "UPDATE_TYPE_",
    "STEP_MANUAL_ACTION_TYPE_",
    "RESOLUTION_STRATEGY_",
    "STEP_RUN_MODE_",
    "SORT_DIRECTION_",
    NULL,
};

/* Fields holding free-form JSON: shown whole, never flattened. */
static const char *const opaque_keys[] = {
    "context", "results", "result", "metadata",        "task_snapshot", "configuration",
    "inputs",  "outputs", "merged", "completion_data", "options",       NULL,
};

static int in_list(const char *const *list, const char *s)
{
	for (; list != NULL && *list != NULL; list++) {
		if (strcmp(*list, s) == 0) {
			return 1;
		}
	}
	return 0;
}

/* ------------------------------------------------------------------ paths */

/* One dotted path, no alternatives. */
static json_t *get_one(json_t *v, const char *path, size_t len)
{
	char key[128];

	while (v != NULL && len > 0) {
		const char *dot = memchr(path, '.', len);
		size_t n = dot != NULL ? (size_t)(dot - path) : len;

		if (n >= sizeof key || !json_is_object(v)) {
			return NULL;
		}
		memcpy(key, path, n);
		key[n] = '\0';
		v = json_object_get(v, key);
		path += n;
		len -= n;
		if (len > 0) {
			path++, len--;
		}
	}
	return v;
}

json_t *cli_json_get(json_t *v, const char *path)
{
	const char *bar;
	json_t *r;

	for (;;) {
		bar = strchr(path, '|');
		r = get_one(v, path, bar != NULL ? (size_t)(bar - path) : strlen(path));
		if ((r != NULL && !json_is_null(r)) || bar == NULL) {
			return r;
		}
		path = bar + 1;
	}
}

json_t *cli_json_unwrap(json_t *v, const char *path)
{
	json_t *inner = cli_json_get(v, path);

	return json_is_object(inner) ? inner : v;
}

json_t *cli_json_rows(json_t *v, const char *path)
{
	json_t *rows;

	if (json_is_array(v)) {
		return v;
	}
	rows = cli_json_get(v, path);
	return json_is_array(rows) ? rows : NULL;
}

/* ------------------------------------------------------------------ text */

const char *cli_enum_text(const char *s, char *buf, size_t size)
{
	const char *const *p;
	size_t i, n;

	for (p = enum_prefixes; *p != NULL; p++) {
		n = strlen(*p);
		if (strncmp(s, *p, n) == 0 && s[n] != '\0') {
			for (i = 0; s[n + i] != '\0' && i + 1 < size; i++) {
				buf[i] = (char)tolower((unsigned char)s[n + i]);
			}
			buf[i] = '\0';
			return buf;
		}
	}
	snprintf(buf, size, "%s", s);
	return buf;
}

static void number_text(double d, char *buf, size_t size)
{
	if (d == floor(d) && fabs(d) < 1e15) {
		snprintf(buf, size, "%.0f", d);
	} else {
		snprintf(buf, size, "%.2f", d);
	}
}

const char *cli_text(json_t *v, char *buf, size_t size)
{
	char *dump;
	size_t i, used;

	if (v == NULL) {
		return "-";
	}
	switch (json_typeof(v)) {
	case JSON_STRING:
		if (json_string_length(v) == 0) {
			return "-";
		}
		return cli_enum_text(json_string_value(v), buf, size);
	case JSON_INTEGER:
		snprintf(buf, size, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
		return buf;
	case JSON_REAL:
		number_text(json_real_value(v), buf, size);
		return buf;
	case JSON_TRUE:
		return "true";
	case JSON_FALSE:
		return "false";
	case JSON_ARRAY:
		if (json_array_size(v) == 0) {
			return "-";
		}
		for (i = 0, used = 0; i < json_array_size(v); i++) {
			json_t *e = json_array_get(v, i);
			char item[CELL_MAX];

			if (json_is_object(e) || json_is_array(e) || used >= size) {
				break;
			}
			used += (size_t)snprintf(buf + used, used < size ? size - used : 0, "%s%s",
			                         i ? ", " : "", cli_text(e, item, sizeof item));
		}
		if (i == json_array_size(v)) {
			return buf;
		}
		break;
	case JSON_OBJECT:
		break;
	case JSON_NULL:
	default:
		return "-";
	}
	dump = pbjson_dumps(v, NULL);
	snprintf(buf, size, "%s", dump != NULL ? dump : "?");
	free(dump);
	return buf;
}

/* ------------------------------------------------------------------ printing */

void cli_print_json(json_t *v)
{
	char *s = pbjson_dumps(v, NULL);

	if (s == NULL) {
		fputs("null\n", stdout);
		return;
	}
	fputs(s, stdout);
	fputc('\n', stdout);
	free(s);
}

void cli_print_heading(const char *title)
{
	printf("\n%s:\n", title);
}

/* The lines of a "key: value" block, gathered first to align the keys. */
struct kv {
	char **keys, **vals;
	size_t n, cap;
	size_t width;
};

static void kv_add(struct kv *kv, const char *key, const char *val)
{
	if (kv->n == kv->cap) {
		size_t cap = kv->cap ? kv->cap * 2 : 32;
		char **k = realloc(kv->keys, cap * sizeof *k);
		char **v;

		if (k == NULL) {
			return;
		}
		kv->keys = k;
		v = realloc(kv->vals, cap * sizeof *v);
		if (v == NULL) {
			return;
		}
		kv->vals = v;
		kv->cap = cap;
	}
	kv->keys[kv->n] = strdup(key);
	kv->vals[kv->n] = strdup(val);
	if (kv->keys[kv->n] == NULL || kv->vals[kv->n] == NULL) {
		free(kv->keys[kv->n]);
		free(kv->vals[kv->n]);
		return;
	}
	if (strlen(key) > kv->width) {
		kv->width = strlen(key);
	}
	kv->n++;
}

static void kv_collect(struct kv *kv, json_t *obj, const char *prefix, const char *const *skip)
{
	const char *key;
	json_t *v;
	char full[256], text[CELL_MAX * 4];

	json_object_foreach(obj, key, v)
	{
		if (prefix[0] == '\0' && in_list(skip, key)) {
			continue;
		}
		snprintf(full, sizeof full, "%s%s%s", prefix, prefix[0] ? "." : "", key);
		if (json_is_object(v) && !in_list(opaque_keys, key) && json_object_size(v) != 0) {
			kv_collect(kv, v, full, NULL);
		} else {
			kv_add(kv, full, cli_text(v, text, sizeof text));
		}
	}
}

void cli_print_object(json_t *obj, const char *const *skip)
{
	struct kv kv;
	size_t i;

	memset(&kv, 0, sizeof kv);
	if (!json_is_object(obj)) {
		char text[CELL_MAX * 4];

		printf("%s\n", cli_text(obj, text, sizeof text));
		return;
	}
	kv_collect(&kv, obj, "", skip);
	for (i = 0; i < kv.n; i++) {
		printf("%s:%*s %s\n", kv.keys[i], (int)(kv.width - strlen(kv.keys[i])), "",
		       kv.vals[i]);
		free(kv.keys[i]);
		free(kv.vals[i]);
	}
	free(kv.keys);
	free(kv.vals);
}

/* The last cell of a line is not padded (no trailing blanks). */
static void print_cell(const char *text, size_t width, int last)
{
	if (last) {
		printf("%s\n", text);
	} else {
		printf("%-*s  ", (int)width, text);
	}
}

void cli_print_table(json_t *rows, const struct cli_col *cols)
{
	size_t ncols, r, k, nrows = json_array_size(rows);
	size_t *width;
	char *cells;

	for (ncols = 0; cols[ncols].header != NULL; ncols++) {
	}
	width = calloc(ncols, sizeof *width);
	cells = calloc((nrows ? nrows : 1) * ncols, CELL_MAX);
	if (width == NULL || cells == NULL) {
		free(width);
		free(cells);
		fputs("(out of memory)\n", stdout);
		return;
	}
	for (k = 0; k < ncols; k++) {
		width[k] = strlen(cols[k].header);
	}
	for (r = 0; r < nrows; r++) {
		for (k = 0; k < ncols; k++) {
			char *cell = cells + (r * ncols + k) * CELL_MAX;
			const char *t = cli_text(
			    cli_json_get(json_array_get(rows, r), cols[k].path), cell, CELL_MAX);

			if (t != cell) {
				snprintf(cell, CELL_MAX, "%s", t);
			}
			if (strlen(cell) > width[k]) {
				width[k] = strlen(cell);
			}
		}
	}
	for (k = 0; k < ncols; k++) {
		print_cell(cols[k].header, width[k], k + 1 == ncols);
	}
	for (r = 0; r < nrows; r++) {
		for (k = 0; k < ncols; k++) {
			print_cell(cells + (r * ncols + k) * CELL_MAX, width[k], k + 1 == ncols);
		}
	}
	free(width);
	free(cells);
}

void cli_show(const struct cli *c, json_t *resp, cli_show_fn show)
{
	if (c->format == CLI_FORMAT_JSON) {
		cli_print_json(resp);
	} else {
		show(resp);
	}
}

int cli_call_and_show(struct cli *c, const struct cli_request *r, cli_show_fn show)
{
	json_t *resp = NULL;
	int rc = cli_call(c, r, &resp);

	if (resp != NULL) {
		cli_show(c, resp, show);
		json_decref(resp);
	}
	return rc;
}

/*
 * settings: the worker's keys as a table of rows (section, key, type, field
 * offset, range, default); see settings.h for the list.
 */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tasker/rpc.h"
#include "worker/settings.h"

enum row_type {
	ROW_STRING = 1,
	ROW_INT = 2,
	ROW_SECONDS = 3, /* duration stored in whole seconds */
	ROW_MILLIS = 4   /* duration stored in milliseconds */
};

struct row {
	const char *section, *key;
	enum row_type type;
	size_t offset;
	long long min, max; /* ROW_INT: the value; durations: milliseconds */
	const char *def;    /* NULL: no default */
};

#define F(field) offsetof(struct wk_settings, field)
#define DAY_MS   (24LL * 3600 * 1000)

static const struct row rows[] = {
    {"database", "url", ROW_STRING, F(database_url), 0, 0, NULL},
    {"database", "pool_size", ROW_INT, F(db_pool_size), 0, 1000, "0"},
    {"worker", "template_path", ROW_STRING, F(template_path), 0, 0, NULL},
    {"template", "path", ROW_STRING, F(template_path), 0, 0, NULL},
    {"worker", "namespaces", ROW_STRING, F(namespaces), 0, 0, NULL},
    {"worker", "environment", ROW_STRING, F(environment), 0, 0, NULL},
    {"worker", "concurrency", ROW_INT, F(concurrency), 1, 1024, "8"},
    {"worker", "visibility_timeout", ROW_SECONDS, F(visibility_timeout_s), 1000, DAY_MS, "30"},
    {"worker", "step_timeout", ROW_MILLIS, F(step_timeout_ms), 1, DAY_MS, "300"},
    {"worker", "poll_interval", ROW_MILLIS, F(poll_interval_ms), 10, 3600 * 1000, "5"},
    {"worker", "batch_size", ROW_INT, F(batch_size), 1, 1000, "10"},
    {"worker", "shutdown_timeout", ROW_MILLIS, F(shutdown_timeout_ms), 0, DAY_MS, "30"},
    {"worker", "exec_dir", ROW_STRING, F(exec_dir), 0, 0, NULL},
    {"worker", "plugin_dir", ROW_STRING, F(plugin_dir), 0, 0, NULL},
    {"worker", "grpc_bind_address", ROW_STRING, F(grpc_bind_address), 0, 0, "0.0.0.0:9100"},
};

#define N_ROWS (sizeof(rows) / sizeof(rows[0]))

static _Thread_local char why_buf[256];

static char **str_field(struct wk_settings *cfg, const struct row *r)
{
	return (char **)((char *)cfg + r->offset);
}

static int *int_field(struct wk_settings *cfg, const struct row *r)
{
	return (int *)((char *)cfg + r->offset);
}

/* "250ms", "30", "30s", "2m", "1h" -> milliseconds. Returns 0 or -1. */
static int parse_duration_ms(const char *s, long long *ms)
{
	static const struct {
		const char *unit;
		long long scale;
	} units[] = {{"ms", 1}, {"s", 1000}, {"", 1000}, {"m", 60000}, {"h", 3600000}};
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (end == s || errno != 0 || !(v >= 0) || v > 1e12)
		return -1;
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (strcmp(end, units[i].unit) == 0) {
			*ms = (long long)(v * (double)units[i].scale + 0.5);
			return 0;
		}
	}
	return -1;
}

static int bad(const char **why, const struct row *r, const char *value, const char *problem)
{
	snprintf(why_buf, sizeof(why_buf), "[%s] %s: \"%.64s\": %s", r->section, r->key, value,
	         problem);
	*why = why_buf;
	return TRPC_ERR_INVALID;
}

static int set_row(struct wk_settings *cfg, const struct row *r, const char *value,
                   const char **why)
{
	long long v = 0;
	char *end, *copy;

	switch (r->type) {
	case ROW_STRING:
		/* An empty value clears the key. */
		copy = *value != '\0' ? strdup(value) : NULL;
		if (*value != '\0' && copy == NULL)
			return TRPC_ERR_NOMEM;
		free(*str_field(cfg, r));
		*str_field(cfg, r) = copy;
		return 0;
	case ROW_INT:
		errno = 0;
		v = strtoll(value, &end, 10);
		if (end == value || *end != '\0' || errno != 0)
			return bad(why, r, value, "not an integer");
		break;
	case ROW_SECONDS:
	case ROW_MILLIS:
		if (parse_duration_ms(value, &v) != 0)
			return bad(why, r, value, "not a duration (a number with ms, s, m or h)");
		if (r->type == ROW_SECONDS && v % 1000 != 0)
			return bad(why, r, value, "must be whole seconds");
		break;
	}
	if (v < r->min || v > r->max) {
		char range[96];
		if (r->type == ROW_INT)
			snprintf(range, sizeof(range), "must be between %lld and %lld", r->min,
			         r->max);
		else
			snprintf(range, sizeof(range), "must be between %lld ms and %lld ms",
			         r->min, r->max);
		return bad(why, r, value, range);
	}
	*int_field(cfg, r) = (int)(r->type == ROW_SECONDS ? v / 1000 : v);
	return 0;
}

int wk_settings_init(struct wk_settings *cfg)
{
	const char *why;

	memset(cfg, 0, sizeof(*cfg));
	for (size_t i = 0; i < N_ROWS; i++)
		if (rows[i].def != NULL && set_row(cfg, &rows[i], rows[i].def, &why) != 0)
			return TRPC_ERR_NOMEM;
	return 0;
}

void wk_settings_clear(struct wk_settings *cfg)
{
	if (cfg == NULL)
		return;
	for (size_t i = 0; i < N_ROWS; i++)
		if (rows[i].type == ROW_STRING) {
			free(*str_field(cfg, &rows[i]));
			*str_field(cfg, &rows[i]) = NULL;
		}
}

int wk_settings_set(struct wk_settings *cfg, const char *section, const char *key,
                    const char *value, const char **why)
{
	for (size_t i = 0; i < N_ROWS; i++)
		if (strcmp(rows[i].section, section) == 0 && strcmp(rows[i].key, key) == 0)
			return set_row(cfg, &rows[i], value, why);
	return TRPC_ERR_CONFIG;
}

int wk_settings_key(size_t i, const char **section, const char **key)
{
	if (i >= N_ROWS)
		return TRPC_ERR_NOT_FOUND;
	*section = rows[i].section;
	*key = rows[i].key;
	return 0;
}

int wk_settings_from_env(struct wk_settings *cfg, trpc_config_keys *taken, const char **why)
{
	static const struct {
		const char *var, *section, *key;
	} vars[] = {
	    {"DATABASE_URL", "database", "url"},
	    {"TASKER_TEMPLATE_PATH", "worker", "template_path"},
	    {"TASKER_WORKER_NAMESPACES", "worker", "namespaces"},
	    {"TASKER_WORKER_GRPC_BIND_ADDRESS", "worker", "grpc_bind_address"},
	};
	int rc;

	for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++) {
		const char *v = getenv(vars[i].var);
		if (v == NULL)
			continue;
		if ((rc = wk_settings_set(cfg, vars[i].section, vars[i].key, v, why)) != 0)
			return rc;
		if (taken != NULL &&
		    (rc = trpc_config_keys_set(taken, vars[i].section, vars[i].key, v)) != 0) {
			*why = "out of memory";
			return rc;
		}
	}
	return 0;
}

int wk_settings_check(const struct wk_settings *cfg, const char **why)
{
	if (cfg->database_url == NULL)
		*why = "no database: set DATABASE_URL or [database] url";
	else if (cfg->template_path == NULL)
		*why = "no templates: set TASKER_TEMPLATE_PATH or [worker] template_path";
	else
		return 0;
	return TRPC_ERR_CONFIG;
}

/*
 * admin: template discovery, analytics, the DLQ investigation log and the
 * health checks of taskerd (admin.h). The SQL lives here; the functions
 * of migrations 0005 (DLQ) and 0006 (analytics) do the arithmetic.
 */
#include "config.h"

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "engine/admin.h"
#include "engine/engine_int.h"

/* Instants are read as extract(epoch FROM ...): seconds since 1970 with
 * microseconds ("1718000000.123456"), see col_time(). */

#define ADM_MAX_LIMIT 1000

/* ------------------------------------------------------------------ result columns */

static const char *col_str(const PGresult *r, int row, int c)
{
	return PQgetisnull(r, row, c) ? NULL : PQgetvalue(r, row, c);
}

static int64_t col_i64(const PGresult *r, int row, int c)
{
	return PQgetisnull(r, row, c) ? 0 : strtoll(PQgetvalue(r, row, c), NULL, 10);
}

static double col_f64(const PGresult *r, int row, int c)
{
	return PQgetisnull(r, row, c) ? 0.0 : strtod(PQgetvalue(r, row, c), NULL);
}

static int col_bool(const PGresult *r, int row, int c)
{
	return !PQgetisnull(r, row, c) && PQgetvalue(r, row, c)[0] == 't';
}

/* An EPOCH() column: whole seconds, then up to nine digits of fraction. */
static struct adm_time col_time(const PGresult *r, int row, int c)
{
	struct adm_time t = {0};
	if (PQgetisnull(r, row, c))
		return t;
	const char *s = PQgetvalue(r, row, c);
	char *end;
	int neg = *s == '-';
	t.seconds = strtoll(s, &end, 10);
	if (*end == '.') {
		int32_t frac = 0, digits = 0;
		for (const char *p = end + 1; *p >= '0' && *p <= '9'; p++)
			if (digits < 9) {
				frac = frac * 10 + (*p - '0');
				digits++;
			}
		for (; digits < 9; digits++)
			frac *= 10;
		/* -1.5 is -2 s + 0.5e9 ns in the Timestamp convention */
		if (neg && frac > 0) {
			t.seconds -= 1;
			frac = 1000000000 - frac;
		}
		t.nanos = frac;
	}
	t.valid = 1;
	return t;
}

void adm_time_iso(const struct adm_time *t, char *buf, size_t size)
{
	struct tm tm;
	char day[32];
	time_t secs = (time_t)t->seconds;
	if (!t->valid || gmtime_r(&secs, &tm) == NULL) {
		snprintf(buf, size, "%s", "");
		return;
	}
	strftime(day, sizeof day, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf, size, "%s.%06dZ", day, (int)(t->nanos / 1000));
}

static void copy_str(char *dst, size_t size, const char *src)
{
	snprintf(dst, size, "%s", src != NULL ? src : "");
}

/* ------------------------------------------------------------------ queries */

/* v, checked against [min, max], as the text of a statement parameter. */
static int int_param(const char *what, int v, int min, int max, char *buf, size_t size,
                     struct tk_err *err)
{
	if (v < min || v > max)
		return tk_err_set(err, TRPC_ERR_INVALID, "%s must be between %d and %d (got %d)",
		                  what, min, max, v);
	snprintf(buf, size, "%d", v);
	return 0;
}

/* One statement on a pooled connection. */
static PGresult *run(struct eng *e, const char *name, const char *sql, int n,
                     const char *const *params, struct tk_err *err)
{
	PGconn *conn = db_acquire(e->pool, err);
	if (conn == NULL)
		return NULL;
	PGresult *res = db_exec_prepared(conn, name, sql, n, params, err);
	db_release(e->pool, conn, res == NULL && db_is_connection_error(conn));
	return res;
}

static int fail_code(const struct tk_err *err)
{
	return err->code != 0 ? err->code : TRPC_ERR_DB;
}

/* Rows of res as an array of `size`-byte structs, zeroed; NULL (with err)
 * on allocation failure. *n is the row count. */
static void *rows_alloc(PGresult *res, size_t size, size_t *n, struct tk_err *err)
{
	*n = (size_t)PQntuples(res);
	void *v = calloc(*n > 0 ? *n : 1, size);
	if (v == NULL)
		tk_err_set(err, TRPC_ERR_NOMEM, "out of memory");
	return v;
}

/* run(), then rows_alloc() for its result. *res is the result, kept when
 * the allocation fails: the caller's clear function frees both. NULL with
 * err set on failure. */
static void *run_rows(struct eng *e, const char *name, const char *sql, int n,
                      const char *const *params, PGresult **res, size_t size, size_t *nrows,
                      struct tk_err *err)
{
	*res = run(e, name, sql, n, params, err);
	return *res != NULL ? rows_alloc(*res, size, nrows, err) : NULL;
}

/* ================================================================== templates */

static const char SQL_TPL_NAMESPACES[] =
    "SELECT ns.name, ns.description, count(nt.named_task_uuid) "
    "FROM tasker.task_namespaces ns "
    "LEFT JOIN tasker.named_tasks nt ON nt.task_namespace_uuid = ns.task_namespace_uuid "
    "WHERE $1::text IS NULL OR ns.name = $1::text "
    "GROUP BY ns.task_namespace_uuid, ns.name, ns.description "
    "ORDER BY ns.name";

/* The step count is the registered template's: named_tasks_named_steps
 * keeps rows of steps a re-registered template no longer has. */
static const char SQL_TPL_LIST[] =
    "SELECT nt.name, ns.name, nt.version, nt.description, "
    "CASE WHEN jsonb_typeof(nt.configuration -> 'steps') = 'array' "
    "THEN jsonb_array_length(nt.configuration -> 'steps') ELSE 0 END "
    "FROM tasker.named_tasks nt "
    "JOIN tasker.task_namespaces ns ON ns.task_namespace_uuid = nt.task_namespace_uuid "
    "WHERE $1::text IS NULL OR ns.name = $1::text "
    "ORDER BY ns.name, nt.name, nt.version";

int adm_templates_list(struct eng *e, const char *namespace_name, struct adm_template_list *out,
                       struct tk_err *err)
{
	memset(out, 0, sizeof *out);
	const char *p[] = {namespace_name};
	PGconn *conn = db_acquire(e->pool, err);
	if (conn == NULL)
		return fail_code(err);
	out->res_ns = db_exec_prepared(conn, "adm_tpl_namespaces", SQL_TPL_NAMESPACES, 1, p, err);
	if (out->res_ns != NULL)
		out->res_tpl = db_exec_prepared(conn, "adm_tpl_list", SQL_TPL_LIST, 1, p, err);
	db_release(e->pool, conn, out->res_tpl == NULL && db_is_connection_error(conn));
	if (out->res_tpl == NULL)
		goto fail;

	PGresult *r = out->res_ns;
	if ((out->namespaces = rows_alloc(r, sizeof *out->namespaces, &out->n_namespaces, err)) ==
	    NULL)
		goto fail;
	for (size_t i = 0; i < out->n_namespaces; i++) {
		struct adm_namespace *ns = &out->namespaces[i];
		ns->name = col_str(r, (int)i, 0);
		ns->description = col_str(r, (int)i, 1);
		ns->template_count = col_i64(r, (int)i, 2);
	}
	r = out->res_tpl;
	if ((out->templates = rows_alloc(r, sizeof *out->templates, &out->n_templates, err)) ==
	    NULL)
		goto fail;
	for (size_t i = 0; i < out->n_templates; i++) {
		struct adm_template *t = &out->templates[i];
		t->name = col_str(r, (int)i, 0);
		t->namespace_name = col_str(r, (int)i, 1);
		t->version = col_str(r, (int)i, 2);
		t->description = col_str(r, (int)i, 3);
		t->step_count = col_i64(r, (int)i, 4);
	}
	return 0;
fail:
	adm_template_list_clear(out);
	return fail_code(err);
}

void adm_template_list_clear(struct adm_template_list *l)
{
	free(l->namespaces);
	free(l->templates);
	PQclear(l->res_ns);
	PQclear(l->res_tpl);
	memset(l, 0, sizeof *l);
}

/* One row per step of the registered template, in template order; a
 * template row without steps has NULL step columns. Retry defaults come
 * from the registry rows, else from the step's retry block. */
static const char SQL_TPL_GET[] =
    "SELECT nt.name, ns.name, nt.version, nt.description, nt.configuration::text, "
    "s.step -> 'name' #>> '{}', s.step -> 'description' #>> '{}', "
    "COALESCE(ntns.default_retryable, "
    "CASE jsonb_typeof(s.step -> 'retry' -> 'retryable') "
    "WHEN 'boolean' THEN (s.step -> 'retry' ->> 'retryable')::boolean END), "
    "COALESCE(ntns.default_max_attempts, "
    "CASE jsonb_typeof(s.step -> 'retry' -> 'max_attempts') "
    "WHEN 'number' THEN (s.step -> 'retry' ->> 'max_attempts')::numeric::integer END), "
    "s.ord "
    "FROM tasker.named_tasks nt "
    "JOIN tasker.task_namespaces ns ON ns.task_namespace_uuid = nt.task_namespace_uuid "
    "LEFT JOIN LATERAL jsonb_array_elements(CASE WHEN jsonb_typeof(nt.configuration -> "
    "'steps') = 'array' THEN nt.configuration -> 'steps' ELSE '[]'::jsonb END) "
    "WITH ORDINALITY AS s(step, ord) ON true "
    "LEFT JOIN tasker.named_steps nst ON nst.name = s.step ->> 'name' "
    "LEFT JOIN tasker.named_tasks_named_steps ntns "
    "ON ntns.named_task_uuid = nt.named_task_uuid AND ntns.named_step_uuid = nst.named_step_uuid "
    "WHERE ns.name = $1::text AND nt.name = $2::text AND nt.version = $3::text "
    "ORDER BY s.ord";

int adm_template_get(struct eng *e, const char *namespace_name, const char *name,
                     const char *version, struct adm_template_detail *out, struct tk_err *err)
{
	memset(out, 0, sizeof *out);
	if (namespace_name == NULL || *namespace_name == '\0' || name == NULL || *name == '\0' ||
	    version == NULL || *version == '\0')
		return tk_err_set(err, TRPC_ERR_INVALID,
		                  "namespace, name and version are required");
	const char *p[] = {namespace_name, name, version};
	PGresult *r = run(e, "adm_tpl_get", SQL_TPL_GET, 3, p, err);
	if (r == NULL)
		return fail_code(err);
	out->res = r;
	if (PQntuples(r) == 0) {
		adm_template_detail_clear(out);
		return tk_err_set(err, TRPC_ERR_NOT_FOUND,
		                  "template %.64s/%.64s@%.16s is not registered", namespace_name,
		                  name, version);
	}
	out->name = col_str(r, 0, 0);
	out->namespace_name = col_str(r, 0, 1);
	out->version = col_str(r, 0, 2);
	out->description = col_str(r, 0, 3);
	out->configuration_json = col_str(r, 0, 4);
	size_t rows;
	if ((out->steps = rows_alloc(r, sizeof *out->steps, &rows, err)) == NULL) {
		adm_template_detail_clear(out);
		return TRPC_ERR_NOMEM;
	}
	for (size_t i = 0; i < rows; i++) {
		if (PQgetisnull(r, (int)i, 9))
			continue; /* a template without steps: no step row */
		struct adm_step_def *s = &out->steps[out->n_steps++];
		s->name = col_str(r, (int)i, 5);
		s->description = col_str(r, (int)i, 6);
		s->retryable = col_bool(r, (int)i, 7);
		s->max_attempts = (int)col_i64(r, (int)i, 8);
	}
	return 0;
}

void adm_template_detail_clear(struct adm_template_detail *d)
{
	free(d->steps);
	PQclear(d->res);
	memset(d, 0, sizeof *d);
}

/* ================================================================== analytics */

static const char SQL_PERFORMANCE[] =
    "SELECT h.total_tasks, m.active_tasks_count, m.completion_count, m.error_count, "
    "m.tasks_in_window, m.steps_in_window, m.completion_rate, m.error_rate, "
    "m.avg_task_duration_seconds, m.avg_step_duration_seconds, m.system_health_score, "
    "extract(epoch FROM m.analysis_period_start), extract(epoch FROM m.calculated_at) "
    "FROM tasker.get_analytics_metrics(now() - make_interval(hours => $1::integer)) m "
    "CROSS JOIN tasker.get_system_health_counts() h";

int adm_performance(struct eng *e, int hours, struct adm_perf *out, struct tk_err *err)
{
	memset(out, 0, sizeof *out);
	char h[16];
	if (int_param("hours", hours, 1, 87600, h, sizeof h, err) != 0)
		return err->code;
	const char *p[] = {h};
	PGresult *r = run(e, "adm_performance", SQL_PERFORMANCE, 1, p, err);
	if (r == NULL)
		return fail_code(err);
	if (PQntuples(r) != 1) {
		PQclear(r);
		return tk_err_set(err, TRPC_ERR_DB, "get_analytics_metrics returned no row");
	}
	out->total_tasks = col_i64(r, 0, 0);
	out->active_tasks = col_i64(r, 0, 1);
	out->completed_tasks = col_i64(r, 0, 2);
	out->failed_tasks = col_i64(r, 0, 3);
	out->tasks_in_window = col_i64(r, 0, 4);
	out->steps_in_window = col_i64(r, 0, 5);
	out->completion_rate = col_f64(r, 0, 6);
	out->error_rate = col_f64(r, 0, 7);
	out->avg_task_seconds = col_f64(r, 0, 8);
	out->avg_step_seconds = col_f64(r, 0, 9);
	out->health_score = col_f64(r, 0, 10);
	out->analysis_period_start = col_time(r, 0, 11);
	out->calculated_at = col_time(r, 0, 12);
	PQclear(r);
	return 0;
}

static const char SQL_SLOW_STEPS[] =
    "SELECT namespace_name, task_name, version, step_name, average_duration_seconds, "
    "max_duration_seconds, execution_count, error_count, error_rate, "
    "extract(epoch FROM last_executed_at) "
    "FROM tasker.get_slowest_steps_aggregated(NULL, $1::integer, $2::integer)";

static const char SQL_SLOW_TASKS[] =
    "SELECT namespace_name, task_name, version, average_duration_seconds, "
    "max_duration_seconds, execution_count, average_step_count, error_count, error_rate, "
    "extract(epoch FROM last_executed_at) "
    "FROM tasker.get_slowest_tasks_aggregated(NULL, $1::integer, $2::integer)";

static const char SQL_HEALTH_COUNTS[] = "SELECT * FROM tasker.get_system_health_counts()";

static int read_counts(PGconn *conn, struct adm_count *v, size_t cap, size_t *n, struct tk_err *err)
{
	PGresult *r = db_exec_prepared(conn, "adm_health_counts", SQL_HEALTH_COUNTS, 0, NULL, err);
	if (r == NULL)
		return fail_code(err);
	*n = 0;
	for (int c = 0; PQntuples(r) == 1 && c < PQnfields(r) && *n < cap; c++) {
		copy_str(v[*n].name, sizeof v[*n].name, PQfname(r, c));
		v[*n].value = col_i64(r, 0, c);
		(*n)++;
	}
	PQclear(r);
	return 0;
}

/* The advice of tasker-api.md §5, each with the figures it rests on. */
static void recommend(struct adm_bottlenecks *b)
{
	const struct adm_slow_step *worst = NULL;
	for (size_t i = 0; i < b->n_steps; i++)
		if (worst == NULL || b->steps[i].error_rate > worst->error_rate)
			worst = &b->steps[i];
	if (worst != NULL && worst->error_rate > 0.2)
		snprintf(b->recommendations[b->n_recommendations++], sizeof b->recommendations[0],
		         "High error rate: step %s/%s@%s::%s failed %lld of %lld runs (%.1f %%); "
		         "review its handler and retry settings",
		         worst->namespace_name, worst->task_name, worst->version, worst->step_name,
		         (long long)worst->errors, (long long)worst->executions,
		         worst->error_rate * 100.0);
	if (b->pool_utilization > 0.8)
		snprintf(b->recommendations[b->n_recommendations++], sizeof b->recommendations[0],
		         "Database pool %.0f %% in use (%d of %d connections); consider raising "
		         "database.pool_size",
		         b->pool_utilization * 100.0, b->pool.active, b->pool.size);
	if (b->n_steps > 0 && b->steps[0].avg_seconds > 30.0) {
		const struct adm_slow_step *s = &b->steps[0];
		snprintf(
		    b->recommendations[b->n_recommendations++], sizeof b->recommendations[0],
		    "Slowest step %s/%s@%s::%s averages %.3f s; consider optimising or splitting "
		    "it",
		    s->namespace_name, s->task_name, s->version, s->step_name, s->avg_seconds);
	}
}

int adm_bottlenecks(struct eng *e, int limit, int min_executions, struct adm_bottlenecks *out,
                    struct tk_err *err)
{
	memset(out, 0, sizeof *out);
	char l[16], m[16];
	if (int_param("limit", limit, 1, ADM_MAX_LIMIT, l, sizeof l, err) != 0 ||
	    int_param("min_executions", min_executions, 1, 1000000, m, sizeof m, err) != 0)
		return err->code;
	/* the pool before this call takes a connection */
	db_pool_stats(e->pool, &out->pool);
	out->pool_utilization =
	    out->pool.size > 0 ? (double)out->pool.active / (double)out->pool.size : 0.0;

	const char *p[] = {l, m};
	PGconn *conn = db_acquire(e->pool, err);
	if (conn == NULL)
		return fail_code(err);
	int rv = 0;
	out->res_steps = db_exec_prepared(conn, "adm_slow_steps", SQL_SLOW_STEPS, 2, p, err);
	if (out->res_steps != NULL)
		out->res_tasks =
		    db_exec_prepared(conn, "adm_slow_tasks", SQL_SLOW_TASKS, 2, p, err);
	if (out->res_tasks == NULL)
		rv = fail_code(err);
	else
		rv = read_counts(conn, out->counts, sizeof out->counts / sizeof out->counts[0],
		                 &out->n_counts, err);
	db_release(e->pool, conn, rv != 0 && db_is_connection_error(conn));
	if (rv != 0)
		goto fail;

	PGresult *r = out->res_steps;
	if ((out->steps = rows_alloc(r, sizeof *out->steps, &out->n_steps, err)) == NULL)
		goto fail;
	for (size_t i = 0; i < out->n_steps; i++) {
		struct adm_slow_step *s = &out->steps[i];
		int row = (int)i;
		s->namespace_name = col_str(r, row, 0);
		s->task_name = col_str(r, row, 1);
		s->version = col_str(r, row, 2);
		s->step_name = col_str(r, row, 3);
		s->avg_seconds = col_f64(r, row, 4);
		s->max_seconds = col_f64(r, row, 5);
		s->executions = col_i64(r, row, 6);
		s->errors = col_i64(r, row, 7);
		s->error_rate = col_f64(r, row, 8);
		s->last_executed_at = col_time(r, row, 9);
	}
	r = out->res_tasks;
	if ((out->tasks = rows_alloc(r, sizeof *out->tasks, &out->n_tasks, err)) == NULL)
		goto fail;
	for (size_t i = 0; i < out->n_tasks; i++) {
		struct adm_slow_task *t = &out->tasks[i];
		int row = (int)i;
		t->namespace_name = col_str(r, row, 0);
		t->task_name = col_str(r, row, 1);
		t->version = col_str(r, row, 2);
		t->avg_seconds = col_f64(r, row, 3);
		t->max_seconds = col_f64(r, row, 4);
		t->executions = col_i64(r, row, 5);
		t->avg_step_count = col_f64(r, row, 6);
		t->errors = col_i64(r, row, 7);
		t->error_rate = col_f64(r, row, 8);
		t->last_executed_at = col_time(r, row, 9);
	}
	recommend(out);
	return 0;
fail:
	rv = fail_code(err);
	adm_bottlenecks_clear(out);
	return rv;
}

void adm_bottlenecks_clear(struct adm_bottlenecks *b)
{
	free(b->steps);
	free(b->tasks);
	PQclear(b->res_steps);
	PQclear(b->res_tasks);
	memset(b, 0, sizeof *b);
}

/* ================================================================== DLQ */

static const char *const DLQ_STATUSES[] = {"pending", "manually_resolved", "permanently_failed",
                                           "cancelled"};

static int valid_status(const char *s)
{
	for (size_t i = 0; i < sizeof DLQ_STATUSES / sizeof DLQ_STATUSES[0]; i++)
		if (strcmp(s, DLQ_STATUSES[i]) == 0)
			return 1;
	return 0;
}

static int check_uuid(const char *what, const char *s, struct tk_err *err)
{
	if (eng_valid_uuid(s))
		return 0;
	return tk_err_set(err, TRPC_ERR_INVALID, "%s \"%.64s\" is not a uuid", what, s ? s : "");
}

#define DLQ_COLUMNS                                                                                \
	"d.dlq_entry_uuid, d.task_uuid, d.original_state, d.dlq_reason::text, "                    \
	"d.resolution_status::text, extract(epoch FROM d.dlq_timestamp), "                         \
	"extract(epoch FROM d.resolution_timestamp), extract(epoch FROM d.created_at), "           \
	"extract(epoch FROM d.updated_at), d.resolution_notes, d.resolved_by, "                    \
	"d.task_snapshot::text, d.metadata::text "

static const char SQL_DLQ_LIST[] = "SELECT " DLQ_COLUMNS "FROM tasker.tasks_dlq d "
                                   "WHERE $1::tasker.dlq_resolution_status IS NULL "
                                   "OR d.resolution_status = $1::tasker.dlq_resolution_status "
                                   "ORDER BY d.dlq_timestamp DESC, d.dlq_entry_uuid DESC "
                                   "LIMIT $2::integer OFFSET $3::integer";

static const char SQL_DLQ_BY_TASK[] = "SELECT " DLQ_COLUMNS "FROM tasker.tasks_dlq d "
                                      "WHERE d.task_uuid = $1::uuid "
                                      "ORDER BY d.dlq_timestamp DESC, d.created_at DESC, "
                                      "d.dlq_entry_uuid DESC LIMIT 1";

/* run_rows() for the entries of a DLQ_COLUMNS statement. */
static int dlq_rows(struct eng *e, const char *name, const char *sql, int n,
                    const char *const *params, struct adm_dlq_entries *out, struct tk_err *err)
{
	out->v = run_rows(e, name, sql, n, params, &out->res, sizeof *out->v, &out->n, err);
	if (out->v == NULL)
		return fail_code(err);
	PGresult *r = out->res;
	for (size_t i = 0; i < out->n; i++) {
		struct adm_dlq_entry *d = &out->v[i];
		int row = (int)i;
		d->dlq_entry_uuid = col_str(r, row, 0);
		d->task_uuid = col_str(r, row, 1);
		d->original_state = col_str(r, row, 2);
		d->dlq_reason = col_str(r, row, 3);
		d->resolution_status = col_str(r, row, 4);
		d->dlq_timestamp = col_time(r, row, 5);
		d->resolution_timestamp = col_time(r, row, 6);
		d->created_at = col_time(r, row, 7);
		d->updated_at = col_time(r, row, 8);
		d->resolution_notes = col_str(r, row, 9);
		d->resolved_by = col_str(r, row, 10);
		d->task_snapshot_json = col_str(r, row, 11);
		d->metadata_json = col_str(r, row, 12);
	}
	return 0;
}

int adm_dlq_list(struct eng *e, const char *status, int limit, int offset,
                 struct adm_dlq_entries *out, struct tk_err *err)
{
	memset(out, 0, sizeof *out);
	if (status != NULL && !valid_status(status))
		return tk_err_set(err, TRPC_ERR_INVALID, "unknown resolution status \"%.40s\"",
		                  status);
	char l[16], o[16];
	if (int_param("limit", limit, 1, ADM_MAX_LIMIT, l, sizeof l, err) != 0 ||
	    int_param("offset", offset, 0, 2147483647, o, sizeof o, err) != 0)
		return err->code;
	const char *p[] = {status, l, o};
	int rv = dlq_rows(e, "adm_dlq_list", SQL_DLQ_LIST, 3, p, out, err);
	if (rv != 0)
		adm_dlq_entries_clear(out);
	return rv;
}

int adm_dlq_entry_by_task(struct eng *e, const char *task_uuid, struct adm_dlq_entries *out,
                          struct tk_err *err)
{
	memset(out, 0, sizeof *out);
	if (check_uuid("task_uuid", task_uuid, err) != 0)
		return err->code;
	const char *p[] = {task_uuid};
	int rv = dlq_rows(e, "adm_dlq_by_task", SQL_DLQ_BY_TASK, 1, p, out, err);
	if (rv == 0 && out->n == 0)
		rv = tk_err_set(err, TRPC_ERR_NOT_FOUND, "task %s has no DLQ entry", task_uuid);
	if (rv != 0)
		adm_dlq_entries_clear(out);
	return rv;
}

void adm_dlq_entries_clear(struct adm_dlq_entries *l)
{
	free(l->v);
	PQclear(l->res);
	memset(l, 0, sizeof *l);
}

/* The status rules of adm_dlq_update(): 0 or TRPC_ERR_INVALID. */
static int dlq_transition_allowed(const char *from, const char *to, struct tk_err *err)
{
	if (strcmp(from, to) == 0)
		return tk_err_set(err, TRPC_ERR_INVALID,
		                  "the entry is already %s: a status transition must change it",
		                  to);
	/* only an open entry moves, and only to a closed status (to != from) */
	if (strcmp(from, "pending") != 0)
		return tk_err_set(err, TRPC_ERR_INVALID,
		                  "invalid status transition %s -> %s: a closed investigation is "
		                  "final",
		                  from, to);
	return 0;
}

int adm_dlq_update(struct eng *e, const char *dlq_entry_uuid, const struct adm_dlq_update *u,
                   struct tk_err *err)
{
	if (check_uuid("dlq_entry_uuid", dlq_entry_uuid, err) != 0)
		return err->code;
	if (u->resolution_status == NULL && u->resolution_notes == NULL && u->resolved_by == NULL &&
	    u->metadata_json == NULL)
		return tk_err_set(err, TRPC_ERR_INVALID,
		                  "nothing to update: give a resolution status, notes, resolved_by "
		                  "or metadata");
	if (u->resolution_status != NULL && !valid_status(u->resolution_status))
		return tk_err_set(err, TRPC_ERR_INVALID, "unknown resolution status \"%.40s\"",
		                  u->resolution_status);
	if (u->metadata_json != NULL) {
		json_t *v = json_loads(u->metadata_json, JSON_DECODE_ANY, NULL);
		int ok = json_is_object(v);
		json_decref(v);
		if (!ok)
			return tk_err_set(err, TRPC_ERR_INVALID, "metadata must be a JSON object");
	}

	PGconn *conn = db_acquire(e->pool, err);
	if (conn == NULL)
		return fail_code(err);
	int rv = db_begin(conn, err);
	if (rv != 0)
		goto out;
	const char *p1[] = {dlq_entry_uuid};
	PGresult *r = db_exec_prepared(conn, "adm_dlq_lock",
	                               "SELECT resolution_status::text FROM tasker.tasks_dlq "
	                               "WHERE dlq_entry_uuid = $1::uuid FOR UPDATE",
	                               1, p1, err);
	if (r == NULL) {
		rv = fail_code(err);
		goto out;
	}
	if (PQntuples(r) == 0) {
		PQclear(r);
		rv = tk_err_set(err, TRPC_ERR_NOT_FOUND, "DLQ entry %s does not exist",
		                dlq_entry_uuid);
		goto out;
	}
	char current[32];
	copy_str(current, sizeof current, PQgetvalue(r, 0, 0));
	PQclear(r);
	if (u->resolution_status != NULL &&
	    (rv = dlq_transition_allowed(current, u->resolution_status, err)) != 0)
		goto out;
	const char *p2[] = {dlq_entry_uuid, u->resolution_status, u->resolution_notes,
	                    u->resolved_by, u->metadata_json};
	r = db_exec_prepared(conn, "adm_dlq_update",
	                     "SELECT tasker.update_dlq_investigation($1::uuid, "
	                     "$2::tasker.dlq_resolution_status, $3::text, $4::text, $5::jsonb)",
	                     5, p2, err);
	if (r == NULL) {
		rv = fail_code(err);
		goto out;
	}
	int found = col_bool(r, 0, 0);
	PQclear(r);
	if (!found) { /* the row was locked above: cannot vanish */
		rv = tk_err_set(err, TRPC_ERR_NOT_FOUND, "DLQ entry %s does not exist",
		                dlq_entry_uuid);
		goto out;
	}
	rv = db_commit(conn, err);
out:
	if (rv != 0 && PQtransactionStatus(conn) != PQTRANS_IDLE)
		db_rollback(conn, NULL);
	db_release(e->pool, conn, rv != 0 && db_is_connection_error(conn));
	return rv;
}

static const char SQL_DLQ_STATS[] =
    "SELECT dlq_reason::text, total_entries, pending, manually_resolved, permanent_failures, "
    "cancelled, extract(epoch FROM oldest_entry), extract(epoch FROM newest_entry), "
    "avg_resolution_time_minutes FROM tasker.v_dlq_dashboard ORDER BY dlq_reason";

int adm_dlq_stats(struct eng *e, struct adm_dlq_stats *out, struct tk_err *err)
{
	memset(out, 0, sizeof *out);
	out->v = run_rows(e, "adm_dlq_stats", SQL_DLQ_STATS, 0, NULL, &out->res, sizeof *out->v,
	                  &out->n, err);
	if (out->v == NULL) {
		adm_dlq_stats_clear(out);
		return fail_code(err);
	}
	PGresult *r = out->res;
	for (size_t i = 0; i < out->n; i++) {
		struct adm_dlq_stat *s = &out->v[i];
		int row = (int)i;
		s->dlq_reason = col_str(r, row, 0);
		s->total = col_i64(r, row, 1);
		s->pending = col_i64(r, row, 2);
		s->manually_resolved = col_i64(r, row, 3);
		s->permanently_failed = col_i64(r, row, 4);
		s->cancelled = col_i64(r, row, 5);
		s->oldest = col_time(r, row, 6);
		s->newest = col_time(r, row, 7);
		s->has_avg_resolution = !PQgetisnull(r, row, 8);
		s->avg_resolution_minutes = col_f64(r, row, 8);
	}
	return 0;
}

void adm_dlq_stats_clear(struct adm_dlq_stats *s)
{
	free(s->v);
	PQclear(s->res);
	memset(s, 0, sizeof *s);
}

static const char SQL_DLQ_QUEUE[] =
    "SELECT dlq_entry_uuid, task_uuid, original_state, dlq_reason::text, "
    "extract(epoch FROM dlq_timestamp), minutes_in_dlq, namespace_name, task_name, "
    "current_state, time_in_state_minutes, priority_score "
    "FROM tasker.v_dlq_investigation_queue "
    "ORDER BY priority_score DESC, dlq_entry_uuid LIMIT $1::integer";

int adm_dlq_investigation_queue(struct eng *e, int limit, struct adm_dlq_queue *out,
                                struct tk_err *err)
{
	memset(out, 0, sizeof *out);
	char l[16];
	if (int_param("limit", limit, 1, ADM_MAX_LIMIT, l, sizeof l, err) != 0)
		return err->code;
	const char *p[] = {l};
	out->v = run_rows(e, "adm_dlq_queue", SQL_DLQ_QUEUE, 1, p, &out->res, sizeof *out->v,
	                  &out->n, err);
	if (out->v == NULL) {
		adm_dlq_queue_clear(out);
		return fail_code(err);
	}
	PGresult *r = out->res;
	for (size_t i = 0; i < out->n; i++) {
		struct adm_dlq_queue_entry *q = &out->v[i];
		int row = (int)i;
		q->dlq_entry_uuid = col_str(r, row, 0);
		q->task_uuid = col_str(r, row, 1);
		q->original_state = col_str(r, row, 2);
		q->dlq_reason = col_str(r, row, 3);
		q->dlq_timestamp = col_time(r, row, 4);
		q->minutes_in_dlq = col_f64(r, row, 5);
		q->namespace_name = col_str(r, row, 6);
		q->task_name = col_str(r, row, 7);
		q->current_state = col_str(r, row, 8);
		q->has_time_in_state = !PQgetisnull(r, row, 9);
		q->time_in_state_minutes = (int32_t)col_i64(r, row, 9);
		q->priority_score = col_f64(r, row, 10);
	}
	return 0;
}

void adm_dlq_queue_clear(struct adm_dlq_queue *q)
{
	free(q->v);
	PQclear(q->res);
	memset(q, 0, sizeof *q);
}

static const char SQL_STALENESS[] =
    "SELECT task_uuid, namespace_name, task_name, current_state, time_in_state_minutes, "
    "task_age_minutes, staleness_threshold_minutes, health_status, priority "
    "FROM tasker.v_task_staleness_monitoring "
    "ORDER BY time_in_state_minutes DESC, task_uuid LIMIT $1::integer";

int adm_staleness(struct eng *e, int limit, struct adm_staleness *out, struct tk_err *err)
{
	memset(out, 0, sizeof *out);
	char l[16];
	if (int_param("limit", limit, 1, ADM_MAX_LIMIT, l, sizeof l, err) != 0)
		return err->code;
	const char *p[] = {l};
	out->v = run_rows(e, "adm_staleness", SQL_STALENESS, 1, p, &out->res, sizeof *out->v,
	                  &out->n, err);
	if (out->v == NULL) {
		adm_staleness_clear(out);
		return fail_code(err);
	}
	PGresult *r = out->res;
	for (size_t i = 0; i < out->n; i++) {
		struct adm_staleness_entry *s = &out->v[i];
		int row = (int)i;
		s->task_uuid = col_str(r, row, 0);
		s->namespace_name = col_str(r, row, 1);
		s->task_name = col_str(r, row, 2);
		s->current_state = col_str(r, row, 3);
		s->time_in_state_minutes = (int32_t)col_i64(r, row, 4);
		s->task_age_minutes = (int32_t)col_i64(r, row, 5);
		s->threshold_minutes = (int32_t)col_i64(r, row, 6);
		s->health_status = col_str(r, row, 7);
		s->priority = (int32_t)col_i64(r, row, 8);
	}
	return 0;
}

void adm_staleness_clear(struct adm_staleness *s)
{
	free(s->v);
	PQclear(s->res);
	memset(s, 0, sizeof *s);
}

/* ================================================================== health */

const char *adm_health_status_name(int status)
{
	switch (status) {
	case ADM_HEALTHY:
		return "healthy";
	case ADM_DEGRADED:
		return "degraded";
	case ADM_UNHEALTHY:
		return "unhealthy";
	default:
		return "unknown";
	}
}

static int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void set_check(struct adm_check *c, int status, int64_t started_ms, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void set_check(struct adm_check *c, int status, int64_t started_ms, const char *fmt, ...)
{
	va_list ap;
	c->status = status;
	va_start(ap, fmt);
	vsnprintf(c->message, sizeof c->message, fmt, ap);
	va_end(ap);
	int64_t d = started_ms >= 0 ? mono_ms() - started_ms : 0;
	c->duration_ms = d > 0 ? (uint64_t)d : 0;
}

/* err from a libpq message: its first line. */
static void set_pq_error(struct tk_err *err, int code, const char *msg)
{
	char why[256];
	copy_str(why, sizeof why, msg);
	why[strcspn(why, "\n")] = '\0';
	tk_err_set(err, code, "%s", why);
}

/*
 * One statement with a time limit: sent asynchronously and waited for with
 * poll(), so a database that stopped answering costs timeout_ms, not the
 * kernel's TCP timeouts. On timeout the query is cancelled and the caller
 * must release the connection as broken (it is reset before its next use).
 */
static PGresult *exec_bounded(PGconn *conn, const char *sql, int n, const char *const *params,
                              int timeout_ms, struct tk_err *err)
{
	char why[256];
	if (!PQsendQueryParams(conn, sql, n, NULL, params, NULL, NULL, 0)) {
		set_pq_error(err, TRPC_ERR_UNAVAILABLE, PQerrorMessage(conn));
		return NULL;
	}
	int64_t deadline = mono_ms() + timeout_ms;
	PGresult *last = NULL;
	for (;;) {
		while (PQisBusy(conn)) {
			int64_t left = deadline - mono_ms();
			if (left <= 0) {
				PGcancel *c = PQgetCancel(conn);
				if (c != NULL) {
					PQcancel(c, why, sizeof why);
					PQfreeCancel(c);
				}
				PQclear(last);
				tk_err_set(err, TRPC_ERR_TIMEOUT, "no answer within %d ms",
				           timeout_ms);
				return NULL;
			}
			struct pollfd pfd = {.fd = PQsocket(conn), .events = POLLIN};
			int pr = poll(&pfd, 1, (int)left);
			if (pr == -1 && errno != EINTR) {
				PQclear(last);
				tk_err_set(err, TRPC_ERR_SYSTEM, "poll: %s", strerror(errno));
				return NULL;
			}
			if (!PQconsumeInput(conn)) {
				PQclear(last);
				set_pq_error(err, TRPC_ERR_UNAVAILABLE, PQerrorMessage(conn));
				return NULL;
			}
		}
		PGresult *r = PQgetResult(conn);
		if (r == NULL)
			break;
		PQclear(last);
		last = r;
	}
	ExecStatusType st = last != NULL ? PQresultStatus(last) : PGRES_FATAL_ERROR;
	if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
		set_pq_error(err, db_is_connection_error(conn) ? TRPC_ERR_UNAVAILABLE : TRPC_ERR_DB,
		             last != NULL ? PQresultErrorMessage(last) : PQerrorMessage(conn));
		PQclear(last);
		return NULL;
	}
	return last;
}

static const char *const ORCH_QUEUES[] = {ENG_REQUESTS_QUEUE, ENG_RESULTS_QUEUE};

size_t adm_orchestration_queues(const char *const **names)
{
	*names = ORCH_QUEUES;
	return sizeof ORCH_QUEUES / sizeof ORCH_QUEUES[0];
}

const char *adm_deployment_mode(const struct eng *e)
{
	(void)e; /* every engine listens and polls (poll_interval_ms) */
	return "Hybrid";
}

int adm_pool_size(const struct eng *e)
{
	struct db_pool_stats st;
	db_pool_stats(e->pool, &st);
	return st.size;
}

/* eng_start() starts every orchestration thread or none (it stops those
 * it started when one fails), and they run until eng_stop(): running
 * threads and no stop requested is a working engine. */
static void check_orchestration(struct eng *e, struct adm_health *h)
{
	int stopping = atomic_load(&e->stopping);
	int n = e->nthreads;
	int64_t t0 = mono_ms();
	if (stopping) {
		h->operational_state = n > 0 ? "GracefulShutdown" : "Stopped";
		set_check(&h->orchestration_system, ADM_UNHEALTHY, t0,
		          "orchestration is stopping (%d threads left)", n);
	} else if (n == 0) {
		h->operational_state = "Startup";
		set_check(&h->orchestration_system, ADM_UNHEALTHY, t0,
		          "orchestration threads not started");
	} else {
		h->operational_state = "Normal";
		set_check(&h->orchestration_system, ADM_HEALTHY, t0,
		          "%d orchestration threads running", n);
	}
}

/* Depth of the deepest orchestration queue into h; 0 or an error code. */
static int read_queue_depths(PGconn *conn, int timeout_ms, struct adm_health *h, struct tk_err *err)
{
	char arr[128];
	snprintf(arr, sizeof arr, "{%s,%s}", ORCH_QUEUES[0], ORCH_QUEUES[1]);
	const char *p[] = {arr};
	PGresult *r = exec_bounded(conn,
	                           "SELECT q, (pgmq.metrics(q)).queue_length "
	                           "FROM unnest($1::text[]) AS q",
	                           1, p, timeout_ms, err);
	if (r == NULL)
		return fail_code(err);
	for (int i = 0; i < PQntuples(r); i++) {
		int64_t d = col_i64(r, i, 1);
		for (size_t q = 0; q < sizeof ORCH_QUEUES / sizeof ORCH_QUEUES[0]; q++)
			if (d > h->orchestration_depth &&
			    strcmp(PQgetvalue(r, i, 0), ORCH_QUEUES[q]) == 0) {
				h->orchestration_depth = d;
				h->orchestration_queue = ORCH_QUEUES[q];
			}
	}
	if (h->orchestration_queue == NULL)
		h->orchestration_queue = ORCH_QUEUES[0];
	PQclear(r);
	return 0;
}

/*
 * What a failed check says on the (public) health answer: the kind of
 * failure, never the server's text, which names hosts, sockets, databases
 * and users. The detail goes to the debug log.
 */
static const char *db_problem(const char *what, const struct tk_err *err, int timeout_ms, char *buf,
                              size_t size)
{
	trpc_log(TRPC_LOG_DEBUG, "health: %s: %s", what, err->msg);
	switch (err->code) {
	case TRPC_ERR_UNAVAILABLE:
		return "cannot connect to the database";
	case TRPC_ERR_TIMEOUT:
		if (timeout_ms <= 0) /* waiting for a pool connection */
			return "no pool connection free in time";
		snprintf(buf, size, "no answer within %d ms", timeout_ms);
		return buf;
	case TRPC_ERR_NOMEM:
		return "out of memory";
	default:
		return "the database reported an error";
	}
}

static void check_database(struct eng *e, const struct adm_health_limits *lim, struct adm_health *h)
{
	char why[96];
	int timeout = lim->db_timeout_ms > 0 ? lim->db_timeout_ms : 1000;
	struct tk_err err = {0};
	int64_t t0 = mono_ms();
	PGconn *conn = db_acquire(e->pool, &err);
	if (conn == NULL) {
		set_check(&h->database, ADM_UNHEALTHY, t0, "no connection: %s",
		          db_problem("acquire", &err, 0, why, sizeof why));
		set_check(&h->command_processor, ADM_UNHEALTHY, -1,
		          "queues not checked: no database connection");
		return;
	}
	PGresult *r = exec_bounded(conn, "SELECT 1", 0, NULL, timeout, &err);
	if (r == NULL) {
		set_check(&h->database, ADM_UNHEALTHY, t0, "SELECT 1: %s",
		          db_problem("SELECT 1", &err, timeout, why, sizeof why));
		set_check(&h->command_processor, ADM_UNHEALTHY, -1,
		          "queues not checked: the database did not answer");
		db_release(e->pool, conn, 1);
		return;
	}
	PQclear(r);
	set_check(&h->database, ADM_HEALTHY, t0, "SELECT 1 answered");

	/* The "command processor" of taskerd is the orchestration queue
	 * consumers: healthy when their queues answer and are below the
	 * critical backpressure tier. */
	t0 = mono_ms();
	h->orchestration_depth = 0;
	if (read_queue_depths(conn, timeout, h, &err) != 0) {
		h->orchestration_depth = -1;
		h->orchestration_queue = NULL;
		set_check(&h->command_processor, ADM_UNHEALTHY, t0, "orchestration queues: %s",
		          db_problem("queue depth", &err, timeout, why, sizeof why));
		db_release(e->pool, conn, 1);
		return;
	}
	db_release(e->pool, conn, 0);
	if (h->orchestration_depth >= lim->critical_depth)
		set_check(&h->command_processor, ADM_DEGRADED, t0,
		          "queue %s holds %lld messages (critical tier from %ld)",
		          h->orchestration_queue, (long long)h->orchestration_depth,
		          lim->critical_depth);
	else
		set_check(&h->command_processor, ADM_HEALTHY, t0,
		          "orchestration queues answer; deepest %s holds %lld messages",
		          h->orchestration_queue, (long long)h->orchestration_depth);
}

static void check_pool(struct adm_health *h)
{
	const struct db_pool_stats *p = &h->pool;
	double pct = h->pool_utilization_percent;
	int st = pct > 95.0 ? ADM_UNHEALTHY : pct > 80.0 ? ADM_DEGRADED : ADM_HEALTHY;
	set_check(&h->pool_utilization, st, -1,
	          "%d of %d connections in use (%.1f %%); %llu acquires, %llu slow, %llu failed",
	          p->active, p->size, pct, (unsigned long long)p->acquires,
	          (unsigned long long)p->slow_acquires, (unsigned long long)p->errors);
}

void adm_health_check(struct eng *e, const struct adm_health_limits *lim, int detailed,
                      struct adm_health *out)
{
	memset(out, 0, sizeof *out);
	out->orchestration_depth = -1;
	/* the pool as the request found it, before the checks take a connection */
	db_pool_stats(e->pool, &out->pool);
	out->pool_utilization_percent =
	    out->pool.size > 0 ? 100.0 * (double)out->pool.active / (double)out->pool.size : 0.0;

	check_orchestration(e, out);
	check_database(e, lim, out);
	/* The engine's database calls go straight to the pool: no breaker sits
	 * in front of it, so nothing is ever short-circuited and there is no
	 * breaker state to report. A failing database shows in the database
	 * check instead. */
	set_check(&out->circuit_breaker, ADM_HEALTHY, -1,
	          "no circuit breaker guards the database pool: calls are never short-circuited");
	out->circuit_breaker_state = NULL;
	out->ready = out->database.status == ADM_HEALTHY &&
	             out->circuit_breaker.status == ADM_HEALTHY &&
	             out->orchestration_system.status == ADM_HEALTHY &&
	             out->command_processor.status == ADM_HEALTHY;
	if (!detailed)
		return;
	check_pool(out);
	/* API calls wait in the RPC work queue for a handler thread: that
	 * queue is taskerd's command channel. */
	adm_channel_check(lim->channel, &out->channel_saturation);
}

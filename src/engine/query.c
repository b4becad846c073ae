/*
 * query: the engine's read side for the APIs (see query.h).
 *
 * Each public function takes one pooled connection for its statements and
 * gives it back before returning. Fixed statements are prepared once per
 * connection (db_exec_prepared); the task list is built from fixed
 * fragments and bound parameters, so it runs unprepared.
 */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/states.h"
#include "engine/engine_int.h"
#include "engine/query.h"
#include "engine/template.h"

/* An instant as microseconds since 1970 (numeric arithmetic: exact). */
#define US(x) "(extract(epoch FROM " x ") * 1000000)::bigint"

/* ------------------------------------------------------------------ helpers */

int eng_check_uuid(const char *what, const char *s, struct tk_err *err)
{
	if (eng_valid_uuid(s))
		return 0;
	return tk_err_set(err, TRPC_ERR_INVALID, "invalid %s uuid: \"%.64s\"", what,
	                  s != NULL ? s : "");
}

static void col_text(const PGresult *r, int row, int col, char *buf, size_t size)
{
	snprintf(buf, size, "%s", PQgetisnull(r, row, col) ? "" : PQgetvalue(r, row, col));
}

static int64_t col_time(const PGresult *r, int row, int col)
{
	if (PQgetisnull(r, row, col))
		return ENG_NO_TIME;
	return strtoll(PQgetvalue(r, row, col), NULL, 10);
}

static int64_t col_i64(const PGresult *r, int row, int col)
{
	return PQgetisnull(r, row, col) ? 0 : strtoll(PQgetvalue(r, row, col), NULL, 10);
}

static int col_int(const PGresult *r, int row, int col)
{
	return (int)col_i64(r, row, col);
}

static int col_bool(const PGresult *r, int row, int col)
{
	return !PQgetisnull(r, row, col) && PQgetvalue(r, row, col)[0] == 't';
}

/* A JSON column (NULL when SQL NULL). Numbers as reals: a jsonb number
 * can be wider than 64 bits. *bad is set when the text does not parse,
 * which jsonb output never should. */
static json_t *col_json(const PGresult *r, int row, int col, int *bad)
{
	if (PQgetisnull(r, row, col))
		return NULL;
	json_error_t je;
	json_t *v =
	    json_loads(PQgetvalue(r, row, col), JSON_DECODE_ANY | JSON_DECODE_INT_AS_REAL, &je);
	if (v == NULL)
		*bad = 1;
	return v;
}

static PGconn *take(struct eng *e, struct tk_err *err)
{
	return db_acquire(e->pool, err);
}

static void give(struct eng *e, PGconn *conn, int rv)
{
	db_release(e->pool, conn, rv != 0 && db_is_connection_error(conn));
}

static int nomem(struct tk_err *err)
{
	return tk_err_set(err, TRPC_ERR_NOMEM, "out of memory");
}

static int bad_json(struct tk_err *err, const char *what)
{
	return tk_err_set(err, TRPC_ERR_DB, "unreadable JSON in %s", what);
}

/* ------------------------------------------------------------------ tasks */

/* clang-format off */
#define TASK_COLS \
	"t.task_uuid, t.named_task_uuid, nt.name, tn.name, nt.version, " \
	"COALESCE(tt.to_state, 'pending'), " \
	US("t.created_at") ", " US("t.updated_at") ", " US("t.completed_at") ", " \
	"t.context, t.tags, t.initiator, t.source_system, t.reason, " \
	"t.priority, t.correlation_id, t.parent_correlation_id, " \
	"c.total_steps, c.pending_steps, c.in_progress_steps, c.completed_steps, c.failed_steps, " \
	"c.ready_steps, c.execution_status, c.recommended_action, c.completion_percentage, " \
	"c.health_status"
/* clang-format on */

#define TASK_JOINS                                                                                 \
	"JOIN tasker.named_tasks nt ON nt.named_task_uuid = t.named_task_uuid "                    \
	"JOIN tasker.task_namespaces tn ON tn.task_namespace_uuid = nt.task_namespace_uuid "       \
	"LEFT JOIN tasker.task_transitions tt ON tt.task_uuid = t.task_uuid AND tt.most_recent "

/* The full rows of the tasks whose uuids the SQL array expression `ids`
 * yields, in that order. The execution contexts are computed once for the
 * whole set. The WHERE repeats the join on the array itself: without it
 * the planner, which cannot see into unnest(), hash-joins a sequential
 * scan of the whole tasks table (GetTask then grows with the table). */
#define TASK_ROWS_SQL(ids)                                                                         \
	"WITH ids AS MATERIALIZED (SELECT " ids " AS a), "                                         \
	"ctx AS MATERIALIZED (SELECT c.* FROM ids, "                                               \
	"tasker.get_task_execution_contexts_batch(ids.a) c) "                                      \
	"SELECT " TASK_COLS " FROM ids CROSS JOIN LATERAL unnest(ids.a) WITH ORDINALITY "          \
	"AS p(task_uuid, ord) "                                                                    \
	"JOIN tasker.tasks t ON t.task_uuid = p.task_uuid " TASK_JOINS                             \
	"LEFT JOIN ctx c ON c.task_uuid = t.task_uuid "                                            \
	"WHERE t.task_uuid = ANY ((SELECT a FROM ids)::uuid[]) ORDER BY p.ord"

void eng_tasks_free(struct eng_task *tasks, size_t n)
{
	for (size_t i = 0; tasks != NULL && i < n; i++) {
		json_decref(tasks[i].context);
		json_decref(tasks[i].tags);
	}
	free(tasks);
}

/* Copies the rows of a TASK_ROWS_SQL result. */
static int read_tasks(const PGresult *r, struct eng_task **out, size_t *n, struct tk_err *err)
{
	int rows = PQntuples(r), bad = 0;
	*out = NULL;
	*n = 0;
	if (rows == 0)
		return 0;
	struct eng_task *ts = calloc((size_t)rows, sizeof *ts);
	if (ts == NULL)
		return nomem(err);
	for (int i = 0; i < rows; i++) {
		struct eng_task *t = &ts[i];
		int c = 0;
		col_text(r, i, c++, t->task_uuid, sizeof t->task_uuid);
		col_text(r, i, c++, t->named_task_uuid, sizeof t->named_task_uuid);
		col_text(r, i, c++, t->name, sizeof t->name);
		col_text(r, i, c++, t->namespace_name, sizeof t->namespace_name);
		col_text(r, i, c++, t->version, sizeof t->version);
		col_text(r, i, c++, t->state, sizeof t->state);
		t->created_at = col_time(r, i, c++);
		t->updated_at = col_time(r, i, c++);
		t->completed_at = col_time(r, i, c++);
		t->context = col_json(r, i, c++, &bad);
		t->tags = col_json(r, i, c++, &bad);
		col_text(r, i, c++, t->initiator, sizeof t->initiator);
		col_text(r, i, c++, t->source_system, sizeof t->source_system);
		col_text(r, i, c++, t->reason, sizeof t->reason);
		t->priority = col_int(r, i, c++);
		col_text(r, i, c++, t->correlation_id, sizeof t->correlation_id);
		col_text(r, i, c++, t->parent_correlation_id, sizeof t->parent_correlation_id);
		t->total_steps = col_i64(r, i, c++);
		t->pending_steps = col_i64(r, i, c++);
		t->in_progress_steps = col_i64(r, i, c++);
		t->completed_steps = col_i64(r, i, c++);
		t->failed_steps = col_i64(r, i, c++);
		t->ready_steps = col_i64(r, i, c++);
		col_text(r, i, c++, t->execution_status, sizeof t->execution_status);
		col_text(r, i, c++, t->recommended_action, sizeof t->recommended_action);
		t->completion_percentage =
		    PQgetisnull(r, i, c) ? 0.0 : strtod(PQgetvalue(r, i, c), NULL);
		c++;
		col_text(r, i, c++, t->health_status, sizeof t->health_status);
	}
	if (bad) {
		eng_tasks_free(ts, (size_t)rows);
		return bad_json(err, "a task row");
	}
	*out = ts;
	*n = (size_t)rows;
	return 0;
}

static int task_get_on(PGconn *conn, const char *task_uuid, struct eng_task **out,
                       struct tk_err *err)
{
	const char *p[] = {task_uuid};
	PGresult *r =
	    db_exec_prepared(conn, "eng_q_task", TASK_ROWS_SQL("ARRAY[$1::uuid]"), 1, p, err);
	if (r == NULL)
		return err->code;
	size_t n;
	int rv = read_tasks(r, out, &n, err);
	PQclear(r);
	if (rv == 0 && n == 0)
		rv = tk_err_set(err, TRPC_ERR_NOT_FOUND, "no task %s", task_uuid);
	return rv;
}

int eng_task_get(struct eng *e, const char *task_uuid, struct eng_task **out, struct tk_err *err)
{
	tk_err_clear(err);
	*out = NULL;
	if (eng_check_uuid("task", task_uuid, err) != 0)
		return err->code;
	PGconn *conn = take(e, err);
	if (conn == NULL)
		return err->code;
	int rv = task_get_on(conn, task_uuid, out, err);
	give(e, conn, rv);
	return rv;
}

/* ------------------------------------------------------------------ task list */

static int known_task_state(const char *s)
{
	for (size_t i = 0; tk_task_states[i] != NULL; i++)
		if (strcmp(tk_task_states[i], s) == 0)
			return 1;
	return 0;
}

static const struct {
	const char *field, *expr;
} sort_fields[] = {
    {"created_at", "t.created_at"},
    {"updated_at", "t.updated_at"},
    {"completed_at", "t.completed_at"},
    {"priority", "t.priority"},
    {"name", "nt.name"},
    {"namespace", "tn.name"},
    {"version", "nt.version"},
    {"state", "COALESCE(tt.to_state, 'pending')"},
    {"initiator", "t.initiator"},
};

/* A SQL text built from fixed fragments: never from request values. */
struct sqlbuf {
	char s[4096];
	size_t len;
	int overflow;
};

static void sql_add(struct sqlbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void sql_add(struct sqlbuf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(b->s + b->len, sizeof b->s - b->len, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof b->s - b->len)
		b->overflow = 1;
	else
		b->len += (size_t)n;
}

/* The filter's parameters, and WHERE conditions that refer to them. */
struct list_params {
	const char *v[9];
	int n;
	char *states; /* text[] literal, malloc'd */
	char *tags;   /* JSON array, malloc'd */
	char from[24], to[24], limit[16], offset[16];
};

static void list_params_clear(struct list_params *lp)
{
	free(lp->states);
	free(lp->tags);
}

static int add_param(struct list_params *lp, const char *v)
{
	lp->v[lp->n++] = v;
	return lp->n;
}

static int build_filter(const struct eng_task_filter *f, struct sqlbuf *where,
                        struct list_params *lp, struct tk_err *err)
{
	sql_add(where, "WHERE true");
	if (f->namespace_name != NULL)
		sql_add(where, " AND tn.name = $%d", add_param(lp, f->namespace_name));
	if (f->name != NULL)
		sql_add(where, " AND nt.name = $%d", add_param(lp, f->name));
	if (f->initiator != NULL)
		sql_add(where, " AND t.initiator = $%d", add_param(lp, f->initiator));
	if (f->n_states > 0) {
		size_t cap = 3;
		for (size_t i = 0; i < f->n_states; i++) {
			if (f->states[i] == NULL || !known_task_state(f->states[i]))
				return tk_err_set(err, TRPC_ERR_INVALID,
				                  "unknown task state \"%.40s\"",
				                  f->states[i] ? f->states[i] : "");
			cap += strlen(f->states[i]) + 1;
		}
		lp->states = malloc(cap);
		if (lp->states == NULL)
			return nomem(err);
		size_t len = 0;
		lp->states[len++] = '{';
		for (size_t i = 0; i < f->n_states; i++)
			len +=
			    (size_t)sprintf(lp->states + len, "%s%s", i ? "," : "", f->states[i]);
		strcpy(lp->states + len, "}");
		sql_add(where, " AND COALESCE(tt.to_state, 'pending') = ANY ($%d::text[])",
		        add_param(lp, lp->states));
	}
	if (f->n_tags > 0) {
		json_t *arr = json_array();
		for (size_t i = 0; arr != NULL && i < f->n_tags; i++) {
			json_t *s = json_string(f->tags[i] != NULL ? f->tags[i] : "");
			if (s == NULL) {
				json_decref(arr);
				return tk_err_set(err, TRPC_ERR_INVALID, "a tag is not UTF-8");
			}
			json_array_append_new(arr, s);
		}
		lp->tags = arr != NULL ? json_dumps(arr, JSON_COMPACT) : NULL;
		json_decref(arr);
		if (lp->tags == NULL)
			return nomem(err);
		sql_add(where, " AND t.tags @> $%d::jsonb", add_param(lp, lp->tags));
	}
	if (f->created_from != ENG_NO_TIME) {
		snprintf(lp->from, sizeof lp->from, "%lld", (long long)f->created_from);
		sql_add(where,
		        " AND t.created_at >= 'epoch'::timestamptz + $%d::bigint * "
		        "interval '1 microsecond'",
		        add_param(lp, lp->from));
	}
	if (f->created_to != ENG_NO_TIME) {
		snprintf(lp->to, sizeof lp->to, "%lld", (long long)f->created_to);
		sql_add(where,
		        " AND t.created_at < 'epoch'::timestamptz + $%d::bigint * "
		        "interval '1 microsecond'",
		        add_param(lp, lp->to));
	}
	return 0;
}

static int build_order(const struct eng_task_filter *f, struct sqlbuf *order, struct tk_err *err)
{
	const char *expr = NULL;
	int desc;
	if (f->sort_field == NULL || f->sort_field[0] == '\0') {
		expr = "t.created_at";
		desc = f->sort_dir != ENG_SORT_ASC;
	} else {
		for (size_t i = 0; i < sizeof sort_fields / sizeof sort_fields[0]; i++)
			if (strcmp(sort_fields[i].field, f->sort_field) == 0)
				expr = sort_fields[i].expr;
		if (expr == NULL)
			return tk_err_set(
			    err, TRPC_ERR_INVALID,
			    "cannot sort by \"%.40s\"; fields: created_at, updated_at, "
			    "completed_at, priority, name, namespace, version, state, "
			    "initiator",
			    f->sort_field);
		desc = f->sort_dir == ENG_SORT_DESC;
	}
	sql_add(order, "ORDER BY %s %s NULLS LAST, t.task_uuid %s", expr, desc ? "DESC" : "ASC",
	        desc ? "DESC" : "ASC");
	return 0;
}

int eng_task_list(struct eng *e, const struct eng_task_filter *f, struct eng_task_page *out,
                  struct tk_err *err)
{
	struct sqlbuf where = {0}, order = {0}, sql = {0};
	struct list_params lp = {0};
	int rv;

	tk_err_clear(err);
	memset(out, 0, sizeof *out);
	if (f->limit < 0 || f->limit > ENG_LIST_MAX_LIMIT)
		return tk_err_set(err, TRPC_ERR_INVALID, "limit %d is outside 1..%d", f->limit,
		                  ENG_LIST_MAX_LIMIT);
	if (f->offset < 0)
		return tk_err_set(err, TRPC_ERR_INVALID, "offset %d is negative", f->offset);
	if ((rv = build_filter(f, &where, &lp, err)) != 0 ||
	    (rv = build_order(f, &order, err)) != 0)
		goto out;
	int nfilter = lp.n;
	snprintf(lp.limit, sizeof lp.limit, "%d", f->limit ? f->limit : ENG_LIST_DEFAULT_LIMIT);
	snprintf(lp.offset, sizeof lp.offset, "%d", f->offset);
	int plimit = add_param(&lp, lp.limit), poffset = add_param(&lp, lp.offset);

	PGconn *conn = take(e, err);
	if (conn == NULL) {
		rv = err->code;
		goto out;
	}
	sql_add(&sql, "SELECT count(*) FROM tasker.tasks t " TASK_JOINS "%s", where.s);
	if (sql.overflow || where.overflow || order.overflow) {
		rv = tk_err_set(err, TRPC_ERR_INVALID, "too many filters");
		goto release;
	}
	PGresult *r = db_exec(conn, sql.s, nfilter, lp.v, err);
	if (r == NULL) {
		rv = err->code;
		goto release;
	}
	out->total = col_i64(r, 0, 0);
	PQclear(r);
	if (out->total <= f->offset)
		goto release; /* an empty page: no need for the rows */

	struct sqlbuf ids = {0};
	sql_add(&ids,
	        "ARRAY(SELECT t.task_uuid FROM tasker.tasks t " TASK_JOINS "%s %s LIMIT $%d OFFSET "
	        "$%d)",
	        where.s, order.s, plimit, poffset);
	sql.len = 0;
	sql_add(&sql, TASK_ROWS_SQL("%s"), ids.s);
	if (ids.overflow || sql.overflow) {
		rv = tk_err_set(err, TRPC_ERR_INVALID, "too many filters");
		goto release;
	}
	r = db_exec(conn, sql.s, lp.n, lp.v, err);
	if (r == NULL) {
		rv = err->code;
		goto release;
	}
	rv = read_tasks(r, &out->tasks, &out->n, err);
	PQclear(r);
release:
	give(e, conn, rv);
out:
	list_params_clear(&lp);
	return rv;
}

/* ------------------------------------------------------------------ context */

int eng_task_context(struct eng *e, const char *task_uuid, json_t **inputs, json_t **outputs,
                     json_t **merged, struct tk_err *err)
{
	tk_err_clear(err);
	*inputs = *outputs = *merged = NULL;
	if (eng_check_uuid("task", task_uuid, err) != 0)
		return err->code;
	PGconn *conn = take(e, err);
	if (conn == NULL)
		return err->code;
	const char *p[] = {task_uuid};
	/* A step's output is what its handler returned: `result` of a step
	 * execution result; results of another shape are taken as they are
	 * (as tasker.worker_step_input does for dependency results). */
	PGresult *r = db_exec_prepared(
	    conn, "eng_q_task_context",
	    "SELECT t.context, (SELECT jsonb_object_agg(ns.name, "
	    "CASE WHEN jsonb_typeof(ws.results) = 'object' AND ws.results ? 'success' "
	    "THEN ws.results -> 'result' ELSE ws.results END) "
	    "FROM tasker.workflow_steps ws "
	    "JOIN tasker.named_steps ns ON ns.named_step_uuid = ws.named_step_uuid "
	    "JOIN tasker.workflow_step_transitions st "
	    "ON st.workflow_step_uuid = ws.workflow_step_uuid AND st.most_recent "
	    "WHERE ws.task_uuid = t.task_uuid AND st.to_state = 'complete') "
	    "FROM tasker.tasks t WHERE t.task_uuid = $1::uuid",
	    1, p, err);
	int rv = 0, bad = 0;
	if (r == NULL) {
		rv = err->code;
		goto release;
	}
	if (PQntuples(r) == 0) {
		rv = tk_err_set(err, TRPC_ERR_NOT_FOUND, "no task %s", task_uuid);
		goto clear;
	}
	json_t *in = col_json(r, 0, 0, &bad), *o = col_json(r, 0, 1, &bad);
	if (bad) {
		json_decref(in);
		json_decref(o);
		rv = bad_json(err, "a task context");
		goto clear;
	}
	if (!json_is_object(in)) { /* NULL or, from old rows, not an object */
		json_decref(in);
		in = json_object();
	}
	if (o == NULL)
		o = json_object();
	json_t *m = json_deep_copy(in);
	if (in == NULL || o == NULL || m == NULL || json_object_update(m, o) != 0) {
		json_decref(in);
		json_decref(o);
		json_decref(m);
		rv = nomem(err);
		goto clear;
	}
	*inputs = in;
	*outputs = o;
	*merged = m;
clear:
	PQclear(r);
release:
	give(e, conn, rv);
	return rv;
}

/* ------------------------------------------------------------------ steps */

void eng_steps_free(struct eng_step *steps, size_t n)
{
	for (size_t i = 0; steps != NULL && i < n; i++)
		json_decref(steps[i].results);
	free(steps);
}

/* Tells apart "no such task", "no such step" and "another task's step".
 * Returns 0 when the step is the task's. */
static int step_owner_on(PGconn *conn, const char *task_uuid, const char *step_uuid,
                         struct tk_err *err)
{
	const char *p[] = {task_uuid, step_uuid};
	PGresult *r = db_exec_prepared(
	    conn, "eng_q_step_owner",
	    "SELECT EXISTS (SELECT 1 FROM tasker.tasks WHERE task_uuid = $1::uuid), "
	    "(SELECT task_uuid FROM tasker.workflow_steps WHERE workflow_step_uuid = $2::uuid)",
	    2, p, err);
	if (r == NULL)
		return err->code;
	int rv = 0;
	if (!col_bool(r, 0, 0))
		rv = tk_err_set(err, TRPC_ERR_NOT_FOUND, "no task %s", task_uuid);
	else if (PQgetisnull(r, 0, 1))
		rv = tk_err_set(err, TRPC_ERR_NOT_FOUND, "no step %s", step_uuid);
	else if (strcmp(PQgetvalue(r, 0, 1), task_uuid) != 0)
		rv = tk_err_set(err, TRPC_ERR_INVALID, "step %s does not belong to task %s",
		                step_uuid, task_uuid);
	PQclear(r);
	return rv;
}

int eng_step_of_task(struct eng *e, const char *task_uuid, const char *step_uuid,
                     struct tk_err *err)
{
	tk_err_clear(err);
	if (eng_check_uuid("task", task_uuid, err) != 0 ||
	    eng_check_uuid("step", step_uuid, err) != 0)
		return err->code;
	PGconn *conn = take(e, err);
	if (conn == NULL)
		return err->code;
	int rv = step_owner_on(conn, task_uuid, step_uuid, err);
	give(e, conn, rv);
	return rv;
}

/* clang-format off */
static const char steps_sql[] =
	"SELECT rs.workflow_step_uuid, t.task_uuid, rs.name, rs.current_state, "
	US("ws.created_at") ", " US("ws.updated_at") ", " US("ws.processed_at") ", "
	"ws.results, rs.dependencies_satisfied, rs.retry_eligible, rs.ready_for_execution, "
	"rs.total_parents, rs.completed_parents, rs.attempts, rs.max_attempts, "
	US("rs.last_failure_at") ", " US("rs.next_retry_at") ", " US("rs.last_attempted_at") ", "
	"rs.backoff_request_seconds "
	"FROM tasker.tasks t "
	"LEFT JOIN LATERAL tasker.get_step_readiness_status_batch(ARRAY[t.task_uuid], $2::uuid[]) rs "
	"ON true "
	"LEFT JOIN tasker.workflow_steps ws ON ws.workflow_step_uuid = rs.workflow_step_uuid "
	"WHERE t.task_uuid = $1::uuid ORDER BY rs.workflow_step_uuid";
/* clang-format on */

static int steps_on(PGconn *conn, const char *task_uuid, const char *step_uuid,
                    struct eng_step **out, size_t *n, struct tk_err *err)
{
	char filter[40];
	if (step_uuid != NULL)
		snprintf(filter, sizeof filter, "{%s}", step_uuid);
	const char *p[] = {task_uuid, step_uuid != NULL ? filter : NULL};
	PGresult *r = db_exec_prepared(conn, "eng_q_steps", steps_sql, 2, p, err);
	if (r == NULL)
		return err->code;
	int rows = PQntuples(r), bad = 0, rv = 0;
	*out = NULL;
	*n = 0;
	if (rows == 0) {
		PQclear(r);
		return tk_err_set(err, TRPC_ERR_NOT_FOUND, "no task %s", task_uuid);
	}
	if (PQgetisnull(r, 0, 0)) { /* the task has no (such) step */
		PQclear(r);
		return step_uuid != NULL ? step_owner_on(conn, task_uuid, step_uuid, err) : 0;
	}
	struct eng_step *ss = calloc((size_t)rows, sizeof *ss);
	if (ss == NULL) {
		PQclear(r);
		return nomem(err);
	}
	for (int i = 0; i < rows; i++) {
		struct eng_step *s = &ss[i];
		int c = 0;
		col_text(r, i, c++, s->step_uuid, sizeof s->step_uuid);
		col_text(r, i, c++, s->task_uuid, sizeof s->task_uuid);
		col_text(r, i, c++, s->name, sizeof s->name);
		col_text(r, i, c++, s->state, sizeof s->state);
		s->created_at = col_time(r, i, c++);
		s->updated_at = col_time(r, i, c++);
		s->completed_at = col_time(r, i, c++);
		s->results = col_json(r, i, c++, &bad);
		s->dependencies_satisfied = col_bool(r, i, c++);
		s->retry_eligible = col_bool(r, i, c++);
		s->ready_for_execution = col_bool(r, i, c++);
		s->total_parents = col_int(r, i, c++);
		s->completed_parents = col_int(r, i, c++);
		s->attempts = col_int(r, i, c++);
		s->max_attempts = col_int(r, i, c++);
		s->last_failure_at = col_time(r, i, c++);
		s->next_retry_at = col_time(r, i, c++);
		s->last_attempted_at = col_time(r, i, c++);
		s->has_backoff = !PQgetisnull(r, i, c);
		s->backoff_request_seconds = col_int(r, i, c++);
	}
	PQclear(r);
	if (bad) {
		eng_steps_free(ss, (size_t)rows);
		return bad_json(err, "step results");
	}
	*out = ss;
	*n = (size_t)rows;
	return rv;
}

int eng_task_steps(struct eng *e, const char *task_uuid, const char *step_uuid,
                   struct eng_step **out, size_t *n, struct tk_err *err)
{
	tk_err_clear(err);
	*out = NULL;
	*n = 0;
	if (eng_check_uuid("task", task_uuid, err) != 0 ||
	    (step_uuid != NULL && eng_check_uuid("step", step_uuid, err) != 0))
		return err->code;
	PGconn *conn = take(e, err);
	if (conn == NULL)
		return err->code;
	int rv = steps_on(conn, task_uuid, step_uuid, out, n, err);
	give(e, conn, rv);
	return rv;
}

/* ------------------------------------------------------------------ audit */

void eng_audits_free(struct eng_audit *a, size_t n)
{
	for (size_t i = 0; a != NULL && i < n; i++)
		json_decref(a[i].result);
	free(a);
}

/* The step execution result in a transition's metadata.event (see
 * tasker.step_result_from_event): the result object itself, or one
 * wrapped under a single key; the event may be serialized JSON text. */
static json_t *result_from_event(json_t *ev)
{
	json_t *parsed = NULL, *res = NULL;
	if (json_is_string(ev)) {
		json_error_t je;
		parsed = json_loads(json_string_value(ev), JSON_DECODE_INT_AS_REAL, &je);
		ev = parsed;
	}
	if (json_is_object(ev)) {
		if (json_object_get(ev, "success") != NULL) {
			res = json_incref(ev);
		} else if (json_object_size(ev) == 1) {
			json_t *inner = json_object_iter_value(json_object_iter(ev));
			if (json_is_object(inner) && json_object_get(inner, "success") != NULL)
				res = json_incref(inner);
		}
	}
	json_decref(parsed);
	return res;
}

/* clang-format off */
static const char audit_sql[] =
	"SELECT a.workflow_step_result_audit_uuid, a.workflow_step_uuid, "
	"a.workflow_step_transition_uuid, a.task_uuid, " US("a.recorded_at") ", "
	"a.worker_uuid, a.correlation_id, a.success, a.execution_time_ms, "
	"st.metadata -> 'event', ns.name, st.from_state, st.to_state "
	"FROM tasker.workflow_step_result_audit a "
	"JOIN tasker.workflow_step_transitions st "
	"ON st.workflow_step_transition_uuid = a.workflow_step_transition_uuid "
	"JOIN tasker.workflow_steps ws ON ws.workflow_step_uuid = a.workflow_step_uuid "
	"JOIN tasker.named_steps ns ON ns.named_step_uuid = ws.named_step_uuid "
	"WHERE a.workflow_step_uuid = $1::uuid "
	"ORDER BY a.recorded_at DESC, st.sort_key DESC";
/* clang-format on */

int eng_step_audit(struct eng *e, const char *task_uuid, const char *step_uuid,
                   struct eng_audit **out, size_t *n, struct tk_err *err)
{
	tk_err_clear(err);
	*out = NULL;
	*n = 0;
	if (eng_check_uuid("task", task_uuid, err) != 0 ||
	    eng_check_uuid("step", step_uuid, err) != 0)
		return err->code;
	PGconn *conn = take(e, err);
	if (conn == NULL)
		return err->code;
	int rv = step_owner_on(conn, task_uuid, step_uuid, err);
	if (rv != 0)
		goto release;
	const char *p[] = {step_uuid};
	PGresult *r = db_exec_prepared(conn, "eng_q_step_audit", audit_sql, 1, p, err);
	if (r == NULL) {
		rv = err->code;
		goto release;
	}
	int rows = PQntuples(r), bad = 0;
	struct eng_audit *as = rows > 0 ? calloc((size_t)rows, sizeof *as) : NULL;
	if (rows > 0 && as == NULL) {
		PQclear(r);
		rv = nomem(err);
		goto release;
	}
	for (int i = 0; i < rows; i++) {
		struct eng_audit *a = &as[i];
		int c = 0;
		col_text(r, i, c++, a->audit_uuid, sizeof a->audit_uuid);
		col_text(r, i, c++, a->step_uuid, sizeof a->step_uuid);
		col_text(r, i, c++, a->transition_uuid, sizeof a->transition_uuid);
		col_text(r, i, c++, a->task_uuid, sizeof a->task_uuid);
		a->recorded_at = col_time(r, i, c++);
		col_text(r, i, c++, a->worker_uuid, sizeof a->worker_uuid);
		col_text(r, i, c++, a->correlation_id, sizeof a->correlation_id);
		a->success = col_bool(r, i, c++);
		a->has_execution_time = !PQgetisnull(r, i, c);
		a->execution_time_ms = col_i64(r, i, c++);
		json_t *ev = col_json(r, i, c++, &bad);
		a->result = result_from_event(ev);
		json_decref(ev);
		col_text(r, i, c++, a->step_name, sizeof a->step_name);
		col_text(r, i, c++, a->from_state, sizeof a->from_state);
		col_text(r, i, c++, a->to_state, sizeof a->to_state);
	}
	PQclear(r);
	/* An unreadable event only loses that record's result, not the record. */
	(void)bad;
	*out = as;
	*n = (size_t)rows;
release:
	give(e, conn, rv);
	return rv;
}

/* ------------------------------------------------------------------ summary */

void eng_task_summary_clear(struct eng_task_summary *s)
{
	eng_tasks_free(s->task, s->task != NULL ? 1 : 0);
	eng_steps_free(s->steps, s->n_steps);
	memset(s, 0, sizeof *s);
}

int eng_task_summary(struct eng *e, const char *task_uuid, struct eng_task_summary *out,
                     struct tk_err *err)
{
	tk_err_clear(err);
	memset(out, 0, sizeof *out);
	if (eng_check_uuid("task", task_uuid, err) != 0)
		return err->code;
	PGconn *conn = take(e, err);
	if (conn == NULL)
		return err->code;
	int rv = task_get_on(conn, task_uuid, &out->task, err);
	if (rv == 0)
		rv = steps_on(conn, task_uuid, NULL, &out->steps, &out->n_steps, err);
	PGresult *r = NULL;
	if (rv == 0) {
		const char *p[] = {task_uuid};
		r = db_exec_prepared(conn, "eng_q_task_dlq",
		                     "SELECT dlq_reason::text, resolution_status::text "
		                     "FROM tasker.tasks_dlq WHERE task_uuid = $1::uuid "
		                     "ORDER BY dlq_timestamp DESC, dlq_entry_uuid DESC LIMIT 1",
		                     1, p, err);
		if (r == NULL)
			rv = err->code;
	}
	if (r != NULL && PQntuples(r) == 1) {
		out->has_dlq = 1;
		col_text(r, 0, 0, out->dlq_reason, sizeof out->dlq_reason);
		col_text(r, 0, 1, out->dlq_resolution_status, sizeof out->dlq_resolution_status);
		out->in_dlq = strcmp(out->dlq_resolution_status, "pending") == 0;
	}
	PQclear(r);
	give(e, conn, rv);
	if (rv == 0) {
		out->tpl = eng_template(e, out->task->named_task_uuid, err);
		if (out->tpl == NULL)
			rv = err->code ? err->code
			               : tk_err_set(err, TRPC_ERR_NOT_FOUND, "no template");
	}
	if (rv != 0)
		eng_task_summary_clear(out);
	return rv;
}

/* ------------------------------------------------------------------ status */

void eng_task_status_clear(struct eng_task_status *s)
{
	free(s->transitions);
	free(s->steps);
	memset(s, 0, sizeof *s);
}

static void json_text(json_t *o, const char *key, char *buf, size_t size)
{
	const char *v = json_string_value(json_object_get(o, key));
	snprintf(buf, size, "%s", v != NULL ? v : "");
}

static int64_t json_i64(json_t *o, const char *key, int64_t dflt)
{
	json_t *v = json_object_get(o, key);
	return json_is_integer(v) ? (int64_t)json_integer_value(v) : dflt;
}

/* One round trip: the new task transitions and the steps, as JSON. */
/* clang-format off */
static const char status_sql[] =
	"SELECT (SELECT COALESCE(json_agg(json_build_object("
	"'s', tt.to_state, 'k', tt.sort_key, 't', " US("tt.created_at") ") ORDER BY tt.sort_key), "
	"'[]') "
	"FROM tasker.task_transitions tt WHERE tt.task_uuid = t.task_uuid "
	"AND CASE WHEN $2::int < 0 THEN tt.most_recent ELSE tt.sort_key > $2::int END), "
	"(SELECT COALESCE(json_agg(json_build_object("
	"'u', ws.workflow_step_uuid, 'n', ns.name, 's', COALESCE(st.to_state, 'pending'), "
	"'a', ws.attempts, 't', " US("COALESCE(st.created_at, ws.created_at)") ", "
	"'e', CASE WHEN st.to_state = 'error' THEN left(ws.results #>> '{error,message}', 200) END"
	") ORDER BY ws.workflow_step_uuid), '[]') "
	"FROM tasker.workflow_steps ws "
	"JOIN tasker.named_steps ns ON ns.named_step_uuid = ws.named_step_uuid "
	"LEFT JOIN tasker.workflow_step_transitions st "
	"ON st.workflow_step_uuid = ws.workflow_step_uuid AND st.most_recent "
	"WHERE ws.task_uuid = t.task_uuid AND ($3::boolean OR st.to_state = 'error')) "
	"FROM tasker.tasks t WHERE t.task_uuid = $1::uuid";
/* clang-format on */

int eng_task_status(struct eng *e, const char *task_uuid, int after, int all_steps,
                    struct eng_task_status *out, struct tk_err *err)
{
	tk_err_clear(err);
	memset(out, 0, sizeof *out);
	if (eng_check_uuid("task", task_uuid, err) != 0)
		return err->code;
	PGconn *conn = take(e, err);
	if (conn == NULL)
		return err->code;
	char after_s[16];
	snprintf(after_s, sizeof after_s, "%d", after);
	const char *p[] = {task_uuid, after_s, all_steps ? "true" : "false"};
	PGresult *r = db_exec_prepared(conn, "eng_q_task_status", status_sql, 3, p, err);
	int rv = 0;
	json_t *tr = NULL, *st = NULL;
	if (r == NULL) {
		rv = err->code;
		goto release;
	}
	if (PQntuples(r) == 0) {
		rv = tk_err_set(err, TRPC_ERR_NOT_FOUND, "no task %s", task_uuid);
		goto clear;
	}
	json_error_t je;
	tr = json_loads(PQgetvalue(r, 0, 0), 0, &je);
	st = json_loads(PQgetvalue(r, 0, 1), 0, &je);
	if (!json_is_array(tr) || !json_is_array(st)) {
		rv = bad_json(err, "the task status");
		goto clear;
	}
	out->n_transitions = json_array_size(tr);
	out->n_steps = json_array_size(st);
	out->transitions =
	    out->n_transitions ? calloc(out->n_transitions, sizeof *out->transitions) : NULL;
	out->steps = out->n_steps ? calloc(out->n_steps, sizeof *out->steps) : NULL;
	if ((out->n_transitions && out->transitions == NULL) ||
	    (out->n_steps && out->steps == NULL)) {
		rv = nomem(err);
		goto clear;
	}
	for (size_t i = 0; i < out->n_transitions; i++) {
		json_t *o = json_array_get(tr, i);
		json_text(o, "s", out->transitions[i].state, sizeof out->transitions[i].state);
		out->transitions[i].sort_key = (int)json_i64(o, "k", 0);
		out->transitions[i].at = json_i64(o, "t", ENG_NO_TIME);
	}
	for (size_t i = 0; i < out->n_steps; i++) {
		json_t *o = json_array_get(st, i);
		struct eng_step_status *s = &out->steps[i];
		json_text(o, "u", s->step_uuid, sizeof s->step_uuid);
		json_text(o, "n", s->name, sizeof s->name);
		json_text(o, "s", s->state, sizeof s->state);
		json_text(o, "e", s->error, sizeof s->error);
		s->attempts = (int)json_i64(o, "a", 0);
		s->at = json_i64(o, "t", ENG_NO_TIME);
	}
clear:
	json_decref(tr);
	json_decref(st);
	PQclear(r);
	if (rv != 0)
		eng_task_status_clear(out);
release:
	give(e, conn, rv);
	return rv;
}

/* ------------------------------------------------------------------ queues */

int eng_queue_depth(struct eng *e, struct eng_queue_depth *out, struct tk_err *err)
{
	tk_err_clear(err);
	memset(out, 0, sizeof *out);
	PGconn *conn = take(e, err);
	if (conn == NULL)
		return err->code;
	PGresult *r = db_exec_prepared(conn, "eng_q_queue_depth",
	                               "SELECT queue_name, queue_length FROM pgmq.metrics_all() "
	                               "ORDER BY queue_length DESC, queue_name LIMIT 1",
	                               0, NULL, err);
	int rv = 0;
	if (r == NULL) {
		rv = err->code;
	} else {
		if (PQntuples(r) == 1) {
			col_text(r, 0, 0, out->queue, sizeof out->queue);
			out->depth = col_i64(r, 0, 1);
		}
		PQclear(r);
	}
	give(e, conn, rv);
	return rv;
}

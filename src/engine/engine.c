/*
 * engine: set-up, template registry and the task operations. The state
 * machine driver and the orchestration threads are in orchestrate.c.
 */
#include "config.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "engine/engine_int.h"
#include "engine/template.h"
#include "store/migrate.h"

void eng_config_init(struct eng_config *cfg)
{
	memset(cfg, 0, sizeof *cfg);
	cfg->pool_size = 16;
	cfg->pool_acquire_timeout_ms = 5000;
	cfg->poll_interval_ms = 1000;
	cfg->result_batch = 32;
	cfg->result_threads = 2;
	cfg->request_threads = 2;
	cfg->visibility_timeout_s = 30;
	cfg->staleness_enabled = 1;
	cfg->staleness_interval_s = 300;
	cfg->staleness_batch = 100;
	cfg->backoff_multiplier = 2.0;
	cfg->backoff_jitter = 0.15;
	cfg->backoff_max_s = 3600;
}

struct db_pool *eng_pool(struct eng *e)
{
	return e->pool;
}

int eng_migrate(const char *database_url, struct tk_err *err)
{
	PGconn *conn = db_connect(database_url, "tasker-migrate", 10, err);
	if (conn == NULL)
		return err->code ? err->code : TRPC_ERR_UNAVAILABLE;
	int rv = db_migrate(conn, err);
	PQfinish(conn);
	return rv < 0 ? rv : 0;
}

/* ------------------------------------------------------------------ registry */

/* Registers one template: namespace, named task (configuration = the whole
 * template), named steps and their defaults. Idempotent. */
static int register_template(PGconn *conn, const struct tpl *t, struct tk_err *err)
{
	char *config = json_dumps(t->config, JSON_COMPACT | JSON_SORT_KEYS);
	if (config == NULL)
		return tk_err_set(err, TRPC_ERR_NOMEM, "out of memory");
	int rv = db_begin(conn, err);
	if (rv != 0)
		goto out;
	const char *p1[] = {t->namespace_name};
	rv = db_command(conn,
	                "INSERT INTO tasker.task_namespaces (name) VALUES ($1) "
	                "ON CONFLICT (name) DO NOTHING",
	                1, p1, err);
	if (rv != 0)
		goto fail;
	const char *p2[] = {t->namespace_name, t->name, t->version,
	                    t->description,    config,  t->identity_strategy};
	PGresult *res = db_exec(
	    conn,
	    "INSERT INTO tasker.named_tasks (task_namespace_uuid, name, version, description, "
	    "configuration, identity_strategy) "
	    "SELECT ns.task_namespace_uuid, $2, $3, $4, $5::jsonb, $6::tasker.identity_strategy "
	    "FROM tasker.task_namespaces ns WHERE ns.name = $1 "
	    "ON CONFLICT (task_namespace_uuid, name, version) DO UPDATE SET "
	    "description = EXCLUDED.description, configuration = EXCLUDED.configuration, "
	    "identity_strategy = EXCLUDED.identity_strategy, updated_at = now() "
	    "RETURNING named_task_uuid",
	    6, p2, err);
	if (res == NULL) {
		rv = err->code;
		goto fail;
	}
	char nt_uuid[37];
	snprintf(nt_uuid, sizeof nt_uuid, "%s", PQgetvalue(res, 0, 0));
	PQclear(res);
	for (size_t i = 0; i < t->n_steps; i++) {
		const struct tpl_step *s = &t->steps[i];
		char max[16];
		snprintf(max, sizeof max, "%d", s->max_attempts);
		const char *p3[] = {s->name, s->description};
		rv =
		    db_command(conn,
		               "INSERT INTO tasker.named_steps (name, description) VALUES ($1, $2) "
		               "ON CONFLICT (name) DO NOTHING",
		               2, p3, err);
		if (rv != 0)
			goto fail;
		const char *p4[] = {nt_uuid, s->name, s->retryable ? "true" : "false", max};
		rv = db_command(
		    conn,
		    "INSERT INTO tasker.named_tasks_named_steps (named_task_uuid, named_step_uuid, "
		    "default_retryable, default_max_attempts) "
		    "SELECT $1::uuid, ns.named_step_uuid, $3::boolean, $4::integer "
		    "FROM tasker.named_steps ns WHERE ns.name = $2 "
		    "ON CONFLICT (named_task_uuid, named_step_uuid) DO UPDATE SET "
		    "default_retryable = EXCLUDED.default_retryable, "
		    "default_max_attempts = EXCLUDED.default_max_attempts, updated_at = now()",
		    4, p4, err);
		if (rv != 0)
			goto fail;
	}
	/* The namespace's worker queue exists before the first task is
	 * created, whether or not a worker has started yet. */
	char queue[96];
	snprintf(queue, sizeof queue, "worker_%s_queue", t->namespace_name);
	if ((rv = mq_create(conn, queue, err)) != 0)
		goto fail;
	rv = db_commit(conn, err);
	goto out;
fail:
	db_rollback(conn, NULL);
out:
	free(config);
	if (rv != 0 && err->msg[0])
		tk_err_set(err, rv, "%s: registering %s/%s@%s: %.300s", t->source,
		           t->namespace_name, t->name, t->version, err->msg);
	return rv;
}

/* The cached parse of a registered template, loaded from the database on
 * first use (another process may have registered it). */
const struct tpl *eng_template(struct eng *e, const char *named_task_uuid, struct tk_err *err)
{
	pthread_mutex_lock(&e->tpl_mu);
	for (size_t i = 0; i < e->n_cache; i++)
		if (strcmp(e->cache[i].uuid, named_task_uuid) == 0) {
			const struct tpl *t = e->cache[i].tpl;
			pthread_mutex_unlock(&e->tpl_mu);
			return t;
		}
	pthread_mutex_unlock(&e->tpl_mu);

	PGconn *conn = db_acquire(e->pool, err);
	if (conn == NULL)
		return NULL;
	const char *p[] = {named_task_uuid};
	PGresult *res = db_exec(conn,
	                        "SELECT configuration::text FROM tasker.named_tasks "
	                        "WHERE named_task_uuid = $1",
	                        1, p, err);
	db_release(e->pool, conn, res == NULL && db_is_connection_error(conn));
	if (res == NULL)
		return NULL;
	if (PQntuples(res) == 0) {
		PQclear(res);
		tk_err_set(err, TRPC_ERR_NOT_FOUND, "template %s is not registered",
		           named_task_uuid);
		return NULL;
	}
	/* The configuration is JSON, and JSON is YAML: the same parser and
	 * validation as for files. */
	const char *json = PQgetvalue(res, 0, 0);
	struct tpl *t = NULL;
	char source[64];
	snprintf(source, sizeof source, "named task %s", named_task_uuid);
	int rv = tpl_parse_string(json, strlen(json), source, NULL, &t, err);
	PQclear(res);
	if (rv != 0)
		return NULL;
	pthread_mutex_lock(&e->tpl_mu);
	for (size_t i = 0; i < e->n_cache; i++)
		if (strcmp(e->cache[i].uuid, named_task_uuid) == 0) {
			/* another thread won the race */
			const struct tpl *have = e->cache[i].tpl;
			pthread_mutex_unlock(&e->tpl_mu);
			tpl_free(t);
			return have;
		}
	struct tpl_cache_entry *v = realloc(e->cache, (e->n_cache + 1) * sizeof *v);
	if (v == NULL) {
		pthread_mutex_unlock(&e->tpl_mu);
		tpl_free(t);
		tk_err_set(err, TRPC_ERR_NOMEM, "out of memory");
		return NULL;
	}
	e->cache = v;
	snprintf(e->cache[e->n_cache].uuid, sizeof e->cache[0].uuid, "%s", named_task_uuid);
	e->cache[e->n_cache].tpl = t;
	e->n_cache++;
	pthread_mutex_unlock(&e->tpl_mu);
	return t;
}

/* ------------------------------------------------------------------ lifecycle */

struct eng *eng_new(const struct eng_config *cfg, struct tk_err *err)
{
	if (cfg->database_url == NULL || *cfg->database_url == '\0') {
		tk_err_set(err, TRPC_ERR_INVALID, "DATABASE_URL (database.url) is required");
		return NULL;
	}
	struct eng *e = calloc(1, sizeof *e);
	if (e == NULL) {
		tk_err_set(err, TRPC_ERR_NOMEM, "out of memory");
		return NULL;
	}
	e->cfg = *cfg;
	e->database_url = strdup(cfg->database_url);
	e->cfg.database_url = e->database_url;
	pthread_mutex_init(&e->tpl_mu, NULL);
	pthread_mutex_init(&e->wake_mu, NULL);
	pthread_cond_init(&e->wake_cv, NULL);
	for (int i = 0; i < ENG_WAKE_N; i++)
		pthread_mutex_init(&e->read_mu[i], NULL);
	eng_random_uuid(e->processor_uuid);
	struct db_pool_config pc = {.conninfo = cfg->database_url,
	                            .size = cfg->pool_size,
	                            .acquire_timeout_ms = cfg->pool_acquire_timeout_ms,
	                            .connect_timeout_s = 10,
	                            .application_name = "taskerd"};
	e->pool = db_pool_new(&pc, err);
	if (e->pool == NULL)
		goto fail;
	/* The schema must be there: a clear error beats failing queries. */
	PGconn *conn = db_acquire(e->pool, err);
	if (conn == NULL)
		goto fail;
	PGresult *res =
	    db_exec(conn, "SELECT to_regproc('tasker.create_task') IS NOT NULL", 0, NULL, err);
	int ok = res != NULL && PQgetvalue(res, 0, 0)[0] == 't';
	if (res != NULL)
		PQclear(res);
	if (!ok) {
		db_release(e->pool, conn, 0);
		if (err->code == 0)
			tk_err_set(err, TRPC_ERR_STATE,
			           "the database has no tasker schema: run taskerd --migrate-only");
		goto fail;
	}
	if (cfg->template_path != NULL && *cfg->template_path) {
		struct tpl **list = NULL;
		size_t n = 0;
		if (tpl_discover(cfg->template_path, cfg->environment, &list, &n, err) != 0) {
			db_release(e->pool, conn, 0);
			goto fail;
		}
		for (size_t i = 0; i < n; i++) {
			if (register_template(conn, list[i], err) != 0) {
				tpl_free_all(list, n);
				db_release(e->pool, conn, db_is_connection_error(conn));
				goto fail;
			}
			trpc_log(TRPC_LOG_INFO, "registered template %s/%s@%s from %s",
			         list[i]->namespace_name, list[i]->name, list[i]->version,
			         list[i]->source);
		}
		tpl_free_all(list, n);
	}
	/* The orchestration queues exist before anyone sends to them. */
	static const char *queues[] = {ENG_RESULTS_QUEUE, ENG_REQUESTS_QUEUE};
	for (size_t i = 0; i < 2; i++)
		if (mq_create(conn, queues[i], err) != 0) {
			db_release(e->pool, conn, db_is_connection_error(conn));
			goto fail;
		}
	db_release(e->pool, conn, 0);
	return e;
fail:
	eng_free(e);
	return NULL;
}

void eng_free(struct eng *e)
{
	if (e == NULL)
		return;
	eng_stop(e);
	for (size_t i = 0; i < e->n_cache; i++)
		tpl_free(e->cache[i].tpl);
	free(e->cache);
	if (e->pool != NULL)
		db_pool_free(e->pool);
	pthread_mutex_destroy(&e->tpl_mu);
	pthread_mutex_destroy(&e->wake_mu);
	pthread_cond_destroy(&e->wake_cv);
	for (int i = 0; i < ENG_WAKE_N; i++)
		pthread_mutex_destroy(&e->read_mu[i]);
	free(e->database_url);
	free(e);
}

/* ------------------------------------------------------------------ create */

/* A uuid in its canonical text form (what the API accepts). */
int eng_valid_uuid(const char *s)
{
	if (s == NULL || strlen(s) != 36)
		return 0;
	for (int i = 0; i < 36; i++) {
		char c = s[i];
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (c != '-')
				return 0;
		} else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
		             (c >= 'A' && c <= 'F'))) {
			return 0;
		}
	}
	return 1;
}

static int check_uuid(const char *what, const char *s, struct tk_err *err)
{
	if (eng_valid_uuid(s))
		return 0;
	return tk_err_set(err, TRPC_ERR_INVALID, "%s \"%.64s\" is not a uuid", what, s ? s : "");
}

static int valid_json(const char *text, int want_object, struct tk_err *err, const char *what)
{
	json_error_t je;
	json_t *v = json_loads(text, JSON_DECODE_ANY, &je);
	if (v == NULL)
		return tk_err_set(err, TRPC_ERR_INVALID, "%s is not valid JSON: %s (column %d)",
		                  what, je.text, je.column);
	int ok = !want_object || json_is_object(v);
	json_decref(v);
	if (!ok)
		return tk_err_set(err, TRPC_ERR_INVALID, "%s must be a JSON object", what);
	return 0;
}

/* Finds the named task for a request: the given version, or the highest. */
static int find_named_task(PGconn *conn, const struct eng_task_request *req, char *uuid,
                           char *version, struct tk_err *err)
{
	const char *p[] = {req->namespace_name, req->name, req->version};
	PGresult *res = db_exec_prepared(
	    conn, "eng_find_named_task",
	    "SELECT nt.named_task_uuid, nt.version FROM tasker.named_tasks nt "
	    "JOIN tasker.task_namespaces ns ON ns.task_namespace_uuid = nt.task_namespace_uuid "
	    "WHERE ns.name = $1 AND nt.name = $2 AND ($3::text IS NULL OR nt.version = $3) "
	    "ORDER BY string_to_array(nt.version, '.')::int[] DESC LIMIT 1",
	    3, p, err);
	if (res == NULL)
		return err->code;
	if (PQntuples(res) == 0) {
		PQclear(res);
		return tk_err_set(err, TRPC_ERR_NOT_FOUND, "no task template %s/%s%s%s",
		                  req->namespace_name, req->name, req->version ? "@" : "",
		                  req->version ? req->version : "");
	}
	snprintf(uuid, 37, "%s", PQgetvalue(res, 0, 0));
	snprintf(version, 17, "%s", PQgetvalue(res, 0, 1));
	PQclear(res);
	return 0;
}

/* A template as tasker.create_tasks takes it: {namespace, steps, edges}. */
static json_t *template_json(const struct tpl *t)
{
	json_t *s = json_array(), *ed = json_array();

	for (size_t i = 0; i < t->n_steps; i++) {
		const struct tpl_step *st = &t->steps[i];
		json_array_append_new(s, json_pack("{s:s, s:b, s:i, s:O?}", "name", st->name,
		                                   "retryable", st->retryable, "max_attempts",
		                                   st->max_attempts, "inputs", st->initialization));
		for (size_t d = 0; d < st->n_dependencies; d++)
			json_array_append_new(ed,
			                      json_pack("{s:s, s:s}", "parent", st->dependencies[d],
			                                "child", st->name));
	}
	if (s == NULL || ed == NULL || json_array_size(s) != t->n_steps) {
		json_decref(s);
		json_decref(ed);
		return NULL;
	}
	return json_pack("{s:s, s:o, s:o}", "namespace", t->namespace_name, "steps", s, "edges",
	                 ed);
}

/*
 * Checks a request and finds its template (item->named_task_uuid, version).
 * Returns 0; a refusal (TRPC_ERR_INVALID, TRPC_ERR_NOT_FOUND) with
 * item->err set; or a database code with err set.
 */
static int check_request(struct eng *e, PGconn *conn, struct eng_batch_item *item,
                         const struct tpl **tpl, struct tk_err *err)
{
	const struct eng_task_request *req = &item->req;
	struct tk_err *why = &item->err;
	int rv;

	tk_err_clear(why);
	if (req->namespace_name == NULL || !*req->namespace_name || req->name == NULL ||
	    !*req->name)
		return tk_err_set(why, TRPC_ERR_INVALID, "namespace and name are required");
	if (valid_json(req->context_json ? req->context_json : "{}", 1, why, "context") != 0)
		return why->code;
	if (req->tags_json != NULL && valid_json(req->tags_json, 0, why, "tags") != 0)
		return why->code;
	if (req->correlation_id != NULL && check_uuid("correlation_id", req->correlation_id, why))
		return why->code;
	if (req->parent_correlation_id != NULL &&
	    check_uuid("parent_correlation_id", req->parent_correlation_id, why))
		return why->code;
	rv = find_named_task(conn, req, item->named_task_uuid, item->version, why);
	if (rv == TRPC_ERR_NOT_FOUND)
		return rv;
	if (rv != 0) {
		*err = *why;
		return rv;
	}
	if ((*tpl = eng_template(e, item->named_task_uuid, why)) == NULL) {
		if (why->code != TRPC_ERR_NOT_FOUND && why->code != TRPC_ERR_INVALID)
			*err = *why;
		return why->code;
	}
	if (strcmp((*tpl)->identity_strategy ? (*tpl)->identity_strategy : "strict",
	           "caller_provided") == 0 &&
	    req->idempotency_key == NULL)
		return tk_err_set(why, TRPC_ERR_INVALID,
		                  "template %s/%s@%s uses caller_provided identity: an idempotency "
		                  "key is required",
		                  req->namespace_name, req->name, item->version);
	return 0;
}

static int refusal(int rv)
{
	return rv == TRPC_ERR_INVALID || rv == TRPC_ERR_NOT_FOUND;
}

/* Adds key = s to o when s is not NULL. */
static void set_str(json_t *o, const char *key, const char *s)
{
	if (s != NULL)
		json_object_set_new(o, key, json_string(s));
}

/* The request as tasker.create_tasks takes it. The context and the tags go
 * as text, so that PostgreSQL parses them as the caller wrote them. */
static json_t *request_json(size_t i, const struct eng_batch_item *item, const struct tpl *t)
{
	const struct eng_task_request *req = &item->req;
	json_t *r =
	    json_pack("{s:I, s:s, s:s, s:s, s:i}", "i", (json_int_t)i, "named_task_uuid",
	              item->named_task_uuid, "identity_strategy",
	              t->identity_strategy ? t->identity_strategy : "strict", "context",
	              req->context_json ? req->context_json : "{}", "priority", req->priority);

	if (r == NULL)
		return NULL;
	set_str(r, "idempotency_key", req->idempotency_key);
	set_str(r, "initiator", req->initiator);
	set_str(r, "source_system", req->source_system);
	set_str(r, "reason", req->reason);
	set_str(r, "tags", req->tags_json);
	set_str(r, "correlation_id", req->correlation_id);
	set_str(r, "parent_correlation_id", req->parent_correlation_id);
	return r;
}

/* Builds the arguments of tasker.create_tasks for the items not refused. */
static int batch_json(struct eng *e, PGconn *conn, struct eng_batch_item *items, size_t n,
                      char **reqs_text, char **tpls_text, struct tk_err *err)
{
	json_t *reqs = json_array(), *tpls = json_object();
	int rv = 0;

	if (reqs == NULL || tpls == NULL)
		rv = tk_err_set(err, TRPC_ERR_NOMEM, "out of memory");
	for (size_t i = 0; i < n && rv == 0; i++) {
		const struct tpl *t = NULL;
		int r = check_request(e, conn, &items[i], &t, err);
		if (r != 0) {
			items[i].rv = r;
			if (!refusal(r))
				rv = r;
			continue;
		}
		if (json_object_get(tpls, items[i].named_task_uuid) == NULL &&
		    json_object_set_new(tpls, items[i].named_task_uuid, template_json(t)) != 0)
			rv = tk_err_set(err, TRPC_ERR_NOMEM, "out of memory");
		else if (json_array_append_new(reqs, request_json(i, &items[i], t)) != 0)
			rv = tk_err_set(err, TRPC_ERR_NOMEM, "out of memory");
	}
	if (rv == 0) {
		*reqs_text = json_dumps(reqs, JSON_COMPACT);
		*tpls_text = json_dumps(tpls, JSON_COMPACT);
		if (*reqs_text == NULL || *tpls_text == NULL)
			rv = tk_err_set(err, TRPC_ERR_NOMEM, "out of memory");
	}
	json_decref(reqs);
	json_decref(tpls);
	return rv;
}

int eng_tasks_create(struct eng *e, PGconn *conn, struct eng_batch_item *items, size_t n,
                     const int64_t *archive, size_t narchive, struct tk_err *err)
{
	char *reqs = NULL, *tpls = NULL, *ids = NULL;
	PGresult *res;
	int rv;

	tk_err_clear(err);
	for (size_t i = 0; i < n; i++)
		items[i].rv = 0;
	if ((rv = batch_json(e, conn, items, n, &reqs, &tpls, err)) != 0)
		goto out;
	for (size_t i = 0; i < n; i++) /* until the database answers for it */
		if (items[i].rv == 0)
			items[i].rv = tk_err_set(&items[i].err, TRPC_ERR_DB,
			                         "tasker.create_tasks gave no row for the request");
	if (narchive > 0 && (ids = mq_ids_literal(archive, narchive)) == NULL) {
		rv = tk_err_set(err, TRPC_ERR_NOMEM, "out of memory");
		goto out;
	}
	const char *p[] = {reqs, tpls, e->processor_uuid, ids};
	res = db_exec_prepared(conn, "eng_create_tasks",
	                       "SELECT i, task_uuid, correlation_id FROM "
	                       "tasker.create_tasks($1::jsonb, $2::jsonb, $3::uuid, $4::bigint[])",
	                       4, p, err);
	if (res == NULL) {
		rv = err->code;
		goto out;
	}
	for (int row = 0; row < PQntuples(res); row++) {
		size_t i = (size_t)atol(PQgetvalue(res, row, 0));
		struct eng_batch_item *it = i < n ? &items[i] : NULL;
		if (it == NULL)
			continue;
		if (PQgetisnull(res, row, 1)) {
			it->rv =
			    tk_err_set(&it->err, TRPC_ERR_EXISTS,
			               "a task of %s/%s@%s with the same identity (%s) already "
			               "exists",
			               it->req.namespace_name, it->req.name, it->version,
			               it->req.idempotency_key ? "idempotency key" : "context");
			continue;
		}
		snprintf(it->created.task_uuid, sizeof it->created.task_uuid, "%s",
		         PQgetvalue(res, row, 1));
		snprintf(it->created.correlation_id, sizeof it->created.correlation_id, "%s",
		         PQgetvalue(res, row, 2));
		it->rv = 0;
	}
	PQclear(res);
out:
	free(reqs);
	free(tpls);
	free(ids);
	return rv;
}

/* Creates the task in the caller's open transaction (conn). On an error
 * the transaction must be rolled back by the caller. */
int eng_task_create_in(struct eng *e, PGconn *conn, const struct eng_task_request *req,
                       struct eng_task_created *out, struct tk_err *err)
{
	struct eng_batch_item item = {.req = *req};
	int rv;

	tk_err_clear(err);
	if ((rv = eng_tasks_create(e, conn, &item, 1, NULL, 0, err)) != 0)
		return rv;
	if (item.rv != 0) {
		*err = item.err;
		return item.rv;
	}
	*out = item.created;
	return 0;
}

int eng_task_create(struct eng *e, const struct eng_task_request *req, struct eng_task_created *out,
                    struct tk_err *err)
{
	tk_err_clear(err);
	PGconn *conn = db_acquire(e->pool, err);
	if (conn == NULL)
		return err->code;
	int rv = db_begin(conn, err);
	if (rv == 0) {
		rv = eng_task_create_in(e, conn, req, out, err);
		if (rv == 0)
			rv = db_commit(conn, err);
		else
			db_rollback(conn, NULL);
	}
	db_release(e->pool, conn, rv != 0 && db_is_connection_error(conn));
	return rv;
}

/* ------------------------------------------------------------------ operator actions */

/*
 * The metadata of an operator action's transitions, as JSON text in *out
 * (free it): {"event"} and the fields of `by` that are given. 0, or
 * TRPC_ERR_INVALID (a caller's text is not UTF-8) / TRPC_ERR_NOMEM.
 */
static int actor_metadata(const char *event, const struct eng_actor *by, char **out,
                          struct tk_err *err)
{
	static const struct eng_actor nobody;
	json_error_t je;

	if (by == NULL)
		by = &nobody;
	json_t *m = json_pack_ex(&je, 0, "{s:s, s:s*, s:s*, s:s*, s:s*}", "event", event,
	                         "operator", by->operator_name, "reason", by->reason, "subject",
	                         by->subject, "transport", by->transport);
	if (m == NULL)
		return json_error_code(&je) == json_error_out_of_memory
		           ? tk_err_set(err, TRPC_ERR_NOMEM, "out of memory")
		           : tk_err_set(err, TRPC_ERR_INVALID, "reason or operator: %s", je.text);
	*out = json_dumps(m, JSON_COMPACT);
	json_decref(m);
	return *out != NULL ? 0 : tk_err_set(err, TRPC_ERR_NOMEM, "out of memory");
}

/* The task's transition to cancelled, with the action's metadata (the
 * caller holds the row lock; eng_task_transition writes the event only). */
static int task_cancelled(struct eng *e, PGconn *conn, const char *task_uuid, const char *from,
                          const char *meta, struct tk_err *err)
{
	const char *p[] = {task_uuid, from, e->processor_uuid, meta};
	PGresult *res = db_exec(conn,
	                        "SELECT tasker.transition_task_state_atomic($1::uuid, $2, "
	                        "'cancelled', $3::uuid, $4::jsonb)",
	                        4, p, err);
	if (res == NULL)
		return err->code;
	int ok = PQgetvalue(res, 0, 0)[0] == 't';
	PQclear(res);
	if (!ok)
		return tk_err_set(err, TRPC_ERR_STATE, "task %s left %s before %s -> cancelled",
		                  task_uuid, from, from);
	return 0;
}

int eng_task_cancel(struct eng *e, const char *task_uuid, const struct eng_actor *by,
                    struct tk_err *err)
{
	char *meta = NULL;
	PGconn *conn;
	PGresult *res;
	char state[32];
	int rv;

	tk_err_clear(err);
	if (check_uuid("task", task_uuid, err) != 0)
		return err->code;
	if ((rv = actor_metadata("Cancel", by, &meta, err)) != 0)
		return rv;
	if ((conn = db_acquire(e->pool, err)) == NULL) {
		free(meta);
		return err->code;
	}
	if ((rv = db_begin(conn, err)) != 0)
		goto release;
	if ((rv = eng_lock_task(conn, task_uuid, state, sizeof state, err)) != 0)
		goto rollback;
	if (eng_task_terminal(state)) {
		rv = tk_err_set(err, TRPC_ERR_STATE, "task %s is already %s", task_uuid, state);
		goto rollback;
	}
	/* The steps and the task carry the same record of who and why. */
	const char *p[] = {task_uuid, meta};
	res = db_exec(conn, "SELECT tasker.cancel_task_steps($1::uuid, $2::jsonb)", 2, p, err);
	if (res == NULL) {
		rv = err->code;
		goto rollback;
	}
	PQclear(res);
	if ((rv = task_cancelled(e, conn, task_uuid, state, meta, err)) != 0)
		goto rollback;
	rv = db_commit(conn, err);
	goto release;
rollback:
	db_rollback(conn, NULL);
release:
	db_release(e->pool, conn, rv != 0 && db_is_connection_error(conn));
	free(meta);
	return rv;
}

int eng_task_state(struct eng *e, const char *task_uuid, char *buf, size_t size, struct tk_err *err)
{
	if (check_uuid("task", task_uuid, err) != 0)
		return err->code;
	PGconn *conn = db_acquire(e->pool, err);
	if (conn == NULL)
		return err->code;
	const char *p[] = {task_uuid};
	PGresult *res = db_exec(conn, "SELECT tasker.get_current_task_state($1::uuid)", 1, p, err);
	int rv = 0;
	if (res == NULL)
		rv = err->code;
	else if (PQgetisnull(res, 0, 0))
		rv = tk_err_set(err, TRPC_ERR_NOT_FOUND, "no task %s", task_uuid);
	else
		snprintf(buf, size, "%s", PQgetvalue(res, 0, 0));
	if (res != NULL)
		PQclear(res);
	db_release(e->pool, conn, rv != 0 && db_is_connection_error(conn));
	return rv;
}

/* ------------------------------------------------------------------ steps */

/*
 * The step execution result a manual completion stores, as JSON text in
 * *out (free it). Its metadata is the caller's with {"manual": true,
 * "operator"} over it: the engine's keys win. The inputs were checked.
 */
static int manual_result(const char *step_uuid, const char *result_json, const char *metadata_json,
                         const char *operator_name, char **out, struct tk_err *err)
{
	json_error_t je;
	json_t *r = result_json ? json_loads(result_json, JSON_DECODE_ANY, &je) : json_object();
	json_t *meta = metadata_json ? json_loads(metadata_json, 0, &je) : json_object();
	json_t *mine = json_pack("{s:b, s:s*}", "manual", 1, "operator", operator_name);
	json_t *wrapped = NULL;

	*out = NULL;
	if (r != NULL && meta != NULL && mine != NULL && json_object_update(meta, mine) == 0) {
		wrapped = json_pack("{s:s, s:b, s:O, s:s, s:O}", "step_uuid", step_uuid, "success",
		                    1, "result", r, "status", "completed", "metadata", meta);
		if (wrapped != NULL)
			*out = json_dumps(wrapped, JSON_COMPACT);
	}
	json_decref(r);
	json_decref(meta);
	json_decref(mine);
	json_decref(wrapped);
	return *out != NULL ? 0 : tk_err_set(err, TRPC_ERR_NOMEM, "out of memory");
}

/* Checks what eng_step_resolve is given, before any database work. */
static int check_resolution(const char *step_uuid, int action, const char *result_json,
                            const char *metadata_json, struct tk_err *err)
{
	if (check_uuid("step", step_uuid, err) != 0)
		return err->code;
	if (action != ENG_STEP_RESET_FOR_RETRY && action != ENG_STEP_RESOLVE_MANUALLY &&
	    action != ENG_STEP_COMPLETE_MANUALLY)
		return tk_err_set(err, TRPC_ERR_INVALID, "unknown step action %d", action);
	if (action != ENG_STEP_COMPLETE_MANUALLY)
		return metadata_json == NULL
		           ? 0
		           : tk_err_set(err, TRPC_ERR_INVALID,
		                        "metadata applies to a manual completion only");
	if (result_json != NULL && valid_json(result_json, 0, err, "result") != 0)
		return err->code;
	if (metadata_json != NULL && valid_json(metadata_json, 1, err, "metadata") != 0)
		return err->code;
	return 0;
}

static const char resolve_manually_sql[] =
    "SELECT tasker.transition_step_state_from_any($1::uuid, ARRAY[NULL, 'pending', "
    "'enqueued', 'in_progress', 'enqueued_for_orchestration', "
    "'enqueued_as_error_for_orchestration', 'waiting_for_retry', 'error'], "
    "'resolved_manually', $2::jsonb) IS NOT NULL";
static const char complete_manually_sql[] =
    "SELECT tasker.transition_step_state_from_any($1::uuid, ARRAY[NULL, 'pending', "
    "'enqueued', 'in_progress', 'enqueued_for_orchestration', "
    "'enqueued_as_error_for_orchestration', 'waiting_for_retry', 'error'], "
    "'complete', $2::jsonb, $3::jsonb) IS NOT NULL";

int eng_step_resolve(struct eng *e, const char *step_uuid, int action, const char *result_json,
                     const char *metadata_json, const struct eng_actor *by, struct tk_err *err)
{
	char *metas = NULL, *results = NULL;
	const char *event, *sql;
	PGconn *conn;
	PGresult *res;
	int rv;

	tk_err_clear(err);
	if ((rv = check_resolution(step_uuid, action, result_json, metadata_json, err)) != 0)
		return rv;
	if (action == ENG_STEP_RESET_FOR_RETRY) {
		event = "ResetForRetry";
		sql = "SELECT tasker.reset_step_for_retry($1::uuid, $2::jsonb)";
	} else if (action == ENG_STEP_RESOLVE_MANUALLY) {
		event = "ResolveManually";
		sql = resolve_manually_sql;
	} else {
		event = "CompleteManually";
		sql = complete_manually_sql;
		/* The result and the caller's metadata go in with the transition:
		 * one statement, one transaction. */
		if ((rv = manual_result(step_uuid, result_json, metadata_json,
		                        by ? by->operator_name : NULL, &results, err)) != 0)
			return rv;
	}
	if ((rv = actor_metadata(event, by, &metas, err)) != 0)
		goto out;
	if ((conn = db_acquire(e->pool, err)) == NULL) {
		rv = err->code;
		goto out;
	}
	if ((rv = db_begin(conn, err)) != 0)
		goto release;
	const char *p0[] = {step_uuid};
	res = db_exec(conn,
	              "SELECT task_uuid, tasker.get_current_step_state($1::uuid) "
	              "FROM tasker.workflow_steps WHERE workflow_step_uuid = $1::uuid",
	              1, p0, err);
	if (res == NULL) {
		rv = err->code;
		goto rollback;
	}
	if (PQntuples(res) == 0) {
		PQclear(res);
		rv = tk_err_set(err, TRPC_ERR_NOT_FOUND, "no step %s", step_uuid);
		goto rollback;
	}
	char task_uuid[37], before[40];
	snprintf(task_uuid, sizeof task_uuid, "%s", PQgetvalue(res, 0, 0));
	snprintf(before, sizeof before, "%s", PQgetvalue(res, 0, 1));
	PQclear(res);
	char tstate[32];
	/* Lock order everywhere: the task row first, then its steps. */
	if ((rv = eng_lock_task(conn, task_uuid, tstate, sizeof tstate, err)) != 0)
		goto rollback;
	const char *p1[] = {step_uuid, metas, results};
	res = db_exec(conn, sql, results ? 3 : 2, p1, err);
	if (res == NULL) {
		rv = err->code;
		goto rollback;
	}
	int done = PQgetvalue(res, 0, 0)[0] == 't';
	PQclear(res);
	if (!done) {
		rv = tk_err_set(err, TRPC_ERR_STATE, "step %s is %s: the action does not apply",
		                step_uuid, before);
		goto rollback;
	}
	/* Re-drive the task: a blocked or failed task continues now that the
	 * step is settled (the reference left it stuck). */
	if ((rv = eng_drive_locked(e, conn, task_uuid, 1, err)) != 0)
		goto rollback;
	rv = db_commit(conn, err);
	goto release;
rollback:
	db_rollback(conn, NULL);
release:
	db_release(e->pool, conn, rv != 0 && db_is_connection_error(conn));
out:
	free(metas);
	free(results);
	return rv;
}

/*
 * worker_services: tasker-worker's gRPC and REST servers (worker_services.h).
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "auth/auth.h"
#include "cmd/worker_services.h"
#include "services/grpc.h"
#include "services/ops.h"
#include "services/svc_env.h"
#include "services/worker/wsvc.h"
#include "store/db.h"
#include "web/rest.h"
#include "web/routes.h"
#include "worker/settings.h"
#include "worker/worker.h"

extern const unsigned char std_descriptor_set[];
extern const unsigned long std_descriptor_set_len;
extern const unsigned char tasker_descriptor_set[];
extern const unsigned long tasker_descriptor_set_len;

#define DEFAULT_GRPC_BIND "0.0.0.0:9100"
#define DEFAULT_WEB_BIND  "0.0.0.0:8081"
/* What the worker's answers call its implementation (worker.proto lists
 * the languages of the reference workers; this one is C). */
#define WORKER_TYPE "c"

static const struct svc_table *const tables[] = {
    &svc_worker_config_table,
    &svc_worker_health_table,
    &svc_worker_template_table,
};
#define N_TABLES (sizeof(tables) / sizeof(tables[0]))

/* ------------------------------------------------------------------ settings */

/* The settings of the process's one API, filled by the loader before
 * anything starts and read by worker_services_start(). */
struct api_settings {
	int ready, failed;
	struct rest_config rest;
	int web_bind_set;
	int grpc_enabled;
	int check_timeout_ms;
	struct auth_config *auth;
	char why[300];
};
static struct api_settings settings;

static int settings_init(struct api_settings *st)
{
	if (st->ready)
		return 0;
	if (st->failed)
		return TRPC_ERR_NOMEM;
	st->grpc_enabled = 1;
	st->check_timeout_ms = 2000;
	if (rest_config_init(&st->rest, DEFAULT_WEB_BIND) != 0 ||
	    (st->auth = auth_config_new("worker")) == NULL) {
		rest_config_clear(&st->rest);
		st->failed = 1;
		return TRPC_ERR_NOMEM;
	}
	st->ready = 1;
	return 0;
}

static void settings_clear(struct api_settings *st)
{
	if (!st->ready)
		return;
	rest_config_clear(&st->rest);
	auth_config_free(st->auth);
	memset(st, 0, sizeof(*st));
}

static int parse_bool(const char *v, int *out)
{
	if (strcasecmp(v, "true") == 0 || strcasecmp(v, "yes") == 0 || strcmp(v, "1") == 0 ||
	    strcasecmp(v, "on") == 0)
		return *out = 1, 0;
	if (strcasecmp(v, "false") == 0 || strcasecmp(v, "no") == 0 || strcmp(v, "0") == 0 ||
	    strcasecmp(v, "off") == 0)
		return *out = 0, 0;
	return -1;
}

static int set_worker_key(struct api_settings *st, const char *key, const char *value,
                          const char **why)
{
	char *end;
	long n;

	if (strcmp(key, "web_bind_address") == 0) {
		st->web_bind_set = 1;
		return rest_config_set_bind(&st->rest, value);
	}
	if (strcmp(key, "grpc_enabled") == 0) {
		if (parse_bool(value, &st->grpc_enabled) != 0)
			return *why = "expected true or false", TRPC_ERR_INVALID;
		return 0;
	}
	if (strcmp(key, "health_check_timeout_ms") == 0) {
		n = strtol(value, &end, 10);
		if (end == value || *end != '\0' || n < 10 || n > 600000)
			return *why = "expected milliseconds in 10..600000", TRPC_ERR_INVALID;
		st->check_timeout_ms = (int)n;
		return 0;
	}
	return TRPC_ERR_CONFIG;
}

/* One key into st (initialised). 0, TRPC_ERR_CONFIG or TRPC_ERR_INVALID. */
static int settings_set(struct api_settings *st, const char *section, const char *key,
                        const char *value, const char **why)
{
	struct tk_err err;

	if (strcmp(section, "worker") == 0)
		return set_worker_key(st, key, value, why);
	if (strcmp(section, "web") == 0)
		return rest_config_set(&st->rest, section, key, value, why);
	/* An unknown key of [auth] is the loader's to report (or, in the
	 * environment, to ignore: TASKER_AUTH_TOKEN is tasker-cli's). */
	if (auth_config_knows(section, key)) {
		tk_err_clear(&err);
		if (auth_config_set(st->auth, section, key, value, &err) == 0)
			return 0;
		snprintf(st->why, sizeof(st->why), "%s", err.msg);
		*why = st->why;
		return TRPC_ERR_INVALID;
	}
	return TRPC_ERR_CONFIG;
}

int worker_services_set(const char *section, const char *key, const char *value, const char **why)
{
	if (settings_init(&settings) != 0)
		return TRPC_ERR_NOMEM;
	return settings_set(&settings, section, key, value, why);
}

/* The keys of [worker] taken here (the others are src/worker/settings.c's). */
static int own_key(size_t i, const char **section, const char **key)
{
	static const char *const own[] = {"web_bind_address", "grpc_enabled",
	                                  "health_check_timeout_ms"};

	if (i >= sizeof(own) / sizeof(own[0]))
		return TRPC_ERR_NOT_FOUND;
	*section = "worker";
	*key = own[i];
	return 0;
}

int worker_services_key(size_t i, const char **section, const char **key)
{
	static int (*const lists[])(size_t, const char **,
	                            const char **) = {own_key, rest_config_key, auth_config_key};

	for (size_t l = 0; l < sizeof(lists) / sizeof(lists[0]); l++) {
		size_t n = 0;
		while (lists[l](n, section, key) == 0)
			n++;
		if (i < n)
			return lists[l](i, section, key);
		i -= n;
	}
	return TRPC_ERR_NOT_FOUND;
}

/* ------------------------------------------------------------------ servers */

struct worker_services {
	struct svc_env env;
	struct wsvc wsvc;
	struct auth *auth;
	trpc_server *srv;
	int srv_started;
	struct rest_server *rest;
	struct trpc_descriptor_set sets[2];
	/* Without a gRPC server: the runtime's keys at start, which a reload
	 * compares with (trpc_server_reload does it when there is a server). */
	trpc_config_keys *runtime_keys;
};

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void fill_env(struct worker_services *s, const struct worker_services_args *a)
{
	struct db_pool_stats ps;

	db_pool_stats(a->pool, &ps);
	s->wsvc.worker = a->worker;
	s->wsvc.registry = a->registry;
	s->wsvc.pool = a->pool;
	s->wsvc.conninfo = a->cfg->database_url;
	s->wsvc.templates = a->templates;
	s->wsvc.n_templates = a->n_templates;
	s->wsvc.namespaces = a->namespaces;
	s->wsvc.n_namespaces = a->n_namespaces;
	s->wsvc.environment = a->cfg->environment;
	s->wsvc.db_pool_size = ps.size;
	s->wsvc.check_timeout_ms = settings.check_timeout_ms;
	s->wsvc.started_ns = now_ns();
	s->env.role = "worker";
	s->env.auth = s->auth;
	s->env.pub.environment = a->cfg->environment;
	s->env.pub.version = PACKAGE_VERSION;
	s->env.pub.web_pool_size = ps.size;
	s->env.pub.web_max_connections = ps.size;
	s->env.pub.worker_id = wk_worker_uuid(a->worker);
	s->env.pub.worker_type = WORKER_TYPE;
	s->env.wsvc = &s->wsvc;
}

/* gRPC: health, reflection and the three services. 0, or -1 with err set
 * (a failure to listen on the default address is only logged). */
static int start_grpc(struct worker_services *s, const struct worker_services_args *a,
                      struct tk_err *err)
{
	const char *bind = a->cfg->grpc_bind_address, *why = NULL;
	trpc_health *h;

	if (trpc_server_config_set(a->rcfg, "server", "listen", bind, &why) != 0)
		return tk_err_set(err, TRPC_ERR_CONFIG, "worker.grpc_bind_address: %s", why), -1;
	if ((s->srv = trpc_server_new(a->rcfg, &why)) == NULL)
		return tk_err_set(err, TRPC_ERR_CONFIG, "gRPC: %s", why), -1;
	s->sets[0] = (struct trpc_descriptor_set){std_descriptor_set, std_descriptor_set_len};
	s->sets[1] = (struct trpc_descriptor_set){tasker_descriptor_set, tasker_descriptor_set_len};
	if ((h = trpc_health_register(s->srv)) == NULL ||
	    trpc_reflection_register(s->srv, s->sets, 2) != 0 ||
	    svc_grpc_register(s->srv, &s->env, tables, N_TABLES, NULL, 0, &why) != 0 ||
	    trpc_server_add_metrics_collector(s->srv, wsvc_collect_metrics, &s->wsvc) != 0)
		return tk_err_set(err, TRPC_ERR_NOMEM, "gRPC: cannot register the services%s%s",
		                  why != NULL ? ": " : "", why != NULL ? why : ""),
		       -1;
	for (size_t i = 0; i < N_TABLES; i++)
		trpc_health_set(h, tables[i]->service, TRPC_HEALTH_SERVING);
	s->env.srv = s->srv;
	if (trpc_server_start(s->srv, &why) == 0) {
		s->srv_started = 1;
		return 0;
	}
	if (strcmp(bind, DEFAULT_GRPC_BIND) != 0)
		return tk_err_set(err, TRPC_ERR_SYSTEM, "gRPC on %s: %s", bind, why), -1;
	trpc_log(TRPC_LOG_ERROR,
	         "gRPC on the default address %s: %s; running without the gRPC API (set "
	         "worker.grpc_bind_address)",
	         bind, why);
	trpc_server_free(s->srv);
	s->srv = NULL;
	s->env.srv = NULL;
	return 0;
}

static int start_rest(struct worker_services *s, struct tk_err *err)
{
	const char *why = NULL;

	s->rest = rest_start(&settings.rest, &s->env, tables, N_TABLES, rest_worker_routes,
	                     rest_worker_n_routes, &why);
	if (s->rest != NULL)
		return 0;
	if (settings.web_bind_set)
		return tk_err_set(err, TRPC_ERR_SYSTEM, "%s", why), -1;
	trpc_log(TRPC_LOG_ERROR, "%s; running without the REST API (set worker.web_bind_address)",
	         why);
	return 0;
}

/* Without a gRPC server: the runtime's keys for reloads, server.listen set
 * as a reload sets it (start_grpc did not run, or failed after setting it). */
static int keep_runtime_keys(struct worker_services *s, const struct worker_services_args *a,
                             struct tk_err *err)
{
	const char *bind = a->cfg->grpc_bind_address, *why = NULL;

	if (bind != NULL && trpc_server_config_set(a->rcfg, "server", "listen", bind, &why) != 0)
		return tk_err_set(err, TRPC_ERR_CONFIG, "worker.grpc_bind_address: %s", why), -1;
	if ((s->runtime_keys = trpc_config_keys_new()) == NULL ||
	    trpc_config_keys_add_server(s->runtime_keys, a->rcfg) != 0)
		return tk_err_set(err, TRPC_ERR_NOMEM, "out of memory"), -1;
	return 0;
}

struct worker_services *worker_services_start(const struct worker_services_args *a,
                                              struct tk_err *err)
{
	struct worker_services *s;

	if (settings_init(&settings) != 0 || (s = calloc(1, sizeof(*s))) == NULL) {
		tk_err_set(err, TRPC_ERR_NOMEM, "out of memory");
		return NULL;
	}
	if ((s->auth = auth_new(settings.auth, err)) == NULL)
		goto fail;
	fill_env(s, a);
	if (wsvc_init_counters(&s->wsvc) != 0) {
		tk_err_set(err, TRPC_ERR_NOMEM, "out of memory");
		goto fail;
	}
	if (settings.grpc_enabled && start_grpc(s, a, err) != 0)
		goto fail;
	if (s->srv == NULL && keep_runtime_keys(s, a, err) != 0)
		goto fail;
	if (settings.rest.enabled && start_rest(s, err) != 0)
		goto fail;
	return s;
fail:
	worker_services_stop(s);
	return NULL;
}

void worker_services_stop(struct worker_services *s)
{
	if (s != NULL) {
		rest_stop(s->rest);
		if (s->srv_started)
			trpc_server_shutdown(s->srv);
		trpc_server_free(s->srv);
		auth_free(s->auth);
		wsvc_clear(&s->wsvc);
		trpc_config_keys_free(s->runtime_keys);
		free(s);
	}
	settings_clear(&settings);
}

/* ------------------------------------------------------------------ reload */

struct worker_services_keys {
	struct api_settings st;
};

struct worker_services_keys *worker_services_keys_new(void)
{
	struct worker_services_keys *k = calloc(1, sizeof(*k));
	if (k != NULL && settings_init(&k->st) != 0) {
		free(k);
		return NULL;
	}
	return k;
}

void worker_services_keys_free(struct worker_services_keys *k)
{
	if (k == NULL)
		return;
	settings_clear(&k->st);
	free(k);
}

int worker_services_keys_set(struct worker_services_keys *k, const char *section, const char *key,
                             const char *value, const char **why)
{
	return settings_set(&k->st, section, key, value, why);
}

/* The runtime keys trpc_log_configure applies: all a reload without a gRPC server takes. */
static const char *const logging_keys[] = {"server.log_level", "log.level", "log.format",
                                           "log.file", NULL};

/* A reload without a gRPC server: the logging settings, and a word on the other runtime keys. */
static int reload_logging(const struct worker_services *s, const struct trpc_server_config *rcfg,
                          const char **why)
{
	trpc_config_keys *fresh;
	int rc = trpc_log_configure(rcfg, why);

	if (rc != 0)
		return rc;
	if ((fresh = trpc_config_keys_new()) != NULL &&
	    trpc_config_keys_add_server(fresh, rcfg) == 0)
		trpc_config_keys_warn_restart(s->runtime_keys, fresh, logging_keys);
	trpc_config_keys_free(fresh);
	return 0;
}

const char *const worker_services_reloaded_keys[] = {"auth.*", NULL};

/* What a reload puts in force once the runtime took its part. */
struct api_commit {
	struct worker_services *s;
	struct worker_services_keys *k;
	struct auth_update *auth; /* NULL once applied */
};

/* Cannot fail: the auth settings were built before the runtime applied. */
static void on_runtime_applied(void *ud)
{
	struct api_commit *c = ud;

	auth_update_apply(c->s->auth, c->auth);
	c->auth = NULL;
	/* The new auth settings are the ones in force now. */
	struct auth_config *old = settings.auth;
	settings.auth = c->k->st.auth;
	c->k->st.auth = old;
}

int worker_services_reload(struct worker_services *s, struct worker_services_keys *k,
                           const struct trpc_server_config *rcfg, const char **why)
{
	static __thread char buf[400];
	struct api_commit c = {s, k, NULL};
	struct tk_err err;
	int rc;

	/* Everything is checked before anything changes: the new auth
	 * settings are built first and put in force only once the runtime
	 * took rcfg (which it does all or nothing). */
	tk_err_clear(&err);
	if ((c.auth = auth_update_new(s->auth, k->st.auth, &err)) == NULL) {
		snprintf(buf, sizeof(buf), "auth: %s", err.msg);
		*why = buf;
		return err.code != 0 ? err.code : TRPC_ERR_CONFIG;
	}
	if (s->srv != NULL) {
		rc = trpc_server_reload_with(s->srv, rcfg, on_runtime_applied, &c, why);
	} else if ((rc = reload_logging(s, rcfg, why)) == 0) {
		on_runtime_applied(&c);
	}
	auth_update_free(c.auth); /* refused: never applied */
	return rc;
}

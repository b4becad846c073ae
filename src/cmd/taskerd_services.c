/*
 * taskerd_services: the tasker.v1 API of taskerd (see taskerd_services.h).
 */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/auth.h"
#include "cmd/taskerd_admin.h"
#include "cmd/taskerd_services.h"
#include "services/backpressure.h"
#include "services/grpc.h"
#include "services/ops.h"
#include "services/svc_env.h"
#include "services/tasker/stream.h"

struct taskerd_api {
	struct auth_config *auth_cfg;
	struct svc_bp_limits bp; /* [backpressure] as configured */
	struct svc_env env;
	struct svc_grpc_extra stream;
	char why[300]; /* the last complaint of taskerd_api_config_key */
};

/* The orchestration services of tasker-api.md §1.1 (StreamTaskStatus is
 * added to TaskService as an extra). */
static const struct svc_table *const tables[] = {
    &svc_tasks_table, &svc_steps_table,  &svc_templates_table, &svc_analytics_table,
    &svc_dlq_table,   &svc_health_table, &svc_config_table,
};

#define N_TABLES (sizeof tables / sizeof tables[0])

/* The keys of [backpressure]: a long or (is_int) an int of struct
 * svc_bp_limits, in min..max. */
static const struct bp_key {
	const char *key;
	size_t offset;
	int is_int;
	long min, max;
} bp_keys[] = {
    {"warning_depth", offsetof(struct svc_bp_limits, warning), 0, 1, 1000000000},
    {"critical_depth", offsetof(struct svc_bp_limits, critical), 0, 1, 1000000000},
    {"overflow_depth", offsetof(struct svc_bp_limits, overflow), 0, 1, 1000000000},
    {"retry_after_s", offsetof(struct svc_bp_limits, retry_after_s), 1, 1, 3600},
};

#define N_BP_KEYS (sizeof bp_keys / sizeof bp_keys[0])

struct taskerd_api *taskerd_api_new(void)
{
	struct taskerd_api *api = calloc(1, sizeof *api);
	if (api == NULL)
		return NULL;
	api->auth_cfg = auth_config_new("orchestration");
	if (api->auth_cfg == NULL) {
		free(api);
		return NULL;
	}
	api->env.role = "orchestration";
	svc_bp_limits_default(&api->bp);
	return api;
}

void taskerd_api_free(struct taskerd_api *api)
{
	if (api == NULL)
		return;
	auth_free(api->env.auth);
	svc_backpressure_free(api->env.backpressure);
	auth_config_free(api->auth_cfg);
	free(api);
}

static int complain(struct taskerd_api *api, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int complain(struct taskerd_api *api, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(api->why, sizeof api->why, fmt, ap);
	va_end(ap);
	return TRPC_ERR_INVALID;
}

static int backpressure_key(struct taskerd_api *api, const char *key, const char *value)
{
	char *end;
	long v;

	for (size_t i = 0; i < N_BP_KEYS; i++) {
		const struct bp_key *k = &bp_keys[i];
		char *field = (char *)&api->bp + k->offset;
		if (strcmp(k->key, key) != 0)
			continue;
		errno = 0;
		v = strtol(value, &end, 10);
		if (errno != 0 || end == value || *end != '\0' || v < k->min || v > k->max)
			return complain(api,
			                "backpressure.%s: \"%s\" is not an integer in %ld..%ld",
			                key, value, k->min, k->max);
		if (k->is_int)
			*(int *)(void *)field = (int)v;
		else
			*(long *)(void *)field = v;
		return 0;
	}
	return TRPC_ERR_CONFIG; /* the loader names the unknown key */
}

int taskerd_api_config_key(struct taskerd_api *api, const char *section, const char *key,
                           const char *value)
{
	struct tk_err err = {0};

	if (strcmp(section, "backpressure") == 0)
		return backpressure_key(api, key, value);
	/* An unknown key of [auth] is the loader's to report (or, in the
	 * environment, to ignore: TASKER_AUTH_TOKEN is tasker-cli's). */
	if (!auth_config_knows(section, key))
		return TRPC_ERR_CONFIG;
	if (auth_config_set(api->auth_cfg, section, key, value, &err) != 0)
		return complain(api, "%s", err.msg);
	return 0;
}

const char *taskerd_api_last_error(const struct taskerd_api *api)
{
	return api != NULL && api->why[0] != '\0' ? api->why : NULL;
}

int taskerd_api_check(const struct taskerd_api *api, struct tk_err *err)
{
	return svc_bp_limits_check(&api->bp, err);
}

int taskerd_api_key(size_t i, const char **section, const char **key)
{
	if (i < N_BP_KEYS) {
		*section = "backpressure";
		*key = bp_keys[i].key;
		return 0;
	}
	return auth_config_key(i - N_BP_KEYS, section, key);
}

int taskerd_api_register(struct taskerd_api *api, trpc_server *srv, trpc_health *health,
                         struct eng *eng, const char *database_url, const char *environment,
                         struct tk_err *err)
{
	struct svc_env *env = &api->env;
	const char *why = NULL;

	if (taskerd_api_check(api, err) != 0)
		return err->code;
	/* The configured values, for readers of the environment; the cache's
	 * copy is the one in force (a reload replaces it). */
	env->backpressure_warning_depth = api->bp.warning;
	env->backpressure_critical_depth = api->bp.critical;
	env->backpressure_overflow_depth = api->bp.overflow;
	env->backpressure_retry_after_s = api->bp.retry_after_s;
	/* auth_new logs whether authentication is on ("authentication
	 * disabled: ..." when it is off). */
	env->auth = auth_new(api->auth_cfg, err);
	if (env->auth == NULL)
		return err->code ? err->code : TRPC_ERR_CONFIG;
	env->backpressure = svc_backpressure_new(&api->bp);
	if (env->backpressure == NULL)
		return tk_err_set(err, TRPC_ERR_NOMEM, "out of memory");
	env->eng = eng;
	env->srv = srv;
	taskerd_admin_fill_pub(env, eng, environment);

	struct task_stream_hub *hub = task_stream_hub_new(srv, env, database_url, err);
	if (hub == NULL)
		return err->code;
	task_stream_method(hub, &api->stream);
	int rc = svc_grpc_register(srv, env, tables, N_TABLES, &api->stream, 1, &why);
	if (rc != 0)
		return tk_err_set(err, rc, "tasker.v1: %s", why);
	for (size_t i = 0; health != NULL && i < N_TABLES; i++)
		trpc_health_set(health, tables[i]->service, TRPC_HEALTH_SERVING);
	return 0;
}

static int bp_limits_differ(const struct svc_bp_limits *a, const struct svc_bp_limits *b)
{
	return a->warning != b->warning || a->critical != b->critical ||
	       a->overflow != b->overflow || a->retry_after_s != b->retry_after_s;
}

/* What a reload puts in force once the runtime took its part. */
struct api_commit {
	struct taskerd_api *api, *fresh;
	struct auth_update *auth; /* NULL once applied */
};

/* Cannot fail: everything was checked before the runtime applied. */
static void on_runtime_applied(void *ud)
{
	struct api_commit *c = ud;
	struct taskerd_api *api = c->api, *fresh = c->fresh;

	auth_update_apply(api->env.auth, c->auth);
	c->auth = NULL;
	svc_backpressure_set_limits(api->env.backpressure, &fresh->bp);
	if (bp_limits_differ(&api->bp, &fresh->bp))
		trpc_log(TRPC_LOG_INFO,
		         "reload: backpressure warning_depth %ld, critical_depth %ld, "
		         "overflow_depth %ld, retry_after_s %d",
		         fresh->bp.warning, fresh->bp.critical, fresh->bp.overflow,
		         fresh->bp.retry_after_s);
	/* The new settings are now the ones in force. */
	api->bp = fresh->bp;
	struct auth_config *old = api->auth_cfg;
	api->auth_cfg = fresh->auth_cfg;
	fresh->auth_cfg = old;
}

int taskerd_api_reload(struct taskerd_api *api, struct taskerd_api *fresh, trpc_server *srv,
                       const struct trpc_server_config *cfg, const char **why)
{
	static __thread char buf[600];
	struct tk_err err = {0};
	struct api_commit c = {api, fresh, NULL};

	if (api->env.auth == NULL || api->env.backpressure == NULL) {
		*why = "the API is not started";
		return TRPC_ERR_STATE;
	}
	/* Everything that can be refused is checked before anything changes:
	 * the thresholds, the new auth settings (built, not yet in force),
	 * then what the runtime takes, which it applies all or nothing before
	 * on_runtime_applied puts the rest in force. */
	if (svc_bp_limits_check(&fresh->bp, &err) != 0) {
		snprintf(buf, sizeof buf, "%s", err.msg);
		*why = buf;
		return err.code;
	}
	if ((c.auth = auth_update_new(api->env.auth, fresh->auth_cfg, &err)) == NULL) {
		snprintf(buf, sizeof buf, "auth: %s", err.msg);
		*why = buf;
		return err.code != 0 ? err.code : TRPC_ERR_CONFIG;
	}
	int rc = trpc_server_reload_with(srv, cfg, on_runtime_applied, &c, why);
	auth_update_free(c.auth); /* refused: never applied */
	return rc;
}

/* [auth], its [auth.api_key.<name>] sections and [backpressure]: taskerd_api_reload. */
const char *const taskerd_api_reloaded_keys[] = {"auth.*", "backpressure.*", NULL};

struct svc_env *taskerd_api_env(struct taskerd_api *api)
{
	return &api->env;
}

/*
 * taskerd_services: the tasker.v1 API of taskerd (see taskerd_services.h).
 */
#include "config.h"

#include <errno.h>
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

#define API_KEY_PREFIX "api_key."

struct taskerd_api {
	struct auth_config *auth_cfg;
	struct svc_env env;
	struct svc_grpc_extra stream;
};

/* The orchestration services of tasker-api.md §1.1 (StreamTaskStatus is
 * added to TaskService as an extra). */
static const struct svc_table *const tables[] = {
    &svc_tasks_table, &svc_steps_table,  &svc_templates_table, &svc_analytics_table,
    &svc_dlq_table,   &svc_health_table, &svc_config_table,
};

#define N_TABLES (sizeof tables / sizeof tables[0])

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
	api->env.backpressure_warning_depth = SVC_BP_DEFAULT_WARNING;
	api->env.backpressure_critical_depth = SVC_BP_DEFAULT_CRITICAL;
	api->env.backpressure_overflow_depth = SVC_BP_DEFAULT_OVERFLOW;
	api->env.backpressure_retry_after_s = SVC_BP_DEFAULT_RETRY_S;
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

static int parse_long(const char *v, long min, long max, long *out)
{
	char *end;
	errno = 0;
	long n = strtol(v, &end, 10);
	if (errno != 0 || end == v || *end != '\0' || n < min || n > max)
		return -1;
	*out = n;
	return 0;
}

static int backpressure_key(struct taskerd_api *api, const char *key, const char *value)
{
	static const struct {
		const char *key;
		size_t offset;
		long min, max;
	} keys[] = {
	    {"warning_depth", offsetof(struct svc_env, backpressure_warning_depth), 1, 1000000000},
	    {"critical_depth", offsetof(struct svc_env, backpressure_critical_depth), 1,
	     1000000000},
	    {"overflow_depth", offsetof(struct svc_env, backpressure_overflow_depth), 1,
	     1000000000},
	};
	long v;

	if (strcmp(key, "retry_after_s") == 0) {
		if (parse_long(value, 1, 3600, &v) != 0) {
			fprintf(stderr,
			        "taskerd: backpressure.%s: \"%s\" is not an integer in 1..3600\n",
			        key, value);
			return TRPC_ERR_INVALID;
		}
		api->env.backpressure_retry_after_s = (int)v;
		return 0;
	}
	for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
		if (strcmp(keys[i].key, key) != 0)
			continue;
		if (parse_long(value, keys[i].min, keys[i].max, &v) != 0) {
			fprintf(stderr,
			        "taskerd: backpressure.%s: \"%s\" is not an integer in %ld..%ld\n",
			        key, value, keys[i].min, keys[i].max);
			return TRPC_ERR_INVALID;
		}
		*(long *)(void *)((char *)&api->env + keys[i].offset) = v;
		return 0;
	}
	fprintf(stderr, "taskerd: backpressure.%s: unknown key\n", key);
	return TRPC_ERR_INVALID;
}

int taskerd_api_config_key(struct taskerd_api *api, const char *section, const char *key,
                           const char *value)
{
	struct tk_err err = {0};
	char sect[192];

	if (strcmp(section, "backpressure") == 0)
		return backpressure_key(api, key, value);
	if (strcmp(section, "auth") != 0 && strncmp(section, "auth.api_key.", 13) != 0)
		return TRPC_ERR_CONFIG;
	/* --auth.api_key.ops.key=...: section "auth", key "api_key.ops.key" */
	if (strcmp(section, "auth") == 0 &&
	    strncmp(key, API_KEY_PREFIX, strlen(API_KEY_PREFIX)) == 0) {
		const char *name = key + strlen(API_KEY_PREFIX), *dot = strrchr(name, '.');
		if (dot != NULL && dot != name) {
			snprintf(sect, sizeof sect, "auth.api_key.%.*s", (int)(dot - name), name);
			section = sect;
			key = dot + 1;
		}
	}
	if (auth_config_set(api->auth_cfg, section, key, value, &err) != 0) {
		fprintf(stderr, "taskerd: %s\n", err.msg);
		return TRPC_ERR_INVALID;
	}
	return 0;
}

/* The thresholds must rise: warning < critical <= overflow. */
static int check_backpressure(const struct svc_env *env, struct tk_err *err)
{
	if (env->backpressure_warning_depth >= env->backpressure_critical_depth ||
	    env->backpressure_critical_depth > env->backpressure_overflow_depth)
		return tk_err_set(err, TRPC_ERR_CONFIG,
		                  "backpressure: need warning_depth < critical_depth <= "
		                  "overflow_depth (have %ld, %ld, %ld)",
		                  env->backpressure_warning_depth, env->backpressure_critical_depth,
		                  env->backpressure_overflow_depth);
	return 0;
}

int taskerd_api_register(struct taskerd_api *api, trpc_server *srv, trpc_health *health,
                         struct eng *eng, const char *database_url, const char *environment,
                         struct tk_err *err)
{
	struct svc_env *env = &api->env;
	const char *why = NULL;

	if (check_backpressure(env, err) != 0)
		return err->code;
	/* auth_new logs whether authentication is on ("authentication
	 * disabled: ..." when it is off). */
	env->auth = auth_new(api->auth_cfg, err);
	if (env->auth == NULL)
		return err->code ? err->code : TRPC_ERR_CONFIG;
	env->backpressure = svc_backpressure_new();
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

int taskerd_api_reload(struct taskerd_api *api, struct taskerd_api *fresh, trpc_server *srv,
                       const struct trpc_server_config *cfg, const char **why)
{
	static __thread char buf[600];
	struct tk_err err = {0};

	if (api->env.auth == NULL) {
		*why = "the API is not started";
		return TRPC_ERR_STATE;
	}
	if (auth_reload(api->env.auth, fresh->auth_cfg, &err) != 0) {
		snprintf(buf, sizeof buf, "auth: %s", err.msg);
		*why = buf;
		return err.code != 0 ? err.code : TRPC_ERR_CONFIG;
	}
	int rc = trpc_server_reload(srv, cfg, why);
	if (rc != 0) {
		struct tk_err back = {0};
		if (auth_reload(api->env.auth, api->auth_cfg, &back) != 0)
			trpc_log(TRPC_LOG_ERROR, "reload: cannot restore the previous auth: %s",
			         back.msg);
		return rc;
	}
	/* The new auth settings are now the ones in force. */
	struct auth_config *old = api->auth_cfg;
	api->auth_cfg = fresh->auth_cfg;
	fresh->auth_cfg = old;
	return 0;
}

struct svc_env *taskerd_api_env(struct taskerd_api *api)
{
	return &api->env;
}

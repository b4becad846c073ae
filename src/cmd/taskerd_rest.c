/*
 * taskerd_rest: taskerd's REST server (taskerd_rest.h).
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "cmd/taskerd_rest.h"
#include "services/ops.h"
#include "web/rest.h"
#include "web/routes.h"

#define DEFAULT_WEB_BIND "0.0.0.0:8080"

/* The tables of tasker-api.md §1.1 that taskerd serves. */
static const struct svc_table *const tables[] = {
    &svc_tasks_table, &svc_steps_table,  &svc_templates_table, &svc_analytics_table,
    &svc_dlq_table,   &svc_health_table, &svc_config_table,
};

/* [web], filled by the loader before the server starts. */
static struct rest_config settings;
static int settings_ready;

static int settings_init(void)
{
	if (!settings_ready && rest_config_init(&settings, DEFAULT_WEB_BIND) != 0)
		return TRPC_ERR_NOMEM;
	settings_ready = 1;
	return 0;
}

int taskerd_rest_config_key(const char *section, const char *key, const char *value)
{
	const char *why = NULL;
	int rc;

	if (settings_init() != 0)
		return TRPC_ERR_NOMEM;
	rc = rest_config_set(&settings, section, key, value, &why);
	if (rc == TRPC_ERR_INVALID)
		fprintf(stderr, "taskerd: %s.%s: \"%s\": %s\n", section, key, value, why);
	return rc;
}

int taskerd_rest_key(size_t i, const char **section, const char **key)
{
	return rest_config_key(i, section, key);
}

int taskerd_rest_start(struct svc_env *env, const char *bind, struct rest_server **out,
                       struct tk_err *err)
{
	const char *why = NULL;

	*out = NULL;
	if (settings_init() != 0 || (bind != NULL && rest_config_set_bind(&settings, bind) != 0))
		return tk_err_set(err, TRPC_ERR_NOMEM, "out of memory");
	if (!settings.enabled)
		return 0;
	*out = rest_start(&settings, env, tables, sizeof(tables) / sizeof(tables[0]),
	                  rest_orchestration_routes, rest_orchestration_n_routes, &why);
	if (*out != NULL)
		return 0;
	if (bind != NULL)
		return tk_err_set(err, TRPC_ERR_SYSTEM, "%s", why);
	trpc_log(TRPC_LOG_ERROR,
	         "%s; running without the REST API (set orchestration.web_bind_address)", why);
	return 0;
}

void taskerd_rest_stop(struct rest_server *s)
{
	rest_stop(s);
	if (settings_ready)
		rest_config_clear(&settings);
	settings_ready = 0;
}

/*
 * taskerd_rest: taskerd's REST twin (src/web/rest.c with the routes of
 * tasker-api.md §2.1, src/web/routes_orch.c) over the same svc_env and
 * operation tables as its gRPC services.
 *
 * Keys: the [web] section of src/web/rest.h; the bind address is
 * orchestration.web_bind_address (TASKER_ORCHESTRATION_WEB_BIND_ADDRESS),
 * default 0.0.0.0:8080. A configured address that cannot be bound stops
 * taskerd; the default one, when taken, is logged as an error and taskerd
 * runs without REST (several taskerd on one host share the database, not
 * a port).
 */
#ifndef TK_CMD_TASKERD_REST_H
#define TK_CMD_TASKERD_REST_H

#include <stddef.h>

#include "store/err.h"

struct svc_env;
struct rest_server;

/* A [web] key: 0, TRPC_ERR_CONFIG (not one), or TRPC_ERR_INVALID after
 * printing why on stderr. */
int taskerd_rest_config_key(const char *section, const char *key, const char *value);

/* The i-th [web] key, for --list-options: 0 or TRPC_ERR_NOT_FOUND. */
int taskerd_rest_key(size_t i, const char **section, const char **key);

/*
 * Starts serving on `bind` (NULL: the default). Returns 0 with *out set
 * (NULL when REST is disabled or the default address was taken), or a
 * negative code with err set.
 */
int taskerd_rest_start(struct svc_env *env, const char *bind, struct rest_server **out,
                       struct tk_err *err);

/* Stops the server and drops the settings. NULL: only the settings. */
void taskerd_rest_stop(struct rest_server *s);

#endif

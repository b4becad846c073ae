/*
 * taskerd_services: the tasker.v1 API of taskerd on its gRPC server: the
 * settings it adds ([auth], [auth.api_key.<name>], [backpressure]), the
 * services' environment (struct svc_env), the registration of the
 * orchestration services, their StreamTaskStatus hub, and their
 * grpc.health.v1 statuses.
 *
 * Order in main: taskerd_api_new → (configuration loaded, keys routed
 * through taskerd_api_config_key) → eng_new → trpc_server_new →
 * taskerd_api_register → trpc_server_start → ... → trpc_server_free →
 * taskerd_api_free.
 */
#ifndef TK_TASKERD_SERVICES_H
#define TK_TASKERD_SERVICES_H

#include <stddef.h>

#include "store/err.h"
#include "tasker/rpc.h"

struct eng;
struct svc_env;
struct taskerd_api;

/* NULL when out of memory. */
struct taskerd_api *taskerd_api_new(void);

/*
 * One configuration key for the API (the extra-key callback of
 * trpc_server_config_load forwards what taskerd itself does not know).
 * Sections: "auth" (auth.h's keys; "--auth.api_key.<name>.<key>" on the
 * command line is the same as key <key> of [auth.api_key.<name>]),
 * "auth.api_key.<name>", and "backpressure" (warning_depth,
 * critical_depth, overflow_depth: queue depths, 1..1000000000, defaults
 * 1000, 5000, 10000; retry_after_s: 1..3600, default 5). Returns 0 when
 * the key was taken, TRPC_ERR_CONFIG when it is no key of these sections
 * (the loader reports it, or ignores it in the environment),
 * TRPC_ERR_INVALID for a bad value, with the reason kept for
 * taskerd_api_last_error().
 */
int taskerd_api_config_key(struct taskerd_api *api, const char *section, const char *key,
                           const char *value);

/* Why taskerd_api_config_key last refused a value ("backpressure.
 * warning_depth: ..."), or NULL; owned by api. */
const char *taskerd_api_last_error(const struct taskerd_api *api);

/* The rules between keys that need no resource: the [backpressure]
 * depths in order. 0, or TRPC_ERR_CONFIG with err set. (taskerd_api_register
 * checks them again, with the rest.) */
int taskerd_api_check(const struct taskerd_api *api, struct tk_err *err);

/* The i-th key taskerd_api_config_key takes (for --list-options): the
 * [backpressure] keys, then auth_config_key()'s ([auth] and the
 * "auth.api_key.<name>" pattern). 0, or TRPC_ERR_NOT_FOUND past the last. */
int taskerd_api_key(size_t i, const char **section, const char **key);

/*
 * Builds the credential checker, fills the services' environment and
 * registers the tasker.v1 services on srv (before trpc_server_start),
 * with StreamTaskStatus (its own LISTEN connection to database_url) and,
 * when `health` is not NULL, SERVING in grpc.health.v1 for each.
 * `environment` (the template environment, may be NULL) must outlive the
 * server. Returns 0 or a negative code with err set.
 */
int taskerd_api_register(struct taskerd_api *api, trpc_server *srv, trpc_health *health,
                         struct eng *eng, const char *database_url, const char *environment,
                         struct tk_err *err);

/*
 * SIGHUP: applies a configuration read again into `fresh` (a second api
 * that only collected keys) and `cfg`: the [backpressure] thresholds, the
 * [auth] settings and what trpc_server_reload takes (TLS files, log
 * level, rate limits). All or nothing: the thresholds (warning <
 * critical <= overflow) and the auth settings (auth_update_new) are
 * checked first, then the runtime applies cfg or refuses all of it; only
 * after it applied do the auth settings and the thresholds change, each
 * at once (readers see the old set or the new one). Returns 0, or a
 * negative code with *why (thread-local or static), and then nothing
 * changed.
 */
int taskerd_api_reload(struct taskerd_api *api, struct taskerd_api *fresh, trpc_server *srv,
                       const struct trpc_server_config *cfg, const char **why);

/* The keys taskerd_api_reload applies, as fnmatch patterns over
 * "section.key" for trpc_config_keys_warn_restart (NULL-terminated). */
extern const char *const taskerd_api_reloaded_keys[];

/* After trpc_server_free(). NULL is allowed. */
void taskerd_api_free(struct taskerd_api *api);

/* The services' environment, for the REST twin (filled by
 * taskerd_api_register; lives as long as api). */
struct svc_env *taskerd_api_env(struct taskerd_api *api);

#endif

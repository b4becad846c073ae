/*
 * worker_services: tasker-worker's API, started once its worker runs: the
 * gRPC server on worker.grpc_bind_address (grpc.health.v1, reflection and
 * the three tasker.v1.Worker* services, through the binding of
 * src/services/grpc.c) and the REST twin on worker.web_bind_address
 * (src/web/rest.c, routes of tasker-api.md §2.2).
 *
 * Keys taken here (through the loader's `extra` callback, after the
 * worker's own):
 *   worker.web_bind_address         TASKER_WORKER_WEB_BIND_ADDRESS, default 0.0.0.0:8081
 *   worker.grpc_enabled             default true
 *   worker.health_check_timeout_ms  default 2000: each database check's wait
 *   web.*                           src/web/rest.h (request_timeout_ms,
 *                                   config_endpoint_enabled, ...)
 *   auth.*, auth.api_key.<name>.*   src/auth/auth.h (role "worker")
 *
 * A listener on a bind address that was configured must open, or the
 * worker does not start. One on a built-in default address (0.0.0.0:9100,
 * 0.0.0.0:8081) that is taken is logged as an error and left out: the
 * worker's steps matter more than its API, and several workers on one
 * host would otherwise fight over the default ports.
 */
#ifndef TK_CMD_WORKER_SERVICES_H
#define TK_CMD_WORKER_SERVICES_H

#include <stddef.h>

#include "store/err.h"
#include "tasker/rpc.h"

struct db_pool;
struct tpl;
struct wk_registry;
struct wk_settings;
struct wk_worker;

/*
 * One configuration key (a trpc_config_extra_fn without ud: the settings
 * belong to this program's one API). Returns 0, TRPC_ERR_CONFIG for a key
 * it does not know, or TRPC_ERR_INVALID with *why set.
 */
int worker_services_set(const char *section, const char *key, const char *value, const char **why);

/* The i-th key it takes, for --list-options: its [worker] keys, [web]
 * (rest_config_key) and [auth] with the "auth.api_key.<name>" pattern
 * (auth_config_key). 0, or TRPC_ERR_NOT_FOUND past the last. */
int worker_services_key(size_t i, const char **section, const char **key);

struct worker_services_args {
	struct trpc_server_config *rcfg; /* server.listen is set to worker.grpc_bind_address */
	const struct wk_settings *cfg;
	struct wk_worker *worker; /* started */
	const struct wk_registry *registry;
	struct db_pool *pool;
	struct tpl *const *templates;
	size_t n_templates;
	const char *const *namespaces;
	size_t n_namespaces;
};

struct worker_services;

/* Starts the gRPC and REST servers. NULL with err set when a configured
 * listener cannot open or the auth settings are unusable. Everything in
 * `a` must outlive the result. */
struct worker_services *worker_services_start(const struct worker_services_args *a,
                                              struct tk_err *err);

/*
 * SIGHUP. The keys of a configuration read again go into a scratch set
 * (worker_services_keys_set, same contract as worker_services_set);
 * worker_services_reload then applies what trpc_server_reload takes from
 * rcfg (TLS files, log level, rate limits; only the logging settings
 * when there is no gRPC server) and its [auth] settings: all or nothing,
 * the auth settings are checked first and change only after the runtime
 * took rcfg. [worker] and [web] keys are checked only: they need a
 * restart. Returns 0 or a negative code with *why (thread-local), and
 * then nothing changed.
 */
struct worker_services_keys;
struct worker_services_keys *worker_services_keys_new(void); /* NULL: out of memory */
void worker_services_keys_free(struct worker_services_keys *k);
int worker_services_keys_set(struct worker_services_keys *k, const char *section, const char *key,
                             const char *value, const char **why);
int worker_services_reload(struct worker_services *s, struct worker_services_keys *k,
                           const struct trpc_server_config *rcfg, const char **why);

/* The keys worker_services_reload applies besides the runtime's, as
 * fnmatch patterns over "section.key" for trpc_config_keys_warn_restart
 * (NULL-terminated). */
extern const char *const worker_services_reloaded_keys[];

/* Stops both servers (gracefully) and frees what the start made, the
 * settings included. Before the worker is freed. NULL: only the settings. */
void worker_services_stop(struct worker_services *s);

#endif

/*
 * svc_env: what the operations of a program (taskerd or tasker-worker)
 * work on. Filled by the program's main before the services are
 * registered; read-only afterwards except where a field says otherwise.
 * Fields may be added (append only: several modules fill it).
 */
#ifndef TK_SVC_ENV_H
#define TK_SVC_ENV_H

#include "auth/auth.h"
#include "tasker/rpc.h"

struct eng;
struct wk_worker;
struct wk_registry;
struct svc_backpressure;
struct wsvc;

/* Settings the safe-config answers show (tasker-api.md §7): never a URL,
 * a key, a path to a key or a key's permissions. */
struct svc_public_config {
	const char *environment;     /* "production", "development", ... */
	const char *version;         /* PACKAGE_VERSION */
	const char *deployment_mode; /* orchestration event system: "hybrid" (LISTEN + polling) */
	int web_pool_size, web_max_connections; /* database pool figures shown */
	/* circuit breaker defaults shown by GetConfig */
	int cb_failure_threshold, cb_timeout_seconds, cb_success_threshold;
	/* worker only */
	const char *worker_id, *worker_type;
};

struct svc_env {
	const char *role;   /* "orchestration" or "worker" */
	struct eng *eng;    /* taskerd: the engine; NULL in the worker */
	struct worker *wrk; /* tasker-worker: the worker; NULL in taskerd */
	struct auth *auth;  /* never NULL (auth disabled is a mode of it) */
	trpc_server *srv;   /* the gRPC server */
	struct svc_public_config pub;
	/* Backpressure on CreateTask (tasker-api.md §6): queue-depth tiers as
	 * configured at start. Once `backpressure` is set, the thresholds in
	 * force are the cache's (SIGHUP replaces them there, not here): read
	 * them with svc_backpressure_status(). */
	long backpressure_warning_depth;  /* default 1000 */
	long backpressure_critical_depth; /* default 5000: CreateTask refused */
	long backpressure_overflow_depth; /* default 10000 */
	int backpressure_retry_after_s;   /* gRPC retry-after; default 5 */
	/* The cached queue depth behind those tiers (services/backpressure.h);
	 * NULL: no backpressure check. */
	struct svc_backpressure *backpressure;
	/* tasker-worker: what the Worker* services read (services/worker/wsvc.h);
	 * NULL in taskerd. */
	struct wsvc *wsvc;
};

#endif

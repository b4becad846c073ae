/*
 * wsvc: what the tasker.v1.Worker* services (config.c, health.c,
 * templates.c in this folder) read about the running tasker-worker. The
 * program fills one struct wsvc after its worker has started
 * (src/cmd/worker_services.c) and points svc_env.wsvc at it; the services
 * only read it, except for the counters, which are atomics.
 */
#ifndef TK_SVC_WORKER_WSVC_H
#define TK_SVC_WORKER_WSVC_H

#include <jansson.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "google/protobuf/timestamp.pb-c.h"
#include "services/svc.h"

struct db_pool;
struct tpl;
struct wk_registry;
struct wk_worker;

struct wsvc {
	struct wk_worker *worker;
	const struct wk_registry *registry;
	struct db_pool *pool;
	const char *conninfo;         /* for the event-system check's own LISTEN connection */
	struct tpl *const *templates; /* every template loaded at start-up */
	size_t n_templates;
	const char *const *namespaces; /* the namespaces served */
	size_t n_namespaces;
	const char *environment; /* template environment, "" when none */
	int db_pool_size;
	int check_timeout_ms; /* per database health check; default 2000 */
	int64_t started_ns;   /* CLOCK_MONOTONIC at start-up */
	/* The template "cache" is the set loaded at start: GetTemplate counts
	 * its hits (per template and in total) and misses. */
	atomic_ullong *access_counts; /* n_templates entries */
	atomic_ullong hits, misses;
	atomic_ullong
	    last_pool_errors; /* pool acquire errors seen by the previous detailed check */
};

/* Allocates the counters for n_templates templates. 0 or TRPC_ERR_NOMEM. */
int wsvc_init_counters(struct wsvc *w);
void wsvc_clear(struct wsvc *w);

/* 1 when the template's namespace is one the worker serves. */
int wsvc_serves(const struct wsvc *w, const char *namespace_name);

/* The loaded template namespace/name@version of a served namespace, with
 * its index in w->templates; NULL when there is none. */
const struct tpl *wsvc_find_template(const struct wsvc *w, const char *namespace_name,
                                     const char *name, const char *version, size_t *index);

/*
 * Checks a loaded template for POST /v1/templates/{ns}/{name}/{version}/validate
 * (REST only, no RPC): reads its file again (still valid? the same
 * template? changed since start-up?), checks the step graph and whether a
 * handler exists here for each step. *out is a new JSON object
 *   {namespace, name, version, valid, errors: [..], warnings: [..],
 *    steps: [{name, callable, handler_available, dependencies}]}
 * Returns 0, or -1 with res set (NOT_FOUND when the template is not
 * loaded, RESOURCE_EXHAUSTED when out of memory).
 */
int wsvc_validate_template(const struct wsvc *w, const char *namespace_name, const char *name,
                           const char *version, json_t **out, struct svc_result *res);

/* ------------------------------------------------------------------ building responses */

/* Allocation from a call's allocator (svc_ctx.alloc). A failure returns
 * NULL and sets oom, so that a builder checks the pointers it
 * dereferences at once and oom once at the end. */
struct wsvc_pb {
	ProtobufCAllocator *a;
	int oom;
};
void *wsvc_pb_alloc(struct wsvc_pb *b, size_t size);    /* zeroed */
char *wsvc_pb_strdup(struct wsvc_pb *b, const char *s); /* "" for NULL */
/* A Timestamp of CLOCK_REALTIME now. */
Google__Protobuf__Timestamp *wsvc_pb_now(struct wsvc_pb *b);

/* Appends the worker's Prometheus families (tasker_worker_*) to out; a
 * trpc_metrics_collect_fn, ud = struct wsvc. */
void wsvc_collect_metrics(trpc_metrics_buf *out, void *ud);
/* The dispatcher's and reporter's event counters (GET /metrics/events):
 * tasker_worker_events_* counters from worker/status.h. */
void wsvc_collect_event_metrics(trpc_metrics_buf *out, void *ud);

#endif

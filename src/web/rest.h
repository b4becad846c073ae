/*
 * rest: the REST twin of the gRPC services (tasker-api.md §2.1, §2.2), an
 * HTTP/1.1 server on libmicrohttpd.
 *
 * A route is a method and a path pattern ("/v1/tasks/{task_uuid}") bound
 * to an operation of the svc tables (svc_find_op) or, for the few
 * REST-only resources, to a handler. For an operation route the server
 *   1. matches the route (404 NOT_FOUND, or 405 for a known path with
 *      another method),
 *   2. checks the credentials against the operation's permission before
 *      reading the body (401 / 403 with x-auth-failure-reason and
 *      x-auth-failure-severity),
 *   3. builds the request message: path parameters and, with REST_QUERY,
 *      query parameters set the request fields of the same name
 *      (pbjson_set_text; parameters that name no field are ignored), with
 *      REST_BODY the JSON body is merged in (pbjson_merge: unknown fields
 *      are errors), then the route's builder, if any, adds what the REST
 *      form spells differently,
 *   4. runs the operation on the server's worker threads under the request
 *      timeout (408 TIMEOUT when it passes),
 *   5. answers the response message in the proto3 JSON mapping (proto
 *      field names, fields without presence written even when zero), after
 *      the route's adapter, if any, added the REST-only extras.
 * Errors are {"error": {"code", "message"}} with the statuses of §2.1;
 * every response carries X-Request-Id (a valid incoming one is echoed)
 * and wide-open CORS headers; OPTIONS is a CORS preflight.
 *
 * Threads: libmicrohttpd runs a thread per connection (keep-alive, up to
 * max_connections); operations run on `threads` worker threads, so that
 * a request that times out frees its connection while the operation ends
 * in the background. Every thread blocks the process signals.
 */
#ifndef TK_WEB_REST_H
#define TK_WEB_REST_H

#include <stddef.h>

#include <jansson.h>
#include <protobuf-c/protobuf-c.h>

#include "services/ops.h"
#include "services/svc_env.h"

/* ------------------------------------------------------------------ settings */

/* The [web] section (both programs) plus the bind address, which is the
 * program's own key (orchestration.web_bind_address, worker.web_bind_address). */
struct rest_config {
	char *bind;                  /* "host:port", "[v6]:port"; port 0 picks a free one */
	int enabled;                 /* web.enabled, default 1 */
	int request_timeout_ms;      /* web.request_timeout_ms, default 30000 */
	int config_endpoint_enabled; /* web.config_endpoint_enabled, default 0: /config is 404 */
	int max_body_bytes;          /* web.max_body_bytes, default 1 MiB (413 beyond) */
	int max_connections;         /* web.max_connections, default 256 */
	int connection_timeout_s;    /* web.connection_timeout_s: idle keep-alive, default 60 */
	int threads;                 /* web.threads: operation threads, default 8 */
};

/* Fills the defaults; bind is copied. Returns 0 or TRPC_ERR_NOMEM. */
int rest_config_init(struct rest_config *c, const char *default_bind);
void rest_config_clear(struct rest_config *c);

/*
 * Sets one key of section "web" (or "bind" through rest_config_set_bind).
 * Returns 0, TRPC_ERR_CONFIG for a key it does not know (so that it can
 * chain in a loader's `extra` callback), or TRPC_ERR_INVALID with *why set
 * (static text) for a bad value.
 */
int rest_config_set(struct rest_config *c, const char *section, const char *key, const char *value,
                    const char **why);
int rest_config_set_bind(struct rest_config *c, const char *value);

/* The i-th key of section "web" (for --list-options): 0, or
 * TRPC_ERR_NOT_FOUND past the last. */
int rest_config_key(size_t i, const char **section, const char **key);

/* ------------------------------------------------------------------ routes */

struct rest_request; /* one HTTP request being served */

/* A path parameter ("task_uuid"), the first value of a query parameter,
 * or NULL. */
const char *rest_param(const struct rest_request *rq, const char *name);
const char *rest_query(const struct rest_request *rq, const char *name);
/* The parsed JSON body, or NULL when there was none. */
const json_t *rest_body(const struct rest_request *rq);
/* The request's allocator: memory that lives as long as the request. */
ProtobufCAllocator *rest_alloc(struct rest_request *rq);
struct svc_env *rest_env(const struct rest_request *rq);

/*
 * Runs another operation for an adapter or builder, as the same caller:
 * its permission is checked with the request's credentials, and it runs
 * under the request's deadline. *resp comes from the request's
 * allocator. Returns 0, or -1 with res set (PERMISSION_DENIED /
 * UNAUTHENTICATED, DEADLINE_EXCEEDED, UNIMPLEMENTED for an operation no
 * table has, or the operation's own failure).
 */
int rest_call(struct rest_request *rq, const char *service, const char *rpc,
              const ProtobufCMessage *req, ProtobufCMessage **resp, struct svc_result *res);

/*
 * As rest_call, but the caller needs `permission` (NULL: the operation's
 * own) rather than the operation's: for an adapter that shows through a
 * narrower operation only what `permission` already grants (the steps of a
 * task, which GetTask shows under tasks:read, read through ListSteps).
 */
int rest_call_as(struct rest_request *rq, const char *permission, const char *service,
                 const char *rpc, const ProtobufCMessage *req, ProtobufCMessage **resp,
                 struct svc_result *res);

/* Fills what the generic steps could not; returns 0, or -1 with res set
 * (INVALID_ARGUMENT becomes 400 BAD_REQUEST). */
typedef int (*rest_build_fn)(struct rest_request *rq, ProtobufCMessage *req,
                             struct svc_result *res);
/* Reshapes the response JSON (*body, a new reference it may replace) for
 * the REST form; returns 0, or -1 with res set. */
typedef int (*rest_adapt_fn)(struct rest_request *rq, const ProtobufCMessage *resp, json_t **body,
                             struct svc_result *res);

/* A REST-only resource: fills *out (JSON, or text with a content type). */
struct rest_reply {
	int status;   /* HTTP status; 0 = 200 */
	json_t *json; /* a new reference, or NULL with text */
	char *text;   /* malloc'd, with text_len and content_type */
	size_t text_len;
	const char *content_type; /* static */
};
typedef int (*rest_handler_fn)(struct rest_request *rq, struct rest_reply *out,
                               struct svc_result *res);

/* GET /metrics: the Prometheus text of env->srv (its families and its
 * collectors), or only the process families when there is no server. */
int rest_metrics_handler(struct rest_request *rq, struct rest_reply *out, struct svc_result *res);

/* GET /api-docs/openapi.json: the OpenAPI document of the routes this
 * server serves (openapi.h); GET /api-docs/ui: the page that shows it. */
int rest_openapi_handler(struct rest_request *rq, struct rest_reply *out, struct svc_result *res);
int rest_api_docs_ui_handler(struct rest_request *rq, struct rest_reply *out,
                             struct svc_result *res);

/* Route flags. */
#define REST_QUERY           0x01u /* query parameters set request fields */
#define REST_BODY            0x02u /* a JSON body is merged into the request */
#define REST_CONFIG_ENDPOINT 0x04u /* served only with web.config_endpoint_enabled */
#define REST_BODY_ON_FAILURE 0x08u /* an UNAVAILABLE operation's filled response is the 503 body */
#define REST_BODY_BUILT      0x10u /* the builder reads a JSON body in the request message's form */

struct rest_route {
	const char *method;  /* "GET", "POST", "PATCH", "DELETE" */
	const char *pattern; /* "/v1/tasks/{task_uuid}/workflow_steps/{step_uuid}" */
	/* an operation route ... */
	const char *service, *rpc;
	rest_build_fn build; /* optional */
	rest_adapt_fn adapt; /* optional */
	/* ... or a handler route, with its own permission (NULL = public) */
	rest_handler_fn handler;
	const char *permission;
	unsigned flags;
	int status; /* success status; 0 = 200 */
	/* for the OpenAPI document (openapi.h) */
	const char *const *query_params; /* NULL-terminated: query parameters the builder reads */
	const char *produces;            /* a handler's content type; NULL = application/json */
};

/* ------------------------------------------------------------------ server */

struct rest_server;

/*
 * Starts serving `routes` on cfg->bind and logs "REST listening on
 * HOST:PORT". Operation routes are resolved in `tables` now: a route whose
 * operation no table has is left out (logged at WARN). env, tables and
 * routes must outlive the server. Returns NULL with *why set (static or
 * thread-local text) when the address is bad or cannot be bound.
 */
struct rest_server *rest_start(const struct rest_config *cfg, struct svc_env *env,
                               const struct svc_table *const *tables, size_t n_tables,
                               const struct rest_route *routes, size_t n_routes, const char **why);

/* The bound port. */
int rest_port(const struct rest_server *s);

/* Stops accepting, waits for the requests in progress (each at most its
 * timeout) and frees the server. NULL is a no-op. */
void rest_stop(struct rest_server *s);

#endif

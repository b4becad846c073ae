/*
 * The worker's REST routes (tasker-api.md §2.2) over the Worker* services
 * of src/services/worker/. Public: /health, /health/live, /health/ready
 * (503 with the checks when not ready), /health/detailed, /metrics (the
 * gRPC server's families and the worker's), /metrics/worker (the worker's
 * alone), /metrics/events (the dispatcher's and reporter's event counters:
 * notifications, queue reads, LISTEN connections, claims, reports),
 * /api-docs/openapi.json and /api-docs/ui. Protected: the templates
 * (worker:templates_read), their
 * validation (templates:validate) and, when web.config_endpoint_enabled,
 * /config (worker:config_read).
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "services/worker/wsvc.h"
#include "web/routes.h"

#define HEALTH    "tasker.v1.WorkerHealthService"
#define TEMPLATES "tasker.v1.WorkerTemplateService"
#define CONFIG    "tasker.v1.WorkerConfigService"

/* Answers with the Prometheus text of one collector of src/services/worker/. */
static int metrics_reply(struct rest_reply *out, struct svc_result *res,
                         void (*collect)(trpc_metrics_buf *, void *), void *ud)
{
	trpc_metrics_buf *b = trpc_metrics_buf_new();
	const char *text = NULL;

	if (b != NULL) {
		collect(b, ud);
		text = trpc_metrics_buf_data(b, &out->text_len);
	}
	out->text = text != NULL ? strdup(text) : NULL;
	trpc_metrics_buf_free(b);
	if (out->text == NULL)
		return svc_fail(res, TRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
	out->content_type = TRPC_METRICS_CONTENT_TYPE;
	return 0;
}

/* GET /metrics/worker: the tasker_worker_* families only. */
static int on_worker_metrics(struct rest_request *rq, struct rest_reply *out,
                             struct svc_result *res)
{
	return metrics_reply(out, res, wsvc_collect_metrics, rest_env(rq)->wsvc);
}

/* GET /metrics/events: the worker's event counters. */
static int on_event_metrics(struct rest_request *rq, struct rest_reply *out, struct svc_result *res)
{
	return metrics_reply(out, res, wsvc_collect_event_metrics, rest_env(rq)->wsvc);
}

/* POST /v1/templates/{namespace}/{name}/{version}/validate (no RPC twin). */
static int on_validate(struct rest_request *rq, struct rest_reply *out, struct svc_result *res)
{
	return wsvc_validate_template(rest_env(rq)->wsvc, rest_param(rq, "namespace"),
	                              rest_param(rq, "name"), rest_param(rq, "version"), &out->json,
	                              res);
}

const struct rest_route rest_worker_routes[] = {
    {.method = "GET", .pattern = "/health", .service = HEALTH, .rpc = "CheckHealth"},
    {.method = "GET", .pattern = "/health/live", .service = HEALTH, .rpc = "CheckLiveness"},
    {.method = "GET",
     .pattern = "/health/ready",
     .service = HEALTH,
     .rpc = "CheckReadiness",
     .flags = REST_BODY_ON_FAILURE},
    {.method = "GET",
     .pattern = "/health/detailed",
     .service = HEALTH,
     .rpc = "CheckDetailedHealth"},
    {.method = "GET",
     .pattern = "/metrics",
     .handler = rest_metrics_handler,
     .produces = TRPC_METRICS_CONTENT_TYPE},
    {.method = "GET",
     .pattern = "/metrics/worker",
     .handler = on_worker_metrics,
     .produces = TRPC_METRICS_CONTENT_TYPE},
    {.method = "GET",
     .pattern = "/metrics/events",
     .handler = on_event_metrics,
     .produces = TRPC_METRICS_CONTENT_TYPE},
    REST_API_DOCS_ROUTES,
    {.method = "GET",
     .pattern = "/v1/templates",
     .service = TEMPLATES,
     .rpc = "ListTemplates",
     .flags = REST_QUERY},
    {.method = "GET",
     .pattern = "/v1/templates/{namespace}/{name}/{version}",
     .service = TEMPLATES,
     .rpc = "GetTemplate"},
    {.method = "POST",
     .pattern = "/v1/templates/{namespace}/{name}/{version}/validate",
     .handler = on_validate,
     .permission = "templates:validate"},
    {.method = "GET",
     .pattern = "/config",
     .service = CONFIG,
     .rpc = "GetConfig",
     .flags = REST_CONFIG_ENDPOINT},
};

const size_t rest_worker_n_routes = sizeof(rest_worker_routes) / sizeof(rest_worker_routes[0]);

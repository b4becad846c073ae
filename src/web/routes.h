/*
 * routes: the REST route tables of the two programs (rest.h).
 *
 *   rest_worker_routes         tasker-worker, tasker-api.md §2.2
 *   rest_orchestration_routes  taskerd, tasker-api.md §2.1
 */
#ifndef TK_WEB_ROUTES_H
#define TK_WEB_ROUTES_H

#include <stddef.h>

#include "web/rest.h"

/* The public documentation routes of both tables (openapi.h). */
#define REST_API_DOCS_ROUTES                                                                       \
	{.method = "GET", .pattern = "/api-docs/openapi.json", .handler = rest_openapi_handler},   \
	{                                                                                          \
		.method = "GET", .pattern = "/api-docs/ui", .handler = rest_api_docs_ui_handler,   \
		.produces = "text/html"                                                            \
	}

extern const struct rest_route rest_worker_routes[];
extern const size_t rest_worker_n_routes;

extern const struct rest_route rest_orchestration_routes[];
extern const size_t rest_orchestration_n_routes;

#endif

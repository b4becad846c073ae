/*
 * openapi: the OpenAPI 3.0 description of a REST server, generated from
 * its route table (routes.h) and the protobuf-c descriptors of the
 * operations' request and response messages, so that the document cannot
 * drift from what the server answers.
 *
 *   - every route is an operation (path template as in the table, its
 *     method); operation routes are named after their RPC
 *     ("TaskService.GetTask"), handler routes after method and path;
 *   - path parameters are required strings (format uuid for the `*uuid`
 *     ones, which the server checks); REST_QUERY routes take the scalar
 *     fields of the request message as query parameters, other routes the
 *     names in rest_route.query_params;
 *   - REST_BODY / REST_BODY_BUILT routes take the request message as JSON
 *     body; the success response is the response message, or for a
 *     handler route its content type (rest_route.produces); routes whose
 *     adapter reshapes the JSON are marked `x-rest-adapted: true`;
 *   - messages are components/schemas under their full proto name, enums
 *     string enums of their value names; int64 forms are strings (format
 *     int64), Timestamp a date-time string, Struct a free-form object,
 *     Value any JSON value, ListValue an array (the pbjson.h mapping);
 *   - a route's permission is `x-required-permission`; protected routes
 *     list the bearer JWT and API-key security schemes (the header named
 *     by the auth configuration), public ones an empty security list.
 */
#ifndef TK_WEB_OPENAPI_H
#define TK_WEB_OPENAPI_H

#include <stddef.h>

#include <jansson.h>

#include "services/svc.h"
#include "web/rest.h"

struct auth;

/* One served route: the table row and its operation (NULL for a handler
 * route). */
struct openapi_route {
	const struct rest_route *route;
	const struct svc_op *op;
};

struct openapi_info {
	const char *title;       /* info.title: "taskerd REST API" */
	const char *version;     /* info.version: PACKAGE_VERSION */
	const char *description; /* may be NULL */
	struct auth *auth;       /* the API-key header name; may be NULL */
};

/*
 * Builds the document ("openapi": "3.0.3") for routes[0..n). Returns a new
 * reference, or NULL when out of memory. The document copies what it
 * needs: routes and info may go away afterwards.
 */
json_t *openapi_document(const struct openapi_info *info, const struct openapi_route *routes,
                         size_t n);

/* The /api-docs/ui page: self-contained HTML (no external resource) that
 * fetches `spec_url` and lists its operations. Static text. */
const char *openapi_ui_html(void);

#endif

/*
 * openapi: the OpenAPI 3.0 document of a REST server (openapi.h).
 *
 * The schemas follow the JSON the server writes and reads (pbjson.h):
 * proto field names, int64 as strings, enums by name, the well-known
 * types as plain JSON. Every jansson call may fail for lack of memory;
 * the builders return -1 then and the document is dropped whole.
 */
#include "config.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "auth/auth.h"
#include "web/openapi.h"
#include "web/pbjson.h"

#define REF_SCHEMAS "#/components/schemas/"

/* json_object_set_new that reports failure with -1 (the value is taken
 * either way). */
static int put(json_t *obj, const char *key, json_t *v)
{
	return v == NULL || json_object_set_new(obj, key, v) != 0 ? -1 : 0;
}

static json_t *ref_to(const char *name)
{
	char ref[256];

	snprintf(ref, sizeof(ref), REF_SCHEMAS "%s", name);
	return json_pack("{s:s}", "$ref", ref);
}

/* ================================================================== schemas */

static int add_message(json_t *schemas, const ProtobufCMessageDescriptor *d);

/* The schema of a message value: a well-known type as the plain JSON
 * pbjson writes, another message as a $ref (the message added to
 * schemas). NULL when out of memory. */
static json_t *message_schema(json_t *schemas, const ProtobufCMessageDescriptor *d)
{
	if (strcmp(d->name, "google.protobuf.Timestamp") == 0)
		return json_pack("{s:s, s:s}", "type", "string", "format", "date-time");
	if (strcmp(d->name, "google.protobuf.Struct") == 0)
		return json_pack("{s:s, s:b}", "type", "object", "additionalProperties", 1);
	if (strcmp(d->name, "google.protobuf.Value") == 0)
		return json_pack("{s:s, s:b}", "description", "any JSON value", "nullable", 1);
	if (strcmp(d->name, "google.protobuf.ListValue") == 0)
		return json_pack("{s:s, s:{}}", "type", "array", "items");
	return add_message(schemas, d) == 0 ? ref_to(d->name) : NULL;
}

static int add_enum(json_t *schemas, const ProtobufCEnumDescriptor *d)
{
	json_t *names, *s;

	if (json_object_get(schemas, d->name) != NULL)
		return 0;
	if ((names = json_array()) == NULL)
		return -1;
	for (unsigned i = 0; i < d->n_values; i++)
		if (json_array_append_new(names, json_string(d->values[i].name)) != 0) {
			json_decref(names);
			return -1;
		}
	s = json_pack("{s:s, s:o}", "type", "string", "enum", names);
	return put(schemas, d->name, s);
}

/* The schema of one value of field f (not the repetition); the messages
 * and enums it names are added to schemas. */
static json_t *value_schema(json_t *schemas, const ProtobufCFieldDescriptor *f)
{
	switch (f->type) {
	case PROTOBUF_C_TYPE_INT32:
	case PROTOBUF_C_TYPE_SINT32:
	case PROTOBUF_C_TYPE_SFIXED32:
		return json_pack("{s:s, s:s}", "type", "integer", "format", "int32");
	case PROTOBUF_C_TYPE_UINT32:
	case PROTOBUF_C_TYPE_FIXED32:
		return json_pack("{s:s, s:s, s:i}", "type", "integer", "format", "int64", "minimum",
		                 0);
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64:
		return json_pack("{s:s, s:s}", "type", "string", "format", "int64");
	case PROTOBUF_C_TYPE_FLOAT:
		return json_pack("{s:s, s:s}", "type", "number", "format", "float");
	case PROTOBUF_C_TYPE_DOUBLE:
		return json_pack("{s:s, s:s}", "type", "number", "format", "double");
	case PROTOBUF_C_TYPE_BOOL:
		return json_pack("{s:s}", "type", "boolean");
	case PROTOBUF_C_TYPE_STRING:
		return json_pack("{s:s}", "type", "string");
	case PROTOBUF_C_TYPE_BYTES:
		return json_pack("{s:s, s:s}", "type", "string", "format", "byte");
	case PROTOBUF_C_TYPE_ENUM: {
		const ProtobufCEnumDescriptor *e = f->descriptor;
		return add_enum(schemas, e) == 0 ? ref_to(e->name) : NULL;
	}
	case PROTOBUF_C_TYPE_MESSAGE: {
		return message_schema(schemas, f->descriptor);
	}
	}
	return NULL;
}

static json_t *field_schema(json_t *schemas, const ProtobufCFieldDescriptor *f)
{
	const ProtobufCMessageDescriptor *e = f->descriptor;
	json_t *v;

	if (pbjson_is_map(f)) {
		/* keys are JSON object keys; the value is the entry's field 2 */
		if ((v = value_schema(schemas, &e->fields[1])) == NULL)
			return NULL;
		return json_pack("{s:s, s:o}", "type", "object", "additionalProperties", v);
	}
	if ((v = value_schema(schemas, f)) == NULL)
		return NULL;
	if (f->label == PROTOBUF_C_LABEL_REPEATED)
		return json_pack("{s:s, s:o}", "type", "array", "items", v);
	return v;
}

/* Adds d (and what it names) to schemas under its full name. A message
 * already there, or being added (recursive types), is left alone. */
static int add_message(json_t *schemas, const ProtobufCMessageDescriptor *d)
{
	json_t *s, *props;

	if (json_object_get(schemas, d->name) != NULL)
		return 0;
	if ((s = json_pack("{s:s, s:{}}", "type", "object", "properties")) == NULL ||
	    put(schemas, d->name, s) != 0)
		return -1;
	props = json_object_get(s, "properties");
	for (unsigned i = 0; i < d->n_fields; i++) {
		const ProtobufCFieldDescriptor *f = &d->fields[i];
		if (put(props, f->name, field_schema(schemas, f)) != 0)
			return -1;
	}
	return 0;
}

/* ================================================================== operations */

/* "TaskService.GetTask", or "get_v1_templates_namespace_..._validate". */
static void operation_id(const struct openapi_route *rt, char *buf, size_t size)
{
	const struct rest_route *r = rt->route;
	size_t n = 0;

	if (rt->op != NULL) {
		const char *svc = strrchr(rt->op->service, '.');
		snprintf(buf, size, "%s.%s", svc != NULL ? svc + 1 : rt->op->service,
		         rt->op->method);
		return;
	}
	for (const char *p = r->method; *p != '\0' && n + 1 < size; p++)
		buf[n++] = (char)tolower((unsigned char)*p);
	for (const char *p = r->pattern; *p != '\0' && n + 1 < size; p++) {
		if (isalnum((unsigned char)*p))
			buf[n++] = (char)tolower((unsigned char)*p);
		else if (n > 0 && buf[n - 1] != '_')
			buf[n++] = '_';
	}
	while (n > 0 && buf[n - 1] == '_')
		n--;
	buf[n] = '\0';
}

static int add_parameter(json_t *params, const char *name, const char *in, int required,
                         json_t *schema)
{
	json_t *p;

	if (schema == NULL)
		return -1;
	p = json_pack("{s:s, s:s, s:b, s:o}", "name", name, "in", in, "required", required,
	              "schema", schema);
	return p == NULL || json_array_append_new(params, p) != 0 ? -1 : 0;
}

/* 1 when the pattern has the path parameter `name`. */
static int in_path(const char *pattern, const char *name)
{
	size_t n = strlen(name);

	for (const char *p = strchr(pattern, '{'); p != NULL; p = strchr(p + 1, '{'))
		if (strncmp(p + 1, name, n) == 0 && p[1 + n] == '}')
			return 1;
	return 0;
}

static int path_parameters(json_t *params, const char *pattern)
{
	for (const char *p = strchr(pattern, '{'); p != NULL; p = strchr(p + 1, '{')) {
		char name[64];
		size_t n = strcspn(p + 1, "}");
		json_t *s;
		if (n == 0 || n >= sizeof(name))
			continue;
		memcpy(name, p + 1, n);
		name[n] = '\0';
		s = n >= 4 && strcmp(name + n - 4, "uuid") == 0
		        ? json_pack("{s:s, s:s}", "type", "string", "format", "uuid")
		        : json_pack("{s:s}", "type", "string");
		if (add_parameter(params, name, "path", 1, s) != 0)
			return -1;
	}
	return 0;
}

/* REST_QUERY: the request fields a query parameter can set (scalars,
 * enums and repeated scalars; not messages), except path parameters. */
static int query_parameters(json_t *schemas, json_t *params, const struct openapi_route *rt)
{
	const struct rest_route *r = rt->route;

	if ((r->flags & REST_QUERY) && rt->op != NULL) {
		const ProtobufCMessageDescriptor *d = rt->op->request;
		for (unsigned i = 0; i < d->n_fields; i++) {
			const ProtobufCFieldDescriptor *f = &d->fields[i];
			if (f->type == PROTOBUF_C_TYPE_MESSAGE || in_path(r->pattern, f->name))
				continue;
			if (add_parameter(params, f->name, "query", 0, field_schema(schemas, f)) !=
			    0)
				return -1;
		}
	}
	/* a name the builder reads: typed like the request field of that name,
	 * else a string */
	for (size_t i = 0; r->query_params != NULL && r->query_params[i] != NULL; i++) {
		const ProtobufCFieldDescriptor *f =
		    rt->op != NULL ? pbjson_find_field(rt->op->request, r->query_params[i]) : NULL;
		json_t *s = f != NULL && f->type != PROTOBUF_C_TYPE_MESSAGE
		                ? field_schema(schemas, f)
		                : json_pack("{s:s}", "type", "string");
		if (add_parameter(params, r->query_params[i], "query", 0, s) != 0)
			return -1;
	}
	return 0;
}

static json_t *content(const char *type, json_t *schema)
{
	if (schema == NULL)
		return NULL;
	return json_pack("{s:{s:o}}", type, "schema", schema);
}

/* REST_BODY(_BUILT): the request message as JSON; required when the
 * builder reads it. */
static json_t *request_body(json_t *schemas, const struct openapi_route *rt)
{
	json_t *c = content("application/json", message_schema(schemas, rt->op->request));

	if (c == NULL)
		return NULL;
	return json_pack("{s:b, s:o}", "required", (rt->route->flags & REST_BODY_BUILT) != 0,
	                 "content", c);
}

/* The success response of a route. */
static json_t *success(json_t *schemas, const struct openapi_route *rt)
{
	const struct rest_route *r = rt->route;
	const char *type = r->produces != NULL ? r->produces : "application/json";
	json_t *schema, *c;

	if (rt->op != NULL)
		schema = message_schema(schemas, rt->op->response);
	else if (strncmp(type, "application/json", 16) == 0)
		schema = json_pack("{s:s, s:b}", "type", "object", "additionalProperties", 1);
	else
		schema = json_pack("{s:s}", "type", "string");
	if ((c = content(type, schema)) == NULL)
		return NULL;
	return json_pack("{s:s, s:o}", "description",
	                 r->adapt != NULL ? "the response message, reshaped for REST" : "success",
	                 "content", c);
}

static json_t *operation(json_t *schemas, const struct openapi_route *rt)
{
	const struct rest_route *r = rt->route;
	const char *perm = rt->op != NULL ? rt->op->permission : r->permission;
	json_t *op, *params, *responses;
	char id[128], status[16];

	operation_id(rt, id, sizeof(id));
	op = json_pack("{s:s, s:[], s:{}}", "operationId", id, "parameters", "responses");
	if (op == NULL)
		return NULL;
	params = json_object_get(op, "parameters");
	responses = json_object_get(op, "responses");
	if (rt->op != NULL &&
	    put(op, "summary", json_sprintf("%s.%s", rt->op->service, rt->op->method)) != 0)
		goto fail;
	if (path_parameters(params, r->pattern) != 0 || query_parameters(schemas, params, rt) != 0)
		goto fail;
	if ((r->flags & (REST_BODY | REST_BODY_BUILT)) && rt->op != NULL &&
	    put(op, "requestBody", request_body(schemas, rt)) != 0)
		goto fail;
	snprintf(status, sizeof(status), "%d", r->status > 0 ? r->status : 200);
	if (put(responses, status, success(schemas, rt)) != 0 ||
	    put(responses, "default", json_pack("{s:s}", "$ref", "#/components/responses/Error")) !=
	        0)
		goto fail;
	if (r->adapt != NULL && put(op, "x-rest-adapted", json_true()) != 0)
		goto fail;
	if (perm == NULL)
		return put(op, "security", json_array()) == 0 ? op : (json_decref(op), NULL);
	if (put(op, "x-required-permission", json_string(perm)) != 0 ||
	    put(op, "security", json_pack("[{s:[]}, {s:[]}]", "bearerAuth", "apiKeyAuth")) != 0 ||
	    put(responses, "401", json_pack("{s:s}", "$ref", "#/components/responses/Error")) !=
	        0 ||
	    put(responses, "403", json_pack("{s:s}", "$ref", "#/components/responses/Error")) != 0)
		goto fail;
	return op;

fail:
	json_decref(op);
	return NULL;
}

/* ================================================================== document */

static json_t *components(const struct openapi_info *info)
{
	struct auth_public_info ai;
	const char *header = "X-API-Key";

	if (info->auth != NULL) {
		auth_public_info(info->auth, &ai);
		if (ai.api_key_header != NULL && ai.api_key_header[0] != '\0')
			header = ai.api_key_header;
	}
	return json_pack(
	    "{s:{s:{s:s, s:{s:{s:{s:s}}}}},"
	    " s:{s:{s:s, s:[s], s:{s:{s:s, s:[s, s], s:{s:{s:s}, s:{s:s}}}}}},"
	    " s:{s:{s:s, s:s, s:s}, s:{s:s, s:s, s:s}}}",
	    "responses", "Error", "description", "an error (tasker-api.md section 2.1)", "content",
	    "application/json", "schema", "$ref", REF_SCHEMAS "Error", "schemas", "Error", "type",
	    "object", "required", "error", "properties", "error", "type", "object", "required",
	    "code", "message", "properties", "code", "type", "string", "message", "type", "string",
	    "securitySchemes", "bearerAuth", "type", "http", "scheme", "bearer", "bearerFormat",
	    "JWT", "apiKeyAuth", "type", "apiKey", "in", "header", "name", header);
}

json_t *openapi_document(const struct openapi_info *info, const struct openapi_route *routes,
                         size_t n)
{
	json_t *doc, *paths, *schemas;

	doc = json_pack("{s:s, s:{s:s, s:s}, s:{}, s:o*}", "openapi", "3.0.3", "info", "title",
	                info->title, "version", info->version, "paths", "components",
	                components(info));
	if (doc == NULL || json_object_get(doc, "components") == NULL)
		goto fail;
	if (info->description != NULL &&
	    put(json_object_get(doc, "info"), "description", json_string(info->description)) != 0)
		goto fail;
	paths = json_object_get(doc, "paths");
	schemas = json_object_get(json_object_get(doc, "components"), "schemas");
	for (size_t i = 0; i < n; i++) {
		const struct rest_route *r = routes[i].route;
		json_t *item = json_object_get(paths, r->pattern);
		char method[16];
		size_t k;
		for (k = 0; r->method[k] != '\0' && k + 1 < sizeof(method); k++)
			method[k] = (char)tolower((unsigned char)r->method[k]);
		method[k] = '\0';
		if (item == NULL && put(paths, r->pattern, item = json_object()) != 0)
			goto fail;
		if (put(item, method, operation(schemas, &routes[i])) != 0)
			goto fail;
	}
	return doc;

fail:
	json_decref(doc);
	return NULL;
}

/* ================================================================== the UI page */

/* Plain DOM, no external resource: the server may run where no CDN is
 * reachable, and Debian ships no Swagger UI bundle to serve instead. */
static const char ui_html[] =
    "<!DOCTYPE html>\n"
    "<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
    "<title>API documentation</title>\n"
    "<style>\n"
    "body{font-family:sans-serif;margin:2em;max-width:70em}\n"
    "h2{border-bottom:1px solid #ccc}\n"
    ".op{margin:.4em 0;padding:.3em .6em;border:1px solid #ddd;border-radius:4px}\n"
    ".m{display:inline-block;min-width:5em;font-weight:bold;text-transform:uppercase}\n"
    ".perm{color:#a40;font-size:90%}\n"
    ".pub{color:#080;font-size:90%}\n"
    "pre{background:#f6f6f6;padding:.5em;overflow:auto}\n"
    "</style></head><body>\n"
    "<h1 id=\"title\">API documentation</h1>\n"
    "<p>The OpenAPI document: <a href=\"openapi.json\">openapi.json</a></p>\n"
    "<div id=\"ops\">Loading&hellip;</div>\n"
    "<script>\n"
    "function el(tag, cls, text) {\n"
    "  var e = document.createElement(tag);\n"
    "  if (cls) e.className = cls;\n"
    "  if (text !== undefined) e.textContent = text;\n"
    "  return e;\n"
    "}\n"
    "fetch('openapi.json').then(function (r) { return r.json(); }).then(function (doc) {\n"
    "  var root = document.getElementById('ops');\n"
    "  root.textContent = '';\n"
    "  document.getElementById('title').textContent =\n"
    "      doc.info.title + ' ' + doc.info.version;\n"
    "  Object.keys(doc.paths).sort().forEach(function (path) {\n"
    "    var item = doc.paths[path];\n"
    "    Object.keys(item).forEach(function (method) {\n"
    "      var op = item[method], d = el('details', 'op'), s = el('summary');\n"
    "      s.appendChild(el('span', 'm', method));\n"
    "      s.appendChild(el('code', '', path + ' '));\n"
    "      s.appendChild(op['x-required-permission']\n"
    "          ? el('span', 'perm', op['x-required-permission'])\n"
    "          : el('span', 'pub', 'public'));\n"
    "      d.appendChild(s);\n"
    "      d.appendChild(el('pre', '', JSON.stringify(op, null, 2)));\n"
    "      root.appendChild(d);\n"
    "    });\n"
    "  });\n"
    "  var h = el('h2', '', 'Schemas');\n"
    "  root.appendChild(h);\n"
    "  root.appendChild(el('pre', '', JSON.stringify(doc.components, null, 2)));\n"
    "}).catch(function (e) {\n"
    "  document.getElementById('ops').textContent = 'cannot load openapi.json: ' + e;\n"
    "});\n"
    "</script>\n"
    "</body></html>\n";

const char *openapi_ui_html(void)
{
	return ui_html;
}

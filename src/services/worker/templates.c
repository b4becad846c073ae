/*
 * WorkerTemplateService (tasker.v1): the task templates this worker loaded
 * at start-up (its "cache": templates are read once and kept), for the
 * namespaces it serves; and the REST-only validation of one of them.
 */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/template.h"
#include "services/ops.h"
#include "services/svc_env.h"
#include "services/worker/wsvc.h"
#include "tasker/v1/worker.pb-c.h"
#include "worker/handler.h"

static int nomem(struct svc_result *res)
{
	return svc_fail(res, TRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
}

static uint64_t uptime_s(const struct wsvc *w)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (uint64_t)(((int64_t)now.tv_sec * 1000000000 + now.tv_nsec - w->started_ns) /
	                  1000000000);
}

/* The handler kind of a callable: "exec", "plugin" or the built-in's name. */
static void callable_kind(const char *callable, char *buf, size_t size)
{
	size_t n = strcspn(callable, ":");

	snprintf(buf, size, "%.*s", (int)n, callable);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* "handler:<kind>" for each handler kind the served templates use here, sorted. */
static char **capabilities(struct wsvc_pb *b, const struct wsvc *w, size_t *n)
{
	size_t cap = 0;
	char **v;

	*n = 0;
	for (size_t i = 0; i < w->n_templates; i++)
		cap += w->templates[i]->n_steps;
	if ((v = wsvc_pb_alloc(b, (cap + 1) * sizeof(*v))) == NULL)
		return NULL;
	for (size_t i = 0; i < w->n_templates; i++) {
		const struct tpl *t = w->templates[i];
		if (!wsvc_serves(w, t->namespace_name))
			continue;
		for (size_t s = 0; s < t->n_steps; s++) {
			const struct wk_step_entry *e = wk_registry_find(
			    w->registry, t->namespace_name, t->name, t->version, t->steps[s].name);
			char kind[64], name[80];
			size_t k;
			if (e == NULL || e->handler == NULL)
				continue;
			callable_kind(wk_handler_callable(e->handler), kind, sizeof(kind));
			snprintf(name, sizeof(name), "handler:%s", kind);
			for (k = 0; k < *n && strcmp(v[k], name) != 0; k++)
				;
			if (k == *n && (v[*n] = wsvc_pb_strdup(b, name)) != NULL)
				(*n)++;
		}
	}
	qsort(v, *n, sizeof(*v), cmp_str);
	return v;
}

static int on_list_templates(struct svc_env *env, const ProtobufCMessage *req_msg,
                             ProtobufCMessage *resp_msg, const struct svc_ctx *ctx,
                             struct svc_result *res)
{
	const Tasker__V1__WorkerListTemplatesRequest *req =
	    (const Tasker__V1__WorkerListTemplatesRequest *)req_msg;
	Tasker__V1__WorkerTemplateListResponse *resp =
	    (Tasker__V1__WorkerTemplateListResponse *)resp_msg;
	const struct wsvc *w = env->wsvc;
	const char *only =
	    req->_namespace_case == TASKER__V1__WORKER_LIST_TEMPLATES_REQUEST___NAMESPACE_NAMESPACE
	        ? req->namespace_
	        : NULL;
	struct wsvc_pb b = {.a = ctx->alloc};
	uint64_t accesses = 0;

	resp->supported_namespaces = wsvc_pb_alloc(&b, (w->n_namespaces + 1) * sizeof(char *));
	if (resp->supported_namespaces == NULL)
		return nomem(res);
	for (size_t i = 0; i < w->n_namespaces; i++)
		if (only == NULL || strcmp(only, w->namespaces[i]) == 0)
			resp->supported_namespaces[resp->n_supported_namespaces++] =
			    wsvc_pb_strdup(&b, w->namespaces[i]);
	for (size_t i = 0; i < w->n_templates; i++) {
		const struct tpl *t = w->templates[i];
		if (!wsvc_serves(w, t->namespace_name) ||
		    (only != NULL && strcmp(only, t->namespace_name) != 0))
			continue;
		resp->template_count++;
		accesses += atomic_load(&w->access_counts[i]);
	}
	resp->worker_capabilities = capabilities(&b, w, &resp->n_worker_capabilities);
	if (req->include_cache_stats) {
		Tasker__V1__CacheStats *cs = wsvc_pb_alloc(&b, sizeof(*cs));
		if (cs == NULL)
			return nomem(res);
		tasker__v1__cache_stats__init(cs);
		cs->total_cached = (uint64_t)resp->template_count;
		cs->cache_hits = atomic_load(&w->hits);
		cs->cache_misses = atomic_load(&w->misses);
		cs->cache_evictions = 0; /* templates stay loaded for the worker's life */
		cs->oldest_entry_age_seconds = uptime_s(w);
		cs->average_access_count =
		    resp->template_count > 0 ? (double)accesses / (double)resp->template_count : 0;
		cs->supported_namespaces = resp->supported_namespaces;
		cs->n_supported_namespaces = resp->n_supported_namespaces;
		resp->cache_stats = cs;
	}
	return b.oom || resp->worker_capabilities == NULL ? nomem(res) : 0;
}

static int on_get_template(struct svc_env *env, const ProtobufCMessage *req_msg,
                           ProtobufCMessage *resp_msg, const struct svc_ctx *ctx,
                           struct svc_result *res)
{
	const Tasker__V1__WorkerGetTemplateRequest *req =
	    (const Tasker__V1__WorkerGetTemplateRequest *)req_msg;
	Tasker__V1__WorkerTemplateResponse *resp = (Tasker__V1__WorkerTemplateResponse *)resp_msg;
	struct wsvc *w = env->wsvc;
	struct wsvc_pb b = {.a = ctx->alloc};
	Tasker__V1__WorkerResolvedTemplate *rt;
	Tasker__V1__WorkerHandlerMetadata *hm;
	const struct tpl *t;
	size_t idx;

	if ((t = wsvc_find_template(w, req->namespace_, req->name, req->version, &idx)) == NULL) {
		atomic_fetch_add(&w->misses, 1);
		return svc_fail(res, TRPC_STATUS_NOT_FOUND,
		                "template %s/%s@%s is not loaded by this worker", req->namespace_,
		                req->name, req->version);
	}
	atomic_fetch_add(&w->hits, 1);
	resp->_access_count_case = TASKER__V1__WORKER_TEMPLATE_RESPONSE___ACCESS_COUNT_ACCESS_COUNT;
	resp->access_count = atomic_fetch_add(&w->access_counts[idx], 1) + 1;
	resp->cached = 1;
	resp->_cache_age_seconds_case =
	    TASKER__V1__WORKER_TEMPLATE_RESPONSE___CACHE_AGE_SECONDS_CACHE_AGE_SECONDS;
	resp->cache_age_seconds = uptime_s(w);

	rt = wsvc_pb_alloc(&b, sizeof(*rt));
	hm = wsvc_pb_alloc(&b, sizeof(*hm));
	if (rt == NULL || hm == NULL)
		return nomem(res);
	tasker__v1__worker_resolved_template__init(rt);
	tasker__v1__worker_handler_metadata__init(hm);
	rt->name = wsvc_pb_strdup(&b, t->name);
	rt->namespace_ = wsvc_pb_strdup(&b, t->namespace_name);
	rt->version = wsvc_pb_strdup(&b, t->version);
	hm->namespace_ = rt->namespace_;
	hm->handler_name = rt->name;
	hm->version = rt->version;
	if (t->description != NULL) {
		rt->_description_case =
		    TASKER__V1__WORKER_RESOLVED_TEMPLATE___DESCRIPTION_DESCRIPTION;
		rt->description = wsvc_pb_strdup(&b, t->description);
		hm->_description_case =
		    TASKER__V1__WORKER_HANDLER_METADATA___DESCRIPTION_DESCRIPTION;
		hm->description = rt->description;
	}
	rt->steps = wsvc_pb_alloc(&b, (t->n_steps + 1) * sizeof(*rt->steps));
	hm->step_names = wsvc_pb_alloc(&b, (t->n_steps + 1) * sizeof(char *));
	if (rt->steps == NULL || hm->step_names == NULL)
		return nomem(res);
	for (size_t i = 0; i < t->n_steps; i++) {
		const struct tpl_step *s = &t->steps[i];
		Tasker__V1__WorkerStepDefinition *sd = wsvc_pb_alloc(&b, sizeof(*sd));
		if (sd == NULL)
			return nomem(res);
		tasker__v1__worker_step_definition__init(sd);
		sd->name = wsvc_pb_strdup(&b, s->name);
		if (s->description != NULL) {
			sd->_description_case =
			    TASKER__V1__WORKER_STEP_DEFINITION___DESCRIPTION_DESCRIPTION;
			sd->description = wsvc_pb_strdup(&b, s->description);
		}
		sd->retryable = s->retryable != 0;
		sd->max_attempts = s->max_attempts;
		rt->steps[rt->n_steps++] = sd;
		hm->step_names[hm->n_step_names++] = sd->name;
	}
	resp->template_ = rt;
	resp->handler_metadata = hm;
	return b.oom ? nomem(res) : 0;
}

/* ------------------------------------------------------------------ validation (REST) */

static int add_text(json_t *arr, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int add_text(json_t *arr, const char *fmt, ...)
{
	char buf[700];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	return json_array_append_new(arr, json_string(buf));
}

/* Reads the template's file again and compares it with what was loaded. */
static void check_file(const struct wsvc *w, const struct tpl *t, json_t *errors, json_t *warnings)
{
	const char *env =
	    w->environment != NULL && w->environment[0] != '\0' ? w->environment : NULL;
	struct tpl *fresh = NULL;
	struct tk_err err;

	tk_err_clear(&err);
	if (tpl_parse_file(t->source, env, &fresh, &err) != 0) {
		add_text(errors, "the template file no longer loads: %s", err.msg);
		return;
	}
	if (strcmp(fresh->namespace_name, t->namespace_name) != 0 ||
	    strcmp(fresh->name, t->name) != 0 || strcmp(fresh->version, t->version) != 0)
		add_text(errors,
		         "the template file now defines %s/%s@%s; this worker runs %s/%s@%s as "
		         "loaded at start-up",
		         fresh->namespace_name, fresh->name, fresh->version, t->namespace_name,
		         t->name, t->version);
	else if (!json_equal(fresh->config, t->config))
		add_text(warnings, "the template file changed since start-up; this worker runs the "
		                   "version it loaded (restart it to load the new one)");
	tpl_free(fresh);
}

static json_t *step_json(const struct wsvc *w, const struct tpl *t, const struct tpl_step *s,
                         int *runnable)
{
	const struct wk_step_entry *e =
	    wk_registry_find(w->registry, t->namespace_name, t->name, t->version, s->name);
	int here = e != NULL && e->handler != NULL;
	json_t *deps = json_array(), *o;

	for (size_t i = 0; deps != NULL && i < s->n_dependencies; i++)
		json_array_append_new(deps, json_string(s->dependencies[i]));
	o = json_pack("{s:s, s:s, s:b, s:o*}", "name", s->name, "callable", s->handler_callable,
	              "handler_available", here, "dependencies", deps);
	*runnable += here;
	return o;
}

int wsvc_validate_template(const struct wsvc *w, const char *namespace_name, const char *name,
                           const char *version, json_t **out, struct svc_result *res)
{
	const struct tpl *t = wsvc_find_template(w, namespace_name, name, version, NULL);
	json_t *errors, *warnings, *steps, *o;
	size_t *order;
	int runnable = 0;

	if (t == NULL)
		return svc_fail(res, TRPC_STATUS_NOT_FOUND,
		                "template %s/%s@%s is not loaded by this worker", namespace_name,
		                name, version);
	errors = json_array();
	warnings = json_array();
	steps = json_array();
	order = calloc(t->n_steps + 1, sizeof(*order));
	if (errors == NULL || warnings == NULL || steps == NULL || order == NULL)
		goto nomem;
	check_file(w, t, errors, warnings);
	if (tpl_topo_order(t, order) != 0)
		add_text(errors, "the steps' dependencies do not form a graph without cycles");
	for (size_t i = 0; i < t->n_steps; i++) {
		const struct tpl_step *s = &t->steps[i];
		int before = runnable;
		if (json_array_append_new(steps, step_json(w, t, s, &runnable)) != 0)
			goto nomem;
		if (runnable == before)
			add_text(
			    warnings,
			    "step \"%s\": no handler here for callable \"%s\" (such steps are left "
			    "for other workers)",
			    s->name, s->handler_callable);
	}
	if (runnable == 0)
		add_text(errors, "no step of this template can run on this worker");
	o = json_pack("{s:s, s:s, s:s, s:b, s:o, s:o, s:o}", "namespace", t->namespace_name, "name",
	              t->name, "version", t->version, "valid", json_array_size(errors) == 0,
	              "errors", errors, "warnings", warnings, "steps", steps);
	free(order);
	if (o == NULL)
		return nomem(res);
	*out = o;
	return 0;
nomem:
	json_decref(errors);
	json_decref(warnings);
	json_decref(steps);
	free(order);
	return nomem(res);
}

/* ------------------------------------------------------------------ table */

static const struct svc_op template_ops[] = {
    {.service = "tasker.v1.WorkerTemplateService",
     .method = "ListTemplates",
     .permission = "worker:templates_read",
     .request = &tasker__v1__worker_list_templates_request__descriptor,
     .response = &tasker__v1__worker_template_list_response__descriptor,
     .fn = on_list_templates},
    {.service = "tasker.v1.WorkerTemplateService",
     .method = "GetTemplate",
     .permission = "worker:templates_read",
     .request = &tasker__v1__worker_get_template_request__descriptor,
     .response = &tasker__v1__worker_template_response__descriptor,
     .fn = on_get_template},
};

const struct svc_table svc_worker_template_table = {
    .service = "tasker.v1.WorkerTemplateService",
    .ops = template_ops,
    .n_ops = sizeof(template_ops) / sizeof(template_ops[0]),
};

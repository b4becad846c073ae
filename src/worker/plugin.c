/*
 * plugin: handlers in shared objects (include/tasker/handler.h).
 *
 * Each file is dlopen()ed once with RTLD_NOW (a missing symbol shows at
 * start-up, not in the middle of a step) and RTLD_LOCAL (two plugins may
 * define the same names). The handles stay open until the registry is
 * freed, after every handler thread has stopped.
 */
#include "config.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "worker/kinds.h"

#define ABI_SYMBOL "tasker_handler_abi_version"

struct plugin_file {
	char *path;
	void *dl;
};

struct wk_plugins {
	struct plugin_file *files;
	size_t n;
};

struct wk_plugins *wk_plugins_new(void)
{
	return calloc(1, sizeof(struct wk_plugins));
}

void wk_plugins_free(struct wk_plugins *p)
{
	if (p == NULL)
		return;
	for (size_t i = 0; i < p->n; i++) {
		dlclose(p->files[i].dl);
		free(p->files[i].path);
	}
	free(p->files);
	free(p);
}

/* Opens path and checks its ABI version. Returns the handle or NULL with err set. */
static void *open_checked(const char *path, struct tk_err *err)
{
	const int *abi;
	void *dl;

	dlerror();
	if ((dl = dlopen(path, RTLD_NOW | RTLD_LOCAL)) == NULL) {
		const char *why = dlerror();
		tk_err_set(err, TRPC_ERR_CONFIG, "cannot load plugin: %s",
		           why != NULL ? why : path);
		return NULL;
	}
	abi = dlsym(dl, ABI_SYMBOL);
	if (abi == NULL) {
		tk_err_set(err, TRPC_ERR_CONFIG,
		           "%s: no " ABI_SYMBOL " symbol (define it with TASKER_HANDLER_PLUGIN())",
		           path);
		dlclose(dl);
		return NULL;
	}
	if (*abi != TASKER_HANDLER_ABI_VERSION) {
		tk_err_set(err, TRPC_ERR_CONFIG,
		           "%s: built for handler ABI version %d, this worker has version %d", path,
		           *abi, TASKER_HANDLER_ABI_VERSION);
		dlclose(dl);
		return NULL;
	}
	return dl;
}

static void *get_file(struct wk_plugins *p, const char *path, struct tk_err *err)
{
	struct plugin_file *grown;
	void *dl;
	char *copy;

	for (size_t i = 0; i < p->n; i++)
		if (strcmp(p->files[i].path, path) == 0)
			return p->files[i].dl;
	if ((dl = open_checked(path, err)) == NULL)
		return NULL;
	grown = realloc(p->files, (p->n + 1) * sizeof(*grown));
	copy = strdup(path);
	if (grown != NULL)
		p->files = grown;
	if (grown == NULL || copy == NULL) {
		free(copy);
		dlclose(dl);
		tk_err_set(err, TRPC_ERR_NOMEM, "out of memory");
		return NULL;
	}
	p->files[p->n++] = (struct plugin_file){.path = copy, .dl = dl};
	return dl;
}

int wk_plugins_symbol(struct wk_plugins *p, const char *path, const char *symbol,
                      tasker_handler_fn *fn, struct tk_err *err)
{
	void *dl = get_file(p, path, err), *sym;

	if (dl == NULL)
		return err != NULL && err->code != 0 ? err->code : TRPC_ERR_CONFIG;
	dlerror();
	sym = dlsym(dl, symbol);
	if (sym == NULL)
		return tk_err_set(err, TRPC_ERR_CONFIG, "%s: no symbol \"%s\"", path, symbol);
	/* POSIX guarantees that a dlsym() result converts to a function pointer. */
	*(void **)fn = sym;
	return 0;
}

/* ------------------------------------------------------------------ calls */

static void release(struct tasker_handler_result *res)
{
	void (*rel)(void *) = res->free_fn != NULL ? res->free_fn : free;

	if (res->result_json != NULL)
		rel(res->result_json);
	if (res->error_message != NULL)
		rel(res->error_message);
	if (res->error_type != NULL)
		rel(res->error_type);
}

static void take_success(const struct tasker_handler_result *res, struct wk_outcome *out)
{
	json_error_t jerr;
	json_t *v = NULL;

	if (res->result_json != NULL &&
	    (v = json_loads(res->result_json, JSON_DECODE_ANY, &jerr)) == NULL) {
		wk_outcome_fail(out, WK_ERROR, "InvalidResult", 0,
		                "plugin result is not valid JSON: %s (line %d column %d)",
		                jerr.text, jerr.line, jerr.column);
		return;
	}
	wk_outcome_success(out, v);
}

void wk_plugin_run(tasker_handler_fn fn, const struct wk_call *call, struct wk_outcome *out)
{
	struct tasker_handler_call c = {
	    .abi_version = TASKER_HANDLER_ABI_VERSION,
	    .input_json = call->input_text,
	    .input_len = call->input_len,
	    .step_name = call->step_name,
	    .attempt = call->attempt,
	    .timeout_ms = call->timeout_ms,
	    .deadline_ns = call->deadline_ns,
	};
	struct tasker_handler_result res = {.retryable = 1};
	int rc = fn(&c, &res);

	if (rc != 0)
		wk_outcome_fail(out, WK_ERROR, "HandlerError", 1,
		                "plugin handler returned %d without a result", rc);
	else if (res.success)
		take_success(&res, out);
	else {
		wk_outcome_fail(out, WK_FAILED,
		                res.error_type != NULL ? res.error_type : "HandlerError",
		                res.retryable, "%s",
		                res.error_message != NULL ? res.error_message : "handler failed");
		out->backoff_seconds = res.backoff_seconds > 0 ? res.backoff_seconds : 0;
	}
	release(&res);
}

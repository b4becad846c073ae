/*
 * handler: the step handlers a worker can run, and the registry that maps
 * each step of the loaded templates to one.
 *
 * A step's handler.callable names the handler:
 *
 *   noop                      result {}
 *   echo                      result {step_inputs, dependency_results}
 *   sleep                     step_inputs {seconds | ms}; result {slept_ms}
 *   fail                      step_inputs {fail_times, retryable, message,
 *                             backoff_seconds}: fails the first fail_times
 *                             attempts (every attempt when absent), then
 *                             succeeds with {attempt}
 *   exec:<path>               runs a program: input JSON on stdin, result
 *                             JSON on stdout (exec.c has the rules)
 *   plugin:<file.so>:<symbol> calls a function in a shared object
 *                             (include/tasker/handler.h)
 *
 * Relative exec and plugin paths are taken from exec_dir / plugin_dir when
 * set, else from the directory of the template file. Callables of any
 * other form (for example "Module::Class" for workers in other languages)
 * get no handler here: their steps are left for other workers.
 *
 * The registry is read-only once built, so handler threads share it
 * without locks.
 */
#ifndef TK_WORKER_HANDLER_H
#define TK_WORKER_HANDLER_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "engine/template.h"
#include "store/err.h"
#include "worker/outcome.h"

/* One handler invocation. Everything is borrowed for the call's duration. */
struct wk_call {
	json_t *input;          /* the handler input object */
	const char *input_text; /* the same as compact JSON text */
	size_t input_len;
	const char *step_name;
	int attempt;
	int timeout_ms;      /* the step's time budget (> 0) */
	int64_t deadline_ns; /* CLOCK_MONOTONIC time at which the budget ends */
	/* exec handlers store their child's process group here while it runs
	 * (0 otherwise), so that a forced shutdown can kill it. May be NULL. */
	atomic_int *child_pgid;
};

struct wk_handler;
struct wk_registry;

struct wk_registry_config {
	const char *exec_dir;   /* NULL: relative exec paths start at the template's directory */
	const char *plugin_dir; /* NULL: likewise for plugin files */
	const char *const *namespaces; /* register only these; NULL: every namespace */
	size_t n_namespaces;
};

/* A step of a loaded template. */
struct wk_step_entry {
	const char *namespace_name, *task_name, *version, *step_name;
	const struct wk_handler *handler; /* NULL: none here, the step is for other workers */
	int timeout_s;                    /* the template's timeout_seconds; 0: unset */
};

/*
 * Builds the registry for the n templates (which are only read; the
 * registry copies what it keeps). Loads every plugin and checks every exec
 * program named by a registered step.
 * Returns 0 with *out set (free with wk_registry_free), or:
 *   TRPC_ERR_CONFIG  an exec program that is not an executable file, a
 *                    plugin that cannot be loaded, lacks the symbol or was
 *                    built for another ABI version, a malformed callable
 *   TRPC_ERR_NOMEM
 * with err naming the template file, the step and the callable.
 */
int wk_registry_new(struct tpl *const *tpls, size_t n, const struct wk_registry_config *cfg,
                    struct wk_registry **out, struct tk_err *err);

/* Frees the registry and unloads its plugins. No handler may be running. NULL is a no-op. */
void wk_registry_free(struct wk_registry *r);

/* The step of template namespace/task@version called step, or NULL. */
const struct wk_step_entry *wk_registry_find(const struct wk_registry *r,
                                             const char *namespace_name, const char *task_name,
                                             const char *version, const char *step_name);

/* Registered steps, and steps without a handler here (for start-up logs). */
size_t wk_registry_count(const struct wk_registry *r);
size_t wk_registry_unhandled(const struct wk_registry *r);

/* The callable as written in the template. */
const char *wk_handler_callable(const struct wk_handler *h);

/*
 * Runs the handler and fills *out (which must be initialised): a status is
 * always set, out of memory included. Blocks for as long as the handler
 * runs; exec handlers are killed at call->deadline_ns, built-ins stop
 * there, plugins are trusted to.
 */
void wk_handler_run(const struct wk_handler *h, const struct wk_call *call, struct wk_outcome *out);

/* CLOCK_MONOTONIC now, in nanoseconds. */
int64_t wk_now_ns(void);

#endif

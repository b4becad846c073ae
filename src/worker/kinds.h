/*
 * kinds: the handler implementations behind handler.c's dispatch table.
 * Internal to src/worker.
 */
#ifndef TK_WORKER_KINDS_H
#define TK_WORKER_KINDS_H

#include "tasker/handler.h"
#include "worker/handler.h"

/* ------------------------------------------------------------------ built-ins (builtin.c) */

void wk_builtin_noop(const struct wk_call *call, struct wk_outcome *out);
void wk_builtin_echo(const struct wk_call *call, struct wk_outcome *out);
void wk_builtin_sleep(const struct wk_call *call, struct wk_outcome *out);
void wk_builtin_fail(const struct wk_call *call, struct wk_outcome *out);

/* ------------------------------------------------------------------ exec (exec.c) */

/* Checks that path (absolute) is an executable regular file. Returns 0 or
 * TRPC_ERR_CONFIG with err set. */
int wk_exec_check(const char *path, struct tk_err *err);

/* Runs the program at path for one step (rules in exec.c). */
void wk_exec_run(const char *path, const struct wk_call *call, struct wk_outcome *out);

/* ------------------------------------------------------------------ plugins (plugin.c) */

/* The shared objects loaded so far, each opened once. */
struct wk_plugins;

struct wk_plugins *wk_plugins_new(void);

/*
 * Loads path (absolute; once) and looks up symbol. Returns 0 with *fn set,
 * TRPC_ERR_CONFIG (dlopen/dlsym failed, no or another ABI version) or
 * TRPC_ERR_NOMEM, with err set.
 */
int wk_plugins_symbol(struct wk_plugins *p, const char *path, const char *symbol,
                      tasker_handler_fn *fn, struct tk_err *err);

/* dlcloses everything. NULL is a no-op. */
void wk_plugins_free(struct wk_plugins *p);

/* Calls fn for one step and turns its tasker_handler_result into *out. */
void wk_plugin_run(tasker_handler_fn fn, const struct wk_call *call, struct wk_outcome *out);

#endif

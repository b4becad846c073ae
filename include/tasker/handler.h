/*
 * tasker/handler.h: step handlers as shared objects for tasker-worker.
 *
 * A template step names a plugin handler as
 *
 *     handler:
 *       callable: "plugin:<file.so>:<symbol>"
 *
 * (a relative <file.so> is found in [worker] plugin_dir, or else in the
 * directory of the template file). The worker loads each file once at
 * start-up with dlopen(RTLD_NOW | RTLD_LOCAL), checks the ABI version and
 * looks up every symbol the templates name; a missing file, symbol or a
 * version mismatch stops the worker with a message naming the template.
 * Plugins are never unloaded while the worker runs.
 *
 * A plugin defines, in exactly one of its files:
 *
 *     #include <tasker/handler.h>
 *     TASKER_HANDLER_PLUGIN();
 *
 * and one function of type tasker_handler_fn per handler, marked
 * TASKER_HANDLER_EXPORT so that it stays visible under -fvisibility=hidden:
 *
 *     TASKER_HANDLER_EXPORT int my_handler(const struct tasker_handler_call *call,
 *                                          struct tasker_handler_result *out);
 *
 * Build: cc -shared -fPIC -I<prefix>/include -o my.so my.c
 * See contrib/plugins/example/ and doc/handlers.md.
 *
 * Threads: a handler function is called from the worker's handler threads,
 * up to [worker] concurrency calls at the same time, for the same or
 * different steps. It must be reentrant (guard shared state yourself), must
 * not change process-wide state (signal dispositions and masks, the
 * working directory, environment variables, stdio buffering of
 * stdin/stdout), must not call exit() or fork() without exec, and must not
 * keep pointers into `call` after it returns. The worker cannot interrupt a
 * plugin: a call that ignores its deadline keeps a handler thread busy
 * until it returns.
 */
#ifndef TASKER_HANDLER_H
#define TASKER_HANDLER_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * The ABI version. It changes whenever the structs or the function type
 * below change in a way that breaks existing plugins; the worker refuses a
 * plugin built for another version.
 */
#define TASKER_HANDLER_ABI_VERSION 1

#if defined(__GNUC__)
#define TASKER_HANDLER_EXPORT __attribute__((visibility("default")))
#else
#define TASKER_HANDLER_EXPORT
#endif

/* Defines the symbol the worker reads to check the plugin's ABI version. */
#define TASKER_HANDLER_PLUGIN()                                                                    \
	TASKER_HANDLER_EXPORT extern const int tasker_handler_abi_version;                         \
	const int tasker_handler_abi_version = TASKER_HANDLER_ABI_VERSION

/* What the worker passes in. Everything is owned by the worker and valid
 * only during the call. */
struct tasker_handler_call {
	int abi_version;        /* TASKER_HANDLER_ABI_VERSION of the worker */
	const char *input_json; /* the handler input, a NUL-terminated JSON object:
	                           {task_uuid, step_uuid, step_name, correlation_id,
	                           attempt, task{namespace, name, version, context,
	                           initiator, tags}, step_inputs, dependency_results} */
	size_t input_len;       /* strlen(input_json) */
	const char *step_name;  /* copies of two input fields, for convenience */
	int attempt;            /* 1 for the first try */
	int64_t timeout_ms;     /* the step's time budget */
	int64_t deadline_ns;    /* CLOCK_MONOTONIC time (ns) at which the budget ends */
};

/*
 * What the handler fills in. The worker zeroes the struct and sets
 * retryable = 1 before the call. Strings are heap-allocated by the plugin
 * and released by the worker after the call with free_fn (when set) or
 * free() (when NULL); set free_fn if the plugin allocates with anything
 * but the C library's malloc().
 */
struct tasker_handler_result {
	int success;         /* 1: the step succeeded; 0: it failed */
	char *result_json;   /* success: the step's result as JSON text; NULL means null */
	char *error_message; /* failure: what went wrong (NULL: "handler failed") */
	char *error_type;    /* failure: a class name for it (NULL: "HandlerError") */
	int retryable;       /* failure: may the orchestration retry the step? */
	int backoff_seconds; /* failure: > 0 asks the orchestration to wait this long
	                        before the retry (a server-requested backoff) */
	void (*free_fn)(void *ptr);
};

/*
 * A handler. Returns 0 when *out holds the outcome (success or failure).
 * Any other value means the handler could not run at all; the worker
 * reports a retryable error and still releases the strings in *out.
 * result_json that is not valid JSON (or holds \u0000) turns a success into
 * a non-retryable error: the same code would fail the same way again.
 */
typedef int (*tasker_handler_fn)(const struct tasker_handler_call *call,
                                 struct tasker_handler_result *out);

#ifdef __cplusplus
}
#endif
#endif /* TASKER_HANDLER_H */

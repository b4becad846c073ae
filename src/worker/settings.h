/*
 * settings: tasker-worker's own settings. They arrive through the runtime's
 * loader (trpc_server_config_load's `extra` callback: the INI file,
 * TASKER_<SECTION>_<KEY> variables, --section.key=value options) and from
 * a few plain environment variables read by wk_settings_from_env().
 *
 *   key                        also read from                    default
 *   database.url               DATABASE_URL                      (required)
 *   database.pool_size                                           concurrency + 2
 *   worker.template_path       TASKER_TEMPLATE_PATH              (required)
 *   worker.namespaces          TASKER_WORKER_NAMESPACES          every namespace of the templates
 *   worker.environment                                           none (template overrides)
 *   worker.concurrency                                           8
 *   worker.visibility_timeout                                    30s
 *   worker.step_timeout                                          300s
 *   worker.poll_interval                                         5s
 *   worker.batch_size                                            10
 *   worker.shutdown_timeout                                      30s
 *   worker.exec_dir                                              the template's directory
 *   worker.plugin_dir                                            the template's directory
 *   worker.grpc_bind_address   TASKER_WORKER_GRPC_BIND_ADDRESS   0.0.0.0:9100
 *
 * Every key is also TASKER_<SECTION>_<KEY> (TASKER_WORKER_CONCURRENCY, ...)
 * through the loader, which beats the plain variables of the middle column.
 * Durations are a number with an optional unit: ms, s (the default), m, h.
 * The visibility timeout is whole seconds (the queues count in seconds).
 * TASKER_TEMPLATE_PATH reaches the loader as key "path" of section
 * "template"; "template.path" is accepted as another name for
 * worker.template_path.
 */
#ifndef TK_WORKER_SETTINGS_H
#define TK_WORKER_SETTINGS_H

#include <stddef.h>

#include "tasker/rpc.h"

struct wk_settings {
	char *database_url;
	int db_pool_size; /* 0: concurrency + 2 */
	char *template_path;
	char *namespaces; /* comma separated; NULL: all */
	char *environment;
	int concurrency;
	int visibility_timeout_s;
	int step_timeout_ms;
	int poll_interval_ms;
	int batch_size;
	int shutdown_timeout_ms;
	char *exec_dir;
	char *plugin_dir;
	char *grpc_bind_address;
};

/* Fills the defaults. Returns 0 or TRPC_ERR_NOMEM. */
int wk_settings_init(struct wk_settings *cfg);

/* Frees the strings; clearing twice is harmless. */
void wk_settings_clear(struct wk_settings *cfg);

/*
 * Sets one key. Returns 0, TRPC_ERR_CONFIG for a key this module does not
 * know (so that it can serve as the loader's `extra` callback, which
 * passes the reply on), TRPC_ERR_INVALID for a bad value with *why set to a
 * static or thread-local description, or TRPC_ERR_NOMEM.
 */
int wk_settings_set(struct wk_settings *cfg, const char *section, const char *key,
                    const char *value, const char **why);

/* The i-th key this module knows (i from 0), for --list-options: 0 with
 * static strings, or TRPC_ERR_NOT_FOUND past the last key. */
int wk_settings_key(size_t i, const char **section, const char **key);

/* Takes DATABASE_URL, TASKER_TEMPLATE_PATH, TASKER_WORKER_NAMESPACES and
 * TASKER_WORKER_GRPC_BIND_ADDRESS as defaults (the loader runs after and
 * overrides them), and records each one set in `taken` when not NULL (the
 * keys in force, which a reload compares). Returns 0, or as
 * wk_settings_set(). */
int wk_settings_from_env(struct wk_settings *cfg, trpc_config_keys *taken, const char **why);

/* Checks what must be set after loading. Returns 0 or TRPC_ERR_CONFIG with *why. */
int wk_settings_check(const struct wk_settings *cfg, const char **why);

#endif

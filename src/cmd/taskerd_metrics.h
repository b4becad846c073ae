/*
 * taskerd_metrics: taskerd's observability glue: the database collector on
 * the server and, when [metrics] listen is set, the /metrics listener.
 */
#ifndef TASKERD_METRICS_H
#define TASKERD_METRICS_H

#include "engine/engine.h"
#include "tasker/rpc.h"

struct taskerd_metrics;

/* Adds the database figures to srv's metrics and starts the listener when
 * cfg->metrics_listen is set. Call after trpc_server_start. NULL with *why
 * set on failure. */
struct taskerd_metrics *taskerd_metrics_start(trpc_server *srv, struct eng *eng,
                                              const struct trpc_server_config *cfg,
                                              const char **why);

/* Stops the listener and frees the collector; before trpc_server_free. */
void taskerd_metrics_stop(struct taskerd_metrics *m);

#endif

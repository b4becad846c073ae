/*
 * taskerd_metrics: see taskerd_metrics.h.
 */
#include "config.h"

#include <stdlib.h>

#include "cmd/taskerd_metrics.h"
#include "web/metrics_db.h"
#include "web/metrics_http.h"

/* Queue depths cost a count over every queue table: not more often. */
#define QUEUE_REFRESH_MS 5000

struct taskerd_metrics {
	struct metrics_http *http;
};

static void free_db(void *arg)
{
	metrics_db_free(arg);
}

struct taskerd_metrics *taskerd_metrics_start(trpc_server *srv, struct eng *eng,
                                              const struct trpc_server_config *cfg,
                                              const char **why)
{
	struct taskerd_metrics *m = calloc(1, sizeof *m);
	struct metrics_source src = {.srv = srv};
	struct metrics_db *db = NULL;

	/* The collector's state lives as long as the server: other listeners
	 * (the REST port) may render the server's metrics until it is freed. */
	if (m == NULL || (db = metrics_db_new(eng_pool(eng), QUEUE_REFRESH_MS)) == NULL ||
	    trpc_server_on_free(srv, free_db, db) != 0) {
		metrics_db_free(db);
		*why = "out of memory";
		goto fail;
	}
	if (trpc_server_add_metrics_collector(srv, metrics_db_collect, db) != 0) {
		*why = "out of memory";
		goto fail;
	}
	if (cfg->metrics_listen != NULL &&
	    (m->http = metrics_http_start(cfg->metrics_listen, &src, why)) == NULL)
		goto fail;
	return m;
fail:
	free(m);
	return NULL;
}

void taskerd_metrics_stop(struct taskerd_metrics *m)
{
	if (m == NULL)
		return;
	metrics_http_stop(m->http);
	free(m);
}

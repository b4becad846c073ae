/*
 * metrics_db: the database figures of /metrics, a metrics collector for
 * programs with a database pool (taskerd, tasker-worker):
 *   tasker_db_pool_connections{state="active|idle|max"}   gauge
 *   tasker_db_pool_acquires_total                         counter
 *   tasker_db_pool_slow_acquires_total (over 100 ms)      counter
 *   tasker_db_pool_errors_total                           counter
 *   tasker_db_pool_acquire_seconds       mean since start  gauge
 *   tasker_db_pool_acquire_seconds_total time spent        counter
 *   tasker_db_pool_acquire_max_seconds   longest           gauge
 *   tasker_queue_depth{queue}            messages in queue gauge
 * Queue depths come from one SQL query (pgmq.metrics_all()) run at most
 * every refresh_ms: scrapes in between get the cached figures, so frequent
 * scrapes do not load the database.
 */
#ifndef TK_WEB_METRICS_DB_H
#define TK_WEB_METRICS_DB_H

#include "store/db.h"
#include "tasker/rpc.h"

struct metrics_db;

/* A collector over `pool` (which must outlive it). NULL: out of memory. */
struct metrics_db *metrics_db_new(struct db_pool *pool, int refresh_ms);
void metrics_db_free(struct metrics_db *m);

/* A trpc_metrics_collect_fn; ud is the struct metrics_db. Runs one scrape
 * at a time (the server and metrics_http serialize collectors). */
void metrics_db_collect(trpc_metrics_buf *out, void *ud);

#endif

/*
 * metrics_http: a small HTTP/1.1 listener (libmicrohttpd) that serves the
 * Prometheus exposition at /metrics, for programs whose [metrics] listen
 * is set. GET and HEAD only; other paths get 404, other methods 405.
 *
 * The REST layer can serve the same text on its own port by calling
 * metrics_http_render() from its /metrics handler.
 */
#ifndef TK_WEB_METRICS_HTTP_H
#define TK_WEB_METRICS_HTTP_H

#include "tasker/rpc.h"

/* What one scrape shows: the server's families and its collectors when
 * `srv` is set; otherwise the process_* families and `collect` (if any). */
struct metrics_source {
	trpc_server *srv;
	trpc_metrics_collect_fn collect; /* only without srv (with one, add it as a collector) */
	void *collect_ud;
};

struct metrics_http;

/*
 * Starts listening on `listen` ("host:port", "[v6]:port"; port 0 picks a
 * free one) and logs "metrics listening on HOST:PORT". The request thread
 * takes no signals. Returns NULL with *why set (static or thread-local text)
 * when the address is bad or cannot be bound.
 */
struct metrics_http *metrics_http_start(const char *listen, const struct metrics_source *src,
                                        const char **why);

/* The bound port. */
int metrics_http_port(const struct metrics_http *h);

/* Stops the listener (waits for a scrape in progress). NULL is a no-op. */
void metrics_http_stop(struct metrics_http *h);

/* The exposition of `src` as a malloc'd NUL-terminated string (its length
 * in *len), or NULL when out of memory. */
char *metrics_http_render(const struct metrics_source *src, size_t *len);

#endif

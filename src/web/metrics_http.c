/*
 * metrics_http: /metrics over HTTP/1.1 with libmicrohttpd (see the header).
 *
 * We open the listening socket ourselves and hand it to libmicrohttpd: the
 * address syntax is the runtime's ("host:port", "[v6]:port"), and with
 * port 0 getsockname() tells the port we log. One internal thread serves
 * every request; a scrape renders the text on that thread.
 */
#include "config.h"

#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <microhttpd.h>

#include "web/metrics_http.h"

#define METRICS_PATH       "/metrics"
#define MAX_CONNECTIONS    64
#define CONNECTION_TIMEOUT 30 /* s: an idle keep-alive connection is dropped */

struct metrics_http {
	struct MHD_Daemon *daemon;
	struct metrics_source src;
	int port;
};

static __thread char http_why[512];

/* ------------------------------------------------------------------ rendering */

/* Collectors given without a server get the serialization the server gives
 * its own: one scrape at a time. */
static pthread_mutex_t standalone_mu = PTHREAD_MUTEX_INITIALIZER;

char *metrics_http_render(const struct metrics_source *src, size_t *len)
{
	trpc_metrics_buf *b;
	const char *text;
	char *copy = NULL;
	size_t n = 0;

	if (src->srv != NULL)
		return trpc_server_metrics_render(src->srv, len);
	if ((b = trpc_metrics_buf_new()) == NULL)
		return NULL;
	trpc_metrics_write_process(b);
	if (src->collect != NULL) {
		pthread_mutex_lock(&standalone_mu);
		src->collect(b, src->collect_ud);
		pthread_mutex_unlock(&standalone_mu);
	}
	if ((text = trpc_metrics_buf_data(b, &n)) != NULL && (copy = malloc(n + 1)) != NULL) {
		memcpy(copy, text, n + 1);
		*len = n;
	}
	trpc_metrics_buf_free(b);
	return copy;
}

/* ------------------------------------------------------------------ requests */

static enum MHD_Result respond_text(struct MHD_Connection *conn, unsigned status, const char *text,
                                    const char *allow)
{
	struct MHD_Response *r =
	    MHD_create_response_from_buffer(strlen(text), (void *)text, MHD_RESPMEM_PERSISTENT);
	enum MHD_Result rc;

	if (r == NULL)
		return MHD_NO;
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain; charset=utf-8");
	if (allow != NULL)
		MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, allow);
	rc = MHD_queue_response(conn, status, r);
	MHD_destroy_response(r);
	return rc;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
	struct metrics_http *h = cls;
	struct MHD_Response *r;
	enum MHD_Result rc;
	size_t len = 0;
	char *text;

	(void)version;
	(void)upload_data;
	(void)upload_data_size;
	(void)con_cls;
	if (strcmp(url, METRICS_PATH) != 0)
		return respond_text(conn, MHD_HTTP_NOT_FOUND, "not found; try /metrics\n", NULL);
	/* libmicrohttpd answers HEAD with the GET response's headers only. */
	if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
		return respond_text(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed\n",
		                    "GET, HEAD");
	if ((text = metrics_http_render(&h->src, &len)) == NULL)
		return respond_text(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n", NULL);
	r = MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
	if (r == NULL) {
		free(text);
		return MHD_NO;
	}
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, TRPC_METRICS_CONTENT_TYPE);
	MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	rc = MHD_queue_response(conn, MHD_HTTP_OK, r);
	MHD_destroy_response(r);
	return rc;
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
	char msg[256];
	size_t n;

	(void)cls;
	vsnprintf(msg, sizeof msg, fmt, ap);
	n = strlen(msg);
	while (n > 0 && msg[n - 1] == '\n')
		msg[--n] = '\0';
	trpc_log(TRPC_LOG_WARN, "metrics http: %s", msg);
}

/* ------------------------------------------------------------------ listening */

static const char *fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static const char *fail(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(http_why, sizeof http_why, fmt, ap);
	va_end(ap);
	return http_why;
}

/* Opens a listening socket; returns it (and the bound port) or -1 with *why. */
static int open_listener(const char *spec, int *port_out, char *shown, size_t shown_size,
                         const char **why)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM,
	                         .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
	struct sockaddr_storage sa;
	socklen_t salen = sizeof sa;
	struct addrinfo *res;
	char host[256], port[32], bound_host[NI_MAXHOST], bound_port[NI_MAXSERV];
	int fd = -1, one = 1, gai;

	if (trpc_split_hostport(spec, host, sizeof host, port, sizeof port) != 0) {
		*why = fail("metrics.listen \"%s\": expected host:port or [v6]:port", spec);
		return -1;
	}
	if ((gai = getaddrinfo(host[0] ? host : NULL, port, &hints, &res)) != 0) {
		*why = fail("metrics.listen \"%s\": %s", spec, gai_strerror(gai));
		return -1;
	}
	fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd != -1) {
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
		if (res->ai_family == AF_INET6)
			setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
	}
	if (fd == -1 || bind(fd, res->ai_addr, res->ai_addrlen) == -1 || listen(fd, 64) == -1 ||
	    getsockname(fd, (struct sockaddr *)&sa, &salen) == -1 ||
	    getnameinfo((struct sockaddr *)&sa, salen, bound_host, sizeof bound_host, bound_port,
	                sizeof bound_port, NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
		*why = fail("cannot listen on %s for metrics: %s", spec, strerror(errno));
		if (fd != -1)
			close(fd);
		freeaddrinfo(res);
		return -1;
	}
	freeaddrinfo(res);
	*port_out = atoi(bound_port);
	snprintf(shown, shown_size, sa.ss_family == AF_INET6 ? "[%s]:%s" : "%s:%s", bound_host,
	         bound_port);
	return fd;
}

struct metrics_http *metrics_http_start(const char *listen, const struct metrics_source *src,
                                        const char **why)
{
	struct metrics_http *h;
	sigset_t all, old;
	char shown[NI_MAXHOST + NI_MAXSERV + 4];
	int fd;

	if (listen == NULL || *listen == '\0' || src == NULL) {
		*why = "metrics_http_start: no address";
		return NULL;
	}
	if ((h = calloc(1, sizeof *h)) == NULL) {
		*why = "out of memory";
		return NULL;
	}
	h->src = *src;
	if ((fd = open_listener(listen, &h->port, shown, sizeof shown, why)) == -1) {
		free(h);
		return NULL;
	}
	/* The request thread inherits our mask: it must never take SIGTERM,
	 * SIGINT or SIGHUP, which the main thread waits for. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	h->daemon = MHD_start_daemon(
	    MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, 0, NULL, NULL, on_request, h,
	    /* The logger first: options before it would log the standard way. */
	    MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, NULL, MHD_OPTION_LISTEN_SOCKET, fd,
	    MHD_OPTION_CONNECTION_LIMIT, (unsigned)MAX_CONNECTIONS, MHD_OPTION_CONNECTION_TIMEOUT,
	    (unsigned)CONNECTION_TIMEOUT, MHD_OPTION_END);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (h->daemon == NULL) {
		/* The socket is left open: whether libmicrohttpd closed it on
		 * this path is not documented, and a double close could hit a
		 * descriptor opened meanwhile. The program is failing anyway. */
		free(h);
		*why = "cannot start the metrics HTTP listener (libmicrohttpd)";
		return NULL;
	}
	trpc_log(TRPC_LOG_INFO, "metrics listening on %s", shown);
	return h;
}

int metrics_http_port(const struct metrics_http *h)
{
	return h->port;
}

void metrics_http_stop(struct metrics_http *h)
{
	if (h == NULL)
		return;
	MHD_stop_daemon(h->daemon); /* closes the listening socket too */
	free(h);
}

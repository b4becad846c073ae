/*
 * server: the object behind trpc_server. Owns the configuration, the method
 * table, the I/O loops, the worker pool, the keepalive thread and the TLS
 * context. Internal to the library.
 */
#ifndef TRPC_SERVER_H
#define TRPC_SERVER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "metrics.h"
#include "tasker/rpc.h"

struct loop;
struct pool;
struct keepalive;

struct method_entry {
	char *path; /* "/pkg.Svc/Method" */
	size_t path_len;
	const struct trpc_method *m;
	const struct trpc_service *svc;
	int midx; /* the method's metrics slot */
};

struct listener_set {
	int tls;
	char *spec; /* "host:port" as configured */
	int port;   /* bound port */
	int *fds;   /* one SO_REUSEPORT socket per loop */
	int nfds;
};

struct free_hook {
	struct free_hook *next;
	void (*fn)(void *arg);
	void *arg;
};

struct trpc_server {
	struct trpc_server_config cfg;
	/* cfg as given to trpc_server_new (io_threads and workers not yet
	 * resolved), which trpc_server_reload compares with: the keys it does
	 * not apply stay as they were at start until a restart. */
	trpc_config_keys *keys;

	/* method table: open addressing over path hash; built before start */
	struct method_entry *methods;
	size_t methods_cap, methods_len;
	const struct trpc_service **services;
	size_t services_len, services_cap;

	/* The context new TLS connections use; replaced by trpc_server_reload.
	 * An SSL holds its own reference to its context, so a connection keeps
	 * the old one alive after a swap. ssl_mu guards the pointer only. */
	pthread_mutex_t ssl_mu;
	SSL_CTX *ssl_ctx;
	struct ratelimit *ratelimit;

	struct loop **loops;
	int nloops;
	struct pool *pool;
	/* Set (release) once `pool` exists, for threads other than the one
	 * that started the server (trpc_server_pool_status). */
	atomic_int pool_up;
	struct keepalive *ka;

	struct listener_set *listeners;
	size_t nlisteners;

	atomic_int nconns;     /* open connections, for max_connections */
	atomic_long ncalls;    /* calls alive (for graceful shutdown) */
	atomic_uint next_loop; /* round robin for anything assigned centrally */
	atomic_int shutting_down;
	int started;

	struct free_hook *free_hooks;
	struct free_hook *shutdown_hooks;

	struct metrics_reg metrics; /* slabs: one per I/O thread, then the keepalive's */
	trpc_reload_fn on_reload;
	void *on_reload_ud;
};

/* A new SSL on the current context (which trpc_server_reload may swap). */
SSL *server_ssl_new(struct trpc_server *srv);

/* Finds the method for a :path, or NULL. Safe from any thread after start. */
const struct method_entry *server_find_method(const struct trpc_server *srv, const char *path,
                                              size_t len);
/* 1 when a service of that name (the part of path between '/' and '/') exists. */
int server_has_service(const struct trpc_server *srv, const char *name, size_t len);

static inline int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

#endif

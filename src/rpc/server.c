/*
 * server: assembly of the runtime. Method table, listeners, and the start
 * and graceful-stop order of the threads:
 *   start: pool -> keepalive -> loops (listeners attached)
 *   stop:  loops drain (GOAWAY) -> wait for calls -> close the rest ->
 *          keepalive -> pool (delivers the cancellations) -> loops.
 */
#include "config.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "keepalive.h"
#include "loop.h"
#include "pool.h"
#include "ratelimit.h"
#include "server.h"
#include "tls.h"

static __thread char server_why[512];

/* ------------------------------------------------------------------ methods */

static uint64_t hash_path(const char *s, size_t len)
{
	uint64_t h = 1469598103934665603ULL; /* FNV-1a */
	for (size_t i = 0; i < len; i++) {
		h ^= (uint8_t)s[i];
		h *= 1099511628211ULL;
	}
	return h;
}

static int table_insert(struct trpc_server *srv, struct method_entry *e)
{
	if ((srv->methods_len + 1) * 2 > srv->methods_cap) {
		size_t cap = srv->methods_cap ? srv->methods_cap * 2 : 64;
		struct method_entry *t = calloc(cap, sizeof *t);
		if (t == NULL)
			return TRPC_ERR_NOMEM;
		for (size_t i = 0; i < srv->methods_cap; i++) {
			struct method_entry *o = &srv->methods[i];
			if (o->path == NULL)
				continue;
			size_t j = hash_path(o->path, o->path_len) & (cap - 1);
			while (t[j].path != NULL)
				j = (j + 1) & (cap - 1);
			t[j] = *o;
		}
		free(srv->methods);
		srv->methods = t;
		srv->methods_cap = cap;
	}
	size_t j = hash_path(e->path, e->path_len) & (srv->methods_cap - 1);
	while (srv->methods[j].path != NULL) {
		if (strcmp(srv->methods[j].path, e->path) == 0)
			return TRPC_ERR_EXISTS;
		j = (j + 1) & (srv->methods_cap - 1);
	}
	srv->methods[j] = *e;
	srv->methods_len++;
	return 0;
}

const struct method_entry *server_find_method(const struct trpc_server *srv, const char *path,
                                              size_t len)
{
	if (srv->methods_cap == 0)
		return NULL;
	size_t j = hash_path(path, len) & (srv->methods_cap - 1);
	while (srv->methods[j].path != NULL) {
		const struct method_entry *e = &srv->methods[j];
		if (e->path_len == len && memcmp(e->path, path, len) == 0)
			return e;
		j = (j + 1) & (srv->methods_cap - 1);
	}
	return NULL;
}

int server_has_service(const struct trpc_server *srv, const char *name, size_t len)
{
	for (size_t i = 0; i < srv->services_len; i++)
		if (strlen(srv->services[i]->name) == len &&
		    memcmp(srv->services[i]->name, name, len) == 0)
			return 1;
	return 0;
}

static int valid_method(const struct trpc_method *m)
{
	if (m->name == NULL || m->request == NULL || m->response == NULL)
		return 0;
	if (m->kind == TRPC_UNARY || m->kind == TRPC_SERVER_STREAMING)
		return m->handler != NULL;
	if (m->kind == TRPC_CLIENT_STREAMING || m->kind == TRPC_BIDI_STREAMING)
		return m->handler == NULL;
	return 0;
}

int trpc_server_add_service(trpc_server *srv, const struct trpc_service *svc)
{
	if (srv == NULL || svc == NULL || svc->name == NULL || srv->started)
		return TRPC_ERR_INVALID;
	if (server_has_service(srv, svc->name, strlen(svc->name)))
		return TRPC_ERR_EXISTS;
	for (size_t i = 0; i < svc->n_methods; i++)
		if (!valid_method(&svc->methods[i]))
			return TRPC_ERR_INVALID;
	if (srv->services_len == srv->services_cap) {
		size_t cap = srv->services_cap ? srv->services_cap * 2 : 8;
		const struct trpc_service **v = realloc(srv->services, cap * sizeof *v);
		if (v == NULL)
			return TRPC_ERR_NOMEM;
		srv->services = v;
		srv->services_cap = cap;
	}
	for (size_t i = 0; i < svc->n_methods; i++) {
		struct method_entry e = {.m = &svc->methods[i], .svc = svc};
		e.midx = metrics_add_method(&srv->metrics, svc->name, svc->methods[i].name,
		                            svc->methods[i].kind);
		if (e.midx < 0)
			return e.midx;
		size_t len = strlen(svc->name) + strlen(svc->methods[i].name) + 3;
		e.path = malloc(len);
		if (e.path == NULL)
			return TRPC_ERR_NOMEM;
		snprintf(e.path, len, "/%s/%s", svc->name, svc->methods[i].name);
		e.path_len = strlen(e.path);
		int rv = table_insert(srv, &e);
		if (rv != 0) {
			free(e.path);
			return rv;
		}
	}
	srv->services[srv->services_len++] = svc;
	return 0;
}

size_t trpc_server_service_count(const trpc_server *srv)
{
	return srv->services_len;
}

const char *trpc_server_service_name(const trpc_server *srv, size_t i)
{
	return i < srv->services_len ? srv->services[i]->name : NULL;
}

static int add_hook(struct free_hook **list, void (*fn)(void *arg), void *arg)
{
	struct free_hook *h = malloc(sizeof *h);
	if (h == NULL)
		return TRPC_ERR_NOMEM;
	h->fn = fn;
	h->arg = arg;
	h->next = *list;
	*list = h;
	return 0;
}

static void run_hooks(struct free_hook **list)
{
	while (*list != NULL) {
		struct free_hook *h = *list;
		*list = h->next;
		h->fn(h->arg);
		free(h);
	}
}

int trpc_server_on_free(trpc_server *srv, void (*fn)(void *arg), void *arg)
{
	return add_hook(&srv->free_hooks, fn, arg);
}

int trpc_server_on_shutdown(trpc_server *srv, void (*fn)(void *arg), void *arg)
{
	return add_hook(&srv->shutdown_hooks, fn, arg);
}

/* ------------------------------------------------------------------ create */

static char *dup_or_null(const char *s)
{
	return s ? strdup(s) : NULL;
}

static void copy_config(struct trpc_server_config *dst, const struct trpc_server_config *src)
{
	*dst = *src;
	dst->listen = dup_or_null(src->listen);
	dst->tls_listen = dup_or_null(src->tls_listen);
	dst->tls_cert_file = dup_or_null(src->tls_cert_file);
	dst->tls_key_file = dup_or_null(src->tls_key_file);
	dst->tls_client_ca_file = dup_or_null(src->tls_client_ca_file);
	dst->log_level = dup_or_null(src->log_level);
	dst->log_file = dup_or_null(src->log_file);
	dst->metrics_listen = dup_or_null(src->metrics_listen);
	dst->ratelimit_services = dup_or_null(src->ratelimit_services);
}

static int online_cpus(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	return n > 0 ? (int)n : 1;
}

trpc_server *trpc_server_new(const struct trpc_server_config *cfg, const char **why)
{
	trpc_server *srv = calloc(1, sizeof *srv);
	if (srv == NULL) {
		*why = "out of memory";
		return NULL;
	}
	pthread_mutex_init(&srv->ssl_mu, NULL);
	copy_config(&srv->cfg, cfg);
	metrics_init(&srv->metrics);
	/* As given: a reload compares with "0" (one per CPU), not with the count. */
	if ((srv->keys = trpc_config_keys_new()) == NULL ||
	    trpc_config_keys_add_server(srv->keys, cfg) != 0) {
		*why = "out of memory";
		trpc_server_free(srv);
		return NULL;
	}
	if (srv->cfg.io_threads <= 0)
		srv->cfg.io_threads = online_cpus();
	if (srv->cfg.workers <= 0)
		srv->cfg.workers = online_cpus();
	if (trpc_log_configure(&srv->cfg, why) != 0) {
		trpc_server_free(srv);
		return NULL;
	}
	if (srv->cfg.tls_listen != NULL && *srv->cfg.tls_listen) {
		srv->ssl_ctx = tls_server_ctx_new(&srv->cfg, why);
		if (srv->ssl_ctx == NULL) {
			trpc_server_free(srv);
			return NULL;
		}
	}
	srv->ratelimit = ratelimit_new(&srv->cfg);
	if (srv->ratelimit == NULL) {
		*why = "out of memory";
		trpc_server_free(srv);
		return NULL;
	}
	return srv;
}

/* ------------------------------------------------------------------ listen */

/* Parses "host:port", "[v6]:port" or ":port" (see tasker/rpc.h). */
int trpc_split_hostport(const char *spec, char *host, size_t hsize, char *port, size_t psize)
{
	const char *colon;
	if (spec[0] == '[') {
		const char *end = strchr(spec, ']');
		if (end == NULL || end[1] != ':')
			return -1;
		snprintf(host, hsize, "%.*s", (int)(end - spec - 1), spec + 1);
		colon = end + 1;
	} else {
		colon = strrchr(spec, ':');
		if (colon == NULL)
			return -1;
		snprintf(host, hsize, "%.*s", (int)(colon - spec), spec);
	}
	snprintf(port, psize, "%s", colon + 1);
	return port[0] ? 0 : -1;
}

static int open_listener(const char *spec, int *port_out, const char **why)
{
	char host[256], port[32];
	if (trpc_split_hostport(spec, host, sizeof host, port, sizeof port) != 0) {
		snprintf(server_why, sizeof server_why,
		         "listen address \"%s\": expected host:port or [v6]:port", spec);
		*why = server_why;
		return -1;
	}
	struct addrinfo hints = {.ai_family = AF_UNSPEC,
	                         .ai_socktype = SOCK_STREAM,
	                         .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
	struct addrinfo *res;
	int gai = getaddrinfo(host[0] ? host : NULL, port, &hints, &res);
	if (gai != 0) {
		snprintf(server_why, sizeof server_why, "listen address \"%s\": %s", spec,
		         gai_strerror(gai));
		*why = server_why;
		return -1;
	}
	int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1)
		goto fail_sys;
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (res->ai_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
	if (bind(fd, res->ai_addr, res->ai_addrlen) == -1 || listen(fd, 4096) == -1)
		goto fail_sys;
	struct sockaddr_storage sa;
	socklen_t salen = sizeof sa;
	getsockname(fd, (struct sockaddr *)&sa, &salen);
	*port_out = ntohs(sa.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&sa)->sin6_port
	                                           : ((struct sockaddr_in *)&sa)->sin_port);
	freeaddrinfo(res);
	return fd;
fail_sys:
	snprintf(server_why, sizeof server_why, "cannot listen on %s: %s", spec, strerror(errno));
	*why = server_why;
	if (fd != -1)
		close(fd);
	freeaddrinfo(res);
	return -1;
}

static int add_listeners(trpc_server *srv, const char *specs, int tls, const char **why)
{
	if (specs == NULL || *specs == '\0')
		return 0;
	char *copy = strdup(specs);
	if (copy == NULL)
		return TRPC_ERR_NOMEM;
	char *save = NULL;
	for (char *tok = strtok_r(copy, ", ", &save); tok; tok = strtok_r(NULL, ", ", &save)) {
		struct listener_set *v = realloc(srv->listeners, (srv->nlisteners + 1) * sizeof *v);
		if (v == NULL) {
			free(copy);
			return TRPC_ERR_NOMEM;
		}
		srv->listeners = v;
		struct listener_set *ls = &srv->listeners[srv->nlisteners];
		memset(ls, 0, sizeof *ls);
		ls->tls = tls;
		int port = 0;
		int fd = open_listener(tok, &port, why);
		if (fd == -1) {
			free(copy);
			return TRPC_ERR_SYSTEM;
		}
		ls->spec = strdup(tok);
		ls->port = port;
		ls->fds = malloc(sizeof(int));
		ls->fds[0] = fd;
		ls->nfds = 1;
		srv->nlisteners++;
		char shown[300];
		char host[256], p[32];
		trpc_split_hostport(tok, host, sizeof host, p, sizeof p);
		snprintf(shown, sizeof shown, strchr(host, ':') ? "[%s]:%d" : "%s:%d", host, port);
		trpc_log(TRPC_LOG_INFO, "listening %s %s", tls ? "tls" : "h2c", shown);
	}
	free(copy);
	return 0;
}

int trpc_server_port(const trpc_server *srv, int tls, size_t i)
{
	size_t k = 0;
	for (size_t j = 0; j < srv->nlisteners; j++)
		if (srv->listeners[j].tls == tls && k++ == i)
			return srv->listeners[j].port;
	return TRPC_ERR_INVALID;
}

int trpc_server_pool_status(const trpc_server *srv, struct trpc_pool_status *st)
{
	struct pool_stats ps;

	if (srv == NULL || st == NULL)
		return TRPC_ERR_INVALID;
	memset(st, 0, sizeof *st);
	if (!atomic_load_explicit(&srv->pool_up, memory_order_acquire)) {
		st->high_watermark = (size_t)srv->cfg.queue_high_watermark;
		st->low_watermark = (size_t)srv->cfg.queue_low_watermark;
		st->threads = srv->cfg.workers;
		return TRPC_ERR_STATE;
	}
	pool_stats(srv->pool, &ps);
	st->queue_depth = ps.depth;
	st->high_watermark = ps.high;
	st->low_watermark = ps.low;
	st->threads = ps.threads;
	st->busy_threads = ps.busy;
	st->reading_paused = ps.overloaded;
	return 0;
}

/* ------------------------------------------------------------------ start */

static void raise_nofile(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) == 0)
			trpc_log(TRPC_LOG_DEBUG, "RLIMIT_NOFILE raised to %llu",
			         (unsigned long long)rl.rlim_cur);
	}
}

int trpc_server_start(trpc_server *srv, const char **why)
{
	*why = NULL;
	if (srv->started) {
		*why = "server already started";
		return TRPC_ERR_INVALID;
	}
	/* A peer closing mid-write must be an error return, not a signal. */
	signal(SIGPIPE, SIG_IGN);
	raise_nofile();

	/* Our threads never take SIGINT/SIGTERM: the program's main thread
	 * does (trpc_server_run_until_signal). */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	int rv = TRPC_ERR_SYSTEM;

	const struct trpc_server_config *cfg = &srv->cfg;
	if ((rv = metrics_start(&srv->metrics, (size_t)cfg->io_threads + 1)) != 0) {
		*why = "out of memory";
		goto out;
	}
	rv = TRPC_ERR_SYSTEM;
	srv->ka = keepalive_new(srv, why);
	if (srv->ka == NULL)
		goto out;
	srv->pool = pool_new(cfg->workers, (size_t)cfg->queue_high_watermark,
	                     (size_t)cfg->queue_low_watermark, keepalive_pressure, srv->ka, why);
	if (srv->pool == NULL)
		goto out;
	atomic_store_explicit(&srv->pool_up, 1, memory_order_release);
	if ((rv = add_listeners(srv, cfg->listen, 0, why)) != 0)
		goto out;
	if ((rv = add_listeners(srv, cfg->tls_listen, 1, why)) != 0)
		goto out;
	if (srv->nlisteners == 0) {
		*why = "no listeners configured (server.listen / server.tls_listen)";
		rv = TRPC_ERR_CONFIG;
		goto out;
	}
	srv->loops = calloc((size_t)cfg->io_threads, sizeof *srv->loops);
	if (srv->loops == NULL) {
		rv = TRPC_ERR_NOMEM;
		goto out;
	}
	for (int i = 0; i < cfg->io_threads; i++) {
		srv->loops[i] = loop_new(srv, i, why);
		if (srv->loops[i] == NULL) {
			rv = TRPC_ERR_SYSTEM;
			goto out;
		}
		srv->nloops = i + 1;
		for (size_t j = 0; j < srv->nlisteners; j++)
			if ((rv = loop_add_listener(srv->loops[i], srv->listeners[j].fds[0],
			                            srv->listeners[j].tls)) != 0) {
				*why = "cannot watch a listening socket";
				goto out;
			}
	}
	if ((rv = keepalive_start(srv->ka)) != 0) {
		*why = "cannot start the keepalive thread";
		goto out;
	}
	for (int i = 0; i < srv->nloops; i++)
		if ((rv = loop_start(srv->loops[i])) != 0) {
			*why = "cannot start an I/O thread";
			goto out;
		}
	srv->started = 1;
	trpc_log(TRPC_LOG_INFO, "serving with %d I/O threads and %d workers", srv->nloops,
	         cfg->workers);
	rv = 0;
out:
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rv != 0 && *why == NULL)
		*why = trpc_strerror(rv);
	return rv;
}

/* ------------------------------------------------------------------ stop */

static void sleep_ms(int ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
	nanosleep(&ts, NULL);
}

static void wait_for(trpc_server *srv, int64_t until)
{
	while (now_ns() < until && (atomic_load(&srv->nconns) > 0 || atomic_load(&srv->ncalls) > 0))
		sleep_ms(10);
}

void trpc_server_shutdown(trpc_server *srv)
{
	if (srv == NULL || !srv->started || atomic_exchange(&srv->shutting_down, 1))
		return;
	trpc_log(TRPC_LOG_INFO, "shutting down: draining connections");
	/* First tell the world (health goes NOT_SERVING, watchers hear it),
	 * then send GOAWAY. */
	run_hooks(&srv->shutdown_hooks);
	for (int i = 0; i < srv->nloops; i++)
		loop_post(srv->loops[i], LOOP_CMD_DRAIN, NULL, 0, NULL);
	wait_for(srv, now_ns() + (int64_t)srv->cfg.shutdown_grace_ms * 1000000);
	if (atomic_load(&srv->nconns) > 0) {
		trpc_log(TRPC_LOG_WARN, "grace period over: closing %d connections",
		         atomic_load(&srv->nconns));
		for (int i = 0; i < srv->nloops; i++)
			loop_post(srv->loops[i], LOOP_CMD_CLOSE_ALL, NULL, 0, NULL);
	}
	/* Handlers of cancelled calls get their on_cancel and finish. */
	wait_for(srv, now_ns() + 2000000000LL);
	keepalive_stop(srv->ka);
	pool_stop(srv->pool);
	for (int i = 0; i < srv->nloops; i++)
		loop_join(srv->loops[i]);
	srv->started = 0;
	long left = atomic_load(&srv->ncalls);
	if (left > 0)
		trpc_log(TRPC_LOG_WARN, "%ld calls were never finished by their handlers", left);
	trpc_log(TRPC_LOG_INFO, "stopped");
}

/* ------------------------------------------------------------------ reload */

/*
 * The keys trpc_server_reload applies (fnmatch patterns over
 * "section.key"). Every other key of the table is read once, when
 * threads, listeners, sessions or calls are made, and a change to it is
 * logged as needing a restart.
 */
static const char *const reloaded_keys[] = {
    "tls.*", "server.log_level", "log.level", "log.format", "log.file", "ratelimit.*", NULL,
};

/* Warns about the keys of nc that differ from the configuration in force and are not applied. */
static void warn_restart_keys(const trpc_server *srv, const struct trpc_server_config *nc)
{
	trpc_config_keys *fresh = trpc_config_keys_new();

	if (fresh == NULL || trpc_config_keys_add_server(fresh, nc) != 0)
		trpc_log(TRPC_LOG_WARN, "reload: out of memory; keys that need a restart "
		                        "are not listed");
	else
		trpc_config_keys_warn_restart(srv->keys, fresh, reloaded_keys);
	trpc_config_keys_free(fresh);
}

/* A new log file must be writable before anything is applied. */
static int check_log_file(const struct trpc_server_config *nc, const char **why)
{
	static __thread char buf[512];
	if (nc->log_file == NULL)
		return 0;
	FILE *f = fopen(nc->log_file, "a");
	if (f == NULL) {
		snprintf(buf, sizeof buf, "cannot open log.file %s: %s", nc->log_file,
		         strerror(errno));
		*why = buf;
		return TRPC_ERR_SYSTEM;
	}
	fclose(f);
	return 0;
}

int trpc_server_reload(trpc_server *srv, const struct trpc_server_config *nc, const char **why)
{
	return trpc_server_reload_with(srv, nc, NULL, NULL, why);
}

int trpc_server_reload_with(trpc_server *srv, const struct trpc_server_config *nc,
                            void (*applied)(void *ud), void *ud, const char **why)
{
	const char *dummy;
	SSL_CTX *ctx = NULL, *old = NULL;
	int rc;

	if (why == NULL)
		why = &dummy;
	if (srv == NULL || nc == NULL) {
		*why = "trpc_server_reload_with: NULL argument";
		return TRPC_ERR_INVALID;
	}
	if ((rc = check_log_file(nc, why)) != 0)
		return rc;
	pthread_mutex_lock(&srv->ssl_mu);
	int tls = srv->ssl_ctx != NULL;
	pthread_mutex_unlock(&srv->ssl_mu);
	if (tls && (ctx = tls_server_ctx_new(nc, why)) == NULL)
		return TRPC_ERR_TLS;
	if (ratelimit_set_rules(srv->ratelimit, nc) != 0) {
		SSL_CTX_free(ctx);
		*why = "out of memory";
		return TRPC_ERR_NOMEM;
	}
	/* Nothing below can fail for a reason checked above. */
	if (ctx != NULL) {
		pthread_mutex_lock(&srv->ssl_mu);
		old = srv->ssl_ctx;
		srv->ssl_ctx = ctx;
		pthread_mutex_unlock(&srv->ssl_mu);
		SSL_CTX_free(old); /* open connections hold their own references */
	}
	if (trpc_log_configure(nc, why) != 0)
		trpc_log(TRPC_LOG_ERROR, "reload: %s", *why);
	/* The caller's settings, before the line that says all is in force. */
	if (applied != NULL)
		applied(ud);
	warn_restart_keys(srv, nc);
	trpc_log(TRPC_LOG_INFO, "reload: applied%s; log level %s; rate limiting %s",
	         ctx != NULL ? " new TLS certificate" : "", nc->log_level ? nc->log_level : "info",
	         nc->ratelimit_enabled ? "on" : "off");
	return 0;
}

SSL *server_ssl_new(trpc_server *srv)
{
	pthread_mutex_lock(&srv->ssl_mu);
	SSL *ssl = SSL_new(srv->ssl_ctx);
	pthread_mutex_unlock(&srv->ssl_mu);
	return ssl;
}

void trpc_server_set_on_reload(trpc_server *srv, trpc_reload_fn fn, void *ud)
{
	srv->on_reload = fn;
	srv->on_reload_ud = ud;
}

void trpc_block_run_signals(sigset_t *set)
{
	sigset_t s;
	sigemptyset(&s);
	sigaddset(&s, SIGINT);
	sigaddset(&s, SIGTERM);
	sigaddset(&s, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &s, NULL);
	if (set != NULL)
		*set = s;
}

int trpc_server_run_until_signal(trpc_server *srv)
{
	sigset_t set;
	trpc_block_run_signals(&set);
	int sig = 0;
	for (;;) {
		if (sigwait(&set, &sig) != 0)
			return TRPC_ERR_SYSTEM;
		if (sig != SIGHUP)
			break;
		/* Reopen first: whatever the hook logs goes to the new file. */
		int rc = trpc_log_reopen();
		trpc_log(rc == 0 ? TRPC_LOG_INFO : TRPC_LOG_ERROR, "received SIGHUP: %s",
		         rc == 0 ? "log reopened"
		                 : "cannot reopen the log file; still using the old one");
		if (srv->on_reload != NULL)
			srv->on_reload(srv, srv->on_reload_ud);
	}
	trpc_log(TRPC_LOG_INFO, "received %s", sig == SIGINT ? "SIGINT" : "SIGTERM");
	trpc_server_shutdown(srv);
	return 0;
}

void trpc_server_free(trpc_server *srv)
{
	if (srv == NULL)
		return;
	trpc_server_shutdown(srv);
	run_hooks(&srv->shutdown_hooks); /* never started: nothing to announce */
	run_hooks(&srv->free_hooks);
	for (int i = 0; i < srv->nloops; i++)
		loop_free(srv->loops[i]);
	free(srv->loops);
	keepalive_free(srv->ka);
	/* A start that failed after pool_new left the workers running. */
	if (srv->pool != NULL)
		pool_stop(srv->pool);
	pool_free(srv->pool);
	for (size_t i = 0; i < srv->nlisteners; i++) {
		for (int j = 0; j < srv->listeners[i].nfds; j++)
			close(srv->listeners[i].fds[j]);
		free(srv->listeners[i].fds);
		free(srv->listeners[i].spec);
	}
	free(srv->listeners);
	for (size_t i = 0; i < srv->methods_cap; i++)
		free(srv->methods[i].path);
	free(srv->methods);
	free(srv->services);
	if (srv->ssl_ctx != NULL)
		SSL_CTX_free(srv->ssl_ctx);
	pthread_mutex_destroy(&srv->ssl_mu);
	ratelimit_free(srv->ratelimit);
	metrics_clear(&srv->metrics);
	trpc_config_keys_free(srv->keys);
	trpc_server_config_clear(&srv->cfg);
	free(srv);
}

/* ------------------------------------------------------------------ submit */

struct submit_task {
	struct pool_task task;
	void (*fn)(void *arg);
	void *arg;
};

static void run_submit(struct pool_task *t)
{
	struct submit_task *s = (struct submit_task *)t;
	s->fn(s->arg);
	free(s);
}

int trpc_server_submit(trpc_server *srv, void (*fn)(void *arg), void *arg)
{
	if (srv == NULL || fn == NULL || srv->pool == NULL)
		return TRPC_ERR_INVALID;
	struct submit_task *s = malloc(sizeof *s);
	if (s == NULL)
		return TRPC_ERR_NOMEM;
	s->task.run = run_submit;
	s->fn = fn;
	s->arg = arg;
	pool_push(srv->pool, &s->task);
	return 0;
}

/*
 * sdnotify: see sdnotify.h. Without libsystemd only the public functions
 * remain, each doing nothing.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

#include "common/sdnotify.h"

/* A STATUS= line longer than this is cut; systemctl shows one line anyway. */
#define STATE_MAX 512

#ifdef HAVE_SYSTEMD

/* ------------------------------------------------------------------ sending */

static atomic_int send_failed; /* log the first failure only */

static int send_state(const char *state)
{
	int r = sd_notify(0, state);

	if (r >= 0)
		return 0; /* sent, or not started by a service manager */
	if (!atomic_exchange(&send_failed, 1))
		trpc_log(TRPC_LOG_WARN, "sd_notify: %s (further failures are not logged)",
		         strerror(-r));
	return TRPC_ERR_SYSTEM;
}

/* `head` ("READY=1\n", ...) followed by "STATUS=" and the formatted text. */
static int send_with_status(const char *head, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

static int send_with_status(const char *head, const char *fmt, va_list ap)
{
	char buf[STATE_MAX];
	int n = snprintf(buf, sizeof(buf), "%sSTATUS=", head);

	if (n < 0 || (size_t)n >= sizeof(buf))
		return TRPC_ERR_INVALID;
	vsnprintf(buf + n, sizeof(buf) - (size_t)n, fmt, ap);
	/* STATUS= is one line: a newline would start another assignment. */
	for (char *p = buf + n; *p != '\0'; p++)
		if (*p == '\n')
			*p = ' ';
	return send_state(buf);
}

/* ------------------------------------------------------------------ watchdog */

/*
 * One watchdog per process. `mu` guards the fields below it; the thread
 * sleeps on `cv` (CLOCK_MONOTONIC) so that stop wakes it at once.
 */
static struct {
	pthread_once_t once;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	pthread_t thread;
	int running;
	int stop;
	uint64_t interval_us; /* between pings: WATCHDOG_USEC / 2 */
	sdn_health_fn healthy;
	void *ud;
} wd = {.once = PTHREAD_ONCE_INIT, .mu = PTHREAD_MUTEX_INITIALIZER};

static void on_wd_once(void)
{
	pthread_condattr_t ca;

	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&wd.cv, &ca);
	pthread_condattr_destroy(&ca);
}

static void add_us(struct timespec *ts, uint64_t us)
{
	ts->tv_sec += (time_t)(us / 1000000);
	ts->tv_nsec += (long)(us % 1000000) * 1000;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

static void *on_wd_thread(void *arg)
{
	int was_healthy = 1;

	pthread_mutex_lock(&wd.mu);
	while (!wd.stop) {
		struct timespec next;
		int healthy;

		pthread_mutex_unlock(&wd.mu);
		healthy = wd.healthy == NULL || wd.healthy(wd.ud);
		if (healthy)
			send_state("WATCHDOG=1");
		if (healthy != was_healthy)
			trpc_log(healthy ? TRPC_LOG_INFO : TRPC_LOG_WARN,
			         healthy ? "watchdog: healthy again, keep-alives resumed"
			                 : "watchdog: health check failed, keep-alives withheld");
		was_healthy = healthy;
		pthread_mutex_lock(&wd.mu);
		clock_gettime(CLOCK_MONOTONIC, &next);
		add_us(&next, wd.interval_us);
		while (!wd.stop && pthread_cond_timedwait(&wd.cv, &wd.mu, &next) != ETIMEDOUT)
			;
	}
	pthread_mutex_unlock(&wd.mu);
	return arg;
}

int sdn_watchdog_start(sdn_health_fn healthy, void *ud)
{
	uint64_t usec = 0;
	sigset_t all, old;
	int r, rc = 0;

	r = sd_watchdog_enabled(0, &usec);
	if (r < 0)
		trpc_log(TRPC_LOG_WARN, "watchdog: bad WATCHDOG_USEC or WATCHDOG_PID: %s",
		         strerror(-r));
	if (r <= 0 || usec == 0)
		return 0;
	pthread_once(&wd.once, on_wd_once);
	pthread_mutex_lock(&wd.mu);
	if (wd.running) {
		pthread_mutex_unlock(&wd.mu);
		return TRPC_ERR_STATE;
	}
	wd.stop = 0;
	wd.interval_us = usec / 2 > 0 ? usec / 2 : 1;
	wd.healthy = healthy;
	wd.ud = ud;
	/* The thread inherits this mask: signals stay with the threads that wait for them. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	if (pthread_create(&wd.thread, NULL, on_wd_thread, NULL) != 0)
		rc = TRPC_ERR_SYSTEM;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	wd.running = rc == 0;
	pthread_mutex_unlock(&wd.mu);
	if (rc == 0)
		trpc_log(TRPC_LOG_DEBUG, "watchdog: keep-alive every %llu ms",
		         (unsigned long long)(wd.interval_us / 1000));
	return rc;
}

void sdn_watchdog_stop(void)
{
	pthread_t t;

	pthread_mutex_lock(&wd.mu);
	if (!wd.running) {
		pthread_mutex_unlock(&wd.mu);
		return;
	}
	wd.stop = 1;
	wd.running = 0;
	t = wd.thread;
	pthread_cond_signal(&wd.cv);
	pthread_mutex_unlock(&wd.mu);
	pthread_join(t, NULL);
}

/* ------------------------------------------------------------------ server probe */

/*
 * The watchdog's view of a trpc_server: each tick submits a no-op task to
 * the worker pool, unless the previous one has not run yet. A probe may
 * wait one tick (half the watchdog interval) behind a busy queue; still
 * waiting at the next tick, the pool is taken to be stuck and keep-alives
 * stop until it runs. The pool drains its queue when it stops, so a
 * queued probe always runs before the probe struct is freed with the
 * server.
 */
struct probe {
	trpc_server *srv;
	atomic_int pending; /* a probe task is queued or running */
	int ticks_waited;   /* watchdog thread only */
};

static void on_probe_run(void *arg)
{
	struct probe *p = arg;

	atomic_store(&p->pending, 0);
}

static int on_probe_tick(void *ud)
{
	struct probe *p = ud;

	if (atomic_load(&p->pending))
		return ++p->ticks_waited < 2;
	p->ticks_waited = 0;
	atomic_store(&p->pending, 1);
	if (trpc_server_submit(p->srv, on_probe_run, p) != 0)
		atomic_store(&p->pending, 0); /* out of memory: not the pool's fault */
	return 1;
}

static void on_server_shutdown(void *arg)
{
	(void)arg;
	sdn_stopping("shutting down: draining connections");
}

int sdn_server_ready(trpc_server *srv, const char *fmt, ...)
{
	struct probe *p = calloc(1, sizeof(*p));
	va_list ap;

	if (p == NULL)
		return TRPC_ERR_NOMEM;
	p->srv = srv;
	if (trpc_server_on_free(srv, free, p) != 0) {
		free(p);
		return TRPC_ERR_NOMEM;
	}
	if (trpc_server_on_shutdown(srv, on_server_shutdown, NULL) != 0)
		return TRPC_ERR_NOMEM;
	va_start(ap, fmt);
	send_with_status("READY=1\n", fmt, ap);
	va_end(ap);
	if (sdn_watchdog_start(on_probe_tick, p) != 0)
		trpc_log(TRPC_LOG_WARN, "watchdog: cannot start its thread");
	return 0;
}

#else /* !HAVE_SYSTEMD */

static int send_state(const char *state)
{
	(void)state;
	return 0;
}

static int send_with_status(const char *head, const char *fmt, va_list ap)
{
	(void)head;
	(void)fmt;
	(void)ap;
	return 0;
}

int sdn_watchdog_start(sdn_health_fn healthy, void *ud)
{
	(void)healthy;
	(void)ud;
	return 0;
}

void sdn_watchdog_stop(void) {}

int sdn_server_ready(trpc_server *srv, const char *fmt, ...)
{
	(void)srv;
	(void)fmt;
	return 0;
}

#endif /* HAVE_SYSTEMD */

/* ------------------------------------------------------------------ public senders */

int sdn_notify(const char *state)
{
	return send_state(state);
}

int sdn_status(const char *fmt, ...)
{
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = send_with_status("", fmt, ap);
	va_end(ap);
	return rc;
}

int sdn_ready(const char *fmt, ...)
{
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = send_with_status("READY=1\n", fmt, ap);
	va_end(ap);
	return rc;
}

int sdn_stopping(const char *fmt, ...)
{
	va_list ap;
	int rc;

	sdn_watchdog_stop();
	va_start(ap, fmt);
	rc = send_with_status("STOPPING=1\n", fmt, ap);
	va_end(ap);
	return rc;
}

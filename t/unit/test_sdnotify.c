/*
 * Unit tests for src/common/sdnotify.c: what a service manager receives
 * on its notification socket (a Unix datagram socket bound here and named
 * by NOTIFY_SOCKET), the watchdog thread and its health checks, and the
 * worker-pool probe of sdn_server_ready(). Without libsystemd every
 * function must do nothing; the socket tests are then skipped.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "config.h"

#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "common/sdnotify.h"
#include "tasker/rpc.h"

/* Keep-alive interval asked for: pings every 50 ms. */
#define WATCHDOG_USEC "100000"

/* ------------------------------------------------------------------ the manager's side */

struct manager {
	int fd;
	char path[108];
};

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int manager_setup(void **state)
{
	static struct manager m;
	struct sockaddr_un sa = {.sun_family = AF_UNIX};

	snprintf(m.path, sizeof(m.path), "/tmp/tasker-sdn-%ld.sock", (long)getpid());
	unlink(m.path);
	m.fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	assert_true(m.fd >= 0);
	memcpy(sa.sun_path, m.path, strlen(m.path) + 1);
	assert_int_equal(bind(m.fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	setenv("NOTIFY_SOCKET", m.path, 1);
	setenv("WATCHDOG_USEC", WATCHDOG_USEC, 1);
	unsetenv("WATCHDOG_PID");
	*state = &m;
	return 0;
}

static int manager_teardown(void **state)
{
	struct manager *m = *state;

	sdn_watchdog_stop();
	unsetenv("NOTIFY_SOCKET");
	unsetenv("WATCHDOG_USEC");
	close(m->fd);
	unlink(m->path);
	return 0;
}

/* Receives one datagram within timeout_ms into buf; returns its length or -1. */
static int receive(struct manager *m, char *buf, size_t size, int timeout_ms)
{
	struct pollfd pfd = {.fd = m->fd, .events = POLLIN};
	ssize_t n;

	if (poll(&pfd, 1, timeout_ms) != 1)
		return -1;
	n = recv(m->fd, buf, size - 1, 0);
	if (n < 0)
		return -1;
	buf[n] = '\0';
	return (int)n;
}

/* Counts the datagrams holding `line` (a whole line) during ms milliseconds. */
static int count_during(struct manager *m, const char *line, int ms)
{
	int64_t end = now_ms() + ms;
	char buf[1024];
	int n = 0;

	for (int64_t left; (left = end - now_ms()) > 0;) {
		if (receive(m, buf, sizeof(buf), (int)left) < 0)
			continue;
		for (char *p = strtok(buf, "\n"); p != NULL; p = strtok(NULL, "\n"))
			n += strcmp(p, line) == 0;
	}
	return n;
}

/* Waits up to ms for a datagram holding `line`; copies the datagram into out. */
static int wait_for(struct manager *m, const char *line, int ms, char *out, size_t size)
{
	int64_t end = now_ms() + ms;
	char buf[1024];

	for (int64_t left; (left = end - now_ms()) > 0;) {
		if (receive(m, buf, sizeof(buf), (int)left) < 0)
			continue;
		if (out != NULL)
			snprintf(out, size, "%s", buf);
		for (char *p = strtok(buf, "\n"); p != NULL; p = strtok(NULL, "\n"))
			if (strcmp(p, line) == 0)
				return 1;
	}
	return 0;
}

/*
 * Without libsystemd the functions must send nothing: checks that the
 * manager hears nothing at all and returns 1, so that the caller ends the
 * test there (cmocka's skip() would read as a failure to the TAP driver).
 */
static int silent_without_systemd(struct manager *m)
{
#ifdef HAVE_SYSTEMD
	(void)m;
	return 0;
#else
	char buf[1024];

	assert_int_equal(sdn_ready("serving"), 0);
	assert_int_equal(sdn_watchdog_start(NULL, NULL), 0);
	assert_int_equal(sdn_stopping("stopping"), 0);
	assert_int_equal(receive(m, buf, sizeof(buf), 300), -1);
	return 1;
#endif
}

/* ------------------------------------------------------------------ tests */

/* Not started by a service manager: nothing to send, nothing fails. */
static void test_no_manager(void **state)
{
	(void)state;
	unsetenv("NOTIFY_SOCKET");
	unsetenv("WATCHDOG_USEC");
	assert_int_equal(sdn_notify("READY=1"), 0);
	assert_int_equal(sdn_status("starting %d", 1), 0);
	assert_int_equal(sdn_watchdog_start(NULL, NULL), 0);
	assert_int_equal(sdn_stopping("stopping"), 0);
	sdn_watchdog_stop();
}

static void test_ready_status_stopping(void **state)
{
	struct manager *m = *state;
	char got[1024];

	if (silent_without_systemd(m))
		return;
	assert_int_equal(sdn_ready("serving %s\non port %d", "gRPC", 9090), 0);
	assert_true(wait_for(m, "READY=1", 1000, got, sizeof(got)));
	/* One STATUS= line: a newline in the text must not start another assignment. */
	assert_string_equal(got, "READY=1\nSTATUS=serving gRPC on port 9090");
	assert_int_equal(sdn_stopping("draining"), 0);
	assert_true(wait_for(m, "STOPPING=1", 1000, got, sizeof(got)));
	assert_string_equal(got, "STOPPING=1\nSTATUS=draining");
}

static void test_watchdog_pings_until_stopping(void **state)
{
	struct manager *m = *state;

	if (silent_without_systemd(m))
		return;
	assert_int_equal(sdn_watchdog_start(NULL, NULL), 0);
	assert_int_equal(sdn_watchdog_start(NULL, NULL), TRPC_ERR_STATE);
	assert_in_range(count_during(m, "WATCHDOG=1", 400), 4, 12);
	sdn_stopping("stopping");
	assert_true(wait_for(m, "STOPPING=1", 1000, NULL, 0));
	assert_int_equal(count_during(m, "WATCHDOG=1", 200), 0);
	/* Stopped, it can start again. */
	assert_int_equal(sdn_watchdog_start(NULL, NULL), 0);
	assert_true(count_during(m, "WATCHDOG=1", 200) >= 1);
	sdn_watchdog_stop();
}

static void test_watchdog_other_pid(void **state)
{
	struct manager *m = *state;

	if (silent_without_systemd(m))
		return;
	setenv("WATCHDOG_PID", "1", 1);
	assert_int_equal(sdn_watchdog_start(NULL, NULL), 0);
	assert_int_equal(count_during(m, "WATCHDOG=1", 200), 0);
	unsetenv("WATCHDOG_PID");
}

static atomic_int healthy = 1;

static int on_health(void *ud)
{
	(void)ud;
	return atomic_load(&healthy);
}

static void test_watchdog_withheld_while_unhealthy(void **state)
{
	struct manager *m = *state;

	if (silent_without_systemd(m))
		return;
	assert_int_equal(sdn_watchdog_start(on_health, NULL), 0);
	assert_true(count_during(m, "WATCHDOG=1", 200) >= 2);
	atomic_store(&healthy, 0);
	count_during(m, "WATCHDOG=1", 100); /* one may be under way */
	assert_int_equal(count_during(m, "WATCHDOG=1", 300), 0);
	atomic_store(&healthy, 1);
	assert_true(count_during(m, "WATCHDOG=1", 300) >= 3);
	sdn_watchdog_stop();
}

/* A task that holds the server's only worker thread until released. */
static pthread_mutex_t block_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t block_cv = PTHREAD_COND_INITIALIZER;
static int blocked, released;

static void on_block(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&block_mu);
	blocked = 1;
	pthread_cond_broadcast(&block_cv);
	while (!released)
		pthread_cond_wait(&block_cv, &block_mu);
	pthread_mutex_unlock(&block_mu);
}

static void test_server_probe(void **state)
{
	struct manager *m = *state;
	struct trpc_server_config cfg;
	const char *why = NULL;
	trpc_server *srv;
	char got[1024];

	if (silent_without_systemd(m))
		return;
	trpc_server_config_init(&cfg);
	assert_int_equal(trpc_server_config_set(&cfg, "server", "listen", "127.0.0.1:0", &why), 0);
	assert_int_equal(trpc_server_config_set(&cfg, "server", "workers", "1", &why), 0);
	assert_int_equal(trpc_server_config_set(&cfg, "server", "io_threads", "1", &why), 0);
	assert_int_equal(trpc_server_config_set(&cfg, "server", "shutdown_grace", "0", &why), 0);
	srv = trpc_server_new(&cfg, &why);
	assert_non_null(srv);
	assert_int_equal(trpc_server_start(srv, &why), 0);

	assert_int_equal(sdn_server_ready(srv, "serving on port %d", trpc_server_port(srv, 0, 0)),
	                 0);
	assert_true(wait_for(m, "READY=1", 1000, got, sizeof(got)));
	assert_non_null(strstr(got, "STATUS=serving on port "));
	assert_true(count_during(m, "WATCHDOG=1", 300) >= 3);

	/* The pool is stuck: after at most two more ticks the pings stop. */
	assert_int_equal(trpc_server_submit(srv, on_block, NULL), 0);
	pthread_mutex_lock(&block_mu);
	while (!blocked)
		pthread_cond_wait(&block_cv, &block_mu);
	pthread_mutex_unlock(&block_mu);
	count_during(m, "WATCHDOG=1", 200);
	assert_int_equal(count_during(m, "WATCHDOG=1", 300), 0);

	/* Free again: the probe runs and the pings resume. */
	pthread_mutex_lock(&block_mu);
	released = 1;
	pthread_cond_broadcast(&block_cv);
	pthread_mutex_unlock(&block_mu);
	assert_true(count_during(m, "WATCHDOG=1", 300) >= 3);

	trpc_server_shutdown(srv);
	assert_true(wait_for(m, "STOPPING=1", 1000, NULL, 0));
	assert_int_equal(count_during(m, "WATCHDOG=1", 150), 0);
	trpc_server_free(srv);
	trpc_server_config_clear(&cfg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_no_manager),
	    cmocka_unit_test_setup_teardown(test_ready_status_stopping, manager_setup,
	                                    manager_teardown),
	    cmocka_unit_test_setup_teardown(test_watchdog_pings_until_stopping, manager_setup,
	                                    manager_teardown),
	    cmocka_unit_test_setup_teardown(test_watchdog_other_pid, manager_setup,
	                                    manager_teardown),
	    cmocka_unit_test_setup_teardown(test_watchdog_withheld_while_unhealthy, manager_setup,
	                                    manager_teardown),
	    cmocka_unit_test_setup_teardown(test_server_probe, manager_setup, manager_teardown),
	};

	trpc_log_set_level(TRPC_LOG_ERROR);
	return cmocka_run_group_tests_name("sdnotify", tests, NULL, NULL);
}

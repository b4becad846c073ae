/*
 * flaky-server: tasker.test.Flaky, a service that fails on purpose, for the
 * client runtime's tests (retries, retry pushback, deadlines, load
 * balancing). Attempts are counted per request key: the first fail_times
 * attempts end with fail_code (and grpc-retry-pushback-ms when asked), the
 * later ones succeed and report their attempt number and the server's name.
 *
 * Command line, read by trpc_server_config_load() like every other key:
 *   --host=H   address to bind (default 127.0.0.1)
 *   --port=N   port, 0 for an ephemeral one (default 0)
 *   --name=S   reported in every reply, so a test sees which server answered
 *   --section.key=value   any server setting
 * The bound port is logged as "listening h2c HOST:PORT".
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <tasker/rpc.h>

#include "tasker/test/flaky.pb-c.h"

#define DEFAULT_HOST "127.0.0.1"
#define DEFAULT_PORT "0"
#define DEFAULT_NAME "flaky"

/* Sleeps are taken in slices of this length so that a cancelled call or a
 * passed deadline frees the worker thread soon. */
#define PAUSE_SLICE_NS (10 * 1000 * 1000LL)

/* Attempts seen for one request key. */
struct key_count {
	struct key_count *next;
	int32_t attempts;
	char key[];
};

/* The service's state, the `ud` of the handler. Handlers run on several
 * worker threads at once; `lock` guards the key list. */
struct flaky {
	pthread_mutex_t lock;
	struct key_count *keys;
	const char *name;
};

/* Settings of this program that arrive through the configuration loader. */
struct flags {
	const char *host;
	const char *port;
	const char *name;
};

/* ============================================================ handler */

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Sleeps `ms` milliseconds on the worker thread. Returns 0 after the whole
 * pause, -1 as soon as the call is cancelled or its deadline passes. */
static int pause_ms(const trpc_call *call, int32_t ms)
{
	int64_t end = now_ns() + (int64_t)ms * 1000000, deadline = trpc_call_deadline(call);

	for (;;) {
		int64_t now = now_ns(), left = end - now;
		struct timespec ts;

		if (trpc_call_is_cancelled(call) || now >= deadline) {
			return -1;
		}
		if (left <= 0) {
			return 0;
		}
		ts.tv_sec = 0;
		ts.tv_nsec = (long)(left < PAUSE_SLICE_NS ? left : PAUSE_SLICE_NS);
		while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {
		}
	}
}

/* Counts one more attempt for `key`; returns its number (1 for the first),
 * or 0 when out of memory. */
static int32_t count_attempt(struct flaky *f, const char *key)
{
	struct key_count *k;
	int32_t n = 0;

	pthread_mutex_lock(&f->lock);
	for (k = f->keys; k != NULL && strcmp(k->key, key) != 0; k = k->next) {
	}
	if (k == NULL) {
		size_t len = strlen(key) + 1;

		k = malloc(sizeof *k + len);
		if (k != NULL) {
			memcpy(k->key, key, len);
			k->attempts = 0;
			k->next = f->keys;
			f->keys = k;
		}
	}
	if (k != NULL) {
		n = ++k->attempts;
	}
	pthread_mutex_unlock(&f->lock);
	return n;
}

/* Ends a planned failure, with the pushback hint when one was asked for. */
static void fail_attempt(trpc_call *call, const Tasker__Test__FlakyRequest *req, int32_t attempt)
{
	int code = req->fail_code != 0 ? req->fail_code : TRPC_STATUS_UNAVAILABLE;
	char text[96];

	if (req->retry_pushback_ms > 0) {
		char ms[16];
		int len = snprintf(ms, sizeof ms, "%d", (int)req->retry_pushback_ms);

		trpc_call_add_trailing_metadata(call, "grpc-retry-pushback-ms", ms, (size_t)len);
	}
	snprintf(text, sizeof text, "planned failure %d of %d", (int)attempt, (int)req->fail_times);
	trpc_call_finish(call, code, text);
}

static void on_call(trpc_call *call, const ProtobufCMessage *msg, void *ud)
{
	const Tasker__Test__FlakyRequest *req = (const Tasker__Test__FlakyRequest *)msg;
	Tasker__Test__FlakyReply reply = TASKER__TEST__FLAKY_REPLY__INIT;
	struct flaky *f = ud;
	int32_t attempt = count_attempt(f, req->key);
	int rc;

	if (attempt == 0) {
		trpc_call_finish(call, TRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	if (req->sleep_ms > 0 && pause_ms(call, req->sleep_ms) < 0) {
		trpc_call_finish(call, TRPC_STATUS_DEADLINE_EXCEEDED,
		                 "deadline passed while sleeping");
		return;
	}
	if (attempt <= req->fail_times) {
		fail_attempt(call, req, attempt);
		return;
	}
	reply.key = req->key;
	reply.attempt = attempt;
	reply.server = (char *)f->name;
	rc = trpc_call_send(call, &reply.base);
	trpc_call_finish(call, rc < 0 ? TRPC_STATUS_INTERNAL : TRPC_STATUS_OK,
	                 rc < 0 ? trpc_strerror(rc) : NULL);
}

static const struct trpc_method flaky_methods[] = {
    {
        .name = "Call",
        .kind = TRPC_UNARY,
        .request = &tasker__test__flaky_request__descriptor,
        .response = &tasker__test__flaky_reply__descriptor,
        .handler = on_call,
    },
};

static void flaky_clear(struct flaky *f)
{
	while (f->keys != NULL) {
		struct key_count *k = f->keys;

		f->keys = k->next;
		free(k);
	}
	pthread_mutex_destroy(&f->lock);
}

/* ============================================================ start-up */

/* trpc_config_extra_fn: takes --host, --port and --name ([server] keys the
 * runtime does not know). Values point into argv, which outlives main. */
static int take_flag(void *ud, const char *section, const char *key, const char *value)
{
	struct flags *fl = ud;

	if (strcmp(section, "server") != 0) {
		return TRPC_ERR_CONFIG;
	}
	if (strcmp(key, "host") == 0) {
		fl->host = value;
	} else if (strcmp(key, "port") == 0) {
		fl->port = value;
	} else if (strcmp(key, "name") == 0) {
		fl->name = value;
	} else {
		return TRPC_ERR_CONFIG;
	}
	return 0;
}

/* Turns --host and --port into the one h2c listener. */
static int set_listener(struct trpc_server_config *cfg, const struct flags *fl, const char **why)
{
	int bare_ipv6 = strchr(fl->host, ':') != NULL && fl->host[0] != '[';
	char addr[300];
	int rc = snprintf(addr, sizeof addr, "%s%s%s:%s", bare_ipv6 ? "[" : "", fl->host,
	                  bare_ipv6 ? "]" : "", fl->port);

	if (rc < 0 || rc >= (int)sizeof addr) {
		*why = "--host is too long";
		return TRPC_ERR_CONFIG;
	}
	rc = trpc_server_config_set(cfg, "server", "listen", addr, why);
	if (rc == 0) {
		rc = trpc_server_config_set(cfg, "server", "tls_listen", "", why);
	}
	return rc;
}

int main(int argc, char **argv)
{
	struct flags fl = {.host = DEFAULT_HOST, .port = DEFAULT_PORT, .name = DEFAULT_NAME};
	struct flaky f = {.lock = PTHREAD_MUTEX_INITIALIZER};
	struct trpc_service svc = {
	    .name = "tasker.test.Flaky",
	    .methods = flaky_methods,
	    .n_methods = sizeof flaky_methods / sizeof flaky_methods[0],
	    .ud = &f,
	};
	struct trpc_server_config cfg;
	const char *why = NULL;
	trpc_server *srv;
	int rc;

	trpc_server_config_init(&cfg);
	rc = trpc_server_config_load(&cfg, NULL, argc, argv, take_flag, &fl, &why);
	if (rc == 0) {
		rc = set_listener(&cfg, &fl, &why);
	}
	if (rc < 0) {
		fprintf(stderr, "%s: %s\n", argv[0], why != NULL ? why : trpc_strerror(rc));
		goto fail_config;
	}
	f.name = fl.name;
	srv = trpc_server_new(&cfg, &why);
	if (srv == NULL) {
		fprintf(stderr, "%s: %s\n", argv[0],
		        why != NULL ? why : "cannot create the server");
		rc = TRPC_ERR_INVALID;
		goto fail_config;
	}
	rc = trpc_server_add_service(srv, &svc);
	if (rc == 0) {
		rc = trpc_server_start(srv, &why);
	}
	if (rc < 0) {
		fprintf(stderr, "%s: %s\n", argv[0], why != NULL ? why : trpc_strerror(rc));
		goto fail_server;
	}
	rc = trpc_server_run_until_signal(srv);
	if (rc < 0) {
		fprintf(stderr, "%s: %s\n", argv[0], trpc_strerror(rc));
	}
fail_server:
	trpc_server_free(srv);
fail_config:
	trpc_server_config_clear(&cfg);
	flaky_clear(&f);
	return rc < 0 ? 1 : 0;
}

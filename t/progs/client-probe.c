/*
 * client-probe: a scriptable driver of the client runtime (trpc_channel,
 * trpc_unary) for the integration tests. It reads one command per line on
 * stdin and answers each with exactly one line of JSON on stdout:
 *
 *   channel TARGET LB [key=value ...]
 *       (re)creates the channel; LB is round_robin, least_loaded or random;
 *       the keys are the fields of struct trpc_channel_config (numbers,
 *       file names, retry_codes=14,4). -> {"ok":true,"endpoints":N}
 *   calls N METHOD [TIMEOUT_MS]
 *       N sequential calls -> {"ok":N,"failed":N,"codes":{...},
 *       "servers":{...},"endpoints":{...},"messages":[...],
 *       "last_attempt":N,"elapsed_ms":N,"max_ms":N}
 *   parallel N CONC METHOD [TIMEOUT_MS]
 *       the same N calls from CONC threads
 *   stats      endpoints (name, circuit, connected, calls) and metrics
 *   close      frees the channel
 *   sleep MS
 *   quit
 *
 * METHOD is "empty" (grpc.testing.TestService/EmptyCall) or
 * "flaky:KEY:FAIL_TIMES:FAIL_CODE[:PUSHBACK_MS[:SLEEP_MS]]"
 * (tasker.test.Flaky/Call). "servers" counts the server names in Flaky
 * replies, "endpoints" the growth of each endpoint's call counter during
 * the command. A command that cannot run answers {"ok":false,"error":"..."}.
 *
 * Options: --log=error|warn|info|debug sets the runtime's log level
 * (log lines go to stderr).
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <tasker/rpc.h>

#include "grpc/testing/empty.pb-c.h"
#include "tasker/test/flaky.pb-c.h"

#define MAX_ARGS       64
#define MAX_SERVERS    16
#define MAX_MESSAGES   5
#define MAX_MESSAGE    400
#define MAX_ENDPOINTS  64
#define MAX_THREADS    64
#define N_STATUS_CODES 17

#define UNUSED __attribute__((unused))

/* ============================================================ JSON out */

static void json_str(const char *s)
{
	putchar('"');
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\') {
			printf("\\%c", c);
		} else if (c < 0x20) {
			printf("\\u%04x", c);
		} else {
			putchar(c);
		}
	}
	putchar('"');
}

/* The answer to a command that could not run. */
static void reply_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void reply_error(const char *fmt, ...)
{
	char text[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof text, fmt, ap);
	va_end(ap);
	printf("{\"ok\":false,\"error\":");
	json_str(text);
	printf("}\n");
}

static void reply_ok(void)
{
	printf("{\"ok\":true}\n");
}

/* ============================================================ parsing */

static int parse_long(const char *s, long min, long max, long *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < min || v > max) {
		return -1;
	}
	*out = v;
	return 0;
}

static int parse_int(const char *s, int *out)
{
	long v;

	if (strcmp(s, "true") == 0 || strcmp(s, "false") == 0) {
		*out = s[0] == 't';
		return 0;
	}
	if (parse_long(s, -2147483647L, 2147483647L, &v) < 0) {
		return -1;
	}
	*out = (int)v;
	return 0;
}

/* "14,4" -> (1u << 14) | (1u << 4); "" or "0" alone -> no code. */
static int parse_codes(const char *s, uint32_t *out)
{
	uint32_t bits = 0;
	char buf[128], *tok, *save;

	if (strlen(s) >= sizeof buf) {
		return -1;
	}
	strcpy(buf, s);
	for (tok = strtok_r(buf, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
		long v;

		if (parse_long(tok, 0, N_STATUS_CODES - 1, &v) < 0) {
			return -1;
		}
		if (v != 0) {
			bits |= 1u << v;
		}
	}
	*out = bits;
	return 0;
}

/* Splits `line` in place at blanks. Returns the number of words. */
static int split_words(char *line, char **argv)
{
	char *save, *w;
	int n = 0;

	for (w = strtok_r(line, " \t\r\n", &save); w != NULL && n < MAX_ARGS;
	     w = strtok_r(NULL, " \t\r\n", &save)) {
		argv[n++] = w;
	}
	return n;
}

/* ============================================================ channel options */

enum opt_kind { OPT_INT = 1, OPT_DOUBLE = 2, OPT_STRING = 3, OPT_CODES = 4 };

struct chan_opt {
	const char *name;
	enum opt_kind kind;
	size_t offset;
};

#define CHAN_OPT(field, kind)                                                                      \
	{                                                                                          \
#field, kind, offsetof(struct trpc_channel_config, field)                          \
	}

static const struct chan_opt chan_opts[] = {
    CHAN_OPT(use_tls, OPT_INT),
    CHAN_OPT(ca_file, OPT_STRING),
    CHAN_OPT(server_name, OPT_STRING),
    CHAN_OPT(insecure_skip_verify, OPT_INT),
    CHAN_OPT(client_cert_file, OPT_STRING),
    CHAN_OPT(client_key_file, OPT_STRING),
    CHAN_OPT(connect_timeout_ms, OPT_INT),
    CHAN_OPT(reconnect_initial_backoff_ms, OPT_INT),
    CHAN_OPT(reconnect_max_backoff_ms, OPT_INT),
    CHAN_OPT(keepalive_time_ms, OPT_INT),
    CHAN_OPT(keepalive_timeout_ms, OPT_INT),
    CHAN_OPT(failure_threshold, OPT_INT),
    CHAN_OPT(open_timeout_ms, OPT_INT),
    CHAN_OPT(half_open_max_calls, OPT_INT),
    CHAN_OPT(success_threshold, OPT_INT),
    CHAN_OPT(max_retries, OPT_INT),
    CHAN_OPT(initial_backoff_ms, OPT_INT),
    CHAN_OPT(backoff_multiplier, OPT_DOUBLE),
    CHAN_OPT(max_backoff_ms, OPT_INT),
    CHAN_OPT(retry_codes, OPT_CODES),
    CHAN_OPT(bearer_token, OPT_STRING),
    CHAN_OPT(api_key_header, OPT_STRING),
    CHAN_OPT(api_key, OPT_STRING),
    CHAN_OPT(compression, OPT_STRING),
    CHAN_OPT(max_recv_message_size, OPT_INT),
    CHAN_OPT(user_agent, OPT_STRING),
};

static const struct {
	const char *name;
	int policy;
} lb_names[] = {
    {"round_robin", TRPC_LB_ROUND_ROBIN},
    {"least_loaded", TRPC_LB_LEAST_LOADED},
    {"random", TRPC_LB_RANDOM},
};

/* Sets "key=value" in cfg. String values point into the caller's buffer,
 * which must outlive the channel. Returns 0 or -1 with *why set. */
static int chan_opt_set(struct trpc_channel_config *cfg, char *kv, const char **why)
{
	char *eq = strchr(kv, '=');
	const struct chan_opt *o = NULL;
	void *field;
	size_t i;

	if (eq == NULL) {
		*why = "expected key=value";
		return -1;
	}
	*eq = '\0';
	for (i = 0; i < sizeof chan_opts / sizeof chan_opts[0]; i++) {
		if (strcmp(chan_opts[i].name, kv) == 0) {
			o = &chan_opts[i];
		}
	}
	if (o == NULL) {
		*why = "unknown channel option";
		return -1;
	}
	field = (char *)cfg + o->offset;
	*why = "bad value";
	switch (o->kind) {
	case OPT_INT:
		return parse_int(eq + 1, field);
	case OPT_DOUBLE: {
		char *end;

		*(double *)field = strtod(eq + 1, &end);
		return end == eq + 1 || *end != '\0' ? -1 : 0;
	}
	case OPT_STRING:
		*(const char **)field = eq + 1;
		return 0;
	case OPT_CODES:
		return parse_codes(eq + 1, field);
	}
	return -1;
}

/* ============================================================ methods */

enum method_kind { METHOD_EMPTY = 1, METHOD_FLAKY = 2 };

struct method {
	enum method_kind kind;
	const char *path;
	const ProtobufCMessageDescriptor *resp_desc;
	Grpc__Testing__Empty empty;
	Tasker__Test__FlakyRequest flaky; /* key points into the command line */
};

/* "empty" or "flaky:KEY:FAIL_TIMES:FAIL_CODE[:PUSHBACK_MS[:SLEEP_MS]]";
 * `spec` is cut up in place. */
static int method_parse(struct method *m, char *spec, const char **why)
{
	int32_t *const flaky_ints[] = {&m->flaky.fail_times, &m->flaky.fail_code,
	                               &m->flaky.retry_pushback_ms, &m->flaky.sleep_ms};
	char *save, *tok;
	size_t n = 0;

	grpc__testing__empty__init(&m->empty);
	tasker__test__flaky_request__init(&m->flaky);
	if (strcmp(spec, "empty") == 0) {
		m->kind = METHOD_EMPTY;
		m->path = "/grpc.testing.TestService/EmptyCall";
		m->resp_desc = &grpc__testing__empty__descriptor;
		return 0;
	}
	if (strncmp(spec, "flaky:", 6) != 0) {
		*why = "unknown method";
		return -1;
	}
	m->kind = METHOD_FLAKY;
	m->path = "/tasker.test.Flaky/Call";
	m->resp_desc = &tasker__test__flaky_reply__descriptor;
	m->flaky.key = strtok_r(spec + 6, ":", &save);
	if (m->flaky.key == NULL) {
		*why = "flaky: needs a key";
		return -1;
	}
	while ((tok = strtok_r(NULL, ":", &save)) != NULL) {
		int v;

		if (n >= sizeof flaky_ints / sizeof flaky_ints[0] || parse_int(tok, &v) < 0) {
			*why = "bad flaky: spec";
			return -1;
		}
		*flaky_ints[n++] = v;
	}
	if (n < 2) {
		*why = "flaky: needs KEY:FAIL_TIMES:FAIL_CODE";
		return -1;
	}
	return 0;
}

static const ProtobufCMessage *method_request(const struct method *m)
{
	return m->kind == METHOD_EMPTY ? &m->empty.base : &m->flaky.base;
}

/* ============================================================ tallies */

/* What a batch of calls came to. Shared by the threads of `parallel`. */
struct tally {
	pthread_mutex_t lock;
	long next, total; /* calls handed out so far, calls to make */
	long ok, failed;
	long codes[N_STATUS_CODES];
	long local_errors; /* trpc_unary refused the call (negative return) */
	struct {
		char name[64];
		long n;
	} servers[MAX_SERVERS];
	size_t n_servers;
	char *messages[MAX_MESSAGES];
	size_t n_messages;
	int last_attempt;
	int64_t max_us;
};

static void tally_init(struct tally *t, long total)
{
	memset(t, 0, sizeof *t);
	pthread_mutex_init(&t->lock, NULL);
	t->total = total;
}

static void tally_clear(struct tally *t)
{
	size_t i;

	for (i = 0; i < t->n_messages; i++) {
		free(t->messages[i]);
	}
	pthread_mutex_destroy(&t->lock);
}

/* Takes the next call of the batch; 0 when all are handed out. */
static int tally_take(struct tally *t)
{
	int more;

	pthread_mutex_lock(&t->lock);
	more = t->next < t->total;
	if (more) {
		t->next++;
	}
	pthread_mutex_unlock(&t->lock);
	return more;
}

/* Under t->lock. Keeps the first few distinct messages. */
static void tally_message(struct tally *t, const char *msg)
{
	size_t i;

	for (i = 0; i < t->n_messages; i++) {
		if (strcmp(t->messages[i], msg) == 0) {
			return;
		}
	}
	if (t->n_messages < MAX_MESSAGES) {
		t->messages[t->n_messages] = strndup(msg, MAX_MESSAGE);
		if (t->messages[t->n_messages] != NULL) {
			t->n_messages++;
		}
	}
}

/* Under t->lock. */
static void tally_server(struct tally *t, const char *name)
{
	size_t i;

	for (i = 0; i < t->n_servers; i++) {
		if (strcmp(t->servers[i].name, name) == 0) {
			t->servers[i].n++;
			return;
		}
	}
	if (t->n_servers < MAX_SERVERS) {
		snprintf(t->servers[t->n_servers].name, sizeof t->servers[0].name, "%s", name);
		t->servers[t->n_servers++].n = 1;
	}
}

/* Records one finished call: rc is what trpc_unary returned. */
static void tally_add(struct tally *t, const struct method *m, int rc,
                      const struct trpc_call_status *st, const ProtobufCMessage *resp, int64_t us)
{
	char text[MAX_MESSAGE + 64];

	pthread_mutex_lock(&t->lock);
	if (us > t->max_us) {
		t->max_us = us;
	}
	if (rc < 0) {
		t->failed++;
		t->local_errors++;
		snprintf(text, sizeof text, "trpc_unary: %s", trpc_strerror(rc));
		tally_message(t, text);
	} else if (rc != st->code || rc >= N_STATUS_CODES) {
		t->failed++;
		t->local_errors++;
		snprintf(text, sizeof text, "trpc_unary returned %d with status %d", rc, st->code);
		tally_message(t, text);
	} else if (rc == TRPC_STATUS_OK && resp == NULL) {
		t->failed++;
		t->codes[rc]++;
		tally_message(t, "OK without a response");
	} else if (rc == TRPC_STATUS_OK) {
		t->ok++;
		t->codes[rc]++;
		if (m->kind == METHOD_FLAKY) {
			const Tasker__Test__FlakyReply *r = (const Tasker__Test__FlakyReply *)resp;

			tally_server(t, r->server);
			t->last_attempt = r->attempt;
		}
	} else {
		t->failed++;
		t->codes[rc]++;
		snprintf(text, sizeof text, "%s: %s", trpc_status_name(rc),
		         st->message != NULL ? st->message : "(no message)");
		tally_message(t, text);
	}
	pthread_mutex_unlock(&t->lock);
}

static int64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void call_once(trpc_channel *ch, const struct method *m, int64_t timeout_ms, struct tally *t)
{
	struct trpc_call_options opts = {.timeout_ms = timeout_ms};
	struct trpc_call_status st;
	ProtobufCMessage *resp = NULL;
	int64_t start = now_us();
	int rc;

	memset(&st, 0, sizeof st);
	rc = trpc_unary(ch, m->path, method_request(m), m->resp_desc, &resp, &opts, &st);
	tally_add(t, m, rc, &st, resp, now_us() - start);
	if (resp != NULL) {
		protobuf_c_message_free_unpacked(resp, NULL);
	}
	trpc_call_status_clear(&st);
}

/* ============================================================ probe */

struct probe {
	trpc_channel *ch;
	char *options; /* the "channel" line: option strings point into it */
	char *line;    /* the line being run (getline's buffer) */
};

/* One batch: what every thread of `parallel` shares. */
struct batch {
	struct probe *p;
	const struct method *m;
	int64_t timeout_ms;
	struct tally *t;
};

static void *batch_worker(void *arg)
{
	struct batch *b = arg;

	while (tally_take(b->t)) {
		call_once(b->p->ch, b->m, b->timeout_ms, b->t);
	}
	return NULL;
}

static void print_batch(struct probe *p, const struct tally *t, const uint64_t *before,
                        size_t n_endpoints, int64_t elapsed_us)
{
	const char *sep = "";
	size_t i;

	printf("{\"ok\":%ld,\"failed\":%ld,\"codes\":{", t->ok, t->failed);
	for (i = 0; i < N_STATUS_CODES; i++) {
		if (t->codes[i] != 0) {
			printf("%s\"%s\":%ld", sep, trpc_status_name((int)i), t->codes[i]);
			sep = ",";
		}
	}
	if (t->local_errors != 0) {
		printf("%s\"LOCAL_ERROR\":%ld", sep, t->local_errors);
	}
	printf("},\"servers\":{");
	for (i = 0; i < t->n_servers; i++) {
		printf("%s", i ? "," : "");
		json_str(t->servers[i].name);
		printf(":%ld", t->servers[i].n);
	}
	printf("},\"endpoints\":{");
	for (i = 0; i < n_endpoints; i++) {
		const char *name = trpc_channel_endpoint_name(p->ch, i);

		printf("%s", i ? "," : "");
		json_str(name != NULL ? name : "?");
		printf(":%" PRIu64, trpc_channel_endpoint_calls(p->ch, i) - before[i]);
	}
	printf("},\"messages\":[");
	for (i = 0; i < t->n_messages; i++) {
		printf("%s", i ? "," : "");
		json_str(t->messages[i]);
	}
	printf("],\"last_attempt\":%d,\"elapsed_ms\":%" PRId64 ",\"max_ms\":%" PRId64 "}\n",
	       t->last_attempt, elapsed_us / 1000, t->max_us / 1000);
}

/* Makes `n` calls of `spec` from `threads` threads (1: on this thread). */
static void run_batch(struct probe *p, long n, long threads, char *spec, const char *timeout)
{
	pthread_t tids[MAX_THREADS];
	uint64_t before[MAX_ENDPOINTS];
	struct method m;
	struct tally t;
	struct batch b = {.p = p, .m = &m, .t = &t};
	size_t n_endpoints, i;
	const char *why;
	long started = 0, tmo = 0;
	int64_t start;

	if (p->ch == NULL) {
		reply_error("no channel");
		return;
	}
	if (method_parse(&m, spec, &why) < 0) {
		reply_error("%s", why);
		return;
	}
	if (timeout != NULL && parse_long(timeout, 0, 3600000, &tmo) < 0) {
		reply_error("bad timeout");
		return;
	}
	b.timeout_ms = tmo;
	n_endpoints = trpc_channel_endpoint_count(p->ch);
	if (n_endpoints > MAX_ENDPOINTS) {
		n_endpoints = MAX_ENDPOINTS;
	}
	for (i = 0; i < n_endpoints; i++) {
		before[i] = trpc_channel_endpoint_calls(p->ch, i);
	}
	tally_init(&t, n);
	start = now_us();
	if (threads <= 1) {
		batch_worker(&b);
	} else {
		for (; started < threads; started++) {
			if (pthread_create(&tids[started], NULL, batch_worker, &b) != 0) {
				break;
			}
		}
		if (started == 0) {
			batch_worker(&b);
		}
		for (i = 0; i < (size_t)started; i++) {
			pthread_join(tids[i], NULL);
		}
	}
	print_batch(p, &t, before, n_endpoints, now_us() - start);
	tally_clear(&t);
}

static void probe_close(struct probe *p)
{
	if (p->ch != NULL) {
		trpc_channel_free(p->ch);
		p->ch = NULL;
	}
	free(p->options);
	p->options = NULL;
}

/* ============================================================ commands */

static void cmd_channel(struct probe *p, int argc, char **argv)
{
	struct trpc_channel_config cfg;
	const char *why = NULL;
	size_t i;
	int j;

	probe_close(p);
	/* The option strings point into the command line: the probe keeps the
	 * line for as long as the channel might look at them. */
	p->options = p->line;
	p->line = NULL;
	trpc_channel_config_init(&cfg);
	cfg.target = argv[1];
	cfg.lb_policy = 0;
	for (i = 0; i < sizeof lb_names / sizeof lb_names[0]; i++) {
		if (strcmp(lb_names[i].name, argv[2]) == 0) {
			cfg.lb_policy = lb_names[i].policy;
		}
	}
	if (cfg.lb_policy == 0) {
		reply_error("unknown lb policy '%s'", argv[2]);
		return;
	}
	for (j = 3; j < argc; j++) {
		if (chan_opt_set(&cfg, argv[j], &why) < 0) {
			reply_error("%s: %s", argv[j], why);
			return;
		}
	}
	p->ch = trpc_channel_new(&cfg, &why);
	if (p->ch == NULL) {
		reply_error("%s", why != NULL ? why : "trpc_channel_new failed");
		return;
	}
	printf("{\"ok\":true,\"endpoints\":%zu}\n", trpc_channel_endpoint_count(p->ch));
}

static void cmd_calls(struct probe *p, int argc, char **argv)
{
	long n;

	if (parse_long(argv[1], 1, 1000000, &n) < 0) {
		reply_error("bad count");
		return;
	}
	run_batch(p, n, 1, argv[2], argc > 3 ? argv[3] : NULL);
}

static void cmd_parallel(struct probe *p, int argc, char **argv)
{
	long n, conc;

	if (parse_long(argv[1], 1, 1000000, &n) < 0 ||
	    parse_long(argv[2], 1, MAX_THREADS, &conc) < 0) {
		reply_error("bad count or concurrency (at most %d threads)", MAX_THREADS);
		return;
	}
	run_batch(p, n, conc, argv[3], argc > 4 ? argv[4] : NULL);
}

static const char *circuit_name(int state)
{
	switch (state) {
	case TRPC_CIRCUIT_CLOSED:
		return "closed";
	case TRPC_CIRCUIT_OPEN:
		return "open";
	case TRPC_CIRCUIT_HALF_OPEN:
		return "half_open";
	}
	return "unknown";
}

#define METRIC(field)                                                                              \
	{                                                                                          \
#field, offsetof(struct trpc_channel_metrics, field)                               \
	}

static const struct {
	const char *name;
	size_t offset;
} metric_fields[] = {
    METRIC(calls_started),  METRIC(calls_succeeded),     METRIC(calls_failed),
    METRIC(latency_us_sum), METRIC(latency_count),       METRIC(retries),
    METRIC(circuit_opened), METRIC(circuit_half_opened), METRIC(circuit_closed),
    METRIC(connects),       METRIC(connect_failures),
};

static void cmd_stats(struct probe *p, UNUSED int argc, UNUSED char **argv)
{
	struct trpc_channel_metrics mx;
	size_t i, n;

	if (p->ch == NULL) {
		reply_error("no channel");
		return;
	}
	n = trpc_channel_endpoint_count(p->ch);
	printf("{\"ok\":true,\"endpoints\":[");
	for (i = 0; i < n; i++) {
		const char *name = trpc_channel_endpoint_name(p->ch, i);

		printf("%s{\"name\":", i ? "," : "");
		json_str(name != NULL ? name : "?");
		printf(",\"circuit\":\"%s\",\"connected\":%s,\"calls\":%" PRIu64 "}",
		       circuit_name(trpc_channel_endpoint_circuit(p->ch, i)),
		       trpc_channel_endpoint_connected(p->ch, i) ? "true" : "false",
		       trpc_channel_endpoint_calls(p->ch, i));
	}
	memset(&mx, 0, sizeof mx);
	trpc_channel_metrics(p->ch, &mx);
	printf("],\"metrics\":{");
	for (i = 0; i < sizeof metric_fields / sizeof metric_fields[0]; i++) {
		const uint64_t *v = (const uint64_t *)((const char *)&mx + metric_fields[i].offset);

		printf("%s\"%s\":%" PRIu64, i ? "," : "", metric_fields[i].name, *v);
	}
	printf("}}\n");
}

static void cmd_close(struct probe *p, UNUSED int argc, UNUSED char **argv)
{
	probe_close(p);
	reply_ok();
}

static void cmd_sleep(UNUSED struct probe *p, UNUSED int argc, char **argv)
{
	struct timespec ts;
	long ms;

	if (parse_long(argv[1], 0, 600000, &ms) < 0) {
		reply_error("bad duration");
		return;
	}
	ts.tv_sec = ms / 1000;
	ts.tv_nsec = (ms % 1000) * 1000000;
	while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {
	}
	reply_ok();
}

static const struct command {
	const char *name;
	int min_args; /* words, the command's name included */
	void (*run)(struct probe *p, int argc, char **argv);
} commands[] = {
    {"channel", 3, cmd_channel}, {"calls", 3, cmd_calls}, {"parallel", 4, cmd_parallel},
    {"stats", 1, cmd_stats},     {"close", 1, cmd_close}, {"sleep", 2, cmd_sleep},
};

/* Runs p->line; returns 1 after "quit". */
static int run_line(struct probe *p)
{
	char *argv[MAX_ARGS];
	int argc = split_words(p->line, argv);
	size_t i;

	if (argc == 0) {
		reply_error("empty command");
		return 0;
	}
	if (strcmp(argv[0], "quit") == 0) {
		reply_ok();
		return 1;
	}
	for (i = 0; i < sizeof commands / sizeof commands[0]; i++) {
		if (strcmp(commands[i].name, argv[0]) == 0) {
			if (argc < commands[i].min_args) {
				reply_error("%s: too few arguments", argv[0]);
			} else {
				commands[i].run(p, argc, argv);
			}
			return 0;
		}
	}
	reply_error("unknown command '%s'", argv[0]);
	return 0;
}

static int set_log_level(const char *arg)
{
	static const char *const levels[] = {"error", "warn", "info", "debug"};
	size_t i;

	if (strncmp(arg, "--log=", 6) != 0) {
		return -1;
	}
	for (i = 0; i < sizeof levels / sizeof levels[0]; i++) {
		if (strcmp(arg + 6, levels[i]) == 0) {
			trpc_log_set_level(TRPC_LOG_ERROR + (int)i);
			return 0;
		}
	}
	return -1;
}

int main(int argc, char **argv)
{
	struct probe p = {0};
	size_t cap = 0;
	int i, done = 0;

	for (i = 1; i < argc; i++) {
		if (set_log_level(argv[i]) < 0) {
			fprintf(stderr, "usage: %s [--log=error|warn|info|debug] < commands\n",
			        argv[0]);
			return 2;
		}
	}
	while (!done && getline(&p.line, &cap, stdin) != -1) {
		done = run_line(&p);
		fflush(stdout);
		if (p.line == NULL) { /* the channel took the buffer */
			cap = 0;
		}
	}
	probe_close(&p);
	free(p.line);
	return 0;
}

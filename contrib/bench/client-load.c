/*
 * client-load: closed-loop unary load through the tasker client runtime
 * (helloworld.Greeter/SayHello), the client-side counterpart of h2load in
 * run.sh.
 *
 * usage: client-load --target HOST:PORT [--connections N] [--concurrency M]
 *                    [--duration S] [--warmup S]
 *
 * HOST must resolve to one address (say 127.0.0.1, not a name with an IPv4
 * and an IPv6 address).
 *
 * N channels, each with one endpoint and so one HTTP/2 connection (and one
 * I/O thread), keep M calls in flight each: every call that ends starts the
 * next one from its on_close callback, on the channel's thread. Calls run
 * for WARMUP + DURATION seconds; only calls that end inside the DURATION
 * window count for QPS and latency. Afterwards the calls still in flight get
 * at most 5 s to finish; the rest are cancelled and count as failures.
 *
 * A call succeeds when its status is OK and it got exactly one reply
 * "Hello world". Failures are counted in every phase; the first one is
 * printed.
 *
 * Output: one human-readable line on stderr, then one line on stdout:
 *   qps=Q p50_us=P p99_us=P ok=N failed=N mean_us=M max_us=M
 * Latencies come from a log-linear histogram (exact below 128 us, then 64
 * buckets per power of two: within 1.6 %); percentiles use the nearest
 * rank and report the middle of the bucket.
 *
 * Exit status: 0 when no call failed, 1 otherwise (also after SIGINT or
 * SIGTERM, which end the run early), 2 on bad usage or set-up failure.
 */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "helloworld/helloworld.pb-c.h"
#include "tasker/rpc.h"

#define METHOD         "/helloworld.Greeter/SayHello"
#define REQUEST_NAME   "world"
#define EXPECTED_REPLY "Hello world"
#define DRAIN_S        5

/* ------------------------------------------------------------------ histogram */

/* Log-linear buckets over microseconds: every value below 2^(SUB_BITS+1)
 * has its own bucket, above that every power of two is split into
 * 2^SUB_BITS buckets. Covers up to 2^MAX_EXP us (over 12 days). */
#define SUB_BITS  6
#define SUB_COUNT (1 << SUB_BITS)
#define LINEAR    (2 * SUB_COUNT)
#define MAX_EXP   40
#define N_BUCKETS (LINEAR + (MAX_EXP - SUB_BITS - 1) * SUB_COUNT)

struct histogram {
	uint64_t count[N_BUCKETS];
	uint64_t n, sum_us, max_us;
};

static int exp_of(uint64_t v)
{
	return 63 - __builtin_clzll(v);
}

static size_t bucket_of(uint64_t us)
{
	if (us < LINEAR)
		return (size_t)us;
	int e = exp_of(us);
	if (e >= MAX_EXP)
		return N_BUCKETS - 1;
	size_t sub = (size_t)(us >> (e - SUB_BITS)) & (SUB_COUNT - 1);
	return LINEAR + (size_t)(e - SUB_BITS - 1) * SUB_COUNT + sub;
}

/* The middle of bucket b, in microseconds. */
static uint64_t bucket_mid(size_t b)
{
	if (b < LINEAR)
		return b;
	size_t k = b - LINEAR;
	int e = (int)(k / SUB_COUNT) + SUB_BITS + 1;
	uint64_t width = 1ull << (e - SUB_BITS);
	uint64_t low = (1ull << e) + (uint64_t)(k % SUB_COUNT) * width;
	return low + width / 2;
}

static void histogram_add(struct histogram *h, uint64_t us)
{
	h->count[bucket_of(us)]++;
	h->n++;
	h->sum_us += us;
	if (us > h->max_us)
		h->max_us = us;
}

static void histogram_merge(struct histogram *into, const struct histogram *h)
{
	for (size_t b = 0; b < N_BUCKETS; b++)
		into->count[b] += h->count[b];
	into->n += h->n;
	into->sum_us += h->sum_us;
	if (h->max_us > into->max_us)
		into->max_us = h->max_us;
}

/* Nearest rank: the smallest value with at least q * n values at or below. */
static uint64_t histogram_quantile(const struct histogram *h, double q)
{
	if (h->n == 0)
		return 0;
	uint64_t rank = (uint64_t)(q * (double)h->n + 0.999999);
	if (rank == 0)
		rank = 1;
	uint64_t seen = 0;
	for (size_t b = 0; b < N_BUCKETS; b++) {
		seen += h->count[b];
		if (seen >= rank)
			return bucket_mid(b);
	}
	return h->max_us;
}

/* ------------------------------------------------------------------ load state */

struct options {
	const char *target;
	long connections;
	long concurrency;
	double duration_s;
	double warmup_s;
};

/* Shared by every channel thread and main; written before the calls start
 * except where atomic. */
struct run {
	int64_t measure_from; /* monotonic ns */
	int64_t measure_until;
	atomic_int stop;      /* no new calls (end of run, or a signal) */
	atomic_long inflight; /* calls started and not yet closed */
	atomic_int have_error;
	pthread_mutex_t error_mu; /* guards first_error */
	char first_error[512];
};

/* One channel's counters; touched only by that channel's thread until the
 * channel is freed (trpc_channel_free joins the thread). */
struct worker {
	struct run *run;
	trpc_channel *ch;
	struct slot *slots;
	struct histogram hist; /* measured calls */
	uint64_t ok;           /* measured successes */
	uint64_t failed;       /* failures in any phase */
	uint64_t unmeasured;   /* successes during warm-up or drain */
};

/* One of the M in-flight positions of a channel. */
struct slot {
	struct worker *w;
	int64_t started;
	int replies;
	int good_reply;
};

static volatile sig_atomic_t got_signal;

static void on_signal(int sig)
{
	got_signal = sig;
}

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void note_error(struct run *run, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Keeps the first failure's description; the others are only counted. */
static void note_error(struct run *run, const char *fmt, ...)
{
	if (atomic_exchange(&run->have_error, 1))
		return;
	va_list ap;
	va_start(ap, fmt);
	pthread_mutex_lock(&run->error_mu);
	vsnprintf(run->first_error, sizeof run->first_error, fmt, ap);
	pthread_mutex_unlock(&run->error_mu);
	va_end(ap);
}

/* ------------------------------------------------------------------ calls */

static int start_call(struct slot *s, int64_t now, const char **why);

static void on_message(trpc_ccall *call, const ProtobufCMessage *msg, void *ud)
{
	struct slot *s = ud;
	const Helloworld__HelloReply *reply = (const Helloworld__HelloReply *)msg;
	(void)call;
	s->replies++;
	s->good_reply = reply->message != NULL && strcmp(reply->message, EXPECTED_REPLY) == 0;
}

/* Runs on the channel's thread: account for the call, then start the next
 * one unless the run is over. */
static void on_close(trpc_ccall *call, const struct trpc_call_status *st, void *ud)
{
	struct slot *s = ud;
	struct worker *w = s->w;
	struct run *run = w->run;
	int64_t now = now_ns();
	trpc_ccall_unref(call); /* our reference from trpc_ccall_start */
	if (st->code != TRPC_STATUS_OK) {
		w->failed++;
		note_error(run, "status %s: %s", trpc_status_name(st->code),
		           st->message ? st->message : "(no message)");
	} else if (s->replies != 1 || !s->good_reply) {
		w->failed++;
		note_error(run, "status OK but %d replies, %s", s->replies,
		           s->good_reply ? "the last one right" : "not \"" EXPECTED_REPLY "\"");
	} else if (now >= run->measure_from && now < run->measure_until) {
		w->ok++;
		histogram_add(&w->hist, (uint64_t)(now - s->started) / 1000);
	} else {
		w->unmeasured++;
	}
	if (now >= run->measure_until || atomic_load_explicit(&run->stop, memory_order_relaxed)) {
		atomic_fetch_sub(&run->inflight, 1);
		return;
	}
	const char *why = NULL;
	if (start_call(s, now, &why) != 0) {
		w->failed++;
		note_error(run, "cannot start a call: %s", why ? why : "unknown error");
		atomic_fetch_sub(&run->inflight, 1);
	}
}

static const struct trpc_ccall_ops call_ops = {
    .on_message = on_message,
    .on_close = on_close,
};

/* Starts the slot's next call, timed from `now`. 0, or -1 with *why set.
 * The caller counts a failure: the slot's worker belongs to its channel
 * thread. */
static int start_call(struct slot *s, int64_t now, const char **why)
{
	Helloworld__HelloRequest req = HELLOWORLD__HELLO_REQUEST__INIT;
	req.name = (char *)REQUEST_NAME;
	s->started = now;
	s->replies = 0;
	s->good_reply = 0;
	trpc_ccall *call =
	    trpc_ccall_start(s->w->ch, METHOD, &helloworld__hello_reply__descriptor, &req.base,
	                     TRPC_START_HALF_CLOSE, NULL, &call_ops, s, why);
	/* The reference is released in on_close, which may already have run:
	 * `call` must not be used here. */
	return call != NULL ? 0 : -1;
}

/* ------------------------------------------------------------------ options */

enum opt_kind { OPT_STRING = 1, OPT_COUNT = 2, OPT_SECONDS = 3 };

static const struct opt_row {
	const char *name;
	int kind;
	size_t offset;
} opt_table[] = {
    {"--target", OPT_STRING, offsetof(struct options, target)},
    {"--connections", OPT_COUNT, offsetof(struct options, connections)},
    {"--concurrency", OPT_COUNT, offsetof(struct options, concurrency)},
    {"--duration", OPT_SECONDS, offsetof(struct options, duration_s)},
    {"--warmup", OPT_SECONDS, offsetof(struct options, warmup_s)},
};

static void usage(const char *argv0)
{
	fprintf(stderr,
	        "usage: %s --target HOST:PORT [--connections N] [--concurrency M]\n"
	        "       [--duration S] [--warmup S]\n"
	        "  defaults: 1 connection, 1 call in flight per connection, 10 s, no warm-up\n",
	        argv0);
}

static int set_option(struct options *o, const struct opt_row *row, const char *v)
{
	char *end = NULL;
	void *field = (char *)o + row->offset;
	errno = 0;
	switch (row->kind) {
	case OPT_STRING:
		*(const char **)field = v;
		return 0;
	case OPT_COUNT: {
		long n = strtol(v, &end, 10);
		if (errno != 0 || end == v || *end != '\0' || n < 1 || n > 100000)
			return -1;
		*(long *)field = n;
		return 0;
	}
	case OPT_SECONDS: {
		double d = strtod(v, &end);
		if (errno != 0 || end == v || *end != '\0' || !(d >= 0) || d > 86400)
			return -1;
		*(double *)field = d;
		return 0;
	}
	default:
		return -1;
	}
}

/* 0, 1 for --help, -1 on bad usage (reported). */
static int parse_options(int argc, char **argv, struct options *o)
{
	*o = (struct options){.connections = 1, .concurrency = 1, .duration_s = 10};
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0)
			return 1;
		const struct opt_row *row = NULL;
		for (size_t k = 0; k < sizeof opt_table / sizeof opt_table[0]; k++)
			if (strcmp(argv[i], opt_table[k].name) == 0)
				row = &opt_table[k];
		if (row == NULL || i + 1 >= argc) {
			fprintf(stderr, "client-load: %s: %s\n", argv[i],
			        row ? "needs a value" : "unknown option");
			return -1;
		}
		if (set_option(o, row, argv[++i]) != 0) {
			fprintf(stderr, "client-load: %s: bad value \"%s\"\n", row->name, argv[i]);
			return -1;
		}
	}
	if (o->target == NULL) {
		fprintf(stderr, "client-load: --target is required\n");
		return -1;
	}
	if (o->duration_s <= 0) {
		fprintf(stderr, "client-load: --duration must be positive\n");
		return -1;
	}
	return 0;
}

/* ------------------------------------------------------------------ run */

/* Sleeps until `when` (monotonic ns) or a signal; 0, or -1 on a signal. */
static int sleep_until(int64_t when)
{
	for (;;) {
		if (got_signal)
			return -1;
		int64_t left = when - now_ns();
		if (left <= 0)
			return 0;
		if (left > 50000000)
			left = 50000000; /* look at got_signal now and then */
		struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)left};
		nanosleep(&ts, NULL);
	}
}

static int open_channels(const struct options *o, struct run *run, struct worker *ws)
{
	struct trpc_channel_config cfg;
	trpc_channel_config_init(&cfg);
	cfg.target = o->target;
	cfg.connect_timeout_ms = 5000;
	/* Measure the server, not the client's resilience: no retries, and
	 * a circuit breaker that never opens. */
	cfg.max_retries = 0;
	cfg.failure_threshold = INT_MAX;
	for (long i = 0; i < o->connections; i++) {
		struct worker *w = &ws[i];
		w->run = run;
		w->slots = calloc((size_t)o->concurrency, sizeof *w->slots);
		if (w->slots == NULL) {
			fprintf(stderr, "client-load: out of memory\n");
			return -1;
		}
		const char *why = NULL;
		w->ch = trpc_channel_new(&cfg, &why);
		if (w->ch == NULL) {
			fprintf(stderr, "client-load: channel to %s: %s\n", o->target,
			        why ? why : "unknown error");
			return -1;
		}
		/* A channel balances over its endpoints, each with a connection
		 * of its own: one endpoint keeps it at one connection. */
		size_t neps = trpc_channel_endpoint_count(w->ch);
		if (neps != 1) {
			fprintf(stderr,
			        "client-load: --target %s names %zu endpoints; give one address "
			        "(one connection per channel)\n",
			        o->target, neps);
			return -1;
		}
		for (long k = 0; k < o->concurrency; k++)
			w->slots[k].w = w;
	}
	return 0;
}

/* Starts M calls on every channel. A channel's thread may already be
 * running the first calls' callbacks, so failures here are counted apart
 * from the workers. */
static long start_all(const struct options *o, struct run *run, struct worker *ws)
{
	long failed = 0;
	for (long i = 0; i < o->connections; i++) {
		for (long k = 0; k < o->concurrency; k++) {
			const char *why = NULL;
			atomic_fetch_add(&run->inflight, 1);
			if (start_call(&ws[i].slots[k], now_ns(), &why) != 0) {
				atomic_fetch_sub(&run->inflight, 1);
				note_error(run, "cannot start a call: %s",
				           why ? why : "unknown error");
				failed++;
			}
		}
	}
	return failed;
}

/* Waits up to DRAIN_S for the calls in flight; returns how many are left. */
static long drain(struct run *run)
{
	atomic_store(&run->stop, 1);
	int64_t until = now_ns() + (int64_t)DRAIN_S * 1000000000;
	long left;
	while ((left = atomic_load(&run->inflight)) > 0 && now_ns() < until) {
		struct timespec ts = {.tv_sec = 0, .tv_nsec = 5000000};
		nanosleep(&ts, NULL);
	}
	if (left > 0)
		note_error(run, "%ld calls still in flight %d s after the end (cancelled)", left,
		           DRAIN_S);
	return left;
}

static void report(const struct options *o, const struct worker *ws, long start_failed,
                   long abandoned, double measured_s, const struct run *run)
{
	static struct histogram all; /* large: not on the stack */
	uint64_t ok = 0, failed = (uint64_t)start_failed, unmeasured = 0;
	memset(&all, 0, sizeof all);
	for (long i = 0; i < o->connections; i++) {
		histogram_merge(&all, &ws[i].hist);
		ok += ws[i].ok;
		failed += ws[i].failed;
		unmeasured += ws[i].unmeasured;
	}
	double qps = measured_s > 0 ? (double)ok / measured_s : 0;
	uint64_t p50 = histogram_quantile(&all, 0.50), p99 = histogram_quantile(&all, 0.99);
	uint64_t mean = all.n ? all.sum_us / all.n : 0;
	fprintf(stderr,
	        "client-load: %s, %ld connections x %ld calls, %.1f s measured: %.0f calls/s, "
	        "latency p50 %llu us, p99 %llu us, mean %llu us, max %llu us; "
	        "%llu ok, %llu failed (%llu more ok outside the window, %ld cancelled after the "
	        "%d s drain)\n",
	        o->target, o->connections, o->concurrency, measured_s, qps, (unsigned long long)p50,
	        (unsigned long long)p99, (unsigned long long)mean, (unsigned long long)all.max_us,
	        (unsigned long long)ok, (unsigned long long)failed, (unsigned long long)unmeasured,
	        abandoned, DRAIN_S);
	if (failed > 0 && atomic_load(&run->have_error))
		fprintf(stderr, "client-load: first error: %s\n", run->first_error);
	printf("qps=%.0f p50_us=%llu p99_us=%llu ok=%llu failed=%llu mean_us=%llu max_us=%llu\n",
	       qps, (unsigned long long)p50, (unsigned long long)p99, (unsigned long long)ok,
	       (unsigned long long)failed, (unsigned long long)mean,
	       (unsigned long long)all.max_us);
	fflush(stdout);
}

int main(int argc, char **argv)
{
	struct options o;
	int parsed = parse_options(argc, argv, &o);
	if (parsed != 0) {
		usage(argv[0]);
		return parsed > 0 ? 0 : 2;
	}
	struct sigaction sa = {.sa_handler = on_signal};
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);

	/* Connection closes at the end are expected; keep stderr for results. */
	trpc_log_set_level(TRPC_LOG_WARN);
	struct run run = {0};
	pthread_mutex_init(&run.error_mu, NULL);
	int status = 2;
	struct worker *ws = calloc((size_t)o.connections, sizeof *ws);
	if (ws == NULL) {
		fprintf(stderr, "client-load: out of memory\n");
		goto fail_workers;
	}
	if (open_channels(&o, &run, ws) != 0)
		goto fail_channels;

	int64_t t0 = now_ns();
	run.measure_from = t0 + (int64_t)(o.warmup_s * 1e9);
	run.measure_until = run.measure_from + (int64_t)(o.duration_s * 1e9);
	long start_failed = start_all(&o, &run, ws);
	int interrupted = sleep_until(run.measure_until) != 0;
	int64_t t_end = now_ns();
	if (t_end > run.measure_until)
		t_end = run.measure_until;
	double measured_s = t_end > run.measure_from ? (double)(t_end - run.measure_from) / 1e9 : 0;
	long abandoned = drain(&run);

	/* Frees the channels: joins their threads (which makes the workers'
	 * counters safe to read) and cancels what is still in flight; those
	 * on_close callbacks count the cancelled calls as failures. */
	for (long i = 0; i < o.connections; i++) {
		trpc_channel_free(ws[i].ch);
		ws[i].ch = NULL;
	}
	report(&o, ws, start_failed, abandoned, measured_s, &run);
	int any_failed = start_failed > 0 || abandoned > 0;
	for (long i = 0; i < o.connections; i++)
		any_failed |= ws[i].failed > 0;
	if (interrupted)
		fprintf(stderr, "client-load: interrupted by signal %d\n", (int)got_signal);
	status = any_failed || interrupted ? 1 : 0;

fail_channels:
	for (long i = 0; i < o.connections; i++) {
		trpc_channel_free(ws[i].ch);
		free(ws[i].slots);
	}
	free(ws);
fail_workers:
	pthread_mutex_destroy(&run.error_mu);
	return status;
}

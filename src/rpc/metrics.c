/*
 * metrics: per-thread slabs, the exposition writer (trpc_metrics_buf) and
 * the families of the runtime and of the process, in the Prometheus text
 * format 0.0.4.
 *
 * Series of registered methods exist from the start, zero until used (as
 * go-grpc-prometheus's InitializeMetrics does): a rate() over a method that
 * has never failed still finds its series. Calls to a method the server
 * does not have are counted under grpc_service="unknown",
 * grpc_method="unknown" (grpc_type="unary"), never under the path the
 * client sent, so that nobody can create series by probing paths; those
 * series appear once such a call happened.
 */
#include "config.h"

#include <dirent.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "escape.h"
#include "loop.h"
#include "metrics.h"
#include "server.h"

/* Bucket upper bounds: in ns for counting, as text for the `le` label. */
static const int64_t bucket_ns[METRICS_N_BUCKETS] = {
    5000000,   10000000,   25000000,   50000000,   100000000,   250000000,
    500000000, 1000000000, 2500000000, 5000000000, 10000000000,
};
static const char *const bucket_le[METRICS_N_BUCKETS] = {
    "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10",
};

/* Status names as grpc-go's codes.Code.String() spells them. */
static const char *const code_names[METRICS_N_CODES] = {
    "OK",       "Canceled",        "Unknown",          "InvalidArgument",   "DeadlineExceeded",
    "NotFound", "AlreadyExists",   "PermissionDenied", "ResourceExhausted", "FailedPrecondition",
    "Aborted",  "OutOfRange",      "Unimplemented",    "Internal",          "Unavailable",
    "DataLoss", "Unauthenticated",
};

static const char *const goaway_names[N_GOAWAY] = {
    [GOAWAY_TOO_MANY_PINGS] = "too_many_pings",
    [GOAWAY_IDLE] = "idle",
    [GOAWAY_MAX_AGE] = "max_age",
    [GOAWAY_MAX_AGE_GRACE] = "max_age_grace",
    [GOAWAY_PING_TIMEOUT] = "ping_timeout",
    [GOAWAY_HANDSHAKE_TIMEOUT] = "handshake_timeout",
    [GOAWAY_PROTOCOL_ERROR] = "protocol_error",
    [GOAWAY_SHUTDOWN] = "shutdown",
};

static const char *type_name(int kind)
{
	switch (kind) {
	case TRPC_CLIENT_STREAMING:
		return "client_stream";
	case TRPC_SERVER_STREAMING:
		return "server_stream";
	case TRPC_BIDI_STREAMING:
		return "bidi_stream";
	default:
		return "unary";
	}
}

const char *metrics_code_name(int status)
{
	return status >= 0 && status < METRICS_N_CODES ? code_names[status] : code_names[2];
}

/* ------------------------------------------------------------------ registry and slabs */

void metrics_init(struct metrics_reg *m)
{
	memset(m, 0, sizeof *m);
	pthread_mutex_init(&m->mu, NULL);
	m->collectors_tail = &m->collectors;
}

void metrics_clear(struct metrics_reg *m)
{
	for (size_t i = 0; i < m->n_slabs; i++)
		free(m->slabs[i]);
	free(m->slabs);
	free(m->methods);
	while (m->collectors != NULL) {
		struct metrics_collector *c = m->collectors;
		m->collectors = c->next;
		free(c);
	}
	pthread_mutex_destroy(&m->mu);
}

int metrics_add_method(struct metrics_reg *m, const char *service, const char *method, int kind)
{
	if (m->n_methods == m->cap_methods) {
		size_t cap = m->cap_methods ? m->cap_methods * 2 : 32;
		struct metrics_method *v = realloc(m->methods, cap * sizeof *v);
		if (v == NULL)
			return TRPC_ERR_NOMEM;
		m->methods = v;
		m->cap_methods = cap;
	}
	m->methods[m->n_methods] =
	    (struct metrics_method){.service = service, .method = method, .kind = kind};
	return (int)m->n_methods++;
}

/* Slabs start on their own cache lines: two threads' counters never share one. */
#define SLAB_ALIGN 64

int metrics_start(struct metrics_reg *m, size_t n)
{
	size_t size =
	    sizeof(struct metrics_slab) + (m->n_methods + 1) * sizeof(struct method_stats);

	size = (size + SLAB_ALIGN - 1) / SLAB_ALIGN * SLAB_ALIGN;
	m->slabs = calloc(n, sizeof *m->slabs);
	if (m->slabs == NULL)
		return TRPC_ERR_NOMEM;
	for (size_t i = 0; i < n; i++) {
		m->slabs[i] = aligned_alloc(SLAB_ALIGN, size);
		if (m->slabs[i] == NULL)
			return TRPC_ERR_NOMEM; /* metrics_clear frees the others */
		memset(m->slabs[i], 0, size);
		m->n_slabs = i + 1;
	}
	return 0;
}

void metrics_call_done(struct metrics_slab *s, int slot, int status, int64_t duration_ns)
{
	struct method_stats *ms = &s->methods[slot];
	size_t b = 0;

	if (status < 0 || status >= METRICS_N_CODES)
		status = TRPC_STATUS_UNKNOWN;
	metric_inc(&ms->handled[status]);
	if (duration_ns < 0)
		duration_ns = 0;
	while (b < METRICS_N_BUCKETS && duration_ns > bucket_ns[b])
		b++;
	metric_inc(&ms->buckets[b]);
	metric_add(&ms->sum_ns, (uint64_t)duration_ns);
}

static uint64_t rd(const metric_t *m)
{
	return atomic_load_explicit(m, memory_order_relaxed);
}

/* ------------------------------------------------------------------ the text buffer */

struct trpc_metrics_buf {
	char *data;
	size_t len, cap;
	int failed;
};

trpc_metrics_buf *trpc_metrics_buf_new(void)
{
	return calloc(1, sizeof(struct trpc_metrics_buf));
}

void trpc_metrics_buf_free(trpc_metrics_buf *b)
{
	if (b == NULL)
		return;
	free(b->data);
	free(b);
}

const char *trpc_metrics_buf_data(const trpc_metrics_buf *b, size_t *len)
{
	if (b == NULL || b->failed) {
		if (len != NULL)
			*len = 0;
		return NULL;
	}
	if (len != NULL)
		*len = b->len;
	return b->data != NULL ? b->data : "";
}

/* Makes room for n more bytes and the NUL. 0 or -1 (the buffer is then failed). */
static int reserve(trpc_metrics_buf *b, size_t n)
{
	if (b->failed)
		return -1;
	if (b->len + n + 1 <= b->cap)
		return 0;
	size_t cap = b->cap ? b->cap : 4096;
	while (cap < b->len + n + 1)
		cap *= 2;
	char *d = realloc(b->data, cap);
	if (d == NULL) {
		b->failed = 1;
		return -1;
	}
	b->data = d;
	b->cap = cap;
	return 0;
}

static void put(trpc_metrics_buf *b, const char *s, size_t n)
{
	if (reserve(b, n) != 0)
		return;
	memcpy(b->data + b->len, s, n);
	b->len += n;
	b->data[b->len] = '\0';
}

static void puts_(trpc_metrics_buf *b, const char *s)
{
	put(b, s, strlen(s));
}

static void put_escaped(trpc_metrics_buf *b, const char *s, int help_text)
{
	size_t len = strlen(s), used = 0;

	while (used < len) {
		size_t step;
		/* An escaped byte takes at most 3 bytes (U+FFFD). */
		if (reserve(b, 3 * (len - used)) != 0)
			return;
		b->len += escape_prom(b->data + b->len, b->cap - b->len - 1, s + used, len - used,
		                      help_text, &step);
		used += step;
		b->data[b->len] = '\0';
	}
}

static int valid_name(const char *s, int colon_ok)
{
	if (s == NULL || *s == '\0' || (*s >= '0' && *s <= '9'))
		return 0;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || *s == '_' || (colon_ok && *s == ':')))
			return 0;
	return 1;
}

int trpc_metrics_family(trpc_metrics_buf *b, const char *name, const char *type, const char *help)
{
	static const char *const types[] = {"counter", "gauge", "histogram", "summary", "untyped"};
	int known = 0;

	if (b == NULL || !valid_name(name, 1) || type == NULL)
		return TRPC_ERR_INVALID;
	for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
		known |= strcmp(type, types[i]) == 0;
	if (!known)
		return TRPC_ERR_INVALID;
	if (help != NULL) {
		puts_(b, "# HELP ");
		puts_(b, name);
		puts_(b, " ");
		put_escaped(b, help, 1);
		puts_(b, "\n");
	}
	puts_(b, "# TYPE ");
	puts_(b, name);
	puts_(b, " ");
	puts_(b, type);
	puts_(b, "\n");
	return b->failed ? TRPC_ERR_NOMEM : 0;
}

/* name{k="v",...} <value text>\n; labels are pairs. */
static int sample_text(trpc_metrics_buf *b, const char *name, const char *const *labels,
                       size_t n_labels, const char *value)
{
	if (b == NULL || !valid_name(name, 1) || (n_labels > 0 && labels == NULL))
		return TRPC_ERR_INVALID;
	for (size_t i = 0; i < n_labels; i++)
		if (!valid_name(labels[2 * i], 0) || labels[2 * i + 1] == NULL)
			return TRPC_ERR_INVALID;
	puts_(b, name);
	for (size_t i = 0; i < n_labels; i++) {
		puts_(b, i == 0 ? "{" : ",");
		puts_(b, labels[2 * i]);
		puts_(b, "=\"");
		put_escaped(b, labels[2 * i + 1], 0);
		puts_(b, "\"");
	}
	puts_(b, n_labels > 0 ? "} " : " ");
	puts_(b, value);
	puts_(b, "\n");
	return b->failed ? TRPC_ERR_NOMEM : 0;
}

/* Shortest text that reads back as the same double (Go's 'g', -1 in effect). */
static void format_double(char *out, size_t size, double v)
{
	if (isnan(v)) {
		snprintf(out, size, "NaN");
	} else if (isinf(v)) {
		snprintf(out, size, v > 0 ? "+Inf" : "-Inf");
	} else if (fabs(v) < 1e15 && v == (double)(int64_t)v) {
		snprintf(out, size, "%" PRId64, (int64_t)v);
	} else {
		for (int prec = 15; prec <= 17; prec++) {
			snprintf(out, size, "%.*g", prec, v);
			if (strtod(out, NULL) == v)
				break;
		}
	}
}

int trpc_metrics_sample(trpc_metrics_buf *b, const char *name, const char *const *labels,
                        size_t n_labels, double value)
{
	char text[40];

	format_double(text, sizeof text, value);
	return sample_text(b, name, labels, n_labels, text);
}

static void sample_u64(trpc_metrics_buf *b, const char *name, const char *const *labels,
                       size_t n_labels, uint64_t v)
{
	char text[24];

	snprintf(text, sizeof text, "%" PRIu64, v);
	sample_text(b, name, labels, n_labels, text);
}

/* ------------------------------------------------------------------ process */

static int read_file(const char *path, char *buf, size_t size)
{
	FILE *f = fopen(path, "re");
	size_t n;

	if (f == NULL)
		return -1;
	n = fread(buf, 1, size - 1, f);
	fclose(f);
	buf[n] = '\0';
	return n > 0 ? 0 : -1;
}

/* Fields of /proc/self/stat by number (1-based, as proc(5) counts). */
struct proc_stat {
	unsigned long long utime, stime, starttime;
};

static int read_proc_stat(struct proc_stat *ps)
{
	char buf[1024], *p;

	if (read_file("/proc/self/stat", buf, sizeof buf) != 0)
		return -1;
	/* Field 2 (comm) may hold spaces and parentheses: count from its end. */
	if ((p = strrchr(buf, ')')) == NULL)
		return -1;
	p++;
	/* Fields 3..: skip to 14 (utime), 15 (stime), 22 (starttime). */
	unsigned long long v[20] = {0};
	int field = 3;
	char *save = NULL;
	for (char *tok = strtok_r(p, " ", &save); tok != NULL && field <= 22;
	     tok = strtok_r(NULL, " ", &save), field++)
		if (field >= 14)
			v[field - 14] = strtoull(tok, NULL, 10);
	if (field <= 22)
		return -1;
	ps->utime = v[0];
	ps->stime = v[1];
	ps->starttime = v[22 - 14];
	return 0;
}

static double start_time;
static pthread_once_t start_time_once = PTHREAD_ONCE_INIT;

static void find_start_time(void)
{
	char buf[8192], *bt;
	struct proc_stat ps;
	long tck = sysconf(_SC_CLK_TCK);

	if (read_file("/proc/stat", buf, sizeof buf) != 0 ||
	    (bt = strstr(buf, "\nbtime ")) == NULL || read_proc_stat(&ps) != 0 || tck <= 0)
		return;
	start_time = (double)strtoull(bt + 7, NULL, 10) + (double)ps.starttime / (double)tck;
}

static long count_open_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	long n = 0;

	if (d == NULL)
		return -1;
	while ((e = readdir(d)) != NULL)
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n - 1; /* the directory's own descriptor */
}

static void gauge(trpc_metrics_buf *b, const char *name, const char *help, double v)
{
	trpc_metrics_family(b, name, "gauge", help);
	trpc_metrics_sample(b, name, NULL, 0, v);
}

int trpc_metrics_write_process(trpc_metrics_buf *b)
{
	struct proc_stat ps;
	long tck = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE), fds;
	unsigned long long vsize, rss;
	struct rlimit rl;
	char buf[256];

	if (b == NULL)
		return TRPC_ERR_INVALID;
	if (read_proc_stat(&ps) == 0 && tck > 0) {
		trpc_metrics_family(b, "process_cpu_seconds_total", "counter",
		                    "User and system CPU time spent, in seconds.");
		trpc_metrics_sample(b, "process_cpu_seconds_total", NULL, 0,
		                    (double)(ps.utime + ps.stime) / (double)tck);
	}
	pthread_once(&start_time_once, find_start_time);
	if (start_time > 0)
		gauge(b, "process_start_time_seconds",
		      "Start time of the process since the Unix epoch, in seconds.", start_time);
	if (read_file("/proc/self/statm", buf, sizeof buf) == 0 &&
	    sscanf(buf, "%llu %llu", &vsize, &rss) == 2 && page > 0) {
		gauge(b, "process_virtual_memory_bytes", "Virtual memory size, in bytes.",
		      (double)vsize * (double)page);
		gauge(b, "process_resident_memory_bytes", "Resident memory size, in bytes.",
		      (double)rss * (double)page);
	}
	if ((fds = count_open_fds()) >= 0)
		gauge(b, "process_open_fds", "Open file descriptors.", (double)fds);
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
		gauge(b, "process_max_fds", "Limit on open file descriptors.", (double)rl.rlim_cur);
	return b->failed ? TRPC_ERR_NOMEM : 0;
}

/* ------------------------------------------------------------------ the server's families */

struct totals {
	uint64_t started, msg_recv, msg_sent;
	uint64_t handled[METRICS_N_CODES];
	uint64_t buckets[METRICS_N_BUCKETS + 1];
	uint64_t sum_ns;
};

static void sum_slabs(const struct metrics_reg *m, struct totals *t, size_t n_slots,
                      uint64_t counters[MC_COUNT])
{
	for (size_t s = 0; s < m->n_slabs; s++) {
		const struct metrics_slab *slab = m->slabs[s];
		/* Closed before opened: each slab's opened count is then at least
		 * the closed count read, and the difference never goes negative. */
		counters[MC_STREAMS_CLOSED] +=
		    atomic_load_explicit(&slab->counters[MC_STREAMS_CLOSED], memory_order_acquire);
		for (int i = 0; i < MC_COUNT; i++)
			if (i != MC_STREAMS_CLOSED)
				counters[i] += rd(&slab->counters[i]);
		for (size_t j = 0; j < n_slots; j++) {
			const struct method_stats *ms = &slab->methods[j];
			t[j].started += rd(&ms->started);
			t[j].msg_recv += rd(&ms->msg_recv);
			t[j].msg_sent += rd(&ms->msg_sent);
			for (int c = 0; c < METRICS_N_CODES; c++)
				t[j].handled[c] += rd(&ms->handled[c]);
			for (int k = 0; k <= METRICS_N_BUCKETS; k++)
				t[j].buckets[k] += rd(&ms->buckets[k]);
			t[j].sum_ns += rd(&ms->sum_ns);
		}
	}
}

/* Labels of one method, in the order go-grpc-prometheus prints them, with
 * room in front for grpc_code and behind for le. */
struct method_labels {
	const char *v[10];
};

static const char *const *method_labels(struct method_labels *l, const struct metrics_reg *m,
                                        size_t slot)
{
	int unknown = slot == m->n_methods;

	l->v[2] = "grpc_method";
	l->v[3] = unknown ? "unknown" : m->methods[slot].method;
	l->v[4] = "grpc_service";
	l->v[5] = unknown ? "unknown" : m->methods[slot].service;
	l->v[6] = "grpc_type";
	l->v[7] = unknown ? "unary" : type_name(m->methods[slot].kind);
	return &l->v[2];
}

static void write_calls(trpc_metrics_buf *b, const struct metrics_reg *m, const struct totals *t,
                        size_t n_slots)
{
	struct method_labels l;
	const char *const *lv;
	/* The unknown slot only once something was counted there. */
	size_t shown = t[m->n_methods].started > 0 ? n_slots : m->n_methods;

	trpc_metrics_family(b, "grpc_server_started_total", "counter",
	                    "RPCs started on the server.");
	for (size_t j = 0; j < shown; j++)
		sample_u64(b, "grpc_server_started_total", method_labels(&l, m, j), 3,
		           t[j].started);

	trpc_metrics_family(b, "grpc_server_handled_total", "counter",
	                    "RPCs completed on the server, whatever their status.");
	for (size_t j = 0; j < shown; j++) {
		method_labels(&l, m, j);
		l.v[0] = "grpc_code";
		for (int c = 0; c < METRICS_N_CODES; c++) {
			l.v[1] = code_names[c];
			sample_u64(b, "grpc_server_handled_total", l.v, 4, t[j].handled[c]);
		}
	}

	trpc_metrics_family(b, "grpc_server_msg_received_total", "counter",
	                    "Request messages received on the server.");
	for (size_t j = 0; j < shown; j++)
		sample_u64(b, "grpc_server_msg_received_total", method_labels(&l, m, j), 3,
		           t[j].msg_recv);

	trpc_metrics_family(b, "grpc_server_msg_sent_total", "counter",
	                    "Response messages sent by the server.");
	for (size_t j = 0; j < shown; j++)
		sample_u64(b, "grpc_server_msg_sent_total", method_labels(&l, m, j), 3,
		           t[j].msg_sent);

	trpc_metrics_family(b, "grpc_server_handling_seconds", "histogram",
	                    "Time from a call's request headers to the end of its stream, "
	                    "in seconds.");
	for (size_t j = 0; j < shown; j++) {
		uint64_t cum = 0;
		lv = method_labels(&l, m, j);
		l.v[8] = "le";
		for (int k = 0; k <= METRICS_N_BUCKETS; k++) {
			cum += t[j].buckets[k];
			l.v[9] = k < METRICS_N_BUCKETS ? bucket_le[k] : "+Inf";
			sample_u64(b, "grpc_server_handling_seconds_bucket", lv, 4, cum);
		}
		trpc_metrics_sample(b, "grpc_server_handling_seconds_sum", lv, 3,
		                    (double)t[j].sum_ns / 1e9);
		sample_u64(b, "grpc_server_handling_seconds_count", lv, 3, cum);
	}
}

static void counter(trpc_metrics_buf *b, const char *name, const char *help, uint64_t v)
{
	trpc_metrics_family(b, name, "counter", help);
	sample_u64(b, name, NULL, 0, v);
}

static void write_runtime(trpc_metrics_buf *b, trpc_server *srv, const uint64_t c[MC_COUNT])
{
	struct trpc_pool_status ps;
	uint64_t opened = c[MC_STREAMS_OPENED], closed = c[MC_STREAMS_CLOSED];

	/* Before start it reports zeros, which is what there is. */
	(void)trpc_server_pool_status(srv, &ps);
	gauge(b, "tasker_connections_open", "Open HTTP/2 connections.",
	      (double)atomic_load(&srv->nconns));
	gauge(b, "tasker_streams_active", "Open HTTP/2 streams (calls in progress).",
	      (double)(opened > closed ? opened - closed : 0));
	gauge(b, "tasker_pool_queue_depth", "Handler tasks waiting for a worker thread.",
	      (double)ps.queue_depth);
	gauge(b, "tasker_pool_threads", "Worker threads of the handler pool.",
	      (double)srv->cfg.workers);
	gauge(b, "tasker_pool_busy_threads", "Worker threads running a handler task.",
	      (double)ps.busy_threads);
	gauge(b, "tasker_backpressure_active",
	      "1 while the work queue is above its high watermark and reading is paused.",
	      ps.reading_paused ? 1 : 0);

	trpc_metrics_family(b, "tasker_keepalive_goaways_total", "counter",
	                    "Connections sent away (GOAWAY or close) by the server, by reason.");
	for (int i = 0; i < N_GOAWAY; i++) {
		const char *l[2] = {"reason", goaway_names[i]};
		sample_u64(b, "tasker_keepalive_goaways_total", l, 1, c[MC_GOAWAY + i]);
	}
	counter(b, "tasker_tls_handshakes_total", "TLS handshakes finished, failed ones included.",
	        c[MC_TLS_HANDSHAKES]);
	counter(b, "tasker_tls_handshake_failures_total",
	        "TLS handshakes that failed, timed out or were abandoned by the peer.",
	        c[MC_TLS_FAILURES]);
}

int trpc_server_add_metrics_collector(trpc_server *srv, trpc_metrics_collect_fn fn, void *ud)
{
	struct metrics_collector *c;

	if (srv == NULL || fn == NULL)
		return TRPC_ERR_INVALID;
	if ((c = calloc(1, sizeof *c)) == NULL)
		return TRPC_ERR_NOMEM;
	c->fn = fn;
	c->ud = ud;
	pthread_mutex_lock(&srv->metrics.mu);
	*srv->metrics.collectors_tail = c;
	srv->metrics.collectors_tail = &c->next;
	pthread_mutex_unlock(&srv->metrics.mu);
	return 0;
}

int trpc_server_metrics_write(trpc_server *srv, trpc_metrics_buf *b)
{
	struct metrics_reg *m;
	size_t n_slots;
	struct totals *t;
	uint64_t counters[MC_COUNT] = {0};

	if (srv == NULL || b == NULL)
		return TRPC_ERR_INVALID;
	m = &srv->metrics;
	n_slots = m->n_methods + 1;
	if ((t = calloc(n_slots, sizeof *t)) == NULL)
		return TRPC_ERR_NOMEM;
	sum_slabs(m, t, n_slots, counters);
	write_calls(b, m, t, n_slots);
	free(t);
	write_runtime(b, srv, counters);
	trpc_metrics_write_process(b);
	/* Collectors may be slow (a database query): one scrape at a time
	 * runs them, which also keeps their own state single-threaded. */
	pthread_mutex_lock(&m->mu);
	for (struct metrics_collector *c = m->collectors; c != NULL; c = c->next)
		c->fn(b, c->ud);
	pthread_mutex_unlock(&m->mu);
	return b->failed ? TRPC_ERR_NOMEM : 0;
}

char *trpc_server_metrics_render(trpc_server *srv, size_t *len)
{
	trpc_metrics_buf *b = trpc_metrics_buf_new();
	char *text = NULL;

	if (b != NULL && trpc_server_metrics_write(srv, b) == 0) {
		text = b->data != NULL ? b->data : strdup("");
		if (len != NULL)
			*len = b->len;
		b->data = NULL;
	}
	trpc_metrics_buf_free(b);
	return text;
}

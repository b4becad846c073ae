/*
 * log: one line per record, to stderr or to log.file, as text
 *   2026-11-22T10:00:00.123Z INFO message
 * or as one JSON object per line
 *   {"ts":"2026-11-22T10:00:00.123Z","level":"info","msg":"message"}
 * with the time in UTC to the millisecond. Records logged in a call's
 * context (a handler callback, see call.c) name the call; access records
 * (log.access_log) add its code and duration.
 *
 * The file: records go to one descriptor number, log_fd, for the life of
 * the process. Reopening (SIGHUP after rotation) opens the file anew and
 * dup2()s it onto that number, so a writer never sees a closed descriptor
 * and needs no lock: a record is in the old file or in the new one.
 */
#define _GNU_SOURCE

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "call.h"
#include "conn.h"
#include "escape.h"
#include "logging.h"
#include "metrics.h"
#include "server.h"

/* Relaxed is enough: a change only needs to be seen eventually, and these
 * guard no other data. */
static atomic_int log_level = TRPC_LOG_INFO;
static atomic_int log_format = TRPC_LOG_FORMAT_TEXT;
static atomic_int log_fd = STDERR_FILENO;

/* Configuration and reopening, never the writers. */
static pthread_mutex_t file_mu = PTHREAD_MUTEX_INITIALIZER;
static char *file_path;  /* log.file; NULL: stderr */
static int file_fd = -1; /* our own descriptor number once a file was opened */

static __thread char log_why[512];

static const char *const level_names[] = {
    [TRPC_LOG_ERROR] = "ERROR",
    [TRPC_LOG_WARN] = "WARN",
    [TRPC_LOG_INFO] = "INFO",
    [TRPC_LOG_DEBUG] = "DEBUG",
};

static const char *const level_json[] = {
    [TRPC_LOG_ERROR] = "error",
    [TRPC_LOG_WARN] = "warn",
    [TRPC_LOG_INFO] = "info",
    [TRPC_LOG_DEBUG] = "debug",
};

/*
 * A record is built in one buffer and written with one write(2): POSIX
 * makes writes of at most PIPE_BUF bytes to a pipe atomic, so records from
 * different threads (or processes sharing the pipe) never interleave.
 * Longer messages are cut (and end in "...").
 */
#define LOG_LINE_MAX PIPE_BUF

static int clamp_level(int level)
{
	if (level < TRPC_LOG_ERROR)
		return TRPC_LOG_ERROR;
	if (level > TRPC_LOG_DEBUG)
		return TRPC_LOG_DEBUG;
	return level;
}

void trpc_log_set_level(int level)
{
	atomic_store_explicit(&log_level, clamp_level(level), memory_order_relaxed);
}

void trpc_log_set_format(int format)
{
	atomic_store_explicit(&log_format,
	                      format == TRPC_LOG_FORMAT_JSON ? TRPC_LOG_FORMAT_JSON
	                                                     : TRPC_LOG_FORMAT_TEXT,
	                      memory_order_relaxed);
}

/* ------------------------------------------------------------------ building a line */

/* A bounded line: appends cut at cap, which leaves room for the '\n'. */
struct line {
	char buf[LOG_LINE_MAX];
	size_t len, cap;
};

static void line_init(struct line *l, size_t cap)
{
	l->len = 0;
	l->cap = cap;
}

static size_t room(const struct line *l, size_t keep)
{
	return l->len + keep < l->cap ? l->cap - l->len - keep : 0;
}

static void add(struct line *l, const char *s, size_t n)
{
	if (n > room(l, 0))
		n = room(l, 0);
	memcpy(l->buf + l->len, s, n);
	l->len += n;
}

static void add_s(struct line *l, const char *s)
{
	add(l, s, strlen(s));
}

/* A call's fields are bounded so that together they always fit in half a
 * line (a :path can be as long as the header limit). */
#define FIELD_MAX   256
#define MESSAGE_MAX 1024

/* Escaped JSON string contents, at most `max` bytes and keeping `keep`
 * bytes free; "..." marks a cut (escape_json never splits an escape, so
 * the string stays valid). */
static void add_json(struct line *l, const char *s, size_t n, size_t keep, size_t max)
{
	size_t used, r = room(l, keep), start = l->len;

	if (r > max)
		r = max;
	l->len += escape_json(l->buf + l->len, r, s, n, &used);
	if (used == n)
		return;
	l->len = start;
	if (r < 3)
		return;
	l->len += escape_json(l->buf + l->len, r - 3, s, n, NULL);
	add(l, "...", 3);
}

/* A string field: ,"key":"value" */
static void add_json_field(struct line *l, const char *key, const char *v, size_t n, size_t max)
{
	add_s(l, ",\"");
	add_s(l, key);
	add_s(l, "\":\"");
	add_json(l, v, n, 1, max);
	add_s(l, "\"");
}

/* "YYYY-MM-DDTHH:MM:SS.mmmZ" */
static void add_time(struct line *l)
{
	struct timespec ts;
	struct tm tm;
	char buf[40];
	size_t n;

	if (clock_gettime(CLOCK_REALTIME, &ts) == -1)
		ts = (struct timespec){0};
	if (!gmtime_r(&ts.tv_sec, &tm))
		memset(&tm, 0, sizeof(tm));
	n = strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf + n, sizeof buf - n, ".%03dZ", (int)(ts.tv_nsec / 1000000));
	add_s(l, buf);
}

static void add_head(struct line *l, int json, int level)
{
	if (json) {
		add_s(l, "{\"ts\":\"");
		add_time(l);
		add_s(l, "\",\"level\":\"");
		add_s(l, level_json[level]);
		add_s(l, "\"");
	} else {
		add_time(l);
		add_s(l, " ");
		add_s(l, level_names[level]);
		add_s(l, " ");
	}
}

/* Keeps a text record on one line whatever the message holds. */
static void add_text(struct line *l, const char *s, size_t n, size_t keep, size_t max)
{
	size_t r = room(l, keep), start = l->len;
	int cut;

	if (r > max)
		r = max;
	while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r'))
		n--;
	cut = n > r;
	if (cut)
		n = r >= 3 ? r - 3 : 0;
	add(l, s, n);
	for (size_t i = start; i < l->len; i++)
		if (l->buf[i] == '\n' || l->buf[i] == '\r')
			l->buf[i] = ' ';
	if (cut)
		add(l, "...", 3);
}

/* ------------------------------------------------------------------ writing */

static void write_all(int fd, const char *buf, size_t len)
{
	ssize_t n;

	while (len > 0) {
		n = write(fd, buf, len);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			return; /* nowhere left to report it */
		}
		buf += n;
		len -= (size_t)n;
	}
}

static void emit(struct line *l)
{
	l->buf[l->len++] = '\n'; /* cap kept room for it */
	write_all(atomic_load_explicit(&log_fd, memory_order_relaxed), l->buf, l->len);
}

/* ------------------------------------------------------------------ call context */

struct call_names {
	const char *service, *method;
	size_t service_len, method_len;
};

/* Service and method of a call: its registered names, or the parts of
 * the :path a client sent ("/svc/method"). */
static void names_of(const struct trpc_call *c, struct call_names *n)
{
	const char *p = c->path != NULL ? c->path : "", *slash;

	if (c->method != NULL) {
		n->service = c->method->svc->name;
		n->method = c->method->m->name;
		n->service_len = strlen(n->service);
		n->method_len = strlen(n->method);
		return;
	}
	if (*p == '/')
		p++;
	slash = strchr(p, '/');
	n->service = p;
	n->service_len = slash != NULL ? (size_t)(slash - p) : strlen(p);
	n->method = slash != NULL ? slash + 1 : "";
	n->method_len = strlen(n->method);
}

/* The call's fields; `code` and `duration_ns` only for access records. */
struct call_fields {
	struct call_names names;
	const char *peer, *trace_id;
	const char *code;    /* NULL: not finished */
	int64_t duration_ns; /* with code */
	const char *message; /* with code; NULL: none */
};

static void fields_of(struct trpc_call *c, struct call_fields *f)
{
	names_of(c, &f->names);
	f->peer = c->conn->peer;
	f->trace_id = trpc_call_trace_id(c);
	f->code = NULL;
	f->message = NULL;
}

static void add_fields_json(struct line *l, const struct call_fields *f)
{
	char num[32];

	add_json_field(l, "service", f->names.service, f->names.service_len, FIELD_MAX);
	add_json_field(l, "method", f->names.method, f->names.method_len, FIELD_MAX);
	if (f->code != NULL) {
		add_json_field(l, "code", f->code, strlen(f->code), FIELD_MAX);
		snprintf(num, sizeof num, ",\"duration_ms\":%.3f", (double)f->duration_ns / 1e6);
		add_s(l, num);
	}
	add_json_field(l, "peer", f->peer, strlen(f->peer), FIELD_MAX);
	add_json_field(l, "trace_id", f->trace_id, strlen(f->trace_id), FIELD_MAX);
	if (f->message != NULL)
		add_json_field(l, "error", f->message, strlen(f->message), MESSAGE_MAX);
}

static void add_fields_text(struct line *l, const struct call_fields *f)
{
	char num[32];

	add_s(l, " service=");
	add_text(l, f->names.service, f->names.service_len, 0, FIELD_MAX);
	add_s(l, " method=");
	add_text(l, f->names.method, f->names.method_len, 0, FIELD_MAX);
	if (f->code != NULL) {
		add_s(l, " code=");
		add_s(l, f->code);
		snprintf(num, sizeof num, " duration_ms=%.3f", (double)f->duration_ns / 1e6);
		add_s(l, num);
	}
	add_s(l, " peer=");
	add_s(l, f->peer);
	add_s(l, " trace_id=");
	add_s(l, f->trace_id);
	if (f->message != NULL) {
		add_s(l, " error=\"");
		add_text(l, f->message, strlen(f->message), 1, MESSAGE_MAX);
		add_s(l, "\"");
	}
}

/* ------------------------------------------------------------------ records */

/* A record with its message, and the fields of the call when there is one. */
static void write_record(int level, const char *msg, size_t msg_len, const struct call_fields *f)
{
	int json = atomic_load_explicit(&log_format, memory_order_relaxed) == TRPC_LOG_FORMAT_JSON;
	struct line l, ctx;

	/* The call's fields first, apart, so that a long message is what gets
	 * cut, never the fields. */
	line_init(&ctx, LOG_LINE_MAX / 2);
	if (f != NULL) {
		if (json)
			add_fields_json(&ctx, f);
		else
			add_fields_text(&ctx, f);
	}
	line_init(&l, LOG_LINE_MAX - 1);
	add_head(&l, json, level);
	if (json) {
		add_s(&l, ",\"msg\":\"");
		add_json(&l, msg, msg_len, ctx.len + 2, SIZE_MAX);
		add_s(&l, "\"");
		add(&l, ctx.buf, ctx.len);
		add_s(&l, "}");
	} else {
		add_text(&l, msg, msg_len, ctx.len, SIZE_MAX);
		add(&l, ctx.buf, ctx.len);
	}
	emit(&l);
}

void trpc_log(int level, const char *fmt, ...)
{
	char msg[LOG_LINE_MAX];
	struct call_fields f;
	trpc_call *c;
	va_list ap;
	int n;

	level = clamp_level(level);
	if (level > atomic_load_explicit(&log_level, memory_order_relaxed))
		return;
	va_start(ap, fmt);
	n = vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	if (n < 0)
		n = 0;
	if ((size_t)n >= sizeof msg)
		n = sizeof msg - 1; /* the line is cut anyway */
	if ((c = trpc_call_current()) != NULL)
		fields_of(c, &f);
	write_record(level, msg, (size_t)n, c != NULL ? &f : NULL);
}

void log_access(struct trpc_call *c, int status, const char *message, int64_t duration_ns)
{
	struct call_fields f;

	fields_of(c, &f);
	f.code = metrics_code_name(status);
	f.duration_ns = duration_ns;
	f.message = status != TRPC_STATUS_OK ? message : NULL;
	write_record(TRPC_LOG_INFO, "access", 6, &f);
}

/* ------------------------------------------------------------------ configuration */

static int open_log(const char *path)
{
	return open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0640);
}

/* Points log_fd at `fd` (closed here) or, with -1, back at stderr. file_mu held. */
static int install(int fd)
{
	int src = fd != -1 ? fd : STDERR_FILENO;

	if (file_fd == -1) {
		if (fd == -1)
			return 0; /* stderr already */
		file_fd = fd;
		atomic_store(&log_fd, file_fd);
		return 0;
	}
	/* Writers hold file_fd's number: replace what it refers to, atomically. */
	while (dup2(src, file_fd) == -1)
		if (errno != EINTR && errno != EBUSY)
			return -1;
	if (fd != -1)
		close(fd);
	return 0;
}

int trpc_log_configure(const struct trpc_server_config *cfg, const char **why)
{
	static const char *const levels[] = {"error", "warn", "info", "debug"};
	char *path = NULL;
	int fd = -1, rc = 0;

	if (cfg == NULL)
		return TRPC_ERR_INVALID;
	for (int i = 0; cfg->log_level != NULL && i < 4; i++)
		if (strcasecmp(cfg->log_level, levels[i]) == 0)
			trpc_log_set_level(i);
	trpc_log_set_format(cfg->log_format);
	if (cfg->log_file != NULL && *cfg->log_file != '\0') {
		if ((path = strdup(cfg->log_file)) == NULL) {
			if (why != NULL)
				*why = "out of memory";
			return TRPC_ERR_NOMEM;
		}
		if ((fd = open_log(path)) == -1) {
			snprintf(log_why, sizeof log_why, "log.file %s: %s", path, strerror(errno));
			if (why != NULL)
				*why = log_why;
			free(path);
			return TRPC_ERR_SYSTEM;
		}
	}
	pthread_mutex_lock(&file_mu);
	if (install(fd) != 0) {
		snprintf(log_why, sizeof log_why, "log.file %s: %s",
		         path != NULL ? path : "(stderr)", strerror(errno));
		if (why != NULL)
			*why = log_why;
		if (fd != -1)
			close(fd);
		free(path);
		rc = TRPC_ERR_SYSTEM;
	} else {
		free(file_path);
		file_path = path;
	}
	pthread_mutex_unlock(&file_mu);
	return rc;
}

int trpc_log_reopen(void)
{
	int rc = 0, fd;

	pthread_mutex_lock(&file_mu);
	if (file_path != NULL) {
		if ((fd = open_log(file_path)) == -1 || install(fd) != 0) {
			if (fd != -1)
				close(fd);
			rc = TRPC_ERR_SYSTEM;
		}
	}
	pthread_mutex_unlock(&file_mu);
	return rc;
}

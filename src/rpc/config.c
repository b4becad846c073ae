/*
 * config: struct trpc_server_config from an INI file, TASKER_<SECTION>_<KEY>
 * environment variables and --section.key=value options, in that order of
 * precedence (later sources win).
 *
 * Every setting is one row of `rows` below: section, key, type, offset into
 * the struct, range and default. Init, set, clear and the environment scan
 * all walk that table, so adding a setting is adding a row (and its line in
 * etc/taskerd.conf); no function here names a field except the cross-field
 * checks in check_config().
 *
 * Error messages: struct trpc_server_config is public and has no room for
 * a message, so *why points into a thread-local buffer. It stays valid on
 * the calling thread until the next config call on that thread.
 */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <ini.h>

#include "ratelimit.h"
#include "tasker/rpc.h"

extern char **environ;

#define ENV_PREFIX      "TASKER_"
#define DEFAULT_SECTION "server" /* for "key" without "section." */
#define WHY_MAX         512

static __thread char why_buf[WHY_MAX];

/* ------------------------------------------------------------------ the table */

enum cfg_type {
	CFG_STRING = 1, /* char *; "" stores NULL; `names`, when set, lists the allowed values */
	CFG_INT,        /* int, decimal */
	CFG_SIZE,       /* int bytes; suffixes k, M, G (and KiB, MiB, GiB) are powers of 1024 */
	CFG_DURATION,   /* int ms; "500ms", "10s", "5m", "2h", "1d", "1h30m"; a bare number is ms */
	CFG_BOOL,       /* int 0 or 1 */
	CFG_ENUM        /* int: the index of the value in `names` */
};

struct cfg_row {
	const char *section;
	const char *key;
	enum cfg_type type;
	const char *def;          /* the default, parsed like any other value; NULL: none */
	size_t offset;            /* of the field in struct trpc_server_config */
	long long min, max;       /* CFG_INT, CFG_SIZE, CFG_DURATION, CFG_BOOL */
	const char *const *names; /* CFG_ENUM; CFG_STRING (NULL: any string) */
};

/* Indexed by enum trpc_client_auth. */
static const char *const client_auth_names[] = {"none", "optional", "require", NULL};
static const char *const log_level_names[] = {"error", "warn", "info", "debug", NULL};
/* Indexed by enum trpc_log_format. */
static const char *const log_format_names[] = {"text", "json", NULL};
/* Indexed by enum ratelimit_key_mode. */
static const char *const ratelimit_key_names[] = {"peer", "identity", NULL};

#define OFF(field) offsetof(struct trpc_server_config, field)

/* Two lines a row: section, key, type, default; then field, min, max, names. */
/* clang-format off */
static const struct cfg_row rows[] = {
	{"server",    "listen",                   CFG_STRING,   "0.0.0.0:50051",
	 OFF(listen),                          0,     0,        NULL},
	{"server",    "tls_listen",               CFG_STRING,   NULL,
	 OFF(tls_listen),                      0,     0,        NULL},
	{"server",    "io_threads",               CFG_INT,      "0",
	 OFF(io_threads),                      0,     1024,     NULL},
	{"server",    "workers",                  CFG_INT,      "0",
	 OFF(workers),                         0,     65536,    NULL},
	{"server",    "max_connections",          CFG_INT,      "20000",
	 OFF(max_connections),                 1,     INT_MAX,  NULL},
	{"server",    "log_level",                CFG_STRING,   "info",
	 OFF(log_level),                       0,     0,        log_level_names},
	{"server",    "shutdown_grace",           CFG_DURATION, "10s",
	 OFF(shutdown_grace_ms),               0,     INT_MAX,  NULL},

	{"tls",       "cert_file",                CFG_STRING,   NULL,
	 OFF(tls_cert_file),                   0,     0,        NULL},
	{"tls",       "key_file",                 CFG_STRING,   NULL,
	 OFF(tls_key_file),                    0,     0,        NULL},
	{"tls",       "client_ca_file",           CFG_STRING,   NULL,
	 OFF(tls_client_ca_file),              0,     0,        NULL},
	{"tls",       "client_auth",              CFG_ENUM,     "none",
	 OFF(tls_client_auth),                 0,     0,        client_auth_names},

	{"http2",     "max_concurrent_streams",   CFG_INT,      "200",
	 OFF(max_concurrent_streams),          1,     INT_MAX,  NULL},
	{"http2",     "initial_window_size",      CFG_SIZE,     "1MiB",
	 OFF(initial_window_size),             65535, INT_MAX,  NULL},
	{"http2",     "max_header_list_size",     CFG_SIZE,     "8KiB",
	 OFF(max_header_list_size),            1024,  1 << 20,  NULL},
	{"http2",     "stream_reset_burst",       CFG_INT,      "1000",
	 OFF(stream_reset_burst),              1,     INT_MAX,  NULL},
	{"http2",     "stream_reset_rate",        CFG_INT,      "33",
	 OFF(stream_reset_rate),               1,     INT_MAX,  NULL},
	{"http2",     "max_continuations",        CFG_INT,      "8",
	 OFF(max_continuations),               0,     65535,    NULL},

	{"limits",    "max_recv_message_size",    CFG_SIZE,     "4MiB",
	 OFF(max_recv_message_size),           0,     INT_MAX,  NULL},
	{"limits",    "max_send_message_size",    CFG_SIZE,     "4MiB",
	 OFF(max_send_message_size),           0,     INT_MAX,  NULL},
	{"limits",    "max_outbound_bytes",       CFG_SIZE,     "4MiB",
	 OFF(max_outbound_bytes),              1,     INT_MAX,  NULL},
	{"limits",    "queue_high_watermark",     CFG_INT,      "4096",
	 OFF(queue_high_watermark),            1,     INT_MAX,  NULL},
	{"limits",    "queue_low_watermark",      CFG_INT,      "1024",
	 OFF(queue_low_watermark),             0,     INT_MAX,  NULL},
	{"limits",    "retry_pushback",           CFG_DURATION, "100ms",
	 OFF(retry_pushback_ms),               0,     INT_MAX,  NULL},

	{"keepalive", "time",                     CFG_DURATION, "2h",
	 OFF(keepalive_time_ms),               0,     INT_MAX,  NULL},
	{"keepalive", "timeout",                  CFG_DURATION, "20s",
	 OFF(keepalive_timeout_ms),            1,     INT_MAX,  NULL},
	{"keepalive", "min_ping_interval",        CFG_DURATION, "5m",
	 OFF(min_ping_interval_ms),            0,     INT_MAX,  NULL},
	{"keepalive", "max_ping_strikes",         CFG_INT,      "2",
	 OFF(max_ping_strikes),                0,     INT_MAX,  NULL},
	{"keepalive", "permit_without_calls",     CFG_BOOL,     "false",
	 OFF(permit_keepalive_without_calls),  0,     1,        NULL},
	{"keepalive", "max_connection_idle",      CFG_DURATION, "0",
	 OFF(max_connection_idle_ms),          0,     INT_MAX,  NULL},
	{"keepalive", "max_connection_age",       CFG_DURATION, "0",
	 OFF(max_connection_age_ms),           0,     INT_MAX,  NULL},
	{"keepalive", "max_connection_age_grace", CFG_DURATION, "0",
	 OFF(max_connection_age_grace_ms),     0,     INT_MAX,  NULL},
	{"keepalive", "handshake_timeout",        CFG_DURATION, "10s",
	 OFF(handshake_timeout_ms),            1,     INT_MAX,  NULL},

	/* log.level is server.log_level under the name of its section. */
	{"log",       "level",                    CFG_STRING,   "info",
	 OFF(log_level),                       0,     0,        log_level_names},
	{"log",       "format",                   CFG_ENUM,     "text",
	 OFF(log_format),                      0,     0,        log_format_names},
	{"log",       "file",                     CFG_STRING,   NULL,
	 OFF(log_file),                        0,     0,        NULL},
	{"log",       "access_log",               CFG_BOOL,     "false",
	 OFF(log_access),                      0,     1,        NULL},

	{"metrics",   "listen",                   CFG_STRING,   NULL,
	 OFF(metrics_listen),                  0,     0,        NULL},

	{"ratelimit", "enabled",                  CFG_BOOL,     "false",
	 OFF(ratelimit_enabled),               0,     1,        NULL},
	{"ratelimit", "rate",                     CFG_INT,      "100",
	 OFF(ratelimit_rate),                  1,     INT_MAX,  NULL},
	{"ratelimit", "burst",                    CFG_INT,      "0",
	 OFF(ratelimit_burst),                 0,     INT_MAX,  NULL},
	{"ratelimit", "key",                      CFG_ENUM,     "peer",
	 OFF(ratelimit_key),                   0,     0,        ratelimit_key_names},
	{"ratelimit", "services",                 CFG_STRING,   NULL,
	 OFF(ratelimit_services),              0,     0,        NULL},
};
/* clang-format on */

#define N_ROWS (sizeof(rows) / sizeof(rows[0]))

static const struct cfg_row *find_row(const char *section, const char *key)
{
	for (size_t i = 0; i < N_ROWS; i++)
		if (strcmp(rows[i].section, section) == 0 && strcmp(rows[i].key, key) == 0)
			return &rows[i];
	return NULL;
}

/* The offsets come from offsetof() on fields of these types, so the alignment is right. */
static int *int_field(struct trpc_server_config *cfg, const struct cfg_row *row)
{
	return (int *)(void *)((char *)cfg + row->offset);
}

static char **string_field(struct trpc_server_config *cfg, const struct cfg_row *row)
{
	return (char **)(void *)((char *)cfg + row->offset);
}

/* ------------------------------------------------------------------ value parsers */

/* A parser returns 0 and stores the value, or -1 when the text is not of its type. */

struct unit {
	const char *name;
	long long mult;
};

/* Binary multiples only: "4M" and "4MiB" are both 4194304. */
/* clang-format off */
static const struct unit size_units[] = {
	{"", 1},
	{"k", 1LL << 10}, {"K", 1LL << 10}, {"Ki", 1LL << 10}, {"KiB", 1LL << 10},
	{"m", 1LL << 20}, {"M", 1LL << 20}, {"Mi", 1LL << 20}, {"MiB", 1LL << 20},
	{"g", 1LL << 30}, {"G", 1LL << 30}, {"Gi", 1LL << 30}, {"GiB", 1LL << 30},
	{NULL, 0},
};

static const struct unit duration_units[] = {
	{"ms", 1}, {"s", 1000}, {"m", 60 * 1000}, {"h", 3600 * 1000},
	{"d", 24 * 3600 * 1000},
	{NULL, 0},
};
/* clang-format on */

/* Saturating arithmetic: a value too large for long long becomes LLONG_MAX,
 * which then fails the range check with a useful message. */
static long long sat_mul(long long a, long long b)
{
	return b != 0 && a > LLONG_MAX / b ? LLONG_MAX : a * b;
}

static long long sat_add(long long a, long long b)
{
	return a > LLONG_MAX - b ? LLONG_MAX : a + b;
}

static const char *skip_spaces(const char *p)
{
	while (*p == ' ' || *p == '\t')
		p++;
	return p;
}

/* Reads one or more decimal digits at *p and advances *p past them. */
static int read_digits(const char **p, long long *v)
{
	const char *s = *p;
	long long n = 0;

	if (!isdigit((unsigned char)*s))
		return -1;
	for (; isdigit((unsigned char)*s); s++)
		n = sat_add(sat_mul(n, 10), *s - '0');
	*p = s;
	*v = n;
	return 0;
}

/* Reads the unit at *p (a run of letters, possibly empty) and advances *p past it. */
static int read_unit(const char **p, const struct unit *units, long long *mult)
{
	const char *s = *p;
	size_t len = 0;

	while (isalpha((unsigned char)s[len]))
		len++;
	for (const struct unit *u = units; u->name != NULL; u++) {
		if (strlen(u->name) == len && strncmp(u->name, s, len) == 0) {
			*p = s + len;
			*mult = u->mult;
			return 0;
		}
	}
	return -1;
}

static int parse_int(const char *s, long long *v)
{
	int neg = *s == '-';
	long long n;

	s += neg;
	if (read_digits(&s, &n) != 0 || *s != '\0')
		return -1;
	*v = neg ? -n : n;
	return 0;
}

static int parse_size(const char *s, long long *v)
{
	long long n, mult;

	if (read_digits(&s, &n) != 0)
		return -1;
	s = skip_spaces(s);
	if (read_unit(&s, size_units, &mult) != 0 || *skip_spaces(s) != '\0')
		return -1;
	*v = sat_mul(n, mult);
	return 0;
}

/* One or more <number><unit> terms, summed ("1h30m"); or a bare number of ms. */
static int parse_duration(const char *s, long long *v)
{
	long long n, mult, total = 0;

	if (read_digits(&s, &n) != 0)
		return -1;
	if (*skip_spaces(s) == '\0') {
		*v = n;
		return 0;
	}
	for (;;) {
		s = skip_spaces(s);
		if (read_unit(&s, duration_units, &mult) != 0)
			return -1;
		total = sat_add(total, sat_mul(n, mult));
		s = skip_spaces(s);
		if (*s == '\0')
			break;
		if (read_digits(&s, &n) != 0)
			return -1;
	}
	*v = total;
	return 0;
}

static int parse_bool(const char *s, long long *v)
{
	static const struct {
		const char *name;
		int value;
	} words[] = {
	    {"true", 1}, {"false", 0}, {"yes", 1}, {"no", 0},
	    {"on", 1},   {"off", 0},   {"1", 1},   {"0", 0},
	};

	for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
		if (strcasecmp(s, words[i].name) == 0) {
			*v = words[i].value;
			return 0;
		}
	}
	return -1;
}

/* The index of `s` in a NULL-terminated list (ignoring case), or -1. */
static int find_name(const char *const *names, const char *s)
{
	for (int i = 0; names[i] != NULL; i++)
		if (strcasecmp(names[i], s) == 0)
			return i;
	return -1;
}

/* Numeric types: how to parse, what to say when that fails, the unit of range messages. */
static const struct {
	int (*parse)(const char *s, long long *v);
	const char *problem;
	const char *unit;
} numeric_types[] = {
    [CFG_INT] = {parse_int, "not an integer", ""},
    [CFG_SIZE] = {parse_size, "not a size", " bytes"},
    [CFG_DURATION] = {parse_duration, "not a duration", " ms"},
    [CFG_BOOL] = {parse_bool, "not a boolean (true/false, yes/no, on/off, 1/0)", ""},
};

/* ------------------------------------------------------------------ setting one row */

/* Why a value was refused, before we know where it came from. */
struct problem {
	char text[192];
};

static int refuse(struct problem *pb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int refuse(struct problem *pb, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(pb->text, sizeof(pb->text), fmt, ap);
	va_end(ap);
	return TRPC_ERR_CONFIG;
}

static int refuse_name(struct problem *pb, const char *const *names)
{
	size_t off = (size_t)snprintf(pb->text, sizeof(pb->text), "not one of");

	for (int i = 0; names[i] != NULL && off < sizeof(pb->text); i++)
		off += (size_t)snprintf(pb->text + off, sizeof(pb->text) - off, "%s %s",
		                        i == 0 ? "" : ",", names[i]);
	return TRPC_ERR_CONFIG;
}

/* Replaces a string field; an empty value stores NULL ("none"). */
static int set_string(char **field, const char *value)
{
	char *copy = NULL;

	if (*value != '\0' && (copy = strdup(value)) == NULL)
		return TRPC_ERR_NOMEM;
	free(*field);
	*field = copy;
	return 0;
}

/* Parses `value` for `row` and stores it. 0, TRPC_ERR_CONFIG (with *pb) or TRPC_ERR_NOMEM. */
static int set_row(struct trpc_server_config *cfg, const struct cfg_row *row, const char *value,
                   struct problem *pb)
{
	const char *unit;
	long long v;
	int i;

	switch (row->type) {
	case CFG_STRING:
		if (row->names == NULL)
			return set_string(string_field(cfg, row), value);
		if ((i = find_name(row->names, value)) < 0)
			return refuse_name(pb, row->names);
		return set_string(string_field(cfg, row), row->names[i]);
	case CFG_ENUM:
		if ((i = find_name(row->names, value)) < 0)
			return refuse_name(pb, row->names);
		*int_field(cfg, row) = i;
		return 0;
	case CFG_INT:
	case CFG_SIZE:
	case CFG_DURATION:
	case CFG_BOOL:
		break;
	}
	unit = numeric_types[row->type].unit;
	if (numeric_types[row->type].parse(value, &v) != 0)
		return refuse(pb, "%s", numeric_types[row->type].problem);
	if (v < row->min)
		return refuse(pb, "must be at least %lld%s", row->min, unit);
	if (v > row->max)
		return refuse(pb, "must be at most %lld%s", row->max, unit);
	*int_field(cfg, row) = (int)v;
	return 0;
}

/* ------------------------------------------------------------------ errors */

/* Where a value came from, for messages; and who gets keys we do not know. */
struct source {
	enum { SRC_API = 1, SRC_FILE, SRC_ENV, SRC_ARGV } kind;
	const char *name; /* the file, the variable, or the option as "--section.key=value" */
	int line;         /* SRC_FILE */
	trpc_config_extra_fn extra;
	void *ud;
};

static int fail(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int fail(int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why_buf, sizeof(why_buf), fmt, ap);
	va_end(ap);
	return err;
}

/*
 * Reports a refused key in the style of its source:
 *   /etc/tasker/taskerd.conf:12: [limits] max_recv_message_size: "4x": not a size
 *   [keepalive] time: "abc": not a duration (environment TASKER_KEEPALIVE_TIME)
 *   --keepalive.time=abc: not a duration
 * `problem` NULL means the key is unknown.
 */
static int fail_key(const struct source *src, const char *section, const char *key,
                    const char *value, const char *problem)
{
	char what[WHY_MAX];

	if (problem == NULL)
		snprintf(what, sizeof(what), "unknown key \"%s.%s\"", section, key);
	else
		snprintf(what, sizeof(what), "[%s] %s: \"%s\": %s", section, key, value, problem);

	switch (src->kind) {
	case SRC_FILE:
		return fail(TRPC_ERR_CONFIG, "%s:%d: %s", src->name, src->line, what);
	case SRC_ENV:
		return fail(TRPC_ERR_CONFIG, "%s (environment %s)", what, src->name);
	case SRC_ARGV:
		/* The option as written already shows the key and the value. */
		return fail(TRPC_ERR_CONFIG, "%s: %s", src->name, problem != NULL ? problem : what);
	case SRC_API:
		break;
	}
	return fail(TRPC_ERR_CONFIG, "%s", what);
}

/* ------------------------------------------------------------------ applying a key */

/*
 * Hands a key no row knows to the caller's `extra`. Its contract: 0 when it
 * took the key, TRPC_ERR_CONFIG when the key is unknown to it too; any other
 * negative value is its verdict on the value and is passed on.
 * Returns 0, 1 for "nobody knows this key", or a negative error (why set).
 */
static int offer_extra(const struct source *src, const char *section, const char *key,
                       const char *value)
{
	int rc;

	if (src->extra == NULL)
		return 1;
	rc = src->extra(src->ud, section, key, value);
	if (rc == 0)
		return 0;
	if (rc == TRPC_ERR_CONFIG)
		return 1;
	fail_key(src, section, key, value, "rejected by the program");
	return rc < 0 ? rc : TRPC_ERR_CONFIG;
}

static int apply_in_section(struct trpc_server_config *cfg, const struct source *src,
                            const char *section, const char *key, const char *value)
{
	const struct cfg_row *row = find_row(section, key);
	struct problem pb;
	int rc;

	if (row == NULL) {
		rc = offer_extra(src, section, key, value);
		return rc == 1 ? fail_key(src, section, key, value, NULL) : rc;
	}
	rc = set_row(cfg, row, value, &pb);
	if (rc == TRPC_ERR_CONFIG)
		return fail_key(src, section, key, value, pb.text);
	if (rc == TRPC_ERR_NOMEM)
		return fail(rc, "out of memory");
	return rc;
}

/*
 * Applies one key. An empty or NULL section means `key` is "section.key",
 * or a bare "key" of [server] (so "--listen" and "--server.listen" are the
 * same option, and keys before the first [section] of a file are [server]'s).
 */
static int apply(struct trpc_server_config *cfg, const struct source *src, const char *section,
                 const char *key, const char *value)
{
	const char *dot;
	char *owned;
	int rc;

	if (section != NULL && *section != '\0')
		return apply_in_section(cfg, src, section, key, value);
	if ((dot = strchr(key, '.')) == NULL)
		return apply_in_section(cfg, src, DEFAULT_SECTION, key, value);
	if ((owned = strndup(key, (size_t)(dot - key))) == NULL)
		return fail(TRPC_ERR_NOMEM, "out of memory");
	rc = apply_in_section(cfg, src, owned, dot + 1, value);
	free(owned);
	return rc;
}

/* ------------------------------------------------------------------ file */

struct file_ctx {
	struct trpc_server_config *cfg;
	struct source src; /* src.line: the line being parsed */
	FILE *fp;
	int rc;      /* the first error from a key, or 0 */
	int rc_line; /* its line */
};

/*
 * inih's line buffer has a fixed size chosen when the library was built,
 * and it cuts a longer line into pieces that it parses as separate lines
 * (and counts as such). Reading through this function keeps our own line
 * count, which the key handler uses for messages, and turns an overlong
 * line into an error rather than a silently mangled value.
 */
static char *on_read_line(char *buf, int size, void *stream)
{
	struct file_ctx *fc = stream;
	size_t len;
	int c;

	if (fgets(buf, size, fc->fp) == NULL)
		return NULL;
	fc->src.line++;
	len = strlen(buf);
	if (len == 0 || buf[len - 1] == '\n' || (c = getc(fc->fp)) == EOF || c == '\n')
		return buf;
	while ((c = getc(fc->fp)) != EOF && c != '\n')
		;
	if (fc->rc == 0) {
		fc->rc = fail(TRPC_ERR_CONFIG, "%s:%d: line too long (at most %d characters)",
		              fc->src.name, fc->src.line, size - 1);
		fc->rc_line = fc->src.line;
	}
	return buf;
}

static int on_ini_key(void *user, const char *section, const char *key, const char *value)
{
	struct file_ctx *fc = user;

	if (fc->rc != 0)
		return 1; /* already failed; report the first error only */
	fc->rc = apply(fc->cfg, &fc->src, section, key, value);
	if (fc->rc == 0)
		return 1;
	fc->rc_line = fc->src.line;
	return 0;
}

static int load_file(struct trpc_server_config *cfg, const char *path, trpc_config_extra_fn extra,
                     void *ud)
{
	struct file_ctx fc = {
	    .cfg = cfg,
	    .src = {.kind = SRC_FILE, .name = path, .extra = extra, .ud = ud},
	};
	int bad_line, rc;

	if ((fc.fp = fopen(path, "re")) == NULL)
		return fail(TRPC_ERR_SYSTEM, "%s: %s", path, strerror(errno));
	/* inih does not stop at the first error; it returns the line of the
	 * first one, which may be a syntax error before our first bad key. */
	bad_line = ini_parse_stream(on_read_line, &fc, on_ini_key, &fc);
	if (ferror(fc.fp))
		rc = fail(TRPC_ERR_SYSTEM, "%s: read error: %s", path, strerror(errno));
	else if (fc.rc != 0 && (bad_line <= 0 || fc.rc_line <= bad_line))
		rc = fc.rc;
	else if (bad_line > 0)
		rc = fail(TRPC_ERR_CONFIG, "%s:%d: expected [section] or key = value", path,
		          bad_line);
	else if (bad_line == -2)
		rc = fail(TRPC_ERR_NOMEM, "%s: out of memory", path);
	else
		rc = 0;
	fclose(fc.fp);
	return rc;
}

/* ------------------------------------------------------------------ environment */

/* Does "TASKER_SECTION_KEY" (len bytes, not NUL terminated) name `row`? */
static int env_names_row(const char *name, size_t len, const struct cfg_row *row)
{
	size_t sl = strlen(row->section), kl = strlen(row->key);
	const char *p = name + strlen(ENV_PREFIX);

	if (len != strlen(ENV_PREFIX) + sl + 1 + kl || p[sl] != '_')
		return 0;
	for (size_t i = 0; i < sl; i++)
		if (p[i] != toupper((unsigned char)row->section[i]))
			return 0;
	for (size_t i = 0; i < kl; i++)
		if (p[sl + 1 + i] != toupper((unsigned char)row->key[i]))
			return 0;
	return 1;
}

/*
 * A TASKER_ variable no row knows goes to `extra` as (section, key): the
 * name after the prefix, lower-cased, split at its first underscore
 * (TASKER_PORT_FILE is ("port", "file"); without an underscore the section
 * is "server"). Section names have no underscores, so this is also how our
 * own variables split.
 */
static int offer_env_extra(const struct source *src, const char *var, size_t len, const char *value)
{
	char *section = strndup(var + strlen(ENV_PREFIX), len - strlen(ENV_PREFIX));
	char *key;
	int rc;

	if (section == NULL)
		return fail(TRPC_ERR_NOMEM, "out of memory");
	for (char *p = section; *p != '\0'; p++)
		*p = (char)tolower((unsigned char)*p);
	if ((key = strchr(section, '_')) != NULL)
		*key++ = '\0';
	rc = key != NULL ? offer_extra(src, section, key, value)
	                 : offer_extra(src, DEFAULT_SECTION, section, value);
	free(section);
	return rc;
}

/*
 * Unknown TASKER_ variables are not errors: the environment is shared with
 * other programs and scripts (TASKER_CONFIG, TASKER_PORT_FILE, ...), and a
 * daemon must not refuse to start because of a variable meant for someone
 * else.
 */
static int load_env(struct trpc_server_config *cfg, trpc_config_extra_fn extra, void *ud)
{
	char name[256];
	struct source src = {.kind = SRC_ENV, .name = name, .extra = extra, .ud = ud};

	for (char **e = environ; e != NULL && *e != NULL; e++) {
		const char *eq = strchr(*e, '=');
		size_t len;
		const struct cfg_row *row = NULL;
		int rc;

		if (strncmp(*e, ENV_PREFIX, strlen(ENV_PREFIX)) != 0 || eq == NULL)
			continue;
		if ((len = (size_t)(eq - *e)) == strlen(ENV_PREFIX))
			continue;
		for (size_t i = 0; i < N_ROWS && row == NULL; i++)
			if (env_names_row(*e, len, &rows[i]))
				row = &rows[i];
		/* For messages only; none of our names comes near the size. */
		snprintf(name, sizeof(name), "%.*s", (int)len, *e);
		if (row != NULL)
			rc = apply_in_section(cfg, &src, row->section, row->key, eq + 1);
		else
			rc = offer_env_extra(&src, *e, len, eq + 1);
		if (rc < 0)
			return rc;
	}
	return 0;
}

/* ------------------------------------------------------------------ command line */

/* "--section.key=value", "--section.key value", "--key=value" ([server]). argv[0] is skipped. */
static int load_argv(struct trpc_server_config *cfg, int argc, char **argv,
                     trpc_config_extra_fn extra, void *ud)
{
	char text[WHY_MAX];
	struct source src = {.kind = SRC_ARGV, .name = text, .extra = extra, .ud = ud};

	for (int i = 1; i < argc; i++) {
		const char *arg = argv[i], *eq, *value;
		char *key;
		int rc;

		if (strncmp(arg, "--", 2) != 0 || arg[2] == '\0' || arg[2] == '=')
			return fail(TRPC_ERR_CONFIG, "%s: expected --section.key=value", arg);
		if ((eq = strchr(arg + 2, '=')) != NULL) {
			value = eq + 1;
			key = strndup(arg + 2, (size_t)(eq - arg - 2));
		} else {
			if (i + 1 >= argc)
				return fail(TRPC_ERR_CONFIG, "%s: missing value", arg);
			value = argv[++i];
			key = strdup(arg + 2);
		}
		if (key == NULL)
			return fail(TRPC_ERR_NOMEM, "out of memory");
		snprintf(text, sizeof(text), "--%s=%s", key, value);
		rc = apply(cfg, &src, NULL, key, value);
		free(key);
		if (rc != 0)
			return rc;
	}
	return 0;
}

/* ------------------------------------------------------------------ whole-config checks */

/* Rules between keys, checked once all sources are in. */
static int check_config(const struct trpc_server_config *cfg)
{
	if (cfg->log_level == NULL) /* never NULL after a successful init */
		return fail(TRPC_ERR_NOMEM, "out of memory");
	if (cfg->queue_low_watermark >= cfg->queue_high_watermark)
		return fail(TRPC_ERR_CONFIG,
		            "[limits] queue_low_watermark (%d) must be less than "
		            "queue_high_watermark (%d)",
		            cfg->queue_low_watermark, cfg->queue_high_watermark);
	if (cfg->listen == NULL && cfg->tls_listen == NULL)
		return fail(TRPC_ERR_CONFIG,
		            "no listener: [server] listen and tls_listen are both empty");
	if (cfg->tls_listen != NULL && (cfg->tls_cert_file == NULL || cfg->tls_key_file == NULL))
		return fail(TRPC_ERR_CONFIG,
		            "[server] tls_listen needs [tls] cert_file and key_file");
	/* The field is public: a caller may have stored anything in it. */
	if (cfg->tls_client_auth < TRPC_CLIENT_AUTH_NONE ||
	    cfg->tls_client_auth > TRPC_CLIENT_AUTH_REQUIRE)
		return fail(TRPC_ERR_CONFIG, "[tls] client_auth: %d is not a client_auth value",
		            cfg->tls_client_auth);
	if (cfg->tls_client_auth != TRPC_CLIENT_AUTH_NONE && cfg->tls_client_ca_file == NULL)
		return fail(TRPC_ERR_CONFIG, "[tls] client_auth = %s needs [tls] client_ca_file",
		            client_auth_names[cfg->tls_client_auth]);
	char problem[256];
	if (ratelimit_check_services(cfg->ratelimit_services, problem, sizeof problem) != 0)
		return fail(TRPC_ERR_CONFIG, "[ratelimit] services: %s", problem);
	return 0;
}

/* ------------------------------------------------------------------ public API */

/*
 * Fills every field with its default from the table. Allocates the default
 * strings; should that fail (start-up, so unlikely) the field stays NULL
 * and trpc_server_config_load() reports TRPC_ERR_NOMEM.
 */
void trpc_server_config_init(struct trpc_server_config *cfg)
{
	struct problem pb;

	memset(cfg, 0, sizeof(*cfg));
	for (size_t i = 0; i < N_ROWS; i++)
		if (rows[i].def != NULL)
			(void)set_row(cfg, &rows[i], rows[i].def, &pb);
}

/* Frees the strings and zeroes the struct; clearing twice is harmless. */
void trpc_server_config_clear(struct trpc_server_config *cfg)
{
	if (cfg == NULL)
		return;
	for (size_t i = 0; i < N_ROWS; i++) {
		char **field;
		if (rows[i].type != CFG_STRING)
			continue;
		field = string_field(cfg, &rows[i]);
		free(*field);
		*field = NULL; /* two rows may name one field (log.level) */
	}
	memset(cfg, 0, sizeof(*cfg));
}

/*
 * Besides the errors in the header: TRPC_ERR_INVALID for a NULL cfg, key or
 * value, TRPC_ERR_NOMEM when copying a string fails (the old value stays).
 * *why is thread-local (see the top of this file). Cross-key rules
 * (watermarks, TLS files) are checked by trpc_server_config_load() only.
 */
int trpc_server_config_set(struct trpc_server_config *cfg, const char *section, const char *key,
                           const char *value, const char **why)
{
	const struct source src = {.kind = SRC_API};
	int rc;

	if (cfg == NULL || key == NULL || value == NULL)
		rc = fail(TRPC_ERR_INVALID, "trpc_server_config_set: NULL argument");
	else
		rc = apply(cfg, &src, section, key, value);
	if (rc != 0 && why != NULL)
		*why = why_buf;
	return rc;
}

int trpc_server_config_key(size_t i, const char **section, const char **key)
{
	if (i >= N_ROWS)
		return TRPC_ERR_NOT_FOUND;
	*section = rows[i].section;
	*key = rows[i].key;
	return 0;
}

/* v in the largest unit of `units` (largest first) that divides it: 4194304 is "4MiB". */
static void format_units(long long v, const struct unit *units, char *buf, size_t size)
{
	const struct unit *u = units;

	while (v != 0 && u[1].name != NULL && v % u->mult != 0)
		u++;
	snprintf(buf, size, "%lld%s", v == 0 ? 0 : v / u->mult, v == 0 ? "" : u->name);
}

int trpc_server_config_value(const struct trpc_server_config *cfg, size_t i, char *buf, size_t size)
{
	/* The spellings written, largest first; each list ends with its unit 1. */
	static const struct unit size_names[] = {
	    {"GiB", 1LL << 30}, {"MiB", 1LL << 20}, {"KiB", 1LL << 10}, {"", 1}, {NULL, 0}};
	static const struct unit duration_names[] = {{"d", 24 * 3600 * 1000},
	                                             {"h", 3600 * 1000},
	                                             {"m", 60 * 1000},
	                                             {"s", 1000},
	                                             {"ms", 1},
	                                             {NULL, 0}};
	const struct cfg_row *row;
	int v;

	if (cfg == NULL || buf == NULL || size == 0)
		return TRPC_ERR_INVALID;
	if (i >= N_ROWS)
		return TRPC_ERR_NOT_FOUND;
	row = &rows[i];
	if (row->type == CFG_STRING) {
		const char *s = *(char *const *)(const void *)((const char *)cfg + row->offset);
		snprintf(buf, size, "%s", s != NULL ? s : "");
		return 0;
	}
	v = *(const int *)(const void *)((const char *)cfg + row->offset);
	switch (row->type) {
	case CFG_ENUM: {
		int n = 0;
		while (row->names[n] != NULL)
			n++;
		snprintf(buf, size, "%s", v >= 0 && v < n ? row->names[v] : "?");
		break;
	}
	case CFG_BOOL:
		snprintf(buf, size, "%s", v ? "true" : "false");
		break;
	case CFG_SIZE:
		format_units(v, size_names, buf, size);
		break;
	case CFG_DURATION:
		format_units(v, duration_names, buf, size);
		break;
	case CFG_INT:
	case CFG_STRING:
		snprintf(buf, size, "%d", v);
		break;
	}
	return 0;
}

/*
 * Besides the errors in the header: TRPC_ERR_INVALID for a NULL cfg,
 * TRPC_ERR_NOMEM, and whatever negative value `extra` returns other than
 * TRPC_ERR_CONFIG. Unknown TASKER_ variables are offered to `extra` and
 * otherwise ignored (see load_env). On error, cfg holds whatever was
 * applied before it; clear it. *why is thread-local (see the top of this
 * file).
 */
int trpc_server_config_load(struct trpc_server_config *cfg, const char *path, int argc, char **argv,
                            trpc_config_extra_fn extra, void *ud, const char **why)
{
	int rc;

	if (cfg == NULL || (argc > 1 && argv == NULL)) {
		rc = fail(TRPC_ERR_INVALID, "trpc_server_config_load: NULL argument");
		goto out;
	}
	rc = path != NULL ? load_file(cfg, path, extra, ud) : 0;
	if (rc == 0)
		rc = load_env(cfg, extra, ud);
	if (rc == 0)
		rc = load_argv(cfg, argc, argv, extra, ud);
	if (rc == 0)
		rc = check_config(cfg);
out:
	if (rc != 0 && why != NULL)
		*why = why_buf;
	return rc;
}

/*
 * profile: settings from the profile file (libinih), the environment and
 * the command line. See profile.h for the rules.
 *
 * Every key is a row of `keys` below (name, kind, range); loading,
 * validation and `profile show` walk that table.
 */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <ini.h>

#include "cli/profile.h"

#define FILE_NAME       "client.conf"
#define LOCAL_FILE      "tasker-client.conf"
#define SECTION_PREFIX  "profile."
#define DEFAULT_PROFILE "default"
#define MAX_FILE_SIZE   (1024 * 1024)

/* ------------------------------------------------------------------ the key table */

enum key_kind {
	KIND_STRING = 1,
	KIND_TRANSPORT, /* "grpc" | "rest" */
	KIND_URL,       /* http:// or https:// */
	KIND_INT,       /* decimal in [min, max] */
	KIND_HEADER     /* an HTTP header name */
};

struct key_row {
	const char *name;
	enum key_kind kind;
	long min, max;
	int secret;     /* masked when shown */
	int join_space; /* continuation lines are joined with a space (else nothing) */
};

/* Indexed by enum cli_key. */
static const struct key_row keys[CLI_KEY_COUNT] = {
    [CLI_KEY_TRANSPORT] = {"transport", KIND_TRANSPORT, 0, 0, 0, 0},
    [CLI_KEY_ORCHESTRATION_URL] = {"orchestration_url", KIND_URL, 0, 0, 0, 0},
    [CLI_KEY_WORKER_URL] = {"worker_url", KIND_URL, 0, 0, 0, 0},
    [CLI_KEY_TIMEOUT_MS] = {"timeout_ms", KIND_INT, 1, 24L * 3600 * 1000, 0, 0},
    [CLI_KEY_MAX_RETRIES] = {"max_retries", KIND_INT, 0, 10, 0, 0},
    [CLI_KEY_API_KEY] = {"api_key", KIND_STRING, 0, 0, 1, 0},
    [CLI_KEY_API_KEY_HEADER] = {"api_key_header", KIND_HEADER, 0, 0, 0, 0},
    [CLI_KEY_TOKEN] = {"token", KIND_STRING, 0, 0, 1, 0},
    [CLI_KEY_JWT_PRIVATE_KEY_PATH] = {"jwt_private_key_path", KIND_STRING, 0, 0, 0, 0},
    [CLI_KEY_DESCRIPTION] = {"description", KIND_STRING, 0, 0, 0, 1},
};

/* Built-in defaults; the URLs depend on the transport (default_url()). */
static const char *const key_default[CLI_KEY_COUNT] = {
    [CLI_KEY_TRANSPORT] = "grpc",
    [CLI_KEY_TIMEOUT_MS] = "30000",
    [CLI_KEY_MAX_RETRIES] = "3",
    [CLI_KEY_API_KEY_HEADER] = "X-API-Key",
};

const char *cli_profile_key_name(enum cli_key k)
{
	return keys[k].name;
}

int cli_profile_key_secret(enum cli_key k)
{
	return keys[k].secret;
}

static int find_key(const char *name)
{
	int i;

	for (i = 0; i < CLI_KEY_COUNT; i++) {
		if (strcmp(keys[i].name, name) == 0) {
			return i;
		}
	}
	return -1;
}

static int parse_long(const char *s, long *out)
{
	char *end;
	long v;

	if (s == NULL || *s == '\0') {
		return -1;
	}
	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || *end != '\0') {
		return -1;
	}
	*out = v;
	return 0;
}

/* Checks `value` for key k; 0, or -1 with the problem in why. */
static int check_value(enum cli_key k, const char *value, char *why, size_t size)
{
	const struct key_row *r = &keys[k];
	const char *p;
	long v;

	switch (r->kind) {
	case KIND_STRING:
		return 0;
	case KIND_TRANSPORT:
		if (strcmp(value, "grpc") == 0 || strcmp(value, "rest") == 0) {
			return 0;
		}
		snprintf(why, size, "'%s' is not a transport (grpc or rest)", value);
		return -1;
	case KIND_URL:
		if ((strncmp(value, "http://", 7) == 0 && value[7] != '\0') ||
		    (strncmp(value, "https://", 8) == 0 && value[8] != '\0')) {
			return 0;
		}
		snprintf(why, size, "'%s' is not an http:// or https:// URL", value);
		return -1;
	case KIND_INT:
		if (parse_long(value, &v) == 0 && v >= r->min && v <= r->max) {
			return 0;
		}
		snprintf(why, size, "'%s' is not a whole number from %ld to %ld", value, r->min,
		         r->max);
		return -1;
	case KIND_HEADER:
		for (p = value; *p != '\0'; p++) {
			if (!isalnum((unsigned char)*p) && *p != '-' && *p != '_') {
				break;
			}
		}
		if (*value != '\0' && *p == '\0') {
			return 0;
		}
		snprintf(why, size, "'%s' is not an HTTP header name", value);
		return -1;
	}
	return 0;
}

/* ------------------------------------------------------------------ the file */

static void entry_clear(struct cli_profile_entry *e)
{
	int k;

	free(e->name);
	for (k = 0; k < CLI_KEY_COUNT; k++) {
		free(e->value[k]);
	}
}

void cli_profile_file_clear(struct cli_profile_file *f)
{
	size_t i;

	for (i = 0; i < f->n; i++) {
		entry_clear(&f->entries[i]);
	}
	free(f->entries);
	free(f->path);
	memset(f, 0, sizeof *f);
}

static struct cli_profile_entry *file_entry(struct cli_profile_file *f, const char *name)
{
	size_t i;

	for (i = 0; i < f->n; i++) {
		if (strcmp(f->entries[i].name, name) == 0) {
			return &f->entries[i];
		}
	}
	return NULL;
}

/*
 * Parser state, shared by the line reader and the key handler of inih: the
 * reader counts lines so that the handler knows the line it is called for
 * (Debian's libinih passes no line number to handlers).
 */
struct parse {
	struct cli_profile_file *f;
	const char *text;
	size_t len, pos;
	int line;
	const char *line_start; /* the current raw line */
	struct cli_profile_entry *cur;
	char *why;
	size_t why_size;
	int failed;
};

static int parse_fail(struct parse *ps, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int parse_fail(struct parse *ps, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (!ps->failed) {
		ps->failed = 1;
		n = snprintf(ps->why, ps->why_size, "%s:%d: ", ps->f->path, ps->line);
		if (n < 0 || (size_t)n >= ps->why_size) {
			return 0;
		}
		va_start(ap, fmt);
		vsnprintf(ps->why + n, ps->why_size - (size_t)n, fmt, ap);
		va_end(ap);
	}
	return 0;
}

/* A "[...]" line: registers the profile (so that empty sections count too). */
static void on_section_line(struct parse *ps, const char *s, size_t n)
{
	struct cli_profile_entry *e, *grown;
	const char *close = memchr(s, ']', n);
	size_t name_len;
	char name[256];

	ps->cur = NULL;
	if (close == NULL) {
		return; /* inih reports the syntax error */
	}
	name_len = (size_t)(close - s - 1);
	if (name_len >= sizeof name) {
		parse_fail(ps, "section name too long");
		return;
	}
	memcpy(name, s + 1, name_len);
	name[name_len] = '\0';
	if (strncmp(name, SECTION_PREFIX, strlen(SECTION_PREFIX)) != 0 ||
	    name[strlen(SECTION_PREFIX)] == '\0' || strpbrk(name, " \t") != NULL) {
		parse_fail(ps, "unknown section [%s] (sections are [profile.<name>])", name);
		return;
	}
	e = file_entry(ps->f, name + strlen(SECTION_PREFIX));
	if (e == NULL) {
		if (ps->f->n == ps->f->cap) {
			size_t cap = ps->f->cap ? ps->f->cap * 2 : 8;

			grown = realloc(ps->f->entries, cap * sizeof *grown);
			if (grown == NULL) {
				parse_fail(ps, "out of memory");
				return;
			}
			ps->f->entries = grown;
			ps->f->cap = cap;
		}
		e = &ps->f->entries[ps->f->n];
		memset(e, 0, sizeof *e);
		e->name = strdup(name + strlen(SECTION_PREFIX));
		if (e->name == NULL) {
			parse_fail(ps, "out of memory");
			return;
		}
		e->line = ps->line;
		ps->f->n++;
	}
	ps->cur = e;
}

/* inih's reader: one line per call, at most num - 1 bytes with its newline. */
static char *read_line(char *str, int num, void *stream)
{
	struct parse *ps = stream;
	const char *s, *nl;
	size_t n, skip;

	if (ps->failed || ps->pos >= ps->len) {
		return NULL;
	}
	s = ps->text + ps->pos;
	nl = memchr(s, '\n', ps->len - ps->pos);
	n = nl != NULL ? (size_t)(nl - s) + 1 : ps->len - ps->pos;
	ps->line++;
	ps->line_start = s;
	if (n + 1 > (size_t)num) {
		parse_fail(ps,
		           "line longer than %d characters: continue a long value on "
		           "following lines indented by white space",
		           num - 2);
		return NULL;
	}
	memcpy(str, s, n);
	str[n] = '\0';
	ps->pos += n;
	for (skip = 0; skip < n && isspace((unsigned char)s[skip]); skip++) {
	}
	if (skip < n && s[skip] == '[') {
		on_section_line(ps, s + skip, n - skip);
	}
	return str;
}

static int append_value(char **slot, const char *more, int space)
{
	size_t a = strlen(*slot), b = strlen(more);
	char *v = realloc(*slot, a + b + 2);

	if (v == NULL) {
		return -1;
	}
	if (space && a != 0 && b != 0) {
		v[a++] = ' ';
	}
	memcpy(v + a, more, b + 1);
	*slot = v;
	return 0;
}

static int on_key(void *user, const char *section, const char *name, const char *value)
{
	struct parse *ps = user;
	struct cli_profile_entry *e = ps->cur;
	int continued =
	    ps->line_start != NULL && (*ps->line_start == ' ' || *ps->line_start == '\t');
	int k;
	char why[256];

	if (ps->failed) {
		return 1; /* the first error is the one reported */
	}
	if (e == NULL) {
		return parse_fail(ps, "key '%s' outside of a [profile.<name>] section", name);
	}
	k = find_key(name);
	if (k < 0) {
		return parse_fail(ps, "unknown key '%s' in [%s]", name, section);
	}
	if (continued && e->value[k] != NULL) {
		if (append_value(&e->value[k], value, keys[k].join_space) != 0) {
			return parse_fail(ps, "out of memory");
		}
	} else if (e->value[k] != NULL) {
		return parse_fail(ps, "key '%s' given twice in [%s] (first on line %d)", name,
		                  section, e->value_line[k]);
	} else {
		e->value[k] = strdup(value);
		if (e->value[k] == NULL) {
			return parse_fail(ps, "out of memory");
		}
		e->value_line[k] = ps->line;
	}
	if (check_value(k, e->value[k], why, sizeof why) != 0) {
		return parse_fail(ps, "bad value for '%s' in [%s]: %s", name, section, why);
	}
	return 1;
}

/* Reads the whole file (profile files are small). NULL with errno set. */
static char *slurp(const char *path, size_t *len)
{
	FILE *fp = fopen(path, "rb");
	char *buf;
	size_t n;

	if (fp == NULL) {
		return NULL;
	}
	buf = malloc(MAX_FILE_SIZE + 1);
	if (buf == NULL) {
		fclose(fp);
		errno = ENOMEM;
		return NULL;
	}
	n = fread(buf, 1, MAX_FILE_SIZE + 1, fp);
	if (ferror(fp) || n > MAX_FILE_SIZE) {
		int e = ferror(fp) ? EIO : EFBIG;

		free(buf);
		fclose(fp);
		errno = e;
		return NULL;
	}
	fclose(fp);
	buf[n] = '\0';
	*len = n;
	return buf;
}

/* The candidate files in search order; returns how many (at most 3). */
static int candidates(const char *config_path, char paths[3][4096])
{
	const char *xdg = getenv("XDG_CONFIG_HOME");
	const char *home = getenv("HOME");
	int n = 0;

	if (config_path != NULL) {
		snprintf(paths[n++], 4096, "%s", config_path);
		return n;
	}
	if (xdg != NULL && *xdg == '/') {
		snprintf(paths[n++], 4096, "%s/tasker/%s", xdg, FILE_NAME);
	} else if (home != NULL && *home != '\0') {
		snprintf(paths[n++], 4096, "%s/.config/tasker/%s", home, FILE_NAME);
	}
	snprintf(paths[n++], 4096, "./%s", LOCAL_FILE);
	return n;
}

const char *cli_profile_search_text(const char *config_path, char *buf, size_t size)
{
	char paths[3][4096];
	int i, n = candidates(config_path, paths);
	size_t used = 0;

	buf[0] = '\0';
	for (i = 0; i < n && used < size; i++) {
		int w = snprintf(buf + used, size - used, "%s%s", i ? ", " : "", paths[i]);

		if (w < 0) {
			break;
		}
		used += (size_t)w;
	}
	return buf;
}

int cli_profile_file_load(struct cli_profile_file *f, const char *config_path, char *why,
                          size_t why_size)
{
	char paths[3][4096];
	int i, n = candidates(config_path, paths), rc;
	struct parse ps;
	char *text = NULL;
	size_t len = 0;

	memset(f, 0, sizeof *f);
	for (i = 0; i < n; i++) {
		text = slurp(paths[i], &len);
		if (text != NULL) {
			break;
		}
		if (errno != ENOENT || config_path != NULL) {
			snprintf(why, why_size, "cannot read %s: %s", paths[i], strerror(errno));
			return -1;
		}
	}
	if (text == NULL) {
		return 0;
	}
	f->path = strdup(paths[i]);
	if (f->path == NULL) {
		free(text);
		snprintf(why, why_size, "out of memory");
		return -1;
	}
	memset(&ps, 0, sizeof ps);
	ps.f = f;
	ps.text = text;
	ps.len = len;
	ps.why = why;
	ps.why_size = why_size;
	rc = ini_parse_stream(read_line, &ps, on_key, &ps);
	free(text);
	if (!ps.failed && rc != 0) {
		ps.line = rc;
		parse_fail(&ps, "syntax error (expected [profile.<name>] or key = value)");
	}
	if (ps.failed) {
		cli_profile_file_clear(f);
		return -1;
	}
	return 0;
}

/* ------------------------------------------------------------------ resolution */

void cli_profile_clear(struct cli_profile *p)
{
	int k;

	free(p->name);
	free(p->file);
	for (k = 0; k < CLI_KEY_COUNT; k++) {
		free(p->value[k]);
	}
	free(p->cred_value[0]);
	free(p->cred_value[1]);
	memset(p, 0, sizeof *p);
}

static int set_str(char **slot, const char *value)
{
	char *v = strdup(value);

	if (v == NULL) {
		return -1;
	}
	free(*slot);
	*slot = v;
	return 0;
}

/* Sets one setting after checking it; `origin` names the source in errors. */
static int set_key(struct cli_profile *p, enum cli_key k, const char *value, const char *source,
                   char *why, size_t size)
{
	char problem[256];

	if (check_value(k, value, problem, sizeof problem) != 0) {
		snprintf(why, size, "%s: bad value for %s: %s", source, keys[k].name, problem);
		return -1;
	}
	if (set_str(&p->value[k], value) != 0) {
		snprintf(why, size, "out of memory");
		return -1;
	}
	snprintf(p->source[k], sizeof p->source[k], "%s", source);
	return 0;
}

static int set_from_entry(struct cli_profile *p, const struct cli_profile_entry *e,
                          const char *path, char *why, size_t size)
{
	char src[192];
	int k;

	for (k = 0; k < CLI_KEY_COUNT; k++) {
		if (e->value[k] == NULL) {
			continue;
		}
		snprintf(src, sizeof src, "%s:%d", path, e->value_line[k]);
		if (set_key(p, k, e->value[k], src, why, size) != 0) {
			return -1;
		}
	}
	return 0;
}

static int set_from_env(struct cli_profile *p, enum cli_key k, const char *var, char *why,
                        size_t size)
{
	const char *v = getenv(var);
	char src[96];

	if (v == NULL || *v == '\0') {
		return 0;
	}
	snprintf(src, sizeof src, "env %s", var);
	return set_key(p, k, v, src, why, size);
}

static const char *default_url(enum cli_transport t, enum cli_target target)
{
	static const char *const urls[2][2] = {
	    {"http://localhost:9090", "http://localhost:9100"}, /* gRPC */
	    {"http://localhost:8080", "http://localhost:8081"}, /* REST */
	};

	return urls[t == CLI_TRANSPORT_REST][target];
}

/* One source of credentials: the first of its token, api key, private key. */
struct cred_layer {
	const char *token, *api_key, *jwt_key;
	char token_src[192], api_key_src[192], jwt_key_src[192];
};

static int take_cred(struct cli_profile *p, enum cli_target t, const struct cred_layer *l)
{
	const char *v = NULL, *src = NULL;
	enum cli_cred kind = CLI_CRED_NONE;

	if (l->token != NULL && *l->token != '\0') {
		kind = CLI_CRED_BEARER, v = l->token, src = l->token_src;
	} else if (l->api_key != NULL && *l->api_key != '\0') {
		kind = CLI_CRED_API_KEY, v = l->api_key, src = l->api_key_src;
	} else if (l->jwt_key != NULL && *l->jwt_key != '\0') {
		kind = CLI_CRED_JWT_KEY, v = l->jwt_key, src = l->jwt_key_src;
	}
	if (kind == CLI_CRED_NONE) {
		return 0;
	}
	if (set_str(&p->cred_value[t], v) != 0) {
		return -1;
	}
	p->cred[t] = kind;
	snprintf(p->cred_source[t], sizeof p->cred_source[t], "%s", src);
	return 1;
}

static void layer_from_entry(struct cred_layer *l, const struct cli_profile_entry *e,
                             const char *path)
{
	memset(l, 0, sizeof *l);
	if (e == NULL) {
		return;
	}
	l->token = e->value[CLI_KEY_TOKEN];
	l->api_key = e->value[CLI_KEY_API_KEY];
	l->jwt_key = e->value[CLI_KEY_JWT_PRIVATE_KEY_PATH];
	snprintf(l->token_src, sizeof l->token_src, "%s:%d", path, e->value_line[CLI_KEY_TOKEN]);
	snprintf(l->api_key_src, sizeof l->api_key_src, "%s:%d", path,
	         e->value_line[CLI_KEY_API_KEY]);
	snprintf(l->jwt_key_src, sizeof l->jwt_key_src, "%s:%d", path,
	         e->value_line[CLI_KEY_JWT_PRIVATE_KEY_PATH]);
}

/* The environment's credentials for a target, highest first. */
static int env_cred(struct cli_profile *p, enum cli_target t)
{
	static const char *const token_vars[2] = {"TASKER_ORCHESTRATION_AUTH_TOKEN",
	                                          "TASKER_WORKER_AUTH_TOKEN"};
	struct cred_layer l;
	const char *v;
	int rc;

	memset(&l, 0, sizeof l);
	v = getenv(token_vars[t]);
	if (v != NULL && *v != '\0') {
		l.token = v;
		snprintf(l.token_src, sizeof l.token_src, "env %s", token_vars[t]);
	} else if ((v = getenv("TASKER_AUTH_TOKEN")) != NULL && *v != '\0') {
		l.token = v;
		snprintf(l.token_src, sizeof l.token_src, "env TASKER_AUTH_TOKEN");
	}
	l.api_key = getenv("TASKER_API_KEY");
	snprintf(l.api_key_src, sizeof l.api_key_src, "env TASKER_API_KEY");
	l.jwt_key = getenv("TASKER_JWT_PRIVATE_KEY_PATH");
	snprintf(l.jwt_key_src, sizeof l.jwt_key_src, "env TASKER_JWT_PRIVATE_KEY_PATH");
	rc = take_cred(p, t, &l);
	return rc;
}

static int resolve_creds(struct cli_profile *p, const struct cli_profile_entry *def,
                         const struct cli_profile_entry *sel, const char *path)
{
	struct cred_layer l;
	int t, rc;

	for (t = 0; t < 2; t++) {
		rc = env_cred(p, t);
		if (rc == 0) {
			layer_from_entry(&l, sel, path);
			rc = take_cred(p, t, &l);
		}
		if (rc == 0 && def != sel) {
			layer_from_entry(&l, def, path);
			rc = take_cred(p, t, &l);
		}
		if (rc < 0) {
			return -1;
		}
	}
	return 0;
}

static int resolve_urls(struct cli_profile *p, const struct cli_overrides *o, char *why,
                        size_t size)
{
	static const char *const env_url[2][2] = {
	    {"TASKER_ORCHESTRATION_URL", "TASKER_ORCHESTRATION_GRPC_URL"},
	    {"TASKER_WORKER_URL", "TASKER_WORKER_GRPC_URL"},
	};
	static const enum cli_key url_key[2] = {CLI_KEY_ORCHESTRATION_URL, CLI_KEY_WORKER_URL};
	int t;

	for (t = 0; t < 2; t++) {
		enum cli_key k = url_key[t];

		if (p->value[k] == NULL &&
		    set_key(p, k, default_url(p->transport, t), "default", why, size) != 0) {
			return -1;
		}
		if (set_from_env(p, k, env_url[t][0], why, size) != 0) {
			return -1;
		}
		if (p->transport == CLI_TRANSPORT_GRPC &&
		    set_from_env(p, k, env_url[t][1], why, size) != 0) {
			return -1;
		}
	}
	if (o->url != NULL && set_key(p, CLI_KEY_ORCHESTRATION_URL, o->url, "--url", why, size)) {
		return -1;
	}
	return 0;
}

static int resolve_timeouts(struct cli_profile *p, const struct cli_overrides *o, char *why,
                            size_t size)
{
	long v;

	/* The worker timeout starts from the profile's timeout_ms. */
	parse_long(p->value[CLI_KEY_TIMEOUT_MS], &v);
	p->worker_timeout_ms = (int)v;
	snprintf(p->worker_timeout_source, sizeof p->worker_timeout_source, "%s",
	         p->source[CLI_KEY_TIMEOUT_MS]);
	if (set_from_env(p, CLI_KEY_TIMEOUT_MS, "TASKER_ORCHESTRATION_TIMEOUT_MS", why, size) !=
	    0) {
		return -1;
	}
	if (getenv("TASKER_WORKER_TIMEOUT_MS") != NULL) {
		if (parse_long(getenv("TASKER_WORKER_TIMEOUT_MS"), &v) != 0 ||
		    v < keys[CLI_KEY_TIMEOUT_MS].min || v > keys[CLI_KEY_TIMEOUT_MS].max) {
			snprintf(why, size, "env TASKER_WORKER_TIMEOUT_MS: bad value '%s'",
			         getenv("TASKER_WORKER_TIMEOUT_MS"));
			return -1;
		}
		p->worker_timeout_ms = (int)v;
		snprintf(p->worker_timeout_source, sizeof p->worker_timeout_source,
		         "env TASKER_WORKER_TIMEOUT_MS");
	}
	if (o->timeout_ms != NULL) {
		if (set_key(p, CLI_KEY_TIMEOUT_MS, o->timeout_ms, "--timeout", why, size) != 0) {
			return -1;
		}
		parse_long(o->timeout_ms, &v);
		p->worker_timeout_ms = (int)v;
		snprintf(p->worker_timeout_source, sizeof p->worker_timeout_source, "--timeout");
	}
	parse_long(p->value[CLI_KEY_TIMEOUT_MS], &v);
	p->timeout_ms = (int)v;
	parse_long(p->value[CLI_KEY_MAX_RETRIES], &v);
	p->max_retries = (int)v;
	return 0;
}

int cli_profile_resolve(struct cli_profile *p, const struct cli_overrides *o, char *why,
                        size_t size)
{
	struct cli_profile_file f;
	const struct cli_profile_entry *def, *sel;
	const char *name = o->profile != NULL ? o->profile : DEFAULT_PROFILE;
	char places[8192];
	int k;

	memset(p, 0, sizeof *p);
	if (cli_profile_file_load(&f, o->config_path, why, size) != 0) {
		return -1;
	}
	def = file_entry(&f, DEFAULT_PROFILE);
	sel = file_entry(&f, name);
	if (sel == NULL && strcmp(name, DEFAULT_PROFILE) != 0) {
		if (f.path != NULL) {
			snprintf(why, size, "profile '%s' is not defined in %s", name, f.path);
		} else {
			snprintf(why, size,
			         "profile '%s' requested, but no profile file was found (%s)", name,
			         cli_profile_search_text(o->config_path, places, sizeof places));
		}
		goto fail;
	}
	if ((p->name = strdup(name)) == NULL ||
	    (f.path != NULL && (p->file = strdup(f.path)) == NULL)) {
		snprintf(why, size, "out of memory");
		goto fail;
	}
	for (k = 0; k < CLI_KEY_COUNT; k++) {
		if (key_default[k] != NULL &&
		    set_key(p, k, key_default[k], "default", why, size) != 0) {
			goto fail;
		}
	}
	if (def != NULL && set_from_entry(p, def, f.path, why, size) != 0) {
		goto fail;
	}
	if (sel != NULL && sel != def && set_from_entry(p, sel, f.path, why, size) != 0) {
		goto fail;
	}
	if (set_from_env(p, CLI_KEY_TRANSPORT, "TASKER_CLIENT_TRANSPORT", why, size) != 0 ||
	    set_from_env(p, CLI_KEY_API_KEY_HEADER, "TASKER_API_KEY_HEADER", why, size) != 0 ||
	    (o->transport != NULL &&
	     set_key(p, CLI_KEY_TRANSPORT, o->transport, "--transport", why, size) != 0)) {
		goto fail;
	}
	p->transport = strcmp(p->value[CLI_KEY_TRANSPORT], "rest") == 0 ? CLI_TRANSPORT_REST
	                                                                : CLI_TRANSPORT_GRPC;
	if (resolve_urls(p, o, why, size) != 0 || resolve_timeouts(p, o, why, size) != 0) {
		goto fail;
	}
	if (resolve_creds(p, def, sel, f.path) != 0) {
		snprintf(why, size, "out of memory");
		goto fail;
	}
	cli_profile_file_clear(&f);
	return 0;
fail:
	cli_profile_file_clear(&f);
	cli_profile_clear(p);
	return -1;
}

/* ------------------------------------------------------------------ display */

const char *cli_profile_mask(const char *value, char *buf, size_t size)
{
	size_t n = strlen(value);

	/* Short secrets are hidden completely; long ones keep their last four
	 * characters, enough to tell two keys apart. */
	if (n < 12) {
		snprintf(buf, size, "****");
	} else {
		snprintf(buf, size, "****%s (%zu characters)", value + n - 4, n);
	}
	return buf;
}

const char *cli_profile_cred_name(enum cli_cred c)
{
	switch (c) {
	case CLI_CRED_BEARER:
		return "bearer token";
	case CLI_CRED_API_KEY:
		return "api key";
	case CLI_CRED_JWT_KEY:
		return "token signed with jwt_private_key_path";
	case CLI_CRED_NONE:
		break;
	}
	return "none";
}

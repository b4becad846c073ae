/*
 * config: struct auth_config from the keys of [auth] and of the
 * [auth.api_key.<name>] sections.
 *
 * Every [auth] key is one row of `rows`: name, type, default, offset and
 * range. auth_config_new() applies the defaults by parsing them like any
 * other value, auth_config_set() parses one value; neither names a field.
 * Cross-field rules (what must be present when auth is enabled, http JWKS
 * URLs) are in auth_config_check(), because INI keys come in any order.
 */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "auth/auth_int.h"

/* ------------------------------------------------------------------ the table */

enum row_type {
	ROW_BOOL = 1,   /* int 0/1: true/false, yes/no, on/off, 1/0 */
	ROW_INT,        /* int in [min, max] */
	ROW_STRING,     /* char *; "" stores NULL */
	ROW_TEXT,       /* char *, literal "\n" sequences become newlines (inline PEM) */
	ROW_WORD,       /* char *, non-empty, no spaces */
	ROW_METHOD,     /* int enum auth_method */
	ROW_ALGORITHMS, /* unsigned AUTH_ALG_BIT mask */
	ROW_URL,        /* char *: https://, http://, file:// or a path */
	ROW_ROLE_DEF,   /* char *; default depends on the role (issuer, audience) */
	ROW_HEADER      /* char *: an HTTP header name, not Authorization */
};

struct row {
	const char *key;
	enum row_type type;
	const char *def; /* parsed like a configured value; NULL: none */
	size_t offset;
	int min, max;
};

#define OFF(field) offsetof(struct auth_config, field)

/* The leeway default: 30 s absorbs ordinary clock skew between the token
 * issuer and this host without keeping an expired token alive for long. */
/* clang-format off */
static const struct row rows[] = {
	{"enabled",                           ROW_BOOL,       "false",       OFF(enabled),                           0, 1},
	{"jwt_verification_method",           ROW_METHOD,     "public_key",  OFF(method),                            0, 0},
	{"jwt_public_key_path",               ROW_STRING,     NULL,          OFF(jwt_public_key_path),               0, 0},
	{"jwt_public_key",                    ROW_TEXT,       NULL,          OFF(jwt_public_key),                    0, 0},
	{"jwks_url",                          ROW_URL,        NULL,          OFF(jwks_url),                          0, 0},
	{"jwks_url_allow_http",               ROW_BOOL,       "false",       OFF(jwks_url_allow_http),               0, 1},
	{"jwks_refresh_interval_seconds",     ROW_INT,        "3600",        OFF(jwks_refresh_interval_seconds),     1, 7 * 86400},
	{"jwks_max_stale_seconds",            ROW_INT,        "300",         OFF(jwks_max_stale_seconds),            0, 7 * 86400},
	{"jwks_min_refresh_interval_seconds", ROW_INT,        "10",          OFF(jwks_min_refresh_interval_seconds), 0, 3600},
	{"jwt_allowed_algorithms",            ROW_ALGORITHMS, "RS256",       OFF(alg_mask),                          0, 0},
	{"jwt_issuer",                        ROW_ROLE_DEF,   NULL,          OFF(jwt_issuer),                        0, 0},
	{"jwt_audience",                      ROW_ROLE_DEF,   NULL,          OFF(jwt_audience),                      0, 0},
	{"permissions_claim",                 ROW_WORD,       "permissions", OFF(permissions_claim),                 0, 0},
	{"api_key_header",                    ROW_HEADER,     "X-API-Key",   OFF(api_key_header),                    0, 0},
	{"api_keys_enabled",                  ROW_BOOL,       "false",       OFF(api_keys_enabled),                  0, 1},
	{"api_key",                           ROW_STRING,     NULL,          OFF(api_key),                           0, 0},
	{"strict_validation",                 ROW_BOOL,       "true",        OFF(strict_validation),                 0, 1},
	{"log_unknown_permissions",           ROW_BOOL,       "true",        OFF(log_unknown_permissions),           0, 1},
	{"leeway_seconds",                    ROW_INT,        "30",          OFF(leeway_seconds),                    0, 300},
};
/* clang-format on */

static const struct row *find_row(const char *key)
{
	for (size_t i = 0; i < AUTH_ARRAY_LEN(rows); i++)
		if (strcmp(rows[i].key, key) == 0)
			return &rows[i];
	return NULL;
}

/* The offsets come from offsetof() on fields of these types. */
static int *int_at(struct auth_config *c, const struct row *r)
{
	return (int *)(void *)((char *)c + r->offset);
}

static unsigned *uint_at(struct auth_config *c, const struct row *r)
{
	return (unsigned *)(void *)((char *)c + r->offset);
}

static char **str_at(struct auth_config *c, const struct row *r)
{
	return (char **)(void *)((char *)c + r->offset);
}

/* ------------------------------------------------------------------ value parsers */

static int parse_bool(const char *v, int *out)
{
	static const char *const yes[] = {"true", "yes", "on", "1"};
	static const char *const no[] = {"false", "no", "off", "0"};

	for (size_t i = 0; i < AUTH_ARRAY_LEN(yes); i++) {
		if (strcasecmp(v, yes[i]) == 0) {
			*out = 1;
			return 0;
		}
		if (strcasecmp(v, no[i]) == 0) {
			*out = 0;
			return 0;
		}
	}
	return -1;
}

static int parse_int(const char *v, long *out)
{
	char *end;

	errno = 0;
	long n = strtol(v, &end, 10);
	if (end == v || *end != '\0' || errno != 0)
		return -1;
	*out = n;
	return 0;
}

int auth_split_list(const char *text, int (*fn)(void *ud, const char *item), void *ud)
{
	char item[256];
	const char *p = text;

	while (*p != '\0') {
		size_t n = strcspn(p, ",");
		const char *s = p, *e = p + n;
		while (s < e && (*s == ' ' || *s == '\t'))
			s++;
		while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
			e--;
		if (e > s) {
			size_t len = (size_t)(e - s);
			if (len >= sizeof item)
				len =
				    sizeof item - 1; /* longer than any valid item: still invalid */
			memcpy(item, s, len);
			item[len] = '\0';
			int rc = fn(ud, item);
			if (rc != 0)
				return rc;
		}
		p += n;
		if (*p == ',')
			p++;
	}
	return 0;
}

struct alg_parse {
	unsigned mask;
	struct tk_err *err;
};

static int on_alg_item(void *ud, const char *item)
{
	struct alg_parse *ap = ud;
	int alg = auth_alg_from_name(item);

	if (alg >= 0) {
		ap->mask |= AUTH_ALG_BIT(alg);
		return 0;
	}
	char allowed[128];
	auth_alg_mask_text((1u << AUTH_ALG_COUNT) - 1, allowed, sizeof allowed);
	if (strncasecmp(item, "HS", 2) == 0 || strcasecmp(item, "none") == 0)
		return tk_err_set(ap->err, TRPC_ERR_CONFIG,
		                  "auth.jwt_allowed_algorithms: \"%s\" is never accepted (only "
		                  "public-key algorithms: %s)",
		                  item, allowed);
	return tk_err_set(ap->err, TRPC_ERR_CONFIG,
	                  "auth.jwt_allowed_algorithms: unknown algorithm \"%s\" (allowed: %s)",
	                  item, allowed);
}

/* Replaces the two-character sequence \n with a newline, so that a PEM key
 * fits on one line of an INI file or in an environment variable. */
static char *unescape_newlines(const char *v)
{
	char *out = strdup(v);
	if (out == NULL)
		return NULL;
	char *w = out;
	for (const char *r = v; *r != '\0'; r++) {
		if (r[0] == '\\' && r[1] == 'n') {
			*w++ = '\n';
			r++;
		} else {
			*w++ = *r;
		}
	}
	*w = '\0';
	return out;
}

/*
 * Inline PEM. Two spellings work: one line with "\n" sequences, or the
 * INI multi-line form (continuation lines indented), for which inih calls
 * the handler once per line with the same key. So a line continues the
 * stored value while that holds a "-----BEGIN" without its "-----END" and
 * the line does not start a new key; any other value replaces it.
 */
static int set_text(char **field, const char *v, struct tk_err *err)
{
	char *text = unescape_newlines(v);
	if (text == NULL)
		return tk_err_set(err, TRPC_ERR_NOMEM, "out of memory");
	const char *old = *field;
	if (old != NULL && strstr(old, "-----BEGIN ") != NULL && strstr(old, "-----END ") == NULL &&
	    strstr(text, "-----BEGIN ") == NULL) {
		size_t n = strlen(old) + 1 + strlen(text) + 1;
		char *joined = malloc(n);
		if (joined == NULL) {
			free(text);
			return tk_err_set(err, TRPC_ERR_NOMEM, "out of memory");
		}
		snprintf(joined, n, "%s\n%s", old, text);
		free(text);
		text = joined;
	}
	free(*field);
	*field = *text != '\0' ? text : NULL;
	if (*text == '\0')
		free(text);
	return 0;
}

/* An RFC 9110 token, short, and not the header bearer tokens come in. */
static int header_name_ok(const char *v)
{
	size_t n = strlen(v);
	if (n == 0 || n > 64 || strcasecmp(v, "authorization") == 0)
		return 0;
	for (const char *p = v; *p != '\0'; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || strchr("!#$%&'*+-.^_`|~", *p) != NULL))
			return 0;
	return 1;
}

static int url_kind_known(const char *v)
{
	const char *colon = strstr(v, "://");
	if (colon == NULL)
		return 1; /* a path */
	return strncasecmp(v, "https://", 8) == 0 || strncasecmp(v, "http://", 7) == 0 ||
	       strncasecmp(v, "file://", 7) == 0;
}

static int set_string(char **field, const char *v, struct tk_err *err)
{
	char *copy = NULL;
	if (v != NULL && *v != '\0') {
		copy = strdup(v);
		if (copy == NULL)
			return tk_err_set(err, TRPC_ERR_NOMEM, "out of memory");
	}
	free(*field);
	*field = copy;
	return 0;
}

static int set_row(struct auth_config *c, const struct row *r, const char *v, struct tk_err *err)
{
	long n;
	int b;

	switch (r->type) {
	case ROW_BOOL:
		if (parse_bool(v, &b) != 0)
			return tk_err_set(err, TRPC_ERR_CONFIG,
			                  "auth.%s: \"%s\" is not a boolean (true or false)",
			                  r->key, v);
		*int_at(c, r) = b;
		return 0;
	case ROW_INT:
		if (parse_int(v, &n) != 0)
			return tk_err_set(err, TRPC_ERR_CONFIG, "auth.%s: \"%s\" is not an integer",
			                  r->key, v);
		if (n < r->min || n > r->max)
			return tk_err_set(err, TRPC_ERR_CONFIG,
			                  "auth.%s: %ld is out of range %d..%d", r->key, n, r->min,
			                  r->max);
		*int_at(c, r) = (int)n;
		return 0;
	case ROW_METHOD:
		if (strcmp(v, "public_key") == 0)
			*int_at(c, r) = AUTH_METHOD_PUBLIC_KEY;
		else if (strcmp(v, "jwks") == 0)
			*int_at(c, r) = AUTH_METHOD_JWKS;
		else
			return tk_err_set(err, TRPC_ERR_CONFIG,
			                  "auth.%s: \"%s\" is not a method (public_key or jwks)",
			                  r->key, v);
		return 0;
	case ROW_ALGORITHMS: {
		struct alg_parse ap = {0, err};
		int rc = auth_split_list(v, on_alg_item, &ap);
		if (rc != 0)
			return rc;
		if (ap.mask == 0)
			return tk_err_set(
			    err, TRPC_ERR_CONFIG,
			    "auth.%s: the list is empty (name at least one algorithm)", r->key);
		*uint_at(c, r) = ap.mask;
		return 0;
	}
	case ROW_TEXT:
		return set_text(str_at(c, r), v, err);
	case ROW_WORD:
	case ROW_ROLE_DEF:
		if (*v == '\0' || strpbrk(v, " \t\r\n") != NULL)
			return tk_err_set(err, TRPC_ERR_CONFIG,
			                  "auth.%s: \"%s\" must be a non-empty word without spaces",
			                  r->key, v);
		return set_string(str_at(c, r), v, err);
	case ROW_HEADER:
		if (!header_name_ok(v))
			return tk_err_set(
			    err, TRPC_ERR_CONFIG,
			    "auth.%s: \"%s\" is not a header name (1..64 letters, digits "
			    "and !#$%%&'*+-.^_`|~, not Authorization)",
			    r->key, v);
		return set_string(str_at(c, r), v, err);
	case ROW_URL:
		if (!url_kind_known(v))
			return tk_err_set(
			    err, TRPC_ERR_CONFIG,
			    "auth.%s: \"%s\" is not an https://, http:// or file:// URL "
			    "or a file path",
			    r->key, v);
		return set_string(str_at(c, r), v, err);
	case ROW_STRING:
		return set_string(str_at(c, r), v, err);
	}
	return tk_err_set(err, TRPC_ERR_CONFIG, "auth.%s: unsupported setting", r->key);
}

/* ------------------------------------------------------------------ API-key sections */

#define API_KEY_SECTION "auth.api_key."

/* The keys of an [auth.api_key.<name>] section. */
static const char *const api_key_keys[] = {"key", "permissions", "description"};

static int api_key_key_known(const char *key)
{
	for (size_t i = 0; i < AUTH_ARRAY_LEN(api_key_keys); i++)
		if (strcmp(api_key_keys[i], key) == 0)
			return 1;
	return 0;
}

static int name_ok(const char *name)
{
	if (*name == '\0' || strlen(name) > 64)
		return 0;
	for (const char *p = name; *p != '\0'; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || *p == '_' || *p == '-' || *p == '.'))
			return 0;
	return 1;
}

static struct auth_cfg_api_key *key_entry(struct auth_config *c, const char *name,
                                          struct tk_err *err)
{
	for (size_t i = 0; i < c->nkeys; i++)
		if (strcmp(c->keys[i].name, name) == 0)
			return &c->keys[i];
	if (c->nkeys == c->cap_keys) {
		size_t cap = c->cap_keys != 0 ? c->cap_keys * 2 : 4;
		struct auth_cfg_api_key *k = realloc(c->keys, cap * sizeof *k);
		if (k == NULL) {
			tk_err_set(err, TRPC_ERR_NOMEM, "out of memory");
			return NULL;
		}
		c->keys = k;
		c->cap_keys = cap;
	}
	struct auth_cfg_api_key *e = &c->keys[c->nkeys];
	memset(e, 0, sizeof *e);
	e->name = strdup(name);
	if (e->name == NULL) {
		tk_err_set(err, TRPC_ERR_NOMEM, "out of memory");
		return NULL;
	}
	c->nkeys++;
	return e;
}

static int set_api_key_entry(struct auth_config *c, const char *name, const char *key,
                             const char *value, struct tk_err *err)
{
	if (!name_ok(name))
		return tk_err_set(err, TRPC_ERR_CONFIG,
		                  "[" API_KEY_SECTION "%s]: the name must be 1..64 characters of "
		                  "letters, digits, '_', '-' and '.'",
		                  name);
	char **field;
	struct auth_cfg_api_key *e;
	if (!api_key_key_known(key))
		return tk_err_set(err, TRPC_ERR_CONFIG,
		                  API_KEY_SECTION "%s.%s: unknown key (known: key, permissions, "
		                                  "description)",
		                  name, key);
	e = key_entry(c, name, err);
	if (e == NULL)
		return err != NULL ? err->code : TRPC_ERR_NOMEM;
	field = strcmp(key, "key") == 0           ? &e->key
	        : strcmp(key, "permissions") == 0 ? &e->permissions
	                                          : &e->description;
	return set_string(field, value, err);
}

/* ------------------------------------------------------------------ API */

struct auth_config *auth_config_new(const char *role)
{
	int worker;

	if (role == NULL || strcmp(role, "orchestration") == 0)
		worker = 0;
	else if (strcmp(role, "worker") == 0)
		worker = 1;
	else
		return NULL;
	struct auth_config *c = calloc(1, sizeof *c);
	if (c == NULL)
		return NULL;
	c->role_worker = worker;
	for (size_t i = 0; i < AUTH_ARRAY_LEN(rows); i++) {
		const char *def = rows[i].def;
		if (rows[i].type == ROW_ROLE_DEF)
			def = strcmp(rows[i].key, "jwt_issuer") == 0
			          ? (worker ? "tasker-worker" : "tasker-core")
			          : (worker ? "worker-api" : "tasker-api");
		if (def != NULL && set_row(c, &rows[i], def, NULL) != 0) {
			auth_config_free(c);
			return NULL;
		}
	}
	return c;
}

void auth_config_free(struct auth_config *c)
{
	if (c == NULL)
		return;
	for (size_t i = 0; i < AUTH_ARRAY_LEN(rows); i++) {
		enum row_type t = rows[i].type;
		if (t == ROW_STRING || t == ROW_TEXT || t == ROW_WORD || t == ROW_URL ||
		    t == ROW_ROLE_DEF || t == ROW_HEADER)
			free(*str_at(c, &rows[i]));
	}
	for (size_t i = 0; i < c->nkeys; i++) {
		free(c->keys[i].name);
		free(c->keys[i].key);
		free(c->keys[i].permissions);
		free(c->keys[i].description);
	}
	free(c->keys);
	free(c);
}

/*
 * The command-line and environment spelling of an API-key entry: the
 * loader splits "--auth.api_key.ops.key=..." at its first dot, so it comes
 * as section "auth", key "api_key.ops.key". Rewrites that to section
 * "auth.api_key.ops", key "key" in `buf`; anything else is left as it is.
 */
static void split_api_key_option(const char **section, const char **key, char *buf, size_t size)
{
	static const char prefix[] = "api_key.";
	const char *name, *dot;

	if (strcmp(*section, "auth") != 0 || strncmp(*key, prefix, strlen(prefix)) != 0)
		return;
	name = *key + strlen(prefix);
	if ((dot = strrchr(name, '.')) == NULL || dot == name)
		return;
	snprintf(buf, size, API_KEY_SECTION "%.*s", (int)(dot - name), name);
	*section = buf;
	*key = dot + 1;
}

int auth_config_key(size_t i, const char **section, const char **key)
{
	if (i < AUTH_ARRAY_LEN(rows)) {
		*section = "auth";
		*key = rows[i].key;
		return 0;
	}
	i -= AUTH_ARRAY_LEN(rows);
	if (i >= AUTH_ARRAY_LEN(api_key_keys))
		return TRPC_ERR_NOT_FOUND;
	*section = API_KEY_SECTION "<name>";
	*key = api_key_keys[i];
	return 0;
}

int auth_config_knows(const char *section, const char *key)
{
	char buf[160];

	if (section == NULL || key == NULL)
		return 0;
	split_api_key_option(&section, &key, buf, sizeof buf);
	if (strncmp(section, API_KEY_SECTION, strlen(API_KEY_SECTION)) == 0)
		return api_key_key_known(key);
	return strcmp(section, "auth") == 0 && find_row(key) != NULL;
}

int auth_config_set(struct auth_config *c, const char *section, const char *key, const char *value,
                    struct tk_err *err)
{
	char buf[160];

	if (c == NULL || section == NULL || key == NULL || value == NULL)
		return tk_err_set(err, TRPC_ERR_INVALID, "auth_config_set: NULL argument");
	split_api_key_option(&section, &key, buf, sizeof buf);
	if (strncmp(section, API_KEY_SECTION, strlen(API_KEY_SECTION)) == 0)
		return set_api_key_entry(c, section + strlen(API_KEY_SECTION), key, value, err);
	if (strcmp(section, "auth") != 0)
		return tk_err_set(
		    err, TRPC_ERR_CONFIG,
		    "[%s]: not an auth section ([auth] or [" API_KEY_SECTION "<name>])", section);
	const struct row *r = find_row(key);
	if (r == NULL)
		return tk_err_set(err, TRPC_ERR_CONFIG, "auth.%s: unknown key", key);
	return set_row(c, r, value, err);
}

int auth_config_check(const struct auth_config *c, struct tk_err *err)
{
	if (!c->enabled)
		return 0;
	if (c->method == AUTH_METHOD_JWKS && c->jwks_url == NULL)
		return tk_err_set(
		    err, TRPC_ERR_CONFIG,
		    "auth.jwks_url: required when auth.jwt_verification_method is jwks");
	if (c->method == AUTH_METHOD_JWKS && strncasecmp(c->jwks_url, "http://", 7) == 0 &&
	    !c->jwks_url_allow_http)
		return tk_err_set(err, TRPC_ERR_CONFIG,
		                  "auth.jwks_url: plain http is refused (keys could be replaced in "
		                  "transit); use https or set auth.jwks_url_allow_http = true");
	for (size_t i = 0; i < c->nkeys; i++) {
		const struct auth_cfg_api_key *k = &c->keys[i];
		if (k->key == NULL)
			return tk_err_set(err, TRPC_ERR_CONFIG, API_KEY_SECTION "%s.key: missing",
			                  k->name);
	}
	int jwt = c->method == AUTH_METHOD_JWKS ||
	          (c->jwt_public_key_path != NULL || c->jwt_public_key != NULL);
	int keys = c->api_key != NULL || (c->api_keys_enabled && c->nkeys > 0);
	if (!jwt && !keys)
		return tk_err_set(
		    err, TRPC_ERR_CONFIG,
		    "auth.enabled: authentication is on but nothing can verify a "
		    "credential: set auth.jwt_public_key_path, auth.jwt_public_key or "
		    "auth.jwks_url (with jwt_verification_method = jwks), or API keys "
		    "(auth.api_key, or [" API_KEY_SECTION "<name>] sections with "
		    "auth.api_keys_enabled = true)");
	return 0;
}

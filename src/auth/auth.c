/*
 * auth: the credential checker of tasker-api.md §2.3/§2.4.
 *
 * Settings and key material live in one immutable snapshot. auth_check()
 * takes a reference on the current snapshot for the length of one check;
 * auth_reload() builds a complete new snapshot first and then swaps the
 * pointer, so a check sees either the old settings or the new ones, never
 * a mix, and the old snapshot dies with its last check. The only mutable
 * part of a snapshot is its JWKS cache, which has its own lock (jwks.c).
 *
 * Strings handed out by auth_public_info() and auth_api_key_header() are
 * interned in the struct auth (deduplicated, kept until auth_free()), so
 * they stay valid across reloads without the caller holding anything.
 *
 * Failure reasons and severities (x-auth-failure-reason/-severity):
 *   missing_credentials  low     neither Authorization nor the API-key header
 *   expired_token        low     a good token past its exp (+ leeway)
 *   invalid_token        high    anything else wrong with a bearer token
 *   invalid_api_key      high    an API key not in the configuration
 *   unknown_permissions  medium  strict_validation and unknown strings
 *   missing_permission   medium  authenticated, not allowed
 * The client only ever sees the generic messages; the precise cause of a
 * rejected credential goes to the debug log.
 */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "auth/auth_int.h"

#define MSG_MISSING   "Missing credentials"
#define MSG_INVALID   "Invalid or expired credentials"
#define KEY_FILE_MAX  (64 * 1024)
#define DIGEST_LEN    32 /* SHA-256 */
#define API_KEY_SHORT 16 /* shorter keys get a warning */

/* ------------------------------------------------------------------ permissions */

/* §2.3: the 17 permissions and the resources that have a `resource:*`. */
static const char *const permissions[] = {
    "tasks:create",
    "tasks:read",
    "tasks:list",
    "tasks:cancel",
    "tasks:context_read",
    "steps:read",
    "steps:resolve",
    "dlq:read",
    "dlq:update",
    "dlq:stats",
    "templates:read",
    "templates:validate",
    "system:config_read",
    "system:handlers_read",
    "system:analytics_read",
    "worker:config_read",
    "worker:templates_read",
};
static const char *const resources[] = {"tasks", "steps", "dlq", "templates", "system", "worker"};

static int is_permission(const char *perm)
{
	for (size_t i = 0; i < AUTH_ARRAY_LEN(permissions); i++)
		if (strcmp(permissions[i], perm) == 0)
			return 1;
	return 0;
}

/* 1 when perm is "<resource>:*" for one of the six resources. */
static int is_wildcard(const char *perm)
{
	size_t n = strlen(perm);
	if (n < 3 || strcmp(perm + n - 2, ":*") != 0)
		return 0;
	for (size_t i = 0; i < AUTH_ARRAY_LEN(resources); i++)
		if (strlen(resources[i]) == n - 2 && strncmp(resources[i], perm, n - 2) == 0)
			return 1;
	return 0;
}

int auth_permission_known(const char *perm)
{
	return perm != NULL && (is_permission(perm) || is_wildcard(perm));
}

/* Whether `granted` covers `required` (one of the 17). A bare "*" covers
 * nothing (§2.3). */
static int grants(const char *granted, const char *required)
{
	if (strcmp(granted, required) == 0)
		return 1;
	if (!is_wildcard(granted))
		return 0;
	size_t res = strlen(granted) - 2;
	return strncmp(granted, required, res) == 0 && required[res] == ':';
}

size_t auth_permission_list(const char *const **out)
{
	*out = permissions;
	return AUTH_ARRAY_LEN(permissions);
}

/* ------------------------------------------------------------------ snapshots */

struct api_key {
	unsigned char digest[DIGEST_LEN]; /* SHA-256 of the key: equal-length compares */
	char subject[128];
	char **perms;
	size_t nperms;
	int legacy; /* holds all 17 permissions */
};

struct snap {
	atomic_int refs;
	int enabled;
	int jwt_method; /* 0: no JWT verification; else enum auth_method */
	struct auth_key *pubkey;
	struct auth_jwks *jwks;
	unsigned alg_mask;
	char *issuer, *audience, *claim;
	int strict, log_unknown;
	long leeway;
	struct api_key *keys;
	size_t nkeys;
	/* interned, for the getters */
	const char *header, *pub_issuer, *pub_audience, *pub_algs, *pub_method;
};

struct interned {
	struct interned *next;
	char s[];
};

struct auth {
	pthread_mutex_t mu; /* guards cur (the pointer, not the snapshot) */
	struct snap *cur;
	pthread_mutex_t intern_mu;
	struct interned *strings;
};

static const char *intern(struct auth *a, const char *s)
{
	const char *out = NULL;

	pthread_mutex_lock(&a->intern_mu);
	for (struct interned *i = a->strings; i != NULL && out == NULL; i = i->next)
		if (strcmp(i->s, s) == 0)
			out = i->s;
	if (out == NULL) {
		size_t n = strlen(s) + 1;
		struct interned *i = malloc(sizeof *i + n);
		if (i != NULL) {
			memcpy(i->s, s, n);
			i->next = a->strings;
			a->strings = i;
			out = i->s;
		}
	}
	pthread_mutex_unlock(&a->intern_mu);
	return out;
}

static void snap_free(struct snap *s)
{
	if (s == NULL)
		return;
	auth_key_free(s->pubkey);
	auth_jwks_free(s->jwks);
	free(s->issuer);
	free(s->audience);
	free(s->claim);
	for (size_t i = 0; i < s->nkeys; i++) {
		for (size_t p = 0; p < s->keys[i].nperms; p++)
			free(s->keys[i].perms[p]);
		free(s->keys[i].perms);
	}
	if (s->keys != NULL)
		OPENSSL_cleanse(s->keys, s->nkeys * sizeof *s->keys);
	free(s->keys);
	free(s);
}

static void snap_release(struct snap *s)
{
	if (s != NULL && atomic_fetch_sub(&s->refs, 1) == 1)
		snap_free(s);
}

static struct snap *snap_acquire(const struct auth *a)
{
	struct auth *m = (struct auth *)a; /* the lock is not part of the value */
	pthread_mutex_lock(&m->mu);
	struct snap *s = m->cur;
	atomic_fetch_add(&s->refs, 1);
	pthread_mutex_unlock(&m->mu);
	return s;
}

/* ------------------------------------------------------------------ building */

static int read_key_file(const char *path, char **out, size_t *len, struct tk_err *err)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;

	*out = NULL;
	if (f == NULL)
		return tk_err_set(err, TRPC_ERR_CONFIG,
		                  "auth.jwt_public_key_path: cannot open %s: %m", path);
	buf = malloc(KEY_FILE_MAX + 1);
	if (buf == NULL) {
		fclose(f);
		return tk_err_set(err, TRPC_ERR_NOMEM, "out of memory");
	}
	size_t n = fread(buf, 1, KEY_FILE_MAX + 1, f);
	int bad = ferror(f);
	fclose(f);
	if (bad || n > KEY_FILE_MAX) {
		free(buf);
		return tk_err_set(err, TRPC_ERR_CONFIG, "auth.jwt_public_key_path: %s: %s", path,
		                  bad ? "read error" : "larger than 64 KiB");
	}
	buf[n] = '\0';
	*out = buf;
	*len = n;
	return 0;
}

static int load_public_key(struct snap *s, const struct auth_config *c, struct tk_err *err)
{
	const char *what =
	    c->jwt_public_key_path != NULL ? "auth.jwt_public_key_path" : "auth.jwt_public_key";
	char *file = NULL;
	size_t len = 0;
	int rc;

	if (c->jwt_public_key_path != NULL) {
		rc = read_key_file(c->jwt_public_key_path, &file, &len, err);
		if (rc != 0)
			return rc;
		rc = auth_key_from_pem(file, len, what, &s->pubkey, err);
		free(file);
	} else {
		rc = auth_key_from_pem(c->jwt_public_key, strlen(c->jwt_public_key), what,
		                       &s->pubkey, err);
	}
	if (rc != 0)
		return rc;
	for (int alg = 0; alg < AUTH_ALG_COUNT; alg++)
		if ((s->alg_mask & AUTH_ALG_BIT(alg)) && auth_key_fits(s->pubkey, alg))
			return 0;
	char algs[128];
	auth_alg_mask_text(s->alg_mask, algs, sizeof algs);
	return tk_err_set(err, TRPC_ERR_CONFIG,
	                  "auth.jwt_allowed_algorithms: none of %s can be verified with the %s key "
	                  "of %s",
	                  algs, s->pubkey->kind == AUTH_KEY_RSA ? "RSA" : "EC", what);
}

static int setup_jwt(struct snap *s, const struct auth_config *c, struct tk_err *err)
{
	if (c->method == AUTH_METHOD_JWKS) {
		if (c->jwt_public_key_path != NULL || c->jwt_public_key != NULL)
			trpc_log(TRPC_LOG_WARN, "auth: jwt_verification_method is jwks: the "
			                        "configured public key is not used");
		struct auth_jwks_params p = {
		    .source = c->jwks_url,
		    .refresh_interval_s = c->jwks_refresh_interval_seconds,
		    .max_stale_s = c->jwks_max_stale_seconds,
		    .min_refresh_interval_s = c->jwks_min_refresh_interval_seconds,
		};
		s->jwks = auth_jwks_new(&p, err);
		if (s->jwks == NULL)
			return err != NULL ? err->code : TRPC_ERR_CONFIG;
		s->jwt_method = AUTH_METHOD_JWKS;
		return 0;
	}
	if (c->jwks_url != NULL)
		trpc_log(TRPC_LOG_WARN, "auth: jwt_verification_method is public_key: "
		                        "auth.jwks_url is not used");
	if (c->jwt_public_key_path == NULL && c->jwt_public_key == NULL)
		return 0; /* API keys only */
	int rc = load_public_key(s, c, err);
	if (rc == 0)
		s->jwt_method = AUTH_METHOD_PUBLIC_KEY;
	return rc;
}

struct perm_parse {
	struct api_key *key;
	const char *entry;
	int strict;
	struct tk_err *err;
};

static int on_key_perm(void *ud, const char *item)
{
	struct perm_parse *pp = ud;
	struct api_key *k = pp->key;

	if (!auth_permission_known(item)) {
		if (pp->strict)
			return tk_err_set(pp->err, TRPC_ERR_CONFIG,
			                  "auth.api_key.%s.permissions: unknown permission \"%s\" "
			                  "(strict_validation is on)",
			                  pp->entry, item);
		trpc_log(TRPC_LOG_WARN,
		         "auth: auth.api_key.%s.permissions: unknown permission "
		         "\"%s\" grants nothing",
		         pp->entry, item);
	}
	char **grown = realloc(k->perms, (k->nperms + 1) * sizeof *grown);
	if (grown == NULL)
		return tk_err_set(pp->err, TRPC_ERR_NOMEM, "out of memory");
	k->perms = grown;
	if ((k->perms[k->nperms] = strdup(item)) == NULL)
		return tk_err_set(pp->err, TRPC_ERR_NOMEM, "out of memory");
	k->nperms++;
	return 0;
}

static void key_digest(const char *key, unsigned char out[DIGEST_LEN])
{
	unsigned int n = DIGEST_LEN;
	if (EVP_Digest(key, strlen(key), out, &n, EVP_sha256(), NULL) != 1)
		memset(out, 0, DIGEST_LEN); /* never equal to a real key's digest in practice */
}

static int add_api_key(struct snap *s, const char *name, const char *secret, const char *subject,
                       struct tk_err *err)
{
	struct api_key *k = &s->keys[s->nkeys];
	memset(k, 0, sizeof *k);
	key_digest(secret, k->digest);
	snprintf(k->subject, sizeof k->subject, "api-key:%s", subject);
	for (size_t i = 0; i < s->nkeys; i++)
		if (CRYPTO_memcmp(s->keys[i].digest, k->digest, DIGEST_LEN) == 0)
			return tk_err_set(
			    err, TRPC_ERR_CONFIG,
			    "%s: the same key value is configured twice (also for %s)", name,
			    s->keys[i].subject);
	if (strlen(secret) < API_KEY_SHORT)
		trpc_log(TRPC_LOG_WARN, "auth: %s is shorter than %d characters: easy to guess",
		         name, API_KEY_SHORT);
	s->nkeys++;
	return 0;
}

static int setup_api_keys(struct snap *s, const struct auth_config *c, struct tk_err *err)
{
	size_t n = (c->api_key != NULL) + (c->api_keys_enabled ? c->nkeys : 0);
	char name[128];
	int rc;

	if (!c->api_keys_enabled && c->nkeys > 0)
		trpc_log(TRPC_LOG_WARN,
		         "auth: %zu [auth.api_key.<name>] section(s) ignored: "
		         "auth.api_keys_enabled is false",
		         c->nkeys);
	if (n == 0)
		return 0;
	s->keys = calloc(n, sizeof *s->keys);
	if (s->keys == NULL)
		return tk_err_set(err, TRPC_ERR_NOMEM, "out of memory");
	if (c->api_key != NULL) {
		/*
		 * The legacy single key. The reference gives it the list ["*"],
		 * but a bare "*" is not a wildcard (§2.3) and strict validation
		 * rejects it, so such a key could never be used. It is meant as
		 * an all-access key: it holds all 17 permissions here.
		 */
		rc = add_api_key(s, "auth.api_key", c->api_key, "legacy", err);
		if (rc != 0)
			return rc;
		s->keys[s->nkeys - 1].legacy = 1;
	}
	for (size_t i = 0; c->api_keys_enabled && i < c->nkeys; i++) {
		const struct auth_cfg_api_key *e = &c->keys[i];
		snprintf(name, sizeof name, "auth.api_key.%s", e->name);
		rc = add_api_key(s, name, e->key, e->description != NULL ? e->description : e->name,
		                 err);
		if (rc != 0)
			return rc;
		struct perm_parse pp = {&s->keys[s->nkeys - 1], e->name, c->strict_validation, err};
		if (e->permissions != NULL &&
		    (rc = auth_split_list(e->permissions, on_key_perm, &pp)) != 0)
			return rc;
	}
	return 0;
}

static int dup_str(char **dst, const char *src, struct tk_err *err)
{
	*dst = strdup(src);
	return *dst != NULL ? 0 : tk_err_set(err, TRPC_ERR_NOMEM, "out of memory");
}

static struct snap *snap_new(struct auth *a, const struct auth_config *c, struct tk_err *err)
{
	struct snap *s = calloc(1, sizeof *s);
	char header[256], algs[128];

	if (c == NULL) {
		tk_err_set(err, TRPC_ERR_INVALID, "auth: no configuration");
		free(s);
		return NULL;
	}
	if (s == NULL) {
		tk_err_set(err, TRPC_ERR_NOMEM, "out of memory");
		return NULL;
	}
	atomic_init(&s->refs, 1);
	s->enabled = c->enabled;
	s->alg_mask = c->alg_mask;
	s->strict = c->strict_validation;
	s->log_unknown = c->log_unknown_permissions;
	s->leeway = c->leeway_seconds;

	snprintf(header, sizeof header, "%s", c->api_key_header);
	for (char *p = header; *p != '\0'; p++)
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
	auth_alg_mask_text(c->alg_mask, algs, sizeof algs);
	s->header = intern(a, header);
	s->pub_algs = intern(a, algs);
	s->pub_issuer = intern(a, c->jwt_issuer);
	s->pub_audience = intern(a, c->jwt_audience);
	if (s->header == NULL || s->pub_algs == NULL || s->pub_issuer == NULL ||
	    s->pub_audience == NULL || dup_str(&s->issuer, c->jwt_issuer, err) != 0 ||
	    dup_str(&s->audience, c->jwt_audience, err) != 0 ||
	    dup_str(&s->claim, c->permissions_claim, err) != 0) {
		tk_err_set(err, TRPC_ERR_NOMEM, "out of memory");
		goto fail;
	}
	s->pub_method = "none";
	if (!c->enabled)
		return s; /* keys are neither read nor checked while auth is off */
	if (auth_config_check(c, err) != 0 || setup_jwt(s, c, err) != 0 ||
	    setup_api_keys(s, c, err) != 0)
		goto fail;
	if (s->jwt_method == AUTH_METHOD_PUBLIC_KEY)
		s->pub_method = "public_key";
	else if (s->jwt_method == AUTH_METHOD_JWKS)
		s->pub_method = "jwks";
	return s;
fail:
	snap_free(s);
	return NULL;
}

static void log_summary(const struct snap *s, const char *what)
{
	if (!s->enabled) {
		trpc_log(
		    TRPC_LOG_WARN,
		    "auth: authentication disabled: every request is allowed as \"anonymous\"");
		return;
	}
	char jwt[256] = "off";
	if (s->jwt_method != 0)
		snprintf(jwt, sizeof jwt, "%s (%s, issuer %s, audience %s)", s->pub_method,
		         s->pub_algs, s->issuer, s->audience);
	trpc_log(TRPC_LOG_INFO,
	         "auth: authentication %s: JWT %s, %zu API key(s), strict_validation %s", what, jwt,
	         s->nkeys, s->strict ? "on" : "off");
}

/* ------------------------------------------------------------------ lifetime */

struct auth *auth_new(const struct auth_config *c, struct tk_err *err)
{
	struct auth *a = calloc(1, sizeof *a);
	if (a == NULL) {
		tk_err_set(err, TRPC_ERR_NOMEM, "out of memory");
		return NULL;
	}
	pthread_mutex_init(&a->mu, NULL);
	pthread_mutex_init(&a->intern_mu, NULL);
	a->cur = snap_new(a, c, err);
	if (a->cur == NULL) {
		auth_free(a);
		return NULL;
	}
	log_summary(a->cur, "enabled");
	return a;
}

void auth_free(struct auth *a)
{
	if (a == NULL)
		return;
	snap_release(a->cur);
	while (a->strings != NULL) {
		struct interned *next = a->strings->next;
		free(a->strings);
		a->strings = next;
	}
	pthread_mutex_destroy(&a->mu);
	pthread_mutex_destroy(&a->intern_mu);
	free(a);
}

struct auth_update {
	struct snap *s;
};

struct auth_update *auth_update_new(struct auth *a, const struct auth_config *c, struct tk_err *err)
{
	struct auth_update *u = malloc(sizeof *u);

	if (u == NULL) {
		tk_err_set(err, TRPC_ERR_NOMEM, "out of memory");
		return NULL;
	}
	/* Interns its strings in a, which keeps them whether or not u is applied. */
	if ((u->s = snap_new(a, c, err)) == NULL) {
		if (err != NULL && err->code == 0)
			tk_err_set(err, TRPC_ERR_CONFIG, "auth: unusable configuration");
		free(u);
		return NULL;
	}
	return u;
}

void auth_update_apply(struct auth *a, struct auth_update *u)
{
	struct snap *s = u->s;

	free(u);
	pthread_mutex_lock(&a->mu);
	struct snap *old = a->cur;
	a->cur = s;
	pthread_mutex_unlock(&a->mu);
	snap_release(old);
	log_summary(s, "reloaded");
}

void auth_update_free(struct auth_update *u)
{
	if (u == NULL)
		return;
	snap_release(u->s);
	free(u);
}

int auth_reload(struct auth *a, const struct auth_config *c, struct tk_err *err)
{
	struct auth_update *u = auth_update_new(a, c, err);

	if (u == NULL)
		return err != NULL && err->code != 0 ? err->code : TRPC_ERR_CONFIG;
	auth_update_apply(a, u);
	return 0;
}

int auth_enabled(const struct auth *a)
{
	struct snap *s = snap_acquire(a);
	int on = s->enabled;
	snap_release(s);
	return on;
}

const char *auth_api_key_header(const struct auth *a)
{
	struct snap *s = snap_acquire(a);
	const char *h = s->header;
	snap_release(s);
	return h;
}

void auth_public_info(const struct auth *a, struct auth_public_info *out)
{
	struct snap *s = snap_acquire(a);
	out->enabled = s->enabled;
	out->verification_method = s->pub_method;
	out->jwt_issuer = s->pub_issuer;
	out->jwt_audience = s->pub_audience;
	out->api_key_header = s->header;
	out->api_key_count = s->enabled ? s->nkeys : 0;
	out->strict_validation = s->strict;
	out->allowed_algorithms = s->pub_algs;
	snap_release(s);
}

/* ------------------------------------------------------------------ checking */

/* Who a credential belongs to and what it holds. */
struct principal {
	char subject[128];
	const char **perms; /* borrowed from the snapshot or the token's claims */
	size_t nperms;
	int all; /* the legacy key: every permission */
};

static const char *severity_of(const char *reason)
{
	if (strcmp(reason, "missing_credentials") == 0 || strcmp(reason, "expired_token") == 0)
		return "low";
	if (strcmp(reason, "invalid_token") == 0 || strcmp(reason, "invalid_api_key") == 0)
		return "high";
	return "medium";
}

static int fail(struct auth_result *out, enum auth_code code, const char *reason, const char *msg)
{
	out->code = code;
	out->reason = reason;
	out->severity = severity_of(reason);
	snprintf(out->message, sizeof out->message, "%s", msg);
	return code;
}

/* Permissions from the configured claim: missing = none; anything but an
 * array of strings is a bad token. perms is malloc'd (pointers into claims). */
static int token_permissions(json_t *claims, const char *claim, struct principal *p, char *why,
                             size_t why_size)
{
	json_t *arr = json_object_get(claims, claim);
	size_t i;
	json_t *v;

	if (arr == NULL)
		return 0;
	if (!json_is_array(arr)) {
		snprintf(why, why_size, "claim \"%s\" is not an array", claim);
		return -1;
	}
	p->perms = calloc(json_array_size(arr) + 1, sizeof *p->perms);
	if (p->perms == NULL) {
		snprintf(why, why_size, "out of memory");
		return -1;
	}
	json_array_foreach(arr, i, v)
	{
		if (!json_is_string(v)) {
			snprintf(why, why_size, "claim \"%s\" holds a non-string", claim);
			return -1;
		}
		p->perms[p->nperms++] = json_string_value(v);
	}
	return 0;
}

/* "Bearer <token>" (scheme case-insensitive, RFC 7235): the token, or NULL. */
static char *bearer_token(const char *authorization)
{
	const char *p = authorization;
	while (*p == ' ' || *p == '\t')
		p++;
	if (strncasecmp(p, "bearer", 6) != 0 || (p[6] != ' ' && p[6] != '\t'))
		return NULL;
	p += 6;
	while (*p == ' ' || *p == '\t')
		p++;
	size_t n = strcspn(p, " \t\r\n");
	const char *rest = p + n;
	while (*rest == ' ' || *rest == '\t')
		rest++;
	if (n == 0 || *rest != '\0')
		return NULL;
	return strndup(p, n);
}

static int check_bearer(struct snap *s, const char *token, json_t **claims, struct principal *p,
                        char *why, size_t why_size)
{
	struct auth_jws jws;
	struct auth_jwks_set *hold = NULL;
	const struct auth_key *key;
	int rc;

	if (s->jwt_method == 0) {
		snprintf(why, why_size, "no JWT verification is configured");
		return AUTH_TOK_INVALID;
	}
	rc = auth_jws_parse(token, s->alg_mask, &jws, why, why_size);
	if (rc != 0)
		return rc;
	if (s->jwt_method == AUTH_METHOD_JWKS) {
		key = auth_jwks_get(s->jwks, jws.kid, jws.alg, &hold, why, why_size);
		if (key == NULL) {
			auth_jws_clear(&jws);
			return AUTH_TOK_INVALID;
		}
	} else {
		key = s->pubkey;
	}
	rc = auth_jws_verify(&jws, token, key, why, why_size);
	auth_jwks_release(hold);
	if (rc == 0) {
		struct auth_claim_rules rules = {s->issuer, s->audience, s->leeway, time(NULL)};
		rc = auth_claims_check(jws.claims, &rules, why, why_size);
	}
	if (rc == 0 && token_permissions(jws.claims, s->claim, p, why, why_size) != 0) {
		free(p->perms);
		p->perms = NULL;
		p->nperms = 0;
		rc = AUTH_TOK_INVALID;
	}
	if (rc == 0) {
		snprintf(p->subject, sizeof p->subject, "%s",
		         json_string_value(json_object_get(jws.claims, "sub")));
		*claims = json_incref(jws.claims);
	}
	auth_jws_clear(&jws);
	return rc;
}

static int check_api_key(struct snap *s, const char *key, struct principal *p)
{
	unsigned char d[DIGEST_LEN];
	const struct api_key *found = NULL;

	key_digest(key, d);
	/* Every entry is compared, in constant time, whatever matches. */
	for (size_t i = 0; i < s->nkeys; i++)
		if (CRYPTO_memcmp(d, s->keys[i].digest, DIGEST_LEN) == 0 && found == NULL)
			found = &s->keys[i];
	if (found == NULL)
		return -1;
	snprintf(p->subject, sizeof p->subject, "%s", found->subject);
	p->perms = (const char **)found->perms;
	p->nperms = found->nperms;
	p->all = found->legacy;
	return 0;
}

/* Unknown permission strings: logged, and refused when strict. */
static int check_unknown(struct snap *s, const struct principal *p, struct auth_result *out)
{
	static const char head[] = "Unknown permissions: ";
	char msg[sizeof out->message];
	size_t used = sizeof head - 1;
	int unknown = 0;

	memcpy(msg, head, sizeof head);
	for (size_t i = 0; i < p->nperms; i++) {
		if (auth_permission_known(p->perms[i]))
			continue;
		/* ", item" while room for a final ", ..." is left, then ", ..." once */
		size_t need = (unknown != 0 ? 2 : 0) + strlen(p->perms[i]);
		if (used != SIZE_MAX && used + need + sizeof ", ..." <= sizeof msg) {
			snprintf(msg + used, sizeof msg - used, "%s%s", unknown != 0 ? ", " : "",
			         p->perms[i]);
			used += need;
		} else if (used != SIZE_MAX) {
			snprintf(msg + used, sizeof msg - used, "%s...", unknown != 0 ? ", " : "");
			used = SIZE_MAX;
		}
		unknown++;
	}
	if (unknown == 0)
		return 0;
	if (s->log_unknown)
		trpc_log(TRPC_LOG_WARN, "auth: %s presented %d unknown permission(s): %s%s",
		         p->subject, unknown, msg + sizeof head - 1,
		         s->strict ? " (rejected: strict_validation)" : " (ignored)");
	if (!s->strict)
		return 0;
	return fail(out, AUTH_UNAUTHENTICATED, "unknown_permissions", msg);
}

static int has_permission(const struct principal *p, const char *required)
{
	if (p->all)
		return 1;
	for (size_t i = 0; i < p->nperms; i++)
		if (grants(p->perms[i], required))
			return 1;
	return 0;
}

static int authenticate(struct snap *s, const char *authorization, const char *api_key,
                        json_t **claims, struct principal *p, struct auth_result *out)
{
	char why[256] = "";

	if (authorization != NULL && authorization[strspn(authorization, " \t")] != '\0') {
		char *token = bearer_token(authorization);
		int rc = token != NULL ? check_bearer(s, token, claims, p, why, sizeof why)
		                       : AUTH_TOK_INVALID;
		free(token);
		if (rc == 0)
			return 0;
		trpc_log(TRPC_LOG_DEBUG, "auth: bearer credentials rejected: %s",
		         token != NULL ? why : "Authorization is not \"Bearer <token>\"");
		return fail(out, AUTH_UNAUTHENTICATED,
		            rc == AUTH_TOK_EXPIRED ? "expired_token" : "invalid_token",
		            MSG_INVALID);
	}
	if (api_key != NULL && *api_key != '\0') {
		if (check_api_key(s, api_key, p) == 0)
			return 0;
		trpc_log(TRPC_LOG_DEBUG, "auth: API key rejected: not configured");
		return fail(out, AUTH_UNAUTHENTICATED, "invalid_api_key", MSG_INVALID);
	}
	return fail(out, AUTH_UNAUTHENTICATED, "missing_credentials", MSG_MISSING);
}

int auth_check(struct auth *a, const char *authorization, const char *api_key,
               const char *permission, struct auth_result *out)
{
	struct principal p;
	json_t *claims = NULL;
	int rc;

	memset(out, 0, sizeof *out);
	memset(&p, 0, sizeof p);
	if (permission != NULL && !is_permission(permission)) {
		/* A caller bug; fail closed. */
		trpc_log(TRPC_LOG_ERROR,
		         "auth: check for \"%s\", which is not one of the 17 "
		         "permissions",
		         permission);
		fail(out, AUTH_FORBIDDEN, "missing_permission", "Missing permission");
		return TRPC_ERR_INVALID;
	}
	struct snap *s = snap_acquire(a);
	if (!s->enabled || permission == NULL) {
		out->code = AUTH_OK;
		snprintf(out->subject, sizeof out->subject, "anonymous");
		snap_release(s);
		return AUTH_OK;
	}
	rc = authenticate(s, authorization, api_key, &claims, &p, out);
	if (rc == AUTH_OK) {
		snprintf(out->subject, sizeof out->subject, "%s", p.subject);
		rc = check_unknown(s, &p, out);
	}
	if (rc == AUTH_OK && !has_permission(&p, permission)) {
		char msg[sizeof out->message];
		snprintf(msg, sizeof msg, "Missing permission: %s", permission);
		rc = fail(out, AUTH_FORBIDDEN, "missing_permission", msg);
	}
	if (claims != NULL) /* JWT permissions point into the claims */
		free(p.perms);
	json_decref(claims);
	snap_release(s);
	return rc;
}

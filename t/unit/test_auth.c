/*
 * Unit tests for src/auth: configuration keys and their errors, the
 * permission vocabulary, API keys, disabled auth, Authorization parsing,
 * token parsing and claim rules, reload, and the key/token tools (an RSA
 * pair made in a temporary directory signs a token that the checker then
 * accepts). Tokens from another implementation (PyJWT), every algorithm,
 * JWKS files and URLs are covered by t/85-auth.t.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "auth/auth.h"
#include "auth/auth_int.h"
#include "auth/tokens.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* ------------------------------------------------------------------ helpers */

struct kv {
	const char *section, *key, *value;
};

/* A config from rows; fails the test on a set error. */
static struct auth_config *config_of(const char *role, const struct kv *rows, size_t n)
{
	struct auth_config *c = auth_config_new(role);
	struct tk_err err = {0, ""};
	assert_non_null(c);
	for (size_t i = 0; i < n; i++) {
		int rc = auth_config_set(c, rows[i].section, rows[i].key, rows[i].value, &err);
		if (rc != 0)
			fail_msg("%s.%s = %s: %s", rows[i].section, rows[i].key, rows[i].value,
			         err.msg);
	}
	return c;
}

static struct auth *auth_of(const struct kv *rows, size_t n)
{
	struct tk_err err = {0, ""};
	struct auth_config *c = config_of("orchestration", rows, n);
	struct auth *a = auth_new(c, &err);
	auth_config_free(c);
	if (a == NULL)
		fail_msg("auth_new: %s", err.msg);
	return a;
}

static void expect_result(struct auth *a, const char *authz, const char *key, const char *perm,
                          enum auth_code code, const char *reason, const char *message)
{
	struct auth_result r;
	int rc = auth_check(a, authz, key, perm, &r);
	assert_int_equal(rc, code);
	assert_int_equal(r.code, code);
	if (reason == NULL)
		assert_null(r.reason);
	else
		assert_string_equal(r.reason, reason);
	if (message != NULL)
		assert_string_equal(r.message, message);
}

/* ------------------------------------------------------------------ config */

static void test_defaults(void **state)
{
	(void)state;
	struct tk_err err = {0, ""};
	struct auth_config *c = auth_config_new("orchestration");
	struct auth *a = auth_new(c, &err);
	struct auth_public_info pi;

	assert_non_null(a);
	auth_public_info(a, &pi);
	assert_int_equal(pi.enabled, 0);
	assert_int_equal(auth_enabled(a), 0);
	assert_string_equal(pi.verification_method, "none");
	assert_string_equal(pi.jwt_issuer, "tasker-core");
	assert_string_equal(pi.jwt_audience, "tasker-api");
	assert_string_equal(pi.api_key_header, "x-api-key");
	assert_string_equal(auth_api_key_header(a), "x-api-key");
	assert_string_equal(pi.allowed_algorithms, "RS256");
	assert_int_equal(pi.strict_validation, 1);
	assert_int_equal(pi.api_key_count, 0);
	auth_free(a);
	auth_config_free(c);

	c = auth_config_new("worker");
	a = auth_new(c, &err);
	auth_public_info(a, &pi);
	assert_string_equal(pi.jwt_issuer, "tasker-worker");
	assert_string_equal(pi.jwt_audience, "worker-api");
	auth_free(a);
	auth_config_free(c);

	assert_null(auth_config_new("gateway"));
	c = auth_config_new(NULL); /* orchestration */
	assert_non_null(c);
	assert_string_equal(c->jwt_issuer, "tasker-core");
	assert_int_equal(c->leeway_seconds, 30);
	assert_int_equal(c->jwks_refresh_interval_seconds, 3600);
	assert_int_equal(c->jwks_max_stale_seconds, 300);
	assert_int_equal(c->jwks_min_refresh_interval_seconds, 10);
	assert_string_equal(c->permissions_claim, "permissions");
	assert_int_equal(c->method, AUTH_METHOD_PUBLIC_KEY);
	auth_config_free(c);
}

static void test_config_values(void **state)
{
	(void)state;
	const struct kv rows[] = {
	    {"auth", "enabled", "YES"},
	    {"auth", "jwt_allowed_algorithms", " ES384 ,PS512,RS256 "},
	    {"auth", "jwt_verification_method", "jwks"},
	    {"auth", "jwks_url", "file:///etc/tasker/jwks.json"},
	    {"auth", "leeway_seconds", "0"},
	    {"auth", "strict_validation", "off"},
	    {"auth", "jwt_public_key",
	     "-----BEGIN PUBLIC KEY-----\\nAAAA\\n-----END PUBLIC KEY-----"},
	    {"auth.api_key.ci", "key", "k1"},
	    {"auth.api_key.ci", "permissions", "tasks:read"},
	    {"auth.api_key.ci", "key", "k2"}, /* later value wins */
	};
	struct auth_config *c = config_of("orchestration", rows, ARRAY_LEN(rows));
	char algs[128];

	assert_int_equal(c->enabled, 1);
	auth_alg_mask_text(c->alg_mask, algs, sizeof algs);
	assert_string_equal(algs, "RS256,PS512,ES384");
	assert_int_equal(c->method, AUTH_METHOD_JWKS);
	assert_int_equal(c->leeway_seconds, 0);
	assert_int_equal(c->strict_validation, 0);
	assert_string_equal(c->jwt_public_key,
	                    "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----");
	assert_int_equal(c->nkeys, 1);
	assert_string_equal(c->keys[0].key, "k2");
	auth_config_free(c);

	/* INI continuation lines arrive as repeated keys. */
	const struct kv multi[] = {
	    {"auth", "jwt_public_key", "-----BEGIN PUBLIC KEY-----"},
	    {"auth", "jwt_public_key", "AAAA"},
	    {"auth", "jwt_public_key", "-----END PUBLIC KEY-----"},
	};
	c = config_of("orchestration", multi, ARRAY_LEN(multi));
	assert_string_equal(c->jwt_public_key,
	                    "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----");
	auth_config_free(c);
}

struct bad_case {
	const char *section, *key, *value;
	const char *needle1, *needle2;
};

static void test_config_errors(void **state)
{
	(void)state;
	static const struct bad_case cases[] = {
	    {"auth", "bogus", "1", "auth.bogus", "unknown key"},
	    {"auth", "enabled", "maybe", "auth.enabled", "boolean"},
	    {"auth", "leeway_seconds", "301", "auth.leeway_seconds", "out of range"},
	    {"auth", "leeway_seconds", "-1", "auth.leeway_seconds", "out of range"},
	    {"auth", "jwks_max_stale_seconds", "5m", "auth.jwks_max_stale_seconds", "integer"},
	    {"auth", "jwks_refresh_interval_seconds", "0", "auth.jwks_refresh_interval_seconds",
	     "range"},
	    {"auth", "jwt_allowed_algorithms", "HS256", "auth.jwt_allowed_algorithms", "HS256"},
	    {"auth", "jwt_allowed_algorithms", "RS256,hs512", "auth.jwt_allowed_algorithms",
	     "hs512"},
	    {"auth", "jwt_allowed_algorithms", "none", "auth.jwt_allowed_algorithms", "none"},
	    {"auth", "jwt_allowed_algorithms", "rs256", "auth.jwt_allowed_algorithms", "rs256"},
	    {"auth", "jwt_allowed_algorithms", "ES512", "auth.jwt_allowed_algorithms", "ES512"},
	    {"auth", "jwt_allowed_algorithms", "EdDSA", "auth.jwt_allowed_algorithms", "EdDSA"},
	    {"auth", "jwt_allowed_algorithms", ",", "auth.jwt_allowed_algorithms", "empty"},
	    {"auth", "jwt_verification_method", "x509", "auth.jwt_verification_method", "x509"},
	    {"auth", "jwks_url", "ldap://idp/keys", "auth.jwks_url", "ldap://"},
	    {"auth", "permissions_claim", "", "auth.permissions_claim", "non-empty"},
	    {"auth", "api_key_header", "X Key", "auth.api_key_header", "not a header name"},
	    {"auth", "api_key_header", "authorization", "auth.api_key_header", "Authorization"},
	    {"auth", "api_key_header", "X:Key", "auth.api_key_header", "not a header name"},
	    {"auth", "jwt_issuer", "", "auth.jwt_issuer", "non-empty"},
	    {"authx", "enabled", "true", "[authx]", "not an auth section"},
	    {"auth.api_key.a b", "key", "k", "auth.api_key.a b", "name"},
	    {"auth.api_key.", "key", "k", "auth.api_key.", "name"},
	    {"auth.api_key.ci", "secret", "k", "auth.api_key.ci.secret", "unknown key"},
	};
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		struct auth_config *c = auth_config_new("orchestration");
		struct tk_err err = {0, ""};
		int rc = auth_config_set(c, cases[i].section, cases[i].key, cases[i].value, &err);
		if (rc != TRPC_ERR_CONFIG || strstr(err.msg, cases[i].needle1) == NULL ||
		    strstr(err.msg, cases[i].needle2) == NULL)
			fail_msg("[%s] %s = %s: rc %d, message \"%s\"", cases[i].section,
			         cases[i].key, cases[i].value, rc, err.msg);
		assert_int_equal(err.code, TRPC_ERR_CONFIG);
		auth_config_free(c);
	}
}

static void expect_new_error(const struct kv *rows, size_t n, const char *needle1,
                             const char *needle2)
{
	struct tk_err err = {0, ""};
	struct auth_config *c = config_of("orchestration", rows, n);
	struct auth *a = auth_new(c, &err);
	auth_config_free(c);
	if (a != NULL || err.code != TRPC_ERR_CONFIG || strstr(err.msg, needle1) == NULL ||
	    strstr(err.msg, needle2) == NULL)
		fail_msg("want an error with \"%s\" and \"%s\", got \"%s\"", needle1, needle2,
		         err.msg);
	auth_free(a);
}

static void test_config_cross_checks(void **state)
{
	(void)state;
	const struct kv nothing[] = {{"auth", "enabled", "true"}};
	expect_new_error(nothing, ARRAY_LEN(nothing), "auth.enabled", "nothing can verify");
	const struct kv only_disabled_registry[] = {{"auth", "enabled", "true"},
	                                            {"auth.api_key.a", "key", "0123456789abcdef"}};
	expect_new_error(only_disabled_registry, ARRAY_LEN(only_disabled_registry), "auth.enabled",
	                 "api_keys_enabled");
	const struct kv jwks_no_url[] = {{"auth", "enabled", "true"},
	                                 {"auth", "jwt_verification_method", "jwks"}};
	expect_new_error(jwks_no_url, ARRAY_LEN(jwks_no_url), "auth.jwks_url", "required");
	const struct kv http[] = {{"auth", "enabled", "true"},
	                          {"auth", "jwt_verification_method", "jwks"},
	                          {"auth", "jwks_url", "http://127.0.0.1:1/jwks.json"}};
	expect_new_error(http, ARRAY_LEN(http), "auth.jwks_url", "jwks_url_allow_http");
	const struct kv no_key[] = {{"auth", "enabled", "true"},
	                            {"auth", "api_keys_enabled", "true"},
	                            {"auth.api_key.ci", "permissions", "tasks:read"}};
	expect_new_error(no_key, ARRAY_LEN(no_key), "auth.api_key.ci.key", "missing");
	const struct kv strict[] = {{"auth", "enabled", "true"},
	                            {"auth", "api_keys_enabled", "true"},
	                            {"auth.api_key.ci", "key", "0123456789abcdef"},
	                            {"auth.api_key.ci", "permissions", "tasks:read, *"}};
	expect_new_error(strict, ARRAY_LEN(strict), "auth.api_key.ci.permissions", "\"*\"");
	const struct kv dup[] = {{"auth", "enabled", "true"},
	                         {"auth", "api_key", "0123456789abcdef"},
	                         {"auth", "api_keys_enabled", "true"},
	                         {"auth.api_key.ci", "key", "0123456789abcdef"}};
	expect_new_error(dup, ARRAY_LEN(dup), "auth.api_key.ci", "twice");
	const struct kv bad_pem[] = {{"auth", "enabled", "true"},
	                             {"auth", "jwt_public_key", "hello"}};
	expect_new_error(bad_pem, ARRAY_LEN(bad_pem), "auth.jwt_public_key", "PEM");
	const struct kv no_file[] = {{"auth", "enabled", "true"},
	                             {"auth", "jwt_public_key_path", "/nonexistent/key.pem"}};
	expect_new_error(no_file, ARRAY_LEN(no_file), "auth.jwt_public_key_path",
	                 "/nonexistent/key.pem");
}

/* ------------------------------------------------------------------ permissions */

static void test_permissions(void **state)
{
	(void)state;
	const char *const *list;
	size_t n = auth_permission_list(&list);
	static const char *const wild[] = {"tasks:*",     "steps:*",  "dlq:*",
	                                   "templates:*", "system:*", "worker:*"};
	static const char *const unknown[] = {
	    "*",          "tasks",         "tasks:", "tasks:**", "health:*",     "metrics:read",
	    "TASKS:read", "tasks:create ", ":*",     "*:*",      "tasks:delete", ""};

	assert_int_equal(n, 17);
	for (size_t i = 0; i < n; i++)
		assert_true(auth_permission_known(list[i]));
	for (size_t i = 0; i < ARRAY_LEN(wild); i++)
		assert_true(auth_permission_known(wild[i]));
	for (size_t i = 0; i < ARRAY_LEN(unknown); i++)
		if (auth_permission_known(unknown[i]))
			fail_msg("\"%s\" taken as known", unknown[i]);
	assert_false(auth_permission_known(NULL));
}

/* ------------------------------------------------------------------ API keys */

static const struct kv key_rows[] = {
    {"auth", "enabled", "true"},
    {"auth", "api_keys_enabled", "true"},
    {"auth", "api_key", "legacy-0123456789abcdef"},
    {"auth", "api_key_header", "X-Tasker-Key"},
    {"auth.api_key.reader", "key", "reader-0123456789abcdef"},
    {"auth.api_key.reader", "permissions", "tasks:read,tasks:list"},
    {"auth.api_key.reader", "description", "dashboard"},
    {"auth.api_key.ops", "key", "ops-0123456789abcdef"},
    {"auth.api_key.ops", "permissions", " dlq:* , steps:resolve "},
};

static void test_api_keys(void **state)
{
	(void)state;
	struct auth *a = auth_of(key_rows, ARRAY_LEN(key_rows));
	struct auth_result r;
	const char *const *list;
	size_t n = auth_permission_list(&list);

	assert_string_equal(auth_api_key_header(a), "x-tasker-key");
	expect_result(a, NULL, "reader-0123456789abcdef", "tasks:read", AUTH_OK, NULL, "");
	auth_check(a, NULL, "reader-0123456789abcdef", "tasks:list", &r);
	assert_string_equal(r.subject, "api-key:dashboard");
	expect_result(a, NULL, "reader-0123456789abcdef", "tasks:create", AUTH_FORBIDDEN,
	              "missing_permission", "Missing permission: tasks:create");
	expect_result(a, NULL, "ops-0123456789abcdef", "dlq:update", AUTH_OK, NULL, NULL);
	auth_check(a, NULL, "ops-0123456789abcdef", "dlq:stats", &r);
	assert_string_equal(r.subject, "api-key:ops");
	expect_result(a, NULL, "ops-0123456789abcdef", "tasks:read", AUTH_FORBIDDEN,
	              "missing_permission", NULL);
	expect_result(a, NULL, "wrong", "tasks:read", AUTH_UNAUTHENTICATED, "invalid_api_key",
	              "Invalid or expired credentials");
	auth_check(a, NULL, "wrong", "tasks:read", &r);
	assert_string_equal(r.severity, "high");
	assert_string_equal(r.subject, "");
	expect_result(a, NULL, NULL, "tasks:read", AUTH_UNAUTHENTICATED, "missing_credentials",
	              "Missing credentials");
	expect_result(a, NULL, "", "tasks:read", AUTH_UNAUTHENTICATED, "missing_credentials", NULL);
	for (size_t i = 0; i < n; i++)
		expect_result(a, NULL, "legacy-0123456789abcdef", list[i], AUTH_OK, NULL, NULL);
	/* Bearer first: a bad Authorization is not rescued by a good key. */
	expect_result(a, "Bearer abc", "reader-0123456789abcdef", "tasks:read",
	              AUTH_UNAUTHENTICATED, "invalid_token", "Invalid or expired credentials");
	expect_result(a, "Basic dXNlcjpwYXNz", "reader-0123456789abcdef", "tasks:read",
	              AUTH_UNAUTHENTICATED, "invalid_token", NULL);
	/* No JWT key configured: any bearer token is invalid. */
	expect_result(a, "Bearer a.b.c", NULL, "tasks:read", AUTH_UNAUTHENTICATED, "invalid_token",
	              NULL);
	/* Public resource and unknown required permission. */
	expect_result(a, NULL, NULL, NULL, AUTH_OK, NULL, NULL);
	assert_int_equal(auth_check(a, NULL, "legacy-0123456789abcdef", "tasks:*", &r),
	                 TRPC_ERR_INVALID);
	assert_int_equal(r.code, AUTH_FORBIDDEN);

	struct auth_public_info pi;
	auth_public_info(a, &pi);
	assert_int_equal(pi.enabled, 1);
	assert_int_equal(pi.api_key_count, 3);
	assert_string_equal(pi.verification_method, "none");
	auth_free(a);
}

static void test_unknown_permissions_lax(void **state)
{
	(void)state;
	const struct kv rows[] = {
	    {"auth", "enabled", "true"},
	    {"auth", "api_keys_enabled", "true"},
	    {"auth", "strict_validation", "false"},
	    {"auth.api_key.x", "key", "x-0123456789abcdef"},
	    {"auth.api_key.x", "permissions", "*, tasks:read, foo:bar"},
	};
	struct auth *a = auth_of(rows, ARRAY_LEN(rows));
	expect_result(a, NULL, "x-0123456789abcdef", "tasks:read", AUTH_OK, NULL, NULL);
	expect_result(a, NULL, "x-0123456789abcdef", "tasks:create", AUTH_FORBIDDEN,
	              "missing_permission", NULL);
	auth_free(a);
}

static void test_disabled(void **state)
{
	(void)state;
	const struct kv rows[] = {{"auth", "enabled", "false"},
	                          {"auth", "jwt_public_key_path", "/nonexistent"}};
	struct auth *a = auth_of(rows, ARRAY_LEN(rows));
	struct auth_result r;

	assert_int_equal(auth_check(a, NULL, NULL, "dlq:update", &r), AUTH_OK);
	assert_string_equal(r.subject, "anonymous");
	assert_null(r.reason);
	assert_null(r.severity);
	assert_int_equal(auth_check(a, "Basic x", "nope", "tasks:create", &r), AUTH_OK);
	auth_free(a);
}

static void test_reload(void **state)
{
	(void)state;
	struct auth *a = auth_of(key_rows, ARRAY_LEN(key_rows));
	struct tk_err err = {0, ""};
	struct auth_public_info before, after;

	auth_public_info(a, &before);
	const struct kv other[] = {{"auth", "enabled", "true"},
	                           {"auth", "api_key", "new-0123456789abcdef"}};
	struct auth_config *c = config_of("orchestration", other, ARRAY_LEN(other));
	assert_int_equal(auth_reload(a, c, &err), 0);
	auth_config_free(c);
	expect_result(a, NULL, "reader-0123456789abcdef", "tasks:read", AUTH_UNAUTHENTICATED,
	              "invalid_api_key", NULL);
	expect_result(a, NULL, "new-0123456789abcdef", "tasks:read", AUTH_OK, NULL, NULL);
	assert_string_equal(auth_api_key_header(a), "x-api-key");
	/* Strings from before the reload are still valid. */
	assert_string_equal(before.api_key_header, "x-tasker-key");

	const struct kv broken[] = {{"auth", "enabled", "true"}};
	c = config_of("orchestration", broken, ARRAY_LEN(broken));
	assert_int_equal(auth_reload(a, c, &err), TRPC_ERR_CONFIG);
	auth_config_free(c);
	expect_result(a, NULL, "new-0123456789abcdef", "tasks:read", AUTH_OK, NULL, NULL);
	auth_public_info(a, &after);
	assert_int_equal(after.api_key_count, 1);
	auth_free(a);
}

/* An update is not in force until applied; one dropped changes nothing. */
static void test_update_in_two_steps(void **state)
{
	(void)state;
	struct auth *a = auth_of(key_rows, ARRAY_LEN(key_rows));
	struct tk_err err = {0, ""};
	const struct kv other[] = {{"auth", "enabled", "true"},
	                           {"auth", "api_key", "new-0123456789abcdef"}};
	struct auth_config *c = config_of("orchestration", other, ARRAY_LEN(other));

	struct auth_update *u = auth_update_new(a, c, &err);
	assert_non_null(u);
	expect_result(a, NULL, "new-0123456789abcdef", "tasks:read", AUTH_UNAUTHENTICATED,
	              "invalid_api_key", NULL);
	expect_result(a, NULL, "reader-0123456789abcdef", "tasks:read", AUTH_OK, NULL, NULL);
	auth_update_free(u);
	expect_result(a, NULL, "reader-0123456789abcdef", "tasks:read", AUTH_OK, NULL, NULL);

	u = auth_update_new(a, c, &err);
	assert_non_null(u);
	auth_update_apply(a, u);
	expect_result(a, NULL, "new-0123456789abcdef", "tasks:read", AUTH_OK, NULL, NULL);
	expect_result(a, NULL, "reader-0123456789abcdef", "tasks:read", AUTH_UNAUTHENTICATED,
	              "invalid_api_key", NULL);
	auth_config_free(c);

	const struct kv broken[] = {{"auth", "enabled", "true"}};
	c = config_of("orchestration", broken, ARRAY_LEN(broken));
	tk_err_clear(&err);
	assert_null(auth_update_new(a, c, &err));
	assert_int_equal(err.code, TRPC_ERR_CONFIG);
	assert_true(err.msg[0] != '\0');
	auth_update_free(NULL);
	auth_config_free(c);
	auth_free(a);
}

/* ------------------------------------------------------------------ tokens */

static void test_b64url(void **state)
{
	(void)state;
	unsigned char *out;
	assert_int_equal(auth_b64url_decode("", 0, &out), 0);
	free(out);
	assert_int_equal(auth_b64url_decode("Zm9vYg", 6, &out), 4);
	assert_memory_equal(out, "foob", 4);
	free(out);
	assert_int_equal(auth_b64url_decode("-_8", 3, &out), 2);
	assert_int_equal(out[0], 0xfb);
	assert_int_equal(out[1], 0xff);
	free(out);
	assert_int_equal(auth_b64url_decode("Zm9vYg==", 8, &out), -1); /* padding */
	assert_int_equal(auth_b64url_decode("Zm+v", 4, &out), -1);     /* not url-safe */
	assert_int_equal(auth_b64url_decode("Z", 1, &out), -1);        /* impossible length */
	assert_int_equal(auth_b64url_decode("Zh", 2, &out), -1);       /* stray bits */
}

/* "<b64url(header)>.<b64url(payload)>.AAAA" */
static char *make_token(const char *header, const char *payload)
{
	static const char alphabet[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	const char *parts[2] = {header, payload};
	char *out = calloc(1, 4096), *w = out;
	for (int p = 0; p < 2; p++) {
		const unsigned char *s = (const unsigned char *)parts[p];
		size_t n = strlen(parts[p]);
		for (size_t i = 0; i < n; i += 3) {
			unsigned v = (unsigned)s[i] << 16 |
			             (i + 1 < n ? (unsigned)s[i + 1] << 8 : 0) |
			             (i + 2 < n ? s[i + 2] : 0);
			*w++ = alphabet[v >> 18 & 63];
			*w++ = alphabet[v >> 12 & 63];
			if (i + 1 < n)
				*w++ = alphabet[v >> 6 & 63];
			if (i + 2 < n)
				*w++ = alphabet[v & 63];
		}
		*w++ = '.';
	}
	strcpy(w, "AAAA");
	return out;
}

static void test_jws_parse(void **state)
{
	(void)state;
	struct {
		const char *header;
		const char *needle; /* NULL: parses */
	} cases[] = {
	    {"{\"alg\":\"RS256\",\"typ\":\"JWT\",\"kid\":\"k1\"}", NULL},
	    {"{\"alg\":\"none\"}", "unsigned"},
	    {"{\"alg\":\"HS256\"}", "symmetric"},
	    {"{\"alg\":\"hs384\"}", "symmetric"},
	    {"{\"alg\":\"RS384\"}", "not in auth.jwt_allowed_algorithms"},
	    {"{\"alg\":\"ES512\"}", "unsupported"},
	    {"{\"typ\":\"JWT\"}", "no \"alg\""},
	    {"{\"alg\":\"RS256\",\"alg\":\"none\"}", "malformed token header"},
	    {"{\"alg\":\"RS256\",\"crit\":[\"b64\"]}", "critical"},
	    {"{\"alg\":\"RS256\",\"typ\":\"JWE\"}", "typ"},
	    {"{\"alg\":\"RS256\",\"kid\":7}", "kid"},
	    {"[\"RS256\"]", "malformed token header"},
	};
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		char *tok = make_token(cases[i].header, "{\"sub\":\"x\"}");
		struct auth_jws j;
		char why[256] = "";
		int rc = auth_jws_parse(tok, AUTH_ALG_BIT(AUTH_ALG_RS256), &j, why, sizeof why);
		if (cases[i].needle == NULL) {
			if (rc != 0)
				fail_msg("%s: %s", cases[i].header, why);
			assert_int_equal(j.alg, AUTH_ALG_RS256);
			assert_string_equal(j.kid, "k1");
			assert_int_equal(j.sig_len, 3);
		} else if (rc != AUTH_TOK_INVALID || strstr(why, cases[i].needle) == NULL) {
			fail_msg("%s: rc %d, \"%s\" (want \"%s\")", cases[i].header, rc, why,
			         cases[i].needle);
		}
		auth_jws_clear(&j);
		free(tok);
	}
	static const char *const malformed[] = {
	    "", "abc", "a.b", "a.b.c.d", "..", "a..c", "e30.e30.", "e30.e30.A", "e30.e30.!!!!"};
	for (size_t i = 0; i < ARRAY_LEN(malformed); i++) {
		struct auth_jws j;
		char why[256] = "";
		assert_int_equal(auth_jws_parse(malformed[i], ~0u, &j, why, sizeof why),
		                 AUTH_TOK_INVALID);
		assert_true(strlen(why) > 0);
		auth_jws_clear(&j);
	}
}

static void expect_claims(const char *json, const char *iss, const char *aud, long leeway, int want,
                          const char *needle)
{
	json_t *claims = json_loads(json, 0, NULL);
	char why[256] = "";
	struct auth_claim_rules r = {iss, aud, leeway, 1000000};
	assert_non_null(claims);
	int rc = auth_claims_check(claims, &r, why, sizeof why);
	if (rc != want || (needle != NULL && strstr(why, needle) == NULL))
		fail_msg("%s: rc %d \"%s\" (want %d \"%s\")", json, rc, why, want,
		         needle != NULL ? needle : "");
	json_decref(claims);
}

static void test_claims(void **state)
{
	(void)state;
	const char *iss = "tasker-core", *aud = "tasker-api";
	expect_claims("{\"sub\":\"a\",\"iss\":\"tasker-core\",\"aud\":\"tasker-api\","
	              "\"exp\":1000100}",
	              iss, aud, 0, 0, NULL);
	expect_claims("{\"sub\":\"a\",\"iss\":\"tasker-core\",\"aud\":[\"x\",\"tasker-api\"],"
	              "\"exp\":1000100.5,\"nbf\":999999,\"iat\":999990}",
	              iss, aud, 0, 0, NULL);
	expect_claims("{\"sub\":\"a\",\"iss\":\"tasker-core\",\"aud\":\"tasker-api\"}", iss, aud, 0,
	              AUTH_TOK_INVALID, "no exp");
	expect_claims("{\"sub\":\"a\",\"iss\":\"tasker-core\",\"aud\":\"tasker-api\","
	              "\"exp\":\"soon\"}",
	              iss, aud, 0, AUTH_TOK_INVALID, "exp");
	expect_claims("{\"sub\":\"a\",\"iss\":\"tasker-core\",\"aud\":\"tasker-api\","
	              "\"exp\":1000000}",
	              iss, aud, 0, AUTH_TOK_EXPIRED, "expired");
	expect_claims("{\"sub\":\"a\",\"iss\":\"tasker-core\",\"aud\":\"tasker-api\","
	              "\"exp\":999990}",
	              iss, aud, 30, 0, NULL);
	expect_claims("{\"sub\":\"a\",\"iss\":\"tasker-core\",\"aud\":\"tasker-api\","
	              "\"exp\":999960}",
	              iss, aud, 30, AUTH_TOK_EXPIRED, NULL);
	expect_claims("{\"sub\":\"a\",\"iss\":\"tasker-core\",\"aud\":\"tasker-api\","
	              "\"exp\":1000100,\"nbf\":1000050}",
	              iss, aud, 30, AUTH_TOK_INVALID, "not valid");
	expect_claims("{\"sub\":\"a\",\"iss\":\"tasker-core\",\"aud\":\"tasker-api\","
	              "\"exp\":1000100,\"nbf\":1000020}",
	              iss, aud, 30, 0, NULL);
	expect_claims("{\"sub\":\"a\",\"iss\":\"tasker-core\",\"aud\":\"tasker-api\","
	              "\"exp\":1000100,\"iat\":\"x\"}",
	              iss, aud, 0, AUTH_TOK_INVALID, "iat");
	expect_claims("{\"sub\":\"a\",\"iss\":\"other\",\"aud\":\"tasker-api\",\"exp\":1000100}",
	              iss, aud, 0, AUTH_TOK_INVALID, "issuer");
	expect_claims("{\"sub\":\"a\",\"aud\":\"tasker-api\",\"exp\":1000100}", iss, aud, 0,
	              AUTH_TOK_INVALID, "issuer");
	expect_claims("{\"sub\":\"a\",\"iss\":\"tasker-core\",\"aud\":\"worker-api\","
	              "\"exp\":1000100}",
	              iss, aud, 0, AUTH_TOK_INVALID, "audience");
	expect_claims("{\"sub\":\"a\",\"iss\":\"tasker-core\",\"aud\":[\"worker-api\"],"
	              "\"exp\":1000100}",
	              iss, aud, 0, AUTH_TOK_INVALID, "audience");
	expect_claims("{\"sub\":\"a\",\"iss\":\"tasker-core\",\"exp\":1000100}", iss, aud, 0,
	              AUTH_TOK_INVALID, "audience");
	expect_claims("{\"iss\":\"tasker-core\",\"aud\":\"tasker-api\",\"exp\":1000100}", iss, aud,
	              0, AUTH_TOK_INVALID, "sub");
	expect_claims("{\"sub\":\"\",\"iss\":\"tasker-core\",\"aud\":\"tasker-api\","
	              "\"exp\":1000100}",
	              iss, aud, 0, AUTH_TOK_INVALID, "sub");
	/* NULL issuer/audience: not checked (validate-token without them). */
	expect_claims("{\"sub\":\"a\",\"exp\":1000100}", NULL, NULL, 0, 0, NULL);
}

/* ------------------------------------------------------------------ key and token tools */

static char tmpdir[PATH_MAX];

static int tokens_setup(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof tmpdir, "%s/tasker-auth-unit-XXXXXX",
	         getenv("TMPDIR") != NULL ? getenv("TMPDIR") : "/tmp");
	return mkdtemp(tmpdir) != NULL ? 0 : -1;
}

static void remove_in(const char *dir, const char *name)
{
	char path[PATH_MAX + 64];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	unlink(path);
}

static int tokens_teardown(void **state)
{
	(void)state;
	char keys[PATH_MAX + 16];
	snprintf(keys, sizeof keys, "%s/keys", tmpdir);
	remove_in(keys, "private.pem");
	remove_in(keys, "public.pem");
	rmdir(keys);
	rmdir(tmpdir);
	return 0;
}

static void test_tokens_roundtrip(void **state)
{
	(void)state;
	char dir[PATH_MAX + 16], priv[PATH_MAX + 32], pub[PATH_MAX + 32], bearer[8192];
	struct tk_err err = {0, ""};
	struct stat st;

	snprintf(dir, sizeof dir, "%s/keys", tmpdir);
	snprintf(priv, sizeof priv, "%s/private.pem", dir);
	snprintf(pub, sizeof pub, "%s/public.pem", dir);
	assert_int_equal(auth_tokens_generate_keys(dir, 1024, &err), TRPC_ERR_INVALID);
	assert_int_equal(auth_tokens_generate_keys(dir, 2048, &err), 0);
	assert_int_equal(stat(priv, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(stat(pub, &st), 0);
	assert_int_equal(auth_tokens_generate_keys(dir, 2048, &err), TRPC_ERR_EXISTS);
	assert_non_null(strstr(err.msg, "refusing to overwrite"));

	struct auth_token_params p = {
	    .private_key_path = priv,
	    .subject = "svc",
	    .issuer = "tasker-core",
	    .audience = "tasker-api",
	    .permissions = "tasks:read,steps:*",
	    .expiry_hours = 1,
	};
	char *token = auth_tokens_generate(&p, &err);
	if (token == NULL)
		fail_msg("generate: %s", err.msg);

	json_t *claims = auth_tokens_validate(token, pub, "tasker-core", "tasker-api", &err);
	assert_non_null(claims);
	assert_string_equal(json_string_value(json_object_get(claims, "sub")), "svc");
	assert_int_equal(json_array_size(json_object_get(claims, "permissions")), 2);
	json_int_t exp = json_integer_value(json_object_get(claims, "exp"));
	json_int_t iat = json_integer_value(json_object_get(claims, "iat"));
	assert_int_equal(exp - iat, 3600);
	json_decref(claims);
	assert_null(auth_tokens_validate(token, pub, "tasker-worker", NULL, &err));
	assert_non_null(strstr(err.msg, "issuer"));

	/* The server side accepts it with the public key. */
	const struct kv rows[] = {{"auth", "enabled", "true"},
	                          {"auth", "jwt_public_key_path", pub}};
	struct auth *a = auth_of(rows, ARRAY_LEN(rows));
	snprintf(bearer, sizeof bearer, "Bearer %s", token);
	expect_result(a, bearer, NULL, "steps:resolve", AUTH_OK, NULL, NULL);
	expect_result(a, bearer, NULL, "tasks:create", AUTH_FORBIDDEN, "missing_permission",
	              "Missing permission: tasks:create");
	struct auth_result r;
	auth_check(a, bearer, NULL, "tasks:read", &r);
	assert_string_equal(r.subject, "svc");
	/* A flipped signature byte. */
	size_t n = strlen(bearer);
	bearer[n - 5] = bearer[n - 5] == 'A' ? 'B' : 'A';
	expect_result(a, bearer, NULL, "tasks:read", AUTH_UNAUTHENTICATED, "invalid_token", NULL);
	struct auth_public_info pi;
	auth_public_info(a, &pi);
	assert_string_equal(pi.verification_method, "public_key");
	auth_free(a);
	free(token);

	/* Parameter checks. */
	p.permissions = "tasks:read,*";
	assert_null(auth_tokens_generate(&p, &err));
	assert_non_null(strstr(err.msg, "\"*\""));
	p.permissions = "";
	assert_null(auth_tokens_generate(&p, &err));
	assert_non_null(strstr(err.msg, "empty"));
	p.permissions = "tasks:read";
	p.expiry_hours = 0;
	assert_null(auth_tokens_generate(&p, &err));
	p.expiry_hours = 1;
	p.private_key_path = pub;
	assert_null(auth_tokens_generate(&p, &err));
	assert_non_null(strstr(err.msg, "private key"));
}

int main(void)
{
	trpc_log_set_level(TRPC_LOG_ERROR);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_defaults),
	    cmocka_unit_test(test_config_values),
	    cmocka_unit_test(test_config_errors),
	    cmocka_unit_test(test_config_cross_checks),
	    cmocka_unit_test(test_permissions),
	    cmocka_unit_test(test_api_keys),
	    cmocka_unit_test(test_unknown_permissions_lax),
	    cmocka_unit_test(test_disabled),
	    cmocka_unit_test(test_reload),
	    cmocka_unit_test(test_update_in_two_steps),
	    cmocka_unit_test(test_b64url),
	    cmocka_unit_test(test_jws_parse),
	    cmocka_unit_test(test_claims),
	    cmocka_unit_test_setup_teardown(test_tokens_roundtrip, tokens_setup, tokens_teardown),
	};
	return cmocka_run_group_tests_name("auth", tests, NULL, NULL);
}

/*
 * auth: authentication and permissions shared by the gRPC and REST layers
 * of taskerd and tasker-worker (tasker-api.md §2.3, §2.4).
 *
 * Credentials: `Authorization: Bearer <JWT>` first (libjwt; RS256/384/512,
 * PS256/384/512, ES256/384 only; iss, aud and exp enforced; permissions
 * from a configurable claim; key from a PEM file or a JWKS file/URL with
 * refresh), else an API key from the configured header, looked up in the
 * registry of the config. Permissions are the 17 strings of §2.3 with
 * `resource:*` wildcards; unknown permission strings are rejected when
 * strict_validation is on.
 *
 * Thread-safe: auth_check() is called from RPC worker threads and REST
 * threads at once; auth_reload() swaps the key material atomically.
 */
#ifndef TK_AUTH_H
#define TK_AUTH_H

#include <stddef.h>

#include "store/err.h"

struct auth;

/* Outcome of a check. */
enum auth_code {
	AUTH_OK = 0,
	AUTH_UNAUTHENTICATED = 1, /* gRPC UNAUTHENTICATED, HTTP 401 */
	AUTH_FORBIDDEN = 2        /* gRPC PERMISSION_DENIED, HTTP 403 */
};

struct auth_result {
	enum auth_code code;
	char message
	    [256]; /* for the client: "Missing credentials", "Invalid or expired credentials",
	                      "Missing permission: tasks:create", "Unknown permissions: x:y" */
	const char *reason;   /* static, for x-auth-failure-reason: "missing_credentials",
	                         "invalid_token", "expired_token", "invalid_api_key",
	                         "missing_permission", "unknown_permissions"; NULL when OK */
	const char *severity; /* static, for x-auth-failure-severity: "low" "medium" "high"; NULL
	                         when OK */
	char subject[128];    /* JWT sub, "api-key:<description or index>", or "anonymous" */
};

/*
 * Settings: one INI section ([auth] in taskerd.conf / tasker-worker.conf).
 * auth_config_set() is called for each key of that section (and of the
 * [auth.api_key.<name>] sections, with section = "auth.api_key.<name>");
 * it returns 0, or TRPC_ERR_CONFIG with err naming the key and the
 * problem. `role` selects the defaults: "orchestration" (issuer
 * "tasker-core", audience "tasker-api") or "worker" ("tasker-worker",
 * "worker-api").
 */
struct auth_config;
struct auth_config *auth_config_new(const char *role);
void auth_config_free(struct auth_config *c);
int auth_config_set(struct auth_config *c, const char *section, const char *key, const char *value,
                    struct tk_err *err);
/* auth_config_set() also takes the command-line spelling of an API-key
 * entry: section "auth", key "api_key.<name>.<key>" (what the loader makes
 * of --auth.api_key.<name>.<key>=value). */

/*
 * 1 when auth_config_set() knows `key` of `section` (either spelling),
 * whatever its value; 0 otherwise. Lets a loader tell an unknown key
 * (which it reports, or ignores in the environment) from a bad value.
 */
int auth_config_knows(const char *section, const char *key);

/*
 * The i-th key auth_config_set() takes, i from 0, for listings
 * (--list-options): section "auth" with each [auth] key, then section
 * "auth.api_key.<name>" (the literal pattern) with key, permissions and
 * description. Static strings. 0, or TRPC_ERR_NOT_FOUND past the last.
 */
int auth_config_key(size_t i, const char **section, const char **key);
/*
 * Key reference (defaults in brackets): enabled [false];
 * jwt_verification_method public_key|jwks [public_key]; jwt_public_key_path
 * (PEM file; wins over) jwt_public_key (inline PEM, "\n" sequences allowed);
 * jwks_url (https://; http:// only with jwks_url_allow_http [false];
 * file:// or a path: a JWKS file); jwks_refresh_interval_seconds [3600];
 * jwks_max_stale_seconds [300]; jwks_min_refresh_interval_seconds [10]
 * (refreshes, also those triggered by an unknown kid, are at most this
 * frequent); jwt_allowed_algorithms [RS256] (RS256/384/512, PS256/384/512,
 * ES256/384; HS* and none are a config error); jwt_issuer, jwt_audience
 * [by role]; permissions_claim [permissions]; api_key_header [X-API-Key];
 * api_keys_enabled [false] (enables the [auth.api_key.<name>] entries:
 * key, permissions (comma list), description); api_key (legacy single
 * key: holds all 17 permissions); strict_validation [true];
 * log_unknown_permissions [true]; leeway_seconds [30] (clock skew allowed
 * on exp and nbf, 0..300).
 *
 * Cross-key rules, checked by auth_new()/auth_reload() through this
 * function when auth is enabled: jwks needs jwks_url, http:// needs
 * jwks_url_allow_http, every API-key entry needs key=, and something must
 * be able to verify a credential. 0 or TRPC_ERR_CONFIG with err set.
 */
int auth_config_check(const struct auth_config *c, struct tk_err *err);

/* Builds the checker (reads key files, the JWKS file or first fetch).
 * NULL with err set when the configuration is unusable. Logs one line
 * about the result: at WARN "authentication disabled: every request is
 * allowed as \"anonymous\"" when auth is off, so callers need not. */
struct auth *auth_new(const struct auth_config *c, struct tk_err *err);
void auth_free(struct auth *a);
/* Replaces keys and settings from a new config; on error the old ones stay.
 * The same as auth_update_new() then auth_update_apply(). */
int auth_reload(struct auth *a, const struct auth_config *c, struct tk_err *err);

/*
 * A reload in two steps, for a caller that must check everything it will
 * change before it changes any of it. auth_update_new() builds the
 * settings and key material of c (reads key files, fetches the JWKS)
 * without putting them in force: NULL with err set when c is unusable.
 * auth_update_apply() puts them in force, atomically for auth_check(),
 * and cannot fail; it frees u. auth_update_free() drops u unapplied (NULL
 * is allowed). u belongs to the a it was built for.
 */
struct auth_update;
struct auth_update *auth_update_new(struct auth *a, const struct auth_config *c,
                                    struct tk_err *err);
void auth_update_apply(struct auth *a, struct auth_update *u);
void auth_update_free(struct auth_update *u);

int auth_enabled(const struct auth *a);
/* Lower-case name of the API-key header ("x-api-key" by default). */
const char *auth_api_key_header(const struct auth *a);

/*
 * Checks the credentials of one request against `permission` (one of the
 * 17; NULL = a public resource: always AUTH_OK). `authorization` is the
 * value of the Authorization header / metadata (NULL when absent),
 * `api_key` the value of the API-key header (NULL when absent). With auth
 * disabled every check passes with subject "anonymous".
 */
int auth_check(struct auth *a, const char *authorization, const char *api_key,
               const char *permission, struct auth_result *out);
/* auth_check() returns out->code (>= 0). It returns TRPC_ERR_INVALID, with
 * out set to AUTH_FORBIDDEN (fail closed), when `permission` is not one of
 * the 17. An empty Authorization or API-key value counts as absent; a
 * non-empty Authorization that is not "Bearer <token>" is invalid
 * credentials, and the API key is then not consulted. */

/* 1 when `perm` is one of the 17 permissions or a `resource:*` wildcard. */
int auth_permission_known(const char *perm);
/* The 17 permissions (static array); returns their number. */
size_t auth_permission_list(const char *const **out);

/* What the safe-config answers may show (§7): no keys, no paths, no URL. */
struct auth_public_info {
	int enabled;
	const char *verification_method; /* "public_key", "jwks", "none" */
	const char *jwt_issuer, *jwt_audience, *api_key_header;
	size_t api_key_count;
	int strict_validation;
	const char *allowed_algorithms; /* comma-separated */
};
/* The strings stay valid until auth_free(), across reloads. api_key_count
 * counts the legacy key and the registry entries in use. */
void auth_public_info(const struct auth *a, struct auth_public_info *out);

#endif

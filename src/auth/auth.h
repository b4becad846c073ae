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

/* Builds the checker (reads key files, the JWKS file or first fetch).
 * NULL with err set when the configuration is unusable. */
struct auth *auth_new(const struct auth_config *c, struct tk_err *err);
void auth_free(struct auth *a);
/* Replaces keys and settings from a new config; on error the old ones stay. */
int auth_reload(struct auth *a, const struct auth_config *c, struct tk_err *err);

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

/* 1 when `perm` is one of the 17 permissions or a `resource:*` wildcard. */
int auth_permission_known(const char *perm);

/* What the safe-config answers may show (§7): no keys, no paths, no URL. */
struct auth_public_info {
	int enabled;
	const char *verification_method; /* "public_key", "jwks", "none" */
	const char *jwt_issuer, *jwt_audience, *api_key_header;
	size_t api_key_count;
	int strict_validation;
	const char *allowed_algorithms; /* comma-separated */
};
void auth_public_info(const struct auth *a, struct auth_public_info *out);

#endif

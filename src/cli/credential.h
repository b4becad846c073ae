/*
 * credential: the short-lived token tasker-cli signs for itself when a
 * profile names a private key (jwt_private_key_path or
 * TASKER_JWT_PRIVATE_KEY_PATH) instead of a token or an API key.
 */
#ifndef TK_CLI_CREDENTIAL_H
#define TK_CLI_CREDENTIAL_H

#include <stddef.h>

#include "cli/profile.h"

/* The issuer and audience the servers expect by default (tasker-api.md §2.4). */
#define CLI_ORCHESTRATION_ISSUER   "tasker-core"
#define CLI_ORCHESTRATION_AUDIENCE "tasker-api"
#define CLI_WORKER_ISSUER          "tasker-worker"
#define CLI_WORKER_AUDIENCE        "worker-api"

/*
 * Signs an RS256 token with the RSA private key at `key_path` for a
 * target's server: subject "tasker-cli", that server's default issuer and
 * audience, every resource's wildcard permission, valid for one hour.
 * Returns the token (malloc'd; the caller frees it), or NULL with the
 * reason in why.
 */
char *cli_credential_sign(const char *key_path, enum cli_target target, char *why, size_t size);

#endif

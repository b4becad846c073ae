/*
 * credential: a token signed with the profile's private key. See
 * credential.h.
 */
#include <stdio.h>
#include <stdlib.h>

#include "auth/tokens.h"
#include "cli/credential.h"

#define CLI_SUBJECT "tasker-cli"
/* The shortest lifetime auth_tokens_generate() allows. */
#define CLI_TOKEN_HOURS 1
/* Whoever holds the private key may do everything: one wildcard per
 * resource of the permission vocabulary (tasker-api.md §2.3). */
#define CLI_ALL_PERMISSIONS "tasks:*,steps:*,dlq:*,templates:*,system:*,worker:*"

char *cli_credential_sign(const char *key_path, enum cli_target target, char *why, size_t size)
{
	struct auth_token_params p = {
	    .private_key_path = key_path,
	    .subject = CLI_SUBJECT,
	    .issuer = target == CLI_TARGET_WORKER ? CLI_WORKER_ISSUER : CLI_ORCHESTRATION_ISSUER,
	    .audience =
	        target == CLI_TARGET_WORKER ? CLI_WORKER_AUDIENCE : CLI_ORCHESTRATION_AUDIENCE,
	    .permissions = CLI_ALL_PERMISSIONS,
	    .expiry_hours = CLI_TOKEN_HOURS,
	};
	struct tk_err err;
	char *token;

	tk_err_clear(&err);
	token = auth_tokens_generate(&p, &err);
	if (token == NULL) {
		snprintf(why, size, "%s", err.msg[0] ? err.msg : "cannot sign a token");
	}
	return token;
}

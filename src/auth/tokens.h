/*
 * tokens: key pairs and tokens for the command-line client's `auth`
 * commands (tasker-api.md §9: generate-keys, generate-token,
 * validate-token). The server side never signs anything; these exist so
 * that an operator can mint test and service tokens the server accepts.
 */
#ifndef TK_AUTH_TOKENS_H
#define TK_AUTH_TOKENS_H

#include <stddef.h>

#include <jansson.h>

#include "store/err.h"

#define AUTH_TOKENS_MIN_BITS 2048
#define AUTH_TOKENS_MAX_BITS 16384

/*
 * Generates an RSA key pair of `bits` bits (AUTH_TOKENS_MIN_BITS ..
 * AUTH_TOKENS_MAX_BITS, a multiple of 8) and writes <dir>/private.pem
 * (PKCS#8, unencrypted, mode 0600) and <dir>/public.pem
 * (SubjectPublicKeyInfo, mode 0644). `dir` is created with mode 0700 when
 * it does not exist (its parent must). Neither file is ever overwritten.
 * Returns 0, TRPC_ERR_INVALID (bad bits), TRPC_ERR_EXISTS (a file is
 * there), TRPC_ERR_SYSTEM (I/O) or TRPC_ERR_TLS (OpenSSL), with err set.
 */
int auth_tokens_generate_keys(const char *dir, int bits, struct tk_err *err);

struct auth_token_params {
	const char *private_key_path; /* RSA private key, PEM, unencrypted */
	const char *subject;          /* sub */
	const char *issuer;           /* iss, e.g. "tasker-core" */
	const char *audience;         /* aud, e.g. "tasker-api" */
	const char *permissions;      /* comma list; each one of the 17 or resource:* */
	int expiry_hours;             /* 1 .. 8760 */
};

/*
 * Signs an RS256 token with sub, iss, aud, iat, exp = now + expiry_hours
 * and the permissions array. Returns a malloc'd token (free()), or NULL
 * with err set: TRPC_ERR_INVALID for a bad parameter (an unknown
 * permission is named), TRPC_ERR_CONFIG for an unusable key file.
 */
char *auth_tokens_generate(const struct auth_token_params *p, struct tk_err *err);

/*
 * Verifies `token` against the PEM public key at `public_key_path` (any of
 * the accepted public-key algorithms that fits the key), requires an
 * unexpired exp and a sub, and, when not NULL, iss == issuer and aud
 * containing `audience`. Returns the claims as a new JSON object (caller
 * json_decref()s; json_dumps() it to print), or NULL with err set:
 * TRPC_ERR_CONFIG for the key file, TRPC_ERR_INVALID naming what is wrong
 * with the token.
 */
json_t *auth_tokens_validate(const char *token, const char *public_key_path, const char *issuer,
                             const char *audience, struct tk_err *err);

#endif

/*
 * auth_int: what the files of src/auth share and nothing else includes.
 *
 *   config.c  struct auth_config: the [auth] keys, parsed from a row table
 *   keys.c    public keys: PEM text or JWK members -> EVP_PKEY (+ PEM for libjwt)
 *   jwt.c     compact JWS parsing, signature and claim checks
 *   jwks.c    the JWKS key set: document parsing, fetching, refresh cache
 *   auth.c    the checker: credential extraction, API keys, permissions
 *   tokens.c  key and token tools for the command-line client
 */
#ifndef TK_AUTH_INT_H
#define TK_AUTH_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "auth/auth.h"

#define AUTH_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* ------------------------------------------------------------------ algorithms */

/* The signature algorithms a token may use; the order is that of alg_info[]
 * in jwt.c and of the bits of an algorithm mask. */
enum auth_alg {
	AUTH_ALG_RS256 = 0,
	AUTH_ALG_RS384,
	AUTH_ALG_RS512,
	AUTH_ALG_PS256,
	AUTH_ALG_PS384,
	AUTH_ALG_PS512,
	AUTH_ALG_ES256,
	AUTH_ALG_ES384,
	AUTH_ALG_COUNT
};

#define AUTH_ALG_BIT(alg) (1u << (unsigned)(alg))

/* The kind of public key an algorithm needs. */
enum auth_key_kind { AUTH_KEY_RSA = 1, AUTH_KEY_EC_P256 = 2, AUTH_KEY_EC_P384 = 3 };

/* Index of `name` ("RS256", case-sensitive as JWA says), or -1. */
int auth_alg_from_name(const char *name);
const char *auth_alg_name(int alg);
enum auth_key_kind auth_alg_key_kind(int alg);
/* Writes the names of the bits of `mask` as "RS256,PS256" into buf. */
void auth_alg_mask_text(unsigned mask, char *buf, size_t size);

/* ------------------------------------------------------------------ config */

enum auth_method { AUTH_METHOD_PUBLIC_KEY = 1, AUTH_METHOD_JWKS = 2 };

struct auth_cfg_api_key {
	char *name;        /* the <name> of [auth.api_key.<name>] */
	char *key;         /* the secret */
	char *permissions; /* comma list as written */
	char *description;
};

struct auth_config {
	int role_worker;
	int enabled;
	int method; /* enum auth_method */
	char *jwt_public_key_path;
	char *jwt_public_key; /* inline PEM */
	char *jwks_url;
	int jwks_url_allow_http;
	int jwks_refresh_interval_seconds;
	int jwks_max_stale_seconds;
	int jwks_min_refresh_interval_seconds;
	unsigned alg_mask; /* AUTH_ALG_BIT()s */
	char *jwt_issuer;
	char *jwt_audience;
	char *permissions_claim;
	char *api_key_header; /* as written; the checker lower-cases it */
	int api_keys_enabled;
	char *api_key; /* legacy single key */
	int strict_validation;
	int log_unknown_permissions;
	int leeway_seconds;
	struct auth_cfg_api_key *keys;
	size_t nkeys, cap_keys;
};

/* Splits a comma list into trimmed, non-empty items: calls fn for each
 * (item is NUL-terminated scratch, valid during the call). Stops at the
 * first non-zero return of fn and returns it. */
int auth_split_list(const char *text, int (*fn)(void *ud, const char *item), void *ud);

/* ------------------------------------------------------------------ keys */

/* A public key ready for both verifiers: EVP_PKEY for the OpenSSL path,
 * SubjectPublicKeyInfo PEM for libjwt. Immutable once built. */
struct auth_key {
	enum auth_key_kind kind;
	EVP_PKEY *pkey;
	char *pem;
	size_t pem_len;
	char *kid; /* JWKS only; NULL for a configured PEM key */
	int alg;   /* JWK "alg" when given (enum auth_alg), else -1: any of the kind */
};

/* From PEM text (SubjectPublicKeyInfo, PKCS#1 RSA public key or an X.509
 * certificate). Returns 0 or TRPC_ERR_CONFIG/TRPC_ERR_NOMEM with err
 * naming `what` (e.g. "auth.jwt_public_key_path"). */
int auth_key_from_pem(const char *pem, size_t len, const char *what, struct auth_key **out,
                      struct tk_err *err);
/* From one JWK object; returns 0, or -1 with why filled (the key is skipped). */
int auth_key_from_jwk(json_t *jwk, struct auth_key **out, char *why, size_t why_size);
void auth_key_free(struct auth_key *k);
/* 1 when the key can verify `alg` (kind matches, JWK alg agrees). */
int auth_key_fits(const struct auth_key *k, int alg);

/* ------------------------------------------------------------------ tokens */

/* A compact JWS split and decoded. Owns header, claims and sig. */
struct auth_jws {
	json_t *header;
	json_t *claims;
	unsigned char *sig;
	size_t sig_len;
	size_t signed_len; /* bytes of "<header>.<payload>" at the start of the token */
	int alg;           /* enum auth_alg */
	const char *kid;   /* from header, NULL when absent (borrowed from header) */
};

/* Failure classes of a token check, mapped to auth_result.reason. */
enum auth_tok_fail {
	AUTH_TOK_INVALID = 1, /* "invalid_token" */
	AUTH_TOK_EXPIRED = 2  /* "expired_token" */
};

/* Splits and decodes `token`, checks that the header names an algorithm of
 * `alg_mask`. Returns 0, or AUTH_TOK_INVALID with why filled. */
int auth_jws_parse(const char *token, unsigned alg_mask, struct auth_jws *out, char *why,
                   size_t why_size);
void auth_jws_clear(struct auth_jws *j);
/* Verifies the signature of a parsed token with `key`: RS and ES through
 * libjwt, PS through OpenSSL (libjwt 1.10 has no PS*). 0, or
 * AUTH_TOK_INVALID with why filled. */
int auth_jws_verify(const struct auth_jws *j, const char *token, const struct auth_key *key,
                    char *why, size_t why_size);

/* What the claims must satisfy. NULL issuer/audience: not checked. */
struct auth_claim_rules {
	const char *issuer;
	const char *audience;
	long leeway;
	time_t now;
};
/* exp (required), nbf, iat, iss, aud, sub (required string). 0, or an
 * enum auth_tok_fail with why filled. */
int auth_claims_check(json_t *claims, const struct auth_claim_rules *r, char *why, size_t why_size);

/* ------------------------------------------------------------------ JWKS */

struct auth_jwks;

struct auth_jwks_params {
	const char *source; /* https://, http://, file:// URL or a path */
	int refresh_interval_s, max_stale_s, min_refresh_interval_s;
};

/* Loads the set for the first time. NULL with err set when the source
 * cannot be read or holds no usable key. */
struct auth_jwks *auth_jwks_new(const struct auth_jwks_params *p, struct tk_err *err);
void auth_jwks_free(struct auth_jwks *j);

/* The key with `kid` able to verify `alg`, refreshing the set when it is
 * due or the kid is unknown (rate limited). On success *hold is a
 * reference on the key set that keeps the key alive: release it with
 * auth_jwks_release(). Returns NULL with why filled otherwise. */
struct auth_jwks_set;
const struct auth_key *auth_jwks_get(struct auth_jwks *j, const char *kid, int alg,
                                     struct auth_jwks_set **hold, char *why, size_t why_size);
void auth_jwks_release(struct auth_jwks_set *s);

/* Parses a JWKS document into keys (kid required, unusable keys skipped
 * with a log line). For the cache and for tests. Returns the number of
 * keys, or -1 with why filled when the document is not a JWKS. */
int auth_jwks_parse(const char *doc, size_t len, struct auth_key ***keys, char *why,
                    size_t why_size);

/* ------------------------------------------------------------------ misc */

/* Base64url without padding (RFC 7515 §2). Returns the decoded length, or
 * -1 for a character outside the alphabet, padding or a bad length. *out
 * is malloc'd (NUL-terminated for convenience). */
long auth_b64url_decode(const char *in, size_t len, unsigned char **out);

/* CLOCK_MONOTONIC milliseconds. */
int64_t auth_mono_ms(void);

#endif

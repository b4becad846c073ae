/*
 * jwt: compact JWS tokens (RFC 7515/7519) - parsing, signatures, claims.
 *
 * The header is decoded and judged here, before any key is touched: the
 * algorithm must be one of the configured public-key algorithms, so
 * `none` and every HS* (HMAC keyed with whatever the verifier holds, the
 * classic confusion with an RSA public key's PEM) never reach a verifier.
 * The key must then be of the kind the algorithm needs (RSA for RS/PS, the
 * matching curve for ES), so no key serves an algorithm it was not made for.
 *
 * Signatures, split by what Debian 12's libjwt (1.10) can do:
 *   RS256/384/512, ES256/384  libjwt jwt_decode() with the key's PEM
 *   PS256/384/512             OpenSSL 3 EVP, RSA-PSS with MGF1 over the same
 *                             digest and a salt as long as the digest
 *                             (RFC 7518 §3.5); libjwt 1.10 has no PS*.
 * Claims are checked here for every algorithm, on the payload decoded by
 * jansson with duplicate member names refused (two "exp" members could
 * otherwise be read differently by two parsers).
 */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <jwt.h>
#include <openssl/err.h>
#include <openssl/rsa.h>

#include "auth/auth_int.h"

/* Longer tokens are refused before any decoding. */
#define TOKEN_MAX 16384

/* ------------------------------------------------------------------ algorithms */

struct alg_info {
	const char *name;
	enum auth_key_kind kind;
	const char *digest;
	int libjwt; /* jwt_alg_t, or -1: verified with OpenSSL here */
	size_t ec_sig_len;
};

/* Indexed by enum auth_alg. */
static const struct alg_info alg_info[AUTH_ALG_COUNT] = {
    [AUTH_ALG_RS256] = {"RS256", AUTH_KEY_RSA, "SHA256", JWT_ALG_RS256, 0},
    [AUTH_ALG_RS384] = {"RS384", AUTH_KEY_RSA, "SHA384", JWT_ALG_RS384, 0},
    [AUTH_ALG_RS512] = {"RS512", AUTH_KEY_RSA, "SHA512", JWT_ALG_RS512, 0},
    [AUTH_ALG_PS256] = {"PS256", AUTH_KEY_RSA, "SHA256", -1, 0},
    [AUTH_ALG_PS384] = {"PS384", AUTH_KEY_RSA, "SHA384", -1, 0},
    [AUTH_ALG_PS512] = {"PS512", AUTH_KEY_RSA, "SHA512", -1, 0},
    [AUTH_ALG_ES256] = {"ES256", AUTH_KEY_EC_P256, "SHA256", JWT_ALG_ES256, 64},
    [AUTH_ALG_ES384] = {"ES384", AUTH_KEY_EC_P384, "SHA384", JWT_ALG_ES384, 96},
};

int auth_alg_from_name(const char *name)
{
	for (int i = 0; i < AUTH_ALG_COUNT; i++)
		if (strcmp(alg_info[i].name, name) == 0)
			return i;
	return -1;
}

const char *auth_alg_name(int alg)
{
	return alg >= 0 && alg < AUTH_ALG_COUNT ? alg_info[alg].name : "?";
}

enum auth_key_kind auth_alg_key_kind(int alg)
{
	return alg >= 0 && alg < AUTH_ALG_COUNT ? alg_info[alg].kind : 0;
}

void auth_alg_mask_text(unsigned mask, char *buf, size_t size)
{
	size_t used = 0;

	if (size == 0)
		return;
	buf[0] = '\0';
	for (int i = 0; i < AUTH_ALG_COUNT; i++) {
		if (!(mask & AUTH_ALG_BIT(i)))
			continue;
		int n = snprintf(buf + used, size - used, "%s%s", used != 0 ? "," : "",
		                 alg_info[i].name);
		if (n < 0 || (size_t)n >= size - used)
			return;
		used += (size_t)n;
	}
}

/* ------------------------------------------------------------------ base64url */

static int b64url_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '-')
		return 62;
	if (c == '_')
		return 63;
	return -1;
}

long auth_b64url_decode(const char *in, size_t len, unsigned char **out)
{
	*out = NULL;
	if (len % 4 == 1)
		return -1; /* no byte count ends there */
	unsigned char *buf = malloc(len / 4 * 3 + 3);
	if (buf == NULL)
		return -1;
	size_t o = 0;
	unsigned acc = 0;
	int bits = 0;
	for (size_t i = 0; i < len; i++) {
		int v = b64url_value((unsigned char)in[i]);
		if (v < 0) {
			free(buf);
			return -1;
		}
		acc = (acc << 6) | (unsigned)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			buf[o++] = (unsigned char)(acc >> bits);
			acc &= (1u << bits) - 1;
		}
	}
	if (acc != 0) { /* non-canonical: left-over bits must be zero */
		free(buf);
		return -1;
	}
	buf[o] = '\0';
	*out = buf;
	return (long)o;
}

/* ------------------------------------------------------------------ parsing */

void auth_jws_clear(struct auth_jws *j)
{
	json_decref(j->header);
	json_decref(j->claims);
	free(j->sig);
	memset(j, 0, sizeof *j);
	j->alg = -1;
}

static json_t *decode_json_part(const char *s, size_t len)
{
	unsigned char *raw;
	long n = auth_b64url_decode(s, len, &raw);
	if (n < 0)
		return NULL;
	json_t *v = json_loadb((const char *)raw, (size_t)n, JSON_REJECT_DUPLICATES, NULL);
	free(raw);
	if (v != NULL && !json_is_object(v)) {
		json_decref(v);
		return NULL;
	}
	return v;
}

static int parse_fail(struct auth_jws *out, char *why, size_t why_size, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int parse_fail(struct auth_jws *out, char *why, size_t why_size, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, why_size, fmt, ap);
	va_end(ap);
	auth_jws_clear(out);
	return AUTH_TOK_INVALID;
}

/* The header's alg against what is allowed; 0 or AUTH_TOK_INVALID. */
static int judge_alg(struct auth_jws *out, unsigned alg_mask, char *why, size_t why_size)
{
	json_t *alg = json_object_get(out->header, "alg");
	if (!json_is_string(alg))
		return parse_fail(out, why, why_size, "header has no \"alg\"");
	const char *name = json_string_value(alg);
	if (strcasecmp(name, "none") == 0)
		return parse_fail(out, why, why_size, "unsigned token (alg \"%s\") refused", name);
	if (strncasecmp(name, "HS", 2) == 0)
		return parse_fail(out, why, why_size,
		                  "symmetric algorithm %s refused (public-key algorithms only)",
		                  name);
	int a = auth_alg_from_name(name);
	if (a < 0)
		return parse_fail(out, why, why_size, "unsupported algorithm \"%.40s\"", name);
	if (!(alg_mask & AUTH_ALG_BIT(a)))
		return parse_fail(out, why, why_size,
		                  "algorithm %s is not in auth.jwt_allowed_algorithms", name);
	out->alg = a;
	return 0;
}

int auth_jws_parse(const char *token, unsigned alg_mask, struct auth_jws *out, char *why,
                   size_t why_size)
{
	memset(out, 0, sizeof *out);
	out->alg = -1;
	size_t len = strnlen(token, TOKEN_MAX + 1);
	if (len > TOKEN_MAX)
		return parse_fail(out, why, why_size, "token longer than %d bytes", TOKEN_MAX);
	const char *dot1 = memchr(token, '.', len);
	const char *dot2 =
	    dot1 != NULL ? memchr(dot1 + 1, '.', len - (size_t)(dot1 + 1 - token)) : NULL;
	if (dot1 == NULL || dot2 == NULL || memchr(dot2 + 1, '.', len - (size_t)(dot2 + 1 - token)))
		return parse_fail(out, why, why_size,
		                  "malformed token (not three dot-separated parts)");
	if (dot1 == token || dot2 == dot1 + 1 || dot2 + 1 == token + len)
		return parse_fail(out, why, why_size, "malformed token (empty part)");

	out->header = decode_json_part(token, (size_t)(dot1 - token));
	if (out->header == NULL)
		return parse_fail(out, why, why_size,
		                  "malformed token header (not base64url of a JSON object)");
	if (judge_alg(out, alg_mask, why, why_size) != 0)
		return AUTH_TOK_INVALID;
	if (json_object_get(out->header, "crit") != NULL)
		return parse_fail(out, why, why_size, "critical header extensions not supported");
	json_t *typ = json_object_get(out->header, "typ");
	if (typ != NULL && (!json_is_string(typ) || strcasecmp(json_string_value(typ), "JWT") != 0))
		return parse_fail(out, why, why_size, "header typ is not \"JWT\"");
	json_t *kid = json_object_get(out->header, "kid");
	if (kid != NULL && !json_is_string(kid))
		return parse_fail(out, why, why_size, "header kid is not a string");
	out->kid = kid != NULL ? json_string_value(kid) : NULL;

	out->claims = decode_json_part(dot1 + 1, (size_t)(dot2 - dot1 - 1));
	if (out->claims == NULL)
		return parse_fail(out, why, why_size,
		                  "malformed token payload (not base64url of a JSON object)");
	long n = auth_b64url_decode(dot2 + 1, len - (size_t)(dot2 + 1 - token), &out->sig);
	if (n <= 0)
		return parse_fail(out, why, why_size, "malformed token signature");
	out->sig_len = (size_t)n;
	out->signed_len = (size_t)(dot2 - token);
	return 0;
}

/* ------------------------------------------------------------------ signatures */

static int verify_pss(const struct auth_jws *j, const char *token, const struct auth_key *key)
{
	const EVP_MD *md = EVP_get_digestbyname(alg_info[j->alg].digest);
	EVP_MD_CTX *mctx = EVP_MD_CTX_new();
	EVP_PKEY_CTX *pctx = NULL;
	int ok = 0;

	if (md != NULL && mctx != NULL &&
	    EVP_DigestVerifyInit(mctx, &pctx, md, NULL, key->pkey) == 1 &&
	    EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) == 1 &&
	    EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, md) == 1 &&
	    EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) == 1)
		ok = EVP_DigestVerify(mctx, j->sig, j->sig_len, (const unsigned char *)token,
		                      j->signed_len) == 1;
	EVP_MD_CTX_free(mctx);
	ERR_clear_error();
	return ok;
}

static int verify_libjwt(const struct auth_jws *j, const char *token, const struct auth_key *key)
{
	jwt_t *jwt = NULL;
	/* libjwt wants the bare token: no trailing bytes after the signature. */
	int rc = jwt_decode(&jwt, token, (const unsigned char *)key->pem, (int)key->pem_len);
	int ok = rc == 0 && jwt != NULL && (int)jwt_get_alg(jwt) == alg_info[j->alg].libjwt;
	jwt_free(jwt);
	ERR_clear_error();
	return ok;
}

int auth_jws_verify(const struct auth_jws *j, const char *token, const struct auth_key *key,
                    char *why, size_t why_size)
{
	if (j->alg < 0 || !auth_key_fits(key, j->alg)) {
		snprintf(why, why_size, "algorithm %s does not fit the key", auth_alg_name(j->alg));
		return AUTH_TOK_INVALID;
	}
	const struct alg_info *ai = &alg_info[j->alg];
	/* JWS ECDSA signatures are r || s, each exactly the field size. */
	if (ai->ec_sig_len != 0 && j->sig_len != ai->ec_sig_len) {
		snprintf(why, why_size, "%s signature of %zu bytes (want %zu)", ai->name,
		         j->sig_len, ai->ec_sig_len);
		return AUTH_TOK_INVALID;
	}
	int ok = ai->libjwt >= 0 ? verify_libjwt(j, token, key) : verify_pss(j, token, key);
	if (!ok) {
		snprintf(why, why_size, "bad %s signature", ai->name);
		return AUTH_TOK_INVALID;
	}
	return 0;
}

/* ------------------------------------------------------------------ claims */

/* A NumericDate claim: 1 and *t when present and a number, 0 when absent,
 * -1 when present but not a number. */
static int numeric_date(json_t *claims, const char *name, double *t)
{
	json_t *v = json_object_get(claims, name);
	if (v == NULL)
		return 0;
	if (!json_is_number(v))
		return -1;
	*t = json_number_value(v);
	return 1;
}

static int audience_matches(json_t *aud, const char *want)
{
	if (json_is_string(aud))
		return strcmp(json_string_value(aud), want) == 0;
	if (!json_is_array(aud))
		return 0;
	size_t i;
	json_t *v;
	json_array_foreach(aud, i, v)
	{
		if (json_is_string(v) && strcmp(json_string_value(v), want) == 0)
			return 1;
	}
	return 0;
}

int auth_claims_check(json_t *claims, const struct auth_claim_rules *r, char *why, size_t why_size)
{
	double exp, nbf, iat;
	double now = (double)r->now, leeway = (double)r->leeway;

	switch (numeric_date(claims, "exp", &exp)) {
	case 0:
		snprintf(why, why_size, "token has no exp claim");
		return AUTH_TOK_INVALID;
	case -1:
		snprintf(why, why_size, "exp claim is not a number");
		return AUTH_TOK_INVALID;
	default:
		if (now >= exp + leeway) {
			snprintf(why, why_size, "token expired %.0f s ago", now - exp);
			return AUTH_TOK_EXPIRED;
		}
	}
	switch (numeric_date(claims, "nbf", &nbf)) {
	case -1:
		snprintf(why, why_size, "nbf claim is not a number");
		return AUTH_TOK_INVALID;
	case 1:
		if (now + leeway < nbf) {
			snprintf(why, why_size, "token not valid for another %.0f s", nbf - now);
			return AUTH_TOK_INVALID;
		}
	}
	if (numeric_date(claims, "iat", &iat) < 0) {
		snprintf(why, why_size, "iat claim is not a number");
		return AUTH_TOK_INVALID;
	}
	if (r->issuer != NULL) {
		json_t *iss = json_object_get(claims, "iss");
		if (!json_is_string(iss) || strcmp(json_string_value(iss), r->issuer) != 0) {
			snprintf(why, why_size, "issuer \"%.60s\" is not \"%s\"",
			         json_is_string(iss) ? json_string_value(iss) : "(missing)",
			         r->issuer);
			return AUTH_TOK_INVALID;
		}
	}
	if (r->audience != NULL && !audience_matches(json_object_get(claims, "aud"), r->audience)) {
		snprintf(why, why_size, "audience does not include \"%s\"", r->audience);
		return AUTH_TOK_INVALID;
	}
	json_t *sub = json_object_get(claims, "sub");
	if (!json_is_string(sub) || json_string_length(sub) == 0) {
		snprintf(why, why_size, "token has no sub claim");
		return AUTH_TOK_INVALID;
	}
	return 0;
}

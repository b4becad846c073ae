/*
 * keys: public keys for token verification.
 *
 * Whatever the source (a PEM file, inline PEM, a JWK of a JWKS), a key
 * ends up as a struct auth_key holding both an EVP_PKEY (the OpenSSL
 * verifier of PS256/384/512 uses it) and a SubjectPublicKeyInfo PEM (what
 * libjwt 1.10 takes for RS* and ES*). Only RSA keys of at least 2048 bits
 * and EC keys on P-256 or P-384 are accepted: those are the keys the
 * allowed algorithms can use.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/decoder.h>
#include <openssl/err.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "auth/auth_int.h"

#define RSA_MIN_BITS 2048

void auth_key_free(struct auth_key *k)
{
	if (k == NULL)
		return;
	EVP_PKEY_free(k->pkey);
	free(k->pem);
	free(k->kid);
	free(k);
}

int auth_key_fits(const struct auth_key *k, int alg)
{
	if (k->alg >= 0 && k->alg != alg)
		return 0;
	return auth_alg_key_kind(alg) == k->kind;
}

/* Kind of a decoded key, or 0 with why filled. */
static enum auth_key_kind key_kind(EVP_PKEY *pkey, char *why, size_t why_size)
{
	if (EVP_PKEY_is_a(pkey, "RSA")) {
		int bits = EVP_PKEY_get_bits(pkey);
		if (bits < RSA_MIN_BITS) {
			snprintf(why, why_size, "RSA key of %d bits is too small (minimum %d)",
			         bits, RSA_MIN_BITS);
			return 0;
		}
		return AUTH_KEY_RSA;
	}
	if (EVP_PKEY_is_a(pkey, "EC")) {
		char group[64] = "";
		size_t len = 0;
		if (EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME, group,
		                                   sizeof group, &len) != 1) {
			snprintf(why, why_size, "EC key without a named curve");
			return 0;
		}
		if (strcmp(group, "prime256v1") == 0 || strcmp(group, "P-256") == 0)
			return AUTH_KEY_EC_P256;
		if (strcmp(group, "secp384r1") == 0 || strcmp(group, "P-384") == 0)
			return AUTH_KEY_EC_P384;
		snprintf(why, why_size, "EC curve %s is not supported (P-256 or P-384)", group);
		return 0;
	}
	snprintf(why, why_size, "key type %s is not supported (RSA or EC)",
	         EVP_PKEY_get0_type_name(pkey) != NULL ? EVP_PKEY_get0_type_name(pkey) : "?");
	return 0;
}

/* Wraps pkey (taken over, also on failure) into a key with its PEM. */
static struct auth_key *wrap(EVP_PKEY *pkey, enum auth_key_kind kind)
{
	struct auth_key *k = calloc(1, sizeof *k);
	BIO *mem = BIO_new(BIO_s_mem());
	char *data;
	long len;

	if (k == NULL || mem == NULL || PEM_write_bio_PUBKEY(mem, pkey) != 1)
		goto fail;
	len = BIO_get_mem_data(mem, &data);
	if (len <= 0)
		goto fail;
	k->pem = malloc((size_t)len + 1);
	if (k->pem == NULL)
		goto fail;
	memcpy(k->pem, data, (size_t)len);
	k->pem[len] = '\0';
	k->pem_len = (size_t)len;
	k->pkey = pkey;
	k->kind = kind;
	k->alg = -1;
	BIO_free(mem);
	return k;
fail:
	BIO_free(mem);
	if (k != NULL)
		free(k->pem);
	free(k);
	EVP_PKEY_free(pkey);
	return NULL;
}

static EVP_PKEY *decode_pem(const char *pem, size_t len)
{
	EVP_PKEY *pkey = NULL;
	BIO *bio = BIO_new_mem_buf(pem, (int)len);

	if (bio == NULL)
		return NULL;
	if (strstr(pem, "-----BEGIN CERTIFICATE-----") != NULL) {
		X509 *x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
		if (x != NULL)
			pkey = X509_get_pubkey(x);
		X509_free(x);
	} else {
		/* Input structure left open: SubjectPublicKeyInfo ("PUBLIC KEY")
		 * and PKCS#1 ("RSA PUBLIC KEY") both decode. */
		OSSL_DECODER_CTX *dctx = OSSL_DECODER_CTX_new_for_pkey(
		    &pkey, "PEM", NULL, NULL, EVP_PKEY_PUBLIC_KEY, NULL, NULL);
		if (dctx != NULL && OSSL_DECODER_from_bio(dctx, bio) != 1) {
			EVP_PKEY_free(pkey);
			pkey = NULL;
		}
		OSSL_DECODER_CTX_free(dctx);
	}
	BIO_free(bio);
	ERR_clear_error();
	return pkey;
}

int auth_key_from_pem(const char *pem, size_t len, const char *what, struct auth_key **out,
                      struct tk_err *err)
{
	char why[160];

	*out = NULL;
	if (strstr(pem, "PRIVATE KEY-----") != NULL)
		return tk_err_set(err, TRPC_ERR_CONFIG,
		                  "%s: holds a private key; configure the public key only "
		                  "(openssl pkey -pubout)",
		                  what);
	EVP_PKEY *pkey = decode_pem(pem, len);
	if (pkey == NULL)
		return tk_err_set(err, TRPC_ERR_CONFIG,
		                  "%s: not a PEM public key (\"PUBLIC KEY\", \"RSA PUBLIC KEY\" or "
		                  "\"CERTIFICATE\")",
		                  what);
	enum auth_key_kind kind = key_kind(pkey, why, sizeof why);
	if (kind == 0) {
		EVP_PKEY_free(pkey);
		return tk_err_set(err, TRPC_ERR_CONFIG, "%s: %s", what, why);
	}
	*out = wrap(pkey, kind);
	if (*out == NULL)
		return tk_err_set(err, TRPC_ERR_NOMEM, "%s: out of memory", what);
	return 0;
}

/* ------------------------------------------------------------------ JWK */

static const char *jwk_str(json_t *jwk, const char *name)
{
	json_t *v = json_object_get(jwk, name);
	return json_is_string(v) ? json_string_value(v) : NULL;
}

/* Decodes base64url member `name`; returns its length or -1. */
static long jwk_bytes(json_t *jwk, const char *name, unsigned char **out)
{
	const char *s = jwk_str(jwk, name);
	*out = NULL;
	if (s == NULL)
		return -1;
	return auth_b64url_decode(s, strlen(s), out);
}

static EVP_PKEY *from_params(const char *type, OSSL_PARAM_BLD *bld)
{
	EVP_PKEY *pkey = NULL;
	OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);

	if (params == NULL || ctx == NULL || EVP_PKEY_fromdata_init(ctx) != 1 ||
	    EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1) {
		EVP_PKEY_free(pkey);
		pkey = NULL;
	}
	EVP_PKEY_CTX_free(ctx);
	OSSL_PARAM_free(params);
	if (pkey != NULL) {
		/* For EC this checks that the point is on the curve. */
		EVP_PKEY_CTX *chk = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
		if (chk == NULL || EVP_PKEY_public_check(chk) != 1) {
			EVP_PKEY_free(pkey);
			pkey = NULL;
		}
		EVP_PKEY_CTX_free(chk);
	}
	ERR_clear_error();
	return pkey;
}

static EVP_PKEY *rsa_from_jwk(json_t *jwk, char *why, size_t why_size)
{
	unsigned char *n = NULL, *e = NULL;
	long n_len = jwk_bytes(jwk, "n", &n), e_len = jwk_bytes(jwk, "e", &e);
	EVP_PKEY *pkey = NULL;
	BIGNUM *bn_n = NULL, *bn_e = NULL;
	OSSL_PARAM_BLD *bld = NULL;

	if (n_len <= 0 || e_len <= 0 || e_len > 8) {
		snprintf(why, why_size, "RSA key without valid base64url \"n\" and \"e\"");
		goto done;
	}
	bn_n = BN_bin2bn(n, (int)n_len, NULL);
	bn_e = BN_bin2bn(e, (int)e_len, NULL);
	bld = OSSL_PARAM_BLD_new();
	if (bn_n == NULL || bn_e == NULL || bld == NULL ||
	    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn_n) != 1 ||
	    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, bn_e) != 1) {
		snprintf(why, why_size, "out of memory");
		goto done;
	}
	pkey = from_params("RSA", bld);
	if (pkey == NULL)
		snprintf(why, why_size, "RSA key rejected by OpenSSL");
done:
	OSSL_PARAM_BLD_free(bld);
	BN_free(bn_n);
	BN_free(bn_e);
	free(n);
	free(e);
	return pkey;
}

static EVP_PKEY *ec_from_jwk(json_t *jwk, char *why, size_t why_size)
{
	const char *crv = jwk_str(jwk, "crv");
	size_t field;
	const char *group;
	unsigned char *x = NULL, *y = NULL, point[1 + 2 * 48];
	EVP_PKEY *pkey = NULL;
	OSSL_PARAM_BLD *bld = NULL;

	if (crv != NULL && strcmp(crv, "P-256") == 0) {
		field = 32;
		group = "prime256v1";
	} else if (crv != NULL && strcmp(crv, "P-384") == 0) {
		field = 48;
		group = "secp384r1";
	} else {
		snprintf(why, why_size, "EC curve %s is not supported (P-256 or P-384)",
		         crv != NULL ? crv : "(missing)");
		return NULL;
	}
	long x_len = jwk_bytes(jwk, "x", &x), y_len = jwk_bytes(jwk, "y", &y);
	if (x_len != (long)field || y_len != (long)field) {
		snprintf(why, why_size, "EC key \"x\"/\"y\" must be %zu bytes of base64url", field);
		goto done;
	}
	point[0] = 0x04; /* uncompressed point: 04 || x || y */
	memcpy(point + 1, x, field);
	memcpy(point + 1 + field, y, field);
	bld = OSSL_PARAM_BLD_new();
	if (bld == NULL ||
	    OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, group, 0) != 1 ||
	    OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, point, 1 + 2 * field) !=
	        1) {
		snprintf(why, why_size, "out of memory");
		goto done;
	}
	pkey = from_params("EC", bld);
	if (pkey == NULL)
		snprintf(why, why_size, "EC point is not on curve %s", crv);
done:
	OSSL_PARAM_BLD_free(bld);
	free(x);
	free(y);
	return pkey;
}

int auth_key_from_jwk(json_t *jwk, struct auth_key **out, char *why, size_t why_size)
{
	*out = NULL;
	if (!json_is_object(jwk)) {
		snprintf(why, why_size, "entry is not a JSON object");
		return -1;
	}
	const char *kid = jwk_str(jwk, "kid"), *kty = jwk_str(jwk, "kty");
	const char *use = jwk_str(jwk, "use"), *alg_name = jwk_str(jwk, "alg");
	int alg = -1;

	if (kid == NULL || *kid == '\0') {
		snprintf(why, why_size, "key without \"kid\"");
		return -1;
	}
	if (use != NULL && strcmp(use, "sig") != 0) {
		snprintf(why, why_size, "key \"%s\" has use \"%s\", not \"sig\"", kid, use);
		return -1;
	}
	if (alg_name != NULL && (alg = auth_alg_from_name(alg_name)) < 0) {
		snprintf(why, why_size, "key \"%s\" has unsupported alg \"%s\"", kid, alg_name);
		return -1;
	}
	EVP_PKEY *pkey;
	char sub[128] = "";
	if (kty != NULL && strcmp(kty, "RSA") == 0) {
		pkey = rsa_from_jwk(jwk, sub, sizeof sub);
	} else if (kty != NULL && strcmp(kty, "EC") == 0) {
		pkey = ec_from_jwk(jwk, sub, sizeof sub);
	} else {
		snprintf(why, why_size, "key \"%s\" has unsupported kty \"%s\"", kid,
		         kty != NULL ? kty : "(missing)");
		return -1;
	}
	if (pkey == NULL) {
		snprintf(why, why_size, "key \"%s\": %s", kid, sub);
		return -1;
	}
	enum auth_key_kind kind = key_kind(pkey, sub, sizeof sub);
	if (kind == 0) {
		EVP_PKEY_free(pkey);
		snprintf(why, why_size, "key \"%s\": %s", kid, sub);
		return -1;
	}
	if (alg >= 0 && auth_alg_key_kind(alg) != kind) {
		EVP_PKEY_free(pkey);
		snprintf(why, why_size, "key \"%s\": alg %s does not fit its key type", kid,
		         alg_name);
		return -1;
	}
	struct auth_key *k = wrap(pkey, kind);
	if (k == NULL || (k->kid = strdup(kid)) == NULL) {
		auth_key_free(k);
		snprintf(why, why_size, "out of memory");
		return -1;
	}
	k->alg = alg;
	*out = k;
	return 0;
}

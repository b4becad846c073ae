/*
 * tokens: RSA key pairs and RS256 tokens for the command-line client.
 *
 * Signing goes through libjwt (RS256 with the private key's PEM); the
 * private key is opened with OpenSSL first, with a passphrase callback
 * that supplies none, so an encrypted or non-RSA key is reported here
 * instead of libjwt prompting on the terminal. Validation reuses the
 * server's own parser and verifiers (jwt.c), so a token this accepts is
 * one taskerd accepts with the same key, issuer and audience.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jwt.h>
#include <openssl/err.h>
#include <openssl/pem.h>

#include "auth/auth_int.h"
#include "auth/tokens.h"

#define KEY_FILE_MAX (64 * 1024)

static int tls_fail(struct tk_err *err, const char *what)
{
	unsigned long e = ERR_get_error();
	char buf[256] = "unknown error";
	if (e != 0)
		ERR_error_string_n(e, buf, sizeof buf);
	ERR_clear_error();
	return tk_err_set(err, TRPC_ERR_TLS, "%s: %s", what, buf);
}

/* ------------------------------------------------------------------ key pairs */

/* Writes one PEM file, created exclusively with `mode`. */
static int write_pem(const char *path, mode_t mode, EVP_PKEY *pkey, int private_part,
                     struct tk_err *err)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
	if (fd == -1)
		return tk_err_set(
		    err, errno == EEXIST ? TRPC_ERR_EXISTS : TRPC_ERR_SYSTEM, "%s: %s", path,
		    errno == EEXIST ? "exists; refusing to overwrite" : strerror(errno));
	if (fchmod(fd, mode) == -1) { /* the umask could have taken bits off */
		int e = errno;
		close(fd);
		unlink(path);
		return tk_err_set(err, TRPC_ERR_SYSTEM, "%s: chmod: %s", path, strerror(e));
	}
	FILE *f = fdopen(fd, "w");
	if (f == NULL) {
		int e = errno;
		close(fd);
		unlink(path);
		return tk_err_set(err, TRPC_ERR_SYSTEM, "%s: %s", path, strerror(e));
	}
	int ok = private_part ? PEM_write_PrivateKey(f, pkey, NULL, NULL, 0, NULL, NULL)
	                      : PEM_write_PUBKEY(f, pkey);
	if (fclose(f) != 0)
		ok = 0;
	if (ok != 1) {
		unlink(path);
		return tls_fail(err, path);
	}
	return 0;
}

int auth_tokens_generate_keys(const char *dir, int bits, struct tk_err *err)
{
	char priv[4096], pub[4096];
	struct stat st;

	if (bits < AUTH_TOKENS_MIN_BITS || bits > AUTH_TOKENS_MAX_BITS || bits % 8 != 0)
		return tk_err_set(err, TRPC_ERR_INVALID,
		                  "key size %d: must be a multiple of 8 in %d..%d", bits,
		                  AUTH_TOKENS_MIN_BITS, AUTH_TOKENS_MAX_BITS);
	if (dir == NULL || *dir == '\0')
		return tk_err_set(err, TRPC_ERR_INVALID, "no output directory given");
	if ((size_t)snprintf(priv, sizeof priv, "%s/private.pem", dir) >= sizeof priv ||
	    (size_t)snprintf(pub, sizeof pub, "%s/public.pem", dir) >= sizeof pub)
		return tk_err_set(err, TRPC_ERR_INVALID, "%s: path too long", dir);
	if (mkdir(dir, 0700) == -1 && errno != EEXIST)
		return tk_err_set(err, TRPC_ERR_SYSTEM, "%s: cannot create directory: %s", dir,
		                  strerror(errno));
	if (stat(dir, &st) == -1 || !S_ISDIR(st.st_mode))
		return tk_err_set(err, TRPC_ERR_SYSTEM, "%s: not a directory", dir);
	/* Check both before writing either, so nothing is left half done. */
	if (lstat(priv, &st) == 0 || lstat(pub, &st) == 0)
		return tk_err_set(err, TRPC_ERR_EXISTS, "%s: exists; refusing to overwrite",
		                  lstat(priv, &st) == 0 ? priv : pub);

	EVP_PKEY *pkey = EVP_RSA_gen((unsigned int)bits);
	if (pkey == NULL)
		return tls_fail(err, "RSA key generation");
	int rc = write_pem(priv, 0600, pkey, 1, err);
	if (rc == 0) {
		rc = write_pem(pub, 0644, pkey, 0, err);
		if (rc != 0)
			unlink(priv);
	}
	EVP_PKEY_free(pkey);
	return rc;
}

/* ------------------------------------------------------------------ signing */

static int no_passphrase(char *buf, int size, int rwflag, void *ud)
{
	(void)buf;
	(void)size;
	(void)rwflag;
	(void)ud;
	return 0;
}

/* Reads the private key file; checks it is an unencrypted RSA key. */
static char *read_private_key(const char *path, size_t *len, struct tk_err *err)
{
	FILE *f = fopen(path, "rb");
	if (f == NULL) {
		tk_err_set(err, TRPC_ERR_CONFIG, "%s: %s", path, strerror(errno));
		return NULL;
	}
	char *buf = malloc(KEY_FILE_MAX + 1);
	size_t n = buf != NULL ? fread(buf, 1, KEY_FILE_MAX + 1, f) : 0;
	fclose(f);
	if (buf == NULL || n == 0 || n > KEY_FILE_MAX) {
		free(buf);
		tk_err_set(err, TRPC_ERR_CONFIG, "%s: %s", path,
		           buf == NULL ? "out of memory"
		           : n == 0    ? "empty"
		                       : "larger than 64 KiB");
		return NULL;
	}
	buf[n] = '\0';
	BIO *bio = BIO_new_mem_buf(buf, (int)n);
	EVP_PKEY *pkey =
	    bio != NULL ? PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL) : NULL;
	BIO_free(bio);
	ERR_clear_error();
	const char *problem = NULL;
	if (pkey == NULL)
		problem = "not an unencrypted PEM private key";
	else if (!EVP_PKEY_is_a(pkey, "RSA"))
		problem = "not an RSA key (RS256 tokens need one)";
	else if (EVP_PKEY_get_bits(pkey) < AUTH_TOKENS_MIN_BITS)
		problem = "RSA key smaller than 2048 bits";
	EVP_PKEY_free(pkey);
	if (problem != NULL) {
		OPENSSL_cleanse(buf, n);
		free(buf);
		tk_err_set(err, TRPC_ERR_CONFIG, "%s: %s", path, problem);
		return NULL;
	}
	*len = n;
	return buf;
}

struct perm_json {
	json_t *arr;
	struct tk_err *err;
};

static int on_perm(void *ud, const char *item)
{
	struct perm_json *pj = ud;
	if (!auth_permission_known(item))
		return tk_err_set(pj->err, TRPC_ERR_INVALID,
		                  "unknown permission \"%s\" (see the 17 permissions and "
		                  "resource:* wildcards; a bare \"*\" is not one)",
		                  item);
	if (json_array_append_new(pj->arr, json_string(item)) != 0)
		return tk_err_set(pj->err, TRPC_ERR_NOMEM, "out of memory");
	return 0;
}

static int check_params(const struct auth_token_params *p, struct tk_err *err)
{
	if (p->private_key_path == NULL || *p->private_key_path == '\0')
		return tk_err_set(err, TRPC_ERR_INVALID, "no private key given");
	if (p->subject == NULL || *p->subject == '\0')
		return tk_err_set(err, TRPC_ERR_INVALID, "no subject given");
	if (p->issuer == NULL || *p->issuer == '\0')
		return tk_err_set(err, TRPC_ERR_INVALID, "no issuer given");
	if (p->audience == NULL || *p->audience == '\0')
		return tk_err_set(err, TRPC_ERR_INVALID, "no audience given");
	if (p->permissions == NULL)
		return tk_err_set(err, TRPC_ERR_INVALID, "no permissions given");
	if (p->expiry_hours < 1 || p->expiry_hours > 8760)
		return tk_err_set(err, TRPC_ERR_INVALID, "expiry of %d hours: must be 1..8760",
		                  p->expiry_hours);
	return 0;
}

/* The claims other than iat and exp, as one JSON object text. */
static char *claims_json(const struct auth_token_params *p, struct tk_err *err)
{
	json_t *obj = json_object();
	struct perm_json pj = {json_array(), err};
	char *text = NULL;

	if (obj == NULL || pj.arr == NULL) {
		tk_err_set(err, TRPC_ERR_NOMEM, "out of memory");
		goto done;
	}
	if (auth_split_list(p->permissions, on_perm, &pj) != 0)
		goto done;
	if (json_array_size(pj.arr) == 0) {
		tk_err_set(err, TRPC_ERR_INVALID, "the permission list is empty");
		goto done;
	}
	if (json_object_set_new(obj, "sub", json_string(p->subject)) != 0 ||
	    json_object_set_new(obj, "iss", json_string(p->issuer)) != 0 ||
	    json_object_set_new(obj, "aud", json_string(p->audience)) != 0 ||
	    json_object_set(obj, "permissions", pj.arr) != 0 ||
	    (text = json_dumps(obj, JSON_COMPACT)) == NULL)
		tk_err_set(err, TRPC_ERR_INVALID, "subject, issuer or audience is not valid UTF-8");
done:
	json_decref(pj.arr);
	json_decref(obj);
	return text;
}

char *auth_tokens_generate(const struct auth_token_params *p, struct tk_err *err)
{
	jwt_t *jwt = NULL;
	char *claims = NULL, *key = NULL, *token = NULL, *out = NULL;
	size_t key_len = 0;
	time_t now = time(NULL);

	if (check_params(p, err) != 0 || (claims = claims_json(p, err)) == NULL ||
	    (key = read_private_key(p->private_key_path, &key_len, err)) == NULL)
		goto done;
	if (jwt_new(&jwt) != 0 || jwt_add_grants_json(jwt, claims) != 0 ||
	    jwt_add_grant_int(jwt, "iat", (long)now) != 0 ||
	    jwt_add_grant_int(jwt, "exp", (long)now + 3600L * p->expiry_hours) != 0 ||
	    jwt_set_alg(jwt, JWT_ALG_RS256, (const unsigned char *)key, (int)key_len) != 0 ||
	    (token = jwt_encode_str(jwt)) == NULL) {
		tls_fail(err, "signing the token");
		goto done;
	}
	out = strdup(token);
	if (out == NULL)
		tk_err_set(err, TRPC_ERR_NOMEM, "out of memory");
done:
	free(token);
	jwt_free(jwt);
	if (key != NULL)
		OPENSSL_cleanse(key, key_len);
	free(key);
	free(claims);
	return out;
}

/* ------------------------------------------------------------------ validating */

json_t *auth_tokens_validate(const char *token, const char *public_key_path, const char *issuer,
                             const char *audience, struct tk_err *err)
{
	struct auth_key *key = NULL;
	struct auth_jws jws;
	char why[256], *pem = NULL;
	json_t *claims = NULL;

	memset(&jws, 0, sizeof jws);
	if (token == NULL || public_key_path == NULL) {
		tk_err_set(err, TRPC_ERR_INVALID, "a token and a public key are both needed");
		return NULL;
	}
	FILE *f = fopen(public_key_path, "rb");
	if (f == NULL) {
		tk_err_set(err, TRPC_ERR_CONFIG, "%s: %s", public_key_path, strerror(errno));
		return NULL;
	}
	pem = malloc(KEY_FILE_MAX + 1);
	size_t n = pem != NULL ? fread(pem, 1, KEY_FILE_MAX, f) : 0;
	fclose(f);
	if (pem == NULL) {
		tk_err_set(err, TRPC_ERR_NOMEM, "out of memory");
		return NULL;
	}
	pem[n] = '\0';
	int rc = auth_key_from_pem(pem, n, public_key_path, &key, err);
	free(pem);
	if (rc != 0)
		return NULL;
	rc = auth_jws_parse(token, (1u << AUTH_ALG_COUNT) - 1, &jws, why, sizeof why);
	if (rc == 0)
		rc = auth_jws_verify(&jws, token, key, why, sizeof why);
	if (rc == 0) {
		struct auth_claim_rules rules = {issuer, audience, 0, time(NULL)};
		rc = auth_claims_check(jws.claims, &rules, why, sizeof why);
	}
	if (rc == 0)
		claims = json_incref(jws.claims);
	else
		tk_err_set(err, TRPC_ERR_INVALID, "token rejected: %s", why);
	auth_jws_clear(&jws);
	auth_key_free(key);
	return claims;
}

/*
 * cmd_auth: `auth generate-keys|generate-token|validate-token`: RSA key
 * pairs and RS256 tokens made and checked locally with src/auth/tokens.h
 * (the same verifier the servers use), no server involved.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/tokens.h"
#include "cli/cli.h"
#include "cli/credential.h"
#include "cli/output.h"

#define DEF_KEY_DIR     "./keys"
#define DEF_PRIVATE_KEY DEF_KEY_DIR "/private.pem"
#define DEF_PUBLIC_KEY  DEF_KEY_DIR "/public.pem"
#define DEF_SUBJECT     "tasker-client"
#define TOKEN_MAX       (64 * 1024)

/* The exit code for a tokens.h failure. */
static int tokens_exit(const struct cli_args *a, const struct tk_err *err)
{
	if (err->code == TRPC_ERR_INVALID) {
		return cli_usage_error(a->cmd, "%s", err->msg);
	}
	cli_error("%s", err->msg[0] ? err->msg : trpc_strerror(err->code));
	return CLI_EXIT_ERROR;
}

static int auth_generate_keys(struct cli *c, const struct cli_args *a)
{
	const char *dir = cli_opt_or(a, "output-dir", DEF_KEY_DIR);
	struct tk_err err;
	char priv[4096], pub[4096];
	long bits;
	int rc;

	if ((rc = cli_opt_int(a, "key-size", 2048, AUTH_TOKENS_MIN_BITS, AUTH_TOKENS_MAX_BITS,
	                      &bits)) != 0) {
		return rc;
	}
	tk_err_clear(&err);
	if (auth_tokens_generate_keys(dir, (int)bits, &err) != 0) {
		return tokens_exit(a, &err);
	}
	snprintf(priv, sizeof priv, "%s/private.pem", dir);
	snprintf(pub, sizeof pub, "%s/public.pem", dir);
	if (c->format == CLI_FORMAT_JSON) {
		json_t *j = json_pack("{s:s, s:s, s:i}", "private_key", priv, "public_key", pub,
		                      "bits", (int)bits);

		if (j == NULL) {
			return cli_build_failed();
		}
		cli_print_json(j);
		json_decref(j);
	} else {
		printf("private key: %s\npublic key:  %s\n", priv, pub);
	}
	return CLI_EXIT_OK;
}

static int auth_generate_token(struct cli *c, const struct cli_args *a)
{
	struct auth_token_params p;
	struct tk_err err;
	long hours;
	char *token;
	int rc;

	if ((rc = cli_opt_int(a, "expiry-hours", 24, 1, 8760, &hours)) != 0) {
		return rc;
	}
	memset(&p, 0, sizeof p);
	p.private_key_path = cli_opt_or(a, "private-key", DEF_PRIVATE_KEY);
	p.subject = cli_opt_or(a, "subject", DEF_SUBJECT);
	p.issuer = cli_opt_or(a, "issuer", CLI_ORCHESTRATION_ISSUER);
	p.audience = cli_opt_or(a, "audience", CLI_ORCHESTRATION_AUDIENCE);
	p.permissions = cli_opt(a, "permissions");
	p.expiry_hours = (int)hours;
	tk_err_clear(&err);
	if ((token = auth_tokens_generate(&p, &err)) == NULL) {
		return tokens_exit(a, &err);
	}
	if (c->format == CLI_FORMAT_JSON) {
		json_t *j = json_pack("{s:s, s:s, s:s, s:s, s:i}", "token", token, "subject",
		                      p.subject, "issuer", p.issuer, "audience", p.audience,
		                      "expiry_hours", p.expiry_hours);

		if (j == NULL) {
			free(token);
			return cli_build_failed();
		}
		cli_print_json(j);
		json_decref(j);
	} else {
		printf("%s\n", token);
	}
	free(token);
	return CLI_EXIT_OK;
}

/* --token, or one line of standard input for "-". NULL after an error. */
static char *read_token(const struct cli_args *a)
{
	const char *v = cli_opt(a, "token");
	char *buf;
	size_t n;

	if (strcmp(v, "-") != 0) {
		return strdup(v);
	}
	if ((buf = malloc(TOKEN_MAX)) == NULL) {
		return NULL;
	}
	if (fgets(buf, TOKEN_MAX, stdin) == NULL) {
		buf[0] = '\0';
	}
	n = strcspn(buf, "\r\n");
	buf[n] = '\0';
	return buf;
}

static int auth_validate_token(struct cli *c, const struct cli_args *a)
{
	const char *key = cli_opt_or(a, "public-key", DEF_PUBLIC_KEY);
	struct tk_err err;
	json_t *claims, *out;
	char *token = read_token(a);

	if (token == NULL) {
		return cli_build_failed();
	}
	tk_err_clear(&err);
	claims =
	    auth_tokens_validate(token, key, cli_opt(a, "issuer"), cli_opt(a, "audience"), &err);
	free(token);
	if (claims == NULL && err.code != TRPC_ERR_INVALID) {
		return tokens_exit(a, &err); /* the key, not the token */
	}
	if (c->format == CLI_FORMAT_JSON) {
		out = claims != NULL ? json_pack("{s:b, s:O}", "valid", 1, "claims", claims)
		                     : json_pack("{s:b, s:s}", "valid", 0, "error", err.msg);
		if (out != NULL) {
			cli_print_json(out);
			json_decref(out);
		}
	} else if (claims != NULL) {
		printf("valid: yes\n");
		cli_print_object(claims, NULL);
	}
	if (claims == NULL) {
		cli_error("the token is not valid: %s", err.msg);
		return CLI_EXIT_AUTH;
	}
	json_decref(claims);
	return CLI_EXIT_OK;
}

static const struct cli_opt keys_opts[] = {
    {"output-dir", 0, "DIR",
     "where to write private.pem and public.pem; created if missing (default: " DEF_KEY_DIR ")", 0},
    {"key-size", 0, "BITS", "RSA key size, 2048 to 16384 (default: 2048)", 0},
    {NULL, 0, NULL, NULL, 0},
};

static const struct cli_opt token_opts[] = {
    {"permissions", 0, "A,B",
     "permissions, comma separated: tasks:create, tasks:read, ..., or resource:* "
     "(tasks:*, dlq:*, ...)",
     1},
    {"subject", 0, "SUB", "subject (default: " DEF_SUBJECT ")", 0},
    {"private-key", 0, "FILE", "RSA private key, PEM (default: " DEF_PRIVATE_KEY ")", 0},
    {"expiry-hours", 0, "N", "lifetime in hours, 1 to 8760 (default: 24)", 0},
    {"issuer", 0, "ISS", "issuer (default: " CLI_ORCHESTRATION_ISSUER ")", 0},
    {"audience", 0, "AUD", "audience (default: " CLI_ORCHESTRATION_AUDIENCE ")", 0},
    {NULL, 0, NULL, NULL, 0},
};

static const struct cli_opt validate_opts[] = {
    {"token", 0, "TOKEN", "the token; - reads it from standard input", 1},
    {"public-key", 0, "FILE", "public key, PEM (default: " DEF_PUBLIC_KEY ")", 0},
    {"issuer", 0, "ISS", "also require this issuer", 0},
    {"audience", 0, "AUD", "also require this audience", 0},
    {NULL, 0, NULL, NULL, 0},
};

/* clang-format off */
const struct cli_cmd cli_auth_cmds[] = {
    {"auth", "generate-keys", NULL, 0, 0, "Generate an RSA key pair for JWT signing",
     "Writes DIR/private.pem (mode 0600) and DIR/public.pem; never overwrites a file.\n"
     "Give the public key to the servers ([auth] jwt_public_key_path) and keep the\n"
     "private one to sign tokens.\n",
     keys_opts, auth_generate_keys, 0},
    {"auth", "generate-token", NULL, 0, 0, "Sign a JWT (RS256) with a private key",
     "Prints the token. Use it as a profile's token, in TASKER_AUTH_TOKEN, or send it\n"
     "as \"Authorization: Bearer <token>\".\n",
     token_opts, auth_generate_token, 0},
    {"auth", "validate-token", NULL, 0, 0, "Check a token against a public key",
     "Verifies the signature, exp and sub (and iss/aud when given) the way the servers\n"
     "do, and prints the claims. A token that does not verify exits with status 5.\n",
     validate_opts, auth_validate_token, 0},
    {NULL, NULL, NULL, 0, 0, NULL, NULL, NULL, NULL, 0},
};
/* clang-format on */

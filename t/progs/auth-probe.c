/*
 * auth-probe: drives src/auth from a test script.
 *
 *   auth-probe CONFIG [ROLE]
 *
 * Loads CONFIG the way the programs do (the runtime's INI loader, [auth]
 * and [auth.api_key.<name>] keys handed to auth_config_set), builds the
 * checker and prints one JSON line: {"ready": true} or {"error": "...",
 * "code": "..."} (exit 1). It then reads commands, one JSON array a line,
 * and answers each with one JSON line:
 *
 *   ["check", PERMISSION|null, AUTHORIZATION|null, API_KEY|null]
 *       -> {"code": "ok"|"unauthenticated"|"forbidden", "rc": N, "message",
 *           "reason", "severity", "subject"}
 *   ["reload", CONFIG]          -> {"ok": true} or {"error", "code"}
 *   ["info"]                    -> auth_public_info() and auth_api_key_header()
 *   ["known", PERM]             -> {"known": bool}
 *   ["stress", THREADS, RELOADS, PERMISSION, AUTHORIZATION|null,
 *    API_KEY|null, CONFIG_A, CONFIG_B, MIN_MS]
 *       -> threads check without pause while the main thread reloads B, A,
 *          B, ... RELOADS times, for at least MIN_MS (default 0) ms;
 *          {"ok": n, "unauthenticated": n, "forbidden": n, "other": n,
 *           "reloads": n, "threads": n}
 *   ["gen-keys", DIR, BITS]     -> auth_tokens_generate_keys()
 *   ["gen-token", KEY, SUB, ISS, AUD, PERMISSIONS, HOURS] -> {"token"}
 *   ["validate", TOKEN, PUBKEY, ISS|null, AUD|null] -> {"claims"}
 */
#include "config.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "auth/auth.h"
#include "auth/tokens.h"

struct loader {
	struct auth_config *cfg;
	struct tk_err err;
};

static int on_extra(void *ud, const char *section, const char *key, const char *value)
{
	struct loader *l = ud;
	if (strcmp(section, "auth") != 0 && strncmp(section, "auth.", 5) != 0)
		return TRPC_ERR_CONFIG;
	int rc = auth_config_set(l->cfg, section, key, value, &l->err);
	return rc;
}

/* The [auth] part of a config file; NULL with err set. */
static struct auth_config *load_config(const char *path, const char *role, struct tk_err *err)
{
	struct trpc_server_config scfg;
	struct loader l = {auth_config_new(role), {0, ""}};
	const char *why = NULL;

	if (l.cfg == NULL) {
		tk_err_set(err, TRPC_ERR_INVALID, "auth_config_new(%s) failed", role);
		return NULL;
	}
	trpc_server_config_init(&scfg);
	int rc = trpc_server_config_load(&scfg, path, 0, NULL, on_extra, &l, &why);
	trpc_server_config_clear(&scfg);
	if (rc != 0) {
		if (l.err.code != 0)
			*err = l.err;
		else
			tk_err_set(err, rc, "%s", why != NULL ? why : "config error");
		auth_config_free(l.cfg);
		return NULL;
	}
	return l.cfg;
}

static void print_json(json_t *v)
{
	char *s = json_dumps(v, JSON_COMPACT);
	printf("%s\n", s != NULL ? s : "{\"error\":\"encoding\"}");
	fflush(stdout);
	free(s);
	json_decref(v);
}

static json_t *error_json(const struct tk_err *err)
{
	return json_pack("{s:s, s:s}", "error", err->msg, "code", trpc_strerror(err->code));
}

static const char *code_name(enum auth_code c)
{
	switch (c) {
	case AUTH_OK:
		return "ok";
	case AUTH_UNAUTHENTICATED:
		return "unauthenticated";
	case AUTH_FORBIDDEN:
		return "forbidden";
	}
	return "?";
}

/* A string argument or NULL (JSON null or missing). */
static const char *arg(json_t *cmd, size_t i)
{
	json_t *v = json_array_get(cmd, i);
	return json_is_string(v) ? json_string_value(v) : NULL;
}

static json_t *do_check(struct auth *a, json_t *cmd)
{
	struct auth_result r;
	int rc = auth_check(a, arg(cmd, 2), arg(cmd, 3), arg(cmd, 1), &r);
	return json_pack("{s:s, s:i, s:s, s:s?, s:s?, s:s}", "code", code_name(r.code), "rc", rc,
	                 "message", r.message, "reason", r.reason, "severity", r.severity,
	                 "subject", r.subject);
}

static json_t *do_info(struct auth *a)
{
	struct auth_public_info pi;
	auth_public_info(a, &pi);
	return json_pack("{s:b, s:s, s:s, s:s, s:s, s:I, s:b, s:s, s:s, s:b}", "enabled",
	                 pi.enabled, "verification_method", pi.verification_method, "jwt_issuer",
	                 pi.jwt_issuer, "jwt_audience", pi.jwt_audience, "api_key_header",
	                 pi.api_key_header, "api_key_count", (json_int_t)pi.api_key_count,
	                 "strict_validation", pi.strict_validation, "allowed_algorithms",
	                 pi.allowed_algorithms, "header", auth_api_key_header(a), "auth_enabled",
	                 auth_enabled(a));
}

/* ------------------------------------------------------------------ stress */

struct stress {
	struct auth *a;
	const char *perm, *authorization, *api_key;
	atomic_int stop;
	atomic_int counts[4]; /* ok, unauthenticated, forbidden, other */
};

static void *stress_thread(void *ud)
{
	struct stress *st = ud;
	while (!atomic_load(&st->stop)) {
		struct auth_result r;
		int rc = auth_check(st->a, st->authorization, st->api_key, st->perm, &r);
		int slot = rc >= 0 && rc <= 2 && (int)r.code == rc ? rc : 3;
		atomic_fetch_add(&st->counts[slot], 1);
	}
	return NULL;
}

static json_t *do_stress(struct auth *a, json_t *cmd, const char *role)
{
	int nthreads = (int)json_integer_value(json_array_get(cmd, 1));
	int want = (int)json_integer_value(json_array_get(cmd, 2));
	long min_ms = (long)json_integer_value(json_array_get(cmd, 8));
	struct timespec t0, now;
	struct stress st = {
	    .a = a, .perm = arg(cmd, 3), .authorization = arg(cmd, 4), .api_key = arg(cmd, 5)};
	const char *confs[2] = {arg(cmd, 6), arg(cmd, 7)};
	pthread_t th[16];
	int started = 0, reloads = 0;
	struct tk_err err = {0, ""};

	if (nthreads < 1 || nthreads > 16 || want < 1 || confs[0] == NULL || confs[1] == NULL)
		return json_pack("{s:s}", "error", "stress: bad arguments");
	atomic_init(&st.stop, 0);
	for (int i = 0; i < 4; i++)
		atomic_init(&st.counts[i], 0);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (int i = 0; i < nthreads; i++)
		if (pthread_create(&th[i], NULL, stress_thread, &st) == 0)
			started++;
	while (reloads < want) {
		struct auth_config *c = load_config(confs[(reloads + 1) % 2], role, &err);
		int rc = c != NULL ? auth_reload(a, c, &err) : -1;
		auth_config_free(c);
		if (rc != 0)
			break;
		reloads++;
	}
	for (;;) {
		clock_gettime(CLOCK_MONOTONIC, &now);
		long ms =
		    (long)(now.tv_sec - t0.tv_sec) * 1000 + (now.tv_nsec - t0.tv_nsec) / 1000000;
		if (ms >= min_ms)
			break;
		struct timespec pause = {0, 20 * 1000000};
		nanosleep(&pause, NULL);
	}
	atomic_store(&st.stop, 1);
	for (int i = 0; i < started; i++)
		pthread_join(th[i], NULL);
	if (err.code != 0)
		return error_json(&err);
	return json_pack("{s:i, s:i, s:i, s:i, s:i, s:i}", "ok", atomic_load(&st.counts[0]),
	                 "unauthenticated", atomic_load(&st.counts[1]), "forbidden",
	                 atomic_load(&st.counts[2]), "other", atomic_load(&st.counts[3]), "reloads",
	                 reloads, "threads", started);
}

/* ------------------------------------------------------------------ tokens */

static json_t *do_gen_token(json_t *cmd)
{
	struct tk_err err = {0, ""};
	struct auth_token_params p = {
	    .private_key_path = arg(cmd, 1),
	    .subject = arg(cmd, 2),
	    .issuer = arg(cmd, 3),
	    .audience = arg(cmd, 4),
	    .permissions = arg(cmd, 5),
	    .expiry_hours = (int)json_integer_value(json_array_get(cmd, 6)),
	};
	char *token = auth_tokens_generate(&p, &err);
	if (token == NULL)
		return error_json(&err);
	json_t *out = json_pack("{s:s}", "token", token);
	free(token);
	return out;
}

static json_t *do_validate(json_t *cmd)
{
	struct tk_err err = {0, ""};
	json_t *claims =
	    auth_tokens_validate(arg(cmd, 1), arg(cmd, 2), arg(cmd, 3), arg(cmd, 4), &err);
	if (claims == NULL)
		return error_json(&err);
	return json_pack("{s:o}", "claims", claims);
}

static json_t *do_gen_keys(json_t *cmd)
{
	struct tk_err err = {0, ""};
	if (auth_tokens_generate_keys(arg(cmd, 1), (int)json_integer_value(json_array_get(cmd, 2)),
	                              &err) != 0)
		return error_json(&err);
	return json_pack("{s:b}", "ok", 1);
}

/* ------------------------------------------------------------------ main */

static json_t *dispatch(struct auth *a, json_t *cmd, const char *role)
{
	const char *op = arg(cmd, 0);
	struct tk_err err = {0, ""};

	if (op == NULL)
		return json_pack("{s:s}", "error", "command is not [\"name\", ...]");
	if (strcmp(op, "check") == 0)
		return do_check(a, cmd);
	if (strcmp(op, "info") == 0)
		return do_info(a);
	if (strcmp(op, "known") == 0)
		return json_pack("{s:b}", "known", auth_permission_known(arg(cmd, 1)));
	if (strcmp(op, "reload") == 0) {
		struct auth_config *c = load_config(arg(cmd, 1), role, &err);
		int rc = c != NULL ? auth_reload(a, c, &err) : err.code;
		auth_config_free(c);
		return rc == 0 ? json_pack("{s:b}", "ok", 1) : error_json(&err);
	}
	if (strcmp(op, "stress") == 0)
		return do_stress(a, cmd, role);
	if (strcmp(op, "gen-keys") == 0)
		return do_gen_keys(cmd);
	if (strcmp(op, "gen-token") == 0)
		return do_gen_token(cmd);
	if (strcmp(op, "validate") == 0)
		return do_validate(cmd);
	return json_pack("{s:s}", "error", "unknown command");
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: auth-probe CONFIG [orchestration|worker]\n");
		return 2;
	}
	const char *role = argc > 2 ? argv[2] : "orchestration";
	struct tk_err err = {0, ""};
	const char *level = getenv("AUTH_PROBE_LOG");
	trpc_log_set_level(level != NULL ? atoi(level) : TRPC_LOG_DEBUG);

	struct auth_config *c = load_config(argv[1], role, &err);
	struct auth *a = c != NULL ? auth_new(c, &err) : NULL;
	auth_config_free(c);
	if (a == NULL) {
		print_json(error_json(&err));
		return 1;
	}
	print_json(json_pack("{s:b}", "ready", 1));

	char line[65536];
	while (fgets(line, sizeof line, stdin) != NULL) {
		if (line[0] == '\n')
			continue;
		json_t *cmd = json_loads(line, 0, NULL);
		if (!json_is_array(cmd)) {
			json_decref(cmd);
			print_json(json_pack("{s:s}", "error", "not a JSON array"));
			continue;
		}
		print_json(dispatch(a, cmd, role));
		json_decref(cmd);
	}
	auth_free(a);
	return 0;
}

/*
 * taskerd: the tasker orchestration server. Runs the orchestration engine
 * (its own threads) on PostgreSQL and serves gRPC on the runtime: the
 * standard health and reflection services now, the tasker.v1 services as
 * they land.
 *
 * Usage: taskerd [--config PATH] [--migrate-only] [--section.key=value ...]
 * Settings come from the INI file (default SYSCONFDIR/tasker/taskerd.conf
 * when it exists), TASKER_<SECTION>_<KEY> variables, the operator variables
 * below, and the command line (which wins).
 *
 *   DATABASE_URL                           database.url (required)
 *   TASKER_TEMPLATE_PATH                   orchestration.template_path
 *   TASKER_ORCHESTRATION_GRPC_BIND_ADDRESS orchestration.grpc_bind_address
 *                                          (= server.listen, default 0.0.0.0:9090)
 *   TASKER_ORCHESTRATION_WEB_BIND_ADDRESS  orchestration.web_bind_address
 *                                          (default 0.0.0.0:8080)
 */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmd/taskerd_metrics.h"
#include "cmd/taskerd_rest.h"
#include "cmd/taskerd_services.h"
#include "common/sdnotify.h"
#include "engine/engine.h"
#include "tasker/rpc.h"
#include "web/rest.h"

extern const unsigned char std_descriptor_set[];
extern const unsigned long std_descriptor_set_len;
extern const unsigned char tasker_descriptor_set[];
extern const unsigned long tasker_descriptor_set_len;

/* Program settings beyond the runtime's, filled by on_extra_key. */
struct taskerd_opts {
	struct eng_config eng;
	char *database_url;
	char *template_path;
	char *environment;
	char *web_bind;
	char *grpc_bind;
	int migrate_only;
	struct taskerd_api *api; /* the tasker.v1 API: its own keys ([auth], [backpressure]) */
	/* Every key above as its source gave it, for the reload's comparison
	 * (the runtime compares its own keys). */
	trpc_config_keys *keys;
};

static int parse_int(const char *v, int min, int max, int *out)
{
	char *end;
	errno = 0;
	long n = strtol(v, &end, 10);
	if (errno != 0 || end == v || *end != '\0' || n < min || n > max)
		return -1;
	*out = (int)n;
	return 0;
}

static int set_str(char **dst, const char *v)
{
	free(*dst);
	*dst = strdup(v);
	return *dst ? 0 : TRPC_ERR_NOMEM;
}

/*
 * Keys of the [database], [orchestration] and [dlq] sections: a string (a
 * char * in struct taskerd_opts) or an integer in min..max (an int).
 * --list-options prints this table, so a key added here is a key the
 * manual test asks to document.
 */
struct extra_key {
	const char *section, *key;
	size_t offset;
	int is_int, min, max;
};

#define OPT(field) offsetof(struct taskerd_opts, field)

static const struct extra_key extra_keys[] = {
    {"database", "url", OPT(database_url), 0, 0, 0},
    {"database", "pool_size", OPT(eng.pool_size), 1, 1, 1000},
    {"orchestration", "template_path", OPT(template_path), 0, 0, 0},
    {"orchestration", "environment", OPT(environment), 0, 0, 0},
    {"orchestration", "grpc_bind_address", OPT(grpc_bind), 0, 0, 0},
    {"orchestration", "web_bind_address", OPT(web_bind), 0, 0, 0},
    {"orchestration", "poll_interval_ms", OPT(eng.poll_interval_ms), 1, 10, 600000},
    {"orchestration", "result_threads", OPT(eng.result_threads), 1, 1, 64},
    {"orchestration", "request_threads", OPT(eng.request_threads), 1, 1, 64},
    {"orchestration", "result_batch", OPT(eng.result_batch), 1, 1, 1000},
    {"orchestration", "visibility_timeout_s", OPT(eng.visibility_timeout_s), 1, 1, 86400},
    {"dlq", "staleness_enabled", OPT(eng.staleness_enabled), 1, 0, 1},
    {"dlq", "staleness_interval_s", OPT(eng.staleness_interval_s), 1, 1, 86400},
    {"dlq", "staleness_batch", OPT(eng.staleness_batch), 1, 1, 10000},
};

#define N_EXTRA_KEYS (sizeof(extra_keys) / sizeof(extra_keys[0]))

static int take_key(void *ud, const char *section, const char *key, const char *value)
{
	char *base = ud;

	for (size_t i = 0; i < N_EXTRA_KEYS; i++) {
		const struct extra_key *k = &extra_keys[i];
		if (strcmp(k->section, section) != 0 || strcmp(k->key, key) != 0)
			continue;
		if (!k->is_int)
			return set_str((char **)(void *)(base + k->offset), value);
		if (parse_int(value, k->min, k->max, (int *)(void *)(base + k->offset)) != 0) {
			fprintf(stderr, "taskerd: %s.%s: \"%s\" is not an integer in %d..%d\n",
			        section, key, value, k->min, k->max);
			return TRPC_ERR_INVALID;
		}
		return 0;
	}
	/* [auth], [auth.api_key.<name>], [backpressure]: the API's; [web]: REST's. */
	int rc = taskerd_api_config_key(((struct taskerd_opts *)ud)->api, section, key, value);
	return rc == TRPC_ERR_CONFIG ? taskerd_rest_config_key(section, key, value) : rc;
}

static int on_extra_key(void *ud, const char *section, const char *key, const char *value)
{
	struct taskerd_opts *o = ud;
	int rc = take_key(ud, section, key, value);

	/* Kept as given, for the reload's comparison. */
	return rc == 0 ? trpc_config_keys_set(o->keys, section, key, value) : rc;
}

/* Every option and key, one a line (the manual pages are checked against it). */
static void list_options(void)
{
	const char *section, *key;

	printf("--config\n-c\n--migrate-only\n--list-options\n--help\n-h\n--version\n");
	for (size_t i = 0; trpc_server_config_key(i, &section, &key) == 0; i++)
		printf("%s.%s\n", section, key);
	for (size_t i = 0; i < N_EXTRA_KEYS; i++)
		printf("%s.%s\n", extra_keys[i].section, extra_keys[i].key);
	for (size_t i = 0; taskerd_rest_key(i, &section, &key) == 0; i++)
		printf("%s.%s\n", section, key);
	for (size_t i = 0; taskerd_api_key(i, &section, &key) == 0; i++)
		printf("%s.%s\n", section, key);
}

static void usage(FILE *out)
{
	fprintf(out,
	        "usage: taskerd [--config PATH] [--migrate-only] [--section.key=value ...]\n"
	        "       taskerd --help | --version | --list-options\n"
	        "Required: DATABASE_URL (or --database.url). See taskerd.conf for every key.\n");
}

static void opts_free(struct taskerd_opts *o)
{
	free(o->database_url);
	free(o->template_path);
	free(o->environment);
	free(o->web_bind);
	free(o->grpc_bind);
	taskerd_api_free(o->api);
	trpc_config_keys_free(o->keys);
}

/* The plain operator variables; the command line and TASKER_* keys override. */
static int apply_environment(struct taskerd_opts *o)
{
	static const struct {
		const char *var, *section, *key;
	} vars[] = {
	    {"DATABASE_URL", "database", "url"},
	    {"TASKER_TEMPLATE_PATH", "orchestration", "template_path"},
	};
	const char *v;

	for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
		if ((v = getenv(vars[i].var)) != NULL &&
		    on_extra_key(o, vars[i].section, vars[i].key, v) != 0)
			return -1;
	return 0;
}

/* ------------------------------------------------------------------ SIGHUP */

/* What a reload reads again: the same file, environment and options. */
struct reload_src {
	const char *config_path;
	int nrest;
	char **rest;
	struct taskerd_api *api;
	const trpc_config_keys *keys; /* taskerd's own keys as started */
};

/* Keys collected by a reload; [web] lands in a scratch copy (the REST
 * listener's settings need a restart) so that it is checked only. */
struct reload_opts {
	struct taskerd_opts o; /* first: on_extra_key takes it as its base */
	struct rest_config web;
};

static int on_reload_key(void *ud, const char *section, const char *key, const char *value)
{
	struct reload_opts *r = ud;
	const char *why = NULL;

	if (strcmp(section, "web") != 0)
		return on_extra_key(&r->o, section, key, value);
	int rc = rest_config_set(&r->web, section, key, value, &why);
	if (rc == TRPC_ERR_INVALID)
		trpc_log(TRPC_LOG_ERROR, "reload: %s.%s: \"%s\": %s", section, key, value, why);
	return rc == 0 ? trpc_config_keys_set(r->o.keys, section, key, value) : rc;
}

/*
 * SIGHUP: reads the configuration again and applies TLS files, log level,
 * rate limits, [auth] and [backpressure] (taskerd_api_reload) only when
 * all of it is valid; otherwise logs why and keeps the configuration in
 * force. Once applied, every other key of taskerd's that differs from
 * the start is logged as needing a restart (the runtime does the same
 * for its keys).
 */
static void on_reload(trpc_server *srv, void *ud)
{
	struct reload_src *src = ud;
	struct reload_opts r;
	struct trpc_server_config cfg;
	const char *why = "out of memory", *detail;

	memset(&r, 0, sizeof r);
	eng_config_init(&r.o.eng);
	trpc_server_config_init(&cfg);
	if (trpc_server_config_set(&cfg, "server", "listen", "0.0.0.0:9090", &why) != 0 ||
	    (r.o.keys = trpc_config_keys_new()) == NULL || apply_environment(&r.o) != 0 ||
	    (r.o.api = taskerd_api_new()) == NULL || rest_config_init(&r.web, "0.0.0.0:8080") != 0)
		goto fail;
	if (trpc_server_config_load(&cfg, src->config_path, src->nrest, src->rest, on_reload_key,
	                            &r, &why) != 0)
		goto fail;
	if (r.o.grpc_bind != NULL &&
	    trpc_server_config_set(&cfg, "server", "listen", r.o.grpc_bind, &why) != 0)
		goto fail;
	if (taskerd_api_reload(src->api, r.o.api, srv, &cfg, &why) != 0)
		goto fail;
	trpc_config_keys_warn_restart(src->keys, r.o.keys, taskerd_api_reloaded_keys);
	goto out;
fail:
	/* A value the API refused: its reason besides the loader's "where". */
	detail = taskerd_api_last_error(r.o.api);
	trpc_log(TRPC_LOG_ERROR, "reload rejected, keeping the old configuration: %s%s%s%s", why,
	         detail != NULL ? " (" : "", detail != NULL ? detail : "",
	         detail != NULL ? ")" : "");
out:
	rest_config_clear(&r.web);
	trpc_server_config_clear(&cfg);
	opts_free(&r.o);
}

int main(int argc, char **argv)
{
	const char *config_path = getenv("TASKER_CONFIG");
	int explicit_config = config_path != NULL;
	struct taskerd_opts o = {0};
	eng_config_init(&o.eng);
	char **rest = calloc((size_t)argc + 1, sizeof *rest);
	int nrest = 0;
	if (rest == NULL || (o.keys = trpc_config_keys_new()) == NULL ||
	    apply_environment(&o) != 0 || (o.api = taskerd_api_new()) == NULL) {
		free(rest);
		opts_free(&o);
		return 1;
	}
	rest[nrest++] = argv[0];
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			usage(stdout);
			free(rest);
			opts_free(&o);
			return 0;
		}
		if (strcmp(argv[i], "--list-options") == 0) {
			list_options();
			free(rest);
			opts_free(&o);
			return 0;
		}
		if (strcmp(argv[i], "--version") == 0) {
			printf("taskerd %s\n", PACKAGE_VERSION);
			free(rest);
			opts_free(&o);
			return 0;
		}
		if (strcmp(argv[i], "--migrate-only") == 0) {
			o.migrate_only = 1;
		} else if ((strcmp(argv[i], "--config") == 0 || strcmp(argv[i], "-c") == 0) &&
		           i + 1 < argc) {
			config_path = argv[++i];
			explicit_config = 1;
		} else if (strncmp(argv[i], "--config=", 9) == 0) {
			config_path = argv[i] + 9;
			explicit_config = 1;
		} else {
			rest[nrest++] = argv[i];
		}
	}
	if (!explicit_config) {
		static const char def[] = SYSCONFDIR "/tasker/taskerd.conf";
		config_path = access(def, R_OK) == 0 ? def : NULL;
	}

	struct trpc_server_config cfg;
	trpc_server_config_init(&cfg);
	const char *why = NULL;
	/* The orchestration gRPC port of the operator interface (9090) is the
	 * default listener; server.listen or the bind variable change it. */
	trpc_server_config_set(&cfg, "server", "listen", "0.0.0.0:9090", &why);
	int rc = 1;
	if (trpc_server_config_load(&cfg, config_path, nrest, rest, on_extra_key, &o, &why) != 0) {
		if (taskerd_api_last_error(o.api) != NULL)
			fprintf(stderr, "taskerd: %s\n", taskerd_api_last_error(o.api));
		fprintf(stderr, "taskerd: %s\n", why);
		usage(stderr);
		rc = 2;
		goto out_cfg;
	}
	if (o.grpc_bind != NULL &&
	    trpc_server_config_set(&cfg, "server", "listen", o.grpc_bind, &why) != 0) {
		fprintf(stderr, "taskerd: orchestration.grpc_bind_address: %s\n", why);
		rc = 2;
		goto out_cfg;
	}
	if (o.database_url == NULL) {
		fprintf(stderr, "taskerd: DATABASE_URL (database.url) is required\n");
		rc = 2;
		goto out_cfg;
	}
	struct tk_err err = {0};
	if (taskerd_api_check(o.api, &err) != 0) {
		fprintf(stderr, "taskerd: %s\n", err.msg);
		rc = 2;
		goto out_cfg;
	}
	/* [log] applies from here on, not only once the server exists. */
	if (trpc_log_configure(&cfg, &why) != 0) {
		fprintf(stderr, "taskerd: %s\n", why);
		rc = 2;
		goto out_cfg;
	}

	sdn_status("applying database migrations");
	/* Migrations are applied at every start (under an advisory lock, so
	 * several taskerd can start together); --migrate-only stops there. */
	if (eng_migrate(o.database_url, &err) != 0) {
		fprintf(stderr, "taskerd: migrations: %s\n", err.msg);
		goto out_cfg;
	}
	if (o.migrate_only) {
		trpc_log(TRPC_LOG_INFO, "migrations applied");
		rc = 0;
		goto out_cfg;
	}
	o.eng.database_url = o.database_url;
	o.eng.template_path = o.template_path;
	o.eng.environment = o.environment;
	/* Before the engine and the server start threads: they inherit the
	 * mask, so a SIGHUP or SIGTERM during start-up waits for
	 * trpc_server_run_until_signal instead of killing the process. */
	trpc_block_run_signals(NULL);
	struct eng *eng = eng_new(&o.eng, &err);
	if (eng == NULL) {
		fprintf(stderr, "taskerd: %s\n", err.msg);
		goto out_cfg;
	}
	struct taskerd_metrics *metrics = NULL;
	struct rest_server *web = NULL;
	trpc_server *srv = trpc_server_new(&cfg, &why);
	if (srv == NULL) {
		fprintf(stderr, "taskerd: %s\n", why);
		goto out_eng;
	}
	struct trpc_descriptor_set sets[] = {{std_descriptor_set, std_descriptor_set_len},
	                                     {tasker_descriptor_set, tasker_descriptor_set_len}};
	trpc_health *health = trpc_health_register(srv);
	if (health == NULL || trpc_reflection_register(srv, sets, 2) != 0) {
		fprintf(stderr, "taskerd: cannot register the standard services\n");
		goto out_srv;
	}
	if (taskerd_api_register(o.api, srv, health, eng, o.database_url, o.environment, &err) !=
	    0) {
		fprintf(stderr, "taskerd: %s\n", err.msg);
		goto out_srv;
	}
	if (eng_start(eng, &err) != 0) {
		fprintf(stderr, "taskerd: %s\n", err.msg);
		goto out_srv;
	}
	if (trpc_server_start(srv, &why) != 0 ||
	    (metrics = taskerd_metrics_start(srv, eng, &cfg, &why)) == NULL) {
		fprintf(stderr, "taskerd: %s\n", why);
		goto out_srv;
	}
	if (taskerd_rest_start(taskerd_api_env(o.api), o.web_bind, &web, &err) != 0) {
		fprintf(stderr, "taskerd: %s\n", err.msg);
		goto out_srv;
	}
	sdn_server_ready(srv, "orchestrating; serving gRPC on %s (port %d)",
	                 cfg.listen != NULL ? cfg.listen : cfg.tls_listen,
	                 trpc_server_port(srv, cfg.listen == NULL, 0));
	struct reload_src reload = {config_path, nrest, rest, o.api, o.keys};
	trpc_server_set_on_reload(srv, on_reload, &reload);
	rc = trpc_server_run_until_signal(srv) == 0 ? 0 : 1;
out_srv:
	taskerd_rest_stop(web);
	taskerd_metrics_stop(metrics);
	trpc_server_free(srv);
out_eng:
	eng_free(eng);
out_cfg:
	taskerd_rest_stop(NULL); /* the [web] settings */
	trpc_server_config_clear(&cfg);
	opts_free(&o);
	free(rest);
	return rc;
}

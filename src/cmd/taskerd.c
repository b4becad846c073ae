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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/engine.h"
#include "tasker/rpc.h"

extern const unsigned char std_descriptor_set[];
extern const unsigned long std_descriptor_set_len;

/* Program settings beyond the runtime's, filled by on_extra_key. */
struct taskerd_opts {
	struct eng_config eng;
	char *database_url;
	char *template_path;
	char *environment;
	char *web_bind;
	char *grpc_bind;
	int migrate_only;
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

/* Keys of the [database], [orchestration] and [dlq] sections. */
static int on_extra_key(void *ud, const char *section, const char *key, const char *value)
{
	struct taskerd_opts *o = ud;
	int *ip = NULL, min = 0, max = INT_MAX;
	if (strcmp(section, "database") == 0) {
		if (strcmp(key, "url") == 0)
			return set_str(&o->database_url, value);
		if (strcmp(key, "pool_size") == 0)
			ip = &o->eng.pool_size, min = 1, max = 1000;
	} else if (strcmp(section, "orchestration") == 0) {
		if (strcmp(key, "template_path") == 0)
			return set_str(&o->template_path, value);
		if (strcmp(key, "environment") == 0)
			return set_str(&o->environment, value);
		if (strcmp(key, "grpc_bind_address") == 0)
			return set_str(&o->grpc_bind, value);
		if (strcmp(key, "web_bind_address") == 0)
			return set_str(&o->web_bind, value);
		if (strcmp(key, "poll_interval_ms") == 0)
			ip = &o->eng.poll_interval_ms, min = 10, max = 600000;
		if (strcmp(key, "result_threads") == 0)
			ip = &o->eng.result_threads, min = 1, max = 64;
		if (strcmp(key, "request_threads") == 0)
			ip = &o->eng.request_threads, min = 1, max = 64;
		if (strcmp(key, "result_batch") == 0)
			ip = &o->eng.result_batch, min = 1, max = 1000;
		if (strcmp(key, "visibility_timeout_s") == 0)
			ip = &o->eng.visibility_timeout_s, min = 1, max = 86400;
	} else if (strcmp(section, "dlq") == 0) {
		if (strcmp(key, "staleness_enabled") == 0)
			ip = &o->eng.staleness_enabled, min = 0, max = 1;
		if (strcmp(key, "staleness_interval_s") == 0)
			ip = &o->eng.staleness_interval_s, min = 1, max = 86400;
		if (strcmp(key, "staleness_batch") == 0)
			ip = &o->eng.staleness_batch, min = 1, max = 10000;
	}
	if (ip == NULL)
		return TRPC_ERR_CONFIG;
	if (parse_int(value, min, max, ip) != 0) {
		fprintf(stderr, "taskerd: %s.%s: \"%s\" is not an integer in %d..%d\n", section,
		        key, value, min, max);
		return TRPC_ERR_INVALID;
	}
	return 0;
}

static void usage(FILE *out)
{
	fprintf(out,
	        "usage: taskerd [--config PATH] [--migrate-only] [--section.key=value ...]\n"
	        "       taskerd --help | --version\n"
	        "Required: DATABASE_URL (or --database.url). See taskerd.conf for every key.\n");
}

static void opts_free(struct taskerd_opts *o)
{
	free(o->database_url);
	free(o->template_path);
	free(o->environment);
	free(o->web_bind);
	free(o->grpc_bind);
}

/* The plain operator variables; the command line and TASKER_* keys override. */
static int apply_environment(struct taskerd_opts *o)
{
	const char *v;
	if ((v = getenv("DATABASE_URL")) != NULL && set_str(&o->database_url, v) != 0)
		return -1;
	if ((v = getenv("TASKER_TEMPLATE_PATH")) != NULL && set_str(&o->template_path, v) != 0)
		return -1;
	return 0;
}

int main(int argc, char **argv)
{
	const char *config_path = getenv("TASKER_CONFIG");
	int explicit_config = config_path != NULL;
	struct taskerd_opts o = {0};
	eng_config_init(&o.eng);
	char **rest = calloc((size_t)argc + 1, sizeof *rest);
	int nrest = 0;
	if (rest == NULL || apply_environment(&o) != 0)
		return 1;
	rest[nrest++] = argv[0];
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			usage(stdout);
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
	struct eng *eng = eng_new(&o.eng, &err);
	if (eng == NULL) {
		fprintf(stderr, "taskerd: %s\n", err.msg);
		goto out_cfg;
	}
	trpc_server *srv = trpc_server_new(&cfg, &why);
	if (srv == NULL) {
		fprintf(stderr, "taskerd: %s\n", why);
		goto out_eng;
	}
	struct trpc_descriptor_set sets[] = {{std_descriptor_set, std_descriptor_set_len}};
	if (trpc_health_register(srv) == NULL || trpc_reflection_register(srv, sets, 1) != 0) {
		fprintf(stderr, "taskerd: cannot register the standard services\n");
		goto out_srv;
	}
	if (eng_start(eng, &err) != 0) {
		fprintf(stderr, "taskerd: %s\n", err.msg);
		goto out_srv;
	}
	if (trpc_server_start(srv, &why) != 0) {
		fprintf(stderr, "taskerd: %s\n", why);
		goto out_srv;
	}
	rc = trpc_server_run_until_signal(srv) == 0 ? 0 : 1;
out_srv:
	trpc_server_free(srv);
out_eng:
	eng_free(eng);
out_cfg:
	trpc_server_config_clear(&cfg);
	opts_free(&o);
	free(rest);
	return rc;
}

/*
 * tasker-worker: claims workflow steps from the PostgreSQL queues of its
 * namespaces, runs their handlers and reports the results to the
 * orchestration (src/worker/).
 *
 * Usage: tasker-worker [--config PATH] [--section.key=value ...]
 * Settings come from the INI file (default SYSCONFDIR/tasker/tasker-worker.conf
 * when it exists), TASKER_<SECTION>_<KEY> variables, a few plain variables
 * (DATABASE_URL, TASKER_TEMPLATE_PATH, TASKER_WORKER_NAMESPACES,
 * TASKER_WORKER_GRPC_BIND_ADDRESS) and the command line, which wins.
 * src/worker/settings.h lists the worker's keys.
 *
 * The worker never migrates the database (taskerd --migrate-only does);
 * it refuses to start on a schema that lacks a migration it was built with.
 *
 * SIGTERM or SIGINT: stop claiming, let running handlers finish for up to
 * [worker] shutdown_timeout, then exit 0. Handlers still running then (or
 * at a second signal) are given up: exec handlers are killed and their
 * messages released, so that another worker reclaims the steps.
 */
#include "config.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cmd/worker_services.h"
#include "common/sdnotify.h"
#include "engine/template.h"
#include "store/db.h"
#include "tasker/rpc.h"
#include "worker/settings.h"
#include "worker/handler.h"
#include "web/metrics_db.h"
#include "web/metrics_http.h"
#include "worker/worker.h"

#define PROG "tasker-worker"

static void usage(FILE *out)
{
	fprintf(out,
	        "usage: " PROG " [--config PATH] [--section.key=value ...]\n"
	        "       " PROG " --help | --version | --list-options\n"
	        "Worker keys: --database.url, --worker.template_path, --worker.namespaces,\n"
	        "  --worker.concurrency, --worker.visibility_timeout, --worker.step_timeout,\n"
	        "  --worker.poll_interval, --worker.batch_size, --worker.shutdown_timeout,\n"
	        "  --worker.exec_dir, --worker.plugin_dir, --worker.environment,\n"
	        "  --worker.grpc_bind_address, --database.pool_size; each is also\n"
	        "  TASKER_<SECTION>_<KEY>. DATABASE_URL and TASKER_TEMPLATE_PATH are read too.\n");
}

/* ------------------------------------------------------------------ configuration */

/* Every option and key, one a line (the manual page is checked against it). */
static void list_options(void)
{
	const char *section, *key;

	printf("--config\n-c\n--list-options\n--help\n-h\n--version\n");
	for (size_t i = 0; wk_settings_key(i, &section, &key) == 0; i++)
		printf("%s.%s\n", section, key);
	for (size_t i = 0; trpc_server_config_key(i, &section, &key) == 0; i++)
		printf("%s.%s\n", section, key);
	for (size_t i = 0; worker_services_key(i, &section, &key) == 0; i++)
		printf("%s.%s\n", section, key);
}

struct extra_ctx {
	struct wk_settings *cfg;
	const char *why;        /* the worker's complaint about a value, if any */
	trpc_config_keys *keys; /* every key taken, as its source gave it */
};

static int on_extra(void *ud, const char *section, const char *key, const char *value)
{
	struct extra_ctx *x = ud;
	int rc = wk_settings_set(x->cfg, section, key, value, &x->why);

	/* then the API's keys (worker.web_bind_address, [web], [auth]) */
	if (rc == TRPC_ERR_CONFIG)
		rc = worker_services_set(section, key, value, &x->why);
	/* Kept as given, for the reload's comparison. */
	return rc == 0 ? trpc_config_keys_set(x->keys, section, key, value) : rc;
}

/*
 * Splits argv into the options of this program (--config, --help, ...)
 * and the rest for the loader. Returns -1 to continue, else an exit status.
 */
static int parse_own_options(int argc, char **argv, char **rest, int *nrest,
                             const char **config_path, int *explicit_config)
{
	rest[(*nrest)++] = argv[0];
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			usage(stdout);
			return 0;
		}
		if (strcmp(argv[i], "--version") == 0) {
			printf(PROG " %s\n", PACKAGE_VERSION);
			return 0;
		}
		if (strcmp(argv[i], "--list-options") == 0) {
			list_options();
			return 0;
		}
		if (strcmp(argv[i], "--migrate-only") == 0) {
			fprintf(stderr, PROG ": the worker does not migrate; run taskerd "
			                     "--migrate-only\n");
			return 2;
		}
		if ((strcmp(argv[i], "--config") == 0 || strcmp(argv[i], "-c") == 0) &&
		    i + 1 < argc) {
			*config_path = argv[++i];
			*explicit_config = 1;
		} else if (strncmp(argv[i], "--config=", 9) == 0) {
			*config_path = argv[i] + 9;
			*explicit_config = 1;
		} else {
			rest[(*nrest)++] = argv[i];
		}
	}
	return -1;
}

/* Loads every source into wcfg (and the runtime's keys into rcfg). Returns 0 or 2. */
/* What SIGHUP reads again: the same file, environment and options. */
struct reload_src {
	const char *config_path;
	int nrest;
	char **rest; /* owned */
	struct worker_services *api;
	trpc_config_keys *keys; /* owned: the worker's own keys as started */
};

/* Loads the configuration; on success (-1) src keeps the file and the
 * options for reloads. */
static int load_config(int argc, char **argv, struct wk_settings *wcfg,
                       struct trpc_server_config *rcfg, struct reload_src *src)
{
	const char *config_path = getenv("TASKER_CONFIG"), *why = NULL;
	int explicit_config = config_path != NULL, nrest = 0, rc;
	char **rest = calloc((size_t)argc + 1, sizeof(*rest));
	struct extra_ctx x = {.cfg = wcfg, .keys = trpc_config_keys_new()};

	if (rest == NULL || x.keys == NULL) {
		free(rest);
		trpc_config_keys_free(x.keys);
		return 1;
	}
	rc = parse_own_options(argc, argv, rest, &nrest, &config_path, &explicit_config);
	if (rc >= 0) {
		free(rest);
		trpc_config_keys_free(x.keys);
		return rc;
	}
	if (!explicit_config) {
		static const char def[] = SYSCONFDIR "/tasker/tasker-worker.conf";
		config_path = access(def, R_OK) == 0 ? def : NULL;
	}
	if (wk_settings_from_env(wcfg, x.keys, &why) != 0 ||
	    trpc_server_config_load(rcfg, config_path, nrest, rest, on_extra, &x, &why) != 0 ||
	    wk_settings_check(wcfg, &why) != 0 || trpc_log_configure(rcfg, &why) != 0) {
		fprintf(stderr, PROG ": %s%s%s%s\n", why, x.why != NULL ? " (" : "",
		        x.why != NULL ? x.why : "", x.why != NULL ? ")" : "");
		usage(stderr);
		free(rest);
		trpc_config_keys_free(x.keys);
		return 2;
	}
	src->config_path = config_path;
	src->nrest = nrest;
	src->rest = rest;
	src->keys = x.keys;
	return -1;
}

/* ------------------------------------------------------------------ SIGHUP */

struct reload_extra {
	struct wk_settings cfg;
	struct worker_services_keys *keys;
	const char *why;
	trpc_config_keys *taken; /* every key taken, as in struct extra_ctx */
};

static int on_reload_extra(void *ud, const char *section, const char *key, const char *value)
{
	struct reload_extra *x = ud;
	int rc = wk_settings_set(&x->cfg, section, key, value, &x->why);

	if (rc == TRPC_ERR_CONFIG)
		rc = worker_services_keys_set(x->keys, section, key, value, &x->why);
	return rc == 0 ? trpc_config_keys_set(x->taken, section, key, value) : rc;
}

/*
 * Reads the configuration again; when all of it is valid, applies [auth],
 * TLS files, log level and rate limits (worker_services_reload), else logs
 * why and keeps the configuration in force. [worker], [database] and
 * [web] need a restart: once the rest is applied, each of their keys
 * that differs from the start is logged as such (the runtime does the
 * same for its keys).
 */
static void reload(const struct reload_src *src)
{
	struct reload_extra x = {0};
	struct trpc_server_config rcfg;
	const char *why = "out of memory";

	trpc_server_config_init(&rcfg);
	if (wk_settings_init(&x.cfg) != 0) {
		trpc_log(TRPC_LOG_ERROR, "reload rejected: out of memory");
		trpc_server_config_clear(&rcfg);
		return;
	}
	if ((x.keys = worker_services_keys_new()) == NULL ||
	    (x.taken = trpc_config_keys_new()) == NULL)
		goto fail;
	if (wk_settings_from_env(&x.cfg, x.taken, &why) != 0 ||
	    trpc_server_config_load(&rcfg, src->config_path, src->nrest, src->rest, on_reload_extra,
	                            &x, &why) != 0 ||
	    wk_settings_check(&x.cfg, &why) != 0)
		goto fail;
	if (x.cfg.grpc_bind_address != NULL &&
	    trpc_server_config_set(&rcfg, "server", "listen", x.cfg.grpc_bind_address, &why) != 0)
		goto fail;
	if (worker_services_reload(src->api, x.keys, &rcfg, &why) != 0)
		goto fail;
	trpc_config_keys_warn_restart(src->keys, x.taken, worker_services_reloaded_keys);
	goto out;
fail:
	trpc_log(TRPC_LOG_ERROR, "reload rejected, keeping the old configuration: %s%s%s%s", why,
	         x.why != NULL ? " (" : "", x.why != NULL ? x.why : "", x.why != NULL ? ")" : "");
out:
	trpc_config_keys_free(x.taken);
	worker_services_keys_free(x.keys);
	wk_settings_clear(&x.cfg);
	trpc_server_config_clear(&rcfg);
}

/* ------------------------------------------------------------------ namespaces */

struct names {
	char **v;
	size_t n;
};

static void names_clear(struct names *ns)
{
	for (size_t i = 0; i < ns->n; i++)
		free(ns->v[i]);
	free(ns->v);
	ns->v = NULL;
	ns->n = 0;
}

static int names_add(struct names *ns, const char *s, size_t len)
{
	char **grown;

	for (size_t i = 0; i < ns->n; i++)
		if (strlen(ns->v[i]) == len && strncmp(ns->v[i], s, len) == 0)
			return 0;
	if ((grown = realloc(ns->v, (ns->n + 1) * sizeof(*grown))) == NULL)
		return -1;
	ns->v = grown;
	if ((ns->v[ns->n] = strndup(s, len)) == NULL)
		return -1;
	ns->n++;
	return 0;
}

/* The configured comma-separated list, or every namespace of the templates. */
static int pick_namespaces(const char *list, struct tpl *const *tpls, size_t n, struct names *out)
{
	if (list == NULL) {
		for (size_t i = 0; i < n; i++)
			if (names_add(out, tpls[i]->namespace_name,
			              strlen(tpls[i]->namespace_name)))
				return -1;
		return 0;
	}
	for (const char *p = list; *p != '\0';) {
		size_t len = strcspn(p, ",");
		const char *s = p;
		p += len + (p[len] == ',');
		while (len > 0 && (*s == ' ' || *s == '\t'))
			s++, len--;
		while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t'))
			len--;
		if (len > 0 && names_add(out, s, len) != 0)
			return -1;
	}
	return 0;
}

static void warn_unknown_namespaces(const struct names *ns, struct tpl *const *tpls, size_t n)
{
	for (size_t i = 0; i < ns->n; i++) {
		size_t k = 0;
		while (k < n && strcmp(tpls[k]->namespace_name, ns->v[i]) != 0)
			k++;
		if (k == n)
			trpc_log(
			    TRPC_LOG_WARN,
			    "namespace %s: no template of it is loaded; its steps will be left "
			    "for other workers",
			    ns->v[i]);
	}
}

/* "a, b, c" for the start-up log. */
static void join_names(const struct names *ns, char *buf, size_t size)
{
	size_t used = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < ns->n && used < size; i++) {
		int w = snprintf(buf + used, size - used, "%s%s", i > 0 ? ", " : "", ns->v[i]);
		if (w < 0)
			break;
		used += (size_t)w;
	}
}

/* ------------------------------------------------------------------ running */

/* Waits for the first SIGTERM/SIGINT, then shuts down as the header says. */
static int run_until_signal(struct wk_worker *w, const sigset_t *set, int shutdown_timeout_ms,
                            const struct reload_src *src)
{
	struct timespec zero = {0, 0};
	int64_t deadline;
	int sig, idle = 0;

	/* SIGHUP reopens the log file (after rotation), then reloads. */
	while ((sig = sigwaitinfo(set, NULL)) == SIGHUP || (sig == -1 && errno == EINTR)) {
		if (sig != SIGHUP)
			continue;
		if (trpc_log_reopen() != 0)
			trpc_log(TRPC_LOG_ERROR, "SIGHUP: cannot reopen the log file");
		reload(src);
	}
	trpc_log(TRPC_LOG_INFO, "%s: no longer claiming; waiting up to %d ms for running steps",
	         strsignal(sig), shutdown_timeout_ms);
	sdn_stopping("stopping: waiting up to %d ms for running steps", shutdown_timeout_ms);
	wk_worker_stop_claiming(w);
	deadline = wk_now_ns() + (int64_t)shutdown_timeout_ms * 1000000;
	while (!idle) {
		int64_t slice = wk_now_ns() + 200 * 1000000LL;
		idle = wk_worker_wait_idle(w, slice < deadline ? slice : deadline);
		if (idle || wk_now_ns() >= deadline)
			break;
		if ((sig = sigtimedwait(set, NULL, &zero)) == SIGHUP)
			trpc_log_reopen();
		else if (sig > 0) {
			trpc_log(TRPC_LOG_WARN, "second signal: not waiting any longer");
			break;
		}
	}
	return idle;
}

static struct db_pool *open_pool(const struct wk_settings *cfg)
{
	struct db_pool_config pc = {
	    .conninfo = cfg->database_url,
	    .size = cfg->db_pool_size > 0 ? cfg->db_pool_size : cfg->concurrency + 2,
	    .application_name = PROG,
	};
	struct tk_err err;
	struct db_pool *pool;
	PGconn *conn;
	int rc;

	tk_err_clear(&err);
	if ((pool = db_pool_new(&pc, &err)) == NULL) {
		fprintf(stderr, PROG ": %s\n", err.msg);
		return NULL;
	}
	if ((conn = db_acquire(pool, &err)) == NULL) {
		fprintf(stderr, PROG ": %s\n", err.msg);
		db_pool_free(pool);
		return NULL;
	}
	rc = wk_check_schema(conn, &err);
	db_release(pool, conn, rc == TRPC_ERR_UNAVAILABLE);
	if (rc != 0) {
		fprintf(stderr, PROG ": %s\n", err.msg);
		db_pool_free(pool);
		return NULL;
	}
	return pool;
}

int main(int argc, char **argv)
{
	struct wk_settings cfg;
	struct trpc_server_config rcfg;
	struct tpl **tpls = NULL;
	size_t n_tpls = 0;
	struct names ns = {0};
	struct wk_registry *reg = NULL;
	struct db_pool *pool = NULL;
	struct wk_worker *w = NULL;
	struct wk_registry_config reg_cfg = {0};
	struct wk_worker_options wo = {0};
	struct worker_services_args api_args;
	struct worker_services *api = NULL;
	struct metrics_db *mdb = NULL;
	struct metrics_http *metrics = NULL;
	struct tk_err err;
	struct reload_src reload_src = {0};
	sigset_t set;
	char list[512];
	int rc = 1;

	/* Before any thread exists, so that every thread inherits the mask
	 * and only sigwaitinfo() below sees these signals. */
	signal(SIGPIPE, SIG_IGN);
	trpc_block_run_signals(&set);

	tk_err_clear(&err);
	trpc_server_config_init(&rcfg);
	if (wk_settings_init(&cfg) != 0) {
		fprintf(stderr, PROG ": out of memory\n");
		goto out_cfg;
	}
	if ((rc = load_config(argc, argv, &cfg, &rcfg, &reload_src)) >= 0)
		goto out_cfg;
	rc = 1;

	if (tpl_discover(cfg.template_path, cfg.environment, &tpls, &n_tpls, &err) != 0) {
		fprintf(stderr, PROG ": %s\n", err.msg);
		goto out_cfg;
	}
	if (n_tpls == 0) {
		fprintf(stderr, PROG ": no task templates (*.yaml, *.yml) under %s\n",
		        cfg.template_path);
		goto out_tpls;
	}
	if (pick_namespaces(cfg.namespaces, tpls, n_tpls, &ns) != 0 || ns.n == 0) {
		fprintf(stderr, PROG ": %s\n",
		        ns.n == 0 ? "no namespaces to serve" : "out of memory");
		goto out_tpls;
	}
	warn_unknown_namespaces(&ns, tpls, n_tpls);
	reg_cfg.exec_dir = cfg.exec_dir;
	reg_cfg.plugin_dir = cfg.plugin_dir;
	reg_cfg.namespaces = (const char *const *)ns.v;
	reg_cfg.n_namespaces = ns.n;
	if (wk_registry_new(tpls, n_tpls, &reg_cfg, &reg, &err) != 0) {
		fprintf(stderr, PROG ": %s\n", err.msg);
		goto out_tpls;
	}
	if ((pool = open_pool(&cfg)) == NULL)
		goto out_reg;
	if (rcfg.metrics_listen != NULL) {
		struct metrics_source src = {.collect = metrics_db_collect};
		const char *why = "out of memory";
		if ((src.collect_ud = mdb = metrics_db_new(pool, 5000)) == NULL ||
		    (metrics = metrics_http_start(rcfg.metrics_listen, &src, &why)) == NULL) {
			fprintf(stderr, PROG ": %s\n", why);
			goto out_worker;
		}
	}
	wo.cfg = &cfg;
	wo.registry = reg;
	wo.pool = pool;
	wo.namespaces = (const char *const *)ns.v;
	wo.n_namespaces = ns.n;
	if (wk_worker_new(&wo, &w, &err) != 0 || wk_worker_start(w, &err) != 0) {
		fprintf(stderr, PROG ": %s\n", err.msg);
		goto out_worker;
	}
	join_names(&ns, list, sizeof(list));
	trpc_log(TRPC_LOG_INFO,
	         PROG " %s: worker %s serving namespace(s) %s: %zu step(s) from %zu template(s)"
	              ", %zu without a handler here; concurrency %d, visibility timeout %d s",
	         PACKAGE_VERSION, wk_worker_uuid(w), list, wk_registry_count(reg), n_tpls,
	         wk_registry_unhandled(reg), cfg.concurrency, cfg.visibility_timeout_s);
	api_args = (struct worker_services_args){.rcfg = &rcfg,
	                                         .cfg = &cfg,
	                                         .worker = w,
	                                         .registry = reg,
	                                         .pool = pool,
	                                         .templates = tpls,
	                                         .n_templates = n_tpls,
	                                         .namespaces = (const char *const *)ns.v,
	                                         .n_namespaces = ns.n};
	if ((api = worker_services_start(&api_args, &err)) == NULL) {
		fprintf(stderr, PROG ": %s\n", err.msg);
		goto out_worker;
	}
	sdn_ready("serving namespace(s) %s", list);
	sdn_watchdog_start(NULL, NULL);

	reload_src.api = api;
	if (!run_until_signal(w, &set, cfg.shutdown_timeout_ms, &reload_src)) {
		wk_worker_abandon(w);
		trpc_log(TRPC_LOG_WARN, "exiting with steps given up");
		/* Handler threads may still be inside plugin code: do not free under them. */
		_exit(0);
	}
	trpc_log(TRPC_LOG_INFO, "stopped");
	rc = 0;
out_worker:
	worker_services_stop(api);
	metrics_http_stop(metrics);
	metrics_db_free(mdb);
	wk_worker_free(w);
	db_pool_free(pool);
out_reg:
	wk_registry_free(reg);
out_tpls:
	names_clear(&ns);
	tpl_free_all(tpls, n_tpls);
out_cfg:
	worker_services_stop(NULL); /* the API's settings */
	wk_settings_clear(&cfg);
	trpc_server_config_clear(&rcfg);
	free(reload_src.rest);
	trpc_config_keys_free(reload_src.keys);
	return rc;
}

/*
 * handler: the handler kinds as a table, callables resolved into handlers
 * once at start-up, and the step registry (handler.h).
 */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "worker/kinds.h"

struct wk_handler {
	const struct wk_kind *kind;
	char *callable; /* as written */
	char *base_dir; /* the directory relative paths were resolved against */
	char *path;     /* exec program or plugin file, absolute; NULL for built-ins */
	tasker_handler_fn fn;
};

/* ================================================================== kinds */

/*
 * A kind is matched by its exact name (built-ins) or by a "prefix:" (exec,
 * plugin). resolve() checks the rest of the callable and prepares the
 * handler; run() executes it.
 */
struct wk_kind {
	const char *name;
	int is_prefix;
	int (*resolve)(struct wk_registry *r, struct wk_handler *h, const char *arg,
	               struct tk_err *err);
	void (*run)(const struct wk_handler *h, const struct wk_call *call, struct wk_outcome *out);
};

static void run_noop(const struct wk_handler *h, const struct wk_call *c, struct wk_outcome *o)
{
	wk_builtin_noop(c, o);
}

static void run_echo(const struct wk_handler *h, const struct wk_call *c, struct wk_outcome *o)
{
	wk_builtin_echo(c, o);
}

static void run_sleep(const struct wk_handler *h, const struct wk_call *c, struct wk_outcome *o)
{
	wk_builtin_sleep(c, o);
}

static void run_fail(const struct wk_handler *h, const struct wk_call *c, struct wk_outcome *o)
{
	wk_builtin_fail(c, o);
}

static void run_exec(const struct wk_handler *h, const struct wk_call *c, struct wk_outcome *o)
{
	wk_exec_run(h->path, c, o);
}

static void run_plugin(const struct wk_handler *h, const struct wk_call *c, struct wk_outcome *o)
{
	wk_plugin_run(h->fn, c, o);
}

static int resolve_exec(struct wk_registry *r, struct wk_handler *h, const char *arg,
                        struct tk_err *err);
static int resolve_plugin(struct wk_registry *r, struct wk_handler *h, const char *arg,
                          struct tk_err *err);

static const struct wk_kind kinds[] = {
    {.name = "noop", .run = run_noop},
    {.name = "echo", .run = run_echo},
    {.name = "sleep", .run = run_sleep},
    {.name = "fail", .run = run_fail},
    {.name = "exec:", .is_prefix = 1, .resolve = resolve_exec, .run = run_exec},
    {.name = "plugin:", .is_prefix = 1, .resolve = resolve_plugin, .run = run_plugin},
};

static const struct wk_kind *find_kind(const char *callable, const char **arg)
{
	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
		size_t len = strlen(kinds[i].name);
		if (kinds[i].is_prefix ? strncmp(callable, kinds[i].name, len) == 0
		                       : strcmp(callable, kinds[i].name) == 0) {
			*arg = callable + len;
			return &kinds[i];
		}
	}
	return NULL;
}

void wk_handler_run(const struct wk_handler *h, const struct wk_call *call, struct wk_outcome *out)
{
	h->kind->run(h, call, out);
	if (out->status == 0) /* every run() sets one; never report an empty outcome */
		wk_outcome_fail(out, WK_ERROR, "HandlerError", 1, "handler %s returned no outcome",
		                h->callable);
}

const char *wk_handler_callable(const struct wk_handler *h)
{
	return h->callable;
}

int64_t wk_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ================================================================== registry */

struct wk_entry {
	struct wk_step_entry pub;
	char *strings; /* one block holding the four names */
};

struct wk_registry {
	struct wk_entry *entries; /* sorted by (namespace, task, version, step) */
	size_t n_entries;
	struct wk_handler **handlers; /* distinct (callable, base_dir) pairs */
	size_t n_handlers;
	struct wk_plugins *plugins;
	const struct wk_registry_config *cfg; /* during wk_registry_new only */
	size_t unhandled;
};

/* "dir/rel", or rel itself when it is absolute. Returns NULL when out of memory. */
static char *join_path(const char *dir, const char *rel)
{
	char *out;

	if (rel[0] == '/' || dir == NULL)
		return strdup(rel);
	if (asprintf(&out, "%s/%s", dir, rel) == -1)
		return NULL;
	return out;
}

static int resolve_exec(struct wk_registry *r, struct wk_handler *h, const char *arg,
                        struct tk_err *err)
{
	const char *dir = r->cfg->exec_dir != NULL ? r->cfg->exec_dir : h->base_dir;

	if (*arg == '\0')
		return tk_err_set(err, TRPC_ERR_CONFIG, "exec: needs a program path");
	if ((h->path = join_path(dir, arg)) == NULL)
		return tk_err_set(err, TRPC_ERR_NOMEM, "out of memory");
	return wk_exec_check(h->path, err);
}

static int resolve_plugin(struct wk_registry *r, struct wk_handler *h, const char *arg,
                          struct tk_err *err)
{
	const char *dir = r->cfg->plugin_dir != NULL ? r->cfg->plugin_dir : h->base_dir;
	const char *colon = strrchr(arg, ':');
	char *file;
	int rc;

	if (colon == NULL || colon == arg || colon[1] == '\0')
		return tk_err_set(err, TRPC_ERR_CONFIG, "expected plugin:<file.so>:<symbol>");
	if ((file = strndup(arg, (size_t)(colon - arg))) == NULL)
		return tk_err_set(err, TRPC_ERR_NOMEM, "out of memory");
	h->path = join_path(dir, file);
	free(file);
	if (h->path == NULL)
		return tk_err_set(err, TRPC_ERR_NOMEM, "out of memory");
	if (r->plugins == NULL && (r->plugins = wk_plugins_new()) == NULL)
		return tk_err_set(err, TRPC_ERR_NOMEM, "out of memory");
	rc = wk_plugins_symbol(r->plugins, h->path, colon + 1, &h->fn, err);
	return rc;
}

static void handler_free(struct wk_handler *h)
{
	if (h == NULL)
		return;
	free(h->callable);
	free(h->base_dir);
	free(h->path);
	free(h);
}

/* The directory of a template file, absolute. NULL when out of memory. */
static char *template_dir(const char *source)
{
	char *real = realpath(source, NULL), *slash;

	if (real == NULL) /* parsed from a string, or gone since: use it as given */
		real = strdup(source);
	if (real == NULL)
		return NULL;
	slash = strrchr(real, '/');
	if (slash == NULL) {
		free(real);
		return strdup(".");
	}
	if (slash == real)
		slash[1] = '\0';
	else
		*slash = '\0';
	return real;
}

/*
 * The handler for callable in base_dir: shared with earlier steps that name
 * the same callable from the same directory. *out is NULL when no kind
 * matches. Returns 0 or a negative code with err set.
 */
static int get_handler(struct wk_registry *r, const char *callable, const char *base_dir,
                       const struct wk_handler **out, struct tk_err *err)
{
	const struct wk_kind *kind;
	struct wk_handler *h, **grown;
	const char *arg;
	int rc;

	*out = NULL;
	if ((kind = find_kind(callable, &arg)) == NULL)
		return 0;
	for (size_t i = 0; i < r->n_handlers; i++) {
		h = r->handlers[i];
		if (strcmp(h->callable, callable) == 0 &&
		    (kind->resolve == NULL || strcmp(h->base_dir, base_dir) == 0)) {
			*out = h;
			return 0;
		}
	}
	grown = realloc(r->handlers, (r->n_handlers + 1) * sizeof(*grown));
	if (grown == NULL)
		return tk_err_set(err, TRPC_ERR_NOMEM, "out of memory");
	r->handlers = grown;
	if ((h = calloc(1, sizeof(*h))) == NULL)
		return tk_err_set(err, TRPC_ERR_NOMEM, "out of memory");
	h->kind = kind;
	h->callable = strdup(callable);
	h->base_dir = strdup(base_dir);
	if (h->callable == NULL || h->base_dir == NULL) {
		handler_free(h);
		return tk_err_set(err, TRPC_ERR_NOMEM, "out of memory");
	}
	if (kind->resolve != NULL && (rc = kind->resolve(r, h, arg, err)) != 0) {
		handler_free(h);
		return rc;
	}
	r->handlers[r->n_handlers++] = h;
	*out = h;
	return 0;
}

static int entry_cmp(const void *a, const void *b)
{
	const struct wk_step_entry *x = &((const struct wk_entry *)a)->pub;
	const struct wk_step_entry *y = &((const struct wk_entry *)b)->pub;
	int c;

	if ((c = strcmp(x->namespace_name, y->namespace_name)) != 0)
		return c;
	if ((c = strcmp(x->task_name, y->task_name)) != 0)
		return c;
	if ((c = strcmp(x->version, y->version)) != 0)
		return c;
	return strcmp(x->step_name, y->step_name);
}

/* Copies the four names into one allocation owned by e. */
static int entry_names(struct wk_entry *e, const struct tpl *t, const struct tpl_step *s)
{
	const char *src[4] = {t->namespace_name, t->name, t->version, s->name};
	const char **dst[4] = {&e->pub.namespace_name, &e->pub.task_name, &e->pub.version,
	                       &e->pub.step_name};
	size_t len = 0;
	char *p;

	for (int i = 0; i < 4; i++)
		len += strlen(src[i]) + 1;
	if ((e->strings = p = malloc(len)) == NULL)
		return TRPC_ERR_NOMEM;
	for (int i = 0; i < 4; i++) {
		size_t l = strlen(src[i]) + 1;
		memcpy(p, src[i], l);
		*dst[i] = p;
		p += l;
	}
	return 0;
}

static int serves(const struct wk_registry_config *cfg, const char *ns)
{
	if (cfg->namespaces == NULL)
		return 1;
	for (size_t i = 0; i < cfg->n_namespaces; i++)
		if (strcmp(cfg->namespaces[i], ns) == 0)
			return 1;
	return 0;
}

static int add_template(struct wk_registry *r, const struct tpl *t, struct tk_err *err)
{
	char *dir = template_dir(t->source);
	int rc = 0;

	if (dir == NULL)
		return tk_err_set(err, TRPC_ERR_NOMEM, "out of memory");
	for (size_t i = 0; i < t->n_steps && rc == 0; i++) {
		const struct tpl_step *s = &t->steps[i];
		struct wk_entry *e = &r->entries[r->n_entries];

		memset(e, 0, sizeof(*e));
		if (entry_names(e, t, s) != 0) {
			rc = tk_err_set(err, TRPC_ERR_NOMEM, "out of memory");
			break;
		}
		r->n_entries++;
		e->pub.timeout_s = s->timeout_seconds;
		rc = get_handler(r, s->handler_callable, dir, &e->pub.handler, err);
		if (rc != 0) {
			char why[sizeof(err->msg)];
			snprintf(why, sizeof(why), "%s", err->msg);
			tk_err_set(err, rc, "%s: step \"%s\": handler \"%s\": %s", t->source,
			           s->name, s->handler_callable, why);
		} else if (e->pub.handler == NULL) {
			r->unhandled++;
		}
	}
	free(dir);
	return rc;
}

int wk_registry_new(struct tpl *const *tpls, size_t n, const struct wk_registry_config *cfg,
                    struct wk_registry **out, struct tk_err *err)
{
	struct wk_registry *r;
	size_t total = 0;
	int rc = 0;

	if ((r = calloc(1, sizeof(*r))) == NULL)
		return tk_err_set(err, TRPC_ERR_NOMEM, "out of memory");
	r->cfg = cfg;
	for (size_t i = 0; i < n; i++)
		if (serves(cfg, tpls[i]->namespace_name))
			total += tpls[i]->n_steps;
	if (total > 0 && (r->entries = calloc(total, sizeof(*r->entries))) == NULL)
		rc = tk_err_set(err, TRPC_ERR_NOMEM, "out of memory");
	for (size_t i = 0; i < n && rc == 0; i++)
		if (serves(cfg, tpls[i]->namespace_name))
			rc = add_template(r, tpls[i], err);
	if (rc != 0) {
		wk_registry_free(r);
		return rc;
	}
	if (r->n_entries > 1)
		qsort(r->entries, r->n_entries, sizeof(*r->entries), entry_cmp);
	r->cfg = NULL;
	*out = r;
	return 0;
}

void wk_registry_free(struct wk_registry *r)
{
	if (r == NULL)
		return;
	for (size_t i = 0; i < r->n_entries; i++)
		free(r->entries[i].strings);
	free(r->entries);
	for (size_t i = 0; i < r->n_handlers; i++)
		handler_free(r->handlers[i]);
	free(r->handlers);
	wk_plugins_free(r->plugins);
	free(r);
}

const struct wk_step_entry *wk_registry_find(const struct wk_registry *r,
                                             const char *namespace_name, const char *task_name,
                                             const char *version, const char *step_name)
{
	struct wk_entry key = {.pub = {.namespace_name = namespace_name,
	                               .task_name = task_name,
	                               .version = version,
	                               .step_name = step_name}};
	const struct wk_entry *e;

	if (r->n_entries == 0)
		return NULL;
	e = bsearch(&key, r->entries, r->n_entries, sizeof(*r->entries), entry_cmp);
	return e != NULL ? &e->pub : NULL;
}

size_t wk_registry_count(const struct wk_registry *r)
{
	return r->n_entries;
}

size_t wk_registry_unhandled(const struct wk_registry *r)
{
	return r->unhandled;
}

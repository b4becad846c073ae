/*
 * template: task templates (YAML) parsed into structs the engine uses to
 * create tasks, plus the whole template as JSON for
 * named_tasks.configuration.
 *
 * A template is parsed in two passes: libyaml turns the text into a jansson
 * value (YAML 1.2 core schema for plain scalars: 12 -> integer, 1.5 ->
 * real, true -> boolean, ~ -> null; quoted scalars stay strings), then the
 * value is checked and copied into struct tpl. Validation errors name the
 * file, the step and the problem, for example
 *
 *     etc/x.yaml: step "step_b": depends on unknown step "step_z"
 *     etc/x.yaml: line 12 column 3: YAML syntax error: ...
 *
 * Accepted aliases: step `step_type` for `type`, `depends_on` for
 * `dependencies`, `retry.limit` for `retry.max_attempts`; giving both
 * spellings with different values is an error. A key whose value is null
 * (`description:` with nothing after it) counts as absent. Unknown keys are
 * kept in `config`; known keys with a wrong type are errors.
 *
 * Environment overrides: with a non-NULL `environment`, the entries of
 * `environments.<environment>.steps` are applied -- first every entry
 * named "ALL", then the entries naming one step, each group in file order.
 * An entry can merge keys into handler.initialization (one level: a key in
 * the override replaces the key in the step), and replace timeout_seconds
 * and any retry field. Blocks for other environments are checked but not
 * applied.
 *
 * Nothing here keeps state between calls; the functions are safe to call
 * from several threads at once.
 */
#ifndef TK_ENGINE_TEMPLATE_H
#define TK_ENGINE_TEMPLATE_H

#include <stddef.h>

#include <jansson.h>

#include "store/err.h"

/* Limits. A file or a document past them is refused with
 * TRPC_ERR_TOO_LARGE. Nodes count alias expansions, so a small file cannot
 * expand into a huge value. */
#define TPL_MAX_FILE_BYTES (4 * 1024 * 1024)
#define TPL_MAX_NODES      200000
#define TPL_MAX_DEPTH      64

struct tpl_step {
	char *name;        /* snake_case, at most 128 bytes */
	char *description; /* NULL if absent */
	char *type; /* standard | decision | deferred_convergence | batchable | batch_worker */
	char *handler_callable;
	char *handler_method;   /* NULL if absent */
	char *handler_resolver; /* NULL if absent */
	json_t *initialization; /* object, never NULL: the step's inputs */
	char **dependencies;    /* names of parent steps, in file order */
	size_t n_dependencies;
	int retryable;                       /* default 1 */
	int max_attempts;                    /* 1..100, default 3 */
	char *backoff;                       /* none | linear | exponential (default) | fibonacci */
	int backoff_base_ms, max_backoff_ms; /* 0..3600000, defaults 1000 and 30000 */
	int timeout_seconds;                 /* 1..3600, 0 = unset */
};

struct tpl {
	char *name;              /* snake_case, at most 64 bytes */
	char *namespace_name;    /* snake_case, at most 64 bytes */
	char *version;           /* x.y.z, at most 16 bytes */
	char *description;       /* NULL if absent */
	char *identity_strategy; /* strict (default) | caller_provided | always_unique */
	struct tpl_step *steps;  /* at least one */
	size_t n_steps;
	json_t *lifecycle; /* object or NULL */
	/* The effective template: the document with aliases replaced by the
	 * canonical keys, defaults filled in (step type, retry, handler
	 * initialization, identity_strategy) and the selected environment's
	 * overrides applied; every other key as written. */
	json_t *config;
	char *source; /* the file path, or the source name given to tpl_parse_string */
};

/*
 * Parses the template in the file at `path`, applying the overrides of
 * `environment` (may be NULL: none). On success *out is a new template the
 * caller frees with tpl_free. Returns 0, or:
 *   TRPC_ERR_SYSTEM    the file cannot be opened or read, or is not a regular file
 *   TRPC_ERR_TOO_LARGE the file or its expanded document exceeds the limits above
 *   TRPC_ERR_INVALID   YAML syntax error or a validation error
 *   TRPC_ERR_NOMEM     out of memory
 * with the message in *err (may be NULL). *out is untouched on error.
 */
int tpl_parse_file(const char *path, const char *environment, struct tpl **out, struct tk_err *err);

/*
 * As tpl_parse_file, for `len` bytes at `yaml` (need not be NUL-terminated).
 * `source_name` prefixes error messages and becomes tpl->source; NULL means
 * "<string>". Returns 0, TRPC_ERR_TOO_LARGE, TRPC_ERR_INVALID or
 * TRPC_ERR_NOMEM.
 */
int tpl_parse_string(const char *yaml, size_t len, const char *source_name, const char *environment,
                     struct tpl **out, struct tk_err *err);

/*
 * Parses every *.yml and *.yaml file under the colon-separated directories
 * `dirs`, recursively. Names starting with "." are skipped (editor files,
 * and the "..data" links of Kubernetes volumes; the files those links
 * point to are reached through the visible links). Each directory is read
 * in byte order of its entries and the directories of `dirs` in the given
 * order, so the result is the same on every run. A file or directory met
 * twice (through symbolic links) is read once. An element of `dirs` that
 * is a file is parsed as a template whatever its name; an empty element
 * is ignored.
 *
 * On success *out is an array of *n templates (NULL when *n is 0) the caller
 * frees with tpl_free_all. Stops at the first error: anything tpl_parse_file
 * returns, TRPC_ERR_SYSTEM for a directory that cannot be read (a missing one
 * included), and TRPC_ERR_INVALID when two files define the same
 * namespace/name/version (the message names both files).
 */
int tpl_discover(const char *dirs, const char *environment, struct tpl ***out, size_t *n,
                 struct tk_err *err);

/* Frees a template and everything it owns. NULL is allowed. */
void tpl_free(struct tpl *t);

/* Frees the n templates of list and list itself (as returned by tpl_discover). */
void tpl_free_all(struct tpl **list, size_t n);

/* The step called `name`, or NULL. */
const struct tpl_step *tpl_step(const struct tpl *t, const char *name);

/*
 * Fills order[0 .. t->n_steps - 1] with step indexes such that every step
 * comes after the steps it depends on; among steps that are ready at the
 * same time the one declared first comes first, so the order is stable.
 * Returns 0, TRPC_ERR_INVALID if a dependency names no step or the
 * dependencies form a cycle (never for a template from the parser), or
 * TRPC_ERR_NOMEM.
 */
int tpl_topo_order(const struct tpl *t, size_t *order);

#endif

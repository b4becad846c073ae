/*
 * Unit tests for src/engine/template.c: the example templates, defaults,
 * aliases, environment overrides, YAML scalar resolution and anchors,
 * every validation error with its exact message, discovery, the
 * topological order, and robustness (truncated and mutated input, failed
 * allocations).
 *
 * Fixtures live in t/templates/ (good/, bad/, discover/) and the examples
 * in etc/templates/; both are found through $TOP_SRCDIR or by looking
 * upwards from the current directory.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/template.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#define HEAD     "name: t\nnamespace_name: tests\nversion: 1.0.0\n"
#define ONE_STEP "steps:\n  - name: a\n    handler: {callable: noop}\n"

/* ------------------------------------------------------------------ fixtures */

static char top[PATH_MAX];

static int find_top(void **state)
{
	static const char *const guesses[] = {".", "..", "../..", "../../.."};
	const char *env = getenv("TOP_SRCDIR");
	char probe[PATH_MAX + 64];

	(void)state;
	if (env != NULL && *env != '\0') {
		snprintf(top, sizeof(top), "%s", env);
		return 0;
	}
	for (size_t i = 0; i < ARRAY_LEN(guesses); i++) {
		snprintf(probe, sizeof(probe), "%s/t/templates/good/aliases.yaml", guesses[i]);
		if (access(probe, R_OK) == 0) {
			snprintf(top, sizeof(top), "%s", guesses[i]);
			return 0;
		}
	}
	fprintf(stderr, "cannot find t/templates: set TOP_SRCDIR\n");
	return -1;
}

/* The path of a file in the source tree. Two rotating buffers, so that
 * two paths can be used in one expression. */
static const char *src_path(const char *rel)
{
	static char bufs[2][PATH_MAX + 256];
	static int next;
	char *b = bufs[next++ % 2];

	/* Paths here are short; a cut one only makes a test fail. */
	int n = snprintf(b, sizeof(bufs[0]), "%s/%.255s", top, rel);
	(void)n;
	return b;
}

static const char *fixture(const char *rel)
{
	char tmp[PATH_MAX];

	snprintf(tmp, sizeof(tmp), "t/templates/%s", rel);
	return src_path(tmp);
}

static struct tpl *parse_ok(const char *path, const char *env)
{
	struct tk_err e = {0};
	struct tpl *t = NULL;
	int rc = tpl_parse_file(path, env, &t, &e);

	if (rc != 0)
		fail_msg("%s: unexpected error %d: %s", path, rc, e.msg);
	return t;
}

static struct tpl *parse_str_ok(const char *yaml, const char *env)
{
	struct tk_err e = {0};
	struct tpl *t = NULL;
	int rc = tpl_parse_string(yaml, strlen(yaml), "inline.yaml", env, &t, &e);

	if (rc != 0)
		fail_msg("unexpected error %d: %s", rc, e.msg);
	return t;
}

/* Asserts code and the exact message, given as printf arguments. */
static void __attribute__((format(printf, 4, 5)))
assert_err(int rc, const struct tk_err *e, int code, const char *fmt, ...)
{
	char want[sizeof(e->msg)];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(want, sizeof(want), fmt, ap);
	va_end(ap);
	assert_string_equal(e->msg, want);
	assert_int_equal(rc, code);
	assert_int_equal(e->code, code);
}

static const char *str_at(const json_t *obj, const char *key)
{
	const json_t *j = json_object_get(obj, key);

	assert_non_null(j);
	assert_true(json_is_string(j));
	return json_string_value(j);
}

static json_int_t int_at(const json_t *obj, const char *key)
{
	const json_t *j = json_object_get(obj, key);

	assert_non_null(j);
	assert_true(json_is_integer(j));
	return json_integer_value(j);
}

static const struct tpl_step *step_of(const struct tpl *t, const char *name)
{
	const struct tpl_step *st = tpl_step(t, name);

	assert_non_null(st);
	return st;
}

static void assert_deps(const struct tpl_step *st, size_t n, ...)
{
	va_list ap;

	assert_int_equal(st->n_dependencies, n);
	va_start(ap, n);
	for (size_t i = 0; i < n; i++)
		assert_string_equal(st->dependencies[i], va_arg(ap, const char *));
	va_end(ap);
}

static void assert_retry(const struct tpl_step *st, int retryable, int max_attempts,
                         const char *backoff, int base, int max)
{
	assert_int_equal(st->retryable, retryable);
	assert_int_equal(st->max_attempts, max_attempts);
	assert_string_equal(st->backoff, backoff);
	assert_int_equal(st->backoff_base_ms, base);
	assert_int_equal(st->max_backoff_ms, max);
}

static char *read_all(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf;
	long n;

	assert_non_null(f);
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	n = ftell(f);
	rewind(f);
	buf = malloc((size_t)n + 1);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
	buf[n] = '\0';
	fclose(f);
	*len = (size_t)n;
	return buf;
}

/* ------------------------------------------------------------------ examples */

static void test_diamond_example(void **state)
{
	const char *path = src_path("etc/templates/integration/diamond_workflow.yaml");
	struct tpl *t = parse_ok(path, NULL);
	const struct tpl_step *a, *d;
	const json_t *cfg_steps;

	(void)state;
	assert_string_equal(t->name, "diamond_workflow");
	assert_string_equal(t->namespace_name, "integration");
	assert_string_equal(t->version, "1.0.0");
	assert_string_equal(t->identity_strategy, "strict");
	assert_string_equal(t->source, path);
	assert_non_null(t->description);
	assert_null(t->lifecycle);
	assert_int_equal(t->n_steps, 4);
	assert_string_equal(t->steps[0].name, "step_a");
	assert_string_equal(t->steps[3].name, "step_d");

	a = step_of(t, "step_a");
	assert_deps(a, 0);
	assert_deps(step_of(t, "step_b"), 1, "step_a");
	assert_deps(step_of(t, "step_c"), 1, "step_a");
	d = step_of(t, "step_d");
	assert_deps(d, 2, "step_b", "step_c");
	for (size_t i = 0; i < t->n_steps; i++) {
		assert_string_equal(t->steps[i].handler_callable, "echo");
		assert_null(t->steps[i].handler_method);
		assert_null(t->steps[i].handler_resolver);
		assert_string_equal(t->steps[i].type, "standard");
		assert_retry(&t->steps[i], 1, 3, "exponential", 1000, 30000);
		assert_true(t->steps[i].timeout_seconds >= 30 && t->steps[i].timeout_seconds <= 60);
	}
	assert_string_equal(str_at(a->initialization, "operation"), "start");
	assert_null(json_object_get(a->initialization, "debug"));
	assert_int_equal(d->timeout_seconds, 60);

	/* the configuration is the template, with its steps in order */
	assert_string_equal(str_at(t->config, "name"), "diamond_workflow");
	cfg_steps = json_object_get(t->config, "steps");
	assert_int_equal(json_array_size(cfg_steps), 4);
	assert_string_equal(str_at(json_array_get(cfg_steps, 3), "name"), "step_d");
	assert_non_null(json_object_get(t->config, "environments"));
	tpl_free(t);

	/* the test environment adds debug everywhere and tightens step_d */
	t = parse_ok(path, "test");
	for (size_t i = 0; i < t->n_steps; i++)
		assert_true(json_is_true(json_object_get(t->steps[i].initialization, "debug")));
	d = step_of(t, "step_d");
	assert_int_equal(d->timeout_seconds, 10);
	assert_retry(d, 1, 1, "exponential", 1000, 30000);
	assert_string_equal(str_at(d->initialization, "operation"), "join");
	tpl_free(t);
}

static void test_linear_example(void **state)
{
	struct tpl *t = parse_ok(src_path("etc/templates/integration/linear_workflow.yaml"), NULL);
	size_t order[4];

	(void)state;
	assert_string_equal(t->name, "linear_workflow");
	assert_int_equal(t->n_steps, 4);
	assert_deps(step_of(t, "step_1"), 0);
	assert_deps(step_of(t, "step_2"), 1, "step_1");
	assert_deps(step_of(t, "step_3"), 1, "step_2");
	assert_deps(step_of(t, "step_4"), 1, "step_3");
	for (size_t i = 0; i < t->n_steps; i++) {
		assert_string_equal(t->steps[i].handler_callable, "noop");
		assert_int_equal(json_object_size(t->steps[i].initialization), 0);
	}
	assert_int_equal(tpl_topo_order(t, order), 0);
	for (size_t i = 0; i < 4; i++)
		assert_int_equal(order[i], i);
	tpl_free(t);
}

/* ------------------------------------------------------------------ defaults */

static void test_defaults(void **state)
{
	struct tpl *t = parse_str_ok(HEAD ONE_STEP, NULL);
	const struct tpl_step *st = &t->steps[0];
	const json_t *cs = json_array_get(json_object_get(t->config, "steps"), 0);
	const json_t *retry = json_object_get(cs, "retry");

	(void)state;
	assert_string_equal(t->source, "inline.yaml");
	assert_null(t->description);
	assert_string_equal(t->identity_strategy, "strict");
	assert_null(t->lifecycle);
	assert_string_equal(st->type, "standard");
	assert_retry(st, 1, 3, "exponential", 1000, 30000);
	assert_int_equal(st->timeout_seconds, 0);
	assert_null(st->description);
	assert_non_null(st->initialization);
	assert_true(json_is_object(st->initialization));
	assert_int_equal(st->n_dependencies, 0);
	assert_null(st->dependencies);

	/* the defaults are written into the configuration too */
	assert_string_equal(str_at(t->config, "identity_strategy"), "strict");
	assert_string_equal(str_at(cs, "type"), "standard");
	assert_int_equal(json_array_size(json_object_get(cs, "dependencies")), 0);
	assert_true(json_is_true(json_object_get(retry, "retryable")));
	assert_int_equal(int_at(retry, "max_attempts"), 3);
	assert_string_equal(str_at(retry, "backoff"), "exponential");
	assert_int_equal(int_at(retry, "backoff_base_ms"), 1000);
	assert_int_equal(int_at(retry, "max_backoff_ms"), 30000);
	assert_true(
	    json_is_object(json_object_get(json_object_get(cs, "handler"), "initialization")));
	assert_null(json_object_get(cs, "timeout_seconds"));
	tpl_free(t);

	/* a key with no value counts as absent */
	t = parse_str_ok(HEAD "description:\nsteps:\n  - name: a\n    dependencies:\n    retry:\n"
	                      "    handler: {callable: noop, initialization: }\n",
	                 NULL);
	assert_null(t->description);
	assert_int_equal(t->steps[0].n_dependencies, 0);
	assert_int_equal(t->steps[0].max_attempts, 3);
	assert_int_equal(json_object_size(t->steps[0].initialization), 0);
	tpl_free(t);

	/* source name NULL */
	{
		struct tk_err e = {0};
		int rc = tpl_parse_string(HEAD ONE_STEP, strlen(HEAD ONE_STEP), NULL, NULL, &t, &e);

		assert_int_equal(rc, 0);
		assert_string_equal(t->source, "<string>");
		tpl_free(t);
		rc = tpl_parse_string("name: 1", 7, NULL, NULL, &t, &e);
		assert_err(rc, &e, TRPC_ERR_INVALID,
		           "<string>: name: expected a string, got an integer 1");
	}
}

/* ------------------------------------------------------------------ bad files */

static const struct {
	const char *file;
	const char *env;
	const char *msg; /* after "<path>: " */
} bad_files[] = {
    {"unknown_dependency.yaml", NULL, "step \"step_b\": depends on unknown step \"step_z\""},
    {"duplicate_step.yaml", NULL, "duplicate step name \"step_a\""},
    {"cycle.yaml", NULL, "dependency cycle: step_a -> step_b -> step_a"},
    {"cycle_of_three.yaml", NULL, "dependency cycle: step_b -> step_c -> step_a -> step_b"},
    {"self_dependency.yaml", NULL, "dependency cycle: step_a -> step_a"},
    {"version_string.yaml", NULL, "version \"1.0\" is not x.y.z"},
    {"version_number.yaml", NULL, "version \"1.10\" is not x.y.z"},
    {"version_missing.yaml", NULL, "version is required"},
    {"max_attempts.yaml", NULL, "step \"s\": retry.max_attempts 0 out of range 1..100"},
    {"limit_range.yaml", NULL, "step \"s\": retry.limit 101 out of range 1..100"},
    {"limit_conflict.yaml", NULL, "step \"s\": retry.max_attempts 3 and retry.limit 5 disagree"},
    {"type_conflict.yaml", NULL,
     "step \"s\": type \"decision\" and step_type \"standard\" disagree"},
    {"deps_conflict.yaml", NULL, "step \"s\": dependencies and depends_on disagree"},
    {"template_name.yaml", NULL, "name \"Bad Name\" is not snake_case"},
    {"namespace_name.yaml", NULL, "namespace_name \"Tests\" is not snake_case"},
    {"step_name.yaml", NULL, "steps[1]: name \"stepB\" is not snake_case"},
    {"steps_not_list.yaml", NULL, "steps: expected a list, got a mapping"},
    {"steps_empty.yaml", NULL, "steps is empty"},
    {"retryable_yes.yaml", NULL,
     "step \"s\": retry.retryable: expected a boolean, got a string \"yes\""},
    {"handler_missing.yaml", NULL, "step \"s\": handler is required"},
    {"callable_missing.yaml", NULL, "step \"s\": handler.callable is required"},
    {"step_type.yaml", NULL,
     "step \"s\": type \"parallel\" is not one of standard, decision, deferred_convergence, "
     "batchable, batch_worker"},
    {"backoff.yaml", NULL,
     "step \"s\": retry.backoff \"quadratic\" is not one of none, linear, exponential, "
     "fibonacci"},
    {"backoff_base_above_max.yaml", NULL,
     "step \"s\": retry.backoff_base_ms 5000 exceeds retry.max_backoff_ms 1000"},
    {"timeout.yaml", NULL, "step \"s\": timeout_seconds 3601 out of range 1..3600"},
    {"timeout_real.yaml", NULL,
     "step \"s\": timeout_seconds: expected an integer, got a number 1.5"},
    {"duplicate_dependency.yaml", NULL, "step \"b\": dependency \"a\" listed twice"},
    {"dependency_not_string.yaml", NULL,
     "step \"b\": dependencies[1]: expected a string, got a mapping"},
    {"identity_strategy.yaml", NULL,
     "identity_strategy \"sometimes\" is not one of strict, caller_provided, always_unique"},
    {"lifecycle.yaml", NULL, "lifecycle.max_waiting_for_retry_minutes 0 out of range 1..525600"},
    {"env_unknown_step.yaml", NULL, "environments.staging: steps[0]: unknown step \"b\""},
    {"env_bad_retry.yaml", "test",
     "environments.production: step \"a\": retry.max_attempts 0 out of range 1..100"},
    {"env_callable.yaml", "test",
     "environments.test: step \"a\": handler.callable cannot be overridden per environment"},
    {"duplicate_key.yaml", NULL, "line 8 column 5: duplicate key \"timeout_seconds\""},
    {"two_documents.yaml", NULL, "line 7 column 1: more than one YAML document"},
    {"empty.yaml", NULL, "the document is empty"},
    {"not_mapping.yaml", NULL, "expected a mapping at the top level, got a list"},
    {"unknown_anchor.yaml", NULL, "line 6 column 14: unknown anchor \"nowhere\""},
    {"syntax_error.yaml", NULL,
     "line 12 column 3: YAML syntax error: did not find expected '-' indicator (while parsing "
     "a block collection at line 7 column 3)"},
};

static void test_bad_files(void **state)
{
	(void)state;
	for (size_t i = 0; i < ARRAY_LEN(bad_files); i++) {
		char rel[128];
		const char *path;
		struct tk_err e = {0};
		struct tpl *t = NULL;
		int rc;

		snprintf(rel, sizeof(rel), "bad/%s", bad_files[i].file);
		path = fixture(rel);
		rc = tpl_parse_file(path, bad_files[i].env, &t, &e);
		assert_null(t);
		assert_err(rc, &e, TRPC_ERR_INVALID, "%s: %s", path, bad_files[i].msg);
	}
}

/* Every file in t/templates/bad/ has a row above. */
static void test_bad_files_all_listed(void **state)
{
	DIR *d = opendir(fixture("bad"));
	struct dirent *de;
	size_t n = 0;

	(void)state;
	assert_non_null(d);
	while ((de = readdir(d)) != NULL) {
		int found = 0;

		if (de->d_name[0] == '.')
			continue;
		for (size_t i = 0; i < ARRAY_LEN(bad_files); i++)
			found |= strcmp(bad_files[i].file, de->d_name) == 0;
		if (!found)
			fail_msg("t/templates/bad/%s has no expected message", de->d_name);
		n++;
	}
	closedir(d);
	assert_int_equal(n, ARRAY_LEN(bad_files));
}

/* ------------------------------------------------------------------ inline errors */

static const struct {
	const char *yaml;
	int code;
	const char *msg; /* after "inline.yaml: " */
} bad_strings[] = {
    {"name: 5\n", TRPC_ERR_INVALID, "name: expected a string, got an integer 5"},
    {"name:\n", TRPC_ERR_INVALID, "name is required"},
    {"name: t\nnamespace_name: tests\nversion: [1]\n", TRPC_ERR_INVALID,
     "version: expected a string, got a list"},
    {"name: t\nnamespace_name: tests\nversion: true\n" ONE_STEP, TRPC_ERR_INVALID,
     "version \"true\" is not x.y.z"},
    {"name: t\nnamespace_name: tests\nversion: 1.2.3.4\n" ONE_STEP, TRPC_ERR_INVALID,
     "version \"1.2.3.4\" is not x.y.z"},
    {"name: t\nnamespace_name: tests\nversion: 1.x.3\n" ONE_STEP, TRPC_ERR_INVALID,
     "version \"1.x.3\" is not x.y.z"},
    {"name: t\nnamespace_name: tests\nversion: 123456.123456.12345\n" ONE_STEP, TRPC_ERR_INVALID,
     "version \"123456.123456.12345\" is longer than 16 bytes"},
    {"name: 9lives\nnamespace_name: tests\nversion: 1.0.0\n" ONE_STEP, TRPC_ERR_INVALID,
     "name \"9lives\" is not snake_case"},
    {"name: \"\"\nnamespace_name: tests\nversion: 1.0.0\n" ONE_STEP, TRPC_ERR_INVALID,
     "name \"\" is not snake_case"},
    {"name: a_name_that_is_longer_than_sixty_four_bytes_which_is_the_column_size_\n"
     "namespace_name: tests\nversion: 1.0.0\n" ONE_STEP,
     TRPC_ERR_INVALID,
     "name \"a_name_that_is_longer_than_sixty_four_by...\" is longer than 64 bytes"},
    {HEAD "steps: [oops]\n", TRPC_ERR_INVALID,
     "steps[0]: expected a mapping, got a string \"oops\""},
    {HEAD "steps:\n  - handler: {callable: x}\n", TRPC_ERR_INVALID, "steps[0]: name is required"},
    {HEAD "steps:\n  - name: a\n    handler: echo\n", TRPC_ERR_INVALID,
     "step \"a\": handler: expected a mapping, got a string \"echo\""},
    {HEAD "steps:\n  - name: a\n    handler: {callable: ''}\n", TRPC_ERR_INVALID,
     "step \"a\": handler.callable is empty"},
    {HEAD "steps:\n  - name: a\n    handler: {callable: [x]}\n", TRPC_ERR_INVALID,
     "step \"a\": handler.callable: expected a string, got a list"},
    {HEAD "steps:\n  - name: a\n    handler: {callable: x, initialization: [1]}\n",
     TRPC_ERR_INVALID, "step \"a\": handler.initialization: expected a mapping, got a list"},
    {HEAD "steps:\n  - name: a\n    handler: {callable: x}\n  - name: b\n    dependencies: a\n"
          "    handler: {callable: x}\n",
     TRPC_ERR_INVALID, "step \"b\": dependencies: expected a list of strings, got a string \"a\""},
    {HEAD "steps:\n  - name: a\n    handler: {callable: x}\n    retry: 3\n", TRPC_ERR_INVALID,
     "step \"a\": retry: expected a mapping, got an integer 3"},
    {HEAD "steps:\n  - name: a\n    handler: {callable: x}\n    retry: {max_attempts: \"3\"}\n",
     TRPC_ERR_INVALID, "step \"a\": retry.max_attempts: expected an integer, got a string \"3\""},
    {HEAD "steps:\n  - name: a\n    handler: {callable: x}\n    retry: {backoff_base_ms: -1}\n",
     TRPC_ERR_INVALID, "step \"a\": retry.backoff_base_ms -1 out of range 0..3600000"},
    {HEAD "steps:\n  - name: a\n    handler: {callable: x}\n    timeout_seconds: 0\n",
     TRPC_ERR_INVALID, "step \"a\": timeout_seconds 0 out of range 1..3600"},
    {HEAD "steps:\n  - name: a\n    handler: {callable: x}\n    result_schema: 1\n",
     TRPC_ERR_INVALID,
     "step \"a\": result_schema: expected a mapping or a boolean, got an "
     "integer 1"},
    {HEAD "metadata: {tags: x}\n" ONE_STEP, TRPC_ERR_INVALID,
     "metadata.tags: expected a list of strings, got a string \"x\""},
    {HEAD "system_dependencies: {secondary: [1]}\n" ONE_STEP, TRPC_ERR_INVALID,
     "system_dependencies.secondary[0]: expected a string, got an integer 1"},
    {HEAD "lifecycle: {auto_fail_on_timeout: 1}\n" ONE_STEP, TRPC_ERR_INVALID,
     "lifecycle.auto_fail_on_timeout: expected a boolean, got an integer 1"},
    {HEAD "environments: [test]\n" ONE_STEP, TRPC_ERR_INVALID,
     "environments: expected a mapping, got a list"},
    {HEAD ONE_STEP "environments: {test: [x]}\n", TRPC_ERR_INVALID,
     "environments.test: expected a mapping, got a list"},
    {HEAD ONE_STEP "environments: {test: {steps: [x]}}\n", TRPC_ERR_INVALID,
     "environments.test: steps[0]: expected a mapping, got a string \"x\""},
    {HEAD ONE_STEP "environments: {test: {steps: [{timeout_seconds: 3}]}}\n", TRPC_ERR_INVALID,
     "environments.test: steps[0]: name is required"},
    {HEAD ONE_STEP "environments: {test: {steps: [{name: a, retry: {backoff: x}}]}}\n",
     TRPC_ERR_INVALID,
     "environments.test: step \"a\": retry.backoff \"x\" is not one of none, linear, "
     "exponential, fibonacci"},
    {HEAD ONE_STEP "environments: {test: {steps: [{name: ALL, retry: {limit: 2, max_attempts: "
                   "3}}]}}\n",
     TRPC_ERR_INVALID,
     "environments.test: step \"ALL\": retry.max_attempts 3 and retry.limit 2 "
     "disagree"},
    {HEAD ONE_STEP "environments: {test: {steps: [{name: a, handler: {initialization: 1}}]}}\n",
     TRPC_ERR_INVALID,
     "environments.test: step \"a\": handler.initialization: expected a mapping, got an "
     "integer 1"},
    /* YAML level */
    {"hello\n", TRPC_ERR_INVALID, "expected a mapping at the top level, got a string \"hello\""},
    {"", TRPC_ERR_INVALID, "the document is empty"},
    {"---\n...\n", TRPC_ERR_INVALID, "expected a mapping at the top level, got null"},
    {"a: !!int abc\n", TRPC_ERR_INVALID, "line 1 column 4: \"abc\" is not a valid !!int"},
    {"a: !!bool yes\n", TRPC_ERR_INVALID, "line 1 column 4: \"yes\" is not a valid !!bool"},
    {"a: \"x\\0y\"\n", TRPC_ERR_INVALID, "line 1 column 4: NUL character in a scalar"},
    {"x: &k key\n*k : 1\n", TRPC_ERR_INVALID, "line 2 column 1: an alias cannot be a mapping key"},
    {"? [a, b]\n: 1\n", TRPC_ERR_INVALID, "line 1 column 3: a mapping key must be a scalar"},
    {"a: &x 1\nb:\n  <<: *x\n", TRPC_ERR_INVALID,
     "line 3 column 7: a merge key (<<) takes a mapping or a list of mappings"},
    {"a: &x [1, *x]\n", TRPC_ERR_INVALID, "line 1 column 11: unknown anchor \"x\""},
    {"a: \xff\n", TRPC_ERR_INVALID, "byte 3: YAML syntax error: invalid leading UTF-8 octet"},
    {"a: [1, 2\nb: 3\n", TRPC_ERR_INVALID,
     "line 2 column 2: YAML syntax error: did not find expected ',' or ']' (while parsing a "
     "flow sequence at line 1 column 4)"},
};

static void test_inline_errors(void **state)
{
	(void)state;
	for (size_t i = 0; i < ARRAY_LEN(bad_strings); i++) {
		struct tk_err e = {0};
		struct tpl *t = NULL;
		const char *y = bad_strings[i].yaml;
		int rc = tpl_parse_string(y, strlen(y), "inline.yaml", NULL, &t, &e);

		assert_null(t);
		assert_err(rc, &e, bad_strings[i].code, "inline.yaml: %s", bad_strings[i].msg);
	}
}

static void test_long_step_name(void **state)
{
	char yaml[512], name[140];
	struct tk_err e = {0};
	struct tpl *t = NULL;
	int rc;

	(void)state;
	memset(name, 'a', 128);
	name[128] = '\0';
	snprintf(yaml, sizeof(yaml), HEAD "steps:\n  - name: %s\n    handler: {callable: x}\n",
	         name);
	t = parse_str_ok(yaml, NULL);
	assert_int_equal(strlen(t->steps[0].name), 128);
	tpl_free(t);

	strcat(name, "a");
	snprintf(yaml, sizeof(yaml), HEAD "steps:\n  - name: %s\n    handler: {callable: x}\n",
	         name);
	rc = tpl_parse_string(yaml, strlen(yaml), "inline.yaml", NULL, &t, &e);
	assert_err(rc, &e, TRPC_ERR_INVALID,
	           "inline.yaml: steps[0]: name \"%.40s...\" is longer than 128 bytes", name);
}

/* ------------------------------------------------------------------ aliases */

static void test_aliases(void **state)
{
	struct tpl *t = parse_ok(fixture("good/aliases.yaml"), NULL);
	const struct tpl_step *a = step_of(t, "step_a"), *b = step_of(t, "step_b"),
	                      *c = step_of(t, "step_c");
	const json_t *steps = json_object_get(t->config, "steps");

	(void)state;
	assert_string_equal(a->type, "decision");
	assert_int_equal(a->max_attempts, 7);
	assert_string_equal(b->type, "standard");
	assert_deps(b, 1, "step_a");
	assert_string_equal(c->type, "batchable");
	assert_deps(c, 2, "step_a", "step_b");
	assert_int_equal(c->max_attempts, 2);

	/* the configuration uses the canonical spellings only */
	for (size_t i = 0; i < json_array_size(steps); i++) {
		const json_t *s = json_array_get(steps, i);

		assert_null(json_object_get(s, "step_type"));
		assert_null(json_object_get(s, "depends_on"));
		assert_null(json_object_get(json_object_get(s, "retry"), "limit"));
		assert_non_null(json_object_get(s, "type"));
		assert_non_null(json_object_get(s, "dependencies"));
	}
	assert_string_equal(str_at(json_array_get(steps, 0), "type"), "decision");
	assert_int_equal(int_at(json_object_get(json_array_get(steps, 0), "retry"), "max_attempts"),
	                 7);
	assert_string_equal(json_string_value(json_array_get(
	                        json_object_get(json_array_get(steps, 1), "dependencies"), 0)),
	                    "step_a");
	tpl_free(t);
}

/* ------------------------------------------------------------------ environments */

static void test_env_overrides(void **state)
{
	const char *path = fixture("good/env_overrides.yaml");
	struct tpl *t;
	const struct tpl_step *a, *b;
	const json_t *cs;

	(void)state;
	/* no environment: the template as written */
	t = parse_ok(path, NULL);
	a = step_of(t, "step_a");
	b = step_of(t, "step_b");
	assert_string_equal(t->version, "2.3.4");
	assert_false(json_is_true(json_object_get(a->initialization, "debug")));
	assert_int_equal(a->timeout_seconds, 60);
	assert_int_equal(b->timeout_seconds, 0);
	assert_retry(b, 1, 5, "linear", 1000, 30000);
	assert_int_equal(int_at(b->initialization, "fail_times"), 2);
	tpl_free(t);

	/* test: ALL first, then step_b's own entry wins over it */
	t = parse_ok(path, "test");
	a = step_of(t, "step_a");
	b = step_of(t, "step_b");
	assert_true(json_is_true(json_object_get(a->initialization, "debug")));
	assert_string_equal(str_at(a->initialization, "url"), "https://example.com/a");
	assert_int_equal(a->timeout_seconds, 5);
	assert_retry(a, 1, 3, "exponential", 1000, 30000);
	assert_true(json_is_false(json_object_get(b->initialization, "debug")));
	assert_int_equal(int_at(b->initialization, "fail_times"), 2);
	assert_true(json_is_true(json_object_get(b->initialization, "retryable")));
	assert_int_equal(b->timeout_seconds, 5);
	assert_retry(b, 1, 9, "linear", 10, 100);
	/* and the configuration shows the effective values */
	cs = json_array_get(json_object_get(t->config, "steps"), 1);
	assert_int_equal(int_at(cs, "timeout_seconds"), 5);
	assert_int_equal(int_at(json_object_get(cs, "retry"), "max_attempts"), 9);
	assert_true(json_is_false(json_object_get(
	    json_object_get(json_object_get(cs, "handler"), "initialization"), "debug")));
	tpl_free(t);

	/* production: one initialization key replaced, the rest kept */
	t = parse_ok(path, "production");
	a = step_of(t, "step_a");
	assert_string_equal(str_at(a->initialization, "url"), "https://example.com/prod");
	assert_false(json_is_true(json_object_get(a->initialization, "debug")));
	assert_int_equal(a->timeout_seconds, 60);
	tpl_free(t);

	/* an environment without a block changes nothing */
	t = parse_ok(path, "staging");
	assert_int_equal(step_of(t, "step_b")->max_attempts, 5);
	tpl_free(t);
}

/* The final values are checked after the overrides. */
static void test_env_override_checked_after_merge(void **state)
{
	static const char yaml[] =
	    HEAD ONE_STEP "environments:\n  fast:\n    steps:\n      - name: a\n"
	                  "        retry: {max_backoff_ms: 10}\n";
	struct tk_err e = {0};
	struct tpl *t = NULL;
	int rc;

	(void)state;
	t = parse_str_ok(yaml, NULL);
	tpl_free(t);
	rc = tpl_parse_string(yaml, strlen(yaml), "inline.yaml", "fast", &t, &e);
	assert_err(rc, &e, TRPC_ERR_INVALID,
	           "inline.yaml: step \"a\": retry.backoff_base_ms 1000 exceeds "
	           "retry.max_backoff_ms 10");
}

/* ------------------------------------------------------------------ everything else */

static void test_all_blocks_and_unknown_keys(void **state)
{
	struct tpl *t = parse_ok(fixture("good/everything.yaml"), NULL);
	const struct tpl_step *st = &t->steps[0];
	const json_t *cs = json_array_get(json_object_get(t->config, "steps"), 0);

	(void)state;
	assert_string_equal(t->version, "10.20.30");
	assert_string_equal(t->description, "All the blocks");
	assert_string_equal(t->identity_strategy, "caller_provided");
	assert_non_null(t->lifecycle);
	assert_int_equal(int_at(t->lifecycle, "max_duration_minutes"), 120);
	assert_string_equal(str_at(t->lifecycle, "staleness_action"), "dlq");
	assert_string_equal(st->description, "The single step");
	assert_string_equal(st->handler_callable, "exec:/usr/bin/true");
	assert_string_equal(st->handler_method, "call");
	assert_string_equal(st->handler_resolver, "default");
	assert_retry(st, 0, 3, "none", 0, 0);

	/* unknown keys and the blocks the structs do not carry stay in config */
	assert_string_equal(str_at(t->config, "x_team"), "platform");
	assert_string_equal(str_at(cs, "x_owner"), "someone");
	assert_string_equal(str_at(cs, "system_dependency"), "default");
	assert_string_equal(str_at(json_object_get(t->config, "metadata"), "created_at"),
	                    "2024-01-01");
	assert_int_equal(json_array_size(json_object_get(t->config, "domain_events")), 1);
	assert_non_null(json_object_get(t->config, "input_schema"));
	assert_true(json_equal(json_object_get(t->config, "lifecycle"), t->lifecycle));
	/* lifecycle and initialization are copies, not views into config */
	assert_ptr_not_equal(json_object_get(t->config, "lifecycle"), t->lifecycle);
	assert_ptr_not_equal(json_object_get(json_object_get(cs, "handler"), "initialization"),
	                     st->initialization);
	tpl_free(t);
}

static void test_yaml_features(void **state)
{
	struct tpl *t = parse_ok(fixture("good/yaml_features.yaml"), NULL);
	const struct tpl_step *a = step_of(t, "step_a"), *b = step_of(t, "step_b");
	const json_t *i = b->initialization;

	(void)state;
	/* aliases and merge keys */
	assert_string_equal(a->handler_callable, "echo");
	assert_string_equal(str_at(a->initialization, "from"), "anchor");
	assert_retry(a, 1, 2, "linear", 100, 1000);
	assert_string_equal(b->handler_callable, "echo");
	assert_retry(b, 1, 4, "linear", 100, 1000);
	/* the explicit initialization beats the merged one */
	assert_null(json_object_get(i, "from"));

	/* YAML 1.2 core schema for plain scalars */
	assert_int_equal(int_at(i, "int"), 42);
	assert_int_equal(int_at(i, "negative"), -7);
	assert_int_equal(int_at(i, "octal"), 15);
	assert_int_equal(int_at(i, "hex"), 255);
	assert_true(json_is_real(json_object_get(i, "float")));
	assert_true(json_real_value(json_object_get(i, "float")) == 2.5);
	assert_true(json_real_value(json_object_get(i, "exp")) == 1000.0);
	assert_true(json_is_real(json_object_get(i, "big")));
	assert_string_equal(str_at(i, "yes_is_text"), "yes");
	assert_string_equal(str_at(i, "quoted_int"), "42");
	assert_string_equal(str_at(i, "single_quoted"), "true");
	assert_true(json_is_null(json_object_get(i, "null_tilde")));
	assert_true(json_is_null(json_object_get(i, "null_word")));
	assert_true(json_is_null(json_object_get(i, "empty")));
	assert_true(json_is_true(json_object_get(i, "bool")));
	assert_string_equal(str_at(i, "inf"), ".inf");
	assert_string_equal(str_at(i, "tagged_str"), "12");
	assert_true(json_real_value(json_object_get(i, "tagged_float")) == 3.0);
	assert_string_equal(str_at(i, "date"), "2024-01-01");
	assert_string_equal(str_at(i, "text"), "line one\nline two\n");
	assert_string_equal(str_at(i, "folded"), "folded text\n");
	tpl_free(t);
}

/* Merge keys: a list of mappings, earlier ones win; a later explicit key
 * beats a merged one. */
static void test_merge_keys(void **state)
{
	static const char yaml[] = HEAD "x:\n  - &one {a: 1, b: 1}\n  - &two {b: 2, c: 2}\n"
	                                "steps:\n  - name: s\n    handler:\n      callable: x\n"
	                                "      initialization:\n        <<: [*one, *two]\n"
	                                "        c: 3\n        '<<': literal\n";
	struct tpl *t = parse_str_ok(yaml, NULL);
	const json_t *i = t->steps[0].initialization;

	(void)state;
	assert_int_equal(int_at(i, "a"), 1);
	assert_int_equal(int_at(i, "b"), 1);
	assert_int_equal(int_at(i, "c"), 3);
	/* a quoted "<<" is an ordinary key */
	assert_string_equal(str_at(i, "<<"), "literal");
	assert_int_equal(json_object_size(i), 4);
	tpl_free(t);
}

/* Limits: alias expansion ("billion laughs") and nesting depth. */
static void test_limits(void **state)
{
	char *yaml = malloc(4096), *p = yaml;
	struct tk_err e = {0};
	struct tpl *t = NULL;
	int rc;

	(void)state;
	assert_non_null(yaml);
	p += sprintf(p, "l0: &l0 [x, x, x, x, x, x, x, x, x, x]\n");
	for (int i = 1; i < 9; i++)
		p += sprintf(
		    p, "l%d: &l%d [*l%d, *l%d, *l%d, *l%d, *l%d, *l%d, *l%d, *l%d, *l%d, *l%d]\n",
		    i, i, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1);
	rc = tpl_parse_string(yaml, strlen(yaml), "bomb.yaml", NULL, &t, &e);
	assert_null(t);
	assert_int_equal(rc, TRPC_ERR_TOO_LARGE);
	assert_non_null(strstr(e.msg, "document has more than 200000 nodes"));

	memset(yaml, '[', 100);
	memset(yaml + 100, ']', 100);
	yaml[200] = '\0';
	rc = tpl_parse_string(yaml, strlen(yaml), "deep.yaml", NULL, &t, &e);
	assert_err(rc, &e, TRPC_ERR_TOO_LARGE,
	           "deep.yaml: line 1 column 65: nested more than 64 levels deep");

	rc = tpl_parse_string(yaml, (size_t)TPL_MAX_FILE_BYTES + 1, "huge.yaml", NULL, &t, &e);
	assert_err(rc, &e, TRPC_ERR_TOO_LARGE, "huge.yaml: larger than %d bytes",
	           TPL_MAX_FILE_BYTES);
	free(yaml);
}

static void test_parse_file_errors(void **state)
{
	char path[] = "/tmp/test_template_XXXXXX";
	struct tk_err e = {0};
	struct tpl *t = NULL;
	int fd, rc;

	(void)state;
	rc = tpl_parse_file("/nonexistent/x.yaml", NULL, &t, &e);
	assert_err(rc, &e, TRPC_ERR_SYSTEM, "/nonexistent/x.yaml: %s", strerror(ENOENT));
	rc = tpl_parse_file(fixture("good"), NULL, &t, &e);
	assert_err(rc, &e, TRPC_ERR_SYSTEM, "%s: not a regular file", fixture("good"));

	fd = mkstemp(path);
	assert_true(fd != -1);
	assert_int_equal(ftruncate(fd, (off_t)TPL_MAX_FILE_BYTES + 1), 0);
	close(fd);
	rc = tpl_parse_file(path, NULL, &t, &e);
	assert_err(rc, &e, TRPC_ERR_TOO_LARGE, "%s: larger than %d bytes", path,
	           TPL_MAX_FILE_BYTES);
	unlink(path);
	assert_null(t);
}

/* ------------------------------------------------------------------ discovery */

static void test_discover_recursive_sorted(void **state)
{
	static struct tpl *sentinel[1];
	static const char *const want[][3] = {
	    {"first", "1.0.0", "ok/a_first.yaml"},
	    {"second", "1.0.0", "ok/sub/b_second.yml"},
	    {"third", "1.0.0", "ok/sub/deeper/c_third.yaml"},
	    {"first", "2.0.0", "ok/z_first_v2.yaml"},
	};
	struct tk_err e = {0};
	struct tpl **list = NULL;
	size_t n = 0;
	char dirs[PATH_MAX + 8], dir[PATH_MAX];

	(void)state;
	/* a trailing slash and empty elements change nothing */
	snprintf(dir, sizeof(dir), "%s", fixture("discover/ok"));
	snprintf(dirs, sizeof(dirs), "::%s/:", dir);
	assert_int_equal(tpl_discover(dirs, "test", &list, &n, &e), 0);
	assert_int_equal(n, ARRAY_LEN(want));
	for (size_t i = 0; i < n; i++) {
		char rel[128];

		snprintf(rel, sizeof(rel), "discover/%s", want[i][2]);
		assert_string_equal(list[i]->namespace_name, "discovery");
		assert_string_equal(list[i]->name, want[i][0]);
		assert_string_equal(list[i]->version, want[i][1]);
		assert_string_equal(list[i]->source, fixture(rel));
	}
	tpl_free_all(list, n);

	/* two search-path elements, one of them a file of any name */
	snprintf(dirs, sizeof(dirs), "%s:%s", fixture("discover/ok/sub/deeper"),
	         src_path("etc/templates/integration/linear_workflow.yaml"));
	assert_int_equal(tpl_discover(dirs, NULL, &list, &n, &e), 0);
	assert_int_equal(n, 2);
	assert_string_equal(list[0]->name, "third");
	assert_string_equal(list[1]->name, "linear_workflow");
	tpl_free_all(list, n);

	/* the examples */
	assert_int_equal(tpl_discover(src_path("etc/templates"), "test", &list, &n, &e), 0);
	assert_int_equal(n, 2);
	assert_string_equal(list[0]->name, "diamond_workflow");
	assert_string_equal(list[1]->name, "linear_workflow");
	tpl_free_all(list, n);

	/* nothing to search: *out is set to NULL */
	list = sentinel;
	assert_int_equal(tpl_discover("", NULL, &list, &n, &e), 0);
	assert_int_equal(n, 0);
	assert_null(list);
	assert_int_equal(tpl_discover(NULL, NULL, &list, &n, &e), 0);
	assert_int_equal(n, 0);
}

static void test_discover_errors(void **state)
{
	struct tk_err e = {0};
	struct tpl **list = NULL;
	size_t n = 0;
	char one[PATH_MAX], two[PATH_MAX], dirs[PATH_MAX * 2];
	int rc;

	(void)state;
	snprintf(one, sizeof(one), "%s", fixture("discover/dup/one.yaml"));
	snprintf(two, sizeof(two), "%s", fixture("discover/dup/sub/two.yaml"));
	rc = tpl_discover(fixture("discover/dup"), NULL, &list, &n, &e);
	assert_err(rc, &e, TRPC_ERR_INVALID,
	           "%s: template discovery/same version 1.0.0 is already defined in %s", two, one);

	/* across search-path elements too */
	snprintf(dirs, sizeof(dirs), "%s:%s", two, one);
	rc = tpl_discover(dirs, NULL, &list, &n, &e);
	assert_err(rc, &e, TRPC_ERR_INVALID,
	           "%s: template discovery/same version 1.0.0 is already defined in %s", one, two);

	/* a missing element is an error, not an empty result */
	snprintf(dirs, sizeof(dirs), "%s:/nonexistent/templates", fixture("discover/ok"));
	rc = tpl_discover(dirs, NULL, &list, &n, &e);
	assert_err(rc, &e, TRPC_ERR_SYSTEM, "/nonexistent/templates: %s", strerror(ENOENT));

	/* a bad template stops the search with its own message */
	rc = tpl_discover(fixture("bad"), NULL, &list, &n, &e);
	assert_int_equal(rc, TRPC_ERR_INVALID);
	assert_non_null(strstr(e.msg, "/t/templates/bad/"));
}

static char tmpdir[64];

static void make_file(const char *rel, const char *content)
{
	char path[256];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", tmpdir, rel);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs(content, f);
	fclose(f);
}

static void make_link(const char *target, const char *rel)
{
	char path[256];

	snprintf(path, sizeof(path), "%s/%s", tmpdir, rel);
	assert_int_equal(symlink(target, path), 0);
}

static void make_dir(const char *rel)
{
	char path[256];

	snprintf(path, sizeof(path), "%s/%s", tmpdir, rel);
	assert_int_equal(mkdir(path, 0755), 0);
}

/* Symbolic links: a file reached twice is read once, a loop ends, and a
 * Kubernetes-style volume (visible links into a hidden ..data) works. */
static void test_discover_links(void **state)
{
	struct tk_err e = {0};
	struct tpl **list = NULL;
	size_t n = 0;
	char cmd[128];
	int rc;

	(void)state;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_template_XXXXXX");
	assert_non_null(mkdtemp(tmpdir));
	make_dir("..2024_01_01");
	make_file("..2024_01_01/wf.yaml", HEAD ONE_STEP);
	make_link("..2024_01_01", "..data");
	make_link("..data/wf.yaml", "wf.yaml");
	make_link("wf.yaml", "wf_again.yaml");
	make_link(".", "loop");
	make_link("missing", "dangling.txt");

	assert_int_equal(tpl_discover(tmpdir, NULL, &list, &n, &e), 0);
	assert_int_equal(n, 1);
	assert_non_null(strstr(list[0]->source, "/wf.yaml"));
	tpl_free_all(list, n);

	/* a dangling link that would be read is an error */
	make_link("missing.yaml", "dangling.yaml");
	rc = tpl_discover(tmpdir, NULL, &list, &n, &e);
	assert_err(rc, &e, TRPC_ERR_SYSTEM, "%s/dangling.yaml: %s", tmpdir, strerror(ENOENT));

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	assert_int_equal(system(cmd), 0);
}

/* ------------------------------------------------------------------ order */

static void test_topo_order(void **state)
{
	static const char yaml[] =
	    HEAD "steps:\n"
	         "  - {name: last, dependencies: [mid_b, mid_a], handler: "
	         "{callable: x}}\n"
	         "  - {name: mid_b, dependencies: [root], handler: {callable: "
	         "x}}\n"
	         "  - {name: other_root, handler: {callable: x}}\n"
	         "  - {name: mid_a, dependencies: [root], handler: {callable: "
	         "x}}\n"
	         "  - {name: root, handler: {callable: x}}\n";
	static const char *const want[] = {"other_root", "root", "mid_b", "mid_a", "last"};
	struct tpl *t = parse_str_ok(yaml, NULL);
	size_t order[5];

	(void)state;
	assert_int_equal(tpl_topo_order(t, order), 0);
	for (size_t i = 0; i < ARRAY_LEN(want); i++)
		assert_string_equal(t->steps[order[i]].name, want[i]);
	tpl_free(t);

	t = parse_ok(src_path("etc/templates/integration/diamond_workflow.yaml"), NULL);
	assert_int_equal(tpl_topo_order(t, order), 0);
	for (size_t i = 0; i < 4; i++)
		assert_int_equal(order[i], i);
	tpl_free(t);
}

/* On structs not made by the parser: cycles and unknown names. */
static void test_topo_order_rejects(void **state)
{
	char *a_deps[] = {"b"}, *b_deps[] = {"a"}, *c_deps[] = {"zz"};
	struct tpl_step steps[3] = {
	    {.name = "a", .dependencies = a_deps, .n_dependencies = 1},
	    {.name = "b", .dependencies = b_deps, .n_dependencies = 1},
	    {.name = "c"},
	};
	struct tpl t = {.steps = steps, .n_steps = 3};
	size_t order[3];

	(void)state;
	assert_int_equal(tpl_topo_order(&t, order), TRPC_ERR_INVALID);
	steps[0].n_dependencies = 0;
	assert_int_equal(tpl_topo_order(&t, order), 0);
	assert_int_equal(order[0], 0);
	assert_int_equal(order[1], 1);
	assert_int_equal(order[2], 2);
	steps[2].dependencies = c_deps;
	steps[2].n_dependencies = 1;
	assert_int_equal(tpl_topo_order(&t, order), TRPC_ERR_INVALID);
	t.n_steps = 0;
	assert_int_equal(tpl_topo_order(&t, order), 0);
}

static void test_step_lookup(void **state)
{
	struct tpl *t = parse_ok(src_path("etc/templates/integration/diamond_workflow.yaml"), NULL);

	(void)state;
	assert_ptr_equal(tpl_step(t, "step_c"), &t->steps[2]);
	assert_null(tpl_step(t, "step_e"));
	assert_null(tpl_step(t, ""));
	tpl_free(t);
	tpl_free(NULL);
	tpl_free_all(NULL, 0);
}

/* ------------------------------------------------------------------ robustness */

/* Parses len bytes copied into a buffer of exactly that size, so that
 * ASan sees any read past the end. Any outcome but a crash or a leak is
 * acceptable; errors must carry a message naming the source. */
static void parse_exact(const char *data, size_t len, const char *env)
{
	char *copy = malloc(len ? len : 1);
	struct tk_err e = {0};
	struct tpl *t = NULL;
	int rc;

	assert_non_null(copy);
	memcpy(copy, data, len);
	rc = tpl_parse_string(copy, len, "fuzz.yaml", env, &t, &e);
	free(copy);
	if (rc == 0) {
		assert_non_null(t);
		assert_true(t->n_steps >= 1);
		tpl_free(t);
		return;
	}
	assert_null(t);
	assert_true(rc == TRPC_ERR_INVALID || rc == TRPC_ERR_TOO_LARGE);
	assert_int_equal(e.code, rc);
	assert_memory_equal(e.msg, "fuzz.yaml: ", 11);
}

static void test_truncated_prefixes(void **state)
{
	size_t len;
	char *text = read_all(src_path("etc/templates/integration/diamond_workflow.yaml"), &len);

	(void)state;
	for (size_t i = 0; i <= len; i++)
		parse_exact(text, i, (i & 1) ? "test" : NULL);
	free(text);
}

static void test_mutations(void **state)
{
	static const char alphabet[] = " \n\t-:[]{},&*!|>'\"#%@`?<~0123456789abz.\\\x80\xff";
	uint32_t seed = 12345;
	size_t len;
	char *text = read_all(fixture("good/yaml_features.yaml"), &len);
	char *buf = malloc(len);

	(void)state;
	assert_non_null(buf);
	for (int round = 0; round < 3000; round++) {
		memcpy(buf, text, len);
		for (int k = 0; k < 1 + round % 4; k++) {
			/* xorshift32: the same inputs on every run */
			seed ^= seed << 13;
			seed ^= seed >> 17;
			seed ^= seed << 5;
			buf[seed % len] = alphabet[(seed >> 16) % (sizeof(alphabet) - 1)];
		}
		parse_exact(buf, len, round % 3 ? NULL : "test");
	}
	free(buf);
	free(text);
}

/* Fails the n-th jansson allocation: every parse must either succeed or
 * report out of memory, and leak nothing (LeakSanitizer checks). */
static long alloc_budget = -1;

static void *failing_malloc(size_t size)
{
	if (alloc_budget == 0)
		return NULL;
	if (alloc_budget > 0)
		alloc_budget--;
	return malloc(size);
}

static void test_out_of_memory(void **state)
{
	size_t len;
	char *text = read_all(fixture("good/env_overrides.yaml"), &len);
	int rc = TRPC_ERR_NOMEM, failures = 0;

	(void)state;
	json_set_alloc_funcs(failing_malloc, free);
	for (long n = 0; rc != 0; n++) {
		struct tk_err e = {0};
		struct tpl *t = NULL;

		assert_true(n < 100000);
		alloc_budget = n;
		rc = tpl_parse_string(text, len, "oom.yaml", "test", &t, &e);
		alloc_budget = -1;
		if (rc == 0) {
			tpl_free(t);
			break;
		}
		assert_null(t);
		assert_err(rc, &e, TRPC_ERR_NOMEM, "oom.yaml: out of memory");
		failures++;
	}
	json_set_alloc_funcs(malloc, free);
	assert_true(failures > 50);
	free(text);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_diamond_example),
	    cmocka_unit_test(test_linear_example),
	    cmocka_unit_test(test_defaults),
	    cmocka_unit_test(test_bad_files),
	    cmocka_unit_test(test_bad_files_all_listed),
	    cmocka_unit_test(test_inline_errors),
	    cmocka_unit_test(test_long_step_name),
	    cmocka_unit_test(test_aliases),
	    cmocka_unit_test(test_env_overrides),
	    cmocka_unit_test(test_env_override_checked_after_merge),
	    cmocka_unit_test(test_all_blocks_and_unknown_keys),
	    cmocka_unit_test(test_yaml_features),
	    cmocka_unit_test(test_merge_keys),
	    cmocka_unit_test(test_limits),
	    cmocka_unit_test(test_parse_file_errors),
	    cmocka_unit_test(test_discover_recursive_sorted),
	    cmocka_unit_test(test_discover_errors),
	    cmocka_unit_test(test_discover_links),
	    cmocka_unit_test(test_topo_order),
	    cmocka_unit_test(test_topo_order_rejects),
	    cmocka_unit_test(test_step_lookup),
	    cmocka_unit_test(test_truncated_prefixes),
	    cmocka_unit_test(test_mutations),
	    cmocka_unit_test(test_out_of_memory),
	};

	return cmocka_run_group_tests_name("template", tests, find_top, NULL);
}

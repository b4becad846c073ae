/*
 * Unit tests for src/rpc/config.c: defaults, the INI file, TASKER_*
 * environment variables, command-line options, their precedence, value
 * syntax and error messages; and for src/rpc/confkeys.c: the canonical
 * spelling of values, masking, and the reload's restart warnings.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <ctype.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tasker/rpc.h"

extern char **environ;

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* ------------------------------------------------------------------ fixtures */

static char conf_path[PATH_MAX];

/* Removes every TASKER_ variable so that the caller's environment cannot
 * change the results. */
static void clear_tasker_env(void)
{
	char name[256];

	for (;;) {
		char **e = environ;

		while (e != NULL && *e != NULL && strncmp(*e, "TASKER_", 7) != 0)
			e++;
		if (e == NULL || *e == NULL)
			return;
		snprintf(name, sizeof(name), "%.*s", (int)strcspn(*e, "="), *e);
		unsetenv(name);
	}
}

static int setup(void **state)
{
	(void)state;
	clear_tasker_env();
	conf_path[0] = '\0';
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	clear_tasker_env();
	if (conf_path[0] != '\0')
		unlink(conf_path);
	conf_path[0] = '\0';
	return 0;
}

/* Writes `text` to a new temporary file and returns its path (conf_path). */
static const char *write_conf(const char *text)
{
	const char *dir = getenv("TMPDIR");
	FILE *fp;
	int fd;

	if (conf_path[0] != '\0')
		unlink(conf_path);
	snprintf(conf_path, sizeof(conf_path), "%s/test_config.XXXXXX",
	         dir != NULL && *dir != '\0' ? dir : "/tmp");
	fd = mkstemp(conf_path);
	assert_true(fd >= 0);
	fp = fdopen(fd, "w");
	assert_non_null(fp);
	assert_int_equal(fputs(text, fp) >= 0, 1);
	assert_int_equal(fclose(fp), 0);
	return conf_path;
}

/* Loads from `path`, the environment and argv[0..argc); returns rc, *why on error. */
static int load(struct trpc_server_config *cfg, const char *path, int argc, char **argv,
                const char **why)
{
	trpc_server_config_init(cfg);
	*why = NULL;
	return trpc_server_config_load(cfg, path, argc, argv, NULL, NULL, why);
}

/* Asserts that the error message is exactly `fmt` (formatted). */
static void assert_why(const char *why, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void assert_why(const char *why, const char *fmt, ...)
{
	char want[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(want, sizeof(want), fmt, ap);
	va_end(ap);
	assert_non_null(why);
	assert_string_equal(why, want);
}

/* Sets one key through the API; returns rc and leaves the message in *why. */
static int set1(struct trpc_server_config *cfg, const char *name, const char *value,
                const char **why)
{
	*why = NULL;
	return trpc_server_config_set(cfg, NULL, name, value, why);
}

/* Records what the extra callback saw; accepts sections listed in `accept`. */
struct extra_log {
	const char *accept[4]; /* sections taken; "*" takes all */
	int verdict;           /* returned for a taken key (normally 0) */
	int n;
	struct {
		char section[32], key[32], value[64];
	} calls[8];
};

static int on_extra(void *ud, const char *section, const char *key, const char *value)
{
	struct extra_log *log = ud;

	if (log->n < (int)ARRAY_LEN(log->calls)) {
		snprintf(log->calls[log->n].section, sizeof(log->calls[0].section), "%s", section);
		snprintf(log->calls[log->n].key, sizeof(log->calls[0].key), "%s", key);
		snprintf(log->calls[log->n].value, sizeof(log->calls[0].value), "%s", value);
		log->n++;
	}
	for (size_t i = 0; i < ARRAY_LEN(log->accept) && log->accept[i] != NULL; i++)
		if (strcmp(log->accept[i], "*") == 0 || strcmp(log->accept[i], section) == 0)
			return log->verdict;
	return TRPC_ERR_CONFIG;
}

static int saw_call(const struct extra_log *log, const char *section, const char *key,
                    const char *value)
{
	for (int i = 0; i < log->n; i++)
		if (strcmp(log->calls[i].section, section) == 0 &&
		    strcmp(log->calls[i].key, key) == 0 && strcmp(log->calls[i].value, value) == 0)
			return 1;
	return 0;
}

/* ------------------------------------------------------------------ defaults */

static void test_defaults(void **state)
{
	struct trpc_server_config cfg;

	(void)state;
	trpc_server_config_init(&cfg);
	assert_string_equal(cfg.listen, "0.0.0.0:50051");
	assert_null(cfg.tls_listen);
	assert_null(cfg.tls_cert_file);
	assert_null(cfg.tls_key_file);
	assert_null(cfg.tls_client_ca_file);
	assert_int_equal(cfg.tls_client_auth, TRPC_CLIENT_AUTH_NONE);
	assert_int_equal(cfg.io_threads, 0);
	assert_int_equal(cfg.workers, 0);
	assert_int_equal(cfg.max_connections, 20000);
	assert_int_equal(cfg.max_concurrent_streams, 200);
	assert_int_equal(cfg.initial_window_size, 1 << 20);
	assert_int_equal(cfg.max_header_list_size, 8192);
	assert_int_equal(cfg.max_recv_message_size, 4 << 20);
	assert_int_equal(cfg.max_send_message_size, 4 << 20);
	assert_int_equal(cfg.max_outbound_bytes, 4 << 20);
	assert_int_equal(cfg.keepalive_time_ms, 2 * 3600 * 1000);
	assert_int_equal(cfg.keepalive_timeout_ms, 20 * 1000);
	assert_int_equal(cfg.min_ping_interval_ms, 5 * 60 * 1000);
	assert_int_equal(cfg.max_ping_strikes, 2);
	assert_int_equal(cfg.permit_keepalive_without_calls, 0);
	assert_int_equal(cfg.max_connection_idle_ms, 0);
	assert_int_equal(cfg.max_connection_age_ms, 0);
	assert_int_equal(cfg.max_connection_age_grace_ms, 0);
	assert_int_equal(cfg.handshake_timeout_ms, 10 * 1000);
	assert_int_equal(cfg.shutdown_grace_ms, 10 * 1000);
	assert_int_equal(cfg.queue_high_watermark, 4096);
	assert_int_equal(cfg.queue_low_watermark, 1024);
	assert_int_equal(cfg.retry_pushback_ms, 100);
	assert_int_equal(cfg.stream_reset_burst, 1000);
	assert_int_equal(cfg.stream_reset_rate, 33);
	assert_int_equal(cfg.max_continuations, 8);
	assert_string_equal(cfg.log_level, "info");

	trpc_server_config_clear(&cfg);
	assert_null(cfg.listen);
	assert_null(cfg.log_level);
	trpc_server_config_clear(&cfg); /* twice is harmless */
}

static void test_defaults_load_cleanly(void **state)
{
	struct trpc_server_config cfg;
	char *argv[] = {"prog", NULL};
	const char *why;

	(void)state;
	assert_int_equal(load(&cfg, NULL, 1, argv, &why), 0);
	assert_null(why);
	assert_string_equal(cfg.listen, "0.0.0.0:50051");
	trpc_server_config_clear(&cfg);

	assert_int_equal(load(&cfg, NULL, 0, NULL, &why), 0);
	trpc_server_config_clear(&cfg);
}

/* Compares two configs field by field (strings by content). */
static void assert_config_equal(const struct trpc_server_config *a,
                                const struct trpc_server_config *b)
{
	struct trpc_server_config x, y;
	char **xs[] = {&x.listen,       &x.tls_listen,         &x.tls_cert_file,
	               &x.tls_key_file, &x.tls_client_ca_file, &x.log_level,
	               &x.log_file,     &x.metrics_listen};
	char **ys[] = {&y.listen,       &y.tls_listen,         &y.tls_cert_file,
	               &y.tls_key_file, &y.tls_client_ca_file, &y.log_level,
	               &y.log_file,     &y.metrics_listen};

	memcpy(&x, a, sizeof(x));
	memcpy(&y, b, sizeof(y));
	for (size_t i = 0; i < ARRAY_LEN(xs); i++) {
		if (*xs[i] == NULL || *ys[i] == NULL)
			assert_ptr_equal(*xs[i], *ys[i]);
		else
			assert_string_equal(*xs[i], *ys[i]);
		*xs[i] = *ys[i] = NULL;
	}
	assert_memory_equal(&x, &y, sizeof(x));
}

/*
 * etc/taskerd.conf shows every key with its default as "#key = value".
 * Uncommenting all of them must load cleanly and give exactly the defaults,
 * so the sample cannot drift from the table in config.c.
 */
static void test_sample_conf_matches_defaults(void **state)
{
	const char *top = getenv("TOP_SRCDIR");
	struct trpc_server_config defaults, cfg;
	char path[PATH_MAX], line[512], *text = NULL;
	size_t len = 0, n_keys = 0;
	const char *why;
	FILE *in, *out;

	(void)state;
	snprintf(path, sizeof(path), "%s/etc/taskerd.conf", top != NULL ? top : ".");
	/* Not skip(): cmocka 1.1.5 prints a skip as "not ok", a failure to TAP drivers. */
	if ((in = fopen(path, "r")) == NULL)
		fail_msg("cannot open %s (set TOP_SRCDIR to the source tree)", path);
	out = open_memstream(&text, &len);
	assert_non_null(out);
	/* The runtime's sections; the program's own ([database], [auth], ...)
	 * stay commented: their keys belong to the programs' extra-key hooks. */
	static const char *const runtime_sections[] = {"[server]",  "[tls]",       "[http2]",
	                                               "[limits]",  "[keepalive]", "[log]",
	                                               "[metrics]", "[ratelimit]"};
	int runtime_section = 0;
	while (fgets(line, sizeof(line), in) != NULL) {
		size_t name_len = strspn(line + 1, "abcdefghijklmnopqrstuvwxyz0123456789_");

		if (line[0] == '[' || strncmp(line, "#[", 2) == 0) {
			const char *sec = line[0] == '[' ? line : line + 1;
			runtime_section = 0;
			for (size_t i = 0; i < sizeof runtime_sections / sizeof *runtime_sections;
			     i++)
				if (strncmp(sec, runtime_sections[i],
				            strlen(runtime_sections[i])) == 0)
					runtime_section = 1;
			/* a commented program section stays commented */
			fputs(line[0] == '[' ? line : "", out);
			continue;
		}
		if (runtime_section && line[0] == '#' && name_len > 0 &&
		    strncmp(line + 1 + name_len, " =", 2) == 0) {
			fputs(line + 1, out);
			n_keys++;
		} else {
			fputs(line, out);
		}
	}
	fclose(in);
	fclose(out);
	assert_int_equal(n_keys, 42); /* every key of the table */

	trpc_server_config_init(&defaults);
	assert_int_equal(load(&cfg, write_conf(text), 0, NULL, &why), 0);
	assert_config_equal(&cfg, &defaults);
	trpc_server_config_clear(&cfg);
	trpc_server_config_clear(&defaults);
	free(text);
}

/* ------------------------------------------------------------------ the file */

static void test_file(void **state)
{
	struct trpc_server_config cfg;
	const char *why;
	const char *path = write_conf("# comment\n"
	                              "; another comment\n"
	                              "[server]\n"
	                              "listen = 127.0.0.1:0, [::1]:0\n"
	                              "workers = 16\n"
	                              "log_level = debug\n"
	                              "shutdown_grace = 30s\n"
	                              "\n"
	                              "[tls]\n"
	                              "client_auth = optional\n"
	                              "client_ca_file = /etc/ssl/ca.pem\n"
	                              "\n"
	                              "[http2]\n"
	                              "max_concurrent_streams = 100\n"
	                              "initial_window_size = 8MiB ; inline comment\n"
	                              "max_header_list_size = 16k\n"
	                              "\n"
	                              "[limits]\n"
	                              "max_recv_message_size = 16MiB\n"
	                              "queue_high_watermark = 100\n"
	                              "queue_low_watermark = 10\n"
	                              "retry_pushback = 1s\n"
	                              "\n"
	                              "[keepalive]\n"
	                              "time = 1h30m\n"
	                              "permit_without_calls = yes\n"
	                              "max_connection_age = 2d\n");

	(void)state;
	assert_int_equal(load(&cfg, path, 0, NULL, &why), 0);
	assert_string_equal(cfg.listen, "127.0.0.1:0, [::1]:0");
	assert_int_equal(cfg.workers, 16);
	assert_string_equal(cfg.log_level, "debug");
	assert_int_equal(cfg.shutdown_grace_ms, 30000);
	assert_int_equal(cfg.tls_client_auth, TRPC_CLIENT_AUTH_OPTIONAL);
	assert_string_equal(cfg.tls_client_ca_file, "/etc/ssl/ca.pem");
	assert_int_equal(cfg.max_concurrent_streams, 100);
	assert_int_equal(cfg.initial_window_size, 8 << 20);
	assert_int_equal(cfg.max_header_list_size, 16384);
	assert_int_equal(cfg.max_recv_message_size, 16 << 20);
	assert_int_equal(cfg.queue_high_watermark, 100);
	assert_int_equal(cfg.queue_low_watermark, 10);
	assert_int_equal(cfg.retry_pushback_ms, 1000);
	assert_int_equal(cfg.keepalive_time_ms, 90 * 60 * 1000);
	assert_int_equal(cfg.permit_keepalive_without_calls, 1);
	assert_int_equal(cfg.max_connection_age_ms, 2 * 86400 * 1000);
	/* untouched keys keep their defaults */
	assert_int_equal(cfg.max_send_message_size, 4 << 20);
	assert_int_equal(cfg.keepalive_timeout_ms, 20000);
	trpc_server_config_clear(&cfg);
}

/* Keys before the first [section] belong to [server], or name their section. */
static void test_file_keys_before_sections(void **state)
{
	struct trpc_server_config cfg;
	const char *why;

	(void)state;
	assert_int_equal(
	    load(&cfg, write_conf("listen = 127.0.0.1:0\nkeepalive.time = 1s\n"), 0, NULL, &why),
	    0);
	assert_string_equal(cfg.listen, "127.0.0.1:0");
	assert_int_equal(cfg.keepalive_time_ms, 1000);
	trpc_server_config_clear(&cfg);
}

static void test_file_bad_value_names_key_and_line(void **state)
{
	struct trpc_server_config cfg;
	const char *why;
	const char *path = write_conf("[server]\n"
	                              "workers = 2\n"
	                              "\n"
	                              "[limits]\n"
	                              "max_recv_message_size = 4x\n"
	                              "max_send_message_size = 1\n");

	(void)state;
	assert_int_equal(load(&cfg, path, 0, NULL, &why), TRPC_ERR_CONFIG);
	assert_why(why, "%s:5: [limits] max_recv_message_size: \"4x\": not a size", path);
	trpc_server_config_clear(&cfg);
}

static void test_file_unknown_key(void **state)
{
	struct trpc_server_config cfg;
	const char *why, *path;

	(void)state;
	path = write_conf("[server]\nlisten = 127.0.0.1:0\nfoo = 1\n");
	assert_int_equal(load(&cfg, path, 0, NULL, &why), TRPC_ERR_CONFIG);
	assert_why(why, "%s:3: unknown key \"server.foo\"", path);
	trpc_server_config_clear(&cfg);

	path = write_conf("[bogus]\nx = 1\n");
	assert_int_equal(load(&cfg, path, 0, NULL, &why), TRPC_ERR_CONFIG);
	assert_why(why, "%s:2: unknown key \"bogus.x\"", path);
	trpc_server_config_clear(&cfg);

	/* names are case-sensitive, as in the sample file */
	path = write_conf("[Server]\nlisten = 127.0.0.1:0\n");
	assert_int_equal(load(&cfg, path, 0, NULL, &why), TRPC_ERR_CONFIG);
	assert_why(why, "%s:2: unknown key \"Server.listen\"", path);
	trpc_server_config_clear(&cfg);
}

/* The first error in the file is the one reported, whatever its kind. */
static void test_file_syntax_errors(void **state)
{
	struct trpc_server_config cfg;
	const char *why, *path;
	char long_line[400];

	(void)state;
	path = write_conf("[server]\nlisten\nworkers = x\n");
	assert_int_equal(load(&cfg, path, 0, NULL, &why), TRPC_ERR_CONFIG);
	assert_why(why, "%s:2: expected [section] or key = value", path);
	trpc_server_config_clear(&cfg);

	path = write_conf("[server]\nworkers = x\n[unterminated\n");
	assert_int_equal(load(&cfg, path, 0, NULL, &why), TRPC_ERR_CONFIG);
	assert_why(why, "%s:2: [server] workers: \"x\": not an integer", path);
	trpc_server_config_clear(&cfg);

	/* a line longer than inih's buffer is an error, not a truncated value */
	snprintf(long_line, sizeof(long_line), "[server]\n\nlisten = %0300d\nworkers = 1\n", 0);
	path = write_conf(long_line);
	assert_int_equal(load(&cfg, path, 0, NULL, &why), TRPC_ERR_CONFIG);
	assert_non_null(why);
	assert_non_null(strstr(why, ":3: line too long"));
	trpc_server_config_clear(&cfg);
}

static void test_file_missing(void **state)
{
	struct trpc_server_config cfg;
	const char *why;

	(void)state;
	assert_int_equal(load(&cfg, "/nonexistent/taskerd.conf", 0, NULL, &why), TRPC_ERR_SYSTEM);
	assert_why(why, "/nonexistent/taskerd.conf: No such file or directory");
	trpc_server_config_clear(&cfg);
}

/* ------------------------------------------------------------------ environment */

static void test_env_overrides_file(void **state)
{
	struct trpc_server_config cfg;
	const char *why;
	const char *path = write_conf("[server]\nlisten = 127.0.0.1:1\n"
	                              "[keepalive]\ntime = 5m\ntimeout = 3s\n");

	(void)state;
	setenv("TASKER_KEEPALIVE_TIME", "1m", 1);
	setenv("TASKER_SERVER_LISTEN", "127.0.0.1:2", 1);
	setenv("TASKER_LIMITS_MAX_RECV_MESSAGE_SIZE", "8MiB", 1);
	setenv("TASKER_KEEPALIVE_PERMIT_WITHOUT_CALLS", "on", 1);
	assert_int_equal(load(&cfg, path, 0, NULL, &why), 0);
	assert_int_equal(cfg.keepalive_time_ms, 60000);
	assert_int_equal(cfg.keepalive_timeout_ms, 3000); /* from the file */
	assert_string_equal(cfg.listen, "127.0.0.1:2");
	assert_int_equal(cfg.max_recv_message_size, 8 << 20);
	assert_int_equal(cfg.permit_keepalive_without_calls, 1);
	trpc_server_config_clear(&cfg);
}

static void test_env_bad_value_names_variable(void **state)
{
	struct trpc_server_config cfg;
	const char *why;

	(void)state;
	setenv("TASKER_KEEPALIVE_TIME", "abc", 1);
	assert_int_equal(load(&cfg, NULL, 0, NULL, &why), TRPC_ERR_CONFIG);
	assert_why(why, "[keepalive] time: \"abc\": not a duration "
	                "(environment TASKER_KEEPALIVE_TIME)");
	trpc_server_config_clear(&cfg);
}

/* Unknown TASKER_ variables belong to someone else: offered to extra, never errors. */
static void test_env_unknown_is_ignored_and_offered(void **state)
{
	struct trpc_server_config cfg;
	struct extra_log log = {.accept = {"port"}};
	const char *why;

	(void)state;
	setenv("TASKER_CONFIG", "/etc/tasker/x.conf", 1);
	setenv("TASKER_PORT_FILE", "/run/port", 1);
	setenv("TASKER_SERVER_FOO", "1", 1);
	setenv("TASKER_server_workers", "7", 1); /* not ours: names are upper case */
	assert_int_equal(load(&cfg, NULL, 0, NULL, &why), 0);
	assert_int_equal(cfg.workers, 0);
	trpc_server_config_clear(&cfg);

	trpc_server_config_init(&cfg);
	assert_int_equal(trpc_server_config_load(&cfg, NULL, 0, NULL, on_extra, &log, &why), 0);
	assert_true(saw_call(&log, "server", "config", "/etc/tasker/x.conf"));
	assert_true(saw_call(&log, "port", "file", "/run/port"));
	assert_true(saw_call(&log, "server", "foo", "1"));
	assert_int_equal(log.n, 4); /* and "server", "workers" from the lower-case one */
	trpc_server_config_clear(&cfg);
}

/* ------------------------------------------------------------------ command line */

static void test_argv_overrides_env(void **state)
{
	struct trpc_server_config cfg;
	const char *why;
	char *argv[] = {"prog",
	                "--keepalive.time=30s",
	                "--listen=127.0.0.1:3",
	                "--server.workers",
	                "3",
	                "--tls.client_auth",
	                "require",
	                "--tls.client_ca_file=/ca.pem"};

	(void)state;
	setenv("TASKER_KEEPALIVE_TIME", "1m", 1);
	setenv("TASKER_SERVER_LISTEN", "127.0.0.1:2", 1);
	setenv("TASKER_SERVER_WORKERS", "2", 1);
	setenv("TASKER_SERVER_IO_THREADS", "4", 1);
	assert_int_equal(
	    load(&cfg, write_conf("[server]\nio_threads = 1\n"), ARRAY_LEN(argv), argv, &why), 0);
	assert_int_equal(cfg.keepalive_time_ms, 30000);
	assert_string_equal(cfg.listen, "127.0.0.1:3");
	assert_int_equal(cfg.workers, 3);
	assert_int_equal(cfg.io_threads, 4); /* env over file */
	assert_int_equal(cfg.tls_client_auth, TRPC_CLIENT_AUTH_REQUIRE);
	trpc_server_config_clear(&cfg);
}

/* ratelimit.services: "Service=rate[/burst]" items, checked once loaded. */
static void test_ratelimit_services(void **state)
{
	static const char *const good[] = {
	    "--ratelimit.services=tasker.v1.TaskService=20/40, grpc.health.v1.Health=0",
	    "--ratelimit.services=a.B=5", "--ratelimit.services= a.B = 5/1 ,"};
	static const char *const bad[] = {
	    "--ratelimit.services=a.B",    "--ratelimit.services==5",
	    "--ratelimit.services=a.B=x",  "--ratelimit.services=a.B=5/0",
	    "--ratelimit.services=a.B=-1", "--ratelimit.services=a.B=5/"};
	struct trpc_server_config cfg;
	const char *why;

	(void)state;
	for (size_t i = 0; i < ARRAY_LEN(good); i++) {
		char *argv[] = {"prog", (char *)good[i]};
		assert_int_equal(load(&cfg, NULL, 2, argv, &why), 0);
		trpc_server_config_clear(&cfg);
	}
	for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
		char *argv[] = {"prog", (char *)bad[i]};
		assert_int_equal(load(&cfg, NULL, 2, argv, &why), TRPC_ERR_CONFIG);
		assert_non_null(strstr(why, "[ratelimit] services: "));
		trpc_server_config_clear(&cfg);
	}
}

static void test_argv_errors(void **state)
{
	static const struct {
		const char *arg, *next, *why;
	} cases[] = {
	    {"positional", NULL, "positional: expected --section.key=value"},
	    {"-c", "/etc/x.conf", "-c: expected --section.key=value"},
	    {"--", NULL, "--: expected --section.key=value"},
	    {"--=1", NULL, "--=1: expected --section.key=value"},
	    {"--keepalive.time", NULL, "--keepalive.time: missing value"},
	    {"--keepalive.time=abc", NULL, "--keepalive.time=abc: not a duration"},
	    {"--keepalive.time", "abc", "--keepalive.time=abc: not a duration"},
	    {"--server.foo=1", NULL, "--server.foo=1: unknown key \"server.foo\""},
	    {"--foo=1", NULL, "--foo=1: unknown key \"server.foo\""},
	    {"--http2.max_concurrent_streams=0", NULL,
	     "--http2.max_concurrent_streams=0: must be at least 1"},
	};
	struct trpc_server_config cfg;
	const char *why;

	(void)state;
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		char *argv[] = {"prog", (char *)cases[i].arg, (char *)cases[i].next};
		int argc = cases[i].next != NULL ? 3 : 2;

		assert_int_equal(load(&cfg, NULL, argc, argv, &why), TRPC_ERR_CONFIG);
		assert_why(why, "%s", cases[i].why);
		trpc_server_config_clear(&cfg);
	}
}

/* ------------------------------------------------------------------ value syntax */

struct value_case {
	const char *text;
	long long want; /* -1: refused */
};

/* Sets `name` to each case's text and checks the int field at `field`. */
static void check_values(const char *name, const struct value_case *cases, size_t n, size_t field)
{
	struct trpc_server_config cfg;
	const char *why;

	trpc_server_config_init(&cfg);
	for (size_t i = 0; i < n; i++) {
		int rc = set1(&cfg, name, cases[i].text, &why);

		if (cases[i].want < 0) {
			if (rc != TRPC_ERR_CONFIG)
				fail_msg("%s = \"%s\" was accepted", name, cases[i].text);
			assert_non_null(why);
		} else {
			if (rc != 0)
				fail_msg("%s = \"%s\": %s", name, cases[i].text, why);
			assert_int_equal(*(int *)((char *)&cfg + field), cases[i].want);
		}
	}
	trpc_server_config_clear(&cfg);
}

#define FIELD(f) offsetof(struct trpc_server_config, f)

static void test_durations(void **state)
{
	static const struct value_case cases[] = {
	    {"500ms", 500},
	    {"10s", 10000},
	    {"5m", 300000},
	    {"2h", 7200000},
	    {"1d", 86400000},
	    {"1h30m", 5400000},
	    {"1h 30m", 5400000},
	    {"2 s", 2000},
	    {"1500", 1500},
	    {"0", 0},
	    {"24d", 2073600000},
	    {"abc", -1},
	    {"10x", -1},
	    {"1.5s", -1},
	    {"", -1},
	    {"-5s", -1},
	    {"s", -1},
	    {"10s5", -1},
	    {"1h 30", -1},
	    {"10S", -1},
	    {"25d", -1},
	    {"99999999999999999999999h", -1},
	};
	struct trpc_server_config cfg;
	const char *why;

	(void)state;
	check_values("keepalive.time", cases, ARRAY_LEN(cases), FIELD(keepalive_time_ms));

	trpc_server_config_init(&cfg);
	assert_int_equal(set1(&cfg, "keepalive.time", "abc", &why), TRPC_ERR_CONFIG);
	assert_why(why, "[keepalive] time: \"abc\": not a duration");
	assert_int_equal(set1(&cfg, "keepalive.time", "25d", &why), TRPC_ERR_CONFIG);
	assert_why(why, "[keepalive] time: \"25d\": must be at most 2147483647 ms");
	assert_int_equal(set1(&cfg, "keepalive.timeout", "0", &why), TRPC_ERR_CONFIG);
	assert_why(why, "[keepalive] timeout: \"0\": must be at least 1 ms");
	/* refused values change nothing */
	assert_int_equal(cfg.keepalive_time_ms, 2 * 3600 * 1000);
	trpc_server_config_clear(&cfg);
}

static void test_sizes(void **state)
{
	static const struct value_case cases[] = {
	    {"4MiB", 4 << 20},
	    {"8KiB", 8192},
	    {"1M", 1 << 20},
	    {"8k", 8192},
	    {"8K", 8192},
	    {"2Mi", 2 << 20},
	    {"1G", 1 << 30},
	    {"1 MiB", 1 << 20},
	    {"1024", 1024},
	    {"0", 0},
	    {"2147483647", INT_MAX},
	    {"4x", -1},
	    {"4MB", -1},
	    {"-1", -1},
	    {"", -1},
	    {"1.5M", -1},
	    {"M", -1},
	    {"2G", -1},
	};
	struct trpc_server_config cfg;
	const char *why;

	(void)state;
	check_values("limits.max_recv_message_size", cases, ARRAY_LEN(cases),
	             FIELD(max_recv_message_size));

	trpc_server_config_init(&cfg);
	assert_int_equal(set1(&cfg, "limits.max_recv_message_size", "4x", &why), TRPC_ERR_CONFIG);
	assert_why(why, "[limits] max_recv_message_size: \"4x\": not a size");
	assert_int_equal(set1(&cfg, "http2.max_header_list_size", "512", &why), TRPC_ERR_CONFIG);
	assert_why(why, "[http2] max_header_list_size: \"512\": must be at least 1024 bytes");
	assert_int_equal(set1(&cfg, "http2.max_header_list_size", "2MiB", &why), TRPC_ERR_CONFIG);
	assert_why(why, "[http2] max_header_list_size: \"2MiB\": must be at most 1048576 bytes");
	assert_int_equal(set1(&cfg, "http2.max_header_list_size", "1MiB", &why), 0);
	assert_int_equal(set1(&cfg, "http2.max_header_list_size", "1k", &why), 0);
	assert_int_equal(set1(&cfg, "http2.initial_window_size", "65534", &why), TRPC_ERR_CONFIG);
	assert_int_equal(set1(&cfg, "http2.initial_window_size", "65535", &why), 0);
	assert_int_equal(set1(&cfg, "http2.initial_window_size", "2147483647", &why), 0);
	assert_int_equal(set1(&cfg, "http2.initial_window_size", "2GiB", &why), TRPC_ERR_CONFIG);
	trpc_server_config_clear(&cfg);
}

static void test_ints(void **state)
{
	static const struct value_case cases[] = {
	    {"1", 1}, {"200", 200}, {"2147483647", INT_MAX}, {"0", -1},  {"-1", -1}, {"12abc", -1},
	    {"", -1}, {" 1", -1},   {"2147483648", -1},      {"1k", -1},
	};
	struct trpc_server_config cfg;
	const char *why;

	(void)state;
	check_values("http2.max_concurrent_streams", cases, ARRAY_LEN(cases),
	             FIELD(max_concurrent_streams));

	trpc_server_config_init(&cfg);
	assert_int_equal(set1(&cfg, "io_threads", "-1", &why), TRPC_ERR_CONFIG);
	assert_why(why, "[server] io_threads: \"-1\": must be at least 0");
	assert_int_equal(set1(&cfg, "io_threads", "many", &why), TRPC_ERR_CONFIG);
	assert_why(why, "[server] io_threads: \"many\": not an integer");
	trpc_server_config_clear(&cfg);
}

static void test_bools(void **state)
{
	static const struct value_case cases[] = {
	    {"true", 1}, {"false", 0}, {"yes", 1}, {"no", 0}, {"on", 1},     {"off", 0}, {"1", 1},
	    {"0", 0},    {"TRUE", 1},  {"Off", 0}, {"2", -1}, {"maybe", -1}, {"", -1},   {"y", -1},
	};
	struct trpc_server_config cfg;
	const char *why;

	(void)state;
	check_values("keepalive.permit_without_calls", cases, ARRAY_LEN(cases),
	             FIELD(permit_keepalive_without_calls));

	trpc_server_config_init(&cfg);
	assert_int_equal(set1(&cfg, "keepalive.permit_without_calls", "maybe", &why),
	                 TRPC_ERR_CONFIG);
	assert_why(why, "[keepalive] permit_without_calls: \"maybe\": "
	                "not a boolean (true/false, yes/no, on/off, 1/0)");
	trpc_server_config_clear(&cfg);
}

static void test_enums(void **state)
{
	static const struct value_case cases[] = {
	    {"none", TRPC_CLIENT_AUTH_NONE},
	    {"optional", TRPC_CLIENT_AUTH_OPTIONAL},
	    {"require", TRPC_CLIENT_AUTH_REQUIRE},
	    {"REQUIRE", TRPC_CLIENT_AUTH_REQUIRE},
	    {"always", -1},
	    {"", -1},
	    {"2", -1},
	};
	struct trpc_server_config cfg;
	const char *why;

	(void)state;
	check_values("tls.client_auth", cases, ARRAY_LEN(cases), FIELD(tls_client_auth));

	trpc_server_config_init(&cfg);
	assert_int_equal(set1(&cfg, "tls.client_auth", "always", &why), TRPC_ERR_CONFIG);
	assert_why(why, "[tls] client_auth: \"always\": not one of none, optional, require");

	/* log_level is a string restricted to its names, stored in lower case */
	assert_int_equal(set1(&cfg, "log_level", "DEBUG", &why), 0);
	assert_string_equal(cfg.log_level, "debug");
	assert_int_equal(set1(&cfg, "server.log_level", "warn", &why), 0);
	assert_string_equal(cfg.log_level, "warn");
	assert_int_equal(set1(&cfg, "log_level", "verbose", &why), TRPC_ERR_CONFIG);
	assert_why(why, "[server] log_level: \"verbose\": not one of error, warn, info, debug");
	assert_int_equal(set1(&cfg, "log_level", "", &why), TRPC_ERR_CONFIG);
	assert_string_equal(cfg.log_level, "warn");
	trpc_server_config_clear(&cfg);
}

static void test_strings(void **state)
{
	struct trpc_server_config cfg;
	const char *why;

	(void)state;
	trpc_server_config_init(&cfg);
	assert_int_equal(set1(&cfg, "tls_listen", "0.0.0.0:50052", &why), 0);
	assert_string_equal(cfg.tls_listen, "0.0.0.0:50052");
	assert_int_equal(set1(&cfg, "tls_listen", "[::]:50052", &why), 0); /* replaces, no leak */
	assert_string_equal(cfg.tls_listen, "[::]:50052");
	assert_int_equal(set1(&cfg, "tls_listen", "", &why), 0); /* empty means none */
	assert_null(cfg.tls_listen);
	assert_int_equal(set1(&cfg, "tls.cert_file", "/etc/tasker/cert.pem", &why), 0);
	assert_string_equal(cfg.tls_cert_file, "/etc/tasker/cert.pem");
	trpc_server_config_clear(&cfg);
}

/* ------------------------------------------------------------------ trpc_server_config_set */

static void test_set_key_forms(void **state)
{
	struct trpc_server_config cfg;
	const char *why = NULL;

	(void)state;
	trpc_server_config_init(&cfg);
	assert_int_equal(trpc_server_config_set(&cfg, "keepalive", "time", "1s", &why), 0);
	assert_int_equal(cfg.keepalive_time_ms, 1000);
	assert_int_equal(trpc_server_config_set(&cfg, NULL, "keepalive.time", "2s", &why), 0);
	assert_int_equal(cfg.keepalive_time_ms, 2000);
	assert_int_equal(trpc_server_config_set(&cfg, "", "workers", "4", &why), 0);
	assert_int_equal(cfg.workers, 4);
	assert_int_equal(trpc_server_config_set(&cfg, NULL, "server.workers", "5", &why), 0);
	assert_int_equal(cfg.workers, 5);
	assert_null(why); /* untouched on success */

	assert_int_equal(trpc_server_config_set(&cfg, NULL, "foo", "1", &why), TRPC_ERR_CONFIG);
	assert_why(why, "unknown key \"server.foo\"");
	assert_int_equal(trpc_server_config_set(&cfg, "server", "keepalive.time", "1s", &why),
	                 TRPC_ERR_CONFIG);
	assert_why(why, "unknown key \"server.keepalive.time\"");
	assert_int_equal(trpc_server_config_set(&cfg, "keepalive", "listen", "x", &why),
	                 TRPC_ERR_CONFIG);
	assert_why(why, "unknown key \"keepalive.listen\"");

	assert_int_equal(trpc_server_config_set(&cfg, NULL, NULL, "1", &why), TRPC_ERR_INVALID);
	assert_int_equal(trpc_server_config_set(&cfg, NULL, "workers", NULL, &why),
	                 TRPC_ERR_INVALID);
	assert_int_equal(trpc_server_config_set(&cfg, NULL, "workers", "x", NULL), TRPC_ERR_CONFIG);
	trpc_server_config_clear(&cfg);
}

/* ------------------------------------------------------------------ whole-config checks */

static void test_watermarks_checked_after_loading(void **state)
{
	struct trpc_server_config cfg;
	const char *why;
	char *argv[] = {"prog", "--limits.queue_low_watermark=5000"};
	char *fixed[] = {"prog", "--limits.queue_low_watermark=5000",
	                 "--limits.queue_high_watermark=6000"};

	(void)state;
	/* one key at a time may pass through an inconsistent state */
	trpc_server_config_init(&cfg);
	assert_int_equal(set1(&cfg, "limits.queue_low_watermark", "5000", &why), 0);
	trpc_server_config_clear(&cfg);

	assert_int_equal(load(&cfg, NULL, ARRAY_LEN(argv), argv, &why), TRPC_ERR_CONFIG);
	assert_why(why, "[limits] queue_low_watermark (5000) must be less than "
	                "queue_high_watermark (4096)");
	trpc_server_config_clear(&cfg);

	assert_int_equal(load(&cfg, NULL, ARRAY_LEN(fixed), fixed, &why), 0);
	assert_int_equal(cfg.queue_low_watermark, 5000);
	assert_int_equal(cfg.queue_high_watermark, 6000);
	trpc_server_config_clear(&cfg);
}

static void test_listener_and_tls_checks(void **state)
{
	struct trpc_server_config cfg;
	const char *why;
	char *none[] = {"prog", "--listen="};
	char *tls[] = {"prog", "--tls_listen=127.0.0.1:0"};
	char *tls_ok[] = {"prog", "--listen=", "--tls_listen=127.0.0.1:0", "--tls.cert_file=/c.pem",
	                  "--tls.key_file=/k.pem"};
	char *mtls[] = {"prog", "--tls.client_auth=optional"};

	(void)state;
	assert_int_equal(load(&cfg, NULL, ARRAY_LEN(none), none, &why), TRPC_ERR_CONFIG);
	assert_why(why, "no listener: [server] listen and tls_listen are both empty");
	trpc_server_config_clear(&cfg);

	assert_int_equal(load(&cfg, NULL, ARRAY_LEN(tls), tls, &why), TRPC_ERR_CONFIG);
	assert_why(why, "[server] tls_listen needs [tls] cert_file and key_file");
	trpc_server_config_clear(&cfg);

	assert_int_equal(load(&cfg, NULL, ARRAY_LEN(tls_ok), tls_ok, &why), 0);
	assert_null(cfg.listen);
	assert_string_equal(cfg.tls_listen, "127.0.0.1:0");
	trpc_server_config_clear(&cfg);

	assert_int_equal(load(&cfg, NULL, ARRAY_LEN(mtls), mtls, &why), TRPC_ERR_CONFIG);
	assert_why(why, "[tls] client_auth = optional needs [tls] client_ca_file");
	trpc_server_config_clear(&cfg);
}

/* ------------------------------------------------------------------ extra */

static void test_extra_receives_unknown_keys(void **state)
{
	struct trpc_server_config cfg;
	struct extra_log log = {.accept = {"app", "server"}};
	const char *why;
	const char *path = write_conf("[app]\n"
	                              "pid_file = /run/taskerd.pid\n"
	                              "[server]\n"
	                              "workers = 2\n"
	                              "config_check = yes\n");
	char *argv[] = {"prog", "--config", "/etc/tasker/taskerd.conf", "--app.debug=1",
	                "--keepalive.time=1s"};

	(void)state;
	trpc_server_config_init(&cfg);
	assert_int_equal(
	    trpc_server_config_load(&cfg, path, ARRAY_LEN(argv), argv, on_extra, &log, &why), 0);
	assert_int_equal(log.n, 4); /* known keys never reach extra */
	assert_true(saw_call(&log, "app", "pid_file", "/run/taskerd.pid"));
	assert_true(saw_call(&log, "server", "config_check", "yes"));
	assert_true(saw_call(&log, "server", "config", "/etc/tasker/taskerd.conf"));
	assert_true(saw_call(&log, "app", "debug", "1"));
	assert_int_equal(cfg.workers, 2);
	assert_int_equal(cfg.keepalive_time_ms, 1000);
	trpc_server_config_clear(&cfg);
}

static void test_extra_rejections(void **state)
{
	struct trpc_server_config cfg;
	struct extra_log app_only = {.accept = {"app"}};
	struct extra_log picky = {.accept = {"app"}, .verdict = TRPC_ERR_INVALID};
	const char *why, *path;

	(void)state;
	/* extra does not know it either: still an error naming the key */
	path = write_conf("[app]\nx = 1\n[other]\ny = 2\n");
	trpc_server_config_init(&cfg);
	assert_int_equal(trpc_server_config_load(&cfg, path, 0, NULL, on_extra, &app_only, &why),
	                 TRPC_ERR_CONFIG);
	assert_why(why, "%s:4: unknown key \"other.y\"", path);
	assert_true(saw_call(&app_only, "other", "y", "2"));
	trpc_server_config_clear(&cfg);

	/* extra knows the key but not the value: its code is passed on */
	trpc_server_config_init(&cfg);
	assert_int_equal(trpc_server_config_load(&cfg, path, 0, NULL, on_extra, &picky, &why),
	                 TRPC_ERR_INVALID);
	assert_why(why, "%s:2: [app] x: \"1\": rejected by the program", path);
	trpc_server_config_clear(&cfg);
}

/* ------------------------------------------------------------------ confkeys */

/* trpc_log for confkeys.c: keeps the lines (the library's log.c is not linked). */
static char logged[8][512];
static int n_logged;

void trpc_log(int level, const char *fmt, ...)
{
	va_list ap;

	(void)level;
	if (n_logged >= (int)ARRAY_LEN(logged))
		return;
	va_start(ap, fmt);
	vsnprintf(logged[n_logged++], sizeof(logged[0]), fmt, ap);
	va_end(ap);
}

/* The value of key `name` ("section.key") in cfg, as trpc_server_config_value spells it. */
static const char *value_of(const struct trpc_server_config *cfg, const char *name, char *buf,
                            size_t size)
{
	const char *section, *key;
	char full[128];

	for (size_t i = 0; trpc_server_config_key(i, &section, &key) == 0; i++) {
		snprintf(full, sizeof(full), "%s.%s", section, key);
		if (strcmp(full, name) == 0) {
			assert_int_equal(trpc_server_config_value(cfg, i, buf, size), 0);
			return buf;
		}
	}
	fail_msg("no key %s", name);
	return NULL;
}

static void test_value_spelling(void **state)
{
	static const struct {
		const char *key, *set, *want;
	} cases[] = {
	    {"keepalive.timeout", NULL, "20s"},
	    {"keepalive.time", NULL, "2h"},
	    {"keepalive.max_connection_idle", NULL, "0"},
	    {"limits.retry_pushback", NULL, "100ms"},
	    {"http2.initial_window_size", NULL, "1MiB"},
	    {"http2.max_header_list_size", NULL, "8KiB"},
	    {"keepalive.permit_without_calls", NULL, "false"},
	    {"tls.client_auth", NULL, "none"},
	    {"server.tls_listen", NULL, ""},
	    {"server.max_connections", NULL, "20000"},
	    {"keepalive.timeout", "20000ms", "20s"},
	    {"keepalive.timeout", "1h30m", "90m"},
	    {"keepalive.timeout", "1500", "1500ms"},
	    {"limits.max_recv_message_size", "1000", "1000"},
	    {"limits.max_recv_message_size", "2048k", "2MiB"},
	    {"log.format", "JSON", "json"},
	};
	struct trpc_server_config cfg;
	const char *why;
	char buf[64];

	(void)state;
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		trpc_server_config_init(&cfg);
		if (cases[i].set != NULL)
			assert_int_equal(set1(&cfg, cases[i].key, cases[i].set, &why), 0);
		assert_string_equal(value_of(&cfg, cases[i].key, buf, sizeof(buf)), cases[i].want);
		trpc_server_config_clear(&cfg);
	}
	assert_int_equal(trpc_server_config_value(&cfg, 10000, buf, sizeof(buf)),
	                 TRPC_ERR_NOT_FOUND);
}

/* Every value read back through its own spelling is the same value. */
static void test_value_round_trip(void **state)
{
	struct trpc_server_config a, b;
	const char *section, *key, *why;
	char buf[256];

	(void)state;
	trpc_server_config_init(&a);
	assert_int_equal(set1(&a, "keepalive.max_connection_age", "1d2h3m4s5ms", &why), 0);
	assert_int_equal(set1(&a, "limits.max_outbound_bytes", "1G", &why), 0);
	assert_int_equal(set1(&a, "ratelimit.enabled", "yes", &why), 0);
	trpc_server_config_init(&b);
	for (size_t i = 0; trpc_server_config_key(i, &section, &key) == 0; i++) {
		assert_int_equal(trpc_server_config_value(&a, i, buf, sizeof(buf)), 0);
		assert_int_equal(trpc_server_config_set(&b, section, key, buf, &why), 0);
	}
	assert_config_equal(&a, &b);
	trpc_server_config_clear(&a);
	trpc_server_config_clear(&b);
}

static void test_value_shown(void **state)
{
	static const struct {
		const char *name, *value, *want;
	} cases[] = {
	    {"auth.api_key.ops.key", "abcdefghijklmnop", "****"},
	    {"auth.jwt_public_key_file", "/etc/keys/pub.pem", "****"},
	    {"web.client_secret", "x", "****"},
	    {"worker.auth_token", "", ""},
	    {"database.PASSWORD", "x", "****"},
	    {"database.url", "postgresql://tasker:pw@db:5432/tasker",
	     "postgresql://tasker:****@db:5432/tasker"},
	    {"database.url", "postgres://u:p@ss@h/d?sslmode=require",
	     "postgres://u:****@h/d?sslmode=require"},
	    {"database.url", "postgresql://tasker@db/tasker", "postgresql://tasker@db/tasker"},
	    {"database.url", "postgresql://db/tasker?user=a&password=b&x=1",
	     "postgresql://db/tasker?user=a&password=****&x=1"},
	    {"database.url", "host=db password = secret dbname=t",
	     "host=db password = **** dbname=t"},
	    {"database.url", "host=db password='a\\'b c' dbname=t",
	     "host=db password=**** dbname=t"},
	    {"database.url", "host=/run/pg dbname=tasker", "host=/run/pg dbname=tasker"},
	    {"orchestration.template_path", "/etc/tasker/templates", "/etc/tasker/templates"},
	};
	char buf[128], small[8];

	(void)state;
	for (size_t i = 0; i < ARRAY_LEN(cases); i++)
		assert_string_equal(
		    trpc_config_value_shown(cases[i].name, cases[i].value, buf, sizeof(buf)),
		    cases[i].want);
	/* Cut to the buffer, never past it. */
	assert_string_equal(trpc_config_value_shown("a.b", "0123456789", small, sizeof(small)),
	                    "0123456");
}

static void test_warn_restart(void **state)
{
	static const char *const reloaded[] = {"auth.*", "log.level", "server.log_level", NULL};
	trpc_config_keys *old = trpc_config_keys_new(), *fresh = trpc_config_keys_new();
	struct trpc_server_config cfg;
	const char *why;

	(void)state;
	assert_non_null(old);
	assert_non_null(fresh);
	trpc_server_config_init(&cfg);
	assert_int_equal(trpc_config_keys_add_server(old, &cfg), 0);
	assert_int_equal(set1(&cfg, "keepalive.timeout", "45000ms", &why), 0);
	assert_int_equal(set1(&cfg, "log.level", "debug", &why), 0);
	assert_int_equal(trpc_config_keys_add_server(fresh, &cfg), 0);
	trpc_server_config_clear(&cfg);

	assert_int_equal(trpc_config_keys_set(old, "database", "pool_size", "5"), 0);
	assert_int_equal(trpc_config_keys_set(old, "database", "url", "x"), 0);
	assert_int_equal(trpc_config_keys_set(old, "auth.api_key.ops", "key", "first"), 0);
	assert_int_equal(trpc_config_keys_set(old, "dlq", "staleness_batch", "10"), 0);
	/* the last value of a key wins */
	assert_int_equal(trpc_config_keys_set(fresh, "database", "pool_size", "6"), 0);
	assert_int_equal(trpc_config_keys_set(fresh, "database", "pool_size", "7"), 0);
	assert_int_equal(trpc_config_keys_set(fresh, "database", "url", "postgresql://u:pw@h/d"),
	                 0);
	assert_int_equal(trpc_config_keys_set(fresh, "auth.api_key.ops", "key", "second"), 0);
	assert_int_equal(trpc_config_keys_set(fresh, "web", "request_timeout_ms", "100"), 0);

	n_logged = 0;
	assert_int_equal(trpc_config_keys_warn_restart(old, fresh, reloaded), 5);
	assert_int_equal(n_logged, 5);
	assert_string_equal(logged[0],
	                    "reload: keepalive.timeout changed from \"20s\" to \"45s\"; restart "
	                    "to apply");
	assert_string_equal(logged[1],
	                    "reload: database.pool_size changed from \"5\" to \"7\"; restart to "
	                    "apply");
	assert_string_equal(logged[2], "reload: database.url changed from \"x\" to "
	                               "\"postgresql://u:****@h/d\"; restart to apply");
	assert_string_equal(logged[3], "reload: dlq.staleness_batch changed from \"10\" to "
	                               "(default); restart to apply");
	assert_string_equal(logged[4], "reload: web.request_timeout_ms changed from (default) to "
	                               "\"100\"; restart to apply");
	/* The same lists the other way round, everything reloadable: nothing. */
	static const char *const all[] = {"*", NULL};
	assert_int_equal(trpc_config_keys_warn_restart(fresh, old, all), 0);
	assert_int_equal(trpc_config_keys_warn_restart(old, old, NULL), 0);
	trpc_config_keys_free(old);
	trpc_config_keys_free(fresh);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
	    T(test_defaults),
	    T(test_defaults_load_cleanly),
	    T(test_sample_conf_matches_defaults),
	    T(test_file),
	    T(test_file_keys_before_sections),
	    T(test_file_bad_value_names_key_and_line),
	    T(test_file_unknown_key),
	    T(test_file_syntax_errors),
	    T(test_file_missing),
	    T(test_env_overrides_file),
	    T(test_env_bad_value_names_variable),
	    T(test_env_unknown_is_ignored_and_offered),
	    T(test_argv_overrides_env),
	    T(test_argv_errors),
	    T(test_ratelimit_services),
	    T(test_durations),
	    T(test_sizes),
	    T(test_ints),
	    T(test_bools),
	    T(test_enums),
	    T(test_strings),
	    T(test_set_key_forms),
	    T(test_watermarks_checked_after_loading),
	    T(test_listener_and_tls_checks),
	    T(test_extra_receives_unknown_keys),
	    T(test_extra_rejections),
	    T(test_value_spelling),
	    T(test_value_round_trip),
	    T(test_value_shown),
	    T(test_warn_restart),
#undef T
	};

	return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}

/*
 * tasker-cli: the command-line client of taskerd and tasker-worker.
 *
 *   tasker-cli [GLOBAL OPTIONS] GROUP COMMAND [OPTIONS] [ARGUMENTS]
 *
 * This file parses the command line against the command tables of the
 * cmd_*.c files, prints help, resolves the profile and runs the command.
 * Global options may come before the group or anywhere after the command.
 * Exit codes: enum cli_exit in cli.h (also printed by --help).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "config.h"
#include "cli/cli.h"
#include "cli/transport.h"

#define PROG "tasker-cli"

/* Help layout: descriptions start at HELP_COLUMN and wrap at HELP_WIDTH. */
#define HELP_COLUMN 30
#define HELP_WIDTH  79

struct group {
	const char *name;
	const char *summary;
	const struct cli_cmd *cmds;
};

static const struct group groups[] = {
    {"task", "create, inspect, watch and repair tasks and their steps", cli_task_cmds},
    {"dlq", "the dead-letter queue: entries, investigation, statistics", cli_dlq_cmds},
    {"template", "task templates known to the orchestration server", cli_template_cmds},
    {"system", "server health and configuration", cli_system_cmds},
    {"analytics", "performance metrics and bottlenecks", cli_analytics_cmds},
    {"auth", "RSA keys and JWT tokens for the servers' auth", cli_auth_cmds},
    {"profile", "client profiles (settings file)", cli_profile_cmds},
};

#define N_GROUPS (sizeof groups / sizeof groups[0])

/* Index of each global option in global_opts; the order matters. */
enum {
	G_PROFILE = 0,
	G_CONFIG,
	G_TRANSPORT,
	G_URL,
	G_FORMAT,
	G_TIMEOUT,
	G_VERBOSE,
	G_HELP,
	G_VERSION,
	G_LIST_OPTIONS
};

static const struct cli_opt global_opts[] = {
    [G_PROFILE] = {"profile", 'p', "NAME",
                   "profile to use (default: $TASKER_CLIENT_PROFILE, else \"default\")", 0},
    [G_CONFIG] = {"config", 'c', "FILE",
                  "profile file (default: $XDG_CONFIG_HOME/tasker/client.conf, then "
                  "./tasker-client.conf)",
                  0},
    [G_TRANSPORT] = {"transport", 0, "grpc|rest", "transport (default: the profile's, grpc)", 0},
    [G_URL] = {"url", 0, "URL", "orchestration server URL (default: the profile's)", 0},
    [G_FORMAT] = {"format", 0, "table|json",
                  "output: aligned text (default) or the response as JSON", 0},
    [G_TIMEOUT] = {"timeout", 0, "MS", "deadline of each request in milliseconds (30000)", 0},
    [G_VERBOSE] = {"verbose", 'v', NULL, "print requests on stderr (twice: also the runtime's log)",
                   0},
    [G_HELP] = {"help", 'h', NULL, "show help and exit", 0},
    [G_VERSION] = {"version", 0, NULL, "show the version and exit", 0},
    [G_LIST_OPTIONS] = {"list-options", 0, NULL,
                        "print every global option, command and command option, one a line", 0},
    {NULL, 0, NULL, NULL, 0},
};

const struct cli_opt cli_no_opts[] = {
    {NULL, 0, NULL, NULL, 0},
};

static const char exit_codes_text[] =
    "Exit status (the same on both transports):\n"
    "  0  success\n"
    "  1  other failure (server internal error, unreadable file or response)\n"
    "  2  usage: bad command line, profile file or setting\n"
    "  3  not found (NOT_FOUND, HTTP 404)\n"
    "  4  request refused (INVALID_ARGUMENT, ALREADY_EXISTS, FAILED_PRECONDITION,\n"
    "     HTTP 400/409/422; a cancel the server declines)\n"
    "  5  credentials rejected (UNAUTHENTICATED, PERMISSION_DENIED, HTTP 401/403;\n"
    "     auth validate-token: the token does not verify)\n"
    "  6  server unreachable or overloaded (UNAVAILABLE, DEADLINE_EXCEEDED,\n"
    "     RESOURCE_EXHAUSTED, HTTP 408/429/502/503/504)\n"
    "  7  task watch: the task ended without success (error, cancelled)\n";

/* ------------------------------------------------------------------ messages */

void cli_error(const char *fmt, ...)
{
	va_list ap;

	fputs(PROG ": ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

int cli_usage_error(const struct cli_cmd *cmd, const char *fmt, ...)
{
	va_list ap;

	fputs(PROG ": ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	if (cmd != NULL) {
		fprintf(stderr, "\n(see '" PROG " %s %s --help')\n", cmd->group, cmd->name);
	} else {
		fputs("\n(see '" PROG " --help')\n", stderr);
	}
	return CLI_EXIT_USAGE;
}

int cli_build_failed(void)
{
	cli_error("cannot build the request (out of memory, or text that is not UTF-8)");
	return CLI_EXIT_ERROR;
}

void cli_verbose(const struct cli *c, int level, const char *fmt, ...)
{
	va_list ap;

	if (c->verbose < level) {
		return;
	}
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* ------------------------------------------------------------------ help */

/* Writes `text` from column `indent` on, wrapped at HELP_WIDTH columns. */
static void print_wrapped(FILE *out, const char *text, int indent, int col)
{
	const char *p = text;

	while (*p != '\0') {
		size_t room = (size_t)(HELP_WIDTH - indent), n = strlen(p), cut = n;

		if (n > room) {
			for (cut = room; cut > 0 && p[cut] != ' '; cut--) {
			}
			if (cut == 0) {
				cut = strcspn(p, " ");
			}
		}
		fprintf(out, "%*s%.*s\n", col < indent ? indent - col : 0, "", (int)cut, p);
		col = 0;
		p += cut;
		while (*p == ' ') {
			p++;
		}
	}
}

static void print_opts(FILE *out, const struct cli_opt *opts)
{
	const struct cli_opt *o;
	char left[96], help[512];

	for (o = opts; o->name != NULL; o++) {
		int n = 0;

		if (o->short_name != 0) {
			n = snprintf(left, sizeof left, "-%c, ", o->short_name);
		}
		snprintf(left + n, sizeof left - (size_t)n, "--%s%s%s", o->name, o->arg ? " " : "",
		         o->arg ? o->arg : "");
		snprintf(help, sizeof help, "%s%s", o->help, o->required ? " (required)" : "");
		fprintf(out, "  %s", left);
		if (strlen(left) > HELP_COLUMN - 4) {
			fputc('\n', out);
			print_wrapped(out, help, HELP_COLUMN, 0);
		} else {
			print_wrapped(out, help, HELP_COLUMN, 2 + (int)strlen(left));
		}
	}
}

static void print_top_help(FILE *out)
{
	size_t g;
	const struct cli_cmd *c;

	fprintf(out, "Usage: " PROG " [GLOBAL OPTIONS] GROUP COMMAND [OPTIONS] [ARGUMENTS]\n\n"
	             "Client of the tasker orchestration server (taskerd) and workers, over gRPC\n"
	             "or the REST API.\n\nCommands:\n");
	for (g = 0; g < N_GROUPS; g++) {
		for (c = groups[g].cmds; c->name != NULL; c++) {
			char left[64];

			snprintf(left, sizeof left, "%s %s", c->group, c->name);
			fprintf(out, "  %-26s  %s\n", left, c->summary);
		}
	}
	fprintf(out, "\nGlobal options (before GROUP or after COMMAND):\n");
	print_opts(out, global_opts);
	fprintf(out,
	        "\n'" PROG " GROUP --help' and '" PROG " GROUP COMMAND --help' describe each "
	        "command.\n\n"
	        "Settings come from profiles ('" PROG " profile show --help'), the environment\n"
	        "(TASKER_CLIENT_TRANSPORT, TASKER_ORCHESTRATION_URL, TASKER_AUTH_TOKEN, ...) and\n"
	        "the options above, each overriding the one before.\n\n%s",
	        exit_codes_text);
}

static void print_group_help(FILE *out, const struct group *g)
{
	const struct cli_cmd *c;

	fprintf(out,
	        "Usage: " PROG " [GLOBAL OPTIONS] %s COMMAND [OPTIONS] [ARGUMENTS]\n\n%s.\n\n"
	        "Commands:\n",
	        g->name, g->summary);
	for (c = g->cmds; c->name != NULL; c++) {
		fprintf(out, "  %-16s  %s\n", c->name, c->summary);
	}
	fprintf(out,
	        "\n'" PROG " %s COMMAND --help' describes a command; '" PROG
	        " --help' lists the global options and exit codes.\n",
	        g->name);
}

static void print_cmd_help(FILE *out, const struct cli_cmd *c)
{
	fprintf(out, "Usage: " PROG " [GLOBAL OPTIONS] %s %s%s%s%s\n\n%s.\n", c->group, c->name,
	        c->opts[0].name != NULL ? " [OPTIONS]" : "", c->params ? " " : "",
	        c->params ? c->params : "", c->summary);
	if (c->help != NULL) {
		fprintf(out, "\n%s", c->help);
	}
	if (c->opts[0].name != NULL) {
		fprintf(out, "\nOptions:\n");
		print_opts(out, c->opts);
	}
	fprintf(out, "\nGlobal options:\n");
	print_opts(out, global_opts);
	fprintf(out, "\n%s", exit_codes_text);
}

/* ------------------------------------------------------------------ options */

static int opt_index(const struct cli_opt *opts, const char *name, size_t len, char short_name)
{
	int i;

	for (i = 0; opts[i].name != NULL; i++) {
		if (short_name != 0
		        ? opts[i].short_name == short_name
		        : strlen(opts[i].name) == len && strncmp(opts[i].name, name, len) == 0) {
			return i;
		}
	}
	return -1;
}

const char *cli_opt(const struct cli_args *a, const char *name)
{
	int i = opt_index(a->cmd->opts, name, strlen(name), 0);

	return i < 0 ? NULL : a->val[i];
}

const char *cli_opt_or(const struct cli_args *a, const char *name, const char *def)
{
	const char *v = cli_opt(a, name);

	return v != NULL ? v : def;
}

int cli_flag(const struct cli_args *a, const char *name)
{
	int i = opt_index(a->cmd->opts, name, strlen(name), 0);

	return i >= 0 && a->count[i] > 0;
}

int cli_opt_int(const struct cli_args *a, const char *name, long def, long min, long max, long *out)
{
	const char *v = cli_opt(a, name);
	char *end;
	long n;

	if (v == NULL) {
		*out = def;
		return 0;
	}
	n = strtol(v, &end, 10);
	if (*v == '\0' || *end != '\0' || n < min || n > max) {
		return cli_usage_error(a->cmd, "--%s: '%s' is not a whole number from %ld to %ld",
		                       name, v, min, max);
	}
	*out = n;
	return 0;
}

int cli_opt_json(const struct cli_args *a, const char *name, int object_only, json_t **out)
{
	const char *v = cli_opt(a, name);
	json_error_t jerr;
	json_t *j;

	*out = NULL;
	if (v == NULL) {
		return 0;
	}
	if (strcmp(v, "-") == 0) {
		j = json_loadf(stdin, JSON_DECODE_ANY, &jerr);
	} else if (v[0] == '@') {
		j = json_load_file(v + 1, JSON_DECODE_ANY, &jerr);
	} else {
		j = json_loads(v, JSON_DECODE_ANY, &jerr);
	}
	if (j == NULL) {
		return cli_usage_error(a->cmd, "--%s: not valid JSON: %s (line %d, column %d)",
		                       name, jerr.text, jerr.line, jerr.column);
	}
	if (object_only && !json_is_object(j)) {
		json_decref(j);
		return cli_usage_error(a->cmd, "--%s: expected a JSON object ({...})", name);
	}
	*out = j;
	return 0;
}

/*
 * --list-options: every global option, command ("task create") and command
 * option, one a line, each once (t/96-manpages.t checks them against the
 * manual page).
 */
static void list_options(void)
{
	const struct cli_opt *o;
	const struct cli_cmd *c, *d;
	size_t g, h;

	for (o = global_opts; o->name != NULL; o++) {
		printf("--%s\n", o->name);
	}
	for (g = 0; g < N_GROUPS; g++) {
		for (c = groups[g].cmds; c->name != NULL; c++) {
			printf("%s %s\n", c->group, c->name);
		}
	}
	for (g = 0; g < N_GROUPS; g++) {
		for (c = groups[g].cmds; c->name != NULL; c++) {
			for (o = c->opts; o->name != NULL; o++) {
				int seen = opt_index(global_opts, o->name, strlen(o->name), 0) >= 0;

				/* printed already for an earlier command? */
				for (h = 0; h <= g && !seen; h++) {
					for (d = groups[h].cmds; d != c && d->name != NULL && !seen;
					     d++) {
						seen = opt_index(d->opts, o->name, strlen(o->name),
						                 0) >= 0;
					}
				}
				if (!seen) {
					printf("--%s\n", o->name);
				}
			}
		}
	}
}

/* Stores a global option's value into the context. */
static int set_global(struct cli *c, int i, const char *value, const struct cli_cmd *cmd)
{
	switch (i) {
	case G_PROFILE:
		c->profile_name = value;
		break;
	case G_CONFIG:
		c->config_path = value;
		break;
	case G_TRANSPORT:
		if (strcmp(value, "grpc") != 0 && strcmp(value, "rest") != 0) {
			return cli_usage_error(cmd, "--transport: '%s' is neither grpc nor rest",
			                       value);
		}
		c->transport = value;
		break;
	case G_URL:
		c->url = value;
		break;
	case G_FORMAT:
		if (strcmp(value, "table") == 0) {
			c->format = CLI_FORMAT_TABLE;
		} else if (strcmp(value, "json") == 0) {
			c->format = CLI_FORMAT_JSON;
		} else {
			return cli_usage_error(cmd, "--format: '%s' is neither table nor json",
			                       value);
		}
		break;
	case G_TIMEOUT:
		c->timeout = value;
		break;
	case G_VERBOSE:
		c->verbose++;
		break;
	default:
		break;
	}
	return 0;
}

/* What the parser found besides options. */
struct parsed {
	int help, version, list_options;
};

/*
 * Parses one option at argv[*i] ("--name", "--name=value", "--name value",
 * "-x", "-xVALUE", "-x VALUE", "-vv") against the command's options (when
 * `cmd` is set) and the global ones. Advances *i past what it used.
 */
static int parse_option(struct cli *c, struct cli_args *a, const struct cli_cmd *cmd, int argc,
                        char **argv, int *i, struct parsed *pr)
{
	const char *arg = argv[*i];
	const char *name, *eq, *value = NULL;
	const struct cli_opt *table;
	size_t len;
	int idx = -1, global = 0;
	char short_name = 0;

	if (arg[1] == '-') {
		name = arg + 2;
		eq = strchr(name, '=');
		len = eq != NULL ? (size_t)(eq - name) : strlen(name);
		if (eq != NULL) {
			value = eq + 1;
		}
	} else {
		name = arg + 1;
		short_name = arg[1];
		len = 1;
		if (arg[2] != '\0') {
			value = arg + 2; /* "-pNAME", or more flags: "-vv" */
		}
	}
	if (cmd != NULL) {
		idx = opt_index(cmd->opts, name, len, short_name);
	}
	if (idx < 0) {
		idx = opt_index(global_opts, name, len, short_name);
		global = 1;
	}
	if (idx < 0) {
		return cli_usage_error(cmd, "unknown option '%s'", arg);
	}
	table = global ? global_opts : cmd->opts;
	if (table[idx].arg == NULL) {
		if (value != NULL && short_name == 0) {
			return cli_usage_error(cmd, "option '--%s' takes no value",
			                       table[idx].name);
		}
		if (value != NULL) {
			/* a cluster of flags: "-vv" */
			char *rest = argv[*i] + 1;

			memmove(rest, rest + 1, strlen(rest));
			(*i)--;
		}
	} else if (value == NULL) {
		if (*i + 1 >= argc) {
			return cli_usage_error(cmd, "option '%s' needs a value (%s)", arg,
			                       table[idx].arg);
		}
		value = argv[++*i];
	}
	(*i)++;
	if (!global) {
		a->val[idx] = value;
		a->count[idx]++;
		return 0;
	}
	if (idx == G_HELP) {
		pr->help = 1;
		return 0;
	}
	if (idx == G_VERSION) {
		pr->version = 1;
		return 0;
	}
	if (idx == G_LIST_OPTIONS) {
		pr->list_options = 1;
		return 0;
	}
	return set_global(c, idx, value, cmd);
}

static const struct group *find_group(const char *name)
{
	size_t g;

	for (g = 0; g < N_GROUPS; g++) {
		if (strcmp(groups[g].name, name) == 0) {
			return &groups[g];
		}
	}
	return NULL;
}

static const struct cli_cmd *find_cmd(const struct group *g, const char *name)
{
	const struct cli_cmd *c;

	for (c = g->cmds; c->name != NULL; c++) {
		if (strcmp(c->name, name) == 0) {
			return c;
		}
	}
	return NULL;
}

static int is_option(const char *s)
{
	return s[0] == '-' && s[1] != '\0';
}

/* Checks positional count and required options. */
static int check_args(const struct cli_args *a)
{
	const struct cli_cmd *cmd = a->cmd;
	int i;

	if (a->npos < cmd->min_pos) {
		return cli_usage_error(cmd, "missing argument%s: %s %s %s",
		                       cmd->min_pos - a->npos > 1 ? "s" : "", cmd->group, cmd->name,
		                       cmd->params ? cmd->params : "");
	}
	for (i = 0; cmd->opts[i].name != NULL; i++) {
		if (cmd->opts[i].required && a->val[i] == NULL) {
			return cli_usage_error(cmd, "option --%s is required", cmd->opts[i].name);
		}
	}
	return 0;
}

/* ------------------------------------------------------------------ main */

static int run(struct cli *c, int argc, char **argv)
{
	const struct group *g;
	const struct cli_cmd *cmd;
	struct cli_args a;
	struct parsed pr;
	int i = 1, rc, dashdash = 0;

	memset(&a, 0, sizeof a);
	memset(&pr, 0, sizeof pr);
	while (i < argc && is_option(argv[i])) {
		if ((rc = parse_option(c, &a, NULL, argc, argv, &i, &pr)) != 0) {
			return rc;
		}
	}
	if (pr.version) {
		printf(PROG " %s\n", PACKAGE_VERSION);
		return CLI_EXIT_OK;
	}
	if (pr.list_options) {
		list_options();
		return CLI_EXIT_OK;
	}
	if (i >= argc || strcmp(argv[i], "help") == 0) {
		print_top_help(pr.help || i < argc ? stdout : stderr);
		return pr.help || i < argc ? CLI_EXIT_OK : CLI_EXIT_USAGE;
	}
	if ((g = find_group(argv[i])) == NULL) {
		return cli_usage_error(NULL, "unknown command group '%s'", argv[i]);
	}
	i++;
	if (i >= argc || is_option(argv[i])) {
		while (i < argc && is_option(argv[i])) {
			if ((rc = parse_option(c, &a, NULL, argc, argv, &i, &pr)) != 0) {
				return rc;
			}
		}
		print_group_help(pr.help ? stdout : stderr, g);
		return pr.help ? CLI_EXIT_OK : CLI_EXIT_USAGE;
	}
	if ((cmd = find_cmd(g, argv[i])) == NULL) {
		return cli_usage_error(NULL, "unknown command '%s %s'", g->name, argv[i]);
	}
	if (pr.help) {
		print_cmd_help(stdout, cmd);
		return CLI_EXIT_OK;
	}
	a.cmd = cmd;
	for (i++; i < argc;) {
		if (!dashdash && strcmp(argv[i], "--") == 0) {
			dashdash = 1;
			i++;
		} else if (!dashdash && is_option(argv[i])) {
			if ((rc = parse_option(c, &a, cmd, argc, argv, &i, &pr)) != 0) {
				return rc;
			}
		} else if (a.npos >= cmd->max_pos || a.npos >= CLI_MAX_POS) {
			return cli_usage_error(cmd, "unexpected argument '%s'", argv[i]);
		} else {
			a.pos[a.npos++] = argv[i++];
		}
	}
	if (pr.help) {
		print_cmd_help(stdout, cmd);
		return CLI_EXIT_OK;
	}
	if (pr.version) {
		printf(PROG " %s\n", PACKAGE_VERSION);
		return CLI_EXIT_OK;
	}
	if ((rc = check_args(&a)) != 0) {
		return rc;
	}
	if (cmd->needs & CLI_NEEDS_PROFILE) {
		struct cli_overrides o = {c->config_path, c->profile_name, c->transport, c->url,
		                          c->timeout};
		char why[1024];

		if (cli_profile_resolve(&c->prof, &o, why, sizeof why) != 0) {
			cli_error("%s", why);
			return CLI_EXIT_USAGE;
		}
	}
	return cmd->run(c, &a);
}

int main(int argc, char **argv)
{
	struct cli c;
	int rc;

	memset(&c, 0, sizeof c);
	c.argv0 = argv[0];
	c.format = CLI_FORMAT_TABLE;
	c.profile_name = getenv("TASKER_CLIENT_PROFILE");
	if (c.profile_name != NULL && *c.profile_name == '\0') {
		c.profile_name = NULL;
	}
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		cli_error("cannot initialise libcurl");
		return CLI_EXIT_ERROR;
	}
	rc = run(&c, argc, argv);
	cli_conn_free(c.conn);
	cli_profile_clear(&c.prof);
	curl_global_cleanup();
	if (fflush(stdout) != 0 && rc == CLI_EXIT_OK) {
		cli_error("cannot write the output");
		rc = CLI_EXIT_ERROR;
	}
	return rc;
}

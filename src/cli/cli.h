/*
 * cli: the command-line layer of tasker-cli: exit codes, the command and
 * option tables, parsed arguments, and the per-run context the commands
 * share (settings, output format, connection).
 *
 * Every command is one row of a table (struct cli_cmd): its group and name,
 * positional arguments, options and help text. main.c parses the command
 * line against those tables, so usage errors and --help work the same way
 * for every command.
 */
#ifndef TK_CLI_H
#define TK_CLI_H

#include <stddef.h>

#include <jansson.h>

#include "cli/profile.h"

/*
 * Exit codes. Scripts may rely on them; they are the same on both
 * transports (gRPC status / HTTP status of the REST twin):
 *
 *   0  success
 *   1  any other failure: server INTERNAL/UNKNOWN/UNIMPLEMENTED (HTTP 5xx
 *      other than 503/504), an unreadable file, a response the client
 *      cannot read
 *   2  usage: bad command line, bad profile file or setting
 *   3  not found (NOT_FOUND, HTTP 404)
 *   4  request refused: INVALID_ARGUMENT, ALREADY_EXISTS,
 *      FAILED_PRECONDITION, OUT_OF_RANGE (HTTP 400, 409, 422); also a
 *      cancel the server declines (task already finished)
 *   5  credentials: UNAUTHENTICATED, PERMISSION_DENIED (HTTP 401, 403);
 *      `auth validate-token` with a token that does not verify
 *   6  server unreachable or overloaded: connection failure, UNAVAILABLE,
 *      DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED (HTTP 408, 429, 502, 503, 504)
 *   7  `task watch`: the task ended without success (error, cancelled)
 */
enum cli_exit {
	CLI_EXIT_OK = 0,
	CLI_EXIT_ERROR = 1,
	CLI_EXIT_USAGE = 2,
	CLI_EXIT_NOT_FOUND = 3,
	CLI_EXIT_REFUSED = 4,
	CLI_EXIT_AUTH = 5,
	CLI_EXIT_UNAVAILABLE = 6,
	CLI_EXIT_TASK_FAILED = 7
};

enum cli_format { CLI_FORMAT_TABLE = 1, CLI_FORMAT_JSON = 2 };

/* ------------------------------------------------------------------ tables */

/* One option of a command: "--name VALUE" (arg != NULL) or a flag. */
struct cli_opt {
	const char *name;  /* long name without "--" */
	char short_name;   /* 0: none */
	const char *arg;   /* metavariable ("NAME"); NULL for a flag */
	const char *help;  /* one line; defaults are written here */
	unsigned required; /* 1: the command cannot run without it */
};

struct cli;
struct cli_args;

typedef int (*cli_run_fn)(struct cli *c, const struct cli_args *a);

/* Needs of a command, checked before it runs. */
#define CLI_NEEDS_PROFILE 0x1u /* resolve the profile (every command that talks to a server) */

struct cli_cmd {
	const char *group;  /* "task" */
	const char *name;   /* "create" */
	const char *params; /* positional arguments as shown in the usage line, or NULL */
	int min_pos, max_pos;
	const char *summary;        /* one line for the group's list */
	const char *help;           /* paragraphs after the usage line; may be NULL */
	const struct cli_opt *opts; /* terminated by a row with name == NULL */
	cli_run_fn run;
	unsigned needs;
};

/* The option table of a command without options. */
extern const struct cli_opt cli_no_opts[];

/* The commands of each group (cmd_*.c), each terminated by a NULL row. */
extern const struct cli_cmd cli_task_cmds[];
extern const struct cli_cmd cli_dlq_cmds[];
extern const struct cli_cmd cli_template_cmds[];
extern const struct cli_cmd cli_system_cmds[];
extern const struct cli_cmd cli_analytics_cmds[];
extern const struct cli_cmd cli_auth_cmds[];
extern const struct cli_cmd cli_profile_cmds[];

/* ------------------------------------------------------------------ arguments */

#define CLI_MAX_OPTS 32
#define CLI_MAX_POS  8

/* A parsed command line: the command's option values and positionals. */
struct cli_args {
	const struct cli_cmd *cmd;
	const char *val[CLI_MAX_OPTS]; /* by index in cmd->opts; NULL when not given */
	int count[CLI_MAX_OPTS];       /* times given (flags) */
	const char *pos[CLI_MAX_POS];
	int npos;
};

/* The value of option `name` of the command, or NULL when not given. */
const char *cli_opt(const struct cli_args *a, const char *name);
/* The value of option `name`, or `def` when not given. */
const char *cli_opt_or(const struct cli_args *a, const char *name, const char *def);
/* 1 when flag `name` was given. */
int cli_flag(const struct cli_args *a, const char *name);
/*
 * Integer option in [min, max]: 0 with *out set (to def when absent), or
 * CLI_EXIT_USAGE after printing why.
 */
int cli_opt_int(const struct cli_args *a, const char *name, long def, long min, long max,
                long *out);
/*
 * JSON option: "-" reads standard input, "@FILE" a file, anything else is
 * the JSON text. `object_only` refuses arrays and scalars. 0 with *out (a
 * new reference, NULL when the option is absent), or CLI_EXIT_USAGE.
 */
int cli_opt_json(const struct cli_args *a, const char *name, int object_only, json_t **out);

/* ------------------------------------------------------------------ context */

struct cli_conn; /* transport.h */

/* What a run shares: global options, settings, output. */
struct cli {
	const char *argv0;
	const char *profile_name; /* --profile, else TASKER_CLIENT_PROFILE, else NULL */
	const char *config_path;  /* --config */
	const char *transport;    /* --transport */
	const char *url;          /* --url */
	const char *timeout;      /* --timeout */
	enum cli_format format;
	int verbose;
	struct cli_profile prof; /* resolved when the command needs it */
	struct cli_conn *conn;   /* opened on first use */
};

/* Prints "tasker-cli: <message>" on stderr. */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* As cli_error, plus a hint at the command's --help; returns CLI_EXIT_USAGE. */
int cli_usage_error(const struct cli_cmd *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Reports a request that could not be built (out of memory, or text that
 * is not UTF-8); returns CLI_EXIT_ERROR. */
int cli_build_failed(void);
/* Prints on stderr when -v was given at least `level` times. */
void cli_verbose(const struct cli *c, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif

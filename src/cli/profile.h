/*
 * profile: the client's settings, from a profile file (INI), the
 * environment and the command line.
 *
 * File: the first of `--config FILE`, $XDG_CONFIG_HOME/tasker/client.conf
 * (~/.config/tasker/client.conf when XDG_CONFIG_HOME is unset) and
 * ./tasker-client.conf that exists. Sections are [profile.<name>]; keys
 * are those of the key table in profile.c (transport, orchestration_url,
 * ...). An unknown section or key is an error that names the file, the
 * line and the key. A value longer than one line holds continues on the
 * following lines indented by white space (for long tokens); the pieces
 * are joined without separator.
 *
 * Precedence, lowest first: built-in defaults, [profile.default], the
 * selected profile, the environment (TASKER_CLIENT_TRANSPORT,
 * TASKER_ORCHESTRATION_URL, ...), the command line (--transport, --url,
 * --timeout). Credentials are taken whole from the highest source that
 * has any, in the order TASKER_ORCHESTRATION_AUTH_TOKEN, TASKER_AUTH_TOKEN,
 * TASKER_API_KEY (+ TASKER_API_KEY_HEADER), TASKER_JWT_PRIVATE_KEY_PATH,
 * then the profile's token, api_key, jwt_private_key_path.
 */
#ifndef TK_CLI_PROFILE_H
#define TK_CLI_PROFILE_H

#include <stddef.h>

/* The settings, in the order `profile show` prints them. */
enum cli_key {
	CLI_KEY_TRANSPORT = 0,
	CLI_KEY_ORCHESTRATION_URL,
	CLI_KEY_WORKER_URL,
	CLI_KEY_TIMEOUT_MS,
	CLI_KEY_MAX_RETRIES,
	CLI_KEY_API_KEY,
	CLI_KEY_API_KEY_HEADER,
	CLI_KEY_TOKEN,
	CLI_KEY_JWT_PRIVATE_KEY_PATH,
	CLI_KEY_DESCRIPTION,
	CLI_KEY_COUNT
};

enum cli_transport { CLI_TRANSPORT_GRPC = 1, CLI_TRANSPORT_REST = 2 };

/* How requests are authenticated. */
enum cli_cred {
	CLI_CRED_NONE = 0,
	CLI_CRED_BEARER = 1,  /* Authorization: Bearer <token> */
	CLI_CRED_API_KEY = 2, /* <api_key_header>: <api_key> */
	CLI_CRED_JWT_KEY = 3  /* a short-lived token signed with the private key at `cred_value` */
};

/* The server a request goes to. */
enum cli_target { CLI_TARGET_ORCHESTRATION = 0, CLI_TARGET_WORKER = 1 };

/* Resolved settings. Strings are malloc'd and owned by the profile. */
struct cli_profile {
	char *name; /* the selected profile ("default" when none was named) */
	char *file; /* the profile file read, NULL when none was found */
	/* Effective values: value[CLI_KEY_ORCHESTRATION_URL] is the URL used,
	 * value[CLI_KEY_TIMEOUT_MS] the orchestration timeout, and so on. */
	char *value[CLI_KEY_COUNT];
	char source[CLI_KEY_COUNT][192]; /* "default", "FILE:LINE", "env NAME", "--url" */
	enum cli_transport transport;
	int timeout_ms;        /* orchestration calls */
	int worker_timeout_ms; /* worker calls (TASKER_WORKER_TIMEOUT_MS) */
	char worker_timeout_source[192];
	int max_retries;
	/* Credentials, by enum cli_target: the kind, the secret (token, API
	 * key or private-key path) and where it came from. */
	enum cli_cred cred[2];
	char *cred_value[2];
	char cred_source[2][192];
};

/* Command-line overrides (NULL: not given). */
struct cli_overrides {
	const char *config_path;
	const char *profile;
	const char *transport;
	const char *url;
	const char *timeout_ms;
};

/*
 * Resolves the settings into *p. Returns 0, or -1 after writing the reason
 * ("FILE:LINE: unknown key 'x' in [profile.y]") into why.
 */
int cli_profile_resolve(struct cli_profile *p, const struct cli_overrides *o, char *why,
                        size_t why_size);
void cli_profile_clear(struct cli_profile *p);

/* The name of a key as written in the file. */
const char *cli_profile_key_name(enum cli_key k);
/* 1 for keys whose values are masked when shown (api_key, token). */
int cli_profile_key_secret(enum cli_key k);
/* `value` for display: secrets masked ("****wxyz"). Writes into buf. */
const char *cli_profile_mask(const char *value, char *buf, size_t size);
/* "bearer token", "api key", "JWT signed with a private key", "none". */
const char *cli_profile_cred_name(enum cli_cred c);

/* One profile section of the file, for `profile list`. */
struct cli_profile_entry {
	char *name;
	int line;
	char *value[CLI_KEY_COUNT];
	int value_line[CLI_KEY_COUNT];
};

struct cli_profile_file {
	char *path; /* NULL: no file was found */
	struct cli_profile_entry *entries;
	size_t n, cap;
};

/*
 * Finds and reads the profile file (`config_path` first when not NULL).
 * No file at all is not an error (f->path stays NULL); a named file that
 * does not exist is. Returns 0 or -1 with why.
 */
int cli_profile_file_load(struct cli_profile_file *f, const char *config_path, char *why,
                          size_t why_size);
void cli_profile_file_clear(struct cli_profile_file *f);
/* The places searched, for messages: "a, b, c". Writes into buf. */
const char *cli_profile_search_text(const char *config_path, char *buf, size_t size);

#endif

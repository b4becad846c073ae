/*
 * cmd_profile: `profile list` and `profile show`: the profile file and the
 * settings a command would use, with secrets masked.
 */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/output.h"
#include "cli/profile.h"

/* The value of a setting for display: masked when secret, NULL when unset. */
static const char *shown(enum cli_key k, const char *v, char *buf, size_t size)
{
	if (v == NULL) {
		return NULL;
	}
	return cli_profile_key_secret(k) ? cli_profile_mask(v, buf, size) : v;
}

static json_t *entry_json(const struct cli_profile_entry *e, const char *selected)
{
	json_t *o = json_object();
	char buf[128];
	int k;

	if (cli_set_str(o, "name", e->name) || cli_set_int(o, "line", e->line) ||
	    cli_set_bool(o, "selected", strcmp(e->name, selected) == 0)) {
		json_decref(o);
		return NULL;
	}
	for (k = 0; k < CLI_KEY_COUNT; k++) {
		if (cli_set_str(o, cli_profile_key_name(k),
		                shown(k, e->value[k], buf, sizeof buf))) {
			json_decref(o);
			return NULL;
		}
	}
	return o;
}

static const struct cli_col list_cols[] = {
    {"", "mark"},
    {"NAME", "name"},
    {"TRANSPORT", "transport"},
    {"ORCHESTRATION URL", "orchestration_url"},
    {"DESCRIPTION", "description"},
    {NULL, NULL},
};

static int profile_list(struct cli *c, const struct cli_args *a)
{
	struct cli_profile_file f;
	const char *selected = c->profile_name != NULL ? c->profile_name : "default";
	json_t *out = json_object(), *rows = json_array(), *e;
	char why[1024], places[8192];
	size_t i;
	int rc = CLI_EXIT_OK;

	(void)a;
	if (cli_profile_file_load(&f, c->config_path, why, sizeof why) != 0) {
		json_decref(out);
		json_decref(rows);
		cli_error("%s", why);
		return CLI_EXIT_USAGE;
	}
	for (i = 0; i < f.n; i++) {
		e = entry_json(&f.entries[i], selected);
		if (e == NULL || json_array_append_new(rows, e) != 0 ||
		    (c->format == CLI_FORMAT_TABLE &&
		     cli_set_str(e, "mark", strcmp(f.entries[i].name, selected) == 0 ? "*" : ""))) {
			rc = cli_build_failed();
			goto done;
		}
	}
	if (c->format == CLI_FORMAT_JSON) {
		if (cli_set_new(out, "file", f.path != NULL ? json_string(f.path) : json_null()) ||
		    cli_set_str(out, "selected", selected) || cli_set(out, "profiles", rows)) {
			rc = cli_build_failed();
			goto done;
		}
		cli_print_json(out);
	} else if (f.path == NULL) {
		cli_error("no profile file (searched %s)",
		          cli_profile_search_text(c->config_path, places, sizeof places));
	} else {
		printf("# %s\n", f.path);
		cli_print_table(rows, list_cols);
	}
done:
	json_decref(out);
	json_decref(rows);
	cli_profile_file_clear(&f);
	return rc;
}

/* The "auth" part of `profile show` for one target. */
static json_t *cred_json(const struct cli_profile *p, enum cli_target t)
{
	const char *v = p->cred_value[t];
	char buf[128];

	return json_pack("{s:s, s:s?, s:s?}", "method", cli_profile_cred_name(p->cred[t]), "value",
	                 v == NULL                        ? NULL
	                 : p->cred[t] == CLI_CRED_JWT_KEY ? v
	                                                  : cli_profile_mask(v, buf, sizeof buf),
	                 "source", p->cred[t] != CLI_CRED_NONE ? p->cred_source[t] : NULL);
}

static json_t *setting(const char *value, const char *source)
{
	return json_pack("{s:s?, s:s}", "value", value, "source", source);
}

static json_t *show_json(const struct cli_profile *p)
{
	json_t *out = json_object(), *settings = json_object(), *auth = json_object();
	char buf[128], num[32];
	int k, bad = 0;

	for (k = 0; k < CLI_KEY_COUNT; k++) {
		bad |= cli_set_new(settings, cli_profile_key_name(k),
		                   setting(shown(k, p->value[k], buf, sizeof buf),
		                           p->value[k] != NULL ? p->source[k] : "unset"));
	}
	snprintf(num, sizeof num, "%d", p->worker_timeout_ms);
	bad |= cli_set_new(settings, "worker_timeout_ms", setting(num, p->worker_timeout_source));
	bad |= cli_set_new(auth, "orchestration", cred_json(p, CLI_TARGET_ORCHESTRATION));
	bad |= cli_set_new(auth, "worker", cred_json(p, CLI_TARGET_WORKER));
	bad |= cli_set_str(out, "name", p->name);
	bad |= cli_set_new(out, "file", p->file != NULL ? json_string(p->file) : json_null());
	bad |= cli_set(out, "settings", settings);
	bad |= cli_set(out, "auth", auth);
	json_decref(settings);
	json_decref(auth);
	if (bad) {
		json_decref(out);
		return NULL;
	}
	return out;
}

static const struct cli_col show_cols[] = {
    {"SETTING", "setting"},
    {"VALUE", "value"},
    {"SOURCE", "source"},
    {NULL, NULL},
};

/* The JSON of show_json() as table rows. */
static void show_table(json_t *j)
{
	json_t *rows = json_array(), *v, *row;
	const char *key;
	const char *targets[] = {"orchestration", "worker"};
	char name[64];
	size_t t;

	printf("profile: %s\nfile:    %s\n\n", json_string_value(json_object_get(j, "name")),
	       json_string_value(json_object_get(j, "file")) != NULL
	           ? json_string_value(json_object_get(j, "file"))
	           : "(none)");
	json_object_foreach(json_object_get(j, "settings"), key, v)
	{
		row = json_copy(v);
		if (row == NULL || cli_set_str(row, "setting", key) ||
		    json_array_append_new(rows, row) != 0) {
			break;
		}
	}
	for (t = 0; t < 2; t++) {
		json_t *a = json_object_get(json_object_get(j, "auth"), targets[t]);
		const char *val = json_string_value(json_object_get(a, "value"));
		char text[256];

		snprintf(name, sizeof name, "auth (%s)", targets[t]);
		snprintf(text, sizeof text, "%s%s%s",
		         json_string_value(json_object_get(a, "method")), val ? " " : "",
		         val ? val : "");
		row = json_pack("{s:s, s:s, s:s}", "setting", name, "value", text, "source",
		                json_string_value(json_object_get(a, "source")) != NULL
		                    ? json_string_value(json_object_get(a, "source"))
		                    : "-");
		if (row == NULL || json_array_append_new(rows, row) != 0) {
			break;
		}
	}
	cli_print_table(rows, show_cols);
	json_decref(rows);
}

static int profile_show(struct cli *c, const struct cli_args *a)
{
	struct cli_overrides o = {c->config_path, a->npos ? a->pos[0] : c->profile_name,
	                          c->transport, c->url, c->timeout};
	char why[1024];
	json_t *j;

	if (cli_profile_resolve(&c->prof, &o, why, sizeof why) != 0) {
		cli_error("%s", why);
		return CLI_EXIT_USAGE;
	}
	if ((j = show_json(&c->prof)) == NULL) {
		return cli_build_failed();
	}
	if (c->format == CLI_FORMAT_JSON) {
		cli_print_json(j);
	} else {
		show_table(j);
	}
	json_decref(j);
	return CLI_EXIT_OK;
}

#define PROFILE_HELP                                                                               \
	"Profiles live in an INI file, the first found of --config FILE,\n"                        \
	"$XDG_CONFIG_HOME/tasker/client.conf (~/.config/tasker/client.conf) and\n"                 \
	"./tasker-client.conf:\n"                                                                  \
	"\n"                                                                                       \
	"  [profile.default]\n"                                                                    \
	"  transport = grpc                  ; grpc or rest\n"                                     \
	"  orchestration_url = http://localhost:9090\n"                                            \
	"  worker_url = http://localhost:9100\n"                                                   \
	"  timeout_ms = 30000\n"                                                                   \
	"  max_retries = 3\n"                                                                      \
	"  api_key = ...                     ; sent in api_key_header (X-API-Key)\n"               \
	"  api_key_header = X-API-Key\n"                                                           \
	"  token = ...                       ; bearer token\n"                                     \
	"  jwt_private_key_path = FILE       ; sign a short-lived token with this key\n"           \
	"  description = ...\n"                                                                    \
	"\n"                                                                                       \
	"[profile.default] applies to every profile; -p NAME (or TASKER_CLIENT_PROFILE)\n"         \
	"selects [profile.NAME] on top of it. A long value (a token) may continue on the\n"        \
	"next lines, indented. The environment overrides the file:\n"                              \
	"TASKER_CLIENT_TRANSPORT, TASKER_ORCHESTRATION_URL (and, for gRPC,\n"                      \
	"TASKER_ORCHESTRATION_GRPC_URL), TASKER_WORKER_URL (TASKER_WORKER_GRPC_URL),\n"            \
	"TASKER_ORCHESTRATION_TIMEOUT_MS, TASKER_WORKER_TIMEOUT_MS, TASKER_API_KEY_HEADER,\n"      \
	"and credentials, first found wins: TASKER_ORCHESTRATION_AUTH_TOKEN\n"                     \
	"(TASKER_WORKER_AUTH_TOKEN), TASKER_AUTH_TOKEN, TASKER_API_KEY,\n"                         \
	"TASKER_JWT_PRIVATE_KEY_PATH. --transport, --url and --timeout override all.\n"

/* clang-format off */
const struct cli_cmd cli_profile_cmds[] = {
    {"profile", "list", NULL, 0, 0, "List the profiles of the profile file",
     PROFILE_HELP, cli_no_opts, profile_list, 0},
    {"profile", "show", "[name]", 0, 1, "Show the settings a profile resolves to",
     "Shows each setting with where it comes from (default, FILE:LINE, env VAR or an\n"
     "option); api_key and token are masked.\n\n" PROFILE_HELP,
     cli_no_opts, profile_show, 0},
    {NULL, NULL, NULL, 0, 0, NULL, NULL, NULL, NULL, 0},
};
/* clang-format on */

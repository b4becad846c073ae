/*
 * cmd_dlq: the `dlq` commands: DlqService over gRPC, /v1/dlq... over REST
 * (tasker-api.md §1.8, §2.1).
 */
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "cli/cli.h"
#include "cli/output.h"
#include "cli/transport.h"
#include "tasker/v1/dlq.pb-c.h"

#define DLQ_SVC "/tasker.v1.DlqService/"

/* DlqResolutionStatus without its prefix, as the REST API writes it. */
static const char *const resolution_statuses[] = {
    "pending", "manually_resolved", "permanently_failed", "cancelled", NULL,
};

static const struct cli_col entry_cols[] = {
    {"DLQ ENTRY UUID", "dlq_entry_uuid"},
    {"TASK UUID", "task_uuid"},
    {"REASON", "dlq_reason"},
    {"STATUS", "resolution_status"},
    {"ORIGINAL STATE", "original_state"},
    {"IN DLQ SINCE", "dlq_timestamp"},
    {NULL, NULL},
};

static const struct cli_col stats_cols[] = {
    {"REASON", "dlq_reason"},
    {"TOTAL", "total_entries"},
    {"PENDING", "pending"},
    {"RESOLVED", "manually_resolved"},
    {"FAILED", "permanent_failures"},
    {"CANCELLED", "cancelled"},
    {"OLDEST", "oldest_entry"},
    {"NEWEST", "newest_entry"},
    {"AVG RESOLUTION MIN", "avg_resolution_time_minutes"},
    {NULL, NULL},
};

static void show_entries(json_t *resp)
{
	cli_print_table(cli_json_rows(resp, "entries"), entry_cols);
}

static void show_entry(json_t *resp)
{
	cli_print_object(cli_json_unwrap(resp, "entry"), NULL);
}

static void show_stats(json_t *resp)
{
	cli_print_table(cli_json_rows(resp, "stats"), stats_cols);
}

static void show_update(json_t *resp)
{
	cli_print_object(resp, NULL);
}

/*
 * --status: one of resolution_statuses, any case. Writes the REST form
 * into rest and the gRPC enum value name into grpc. 0, or CLI_EXIT_USAGE.
 */
static int parse_status(const struct cli_args *a, char *rest, size_t rsize, char *grpc,
                        size_t gsize)
{
	const char *v = cli_opt(a, "status");
	const char *const *s;
	const char *p;
	size_t i;

	for (s = resolution_statuses; *s != NULL; s++) {
		if (strcasecmp(*s, v) != 0) {
			continue;
		}
		snprintf(rest, rsize, "%s", *s);
		i = (size_t)snprintf(grpc, gsize, "DLQ_RESOLUTION_STATUS_");
		for (p = *s; *p != '\0' && i + 1 < gsize; p++) {
			grpc[i++] = (char)toupper((unsigned char)*p);
		}
		grpc[i] = '\0';
		return 0;
	}
	return cli_usage_error(a->cmd,
	                       "--status: '%s' is not a resolution status (pending, "
	                       "manually_resolved, permanently_failed, cancelled)",
	                       v);
}

static int dlq_list(struct cli *c, const struct cli_args *a)
{
	struct cli_request r;
	char rest[64], grpc[96], lim[32], off[32];
	json_t *msg = NULL;
	long limit, offset;
	int rc, has_status = cli_opt(a, "status") != NULL;

	if ((rc = cli_opt_int(a, "limit", 50, 1, 1000, &limit)) != 0 ||
	    (rc = cli_opt_int(a, "offset", 0, 0, 1000000000, &offset)) != 0 ||
	    (has_status && (rc = parse_status(a, rest, sizeof rest, grpc, sizeof grpc)) != 0)) {
		return rc;
	}
	msg = json_object();
	if (cli_set_str(msg, "resolution_status", has_status ? grpc : NULL) ||
	    cli_set_int(msg, "limit", limit) || cli_set_int(msg, "offset", offset)) {
		json_decref(msg);
		return cli_build_failed();
	}
	cli_request_init(&r, DLQ_SVC "ListEntries",
	                 &tasker__v1__list_dlq_entries_request__descriptor,
	                 &tasker__v1__list_dlq_entries_response__descriptor, msg);
	snprintf(lim, sizeof lim, "%ld", limit);
	snprintf(off, sizeof off, "%ld", offset);
	cli_request_path(&r, "GET", "/v1/dlq");
	cli_request_query(&r, "resolution_status", has_status ? rest : NULL);
	cli_request_query(&r, "limit", lim);
	cli_request_query(&r, "offset", off);
	rc = cli_call_and_show(c, &r, show_entries);
	json_decref(msg);
	return rc;
}

static int dlq_get(struct cli *c, const struct cli_args *a)
{
	struct cli_request r;
	json_t *msg = cli_msg_str("task_uuid", a->pos[0]);
	int rc;

	if (msg == NULL) {
		return cli_build_failed();
	}
	cli_request_init(&r, DLQ_SVC "GetEntryByTask",
	                 &tasker__v1__get_dlq_entry_by_task_request__descriptor,
	                 &tasker__v1__get_dlq_entry_by_task_response__descriptor, msg);
	cli_request_path(&r, "GET", "/v1/dlq/task/%s", a->pos[0]);
	rc = cli_call_and_show(c, &r, show_entry);
	json_decref(msg);
	return rc;
}

static int dlq_update(struct cli *c, const struct cli_args *a)
{
	struct cli_request r;
	char rest[64], grpc[96], text[512];
	json_t *msg = NULL, *body = NULL, *meta = NULL, *resp = NULL;
	int rc, has_status = cli_opt(a, "status") != NULL;

	if ((has_status && (rc = parse_status(a, rest, sizeof rest, grpc, sizeof grpc)) != 0) ||
	    (rc = cli_opt_json(a, "metadata", 1, &meta)) != 0) {
		return rc;
	}
	msg = json_object();
	body = json_object();
	if (cli_set_str(msg, "dlq_entry_uuid", a->pos[0]) ||
	    cli_set_str(msg, "resolution_status", has_status ? grpc : NULL) ||
	    cli_set_str(msg, "resolution_notes", cli_opt(a, "notes")) ||
	    cli_set_str(msg, "resolved_by", cli_opt(a, "resolved-by")) ||
	    cli_set(msg, "metadata", meta) ||
	    cli_set_str(body, "resolution_status", has_status ? rest : NULL) ||
	    cli_set_str(body, "resolution_notes", cli_opt(a, "notes")) ||
	    cli_set_str(body, "resolved_by", cli_opt(a, "resolved-by")) ||
	    cli_set(body, "metadata", meta)) {
		rc = cli_build_failed();
		goto done;
	}
	cli_request_init(&r, DLQ_SVC "UpdateInvestigation",
	                 &tasker__v1__update_dlq_investigation_request__descriptor,
	                 &tasker__v1__update_dlq_investigation_response__descriptor, msg);
	cli_request_path(&r, "PATCH", "/v1/dlq/entry/%s", a->pos[0]);
	r.body = body;
	rc = cli_call(c, &r, &resp);
	if (resp != NULL) {
		cli_show(c, resp, show_update);
		if (json_is_false(cli_json_get(resp, "success"))) {
			cli_error("entry %s was not updated: %s", a->pos[0],
			          cli_text(cli_json_get(resp, "message"), text, sizeof text));
			rc = CLI_EXIT_REFUSED;
		}
	}
done:
	json_decref(resp);
	json_decref(msg);
	json_decref(body);
	json_decref(meta);
	return rc;
}

static int dlq_stats(struct cli *c, const struct cli_args *a)
{
	struct cli_request r;
	int rc;

	(void)a;
	cli_request_init(&r, DLQ_SVC "GetStats", &tasker__v1__get_dlq_stats_request__descriptor,
	                 &tasker__v1__get_dlq_stats_response__descriptor, NULL);
	cli_request_path(&r, "GET", "/v1/dlq/stats");
	rc = cli_call_and_show(c, &r, show_stats);
	return rc;
}

static const struct cli_opt list_opts[] = {
    {"status", 0, "STATUS",
     "only entries with this resolution status (pending, manually_resolved, "
     "permanently_failed, cancelled)",
     0},
    {"limit", 0, "N", "entries to show (default: 50)", 0},
    {"offset", 0, "N", "entries to skip (default: 0)", 0},
    {NULL, 0, NULL, NULL, 0},
};

static const struct cli_opt update_opts[] = {
    {"status", 0, "STATUS", "new resolution status (as for dlq list)", 0},
    {"notes", 0, "TEXT", "investigation notes", 0},
    {"resolved-by", 0, "WHO", "who resolved the entry", 0},
    {"metadata", 0, "JSON", "metadata, a JSON object (@FILE, - for stdin)", 0},
    {NULL, 0, NULL, NULL, 0},
};

/* clang-format off */
const struct cli_cmd cli_dlq_cmds[] = {
    {"dlq", "list", NULL, 0, 0, "List dead-letter queue entries",
     "Sends ListEntries (gRPC) or GET /v1/dlq (REST).\n",
     list_opts, dlq_list, CLI_NEEDS_PROFILE},
    {"dlq", "get", "<task_uuid>", 1, 1, "Show the latest DLQ entry of a task", NULL, cli_no_opts,
     dlq_get, CLI_NEEDS_PROFILE},
    {"dlq", "update", "<dlq_entry_uuid>", 1, 1, "Update the investigation of an entry",
     "Sends UpdateInvestigation (gRPC) or PATCH /v1/dlq/entry/<uuid> (REST). An update\n"
     "the server does not apply exits with status 4.\n",
     update_opts, dlq_update, CLI_NEEDS_PROFILE},
    {"dlq", "stats", NULL, 0, 0, "DLQ statistics by reason", NULL, cli_no_opts, dlq_stats,
     CLI_NEEDS_PROFILE},
    {NULL, NULL, NULL, 0, 0, NULL, NULL, NULL, NULL, 0},
};
/* clang-format on */

/*
 * cmd_system: the `template`, `system` and `analytics` commands
 * (TemplateService, HealthService, ConfigService, AnalyticsService and the
 * worker's health and config services; tasker-api.md §1.6, §1.7, §1.9 to
 * §1.11, §2.1, §2.2).
 */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/output.h"
#include "cli/transport.h"
#include "tasker/v1/analytics.pb-c.h"
#include "tasker/v1/config.pb-c.h"
#include "tasker/v1/health.pb-c.h"
#include "tasker/v1/templates.pb-c.h"
#include "tasker/v1/worker.pb-c.h"

/* ------------------------------------------------------------------ template */

static const struct cli_col template_cols[] = {
    {"NAMESPACE", "namespace"},     {"NAME", "name"},
    {"VERSION", "version"},         {"STEPS", "step_count"},
    {"DESCRIPTION", "description"}, {NULL, NULL},
};

static const struct cli_col step_def_cols[] = {
    {"STEP", "name"},
    {"RETRYABLE", "default_retryable"},
    {"MAX ATTEMPTS", "default_max_attempts"},
    {"DESCRIPTION", "description"},
    {NULL, NULL},
};

static const char *const steps_skip[] = {"steps", NULL};

static void show_templates(json_t *resp)
{
	cli_print_table(cli_json_rows(resp, "templates"), template_cols);
}

static void show_template(json_t *resp)
{
	json_t *t = cli_json_unwrap(resp, "template");

	cli_print_object(t, steps_skip);
	if (json_array_size(cli_json_rows(t, "steps")) != 0) {
		cli_print_heading("Steps");
		cli_print_table(cli_json_rows(t, "steps"), step_def_cols);
	}
}

static int template_list(struct cli *c, const struct cli_args *a)
{
	struct cli_request r;
	json_t *msg = cli_msg_str("namespace", cli_opt(a, "namespace"));
	int rc;

	if (msg == NULL) {
		return cli_build_failed();
	}
	cli_request_init(&r, "/tasker.v1.TemplateService/ListTemplates",
	                 &tasker__v1__list_templates_request__descriptor,
	                 &tasker__v1__list_templates_response__descriptor, msg);
	cli_request_path(&r, "GET", "/v1/templates");
	cli_request_query(&r, "namespace", cli_opt(a, "namespace"));
	rc = cli_call_and_show(c, &r, show_templates);
	json_decref(msg);
	return rc;
}

static int template_get(struct cli *c, const struct cli_args *a)
{
	struct cli_request r;
	json_t *msg = json_object();
	int rc;

	if (cli_set_str(msg, "namespace", a->pos[0]) || cli_set_str(msg, "name", a->pos[1]) ||
	    cli_set_str(msg, "version", a->pos[2])) {
		json_decref(msg);
		return cli_build_failed();
	}
	cli_request_init(&r, "/tasker.v1.TemplateService/GetTemplate",
	                 &tasker__v1__get_template_request__descriptor,
	                 &tasker__v1__get_template_response__descriptor, msg);
	cli_request_path(&r, "GET", "/v1/templates/%s/%s/%s", a->pos[0], a->pos[1], a->pos[2]);
	rc = cli_call_and_show(c, &r, show_template);
	json_decref(msg);
	return rc;
}

static const struct cli_opt template_list_opts[] = {
    {"namespace", 0, "NAMESPACE", "only templates of this namespace", 0},
    {NULL, 0, NULL, NULL, 0},
};

/* clang-format off */
const struct cli_cmd cli_template_cmds[] = {
    {"template", "list", NULL, 0, 0, "List task templates",
     "Sends ListTemplates (gRPC) or GET /v1/templates (REST).\n",
     template_list_opts, template_list, CLI_NEEDS_PROFILE},
    {"template", "get", "<namespace> <name> <version>", 3, 3, "Show a template and its steps",
     "Sends GetTemplate (gRPC) or GET /v1/templates/<namespace>/<name>/<version> (REST).\n",
     cli_no_opts, template_get, CLI_NEEDS_PROFILE},
    {NULL, NULL, NULL, 0, 0, NULL, NULL, NULL, NULL, 0},
};
/* clang-format on */

/* ------------------------------------------------------------------ system */

/* One health check of a server: the RPCs of both services and the REST
 * path (the same on both servers). */
struct health_kind {
	const char *flag; /* command option selecting it; NULL: the default */
	const char *rest_path;
	const char *rpc[2]; /* by enum cli_target */
	const ProtobufCMessageDescriptor *req[2], *resp[2];
};

static const struct health_kind health_kinds[] = {
    {NULL,
     "/health/detailed",
     {"/tasker.v1.HealthService/CheckDetailedHealth",
      "/tasker.v1.WorkerHealthService/CheckDetailedHealth"},
     {&tasker__v1__detailed_health_request__descriptor,
      &tasker__v1__worker_detailed_health_request__descriptor},
     {&tasker__v1__detailed_health_response__descriptor,
      &tasker__v1__worker_detailed_health_response__descriptor}},
    {"ready",
     "/health/ready",
     {"/tasker.v1.HealthService/CheckReadiness", "/tasker.v1.WorkerHealthService/CheckReadiness"},
     {&tasker__v1__readiness_request__descriptor,
      &tasker__v1__worker_readiness_request__descriptor},
     {&tasker__v1__readiness_response__descriptor,
      &tasker__v1__worker_readiness_response__descriptor}},
    {"live",
     "/health/live",
     {"/tasker.v1.HealthService/CheckLiveness", "/tasker.v1.WorkerHealthService/CheckLiveness"},
     {&tasker__v1__liveness_request__descriptor, &tasker__v1__worker_liveness_request__descriptor},
     {&tasker__v1__health_response__descriptor,
      &tasker__v1__worker_basic_health_response__descriptor}},
    {"basic",
     "/health",
     {"/tasker.v1.HealthService/CheckHealth", "/tasker.v1.WorkerHealthService/CheckHealth"},
     {&tasker__v1__health_request__descriptor, &tasker__v1__worker_health_request__descriptor},
     {&tasker__v1__health_response__descriptor,
      &tasker__v1__worker_basic_health_response__descriptor}},
};

static const struct cli_col check_cols[] = {
    {"CHECK", "check"},     {"STATUS", "status"}, {"DURATION MS", "duration_ms"},
    {"MESSAGE", "message"}, {NULL, NULL},
};

static const char *const health_skip[] = {"checks", NULL};

static void show_health(json_t *resp)
{
	json_t *checks = cli_json_get(resp, "checks"), *rows = json_array(), *v, *row;
	const char *name;

	cli_print_object(resp, health_skip);
	if (!json_is_object(checks) || rows == NULL) {
		json_decref(rows);
		return;
	}
	json_object_foreach(checks, name, v)
	{
		row = json_is_object(v) ? json_copy(v) : json_object();
		if (row == NULL || json_object_set_new(row, "check", json_string(name)) != 0 ||
		    json_array_append_new(rows, row) != 0) {
			break;
		}
	}
	cli_print_heading("Checks");
	cli_print_table(rows, check_cols);
	json_decref(rows);
}

static void show_config(json_t *resp)
{
	cli_print_object(resp, NULL);
}

static int system_health(struct cli *c, const struct cli_args *a)
{
	const struct health_kind *k = &health_kinds[0];
	enum cli_target t = cli_flag(a, "worker") ? CLI_TARGET_WORKER : CLI_TARGET_ORCHESTRATION;
	struct cli_request r;
	size_t i;
	int chosen = 0;

	for (i = 1; i < sizeof health_kinds / sizeof health_kinds[0]; i++) {
		if (cli_flag(a, health_kinds[i].flag)) {
			k = &health_kinds[i];
			chosen++;
		}
	}
	if (chosen > 1) {
		return cli_usage_error(a->cmd, "--ready, --live and --basic exclude each other");
	}
	cli_request_init(&r, k->rpc[t], k->req[t], k->resp[t], NULL);
	cli_request_path(&r, "GET", k->rest_path);
	r.target = t;
	r.body_on_error = 1; /* "not ready" comes with the checks that failed */
	return cli_call_and_show(c, &r, show_health);
}

static int system_config(struct cli *c, const struct cli_args *a)
{
	struct cli_request r;

	if (cli_flag(a, "worker")) {
		cli_request_init(&r, "/tasker.v1.WorkerConfigService/GetConfig",
		                 &tasker__v1__worker_get_config_request__descriptor,
		                 &tasker__v1__worker_get_config_response__descriptor, NULL);
		r.target = CLI_TARGET_WORKER;
	} else {
		cli_request_init(&r, "/tasker.v1.ConfigService/GetConfig",
		                 &tasker__v1__get_config_request__descriptor,
		                 &tasker__v1__get_config_response__descriptor, NULL);
	}
	cli_request_path(&r, "GET", "/config");
	return cli_call_and_show(c, &r, show_config);
}

static const struct cli_opt health_opts[] = {
    {"ready", 0, NULL, "readiness checks only (not ready: exit 6)", 0},
    {"live", 0, NULL, "liveness only", 0},
    {"basic", 0, NULL, "basic health only", 0},
    {"worker", 0, NULL, "ask the worker (worker_url) instead of the orchestration server", 0},
    {NULL, 0, NULL, NULL, 0},
};

static const struct cli_opt config_opts[] = {
    {"worker", 0, NULL, "ask the worker (worker_url) instead of the orchestration server", 0},
    {NULL, 0, NULL, NULL, 0},
};

/* clang-format off */
const struct cli_cmd cli_system_cmds[] = {
    {"system", "health", NULL, 0, 0, "Show the health of a server",
     "Detailed health by default: HealthService.CheckDetailedHealth (gRPC) or\n"
     "GET /health/detailed (REST); --ready, --live and --basic pick the other checks.\n"
     "Health needs no credentials.\n",
     health_opts, system_health, CLI_NEEDS_PROFILE},
    {"system", "config", NULL, 0, 0, "Show a server's configuration (secrets left out)",
     "Sends ConfigService.GetConfig (gRPC) or GET /config (REST; the server only\n"
     "serves it when its config endpoint is enabled).\n",
     config_opts, system_config, CLI_NEEDS_PROFILE},
    {NULL, NULL, NULL, 0, 0, NULL, NULL, NULL, NULL, 0},
};
/* clang-format on */

/* ------------------------------------------------------------------ analytics */

static const struct cli_col slow_step_cols[] = {
    {"NAMESPACE", "namespace_name"},
    {"TASK", "task_name"},
    {"VERSION", "version"},
    {"STEP", "step_name"},
    {"AVG S", "average_duration_seconds"},
    {"MAX S", "max_duration_seconds"},
    {"RUNS", "execution_count"},
    {"ERRORS", "error_count"},
    {"ERROR RATE", "error_rate"},
    {NULL, NULL},
};

static const struct cli_col slow_task_cols[] = {
    {"NAMESPACE", "namespace_name"},
    {"TASK", "task_name"},
    {"VERSION", "version"},
    {"AVG S", "average_duration_seconds"},
    {"MAX S", "max_duration_seconds"},
    {"RUNS", "execution_count"},
    {"AVG STEPS", "average_step_count"},
    {"ERRORS", "error_count"},
    {"ERROR RATE", "error_rate"},
    {NULL, NULL},
};

static void show_performance(json_t *resp)
{
	cli_print_object(resp, NULL);
}

static void show_bottlenecks(json_t *resp)
{
	json_t *recs = cli_json_rows(resp, "recommendations"), *v;
	size_t i;

	printf("Slow steps:\n");
	cli_print_table(cli_json_rows(resp, "slow_steps"), slow_step_cols);
	cli_print_heading("Slow tasks");
	cli_print_table(cli_json_rows(resp, "slow_tasks"), slow_task_cols);
	cli_print_heading("Resource utilization");
	cli_print_object(cli_json_get(resp, "resource_utilization"), NULL);
	cli_print_heading("Recommendations");
	if (json_array_size(recs) == 0) {
		printf("-\n");
	}
	json_array_foreach(recs, i, v)
	{
		printf("- %s\n", json_string_value(v) != NULL ? json_string_value(v) : "?");
	}
}

static int analytics_performance(struct cli *c, const struct cli_args *a)
{
	struct cli_request r;
	json_t *msg = json_object();
	long hours;
	int rc;

	if ((rc = cli_opt_int(a, "hours", 24, 1, 24L * 366, &hours)) != 0 ||
	    (cli_opt(a, "hours") != NULL && cli_set_int(msg, "hours", hours)) || msg == NULL) {
		json_decref(msg);
		return rc != 0 ? rc : cli_build_failed();
	}
	cli_request_init(&r, "/tasker.v1.AnalyticsService/GetPerformanceMetrics",
	                 &tasker__v1__get_performance_metrics_request__descriptor,
	                 &tasker__v1__get_performance_metrics_response__descriptor, msg);
	cli_request_path(&r, "GET", "/v1/analytics/performance");
	cli_request_query(&r, "hours", cli_opt(a, "hours"));
	rc = cli_call_and_show(c, &r, show_performance);
	json_decref(msg);
	return rc;
}

static int analytics_bottlenecks(struct cli *c, const struct cli_args *a)
{
	struct cli_request r;
	json_t *msg = json_object();
	long limit, min_exec;
	int rc;

	if ((rc = cli_opt_int(a, "limit", 10, 1, 1000, &limit)) != 0 ||
	    (rc = cli_opt_int(a, "min-executions", 5, 1, 1000000, &min_exec)) != 0 ||
	    (cli_opt(a, "limit") != NULL && cli_set_int(msg, "limit", limit)) ||
	    (cli_opt(a, "min-executions") != NULL &&
	     cli_set_int(msg, "min_executions", min_exec)) ||
	    msg == NULL) {
		json_decref(msg);
		return rc != 0 ? rc : cli_build_failed();
	}
	cli_request_init(&r, "/tasker.v1.AnalyticsService/GetBottleneckAnalysis",
	                 &tasker__v1__get_bottleneck_analysis_request__descriptor,
	                 &tasker__v1__get_bottleneck_analysis_response__descriptor, msg);
	cli_request_path(&r, "GET", "/v1/analytics/bottlenecks");
	cli_request_query(&r, "limit", cli_opt(a, "limit"));
	cli_request_query(&r, "min_executions", cli_opt(a, "min-executions"));
	rc = cli_call_and_show(c, &r, show_bottlenecks);
	json_decref(msg);
	return rc;
}

static const struct cli_opt performance_opts[] = {
    {"hours", 0, "N", "the window, in hours back from now (server default: 24)", 0},
    {NULL, 0, NULL, NULL, 0},
};

static const struct cli_opt bottleneck_opts[] = {
    {"limit", 0, "N", "slowest steps and tasks to show (server default: 10)", 0},
    {"min-executions", 0, "N", "ignore steps run fewer times (server default: 5)", 0},
    {NULL, 0, NULL, NULL, 0},
};

/* clang-format off */
const struct cli_cmd cli_analytics_cmds[] = {
    {"analytics", "performance", NULL, 0, 0, "Task and step throughput, rates and durations",
     "Sends GetPerformanceMetrics (gRPC) or GET /v1/analytics/performance (REST).\n",
     performance_opts, analytics_performance, CLI_NEEDS_PROFILE},
    {"analytics", "bottlenecks", NULL, 0, 0, "The slowest steps and tasks, with advice",
     "Sends GetBottleneckAnalysis (gRPC) or GET /v1/analytics/bottlenecks (REST).\n",
     bottleneck_opts, analytics_bottlenecks, CLI_NEEDS_PROFILE},
    {NULL, NULL, NULL, 0, 0, NULL, NULL, NULL, NULL, 0},
};
/* clang-format on */

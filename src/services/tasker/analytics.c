/*
 * AnalyticsService (tasker.v1): performance metrics and bottleneck
 * analysis, every figure from the database (migration 0006) or the pool.
 *
 * Units (as the SQL functions' COMMENTs state them):
 *   completion_rate, error_rate of GetPerformanceMetrics   percent, 0-100
 *   error_rate of SlowStepInfo / SlowTaskInfo               ratio, 0-1
 *   system_health_score, database_pool_utilization          ratio, 0-1
 *   *_duration_seconds                                      seconds
 *   tasks_per_hour, steps_per_hour   the COUNT of tasks / steps created in
 *                                    the window (analytics.proto: "counts
 *                                    over the whole window, despite the
 *                                    names"), not a rate
 *   analysis_period_start, calculated_at, last_executed_at  RFC 3339, UTC
 */
#include "config.h"

#include <string.h>

#include "engine/admin.h"
#include "services/ops.h"
#include "services/svc_env.h"
#include "services/tasker/admin_pb.h"
#include "tasker/v1/analytics.pb-c.h"

#define DEFAULT_HOURS          24
#define DEFAULT_LIMIT          10
#define DEFAULT_MIN_EXECUTIONS 5

static int on_performance(struct svc_env *env, const ProtobufCMessage *req_msg,
                          ProtobufCMessage *resp_msg, const struct svc_ctx *ctx,
                          struct svc_result *res)
{
	const Tasker__V1__GetPerformanceMetricsRequest *req =
	    (const Tasker__V1__GetPerformanceMetricsRequest *)req_msg;
	Tasker__V1__GetPerformanceMetricsResponse *resp =
	    (Tasker__V1__GetPerformanceMetricsResponse *)resp_msg;
	struct apb b = {.a = ctx->alloc};
	int hours = DEFAULT_HOURS;
	if (req->_hours_case == TASKER__V1__GET_PERFORMANCE_METRICS_REQUEST___HOURS_HOURS)
		hours = req->hours;

	struct adm_perf m;
	struct tk_err err = {0};
	if (adm_performance(env->eng, hours, &m, &err) != 0)
		return svc_fail_err(res, &err);
	resp->total_tasks = m.total_tasks;
	resp->active_tasks = m.active_tasks;
	resp->completed_tasks = m.completed_tasks;
	resp->failed_tasks = m.failed_tasks;
	resp->completion_rate = m.completion_rate;
	resp->error_rate = m.error_rate;
	resp->average_task_duration_seconds = m.avg_task_seconds;
	resp->average_step_duration_seconds = m.avg_step_seconds;
	resp->tasks_per_hour = m.tasks_in_window;
	resp->steps_per_hour = m.steps_in_window;
	resp->system_health_score = m.health_score;
	char when[40];
	adm_time_iso(&m.analysis_period_start, when, sizeof when);
	resp->analysis_period_start = apb_strdup(&b, when);
	adm_time_iso(&m.calculated_at, when, sizeof when);
	resp->calculated_at = apb_strdup(&b, when);
	return b.oom ? apb_nomem(res) : 0;
}

/* The counts by column name: get_system_health_counts' columns and
 * SystemHealthCounts' fields carry the same names. */
static Tasker__V1__SystemHealthCounts *health_counts(struct apb *b,
                                                     const struct adm_bottlenecks *bn)
{
	Tasker__V1__SystemHealthCounts *h = apb_alloc(b, sizeof *h);
	if (h == NULL)
		return NULL;
	tasker__v1__system_health_counts__init(h);
	const ProtobufCMessageDescriptor *d = &tasker__v1__system_health_counts__descriptor;
	for (size_t i = 0; i < bn->n_counts; i++) {
		const ProtobufCFieldDescriptor *f =
		    protobuf_c_message_descriptor_get_field_by_name(d, bn->counts[i].name);
		if (f != NULL && f->type == PROTOBUF_C_TYPE_INT64)
			*(int64_t *)((char *)h + f->offset) = bn->counts[i].value;
	}
	return h;
}

static int fill_slow_steps(struct apb *b, const struct adm_bottlenecks *bn,
                           Tasker__V1__GetBottleneckAnalysisResponse *resp)
{
	if ((resp->slow_steps = apb_ptrs(b, bn->n_steps)) == NULL)
		return -1;
	for (size_t i = 0; i < bn->n_steps; i++) {
		const struct adm_slow_step *s = &bn->steps[i];
		Tasker__V1__SlowStepInfo *o = apb_alloc(b, sizeof *o);
		if (o == NULL)
			return -1;
		tasker__v1__slow_step_info__init(o);
		o->namespace_name = apb_strdup(b, s->namespace_name);
		o->task_name = apb_strdup(b, s->task_name);
		o->version = apb_strdup(b, s->version);
		o->step_name = apb_strdup(b, s->step_name);
		o->average_duration_seconds = s->avg_seconds;
		o->max_duration_seconds = s->max_seconds;
		o->execution_count = s->executions;
		o->error_count = s->errors;
		o->error_rate = s->error_rate;
		if (s->last_executed_at.valid) {
			char when[40];
			adm_time_iso(&s->last_executed_at, when, sizeof when);
			o->_last_executed_at_case =
			    TASKER__V1__SLOW_STEP_INFO___LAST_EXECUTED_AT_LAST_EXECUTED_AT;
			o->last_executed_at = apb_strdup(b, when);
		}
		resp->slow_steps[resp->n_slow_steps++] = o;
	}
	return 0;
}

static int fill_slow_tasks(struct apb *b, const struct adm_bottlenecks *bn,
                           Tasker__V1__GetBottleneckAnalysisResponse *resp)
{
	if ((resp->slow_tasks = apb_ptrs(b, bn->n_tasks)) == NULL)
		return -1;
	for (size_t i = 0; i < bn->n_tasks; i++) {
		const struct adm_slow_task *t = &bn->tasks[i];
		Tasker__V1__SlowTaskInfo *o = apb_alloc(b, sizeof *o);
		if (o == NULL)
			return -1;
		tasker__v1__slow_task_info__init(o);
		o->namespace_name = apb_strdup(b, t->namespace_name);
		o->task_name = apb_strdup(b, t->task_name);
		o->version = apb_strdup(b, t->version);
		o->average_duration_seconds = t->avg_seconds;
		o->max_duration_seconds = t->max_seconds;
		o->execution_count = t->executions;
		o->average_step_count = t->avg_step_count;
		o->error_count = t->errors;
		o->error_rate = t->error_rate;
		if (t->last_executed_at.valid) {
			char when[40];
			adm_time_iso(&t->last_executed_at, when, sizeof when);
			o->_last_executed_at_case =
			    TASKER__V1__SLOW_TASK_INFO___LAST_EXECUTED_AT_LAST_EXECUTED_AT;
			o->last_executed_at = apb_strdup(b, when);
		}
		resp->slow_tasks[resp->n_slow_tasks++] = o;
	}
	return 0;
}

static int on_bottlenecks(struct svc_env *env, const ProtobufCMessage *req_msg,
                          ProtobufCMessage *resp_msg, const struct svc_ctx *ctx,
                          struct svc_result *res)
{
	const Tasker__V1__GetBottleneckAnalysisRequest *req =
	    (const Tasker__V1__GetBottleneckAnalysisRequest *)req_msg;
	Tasker__V1__GetBottleneckAnalysisResponse *resp =
	    (Tasker__V1__GetBottleneckAnalysisResponse *)resp_msg;
	struct apb b = {.a = ctx->alloc};
	int limit = DEFAULT_LIMIT, min_exec = DEFAULT_MIN_EXECUTIONS;
	if (req->_limit_case == TASKER__V1__GET_BOTTLENECK_ANALYSIS_REQUEST___LIMIT_LIMIT)
		limit = req->limit;
	if (req->_min_executions_case ==
	    TASKER__V1__GET_BOTTLENECK_ANALYSIS_REQUEST___MIN_EXECUTIONS_MIN_EXECUTIONS)
		min_exec = req->min_executions;

	struct adm_bottlenecks bn;
	struct tk_err err = {0};
	if (adm_bottlenecks(env->eng, limit, min_exec, &bn, &err) != 0)
		return svc_fail_err(res, &err);
	int rv = -1;
	if (fill_slow_steps(&b, &bn, resp) != 0 || fill_slow_tasks(&b, &bn, resp) != 0)
		goto out;
	Tasker__V1__ResourceUtilization *ru = apb_alloc(&b, sizeof *ru);
	if (ru == NULL)
		goto out;
	tasker__v1__resource_utilization__init(ru);
	ru->database_pool_utilization = bn.pool_utilization;
	if ((ru->system_health = health_counts(&b, &bn)) == NULL)
		goto out;
	resp->resource_utilization = ru;
	if ((resp->recommendations = apb_ptrs(&b, bn.n_recommendations)) == NULL)
		goto out;
	for (size_t i = 0; i < bn.n_recommendations; i++)
		resp->recommendations[resp->n_recommendations++] =
		    apb_strdup(&b, bn.recommendations[i]);
	rv = 0;
out:
	rv = apb_finish(&b, rv, NULL, res);
	adm_bottlenecks_clear(&bn);
	return rv;
}

static const struct svc_op analytics_ops[] = {
    {.service = "tasker.v1.AnalyticsService",
     .method = "GetPerformanceMetrics",
     .permission = "system:analytics_read",
     .request = &tasker__v1__get_performance_metrics_request__descriptor,
     .response = &tasker__v1__get_performance_metrics_response__descriptor,
     .fn = on_performance},
    {.service = "tasker.v1.AnalyticsService",
     .method = "GetBottleneckAnalysis",
     .permission = "system:analytics_read",
     .request = &tasker__v1__get_bottleneck_analysis_request__descriptor,
     .response = &tasker__v1__get_bottleneck_analysis_response__descriptor,
     .fn = on_bottlenecks},
};

const struct svc_table svc_analytics_table = {
    .service = "tasker.v1.AnalyticsService",
    .ops = analytics_ops,
    .n_ops = sizeof analytics_ops / sizeof analytics_ops[0],
};

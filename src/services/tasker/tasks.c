/*
 * TaskService (tasker.v1), unary operations: decode the request, call the
 * engine, build the answer. StreamTaskStatus is in stream.c.
 *
 * Behaviour beyond the reference (tasker-api.md §1.12 and its open
 * questions 2-3):
 *   - CreateTask honours every field; initiator, source_system and reason
 *     left empty get the transport's defaults (gRPC: "grpc", none, "Task
 *     created via gRPC"; REST §2.1: "system", "tasker-core", "Task
 *     requested"). An unknown template is INVALID_ARGUMENT (§1.12). It is
 *     refused with UNAVAILABLE and a retry-after when the deepest queue is
 *     at the critical tier or the RPC work queue (taskerd's command
 *     channel) is saturated (services/backpressure.h), and reports the
 *     warning tier in `backpressure`.
 *   - ListTasks honours every filter and the sort; limit is 1..1000
 *     (default 50): a limit outside that range is INVALID_ARGUMENT rather
 *     than silently clamped, so a client never believes it has every row.
 *   - GetTask fills steps (include_steps) and the context with the real
 *     outputs of the completed steps (include_context).
 *   - CancelTask of a terminal task answers success=false and why. A cancel
 *     records its reason, the authenticated subject and the transport on
 *     the task's and the steps' transitions (eng_actor).
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "engine/query.h"
#include "engine/template.h"
#include "services/backpressure.h"
#include "services/ops.h"
#include "services/pbjson_struct.h"
#include "services/svc_env.h"
#include "services/tasker/task_pb.h"

#define PERM_CREATE  "tasks:create"
#define PERM_READ    "tasks:read"
#define PERM_LIST    "tasks:list"
#define PERM_CANCEL  "tasks:cancel"
#define PERM_CONTEXT "tasks:context_read"

/* Columns initiator, source_system and reason are varchar(128). */
#define TEXT_MAX 128

static int from_req(int is_set, const char *v)
{
	return is_set && v != NULL && v[0] != '\0';
}

/* ------------------------------------------------------------------ CreateTask */

struct create_defaults {
	const char *initiator, *source_system, *reason;
};

static const struct create_defaults grpc_defaults = {"grpc", NULL, "Task created via gRPC"};
static const struct create_defaults rest_defaults = {"system", "tasker-core", "Task requested"};

/* Refuses the task when the queues are too deep or the command channel
 * is saturated; fills `bp` for the answer when the queues are at the
 * warning tier. */
static int check_backpressure(struct svc_env *env, struct apb *b, struct svc_result *res,
                              Tasker__V1__BackpressureStatus **bp)
{
	struct svc_bp_status st;
	char figures[192];
	svc_backpressure_status(env, &st);
	*bp = NULL;
	int refusal = svc_bp_refusal(&st);
	if (refusal != SVC_BP_ADMIT) {
		res->retry_after_s = st.retry_after_s;
		res->rest_code = "BACKPRESSURE";
	}
	if (refusal == SVC_BP_REFUSE_QUEUE)
		return svc_fail(res, TRPC_STATUS_UNAVAILABLE,
		                "backpressure: queue %s holds %lld messages (%s tier, limit %ld); "
		                "retry in %d s",
		                st.queue, (long long)st.depth, svc_bp_tier_name(st.tier),
		                st.critical, st.retry_after_s);
	if (refusal == SVC_BP_REFUSE_CHANNEL) {
		adm_channel_describe(&st.channel, figures, sizeof figures);
		return svc_fail(res, TRPC_STATUS_UNAVAILABLE,
		                "backpressure: RPC work queue %s: %s; retry in %d s",
		                adm_channel_level_name(st.channel_level), figures,
		                st.retry_after_s);
	}
	if (st.tier != SVC_BP_WARNING)
		return 0;
	Tasker__V1__BackpressureStatus *m = apb_alloc(b, sizeof *m);
	if (m == NULL)
		return apb_nomem(res);
	tasker__v1__backpressure_status__init(m);
	char reason[128];
	snprintf(reason, sizeof reason, "queue %s is at the warning tier", st.queue);
	m->active = 0; /* admitted: nothing is being refused yet */
	m->_reason_case = TASKER__V1__BACKPRESSURE_STATUS___REASON_REASON;
	m->reason = apb_strdup(b, reason);
	m->_queue_depth_case = TASKER__V1__BACKPRESSURE_STATUS___QUEUE_DEPTH_QUEUE_DEPTH;
	m->queue_depth = st.depth;
	m->_max_queue_depth_case =
	    TASKER__V1__BACKPRESSURE_STATUS___MAX_QUEUE_DEPTH_MAX_QUEUE_DEPTH;
	m->max_queue_depth = st.critical;
	*bp = m;
	return 0;
}

static int check_text(struct svc_result *res, const char *what, const char *v)
{
	if (v != NULL && strlen(v) > TEXT_MAX)
		return svc_fail(res, TRPC_STATUS_INVALID_ARGUMENT, "%s is longer than %d bytes",
		                what, TEXT_MAX);
	return 0;
}

static int on_create_task(struct svc_env *env, const ProtobufCMessage *req_msg,
                          ProtobufCMessage *resp_msg, const struct svc_ctx *ctx,
                          struct svc_result *res)
{
	const Tasker__V1__CreateTaskRequest *req = (const void *)req_msg;
	Tasker__V1__CreateTaskResponse *resp = (void *)resp_msg;
	const struct create_defaults *d =
	    ctx->transport != NULL && strcmp(ctx->transport, "rest") == 0 ? &rest_defaults
	                                                                  : &grpc_defaults;
	struct apb b = {.a = ctx->alloc};
	struct tk_err err = {0};
	int rv = -1;

	if (!req->name[0] || !req->namespace_[0] || !req->version[0])
		return svc_fail(res, TRPC_STATUS_INVALID_ARGUMENT,
		                "name, namespace and version are required");
	/* Backpressure first (§1.12): a refused request costs no parsing. */
	if (check_backpressure(env, &b, res, &resp->backpressure) != 0)
		return -1;

	struct eng_task_request tr = {
	    .namespace_name = req->namespace_,
	    .name = req->name,
	    .version = req->version,
	    .initiator =
	        from_req(req->_initiator_case, req->initiator) ? req->initiator : d->initiator,
	    .source_system = from_req(req->_source_system_case, req->source_system)
	                         ? req->source_system
	                         : d->source_system,
	    .reason = from_req(req->_reason_case, req->reason) ? req->reason : d->reason,
	    .correlation_id = from_req(req->_correlation_id_case, req->correlation_id)
	                          ? req->correlation_id
	                          : NULL,
	    .parent_correlation_id =
	        from_req(req->_parent_correlation_id_case, req->parent_correlation_id)
	            ? req->parent_correlation_id
	            : NULL,
	};
	if (req->_priority_case == TASKER__V1__CREATE_TASK_REQUEST___PRIORITY_PRIORITY) {
		if (req->priority < -100 || req->priority > 100)
			return svc_fail(res, TRPC_STATUS_INVALID_ARGUMENT,
			                "priority %d is outside -100..100", req->priority);
		tr.priority = req->priority;
	}
	if (check_text(res, "initiator", tr.initiator) != 0 ||
	    check_text(res, "source_system", tr.source_system) != 0 ||
	    check_text(res, "reason", tr.reason) != 0)
		return -1;

	char *context = NULL, *tags = NULL;
	json_t *cj = pbjson_struct_to_json(req->context, "context", &err);
	json_t *tj = json_array();
	for (size_t i = 0; cj != NULL && tj != NULL && i < req->n_tags; i++) {
		json_t *s = json_string(req->tags[i]);
		if (s == NULL || json_array_append_new(tj, s) != 0) {
			tk_err_set(&err, TRPC_ERR_INVALID, "tag %zu is not UTF-8", i);
			json_decref(cj);
			cj = NULL;
		}
	}
	if (cj != NULL && tj != NULL) {
		context = json_dumps(cj, JSON_COMPACT);
		tags = json_dumps(tj, JSON_COMPACT);
		if (context == NULL || tags == NULL)
			tk_err_set(&err, TRPC_ERR_NOMEM, "out of memory");
	} else if (err.code == 0) {
		tk_err_set(&err, TRPC_ERR_NOMEM, "out of memory");
	}
	json_decref(cj);
	json_decref(tj);
	if (context == NULL || tags == NULL)
		goto fail_err;
	tr.context_json = context;
	tr.tags_json = tags;

	struct eng_task_created created;
	if (eng_task_create(env->eng, &tr, &created, &err) != 0) {
		if (err.code == TRPC_ERR_NOT_FOUND) /* no such template: a bad request (§1.12) */
			err.code = TRPC_ERR_INVALID;
		goto fail_err;
	}
	trpc_log(TRPC_LOG_INFO, "task %s (%s/%s@%s) created by %s over %s", created.task_uuid,
	         req->namespace_, req->name, req->version, ctx->subject ? ctx->subject : "?",
	         ctx->transport ? ctx->transport : "?");
	struct eng_task *t = NULL;
	if (eng_task_get(env->eng, created.task_uuid, &t, &err) != 0)
		goto fail_err;
	resp->task = tpb_task(&b, t);
	eng_tasks_free(t, 1);
	rv = resp->task != NULL ? 0 : apb_nomem(res);
	goto out;
fail_err:
	rv = svc_fail_err(res, &err);
out:
	free(context);
	free(tags);
	return rv;
}

/* ------------------------------------------------------------------ GetTask */

static int fill_context(struct apb *b, struct svc_env *env, const char *task_uuid,
                        Tasker__V1__TaskContext **out, struct svc_result *res)
{
	json_t *in, *o, *m;
	struct tk_err err = {0};
	if (eng_task_context(env->eng, task_uuid, &in, &o, &m, &err) != 0)
		return svc_fail_err(res, &err);
	Tasker__V1__TaskContext *c = apb_alloc(b, sizeof *c);
	if (c != NULL) {
		tasker__v1__task_context__init(c);
		c->inputs = tpb_struct(b, in);
		c->outputs = tpb_struct(b, o);
		c->merged = tpb_struct(b, m);
	}
	json_decref(in);
	json_decref(o);
	json_decref(m);
	if (b->oom)
		return apb_nomem(res);
	*out = c;
	return 0;
}

static int fill_steps(struct apb *b, struct svc_env *env, const char *task_uuid,
                      Tasker__V1__Step ***out, size_t *n_out, struct svc_result *res)
{
	struct eng_step *steps;
	size_t n;
	struct tk_err err = {0};
	if (eng_task_steps(env->eng, task_uuid, NULL, &steps, &n, &err) != 0)
		return svc_fail_err(res, &err);
	*out = apb_ptrs(b, n);
	for (size_t i = 0; *out != NULL && i < n; i++) {
		(*out)[i] = tpb_step(b, &steps[i]);
		if ((*out)[i] == NULL)
			break;
		*n_out = i + 1;
	}
	eng_steps_free(steps, n);
	return b->oom ? apb_nomem(res) : 0;
}

static int on_get_task(struct svc_env *env, const ProtobufCMessage *req_msg,
                       ProtobufCMessage *resp_msg, const struct svc_ctx *ctx,
                       struct svc_result *res)
{
	const Tasker__V1__GetTaskRequest *req = (const void *)req_msg;
	Tasker__V1__GetTaskResponse *resp = (void *)resp_msg;
	struct apb b = {.a = ctx->alloc};
	struct tk_err err = {0};
	struct eng_task *t;

	if (eng_task_get(env->eng, req->task_uuid, &t, &err) != 0)
		return svc_fail_err(res, &err);
	resp->task = tpb_task(&b, t);
	eng_tasks_free(t, 1);
	if (resp->task == NULL)
		return apb_nomem(res);
	if (req->include_steps &&
	    fill_steps(&b, env, req->task_uuid, &resp->steps, &resp->n_steps, res) != 0)
		return -1;
	if (req->include_context && fill_context(&b, env, req->task_uuid, &resp->context, res) != 0)
		return -1;
	return 0;
}

/* ------------------------------------------------------------------ ListTasks */

/* A Timestamp in microseconds; -1 for one outside the range that
 * google.protobuf.Timestamp allows (years 1 to 9999). */
static int timestamp_us(const Google__Protobuf__Timestamp *ts, int64_t *out)
{
	if (ts->seconds < -62135596800LL || ts->seconds > 253402300799LL || ts->nanos < 0 ||
	    ts->nanos > 999999999)
		return -1;
	*out = ts->seconds * 1000000 + ts->nanos / 1000;
	return 0;
}

static int on_list_tasks(struct svc_env *env, const ProtobufCMessage *req_msg,
                         ProtobufCMessage *resp_msg, const struct svc_ctx *ctx,
                         struct svc_result *res)
{
	const Tasker__V1__ListTasksRequest *req = (const void *)req_msg;
	Tasker__V1__ListTasksResponse *resp = (void *)resp_msg;
	struct apb b = {.a = ctx->alloc};
	struct tk_err err = {0};
	struct eng_task_filter f = {.created_from = ENG_NO_TIME, .created_to = ENG_NO_TIME};

	if (req->pagination != NULL) {
		if (req->pagination->_limit_case == TASKER__V1__PAGINATION_REQUEST___LIMIT_LIMIT) {
			if (req->pagination->limit < 1 ||
			    req->pagination->limit > ENG_LIST_MAX_LIMIT)
				return svc_fail(res, TRPC_STATUS_INVALID_ARGUMENT,
				                "pagination.limit %d is outside 1..%d",
				                req->pagination->limit, ENG_LIST_MAX_LIMIT);
			f.limit = req->pagination->limit;
		}
		if (req->pagination->_offset_case ==
		    TASKER__V1__PAGINATION_REQUEST___OFFSET_OFFSET) {
			if (req->pagination->offset < 0)
				return svc_fail(res, TRPC_STATUS_INVALID_ARGUMENT,
				                "pagination.offset %d is negative",
				                req->pagination->offset);
			f.offset = req->pagination->offset;
		}
	}
	if (req->_namespace_case == TASKER__V1__LIST_TASKS_REQUEST___NAMESPACE_NAMESPACE)
		f.namespace_name = req->namespace_;
	if (req->_name_case == TASKER__V1__LIST_TASKS_REQUEST___NAME_NAME)
		f.name = req->name;
	if (req->_initiator_case == TASKER__V1__LIST_TASKS_REQUEST___INITIATOR_INITIATOR)
		f.initiator = req->initiator;
	if (req->n_states > 0) {
		char **names = apb_ptrs(&b, req->n_states);
		if (names == NULL)
			return apb_nomem(res);
		for (size_t i = 0; i < req->n_states; i++) {
			char name[40];
			if (tpb_task_state_db((int)req->states[i], name, sizeof name) != 0)
				return svc_fail(res, TRPC_STATUS_INVALID_ARGUMENT,
				                "states[%zu]: %d is not a task state", i,
				                (int)req->states[i]);
			names[i] = apb_strdup(&b, name);
		}
		f.states = (const char *const *)names;
		f.n_states = req->n_states;
	}
	f.tags = (const char *const *)req->tags;
	f.n_tags = req->n_tags;
	if (req->created_at != NULL &&
	    ((req->created_at->start != NULL &&
	      timestamp_us(req->created_at->start, &f.created_from) != 0) ||
	     (req->created_at->end != NULL &&
	      timestamp_us(req->created_at->end, &f.created_to) != 0)))
		return svc_fail(res, TRPC_STATUS_INVALID_ARGUMENT,
		                "created_at: a timestamp outside years 1..9999");
	if (req->sort != NULL) {
		f.sort_field = req->sort->field;
		f.sort_dir =
		    req->sort->direction == TASKER__V1__SORT_DIRECTION__SORT_DIRECTION_DESC
		        ? ENG_SORT_DESC
		    : req->sort->direction == TASKER__V1__SORT_DIRECTION__SORT_DIRECTION_ASC
		        ? ENG_SORT_ASC
		        : ENG_SORT_DEFAULT;
	}
	if (b.oom)
		return apb_nomem(res);

	struct eng_task_page page;
	if (eng_task_list(env->eng, &f, &page, &err) != 0)
		return svc_fail_err(res, &err);
	resp->tasks = apb_ptrs(&b, page.n);
	for (size_t i = 0; resp->tasks != NULL && i < page.n; i++) {
		resp->tasks[i] = tpb_task(&b, &page.tasks[i]);
		if (resp->tasks[i] == NULL)
			break;
		resp->n_tasks = i + 1;
	}
	eng_tasks_free(page.tasks, page.n);
	Tasker__V1__PaginationResponse *p = apb_alloc(&b, sizeof *p);
	if (p == NULL || b.oom)
		return apb_nomem(res);
	tasker__v1__pagination_response__init(p);
	p->total = page.total;
	p->count = (int32_t)resp->n_tasks;
	p->offset = f.offset;
	p->has_more = (int64_t)f.offset + (int64_t)resp->n_tasks < page.total;
	resp->pagination = p;
	return 0;
}

/* ------------------------------------------------------------------ CancelTask */

static int on_cancel_task(struct svc_env *env, const ProtobufCMessage *req_msg,
                          ProtobufCMessage *resp_msg, const struct svc_ctx *ctx,
                          struct svc_result *res)
{
	const Tasker__V1__CancelTaskRequest *req = (const void *)req_msg;
	Tasker__V1__CancelTaskResponse *resp = (void *)resp_msg;
	struct apb b = {.a = ctx->alloc};
	struct tk_err err = {0};
	struct eng_actor by = {
	    .reason = from_req(req->_reason_case, req->reason) ? req->reason : NULL,
	    .subject = svc_ctx_subject(ctx),
	    .transport = ctx->transport,
	};

	if (eng_check_uuid("task", req->task_uuid, &err) != 0)
		return svc_fail_err(res, &err);
	int rc = eng_task_cancel(env->eng, req->task_uuid, &by, &err);
	if (rc != 0 && rc != TRPC_ERR_STATE)
		return svc_fail_err(res, &err);
	if (rc == 0) {
		resp->success = 1;
		trpc_log(TRPC_LOG_INFO, "task %s cancelled by %s over %s: %s", req->task_uuid,
		         ctx->subject ? ctx->subject : "?", ctx->transport ? ctx->transport : "?",
		         by.reason ? by.reason : "no reason given");
	} else { /* already terminal: an answer, not an error (§1.12) */
		resp->_message_case = TASKER__V1__CANCEL_TASK_RESPONSE___MESSAGE_MESSAGE;
		resp->message = apb_strdup(&b, err.msg);
	}
	struct eng_task *t;
	if (eng_task_get(env->eng, req->task_uuid, &t, &err) != 0)
		return svc_fail_err(res, &err);
	resp->task = tpb_task(&b, t);
	eng_tasks_free(t, 1);
	return resp->task != NULL && !b.oom ? 0 : apb_nomem(res);
}

/* ------------------------------------------------------------------ GetTaskContext */

static int on_get_task_context(struct svc_env *env, const ProtobufCMessage *req_msg,
                               ProtobufCMessage *resp_msg, const struct svc_ctx *ctx,
                               struct svc_result *res)
{
	const Tasker__V1__GetTaskContextRequest *req = (const void *)req_msg;
	Tasker__V1__GetTaskContextResponse *resp = (void *)resp_msg;
	struct apb b = {.a = ctx->alloc};
	return fill_context(&b, env, req->task_uuid, &resp->context, res);
}

/* ------------------------------------------------------------------ GetTaskSummary */

static char *iso(struct apb *b, int64_t us)
{
	char buf[40];
	tpb_iso(us, buf, sizeof buf);
	return apb_strdup(b, buf);
}

static Tasker__V1__TaskSummaryMetadata *summary_task(struct apb *b, const struct eng_task *t)
{
	Tasker__V1__TaskSummaryMetadata *m = apb_alloc(b, sizeof *m);
	if (m == NULL)
		return NULL;
	tasker__v1__task_summary_metadata__init(m);
	m->task_uuid = apb_strdup(b, t->task_uuid);
	m->name = apb_strdup(b, t->name);
	m->namespace_ = apb_strdup(b, t->namespace_name);
	m->version = apb_strdup(b, t->version);
	m->status = apb_strdup(b, t->state);
	m->created_at = iso(b, t->created_at);
	m->updated_at = iso(b, t->updated_at);
	if (t->completed_at != ENG_NO_TIME) {
		m->_completed_at_case =
		    TASKER__V1__TASK_SUMMARY_METADATA___COMPLETED_AT_COMPLETED_AT;
		m->completed_at = iso(b, t->completed_at);
	}
	m->initiator = apb_strdup(b, t->initiator);
	m->source_system = apb_strdup(b, t->source_system);
	m->reason = apb_strdup(b, t->reason);
	m->correlation_id = apb_strdup(b, t->correlation_id);
	m->total_steps = t->total_steps;
	m->pending_steps = t->pending_steps;
	m->in_progress_steps = t->in_progress_steps;
	m->completed_steps = t->completed_steps;
	m->failed_steps = t->failed_steps;
	m->completion_percentage = t->completion_percentage;
	m->health_status = apb_strdup(b, t->health_status);
	m->execution_status = apb_strdup(b, t->execution_status);
	if (t->recommended_action[0] != '\0') {
		m->_recommended_action_case =
		    TASKER__V1__TASK_SUMMARY_METADATA___RECOMMENDED_ACTION_RECOMMENDED_ACTION;
		m->recommended_action = apb_strdup(b, t->recommended_action);
	}
	return m;
}

static Tasker__V1__TaskSummaryTemplate *summary_template(struct apb *b, const struct tpl *tpl)
{
	Tasker__V1__TaskSummaryTemplate *m = apb_alloc(b, sizeof *m);
	if (m == NULL)
		return NULL;
	tasker__v1__task_summary_template__init(m);
	m->steps = apb_ptrs(b, tpl->n_steps);
	for (size_t i = 0; m->steps != NULL && i < tpl->n_steps; i++) {
		const struct tpl_step *s = &tpl->steps[i];
		Tasker__V1__TaskSummaryTemplateStep *ms = apb_alloc(b, sizeof *ms);
		if (ms == NULL)
			return NULL;
		tasker__v1__task_summary_template_step__init(ms);
		ms->name = apb_strdup(b, s->name);
		ms->step_type = apb_strdup(b, s->type);
		ms->handler = apb_strdup(b, s->handler_callable);
		ms->dependencies = apb_ptrs(b, s->n_dependencies);
		for (size_t d = 0; ms->dependencies != NULL && d < s->n_dependencies; d++)
			ms->dependencies[ms->n_dependencies++] = apb_strdup(b, s->dependencies[d]);
		ms->retryable = s->retryable != 0;
		ms->max_attempts = s->max_attempts > 0 ? (uint32_t)s->max_attempts : 0;
		m->steps[m->n_steps++] = ms;
	}
	return m;
}

/* What a failed step's result says about the failure; NULL when its
 * result carries no error (a step that never failed). */
static Tasker__V1__StepErrorSummary *summary_error(struct apb *b, const json_t *results)
{
	json_t *e = json_object_get(results, "error");
	if (!json_is_object(e))
		return NULL;
	Tasker__V1__StepErrorSummary *m = apb_alloc(b, sizeof *m);
	if (m == NULL)
		return NULL;
	tasker__v1__step_error_summary__init(m);
	const char *type = json_string_value(json_object_get(e, "error_type"));
	if (type != NULL) {
		m->_error_type_case = TASKER__V1__STEP_ERROR_SUMMARY___ERROR_TYPE_ERROR_TYPE;
		m->error_type = apb_strdup(b, type);
	}
	m->retryable = json_is_true(json_object_get(e, "retryable"));
	json_t *code = json_object_get(e, "status_code");
	if (json_is_number(code) && json_number_value(code) >= 0 &&
	    json_number_value(code) <= 4294967295.0) {
		m->_status_code_case = TASKER__V1__STEP_ERROR_SUMMARY___STATUS_CODE_STATUS_CODE;
		m->status_code = (uint32_t)json_number_value(code);
	}
	return m;
}

static Tasker__V1__StepSummaryInfo *summary_step(struct apb *b, const struct eng_step *s)
{
	Tasker__V1__StepSummaryInfo *m = apb_alloc(b, sizeof *m);
	if (m == NULL)
		return NULL;
	tasker__v1__step_summary_info__init(m);
	m->step_uuid = apb_strdup(b, s->step_uuid);
	m->name = apb_strdup(b, s->name);
	m->current_state = apb_strdup(b, s->state);
	if (s->created_at != ENG_NO_TIME) {
		m->_created_at_case = TASKER__V1__STEP_SUMMARY_INFO___CREATED_AT_CREATED_AT;
		m->created_at = iso(b, s->created_at);
	}
	if (s->completed_at != ENG_NO_TIME) {
		m->_completed_at_case = TASKER__V1__STEP_SUMMARY_INFO___COMPLETED_AT_COMPLETED_AT;
		m->completed_at = iso(b, s->completed_at);
	}
	if (s->last_attempted_at != ENG_NO_TIME) {
		m->_last_attempted_at_case =
		    TASKER__V1__STEP_SUMMARY_INFO___LAST_ATTEMPTED_AT_LAST_ATTEMPTED_AT;
		m->last_attempted_at = iso(b, s->last_attempted_at);
	}
	m->attempts = s->attempts;
	m->max_attempts = s->max_attempts;
	m->dependencies_satisfied = s->dependencies_satisfied;
	m->retry_eligible = s->retry_eligible;
	m->error = summary_error(b, s->results);
	return m;
}

/* Where the REST twin serves the task's resources (§2.1). */
static Tasker__V1__TaskSummaryLinks *summary_links(struct apb *b, const char *task_uuid)
{
	Tasker__V1__TaskSummaryLinks *m = apb_alloc(b, sizeof *m);
	char buf[96];
	if (m == NULL)
		return NULL;
	tasker__v1__task_summary_links__init(m);
	snprintf(buf, sizeof buf, "/v1/tasks/%s", task_uuid);
	m->task = apb_strdup(b, buf);
	snprintf(buf, sizeof buf, "/v1/tasks/%s/workflow_steps", task_uuid);
	m->steps = apb_strdup(b, buf);
	snprintf(buf, sizeof buf, "/v1/dlq/task/%s", task_uuid);
	m->dlq = apb_strdup(b, buf);
	return m;
}

static int on_get_task_summary(struct svc_env *env, const ProtobufCMessage *req_msg,
                               ProtobufCMessage *resp_msg, const struct svc_ctx *ctx,
                               struct svc_result *res)
{
	const Tasker__V1__GetTaskSummaryRequest *req = (const void *)req_msg;
	Tasker__V1__GetTaskSummaryResponse *resp = (void *)resp_msg;
	struct apb b = {.a = ctx->alloc};
	struct tk_err err = {0};
	struct eng_task_summary s;

	if (eng_task_summary(env->eng, req->task_uuid, &s, &err) != 0)
		return svc_fail_err(res, &err);
	resp->task = summary_task(&b, s.task);
	resp->template_ = summary_template(&b, s.tpl);
	resp->steps = apb_ptrs(&b, s.n_steps);
	for (size_t i = 0; resp->steps != NULL && i < s.n_steps; i++)
		resp->steps[resp->n_steps++] = summary_step(&b, &s.steps[i]);
	Tasker__V1__DlqSummaryInfo *dlq = apb_alloc(&b, sizeof *dlq);
	if (dlq != NULL) {
		tasker__v1__dlq_summary_info__init(dlq);
		dlq->in_dlq = s.in_dlq;
		if (s.has_dlq) {
			dlq->_dlq_reason_case =
			    TASKER__V1__DLQ_SUMMARY_INFO___DLQ_REASON_DLQ_REASON;
			dlq->dlq_reason = apb_strdup(&b, s.dlq_reason);
			dlq->_resolution_status_case =
			    TASKER__V1__DLQ_SUMMARY_INFO___RESOLUTION_STATUS_RESOLUTION_STATUS;
			dlq->resolution_status = apb_strdup(&b, s.dlq_resolution_status);
		}
	}
	resp->dlq = dlq;
	resp->links = summary_links(&b, s.task->task_uuid);
	eng_task_summary_clear(&s);
	return b.oom ? apb_nomem(res) : 0;
}

/* ------------------------------------------------------------------ table */

#define OP(m, perm, handler, req, resp)                                                            \
	{                                                                                          \
		.service = "tasker.v1.TaskService", .method = m, .permission = perm,               \
		.request = &tasker__v1__##req##__descriptor,                                       \
		.response = &tasker__v1__##resp##__descriptor, .fn = handler                       \
	}

static const struct svc_op task_ops[] = {
    OP("CreateTask", PERM_CREATE, on_create_task, create_task_request, create_task_response),
    OP("GetTask", PERM_READ, on_get_task, get_task_request, get_task_response),
    OP("ListTasks", PERM_LIST, on_list_tasks, list_tasks_request, list_tasks_response),
    OP("CancelTask", PERM_CANCEL, on_cancel_task, cancel_task_request, cancel_task_response),
    OP("GetTaskContext", PERM_CONTEXT, on_get_task_context, get_task_context_request,
       get_task_context_response),
    OP("GetTaskSummary", PERM_READ, on_get_task_summary, get_task_summary_request,
       get_task_summary_response),
};

const struct svc_table svc_tasks_table = {
    .service = "tasker.v1.TaskService",
    .ops = task_ops,
    .n_ops = sizeof task_ops / sizeof task_ops[0],
};

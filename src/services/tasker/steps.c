/*
 * StepService (tasker.v1): the steps of a task, manual resolution and the
 * result audit. Every request names the task; a step of another task is
 * INVALID_ARGUMENT (tasker-api.md §1.12, ownership mismatch), an unknown
 * task or step NOT_FOUND.
 *
 * ResolveStep runs the engine's operator action (eng_step_resolve), which
 * also drives the task on: a task blocked by the step continues. A
 * COMPLETE_MANUALLY `result` and `metadata` are stored with the step's
 * transition, in the same transaction; the transition records who
 * (performed_by, and the authenticated subject), why and over which API.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "engine/query.h"
#include "services/ops.h"
#include "services/pbjson_struct.h"
#include "services/svc_env.h"
#include "services/tasker/task_pb.h"
#include "tasker/v1/steps.pb-c.h"

#define PERM_READ    "steps:read"
#define PERM_RESOLVE "steps:resolve"

/* One step of the task as a Step message. */
static int get_step(struct apb *b, struct svc_env *env, const char *task_uuid,
                    const char *step_uuid, Tasker__V1__Step **out, struct svc_result *res)
{
	struct eng_step *s;
	size_t n;
	struct tk_err err = {0};
	if (eng_task_steps(env->eng, task_uuid, step_uuid, &s, &n, &err) != 0)
		return svc_fail_err(res, &err);
	if (n != 1) { /* eng_task_steps reports a missing step; defensive */
		eng_steps_free(s, n);
		return svc_fail(res, TRPC_STATUS_NOT_FOUND, "no step %s", step_uuid);
	}
	*out = tpb_step(b, &s[0]);
	eng_steps_free(s, n);
	return *out != NULL ? 0 : apb_nomem(res);
}

static int on_get_step(struct svc_env *env, const ProtobufCMessage *req_msg,
                       ProtobufCMessage *resp_msg, const struct svc_ctx *ctx,
                       struct svc_result *res)
{
	const Tasker__V1__GetStepRequest *req = (const void *)req_msg;
	Tasker__V1__GetStepResponse *resp = (void *)resp_msg;
	struct apb b = {.a = ctx->alloc};
	return get_step(&b, env, req->task_uuid, req->step_uuid, &resp->step, res);
}

static int on_list_steps(struct svc_env *env, const ProtobufCMessage *req_msg,
                         ProtobufCMessage *resp_msg, const struct svc_ctx *ctx,
                         struct svc_result *res)
{
	const Tasker__V1__ListStepsRequest *req = (const void *)req_msg;
	Tasker__V1__ListStepsResponse *resp = (void *)resp_msg;
	struct apb b = {.a = ctx->alloc};
	struct eng_step *s;
	size_t n;
	struct tk_err err = {0};

	if (eng_task_steps(env->eng, req->task_uuid, NULL, &s, &n, &err) != 0)
		return svc_fail_err(res, &err);
	resp->steps = apb_ptrs(&b, n);
	for (size_t i = 0; resp->steps != NULL && i < n; i++) {
		resp->steps[i] = tpb_step(&b, &s[i]);
		if (resp->steps[i] == NULL)
			break;
		resp->n_steps = i + 1;
	}
	eng_steps_free(s, n);
	Tasker__V1__PaginationResponse *p = apb_alloc(&b, sizeof *p);
	if (p == NULL || b.oom)
		return apb_nomem(res);
	/* Every step of the task, in one page. */
	tasker__v1__pagination_response__init(p);
	p->total = (int64_t)resp->n_steps;
	p->count = (int32_t)resp->n_steps;
	resp->pagination = p;
	return 0;
}

/* The JSON text of an optional Struct; NULL (no error) when absent. */
static int struct_text(const Google__Protobuf__Struct *s, const char *what, char **out,
                       struct svc_result *res)
{
	struct tk_err err = {0};
	*out = NULL;
	if (s == NULL)
		return 0;
	json_t *j = pbjson_struct_to_json(s, what, &err);
	if (j == NULL)
		return svc_fail_err(res, &err);
	*out = json_dumps(j, JSON_COMPACT);
	json_decref(j);
	return *out != NULL ? 0 : apb_nomem(res);
}

static int on_resolve_step(struct svc_env *env, const ProtobufCMessage *req_msg,
                           ProtobufCMessage *resp_msg, const struct svc_ctx *ctx,
                           struct svc_result *res)
{
	const Tasker__V1__ResolveStepRequest *req = (const void *)req_msg;
	Tasker__V1__ResolveStepResponse *resp = (void *)resp_msg;
	struct apb b = {.a = ctx->alloc};
	struct tk_err err = {0};
	int action;

	switch (req->action_type) {
	case TASKER__V1__STEP_MANUAL_ACTION_TYPE__STEP_MANUAL_ACTION_TYPE_RESET_FOR_RETRY:
		action = ENG_STEP_RESET_FOR_RETRY;
		break;
	case TASKER__V1__STEP_MANUAL_ACTION_TYPE__STEP_MANUAL_ACTION_TYPE_RESOLVE_MANUALLY:
		action = ENG_STEP_RESOLVE_MANUALLY;
		break;
	case TASKER__V1__STEP_MANUAL_ACTION_TYPE__STEP_MANUAL_ACTION_TYPE_COMPLETE_MANUALLY:
		action = ENG_STEP_COMPLETE_MANUALLY;
		break;
	default:
		return svc_fail(res, TRPC_STATUS_INVALID_ARGUMENT,
		                "action_type is required: RESET_FOR_RETRY, RESOLVE_MANUALLY or "
		                "COMPLETE_MANUALLY");
	}
	if (req->performed_by[0] == '\0' || req->reason[0] == '\0')
		return svc_fail(res, TRPC_STATUS_INVALID_ARGUMENT,
		                "performed_by and reason are required");
	if (action != ENG_STEP_COMPLETE_MANUALLY && (req->result != NULL || req->metadata != NULL))
		return svc_fail(res, TRPC_STATUS_INVALID_ARGUMENT,
		                "result and metadata apply to COMPLETE_MANUALLY only");
	if (eng_step_of_task(env->eng, req->task_uuid, req->step_uuid, &err) != 0)
		return svc_fail_err(res, &err);

	char *result = NULL, *metadata = NULL;
	int rv = -1;
	if (struct_text(req->result, "result", &result, res) != 0 ||
	    struct_text(req->metadata, "metadata", &metadata, res) != 0)
		goto out;
	struct eng_actor by = {.operator_name = req->performed_by,
	                       .reason = req->reason,
	                       .subject = svc_ctx_subject(ctx),
	                       .transport = ctx->transport};
	if (eng_step_resolve(env->eng, req->step_uuid, action, result, metadata, &by, &err) != 0) {
		rv = svc_fail_err(res, &err);
		goto out;
	}
	trpc_log(TRPC_LOG_INFO, "step %s of task %s: %s by %s (%s, as %s): %s", req->step_uuid,
	         req->task_uuid,
	         action == ENG_STEP_RESET_FOR_RETRY    ? "reset for retry"
	         : action == ENG_STEP_RESOLVE_MANUALLY ? "resolved manually"
	                                               : "completed manually",
	         req->performed_by, ctx->transport ? ctx->transport : "?",
	         ctx->subject ? ctx->subject : "?", req->reason);
	rv = get_step(&b, env, req->task_uuid, req->step_uuid, &resp->step, res);
out:
	free(result);
	free(metadata);
	return rv;
}

static Tasker__V1__StepAuditRecord *audit_record(struct apb *b, const struct eng_audit *a)
{
	Tasker__V1__StepAuditRecord *m = apb_alloc(b, sizeof *m);
	if (m == NULL)
		return NULL;
	tasker__v1__step_audit_record__init(m);
	m->audit_uuid = apb_strdup(b, a->audit_uuid);
	m->step_uuid = apb_strdup(b, a->step_uuid);
	m->transition_uuid = apb_strdup(b, a->transition_uuid);
	m->task_uuid = apb_strdup(b, a->task_uuid);
	m->recorded_at = tpb_time(b, a->recorded_at);
	if (a->worker_uuid[0] != '\0') {
		m->_worker_uuid_case = TASKER__V1__STEP_AUDIT_RECORD___WORKER_UUID_WORKER_UUID;
		m->worker_uuid = apb_strdup(b, a->worker_uuid);
	}
	if (a->correlation_id[0] != '\0') {
		m->_correlation_id_case =
		    TASKER__V1__STEP_AUDIT_RECORD___CORRELATION_ID_CORRELATION_ID;
		m->correlation_id = apb_strdup(b, a->correlation_id);
	}
	m->success = a->success;
	if (a->has_execution_time) {
		m->_execution_time_ms_case =
		    TASKER__V1__STEP_AUDIT_RECORD___EXECUTION_TIME_MS_EXECUTION_TIME_MS;
		m->execution_time_ms = a->execution_time_ms;
	}
	m->result = tpb_struct(b, a->result);
	m->step_name = apb_strdup(b, a->step_name);
	if (a->from_state[0] != '\0') {
		m->_from_state_case = TASKER__V1__STEP_AUDIT_RECORD___FROM_STATE_FROM_STATE;
		m->from_state = tpb_step_state(a->from_state);
	}
	m->to_state = tpb_step_state(a->to_state);
	return m;
}

static int on_get_step_audit(struct svc_env *env, const ProtobufCMessage *req_msg,
                             ProtobufCMessage *resp_msg, const struct svc_ctx *ctx,
                             struct svc_result *res)
{
	const Tasker__V1__GetStepAuditRequest *req = (const void *)req_msg;
	Tasker__V1__GetStepAuditResponse *resp = (void *)resp_msg;
	struct apb b = {.a = ctx->alloc};
	struct eng_audit *a;
	size_t n;
	struct tk_err err = {0};

	if (eng_step_audit(env->eng, req->task_uuid, req->step_uuid, &a, &n, &err) != 0)
		return svc_fail_err(res, &err);
	resp->audit_records = apb_ptrs(&b, n);
	for (size_t i = 0; resp->audit_records != NULL && i < n; i++) {
		resp->audit_records[i] = audit_record(&b, &a[i]);
		if (resp->audit_records[i] == NULL)
			break;
		resp->n_audit_records = i + 1;
	}
	eng_audits_free(a, n);
	return b.oom ? apb_nomem(res) : 0;
}

#define OP(m, perm, handler, req, resp)                                                            \
	{                                                                                          \
		.service = "tasker.v1.StepService", .method = m, .permission = perm,               \
		.request = &tasker__v1__##req##__descriptor,                                       \
		.response = &tasker__v1__##resp##__descriptor, .fn = handler                       \
	}

static const struct svc_op step_ops[] = {
    OP("GetStep", PERM_READ, on_get_step, get_step_request, get_step_response),
    OP("ListSteps", PERM_READ, on_list_steps, list_steps_request, list_steps_response),
    OP("ResolveStep", PERM_RESOLVE, on_resolve_step, resolve_step_request, resolve_step_response),
    OP("GetStepAudit", PERM_READ, on_get_step_audit, get_step_audit_request,
       get_step_audit_response),
};

const struct svc_table svc_steps_table = {
    .service = "tasker.v1.StepService",
    .ops = step_ops,
    .n_ops = sizeof step_ops / sizeof step_ops[0],
};

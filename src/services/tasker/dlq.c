/*
 * DlqService (tasker.v1): the dead-letter investigation log (migration
 * 0005). Entries are opened by the staleness detector; operators read
 * them, fix the task through the step RPCs and close the entry here.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "engine/admin.h"
#include "services/ops.h"
#include "services/svc_env.h"
#include "services/tasker/admin_pb.h"
#include "tasker/v1/dlq.pb-c.h"

#define DEFAULT_LIST_LIMIT  50
#define DEFAULT_QUEUE_LIMIT 100

#define REASON_PREFIX "DLQ_REASON_"
#define STATUS_PREFIX "DLQ_RESOLUTION_STATUS_"

static int reason_of(const char *db)
{
	return apb_enum_from_db(&tasker__v1__dlq_reason__descriptor, REASON_PREFIX, db);
}

static int status_of(const char *db)
{
	return apb_enum_from_db(&tasker__v1__dlq_resolution_status__descriptor, STATUS_PREFIX, db);
}

/* The database name of a requested status, or -1 after svc_fail. */
static int status_name(int value, char *buf, size_t size, struct svc_result *res)
{
	if (apb_enum_to_db(&tasker__v1__dlq_resolution_status__descriptor, STATUS_PREFIX, value,
	                   buf, size) != 0)
		return svc_fail(res, TRPC_STATUS_INVALID_ARGUMENT,
		                "resolution_status %d is not a resolution status (pending, "
		                "manually_resolved, permanently_failed or cancelled)",
		                value);
	return 0;
}

/* One entry; NULL when out of memory, or with err set for a stored JSON
 * value that is not an object. */
static Tasker__V1__DlqEntry *entry_msg(struct apb *b, const struct adm_dlq_entry *d,
                                       struct tk_err *err)
{
	Tasker__V1__DlqEntry *m = apb_alloc(b, sizeof *m);
	if (m == NULL)
		return NULL;
	tasker__v1__dlq_entry__init(m);
	m->dlq_entry_uuid = apb_strdup(b, d->dlq_entry_uuid);
	m->task_uuid = apb_strdup(b, d->task_uuid);
	m->original_state = apb_strdup(b, d->original_state);
	m->dlq_reason = reason_of(d->dlq_reason);
	m->dlq_timestamp = apb_time(b, &d->dlq_timestamp);
	m->resolution_status = status_of(d->resolution_status);
	m->resolution_timestamp = apb_time(b, &d->resolution_timestamp);
	if (d->resolution_notes != NULL) {
		m->_resolution_notes_case =
		    TASKER__V1__DLQ_ENTRY___RESOLUTION_NOTES_RESOLUTION_NOTES;
		m->resolution_notes = apb_strdup(b, d->resolution_notes);
	}
	if (d->resolved_by != NULL) {
		m->_resolved_by_case = TASKER__V1__DLQ_ENTRY___RESOLVED_BY_RESOLVED_BY;
		m->resolved_by = apb_strdup(b, d->resolved_by);
	}
	if ((m->task_snapshot = apb_struct(b, d->task_snapshot_json, err)) == NULL)
		return NULL;
	/* metadata is a JSON object when set; anything else is not a Struct */
	if (d->metadata_json != NULL && d->metadata_json[0] == '{' &&
	    (m->metadata = apb_struct(b, d->metadata_json, err)) == NULL)
		return NULL;
	m->created_at = apb_time(b, &d->created_at);
	m->updated_at = apb_time(b, &d->updated_at);
	return m;
}

static int on_list(struct svc_env *env, const ProtobufCMessage *req_msg, ProtobufCMessage *resp_msg,
                   const struct svc_ctx *ctx, struct svc_result *res)
{
	const Tasker__V1__ListDlqEntriesRequest *req =
	    (const Tasker__V1__ListDlqEntriesRequest *)req_msg;
	Tasker__V1__ListDlqEntriesResponse *resp = (Tasker__V1__ListDlqEntriesResponse *)resp_msg;
	struct apb b = {.a = ctx->alloc};
	char status[32];
	const char *filter = NULL;
	int limit = DEFAULT_LIST_LIMIT, offset = 0;
	if (req->_resolution_status_case ==
	    TASKER__V1__LIST_DLQ_ENTRIES_REQUEST___RESOLUTION_STATUS_RESOLUTION_STATUS) {
		if (status_name(req->resolution_status, status, sizeof status, res) != 0)
			return -1;
		filter = status;
	}
	if (req->_limit_case == TASKER__V1__LIST_DLQ_ENTRIES_REQUEST___LIMIT_LIMIT)
		limit = req->limit;
	if (req->_offset_case == TASKER__V1__LIST_DLQ_ENTRIES_REQUEST___OFFSET_OFFSET)
		offset = req->offset;

	struct adm_dlq_entries l;
	struct tk_err err = {0};
	if (adm_dlq_list(env->eng, filter, limit, offset, &l, &err) != 0)
		return svc_fail_err(res, &err);
	int rv = -1;
	if ((resp->entries = apb_ptrs(&b, l.n)) == NULL)
		goto out;
	for (size_t i = 0; i < l.n; i++) {
		Tasker__V1__DlqEntry *m = entry_msg(&b, &l.v[i], &err);
		if (m == NULL)
			goto out;
		resp->entries[resp->n_entries++] = m;
	}
	rv = 0;
out:
	rv = apb_finish(&b, rv, &err, res);
	adm_dlq_entries_clear(&l);
	return rv;
}

static int on_get_by_task(struct svc_env *env, const ProtobufCMessage *req_msg,
                          ProtobufCMessage *resp_msg, const struct svc_ctx *ctx,
                          struct svc_result *res)
{
	const Tasker__V1__GetDlqEntryByTaskRequest *req =
	    (const Tasker__V1__GetDlqEntryByTaskRequest *)req_msg;
	Tasker__V1__GetDlqEntryByTaskResponse *resp =
	    (Tasker__V1__GetDlqEntryByTaskResponse *)resp_msg;
	struct apb b = {.a = ctx->alloc};
	struct adm_dlq_entries l;
	struct tk_err err = {0};
	if (adm_dlq_entry_by_task(env->eng, req->task_uuid, &l, &err) != 0)
		return svc_fail_err(res, &err);
	resp->entry = entry_msg(&b, &l.v[0], &err);
	int rv = apb_finish(&b, resp->entry == NULL ? -1 : 0, &err, res);
	adm_dlq_entries_clear(&l);
	return rv;
}

static int on_update(struct svc_env *env, const ProtobufCMessage *req_msg,
                     ProtobufCMessage *resp_msg, const struct svc_ctx *ctx, struct svc_result *res)
{
	const Tasker__V1__UpdateDlqInvestigationRequest *req =
	    (const Tasker__V1__UpdateDlqInvestigationRequest *)req_msg;
	Tasker__V1__UpdateDlqInvestigationResponse *resp =
	    (Tasker__V1__UpdateDlqInvestigationResponse *)resp_msg;
	struct apb b = {.a = ctx->alloc};
	struct adm_dlq_update u = {0};
	struct tk_err err = {0};
	char status[32];
	char *metadata = NULL;
	if (req->_resolution_status_case ==
	    TASKER__V1__UPDATE_DLQ_INVESTIGATION_REQUEST___RESOLUTION_STATUS_RESOLUTION_STATUS) {
		if (status_name(req->resolution_status, status, sizeof status, res) != 0)
			return -1;
		u.resolution_status = status;
	}
	if (req->_resolution_notes_case ==
	    TASKER__V1__UPDATE_DLQ_INVESTIGATION_REQUEST___RESOLUTION_NOTES_RESOLUTION_NOTES)
		u.resolution_notes = req->resolution_notes;
	if (req->_resolved_by_case ==
	    TASKER__V1__UPDATE_DLQ_INVESTIGATION_REQUEST___RESOLVED_BY_RESOLVED_BY)
		u.resolved_by = req->resolved_by;
	if (req->metadata != NULL) {
		if ((metadata = apb_struct_text(req->metadata, "metadata", &err)) == NULL)
			return svc_fail_err(res, &err);
		u.metadata_json = metadata;
	}
	int rv = adm_dlq_update(env->eng, req->dlq_entry_uuid, &u, &err);
	free(metadata);
	if (rv != 0)
		return svc_fail_err(res, &err);
	resp->success = 1;
	resp->message =
	    apb_strdup(&b, u.resolution_status != NULL ? "Investigation updated; status recorded"
	                                               : "Investigation updated");
	resp->dlq_entry_uuid = apb_strdup(&b, req->dlq_entry_uuid);
	return b.oom ? apb_nomem(res) : 0;
}

static int on_stats(struct svc_env *env, const ProtobufCMessage *req_msg,
                    ProtobufCMessage *resp_msg, const struct svc_ctx *ctx, struct svc_result *res)
{
	(void)req_msg;
	Tasker__V1__GetDlqStatsResponse *resp = (Tasker__V1__GetDlqStatsResponse *)resp_msg;
	struct apb b = {.a = ctx->alloc};
	struct adm_dlq_stats st;
	struct tk_err err = {0};
	if (adm_dlq_stats(env->eng, &st, &err) != 0)
		return svc_fail_err(res, &err);
	int rv = -1;
	if ((resp->stats = apb_ptrs(&b, st.n)) == NULL)
		goto out;
	for (size_t i = 0; i < st.n; i++) {
		const struct adm_dlq_stat *s = &st.v[i];
		Tasker__V1__DlqStats *m = apb_alloc(&b, sizeof *m);
		if (m == NULL)
			goto out;
		tasker__v1__dlq_stats__init(m);
		m->dlq_reason = reason_of(s->dlq_reason);
		m->total_entries = s->total;
		m->pending = s->pending;
		m->manually_resolved = s->manually_resolved;
		m->permanent_failures = s->permanently_failed;
		m->cancelled = s->cancelled;
		m->oldest_entry = apb_time(&b, &s->oldest);
		m->newest_entry = apb_time(&b, &s->newest);
		if (s->has_avg_resolution) {
			m->_avg_resolution_time_minutes_case =
			    TASKER__V1__DLQ_STATS___AVG_RESOLUTION_TIME_MINUTES_AVG_RESOLUTION_TIME_MINUTES;
			m->avg_resolution_time_minutes = s->avg_resolution_minutes;
		}
		resp->stats[resp->n_stats++] = m;
	}
	rv = 0;
out:
	rv = apb_finish(&b, rv, NULL, res);
	adm_dlq_stats_clear(&st);
	return rv;
}

static int on_investigation_queue(struct svc_env *env, const ProtobufCMessage *req_msg,
                                  ProtobufCMessage *resp_msg, const struct svc_ctx *ctx,
                                  struct svc_result *res)
{
	const Tasker__V1__GetDlqInvestigationQueueRequest *req =
	    (const Tasker__V1__GetDlqInvestigationQueueRequest *)req_msg;
	Tasker__V1__GetDlqInvestigationQueueResponse *resp =
	    (Tasker__V1__GetDlqInvestigationQueueResponse *)resp_msg;
	struct apb b = {.a = ctx->alloc};
	int limit = DEFAULT_QUEUE_LIMIT;
	if (req->_limit_case == TASKER__V1__GET_DLQ_INVESTIGATION_QUEUE_REQUEST___LIMIT_LIMIT)
		limit = req->limit;
	struct adm_dlq_queue q;
	struct tk_err err = {0};
	if (adm_dlq_investigation_queue(env->eng, limit, &q, &err) != 0)
		return svc_fail_err(res, &err);
	int rv = -1;
	if ((resp->entries = apb_ptrs(&b, q.n)) == NULL)
		goto out;
	for (size_t i = 0; i < q.n; i++) {
		const struct adm_dlq_queue_entry *e = &q.v[i];
		Tasker__V1__DlqInvestigationQueueEntry *m = apb_alloc(&b, sizeof *m);
		if (m == NULL)
			goto out;
		tasker__v1__dlq_investigation_queue_entry__init(m);
		m->dlq_entry_uuid = apb_strdup(&b, e->dlq_entry_uuid);
		m->task_uuid = apb_strdup(&b, e->task_uuid);
		m->original_state = apb_strdup(&b, e->original_state);
		m->dlq_reason = reason_of(e->dlq_reason);
		m->dlq_timestamp = apb_time(&b, &e->dlq_timestamp);
		m->minutes_in_dlq = e->minutes_in_dlq;
		if (e->namespace_name != NULL) {
			m->_namespace_name_case =
			    TASKER__V1__DLQ_INVESTIGATION_QUEUE_ENTRY___NAMESPACE_NAME_NAMESPACE_NAME;
			m->namespace_name = apb_strdup(&b, e->namespace_name);
		}
		if (e->task_name != NULL) {
			m->_task_name_case =
			    TASKER__V1__DLQ_INVESTIGATION_QUEUE_ENTRY___TASK_NAME_TASK_NAME;
			m->task_name = apb_strdup(&b, e->task_name);
		}
		if (e->current_state != NULL) {
			m->_current_state_case =
			    TASKER__V1__DLQ_INVESTIGATION_QUEUE_ENTRY___CURRENT_STATE_CURRENT_STATE;
			m->current_state = apb_strdup(&b, e->current_state);
		}
		if (e->has_time_in_state) {
			m->_time_in_state_minutes_case =
			    TASKER__V1__DLQ_INVESTIGATION_QUEUE_ENTRY___TIME_IN_STATE_MINUTES_TIME_IN_STATE_MINUTES;
			m->time_in_state_minutes = e->time_in_state_minutes;
		}
		m->priority_score = e->priority_score;
		resp->entries[resp->n_entries++] = m;
	}
	rv = 0;
out:
	rv = apb_finish(&b, rv, NULL, res);
	adm_dlq_queue_clear(&q);
	return rv;
}

static int on_staleness(struct svc_env *env, const ProtobufCMessage *req_msg,
                        ProtobufCMessage *resp_msg, const struct svc_ctx *ctx,
                        struct svc_result *res)
{
	const Tasker__V1__GetStalenessMonitoringRequest *req =
	    (const Tasker__V1__GetStalenessMonitoringRequest *)req_msg;
	Tasker__V1__GetStalenessMonitoringResponse *resp =
	    (Tasker__V1__GetStalenessMonitoringResponse *)resp_msg;
	struct apb b = {.a = ctx->alloc};
	int limit = DEFAULT_QUEUE_LIMIT;
	if (req->_limit_case == TASKER__V1__GET_STALENESS_MONITORING_REQUEST___LIMIT_LIMIT)
		limit = req->limit;
	struct adm_staleness st;
	struct tk_err err = {0};
	if (adm_staleness(env->eng, limit, &st, &err) != 0)
		return svc_fail_err(res, &err);
	int rv = -1;
	if ((resp->entries = apb_ptrs(&b, st.n)) == NULL)
		goto out;
	for (size_t i = 0; i < st.n; i++) {
		const struct adm_staleness_entry *e = &st.v[i];
		Tasker__V1__StalenessMonitoringEntry *m = apb_alloc(&b, sizeof *m);
		if (m == NULL)
			goto out;
		tasker__v1__staleness_monitoring_entry__init(m);
		m->task_uuid = apb_strdup(&b, e->task_uuid);
		if (e->namespace_name != NULL) {
			m->_namespace_name_case =
			    TASKER__V1__STALENESS_MONITORING_ENTRY___NAMESPACE_NAME_NAMESPACE_NAME;
			m->namespace_name = apb_strdup(&b, e->namespace_name);
		}
		if (e->task_name != NULL) {
			m->_task_name_case =
			    TASKER__V1__STALENESS_MONITORING_ENTRY___TASK_NAME_TASK_NAME;
			m->task_name = apb_strdup(&b, e->task_name);
		}
		m->current_state = apb_strdup(&b, e->current_state);
		m->time_in_state_minutes = e->time_in_state_minutes;
		m->task_age_minutes = e->task_age_minutes;
		m->staleness_threshold_minutes = e->threshold_minutes;
		m->health_status =
		    apb_enum_from_db(&tasker__v1__staleness_health_status__descriptor,
		                     "STALENESS_HEALTH_STATUS_", e->health_status);
		m->priority = e->priority;
		resp->entries[resp->n_entries++] = m;
	}
	rv = 0;
out:
	rv = apb_finish(&b, rv, NULL, res);
	adm_staleness_clear(&st);
	return rv;
}

#define DLQ_OP(m, perm, req, resp, f)                                                              \
	{                                                                                          \
		.service = "tasker.v1.DlqService", .method = m, .permission = perm,                \
		.request = &tasker__v1__##req##__descriptor,                                       \
		.response = &tasker__v1__##resp##__descriptor, .fn = f                             \
	}

static const struct svc_op dlq_ops[] = {
    DLQ_OP("ListEntries", "dlq:read", list_dlq_entries_request, list_dlq_entries_response, on_list),
    DLQ_OP("GetEntryByTask", "dlq:read", get_dlq_entry_by_task_request,
           get_dlq_entry_by_task_response, on_get_by_task),
    DLQ_OP("UpdateInvestigation", "dlq:update", update_dlq_investigation_request,
           update_dlq_investigation_response, on_update),
    DLQ_OP("GetStats", "dlq:stats", get_dlq_stats_request, get_dlq_stats_response, on_stats),
    DLQ_OP("GetInvestigationQueue", "dlq:read", get_dlq_investigation_queue_request,
           get_dlq_investigation_queue_response, on_investigation_queue),
    DLQ_OP("GetStalenessMonitoring", "dlq:read", get_staleness_monitoring_request,
           get_staleness_monitoring_response, on_staleness),
};

const struct svc_table svc_dlq_table = {
    .service = "tasker.v1.DlqService",
    .ops = dlq_ops,
    .n_ops = sizeof dlq_ops / sizeof dlq_ops[0],
};

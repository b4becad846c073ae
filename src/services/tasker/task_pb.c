/*
 * task_pb: Task and Step messages from engine query results (task_pb.h).
 */
#include "config.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "services/pbjson_struct.h"
#include "services/tasker/task_pb.h"

static void split_us(int64_t us, int64_t *s, int32_t *ns)
{
	int64_t sec = us / 1000000, rem = us % 1000000;
	if (rem < 0) { /* floor division: before 1970 the remainder is negative */
		sec -= 1;
		rem += 1000000;
	}
	*s = sec;
	*ns = (int32_t)(rem * 1000);
}

Google__Protobuf__Timestamp *tpb_time(struct apb *b, int64_t us)
{
	if (us == ENG_NO_TIME)
		return NULL;
	struct adm_time t = {.valid = 1};
	split_us(us, &t.seconds, &t.nanos);
	return apb_time(b, &t);
}

void tpb_iso(int64_t us, char *buf, size_t size)
{
	if (us == ENG_NO_TIME) {
		snprintf(buf, size, "%s", "");
		return;
	}
	int64_t s;
	int32_t ns;
	split_us(us, &s, &ns);
	time_t tt = (time_t)s;
	struct tm tm;
	char day[32];
	gmtime_r(&tt, &tm);
	strftime(day, sizeof day, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf, size, "%s.%06dZ", day, (int)(ns / 1000));
}

Tasker__V1__TaskState tpb_task_state(const char *db)
{
	return (Tasker__V1__TaskState)apb_enum_from_db(&tasker__v1__task_state__descriptor,
	                                               "TASK_STATE_", db);
}

Tasker__V1__StepState tpb_step_state(const char *db)
{
	return (Tasker__V1__StepState)apb_enum_from_db(&tasker__v1__step_state__descriptor,
	                                               "STEP_STATE_", db);
}

int tpb_task_state_db(int value, char *buf, size_t size)
{
	return apb_enum_to_db(&tasker__v1__task_state__descriptor, "TASK_STATE_", value, buf, size);
}

Google__Protobuf__Struct *tpb_struct(struct apb *b, const json_t *json)
{
	struct tk_err err = {0};
	if (!json_is_object(json))
		return NULL;
	Google__Protobuf__Struct *s = pbjson_struct_from_json(b->a, json, &err);
	if (s == NULL) {
		if (err.code == TRPC_ERR_NOMEM)
			b->oom = 1;
		else /* deeper than the converter goes: left out, and said so */
			trpc_log(TRPC_LOG_WARN, "a stored JSON value cannot be sent: %s", err.msg);
	}
	return s;
}

/* The tags as stored: a JSON array of strings (other elements are skipped:
 * a tag is a string on the wire). */
static void set_tags(struct apb *b, Tasker__V1__Task *m, const json_t *tags)
{
	size_t n = json_array_size(tags);
	if (n == 0)
		return;
	m->tags = apb_ptrs(b, n);
	if (m->tags == NULL)
		return;
	for (size_t i = 0; i < n; i++) {
		const char *s = json_string_value(json_array_get(tags, i));
		if (s != NULL)
			m->tags[m->n_tags++] = apb_strdup(b, s);
	}
}

Tasker__V1__Task *tpb_task(struct apb *b, const struct eng_task *t)
{
	Tasker__V1__Task *m = apb_alloc(b, sizeof *m);
	if (m == NULL)
		return NULL;
	tasker__v1__task__init(m);
	m->task_uuid = apb_strdup(b, t->task_uuid);
	m->name = apb_strdup(b, t->name);
	m->namespace_ = apb_strdup(b, t->namespace_name);
	m->version = apb_strdup(b, t->version);
	m->state = tpb_task_state(t->state);
	m->created_at = tpb_time(b, t->created_at);
	m->updated_at = tpb_time(b, t->updated_at);
	m->completed_at = tpb_time(b, t->completed_at);
	m->context = tpb_struct(b, t->context);
	m->initiator = apb_strdup(b, t->initiator);
	m->source_system = apb_strdup(b, t->source_system);
	m->reason = apb_strdup(b, t->reason);
	m->_priority_case = TASKER__V1__TASK___PRIORITY_PRIORITY; /* NOT NULL in the table */
	m->priority = t->priority;
	set_tags(b, m, t->tags);
	m->correlation_id = apb_strdup(b, t->correlation_id);
	if (t->parent_correlation_id[0] != '\0') {
		m->_parent_correlation_id_case =
		    TASKER__V1__TASK___PARENT_CORRELATION_ID_PARENT_CORRELATION_ID;
		m->parent_correlation_id = apb_strdup(b, t->parent_correlation_id);
	}
	m->total_steps = t->total_steps;
	m->pending_steps = t->pending_steps;
	m->in_progress_steps = t->in_progress_steps;
	m->completed_steps = t->completed_steps;
	m->failed_steps = t->failed_steps;
	m->ready_steps = t->ready_steps;
	m->execution_status = apb_strdup(b, t->execution_status);
	m->recommended_action = apb_strdup(b, t->recommended_action);
	m->completion_percentage = t->completion_percentage;
	m->health_status = apb_strdup(b, t->health_status);
	return b->oom ? NULL : m;
}

Tasker__V1__Step *tpb_step(struct apb *b, const struct eng_step *s)
{
	Tasker__V1__Step *m = apb_alloc(b, sizeof *m);
	if (m == NULL)
		return NULL;
	tasker__v1__step__init(m);
	m->step_uuid = apb_strdup(b, s->step_uuid);
	m->task_uuid = apb_strdup(b, s->task_uuid);
	m->name = apb_strdup(b, s->name);
	m->state = tpb_step_state(s->state);
	m->created_at = tpb_time(b, s->created_at);
	m->updated_at = tpb_time(b, s->updated_at);
	m->completed_at = tpb_time(b, s->completed_at);
	m->results = tpb_struct(b, s->results);
	m->dependencies_satisfied = s->dependencies_satisfied;
	m->retry_eligible = s->retry_eligible;
	m->ready_for_execution = s->ready_for_execution;
	m->total_parents = s->total_parents;
	m->completed_parents = s->completed_parents;
	m->attempts = s->attempts;
	m->max_attempts = s->max_attempts;
	m->last_failure_at = tpb_time(b, s->last_failure_at);
	m->next_retry_at = tpb_time(b, s->next_retry_at);
	m->last_attempted_at = tpb_time(b, s->last_attempted_at);
	if (s->has_backoff) {
		m->_backoff_request_seconds_case =
		    TASKER__V1__STEP___BACKOFF_REQUEST_SECONDS_BACKOFF_REQUEST_SECONDS;
		m->backoff_request_seconds = s->backoff_request_seconds;
	}
	return b->oom ? NULL : m;
}

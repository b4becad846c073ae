/*
 * task_pb: the Task and Step messages of tasks.proto built from the
 * engine's query results, shared by TaskService, StepService and the
 * status stream. Allocation follows admin_pb.h: everything comes from b->a,
 * a failed allocation returns NULL and sets b->oom.
 */
#ifndef TK_SVC_TASK_PB_H
#define TK_SVC_TASK_PB_H

#include <stddef.h>
#include <stdint.h>

#include "engine/query.h"
#include "services/tasker/admin_pb.h"
#include "tasker/v1/tasks.pb-c.h"

/* A Timestamp of an instant in microseconds; NULL for ENG_NO_TIME (check
 * b->oom to tell absence from failure). */
Google__Protobuf__Timestamp *tpb_time(struct apb *b, int64_t us);

/* RFC 3339 UTC with microseconds ("2026-03-21T10:00:00.123456Z") into buf
 * (>= 32 bytes); "" for ENG_NO_TIME. */
void tpb_iso(int64_t us, char *buf, size_t size);

/* Database state names <-> enum values (0, UNSPECIFIED, when unknown). */
Tasker__V1__TaskState tpb_task_state(const char *db);
Tasker__V1__StepState tpb_step_state(const char *db);
/* The database name of a TaskState value into buf; -1 for UNSPECIFIED or
 * a value the enum does not have. */
int tpb_task_state_db(int value, char *buf, size_t size);

/* A Struct of a JSON object; NULL (the field stays absent) for NULL or a
 * JSON value of another type, which a Struct cannot hold, and when out of
 * memory (b->oom). */
Google__Protobuf__Struct *tpb_struct(struct apb *b, const json_t *json);

/* The messages (NULL with b->oom set when out of memory). */
Tasker__V1__Task *tpb_task(struct apb *b, const struct eng_task *t);
Tasker__V1__Step *tpb_step(struct apb *b, const struct eng_step *s);

#endif

/*
 * stream: TaskService.StreamTaskStatus, pushed from PostgreSQL
 * notifications (migration 0009: channel tasker_task_events, payload the
 * task uuid, sent at commit whenever a task or step transition is
 * written).
 *
 * One listener thread per taskerd holds a LISTEN connection (with
 * reconnection, store/queue.h) and fans each notification out to the
 * streams subscribed to that task (a hash table by task uuid). A stream
 * never holds a thread while it waits: on a notification a job on the
 * server's worker pool reads the task's new transitions and its steps'
 * states (one query), sends what changed, and returns. A stream has at
 * most one job at a time; notifications arriving meanwhile are folded
 * into one more pass. After a reconnection of the listener (notifications
 * may have been missed) every stream is read once. There is no polling.
 *
 * What a stream sends (TaskStatusUpdate):
 *   - at once, the current state: TASK_STATE_CHANGE, and with
 *     include_steps one STEP_STATE_CHANGE per step;
 *   - TASK_STATE_CHANGE for every task transition after that, in order
 *     (read from the transition history, so none is skipped);
 *   - with include_steps, STEP_STATE_CHANGE when a step's state or attempt
 *     count differs from what the stream last sent (a step that passed
 *     through several states between two reads is reported in its latest);
 *   - updates ordered by the time of the change (changes written by one
 *     transaction carry the same time; task transitions keep their order);
 *   - on a terminal state, the last update: TASK_COMPLETE for complete and
 *     resolved_manually, TASK_ERROR for error (error_message names the
 *     failed steps and their messages) and cancelled ("task cancelled");
 *     task_state says which. Then the call ends with OK.
 * Other endings: the client cancels (CANCELLED), the server shuts down
 * (UNAVAILABLE), the task disappears (NOT_FOUND), the database fails
 * (the mapped status of services/svc.c). A bad uuid is INVALID_ARGUMENT,
 * an unknown task NOT_FOUND, more than TASK_STREAM_MAX open streams
 * RESOURCE_EXHAUSTED.
 */
#ifndef TK_SVC_TASK_STREAM_H
#define TK_SVC_TASK_STREAM_H

#include "services/grpc.h"
#include "services/svc_env.h"
#include "store/err.h"
#include "tasker/rpc.h"

/* Streams open at once per taskerd; each holds a small record per step. */
#define TASK_STREAM_MAX 10000

struct task_stream_hub;

/*
 * Creates the hub of srv (before trpc_server_start): LISTENs on its own
 * connection to `conninfo` and starts the listener thread. The server owns
 * the hub: its shutdown ends every stream with UNAVAILABLE and stops the
 * thread, and the hub is freed with the server. NULL with err set when the
 * LISTEN connection cannot be made (TRPC_ERR_UNAVAILABLE) or out of
 * resources.
 */
struct task_stream_hub *task_stream_hub_new(trpc_server *srv, struct svc_env *env,
                                            const char *conninfo, struct tk_err *err);

/* The StreamTaskStatus method for svc_grpc_register's extras (permission
 * tasks:read), bound to the hub. */
void task_stream_method(struct task_stream_hub *hub, struct svc_grpc_extra *out);

#endif

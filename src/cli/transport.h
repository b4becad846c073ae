/*
 * transport: one request to the orchestration (or worker) server over the
 * profile's transport, gRPC (libtasker-rpc) or REST (libcurl), with the
 * answer as JSON either way and failures mapped onto the exit codes of
 * cli.h once, here.
 *
 * A command describes its request for both transports (struct
 * cli_request): the RPC with its request message written in the proto3
 * JSON mapping (converted by src/web/pbjson), and the REST route. Only the
 * one the profile selects is used. The gRPC answer is the response message
 * in the proto3 JSON mapping (snake_case names, defaults included); the
 * REST answer is the body as the server sent it.
 */
#ifndef TK_CLI_TRANSPORT_H
#define TK_CLI_TRANSPORT_H

#include <stddef.h>

#include <jansson.h>
#include <protobuf-c/protobuf-c.h>

#include "cli/cli.h"

#define CLI_PATH_MAX 2048

struct cli_request {
	enum cli_target target;
	/* gRPC */
	const char *rpc; /* "/tasker.v1.TaskService/GetTask" */
	const ProtobufCMessageDescriptor *req_desc, *resp_desc;
	json_t *message; /* the request in proto3 JSON (borrowed); NULL: an empty message */
	/* REST */
	const char *method;      /* "GET", "POST", "PATCH", "DELETE" */
	char path[CLI_PATH_MAX]; /* "/v1/tasks/<uuid>?a=b", built with cli_request_path/_query */
	json_t *body;            /* request body (borrowed); NULL: none */
	int body_on_error;       /* a non-2xx answer whose body is not {"error":...} is still
	                             returned for display (health checks) */
	int failed;              /* the path did not fit: cli_call refuses the request */
};

/* Clears r and sets the gRPC side; `message` is borrowed (NULL: empty). */
void cli_request_init(struct cli_request *r, const char *rpc,
                      const ProtobufCMessageDescriptor *req_desc,
                      const ProtobufCMessageDescriptor *resp_desc, json_t *message);
/* A new message {key: value} ({} when value is NULL), or NULL when out of
 * memory (or value is not UTF-8). */
json_t *cli_msg_str(const char *key, const char *value);
/* Sets obj[key] to a string, an integer, a boolean or a value (cli_set
 * takes a new reference); nothing when the value is NULL. Return 0, or -1
 * when obj is NULL or memory ran out, so that a chain of calls joined by
 * || checks the whole message. */
int cli_set_str(json_t *obj, const char *key, const char *value);
int cli_set_int(json_t *obj, const char *key, long value);
int cli_set_bool(json_t *obj, const char *key, int value);
int cli_set(json_t *obj, const char *key, json_t *value);
/* As cli_set, but takes over the caller's reference to a value just made
 * (json_string(...)); a NULL value means that making it failed: -1. */
int cli_set_new(json_t *obj, const char *key, json_t *value);

/* Sets the REST method and path. `fmt` contains "%s" for each argument;
 * the arguments are percent-encoded as path segments. */
void cli_request_path(struct cli_request *r, const char *method, const char *fmt, ...);
/* Appends "?name=value" or "&name=value" (encoded); nothing when value is NULL. */
void cli_request_query(struct cli_request *r, const char *name, const char *value);

/*
 * Runs the request. Returns CLI_EXIT_OK with *resp set (a new reference),
 * or another exit code after printing the failure on stderr; *resp is then
 * NULL, except with body_on_error when the server sent a JSON body to
 * show.
 */
int cli_call(struct cli *c, const struct cli_request *r, json_t **resp);

/*
 * A server-streaming RPC (gRPC only): on_update runs on the calling thread
 * for every message, as proto3 JSON (borrowed for the call); a non-zero
 * return from it cancels the stream and becomes the result. `timeout_ms` 0
 * means no deadline. Returns CLI_EXIT_OK when the server ended the stream
 * with OK, else the mapped exit code (after printing the failure).
 */
typedef int (*cli_update_fn)(struct cli *c, json_t *update, void *ud);
int cli_stream(struct cli *c, const struct cli_request *r, long timeout_ms, cli_update_fn on_update,
               void *ud);

/* The exit code for a gRPC status / an HTTP status. */
int cli_exit_for_grpc(int status);
int cli_exit_for_http(long status);

/* Releases the channels and the HTTP handle (NULL is fine). */
void cli_conn_free(struct cli_conn *conn);

#endif

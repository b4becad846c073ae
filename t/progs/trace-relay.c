/*
 * trace-relay: a test server whose handlers log a line and then call
 * grpc.testing.TestService/EmptyCall on another server (--target) with
 * the runtime's client, so that a test can follow a call's trace into the
 * log and on to the next service:
 *   EmptyCall  forwards with no trace options: the runtime propagates the
 *              incoming call's trace (traceparent with a new span id, and
 *              x-trace-id);
 *   UnaryCall  forwards with explicit trpc_call_options.traceparent and
 *              trace_id, which must reach the target unchanged.
 * The downstream status is the relayed call's status. SIGHUP logs
 * "reload hook ran" from the server's reload hook. With --metrics.listen,
 * /metrics also shows tasker_test_label_escaping, a family whose label
 * value and help text need every escape of the text format.
 *
 * Command line, read by trpc_server_config_load() like every other key:
 *   --target=HOST:PORT  where to forward (required)
 *   --section.key=value any server setting (listen defaults to 127.0.0.1:0)
 * The bound port is logged as "listening h2c HOST:PORT".
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tasker/rpc.h>

#include "grpc/testing/empty.pb-c.h"
#include "grpc/testing/messages.pb-c.h"
#include "web/metrics_http.h"

#define EMPTY_PATH "/grpc.testing.TestService/EmptyCall"

/* Sent by UnaryCall; a test checks that the target sees exactly these. */
#define EXPLICIT_TRACEPARENT "00-11111111111111111111111111111111-2222222222222222-01"
#define EXPLICIT_TRACE_ID    "explicit-trace"

static trpc_channel *downstream;

/* Logs, calls EmptyCall downstream with `opts`, and ends `call` with the
 * downstream status (sending `reply` first when it is OK). */
static void relay(trpc_call *call, const struct trpc_call_options *opts,
                  const ProtobufCMessage *reply)
{
	Grpc__Testing__Empty empty = GRPC__TESTING__EMPTY__INIT;
	ProtobufCMessage *resp = NULL;
	struct trpc_call_status st = {0};
	int rc;

	trpc_log(TRPC_LOG_INFO, "relaying %s", trpc_call_method(call));
	rc = trpc_unary(downstream, EMPTY_PATH, &empty.base, &grpc__testing__empty__descriptor,
	                &resp, opts, &st);
	if (rc == TRPC_STATUS_OK && trpc_call_send(call, reply) == 0)
		trpc_call_finish(call, TRPC_STATUS_OK, NULL);
	else
		trpc_call_finish(call, rc > 0 ? rc : TRPC_STATUS_INTERNAL, st.message);
	if (resp != NULL)
		protobuf_c_message_free_unpacked(resp, NULL);
	trpc_call_status_clear(&st);
}

static void on_empty(trpc_call *call, const ProtobufCMessage *req, void *ud)
{
	Grpc__Testing__Empty reply = GRPC__TESTING__EMPTY__INIT;

	(void)req;
	(void)ud;
	relay(call, NULL, &reply.base);
}

static void on_unary(trpc_call *call, const ProtobufCMessage *req, void *ud)
{
	Grpc__Testing__SimpleResponse reply = GRPC__TESTING__SIMPLE_RESPONSE__INIT;
	struct trpc_call_options opts = {
	    .traceparent = EXPLICIT_TRACEPARENT,
	    .trace_id = EXPLICIT_TRACE_ID,
	};

	(void)req;
	(void)ud;
	relay(call, &opts, &reply.base);
}

static const struct trpc_method methods[] = {
    {.name = "EmptyCall",
     .kind = TRPC_UNARY,
     .request = &grpc__testing__empty__descriptor,
     .response = &grpc__testing__empty__descriptor,
     .handler = on_empty},
    {.name = "UnaryCall",
     .kind = TRPC_UNARY,
     .request = &grpc__testing__simple_request__descriptor,
     .response = &grpc__testing__simple_response__descriptor,
     .handler = on_unary},
};

static const struct trpc_service service = {
    .name = "grpc.testing.TestService",
    .methods = methods,
    .n_methods = sizeof methods / sizeof methods[0],
};

static void on_reload(trpc_server *srv, void *ud)
{
	(void)srv;
	(void)ud;
	trpc_log(TRPC_LOG_INFO, "reload hook ran");
}

/* The label value as the test expects to read it back from Prometheus. */
static void collect_test(trpc_metrics_buf *out, void *ud)
{
	static const char *const labels[] = {"value", "a\"b\\c\nd \xc3\xa9"};

	(void)ud;
	trpc_metrics_family(out, "tasker_test_label_escaping", "gauge",
	                    "A label with \"quotes\", a backslash \\ and a\nnewline.");
	trpc_metrics_sample(out, "tasker_test_label_escaping", labels, 1, 1);
}

/* --target=HOST:PORT, the one key of this program. */
static int take_target(void *ud, const char *section, const char *key, const char *value)
{
	if (strcmp(section, "server") != 0 || strcmp(key, "target") != 0)
		return TRPC_ERR_CONFIG;
	*(const char **)ud = value;
	return 0;
}

int main(int argc, char **argv)
{
	struct trpc_server_config cfg;
	struct trpc_channel_config ccfg;
	const char *target = NULL, *why = NULL;
	trpc_server *srv = NULL;
	struct metrics_http *metrics = NULL;
	int rc = 1;

	trpc_server_config_init(&cfg);
	if (trpc_server_config_set(&cfg, "server", "listen", "127.0.0.1:0", &why) != 0 ||
	    trpc_server_config_load(&cfg, NULL, argc, argv, take_target, &target, &why) != 0)
		goto fail;
	if (target == NULL) {
		why = "--target=HOST:PORT is required";
		goto fail;
	}
	trpc_channel_config_init(&ccfg);
	ccfg.target = target;
	ccfg.max_retries = 0;
	if ((downstream = trpc_channel_new(&ccfg, &why)) == NULL ||
	    (srv = trpc_server_new(&cfg, &why)) == NULL)
		goto fail;
	if (trpc_server_add_service(srv, &service) != 0 ||
	    trpc_server_add_metrics_collector(srv, collect_test, NULL) != 0) {
		why = "cannot register the service";
		goto fail;
	}
	if (trpc_server_start(srv, &why) != 0)
		goto fail;
	if (cfg.metrics_listen != NULL) {
		struct metrics_source src = {.srv = srv};
		if ((metrics = metrics_http_start(cfg.metrics_listen, &src, &why)) == NULL)
			goto fail;
	}
	trpc_server_set_on_reload(srv, on_reload, NULL);
	rc = trpc_server_run_until_signal(srv) == 0 ? 0 : 1;
	why = NULL;
fail:
	if (why != NULL)
		fprintf(stderr, "trace-relay: %s\n", why);
	metrics_http_stop(metrics);
	trpc_server_free(srv);
	trpc_channel_free(downstream);
	trpc_server_config_clear(&cfg);
	return rc;
}

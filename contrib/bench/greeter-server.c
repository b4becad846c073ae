/*
 * greeter-server: helloworld.Greeter/SayHello on the runtime, for the
 * benchmark. Replies "Hello <name>".
 *
 * Usage: greeter-server --port N [--io-threads N] [--workers N]
 *                       [--section.key=value ...]
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "helloworld/helloworld.pb-c.h"
#include "tasker/rpc.h"

static void say_hello(trpc_call *call, const ProtobufCMessage *msg, void *ud)
{
	const Helloworld__HelloRequest *req = (const Helloworld__HelloRequest *)msg;
	(void)ud;
	char buf[256];
	const char *name = req->name ? req->name : "";
	size_t len = strlen(name) + 7;
	char *text = len <= sizeof buf ? buf : trpc_call_alloc(call, len);
	if (text == NULL) {
		trpc_call_finish(call, TRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	snprintf(text, len, "Hello %s", name);
	Helloworld__HelloReply reply = HELLOWORLD__HELLO_REPLY__INIT;
	reply.message = text;
	int rv = trpc_call_send(call, &reply.base);
	trpc_call_finish(call, rv == 0 ? TRPC_STATUS_OK : TRPC_STATUS_INTERNAL,
	                 rv == 0 ? NULL : trpc_strerror(rv));
}

static const struct trpc_method greeter_methods[] = {
    {.name = "SayHello",
     .kind = TRPC_UNARY,
     .request = &helloworld__hello_request__descriptor,
     .response = &helloworld__hello_reply__descriptor,
     .handler = say_hello},
};

static const struct trpc_service greeter = {
    .name = "helloworld.Greeter",
    .methods = greeter_methods,
    .n_methods = sizeof greeter_methods / sizeof greeter_methods[0],
};

int main(int argc, char **argv)
{
	struct trpc_server_config cfg;
	trpc_server_config_init(&cfg);
	const char *why = NULL;
	char **rest = calloc((size_t)argc + 1, sizeof *rest);
	int nrest = 0;
	if (rest == NULL)
		return 1;
	rest[nrest++] = argv[0];
	char listen[64] = "";
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		char opt[80];
		if (strcmp(a, "--port") == 0 && v) {
			snprintf(listen, sizeof listen, "127.0.0.1:%s", v);
			i++;
		} else if (strcmp(a, "--io-threads") == 0 && v) {
			snprintf(opt, sizeof opt, "%s", v);
			trpc_server_config_set(&cfg, "server", "io_threads", opt, &why);
			i++;
		} else if (strcmp(a, "--workers") == 0 && v) {
			snprintf(opt, sizeof opt, "%s", v);
			trpc_server_config_set(&cfg, "server", "workers", opt, &why);
			i++;
		} else {
			rest[nrest++] = argv[i];
		}
	}
	if (listen[0])
		trpc_server_config_set(&cfg, "server", "listen", listen, &why);
	if (trpc_server_config_load(&cfg, NULL, nrest, rest, NULL, NULL, &why) != 0) {
		fprintf(stderr, "greeter-server: %s\n", why);
		free(rest);
		trpc_server_config_clear(&cfg);
		return 2;
	}
	free(rest);
	trpc_server *srv = trpc_server_new(&cfg, &why);
	trpc_server_config_clear(&cfg);
	if (srv == NULL) {
		fprintf(stderr, "greeter-server: %s\n", why);
		return 1;
	}
	if (trpc_server_add_service(srv, &greeter) != 0 || trpc_server_start(srv, &why) != 0) {
		fprintf(stderr, "greeter-server: %s\n", why ? why : "cannot register the service");
		trpc_server_free(srv);
		return 1;
	}
	int rv = trpc_server_run_until_signal(srv);
	trpc_server_free(srv);
	return rv == 0 ? 0 : 1;
}

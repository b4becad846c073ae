/*
 * engine-probe: calls the engine's operations from the command line, for
 * tests (the gRPC and REST APIs come on top of the same functions).
 *
 *   engine-probe URL create NAMESPACE NAME [CONTEXT_JSON [VERSION [IDEMPOTENCY_KEY]]]
 *   engine-probe URL cancel TASK_UUID [REASON]
 *   engine-probe URL resolve STEP_UUID reset|resolve|complete [RESULT_JSON]
 *   engine-probe URL drive TASK_UUID
 *   engine-probe URL state TASK_UUID
 *
 * Prints one line: the task uuid / state on success, "error CODE: message"
 * on failure (exit 1). CODE is the trpc_error name, e.g. ALREADY_EXISTS.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "engine/engine.h"

static const char *code_name(int code)
{
	switch (code) {
	case TRPC_ERR_EXISTS:
		return "ALREADY_EXISTS";
	case TRPC_ERR_NOT_FOUND:
		return "NOT_FOUND";
	case TRPC_ERR_INVALID:
		return "INVALID";
	case TRPC_ERR_STATE:
		return "STATE";
	default:
		return trpc_strerror(code);
	}
}

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: engine-probe URL create|cancel|resolve|drive|state ...\n");
		return 2;
	}
	trpc_log_set_level(TRPC_LOG_WARN);
	struct eng_config cfg;
	eng_config_init(&cfg);
	cfg.database_url = argv[1];
	cfg.pool_size = 2;
	struct tk_err err = {0};
	struct eng *e = eng_new(&cfg, &err);
	if (e == NULL) {
		printf("error %s: %s\n", code_name(err.code), err.msg);
		return 1;
	}
	const char *op = argv[2];
	int rv;
	char out[64] = "";
	if (strcmp(op, "create") == 0 && argc >= 5) {
		struct eng_task_request req = {.namespace_name = argv[3],
		                               .name = argv[4],
		                               .context_json = argc > 5 ? argv[5] : NULL,
		                               .version = argc > 6 && *argv[6] ? argv[6] : NULL,
		                               .idempotency_key = argc > 7 ? argv[7] : NULL,
		                               .initiator = "engine-probe"};
		struct eng_task_created created;
		rv = eng_task_create(e, &req, &created, &err);
		if (rv == 0)
			snprintf(out, sizeof out, "%s", created.task_uuid);
	} else if (strcmp(op, "cancel") == 0) {
		struct eng_actor by = {.reason = argc > 4 ? argv[4] : NULL};
		rv = eng_task_cancel(e, argv[3], &by, &err);
		snprintf(out, sizeof out, "cancelled");
	} else if (strcmp(op, "resolve") == 0 && argc >= 5) {
		int action = strcmp(argv[4], "reset") == 0     ? ENG_STEP_RESET_FOR_RETRY
		             : strcmp(argv[4], "resolve") == 0 ? ENG_STEP_RESOLVE_MANUALLY
		                                               : ENG_STEP_COMPLETE_MANUALLY;
		struct eng_actor by = {.operator_name = "engine-probe", .reason = "test"};
		rv = eng_step_resolve(e, argv[3], action, argc > 5 ? argv[5] : NULL, NULL, &by,
		                      &err);
		snprintf(out, sizeof out, "resolved");
	} else if (strcmp(op, "drive") == 0) {
		rv = eng_task_drive(e, argv[3], &err);
		snprintf(out, sizeof out, "driven");
	} else if (strcmp(op, "state") == 0) {
		rv = eng_task_state(e, argv[3], out, sizeof out, &err);
	} else {
		fprintf(stderr, "engine-probe: unknown operation %s\n", op);
		eng_free(e);
		return 2;
	}
	if (rv == 0)
		printf("%s\n", out);
	else
		printf("error %s: %s\n", code_name(rv), err.msg);
	eng_free(e);
	return rv == 0 ? 0 : 1;
}

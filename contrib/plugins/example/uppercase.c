/*
 * An example step handler plugin for tasker-worker: upper-cases
 * step_inputs.text (the step's handler initialization) and returns
 * {"text": "<TEXT>", "length": n}.
 *
 *   handler:
 *     callable: "plugin:uppercase.so:example_uppercase"
 *     initialization:
 *       text: "hello"
 *
 * A missing or non-string text is a non-retryable failure: running the
 * step again with the same inputs cannot succeed. The handler keeps no
 * state, so concurrent calls from the worker's handler threads are safe.
 *
 * Any JSON library will do; this one uses jansson, which the worker
 * itself links (build: see Makefile beside this file).
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include <tasker/handler.h>

TASKER_HANDLER_PLUGIN();

static int fail(struct tasker_handler_result *out, const char *message)
{
	out->success = 0;
	out->retryable = 0;
	out->error_type = strdup("InvalidInput");
	out->error_message = strdup(message);
	return 0;
}

TASKER_HANDLER_EXPORT int example_uppercase(const struct tasker_handler_call *call,
                                            struct tasker_handler_result *out);

int example_uppercase(const struct tasker_handler_call *call, struct tasker_handler_result *out)
{
	json_t *input = json_loadb(call->input_json, call->input_len, 0, NULL), *result;
	const char *text =
	    json_string_value(json_object_get(json_object_get(input, "step_inputs"), "text"));
	size_t len;
	char *upper;

	if (input == NULL)
		return -1; /* cannot happen: the worker always passes an object */
	if (text == NULL) {
		json_decref(input);
		return fail(out, "step_inputs.text must be a string");
	}
	len = strlen(text);
	if ((upper = malloc(len + 1)) == NULL) {
		json_decref(input);
		return -1; /* the worker reports a retryable error */
	}
	for (size_t i = 0; i <= len; i++)
		upper[i] = (char)toupper((unsigned char)text[i]);
	result = json_pack("{s:s, s:I}", "text", upper, "length", (json_int_t)len);
	free(upper);
	json_decref(input);
	if (result == NULL)
		return -1;
	out->result_json = json_dumps(result, JSON_COMPACT);
	json_decref(result);
	if (out->result_json == NULL)
		return -1;
	out->success = 1;
	return 0;
}

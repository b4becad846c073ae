/*
 * states: the names of the 12 task states (tasker-api.md §3.3), in
 * state-machine order, NULL-terminated; the schema's
 * tasker.task_state_names() holds the same list. Shared by the engine,
 * which checks the state filters it is given, and tasker-cli, which checks
 * its --status option before asking a server.
 */
#ifndef TK_COMMON_STATES_H
#define TK_COMMON_STATES_H

static const char *const tk_task_states[] = {
    "pending",
    "initializing",
    "enqueuing_steps",
    "steps_in_process",
    "evaluating_results",
    "waiting_for_dependencies",
    "waiting_for_retry",
    "blocked_by_failures",
    "complete",
    "error",
    "cancelled",
    "resolved_manually",
    NULL,
};

#endif

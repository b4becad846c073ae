/*
 * admin: the engine's operations behind the administrative APIs of
 * taskerd -- template discovery, analytics, the DLQ investigation log,
 * health checks and the configuration facts the safe-config answer shows.
 *
 * Every figure comes from the database (migrations 0005 and 0006, the
 * template registry), from the connection pool's counters or from the
 * engine's own state; nothing is estimated. A value the source does not
 * have is marked absent (NULL string, `valid == 0`), never filled in.
 *
 * Results are C structs. Strings in them point into the query results the
 * struct keeps; they live until the struct's *_clear() function, which
 * also accepts a zeroed or half-filled struct. Errors are a negative enum
 * trpc_error in the return value with the message in *err:
 *   TRPC_ERR_INVALID   a bad argument (the message names it)
 *   TRPC_ERR_NOT_FOUND no such template / entry
 *   TRPC_ERR_NOMEM     out of memory
 *   TRPC_ERR_TIMEOUT, TRPC_ERR_UNAVAILABLE, TRPC_ERR_DB   database trouble
 * All functions are safe to call from several threads at once.
 */
#ifndef TK_ENGINE_ADMIN_H
#define TK_ENGINE_ADMIN_H

#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "engine/engine.h"
#include "store/db.h"
#include "store/err.h"

/* A point in time (UTC). valid == 0: the database had none. */
struct adm_time {
	int valid;
	int64_t seconds; /* since 1970-01-01T00:00:00Z */
	int32_t nanos;
};

/* t as RFC 3339 in UTC with microseconds ("2026-03-21T10:00:00.123456Z");
 * "" when not valid. size >= 32. */
void adm_time_iso(const struct adm_time *t, char *buf, size_t size);

/* ================================================================== templates */

struct adm_namespace {
	const char *name;
	const char *description; /* NULL when none */
	int64_t template_count;
};

struct adm_template {
	const char *name, *namespace_name, *version;
	const char *description; /* NULL when none */
	int64_t step_count;      /* steps of the registered template */
};

struct adm_template_list {
	struct adm_namespace *namespaces; /* by name */
	size_t n_namespaces;
	struct adm_template *templates; /* by namespace, name, version */
	size_t n_templates;
	PGresult *res_ns, *res_tpl;
};

/* The registered templates (tasker.named_tasks; every taskerd sharing the
 * database registers into it), of one namespace when namespace_name is
 * not NULL (an unknown namespace gives empty lists). */
int adm_templates_list(struct eng *e, const char *namespace_name, struct adm_template_list *out,
                       struct tk_err *err);
void adm_template_list_clear(struct adm_template_list *l);

struct adm_step_def {
	const char *name;
	const char *description; /* NULL when none */
	int retryable;           /* registry defaults (named_tasks_named_steps) */
	int max_attempts;
};

struct adm_template_detail {
	const char *name, *namespace_name, *version;
	const char *description;        /* NULL when none */
	const char *configuration_json; /* the whole registered template: steps with their
	                                   dependencies, handlers, retry settings, ... */
	struct adm_step_def *steps;     /* in template order */
	size_t n_steps;
	PGresult *res;
};

/* One registered template. All three names are required (TRPC_ERR_INVALID);
 * TRPC_ERR_NOT_FOUND when no such template is registered. */
int adm_template_get(struct eng *e, const char *namespace_name, const char *name,
                     const char *version, struct adm_template_detail *out, struct tk_err *err);
void adm_template_detail_clear(struct adm_template_detail *d);

/* ================================================================== analytics */

/*
 * Performance over tasks created in the last `hours` hours
 * (tasker.get_analytics_metrics and tasker.get_system_health_counts, one
 * statement). Units as the functions' COMMENTs state them.
 */
struct adm_perf {
	int64_t total_tasks;     /* every task ever (health counts) */
	int64_t active_tasks;    /* tasks (all time) in a non-terminal state */
	int64_t completed_tasks; /* window tasks whose state is complete */
	int64_t failed_tasks;    /* window tasks whose state is error */
	int64_t tasks_in_window; /* count of tasks created in the window */
	int64_t steps_in_window; /* count of steps created in the window */
	double completion_rate;  /* PERCENT 0-100, 2 decimals, of tasks_in_window */
	double error_rate;       /* PERCENT 0-100, 2 decimals */
	double avg_task_seconds; /* seconds, 3 decimals; 0 when nothing completed */
	double avg_step_seconds;
	double health_score; /* RATIO 0-1: complete / (complete + error), last hour */
	struct adm_time analysis_period_start; /* now() - hours */
	struct adm_time calculated_at;         /* the database's now() */
};

/* hours: 1 .. 87600 (TRPC_ERR_INVALID otherwise). */
int adm_performance(struct eng *e, int hours, struct adm_perf *out, struct tk_err *err);

struct adm_slow_step {
	const char *namespace_name, *task_name, *version, *step_name;
	double avg_seconds, max_seconds; /* seconds, 3 decimals */
	int64_t executions, errors;
	double error_rate; /* RATIO 0-1, 4 decimals */
	struct adm_time last_executed_at;
};

struct adm_slow_task {
	const char *namespace_name, *task_name, *version;
	double avg_seconds, max_seconds;
	int64_t executions;
	double avg_step_count;
	int64_t errors;    /* steps in error, summed over the tasks */
	double error_rate; /* RATIO 0-1 of tasks with a step in error */
	struct adm_time last_executed_at;
};

/* A count per state, named as tasker.get_system_health_counts' columns
 * ("pending_tasks" ... "total_steps"). */
struct adm_count {
	char name[48];
	int64_t value;
};

#define ADM_MAX_RECOMMENDATIONS 3

struct adm_bottlenecks {
	struct adm_slow_step *steps; /* slowest average first */
	size_t n_steps;
	struct adm_slow_task *tasks;
	size_t n_tasks;
	struct adm_count counts[32];
	size_t n_counts;
	struct db_pool_stats pool; /* the engine's pool when the analysis started */
	double pool_utilization;   /* RATIO 0-1: connections in use / pool size */
	char recommendations[ADM_MAX_RECOMMENDATIONS][320];
	size_t n_recommendations;
	PGresult *res_steps, *res_tasks;
};

/*
 * Slowest steps and task templates of the last 24 hours
 * (tasker.get_slowest_steps_aggregated / _tasks_aggregated), the state
 * counts and the pool's use, plus advice derived from them: a slow-step
 * error rate above 0.2, pool use above 0.8, a slowest-step average above
 * 30 s. limit: 1 .. 1000; min_executions: 1 .. 1000000.
 */
int adm_bottlenecks(struct eng *e, int limit, int min_executions, struct adm_bottlenecks *out,
                    struct tk_err *err);
void adm_bottlenecks_clear(struct adm_bottlenecks *b);

/* ================================================================== DLQ */

/* Enum values are the database's strings: dlq_reason (staleness_timeout,
 * max_retries_exceeded, dependency_cycle_detected, worker_unavailable,
 * manual_dlq) and dlq_resolution_status (pending, manually_resolved,
 * permanently_failed, cancelled). */
struct adm_dlq_entry {
	const char *dlq_entry_uuid, *task_uuid, *original_state;
	const char *dlq_reason, *resolution_status;
	struct adm_time dlq_timestamp, resolution_timestamp, created_at, updated_at;
	const char *resolution_notes, *resolved_by; /* NULL when none */
	const char *task_snapshot_json;             /* JSON object */
	const char *metadata_json;                  /* JSON; NULL when none */
};

struct adm_dlq_entries {
	struct adm_dlq_entry *v;
	size_t n;
	PGresult *res;
};

/* Entries, newest first, of one resolution status when status is not NULL.
 * limit 1 .. 1000, offset >= 0. */
int adm_dlq_list(struct eng *e, const char *status, int limit, int offset,
                 struct adm_dlq_entries *out, struct tk_err *err);
/* The task's most recent entry (out->n == 1). TRPC_ERR_INVALID for a
 * malformed uuid, TRPC_ERR_NOT_FOUND when the task has none. */
int adm_dlq_entry_by_task(struct eng *e, const char *task_uuid, struct adm_dlq_entries *out,
                          struct tk_err *err);
void adm_dlq_entries_clear(struct adm_dlq_entries *l);

/* Fields to change; NULL leaves a field as it is. */
struct adm_dlq_update {
	const char *resolution_status;
	const char *resolution_notes;
	const char *resolved_by;
	const char *metadata_json; /* JSON object: replaces the entry's metadata */
};

/*
 * Records investigation progress on an entry (tasker.update_dlq_investigation
 * under the entry's row lock). Status transitions: an open entry (pending)
 * may be closed as manually_resolved, permanently_failed or cancelled; a
 * closed entry is final -- it is neither re-opened nor re-labelled (a task
 * that gets stuck again gets a new entry); a status equal to the current
 * one is not a transition. Notes, resolved_by and metadata may be added in
 * any status. Returns 0; TRPC_ERR_INVALID for a malformed uuid, an unknown
 * status, an invalid transition (the message names both statuses) or an
 * update that changes nothing; TRPC_ERR_NOT_FOUND for an unknown entry.
 */
int adm_dlq_update(struct eng *e, const char *dlq_entry_uuid, const struct adm_dlq_update *u,
                   struct tk_err *err);

/* Per reason (view tasker.v_dlq_dashboard). */
struct adm_dlq_stat {
	const char *dlq_reason;
	int64_t total, pending, manually_resolved, permanently_failed, cancelled;
	struct adm_time oldest, newest;
	int has_avg_resolution;
	double avg_resolution_minutes; /* dlq_timestamp to resolution (or now), minutes */
};

struct adm_dlq_stats {
	struct adm_dlq_stat *v;
	size_t n;
	PGresult *res;
};

int adm_dlq_stats(struct eng *e, struct adm_dlq_stats *out, struct tk_err *err);
void adm_dlq_stats_clear(struct adm_dlq_stats *s);

/* Pending entries by priority (view tasker.v_dlq_investigation_queue). */
struct adm_dlq_queue_entry {
	const char *dlq_entry_uuid, *task_uuid, *original_state, *dlq_reason;
	struct adm_time dlq_timestamp;
	double minutes_in_dlq;
	const char *namespace_name, *task_name,
	    *current_state; /* from the snapshot; NULL if absent */
	int has_time_in_state;
	int32_t time_in_state_minutes;
	double priority_score;
};

struct adm_dlq_queue {
	struct adm_dlq_queue_entry *v;
	size_t n;
	PGresult *res;
};

/* Highest priority first; limit 1 .. 1000. */
int adm_dlq_investigation_queue(struct eng *e, int limit, struct adm_dlq_queue *out,
                                struct tk_err *err);
void adm_dlq_queue_clear(struct adm_dlq_queue *q);

/* Waiting tasks against their staleness thresholds (view
 * tasker.v_task_staleness_monitoring). health_status: healthy, warning, stale. */
struct adm_staleness_entry {
	const char *task_uuid;
	const char *namespace_name, *task_name; /* NULL if absent */
	const char *current_state;
	int32_t time_in_state_minutes, task_age_minutes, threshold_minutes;
	const char *health_status;
	int32_t priority;
};

struct adm_staleness {
	struct adm_staleness_entry *v;
	size_t n;
	PGresult *res;
};

/* Longest in state first; limit 1 .. 1000. */
int adm_staleness(struct eng *e, int limit, struct adm_staleness *out, struct tk_err *err);
void adm_staleness_clear(struct adm_staleness *s);

/* ================================================================== health */

enum adm_health_status {
	ADM_HEALTHY = 1,
	ADM_DEGRADED = 2,
	ADM_UNHEALTHY = 3,
	ADM_UNKNOWN = 4 /* not evaluated */
};

/* "healthy", "degraded", "unhealthy", "unknown". */
const char *adm_health_status_name(int status);

struct adm_check {
	int status; /* enum adm_health_status */
	char message[256];
	uint64_t duration_ms;
};

/*
 * The command channel of taskerd: the RPC runtime's work queue in front of
 * its fixed pool of handler threads (tasker-api.md §6 channel_saturation;
 * the same figures make CreateTask back off). The engine does not know the
 * RPC server: the service layer reads the figures and passes them in.
 * Saturation is depth / high watermark:
 *   overloaded  reading paused (the depth reached the high watermark and
 *               is not yet below the low one): unhealthy
 *   saturated   ADM_CHANNEL_SATURATED_PERCENT or more: degraded
 *   normal      below that: healthy
 *   unknown     no figures (the server does not run yet): not evaluated
 */
struct adm_channel {
	int known;               /* 0: no figures; the rest is ignored */
	uint64_t depth;          /* requests waiting for a handler thread */
	uint64_t high_watermark; /* the depth at which reading stops */
	int threads, busy;       /* handler threads, those running a handler */
	int paused;              /* reading paused */
};

#define ADM_CHANNEL_SATURATED_PERCENT 80

enum adm_channel_level {
	ADM_CHANNEL_UNKNOWN = 0,
	ADM_CHANNEL_NORMAL = 1,
	ADM_CHANNEL_SATURATED = 2,
	ADM_CHANNEL_OVERLOADED = 3
};

/* The level of ch (NULL: unknown). Pure; any thread. */
int adm_channel_level(const struct adm_channel *ch);
/* "normal", "saturated", "overloaded" or "unknown". */
const char *adm_channel_level_name(int level);
/* The figures as one line for a health message or a refusal: "4 of 5
 * requests waiting (80 % of the high watermark), 1 of 1 handler threads
 * busy, reading paused" (the last part only when it is). */
void adm_channel_describe(const struct adm_channel *ch, char *buf, size_t size);
/* The channel_saturation check of ch (NULL: unknown); duration 0. */
void adm_channel_check(const struct adm_channel *ch, struct adm_check *out);

struct adm_health_limits {
	int db_timeout_ms;                 /* SELECT 1 and the queue query; <= 0: 1000 */
	long critical_depth;               /* an orchestration queue this deep degrades the
	                        command processor (the critical backpressure tier) */
	const struct adm_channel *channel; /* NULL: channel_saturation not evaluated */
};

struct adm_health {
	/* readiness */
	struct adm_check database;             /* SELECT 1 through the pool */
	struct adm_check circuit_breaker;      /* what guards the pool (nothing: see admin.c) */
	struct adm_check orchestration_system; /* the orchestration threads */
	struct adm_check command_processor;    /* the orchestration queues answer */
	/* detailed only (queue_depth is the service layer's backpressure tier) */
	struct adm_check pool_utilization;
	struct adm_check channel_saturation;
	int ready;                         /* every readiness check healthy */
	const char *operational_state;     /* Normal, Startup, GracefulShutdown, Stopped */
	const char *circuit_breaker_state; /* NULL: there is no breaker, so no state */
	struct db_pool_stats pool;         /* snapshot before the checks ran */
	double pool_utilization_percent;   /* 0-100: in use / size */
	int64_t orchestration_depth;       /* deepest orchestration queue; -1 unknown */
	const char *orchestration_queue;   /* its name; NULL when unknown */
};

/* Runs the readiness checks, and with `detailed` pool utilisation and
 * channel saturation (from lim->channel) too. Never fails: a check that cannot be run reports
 * why in its message. */
void adm_health_check(struct eng *e, const struct adm_health_limits *lim, int detailed,
                      struct adm_health *out);

/* ================================================================== facts */

/* The orchestration queues the engine consumes (names, static). */
size_t adm_orchestration_queues(const char *const **names);

/* How the engine learns of work: LISTEN/NOTIFY wake-ups with polling as
 * the fallback, always -- "Hybrid" in the vocabulary of tasker-api.md §7. */
const char *adm_deployment_mode(const struct eng *e);

/* Connections of the engine's database pool (API calls use it too). */
int adm_pool_size(const struct eng *e);

#endif

/*
 * backpressure: the queue-depth tier that CreateTask checks before it
 * admits a task (tasker-api.md §1.12, §6), and the detailed health check
 * reports.
 *
 * The depth is that of the deepest queue of the system (the orchestration
 * queues and the workers' namespace queues: a backlog anywhere means new
 * tasks would only wait), read from the database at most once per
 * SVC_BP_REFRESH_MS by whichever caller finds the value stale; callers
 * meanwhile use the value in hand, so a request never waits for another's
 * refresh and the database sees one depth query per second per taskerd,
 * not one per call.
 *
 * Tiers (thresholds: those of the cache, set at its creation and replaced
 * by svc_backpressure_set_limits on SIGHUP; without a cache those of
 * struct svc_env, <= 0 meaning the default):
 *   normal    depth < warning
 *   warning   warning <= depth < critical: admitted, reported
 *   critical  critical <= depth < overflow: CreateTask refused
 *   overflow  depth >= overflow: refused
 *   unknown   not read yet, or the read failed: admitted (a database in
 *             trouble fails the request on its own)
 *
 * Besides the tiers, the command channel (tasker-api.md §6): taskerd's is
 * the RPC runtime's work queue (trpc_server_pool_status). From
 * ADM_CHANNEL_SATURATED_PERCENT of its high watermark on, or while the
 * server has stopped reading, CreateTask is refused as at the critical
 * tier: new tasks would only add to a backlog of requests already waiting
 * for a handler thread.
 */
#ifndef TK_SVC_BACKPRESSURE_H
#define TK_SVC_BACKPRESSURE_H

#include <stdint.h>

#include "engine/admin.h"
#include "store/err.h"

struct svc_env;
struct svc_backpressure;

#define SVC_BP_REFRESH_MS       1000
#define SVC_BP_DEFAULT_WARNING  1000
#define SVC_BP_DEFAULT_CRITICAL 5000
#define SVC_BP_DEFAULT_OVERFLOW 10000
#define SVC_BP_DEFAULT_RETRY_S  5

enum svc_bp_tier {
	SVC_BP_UNKNOWN = 0,
	SVC_BP_NORMAL = 1,
	SVC_BP_WARNING = 2,
	SVC_BP_CRITICAL = 3,
	SVC_BP_OVERFLOW = 4
};

struct svc_bp_status {
	int tier;                         /* enum svc_bp_tier */
	int64_t depth;                    /* messages in the deepest queue; -1 when unknown */
	char queue[64];                   /* its name ("" when unknown) */
	long warning, critical, overflow; /* the thresholds in force */
	int retry_after_s;
	/* The command channel (the RPC work queue of env->srv), read live at
	 * each call, and its level (enum adm_channel_level): from saturated on
	 * CreateTask is refused as at the critical tier. */
	struct adm_channel channel;
	int channel_level;
};

/* Why CreateTask would be refused under st. */
enum svc_bp_refusal {
	SVC_BP_ADMIT = 0,
	SVC_BP_REFUSE_QUEUE = 1,  /* the deepest queue is at the critical tier or beyond */
	SVC_BP_REFUSE_CHANNEL = 2 /* the RPC work queue is saturated or reading is paused */
};
int svc_bp_refusal(const struct svc_bp_status *st);

/* The thresholds of the tiers and the retry hint of a refusal. */
struct svc_bp_limits {
	long warning, critical, overflow; /* queue depths, >= 1 */
	int retry_after_s;
};

/* The defaults (SVC_BP_DEFAULT_*). */
void svc_bp_limits_default(struct svc_bp_limits *l);

/*
 * The rule between the thresholds: warning < critical <= overflow, all at
 * least 1, retry_after_s at least 1. 0, or TRPC_ERR_CONFIG with err
 * naming the keys ([backpressure] warning_depth, ...).
 */
int svc_bp_limits_check(const struct svc_bp_limits *l, struct tk_err *err);

/* A cache for one engine with the thresholds `l` (copied; NULL: the
 * defaults). NULL when out of memory. */
struct svc_backpressure *svc_backpressure_new(const struct svc_bp_limits *l);
void svc_backpressure_free(struct svc_backpressure *bp);

/*
 * Replaces the thresholds at once (SIGHUP): a concurrent
 * svc_backpressure_status sees the old set or the new one, never a mix.
 * `l` must pass svc_bp_limits_check. Any thread.
 */
void svc_backpressure_set_limits(struct svc_backpressure *bp, const struct svc_bp_limits *l);

/* The current status (refreshing the cache first when it is stale and no
 * other thread is doing so). Any thread. With env->backpressure NULL or no
 * engine the tier is SVC_BP_UNKNOWN; with env->srv NULL or not started the
 * channel level is ADM_CHANNEL_UNKNOWN (admitted). */
void svc_backpressure_status(struct svc_env *env, struct svc_bp_status *out);

/* "normal", "warning", "critical", "overflow" or "unknown". */
const char *svc_bp_tier_name(int tier);

#endif

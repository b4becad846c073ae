/*
 * backpressure: the cached queue-depth tier (see backpressure.h).
 *
 * mu guards the cached value, the `refreshing` flag and the thresholds; it
 * is never held across the database query, so a slow query only delays
 * the thread that runs it.
 */
#include "config.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/query.h"
#include "services/backpressure.h"
#include "services/svc_env.h"

struct svc_backpressure {
	pthread_mutex_t mu;
	int have;        /* a depth has been read */
	int refreshing;  /* a thread is reading it now */
	int64_t read_at; /* CLOCK_MONOTONIC ms of the last attempt */
	int64_t depth;   /* valid when have */
	char queue[64];
	int failed_logged; /* the last attempt failed and was logged */
	struct svc_bp_limits limits;
};

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void svc_bp_limits_default(struct svc_bp_limits *l)
{
	l->warning = SVC_BP_DEFAULT_WARNING;
	l->critical = SVC_BP_DEFAULT_CRITICAL;
	l->overflow = SVC_BP_DEFAULT_OVERFLOW;
	l->retry_after_s = SVC_BP_DEFAULT_RETRY_S;
}

int svc_bp_limits_check(const struct svc_bp_limits *l, struct tk_err *err)
{
	if (l->warning < 1 || l->retry_after_s < 1)
		return tk_err_set(
		    err, TRPC_ERR_CONFIG,
		    "[backpressure] warning_depth (%ld) and retry_after_s (%d) must be "
		    "at least 1",
		    l->warning, l->retry_after_s);
	if (l->warning >= l->critical || l->critical > l->overflow)
		return tk_err_set(err, TRPC_ERR_CONFIG,
		                  "[backpressure] need warning_depth < critical_depth <= "
		                  "overflow_depth (have %ld, %ld, %ld)",
		                  l->warning, l->critical, l->overflow);
	return 0;
}

struct svc_backpressure *svc_backpressure_new(const struct svc_bp_limits *l)
{
	struct svc_backpressure *bp = calloc(1, sizeof *bp);
	if (bp == NULL)
		return NULL;
	if (pthread_mutex_init(&bp->mu, NULL) != 0) {
		free(bp);
		return NULL;
	}
	if (l != NULL)
		bp->limits = *l;
	else
		svc_bp_limits_default(&bp->limits);
	return bp;
}

void svc_backpressure_set_limits(struct svc_backpressure *bp, const struct svc_bp_limits *l)
{
	pthread_mutex_lock(&bp->mu);
	bp->limits = *l;
	pthread_mutex_unlock(&bp->mu);
}

void svc_backpressure_free(struct svc_backpressure *bp)
{
	if (bp == NULL)
		return;
	pthread_mutex_destroy(&bp->mu);
	free(bp);
}

const char *svc_bp_tier_name(int tier)
{
	switch (tier) {
	case SVC_BP_NORMAL:
		return "normal";
	case SVC_BP_WARNING:
		return "warning";
	case SVC_BP_CRITICAL:
		return "critical";
	case SVC_BP_OVERFLOW:
		return "overflow";
	default:
		return "unknown";
	}
}

/* Reads the depth and stores it; called by the one thread that set
 * `refreshing`. */
static void refresh(struct svc_backpressure *bp, struct eng *eng)
{
	struct eng_queue_depth d;
	struct tk_err err = {0};
	int rv = eng_queue_depth(eng, &d, &err);

	pthread_mutex_lock(&bp->mu);
	bp->refreshing = 0;
	bp->read_at = now_ms();
	if (rv == 0) {
		bp->have = 1;
		bp->depth = d.depth;
		snprintf(bp->queue, sizeof bp->queue, "%s", d.queue);
		bp->failed_logged = 0;
	} else {
		/* Unknown until the next successful read: do not refuse tasks
		 * on a figure that may be stale by minutes. */
		bp->have = 0;
	}
	int log_it = rv != 0 && !bp->failed_logged;
	if (log_it)
		bp->failed_logged = 1;
	pthread_mutex_unlock(&bp->mu);
	if (log_it)
		trpc_log(TRPC_LOG_WARN, "backpressure: cannot read the queue depth: %s", err.msg);
}

static long or_default(long v, long dflt)
{
	return v > 0 ? v : dflt;
}

int svc_bp_refusal(const struct svc_bp_status *st)
{
	if (st->tier >= SVC_BP_CRITICAL)
		return SVC_BP_REFUSE_QUEUE;
	if (st->channel_level >= ADM_CHANNEL_SATURATED)
		return SVC_BP_REFUSE_CHANNEL;
	return SVC_BP_ADMIT;
}

/* The RPC work queue of env->srv; unknown before the server runs. */
static void read_channel(const struct svc_env *env, struct adm_channel *ch)
{
	struct trpc_pool_status ps;

	memset(ch, 0, sizeof *ch);
	if (env->srv == NULL || trpc_server_pool_status(env->srv, &ps) != 0)
		return;
	ch->known = 1;
	ch->depth = ps.queue_depth;
	ch->high_watermark = ps.high_watermark;
	ch->threads = ps.threads;
	ch->busy = ps.busy_threads;
	ch->paused = ps.reading_paused;
}

void svc_backpressure_status(struct svc_env *env, struct svc_bp_status *out)
{
	struct svc_backpressure *bp = env->backpressure;

	memset(out, 0, sizeof *out);
	out->depth = -1;
	read_channel(env, &out->channel);
	out->channel_level = adm_channel_level(&out->channel);
	if (bp == NULL) {
		out->warning = or_default(env->backpressure_warning_depth, SVC_BP_DEFAULT_WARNING);
		out->critical =
		    or_default(env->backpressure_critical_depth, SVC_BP_DEFAULT_CRITICAL);
		out->overflow =
		    or_default(env->backpressure_overflow_depth, SVC_BP_DEFAULT_OVERFLOW);
		out->retry_after_s =
		    (int)or_default(env->backpressure_retry_after_s, SVC_BP_DEFAULT_RETRY_S);
		return;
	}

	pthread_mutex_lock(&bp->mu);
	/* One set of thresholds, taken together (a reload may replace them). */
	out->warning = bp->limits.warning;
	out->critical = bp->limits.critical;
	out->overflow = bp->limits.overflow;
	out->retry_after_s = bp->limits.retry_after_s;
	if (env->eng == NULL) {
		pthread_mutex_unlock(&bp->mu);
		return;
	}
	int stale = !bp->refreshing && now_ms() - bp->read_at >= SVC_BP_REFRESH_MS;
	if (stale)
		bp->refreshing = 1;
	pthread_mutex_unlock(&bp->mu);
	if (stale)
		refresh(bp, env->eng);

	pthread_mutex_lock(&bp->mu);
	if (bp->have) {
		out->depth = bp->depth;
		snprintf(out->queue, sizeof out->queue, "%s", bp->queue);
	}
	pthread_mutex_unlock(&bp->mu);
	if (out->depth < 0)
		out->tier = SVC_BP_UNKNOWN;
	else if (out->depth >= out->overflow)
		out->tier = SVC_BP_OVERFLOW;
	else if (out->depth >= out->critical)
		out->tier = SVC_BP_CRITICAL;
	else if (out->depth >= out->warning)
		out->tier = SVC_BP_WARNING;
	else
		out->tier = SVC_BP_NORMAL;
}

/*
 * HealthService (tasker.v1): public (no credentials) probes of taskerd.
 *
 *   CheckHealth          "healthy", no checks (the process answers)
 *   CheckLiveness        "alive"
 *   CheckReadiness       "ready" when the five readiness checks are all
 *                        healthy, else "not_ready" and the call fails with
 *                        UNAVAILABLE "Service is not ready" (the response
 *                        is filled all the same, for a binding that shows it)
 *   CheckDetailedHealth  the five plus pool utilisation, queue depth and
 *                        channel saturation: "healthy" when every check
 *                        is healthy (a check not evaluated, "unknown",
 *                        counts neither way), else "degraded"
 *
 * queue_depth is the backpressure tier CreateTask acts on
 * (services/backpressure.h): normal healthy, warning degraded, critical and
 * overflow unhealthy, unknown when not read yet.
 * channel_saturation is taskerd's command channel, the RPC runtime's work
 * queue (trpc_server_pool_status of env->srv, read by
 * svc_backpressure_status): reading paused unhealthy, 80 % of the high
 * watermark or more degraded (CreateTask is refused then too), else
 * healthy; unknown only when the server does not run yet (taskerd starts
 * its REST side after the RPC server, so neither side should see that).
 * The checks themselves are adm_health_check() (engine/admin.c). taskerd
 * has one database pool, used by the API and the engine alike: the
 * web_database and orchestration_database checks are the same SELECT 1,
 * and both pool figures of HealthInfo describe that pool. It has no
 * circuit breaker in front of the database, so circuit_breaker_state is
 * left empty rather than given a state no breaker has.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "engine/admin.h"
#include "services/backpressure.h"
#include "services/ops.h"
#include "services/svc_env.h"
#include "services/tasker/admin_pb.h"
#include "tasker/v1/health.pb-c.h"

#define DB_CHECK_TIMEOUT_MS 1000

/* A HealthResponse: status and the current time. */
static int status_now(ProtobufCMessage *resp_msg, const struct svc_ctx *ctx, const char *status,
                      struct svc_result *res)
{
	Tasker__V1__HealthResponse *resp = (Tasker__V1__HealthResponse *)resp_msg;
	struct apb b = {.a = ctx->alloc};
	char now[40];
	apb_now_iso(now, sizeof now);
	resp->status = apb_strdup(&b, status);
	resp->timestamp = apb_strdup(&b, now);
	return b.oom ? apb_nomem(res) : 0;
}

static int on_health(struct svc_env *env, const ProtobufCMessage *req_msg,
                     ProtobufCMessage *resp_msg, const struct svc_ctx *ctx, struct svc_result *res)
{
	(void)env;
	(void)req_msg;
	return status_now(resp_msg, ctx, "healthy", res);
}

static int on_liveness(struct svc_env *env, const ProtobufCMessage *req_msg,
                       ProtobufCMessage *resp_msg, const struct svc_ctx *ctx,
                       struct svc_result *res)
{
	(void)env;
	(void)req_msg;
	return status_now(resp_msg, ctx, "alive", res);
}

static Tasker__V1__HealthCheck *check_msg(struct apb *b, const struct adm_check *c)
{
	Tasker__V1__HealthCheck *m = apb_alloc(b, sizeof *m);
	if (m == NULL)
		return NULL;
	tasker__v1__health_check__init(m);
	m->status = apb_strdup(b, adm_health_status_name(c->status));
	if (c->message[0] != '\0') {
		m->_message_case = TASKER__V1__HEALTH_CHECK___MESSAGE_MESSAGE;
		m->message = apb_strdup(b, c->message);
	}
	m->duration_ms = c->duration_ms;
	return m;
}

static Tasker__V1__PoolDetail *pool_msg(struct apb *b, const struct adm_health *h)
{
	Tasker__V1__PoolDetail *p = apb_alloc(b, sizeof *p);
	if (p == NULL)
		return NULL;
	tasker__v1__pool_detail__init(p);
	p->active_connections = (uint32_t)h->pool.active;
	p->idle_connections = (uint32_t)h->pool.idle;
	p->max_connections = (uint32_t)h->pool.size;
	p->utilization_percent = h->pool_utilization_percent;
	p->total_acquires = h->pool.acquires;
	p->slow_acquires = h->pool.slow_acquires;
	p->acquire_errors = h->pool.errors;
	p->average_acquire_time_ms = h->pool.avg_acquire_ms;
	p->max_acquire_time_ms = h->pool.max_acquire_ms;
	return p;
}

static Tasker__V1__HealthInfo *info_msg(struct apb *b, const struct svc_env *env,
                                        const struct adm_health *h)
{
	Tasker__V1__HealthInfo *i = apb_alloc(b, sizeof *i);
	Tasker__V1__PoolUtilizationInfo *pu = apb_alloc(b, sizeof *pu);
	if (i == NULL || pu == NULL)
		return NULL;
	tasker__v1__health_info__init(i);
	tasker__v1__pool_utilization_info__init(pu);
	i->version = apb_strdup(b, env->pub.version);
	i->environment = apb_strdup(b, env->pub.environment);
	i->operational_state = apb_strdup(b, h->operational_state);
	i->web_database_pool_size = (uint32_t)h->pool.size;
	i->orchestration_database_pool_size = (uint32_t)h->pool.size;
	i->circuit_breaker_state = apb_strdup(b, h->circuit_breaker_state);
	/* one pool carries the tasker tables and the pgmq queues */
	pu->tasker_pool = pool_msg(b, h);
	pu->pgmq_pool = pool_msg(b, h);
	i->pool_utilization = pu;
	return i;
}

/* The five readiness checks of h, into the fields of those names that a
 * ReadinessChecks and a DetailedHealthChecks both have. */
static void readiness_msgs(struct apb *b, const struct adm_health *h,
                           Tasker__V1__HealthCheck **web_database,
                           Tasker__V1__HealthCheck **orchestration_database,
                           Tasker__V1__HealthCheck **circuit_breaker,
                           Tasker__V1__HealthCheck **orchestration_system,
                           Tasker__V1__HealthCheck **command_processor)
{
	*web_database = check_msg(b, &h->database);
	*orchestration_database = check_msg(b, &h->database);
	*circuit_breaker = check_msg(b, &h->circuit_breaker);
	*orchestration_system = check_msg(b, &h->orchestration_system);
	*command_processor = check_msg(b, &h->command_processor);
}

/* The readiness checks (and with `detailed` the engine's other two), with
 * the critical tier of the backpressure status in force and the RPC work
 * queue figures read with it. */
static void run_checks(struct svc_env *env, int detailed, struct adm_health *h,
                       struct svc_bp_status *bp)
{
	svc_backpressure_status(env, bp);
	struct adm_health_limits lim = {
	    .db_timeout_ms = DB_CHECK_TIMEOUT_MS,
	    .critical_depth = bp->critical > 0 ? bp->critical : SVC_BP_DEFAULT_CRITICAL,
	    .channel = &bp->channel,
	};
	adm_health_check(env->eng, &lim, detailed, h);
}

/* queue_depth is the backpressure tier CreateTask acts on (§6). */
static void queue_depth_check(const struct svc_bp_status *bp, struct adm_check *c)
{
	static const int status_of_tier[] = {
	    [SVC_BP_UNKNOWN] = ADM_UNKNOWN,    [SVC_BP_NORMAL] = ADM_HEALTHY,
	    [SVC_BP_WARNING] = ADM_DEGRADED,   [SVC_BP_CRITICAL] = ADM_UNHEALTHY,
	    [SVC_BP_OVERFLOW] = ADM_UNHEALTHY,
	};
	int tier =
	    bp->tier >= SVC_BP_UNKNOWN && bp->tier <= SVC_BP_OVERFLOW ? bp->tier : SVC_BP_UNKNOWN;
	memset(c, 0, sizeof *c);
	c->status = status_of_tier[tier];
	if (tier == SVC_BP_UNKNOWN)
		snprintf(c->message, sizeof c->message, "%s: queue depth not read",
		         svc_bp_tier_name(tier));
	else
		snprintf(c->message, sizeof c->message,
		         "%s: deepest queue %s holds %lld messages (warning %ld, critical %ld, "
		         "overflow %ld)",
		         svc_bp_tier_name(tier), bp->queue, (long long)bp->depth, bp->warning,
		         bp->critical, bp->overflow);
}

static int on_readiness(struct svc_env *env, const ProtobufCMessage *req_msg,
                        ProtobufCMessage *resp_msg, const struct svc_ctx *ctx,
                        struct svc_result *res)
{
	(void)req_msg;
	Tasker__V1__ReadinessResponse *resp = (Tasker__V1__ReadinessResponse *)resp_msg;
	struct apb b = {.a = ctx->alloc};
	struct adm_health h;
	struct svc_bp_status bp;
	run_checks(env, 0, &h, &bp);
	char now[40];
	apb_now_iso(now, sizeof now);

	Tasker__V1__ReadinessChecks *c = apb_alloc(&b, sizeof *c);
	if (c == NULL)
		return apb_nomem(res);
	tasker__v1__readiness_checks__init(c);
	readiness_msgs(&b, &h, &c->web_database, &c->orchestration_database, &c->circuit_breaker,
	               &c->orchestration_system, &c->command_processor);
	resp->status = apb_strdup(&b, h.ready ? "ready" : "not_ready");
	resp->timestamp = apb_strdup(&b, now);
	resp->checks = c;
	resp->info = info_msg(&b, env, &h);
	if (b.oom)
		return apb_nomem(res);
	if (!h.ready)
		return svc_fail(res, TRPC_STATUS_UNAVAILABLE, "Service is not ready");
	return 0;
}

static int on_detailed(struct svc_env *env, const ProtobufCMessage *req_msg,
                       ProtobufCMessage *resp_msg, const struct svc_ctx *ctx,
                       struct svc_result *res)
{
	(void)req_msg;
	Tasker__V1__DetailedHealthResponse *resp = (Tasker__V1__DetailedHealthResponse *)resp_msg;
	struct apb b = {.a = ctx->alloc};
	struct adm_health h;
	struct svc_bp_status bp;
	struct adm_check queue_depth;
	run_checks(env, 1, &h, &bp);
	queue_depth_check(&bp, &queue_depth);
	char now[40];
	apb_now_iso(now, sizeof now);

	Tasker__V1__DetailedHealthChecks *c = apb_alloc(&b, sizeof *c);
	if (c == NULL)
		return apb_nomem(res);
	tasker__v1__detailed_health_checks__init(c);
	readiness_msgs(&b, &h, &c->web_database, &c->orchestration_database, &c->circuit_breaker,
	               &c->orchestration_system, &c->command_processor);
	c->pool_utilization = check_msg(&b, &h.pool_utilization);
	c->queue_depth = check_msg(&b, &queue_depth);
	c->channel_saturation = check_msg(&b, &h.channel_saturation);
	/* healthy: every check healthy, those not evaluated (unknown) aside */
	int healthy = h.ready;
	const struct adm_check *more[] = {&h.pool_utilization, &queue_depth, &h.channel_saturation};
	for (size_t i = 0; i < sizeof more / sizeof more[0]; i++)
		if (more[i]->status != ADM_HEALTHY && more[i]->status != ADM_UNKNOWN)
			healthy = 0;
	resp->status = apb_strdup(&b, healthy ? "healthy" : "degraded");
	resp->timestamp = apb_strdup(&b, now);
	resp->checks = c;
	resp->info = info_msg(&b, env, &h);
	return b.oom ? apb_nomem(res) : 0;
}

#define HEALTH_OP(m, req, resp, f)                                                                 \
	{                                                                                          \
		.service = "tasker.v1.HealthService", .method = m, .permission = NULL,             \
		.request = &tasker__v1__##req##__descriptor,                                       \
		.response = &tasker__v1__##resp##__descriptor, .fn = f                             \
	}

static const struct svc_op health_ops[] = {
    HEALTH_OP("CheckHealth", health_request, health_response, on_health),
    HEALTH_OP("CheckLiveness", liveness_request, health_response, on_liveness),
    HEALTH_OP("CheckReadiness", readiness_request, readiness_response, on_readiness),
    HEALTH_OP("CheckDetailedHealth", detailed_health_request, detailed_health_response,
              on_detailed),
};

const struct svc_table svc_health_table = {
    .service = "tasker.v1.HealthService",
    .ops = health_ops,
    .n_ops = sizeof health_ops / sizeof health_ops[0],
};

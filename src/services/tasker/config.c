/*
 * ConfigService (tasker.v1): the configuration of taskerd that is safe to
 * show (tasker-api.md §7). Built from a whitelist only: svc_env.pub (filled
 * by taskerd from its settings), auth_public_info() and the engine's
 * facts. Never a database URL, a key, a path to a key, a key's
 * permissions or a JWKS URL: none of those reach this file.
 */
#include "config.h"

#include <string.h>

#include "auth/auth.h"
#include "engine/admin.h"
#include "services/ops.h"
#include "services/svc_env.h"
#include "services/tasker/admin_pb.h"
#include "tasker/v1/config.pb-c.h"

/* "RS256,ES256" into a repeated string. */
static int split_list(struct apb *b, const char *list, char ***out, size_t *n)
{
	size_t parts = 0;
	for (const char *p = list; p != NULL && *p; p++)
		parts += *p == ',';
	if ((*out = apb_ptrs(b, parts + 1)) == NULL)
		return -1;
	*n = 0;
	const char *s = list != NULL ? list : "";
	while (*s) {
		size_t len = strcspn(s, ",");
		size_t lead = strspn(s, " "), trail = 0;
		while (len > lead + trail && s[len - 1 - trail] == ' ')
			trail++;
		if (len > lead + trail) {
			char *v = apb_alloc(b, len - lead - trail + 1);
			if (v == NULL)
				return -1;
			memcpy(v, s + lead, len - lead - trail);
			(*out)[(*n)++] = v;
		}
		s += len + (s[len] == ',');
	}
	return 0;
}

static Tasker__V1__SafeAuthConfig *auth_msg(struct apb *b, const struct svc_env *env)
{
	struct auth_public_info info;
	auth_public_info(env->auth, &info);
	Tasker__V1__SafeAuthConfig *m = apb_alloc(b, sizeof *m);
	if (m == NULL)
		return NULL;
	tasker__v1__safe_auth_config__init(m);
	m->enabled = info.enabled != 0;
	m->verification_method = apb_strdup(b, info.verification_method);
	m->jwt_issuer = apb_strdup(b, info.jwt_issuer);
	m->jwt_audience = apb_strdup(b, info.jwt_audience);
	m->api_key_header = apb_strdup(b, info.api_key_header);
	m->api_key_count = (int32_t)info.api_key_count; /* how many, never which */
	m->strict_validation = info.strict_validation != 0;
	if (split_list(b, info.allowed_algorithms, &m->allowed_algorithms,
	               &m->n_allowed_algorithms) != 0)
		return NULL;
	return m;
}

static int on_get_config(struct svc_env *env, const ProtobufCMessage *req_msg,
                         ProtobufCMessage *resp_msg, const struct svc_ctx *ctx,
                         struct svc_result *res)
{
	(void)req_msg;
	Tasker__V1__GetConfigResponse *resp = (Tasker__V1__GetConfigResponse *)resp_msg;
	struct apb b = {.a = ctx->alloc};
	const struct svc_public_config *pub = &env->pub;

	Tasker__V1__ConfigMetadata *md = apb_alloc(&b, sizeof *md);
	Tasker__V1__SafeCircuitBreakerConfig *cb = apb_alloc(&b, sizeof *cb);
	Tasker__V1__SafeDatabasePoolConfig *db = apb_alloc(&b, sizeof *db);
	Tasker__V1__SafeMessagingConfig *mq = apb_alloc(&b, sizeof *mq);
	if (md == NULL || cb == NULL || db == NULL || mq == NULL)
		return apb_nomem(res);
	tasker__v1__config_metadata__init(md);
	md->timestamp = apb_now(&b);
	md->environment = apb_strdup(&b, pub->environment);
	md->version = apb_strdup(&b, pub->version);

	tasker__v1__safe_circuit_breaker_config__init(cb);
	cb->enabled = pub->cb_failure_threshold > 0;
	cb->failure_threshold = (uint32_t)pub->cb_failure_threshold;
	cb->timeout_seconds = (uint32_t)pub->cb_timeout_seconds;
	cb->success_threshold = (uint32_t)pub->cb_success_threshold;

	tasker__v1__safe_database_pool_config__init(db);
	db->web_api_pool_size = (uint32_t)pub->web_pool_size;
	db->web_api_max_connections = (uint32_t)pub->web_max_connections;

	tasker__v1__safe_messaging_config__init(mq);
	/* PostgreSQL queues with pgmq's semantics (migration 0004) */
	mq->backend = apb_strdup(&b, "pgmq");
	const char *const *queues;
	size_t nq = adm_orchestration_queues(&queues);
	if ((mq->queues = apb_ptrs(&b, nq)) == NULL)
		return apb_nomem(res);
	for (size_t i = 0; i < nq; i++)
		mq->queues[mq->n_queues++] = apb_strdup(&b, queues[i]);

	resp->metadata = md;
	resp->auth = auth_msg(&b, env);
	resp->circuit_breakers = cb;
	resp->database_pools = db;
	resp->deployment_mode = apb_strdup(&b, pub->deployment_mode);
	resp->messaging = mq;
	return b.oom || resp->auth == NULL ? apb_nomem(res) : 0;
}

static const struct svc_op config_ops[] = {
    {.service = "tasker.v1.ConfigService",
     .method = "GetConfig",
     .permission = "system:config_read",
     .request = &tasker__v1__get_config_request__descriptor,
     .response = &tasker__v1__get_config_response__descriptor,
     .fn = on_get_config},
};

const struct svc_table svc_config_table = {
    .service = "tasker.v1.ConfigService",
    .ops = config_ops,
    .n_ops = sizeof config_ops / sizeof config_ops[0],
};

/*
 * WorkerConfigService (tasker.v1): the worker variant of the safe-config
 * answer (tasker-api.md §7): metadata, the worker's identity and type, the
 * public side of its auth settings and its queues. Nothing else: no
 * database URL, no key, no key path, no API-key value.
 */
#include "config.h"

#include <string.h>

#include "services/ops.h"
#include "services/svc_env.h"
#include "services/worker/wsvc.h"
#include "tasker/v1/worker.pb-c.h"
#include "worker/status.h"
#include "worker/worker.h"

/* The comma-separated list as repeated strings. */
static char **split_list(struct wsvc_pb *b, const char *list, size_t *n)
{
	size_t cap = 1;
	char **v;

	*n = 0;
	if (list == NULL || *list == '\0')
		return wsvc_pb_alloc(b, sizeof(char *));
	for (const char *p = list; *p != '\0'; p++)
		cap += *p == ',';
	if ((v = wsvc_pb_alloc(b, cap * sizeof(*v))) == NULL)
		return NULL;
	for (const char *p = list; *p != '\0';) {
		size_t len = strcspn(p, ","), skip = 0;
		char *s;
		while (skip < len && p[skip] == ' ')
			skip++;
		while (len > skip && p[len - 1] == ' ')
			len--;
		if (len > skip && (s = wsvc_pb_alloc(b, len - skip + 1)) != NULL) {
			memcpy(s, p + skip, len - skip);
			v[(*n)++] = s;
		}
		p += strcspn(p, ",");
		p += *p == ',';
	}
	return v;
}

static Tasker__V1__SafeAuthConfig *auth_pb(struct wsvc_pb *b, const struct auth *auth)
{
	Tasker__V1__SafeAuthConfig *a = wsvc_pb_alloc(b, sizeof(*a));
	struct auth_public_info info;

	if (a == NULL)
		return NULL;
	tasker__v1__safe_auth_config__init(a);
	auth_public_info(auth, &info);
	a->enabled = info.enabled != 0;
	a->verification_method = wsvc_pb_strdup(b, info.verification_method);
	a->jwt_issuer = wsvc_pb_strdup(b, info.jwt_issuer);
	a->jwt_audience = wsvc_pb_strdup(b, info.jwt_audience);
	a->api_key_header = wsvc_pb_strdup(b, info.api_key_header);
	a->api_key_count = (int32_t)info.api_key_count;
	a->strict_validation = info.strict_validation != 0;
	a->allowed_algorithms = split_list(b, info.allowed_algorithms, &a->n_allowed_algorithms);
	return a;
}

/* The queues the worker uses: its namespace queues, which it reads, and
 * the orchestration's result queue, which it writes. */
static Tasker__V1__SafeMessagingConfig *messaging_pb(struct wsvc_pb *b, const struct wsvc *w)
{
	Tasker__V1__SafeMessagingConfig *m = wsvc_pb_alloc(b, sizeof(*m));
	struct wk_worker_status st;

	if (m == NULL)
		return NULL;
	tasker__v1__safe_messaging_config__init(m);
	wk_worker_status(w->worker, &st);
	m->backend = wsvc_pb_strdup(b, "pgmq");
	if ((m->queues = wsvc_pb_alloc(b, (st.n_queues + 1) * sizeof(char *))) == NULL)
		return NULL;
	for (size_t i = 0; i < st.n_queues; i++)
		m->queues[m->n_queues++] = wsvc_pb_strdup(b, wk_worker_queue(w->worker, i));
	m->queues[m->n_queues++] = wsvc_pb_strdup(b, WK_RESULTS_QUEUE);
	return m;
}

static int on_get_config(struct svc_env *env, const ProtobufCMessage *req,
                         ProtobufCMessage *resp_msg, const struct svc_ctx *ctx,
                         struct svc_result *res)
{
	Tasker__V1__WorkerGetConfigResponse *resp = (Tasker__V1__WorkerGetConfigResponse *)resp_msg;
	struct wsvc_pb b = {.a = ctx->alloc};
	Tasker__V1__ConfigMetadata *md = wsvc_pb_alloc(&b, sizeof(*md));

	if (md == NULL)
		return svc_fail(res, TRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
	tasker__v1__config_metadata__init(md);
	md->timestamp = wsvc_pb_now(&b);
	md->environment = wsvc_pb_strdup(&b, env->pub.environment);
	md->version = wsvc_pb_strdup(&b, env->pub.version);
	resp->metadata = md;
	resp->worker_id = wsvc_pb_strdup(&b, wk_worker_uuid(env->wsvc->worker));
	resp->worker_type = wsvc_pb_strdup(&b, env->pub.worker_type);
	resp->auth = auth_pb(&b, env->auth);
	resp->messaging = messaging_pb(&b, env->wsvc);
	if (b.oom || resp->auth == NULL || resp->messaging == NULL)
		return svc_fail(res, TRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
	return 0;
}

static const struct svc_op config_ops[] = {
    {.service = "tasker.v1.WorkerConfigService",
     .method = "GetConfig",
     .permission = "worker:config_read",
     .request = &tasker__v1__worker_get_config_request__descriptor,
     .response = &tasker__v1__worker_get_config_response__descriptor,
     .fn = on_get_config},
};

const struct svc_table svc_worker_config_table = {
    .service = "tasker.v1.WorkerConfigService",
    .ops = config_ops,
    .n_ops = sizeof(config_ops) / sizeof(config_ops[0]),
};

/*
 * taskerd_admin: svc_env.pub of taskerd (taskerd_admin.h).
 */
#include "config.h"

#include "cmd/taskerd_admin.h"
#include "engine/admin.h"
#include "services/svc_env.h"
#include "tasker/rpc.h"

void taskerd_admin_fill_pub(struct svc_env *env, struct eng *eng, const char *environment)
{
	struct svc_public_config *pub = &env->pub;
	struct trpc_channel_config ch;

	pub->environment = environment;
	pub->version = PACKAGE_VERSION;
	pub->deployment_mode = adm_deployment_mode(eng);
	pub->web_pool_size = adm_pool_size(eng);
	pub->web_max_connections = pub->web_pool_size;
	trpc_channel_config_init(&ch);
	pub->cb_failure_threshold = ch.failure_threshold;
	pub->cb_timeout_seconds = ch.open_timeout_ms / 1000;
	pub->cb_success_threshold = ch.success_threshold;
}

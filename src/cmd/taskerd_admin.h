/*
 * taskerd_admin: the part of taskerd's svc_env that the safe-config and
 * health answers show (svc_env.pub), filled from the running
 * configuration.
 */
#ifndef TK_TASKERD_ADMIN_H
#define TK_TASKERD_ADMIN_H

struct eng;
struct svc_env;

/*
 * Fills env->pub: environment (orchestration.environment, the template
 * environment; NULL when none is configured), version (PACKAGE_VERSION),
 * deployment_mode (the engine's: LISTEN/NOTIFY plus polling, "Hybrid"),
 * the database pool figures (taskerd has one pool, shared by the API and
 * the engine: both figures are its size, which it never exceeds) and the
 * circuit-breaker defaults of libtasker-rpc's client channels
 * (trpc_channel_config_init). `environment` is not copied: it must outlive
 * env. Call after eng_new(), before the services are registered.
 */
void taskerd_admin_fill_pub(struct svc_env *env, struct eng *eng, const char *environment);

#endif

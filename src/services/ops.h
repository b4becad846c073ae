/*
 * ops: the operation tables of the tasker.v1 services, one per service.
 * The gRPC binding registers each as a service; the REST twin maps its
 * routes onto the same entries.
 */
#ifndef TK_SVC_OPS_H
#define TK_SVC_OPS_H

#include "services/svc.h"

struct svc_table {
	const char *service; /* "tasker.v1.TaskService" */
	const struct svc_op *ops;
	size_t n_ops;
};

/* taskerd (src/services/tasker/) */
extern const struct svc_table svc_tasks_table;     /* TaskService (unary RPCs) */
extern const struct svc_table svc_steps_table;     /* StepService */
extern const struct svc_table svc_templates_table; /* TemplateService */
extern const struct svc_table svc_analytics_table; /* AnalyticsService */
extern const struct svc_table svc_dlq_table;       /* DlqService */
extern const struct svc_table svc_health_table;    /* HealthService */
extern const struct svc_table svc_config_table;    /* ConfigService */

/* tasker-worker (src/services/worker/) */
extern const struct svc_table svc_worker_config_table;   /* WorkerConfigService */
extern const struct svc_table svc_worker_health_table;   /* WorkerHealthService */
extern const struct svc_table svc_worker_template_table; /* WorkerTemplateService */

/* Finds an operation by service and method name; NULL when unknown. */
const struct svc_op *svc_find_op(const struct svc_table *const *tables, size_t n,
                                 const char *service, const char *method);

#endif

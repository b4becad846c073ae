/*
 * TemplateService (tasker.v1): discovery of the registered task templates.
 * The registry is the database's (tasker.named_tasks), so every taskerd
 * sharing it answers the same.
 */
#include "config.h"

#include "engine/admin.h"
#include "services/ops.h"
#include "services/svc_env.h"
#include "services/tasker/admin_pb.h"
#include "tasker/v1/templates.pb-c.h"

static int on_list_templates(struct svc_env *env, const ProtobufCMessage *req_msg,
                             ProtobufCMessage *resp_msg, const struct svc_ctx *ctx,
                             struct svc_result *res)
{
	const Tasker__V1__ListTemplatesRequest *req =
	    (const Tasker__V1__ListTemplatesRequest *)req_msg;
	Tasker__V1__ListTemplatesResponse *resp = (Tasker__V1__ListTemplatesResponse *)resp_msg;
	struct apb b = {.a = ctx->alloc};
	const char *ns = NULL;
	if (req->_namespace_case == TASKER__V1__LIST_TEMPLATES_REQUEST___NAMESPACE_NAMESPACE)
		ns = req->namespace_;

	struct adm_template_list l;
	struct tk_err err = {0};
	if (adm_templates_list(env->eng, ns, &l, &err) != 0)
		return svc_fail_err(res, &err);
	int rv = -1;
	resp->namespaces = apb_ptrs(&b, l.n_namespaces);
	resp->templates = apb_ptrs(&b, l.n_templates);
	if (resp->namespaces == NULL || resp->templates == NULL)
		goto out;
	for (size_t i = 0; i < l.n_namespaces; i++) {
		const struct adm_namespace *n = &l.namespaces[i];
		Tasker__V1__NamespaceSummary *s = apb_alloc(&b, sizeof *s);
		if (s == NULL)
			goto out;
		tasker__v1__namespace_summary__init(s);
		s->name = apb_strdup(&b, n->name);
		if (n->description != NULL) {
			s->_description_case =
			    TASKER__V1__NAMESPACE_SUMMARY___DESCRIPTION_DESCRIPTION;
			s->description = apb_strdup(&b, n->description);
		}
		s->template_count = n->template_count;
		resp->namespaces[resp->n_namespaces++] = s;
	}
	for (size_t i = 0; i < l.n_templates; i++) {
		const struct adm_template *t = &l.templates[i];
		Tasker__V1__TemplateSummary *s = apb_alloc(&b, sizeof *s);
		if (s == NULL)
			goto out;
		tasker__v1__template_summary__init(s);
		s->name = apb_strdup(&b, t->name);
		s->namespace_ = apb_strdup(&b, t->namespace_name);
		s->version = apb_strdup(&b, t->version);
		if (t->description != NULL) {
			s->_description_case =
			    TASKER__V1__TEMPLATE_SUMMARY___DESCRIPTION_DESCRIPTION;
			s->description = apb_strdup(&b, t->description);
		}
		s->step_count = t->step_count;
		resp->templates[resp->n_templates++] = s;
	}
	resp->total_count = (int64_t)l.n_templates;
	rv = 0;
out:
	rv = apb_finish(&b, rv, NULL, res);
	adm_template_list_clear(&l);
	return rv;
}

static int on_get_template(struct svc_env *env, const ProtobufCMessage *req_msg,
                           ProtobufCMessage *resp_msg, const struct svc_ctx *ctx,
                           struct svc_result *res)
{
	const Tasker__V1__GetTemplateRequest *req = (const Tasker__V1__GetTemplateRequest *)req_msg;
	Tasker__V1__GetTemplateResponse *resp = (Tasker__V1__GetTemplateResponse *)resp_msg;
	struct apb b = {.a = ctx->alloc};

	struct adm_template_detail d;
	struct tk_err err = {0};
	if (adm_template_get(env->eng, req->namespace_, req->name, req->version, &d, &err) != 0)
		return svc_fail_err(res, &err);
	int rv = -1;
	Tasker__V1__TemplateDetail *t = apb_alloc(&b, sizeof *t);
	if (t == NULL)
		goto out;
	tasker__v1__template_detail__init(t);
	t->name = apb_strdup(&b, d.name);
	t->namespace_ = apb_strdup(&b, d.namespace_name);
	t->version = apb_strdup(&b, d.version);
	if (d.description != NULL) {
		t->_description_case = TASKER__V1__TEMPLATE_DETAIL___DESCRIPTION_DESCRIPTION;
		t->description = apb_strdup(&b, d.description);
	}
	/* the whole registered template: dependencies, handlers, retry blocks */
	if ((t->configuration = apb_struct(&b, d.configuration_json, &err)) == NULL)
		goto out;
	if ((t->steps = apb_ptrs(&b, d.n_steps)) == NULL)
		goto out;
	for (size_t i = 0; i < d.n_steps; i++) {
		const struct adm_step_def *sd = &d.steps[i];
		Tasker__V1__StepDefinition *s = apb_alloc(&b, sizeof *s);
		if (s == NULL)
			goto out;
		tasker__v1__step_definition__init(s);
		s->name = apb_strdup(&b, sd->name);
		if (sd->description != NULL) {
			s->_description_case =
			    TASKER__V1__STEP_DEFINITION___DESCRIPTION_DESCRIPTION;
			s->description = apb_strdup(&b, sd->description);
		}
		s->default_retryable = sd->retryable != 0;
		s->default_max_attempts = sd->max_attempts;
		t->steps[t->n_steps++] = s;
	}
	resp->template_ = t;
	rv = 0;
out:
	rv = apb_finish(&b, rv, &err, res);
	adm_template_detail_clear(&d);
	return rv;
}

static const struct svc_op template_ops[] = {
    {.service = "tasker.v1.TemplateService",
     .method = "ListTemplates",
     .permission = "templates:read",
     .request = &tasker__v1__list_templates_request__descriptor,
     .response = &tasker__v1__list_templates_response__descriptor,
     .fn = on_list_templates},
    {.service = "tasker.v1.TemplateService",
     .method = "GetTemplate",
     .permission = "templates:read",
     .request = &tasker__v1__get_template_request__descriptor,
     .response = &tasker__v1__get_template_response__descriptor,
     .fn = on_get_template},
};

const struct svc_table svc_templates_table = {
    .service = "tasker.v1.TemplateService",
    .ops = template_ops,
    .n_ops = sizeof template_ops / sizeof template_ops[0],
};

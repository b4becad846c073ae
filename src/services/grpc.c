/*
 * grpc: the operation tables served over gRPC (see grpc.h).
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "services/grpc.h"

/* One registered service: what its handlers need, found through the
 * service's ud. Lives as long as the server. */
struct grpc_svc {
	struct trpc_service svc;
	struct trpc_method *methods;
	struct svc_env *env;
	const struct svc_table *table;
	const struct svc_grpc_extra **extras;
	size_t n_extras;
};

/* The method name of a call ("/tasker.v1.TaskService/GetTask" -> "GetTask"). */
static const char *method_name(const trpc_call *call)
{
	const char *path = trpc_call_method(call);
	const char *slash = path != NULL ? strrchr(path, '/') : NULL;
	return slash != NULL ? slash + 1 : "";
}

int svc_grpc_authorize(struct svc_env *env, trpc_call *call, const char *permission,
                       const char **subject)
{
	struct auth_result ar;
	const char *authorization = trpc_call_metadata(call, "authorization", NULL);
	const char *key_header = env->auth != NULL ? auth_api_key_header(env->auth) : NULL;
	const char *api_key =
	    key_header != NULL ? trpc_call_metadata(call, key_header, NULL) : NULL;

	memset(&ar, 0, sizeof ar);
	if (env->auth == NULL) {
		/* Never configured: refuse rather than guess (taskerd always sets it). */
		trpc_call_finish(call, TRPC_STATUS_UNAUTHENTICATED,
		                 "authentication is not configured");
		return -1;
	}
	int rc = auth_check(env->auth, authorization, api_key, permission, &ar);
	if (rc == AUTH_OK && ar.code == AUTH_OK) {
		char *s = trpc_call_strdup(call, ar.subject[0] ? ar.subject : "anonymous");
		*subject = s != NULL ? s : "anonymous";
		/* Access logs and identity-keyed rate limits see the subject;
		 * an anonymous caller is limited by its address. */
		const char *id = ar.subject[0] ? ar.subject : NULL;
		if (id != NULL)
			(void)trpc_call_set_identity(call, id);
		if (trpc_call_rate_check(call, id) != 0)
			return -1; /* finished with RESOURCE_EXHAUSTED */
		return 0;
	}
	if (ar.reason != NULL)
		trpc_call_add_trailing_metadata(call, "x-auth-failure-reason", ar.reason,
		                                strlen(ar.reason));
	if (ar.severity != NULL)
		trpc_call_add_trailing_metadata(call, "x-auth-failure-severity", ar.severity,
		                                strlen(ar.severity));
	int status = ar.code == AUTH_UNAUTHENTICATED ? TRPC_STATUS_UNAUTHENTICATED
	                                             : TRPC_STATUS_PERMISSION_DENIED;
	trpc_log(TRPC_LOG_DEBUG, "%s from %s: %s (%s)", trpc_call_method(call),
	         trpc_call_peer(call) ? trpc_call_peer(call) : "?", trpc_status_name(status),
	         ar.message);
	trpc_call_finish(call, status, ar.message[0] ? ar.message : "permission denied");
	return -1;
}

static const struct svc_op *find_op(const struct grpc_svc *gs, const char *method)
{
	for (size_t i = 0; i < gs->table->n_ops; i++)
		if (strcmp(gs->table->ops[i].method, method) == 0)
			return &gs->table->ops[i];
	return NULL;
}

static const struct svc_grpc_extra *find_extra(const struct grpc_svc *gs, const char *method)
{
	for (size_t i = 0; i < gs->n_extras; i++)
		if (strcmp(gs->extras[i]->method.name, method) == 0)
			return gs->extras[i];
	return NULL;
}

/* Ends a call with an operation's failure. */
static void finish_failed(trpc_call *call, const struct svc_result *res)
{
	int status = res->status != TRPC_STATUS_OK ? res->status : TRPC_STATUS_INTERNAL;
	if (res->retry_after_s > 0) {
		char v[16];
		int len = snprintf(v, sizeof v, "%d", res->retry_after_s);
		trpc_call_add_trailing_metadata(call, "retry-after", v, (size_t)len);
	}
	trpc_call_finish(call, status, res->message[0] ? res->message : NULL);
}

/* Every unary operation of a table: auth, the operation, the answer. */
static void on_unary(trpc_call *call, const ProtobufCMessage *req, void *ud)
{
	struct grpc_svc *gs = ud;
	const struct svc_op *op = find_op(gs, method_name(call));
	const char *subject = NULL;

	if (op == NULL) { /* registered from the table: cannot happen */
		trpc_call_finish(call, TRPC_STATUS_UNIMPLEMENTED, "no such operation");
		return;
	}
	if (svc_grpc_authorize(gs->env, call, op->permission, &subject) != 0)
		return;
	ProtobufCAllocator *a = trpc_call_allocator(call);
	ProtobufCMessage *resp = a->alloc(a->allocator_data, op->response->sizeof_message);
	if (resp == NULL) {
		trpc_call_finish(call, TRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	op->response->message_init(resp);
	struct svc_ctx ctx = {
	    .alloc = a,
	    .subject = subject,
	    .peer = trpc_call_peer(call),
	    .transport = "grpc",
	    .deadline_ns = trpc_call_deadline(call),
	};
	struct svc_result res;
	memset(&res, 0, sizeof res);
	if (op->fn(gs->env, req, resp, &ctx, &res) != 0) {
		finish_failed(call, &res);
		return;
	}
	int rc = trpc_call_send(call, resp);
	if (rc == 0 || rc == TRPC_ERR_CLOSED)
		trpc_call_finish(call, TRPC_STATUS_OK, NULL);
	else if (rc == TRPC_ERR_TOO_LARGE)
		trpc_call_finish(call, TRPC_STATUS_RESOURCE_EXHAUSTED,
		                 "the response is larger than the send limit");
	else
		trpc_call_finish(call, TRPC_STATUS_INTERNAL, trpc_strerror(rc));
}

static void on_extra(trpc_call *call, const ProtobufCMessage *req, void *ud)
{
	struct grpc_svc *gs = ud;
	const struct svc_grpc_extra *x = find_extra(gs, method_name(call));
	const char *subject = NULL;

	if (x == NULL) {
		trpc_call_finish(call, TRPC_STATUS_UNIMPLEMENTED, "no such method");
		return;
	}
	if (svc_grpc_authorize(gs->env, call, x->permission, &subject) != 0)
		return;
	x->method.handler(call, req, x->ud);
}

static void on_extra_cancel(trpc_call *call, void *ud)
{
	struct grpc_svc *gs = ud;
	const struct svc_grpc_extra *x = find_extra(gs, method_name(call));

	if (x != NULL && x->method.stream.on_cancel != NULL)
		x->method.stream.on_cancel(call, x->ud);
}

static void grpc_svc_free(void *arg)
{
	struct grpc_svc *gs = arg;
	free(gs->methods);
	free(gs->extras);
	free(gs);
}

static int register_one(trpc_server *srv, struct svc_env *env, const struct svc_table *t,
                        const struct svc_grpc_extra *extras, size_t n_extras, const char **why)
{
	size_t nx = 0;
	for (size_t i = 0; i < n_extras; i++)
		nx += strcmp(extras[i].service, t->service) == 0;
	struct grpc_svc *gs = calloc(1, sizeof *gs);
	if (gs == NULL)
		goto nomem;
	gs->methods = calloc(t->n_ops + nx, sizeof *gs->methods);
	gs->extras = nx ? calloc(nx, sizeof *gs->extras) : NULL;
	if (gs->methods == NULL || (nx && gs->extras == NULL))
		goto nomem_free;
	gs->env = env;
	gs->table = t;
	size_t m = 0;
	for (size_t i = 0; i < t->n_ops; i++, m++) {
		gs->methods[m].name = t->ops[i].method;
		gs->methods[m].kind = TRPC_UNARY;
		gs->methods[m].request = t->ops[i].request;
		gs->methods[m].response = t->ops[i].response;
		gs->methods[m].handler = on_unary;
	}
	for (size_t i = 0; i < n_extras; i++) {
		if (strcmp(extras[i].service, t->service) != 0)
			continue;
		gs->extras[gs->n_extras++] = &extras[i];
		gs->methods[m] = extras[i].method;
		gs->methods[m].handler = on_extra;
		gs->methods[m].stream.on_cancel =
		    extras[i].method.stream.on_cancel != NULL ? on_extra_cancel : NULL;
		m++;
	}
	gs->svc.name = t->service;
	gs->svc.methods = gs->methods;
	gs->svc.n_methods = m;
	gs->svc.ud = gs;
	/* The server owns gs from here: freed with it, whatever happens next. */
	if (trpc_server_on_free(srv, grpc_svc_free, gs) != 0)
		goto nomem_free;
	int rc = trpc_server_add_service(srv, &gs->svc);
	if (rc != 0)
		*why = rc == TRPC_ERR_EXISTS ? "a tasker.v1 service is registered twice"
		                             : "cannot register a tasker.v1 service";
	return rc;

nomem_free:
	grpc_svc_free(gs);
nomem:
	*why = "out of memory";
	return TRPC_ERR_NOMEM;
}

int svc_grpc_register(trpc_server *srv, struct svc_env *env, const struct svc_table *const *tables,
                      size_t n, const struct svc_grpc_extra *extras, size_t n_extras,
                      const char **why)
{
	for (size_t i = 0; i < n_extras; i++) {
		int found = 0;
		for (size_t t = 0; t < n; t++)
			found |=
			    tables[t] != NULL && strcmp(tables[t]->service, extras[i].service) == 0;
		if (!found || extras[i].method.handler == NULL) {
			*why = "an extra method names a service without a table";
			return TRPC_ERR_INVALID;
		}
	}
	for (size_t t = 0; t < n; t++) {
		if (tables[t] == NULL) {
			*why = "a NULL operation table";
			return TRPC_ERR_INVALID;
		}
		int rc = register_one(srv, env, tables[t], extras, n_extras, why);
		if (rc != 0)
			return rc;
	}
	return 0;
}
